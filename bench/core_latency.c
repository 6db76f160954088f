/*
 * core_latency.c: how far apart the host has put this machine's first two CPUs. Two threads,
 * pinned to CPUs 0 and 1, hand one cache line back and forth; the time of a one-way handoff is
 * about 40 ns between cores that share an L3 (one die of an EPYC) and 180-190 ns between dies.
 * On the virtual machines Nerve is measured on, the host moves the two virtual CPUs between
 * dies from one second to the next, and a multi-threaded run whose threads pass data to each
 * other slows by a fifth or more while they are apart: run this before and after a benchmark
 * to know which it met.
 *
 *   cc -O2 -pthread bench/core_latency.c -o .build-cmake/core_latency && .build-cmake/core_latency
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

enum { ROUNDS = 200000 };

/* The line the two threads hand over: odd values are the first thread's turn done, even the
 * second's. */
static _Alignas(64) _Atomic long baton;

static cpu_set_t only(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return set;
}

static void *answer(void *arg) {
  (void)arg;
  for (long i = 0; i < ROUNDS; i++) {
    while (atomic_load_explicit(&baton, memory_order_acquire) != 2 * i + 1) {
    }
    atomic_store_explicit(&baton, 2 * i + 2, memory_order_release);
  }
  return NULL;
}

int main(void) {
  pthread_t other;
  pthread_attr_t attr;
  const cpu_set_t first = only(0), second = only(1);
  pthread_attr_init(&attr);
  if (pthread_setaffinity_np(pthread_self(), sizeof first, &first) != 0 ||
      pthread_attr_setaffinity_np(&attr, sizeof second, &second) != 0 ||
      pthread_create(&other, &attr, answer, NULL) != 0) {
    fprintf(stderr, "core_latency: needs CPUs 0 and 1\n");
    return 1;
  }
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (long i = 0; i < ROUNDS; i++) {
    atomic_store_explicit(&baton, 2 * i + 1, memory_order_release);
    while (atomic_load_explicit(&baton, memory_order_acquire) != 2 * i + 2) {
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  pthread_join(other, NULL);
  const double ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / ROUNDS / 2;
  printf("%.0f ns a one-way handoff between CPUs 0 and 1\n", ns);
  return 0;
}
