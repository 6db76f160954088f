/*
 * nerve.h: the public C API of libnerve, the compute core of Nerve.
 *
 * libnerve holds the kernels a small neural network needs (dense layers, activations, losses,
 * optimizer steps, metrics) as plain functions over caller-owned float32 buffers. Every matrix
 * is row-major and dense. Dimension letters used throughout:
 *   N  batch (samples)      I  inputs of a dense layer     O  outputs of a dense layer
 *   C  classes / columns, or image channels                n  a flat element count
 *   H W image height and width, K filters, KH KW kernel or window size, SH SW strides,
 *   PT PL padding before the image (rows, columns), OH OW output height and width
 * Images are channels-last (NHWC): [N, H, W, C]. Convolution weights are [KH, KW, C, K].
 *
 * Conventions
 * - Every function returns a nerve_status. NERVE_OK is 0; anything else leaves a one-line
 *   message in the context (nerve_context_last_error). The library never prints, never exits,
 *   never aborts on bad input.
 * - A call that fails has changed nothing the caller owns: every argument is checked, and every
 *   workspace allocated, before the first write to an output, parameter or optimizer state.
 *   (The one exception is documented: nerve_context_create sets *out to NULL.)
 * - Arguments come in the order: context, outputs, saved buffers, inputs and parameters, sizes.
 * - Parameter gradients ACCUMULATE (+=) so several backward passes can sum into one buffer; the
 *   caller zeroes them. Input gradients are WRITTEN (=). Each function says which it does.
 * - Sizes are int64_t; a negative size is an error, a zero batch is a no-op.
 * - Threads are a setting of a nerve_context, never process-wide state. libnerve parallelises with
 *   the OpenMP runtime and runs OpenBLAS single-threaded inside its own parallel regions, so the
 *   two thread pools never compete for cores (see nerve_context_create).
 * - Results are bit-identical from run to run for the same inputs, thread count and CPU. The
 *   dense, activation, loss and optimizer kernels also give bit-identical results for any thread
 *   count: each output element is computed in one fixed order whatever the split.
 * - A context is not thread-safe: use one context per calling thread.
 */
#ifndef NERVE_H
#define NERVE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(NERVE_SHARED_BUILD)
#  define NERVE_API __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#  define NERVE_API __attribute__((visibility("default")))
#else
#  define NERVE_API
#endif

/* ---- Version ---------------------------------------------------------------------------- */

#define NERVE_VERSION_MAJOR 0
#define NERVE_VERSION_MINOR 2
#define NERVE_VERSION_PATCH 0
/** MAJOR*10000 + MINOR*100 + PATCH; compare with nerve_version_number() to catch a header that
 *  does not match the library actually loaded. */
#define NERVE_VERSION_NUMBER \
  (NERVE_VERSION_MAJOR * 10000 + NERVE_VERSION_MINOR * 100 + NERVE_VERSION_PATCH)

/** The version of the library that is linked, as NERVE_VERSION_NUMBER encodes it. */
NERVE_API unsigned nerve_version_number(void);
/** The version of the linked library as "MAJOR.MINOR.PATCH". Static storage; never NULL. */
NERVE_API const char *nerve_version_string(void);

/* ---- Status ----------------------------------------------------------------------------- */

typedef enum nerve_status {
  NERVE_OK = 0,
  NERVE_ERROR_NULL_POINTER = 1,  /**< a required pointer argument was NULL */
  NERVE_ERROR_BAD_SIZE = 2,      /**< a size was negative, or a product of sizes overflows */
  NERVE_ERROR_BAD_ARGUMENT = 3,  /**< an enum value, rate or option was out of range */
  NERVE_ERROR_OUT_OF_MEMORY = 4, /**< a workspace could not be allocated */
  NERVE_ERROR_UNSUPPORTED = 5,   /**< e.g. an instruction set this CPU does not have */
  /* Statuses of the model-level API (nerve_model.h): */
  NERVE_ERROR_BAD_FILE = 6,       /**< a file is missing, unreadable, truncated or corrupt */
  NERVE_ERROR_SHAPE_MISMATCH = 7, /**< shapes that must agree do not (layers, samples, labels) */
  NERVE_ERROR_DIVERGED = 8,       /**< training's loss became NaN or infinite */
  NERVE_ERROR_INTERRUPTED = 9,    /**< training was stopped by a callback */
  NERVE_ERROR_WRITE_FAILED = 10,  /**< a file could not be written */
  NERVE_ERROR_NO_MODEL = 11,      /**< the handle holds no model (or data) yet */
  NERVE_ERROR_FAILED = 12         /**< any other failure; the message says what */
} nerve_status;

/** A short English description of a status code. Static storage; never NULL. */
NERVE_API const char *nerve_status_string(nerve_status status);

/* ---- Context ---------------------------------------------------------------------------- */

/** Opaque handle: thread count, instruction-set choice, scratch memory and the last error. */
typedef struct nerve_context nerve_context;

/** Instruction sets the kernels can be run with. */
typedef enum nerve_isa {
  NERVE_ISA_AUTO = 0,     /**< the best this CPU supports (the default), or the one the NERVE_ISA
                               environment variable names ("baseline", "avx2", "avx512") where
                               this CPU has it: other CPUs' paths on this one, whose results can
                               differ in their last bits from this CPU's best */
  NERVE_ISA_BASELINE = 1, /**< x86-64 baseline (SSE2) element-wise code; GEMM through OpenBLAS */
  NERVE_ISA_AVX2 = 2,     /**< AVX2 + FMA element-wise code and libnerve's own 8-lane GEMM */
  NERVE_ISA_AVX512 = 3    /**< AVX-512 element-wise code and libnerve's own AVX-512 GEMM */
} nerve_isa;

/**
 * Creates a context.
 * @param out      receives the new context; set to NULL on failure.
 * @param threads  worker threads for every parallel loop; 0 means "OMP_NUM_THREADS if set,
 *                 otherwise every CPU this process may run on". Negative is an error.
 * Its instruction set is NERVE_ISA_AUTO's: the CPU's best, or the one NERVE_ISA names.
 * On first use libnerve calls openblas_set_num_threads(1): it parallelises around OpenBLAS itself.
 * That first create also stops OpenBLAS's own thread pool (its pthread build's), whose idle
 * threads would otherwise spin beside libnerve's; a later threaded OpenBLAS call starts it again.
 * It must not overlap threaded OpenBLAS calls the process makes itself.
 * @return NERVE_OK, NERVE_ERROR_NULL_POINTER, NERVE_ERROR_BAD_ARGUMENT or
 *         NERVE_ERROR_OUT_OF_MEMORY.
 */
