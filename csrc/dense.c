/*
 * dense.c: the fully connected layer, out = in . W + b.
 *   N batch, I inputs, O outputs; in [N,I], weight [I,O] (one row per input), bias [O],
 *   out [N,O]. Everything row-major.
 */
#include "internal.h"

#include <math.h>

/* The rows a dense call chooses its method by: the whole batch when it gets a rank's part (a
 * "part" larger than the whole said is taken as its own whole: the kernels size their scratch
 * by these rows). */
static int64_t method_rows(const nerve_context *ctx, int64_t N) {
  return ctx->whole_batch > N ? ctx->whole_batch : N;
}

static nerve_status check_sizes(nerve_context *ctx, int64_t N, int64_t I, int64_t O,
                                const char *func) {
  if (N < 0 || I < 0 || O < 0)
    return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "negative size (N=%lld, I=%lld, O=%lld)",
                       (long long)N, (long long)I, (long long)O);
  /* OpenBLAS takes int dimensions; keep every size and product comfortably in range. */
  if (N > INT32_MAX || I > INT32_MAX || O > INT32_MAX || !nerve__product_ok(N, I) ||
      !nerve__product_ok(N, O) || !nerve__product_ok(I, O))
    return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "sizes too large (N=%lld, I=%lld, O=%lld)",
                       (long long)N, (long long)I, (long long)O);
  return NERVE_OK;
}

/*
 * in [N,I], weight [I,O], bias [O] or NULL -> out [N,O], then `then` on out (NULL: nothing)
 */
static nerve_status dense_forward(nerve_context *ctx, const nerve__activation_step *then, float *out,
                                  const float *in, const float *weight, const float *bias, int64_t N,
                                  int64_t I, int64_t O, const char *func) {
  nerve_status s = check_sizes(ctx, N, I, O, func);
  if (s != NERVE_OK) return s;
  if (N == 0 || O == 0) return NERVE_OK;
  NERVE_CHECK_PTR_IN(ctx, out, func);
  if (I > 0) {
    NERVE_CHECK_PTR_IN(ctx, in, func);
    NERVE_CHECK_PTR_IN(ctx, weight, func);
  }
  return nerve__gemm_nn_then(ctx, out, O, in, I, weight, O, false, bias, false, N, O, I, N, then, func);
}

nerve_status nerve_dense_forward(nerve_context *ctx, float *out, const float *in,
                                 const float *weight, const float *bias, int64_t N, int64_t I,
                                 int64_t O) {
  NERVE_CHECK_CTX(ctx);
  return dense_forward(ctx, NULL, out, in, weight, bias, N, I, O, __func__);
}

nerve_status nerve_dense_forward_activation(nerve_context *ctx, nerve_activation kind, float *out,
                                            const float *in, const float *weight, const float *bias,
                                            int64_t N, int64_t I, int64_t O) {
  NERVE_CHECK_CTX(ctx);
  nerve__activation_step then;
  nerve_status s = nerve__activation_step_for(ctx, kind, false, NULL, 0, &then, __func__);
  if (s != NERVE_OK) return s;
  return dense_forward(ctx, &then, out, in, weight, bias, N, I, O, __func__);
}

/*
 * pixels [N,I] bytes, scale, weight [I,O], bias [O] or NULL -> out [N,O]
 */
nerve_status nerve_dense_forward_pixels(nerve_context *ctx, float *out, const uint8_t *pixels,
                                        float scale, const float *weight, const float *bias,
                                        int64_t N, int64_t I, int64_t O) {
  NERVE_CHECK_CTX(ctx);
  nerve_status s = check_sizes(ctx, N, I, O, __func__);
  if (s != NERVE_OK) return s;
  if (!isfinite(scale))
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, __func__, "scale must be finite, got %g",
                       (double)scale);
  if (N == 0 || O == 0) return NERVE_OK;
  NERVE_CHECK_PTR(ctx, out);
  if (I > 0) {
    NERVE_CHECK_PTR(ctx, pixels);
    NERVE_CHECK_PTR(ctx, weight);
  }
  return nerve__pixels_nn(ctx, out, O, pixels, I, scale, weight, O, bias, N, O, I, __func__);
}

/* The rows [first, first + N) of a sparse input with I columns: checked as dense inputs are. */
static nerve_status check_sparse(nerve_context *ctx, const nerve_sparse *in, int64_t first,
                                 int64_t N, int64_t I, int64_t O, const char *func) {
  nerve_status s = check_sizes(ctx, N, I, O, func);
  if (s != NERVE_OK) return s;
  if (!in) return nerve__fail(ctx, NERVE_ERROR_NULL_POINTER, func, "in is NULL");
  if (in->cols != I)
    return nerve__fail(ctx, NERVE_ERROR_SHAPE_MISMATCH, func,
                       "in has %lld columns, the layer %lld inputs", (long long)in->cols, (long long)I);
  if (first < 0 || first > in->rows || N > in->rows - first)
    return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func,
                       "rows [%lld, %lld) lie outside in's %lld rows", (long long)first,
                       (long long)first + (long long)N, (long long)in->rows);
  return NERVE_OK;
}

