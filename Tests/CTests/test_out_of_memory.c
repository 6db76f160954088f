/*
 * test_out_of_memory.c: a call that runs out of memory changes nothing either. Kernels that
 * need workspace reserve all of it before their first write; here every allocation such a call
 * makes is failed in turn (on a fresh context, so each one is really made), and the call must
 * then return NERVE_ERROR_OUT_OF_MEMORY with a message naming it and leave every buffer as it
 * was. Shapes are chosen so that each kernel's every workspace is needed (packing and padded
 * copies in the AVX-512 products, lowered blocks, batch-norm partial sums), on every
 * instruction set this CPU has.
 *
 * libnerve allocates through posix_memalign (nerve_alloc); the definition below takes the place
 * of the C library's for the shared library, and fails the chosen call made from libnerve.
 * Linux with glibc only (dlsym(RTLD_NEXT), dladdr).
 */
#define _GNU_SOURCE
#include <nerve.h>

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int calls = 0, fail_at = 0, failures = 0;

/* Whether the code at `address` belongs to libnerve. */
static int in_libnerve(const void *address) {
  Dl_info info;
  return dladdr(address, &info) && info.dli_fname && strstr(info.dli_fname, "libnerve") != NULL;
}

int posix_memalign(void **out, size_t alignment, size_t bytes) {
  static int (*next)(void **, size_t, size_t);
  if (!next) next = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
  if (in_libnerve(__builtin_return_address(0)) && ++calls == fail_at) return ENOMEM;
  return next(out, alignment, bytes);
}

#define TEST_ARENA_FLOATS (1 << 17)
#include "test_arena.h"

/* Uniform values in [0.05, 1.05): positive, so they serve as variances and moments too. */
static void fill_arena(void) {
  fill_arena_uniform(777, 0.05f);
  memcpy(before, arena, sizeof arena);
}

/* The call under test, on a context. */
typedef nerve_status (*call_fn)(nerve_context *ctx);

/* Buffers and shapes the calls share (set up in main). */
static float *x, *w, *b, *m, *v, *bm, *bv, *dy, *dx, *dw, *db;
static float *img, *cw, *cb, *cy, *cdy, *cdx, *cdw, *cdb;
static float *bn_x, *bn_y, *gamma, *beta, *smean, *sinv, *rmean, *rvar, *bn_dy, *bn_dx, *dgamma, *dbeta;
/* Dense: more rows than the AVX-512 products read by dot products, widths that are not whole
 * vectors (padded copies); 300 rows is past the fused Adam step's limit, 20 and 100 within it
 * (100: its input gradient one product, with a packed weight, before the fused tiles). */
enum { N = 300, I = 37, O = 29, FEW = 20, FUSED_MANY = 100 };
/* Convolution: 5 images of 12x12x3, 5 filters; every block of rows is larger than 64. */
enum { CN = 5, H = 12, W = 12, C = 3, K = 5 };
/* Batch norm: 700 rows (several chunks of partial sums) of 7 columns. */
enum { R = 700, BC = 7 };

