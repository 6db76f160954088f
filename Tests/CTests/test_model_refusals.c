/*
 * test_model_refusals.c: the model-level C API (nerve_model.h) under misuse. Every function is
 * called with NULL handles and pointers, negative and overflowing sizes, out-of-range enums
 * and bad text; each must return a status with a message naming the function, and leave the
 * handle and the caller's buffers as they were (checked by predicting before and after).
 */
#include <nerve_model.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0, checked = 0;

static void expect_refused(nerve_model *m, nerve_status s, const char *function, const char *what) {
  checked++;
  if (s == NERVE_OK) {
    failures++;
    fprintf(stderr, "%s (%s): accepted, expected a refusal\n", function, what);
    return;
  }
  if (m && strncmp(nerve_model_last_error(m), function, strlen(function)) != 0) {
    failures++;
    fprintf(stderr, "%s (%s): message '%s' does not start with the function\n", function, what, nerve_model_last_error(m));
  }
}

#define N 5
#define D 64

int main(void) {
  nerve_model *m = NULL;
  if (nerve_model_create(&m) != NERVE_OK) return 1;
  float x[N * D], before[N * 10], after[N * 10], out[N * 10];
  int32_t labels[N], classes[N];
  for (int i = 0; i < N * D; i++) x[i] = (float)((i * 37) % 17) / 16.0f;
  for (int i = 0; i < N; i++) labels[i] = i % 10;
  double loss = 0;
  int64_t correct = 0;
  const int64_t shape[] = {D};
  const char *layers = "[[layer]]\ntype = \"dense\"\nunits = 10\nactivation = \"softmax\"\n";

  /* Before any model: every use is refused with NERVE_ERROR_NO_MODEL. */
  expect_refused(m, nerve_model_predict(m, classes, x, N), "nerve_model_predict", "no model");
  expect_refused(m, nerve_model_save(m, "/tmp/never.safetensors"), "nerve_model_save", "no model");
  if (nerve_model_summary(m) != NULL) failures++, fprintf(stderr, "summary without a model\n");

  /* NULL handles and out-pointers: statuses, never a crash. */
  expect_refused(NULL, nerve_model_create(NULL), "nerve_model_create", "NULL out");
  expect_refused(NULL, nerve_model_build(NULL, layers, shape, 1, 1), "nerve_model_build", "NULL handle");
  expect_refused(NULL, nerve_model_predict(NULL, classes, x, N), "nerve_model_predict", "NULL handle");
  expect_refused(NULL, nerve_model_train(NULL, "", x, labels, N, NULL, NULL, 0, NULL, NULL, NULL), "nerve_model_train", "NULL handle");
  if (nerve_model_summary(NULL) != NULL || nerve_model_info(NULL) != NULL || nerve_model_history(NULL) != NULL) {
    failures++;
    fprintf(stderr, "NULL handle gave a string\n");
  }
  if (strlen(nerve_model_last_error(NULL)) == 0) failures++, fprintf(stderr, "no message for a NULL handle\n");
  nerve_model_free(NULL);
  nerve_dataset_free(NULL);

  /* Bad builds leave no model behind. */
  expect_refused(m, nerve_model_build(m, NULL, shape, 1, 1), "nerve_model_build", "NULL layers");
  expect_refused(m, nerve_model_build(m, layers, NULL, 1, 1), "nerve_model_build", "NULL shape");
  expect_refused(m, nerve_model_build(m, layers, shape, 0, 1), "nerve_model_build", "rank 0");
  expect_refused(m, nerve_model_build(m, layers, shape, 99, 1), "nerve_model_build", "rank 99");
  const int64_t negative[] = {-64}, huge[] = {INT64_MAX};
  expect_refused(m, nerve_model_build(m, layers, negative, 1, 1), "nerve_model_build", "negative size");
  expect_refused(m, nerve_model_build(m, layers, huge, 1, 1), "nerve_model_build", "overflowing size");
  expect_refused(m, nerve_model_build(m, "[[layer]]\ntype = \"wobble\"\n", shape, 1, 1), "nerve_model_build", "unknown layer");
  expect_refused(m, nerve_model_build(m, "[[layer]\ntype = ", shape, 1, 1), "nerve_model_build", "broken TOML");
  expect_refused(m, nerve_model_build(m, "[[layer]]\ntype = \"dense\"\nunits = 4000000000000\n", shape, 1, 1),
                 "nerve_model_build", "too many parameters");
  expect_refused(m, nerve_model_predict(m, classes, x, N), "nerve_model_predict", "still no model");

  /* A model, then every use with bad arguments; its outputs must not change. */
  if (nerve_model_build(m, layers, shape, 1, 3) != NERVE_OK) {
    fprintf(stderr, "build failed: %s\n", nerve_model_last_error(m));
    return 1;
  }
  if (nerve_model_predict_proba(m, before, x, N) != NERVE_OK) return 1;
  memcpy(out, before, sizeof out);
  expect_refused(m, nerve_model_predict(m, NULL, x, N), "nerve_model_predict", "NULL classes");
  expect_refused(m, nerve_model_predict(m, classes, NULL, N), "nerve_model_predict", "NULL x");
  expect_refused(m, nerve_model_predict(m, classes, x, -1), "nerve_model_predict", "negative n");
  expect_refused(m, nerve_model_predict(m, classes, x, INT64_MAX), "nerve_model_predict", "overflowing n");
  expect_refused(m, nerve_model_predict_proba(m, out, x, INT64_MAX / 64 + 1), "nerve_model_predict_proba", "overflowing n");
  /* Bytes: the same checks, and a scale that must be finite. Accepted calls must give the
   * classes and outputs of the same values as floats, for sparse bytes (listed as they are
   * read, with AVX-512) and dense ones (made floats). */
  uint8_t pixels[N * D];
  float pixel_values[N * D];
  for (int sparse = 0; sparse < 2; sparse++) {
    for (int i = 0; i < N * D; i++) {
      pixels[i] = sparse && i % 3 ? 0 : (uint8_t)((i * 37) % 256);
      pixel_values[i] = (float)pixels[i] / 8.0f;
    }
    int32_t from_floats[N], from_bytes[N];
    float proba_floats[N * 10], proba_bytes[N * 10];
    if (nerve_model_predict(m, from_floats, pixel_values, N) != NERVE_OK ||
        nerve_model_predict_pixels(m, from_bytes, pixels, 1.0f / 8, N) != NERVE_OK ||
        memcmp(from_floats, from_bytes, sizeof from_bytes) != 0) {
      failures++;
      fprintf(stderr, "nerve_model_predict_pixels: not the classes of the same floats (%s)\n", nerve_model_last_error(m));
    }
    if (nerve_model_predict_proba(m, proba_floats, pixel_values, N) != NERVE_OK ||
        nerve_model_predict_proba_pixels(m, proba_bytes, pixels, 1.0f / 8, N) != NERVE_OK ||
        memcmp(proba_floats, proba_bytes, sizeof proba_bytes) != 0) {
      failures++;
      fprintf(stderr, "nerve_model_predict_proba_pixels: not the outputs of the same floats (%s)\n", nerve_model_last_error(m));
    }
  }
  expect_refused(NULL, nerve_model_predict_pixels(NULL, classes, pixels, 1, N), "nerve_model_predict_pixels", "NULL handle");
  expect_refused(m, nerve_model_predict_pixels(m, NULL, pixels, 1, N), "nerve_model_predict_pixels", "NULL classes");
  expect_refused(m, nerve_model_predict_pixels(m, classes, NULL, 1, N), "nerve_model_predict_pixels", "NULL pixels");
  expect_refused(m, nerve_model_predict_pixels(m, classes, pixels, NAN, N), "nerve_model_predict_pixels", "NaN scale");
  expect_refused(m, nerve_model_predict_pixels(m, classes, pixels, 1, -1), "nerve_model_predict_pixels", "negative n");
  expect_refused(m, nerve_model_predict_pixels(m, classes, pixels, 1, INT64_MAX), "nerve_model_predict_pixels", "overflowing n");
  expect_refused(m, nerve_model_predict_proba_pixels(m, NULL, pixels, 1, N), "nerve_model_predict_proba_pixels", "NULL outputs");
  expect_refused(m, nerve_model_predict_proba_pixels(m, out, pixels, INFINITY, N), "nerve_model_predict_proba_pixels", "infinite scale");
  expect_refused(m, nerve_model_predict_proba_pixels(m, out, pixels, 1, INT64_MAX / 64 + 1), "nerve_model_predict_proba_pixels", "overflowing n");
  expect_refused(m, nerve_model_evaluate(m, &loss, &correct, x, labels, N, "hinge"), "nerve_model_evaluate", "unknown loss");
  expect_refused(m, nerve_model_evaluate(m, NULL, &correct, x, labels, N, NULL), "nerve_model_evaluate", "NULL loss");
  expect_refused(m, nerve_model_evaluate(m, &loss, &correct, x, labels, 0, NULL), "nerve_model_evaluate", "no samples");
  int32_t bad_labels[N];
  memcpy(bad_labels, labels, sizeof labels);
  bad_labels[N - 1] = 10;
  expect_refused(m, nerve_model_evaluate(m, &loss, &correct, x, bad_labels, N, NULL), "nerve_model_evaluate", "label out of range");
  const char *train = "[train]\nepochs = 1\nbatch_size = 2\n";
  expect_refused(m, nerve_model_train(m, NULL, x, labels, N, NULL, NULL, 0, NULL, NULL, NULL), "nerve_model_train", "NULL settings");
  expect_refused(m, nerve_model_train(m, train, x, bad_labels, N, NULL, NULL, 0, NULL, NULL, NULL), "nerve_model_train", "label out of range");
  expect_refused(m, nerve_model_train(m, train, x, labels, -3, NULL, NULL, 0, NULL, NULL, NULL), "nerve_model_train", "negative n");
  expect_refused(m, nerve_model_train(m, train, x, labels, N, NULL, labels, 2, NULL, NULL, NULL), "nerve_model_train", "NULL validation");
  expect_refused(m, nerve_model_train(m, "[train]\nepochs = -1\n", x, labels, N, NULL, NULL, 0, NULL, NULL, NULL), "nerve_model_train", "negative epochs");
  expect_refused(m, nerve_model_train(m, "[train]\noptimizer = \"magic\"\n", x, labels, N, NULL, NULL, 0, NULL, NULL, NULL), "nerve_model_train", "unknown optimizer");
  expect_refused(m, nerve_model_train(m, "[train]\nlearning_rate = -1.0\n", x, labels, N, NULL, NULL, 0, NULL, NULL, NULL), "nerve_model_train", "negative rate");
  expect_refused(m, nerve_model_set_threads(m, -2), "nerve_model_set_threads", "negative threads");
  expect_refused(m, nerve_model_set_preprocessing(m, "{\"scale\": \"big\"}"), "nerve_model_set_preprocessing", "bad JSON");
  expect_refused(m, nerve_model_set_preprocessing(m, "{\"scale\": 1, \"mean\": [1, 2]}"), "nerve_model_set_preprocessing", "wrong mean count");
  expect_refused(m, nerve_model_save(m, NULL), "nerve_model_save", "NULL path");
  expect_refused(m, nerve_model_save(m, "/nonexistent-folder/m.safetensors"), "nerve_model_save", "no folder");
  expect_refused(m, nerve_model_export_onnx(m, "/nonexistent-folder/m.onnx"), "nerve_model_export_onnx", "no folder");
  expect_refused(m, nerve_model_load(m, "/nonexistent.safetensors"), "nerve_model_load", "missing file");
  expect_refused(m, nerve_model_run_config(m, "/nonexistent.toml", NULL, 0, NULL, NULL, NULL, NULL, NULL), "nerve_model_run_config", "missing config");
  expect_refused(m, nerve_model_run_config(m, "examples/lab-a-mlp-mse.toml", NULL, -1, NULL, NULL, NULL, NULL, NULL), "nerve_model_run_config", "negative count");
  if (nerve_model_predict_proba(m, after, x, N) != NERVE_OK || memcmp(before, after, sizeof before) != 0) {
    failures++;
    fprintf(stderr, "a refused call changed the model\n");
  }
  if (memcmp(out, before, sizeof out) != 0) failures++, fprintf(stderr, "a refused call wrote the caller's buffer\n");

  /* Data sets. */
  nerve_dataset *d = NULL;
  expect_refused(NULL, nerve_dataset_create(NULL), "nerve_dataset_create", "NULL out");
  if (nerve_dataset_create(&d) != NERVE_OK) return 1;
  int64_t count = 0, size = 0;
  checked++;
  if (nerve_dataset_size(d, NERVE_SPLIT_TRAIN, &count, &size) == NERVE_OK) failures++, fprintf(stderr, "size of no data\n");
  checked++;
  if (nerve_dataset_load(d, "[data]\nset = \"cifar\"\n") == NERVE_OK) failures++, fprintf(stderr, "unknown data set loaded\n");
  if (strstr(nerve_dataset_last_error(d), "cifar") == NULL) failures++, fprintf(stderr, "message: %s\n", nerve_dataset_last_error(d));
  if (nerve_dataset_load(d, "[data]\nset = \"digits\"\n") != NERVE_OK) return 1;
  checked++;
  if (nerve_dataset_size(d, (nerve_split)7, &count, &size) == NERVE_OK) failures++, fprintf(stderr, "split 7 accepted\n");
  checked++;
  if (nerve_dataset_copy(d, NERVE_SPLIT_TEST, NULL, labels) == NERVE_OK) failures++, fprintf(stderr, "NULL features accepted\n");
  nerve_dataset_free(d);

  nerve_model_free(m);
  printf("%d refused calls checked, %d failures\n", checked, failures);
  return failures == 0 ? 0 : 1;
}
