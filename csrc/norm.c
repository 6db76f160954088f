/*
 * norm.c: batch normalisation over rows, per column.
 *   R rows (the batch for dense activations; batch * height * width for channels-last images),
 *   C columns (features or channels). in/out [R,C]; gamma, beta, means and variances [C].
 * Training uses the batch's mean and (biased) variance and updates running averages, Keras's
 * way: running = momentum * running + (1 - momentum) * batch value (the running variance takes
 * the unbiased batch variance). Inference uses the running averages.
 * Column statistics are summed over fixed chunks of rows, chunk by chunk, so they do not depend
 * on the thread count.
 */
#include "internal.h"

#if NERVE_X86
#  include <immintrin.h>
#endif

enum { NORM_MAX_CHUNKS = 256, NORM_MIN_ROWS = 256 };

/* Backward from a max pool's gradient (nerve_batchnorm_backward_maxpool2d): dy, the pool's
 * input gradient, made a pixel at a time from the pool's output gradient and winners. */
typedef struct {
  const float *dout;
  const int32_t *argmax;
  const int64_t *owner; /* nerve__maxpool_owners's table */
  int64_t H, W, OH, OW;
} pooled_grad;

typedef struct {
  const float *x, *dy, *mean, *invstd, *gamma, *beta;
  const pooled_grad *pool; /* backward: dy made from a max pool's gradient instead */
  float *y;                   /* out (forward) or din (backward) */
  double *partial, *partial2; /* [chunks][C] */
  const float *sums;          /* backward: [3C]: column sums of dy, then of dy * xhat, then
                               * gamma * invstd / R (each row's factor, no division a row) */
  int64_t R, C, chunk;
  bool relu; /* backward: din also through the ReLU whose output is x (zero where x <= 0) */
  bool streams; /* backward: din may be streamed (norm_dx_streamed_avx512) */
} norm_job;

/* Rows ahead of the row loops that the kernels ask the caches for (nerve__prefetch). */
enum { NORM_AHEAD = 16 };

/* The image, row and column of a pixel: row r of an [N*H*W, C] map. */
typedef struct {
  int64_t n, ih, iw;
} pixel;

NERVE_INLINE pixel pixel_of(const pooled_grad *p, int64_t r) {
  return (pixel){.n = r / (p->H * p->W), .ih = r / p->W % p->H, .iw = r % p->W};
}

/* The pixel of the next row (no division: the row loops step through the map). */
NERVE_INLINE void next_pixel(const pooled_grad *p, pixel *at) {
  if (++at->iw < p->W) return;
  at->iw = 0;
  if (++at->ih < p->H) return;
  at->ih = 0;
  at->n++;
}

/* Where a pixel's dy comes from: the one window covering it, its gradient g and winners am
 * (from channel 0), and pos, the pixel's position; or, where no window covers it, pos -1,
 * which no winner equals (g and am then point at the first window). */
typedef struct {
  const float *g;
  const int32_t *am;
  int32_t pos;
} pixel_source;

NERVE_INLINE pixel_source source_of(const norm_job *j, pixel at) {
  const pooled_grad *p = j->pool;
  const int64_t oh = p->owner[at.ih], ow = p->owner[p->H + at.iw];
  if (oh < 0 || ow < 0) return (pixel_source){.g = p->dout, .am = p->argmax, .pos = -1};
  const int64_t o = ((at.n * p->OH + oh) * p->OW + ow) * j->C;
  return (pixel_source){.g = p->dout + o, .am = p->argmax + o, .pos = (int32_t)(at.ih * p->W + at.iw)};
}

/* Asks for the gradient and winners of the windows about NORM_AHEAD pixels on (two pixels a
 * window across, for the common 2x2): they come from memory, not from the caches. */
NERVE_INLINE void prefetch_source(pixel_source src, int64_t C) {
  nerve__prefetch(src.am + NORM_AHEAD / 2 * C, C * (int64_t)sizeof(int32_t), false);
  nerve__prefetch(src.g + NORM_AHEAD / 2 * C, C * (int64_t)sizeof(float), false);
}

static int64_t chunk_rows(int64_t R) {
  int64_t c = (R + NORM_MAX_CHUNKS - 1) / NORM_MAX_CHUNKS;
  return c < NORM_MIN_ROWS ? NORM_MIN_ROWS : c;
}

/* Rows [*r0, *r1) of chunk k. */
static void chunk_range(const norm_job *j, int64_t k, int64_t *r0, int64_t *r1) {
  *r0 = k * j->chunk;
  *r1 = (k + 1) * j->chunk < j->R ? (k + 1) * j->chunk : j->R;
}

static nerve_status check_norm(nerve_context *ctx, int64_t R, int64_t C, const char *func) {
  if (R < 0 || C < 0) return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "negative size (R=%lld, C=%lld)", (long long)R, (long long)C);
  if (!nerve__product_ok(R, C)) return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "R*C too large");
  return NERVE_OK;
}

/* partial[k][c] = sum over chunk k's rows of x (pass 1) or (x - mean)^2 (pass 2). */
static void column_sums(void *data, int64_t k0, int64_t k1) {
  norm_job *j = data;
  const int64_t C = j->C;
  for (int64_t k = k0; k < k1; k++) {
    double *p = j->partial + k * C;
    for (int64_t c = 0; c < C; c++) p[c] = 0.0;
    int64_t r0, r1;
    chunk_range(j, k, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
      const float *x = j->x + r * C;
      if (j->mean)
        for (int64_t c = 0; c < C; c++) {
          double d = (double)x[c] - j->mean[c];
          p[c] += d * d;
        }
      else
        for (int64_t c = 0; c < C; c++) p[c] += x[c];
    }
  }
}

#if NERVE_X86
/* The lanes of columns [c0, c0 + 32) of C, as four blocks of 8 (none past C). */
NERVE_INLINE void lanes32(int64_t C, int64_t c0, __mmask8 m[4]) {
  for (int q = 0; q < 4; q++) {
    const int64_t left = C - c0 - 8 * q;
    m[q] = left >= 8 ? (__mmask8)0xFF : left > 0 ? (__mmask8)((1u << left) - 1u) : 0;
  }
}

