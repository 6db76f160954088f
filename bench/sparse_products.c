/*
 * sparse_products.c: Lab A's first layer (784 -> 30) over MNIST's 50,000 training images listed
 * as sparse rows, in chunks of 2,048 rows as a full-batch epoch takes them, through libnerve's
 * C API: the forward product and the weight gradient, medians of 40 epochs each, alternated.
 *
 *   cmake -S . -B .build-cmake && cmake --build .build-cmake
 *   cc -O2 bench/sparse_products.c -Iinclude -L.build-cmake -lnerve -lz \
 *     -Wl,-rpath,$PWD/.build-cmake -o .build-cmake/sparse_products && .build-cmake/sparse_products 2
 */
#include "bench_mnist.h"

#include <stdio.h>

enum { ROWS = 50000, COLS = 784, OUT = 30, CHUNK = 2048, EPOCHS = 40 };

int main(int argc, char **argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 2;
  const char *path = argc > 2 ? argv[2] : "Data/mnist/train-images-idx3-ubyte.gz";
  float *x = mnist_floats(path, ROWS);
  nerve_context *ctx = bench_context(threads);
  nerve_sparse *a = NULL;
  if (!ctx) return 1;
  if (nerve_sparse_create(ctx, &a, x, ROWS, COLS) != NERVE_OK) return 1;
  int64_t rows, cols, nonzeros;
  nerve_sparse_shape(a, &rows, &cols, &nonzeros);
  float *w = random_floats(COLS * OUT, 7, 0.1f), *b = floats(OUT, 3), *y = floats((long)ROWS * OUT, 0);
  float *dy = random_floats((long)ROWS * OUT, 11, 0.01f), *dw = floats(COLS * OUT, 0), *db = floats(OUT, 0);
  double forward[EPOCHS], gradient[EPOCHS];
  for (int e = 0; e < EPOCHS; e++) {
    double t = now();
    for (int64_t r = 0; r < ROWS; r += CHUNK) {
      const int64_t n = ROWS - r < CHUNK ? ROWS - r : CHUNK;
      if (nerve_dense_forward_sparse(ctx, y + r * OUT, a, r, w, b, n, COLS, OUT) != NERVE_OK) return 1;
    }
    forward[e] = now() - t;
    t = now();
    for (int64_t r = 0; r < ROWS; r += CHUNK) {
      const int64_t n = ROWS - r < CHUNK ? ROWS - r : CHUNK;
      if (nerve_dense_backward_sparse(ctx, dw, db, a, r, dy + r * OUT, n, COLS, OUT) != NERVE_OK) return 1;
    }
    gradient[e] = now() - t;
  }
  const double f = median_of(forward, EPOCHS), g = median_of(gradient, EPOCHS);
  double check = 0;
  for (long i = 0; i < COLS * OUT; i++) check += dw[i];
  printf("%d thread(s), %lld entries (%.1f a row): forward %.2f ms, weight and bias gradient %.2f ms "
         "an epoch (medians of %d; %.1f and %.1f ns an entry on each thread); checksum %.6g\n",
         threads, (long long)nonzeros, (double)nonzeros / ROWS, f * 1e3, g * 1e3, EPOCHS,
         f * 1e9 * threads / nonzeros, g * 1e9 * threads / nonzeros, check);
  nerve_sparse_destroy(a);
  nerve_context_free(ctx);
  return 0;
}
