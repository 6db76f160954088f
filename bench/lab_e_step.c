/*
 * lab_e_step.c: one Lab E training step (a batch of 32: conv 32 3x3 "same" + ReLU, batch norm,
 * max pool, dense 6272 -> 784 + ReLU, dense 784 -> 10, Adam) taken apart: the trainer's
 * libnerve calls in its order, each timed, medians of 60 steps. Made-up but finite data: the
 * times, not the values, are the point (pseudo-random images and weights: with ramps, the pooled
 * maps were 69% zeros, which the dense forward skips, and it ran 3x faster than in training).
 * To compare builds of the library, or where a step goes.
 *
 *   cmake -S . -B .build-cmake && cmake --build .build-cmake
 *   cc -O2 bench/lab_e_step.c -Iinclude -L.build-cmake -lnerve -Wl,-rpath,$PWD/.build-cmake \
 *     -o .build-cmake/lab_e_step && .build-cmake/lab_e_step 2 [unfused | relu-joins | norm-apart]
 */
#include "bench_c.h"

#include <stdio.h>
#include <string.h>

enum { STEPS = 60, CALLS = 14 };

static const char *names[CALLS] = {
    "conv (+ relu) forward", "relu forward (unfused)",      "batch norm forward", "max pool (+ norm) forward",
    "dense 1 forward", "relu forward",      "dense 2 forward",    "dense 2 backward + Adam",
    "relu backward",   "dense 1 backward + Adam", "max pool backward", "batch norm (+ relu, pool) backward",
    "relu backward (unfused)", "conv backward (+ norm: default)"};
static double seconds[CALLS][STEPS];

#define TIMED(i, call) BENCH_TIMED(ctx, names[i], seconds[i][s], call)

/* The hidden layer's units made to fire as Lab E's do in training, where its ReLU's gradient is
 * about half zeros and 7.5% of the units are silent for a whole batch of 32 (their columns of
 * dh all zero, which the input gradient skips). With the same random images every step and a
 * made-up gradient, the steps drove 81% of the units silent for the whole batch: after each
 * step's forward (untimed), each unit's bias moves its batch mean to zero (h with it), and
 * every 13th unit is held off. */
static void hidden_units_as_in_training(float *h, float *b1, long N, long O) {
  for (long o = 0; o < O; o++) {
    double sum = 0.0;
    for (long n = 0; n < N; n++) sum += h[n * O + o];
    const float shift = (float)(-sum / (double)N) - (o % 13 == 0 ? 100.0f : 0.0f);
    b1[o] += shift;
    for (long n = 0; n < N; n++) h[n * O + o] += shift;
  }
}

