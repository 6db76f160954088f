/*
 * conv.c: 2-D convolution on channels-last (NHWC) images, lowered to GEMM through im2col.
 *   N batch, H W input height and width, C input channels, K filters (output channels),
 *   KH KW kernel size, SH SW strides, PT PL padding rows/columns before the image,
 *   OH OW output size (padding after the image is whatever OH, OW imply).
 *   in [N,H,W,C], weight [KH,KW,C,K], bias [K], out [N,OH,OW,K].
 * Each output pixel (n, oh, ow) is a row of the lowered problem and each (kh, kw, c) a column,
 * so the weight is a [KH*KW*C, K] matrix and out = col . weight + bias. The lowering runs over
 * blocks of whole images sized to stay in cache, in the context's layer scratch. The input
 * gradient is the lowered gradient dout . weight^T summed back into the pixels (col2im), or on
 * AVX2 the same sums scattered from each output pixel without lowering (scatter_image).
 */
#include "internal.h"

#if NERVE_X86
#  include <immintrin.h>
#endif

typedef struct {
  int64_t N, H, W, C, K, KH, KW, SH, SW, PT, PL, OH, OW;
} conv_geom;

/* Rows (output pixels) per lowered block; whole images are kept together. */
enum { CONV_BLOCK_ROWS = 2048 };

static int64_t cols_of(const conv_geom *g) { return g->KH * g->KW * g->C; }
static int64_t images_per_block(const conv_geom *g) {
  int64_t per = CONV_BLOCK_ROWS / (g->OH * g->OW);
  if (per < 1) per = 1;
  return per < g->N ? per : g->N;
}
/*
 * The rows the input-gradient products choose their method by (dot products for few rows):
 * a whole block of the whole batch (nerve_context_set_whole_batch), the same for every block,
 * the last one included, and for every rank's share, so each row's result does not depend on
 * how the batch is split.
 */
static int64_t method_rows(const nerve_context *ctx, const conv_geom *g) {
  const int64_t pix = g->OH * g->OW, n = ctx->whole_batch > g->N ? ctx->whole_batch : g->N;
  int64_t per = CONV_BLOCK_ROWS / pix;
  if (per < 1) per = 1;
  return (per < n ? per : n) * pix;
}

/* 1x1, stride 1, unpadded: the input already is the lowered matrix. */
static bool is_pointwise(const conv_geom *g) {
  return g->KH == 1 && g->KW == 1 && g->SH == 1 && g->SW == 1 && g->PT == 0 && g->PL == 0 &&
         g->OH == g->H && g->OW == g->W;
}

static nerve_status check_geom(nerve_context *ctx, const conv_geom *g, const char *func) {
  const int64_t v[] = {g->N, g->H, g->W, g->C, g->K, g->KH, g->KW, g->SH, g->SW, g->PT, g->PL, g->OH, g->OW};
  for (int i = 0; i < 13; i++)
    if (v[i] < 0) return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "negative size or padding");
  if (g->H < 1 || g->W < 1 || g->C < 1 || g->K < 1 || g->KH < 1 || g->KW < 1 || g->SH < 1 ||
      g->SW < 1 || g->OH < 1 || g->OW < 1)
    return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func,
                       "image, channels, filters, kernel, stride and output sizes must be >= 1");
  if (g->PT >= g->KH || g->PL >= g->KW)
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, func,
                       "padding (%lld, %lld) must be smaller than the kernel (%lld, %lld)",
                       (long long)g->PT, (long long)g->PL, (long long)g->KH, (long long)g->KW);
  if ((g->OH - 1) * g->SH - g->PT >= g->H || (g->OW - 1) * g->SW - g->PL >= g->W)
    return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func,
                       "output %lldx%lld does not fit a %lldx%lld input with this kernel, stride and padding",
                       (long long)g->OH, (long long)g->OW, (long long)g->H, (long long)g->W);
  if (!nerve__product_ok(g->N * g->OH * g->OW, cols_of(g)) || !nerve__product_ok(g->N * g->H * g->W, g->C) ||
      cols_of(g) > INT32_MAX || g->K > INT32_MAX)
    return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "sizes too large");
  return NERVE_OK;
}

/* ---- Lowering ---------------------------------------------------------------------------- */

typedef struct {
  const conv_geom *g;
  float *col;       /* [rows, ld]: columns [k0, k1) of the lowered rows (k1 = 0: all of them) */
  const float *in;  /* first image of the block */
  int64_t k0, k1, ld;
} im2col_job;

/* n floats from src to dst, or zeros without src; nothing at or past end is written. */
typedef void (*copy_fn)(float *dst, const float *src, int64_t n, const float *end);

/* Plain loops: with few channels (1 for MNIST) a memcpy call per run costs more than the copy. */
static inline void copy_run(float *dst, const float *src, int64_t n, const float *end) {
  (void)end;
  if (src)
    for (int64_t i = 0; i < n; i++) dst[i] = src[i];
  else
    for (int64_t i = 0; i < n; i++) dst[i] = 0.0f;
}

/* Rows [r0, r1) of the lowered block, columns [k0, k1): row (n, oh, ow) holds the window's
 * pixels in (kh, kw, c) order. A window row inside the image is one contiguous run of KW*C
 * input floats; a column range takes the part of each run it covers. */
NERVE_INLINE void im2col_with(copy_fn copy, void *data, int64_t r0, int64_t r1) {
  im2col_job *j = data;
  const conv_geom *g = j->g;
  const int64_t C = g->C, run = g->KW * C, pix = g->OH * g->OW;
  const int64_t k0 = j->k0, k1 = j->k1 > 0 ? j->k1 : cols_of(g), ld = j->ld > 0 ? j->ld : k1 - k0;
  const int64_t kh0 = k0 / run, kh1 = (k1 + run - 1) / run;
  int64_t n = r0 / pix, oh = r0 % pix / g->OW, ow = r0 % g->OW;
  const float *end = j->col + r1 * ld;
  for (int64_t r = r0; r < r1; r++) {
    float *row = j->col + r * ld;
    const float *img = j->in + n * g->H * g->W * C;
    const int64_t iw0 = ow * g->SW - g->PL;
    const bool inside = iw0 >= 0 && iw0 + g->KW <= g->W;
    for (int64_t kh = kh0; kh < kh1; kh++) {
      /* Columns [a, b) of this window row, written at row + (a - k0). */
      const int64_t a = kh * run > k0 ? kh * run : k0, b = (kh + 1) * run < k1 ? (kh + 1) * run : k1;
      float *dst = row + (a - k0);
      const int64_t ih = oh * g->SH - g->PT + kh;
      if (ih < 0 || ih >= g->H) {
        copy(dst, NULL, b - a, end);
      } else if (inside) {
        copy(dst, img + (ih * g->W + iw0) * C + (a - kh * run), b - a, end);
      } else {
        for (int64_t kw = (a - kh * run) / C; kw * C + kh * run < b; kw++) {
          const int64_t iw = iw0 + kw, p = kh * run + kw * C;
          const int64_t c0 = p > a ? 0 : a - p, c1 = p + C < b ? C : b - p;
          copy(dst + (p + c0 - a), iw < 0 || iw >= g->W ? NULL : img + (ih * g->W + iw) * C + c0, c1 - c0, end);
        }
      }
    }
    if (++ow == g->OW) {
      ow = 0;
      if (++oh == g->OH) oh = 0, n++;
    }
  }
}

static void im2col_plain(void *data, int64_t r0, int64_t r1) { im2col_with(copy_run, data, r0, r1); }

#if NERVE_X86
/*
 * Whole vectors, stored unmasked even for a short run (a 5-wide window on one channel): the
 * lowering writes its rows in address order, so what a store puts past the run is overwritten
 * by the runs after it. Only near the end of the range are stores masked: masked stores that
 * straddle cache lines are several times slower on AMD's cores, and most of these do.
 */
NERVE_TARGET_AVX512 NERVE_INLINE void copy_run_avx512(float *dst, const float *src, int64_t n,
                                                      const float *end) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, src ? _mm512_loadu_ps(src + i) : _mm512_setzero_ps());
  if (i < n) {
    const __mmask16 m = nerve__lanes16(n - i);
    const __m512 v = src ? _mm512_maskz_loadu_ps(m, src + i) : _mm512_setzero_ps();
    if (dst + i + 16 <= end)
      _mm512_storeu_ps(dst + i, v);
    else
      _mm512_mask_storeu_ps(dst + i, m, v);
  }
}
NERVE_TARGET_AVX512 static void im2col_avx512(void *data, int64_t r0, int64_t r1) {
  im2col_with(copy_run_avx512, data, r0, r1);
}
#endif

typedef struct {
  const conv_geom *g;
  float *din;        /* first image of the block */
  const float *dcol; /* [rows, KH*KW*C] */
} col2im_job;

/* Gather form: each input pixel sums its windows in a fixed (kh, kw) order; no two threads
 * write the same element and the result does not depend on the split. */
NERVE_INLINE void col2im_pixels_body(void *data, int64_t q0, int64_t q1) {
  col2im_job *j = data;
  const conv_geom *g = j->g;
  const int64_t cols = cols_of(g), C = g->C;
  for (int64_t q = q0; q < q1; q++) {
    int64_t n = q / (g->H * g->W), p = q % (g->H * g->W), ih = p / g->W, iw = p % g->W;
    float *dst = j->din + q * C;
    for (int64_t c = 0; c < C; c++) dst[c] = 0.0f;
    for (int64_t kh = 0; kh < g->KH; kh++) {
      int64_t th = ih + g->PT - kh;
      if (th < 0 || th % g->SH) continue;
      int64_t oh = th / g->SH;
      if (oh >= g->OH) continue;
      for (int64_t kw = 0; kw < g->KW; kw++) {
        int64_t tw = iw + g->PL - kw;
        if (tw < 0 || tw % g->SW) continue;
        int64_t ow = tw / g->SW;
        if (ow >= g->OW) continue;
        const float *src =
            j->dcol + ((n * g->OH + oh) * g->OW + ow) * cols + (kh * g->KW + kw) * C;
        for (int64_t c = 0; c < C; c++) dst[c] += src[c];
      }
    }
  }
}

/* The same sums vectorised for AVX2 (element by element, in the same order: the same bits). */
static void col2im_pixels(void *data, int64_t q0, int64_t q1) { col2im_pixels_body(data, q0, q1); }
NERVE_TARGET_AVX2 static void col2im_pixels_avx2(void *data, int64_t q0, int64_t q1) {
  col2im_pixels_body(data, q0, q1);
}

#if NERVE_X86
/* Taps (KH x KW) up to which col2im_pixels_avx512 reads interior pixels by fixed offsets. */
enum { COL2IM_MAX_TAPS = 64, COL2IM_RUN = 4 };

/*
 * COL2IM_RUN pixels side by side in a row, across from which every window lies inside the
 * output (stride 1): tap t of pixel i is at image[base + i * cols + off[t]], the row's taps in
 * col2im_pixels_avx512's order. Their sums go side by side: one pixel's adds each wait on the
 * one before.
 */
