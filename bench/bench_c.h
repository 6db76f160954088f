/*
 * bench_c.h: what the C benchmarks here share (dense_products.c, lab_e_step.c, lab_e_epoch.c,
 * fast_layers.c, fused_step.c, sparse_products.c, lab_a_head.c): a monotonic clock, a timed
 * libnerve call, the median of timings, and arrays of made-up but finite floats from libnerve's
 * allocator.
 */
#ifndef NERVE_BENCH_C_H
#define NERVE_BENCH_C_H

#include <nerve.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Runs `call`, a libnerve call on ctx, and adds its seconds to `elapsed`; if it fails, prints
 * `what` and the context's message and returns 1 from the calling function (main). */
#define BENCH_TIMED(ctx, what, elapsed, call)                                             \
  do {                                                                                     \
    const double bench_start_ = now();                                                     \
    if ((call) != NERVE_OK) {                                                              \
      fprintf(stderr, "%s: %s\n", (what), nerve_context_last_error(ctx));                  \
      return 1;                                                                            \
    }                                                                                      \
    (elapsed) += now() - bench_start_;                                                     \
  } while (0)

/* A context of `threads` threads (0: the default), or NULL; says on stderr if NERVE_ISA named
 * an instruction set (libnerve's choice for new contexts, include/nerve.h) that it did not take,
 * so that a timing of another CPU's paths (avx2 on an AVX-512 machine) is not silently this
 * one's. */
static inline nerve_context *bench_context(int threads) {
  nerve_context *ctx = NULL;
  if (nerve_context_create(&ctx, threads) != NERVE_OK) return NULL;
  static const char *const names[] = {"auto", "baseline", "avx2", "avx512"};
  const char *told = getenv("NERVE_ISA");
  const nerve_isa isa = nerve_context_isa(ctx);
  if (told && *told && (isa < NERVE_ISA_BASELINE || isa > NERVE_ISA_AVX512 || strcmp(told, names[isa]) != 0))
    fprintf(stderr, "NERVE_ISA=%s not taken: timing %s\n", told, isa <= NERVE_ISA_AVX512 ? names[isa] : "?");
  return ctx;
}

static int by_value(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The median of n timings (the upper one of an even count); sorts them in place. */
static inline double median_of(double *t, int n) {
  qsort(t, (size_t)n, sizeof(double), by_value);
  return t[n / 2];
}

/* n floats repeating a ramp of `pattern` values in [-0.05, 0.05), or zeros for pattern 0;
 * exits if memory is short. */
static float *floats(long n, int pattern) {
  float *p = nerve_alloc((size_t)n * sizeof(float));
  if (!p) exit(1);
  for (long i = 0; i < n; i++) p[i] = pattern ? (float)(i % pattern) / (10.0f * pattern) - 0.05f : 0.0f;
  return p;
}

/* n floats uniform in [-scale, scale) from a fixed linear congruential sequence; exits if memory
 * is short. Unlike floats()' ramps, a layer's outputs from these are not zero in patterns that
 * the products would skip. */
static inline float *random_floats(long n, unsigned seed, float scale) {
  float *p = nerve_alloc((size_t)n * sizeof(float));
  if (!p) exit(1);
  for (long i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    p[i] = scale * ((float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f);
  }
  return p;
}

#endif