/*
 * in = rows [first, first + N) of a sparse [*, I], weight [I,O], bias [O] or NULL -> out [N,O],
 * then `then` on out (NULL: nothing)
 */
static nerve_status dense_forward_sparse(nerve_context *ctx, const nerve__activation_step *then,
                                         float *out, const nerve_sparse *in, int64_t first,
                                         const float *weight, const float *bias, int64_t N,
                                         int64_t I, int64_t O, const char *func) {
  nerve_status s = check_sparse(ctx, in, first, N, I, O, func);
  if (s != NERVE_OK) return s;
  if (N == 0 || O == 0) return NERVE_OK;
  NERVE_CHECK_PTR_IN(ctx, out, func);
  if (I > 0) NERVE_CHECK_PTR_IN(ctx, weight, func);
  return nerve__sparse_nn(ctx, out, O, in, first, weight, O, bias, N, O, then, func);
}

nerve_status nerve_dense_forward_sparse(nerve_context *ctx, float *out, const nerve_sparse *in,
                                        int64_t first, const float *weight, const float *bias,
                                        int64_t N, int64_t I, int64_t O) {
  NERVE_CHECK_CTX(ctx);
  return dense_forward_sparse(ctx, NULL, out, in, first, weight, bias, N, I, O, __func__);
}

nerve_status nerve_dense_forward_sparse_activation(nerve_context *ctx, nerve_activation kind,
                                                   float *out, const nerve_sparse *in,
                                                   int64_t first, const float *weight,
                                                   const float *bias, int64_t N, int64_t I,
                                                   int64_t O) {
  NERVE_CHECK_CTX(ctx);
  nerve__activation_step then;
  nerve_status s = nerve__activation_step_for(ctx, kind, false, NULL, 0, &then, __func__);
  if (s != NERVE_OK) return s;
  return dense_forward_sparse(ctx, &then, out, in, first, weight, bias, N, I, O, __func__);
}

/* dbias[o] += alpha * sum_n dout[n,o], added over n in order for each o; threads split
 * columns. alpha is 1 for a gradient, -lr for a fused descent step. */
typedef struct {
  float *dbias;
  const float *dout;
  int64_t N, O;
  float alpha;
} bias_job;

NERVE_INLINE void bias_grad_loop_body(void *data, int64_t o0, int64_t o1) {
  bias_job *j = data;
  float *restrict db = j->dbias;
  const float *restrict d = j->dout;
  const float alpha = j->alpha;
  for (int64_t n = 0; n < j->N; n++) {
    const float *restrict row = d + n * j->O;
    if (alpha == 1.0f)
      for (int64_t o = o0; o < o1; o++) db[o] += row[o];
    else
      for (int64_t o = o0; o < o1; o++) db[o] += alpha * row[o];
  }
}
#if NERVE_X86
/*
 * Columns [c, c + w) of bias_grad_loop_body (w <= 16 * V <= 64) over rows [n0, n1), each
 * column's sum kept in a register and stored once: the loop keeps them in memory, so each row's
 * add waits on the previous row's store (Lab A's two bias gradients, by perf's samples: about
 * 16 us a chunk of 2,048 rows, now 4-8). The same adds in the same order, so the same bits as
 * the loop where the compiler contracts its `db[o] += alpha * row[o]` into one multiply-add, as
 * both builds' compilers do for an FMA target (gcc by default in GNU C, clang's
 * -ffp-contract=on); the tests compare this kernel with the AVX2 build of the loop bit for bit.
 */
NERVE_TARGET_AVX512 NERVE_INLINE void bias_grad_block16(const bias_job *j, int64_t c, int64_t w,
                                                       int64_t n0, int64_t n1, int V) {
  __mmask16 k[4];
  __m512 acc[4];
  for (int v = 0; v < V; v++) {
    k[v] = nerve__lanes16(w - 16 * v);
    acc[v] = _mm512_maskz_loadu_ps(k[v], j->dbias + c + 16 * v);
  }
  /* With alpha 1 the multiply-add is the loop's plain add: 1 * d is exact, then one rounding. */
  const __m512 alpha = _mm512_set1_ps(j->alpha);
  const float *row = j->dout + n0 * j->O + c;
  for (int64_t n = n0; n < n1; n++, row += j->O)
    for (int v = 0; v < V; v++)
      acc[v] = _mm512_fmadd_ps(alpha, _mm512_maskz_loadu_ps(k[v], row + 16 * v), acc[v]);
  for (int v = 0; v < V; v++) _mm512_mask_storeu_ps(j->dbias + c + 16 * v, k[v], acc[v]);
}

/* Rows a pass of bias_grad_registers: each block of 64 columns reads its part of them, so wide
 * layers read each row's lines while the previous block's reading left them in cache. */
enum { BIAS_ROWS = 256 };

