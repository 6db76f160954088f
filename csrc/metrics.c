/*
 * metrics.c: predicted classes and correct counts over a batch.
 *   N rows, C classes; scores [N,C] (any monotone score: logits or probabilities).
 */
#include "internal.h"

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
  nerve__parallel_for(ctx, N, (1 << 16) / C + 1, argmax_rows, &j);
  return NERVE_OK;
}

static double correct_rows(void *p, int64_t b, int64_t e) {
  argmax_job *j = p;
  double n = 0;
  for (int64_t r = b; r < e; r++) n += row_argmax(j->scores + r * j->C, j->C) == j->labels[r];
  return n;
}

/* scores [N,C], labels [N] -> *correct */
nerve_status nerve_count_correct(nerve_context *ctx, int64_t *correct, const float *scores,
                                 const int32_t *labels, int64_t N, int64_t C) {
  NERVE_CHECK_CTX(ctx);
  nerve_status s = check_scores(ctx, scores, N, C, __func__);
  if (s != NERVE_OK) return s;
  NERVE_CHECK_PTR(ctx, correct);
  if (N > 0) NERVE_CHECK_PTR(ctx, labels);
  for (int64_t r = 0; r < N; r++)
    if (labels[r] < 0 || labels[r] >= C)
      return nerve__fail(ctx, NERVE_ERROR_BAD_ARGUMENT, __func__,
                         "label %d at row %lld is outside 0..%lld", labels[r], (long long)r,
                         (long long)(C - 1));
  *correct = 0;
  if (N == 0) return NERVE_OK;
  argmax_job j = {.scores = scores, .labels = labels, .C = C};
  *correct = (int64_t)nerve__parallel_sum(ctx, N, 4096, correct_rows, &j);
  return NERVE_OK;
}
