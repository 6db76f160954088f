/*
 * optim.c: optimizer steps over flat parameter arrays.
 *   n elements; param, grad and every state array are [n]. Each step updates param in place.
 * Element-wise, so results never depend on the thread count.
 */
#include "internal.h"

#include <math.h>

#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC optimize("no-math-errno")
#endif

/* One step's arguments for the element loops; each optimizer reads the fields it names. */
typedef struct {
  float *param;
  float *state0, *state1; /* velocity; Adam's m, v; RMSprop's mean square; Adadelta's mean
                             squares of gradient and update */
  const float *grad;
  float lr;
  float coupled_decay;        /* weight_decay, coupled L2: added to the gradient as decay * w */
  float momentum;             /* SGD with momentum, Nesterov */
  float rho;                  /* RMSprop, Adadelta */
  float eps;                  /* Adam, RMSprop, Adadelta */
  float beta1, beta2, c1, c2; /* Adam: bias corrections c1 = 1/(1-beta1^t), c2 likewise */
  float shrink;               /* AdamW's decoupled decay as a factor: 1 - lr * decoupled_weight_decay */
} step_job;

enum { STEP_GRAIN = 1 << 16 };

/* A step with state (every one but plain SGD) over its ranges, each run with subnormal floats
 * taken as zero (nerve__subnormals_as_zero: a moment decaying toward zero would otherwise cost
 * a microcode assist per operand), the thread's own modes given back after. */
typedef struct {
  nerve__range_fn body;
  void *job;
} stateful_range_job;

static void stateful_range(void *arg, int64_t b, int64_t e) {
  const stateful_range_job *r = arg;
  const unsigned mode = nerve__subnormals_as_zero();
  r->body(r->job, b, e);
  nerve__subnormals_restore(mode);
}

static void run_stateful_step(nerve_context *ctx, int64_t n, nerve__range_fn body, step_job *j) {
  stateful_range_job r = {.body = body, .job = j};
  nerve__parallel_for(ctx, n, STEP_GRAIN, stateful_range, &r);
}

NERVE_INLINE void sgd_body(void *p, int64_t b, int64_t e) {
  step_job *j = p;
  float *w = j->param;
  const float *g = j->grad;
  const float lr = j->lr, wd = j->coupled_decay;
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
  step_job j = {.param = param, .grad = grad, .lr = lr, .coupled_decay = weight_decay};
  nerve__parallel_for(ctx, n, STEP_GRAIN, sgd_isa[ctx->isa], &j);
  return NERVE_OK;
}

NERVE_INLINE void momentum_body(void *p, int64_t b, int64_t e) {
  step_job *j = p;
  float *w = j->param, *v = j->state0;
  const float *g = j->grad;
  const float lr = j->lr, mu = j->momentum, wd = j->coupled_decay;
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
  step_job j = {.param = param, .state0 = velocity, .grad = grad, .lr = lr, .coupled_decay = weight_decay, .momentum = momentum};
  run_stateful_step(ctx, n, momentum_isa[ctx->isa], &j);
  return NERVE_OK;
}

static nerve_status check_rate(nerve_context *ctx, float v, float lo, float hi, const char *name,
                               const char *func) {
  if (!(v >= lo && v <= hi))
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, func, "%s must be in [%g, %g], got %g", name,
                       (double)lo, (double)hi, (double)v);
  return NERVE_OK;
}

/* ---- Nesterov momentum ------------------------------------------------------------------ */

NERVE_INLINE void nesterov_body(void *p, int64_t b, int64_t e) {
  step_job *j = p;
  float *w = j->param, *v = j->state0;
  const float *g = j->grad;
  const float lr = j->lr, mu = j->momentum, wd = j->coupled_decay;
  for (int64_t i = b; i < e; i++) {
    float step = lr * (g[i] + wd * w[i]);
    v[i] = mu * v[i] + step;
    w[i] -= mu * v[i] + step;
  }
}
NERVE_RANGE_KERNEL(nesterov);