NERVE_TARGET_AVX512 static void col2im_run(float *dst, const float *image, int64_t base,
                                           const int64_t *off, int64_t taps, int64_t cols,
                                           int64_t C) {
  for (int64_t c0 = 0; c0 < C; c0 += 16) {
    const __mmask16 m = nerve__lanes16(C - c0);
    __m512 sum[COL2IM_RUN];
#  pragma GCC unroll 4
    for (int i = 0; i < COL2IM_RUN; i++) sum[i] = _mm512_setzero_ps();
    for (int64_t t = 0; t < taps; t++) {
      const float *src = image + (base + off[t] + c0);
#  pragma GCC unroll 4
      for (int i = 0; i < COL2IM_RUN; i++) sum[i] = _mm512_add_ps(sum[i], _mm512_maskz_loadu_ps(m, src + i * cols));
    }
#  pragma GCC unroll 4
    for (int i = 0; i < COL2IM_RUN; i++) _mm512_mask_storeu_ps(dst + i * C + c0, m, sum[i]);
  }
}

/* Row ih's taps for col2im_run, relative to the window base ((ih + PT) * OW + iw + PL) * cols:
 * the kernel rows that land inside the output, each with all its columns. */
static int64_t col2im_row_taps(const conv_geom *g, int64_t ih, int64_t cols, int64_t *off) {
  int64_t taps = 0;
  for (int64_t kh = 0; kh < g->KH; kh++) {
    if (ih + g->PT - kh < 0 || ih + g->PT - kh >= g->OH) continue;
    for (int64_t kw = 0; kw < g->KW; kw++) off[taps++] = (kh * g->KW + kw) * g->C - (kh * g->OW + kw) * cols;
  }
  return taps;
}

/* One pixel (ih, iw) of an image's lowered gradient `image`, any stride: its windows' taps
 * that lie inside the output, in (kh, kw) order, 16 channels at a time. */
NERVE_TARGET_AVX512 static void col2im_pixel(const conv_geom *g, float *dst, const float *image,
                                             int64_t ih, int64_t iw, int64_t cols) {
  const int64_t C = g->C;
  for (int64_t c0 = 0; c0 < C; c0 += 16) {
    const __mmask16 m = nerve__lanes16(C - c0);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t kh = 0; kh < g->KH; kh++) {
      const int64_t th = ih + g->PT - kh;
      if (th < 0 || (g->SH > 1 && th % g->SH)) continue;
      const int64_t oh = g->SH > 1 ? th / g->SH : th;
      if (oh >= g->OH) continue;
      for (int64_t kw = 0; kw < g->KW; kw++) {
        const int64_t tw = iw + g->PL - kw;
        if (tw < 0 || (g->SW > 1 && tw % g->SW)) continue;
        const int64_t ow = g->SW > 1 ? tw / g->SW : tw;
        if (ow >= g->OW) continue;
        const float *src = image + (oh * g->OW + ow) * cols + (kh * g->KW + kw) * C + c0;
        sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(m, src));
      }
    }
    _mm512_mask_storeu_ps(dst + c0, m, sum);
  }
}

/*
 * col2im_pixels with each pixel's sums in registers 16 channels at a time (the last block
 * masked), the pixel's coordinates stepped instead of divided out, and no division for stride
 * 1; at stride 1, runs of pixels across from which every window column lies inside the output
 * go COL2IM_RUN at a time (col2im_run: the fast recipe's second convolution, 96 of each
 * image's 144 pixels). Each element adds the same terms from 0 in the same (kh, kw) order: the
 * same bits.
 */
NERVE_TARGET_AVX512 static void col2im_pixels_avx512(void *data, int64_t q0, int64_t q1) {
  col2im_job *j = data;
  const conv_geom *g = j->g;
  const int64_t cols = cols_of(g), C = g->C;
  const bool runs = g->SH == 1 && g->SW == 1 && g->KH * g->KW <= COL2IM_MAX_TAPS;
  int64_t off[COL2IM_MAX_TAPS], taps = 0, taps_row = -1;
  /* Across: KW - 1 - PL <= iw <= OW - 1 - PL, and inside the image. */
  const int64_t w_lo = g->KW - 1 - g->PL, w_hi = (g->OW - 1 - g->PL < g->W - 1 ? g->OW - 1 - g->PL : g->W - 1);
  int64_t n = q0 / (g->H * g->W), ih = q0 % (g->H * g->W) / g->W, iw = q0 % g->W;
  for (int64_t q = q0; q < q1;) {
    const float *image = j->dcol + n * g->OH * g->OW * cols;
    if (runs && iw >= w_lo && iw + COL2IM_RUN - 1 <= w_hi && q + COL2IM_RUN <= q1) {
      if (taps_row != ih) taps = col2im_row_taps(g, ih, cols, off), taps_row = ih;
      col2im_run(j->din + q * C, image, ((ih + g->PT) * g->OW + iw + g->PL) * cols, off, taps, cols, C);
      q += COL2IM_RUN, iw += COL2IM_RUN;
    } else {
      col2im_pixel(g, j->din + q * C, image, ih, iw, cols);
      q++, iw++;
    }
    if (iw == g->W) {
      iw = 0;
      if (++ih == g->H) ih = 0, n++;
    }
  }
}
#endif

/* The col2im sums for ctx's instruction set. */
static nerve__range_fn col2im_for(const nerve_context *ctx) {
  return NERVE_AVX512_OR(ctx, col2im_pixels_avx512,
                         ctx->isa == NERVE_ISA_AVX2 ? col2im_pixels_avx2 : col2im_pixels);
}

static int64_t block_floats(const conv_geom *g) {
  return images_per_block(g) * g->OH * g->OW * cols_of(g);
}

/* A forward thread's part of the workspace: its lowered block and, when the layer's output is
 * not kept, its block of output after it. */
static int64_t forward_part_floats(const conv_geom *g, bool kept) {
  return block_floats(g) + (kept ? 0 : images_per_block(g) * g->OH * g->OW * g->K);
}

/* K filters rounded up to whole panels of 32: the row stride of the padded weight-gradient
 * copies the gathered products add into. */
static int64_t panel_width(int64_t K) { return (K + 31) / 32 * 32; }

/* One slice's partial gradients in nerve_conv2d_backward_maxpool: cols rows of ldp floats for
 * the weight, then ldp for the bias. */
static int64_t pooled_partial_floats(const conv_geom *g, int64_t ldp) { return (cols_of(g) + 1) * ldp; }

static int64_t pooled_frame_floats(const conv_geom *g, int64_t images);

size_t nerve_conv2d_workspace_size(int64_t N, int64_t H, int64_t W, int64_t C, int64_t K,
                                   int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PT,
                                   int64_t PL, int64_t OH, int64_t OW) {
  conv_geom g = {.N = N, .H = H, .W = W, .C = C, .K = K, .KH = KH, .KW = KW, .SH = SH, .SW = SW,
                .PT = PT, .PL = PL, .OH = OH, .OW = OW};
  if (N < 1 || OH < 1 || OW < 1 || KH < 1 || KW < 1 || C < 1 || K < 1) return 0;
  /* A lowered block, and for the input gradient a second one; or each forward thread's
   * lowered block and, when the output is not kept, its block of output; or the partial
   * gradients of nerve_conv2d_backward_maxpool's slices (one panel of filters) and, for padded
   * windows, a frame of a slice's images for each member (two, as the blocks count two). */
  const size_t blocks = 2 * (size_t)forward_part_floats(&g, false) * sizeof(float);
  const int64_t most = N < NERVE_CONV_POOLED_SLICES ? N : NERVE_CONV_POOLED_SLICES;
  const int64_t frames = 2 * pooled_frame_floats(&g, nerve_conv2d_pooled_slice_images(N));
  const size_t slices = K <= 32 ? (size_t)(most * pooled_partial_floats(&g, panel_width(K)) + frames) * sizeof(float) : 0;
  return blocks > slices ? blocks : slices;
}

/* Columns up to which a product reads windows in place (the kernels' reduction chunk). */
enum { GATHER_MAX_COLS = 2048 };

/* No padding, every window inside the image. */
static bool windows_inside(const conv_geom *g) {
  return g->PT == 0 && g->PL == 0 && (g->OH - 1) * g->SH + g->KH <= g->H &&
         (g->OW - 1) * g->SW + g->KW <= g->W;
}

/* Whether the products can read this convolution's windows in place: none is padded, the
 * columns fit the kernels' chunk, and offsets within an image fit int32. */
static bool gathers(const conv_geom *g) {
  return windows_inside(g) && cols_of(g) <= GATHER_MAX_COLS && g->H * g->W * g->C <= INT32_MAX;
}

/* off[k] for lowered column k = (kh, kw, c): its input's distance from the window's corner. */
static void window_offsets(const conv_geom *g, int32_t *off) {
  int64_t k = 0;
  for (int64_t kh = 0; kh < g->KH; kh++)
    for (int64_t kw = 0; kw < g->KW; kw++)
      for (int64_t c = 0; c < g->C; c++) off[k++] = (int32_t)((kh * g->W + kw) * g->C + c);
}

/* The lowered rows from first_row on, as the products read them in place (see gathers). */
static nerve__gather windows_from(const conv_geom *g, const float *in, int64_t first_row,
                                  const int32_t *off) {
  return (nerve__gather){.in = in, .first_row = first_row, .pix = g->OH * g->OW, .OW = g->OW,
                         .image_stride = g->H * g->W * g->C, .row_stride = g->SH * g->W * g->C,
                         .col_stride = g->SW * g->C, .off = off};
}

/* Whether a row's output does not depend on its block with AVX2: its stored and gathered
 * products are libnerve's own chains, columns within the gathered kernels' chunk. */
static bool lowered_gathers(const nerve_context *ctx, const conv_geom *g) {
  return ctx->isa == NERVE_ISA_AVX2 && cols_of(g) <= GATHER_MAX_COLS;
}

/* A padded convolution seen on its input copied with the zero borders its windows reach: the
 * same windows, none padded. */
static conv_geom padded_geom(const conv_geom *g) {
  conv_geom p = *g;
  p.H = (g->OH - 1) * g->SH + g->KH;
  p.W = (g->OW - 1) * g->SW + g->KW;
  p.PT = p.PL = 0;
  return p;
}

/* Whether the forward copies each block's images with their borders (pad_images) and reads
 * the windows in place, instead of lowering them: when the windows are padded, the copy fits
 * where the lowered block would go (KH*KW times smaller for stride 1), and the padded images
 * can be gathered. */
static bool pads_then_gathers(const conv_geom *g) {
  if (windows_inside(g)) return false;
  const conv_geom p = padded_geom(g);
  return gathers(&p) && images_per_block(g) * p.H * p.W * p.C <= block_floats(g);
}

/* images images of g's input (from src) into p's larger frame at dst, zero where padded. */
static void pad_images(const conv_geom *g, const conv_geom *p, float *dst, const float *src,
                       int64_t images) {
  const int64_t C = g->C;
  for (int64_t n = 0; n < images; n++) {
    const float *image = src + n * g->H * g->W * C;
    for (int64_t y = 0; y < p->H; y++) {
      float *row = dst + (n * p->H + y) * p->W * C;
      const int64_t sy = y - g->PT;
      if (sy < 0 || sy >= g->H) {
        memset(row, 0, (size_t)(p->W * C) * sizeof(float));
        continue;
      }
      /* Columns [x0, x1) of the frame come from the image; the rest are zero. */
      const int64_t x0 = g->PL, x1 = g->PL + g->W < p->W ? g->PL + g->W : p->W;
      memset(row, 0, (size_t)(x0 * C) * sizeof(float));
      memcpy(row + x0 * C, image + sy * g->W * C, (size_t)((x1 - x0) * C) * sizeof(float));
      memset(row + x1 * C, 0, (size_t)((p->W - x1) * C) * sizeof(float));
    }
  }
}

