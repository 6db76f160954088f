/*
 * internal.h: what libnerve's source files share and callers never see: the context layout,
 * error reporting, the parallel-loop helpers over the OpenMP runtime, instruction-set
 * multiversioning, and scalar math written so compilers can vectorise it.
 */
#ifndef NERVE_INTERNAL_H
#define NERVE_INTERNAL_H

#include "nerve.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define NERVE_HIDDEN __attribute__((visibility("hidden")))
#define NERVE_INLINE static inline __attribute__((always_inline))

/* Scratch memory comes in slots so a layer's workspace (an im2col block) and the GEMM it
 * calls (packed panels) never overwrite each other; the third holds a pool's backward for a
 * convolution that reads it (nerve_conv2d_backward_maxpool, where it cannot fuse the two). */
enum { NERVE_SCRATCH_GEMM = 0, NERVE_SCRATCH_LAYER = 1, NERVE_SCRATCH_POOL = 2, NERVE_SCRATCH_SLOTS = 3 };

struct nerve_context {
  int threads;   /* >= 1 */
  nerve_isa isa; /* resolved: never NERVE_ISA_AUTO */
  /* Whether the fused optimizer steps ask for each next tile's weights and moments in software
   * (gemm.c's fetch_rows): by the CPU unless set (nerve_context_set_fetch_ahead). */
  bool fetches_ahead;
  /* Whether a team may write lines the other threads just read with streaming stores
   * (nerve__streams_rows): by the CPU unless set (nerve_context_set_stores). */
  bool streams_stores;
  /* Set to NERVE_STORES_STREAMED: large fused Adam steps stream too, wherever the cores are
   * (dense.c's streams_weights); under AUTO they stream while nerve__cores_far says so. */
  bool streams_always;
  /* nerve__cores_far's last answer and when it was probed (CLOCK_MONOTONIC ns; 0: never), and
   * the answer the environment gave instead (NERVE_CORES=far: 1, =near: 0; otherwise -1). */
  bool cores_far;
  int64_t cores_probed_ns;
  int cores_told;
  /* Rows of the whole batch when calls get a rank's part of it (0: each call is whole);
   * dense layers choose their methods by it (nerve_context_set_whole_batch). */
  int64_t whole_batch;
  void *scratch[NERVE_SCRATCH_SLOTS]; /* 64-byte aligned, owned */
  size_t scratch_size[NERVE_SCRATCH_SLOTS];
  char error[320];
};


/* ---- Errors ----------------------------------------------------------------------------- */