/* param [n], velocity [n], grad [n] -> updated */
nerve_status nerve_nesterov_step(nerve_context *ctx, float *param, float *velocity,
                                 const float *grad, int64_t n, float lr, float momentum,
                                 float weight_decay) {
  NERVE_CHECK_CTX(ctx);
  nerve_status s = check_step(ctx, param, grad, n, lr, weight_decay, __func__);
  if (s == NERVE_OK) s = check_rate(ctx, momentum, 0.0f, 1.0f, "momentum", __func__);
  if (s != NERVE_OK) return s;
  if (n > 0) NERVE_CHECK_PTR(ctx, velocity);
  step_job j = {.param = param, .state0 = velocity, .grad = grad, .lr = lr, .coupled_decay = weight_decay, .momentum = momentum};
  run_stateful_step(ctx, n, nesterov_isa[ctx->isa], &j);
  return NERVE_OK;
}

/* ---- Adam and AdamW --------------------------------------------------------------------- */

/* coupled_decay is added to the gradient; shrink applies AdamW's decoupled decay first. */
NERVE_INLINE void adam_body(void *p, int64_t b, int64_t e) {
  step_job *j = p;
  const nerve__adam_params a = {.lr = j->lr, .beta1 = j->beta1, .beta2 = j->beta2, .eps = j->eps,
                                .c1 = j->c1, .c2 = j->c2, .coupled_decay = j->coupled_decay, .shrink = j->shrink};
  nerve__adam_run(j->param + b, j->state0 + b, j->state1 + b, j->grad + b, e - b, &a);
}
NERVE_RANGE_KERNEL(adam);

/* Every argument of an Adam step but the arrays, checked (shared with the fused dense
 * backward in dense.c, which must refuse before it changes anything). */
nerve_status nerve__check_adam(nerve_context *ctx, float lr, float beta1, float beta2, float eps,
                               float coupled, float decoupled, int64_t step, const char *func) {
  nerve_status s = check_step(ctx, NULL, NULL, 0, lr, coupled, func);
  if (s == NERVE_OK && (!(decoupled >= 0.0f) || decoupled > 3.0e38f))
    s = nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, func, "decoupled weight decay must be finite and >= 0, got %g", (double)decoupled);
  if (s == NERVE_OK) s = check_rate(ctx, beta1, 0.0f, 0.999999f, "beta1", func);
  if (s == NERVE_OK) s = check_rate(ctx, beta2, 0.0f, 0.99999999f, "beta2", func);
  if (s == NERVE_OK && !(eps > 0.0f && eps < 1.0f))
    s = nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, func, "eps must be in (0, 1), got %g", (double)eps);
  if (s == NERVE_OK && step < 1)
    s = nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, func, "step counts from 1, got %lld", (long long)step);
  return s;
}

/* param [n], m [n], v [n], grad [n] -> updated */
nerve_status nerve_adam_step(nerve_context *ctx, float *param, float *m, float *v,
                             const float *grad, int64_t n, float lr, float beta1, float beta2,
                             float eps, float weight_decay, float decoupled_weight_decay,
                             int64_t step) {
  NERVE_CHECK_CTX(ctx);
  nerve_status s = check_step(ctx, param, grad, n, lr, weight_decay, __func__);
  if (s == NERVE_OK)
    s = nerve__check_adam(ctx, lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay, step, __func__);
  if (s != NERVE_OK) return s;
  if (n > 0) {
    NERVE_CHECK_PTR(ctx, m);
    NERVE_CHECK_PTR(ctx, v);
  }
  step_job j = {.param = param, .state0 = m, .state1 = v, .grad = grad, .lr = lr, .coupled_decay = weight_decay,
                .beta1 = beta1, .beta2 = beta2, .eps = eps,
                .c1 = (float)(1.0 / (1.0 - pow(beta1, (double)step))),
                .c2 = (float)(1.0 / (1.0 - pow(beta2, (double)step))),
                .shrink = 1.0f - lr * decoupled_weight_decay};
  run_stateful_step(ctx, n, adam_isa[ctx->isa], &j);
  return NERVE_OK;
}