NERVE_API nerve_status nerve_context_create(nerve_context **out, int threads);
/** Frees a context and its scratch memory. Accepts NULL. */
NERVE_API void nerve_context_free(nerve_context *ctx);
/** Sets the thread count (0 = default as in nerve_context_create, negative is an error). */
NERVE_API nerve_status nerve_context_set_threads(nerve_context *ctx, int threads);
/** The thread count in effect (at least 1); 0 if ctx is NULL. */
NERVE_API int nerve_context_threads(const nerve_context *ctx);
/**
 * Says that the following dense-layer calls each get part of a batch of `rows` rows (a rank's
 * share in data-parallel training); 0 (the default) says each call gets a whole batch. Dense
 * kernels then choose their method (which depends on the batch size) as for the whole batch,
 * so every row's result, and every sum continued from one part to the next, is what one call
 * on the whole batch computes.
 */
NERVE_API nerve_status nerve_context_set_whole_batch(nerve_context *ctx, int64_t rows);
/** Chooses the instruction set; NERVE_ERROR_UNSUPPORTED if this CPU lacks it. */
NERVE_API nerve_status nerve_context_set_isa(nerve_context *ctx, nerve_isa isa);
/** The instruction set in effect (never NERVE_ISA_AUTO); NERVE_ISA_BASELINE if ctx is NULL. */
NERVE_API nerve_isa nerve_context_isa(const nerve_context *ctx);

/** Whether the fused dense Adam step fetches ahead (nerve_context_set_fetch_ahead). */
typedef enum nerve_fetch {
  NERVE_FETCH_AUTO = 0, /**< by the CPU (the default): off on Intel's cores, on elsewhere */
  NERVE_FETCH_OFF = 1,
  NERVE_FETCH_ON = 2
} nerve_fetch;

/**
 * Chooses whether nerve_dense_backward_adam's fused step (with AVX-512) asks the caches for
 * each next tile's weights and moments in software while it computes the current one. AMD's
 * Zen 4 needed it (the lines arrived late without); on Intel's Emerald Rapids the hardware's
 * streamer brings those contiguous rows itself, and the requests only slowed the loads. The
 * results are the same bits either way: only the time changes. NERVE_ERROR_BAD_ARGUMENT for a
 * value not in nerve_fetch.
 */
NERVE_API nerve_status nerve_context_set_fetch_ahead(nerve_context *ctx, nerve_fetch fetch);
/** NERVE_FETCH_ON or NERVE_FETCH_OFF, as in effect (AUTO resolved); NERVE_FETCH_OFF if ctx is NULL. */
NERVE_API nerve_fetch nerve_context_fetch_ahead(const nerve_context *ctx);

/** How a team writes what the other threads just read (nerve_context_set_stores). */
typedef enum nerve_stores {
  /** By the CPU (the default): streamed on x86-64 CPUs other than Intel's, cached elsewhere;
   *  a fused Adam step past 16 MB, batch norm's input gradient and the weights a fused SGD
   *  step copies back from a padded copy stream only while the team's cores are far apart. */
  NERVE_STORES_AUTO = 0,
  /** Ordinary stores. */
  NERVE_STORES_CACHED = 1,
  /** Streaming (non-temporal) stores for whole 64-byte lines, at any size. */
  NERVE_STORES_STREAMED = 2
} nerve_stores;

/**
 * Chooses how a team of two or more threads (with AVX-512) writes the lines the other threads
 * read just before: a max pool's outputs and gradient, the weights of a fused Adam or SGD step,
 * batch norm's input gradient (which a convolution's weight gradient reads on every thread). Where
 * the two cores are far apart (AMD's Zen 4, its virtual CPUs on two dies) an ordinary store
 * must first take each line back from the other core, one after another, and streaming stores
 * were 9-15x faster while they sat on two dies; on Intel's Emerald Rapids ordinary stores were
 * twice as fast as streamed ones (bench/shared_stores.c measures both). Under AUTO a fused Adam
 * step past 16 MB of weights and moments (Lab E's) streams only while a probe (a cache line
 * handed between the team's first two threads, at most every 0.1 s) finds its cores far apart
 * (NERVE_CORES=far or =near in the environment when the context is made answers instead):
 * on one die its lines wait in the shared L3, and streaming cost its dense backward 10%. Batch
 * norm's input gradient streams on the same condition (on one die streaming gained it nothing
 * that the convolution after it, reading from memory, did not lose), and so do the weights a
 * fused SGD step writes back from a padded copy (rank updates, over 64 rows and more than 16
 * outputs, not a multiple of 16).
 * The results are the same bits either way: only the time changes. NERVE_ERROR_BAD_ARGUMENT
 * for a value not in nerve_stores.
 */
NERVE_API nerve_status nerve_context_set_stores(nerve_context *ctx, nerve_stores stores);
/**
 * NERVE_STORES_CACHED or NERVE_STORES_STREAMED, as in effect (AUTO resolved);
 * NERVE_STORES_CACHED if ctx is NULL. It tells how a team stores lines, not what it does past
 * 16 MB, with batch norm's input gradient or an SGD step's padded copy: AUTO resolved to
 * STREAMED streams those only while its cores are far apart, STREAMED set by the caller always.
 */
NERVE_API nerve_stores nerve_context_stores(const nerve_context *ctx);
/**
 * Grows the context's layer workspace to at least `bytes` now (e.g. the largest
 * nerve_conv2d_workspace_size of a model), so later kernel calls never allocate. Kernels grow
 * their workspace on first use otherwise, and never shrink it.
 */
NERVE_API nerve_status nerve_context_reserve(nerve_context *ctx, size_t bytes);
/** The message of the last failed call on this context ("" if none). Valid until the next call. */
NERVE_API const char *nerve_context_last_error(const nerve_context *ctx);

/* ---- Memory ----------------------------------------------------------------------------- */

/**
 * Allocates `bytes` aligned to 64 bytes (2 MiB and advised for huge pages when large, which
 * keeps strided matrix walks out of TLB misses). Returns NULL on failure or if bytes is 0.
 * Free with nerve_free.
 */
NERVE_API void *nerve_alloc(size_t bytes);
/** Frees memory from nerve_alloc. Accepts NULL. */
NERVE_API void nerve_free(void *ptr);

/* ---- Dense layer ------------------------------------------------------------------------ */
/*
 * The products skip inputs that are exactly zero (most MNIST pixels): their terms are exactly
 * zero, so results are unchanged, except that NaN or infinite weights are not spread through
 * zero inputs.
 */