/* Records "<function>: <message>" in ctx and returns status. */
NERVE_HIDDEN nerve_status nerve__fail(nerve_context *ctx, nerve_status status, const char *func,
                                      const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Argument checks shared by every entry point. Each returns from the calling function. */
#define NERVE_CHECK_CTX(ctx)                                                                   \
  do {                                                                                         \
    if (!(ctx)) return NERVE_ERROR_NULL_POINTER;                                               \
    (ctx)->error[0] = 0;                                                                       \
  } while (0)
#define NERVE_CHECK_PTR(ctx, p) NERVE_CHECK_PTR_IN(ctx, p, __func__)
/* For a helper shared by entry points: func names the caller. */
#define NERVE_CHECK_PTR_IN(ctx, p, func)                                                       \
  do {                                                                                         \
    if (!(p)) return nerve__fail((ctx), NERVE_ERROR_NULL_POINTER, (func), "%s is NULL", #p);   \
  } while (0)
#define NERVE_CHECK_SIZE(ctx, s)                                                               \
  do {                                                                                         \
    if ((s) < 0)                                                                               \
      return nerve__fail((ctx), NERVE_ERROR_BAD_SIZE, __func__, "%s is negative (%lld)", #s,   \
                         (long long)(s));                                                      \
  } while (0)

/* Checks that a*b (and a*b*c) fit comfortably; the element counts kernels index with. */
NERVE_HIDDEN bool nerve__product_ok(int64_t a, int64_t b);

/* Makes scratch slot `slot` at least `bytes` long (allocates only when it must grow). */
NERVE_HIDDEN nerve_status nerve__scratch(nerve_context *ctx, int slot, size_t bytes,
                                         const char *func);

/* ---- Parallel loops over the OpenMP runtime --------------------------------------------- */
/*
 * libnerve calls the OpenMP runtime's entry point (GOMP_parallel, exported by libgomp and by
 * LLVM's libomp) instead of using #pragma omp: pragmas need -fopenmp, an unsafe flag that
 * SwiftPM refuses in packages that others depend on by version.
 */

/* fn(arg, begin, end) handles items [begin, end). */
typedef void (*nerve__range_fn)(void *arg, int64_t begin, int64_t end);

/*
 * Splits [0, n) into one contiguous range per thread and runs fn on each. Uses fewer threads
 * when n / grain is small, and none (a direct call) when one suffices. Callers make each item's
 * result independent of which range it falls in, so the split never changes results.
 */
NERVE_HIDDEN void nerve__parallel_for(const nerve_context *ctx, int64_t n, int64_t grain,
                                      nerve__range_fn fn, void *arg);
/* nerve__parallel_for with the range taken in chunks as threads become free (nerve__take_chunk,
 * below): for long loops whose units are independent of where chunks start. */
NERVE_HIDDEN void nerve__parallel_chunks(const nerve_context *ctx, int64_t n, int64_t grain,
                                         nerve__range_fn fn, void *arg);

/* The threads of the Nerve team (nerve__parallel_team, _for, _chunks) running the caller, as
 * the runtime granted them, which may be fewer than asked (nested regions, OMP_THREAD_LIMIT);
 * 1 outside one. For choices a kernel makes by its team's size where it is passed only a range
 * (how it stores: nerve__streams_rows). */
NERVE_HIDDEN int nerve__team_threads(void);

/*
 * Whether the first two threads of ctx's teams now run on cores far apart: a cache line handed
 * from one to the other and back takes over 120 ns each way (AMD's Zen 4 host of this project,
 * its two virtual CPUs on two dies for minutes at a time: 160-180 ns, against 25-35 on one die
 * and 51-87 on an Intel mesh). Probed by a ping-pong in a team of two at most every 0.1 s, the
 * answer kept in ctx between probes (parallel.c's FAR_* constants); false with one thread, or
 * when the partner did not answer within 0.2 ms (a busy machine). NERVE_CORES=far or =near in
 * the environment when the context was made answers instead (the tests run the far paths that
 * way). Called outside teams, by the calling thread.
 */
NERVE_HIDDEN bool nerve__cores_far(nerve_context *ctx);

/*
 * Whether a team writes with streaming stores the lines it streams only while its cores are far
 * apart (a large fused Adam step's weights, batch norm's input gradient, an SGD step's padded
 * copy back): the context streams (ctx->streams_stores), and it was set to
 * NERVE_STORES_STREAMED or nerve__cores_far says so. Called outside teams.
 */
NERVE_HIDDEN bool nerve__streams_while_far(nerve_context *ctx);

/* Runs fn(arg, thread, nthreads) on `threads` threads (a direct call if threads <= 1). */
typedef void (*nerve__team_fn)(void *arg, int thread, int nthreads);
NERVE_HIDDEN void nerve__parallel_team(int threads, nerve__team_fn fn, void *arg);

/* A flag one member of a team raises (zero before the team starts) once what it wrote may be
 * read, and another waits for: spinning at first (the waits are microseconds), then yielding
 * the core, so that a waiter whose partner is descheduled (more threads than free cores) lets
 * it run instead of burning the time slice. */
NERVE_HIDDEN void nerve__flag_raise(int *flag);
NERVE_HIDDEN void nerve__flag_wait(int *flag);

/*
 * A team's next chunk of units [*begin, *end) out of n, `chunk` at a time, taken from the
 * shared counter *next (zero before the team starts); false once none are left. Threads take
 * chunks as they become free instead of equal shares fixed in advance, so a thread slowed by
 * another process on its core (or by sparser rows) does less of the work. Only for units whose
 * results depend neither on the thread that runs them nor on where chunks start.
 */
NERVE_INLINE bool nerve__take_chunk(int64_t *next, int64_t chunk, int64_t n, int64_t *begin,
                                    int64_t *end) {
  const int64_t a = __atomic_fetch_add(next, chunk, __ATOMIC_RELAXED);
  if (a >= n) return false;
  *begin = a, *end = n - a < chunk ? n : a + chunk;
  return true;
}

/*
 * nerve__take_chunk with chunks that shrink as the units run out (guided scheduling): a
 * quarter of what is left for a team of two, from most down to least. Early chunks long, so a
 * thread runs long stretches of consecutive units (the fused visitor fetches each next tile's
 * rows as it goes); late ones short, so the threads finish together instead of one running a
 * whole last chunk while the other waits. Two threads reading the same count may both take a
 * chunk of the size it gave: only the sizes differ, never which units run.
 */
NERVE_INLINE bool nerve__take_guided_chunk(int64_t *next, int threads, int64_t least, int64_t most,
                                           int64_t n, int64_t *begin, int64_t *end) {
  int64_t chunk = (n - __atomic_load_n(next, __ATOMIC_RELAXED)) / (2 * (int64_t)threads);
  chunk = chunk < least ? least : chunk > most ? most : chunk;
  return nerve__take_chunk(next, chunk, n, begin, end);
}

/*
 * Sums f over [0, n) in a fixed order whatever the thread count: the range is cut into chunks
 * whose size depends only on n, each chunk's partial sum is computed (in parallel), and the
 * partials are added in chunk order. fn(arg, begin, end) returns the sum over [begin, end).
 */
typedef double (*nerve__sum_fn)(void *arg, int64_t begin, int64_t end);
NERVE_HIDDEN double nerve__parallel_sum(const nerve_context *ctx, int64_t n, int64_t min_chunk,
                                        nerve__sum_fn fn, void *arg);

/* Threads to use for `work` units when `grain` units justify one thread. */
NERVE_HIDDEN int nerve__threads_for(const nerve_context *ctx, int64_t work, int64_t grain);

/* ---- Instruction sets ------------------------------------------------------------------- */

NERVE_HIDDEN nerve_isa nerve__best_isa(void);

#if defined(__x86_64__) || defined(__i386__)
#  define NERVE_X86 1
/* prfchw: a prefetch for writing (nerve__prefetch's write) is PREFETCHW, which takes the line
 * for this core alone; without it the compilers emit PREFETCHT0, the line arrives shared, and
 * the store still waits for the other core's copy to be invalidated. Every AVX-512 CPU has it. */
#  define NERVE_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prfchw")))
#  define NERVE_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#  define NERVE_X86 0
#  define NERVE_TARGET_AVX512
#  define NERVE_TARGET_AVX2
#endif

/* Whether libnerve's own vector kernels (AVX-512's or AVX2's) take ctx's products, and read
 * the packed lists and gathered windows they need; below them OpenBLAS and plain loops run. */
NERVE_INLINE bool nerve__own_vectors(const nerve_context *ctx) {
  return NERVE_X86 && (ctx->isa == NERVE_ISA_AVX512 || ctx->isa == NERVE_ISA_AVX2);
}

/* Whether the optimizer steps flush subnormals (nerve__subnormals_as_zero): on x86-64, where
 * SSE's MXCSR and its denormals-are-zero flag always exist (not on 32-bit x86, whose floats may
 * not go through SSE at all). */
#if defined(__x86_64__)
#  define NERVE_FLUSHES_SUBNORMALS 1
#  include <pmmintrin.h> /* _MM_DENORMALS_ZERO_ON; xmmintrin.h's _mm_getcsr, _mm_setcsr */
#else
#  define NERVE_FLUSHES_SUBNORMALS 0
#endif

/* A kernel written with AVX-512 intrinsics where the context runs them, else its portable
 * form (off x86 the first is not even named, so it need not exist). */
#if NERVE_X86
#  define NERVE_AVX512_OR(ctx, avx512, portable) \
    ((ctx)->isa == NERVE_ISA_AVX512 ? (avx512) : (portable))
#else
#  define NERVE_AVX512_OR(ctx, avx512, portable) ((void)(ctx), (portable))
#endif

/*
 * Element-wise maps over [b, e) of a job with fields y (written) and x, where y may equal x:
 *   NERVE_MAP:  y[i] = F(x[i]);   NERVE_MAP2: y[i] = F(x[i], other[i]) (other apart from y).
 * In place and apart are spelled as separate loops: with one pointer each, the compiler
 * vectorises without a run-time overlap check, whose failure (in place) sent clang's loops
 * down their scalar path (sigmoid in place through the C API, 60,000 elements, 1 thread: 3.7
 * against 0.30 ns an element apart; LeCun's tanh 6.3 against 0.54, its backward too).
 */
#define NERVE_MAP(j, b, e, F)                                                                  \
  do {                                                                                         \
    if ((j)->y == (j)->x) {                                                                    \
      float *restrict y_ = (j)->y;                                                             \
      for (int64_t i = (b); i < (e); i++) y_[i] = F(y_[i]);                                    \
    } else {                                                                                   \
      float *restrict y_ = (j)->y;                                                             \
      const float *restrict x_ = (j)->x;                                                       \
      for (int64_t i = (b); i < (e); i++) y_[i] = F(x_[i]);                                    \
    }                                                                                          \
  } while (0)
#define NERVE_MAP2(j, b, e, F, other)                                                          \
  do {                                                                                         \
    const float *restrict o_ = (other);                                                        \
    if ((j)->y == (j)->x) {                                                                    \
      float *restrict y_ = (j)->y;                                                             \
      for (int64_t i = (b); i < (e); i++) y_[i] = F(y_[i], o_[i]);                             \
    } else {                                                                                   \
      float *restrict y_ = (j)->y;                                                             \
      const float *restrict x_ = (j)->x;                                                       \
      for (int64_t i = (b); i < (e); i++) y_[i] = F(x_[i], o_[i]);                             \
    }                                                                                          \
  } while (0)

/*
 * NERVE_RANGE_KERNEL(name) turns an always-inline range body `name##_body(void*, int64_t,
 * int64_t)` into three compiled copies (baseline, AVX2, AVX-512), so the compiler vectorises the
 * same scalar code for each instruction set, and a table indexed by nerve_isa to pick one.
 */
#define NERVE_RANGE_KERNEL(name)                                                               \
  static void name##_base(void *a, int64_t b, int64_t e) { name##_body(a, b, e); }            \
  NERVE_TARGET_AVX2 static void name##_avx2(void *a, int64_t b, int64_t e) {                   \
    name##_body(a, b, e);                                                                      \
  }                                                                                            \
  NERVE_TARGET_AVX512 static void name##_avx512(void *a, int64_t b, int64_t e) {               \
    name##_body(a, b, e);                                                                      \
  }                                                                                            \
  static const nerve__range_fn name##_isa[4] = {name##_base, name##_base, name##_avx2,         \
                                                name##_avx512}

