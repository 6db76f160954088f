/*
 * parallel.c: parallel loops on the OpenMP runtime's team of threads, called through its C
 * entry points so that no compiler flag (-fopenmp) is needed.
 */
#include "internal.h"

#include <sched.h>
#include <time.h>

/* The OpenMP runtime ABI (libgomp, and LLVM's libomp which exports the same symbols). */
extern void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads,
                          unsigned flags);
extern int omp_get_thread_num(void);
extern int omp_get_num_threads(void);

int nerve__threads_for(const nerve_context *ctx, int64_t work, int64_t grain) {
  if (grain < 1) grain = 1;
  int64_t useful = work / grain;
  if (useful < 1) useful = 1;
  return useful < ctx->threads ? (int)useful : ctx->threads;
}

/* The size of the innermost of Nerve's teams this thread is running in (team_trampoline sets
 * it): a caller's own OpenMP team, around a single-threaded call, is not one of them. */
static _Thread_local int team_size = 1;

int nerve__team_threads(void) { return team_size; }

typedef struct {
  nerve__team_fn fn;
  void *arg;
} team_job;

static void team_trampoline(void *data) {
  team_job *job = data;
  /* The runtime may grant fewer threads than asked (nested regions, limits): split by what
   * it actually granted. */
  const int outer = team_size, granted = omp_get_num_threads();
  team_size = granted;
  job->fn(job->arg, omp_get_thread_num(), granted);
  team_size = outer;
}

void nerve__parallel_team(int threads, nerve__team_fn fn, void *arg) {
  if (threads <= 1) {
    fn(arg, 0, 1);
    return;
  }
  team_job job = {.fn = fn, .arg = arg};
  GOMP_parallel(team_trampoline, &job, (unsigned)threads, 0);
}

void nerve__flag_raise(int *flag) { __atomic_store_n(flag, 1, __ATOMIC_RELEASE); }

/* Pauses before the first yield: a pause takes about 40-140 cycles, so some tens of us. */
enum { FLAG_SPINS = 1000 };

void nerve__flag_wait(int *flag) {
  for (int spins = 0; !__atomic_load_n(flag, __ATOMIC_ACQUIRE); spins++) {
    if (spins < FLAG_SPINS) {
#if NERVE_X86
      __builtin_ia32_pause();
#endif
    } else {
      sched_yield();
    }
  }
}

/* ---- How far apart a team's cores are ------------------------------------------------- */

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Far past this a hand-off (see nerve__cores_far); a probe at most this often; a partner
 * silent this long gives up (a busy machine). */
enum { FAR_HANDOFF_NS = 120, FAR_PROBE_NS = 100 * 1000 * 1000, FAR_WAIT_NS = 200 * 1000 };

/* Rounds (a hand-off there and back) after the first few (the partner waking up, the line's
 * first trip), timed in groups: the fastest group is the answer, so that one stall (an
 * interrupt, the host taking a virtual CPU away for some microseconds) does not make two
 * cores on one die look far apart. */
enum { PROBE_WARM = 4, PROBE_GROUPS = 4, PROBE_GROUP_ROUNDS = 8 };

typedef struct {
  _Alignas(64) int ball; /* even: member 0's turn to hit it, odd: member 1's */
  _Alignas(64) int gave_up;
  int64_t ns; /* member 0: the fastest group's rounds; 0 if none was timed */
} probe_job;

/* Waits for the ball to show `value`; false if the partner gave up or took longer than
 * FAR_WAIT_NS (then this side gives up too). The clock is read only once a wait has
 * spun a while: a hand-off is tens of nanoseconds, and on some virtual machines reading the
 * clock costs a system call. */
static bool probe_wait(probe_job *p, int value) {
  int64_t start = 0;
  for (int spins = 1; __atomic_load_n(&p->ball, __ATOMIC_ACQUIRE) != value; spins++) {
    if (__atomic_load_n(&p->gave_up, __ATOMIC_RELAXED)) return false;
    if (spins % 256 == 0) {
      if (start == 0) start = now_ns();
      else if (now_ns() - start > FAR_WAIT_NS) {
        __atomic_store_n(&p->gave_up, 1, __ATOMIC_RELAXED);
        return false;
      }
    }
#if NERVE_X86
    __builtin_ia32_pause();
#endif
  }
  return true;
}

/* Member t's hits of rounds [*r, *r + rounds): it waits for the ball, then hits it on. */
static bool probe_rounds(probe_job *p, int t, int *r, int rounds) {
  for (const int end = *r + rounds; *r < end; (*r)++) {
    if (!probe_wait(p, 2 * *r + t)) return false;
    __atomic_store_n(&p->ball, 2 * *r + t + 1, __ATOMIC_RELEASE);
  }
  return true;
}

/* Members 0 and 1 hit the ball in turn, each round member 0 to 1 and back. Member 0 times each
 * group from just after its last hit to just after the group's last: the group's round trips.
 * A team granted one thread has no partner: it times nothing. */