static nerve_status dense_backward(nerve_context *ctx) { return nerve_dense_backward(ctx, dx, dw, db, dy, x, w, N, I, O); }
static nerve_status dense_backward_sgd(nerve_context *ctx) { return nerve_dense_backward_sgd(ctx, dx, w, b, dy, x, N, I, O, 0.1f); }
static nerve_status dense_forward_activation(nerve_context *ctx) {
  return nerve_dense_forward_activation(ctx, NERVE_ACTIVATION_SIGMOID, dy, x, w, b, N, I, O);
}
static nerve_status dense_backward_activation(nerve_context *ctx) {
  return nerve_dense_backward_activation(ctx, NERVE_ACTIVATION_TANH, dx, dw, db, dy, x, w, N, I, O);
}
static nerve_status dense_backward_sgd_activation(nerve_context *ctx) {
  return nerve_dense_backward_sgd_activation(ctx, NERVE_ACTIVATION_RELU, dx, w, b, dy, x, N, I, O, 0.1f);
}
static nerve_status adam(nerve_context *ctx, int64_t rows) {
  return nerve_dense_backward_adam(ctx, dx, w, b, m, v, bm, bv, dy, x, rows, I, O, 0.01f, 0.9f, 0.999f, 1e-7f, 0.0f, 0.01f, 2);
}
static nerve_status dense_backward_adam(nerve_context *ctx) { return adam(ctx, N); }
static nerve_status dense_backward_adam_fused(nerve_context *ctx) { return adam(ctx, FEW); }
static nerve_status dense_backward_adam_fused_product(nerve_context *ctx) { return adam(ctx, FUSED_MANY); }
static nerve_status conv2d_forward(nerve_context *ctx) {
  return nerve_conv2d_forward(ctx, cy, img, cw, cb, CN, H, W, C, K, 3, 3, 1, 1, 1, 1, H, W);
}
static nerve_status conv2d_forward_relu(nerve_context *ctx) {
  return nerve_conv2d_forward_relu(ctx, cy, img, cw, cb, CN, H, W, C, K, 3, 3, 1, 1, 1, 1, H, W);
}
static nerve_status conv2d_backward(nerve_context *ctx) {
  return nerve_conv2d_backward(ctx, cdx, cdw, cdb, cdy, img, cw, CN, H, W, C, K, 3, 3, 1, 1, 1, 1, H, W);
}
static nerve_status conv2d_backward_pointwise(nerve_context *ctx) {
  return nerve_conv2d_backward(ctx, cdx, cdw, cdb, cdy, img, cw, CN, H, W, C, K, 1, 1, 1, 1, 0, 0, H, W);
}
static nerve_status batchnorm_forward_train(nerve_context *ctx) {
  return nerve_batchnorm_forward_train(ctx, bn_y, smean, sinv, rmean, rvar, bn_x, gamma, beta, R, BC, 0.9f, 1e-3f);
}
static nerve_status batchnorm_forward_infer(nerve_context *ctx) {
  return nerve_batchnorm_forward_infer(ctx, bn_y, bn_x, gamma, beta, rmean, rvar, R, BC, 1e-3f);
}
static nerve_status batchnorm_backward(nerve_context *ctx) {
  return nerve_batchnorm_backward(ctx, bn_dx, dgamma, dbeta, bn_dy, bn_x, gamma, smean, sinv, R, BC);
}
static nerve_status batchnorm_backward_relu(nerve_context *ctx) {
  return nerve_batchnorm_backward_relu(ctx, bn_dx, dgamma, dbeta, bn_dy, bn_x, gamma, smean, sinv, R, BC);
}
/* A convolution's parameter gradients from its max pool's (2x2): padded, 12x12 outputs pooled
 * into 6x6 (the output gradient never written, the padded windows read from a copy of each
 * slice's images, with AVX-512 or AVX2; the two calls otherwise); unpadded, 10x10 into 5x5 (the
 * output gradient never written). cdy's first values as the pool's gradient, the argmax some
 * pixel of each window. With a batch norm between them (the norm's input cy, its buffers of
 * BC >= K channels): the norm's sums, then the products, or the two calls. */
static int32_t conv_argmax[2][CN * 6 * 6 * K];
static nerve_status conv2d_backward_maxpool(nerve_context *ctx) {
  return nerve_conv2d_backward_maxpool(ctx, cdw, cdb, cdy, conv_argmax[0], img, CN, H, W, C, K, 3, 3, 1, 1, 1, 1, H, W,
                                       2, 2, 2, 2, 0, 0, 6, 6);
}
static nerve_status conv2d_backward_maxpool_unpadded(nerve_context *ctx) {
  return nerve_conv2d_backward_maxpool(ctx, cdw, cdb, cdy, conv_argmax[1], img, CN, H, W, C, K, 3, 3, 1, 1, 0, 0, 10, 10,
                                       2, 2, 2, 2, 0, 0, 5, 5);
}
static nerve_status conv2d_backward_batchnorm_maxpool(nerve_context *ctx) {
  return nerve_conv2d_backward_batchnorm_maxpool(ctx, cdw, cdb, dgamma, dbeta, cdy, conv_argmax[0], cy, gamma, smean, sinv,
                                                 1, img, CN, H, W, C, K, 3, 3, 1, 1, 1, 1, H, W, 2, 2, 2, 2, 0, 0, 6, 6);
}
static nerve_status conv2d_backward_batchnorm_maxpool_unpadded(nerve_context *ctx) {
  return nerve_conv2d_backward_batchnorm_maxpool(ctx, cdw, cdb, dgamma, dbeta, cdy, conv_argmax[1], cy, gamma, smean, sinv,
                                                 0, img, CN, H, W, C, K, 3, 3, 1, 1, 0, 0, 10, 10, 2, 2, 2, 2, 0, 0, 5, 5);
}
static nerve_status conv2d_backward_sliced(nerve_context *ctx) {
  return nerve_conv2d_backward_sliced(ctx, cdw, cdb, cdy, img, CN, H, W, C, K, 3, 3, 1, 1, 1, 1, H, W);
}
static void fill_conv_argmax(int32_t *argmax, int pooled, int width) {
  for (int o = 0; o < CN * pooled * pooled; o++)
    for (int c = 0; c < K; c++)
      argmax[o * K + c] = (2 * (o / pooled % pooled) + c % 2) * width + 2 * (o % pooled) + c / 2 % 2;
}