#define NERVE_SUM_KERNEL(name)                                                                 \
  static double name##_base(void *a, int64_t b, int64_t e) { return name##_body(a, b, e); }   \
  NERVE_TARGET_AVX2 static double name##_avx2(void *a, int64_t b, int64_t e) {                 \
    return name##_body(a, b, e);                                                               \
  }                                                                                            \
  NERVE_TARGET_AVX512 static double name##_avx512(void *a, int64_t b, int64_t e) {             \
    return name##_body(a, b, e);                                                               \
  }                                                                                            \
  static const nerve__sum_fn name##_isa[4] = {name##_base, name##_base, name##_avx2,           \
                                              name##_avx512}

/* ---- GEMM (gemm.c) ---------------------------------------------------------------------- */

/*
 * C[M,N] = (accumulate ? C : 0) + bias[N] + A[M,K] . B, with B given as [K,N] (ldb) or, when
 * b_transposed, as B^T stored [N,K] (ldb). bias may be NULL. Results do not depend on the
 * thread count.
 */
NERVE_HIDDEN nerve_status nerve__gemm_nn(nerve_context *ctx, float *C, int64_t ldc,
                                         const float *A, int64_t lda, const float *B,
                                         int64_t ldb, bool b_transposed, const float *bias,
                                         bool accumulate, int64_t M, int64_t N, int64_t K,
                                         const char *func);
/* nerve__gemm_nn choosing its method as for method_rows rows of A (the whole batch when M
 * rows are a rank's part of it), so that every row's result is the one the whole batch gets. */
NERVE_HIDDEN nerve_status nerve__gemm_nn_as(nerve_context *ctx, float *C, int64_t ldc,
                                            const float *A, int64_t lda, const float *B,
                                            int64_t ldb, bool b_transposed, const float *bias,
                                            bool accumulate, int64_t M, int64_t N, int64_t K,
                                            int64_t method_rows, const char *func);

/*
 * An activation a product applies to what it has just written, as a pass of its own after it
 * would: forward, C = f(C) (nerve_activation_forward in place); backward, C = C * f'(out) with C
 * the gradient of the activation's output and out that output (nerve_activation_backward in
 * place). The same compiled element loops as those calls, so the same bits; where a product's
 * threads share its rows, on rows the writing core still holds in cache, without another
 * parallel region (nerve__activation_rows), elsewhere as a pass of its own after the product
 * (nerve__activation_pass).
 */
typedef struct {
  nerve__range_fn fn; /* activation.c's element loop; NULL: nothing to apply (identity) */
  const float *out;   /* backward: the activation's output, row stride ldo */
  int64_t ldo;
  int64_t grain;      /* elements a thread, as the kind's own call takes them */
} nerve__activation_step;

/* The step of kind into *step (backward: from the activation's output out, row stride ldo), or
 * the failure naming func: an unknown kind, or a backward that needs the activation's input
 * (LeCun's tanh), which a product's caller does not have. */
NERVE_HIDDEN nerve_status nerve__activation_step_for(nerve_context *ctx, nerve_activation kind,
                                                     bool backward, const float *out, int64_t ldo,
                                                     nerve__activation_step *step, const char *func);
/* The step on rows [r0, r1) of C [*, N] (row stride ldc), on the calling thread. */
NERVE_HIDDEN void nerve__activation_rows(const nerve__activation_step *step, float *C, int64_t ldc,
                                         int64_t N, int64_t r0, int64_t r1);
/* The step on all of C [M,N] as a pass of its own, threads sharing its rows: for the products
 * that cannot apply it as they go. */
NERVE_HIDDEN void nerve__activation_pass(const nerve_context *ctx, const nerve__activation_step *step,
                                         float *C, int64_t ldc, int64_t M, int64_t N);
/* Whether a step has anything to apply (NULL: none asked for). */
NERVE_INLINE bool nerve__activation_applies(const nerve__activation_step *step) {
  return step && step->fn;
}

/* nerve__gemm_nn_as followed by `then` on C (NULL: nothing): where the method shares rows of C
 * among threads, applied by each to its rows as it finishes them, else as a pass after. */
NERVE_HIDDEN nerve_status nerve__gemm_nn_then(nerve_context *ctx, float *C, int64_t ldc,
                                              const float *A, int64_t lda, const float *B,
                                              int64_t ldb, bool b_transposed, const float *bias,
                                              bool accumulate, int64_t M, int64_t N, int64_t K,
                                              int64_t method_rows,
                                              const nerve__activation_step *then, const char *func);

/*
 * G[K,N] += alpha * A[M,K]^T . D[M,N]: the weight-gradient product (alpha = 1), or a
 * gradient-descent step applied straight to the weights (G = W, alpha = -lr). Independent of
 * the thread count. Rows of A that are zero are skipped (their products are exactly zero).
 */
NERVE_HIDDEN nerve_status nerve__gemm_tn(nerve_context *ctx, float *G, int64_t ldg,
                                         const float *A, int64_t lda, const float *D,
                                         int64_t ldd, int64_t M, int64_t N, int64_t K,
                                         float alpha, const char *func);

/* nerve__gemm_tn for a step applied to the weights W (alpha = -lr), which the forward read on
 * every thread: where the rank updates work on a padded copy, a team may write it back by
 * streaming stores (gemm.c's streams_back). */
NERVE_HIDDEN nerve_status nerve__gemm_tn_step(nerve_context *ctx, float *W, int64_t ldw,
                                              const float *A, int64_t lda, const float *D,
                                              int64_t ldd, int64_t M, int64_t N, int64_t K,
                                              float alpha, const char *func);

/*
 * Bytes of the context's GEMM scratch slot that nerve__gemm_nn (C[M,N], reduction K) and
 * nerve__gemm_tn (G[K,N] with row stride ldg, M rows of A) take for these shapes; 0 when they
 * take none. A caller that makes several products reserves the largest before its first write,
 * so that running out of memory leaves the caller's buffers as they were. Products with B not
 * transposed may take more of their own (AVX-512's padded and packed copies of B, AVX2's
 * listed rows' copies), which they reserve before they write anything: a caller that makes
 * several must not rely on the slot holding its own data across such a product.
 */
NERVE_HIDDEN size_t nerve__gemm_nn_scratch(const nerve_context *ctx, int64_t M, int64_t N,
                                           int64_t K, bool b_transposed);

/* Whether nerve__gemm_nn packs a transposed B (AVX-512 register tiles; M the method's rows),
 * where with few rows it takes dot products along B's rows instead. */
NERVE_HIDDEN bool nerve__gemm_nn_packs(const nerve_context *ctx, int64_t M, int64_t N, int64_t K,
                                       bool b_transposed);
NERVE_HIDDEN size_t nerve__gemm_tn_scratch(const nerve_context *ctx, int64_t M, int64_t N,
                                           int64_t K, int64_t ldg);

/* dbias[o] += alpha * sum_n dout[n,o] over N rows of O columns, added over n in order for
 * each o (so independent of the thread count). Shared by dense and convolution layers. */
NERVE_HIDDEN void nerve__bias_accumulate(nerve_context *ctx, float *dbias, const float *dout,
                                         int64_t N, int64_t O, float alpha);
/* The same sums on the calling thread (a member of a team): called on consecutive blocks of
 * rows in order, it adds exactly what one call over all of them adds. */
