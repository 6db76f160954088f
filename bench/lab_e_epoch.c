/*
 * lab_e_epoch.c: one whole Lab E epoch through libnerve's C API, on MNIST's first 50,000
 * training images in a shuffled order (the trainer's 1,563 steps of 32), every parameter
 * trained by Adam as the trainer trains it: the time each call took over the epoch, and the
 * epoch's. Where lab_e_step.c times one step on made-up data, this one meets what an epoch
 * meets: units that fall silent and stay so, moments that decay, and the data's own zeros. With
 * `random`, uniform random pixels in place of the images: most units fall silent, the case that
 * found the subnormal Adam moments (include/nerve.h, the optimizer steps). To compare builds
 * of the library, such as gcc's (CMake's) and clang's (what SwiftPM, and so the nerve CLI,
 * compiles): point LD_LIBRARY_PATH at another build's directory.
 *
 *   cmake -S . -B .build-cmake && cmake --build .build-cmake
 *   cc -O2 bench/lab_e_epoch.c -Iinclude -L.build-cmake -lnerve -lz -lm \
 *     -Wl,-rpath,$PWD/.build-cmake -o .build-cmake/lab_e_epoch && .build-cmake/lab_e_epoch 2 [random]
 *   CC=clang cmake -S . -B .build-clang -DCMAKE_C_FLAGS_RELEASE="-O2 -g -fno-omit-frame-pointer" \
 *     && cmake --build .build-clang --target nerve                   # SwiftPM's flags
 *   LD_LIBRARY_PATH=$PWD/.build-clang .build-cmake/lab_e_epoch 2
 */
#include "bench_mnist.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum { IMAGES = 50000, N = 32, PIXELS = 784, FILTERS = 32, I = 6272, O = 784, CLASSES = 10, CALLS = 13 };

static const char *names[CALLS] = {
    "batch (bytes to floats)", "conv + relu forward", "batch norm forward", "max pool (+ norm) forward",
    "dense 1 + relu forward", "dense 2 forward", "softmax cross-entropy", "dense 2 backward + Adam",
    "relu backward", "dense 1 backward + Adam", "batch norm + pool backward", "conv backward",
    "Adam on conv and norm"};
static double seconds[CALLS];

#define TIMED(i, call) BENCH_TIMED(ctx, names[i], seconds[i], call)

static uint64_t state = 88172645463325252ull;
static uint64_t next_random(void) { /* xorshift64 */
  state ^= state << 13, state ^= state >> 7, state ^= state << 17;
  return state;
}
static double unit_random(void) { return (double)(next_random() >> 11) * (1.0 / 9007199254740992.0); }

/* n Glorot-normal weights for a layer of fan_in inputs and fan_out outputs (Box-Muller). */
static float *glorot(long fan_in, long fan_out, long n) {
  float *p = floats(n, 0);
  const double sd = sqrt(2.0 / (double)(fan_in + fan_out));
  for (long i = 0; i < n; i++) p[i] = (float)(sd * sqrt(-2.0 * log(unit_random() + 1e-300)) * cos(6.283185307179586 * unit_random()));
  return p;
}

