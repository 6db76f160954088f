/* libdeflate for Swift: whole-buffer gzip decompression of data sets, 2-3x zlib's speed. */
#include <libdeflate.h>