/**
 * out[N,O] = in[N,I] . weight[I,O] + bias[O]
 * weight holds one row per input (the bias is not a row of it). bias may be NULL (no bias).
 * out must not overlap the inputs.
 */
NERVE_API nerve_status nerve_dense_forward(nerve_context *ctx, float *out, const float *in,
                                           const float *weight, const float *bias, int64_t N,
                                           int64_t I, int64_t O);

/**
 * nerve_dense_forward with in[N,I] = scale * pixels[N,I], the inputs given as bytes (8-bit
 * images as their files store them; scale is finite, 1/255 gives [0, 1]): the same bits as
 * nerve_dense_forward on the floats nerve_pixels_to_floats(pixels, scale) gives, on every
 * instruction set and at any thread count, without making them all, for finite weights (as
 * there, a NaN or infinite weight may meet no zero input; and a zero output may differ in its
 * sign). With libnerve's AVX-512 or AVX2
 * kernels and sparse images (under half the bytes of the first rows not zero, as MNIST's),
 * each row's non-zero bytes are listed as they are read, a byte a pixel where floats take four
 * (MNIST's 10,000 test images through a 784 -> 30 layer: about a quarter faster than from
 * floats with AVX-512, 1.7x with AVX2, whose listing runs each row over its own non-zero
 * bytes; AVX2 lists from 64 rows on, for up to 16,376 inputs and a padded copy of the weights
 * of up to 4 MB a thread); otherwise blocks of rows are made floats in the context's workspace
 * as they run.
 */
NERVE_API nerve_status nerve_dense_forward_pixels(nerve_context *ctx, float *out,
                                                  const uint8_t *pixels, float scale,
                                                  const float *weight, const float *bias,
                                                  int64_t N, int64_t I, int64_t O);

/**
 * Backward of nerve_dense_forward, given dout[N,O] = dLoss/dout:
 *   din[N,I]      = dout . weight^T        WRITTEN; skipped if din is NULL
 *   dweight[I,O] += in^T . dout            ACCUMULATED; skipped if dweight is NULL
 *   dbias[O]     += sum over N of dout     ACCUMULATED; skipped if dbias is NULL
 * in and weight are the values used in the forward pass.
 */
NERVE_API nerve_status nerve_dense_backward(nerve_context *ctx, float *din, float *dweight,
                                            float *dbias, const float *dout, const float *in,
                                            const float *weight, int64_t N, int64_t I,
                                            int64_t O);

/**
 * Backward of nerve_dense_forward fused with a plain gradient-descent step, for training with
 * SGD without momentum or weight decay:
 *   din[N,I] = dout . weight^T     WRITTEN, with the weights before the step; skipped if NULL
 *   weight  -= lr * in^T . dout    (no gradient buffer is written or read)
 *   bias    -= lr * sum over N of dout   (skipped if bias is NULL)
 * Mathematically nerve_dense_backward into zeroed gradients followed by nerve_sgd_step; the
 * rounding differs (the step is applied inside the sum). Per-sample SGD touches only the
 * weight rows of non-zero inputs this way.
 */
NERVE_API nerve_status nerve_dense_backward_sgd(nerve_context *ctx, float *din, float *weight,
                                                float *bias, const float *dout, const float *in,
                                                int64_t N, int64_t I, int64_t O, float lr);

/**
 * Backward of nerve_dense_forward fused with an Adam (or AdamW) step, as nerve_adam_step
 * defines it, on weight and bias:
 *   din[N,I] = dout . weight^T   WRITTEN, with the weights before the step; skipped if NULL
 *   weight, bias                 stepped with their gradients in^T . dout and sum_n dout, which
 *                                are never stored: each tile is applied as it is computed
 * weight_m, weight_v [I,O] and bias_m, bias_v [O] are Adam's moments; weight_decay (coupled)
 * and decoupled_weight_decay apply to the weight only; step counts from 1. For small batches
 * this reads the weights once instead of three times; larger batches fall back to storing the
 * gradient in the context's workspace. The result equals the unfused path up to rounding.
 */
NERVE_API nerve_status nerve_dense_backward_adam(nerve_context *ctx, float *din, float *weight,
                                                 float *bias, float *weight_m, float *weight_v,
                                                 float *bias_m, float *bias_v, const float *dout,
                                                 const float *in, int64_t N, int64_t I,
                                                 int64_t O, float lr, float beta1, float beta2,
                                                 float eps, float weight_decay,
                                                 float decoupled_weight_decay, int64_t step);

/**
 * The input gradient din [N,I] (WRITTEN) alone, exactly as nerve_dense_backward_adam computes
 * it: for data-parallel training, where each rank computes its rows' input gradient and the
 * Adam step follows from the weight gradient summed over all ranks. Changes nothing else.
 */
NERVE_API nerve_status nerve_dense_backward_adam_input(nerve_context *ctx, float *din,
                                                       const float *dout, const float *weight,
                                                       int64_t N, int64_t I, int64_t O);

/* ---- Sparse inputs (sparse.c) ----------------------------------------------------------- */
/*
 * A matrix [rows, cols] kept as its non-zero entries, row by row in increasing column order:
 * a training set of images (a fifth of MNIST's pixels are not zero) listed once per run, so
 * that each epoch's dense products read the entries instead of finding them again among the
 * zeros. The library owns it; it keeps no pointer to the values it was made from. Entries are
 * the values that compare unequal to zero (NaN included, -0.0 not). 8 bytes an entry; where the
 * AVX-512 kernels run, the columns fit 16 bits and the values take at most 256 distinct bit
 * patterns (images' pixels), 6 more: the entries packed for the products, once by row and once
 * by column within blocks of 256 rows.
 */
typedef struct nerve_sparse nerve_sparse;

/** *nonzeros = the number of entries of values[rows, cols] that are not zero (to decide
 *  whether listing them pays). */
NERVE_API nerve_status nerve_sparse_count(nerve_context *ctx, int64_t *nonzeros,
                                          const float *values, int64_t rows, int64_t cols);

/** *out = the non-zero entries of values[rows, cols], listed (NULL on failure). Free with
 *  nerve_sparse_destroy. */
NERVE_API nerve_status nerve_sparse_create(nerve_context *ctx, nerve_sparse **out,
                                           const float *values, int64_t rows, int64_t cols);

/** Frees a matrix from nerve_sparse_create. Accepts NULL. */
NERVE_API void nerve_sparse_destroy(nerve_sparse *sparse);