static void probe_member(void *data, int t, int nt) {
  probe_job *p = data;
  if (t > 1 || nt < 2) return;
  int r = 0;
  if (!probe_rounds(p, t, &r, PROBE_WARM)) return;
  int64_t fastest = INT64_MAX;
  for (int g = 0; g < PROBE_GROUPS; g++) {
    const int64_t start = t == 0 ? now_ns() : 0;
    if (!probe_rounds(p, t, &r, PROBE_GROUP_ROUNDS)) return;
    const int64_t took = t == 0 ? now_ns() - start : 0;
    if (t == 0 && took < fastest) fastest = took;
  }
  if (t == 0) p->ns = fastest;
}

bool nerve__cores_far(nerve_context *ctx) {
  if (ctx->threads < 2) return false;
  if (ctx->cores_told >= 0) return ctx->cores_told == 1;
  const int64_t now = now_ns();
  if (ctx->cores_probed_ns != 0 && now - ctx->cores_probed_ns < FAR_PROBE_NS) return ctx->cores_far;
  probe_job p = {.ball = 0, .gave_up = 0, .ns = 0};
  nerve__parallel_team(2, probe_member, &p);
  /* Two hand-offs a round; a team the runtime cut to one thread timed nothing (ns 0). */
  ctx->cores_far = !p.gave_up && p.ns > 2 * PROBE_GROUP_ROUNDS * (int64_t)FAR_HANDOFF_NS;
  ctx->cores_probed_ns = now_ns();
  return ctx->cores_far;
}

bool nerve__streams_while_far(nerve_context *ctx) {
  return ctx->streams_stores && (ctx->streams_always || nerve__cores_far(ctx));
}

typedef struct {
  nerve__range_fn fn;
  void *arg;
  int64_t n;
} range_job;

static void range_member(void *data, int thread, int nthreads) {
  range_job *job = data;
  int64_t begin = job->n * thread / nthreads;
  int64_t end = job->n * (thread + 1) / nthreads;
  if (begin < end) job->fn(job->arg, begin, end);
}

void nerve__parallel_for(const nerve_context *ctx, int64_t n, int64_t grain, nerve__range_fn fn,
                         void *arg) {
  if (n <= 0) return;
  int threads = nerve__threads_for(ctx, n, grain);
  if (threads <= 1) {
    fn(arg, 0, n);
    return;
  }
  range_job job = {.fn = fn, .arg = arg, .n = n};
  nerve__parallel_team(threads, range_member, &job);
}

typedef struct {
  nerve__range_fn fn;
  void *arg;
  int64_t n, chunk, next;
} chunks_job;

static void chunks_member(void *data, int thread, int nthreads) {
  chunks_job *job = data;
  (void)thread, (void)nthreads;
  int64_t begin, end;
  while (nerve__take_chunk(&job->next, job->chunk, job->n, &begin, &end)) job->fn(job->arg, begin, end);
}

void nerve__parallel_chunks(const nerve_context *ctx, int64_t n, int64_t grain,
                            nerve__range_fn fn, void *arg) {
  if (n <= 0) return;
  int threads = nerve__threads_for(ctx, n, grain);
  if (threads <= 1) {
    fn(arg, 0, n);
    return;
  }
  /* About four chunks a thread: enough to even out, few enough that each stays long. */
  chunks_job job = {.fn = fn, .arg = arg, .n = n, .chunk = (n + 4 * threads - 1) / (4 * threads)};
  nerve__parallel_team(threads, chunks_member, &job);
}

/* ---- Fixed-order sums ------------------------------------------------------------------- */

#define NERVE_MAX_CHUNKS 2048

typedef struct {
  nerve__sum_fn fn;
  void *arg;
  int64_t n, chunk;
  double *partial;
} sum_job;

static void sum_chunks(void *data, int64_t begin, int64_t end) {
  sum_job *job = data;
  for (int64_t c = begin; c < end; c++) {
    int64_t b = c * job->chunk;
    int64_t e = b + job->chunk < job->n ? b + job->chunk : job->n;
    job->partial[c] = job->fn(job->arg, b, e);
  }
}

double nerve__parallel_sum(const nerve_context *ctx, int64_t n, int64_t min_chunk,
                           nerve__sum_fn fn, void *arg) {
  if (n <= 0) return 0.0;
  if (min_chunk < 1) min_chunk = 1;
  /* The chunk size depends on n only, never on the thread count. */
  int64_t chunk = (n + NERVE_MAX_CHUNKS - 1) / NERVE_MAX_CHUNKS;
  if (chunk < min_chunk) chunk = min_chunk;
  int64_t chunks = (n + chunk - 1) / chunk;
  double partial[NERVE_MAX_CHUNKS];
  sum_job job = {.fn = fn, .arg = arg, .n = n, .chunk = chunk, .partial = partial};
  nerve__parallel_for(ctx, chunks, 1, sum_chunks, &job);
  double total = 0.0;
  for (int64_t c = 0; c < chunks; c++) total += partial[c];
  return total;
}
