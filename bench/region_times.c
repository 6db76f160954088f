/*
 * region_times.c: where a run's parallel regions spend their time. An LD_PRELOAD wrapper of
 * libgomp's GOMP_parallel (the one entry nerve__parallel_team calls) that sums, for each team
 * function (a job's first word: nerve__parallel_team passes {fn, arg}), its calls, the team's
 * wall time, each of the first two threads' busy time inside it, and the serial time before it
 * (the gap since the last region ended, if under 2 ms). Printed at exit as file+offset;
 * bench/region_times.sh names them with nm. Teams of one thread do not pass through libgomp
 * (nerve__parallel_team calls them directly), so at --threads 1 nothing is counted. With
 * REGION_TIMES_INNER=1 in the environment, a team function's calls are counted apart by the
 * first word of its job where that address lies in a loaded object (nerve__parallel_for's
 * range_member and nerve__parallel_chunks' chunks_member: the range function each loop runs),
 * as team>inner. That reads two words behind each region's data, as libnerve passes them
 * ({fn, arg}): only for processes whose OpenMP regions all come from libnerve (Debian's
 * OpenBLAS uses pthreads); another library's region could have less behind its pointer.
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
  void *fn, *inner; /* inner: the job's own first word where counted apart, else NULL */
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

/* Prints "file+offset" for code address p (the binary's own file if dladdr names none). */
static void print_address(void *p) {
  Dl_info d = {0};
  dladdr(p, &d);
  fprintf(stderr, "%s+%#lx", d.dli_fname && *d.dli_fname ? d.dli_fname : "?",
          (unsigned long)((char *)p - (char *)d.dli_fbase));
}

static void report(void) {
  for (int i = 0; i < count; i++) {
    fprintf(stderr, "region ");
    print_address(regions[i].fn);
    if (regions[i].inner) {
      fprintf(stderr, ">");
      print_address(regions[i].inner);
    }
    fprintf(stderr, " calls %ld wall %.4f busy %.4f %.4f gap %.4f\n", regions[i].calls, regions[i].wall,
            regions[i].busy[0], regions[i].busy[1], regions[i].gap);
  }
}

/* The first word of the job a team function was given (nerve__parallel_team's {fn, arg}: arg's
 * first word) where REGION_TIMES_INNER asks for it and dladdr places it in a loaded object. */
static void *inner_key(void *data) {
  static int wanted = -1;
  if (wanted < 0) wanted = getenv("REGION_TIMES_INNER") && atoi(getenv("REGION_TIMES_INNER")) > 0;
  void *arg = wanted ? ((void **)data)[1] : NULL;
  if (!arg) return NULL;
  void *first = *(void **)arg;
  Dl_info d = {0};
  return first && dladdr(first, &d) && d.dli_fbase ? first : NULL;
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
  if (!data) { /* a region without shared data (not libnerve's): not counted */
    real(fn, data, threads, flags);
    return;
  }
  void *key = *(void **)data, *inner = inner_key(data);
  region *r = NULL;
  for (int i = 0; i < count && !r; i++)
    if (regions[i].fn == key && regions[i].inner == inner) r = &regions[i];
  if (!r && count < MAX_FUNCTIONS) r = &regions[count++], r->fn = key, r->inner = inner;
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
