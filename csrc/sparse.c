/*
 * sparse.c: a matrix kept as its non-zero entries (nerve_sparse), listed once so that the
 * dense products of every epoch read them instead of finding them among the zeros.
 *   values [rows, cols] -> starts [rows + 1], columns and values [nonzeros], row by row in
 *   increasing column order. The products over it are in gemm.c, the dense layer's entry
 *   points in dense.c.
 */
#include "internal.h"

#include <stdlib.h>

#if NERVE_X86
#  include <immintrin.h>
#endif

/* Rows per thread worth starting one for, by the columns each has. */
static int64_t rows_grain(int64_t cols) { return (1 << 18) / (cols + 1) + 1; }

typedef struct {
  const float *values;
  int64_t cols;
  int64_t *counts; /* per row, when wanted */
  nerve_sparse *out;
} list_job;

NERVE_INLINE int64_t row_nonzeros(const float *x, int64_t cols) {
  int64_t n = 0;
  for (int64_t k = 0; k < cols; k++) n += x[k] != 0.0f;
  return n;
}

NERVE_INLINE double count_body(void *data, int64_t r0, int64_t r1) {
  list_job *j = data;
  int64_t n = 0;
  for (int64_t r = r0; r < r1; r++) {
    const int64_t here = row_nonzeros(j->values + r * j->cols, j->cols);
    if (j->counts) j->counts[r] = here;
    n += here;
  }
  return (double)n;
}
NERVE_SUM_KERNEL(count);

/* Writes row r's entries from out->starts[r] (a branch per value: compilers do not vectorise
 * it, so one copy serves every instruction set but AVX-512's). */
static void fill_rows(void *data, int64_t r0, int64_t r1) {
  list_job *j = data;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = j->values + r * j->cols;
    int64_t at = j->out->starts[r];
    for (int64_t k = 0; k < j->cols; k++)
      if (x[k] != 0.0f) {
        j->out->columns[at] = (int32_t)k;
        j->out->values[at] = x[k];
        at++;
      }
  }
}

#if NERVE_X86
/* fill_rows with AVX-512 compress: 16 columns a step, no branch per value. Each step's
 * vectors go to a buffer on the stack, since a full-width store would reach into the next
 * row's entries (another thread's). */
NERVE_TARGET_AVX512 static void fill_avx512_compress(void *data, int64_t r0, int64_t r1) {
  list_job *j = data;
  enum { STEP = 256 };
  int32_t ks[STEP + 16];
  float vs[STEP + 16];
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int64_t r = r0; r < r1; r++) {
    const float *x = j->values + r * j->cols;
    int64_t at = j->out->starts[r];
    for (int64_t k0 = 0; k0 < j->cols; k0 += STEP) {
      const int64_t kn = j->cols - k0 < STEP ? j->cols - k0 : STEP;
      int64_t n = 0;
      for (int64_t k = 0; k < kn; k += 16) {
        const __mmask16 valid = nerve__lanes16(kn - k);
        const __m512 v = _mm512_maskz_loadu_ps(valid, x + k0 + k);
        const __mmask16 nz = _mm512_mask_cmp_ps_mask(valid, v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
        const __m512i index = _mm512_add_epi32(lanes, _mm512_set1_epi32((int32_t)(k0 + k)));
        _mm512_storeu_si512((void *)(ks + n), _mm512_maskz_compress_epi32(nz, index));
        _mm512_storeu_ps(vs + n, _mm512_maskz_compress_ps(nz, v));
        n += __builtin_popcount(nz);
      }
      memcpy(j->out->columns + at, ks, (size_t)n * sizeof(int32_t));
      memcpy(j->out->values + at, vs, (size_t)n * sizeof(float));
      at += n;
    }
  }
}