/* column_sums with 32 columns a pass (four chains of 8 doubles); each column's sum takes the
 * rows in the same order with the same roundings (the square and the sum separately rounded,
 * as the baseline scalar loop has them), so the statistics are the same bits. That holds as
 * clang compiles it (the Swift package); gcc in its GNU modes may fuse the two into one FMA. */
NERVE_TARGET_AVX512 static void column_sums_avx512(void *data, int64_t k0, int64_t k1) {
  norm_job *j = data;
  const int64_t C = j->C;
  for (int64_t k = k0; k < k1; k++) {
    double *p = j->partial + k * C;
    int64_t r0, r1;
    chunk_range(j, k, &r0, &r1);
    for (int64_t c0 = 0; c0 < C; c0 += 32) {
      __mmask8 m[4];
      __m512d acc[4], mean[4];
      lanes32(C, c0, m);
      for (int q = 0; q < 4; q++) {
        acc[q] = _mm512_setzero_pd();
        mean[q] = j->mean ? _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m[q], j->mean + c0 + 8 * q)) : acc[q];
      }
      for (int64_t r = r0; r < r1; r++) {
        nerve__prefetch(j->x + (r + NORM_AHEAD) * C + c0, 32 * (int64_t)sizeof(float), false);
        for (int q = 0; q < 4; q++) {
          const __m512d x = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m[q], j->x + r * C + c0 + 8 * q));
          if (j->mean) {
            const __m512d d = _mm512_sub_pd(x, mean[q]);
            acc[q] = _mm512_add_pd(acc[q], _mm512_mul_pd(d, d));
          } else {
            acc[q] = _mm512_add_pd(acc[q], x);
          }
        }
      }
      for (int q = 0; q < 4; q++) _mm512_mask_storeu_pd(p + c0 + 8 * q, m[q], acc[q]);
    }
  }
}

/* Floats of x at columns [c, c + n) of a row (n up to 4; the lanes past n read as 0). */
NERVE_TARGET_AVX2 NERVE_INLINE __m256d avx2_doubles4(const float *x, int64_t n) {
  const __m128 v = n >= 4 ? _mm_loadu_ps(x) : _mm_maskload_ps(x, _mm256_castsi256_si128(nerve__avx2_lanes(n)));
  return _mm256_cvtps_pd(v);
}

/* One pass of column_sums_avx2 over rows [r0, r1) and columns [c0, c0 + 4 Q) (Q chains of 4
 * doubles; n[q] of chain q's columns, 0 to 4, the lanes past them read as 0) into p + c0. The
 * empty asm keeps the square a rounded value of its own, so no compiler fuses it into the sum
 * (gcc would, targeting FMA). */
NERVE_TARGET_AVX2 NERVE_INLINE void avx2_column_pass(const int Q, const norm_job *j, int64_t r0, int64_t r1,
                                                     int64_t c0, const int64_t *n, double *p) {
  const int64_t C = j->C;
  __m256d acc[8], mean[8];
#  pragma GCC unroll 8
  for (int q = 0; q < Q; q++) {
    acc[q] = _mm256_setzero_pd();
    mean[q] = j->mean && n[q] > 0 ? avx2_doubles4(j->mean + c0 + 4 * q, n[q]) : acc[q];
  }
  for (int64_t r = r0; r < r1; r++) {
    const float *x = j->x + r * C + c0;
    nerve__prefetch(x + NORM_AHEAD * C, 4 * Q * (int64_t)sizeof(float), false);
#  pragma GCC unroll 8
    for (int q = 0; q < Q; q++) {
      const __m256d v = avx2_doubles4(x + 4 * q, n[q]);
      if (j->mean) {
        const __m256d d = _mm256_sub_pd(v, mean[q]);
        __m256d square = _mm256_mul_pd(d, d);
        __asm__("" : "+x"(square));
        acc[q] = _mm256_add_pd(acc[q], square);
      } else {
        acc[q] = _mm256_add_pd(acc[q], v);
      }
    }
  }
  double sums[32];
#  pragma GCC unroll 8
  for (int q = 0; q < Q; q++) _mm256_storeu_pd(sums + 4 * q, acc[q]);
  for (int q = 0; q < Q; q++)
    for (int64_t c = 0; c < n[q]; c++) p[c0 + 4 * q + c] = sums[4 * q + c];
}

/* column_sums with up to 32 columns a pass (eight chains of 4 doubles, each column's sum over
 * the chunk's rows in order: the same bits as the baseline loop). AVX2 machines ran the
 * baseline copy (two doubles a vector): Lab E's statistics (25,088 rows x 32 channels,
 * SwiftPM's flags) 0.42-0.48 -> 0.37-0.41 ms at 1 thread, 0.24 -> 0.20-0.23 ms at 2
 * (bench/lab_e_step.c, alternated), with 16 columns a pass. 32 a pass read each row once,
 * in one pass of its own, with half the loop's overhead a column: 0.40 -> 0.25 ms at 1
 * thread, 0.31 -> 0.18 at 2 (gcc's build, the maps just written; Zen 3). */
NERVE_TARGET_AVX2 static void column_sums_avx2(void *data, int64_t k0, int64_t k1) {
  norm_job *j = data;
  const int64_t C = j->C;
  for (int64_t k = k0; k < k1; k++) {
    double *p = j->partial + k * C;
    int64_t r0, r1;
    chunk_range(j, k, &r0, &r1);
    for (int64_t c0 = 0; c0 < C; c0 += 32) {
      const int64_t cols = C - c0 < 32 ? C - c0 : 32;
      int64_t n[8];
      for (int q = 0; q < 8; q++) n[q] = cols - 4 * q < 0 ? 0 : cols - 4 * q > 4 ? 4 : cols - 4 * q;
      if (cols > 16) avx2_column_pass(8, j, r0, r1, c0, n, p);
      else avx2_column_pass(4, j, r0, r1, c0, n, p);
    }
  }
}
#endif

