/*
 * test_refusals.c: a refused call changes nothing. Every function of nerve.h that returns a
 * status is called with a NULL context, with each required pointer NULL in turn, with a
 * negative size, and with an out-of-range setting; between them these reach the argument each
 * function checks last, so one that writes before it has checked everything is caught. Each
 * call must return a status, leave a message starting with the function's name, and leave
 * every buffer exactly as it was: all buffers live in one arena compared byte for byte. Before
 * its refusals, each function is called once as given, which must succeed and write to the
 * arena (otherwise its refusals would prove nothing). Everything runs on every instruction set
 * this CPU has, since the kernels (and the fused Adam backward's paths) differ between them.
 * Finally the functions of include/nerve.h (NERVE_HEADER) are listed, and each must have been
 * checked here.
 */
#include <nerve.h>

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0, refusals = 0;

/* The functions checked, for the comparison with the header. */
enum { MAX_FUNCTIONS = 96 };
static const char *checked[MAX_FUNCTIONS];
static int nchecked = 0;

static void note_checked(const char *function) {
  for (int i = 0; i < nchecked; i++)
    if (strcmp(checked[i], function) == 0) return;
  if (nchecked < MAX_FUNCTIONS) checked[nchecked++] = function;
}

#define TEST_ARENA_FLOATS (1 << 14)
#include "test_arena.h"

static void fill_arena(void) {
  fill_arena_uniform(12345, -0.25f);
}

/* The first float of the arena whose bytes changed (ARENA if none). */
static size_t first_change(void) {
  size_t i = 0;
  while (i < ARENA && memcmp(arena + i, before + i, sizeof(float)) == 0) i++;
  return i;
}

/* The context's message must start with "function:" (as nerve__fail writes it): naming this
 * function, not one it calls or one whose name merely contains it. */
static int names(const nerve_context *ctx, const char *function) {
  const char *message = nerve_context_last_error(ctx);
  size_t n = strlen(function);
  return strncmp(message, function, n) == 0 && message[n] == ':' && message[n + 1] != 0;
}

/* Checks one call that must be refused, and puts the arena back if it was changed. */
static void refused(nerve_context *ctx, const char *function, const char *variant,
                    nerve_status status) {
  refusals++;
  note_checked(function);
  if (status == NERVE_OK) {
    failures++;
    fprintf(stderr, "%s (%s): accepted, expected a refusal\n", function, variant);
  } else if (ctx && !names(ctx, function)) {
    failures++;
    fprintf(stderr, "%s (%s): message '%s' does not start with the function's name\n", function,
            variant, nerve_context_last_error(ctx));
  }
  if (memcmp(arena, before, sizeof arena) != 0) {
    failures++;
    fprintf(stderr, "%s (%s): refused (%s) but changed the buffers (first at float %zu)\n", function,
            variant, nerve_status_string(status), first_change());
    memcpy(arena, before, sizeof arena);
  }
}

/* Checks that the call as given (no variant applied) succeeds and writes to the arena, then
 * puts the arena back. */
static void accepted(nerve_context *ctx, const char *function, nerve_status status) {
  if (status != NERVE_OK) {
    failures++;
    fprintf(stderr, "%s: the valid call was refused: %s\n", function, nerve_context_last_error(ctx));
  } else if (memcmp(arena, before, sizeof arena) == 0) {
    failures++;
    fprintf(stderr, "%s: the valid call wrote nothing the test compares\n", function);
  }
  memcpy(arena, before, sizeof arena);
}

/* `P(k, p)`: the k-th required pointer of a call, NULL when the variant says so. */
#define P(k, p) (null == (k) ? NULL : (p))

/* A function's calls: as given (must succeed), then refused with a NULL context, with each of
 * its `pointers` required pointers NULL (`null` = k), with a negative size (`size` = -1), and,
 * if `has_setting`, with a bad setting (`bad` = 1). */
#define VARIANTS(function, pointers, call)                                                     \
  do {                                                                                         \
    int null = -1, bad = 0;                                                                    \
    int64_t size = 1;                                                                          \
    call_ctx = ctx;                                                                            \
    accepted(ctx, function, call);                                                             \
    call_ctx = NULL;                                                                           \
    refused(NULL, function, "NULL context", call);                                             \
    call_ctx = ctx;                                                                            \
    for (null = 0; null < (pointers); null++) {                                                \
      char label[32];                                                                          \
      snprintf(label, sizeof label, "pointer %d NULL", null);                                  \
      refused(ctx, function, label, call);                                                     \
    }                                                                                          \
    null = -1;                                                                                 \
    size = -1;                                                                                 \
    refused(ctx, function, "negative size", call);                                             \
    size = 1;                                                                                  \
    if (has_setting) {                                                                         \
      bad = 1;                                                                                 \
      refused(ctx, function, "bad setting", call);                                             \
    }                                                                                          \
    (void)bad; /* calls without a setting never read it */                                     \
  } while (0)