/** Its rows, columns and entries. */
NERVE_API nerve_status nerve_sparse_shape(const nerve_sparse *sparse, int64_t *rows,
                                          int64_t *cols, int64_t *nonzeros);

/**
 * nerve_dense_forward with in[N,I] = rows [first, first + N) of `in` (which has I columns):
 * the same bits as nerve_dense_forward on those rows stored densely, with libnerve's AVX-512 or
 * AVX2 kernels and finite weights (elsewhere the same values up to rounding; a NaN or infinite weight
 * meets no zero input here, so it spreads only through the inputs that are not zero).
 */
NERVE_API nerve_status nerve_dense_forward_sparse(nerve_context *ctx, float *out,
                                                  const nerve_sparse *in, int64_t first,
                                                  const float *weight, const float *bias,
                                                  int64_t N, int64_t I, int64_t O);

/**
 * The parameter gradients of nerve_dense_backward with in[N,I] = rows [first, first + N) of
 * `in` (the first layer has no input gradient to write):
 *   dweight[I,O] += in^T . dout            ACCUMULATED; skipped if dweight is NULL
 *   dbias[O]     += sum over N of dout     ACCUMULATED; skipped if dbias is NULL
 * The same bits as nerve_dense_backward, as for nerve_dense_forward_sparse.
 */
NERVE_API nerve_status nerve_dense_backward_sparse(nerve_context *ctx, float *dweight,
                                                   float *dbias, const nerve_sparse *in,
                                                   int64_t first, const float *dout, int64_t N,
                                                   int64_t I, int64_t O);

/* ---- Activations ------------------------------------------------------------------------ */

typedef enum nerve_activation {
  NERVE_ACTIVATION_IDENTITY = 0,
  NERVE_ACTIVATION_SIGMOID = 1,    /**< 1 / (1 + exp(-x)) */
  NERVE_ACTIVATION_TANH = 2,
  NERVE_ACTIVATION_RELU = 3,       /**< max(x, 0); the derivative at 0 is taken as 0 */
  NERVE_ACTIVATION_LECUN_TANH = 4  /**< 1.7159 tanh(2x/3) + 0.01 x (LeCun's scaled tanh) */
} nerve_activation;

/** out[n] = f(in[n]) element-wise. out may equal in (in place). */
NERVE_API nerve_status nerve_activation_forward(nerve_context *ctx, nerve_activation kind,
                                                float *out, const float *in, int64_t n);

/**
 * din[n] = dout[n] * f'(in[n]), WRITTEN. `in` and `out` are the forward pass's input and
 * output; each kind reads the one it needs (sigmoid, tanh, ReLU read out; LeCun's tanh reads in;
 * identity reads neither), the other may be NULL. din may equal dout.
 */
NERVE_API nerve_status nerve_activation_backward(nerve_context *ctx, nerve_activation kind,
                                                 float *din, const float *dout, const float *in,
                                                 const float *out, int64_t n);

/** out[N,C] = softmax of each row of in[N,C], computed as exp(x - max) / sum. out may equal in. */
NERVE_API nerve_status nerve_softmax_forward(nerve_context *ctx, float *out, const float *in,
                                             int64_t N, int64_t C);

/** din[N,C] = out * (dout - sum_c dout*out) row by row, WRITTEN; out is the forward output. */
NERVE_API nerve_status nerve_softmax_backward(nerve_context *ctx, float *din, const float *dout,
                                              const float *out, int64_t N, int64_t C);

/* ---- Dense layers joined to their activations ------------------------------------------- */
/*
 * Each is a dense call followed by an activation call, with the two calls' exact results (the
 * same bits, at any thread count), and no second pass over the [N,O] or [N,I] values where the
 * product's threads share its rows (libnerve's AVX-512 kernels on batches of more than a few
 * rows, for layers narrow against the batch): each thread takes the rows it has just computed
 * through the activation while they are in its cache. Elsewhere (other instruction sets, few
 * rows, products whose threads share column panels) the activation runs as a pass by rows
 * after the product, as its own call would. Sizes, pointers and failures are those of the
 * dense call; an unknown kind is NERVE_ERROR_BAD_ARGUMENT, and a refused call writes nothing.
 */

/** nerve_dense_forward, then nerve_activation_forward(kind) on out in place: out = f(in . W + b). */
NERVE_API nerve_status nerve_dense_forward_activation(nerve_context *ctx, nerve_activation kind,
                                                      float *out, const float *in,
                                                      const float *weight, const float *bias,
                                                      int64_t N, int64_t I, int64_t O);

/** nerve_dense_forward_sparse, then nerve_activation_forward(kind) on out in place. */
NERVE_API nerve_status nerve_dense_forward_sparse_activation(nerve_context *ctx,
                                                             nerve_activation kind, float *out,
                                                             const nerve_sparse *in, int64_t first,
                                                             const float *weight,
                                                             const float *bias, int64_t N,
                                                             int64_t I, int64_t O);

/**
 * nerve_dense_backward with din taken on through the activation before the layer, whose output
 * is the layer's input `in`: din = (dout . weight^T) * f'(in), as nerve_dense_backward followed
 * by nerve_activation_backward(kind, din, din, NULL, in, N * I), so din is the gradient of that
 * activation's input. For kinds whose derivative comes from their output (identity, sigmoid,
 * tanh, relu); LeCun's tanh is NERVE_ERROR_BAD_ARGUMENT. `in` is required whenever din is
 * written and the kind is not identity, even without dweight.
 */
NERVE_API nerve_status nerve_dense_backward_activation(nerve_context *ctx, nerve_activation kind,
                                                       float *din, float *dweight, float *dbias,
                                                       const float *dout, const float *in,
                                                       const float *weight, int64_t N, int64_t I,
                                                       int64_t O);

/** nerve_dense_backward_sgd with din taken through the activation before the layer, as
 * nerve_dense_backward_activation takes it (din from the weights before the step). Like
 * nerve_dense_backward_sgd, it writes nothing when O is 0. */
NERVE_API nerve_status nerve_dense_backward_sgd_activation(nerve_context *ctx,
                                                           nerve_activation kind, float *din,
                                                           float *weight, float *bias,
                                                           const float *dout, const float *in,
                                                           int64_t N, int64_t I, int64_t O,
                                                           float lr);

/* ---- Losses ----------------------------------------------------------------------------- */
/*
 * Each loss averages over `count` samples: pass count = N normally, or the size of the whole
 * batch when out[N,...] is one slice of a larger batch whose gradients you accumulate.
 * The loss value is summed in double in a fixed order. `loss` may be NULL (gradient only), the
 * gradient pointer may be NULL (value only).
 */

