/*
 * metrics.c: predicted classes and correct counts over a batch.
 *   N rows, C classes; scores [N,C] (any monotone score: logits or probabilities).
 */
#include "internal.h"

#if NERVE_X86
#  include <immintrin.h>
#endif

typedef struct {
  int32_t *classes;
  const float *scores;
  const int32_t *labels;
  int64_t C;
} argmax_job;

NERVE_INLINE int32_t row_argmax(const float *s, int64_t C) {
  int32_t best = 0;
  for (int64_t c = 1; c < C; c++)
    if (s[c] > s[best]) best = (int32_t)c;
  return best;
}

static void argmax_rows(void *p, int64_t b, int64_t e) {
  argmax_job *j = p;
  for (int64_t r = b; r < e; r++) j->classes[r] = row_argmax(j->scores + r * j->C, j->C);
}

#if NERVE_X86
/* row_argmax for C <= 16 (valid: the first C lanes) in one vector: the first lane holding the
 * largest value that is not NaN, which is what the loop finds, unless s[0] is NaN (then 0, as
 * there). -0.0 and 0.0 compare equal, in both. The loop's branches mispredict on most rows:
 * counting Lab A's 2,048-row chunks right took 3% of its epoch, on one thread. */
NERVE_TARGET_AVX512 NERVE_INLINE int32_t row_argmax16(const float *s, __mmask16 valid) {
  if (s[0] != s[0]) return 0;
  const __m512 v = _mm512_maskz_loadu_ps(valid, s);
  const __mmask16 ordered = _mm512_mask_cmp_ps_mask(valid, v, v, _CMP_ORD_Q);
  const __m512 top = _mm512_set1_ps(_mm512_mask_reduce_max_ps(ordered, v));
  return (int32_t)__builtin_ctz(_mm512_mask_cmp_ps_mask(ordered, v, top, _CMP_EQ_OQ));
}

/* Each lane's first score of 16 rows of C: its offset from the first row's (for gathers). */
NERVE_TARGET_AVX512 NERVE_INLINE __m512i lane_rows(int64_t C) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  return _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)C));
}

/*
 * row_argmax for the 16 rows of C <= 16 scores from `rows` (at: lane_rows(C)), one row in each
 * lane: each lane keeps the loop's best value and its column, each column gathered (strictly
 * greater, as there: a NaN never wins, and one in column 0 is never beaten). Row by row,
 * each row's vector took its maximum by shuffles, all on one port: counting Lab A's 2,048 x
 * 10 chunk right on one thread 8.0-8.5 -> 4.4 us on the Emerald Rapids (bench/lab_a_head.c,
 * gcc's library). Measured there only; where a microcode fix slows gathers (Intel's Gather
 * Data Sampling) the rows' form may be the faster.
 */
NERVE_TARGET_AVX512 NERVE_INLINE __m512i rows16_argmax(const float *rows, __m512i at, int64_t C) {
  __m512 best = _mm512_i32gather_ps(at, rows, 4);
  __m512i column = _mm512_setzero_si512();
  for (int64_t c = 1; c < C; c++) {
    const __m512 v = _mm512_i32gather_ps(at, rows + c, 4);
    const __mmask16 greater = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
    best = _mm512_mask_mov_ps(best, greater, v);
    column = _mm512_mask_mov_epi32(column, greater, _mm512_set1_epi32((int)c));
  }
  return column;
}

/* argmax_rows for C <= 16: 16 rows at a time in lanes (rows16_argmax), the rest row by row. */
NERVE_TARGET_AVX512 static void argmax_rows16(void *p, int64_t b, int64_t e) {
  argmax_job *j = p;
  const int64_t C = j->C;
  const __m512i at = lane_rows(C);
  int64_t r = b;
  for (; r + 16 <= e; r += 16)
    _mm512_storeu_si512(j->classes + r, rows16_argmax(j->scores + r * C, at, C));
  const __mmask16 valid = nerve__lanes16(C);
  for (; r < e; r++) j->classes[r] = row_argmax16(j->scores + r * C, valid);
}
#endif

