/*
 * bench_mnist.h: Data/mnist's IDX files for the C benchmarks that read real images (link with
 * -lz): lab_e_epoch.c, sparse_products.c, fast_layers.c. Run them from the repository's root.
 */
#ifndef NERVE_BENCH_MNIST_H
#define NERVE_BENCH_MNIST_H

#include "bench_c.h"

#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

/* n bytes of a gzipped IDX file after its header of `header` bytes; exits if unreadable. */
static inline unsigned char *idx_bytes(const char *path, long header, long n) {
  gzFile f = gzopen(path, "rb");
  unsigned char *p = malloc((size_t)(header + n));
  if (!p) {
    fprintf(stderr, "%s: no memory for %ld bytes\n", path, header + n);
    exit(1);
  }
  long got = 0;
  while (f && got < header + n) {
    const int r = gzread(f, p + got, (unsigned)(header + n - got));
    if (r <= 0) break;
    got += r;
  }
  if (f) gzclose(f);
  if (got < header + n) {
    fprintf(stderr, "%s: cannot read %ld bytes (run from the repository's root)\n", path, header + n);
    exit(1);
  }
  return p + header;
}

/* The first `images` 28 x 28 images of an IDX images file (path), scaled to [0, 1] as the
 * trainer scales them, from libnerve's allocator; exits if unreadable. */
static inline float *mnist_floats(const char *path, long images) {
  const unsigned char *pixels = idx_bytes(path, 16, images * 784);
  float *x = floats(images * 784, 0);
  for (long i = 0; i < images * 784; i++) x[i] = pixels[i] / 255.0f;
  free((void *)(pixels - 16));
  return x;
}

#endif
