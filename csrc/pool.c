/*
 * pool.c: max and average pooling on channels-last (NHWC) images, forward above backward.
 *   N batch, H W input size, C channels, PH PW window, SH SW strides, PT PL padding before
 *   the image (padding never wins a max and never counts in an average), OH OW output size.
 *   in [N,H,W,C], out [N,OH,OW,C]; argmax [N,OH,OW,C] holds, per output, the input position
 *   ih*W + iw that won the max.
 * Backward passes gather: each input pixel sums over the windows that cover it, so no two
 * threads write one element and results do not depend on the thread count.
 */
#include "internal.h"

#if NERVE_X86
#  include <immintrin.h>
#endif

typedef struct {
  int64_t N, H, W, C, PH, PW, SH, SW, PT, PL, OH, OW;
} pool_geom;

static nerve_status check_pool(nerve_context *ctx, const pool_geom *g, const char *func) {
  const int64_t v[] = {g->N, g->H, g->W, g->C, g->PH, g->PW, g->SH, g->SW, g->PT, g->PL, g->OH, g->OW};
  for (int i = 0; i < 12; i++)
    if (v[i] < 0) return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "negative size or padding");
  if (g->H < 1 || g->W < 1 || g->C < 1 || g->PH < 1 || g->PW < 1 || g->SH < 1 || g->SW < 1 ||
      g->OH < 1 || g->OW < 1)
    return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "image, channel, window, stride and output sizes must be >= 1");
  if (g->PT >= g->PH || g->PL >= g->PW)
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, func, "padding must be smaller than the window");
  /* Every product and sum the kernels take checked before it is taken: the last window's end,
   * the maps' sizes, and the windows' areas (the threads' grains). */
  if (!nerve__product_ok(g->OH - 1, g->SH) || !nerve__product_ok(g->OW - 1, g->SW) ||
      (g->OH - 1) * g->SH > INT64_MAX - g->PH || (g->OW - 1) * g->SW > INT64_MAX - g->PW ||
      !nerve__product_ok(g->H, g->W) || !nerve__product_ok(g->N, g->H * g->W) ||
      !nerve__product_ok(g->N * g->H * g->W, g->C) || !nerve__product_ok(g->OH, g->OW) ||
      !nerve__product_ok(g->N, g->OH * g->OW) || !nerve__product_ok(g->N * g->OH * g->OW, g->C) ||
      !nerve__product_ok(g->PH, g->PW) || !nerve__product_ok(g->OW * g->C, g->PH * g->PW) ||
      !nerve__product_ok(g->PH, g->W * g->C))
    return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "sizes too large");
  if ((g->OH - 1) * g->SH - g->PT >= g->H || (g->OW - 1) * g->SW - g->PL >= g->W)
    return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "output %lldx%lld does not fit a %lldx%lld input",
                       (long long)g->OH, (long long)g->OW, (long long)g->H, (long long)g->W);
  if (g->H * g->W > INT32_MAX) return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "sizes too large");
  return NERVE_OK;
}

/* The input rows [lo, hi) of output row o (clipped to the image). */
NERVE_INLINE void window(int64_t o, int64_t stride, int64_t pad, int64_t size, int64_t extent,
                         int64_t *lo, int64_t *hi) {
  int64_t a = o * stride - pad, b = a + size;
  *lo = a < 0 ? 0 : a;
  *hi = b > extent ? extent : b;
}

/* The outputs [lo, hi) whose windows cover input row i. */
NERVE_INLINE void covering(int64_t i, int64_t stride, int64_t pad, int64_t size, int64_t outs,
                           int64_t *lo, int64_t *hi) {
  int64_t t = i + pad; /* o*stride <= t < o*stride + size */
  int64_t first = t - size + 1 <= 0 ? 0 : (t - size + stride) / stride;
  int64_t last = t / stride;
  *lo = first;
  *hi = last + 1 < outs ? last + 1 : outs;
}

typedef struct {
  const nerve_context *ctx; /* the caller's: whether the max pool's AVX-512 forms may stream */
  const pool_geom *g;
  float *y;
  int32_t *argmax;
  const float *x, *dy;
  const int32_t *saved;
  /* nerve_maxpool2d_forward_normalized: batch norm's per-channel statistics and parameters */
  const float *mean, *invstd, *gamma, *beta;
  bool x_cached; /* x just written by the calling thread (a convolution's block): not fetched */
} pool_job;

#if NERVE_X86
/*
 * Whether the team running a max pool forward (AVX-512 only) writes its outputs with streaming
 * stores (nerve__streams_rows, where its context lets it): the next layer's weight gradient read
 * every image on every thread. Decided by the threads the runtime granted, not those asked
 * for: alone, a thread's outputs stay in its own cache. The fast recipe at 2 threads in a slow
 * phase of the Zen 4 host: the max pool forward 1,200-2,200 -> about 500 samples of an epoch's
 * 12,000 (perf, 2,000 a second), its one-thread share.
 */
