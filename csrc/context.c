/*
 * context.c: contexts (threads, instruction set, scratch, last error), version and status
 * strings, aligned allocation.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cblas.h>

#define NERVE_STR2(x) #x
#define NERVE_STR(x) NERVE_STR2(x)

unsigned nerve_version_number(void) { return NERVE_VERSION_NUMBER; }

const char *nerve_version_string(void) {
  return NERVE_STR(NERVE_VERSION_MAJOR) "." NERVE_STR(NERVE_VERSION_MINOR) "." NERVE_STR(
      NERVE_VERSION_PATCH);
}

const char *nerve_status_string(nerve_status status) {
  switch (status) {
    case NERVE_OK: return "ok";
    case NERVE_ERROR_NULL_POINTER: return "a required pointer is NULL";
    case NERVE_ERROR_BAD_SIZE: return "a size is negative or too large";
    case NERVE_ERROR_BAD_ARGUMENT: return "an argument is out of range";
    case NERVE_ERROR_OUT_OF_MEMORY: return "out of memory";
    case NERVE_ERROR_UNSUPPORTED: return "not supported on this CPU";
    case NERVE_ERROR_BAD_FILE: return "a file is missing, unreadable or corrupt";
    case NERVE_ERROR_SHAPE_MISMATCH: return "shapes do not match";
    case NERVE_ERROR_DIVERGED: return "the loss became NaN or infinite";
    case NERVE_ERROR_INTERRUPTED: return "training was stopped";
    case NERVE_ERROR_WRITE_FAILED: return "a file could not be written";
    case NERVE_ERROR_NO_MODEL: return "no model (or data) loaded yet";
    case NERVE_ERROR_FAILED: return "the call failed";
  }
  return "unknown status";
}

nerve_status nerve__fail(nerve_context *ctx, nerve_status status, const char *func,
                         const char *fmt, ...) {
  if (!ctx) return status;
  int used = snprintf(ctx->error, sizeof ctx->error, "%s: ", func);
  if (used < 0 || (size_t)used >= sizeof ctx->error) return status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx->error + used, sizeof ctx->error - (size_t)used, fmt, ap);
  va_end(ap);
  return status;
}

bool nerve__product_ok(int64_t a, int64_t b) {
  if (a < 0 || b < 0) return false;
  if (a == 0 || b == 0) return true;
  return a <= INT64_MAX / 4 / b; /* leave room for byte counts */
}

/* ---- Instruction sets ------------------------------------------------------------------- */

nerve_isa nerve__best_isa(void) {
#if NERVE_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    return NERVE_ISA_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return NERVE_ISA_AVX2;
#endif
  return NERVE_ISA_BASELINE;
}

/* Whether this is an x86 CPU not made by Intel: the CPUs whose choices below differ from
 * Intel's (measured on AMD's Zen 4). */
static bool x86_not_intel(void) {
#if NERVE_X86
  __builtin_cpu_init();
  return !__builtin_cpu_is("intel");
#else
  return false;
#endif
}

/*
 * Whether this CPU's fused optimizer steps ask for each next tile's rows of weights and moments
 * in software (gemm.c's fetch_rows). On Zen 4 they arrived late without it (Lab E's fused step
 * at 1 thread 10.1-11.0 -> 8.8-10.1 ms with it). On an Intel Emerald Rapids the hardware's
 * streamer brings those contiguous rows on its own, and the requests (about 1,800 lines a
 * tile) only crowded the line-fill buffers the loads needed: Lab E's dense backward in `nerve
 * train`, 2 threads, medians over an epoch, 4.04-4.08 -> 3.89-3.96 ms without them, and one line
 * in 16 or 64 fell in between. Intel's cores keep to the streamer; others fetch as Zen does.
 */
static bool cpu_fetches_ahead(void) { return x86_not_intel(); }

/*
 * Whether this CPU's teams write lines the other threads just read (a max pool's outputs, the
 * weights a fused Adam step rewrites) with streaming stores (nerve__streams_rows). On the AMD
 * Zen 4 host, whose two virtual CPUs often sat on two dies, an ordinary store had to take each
 * such line back from the other core, about 25 ns a line one after another, and streaming
 * avoided it (bench/shared_stores.c: 650-1,080 us against 73-76 us for 2 MB). On an Intel
 * Emerald Rapids the same ordinary stores took 94-109 us and streamed ones 198-244 us (they go
 * to memory, and the next reader finds them there): the fast recipe at 2 threads 1.68-1.70 ->
 * 1.62 s an epoch without them (`nerve bench`, alternated), its 1 -> 2 thread speed-up 1.74x
 * -> 1.79-1.82x; Lab E and Lab H within their noise. Intel's cores store through the caches;
 * other x86-64 CPUs stream as Zen does (elsewhere there are no streaming stores to choose).
 */