NERVE_TARGET_AVX512 static void bias_grad_registers(void *data, int64_t o0, int64_t o1) {
  const bias_job *j = data;
  for (int64_t n0 = 0; n0 < j->N; n0 += BIAS_ROWS) {
    const int64_t n1 = j->N - n0 < BIAS_ROWS ? j->N : n0 + BIAS_ROWS;
    for (int64_t c = o0; c < o1; c += 64) {
      const int64_t w = o1 - c < 64 ? o1 - c : 64;
      switch ((w + 15) / 16) { /* constant V: the accumulators stay in registers */
        case 1: bias_grad_block16(j, c, w, n0, n1, 1); break;
        case 2: bias_grad_block16(j, c, w, n0, n1, 2); break;
        case 3: bias_grad_block16(j, c, w, n0, n1, 3); break;
        default: bias_grad_block16(j, c, w, n0, n1, 4); break;
      }
    }
  }
}
#endif

NERVE_RANGE_KERNEL(bias_grad_loop);

/* The bias gradient's kernel for isa. */
static nerve__range_fn bias_grad_for(nerve_isa isa) {
#if NERVE_X86
  if (isa == NERVE_ISA_AVX512) return bias_grad_registers;
#endif
  return bias_grad_loop_isa[isa];
}

void nerve__bias_accumulate_here(const nerve_context *ctx, float *dbias, const float *dout,
                                 int64_t N, int64_t O, float alpha) {
  bias_job j = {.dbias = dbias, .dout = dout, .N = N, .O = O, .alpha = alpha};
  bias_grad_for(ctx->isa)(&j, 0, O);
}

void nerve__bias_accumulate(nerve_context *ctx, float *dbias, const float *dout, int64_t N,
                            int64_t O, float alpha) {
  bias_job j = {.dbias = dbias, .dout = dout, .N = N, .O = O, .alpha = alpha};
  /* Columns per thread: worth it only for wide layers. */
  nerve__parallel_for(ctx, O, (1 << 16) / (N + 1) + 16, bias_grad_for(ctx->isa), &j);
}

/*
 * The GEMM scratch the backward products take, reserved before the first write so that running
 * out of memory changes nothing: din [N,I] = dout [N,O] . weight^T (nn, weight transposed) and,
 * into grad [I,O] (row stride O), in^T . dout (tn).
 */
static nerve_status reserve_backward(nerve_context *ctx, bool din, bool grad, int64_t N,
                                     int64_t I, int64_t O, const char *func) {
  size_t nn = din ? nerve__gemm_nn_scratch(ctx, method_rows(ctx, N), I, O, true) : 0;
  size_t tn = grad ? nerve__gemm_tn_scratch(ctx, N, O, I, O) : 0;
  return nerve__scratch(ctx, NERVE_SCRATCH_GEMM, nn > tn ? nn : tn, func);
}

/*
 * The backward of a layer with few inputs and outputs over many rows (Lab A's 30 -> 10 on
 * 2,048), by a team of two that splits the rows, not the weight gradient's elements: each
 * element of dweight is one chain over all N rows (tn_narrow), so threads sharing out its
 * elements each read every row of in, and the rows the other core had written (the layers
 * before split rows) came across: 18 us a chunk where one core reads the rows it holds in 8.
 * Here member 0 runs the chains over the first half of the rows, member 1 takes them on from
 * where they stopped over the second half (the same chains: the same bits), and each computes
 * the input gradient of its own rows meanwhile; member 1, waiting for the first half, sums the
 * bias's gradient over all rows (one chain per column, too long to split and too short to
 * start threads for).
 */
typedef struct {
  const nerve_context *ctx;
  const nerve__activation_step *then;
  float *din, *dweight, *dbias;
  const float *dout, *in, *packed; /* packed: weight^T packed for the input gradient */
  int64_t N, I, O, half;
  int first_half_done; /* member 0 has run the chains over rows [0, half) (nerve__flag_*) */
} halves_job;

/* Rows [r0, r1) of the input gradient, then `then` on them. */
static void halves_input_rows(const halves_job *j, int64_t r0, int64_t r1) {
  nerve__gemm_nn_packed_here(j->ctx, j->din + r0 * j->I, j->I, j->dout + r0 * j->O, j->O, j->packed,
                             r1 - r0, j->I, j->O);
  nerve__activation_rows(j->then, j->din, j->I, j->I, r0, r1);
}

static void halves_member(void *data, int t, int nt) {
  halves_job *j = data;
  const int64_t N = j->N, h = j->half;
  if (t == 0) {
    nerve__gemm_tn_narrow_rows(j->dweight, j->O, j->in, j->I, j->dout, j->O, j->O, j->I, 0, h, 1.0f);
    nerve__flag_raise(&j->first_half_done);
    halves_input_rows(j, 0, h);
    if (nt > 1) return;
  } else if (t > 1) {
    return; /* (a team of two is asked for; none larger is granted) */
  }
  /* Member 1, or member 0 alone if the runtime granted one thread. */
  halves_input_rows(j, h, N);
  if (j->dbias) nerve__bias_accumulate_here(j->ctx, j->dbias, j->dout, N, j->O, 1.0f);
  nerve__flag_wait(&j->first_half_done);
  nerve__gemm_tn_narrow_rows(j->dweight, j->O, j->in, j->I, j->dout, j->O, j->O, j->I, h, N, 1.0f);
}