/* The batch norm rows as 7 images of 10x10 (700 rows), pooled 2x2 into 5x5 (bn_dy's first
 * 175 rows as the pool's gradient, its argmax some position of each window). */
static int32_t bn_argmax[7 * 5 * 5 * BC];
static nerve_status batchnorm_backward_maxpool2d(nerve_context *ctx) {
  return nerve_batchnorm_backward_maxpool2d(ctx, bn_dx, dgamma, dbeta, bn_dy, bn_argmax, bn_x, gamma, smean, sinv, 7, 10, 10,
                                            BC, 2, 2, 2, 2, 0, 0, 5, 5, 1);
}

/* Fails each allocation `call` makes on a fresh context of instruction set `isa`, in turn;
 * returns how many allocations it makes. */
static int check(const char *function, const char *label, call_fn call, nerve_isa isa) {
  int allocations = 0;
  for (int k = 0; k <= allocations; k++) {
    nerve_context *ctx = NULL;
    if (nerve_context_create(&ctx, 1) != NERVE_OK || nerve_context_set_isa(ctx, isa) != NERVE_OK) {
      failures++;
      fprintf(stderr, "no context for instruction set %d\n", (int)isa);
      nerve_context_free(ctx);
      return 0;
    }
    memcpy(arena, before, sizeof arena);
    calls = 0;
    fail_at = k; /* 0: none fails, counting the allocations */
    nerve_status s = call(ctx);
    fail_at = 0;
    if (k == 0) {
      allocations = calls;
      if (s != NERVE_OK) {
        failures++;
        fprintf(stderr, "%s: the valid call failed: %s\n", label, nerve_context_last_error(ctx));
      }
    } else {
      const char *message = nerve_context_last_error(ctx);
      if (s != NERVE_ERROR_OUT_OF_MEMORY) {
        failures++;
        fprintf(stderr, "%s (isa %d, allocation %d failed): %s, expected out of memory\n", label, (int)isa, k,
                nerve_status_string(s));
      } else if (strncmp(message, function, strlen(function)) != 0 || message[strlen(function)] != ':') {
        failures++;
        fprintf(stderr, "%s (isa %d): message '%s' does not name %s\n", label, (int)isa, message, function);
      }
      if (memcmp(arena, before, sizeof arena) != 0) {
        failures++;
        fprintf(stderr, "%s (isa %d): allocation %d of %d failed, but the buffers changed\n", label, (int)isa, k,
                allocations);
      }
    }
    nerve_context_free(ctx);
  }
  return allocations;
}