int main(int argc, char **argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 2;
  const int random_pixels = argc > 2 && strcmp(argv[2], "random") == 0;
  unsigned char *images = idx_bytes("Data/mnist/train-images-idx3-ubyte.gz", 16, (long)IMAGES * PIXELS);
  const unsigned char *labels = idx_bytes("Data/mnist/train-labels-idx1-ubyte.gz", 8, IMAGES);
  if (random_pixels)
    for (long i = 0; i < (long)IMAGES * PIXELS; i++) images[i] = (unsigned char)next_random();
  nerve_context *ctx = bench_context(threads);
  if (!ctx) return 1;
  if (nerve_context_reserve(ctx, nerve_conv2d_workspace_size(N, 28, 28, 1, FILTERS, 3, 3, 1, 1, 1, 1, 28, 28)) != NERVE_OK)
    return 1;
  const long F = (long)N * PIXELS * FILTERS;
  float *x = floats(N * PIXELS, 0), *target = floats(N * CLASSES, 0), *act = floats(F, 0), *dconv = floats(F, 0);
  /* Parameters, then their gradients and Adam's moments, in the trainer's groups. */
  float *conv = glorot(9, 9 * FILTERS, 9 * FILTERS + FILTERS), *norm = floats(2 * FILTERS, 0);
  for (int c = 0; c < FILTERS; c++) conv[9 * FILTERS + c] = 0.0f, norm[c] = 1.0f; /* bias 0; gamma 1, beta 0 */
  float *dconvp = floats(9 * FILTERS + FILTERS, 0), *dnorm = floats(2 * FILTERS, 0);
  float *conv_m = floats(9 * FILTERS + FILTERS, 0), *conv_v = floats(9 * FILTERS + FILTERS, 0);
  float *norm_m = floats(2 * FILTERS, 0), *norm_v = floats(2 * FILTERS, 0);
  float *mean = floats(FILTERS, 0), *invstd = floats(FILTERS, 0), *rmean = floats(FILTERS, 0), *rvar = floats(FILTERS, 0);
  for (int c = 0; c < FILTERS; c++) rvar[c] = 1.0f;
  float *pooled = floats(N * I, 0), *dpooled = floats(N * I, 0);
  int32_t *argmax = nerve_alloc((size_t)N * I * sizeof(int32_t));
  float *w1 = glorot(I, O, (long)I * O), *b1 = floats(O, 0), *m1 = floats((long)I * O, 0), *v1 = floats((long)I * O, 0);
  float *bm1 = floats(O, 0), *bv1 = floats(O, 0), *h = floats(N * O, 0), *dh = floats(N * O, 0);
  float *w2 = glorot(O, CLASSES, O * CLASSES), *b2 = floats(CLASSES, 0), *m2 = floats(O * CLASSES, 0);
  float *v2 = floats(O * CLASSES, 0), *bm2 = floats(CLASSES, 0), *bv2 = floats(CLASSES, 0);
  float *logits = floats(N * CLASSES, 0), *dlogits = floats(N * CLASSES, 0);
  long *order = malloc(IMAGES * sizeof(long));
  if (!argmax || !order) return 1;
  for (long i = 0; i < IMAGES; i++) order[i] = i;
  for (long i = IMAGES - 1; i > 0; i--) { /* Fisher-Yates */
    const long j = (long)(next_random() % (uint64_t)(i + 1)), t = order[i];
    order[i] = order[j], order[j] = t;
  }
  const float lr = 1e-4f, b1r = 0.9f, b2r = 0.999f, eps = 1e-7f;
  double loss_sum = 0.0, loss = 0.0;
  int64_t step = 0;
  const double started = now();
  for (long first = 0; first < IMAGES; first += N) {
    const long n = IMAGES - first < N ? IMAGES - first : N;
    step++;
    /* The convolution's and the norm's backward add into their gradients, as the trainer's
     * zeroed buffers each step expect. */
    memset(dconvp, 0, sizeof(float) * (9 * FILTERS + FILTERS));
    memset(dnorm, 0, sizeof(float) * 2 * FILTERS);
    const double t0 = now();
    for (long r = 0; r < n; r++) {
      const unsigned char *image = images + order[first + r] * PIXELS;
      for (int k = 0; k < PIXELS; k++) x[r * PIXELS + k] = (float)image[k] * (1.0f / 255.0f);
      for (int c = 0; c < CLASSES; c++) target[r * CLASSES + c] = c == labels[order[first + r]] ? 1.0f : 0.0f;
    }
    seconds[0] += now() - t0;
    TIMED(1, nerve_conv2d_forward_relu(ctx, act, x, conv, conv + 9 * FILTERS, n, 28, 28, 1, FILTERS, 3, 3, 1, 1, 1, 1, 28, 28));
    TIMED(2, nerve_batchnorm_forward_train(ctx, NULL, mean, invstd, rmean, rvar, act, norm, norm + FILTERS,
                                           n * PIXELS, FILTERS, 0.99f, 1e-3f));
    TIMED(3, nerve_maxpool2d_forward_normalized(ctx, pooled, argmax, act, mean, invstd, norm, norm + FILTERS, n, 28, 28,
                                                FILTERS, 2, 2, 2, 2, 0, 0, 14, 14));
    TIMED(4, nerve_dense_forward_activation(ctx, NERVE_ACTIVATION_RELU, h, pooled, w1, b1, n, I, O));
    TIMED(5, nerve_dense_forward(ctx, logits, h, w2, b2, n, O, CLASSES));
    TIMED(6, nerve_loss_softmax_cross_entropy(ctx, &loss, dlogits, NULL, logits, target, n, CLASSES, n));
    loss_sum += loss;
    TIMED(7, nerve_dense_backward_adam(ctx, dh, w2, b2, m2, v2, bm2, bv2, dlogits, h, n, O, CLASSES, lr, b1r, b2r, eps,
                                       0.0f, 0.0f, step));
    TIMED(8, nerve_activation_backward(ctx, NERVE_ACTIVATION_RELU, dh, dh, h, h, n * O));
    TIMED(9, nerve_dense_backward_adam(ctx, dpooled, w1, b1, m1, v1, bm1, bv1, dh, pooled, n, I, O, lr, b1r, b2r, eps,
                                       0.0f, 0.0f, step));
    TIMED(10, nerve_batchnorm_backward_maxpool2d(ctx, dconv, dnorm, dnorm + FILTERS, dpooled, argmax, act, norm, mean,
                                                 invstd, n, 28, 28, FILTERS, 2, 2, 2, 2, 0, 0, 14, 14, 1));
    TIMED(11, nerve_conv2d_backward(ctx, NULL, dconvp, dconvp + 9 * FILTERS, dconv, x, conv, n, 28, 28, 1, FILTERS, 3,
                                    3, 1, 1, 1, 1, 28, 28));
    TIMED(12, nerve_adam_step(ctx, conv, conv_m, conv_v, dconvp, 9 * FILTERS + FILTERS, lr, b1r, b2r, eps, 0, 0, step));
    TIMED(12, nerve_adam_step(ctx, norm, norm_m, norm_v, dnorm, 2 * FILTERS, lr, b1r, b2r, eps, 0, 0, step));
  }
  const double epoch = now() - started;
  printf("%d thread(s), one Lab E epoch of %d %s in %lld steps of %d, seconds over the epoch (ms a step):\n", threads,
         IMAGES, random_pixels ? "random images" : "MNIST images", (long long)step, N);
  for (int i = 0; i < CALLS; i++) printf("  %-28s %7.3f s (%6.3f ms)\n", names[i], seconds[i], seconds[i] * 1e3 / (double)step);
  printf("  epoch %.3f s; mean training loss %.4f\n", epoch, loss_sum / (double)step);
  nerve_context_free(ctx);
  return 0;
}