/* ---- RMSprop ---------------------------------------------------------------------------- */

NERVE_INLINE void rmsprop_body(void *p, int64_t b, int64_t e) {
  step_job *j = p;
  float *w = j->param, *sq = j->state0;
  const float *g = j->grad;
  const float lr = j->lr, rho = j->rho, eps = j->eps, wd = j->coupled_decay;
  for (int64_t i = b; i < e; i++) {
    float gi = g[i] + wd * w[i];
    sq[i] = rho * sq[i] + (1.0f - rho) * gi * gi;
    w[i] -= lr * gi / (nerve__sqrtf(sq[i]) + eps);
  }
}
NERVE_RANGE_KERNEL(rmsprop);

/* param [n], mean_square [n], grad [n] -> updated */
nerve_status nerve_rmsprop_step(nerve_context *ctx, float *param, float *mean_square,
                                const float *grad, int64_t n, float lr, float rho, float eps,
                                float weight_decay) {
  NERVE_CHECK_CTX(ctx);
  nerve_status s = check_step(ctx, param, grad, n, lr, weight_decay, __func__);
  if (s == NERVE_OK) s = check_rate(ctx, rho, 0.0f, 1.0f, "rho", __func__);
  if (s == NERVE_OK && !(eps > 0.0f && eps < 1.0f))
    s = nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, __func__, "eps must be in (0, 1), got %g", (double)eps);
  if (s != NERVE_OK) return s;
  if (n > 0) NERVE_CHECK_PTR(ctx, mean_square);
  step_job j = {.param = param, .state0 = mean_square, .grad = grad, .lr = lr, .coupled_decay = weight_decay,
                .rho = rho, .eps = eps};
  run_stateful_step(ctx, n, rmsprop_isa[ctx->isa], &j);
  return NERVE_OK;
}

/* ---- Adadelta --------------------------------------------------------------------------- */

NERVE_INLINE void adadelta_body(void *p, int64_t b, int64_t e) {
  step_job *j = p;
  float *w = j->param, *eg = j->state0, *ex = j->state1;
  const float *g = j->grad;
  const float lr = j->lr, rho = j->rho, eps = j->eps, wd = j->coupled_decay;
  for (int64_t i = b; i < e; i++) {
    float gi = g[i] + wd * w[i];
    eg[i] = rho * eg[i] + (1.0f - rho) * gi * gi;
    float dx = nerve__sqrtf(ex[i] + eps) / nerve__sqrtf(eg[i] + eps) * gi;
    ex[i] = rho * ex[i] + (1.0f - rho) * dx * dx;
    w[i] -= lr * dx;
  }
}
NERVE_RANGE_KERNEL(adadelta);

/* param [n], mean_square_grad [n], mean_square_update [n], grad [n] -> updated */
nerve_status nerve_adadelta_step(nerve_context *ctx, float *param, float *mean_square_grad,
                                 float *mean_square_update, const float *grad, int64_t n,
                                 float lr, float rho, float eps, float weight_decay) {
  NERVE_CHECK_CTX(ctx);
  nerve_status s = check_step(ctx, param, grad, n, lr, weight_decay, __func__);
  if (s == NERVE_OK) s = check_rate(ctx, rho, 0.0f, 1.0f, "rho", __func__);
  if (s == NERVE_OK && !(eps > 0.0f && eps < 1.0f))
    s = nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, __func__, "eps must be in (0, 1), got %g", (double)eps);
  if (s != NERVE_OK) return s;
  if (n > 0) {
    NERVE_CHECK_PTR(ctx, mean_square_grad);
    NERVE_CHECK_PTR(ctx, mean_square_update);
  }
  step_job j = {.param = param, .state0 = mean_square_grad, .state1 = mean_square_update, .grad = grad,
                .lr = lr, .coupled_decay = weight_decay, .rho = rho, .eps = eps};
  run_stateful_step(ctx, n, adadelta_isa[ctx->isa], &j);
  return NERVE_OK;
}
