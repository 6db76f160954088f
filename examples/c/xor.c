/*
 * xor.c: trains a 2-4-1 sigmoid network on XOR with libnerve's kernels: dense forward and
 * backward, sigmoid, mean squared error and gradient descent, all on caller-owned buffers.
 *
 *   cmake -B build && cmake --build build && ./build/nerve_example
 *   cc xor.c $(pkg-config --cflags --libs nerve) -o xor      # against an installed libnerve
 */
#include <nerve.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every call returns a status: on failure, say which call, what status and the context's
 * message (it names the function and the argument), and stop. */
#define CHECK(call)                                                                            \
  do {                                                                                         \
    nerve_status s_ = (call);                                                                  \
    if (s_ != NERVE_OK) {                                                                      \
      fprintf(stderr, "%s failed (%s): %s\n", #call, nerve_status_string(s_),                  \
              nerve_context_last_error(ctx));                                                  \
      exit(1);                                                                                 \
    }                                                                                          \
  } while (0)

int main(void) {
  if (nerve_version_number() != NERVE_VERSION_NUMBER) {
    fprintf(stderr, "header %d does not match library %u\n", NERVE_VERSION_NUMBER, nerve_version_number());
    return 1;
  }
  enum { N = 4, I = 2, H = 4, O = 1 };
  const float x[N * I] = {0, 0, 0, 1, 1, 0, 1, 1};
  const float y[N * O] = {0, 1, 1, 0};
  /* Weights [inputs, outputs], one row per input; fixed small values instead of a generator. */
  float w1[I * H] = {0.5f, -0.4f, 0.3f, -0.6f, -0.5f, 0.6f, 0.4f, -0.3f}, b1[H] = {0};
  float w2[H * O] = {0.3f, -0.2f, 0.5f, -0.4f}, b2[O] = {0};
  float z1[N * H], h[N * H], z2[N * O], o[N * O];
  float dw1[I * H], db1[H], dw2[H * O], db2[O], dz1[N * H], dh[N * H], do_[N * O], dz2[N * O];

  nerve_context *ctx = NULL;
  nerve_status created = nerve_context_create(&ctx, 0);
  if (created != NERVE_OK) { /* no context yet, so no message: the status says why */
    fprintf(stderr, "nerve_context_create failed: %s\n", nerve_status_string(created));
    return 1;
  }
  printf("libnerve %s, %d threads\n", nerve_version_string(), nerve_context_threads(ctx));
  double loss = 0;
  for (int epoch = 0; epoch < 5000; epoch++) {
    CHECK(nerve_dense_forward(ctx, z1, x, w1, b1, N, I, H));
    CHECK(nerve_activation_forward(ctx, NERVE_ACTIVATION_SIGMOID, h, z1, N * H));
    CHECK(nerve_dense_forward(ctx, z2, h, w2, b2, N, H, O));
    CHECK(nerve_activation_forward(ctx, NERVE_ACTIVATION_SIGMOID, o, z2, N * O));
    CHECK(nerve_loss_mse(ctx, &loss, do_, o, y, N, O, N));
    /* Parameter gradients accumulate: zero them each step. */
    memset(dw1, 0, sizeof dw1), memset(db1, 0, sizeof db1);
    memset(dw2, 0, sizeof dw2), memset(db2, 0, sizeof db2);
    CHECK(nerve_activation_backward(ctx, NERVE_ACTIVATION_SIGMOID, dz2, do_, z2, o, N * O));
    CHECK(nerve_dense_backward(ctx, dh, dw2, db2, dz2, h, w2, N, H, O));
    CHECK(nerve_activation_backward(ctx, NERVE_ACTIVATION_SIGMOID, dz1, dh, z1, h, N * H));
    CHECK(nerve_dense_backward(ctx, NULL, dw1, db1, dz1, x, w1, N, I, H));
    CHECK(nerve_sgd_step(ctx, w1, dw1, I * H, 2.0f, 0));
    CHECK(nerve_sgd_step(ctx, b1, db1, H, 2.0f, 0));
    CHECK(nerve_sgd_step(ctx, w2, dw2, H * O, 2.0f, 0));
    CHECK(nerve_sgd_step(ctx, b2, db2, O, 2.0f, 0));
    if (epoch % 1000 == 0) printf("epoch %4d  loss %.5f\n", epoch, loss);
  }
  int right = 0;
  for (int n = 0; n < N; n++) {
    printf("%g xor %g -> %.3f\n", x[2 * n], x[2 * n + 1], o[n]);
    right += (o[n] > 0.5f) == (y[n] > 0.5f);
  }
  /* A bad call returns a status and a message; it never aborts. */
  nerve_status s = nerve_dense_forward(ctx, NULL, x, w1, b1, N, I, H);
  printf("a NULL output gives: %s (%s)\n", nerve_status_string(s), nerve_context_last_error(ctx));
  nerve_context_free(ctx);
  if (s != NERVE_ERROR_NULL_POINTER) {
    fprintf(stderr, "expected %s\n", nerve_status_string(NERVE_ERROR_NULL_POINTER));
    return 1;
  }
  if (right != N) {
    fprintf(stderr, "learned %d of the %d XOR cases\n", right, N);
    return 1;
  }
  return 0;
}