/**
 * Mean squared error as the labs define it: loss = (1/count) sum_n sum_c (out - target)^2,
 * dout = 2 (out - target) / count (WRITTEN).
 */
NERVE_API nerve_status nerve_loss_mse(nerve_context *ctx, double *loss, float *dout,
                                      const float *out, const float *target, int64_t N,
                                      int64_t C, int64_t count);

/**
 * Softmax fused with cross-entropy, on logits[N,C] and target[N,C] (one-hot or any
 * distribution): loss = -(1/count) sum_n sum_c target * log softmax(logits), computed through
 * log-sum-exp so it never takes log(0). dlogits = (softmax(logits) - target) / count (WRITTEN).
 * probs receives softmax(logits) if not NULL.
 */
NERVE_API nerve_status nerve_loss_softmax_cross_entropy(nerve_context *ctx, double *loss,
                                                        float *dlogits, float *probs,
                                                        const float *logits,
                                                        const float *target, int64_t N,
                                                        int64_t C, int64_t count);

/**
 * Negative log-likelihood on probabilities probs[N,C] (e.g. a softmax layer's output):
 * loss = -(1/count) sum target * log(probs + eps); dprobs = -target / (probs + eps) / count
 * (WRITTEN). eps must be >= 0 (1e-7 is usual).
 */
NERVE_API nerve_status nerve_loss_nll(nerve_context *ctx, double *loss, float *dprobs,
                                      const float *probs, const float *target, int64_t N,
                                      int64_t C, float eps, int64_t count);

/* ---- Optimizer steps -------------------------------------------------------------------- */
/*
 * All steps update param[n] in place from grad[n]. weight_decay adds weight_decay * param to
 * the gradient first (coupled L2; pass 0 for none). The steps with state (all but plain SGD;
 * also the fused Adam of nerve_dense_backward_adam) take subnormal floats as zero, in and out,
 * on x86-64 (MXCSR's flush-to-zero and denormals-are-zero for the step's duration; the
 * caller's modes are restored): a moment that decays below 2^-126 is stored as zero.
 * Subnormal operands cost x86 cores a microcode assist each, and a unit silent for many
 * batches decays into that range. Weights of any practical size keep their bits: the step a
 * flushed value stood for is under 2^-126 * max(1, lr / (1 - beta1^step)) / eps, below half an
 * ulp of any weight above about 2^-75 for eps 1e-8. Other CPUs keep subnormals.
 */

/** Plain gradient descent: param -= lr * (grad + weight_decay * param). */
NERVE_API nerve_status nerve_sgd_step(nerve_context *ctx, float *param, const float *grad,
                                      int64_t n, float lr, float weight_decay);

/**
 * Momentum in the labs' form: v = momentum * v + lr * (grad + weight_decay * param);
 * param -= v. velocity[n] starts at zero and persists between steps.
 */
NERVE_API nerve_status nerve_momentum_step(nerve_context *ctx, float *param, float *velocity,
                                           const float *grad, int64_t n, float lr,
                                           float momentum, float weight_decay);

/** Nesterov momentum in the same form: v = momentum * v + lr * g; param -= momentum * v + lr * g
 *  (g including weight decay). */
NERVE_API nerve_status nerve_nesterov_step(nerve_context *ctx, float *param, float *velocity,
                                           const float *grad, int64_t n, float lr,
                                           float momentum, float weight_decay);

/**
 * Adam, and AdamW. With g = grad + weight_decay * param (coupled L2):
 *   param *= 1 - lr * decoupled_weight_decay          (AdamW's decoupled decay; 0 for Adam)
 *   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;
 *   param -= lr * (m / (1 - beta1^step)) / (sqrt(v / (1 - beta2^step)) + eps)
 * m and v start at zero; step counts from 1.
 */
NERVE_API nerve_status nerve_adam_step(nerve_context *ctx, float *param, float *m, float *v,
                                       const float *grad, int64_t n, float lr, float beta1,
                                       float beta2, float eps, float weight_decay,
                                       float decoupled_weight_decay, int64_t step);

/** RMSprop: s = rho s + (1 - rho) g^2; param -= lr * g / (sqrt(s) + eps). */
NERVE_API nerve_status nerve_rmsprop_step(nerve_context *ctx, float *param, float *mean_square,
                                          const float *grad, int64_t n, float lr, float rho,
                                          float eps, float weight_decay);

/**
 * Adadelta (Zeiler 2012): Eg = rho Eg + (1 - rho) g^2;
 * dx = sqrt(Ex + eps) / sqrt(Eg + eps) * g; Ex = rho Ex + (1 - rho) dx^2; param -= lr * dx
 * (lr 1.0 is the original method; Keras defaults to 0.001).
 */
NERVE_API nerve_status nerve_adadelta_step(nerve_context *ctx, float *param,
                                           float *mean_square_grad, float *mean_square_update,
                                           const float *grad, int64_t n, float lr, float rho,
                                           float eps, float weight_decay);

/* ---- Metrics ---------------------------------------------------------------------------- */

/** classes[N] = index of the largest score in each row of scores[N,C] (first one on ties). */
NERVE_API nerve_status nerve_argmax(nerve_context *ctx, int32_t *classes, const float *scores,
                                    int64_t N, int64_t C);

/** *correct = number of rows whose argmax equals labels[n] (labels in 0..C-1). */
NERVE_API nerve_status nerve_count_correct(nerve_context *ctx, int64_t *correct,
                                           const float *scores, const int32_t *labels,
                                           int64_t N, int64_t C);

/* ---- Convolution (conv.c) ----------------------------------------------------------------- */
/*
 * 2-D convolution (cross-correlation, as in every framework) on channels-last images, lowered
 * to GEMM through im2col in blocks of whole images. Output size for padding P_before and
 * P_after: OH = (H + PT + P_after - KH) / SH + 1; "same" padding with stride 1 and an odd kernel
 * is PT = (KH - 1) / 2. The padding after the image is implied by OH and OW.
 */

/** Bytes of workspace nerve_conv2d_forward/backward use for these sizes (for
 *  nerve_context_reserve); 0 for invalid sizes. Two lowered blocks of images: the backward
 *  takes both, the forward one per thread (with more than two threads it grows the workspace
 *  on its first call), and nerve_conv2d_forward_maxpool without `out` a block of output per
 *  thread besides. */
NERVE_API size_t nerve_conv2d_workspace_size(int64_t N, int64_t H, int64_t W, int64_t C,
                                             int64_t K, int64_t KH, int64_t KW, int64_t SH,
                                             int64_t SW, int64_t PT, int64_t PL, int64_t OH,
                                             int64_t OW);

