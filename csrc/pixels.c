/*
 * pixels.c: 8-bit pixels, as image files store them, into the floats the layers read.
 *   in [n] bytes -> out [n] = scale * in. Each element on its own, so threads can share the
 *   work any way; sharing it matters less for the arithmetic than for the pages: a data set's
 *   floats are fresh memory, and each thread takes the page faults of its own part.
 */
#include "internal.h"

#include <math.h>

typedef struct {
  float *out;
  const uint8_t *in;
  float scale;
} pixels_job;

NERVE_INLINE void pixels_body(void *data, int64_t b, int64_t e) {
  pixels_job *j = data;
  float *restrict out = j->out;
  const uint8_t *restrict in = j->in;
  const float scale = j->scale;
  for (int64_t i = b; i < e; i++) out[i] = (float)in[i] * scale;
}
NERVE_RANGE_KERNEL(pixels);

/* Rows [0, rows) of bytes (row stride lda) -> out [rows, n], on the calling thread with the
 * context's instruction set: for kernels whose teams convert their own blocks. */
void nerve__pixels_rows_here(const nerve_context *ctx, float *out, const uint8_t *in, int64_t lda,
                             int64_t rows, int64_t n, float scale) {
  for (int64_t r = 0; r < rows; r++) {
    pixels_job j = {.out = out + r * n, .in = in + r * lda, .scale = scale};
    pixels_isa[ctx->isa](&j, 0, n);
  }
}

/* Elements per thread worth starting one for (a few MB of fresh pages). */
enum { PIXELS_GRAIN = 1 << 20 };

/* in [n] -> out [n] */
nerve_status nerve_pixels_to_floats(nerve_context *ctx, float *out, const uint8_t *in, int64_t n,
                                    float scale) {
  NERVE_CHECK_CTX(ctx);
  NERVE_CHECK_SIZE(ctx, n);
  if (n == 0) return NERVE_OK;
  NERVE_CHECK_PTR(ctx, out);
  NERVE_CHECK_PTR(ctx, in);
  if (!isfinite(scale))
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, __func__, "scale must be finite, got %g",
                       (double)scale);
  pixels_job j = {.out = out, .in = in, .scale = scale};
  nerve__parallel_for(ctx, n, PIXELS_GRAIN, pixels_isa[ctx->isa], &j);
  return NERVE_OK;
}