static bool cpu_streams_stores(void) { return x86_not_intel(); }

/* NERVE_CORES in the environment: "far" or "near" instead of nerve__cores_far's probe (1, 0),
 * anything else the probe (-1). */
static int cores_told(void) {
  const char *env = getenv("NERVE_CORES");
  if (env && strcmp(env, "far") == 0) return 1;
  if (env && strcmp(env, "near") == 0) return 0;
  return -1;
}

/* NERVE_ISA in the environment: the instruction set new contexts (and NERVE_ISA_AUTO) take,
 * "baseline", "avx2" or "avx512" where this CPU has it, so that one machine can run the paths
 * another kind of CPU takes (a Zen 3's AVX2 on an AVX-512 machine); unset, unknown or beyond
 * this CPU: its best (nerve_context_isa tells which is in effect). */
static nerve_isa default_isa(void) {
  const nerve_isa best = nerve__best_isa();
  const char *env = getenv("NERVE_ISA");
  if (!env) return best;
  const nerve_isa told = strcmp(env, "baseline") == 0 ? NERVE_ISA_BASELINE
                         : strcmp(env, "avx2") == 0   ? NERVE_ISA_AVX2
                         : strcmp(env, "avx512") == 0 ? NERVE_ISA_AVX512
                                                      : NERVE_ISA_AUTO;
  return told != NERVE_ISA_AUTO && told <= best ? told : best;
}

/* ---- Threads ---------------------------------------------------------------------------- */

static int default_threads(void) {
  const char *env = getenv("OMP_NUM_THREADS");
  if (env && *env) {
    /* OMP_NUM_THREADS may be a list ("4,2"); the first entry is the outer level. */
    long v = strtol(env, NULL, 10);
    if (v >= 1 && v <= 4096) return (int)v;
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n >= 1) return n;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n >= 1 ? (int)n : 1;
}

/* OpenBLAS's pthread build: stops its pool's threads (its handler before fork calls it too), and
 * starts them again on a later call that asks for threads. Weak: other builds may lack it. */
extern int blas_thread_shutdown_(void) __attribute__((weak));

static void blas_single_threaded(void) {
  /* Debian's default OpenBLAS keeps its own pthread pool. libnerve splits GEMMs over its OpenMP
   * threads itself, so OpenBLAS must run each piece on the calling thread. Its pool, started
   * when the library loaded, is stopped too: an idle member spins on sched_yield for some 0.1 s
   * of cycles after its last task (OPENBLAS_THREAD_TIMEOUT) before it sleeps, and while it did,
   * OpenMP's threads shared a core with it: the first 10-30 calls of a process at 2 threads ran
   * up to 7x slower (8 rows through 6272 -> 784: 7.9 ms a call against 1.0 ms after; a Zen 3). */
  openblas_set_num_threads(1);
  if (blas_thread_shutdown_) blas_thread_shutdown_();
}

/* Once a process, and every creator waits until it is done: a context made on another thread
 * meanwhile must not run products while the pool is being stopped. */
static void blas_single_threaded_once(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, blas_single_threaded);
}

nerve_status nerve_context_create(nerve_context **out, int threads) {
  if (!out) return NERVE_ERROR_NULL_POINTER;
  *out = NULL;
  if (threads < 0) return NERVE_ERROR_BAD_ARGUMENT;
  nerve_context *ctx = calloc(1, sizeof *ctx);
  if (!ctx) return NERVE_ERROR_OUT_OF_MEMORY;
  ctx->threads = threads > 0 ? threads : default_threads();
  ctx->isa = default_isa();
  ctx->fetches_ahead = cpu_fetches_ahead();
  ctx->streams_stores = cpu_streams_stores();
  ctx->cores_told = cores_told();
  blas_single_threaded_once();
  *out = ctx;
  return NERVE_OK;
}

void nerve_context_free(nerve_context *ctx) {
  if (!ctx) return;
  for (int i = 0; i < NERVE_SCRATCH_SLOTS; i++) nerve_free(ctx->scratch[i]);
  free(ctx);
}

nerve_status nerve_context_set_threads(nerve_context *ctx, int threads) {
  NERVE_CHECK_CTX(ctx);
  if (threads < 0)
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, __func__,
                       "threads must be 0 (default) or positive, got %d", threads);
  ctx->threads = threads > 0 ? threads : default_threads();
  return NERVE_OK;
}

int nerve_context_threads(const nerve_context *ctx) { return ctx ? ctx->threads : 0; }

nerve_status nerve_context_set_whole_batch(nerve_context *ctx, int64_t rows) {
  NERVE_CHECK_CTX(ctx);
  if (rows < 0 || rows > INT32_MAX)
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, __func__, "rows must be in 0 ... 2^31 - 1, got %lld", (long long)rows);
  ctx->whole_batch = rows;
  return NERVE_OK;
}