/* The column sums for ctx's instruction set. */
static nerve__range_fn column_sums_for(const nerve_context *ctx) {
#if NERVE_X86
  if (ctx->isa == NERVE_ISA_AVX2) return column_sums_avx2;
#endif
  return NERVE_AVX512_OR(ctx, column_sums_avx512, column_sums);
}

/* Adds the chunk partials in chunk order into out[c]. */
static void combine(const double *partial, int64_t chunks, int64_t C, double *out) {
  for (int64_t c = 0; c < C; c++) out[c] = 0.0;
  for (int64_t k = 0; k < chunks; k++)
    for (int64_t c = 0; c < C; c++) out[c] += partial[k * C + c];
}

NERVE_INLINE void normalize_body(void *data, int64_t r0, int64_t r1) {
  norm_job *j = data;
  const int64_t C = j->C;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = j->x + r * C;
    float *y = j->y + r * C;
    nerve__prefetch(x + NORM_AHEAD * C, C * (int64_t)sizeof(float), false);
    nerve__prefetch(y + NORM_AHEAD * C, C * (int64_t)sizeof(float), true);
    /* In place (inference plans normalise so) as a loop of its own, as NERVE_MAP spells it:
     * with x == y clang's overlap check would send the one loop down its scalar path. */
    if (x == y) {
      for (int64_t c = 0; c < C; c++)
        y[c] = nerve__batchnorm_value(y[c], j->mean[c], j->invstd[c], j->gamma[c], j->beta[c]);
      continue;
    }
    for (int64_t c = 0; c < C; c++) y[c] = nerve__batchnorm_value(x[c], j->mean[c], j->invstd[c], j->gamma[c], j->beta[c]);
  }
}
NERVE_RANGE_KERNEL(normalize);

#if NERVE_X86
/* normalize_body with the formula as nerve__batchnorm_value16 spells it, as the max pool that
 * normalises its inputs does (nerve_maxpool2d_forward_normalized): the same bits from any
 * compiler, whatever it would contract. */
NERVE_TARGET_AVX512 static void normalize_rows_avx512(void *data, int64_t r0, int64_t r1) {
  norm_job *j = data;
  const int64_t C = j->C;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = j->x + r * C;
    float *y = j->y + r * C;
    nerve__prefetch(x + NORM_AHEAD * C, C * (int64_t)sizeof(float), false);
    nerve__prefetch(y + NORM_AHEAD * C, C * (int64_t)sizeof(float), true);
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
      const __mmask16 m = nerve__lanes16(C - c0);
      const __m512 v = nerve__batchnorm_value16(
          _mm512_maskz_loadu_ps(m, x + c0), _mm512_maskz_loadu_ps(m, j->mean + c0), _mm512_maskz_loadu_ps(m, j->invstd + c0),
          _mm512_maskz_loadu_ps(m, j->gamma + c0), _mm512_maskz_loadu_ps(m, j->beta + c0));
      _mm512_mask_storeu_ps(y + c0, m, v);
    }
  }
}
#endif

/* Rows [r0, r1) of out for ctx. */
static nerve__range_fn normalize_for(const nerve_context *ctx) {
  return NERVE_AVX512_OR(ctx, normalize_rows_avx512, normalize_isa[ctx->isa]);
}

/*
 * in [R,C], gamma [C], beta [C] -> out [R,C] (skipped if NULL), saved_mean [C], saved_invstd [C];
 * running_mean, running_var [C] updated
 */
nerve_status nerve_batchnorm_forward_train(nerve_context *ctx, float *out, float *saved_mean,
                                           float *saved_invstd, float *running_mean,
                                           float *running_var, const float *in,
                                           const float *gamma, const float *beta, int64_t R,
                                           int64_t C, float momentum, float eps) {
  NERVE_CHECK_CTX(ctx);
  nerve_status s = check_norm(ctx, R, C, __func__);
  if (s != NERVE_OK) return s;
  if (!(momentum >= 0.0f && momentum <= 1.0f))
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, __func__, "momentum must be in [0, 1], got %g", (double)momentum);
  if (!(eps > 0.0f) || eps > 1e30f)
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, __func__, "eps must be positive, got %g", (double)eps);
  if (R == 0 || C == 0) return NERVE_OK;
  NERVE_CHECK_PTR(ctx, saved_mean);
  NERVE_CHECK_PTR(ctx, saved_invstd);
  NERVE_CHECK_PTR(ctx, running_mean);
  NERVE_CHECK_PTR(ctx, running_var);
  NERVE_CHECK_PTR(ctx, in);
  NERVE_CHECK_PTR(ctx, gamma);
  NERVE_CHECK_PTR(ctx, beta);
  const int64_t chunk = chunk_rows(R), chunks = (R + chunk - 1) / chunk;
  s = nerve__scratch(ctx, NERVE_SCRATCH_LAYER, (size_t)(chunks + 1) * (size_t)C * sizeof(double), __func__);
  if (s != NERVE_OK) return s;
  double *partial = ctx->scratch[NERVE_SCRATCH_LAYER], *total = partial + chunks * C;
  norm_job j = {.x = in, .gamma = gamma, .beta = beta, .y = out, .partial = partial, .R = R, .C = C, .chunk = chunk};
  const int64_t grain = (1 << 15) / (chunk * C) + 1;
  nerve__parallel_for(ctx, chunks, grain, column_sums_for(ctx), &j);
  combine(partial, chunks, C, total);
  for (int64_t c = 0; c < C; c++) saved_mean[c] = (float)(total[c] / (double)R);
  j.mean = saved_mean;
  nerve__parallel_for(ctx, chunks, grain, column_sums_for(ctx), &j);
  combine(partial, chunks, C, total);
  for (int64_t c = 0; c < C; c++) {
    double var = total[c] / (double)R;
    saved_invstd[c] = (float)(1.0 / sqrt(var + (double)eps));
    double unbiased = R > 1 ? total[c] / (double)(R - 1) : var;
    running_mean[c] = momentum * running_mean[c] + (1.0f - momentum) * saved_mean[c];
    running_var[c] = momentum * running_var[c] + (1.0f - momentum) * (float)unbiased;
  }
  j.invstd = saved_invstd;
  if (out) nerve__parallel_for(ctx, R, (1 << 15) / C + 1, normalize_for(ctx), &j);
  return NERVE_OK;
}