/* Whether dense_backward goes by halves (above): two threads, work the products would share out
 * (GEMM_GRAIN multiply-adds and more; through the C API alone, 512 rows of 30 -> 10 took 10.7
 * us by halves against 7.8 on one thread), an input gradient by packed products and a weight
 * gradient by tn_narrow with one panel of G's rows (I <= 32), which nerve__gemm_tn would share
 * out by columns, every thread over all rows. */
static bool by_halves(const nerve_context *ctx, bool din, bool dweight, int64_t N, int64_t I, int64_t O) {
  return din && dweight && ctx->threads == 2 && N * I * O >= GEMM_GRAIN && I <= 32 &&
         nerve__gemm_tn_narrow(ctx, N, O, I) && nerve__gemm_nn_packs(ctx, method_rows(ctx, N), I, O, true);
}

/*
 * dout [N,O], in [N,I], weight [I,O] ->
 *   din [N,I] = dout . weight^T (written; then `then` on it, NULL: nothing),
 *   dweight [I,O] += in^T . dout, dbias [O] += sum_n dout
 */
static nerve_status dense_backward(nerve_context *ctx, const nerve__activation_step *then, float *din,
                                   float *dweight, float *dbias, const float *dout, const float *in,
                                   const float *weight, int64_t N, int64_t I, int64_t O,
                                   const char *func) {
  nerve_status s = check_sizes(ctx, N, I, O, func);
  if (s != NERVE_OK) return s;
  if (N == 0) return NERVE_OK;
  /* Every pointer a requested output needs is checked before the first is written. */
  if (O > 0) NERVE_CHECK_PTR_IN(ctx, dout, func);
  if (din && I > 0 && O > 0) NERVE_CHECK_PTR_IN(ctx, weight, func);
  if ((dweight && I > 0 && O > 0) || (din && I > 0 && nerve__activation_applies(then))) NERVE_CHECK_PTR_IN(ctx, in, func);
  s = reserve_backward(ctx, din && I > 0, dweight && I > 0 && O > 0, N, I, O, func);
  if (s != NERVE_OK) return s;
  if (I > 0 && O > 0 && by_halves(ctx, din != NULL, dweight != NULL, N, I, O)) {
    float *packed = ctx->scratch[NERVE_SCRATCH_GEMM];
    nerve__gemm_nn_pack(ctx, packed, weight, O, I, O);
    halves_job j = {.ctx = ctx, .then = then, .din = din, .dweight = dweight, .dbias = dbias, .dout = dout,
                    .in = in, .packed = packed, .N = N, .I = I, .O = O, .half = N / 2};
    nerve__parallel_team(2, halves_member, &j);
    return NERVE_OK;
  }
  if (din && I > 0) {
    s = nerve__gemm_nn_then(ctx, din, I, dout, O, weight, O, true, NULL, false, N, I, O, method_rows(ctx, N),
                            then, func);
    if (s != NERVE_OK) return s;
  }
  if (dweight && I > 0 && O > 0) {
    s = nerve__gemm_tn(ctx, dweight, O, in, I, dout, O, N, O, I, 1.0f, func);
    if (s != NERVE_OK) return s;
  }
  if (dbias && O > 0) nerve__bias_accumulate(ctx, dbias, dout, N, O, 1.0f);
  return NERVE_OK;
}

nerve_status nerve_dense_backward(nerve_context *ctx, float *din, float *dweight, float *dbias,
                                  const float *dout, const float *in, const float *weight,
                                  int64_t N, int64_t I, int64_t O) {
  NERVE_CHECK_CTX(ctx);
  return dense_backward(ctx, NULL, din, dweight, dbias, dout, in, weight, N, I, O, __func__);
}

nerve_status nerve_dense_backward_activation(nerve_context *ctx, nerve_activation kind, float *din,
                                             float *dweight, float *dbias, const float *dout,
                                             const float *in, const float *weight, int64_t N,
                                             int64_t I, int64_t O) {
  NERVE_CHECK_CTX(ctx);
  nerve__activation_step then;
  nerve_status s = nerve__activation_step_for(ctx, kind, true, in, I, &then, __func__);
  if (s != NERVE_OK) return s;
  return dense_backward(ctx, &then, din, dweight, dbias, dout, in, weight, N, I, O, __func__);
}

/*
 * dout [N,O], in = rows [first, first + N) of a sparse [*, I] ->
 *   dweight [I,O] += in^T . dout, dbias [O] += sum_n dout
 */
