/*
 * shared_stores.c: what it costs one core to overwrite memory the other core has just read, the
 * pattern of a layer whose output the next step's weight gradient read on every thread (a max
 * pool's outputs, the weights a forward read by columns and an Adam step rewrites by rows).
 * Two threads pinned to CPUs 0 and 1; 2 MB, best of 20, timed on CPU 0:
 *
 *   own     ordinary stores to lines only this core has
 *   shared  ordinary stores to lines CPU 1 read just before (each must be taken back from it)
 *   prefetched  the same, each line asked for with PREFETCHW 32 lines ahead
 *   streamed    the same lines written with streaming (non-temporal) stores
 *   read    loads of lines CPU 1 wrote just before
 *
 * On this machine's AMD Zen 4 host (2026-12-04, 20 runs 2 s apart), `own` took 23-68 us;
 * `shared` 650-1,080 us in 11 runs, when the two virtual CPUs were on two dies (core_latency.c:
 * 170-180 ns a handoff; about 25 ns a line, one after another, which PREFETCHW did not
 * overlap), 81-181 us in 7, and 24 us in one; `streamed` 73-76 us in 19 and 105 us in that one.
 * That is why a team writes those outputs with streaming stores (pool.c's streams_outputs,
 * dense.c's streams_weights) on such CPUs. On an Intel Emerald Rapids (2026-12-05, 5 runs)
 * `shared` took 94-109 us and `streamed` 198-244 us, so there a context stores through the
 * caches (context.c's cpu_streams_stores; nerve_context_set_stores chooses). Run it a few
 * times: the host moves the CPUs.
 *
 *   cc -O2 -mavx512f -mprfchw -pthread bench/shared_stores.c -o .build-cmake/shared_stores \
 *     && .build-cmake/shared_stores
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { BYTES = 2 << 20, FLOATS = BYTES / 4, ROUNDS = 20 };

/* What CPU 1 is asked to do next; it answers by setting IDLE. */
enum { IDLE, READ, WRITE, STOP };
static _Atomic int order = IDLE;
static float *buf;
static volatile float sink;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void read_all(void) {
  __m512 sum = _mm512_setzero_ps();
  for (long i = 0; i < FLOATS; i += 16) sum = _mm512_add_ps(sum, _mm512_load_ps(buf + i));
  sink = _mm512_reduce_add_ps(sum);
}

/* Ordinary stores, each line asked for `ahead` lines in advance with PREFETCHW (0: not). */
static void write_all(float value, long ahead) {
  const __m512 v = _mm512_set1_ps(value);
  for (long i = 0; i < FLOATS; i += 16) {
    if (ahead) __builtin_prefetch(buf + i + 16 * ahead, 1, 3);
    _mm512_store_ps(buf + i, v);
  }
}

static void stream_all(float value) {
  const __m512 v = _mm512_set1_ps(value);
  for (long i = 0; i < FLOATS; i += 16) _mm512_stream_ps(buf + i, v);
  _mm_sfence();
}

static void *other_cpu(void *arg) {
  (void)arg;
  pin(1);
  for (;;) {
    int o;
    while ((o = atomic_load(&order)) == IDLE) {
    }
    if (o == STOP) return NULL;
    if (o == READ) read_all();
    else write_all(2.0f, 0);
    atomic_store(&order, IDLE);
  }
}

/* Has CPU 1 do `what` to the buffer, and waits until it has. */
static void ask(int what) {
  atomic_store(&order, what);
  while (atomic_load(&order) != IDLE) {
  }
}

static void keep_best(double *best, double t) {
  if (t < *best) *best = t;
}

int main(void) {
  pin(0);
  buf = aligned_alloc(64, BYTES);
  if (!buf) return 1;
  memset(buf, 0, BYTES);
  pthread_t thread;
  if (pthread_create(&thread, NULL, other_cpu, NULL) != 0) return 1;
  double own = 1e9, shared = 1e9, prefetched = 1e9, streamed = 1e9, read = 1e9;
  for (int r = 0; r < ROUNDS; r++) {
    read_all();
    double t = now();
    write_all(1.0f, 0);
    keep_best(&own, now() - t);
    ask(READ);
    t = now();
    write_all(1.0f, 0);
    keep_best(&shared, now() - t);
    ask(READ);
    t = now();
    write_all(1.0f, 32);
    keep_best(&prefetched, now() - t);
    ask(READ);
    t = now();
    stream_all(1.0f);
    keep_best(&streamed, now() - t);
    ask(WRITE);
    t = now();
    read_all();
    keep_best(&read, now() - t);
  }
  atomic_store(&order, STOP);
  pthread_join(thread, NULL);
  printf("2 MB on CPU 0, best of %d: own %.0f us, shared %.0f us, prefetched %.0f us, streamed %.0f us, "
         "read %.0f us\n",
         ROUNDS, own * 1e6, shared * 1e6, prefetched * 1e6, streamed * 1e6, read * 1e6);
  free(buf);
  return 0;
}