/* Every kernel on one context (whose instruction set the caller chose). */
static void kernels(nerve_context *ctx) {
  nerve_context *call_ctx = ctx;
  int has_setting;
  used = 0;
  /* Dense: N 3, I 5, O 4. */
  const int64_t N = 3, I = 5, O = 4;
  float *x = buffer(N * I), *w = buffer(I * O), *b = buffer(O), *y = buffer(N * O), *dy = buffer(N * O);
  float *dx = buffer(N * I), *dw = buffer(I * O), *db = buffer(O), *m = buffer(I * O), *v = buffer(I * O);
  float *bm = buffer(O), *bv = buffer(O), *probs = buffer(N * O), *target = buffer(N * O);
  double *loss = (double *)(void *)buffer(2);
  int32_t *classes = (int32_t *)(void *)buffer(N), *labels = (int32_t *)(void *)buffer(N);
  int32_t *bad_labels = (int32_t *)(void *)buffer(N);
  int64_t *correct = (int64_t *)(void *)buffer(2);
  double *sum = (double *)(void *)buffer(2);
  /* Convolution: N 2 images of 5x5x2, 3 filters 3x3, stride 1, padding 1. */
  const int64_t CN = 2, H = 5, W = 5, C = 2, K = 3;
  float *img = buffer(CN * H * W * C), *cw = buffer(3 * 3 * C * K), *cb = buffer(K), *cy = buffer(CN * H * W * K);
  float *cdy = buffer(CN * H * W * K), *cdx = buffer(CN * H * W * C), *cdw = buffer(3 * 3 * C * K), *cdb = buffer(K);
  /* Pooling: 2x2 windows, stride 2 over 5x5 images: 2x2 outputs. */
  float *py = buffer(CN * 2 * 2 * C), *pdy = buffer(CN * 2 * 2 * C), *pdx = buffer(CN * H * W * C);
  int32_t *arg = (int32_t *)(void *)buffer(CN * 2 * 2 * C);
  /* Winners in the convolution's K channels (positions in the 3x3 output of an unpadded one). */
  int32_t *conv_arg = (int32_t *)(void *)buffer(CN * 2 * 2 * K);
  /* Batch norm: 6 rows of 3 channels. */
  const int64_t R = 6, BC = 3;
  float *bx = buffer(R * BC), *by = buffer(R * BC), *gamma = buffer(BC), *beta = buffer(BC), *smean = buffer(BC);
  float *sinv = buffer(BC), *rmean = buffer(BC), *rvar = buffer(BC), *bdy = buffer(R * BC), *bdx = buffer(R * BC);
  float *dgamma = buffer(BC), *dbeta = buffer(BC), *mask = buffer(N * O);
  fill_arena();
  /* Valid labels and argmax positions, a label out of range in the last row (checked last),
   * and positive running variances. */
  for (int k = 0; k < N; k++) labels[k] = bad_labels[k] = k % (int)O;
  bad_labels[N - 1] = (int32_t)O;
  for (int k = 0; k < CN * 2 * 2 * C; k++) arg[k] = k % (int)(H * W);
  for (int k = 0; k < CN * 2 * 2 * K; k++) conv_arg[k] = k % 9;
  for (int k = 0; k < BC; k++) rvar[k] = 1.0f + 0.1f * k;
  memcpy(before, arena, sizeof arena);

  has_setting = 0;
  VARIANTS("nerve_dense_forward", 3, nerve_dense_forward(call_ctx, P(0, y), P(1, x), P(2, w), b, N * size, I, O));
  has_setting = 1;
  VARIANTS("nerve_dense_forward_pixels", 3,
           nerve_dense_forward_pixels(call_ctx, P(0, y), P(1, (const uint8_t *)(const void *)x),
                                      bad ? NAN : 1.0f / 255, P(2, w), b, N * size, I, O));
  has_setting = 0;
  /* din, dweight and dbias are optional outputs; in and weight are required by dweight and din. */
  VARIANTS("nerve_dense_backward", 3,
           nerve_dense_backward(call_ctx, dx, dw, db, P(0, dy), P(1, x), P(2, w), N * size, I, O));
  has_setting = 1;
  VARIANTS("nerve_dense_backward_sgd", 3,
           nerve_dense_backward_sgd(call_ctx, dx, P(0, w), b, P(1, dy), P(2, x), N * size, I, O, bad ? -1.0f : 0.1f));
  VARIANTS("nerve_dense_backward_adam", 5,
           nerve_dense_backward_adam(call_ctx, dx, P(0, w), b, P(1, m), P(2, v), bm, bv, P(3, dy), P(4, x), N * size, I, O,
                                     0.01f, 0.9f, 0.999f, 1e-7f, 0.0f, bad ? -1.0f : 0.0f, 3));
  VARIANTS("nerve_dense_backward_adam", 0,
           nerve_dense_backward_adam(call_ctx, dx, w, b, m, v, bm, bv, dy, x, N * size, I, O, 0.01f, 0.9f, 0.999f, 1e-7f,
                                     0.0f, 0.0f, bad ? 0 : 3));
  /* The bias's moments are checked last (the bias used to be stepped before them). */
  VARIANTS("nerve_dense_backward_adam", 2,
           nerve_dense_backward_adam(call_ctx, dx, w, b, m, v, P(0, bm), P(1, bv), dy, x, N * size, I, O, 0.01f,
                                     bad ? 1.5f : 0.9f, 0.999f, 1e-7f, 0.0f, 0.0f, 3));
  has_setting = 0;
  VARIANTS("nerve_dense_backward_adam_input", 3,
           nerve_dense_backward_adam_input(call_ctx, P(0, dx), P(1, dy), P(2, w), N * size, I, O));
  /* The dense calls joined to activations: their pointers, and a kind they cannot take (an
   * unknown one; LeCun's tanh backward, whose derivative needs its input). */
  has_setting = 1;
  VARIANTS("nerve_dense_forward_activation", 3,
           nerve_dense_forward_activation(call_ctx, bad ? (nerve_activation)99 : NERVE_ACTIVATION_SIGMOID, P(0, y),
                                          P(1, x), P(2, w), b, N * size, I, O));
  VARIANTS("nerve_dense_backward_activation", 3,
           nerve_dense_backward_activation(call_ctx, bad ? NERVE_ACTIVATION_LECUN_TANH : NERVE_ACTIVATION_SIGMOID, dx, dw,
                                           db, P(0, dy), P(1, x), P(2, w), N * size, I, O));
  /* Without a weight gradient, the input is still read: it is the activation's output. */
  VARIANTS("nerve_dense_backward_activation", 1,
           nerve_dense_backward_activation(call_ctx, bad ? (nerve_activation)99 : NERVE_ACTIVATION_RELU, dx, NULL, NULL,
                                           dy, P(0, x), w, N * size, I, O));
  VARIANTS("nerve_dense_backward_sgd_activation", 3,
           nerve_dense_backward_sgd_activation(call_ctx, bad ? NERVE_ACTIVATION_LECUN_TANH : NERVE_ACTIVATION_TANH, dx,
                                               P(0, w), b, P(1, dy), P(2, x), N * size, I, O, 0.1f));
  has_setting = 1;
  VARIANTS("nerve_activation_forward", 2,
           nerve_activation_forward(call_ctx, bad ? (nerve_activation)99 : NERVE_ACTIVATION_TANH, P(0, y), P(1, x), N * O * size));
  /* Which of in and out backward reads depends on the function: both kinds are tried. */
  VARIANTS("nerve_activation_backward", 3,
           nerve_activation_backward(call_ctx, bad ? (nerve_activation)99 : NERVE_ACTIVATION_SIGMOID, P(0, dx), P(1, dy), x,
                                     P(2, y), N * O * size));
  VARIANTS("nerve_activation_backward", 3,
           nerve_activation_backward(call_ctx, bad ? (nerve_activation)-1 : NERVE_ACTIVATION_LECUN_TANH, P(0, dx), P(1, dy),
                                     P(2, x), y, N * O * size));
  has_setting = 0;
  VARIANTS("nerve_softmax_forward", 2, nerve_softmax_forward(call_ctx, P(0, y), P(1, x), N * size, O));
  VARIANTS("nerve_softmax_backward", 3, nerve_softmax_backward(call_ctx, P(0, dx), P(1, dy), P(2, y), N * size, O));
  has_setting = 1;
  /* The loss value and gradient are each optional (either may be NULL), the inputs not. */
  VARIANTS("nerve_loss_mse", 2, nerve_loss_mse(call_ctx, loss, dy, P(0, y), P(1, target), N * size, O, bad ? 0 : N));
  VARIANTS("nerve_loss_softmax_cross_entropy", 2,
           nerve_loss_softmax_cross_entropy(call_ctx, loss, dy, probs, P(0, y), P(1, target), N * size, O, bad ? 0 : N));
  VARIANTS("nerve_loss_nll", 2,
           nerve_loss_nll(call_ctx, loss, dy, P(0, probs), P(1, target), N * size, O, bad ? -1.0f : 1e-7f, N));
  VARIANTS("nerve_sgd_step", 2, nerve_sgd_step(call_ctx, P(0, w), P(1, dw), I * O * size, 0.1f, bad ? -1.0f : 0.0f));
  VARIANTS("nerve_sgd_step", 0, nerve_sgd_step(call_ctx, w, dw, I * O * size, bad ? -0.1f : 0.1f, 0.0f));
  VARIANTS("nerve_momentum_step", 3,
           nerve_momentum_step(call_ctx, P(0, w), P(1, m), P(2, dw), I * O * size, 0.1f, bad ? NAN : 0.9f, 0.0f));
  VARIANTS("nerve_nesterov_step", 3,
           nerve_nesterov_step(call_ctx, P(0, w), P(1, m), P(2, dw), I * O * size, 0.1f, bad ? 1.5f : 0.9f, 0.0f));
  VARIANTS("nerve_adam_step", 4,
           nerve_adam_step(call_ctx, P(0, w), P(1, m), P(2, v), P(3, dw), I * O * size, 0.01f, 0.9f, 0.999f, 1e-7f, 0.0f,
                           0.0f, bad ? 0 : 2));
  VARIANTS("nerve_adam_step", 0,
           nerve_adam_step(call_ctx, w, m, v, dw, I * O * size, 0.01f, 0.9f, bad ? 2.0f : 0.999f, 1e-7f, 0.0f, 0.0f, 2));
  VARIANTS("nerve_rmsprop_step", 3,
           nerve_rmsprop_step(call_ctx, P(0, w), P(1, m), P(2, dw), I * O * size, 0.01f, 0.9f, bad ? 0.0f : 1e-7f, 0.0f));
  VARIANTS("nerve_adadelta_step", 4,
           nerve_adadelta_step(call_ctx, P(0, w), P(1, m), P(2, v), P(3, dw), I * O * size, 1.0f, bad ? 2.0f : 0.95f, 1e-6f, 0.0f));
  has_setting = 0;
  VARIANTS("nerve_argmax", 2, nerve_argmax(call_ctx, P(0, classes), P(1, y), N * size, O));
  has_setting = 1;
  /* The labels' range is checked last, after *correct could have been reset. */
  VARIANTS("nerve_count_correct", 3,
           nerve_count_correct(call_ctx, P(0, correct), P(1, y), P(2, bad ? bad_labels : labels), N * size, O));
  has_setting = 0;
  VARIANTS("nerve_sum_squares", 2, nerve_sum_squares(call_ctx, P(0, sum), P(1, x), N * I * size));
  VARIANTS("nerve_sum_abs", 2, nerve_sum_abs(call_ctx, P(0, sum), P(1, x), N * I * size));
  has_setting = 1;
  VARIANTS("nerve_pixels_to_floats", 2,
           nerve_pixels_to_floats(call_ctx, P(0, y), P(1, (const uint8_t *)(const void *)x), N * O * size,
                                  bad ? INFINITY : 1.0f / 255));
  has_setting = 0;
  /* Rows of x seen as N rows of O floats gathered into y; the bad setting an index past the
   * last row. */
  static const int64_t gather_rows[3] = {2, 0, 1}, gather_bad[3] = {2, 0, 3};
  has_setting = 1;
  VARIANTS("nerve_rows_gather", 3,
           nerve_rows_gather(call_ctx, P(0, y), P(1, x), P(2, bad ? gather_bad : gather_rows), N, O, 3 * size));
  has_setting = 0;
  has_setting = 1;
  VARIANTS("nerve_conv2d_forward", 3,
           nerve_conv2d_forward(call_ctx, P(0, cy), P(1, img), P(2, cw), cb, CN * size, H, W, C, K, 3, 3, 1, 1, 1, 1, bad ? 9 : H, W));
  VARIANTS("nerve_conv2d_forward_relu", 3,
           nerve_conv2d_forward_relu(call_ctx, P(0, cy), P(1, img), P(2, cw), cb, CN * size, H, W, C, K, 3, 3, 1, 1, 1, 1, bad ? 9 : H, W));
  float *cpooled = buffer(CN * 2 * 2 * K);
  int32_t *cargmax = (int32_t *)(void *)buffer(CN * 2 * 2 * K);
  /* (out may be NULL: the convolution's output is then not kept.) */
  VARIANTS("nerve_conv2d_forward_maxpool", 4,
           nerve_conv2d_forward_maxpool(call_ctx, cy, P(0, cpooled), P(1, cargmax), P(2, img), P(3, cw), cb, CN * size,
                                        H, W, C, K, 3, 3, 1, 1, 1, 1, H, W, 2, 2, 2, 2, bad ? 2 : 0, 0, 2, 2));
  accepted(ctx, "nerve_conv2d_forward_maxpool",
           nerve_conv2d_forward_maxpool(ctx, NULL, cpooled, cargmax, img, cw, cb, CN, H, W, C, K, 3, 3, 1, 1, 1, 1,
                                        H, W, 2, 2, 2, 2, 0, 0, 2, 2));
  VARIANTS("nerve_conv2d_backward", 3,
           nerve_conv2d_backward(call_ctx, cdx, cdw, cdb, P(0, cdy), P(1, img), P(2, cw), CN * size, H, W, C, K, 3, 3, 1, 1,
                                 bad ? 3 : 1, 1, H, W));
  /* Parameter gradients from a max pool's: padded (the two calls), then unpadded with 3x3
   * outputs pooled 2x2 into 1x1 (the output gradient never written, with AVX-512). */
  VARIANTS("nerve_conv2d_backward_maxpool", 3,
           nerve_conv2d_backward_maxpool(call_ctx, cdw, cdb, P(0, cpooled), P(1, conv_arg), P(2, img), CN * size, H, W, C,
                                         K, 3, 3, 1, 1, 1, 1, H, W, 2, 2, 2, 2, bad ? 2 : 0, 0, 2, 2));
  VARIANTS("nerve_conv2d_backward_maxpool", 3,
           nerve_conv2d_backward_maxpool(call_ctx, cdw, cdb, P(0, cpooled), P(1, conv_arg), P(2, img), CN * size, H, W, C,
                                         K, 3, 3, 1, 1, 0, 0, 3, 3, 2, 2, 2, 2, 0, bad ? 2 : 0, 1, 1));
  VARIANTS("nerve_maxpool2d_forward", 3,
           nerve_maxpool2d_forward(call_ctx, P(0, py), P(1, arg), P(2, img), CN * size, H, W, C, 2, 2, 2, 2, bad ? 2 : 0, 0, 2, 2));
  VARIANTS("nerve_maxpool2d_backward", 3,
           nerve_maxpool2d_backward(call_ctx, P(0, pdx), P(1, pdy), P(2, arg), CN * size, H, W, C, 2, 2, bad ? 0 : 2, 2, 0, 0, 2, 2));
  /* Normalising as it reads, with batch norm's buffers (3 channels) for the pool's 2. */
  VARIANTS("nerve_maxpool2d_forward_normalized", 7,
           nerve_maxpool2d_forward_normalized(call_ctx, P(0, py), P(1, arg), P(2, img), P(3, smean), P(4, sinv), P(5, gamma),
                                              P(6, beta), CN * size, H, W, C, 2, 2, 2, 2, bad ? 2 : 0, 0, 2, 2));
  /* From the pool's gradient; overlapping windows (stride 1) are refused. */
  VARIANTS("nerve_batchnorm_backward_maxpool2d", 6,
           nerve_batchnorm_backward_maxpool2d(call_ctx, pdx, dgamma, dbeta, P(0, pdy), P(1, arg), P(2, img), P(3, gamma),
                                              P(4, smean), P(5, sinv), CN * size, H, W, C, 2, 2, bad ? 1 : 2, 2, 0, 0, 2,
                                              2, 1));
  /* Through a batch norm between the convolution and the pool: padded (the output gradient
   * made as the products take it, with AVX-512 or AVX2), then unpadded 3x3 outputs pooled into
   * 1x1; overlapping windows (stride 1) are refused. */
  VARIANTS("nerve_conv2d_backward_batchnorm_maxpool", 7,
           nerve_conv2d_backward_batchnorm_maxpool(call_ctx, cdw, cdb, dgamma, dbeta, P(0, cpooled), P(1, conv_arg),
                                                   P(2, cy), P(3, gamma), P(4, smean), P(5, sinv), 1, P(6, img), CN * size,
                                                   H, W, C, K, 3, 3, 1, 1, 1, 1, H, W, 2, 2, bad ? 1 : 2, 2, 0, 0, 2, 2));
  VARIANTS("nerve_conv2d_backward_batchnorm_maxpool", 7,
           nerve_conv2d_backward_batchnorm_maxpool(call_ctx, cdw, cdb, dgamma, dbeta, P(0, cpooled), P(1, conv_arg),
                                                   P(2, cy), P(3, gamma), P(4, smean), P(5, sinv), 0, P(6, img), CN * size,
                                                   H, W, C, K, 3, 3, 1, 1, 0, 0, 3, 3, 2, 2, 2, 2, 0, bad ? 2 : 0, 1, 1));
  /* The same sums from a stored output gradient: padded (in slices, with AVX-512 or AVX2). */
  VARIANTS("nerve_conv2d_backward_sliced", 2,
           nerve_conv2d_backward_sliced(call_ctx, cdw, cdb, P(0, cdy), P(1, img), CN * size, H, W, C, K, 3, 3, 1, 1, 1, 1,
                                        bad ? 9 : H, W));
  VARIANTS("nerve_avgpool2d_forward", 2,
           nerve_avgpool2d_forward(call_ctx, P(0, py), P(1, img), CN * size, H, W, C, 2, 2, 2, 2, 0, 0, bad ? 7 : 2, 2));
  VARIANTS("nerve_avgpool2d_backward", 2,
           nerve_avgpool2d_backward(call_ctx, P(0, pdx), P(1, pdy), CN * size, H, W, C, bad ? 0 : 2, 2, 2, 2, 0, 0, 2, 2));
  /* Training moves the running averages: every pointer, then momentum and eps. (out may be
   * NULL: the statistics only.) */
  VARIANTS("nerve_batchnorm_forward_train", 7,
           nerve_batchnorm_forward_train(call_ctx, by, P(0, smean), P(1, sinv), P(2, rmean), P(3, rvar), P(4, bx),
                                         P(5, gamma), P(6, beta), R * size, BC, 0.9f, bad ? 0.0f : 1e-3f));
  VARIANTS("nerve_batchnorm_forward_train", 7,
           nerve_batchnorm_forward_train(call_ctx, NULL, P(0, smean), P(1, sinv), P(2, rmean), P(3, rvar), P(4, bx),
                                         P(5, gamma), P(6, beta), R * size, BC, 0.9f, bad ? 0.0f : 1e-3f));
  VARIANTS("nerve_batchnorm_forward_train", 0,
           nerve_batchnorm_forward_train(call_ctx, by, smean, sinv, rmean, rvar, bx, gamma, beta, R * size, BC, bad ? 1.5f : 0.9f, 1e-3f));
  VARIANTS("nerve_batchnorm_forward_infer", 6,
           nerve_batchnorm_forward_infer(call_ctx, P(0, by), P(1, bx), P(2, gamma), P(3, beta), P(4, rmean), P(5, rvar), R * size, BC,
                                         bad ? -1.0f : 1e-3f));
  has_setting = 0;
  VARIANTS("nerve_batchnorm_backward", 5,
           nerve_batchnorm_backward(call_ctx, bdx, dgamma, dbeta, P(0, bdy), P(1, bx), P(2, gamma), P(3, smean), P(4, sinv), R * size, BC));
  VARIANTS("nerve_batchnorm_backward_relu", 5,
           nerve_batchnorm_backward_relu(call_ctx, bdx, dgamma, dbeta, P(0, bdy), P(1, bx), P(2, gamma), P(3, smean), P(4, sinv), R * size, BC));
  has_setting = 1;
  VARIANTS("nerve_dropout_forward", 3,
           nerve_dropout_forward(call_ctx, P(0, y), P(1, mask), P(2, x), N * O * size, bad ? 1.0f : 0.5f, 7));
  VARIANTS("nerve_dropout_forward_at", 3,
           nerve_dropout_forward_at(call_ctx, P(0, y), P(1, mask), P(2, x), N * O * size, 0.5f, 7, bad ? -1 : 5));
  has_setting = 0;
  VARIANTS("nerve_dropout_backward", 3, nerve_dropout_backward(call_ctx, P(0, dx), P(1, dy), P(2, mask), N * O * size));
  /* Listed inputs: x as a nerve_sparse (the library's memory, outside the arena); a bad setting
   * is a first row that leaves the batch outside it. */
  nerve_sparse *listed = NULL;
  if (nerve_sparse_create(ctx, &listed, x, N, I) != NERVE_OK) {
    failures++;
    fprintf(stderr, "nerve_sparse_create: %s\n", nerve_context_last_error(ctx));
  }
  int64_t *nonzeros = (int64_t *)(void *)buffer(2);
  has_setting = 0;
  VARIANTS("nerve_sparse_count", 2, nerve_sparse_count(call_ctx, P(0, nonzeros), P(1, x), N * size, I));
  has_setting = 1;
  VARIANTS("nerve_dense_forward_sparse", 3,
           nerve_dense_forward_sparse(call_ctx, P(0, y), P(1, listed), bad ? 1 : 0, P(2, w), b, N * size, I, O));
  VARIANTS("nerve_dense_backward_sparse", 2,
           nerve_dense_backward_sparse(call_ctx, dw, db, P(0, listed), bad ? 1 : 0, P(1, dy), N * size, I, O));
  VARIANTS("nerve_dense_forward_sparse_activation", 3,
           nerve_dense_forward_sparse_activation(call_ctx, bad ? (nerve_activation)99 : NERVE_ACTIVATION_TANH, P(0, y),
                                                 P(1, listed), 0, P(2, w), b, N * size, I, O));
  /* nerve_sparse_create writes only *out, which it sets to NULL when it refuses. */
  static char listed_sentinel;
  nerve_sparse *made = (nerve_sparse *)(void *)&listed_sentinel;
  refused(NULL, "nerve_sparse_create", "NULL context", nerve_sparse_create(NULL, &made, x, N, I));
  refused(ctx, "nerve_sparse_create", "NULL out", nerve_sparse_create(ctx, NULL, x, N, I));
  refused(ctx, "nerve_sparse_create", "NULL values", nerve_sparse_create(ctx, &made, NULL, N, I));
  refused(ctx, "nerve_sparse_create", "negative size", nerve_sparse_create(ctx, &made, x, -N, I));
  if (made != NULL) {
    failures++;
    fprintf(stderr, "nerve_sparse_create: a refused call left *out non-NULL\n");
  }
  int64_t shape[3];
  refused(NULL, "nerve_sparse_shape", "NULL matrix", nerve_sparse_shape(NULL, &shape[0], &shape[1], &shape[2]));
  refused(NULL, "nerve_sparse_shape", "NULL rows", nerve_sparse_shape(listed, NULL, &shape[1], &shape[2]));
  nerve_sparse_destroy(listed);
}

