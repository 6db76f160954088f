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

typedef struct {
  const float *x, *dy, *mean, *invstd, *gamma, *beta;
  float *y;                   /* out (forward) or din (backward) */
  double *partial, *partial2; /* [chunks][C] */
  const float *sums;          /* backward: [2C]: column sums of dy, then of dy * xhat */
  int64_t R, C, chunk;
  bool relu; /* backward: din also through the ReLU whose output is x (zero where x <= 0) */
} norm_job;

/* Rows ahead of the row loops that the kernels ask the caches for (nerve__prefetch). */
enum { NORM_AHEAD = 16 };

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
#endif

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
    for (int64_t c = 0; c < C; c++) y[c] = (x[c] - j->mean[c]) * j->invstd[c] * j->gamma[c] + j->beta[c];
  }
}
NERVE_RANGE_KERNEL(normalize);

/*
 * in [R,C], gamma [C], beta [C] -> out [R,C], saved_mean [C], saved_invstd [C];
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
  NERVE_CHECK_PTR(ctx, out);
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
  nerve__parallel_for(ctx, chunks, grain, NERVE_AVX512_OR(ctx, column_sums_avx512, column_sums), &j);
  combine(partial, chunks, C, total);
  for (int64_t c = 0; c < C; c++) saved_mean[c] = (float)(total[c] / (double)R);
  j.mean = saved_mean;
  nerve__parallel_for(ctx, chunks, grain, NERVE_AVX512_OR(ctx, column_sums_avx512, column_sums), &j);
  combine(partial, chunks, C, total);
  for (int64_t c = 0; c < C; c++) {
    double var = total[c] / (double)R;
    saved_invstd[c] = (float)(1.0 / sqrt(var + (double)eps));
    double unbiased = R > 1 ? total[c] / (double)(R - 1) : var;
    running_mean[c] = momentum * running_mean[c] + (1.0f - momentum) * saved_mean[c];
    running_var[c] = momentum * running_var[c] + (1.0f - momentum) * (float)unbiased;
  }
  j.invstd = saved_invstd;
  nerve__parallel_for(ctx, R, (1 << 15) / C + 1, normalize_isa[ctx->isa], &j);
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
  nerve__parallel_for(ctx, R, (1 << 15) / C + 1, normalize_isa[ctx->isa], &j);
  return NERVE_OK;
}

/* partial[k][c] = sum of dy, partial2[k][c] = sum of dy * xhat over chunk k. */
static void grad_sums(void *data, int64_t k0, int64_t k1) {
  norm_job *j = data;
  const int64_t C = j->C;
  for (int64_t k = k0; k < k1; k++) {
    double *p = j->partial + k * C, *q = j->partial2 + k * C;
    for (int64_t c = 0; c < C; c++) p[c] = q[c] = 0.0;
    int64_t r0, r1;
    chunk_range(j, k, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
      const float *x = j->x + r * C, *dy = j->dy + r * C;
      for (int64_t c = 0; c < C; c++) {
        p[c] += dy[c];
        q[c] += (double)dy[c] * ((x[c] - j->mean[c]) * j->invstd[c]);
      }
    }
  }
}

#if NERVE_X86
/* grad_sums with 32 columns a pass, each sum in the same order and roundings (see
 * column_sums_avx512): xhat in float, its product with dy and the sum in double. */
NERVE_TARGET_AVX512 static void grad_sums_avx512(void *data, int64_t k0, int64_t k1) {
  norm_job *j = data;
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
      for (int64_t r = r0; r < r1; r++) {
        nerve__prefetch(j->dy + (r + NORM_AHEAD) * C + c0, 32 * (int64_t)sizeof(float), false);
        nerve__prefetch(j->x + (r + NORM_AHEAD) * C + c0, 32 * (int64_t)sizeof(float), false);
        for (int q = 0; q < 4; q++) {
          const int64_t at = r * C + c0 + 8 * q;
          const __m256 dy = _mm256_maskz_loadu_ps(m[q], j->dy + at);
          const __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskz_loadu_ps(m[q], j->x + at), mean[q]), invstd[q]);
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
#endif

/* Rows [r0, r1) of din; relu a constant at each call below, so each gets its own loop. */
NERVE_INLINE void norm_dx_rows(const norm_job *j, int64_t r0, int64_t r1, bool relu) {
  const int64_t C = j->C;
  const float rows = (float)j->R;
  const float *sum_dy = j->sums, *sum_dyx = j->sums + C;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = j->x + r * C, *dy = j->dy + r * C;
    float *dx = j->y + r * C;
    nerve__prefetch(x + NORM_AHEAD * C, C * (int64_t)sizeof(float), false);
    nerve__prefetch(dy + NORM_AHEAD * C, C * (int64_t)sizeof(float), false);
    nerve__prefetch(dx + NORM_AHEAD * C, C * (int64_t)sizeof(float), true);
    for (int64_t c = 0; c < C; c++) {
      float xhat = (x[c] - j->mean[c]) * j->invstd[c];
      float d = j->gamma[c] * j->invstd[c] / rows * (rows * dy[c] - sum_dy[c] - xhat * sum_dyx[c]);
      /* With relu, on through the ReLU whose output is x, as nerve_activation_backward's. */
      dx[c] = relu ? nerve__relu_grad(d, x[c]) : d;
    }
  }
}