nerve_status nerve_context_set_isa(nerve_context *ctx, nerve_isa isa) {
  NERVE_CHECK_CTX(ctx);
  nerve_isa best = nerve__best_isa();
  if (isa == NERVE_ISA_AUTO) {
    ctx->isa = default_isa();
    return NERVE_OK;
  }
  if (isa < NERVE_ISA_BASELINE || isa > NERVE_ISA_AVX512)
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, __func__, "unknown instruction set %d",
                       (int)isa);
  if (isa > best)
    return nerve__fail(ctx, NERVE_ERROR_UNSUPPORTED, __func__,
                       "this CPU does not support instruction set %d (best is %d)", (int)isa,
                       (int)best);
  ctx->isa = isa;
  return NERVE_OK;
}

/* A setting the CPU chooses unless told (nerve_fetch, nerve_stores): 0 is AUTO (the CPU's
 * choice, `cpu`), 1 off and 2 on. false, and *setting untouched, for any other value. */
_Static_assert(NERVE_FETCH_AUTO == 0 && NERVE_FETCH_OFF == 1 && NERVE_FETCH_ON == 2,
               "cpu_choice's numbering");
_Static_assert(NERVE_STORES_AUTO == 0 && NERVE_STORES_CACHED == 1 && NERVE_STORES_STREAMED == 2,
               "cpu_choice's numbering");
static bool cpu_choice(int value, bool cpu, bool *setting) {
  if (value < 0 || value > 2) return false;
  *setting = value == 0 ? cpu : value == 2;
  return true;
}

nerve_status nerve_context_set_fetch_ahead(nerve_context *ctx, nerve_fetch fetch) {
  NERVE_CHECK_CTX(ctx);
  if (!cpu_choice((int)fetch, cpu_fetches_ahead(), &ctx->fetches_ahead))
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, __func__,
                       "fetch must be NERVE_FETCH_AUTO (0), _OFF (1) or _ON (2), got %d",
                       (int)fetch);
  return NERVE_OK;
}

nerve_fetch nerve_context_fetch_ahead(const nerve_context *ctx) {
  return ctx && ctx->fetches_ahead ? NERVE_FETCH_ON : NERVE_FETCH_OFF;
}

nerve_status nerve_context_set_stores(nerve_context *ctx, nerve_stores stores) {
  NERVE_CHECK_CTX(ctx);
  if (!cpu_choice((int)stores, cpu_streams_stores(), &ctx->streams_stores))
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, __func__,
                       "stores must be NERVE_STORES_AUTO (0), _CACHED (1) or _STREAMED (2), got %d",
                       (int)stores);
  ctx->streams_always = stores == NERVE_STORES_STREAMED;
  return NERVE_OK;
}

nerve_stores nerve_context_stores(const nerve_context *ctx) {
  return ctx && ctx->streams_stores ? NERVE_STORES_STREAMED : NERVE_STORES_CACHED;
}

nerve_isa nerve_context_isa(const nerve_context *ctx) {
  return ctx ? ctx->isa : NERVE_ISA_BASELINE;
}

const char *nerve_context_last_error(const nerve_context *ctx) {
  return ctx ? ctx->error : "context is NULL";
}

/* ---- Memory ----------------------------------------------------------------------------- */

#define NERVE_HUGE_PAGE ((size_t)2 << 20)

void *nerve_alloc(size_t bytes) {
  if (bytes == 0) return NULL;
  size_t align = bytes >= NERVE_HUGE_PAGE ? NERVE_HUGE_PAGE : 64;
  size_t rounded = (bytes + align - 1) / align * align;
  if (rounded < bytes) return NULL;
  void *p = NULL;
  if (posix_memalign(&p, align, rounded) != 0) return NULL;
#ifdef MADV_HUGEPAGE
  if (align == NERVE_HUGE_PAGE) madvise(p, rounded, MADV_HUGEPAGE);
#endif
  return p;
}

void nerve_free(void *ptr) { free(ptr); }

nerve_status nerve__scratch(nerve_context *ctx, int slot, size_t bytes, const char *func) {
  if (bytes <= ctx->scratch_size[slot]) return NERVE_OK;
  void *p = nerve_alloc(bytes);
  if (!p)
    return nerve__fail(ctx, NERVE_ERROR_OUT_OF_MEMORY, func,
                       "cannot allocate %zu bytes of scratch memory", bytes);
  nerve_free(ctx->scratch[slot]);
  ctx->scratch[slot] = p;
  ctx->scratch_size[slot] = bytes;
  return NERVE_OK;
}

nerve_status nerve_context_reserve(nerve_context *ctx, size_t bytes) {
  NERVE_CHECK_CTX(ctx);
  return nerve__scratch(ctx, NERVE_SCRATCH_LAYER, bytes, __func__);
}