nerve_status nerve_dense_backward_sparse(nerve_context *ctx, float *dweight, float *dbias,
                                         const nerve_sparse *in, int64_t first,
                                         const float *dout, int64_t N, int64_t I, int64_t O) {
  NERVE_CHECK_CTX(ctx);
  nerve_status s = check_sparse(ctx, in, first, N, I, O, __func__);
  if (s != NERVE_OK) return s;
  if (N == 0 || O == 0) return NERVE_OK;
  NERVE_CHECK_PTR(ctx, dout);
  if (dweight && I > 0) return nerve__sparse_tn(ctx, dweight, O, dbias, in, first, dout, O, N, O, 1.0f, __func__);
  if (dbias) nerve__bias_accumulate(ctx, dbias, dout, N, O, 1.0f);
  return NERVE_OK;
}

/*
 * dout [N,O], in [N,I], weight [I,O], bias [O] ->
 *   din [N,I] = dout . weight^T (written, with the weights before the step; then `then` on it,
 *   NULL: nothing), weight -= lr * in^T . dout, bias -= lr * sum_n dout
 */
static nerve_status dense_backward_sgd(nerve_context *ctx, const nerve__activation_step *then, float *din,
                                       float *weight, float *bias, const float *dout, const float *in,
                                       int64_t N, int64_t I, int64_t O, float lr, const char *func) {
  nerve_status s = check_sizes(ctx, N, I, O, func);
  if (s != NERVE_OK) return s;
  if (!(lr >= 0.0f) || lr > 3.0e38f)
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, func,
                       "learning rate must be finite and >= 0, got %g", (double)lr);
  if (N == 0 || O == 0) return NERVE_OK;
  NERVE_CHECK_PTR_IN(ctx, dout, func);
  if (I > 0) {
    NERVE_CHECK_PTR_IN(ctx, weight, func);
    NERVE_CHECK_PTR_IN(ctx, in, func);
  }
  s = reserve_backward(ctx, din && I > 0, I > 0, N, I, O, func);
  if (s != NERVE_OK) return s;
  if (din && I > 0) {
    s = nerve__gemm_nn_then(ctx, din, I, dout, O, weight, O, true, NULL, false, N, I, O, method_rows(ctx, N),
                            then, func);
    if (s != NERVE_OK) return s;
  }
  if (I > 0) {
    s = nerve__gemm_tn_step(ctx, weight, O, in, I, dout, O, N, O, I, -lr, func);
    if (s != NERVE_OK) return s;
  }
  if (bias) nerve__bias_accumulate(ctx, bias, dout, N, O, -lr);
  return NERVE_OK;
}

nerve_status nerve_dense_backward_sgd(nerve_context *ctx, float *din, float *weight, float *bias,
                                      const float *dout, const float *in, int64_t N, int64_t I,
                                      int64_t O, float lr) {
  NERVE_CHECK_CTX(ctx);
  return dense_backward_sgd(ctx, NULL, din, weight, bias, dout, in, N, I, O, lr, __func__);
}

nerve_status nerve_dense_backward_sgd_activation(nerve_context *ctx, nerve_activation kind, float *din,
                                                 float *weight, float *bias, const float *dout,
                                                 const float *in, int64_t N, int64_t I, int64_t O,
                                                 float lr) {
  NERVE_CHECK_CTX(ctx);
  nerve__activation_step then;
  nerve_status s = nerve__activation_step_for(ctx, kind, true, in, I, &then, __func__);
  if (s != NERVE_OK) return s;
  return dense_backward_sgd(ctx, &then, din, weight, bias, dout, in, N, I, O, lr, __func__);
}

/* ---- Backward fused with an Adam step --------------------------------------------------- */

typedef struct {
  nerve_context *ctx;
  float *din, *weight, *m, *v;
  const float *dout;
  const nerve__nt_packed *dout_packed; /* for the input gradient (packed_output_gradient) */
  int64_t N, I, O;
  nerve__adam_params p;
  bool streams_large; /* past STREAMED_STEP_MAX_BYTES, the weights streamed too (streams_weights) */
} adam_fused_job;

/* Before a tile's weights change: its columns of the input gradient, from the old weights. */
static void adam_fused_rows(void *arg, int64_t k0, int64_t k1) {
  adam_fused_job *j = arg;
  if (j->din)
    nerve__gemm_nt_columns(j->ctx, j->din, j->I, j->dout, j->O, j->dout_packed, j->weight, j->O, j->N, j->O, k0, k1);
}

#if NERVE_X86
/* Weights a row buffer steps at a time (adam_run_streamed). */
enum { STEP_RUN = 256 };

/*
 * nerve__adam_run with the weights written back by streaming stores: stepped in a buffer, then
 * streamed out, n a multiple of 16 and w at a 64-byte boundary (streams_weights). The same
 * arithmetic on the same values: the same bits.
 */
NERVE_TARGET_AVX512 static void adam_run_streamed(float *w, float *m, float *v, const float *g, int64_t n,
                                                  const nerve__adam_params *p) {
  float stepped[STEP_RUN] __attribute__((aligned(64)));
  for (int64_t c = 0; c < n; c += STEP_RUN) {
    const int64_t len = n - c < STEP_RUN ? n - c : STEP_RUN;
    memcpy(stepped, w + c, (size_t)len * sizeof(float));
    nerve__adam_run(stepped, m + c, v + c, g + c, len, p);
    for (int64_t i = 0; i < len; i += 16) _mm512_stream_ps(w + c + i, _mm512_load_ps(stepped + i));
  }
}

