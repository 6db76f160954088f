/*
 * loss.c: losses and their gradients, one call each.
 *   N rows in this call, C columns (outputs or classes), count = samples the mean is over.
 * Loss values are per-row sums in double, added over fixed chunks of rows in chunk order, so the
 * value does not depend on the thread count.
 */
#include "internal.h"

typedef struct {
  float *grad;      /* gradient out (may be NULL) */
  float *probs;     /* softmax out (cross-entropy only, may be NULL) */
  const float *x;   /* model output, logits or probabilities */
  const float *t;   /* target */
  int64_t C;
  float scale;      /* 1 / count */
  float eps;
} loss_job;

enum { LOSS_MIN_ROWS = 512 };

static nerve_status check_loss(nerve_context *ctx, const float *x, const float *t, int64_t N,
                               int64_t C, int64_t count, const char *func) {
  if (N < 0 || C < 0)
    return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "negative size (N=%lld, C=%lld)",
                       (long long)N, (long long)C);
  if (!nerve__product_ok(N, C)) return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "N*C too large");
  if (count < N || count < 1)
    return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func,
                       "count must be at least N and at least 1 (count=%lld, N=%lld)",
                       (long long)count, (long long)N);
  if (N > 0 && C > 0 && (!x || !t))
    return nerve__fail(ctx, NERVE_ERROR_NULL_POINTER, func, "%s is NULL",
                       !x ? "the model output" : "target");
  return NERVE_OK;
}

/* ---- Mean squared error ----------------------------------------------------------------- */

/* Row r's sum of squares (its gradient written, if wanted). */
NERVE_INLINE float mse_row(const loss_job *j, int64_t r) {
  const int64_t C = j->C;
  const float *o = j->x + r * C, *t = j->t + r * C;
  float row = 0.0f;
  for (int64_t c = 0; c < C; c++) {
    float d = o[c] - t[c];
    row += d * d;
  }
  if (j->grad) {
    float *g = j->grad + r * C;
    float s = 2.0f * j->scale;
    for (int64_t c = 0; c < C; c++) g[c] = s * (o[c] - t[c]);
  }
  return row;
}

/* mse_row with each square fused into the row's sum, as the lanes kernels (mse_lanes,
 * mse_lanes_avx2) add theirs: their last rows, the same bits as their lanes in any compiler's
 * build (clang contracts mse_row's `row += d * d` alike; gcc's vectorised builds fuse only
 * some of its columns). */
NERVE_INLINE float mse_row_fused(const loss_job *j, int64_t r) {
  const int64_t C = j->C;
  const float *o = j->x + r * C, *t = j->t + r * C;
  float row = 0.0f;
  for (int64_t c = 0; c < C; c++) row = fmaf(o[c] - t[c], o[c] - t[c], row);
  if (j->grad) {
    float *g = j->grad + r * C;
    const float s = 2.0f * j->scale;
    for (int64_t c = 0; c < C; c++) g[c] = s * (o[c] - t[c]);
  }
  return row;
}

NERVE_INLINE double mse_body(void *p, int64_t b, int64_t e) {
  double total = 0.0;
  for (int64_t r = b; r < e; r++) total += mse_row(p, r);
  return total;
}
NERVE_SUM_KERNEL(mse);

#if NERVE_X86
/* Columns up to which mse_lanes takes the rows in its lanes. */
enum { MSE_LANES_MAX_COLUMNS = 16 };

/*
 * mse_body with AVX-512 for a few columns (a classifier's 10 outputs): 16 rows at a time, one in
 * each lane, each lane's sum adding its row's squares in column order with the multiply-adds the
 * row loop's `row += d * d` compiles to, then the rows' sums added to the total in row order;
 * the gradient over the 16 rows' values as one run. The same bits as mse_body's AVX-512 build.
 * A row's ten squares in one chain made the row loop latency-bound: 2,048 x 10 on one thread,
 * 15.9 us (about 22 cycles a row).
 */