#if NERVE_X86
/*
 * rows16_argmax with AVX2: 8 rows of C <= 16 scores a vector, one row in each lane (at: each
 * lane's offset, 0, C, .. 7C), each column gathered, strictly greater winning (a NaN never
 * wins; one in column 0 is never beaten), as row_argmax's loop. Row by row, the loop's
 * branches mispredicted on most rows: counting Lab A's 2,048 x 10 chunk right 26.9-27.1 ->
 * 9.3 us at 1 thread, 15.2 -> 8.8 us at 2 on a Zen 3 (bench/lab_a_head.c, SwiftPM's flags).
 * Measured there only; where a microcode fix slows gathers, the rows' form may be the faster.
 */
NERVE_TARGET_AVX2 NERVE_INLINE __m256i avx2_rows8_argmax(const float *rows, __m256i at, int64_t C) {
  __m256 best = _mm256_i32gather_ps(rows, at, 4);
  __m256i column = _mm256_setzero_si256();
  for (int64_t c = 1; c < C; c++) {
    const __m256 v = _mm256_i32gather_ps(rows + c, at, 4);
    const __m256 greater = _mm256_cmp_ps(v, best, _CMP_GT_OQ);
    best = _mm256_blendv_ps(best, v, greater);
    column = _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(column), _mm256_castsi256_ps(_mm256_set1_epi32((int)c)), greater));
  }
  return column;
}

/* Each lane's first score of 8 rows of C: its offset from the first row's (for gathers). */
NERVE_TARGET_AVX2 NERVE_INLINE __m256i avx2_lane_rows(int64_t C) {
  return _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)C));
}

/* argmax_rows for C <= 16 with AVX2: 8 rows at a time in lanes, the rest row by row. */
NERVE_TARGET_AVX2 static void argmax_rows8_avx2(void *p, int64_t b, int64_t e) {
  argmax_job *j = p;
  const int64_t C = j->C;
  const __m256i at = avx2_lane_rows(C);
  int64_t r = b;
  for (; r + 8 <= e; r += 8)
    _mm256_storeu_si256((__m256i *)(j->classes + r), avx2_rows8_argmax(j->scores + r * C, at, C));
  for (; r < e; r++) j->classes[r] = row_argmax(j->scores + r * C, C);
}
#endif

/* The argmax rows for ctx's instruction set and C classes. */
static nerve__range_fn argmax_for(const nerve_context *ctx, int64_t C) {
#if NERVE_X86
  if (C <= 16 && ctx->isa == NERVE_ISA_AVX2) return argmax_rows8_avx2;
#endif
  return C <= 16 ? NERVE_AVX512_OR(ctx, argmax_rows16, argmax_rows) : argmax_rows;
}

static nerve_status check_scores(nerve_context *ctx, const float *scores, int64_t N, int64_t C,
                                 const char *func) {
  if (N < 0 || C < 1)
    return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "need N >= 0 and C >= 1 (N=%lld, C=%lld)",
                       (long long)N, (long long)C);
  if (C > INT32_MAX || !nerve__product_ok(N, C))
    return nerve__fail(ctx, NERVE_ERROR_BAD_SIZE, func, "N*C too large");
  if (N > 0 && !scores) return nerve__fail(ctx, NERVE_ERROR_NULL_POINTER, func, "scores is NULL");
  return NERVE_OK;
}

/* scores [N,C] -> classes [N] */
nerve_status nerve_argmax(nerve_context *ctx, int32_t *classes, const float *scores, int64_t N,
                          int64_t C) {
  NERVE_CHECK_CTX(ctx);
  nerve_status s = check_scores(ctx, scores, N, C, __func__);
  if (s != NERVE_OK) return s;
  if (N == 0) return NERVE_OK;
  NERVE_CHECK_PTR(ctx, classes);
  argmax_job j = {.classes = classes, .scores = scores, .C = C};
  nerve__parallel_for(ctx, N, (1 << 16) / C + 1, argmax_for(ctx, C), &j);
  return NERVE_OK;
}

static double correct_rows(void *p, int64_t b, int64_t e) {
  argmax_job *j = p;
  double n = 0;
  for (int64_t r = b; r < e; r++) n += row_argmax(j->scores + r * j->C, j->C) == j->labels[r];
  return n;
}