/** out[N,OH,OW,K] = conv(in[N,H,W,C], weight[KH,KW,C,K]) + bias[K] (bias may be NULL). */
NERVE_API nerve_status nerve_conv2d_forward(nerve_context *ctx, float *out, const float *in,
                                            const float *weight, const float *bias, int64_t N,
                                            int64_t H, int64_t W, int64_t C, int64_t K,
                                            int64_t KH, int64_t KW, int64_t SH, int64_t SW,
                                            int64_t PT, int64_t PL, int64_t OH, int64_t OW);

/**
 * nerve_conv2d_forward followed by nerve_activation_forward(NERVE_ACTIVATION_RELU) on out in
 * place, each block of images taken through the ReLU while it is in cache: the two calls'
 * exact results without a second pass over out.
 */
NERVE_API nerve_status nerve_conv2d_forward_relu(nerve_context *ctx, float *out, const float *in,
                                                 const float *weight, const float *bias,
                                                 int64_t N, int64_t H, int64_t W, int64_t C,
                                                 int64_t K, int64_t KH, int64_t KW, int64_t SH,
                                                 int64_t SW, int64_t PT, int64_t PL, int64_t OH,
                                                 int64_t OW);

/**
 * nerve_conv2d_forward followed by nerve_maxpool2d_forward on its output, with each block of
 * images pooled while the convolution's output for it is still in cache (the two calls' exact
 * results, without a second pass over out):
 *   out[N,OH,OW,K]            as nerve_conv2d_forward writes it; may be NULL: then the
 *                             output is not kept (each block is pooled from the workspace and
 *                             never reaches memory; training needs only the pool's argmax)
 *   pooled, argmax [N,POH,POW,K]   as nerve_maxpool2d_forward(out) writes them
 * The pooling window is PH x PW with strides PSH, PSW and padding PPT, PPL before the image.
 */
NERVE_API nerve_status nerve_conv2d_forward_maxpool(
    nerve_context *ctx, float *out, float *pooled, int32_t *argmax, const float *in,
    const float *weight, const float *bias, int64_t N, int64_t H, int64_t W, int64_t C, int64_t K,
    int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PT, int64_t PL, int64_t OH, int64_t OW,
    int64_t PH, int64_t PW, int64_t PSH, int64_t PSW, int64_t PPT, int64_t PPL, int64_t POH,
    int64_t POW);

/**
 * Backward of nerve_conv2d_forward given dout[N,OH,OW,K]:
 *   din[N,H,W,C]          WRITTEN; skipped if NULL
 *   dweight[KH,KW,C,K]   ACCUMULATED; skipped if NULL
 *   dbias[K]             ACCUMULATED; skipped if NULL
 */
NERVE_API nerve_status nerve_conv2d_backward(nerve_context *ctx, float *din, float *dweight,
                                             float *dbias, const float *dout, const float *in,
                                             const float *weight, int64_t N, int64_t H,
                                             int64_t W, int64_t C, int64_t K, int64_t KH,
                                             int64_t KW, int64_t SH, int64_t SW, int64_t PT,
                                             int64_t PL, int64_t OH, int64_t OW);

/* Slices nerve_conv2d_backward_maxpool cuts a whole batch into, at most; so at most this many
 * threads share one call. (16 rather than 64: the fast recipe's accuracy over seeds 1-10 was
 * 99.02% mean with 16, 98.98% with 64, the earlier unsliced sums' 99.01%: noise either way,
 * but with 64 one seed of the first five fell below 98.9%.) */
#define NERVE_CONV_POOLED_SLICES 16

/* Images in each of nerve_conv2d_backward_maxpool's slices for a whole batch of `batch`
 * images: ceil(batch / NERVE_CONV_POOLED_SLICES), at least 1. */
NERVE_API int64_t nerve_conv2d_pooled_slice_images(int64_t batch);

/**
 * A first layer's weight and bias gradients through the max pool after it: what
 * nerve_maxpool2d_backward followed by nerve_conv2d_backward (din NULL) add, given the pool's
 * output gradient and argmax (dpooled, argmax [N,POH,POW,K], as nerve_conv2d_forward_maxpool
 * or nerve_maxpool2d_forward wrote them over the convolution's output [N,OH,OW,K]):
 *   dweight[KH,KW,C,K]   ACCUMULATED; skipped if NULL
 *   dbias[K]             ACCUMULATED; skipped if NULL
 * in [N,H,W,C] is read for dbias alone as well. Where the pool's windows tile the output
 * (strides PSH = PH and PSW = PW, no padding) and the convolution has at most 32 filters (with
 * AVX-512 or AVX2; padded windows read from a copy of a slice's images with their borders),
 * the convolution's output gradient is never written: its rows are
 * made from dpooled and argmax as the products take them, and the N images are cut into slices
 * of nerve_conv2d_pooled_slice_images(B) images from the first, B the whole batch
 * (nerve_context_set_whole_batch) or else N, each slice's sums from zero, added to dweight and
 * dbias slice after slice. So the threads share the images, and the bits depend neither on the
 * thread count nor on how a batch is split between calls (ranks' shares) as long as every call
 * but the last ends at a slice boundary; they differ from the two calls' in the last places.
 * Elsewhere it makes the two calls, the output gradient in the context's workspace.
 */
NERVE_API nerve_status nerve_conv2d_backward_maxpool(
    nerve_context *ctx, float *dweight, float *dbias, const float *dpooled, const int32_t *argmax,
    const float *in, int64_t N, int64_t H, int64_t W, int64_t C, int64_t K, int64_t KH, int64_t KW,
    int64_t SH, int64_t SW, int64_t PT, int64_t PL, int64_t OH, int64_t OW, int64_t PH, int64_t PW,
    int64_t PSH, int64_t PSW, int64_t PPT, int64_t PPL, int64_t POH, int64_t POW);

/* 1 if nerve_conv2d_backward_maxpool on ctx never writes the convolution's output gradient for
 * this geometry (its sizes as there; valid ones), 0 if it writes it to the context's workspace
 * (N * OH * OW * K floats, allocated on the call) or the geometry is refused. */
NERVE_API int nerve_conv2d_backward_maxpool_direct(const nerve_context *ctx, int64_t H, int64_t W,
                                                  int64_t C, int64_t K, int64_t KH, int64_t KW,
                                                  int64_t SH, int64_t SW, int64_t PT, int64_t PL,
                                                  int64_t OH, int64_t OW, int64_t PH, int64_t PW,
                                                  int64_t PSH, int64_t PSW, int64_t PPT,
                                                  int64_t PPL, int64_t POH, int64_t POW);

