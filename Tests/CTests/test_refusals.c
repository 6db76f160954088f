/*
 * test_refusals.c: a refused call changes nothing. Every exported function that writes to a
 * caller's buffer or state is called with a NULL context, with each required pointer NULL in
 * turn, with a negative size, and with an out-of-range setting (the argument checked last);
 * each must return a status, leave a message naming the function in the context, and leave
 * every buffer exactly as it was (all buffers live in one arena compared byte for byte).
 */
#include <nerve.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0, refusals = 0;

/* Every buffer a call may touch lives here; the copy shows whether anything changed. */
enum { ARENA = 1 << 14 };
static float arena[ARENA], before[ARENA];
static size_t used = 0;

static float *buffer(size_t n) {
  float *p = arena + used;
  used += (n + 15) / 16 * 16;
  if (used > ARENA) {
    fprintf(stderr, "arena too small\n");
    exit(2);
  }
  return p;
}

static void fill_arena(void) {
  unsigned seed = 12345;
  for (size_t i = 0; i < ARENA; i++) arena[i] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0x7fff) / 32768.0f - 0.25f;
  memcpy(before, arena, sizeof arena);
}

/* Checks one call that must be refused. */
static void refused(nerve_context *ctx, const char *function, const char *variant, nerve_status status) {
  refusals++;
  if (status == NERVE_OK) {
    failures++;
    fprintf(stderr, "%s (%s): accepted, expected a refusal\n", function, variant);
  } else if (ctx && strstr(nerve_context_last_error(ctx), function) == NULL) {
    failures++;
    fprintf(stderr, "%s (%s): message '%s' does not name the function\n", function, variant, nerve_context_last_error(ctx));
  }
  if (memcmp(arena, before, sizeof arena) != 0) {
    failures++;
    size_t i = 0;
    while (arena[i] == before[i] || (isnan(arena[i]) && isnan(before[i]))) i++;
    fprintf(stderr, "%s (%s): refused but changed the buffers (first at float %zu)\n", function, variant, i);
    memcpy(arena, before, sizeof arena);
  }
}

/* `P(k, p)`: the k-th required pointer of a call, NULL when the variant says so. */
#define P(k, p) (null == (k) ? NULL : (p))

/* A function's refused variants: a NULL context, each of its `pointers` required pointers NULL,
 * a negative size (`size` set to -1) and a bad setting (`bad` set). */
#define VARIANTS(ctx, function, pointers, call)                                                   \
  do {                                                                                           \
    int null = -1;                                                                               \
    int64_t size = 1;                                                                            \
    int bad = 0;                                                                                 \
    refused(NULL, function, "NULL context", (call_ctx = NULL, call));                           \
    call_ctx = ctx;                                                                              \
    for (null = 0; null < (pointers); null++) {                                                  \
      char label[32];                                                                              \
      snprintf(label, sizeof label, "pointer %d NULL", null);                                         \
      refused(ctx, function, label, call);                                                      \
    }                                                                                            \
    null = -1;                                                                                   \
    size = -1;                                                                                   \
    refused(ctx, function, "negative size", call);                                               \
    size = 1;                                                                                    \
    bad = 1;                                                                                     \
    if (has_setting) refused(ctx, function, "bad setting", call);                                \
    (void)bad;                                                                                   \
  } while (0)