/* Bytes of weights and moments up to which a team streams the weights back wherever its cores
 * are: past it (Lab E's 59 MB), with the two cores on one die, the lines the forward read are
 * mostly in the shared L3 by the step, and streaming only sent the next forward to memory for
 * them (a 12,000-image Lab E epoch at 2 threads, fastest of 8 runs 3.00 -> 3.23 s; its dense
 * backward 4.11-4.13 -> 4.50-4.57 ms, bench/lab_e_step.c). The fast recipe's 2.4 MB: 2.46 ->
 * 2.20 s an epoch at 2 threads (medians of 6 alternated runs). */
enum { STREAMED_STEP_MAX_BYTES = 16 << 20 };

/* Whether an [I,O] weight and its two moments pass STREAMED_STEP_MAX_BYTES. */
static bool large_step(int64_t I, int64_t O) {
  return I * O > STREAMED_STEP_MAX_BYTES / (3 * (int64_t)sizeof(float));
}

/* Whether a large step streams its weights too (adam_fused_job.streams_large): always when the
 * context was set to NERVE_STORES_STREAMED; under AUTO while the team's cores are far apart
 * (nerve__cores_far), where each line the other core read must be taken back from its die's
 * L3: Lab E's dense backward 6.65-7.48 -> 4.68-4.73 ms in those minutes on the Zen 4 host
 * (bench/lab_e_step.c, alternated). Decided before the team starts; streams_weights checks
 * the rest with the team's own size. */
static bool streams_large_weights(nerve_context *ctx, int64_t I, int64_t O) {
  return ctx->threads >= 2 && large_step(I, O) && nerve__streams_while_far(ctx);
}

/* Whether a team of `threads` steps j's weights through adam_run_streamed (nerve__streams_rows:
 * the forward's threads read the weights by columns and the tiles rewrite rows, so most lines a
 * tile rewrites were another core's too): within STREAMED_STEP_MAX_BYTES, or past it where
 * streams_large_weights said so. */
static bool streams_weights(const adam_fused_job *j, int threads) {
  return nerve__streams_rows(j->ctx, threads, j->weight, j->O) && (j->streams_large || !large_step(j->I, j->O));
}
#endif

/* A tile of the weight gradient, g[r*ldg + c], applied at once, the weights streamed back where
 * streams_weights says. Only the AVX-512 visitor calls it, so it is compiled for AVX-512
 * (AVX2's: adam_fused_tile_avx2). */
NERVE_TARGET_AVX512 static void adam_fused_tile(void *arg, int64_t k0, int64_t col, const float *g,
                                                int64_t rows, int64_t cols, int64_t ldg, int threads) {
  adam_fused_job *j = arg;
  const unsigned mode = nerve__subnormals_as_zero(); /* as nerve_adam_step runs */
#if NERVE_X86
  if (streams_weights(j, threads)) {
    for (int64_t r = 0; r < rows; r++) {
      const int64_t at = (k0 + r) * j->O + col;
      adam_run_streamed(j->weight + at, j->m + at, j->v + at, g + r * ldg, cols, &j->p);
    }
    _mm_sfence(); /* the streamed weights seen by whoever reads them next */
    nerve__subnormals_restore(mode);
    return;
  }
#endif
  (void)threads;
  for (int64_t r = 0; r < rows; r++) {
    int64_t at = (k0 + r) * j->O + col;
    float *w = j->weight + at, *m = j->m + at, *v = j->v + at;
    nerve__adam_run(w, m, v, g + r * ldg, cols, &j->p);
  }
  nerve__subnormals_restore(mode);
}

/* adam_fused_tile for AVX2's visitor: the step nerve_adam_step's AVX2 copy takes (the same
 * bits), on weights stored as usual. */
NERVE_TARGET_AVX2 static void adam_fused_tile_avx2(void *arg, int64_t k0, int64_t col, const float *g,
                                                   int64_t rows, int64_t cols, int64_t ldg, int threads) {
  adam_fused_job *j = arg;
  (void)threads;
  const unsigned mode = nerve__subnormals_as_zero(); /* as nerve_adam_step runs */
  for (int64_t r = 0; r < rows; r++) {
    int64_t at = (k0 + r) * j->O + col;
    nerve__adam_run(j->weight + at, j->m + at, j->v + at, g + r * ldg, cols, &j->p);
  }
  nerve__subnormals_restore(mode);
}

/* Columns [k0, k1) of the input gradient, as the fused Adam path computes them. */
typedef struct {
  nerve_context *ctx;
  float *din;
  const float *dout, *weight;
  const nerve__nt_packed *dout_packed;
  int64_t N, I, O;
} input_columns_job;

