/*
 * gemm.c: the two matrix products every dense and convolution layer reduces to.
 *
 *   nn:  C[M,N] = C? + bias[N] + A[M,K] . B[K,N]     (forward; input gradient with B = W^T)
 *   tn:  G[K,N] += A[M,K]^T . D[M,N]                 (weight gradient)
 *
 * With AVX-512, libnerve's own kernels run: every output element is one sequential chain of
 * fused multiply-adds over the reduction index, starting from its initial value, so the result
 * is the same however rows, columns and threads are split. Lab shapes are skinny (784 -> 30),
 * where OpenBLAS 0.3.21 neither vectorises for AVX-512 nor parallelises well.
 * With AVX2, libnerve's 8-lane kernels run on a grid of blocks, each element again one chain
 * (or, B given transposed past 64 steps, 8 lanes of partial sums added in a fixed order) that
 * does not depend on the grid, so a batch split between calls or threads gives the same bits
 * too. Otherwise (the baseline instruction set) OpenBLAS runs on a fixed grid, each block on
 * one thread: the bits do not depend on the thread count, but a row's do on its place in
 * OpenBLAS's call.
 */
#include "internal.h"

#include <cblas.h>

#if NERVE_X86
#  include <immintrin.h>
#endif


/* ---- OpenBLAS on a fixed block grid ----------------------------------------------------- */

enum { BLAS_MB = 64, BLAS_NB = 256, BLAS_KB = 64 };
/* Rows of a block where AVX2's kernels copy B, packed (avx2_nn_run) or a short B given
 * transposed (avx2_nn_transposed): the copy once for 256 rows, not 64 (a block's rows do not
 * change any element's chain). */
enum { AVX2_COPY_MB = 256 };

/* Columns of a block where AVX2's kernels run it: their bits do not depend on the grid, and
 * narrower blocks share small products between threads evenly (the minibatch MLP's 784 -> 300
 * layer on 100 rows: 4 blocks of 64 and 36 rows by 256 and 44 columns ran 1.17x faster on two
 * threads than on one). */
enum { AVX2_NB = 64 };

/* Rows of A a block of the grid takes. AVX2's kernels pack B's panels again for every block
 * (avx2_nn_run), so tall products take blocks of AVX2_COPY_MB rows: with 64, the 2048^3
 * product spent a fifth of its time reading B's rows for the packing, 8 KB apart (133 -> 156
 * GFLOP/s at 2 threads on a Zen 3, `bench/dense_products.c`, alternated). Between 64 and 512
 * rows, where the columns alone make 4 blocks a thread or more, as few blocks of rows as keep
 * 256, evenly: Lab E's CNN then predicted in chunks of about 90 images, whose 6272 -> 784
 * product copied its 19.6 MB of weights twice a chunk, 64 rows at a time (predict-cnn
 * 0.91-1.01 -> 0.66-0.73 s at 2 threads, `nerve bench`, alternated on a Zen 3). Fewer columns
 * keep blocks of 64 rows, so that the threads share small products evenly. */
static int64_t blas_block_rows(bool own, bool bt, int64_t M, int64_t N, int64_t K, int threads) {
  if (!own || (bt && K > 64) || M <= BLAS_MB) return BLAS_MB;
  if (M >= 2 * AVX2_COPY_MB) return AVX2_COPY_MB;
  if ((N + AVX2_NB - 1) / AVX2_NB < 4 * (int64_t)threads) return BLAS_MB;
  const int64_t mblocks = (M + AVX2_COPY_MB - 1) / AVX2_COPY_MB;
  return (M + mblocks - 1) / mblocks;
}
/* Columns of C (or G) a block of the grid takes. */
static int64_t blas_block_cols(bool own) { return own ? AVX2_NB : BLAS_NB; }

#if NERVE_X86
/* With AVX2 the grid's blocks run libnerve's own chains instead (below, "Stored products"). */
NERVE_TARGET_AVX2 static void avx2_nn_stored(float *C, int64_t ldc, const float *A, int64_t lda,
                                             const float *B, int64_t ldb, bool from_c, int64_t M,
                                             int64_t N, int64_t K);
NERVE_TARGET_AVX2 static void avx2_nn_transposed(float *C, int64_t ldc, const float *A, int64_t lda,
                                                 const float *BT, int64_t ldb, bool from_c, int64_t M,
                                                 int64_t N, int64_t K);
NERVE_TARGET_AVX2 static void avx2_tn_stored(float *G, int64_t ldg, const float *A, int64_t lda,
                                             const float *D, int64_t ldd, int64_t M, int64_t N,
                                             int64_t K, float alpha);
#endif

/* Blocks of a grid a thread is worth starting for: those that hold GEMM_GRAIN of the work
 * between them. (It was one more than that, and less a rounding: Lab A's 2,048 x 30 -> 10
 * products, 8 blocks, ran on one thread while the other waited.) */
static int64_t blocks_grain(int64_t work, int64_t blocks) {
  const int64_t each = work / blocks > 0 ? work / blocks : 1;
  return (GEMM_GRAIN + each - 1) / each;
}

typedef struct {
  float *C;
  int64_t ldc;
  const float *A;
  int64_t lda;
  const float *B;
  int64_t ldb;
  bool bt;
  const float *bias;
  bool accumulate;
  bool own; /* AVX2: libnerve's chains, not OpenBLAS's */
  int64_t M, N, K, mblocks, nblocks, rows, cols; /* blas_block_rows, blas_block_cols */
} blas_nn_job;

static void blas_nn_blocks(void *data, int64_t begin, int64_t end) {
  blas_nn_job *j = data;
  for (int64_t t = begin; t < end; t++) {
    int64_t m0 = (t / j->nblocks) * j->rows, n0 = (t % j->nblocks) * j->cols;
    int64_t mb = j->M - m0 < j->rows ? j->M - m0 : j->rows;
    int64_t nb = j->N - n0 < j->cols ? j->N - n0 : j->cols;
    float beta = j->accumulate ? 1.0f : 0.0f;
    if (j->bias) {
      for (int64_t r = 0; r < mb; r++) {
        float *c = j->C + (m0 + r) * j->ldc + n0;
        /* The bias as it is where nothing accumulates (0 + -0 would be +0): the chains start
         * from it, as the listed products' do. */
        for (int64_t q = 0; q < nb; q++) c[q] = j->accumulate ? c[q] + j->bias[n0 + q] : j->bias[n0 + q];
      }
      beta = 1.0f;
    }
    const float *b = j->bt ? j->B + n0 * j->ldb : j->B + n0;
    if (j->K == 0) {
      if (beta == 0.0f)
        for (int64_t r = 0; r < mb; r++) memset(j->C + (m0 + r) * j->ldc + n0, 0, (size_t)nb * 4);
      continue;
    }
#if NERVE_X86
    if (j->own) {
      float *c = j->C + m0 * j->ldc + n0;
      const float *a = j->A + m0 * j->lda;
      if (j->bt)
        avx2_nn_transposed(c, j->ldc, a, j->lda, b, j->ldb, beta == 1.0f, mb, nb, j->K);
      else
        avx2_nn_stored(c, j->ldc, a, j->lda, b, j->ldb, beta == 1.0f, mb, nb, j->K);
      continue;
    }
#endif
    cblas_sgemm(CblasRowMajor, CblasNoTrans, j->bt ? CblasTrans : CblasNoTrans, (int)mb, (int)nb,
                (int)j->K, 1.0f, j->A + m0 * j->lda, (int)j->lda, b, (int)j->ldb, beta,
                j->C + m0 * j->ldc + n0, (int)j->ldc);
  }
}

typedef struct {
  float *G;
  int64_t ldg;
  const float *A;
  int64_t lda;
  const float *D;
  int64_t ldd;
  int64_t M, N, K, nblocks, cols; /* cols: blas_block_cols */
  int64_t rows; /* of G a block takes: BLAS_KB, or fewer (gemm_tn) */
  float alpha;
  bool own; /* AVX2: libnerve's chains, not OpenBLAS's */
} blas_tn_job;

static void blas_tn_blocks(void *data, int64_t begin, int64_t end) {
  blas_tn_job *j = data;
  for (int64_t t = begin; t < end; t++) {
    int64_t k0 = (t / j->nblocks) * j->rows, n0 = (t % j->nblocks) * j->cols;
    int64_t kb = j->K - k0 < j->rows ? j->K - k0 : j->rows;
    int64_t nb = j->N - n0 < j->cols ? j->N - n0 : j->cols;
#if NERVE_X86
    if (j->own) {
      avx2_tn_stored(j->G + k0 * j->ldg + n0, j->ldg, j->A + k0, j->lda, j->D + n0, j->ldd, j->M, nb, kb,
                     j->alpha);
      continue;
    }
#endif
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)kb, (int)nb, (int)j->M, j->alpha,
                j->A + k0, (int)j->lda, j->D + n0, (int)j->ldd, 1.0f, j->G + k0 * j->ldg + n0,
                (int)j->ldg);
  }
}

/* ---- AVX-512 kernels -------------------------------------------------------------------- */
#if NERVE_X86

enum { NN_MR = 8, NR = 32, NN_KC = 2048, TN_MR = 8, TN_KT = 12, TN_KCHUNK = 1024, TN_NARROW_COLUMNS = 12 };
/* Reduction steps per block of a stored product (nn_run): the row tiles of a chunk take each
 * panel's block of B in turn, 128 KB at 1024 steps. Blocks of 2048 (NN_KC, the most a gathered
 * product takes) left each tile waiting on B: Lab E's dense forward (32 x 6272 -> 784, C API
 * built with SwiftPM's flags, medians of 3) 4.5-4.6 -> 4.1 ms at 1 thread, 2.1-2.2 -> 1.9 ms at
 * 2; 512 measured the same as 1024. */
enum { NN_KB = 1024 };
/*
 * Reduction steps a block takes where a chunk of 17 to 32 rows (three or four tiles of NN_MR)
 * meets several panels: each tile after the first reads the panel's block of B again, and 128
 * rows of it (16 KB) stay in L1 where NN_KB's 128 KB did not. Lab E's 6272 -> 784 forward at 32
 * rows on an Emerald Rapids (bench/dense_products.c, alternated): 2.61-2.65 -> 2.53-2.54 ms at 1
 * thread, 1.30-1.37 -> 1.30-1.33 at 2; 256 steps about the same, 512 and 64 no better than 1024.
 * Not measured elsewhere: with two tiles or fewer the block is read again at most once, from 64
 * rows the blocks are packed (pack_block), and with one panel each tile meets B once. A row's
 * chain is the same either way, and with several panels so are the zero columns left out.
 */
enum { NN_SHORT_KB = 128 };

/* Reduction steps a block of a chunk of `rows` against `panels` panels takes (NN_SHORT_KB). */
static int64_t nn_block_steps(int64_t rows, int64_t panels) {
  return panels >= 2 && rows > NN_MR * 2 && rows <= NN_MR * 4 ? NN_SHORT_KB : NN_KB;
}
/* Rows of A a stored product takes at a time, each chunk reading all of B: at 64, inference of
 * Lab E's CNN (90 images a pass through the 6272 -> 784 layer) read its 19.7 MB of weights
 * twice a pass; at 128 once (predict-cnn, medians of 4 alternations: 1.14 -> 0.99 s at 1
 * thread, 0.64 -> 0.57 s at 2). */
enum { NN_MC = 128 };
/* Rows of A from which a stored product copies each block of B it takes (NN_KB x 32, 128 KB)
 * into a contiguous buffer before its row tiles pass over it, as OpenBLAS packs. Read in
 * place, a block's rows lie ldb apart (a 1024-wide layer: 4 KB, so they share a few cache
 * sets), and the 8 to 16 tiles after the first reached it slowly: a 1024 -> 1024 layer on 128
 * rows, 1 thread, best of 30, 113-147 -> 203-212 GFLOP/s; 1000 -> 1000 142 -> 180-189; 784 ->
 * 1024 on 256 rows 172 -> 202-219; 2048^3 130 -> 170-186; 512 -> 512 the same. With four
 * tiles (Lab E's batch of 32) the copy cost more than it saved (its 6272 -> 784 forward
 * 1.46 -> 1.98 ms), so fewer rows read B in place. */
enum { PACK_MIN_ROWS = 64 };
/* Rows of a gathered weight-gradient tile two whole vectors wide (gather_tn_slice): with 12,
 * its 24 accumulators, the broadcasts and the bias's two left clang too few of the 32 vector
 * registers, and it spilled (the fast recipe's second convolution, 256 images, built with
 * SwiftPM's flags: 4.5-4.8 ms at 1 thread with 12 rows, 3.5 ms with 10). */
enum { TN_KT_WIDE = 10 };
/* Rows of A up to which nn with a transposed B uses dot products (nn_dots). */
enum { NN_SMALL_M = 64 };
/* Reduction lengths from which rows are checked for sparse inputs (sparse_rows). */
enum { SPARSE_MIN_K = 128 };

NERVE_TARGET_AVX512 NERVE_INLINE __mmask16 mask_lo(int64_t nr) {
  return nerve__lanes16(nr);
}
NERVE_TARGET_AVX512 NERVE_INLINE __mmask16 mask_hi(int64_t nr) {
  return nr > 16 ? nerve__lanes16(nr - 16) : 0;
}

/*
 * The columns k in [0, n) where at least one of R rows of A (row stride lda) is non-zero,
 * written to ks; returns how many. Kernels loop over this list instead of testing each k, so
 * skipping the zero inputs costs no branch mispredictions.
 */
NERVE_TARGET_AVX512 static int64_t nonzero_columns(int R, const float *A, int64_t lda, int64_t n,
                                                   int32_t *ks) {
  int64_t count = 0;
#ifdef NERVE_NO_SKIP
  for (int64_t k = 0; k < n; k++) ks[k] = (int32_t)k;
  (void)R; (void)A; (void)lda;
  return n;
#endif
  const __m512i step = _mm512_set1_epi32(16);
  __m512i index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  int64_t k = 0;
  /* 64 columns at a time: the four masks and their counts are independent, so the only chain
   * from one step to the next is one addition to count (not a mask-to-count round trip per
   * 16 columns). */
  for (; k + 64 <= n; k += 64) {
    __mmask16 nz[4] = {0, 0, 0, 0};
    for (int q = 0; q < 4; q++)
      for (int r = 0; r < R; r++)
        nz[q] |= _mm512_cmp_ps_mask(_mm512_loadu_ps(A + r * lda + k + 16 * q), _mm512_setzero_ps(),
                                    _CMP_NEQ_UQ);
    int64_t at = count;
    for (int q = 0; q < 4; q++) {
      _mm512_storeu_si512((void *)(ks + at), _mm512_maskz_compress_epi32(nz[q], index));
      at += __builtin_popcount(nz[q]);
      index = _mm512_add_epi32(index, step);
    }
    count = at;
  }
  for (; k < n; k += 16) {
    __mmask16 valid = nerve__lanes16(n - k);
    __mmask16 nz = 0;
    for (int r = 0; r < R; r++)
      nz |= _mm512_mask_cmp_ps_mask(valid, _mm512_maskz_loadu_ps(valid, A + r * lda + k),
                                    _mm512_setzero_ps(), _CMP_NEQ_UQ);
    _mm512_storeu_si512((void *)(ks + count), _mm512_maskz_compress_epi32(nz, index));
    count += __builtin_popcount(nz);
    index = _mm512_add_epi32(index, step);
  }
  return count;
}

/*
 * A[r][k] of a tile's rows: stored (row r at A + r*lda), or gathered (row r's window at base[r],
 * element k at offset off[k]; a convolution's input read in place). `gathered` is a
 * compile-time constant at every call, so each kernel below is compiled once per way.
 */
NERVE_TARGET_AVX512 NERVE_INLINE float a_at(const bool gathered, const float *A, int64_t lda,
                                            const float *const *base, const int32_t *off, int r,
                                            int64_t k) {
  return gathered ? base[r][off[k]] : A[r * lda + k];
}

/*
 * The second vector of a tile's row: all 16 columns (W == 2), or, W == 3, a tile at most 24
 * columns wide, its last 8 alone in 256-bit operations. CPUs that split 512-bit operations in
 * two (Zen 4) run those at twice the rate of masked 512-bit ones, and the fast recipe's first
 * convolution has 24 filters. The upper half of a W == 3 vector is never read.
 */
NERVE_TARGET_AVX512 NERVE_INLINE __m512 hi_load(const int W, __mmask16 m, const float *p) {
  return W == 3 ? _mm512_castps256_ps512(_mm256_maskz_loadu_ps((__mmask8)m, p)) : _mm512_maskz_loadu_ps(m, p);
}
NERVE_TARGET_AVX512 NERVE_INLINE void hi_store(const int W, float *p, __mmask16 m, __m512 v) {
  if (W == 3) _mm256_mask_storeu_ps(p, (__mmask8)m, _mm512_castps512_ps256(v));
  else _mm512_mask_storeu_ps(p, m, v);
}
NERVE_TARGET_AVX512 NERVE_INLINE __m512 hi_fmadd(const int W, __m512 a, __m512 x, __m512 c) {
  return W == 3 ? _mm512_castps256_ps512(_mm256_fmadd_ps(_mm512_castps512_ps256(a), _mm512_castps512_ps256(x),
                                                         _mm512_castps512_ps256(c)))
                : _mm512_fmadd_ps(a, x, c);
}
NERVE_TARGET_AVX512 NERVE_INLINE __m512 hi_add(const int W, __m512 a, __m512 b) {
  return W == 3 ? _mm512_castps256_ps512(_mm256_add_ps(_mm512_castps512_ps256(a), _mm512_castps512_ps256(b)))
                : _mm512_add_ps(a, b);
}
NERVE_TARGET_AVX512 NERVE_INLINE __m512 hi_mul(const int W, __m512 a, __m512 b) {
  return W == 3 ? _mm512_castps256_ps512(_mm256_mul_ps(_mm512_castps512_ps256(a), _mm512_castps512_ps256(b)))
                : _mm512_mul_ps(a, b);
}

/* W for a tile nr columns wide with masks m1 (see hi_load): 1, 2 or 3. */
static inline int tile_w(int W, __mmask16 m1) { return W == 2 && (m1 >> 8) == 0 ? 3 : W; }

/*
 * The start and the end of an R x (16*W) tile of C in registers, for nn_tile (slots_run starts
 * its rows the same way). Start: C (plus the bias, if any) when from_c, else the bias (or zero).
 * Loops over a tile's rows are unrolled by name: gcc otherwise keeps the accumulators on the
 * stack (the CMake build of libnerve ran its products at half speed).
 */
NERVE_TARGET_AVX512 NERVE_INLINE void nn_tile_start(const int R, const int W, __m512 *c0,
                                                    __m512 *c1, const float *C, int64_t ldc,
                                                    __mmask16 m0, __mmask16 m1, bool from_c,
                                                    const float *bias) {
  __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
  __m512 b1 = (bias && W >= 2) ? hi_load(W, m1, bias + 16) : _mm512_setzero_ps();
#  pragma GCC unroll 8
  for (int r = 0; r < R; r++) {
    if (from_c) {
      c0[r] = _mm512_maskz_loadu_ps(m0, C + r * ldc);
      if (W >= 2) c1[r] = hi_load(W, m1, C + r * ldc + 16);
      if (bias) {
        c0[r] = _mm512_add_ps(c0[r], b0);
        if (W >= 2) c1[r] = hi_add(W, c1[r], b1);
      }
    } else {
      c0[r] = b0;
      if (W >= 2) c1[r] = b1;
    }
  }
}

NERVE_TARGET_AVX512 NERVE_INLINE void nn_tile_store(const int R, const int W, const __m512 *c0,
                                                    const __m512 *c1, float *C, int64_t ldc,
                                                    __mmask16 m0, __mmask16 m1) {
#  pragma GCC unroll 8
  for (int r = 0; r < R; r++) {
    _mm512_mask_storeu_ps(C + r * ldc, m0, c0[r]);
    if (W >= 2) hi_store(W, C + r * ldc + 16, m1, c1[r]);
  }
}

/*
 * One R x (16*W) tile of C over kc reduction steps. Shapes: A rows [R, kc] (stride lda),
 * B rows [kc, 16*W] (stride ldb), C tile [R, 16*W] (stride ldc); A read through a_at.
 * from_c: start from C (else from zero). bias (may be NULL) is added to the start value.
 */
NERVE_TARGET_AVX512 NERVE_INLINE void nn_tile(const int R, const int W, const bool gathered,
                                              float *C, int64_t ldc, const float *A, int64_t lda,
                                              const float *const *base, const int32_t *off,
                                              const float *B, int64_t ldb, int64_t kc, const int32_t *ks,
                                              int64_t live, __mmask16 m0, __mmask16 m1,
                                              bool from_c, const float *bias, bool prefetch,
                                              const float *next, int64_t next_lines) {
  __m512 c0[NN_MR], c1[NN_MR];
  nn_tile_start(R, W, c0, c1, C, ldc, m0, m1, from_c, bias);
  /* Stored rows addressed from two bases a few strides apart (rows 0-2 and 4 from A, 3 and 5-7
   * from A + 3 lda), each at lda times 0 to 4: gcc otherwise computes every row's
   * address each step, and ran this tile at 101 GFLOP/s in cache where clang's reached 112. */
  const char *a_lo = (const char *)A, *a_hi = (const char *)(gathered || R <= 3 ? A : A + 3 * lda);
  const int64_t L = gathered ? 0 : lda * (int64_t)sizeof(float);
  /* With a list, only the columns whose inputs are not all zero (see nonzero_columns). */
  const int64_t steps = ks ? live : kc;
  /* Step k's multiply-adds: the same in every loop below. */
#  define NN_TILE_STEP(k)                                                                     \
    do {                                                                                      \
      __m512 x0 = _mm512_maskz_loadu_ps(m0, B + (k) * ldb);                                   \
      __m512 x1 = W >= 2 ? hi_load(W, m1, B + (k) * ldb + 16) : x0;                           \
      /* Gathered tiles have no A (NULL): no offset is applied to it. */                      \
      const char *lo = gathered ? a_lo : a_lo + (k) * (int64_t)sizeof(float);                \
      const char *hi = gathered ? a_hi : a_hi + (k) * (int64_t)sizeof(float);                \
      _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                                   \
        float v;                                                                              \
        if (gathered) v = a_at(true, A, lda, base, off, r, k);                                \
        else {                                                                                \
          static const int8_t from_hi[8] = {0, 0, 0, 1, 0, 1, 1, 1}, times[8] = {0, 1, 2, 0, 4, 2, 3, 4}; \
          const char *b = from_hi[r] ? hi : lo;                                               \
          v = *(const float *)(b + (int64_t)times[r] * L);                                    \
        }                                                                                     \
        __m512 a = _mm512_set1_ps(v);                                                         \
        c0[r] = _mm512_fmadd_ps(a, x0, c0[r]);                                                \
        if (W >= 2) c1[r] = hi_fmadd(W, a, x1, c1[r]);                                        \
      }                                                                                       \
    } while (0)
  /* The steps with a share of the next block of B to fetch into L2 (rows of two lines, stride
   * ldb; see nn_run) come first, then the rest, and the first tile to meet a panel (prefetch)
   * brings it in from memory a few rows ahead: four loops (twice over: listed steps or every
   * one), so that no step tests what it fetches or where its column is. One loop testing all
   * of it ran 45 instructions a step for 16 multiply-adds (gcc), and the front end, not the
   * multiply-adds, set the pace. Lab E's 6272 -> 784 forward on 32 rows, Emerald Rapids
   * (bench/dense_products.c, alternated libraries): gcc 2.54-2.55 -> 2.25 ms at 1 thread,
   * 1.33 -> 1.18-1.20 at 2; clang (SwiftPM) 2.39-2.47 -> 2.28-2.35 and 1.25-1.26 -> 1.18-1.19.
   * The fast recipe's second convolution's input gradient (its lowered product) 0.94-0.96 ->
   * 0.86-0.88 ms at 2 threads (bench/fast_layers.c). The same multiply-adds in the same order. */
  const int64_t fetching = next_lines < steps ? next_lines : steps;
  const char *nf = (const char *)next;
  const int64_t nf_row = ldb * (int64_t)sizeof(float);
  /* K_OF_J: step j's column, an expression in the loops' own j (ks[j], or j itself). */
#  define NN_TILE_LOOPS(K_OF_J)                                                               \
    do {                                                                                      \
      int64_t j = 0;                                                                          \
      if (prefetch) {                                                                         \
        for (; j < fetching; j++) {                                                           \
          const int64_t k = K_OF_J;                                                           \
          _mm_prefetch((const char *)(B + (k + 16) * ldb), _MM_HINT_T0);                      \
          _mm_prefetch(nf + (j >> 1) * nf_row + (j & 1) * 64, _MM_HINT_T1);                   \
          NN_TILE_STEP(k);                                                                    \
        }                                                                                     \
        for (; j < steps; j++) {                                                              \
          const int64_t k = K_OF_J;                                                           \
          _mm_prefetch((const char *)(B + (k + 16) * ldb), _MM_HINT_T0);                      \
          NN_TILE_STEP(k);                                                                    \
        }                                                                                     \
      } else {                                                                                \
        for (; j < fetching; j++) {                                                           \
          const int64_t k = K_OF_J;                                                           \
          _mm_prefetch(nf + (j >> 1) * nf_row + (j & 1) * 64, _MM_HINT_T1);                   \
          NN_TILE_STEP(k);                                                                    \
        }                                                                                     \
        for (; j < steps; j++) {                                                              \
          const int64_t k = K_OF_J;                                                           \
          NN_TILE_STEP(k);                                                                    \
        }                                                                                     \
      }                                                                                       \
    } while (0)
  if (gathered) {
    /* A convolution's windows read in place: nothing to fetch, and with the loops below the
     * fast recipe's second convolution ran 15% slower (0.74 -> 0.86 ms with its pool at 2
     * threads, bench/fast_layers.c; gcc). */
    for (int64_t j = 0; j < steps; j++) {
      const int64_t k = ks ? ks[j] : j;
      NN_TILE_STEP(k);
    }
  } else if (ks) {
    NN_TILE_LOOPS(ks[j]); /* listed steps */
  } else {
    NN_TILE_LOOPS(j);
  }
#  undef NN_TILE_LOOPS
#  undef NN_TILE_STEP
  nn_tile_store(R, W, c0, c1, C, ldc, m0, m1);
}

#  define NN_TILE_CASE(R, GATHERED)                                                            \
    case R:                                                                                    \
      if (W == 3)                                                                              \
        nn_tile(R, 3, GATHERED, C, ldc, A, lda, base, off, B, ldb, kc, ks, live, m0, m1,       \
                from_c, bias, prefetch, next, next_lines);                                     \
      else if (W == 2)                                                                         \
        nn_tile(R, 2, GATHERED, C, ldc, A, lda, base, off, B, ldb, kc, ks, live, m0, m1,       \
                from_c, bias, prefetch, next, next_lines);                                     \
      else                                                                                     \
        nn_tile(R, 1, GATHERED, C, ldc, A, lda, base, off, B, ldb, kc, ks, live, m0, m1,       \
                from_c, bias, prefetch, next, next_lines);                                     \
      break;
#  define NN_TILE_CASES(GATHERED)                                                              \
    NN_TILE_CASE(8, GATHERED) NN_TILE_CASE(7, GATHERED) NN_TILE_CASE(6, GATHERED)              \
    NN_TILE_CASE(5, GATHERED) NN_TILE_CASE(4, GATHERED) NN_TILE_CASE(3, GATHERED)              \
    NN_TILE_CASE(2, GATHERED) NN_TILE_CASE(1, GATHERED)

/* nn_tile for a run-time R and W; A gathered where off is not NULL (then A and lda are unused). */
NERVE_TARGET_AVX512 static void nn_tile_any(int R, int W, float *C, int64_t ldc, const float *A,
                                            int64_t lda, const float *const *base,
                                            const int32_t *off, const float *B, int64_t ldb,
                                            int64_t kc, const int32_t *ks, int64_t live,
                                            __mmask16 m0, __mmask16 m1, bool from_c,
                                            const float *bias, bool prefetch,
                                            const float *next, int64_t next_lines) {
  W = tile_w(W, m1);
  if (off) {
    switch (R) {
      NN_TILE_CASES(true)
      default: break;
    }
  } else {
    switch (R) {
      NN_TILE_CASES(false)
      default: break;
    }
  }
}

/* Lists in flight at once (slots_run): with a panel's two vectors, four independent chains.
 * Four lists (eight chains, twice what hides the FMA's latency) measured slower on a Zen 4:
 * the entries' other work bounds these loops, not the chains, and every list that ends
 * costs each slot its bookkeeping. Lab A's first layer over MNIST's 50,000 images, one
 * thread (bench/sparse_products.c): forward 7.6 -> 7.4 ms, weight gradient 8.4 -> 7.6 (with
 * whole rows read unmasked); three lists were slower still, six and eight twice as slow. */
enum { SPARSE_SLOTS = 2, SLOTS_AHEAD = 2048 };

/* The steps every busy slot can take with no test for its end: the fewest entries any has left. */
NERVE_INLINE int64_t slots_shortest(const int64_t *left, int S) {
  int64_t run = left[0];
#  pragma GCC unroll 4
  for (int s = 1; s < S; s++) run = left[s] < run ? left[s] : run;
  return run;
}

/* Each slot moved on by run steps. */
NERVE_INLINE void slots_advance(int64_t *at, int64_t *left, int S, int64_t run) {
#  pragma GCC unroll 4
  for (int s = 0; s < S; s++) at[s] += run, left[s] -= run;
}

/* How slots_run reads an entry e: its column (or row) k and its value. */
typedef enum {
  LIST_ENTRIES, /* k = ((int32_t *)index)[e], value values[e] (nerve_sparse's columns, values) */
  LIST_ROW_WORDS, /* word = ((uint32_t *)index)[e]: k = word & 0xFFFF, value values[word >> 16] */
  LIST_BLOCK_WORDS, /* word = ((uint16_t *)index)[e]: k = word & 0xFF, value values[word >> 8] */
  LIST_COLUMNS, /* k = ((int32_t *)index)[e], value the list's row of A (values) at k */
  LIST_PIXELS, /* word = ((uint32_t *)index)[e]: k * ldop = word >> 8, value values[word & 0xFF] */
} list_form;

/*
 * Lists [i0, i1) over one panel, each one chain in registers (16 W lanes) over its entries:
 *   out[i] = start + sum over e in [lo[i], hi[i]) of value(e) * op[k(e)]   (in order)
 * where start is out[i] when from_out (plus the bias, if any), else the bias (or zero), as
 * nn_tile_start starts a tile, and k and value are read
 * as `form` says (values is a palette for words). For nn, the lists are rows of A and op is B;
 * for tn, columns of a block of A and op is that block's rows of D, out is G. SPARSE_SLOTS lists
 * advance together for as many steps as the shortest has left, with no test per step; a list
 * that ends is stored and its slot takes the next. Once none are left, an empty slot steps over
 * the padding after the entries (zeros; idle_at) into an accumulator that is never stored, so
 * the last lists still finish without a branch per step. List i's row (of out, and of A at
 * values with stride ldv for LIST_COLUMNS) is rows[i], or i where rows is NULL.
 */
NERVE_TARGET_AVX512 NERVE_INLINE void slots_run(const int W, const list_form form, const bool whole,
                                                const void *index,
                                                const float *values, const int64_t *lo,
                                                const int64_t *hi, int64_t idle_at, int64_t i0,
                                                int64_t i1, const int64_t *rows, int64_t ldv,
                                                float *out, int64_t ldo,
                                                bool from_out, const float *bias,
                                                const float *op, int64_t ldop, __mmask16 k0,
                                                __mmask16 k1) {
  enum { S = SPARSE_SLOTS };
  const __m512 b0 = bias ? _mm512_maskz_loadu_ps(k0, bias) : _mm512_setzero_ps();
  const __m512 b1 = bias && W == 2 ? _mm512_maskz_loadu_ps(k1, bias + 16) : _mm512_setzero_ps();
  __m512 c0[S], c1[S];
  int64_t at[S], left[S], row[S]; /* row: of out, -1 for an idle slot */
  const float *row_of[S]; /* LIST_COLUMNS: the list's row of A */
  int64_t next = i0;
  /*
   * Stored rows' lists come from memory once per epoch, and rows [i0, i1) lie one after another
   * there: the slots read them as one stream, S entries (a line every LINE_STEPS steps), a row
   * taken when one ends starting where the others have not read yet. So they are fetched as
   * one stream, SLOTS_AHEAD bytes ahead of the first row's start and in step with the
   * reading; fetching ahead of each slot's own place had every row start cold (Lab A's
   * forward, 50,000 rows, C API, 1 thread, best of 40: 9.4-11.3 -> 7.7-8.8 ms). Entries'
   * values (LIST_ENTRIES) are as wide as their columns: the same offsets. A block's column
   * lists (LIST_BLOCK_WORDS) are read more slowly, half as wide, and measured no faster
   * fetched (a test per step cost them 8%); LIST_COLUMNS' lists were just written.
   */
  const bool fetch_ahead = form == LIST_ENTRIES || form == LIST_ROW_WORDS;
  enum { LINE_STEPS = 64 / (S * 4) };
  int64_t ahead = (i0 < i1 ? lo[i0] * 4 : 0) + SLOTS_AHEAD, steps = 0;
#  pragma GCC unroll 4
  for (int s = 0; s < S; s++) left[s] = 0, row[s] = -1, at[s] = idle_at, row_of[s] = values;
  for (;;) {
    /* Store the lists that ended and start the next ones (a list may be empty). */
    int busy = 0;
#  pragma GCC unroll 4
    for (int s = 0; s < S; s++) {
      while (left[s] == 0) {
        if (row[s] >= 0) {
          _mm512_mask_storeu_ps(out + row[s] * ldo, k0, c0[s]);
          if (W == 2) _mm512_mask_storeu_ps(out + row[s] * ldo + 16, k1, c1[s]);
        }
        /* An empty list leaves out as it is (from_out without a bias); otherwise it is stored
         * as its start. */
        while (from_out && !bias && next < i1 && hi[next] == lo[next]) next++;
        if (next == i1) {
          row[s] = -1, at[s] = idle_at, left[s] = NERVE_SPARSE_PAD, row_of[s] = values;
          c0[s] = b0, c1[s] = b1;
          break;
        }
        const int64_t i = next++;
        row[s] = rows ? rows[i] : i;
        at[s] = lo[i], left[s] = hi[i] - lo[i];
        if (form == LIST_COLUMNS) row_of[s] = values + row[s] * ldv;
        if (from_out) {
          c0[s] = _mm512_maskz_loadu_ps(k0, out + row[s] * ldo);
          if (W == 2) c1[s] = _mm512_maskz_loadu_ps(k1, out + row[s] * ldo + 16);
          if (bias) c0[s] = _mm512_add_ps(c0[s], b0), c1[s] = _mm512_add_ps(c1[s], b1);
        } else {
          c0[s] = b0, c1[s] = b1;
        }
      }
      busy += row[s] >= 0;
    }
    if (busy == 0) return;
    const int64_t run = slots_shortest(left, S);
    for (int64_t t = 0; t < run; t++) {
#  pragma GCC unroll 4
      for (int s = 0; s < S; s++) {
        const int64_t e = at[s] + t;
        int64_t k;
        float v;
        if (form == LIST_PIXELS) {
          const uint32_t word = ((const uint32_t *)index)[e];
          k = word >> 8, v = values[word & 0xFF];
        } else if (form == LIST_ENTRIES) {
          k = ((const int32_t *)index)[e], v = values[e];
        } else if (form == LIST_ROW_WORDS) {
          const uint32_t word = ((const uint32_t *)index)[e];
          k = word & 0xFFFF, v = values[word >> 16];
        } else if (form == LIST_BLOCK_WORDS) {
          const uint32_t word = ((const uint16_t *)index)[e];
          k = word & 0xFF, v = values[word >> 8];
        } else {
          k = ((const int32_t *)index)[e], v = row_of[s][k];
        }
        const float *b = op + (form == LIST_PIXELS ? k : k * ldop);
        const __m512 a = _mm512_set1_ps(v);
        /* Whole rows are read unmasked, so each load is the multiply-add's own operand: one
         * instruction fewer an entry and vector (lanes past the panel's hold zeros, and their
         * sums are never stored). */
        c0[s] = _mm512_fmadd_ps(a, whole ? _mm512_loadu_ps(b) : _mm512_maskz_loadu_ps(k0, b), c0[s]);
        if (W == 2)
          c1[s] = _mm512_fmadd_ps(a, whole ? _mm512_loadu_ps(b + 16) : _mm512_maskz_loadu_ps(k1, b + 16),
                                  c1[s]);
      }
      if (fetch_ahead && ((steps + t) & (LINE_STEPS - 1)) == 0) {
        _mm_prefetch((const char *)index + ahead, _MM_HINT_T0);
        if (form == LIST_ENTRIES) _mm_prefetch((const char *)values + ahead, _MM_HINT_T0);
        ahead += 64;
      }
    }
    steps += run;
    slots_advance(at, left, S, run);
  }
}

/* slots_run for a W and form known at run time (W 1: k1 is not read). Inlined, so that each
 * caller's constant arguments (the form, from_out, rows) still fold into its copy. `whole`: op's
 * rows may be read as 16 W floats each, zeros past the panel's columns (a padded copy, or
 * columns that fill the vectors); it is taken for the stored lists' forms only. */
NERVE_TARGET_AVX512 NERVE_INLINE void slots_any(int W, list_form form, bool whole, const void *index,
                                          const float *values, const int64_t *lo,
                                          const int64_t *hi, int64_t idle_at, int64_t i0,
                                          int64_t i1, const int64_t *rows, int64_t ldv,
                                          float *out, int64_t ldo, bool from_out,
                                          const float *bias, const float *op, int64_t ldop,
                                          __mmask16 k0, __mmask16 k1) {
#  define SLOTS_RUN(FORM, WHOLE)                                                               \
    do {                                                                                       \
      if (W == 2)                                                                              \
        slots_run(2, FORM, WHOLE, index, values, lo, hi, idle_at, i0, i1, rows, ldv, out, ldo,  \
                  from_out, bias, op, ldop, k0, k1);                                           \
      else                                                                                     \
        slots_run(1, FORM, WHOLE, index, values, lo, hi, idle_at, i0, i1, rows, ldv, out, ldo,  \
                  from_out, bias, op, ldop, k0, 0);                                            \
    } while (0)
#  define SLOTS_CASE(FORM)                                                                     \
    case FORM: SLOTS_RUN(FORM, false); break;
#  define SLOTS_CASE_WHOLE(FORM)                                                               \
    case FORM:                                                                                 \
      if (whole)                                                                               \
        SLOTS_RUN(FORM, true);                                                                 \
      else                                                                                     \
        SLOTS_RUN(FORM, false);                                                                \
      break;
  switch (form) {
    SLOTS_CASE(LIST_ENTRIES) SLOTS_CASE_WHOLE(LIST_ROW_WORDS) SLOTS_CASE_WHOLE(LIST_BLOCK_WORDS)
    SLOTS_CASE(LIST_COLUMNS) SLOTS_CASE(LIST_PIXELS)
  }
#  undef SLOTS_CASE_WHOLE
#  undef SLOTS_CASE
#  undef SLOTS_RUN
}

/* c + a d in the lanes k selects, c's own value in the others: one masked multiply-add, the
 * bits of _mm512_mask3_fmadd_ps(a, d, c, k). As asm, since clang makes that intrinsic an
 * unmasked multiply-add and a masked move (twice the instructions, a chain one step longer):
 * Lab A's weight gradient by pairs of columns took 5.2 ms an epoch so against gcc's 3.6. */
NERVE_TARGET_AVX512 NERVE_INLINE __m512 fmadd_masked(__m512 c, __m512 a, __m512 d, __mmask16 k) {
  __asm__("vfmadd231ps {%[d], %[a], %[c]%{%[k]%}|%[c]%{%[k]%}, %[a], %[d]}"
          : [c] "+v"(c)
          : [a] "v"(a), [d] "v"(d), [k] "Yk"(k));
  return c;
}

/*
 * Pairs [q0, q1) of a block's columns (nerve_sparse's pair lists) over one panel: rows 2q and
 * 2q + 1 of out each one chain in registers, as slots_run's LIST_BLOCK_WORDS lists make them
 * (from out, then fma(value, op's row, sum) over the column's entries, rows in order), both
 * fed by one read of each op row either column holds. A word's absent value (+0.0, the only
 * one whose bits are all zero) masks its column's multiply-adds off, so each chain holds its
 * own column's terms alone, exactly, whatever op holds (infinities, NaNs) and whatever out's
 * sums are (-0). A pair with no entries leaves out as it is. op's rows are whole panels
 * (16 W floats, zeros past the columns). Two pairs advance together, eight chains with W 2:
 * what two multiply-add units a cycle need; one column's lists give four, and a row of D read
 * once for two columns. Lab A's columns (k, k + 1) share 42% of their rows.
 */
NERVE_TARGET_AVX512 NERVE_INLINE void pairs_run(const int W, const uint32_t *words,
                                                const float *palette, const int64_t *at0,
                                                int64_t idle_at, int64_t q0, int64_t q1,
                                                float *out, int64_t ldo, const float *op,
                                                int64_t ldop, __mmask16 k0, __mmask16 k1) {
  enum { S = SPARSE_SLOTS };
  __m512 c0[S], c1[S], c2[S], c3[S]; /* row 2q's vectors, then row 2q + 1's */
  int64_t at[S], left[S], pair[S];   /* pair: -1 for an idle slot */
  int64_t next = q0;
#  pragma GCC unroll 4
  for (int s = 0; s < S; s++) left[s] = 0, pair[s] = -1, at[s] = idle_at;
  for (;;) {
    int busy = 0;
#  pragma GCC unroll 4
    for (int s = 0; s < S; s++) {
      while (left[s] == 0) {
        if (pair[s] >= 0) {
          float *g = out + 2 * pair[s] * ldo;
          _mm512_mask_storeu_ps(g, k0, c0[s]);
          _mm512_mask_storeu_ps(g + ldo, k0, c2[s]);
          if (W == 2) _mm512_mask_storeu_ps(g + 16, k1, c1[s]), _mm512_mask_storeu_ps(g + ldo + 16, k1, c3[s]);
        }
        while (next < q1 && at0[next + 1] == at0[next]) next++;
        if (next == q1) {
          pair[s] = -1, at[s] = idle_at, left[s] = NERVE_SPARSE_PAD;
          c0[s] = c1[s] = c2[s] = c3[s] = _mm512_setzero_ps();
          break;
        }
        const int64_t q = next++;
        const float *g = out + 2 * q * ldo;
        pair[s] = q, at[s] = at0[q], left[s] = at0[q + 1] - at0[q];
        c0[s] = _mm512_maskz_loadu_ps(k0, g), c2[s] = _mm512_maskz_loadu_ps(k0, g + ldo);
        c1[s] = c3[s] = _mm512_setzero_ps();
        if (W == 2) c1[s] = _mm512_maskz_loadu_ps(k1, g + 16), c3[s] = _mm512_maskz_loadu_ps(k1, g + ldo + 16);
      }
      busy += pair[s] >= 0;
    }
    if (busy == 0) return;
    const int64_t run = slots_shortest(left, S);
    for (int64_t t = 0; t < run; t++) {
#  pragma GCC unroll 4
      for (int s = 0; s < S; s++) {
        const uint32_t word = words[at[s] + t];
        const float *d = op + (word & 0xFF) * ldop;
        const __m512 a = _mm512_set1_ps(palette[(word >> 8) & 0xFF]);
        const __m512 b = _mm512_set1_ps(palette[word >> 16]);
        const __mmask16 ma = _mm512_test_epi32_mask(_mm512_castps_si512(a), _mm512_castps_si512(a));
        const __mmask16 mb = _mm512_test_epi32_mask(_mm512_castps_si512(b), _mm512_castps_si512(b));
        const __m512 d0 = _mm512_loadu_ps(d);
        c0[s] = fmadd_masked(c0[s], a, d0, ma);
        c2[s] = fmadd_masked(c2[s], b, d0, mb);
        if (W == 2) {
          const __m512 d1 = _mm512_loadu_ps(d + 16);
          c1[s] = fmadd_masked(c1[s], a, d1, ma);
          c3[s] = fmadd_masked(c3[s], b, d1, mb);
        }
      }
    }
    slots_advance(at, left, S, run);
  }
}

/*
 * Lists each of R rows' non-zero columns in [0, n) in ks, one row's list after the other (row
 * r's live[r] columns follow row r - 1's; ks has room for R * n + 16), and returns whether the
 * rows are sparse enough to go over their own lists: under half their inputs non-zero (the
 * lists are then complete; otherwise they may not be).
 * Only wide inputs are tried (hidden layers' few, dense activations are not worth listing).
 */
NERVE_TARGET_AVX512 static bool sparse_rows(int R, const float *A, int64_t lda, int64_t n,
                                            int32_t *ks, int64_t *live) {
  if (n < SPARSE_MIN_K) return false;
  int64_t total = 0;
  for (int r = 0; r < R; r++) {
    live[r] = nonzero_columns(1, A + r * lda, lda, n, ks + total);
    total += live[r];
    /* Dense rows (a hidden layer's activations) give up early: over the budget, or a first
     * row three quarters full. */
    if (2 * total >= R * n || (r == 0 && 4 * total > 3 * n)) return false;
  }
  return true;
}

typedef struct {
  float *C;
  int64_t ldc;
  const float *A;
  int64_t lda;
  const float *B; /* B itself, or B^T packed into 32-column panels [panels][K][32] */
  int64_t ldb;
  bool packed;
  const float *bias;
  bool accumulate;
  int64_t M, N, K, panels;
  bool split_rows; /* threads take chunks of rows of C (else split panels) */
  float *pack;     /* NULL, or NN_KB * NR floats a member, 64-byte aligned, for pack_block */
  nerve__nt_packed lanes; /* dots: A's live columns packed (rows in lanes, nn_lanes), or
                             lanes.P NULL (dot products over k, dots_block) */
  const nerve__activation_step *then; /* split_rows: applied to each chunk of rows as it is
                                         finished (or NULL) */
} nn_job;

/* Columns one_panel lists before running them: nn_run's lists for a chunk's 16 tiles. */
enum { PANEL_LIST = NN_MC / NN_MR * (NN_KB + 16) };

/* The rows one_panel has listed (their columns in ks[0, used), their values read from A) run
 * as slots; the zeros after them are what an idle slot steps over. */
NERVE_TARGET_AVX512 static void run_listed(int W, int32_t *ks, int64_t used, const int64_t *lo,
                                           const int64_t *hi, const int64_t *rows, int64_t listed,
                                           const float *A, int64_t lda, float *C, int64_t ldc,
                                           bool from_c, const float *bias, const float *B,
                                           int64_t ldb, __mmask16 m0, __mmask16 m1) {
  memset(ks + used, 0, NERVE_SPARSE_PAD * sizeof *ks);
  slots_any(W, LIST_COLUMNS, false, ks, A, lo, hi, used, 0, listed, rows, lda, C, ldc, from_c, bias, B,
            ldb, m0, m1);
}

/* Panel p's block of B from reduction step k0 (packed: panels one after another). */
static inline const float *nn_block(const nn_job *j, int64_t p, int64_t k0) {
  return j->packed ? j->B + p * j->K * NR + k0 * NR : j->B + p * NR + k0 * j->ldb;
}

/*
 * nn_run's reduction block [k0, k0 + kc) of rows [mc, mce) against panel p alone: tile by tile,
 * rows whose inputs are sparse (under half non-zero, as sparse_rows decides) have their
 * non-zero columns listed in ks, and run as slots reading their values from A (slots_run)
 * once ks is full or the chunk ends; other tiles take the plain register tile.
 * ks: room for PANEL_LIST columns.
 */
NERVE_TARGET_AVX512 static void one_panel(const nn_job *j, int64_t mc, int64_t mce, int64_t k0,
                                          int64_t kc, int64_t p, int32_t *ks) {
  int64_t col = p * NR, nr = j->N - col < NR ? j->N - col : NR;
  const float *Bp = nn_block(j, p, k0);
  int64_t ldb = j->packed ? NR : j->ldb;
  int W = nr > 16 ? 2 : 1;
  bool from_c = k0 > 0 || j->accumulate;
  const float *bias = k0 == 0 && j->bias ? j->bias + col : NULL;
  const __mmask16 m0 = mask_lo(nr), m1 = mask_hi(nr);
  const float *Ac = j->A + mc * j->lda + k0;
  float *Cc = j->C + mc * j->ldc + col;
  int64_t live[NN_MR], lo[NN_MC], hi[NN_MC], rows[NN_MC];
  int64_t listed = 0, used = 0;
  for (int64_t m = mc; m < mce; m += NN_MR) {
    int R = (int)(mce - m < NN_MR ? mce - m : NN_MR);
    const float *A = j->A + m * j->lda + k0;
    if (used + R * kc + 16 + NERVE_SPARSE_PAD > PANEL_LIST) {
      run_listed(W, ks, used, lo, hi, rows, listed, Ac, j->lda, Cc, j->ldc, from_c, bias, Bp,
                 ldb, m0, m1);
      listed = used = 0;
    }
    if (sparse_rows(R, A, j->lda, kc, ks + used, live)) {
      for (int r = 0; r < R; r++, listed++) {
        lo[listed] = used, hi[listed] = used + live[r], rows[listed] = m - mc + r;
        used += live[r];
      }
      continue;
    }
    nn_tile_any(R, W, j->C + m * j->ldc + col, j->ldc, A, j->lda, NULL, NULL, Bp, ldb, kc, NULL,
                kc, m0, m1, from_c, bias, m == mc, NULL, 0);
  }
  if (listed > 0)
    run_listed(W, ks, used, lo, hi, rows, listed, Ac, j->lda, Cc, j->ldc, from_c, bias, Bp, ldb,
               m0, m1);
}

/* The kc rows of B's panel block at B (row stride ldb, nr <= 32 columns) into pk, rows NR
 * apart, zero past nr. The block comes from L2 or memory: rows 24 ahead are asked for. */
NERVE_TARGET_AVX512 static void pack_block(float *pk, const float *B, int64_t ldb, int64_t kc,
                                           int64_t nr) {
  const __mmask16 m0 = mask_lo(nr), m1 = mask_hi(nr);
  for (int64_t r = 0; r < kc; r++) {
    _mm_prefetch((const char *)(B + (r + 24) * ldb), _MM_HINT_T0);
    if (nr > 16) _mm_prefetch((const char *)(B + (r + 24) * ldb + 16), _MM_HINT_T0);
    _mm512_store_ps(pk + r * NR, _mm512_maskz_loadu_ps(m0, B + r * ldb));
    _mm512_store_ps(pk + r * NR + 16, _mm512_maskz_loadu_ps(m1, B + r * ldb + 16));
  }
}

/* Whether the row tiles of a chunk [mc, mce) copy each panel's block of B first (pack_block):
 * B read in place, enough tiles to share the copy, and inputs dense enough that the tiles
 * read most of its rows (live: each tile's listed columns of kc). */
static bool packs_blocks(const nn_job *j, const float *pk, int64_t mc, int64_t mce, int64_t kc,
                         const int64_t *live) {
  if (!pk || j->packed || mce - mc < PACK_MIN_ROWS) return false;
  const int64_t tiles = (mce - mc + NN_MR - 1) / NN_MR;
  int64_t listed = 0;
  for (int64_t t = 0; t < tiles; t++) listed += live[t];
  return 2 * listed >= tiles * kc;
}

/* pk: this member's buffer for packed blocks of B (NULL: none, B read in place). */
NERVE_TARGET_AVX512 static void nn_run(nn_job *j, int64_t r0, int64_t r1, int64_t p0,
                                       int64_t p1, float *pk) {
  enum { TILES = NN_MC / NN_MR };
  /* Lists for the (up to) 16 row tiles of a 128-row chunk, built once and reused by every panel,
   * so each panel of B is read once per chunk rather than once per tile. */
  int32_t ks[TILES][NN_KB + 16]; /* 66 KB of stack */
  int64_t live[TILES];
  for (int64_t mc = r0; mc < r1; mc += NN_MC) {
    int64_t mce = mc + NN_MC < r1 ? mc + NN_MC : r1;
    const int64_t kb = nn_block_steps(mce - mc, p1 - p0); /* reduction steps a block */
    for (int64_t k0 = 0; k0 < j->K || k0 == 0; k0 += kb) {
      int64_t kc = j->K - k0 < kb ? j->K - k0 : kb;
      bool first = k0 == 0;
      if (p1 - p0 == 1) {
        /* One panel: each tile meets B once, so its rows' own lists serve it better than a
         * shared one, when its inputs are sparse. */
        one_panel(j, mc, mce, k0, kc, p0, ks[0]);
      } else {
        /* Several panels: a list shared by each tile's rows pays for itself across them. */
        for (int64_t m = mc, t = 0; m < mce; m += NN_MR, t++) {
          int R = (int)(mce - m < NN_MR ? mce - m : NN_MR);
          live[t] = nonzero_columns(R, j->A + m * j->lda + k0, j->lda, kc, ks[t]);
        }
        const int64_t ldb_in_place = j->packed ? NR : j->ldb;
        const bool pack = packs_blocks(j, pk, mc, mce, kc, live);
        for (int64_t p = p0; p < p1; p++) {
          int64_t col = p * NR, nr = j->N - col < NR ? j->N - col : NR;
          const float *Bp = nn_block(j, p, k0);
          int64_t ldb = ldb_in_place;
          if (pack) {
            pack_block(pk, Bp, ldb, kc, nr);
            Bp = pk, ldb = NR;
          }
          /* While a panel's block is in use, its tiles fetch the next block into L2, a share
           * each, so the stream from memory runs under all their products rather than under
           * the first tile's alone. */
          const float *next = NULL;
          int64_t next_rows = 0;
          if (p + 1 < p1) {
            next = nn_block(j, p + 1, k0), next_rows = kc;
          } else if (k0 + kb < j->K) {
            next = nn_block(j, p0, k0 + kb);
            next_rows = j->K - k0 - kb < kb ? j->K - k0 - kb : kb;
          }
          const int64_t tiles = (mce - mc + NN_MR - 1) / NN_MR;
          const int64_t share = (next_rows + tiles - 1) / tiles;
          for (int64_t m = mc, t = 0; m < mce; m += NN_MR, t++) {
            int R = (int)(mce - m < NN_MR ? mce - m : NN_MR);
            const int64_t from = t * share < next_rows ? t * share : next_rows;
            const int64_t rows = next_rows - from < share ? next_rows - from : share;
            /* The first tile fetches B's rows ahead, unless the copy has brought them. Where the
             * block is packed, the tiles' share of the next block is stepped by the copy's
             * stride (NR), so those fetches land on B's first rows after next, not on the next
             * block: stepped by B's own stride instead, 2048^3 ran at 213-222 GFLOP/s against
             * 222-225 at 2 threads, and with no fetches at 204-218 against 219-222
             * (bench/dense_products.c, alternated), so it is left as it is. */
            nn_tile_any(R, nr > 16 ? 2 : 1, j->C + m * j->ldc + col, j->ldc, j->A + m * j->lda + k0, j->lda,
                        NULL, NULL, Bp, ldb, kc, live[t] < kc ? ks[t] : NULL, live[t], mask_lo(nr), mask_hi(nr),
                        !first || j->accumulate, first ? (j->bias ? j->bias + col : NULL) : NULL, t == 0 && !pack,
                        next ? next + from * ldb_in_place : NULL, 2 * rows);
          }
        }
      }
      if (kc == 0) break;
    }
  }
}

static void nn_member(void *data, int t, int nt) {
  nn_job *j = data;
  float *pk = j->pack ? j->pack + (int64_t)t * NN_KB * NR : NULL;
  if (j->split_rows) {
    /* Each thread its own contiguous share of the rows, on tile boundaries (a row's chain does
     * not depend on its share), run NN_MC rows at a time: about the share of the rows that the
     * element-wise layers after a product take (nerve__parallel_for), so that they read what
     * their own core wrote. Rows taken chunk by chunk as threads became free left about half
     * of them in the other core's cache: Lab A's epoch, with the listed products split the same
     * way, 15.0-15.8 -> 14.0-14.7 ms at 2 threads in slow minutes, 9.9-10.0 -> 9.8-9.9 in quiet
     * ones (`nerve bench --workloads lab-a`, alternated 14 times). */
    const int64_t tiles = (j->M + NN_MR - 1) / NN_MR;
    const int64_t a = tiles * t / nt * NN_MR, b_tile = tiles * (t + 1) / nt * NN_MR;
    const int64_t b = b_tile < j->M ? b_tile : j->M;
    for (int64_t m = a; m < b; m += NN_MC) {
      const int64_t e = m + NN_MC < b ? m + NN_MC : b;
      nn_run(j, m, e, 0, j->panels, pk);
      /* Every panel and reduction block of these rows is done: they are final, and still in
       * this core's cache. */
      nerve__activation_rows(j->then, j->C, j->ldc, j->N, m, e);
    }
  } else {
    int64_t a = j->panels * t / nt, b = j->panels * (t + 1) / nt;
    if (a < b) nn_run(j, 0, j->M, a, b, pk);
  }
}

typedef struct {
  float *P;
  const float *BT; /* [N, K], row stride ldb */
  int64_t ldb, N, K;
} pack_job;

/* A 16 x 16 block transposed in registers: r[i] holds row i; on return r[i] holds column i.
 * Pairs of rows interleave, then quads, then the 128-bit quarters move into place. */
NERVE_TARGET_AVX512 NERVE_INLINE void transpose16(__m512 *r) {
  __m512 t[16], u[16];
#  pragma GCC unroll 8
  for (int i = 0; i < 8; i++) { /* per quarter: row 2i's and 2i+1's columns 0-1, then 2-3 */
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#  pragma GCC unroll 4
  for (int i = 0; i < 4; i++) { /* u[4i + c], quarter L: rows 4i..4i+3 of column 4L + c */
    u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
#  pragma GCC unroll 4
  for (int c = 0; c < 4; c++) {
    __m512 s0 = _mm512_shuffle_f32x4(u[c], u[4 + c], _MM_SHUFFLE(2, 0, 2, 0));
    __m512 s1 = _mm512_shuffle_f32x4(u[c], u[4 + c], _MM_SHUFFLE(3, 1, 3, 1));
    __m512 s2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(2, 0, 2, 0));
    __m512 s3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(3, 1, 3, 1));
    r[c] = _mm512_shuffle_f32x4(s0, s2, _MM_SHUFFLE(2, 0, 2, 0));
    r[4 + c] = _mm512_shuffle_f32x4(s1, s3, _MM_SHUFFLE(2, 0, 2, 0));
    r[8 + c] = _mm512_shuffle_f32x4(s0, s2, _MM_SHUFFLE(3, 1, 3, 1));
    r[12 + c] = _mm512_shuffle_f32x4(s1, s3, _MM_SHUFFLE(3, 1, 3, 1));
  }
}

/* P[p][k][c] = BT[p*32 + c][k], zero beyond N: 16 x 16 blocks transposed in registers (the
 * scalar copy's strided stores took 1.35% of the fast recipe's epoch at 1 thread, packing the
 * dense layer's 800 x 256 weight every step). Only the AVX-512 products pack. */
NERVE_TARGET_AVX512 static void pack_panels(void *data, int64_t begin, int64_t end) {
  pack_job *j = data;
  for (int64_t p = begin; p < end; p++) {
    float *dst = j->P + p * j->K * NR;
    for (int64_t c0 = p * NR; c0 < p * NR + NR; c0 += 16) {
      const int64_t rows = j->N - c0 < 0 ? 0 : (j->N - c0 < 16 ? j->N - c0 : 16);
      for (int64_t k0 = 0; k0 < j->K; k0 += 16) {
        const __mmask16 m = nerve__lanes16(j->K - k0);
        const int64_t ks = j->K - k0 < 16 ? j->K - k0 : 16;
        __m512 r[16];
#  pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
          r[i] = i < rows ? _mm512_maskz_loadu_ps(m, j->BT + (c0 + i) * j->ldb + k0) : _mm512_setzero_ps();
        transpose16(r);
        for (int64_t i = 0; i < ks; i++) _mm512_storeu_ps(dst + (k0 + i) * NR + (c0 - p * NR), r[i]);
      }
    }
  }
}

/*
 * tn, many rows (M large): rank-8 updates. For 8 rows of A and D at a time, every G row in
 * this thread's range gets G[k,:] += sum_r A[m+r,k] D[m+r,:]: A and D stream once, G stays in
 * cache. Shapes: G [kn,N] (ldg), A [R,kn] (lda, read through a_at), D [R,N] (ldd): a slice
 * of kn rows of G, its first row at G, and the matching columns of A.
 */
NERVE_TARGET_AVX512 NERVE_INLINE void tn_rank(const int R, const int W, const bool gathered,
                                              float *G, int64_t ldg, const float *A, int64_t lda,
                                              const float *const *base, const int32_t *off,
                                              const float *D, int64_t ldd, int64_t kn,
                                              const int32_t *ks, int64_t live, __mmask16 m0,
                                              __mmask16 m1, float alpha) {
  __m512 d0[TN_MR], d1[TN_MR];
  const __m512 scale = _mm512_set1_ps(alpha);
  for (int r = 0; r < R; r++) {
    d0[r] = _mm512_mul_ps(scale, _mm512_maskz_loadu_ps(m0, D + r * ldd));
    if (W == 2) d1[r] = _mm512_mul_ps(scale, _mm512_maskz_loadu_ps(m1, D + r * ldd + 16));
  }
  /* With a list, only rows k whose inputs are not all zero (see nonzero_columns). */
  const int64_t steps = ks ? live : kn;
  for (int64_t j = 0; j < steps; j++) {
    const int64_t k = ks ? ks[j] : j;
    float *g = G + k * ldg;
    __m512 g0 = _mm512_maskz_loadu_ps(m0, g);
    __m512 g1 = W == 2 ? _mm512_maskz_loadu_ps(m1, g + 16) : g0;
    for (int r = 0; r < R; r++) {
      __m512 av = _mm512_set1_ps(a_at(gathered, A, lda, base, off, r, k));
      g0 = _mm512_fmadd_ps(av, d0[r], g0);
      if (W == 2) g1 = _mm512_fmadd_ps(av, d1[r], g1);
    }
    _mm512_mask_storeu_ps(g, m0, g0);
    if (W == 2) _mm512_mask_storeu_ps(g + 16, m1, g1);
  }
}

#  define TN_RANK_CASE(R, GATHERED)                                                            \
    case R:                                                                                    \
      if (W == 2)                                                                              \
        tn_rank(R, 2, GATHERED, G, ldg, A, lda, base, off, D, ldd, kn, ks, live, m0, m1, alpha); \
      else                                                                                     \
        tn_rank(R, 1, GATHERED, G, ldg, A, lda, base, off, D, ldd, kn, ks, live, m0, m1, alpha); \
      break;
#  define TN_RANK_CASES(GATHERED)                                                              \
    TN_RANK_CASE(8, GATHERED) TN_RANK_CASE(7, GATHERED) TN_RANK_CASE(6, GATHERED)              \
    TN_RANK_CASE(5, GATHERED) TN_RANK_CASE(4, GATHERED) TN_RANK_CASE(3, GATHERED)              \
    TN_RANK_CASE(2, GATHERED) TN_RANK_CASE(1, GATHERED)

/* tn_rank for a run-time R and W; A gathered where off is not NULL (then A and lda are unused). */
NERVE_TARGET_AVX512 static void tn_rank_any(int R, int W, float *G, int64_t ldg, const float *A,
                                            int64_t lda, const float *const *base,
                                            const int32_t *off, const float *D, int64_t ldd,
                                            int64_t kn, const int32_t *ks, int64_t live,
                                            __mmask16 m0, __mmask16 m1, float alpha) {
  if (off) {
    switch (R) {
      TN_RANK_CASES(true)
      default: break;
    }
  } else {
    switch (R) {
      TN_RANK_CASES(false)
      default: break;
    }
  }
}

/*
 * tn_rank for one row of A over its own list: G[k,:] += alpha * a_k * D[0,:] for the live
 * columns k = ks[j], with a_k = V[k] (A's row) or, by_entry, V[j] (listed entries). The same
 * chain as tn_rank with R = 1. whole: G is a copy padded to one whole panel a row (ldg 32),
 * read and written as whole vectors (its padding adds D's masked-off zeros), which measured
 * 5-10% faster on Lab A than masked stores.
 */
NERVE_TARGET_AVX512 NERVE_INLINE void tn_entries(const int W, const bool by_entry,
                                                 const bool whole, float *G, int64_t ldg,
                                                 const int32_t *ks, const float *V, int64_t live,
                                                 const float *D, __mmask16 m0, __mmask16 m1,
                                                 float alpha) {
  const __m512 scale = _mm512_set1_ps(alpha);
  const __m512 d0 = _mm512_mul_ps(scale, _mm512_maskz_loadu_ps(m0, D));
  const __m512 d1 = W == 2 ? _mm512_mul_ps(scale, _mm512_maskz_loadu_ps(m1, D + 16)) : d0;
  const __mmask16 g0 = whole ? (__mmask16)0xFFFF : m0, g1 = whole ? (__mmask16)0xFFFF : m1;
  for (int64_t j = 0; j < live; j++) {
    const int64_t k = ks[j];
    float *g = G + k * (whole ? NR : ldg);
    const __m512 av = _mm512_set1_ps(V[by_entry ? j : k]);
    _mm512_mask_storeu_ps(g, g0, _mm512_fmadd_ps(av, d0, _mm512_maskz_loadu_ps(g0, g)));
    if (W == 2) _mm512_mask_storeu_ps(g + 16, g1, _mm512_fmadd_ps(av, d1, _mm512_maskz_loadu_ps(g1, g + 16)));
  }
}

/* tn_entries for run-time choices; whole always takes both vectors of the padded row. */
NERVE_TARGET_AVX512 static void tn_entries_any(int W, bool by_entry, bool whole, float *G,
                                               int64_t ldg, const int32_t *ks, const float *V,
                                               int64_t live, const float *D, __mmask16 m0,
                                               __mmask16 m1, float alpha) {
  if (whole) tn_entries(2, true, true, G, ldg, ks, V, live, D, m0, m1, alpha);
  else if (by_entry && W == 2) tn_entries(2, true, false, G, ldg, ks, V, live, D, m0, m1, alpha);
  else if (by_entry) tn_entries(1, true, false, G, ldg, ks, V, live, D, m0, m1, alpha);
  else if (W == 2) tn_entries(2, false, false, G, ldg, ks, V, live, D, m0, m1, alpha);
  else tn_entries(1, false, false, G, ldg, ks, V, live, D, m0, m1, alpha);
}

/* Cache lines a tile asks for while it computes (the fused visitor's next tile): lines
 * [0, lines) from each of the count regions, into L2. */
typedef struct {
  const char *at[NERVE_VISIT_STREAMS];
  int count;
  int64_t lines;
} tile_fetch;

/*
 * tn, few rows (M small): a KT x 32 tile of G lives in registers while every row m of A and D
 * passes through it: G is read and written once. Starts from G (from zero when fresh: G is
 * then only written) and adds rows in order, so it computes exactly what tn_rank computes.
 * Unscaled (alpha 1, a compile-time case) it skips multiplying D by alpha, which is exact.
 * With a fetch list (the visitor's), row m asks for line m (and m + M, ...) of each region,
 * so the lines are requested a few at a time among the multiply-adds. Requested in one burst
 * before each panel's tile instead (about 70 lines), they did not arrive ahead of the Adam step
 * and the input gradient that read them: Lab E's fused step at 1 thread took 10.1-11.0 ms that
 * way, 8.8-10.1 ms spread (and with nothing fetched, the weight gradient and step alone took as
 * long as with the bursts). A tile that skips (its inputs all zero, or no rows) asks for its
 * whole list at once.
 */
NERVE_TARGET_AVX512 NERVE_INLINE void tn_tile(const int KT, const int W, const bool scaled,
                                              float *G, int64_t ldg, const float *A, int64_t lda,
                                              const float *D, int64_t ldd, int64_t M,
                                              __mmask16 m0, __mmask16 m1, bool fresh,
                                              float alpha, const tile_fetch *fetch) {
  /* A tile whose inputs are all zero adds nothing (per-sample SGD on MNIST: most tiles). */
  bool any = false;
  for (int64_t m = 0; m < M && !any; m++)
    for (int r = 0; r < KT; r++) any |= A[m * lda + r] != 0.0f;
  if (!any) {
    for (int64_t l = 0; fetch && l < fetch->lines; l++)
      for (int s = 0; s < fetch->count; s++) _mm_prefetch(fetch->at[s] + l * 64, _MM_HINT_T1);
    for (int r = 0; r < KT && fresh; r++) {
      _mm512_mask_storeu_ps(G + r * ldg, m0, _mm512_setzero_ps());
      if (W == 2) _mm512_mask_storeu_ps(G + r * ldg + 16, m1, _mm512_setzero_ps());
    }
    return;
  }
  __m512 g0[TN_KT], g1[TN_KT];
  const __m512 scale = _mm512_set1_ps(alpha);
  /* Fresh, a load under an empty mask gives the zeros (gcc keeps the accumulators on the
   * stack, at half the speed, when they start from a choice between zero and a load). */
  for (int r = 0; r < KT; r++) {
    g0[r] = _mm512_maskz_loadu_ps(fresh ? 0 : m0, G + r * ldg);
    if (W == 2) g1[r] = _mm512_maskz_loadu_ps(fresh ? 0 : m1, G + r * ldg + 16);
  }
  for (int64_t m = 0; m < M; m++) {
    const float *a = A + m * lda;
    __m512 x0 = _mm512_maskz_loadu_ps(m0, D + m * ldd);
    __m512 x1 = W == 2 ? _mm512_maskz_loadu_ps(m1, D + m * ldd + 16) : x0;
    if (fetch)
      for (int64_t l = m; l < fetch->lines; l += M)
        for (int s = 0; s < fetch->count; s++) _mm_prefetch(fetch->at[s] + l * 64, _MM_HINT_T1);
    if (scaled) {
      x0 = _mm512_mul_ps(scale, x0);
      x1 = W == 2 ? _mm512_mul_ps(scale, x1) : x0;
    }
    /* Unrolled by name: clang otherwise keeps the 12-row case's accumulators on the stack. */
#  pragma GCC unroll 16
    for (int r = 0; r < KT; r++) {
      __m512 av = _mm512_set1_ps(a[r]);
      g0[r] = _mm512_fmadd_ps(av, x0, g0[r]);
      if (W == 2) g1[r] = _mm512_fmadd_ps(av, x1, g1[r]);
    }
  }
  for (int r = 0; r < KT; r++) {
    _mm512_mask_storeu_ps(G + r * ldg, m0, g0[r]);
    if (W == 2) _mm512_mask_storeu_ps(G + r * ldg + 16, m1, g1[r]);
  }
}

/* Each row count a weight-gradient tile may have (TN_KT down to 1), as a switch's cases: the
 * tiles take it as a compile-time constant, so their accumulators stay in registers. */
#  define TN_KT_CASES(CASE)                                                                    \
    CASE(12) CASE(11) CASE(10) CASE(9) CASE(8) CASE(7) CASE(6) CASE(5) CASE(4) CASE(3) CASE(2) \
    CASE(1)
_Static_assert(TN_KT == 12, "TN_KT_CASES starts at TN_KT");

#  define TN_TILE_CASE(KT)                                                                     \
    case KT:                                                                                   \
      if (W == 2 && alpha == 1.0f)                                                             \
        tn_tile(KT, 2, false, G, ldg, A, lda, D, ldd, M, m0, m1, fresh, alpha, NULL);          \
      else if (W == 2)                                                                         \
        tn_tile(KT, 2, true, G, ldg, A, lda, D, ldd, M, m0, m1, fresh, alpha, NULL);           \
      else if (alpha == 1.0f)                                                                  \
        tn_tile(KT, 1, false, G, ldg, A, lda, D, ldd, M, m0, m1, fresh, alpha, NULL);          \
      else                                                                                     \
        tn_tile(KT, 1, true, G, ldg, A, lda, D, ldd, M, m0, m1, fresh, alpha, NULL);           \
      break;

NERVE_TARGET_AVX512 static void tn_tile_any(int KT, int W, float *G, int64_t ldg, const float *A,
                                            int64_t lda, const float *D, int64_t ldd, int64_t M,
                                            __mmask16 m0, __mmask16 m1, bool fresh, float alpha) {
  switch (KT) {
    TN_KT_CASES(TN_TILE_CASE)
    default: break;
  }
}

/* How tn runs (tn_method_for): register tiles of G over all rows of A (few rows), rank-8
 * updates (many), or G transposed in registers (many rows, few columns: tn_narrow). */
typedef enum { TN_TILES, TN_RANK, TN_NARROW } tn_method;

typedef struct {
  float *G;
  int64_t ldg;
  const float *A;
  int64_t lda;
  const float *D;
  int64_t ldd;
  int64_t M, N, K, panels, ktiles;
  tn_method method;
  bool split_panels; /* TN_RANK: threads split 32-column panels of G (else rows of G) */
  float alpha;
  /* TN_RANK on a copy of G padded to whole panels (G above; NULL: G in place): the team
   * splits its rows, and each member copies its own in and back (tn_rank_part). */
  const struct copy_job *copy;
} tn_job;

NERVE_TARGET_AVX512 static void tn_rank_rows(tn_job *j, int64_t k0, int64_t k1, int64_t p0,
                                             int64_t p1) {
  /* As in nn_run: list the non-zero inputs of each 8-row block once for all its panels. */
  const bool skip = p1 - p0 >= 2;
  int32_t ks[TN_KCHUNK + 16];
  /* With one panel, rows with sparse inputs go one by one over their own lists (as in nn's
   * one_panel): G's rows still see A's rows in order, so the sums are the same. */
  int32_t rows_ks[TN_MR * TN_KCHUNK + 16];
  int64_t live_r[TN_MR];
  for (int64_t m = 0; m < j->M; m += TN_MR) {
    int R = (int)(j->M - m < TN_MR ? j->M - m : TN_MR);
    const float *a = j->A + m * j->lda;
    for (int64_t kb = k0; kb < k1; kb += TN_KCHUNK) {
      int64_t ke = kb + TN_KCHUNK < k1 ? kb + TN_KCHUNK : k1;
      if (p1 - p0 == 1 && sparse_rows(R, a + kb, j->lda, ke - kb, rows_ks, live_r)) {
        int64_t col = p0 * NR, nr = j->N - col < NR ? j->N - col : NR;
        for (int r = 0, at = 0; r < R; at += (int)live_r[r], r++)
          tn_entries_any(nr > 16 ? 2 : 1, false, false, j->G + kb * j->ldg + col, j->ldg, rows_ks + at,
                         a + r * j->lda + kb, live_r[r], j->D + (m + r) * j->ldd + col,
                         mask_lo(nr), mask_hi(nr), j->alpha);
        continue;
      }
      int64_t live = skip ? nonzero_columns(R, a + kb, j->lda, ke - kb, ks) : ke - kb;
      for (int64_t p = p0; p < p1; p++) {
        int64_t col = p * NR, nr = j->N - col < NR ? j->N - col : NR;
        tn_rank_any(R, nr > 16 ? 2 : 1, j->G + kb * j->ldg + col, j->ldg, a + kb, j->lda, NULL, NULL,
                    j->D + m * j->ldd + col, j->ldd, ke - kb, skip ? ks : NULL, live, mask_lo(nr),
                    mask_hi(nr), j->alpha);
      }
    }
  }
}

NERVE_TARGET_AVX512 static void tn_tiles(tn_job *j, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; t++) {
    /* Row-major over G's tiles: consecutive tiles share rows, so G streams contiguously. */
    int64_t kt = t / j->panels, p = t % j->panels;
    int64_t col = p * NR, nr = j->N - col < NR ? j->N - col : NR;
    int64_t k = kt * TN_KT, kr = j->K - k < TN_KT ? j->K - k : TN_KT;
    int W = nr > 16 ? 2 : 1;
    tn_tile_any((int)kr, W, j->G + k * j->ldg + col, j->ldg, j->A + k, j->lda, j->D + col,
                j->ldd, j->M, mask_lo(nr), mask_hi(nr), false, j->alpha);
  }
}

/*
 * tn for G with few columns (N <= TN_NARROW_COLUMNS) over many rows of A: G transposed, its rows in
 * registers. For kn <= 32 rows of G (a panel of A's columns) and its columns [o0, o0 + NO):
 *   acc[o] (lanes k) = G[k, o];  for m in order, where A[m, k] != 0:
 *   acc[o] += A[m, k] * (alpha D[m, o])
 * Each G element's chain is tn_rank's, products in the same order over m, so the same bits;
 * zero inputs are skipped, as nerve_dense_backward_sparse's lists and tn_rank_rows's sparse
 * rows skip them (where tn_rank added them, a zero input's term changes nothing unless the
 * gradient is infinite or NaN, or the sum so far is -0). But where tn_rank spends a vector
 * FMA on each (m, k) with N of its 16 lanes used and rewrites G's row every 8 rows of A (Lab
 * A's 30 -> 10 layer: 10 of 16 lanes), here A's rows fill the lanes and G is read and written
 * once. Shapes: A [M, kn] (lda), D [M, *] (ldd; columns [o0, o0 + NO) read), G [kn, *]
 * (ldg).
 */
NERVE_TARGET_AVX512 NERVE_INLINE void tn_narrow(const int NO, const int W, float *G, int64_t ldg,
                                                const float *A, int64_t lda, const float *D,
                                                int64_t ldd, int64_t M, int64_t kn, int64_t o0,
                                                float alpha) {
  enum { ROWS = 16, AHEAD = 4 };
  const __mmask16 m0 = mask_lo(kn), m1 = mask_hi(kn), outputs = nerve__lanes16(NO);
  float gt[TN_NARROW_COLUMNS][NR] __attribute__((aligned(64)));
  for (int o = 0; o < NO; o++)
    for (int64_t k = 0; k < NR; k++) gt[o][k] = k < kn ? G[k * ldg + o0 + o] : 0.0f;
  __m512 c0[TN_NARROW_COLUMNS], c1[TN_NARROW_COLUMNS];
#  pragma GCC unroll 12
  for (int o = 0; o < NO; o++) {
    c0[o] = _mm512_load_ps(gt[o]);
    if (W == 2) c1[o] = _mm512_load_ps(gt[o] + 16);
  }
  /* alpha D[m, o], rounded as tn_rank rounds it, for a block of ROWS rows before any of them
   * is read: a row's own store followed at once by its loads made them wait (Lab A's 30 -> 10
   * weight gradient without zero inputs skipped, 1 thread: 10.9 us, against 8.0 reading D
   * itself). Unscaled, D is read as it is. */
  const __m512 scale = _mm512_set1_ps(alpha), zero = _mm512_setzero_ps();
  const bool scaled = alpha != 1.0f;
  float ds[ROWS][16] __attribute__((aligned(64)));
  for (int64_t block = 0; block < M; block += ROWS) {
    const int64_t rows = M - block < ROWS ? M - block : ROWS;
    if (scaled)
      for (int64_t r = 0; r < rows; r++)
        _mm512_store_ps(ds[r], _mm512_mul_ps(scale, _mm512_maskz_loadu_ps(outputs, D + (block + r) * ldd + o0)));
    for (int64_t r = 0; r < rows; r++) {
      const int64_t m = block + r;
      const float *a = A + m * lda, *d = scaled ? ds[r] : D + m * ldd + o0;
      /* A's rows are far apart when it is wide (a stride the hardware does not follow):
       * 784-wide rows, 268 -> 222 us at 2 threads. */
      if (m + AHEAD < M) {
        _mm_prefetch((const char *)(a + AHEAD * lda), _MM_HINT_T0);
        if (W == 2) _mm_prefetch((const char *)(a + AHEAD * lda + 16), _MM_HINT_T0);
      }
      const __m512 a0 = _mm512_maskz_loadu_ps(m0, a);
      const __m512 a1 = W == 2 ? _mm512_maskz_loadu_ps(m1, a + 16) : a0;
      /* The lanes whose input is not zero (a NaN counts as not zero, -0 as zero), as the lists
       * keep them. */
      const __mmask16 live0 = _mm512_cmp_ps_mask(a0, zero, _CMP_NEQ_UQ);
      const __mmask16 live1 = W == 2 ? _mm512_cmp_ps_mask(a1, zero, _CMP_NEQ_UQ) : 0;
#  pragma GCC unroll 12
      for (int o = 0; o < NO; o++) {
        /* Broadcast by a load port from memory: the compiler's own choice for ds (a permute
         * of the row in a register) takes the port the FMAs need. */
        __m512 dv;
        __asm__("vbroadcastss {%1, %0|%0, %1}" : "=v"(dv) : "m"(d[o]));
        c0[o] = _mm512_mask3_fmadd_ps(a0, dv, c0[o], live0);
        if (W == 2) c1[o] = _mm512_mask3_fmadd_ps(a1, dv, c1[o], live1);
      }
    }
  }
#  pragma GCC unroll 12
  for (int o = 0; o < NO; o++) {
    _mm512_store_ps(gt[o], c0[o]);
    if (W == 2) _mm512_store_ps(gt[o] + 16, c1[o]);
  }
  for (int o = 0; o < NO; o++)
    for (int64_t k = 0; k < kn; k++) G[k * ldg + o0 + o] = gt[o][k];
}

#  define TN_NARROW_CASE(NO)                                                                   \
    case NO:                                                                                   \
      if (W == 2)                                                                              \
        tn_narrow(NO, 2, G, ldg, A, lda, D, ldd, M, kn, o0, alpha);                            \
      else                                                                                     \
        tn_narrow(NO, 1, G, ldg, A, lda, D, ldd, M, kn, o0, alpha);                            \
      break;

/* tn_narrow for a run-time NO (1 to TN_NARROW_COLUMNS) and W. */
_Static_assert(TN_NARROW_COLUMNS == TN_KT, "tn_narrow_any's cases are TN_KT_CASES");
NERVE_TARGET_AVX512 static void tn_narrow_any(int NO, int W, float *G, int64_t ldg, const float *A,
                                              int64_t lda, const float *D, int64_t ldd, int64_t M,
                                              int64_t kn, int64_t o0, float alpha) {
  switch (NO) {
    TN_KT_CASES(TN_NARROW_CASE)
    default: break;
  }
}
#  undef TN_NARROW_CASE

/* Whether tn_narrow's threads take whole panels of G's rows (enough to go round), or else,
 * in every panel, each its own columns of G. */
static bool tn_narrow_by_panels(int64_t K, int threads) { return (K + NR - 1) / NR >= threads; }

/* tn_narrow over panels [p0, p1) of G's rows and its columns [o0, o1), with rows [m0, m1) of A
 * and D. */
NERVE_TARGET_AVX512 static void tn_narrow_panels(float *G, int64_t ldg, const float *A, int64_t lda,
                                                 const float *D, int64_t ldd, int64_t K, int64_t p0,
                                                 int64_t p1, int64_t o0, int64_t o1, int64_t m0,
                                                 int64_t m1, float alpha) {
  if (o0 == o1 || m0 >= m1) return;
  for (int64_t p = p0; p < p1; p++) {
    const int64_t k = p * NR, kn = K - k < NR ? K - k : NR;
    tn_narrow_any((int)(o1 - o0), kn > 16 ? 2 : 1, G + k * ldg, ldg, A + m0 * lda + k, lda, D + m0 * ldd, ldd,
                  m1 - m0, kn, o0, alpha);
  }
}

/* A thread's share of tn_narrow (tn_narrow_by_panels). */
static void tn_narrow_share(const tn_job *j, int t, int nt) {
  const int64_t kpanels = (j->K + NR - 1) / NR;
  const bool by_panels = tn_narrow_by_panels(j->K, nt);
  const int64_t p0 = by_panels ? kpanels * t / nt : 0, p1 = by_panels ? kpanels * (t + 1) / nt : kpanels;
  const int64_t o0 = by_panels ? 0 : j->N * t / nt, o1 = by_panels ? j->N : j->N * (t + 1) / nt;
  tn_narrow_panels(j->G, j->ldg, j->A, j->lda, j->D, j->ldd, j->K, p0, p1, o0, o1, 0, j->M, j->alpha);
}

typedef struct copy_job {
  float *P;
  int64_t ldp;
  const float *G; /* read into P (copy_in) */
  float *back;    /* written from P (copy_out) */
  int64_t ldg, N;
  bool streams; /* back is written by copy_out_streamed (nerve__gemm_tn's streams_back) */
} copy_job;

/* Rows copied a vector at a time, the last one masked: copying rows of a few dozen floats (Lab
 * A's 784 x 30 weights, once or more a chunk of 2,048 rows) had cost more in calls to memcpy and
 * memset than in the copying itself. Every padded copy is made for AVX-512 kernels, so these
 * are only ever called where AVX-512 runs. Rows [k0, k1) of G into P, whole: lanes past N read
 * nothing and store zeros. */
NERVE_TARGET_AVX512 static void copy_in(const copy_job *j, int64_t k0, int64_t k1) {
  for (int64_t k = k0; k < k1; k++) {
    const float *g = j->G + k * j->ldg;
    float *p = j->P + k * j->ldp;
    for (int64_t c = 0; c < j->ldp; c += 16)
      _mm512_storeu_ps(p + c, _mm512_maskz_loadu_ps(nerve__lanes16(c < j->N ? j->N - c : 0), g + c));
  }
}

/* copy_in as a team's range (padded_copy). */
static void copy_rows_in(void *data, int64_t k0, int64_t k1) { copy_in(data, k0, k1); }

/* Rows [k0, k1) of the copy back into G by ordinary stores. */
NERVE_TARGET_AVX512 static void copy_out_cached(const copy_job *j, int64_t k0, int64_t k1) {
  for (int64_t k = k0; k < k1; k++) {
    const float *p = j->P + k * j->ldp;
    float *g = j->back + k * j->ldg;
    for (int64_t c = 0; c < j->N; c += 16)
      _mm512_mask_storeu_ps(g + c, nerve__lanes16(j->N - c), _mm512_loadu_ps(p + c));
  }
}

/* Lanes m of the 16 values of the copy from row k, column c on, in G's order: the row's last
 * N - c, then the next row's first (N >= 16, so at most one row ends among them). */
NERVE_TARGET_AVX512 NERVE_INLINE __m512 copied16(const copy_job *j, int64_t k, int64_t c, __mmask16 m) {
  const int64_t left = j->N - c;
  const __mmask16 here = nerve__lanes16(left);
  const __m512 v = _mm512_maskz_loadu_ps(m & here, j->P + k * j->ldp + c);
  if (left >= 16) return v;
  /* Lane L >= left: the next row's value L - left. */
  return _mm512_mask_loadu_ps(v, m & (__mmask16)~here, j->P + (k + 1) * j->ldp - left);
}

/* Moves (k, c) n values on in G's order (n <= 16 <= N). */
NERVE_INLINE void copied_advance(const copy_job *j, int64_t *k, int64_t *c, int64_t n) {
  *c += n;
  if (*c >= j->N) *c -= j->N, (*k)++;
}

/*
 * copy_out for G's rows [k0, k1) where they are one run of memory (ldg = N, N >= 16), written
 * by streaming stores in whole 64-byte lines and ordinary ones at either end of the run: the
 * same values. The lines of the weights that the forward read on the other core (it splits
 * them by columns) are then not taken back one by one (see nerve__gemm_tn's streams_back).
 */
NERVE_TARGET_AVX512 static void copy_out_streamed(const copy_job *j, int64_t k0, int64_t k1) {
  float *g = j->back;
  const int64_t end = k1 * j->N;
  int64_t i = k0 * j->N, k = k0, c = 0;
  const int64_t to_line = (int64_t)((64 - (uintptr_t)(g + i) % 64) % 64) / (int64_t)sizeof(float);
  const int64_t head = to_line < end - i ? to_line : end - i;
  if (head > 0) {
    _mm512_mask_storeu_ps(g + i, nerve__lanes16(head), copied16(j, k, c, nerve__lanes16(head)));
    copied_advance(j, &k, &c, head), i += head;
  }
  for (; end - i >= 16; i += 16) {
    _mm512_stream_ps(g + i, copied16(j, k, c, 0xFFFF));
    copied_advance(j, &k, &c, 16);
  }
  if (i < end) _mm512_mask_storeu_ps(g + i, nerve__lanes16(end - i), copied16(j, k, c, nerve__lanes16(end - i)));
  _mm_sfence(); /* the weights seen by whoever reads them next */
}

/* Rows [k0, k1) of the copy back into G: streamed where the job says so and a team runs. */
static void copy_out(const copy_job *j, int64_t k0, int64_t k1) {
  if (j->streams && nerve__team_threads() > 1)
    copy_out_streamed(j, k0, k1);
  else
    copy_out_cached(j, k0, k1);
}

/*
 * tn_rank_rows over rows [k0, k1) and panels [p0, p1) of G, on this member's rows of the padded
 * copy where there is one (the team then splits rows: nerve__gemm_tn), copied in before and
 * back after by this member alone, so none of the copy's lines passes between cores.
 */
static void tn_rank_part(tn_job *j, int64_t k0, int64_t k1, int64_t p0, int64_t p1) {
  if (j->copy) copy_in(j->copy, k0, k1);
  tn_rank_rows(j, k0, k1, p0, p1);
  if (j->copy) copy_out(j->copy, k0, k1);
}

static void tn_member(void *data, int t, int nt) {
  tn_job *j = data;
  if (j->method == TN_NARROW) {
    tn_narrow_share(j, t, nt);
  } else if (j->method == TN_RANK && j->split_panels) { /* G in place (no copy splits panels) */
    int64_t a = j->panels * t / nt, b = j->panels * (t + 1) / nt;
    if (a < b) tn_rank_rows(j, 0, j->K, a, b);
  } else if (j->method == TN_RANK) {
    int64_t a = j->K * t / nt, b = j->K * (t + 1) / nt;
    if (a < b) tn_rank_part(j, a, b, 0, j->panels);
  } else {
    int64_t tiles = j->panels * j->ktiles;
    int64_t a = tiles * t / nt, b = tiles * (t + 1) / nt;
    if (a < b) tn_tiles(j, a, b);
  }
}

/* G [K,N] (ldg) copied into the GEMM scratch as whole 32-column panels; returns the copy. The
 * scratch is reserved by the caller. */
static float *padded_copy(const nerve_context *ctx, const float *G, int64_t ldg, int64_t K,
                          int64_t N) {
  copy_job cj = {.P = ctx->scratch[NERVE_SCRATCH_GEMM], .ldp = (N + NR - 1) / NR * NR, .G = G,
                 .ldg = ldg, .N = N};
  nerve__parallel_for(ctx, K, 256, copy_rows_in, &cj);
  return cj.P;
}

/*
 * nn with B given transposed and few rows of A: C[m,i] = init + dot(A[m,:], BT[i,:]). Both
 * operands are read along their rows, so no transposed copy of B is made; a tile of 3 rows of
 * BT and 8 rows of A keeps 24 vector partial sums, reduced at the end of the row. Shapes:
 * A [M,K] (lda), BT [N,K] (ldb), C [M,N] (ldc); tiles over i in [i0,i1).
 * 8 rows, not 6: a batch of 32 had a tile of 2 rows left, loading as much of BT for a third of
 * the work (Lab E's input gradient in cache, 1 thread: 0.140 -> 0.137 ms for 240 columns).
 * Since then, from 16 rows and past 16 long, nn_lanes (below) takes these products instead;
 * dots_block keeps fewer rows (most lanes of nn_lanes' vectors would hold nothing) and K = 16.
 */
enum { DOT_NI = 3, DOT_MR = 8 };

/* Blocks of DOT_NI rows of BT ahead that the first pass over a block asks L2 for. The next
 * block alone, fetched into L1 as the pass goes, arrived late from memory: Lab E's input
 * gradient (32 x 784 through 6272 columns, one thread, B cold) 71.5 -> 84.3 GFLOP/s with
 * this (16 blocks, 150 KB, ahead), 80-83 with 8 or with the fetch on the second pass. */
enum { DOTS_AHEAD = 16 };

/* One MR x NI block of dot products over all K; MR and NI are compile-time constants so the
 * MR*NI partial sums stay in registers. */
NERVE_TARGET_AVX512 NERVE_INLINE void dots_block(const int MR, const int NI, const nn_job *j,
                                                 int64_t m, int64_t i, int64_t next, int64_t far) {
  const int64_t K = j->K;
  /* On the first pass over these rows of B, fetch the next block's rows (next >= 0) into L1
   * and those of the block DOTS_AHEAD on (far >= 0) into L2: B comes cold from memory, and
   * the hardware prefetcher alone leaves the loads waiting. */
  /* The loops over the MR x NI accumulators are unrolled by name, as in nn_tile: gcc
   * otherwise keeps them on the stack. */
  __m512 acc[DOT_MR][DOT_NI];
#  pragma GCC unroll 8
  for (int r = 0; r < MR; r++)
#  pragma GCC unroll 8
    for (int q = 0; q < NI; q++) acc[r][q] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 16) {
    __mmask16 mk = nerve__lanes16(K - k);
    __m512 b[DOT_NI];
#  pragma GCC unroll 8
    for (int q = 0; q < NI; q++) b[q] = _mm512_maskz_loadu_ps(mk, j->B + (i + q) * j->ldb + k);
    if (next >= 0)
      for (int q = 0; q < DOT_NI; q++) _mm_prefetch((const char *)(j->B + (next + q) * j->ldb + k), _MM_HINT_T0);
    if (far >= 0)
      for (int q = 0; q < DOT_NI; q++) _mm_prefetch((const char *)(j->B + (far + q) * j->ldb + k), _MM_HINT_T1);
#  pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
      __m512 a = _mm512_maskz_loadu_ps(mk, j->A + (m + r) * j->lda + k);
#  pragma GCC unroll 8
      for (int q = 0; q < NI; q++) acc[r][q] = _mm512_fmadd_ps(a, b[q], acc[r][q]);
    }
  }
#  pragma GCC unroll 8
  for (int r = 0; r < MR; r++)
#  pragma GCC unroll 8
    for (int q = 0; q < NI; q++) {
      float *c = j->C + (m + r) * j->ldc + i + q;
      float init = j->accumulate ? *c : 0.0f;
      if (j->bias) init += j->bias[i + q];
      *c = init + _mm512_reduce_add_ps(acc[r][q]);
    }
}

/* The block whose rows the first pass over block i asks L2 for: DOTS_AHEAD on, within this
 * call's columns [.., i1) (past them they are another thread's, read into the wrong core's
 * L2), or none (-1). */
static inline int64_t dots_far(int64_t i, int64_t i1) {
  const int64_t far = i + DOTS_AHEAD * DOT_NI;
  return far + DOT_NI <= i1 ? far : -1;
}

#  define DOTS_CASE(MR)                                                                        \
    case MR:                                                                                   \
      if (ni == DOT_NI)                                                                        \
        dots_block(MR, DOT_NI, j, m, i, m == 0 ? i + DOT_NI : -1, /* may lie past i1: harmless */ \
                   m == 0 ? dots_far(i, i1) : -1);                                             \
      else                                                                                     \
        for (int q = 0; q < ni; q++) dots_block(MR, 1, j, m, i + q, -1, -1);                   \
      break;

NERVE_TARGET_AVX512 static void nn_dots(nn_job *j, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i += DOT_NI) {
    const int ni = (int)(i1 - i < DOT_NI ? i1 - i : DOT_NI);
    for (int64_t m = 0; m < j->M; m += DOT_MR) {
      switch ((int)(j->M - m < DOT_MR ? j->M - m : DOT_MR)) {
        DOTS_CASE(8)
        DOTS_CASE(7)
        DOTS_CASE(6)
        DOTS_CASE(5)
        DOTS_CASE(4)
        DOTS_CASE(3)
        DOTS_CASE(2)
        DOTS_CASE(1)
        default: break;
      }
    }
  }
}

/*
 * The same products with A's rows in the lanes instead of k: C^T = BT . A^T, R rows of BT
 * broadcast against A^T's rows, which nerve__gemm_nt_pack has laid out as 32-row panels
 * [panels][K][32] (j->lanes), only the live k. Each element is one chain of multiply-adds in k's
 * order from zero over those k (the others would add zeros: nerve__nt_packed), added to its
 * initial value as dots_block adds its sum: nothing is summed across lanes, and
 * A^T is read once per R columns where dots_block reads A once per DOT_NI. Lab E's input
 * gradient (32 x 784 by 6272 columns, one thread, gcc, a standalone loop): 90 -> 116 GFLOP/s
 * in cache, 63 -> 97 from memory; clang's dots ran at 109 in cache. From 16 rows (LANES_MIN_M):
 * with fewer, most lanes would hold nothing. Shapes as nn_dots'.
 */
enum { LANES_MIN_M = 16, LANES_R = 12 };

/* Columns a lanes tile takes: 24 accumulators up to 32 rows, 18 or 24 past them, a divisor of
 * the fused visitor's TN_KT columns either way. */
static inline int lanes_width(int64_t M) { return M <= 32 ? LANES_R : LANES_R / 2; }
_Static_assert(TN_KT % LANES_R == 0, "a visitor tile's columns are whole lanes tiles");

/*
 * One row of BT against two vectors of A^T's lanes: c0 += x a0, c1 += x a1, x = *b broadcast.
 * In one asm statement, so the broadcast stays next to its two multiply-adds: clang's scheduler
 * otherwise hoists all twelve rows' broadcasts to the top of the k loop, 12 registers more than
 * the 24 accumulators and 2 vectors of A leave, and spills accumulators to the stack on every
 * k (Lab E's input gradient: 3.85 against gcc's 3.45 ms for the fused backward a step, as
 * the nerve CLI, which SwiftPM compiles with clang, ran it). The same multiply-adds: the bits of
 * _mm512_fmadd_ps(x, a0, c0).
 */
NERVE_TARGET_AVX512 NERVE_INLINE void lanes_row2(__m512 *c0, __m512 *c1, const float *b, __m512 a0, __m512 a1) {
  __m512 x;
  __asm__("vbroadcastss {%[b], %[x]|%[x], %[b]}\n\t"
          "vfmadd231ps {%[a0], %[x], %[c0]|%[c0], %[x], %[a0]}\n\t"
          "vfmadd231ps {%[a1], %[x], %[c1]|%[c1], %[x], %[a1]}"
          : [c0] "+v"(*c0), [c1] "+v"(*c1), [x] "=&v"(x)
          : [b] "m"(*b), [a0] "v"(a0), [a1] "v"(a1));
}

/* A lanes block's sums into C's columns [i, i + cols): sums[r][m] for column i + r and row m,
 * added to its initial value (C's own where accumulating, then the bias), as dots_block adds
 * its sums. */
static void lanes_sums_out(float *C, int64_t ldc, const float *bias, bool accumulate, int64_t M, int64_t i,
                           int64_t cols, float (*sums)[64]) {
  for (int64_t m = 0; m < M; m++)
    for (int64_t r = 0; r < cols; r++) {
      float *c = C + m * ldc + i + r;
      float init = accumulate ? *c : 0.0f;
      if (bias) init += bias[i + r];
      *c = init + sums[r][m];
    }
}

/* Columns [i, i + cols) of C, cols <= R; the next tile's next_cols columns from next (0: none)
 * have their rows of BT fetched as these are read. */
NERVE_TARGET_AVX512 NERVE_INLINE void lanes_block(const int V, const int R, const nn_job *j, int64_t i,
                                                  int64_t cols, int64_t next, int64_t next_cols) {
  const int64_t K = j->K;
  const float *b[LANES_R], *a[4];
  /* Rows past cols repeat row i: their sums are computed and dropped. */
#  pragma GCC unroll 12
  for (int r = 0; r < R; r++) b[r] = j->B + (i + (r < cols ? r : 0)) * j->ldb;
#  pragma GCC unroll 4
  for (int v = 0; v < V; v++) a[v] = j->lanes.P + (v / 2) * K * NR + (v % 2) * 16;
  __m512 acc[LANES_R][4];
#  pragma GCC unroll 12
  for (int r = 0; r < R; r++)
#  pragma GCC unroll 4
    for (int v = 0; v < V; v++) acc[r][v] = _mm512_setzero_ps();
  const int64_t live = j->lanes.live;
  const int32_t *ks = j->lanes.ks;
  for (int64_t k0 = 0; k0 < live; k0 += 16) {
    /* The next tile's lines about where these k are (dead columns only make them run ahead). */
    for (int64_t r = 0; r < next_cols; r++) _mm_prefetch((const char *)(j->B + (next + r) * j->ldb + ks[k0]), _MM_HINT_T0);
    const int64_t k1 = live - k0 < 16 ? live : k0 + 16;
    for (int64_t k = k0; k < k1; k++) {
      const int64_t at = ks[k];
      __m512 av[4];
#  pragma GCC unroll 4
      for (int v = 0; v < V; v++) av[v] = _mm512_load_ps(a[v] + k * NR);
#  pragma GCC unroll 12
      for (int r = 0; r < R; r++) {
        if (V == 2) {
          lanes_row2(&acc[r][0], &acc[r][1], &b[r][at], av[0], av[1]);
          continue;
        }
        const __m512 x = _mm512_set1_ps(b[r][at]);
#  pragma GCC unroll 4
        for (int v = 0; v < V; v++) acc[r][v] = _mm512_fmadd_ps(x, av[v], acc[r][v]);
      }
    }
  }
  float sums[LANES_R][64] __attribute__((aligned(64)));
#  pragma GCC unroll 12
  for (int r = 0; r < R; r++)
#  pragma GCC unroll 4
    for (int v = 0; v < V; v++) _mm512_store_ps(sums[r] + 16 * v, acc[r][v]);
  lanes_sums_out(j->C, j->ldc, j->bias, j->accumulate, j->M, i, cols, sums);
}

NERVE_TARGET_AVX512 static void nn_lanes(nn_job *j, int64_t i0, int64_t i1) {
  const int R = lanes_width(j->M);
  for (int64_t i = i0; i < i1; i += R) {
    const int64_t cols = i1 - i < R ? i1 - i : R, next = i + R, left = i1 - next;
    const int64_t next_cols = left <= 0 ? 0 : left < R ? left : R;
    switch ((j->M + 15) / 16) {
      case 1: lanes_block(1, LANES_R, j, i, cols, next, next_cols); break;
      case 2: lanes_block(2, LANES_R, j, i, cols, next, next_cols); break;
      case 3: lanes_block(3, LANES_R / 2, j, i, cols, next, next_cols); break;
      case 4: lanes_block(4, LANES_R / 2, j, i, cols, next, next_cols); break;
      default: break; /* past NN_SMALL_M: not called */
    }
  }
}
_Static_assert(NN_SMALL_M <= 64, "nn_lanes takes up to four vectors of rows");

static void nn_dots_member(void *data, int t, int nt) {
  nn_job *j = data;
  const int64_t width = j->lanes.P ? lanes_width(j->M) : DOT_NI, blocks = (j->N + width - 1) / width;
  int64_t a = blocks * t / nt * width, b = blocks * (t + 1) / nt * width;
  if (b > j->N) b = j->N;
  if (a >= b) return;
  if (j->lanes.P)
    nn_lanes(j, a, b);
  else
    nn_dots(j, a, b);
}

/*
 * Dots no longer than one vector (K <= NT_SHORT_MAX: a classifier's input gradient, 10
 * outputs) for 16 columns at a time, lanes over the columns instead of over k: dots_block wastes the lanes
 * past K and then spends more on the closing sum across its lanes than on the products.
 * Each column's products are summed in the tree _mm512_reduce_add_ps takes (lane k with k + 8,
 * then + 4, + 2, + 1) and added to +0 as dots_block does, so these are the bits dots_block
 * gave (checked against both compilers' reduce on 2M random dots of every K). Where dots_block
 * adds a lane past K it adds a zero, which changes nothing but a zero's sign, and the closing
 * +0 makes every zero +0: those additions are left out. Shapes: A [M,K] (lda), BT [N,K] (ldb),
 * C [M,N] (ldc); the cols columns from i, written.
 */
NERVE_TARGET_AVX512 NERVE_INLINE void short_dots_block(const nn_job *j, int64_t i, int cols) {
  const int K = (int)j->K; /* 1..NT_SHORT_MAX, at run time (a case per K: 1-3 us faster) */
  /* b[k]: BT[i + c][k] in lane c, the 16 rows transposed in registers; rows past cols zero. */
  __m512 b[16];
  const __mmask16 mk = nerve__lanes16(K);
#  pragma GCC unroll 16
  for (int c = 0; c < 16; c++)
    b[c] = c < cols ? _mm512_maskz_loadu_ps(mk, j->B + (i + c) * j->ldb) : _mm512_setzero_ps();
  transpose16(b);
  const __mmask16 mc = nerve__lanes16(cols);
  for (int64_t m = 0; m < j->M; m++) {
    const float *a = j->A + m * j->lda;
    /* s[k] holds lanes k, k + 8, ... of the tree so far; only those with k < K are read (the
     * zeros past K keep compilers from taking the rest as unset). */
    __m512 s[8];
#  pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
      s[k] = k < K ? _mm512_mul_ps(_mm512_set1_ps(a[k]), b[k]) : _mm512_setzero_ps();
      if (k + 8 < K) s[k] = _mm512_add_ps(s[k], _mm512_mul_ps(_mm512_set1_ps(a[k + 8]), b[k + 8]));
    }
#  pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
      if (k + 4 < K) s[k] = _mm512_add_ps(s[k], s[k + 4]);
    if (2 < K) s[0] = _mm512_add_ps(s[0], s[2]);
    if (3 < K) s[1] = _mm512_add_ps(s[1], s[3]);
    if (1 < K) s[0] = _mm512_add_ps(s[0], s[1]);
    _mm512_mask_storeu_ps(j->C + m * j->ldc + i, mc, _mm512_add_ps(_mm512_setzero_ps(), s[0]));
  }
}

NERVE_TARGET_AVX512 static void short_dots(const nn_job *j, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i += 16) short_dots_block(j, i, i1 - i < 16 ? (int)(i1 - i) : 16);
}

#endif /* NERVE_X86 */

/* ---- Products reading A through an index (convolutions without a lowered copy) ----------- */
#if NERVE_X86

/* Where a gathered row's window starts (a, in image, at output oh, ow), found once by division
 * (gather_window_at) and then stepped to the next row's (gather_window_next): one window along,
 * or down, or the next image. */
typedef struct {
  const float *image, *a;
  int64_t oh, ow, OH; /* OH: output rows an image (no division a row) */
} gather_window;

NERVE_INLINE gather_window gather_window_at(const nerve__gather *ga, int64_t row) {
  const int64_t r = ga->first_row + row, n = r / ga->pix, p = r % ga->pix;
  gather_window w = {.image = ga->in + n * ga->image_stride, .oh = p / ga->OW, .ow = p % ga->OW,
                     .OH = ga->pix / ga->OW};
  w.a = w.image + w.oh * ga->row_stride + w.ow * ga->col_stride;
  return w;
}

NERVE_INLINE void gather_window_next(const nerve__gather *ga, gather_window *w) {
  if (++w->ow < ga->OW) {
    w->a += ga->col_stride;
  } else if (w->ow = 0, ++w->oh < w->OH) {
    w->a = w->image + w->oh * ga->row_stride;
  } else {
    w->oh = 0, w->image += ga->image_stride, w->a = w->image;
  }
}

/* R rows' windows from w on into base, w moved past them: stepped, not divided (a division per
 * row took 40% of the fast recipe's first convolution, 5 x 5 over one channel, at 1 thread). */
NERVE_INLINE void gathered_rows(const nerve__gather *ga, gather_window *w, int R, const float **base) {
  for (int r = 0; r < R; r++, gather_window_next(ga, w)) base[r] = w->a;
}

/* As nonzero_columns for R gathered rows: the k in [0, n) where some base[r][off[k]] is not 0. */
NERVE_INLINE int64_t gathered_nonzero(int R, const float *const *base, const int32_t *off, int64_t n,
                                      int32_t *ks) {
  int64_t live = 0;
  for (int64_t k = 0; k < n; k++) {
    bool nz = false;
    for (int r = 0; r < R; r++) nz |= base[r][off[k]] != 0.0f;
    if (nz) ks[live++] = (int32_t)k;
  }
  return live;
}

NERVE_TARGET_AVX512 static void gather_run(float *C, int64_t ldc, const nerve__gather *ga,
                                           int64_t M, const float *B, int64_t ldb,
                                           const float *bias, int64_t N, int64_t K) {
  const int64_t panels = (N + NR - 1) / NR;
  /* As nn_run: the zero inputs of a row tile are skipped where it meets several panels. With
   * one panel, gathered_nonzero cost about what it saved; so did one vector load and compare a
   * tap where a tile's rows lie side by side (a first convolution over MNIST, whose tiles meet
   * zeros at 47% of their taps: the fast recipe's first convolution and its pool, 192 images,
   * 1.27-1.37 ms at 1 thread without the lists, 1.44-1.68 with them). */
  const bool skip = panels >= 2;
  int32_t ks[NN_KC];
  gather_window w = gather_window_at(ga, 0);
  for (int64_t m = 0; m < M; m += NN_MR) {
    const int R = (int)(M - m < NN_MR ? M - m : NN_MR);
    const float *base[NN_MR];
    gathered_rows(ga, &w, R, base);
    const int64_t live = skip ? gathered_nonzero(R, base, ga->off, K, ks) : K;
    for (int64_t p = 0; p < panels; p++) {
      const int64_t col = p * NR, nr = N - col < NR ? N - col : NR;
      nn_tile_any(R, nr > 16 ? 2 : 1, C + m * ldc + col, ldc, NULL, 0, base, ga->off, B + col, ldb, K,
                  skip ? ks : NULL, live, mask_lo(nr), mask_hi(nr), false, bias ? bias + col : NULL, false,
                  NULL, 0);
    }
  }
}

/* Rows of D a gathered weight-gradient tile asks for ahead of its loads. */
enum { GATHER_TN_AHEAD = 32 };

/*
 * tn_tile with A gathered: a KT x 32 tile of G (rows k..k+KT of the slice starting at k0) held in
 * registers while all M rows pass, the same chain as the rank updates (rows in order) when
 * nothing is skipped, i.e. with one panel. scaled: D times alpha; else D as it is (alpha 1).
 */
NERVE_TARGET_AVX512 NERVE_INLINE void gather_tn_tile(const int KT, const int W, const bool scaled, float *G,
                                                     int64_t ldg, const nerve__gather *ga,
                                                     const int32_t *off, const float *D,
                                                     int64_t ldd, int64_t M, __mmask16 m0,
                                                     __mmask16 m1, float alpha, float *bias) {
  __m512 g0[TN_KT], g1[TN_KT];
  const __m512 scale = _mm512_set1_ps(alpha);
  /* bias (may be NULL) [N] += sum_m D[m,:], each element adding the rows in order as
   * nerve__bias_accumulate does: in the tile's pass over D, where the additions' latency hides
   * behind the products (a pass of its own waits on every addition, on one thread). */
  __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
  __m512 b1 = bias && W >= 2 ? hi_load(W, m1, bias + 16) : b0;
#  pragma GCC unroll 16
  for (int r = 0; r < KT; r++) {
    g0[r] = _mm512_maskz_loadu_ps(m0, G + r * ldg);
    if (W >= 2) g1[r] = hi_load(W, m1, G + r * ldg + 16);
  }
  gather_window w = gather_window_at(ga, 0);
  /* The bytes of a row of D the tile reads (W == 3: 16 + 8 columns). */
  const int64_t d_bytes = (W == 1 ? 16 : W == 2 ? 32 : 24) * (int64_t)sizeof(float);
  for (int64_t m = 0; m < M; m++) {
    const __m512 d0 = _mm512_maskz_loadu_ps(m0, D + m * ldd);
    const __m512 d1 = W >= 2 ? hi_load(W, m1, D + m * ldd + 16) : d0;
    nerve__prefetch(D + (m + GATHER_TN_AHEAD) * ldd, d_bytes, false);
    if (bias) {
      b0 = _mm512_add_ps(b0, d0);
      if (W >= 2) b1 = hi_add(W, b1, d1);
    }
    /* alpha 1 (every convolution's call): D as it is, the same bits without a multiply a row. */
    const __m512 x0 = scaled ? _mm512_mul_ps(scale, d0) : d0;
    const __m512 x1 = W >= 2 ? (scaled ? hi_mul(W, scale, d1) : d1) : x0;
#  pragma GCC unroll 16
    for (int r = 0; r < KT; r++) {
      const __m512 av = _mm512_set1_ps(w.a[off[r]]);
      g0[r] = _mm512_fmadd_ps(av, x0, g0[r]);
      if (W >= 2) g1[r] = hi_fmadd(W, av, x1, g1[r]);
    }
    gather_window_next(ga, &w);
  }
#  pragma GCC unroll 16
  for (int r = 0; r < KT; r++) {
    _mm512_mask_storeu_ps(G + r * ldg, m0, g0[r]);
    if (W >= 2) hi_store(W, G + r * ldg + 16, m1, g1[r]);
  }
  if (bias) {
    _mm512_mask_storeu_ps(bias, m0, b0);
    if (W >= 2) hi_store(W, bias + 16, m1, b1);
  }
}

#  define GATHER_TN_CASE(KT)                                                                    \
    case KT:                                                                                    \
      if (W == 3 && alpha != 1.0f)                                                              \
        gather_tn_tile(KT, 3, true, G, ldg, ga, off, D, ldd, M, m0, m1, alpha, bias);           \
      else if (W == 3)                                                                          \
        gather_tn_tile(KT, 3, false, G, ldg, ga, off, D, ldd, M, m0, m1, alpha, bias);          \
      else if (W == 2 && alpha != 1.0f)                                                         \
        gather_tn_tile(KT, 2, true, G, ldg, ga, off, D, ldd, M, m0, m1, alpha, bias);           \
      else if (W == 2)                                                                          \
        gather_tn_tile(KT, 2, false, G, ldg, ga, off, D, ldd, M, m0, m1, alpha, bias);          \
      else if (alpha != 1.0f)                                                                   \
        gather_tn_tile(KT, 1, true, G, ldg, ga, off, D, ldd, M, m0, m1, alpha, bias);           \
      else                                                                                      \
        gather_tn_tile(KT, 1, false, G, ldg, ga, off, D, ldd, M, m0, m1, alpha, bias);          \
      break;

NERVE_TARGET_AVX512 static void gather_tn_tile_any(int KT, int W, float *G, int64_t ldg,
                                                   const nerve__gather *ga, const int32_t *off,
                                                   const float *D, int64_t ldd, int64_t M,
                                                   __mmask16 m0, __mmask16 m1, float alpha,
                                                   float *bias) {
  W = tile_w(W, m1);
  switch (KT) {
    TN_KT_CASES(GATHER_TN_CASE)
    default: break;
  }
}

/* As tn_rank_rows on rows [k0, k1) of G, A gathered. */
NERVE_TARGET_AVX512 static void gather_rank_rows(float *G, int64_t ldg, const nerve__gather *ga,
                                                 int64_t M, const float *D, int64_t ldd,
                                                 int64_t N, int64_t k0, int64_t k1, float alpha) {
  const int64_t panels = (N + NR - 1) / NR;
  const bool skip = panels >= 2;
  int32_t ks[NN_KC];
  gather_window w = gather_window_at(ga, 0);
  for (int64_t m = 0; m < M; m += TN_MR) {
    const int R = (int)(M - m < TN_MR ? M - m : TN_MR);
    const float *base[TN_MR];
    gathered_rows(ga, &w, R, base);
    const int64_t live = skip ? gathered_nonzero(R, base, ga->off + k0, k1 - k0, ks) : k1 - k0;
    for (int64_t p = 0; p < panels; p++) {
      const int64_t col = p * NR, nr = N - col < NR ? N - col : NR;
      tn_rank_any(R, nr > 16 ? 2 : 1, G + col, ldg, NULL, 0, base, ga->off + k0, D + m * ldd + col, ldd,
                  k1 - k0, skip ? ks : NULL, live, mask_lo(nr), mask_hi(nr), alpha);
    }
  }
}

/* Rows of D made from a pool's gradient at a time (16 KB of stack), to stay in L1 while a
 * slice's tiles pass over them. */
enum { POOLED_CHUNK = 128 };
/* Windows ahead whose gradient and argmax pooled_rows_fill asks for. */
enum { POOLED_AHEAD = 16 };

/* nerve__norm_terms for 16 channels, loaded once a fill. */
typedef struct {
  __m512 mean, invstd, sum_dy, sum_dyx, factor, rows;
} norm_lanes16;

NERVE_TARGET_AVX512 NERVE_INLINE norm_lanes16 norm_lanes16_at(const nerve__norm_terms *t, int64_t c, __mmask16 k) {
  return (norm_lanes16){.mean = _mm512_maskz_loadu_ps(k, t->mean + c), .invstd = _mm512_maskz_loadu_ps(k, t->invstd + c),
                        .sum_dy = _mm512_maskz_loadu_ps(k, t->sum_dy + c),
                        .sum_dyx = _mm512_maskz_loadu_ps(k, t->sum_dyx + c),
                        .factor = _mm512_maskz_loadu_ps(k, t->factor + c), .rows = _mm512_set1_ps(t->rows)};
}

/* The norm's input gradient in 16 lanes (nerve__norm_terms) from its output gradient g, the
 * pool's (0 + g, as nerve__maxpool_grad_value makes it, never -0), and its input x; 0 in the
 * lanes k leaves out. */
NERVE_TARGET_AVX512 NERVE_INLINE __m512 norm_dx16(const norm_lanes16 *l, __m512 g, __m512 x, __mmask16 k,
                                                  const bool relu) {
  g = _mm512_add_ps(_mm512_setzero_ps(), g);
  const __m512 xhat = _mm512_mul_ps(_mm512_sub_ps(x, l->mean), l->invstd);
  const __m512 r = _mm512_fmsub_ps(l->rows, g, l->sum_dy);
  const __m512 dx = _mm512_mul_ps(l->factor, _mm512_fnmadd_ps(xhat, l->sum_dyx, r));
  if (relu) k = _mm512_mask_cmp_ps_mask(k, x, _mm512_setzero_ps(), _CMP_GT_OQ);
  return _mm512_maskz_mov_ps(k, dx);
}

/*
 * Rows [m0, m0 + rows) of D (counted from a->first_row, which starts an image) as the pool's
 * backward writes them (nerve__pooled_rows), N <= 32 columns, into d (rows NR apart): for a
 * pixel inside a window, the window's gradient in the lanes where its argmax names the pixel;
 * with `norm` (pr's, then with relu as said there), the norm's input gradient from that.
 */
NERVE_TARGET_AVX512 NERVE_INLINE void pooled_rows_fill_as(const nerve__pooled_rows *pr, const nerve__gather *a,
                                                          int64_t m0, int64_t rows, int64_t N, float *d,
                                                          const bool norm, const bool relu) {
  const __mmask16 k0 = mask_lo(N), k1 = mask_hi(N);
  norm_lanes16 n0 = {0}, n1 = {0};
  if (norm) n0 = norm_lanes16_at(pr->norm, 0, k0), n1 = norm_lanes16_at(pr->norm, 16, k1);
  const int64_t OH = a->pix / a->OW, window_row = pr->POW * N, image = pr->POH * window_row;
  int64_t n = m0 / a->pix, oh = m0 % a->pix / a->OW, ow = m0 % a->OW;
  /* The window (qh, qw) over the pixel, and the pixel's place in it (hi, wi). */
  int64_t qh = oh / pr->PH, hi = oh % pr->PH, qw = ow / pr->PW, wi = ow % pr->PW;
  const float *x = norm ? pr->x + m0 * N : NULL;
  for (int64_t i = 0; i < rows; i++) {
    __m512 v0 = _mm512_setzero_ps(), v1 = _mm512_setzero_ps();
    if (qh < pr->POH && qw < pr->POW) {
      const int64_t at = n * image + qh * window_row + qw * N;
      /* The maps come from memory, along window rows the prefetcher does not follow. */
      nerve__prefetch(pr->argmax + at + POOLED_AHEAD * N, N * (int64_t)sizeof(int32_t), false);
      nerve__prefetch(pr->dpooled + at + POOLED_AHEAD * N, N * (int64_t)sizeof(float), false);
      const __m512i code = _mm512_set1_epi32((int32_t)(oh * a->OW + ow));
      const __mmask16 w0 = _mm512_mask_cmpeq_epi32_mask(k0, _mm512_maskz_loadu_epi32(k0, pr->argmax + at), code);
      const __mmask16 w1 = _mm512_mask_cmpeq_epi32_mask(k1, _mm512_maskz_loadu_epi32(k1, pr->argmax + at + 16), code);
      v0 = _mm512_maskz_loadu_ps(w0, pr->dpooled + at);
      v1 = _mm512_maskz_loadu_ps(w1, pr->dpooled + at + 16);
    }
    if (norm) {
      /* Every pixel's row, a window's or not: the norm's gradient is not 0 where g is. */
      nerve__prefetch(x + POOLED_AHEAD * N, N * (int64_t)sizeof(float), false);
      v0 = norm_dx16(&n0, v0, _mm512_maskz_loadu_ps(k0, x), k0, relu);
      v1 = norm_dx16(&n1, v1, _mm512_maskz_loadu_ps(k1, x + 16), k1, relu);
      x += N;
    }
    _mm512_store_ps(d + i * NR, v0);
    _mm512_store_ps(d + i * NR + 16, v1);
    if (++ow < a->OW) {
      if (++wi == pr->PW) wi = 0, qw++;
    } else {
      ow = qw = wi = 0;
      if (++oh < OH) {
        if (++hi == pr->PH) hi = 0, qh++;
      } else {
        oh = qh = hi = 0, n++;
      }
    }
  }
}

/* pooled_rows_fill_as for pr's norm, if any, and its relu. */
NERVE_TARGET_AVX512 static void pooled_rows_fill(const nerve__pooled_rows *pr, const nerve__gather *a, int64_t m0,
                                                 int64_t rows, int64_t N, float *d) {
  if (!pr->norm)
    pooled_rows_fill_as(pr, a, m0, rows, N, d, false, false);
  else if (pr->norm->relu)
    pooled_rows_fill_as(pr, a, m0, rows, N, d, true, true);
  else
    pooled_rows_fill_as(pr, a, m0, rows, N, d, true, false);
}

/* Returns whether it added D's rows to bias as well (one panel; bias not NULL). pr: D's rows
 * from a pool's gradient (one panel only). */
NERVE_TARGET_AVX512 static bool gather_tn_slice(float *G, int64_t ldg, const nerve__gather *a,
                                                int64_t M, const float *D, int64_t ldd,
                                                const nerve__pooled_rows *pr, int64_t N,
                                                int64_t k0, int64_t k1, float alpha, float *bias) {
  if (N > NR) {
    gather_rank_rows(G, ldg, a, M, D, ldd, N, k0, k1, alpha);
    return false;
  }
  /* One panel: rank updates skip nothing, so register tiles compute the same chains, and they
   * keep G in registers instead of reloading it for every 8 rows. The first tile takes the
   * bias. Which rows share a tile changes no element's chain. */
  const int64_t most = N > 24 ? TN_KT_WIDE : TN_KT;
  if (pr) {
    /* D's rows made a chunk at a time, each chunk then taken by every tile as if stored: the
     * tiles' chains, continued chunk after chunk, are the ones over all of D. */
    float d[POOLED_CHUNK * NR] __attribute__((aligned(64)));
    for (int64_t m = 0; m < M; m += POOLED_CHUNK) {
      const int64_t rows = M - m < POOLED_CHUNK ? M - m : POOLED_CHUNK;
      pooled_rows_fill(pr, a, m, rows, N, d);
      nerve__gather part = *a;
      part.first_row += m;
      for (int64_t k = k0; k < k1; k += most) {
        const int64_t kt = k1 - k < most ? k1 - k : most;
        gather_tn_tile_any((int)kt, N > 16 ? 2 : 1, G + (k - k0) * ldg, ldg, &part, a->off + k, d, NR, rows,
                           mask_lo(N), mask_hi(N), alpha, k == k0 ? bias : NULL);
      }
    }
    return bias != NULL;
  }
  for (int64_t k = k0; k < k1; k += most) {
    const int64_t kt = k1 - k < most ? k1 - k : most;
    gather_tn_tile_any((int)kt, N > 16 ? 2 : 1, G + (k - k0) * ldg, ldg, a, a->off + k, D, ldd, M,
                       mask_lo(N), mask_hi(N), alpha, k == k0 ? bias : NULL);
  }
  return bias != NULL;
}

#endif

/* ---- Gathered products with AVX2 (x86 CPUs without AVX-512) ------------------------------ */
/*
 * Before these kernels, without AVX-512 the products went through OpenBLAS, whose packing and
 * calls cost more than a convolution's few filters need: on a Zen 3 the fast recipe's first
 * convolution spent most of its time lowering windows and in small sgemm calls. These
 * kernels read the windows in place as the AVX-512 ones do, 8 lanes a vector, in panels of 16
 * output columns (two vectors: with 12 accumulators, the operands and a broadcast fit the 16
 * registers). Every output element is one chain of multiply-adds, in the order of the
 * reduction (nn: from the bias, or 0) or of the rows (tn: from G's value), whatever the tiles,
 * blocks and threads; the bits are AVX2's own, not those of the AVX-512 kernels.
 */
#if NERVE_X86

/* Output columns a panel covers, and the floats of D a tn chunk copies at most (16 KB). */
enum { AVX2_PANEL = 16, AVX2_CHUNK_FLOATS = 4096 };
/* Rows of C (nn) or G (tn) a tile holds in registers, for panels of two vectors and of one. */
enum { AVX2_NN_R2 = 6, AVX2_NN_R1 = 12, AVX2_TN_KT2 = 6, AVX2_TN_KT1 = 12 };
/* The widest D the tn kernels take: a chunk then holds at least 16 rows. */
enum { AVX2_TN_MAX_N = 256 };

/* D [rows, N] copied once into panels for many tn calls over the same rows (the visitor's
 * tiles): panel p's row m at panels + (p * rows + m) * AVX2_PANEL, zeros past N; finite: no
 * infinity or NaN anywhere in it (so every tile may list its rows). */
typedef struct {
  const float *panels;
  int64_t rows;
  bool finite;
} avx2_packed_d;

/*
 * Whether any lane of n sums is -0. A listed chain leaves out terms of zero inputs; each is
 * +-0 for a finite operand, which changes a sum only while it is zero, and turns -0 into +0
 * (never +0 into -0). So a listed sum differs from the sum over every step only where it ends
 * -0: those tiles take every step again, and the bits are those of the unlisted chains
 * whatever the tiles (as AVX-512's visitor does with whole_chain).
 */
NERVE_TARGET_AVX2 NERVE_INLINE bool avx2_negative_zero(const __m256 *sums, int n) {
  __m256 any = _mm256_setzero_ps();
  for (int i = 0; i < n; i++)
    any = _mm256_or_ps(any, _mm256_and_ps(_mm256_cmp_ps(sums[i], _mm256_setzero_ps(), _CMP_EQ_OQ), sums[i]));
  return _mm256_movemask_ps(any) != 0;
}

/* bad, or'ed with the lanes of v that are infinite or NaN. */
NERVE_TARGET_AVX2 NERVE_INLINE __m256 avx2_or_not_finite_lanes(__m256 bad, __m256 v) {
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  return _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_and_ps(v, magnitude), _mm256_set1_ps(INFINITY), _CMP_NLT_UQ));
}

/* The same for the 8 floats at p. */
NERVE_TARGET_AVX2 NERVE_INLINE __m256 avx2_or_not_finite(__m256 bad, const float *p) {
  return avx2_or_not_finite_lanes(bad, _mm256_loadu_ps(p));
}

/* Whether any of the n floats of a panel block (p, whole vectors) is infinite or NaN, where a
 * left-out zero term would have made NaN: lists then do not run over it. */
NERVE_TARGET_AVX2 NERVE_INLINE bool avx2_not_finite(const float *p, int64_t n) {
  __m256 bad = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; i += 8) bad = avx2_or_not_finite(bad, p + i);
  return _mm256_movemask_ps(bad) != 0;
}

/* avx2_not_finite over `rows` rows of a panel (16 floats), ld apart. */
NERVE_TARGET_AVX2 NERVE_INLINE bool avx2_not_finite_rows(const float *p, int64_t ld, int64_t rows) {
  __m256 bad = _mm256_setzero_ps();
  for (int64_t k = 0; k < rows; k++) bad = avx2_or_not_finite(avx2_or_not_finite(bad, p + k * ld), p + k * ld + 8);
  return _mm256_movemask_ps(bad) != 0;
}

/* c0 (and c1) += a broadcast times d0 (and d1): one row of a tn tile, as one asm statement.
 * With SwiftPM's flags (-O2, the frame pointer kept) clang hoisted a tile's broadcasts above
 * its multiply-adds and spilled the accumulators, reloading them every row: the CLI's Lab E
 * dense backward with Adam took 14.5-15.4 ms a step at 1 thread against 11.8-12.1 for the same
 * source with -O2 alone (bench/lab_e_step.c; 216 against 109 spill stores in avx2_tn_tile_any).
 * The same multiply-adds in the same order: the same bits. (The nn tiles, whose few spills
 * were outside their loops, ran their convolutions 2-3% slower this way.) */
NERVE_TARGET_AVX2 NERVE_INLINE void avx2_row2(__m256 *c0, __m256 *c1, const float *a, __m256 d0, __m256 d1) {
  __m256 x;
  __asm__("vbroadcastss {%[a], %[x]|%[x], %[a]}\n\t"
          "vfmadd231ps {%[d0], %[x], %[c0]|%[c0], %[x], %[d0]}\n\t"
          "vfmadd231ps {%[d1], %[x], %[c1]|%[c1], %[x], %[d1]}"
          : [c0] "+x"(*c0), [c1] "+x"(*c1), [x] "=&x"(x)
          : [a] "m"(*a), [d0] "x"(d0), [d1] "x"(d1));
}

NERVE_TARGET_AVX2 NERVE_INLINE void avx2_row1(__m256 *c0, const float *a, __m256 d0) {
  __m256 x;
  __asm__("vbroadcastss {%[a], %[x]|%[x], %[a]}\n\t"
          "vfmadd231ps {%[d0], %[x], %[c0]|%[c0], %[x], %[d0]}"
          : [c0] "+x"(*c0), [x] "=&x"(x)
          : [a] "m"(*a), [d0] "x"(d0));
}

/* Rows of B a stored tile asks for while it runs (the next block's, avx2_nn_run): `rows` rows of
 * `bytes` from `at`, `ld` bytes apart, spread over the tile's steps. */
typedef struct {
  const char *at;
  int64_t rows, ld, bytes;
} avx2_fetch;

/*
 * nn: an R x (8 V) tile of C (rows base[0..R), columns from col, the last vector's `tail` lanes
 * there) = init + A . B over K steps, where row r's step k reads base[r][off[k]] (gathered)
 * or base[r][k] (stored, off NULL) and B is a block [all, ldb] of the panel's columns: B itself
 * (whole panels, few stored rows) or a packed copy, zero past the panel's columns
 * (avx2_nn_run); init is C's value (from_c), else bias, else 0. With a list (stored only), the
 * steps are the K steps ks[0..K) of the `all` there are instead (avx2_nonzero_columns). The
 * fetches are asked a row every few steps: asked all at once before the tile, they filled the
 * core's line fill buffers and waited there (perf: the prefetches took half the copy's time).
 */
NERVE_TARGET_AVX2 NERVE_INLINE void avx2_nn_tile(const int R, const int V, const bool stored, float *C,
                                                 int64_t ldc, const float *const *base,
                                                 const int32_t *off, const int32_t *ks, const float *B,
                                                 int64_t ldb, const float *bias, bool from_c, int64_t K,
                                                 int64_t all, int64_t tail, avx2_fetch fetch) {
  __m256 c[AVX2_NN_R1];
  /* Listed, then (only where a listed sum ended -0, see avx2_negative_zero) every step again. */
  for (const int32_t *list = stored ? ks : NULL;; list = NULL) {
#  pragma GCC unroll 12
    for (int r = 0; r < R; r++)
      for (int v = 0; v < V; v++) {
        const int64_t n = v == V - 1 ? tail : 8;
        c[r * V + v] = from_c ? nerve__avx2_load(C + r * ldc + 8 * v, n)
                       : bias ? nerve__avx2_load(bias + 8 * v, n) : _mm256_setzero_ps();
      }
    /* Step k, B's row at b. The listed steps and the others in loops of their own, the others
     * walking b (clang, the CLI's compiler, had tested for a list and multiplied k by ldb in
     * every step). */
#  define AVX2_NN_STEP(k, b)                                                                     \
    do {                                                                                         \
      const __m256 b0 = _mm256_loadu_ps(b);                                                      \
      const __m256 b1 = V == 2 ? _mm256_loadu_ps((b) + 8) : b0;                                  \
      const int64_t at = stored ? (k) : off[k];                                                  \
      _Pragma("GCC unroll 12") for (int r = 0; r < R; r++) {                                     \
        const __m256 av = _mm256_broadcast_ss(base[r] + at);                                     \
        c[r * V] = _mm256_fmadd_ps(av, b0, c[r * V]);                                            \
        if (V == 2) c[r * V + 1] = _mm256_fmadd_ps(av, b1, c[r * V + 1]);                        \
      }                                                                                          \
    } while (0)
    const int64_t steps = list ? K : all;
    const int64_t parts = stored ? fetch.rows : 0, every = parts > 0 ? steps / parts : 0;
    int64_t j = 0;
    const float *b = B;
    for (int64_t f = 0; f <= parts; f++) {
      const int64_t end = f < parts ? j + every : steps;
      if (f < parts) nerve__prefetch(fetch.at + f * fetch.ld, fetch.bytes, false);
      if (list)
        for (; j < end; j++) AVX2_NN_STEP(list[j], B + list[j] * ldb);
      else
        for (; j < end; j++, b += ldb) AVX2_NN_STEP(j, b);
    }
    fetch.rows = 0;
#  undef AVX2_NN_STEP
    if (!list || !avx2_negative_zero(c, R * V)) break;
  }
#  pragma GCC unroll 12
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++) nerve__avx2_store(C + r * ldc + 8 * v, v == V - 1 ? tail : 8, c[r * V + v]);
}

#  define AVX2_NN_CASE(R)                                                                        \
    case R:                                                                                      \
      if (V == 2 && stored)                                                                      \
        avx2_nn_tile(R < AVX2_NN_R2 ? R : AVX2_NN_R2, 2, true, C, ldc, base, off, ks, B, ldb, bias, from_c, K, \
                     all, tail, fetch);                                                          \
      else if (V == 2)                                                                           \
        avx2_nn_tile(R < AVX2_NN_R2 ? R : AVX2_NN_R2, 2, false, C, ldc, base, off, ks, B, ldb, bias, from_c, K, \
                     all, tail, fetch);                                                          \
      else if (stored)                                                                           \
        avx2_nn_tile(R, 1, true, C, ldc, base, off, ks, B, ldb, bias, from_c, K, all, tail, fetch);      \
      else                                                                                       \
        avx2_nn_tile(R, 1, false, C, ldc, base, off, ks, B, ldb, bias, from_c, K, all, tail, fetch);     \
      break;

NERVE_TARGET_AVX2 static void avx2_nn_tile_any(int R, int V, bool stored, float *C, int64_t ldc,
                                               const float *const *base, const int32_t *off,
                                               const int32_t *ks, const float *B, int64_t ldb,
                                               const float *bias, bool from_c, int64_t K, int64_t all,
                                               int64_t tail, avx2_fetch fetch) {
  switch (R) {
    AVX2_NN_CASE(1) AVX2_NN_CASE(2) AVX2_NN_CASE(3) AVX2_NN_CASE(4) AVX2_NN_CASE(5)
    AVX2_NN_CASE(6) AVX2_NN_CASE(7) AVX2_NN_CASE(8) AVX2_NN_CASE(9) AVX2_NN_CASE(10)
    AVX2_NN_CASE(11) AVX2_NN_CASE(12)
    default: break;
  }
}

/*
 * Skipping zero inputs in AVX2's stored products: a tile's steps listed as the columns where
 * any of its rows is not zero (NaN included, -0 as zero), as AVX-512's nonzero_columns lists
 * them. A multiply-add of a zero adds +-0, which changes a chain only where B holds an infinity
 * or NaN or the sum so far is -0, so the chains are otherwise those of every step.
 * AVX2 has no compress: each 8 columns' mask picks its indices from a table, a byte each.
 */
#  define AVX2_BIT(m, i) ((m) >> (i) & 1)
#  define AVX2_BITS_BELOW(m, i) ((i) == 0 ? 0 : __builtin_popcount((unsigned)(m) & ((1u << (i)) - 1u)))
#  define AVX2_PLACE(m, i) (AVX2_BIT(m, i) ? (uint64_t)(i) << (8 * AVX2_BITS_BELOW(m, i)) : 0)
#  define AVX2_PICK(m)                                                                           \
    (AVX2_PLACE(m, 0) | AVX2_PLACE(m, 1) | AVX2_PLACE(m, 2) | AVX2_PLACE(m, 3) |                 \
     AVX2_PLACE(m, 4) | AVX2_PLACE(m, 5) | AVX2_PLACE(m, 6) | AVX2_PLACE(m, 7))
#  define AVX2_PICK4(m) AVX2_PICK(m), AVX2_PICK(m + 1), AVX2_PICK(m + 2), AVX2_PICK(m + 3)
#  define AVX2_PICK16(m) AVX2_PICK4(m), AVX2_PICK4(m + 4), AVX2_PICK4(m + 8), AVX2_PICK4(m + 12)
#  define AVX2_PICK64(m) AVX2_PICK16(m), AVX2_PICK16(m + 16), AVX2_PICK16(m + 32), AVX2_PICK16(m + 48)
/* Entry m: the indices of m's set bits, lowest first, one a byte. */
static const uint64_t avx2_picks[256] = {AVX2_PICK64(0), AVX2_PICK64(64), AVX2_PICK64(128), AVX2_PICK64(192)};
#  undef AVX2_PICK64
#  undef AVX2_PICK16
#  undef AVX2_PICK4
#  undef AVX2_PICK
#  undef AVX2_PLACE
#  undef AVX2_BITS_BELOW
#  undef AVX2_BIT

/* The k in [0, n) where some base[r][k] (r < R) is not zero, into ks (room for n + 8);
 * returns how many. */
NERVE_TARGET_AVX2 static int64_t avx2_nonzero_columns(int R, const float *const *base, int64_t n, int32_t *ks) {
  int64_t count = 0;
  for (int64_t k = 0; k < n; k += 8) {
    __m256 any = _mm256_setzero_ps();
    for (int r = 0; r < R; r++)
      any = _mm256_or_ps(any, _mm256_cmp_ps(nerve__avx2_load(base[r] + k, n - k), _mm256_setzero_ps(), _CMP_NEQ_UQ));
    const unsigned m = (unsigned)_mm256_movemask_ps(any);
    const __m256i at = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)&avx2_picks[m]));
    _mm256_storeu_si256((__m256i *)(ks + count), _mm256_add_epi32(at, _mm256_set1_epi32((int32_t)k)));
    count += __builtin_popcount(m);
  }
  return count;
}

NERVE_TARGET_AVX2 int64_t nerve__avx2_nonzeros(const float *row, int64_t n, int32_t *ks) {
  const float *base[1] = {row};
  return avx2_nonzero_columns(1, base, n, ks);
}

/*
 * The lists a row of tiles keeps while a block's panels pass (nn: each tile's live columns of
 * the block, avx2_nonzero_columns; tn: each tile's live rows of the chunk, avx2_nonzero_rows),
 * slot t for tile t under the key its tile gives (where it starts, how wide). A call's first
 * list decides whether lists pay there at all (under 3/4 of its steps live: images, a relu's
 * outputs; a sigmoid's never); after it, each list runs where it is under 3/4 live itself.
 * Storage is the caller's: `slots` lists of `stride` ints.
 */
enum { AVX2_KEPT_LISTS = 48 };
typedef struct {
  int32_t *store;
  int64_t stride, slots;
  int64_t key[AVX2_KEPT_LISTS][2], live[AVX2_KEPT_LISTS];
  bool off, probed;
} avx2_lists;

static void avx2_lists_forget(avx2_lists *l) {
  for (int64_t t = 0; t < l->slots; t++) l->key[t][0] = l->key[t][1] = -1;
}

/* Tile t's slot (the last one for tiles past the cache, never kept), and whether it holds the
 * list under key (a, b); where not, the caller makes it there and calls avx2_lists_keep. */
static int32_t *avx2_lists_slot(const avx2_lists *l, int64_t t, int64_t a, int64_t b, bool *held) {
  const int64_t slot = t < l->slots ? t : l->slots - 1;
  *held = t < l->slots && l->key[slot][0] == a && l->key[slot][1] == b;
  return l->store + slot * l->stride;
}

/* Records tile t's list just made (`live` of `of` steps) and returns the list to run, NULL for
 * every step (*steps then `of`). */
static const int32_t *avx2_lists_use(avx2_lists *l, int64_t t, int64_t a, int64_t b, bool held, int64_t live,
                                     int64_t of, int64_t *steps) {
  const int64_t slot = t < l->slots ? t : l->slots - 1;
  if (!held) {
    l->key[slot][0] = t < l->slots ? a : -1, l->key[slot][1] = b, l->live[slot] = live;
    if (!l->probed && 4 * live >= 3 * of) l->off = true;
    l->probed = true;
  }
  const bool pays = 4 * l->live[slot] < 3 * of;
  *steps = pays ? l->live[slot] : of;
  return pays ? l->store + slot * l->stride : NULL;
}

/*
 * AVX2_NN_KB: reduction steps a product takes at a time at most (avx2_nn_block_steps takes
 * half for some row counts): a panel's block of B, packed (16 KB), stays in L1 while every row
 * tile passes, each tile's chains stored and taken up again block after block (the same bits).
 * Whole reductions streamed B's panel from L3 for every 6 rows, one row of B to a page (Lab E's
 * 6272 -> 784 layer).
 * AVX2_NN_GROUP: panels whose blocks are copied together: a row's 64 columns, a grid block's
 * width, read as one run of four lines instead of a line a panel four times over (the copies
 * waited on those loads: Lab E's forward 5.5 -> 5.2 ms at 1 thread, a 2048^3 product 75 ->
 * 80-82 GFLOP/s, bench/dense_products.c, clang's library). With the lists below, avx2_nn_run's
 * frame is about 112 KB of stack (under a 32 KB one where avx2_nn_transposed copies a short B):
 * glibc's threads, and libgomp's, which take its default, have 8 MB.
 * AVX2_NN_LISTS: row tiles whose lists a block keeps: all of a grid block's (AVX2_COPY_MB rows).
 */
enum { AVX2_NN_KB = 256, AVX2_NN_GROUP = 4, AVX2_NN_LISTS = (AVX2_COPY_MB + AVX2_NN_R2 - 1) / AVX2_NN_R2 };
_Static_assert((int)AVX2_NN_LISTS <= (int)AVX2_KEPT_LISTS, "a grid block's row tiles fit the list cache");

/* Reduction steps avx2_nn_run takes at a time for M rows of A: half of AVX2_NN_KB for 17 to 48
 * stored rows, whose blocks of A (256 floats a row: 32 KB for 32 rows, 16 KB at 128) then stay
 * in L1 beside the panel; fewer rows fit anyway, and more are read from L2 whatever the block,
 * where longer blocks store and reload C less often. Lab E's 6272 -> 784 forward on 32 rows at
 * 1 thread 5.18-5.39 -> 4.50-4.54 ms with gcc, 5.21-5.36 -> 5.05-5.09 with clang (24 and 48
 * rows about as much faster, 64 and up 1-5% slower at half; the same within noise at 2
 * threads; a Zen 3, bench/dense_products.c). Gathered rows (convolutions) were not measured
 * and keep the longer blocks. The chains carry on through C: the same bits either way. */
static int64_t avx2_nn_block_steps(int64_t M, bool gathered) {
  return !gathered && M > 16 && M <= 48 ? AVX2_NN_KB / 2 : AVX2_NN_KB;
}

/* Stored rows of A up to which avx2_nn_run reads B's whole panels where they are, not copied:
 * with few row tiles to read each block, the copy was a quarter of the product, its loads
 * waiting on lines the fetches had not brought yet (Lab E's 6272 -> 784 forward on 32 rows,
 * bench/dense_products.c, an Emerald Rapids with NERVE_ISA=avx2, alternated: 5.3-5.7 ->
 * 4.75 ms at 1 thread, 2.87-2.95 -> 2.40-2.53 at 2). Tall blocks keep the copy: read in place,
 * every tile's step would need another page of B (2048^3: 96-127 -> 69-74 GFLOP/s). */
enum { AVX2_IN_PLACE_ROWS = 48 };

/* kb rows of B's first n columns (rows ldb apart) into panels[0], panels[1], ...: AVX2_PANEL
 * floats a row, zero past n. Row by row, so that a row's columns are read as one run. */
NERVE_TARGET_AVX2 NERVE_INLINE void avx2_copy_panels(float (*panels)[AVX2_NN_KB * AVX2_PANEL], const float *B,
                                                     int64_t ldb, int64_t kb, int64_t n) {
  for (int64_t k = 0; k < kb; k++) {
    const float *b = B + k * ldb;
    for (int64_t c = 0; c < n; c += AVX2_PANEL) {
      float *to = panels[c / AVX2_PANEL] + k * AVX2_PANEL;
      _mm256_store_ps(to, nerve__avx2_load(b + c, n - c));
      _mm256_store_ps(to + 8, n - c > 8 ? nerve__avx2_load(b + c + 8, n - c - 8) : _mm256_setzero_ps());
    }
  }
}

/* C[M,N] = init + A . B[K,N], A gathered (ga) or stored (A, lda; ga NULL); init: C's value
 * with from_c, else bias (may be NULL), else 0. Panels of 16 columns (8 where that covers the
 * rest), each taking the rows in tiles. */
NERVE_TARGET_AVX2 static void avx2_nn_run(float *C, int64_t ldc, const nerve__gather *ga,
                                          const float *A, int64_t lda, const float *B, int64_t ldb,
                                          const float *bias, bool from_c, int64_t M, int64_t N,
                                          int64_t K) {
  float group[AVX2_NN_GROUP][AVX2_NN_KB * AVX2_PANEL] __attribute__((aligned(32)));
  /* Stored rows' tiles over their live columns (avx2_lists). */
  int32_t ks[AVX2_NN_LISTS][AVX2_NN_KB + 8];
  avx2_lists lists = {.store = ks[0], .stride = AVX2_NN_KB + 8, .slots = AVX2_NN_LISTS, .off = ga != NULL};
  const int64_t KB = avx2_nn_block_steps(M, ga != NULL);
  for (int64_t k0 = 0; k0 == 0 || k0 < K; k0 += KB) {
    const int64_t kb = K - k0 < KB ? K - k0 : KB;
    avx2_lists_forget(&lists);
    for (int64_t col = 0; col < N; col += AVX2_PANEL) {
      const int64_t nr = N - col < AVX2_PANEL ? N - col : AVX2_PANEL;
      const int V = nr > 8 ? 2 : 1, most = V == 2 ? AVX2_NN_R2 : AVX2_NN_R1;
      const int64_t g = col / AVX2_PANEL % AVX2_NN_GROUP;
      const bool few = !ga && M <= AVX2_IN_PLACE_ROWS, in_place = few && nr == AVX2_PANEL;
      /* The group's columns: where its first panel starts, and how many. */
      const int64_t gcol = col - g * AVX2_PANEL;
      const int64_t gn = N - gcol < AVX2_NN_GROUP * AVX2_PANEL ? N - gcol : AVX2_NN_GROUP * AVX2_PANEL;
      if (few && !in_place)
        avx2_copy_panels(group + g, B + k0 * ldb + col, ldb, kb, nr); /* a narrow last panel alone */
      else if (!few && g == 0)
        avx2_copy_panels(group, B + k0 * ldb + col, ldb, kb, gn);
      const float *packed = in_place ? B + k0 * ldb + col : group[g];
      const int64_t ldpk = in_place ? ldb : AVX2_PANEL;
      const bool listable = !lists.off && !avx2_not_finite_rows(packed, ldpk, kb);
      /* Stored products ask for the group's rows of B of the next block of steps ahead, a share
       * within each tile (avx2_fetch): the copy, or the first tile reading B in place, had
       * waited on them (Lab E's 6272 -> 784 forward on 32 rows, then copied, 2.66-2.98 ->
       * 2.47-2.73 ms at 2 threads, bench/dense_products.c; on 146 rows about 4% faster; Zen 3).
       * Shares counted in tiles of AVX2_NN_R2 rows for every panel, so that a narrow last
       * panel's tiles (12 rows) start where the others' shares left off. */
      const int64_t next_k = k0 + KB;
      const int64_t next_rows = ga || next_k >= K ? 0 : K - next_k < KB ? K - next_k : KB;
      const int64_t row_tiles = (M + AVX2_NN_R2 - 1) / AVX2_NN_R2;
      const int64_t tiles = (gn + AVX2_PANEL - 1) / AVX2_PANEL * row_tiles;
      const int64_t per_tile = (next_rows + tiles - 1) / tiles;
      int64_t ahead = g * row_tiles * per_tile;
      /* Gathered rows' windows, stepped from tile to tile (gathered_rows), found once a panel. */
      gather_window w = ga ? gather_window_at(ga, 0) : (gather_window){0};
      for (int64_t m = 0; m < M; m += most) {
        const int64_t left = next_rows - ahead, fetched = left < 0 ? 0 : left < per_tile ? left : per_tile;
        /* The address only where there are rows to fetch: past the last block it would point
         * past B. */
        const avx2_fetch fetch = {.at = fetched > 0 ? (const char *)(B + (next_k + ahead) * ldb + gcol) : NULL,
                                  .rows = fetched,
                                  .ld = ldb * (int64_t)sizeof(float),
                                  .bytes = gn * (int64_t)sizeof(float)};
        ahead += fetch.rows;
        const int R = (int)(M - m < most ? M - m : most);
        const float *base[AVX2_NN_R1];
        if (ga) {
          gathered_rows(ga, &w, R, base);
        } else {
          for (int r = 0; r < R; r++) base[r] = A + (m + r) * lda + k0;
        }
        int64_t steps = kb;
        const int32_t *list = NULL;
        if (listable) {
          bool held;
          int32_t *slot = avx2_lists_slot(&lists, m / most, m, R, &held);
          const int64_t live = held ? 0 : avx2_nonzero_columns(R, base, kb, slot);
          list = avx2_lists_use(&lists, m / most, m, R, held, live, kb, &steps);
        }
        avx2_nn_tile_any(R, V, ga == NULL, C + m * ldc + col, ldc, base, ga ? ga->off + k0 : NULL, list,
                         packed, ldpk, k0 == 0 && bias ? bias + col : NULL, k0 > 0 || from_c, steps,
                         kb, nr - 8 * (V - 1), fetch);
      }
    }
  }
}

/*
 * tn: a KT x (8 V) tile of G (KT rows, the gathered columns off[0..KT), one panel's columns)
 * continues its chains over `rows` rows of d (a chunk, `ldd` apart, zero past the panel's
 * columns), reading the windows from w on, or (fresh) starts them from 0 without reading G. With
 * bias, the panel's bias adds the same rows. With a list (stored rows, no bias), only the chunk's
 * rows ms[0..rows) of the `all` there are (avx2_nonzero_rows).
 */
NERVE_TARGET_AVX2 NERVE_INLINE void avx2_tn_tile(const int KT, const int V, const bool biased, float *G, int64_t ldg,
                                                 const nerve__gather *ga, const gather_window *w,
                                                 const int32_t *off, const float *d, int64_t ldd,
                                                 int64_t rows, const int32_t *ms, int64_t all,
                                                 int64_t tail, float *bias, bool fresh) {
  __m256 g[AVX2_TN_KT1], b0 = _mm256_setzero_ps(), b1 = b0;
  if (biased) {
    b0 = nerve__avx2_load(bias, V == 1 ? tail : 8);
    if (V == 2) b1 = nerve__avx2_load(bias + 8, tail);
  }
  int32_t o[AVX2_TN_KT1];
#  pragma GCC unroll 12
  for (int r = 0; r < KT; r++) o[r] = off[r];
  /* Row m of the chunk, its inputs at a: the bias and the tile's chains. */
#  define AVX2_TN_ROW(m, a)                                                                      \
    do {                                                                                         \
      const __m256 d0 = _mm256_load_ps(d + (m) * ldd);                                           \
      const __m256 d1 = V == 2 ? _mm256_load_ps(d + (m) * ldd + 8) : d0;                         \
      if (biased) {                                                                              \
        b0 = _mm256_add_ps(b0, d0);                                                              \
        if (V == 2) b1 = _mm256_add_ps(b1, d1);                                                  \
      }                                                                                          \
      _Pragma("GCC unroll 12") for (int r = 0; r < KT; r++) {                                    \
        if (V == 2) avx2_row2(&g[r * V], &g[r * V + 1], (a) + o[r], d0, d1);                     \
        else avx2_row1(&g[r * V], (a) + o[r], d0);                                               \
      }                                                                                          \
    } while (0)
  /* Listed, then (only where a listed sum ended -0, see avx2_negative_zero) every row again. */
  for (const int32_t *list = biased ? NULL : ms;; list = NULL) {
#  pragma GCC unroll 12
    for (int r = 0; r < KT; r++)
      for (int v = 0; v < V; v++)
        g[r * V + v] = fresh ? _mm256_setzero_ps() : nerve__avx2_load(G + r * ldg + 8 * v, v == V - 1 ? tail : 8);
    if (list) {
      for (int64_t j = 0; j < rows; j++) AVX2_TN_ROW(list[j], w->a + list[j] * ga->image_stride);
    } else {
      gather_window at = *w;
      for (int64_t m = 0; m < all; m++) {
        AVX2_TN_ROW(m, at.a);
        gather_window_next(ga, &at);
      }
    }
    if (!list || !avx2_negative_zero(g, KT * V)) break;
  }
#  undef AVX2_TN_ROW
#  pragma GCC unroll 12
  for (int r = 0; r < KT; r++)
    for (int v = 0; v < V; v++) nerve__avx2_store(G + r * ldg + 8 * v, v == V - 1 ? tail : 8, g[r * V + v]);
  if (biased) {
    nerve__avx2_store(bias, V == 1 ? tail : 8, b0);
    if (V == 2) nerve__avx2_store(bias + 8, tail, b1);
  }
}

#  define AVX2_TN_CASE(KT)                                                                         \
    case KT:                                                                                       \
      if (V == 2 && bias)                                                                          \
        avx2_tn_tile(KT < AVX2_TN_KT2 - 1 ? KT : AVX2_TN_KT2 - 1, 2, true, G, ldg, ga, w, off, d, ldd, \
                     rows, NULL, rows, tail, bias, fresh);                                         \
      else if (V == 2)                                                                             \
        avx2_tn_tile(KT < AVX2_TN_KT2 ? KT : AVX2_TN_KT2, 2, false, G, ldg, ga, w, off, d, ldd, rows, \
                     ms, all, tail, NULL, fresh);                                                       \
      else if (bias)                                                                               \
        avx2_tn_tile(KT, 1, true, G, ldg, ga, w, off, d, ldd, rows, NULL, rows, tail, bias, fresh);      \
      else                                                                                         \
        avx2_tn_tile(KT, 1, false, G, ldg, ga, w, off, d, ldd, rows, ms, all, tail, NULL, fresh);       \
      break;

NERVE_TARGET_AVX2 static void avx2_tn_tile_any(int KT, int V, float *G, int64_t ldg,
                                               const nerve__gather *ga, const gather_window *w,
                                               const int32_t *off, const float *d, int64_t ldd,
                                               int64_t rows, const int32_t *ms, int64_t all,
                                               int64_t tail, float *bias, bool fresh) {
  switch (KT) {
    AVX2_TN_CASE(1) AVX2_TN_CASE(2) AVX2_TN_CASE(3) AVX2_TN_CASE(4) AVX2_TN_CASE(5)
    AVX2_TN_CASE(6) AVX2_TN_CASE(7) AVX2_TN_CASE(8) AVX2_TN_CASE(9) AVX2_TN_CASE(10)
    AVX2_TN_CASE(11) AVX2_TN_CASE(12)
    default: break;
  }
}

/* alpha times B [K,N] (row stride ldb) into P, rows ldp floats apart (a multiple of 8: N up to
 * whole vectors or panels), zeros past N. */
NERVE_TARGET_AVX2 static void avx2_pad_rows(float *P, int64_t ldp, const float *B, int64_t ldb, int64_t K,
                                            int64_t N, float alpha) {
  const __m256 scale = _mm256_set1_ps(alpha);
  for (int64_t k = 0; k < K; k++)
    for (int64_t c = 0; c < ldp; c += 8) {
      const __m256 v = c < N ? nerve__avx2_load(B + k * ldb + c, N - c) : _mm256_setzero_ps();
      /* alpha = 1: the products as they are (x 1 changes no bits but costs a multiply). */
      _mm256_storeu_ps(P + k * ldp + c, alpha == 1.0f ? v : _mm256_mul_ps(scale, v));
    }
}

/* Rows of D a chunk's copy asks for ahead of the row it copies (into the next chunk at its
 * end; past D's last row they fetch whatever follows it, and a prefetch never faults). The copy waited on D:
 * a convolution's output gradient, half of it in the other core's cache, whose stream the
 * hardware's prefetchers restart at every 4 KB page. Lab E's first convolution's weight
 * gradient, one step (bench/lab_e_step.c, NERVE_ISA=avx2): 0.42 -> 0.36-0.39 ms at 2 threads,
 * 0.46-0.53 -> 0.37-0.40 at 1; 64 rows ahead no better. */
enum { AVX2_FILL_AHEAD = 32 };

/* The norm's input gradient in the 8 lanes of channels [c, c + 8) that `lanes` keeps (0 in the
 * others), as norm.c's AVX2 rows make it (nerve__norm_terms): g the pool's gradient there
 * (0 + g, as nerve__maxpool_grad_value makes it), x the row of the norm's input. */
NERVE_TARGET_AVX2 NERVE_INLINE __m256 avx2_norm_dx8(const nerve__norm_terms *t, __m256 g, const float *x,
                                                    int64_t c, __m256i lanes) {
  const __m256 zero = _mm256_setzero_ps();
  g = _mm256_add_ps(zero, g);
  const __m256 xv = _mm256_maskload_ps(x + c, lanes);
  const __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(xv, _mm256_maskload_ps(t->mean + c, lanes)),
                                    _mm256_maskload_ps(t->invstd + c, lanes));
  const __m256 r = _mm256_fmsub_ps(_mm256_set1_ps(t->rows), g, _mm256_maskload_ps(t->sum_dy + c, lanes));
  __m256 d = _mm256_mul_ps(_mm256_maskload_ps(t->factor + c, lanes),
                           _mm256_fnmadd_ps(xhat, _mm256_maskload_ps(t->sum_dyx + c, lanes), r));
  if (t->relu) d = _mm256_and_ps(_mm256_cmp_ps(xv, zero, _CMP_GT_OQ), d);
  return _mm256_and_ps(_mm256_castsi256_ps(lanes), d);
}

/* Rows [m0, m0 + rows) of D (alpha times D, or the pool's gradient as its backward would write
 * it, nerve__pooled_rows, or from that the norm's before it), N columns, into d: rows ldd
 * apart, zero from column N to ldd. */
NERVE_TARGET_AVX2 static void avx2_chunk_fill(const nerve__gather *a, const float *D, int64_t ldD,
                                              const nerve__pooled_rows *pr, int64_t m0, int64_t rows,
                                              int64_t N, float alpha, float *d, int64_t ldd) {
  if (!pr) {
    for (int64_t i = 0; i < rows; i++) {
      nerve__prefetch(D + (m0 + i + AVX2_FILL_AHEAD) * ldD, N * (int64_t)sizeof(float), false);
      avx2_pad_rows(d + i * ldd, ldd, D + (m0 + i) * ldD, ldD, 1, N, alpha);
    }
    return;
  }
  const __m256 scale = _mm256_set1_ps(alpha);
  const int64_t OH = a->pix / a->OW, window_row = pr->POW * N, image = pr->POH * window_row;
  /* Rows counted from a->first_row, which starts the first image of pr's maps. */
  int64_t n = m0 / a->pix, oh = m0 % a->pix / a->OW, ow = m0 % a->OW;
  for (int64_t i = 0; i < rows; i++) {
    const int64_t qh = oh / pr->PH, qw = ow / pr->PW;
    const bool inside = qh < pr->POH && qw < pr->POW;
    const int64_t at = n * image + qh * window_row + qw * N;
    const __m256i code = _mm256_set1_epi32((int32_t)(oh * a->OW + ow));
    const float *x = pr->norm ? pr->x + (m0 + i) * N : NULL;
    if (x) nerve__prefetch(x + AVX2_FILL_AHEAD * N, N * (int64_t)sizeof(float), false);
    for (int64_t c = 0; c < ldd; c += 8) {
      __m256 v = _mm256_setzero_ps();
      const __m256i lanes = nerve__avx2_lanes(N - c);
      if (inside) {
        const __m256i won = _mm256_and_si256(
            lanes, _mm256_cmpeq_epi32(_mm256_maskload_epi32(pr->argmax + at + c, lanes), code));
        v = _mm256_maskload_ps(pr->dpooled + at + c, won);
      }
      /* Every pixel's row with a norm, a window's or not: its gradient is not 0 where g is. */
      if (x) v = avx2_norm_dx8(pr->norm, v, x, c, lanes);
      if (alpha != 1.0f) v = _mm256_mul_ps(scale, v);
      _mm256_store_ps(d + i * ldd + c, v);
    }
    if (++ow == a->OW) {
      ow = 0;
      if (++oh == OH) oh = 0, n++;
    }
  }
}

/* The offsets of a stored tile's columns from its first. */
static const int32_t avx2_identity[AVX2_TN_KT1] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};

/* The rows m in [0, rows) where some of a[m * lda + [0, width)) is not zero (NaN included, -0
 * as zero), into ms; returns how many. A tile's rows whose inputs are all zero add nothing to
 * its chains but +-0 (see avx2_nonzero_columns), so the tn tiles may skip them. */
NERVE_TARGET_AVX2 static int64_t avx2_nonzero_rows(const float *a, int64_t lda, int64_t rows, int64_t width,
                                                   int32_t *ms) {
  int64_t count = 0;
  for (int64_t m = 0; m < rows; m++) {
    const float *p = a + m * lda;
    __m256 nz = _mm256_cmp_ps(nerve__avx2_load(p, width), _mm256_setzero_ps(), _CMP_NEQ_UQ);
    if (width > 8) nz = _mm256_or_ps(nz, _mm256_cmp_ps(nerve__avx2_load(p + 8, width - 8), _mm256_setzero_ps(), _CMP_NEQ_UQ));
    ms[count] = (int32_t)m;
    count += _mm256_movemask_ps(nz) != 0;
  }
  return count;
}

/* Tiles of a tn chunk whose row lists it keeps (avx2_lists; later tiles make theirs each panel). */
enum { AVX2_TN_LISTS = 16, AVX2_TN_LIST_ROWS = AVX2_CHUNK_FLOATS / 8 };

/*
 * G's rows for columns [k0, k1) of the gathered A (or stored: off NULL, rows image_stride
 * apart; G at k0's row) += A^T . (alpha D), D's rows taken a chunk at a time into an aligned
 * copy in L1, every tile continuing its chains chunk after chunk; the first tile of each panel
 * adds the rows to bias. Evenly sized tiles: a member's 13 columns as 5 + 4 + 4, not 6 + 6 + 1
 * (whose last pass costs nearly a full one).
 */
NERVE_TARGET_AVX2 static void avx2_gather_tn(float *G, int64_t ldg, const nerve__gather *a,
                                             int64_t M, const float *D, int64_t ldD,
                                             const nerve__pooled_rows *pr, int64_t N, int64_t k0,
                                             int64_t k1, float alpha, float *bias) {
  float d[AVX2_CHUNK_FLOATS] __attribute__((aligned(32)));
  /* Wide D (without a pool's rows) is copied a panel at a time: a chunk is then 256 rows, and
   * each tile's chains are loaded and stored once per 256 rows, not once per 4096 / N (Lab E's
   * 784 columns, taken 256 at a time by avx2_tn_stored: every 16 rows; the fast recipe's dense
   * backward 2.99-3.06 -> 2.67-2.72 ms at 1 thread, bench/fast_layers.c). Up to 64 columns a
   * chunk holds 64 rows or more already, and one copy serves every panel (its second
   * convolution's 32 filters: 4-6% slower by panels). */
  const bool by_panel = pr == NULL && N > 64;
  const int64_t ldd = by_panel ? AVX2_PANEL : (N + 7) & ~(int64_t)7, chunk = AVX2_CHUNK_FLOATS / ldd;
  /* Stored rows' tiles over their live rows (avx2_lists). */
  int32_t ms_store[AVX2_TN_LISTS][AVX2_TN_LIST_ROWS];
  avx2_lists lists = {
      .store = ms_store[0], .stride = AVX2_TN_LIST_ROWS, .slots = AVX2_TN_LISTS, .off = a->off != NULL};
  for (int64_t m = 0; m < M; m += chunk) {
    const int64_t rows = M - m < chunk ? M - m : chunk;
    if (!by_panel) avx2_chunk_fill(a, D, ldD, pr, m, rows, N, alpha, d, ldd);
    const gather_window w = gather_window_at(a, m);
    avx2_lists_forget(&lists);
    /* A chunk with an infinite or NaN gradient takes every row (avx2_not_finite). */
    bool listable = !lists.off && (by_panel || !avx2_not_finite(d, rows * ldd));
    for (int64_t col = 0; col < N; col += AVX2_PANEL) {
      const int64_t nr = N - col < AVX2_PANEL ? N - col : AVX2_PANEL;
      const float *dp = by_panel ? d : d + col;
      if (by_panel) {
        avx2_pad_rows(d, ldd, D + m * ldD + col, ldD, rows, nr, alpha);
        listable = !lists.off && !avx2_not_finite(d, rows * ldd);
      }
      const int V = nr > 8 ? 2 : 1;
      const int64_t most = V == 2 ? AVX2_TN_KT2 : AVX2_TN_KT1;
      /* With the bias's two vectors, a tile of 6 x 2 spilled its accumulators: the bias goes
       * with a lead tile of 5 columns there; the other tiles evenly sized. */
      const int64_t width = k1 - k0, lead = bias && V == 2 ? (width < most - 1 ? width : most - 1) : 0;
      const int64_t rest = width - lead, tiles = (rest + most - 1) / most;
      for (int64_t t = lead ? -1 : 0; t < tiles; t++) {
        const int64_t k = t < 0 ? k0 : k0 + lead + rest * t / tiles;
        const int64_t next = t < 0 ? k0 + lead : k0 + lead + rest * (t + 1) / tiles;
        /* Stored (off NULL): the tile's columns are the next ones along each row. */
        gather_window wk = w;
        if (!a->off) wk.a += k, wk.image += k;
        float *tile_bias = t == (lead ? -1 : 0) && bias ? bias + col : NULL;
        int64_t live = rows;
        const int32_t *ms = NULL;
        if (!tile_bias && listable) {
          bool held;
          int32_t *slot = avx2_lists_slot(&lists, t, k, next, &held);
          const int64_t found = held ? 0 : avx2_nonzero_rows(wk.a, a->image_stride, rows, next - k, slot);
          ms = avx2_lists_use(&lists, t, k, next, held, found, rows, &live);
        }
        avx2_tn_tile_any((int)(next - k), V, G + (k - k0) * ldg + col, ldg, a, &wk,
                         a->off ? a->off + k : avx2_identity, dp, ldd, live, ms, rows, nr - 8 * (V - 1),
                         tile_bias, false);
      }
    }
  }
}

/* ---- Stored products with AVX2: OpenBLAS's bits depend on a row's place in the call (its
 * tails take other kernels), so a batch split between ranks, or rows between calls, changed
 * them; these chains depend on nothing but the row. */

/* Rows of A up to which a stored product reads B where it is (avx2_nn_few). */
enum { AVX2_FEW_ROWS = 4 };

/* R (1 or 2) rows of C, their first 8 (V - 1) + tail columns (`tail` in the last vector):
 * each element one chain over every k in order, from C's value (from_c) or 0. Rows go in
 * pairs within a slice of 32 columns, so 3 or 4 rows read the slice of B twice (from L2 or
 * L3 where K is large: not measured; the copies this replaces read all of B for each call). */
NERVE_TARGET_AVX2 NERVE_INLINE void avx2_few_tile(const int R, const int V, float *C, int64_t ldc, const float *A,
                                                  int64_t lda, const float *B, int64_t ldb, bool from_c,
                                                  int64_t K, int64_t tail) {
  __m256 c[2][4];
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++)
      c[r][v] = from_c ? nerve__avx2_load(C + r * ldc + 8 * v, v == V - 1 ? tail : 8) : _mm256_setzero_ps();
  for (int64_t k = 0; k < K; k++) {
    __m256 b[4];
    for (int v = 0; v < V; v++) b[v] = nerve__avx2_load(B + k * ldb + 8 * v, v == V - 1 ? tail : 8);
    for (int r = 0; r < R; r++) {
      const __m256 a = _mm256_broadcast_ss(A + r * lda + k);
      for (int v = 0; v < V; v++) c[r][v] = _mm256_fmadd_ps(a, b[v], c[r][v]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++) nerve__avx2_store(C + r * ldc + 8 * v, v == V - 1 ? tail : 8, c[r][v]);
}

/*
 * avx2_nn_run's chains for a few rows of A, B read where it is: its panels copied for one row
 * took ten times the row's multiply-adds (one MNIST image through Lab A's 784 -> 30 layer: 5.3
 * us a call, 60% of it in the copy). Every k takes its step, as the tiles' chains do without
 * their lists (whose sums are these wherever they are used): the same bits.
 */
NERVE_TARGET_AVX2 static void avx2_nn_few(float *C, int64_t ldc, const float *A, int64_t lda, const float *B,
                                          int64_t ldb, bool from_c, int64_t M, int64_t N, int64_t K) {
  for (int64_t col = 0; col < N; col += 32) {
    const int64_t nr = N - col < 32 ? N - col : 32;
    const int V = (int)((nr + 7) / 8);
    const int64_t tail = nr - 8 * (V - 1);
    for (int64_t m = 0; m < M; m += 2) {
      const int R = M - m < 2 ? 1 : 2;
      float *c = C + m * ldc + col;
      const float *a = A + m * lda, *b = B + col;
#  define AVX2_FEW_CASE(RR, VV) \
      if (R == RR && V == VV) avx2_few_tile(RR, VV, c, ldc, a, lda, b, ldb, from_c, K, tail);
      AVX2_FEW_CASE(1, 1) AVX2_FEW_CASE(1, 2) AVX2_FEW_CASE(1, 3) AVX2_FEW_CASE(1, 4)
      AVX2_FEW_CASE(2, 1) AVX2_FEW_CASE(2, 2) AVX2_FEW_CASE(2, 3) AVX2_FEW_CASE(2, 4)
#  undef AVX2_FEW_CASE
    }
  }
}

/* C[M,N] = init + A[M,K] . B[K,N] (init: C's value with from_c, else 0). */
NERVE_TARGET_AVX2 static void avx2_nn_stored(float *C, int64_t ldc, const float *A, int64_t lda,
                                             const float *B, int64_t ldb, bool from_c, int64_t M,
                                             int64_t N, int64_t K) {
  if (M <= AVX2_FEW_ROWS) {
    avx2_nn_few(C, ldc, A, lda, B, ldb, from_c, M, N, K);
    return;
  }
  avx2_nn_run(C, ldc, NULL, A, lda, B, ldb, NULL, from_c, M, N, K);
}

/* The sum of v's lanes in a fixed order. */
NERVE_TARGET_AVX2 NERVE_INLINE float avx2_sum(__m256 v) {
  const __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 q = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}

/* A dots tile's rows of A and of BT. Each sum's steps do not depend on the tile (the same
 * bits), but the compilers differ: gcc's 2 x 4 tiles (8 sums) ran Lab E's input gradient (32
 * rows, 6272 x 784 weights) at 5.0-5.2 ms at 1 thread and 2.5 at 2, its 3 x 4 (12 sums, 17
 * registers: the rows of A read by the multiply-adds) at 4.1-4.3 and 2.1; clang's 2 x 4 at
 * 4.2-4.4 and 2.0-2.2, its 3 x 4 spilled (7.4 and 3.7), its 4 x 3 and 3 x 3 no faster (a Zen
 * 3, bench/dense_products.c, libraries alternated). SwiftPM builds with clang, CMake here with
 * gcc. */
#if defined(__clang__)
enum { AVX2_DOTS_ROWS = 2 };
#else
enum { AVX2_DOTS_ROWS = 3 };
#endif
enum { AVX2_DOTS_MOST_ROWS = 3, AVX2_DOTS_COLS = 4 };
_Static_assert((int)AVX2_DOTS_ROWS <= (int)AVX2_DOTS_MOST_ROWS, "a dots tile's sums fit its array");

/* An R x NC tile of C = init + A . BT^T: each element 8 lanes of partial dot products over K,
 * summed in a fixed order, then added to init. */
NERVE_TARGET_AVX2 NERVE_INLINE void avx2_dots_tile(const int R, const int NC, float *C, int64_t ldc,
                                                   const float *A, int64_t lda, const float *BT,
                                                   int64_t ldb, bool from_c, int64_t K) {
  __m256 acc[AVX2_DOTS_MOST_ROWS][AVX2_DOTS_COLS];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < NC; c++) acc[r][c] = _mm256_setzero_ps();
  /* Whole vectors, then the last part of one (the same steps: a loop free of the partial
   * loads' tests). */
  const int64_t whole = K & ~(int64_t)7;
  for (int64_t k = 0; k < whole; k += 8) {
    __m256 b[AVX2_DOTS_COLS];
    for (int c = 0; c < NC; c++) b[c] = _mm256_loadu_ps(BT + c * ldb + k);
    for (int r = 0; r < R; r++) {
      const __m256 a = _mm256_loadu_ps(A + r * lda + k);
      for (int c = 0; c < NC; c++) acc[r][c] = _mm256_fmadd_ps(a, b[c], acc[r][c]);
    }
  }
  if (whole < K) {
    const int64_t n = K - whole;
    __m256 b[AVX2_DOTS_COLS];
    for (int c = 0; c < NC; c++) b[c] = nerve__avx2_load(BT + c * ldb + whole, n);
    for (int r = 0; r < R; r++) {
      const __m256 a = nerve__avx2_load(A + r * lda + whole, n);
      for (int c = 0; c < NC; c++) acc[r][c] = _mm256_fmadd_ps(a, b[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int c = 0; c < NC; c++) {
      const float sum = avx2_sum(acc[r][c]);
      C[r * ldc + c] = from_c ? C[r * ldc + c] + sum : sum;
    }
}

#  define AVX2_DOTS_CASE(R, NC) \
    if (r == R && nc == NC) avx2_dots_tile(R, NC, C + m * ldc + i, ldc, A + m * lda, lda, BT + i * ldb, ldb, from_c, K);

/* C[M,N] = init + A[M,K] . BT[N,K]^T, by dot products (B given transposed). */
NERVE_TARGET_AVX2 static void avx2_nn_dots(float *C, int64_t ldc, const float *A, int64_t lda,
                                           const float *BT, int64_t ldb, bool from_c, int64_t M,
                                           int64_t N, int64_t K) {
  /* Columns outer: each group's rows of BT stay in L1 while every row of A passes (rows outer
   * streamed all of BT, Lab E's 19.7 MB of weights, once for every tile of rows). The next
   * group's rows are asked for a share before each tile of rows: from memory, their first
   * reads had stalled each group's first tiles (Lab E's input gradient, where each group is 4
   * rows of 784 weights the step has not yet read: 4.4-4.5 -> 4.1 ms at 1 thread, 2.12-2.18 ->
   * 2.01-2.02 at 2; a Zen 3, bench/dense_products.c alternated). */
  if (M <= 0 || N <= 0) return;
  /* A row's lines at most, wherever it starts (rows of BT need not be line-aligned). */
  const int64_t row_bytes = K * (int64_t)sizeof(float), row_lines = (row_bytes + 63) / 64 + 1;
  const int64_t row_tiles = (M + AVX2_DOTS_ROWS - 1) / AVX2_DOTS_ROWS;
  for (int64_t i = 0; i < N; i += AVX2_DOTS_COLS) {
    const int nc = N - i < AVX2_DOTS_COLS ? (int)(N - i) : AVX2_DOTS_COLS;
    const int64_t next = N - (i + nc) < AVX2_DOTS_COLS ? N - (i + nc) : AVX2_DOTS_COLS;
    const int64_t lines = next * row_lines, share = (lines + row_tiles - 1) / row_tiles;
    int64_t asked = 0;
    for (int64_t m = 0; m < M; m += AVX2_DOTS_ROWS) {
      for (int64_t l = 0; l < share && asked < lines; l++, asked++) {
        const uintptr_t row = (uintptr_t)(BT + (i + nc + asked / row_lines) * ldb);
        const uintptr_t line = (row & ~(uintptr_t)63) + (uintptr_t)(asked % row_lines) * 64;
        if (line < row + (uintptr_t)row_bytes) nerve__prefetch((const void *)line, 1, false);
      }
      const int r = M - m < AVX2_DOTS_ROWS ? (int)(M - m) : AVX2_DOTS_ROWS;
      AVX2_DOTS_CASE(1, 1) AVX2_DOTS_CASE(1, 2) AVX2_DOTS_CASE(1, 3) AVX2_DOTS_CASE(1, 4)
      AVX2_DOTS_CASE(2, 1) AVX2_DOTS_CASE(2, 2) AVX2_DOTS_CASE(2, 3) AVX2_DOTS_CASE(2, 4)
      AVX2_DOTS_CASE(3, 1) AVX2_DOTS_CASE(3, 2) AVX2_DOTS_CASE(3, 3) AVX2_DOTS_CASE(3, 4)
    }
  }
}

/* Reductions up to which a product given B transposed copies B's columns into rows and runs
 * avx2_nn_stored's chains instead of dot products, whose horizontal sums cost as much as a
 * short reduction's multiply-adds (a convolution's input gradient: 32 filters). */
enum { AVX2_SHORT_K = 64, AVX2_COPY_COLS = 128 };
_Static_assert(AVX2_SHORT_K == 64, "blas_block_rows takes 64 for AVX2_SHORT_K");

/* C[M,N] = init + A[M,K] . BT[N,K]^T: chains over k for short reductions, else dot products.
 * Which depends on K alone, so every element's bits do not depend on the columns asked for. */
NERVE_TARGET_AVX2 static void avx2_nn_transposed(float *C, int64_t ldc, const float *A, int64_t lda,
                                                 const float *BT, int64_t ldb, bool from_c, int64_t M,
                                                 int64_t N, int64_t K) {
  if (K > AVX2_SHORT_K) {
    avx2_nn_dots(C, ldc, A, lda, BT, ldb, from_c, M, N, K);
    return;
  }
  float b[AVX2_SHORT_K * AVX2_COPY_COLS] __attribute__((aligned(32)));
  for (int64_t i = 0; i < N; i += AVX2_COPY_COLS) {
    const int64_t n = N - i < AVX2_COPY_COLS ? N - i : AVX2_COPY_COLS;
    for (int64_t c = 0; c < n; c++)
      for (int64_t k = 0; k < K; k++) b[k * AVX2_COPY_COLS + c] = BT[(i + c) * ldb + k];
    avx2_nn_stored(C + i, ldc, A, lda, b, AVX2_COPY_COLS, from_c, M, n, K);
  }
}

/* G[K,N] += alpha A[M,K]^T . D[M,N], A stored: each element's chain over the rows in order. */
NERVE_TARGET_AVX2 static void avx2_tn_stored(float *G, int64_t ldg, const float *A, int64_t lda,
                                             const float *D, int64_t ldd, int64_t M, int64_t N,
                                             int64_t K, float alpha) {
  const nerve__gather stored = {.in = A, .pix = 1, .OW = 1, .image_stride = lda, .off = NULL};
  for (int64_t n0 = 0; n0 < N; n0 += AVX2_TN_MAX_N) {
    const int64_t nb = N - n0 < AVX2_TN_MAX_N ? N - n0 : AVX2_TN_MAX_N;
    avx2_gather_tn(G + n0, ldg, &stored, M, D + n0, ldd, NULL, nb, 0, K, alpha, NULL);
  }
}

/* A tile's chains over `panels` whole panels of packed D, the panel loop inside one call: the
 * visitor's tiles are short (Lab E's 32 rows, 192 cycles of multiply-adds a panel), and a call
 * a panel spent a fifth of that on its arguments. */
#  define AVX2_TN_PANELS_CASE(KT)                                                                \
    case KT:                                                                                     \
      for (int64_t p = 0; p < panels; p++)                                                       \
        avx2_tn_tile(KT, 2, false, G + p * AVX2_PANEL, ldg, ga, w, avx2_identity, d + p * stride, \
                     AVX2_PANEL, rows, ms, all, 8, NULL, fresh);                                 \
      break;

NERVE_TARGET_AVX2 static void avx2_tn_tile_panels(int KT, float *G, int64_t ldg, const nerve__gather *ga,
                                                  const gather_window *w, const float *d, int64_t stride,
                                                  int64_t panels, int64_t rows, const int32_t *ms,
                                                  int64_t all, bool fresh) {
  /* avx2_tn_packed's tiles are 1 to AVX2_TN_KT2 (6) columns wide. */
  _Static_assert(AVX2_TN_KT2 == 6, "avx2_tn_tile_panels has a case for every tile width");
  switch (KT) {
    AVX2_TN_PANELS_CASE(1) AVX2_TN_PANELS_CASE(2) AVX2_TN_PANELS_CASE(3)
    AVX2_TN_PANELS_CASE(4) AVX2_TN_PANELS_CASE(5) AVX2_TN_PANELS_CASE(6)
    default: break;
  }
}
#  undef AVX2_TN_PANELS_CASE

/*
 * G [K,N] = A[M,K]^T . D, D packed (avx2_packed_d): avx2_tn_stored's chains started from 0 (G is
 * only written), all N columns a call, chunks of 256 rows. For each tile of up to 6 of A's
 * columns its row list is made once (avx2_lists, as avx2_gather_tn's), then every panel runs.
 * No lists at all where D holds an infinity or NaN anywhere (avx2_gather_tn asks that of each
 * chunk of a panel; either way the bits are every step's).
 */
NERVE_TARGET_AVX2 static void avx2_tn_packed(float *G, int64_t ldg, const float *A, int64_t lda,
                                             const avx2_packed_d *D, int64_t N, int64_t K) {
  const nerve__gather stored = {.in = A, .pix = 1, .OW = 1, .image_stride = lda, .off = NULL};
  const int64_t M = D->rows, chunk = AVX2_CHUNK_FLOATS / AVX2_PANEL, stride = M * AVX2_PANEL;
  const int64_t whole = N / AVX2_PANEL, tail = N - whole * AVX2_PANEL;
  const int64_t tiles = (K + AVX2_TN_KT2 - 1) / AVX2_TN_KT2;
  /* One slot: each tile's list serves all its panels, then the next tile makes its own. */
  int32_t ms_store[AVX2_CHUNK_FLOATS / AVX2_PANEL];
  avx2_lists lists = {.store = ms_store, .stride = chunk, .slots = 1, .off = !D->finite};
  for (int64_t m = 0; m < M; m += chunk) {
    const int64_t rows = M - m < chunk ? M - m : chunk;
    const gather_window w = gather_window_at(&stored, m);
    const float *d = D->panels + m * AVX2_PANEL;
    avx2_lists_forget(&lists);
    for (int64_t t = 0; t < tiles; t++) {
      const int64_t k = K * t / tiles, next = K * (t + 1) / tiles;
      gather_window wk = w;
      wk.a += k, wk.image += k;
      int64_t live = rows;
      const int32_t *ms = NULL;
      if (!lists.off) {
        bool held;
        int32_t *slot = avx2_lists_slot(&lists, t, k, next, &held);
        const int64_t found = held ? 0 : avx2_nonzero_rows(wk.a, lda, rows, next - k, slot);
        ms = avx2_lists_use(&lists, t, k, next, held, found, rows, &live);
      }
      avx2_tn_tile_panels((int)(next - k), G + k * ldg, ldg, &stored, &wk, d, stride, whole, live, ms, rows,
                          m == 0);
      if (tail)
        avx2_tn_tile_any((int)(next - k), tail > 8 ? 2 : 1, G + k * ldg + whole * AVX2_PANEL, ldg, &stored, &wk,
                         avx2_identity, d + whole * stride, AVX2_PANEL, live, ms, rows, tail - 8 * (tail > 8),
                         NULL, m == 0);
    }
  }
}

/* D [M,N] into panels (avx2_packed_d) at P. */
NERVE_TARGET_AVX2 static avx2_packed_d avx2_pack_d(float *P, const float *D, int64_t ldd, int64_t M, int64_t N) {
  for (int64_t col = 0; col < N; col += AVX2_PANEL)
    avx2_pad_rows(P + col * M, AVX2_PANEL, D + col, ldd, M, N - col < AVX2_PANEL ? N - col : AVX2_PANEL, 1.0f);
  const int64_t panels = (N + AVX2_PANEL - 1) / AVX2_PANEL;
  return (avx2_packed_d){.panels = P, .rows = M, .finite = !avx2_not_finite(P, panels * M * AVX2_PANEL)};
}

#endif

bool nerve__gemm_tn_gathers_pooled(const nerve_context *ctx, int64_t N, int64_t width) {
#if NERVE_X86
  /* One panel: the register tiles that keep G's rows while all of D passes (AVX2: its chunks
   * copy D's rows, as many columns as the AVX-512 tiles take). */
  return nerve__own_vectors(ctx) && N <= NR && width <= NN_KC;
#else
  (void)ctx, (void)N, (void)width;
  return false;
#endif
}

bool nerve__gemm_tn_gathers(const nerve_context *ctx, int64_t N, int64_t width) {
#if NERVE_X86
  if (ctx->isa == NERVE_ISA_AVX2) return N <= AVX2_TN_MAX_N && width <= NN_KC;
  return ctx->isa == NERVE_ISA_AVX512;
#else
  (void)ctx, (void)N, (void)width;
  return false;
#endif
}

bool nerve__gemm_nn_transposed_chains(const nerve_context *ctx, int64_t K) {
#if NERVE_X86
  return ctx->isa == NERVE_ISA_AVX2 && K <= AVX2_SHORT_K; /* avx2_nn_transposed */
#else
  (void)ctx, (void)K;
  return false;
#endif
}

bool nerve__gemm_nn_gathers(const nerve_context *ctx) {
  return nerve__gemm_tn_visits(ctx); /* both wherever libnerve's own vector kernels run */
}

bool nerve__gemm_tn_gather_here(const nerve_context *ctx, float *G, int64_t ldg,
                                const nerve__gather *a, int64_t M, const float *D, int64_t ldd,
                                const nerve__pooled_rows *pooled, int64_t N, int64_t k0,
                                int64_t k1, float alpha, float *bias, bool *biased) {
  *biased = false;
#if NERVE_X86
  if (ctx->isa == NERVE_ISA_AVX2) {
    /* Its chunks scale D before the bias would add it: with a bias, alpha 1 only. */
    if (k1 - k0 > NN_KC || N > AVX2_TN_MAX_N || (bias && alpha != 1.0f)) return false;
    if (pooled && !nerve__gemm_tn_gathers_pooled(ctx, N, k1 - k0)) return false;
    if (M > 0 && N > 0 && k1 > k0) {
      avx2_gather_tn(G, ldg, a, M, D, ldd, pooled, N, k0, k1, alpha, bias);
      *biased = bias != NULL;
    }
    return true;
  }
  if (ctx->isa != NERVE_ISA_AVX512 || k1 - k0 > NN_KC) return false;
  if (pooled && !nerve__gemm_tn_gathers_pooled(ctx, N, k1 - k0)) return false;
  if (M > 0 && N > 0 && k1 > k0) *biased = gather_tn_slice(G, ldg, a, M, D, ldd, pooled, N, k0, k1, alpha, bias);
  return true;
#else
  (void)ctx, (void)G, (void)ldg, (void)a, (void)M, (void)D, (void)ldd, (void)pooled, (void)N, (void)k0, (void)k1, (void)alpha, (void)bias;
  return false;
#endif
}

bool nerve__gemm_nn_gather_here(const nerve_context *ctx, float *C, int64_t ldc,
                                const nerve__gather *a, int64_t M, const float *B, int64_t ldb,
                                const float *bias, int64_t N, int64_t K) {
#if NERVE_X86
  if (!nerve__gemm_nn_gathers(ctx) || K > NN_KC || K < 1) return false;
  if (M > 0 && N > 0) {
    if (ctx->isa == NERVE_ISA_AVX2)
      avx2_nn_run(C, ldc, a, NULL, 0, B, ldb, bias, false, M, N, K);
    else
      gather_run(C, ldc, a, M, B, ldb, bias, N, K);
  }
  return true;
#else
  (void)ctx, (void)C, (void)ldc, (void)a, (void)M, (void)B, (void)ldb, (void)bias, (void)N, (void)K;
  return false;
#endif
}

/* ---- Visiting weight-gradient tiles (fused optimizer steps) ------------------------------- */
#if NERVE_X86

/* D's non-zeros column by column (list_nonzeros, avx2_list_nonzeros): column c's at
 * [first[c], end[c]) of offset (m * lda: where row m of A starts) and value. */
typedef struct {
  const int32_t *first, *end, *offset;
  const float *value;
} column_lists;

typedef struct {
  const float *A, *D;
  int64_t lda, ldd, M, N, K, tiles, panels;
  nerve__rows_fn rows;
  nerve__tile_fn apply;
  nerve__visit_streams streams;
  void *arg;
  int64_t next; /* the first tile no thread has taken (nerve__take_guided_chunk) */
  /* Where D is mostly zeros (list_nonzeros): its lists (first NULL otherwise). */
  column_lists lists;
  float *tile_space; /* each member's g, LIST_ROWS x list_width(N) */
} visit_job;

/* The lines of part of parts of the streams' rows [k0, k1), for a tile to fetch into L2 as it
 * computes (tn_tile): spread over a tile's panels, the next tile's memory arrives while this
 * tile computes. Into L2, not L1: fetched for writing instead, with PREFETCHW, which fills
 * L1, Lab E's three 12 x 784 streams a tile pushed out the tile's own operands (its epoch at 1
 * thread 10% slower). */
static tile_fetch fetch_rows(const visit_job *j, int64_t k0, int64_t k1, int64_t part, int64_t parts) {
  /* No streams (none given, or the context does not fetch ahead): no lines for a tile to step. */
  if (j->streams.count == 0) return (tile_fetch){.count = 0};
  const int64_t bytes = (k1 - k0) * j->streams.row_bytes;
  const int64_t from = bytes * part / parts & ~(int64_t)63, to = bytes * (part + 1) / parts;
  tile_fetch f = {.count = j->streams.count, .lines = to > from ? (to - from + 63) / 64 : 0};
  for (int s = 0; s < f.count; s++) f.at[s] = (const char *)j->streams.base[s] + k0 * j->streams.row_bytes + from;
  return f;
}

/* Rows of G a tile from row k takes: `most`, or what is left of K. */
static inline int64_t tile_rows(const visit_job *j, int64_t k, int64_t most) {
  return j->K - k < most ? j->K - k : most;
}

/* The visitor's tiles: fresh (each panel's tile writes its part of g from zero), unscaled,
 * fetching as they go. */
#  define VISIT_TILE_CASE(KT)                                                                  \
    case KT:                                                                                   \
      if (W == 2) tn_tile(KT, 2, false, g, ldg, A, lda, D, ldd, M, m0, m1, true, 1.0f, fetch); \
      else tn_tile(KT, 1, false, g, ldg, A, lda, D, ldd, M, m0, m1, true, 1.0f, fetch);        \
      break;

NERVE_TARGET_AVX512 static void visit_tile_any(int KT, int W, float *g, int64_t ldg, const float *A,
                                               int64_t lda, const float *D, int64_t ldd, int64_t M,
                                               __mmask16 m0, __mmask16 m1, const tile_fetch *fetch) {
  switch (KT) {
    TN_KT_CASES(VISIT_TILE_CASE)
    default: break;
  }
}

/* Columns of G gathered before apply runs, so it sees long contiguous row runs. */
enum { VISIT_COLS = 1024 };

NERVE_TARGET_AVX512 static void visit_tiles(visit_job *j, int64_t t0, int64_t t1, int threads) {
  static const int64_t panels_per_group = VISIT_COLS / NR;
  float g[TN_KT * VISIT_COLS] __attribute__((aligned(64))); /* 48 KB of stack */
  for (int64_t t = t0; t < t1; t++) {
    const int64_t k = t * TN_KT, kr = tile_rows(j, k, TN_KT);
    const int64_t next = k + kr, next_rows = t + 1 < t1 ? tile_rows(j, next, TN_KT) : 0; /* this chunk's next */
    if (j->rows) j->rows(j->arg, k, k + kr);
    for (int64_t p0 = 0; p0 < j->panels; p0 += panels_per_group) {
      int64_t p1 = p0 + panels_per_group < j->panels ? p0 + panels_per_group : j->panels;
      int64_t col0 = p0 * NR, cols = (j->N < p1 * NR ? j->N : p1 * NR) - col0;
      for (int64_t p = p0; p < p1; p++) {
        int64_t col = p * NR, nr = j->N - col < NR ? j->N - col : NR;
        const tile_fetch fetch = next_rows > 0 ? fetch_rows(j, next, next + next_rows, p, j->panels)
                                               : (tile_fetch){.count = 0};
        visit_tile_any((int)kr, nr > 16 ? 2 : 1, g + (col - col0), VISIT_COLS, j->A + k, j->lda,
                       j->D + col, j->ldd, j->M, mask_lo(nr), mask_hi(nr), &fetch);
      }
      j->apply(j->arg, k, col0, g, kr, cols, VISIT_COLS, threads);
    }
  }
}

/*
 * The visitor's tiles where D is mostly zeros, as a relu's gradient is (Lab E's hidden layer:
 * half its entries, 8% of its columns zero over the whole batch). Element (k, c) of G is still
 * one chain over m in order from zero, but only over the m where D[m, c] is not zero: where A
 * and D are finite (list_nonzeros checks D, each tile its block of A, whose chains it otherwise
 * takes whole), a multiply-add by a zero adds +-0, which leaves the sum as it was unless the
 * sum is -0 (a product under the smallest subnormal, rounded), which +0 would turn to +0: a
 * sum that ends -0 is computed again over every m (whole_chain). So these are the bits tn_tile
 * computes. The products run with G's rows in the lanes, LIST_ROWS
 * of them: for each column c, per listed m, one broadcast of D[m, c] against LIST_VECTORS
 * vectors of row m of A (A's block, M x 512 bytes, in L1 for Lab E's 32 rows), so the zeros'
 * multiply-adds are skipped; sixteen columns' sums are then transposed into g's rows.
 * One thread, Lab E's 6272 x 784 gradient over 32 rows, half of D zero (a standalone loop, no
 * step): 2.2 ms, 1.75 of it the products.
 */
enum { LIST_ROWS = 128, LIST_VECTORS = LIST_ROWS / 16, LIST_MIN_M = 8, LIST_MAX_M = 64, LIST_MAX_N = 4096 };

/* Whether A[M,K] holds only finite numbers: where a multiply-add by zero adds nothing, and
 * where tn_tile's skipping a block of A that is all zeros is no different from adding their
 * products (a NaN in D would make them NaN). */
NERVE_TARGET_AVX512 static bool all_finite(const float *A, int64_t lda, int64_t M, int64_t K) {
  const __m512 zero = _mm512_setzero_ps();
  __m512 s0 = zero, s1 = zero; /* s + x * 0: NaN from an infinity or a NaN, s otherwise */
  for (int64_t m = 0; m < M; m++) {
    const float *a = A + m * lda;
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
      s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), zero, s0);
      s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k + 16), zero, s1);
    }
    for (; k < K; k += 16) s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(nerve__lanes16(K - k), a + k), zero, s0);
  }
  return _mm512_cmp_ps_mask(_mm512_add_ps(s0, s1), zero, _CMP_EQ_OQ) == 0xffff;
}

/* Column col's chain of 16 rows of G from A (under mask) over every m, zeros of D included:
 * what tn_tile computes. */
NERVE_TARGET_AVX512 static __m512 whole_chain(const visit_job *j, const float *A, int64_t col, __mmask16 mask) {
  __m512 sum = _mm512_setzero_ps();
  for (int64_t m = 0; m < j->M; m++)
    sum = _mm512_fmadd_ps(_mm512_set1_ps(j->D[m * j->ldd + col]), _mm512_maskz_loadu_ps(mask, A + m * j->lda), sum);
  return sum;
}

/* The sums of column col over its listed rows [e0, e1), for V vectors of A's rows (the last
 * under `last`), stored to sums[0, 16V). */
NERVE_TARGET_AVX512 NERVE_INLINE void listed_column(const int V, float *sums, const visit_job *j, const float *A,
                                                    int64_t col, int32_t e0, int32_t e1, __mmask16 last) {
  __m512 c[LIST_VECTORS];
#  pragma GCC unroll 8
  for (int v = 0; v < V; v++) c[v] = _mm512_setzero_ps();
  for (int32_t e = e0; e < e1; e++) {
    const __m512 x = _mm512_set1_ps(j->lists.value[e]);
    const float *a = A + j->lists.offset[e];
#  pragma GCC unroll 8
    for (int v = 0; v < V; v++)
      c[v] = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(v == V - 1 ? last : (__mmask16)0xffff, a + 16 * v), c[v]);
  }
  const __m512i negative_zero = _mm512_set1_epi32((int)0x80000000u);
#  pragma GCC unroll 8
  for (int v = 0; v < V; v++) {
    const __mmask16 mask = v == V - 1 ? last : (__mmask16)0xffff;
    if (_mm512_mask_cmpeq_epi32_mask(mask, _mm512_castps_si512(c[v]), negative_zero))
      c[v] = whole_chain(j, A + 16 * v, col, mask);
    _mm512_store_ps(sums + 16 * v, c[v]);
  }
}

/* A listed tile's row length in g: N up to whole vectors. */
static inline int64_t list_width(int64_t N) { return (N + 15) & ~(int64_t)15; }

/* Rows [k, k + kr) of G (kr <= LIST_ROWS), all N columns, into g[r * ldg + c]; rows past kr and
 * columns past N hold anything. */
NERVE_TARGET_AVX512 static void listed_tile(const visit_job *j, int64_t k, int64_t kr, float *g, int64_t ldg,
                                            const tile_fetch *fetch) {
  float sums[16][LIST_ROWS] __attribute__((aligned(64)));
  const int V = (int)((kr + 15) / 16);
  const __mmask16 last = nerve__lanes16(kr - 16 * (V - 1));
  const float *A = j->A + k;
  const int64_t groups = (j->N + 15) / 16;
  /* A block with an infinity or a NaN in it takes every chain whole, zeros of D included. */
  const bool whole = !all_finite(A, j->lda, j->M, kr);
  for (int64_t c0 = 0; c0 < j->N; c0 += 16) {
    /* This group's share of the next tile's lines, a sixteenth before each column. */
    const int64_t from = fetch->lines * (c0 / 16) / groups, to = fetch->lines * (c0 / 16 + 1) / groups;
    for (int64_t c = 0; c < 16; c++) {
      for (int64_t l = from + (to - from) * c / 16; l < from + (to - from) * (c + 1) / 16; l++)
        for (int s = 0; s < fetch->count; s++) _mm_prefetch(fetch->at[s] + l * 64, _MM_HINT_T1);
      /* Past N: an empty list, zero sums. */
      const int64_t col = c0 + c;
      if (whole) {
        for (int v = 0; v < V; v++)
          _mm512_store_ps(sums[c] + 16 * v, col < j->N ? whole_chain(j, A + 16 * v, col, v == V - 1 ? last : 0xffff)
                                                       : _mm512_setzero_ps());
        continue;
      }
      const int32_t e0 = col < j->N ? j->lists.first[col] : 0, e1 = col < j->N ? j->lists.end[col] : 0;
      switch (V) {
        case 8: listed_column(8, sums[c], j, A, col, e0, e1, last); break;
        case 7: listed_column(7, sums[c], j, A, col, e0, e1, last); break;
        case 6: listed_column(6, sums[c], j, A, col, e0, e1, last); break;
        case 5: listed_column(5, sums[c], j, A, col, e0, e1, last); break;
        case 4: listed_column(4, sums[c], j, A, col, e0, e1, last); break;
        case 3: listed_column(3, sums[c], j, A, col, e0, e1, last); break;
        case 2: listed_column(2, sums[c], j, A, col, e0, e1, last); break;
        default: listed_column(1, sums[c], j, A, col, e0, e1, last); break;
      }
    }
    for (int b = 0; b < V; b++) {
      __m512 r[16];
#  pragma GCC unroll 16
      for (int i = 0; i < 16; i++) r[i] = _mm512_load_ps(sums[i] + 16 * b);
      transpose16(r);
#  pragma GCC unroll 16
      for (int i = 0; i < 16; i++) _mm512_store_ps(g + (16 * b + i) * ldg + c0, r[i]);
    }
  }
}
_Static_assert(LIST_VECTORS == 8, "listed_tile's cases start at LIST_VECTORS");

/* Tiles [t0, t1) into g (a member's LIST_ROWS x list_width(N)), each applied whole: applied a
 * block of 128 columns at a time instead, the step's three rows of memory (weights, moments)
 * went by in 512-byte pieces, and Lab E's weight gradient and step took 7.4 ms at 1 thread
 * (5.5 with tn_tile's 12 x 1024 blocks, 4.4 so). */
NERVE_TARGET_AVX512 static void visit_listed_tiles(visit_job *j, int64_t t0, int64_t t1, int threads, float *g) {
  const int64_t ldg = list_width(j->N);
  for (int64_t t = t0; t < t1; t++) {
    const int64_t k = t * LIST_ROWS, kr = tile_rows(j, k, LIST_ROWS);
    const int64_t next = k + kr, next_rows = t + 1 < t1 ? tile_rows(j, next, LIST_ROWS) : 0;
    const tile_fetch fetch = next_rows > 0 ? fetch_rows(j, next, next + next_rows, 0, 1) : (tile_fetch){.count = 0};
    if (j->rows) j->rows(j->arg, k, k + kr);
    listed_tile(j, k, kr, g, ldg, &fetch);
    j->apply(j->arg, k, 0, g, kr, j->N, ldg, threads);
  }
}

/* D's share of non-zeros up to which its lists pay. A listed multiply-add costs about what
 * tn_tile's does (it loads its vector of A where tn_tile shares one), and the transposes add a
 * quarter of the products at half zeros: in a standalone loop the two ways cross near 70%
 * non-zero, and Lab E's whole fused step at 1 thread (memory-bound, noisy) near 60-70%. */
enum { LIST_DENSITY_PERCENT = 60 };

/* Whether a visit of M rows of D and N columns may list: M in [LIST_MIN_M, LIST_MAX_M] (A's
 * block of rows, M x 512 bytes, in L1 or L2; with fewer than 8 rows a column's list is a few
 * entries against its share of the transposes, a bound not measured), and each member's tile
 * of G at most 2 MB. */
static inline bool lists_fit(int64_t M, int64_t N) {
  return M >= LIST_MIN_M && M <= LIST_MAX_M && N <= LIST_MAX_N;
}

/* Bytes of the column lists (first, end, offset, value), whole cache lines; the members' tiles
 * of G follow. */
static inline size_t lists_bytes(int64_t M, int64_t N) {
  return ((size_t)(2 * N + 2 * M * N) * sizeof(int32_t) + 63) / 64 * 64;
}

/* Whether D [M,N] is sparse enough for its lists to pay (at most LIST_DENSITY_PERCENT
 * non-zero), each column's count of non-zeros left in count[c]. Inlined into each instruction
 * set's list maker, whose vectors the counting loop takes. */
NERVE_INLINE bool lists_pay(const float *D, int64_t ldd, int64_t M, int64_t N, int32_t *count) {
  for (int64_t c = 0; c < N; c++) count[c] = 0;
  for (int64_t m = 0; m < M; m++)
    for (int64_t c = 0; c < N; c++) count[c] += D[m * ldd + c] != 0.0f;
  int64_t nonzeros = 0;
  for (int64_t c = 0; c < N; c++) nonzeros += count[c];
  return nonzeros * 100 <= M * N * LIST_DENSITY_PERCENT;
}

/* The lists' places from their counts (in end): column c's list starts at first[c], and end[c],
 * where its entries are appended, starts there too. */
NERVE_INLINE void lists_begin(int32_t *first, int32_t *end, int64_t N) {
  int32_t at = 0;
  for (int64_t c = 0; c < N; c++) {
    const int32_t count = end[c];
    first[c] = end[c] = at;
    at += count;
  }
}

/*
 * j's lists of D's non-zeros (visit_job.lists), in space (nerve__gemm_tn_visit_space bytes),
 * where they pay: lists_fit, D at most LIST_DENSITY_PERCENT non-zero and finite (A's blocks are
 * checked by their tiles, in parallel: this runs before the team, and checking all of Lab E's
 * 32 x 6272 inputs here took 0.03 ms of a step). Each row's non-zeros are scattered into
 * their columns' lists 16 columns at a time (0.07 ms a step as a loop over every element).
 */
NERVE_TARGET_AVX512 static bool list_nonzeros(visit_job *j, void *space) {
  const int64_t M = j->M, N = j->N;
  if (!space || !lists_fit(M, N) || M * j->lda > INT32_MAX) return false;
  int32_t *first = space, *end = first + N, *offset = end + N;
  float *value = (float *)(offset + M * N);
  if (!lists_pay(j->D, j->ldd, M, N, end) || !all_finite(j->D, j->ldd, M, N)) return false;
  lists_begin(first, end, N);
  const __m512i one = _mm512_set1_epi32(1);
  for (int64_t m = 0; m < M; m++) {
    const __m512i row = _mm512_set1_epi32((int32_t)(m * j->lda));
    for (int64_t c = 0; c < N; c += 16) {
      const __mmask16 in = nerve__lanes16(N - c);
      const __m512 d = _mm512_maskz_loadu_ps(in, j->D + m * j->ldd + c);
      const __mmask16 live = _mm512_mask_cmp_ps_mask(in, d, _mm512_setzero_ps(), _CMP_NEQ_UQ);
      const __m512i e = _mm512_maskz_loadu_epi32(in, end + c);
      _mm512_mask_i32scatter_epi32(offset, live, e, row, 4);
      _mm512_mask_i32scatter_ps(value, live, e, d, 4);
      _mm512_mask_storeu_epi32(end + c, in, _mm512_mask_add_epi32(e, live, e, one));
    }
  }
  j->lists = (column_lists){.first = first, .end = end, .offset = offset, .value = value};
  j->tile_space = (float *)((char *)space + lists_bytes(M, N));
  return true;
}

/* Tiles a thread takes at a time, guided (nerve__take_guided_chunk): up to 32 (384 rows of Lab
 * E's 6272 -> 784 layer), down to 2 at the end. Chunks of 8 throughout could leave one thread
 * running a last chunk of up to 0.12 ms while the other waited; 4 or 2 throughout were slower. One
 * Lab E step (bench/lab_e_step.c, 2 threads, 9 pairs in quiet minutes): the dense backward
 * 4.18-4.47 -> 4.06-4.33 ms. */
enum { VISIT_CHUNK_LEAST = 2, VISIT_CHUNK_MOST = 32 };
/* The listed tiles' most (512 rows, as VISIT_CHUNK_MOST's 384), down to one: a last tile of
 * 128 rows is about as long as tn_tile's last chunk of two. */
enum { LIST_CHUNK_MOST = 4 };

static void visit_member(void *data, int t, int nt) {
  visit_job *j = data;
  int64_t a, b;
  if (j->lists.first) {
    float *g = j->tile_space + t * LIST_ROWS * list_width(j->N);
    while (nerve__take_guided_chunk(&j->next, nt, 1, LIST_CHUNK_MOST, j->tiles, &a, &b))
      visit_listed_tiles(j, a, b, nt, g);
    return;
  }
  while (nerve__take_guided_chunk(&j->next, nt, VISIT_CHUNK_LEAST, VISIT_CHUNK_MOST, j->tiles, &a, &b))
    visit_tiles(j, a, b, nt);
}

#endif

/* ---- AVX2's visitor: tiles of weight rows from avx2_tn_packed's chains -------------------- */
#if NERVE_X86

/* Weight rows an AVX2 visitor tile takes: its gradient (24 x 784 floats for Lab E, 75 KB) and
 * the weights and moments the step rewrites stay in L2 between the product and the step. */
enum { AVX2_VISIT_ROWS = 24 };

/* The bytes of D [M,N] in panels (avx2_pack_d). */
static size_t avx2_packed_d_bytes(int64_t M, int64_t N) {
  return (size_t)M * (size_t)((N + AVX2_PANEL - 1) / AVX2_PANEL * AVX2_PANEL) * sizeof(float);
}

/* The bytes of a member's tile of N columns (rows 32-byte aligned). */
static size_t avx2_visit_tile_bytes(int64_t N) {
  return (size_t)AVX2_VISIT_ROWS * (size_t)((N + 7) & ~(int64_t)7) * sizeof(float);
}

/* Weight rows an AVX2 listed tile takes, in eight vectors' lanes (avx2_listed_tile, below). */
enum { AVX2_LIST_ROWS = 64, AVX2_LIST_VECTORS = AVX2_LIST_ROWS / 8 };

/* The bytes of a member's listed tile of N columns: AVX2_LIST_ROWS rows of whole vectors. */
static size_t avx2_list_tile_bytes(int64_t N) {
  return (size_t)AVX2_LIST_ROWS * (size_t)((N + 7) & ~(int64_t)7) * sizeof(float);
}

/* The room a member's tile takes in the visitor's space for D [M,N]: a listed one's where D's
 * lists may be made (lists_fit), else the 24-row one's. */
static size_t avx2_member_tile_bytes(int64_t M, int64_t N) {
  return lists_fit(M, N) ? avx2_list_tile_bytes(N) : avx2_visit_tile_bytes(N);
}

typedef struct {
  const float *A, *D;
  int64_t lda, ldd, M, N, K, tiles;
  nerve__rows_fn rows;
  nerve__tile_fn apply;
  void *arg;
  float *space; /* each member's tile, avx2_member_tile_bytes apart */
  avx2_packed_d packed; /* D [M,N], copied into panels once for every tile */
  column_lists lists;   /* or, where D is mostly zeros, its lists (avx2_list_nonzeros) */
  int64_t next;         /* the first tile no member has taken (nerve__take_chunk) */
} avx2_visit_job;

/* Member t: tiles as it becomes free; each tile's gradient summed from zero over all M rows in
 * order (the chains nerve__gemm_tn stores from a zeroed G: the same bits), then applied. */
static void avx2_visit_member(void *data, int t, int nt) {
  avx2_visit_job *j = data;
  const int64_t ldg = (j->N + 7) & ~(int64_t)7;
  float *g = (float *)((char *)j->space + (size_t)t * avx2_member_tile_bytes(j->M, j->N));
  for (int64_t a, b; nerve__take_chunk(&j->next, 1, j->tiles, &a, &b);) {
    const int64_t k0 = a * AVX2_VISIT_ROWS, k1 = k0 + AVX2_VISIT_ROWS < j->K ? k0 + AVX2_VISIT_ROWS : j->K;
    if (j->rows) j->rows(j->arg, k0, k1);
    avx2_tn_packed(g, ldg, j->A + k0, j->lda, &j->packed, j->N, k1 - k0);
    j->apply(j->arg, k0, 0, g, k1 - k0, j->N, ldg, nt);
  }
}

/*
 * AVX2's listed tiles: AVX-512's (listed_tile) with 8 lanes. Where D is mostly zeros (a relu's
 * gradient) over LIST_MIN_M to LIST_MAX_M rows, element (k, c) of G is the chain over the m
 * where D[m, c] is not zero, from zero and in order: with A and D finite, the terms left out
 * add +-0, which changes no sum but a -0 one, and a column's vector whose sum ends -0 is summed
 * again over every m. So these are avx2_tn_packed's bits. AVX2_LIST_ROWS of G's rows go in the
 * lanes of eight vectors (eight chains: what two multiply-add units need at a latency of
 * four); each listed m broadcasts D[m, c] against that many floats of row m of A (A's block,
 * M x 256 bytes, in L1), and eight columns' sums are transposed into g's rows.
 */
/* Whether A[M,K] (rows lda apart) holds only finite numbers. */
NERVE_TARGET_AVX2 static bool avx2_block_finite(const float *A, int64_t lda, int64_t M, int64_t K) {
  __m256 bad = _mm256_setzero_ps();
  for (int64_t m = 0; m < M; m++)
    for (int64_t k = 0; k < K; k += 8) bad = avx2_or_not_finite_lanes(bad, nerve__avx2_load(A + m * lda + k, K - k));
  return _mm256_movemask_ps(bad) == 0;
}

/*
 * D's lists (as list_nonzeros makes them) in space, where they pay: lists_fit, D at most
 * LIST_DENSITY_PERCENT non-zero and finite. Counted with the compiler's vectors, then each
 * row's non-zeros found 8 columns at a time and appended to their columns' lists.
 */
NERVE_TARGET_AVX2 static bool avx2_list_nonzeros(column_lists *lists, const float *D, int64_t ldd, int64_t M,
                                                 int64_t N, int64_t lda, void *space) {
  if (!space || !lists_fit(M, N) || M * lda > INT32_MAX) return false;
  int32_t *first = space, *end = first + N, *offset = end + N;
  float *value = (float *)(offset + M * N);
  if (!lists_pay(D, ldd, M, N, end) || !avx2_block_finite(D, ldd, M, N)) return false;
  lists_begin(first, end, N);
  for (int64_t m = 0; m < M; m++) {
    const float *d = D + m * ldd;
    for (int64_t c = 0; c < N; c += 8) {
      const __m256 v = nerve__avx2_load(d + c, N - c);
      unsigned live = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ));
      for (; live; live &= live - 1) {
        const int64_t col = c + __builtin_ctz(live);
        const int32_t e = end[col]++;
        offset[e] = (int32_t)(m * lda), value[e] = d[col];
      }
    }
  }
  *lists = (column_lists){.first = first, .end = end, .offset = offset, .value = value};
  return true;
}

/* An 8 x 8 block transposed in registers: r[i] holds row i; on return r[i] holds column i. */
NERVE_TARGET_AVX2 NERVE_INLINE void avx2_transpose8(__m256 *r) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

/* Column col's chain of the first n of 8 rows of G from A over every m, zeros of D included:
 * what avx2_tn_packed computes. */
NERVE_TARGET_AVX2 static __m256 avx2_whole_chain(const avx2_visit_job *j, const float *A, int64_t col, int64_t n) {
  __m256 sum = _mm256_setzero_ps();
  for (int64_t m = 0; m < j->M; m++)
    sum = _mm256_fmadd_ps(_mm256_set1_ps(j->D[m * j->ldd + col]), nerve__avx2_load(A + m * j->lda, n), sum);
  return sum;
}

/* The sums of column col over its listed rows [e0, e1), for V vectors of A's rows (the last
 * holding `tail` of them), stored to sums[0, 8V). */
NERVE_TARGET_AVX2 NERVE_INLINE void avx2_listed_column(const int V, const bool partial, float *sums,
                                                       const avx2_visit_job *j, const float *A, int64_t col,
                                                       int32_t e0, int32_t e1, int64_t tail) {
  __m256 c[AVX2_LIST_VECTORS];
#  pragma GCC unroll 8
  for (int v = 0; v < V; v++) c[v] = _mm256_setzero_ps();
  for (int32_t e = e0; e < e1; e++) {
    const __m256 x = _mm256_set1_ps(j->lists.value[e]);
    const float *a = A + j->lists.offset[e];
#  pragma GCC unroll 8
    for (int v = 0; v < V; v++)
      c[v] = _mm256_fmadd_ps(x, partial && v == V - 1 ? nerve__avx2_load(a + 8 * v, tail) : _mm256_loadu_ps(a + 8 * v),
                             c[v]);
  }
#  pragma GCC unroll 8
  for (int v = 0; v < V; v++) {
    if (avx2_negative_zero(&c[v], 1)) c[v] = avx2_whole_chain(j, A + 8 * v, col, v == V - 1 ? tail : 8);
    _mm256_store_ps(sums + 8 * v, c[v]);
  }
}

#  define AVX2_LISTED_CASE(V)                                                                 \
    case V:                                                                                   \
      if (tail < 8)                                                                           \
        avx2_listed_column(V, true, sums, j, A, col, e0, e1, tail);                           \
      else                                                                                    \
        avx2_listed_column(V, false, sums, j, A, col, e0, e1, tail);                          \
      break;

/* avx2_listed_column for the V of a tile (1 to AVX2_LIST_VECTORS). */
NERVE_TARGET_AVX2 static void avx2_listed_column_any(int V, float *sums, const avx2_visit_job *j, const float *A,
                                                     int64_t col, int32_t e0, int32_t e1, int64_t tail) {
  _Static_assert(AVX2_LIST_VECTORS == 8, "avx2_listed_column_any has a case for every V");
  switch (V) {
    AVX2_LISTED_CASE(8) AVX2_LISTED_CASE(7) AVX2_LISTED_CASE(6) AVX2_LISTED_CASE(5)
    AVX2_LISTED_CASE(4) AVX2_LISTED_CASE(3) AVX2_LISTED_CASE(2) AVX2_LISTED_CASE(1)
    default: break;
  }
}
#  undef AVX2_LISTED_CASE

/* Rows [k, k + kr) of G (kr <= AVX2_LIST_ROWS), all N columns, into g[r * ldg + c] (ldg: N up
 * to whole vectors); rows past kr and columns past N hold anything. A block of A with an
 * infinity or a NaN in it takes every chain whole, zeros of D included. */
NERVE_TARGET_AVX2 static void avx2_listed_tile(const avx2_visit_job *j, int64_t k, int64_t kr, float *g,
                                               int64_t ldg) {
  float sums[8][AVX2_LIST_ROWS] __attribute__((aligned(32)));
  const int V = (int)((kr + 7) / 8);
  const int64_t tail = kr - 8 * (V - 1);
  const float *A = j->A + k;
  const bool whole = !avx2_block_finite(A, j->lda, j->M, kr);
  for (int64_t c0 = 0; c0 < j->N; c0 += 8) {
    for (int64_t c = 0; c < 8; c++) {
      const int64_t col = c0 + c;
      if (col >= j->N) { /* past N: zero sums */
        for (int v = 0; v < V; v++) _mm256_store_ps(sums[c] + 8 * v, _mm256_setzero_ps());
      } else if (whole) {
        for (int v = 0; v < V; v++)
          _mm256_store_ps(sums[c] + 8 * v, avx2_whole_chain(j, A + 8 * v, col, v == V - 1 ? tail : 8));
      } else {
        avx2_listed_column_any(V, sums[c], j, A, col, j->lists.first[col], j->lists.end[col], tail);
      }
    }
    for (int b = 0; b < V; b++) {
      __m256 r[8];
#  pragma GCC unroll 8
      for (int i = 0; i < 8; i++) r[i] = _mm256_load_ps(sums[i] + 8 * b);
      avx2_transpose8(r);
#  pragma GCC unroll 8
      for (int i = 0; i < 8; i++) _mm256_storeu_ps(g + (8 * b + i) * ldg + c0, r[i]);
    }
  }
}

/* avx2_visit_member over listed tiles of AVX2_LIST_ROWS weight rows. */
static void avx2_visit_listed_member(void *data, int t, int nt) {
  avx2_visit_job *j = data;
  const int64_t ldg = (j->N + 7) & ~(int64_t)7;
  float *g = (float *)((char *)j->space + (size_t)t * avx2_member_tile_bytes(j->M, j->N));
  for (int64_t a, b; nerve__take_chunk(&j->next, 1, j->tiles, &a, &b);) {
    const int64_t k0 = a * AVX2_LIST_ROWS, k1 = k0 + AVX2_LIST_ROWS < j->K ? k0 + AVX2_LIST_ROWS : j->K;
    if (j->rows) j->rows(j->arg, k0, k1);
    avx2_listed_tile(j, k0, k1 - k0, g, ldg);
    j->apply(j->arg, k0, 0, g, k1 - k0, j->N, ldg, nt);
  }
}

/* ---- AVX2's products given B transposed, the batch's rows in the lanes ------------------- */
/*
 * nn_lanes with AVX2: C^T = BT . A^T, A's rows (the batch's, LANES_MIN_M to NN_SMALL_M of them)
 * in the lanes of V vectors, R rows of BT broadcast against them, A^T packed as
 * nerve__gemm_nt_pack lays it out ([panels][K][32], only the live k). Each element is one chain
 * of multiply-adds in k's order from zero, added to its initial value: nn_lanes's chains, so
 * AVX-512's bits. Against the dot products it replaces (avx2_nn_dots) nothing is summed across
 * lanes, and a unit silent over the whole batch (a relu's column of zeros) takes no steps.
 */
static bool avx2_uses_lanes(int64_t M, int64_t K) {
  return M >= LANES_MIN_M && M <= NN_SMALL_M && K > AVX2_SHORT_K;
}

/* Columns an AVX2 lanes block takes for V vectors of rows: R V accumulators, R broadcasts and
 * the one vector of A^T they share fit the 16 registers (12 + 3 + 1 where V is 4, Lab E's 32
 * rows; two columns there, A^T read half as often again, were slower than the dots). */
static inline int avx2_lanes_columns(int V) { return V == 1 ? 7 : V == 2 ? 5 : V <= 4 ? 3 : V == 5 ? 2 : 1; }

/* Those columns for M rows. */
static inline int avx2_lanes_width(int64_t M) { return avx2_lanes_columns((int)((M + 7) / 8)); }

/* P[p][k][c] = A[p*32 + c][k], zero past M: 8 x 8 blocks transposed in registers. */
NERVE_TARGET_AVX2 static void avx2_pack_lanes(float *P, const float *A, int64_t lda, int64_t M, int64_t K) {
  for (int64_t p = 0; p < (M + NR - 1) / NR; p++) {
    float *dst = P + p * K * NR;
    for (int64_t c0 = p * NR; c0 < p * NR + NR; c0 += 8) {
      const int64_t rows = M - c0 < 0 ? 0 : (M - c0 < 8 ? M - c0 : 8);
      for (int64_t k0 = 0; k0 < K; k0 += 8) {
        const int64_t ks = K - k0 < 8 ? K - k0 : 8;
        __m256 r[8];
#  pragma GCC unroll 8
        for (int i = 0; i < 8; i++) r[i] = i < rows ? nerve__avx2_load(A + (c0 + i) * lda + k0, ks) : _mm256_setzero_ps();
        avx2_transpose8(r);
        for (int64_t i = 0; i < ks; i++) _mm256_storeu_ps(dst + (k0 + i) * NR + (c0 - p * NR), r[i]);
      }
    }
  }
}

/* Every k of K live: ks[k] = k. */
static int64_t every_column(int32_t *ks, int64_t K) {
  for (int64_t k = 0; k < K; k++) ks[k] = (int32_t)k;
  return K;
}

/* The panels of A^T packed at P (M rows, K steps) moved up to their live k (ks, live of them,
 * ascending): step k takes step ks[k]. */
static int64_t compact_columns(float *P, const int32_t *ks, int64_t live, int64_t M, int64_t K) {
  if (live < K)
    for (int64_t p = 0; p < (M + NR - 1) / NR; p++) {
      float *panel = P + p * K * NR;
      for (int64_t k = 0; k < live; k++)
        if (ks[k] != k) memcpy(panel + k * NR, panel + (int64_t)ks[k] * NR, NR * sizeof(float));
    }
  return live;
}

/* ks: the k where some row of A is not zero (every k unless skip), and P's panels compacted to
 * them: pack_live_columns with AVX2. */
NERVE_TARGET_AVX2 static int64_t avx2_live_columns(float *P, int32_t *ks, const float *A, int64_t lda, int64_t M,
                                                   int64_t K, bool skip) {
  if (!skip) return every_column(ks, K);
  int64_t live = 0;
  for (int64_t k0 = 0; k0 < K; k0 += 8) {
    __m256 any = _mm256_setzero_ps();
    for (int64_t m = 0; m < M; m++)
      any = _mm256_or_ps(any, _mm256_cmp_ps(nerve__avx2_load(A + m * lda + k0, K - k0), _mm256_setzero_ps(), _CMP_NEQ_UQ));
    const int bits = _mm256_movemask_ps(any);
    for (int c = 0; c < 8 && k0 + c < K; c++)
      if (bits >> c & 1) ks[live++] = (int32_t)(k0 + c);
  }
  return compact_columns(P, ks, live, M, K);
}

typedef struct {
  float *C;
  const float *BT, *bias; /* BT [N, K], row stride ldb */
  int64_t ldc, ldb, M, N, K;
  bool accumulate;
  nerve__nt_packed lanes;
} avx2_lanes_job;

/* Columns [i, i + cols) of C, cols <= R. */
NERVE_TARGET_AVX2 NERVE_INLINE void avx2_lanes_block(const int V, const int R, const avx2_lanes_job *j, int64_t i,
                                                     int64_t cols) {
  const float *b[8], *a[8];
  /* Rows past cols repeat row i: their sums are computed and dropped. */
#  pragma GCC unroll 8
  for (int r = 0; r < R; r++) b[r] = j->BT + (i + (r < cols ? r : 0)) * j->ldb;
#  pragma GCC unroll 8
  for (int v = 0; v < V; v++) a[v] = j->lanes.P + (v / 4) * j->K * NR + (v % 4) * 8;
  __m256 acc[8][8];
#  pragma GCC unroll 8
  for (int r = 0; r < R; r++)
#  pragma GCC unroll 8
    for (int v = 0; v < V; v++) acc[r][v] = _mm256_setzero_ps();
  const int64_t live = j->lanes.live;
  const int32_t *ks = j->lanes.ks;
  for (int64_t k = 0; k < live; k++) {
    const int64_t at = ks[k];
    __m256 x[8];
#  pragma GCC unroll 8
    for (int r = 0; r < R; r++) x[r] = _mm256_broadcast_ss(&b[r][at]);
#  pragma GCC unroll 8
    for (int v = 0; v < V; v++) {
      const __m256 av = _mm256_loadu_ps(a[v] + k * NR);
#  pragma GCC unroll 8
      for (int r = 0; r < R; r++) acc[r][v] = _mm256_fmadd_ps(x[r], av, acc[r][v]);
    }
  }
  float sums[8][64] __attribute__((aligned(32)));
#  pragma GCC unroll 8
  for (int r = 0; r < R; r++)
#  pragma GCC unroll 8
    for (int v = 0; v < V; v++) _mm256_store_ps(sums[r] + 8 * v, acc[r][v]);
  lanes_sums_out(j->C, j->ldc, j->bias, j->accumulate, j->M, i, cols, sums);
}

#  define AVX2_LANES_CASE(V)                                                                  \
    case V: avx2_lanes_block(V, avx2_lanes_columns(V), j, i, cols); break;

/* Columns [i0, i1) of C. */
NERVE_TARGET_AVX2 static void avx2_nn_lanes(const avx2_lanes_job *j, int64_t i0, int64_t i1) {
  const int R = avx2_lanes_width(j->M);
  for (int64_t i = i0; i < i1; i += R) {
    const int64_t cols = i1 - i < R ? i1 - i : R;
    switch ((j->M + 7) / 8) {
      AVX2_LANES_CASE(1) AVX2_LANES_CASE(2) AVX2_LANES_CASE(3) AVX2_LANES_CASE(4)
      AVX2_LANES_CASE(5) AVX2_LANES_CASE(6) AVX2_LANES_CASE(7) AVX2_LANES_CASE(8)
      default: break; /* past NN_SMALL_M: not called */
    }
  }
}
#  undef AVX2_LANES_CASE

/* Member t's whole blocks of columns. */
static void avx2_lanes_member(void *data, int t, int nt) {
  const avx2_lanes_job *j = data;
  const int64_t width = avx2_lanes_width(j->M), blocks = (j->N + width - 1) / width;
  const int64_t a = blocks * t / nt * width, b = blocks * (t + 1) / nt * width;
  if (a < (b < j->N ? b : j->N)) avx2_nn_lanes(j, a, b < j->N ? b : j->N);
}

#endif

size_t nerve__gemm_tn_visit_space(const nerve_context *ctx, int64_t M, int64_t N) {
#if NERVE_X86
  if (ctx->isa == NERVE_ISA_AVX2) {
    /* Each member's tile, then D packed or listed. */
    const size_t packed = avx2_packed_d_bytes(M, N), listed = lists_fit(M, N) ? lists_bytes(M, N) : 0;
    return (size_t)ctx->threads * avx2_member_tile_bytes(M, N) + (packed > listed ? packed : listed) + 32;
  }
  if (!lists_fit(M, N)) return 0;
  return lists_bytes(M, N) + (size_t)ctx->threads * LIST_ROWS * (size_t)list_width(N) * sizeof(float);
#else
  (void)ctx, (void)M, (void)N;
  return 0;
#endif
}

bool nerve__gemm_tn_visits(const nerve_context *ctx) { return nerve__own_vectors(ctx); }

bool nerve__gemm_tn_visit(nerve_context *ctx, const float *A, int64_t lda, const float *D,
                          int64_t ldd, int64_t M, int64_t N, int64_t K, nerve__rows_fn rows,
                          nerve__tile_fn apply, const nerve__visit_streams *streams, void *space, void *arg) {
#if NERVE_X86
  if (!nerve__gemm_tn_visits(ctx)) return false;
  if (ctx->isa == NERVE_ISA_AVX2) {
    avx2_visit_job j = {.A = A, .D = D, .lda = lda, .ldd = ldd, .M = M, .N = N, .K = K,
                        .tiles = (K + AVX2_VISIT_ROWS - 1) / AVX2_VISIT_ROWS, .rows = rows, .apply = apply,
                        .arg = arg, .space = (float *)(((uintptr_t)space + 31) & ~(uintptr_t)31)};
    /* Nothing fetched ahead: the tile's rows stay in L2, and asking for the next tile's weights
     * and moments as this one computes (spread over its panels, into L1 or L2) gained nothing
     * on a Zen 3 (bench/lab_e_step.c 1). */
    (void)streams;
    void *d_space = (char *)j.space + (size_t)ctx->threads * avx2_member_tile_bytes(M, N);
    nerve__team_fn member = avx2_visit_member;
    if (avx2_list_nonzeros(&j.lists, D, ldd, M, N, lda, d_space)) {
      j.tiles = (K + AVX2_LIST_ROWS - 1) / AVX2_LIST_ROWS;
      member = avx2_visit_listed_member;
    } else {
      /* Every tile reads all of D: copied into panels here once, not by each tile (a fifth of
       * Lab E's visitor went to those copies, its tiles 24 rows x 32 images of work each). */
      j.packed = avx2_pack_d(d_space, D, ldd, M, N);
    }
    int threads = nerve__threads_for(ctx, M * N * K, GEMM_GRAIN);
    if (threads > j.tiles) threads = (int)j.tiles;
    nerve__parallel_team(threads, member, &j);
    return true;
  }
  visit_job j = {.A = A, .D = D, .lda = lda, .ldd = ldd, .M = M, .N = N, .K = K,
                 .tiles = (K + TN_KT - 1) / TN_KT, .panels = (N + NR - 1) / NR, .rows = rows,
                 .apply = apply, .arg = arg,
                 .streams = streams && ctx->fetches_ahead ? *streams : (nerve__visit_streams){.count = 0}};
  if (list_nonzeros(&j, space)) j.tiles = (K + LIST_ROWS - 1) / LIST_ROWS;
  int threads = nerve__threads_for(ctx, M * N * K, GEMM_GRAIN);
  if (threads > j.tiles) threads = (int)j.tiles;
  nerve__parallel_team(threads, visit_member, &j);
  return true;
#else
  (void)ctx, (void)A, (void)lda, (void)D, (void)ldd, (void)M, (void)N, (void)K, (void)rows, (void)apply, (void)streams,
      (void)space, (void)arg;
  return false;
#endif
}

void nerve__gemm_nt_columns(nerve_context *ctx, float *C, int64_t ldc, const float *A, int64_t lda,
                            const nerve__nt_packed *ap, const float *BT, int64_t ldb, int64_t M, int64_t K,
                            int64_t i0, int64_t i1) {
#if NERVE_X86
  /* Every reduction length, short ones included: OpenBLAS's sums for K = 10 (a classifier's
   * input gradient) came out differently for different numbers of rows on a Zen 5, so MPI
   * ranks' shares of a batch gave other bits than one process. */
  if (ctx->isa == NERVE_ISA_AVX512) {
    nn_job j = {.C = C, .ldc = ldc, .A = A, .lda = lda, .B = BT, .ldb = ldb, .M = M, .N = i1, .K = K,
                .lanes = ap ? *ap : (nerve__nt_packed){.P = NULL}};
    if (K >= 1 && K <= NT_SHORT_MAX)
      short_dots(&j, i0, i1);
    else if (j.lanes.P)
      nn_lanes(&j, i0, i1);
    else
      nn_dots(&j, i0, i1);
    return;
  }
#endif
#if NERVE_X86
  if (ctx->isa == NERVE_ISA_AVX2) {
    if (ap && ap->P) {
      const avx2_lanes_job j = {.C = C, .ldc = ldc, .BT = BT, .ldb = ldb, .M = M, .N = i1, .K = K, .lanes = *ap};
      avx2_nn_lanes(&j, i0, i1);
    } else {
      avx2_nn_transposed(C + i0, ldc, A, lda, BT + i0 * ldb, ldb, false, M, i1 - i0, K);
    }
    return;
  }
#endif
  /* Portable: one OpenBLAS call on this thread for the slice of columns. */
  (void)ctx, (void)ap;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)(i1 - i0), (int)K, 1.0f, A,
              (int)lda, BT + i0 * ldb, (int)ldb, 0.0f, C + i0, (int)ldc);
}

/* ---- Scratch the products take --------------------------------------------------------- */
/*
 * Of the products, only Nerve's own kernels use the GEMM scratch slot: AVX-512's nn to pack a
 * transposed B it does not read by dot products, either's to pack A where their dots take A's
 * rows in the lanes (nn_lanes, avx2_nn_lanes), AVX-512's tn for a padded copy of G under rank
 * updates. The entry points reserve what these return, and
 * callers that make several products reserve it before their first write. (Callers use the slot
 * for their own ends too, between products: conv.c's padded weight gradients and AVX2's packed
 * weight for the scattered input gradient.)
 */

#if NERVE_X86
/* nn reads a transposed B along its rows (dot products) instead of packing it. */
static bool nn_uses_dots(int64_t M, int64_t K, bool b_transposed) {
  return M <= NN_SMALL_M && b_transposed && K >= NT_DOTS_MIN;
}
/* Those dots with A's rows in the lanes (nn_lanes, from A packed): past one vector of k (16 is
 * dots_block's, whose bits short_dots keeps) and from LANES_MIN_M rows. */
static bool nn_uses_lanes(int64_t M, int64_t K) { return M >= LANES_MIN_M && K > NT_SHORT_MAX; }
/* Bytes of A [M,K] packed as nerve__gemm_nn_pack packs. */
static size_t packed_bytes(int64_t M, int64_t K) {
  return (size_t)((M + NR - 1) / NR) * (size_t)K * NR * sizeof(float);
}
/* Many rows of A (over 64) take rank-8 updates instead of register tiles, or tn_narrow where G
 * has few columns (a classifier's weights). tn_narrow measured through nerve_dense_backward's
 * weight gradient for 2,048 rows against rank updates, 2 threads (1 thread): 30 -> 10 13.9 ->
 * 6.6 us (19.4 -> 9.8), 300 -> 10 108 -> 52 us (177 -> 146); also where A is sparse, whose rows
 * tn_rank_rows would take over their own lists: 784 -> 10 with 80% zeros 303 -> 219 us (514 ->
 * 428). */
static tn_method tn_method_for(int64_t M, int64_t N) {
  return M <= 64 ? TN_TILES : N <= TN_NARROW_COLUMNS ? TN_NARROW : TN_RANK;
}
#endif

bool nerve__gemm_nn_packs(const nerve_context *ctx, int64_t M, int64_t N, int64_t K, bool b_transposed) {
#if NERVE_X86
  return ctx->isa == NERVE_ISA_AVX512 && M > 0 && N > 0 && b_transposed && !nn_uses_dots(M, K, b_transposed);
#else
  (void)ctx, (void)M, (void)N, (void)K, (void)b_transposed;
  return false;
#endif
}

#if NERVE_X86
/* The k where some row of A [M,K] is not zero (NaN included) into ks, and the packed panels P
 * [panels][K][32] (nerve__gemm_nn_pack's) compacted to those rows, in place and in order:
 * returns how many. On the calling thread: it reads M x K floats once, which for the batches
 * that pack (up to NN_SMALL_M rows) is a few microseconds. Without skip, every k. */
NERVE_TARGET_AVX512 static int64_t pack_live_columns(float *P, int32_t *ks, const float *A, int64_t lda,
                                                     int64_t M, int64_t K, bool skip) {
  if (!skip) return every_column(ks, K);
  int64_t live = 0;
  for (int64_t k0 = 0; k0 < K; k0 += 16) {
    const __mmask16 in = nerve__lanes16(K - k0);
    __mmask16 any = 0;
    for (int64_t m = 0; m < M; m++)
      any |= _mm512_mask_cmp_ps_mask(in, _mm512_maskz_loadu_ps(in, A + m * lda + k0), _mm512_setzero_ps(), _CMP_NEQ_UQ);
    for (int c = 0; c < 16; c++)
      if (any >> c & 1) ks[live++] = (int32_t)(k0 + c);
  }
  return compact_columns(P, ks, live, M, K);
}
#endif

/* Bytes of A [M,K] (M the method's rows) packed for the dots' lanes, and the k of its live
 * columns after it (nerve__nt_packed); 0 where they read A. */
static size_t nt_scratch(const nerve_context *ctx, int64_t M, int64_t K) {
#if NERVE_X86
  if (ctx->isa == NERVE_ISA_AVX512 && M > 0 && nn_uses_dots(M, K, true) && nn_uses_lanes(M, K))
    return packed_bytes(M, K) + (size_t)K * sizeof(int32_t);
  if (ctx->isa == NERVE_ISA_AVX2 && avx2_uses_lanes(M, K)) return packed_bytes(M, K) + (size_t)K * sizeof(int32_t);
#else
  (void)ctx, (void)M, (void)K;
#endif
  return 0;
}

nerve_status nerve__gemm_nt_pack(nerve_context *ctx, const float *A, int64_t lda, int64_t method_rows,
                                 int64_t M, int64_t K, bool skip_silent, nerve__nt_packed *ap,
                                 const char *func) {
  *ap = (nerve__nt_packed){.P = NULL};
  /* By the larger of the two: a part never takes more rows than the scratch holds. */
  const int64_t rows = method_rows > M ? method_rows : M;
  const size_t bytes = nt_scratch(ctx, rows, K);
  if (bytes == 0) return NERVE_OK;
  nerve_status s = nerve__scratch(ctx, NERVE_SCRATCH_GEMM, bytes, func);
  if (s != NERVE_OK) return s;
#if NERVE_X86 /* nt_scratch is 0 elsewhere */
  float *P = ctx->scratch[NERVE_SCRATCH_GEMM];
  int32_t *ks = (int32_t *)((char *)P + packed_bytes(rows, K));
  if (ctx->isa == NERVE_ISA_AVX2) {
    avx2_pack_lanes(P, A, lda, M, K);
    *ap = (nerve__nt_packed){.P = P, .ks = ks, .live = avx2_live_columns(P, ks, A, lda, M, K, skip_silent)};
    return NERVE_OK;
  }
  nerve__gemm_nn_pack(ctx, P, A, lda, M, K);
  *ap = (nerve__nt_packed){.P = P, .ks = ks, .live = pack_live_columns(P, ks, A, lda, M, K, skip_silent)};
#else
  (void)A, (void)lda, (void)skip_silent;
#endif
  return NERVE_OK;
}

size_t nerve__gemm_nn_scratch(const nerve_context *ctx, int64_t M, int64_t N, int64_t K,
                              bool b_transposed) {
#if NERVE_X86
  if (nerve__gemm_nn_packs(ctx, M, N, K, b_transposed)) return packed_bytes(N, K);
  if (N > 0 && b_transposed) return nt_scratch(ctx, M, K);
#else
  (void)ctx, (void)M, (void)N, (void)K, (void)b_transposed;
#endif
  return 0;
}

/*
 * Bytes of a copy of G [K,N] (row stride ldg) padded to whole panels, for kernels that rewrite
 * G's rows many times over (rank updates, listed entries): rows whose width is not a whole
 * number of vectors make the masked stores straddle cache lines (3.5x slower on Zen 5), so
 * they work on the copy (padded_copy). 0 where G's rows are whole vectors, or no AVX-512.
 */
#if NERVE_X86
static size_t padded_bytes(const nerve_context *ctx, int64_t N, int64_t K, int64_t ldg) {
  if (ctx->isa == NERVE_ISA_AVX512 && N > 0 && K > 0 && (N % 16 != 0 || ldg % 16 != 0))
    return (size_t)K * (size_t)((N + NR - 1) / NR * NR) * sizeof(float);
  return 0;
}
#endif

#if NERVE_X86
/* Bytes of the copy nn_pad_b makes of B [K,N] (row stride ldb) for M rows of A, at the start
 * of the GEMM scratch; 0 for none. nn reads B from a copy padded to whole panels (padded_copy)
 * when its rows are not whole vectors and enough rows of A pass over it to pay for the copy:
 * every row of B is loaded once per tile of A, and unaligned rows make those loads straddle
 * cache lines. */
static size_t nn_pad_bytes(const nerve_context *ctx, int64_t M, int64_t N, int64_t K, int64_t ldb) {
  return M < NN_MC ? 0 : padded_bytes(ctx, N, K, ldb);
}

/* Points *B and *ldb at that copy where there is one, reserving the GEMM scratch first; the
 * copy is only read. */
static nerve_status nn_pad_b(nerve_context *ctx, int64_t M, int64_t N, int64_t K,
                             const float **B, int64_t *ldb, const char *func) {
  const size_t bytes = nn_pad_bytes(ctx, M, N, K, *ldb);
  if (bytes == 0) return NERVE_OK;
  nerve_status s = nerve__scratch(ctx, NERVE_SCRATCH_GEMM, bytes, func);
  if (s != NERVE_OK) return s;
  *B = padded_copy(ctx, *B, *ldb, K, N);
  *ldb = (N + NR - 1) / NR * NR;
  return NERVE_OK;
}
#endif

size_t nerve__gemm_tn_scratch(const nerve_context *ctx, int64_t M, int64_t N, int64_t K,
                              int64_t ldg) {
#if NERVE_X86
  /* Rank updates rewrite every G row once per 8 rows of A; tn_narrow reads and writes each
   * element of G once, by itself, so it needs no copy. */
  if (M > 0 && tn_method_for(M, N) == TN_RANK) return padded_bytes(ctx, N, K, ldg);
#else
  (void)ctx, (void)M, (void)N, (void)K, (void)ldg;
#endif
  return 0;
}

/* ---- Entry points ----------------------------------------------------------------------- */

#if NERVE_X86
/* The listed rows of floats with AVX2 (below, with the pixels' lists). */
static bool avx2_rows_listed(const nerve_context *ctx, const float *A, int64_t lda, bool b_transposed,
                             bool accumulate, int64_t M, int64_t N, int64_t K);
static nerve_status avx2_rows_listed_product(nerve_context *ctx, float *C, int64_t ldc, const float *A,
                                             int64_t lda, const float *B, int64_t ldb, const float *bias,
                                             int64_t M, int64_t N, int64_t K,
                                             const nerve__activation_step *then, const char *func);
#endif

nerve_status nerve__gemm_nn(nerve_context *ctx, float *C, int64_t ldc, const float *A,
                            int64_t lda, const float *B, int64_t ldb, bool b_transposed,
                            const float *bias, bool accumulate, int64_t M, int64_t N, int64_t K,
                            const char *func) {
  return nerve__gemm_nn_as(ctx, C, ldc, A, lda, B, ldb, b_transposed, bias, accumulate, M, N, K, M, func);
}

/*
 * nerve__gemm_nn with B given as [K,N], all on the calling thread (a member of a team that
 * shares out larger work): each element is the same chain nerve__gemm_nn computes. Needs no
 * scratch.
 */
void nerve__gemm_nn_here(const nerve_context *ctx, float *C, int64_t ldc, const float *A,
                         int64_t lda, const float *B, int64_t ldb, const float *bias, int64_t M,
                         int64_t N, int64_t K) {
  if (M == 0 || N == 0) return;
#if NERVE_X86
  if (ctx->isa == NERVE_ISA_AVX512) {
    nn_job j = {.C = C, .ldc = ldc, .A = A, .lda = lda, .B = B, .ldb = ldb, .bias = bias,
                .M = M, .N = N, .K = K, .panels = (N + NR - 1) / NR, .split_rows = true};
    nn_member(&j, 0, 1);
    return;
  }
#endif
  (void)ctx;
  blas_nn_job j = {.C = C, .ldc = ldc, .A = A, .lda = lda, .B = B, .ldb = ldb, .bias = bias,
                   .own = ctx->isa == NERVE_ISA_AVX2, .rows = BLAS_MB,
                   .cols = blas_block_cols(ctx->isa == NERVE_ISA_AVX2),
                   .M = M, .N = N, .K = K, .mblocks = (M + BLAS_MB - 1) / BLAS_MB};
  j.nblocks = (N + j.cols - 1) / j.cols;
  blas_nn_blocks(&j, 0, j.mblocks * j.nblocks);
}

nerve_status nerve__gemm_nn_as(nerve_context *ctx, float *C, int64_t ldc, const float *A,
                               int64_t lda, const float *B, int64_t ldb, bool b_transposed,
                               const float *bias, bool accumulate, int64_t M, int64_t N, int64_t K,
                               int64_t method_rows, const char *func) {
  return nerve__gemm_nn_then(ctx, C, ldc, A, lda, B, ldb, b_transposed, bias, accumulate, M, N, K,
                             method_rows, NULL, func);
}

#if NERVE_X86
/* C = init + A . BT^T with A's rows in the lanes (avx2_nn_lanes), A packed first; *done false
 * (nothing written) where the packing does not apply: this call's rows pass NN_SMALL_M. */
static nerve_status avx2_lanes_product(nerve_context *ctx, float *C, int64_t ldc, const float *A, int64_t lda,
                                       const float *BT, int64_t ldb, const float *bias, bool accumulate,
                                       int64_t M, int64_t N, int64_t K, int64_t method_rows, bool *done,
                                       const char *func) {
  avx2_lanes_job j = {.C = C, .ldc = ldc, .BT = BT, .ldb = ldb, .bias = bias, .accumulate = accumulate,
                      .M = M, .N = N, .K = K};
  nerve_status s = nerve__gemm_nt_pack(ctx, A, lda, method_rows, M, K, !accumulate && !bias, &j.lanes, func);
  *done = s == NERVE_OK && j.lanes.P != NULL;
  if (!*done) return s;
  const int64_t width = avx2_lanes_width(M), blocks = (N + width - 1) / width;
  const int threads = nerve__threads_for(ctx, M * N * K, GEMM_GRAIN);
  nerve__parallel_team(threads < blocks ? threads : (int)blocks, avx2_lanes_member, &j);
  return NERVE_OK;
}
#endif

nerve_status nerve__gemm_nn_then(nerve_context *ctx, float *C, int64_t ldc, const float *A,
                                 int64_t lda, const float *B, int64_t ldb, bool b_transposed,
                                 const float *bias, bool accumulate, int64_t M, int64_t N, int64_t K,
                                 int64_t method_rows, const nerve__activation_step *then,
                                 const char *func) {
  if (M == 0 || N == 0) return NERVE_OK;
  int64_t work = M * N * (K > 0 ? K : 1);
#if NERVE_X86
  if (ctx->isa == NERVE_ISA_AVX512) {
    int64_t panels = (N + NR - 1) / NR;
    nn_job j = {.C = C, .ldc = ldc, .A = A, .lda = lda, .B = B, .ldb = ldb, .bias = bias,
                .accumulate = accumulate, .M = M, .N = N, .K = K, .panels = panels, .split_rows = true};
    int threads = nerve__threads_for(ctx, work, GEMM_GRAIN);
    /* Few rows of A (small batches) against a transposed B: dot products along rows of both,
     * instead of packing B. */
    if (nn_uses_dots(method_rows, K, b_transposed)) {
      nerve_status s = nerve__gemm_nt_pack(ctx, A, lda, method_rows, M, K, !accumulate && !bias, &j.lanes, func);
      if (s != NERVE_OK) return s;
      const int64_t width = j.lanes.P ? lanes_width(M) : DOT_NI, blocks = (N + width - 1) / width;
      nerve__parallel_team(threads < blocks ? threads : (int)blocks, nn_dots_member, &j);
      /* Few rows, shared out by columns in blocks: a pass of its own is as good. */
      nerve__activation_pass(ctx, then, C, ldc, M, N);
      return NERVE_OK;
    }

    if (b_transposed) {
      nerve_status s = nerve__scratch(ctx, NERVE_SCRATCH_GEMM,
                                      nerve__gemm_nn_scratch(ctx, method_rows, N, K, b_transposed), func);
      if (s != NERVE_OK) return s;
      nerve__gemm_nn_pack(ctx, ctx->scratch[NERVE_SCRATCH_GEMM], B, ldb, N, K);
      j.B = ctx->scratch[NERVE_SCRATCH_GEMM];
      j.packed = true;
    } else {
      /* Each member's room for packed blocks of B (pack_block), after the padded copy of B
       * if there is one. */
      const size_t pad = nn_pad_bytes(ctx, method_rows, N, K, ldb);
      const size_t pack = M >= PACK_MIN_ROWS && panels >= 2 ? (size_t)threads * NN_KB * NR * sizeof(float) : 0;
      nerve_status s = nerve__scratch(ctx, NERVE_SCRATCH_GEMM, pad + pack, func);
      if (s == NERVE_OK) s = nn_pad_b(ctx, method_rows, N, K, &j.B, &j.ldb, func);
      if (s != NERVE_OK) return s;
      if (pack > 0) j.pack = (float *)((char *)ctx->scratch[NERVE_SCRATCH_GEMM] + pad);
    }
    /* Split whichever operand is smaller to share: rows of C when A is the bigger one (each
     * thread then reads all of B), 32-column panels when B is. Either way each element's
     * chain is the same. */
    int64_t row_tiles = (M + NN_MR - 1) / NN_MR;
    j.split_rows = panels < 2 * threads || (M * K > K * N && row_tiles >= 2 * threads);
    /* Shared by panels, each row's columns end up in both cores' caches, and the layer after
     * reads by rows: there the activation is a pass by rows after the product, as its own call
     * would be (784 -> 300 at batch 100, applied to each member's panels instead: no faster,
     * `nerve bench --workloads minibatch` 0.254-0.273 s against 0.257-0.268). */
    j.then = j.split_rows ? then : NULL;
    nerve__parallel_team(threads, nn_member, &j);
    if (!j.split_rows) nerve__activation_pass(ctx, then, C, ldc, M, N);
    return NERVE_OK;
  }
#endif
#if NERVE_X86
  /* Few rows against a transposed B: the rows in the lanes (nerve__gemm_nt_columns takes them
   * so too). */
  if (ctx->isa == NERVE_ISA_AVX2 && b_transposed && avx2_uses_lanes(method_rows, K)) {
    bool done = false;
    nerve_status s = avx2_lanes_product(ctx, C, ldc, A, lda, B, ldb, bias, accumulate, M, N, K, method_rows, &done, func);
    if (s != NERVE_OK) return s;
    if (done) {
      nerve__activation_pass(ctx, then, C, ldc, M, N);
      return NERVE_OK;
    }
  }
  if (avx2_rows_listed(ctx, A, lda, b_transposed, accumulate, M, N, K))
    return avx2_rows_listed_product(ctx, C, ldc, A, lda, B, ldb, bias, M, N, K, then, func);
#endif
  (void)method_rows, (void)func;
  const bool own = ctx->isa == NERVE_ISA_AVX2;
  const int64_t rows = blas_block_rows(own, b_transposed, M, N, K, ctx->threads);
  const int64_t cols = blas_block_cols(own);
  int64_t mblocks = (M + rows - 1) / rows, nblocks = (N + cols - 1) / cols;
  blas_nn_job j = {.C = C, .ldc = ldc, .A = A, .lda = lda, .B = B, .ldb = ldb, .bt = b_transposed,
                   .bias = bias, .accumulate = accumulate, .own = own, .rows = rows, .cols = cols,
                   .M = M, .N = N, .K = K, .mblocks = mblocks, .nblocks = nblocks};
  int64_t blocks = mblocks * nblocks;
  nerve__parallel_for(ctx, blocks, blocks_grain(work, blocks),
                      blas_nn_blocks, &j);
  nerve__activation_pass(ctx, then, C, ldc, M, N);
  return NERVE_OK;
}

void nerve__gemm_nn_pack(nerve_context *ctx, float *P, const float *BT, int64_t ldb, int64_t N,
                         int64_t K) {
#if NERVE_X86
  pack_job pj = {.P = P, .BT = BT, .ldb = ldb, .N = N, .K = K};
  nerve__parallel_for(ctx, (N + NR - 1) / NR, (GEMM_GRAIN / 8) / (K * NR + 1) + 1, pack_panels, &pj);
#else
  (void)ctx, (void)P, (void)BT, (void)ldb, (void)N, (void)K;
#endif
}

void nerve__gemm_nn_packed_here(const nerve_context *ctx, float *C, int64_t ldc, const float *A,
                                int64_t lda, const float *P, int64_t M, int64_t N, int64_t K) {
#if NERVE_X86
  (void)ctx;
  if (M == 0 || N == 0) return;
  nn_job j = {.C = C, .ldc = ldc, .A = A, .lda = lda, .B = P, .ldb = NR, .packed = true,
              .M = M, .N = N, .K = K, .panels = (N + NR - 1) / NR, .split_rows = true};
  nn_member(&j, 0, 1);
#else
  (void)ctx, (void)C, (void)ldc, (void)A, (void)lda, (void)P, (void)M, (void)N, (void)K;
#endif
}

void nerve__gemm_tn_here(const nerve_context *ctx, float *G, int64_t ldg, const float *A, int64_t lda,
                         const float *D, int64_t ldd, int64_t M, int64_t N, int64_t K, float alpha) {
#if NERVE_X86
  if (M == 0 || N == 0 || K == 0) return;
  if (ctx->isa == NERVE_ISA_AVX2) {
    avx2_tn_stored(G, ldg, A, lda, D, ldd, M, N, K, alpha);
    return;
  }
  tn_job j = {.G = G, .ldg = ldg, .A = A, .lda = lda, .D = D, .ldd = ldd, .M = M, .N = N, .K = K,
              .panels = (N + NR - 1) / NR, .method = TN_RANK, .alpha = alpha};
  tn_rank_rows(&j, 0, K, 0, j.panels);
#else
  (void)ctx, (void)G, (void)ldg, (void)A, (void)lda, (void)D, (void)ldd, (void)M, (void)N, (void)K, (void)alpha;
#endif
}

bool nerve__gemm_tn_narrow(const nerve_context *ctx, int64_t M, int64_t N, int64_t K) {
#if NERVE_X86
  return ctx->isa == NERVE_ISA_AVX512 && M > 0 && N > 0 && K > 0 && tn_method_for(M, N) == TN_NARROW;
#else
  (void)ctx, (void)M, (void)N, (void)K;
  return false;
#endif
}

void nerve__gemm_tn_narrow_rows(float *G, int64_t ldg, const float *A, int64_t lda, const float *D,
                                int64_t ldd, int64_t N, int64_t K, int64_t m0, int64_t m1, float alpha) {
#if NERVE_X86
  tn_narrow_panels(G, ldg, A, lda, D, ldd, K, 0, (K + NR - 1) / NR, 0, N, m0, m1, alpha);
#else
  (void)G, (void)ldg, (void)A, (void)lda, (void)D, (void)ldd, (void)N, (void)K, (void)m0, (void)m1, (void)alpha;
#endif
}

#if NERVE_X86
/*
 * Whether a team of `threads` writes a step's weights back from their padded copy by streaming
 * stores (copy_out_streamed): the weights' rows one run (ldg = N, N >= 16), the context streams
 * (nerve__streams_rows' ctx->streams_stores), and then only while the team's cores are far
 * apart (nerve__cores_far), or always under NERVE_STORES_STREAMED, as for a large Adam step.
 * The minibatch workload's 784 -> 300 weights, which its forward splits by columns: with the
 * cores on two dies the copy back took 13% of a 2-thread epoch (perf). Gradients (their next
 * reader the optimizer) were not measured, and keep ordinary stores.
 */
static bool streams_back(nerve_context *ctx, int threads, int64_t ldg, int64_t N) {
  return threads >= 2 && ldg == N && N >= 16 && nerve__streams_while_far(ctx);
}
#endif

/* nerve__gemm_tn, and nerve__gemm_tn_step where `step` (G: the weights a step rewrites). */
static nerve_status gemm_tn(nerve_context *ctx, float *G, int64_t ldg, const float *A, int64_t lda,
                            const float *D, int64_t ldd, int64_t M, int64_t N, int64_t K, float alpha,
                            bool step, const char *func) {
  (void)func, (void)step;
  if (M == 0 || N == 0 || K == 0) return NERVE_OK;
  int64_t work = M * N * K;
#if NERVE_X86
  if (ctx->isa == NERVE_ISA_AVX512) {
    int64_t panels = (N + NR - 1) / NR, ktiles = (K + TN_KT - 1) / TN_KT;
    /* Rank updates on rows that are not whole vectors work on a padded copy of G (see
     * nerve__gemm_tn_scratch). */
    const size_t pad_bytes = nerve__gemm_tn_scratch(ctx, M, N, K, ldg);
    /* Split the columns of G when A is the smaller operand to share (every thread reads all
     * of A), else the rows of G; nn makes the same choice, so across forward and update each
     * thread keeps touching the same slice of the weights, which stays in its cache. On a
     * padded copy, always the rows: each member copies its own rows in and back
     * (tn_rank_part), where the copy by the whole team was split by rows anyway, so half of
     * each member's panels came from the other core's cache, and went back to it. The
     * minibatch workload (784 -> 300, batch 100) at 2 threads on the Zen 4 host, 20 pairs
     * alternated: 0.191-0.219 -> 0.185-0.198 s an epoch in quiet minutes, 0.393-0.400 ->
     * 0.359-0.364 s with the cores on two dies (`nerve bench`); the same bits. */
    const bool split_panels = M * K <= K * N && panels >= 2 && pad_bytes == 0;
    tn_job j = {.G = G, .ldg = ldg, .A = A, .lda = lda, .D = D, .ldd = ldd, .M = M, .N = N, .K = K,
                .panels = panels, .ktiles = ktiles, .method = tn_method_for(M, N),
                .split_panels = split_panels, .alpha = alpha};
    int threads = nerve__threads_for(ctx, work, GEMM_GRAIN);
    int64_t units = j.method == TN_NARROW ? (tn_narrow_by_panels(K, threads) ? (K + NR - 1) / NR : N)
                    : j.method == TN_TILES ? panels * ktiles : split_panels ? panels : K;
    if (units < threads) threads = (int)units;
    copy_job copy = {.ldp = panels * NR, .G = G, .back = G, .ldg = ldg, .N = N};
    if (pad_bytes > 0) { /* only for TN_RANK (nerve__gemm_tn_scratch) */
      nerve_status s = nerve__scratch(ctx, NERVE_SCRATCH_GEMM, pad_bytes, func);
      if (s != NERVE_OK) return s;
      copy.P = ctx->scratch[NERVE_SCRATCH_GEMM];
      copy.streams = step && streams_back(ctx, threads, ldg, N);
      j.G = copy.P, j.ldg = copy.ldp, j.copy = &copy;
    }
    nerve__parallel_team(threads, tn_member, &j);
    return NERVE_OK;
  }
#endif
  const bool own = ctx->isa == NERVE_ISA_AVX2;
  const int64_t cols = blas_block_cols(own);
  const int64_t nblocks = (N + cols - 1) / cols;
  int64_t rows = BLAS_KB;
  /* AVX2's chains give an element the same bits in any block: where G's blocks are fewer than
   * the threads its work is worth, smaller ones (Lab A's 30 -> 10 weight gradient, one block,
   * ran on one thread while the other waited). */
  const int wanted = nerve__threads_for(ctx, work, GEMM_GRAIN);
  if (own && ((K + rows - 1) / rows) * nblocks < wanted) rows = (K + wanted - 1) / wanted;
  const int64_t kblocks = (K + rows - 1) / rows;
  blas_tn_job j = {.G = G, .ldg = ldg, .A = A, .lda = lda, .D = D, .ldd = ldd, .M = M, .N = N, .K = K,
                   .nblocks = nblocks, .cols = cols, .rows = rows, .alpha = alpha, .own = own};
  int64_t blocks = kblocks * nblocks;
  nerve__parallel_for(ctx, blocks, blocks_grain(work, blocks),
                      blas_tn_blocks, &j);
  return NERVE_OK;
}

nerve_status nerve__gemm_tn(nerve_context *ctx, float *G, int64_t ldg, const float *A,
                            int64_t lda, const float *D, int64_t ldd, int64_t M, int64_t N,
                            int64_t K, float alpha, const char *func) {
  return gemm_tn(ctx, G, ldg, A, lda, D, ldd, M, N, K, alpha, false, func);
}

nerve_status nerve__gemm_tn_step(nerve_context *ctx, float *W, int64_t ldw, const float *A,
                                 int64_t lda, const float *D, int64_t ldd, int64_t M, int64_t N,
                                 int64_t K, float alpha, const char *func) {
  return gemm_tn(ctx, W, ldw, A, lda, D, ldd, M, N, K, alpha, true, func);
}

/* ---- Sparse rows (nerve_sparse) --------------------------------------------------------- */
/*
 * The dense products with A given as listed entries: the chains above without the terms whose
 * input is zero, so the bits are those of the stored rows. Threads split rows of C (nn) or
 * rows of G (tn), as the stored products do for these shapes.
 */

typedef struct {
  const nerve_context *ctx;
  float *C;
  int64_t ldc;
  const nerve_sparse *a;
  int64_t first;
  const float *B;
  int64_t ldb;
  const float *bias;
  int64_t M, N;
  float *G; /* tn */
  int64_t ldg;
  const float *D;
  int64_t ldd;
  float alpha;
  /* tn: G's copy padded to whole panels, each member's rows copied by it; NULL: G in place */
  const struct copy_job *copy;
  int64_t tile_rows; /* nn: rows of C a unit of work */
  bool whole_b;       /* nn: B's rows are whole panels (slots_any's `whole`) */
  float *copies;      /* nn: each member's padded copy of B, copy_floats apart; NULL: none */
  int64_t copy_floats, tiles;
  const nerve__activation_step *then; /* nn: applied to each tile of C once it is done */
  float *dbias;          /* tn: += D's column sums, or NULL (sparse_tn_share) */
  int bias_half_done;    /* tn: member 0 has summed the first half of D's rows (nerve__flag_*) */
} sparse_job;

/* Rows of C a unit of work at most, each panel of B in turn over them: their entries (about
 * 1.2 KB a row on MNIST) stay in L2 from one panel to the next. Fewer when that would leave a
 * thread idle (a minibatch's 100 rows), not under 16 (each unit's last rows leave slots idle). */
enum { SPARSE_ROWS = 256, SPARSE_MIN_ROWS = 16 };
#if NERVE_X86
/* Rows of C a unit of listed work for M rows: a thread's share, within those bounds. */
static int64_t sparse_tile_rows(const nerve_context *ctx, int64_t M) {
  const int64_t share = (M + ctx->threads - 1) / ctx->threads;
  return share < SPARSE_MIN_ROWS ? SPARSE_MIN_ROWS : share > SPARSE_ROWS ? SPARSE_ROWS : share;
}
#endif
#if NERVE_X86
/* Rows [r0, r1) of C in tiles of up to tile_rows rows, as even as they can be (no short last
 * tile, whose last rows would leave slots idle), each panel of B in turn. */
NERVE_TARGET_AVX512 static void sparse_nn_tiles(const sparse_job *j, int64_t r0, int64_t r1) {
  const int64_t *starts = j->a->starts + j->first;
  const int64_t panels = (j->N + NR - 1) / NR;
  const int64_t tiles = (r1 - r0 + j->tile_rows - 1) / j->tile_rows;
  for (int64_t u = 0; u < tiles; u++) {
    const int64_t m0 = r0 + (r1 - r0) * u / tiles, m1 = r0 + (r1 - r0) * (u + 1) / tiles;
    for (int64_t p = 0; p < panels; p++) {
      const int64_t col = p * NR, nr = j->N - col < NR ? j->N - col : NR;
      const float *bias = j->bias ? j->bias + col : NULL;
      const nerve_sparse *a = j->a;
      const bool packed = a->row_words != NULL;
      slots_any(nr > 16 ? 2 : 1, packed ? LIST_ROW_WORDS : LIST_ENTRIES, j->whole_b,
                packed ? (const void *)a->row_words : (const void *)a->columns,
                packed ? a->palette : a->values, starts, starts + 1, a->nonzeros, m0, m1, NULL, 0,
                j->C + col, j->ldc, false, bias, j->B + col, j->ldb, mask_lo(nr), mask_hi(nr));
    }
    nerve__activation_rows(j->then, j->C, j->ldc, j->N, m0, m1);
  }
}

/* Rows [k0, k1) of G: rows [m0, m1) of A in order, each over its entries in those columns. */
NERVE_TARGET_AVX512 static void sparse_tn_rows(const sparse_job *j, int64_t k0, int64_t k1,
                                               int64_t m0, int64_t m1) {
  const int64_t *starts = j->a->starts + j->first;
  const int32_t *cols = j->a->columns;
  const int64_t panels = (j->N + NR - 1) / NR;
  for (int64_t m = m0; m < m1; m++) {
    int64_t lo = starts[m], hi = starts[m + 1];
    /* Columns are sorted: count those before k0 and from k1 (no branches to mispredict). */
    int64_t below = 0, above = 0;
    if (k0 > 0)
      for (int64_t e = lo; e < hi; e++) below += cols[e] < k0;
    if (k1 < j->a->cols)
      for (int64_t e = lo; e < hi; e++) above += cols[e] >= k1;
    lo += below;
    hi -= above;
    for (int64_t p = 0; p < panels && lo < hi; p++) {
      const int64_t col = p * NR, nr = j->N - col < NR ? j->N - col : NR;
      tn_entries_any(nr > 16 ? 2 : 1, true, j->ldg == NR && j->copy, j->G + col, j->ldg,
                     cols + lo, j->a->values + lo, hi - lo, j->D + m * j->ldd + col, mask_lo(nr),
                     mask_hi(nr), j->alpha);
    }
  }
}

/* The whole blocks of column lists a job's rows cover, [b0, b1), and their rows [w0, w1) of the
 * listed matrix (a slice to the matrix's end takes its short last block); false if none. */
typedef struct {
  int64_t b0, b1, w0, w1;
} whole_blocks;

static bool sparse_whole_blocks(const sparse_job *j, whole_blocks *wb) {
  const int64_t size = NERVE_SPARSE_BLOCK, rows = j->a->rows;
  const int64_t r0 = j->first, r1 = j->first + j->M;
  wb->b0 = (r0 + size - 1) / size;
  wb->b1 = r1 == rows ? (rows + size - 1) / size : r1 / size;
  wb->w0 = wb->b0 * size, wb->w1 = wb->b1 * size < rows ? wb->b1 * size : rows;
  return wb->b1 > wb->b0;
}

/* Rows [k0, k1) of G (at G, panel's nr columns) over block b's column lists: by pairs of
 * columns where a has them, an odd column at either end alone. */
NERVE_TARGET_AVX512 static void block_columns(const nerve_sparse *a, int64_t b, int64_t k0,
                                              int64_t k1, float *G, int64_t ldg,
                                              const float *rows, int64_t nr, __mmask16 m0,
                                              __mmask16 m1) {
  const int64_t *at = a->block_starts + b * (a->cols + 1);
  const int W = nr > 16 ? 2 : 1;
  int64_t ka = (k0 + 1) & ~(int64_t)1, kb = k1 & ~(int64_t)1; /* the pairs' columns */
  if (!a->pair_words || ka >= kb) ka = kb = k1;               /* none: every column alone */
  slots_any(W, LIST_BLOCK_WORDS, true, a->block_words, a->palette, at, at + 1, a->nonzeros, k0, ka,
            NULL, 0, G, ldg, true, NULL, rows, NR, m0, m1);
  const int64_t *pairs = a->pair_starts ? a->pair_starts + b * (a->cols / 2 + 1) : NULL;
  if (ka < kb && W == 2)
    pairs_run(2, a->pair_words, a->palette, pairs, a->nonzeros, ka / 2, kb / 2, G, ldg, rows, NR, m0, m1);
  else if (ka < kb)
    pairs_run(1, a->pair_words, a->palette, pairs, a->nonzeros, ka / 2, kb / 2, G, ldg, rows, NR, m0, 0);
  slots_any(W, LIST_BLOCK_WORDS, true, a->block_words, a->palette, at, at + 1, a->nonzeros, kb, k1,
            NULL, 0, G, ldg, true, NULL, rows, NR, m0, m1);
}

/*
 * Rows [k0, k1) of G with A's whole blocks of rows taken column by column (the column lists of
 * nerve_sparse): each row of G is one chain in registers over a block's entries in its column,
 * started from G and stored once a block, where row by row rewrites it per entry (the stores
 * bound that loop). Rows of A before the first whole block and after the last go row by row
 * first and last, so each row of G still sums the rows of A in order: the same bits.
 */
NERVE_TARGET_AVX512 static void sparse_tn_blocks(const sparse_job *j, int64_t k0, int64_t k1) {
  const nerve_sparse *a = j->a;
  const int64_t size = NERVE_SPARSE_BLOCK, r0 = j->first;
  whole_blocks wb;
  if (!sparse_whole_blocks(j, &wb)) {
    sparse_tn_rows(j, k0, k1, 0, j->M);
    return;
  }
  const int64_t b0 = wb.b0, b1 = wb.b1, w0 = wb.w0, w1 = wb.w1;
  const int64_t panels = (j->N + NR - 1) / NR;
  /* The block's rows of D, one panel at a time, in whole aligned vectors: rows of D that
   * straddle cache lines (30 columns) made each entry's loads half again as long. */
  _Alignas(64) float rows[NERVE_SPARSE_BLOCK][NR]; /* 32 KB of stack */
  sparse_tn_rows(j, k0, k1, 0, w0 - r0);
  for (int64_t b = b0; b < b1; b++) {
    const int64_t n = (b + 1) * size < a->rows ? size : a->rows - b * size;
    const float *D = j->D + (b * size - r0) * j->ldd;
    for (int64_t p = 0; p < panels; p++) {
      const int64_t col = p * NR, nr = j->N - col < NR ? j->N - col : NR;
      const __mmask16 m0 = mask_lo(nr), m1 = mask_hi(nr);
      for (int64_t r = 0; r < n; r++) {
        _mm512_store_ps(rows[r], _mm512_maskz_loadu_ps(m0, D + r * j->ldd + col));
        _mm512_store_ps(rows[r] + 16, _mm512_maskz_loadu_ps(m1, D + r * j->ldd + col + 16));
      }
      block_columns(a, b, k0, k1, j->G + col, j->ldg, rows[0], nr, m0, m1);
    }
  }
  sparse_tn_rows(j, k0, k1, w1 - r0, j->M);
}
#endif

/* AVX2's listed rows (of pixels or floats): each team member's copy of B padded to whole
 * panels (ldp floats a row, at copies + t * copy_floats), and the rows members take as they
 * become free, up to tile_rows at a time from next (nerve__take_guided_chunk). */
typedef struct {
  float *copies;
  int64_t copy_floats, ldp, tile_rows, next;
} avx2_listed_team;

#if NERVE_X86
/*
 * The same lists with AVX2: each output row (nn) or row of G (tn, a block's column list) one
 * chain of multiply-adds in registers, over a panel of up to four vectors (32 columns, as
 * AVX-512's two), in the order avx2_nn_tile and avx2_tn_tile take the reduction: from the bias
 * (or 0) or G's value, then the entries in increasing column (nn) or row (tn) order. The terms
 * of zero inputs are left out (which changes nothing unless B or D holds an infinity or NaN, or
 * a sum so far is -0), so these are the bits of AVX2's stored products on the rows. Two lists
 * advance together, as slots_run's do (one list's chains wait on the FMA latency, two lists'
 * fill both FMA pipes), except rows' lists over 3 or 4 vectors (avx2_slots_run).
 */
enum { AVX2_LIST_PANEL = 32, AVX2_LIST_SLOTS = 2 };

/* Lists [i0, i1), list i's chain to out + i * ldo (the last vector's `tail` lanes there):
 *   out[i] = start + sum over e in [lo[i], hi[i]) of value(e) * op[k(e)]   (in order)
 * where start is out[i] (from_out; the bias is not added then, and no caller passes both) or the
 * bias (or 0), and op's rows hold 8 V floats each
 * (zeros past the panel's columns). k and value as `form` says (LIST_ENTRIES, LIST_ROW_WORDS,
 * LIST_BLOCK_WORDS). An idle slot steps over the padding after the entries (idle_at) into an
 * accumulator that is never stored. With from_out, an empty list leaves its row as it is. */
NERVE_TARGET_AVX2 NERVE_INLINE void avx2_slots_run(const int V, const list_form form, const void *index,
                                                   const float *values, const int64_t *lo, const int64_t *hi,
                                                   int64_t idle_at, int64_t i0, int64_t i1, float *out,
                                                   int64_t ldo, int64_t tail, bool from_out,
                                                   const float *bias, const float *op, int64_t ldop) {
  /* Rows' lists (nn) over 3 or 4 vectors one at a time: their rows of op (B, 128 bytes each
   * for Lab A's 30 outputs, 100 KB in all) come from L2, where two lists' loads left both
   * slower than one list's chains alone (Lab A's forward over MNIST's training set 11.8 -> 10.5
   * ms an epoch at 1 thread, bench/sparse_products.c; its test set through
   * nerve_dense_forward_pixels 3.32 -> 3.26 ms; Zen 3). A block's column lists (tn) read a
   * block of D's rows, 32 KB, from L1: two lists there. */
  const int S = form != LIST_BLOCK_WORDS && V >= 3 ? 1 : AVX2_LIST_SLOTS;
  __m256 c[AVX2_LIST_SLOTS][4];
  int64_t at[AVX2_LIST_SLOTS], left[AVX2_LIST_SLOTS], row[AVX2_LIST_SLOTS]; /* row: of out, -1 for an idle slot */
  int64_t next = i0;
#  pragma GCC unroll 2
  for (int s = 0; s < S; s++) left[s] = 0, row[s] = -1, at[s] = idle_at;
  for (;;) {
    int busy = 0;
#  pragma GCC unroll 2
    for (int s = 0; s < S; s++) {
      while (left[s] == 0) {
        if (row[s] >= 0)
#  pragma GCC unroll 4
          for (int v = 0; v < V; v++) nerve__avx2_store(out + row[s] * ldo + 8 * v, v == V - 1 ? tail : 8, c[s][v]);
        while (from_out && next < i1 && hi[next] == lo[next]) next++;
        if (next == i1) {
          row[s] = -1, at[s] = idle_at, left[s] = NERVE_SPARSE_PAD;
#  pragma GCC unroll 4
          for (int v = 0; v < V; v++) c[s][v] = _mm256_setzero_ps();
          break;
        }
        const int64_t i = next++;
        row[s] = i, at[s] = lo[i], left[s] = hi[i] - lo[i];
#  pragma GCC unroll 4
        for (int v = 0; v < V; v++) {
          const int64_t n = v == V - 1 ? tail : 8;
          c[s][v] = from_out ? nerve__avx2_load(out + i * ldo + 8 * v, n)
                    : bias   ? nerve__avx2_load(bias + 8 * v, n) : _mm256_setzero_ps();
        }
      }
      busy += row[s] >= 0;
    }
    if (busy == 0) return;
    const int64_t run = slots_shortest(left, S);
    /* Counted up to 0 from -run, each slot's entries from its end: no bound held in a
     * register, which clang (SwiftPM's frame pointer taking one) reloaded from the stack. */
    int64_t end[AVX2_LIST_SLOTS];
#  pragma GCC unroll 2
    for (int s = 0; s < S; s++) end[s] = at[s] + run;
    for (int64_t t = -run; t != 0; t++) {
#  pragma GCC unroll 2
      for (int s = 0; s < S; s++) {
        const int64_t e = end[s] + t;
        int64_t k;
        float x;
        if (form == LIST_ENTRIES) {
          k = ((const int32_t *)index)[e], x = values[e];
        } else if (form == LIST_ROW_WORDS) {
          const uint32_t word = ((const uint32_t *)index)[e];
          k = word & 0xFFFF, x = values[word >> 16];
        } else {
          const uint32_t word = ((const uint16_t *)index)[e];
          k = word & 0xFF, x = values[word >> 8];
        }
        const float *b = op + k * ldop;
        const __m256 a = _mm256_set1_ps(x);
#  pragma GCC unroll 4
        for (int v = 0; v < V; v++) c[s][v] = _mm256_fmadd_ps(a, _mm256_loadu_ps(b + 8 * v), c[s][v]);
      }
    }
    slots_advance(at, left, S, run);
  }
}

/* avx2_slots_run for a V (1 to 4) and form known at run time. */
NERVE_TARGET_AVX2 static void avx2_slots_any(int V, list_form form, const void *index, const float *values,
                                             const int64_t *lo, const int64_t *hi, int64_t idle_at,
                                             int64_t i0, int64_t i1, float *out, int64_t ldo, int64_t tail,
                                             bool from_out, const float *bias, const float *op,
                                             int64_t ldop) {
#  define AVX2_SLOTS(VV, FORM)                                                                   \
    avx2_slots_run(VV, FORM, index, values, lo, hi, idle_at, i0, i1, out, ldo, tail, from_out, bias, op, ldop)
#  define AVX2_SLOTS_FORM(FORM)                                                                  \
    switch (V) {                                                                                 \
      case 1: AVX2_SLOTS(1, FORM); break;                                                        \
      case 2: AVX2_SLOTS(2, FORM); break;                                                        \
      case 3: AVX2_SLOTS(3, FORM); break;                                                        \
      default: AVX2_SLOTS(4, FORM); break;                                                       \
    }
  if (form == LIST_ENTRIES) AVX2_SLOTS_FORM(LIST_ENTRIES)
  else if (form == LIST_ROW_WORDS) AVX2_SLOTS_FORM(LIST_ROW_WORDS)
  else AVX2_SLOTS_FORM(LIST_BLOCK_WORDS)
#  undef AVX2_SLOTS_FORM
#  undef AVX2_SLOTS
}

/* A panel's vectors and its last vector's lanes, for nr columns (1 to 32). */
static inline int avx2_list_vectors(int64_t nr) { return (int)((nr + 7) / 8); }
/* The row stride of a copy of B padded to whole panels, for N columns (avx2_pad_rows). */
static inline int64_t avx2_list_ldp(int64_t N) { return (N + AVX2_LIST_PANEL - 1) / AVX2_LIST_PANEL * AVX2_LIST_PANEL; }
static inline int64_t avx2_list_tail(int64_t nr) { return nr - 8 * (avx2_list_vectors(nr) - 1); }

/* A team for M rows of K inputs to N outputs (at most 4 MB of B's copy a member): its members
 * (returned), their copies' room in the GEMM scratch, and the rows they take. Each member's
 * work counted as if a quarter of its inputs were not zero (MNIST has a fifth). */
static nerve_status avx2_listed_team_init(nerve_context *ctx, avx2_listed_team *team, int64_t M, int64_t N,
                                          int64_t K, int *threads, const char *func) {
  const double work = (double)M * (double)N * ((double)K / 4.0 + 1.0);
  *threads = nerve__threads_for(ctx, work > (double)INT64_MAX ? INT64_MAX : (int64_t)work, GEMM_GRAIN);
  team->ldp = avx2_list_ldp(N);
  team->copy_floats = K * team->ldp;
  team->tile_rows = sparse_tile_rows(ctx, M);
  team->next = 0;
  const size_t bytes = (size_t)team->copy_floats * sizeof(float) * (size_t)*threads;
  nerve_status s = nerve__scratch(ctx, NERVE_SCRATCH_GEMM, bytes, func);
  if (s == NERVE_OK) team->copies = ctx->scratch[NERVE_SCRATCH_GEMM];
  return s;
}

/* Member t's copy of B[K,N], made. */
NERVE_TARGET_AVX2 static float *avx2_listed_copy(const avx2_listed_team *team, int t, const float *B, int64_t ldb,
                                                 int64_t K, int64_t N) {
  float *P = team->copies + (int64_t)t * team->copy_floats;
  avx2_pad_rows(P, team->ldp, B, ldb, K, N, 1.0f);
  return P;
}

/* The next rows [*a, *b) of M a member of nt takes, if any are left. */
static inline bool avx2_listed_take(avx2_listed_team *team, int nt, int64_t M, int64_t *a, int64_t *b) {
  return nerve__take_guided_chunk(&team->next, nt, SPARSE_MIN_ROWS, team->tile_rows, M, a, b);
}

/* Tiles [t0, t1) of C's rows, each panel of B (padded: rows ldb floats, zeros past N) in turn. */
NERVE_TARGET_AVX2 static void avx2_sparse_nn_tiles(const sparse_job *j, int64_t t0, int64_t t1) {
  const nerve_sparse *a = j->a;
  const int64_t *starts = a->starts + j->first;
  const bool packed = a->row_words != NULL;
  for (int64_t t = t0; t < t1; t++) {
    const int64_t m0 = t * j->tile_rows, m1 = m0 + j->tile_rows < j->M ? m0 + j->tile_rows : j->M;
    for (int64_t col = 0; col < j->N; col += AVX2_LIST_PANEL) {
      const int64_t nr = j->N - col < AVX2_LIST_PANEL ? j->N - col : AVX2_LIST_PANEL;
      avx2_slots_any(avx2_list_vectors(nr), packed ? LIST_ROW_WORDS : LIST_ENTRIES,
                     packed ? (const void *)a->row_words : (const void *)a->columns,
                     packed ? a->palette : a->values, starts, starts + 1, a->nonzeros, m0, m1, j->C + col,
                     j->ldc, avx2_list_tail(nr), false, j->bias ? j->bias + col : NULL, j->B + col, j->ldb);
    }
    nerve__activation_rows(j->then, j->C, j->ldc, j->N, m0, m1);
  }
}

/* Rows [k0, k1) of G: rows [m0, m1) of A in order, each entry in those columns rewriting its
 * row of G (fma(x, alpha d, g), as avx2_tn_tile's chains on alpha times D). */
NERVE_TARGET_AVX2 static void avx2_sparse_tn_rows(const sparse_job *j, int64_t k0, int64_t k1, int64_t m0,
                                                  int64_t m1) {
  const int64_t *starts = j->a->starts + j->first;
  const int32_t *cols = j->a->columns;
  const __m256 scale = _mm256_set1_ps(j->alpha);
  for (int64_t m = m0; m < m1; m++) {
    int64_t lo = starts[m], hi = starts[m + 1];
    while (lo < hi && cols[lo] < k0) lo++;
    while (hi > lo && cols[hi - 1] >= k1) hi--;
    for (int64_t col = 0; col < j->N && lo < hi; col += 8) {
      const int64_t n = j->N - col;
      const __m256 d = _mm256_mul_ps(scale, nerve__avx2_load(j->D + m * j->ldd + col, n));
      for (int64_t e = lo; e < hi; e++) {
        float *g = j->G + cols[e] * j->ldg + col;
        nerve__avx2_store(g, n, _mm256_fmadd_ps(_mm256_set1_ps(j->a->values[e]), d, nerve__avx2_load(g, n)));
      }
    }
  }
}

/* sparse_tn_blocks with AVX2: a whole block's column lists over its rows of D (a panel at a
 * time, copied to whole vectors), rows outside whole blocks row by row first and last. */
NERVE_TARGET_AVX2 static void avx2_sparse_tn_blocks(const sparse_job *j, int64_t k0, int64_t k1) {
  const nerve_sparse *a = j->a;
  const int64_t size = NERVE_SPARSE_BLOCK, width = a->cols + 1, r0 = j->first;
  whole_blocks wb;
  if (!sparse_whole_blocks(j, &wb)) {
    avx2_sparse_tn_rows(j, k0, k1, 0, j->M);
    return;
  }
  const int64_t b0 = wb.b0, b1 = wb.b1, w0 = wb.w0, w1 = wb.w1;
  _Alignas(32) float rows[NERVE_SPARSE_BLOCK][AVX2_LIST_PANEL]; /* 32 KB of stack */
  avx2_sparse_tn_rows(j, k0, k1, 0, w0 - r0);
  for (int64_t b = b0; b < b1; b++) {
    const int64_t *at = a->block_starts + b * width;
    const int64_t n = (b + 1) * size < a->rows ? size : a->rows - b * size;
    const float *D = j->D + (b * size - r0) * j->ldd;
    for (int64_t col = 0; col < j->N; col += AVX2_LIST_PANEL) {
      const int64_t nr = j->N - col < AVX2_LIST_PANEL ? j->N - col : AVX2_LIST_PANEL;
      avx2_pad_rows(rows[0], AVX2_LIST_PANEL, D + col, j->ldd, n, nr, 1.0f);
      avx2_slots_any(avx2_list_vectors(nr), LIST_BLOCK_WORDS, a->block_words, a->palette, at, at + 1,
                     a->nonzeros, k0, k1, j->G + col, j->ldg, avx2_list_tail(nr), true, NULL, rows[0],
                     AVX2_LIST_PANEL);
    }
  }
  avx2_sparse_tn_rows(j, k0, k1, w1 - r0, j->M);
}
#endif

/* Elsewhere: the same sums, one element at a time. */
static void sparse_nn_rows_base(void *data, int64_t m0, int64_t m1) {
  const sparse_job *j = data;
  const int64_t *starts = j->a->starts + j->first;
  for (int64_t m = m0; m < m1; m++) {
    float *c = j->C + m * j->ldc;
    for (int64_t o = 0; o < j->N; o++) c[o] = j->bias ? j->bias[o] : 0.0f;
    for (int64_t e = starts[m]; e < starts[m + 1]; e++) {
      const float x = j->a->values[e], *b = j->B + j->a->columns[e] * j->ldb;
      for (int64_t o = 0; o < j->N; o++) c[o] += x * b[o];
    }
  }
  nerve__activation_rows(j->then, j->C, j->ldc, j->N, m0, m1);
}

static void sparse_tn_rows_base(void *data, int64_t k0, int64_t k1) {
  const sparse_job *j = data;
  const int64_t *starts = j->a->starts + j->first;
  for (int64_t m = 0; m < j->M; m++)
    for (int64_t e = starts[m]; e < starts[m + 1]; e++) {
      const int64_t k = j->a->columns[e];
      if (k < k0 || k >= k1) continue;
      float *g = j->G + k * j->ldg;
      const float x = j->a->values[e], *d = j->D + m * j->ldd;
      for (int64_t o = 0; o < j->N; o++) g[o] += x * (j->alpha * d[o]);
    }
}

#if NERVE_X86
/* A list's start and end, in entries' time: its chains' first loads and last stores, and the
 * branch that ends its run (about 8 entries, Lab A at 2 threads: by rows alone the second
 * thread's share took 6% longer than the first's). */
enum { SPARSE_ROW_ENTRIES = 8 };

/* The first row of member t's share of nt (nt: M): where the work before it, entries and
 * rows at SPARSE_ROW_ENTRIES each, reaches t / nt of the whole. */
static int64_t sparse_row_cut(const sparse_job *j, int t, int nt) {
  const int64_t *starts = j->a->starts + j->first;
  const int64_t total = starts[j->M] - starts[0] + SPARSE_ROW_ENTRIES * j->M;
  int64_t lo = 0, hi = j->M; /* the cut is in [lo, hi] */
  while (lo < hi) {
    const int64_t r = lo + (hi - lo) / 2;
    if ((starts[r] - starts[0] + SPARSE_ROW_ENTRIES * r) * nt < total * t) lo = r + 1;
    else hi = r;
  }
  return lo;
}

/* Threads' shares. Member t of a team sharing the rows takes a contiguous share of them (the
 * activation after the product splits its rows so, and reads what this core wrote): with
 * AVX-512, rows cut where their work is even; with AVX2, the tiles in equal shares. Each reads
 * its own padded copy of B where the job has copies (AVX2's kernels always read one). */
static void sparse_nn_member(void *data, int t, int nt) {
  const sparse_job *shared = data;
  sparse_job j = *shared;
  if (j.ctx->isa == NERVE_ISA_AVX2) {
    const int64_t t0 = j.tiles * t / nt, t1 = j.tiles * (t + 1) / nt;
    if (t0 >= t1) return;
    const int64_t ldp = avx2_list_ldp(j.N);
    float *P = j.copies + (int64_t)t * j.copy_floats;
    avx2_pad_rows(P, ldp, j.B, j.ldb, j.a->cols, j.N, 1.0f);
    j.B = P, j.ldb = ldp;
    avx2_sparse_nn_tiles(&j, t0, t1);
    return;
  }
  const int64_t r0 = sparse_row_cut(&j, t, nt), r1 = sparse_row_cut(&j, t + 1, nt);
  if (r0 >= r1) return;
  if (j.copies) {
    const int64_t ldp = (j.N + NR - 1) / NR * NR;
    copy_job cj = {.P = j.copies + (int64_t)t * j.copy_floats, .ldp = ldp, .G = j.B, .ldg = j.ldb, .N = j.N};
    copy_in(&cj, 0, j.a->cols);
    j.B = cj.P, j.ldb = ldp;
  }
  sparse_nn_tiles(&j, r0, r1);
}

/* Rows [k0, k1) of G, by blocks' column lists or by rows, on this member's rows of the padded
 * copy where there is one, copied in before and back after by this member alone (as
 * tn_rank_part). */
static void sparse_tn_part(const sparse_job *j, int64_t k0, int64_t k1, bool by_blocks) {
  if (j->ctx->isa == NERVE_ISA_AVX2) { /* G in place: its rows' last vectors stored in parts */
    if (by_blocks) avx2_sparse_tn_blocks(j, k0, k1);
    else avx2_sparse_tn_rows(j, k0, k1, 0, j->M);
    return;
  }
  if (j->copy) copy_in(j->copy, k0, k1);
  if (by_blocks) sparse_tn_blocks(j, k0, k1);
  else sparse_tn_rows(j, k0, k1, 0, j->M);
  if (j->copy) copy_out(j->copy, k0, k1);
}

/* The first of `lists` lists where the words before it (ends, as list_ends makes them) reach
 * t / nt of all. */
static int64_t lists_cut(const int64_t *ends, int64_t lists, int t, int nt) {
  int64_t i = 0;
  while (i < lists && ends[i] * nt < ends[lists] * t) i++;
  return i;
}

/* The column lists' share of thread t: columns cut where the entries before them (over the
 * whole matrix, a slice's proxy) reach t / nt of all, instead of equal ranges of columns
 * (MNIST's lower half holds 53% of its entries); where the lists come in pairs, whole pairs
 * cut by their words (a pair's two columns share some, so entries weigh its work less well:
 * Lab A's second thread was busy 7% longer). */
static void sparse_tn_share(void *data, int t, int nt) {
  sparse_job *j = data;
  const nerve_sparse *a = j->a;
  const int64_t K = a->cols;
  /* Whole pairs where there are pairs (two columns a pair). */
  const int64_t per = a->pair_words ? 2 : 1, lists = K / per;
  const int64_t *ends = a->pair_words ? a->pair_ends : a->column_ends;
  const int64_t k0 = per * lists_cut(ends, lists, t, nt);
  const int64_t k1 = t == nt - 1 ? K : per * lists_cut(ends, lists, t + 1, nt);
  /* The bias's sums, one chain a column over all rows, by halves of the rows as dense.c's
   * halves_member takes its weight gradient's chains: member 0 over the first half (the rows
   * the layer after wrote on its core) before its lists, the last member on from there after
   * its own. (D's rows are N apart where there is a bias: nerve__sparse_tn.) */
  const int64_t half = nt > 1 ? j->M / 2 : j->M;
  if (j->dbias && t == 0) {
    nerve__bias_accumulate_here(j->ctx, j->dbias, j->D, half, j->N, 1.0f);
    nerve__flag_raise(&j->bias_half_done);
  }
  if (k0 < k1) sparse_tn_part(j, k0, k1, true);
  if (j->dbias && t == nt - 1 && nt > 1) {
    nerve__flag_wait(&j->bias_half_done);
    nerve__bias_accumulate_here(j->ctx, j->dbias, j->D + half * j->N, j->M - half, j->N, 1.0f);
  }
}

static void sparse_tn_member(void *data, int64_t k0, int64_t k1) { sparse_tn_part(data, k0, k1, false); }
#endif

/* Units (tiles, rows of G) per thread worth starting one for, from the work (entries times
 * outputs; in double, as it only sets the grain and may exceed int64). */
static int64_t sparse_grain(const nerve_sparse *a, int64_t first, int64_t M, int64_t N,
                            int64_t units) {
  const double work = ((double)(a->starts[first + M] - a->starts[first]) + (double)M) * (double)N;
  const double per_unit = work / (double)(units > 0 ? units : 1);
  return per_unit >= GEMM_GRAIN ? 1 : (int64_t)(GEMM_GRAIN / (per_unit + 1.0)) + 1;
}

nerve_status nerve__sparse_nn(nerve_context *ctx, float *C, int64_t ldc, const nerve_sparse *a,
                              int64_t first, const float *B, int64_t ldb, const float *bias,
                              int64_t M, int64_t N, const nerve__activation_step *then,
                              const char *func) {
  if (M == 0 || N == 0) return NERVE_OK;
  sparse_job j = {.ctx = ctx, .C = C, .ldc = ldc, .a = a, .first = first, .B = B, .ldb = ldb,
                  .bias = bias, .M = M, .N = N, .then = then};
  /* (Without entries there is nothing for the slots to step over: the start is all of C.) */
  if (!nerve__own_vectors(ctx) || a->nonzeros == 0) {
    nerve__parallel_for(ctx, M, sparse_grain(a, first, M, N, M), sparse_nn_rows_base, &j);
    return NERVE_OK;
  }
#if NERVE_X86
  j.tile_rows = sparse_tile_rows(ctx, M);
  j.tiles = (M + j.tile_rows - 1) / j.tile_rows;
  const int threads = nerve__threads_for(ctx, j.tiles, sparse_grain(a, first, M, N, j.tiles));
  if (ctx->isa == NERVE_ISA_AVX2) { /* each member's copy of B, padded to whole panels */
    const int64_t ldp = avx2_list_ldp(N);
    const size_t floats = (size_t)a->cols * (size_t)ldp;
    nerve_status s = nerve__scratch(ctx, NERVE_SCRATCH_GEMM, floats * sizeof(float) * (size_t)threads, func);
    if (s != NERVE_OK) return s;
    j.copies = ctx->scratch[NERVE_SCRATCH_GEMM];
    j.copy_floats = (int64_t)floats;
    nerve__parallel_team(threads, sparse_nn_member, &j);
    return NERVE_OK;
  }
  /* B padded to whole panels where nn would pad it (nn_pad_bytes): a copy for each member, made
   * and read by it alone. One copy made by both had each read half of it from the other core's
   * cache, and rewrite lines the other had read, every call: Lab A's epoch at 2 threads
   * 13.9-14.2 -> 13.3-13.6 ms in slow minutes, 9.8-9.9 -> 9.7 in quiet ones (`nerve bench`). */
  const size_t pad = nn_pad_bytes(ctx, M, N, a->cols, ldb);
  if (pad > 0) {
    nerve_status s = nerve__scratch(ctx, NERVE_SCRATCH_GEMM, pad * (size_t)threads, func);
    if (s != NERVE_OK) return s;
    j.copies = ctx->scratch[NERVE_SCRATCH_GEMM];
    j.copy_floats = (int64_t)(pad / sizeof(float));
  }
  /* A padded copy holds zeros past N; columns that fill whole vectors need no padding. */
  j.whole_b = pad > 0 || N % 16 == 0;
  nerve__parallel_team(threads, sparse_nn_member, &j);
#else
  (void)func;
#endif
  return NERVE_OK;
}

/* nerve__sparse_tn's weight gradient; the column lists' team takes dbias (sparse_tn_share) and
 * leaves j->dbias set where it did. */
static nerve_status sparse_tn_gradient(nerve_context *ctx, sparse_job *j, float *dbias, const char *func) {
  const nerve_sparse *a = j->a;
  const int64_t K = a->cols, M = j->M, N = j->N;
  if (K == 0 || a->nonzeros == 0) return NERVE_OK;
  const int64_t grain = sparse_grain(a, j->first, M, N, K);
  if (!nerve__own_vectors(ctx)) {
    nerve__parallel_for(ctx, K, grain, sparse_tn_rows_base, j);
    return NERVE_OK;
  }
#if NERVE_X86
  /* Row by row, each entry rewrites a row of G, as rank updates do: with AVX-512 they work on a
   * copy of G padded to whole panels (AVX2's store a row's last lanes by plain stores, in
   * place). The column lists (alpha 1) load and store a row of G once a block of
   * NERVE_SPARSE_BLOCK rows, so on whole blocks they use G in place: Lab A copied its 784 x 30
   * gradient in and out for each chunk of 2,048 rows. */
  float *G = j->G;
  const int64_t ldg = j->ldg, first = j->first;
  const bool blocks = a->block_starts && j->alpha == 1.0f;
  const bool whole_blocks = first % NERVE_SPARSE_BLOCK == 0 &&
                            ((first + M) % NERVE_SPARSE_BLOCK == 0 || first + M == a->rows);
  const size_t pad_bytes = blocks && whole_blocks ? 0 : padded_bytes(ctx, N, K, ldg);
  copy_job copy = {.ldp = (N + NR - 1) / NR * NR, .G = G, .back = G, .ldg = ldg, .N = N};
  if (pad_bytes > 0) { /* each member copies its own rows in and back, as tn_rank_part does */
    nerve_status s = nerve__scratch(ctx, NERVE_SCRATCH_GEMM, pad_bytes, func);
    if (s != NERVE_OK) return s;
    copy.P = ctx->scratch[NERVE_SCRATCH_GEMM];
    j->G = copy.P, j->ldg = copy.ldp, j->copy = &copy;
  }
  /* The column lists compute fma(x, d, g): the rows' loop's terms when alpha is 1. */
  if (blocks) {
    j->dbias = dbias;
    nerve__parallel_team(nerve__threads_for(ctx, K, grain), sparse_tn_share, j);
  } else {
    nerve__parallel_for(ctx, K, grain, sparse_tn_member, j);
  }
  j->copy = NULL; /* the copy is this call's */
#else
  (void)dbias, (void)func;
#endif
  return NERVE_OK;
}

nerve_status nerve__sparse_tn(nerve_context *ctx, float *G, int64_t ldg, float *dbias,
                              const nerve_sparse *a, int64_t first, const float *D, int64_t ldd,
                              int64_t M, int64_t N, float alpha, const char *func) {
  if (M == 0 || N == 0) return NERVE_OK;
  sparse_job j = {.ctx = ctx, .a = a, .first = first, .M = M, .N = N, .G = G, .ldg = ldg, .D = D,
                  .ldd = ldd, .alpha = alpha};
  nerve_status s = sparse_tn_gradient(ctx, &j, dbias, func);
  if (s != NERVE_OK) return s;
  /* The bias on its own where no team of column lists took it. */
  if (dbias && !j.dbias) nerve__bias_accumulate(ctx, dbias, D, M, N, 1.0f);
  return NERVE_OK;
}

/* ---- 8-bit inputs (pixels) ------------------------------------------------------------ */
/*
 * C[M,N] = (scale * A[M,K]) . B[K,N] + bias with A as bytes (images as their files store them).
 * Each row's non-zero bytes are listed as words (k * ldb) << 8 | byte (LIST_PIXELS; with AVX2,
 * k | byte << 16, LIST_ROW_WORDS) and run as slots against a palette of the 256 values
 * scale * byte: the listing reads a byte a column where the stored products read a float, the
 * slots find B's row without a multiply (AVX-512), and the chains (the bias, then the non-zero
 * columns in order) are those of the stored products on the floats nerve_pixels_to_floats gives.
 */
typedef struct {
  float *C;
  int64_t ldc;
  const uint8_t *A;
  int64_t lda;
  const float *B;
  int64_t ldb;
  const float *bias;
  int64_t M, N, K;
  int64_t tile_rows; /* rows of C a unit of work (AVX-512) */
  const float *palette; /* [256]: scale * byte */
  avx2_listed_team team; /* AVX2 */
} pixels_nn_job;

/* palette[v] = scale * v for each byte v: the floats nerve_pixels_to_floats makes of them. */
static inline void pixels_palette(float *palette, float scale) {
  for (int v = 0; v < 256; v++) palette[v] = (float)v * scale;
}

/* Reduction steps a list covers (B's block of them is 128 KB a panel, as in nn_run), the
 * widest B whose offsets in a block fit a word's 24 bits, and the words a member lists at
 * most before running them (64 KB of stack). */
enum { PIXELS_KB = 1024, PIXELS_MAX_LDB = (1 << 24) / PIXELS_KB, PIXELS_WORDS = 16384 };

#if NERVE_X86
/* Row `in`'s non-zero bytes among its first n as words ((k * ldb) << 8 | byte, k from 0) in
 * words; returns how many. 16 columns at a time, widened to 32 bits and compressed; each
 * store writes a whole vector, so up to 16 words past the count (words has room for n + 16). */
NERVE_TARGET_AVX512 static int64_t nonzero_pixels(const uint8_t *in, int64_t n, int64_t ldb,
                                                  uint32_t *words) {
  const __m512i step = _mm512_set1_epi32((int)(16 * ldb) << 8);
  __m512i offset = _mm512_slli_epi32(
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32((int)ldb)),
      8);
  int64_t count = 0, k = 0;
  /* 64 columns a step: one test of 64 bytes, then four independent compressions. */
  for (; k + 64 <= n; k += 64) {
    const __m512i bytes = _mm512_loadu_si512((const void *)(in + k));
    const __mmask64 nz = _mm512_test_epi8_mask(bytes, bytes);
    int64_t at = count;
#  pragma GCC unroll 4
    for (int q = 0; q < 4; q++) {
      const __m512i wide = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(in + k + 16 * q)));
      const __mmask16 m = (__mmask16)(nz >> (16 * q));
      _mm512_storeu_si512((void *)(words + at),
                          _mm512_maskz_compress_epi32(m, _mm512_or_si512(wide, offset)));
      at += __builtin_popcount(m);
      offset = _mm512_add_epi32(offset, step);
    }
    count = at;
  }
  for (; k < n; k += 16) {
    const __mmask16 valid = nerve__lanes16(n - k);
    const __m512i wide = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(valid, in + k));
    const __mmask16 m = _mm512_test_epi32_mask(wide, wide);
    _mm512_storeu_si512((void *)(words + count),
                        _mm512_maskz_compress_epi32(m, _mm512_or_si512(wide, offset)));
    count += __builtin_popcount(m);
    offset = _mm512_add_epi32(offset, step);
  }
  return count;
}

/* Rows [m0, m1) of C over reduction steps [k0, ...), listed in words, every panel of B. */
NERVE_TARGET_AVX512 static void pixels_run(const pixels_nn_job *j, uint32_t *words, int64_t used,
                                           const int64_t *lo, const int64_t *hi, int64_t m0,
                                           int64_t m1, int64_t k0) {
  memset(words + used, 0, NERVE_SPARSE_PAD * sizeof *words);
  for (int64_t col = 0; col < j->N; col += NR) {
    const int64_t nr = j->N - col < NR ? j->N - col : NR;
    const bool first = k0 == 0;
    slots_any(nr > 16 ? 2 : 1, LIST_PIXELS, false, words, j->palette, lo, hi, used, 0, m1 - m0, NULL, 0,
              j->C + m0 * j->ldc + col, j->ldc, !first, first && j->bias ? j->bias + col : NULL,
              j->B + k0 * j->ldb + col, j->ldb, mask_lo(nr), mask_hi(nr));
  }
}

/* Tiles [t0, t1) of tile_rows rows of C: each block of reduction steps, its rows listed as
 * many at a time as the words hold, then run over every panel. (K > 0: see pixels_dense.) */
NERVE_TARGET_AVX512 static void pixels_nn_tiles(void *data, int64_t t0, int64_t t1) {
  const pixels_nn_job *j = data;
  uint32_t words[PIXELS_WORDS + NERVE_SPARSE_PAD];
  int64_t lo[SPARSE_ROWS], hi[SPARSE_ROWS];
  for (int64_t t = t0; t < t1; t++) {
    const int64_t m0 = t * j->tile_rows, m1 = m0 + j->tile_rows < j->M ? m0 + j->tile_rows : j->M;
    for (int64_t k0 = 0; k0 < j->K; k0 += PIXELS_KB) {
      const int64_t kc = j->K - k0 < PIXELS_KB ? j->K - k0 : PIXELS_KB;
      int64_t used = 0, start = m0;
      for (int64_t m = m0; m < m1; m++) {
        /* Room for a whole row and the 16 words its last store may write past it. */
        if (used + kc + 16 > PIXELS_WORDS) {
          pixels_run(j, words, used, lo, hi, start, m, k0);
          used = 0, start = m;
        }
        lo[m - start] = used;
        used += nonzero_pixels(j->A + m * j->lda + k0, kc, j->ldb, words + used);
        hi[m - start] = used;
      }
      pixels_run(j, words, used, lo, hi, start, m1, k0);
    }
  }
}

/* Whether the first rows of A (up to 64) have at least half their bytes non-zero (or there are
 * none): then lists would cost more than they skip, and the stored products' register tiles
 * run instead. */
static bool pixels_dense(const uint8_t *A, int64_t lda, int64_t M, int64_t K) {
  const int64_t rows = M < 64 ? M : 64;
  int64_t nonzero = 0;
  for (int64_t m = 0; m < rows; m++)
    for (int64_t k = 0; k < K; k++) nonzero += A[m * lda + k] != 0;
  return 2 * nonzero >= rows * K;
}

/* The listed way (AVX-512, sparse bytes): tiles of rows shared out as threads become free. */
static nerve_status pixels_listed(nerve_context *ctx, pixels_nn_job *j, float scale,
                                  const char *func) {
  float palette[256];
  pixels_palette(palette, scale);
  j->palette = palette;
  nerve_status s = nn_pad_b(ctx, j->M, j->N, j->K, &j->B, &j->ldb, func);
  if (s != NERVE_OK) return s;
  j->tile_rows = sparse_tile_rows(ctx, j->M);
  const int64_t tiles = (j->M + j->tile_rows - 1) / j->tile_rows;
  /* The work of a tile as if a quarter of its inputs were not zero (MNIST has a fifth). */
  const double per_tile = (double)j->tile_rows * (double)j->N * ((double)j->K / 4.0 + 1.0);
  const int64_t grain = per_tile >= GEMM_GRAIN ? 1 : (int64_t)(GEMM_GRAIN / (per_tile + 1.0)) + 1;
  nerve__parallel_chunks(ctx, tiles, grain, pixels_nn_tiles, j);
  return NERVE_OK;
}

/*
 * The listed way with AVX2: each row's non-zero bytes as words k | byte << 16
 * (LIST_ROW_WORDS, against the palette), run by avx2_slots_any over each panel of the member's
 * own padded copy of B, as avx2_sparse_nn_tiles runs a training set's lists: each row's chain
 * over its own non-zero columns. The register tiles of the stored products (the floats' way)
 * run each of their rows over the columns where any of the tile's 6 rows is not zero: 332 of
 * MNIST's 784 where one image has 151.
 * AVX2_PIXELS_MIN_ROWS: rows under which copying B costs more than the lists save.
 * AVX2_PIXELS_MAX_COPY: the floats of a member's padded copy of B at most (4 MB; wider layers
 * are made floats a block of rows at a time, 128 K floats a thread).
 */
enum { AVX2_PIXELS_MIN_ROWS = 64, AVX2_PIXELS_MAX_COPY = 1 << 20 };

/* Row `in`'s non-zero bytes among its first n as words k | byte << 16, with AVX2: 32 columns a
 * step (none where all are zero, as most of an MNIST image's first and last rows), each 8 of
 * them moved to the front by their mask's entry of avx2_picks, then the last columns one by
 * one. Each store writes 8 words, so up to 8 past the count (words has room for n + 8).
 * About 130 ns an MNIST image on a Zen 3, where 8 columns a step with no test took 150. */
NERVE_TARGET_AVX2 static int64_t avx2_nonzero_pixels(const uint8_t *in, int64_t n, uint32_t *words) {
  __m256i at = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i eight = _mm256_set1_epi32(8);
  int64_t count = 0, k = 0;
  for (; k + 32 <= n; k += 32) {
    const __m256i bytes = _mm256_loadu_si256((const __m256i *)(in + k));
    const uint32_t live = ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(bytes, _mm256_setzero_si256()));
    if (live == 0) {
      at = _mm256_add_epi32(at, _mm256_set1_epi32(32));
      continue;
    }
    const __m128i lo = _mm256_castsi256_si128(bytes), hi = _mm256_extracti128_si256(bytes, 1);
    const __m128i eights[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
#  pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
      const unsigned m = live >> (8 * g) & 0xFFu;
      const __m256i pick = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)&avx2_picks[m]));
      const __m256i w = _mm256_or_si256(at, _mm256_slli_epi32(_mm256_cvtepu8_epi32(eights[g]), 16));
      _mm256_storeu_si256((__m256i *)(words + count), _mm256_permutevar8x32_epi32(w, pick));
      count += __builtin_popcount(m);
      at = _mm256_add_epi32(at, eight);
    }
  }
  for (; k < n; k++)
    if (in[k]) words[count++] = (uint32_t)k | (uint32_t)in[k] << 16;
  return count;
}

/* Rows [m0, m1) of C from their lists (words[starts[i - m0], starts[i - m0 + 1])), every panel
 * of P; the padding after the `used` words is where idle slots step. (Segments of the
 * reduction, each panel's rows of B in L1 while every row passes, were slower: 3.29 -> 3.33-3.50
 * ms at 1 thread for MNIST's test set through 784 -> 30 on a Zen 3, with 2-5 segments.) */
NERVE_TARGET_AVX2 static void avx2_pixels_run(const pixels_nn_job *j, const float *P, uint32_t *words,
                                              int64_t used, const int64_t *starts, int64_t m0, int64_t m1) {
  memset(words + used, 0, NERVE_SPARSE_PAD * sizeof *words);
  for (int64_t col = 0; col < j->N; col += AVX2_LIST_PANEL) {
    const int64_t nr = j->N - col < AVX2_LIST_PANEL ? j->N - col : AVX2_LIST_PANEL;
    avx2_slots_any(avx2_list_vectors(nr), LIST_ROW_WORDS, words, j->palette, starts, starts + 1, used, 0,
                   m1 - m0, j->C + m0 * j->ldc + col, j->ldc, avx2_list_tail(nr), false,
                   j->bias ? j->bias + col : NULL, P + col, j->team.ldp);
  }
}

/* Member t: its copy of B, then chunks of tile_rows rows as it becomes free, listed as many rows
 * at a time as the words hold (each chain is its row's alone: any member, any chunk). */
NERVE_TARGET_AVX2 static void avx2_pixels_member(void *data, int t, int nt) {
  pixels_nn_job *j = data;
  const float *P = avx2_listed_copy(&j->team, t, j->B, j->ldb, j->K, j->N);
  uint32_t words[PIXELS_WORDS + NERVE_SPARSE_PAD];
  int64_t starts[SPARSE_ROWS + 1];
  int64_t a, b;
  while (avx2_listed_take(&j->team, nt, j->M, &a, &b)) {
    int64_t start = a;
    starts[0] = 0;
    for (int64_t m = a; m < b; m++) {
      int64_t used = starts[m - start];
      /* Room for a whole row and the 8 words its last store may write past it. */
      if (used + j->K + 8 > PIXELS_WORDS) {
        avx2_pixels_run(j, P, words, used, starts, start, m);
        start = m, starts[0] = used = 0;
      }
      starts[m - start + 1] = used + avx2_nonzero_pixels(j->A + m * j->lda, j->K, words + used);
    }
    avx2_pixels_run(j, P, words, starts[b - start], starts, start, b);
  }
}

/* The listed way with AVX2 (sparse bytes, at least AVX2_PIXELS_MIN_ROWS rows, K + 8 words in a
 * member's list): a team whose members each pad a copy of B and take rows as they become free. */
static nerve_status avx2_pixels_listed(nerve_context *ctx, pixels_nn_job *j, float scale, const char *func) {
  float palette[256];
  pixels_palette(palette, scale);
  j->palette = palette;
  int threads;
  nerve_status s = avx2_listed_team_init(ctx, &j->team, j->M, j->N, j->K, &threads, func);
  if (s != NERVE_OK) return s;
  nerve__parallel_team(threads, avx2_pixels_member, j);
  return NERVE_OK;
}
#endif

#if NERVE_X86
/*
 * The stored products over sparse rows of floats with AVX2, as the pixels' lists run: each
 * row's non-zero inputs listed (k and value, LIST_ENTRIES) and its chain run over its own list,
 * where the register tiles step over every column where any of their 6 rows is not zero (332 of
 * MNIST's 784, where an image has 151). For outputs of one panel (at most 32), at least
 * AVX2_PIXELS_MIN_ROWS rows, no more than a quarter of the first rows' inputs not zero, and finite
 * weights (a member whose copy of B holds an infinity or NaN runs its rows through the tiles).
 * The chains are the tiles' on the same steps, less the terms of zero inputs: a left-out +-0
 * changes a sum only where it is -0, and only to +0, so a row with a -0 among its outputs is
 * run again over every step, as a tile is; the bits are those of every step's chains, the
 * stored products' own. MNIST's test set through 784 -> 30 (floats, a C program over the C
 * API): 5.8-6.0 -> 4.6-4.7 ms at 1 thread, 3.0-3.7 -> 2.3-2.4 ms at 2 (Zen 3); reading the
 * 31 MB of floats bounds it where the bytes' path takes 3.2 and 1.6.
 */
typedef struct {
  float *C;
  int64_t ldc;
  const float *A;
  int64_t lda;
  const float *B;
  int64_t ldb;
  const float *bias;
  int64_t M, N, K;
  const nerve_context *ctx;
  const nerve__activation_step *then;
  avx2_listed_team team;
} rows_listed_job;

/* Entries a member lists at most before running them (64 KB of k and values on the stack). */
enum { AVX2_ROWS_ENTRIES = 8192 };

/* Row x's non-zero inputs among its first n (NaN counts, -0 does not), as k in ks and values
 * in vs, 8 columns a step (each 8 moved to the front by their mask's entry of avx2_picks);
 * returns how many. Each store writes 8, so up to 8 past the count. */
NERVE_TARGET_AVX2 static int64_t avx2_nonzero_entries(const float *x, int64_t n, int32_t *ks, float *vs) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  int64_t count = 0;
  for (int64_t k = 0; k < n; k += 8) {
    const __m256 v = nerve__avx2_load(x + k, n - k);
    const unsigned m = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ));
    const __m256i pick = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)&avx2_picks[m]));
    _mm256_storeu_si256((__m256i *)(ks + count),
                        _mm256_permutevar8x32_epi32(_mm256_add_epi32(lanes, _mm256_set1_epi32((int32_t)k)), pick));
    _mm256_storeu_ps(vs + count, _mm256_permutevar8x32_ps(v, pick));
    count += __builtin_popcount(m);
  }
  return count;
}

/* Row m of C over every step, as a tile that ends -0 runs again: from the bias (set in C
 * first) or 0, each k in order, B read where it is (avx2_nn_few's chains). */
NERVE_TARGET_AVX2 static void avx2_row_every_step(const rows_listed_job *j, int64_t m) {
  float *c = j->C + m * j->ldc;
  if (j->bias) memcpy(c, j->bias, (size_t)j->N * sizeof(float));
  avx2_nn_few(c, j->ldc, j->A + m * j->lda, j->lda, j->B, j->ldb, j->bias != NULL, 1, j->N, j->K);
}

/* Whether any of row's n outputs (n at most 32) is -0 (avx2_negative_zero's test). */
NERVE_TARGET_AVX2 static bool avx2_row_negative_zero(const float *row, int64_t n) {
  __m256 v[4];
  const int V = avx2_list_vectors(n);
  for (int i = 0; i < V; i++) v[i] = nerve__avx2_load(row + 8 * i, n - 8 * i);
  return avx2_negative_zero(v, V);
}

/* Rows [m0, m1) of C from their lists (ks, vs from starts[m - m0]), then those ending -0 over
 * every step, then the activation. */
NERVE_TARGET_AVX2 static void avx2_rows_listed_run(const rows_listed_job *j, const float *P, int32_t *ks,
                                                   float *vs, int64_t used, const int64_t *starts, int64_t m0,
                                                   int64_t m1) {
  memset(ks + used, 0, NERVE_SPARSE_PAD * sizeof *ks);
  memset(vs + used, 0, NERVE_SPARSE_PAD * sizeof *vs);
  avx2_slots_any(avx2_list_vectors(j->N), LIST_ENTRIES, ks, vs, starts, starts + 1, used, 0, m1 - m0,
                 j->C + m0 * j->ldc, j->ldc, avx2_list_tail(j->N), false, j->bias, P, j->team.ldp);
  for (int64_t m = m0; m < m1; m++)
    if (avx2_row_negative_zero(j->C + m * j->ldc, j->N)) avx2_row_every_step(j, m);
  nerve__activation_rows(j->then, j->C, j->ldc, j->N, m0, m1);
}

/* Member t: its copy of B, then chunks of rows as it becomes free, listed as many rows at a time
 * as the entries hold; through the tiles (nerve__gemm_nn_here) if its copy is not finite. */
NERVE_TARGET_AVX2 static void avx2_rows_listed_member(void *data, int t, int nt) {
  rows_listed_job *j = data;
  const float *P = avx2_listed_copy(&j->team, t, j->B, j->ldb, j->K, j->N);
  const bool finite = !avx2_not_finite(P, j->team.copy_floats);
  int32_t ks[AVX2_ROWS_ENTRIES + NERVE_SPARSE_PAD];
  float vs[AVX2_ROWS_ENTRIES + NERVE_SPARSE_PAD];
  int64_t starts[SPARSE_ROWS + 1];
  int64_t a, b;
  while (avx2_listed_take(&j->team, nt, j->M, &a, &b)) {
    if (!finite) {
      nerve__gemm_nn_here(j->ctx, j->C + a * j->ldc, j->ldc, j->A + a * j->lda, j->lda, j->B, j->ldb, j->bias,
                          b - a, j->N, j->K);
      nerve__activation_rows(j->then, j->C, j->ldc, j->N, a, b);
      continue;
    }
    int64_t start = a;
    starts[0] = 0;
    for (int64_t m = a; m < b; m++) {
      int64_t used = starts[m - start];
      /* Room for a whole row and the 8 entries its last stores may write past it. */
      if (used + j->K + 8 > AVX2_ROWS_ENTRIES) {
        avx2_rows_listed_run(j, P, ks, vs, used, starts, start, m);
        start = m, starts[0] = used = 0;
      }
      starts[m - start + 1] = used + avx2_nonzero_entries(j->A + m * j->lda, j->K, ks + used, vs + used);
    }
    avx2_rows_listed_run(j, P, ks, vs, starts[b - start], starts, start, b);
  }
}

/* Whether the first rows of A (up to 64) have at most a quarter of their inputs not zero
 * (stops counting once more are). Denser rows run faster through the register tiles, which
 * load each row of B once for 6 rows: with 45% of the inputs not zero (a ReLU's outputs),
 * 100 rows through 784 -> 30 took 64 us by the tiles and 101 by lists at 1 thread (Zen 3). */
static bool rows_sparse(const float *A, int64_t lda, int64_t M, int64_t K) {
  const int64_t rows = M < 64 ? M : 64, most = rows * K / 4;
  int64_t nonzero = 0;
  for (int64_t m = 0; m < rows && nonzero <= most; m++)
    for (int64_t k = 0; k < K; k++) nonzero += A[m * lda + k] != 0.0f;
  return nonzero <= most;
}

/* Whether C = A . B (+ bias) takes the listed rows: see rows_listed_job. */
static bool avx2_rows_listed(const nerve_context *ctx, const float *A, int64_t lda, bool b_transposed,
                             bool accumulate, int64_t M, int64_t N, int64_t K) {
  /* K >= 64: over fewer inputs the tiles have little to step over, and the probe would cost a
   * share of the product. A member's copy of B is then at most 8184 x 32 floats (1 MB). */
  return ctx->isa == NERVE_ISA_AVX2 && !b_transposed && !accumulate && M >= AVX2_PIXELS_MIN_ROWS &&
         N <= AVX2_LIST_PANEL && K >= 64 && K + 8 <= AVX2_ROWS_ENTRIES && rows_sparse(A, lda, M, K);
}

static nerve_status avx2_rows_listed_product(nerve_context *ctx, float *C, int64_t ldc, const float *A,
                                             int64_t lda, const float *B, int64_t ldb, const float *bias,
                                             int64_t M, int64_t N, int64_t K,
                                             const nerve__activation_step *then, const char *func) {
  rows_listed_job j = {.C = C, .ldc = ldc, .A = A, .lda = lda, .B = B, .ldb = ldb, .bias = bias, .M = M,
                       .N = N, .K = K, .ctx = ctx, .then = then};
  int threads;
  nerve_status s = avx2_listed_team_init(ctx, &j.team, M, N, K, &threads, func);
  if (s != NERVE_OK) return s;
  nerve__parallel_team(threads, avx2_rows_listed_member, &j);
  return NERVE_OK;
}
#endif

/* Rows a thread makes floats at a time where the bytes are not listed: NN_MC's chunk of the
 * stored products (each panel of B read once per chunk) and a whole number of the OpenBLAS
 * blocks (BLAS_MB), so the base kernels' blocks fall where they would on all rows. */
enum { PIXELS_ROWS = 128 };

typedef struct {
  const nerve_context *ctx;
  float *C;
  int64_t ldc;
  const uint8_t *A;
  int64_t lda;
  float scale;
  const float *B;
  int64_t ldb;
  const float *bias;
  int64_t M, N, K;
  float *x;     /* PIXELS_ROWS * K floats a thread */
  int64_t next; /* the first row no thread has taken (nerve__take_chunk) */
} pixels_floats_job;

/* Team member t: chunks of PIXELS_ROWS rows, taken as it becomes free, made floats in its own
 * part of the scratch and multiplied there (nerve__gemm_nn_here: the chains nerve__gemm_nn
 * computes, on this thread). */
static void pixels_floats_member(void *data, int t, int nt) {
  pixels_floats_job *j = data;
  (void)nt;
  float *x = j->x + (int64_t)t * PIXELS_ROWS * j->K;
  int64_t a, b;
  while (nerve__take_chunk(&j->next, PIXELS_ROWS, j->M, &a, &b)) {
    nerve__pixels_rows_here(j->ctx, x, j->A + a * j->lda, j->lda, b - a, j->K, j->scale);
    nerve__gemm_nn_here(j->ctx, j->C + a * j->ldc, j->ldc, x, j->K, j->B, j->ldb, j->bias, b - a,
                        j->N, j->K);
  }
}

/* The other way (dense bytes, neither AVX-512's nor AVX2's lists, or outputs too wide for
 * them): the rows made floats in the layer scratch, then the stored products on them; all at
 * once where there are too few rows to share out by chunks (the products then share panels
 * among the threads). */
static nerve_status pixels_as_floats(nerve_context *ctx, float *C, int64_t ldc, const uint8_t *A,
                                     int64_t lda, float scale, const float *B, int64_t ldb,
                                     const float *bias, int64_t M, int64_t N, int64_t K,
                                     const char *func) {
  const int threads = nerve__threads_for(ctx, M * N * (K > 0 ? K : 1), GEMM_GRAIN);
  if (M < 2 * PIXELS_ROWS * threads) {
    nerve_status s = nerve__scratch(ctx, NERVE_SCRATCH_LAYER, ((size_t)(M * K) + 1) * sizeof(float), func);
    if (s != NERVE_OK) return s;
    float *x = ctx->scratch[NERVE_SCRATCH_LAYER];
    nerve__pixels_rows_here(ctx, x, A, lda, M, K, scale);
    return nerve__gemm_nn(ctx, C, ldc, x, K, B, ldb, false, bias, false, M, N, K, func);
  }
  nerve_status s = nerve__scratch(ctx, NERVE_SCRATCH_LAYER,
                                  ((size_t)threads * PIXELS_ROWS * (size_t)K + 1) * sizeof(float), func);
  if (s != NERVE_OK) return s;
  pixels_floats_job j = {.ctx = ctx, .C = C, .ldc = ldc, .A = A, .lda = lda, .scale = scale,
                         .B = B, .ldb = ldb, .bias = bias, .M = M, .N = N, .K = K,
                         .x = ctx->scratch[NERVE_SCRATCH_LAYER]};
  nerve__parallel_team(threads, pixels_floats_member, &j);
  return NERVE_OK;
}

nerve_status nerve__pixels_nn(nerve_context *ctx, float *C, int64_t ldc, const uint8_t *A,
                              int64_t lda, float scale, const float *B, int64_t ldb,
                              const float *bias, int64_t M, int64_t N, int64_t K,
                              const char *func) {
  if (M == 0 || N == 0) return NERVE_OK;
#if NERVE_X86
  if (ctx->isa == NERVE_ISA_AVX512 && (N + NR - 1) / NR * NR <= PIXELS_MAX_LDB &&
      ldb <= PIXELS_MAX_LDB && !pixels_dense(A, lda, M, K)) {
    pixels_nn_job j = {.C = C, .ldc = ldc, .A = A, .lda = lda, .B = B, .ldb = ldb, .bias = bias,
                       .M = M, .N = N, .K = K};
    return pixels_listed(ctx, &j, scale, func);
  }
  if (ctx->isa == NERVE_ISA_AVX2 && M >= AVX2_PIXELS_MIN_ROWS && K + 8 <= PIXELS_WORDS &&
      K * avx2_list_ldp(N) <= AVX2_PIXELS_MAX_COPY &&
      !pixels_dense(A, lda, M, K)) {
    pixels_nn_job j = {.C = C, .ldc = ldc, .A = A, .lda = lda, .B = B, .ldb = ldb, .bias = bias,
                       .M = M, .N = N, .K = K};
    return avx2_pixels_listed(ctx, &j, scale, func);
  }
#endif
  return pixels_as_floats(ctx, C, ldc, A, lda, scale, B, ldb, bias, M, N, K, func);
}