int main(void) {
  nerve_context *ctx = NULL;
  if (nerve_context_create(&ctx, 3) != NERVE_OK) return 1;
  nerve_context *call_ctx = ctx;
  int has_setting;

  /* Dense: N 3, I 5, O 4. */
  const int64_t N = 3, I = 5, O = 4;
  float *x = buffer(N * I), *w = buffer(I * O), *b = buffer(O), *y = buffer(N * O), *dy = buffer(N * O);
  float *dx = buffer(N * I), *dw = buffer(I * O), *db = buffer(O), *m = buffer(I * O), *v = buffer(I * O);
  float *bm = buffer(O), *bv = buffer(O), *probs = buffer(N * O), *target = buffer(N * O);
  double *loss = (double *)(void *)buffer(2);
  int32_t *classes = (int32_t *)buffer(N), *labels = (int32_t *)buffer(N);
  int64_t *correct = (int64_t *)buffer(2);
  double *sum = (double *)buffer(2);
  /* Convolution: N 2 images of 5x5x2, 3 filters 3x3, stride 1, padding 1. */
  const int64_t CN = 2, H = 5, W = 5, C = 2, K = 3;
  float *img = buffer(CN * H * W * C), *cw = buffer(3 * 3 * C * K), *cb = buffer(K), *cy = buffer(CN * H * W * K);
  float *cdy = buffer(CN * H * W * K), *cdx = buffer(CN * H * W * C), *cdw = buffer(3 * 3 * C * K), *cdb = buffer(K);
  /* Pooling: 2x2 windows, stride 2 over 5x5 images: 2x2 outputs. */
  float *py = buffer(CN * 2 * 2 * C), *pdy = buffer(CN * 2 * 2 * C), *pdx = buffer(CN * H * W * C);
  int32_t *arg = (int32_t *)buffer(CN * 2 * 2 * C);
  /* Batch norm: 6 rows of 3 channels. */
  const int64_t R = 6, BC = 3;
  float *bx = buffer(R * BC), *by = buffer(R * BC), *gamma = buffer(BC), *beta = buffer(BC), *smean = buffer(BC);
  float *sinv = buffer(BC), *rmean = buffer(BC), *rvar = buffer(BC), *bdy = buffer(R * BC), *bdx = buffer(R * BC);
  float *dgamma = buffer(BC), *dbeta = buffer(BC), *mask = buffer(N * O);
  fill_arena();
  for (int k = 0; k < N; k++) labels[k] = k % 4;
  for (int k = 0; k < BC; k++) rvar[k] = 1.0f + 0.1f * k;
  memcpy(before, arena, sizeof arena);

  has_setting = 0;
  VARIANTS(ctx, "nerve_dense_forward", 3, nerve_dense_forward(call_ctx, P(0, y), P(1, x), P(2, w), b, N * size, I, O));
  VARIANTS(ctx, "nerve_dense_backward", 2, nerve_dense_backward(call_ctx, dx, dw, db, P(0, dy), P(1, x), w, N * size, I, O));
  has_setting = 1;
  VARIANTS(ctx, "nerve_dense_backward_sgd", 3,
           nerve_dense_backward_sgd(call_ctx, dx, P(0, w), b, P(1, dy), P(2, x), N * size, I, O, bad ? -1.0f : 0.1f));
  VARIANTS(ctx, "nerve_dense_backward_adam", 5,
           nerve_dense_backward_adam(call_ctx, dx, P(0, w), b, P(1, m), P(2, v), bm, bv, P(3, dy), P(4, x), N * size, I, O,
                                     0.01f, 0.9f, 0.999f, 1e-7f, 0.0f, bad ? -1.0f : 0.0f, 3));
  VARIANTS(ctx, "nerve_dense_backward_adam", 0,
           nerve_dense_backward_adam(call_ctx, dx, w, b, m, v, bm, bv, dy, x, N * size, I, O, 0.01f, 0.9f, 0.999f, 1e-7f,
                                     0.0f, 0.0f, bad ? 0 : 3));
  VARIANTS(ctx, "nerve_dense_backward_adam", 2,
           nerve_dense_backward_adam(call_ctx, dx, w, b, m, v, P(0, bm), P(1, bv), dy, x, N * size, I, O, 0.01f,
                                     bad ? 1.5f : 0.9f, 0.999f, 1e-7f, 0.0f, 0.0f, 3));
  VARIANTS(ctx, "nerve_activation_forward", 2,
           nerve_activation_forward(call_ctx, bad ? (nerve_activation)99 : NERVE_ACTIVATION_TANH, P(0, y), P(1, x), N * O * size));
  /* Which of in and out backward reads depends on the function: both kinds are tried. */
  VARIANTS(ctx, "nerve_activation_backward", 3,
           nerve_activation_backward(call_ctx, bad ? (nerve_activation)99 : NERVE_ACTIVATION_SIGMOID, P(0, dx), P(1, dy), x,
                                     P(2, y), N * O * size));
  VARIANTS(ctx, "nerve_activation_backward", 3,
           nerve_activation_backward(call_ctx, bad ? (nerve_activation)-1 : NERVE_ACTIVATION_LECUN_TANH, P(0, dx), P(1, dy),
                                     P(2, x), y, N * O * size));
  has_setting = 0;
  VARIANTS(ctx, "nerve_softmax_forward", 2, nerve_softmax_forward(call_ctx, P(0, y), P(1, x), N * size, O));
  VARIANTS(ctx, "nerve_softmax_backward", 3, nerve_softmax_backward(call_ctx, P(0, dx), P(1, dy), P(2, y), N * size, O));
  has_setting = 1;
  /* The loss value and gradient are each optional (either may be NULL), the inputs not. */
  VARIANTS(ctx, "nerve_loss_mse", 2, nerve_loss_mse(call_ctx, loss, dy, P(0, y), P(1, target), N * size, O, bad ? 0 : N));
  VARIANTS(ctx, "nerve_loss_softmax_cross_entropy", 2,
           nerve_loss_softmax_cross_entropy(call_ctx, loss, dy, probs, P(0, y), P(1, target), N * size, O, bad ? 0 : N));
  VARIANTS(ctx, "nerve_loss_nll", 2,
           nerve_loss_nll(call_ctx, loss, dy, P(0, probs), P(1, target), N * size, O, bad ? -1.0f : 1e-7f, N));
  VARIANTS(ctx, "nerve_sgd_step", 2, nerve_sgd_step(call_ctx, P(0, w), P(1, dw), I * O * size, 0.1f, bad ? -1.0f : 0.0f));
  VARIANTS(ctx, "nerve_momentum_step", 3,
           nerve_momentum_step(call_ctx, P(0, w), P(1, m), P(2, dw), I * O * size, 0.1f, bad ? NAN : 0.9f, 0.0f));
  VARIANTS(ctx, "nerve_nesterov_step", 3,
           nerve_nesterov_step(call_ctx, P(0, w), P(1, m), P(2, dw), I * O * size, 0.1f, bad ? 1.5f : 0.9f, 0.0f));
  VARIANTS(ctx, "nerve_adam_step", 4,
           nerve_adam_step(call_ctx, P(0, w), P(1, m), P(2, v), P(3, dw), I * O * size, 0.01f, 0.9f, 0.999f, 1e-7f, 0.0f,
                           0.0f, bad ? 0 : 2));
  VARIANTS(ctx, "nerve_rmsprop_step", 3,
           nerve_rmsprop_step(call_ctx, P(0, w), P(1, m), P(2, dw), I * O * size, 0.01f, 0.9f, bad ? 0.0f : 1e-7f, 0.0f));
  VARIANTS(ctx, "nerve_adadelta_step", 4,
           nerve_adadelta_step(call_ctx, P(0, w), P(1, m), P(2, v), P(3, dw), I * O * size, 1.0f, bad ? 2.0f : 0.95f, 1e-6f, 0.0f));
  has_setting = 0;
  VARIANTS(ctx, "nerve_argmax", 2, nerve_argmax(call_ctx, P(0, classes), P(1, y), N * size, O));
  VARIANTS(ctx, "nerve_count_correct", 3, nerve_count_correct(call_ctx, P(0, correct), P(1, y), P(2, labels), N * size, O));
  VARIANTS(ctx, "nerve_sum_squares", 2, nerve_sum_squares(call_ctx, P(0, sum), P(1, x), N * I * size));
  VARIANTS(ctx, "nerve_sum_abs", 2, nerve_sum_abs(call_ctx, P(0, sum), P(1, x), N * I * size));
  has_setting = 1;
  VARIANTS(ctx, "nerve_conv2d_forward", 3,
           nerve_conv2d_forward(call_ctx, P(0, cy), P(1, img), P(2, cw), cb, CN * size, H, W, C, K, 3, 3, 1, 1, 1, 1, bad ? 9 : H, W));
  VARIANTS(ctx, "nerve_conv2d_backward", 3,
           nerve_conv2d_backward(call_ctx, cdx, cdw, cdb, P(0, cdy), P(1, img), P(2, cw), CN * size, H, W, C, K, 3, 3, 1, 1,
                                 bad ? 3 : 1, 1, H, W));
  VARIANTS(ctx, "nerve_maxpool2d_forward", 3,
           nerve_maxpool2d_forward(call_ctx, P(0, py), P(1, arg), P(2, img), CN * size, H, W, C, 2, 2, 2, 2, bad ? 2 : 0, 0, 2, 2));
  VARIANTS(ctx, "nerve_maxpool2d_backward", 3,
           nerve_maxpool2d_backward(call_ctx, P(0, pdx), P(1, pdy), P(2, arg), CN * size, H, W, C, 2, 2, bad ? 0 : 2, 2, 0, 0, 2, 2));
  VARIANTS(ctx, "nerve_avgpool2d_forward", 2,
           nerve_avgpool2d_forward(call_ctx, P(0, py), P(1, img), CN * size, H, W, C, 2, 2, 2, 2, 0, 0, bad ? 7 : 2, 2));
  VARIANTS(ctx, "nerve_avgpool2d_backward", 2,
           nerve_avgpool2d_backward(call_ctx, P(0, pdx), P(1, pdy), CN * size, H, W, C, bad ? 0 : 2, 2, 2, 2, 0, 0, 2, 2));
  VARIANTS(ctx, "nerve_batchnorm_forward_train", 8,
           nerve_batchnorm_forward_train(call_ctx, P(0, by), P(1, smean), P(2, sinv), P(3, rmean), P(4, rvar), P(5, bx),
                                         P(6, gamma), P(7, beta), R * size, BC, 0.9f, bad ? 0.0f : 1e-3f));
  VARIANTS(ctx, "nerve_batchnorm_forward_train", 0,
           nerve_batchnorm_forward_train(call_ctx, by, smean, sinv, rmean, rvar, bx, gamma, beta, R * size, BC, bad ? 1.5f : 0.9f, 1e-3f));
  VARIANTS(ctx, "nerve_batchnorm_forward_infer", 6,
           nerve_batchnorm_forward_infer(call_ctx, P(0, by), P(1, bx), P(2, gamma), P(3, beta), P(4, rmean), P(5, rvar), R * size, BC,
                                         bad ? -1.0f : 1e-3f));
  has_setting = 0;
  VARIANTS(ctx, "nerve_batchnorm_backward", 5,
           nerve_batchnorm_backward(call_ctx, bdx, dgamma, dbeta, P(0, bdy), P(1, bx), P(2, gamma), P(3, smean), P(4, sinv), R * size, BC));
  has_setting = 1;
  VARIANTS(ctx, "nerve_dropout_forward", 3,
           nerve_dropout_forward(call_ctx, P(0, y), P(1, mask), P(2, x), N * O * size, bad ? 1.0f : 0.5f, 7));
  has_setting = 0;
  VARIANTS(ctx, "nerve_dropout_backward", 3, nerve_dropout_backward(call_ctx, P(0, dx), P(1, dy), P(2, mask), N * O * size));
  /* The context's own setters. */
  int threads = nerve_context_threads(ctx);
  refused(ctx, "nerve_context_set_threads", "negative", nerve_context_set_threads(ctx, -1));
  refused(ctx, "nerve_context_set_isa", "unknown", nerve_context_set_isa(ctx, (nerve_isa)42));
  if (nerve_context_threads(ctx) != threads) {
    failures++;
    fprintf(stderr, "a refused nerve_context_set_threads changed the thread count\n");
  }
  refused(NULL, "nerve_context_reserve", "NULL context", nerve_context_reserve(NULL, 64));

  nerve_context_free(ctx);
  printf("%d refused calls checked, %d failures\n", refusals, failures);
  return failures == 0 ? 0 : 1;
}