static void input_columns(void *arg, int64_t k0, int64_t k1) {
  input_columns_job *j = arg;
  nerve__gemm_nt_columns(j->ctx, j->din, j->I, j->dout, j->O, j->dout_packed, j->weight, j->O, j->N, j->O, k0, k1);
}

/* dout [N,O] packed for the input gradient's dots where they take it so (nerve__gemm_nt_pack),
 * without its silent columns: every sum is added to +0. */
static nerve_status packed_output_gradient(nerve_context *ctx, const float *dout, int64_t N, int64_t O,
                                           nerve__nt_packed *packed, const char *func) {
  return nerve__gemm_nt_pack(ctx, dout, O, method_rows(ctx, N), N, O, true, packed, func);
}

/* The whole input gradient in columns shared out among threads as products are (a column
 * is N dot products of length O), computed as the fused path's tiles compute it: the same
 * chains, from the weights as they are now. */
static void input_gradient(nerve_context *ctx, float *din, const float *dout, const nerve__nt_packed *dout_packed,
                           const float *weight, int64_t N, int64_t I, int64_t O) {
  input_columns_job j = {.ctx = ctx, .din = din, .dout = dout, .dout_packed = dout_packed, .weight = weight,
                         .N = N, .I = I, .O = O};
  nerve__parallel_for(ctx, I, GEMM_GRAIN / (N * nerve__nt_dot_madds(O)) + 1, input_columns, &j);
}

/* How the fused path computes the input gradient, from the weights before the step. */
typedef enum {
  INPUT_BY_TILES, /* each tile's columns as dot products just before its step, its weights in cache */
  INPUT_DOTS,     /* all the dots first: with a classifier's 10 outputs each tile's call would
                     be a short call of short dots */
  INPUT_PRODUCT,  /* one product first, as nerve_dense_backward makes it */
} input_method;

/* The product where nerve_dense_backward would not take dot products either, past their
 * kernel's rows (nerve__gemm_nn_packs; the packed weight's bytes reserved before anything is
 * stepped): each row's zeros in dout (a relu's gradient) are skipped, which dot
 * products cannot do. The fast recipe's 800 -> 256 layer on 192 rows, half of dout zero: the
 * fused step 1.79 -> 1.27 ms at 1 thread and 0.99 -> 0.66 ms at 2 with its operands in cache,
 * 1.95-2.06 -> 1.56-1.63 ms at 1 thread from wherever the other layers left them
 * (bench/fast_layers.c). */
static input_method fused_input_method(const nerve_context *ctx, int64_t N, int64_t I, int64_t O) {
  if (O < NT_DOTS_MIN) return INPUT_DOTS;
  return nerve__gemm_nn_packs(ctx, method_rows(ctx, N), I, O, true) ? INPUT_PRODUCT : INPUT_BY_TILES;
}

/* Rows of the batch up to which the fused path is used (its tiles re-read the batch per tile). */
enum { FUSED_MAX_ROWS = 256 };

/* Whether nerve_dense_backward_adam fuses the weight gradient with the step, by the whole
 * batch's rows: nerve_dense_backward_adam_input must choose as it does. */
static bool fuses(const nerve_context *ctx, int64_t N) {
  return method_rows(ctx, N) <= FUSED_MAX_ROWS && nerve__gemm_tn_visits(ctx);
}

/*
 * dout [N,O], in [N,I], weight [I,O], bias [O], moments [I,O] and [O] ->
 *   din [N,I] (written, old weights), weight and bias stepped by Adam
 */