NERVE_TARGET_AVX512 static double mse_lanes(void *p, int64_t b, int64_t e) {
  loss_job *j = p;
  const int64_t C = j->C;
  const __m512i at = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                        _mm512_set1_epi32((int)C));
  const float s = 2.0f * j->scale;
  double total = 0.0;
  int64_t r = b;
  float d[16 * MSE_LANES_MAX_COLUMNS]; /* the 16 rows' differences, row by row */
  for (; r + 16 <= e; r += 16) {
    const float *o = j->x + r * C, *t = j->t + r * C;
    for (int64_t i = 0; i < 16 * C; i++) d[i] = o[i] - t[i];
    __m512 row = _mm512_setzero_ps();
    for (int64_t c = 0; c < C; c++) {
      const __m512 dc = _mm512_i32gather_ps(at, d + c, 4);
      row = _mm512_fmadd_ps(dc, dc, row);
    }
    float rows[16];
    _mm512_storeu_ps(rows, row);
    for (int k = 0; k < 16; k++) total += rows[k];
    if (j->grad) {
      float *restrict g = j->grad + r * C;
      for (int64_t i = 0; i < 16 * C; i++) g[i] = s * d[i];
    }
  }
  for (; r < e; r++) total += mse_row_fused(j, r);
  return total;
}
#endif

#if NERVE_X86
/*
 * mse_lanes with AVX2: 8 rows at a time, one in each lane, each lane's chain of multiply-adds
 * over its row's columns in order, the rows' sums added to the total in row order, the
 * gradient over the 8 rows' values as one run: the same bits as mse_body's AVX2 build from
 * clang (SwiftPM's), which contracts mse_row's `row += d * d`. gcc's vectorises the squares
 * and fuses only its leftover columns, so gcc's results changed here (to clang's). Measured
 * on a Zen 3 only: where a microcode fix slows gathers (Intel's Gather Data Sampling), the
 * rows' form may be the faster. Row by
 * row, each row's chain of ten waited on the multiply-add's latency: Lab A's 2,048 x 10 chunk
 * 31.3-31.5 -> 11.8-12.1 us at 1 thread, 18.8-19.0 -> 11.2-11.3 us at 2 on a Zen 3
 * (bench/lab_a_head.c, SwiftPM's flags).
 */
NERVE_TARGET_AVX2 static double mse_lanes_avx2(void *p, int64_t b, int64_t e) {
  loss_job *j = p;
  const int64_t C = j->C;
  const __m256i at = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)C));
  const float s = 2.0f * j->scale;
  double total = 0.0;
  int64_t r = b;
  float d[8 * MSE_LANES_MAX_COLUMNS]; /* the 8 rows' differences, row by row */
  for (; r + 8 <= e; r += 8) {
    const float *o = j->x + r * C, *t = j->t + r * C;
    for (int64_t i = 0; i < 8 * C; i++) d[i] = o[i] - t[i];
    __m256 row = _mm256_setzero_ps();
    for (int64_t c = 0; c < C; c++) {
      const __m256 dc = _mm256_i32gather_ps(d + c, at, 4);
      row = _mm256_fmadd_ps(dc, dc, row);
    }
    float rows[8];
    _mm256_storeu_ps(rows, row);
    for (int k = 0; k < 8; k++) total += rows[k];
    if (j->grad) {
      float *restrict g = j->grad + r * C;
      for (int64_t i = 0; i < 8 * C; i++) g[i] = s * d[i];
    }
  }
  for (; r < e; r++) total += mse_row_fused(j, r);
  return total;
}
#endif

/* The MSE kernel for ctx's instruction set and C columns. */
static nerve__sum_fn mse_for(const nerve_context *ctx, int64_t C) {
#if NERVE_X86
  if (ctx->isa == NERVE_ISA_AVX512 && C <= MSE_LANES_MAX_COLUMNS) return mse_lanes;
  if (ctx->isa == NERVE_ISA_AVX2 && C <= MSE_LANES_MAX_COLUMNS) return mse_lanes_avx2;
#endif
  (void)C;
  return mse_isa[ctx->isa];
}

/* out [N,C], target [N,C] -> loss, dout [N,C] (written) */
nerve_status nerve_loss_mse(nerve_context *ctx, double *loss, float *dout, const float *out,
                            const float *target, int64_t N, int64_t C, int64_t count) {
  NERVE_CHECK_CTX(ctx);
  nerve_status s = check_loss(ctx, out, target, N, C, count, __func__);
  if (s != NERVE_OK) return s;
  loss_job j = {.grad = dout, .x = out, .t = target, .C = C, .scale = 1.0f / (float)count};
  double sum = nerve__parallel_sum(ctx, C > 0 ? N : 0, LOSS_MIN_ROWS, mse_for(ctx, C), &j);
  if (loss) *loss = sum / (double)count;
  return NERVE_OK;
}