NERVE_HIDDEN void nerve__bias_accumulate_here(const nerve_context *ctx, float *dbias,
                                              const float *dout, int64_t N, int64_t O,
                                              float alpha);

/*
 * The weight-gradient product visited tile by tile instead of stored: threads split the K rows
 * of G[K,N] = A[M,K]^T . D[M,N] into tiles of up to 12 rows with AVX-512 and 24 with AVX2 (128
 * and 64 where D's non-zeros are listed in space: nerve__gemm_tn_visit_space, gemm.c's
 * listed_tile and avx2_listed_tile); for each tile, rows(arg, k0, k1)
 * runs first, then apply(arg, k0, col, g, rows, cols, ldg, threads) receives the tile's gradient
 * for a run of columns (g[r*ldg + c], each element summed from zero over all M in order: the
 * listed tiles' skipped zeros leave those bits) and the
 * size of the team the tiles are shared out in. Returns
 * false (doing nothing) where there is no such kernel (neither AVX-512 nor AVX2): the caller
 * then stores G and works on it.
 */
typedef void (*nerve__rows_fn)(void *arg, int64_t k0, int64_t k1);
typedef void (*nerve__tile_fn)(void *arg, int64_t k0, int64_t col, const float *g, int64_t rows,
                               int64_t cols, int64_t ldg, int threads);
enum { NERVE_VISIT_STREAMS = 4 };
/*
 * Arrays whose rows k the callbacks read for a tile (weights, optimizer moments), at most
 * NERVE_VISIT_STREAMS: row k of stream s starts at base[s] + k * row_bytes. While a tile's
 * products run, the visitor fetches the next tile's rows into cache, so memory traffic overlaps
 * the arithmetic.
 */
typedef struct {
  const void *base[NERVE_VISIT_STREAMS];
  int count;
  int64_t row_bytes;
} nerve__visit_streams;
/* Whether nerve__gemm_tn_visit runs on this context (it does with libnerve's AVX-512 and AVX2
 * kernels). */
NERVE_HIDDEN bool nerve__gemm_tn_visits(const nerve_context *ctx);
NERVE_HIDDEN bool nerve__gemm_tn_visit(nerve_context *ctx, const float *A, int64_t lda,
                                       const float *D, int64_t ldd, int64_t M, int64_t N,
                                       int64_t K, nerve__rows_fn rows, nerve__tile_fn apply,
                                       const nerve__visit_streams *streams, void *space, void *arg);
/* Bytes of the space nerve__gemm_tn_visit takes, for ctx's threads: the lists of D's non-zeros
 * where they are few enough to skip (or, with AVX2, its copy of D in panels otherwise), and each
 * member's tile of G. `space` must be that many bytes at a 64-byte boundary, for the same context (AVX-512
 * alone also takes NULL: no lists). */
NERVE_HIDDEN size_t nerve__gemm_tn_visit_space(const nerve_context *ctx, int64_t M, int64_t N);

/* nerve__gemm_nn (B as [K,N], no accumulation) on the calling thread alone, for kernels whose
 * teams share out whole blocks: the same result, no scratch, no threads of its own. */
NERVE_HIDDEN void nerve__gemm_nn_here(const nerve_context *ctx, float *C, int64_t ldc,
                                      const float *A, int64_t lda, const float *B, int64_t ldb,
                                      const float *bias, int64_t M, int64_t N, int64_t K);

/*
 * nerve__gemm_nn with a transposed B, in two steps for teams that share out rows of A: B^T
 * [N,K] (row stride ldb) packed once into P (nerve__gemm_nn_scratch's bytes, by the context's
 * threads), then C[M,N] = A . B from P on the calling thread, the same chains. Only where
 * nerve__gemm_nn_packs(ctx, rows, N, K, true). The packing alone also lays out the A of
 * nerve__gemm_nt_columns' lanes (nerve__gemm_nt_pack).
 */
NERVE_HIDDEN void nerve__gemm_nn_pack(nerve_context *ctx, float *P, const float *BT, int64_t ldb,
                                      int64_t N, int64_t K);
NERVE_HIDDEN void nerve__gemm_nn_packed_here(const nerve_context *ctx, float *C, int64_t ldc,
                                             const float *A, int64_t lda, const float *P,
                                             int64_t M, int64_t N, int64_t K);

/*
 * G[K,N] += alpha * A[M,K]^T . D[M,N] on the calling thread by AVX-512's rank updates or AVX2's
 * chains (nerve__gemm_tn_visits): every element adds the rows in order, the chain nerve__gemm_tn
 * computes, so a team may share out G's rows and call this on each slice, block after block.
 * G's rows should be whole 32-column panels apart (ldg) and 64-byte aligned.
 */
NERVE_HIDDEN void nerve__gemm_tn_here(const nerve_context *ctx, float *G, int64_t ldg, const float *A, int64_t lda,
                                      const float *D, int64_t ldd, int64_t M, int64_t N,
                                      int64_t K, float alpha);

/*
 * Whether nerve__gemm_tn takes G[K,N] += alpha * A[M,K]^T . D[M,N] by tn_narrow (few columns
 * of G, many rows of A: G's elements each one chain over the rows, in registers), and those
 * chains on the calling thread over rows [m0, m1) only, from G as it is: calls on [0, h) and
 * then [h, M) leave the bits of one call on all M rows. Only where nerve__gemm_tn_narrow holds
 * (AVX-512, N <= 12): elsewhere the second does nothing.
 */
NERVE_HIDDEN bool nerve__gemm_tn_narrow(const nerve_context *ctx, int64_t M, int64_t N, int64_t K);
NERVE_HIDDEN void nerve__gemm_tn_narrow_rows(float *G, int64_t ldg, const float *A, int64_t lda,
                                             const float *D, int64_t ldd, int64_t N, int64_t K,
                                             int64_t m0, int64_t m1, float alpha);

/*
 * A matrix read through an index instead of stored: row r (counted from first_row) starts at
 * in + n * image_stride + oh * row_stride + ow * col_stride, with n = r / pix, oh = r % pix / OW,
 * ow = r % OW, and its column k is at off[k] from there. For a convolution whose windows all
 * lie inside the image, this is the lowered matrix without the copy.
 */
typedef struct {
  const float *in;
  int64_t first_row, pix, OW, image_stride, row_stride, col_stride;
  const int32_t *off;
} nerve__gather;
/* C[M,N] = bias + A . B[K,N] with A gathered, on the calling thread: the chains
 * nerve__gemm_nn computes on the stored matrix (AVX2's: its own 8-lane chains). false (nothing done) where no such kernel exists (neither AVX-512 nor
 * AVX2, K over 2048). */
NERVE_HIDDEN bool nerve__gemm_nn_gather_here(const nerve_context *ctx, float *C, int64_t ldc,
                                             const nerve__gather *a, int64_t M, const float *B,
                                             int64_t ldb, const float *bias, int64_t N, int64_t K);

/*
 * A convolution's output gradient D [M,N] as its max pool's backward would write it, read from
 * the pool's gradient instead: row r of D (pixel oh, ow of image n, counted from the first
 * image) is dpooled's row for the window holding that pixel in the lanes where argmax names
 * it (oh * OW + ow), and 0 elsewhere. Only for windows that tile the map (PH x PW, strides
 * PH and PW, no padding), so that each pixel lies in at most one window.
 */