/**
 * A convolution's weight and bias gradients from its stored output gradient (din not made),
 * summed in nerve_conv2d_backward_maxpool's slices of images (each from zero, added slice after
 * slice, nerve_conv2d_pooled_slice_images of the whole batch or N) wherever that call makes its
 * rows itself for this geometry, otherwise as nerve_conv2d_backward sums them: the bits
 * nerve_conv2d_backward_maxpool and nerve_conv2d_backward_batchnorm_maxpool give for the same
 * output gradient, for a share of a batch that starts at a slice boundary (a rank's):
 *   dweight[KH,KW,C,K], dbias[K]   ACCUMULATED; each skipped if NULL
 * in [N,H,W,C] is read for dbias alone as well (the bias's sums come with the products').
 */
NERVE_API nerve_status nerve_conv2d_backward_sliced(nerve_context *ctx, float *dweight, float *dbias,
                                                    const float *dout, const float *in, int64_t N, int64_t H,
                                                    int64_t W, int64_t C, int64_t K, int64_t KH, int64_t KW,
                                                    int64_t SH, int64_t SW, int64_t PT, int64_t PL, int64_t OH,
                                                    int64_t OW);

/**
 * A first layer's gradients where a batch norm lies between it and a max pool (convolution,
 * optionally its ReLU, batch norm, pool): what nerve_batchnorm_backward_maxpool2d (over out,
 * the convolution's output [N,OH,OW,K] after its ReLU where relu is nonzero, the norm's input;
 * gamma and the saved statistics [K] as there) followed by nerve_conv2d_backward (din NULL)
 * add, without the norm's input gradient written:
 *   dgamma[K], dbeta[K]   ACCUMULATED, the same bits as that call's; each skipped if NULL
 *   dweight[KH,KW,C,K]    ACCUMULATED; skipped if NULL
 *   dbias[K]             ACCUMULATED; skipped if NULL
 * dpooled and argmax [N,POH,POW,K] as nerve_batchnorm_backward_maxpool2d takes them; its
 * windows must not overlap (NERVE_ERROR_BAD_ARGUMENT). in [N,H,W,C] is required even for the
 * norm's gradients alone. Where nerve_conv2d_backward_maxpool
 * would make the output gradient's rows as its products take them
 * (nerve_conv2d_backward_maxpool_direct), this makes the norm's input gradient so, in
 * the same slices (of the whole batch, nerve_context_set_whole_batch, or N) and with the bits
 * nerve_conv2d_backward_sliced gives from that gradient stored; elsewhere it makes the two
 * calls, the gradient in the context's workspace, with their bits.
 */
NERVE_API nerve_status nerve_conv2d_backward_batchnorm_maxpool(
    nerve_context *ctx, float *dweight, float *dbias, float *dgamma, float *dbeta, const float *dpooled,
    const int32_t *argmax, const float *out, const float *gamma, const float *saved_mean,
    const float *saved_invstd, int relu, const float *in, int64_t N, int64_t H, int64_t W, int64_t C,
    int64_t K, int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PT, int64_t PL, int64_t OH, int64_t OW,
    int64_t PH, int64_t PW, int64_t PSH, int64_t PSW, int64_t PPT, int64_t PPL, int64_t POH, int64_t POW);

/* ---- Pooling (pool.c) --------------------------------------------------------------------- */
/*
 * Windows PH x PW with strides SH, SW over channels-last images; padding (PT, PL before the
 * image) never wins a max and is not counted in an average.
 */

/** out[N,OH,OW,C] = window maxima; argmax[N,OH,OW,C] = winning input position ih*W + iw (the
 *  first in scan order on ties), kept for the backward pass. */
NERVE_API nerve_status nerve_maxpool2d_forward(nerve_context *ctx, float *out, int32_t *argmax,
                                               const float *in, int64_t N, int64_t H, int64_t W,
                                               int64_t C, int64_t PH, int64_t PW, int64_t SH,
                                               int64_t SW, int64_t PT, int64_t PL, int64_t OH,
                                               int64_t OW);

/** din[N,H,W,C] (WRITTEN) = dout routed to each window's winning input (summed where windows
 *  overlap). */
NERVE_API nerve_status nerve_maxpool2d_backward(nerve_context *ctx, float *din, const float *dout,
                                                const int32_t *argmax, int64_t N, int64_t H,
                                                int64_t W, int64_t C, int64_t PH, int64_t PW,
                                                int64_t SH, int64_t SW, int64_t PT, int64_t PL,
                                                int64_t OH, int64_t OW);

/**
 * nerve_maxpool2d_forward of batch-normalised images: each input value is first taken to
 * (x - mean[c]) * invstd[c] * gamma[c] + beta[c], as nerve_batchnorm_forward_train and
 * _infer compute it, so the same bits as normalising into a map and pooling that, without
 * the map. mean, invstd, gamma, beta [C] (training: the saved_mean and saved_invstd that
 * nerve_batchnorm_forward_train wrote with out NULL).
 */
NERVE_API nerve_status nerve_maxpool2d_forward_normalized(
    nerve_context *ctx, float *out, int32_t *argmax, const float *in, const float *mean,
    const float *invstd, const float *gamma, const float *beta, int64_t N, int64_t H, int64_t W,
    int64_t C, int64_t PH, int64_t PW, int64_t SH, int64_t SW, int64_t PT, int64_t PL, int64_t OH,
    int64_t OW);

/** out[N,OH,OW,C] = mean of each window's in-image inputs. */
NERVE_API nerve_status nerve_avgpool2d_forward(nerve_context *ctx, float *out, const float *in,
                                               int64_t N, int64_t H, int64_t W, int64_t C,
                                               int64_t PH, int64_t PW, int64_t SH, int64_t SW,
                                               int64_t PT, int64_t PL, int64_t OH, int64_t OW);

/** din[N,H,W,C] (WRITTEN) = each window's dout shared equally among its in-image inputs. */
NERVE_API nerve_status nerve_avgpool2d_backward(nerve_context *ctx, float *din, const float *dout,
                                                int64_t N, int64_t H, int64_t W, int64_t C,
                                                int64_t PH, int64_t PW, int64_t SH, int64_t SW,
                                                int64_t PT, int64_t PL, int64_t OH, int64_t OW);

/* ---- Batch normalisation (norm.c) --------------------------------------------------------- */
/*
 * Per column of in[R,C]: R rows are the batch (dense) or batch * H * W (channels-last images),
 * C the features or channels. y = gamma * (x - mean) / sqrt(var + eps) + beta.
 */

