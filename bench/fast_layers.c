/*
 * fast_layers.c: the fast recipe's convolution layers (examples/fast-99.toml: conv 5x5 16 ->
 * pool 2 -> conv 3x3 16 -> 32 -> pool 2) and its dense 800 -> 256 layer's backward fused with
 * Adam on a batch of 192 through libnerve's C API, each call timed between the others' (so its
 * operands come from wherever those left them, as in training), best of 40: to compare builds
 * of the library, or thread counts. Made-up but finite data: pseudo-random, so the
 * convolutions' products find no zeros to skip, except in two rows: the second convolution's
 * input gradient from an output gradient made as training makes it (through a ReLU and its max
 * pool's backward), and the first convolution over MNIST's first 192 training images, whose
 * borders and strokes leave zeros where training meets them; the dense layer's inputs and
 * output gradient are half zeros, as after a relu.
 *
 *   cmake -S . -B .build-cmake && cmake --build .build-cmake
 *   cc -O2 bench/fast_layers.c -Iinclude -L.build-cmake -lnerve -lz -Wl,-rpath,$PWD/.build-cmake \
 *     -o .build-cmake/fast_layers && .build-cmake/fast_layers 2
 */
#include "bench_mnist.h"

#include <stdio.h>

enum { CALLS = 11, ROUNDS = 40 };

/* A refused call (an older library without out = NULL) is left out of the table. */
#define BEST(slot, call)                                                  \
  do {                                                                    \
    double t = now();                                                     \
    nerve_status status = (call);                                         \
    double took = now() - t;                                              \
    if (status == NERVE_OK && took < best[slot]) best[slot] = took;       \
  } while (0)

