/*
 * activation.c: element-wise activations and row-wise softmax, forward above backward.
 *   n flat element count; N rows (batch), C columns (classes) for softmax.
 */
#include "internal.h"

typedef struct {
  float *y;        /* forward: out; backward: din */
  const float *x;  /* forward: in; backward: dout */
  const float *in; /* backward: forward input */
  const float *out;/* backward: forward output */
} act_job;

/* Element counts per thread (two threads from twice as many). Transcendental kinds (and
 * softmax's rows) are worth threads sooner, and so are the backwards that read their forward's
 * output: with the forward's grain they split as the forward did, and each thread reads the part
 * its own cache holds. (Lab A's 2,048 x 30 sigmoid backward ran on one thread and read half its
 * operands from the other core's cache, 0.5 ns an element; with a 16K grain, the 2,048 x 10
 * output layer's forward and backward did too.) */
enum { GRAIN_CHEAP = 1 << 16, GRAIN_EXP = 1 << 13, GRAIN_SHARED = GRAIN_EXP };

/* ---- Forward bodies: y = f(x) ---------------------------------------------------------- */

NERVE_INLINE void sigmoid_fwd_body(void *p, int64_t b, int64_t e) {
  NERVE_MAP((act_job *)p, b, e, nerve__sigmoidf);
}
NERVE_RANGE_KERNEL(sigmoid_fwd);

NERVE_INLINE void tanh_fwd_body(void *p, int64_t b, int64_t e) {
  NERVE_MAP((act_job *)p, b, e, nerve__tanhf);
}
NERVE_RANGE_KERNEL(tanh_fwd);

NERVE_INLINE void relu_fwd_body(void *p, int64_t b, int64_t e) {
  NERVE_MAP((act_job *)p, b, e, nerve__relu);
}
NERVE_RANGE_KERNEL(relu_fwd);

NERVE_INLINE float lecun_f(float x) { return 1.7159f * nerve__tanhf(x * (2.0f / 3.0f)) + 0.01f * x; }

NERVE_INLINE void lecun_fwd_body(void *p, int64_t b, int64_t e) {
  NERVE_MAP((act_job *)p, b, e, lecun_f);
}
NERVE_RANGE_KERNEL(lecun_fwd);

NERVE_INLINE void copy_fwd_body(void *p, int64_t b, int64_t e) {
  act_job *j = p;
  if (j->y != j->x) memmove(j->y + b, j->x + b, (size_t)(e - b) * sizeof(float));
}
NERVE_RANGE_KERNEL(copy_fwd);

/* ---- Backward bodies: y = x * f'(.) ----------------------------------------------------- */

/* d: the output's gradient; o: the forward's output (in: its input, for LeCun's tanh). */
NERVE_INLINE float sigmoid_df(float d, float o) { return d * (o * (1.0f - o)); }

NERVE_INLINE void sigmoid_bwd_body(void *p, int64_t b, int64_t e) {
  NERVE_MAP2((act_job *)p, b, e, sigmoid_df, ((act_job *)p)->out);
}
NERVE_RANGE_KERNEL(sigmoid_bwd);

NERVE_INLINE float tanh_df(float d, float o) { return d * (1.0f - o * o); }

NERVE_INLINE void tanh_bwd_body(void *p, int64_t b, int64_t e) {
  NERVE_MAP2((act_job *)p, b, e, tanh_df, ((act_job *)p)->out);
}
NERVE_RANGE_KERNEL(tanh_bwd);

NERVE_INLINE void relu_bwd_body(void *p, int64_t b, int64_t e) {
  NERVE_MAP2((act_job *)p, b, e, nerve__relu_grad, ((act_job *)p)->out);
}
NERVE_RANGE_KERNEL(relu_bwd);

NERVE_INLINE float lecun_df(float d, float in) {
  float t = nerve__tanhf(in * (2.0f / 3.0f));
  return d * (1.7159f * (2.0f / 3.0f) * (1.0f - t * t) + 0.01f);
}

NERVE_INLINE void lecun_bwd_body(void *p, int64_t b, int64_t e) {
  NERVE_MAP2((act_job *)p, b, e, lecun_df, ((act_job *)p)->in);
}
NERVE_RANGE_KERNEL(lecun_bwd);

static nerve_status check_kind(nerve_context *ctx, nerve_activation kind, const char *func) {
  if ((int)kind < NERVE_ACTIVATION_IDENTITY || (int)kind > NERVE_ACTIVATION_LECUN_TANH)
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, func, "unknown activation %d", (int)kind);
  return NERVE_OK;
}