typedef struct {
  const float *dpooled;  /* [images, POH, POW, N] */
  const int32_t *argmax; /* [images, POH, POW, N] */
  int64_t PH, PW, POH, POW;
  /* Where a batch norm lies between the convolution and the pool (not NULL): D's row is the
   * norm's input gradient from that row's pool gradient g (nerve__norm_terms), x the norm's
   * input [images * OH * OW, N] from the same first image. */
  const struct nerve__norm_terms *norm;
  const float *x;
} nerve__pooled_rows;

/*
 * A batch norm's backward over R rows once its column sums are known (norm.c): row r's input
 * gradient from its output gradient g and its input x, channel c,
 *   xhat = (x - mean) * invstd,  d = factor * (R g - sum_dy - xhat sum_dyx),
 * then 0 where relu and x <= 0 (the ReLU whose output x is). The multiply-adds fused as the
 * compilers fuse norm.c's scalar expression, so every kernel that spells it gives its bits.
 */
typedef struct nerve__norm_terms {
  const float *mean, *invstd;             /* the training forward's */
  const float *sum_dy, *sum_dyx, *factor; /* factor: gamma * invstd / R */
  float rows;                             /* R */
  bool relu;
} nerve__norm_terms;

/* G[0 : k1-k0, :] += alpha * A[:, k0:k1]^T . D[M,N] with A gathered, on the calling thread:
 * the chains nerve__gemm_tn_here computes on the stored columns (with AVX2, each element's own
 * chain over the rows in order). false (nothing done) where no such kernel exists. *biased: whether it also added D's rows to bias [N] (if not NULL) as
 * nerve__bias_accumulate(..., 1.0f) does, in the same pass over D. With `pooled` (not NULL),
 * D's rows come from it (D is not read, ldd is N, a->first_row starts an image), wherever
 * nerve__gemm_tn_gathers_pooled says so. */
NERVE_HIDDEN bool nerve__gemm_tn_gather_here(const nerve_context *ctx, float *G, int64_t ldg,
                                             const nerve__gather *a, int64_t M, const float *D,
                                             int64_t ldd, const nerve__pooled_rows *pooled,
                                             int64_t N, int64_t k0, int64_t k1, float alpha,
                                             float *bias, bool *biased);

/* Whether nerve__gemm_tn_gather_here runs at all for D's N columns and `width` rows of G (AVX2:
 * N up to 256; both: width up to 2048, which AVX-512's answer does not check), and whether
 * nerve__gemm_nn_gather_here runs (K up to 2048). */
NERVE_HIDDEN bool nerve__gemm_tn_gathers(const nerve_context *ctx, int64_t N, int64_t width);
NERVE_HIDDEN bool nerve__gemm_nn_gathers(const nerve_context *ctx);

/* Whether nerve__gemm_nn_as, given B transposed, makes each element of C one chain of
 * multiply-adds over k in order from 0 (or from the bias): AVX2 with reductions up to 64
 * (longer ones go by dot products). */
NERVE_HIDDEN bool nerve__gemm_nn_transposed_chains(const nerve_context *ctx, int64_t K);

#if NERVE_X86
/* The k in [0, n) where row[k] is not zero (NaN counts), lowest first, into ks (room for n + 8:
 * whole vectors are stored); returns how many. AVX2 only. */
NERVE_HIDDEN NERVE_TARGET_AVX2 int64_t nerve__avx2_nonzeros(const float *row, int64_t n, int32_t *ks);
#endif

/* Whether nerve__gemm_tn_gather_here takes D's N columns from a pool's gradient, for slices of
 * up to `width` rows of G. */
NERVE_HIDDEN bool nerve__gemm_tn_gathers_pooled(const nerve_context *ctx, int64_t N, int64_t width);

/* A thread is worth waking for about this many multiply-adds (the products' grain; two threads
 * from twice as many): Lab A's 2,048 x 30 -> 10 layer (614K) now takes both threads, each
 * reading the rows its own cache holds, where at 1 << 19 one thread read them all while the
 * other waited. */
enum { GEMM_GRAIN = 1 << 18 };

/*
 * A [M,K] packed for nerve__gemm_nt_columns' lanes (nerve__gemm_nt_pack): its live columns,
 * in P [panels][K][32] (panels K columns apart, the first `live` rows of each filled), and
 * which columns they are in ks [live]. Live: all of them, or those where some row is not zero
 * (skip_silent). A relu's gradient has whole columns of zeros (Lab E's 784 units for a batch
 * of 32: 7.5% of them through an epoch), whose products are zeros: leaving them out of a
 * chain can change only the sign of a zero sum, which adding the sum to +0 then loses, so
 * where every sum is added to +0 (no bias, nothing accumulated) the bits stay those of the
 * whole chain wherever B is finite. A NaN or infinite weight in a silent column no longer
 * reaches the sums, as with the products that skip a row's zeros; and since a column live in
 * one row is summed for all the rows packed with it, with such weights a row's sums can depend
 * on which rows share its pack (a rank's part of a batch, a convolution's block of pixels).
 */
typedef struct {
  const float *P; /* NULL: the dots read A itself */
  const int32_t *ks;
  int64_t live;
} nerve__nt_packed;

/* nn with B given transposed, restricted to output columns [i0, i1): C[:, i0:i1]. Runs on this
 * thread: Nerve's dot-product tiles (with AVX-512; with AVX2 A's rows in the lanes from ap where
 * nerve__gemm_nt_pack packed A, as AVX-512's nn_lanes with the same bits, else its 8-lane dots,
 * or chains for up to 64 steps), else one OpenBLAS call. With AVX-512, dots up to one
 * vector's lanes long (NT_SHORT_MAX) take 16 columns a vector (gemm.c's short_dots); longer
 * ones take A's rows in the lanes from ap, A packed by nerve__gemm_nt_pack (gemm.c's nn_lanes),
 * or read A where ap->P is NULL (ap itself may be NULL). Below
 * NT_DOTS_MIN (the same vector), a dot per column would waste lanes, so callers with many rows
 * prefer nerve_dense_backward's products (other kernels). */
enum { NT_SHORT_MAX = 16, NT_DOTS_MIN = NT_SHORT_MAX };
NERVE_HIDDEN void nerve__gemm_nt_columns(nerve_context *ctx, float *C, int64_t ldc,
                                         const float *A, int64_t lda, const nerve__nt_packed *ap,
                                         const float *BT, int64_t ldb, int64_t M, int64_t K,
                                         int64_t i0, int64_t i1);

/* A [M,K] (row stride lda) packed into the GEMM scratch for nerve__gemm_nt_columns where its
 * dots keep A's rows in the lanes, as nerve__gemm_nn's do for these shapes (the same bits):
 * *ap the packed copy of its live columns, or ap->P NULL where the dots read A itself.
 * method_rows: the rows the method is chosen by (the whole batch of a rank's part). Only the
 * scratch is written. */
NERVE_HIDDEN nerve_status nerve__gemm_nt_pack(nerve_context *ctx, const float *A, int64_t lda,
                                              int64_t method_rows, int64_t M, int64_t K,
                                              bool skip_silent, nerve__nt_packed *ap,
                                              const char *func);

/* What one of nerve__gemm_nt_columns' dot products of length K costs, in multiply-adds, for
 * sharing its columns out by GEMM_GRAIN: K, plus the closing sum of its 16 lanes, which for
 * short K costs more than the products (a classifier's 10-long dots took about 90
 * multiply-adds' time each on a Zen 4: 0.11 ms for 192 x 256 of them, and counted as 10 they
 * stayed on one thread while the other waited). 64, under the 90 measured, errs toward one
 * thread. Up to 16 long, 16 dots share one tree of vector sums (short_dots in gemm.c): K + 8
 * keeps Lab E's 32 x 784 of them (7 us) on one thread, where two were no faster, and gives
 * the fast recipe's 256 x 256 two (0.041 -> 0.025 ms with the step). */