static bool streams_outputs(const pool_job *j, int64_t C) {
  const int threads = nerve__team_threads();
  return nerve__streams_rows(j->ctx, threads, j->y, C) &&
         nerve__streams_rows(j->ctx, threads, j->argmax, C);
}
#endif

/* Channel c of the input pixel at x, batch-normalised first if `norm`. */
NERVE_INLINE float pool_input(const pool_job *j, const float *x, int64_t c, bool norm) {
  return norm ? nerve__batchnorm_value(x[c], j->mean[c], j->invstd[c], j->gamma[c], j->beta[c]) : x[c];
}

/* The maxima of channels [c0, c0 + CB) of one window: the running maxima stay in registers
 * while the window's pixels pass (y and argmax are written once). Strictly greater: the first
 * maximum in scan order wins, as in the reference. */
#define POOL_CB 16
NERVE_INLINE void max_of_window(const pool_job *j, int64_t n, int64_t h0, int64_t h1, int64_t w0,
                                int64_t w1, int64_t c0, float *y, int32_t *am, bool norm) {
  const pool_geom *g = j->g;
  const int64_t C = g->C;
  float best[POOL_CB];
  int32_t at[POOL_CB];
  const float *first = j->x + ((n * g->H + h0) * g->W + w0) * C;
  for (int k = 0; k < POOL_CB; k++) {
    best[k] = pool_input(j, first, c0 + k, norm);
    at[k] = (int32_t)(h0 * g->W + w0);
  }
  for (int64_t ih = h0; ih < h1; ih++)
    for (int64_t iw = w0; iw < w1; iw++) {
      const float *x = j->x + ((n * g->H + ih) * g->W + iw) * C;
      const int32_t pos = (int32_t)(ih * g->W + iw);
      for (int k = 0; k < POOL_CB; k++) {
        const float v = pool_input(j, x, c0 + k, norm);
        const int wins = v > best[k];
        best[k] = wins ? v : best[k];
        at[k] = wins ? pos : at[k];
      }
    }
  for (int k = 0; k < POOL_CB; k++) {
    y[c0 + k] = best[k];
    am[c0 + k] = at[k];
  }
}

/* Rows [r0, r1) of windows (r = n*OH + oh); with norm, of the batch-normalised input. */
NERVE_INLINE void maxpool_fwd_rows(void *data, int64_t r0, int64_t r1, bool norm) {
  pool_job *j = data;
  const pool_geom *g = j->g;
  const int64_t C = g->C, whole = C - C % POOL_CB;
  for (int64_t r = r0; r < r1; r++) { /* r = n*OH + oh */
    int64_t n = r / g->OH, oh = r % g->OH, h0, h1;
    window(oh, g->SH, g->PT, g->PH, g->H, &h0, &h1);
    for (int64_t ow = 0; ow < g->OW; ow++) {
      int64_t w0, w1;
      window(ow, g->SW, g->PL, g->PW, g->W, &w0, &w1);
      float *y = j->y + ((n * g->OH + oh) * g->OW + ow) * C;
      int32_t *am = j->argmax + ((n * g->OH + oh) * g->OW + ow) * C;
      for (int64_t c0 = 0; c0 < whole; c0 += POOL_CB) max_of_window(j, n, h0, h1, w0, w1, c0, y, am, norm);
      if (whole == C) continue;
      /* The last C % POOL_CB channels, through y and argmax in memory. */
      const float *first = j->x + ((n * g->H + h0) * g->W + w0) * C;
      for (int64_t c = whole; c < C; c++) {
        y[c] = pool_input(j, first, c, norm);
        am[c] = (int32_t)(h0 * g->W + w0);
      }
      for (int64_t ih = h0; ih < h1; ih++)
        for (int64_t iw = w0; iw < w1; iw++) {
          const float *x = j->x + ((n * g->H + ih) * g->W + iw) * C;
          const int32_t pos = (int32_t)(ih * g->W + iw);
          /* Stored whether or not it wins: a conditional store becomes a masked store, and the
           * next position's load of the same lines waits for it (slow on AMD). */
          for (int64_t c = whole; c < C; c++) {
            const float v = pool_input(j, x, c, norm);
            const int wins = v > y[c];
            y[c] = wins ? v : y[c];
            am[c] = wins ? pos : am[c];
          }
        }
    }
  }
}
NERVE_INLINE void maxpool_fwd_body(void *data, int64_t r0, int64_t r1) { maxpool_fwd_rows(data, r0, r1, false); }
NERVE_RANGE_KERNEL(maxpool_fwd);
NERVE_INLINE void maxpool_fwd_norm_body(void *data, int64_t r0, int64_t r1) { maxpool_fwd_rows(data, r0, r1, true); }
NERVE_RANGE_KERNEL(maxpool_fwd_norm);