/* in [n] -> out [n]; out may equal in */
nerve_status nerve_activation_forward(nerve_context *ctx, nerve_activation kind, float *out,
                                      const float *in, int64_t n) {
  NERVE_CHECK_CTX(ctx);
  nerve_status s = check_kind(ctx, kind, __func__);
  if (s != NERVE_OK) return s;
  NERVE_CHECK_SIZE(ctx, n);
  if (n == 0) return NERVE_OK;
  NERVE_CHECK_PTR(ctx, out);
  NERVE_CHECK_PTR(ctx, in);
  act_job j = {.y = out, .x = in};
  nerve__range_fn fn = copy_fwd_isa[ctx->isa];
  int64_t grain = GRAIN_CHEAP;
  switch (kind) {
    case NERVE_ACTIVATION_IDENTITY: break;
    case NERVE_ACTIVATION_SIGMOID: fn = sigmoid_fwd_isa[ctx->isa]; grain = GRAIN_EXP; break;
    case NERVE_ACTIVATION_TANH: fn = tanh_fwd_isa[ctx->isa]; grain = GRAIN_EXP; break;
    case NERVE_ACTIVATION_RELU: fn = relu_fwd_isa[ctx->isa]; break;
    case NERVE_ACTIVATION_LECUN_TANH: fn = lecun_fwd_isa[ctx->isa]; grain = GRAIN_EXP; break;
  }
  nerve__parallel_for(ctx, n, grain, fn, &j);
  return NERVE_OK;
}

/* dout [n], in [n], out [n] -> din [n] (written); din may equal dout */
nerve_status nerve_activation_backward(nerve_context *ctx, nerve_activation kind, float *din,
                                       const float *dout, const float *in, const float *out,
                                       int64_t n) {
  NERVE_CHECK_CTX(ctx);
  nerve_status s = check_kind(ctx, kind, __func__);
  if (s != NERVE_OK) return s;
  NERVE_CHECK_SIZE(ctx, n);
  if (n == 0) return NERVE_OK;
  NERVE_CHECK_PTR(ctx, din);
  NERVE_CHECK_PTR(ctx, dout);
  act_job j = {.y = din, .x = dout, .in = in, .out = out};
  nerve__range_fn fn = copy_fwd_isa[ctx->isa];
  int64_t grain = GRAIN_CHEAP;
  switch (kind) {
    case NERVE_ACTIVATION_IDENTITY: break;
    case NERVE_ACTIVATION_SIGMOID:
      NERVE_CHECK_PTR(ctx, out);
      fn = sigmoid_bwd_isa[ctx->isa];
      grain = GRAIN_SHARED;
      break;
    case NERVE_ACTIVATION_TANH:
      NERVE_CHECK_PTR(ctx, out);
      fn = tanh_bwd_isa[ctx->isa];
      grain = GRAIN_SHARED;
      break;
    case NERVE_ACTIVATION_RELU:
      NERVE_CHECK_PTR(ctx, out);
      fn = relu_bwd_isa[ctx->isa];
      break;
    case NERVE_ACTIVATION_LECUN_TANH:
      NERVE_CHECK_PTR(ctx, in);
      fn = lecun_bwd_isa[ctx->isa];
      grain = GRAIN_EXP;
      break;
  }
  nerve__parallel_for(ctx, n, grain, fn, &j);
  return NERVE_OK;
}

/* ---- Applied by the products (nerve__activation_step) ----------------------------------- */

nerve_status nerve__activation_step_for(nerve_context *ctx, nerve_activation kind, bool backward,
                                        const float *out, int64_t ldo, nerve__activation_step *step,
                                        const char *func) {
  nerve_status s = check_kind(ctx, kind, func);
  if (s != NERVE_OK) return s;
  /* The element loops and grains of nerve_activation_forward and _backward. */
  *step = (nerve__activation_step){.fn = NULL, .out = out, .ldo = ldo, .grain = GRAIN_CHEAP};
  switch (kind) {
    case NERVE_ACTIVATION_IDENTITY: break; /* f(x) = x and f' = 1: C stays as it is */
    case NERVE_ACTIVATION_SIGMOID:
      step->fn = (backward ? sigmoid_bwd_isa : sigmoid_fwd_isa)[ctx->isa];
      step->grain = backward ? GRAIN_SHARED : GRAIN_EXP;
      break;
    case NERVE_ACTIVATION_TANH:
      step->fn = (backward ? tanh_bwd_isa : tanh_fwd_isa)[ctx->isa];
      step->grain = backward ? GRAIN_SHARED : GRAIN_EXP;
      break;
    case NERVE_ACTIVATION_RELU: step->fn = (backward ? relu_bwd_isa : relu_fwd_isa)[ctx->isa]; break;
    case NERVE_ACTIVATION_LECUN_TANH:
      if (backward)
        return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, func,
                           "LeCun's tanh cannot be taken back from its output (its derivative "
                           "needs its input); use nerve_activation_backward");
      step->fn = lecun_fwd_isa[ctx->isa];
      step->grain = GRAIN_EXP;
      break;
  }
  return NERVE_OK;
}