/* fill_rows with AVX2: each row's columns found 8 at a time (nerve__avx2_nonzeros, no branch
 * per value), a segment of up to STEP columns at a time into a buffer on the stack (its whole
 * vectors' stores reach past the entries), then its values read at those columns. The branch
 * a value of fill_rows, mispredicted at about a fifth of MNIST's pixels, cost the most:
 * nerve_sparse_create on MNIST's 60,000 training images 136 -> 96 ms at 1 thread, 69 -> 62
 * at 2, where the first touches of the new lists' pages take much of the rest (Zen 3). */
NERVE_TARGET_AVX2 static void fill_avx2(void *data, int64_t r0, int64_t r1) {
  list_job *j = data;
  enum { STEP = 1024 };
  int32_t ks[STEP + 8];
  for (int64_t r = r0; r < r1; r++) {
    const float *x = j->values + r * j->cols;
    int64_t at = j->out->starts[r];
    for (int64_t k0 = 0; k0 < j->cols; k0 += STEP) {
      const int64_t kn = j->cols - k0 < STEP ? j->cols - k0 : STEP;
      const int64_t n = nerve__avx2_nonzeros(x + k0, kn, ks);
      int32_t *columns = j->out->columns + at;
      float *values = j->out->values + at;
      for (int64_t e = 0; e < n; e++) {
        columns[e] = (int32_t)k0 + ks[e];
        values[e] = x[k0 + ks[e]];
      }
      at += n;
    }
  }
}
#endif

static nerve_status check_matrix(nerve_context *ctx, const float *values, int64_t rows,
                                 int64_t cols, const char *func) {
  if (rows < 0 || cols < 0)
    return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "negative size (rows=%lld, cols=%lld)",
                       (long long)rows, (long long)cols);
  /* Columns are stored as int32; the row starts take rows + 1 int64s. */
  if (cols > INT32_MAX || !nerve__product_ok(rows, cols) || rows > INT64_MAX / 16)
    return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "sizes too large (rows=%lld, cols=%lld)",
                       (long long)rows, (long long)cols);
  if (rows > 0 && cols > 0 && !values)
    return nerve__fail(ctx, NERVE_ERROR_NULL_POINTER, func, "values is NULL");
  return NERVE_OK;
}

nerve_status nerve_sparse_count(nerve_context *ctx, int64_t *nonzeros, const float *values,
                                int64_t rows, int64_t cols) {
  NERVE_CHECK_CTX(ctx);
  NERVE_CHECK_PTR(ctx, nonzeros);
  nerve_status s = check_matrix(ctx, values, rows, cols, __func__);
  if (s != NERVE_OK) return s;
  list_job j = {.values = values, .cols = cols};
  *nonzeros = cols > 0 ? (int64_t)nerve__parallel_sum(ctx, rows, rows_grain(cols), count_isa[ctx->isa], &j) : 0;
  return NERVE_OK;
}

void nerve_sparse_destroy(nerve_sparse *sparse) {
  if (!sparse) return;
  nerve_free(sparse->starts);
  nerve_free(sparse->columns);
  nerve_free(sparse->values);
  nerve_free(sparse->row_words);
  nerve_free(sparse->block_words);
  nerve_free(sparse->block_starts);
  nerve_free(sparse->column_ends);
  nerve_free(sparse->pair_words);
  nerve_free(sparse->pair_starts);
  nerve_free(sparse->pair_ends);
  free(sparse);
}

/* ---- Packing (the vector kernels' lists; see struct nerve_sparse) ---------------------------------- */

/* The palette's lookup: the distinct values' bits, open-addressed. */
enum { PALETTE_SLOTS = 4 * NERVE_SPARSE_PALETTE };
typedef struct {
  uint32_t bits[PALETTE_SLOTS];
  int16_t index[PALETTE_SLOTS]; /* -1: empty */
} palette_table;

static uint32_t float_bits(float v) {
  uint32_t u;
  memcpy(&u, &v, sizeof u);
  return u;
}