/*
 * in [R,C], gamma, beta, running_mean, running_var [C] -> out [R,C]
 */
nerve_status nerve_batchnorm_forward_infer(nerve_context *ctx, float *out, const float *in,
                                           const float *gamma, const float *beta,
                                           const float *running_mean, const float *running_var,
                                           int64_t R, int64_t C, float eps) {
  NERVE_CHECK_CTX(ctx);
  nerve_status s = check_norm(ctx, R, C, __func__);
  if (s != NERVE_OK) return s;
  if (!(eps > 0.0f) || eps > 1e30f)
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, __func__, "eps must be positive, got %g", (double)eps);
  if (R == 0 || C == 0) return NERVE_OK;
  NERVE_CHECK_PTR(ctx, out);
  NERVE_CHECK_PTR(ctx, in);
  NERVE_CHECK_PTR(ctx, gamma);
  NERVE_CHECK_PTR(ctx, beta);
  NERVE_CHECK_PTR(ctx, running_mean);
  NERVE_CHECK_PTR(ctx, running_var);
  s = nerve__scratch(ctx, NERVE_SCRATCH_LAYER, (size_t)C * sizeof(float), __func__);
  if (s != NERVE_OK) return s;
  float *invstd = ctx->scratch[NERVE_SCRATCH_LAYER];
  for (int64_t c = 0; c < C; c++) invstd[c] = (float)(1.0 / sqrt((double)running_var[c] + (double)eps));
  norm_job j = {.x = in, .mean = running_mean, .invstd = invstd, .gamma = gamma, .beta = beta, .y = out, .R = R, .C = C};
  nerve__parallel_for(ctx, R, (1 << 15) / C + 1, normalize_for(ctx), &j);
  return NERVE_OK;
}

/* Channels [c0, C) of one row's terms added to p (dy) and q (dy * xhat); dy from src if pooled. */
NERVE_INLINE void grad_sums_row(const norm_job *j, double *p, double *q, const float *x, const float *dy,
                                pixel_source src, int64_t c0, bool pooled) {
  for (int64_t c = c0; c < j->C; c++) {
    const float d = pooled ? nerve__maxpool_grad_value(src.am[c], src.pos, src.g[c]) : dy[c];
    p[c] += d;
    q[c] += (double)d * ((x[c] - j->mean[c]) * j->invstd[c]);
  }
}

/* Channels [c0, C) of p and q, the sums over rows [r0, r1) (grad_sums_row, from 0). */
NERVE_INLINE void grad_sums_rows(const norm_job *j, double *p, double *q, int64_t r0, int64_t r1, int64_t c0,
                                 bool pooled) {
  const int64_t C = j->C;
  for (int64_t c = c0; c < C; c++) p[c] = q[c] = 0.0;
  pixel at = pooled ? pixel_of(j->pool, r0) : (pixel){0, 0, 0};
  for (int64_t r = r0; r < r1; r++) {
    const pixel_source src = pooled ? source_of(j, at) : (pixel_source){0};
    grad_sums_row(j, p, q, j->x + r * C, pooled ? NULL : j->dy + r * C, src, c0, pooled);
    if (pooled) next_pixel(j->pool, &at);
  }
}

/* partial[k][c] = sum of dy, partial2[k][c] = sum of dy * xhat over chunk k; dy made from a
 * pool's gradient if pooled. */
NERVE_INLINE void grad_sums_chunks(norm_job *j, int64_t k0, int64_t k1, bool pooled) {
  for (int64_t k = k0; k < k1; k++) {
    int64_t r0, r1;
    chunk_range(j, k, &r0, &r1);
    grad_sums_rows(j, j->partial + k * j->C, j->partial2 + k * j->C, r0, r1, 0, pooled);
  }
}

static void grad_sums(void *data, int64_t k0, int64_t k1) {
  norm_job *j = data;
  if (j->pool)
    grad_sums_chunks(j, k0, k1, true);
  else
    grad_sums_chunks(j, k0, k1, false);
}

#if NERVE_X86
/* Channels [c0, c0 + 4 G) of chunk k's sums (rows [r0, r1)) with AVX2, 4 channels a vector of
 * doubles, each vector's two sums held in registers down the rows, as grad_sums_chunks adds
 * them, then stored to p + c0 and q + c0. Held in memory, each row's sums were loaded after
 * the row before stored them, 16 stores a row of 32 channels: Lab E's backward through its
 * pool and batch norm (32 x 28 x 28 x 32) took 0.83-0.87 -> 0.74-0.77 ms at 1 thread, 0.61-0.85
 * -> 0.49-0.56 at 2 with the sums in registers and the rows fetched ahead (Zen 3). */
NERVE_TARGET_AVX2 NERVE_INLINE void avx2_grad_sums_block(const int G, const norm_job *j, int64_t r0, int64_t r1,
                                                         int64_t c0, double *p, double *q, const bool pooled) {
  const int64_t C = j->C;
  __m256d sum[4], sum_x[4];
  __m128 mean[4], invstd[4];
#  pragma GCC unroll 4
  for (int g = 0; g < G; g++) {
    sum[g] = sum_x[g] = _mm256_setzero_pd();
    mean[g] = _mm_loadu_ps(j->mean + c0 + 4 * g), invstd[g] = _mm_loadu_ps(j->invstd + c0 + 4 * g);
  }
  pixel at = pooled ? pixel_of(j->pool, r0) : (pixel){0, 0, 0};
  for (int64_t r = r0; r < r1; r++) {
    const float *x = j->x + r * C + c0, *dy = pooled ? NULL : j->dy + r * C + c0;
    const pixel_source src = pooled ? source_of(j, at) : (pixel_source){0};
    const __m128i pos = _mm_set1_epi32(src.pos);
    nerve__prefetch(x + NORM_AHEAD * C, 4 * G * (int64_t)sizeof(float), false);
    if (!pooled) nerve__prefetch(dy + NORM_AHEAD * C, 4 * G * (int64_t)sizeof(float), false);
#  pragma GCC unroll 4
    for (int g = 0; g < G; g++) {
      __m128 d;
      if (pooled) {
        const __m128 won =
            _mm_castsi128_ps(_mm_cmpeq_epi32(_mm_loadu_si128((const __m128i *)(src.am + c0 + 4 * g)), pos));
        d = _mm_add_ps(_mm_setzero_ps(), _mm_and_ps(won, _mm_loadu_ps(src.g + c0 + 4 * g)));
      } else {
        d = _mm_loadu_ps(dy + 4 * g);
      }
      const __m128 xhat = _mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(x + 4 * g), mean[g]), invstd[g]);
      const __m256d dd = _mm256_cvtps_pd(d);
      sum[g] = _mm256_add_pd(sum[g], dd);
      sum_x[g] = _mm256_fmadd_pd(dd, _mm256_cvtps_pd(xhat), sum_x[g]);
    }
    if (pooled) next_pixel(j->pool, &at);
  }