/* The windows of images [n0, n0 + images) as the products read them in place: where the
 * input is, or (pad) in a copy of those images with their borders, made at copy in framed's
 * frame. off: window_offsets of the geometry read. */
static nerve__gather block_windows(const conv_geom *g, const conv_geom *framed, bool pad,
                                   const float *in, int64_t n0, int64_t images, float *copy,
                                   const int32_t *off) {
  if (!pad) return windows_from(g, in, n0 * g->OH * g->OW, off);
  pad_images(g, framed, copy, in + n0 * g->H * g->W * g->C, images);
  return windows_from(framed, copy, 0, off);
}

/* Multiply-adds that justify a thread in a convolution's team (the products' own grain). */
enum { CONV_TEAM_GRAIN = 1 << 19 };
/* Blocks a forward team member takes, at least, where the batch has the images (see forward). */
enum { FORWARD_BLOCKS_PER_THREAD = 8 };

typedef struct {
  const nerve_context *ctx;
  const conv_geom *g;
  float *out, *col; /* col: each thread's part (forward_part_floats) */
  const float *in, *weight, *bias;
  int64_t blocks, per; /* blocks of `per` images (the last may have fewer) */
  /* A max pool of out, block by block (NULL: none). */
  const nerve__pool_window *pool;
  float *pooled;
  int32_t *argmax;
  bool relu;    /* out through a ReLU, block by block */
  int64_t next; /* the first block no member has taken (nerve__take_chunk) */
  bool by_shares; /* each member its own contiguous share of the blocks (next_block) */
} forward_job;

/*
 * The next block a member runs: from its own share, own[0] up to own[1], where the job goes by
 * shares, else whichever block no member has taken. By shares where the team's cores are far
 * apart (nerve__cores_far): each member then writes the images that the batch norm and max
 * pool after it, whose loops split rows in halves, read on the same core, where blocks taken as
 * members became free left about half of each map's lines to be fetched from the other die
 * (Lab E's first convolution 0.36 -> 0.185 ms a step at 2 threads in those minutes,
 * bench/lab_e_step.c; the fast recipe's epoch 1.85-1.86 -> 1.61-1.66 s). On one die, taking
 * blocks as members become free evens out a member slowed by other work.
 */
static bool next_block(forward_job *j, int64_t own[2], int64_t *b) {
  if (j->by_shares) {
    if (own[0] >= own[1]) return false;
    *b = own[0]++;
    return true;
  }
  int64_t end;
  return nerve__take_chunk(&j->next, 1, j->blocks, b, &end);
}

/* ReLU in place on n values, as nerve_activation_forward applies it. */
static void relu_in_place(float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = nerve__relu(y[i]);
}

/* Member t: the blocks next_block gives it (a block's output does not depend on who computes
 * it), lowered and multiplied here, in its own part of the workspace. */
static void forward_member(void *data, int t, int nt) {
  forward_job *j = data;
  const conv_geom *g = j->g;
  const int64_t cols = cols_of(g), pix = g->OH * g->OW, per = j->per;
  float *col = j->col + t * forward_part_floats(g, j->out != NULL);
  const nerve__range_fn lower = NERVE_AVX512_OR(j->ctx, im2col_avx512, im2col_plain);
  int32_t off[GATHER_MAX_COLS];
  /* Windows inside the image are read where they are; padded ones in a copy of each block's
   * images with their borders (only where the products can read in place: AVX-512, AVX2). */
  const bool pad = pads_then_gathers(g) && nerve__gemm_nn_gathers(j->ctx);
  const bool in_place = pad || gathers(g);
  const conv_geom seen = pad ? padded_geom(g) : *g; /* the geometry the products read */
  if (in_place) window_offsets(&seen, off);
  int64_t own[2] = {j->blocks * t / nt, j->blocks * (t + 1) / nt};
  for (int64_t b; next_block(j, own, &b);) {
    const int64_t n0 = b * per, images = g->N - n0 < per ? g->N - n0 : per, rows = images * pix;
    const float *images_in = j->in + n0 * g->H * g->W * g->C;
    /* Without out, the block's output lives after the lowered block, in cache, and goes no
     * further than the pool (the output of a first convolution is most of a step's traffic). */
    float *y = j->out ? j->out + n0 * pix * g->K : col + block_floats(g);
    if (is_pointwise(g)) {
      /* Reached only without out (with it, forward makes the layer one product, whose bits
       * nerve__gemm_nn_here gives block by block): the images' pixels are the lowered rows. */
      nerve__gemm_nn_here(j->ctx, y, g->K, images_in, g->C, j->weight, g->K, j->bias, rows, g->K, g->C);
    } else {
      const nerve__gather ga = block_windows(g, &seen, pad, j->in, n0, images, col, off);
      if (!(in_place && nerve__gemm_nn_gather_here(j->ctx, y, g->K, &ga, rows, j->weight, g->K, j->bias, g->K, cols))) {
        im2col_job ij = {.g = g, .col = col, .in = images_in};
        lower(&ij, 0, rows);
        nerve__gemm_nn_here(j->ctx, y, g->K, col, cols, j->weight, g->K, j->bias, rows, g->K, cols);
      }
    }
    /* Through the ReLU, and pooled, while the block's output is in this thread's cache. */
    if (j->relu) relu_in_place(y, rows * g->K);
    if (j->pool) {
      const int64_t pooled = n0 * j->pool->OH * j->pool->OW * j->pool->C;
      nerve__maxpool_images(j->ctx, j->pooled + pooled, j->argmax + pooled, y, j->pool, 0, images);
    }
  }
}

/*
 * Images per forward block for a team of `threads` (N >= 1): as many as stay in cache, fewer
 * where a member would get under FORWARD_BLOCKS_PER_THREAD: members take blocks as they become
 * free, and with few large ones the last left one waiting for the other (the fast recipe's
 * second convolution: 13 blocks of 20 images for two threads). Only with libnerve's own
 * products (AVX-512, AVX2 up to 2048 columns), where a row's output does not depend on the
 * block it is in; OpenBLAS's may give other bits.
 */
static int64_t forward_block_images(const nerve_context *ctx, const conv_geom *g, int threads) {
  const int64_t per = images_per_block(g), least = (int64_t)FORWARD_BLOCKS_PER_THREAD * threads;
  const bool own_products = ctx->isa == NERVE_ISA_AVX512 || lowered_gathers(ctx, g);
  if (threads > 1 && own_products && (g->N + per - 1) / per < least) return (g->N + least - 1) / least;
  return per;
}

/* The forward of checked sizes and pointers, pooling each block when pool is not NULL. */
static nerve_status forward(nerve_context *ctx, const conv_geom *g, float *out, const float *in,
                            const float *weight, const float *bias, const nerve__pool_window *pool,
                            float *pooled, int32_t *argmax, bool relu, const char *func) {
  const int64_t cols = cols_of(g), pix = g->OH * g->OW, K = g->K;
  if (is_pointwise(g) && out) {
    nerve_status s = nerve__gemm_nn(ctx, out, K, in, g->C, weight, K, false, bias, false, g->N * pix, K, g->C, func);
    if (s == NERVE_OK && relu) s = nerve_activation_forward(ctx, NERVE_ACTIVATION_RELU, out, out, g->N * pix * K);
    if (s == NERVE_OK && pool)
      s = nerve_maxpool2d_forward(ctx, pooled, argmax, out, g->N, pool->H, pool->W, pool->C, pool->PH,
                                  pool->PW, pool->SH, pool->SW, pool->PT, pool->PL, pool->OH, pool->OW);
    return s;
  }
  /* Threads share out whole blocks, each lowering and multiplying its own in its own part of
   * the workspace: one team for the layer, and each block stays in its thread's cache. */
  int threads = nerve__threads_for(ctx, g->N * pix * cols * K, CONV_TEAM_GRAIN);
  const int64_t chunk = forward_block_images(ctx, g, threads), blocks = (g->N + chunk - 1) / chunk;
  if (threads > blocks) threads = (int)blocks;
  const int64_t part = forward_part_floats(g, out != NULL);
  nerve_status s = nerve__scratch(ctx, NERVE_SCRATCH_LAYER, (size_t)threads * (size_t)part * sizeof(float), func);
  if (s != NERVE_OK) return s;
  forward_job fj = {.ctx = ctx, .g = g, .out = out, .in = in, .weight = weight, .bias = bias,
                    .col = ctx->scratch[NERVE_SCRATCH_LAYER], .blocks = blocks, .per = chunk, .pool = pool, .pooled = pooled, .argmax = argmax,
                    .relu = relu, .by_shares = threads > 1 && nerve__cores_far(ctx)};
  nerve__parallel_team(threads, forward_member, &fj);
  return NERVE_OK;
}

/* The checks and forward of both entry points below (func: the one errors name). */
static nerve_status forward_out(nerve_context *ctx, const conv_geom *g, float *out, const float *in,
                                const float *weight, const float *bias, bool relu,
                                const char *func) {
  nerve_status s = check_geom(ctx, g, func);
  if (s != NERVE_OK || g->N == 0) return s;
  NERVE_CHECK_PTR_IN(ctx, out, func);
  NERVE_CHECK_PTR_IN(ctx, in, func);
  NERVE_CHECK_PTR_IN(ctx, weight, func);
  return forward(ctx, g, out, in, weight, bias, NULL, NULL, NULL, relu, func);
}

/*
 * in [N,H,W,C], weight [KH,KW,C,K], bias [K] or NULL -> out [N,OH,OW,K]
 */
nerve_status nerve_conv2d_forward(nerve_context *ctx, float *out, const float *in,
                                  const float *weight, const float *bias, int64_t N, int64_t H,
                                  int64_t W, int64_t C, int64_t K, int64_t KH, int64_t KW,
                                  int64_t SH, int64_t SW, int64_t PT, int64_t PL, int64_t OH,
                                  int64_t OW) {
  NERVE_CHECK_CTX(ctx);
  conv_geom g = {.N = N, .H = H, .W = W, .C = C, .K = K, .KH = KH, .KW = KW, .SH = SH, .SW = SW,
                .PT = PT, .PL = PL, .OH = OH, .OW = OW};
  return forward_out(ctx, &g, out, in, weight, bias, false, __func__);
}

/*
 * As nerve_conv2d_forward, with out taken through a ReLU block by block while in cache.
 */
nerve_status nerve_conv2d_forward_relu(nerve_context *ctx, float *out, const float *in,
                                       const float *weight, const float *bias, int64_t N,
                                       int64_t H, int64_t W, int64_t C, int64_t K, int64_t KH,
                                       int64_t KW, int64_t SH, int64_t SW, int64_t PT, int64_t PL,
                                       int64_t OH, int64_t OW) {
  NERVE_CHECK_CTX(ctx);
  conv_geom g = {.N = N, .H = H, .W = W, .C = C, .K = K, .KH = KH, .KW = KW, .SH = SH, .SW = SW,
                .PT = PT, .PL = PL, .OH = OH, .OW = OW};
  return forward_out(ctx, &g, out, in, weight, bias, true, __func__);
}