/* The slot of bits in t: where it is, or the empty one where it would go. */
static int64_t palette_slot(const palette_table *t, uint32_t bits) {
  int64_t h = (uint32_t)(bits * 2654435761u) >> 22;
  while (t->index[h] >= 0 && t->bits[h] != bits) h = (h + 1) & (PALETTE_SLOTS - 1);
  return h;
}

/* t with every slot empty. */
static void palette_clear(palette_table *t) {
  for (int64_t h = 0; h < PALETTE_SLOTS; h++) t->index[h] = -1;
}

/* v's index in t, added as list[*n] (and *n counted up) if t has not seen it; -1 if it is new
 * and the palette is full. */
static int palette_index(palette_table *t, float v, float *list, int *n) {
  const uint32_t bits = float_bits(v);
  const int64_t h = palette_slot(t, bits);
  if (t->index[h] >= 0) return t->index[h];
  if (*n == NERVE_SPARSE_PALETTE) return -1;
  t->bits[h] = bits;
  t->index[h] = (int16_t)*n;
  list[*n] = v;
  return (*n)++;
}

/*
 * Finding the palette in parallel: rows in chunks of a fixed size (so nothing depends on the
 * thread count), each chunk hashing its entries once into its own table, writing their words
 * with its own indices and keeping its distinct values in the order first met. Merged chunk
 * after chunk, those lists give the whole matrix's values in the order first met; each
 * chunk's words are then renumbered to the merged palette. Values are told apart by their
 * bits, so NaNs and signed zeros stay what they are.
 */
enum { PALETTE_CHUNK_ROWS = 1024 };

typedef struct {
  nerve_sparse *m;
  float (*found)[NERVE_SPARSE_PALETTE]; /* per chunk: its distinct values, first met first */
  int *count;                           /* per chunk: how many; -1 if over the palette's size */
  uint8_t (*renumber)[NERVE_SPARSE_PALETTE]; /* per chunk: its index -> the palette's */
} palette_job;

static int64_t chunk_end(const nerve_sparse *m, int64_t c) {
  const int64_t r = (c + 1) * PALETTE_CHUNK_ROWS;
  return r < m->rows ? r : m->rows;
}

/* Chunks [c0, c1): their values found, their words written with their own indices. */
static void find_chunks(void *data, int64_t c0, int64_t c1) {
  const palette_job *j = data;
  nerve_sparse *m = j->m;
  palette_table t;
  for (int64_t c = c0; c < c1; c++) {
    palette_clear(&t);
    int n = 0;
    for (int64_t e = m->starts[c * PALETTE_CHUNK_ROWS]; e < m->starts[chunk_end(m, c)]; e++) {
      const int index = palette_index(&t, m->values[e], j->found[c], &n);
      if (index < 0) {
        n = -1;
        break;
      }
      m->row_words[e] = (uint32_t)m->columns[e] | (uint32_t)index << 16;
    }
    j->count[c] = n;
  }
}

/* The chunks' lists merged into m->palette in chunk order, with each chunk's renumbering;
 * false if the matrix has more distinct values than the palette holds. */
static bool merge_chunks(const palette_job *j, int64_t chunks) {
  palette_table t;
  palette_clear(&t);
  int n = 0;
  for (int64_t c = 0; c < chunks; c++) {
    if (j->count[c] < 0) return false;
    for (int i = 0; i < j->count[c]; i++) {
      const int index = palette_index(&t, j->found[c][i], j->m->palette, &n);
      if (index < 0) return false;
      j->renumber[c][i] = (uint8_t)index;
    }
  }
  j->m->palette_size = n;
  return true;
}

/* Chunks [c0, c1)'s words renumbered to the merged palette. */
static void renumber_chunks(void *data, int64_t c0, int64_t c1) {
  const palette_job *j = data;
  nerve_sparse *m = j->m;
  for (int64_t c = c0; c < c1; c++)
    for (int64_t e = m->starts[c * PALETTE_CHUNK_ROWS]; e < m->starts[chunk_end(m, c)]; e++)
      m->row_words[e] = (m->row_words[e] & 0xFFFFu) | (uint32_t)j->renumber[c][m->row_words[e] >> 16] << 16;
}

