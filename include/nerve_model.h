/*
 * nerve_model.h: whole Nerve models from C (and from Python, Rust or any language with a C
 * FFI). Link with -lNerveModel (pkg-config nerve-model); the library is built by
 * `swift build -c release` as .build/release/libNerveModel.so.
 *
 * Where nerve.h offers kernels over raw buffers, this header offers models: build one from the
 * [[layer]] tables of a config, or load a file saved by `nerve train --save`; train it on your
 * arrays with a per-epoch callback; evaluate, predict, save, export ONNX; or run a whole config
 * as `nerve train` does. The model logic is Nerve's Swift library itself, exported through these
 * functions, so results are those of the command line: the same config, seed and data give a
 * byte-identical model file.
 *
 * Conventions (those of nerve.h)
 * - Opaque handles with create/free pairs; free accepts NULL. A handle is used by one thread at
 *   a time.
 * - Every function returns a nerve_status (nerve.h); on failure the handle keeps a one-line
 *   message (nerve_model_last_error, nerve_dataset_last_error) naming the function and what was
 *   wrong. Arguments are checked before anything changes: a refused call leaves the handle as
 *   it was. The library never prints, never exits, never aborts.
 * - Arrays are caller-owned, float32, row-major: n samples of the model's input shape
 *   (channels last for images: [n, 28, 28, 1]). Labels are int32 classes 0..outputs-1.
 * - Strings returned (summaries, JSON) belong to the handle and stay valid until the next call
 *   on that handle.
 * - Settings travel as TOML text, the config files' own syntax ([[layer]] tables, a [train]
 *   table, a [data] table; see the examples/ folder), so options can grow without changing
 *   this header.
 */
#ifndef NERVE_MODEL_H
#define NERVE_MODEL_H

#include "nerve.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Models ----------------------------------------------------------------------------- */

/** Opaque handle: a model (once built or loaded), its thread count and its last error. */
typedef struct nerve_model nerve_model;

/** Creates an empty handle; build or load a model into it. NERVE_ERROR_NULL_POINTER if out is
 *  NULL. */
NERVE_API nerve_status nerve_model_create(nerve_model **out);
/** Frees the handle and its model. Accepts NULL. */
NERVE_API void nerve_model_free(nerve_model *m);
/** The message of the last failed call on m ("" after a success). Never NULL. */
NERVE_API const char *nerve_model_last_error(const nerve_model *m);

/** Threads for every kernel of this model from now on (0: OMP_NUM_THREADS or all CPUs). */
NERVE_API nerve_status nerve_model_set_threads(nerve_model *m, int threads);
/** The thread count in effect; 0 if m is NULL. */
NERVE_API int nerve_model_threads(const nerve_model *m);

/**
 * Builds a new model (replacing any held one) from the [[layer]] tables of a config text, for
 * samples of shape input_shape[0..rank-1] (rank 1 to 4), initialised from seed:
 *   [[layer]]
 *   type = "dense"
 *   units = 30
 *   activation = "sigmoid"
 * NERVE_ERROR_BAD_ARGUMENT for unknown layer types or keys (the message names the table and
 * key), NERVE_ERROR_SHAPE_MISMATCH if the layers do not chain.
 */
NERVE_API nerve_status nerve_model_build(nerve_model *m, const char *layers_toml,
                                         const int64_t *input_shape, int rank, uint64_t seed);
/** Loads a model file saved by `nerve train --save` or nerve_model_save (replacing any held
 *  model). NERVE_ERROR_BAD_FILE for missing, truncated or corrupt files. */
NERVE_API nerve_status nerve_model_load(nerve_model *m, const char *path);
/** Saves the model as safetensors with its architecture and preprocessing, atomically. */
NERVE_API nerve_status nerve_model_save(nerve_model *m, const char *path);
/** Writes the model as ONNX (opset 13), atomically; input "input", output "output". */
NERVE_API nerve_status nerve_model_export_onnx(nerve_model *m, const char *path);

/** The layers, output shapes and parameter counts as a table; NULL on failure. */
NERVE_API const char *nerve_model_summary(nerve_model *m);
/** The model as JSON: input_shape, output_shape, parameter_count, ends_with_softmax, layers
 *  (type, activation, output_shape, parameters), preprocessing, threads. NULL on failure. */
NERVE_API const char *nerve_model_info(nerve_model *m);
/** Sets how raw inputs were prepared (saved with the model, used by `nerve predict`): JSON
 *  {"scale": s, "mean": [...], "std": [...]} (mean and std optional, one per input value). */
NERVE_API nerve_status nerve_model_set_preprocessing(nerve_model *m, const char *json);

/* ---- Running a model -------------------------------------------------------------------- */

/** classes[n] = the predicted class of each of the n samples in x (inference mode). */
NERVE_API nerve_status nerve_model_predict(nerve_model *m, int32_t *classes, const float *x,
                                           int64_t n);
/** outputs[n, outputs] = the model's outputs (probabilities when it ends with a softmax). */
NERVE_API nerve_status nerve_model_predict_proba(nerve_model *m, float *outputs, const float *x,
                                                 int64_t n);
/** nerve_model_predict with the samples given as bytes (8-bit images as their files store
 *  them), each input scale * byte (scale finite; 1 gives the bytes' own values): the same
 *  classes as from those floats, without making them all. */
NERVE_API nerve_status nerve_model_predict_pixels(nerve_model *m, int32_t *classes,
                                                  const uint8_t *pixels, float scale, int64_t n);
/** nerve_model_predict_proba with the samples given as bytes, as nerve_model_predict_pixels:
 *  the same outputs, bit for bit, as from the floats scale * byte. */