#if NERVE_X86
/* Lanes m of 16 channels at x, batch-normalised first if norm (stats: mean, invstd, gamma,
 * beta of those channels). */
NERVE_TARGET_AVX512 NERVE_INLINE __m512 pool_input16(const float *x, __mmask16 m, const __m512 stats[4], bool norm) {
  const __m512 v = _mm512_maskz_loadu_ps(m, x);
  return norm ? nerve__batchnorm_value16(v, stats[0], stats[1], stats[2], stats[3]) : v;
}

/*
 * maxpool_fwd_body with the channels in registers 16 at a time, the last block masked (the
 * compiled body kept 24 channels' maxima partly in memory, and a window's argmax lanes stored
 * one by one). The same choice element by element: strictly greater (ordered, so a NaN never
 * wins), the first maximum in scan order kept. With norm, of the batch-normalised input.
 */
NERVE_TARGET_AVX512 NERVE_INLINE void maxpool_fwd_avx512_rows(void *data, int64_t r0, int64_t r1, bool norm) {
  pool_job *j = data;
  const pool_geom *g = j->g;
  const int64_t C = g->C, W = g->W;
  const bool stream = streams_outputs(j, C); /* whole vectors at 64-byte boundaries */
  for (int64_t r = r0; r < r1; r++) { /* r = n*OH + oh */
    int64_t n = r / g->OH, oh = r % g->OH, h0, h1;
    window(oh, g->SH, g->PT, g->PH, g->H, &h0, &h1);
    const float *image = j->x + n * g->H * W * C;
    if (r + 1 < r1) { /* the next row of windows' inputs, and its outputs unless streamed */
      int64_t nh0, nh1;
      window((r + 1) % g->OH, g->SH, g->PT, g->PH, g->H, &nh0, &nh1);
      if (!j->x_cached)
        nerve__prefetch(j->x + ((r + 1) / g->OH * g->H + nh0) * W * C, (nh1 - nh0) * W * C * (int64_t)sizeof(float),
                        false);
      if (!stream) {
        nerve__prefetch(j->y + (r + 1) * g->OW * C, g->OW * C * (int64_t)sizeof(float), true);
        nerve__prefetch(j->argmax + (r + 1) * g->OW * C, g->OW * C * (int64_t)sizeof(int32_t), true);
      }
    }
    for (int64_t ow = 0; ow < g->OW; ow++) {
      int64_t w0, w1;
      window(ow, g->SW, g->PL, g->PW, W, &w0, &w1);
      float *y = j->y + (r * g->OW + ow) * C;
      int32_t *am = j->argmax + (r * g->OW + ow) * C;
      for (int64_t c0 = 0; c0 < C; c0 += 16) {
        const __mmask16 m = nerve__lanes16(C - c0); /* the block's channels */
        __m512 stats[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        if (norm) {
          const float *from[4] = {j->mean, j->invstd, j->gamma, j->beta};
          for (int k = 0; k < 4; k++) stats[k] = _mm512_maskz_loadu_ps(m, from[k] + c0);
        }
        __m512 best = pool_input16(image + (h0 * W + w0) * C + c0, m, stats, norm);
        __m512i at = _mm512_set1_epi32((int32_t)(h0 * W + w0));
        for (int64_t ih = h0; ih < h1; ih++)
          for (int64_t iw = ih == h0 ? w0 + 1 : w0; iw < w1; iw++) {
            const __m512 x = pool_input16(image + (ih * W + iw) * C + c0, m, stats, norm);
            const __mmask16 wins = _mm512_cmp_ps_mask(x, best, _CMP_GT_OQ);
            best = _mm512_mask_mov_ps(best, wins, x);
            at = _mm512_mask_mov_epi32(at, wins, _mm512_set1_epi32((int32_t)(ih * W + iw)));
          }
        if (stream) {
          _mm512_stream_ps(y + c0, best);
          _mm512_stream_si512((__m512i *)(am + c0), at);
        } else {
          _mm512_mask_storeu_ps(y + c0, m, best);
          _mm512_mask_storeu_epi32(am + c0, m, at);
        }
      }
    }
  }
  if (stream) _mm_sfence(); /* the streamed lines seen by whoever reads them next */
}
NERVE_TARGET_AVX512 static void maxpool_fwd_avx512_blocks(void *data, int64_t r0, int64_t r1) {
  maxpool_fwd_avx512_rows(data, r0, r1, false);
}
NERVE_TARGET_AVX512 static void maxpool_fwd_norm_avx512_blocks(void *data, int64_t r0, int64_t r1) {
  maxpool_fwd_avx512_rows(data, r0, r1, true);
}

/* n (up to 8) channels of the input pixel at x, batch-normalised first if norm. */
NERVE_TARGET_AVX2 NERVE_INLINE __m256 pool_input8(const float *x, int64_t n, const __m256 stats[4], bool norm) {
  const __m256 v = nerve__avx2_load(x, n);
  return norm ? nerve__batchnorm_value8(v, stats[0], stats[1], stats[2], stats[3]) : v;
}

/*
 * maxpool_fwd_avx512_rows for AVX2: 8 channels at a time in registers, the last block partial.
 * gcc's copy of the compiled body kept its 16 channels' maxima and winners in memory (the fast
 * recipe's first convolution with its pool 1.45 -> 0.80 ms at 2 threads on a Zen 3; clang's
 * copy, the CLI's, was nearer: 0.47 -> 0.37-0.41 ms for that pool alone). The same choice
 * element by element.
 */
NERVE_TARGET_AVX2 NERVE_INLINE void maxpool_fwd_avx2_rows(void *data, int64_t r0, int64_t r1, bool norm) {
  pool_job *j = data;
  const pool_geom *g = j->g;
  const int64_t C = g->C, W = g->W;
  for (int64_t r = r0; r < r1; r++) { /* r = n*OH + oh */
    int64_t n = r / g->OH, oh = r % g->OH, h0, h1;
    window(oh, g->SH, g->PT, g->PH, g->H, &h0, &h1);
    const float *image = j->x + n * g->H * W * C;
    for (int64_t ow = 0; ow < g->OW; ow++) {
      int64_t w0, w1;
      window(ow, g->SW, g->PL, g->PW, W, &w0, &w1);
      float *y = j->y + (r * g->OW + ow) * C;
      int32_t *am = j->argmax + (r * g->OW + ow) * C;
      for (int64_t c0 = 0; c0 < C; c0 += 8) {
        const int64_t lanes = C - c0 < 8 ? C - c0 : 8;
        __m256 stats[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        if (norm) {
          const float *from[4] = {j->mean, j->invstd, j->gamma, j->beta};
          for (int k = 0; k < 4; k++) stats[k] = nerve__avx2_load(from[k] + c0, lanes);
        }
        __m256 best = pool_input8(image + (h0 * W + w0) * C + c0, lanes, stats, norm);
        __m256 at = _mm256_castsi256_ps(_mm256_set1_epi32((int32_t)(h0 * W + w0)));
        for (int64_t ih = h0; ih < h1; ih++)
          for (int64_t iw = ih == h0 ? w0 + 1 : w0; iw < w1; iw++) {
            const __m256 x = pool_input8(image + (ih * W + iw) * C + c0, lanes, stats, norm);
            const __m256 wins = _mm256_cmp_ps(x, best, _CMP_GT_OQ);
            best = _mm256_blendv_ps(best, x, wins);
            at = _mm256_blendv_ps(at, _mm256_castsi256_ps(_mm256_set1_epi32((int32_t)(ih * W + iw))), wins);
          }
        nerve__avx2_store(y + c0, lanes, best);
        nerve__avx2_store((float *)(am + c0), lanes, at);
      }
    }
  }
}
NERVE_TARGET_AVX2 static void maxpool_fwd_avx2_blocks(void *data, int64_t r0, int64_t r1) {
  maxpool_fwd_avx2_rows(data, r0, r1, false);
}
NERVE_TARGET_AVX2 static void maxpool_fwd_norm_avx2_blocks(void *data, int64_t r0, int64_t r1) {
  maxpool_fwd_avx2_rows(data, r0, r1, true);
}
#endif

/* The max pool forward for ctx (of the batch-normalised input if norm): AVX-512's or AVX2's
 * in registers, else the compiled copy. */
static nerve__range_fn maxpool_fwd_for(const nerve_context *ctx, bool norm) {
#if NERVE_X86
  if (ctx->isa == NERVE_ISA_AVX2) return norm ? maxpool_fwd_norm_avx2_blocks : maxpool_fwd_avx2_blocks;
#endif
  if (norm) return NERVE_AVX512_OR(ctx, maxpool_fwd_norm_avx512_blocks, maxpool_fwd_norm_isa[ctx->isa]);
  return NERVE_AVX512_OR(ctx, maxpool_fwd_avx512_blocks, maxpool_fwd_isa[ctx->isa]);
}

static pool_geom geom_of(int64_t N, const nerve__pool_window *p) {
  return (pool_geom){.N = N, .H = p->H, .W = p->W, .C = p->C, .PH = p->PH, .PW = p->PW,
                     .SH = p->SH, .SW = p->SW, .PT = p->PT, .PL = p->PL, .OH = p->OH, .OW = p->OW};
}

nerve_status nerve__maxpool_check(nerve_context *ctx, int64_t N, const nerve__pool_window *p,
                                  const char *func) {
  const pool_geom g = geom_of(N, p);
  return check_pool(ctx, &g, func);
}

void nerve__maxpool_images(const nerve_context *ctx, float *out, int32_t *argmax, const float *in,
                           const nerve__pool_window *p, int64_t n0, int64_t n1) {
  const pool_geom g = geom_of(n1, p);
  pool_job j = {.ctx = ctx, .g = &g, .y = out, .argmax = argmax, .x = in, .x_cached = true};
  maxpool_fwd_for(ctx, false)(&j, n0 * g.OH, n1 * g.OH);
}

/* nerve_maxpool2d_forward and its normalising form (j's statistics set if norm): the checks,
 * then the pass. func: the entry point errors name. */
static nerve_status forward_checked(nerve_context *ctx, pool_job j, pool_geom g, bool norm, const char *func) {
  nerve_status s = check_pool(ctx, &g, func);
  if (s != NERVE_OK || g.N == 0) return s;
  float *out = j.y;
  int32_t *argmax = j.argmax;
  const float *in = j.x, *mean = j.mean, *invstd = j.invstd, *gamma = j.gamma, *beta = j.beta;
  NERVE_CHECK_PTR_IN(ctx, out, func);
  NERVE_CHECK_PTR_IN(ctx, argmax, func);
  NERVE_CHECK_PTR_IN(ctx, in, func);
  if (norm) {
    NERVE_CHECK_PTR_IN(ctx, mean, func);
    NERVE_CHECK_PTR_IN(ctx, invstd, func);
    NERVE_CHECK_PTR_IN(ctx, gamma, func);
    NERVE_CHECK_PTR_IN(ctx, beta, func);
  }
  j.ctx = ctx, j.g = &g;
  const int64_t rows = g.N * g.OH, grain = (1 << 15) / (g.OW * g.C * g.PH * g.PW) + 1;
  nerve__parallel_for(ctx, rows, grain, maxpool_fwd_for(ctx, norm), &j);
  return NERVE_OK;
}

/*
 * in [N,H,W,C] -> out [N,OH,OW,C], argmax [N,OH,OW,C]
 */
nerve_status nerve_maxpool2d_forward(nerve_context *ctx, float *out, int32_t *argmax,
                                     const float *in, int64_t N, int64_t H, int64_t W, int64_t C,
                                     int64_t PH, int64_t PW, int64_t SH, int64_t SW, int64_t PT,
                                     int64_t PL, int64_t OH, int64_t OW) {
  NERVE_CHECK_CTX(ctx);
  const pool_geom g = {.N = N, .H = H, .W = W, .C = C, .PH = PH, .PW = PW, .SH = SH, .SW = SW,
                       .PT = PT, .PL = PL, .OH = OH, .OW = OW};
  return forward_checked(ctx, (pool_job){.y = out, .argmax = argmax, .x = in}, g, false, __func__);
}

/*
 * in [N,H,W,C], mean, invstd, gamma, beta [C] -> out [N,OH,OW,C], argmax [N,OH,OW,C]
 */
nerve_status nerve_maxpool2d_forward_normalized(nerve_context *ctx, float *out, int32_t *argmax,
                                                const float *in, const float *mean,
                                                const float *invstd, const float *gamma,
                                                const float *beta, int64_t N, int64_t H,
                                                int64_t W, int64_t C, int64_t PH, int64_t PW,
                                                int64_t SH, int64_t SW, int64_t PT, int64_t PL,
                                                int64_t OH, int64_t OW) {
  NERVE_CHECK_CTX(ctx);
  const pool_geom g = {.N = N, .H = H, .W = W, .C = C, .PH = PH, .PW = PW, .SH = SH, .SW = SW,
                       .PT = PT, .PL = PL, .OH = OH, .OW = OW};
  const pool_job j = {.y = out, .argmax = argmax, .x = in, .mean = mean, .invstd = invstd, .gamma = gamma, .beta = beta};
  return forward_checked(ctx, j, g, true, __func__);
}

void nerve__maxpool_owners(const nerve__pool_window *p, int64_t *owner) {
  for (int64_t i = 0; i < p->H + p->W; i++) {
    const bool row = i < p->H;
    int64_t lo, hi;
    if (row)
      covering(i, p->SH, p->PT, p->PH, p->OH, &lo, &hi);
    else
      covering(i - p->H, p->SW, p->PL, p->PW, p->OW, &lo, &hi);
    owner[i] = hi > lo ? lo : -1;
  }
}

/* The input row after those of window row oh, for windows that tile the image: the last row of
 * windows also owns the rows below it. */
NERVE_INLINE int64_t tiles_rows_end(const pool_geom *g, int64_t oh) {
  return oh == g->OH - 1 ? g->H : (oh + 1) * g->PH;
}

/* Windows that tile the image (stride = window, no padding): each input pixel lies in at most
 * one window, so each output row's job writes its own input rows, whole windows at a time, and
 * the last one also zeroes the rows below the last window. The value written, 0 + (won ? dy :
 * 0), is what the general body's sum gives for one covering window. r = n*OH + oh. */
NERVE_INLINE void maxpool_tiles_bwd_body(void *data, int64_t r0, int64_t r1) {
  pool_job *j = data;
  const pool_geom *g = j->g;
  const int64_t C = g->C, W = g->W, PH = g->PH, PW = g->PW;
  for (int64_t r = r0; r < r1; r++) {
    const int64_t n = r / g->OH, oh = r % g->OH;
    const int64_t h1 = tiles_rows_end(g, oh);
    if (r + 1 < r1) { /* the next row of windows: its gradients and winners, and its inputs */
      const int64_t next = (r + 1) * g->OW * C, nn = (r + 1) / g->OH, noh = (r + 1) % g->OH;
      const int64_t rows = tiles_rows_end(g, noh) - noh * PH;
      nerve__prefetch(j->dy + next, g->OW * C * (int64_t)sizeof(float), false);
      nerve__prefetch(j->saved + next, g->OW * C * (int64_t)sizeof(int32_t), false);
      nerve__prefetch(j->y + (nn * g->H + noh * PH) * W * C, rows * W * C * (int64_t)sizeof(float), true);
    }
    for (int64_t ih = oh * PH; ih < h1; ih++) {
      float *dx = j->y + (n * g->H + ih) * W * C;
      if (ih >= g->OH * PH) { /* below the last window */
        memset(dx, 0, (size_t)(W * C) * sizeof(float));
        continue;
      }
      for (int64_t ow = 0; ow < g->OW; ow++) {
        const int64_t o = ((n * g->OH + oh) * g->OW + ow) * C;
        const float *dy = j->dy + o;
        const int32_t *am = j->saved + o;
        const int64_t w1 = (ow + 1) * PW < W ? (ow + 1) * PW : W; /* a last window may be cut */
        for (int64_t iw = ow * PW; iw < w1; iw++) {
          const int32_t pos = (int32_t)(ih * W + iw);
          float *d = dx + iw * C;
          for (int64_t c = 0; c < C; c++) d[c] = nerve__maxpool_grad_value(am[c], pos, dy[c]);
        }
      }
      if (g->OW * PW < W) memset(dx + g->OW * PW * C, 0, (size_t)((W - g->OW * PW) * C) * sizeof(float));
    }
  }
}
NERVE_RANGE_KERNEL(maxpool_tiles_bwd);

#if NERVE_X86
/* maxpool_tiles_bwd_body with streaming stores (nerve__streams_rows: each pixel's channels whole
 * lines of din; the next convolution's backward read it on every thread): the same values, from
 * nerve__maxpool_grad_value's sum (0 + the winner's gradient, else 0 + 0). */
NERVE_TARGET_AVX512 static void maxpool_tiles_bwd_stream(void *data, int64_t r0, int64_t r1) {
  pool_job *j = data;
  const pool_geom *g = j->g;
  const int64_t C = g->C, W = g->W, PH = g->PH, PW = g->PW;
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t r = r0; r < r1; r++) {
    const int64_t n = r / g->OH, oh = r % g->OH, h1 = tiles_rows_end(g, oh);
    if (r + 1 < r1) { /* the next row of windows' gradients and winners */
      nerve__prefetch(j->dy + (r + 1) * g->OW * C, g->OW * C * (int64_t)sizeof(float), false);
      nerve__prefetch(j->saved + (r + 1) * g->OW * C, g->OW * C * (int64_t)sizeof(int32_t), false);
    }
    for (int64_t ih = oh * PH; ih < h1; ih++) {
      float *dx = j->y + (n * g->H + ih) * W * C;
      for (int64_t iw = 0; iw < W; iw++) {
        const int64_t ow = iw / PW, o = ((n * g->OH + oh) * g->OW + ow) * C;
        /* Below the last row of windows, or right of the last column: no window, zero. */
        const bool covered = ih < g->OH * PH && ow < g->OW;
        const __m512i pos = _mm512_set1_epi32((int32_t)(ih * W + iw));
        for (int64_t c0 = 0; c0 < C; c0 += 16) {
          __m512 v = zero;
          if (covered) {
            const __mmask16 won = _mm512_cmpeq_epi32_mask(_mm512_loadu_si512(j->saved + o + c0), pos);
            v = _mm512_add_ps(zero, _mm512_maskz_loadu_ps(won, j->dy + o + c0));
          }
          _mm512_stream_ps(dx + iw * C + c0, v);
        }
      }
    }
  }
  _mm_sfence(); /* the streamed lines seen by whoever reads them next */
}

/* The AVX-512 backward of windows that tile the image, streamed where the team that runs it (as
 * the runtime granted it: alone, a thread's din stays in its own cache) and din's rows allow. */
static void maxpool_tiles_bwd_streamed(void *data, int64_t r0, int64_t r1) {
  const pool_job *j = data;
  if (nerve__streams_rows(j->ctx, nerve__team_threads(), j->y, j->g->C))
    maxpool_tiles_bwd_stream(data, r0, r1);
  else
    maxpool_tiles_bwd_avx512(data, r0, r1);
}
#endif

/* The backward of windows that tile the image (AVX-512: streamed where its team can). */
static nerve__range_fn maxpool_tiles_bwd_for(const nerve_context *ctx) {
#if NERVE_X86
  if (ctx->isa == NERVE_ISA_AVX512) return maxpool_tiles_bwd_streamed;
#endif
  return maxpool_tiles_bwd_isa[ctx->isa];
}

NERVE_INLINE void maxpool_bwd_body(void *data, int64_t r0, int64_t r1) {
  pool_job *j = data;
  const pool_geom *g = j->g;
  const int64_t C = g->C;
  for (int64_t r = r0; r < r1; r++) { /* r = n*H + ih */
    int64_t n = r / g->H, ih = r % g->H, o0, o1;
    covering(ih, g->SH, g->PT, g->PH, g->OH, &o0, &o1);
    for (int64_t iw = 0; iw < g->W; iw++) {
      float *dx = j->y + ((n * g->H + ih) * g->W + iw) * C;
      const int32_t pos = (int32_t)(ih * g->W + iw);
      for (int64_t c = 0; c < C; c++) dx[c] = 0.0f;
      int64_t q0, q1;
      covering(iw, g->SW, g->PL, g->PW, g->OW, &q0, &q1);
      for (int64_t oh = o0; oh < o1; oh++)
        for (int64_t ow = q0; ow < q1; ow++) {
          const int64_t o = ((n * g->OH + oh) * g->OW + ow) * C;
          const float *dy = j->dy + o;
          const int32_t *am = j->saved + o;
          for (int64_t c = 0; c < C; c++) dx[c] += am[c] == pos ? dy[c] : 0.0f;
        }
    }
  }
}
NERVE_RANGE_KERNEL(maxpool_bwd);

/*
 * dout [N,OH,OW,C], argmax [N,OH,OW,C] -> din [N,H,W,C] (written)
 */
nerve_status nerve_maxpool2d_backward(nerve_context *ctx, float *din, const float *dout,
                                      const int32_t *argmax, int64_t N, int64_t H, int64_t W,
                                      int64_t C, int64_t PH, int64_t PW, int64_t SH, int64_t SW,
                                      int64_t PT, int64_t PL, int64_t OH, int64_t OW) {
  NERVE_CHECK_CTX(ctx);
  pool_geom g = {.N = N, .H = H, .W = W, .C = C, .PH = PH, .PW = PW, .SH = SH, .SW = SW,
                .PT = PT, .PL = PL, .OH = OH, .OW = OW};
  nerve_status s = check_pool(ctx, &g, __func__);
  if (s != NERVE_OK || N == 0) return s;
  NERVE_CHECK_PTR(ctx, din);
  NERVE_CHECK_PTR(ctx, dout);
  NERVE_CHECK_PTR(ctx, argmax);
  pool_job j = {.ctx = ctx, .g = &g, .y = din, .dy = dout, .saved = argmax};
  if (nerve__pool_tiles(PH, PW, SH, SW, PT, PL)) {
    const int64_t grain = (1 << 15) / (PH * W * C) + 1;
    nerve__parallel_for(ctx, N * OH, grain, maxpool_tiles_bwd_for(ctx), &j);
  } else
    nerve__parallel_for(ctx, N * H, (1 << 15) / (W * C) + 1, maxpool_bwd_isa[ctx->isa], &j);
  return NERVE_OK;
}

NERVE_INLINE void avgpool_fwd_body(void *data, int64_t r0, int64_t r1) {
  pool_job *j = data;
  const pool_geom *g = j->g;
  const int64_t C = g->C;
  for (int64_t r = r0; r < r1; r++) {
    int64_t n = r / g->OH, oh = r % g->OH, h0, h1;
    window(oh, g->SH, g->PT, g->PH, g->H, &h0, &h1);
    for (int64_t ow = 0; ow < g->OW; ow++) {
      int64_t w0, w1;
      window(ow, g->SW, g->PL, g->PW, g->W, &w0, &w1);
      float *y = j->y + ((n * g->OH + oh) * g->OW + ow) * C;
      for (int64_t c = 0; c < C; c++) y[c] = 0.0f;
      for (int64_t ih = h0; ih < h1; ih++)
        for (int64_t iw = w0; iw < w1; iw++) {
          const float *x = j->x + ((n * g->H + ih) * g->W + iw) * C;
          for (int64_t c = 0; c < C; c++) y[c] += x[c];
        }
      const float inv = 1.0f / (float)((h1 - h0) * (w1 - w0));
      for (int64_t c = 0; c < C; c++) y[c] *= inv;
    }
  }
}
NERVE_RANGE_KERNEL(avgpool_fwd);

/*
 * in [N,H,W,C] -> out [N,OH,OW,C]: the mean of each window's in-image elements
 */
nerve_status nerve_avgpool2d_forward(nerve_context *ctx, float *out, const float *in, int64_t N,
                                     int64_t H, int64_t W, int64_t C, int64_t PH, int64_t PW,
                                     int64_t SH, int64_t SW, int64_t PT, int64_t PL, int64_t OH,
                                     int64_t OW) {
  NERVE_CHECK_CTX(ctx);
  pool_geom g = {.N = N, .H = H, .W = W, .C = C, .PH = PH, .PW = PW, .SH = SH, .SW = SW,
                .PT = PT, .PL = PL, .OH = OH, .OW = OW};
  nerve_status s = check_pool(ctx, &g, __func__);
  if (s != NERVE_OK || N == 0) return s;
  NERVE_CHECK_PTR(ctx, out);
  NERVE_CHECK_PTR(ctx, in);
  pool_job j = {.ctx = ctx, .g = &g, .y = out, .x = in};
  nerve__parallel_for(ctx, N * OH, (1 << 15) / (OW * C * PH * PW) + 1, avgpool_fwd_isa[ctx->isa], &j);
  return NERVE_OK;
}

NERVE_INLINE void avgpool_bwd_body(void *data, int64_t r0, int64_t r1) {
  pool_job *j = data;
  const pool_geom *g = j->g;
  const int64_t C = g->C;
  for (int64_t r = r0; r < r1; r++) {
    int64_t n = r / g->H, ih = r % g->H, o0, o1;
    covering(ih, g->SH, g->PT, g->PH, g->OH, &o0, &o1);
    for (int64_t iw = 0; iw < g->W; iw++) {
      float *dx = j->y + ((n * g->H + ih) * g->W + iw) * C;
      for (int64_t c = 0; c < C; c++) dx[c] = 0.0f;
      int64_t q0, q1;
      covering(iw, g->SW, g->PL, g->PW, g->OW, &q0, &q1);
      for (int64_t oh = o0; oh < o1; oh++) {
        int64_t h0, h1;
        window(oh, g->SH, g->PT, g->PH, g->H, &h0, &h1);
        for (int64_t ow = q0; ow < q1; ow++) {
          int64_t w0, w1;
          window(ow, g->SW, g->PL, g->PW, g->W, &w0, &w1);
          const float inv = 1.0f / (float)((h1 - h0) * (w1 - w0));
          const float *dy = j->dy + ((n * g->OH + oh) * g->OW + ow) * C;
          for (int64_t c = 0; c < C; c++) dx[c] += dy[c] * inv;
        }
      }
    }
  }
}
NERVE_RANGE_KERNEL(avgpool_bwd);

/*
 * dout [N,OH,OW,C] -> din [N,H,W,C] (written)
 */
nerve_status nerve_avgpool2d_backward(nerve_context *ctx, float *din, const float *dout, int64_t N,
                                      int64_t H, int64_t W, int64_t C, int64_t PH, int64_t PW,
                                      int64_t SH, int64_t SW, int64_t PT, int64_t PL, int64_t OH,
                                      int64_t OW) {
  NERVE_CHECK_CTX(ctx);
  pool_geom g = {.N = N, .H = H, .W = W, .C = C, .PH = PH, .PW = PW, .SH = SH, .SW = SW,
                .PT = PT, .PL = PL, .OH = OH, .OW = OW};
  nerve_status s = check_pool(ctx, &g, __func__);
  if (s != NERVE_OK || N == 0) return s;
  NERVE_CHECK_PTR(ctx, din);
  NERVE_CHECK_PTR(ctx, dout);
  pool_job j = {.ctx = ctx, .g = &g, .y = din, .dy = dout};
  nerve__parallel_for(ctx, N * H, (1 << 15) / (W * C) + 1, avgpool_bwd_isa[ctx->isa], &j);
  return NERVE_OK;
}