/* m->row_words (allocated) written as column | palette index << 16, and m->palette; false
 * (words unusable) if m has too many distinct values or memory is short. */
static bool pack_rows(nerve_context *ctx, nerve_sparse *m) {
  const int64_t chunks = (m->rows + PALETTE_CHUNK_ROWS - 1) / PALETTE_CHUNK_ROWS;
  palette_job j = {.m = m};
  j.found = malloc((size_t)chunks * sizeof *j.found);
  j.count = malloc((size_t)chunks * sizeof *j.count);
  j.renumber = malloc((size_t)chunks * sizeof *j.renumber);
  bool packed = j.found && j.count && j.renumber;
  if (packed) {
    nerve__parallel_for(ctx, chunks, 1, find_chunks, &j);
    packed = merge_chunks(&j, chunks);
  }
  if (packed) nerve__parallel_for(ctx, chunks, 1, renumber_chunks, &j);
  free(j.found);
  free(j.count);
  free(j.renumber);
  return packed;
}

static int64_t block_count(const nerve_sparse *m) {
  return (m->rows + NERVE_SPARSE_BLOCK - 1) / NERVE_SPARSE_BLOCK;
}

/* Blocks [b0, b1) listed by column: each column's count, their running sum from the block's
 * first entry, then the entries, each column's start used as its cursor (so it ends as the
 * next column's start, and is moved back one place). */
static void fill_blocks(void *data, int64_t b0, int64_t b1) {
  nerve_sparse *m = data;
  const int64_t width = m->cols + 1;
  for (int64_t b = b0; b < b1; b++) {
    const int64_t r0 = b * NERVE_SPARSE_BLOCK;
    const int64_t r1 = r0 + NERVE_SPARSE_BLOCK < m->rows ? r0 + NERVE_SPARSE_BLOCK : m->rows;
    int64_t *at = m->block_starts + b * width;
    for (int64_t k = 0; k < width; k++) at[k] = 0;
    for (int64_t e = m->starts[r0]; e < m->starts[r1]; e++) at[m->columns[e] + 1]++;
    at[0] = m->starts[r0];
    for (int64_t k = 1; k < width; k++) at[k] += at[k - 1];
    for (int64_t r = r0; r < r1; r++)
      for (int64_t e = m->starts[r]; e < m->starts[r + 1]; e++)
        m->block_words[at[m->columns[e]]++] = (uint16_t)((r - r0) | (m->row_words[e] >> 16) << 8);
    for (int64_t k = width - 1; k > 0; k--) at[k] = at[k - 1];
    at[0] = m->starts[r0];
  }
}

/* ends[0..lists]: the words of lists [0, i) over all blocks, each block's `lists` lists
 * starting at starts[b * (lists + 1) ..]. The weight gradient shares lists out to threads by
 * them (sparse_tn_share). */
static void list_ends(int64_t *ends, const int64_t *starts, int64_t blocks, int64_t lists) {
  for (int64_t i = 0; i <= lists; i++) ends[i] = 0;
  for (int64_t b = 0; b < blocks; b++) {
    const int64_t *at = starts + b * (lists + 1);
    for (int64_t i = 0; i < lists; i++) ends[i + 1] += at[i + 1] - at[i];
  }
  for (int64_t i = 1; i <= lists; i++) ends[i] += ends[i - 1];
}

/* The column lists, when their index (one start per column and block) is no larger than the
 * entries; false if memory is short. */
