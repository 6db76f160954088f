/*
 * lab_a_head.c: the calls after Lab A's products in each of its 2,048-row chunks, through
 * libnerve's C API: the mean squared error and its gradient, the output sigmoid's backward and
 * the correct count, on 2,048 x 10 made-up outputs (about 30 chunks an epoch). Each call's
 * median over 2,000 rounds, in microseconds: to compare builds of the library, or thread counts.
 *
 *   cmake -S . -B .build-cmake && cmake --build .build-cmake
 *   cc -O2 bench/lab_a_head.c -Iinclude -L.build-cmake -lnerve -Wl,-rpath,$PWD/.build-cmake \
 *     -o .build-cmake/lab_a_head && .build-cmake/lab_a_head 2
 */
#include "bench_c.h"

#include <stdint.h>

enum { ROWS = 2048, CLASSES = 10, ROUNDS = 2000, CALLS = 3 };

int main(int argc, char **argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 2;
  nerve_context *ctx = bench_context(threads);
  if (!ctx) return 1;
  /* Sigmoid outputs in [0.45, 0.55), one-hot targets, labels cycling through the classes. */
  float *out = random_floats(ROWS * CLASSES, 3, 0.05f), *target = floats(ROWS * CLASSES, 0);
  float *grad = floats(ROWS * CLASSES, 0);
  int32_t *labels = nerve_alloc(ROWS * sizeof(int32_t));
  if (!labels) return 1;
  for (long i = 0; i < ROWS * CLASSES; i++) out[i] += 0.5f;
  for (int r = 0; r < ROWS; r++) {
    labels[r] = r % CLASSES;
    target[r * CLASSES + r % CLASSES] = 1.0f;
  }
  static double took[CALLS][ROUNDS];
  for (int r = 0; r < ROUNDS; r++) {
    double loss = 0.0;
    int64_t correct = 0;
    for (int c = 0; c < CALLS; c++) took[c][r] = 0.0;
    BENCH_TIMED(ctx, "mse", took[0][r],
                nerve_loss_mse(ctx, &loss, grad, out, target, ROWS, CLASSES, 60000));
    BENCH_TIMED(ctx, "sigmoid backward", took[1][r],
                nerve_activation_backward(ctx, NERVE_ACTIVATION_SIGMOID, grad, grad, NULL, out,
                                          ROWS * CLASSES));
    BENCH_TIMED(ctx, "correct count", took[2][r],
                nerve_count_correct(ctx, &correct, out, labels, ROWS, CLASSES));
  }
  static const char *names[CALLS] = {"mean squared error + gradient", "sigmoid backward",
                                     "correct count"};
  printf("%d thread(s), Lab A's %d x %d chunk, medians of %d rounds:\n", threads, ROWS, CLASSES,
         ROUNDS);
  for (int c = 0; c < CALLS; c++)
    printf("  %-30s %6.2f us\n", names[c], median_of(took[c], ROUNDS) * 1e6);
  nerve_context_free(ctx);
  return 0;
}