#  pragma GCC unroll 4
  for (int g = 0; g < G; g++) {
    _mm256_storeu_pd(p + c0 + 4 * g, sum[g]);
    _mm256_storeu_pd(q + c0 + 4 * g, sum_x[g]);
  }
}

/* grad_sums_chunks in AVX2 intrinsics (the compilers left the pooled loop scalar): blocks of 16
 * channels (avx2_grad_sums_block), then the last C % 4 as grad_sums_chunks has them. */
NERVE_TARGET_AVX2 NERVE_INLINE void grad_sums_chunks_avx2(norm_job *j, int64_t k0, int64_t k1,
                                                          const bool pooled) {
  const int64_t C = j->C, C4 = C & ~(int64_t)3;
  for (int64_t k = k0; k < k1; k++) {
    double *p = j->partial + k * C, *q = j->partial2 + k * C;
    int64_t r0, r1;
    chunk_range(j, k, &r0, &r1);
    for (int64_t c0 = 0; c0 < C4; c0 += 16) {
      switch ((C4 - c0) / 4) {
        case 1: avx2_grad_sums_block(1, j, r0, r1, c0, p, q, pooled); break;
        case 2: avx2_grad_sums_block(2, j, r0, r1, c0, p, q, pooled); break;
        case 3: avx2_grad_sums_block(3, j, r0, r1, c0, p, q, pooled); break;
        default: avx2_grad_sums_block(4, j, r0, r1, c0, p, q, pooled); break;
      }
    }
    if (C4 < C) grad_sums_rows(j, p, q, r0, r1, C4, pooled);
  }
}

NERVE_TARGET_AVX2 static void grad_sums_avx2(void *data, int64_t k0, int64_t k1) {
  norm_job *j = data;
  if (j->pool)
    grad_sums_chunks_avx2(j, k0, k1, true);
  else
    grad_sums_chunks_avx2(j, k0, k1, false);
}
#endif

#if NERVE_X86
/* nerve__maxpool_grad_value for lanes m of the 8 channels from c: 0 + (won ? g : 0). */
NERVE_TARGET_AVX512 NERVE_INLINE __m256 pooled_dy8(pixel_source src, int64_t c, __mmask8 m) {
  const __mmask8 won = _mm256_mask_cmpeq_epi32_mask(m, _mm256_maskz_loadu_epi32(m, src.am + c), _mm256_set1_epi32(src.pos));
  return _mm256_add_ps(_mm256_setzero_ps(), _mm256_maskz_loadu_ps(won, src.g + c));
}

/* grad_sums with 32 columns a pass, each sum in the same order and roundings (see
 * column_sums_avx512): xhat in float, its product with dy and the sum in double. */
NERVE_TARGET_AVX512 NERVE_INLINE void grad_sums_avx512_chunks(norm_job *j, int64_t k0, int64_t k1, bool pooled) {
  const int64_t C = j->C;
  for (int64_t k = k0; k < k1; k++) {
    double *p = j->partial + k * C, *q2 = j->partial2 + k * C;
    int64_t r0, r1;
    chunk_range(j, k, &r0, &r1);
    for (int64_t c0 = 0; c0 < C; c0 += 32) {
      __mmask8 m[4];
      __m256 mean[4], invstd[4];
      __m512d sum[4], sum2[4];
      lanes32(C, c0, m);
      for (int q = 0; q < 4; q++) {
        mean[q] = _mm256_maskz_loadu_ps(m[q], j->mean + c0 + 8 * q);
        invstd[q] = _mm256_maskz_loadu_ps(m[q], j->invstd + c0 + 8 * q);
        sum[q] = sum2[q] = _mm512_setzero_pd();
      }
      pixel at = pooled ? pixel_of(j->pool, r0) : (pixel){0, 0, 0};
      for (int64_t r = r0; r < r1; r++) {
        if (!pooled) nerve__prefetch(j->dy + (r + NORM_AHEAD) * C + c0, 32 * (int64_t)sizeof(float), false);
        nerve__prefetch(j->x + (r + NORM_AHEAD) * C + c0, 32 * (int64_t)sizeof(float), false);
        const pixel_source src = pooled ? source_of(j, at) : (pixel_source){0};
        if (pooled) {
          if (c0 == 0) prefetch_source(src, C);
          next_pixel(j->pool, &at);
        }
        for (int q = 0; q < 4; q++) {
          const int64_t c = c0 + 8 * q;
          const __m256 dy = pooled ? pooled_dy8(src, c, m[q]) : _mm256_maskz_loadu_ps(m[q], j->dy + r * C + c);
          const __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskz_loadu_ps(m[q], j->x + r * C + c), mean[q]), invstd[q]);
          const __m512d dyd = _mm512_cvtps_pd(dy);
          sum[q] = _mm512_add_pd(sum[q], dyd);
          sum2[q] = _mm512_add_pd(sum2[q], _mm512_mul_pd(dyd, _mm512_cvtps_pd(xhat)));
        }
      }
      for (int q = 0; q < 4; q++) {
        _mm512_mask_storeu_pd(p + c0 + 8 * q, m[q], sum[q]);
        _mm512_mask_storeu_pd(q2 + c0 + 8 * q, m[q], sum2[q]);
      }
    }
  }
}