static bool list_blocks(nerve_context *ctx, nerve_sparse *m) {
  const int64_t blocks = block_count(m), width = m->cols + 1;
  if (blocks > m->nonzeros / width) return true;
  m->block_starts = nerve_alloc((size_t)(blocks * width) * sizeof(int64_t));
  m->column_ends = nerve_alloc((size_t)width * sizeof(int64_t));
  m->block_words = nerve_alloc((size_t)(m->nonzeros + NERVE_SPARSE_PAD) * sizeof(uint16_t));
  if (!m->block_starts || !m->column_ends || !m->block_words) return false;
  memset(m->block_words + m->nonzeros, 0, NERVE_SPARSE_PAD * sizeof(uint16_t));
  nerve__parallel_for(ctx, blocks, 1, fill_blocks, m);
  list_ends(m->column_ends, m->block_starts, blocks, m->cols);
  return true;
}

/* Blocks [b0, b1)'s column pairs: each pair's two lists (rows increasing) merged, a word for
 * each row either holds, written from the block's first entry on (a block has no more rows in
 * a pair's lists than entries in them). */
static void fill_pairs(void *data, int64_t b0, int64_t b1) {
  nerve_sparse *m = data;
  const int64_t width = m->cols + 1, pairs = m->cols / 2;
  const uint32_t absent = (uint32_t)m->palette_size;
  for (int64_t b = b0; b < b1; b++) {
    const int64_t *at = m->block_starts + b * width;
    int64_t *out = m->pair_starts + b * (pairs + 1), next = at[0];
    for (int64_t q = 0; q < pairs; q++) {
      out[q] = next;
      int64_t e = at[2 * q], f = at[2 * q + 1];
      const int64_t e1 = at[2 * q + 1], f1 = at[2 * q + 2];
      while (e < e1 || f < f1) {
        const uint32_t re = e < e1 ? m->block_words[e] & 0xFFu : 0x100u;
        const uint32_t rf = f < f1 ? m->block_words[f] & 0xFFu : 0x100u;
        const uint32_t row = re < rf ? re : rf;
        const uint32_t first = re == row ? (uint32_t)m->block_words[e++] >> 8 : absent;
        const uint32_t second = rf == row ? (uint32_t)m->block_words[f++] >> 8 : absent;
        m->pair_words[next++] = row | first << 8 | second << 16;
      }
    }
    out[pairs] = next;
  }
}

/* The column pairs (AVX-512's weight gradient reads them), where the palette has a slot left
 * for +0.0; without them (memory short) the column lists serve alone. */
static void list_pairs(nerve_context *ctx, nerve_sparse *m) {
  if (ctx->isa != NERVE_ISA_AVX512 || !m->block_starts || m->cols < 2 ||
      m->palette_size >= NERVE_SPARSE_PALETTE)
    return;
  const int64_t blocks = block_count(m);
  const int64_t pairs = m->cols / 2;
  m->pair_starts = nerve_alloc((size_t)(blocks * (pairs + 1)) * sizeof(int64_t));
  m->pair_ends = nerve_alloc((size_t)(pairs + 1) * sizeof(int64_t));
  m->pair_words = nerve_alloc((size_t)(m->nonzeros + NERVE_SPARSE_PAD) * sizeof(uint32_t));
  if (!m->pair_starts || !m->pair_ends || !m->pair_words) {
    nerve_free(m->pair_starts);
    nerve_free(m->pair_ends);
    nerve_free(m->pair_words);
    m->pair_starts = NULL, m->pair_ends = NULL, m->pair_words = NULL;
    return;
  }
  m->palette[m->palette_size] = 0.0f;
  memset(m->pair_words + m->nonzeros, 0, NERVE_SPARSE_PAD * sizeof(uint32_t));
  nerve__parallel_for(ctx, blocks, 1, fill_pairs, m);
  list_ends(m->pair_ends, m->pair_starts, blocks, pairs);
}

/* Packs m where the kernels that read the words run (AVX-512's and AVX2's) and its columns and
 * values fit them. Not packing is no error: the products then read columns and values. */
