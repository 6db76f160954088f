/*
 * reduce.c: sums over flat arrays (n elements): squares for L2 penalties and gradient norms,
 * absolute values for mean-absolute diagnostics. Fixed-order chunked sums, so the value does not
 * depend on the thread count.
 */
#include "internal.h"

typedef struct {
  const float *x;
} reduce_job;

/* Per chunk: float lanes of 16 (vectorisable in a fixed order), then double. */
NERVE_INLINE double squares_body(void *p, int64_t b, int64_t e) {
  const float *x = ((reduce_job *)p)->x;
  float lanes[16] = {0};
  int64_t i = b;
  for (; i + 16 <= e; i += 16)
    for (int k = 0; k < 16; k++) lanes[k] += x[i + k] * x[i + k];
  double total = 0.0;
  for (int k = 0; k < 16; k++) total += lanes[k];
  for (; i < e; i++) total += (double)x[i] * x[i];
  return total;
}
NERVE_SUM_KERNEL(squares);

NERVE_INLINE double abs_body(void *p, int64_t b, int64_t e) {
  const float *x = ((reduce_job *)p)->x;
  float lanes[16] = {0};
  int64_t i = b;
  for (; i + 16 <= e; i += 16)
    for (int k = 0; k < 16; k++) lanes[k] += fabsf(x[i + k]);
  double total = 0.0;
  for (int k = 0; k < 16; k++) total += lanes[k];
  for (; i < e; i++) total += fabsf(x[i]);
  return total;
}
NERVE_SUM_KERNEL(abs);

enum { REDUCE_CHUNK = 4096 };

/* x [n] -> *out */
nerve_status nerve_sum_squares(nerve_context *ctx, double *out, const float *x, int64_t n) {
  NERVE_CHECK_CTX(ctx);
  NERVE_CHECK_PTR(ctx, out);
  NERVE_CHECK_SIZE(ctx, n);
  if (n > 0) NERVE_CHECK_PTR(ctx, x);
  *out = 0.0;
  if (n == 0) return NERVE_OK;
  reduce_job j = {.x = x};
  *out = nerve__parallel_sum(ctx, n, REDUCE_CHUNK, squares_isa[ctx->isa], &j);
  return NERVE_OK;
}

/* x [n] -> *out */
nerve_status nerve_sum_abs(nerve_context *ctx, double *out, const float *x, int64_t n) {
  NERVE_CHECK_CTX(ctx);
  NERVE_CHECK_PTR(ctx, out);
  NERVE_CHECK_SIZE(ctx, n);
  if (n > 0) NERVE_CHECK_PTR(ctx, x);
  *out = 0.0;
  if (n == 0) return NERVE_OK;
  reduce_job j = {.x = x};
  *out = nerve__parallel_sum(ctx, n, REDUCE_CHUNK, abs_isa[ctx->isa], &j);
  return NERVE_OK;
}