NERVE_INLINE void norm_dx_body(void *data, int64_t r0, int64_t r1) {
  const norm_job *j = data;
  if (j->relu)
    norm_dx_rows(j, r0, r1, true);
  else
    norm_dx_rows(j, r0, r1, false);
}
NERVE_RANGE_KERNEL(norm_dx);

/*
 * dout [R,C], in [R,C], gamma [C], saved_mean, saved_invstd [C] (from the training forward) ->
 *   din [R,C] (written; skipped if NULL), dgamma [C] += sum dout * xhat, dbeta [C] += sum dout
 * relu: din also taken through the ReLU whose output is in. func: the entry point errors name.
 */
static nerve_status backward(nerve_context *ctx, float *din, float *dgamma, float *dbeta,
                             const float *dout, const float *in, const float *gamma,
                             const float *saved_mean, const float *saved_invstd, int64_t R,
                             int64_t C, bool relu, const char *func) {
  nerve_status s = check_norm(ctx, R, C, func);
  if (s != NERVE_OK) return s;
  if (R == 0 || C == 0) return NERVE_OK;
  NERVE_CHECK_PTR_IN(ctx, dout, func);
  NERVE_CHECK_PTR_IN(ctx, in, func);
  NERVE_CHECK_PTR_IN(ctx, gamma, func);
  NERVE_CHECK_PTR_IN(ctx, saved_mean, func);
  NERVE_CHECK_PTR_IN(ctx, saved_invstd, func);
  const int64_t chunk = chunk_rows(R), chunks = (R + chunk - 1) / chunk;
  size_t doubles = (size_t)(2 * chunks + 2) * (size_t)C;
  s = nerve__scratch(ctx, NERVE_SCRATCH_LAYER, doubles * sizeof(double) + 2 * (size_t)C * sizeof(float), func);
  if (s != NERVE_OK) return s;
  double *partial = ctx->scratch[NERVE_SCRATCH_LAYER], *partial2 = partial + chunks * C;
  double *total = partial2 + chunks * C, *total2 = total + C;
  float *sums = (float *)(total2 + C);
  norm_job j = {.x = in, .dy = dout, .mean = saved_mean, .invstd = saved_invstd, .gamma = gamma, .y = din,
                .partial = partial, .partial2 = partial2, .sums = sums, .R = R, .C = C, .chunk = chunk,
                .relu = relu};
  nerve__parallel_for(ctx, chunks, (1 << 15) / (chunk * C) + 1, NERVE_AVX512_OR(ctx, grad_sums_avx512, grad_sums), &j);
  combine(partial, chunks, C, total);
  combine(partial2, chunks, C, total2);
  for (int64_t c = 0; c < C; c++) {
    sums[c] = (float)total[c];
    sums[C + c] = (float)total2[c];
    if (dbeta) dbeta[c] += sums[c];
    if (dgamma) dgamma[c] += sums[C + c];
  }
  if (din) nerve__parallel_for(ctx, R, (1 << 15) / C + 1, norm_dx_isa[ctx->isa], &j);
  return NERVE_OK;
}

nerve_status nerve_batchnorm_backward(nerve_context *ctx, float *din, float *dgamma, float *dbeta,
                                      const float *dout, const float *in, const float *gamma,
                                      const float *saved_mean, const float *saved_invstd,
                                      int64_t R, int64_t C) {
  NERVE_CHECK_CTX(ctx);
  return backward(ctx, din, dgamma, dbeta, dout, in, gamma, saved_mean, saved_invstd, R, C, false,
                  __func__);
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
                  __func__);
}