NERVE_TARGET_AVX512 static void grad_sums_avx512(void *data, int64_t k0, int64_t k1) {
  norm_job *j = data;
  if (j->pool)
    grad_sums_avx512_chunks(j, k0, k1, true);
  else
    grad_sums_avx512_chunks(j, k0, k1, false);
}
#endif

/* Rows [r0, r1) of din, written from dx on (j->y + r0 * C, or a buffer that many rows long
 * when `buffered`, which asks for no lines of din); relu and pooled constants at each call
 * below, so each gets its own loop. pooled: dy made from a pool's gradient. */
NERVE_INLINE void norm_dx_rows(const norm_job *j, float *dx, int64_t r0, int64_t r1, bool relu, bool pooled,
                               bool buffered) {
  const int64_t C = j->C;
  const float rows = (float)j->R;
  /* factor: gamma * invstd / R, made once a channel (no division an element). */
  const float *sum_dy = j->sums, *sum_dyx = j->sums + C, *factor = j->sums + 2 * C;
  const float *mean = j->mean, *invstd = j->invstd;
  pixel at = pooled ? pixel_of(j->pool, r0) : (pixel){0, 0, 0};
  for (int64_t r = r0; r < r1; r++, dx += C) {
    const float *x = j->x + r * C;
    nerve__prefetch(x + NORM_AHEAD * C, C * (int64_t)sizeof(float), false);
    if (!pooled) nerve__prefetch(j->dy + (r + NORM_AHEAD) * C, C * (int64_t)sizeof(float), false);
    if (!buffered) nerve__prefetch(dx + NORM_AHEAD * C, C * (int64_t)sizeof(float), true);
    const float *dy = pooled ? NULL : j->dy + r * C; /* pooled: dout is the pool's, smaller */
    const pixel_source src = pooled ? source_of(j, at) : (pixel_source){0};
    if (pooled) prefetch_source(src, C);
    for (int64_t c = 0; c < C; c++) {
      const float g = pooled ? nerve__maxpool_grad_value(src.am[c], src.pos, src.g[c]) : dy[c];
      float xhat = (x[c] - mean[c]) * invstd[c];
      float d = factor[c] * (rows * g - sum_dy[c] - xhat * sum_dyx[c]);
      /* With relu, on through the ReLU whose output is x, as nerve_activation_backward's. */
      dx[c] = relu ? nerve__relu_grad(d, x[c]) : d;
    }
    if (pooled) next_pixel(j->pool, &at);
  }
}

/* norm_dx_rows for j's relu and pool. */
NERVE_INLINE void norm_dx_into(const norm_job *j, float *dx, int64_t r0, int64_t r1, bool buffered) {
  if (j->pool) {
    if (j->relu)
      norm_dx_rows(j, dx, r0, r1, true, true, buffered);
    else
      norm_dx_rows(j, dx, r0, r1, false, true, buffered);
  } else if (j->relu) {
    norm_dx_rows(j, dx, r0, r1, true, false, buffered);
  } else {
    norm_dx_rows(j, dx, r0, r1, false, false, buffered);
  }
}

NERVE_INLINE void norm_dx_body(void *data, int64_t r0, int64_t r1) {
  const norm_job *j = data;
  norm_dx_into(j, j->y + r0 * j->C, r0, r1, false);
}
NERVE_RANGE_KERNEL(norm_dx);

/* Floats of din norm_dx_streamed_avx512 makes at a time, in L1. */
enum { NORM_STREAM_FLOATS = 1024 };

#if NERVE_X86
/*
 * norm_dx_rows in AVX2 intrinsics, 8 channels a vector (the rest as norm_dx_rows has them):
 * neither compiler vectorised the pooled loop (gcc saw its loads as control flow), and scalar
 * it took 8 ms of a Lab E step on a Zen 3. The multiply-adds are fused as gcc fuses the
 * scalar expression; the bits are AVX2's own, the same at any thread count.
 */
NERVE_TARGET_AVX2 NERVE_INLINE void norm_dx_rows_avx2(const norm_job *j, int64_t r0, int64_t r1,
                                                      const bool relu, const bool pooled) {
  const int64_t C = j->C, C8 = C & ~(int64_t)7;
  const float rows = (float)j->R;
  const float *sum_dy = j->sums, *sum_dyx = j->sums + C, *factor = j->sums + 2 * C;
  const __m256 vrows = _mm256_set1_ps(rows), zero = _mm256_setzero_ps();
  pixel at = pooled ? pixel_of(j->pool, r0) : (pixel){0, 0, 0};
  for (int64_t r = r0; r < r1; r++) {
    const float *x = j->x + r * C, *dy = pooled ? NULL : j->dy + r * C;
    float *dx = j->y + r * C;
    nerve__prefetch(x + NORM_AHEAD * C, C * (int64_t)sizeof(float), false);
    if (!pooled) nerve__prefetch(j->dy + (r + NORM_AHEAD) * C, C * (int64_t)sizeof(float), false);
    const pixel_source src = pooled ? source_of(j, at) : (pixel_source){0};
    if (pooled) prefetch_source(src, C);
    const __m256i pos = _mm256_set1_epi32(src.pos);
    for (int64_t c = 0; c < C8; c += 8) {
      __m256 g;
      if (pooled) {
        const __m256 won = _mm256_castsi256_ps(
            _mm256_cmpeq_epi32(_mm256_loadu_si256((const __m256i *)(src.am + c)), pos));
        g = _mm256_add_ps(zero, _mm256_and_ps(won, _mm256_loadu_ps(src.g + c)));
      } else {
        g = _mm256_loadu_ps(dy + c);
      }
      const __m256 xv = _mm256_loadu_ps(x + c);
      const __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(xv, _mm256_loadu_ps(j->mean + c)),
                                        _mm256_loadu_ps(j->invstd + c));
      const __m256 t = _mm256_fmsub_ps(vrows, g, _mm256_loadu_ps(sum_dy + c));
      __m256 d = _mm256_mul_ps(_mm256_loadu_ps(factor + c),
                               _mm256_fnmadd_ps(xhat, _mm256_loadu_ps(sum_dyx + c), t));
      if (relu) d = _mm256_and_ps(_mm256_cmp_ps(xv, zero, _CMP_GT_OQ), d);
      _mm256_storeu_ps(dx + c, d);
    }
    for (int64_t c = C8; c < C; c++) {
      const float g = pooled ? nerve__maxpool_grad_value(src.am[c], src.pos, src.g[c]) : dy[c];
      const float xhat = (x[c] - j->mean[c]) * j->invstd[c];
      const float d = factor[c] * (rows * g - sum_dy[c] - xhat * sum_dyx[c]);
      dx[c] = relu ? nerve__relu_grad(d, x[c]) : d;
    }
    if (pooled) next_pixel(j->pool, &at);
  }
}