/* A convolution and the max pool over its output, as the joined calls take them. */
typedef struct {
  conv_geom conv;
  nerve__pool_window pool;
} pooled_conv;

static pooled_conv pooled_conv_of(int64_t N, int64_t H, int64_t W, int64_t C, int64_t K, int64_t KH,
                                  int64_t KW, int64_t SH, int64_t SW, int64_t PT, int64_t PL,
                                  int64_t OH, int64_t OW, int64_t PH, int64_t PW, int64_t PSH,
                                  int64_t PSW, int64_t PPT, int64_t PPL, int64_t POH, int64_t POW) {
  return (pooled_conv){
      .conv = {.N = N, .H = H, .W = W, .C = C, .K = K, .KH = KH, .KW = KW, .SH = SH, .SW = SW,
               .PT = PT, .PL = PL, .OH = OH, .OW = OW},
      .pool = {.H = OH, .W = OW, .C = K, .PH = PH, .PW = PW, .SH = PSH, .SW = PSW, .PT = PPT,
               .PL = PPL, .OH = POH, .OW = POW}};
}

static nerve_status pooled_conv_check(nerve_context *ctx, const pooled_conv *pc, const char *func) {
  nerve_status s = check_geom(ctx, &pc->conv, func);
  return s == NERVE_OK ? nerve__maxpool_check(ctx, pc->conv.N, &pc->pool, func) : s;
}

/*
 * in [N,H,W,C], weight [KH,KW,C,K], bias [K] or NULL -> out [N,OH,OW,K], and its max pool
 * pooled, argmax [N,POH,POW,K]
 */
nerve_status nerve_conv2d_forward_maxpool(
    nerve_context *ctx, float *out, float *pooled, int32_t *argmax, const float *in,
    const float *weight, const float *bias, int64_t N, int64_t H, int64_t W, int64_t C, int64_t K,
    int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PT, int64_t PL, int64_t OH, int64_t OW,
    int64_t PH, int64_t PW, int64_t PSH, int64_t PSW, int64_t PPT, int64_t PPL, int64_t POH,
    int64_t POW) {
  NERVE_CHECK_CTX(ctx);
  const pooled_conv pc = pooled_conv_of(N, H, W, C, K, KH, KW, SH, SW, PT, PL, OH, OW, PH, PW, PSH, PSW, PPT, PPL, POH, POW);
  const conv_geom g = pc.conv;
  const nerve__pool_window pool = pc.pool;
  nerve_status s = pooled_conv_check(ctx, &pc, __func__);
  if (s != NERVE_OK || N == 0) return s;
  NERVE_CHECK_PTR(ctx, pooled);
  NERVE_CHECK_PTR(ctx, argmax);
  NERVE_CHECK_PTR(ctx, in);
  NERVE_CHECK_PTR(ctx, weight);
  return forward(ctx, &g, out, in, weight, bias, &pool, pooled, argmax, false, __func__);
}

typedef struct {
  const nerve_context *ctx;
  const conv_geom *g;
  float *dweight, *slices, *padded; /* padded: dweight's rows, ldp apart */
  float *dbias;                      /* may be NULL */
  const float *dout, *in;
  int64_t ldp;
} weight_grad_job;

/* Columns [k0, k1) of the weight gradient, at G (their padded rows), over the blocks of images
 * from n_lo to n_hi (n_lo a block's start), each block lowered into slice; the bias's sums too
 * where bias is not NULL. */
static void weight_grad_part(const weight_grad_job *j, float *G, int64_t k0, int64_t k1, int64_t n_lo,
                             int64_t n_hi, float *slice, float *bias) {
  const conv_geom *g = j->g;
  const int64_t pix = g->OH * g->OW, per = images_per_block(g), K = g->K, width = k1 - k0;
  const nerve__range_fn lower = NERVE_AVX512_OR(j->ctx, im2col_avx512, im2col_plain);
  int32_t off[GATHER_MAX_COLS];
  /* Windows read in place, as in the forward: padded ones from a copy of each block's images
   * with their borders, made where this member's lowered columns would go, when it fits. */
  const conv_geom framed = padded_geom(g);
  const bool pad = pads_then_gathers(g) && framed.H * framed.W * g->C <= pix * width;
  const bool gather = pad || gathers(g);
  if (gather) window_offsets(pad ? &framed : g, off);
  for (int64_t n0 = n_lo; n0 < n_hi; n0 += per) {
    const int64_t images = n_hi - n0 < per ? n_hi - n0 : per, rows = images * pix;
    const nerve__gather ga = block_windows(g, &framed, pad, j->in, n0, images, slice, off);
    const float *dblock = j->dout + n0 * pix * K;
    bool biased = false;
    if (!(gather && nerve__gemm_tn_gather_here(j->ctx, G, j->ldp, &ga, rows, dblock, K, NULL, K, k0, k1, 1.0f, bias, &biased))) {
      im2col_job ij = {.g = g, .col = slice, .in = j->in + n0 * g->H * g->W * g->C, .k0 = k0, .k1 = k1, .ld = width};
      lower(&ij, 0, rows);
      nerve__gemm_tn_here(j->ctx, G, j->ldp, slice, width, dblock, K, rows, K, width, 1.0f);
    }
    if (bias && !biased) nerve__bias_accumulate_here(j->ctx, bias, dblock, rows, K, 1.0f);
  }
}

/* The weight gradient's rows [k0, k1) copied into their padded rows, or back. */
static void weight_grad_copy(const weight_grad_job *j, int64_t k0, int64_t k1, bool in) {
  const int64_t K = j->g->K;
  for (int64_t k = k0; k < k1; k++) {
    float *row = j->padded + k * j->ldp;
    if (in) {
      memcpy(row, j->dweight + k * K, (size_t)K * sizeof(float));
      memset(row + K, 0, (size_t)(j->ldp - K) * sizeof(float));
    } else {
      memcpy(j->dweight + k * K, row, (size_t)K * sizeof(float));
    }
  }
}

/*
 * Member t of nt owns rows [k0, k1) of the weight gradient (lowered columns): for every block of
 * images in order it lowers just those columns and adds their product with the block's output
 * gradient. Each element adds the rows in the order one thread would, so the split changes
 * nothing, and the team meets no barrier until the end. The first member, whose share of the
 * columns is never the larger, also adds each block's rows to the bias gradient: the sums
 * nerve__bias_accumulate makes over all rows in order, without a pass of their own (which would
 * run on one thread, the bias being too narrow to split). Where the gathered product has one
 * panel, its first tile adds them in its own pass over the block's output gradient; otherwise
 * they follow the product, while that gradient is in cache.
 */
static void weight_grad_member(void *data, int t, int nt) {
  weight_grad_job *j = data;
  const conv_geom *g = j->g;
  const int64_t cols = cols_of(g), pix = g->OH * g->OW, per = images_per_block(g);
  const int64_t k0 = cols * t / nt, k1 = cols * (t + 1) / nt;
  if (k1 == k0) return; /* never: teams have at most `cols` members */
  weight_grad_copy(j, k0, k1, true);
  weight_grad_part(j, j->padded + k0 * j->ldp, k0, k1, 0, g->N, j->slices + per * pix * k0, t == 0 ? j->dbias : NULL);
  weight_grad_copy(j, k0, k1, false);
}

/*
 * Lowered columns a member of a weight-gradient team needs (weight_grad_member): its share of
 * the columns is the rows of its register tiles (gemm.c's TN_KT, 12, at most), against which
 * each row of dout it reads is multiplied, and every member reads all of dout, half of it
 * written by the other core (batch norm's backward shares rows). Lab E's first convolution (9 columns, 32 channels),
 * one step at 2 threads (bench/lab_e_step.c): 0.22 ms split 4 + 5, 0.16 on one thread. Splits
 * of the images instead (in a relay, to keep each element's order of rows: member 0 adds the
 * first half to each part in turn, member 1 the second half to each part member 0 has done)
 * took 0.17-0.19 ms with the 32 channels as two parts, 0.18 with the columns as three.
 */
enum { WEIGHT_GRAD_MEMBER_COLS = 12 };

/* Members for a weight-gradient team of `threads` over g's lowered columns: at most one for
 * each WEIGHT_GRAD_MEMBER_COLS of them, and at least one. */
static int weight_grad_threads(const conv_geom *g, int threads) {
  const int64_t most = cols_of(g) / WEIGHT_GRAD_MEMBER_COLS;
  return most < 1 ? 1 : most < threads ? (int)most : threads;
}

/* Bytes of lowered input gradient a team member keeps at once: its rows are summed back into
 * din while they are still in L2. */
enum { INPUT_GRAD_GROUP_BYTES = 256 << 10 };

typedef struct {
  const nerve_context *ctx;
  const conv_geom *g;
  float *din, *dcol;  /* dcol: each member's part, `group` images apart */
  const float *dout;
  const float *packed; /* the weight, packed by nerve__gemm_nn_pack */
  int64_t group;       /* images a member multiplies, then sums back, at a time */
  nerve__range_fn sum_windows;
  /* Images [0, split) and [split, N): the first of each no member has taken (nerve__take_chunk);
   * member 0 takes from the first range first, the others from the second. */
  int64_t split, next_low, next_high;
} input_grad_job;

/* The next few images of [0, split), or of [split, N), taken into [*n, *end); false if none are
 * left there. */
static bool take_low(input_grad_job *j, int64_t *n, int64_t *end) {
  return nerve__take_chunk(&j->next_low, j->group, j->split, n, end);
}

static bool take_high(input_grad_job *j, int64_t *n, int64_t *end) {
  if (!nerve__take_chunk(&j->next_high, j->group, j->g->N - j->split, n, end)) return false;
  *n += j->split, *end += j->split;
  return true;
}

/* Member t takes the next few images of the input gradient and computes them; false once none
 * are left. */
static bool input_grad_next(input_grad_job *j, int t) {
  const conv_geom *g = j->g;
  const int64_t pix = g->OH * g->OW, cols = cols_of(g), hw = g->H * g->W;
  float *dcol = j->dcol + t * j->group * pix * cols;
  int64_t n, end;
  const bool taken = t == 0 ? take_low(j, &n, &end) || take_high(j, &n, &end)
                             : take_high(j, &n, &end) || take_low(j, &n, &end);
  if (!taken) return false;
  const int64_t images = end - n;
  nerve__gemm_nn_packed_here(j->ctx, dcol, cols, j->dout + n * pix * g->K, g->K, j->packed,
                             images * pix, cols, g->K);
  col2im_job cj = {.g = g, .din = j->din + n * hw * g->C, .dcol = dcol};
  j->sum_windows(&cj, 0, images * hw);
  return true;
}

/*
 * The input gradient by a team, each member taking a few images at a time as it becomes free:
 * their lowered gradient dout . weight^T, then col2im over the same images. Split by blocks
 * instead, the product's rows landed in one core's cache and the sums read them from the
 * other's (col2im measured no faster on two threads than on one). Each row's chain and each
 * pixel's sum are the ones the blocked form computes, whatever the split.
 */
