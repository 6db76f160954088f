/*
 * fused_step.c: Lab E's dense layer (a batch of 32 through 6272 -> 784) as training runs it, its
 * forward and then its backward fused with the Adam step, call after call, so each backward
 * finds the weights where a forward left them and the moments where the last step did. The best
 * of each over the calls, and the backward's mean. To compare builds of the library (link each
 * against its own) or parts of the fused path:
 *
 *   cmake -S . -B .build-cmake && cmake --build .build-cmake
 *   cc -O2 bench/fused_step.c -Iinclude -L.build-cmake -lnerve -Wl,-rpath,$PWD/.build-cmake \
 *     -o .build-cmake/fused_step && .build-cmake/fused_step THREADS [input|no-input] [ROWS] [CALLS] \
 *     [OUTPUTS] [BATCH]
 *
 * no-input leaves out the input gradient (din NULL): the weight gradient and the step alone.
 * ROWS (6272 by default) is the layer's inputs: fewer keep weights and moments in cache.
 * OUTPUTS (784) and BATCH (32) give other layers: `fused_step 1 input 784 2000 10` is Lab E's
 * classifier, whose input gradient's dots are 10 long; `fused_step 1 input 256 2000 10 256`
 * the fast recipe's.
 */
#include "bench_c.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 2;
  const char *part = argc > 2 ? argv[2] : "input";
  const int input = strcmp(part, "input") == 0;
  const long I = argc > 3 ? atol(argv[3]) : 6272, O = argc > 5 ? atol(argv[5]) : 784, N = argc > 6 ? atol(argv[6]) : 32;
  const int calls = argc > 4 ? atoi(argv[4]) : 100;
  if (threads < 1 || I < 1 || O < 1 || N < 1 || calls < 1 || (!input && strcmp(part, "no-input") != 0)) {
    fprintf(stderr, "usage: fused_step THREADS [input|no-input] [ROWS >= 1] [CALLS >= 1] [OUTPUTS >= 1] [BATCH >= 1]\n");
    return 2;
  }
  nerve_context *ctx = bench_context(threads);
  if (!ctx) return 1;
  float *x = random_floats(N * I, 13, 1.0f), *w = random_floats(I * O, 17, 0.02f), *b = floats(O, 0);
  float *y = floats(N * O, 0), *dy = random_floats(N * O, 11, 0.1f), *dx = floats(N * I, 0);
  float *m = floats(I * O, 0), *v = floats(I * O, 0), *bm = floats(O, 0), *bv = floats(O, 0);
  double best_f = 1e9, best_b = 1e9, sum_b = 0.0;
  for (int c = 0; c < calls; c++) {
    const double t0 = now();
    if (nerve_dense_forward(ctx, y, x, w, b, N, I, O) != NERVE_OK) return 1;
    const double t1 = now();
    if (nerve_dense_backward_adam(ctx, input ? dx : NULL, w, b, m, v, bm, bv, dy, x, N, I, O, 1e-4f, 0.9f,
                                  0.999f, 1e-7f, 0.0f, 0.0f, c + 1) != NERVE_OK)
      return 1;
    const double t2 = now();
    if (t1 - t0 < best_f) best_f = t1 - t0;
    if (t2 - t1 < best_b) best_b = t2 - t1;
    sum_b += t2 - t1;
  }
  printf("%d thread(s), batch %ld through %ld -> %ld, %d calls: forward best %.3f ms, backward + Adam%s best "
         "%.3f ms, mean %.3f ms\n",
         threads, N, I, O, calls, best_f * 1e3, input ? "" : " (no input gradient)", best_b * 1e3, sum_b / calls * 1e3);
  nerve_context_free(ctx);
  return 0;
}
