/*
 * model.c: a whole model from C through nerve_model.h. Loads the bundled 8x8 digits, builds a
 * 64-32-10 network from [[layer]] tables, trains it with a per-epoch callback, evaluates and
 * predicts, saves it, loads it back and checks the reloaded model predicts the same.
 *
 *   swift build -c release
 *   cc examples/c/model.c -Iinclude -L.build/release -lNerveModel -Wl,-rpath,$PWD/.build/release -o model
 *   ./model [file.safetensors]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nerve_model.h"

/* Stops with the handle's message when a call fails. */
#define CHECK_MODEL(m, call)                                                             \
  do {                                                                                   \
    nerve_status s_ = (call);                                                            \
    if (s_ != NERVE_OK) {                                                                \
      fprintf(stderr, "error (%s): %s\n", nerve_status_string(s_), nerve_model_last_error(m)); \
      exit(1);                                                                           \
    }                                                                                    \
  } while (0)
#define CHECK_DATA(d, call)                                                                \
  do {                                                                                     \
    nerve_status s_ = (call);                                                              \
    if (s_ != NERVE_OK) {                                                                  \
      fprintf(stderr, "error (%s): %s\n", nerve_status_string(s_), nerve_dataset_last_error(d)); \
      exit(1);                                                                             \
    }                                                                                      \
  } while (0)

/* Creating a handle has no handle to keep a message in yet: the status says why. */
#define CHECK_CREATE(call)                                                                 \
  do {                                                                                     \
    nerve_status s_ = (call);                                                              \
    if (s_ != NERVE_OK) {                                                                  \
      fprintf(stderr, "%s failed: %s\n", #call, nerve_status_string(s_));                  \
      exit(1);                                                                             \
    }                                                                                      \
  } while (0)

typedef struct {
  float *x;
  int32_t *y;
  int64_t n, d;
} split;

static split load_split(nerve_dataset *data, nerve_split which) {
  split s;
  CHECK_DATA(data, nerve_dataset_size(data, which, &s.n, &s.d));
  s.x = malloc((size_t)(s.n * s.d) * sizeof(float));
  s.y = malloc((size_t)s.n * sizeof(int32_t));
  if (!s.x || !s.y) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  CHECK_DATA(data, nerve_dataset_copy(data, which, s.x, s.y));
  return s;
}

static int on_epoch(void *user, const char *epoch_json) {
  int *epochs = user;
  ++*epochs;
  printf("epoch: %s\n", epoch_json);
  return 0; /* go on */
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "digits-model.safetensors";
  if (nerve_version_number() != NERVE_VERSION_NUMBER) {
    fprintf(stderr, "header %d does not match library %u\n", NERVE_VERSION_NUMBER, nerve_version_number());
    return 1;
  }

  /* The digits as the command line splits them: 80% training, 20% test. */
  nerve_dataset *data = NULL;
  CHECK_CREATE(nerve_dataset_create(&data));
  CHECK_DATA(data, nerve_dataset_load(data, "[data]\nset = \"digits\"\n"));
  split train = load_split(data, NERVE_SPLIT_TRAIN), test = load_split(data, NERVE_SPLIT_TEST);
  printf("digits: %lld training and %lld test samples of %lld values\n", (long long)train.n,
         (long long)test.n, (long long)train.d);

  nerve_model *model = NULL;
  CHECK_CREATE(nerve_model_create(&model));
  CHECK_MODEL(model, nerve_model_set_threads(model, 2));
  const int64_t input[] = {64};
  CHECK_MODEL(model, nerve_model_build(model,
                                       "[[layer]]\ntype = \"dense\"\nunits = 32\nactivation = \"tanh\"\n"
                                       "[[layer]]\ntype = \"dense\"\nunits = 10\nactivation = \"softmax\"\n",
                                       input, 1, 7));
  CHECK_MODEL(model, nerve_model_set_preprocessing(model, nerve_dataset_preprocessing(data)));
  printf("%s\n", nerve_model_summary(model));

  int epochs = 0;
  CHECK_MODEL(model, nerve_model_train(model,
                                       "[train]\nloss = \"cross_entropy\"\noptimizer = \"adam\"\n"
                                       "learning_rate = 0.01\nbatch_size = 32\nepochs = 10\nseed = 3\n",
                                       train.x, train.y, train.n, test.x, test.y, test.n, on_epoch,
                                       NULL, &epochs));
  double loss = 0;
  int64_t correct = 0;
  CHECK_MODEL(model, nerve_model_evaluate(model, &loss, &correct, test.x, test.y, test.n, NULL));
  printf("test: %lld/%lld correct, loss %.4f after %d epochs\n", (long long)correct, (long long)test.n, loss, epochs);
  if (epochs != 10 || correct < test.n * 9 / 10) {
    fprintf(stderr, "expected 10 epochs and at least 90%% correct\n");
    return 1;
  }

  int32_t *classes = malloc((size_t)test.n * sizeof(int32_t));
  int32_t *again = malloc((size_t)test.n * sizeof(int32_t));
  if (!classes || !again) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  CHECK_MODEL(model, nerve_model_predict(model, classes, test.x, test.n));
  CHECK_MODEL(model, nerve_model_save(model, path));

  nerve_model *loaded = NULL;
  CHECK_CREATE(nerve_model_create(&loaded));
  CHECK_MODEL(loaded, nerve_model_load(loaded, path));
  CHECK_MODEL(loaded, nerve_model_predict(loaded, again, test.x, test.n));
  if (memcmp(classes, again, (size_t)test.n * sizeof(int32_t)) != 0) {
    fprintf(stderr, "the reloaded model predicts differently\n");
    return 1;
  }
  printf("saved %s; reloaded, it predicts the same %lld classes\n", path, (long long)test.n);

  /* A refused call says why and changes nothing. */
  if (nerve_model_predict(loaded, again, NULL, 5) != NERVE_ERROR_NULL_POINTER) {
    fprintf(stderr, "a NULL input was not refused\n");
    return 1;
  }
  printf("refused as expected: %s\n", nerve_model_last_error(loaded));

  nerve_model_free(loaded);
  nerve_model_free(model);
  nerve_dataset_free(data);
  free(classes);
  free(again);
  free(train.x);
  free(train.y);
  free(test.x);
  free(test.y);
  return 0;
}