static void pack(nerve_context *ctx, nerve_sparse *m) {
  if (!nerve__own_vectors(ctx) || m->nonzeros == 0 || m->cols > 65536) return;
  m->row_words = nerve_alloc((size_t)(m->nonzeros + NERVE_SPARSE_PAD) * sizeof(uint32_t));
  if (m->row_words) {
    memset(m->row_words + m->nonzeros, 0, NERVE_SPARSE_PAD * sizeof(uint32_t));
    if (pack_rows(ctx, m) && list_blocks(ctx, m)) {
      list_pairs(ctx, m);
      return;
    }
  }
  nerve_free(m->row_words);
  nerve_free(m->block_words);
  nerve_free(m->block_starts);
  nerve_free(m->column_ends);
  m->row_words = NULL, m->block_words = NULL, m->block_starts = NULL, m->column_ends = NULL;
}

nerve_status nerve_sparse_create(nerve_context *ctx, nerve_sparse **out, const float *values,
                                 int64_t rows, int64_t cols) {
  /* The one write of a refused call, as the header says: *out is NULL whenever it fails. */
  if (out) *out = NULL;
  NERVE_CHECK_CTX(ctx);
  NERVE_CHECK_PTR(ctx, out);
  nerve_status s = check_matrix(ctx, values, rows, cols, __func__);
  if (s != NERVE_OK) return s;
  nerve_sparse *m = calloc(1, sizeof *m);
  if (m) m->starts = nerve_alloc((size_t)(rows + 1) * sizeof(int64_t));
  if (!m || !m->starts) {
    nerve_sparse_destroy(m);
    return nerve__fail(ctx, NERVE_ERROR_OUT_OF_MEMORY, __func__, "cannot allocate the row starts of %lld rows",
                       (long long)rows);
  }
  m->rows = rows;
  m->cols = cols;
  /* Each row's count into starts[r + 1], then the running sum makes them starts. */
  list_job j = {.values = values, .cols = cols, .counts = m->starts + 1, .out = m};
  m->starts[0] = 0;
  if (cols > 0) nerve__parallel_sum(ctx, rows, rows_grain(cols), count_isa[ctx->isa], &j);
  else
    for (int64_t r = 0; r < rows; r++) m->starts[r + 1] = 0;
  for (int64_t r = 0; r < rows; r++) m->starts[r + 1] += m->starts[r];
  m->nonzeros = m->starts[rows];
  if (m->nonzeros > 0) {
    const size_t entries = (size_t)(m->nonzeros + NERVE_SPARSE_PAD);
    m->columns = nerve_alloc(entries * sizeof(int32_t));
    m->values = nerve_alloc(entries * sizeof(float));
    if (!m->columns || !m->values) {
      const int64_t n = m->nonzeros;
      nerve_sparse_destroy(m);
      return nerve__fail(ctx, NERVE_ERROR_OUT_OF_MEMORY, __func__, "cannot allocate %lld entries",
                         (long long)n);
    }
    nerve__range_fn fill = fill_rows;
#if NERVE_X86
    if (ctx->isa == NERVE_ISA_AVX512) fill = fill_avx512_compress;
    if (ctx->isa == NERVE_ISA_AVX2) fill = fill_avx2;
#endif
    nerve__parallel_for(ctx, rows, rows_grain(cols), fill, &j);
    memset(m->columns + m->nonzeros, 0, NERVE_SPARSE_PAD * sizeof(int32_t));
    memset(m->values + m->nonzeros, 0, NERVE_SPARSE_PAD * sizeof(float));
    pack(ctx, m);
  }
  *out = m;
  return NERVE_OK;
}

nerve_status nerve_sparse_shape(const nerve_sparse *sparse, int64_t *rows, int64_t *cols,
                                int64_t *nonzeros) {
  if (!sparse || !rows || !cols || !nonzeros) return NERVE_ERROR_NULL_POINTER;
  *rows = sparse->rows;
  *cols = sparse->cols;
  *nonzeros = sparse->nonzeros;
  return NERVE_OK;
}