static void input_grad_member(void *data, int t, int nt) {
  (void)nt;
  while (input_grad_next(data, t)) {
  }
}

/* The team's threads for the input gradient (its members' parts of dcol share one lowered
 * block: at most `per` images in all). */
static int input_grad_threads(const nerve_context *ctx, const conv_geom *g) {
  const int64_t pix = g->OH * g->OW, per = images_per_block(g);
  const int threads = nerve__threads_for(ctx, g->N * pix * cols_of(g) * g->K, CONV_TEAM_GRAIN);
  return threads > per ? (int)per : threads;
}

/* The input gradient's job for a team of `threads`, its weight packed at `packed`. */
static input_grad_job input_grad_setup(nerve_context *ctx, const conv_geom *g, float *din,
                                       float *dcol, const float *dout, const float *weight,
                                       float *packed, int threads) {
  const int64_t pix = g->OH * g->OW, cols = cols_of(g), per = images_per_block(g);
  nerve__gemm_nn_pack(ctx, packed, weight, g->K, cols, g->K);
  int64_t group = INPUT_GRAD_GROUP_BYTES / (int64_t)sizeof(float) / (pix * cols);
  if (group > per / threads) group = per / threads;
  if (group < 1) group = 1;
  return (input_grad_job){.ctx = ctx, .g = g, .din = din, .dcol = dcol, .dout = dout, .packed = packed,
                          .group = group, .sum_windows = col2im_for(ctx), .split = g->N};
}

static void input_grad_team(nerve_context *ctx, const conv_geom *g, float *din, float *dcol,
                            const float *dout, const float *weight) {
  const int threads = input_grad_threads(ctx, g);
  input_grad_job j = input_grad_setup(ctx, g, din, dcol, dout, weight, ctx->scratch[NERVE_SCRATCH_GEMM], threads);
  nerve__parallel_team(threads, input_grad_member, &j);
}

/*
 * Both gradients by one team of two, the weight gradient's chains in the order one thread takes
 * them. Split by columns (weight_grad_member), each member read all of dout, half of it just
 * written by the other core (the layer after splits images in halves): the second convolution
 * of the fast recipe took 1.6 times as long per element at 2 threads as at 1. Here the columns'
 * two halves A and B each go over the first half of the images (blocks), by member 0, then over
 * the second, by member 1, continuing the same chains: member 0 does A's first half, then B's,
 * then takes images of the input gradient; member 1 takes images of the input gradient until
 * A's first half is done, then does A's second half, B's second half (once member 0 has done its
 * first), and then images again, from the second half of the images while member 0 takes the
 * first (the halves each core's dout was written on). Neither waits while images are left. The
 * bias's chain goes with A's, and A and B are the columns two members of weight_grad_member
 * take, so the windows are read as there (the same bits). A member granted alone (nested
 * regions, thread limits) takes all of it in that order.
 */
typedef struct {
  weight_grad_job wg;
  input_grad_job ig;
  int64_t half;      /* the first image of the second half: a block's start */
  int first_a, first_b; /* member 0 has done the columns' first halves (nerve__flag_*) */
} both_grads_job;

/* Member t takes images of the input gradient until *flag is raised (or none are left). */
static void input_grad_until(input_grad_job *ig, int t, int *flag) {
  while (!__atomic_load_n(flag, __ATOMIC_ACQUIRE) && input_grad_next(ig, t)) {
  }
  nerve__flag_wait(flag);
}

/* Member t's part of the weight gradient (both_grads_member): 0 the columns' first halves of
 * the images, 1 their second halves, taking input-gradient images while it waits for 0. */
static void both_grads_part(both_grads_job *b, int t) {
  const weight_grad_job *j = &b->wg;
  const conv_geom *g = j->g;
  const int64_t cols = cols_of(g), a = cols / 2, pix = g->OH * g->OW, per = images_per_block(g);
  /* Member 1's block of lowered columns after member 0's, which is wide enough for B. */
  float *slice = j->slices + per * pix * (t == 0 ? 0 : cols - a);
  if (t == 0) {
    weight_grad_copy(j, 0, cols, true);
    weight_grad_part(j, j->padded, 0, a, 0, b->half, slice, j->dbias);
    nerve__flag_raise(&b->first_a);
    weight_grad_part(j, j->padded + a * j->ldp, a, cols, 0, b->half, slice, NULL);
    nerve__flag_raise(&b->first_b);
  } else {
    input_grad_until(&b->ig, t, &b->first_a);
    weight_grad_part(j, j->padded, 0, a, b->half, g->N, slice, j->dbias);
    input_grad_until(&b->ig, t, &b->first_b);
    weight_grad_part(j, j->padded + a * j->ldp, a, cols, b->half, g->N, slice, NULL);
    weight_grad_copy(j, 0, cols, false);
  }
}

static void both_grads_member(void *data, int t, int nt) {
  both_grads_job *b = data;
  both_grads_part(b, t);
  if (nt < 2) both_grads_part(b, 1); /* alone: its flags are raised, so nothing waits */
  while (input_grad_next(&b->ig, t)) {
  }
}

/* ---- The input gradient by scattering (AVX2) --------------------------------------------- */
/*
 * din [N,H,W,C] without lowering dout: each output pixel's row of dout times the weight is its
 * window's row of the lowered gradient (for each tap and channel one chain over the filters in
 * order from 0, as AVX2's products make dcol), added straight into the window's input pixels
 * instead of stored and summed back by col2im. The pixels go in reverse raster order, so each
 * input pixel receives its windows' taps in (kh, kw) order after a start from 0, as
 * col2im_pixels adds them: the same bits. Where dout is mostly zeros (after a max pool's
 * backward three quarters of every map, more after a ReLU), a pixel's chains take only its
 * non-zero filters and a pixel with none adds nothing: a term left out is 0 * w, whose absence
 * changes a chain at most in the sign of a zero, and that sign cannot show in a sum that starts
 * from +0 (rounding to nearest without flushing, x + y is -0 only for -0 + -0). So only with
 * finite weights (0 * inf is NaN) and the caller's modes the default ones; otherwise every
 * filter of every pixel, in the order the product takes them. (Those modes are the ones the
 * product's own zero-skipping assumes too; the team's threads are taken to run in the caller's.)
 */
#if NERVE_X86
/* Taps a window may have, and filters a pixel's list may hold (as many as AVX2's products take
 * in chains, nerve__gemm_nn_transposed_chains), for the scattered form. */
enum { SCATTER_MAX_TAPS = 64, SCATTER_MAX_FILTERS = 64, SCATTER_MAX_VECTORS = 12 };

/* Channels rounded up to whole vectors: the packed weight's and a frame's pixel width. */
static int64_t scatter_cpad(const conv_geom *g) { return (g->C + 7) / 8 * 8; }

/* The frame the scattered taps land in: every window's pixels, padding included (padded_geom's
 * H and W), cpad channels a pixel. Where that is the input gradient itself (no padding, the
 * windows covering the image, whole vectors of channels), it is written in place. */
static bool scatters_in_place(const conv_geom *g) {
  const conv_geom p = padded_geom(g);
  return g->PT == 0 && g->PL == 0 && p.H == g->H && p.W == g->W && g->C % 8 == 0;
}
static int64_t scatter_frame_floats(const conv_geom *g) {
  const conv_geom p = padded_geom(g);
  return scatters_in_place(g) ? 0 : p.H * p.W * scatter_cpad(g);
}
static int64_t scatter_weight_floats(const conv_geom *g) { return g->K * g->KH * g->KW * scatter_cpad(g); }

/* Whether the input gradient of g goes by scattering (scatter_member): where the product it
 * replaces makes each element one chain over the filters (AVX2, up to 64 filters), the windows
 * fit the taps' room, and a frame fits the `room` floats of workspace the backward has anyway
 * (its two lowered blocks: nerve_conv2d_workspace_size), so that it never takes more. */
static bool scatters(const nerve_context *ctx, const conv_geom *g, int64_t room) {
  return nerve__gemm_nn_transposed_chains(ctx, g->K) && !is_pointwise(g) && g->KH * g->KW <= SCATTER_MAX_TAPS &&
         g->K <= SCATTER_MAX_FILTERS && scatter_frame_floats(g) <= room;
}

/* The weight [KH,KW,C,K] as the scattered chains read it: filter by filter, then blocks of 16
 * channels (8 for a last odd vector), then the taps in (kh, kw) order, each the block's
 * channels, zero past C. Returns whether every weight is finite. */
static bool scatter_pack_weight(const conv_geom *g, float *wt, const float *weight) {
  const int64_t taps = g->KH * g->KW, C = g->C, K = g->K, cpad = scatter_cpad(g);
  bool finite = true;
  for (int64_t k = 0; k < K; k++)
    for (int64_t cb = 0; cb < cpad; cb += 16) {
      const int64_t width = cpad - cb < 16 ? cpad - cb : 16;
      float *block = wt + k * taps * cpad + cb * taps;
      for (int64_t t = 0; t < taps; t++)
        for (int64_t c = 0; c < width; c++) {
          const float w = cb + c < C ? weight[(t * C + cb + c) * K + k] : 0.0f;
          finite = finite && isfinite(w);
          block[t * width + c] = w;
        }
    }
  return finite;
}

/* The rounding and subnormal modes under which a left-out zero term cannot show (above). */
NERVE_INLINE bool scatter_modes_plain(void) {
  return (_mm_getcsr() & (_MM_ROUND_MASK | _MM_FLUSH_ZERO_MASK | _MM_DENORMALS_ZERO_MASK)) == 0;
}

/* T taps (frame pixels dst + doff[t]), V vectors of channels each: their chains over the
 * filters ks[0..live) (values in row; filter k's weights at w + k * ldk), then added into the
 * frame. */
NERVE_TARGET_AVX2 NERVE_INLINE void scatter_taps(const int T, const int V, float *dst, const int64_t *doff,
                                                 const float *w, int64_t ldk, const float *row,
                                                 const int32_t *ks, int64_t live) {
  __m256 acc[SCATTER_MAX_VECTORS];
#  pragma GCC unroll 12
  for (int i = 0; i < T * V; i++) acc[i] = _mm256_setzero_ps();
  for (int64_t j = 0; j < live; j++) {
    const __m256 v = _mm256_broadcast_ss(row + ks[j]);
    const float *wk = w + ks[j] * ldk;
#  pragma GCC unroll 12
    for (int i = 0; i < T * V; i++) acc[i] = _mm256_fmadd_ps(v, _mm256_load_ps(wk + 8 * i), acc[i]);
  }
#  pragma GCC unroll 12
  for (int i = 0; i < T * V; i++) {
    float *p = dst + doff[i / V] + 8 * (i % V);
    _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), acc[i]));
  }
}

#  define SCATTER_CASE(T)                                                            \
    case T:                                                                          \
      if (V == 2) scatter_taps(T <= 6 ? T : 6, 2, dst, doff, w, ldk, row, ks, live); \
      else scatter_taps(T, 1, dst, doff, w, ldk, row, ks, live);                     \
      break;

