/*
 * test_arena.h: every buffer a test's calls may touch is carved out of one arena, so comparing
 * the arena with its copy `before` shows whether a call changed anything. Define
 * TEST_ARENA_FLOATS (the arena's size in floats) before including it. Aligned for the doubles
 * and 64-bit integers carved out of it.
 */
#ifndef NERVE_TEST_ARENA_H
#define NERVE_TEST_ARENA_H

#include <stdio.h>
#include <stdlib.h>

enum { ARENA = TEST_ARENA_FLOATS };
static _Alignas(64) float arena[ARENA];
static _Alignas(64) float before[ARENA];
static size_t used = 0;

/* The next n floats of the arena, 64-byte aligned. */
static float *buffer(size_t n) {
  float *p = arena + used;
  used += (n + 15) / 16 * 16;
  if (used > ARENA) {
    fprintf(stderr, "arena too small\n");
    exit(2);
  }
  return p;
}

/* Fills the arena with uniform values in [low, low + 1) from a fixed linear congruential
 * sequence. */
static void fill_arena_uniform(unsigned seed, float low) {
  for (size_t i = 0; i < ARENA; i++)
    arena[i] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0x7fff) / 32768.0f + low;
}

#endif