NERVE_INLINE int64_t nerve__nt_dot_madds(int64_t K) { return K <= NT_SHORT_MAX ? K + 8 : K + 64; }

/* ---- Max pooling inside other kernels (pool.c) ------------------------------------------ */

/* A max pool's window over images of H x W x C (nerve_maxpool2d_forward's arguments). */
typedef struct {
  int64_t H, W, C, PH, PW, SH, SW, PT, PL, OH, OW;
} nerve__pool_window;

/* Whether windows PH x PW at strides SH, SW, padded PT, PL before the map, tile it: each pixel
 * lies in at most one window, and the pool's backward writes each once. */
NERVE_INLINE bool nerve__pool_tiles(int64_t PH, int64_t PW, int64_t SH, int64_t SW, int64_t PT, int64_t PL) {
  return SH == PH && SW == PW && PT == 0 && PL == 0;
}

/* nerve_maxpool2d_forward's checks of the sizes, for N images, naming func. */
NERVE_HIDDEN nerve_status nerve__maxpool_check(nerve_context *ctx, int64_t N,
                                               const nerve__pool_window *p, const char *func);

/* nerve_maxpool2d_forward for images [n0, n1) of in, on the calling thread (checked sizes); its
 * team's size decides how it stores (pool.c's streams_outputs). in was just written by the
 * calling thread (a convolution's block), so it is not fetched ahead. */
NERVE_HIDDEN void nerve__maxpool_images(const nerve_context *ctx, float *out, int32_t *argmax,
                                        const float *in, const nerve__pool_window *p, int64_t n0,
                                        int64_t n1);

/* The gradient a max pool's backward gives an input pixel at position pos from the one window
 * covering it, whose gradient is g and winner am (0 + g where the pixel won, so never -0):
 * one definition for the pool's backward and batch norm's backward from a pool's gradient. */
NERVE_INLINE float nerve__maxpool_grad_value(int32_t am, int32_t pos, float g) {
  return 0.0f + (am == pos ? g : 0.0f);
}

/* The window that covers each input row (owner[i], i < H), then each column (owner[H + i]),
 * or -1 where none does, for windows that do not overlap (stride >= window). */
NERVE_HIDDEN void nerve__maxpool_owners(const nerve__pool_window *p, int64_t *owner);

/* nerve_batchnorm_backward_maxpool2d over N images of the norm's input in (the pool's window p
 * over them, apart: checked by the caller), its errors naming func: din written unless NULL;
 * dgamma and dbeta accumulated as there (each unless NULL); and terms [3 p->C] (unless NULL)
 * the column sums and factors din's rows are made from (nerve__norm_terms' sum_dy, sum_dyx,
 * factor), for a kernel that makes them itself. */
NERVE_HIDDEN nerve_status nerve__batchnorm_backward_pooled(nerve_context *ctx, float *din, float *terms,
                                                           float *dgamma, float *dbeta, const float *dpooled,
                                                           const int32_t *argmax, const float *in,
                                                           const float *gamma, const float *saved_mean,
                                                           const float *saved_invstd, int64_t N,
                                                           const nerve__pool_window *p, bool relu,
                                                           const char *func);

/* ---- Sparse rows (sparse.c; their products in gemm.c) ---------------------------------- */

/* Zero entries and words after each list's last, for kernels that step over them instead of
 * testing for the end (gemm.c's slots_run). */
enum { NERVE_SPARSE_PAD = 256 };
/* Rows per block of the column lists (a row within its block fits a byte). */
enum { NERVE_SPARSE_BLOCK = 256 };
/* Distinct values a matrix may hold to be packed (an index fits a byte). */
enum { NERVE_SPARSE_PALETTE = 256 };

/*
 * Row r's entries are columns[starts[r] .. starts[r + 1]) (increasing) and the values beside
 * them. Made only by nerve_sparse_create, so every column is in [0, cols).
 * Packed (AVX-512 or AVX2, at most 65,536 columns and NERVE_SPARSE_PALETTE distinct values, as images'
 * pixels have): the same entries again as one word each, row_words[e] = column | index << 16
 * with the value palette[index], and column by column within each block of NERVE_SPARSE_BLOCK
 * rows, for the weight gradient (a row of it summed in registers instead of rewritten per
 * entry): block b's column k is block_words[block_starts[b * (cols + 1) + k] .. [... + k + 1]),
 * each row-within-block | index << 8, rows increasing. Block b's entries take the same span as
 * its rows' in columns. Half and a third of the bytes: an epoch reads the list twice. NULL when
 * not packed.
 * With AVX-512 and a palette slot to spare, also each block's columns in pairs (2q, 2q + 1):
 * pair q of block b is pair_words[pair_starts[b * (cols / 2 + 1) + q] .. [... + q + 1]), one
 * word for each row either column holds, row-within-block | index << 8 | index << 16 (the
 * first column's value's, then the second's; palette_size, whose palette value is +0.0, where
 * that column holds nothing), rows increasing; block b's words start where its entries do.
 * The weight gradient then reads a row of D once for two rows of G (gemm.c's pairs_run).
 * NULL otherwise.
 */
struct nerve_sparse {
  int64_t rows, cols, nonzeros;
  int64_t *starts; /* rows + 1 */
  int32_t *columns; /* nonzeros + NERVE_SPARSE_PAD */
  float *values;    /* nonzeros + NERVE_SPARSE_PAD */
  float palette[NERVE_SPARSE_PALETTE];
  uint32_t *row_words;    /* nonzeros + NERVE_SPARSE_PAD */
  uint16_t *block_words;  /* nonzeros + NERVE_SPARSE_PAD */
  int64_t *block_starts;  /* blocks * (cols + 1) */
  int64_t *column_ends;   /* cols + 1: entries in columns [0, k), over all rows */
  uint32_t *pair_words;   /* nonzeros + NERVE_SPARSE_PAD */
  int64_t *pair_starts;   /* blocks * (cols / 2 + 1) */
  int64_t *pair_ends;     /* cols / 2 + 1: words in pairs [0, q), over all blocks */
  int palette_size;       /* values in palette (then +0.0 at this index, where pairs exist) */
};

/* C[M,N] = bias + A . B[K,N] with A = rows [first, first + M) of a: the chains
 * nerve__gemm_nn computes on the stored rows (AVX-512, AVX2), without the terms of zero inputs; then
 * `then` on C (NULL: nothing), as nerve__gemm_nn_then applies it. Reserves the GEMM scratch it
 * takes (B padded to whole panels) before writing C. */
NERVE_HIDDEN nerve_status nerve__sparse_nn(nerve_context *ctx, float *C, int64_t ldc,
                                           const nerve_sparse *a, int64_t first, const float *B,
                                           int64_t ldb, const float *bias, int64_t M, int64_t N,
                                           const nerve__activation_step *then, const char *func);

/* out[r, k] = scale * in[r * lda + k] for rows [0, rows) and k in [0, n), as
 * nerve_pixels_to_floats converts (pixels.c), on the calling thread. */
NERVE_HIDDEN void nerve__pixels_rows_here(const nerve_context *ctx, float *out, const uint8_t *in,
                                          int64_t lda, int64_t rows, int64_t n, float scale);