NERVE_TARGET_AVX2 NERVE_INLINE void scatter_taps_any(int T, int V, float *dst, const int64_t *doff,
                                                     const float *w, int64_t ldk, const float *row,
                                                     const int32_t *ks, int64_t live) {
  switch (T) {
    SCATTER_CASE(1) SCATTER_CASE(2) SCATTER_CASE(3) SCATTER_CASE(4) SCATTER_CASE(5) SCATTER_CASE(6)
    SCATTER_CASE(7) SCATTER_CASE(8) SCATTER_CASE(9) SCATTER_CASE(10) SCATTER_CASE(11) SCATTER_CASE(12)
    default: break;
  }
}
#  undef SCATTER_CASE

/* A scattered input gradient's job: what every image takes alike, worked out once a call. */
typedef struct {
  const conv_geom *g;
  conv_geom p;     /* padded_geom(g): the frame's height and width */
  int64_t taps, cpad;
  bool in_place;   /* scatters_in_place(g): the frame is din itself (then C = cpad) */
  float *din, *frames; /* frames: each member's (scatter_frame_floats), unless in place */
  const float *dout, *wt;
  bool skip;       /* leave out zero terms (see above) */
  int64_t doff[SCATTER_MAX_TAPS]; /* tap t's frame offset from a window's corner */
  /* The taps' groups for blocks of V = 1 and 2 vectors (index V - 1): as many taps as fill the
   * accumulators, shared out evenly; group i is taps [ends[i], ends[i + 1]). */
  int64_t ends[2][SCATTER_MAX_TAPS + 1], groups[2];
  int64_t next; /* the first image no member has taken (nerve__take_chunk) */
} scatter_job;

/* The job's per-call part for g. */
static void scatter_plan(scatter_job *j, const conv_geom *g) {
  j->g = g, j->p = padded_geom(g), j->taps = g->KH * g->KW, j->cpad = scatter_cpad(g);
  j->in_place = scatters_in_place(g);
  for (int64_t t = 0; t < j->taps; t++) j->doff[t] = ((t / g->KW) * j->p.W + t % g->KW) * j->cpad;
  for (int V = 1; V <= 2; V++) {
    const int64_t most = SCATTER_MAX_VECTORS / V, groups = (j->taps + most - 1) / most;
    j->groups[V - 1] = groups;
    for (int64_t i = 0; i <= groups; i++) j->ends[V - 1][i] = j->taps * i / groups;
  }
}

/* The image's part of its frame (frame pixel (y + PT, x + PL) for input pixel (y, x)) into din,
 * zero where no window reaches. */
static void scatter_copy_out(const scatter_job *j, float *din, const float *frame) {
  const conv_geom *g = j->g;
  for (int64_t y = 0; y < g->H; y++)
    for (int64_t x = 0; x < g->W; x++) {
      const int64_t fy = y + g->PT, fx = x + g->PL;
      float *to = din + (y * g->W + x) * g->C;
      if (fy < j->p.H && fx < j->p.W) memcpy(to, frame + (fy * j->p.W + fx) * j->cpad, (size_t)g->C * sizeof(float));
      else memset(to, 0, (size_t)g->C * sizeof(float));
    }
}

/* Image n: its frame from zero, its pixels' taps scattered in reverse raster order, then
 * (unless in place) copied out. ks: room for the filters' list. */
NERVE_TARGET_AVX2 static void scatter_image(const scatter_job *j, int64_t n, float *frame, int32_t *ks) {
  const conv_geom *g = j->g;
  const int64_t taps = j->taps, cpad = j->cpad, K = g->K;
  float *din = j->din + n * g->H * g->W * g->C, *f = j->in_place ? din : frame;
  memset(f, 0, (size_t)(j->p.H * j->p.W * cpad) * sizeof(float));
  const float *dout = j->dout + n * g->OH * g->OW * K;
  for (int64_t oh = g->OH - 1; oh >= 0; oh--)
    for (int64_t ow = g->OW - 1; ow >= 0; ow--) {
      const float *row = dout + (oh * g->OW + ow) * K;
      const int64_t live = j->skip ? nerve__avx2_nonzeros(row, K, ks) : K;
      if (live == 0) continue;
      float *corner = f + (oh * g->SH * j->p.W + ow * g->SW) * cpad;
      for (int64_t cb = 0; cb < cpad; cb += 16) {
        const int V = cpad - cb >= 16 ? 2 : 1;
        const int64_t *ends = j->ends[V - 1];
        for (int64_t i = 0; i < j->groups[V - 1]; i++)
          scatter_taps_any((int)(ends[i + 1] - ends[i]), V, corner + cb, j->doff + ends[i],
                           j->wt + cb * taps + ends[i] * 8 * V, taps * cpad, row, ks, live);
      }
    }
  if (!j->in_place) scatter_copy_out(j, din, frame);
}

/* Member t: images as it becomes free (an image's sums do not depend on who makes them), in
 * its own frame. */
static void scatter_member(void *data, int t, int nt) {
  scatter_job *j = data;
  (void)nt;
  float *frame = j->frames ? j->frames + t * scatter_frame_floats(j->g) : NULL;
  int32_t ks[SCATTER_MAX_FILTERS + 8];
  for (int64_t k = 0; k < j->g->K; k++) ks[k] = (int32_t)k; /* every filter, unless skipping */
  for (int64_t n, end; nerve__take_chunk(&j->next, 1, j->g->N, &n, &end);) scatter_image(j, n, frame, ks);
}

/*
 * dout [N,OH,OW,K], weight [KH,KW,C,K] -> din [N,H,W,C] (written), by scattering (scatters(g,
 * room)); wt: scratch of scatter_weight_floats, frames: `room` floats of it, as many members
 * as hold a frame each.
 */
static void scatter_input_grad(nerve_context *ctx, const conv_geom *g, float *din, const float *dout,
                               const float *weight, float *wt, float *frames, int64_t room) {
  const bool finite = scatter_pack_weight(g, wt, weight);
  const int64_t frame = scatter_frame_floats(g), cols = cols_of(g), pix = g->OH * g->OW;
  scatter_job j = {.din = din, .frames = frame ? frames : NULL, .dout = dout, .wt = wt,
                   .skip = finite && scatter_modes_plain()};
  scatter_plan(&j, g);
  int threads = nerve__threads_for(ctx, g->N * pix * cols * g->K, CONV_TEAM_GRAIN);
  if (threads > g->N) threads = (int)g->N;
  if (frame && threads > room / frame) threads = (int)(room / frame); /* >= 1: scatters(g, room) */
  nerve__parallel_team(threads, scatter_member, &j);
}
#endif

/* nerve_conv2d_backward's checks and work; func: the entry point errors name. */
static nerve_status backward(nerve_context *ctx, const conv_geom *geom, float *din, float *dweight,
                             float *dbias, const float *dout, const float *in, const float *weight,
                             const char *func) {
  const conv_geom g = *geom;
  const int64_t N = g.N, H = g.H, W = g.W, C = g.C, K = g.K, KH = g.KH, KW = g.KW, OH = g.OH, OW = g.OW;
  nerve_status s = check_geom(ctx, &g, func);
  if (s != NERVE_OK || N == 0) return s;
  NERVE_CHECK_PTR_IN(ctx, dout, func);
  if (dweight) NERVE_CHECK_PTR_IN(ctx, in, func);
  if (din) NERVE_CHECK_PTR_IN(ctx, weight, func);
  const int64_t cols = cols_of(&g), pix = OH * OW, per = images_per_block(&g);
  const bool pointwise = is_pointwise(&g);
  /* Every workspace before the first write, so that running out of memory changes nothing: two
   * lowered blocks (none for 1x1), and the most the products take, which they take on the first
   * and largest block of rows (all N * OH * OW rows for 1x1, where cols = C). */
  const int64_t block = pointwise ? 0 : block_floats(&g), most_rows = pointwise ? N * pix : per * pix;
  const int64_t whole_rows = (ctx->whole_batch > N ? ctx->whole_batch : N) * pix;
#if NERVE_X86
  /* AVX2's input gradient scattered: its packed weight, and each member's frame in the two
   * lowered blocks' room. */
  const bool scatter = din && scatters(ctx, &g, 2 * block);
  const size_t wt = scatter ? (size_t)scatter_weight_floats(&g) * sizeof(float) : 0;
#else
  const bool scatter = false;
  const size_t wt = 0;
#endif
  size_t nn = din && !scatter ? nerve__gemm_nn_scratch(ctx, pointwise ? whole_rows : method_rows(ctx, &g), cols, K, true)
                              : wt;
  /* With AVX-512 (and AVX2's gathered products) the weight gradient is one team's work
   * (weight_grad_member), on a copy of dweight padded to whole panels. */
  const bool team_grad = dweight && !pointwise && nerve__gemm_tn_gathers(ctx, K, cols) &&
                         (ctx->isa == NERVE_ISA_AVX512 || lowered_gathers(ctx, &g));
  const int64_t ldp = panel_width(K);
  size_t tn = team_grad ? (size_t)cols * (size_t)ldp * sizeof(float)
              : dweight ? nerve__gemm_tn_scratch(ctx, most_rows, K, cols, K) : 0;
  /* With AVX-512 register tiles (a packed weight), the input gradient is one team's work; two
   * threads take both gradients as one team (both_grads_member) where the columns and the
   * blocks of images split in halves, the packed weight after the padded weight gradient. */
  const bool team_input = din && !pointwise && nerve__gemm_nn_packs(ctx, method_rows(ctx, &g), cols, K, true) &&
                          (!dweight || team_grad);
  int grad_threads = team_grad ? nerve__threads_for(ctx, N * pix * cols * K, CONV_TEAM_GRAIN) : 1;
  if (grad_threads > cols) grad_threads = (int)cols;
  const bool both = team_grad && team_input && grad_threads == 2 && input_grad_threads(ctx, &g) == 2 && N > per;
  /* A two-gradient team keeps its split of the columns: its members read the halves of dout
   * their own cores wrote, and first layers, the ones with few columns, have no input gradient. */
  if (!both) grad_threads = weight_grad_threads(&g, grad_threads);
  s = nerve__scratch(ctx, NERVE_SCRATCH_LAYER, 2 * (size_t)block * sizeof(float), func);
  if (s == NERVE_OK) s = nerve__scratch(ctx, NERVE_SCRATCH_GEMM, both ? tn + nn : nn > tn ? nn : tn, func);
  if (s != NERVE_OK) return s;
  if (dbias && !team_grad) nerve__bias_accumulate(ctx, dbias, dout, N * pix, K, 1.0f);
  if (pointwise) {
    if (dweight) {
      s = nerve__gemm_tn(ctx, dweight, K, in, C, dout, K, N * pix, K, C, 1.0f, func);
      if (s != NERVE_OK) return s;
    }
    if (din) return nerve__gemm_nn_as(ctx, din, C, dout, K, weight, K, true, NULL, false, N * pix, C, K, whole_rows, func);
    return NERVE_OK;
  }
  float *col = ctx->scratch[NERVE_SCRATCH_LAYER], *dcol = col + block;
  if (team_grad) {
    weight_grad_job wj = {.ctx = ctx, .g = &g, .dweight = dweight, .dbias = dbias, .dout = dout, .in = in,
                          .slices = col, .padded = ctx->scratch[NERVE_SCRATCH_GEMM], .ldp = ldp};
    if (both) {
      const int64_t blocks = (N + per - 1) / per;
      float *packed = (float *)((char *)ctx->scratch[NERVE_SCRATCH_GEMM] + tn);
      both_grads_job bj = {.wg = wj, .ig = input_grad_setup(ctx, &g, din, dcol, dout, weight, packed, 2),
                           .half = (blocks + 1) / 2 * per};
      bj.ig.split = bj.half;
      nerve__parallel_team(2, both_grads_member, &bj);
      return NERVE_OK;
    }
    nerve__parallel_team(grad_threads, weight_grad_member, &wj);
  }
  if (team_input) {
    input_grad_team(ctx, &g, din, dcol, dout, weight);
    return NERVE_OK;
  }
  for (int64_t n0 = 0; n0 < N; n0 += per) {
    int64_t images = N - n0 < per ? N - n0 : per, rows = images * pix;
    const float *dblock = dout + n0 * pix * K;
    if (dweight && !team_grad) {
      im2col_job ij = {.g = &g, .col = col, .in = in + n0 * H * W * C};
      nerve__parallel_for(ctx, rows, (1 << 14) / cols + 1, NERVE_AVX512_OR(ctx, im2col_avx512, im2col_plain), &ij);
      s = nerve__gemm_tn(ctx, dweight, K, col, cols, dblock, K, rows, K, cols, 1.0f, func);
      if (s != NERVE_OK) return s;
    }
    if (din && !scatter) {
      s = nerve__gemm_nn_as(ctx, dcol, cols, dblock, K, weight, K, true, NULL, false, rows, cols, K,
                            method_rows(ctx, &g), func);
      if (s != NERVE_OK) return s;
      col2im_job cj = {.g = &g, .din = din + n0 * H * W * C, .dcol = dcol};
      nerve__parallel_for(ctx, images * H * W, (1 << 13) / (C * KH * KW) + 1, col2im_for(ctx), &cj);
    }
  }
#if NERVE_X86
  /* After the weight gradient, whose products may have used the same scratch. */
  if (scatter) scatter_input_grad(ctx, &g, din, dout, weight, ctx->scratch[NERVE_SCRATCH_GEMM], col, 2 * block);
#endif
  return NERVE_OK;
}