#if NERVE_X86
/* correct_rows for C <= 16: 16 rows at a time in lanes (rows16_argmax), the rest row by row. */
NERVE_TARGET_AVX512 static double correct_rows16(void *p, int64_t b, int64_t e) {
  argmax_job *j = p;
  const int64_t C = j->C;
  const __m512i at = lane_rows(C);
  int64_t n = 0, r = b;
  for (; r + 16 <= e; r += 16) {
    const __m512i classes = rows16_argmax(j->scores + r * C, at, C);
    n += __builtin_popcount(_mm512_cmpeq_epi32_mask(classes, _mm512_loadu_si512(j->labels + r)));
  }
  const __mmask16 valid = nerve__lanes16(C);
  for (; r < e; r++) n += row_argmax16(j->scores + r * C, valid) == j->labels[r];
  return (double)n;
}

/* correct_rows for C <= 16 with AVX2: 8 rows at a time in lanes, the rest row by row. */
NERVE_TARGET_AVX2 static double correct_rows8_avx2(void *p, int64_t b, int64_t e) {
  argmax_job *j = p;
  const int64_t C = j->C;
  const __m256i at = avx2_lane_rows(C);
  int64_t n = 0, r = b;
  for (; r + 8 <= e; r += 8) {
    const __m256i classes = avx2_rows8_argmax(j->scores + r * C, at, C);
    const __m256i right = _mm256_cmpeq_epi32(classes, _mm256_loadu_si256((const __m256i *)(j->labels + r)));
    n += __builtin_popcount((unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(right)));
  }
  for (; r < e; r++) n += row_argmax(j->scores + r * C, C) == j->labels[r];
  return (double)n;
}
#endif

/* The correct counts for ctx's instruction set and C classes. */
static nerve__sum_fn correct_for(const nerve_context *ctx, int64_t C) {
#if NERVE_X86
  if (C <= 16 && ctx->isa == NERVE_ISA_AVX2) return correct_rows8_avx2;
#endif
  return C <= 16 ? NERVE_AVX512_OR(ctx, correct_rows16, correct_rows) : correct_rows;
}

/* labels [N], 1 <= C <= INT32_MAX (check_scores) -> the first row whose label is outside
 * 0 .. C - 1, or N if none: a pass the compiler vectorises (a negative label is a large
 * unsigned one), then the row found only where there is one. */
static int64_t first_bad_label(const int32_t *labels, int64_t N, int64_t C) {
  const uint32_t limit = (uint32_t)C;
  uint32_t bad = 0;
  for (int64_t r = 0; r < N; r++) bad |= (uint32_t)labels[r] >= limit;
  if (!bad) return N;
  int64_t r = 0;
  while ((uint32_t)labels[r] < limit) r++;
  return r;
}

/* scores [N,C], labels [N] -> *correct */
nerve_status nerve_count_correct(nerve_context *ctx, int64_t *correct, const float *scores,
                                 const int32_t *labels, int64_t N, int64_t C) {
  NERVE_CHECK_CTX(ctx);
  nerve_status s = check_scores(ctx, scores, N, C, __func__);
  if (s != NERVE_OK) return s;
  NERVE_CHECK_PTR(ctx, correct);
  if (N > 0) NERVE_CHECK_PTR(ctx, labels);
  const int64_t bad = N > 0 ? first_bad_label(labels, N, C) : N;
  if (bad < N)
    return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, __func__,
                       "label %d at row %lld is outside 0..%lld", labels[bad], (long long)bad,
                       (long long)(C - 1));
  *correct = 0;
  if (N == 0) return NERVE_OK;
  argmax_job j = {.scores = scores, .labels = labels, .C = C};
  /* Chunks of 1,024 rows and more: Lab A's 2,048-row chunks are counted by both threads, each
   * over the half of the outputs its core wrote (one thread read the other half across). */
  *correct = (int64_t)nerve__parallel_sum(ctx, N, 1024, correct_for(ctx, C), &j);
  return NERVE_OK;
}