nerve_status nerve_dense_backward_adam(nerve_context *ctx, float *din, float *weight, float *bias,
                                       float *weight_m, float *weight_v, float *bias_m,
                                       float *bias_v, const float *dout, const float *in,
                                       int64_t N, int64_t I, int64_t O, float lr, float beta1,
                                       float beta2, float eps, float weight_decay,
                                       float decoupled_weight_decay, int64_t step) {
  NERVE_CHECK_CTX(ctx);
  /* Everything is checked before the first write: a refused call changes nothing. */
  nerve_status s = check_sizes(ctx, N, I, O, __func__);
  if (s == NERVE_OK)
    s = nerve__check_adam(ctx, lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay, step, __func__);
  if (s != NERVE_OK) return s;
  if (N == 0 || O == 0 || I == 0) return NERVE_OK;
  NERVE_CHECK_PTR(ctx, weight);
  NERVE_CHECK_PTR(ctx, weight_m);
  NERVE_CHECK_PTR(ctx, weight_v);
  NERVE_CHECK_PTR(ctx, dout);
  NERVE_CHECK_PTR(ctx, in);
  if (bias) {
    NERVE_CHECK_PTR(ctx, bias_m);
    NERVE_CHECK_PTR(ctx, bias_v);
  }
  /* All the scratch either path needs, before anything is stepped: the gradients' space (fused:
   * the bias's, then the visitor's space: lists or D's panels, and tiles) and what
   * nerve_dense_backward's products take, unfused or for the fused input gradient's product. */
  const bool fused = fuses(ctx, N);
  const size_t lists_at = ((size_t)O * sizeof(float) + 63) & ~(size_t)63; /* after gbias, fused */
  s = nerve__scratch(ctx, NERVE_SCRATCH_LAYER,
                     fused ? lists_at + nerve__gemm_tn_visit_space(ctx, N, O) : (size_t)(O + I * O) * sizeof(float),
                     __func__);
  if (s == NERVE_OK && !fused) s = reserve_backward(ctx, din != NULL, true, N, I, O, __func__);
  const input_method input = fused && din ? fused_input_method(ctx, N, I, O) : INPUT_BY_TILES;
  if (s == NERVE_OK && input == INPUT_PRODUCT) s = reserve_backward(ctx, true, false, N, I, O, __func__);
  nerve__nt_packed dout_packed = {.P = NULL};
  if (s == NERVE_OK && fused && din && input != INPUT_PRODUCT)
    s = packed_output_gradient(ctx, dout, N, O, &dout_packed, __func__);
  if (s != NERVE_OK) return s;
  /* The fused path's input gradient computed whole, before anything is stepped: from the
   * weights before the step, and so that nothing has changed should it fail. */
  if (input == INPUT_DOTS) input_gradient(ctx, din, dout, &dout_packed, weight, N, I, O);
  if (input == INPUT_PRODUCT) {
    s = nerve_dense_backward(ctx, din, NULL, NULL, dout, NULL, weight, N, I, O);
    if (s != NERVE_OK) return s;
  }
  /* The bias first (small): its gradient in scratch, then the ordinary step. */
  float *gbias = ctx->scratch[NERVE_SCRATCH_LAYER];
  memset(gbias, 0, (size_t)O * sizeof(float));
  nerve__bias_accumulate(ctx, gbias, dout, N, O, 1.0f);
  if (bias) {
    s = nerve_adam_step(ctx, bias, bias_m, bias_v, gbias, O, lr, beta1, beta2, eps, 0.0f, 0.0f, step);
    if (s != NERVE_OK) return s;
  }
  adam_fused_job j = {
      .ctx = ctx, .din = din, .weight = weight, .m = weight_m, .v = weight_v, .dout = dout,
      .dout_packed = &dout_packed, .N = N, .I = I, .O = O,
      .p = {.lr = lr, .beta1 = beta1, .beta2 = beta2, .eps = eps,
            .c1 = (float)(1.0 / (1.0 - pow(beta1, (double)step))),
            .c2 = (float)(1.0 / (1.0 - pow(beta2, (double)step))),
            .coupled_decay = weight_decay, .shrink = 1.0f - lr * decoupled_weight_decay}};
#if NERVE_X86
  if (fused) j.streams_large = streams_large_weights(ctx, I, O);
#endif
  const nerve__visit_streams rows = {.base = {weight, weight_m, weight_v}, .count = 3,
                                     .row_bytes = O * (int64_t)sizeof(float)};
  if (fused) {
    if (nerve__gemm_tn_visit(ctx, in, I, dout, O, N, O, I, input == INPUT_BY_TILES ? adam_fused_rows : NULL,
                             ctx->isa == NERVE_ISA_AVX2 ? adam_fused_tile_avx2 : adam_fused_tile, &rows,
                             (char *)gbias + lists_at, &j))
      return NERVE_OK;
  }
  /* Elsewhere: the gradient in scratch (after the bias's, reserved above), then the ordinary
   * step. */
  float *gw = gbias + O;
  memset(gw, 0, (size_t)(I * O) * sizeof(float));
  s = nerve_dense_backward(ctx, din, gw, NULL, dout, in, weight, N, I, O);
  if (s != NERVE_OK) return s;
  return nerve_adam_step(ctx, weight, weight_m, weight_v, gw, I * O, lr, beta1, beta2, eps,
                         weight_decay, decoupled_weight_decay, step);
}

/*
 * dout [N,O], weight [I,O] -> din [N,I] (written), exactly as nerve_dense_backward_adam
 * writes it; nothing else changes
 */
nerve_status nerve_dense_backward_adam_input(nerve_context *ctx, float *din, const float *dout,
                                             const float *weight, int64_t N, int64_t I, int64_t O) {
  NERVE_CHECK_CTX(ctx);
  nerve_status s = check_sizes(ctx, N, I, O, __func__);
  if (s != NERVE_OK) return s;
  if (N == 0 || O == 0 || I == 0) return NERVE_OK;
  NERVE_CHECK_PTR(ctx, din);
  NERVE_CHECK_PTR(ctx, dout);
  NERVE_CHECK_PTR(ctx, weight);
  if (!fuses(ctx, N) || fused_input_method(ctx, N, I, O) == INPUT_PRODUCT)
    return nerve_dense_backward(ctx, din, NULL, NULL, dout, NULL, weight, N, I, O);
  nerve__nt_packed dout_packed;
  s = packed_output_gradient(ctx, dout, N, O, &dout_packed, __func__);
  if (s != NERVE_OK) return s;
  input_gradient(ctx, din, dout, &dout_packed, weight, N, I, O);
  return NERVE_OK;
}