int main(int argc, char **argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 2;
  /* "unfused": the ReLU's forward and backward as calls of their own, as before the trainer
   * joined them to the convolution's forward and batch norm's backward
   * (nerve_conv2d_forward_relu, nerve_batchnorm_backward_relu); "relu-joins": those joins,
   * but batch norm and the max pool still apart (before nerve_maxpool2d_forward_normalized
   * and nerve_batchnorm_backward_maxpool2d). */
  const int unfused = argc > 2 && strcmp(argv[2], "unfused") == 0;
  const int pool_apart = unfused || (argc > 2 && strcmp(argv[2], "relu-joins") == 0);
  /* "norm-apart": batch norm's backward writing its input gradient, then the convolution's from
   * it (before nerve_conv2d_backward_batchnorm_maxpool); so too in the two modes above. */
  const int norm_apart = pool_apart || (argc > 2 && strcmp(argv[2], "norm-apart") == 0);
  const long N = 32, P = N * 28 * 28, F = P * 32, I = 6272, O = 784;
  nerve_context *ctx = bench_context(threads);
  if (!ctx) return 1;
  if (nerve_context_reserve(ctx, nerve_conv2d_workspace_size(N, 28, 28, 1, 32, 3, 3, 1, 1, 1, 1, 28, 28)) != NERVE_OK) return 1;
  float *x = random_floats(P, 7, 1.0f), *cw = random_floats(9 * 32, 5, 0.5f), *cb = floats(32, 3), *conv = floats(F, 0), *act = floats(F, 0);
  float *norm = floats(F, 0), *mean = floats(32, 0), *invstd = floats(32, 0), *rmean = floats(32, 0);
  float *rvar = floats(32, 1), *gamma = floats(32, 1), *beta = floats(32, 0), *pooled = floats(N * I, 0);
  int32_t *argmax = nerve_alloc((size_t)(N * I) * sizeof(int32_t));
  float *w1 = random_floats(I * O, 17, 0.015f), *b1 = floats(O, 3), *h = floats(N * O, 0), *hr = floats(N * O, 0);
  float *m1 = floats(I * O, 0), *v1 = floats(I * O, 0), *bm1 = floats(O, 0), *bv1 = floats(O, 0);
  float *w2 = floats(O * 10, 13), *b2 = floats(10, 3), *out = floats(N * 10, 0), *m2 = floats(O * 10, 0);
  float *v2 = floats(O * 10, 0), *bm2 = floats(10, 0), *bv2 = floats(10, 0), *dout = floats(N * 10, 7);
  float *dh = floats(N * O, 0), *dpooled = floats(N * I, 0), *dnorm = floats(F, 0), *dact = floats(F, 0);
  float *dconv = floats(F, 0), *dcw = floats(9 * 32, 0), *dcb = floats(32, 0), *dgamma = floats(32, 0);
  float *dbeta = floats(32, 0);
  if (!argmax) return 1;
  for (int s = 0; s < STEPS; s++) {
    if (unfused) {
      TIMED(0, nerve_conv2d_forward(ctx, conv, x, cw, cb, N, 28, 28, 1, 32, 3, 3, 1, 1, 1, 1, 28, 28));
      TIMED(1, nerve_activation_forward(ctx, NERVE_ACTIVATION_RELU, act, conv, F));
    } else {
      TIMED(0, nerve_conv2d_forward_relu(ctx, act, x, cw, cb, N, 28, 28, 1, 32, 3, 3, 1, 1, 1, 1, 28, 28));
      seconds[1][s] = 0.0;
    }
    if (pool_apart) {
      TIMED(2, nerve_batchnorm_forward_train(ctx, norm, mean, invstd, rmean, rvar, act, gamma, beta, P, 32, 0.99f, 1e-3f));
      TIMED(3, nerve_maxpool2d_forward(ctx, pooled, argmax, norm, N, 28, 28, 32, 2, 2, 2, 2, 0, 0, 14, 14));
    } else {
      TIMED(2, nerve_batchnorm_forward_train(ctx, NULL, mean, invstd, rmean, rvar, act, gamma, beta, P, 32, 0.99f, 1e-3f));
      TIMED(3, nerve_maxpool2d_forward_normalized(ctx, pooled, argmax, act, mean, invstd, gamma, beta, N, 28, 28, 32, 2, 2,
                                                  2, 2, 0, 0, 14, 14));
    }
    TIMED(4, nerve_dense_forward(ctx, h, pooled, w1, b1, N, I, O));
    hidden_units_as_in_training(h, b1, N, O);
    TIMED(5, nerve_activation_forward(ctx, NERVE_ACTIVATION_RELU, hr, h, N * O));
    TIMED(6, nerve_dense_forward(ctx, out, hr, w2, b2, N, O, 10));
    TIMED(7, nerve_dense_backward_adam(ctx, dh, w2, b2, m2, v2, bm2, bv2, dout, hr, N, O, 10, 1e-4f, 0.9f,
                                       0.999f, 1e-7f, 0.0f, 0.0f, s + 1));
    TIMED(8, nerve_activation_backward(ctx, NERVE_ACTIVATION_RELU, dh, dh, h, hr, N * O));
    TIMED(9, nerve_dense_backward_adam(ctx, dpooled, w1, b1, m1, v1, bm1, bv1, dh, pooled, N, I, O, 1e-4f,
                                       0.9f, 0.999f, 1e-7f, 0.0f, 0.0f, s + 1));
    if (!norm_apart) {
      seconds[10][s] = seconds[11][s] = seconds[12][s] = 0.0;
      TIMED(13, nerve_conv2d_backward_batchnorm_maxpool(ctx, dcw, dcb, dgamma, dbeta, dpooled, argmax, act, gamma, mean,
                                                        invstd, 1, x, N, 28, 28, 1, 32, 3, 3, 1, 1, 1, 1, 28, 28, 2, 2,
                                                        2, 2, 0, 0, 14, 14));
      continue;
    }
    if (!pool_apart) {
      seconds[10][s] = seconds[12][s] = 0.0;
      TIMED(11, nerve_batchnorm_backward_maxpool2d(ctx, dconv, dgamma, dbeta, dpooled, argmax, act, gamma, mean, invstd, N,
                                                   28, 28, 32, 2, 2, 2, 2, 0, 0, 14, 14, 1));
    } else if (unfused) {
      TIMED(10, nerve_maxpool2d_backward(ctx, dnorm, dpooled, argmax, N, 28, 28, 32, 2, 2, 2, 2, 0, 0, 14, 14));
      TIMED(11, nerve_batchnorm_backward(ctx, dact, dgamma, dbeta, dnorm, act, gamma, mean, invstd, P, 32));
      TIMED(12, nerve_activation_backward(ctx, NERVE_ACTIVATION_RELU, dconv, dact, conv, act, F));
    } else {
      TIMED(10, nerve_maxpool2d_backward(ctx, dnorm, dpooled, argmax, N, 28, 28, 32, 2, 2, 2, 2, 0, 0, 14, 14));
      TIMED(11, nerve_batchnorm_backward_relu(ctx, dconv, dgamma, dbeta, dnorm, act, gamma, mean, invstd, P, 32));
      seconds[12][s] = 0.0;
    }
    TIMED(13, nerve_conv2d_backward(ctx, NULL, dcw, dcb, dconv, x, cw, N, 28, 28, 1, 32, 3, 3, 1, 1, 1, 1, 28, 28));
  }
  double step = 0.0, dense = 0.0;
  printf("%d thread(s), one Lab E step of 32 images, medians of %d steps:\n", threads, STEPS);
  for (int i = 0; i < CALLS; i++) {
    const double median = median_of(seconds[i], STEPS);
    step += median;
    if (i == 4 || i == 9) dense += median;
    printf("  %-30s %7.3f ms\n", names[i], median * 1e3);
  }
  printf("  step %.3f ms (%.2f s for the 1,563 steps of an epoch): the 6272 -> 784 layer %.3f ms, the rest %.3f ms\n",
         step * 1e3, step * 1563, dense * 1e3, (step - dense) * 1e3);
  nerve_context_free(ctx);
  return 0;
}