NERVE_API nerve_status nerve_model_predict_proba_pixels(nerve_model *m, float *outputs,
                                                        const uint8_t *pixels, float scale,
                                                        int64_t n);
/**
 * Mean loss and correct count of the model on n labelled samples. loss_name is "mse",
 * "cross_entropy" or "nll"; NULL for the loss it was last trained with (else cross-entropy for
 * models ending with a softmax, MSE otherwise).
 */
NERVE_API nerve_status nerve_model_evaluate(nerve_model *m, double *loss, int64_t *correct,
                                            const float *x, const int32_t *labels, int64_t n,
                                            const char *loss_name);

/* ---- Training --------------------------------------------------------------------------- */

/** Called after every epoch with its metrics as JSON (the keys of a metrics file's epoch line:
 *  epoch, seconds, train_loss, train_accuracy, valid_loss, valid_accuracy, learning_rate, ...).
 *  Return 0 to go on, non-zero to stop after this epoch. */
typedef int (*nerve_epoch_callback)(void *user, const char *epoch_json);
/** Called after a step, at most every 50 ms and after an epoch's last step: the epoch, the step
 *  within it, the steps per epoch and the epoch's mean loss so far. Return non-zero to stop
 *  training after this step: the call then returns NERVE_ERROR_INTERRUPTED, and the model
 *  holds the parameters of that step. (An interpreter's Ctrl-C handler can run here.) */
typedef int (*nerve_progress_callback)(void *user, int64_t epoch, int64_t step, int64_t steps,
                                       double loss);

/**
 * Trains the model on n samples x[n, ...] with labels[n], as `nerve train` would with a config
 * holding train_toml, a [train] table:
 *   [train]
 *   loss = "cross_entropy"      # mse, cross_entropy, nll
 *   optimizer = "adam"          # sgd, momentum, nesterov, adam, adamw, rmsprop, adadelta
 *   learning_rate = 0.001
 *   batch_size = 32             # or "full"
 *   epochs = 5
 *   seed = 1                    # shuffling and dropout
 * (and every other [train] key: momentum, schedule, patience, monitor, gradient_every, ...).
 * valid_x/valid_labels (valid_n samples; valid_n 0 for none) are evaluated after every epoch.
 * Callbacks and user may be NULL. NERVE_ERROR_DIVERGED if the loss became NaN (the model then
 * holds the last good epoch's parameters), NERVE_ERROR_INTERRUPTED if a callback stopped it.
 */
NERVE_API nerve_status nerve_model_train(nerve_model *m, const char *train_toml, const float *x,
                                         const int32_t *labels, int64_t n, const float *valid_x,
                                         const int32_t *valid_labels, int64_t valid_n,
                                         nerve_epoch_callback on_epoch,
                                         nerve_progress_callback on_progress, void *user);
/** The last training's history as JSON: {"epochs": [...], "stopped_early": b, "best_epoch": e}. */
NERVE_API const char *nerve_model_history(nerve_model *m);

/**
 * Runs a config file as `nerve train --config FILE --set KEY=VALUE ... --metrics M --save S`
 * does: loads its data, builds and trains its model (which m then holds), evaluates the test
 * set, writes the metrics file and the model if their paths are not NULL. overrides are
 * `key=value` strings (override_count of them; NULL if 0).
 */
NERVE_API nerve_status nerve_model_run_config(nerve_model *m, const char *config_path,
                                              const char *const *overrides, int override_count,
                                              const char *metrics_path, const char *save_path,
                                              nerve_epoch_callback on_epoch,
                                              nerve_progress_callback on_progress, void *user);
/** After nerve_model_run_config: the metrics file's last record as JSON (test_accuracy,
 *  test_correct, confusion_matrix, training_seconds, ...). */
NERVE_API const char *nerve_model_run_summary(nerve_model *m);

/* ---- Data sets -------------------------------------------------------------------------- */

/** Opaque handle: a data set loaded and split as the command line does. */
typedef struct nerve_dataset nerve_dataset;

/** Which part of a data set. */
typedef enum nerve_split {
  NERVE_SPLIT_TRAIN = 0,
  NERVE_SPLIT_VALIDATION = 1,
  NERVE_SPLIT_TEST = 2
} nerve_split;

NERVE_API nerve_status nerve_dataset_create(nerve_dataset **out);
/** Frees the handle and its data. Accepts NULL. */
NERVE_API void nerve_dataset_free(nerve_dataset *d);
/** The message of the last failed call on d ("" after a success). Never NULL. */
NERVE_API const char *nerve_dataset_last_error(const nerve_dataset *d);
/**
 * Loads a data set as a config's [data] table describes it (replacing any held one):
 *   [data]
 *   set = "mnist"        # or "digits"; path = "DIR" for another folder of MNIST IDX files
 *   validation = 10000   # MNIST: images held out of the training file
 * Values are prepared as the command line prepares them (MNIST bytes scaled to [0, 1]).
 */
NERVE_API nerve_status nerve_dataset_load(nerve_dataset *d, const char *data_toml);
/** Samples in a split (0 for an empty validation split) and values per sample. */
NERVE_API nerve_status nerve_dataset_size(const nerve_dataset *d, nerve_split split,
                                          int64_t *count, int64_t *sample_size);
/** Copies a split into features[count, sample_size] and labels[count]. */
NERVE_API nerve_status nerve_dataset_copy(const nerve_dataset *d, nerve_split split,
                                          float *features, int32_t *labels);
/** How the values were prepared, as JSON {"scale": ...} (give it to
 *  nerve_model_set_preprocessing so saved models prepare new inputs alike). */
NERVE_API const char *nerve_dataset_preprocessing(nerve_dataset *d);

#ifdef __cplusplus
}
#endif

#endif /* NERVE_MODEL_H */