NERVE_TARGET_AVX2 static void norm_dx_avx2_rows(void *data, int64_t r0, int64_t r1) {
  const norm_job *j = data;
  if (j->pool) {
    if (j->relu)
      norm_dx_rows_avx2(j, r0, r1, true, true);
    else
      norm_dx_rows_avx2(j, r0, r1, false, true);
  } else if (j->relu) {
    norm_dx_rows_avx2(j, r0, r1, true, false);
  } else {
    norm_dx_rows_avx2(j, r0, r1, false, false);
  }
}
#endif

#if NERVE_X86
/*
 * norm_dx for AVX-512 with din written by streaming stores: a few rows made in a buffer by the
 * same code, then streamed out (the same bits). Where a convolution's weight gradient follows
 * (Lab E), every member of its team reads every image of din, so in the next step most lines
 * of din that this member overwrites are also in the other core's cache, and an ordinary store
 * must take each back first (nerve__streams_rows). Only with a team, rows a multiple of 16
 * floats up to NORM_STREAM_FLOATS, din at a 64-byte boundary (streams_din).
 */
NERVE_TARGET_AVX512 static void norm_dx_streamed_avx512(void *data, int64_t r0, int64_t r1) {
  const norm_job *j = data;
  if (!j->streams || nerve__team_threads() < 2) {
    norm_dx_avx512(data, r0, r1);
    return;
  }
  const int64_t C = j->C, per = NORM_STREAM_FLOATS / C;
  float made[NORM_STREAM_FLOATS] __attribute__((aligned(64)));
  for (int64_t r = r0; r < r1; r += per) {
    const int64_t end = r1 - r < per ? r1 : r + per;
    norm_dx_into(j, made, r, end, true);
    float *dst = j->y + r * C;
    for (int64_t i = 0; i < (end - r) * C; i += 16) _mm512_stream_ps(dst + i, _mm512_load_ps(made + i));
  }
  _mm_sfence(); /* din seen by whoever reads it next */
}
#endif

/* Rows of din a thread is worth starting for. */
static int64_t norm_dx_grain(int64_t C) { return (1 << 15) / C + 1; }

/* The sums of dy and dy * xhat for ctx's instruction set. */
static nerve__range_fn grad_sums_for(const nerve_context *ctx) {
#if NERVE_X86
  if (ctx->isa == NERVE_ISA_AVX2) return grad_sums_avx2;
#endif
  return NERVE_AVX512_OR(ctx, grad_sums_avx512, grad_sums);
}

/* The input gradient's rows for ctx's instruction set (AVX-512's streamed where they may be). */
static nerve__range_fn norm_dx_for(const nerve_context *ctx) {
#if NERVE_X86
  if (ctx->isa == NERVE_ISA_AVX2) return norm_dx_avx2_rows;
#endif
  return NERVE_AVX512_OR(ctx, norm_dx_streamed_avx512, norm_dx_isa[ctx->isa]);
}

/*
 * Whether the backward's team writes din by streaming stores (norm_dx_streamed_avx512): where
 * the context lets it, and then only while the team's cores are far apart (nerve__cores_far),
 * or always if the context was set to NERVE_STORES_STREAMED. Lab E on the Zen 4 host at 2
 * threads (bench/lab_e_step.c, alternated): with the cores on two dies, batch norm's backward
 * 0.44-0.79 -> 0.26-0.30 ms a step, the convolution's weight gradient after it, which now reads
 * din from memory, 0.16-0.18 -> 0.19-0.20 ms, the step 7.56-7.78 -> 7.15-7.48 ms; streaming on
 * one die too moved the two by 0.01-0.02 ms the other way each, which is why the default
 * streams only while the cores are far.
 */
static bool streams_din(nerve_context *ctx, const float *din, int64_t R, int64_t C) {
  if (!din || ctx->isa != NERVE_ISA_AVX512 || C > NORM_STREAM_FLOATS) return false;
  const int threads = nerve__threads_for(ctx, R, norm_dx_grain(C));
  return nerve__streams_rows(ctx, threads, din, C) && nerve__streams_while_far(ctx);
}

/*
 * dout [R,C], in [R,C], gamma [C], saved_mean, saved_invstd [C] (from the training forward) ->
 *   din [R,C] (written; skipped if NULL), dgamma [C] += sum dout * xhat, dbeta [C] += sum dout
 * relu: din also taken through the ReLU whose output is in. func: the entry point errors name.
 * terms (not NULL): the column sums din is made from copied there ([3C]: nerve__norm_terms'
 * sum_dy, sum_dyx and factor), for a kernel that makes din's rows itself.
 */