/**
 * Training: normalises with the batch mean and biased variance, writes them as saved_mean and
 * saved_invstd = 1/sqrt(var + eps) for the backward pass, and updates running averages
 * Keras's way: running = momentum * running + (1 - momentum) * batch value (the running
 * variance takes the unbiased variance). momentum in [0, 1] (0.99 in Keras), eps > 0.
 * out may be NULL: the statistics only, for a max pool that normalises as it reads
 * (nerve_maxpool2d_forward_normalized).
 */
NERVE_API nerve_status nerve_batchnorm_forward_train(nerve_context *ctx, float *out,
                                                     float *saved_mean, float *saved_invstd,
                                                     float *running_mean, float *running_var,
                                                     const float *in, const float *gamma,
                                                     const float *beta, int64_t R, int64_t C,
                                                     float momentum, float eps);

/** Inference: normalises with running_mean and running_var. out may be in (in place). */
NERVE_API nerve_status nerve_batchnorm_forward_infer(nerve_context *ctx, float *out,
                                                     const float *in, const float *gamma,
                                                     const float *beta,
                                                     const float *running_mean,
                                                     const float *running_var, int64_t R,
                                                     int64_t C, float eps);

/**
 * Backward of the training forward: din[R,C] WRITTEN (skipped if NULL), dgamma[C] and
 * dbeta[C] ACCUMULATED (each skipped if NULL).
 */
NERVE_API nerve_status nerve_batchnorm_backward(nerve_context *ctx, float *din, float *dgamma,
                                                float *dbeta, const float *dout, const float *in,
                                                const float *gamma, const float *saved_mean,
                                                const float *saved_invstd, int64_t R, int64_t C);

/**
 * nerve_batchnorm_backward for a layer after a ReLU, whose output is `in`: din is also taken
 * through the ReLU (zero where in <= 0), in the same pass. The same bits as
 * nerve_batchnorm_backward followed by nerve_activation_backward(NERVE_ACTIVATION_RELU) with
 * `in` as its output, without writing and reading the gradient between them.
 */
NERVE_API nerve_status nerve_batchnorm_backward_relu(nerve_context *ctx, float *din,
                                                     float *dgamma, float *dbeta,
                                                     const float *dout, const float *in,
                                                     const float *gamma,
                                                     const float *saved_mean,
                                                     const float *saved_invstd, int64_t R,
                                                     int64_t C);

/**
 * nerve_batchnorm_backward for images in[N,H,W,C] (R = N*H*W) whose normalised output a max
 * pool read: dout is given as that pool's gradient dpooled[N,OH,OW,C] and its argmax (the
 * pool's window arguments as nerve_maxpool2d_backward takes them), so the gradient between
 * them is never written. relu nonzero: din also through the ReLU before the layer, as
 * nerve_batchnorm_backward_relu. The same bits as nerve_maxpool2d_backward followed by
 * nerve_batchnorm_backward (or _relu). Windows must not overlap (stride >= window, as in the
 * usual 2x2 pool); overlapping ones are refused (NERVE_ERROR_BAD_ARGUMENT).
 */
NERVE_API nerve_status nerve_batchnorm_backward_maxpool2d(
    nerve_context *ctx, float *din, float *dgamma, float *dbeta, const float *dpooled,
    const int32_t *argmax, const float *in, const float *gamma, const float *saved_mean,
    const float *saved_invstd, int64_t N, int64_t H, int64_t W, int64_t C, int64_t PH, int64_t PW,
    int64_t SH, int64_t SW, int64_t PT, int64_t PL, int64_t OH, int64_t OW, int relu);

/* ---- Dropout (dropout.c) ------------------------------------------------------------------ */

/**
 * Inverted dropout with Keras's meaning of rate (the fraction dropped), 0 <= rate < 1:
 * mask[i] = 0 or 1/(1 - rate), out = in * mask. The choice for element i is a hash of
 * (seed, i): reproducible, and the same for any thread count.
 */
NERVE_API nerve_status nerve_dropout_forward(nerve_context *ctx, float *out, float *mask,
                                             const float *in, int64_t n, float rate,
                                             uint64_t seed);

/**
 * nerve_dropout_forward for elements first .. first + n - 1 of a larger array: element i here
 * gets the choice of element first + i there. A batch split into parts (chunks of a step,
 * ranks of a data-parallel run) thus draws the mask the whole batch would. first >= 0.
 */
NERVE_API nerve_status nerve_dropout_forward_at(nerve_context *ctx, float *out, float *mask,
                                                const float *in, int64_t n, float rate,
                                                uint64_t seed, int64_t first);

/** din = dout * mask (WRITTEN; din may equal dout). */
NERVE_API nerve_status nerve_dropout_backward(nerve_context *ctx, float *din, const float *dout,
                                              const float *mask, int64_t n);

/* ---- Pixels (pixels.c) -------------------------------------------------------------------- */

/** out[n] = scale * in[n]: 8-bit pixels (as MNIST's and other image files store them) to floats;
 *  scale is finite (1/255 gives [0, 1]). Threads share the elements, and with them the page
 *  faults of a freshly allocated out. */
NERVE_API nerve_status nerve_pixels_to_floats(nerve_context *ctx, float *out, const uint8_t *in,
                                              int64_t n, float scale);

/* ---- Rows (rows.c) ----------------------------------------------------------------------- */

/** out[r, :] = in[rows[r], :] for r < count: rows of in [in_rows, width] gathered in the order
 *  rows gives (a shuffled batch from a data set), each index checked to lie in [0, in_rows)
 *  before anything is copied (else NERVE_ERROR_BAD_ARGUMENT). out [count, width] must not
 *  overlap in or rows. Threads share the rows, and each asks for the rows it copies next ahead
 *  of time. */
NERVE_API nerve_status nerve_rows_gather(nerve_context *ctx, float *out, const float *in,
                                         const int64_t *rows, int64_t in_rows, int64_t width,
                                         int64_t count);

/* ---- Reductions ------------------------------------------------------------------------- */

/** *out = sum of x[i]^2 over n elements, in double, in a fixed order (L2 penalties, norms). */
NERVE_API nerve_status nerve_sum_squares(nerve_context *ctx, double *out, const float *x,
                                         int64_t n);

/** *out = sum of |x[i]| over n elements, in double, in a fixed order. */
NERVE_API nerve_status nerve_sum_abs(nerve_context *ctx, double *out, const float *x, int64_t n);

#ifdef __cplusplus
}
#endif

#endif /* NERVE_H */