int main(int argc, char **argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 2;
  const long N = 192, F = 16, M1 = N * 24 * 24 * F, P1 = N * 12 * 12 * F, M2 = N * 10 * 10 * 32, P2 = N * 5 * 5 * 32;
  nerve_context *ctx = bench_context(threads);
  if (!ctx) return 1;
  const size_t w1 = nerve_conv2d_workspace_size(N, 28, 28, 1, F, 5, 5, 1, 1, 0, 0, 24, 24);
  const size_t w2 = nerve_conv2d_workspace_size(N, 12, 12, F, 32, 3, 3, 1, 1, 0, 0, 10, 10);
  if (nerve_context_reserve(ctx, w1 > w2 ? w1 : w2) != NERVE_OK) return 1;
  float *x = random_floats(N * 784, 7, 1.0f), *digits = mnist_floats("Data/mnist/train-images-idx3-ubyte.gz", N);
  float *w1s = random_floats(25 * F, 5, 0.3f), *b1 = floats(F, 3);
  float *dw1 = floats(25 * F, 0), *db1 = floats(F, 0), *conv1 = floats(M1, 0), *dconv1 = random_floats(M1, 9, 0.01f);
  float *pool1 = random_floats(P1, 11, 1.0f), *dpool1 = random_floats(P1, 3, 0.01f);
  float *w2s = random_floats(9 * F * 32, 5, 0.1f), *b2 = floats(32, 3), *dw2 = floats(9 * F * 32, 0), *db2 = floats(32, 0);
  float *dconv2 = random_floats(M2, 13, 0.01f), *pool2 = floats(P2, 0), *dx2 = floats(P1, 0);
  float *out1 = floats(P1, 0);
  const long DI = 800, DO = 256; /* the dense layer: inputs (32 x 5 x 5), outputs */
  float *dx = random_floats(N * DI, 17, 1.0f), *dw = random_floats(DI * DO, 19, 0.05f), *dwb = floats(DO, 0);
  float *ddy = random_floats(N * DO, 23, 0.01f), *ddx = floats(N * DI, 0);
  float *dm = floats(DI * DO, 0), *dv = floats(DI * DO, 0), *dbm = floats(DO, 0), *dbv = floats(DO, 0);
  for (long i = 0; i < N * DI; i++) dx[i] = dx[i] < 0 ? 0.0f : dx[i];
  for (long i = 0; i < N * DO; i++) ddy[i] = i * 2654435761u >> 7 & 1 ? 0.0f : ddy[i];
  int32_t *arg1 = nerve_alloc((size_t)P1 * sizeof(int32_t)), *arg2 = nerve_alloc((size_t)P2 * sizeof(int32_t));
  if (!arg1 || !arg2) return 1;
  /* Winners for the pool's backward: a real forward's. */
  if (nerve_maxpool2d_forward(ctx, out1, arg1, dconv1, N, 24, 24, F, 2, 2, 2, 2, 0, 0, 12, 12) != NERVE_OK) return 1;
  /* The second convolution's output gradient as training makes it: through its ReLU and max
   * pool's backward, non-zero only at a window's winner and where the ReLU passed (at most a
   * quarter of each map). */
  float *conv2 = random_floats(M2, 29, 1.0f), *dpool2 = random_floats(P2, 31, 0.01f), *dconv2p = floats(M2, 0);
  for (long i = 0; i < M2; i++) conv2[i] = conv2[i] < 0 ? 0.0f : conv2[i];
  if (nerve_maxpool2d_forward(ctx, pool2, arg2, conv2, N, 10, 10, 32, 2, 2, 2, 2, 0, 0, 5, 5) != NERVE_OK) return 1;
  if (nerve_maxpool2d_backward(ctx, dconv2p, dpool2, arg2, N, 10, 10, 32, 2, 2, 2, 2, 0, 0, 5, 5) != NERVE_OK) return 1;
  for (long i = 0; i < M2; i++) dconv2p[i] = conv2[i] > 0 ? dconv2p[i] : 0.0f;
  static const char *names[CALLS] = {
      "conv 1 + pool, output kept", "conv 1 + pool, output not kept", "max pool 1 alone",
      "conv 2 + pool, output not kept", "max pool 1 backward", "conv 1 weight gradient",
      "conv 2 weight gradient", "conv 2 input gradient", "dense backward + Adam",
      "conv 2 input gradient, pooled", "conv 1 + pool, MNIST images"};
  double best[CALLS];
  for (int i = 0; i < CALLS; i++) best[i] = 1e9;
  for (int r = 0; r < ROUNDS; r++) {
    BEST(0, nerve_conv2d_forward_maxpool(ctx, conv1, out1, arg1, x, w1s, b1, N, 28, 28, 1, F, 5, 5, 1, 1, 0, 0, 24, 24, 2, 2, 2, 2, 0, 0, 12, 12));
    BEST(1, nerve_conv2d_forward_maxpool(ctx, NULL, out1, arg1, x, w1s, b1, N, 28, 28, 1, F, 5, 5, 1, 1, 0, 0, 24, 24, 2, 2, 2, 2, 0, 0, 12, 12));
    BEST(2, nerve_maxpool2d_forward(ctx, out1, arg1, dconv1, N, 24, 24, F, 2, 2, 2, 2, 0, 0, 12, 12));
    BEST(10, nerve_conv2d_forward_maxpool(ctx, NULL, out1, arg1, digits, w1s, b1, N, 28, 28, 1, F, 5, 5, 1, 1, 0, 0, 24, 24, 2, 2, 2, 2, 0, 0, 12, 12));
    BEST(3, nerve_conv2d_forward_maxpool(ctx, NULL, pool2, arg2, pool1, w2s, b2, N, 12, 12, F, 32, 3, 3, 1, 1, 0, 0, 10, 10, 2, 2, 2, 2, 0, 0, 5, 5));
    BEST(4, nerve_maxpool2d_backward(ctx, conv1, dpool1, arg1, N, 24, 24, F, 2, 2, 2, 2, 0, 0, 12, 12));
    BEST(5, nerve_conv2d_backward(ctx, NULL, dw1, db1, dconv1, x, w1s, N, 28, 28, 1, F, 5, 5, 1, 1, 0, 0, 24, 24));
    BEST(6, nerve_conv2d_backward(ctx, NULL, dw2, db2, dconv2, pool1, w2s, N, 12, 12, F, 32, 3, 3, 1, 1, 0, 0, 10, 10));
    BEST(7, nerve_conv2d_backward(ctx, dx2, NULL, NULL, dconv2, pool1, w2s, N, 12, 12, F, 32, 3, 3, 1, 1, 0, 0, 10, 10));
    BEST(9, nerve_conv2d_backward(ctx, dx2, NULL, NULL, dconv2p, pool1, w2s, N, 12, 12, F, 32, 3, 3, 1, 1, 0, 0, 10, 10));
    BEST(8, nerve_dense_backward_adam(ctx, ddx, dw, dwb, dm, dv, dbm, dbv, ddy, dx, N, DI, DO, 1e-4f, 0.9f,
                                      0.999f, 1e-7f, 0.0f, 0.0f, r + 1));
  }
  printf("%d thread(s), the fast recipe's layers on %ld images, best of %d:\n", threads, N, ROUNDS);
  for (int i = 0; i < CALLS; i++) {
    if (best[i] < 1e9) printf("  %-32s %7.3f ms\n", names[i], best[i] * 1e3);
    else printf("  %-32s refused\n", names[i]);
  }
  return 0;
}
