/* zlib for Swift: gzip decompression of IDX and CSV files. */
#include <zlib.h>
