/*
 * dense_products.c: the dense layer's products at Lab E's shape (a batch of 32 through the
 * 6272 -> 784 layer) through libnerve's C API, best of 30 calls each, and one large square
 * product: to compare builds of the library (CMake's compiler against SwiftPM's clang) and
 * thread counts.
 *
 *   cmake -S . -B .build-cmake && cmake --build .build-cmake
 *   cc -O2 bench/dense_products.c -Iinclude -L.build-cmake -lnerve -Wl,-rpath,$PWD/.build-cmake \
 *     -o .build-cmake/dense_products && .build-cmake/dense_products 2
 */
#include "bench_c.h"

#include <stdio.h>

#define BEST(slot, call)                          \
  do {                                            \
    double t = now();                             \
    if ((call) != NERVE_OK) return 1;             \
    double took = now() - t;                      \
    if (took < best[slot]) best[slot] = took;     \
  } while (0)

int main(int argc, char **argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 2;
  const long M = 32, K = 6272, N = 784, S = 2048;
  nerve_context *ctx = bench_context(threads);
  if (!ctx) return 1;
  float *x = floats(M * K, 13), *w = floats(K * N, 17), *b = floats(N, 0), *y = floats(M * N, 0);
  float *dy = floats(M * N, 11), *dx = floats(M * K, 0), *dw = floats(K * N, 0);
  float *m = floats(K * N, 0), *v = floats(K * N, 0), *bm = floats(N, 0), *bv = floats(N, 0);
  double best[5] = {1e9, 1e9, 1e9, 1e9, 1e9};
  for (int r = 0; r < 30; r++) {
    BEST(0, nerve_dense_forward(ctx, y, x, w, b, M, K, N));
    BEST(1, nerve_dense_backward(ctx, dx, NULL, NULL, dy, x, w, M, K, N));
    BEST(2, nerve_dense_backward(ctx, NULL, dw, NULL, dy, x, w, M, K, N));
    BEST(3, nerve_dense_backward_adam(ctx, dx, w, b, m, v, bm, bv, dy, x, M, K, N, 1e-4f, 0.9f, 0.999f,
                                      1e-7f, 0.0f, 0.0f, r + 1));
  }
  float *A = floats(S * S, 5), *B = floats(S * S, 3), *C = floats(S * S, 0);
  for (int r = 0; r < 5; r++) BEST(4, nerve_dense_forward(ctx, C, A, B, NULL, S, S, S));
  const double gflop = 2.0 * M * K * N / 1e9;
  printf("%d thread(s), batch 32 through 6272 -> 784: forward %.2f ms (%.0f GFLOP/s), input gradient %.2f ms "
         "(%.0f), weight gradient %.2f ms (%.0f), backward fused with Adam %.2f ms; %ld^3: %.0f GFLOP/s\n",
         threads, best[0] * 1e3, gflop / best[0], best[1] * 1e3, gflop / best[1], best[2] * 1e3,
         gflop / best[2], best[3] * 1e3, S, 2.0 * S * S * S / 1e9 / best[4]);
  nerve_context_free(ctx);
  return 0;
}