/* The best instruction set this CPU has, as a fresh context resolves NERVE_ISA_AUTO. */
static nerve_isa best_isa(void) {
  nerve_context *probe = NULL;
  if (nerve_context_create(&probe, 1) != NERVE_OK) return NERVE_ISA_BASELINE;
  nerve_isa best = nerve_context_isa(probe);
  nerve_context_free(probe);
  return best;
}

/* The context's own functions: a refusal leaves its settings and the caller's pointer alone. */
static void context_functions(nerve_context *ctx) {
  const int threads = nerve_context_threads(ctx);
  const nerve_isa isa = nerve_context_isa(ctx), best = best_isa();
  /* The opposite of the CPU's choices: a refusal that fell back to AUTO would show. */
  const bool cached = nerve_context_stores(ctx) == NERVE_STORES_CACHED;
  const bool fetching = nerve_context_fetch_ahead(ctx) == NERVE_FETCH_ON;
  const nerve_status set_stores =
      nerve_context_set_stores(ctx, cached ? NERVE_STORES_STREAMED : NERVE_STORES_CACHED);
  const nerve_status set_fetch =
      nerve_context_set_fetch_ahead(ctx, fetching ? NERVE_FETCH_OFF : NERVE_FETCH_ON);
  if (set_stores != NERVE_OK || set_fetch != NERVE_OK) {
    failures++;
    fprintf(stderr, "a valid setting refused: %s\n", nerve_context_last_error(ctx));
  }
  const nerve_fetch fetch = nerve_context_fetch_ahead(ctx);
  const nerve_stores stores = nerve_context_stores(ctx);
  memcpy(before, arena, sizeof arena);
  refused(ctx, "nerve_context_set_threads", "negative", nerve_context_set_threads(ctx, -1));
  refused(NULL, "nerve_context_set_threads", "NULL context", nerve_context_set_threads(NULL, 2));
  refused(ctx, "nerve_context_set_whole_batch", "negative", nerve_context_set_whole_batch(ctx, -1));
  refused(NULL, "nerve_context_set_whole_batch", "NULL context", nerve_context_set_whole_batch(NULL, 2));
  refused(ctx, "nerve_context_set_isa", "unknown", nerve_context_set_isa(ctx, (nerve_isa)42));
  if (best < NERVE_ISA_AVX512)
    refused(ctx, "nerve_context_set_isa", "unsupported", nerve_context_set_isa(ctx, NERVE_ISA_AVX512));
  refused(NULL, "nerve_context_set_isa", "NULL context", nerve_context_set_isa(NULL, NERVE_ISA_BASELINE));
  refused(ctx, "nerve_context_set_fetch_ahead", "unknown", nerve_context_set_fetch_ahead(ctx, (nerve_fetch)3));
  refused(ctx, "nerve_context_set_fetch_ahead", "negative", nerve_context_set_fetch_ahead(ctx, (nerve_fetch)-1));
  refused(NULL, "nerve_context_set_fetch_ahead", "NULL context", nerve_context_set_fetch_ahead(NULL, NERVE_FETCH_ON));
  refused(ctx, "nerve_context_set_stores", "unknown",
          nerve_context_set_stores(ctx, (nerve_stores)3));
  refused(ctx, "nerve_context_set_stores", "negative",
          nerve_context_set_stores(ctx, (nerve_stores)-1));
  refused(NULL, "nerve_context_set_stores", "NULL context",
          nerve_context_set_stores(NULL, NERVE_STORES_CACHED));
  refused(NULL, "nerve_context_reserve", "NULL context", nerve_context_reserve(NULL, 64));
  refused(ctx, "nerve_context_reserve", "more than memory", nerve_context_reserve(ctx, SIZE_MAX));
  if (nerve_context_threads(ctx) != threads || nerve_context_isa(ctx) != isa ||
      nerve_context_fetch_ahead(ctx) != fetch || nerve_context_stores(ctx) != stores) {
    failures++;
    fprintf(stderr,
            "a refused setter changed the context (threads %d -> %d, isa %d -> %d, fetch %d -> %d, "
            "stores %d -> %d)\n",
            threads, nerve_context_threads(ctx), (int)isa, (int)nerve_context_isa(ctx), (int)fetch,
            (int)nerve_context_fetch_ahead(ctx), (int)stores, (int)nerve_context_stores(ctx));
  }
  /* nerve_context_create documents that *out is set to NULL on failure. */
  static char sentinel;
  nerve_context *created = (nerve_context *)(void *)&sentinel;
  refused(NULL, "nerve_context_create", "negative threads", nerve_context_create(&created, -1));
  if (created != NULL) {
    failures++;
    fprintf(stderr, "nerve_context_create: a refused call left *out non-NULL\n");
  }
  refused(NULL, "nerve_context_create", "NULL out", nerve_context_create(NULL, 1));
}

