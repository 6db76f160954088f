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

/* A context of `threads` threads (0: the default) with the instruction set NERVE_BENCH_ISA names
 * (baseline, avx2 or avx512; unset: the best this CPU has), so that one machine can time the paths
 * another kind of CPU takes (avx2 on an AVX-512 machine for a Zen 3's). NULL, with the reason on
 * stderr, if the name is unknown or this CPU lacks the set. */
static inline nerve_context *bench_context(int threads) {
  nerve_context *ctx = NULL;
  if (nerve_context_create(&ctx, threads) != NERVE_OK) return NULL;
  const char *name = getenv("NERVE_BENCH_ISA");
  if (!name || !*name) return ctx;
  const nerve_isa isa = strcmp(name, "baseline") == 0 ? NERVE_ISA_BASELINE
                        : strcmp(name, "avx2") == 0   ? NERVE_ISA_AVX2
                        : strcmp(name, "avx512") == 0 ? NERVE_ISA_AVX512
                                                      : NERVE_ISA_AUTO;
  if (isa == NERVE_ISA_AUTO || nerve_context_set_isa(ctx, isa) != NERVE_OK) {
    fprintf(stderr, "NERVE_BENCH_ISA=%s: expected baseline, avx2 or avx512, one this CPU has\n", name);
    nerve_context_free(ctx);
    return NULL;
  }
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