/* C[M,N] = (scale * A[M,K]) . B[K,N] + bias (bias may be NULL) with A as bytes, row stride
 * lda: the chains nerve__gemm_nn computes on the floats scale * A (for finite B). Sparse bytes
 * with AVX-512 are listed as they are read, without the terms of zero bytes; otherwise rows are
 * made floats in the layer scratch (which it reserves) and nerve__gemm_nn runs on them. */
NERVE_HIDDEN nerve_status nerve__pixels_nn(nerve_context *ctx, float *C, int64_t ldc,
                                           const uint8_t *A, int64_t lda, float scale,
                                           const float *B, int64_t ldb, const float *bias,
                                           int64_t M, int64_t N, int64_t K, const char *func);

/* G[K,N] += alpha * A^T . D[M,N] with A as in nerve__sparse_nn: every element adds the rows in
 * order, as nerve__gemm_tn does; and dbias[N] += D's column sums (nerve__bias_accumulate's
 * bits; D's rows N apart), unless dbias is NULL. Reserves the GEMM scratch it takes before
 * writing either. */
NERVE_HIDDEN nerve_status nerve__sparse_tn(nerve_context *ctx, float *G, int64_t ldg, float *dbias,
                                           const nerve_sparse *a, int64_t first, const float *D,
                                           int64_t ldd, int64_t M, int64_t N, float alpha,
                                           const char *func);

/*
 * Whether a team of `threads` writes rows of `row_floats` floats from `base` with streaming
 * stores: the context lets it (ctx->streams_stores: by the CPU, context.c's cpu_streams_stores),
 * more than one thread, and whole 64-byte lines (rows a multiple of 16 floats, base at a
 * boundary). With more than one, the lines a step overwrites (a max pool's outputs, the weights
 * an Adam step rewrites) were read by the other threads in the step before, and an ordinary
 * store must first take each line back from their caches. Where the host puts the two cores far
 * apart (the Zen 4 host's slow phases, a one-way handoff of 170 ns instead of 30) that costs
 * about 25 ns a line, one line after another, and a prefetch for writing does not overlap them;
 * streaming stores invalidate the other copies without waiting, at the cost of the next reader
 * finding the lines in memory (bench/shared_stores.c measures both). With one thread the lines
 * are this core's, in its cache, and stay there. Whoever streams ends with an sfence, before the
 * team's barrier.
 */
NERVE_INLINE bool nerve__streams_rows(const nerve_context *ctx, int threads, const void *base,
                                      int64_t row_floats) {
  return ctx->streams_stores && threads > 1 && row_floats % 16 == 0 && (uintptr_t)base % 64 == 0;
}

/* Asks for the cache lines of [p, p + bytes) ahead of their use (to be written, if `write`):
 * streams a kernel reads or writes row by row, where the hardware prefetcher of some CPUs
 * (this project's Zen 5) leaves each row's loads waiting on memory. A hint: it never faults. */
NERVE_INLINE void nerve__prefetch(const void *p, int64_t bytes, bool write) {
  for (int64_t o = 0; o < bytes; o += 64) {
    if (write)
      __builtin_prefetch((const char *)p + o, 1, 3);
    else
      __builtin_prefetch((const char *)p + o, 0, 3);
  }
}

/* The mask of the first n of 16 vector lanes (all 16 from n = 16 on): a loop's last, partial
 * vector of 16 floats or ints, for AVX-512's masked loads and stores. */
NERVE_INLINE uint16_t nerve__lanes16(int64_t n) {
  return n >= 16 ? (uint16_t)0xFFFF : (uint16_t)((1u << n) - 1u);
}

/* ---- Math written for vectorisation ----------------------------------------------------- */
/*
 * libm's expf/tanhf are scalar calls that stop loops vectorising; these are straight-line code
 * (range reduction, polynomial, exponent bits) that compilers turn into vector instructions.
 * Accuracy: a few ulp over the float range; exp saturates below -87 and above 88.
 */

NERVE_INLINE float nerve__bits_to_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
NERVE_INLINE uint32_t nerve__float_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

NERVE_INLINE float nerve__expf(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  /* x = n ln2 + r with |r| <= ln2/2; adding 1.5*2^23 rounds x/ln2 to the integer n and leaves n
   * in the low mantissa bits, so no float-to-int conversion is needed. */
  const float shifter = 12582912.0f;
  float k = x * 1.44269504088896341f + shifter;
  float n = k - shifter;
  float r = x - n * 0.693145751953125f;
  r = r - n * 1.428606820309417e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  uint32_t e = (nerve__float_to_bits(k) - 0x4B400000u + 127u) << 23;
  return p * nerve__bits_to_float(e);
}

/* exp(y) - 1 without cancellation near 0 (a Taylor polynomial where |y| < ln2/2). */
NERVE_INLINE float nerve__expm1f(float y) {
  float p = 1.0f / 40320.0f;
  p = p * y + 1.0f / 5040.0f;
  p = p * y + 1.0f / 720.0f;
  p = p * y + 1.0f / 120.0f;
  p = p * y + 1.0f / 24.0f;
  p = p * y + 1.0f / 6.0f;
  p = p * y + 0.5f;
  p = p * y * y + y;
  float big = nerve__expf(y) - 1.0f;
  float a = y < 0 ? -y : y;
  return a < 0.34657359f ? p : big;
}

/* sqrt without errno, so loops using it vectorise (libm's sqrtf may set errno). */
NERVE_INLINE float nerve__sqrtf(float x) {
#if defined(__has_builtin) && __has_builtin(__builtin_elementwise_sqrt)
  return __builtin_elementwise_sqrt(x);
#else
  return __builtin_sqrtf(x);
#endif
}

/*
 * The optimizer steps run with subnormal floats taken as zero, in and out (x86-64's MXCSR
 * flags flush-to-zero and denormals-are-zero, as TensorFlow runs its kernels), and give the
 * caller's modes back after. A weight whose gradient stays zero (a hidden unit silent for every
 * image) has its momentum or Adam moments shrink by a constant factor each step, into the
 * subnormal range after some 800 steps of Adam's m (beta1 0.9), and Adam's lr * m on the way,
 * well before; x86 cores take a microcode assist for each subnormal operand or result (on
 * Intel about a hundred cycles). A Lab E epoch on random pixels, whose units mostly fall
 * silent (bench/lab_e_epoch.c, an Emerald Rapids): the dense layer's fused backward 17.0 ->
 * 2.8 ms a step; Lab H's training 31.8 -> 29.8 s. The step a flushed value stood for is under
 * 2^-126 * max(1, lr / (1 - beta1^t)) / eps, below half an ulp of any weight above about 2^-75
 * (eps 1e-8, lr / (1 - beta1^t) <= 1): weights of any practical size keep their bits, and the
 * moments become zero where they would have been subnormal. Elsewhere (not x86-64) the steps
 * keep subnormals.
 */
NERVE_INLINE unsigned nerve__subnormals_as_zero(void) {
#if NERVE_FLUSHES_SUBNORMALS
  const unsigned mode = _mm_getcsr();
  _mm_setcsr(mode | _MM_FLUSH_ZERO_ON | _MM_DENORMALS_ZERO_ON);
  return mode;
#else
  return 0;
#endif
}

/* Gives back the floating-point modes nerve__subnormals_as_zero found, keeping the exception
 * flags raised meanwhile (as C's feupdateenv does). */