/* Every function of the header that returns a status must have been checked above. */
static void compare_with_header(void) {
#ifdef NERVE_HEADER
  FILE *f = fopen(NERVE_HEADER, "r");
  if (!f) {
    failures++;
    fprintf(stderr, "cannot open %s\n", NERVE_HEADER);
    return;
  }
  const char *prefix = "NERVE_API nerve_status ";
  char line[512];
  int declared = 0;
  while (fgets(line, sizeof line, f)) {
    const char *at = strstr(line, prefix);
    if (!at) continue;
    at += strlen(prefix);
    size_t n = strcspn(at, "( ");
    declared++;
    int found = 0;
    for (int i = 0; i < nchecked && !found; i++) found = strlen(checked[i]) == n && strncmp(checked[i], at, n) == 0;
    if (!found) {
      failures++;
      fprintf(stderr, "%.*s (declared in nerve.h) has no refusal checks\n", (int)n, at);
    }
  }
  fclose(f);
  printf("%d functions of nerve.h return a status; %d were checked:", declared, nchecked);
  for (int i = 0; i < nchecked; i++) printf(" %s", checked[i]);
  printf("\n");
#else
  printf("NERVE_HEADER not defined: the list of checked functions was not compared with nerve.h\n");
#endif
}

int main(void) {
  nerve_context *ctx = NULL;
  if (nerve_context_create(&ctx, 3) != NERVE_OK) return 1;
  const nerve_isa best = nerve_context_isa(ctx);
  for (int isa = NERVE_ISA_BASELINE; isa <= (int)best; isa++) {
    if (nerve_context_set_isa(ctx, (nerve_isa)isa) != NERVE_OK) {
      failures++;
      fprintf(stderr, "instruction set %d could not be selected: %s\n", isa, nerve_context_last_error(ctx));
      continue;
    }
    int before_isa = refusals;
    kernels(ctx);
    printf("instruction set %d: %d refused calls checked\n", isa, refusals - before_isa);
  }
  context_functions(ctx);
  nerve_context_free(ctx);
  compare_with_header();
  printf("%d refused calls checked, %d failures\n", refusals, failures);
  return failures == 0 ? 0 : 1;
}