int main(void) {
  x = buffer(N * I), w = buffer(I * O), b = buffer(O), m = buffer(I * O), v = buffer(I * O);
  bm = buffer(O), bv = buffer(O), dy = buffer(N * O), dx = buffer(N * I), dw = buffer(I * O), db = buffer(O);
  img = buffer(CN * H * W * C), cw = buffer(9 * C * K), cb = buffer(K), cy = buffer(CN * H * W * K);
  cdy = buffer(CN * H * W * K), cdx = buffer(CN * H * W * C), cdw = buffer(9 * C * K), cdb = buffer(K);
  bn_x = buffer(R * BC), bn_y = buffer(R * BC), gamma = buffer(BC), beta = buffer(BC), smean = buffer(BC);
  sinv = buffer(BC), rmean = buffer(BC), rvar = buffer(BC), bn_dy = buffer(R * BC), bn_dx = buffer(R * BC);
  for (int o = 0; o < 7 * 5 * 5; o++)
    for (int c = 0; c < BC; c++) bn_argmax[o * BC + c] = (2 * (o / 5 % 5) + c % 2) * 10 + 2 * (o % 5) + c / 2 % 2;
  dgamma = buffer(BC), dbeta = buffer(BC);
  fill_conv_argmax(conv_argmax[0], 6, 12);
  fill_conv_argmax(conv_argmax[1], 5, 10);
  fill_arena();

  const struct {
    const char *function, *label;
    call_fn call;
  } cases[] = {
      {"nerve_dense_backward", "nerve_dense_backward", dense_backward},
      {"nerve_dense_backward_sgd", "nerve_dense_backward_sgd", dense_backward_sgd},
      {"nerve_dense_forward_activation", "nerve_dense_forward_activation", dense_forward_activation},
      {"nerve_dense_backward_activation", "nerve_dense_backward_activation", dense_backward_activation},
      {"nerve_dense_backward_sgd_activation", "nerve_dense_backward_sgd_activation", dense_backward_sgd_activation},
      {"nerve_dense_backward_adam", "nerve_dense_backward_adam (300 rows)", dense_backward_adam},
      {"nerve_dense_backward_adam", "nerve_dense_backward_adam (20 rows)", dense_backward_adam_fused},
      {"nerve_dense_backward_adam", "nerve_dense_backward_adam (100 rows)", dense_backward_adam_fused_product},
      {"nerve_conv2d_forward", "nerve_conv2d_forward", conv2d_forward},
      {"nerve_conv2d_forward_relu", "nerve_conv2d_forward_relu", conv2d_forward_relu},
      {"nerve_conv2d_backward", "nerve_conv2d_backward (3x3)", conv2d_backward},
      {"nerve_conv2d_backward", "nerve_conv2d_backward (1x1)", conv2d_backward_pointwise},
      {"nerve_conv2d_backward_maxpool", "nerve_conv2d_backward_maxpool (padded)", conv2d_backward_maxpool},
      {"nerve_conv2d_backward_maxpool", "nerve_conv2d_backward_maxpool (unpadded)", conv2d_backward_maxpool_unpadded},
      {"nerve_conv2d_backward_batchnorm_maxpool", "nerve_conv2d_backward_batchnorm_maxpool (padded)",
       conv2d_backward_batchnorm_maxpool},
      {"nerve_conv2d_backward_batchnorm_maxpool", "nerve_conv2d_backward_batchnorm_maxpool (unpadded)",
       conv2d_backward_batchnorm_maxpool_unpadded},
      {"nerve_conv2d_backward_sliced", "nerve_conv2d_backward_sliced", conv2d_backward_sliced},
      {"nerve_batchnorm_forward_train", "nerve_batchnorm_forward_train", batchnorm_forward_train},
      {"nerve_batchnorm_forward_infer", "nerve_batchnorm_forward_infer", batchnorm_forward_infer},
      {"nerve_batchnorm_backward", "nerve_batchnorm_backward", batchnorm_backward},
      {"nerve_batchnorm_backward_relu", "nerve_batchnorm_backward_relu", batchnorm_backward_relu},
      {"nerve_batchnorm_backward_maxpool2d", "nerve_batchnorm_backward_maxpool2d", batchnorm_backward_maxpool2d},
  };
  nerve_context *probe = NULL;
  if (nerve_context_create(&probe, 1) != NERVE_OK) return 1;
  const nerve_isa best = nerve_context_isa(probe);
  nerve_context_free(probe);
  int failed_allocations = 0;
  for (int isa = NERVE_ISA_BASELINE; isa <= (int)best; isa++)
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
      int n = check(cases[i].function, cases[i].label, cases[i].call, (nerve_isa)isa);
      printf("isa %d  %-40s %d allocation(s)\n", isa, cases[i].label, n);
      failed_allocations += n;
    }
  if (failed_allocations == 0) {
    failures++;
    fprintf(stderr, "no allocation was seen: posix_memalign was not replaced, so nothing was tested\n");
  }
  printf("%d failed allocations checked, %d failures\n", failed_allocations, failures);
  return failures == 0 ? 0 : 1;
}