static nerve_status backward(nerve_context *ctx, float *din, float *dgamma, float *dbeta,
                             const float *dout, const float *in, const float *gamma,
                             const float *saved_mean, const float *saved_invstd, int64_t R,
                             int64_t C, bool relu, const nerve__pool_window *pool,
                             const int32_t *argmax, float *terms, const char *func) {
  nerve_status s = check_norm(ctx, R, C, func);
  if (s != NERVE_OK) return s;
  if (R == 0 || C == 0) return NERVE_OK;
  NERVE_CHECK_PTR_IN(ctx, dout, func);
  if (pool) NERVE_CHECK_PTR_IN(ctx, argmax, func);
  NERVE_CHECK_PTR_IN(ctx, in, func);
  NERVE_CHECK_PTR_IN(ctx, gamma, func);
  NERVE_CHECK_PTR_IN(ctx, saved_mean, func);
  NERVE_CHECK_PTR_IN(ctx, saved_invstd, func);
  const int64_t chunk = chunk_rows(R), chunks = (R + chunk - 1) / chunk;
  size_t doubles = (size_t)(2 * chunks + 2) * (size_t)C;
  const size_t owners = pool ? (size_t)(pool->H + pool->W) : 0;
  s = nerve__scratch(ctx, NERVE_SCRATCH_LAYER,
                     doubles * sizeof(double) + owners * sizeof(int64_t) + 3 * (size_t)C * sizeof(float), func);
  if (s != NERVE_OK) return s;
  double *partial = ctx->scratch[NERVE_SCRATCH_LAYER], *partial2 = partial + chunks * C;
  double *total = partial2 + chunks * C, *total2 = total + C;
  int64_t *owner = (int64_t *)(total2 + C);
  float *sums = (float *)(owner + owners);
  pooled_grad pooled = {.dout = dout, .argmax = argmax, .owner = owner};
  if (pool) {
    nerve__maxpool_owners(pool, owner);
    pooled.H = pool->H, pooled.W = pool->W, pooled.OH = pool->OH, pooled.OW = pool->OW;
  }
  norm_job j = {.x = in, .dy = dout, .pool = pool ? &pooled : NULL, .mean = saved_mean, .invstd = saved_invstd,
                .gamma = gamma, .y = din, .partial = partial, .partial2 = partial2, .sums = sums, .R = R,
                .C = C, .chunk = chunk, .relu = relu};
  nerve__parallel_for(ctx, chunks, (1 << 15) / (chunk * C) + 1, grad_sums_for(ctx), &j);
  combine(partial, chunks, C, total);
  combine(partial2, chunks, C, total2);
  for (int64_t c = 0; c < C; c++) {
    sums[c] = (float)total[c];
    sums[C + c] = (float)total2[c];
    if (dbeta) dbeta[c] += sums[c];
    if (dgamma) dgamma[c] += sums[C + c];
    sums[2 * C + c] = gamma[c] * saved_invstd[c] / (float)R;
  }
  if (terms) memcpy(terms, sums, 3 * (size_t)C * sizeof(float));
  j.streams = streams_din(ctx, din, R, C);
  if (din)
    nerve__parallel_for(ctx, R, norm_dx_grain(C), norm_dx_for(ctx),
                        &j);
  return NERVE_OK;
}

nerve_status nerve_batchnorm_backward(nerve_context *ctx, float *din, float *dgamma, float *dbeta,
                                      const float *dout, const float *in, const float *gamma,
                                      const float *saved_mean, const float *saved_invstd,
                                      int64_t R, int64_t C) {
  NERVE_CHECK_CTX(ctx);
  return backward(ctx, din, dgamma, dbeta, dout, in, gamma, saved_mean, saved_invstd, R, C, false,
                  NULL, NULL, NULL, __func__);
}

/*
 * As nerve_batchnorm_backward, with din taken on through the ReLU before the layer, whose
 * output is in: one pass over the rows instead of two (nerve_activation_backward's ReLU after
 * it), and the same bits.
 */
nerve_status nerve_batchnorm_backward_relu(nerve_context *ctx, float *din, float *dgamma,
                                           float *dbeta, const float *dout, const float *in,
                                           const float *gamma, const float *saved_mean,
                                           const float *saved_invstd, int64_t R, int64_t C) {
  NERVE_CHECK_CTX(ctx);
  return backward(ctx, din, dgamma, dbeta, dout, in, gamma, saved_mean, saved_invstd, R, C, true,
                  NULL, NULL, NULL, __func__);
}

/*
 * As nerve_batchnorm_backward for a layer whose output a max pool read: dout is that pool's
 * gradient dpooled [N,OH,OW,C] with its argmax, in [N,H,W,C]; relu as
 * nerve_batchnorm_backward_relu. One pass fewer over the layer's [N,H,W,C] gradient, never
 * written, and the same bits.
 */
nerve_status nerve_batchnorm_backward_maxpool2d(nerve_context *ctx, float *din, float *dgamma,
                                                float *dbeta, const float *dpooled,
                                                const int32_t *argmax, const float *in,
                                                const float *gamma, const float *saved_mean,
                                                const float *saved_invstd, int64_t N, int64_t H,
                                                int64_t W, int64_t C, int64_t PH, int64_t PW,
                                                int64_t SH, int64_t SW, int64_t PT, int64_t PL,
                                                int64_t OH, int64_t OW, int relu) {
  NERVE_CHECK_CTX(ctx);
  const nerve__pool_window pool = {.H = H, .W = W, .C = C, .PH = PH, .PW = PW, .SH = SH, .SW = SW,
                                   .PT = PT, .PL = PL, .OH = OH, .OW = OW};
  nerve_status s = nerve__maxpool_check(ctx, N, &pool, __func__);
  if (s != NERVE_OK) return s;
  if (SH < PH || SW < PW)
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, __func__,
                       "overlapping windows (stride %lldx%lld < window %lldx%lld): use nerve_maxpool2d_backward, "
                       "then nerve_batchnorm_backward", (long long)SH, (long long)SW, (long long)PH, (long long)PW);
  return backward(ctx, din, dgamma, dbeta, dpooled, in, gamma, saved_mean, saved_invstd, N * H * W, C,
                  relu != 0, &pool, argmax, NULL, __func__);
}

nerve_status nerve__batchnorm_backward_pooled(nerve_context *ctx, float *din, float *terms, float *dgamma,
                                              float *dbeta, const float *dpooled, const int32_t *argmax,
                                              const float *in, const float *gamma, const float *saved_mean,
                                              const float *saved_invstd, int64_t N, const nerve__pool_window *pool,
                                              bool relu, const char *func) {
  return backward(ctx, din, dgamma, dbeta, dpooled, in, gamma, saved_mean, saved_invstd, N * pool->H * pool->W,
                  pool->C, relu, pool, argmax, terms, func);
}