/* ---- Softmax cross-entropy -------------------------------------------------------------- */

NERVE_INLINE double softmax_ce_body(void *p, int64_t b, int64_t e) {
  loss_job *j = p;
  const int64_t C = j->C;
  double total = 0.0;
  for (int64_t r = b; r < e; r++) {
    const float *x = j->x + r * C, *t = j->t + r * C;
    float m = x[0];
    for (int64_t c = 1; c < C; c++) m = x[c] > m ? x[c] : m;
    float sum = 0.0f;
    for (int64_t c = 0; c < C; c++) sum += nerve__expf(x[c] - m);
    /* -sum_c t_c log p_c with log p_c = x_c - m - log(sum): never log(0). */
    float lse = logf(sum);
    float row = 0.0f;
    for (int64_t c = 0; c < C; c++)
      if (t[c] != 0.0f) row += t[c] * (lse - (x[c] - m));
    total += row;
    if (j->grad || j->probs) {
      float inv = 1.0f / sum;
      for (int64_t c = 0; c < C; c++) {
        float pc = nerve__expf(x[c] - m) * inv;
        if (j->probs) j->probs[r * C + c] = pc;
        if (j->grad) j->grad[r * C + c] = (pc - t[c]) * j->scale;
      }
    }
  }
  return total;
}
NERVE_SUM_KERNEL(softmax_ce);

/* logits [N,C], target [N,C] -> loss, dlogits [N,C] (written), probs [N,C] */
nerve_status nerve_loss_softmax_cross_entropy(nerve_context *ctx, double *loss, float *dlogits,
                                              float *probs, const float *logits,
                                              const float *target, int64_t N, int64_t C,
                                              int64_t count) {
  NERVE_CHECK_CTX(ctx);
  nerve_status s = check_loss(ctx, logits, target, N, C, count, __func__);
  if (s != NERVE_OK) return s;
  loss_job j = {.grad = dlogits, .probs = probs, .x = logits, .t = target, .C = C, .scale = 1.0f / (float)count};
  double sum =
      nerve__parallel_sum(ctx, C > 0 ? N : 0, LOSS_MIN_ROWS, softmax_ce_isa[ctx->isa], &j);
  if (loss) *loss = sum / (double)count;
  return NERVE_OK;
}

/* ---- Negative log-likelihood on probabilities ------------------------------------------- */

NERVE_INLINE double nll_body(void *p, int64_t b, int64_t e) {
  loss_job *j = p;
  const int64_t C = j->C;
  double total = 0.0;
  for (int64_t r = b; r < e; r++) {
    const float *x = j->x + r * C, *t = j->t + r * C;
    float row = 0.0f;
    for (int64_t c = 0; c < C; c++)
      if (t[c] != 0.0f) row -= t[c] * logf(x[c] + j->eps);
    total += row;
    if (j->grad) {
      float *g = j->grad + r * C;
      for (int64_t c = 0; c < C; c++) g[c] = t[c] == 0.0f ? 0.0f : -t[c] / (x[c] + j->eps) * j->scale;
    }
  }
  return total;
}
NERVE_SUM_KERNEL(nll);

/* probs [N,C], target [N,C] -> loss, dprobs [N,C] (written) */
nerve_status nerve_loss_nll(nerve_context *ctx, double *loss, float *dprobs, const float *probs,
                            const float *target, int64_t N, int64_t C, float eps,
                            int64_t count) {
  NERVE_CHECK_CTX(ctx);
  nerve_status s = check_loss(ctx, probs, target, N, C, count, __func__);
  if (s != NERVE_OK) return s;
  if (!(eps >= 0.0f))
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, __func__, "eps must be >= 0, got %g",
                       (double)eps);
  loss_job j = {.grad = dprobs, .x = probs, .t = target, .C = C, .scale = 1.0f / (float)count, .eps = eps};
  double sum = nerve__parallel_sum(ctx, C > 0 ? N : 0, LOSS_MIN_ROWS, nll_isa[ctx->isa], &j);
  if (loss) *loss = sum / (double)count;
  return NERVE_OK;
}