/*
 * dout [N,OH,OW,K], in [N,H,W,C], weight [KH,KW,C,K] ->
 *   din [N,H,W,C] (written), dweight [KH,KW,C,K] += in-lowered^T . dout, dbias [K] += sums
 */
nerve_status nerve_conv2d_backward(nerve_context *ctx, float *din, float *dweight, float *dbias,
                                   const float *dout, const float *in, const float *weight,
                                   int64_t N, int64_t H, int64_t W, int64_t C, int64_t K,
                                   int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PT,
                                   int64_t PL, int64_t OH, int64_t OW) {
  NERVE_CHECK_CTX(ctx);
  conv_geom g = {.N = N, .H = H, .W = W, .C = C, .K = K, .KH = KH, .KW = KW, .SH = SH, .SW = SW,
                .PT = PT, .PL = PL, .OH = OH, .OW = OW};
  return backward(ctx, &g, din, dweight, dbias, dout, in, weight, __func__);
}

/*
 * nerve_conv2d_backward_maxpool cuts its images into slices (nerve_conv2d_pooled_slice_images:
 * fixed by the whole batch alone), each slice's gradient its own chain from zero, added to
 * dweight slice after slice: a slice is any thread's work, so the threads split the images
 * (each fills its own rows of the output gradient once) instead of the columns (each filling
 * all rows), and the bits depend on neither the thread count nor, for calls that start at slice
 * boundaries, on how the batch is split between calls.
 */
int64_t nerve_conv2d_pooled_slice_images(int64_t batch) {
  if (batch < 1) return 1;
  return (batch - 1) / NERVE_CONV_POOLED_SLICES + 1;
}

typedef struct {
  const nerve_context *ctx;
  const conv_geom *g;
  const nerve__pooled_rows *pooled; /* D's rows made from a pool's gradient, or NULL: */
  const float *dout;                /* D stored, [N * OH * OW, K] */
  const float *in;
  float *partials; /* per slice: cols rows of ldp floats for the weight, then ldp for the bias */
  float *frames;   /* padded windows: each member's copy of a slice's images with their borders */
  int64_t frame_floats; /* each member's part of frames */
  int64_t slice_images, slices, ldp;
  bool bias;
  int64_t next; /* the first slice no member has taken (nerve__take_chunk) */
} pooled_grad_job;

/* Whether a convolution's windows are padded and read in place from a copy of the images with
 * their borders (pad_images), the padded windows all inside it. */
static bool pooled_pads(const conv_geom *g) {
  if (windows_inside(g)) return false;
  const conv_geom p = padded_geom(g);
  return gathers(&p);
}

/* Floats of one member's frame copy for slices of `images` images (0 without padding). */
static int64_t pooled_frame_floats(const conv_geom *g, int64_t images) {
  if (!pooled_pads(g)) return 0;
  const conv_geom p = padded_geom(g);
  return images * p.H * p.W * p.C;
}

/* Member t of nt: the partial gradients of slices as it becomes free (a slice's partial is
 * its own chain, whoever makes it). Equal shares fixed in advance left one thread waiting
 * whenever the host slowed the other. */
static void pooled_grad_member(void *data, int t, int nt) {
  pooled_grad_job *j = data;
  (void)nt;
  const conv_geom *g = j->g;
  const int64_t cols = cols_of(g), pix = g->OH * g->OW, part = pooled_partial_floats(g, j->ldp);
  const int64_t map = j->pooled ? j->pooled->POH * j->pooled->POW * g->K : 0; /* an image's pooled values */
  const conv_geom framed = padded_geom(g);
  const bool pad = pooled_pads(g);
  float *frame = j->frames + t * j->frame_floats;
  int32_t off[GATHER_MAX_COLS];
  window_offsets(pad ? &framed : g, off);
  for (int64_t s, end; nerve__take_chunk(&j->next, 1, j->slices, &s, &end);) {
    const int64_t n0 = s * j->slice_images;
    const int64_t images = g->N - n0 < j->slice_images ? g->N - n0 : j->slice_images;
    float *G = j->partials + s * part;
    memset(G, 0, (size_t)part * sizeof(float));
    nerve__pooled_rows rows = j->pooled ? *j->pooled : (nerve__pooled_rows){0};
    rows.dpooled += n0 * map, rows.argmax += n0 * map;
    if (rows.norm) rows.x += n0 * pix * g->K;
    const nerve__gather ga = block_windows(g, &framed, pad, j->in, n0, images, frame, off);
    const float *D = j->pooled ? NULL : j->dout + n0 * pix * g->K;
    bool biased;
    nerve__gemm_tn_gather_here(j->ctx, G, j->ldp, &ga, images * pix, D, g->K, j->pooled ? &rows : NULL, g->K, 0,
                               cols, 1.0f, j->bias ? G + cols * j->ldp : NULL, &biased);
  }
}

/* dweight, dbias (each if not NULL) += the slices' partial gradients, slice after slice. */
static void pooled_grad_sum(const conv_geom *g, float *dweight, float *dbias,
                            const float *partials, int64_t slices, int64_t ldp) {
  const int64_t cols = cols_of(g), part = pooled_partial_floats(g, ldp);
  for (int64_t s = 0; s < slices; s++) {
    const float *G = partials + s * part;
    if (dweight)
      for (int64_t k = 0; k < cols; k++)
        for (int64_t c = 0; c < g->K; c++) dweight[k * g->K + c] += G[k * ldp + c];
    if (dbias)
      for (int64_t c = 0; c < g->K; c++) dbias[c] += G[cols * ldp + c];
  }
}

/* Whether the weight gradient goes by slices of the batch (pooled_grads): the convolution's
 * windows read in place (padded ones from a copy with their borders) by the gathered products
 * with one panel of filters (AVX-512 or AVX2). nerve_conv2d_backward_sliced asks this alone,
 * the pooled calls with pooled_direct, so that one process and ranks agree. */
static bool sliced_direct(const nerve_context *ctx, const conv_geom *g) {
  return (gathers(g) || pooled_pads(g)) && !is_pointwise(g) && nerve__gemm_tn_gathers_pooled(ctx, g->K, cols_of(g));
}

/* Whether nerve_conv2d_backward_maxpool makes the output gradient's rows as the products take
 * them: windows that tile the map, and sliced_direct. */
static bool pooled_direct(const nerve_context *ctx, const conv_geom *g, const nerve__pool_window *pool) {
  return nerve__pool_tiles(pool->PH, pool->PW, pool->SH, pool->SW, pool->PT, pool->PL) && sliced_direct(ctx, g);
}

int nerve_conv2d_backward_maxpool_direct(const nerve_context *ctx, int64_t H, int64_t W, int64_t C,
                                         int64_t K, int64_t KH, int64_t KW, int64_t SH, int64_t SW,
                                         int64_t PT, int64_t PL, int64_t OH, int64_t OW, int64_t PH,
                                         int64_t PW, int64_t PSH, int64_t PSW, int64_t PPT,
                                         int64_t PPL, int64_t POH, int64_t POW) {
  if (!ctx) return 0;
  const pooled_conv pc = pooled_conv_of(1, H, W, C, K, KH, KW, SH, SW, PT, PL, OH, OW, PH, PW, PSH, PSW, PPT, PPL, POH, POW);
  /* The checks a call makes, their messages left on a context of the same instruction set, so
   * that ctx's last error stays. */
  nerve_context probe = {.threads = 1, .isa = ctx->isa};
  return pooled_conv_check(&probe, &pc, __func__) == NERVE_OK && pooled_direct(ctx, &pc.conv, &pc.pool);
}

/* The weight and bias gradients (each skipped if NULL) from D's rows as `rows` makes them (or
 * stored at dout where rows is NULL), in slices of the batch (pooled_grad_member), for callers
 * that checked sliced_direct. The scratch it takes is reserved before anything is written. */
static nerve_status pooled_grads(nerve_context *ctx, const conv_geom *g, float *dweight, float *dbias,
                                 const nerve__pooled_rows *rows, const float *dout, const float *in,
                                 const char *func) {
  const int64_t N = g->N, ldp = panel_width(g->K);
  /* A whole batch smaller than this call's images would make more slices than promised. */
  const int64_t slice_images = nerve_conv2d_pooled_slice_images(ctx->whole_batch > N ? ctx->whole_batch : N);
  const int64_t slices = (N + slice_images - 1) / slice_images; /* <= NERVE_CONV_POOLED_SLICES */
  int threads = nerve__threads_for(ctx, N * g->OH * g->OW * cols_of(g) * g->K, CONV_TEAM_GRAIN);
  if (threads > slices) threads = (int)slices;
  /* A member's frame holds a slice's images: of this call, N at most (a rank's share may be
   * smaller than the whole batch's slice). Sizes checked before the product. */
  const int64_t frame = pooled_frame_floats(g, slice_images < N ? slice_images : N);
  const int64_t partials = slices * pooled_partial_floats(g, ldp);
  if (!nerve__product_ok(threads, frame) || !nerve__product_ok(partials + threads * frame, (int64_t)sizeof(float)))
    return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "sizes too large");
  nerve_status s = nerve__scratch(ctx, NERVE_SCRATCH_LAYER, (size_t)(partials + threads * frame) * sizeof(float), func);
  if (s != NERVE_OK) return s;
  pooled_grad_job j = {.ctx = ctx, .g = g, .pooled = rows, .dout = dout, .in = in, .partials = ctx->scratch[NERVE_SCRATCH_LAYER],
                       .slice_images = slice_images, .slices = slices, .ldp = ldp, .bias = dbias != NULL};
  j.frames = j.partials + partials, j.frame_floats = frame;
  nerve__parallel_team(threads, pooled_grad_member, &j);
  pooled_grad_sum(g, dweight, dbias, j.partials, slices, ldp);
  return NERVE_OK;
}