NERVE_INLINE void nerve__subnormals_restore(unsigned mode) {
#if NERVE_FLUSHES_SUBNORMALS
  _mm_setcsr((mode & ~(unsigned)_MM_EXCEPT_MASK) | (_mm_getcsr() & _MM_EXCEPT_MASK));
#else
  (void)mode;
#endif
}

/* One Adam element: shared by nerve_adam_step and the fused dense backward. c1 and c2 are the
 * bias corrections 1/(1 - beta^step); coupled_decay is weight_decay (added to the gradient);
 * shrink is AdamW's decoupled decay as a factor, 1 - lr * decoupled_weight_decay. */
typedef struct {
  float lr, beta1, beta2, eps, c1, c2, coupled_decay, shrink;
} nerve__adam_params;

/* Checks every non-array argument of an Adam step (optim.c); NERVE_OK or the failure, with the
 * message naming func. */
NERVE_HIDDEN nerve_status nerve__check_adam(nerve_context *ctx, float lr, float beta1, float beta2,
                                            float eps, float coupled, float decoupled,
                                            int64_t step, const char *func);

NERVE_INLINE void nerve__adam_element(float *w, float *m, float *v, float g,
                                      const nerve__adam_params *p) {
  /* Read once into locals: w, m and v may alias for all the compiler knows, so writing
   * through the pointers would make it reload m and w after each store (a store-to-load
   * forward per vector: the step ran at a third of its speed on AMD Zen 4). */
  const float w0 = *w, gi = g + p->coupled_decay * w0;
  const float m1 = p->beta1 * *m + (1.0f - p->beta1) * gi;
  const float v1 = p->beta2 * *v + (1.0f - p->beta2) * gi * gi;
  *m = m1;
  *v = v1;
  *w = w0 * p->shrink - p->lr * (m1 * p->c1) / (nerve__sqrtf(v1 * p->c2) + p->eps);
}

/*
 * nerve__adam_element without weight decay (coupled_decay 0, shrink 1), as PyTorch's Adam
 * without it: the gradient as it is, and w - step, which is the rounding of w * 1 - step.
 * The same bits as nerve__adam_element for every finite weight (0 * w added to g changes
 * nothing there), two multiplies fewer on the vector units the step is bound by.
 */
NERVE_INLINE void nerve__adam_element_plain(float *w, float *m, float *v, float g,
                                            const nerve__adam_params *p) {
  const float w0 = *w; /* locals, as in nerve__adam_element */
  const float m1 = p->beta1 * *m + (1.0f - p->beta1) * g;
  const float v1 = p->beta2 * *v + (1.0f - p->beta2) * g * g;
  *m = m1;
  *v = v1;
  *w = w0 - p->lr * (m1 * p->c1) / (nerve__sqrtf(v1 * p->c2) + p->eps);
}

/* n elements stepped by Adam: the plain step where p has no weight decay. Inlined into each
 * caller's instruction set, where the compiler vectorises the loops. */
NERVE_INLINE void nerve__adam_run(float *w, float *m, float *v, const float *g, int64_t n,
                                  const nerve__adam_params *p) {
  if (p->coupled_decay == 0.0f && p->shrink == 1.0f)
    for (int64_t i = 0; i < n; i++) nerve__adam_element_plain(w + i, m + i, v + i, g[i], p);
  else
    for (int64_t i = 0; i < n; i++) nerve__adam_element(w + i, m + i, v + i, g[i], p);
}

NERVE_INLINE float nerve__sigmoidf(float x) { return 1.0f / (1.0f + nerve__expf(-x)); }

/* ReLU, written so a NaN input stays NaN instead of becoming 0 (and -0 stays -0). One
 * definition for every kernel that applies it, so joined passes keep the separate ones' bits. */
NERVE_INLINE float nerve__relu(float x) { return x < 0.0f ? 0.0f : x; }

/* ReLU's backward from its output o: d where o > 0, else 0 (NaN o included). */
NERVE_INLINE float nerve__relu_grad(float d, float o) { return o > 0.0f ? d : 0.0f; }

/* Batch norm's output for x: one definition for its own pass and for the max pool that
 * normalises its inputs (nerve_maxpool2d_forward_normalized), so that the two agree. */
NERVE_INLINE float nerve__batchnorm_value(float x, float mean, float invstd, float gamma, float beta) {
  return (x - mean) * invstd * gamma + beta;
}

#if NERVE_X86
#  include <immintrin.h>
/* nerve__batchnorm_value for 16 floats, the last step one fused multiply-add (as compilers
 * contract the scalar form where FMA exists): AVX-512 kernels that normalise spell it so. */
NERVE_TARGET_AVX512 NERVE_INLINE __m512 nerve__batchnorm_value16(__m512 x, __m512 mean, __m512 invstd,
                                                                 __m512 gamma, __m512 beta) {
  return _mm512_fmadd_ps(_mm512_mul_ps(_mm512_sub_ps(x, mean), invstd), gamma, beta);
}
/* The same for 8 floats, for AVX2 kernels. Both match the scalar form where the compiler
 * contracts it into one multiply-add (gcc in GNU mode, CMake's gnu11 here; clang by default,
 * SwiftPM's build): the tests compare the joined kernels with the separate calls bit for bit. */
NERVE_TARGET_AVX2 NERVE_INLINE __m256 nerve__batchnorm_value8(__m256 x, __m256 mean, __m256 invstd, __m256 gamma,
                                                              __m256 beta) {
  return _mm256_fmadd_ps(_mm256_mul_ps(_mm256_sub_ps(x, mean), invstd), gamma, beta);
}

/* The first n of 8 lanes (all 8 from n = 8 on), for masked loads and stores. */
NERVE_TARGET_AVX2 NERVE_INLINE __m256i nerve__avx2_lanes(int64_t n) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 8 ? n : 8)), lane);
}

/* 8 floats at p, of which the first `n` are there (the rest read as 0). */
NERVE_TARGET_AVX2 NERVE_INLINE __m256 nerve__avx2_load(const float *p, int64_t n) {
  return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, nerve__avx2_lanes(n));
}
/* The first `n` of v's lanes to p (all 8 from n = 8 on). A partial vector goes out as plain
 * stores of 4, 2 and 1 lanes: masked stores are slow on AMD's cores (microcoded on Zen 3). */
NERVE_TARGET_AVX2 NERVE_INLINE void nerve__avx2_store(float *p, int64_t n, __m256 v) {
  if (n >= 8) {
    _mm256_storeu_ps(p, v);
    return;
  }
  __m128 x = _mm256_castps256_ps128(v);
  if (n >= 4) {
    _mm_storeu_ps(p, x);
    x = _mm256_extractf128_ps(v, 1), p += 4, n -= 4;
  }
  if (n >= 2) {
    _mm_storel_pi((__m64 *)p, x);
    x = _mm_movehl_ps(x, x), p += 2, n -= 2;
  }
  if (n >= 1) _mm_store_ss(p, x);
}
#endif

NERVE_INLINE float nerve__tanhf(float x) {
  float a = x < 0 ? -x : x;
  a = a > 9.0f ? 9.0f : a; /* tanh(9) rounds to 1 in float */
  float em = nerve__expm1f(2.0f * a);
  float t = em / (em + 2.0f);
  return x < 0 ? -t : t;
}

/* Natural log for the log-sum-exp in cross-entropy (called once per row, so libm is fine). */
#include <math.h>

#endif /* NERVE_INTERNAL_H */
