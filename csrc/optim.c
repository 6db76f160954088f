/*
 * optim.c: optimizer steps over flat parameter arrays.
 *   n elements; param, grad and every state array are [n]. Each step updates param in place.
 * Element-wise, so results never depend on the thread count.
 */
#include "internal.h"

typedef struct {
  float *param, *state0;
  const float *grad;
  float lr, momentum, decay;
} step_job;

enum { STEP_GRAIN = 1 << 16 };

NERVE_INLINE void sgd_body(void *p, int64_t b, int64_t e) {
  step_job *j = p;
  float *w = j->param;
  const float *g = j->grad;
  const float lr = j->lr, wd = j->decay;
  for (int64_t i = b; i < e; i++) w[i] -= lr * (g[i] + wd * w[i]);
}
NERVE_RANGE_KERNEL(sgd);

static nerve_status check_step(nerve_context *ctx, const float *param, const float *grad,
                               int64_t n, float lr, float decay, const char *func) {
  if (n < 0) return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "n is negative (%lld)", (long long)n);
  if (n > 0 && (!param || !grad))
    return nerve__fail(ctx, NERVE_ERROR_NULL_POINTER, func, "%s is NULL", !param ? "param" : "grad");
  if (!(lr >= 0.0f) || lr > 3.0e38f)
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, func, "learning rate must be finite and >= 0, got %g", (double)lr);
  if (!(decay >= 0.0f) || decay > 3.0e38f)
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, func, "weight decay must be finite and >= 0, got %g", (double)decay);
  return NERVE_OK;
}

/* param [n], grad [n] -> param [n] updated */
nerve_status nerve_sgd_step(nerve_context *ctx, float *param, const float *grad, int64_t n,
                            float lr, float weight_decay) {
  NERVE_CHECK_CTX(ctx);
  nerve_status s = check_step(ctx, param, grad, n, lr, weight_decay, __func__);
  if (s != NERVE_OK) return s;
  step_job j = {param, NULL, grad, lr, 0.0f, weight_decay};
  nerve__parallel_for(ctx, n, STEP_GRAIN, sgd_isa[ctx->isa], &j);
  return NERVE_OK;
}

NERVE_INLINE void momentum_body(void *p, int64_t b, int64_t e) {
  step_job *j = p;
  float *w = j->param, *v = j->state0;
  const float *g = j->grad;
  const float lr = j->lr, mu = j->momentum, wd = j->decay;
  for (int64_t i = b; i < e; i++) {
    v[i] = mu * v[i] + lr * (g[i] + wd * w[i]);
    w[i] -= v[i];
  }
}
NERVE_RANGE_KERNEL(momentum);

/* param [n], velocity [n], grad [n] -> param, velocity updated */
nerve_status nerve_momentum_step(nerve_context *ctx, float *param, float *velocity,
                                 const float *grad, int64_t n, float lr, float momentum,
                                 float weight_decay) {
  NERVE_CHECK_CTX(ctx);
  nerve_status s = check_step(ctx, param, grad, n, lr, weight_decay, __func__);
  if (s != NERVE_OK) return s;
  if (n > 0) NERVE_CHECK_PTR(ctx, velocity);
  if (!(momentum >= 0.0f) || momentum > 3.0e38f)
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, __func__, "momentum must be finite and >= 0, got %g", (double)momentum);
  step_job j = {param, velocity, grad, lr, momentum, weight_decay};
  nerve__parallel_for(ctx, n, STEP_GRAIN, momentum_isa[ctx->isa], &j);
  return NERVE_OK;
}
