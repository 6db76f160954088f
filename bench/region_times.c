/*
 * region_times.c: where a run's parallel regions spend their time. An LD_PRELOAD wrapper of
 * libgomp's GOMP_parallel (the one entry nerve__parallel_team calls) that sums, for each team
 * function (a job's first word: nerve__parallel_team passes {fn, arg}), its calls, the team's
 * wall time, each of the first two threads' busy time inside it, and the serial time before it
 * (the gap since the last region ended, if under 2 ms). Printed at exit as file+offset;
 * bench/region_times.sh names them with nm. Teams of one thread do not pass through libgomp
 * (nerve__parallel_team calls them directly), so at --threads 1 nothing is counted.
 *
 *   bench/region_times.sh .build/release/nerve bench --workloads lab-a --threads 2 --repeats 50
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_FUNCTIONS = 256 };

typedef struct {
  void *fn;
  long calls;
  double wall, busy[2], gap;
} region;

static region regions[MAX_FUNCTIONS];
static int count;
static double last_end;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void report(void) {
  for (int i = 0; i < count; i++) {
    Dl_info d = {0};
    dladdr(regions[i].fn, &d);
    fprintf(stderr, "region %s+%#lx calls %ld wall %.4f busy %.4f %.4f gap %.4f\n",
            d.dli_fname && *d.dli_fname ? d.dli_fname : "?", (unsigned long)((char *)regions[i].fn - (char *)d.dli_fbase),
            regions[i].calls, regions[i].wall, regions[i].busy[0], regions[i].busy[1], regions[i].gap);
  }
}

typedef struct {
  void (*fn)(void *);
  void *data;
  region *r;
} wrapped_job;

static void timed(void *p) {
  wrapped_job *w = p;
  const double a = now();
  w->fn(w->data);
  const int t = omp_get_thread_num();
  if (t < 2) w->r->busy[t] += now() - a; /* each thread its own slot */
}

void GOMP_parallel(void (*fn)(void *), void *data, unsigned threads, unsigned flags) {
  static void (*real)(void (*)(void *), void *, unsigned, unsigned);
  if (!real) {
    real = (void (*)(void (*)(void *), void *, unsigned, unsigned))dlsym(RTLD_NEXT, "GOMP_parallel");
    atexit(report);
  }
  void *key = *(void **)data;
  region *r = NULL;
  for (int i = 0; i < count && !r; i++)
    if (regions[i].fn == key) r = &regions[i];
  if (!r && count < MAX_FUNCTIONS) r = &regions[count++], r->fn = key;
  if (!r) {
    real(fn, data, threads, flags);
    return;
  }
  wrapped_job w = {fn, data, r};
  const double a = now();
  if (last_end > 0 && a - last_end < 0.002) r->gap += a - last_end;
  real(timed, &w, threads, flags);
  last_end = now();
  r->wall += last_end - a;
  r->calls++;
}