/*
 * dpooled, argmax [N,POH,POW,K] (a max pool over out [N,OH,OW,K]), in [N,H,W,C] ->
 *   dweight [KH,KW,C,K] += in-lowered^T . dout, dbias [K] += sums of dout's rows,
 * where dout is what nerve_maxpool2d_backward(dpooled, argmax) writes. Where the windows tile
 * the map and the convolution's are read in place (gathers), dout's rows are made from dpooled
 * and argmax as the products take them (nerve__pooled_rows), never stored, in slices of the
 * batch (pooled_grad_member); elsewhere dout is written to the pool slot of the scratch and
 * nerve_conv2d_backward takes it.
 */
nerve_status nerve_conv2d_backward_maxpool(
    nerve_context *ctx, float *dweight, float *dbias, const float *dpooled, const int32_t *argmax,
    const float *in, int64_t N, int64_t H, int64_t W, int64_t C, int64_t K, int64_t KH, int64_t KW,
    int64_t SH, int64_t SW, int64_t PT, int64_t PL, int64_t OH, int64_t OW, int64_t PH, int64_t PW,
    int64_t PSH, int64_t PSW, int64_t PPT, int64_t PPL, int64_t POH, int64_t POW) {
  NERVE_CHECK_CTX(ctx);
  const pooled_conv pc = pooled_conv_of(N, H, W, C, K, KH, KW, SH, SW, PT, PL, OH, OW, PH, PW, PSH, PSW, PPT, PPL, POH, POW);
  const conv_geom g = pc.conv;
  const nerve__pool_window pool = pc.pool;
  nerve_status s = pooled_conv_check(ctx, &pc, __func__);
  if (s != NERVE_OK || N == 0 || (!dweight && !dbias)) return s;
  NERVE_CHECK_PTR(ctx, dpooled);
  NERVE_CHECK_PTR(ctx, argmax);
  NERVE_CHECK_PTR(ctx, in); /* read for the bias alone too: its sums come with the products' */
  if (!pooled_direct(ctx, &g, &pool)) {
    /* N * OH * OW * K fits int64: the pool's check bounds the map it reads. */
    if (!nerve__product_ok(N * OH * OW * K, (int64_t)sizeof(float)))
      return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, __func__, "sizes too large");
    s = nerve__scratch(ctx, NERVE_SCRATCH_POOL, (size_t)(N * OH * OW * K) * sizeof(float), __func__);
    if (s != NERVE_OK) return s;
    float *dout = ctx->scratch[NERVE_SCRATCH_POOL];
    /* Checked above already: it cannot fail. It writes only the workspace, so that a backward
     * refused for want of its own leaves the caller's buffers as they were. */
    s = nerve_maxpool2d_backward(ctx, dout, dpooled, argmax, N, OH, OW, K, PH, PW, PSH, PSW, PPT, PPL, POH, POW);
    if (s != NERVE_OK) return s;
    return backward(ctx, &g, NULL, dweight, dbias, dout, in, NULL, __func__);
  }
  const nerve__pooled_rows rows = {.dpooled = dpooled, .argmax = argmax, .PH = PH, .PW = PW, .POH = POH, .POW = POW};
  return pooled_grads(ctx, &g, dweight, dbias, &rows, NULL, in, __func__);
}

/* nerve_conv2d_backward_batchnorm_maxpool as two calls: the norm's backward into the pool slot
 * of the scratch, its parameter gradients into copies there after its input gradient, then the
 * convolution's backward from it; the copies written back once both have run. */
static nerve_status norm_then_conv(nerve_context *ctx, const pooled_conv *pc, float *dweight, float *dbias,
                                   float *dgamma, float *dbeta, const float *dpooled, const int32_t *argmax,
                                   const float *out, const float *gamma, const float *saved_mean,
                                   const float *saved_invstd, bool relu, const float *in, const char *func) {
  const conv_geom *g = &pc->conv;
  const nerve__pool_window *p = &pc->pool;
  const int64_t K = g->K, map = g->N * g->OH * g->OW * K; /* fits: the pool's check bounds it */
  if (!nerve__product_ok(map + 2 * K, (int64_t)sizeof(float)))
    return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "sizes too large");
  nerve_status s = nerve__scratch(ctx, NERVE_SCRATCH_POOL, (size_t)(map + 2 * K) * sizeof(float), func);
  if (s != NERVE_OK) return s;
  float *din = ctx->scratch[NERVE_SCRATCH_POOL], *copies = din + map;
  for (int64_t c = 0; c < K; c++) copies[c] = dgamma ? dgamma[c] : 0.0f, copies[K + c] = dbeta ? dbeta[c] : 0.0f;
  const bool conv_sums = dweight || dbias; /* else the norm's input gradient is not needed */
  s = nerve__batchnorm_backward_pooled(ctx, conv_sums ? din : NULL, NULL, copies, copies + K, dpooled, argmax, out,
                                       gamma, saved_mean, saved_invstd, g->N, p, relu, func);
  if (s == NERVE_OK && conv_sums) s = backward(ctx, g, NULL, dweight, dbias, din, in, NULL, func);
  if (s != NERVE_OK) return s;
  if (dgamma) memcpy(dgamma, copies, (size_t)K * sizeof(float));
  if (dbeta) memcpy(dbeta, copies + K, (size_t)K * sizeof(float));
  return NERVE_OK;
}

/*
 * As nerve_conv2d_backward_maxpool with a batch norm between the convolution and the pool
 * (nerve_batchnorm_backward_maxpool2d's): its parameter gradients, then the convolution's from
 * its input gradient, whose rows the products make as they take them (nerve__norm_terms) where
 * pooled_direct says so. Elsewhere the two calls, the norm's input gradient in the workspace.
 * Either way dgamma and dbeta change only after everything that can fail, so that a call
 * refused for want of scratch leaves them as they were.
 */
nerve_status nerve_conv2d_backward_batchnorm_maxpool(
    nerve_context *ctx, float *dweight, float *dbias, float *dgamma, float *dbeta, const float *dpooled,
    const int32_t *argmax, const float *out, const float *gamma, const float *saved_mean,
    const float *saved_invstd, int relu, const float *in, int64_t N, int64_t H, int64_t W, int64_t C,
    int64_t K, int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PT, int64_t PL, int64_t OH, int64_t OW,
    int64_t PH, int64_t PW, int64_t PSH, int64_t PSW, int64_t PPT, int64_t PPL, int64_t POH, int64_t POW) {
  NERVE_CHECK_CTX(ctx);
  const pooled_conv pc = pooled_conv_of(N, H, W, C, K, KH, KW, SH, SW, PT, PL, OH, OW, PH, PW, PSH, PSW, PPT, PPL, POH, POW);
  const conv_geom g = pc.conv;
  nerve_status s = pooled_conv_check(ctx, &pc, __func__);
  if (s != NERVE_OK) return s;
  if (PSH < PH || PSW < PW)
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, __func__,
                       "overlapping windows (stride %lldx%lld < window %lldx%lld): use nerve_maxpool2d_backward, "
                       "then nerve_batchnorm_backward and nerve_conv2d_backward",
                       (long long)PSH, (long long)PSW, (long long)PH, (long long)PW);
  if (N == 0) return NERVE_OK;
  NERVE_CHECK_PTR(ctx, dpooled);
  NERVE_CHECK_PTR(ctx, argmax);
  NERVE_CHECK_PTR(ctx, out);
  NERVE_CHECK_PTR(ctx, gamma);
  NERVE_CHECK_PTR(ctx, saved_mean);
  NERVE_CHECK_PTR(ctx, saved_invstd);
  NERVE_CHECK_PTR(ctx, in);
  if (!pooled_direct(ctx, &g, &pc.pool) || K > 32) /* one panel of filters: the terms below */
    return norm_then_conv(ctx, &pc, dweight, dbias, dgamma, dbeta, dpooled, argmax, out, gamma, saved_mean,
                          saved_invstd, relu != 0, in, __func__);
  float terms[3 * 32];
  s = nerve__batchnorm_backward_pooled(ctx, NULL, terms, NULL, NULL, dpooled, argmax, out, gamma, saved_mean,
                                       saved_invstd, N, &pc.pool, false, __func__);
  if (s != NERVE_OK) return s;
  const nerve__norm_terms norm = {.mean = saved_mean, .invstd = saved_invstd, .sum_dy = terms,
                                  .sum_dyx = terms + K, .factor = terms + 2 * K, .rows = (float)(N * OH * OW),
                                  .relu = relu != 0};
  const nerve__pooled_rows rows = {.dpooled = dpooled, .argmax = argmax, .PH = PH, .PW = PW, .POH = POH,
                                   .POW = POW, .norm = &norm, .x = out};
  if (dweight || dbias) s = pooled_grads(ctx, &g, dweight, dbias, &rows, NULL, in, __func__);
  if (s != NERVE_OK) return s;
  /* What the norm's backward adds: the sums it made its input gradient from. */
  for (int64_t c = 0; c < K; c++) {
    if (dgamma) dgamma[c] += norm.sum_dyx[c];
    if (dbeta) dbeta[c] += norm.sum_dy[c];
  }
  return NERVE_OK;
}

/*
 * dout [N,OH,OW,K] stored, in [N,H,W,C] -> dweight, dbias (each skipped if NULL) +=, summed in
 * nerve_conv2d_backward_maxpool's slices (each from zero, added slice after slice) where its
 * gathered products run on this geometry (pooled_direct but the pool), else as
 * nerve_conv2d_backward (din NULL) sums them.
 */
nerve_status nerve_conv2d_backward_sliced(nerve_context *ctx, float *dweight, float *dbias, const float *dout,
                                          const float *in, int64_t N, int64_t H, int64_t W, int64_t C, int64_t K,
                                          int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PT, int64_t PL,
                                          int64_t OH, int64_t OW) {
  NERVE_CHECK_CTX(ctx);
  const conv_geom g = {.N = N, .H = H, .W = W, .C = C, .K = K, .KH = KH, .KW = KW, .SH = SH, .SW = SW,
                       .PT = PT, .PL = PL, .OH = OH, .OW = OW};
  nerve_status s = check_geom(ctx, &g, __func__);
  if (s != NERVE_OK || N == 0 || (!dweight && !dbias)) return s;
  NERVE_CHECK_PTR(ctx, dout);
  NERVE_CHECK_PTR(ctx, in);
  if (!sliced_direct(ctx, &g)) return backward(ctx, &g, NULL, dweight, dbias, dout, in, NULL, __func__);
  return pooled_grads(ctx, &g, dweight, dbias, NULL, dout, in, __func__);
}