void nerve__activation_rows(const nerve__activation_step *step, float *C, int64_t ldc, int64_t N,
                            int64_t r0, int64_t r1) {
  if (!nerve__activation_applies(step) || r0 >= r1 || N <= 0) return;
  /* Whole rows one after another (and the output's alike) are one range: one call. */
  if (ldc == N && (!step->out || step->ldo == N)) {
    float *c = C + r0 * N;
    act_job j = {.y = c, .x = c, .out = step->out ? step->out + r0 * N : NULL};
    step->fn(&j, 0, (r1 - r0) * N);
    return;
  }
  for (int64_t r = r0; r < r1; r++) {
    float *c = C + r * ldc;
    act_job j = {.y = c, .x = c, .out = step->out ? step->out + r * step->ldo : NULL};
    step->fn(&j, 0, N);
  }
}

typedef struct {
  const nerve__activation_step *step;
  float *C;
  int64_t ldc, N;
} step_pass_job;

static void step_pass_rows(void *data, int64_t r0, int64_t r1) {
  const step_pass_job *j = data;
  nerve__activation_rows(j->step, j->C, j->ldc, j->N, r0, r1);
}

void nerve__activation_pass(const nerve_context *ctx, const nerve__activation_step *step, float *C,
                            int64_t ldc, int64_t M, int64_t N) {
  if (!nerve__activation_applies(step) || N <= 0) return;
  step_pass_job j = {.step = step, .C = C, .ldc = ldc, .N = N};
  nerve__parallel_for(ctx, M, step->grain / N + 1, step_pass_rows, &j);
}

/* ---- Softmax by rows -------------------------------------------------------------------- */

typedef struct {
  float *y;
  const float *x, *out;
  int64_t C;
} softmax_job;

NERVE_INLINE void softmax_fwd_body(void *p, int64_t b, int64_t e) {
  softmax_job *j = p;
  const int64_t C = j->C;
  for (int64_t r = b; r < e; r++) {
    const float *x = j->x + r * C;
    float *y = j->y + r * C;
    float m = x[0];
    for (int64_t c = 1; c < C; c++) m = x[c] > m ? x[c] : m;
    float sum = 0.0f;
    for (int64_t c = 0; c < C; c++) {
      y[c] = nerve__expf(x[c] - m);
      sum += y[c];
    }
    float inv = 1.0f / sum;
    for (int64_t c = 0; c < C; c++) y[c] *= inv;
  }
}
NERVE_RANGE_KERNEL(softmax_fwd);

/* in [N,C] -> out [N,C]; out may equal in */
nerve_status nerve_softmax_forward(nerve_context *ctx, float *out, const float *in, int64_t N,
                                   int64_t C) {
  NERVE_CHECK_CTX(ctx);
  NERVE_CHECK_SIZE(ctx, N);
  NERVE_CHECK_SIZE(ctx, C);
  if (!nerve__product_ok(N, C))
    return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, __func__, "N*C too large");
  if (N == 0 || C == 0) return NERVE_OK;
  NERVE_CHECK_PTR(ctx, out);
  NERVE_CHECK_PTR(ctx, in);
  softmax_job j = {.y = out, .x = in, .C = C};
  nerve__parallel_for(ctx, N, GRAIN_EXP / C + 1, softmax_fwd_isa[ctx->isa], &j);
  return NERVE_OK;
}

NERVE_INLINE void softmax_bwd_body(void *p, int64_t b, int64_t e) {
  softmax_job *j = p;
  const int64_t C = j->C;
  for (int64_t r = b; r < e; r++) {
    const float *d = j->x + r * C, *o = j->out + r * C;
    float *y = j->y + r * C;
    float dot = 0.0f;
    for (int64_t c = 0; c < C; c++) dot += d[c] * o[c];
    for (int64_t c = 0; c < C; c++) y[c] = o[c] * (d[c] - dot);
  }
}
NERVE_RANGE_KERNEL(softmax_bwd);

/* dout [N,C], out [N,C] -> din [N,C] (written); din may equal dout */
nerve_status nerve_softmax_backward(nerve_context *ctx, float *din, const float *dout,
                                    const float *out, int64_t N, int64_t C) {
  NERVE_CHECK_CTX(ctx);
  NERVE_CHECK_SIZE(ctx, N);
  NERVE_CHECK_SIZE(ctx, C);
  if (!nerve__product_ok(N, C))
    return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, __func__, "N*C too large");
  if (N == 0 || C == 0) return NERVE_OK;
  NERVE_CHECK_PTR(ctx, din);
  NERVE_CHECK_PTR(ctx, dout);
  NERVE_CHECK_PTR(ctx, out);
  softmax_job j = {.y = din, .x = dout, .out = out, .C = C};
  nerve__parallel_for(ctx, N, GRAIN_CHEAP / C + 1, softmax_bwd_isa[ctx->isa], &j);
  return NERVE_OK;
}
