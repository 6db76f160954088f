/*
 * test_nerve.c: the C API as a C program sees it (run by CTest). Checks the version and status
 * contract, argument errors, the labs' hand-worked examples through the kernels, and that
 * results do not change with the thread count. The element-by-element comparison of every
 * kernel against a reference lives in the Swift tests (Tests/NerveTests).
 */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include <nerve.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#  include <xmmintrin.h>
#endif
#if defined(__linux__)
#  include <dirent.h>
#  include <dlfcn.h>
#endif

static int failures = 0;
#define EXPECT(cond, ...)                                                                      \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      failures++;                                                                              \
      fprintf(stderr, "%s:%d: expected %s: ", __FILE__, __LINE__, #cond);                     \
      fprintf(stderr, __VA_ARGS__);                                                            \
      fprintf(stderr, "\n");                                                                   \
    }                                                                                          \
  } while (0)
#define CLOSE(a, b, tol) EXPECT(fabs((double)(a) - (double)(b)) <= (tol), "%.9g vs %.9g", (double)(a), (double)(b))
/* A call that must succeed; on failure the context's message is printed. */
#define OK(ctx, call) EXPECT((call) == NERVE_OK, "%s", nerve_context_last_error(ctx))

static void test_version_and_status(void) {
  EXPECT(nerve_version_number() == NERVE_VERSION_NUMBER, "library %u header %d", nerve_version_number(), NERVE_VERSION_NUMBER);
  char expected[32];
  snprintf(expected, sizeof expected, "%d.%d.%d", NERVE_VERSION_MAJOR, NERVE_VERSION_MINOR, NERVE_VERSION_PATCH);
  EXPECT(strcmp(nerve_version_string(), expected) == 0, "%s vs header %s", nerve_version_string(), expected);
#ifdef NERVE_CMAKE_VERSION
  /* CMakeLists.txt reads the version from nerve.h; the library's file name and nerve.pc carry
   * what it read. */
  EXPECT(strcmp(NERVE_CMAKE_VERSION, expected) == 0, "CMake read %s from nerve.h, the header says %s", NERVE_CMAKE_VERSION,
         expected);
#endif
  /* Every status has its own description; an unknown one says so. */
  for (int s = 0; s <= NERVE_ERROR_FAILED; s++) {
    EXPECT(strcmp(nerve_status_string((nerve_status)s), "unknown status") != 0, "status %d", s);
    for (int t = 0; t < s; t++)
      EXPECT(strcmp(nerve_status_string((nerve_status)s), nerve_status_string((nerve_status)t)) != 0, "%d and %d", s, t);
  }
  EXPECT(strcmp(nerve_status_string((nerve_status)99), "unknown status") == 0, "%s", nerve_status_string((nerve_status)99));
  EXPECT(strcmp(nerve_status_string(NERVE_OK), "ok") == 0, "%s", nerve_status_string(NERVE_OK));
}

#if defined(__linux__)
/* The threads this process has now (its tasks in /proc). */
static int process_threads(void) {
  DIR *d = opendir("/proc/self/task");
  if (!d) return -1;
  int n = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

/* Threads in OpenBLAS's pool: its pthread build (openblas_get_parallel() == 1) starts one fewer
 * than its thread count when it loads. Looked up at run time: this test links libnerve alone,
 * and other BLAS builds lack these functions (no pool to count). */
static int blas_pool_threads(void) {
  int (*parallel)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "openblas_get_parallel");
  int (*threads)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "openblas_get_num_threads");
  if (!parallel || !threads || parallel() != 1) return 0;
  return threads() > 1 ? threads() - 1 : 0;
}
#endif

/* OpenBLAS's pthread build starts its pool when it loads; an idle member spun on sched_yield
 * for about 0.1 s after, sharing a core with OpenMP's threads (context.c). Creating a context
 * stops it: run before anything starts OpenMP's threads, the process has its pool's threads
 * fewer (others, a sanitizer's or an emulator's, count on both sides). */
static void test_blas_pool_stopped(void) {
#if defined(__linux__)
  const int pool = blas_pool_threads(), before = process_threads();
  if (before < 0) {
    printf("OpenBLAS's pool: /proc/self/task unreadable, not checked\n");
    return;
  }
  if (pool == 0) printf("OpenBLAS's pool: none to stop here (its serial or OpenMP build, or one thread)\n");
  nerve_context *ctx = NULL;
  EXPECT(nerve_context_create(&ctx, 2) == NERVE_OK, "create");
  const int after = process_threads();
  EXPECT(after == before - pool, "%d threads after creating a context, %d before, %d in OpenBLAS's pool", after,
         before, pool);
  nerve_context_free(ctx);
#endif
}

static void test_context(void) {
  /* A refused create sets *out to NULL: start from something that is not. */
  static char sentinel;
  nerve_context *ctx = (nerve_context *)(void *)&sentinel;
  EXPECT(nerve_context_create(NULL, 1) == NERVE_ERROR_NULL_POINTER, "NULL out");
  EXPECT(nerve_context_create(&ctx, -1) == NERVE_ERROR_BAD_ARGUMENT && ctx == NULL, "negative threads");
  EXPECT(nerve_context_create(&ctx, 3) == NERVE_OK && ctx, "create");
  EXPECT(nerve_context_threads(ctx) == 3, "%d", nerve_context_threads(ctx));
  EXPECT(nerve_context_set_threads(ctx, -2) == NERVE_ERROR_BAD_ARGUMENT, "negative");
  EXPECT(strstr(nerve_context_last_error(ctx), "threads") != NULL, "%s", nerve_context_last_error(ctx));
  EXPECT(nerve_context_set_threads(ctx, 0) == NERVE_OK && nerve_context_threads(ctx) >= 1, "default");
  nerve_isa best = nerve_context_isa(ctx); /* the default: the CPU's best, or NERVE_ISA's */
  EXPECT(best >= NERVE_ISA_BASELINE && best <= NERVE_ISA_AVX512, "isa %d", best);
  EXPECT(nerve_context_set_isa(ctx, NERVE_ISA_BASELINE) == NERVE_OK, "baseline always works");
  EXPECT(nerve_context_set_isa(ctx, (nerve_isa)9) == NERVE_ERROR_BAD_ARGUMENT, "bad isa");
  EXPECT(nerve_context_set_isa(ctx, NERVE_ISA_AUTO) == NERVE_OK && nerve_context_isa(ctx) == best, "auto");
  EXPECT(nerve_context_reserve(ctx, 1 << 20) == NERVE_OK, "reserve");
  EXPECT(nerve_context_threads(NULL) == 0, "NULL ctx");
  EXPECT(nerve_context_isa(NULL) == NERVE_ISA_BASELINE, "NULL ctx isa");
  EXPECT(nerve_dense_forward(NULL, NULL, NULL, NULL, NULL, 1, 1, 1) == NERVE_ERROR_NULL_POINTER, "NULL ctx call");
  nerve_context_free(ctx);
  nerve_context_free(NULL);
  void *p = nerve_alloc(3 << 20);
  EXPECT(p && ((uintptr_t)p % 64) == 0, "aligned alloc");
  memset(p, 1, 3 << 20);
  nerve_free(p);
  nerve_free(NULL);
  EXPECT(nerve_alloc(0) == NULL, "zero bytes");
}

static void test_errors(nerve_context *ctx) {
  float a[4] = {0}, b[4] = {0};
  double loss;
  int64_t correct;
  int32_t labels[2] = {0, 5}, classes[2];
  EXPECT(nerve_dense_forward(ctx, NULL, a, a, NULL, 1, 2, 2) == NERVE_ERROR_NULL_POINTER, "out NULL");
  EXPECT(strstr(nerve_context_last_error(ctx), "nerve_dense_forward") && strstr(nerve_context_last_error(ctx), "out"),
         "message names function and argument: %s", nerve_context_last_error(ctx));
  EXPECT(nerve_dense_forward(ctx, a, a, a, NULL, -1, 2, 2) == NERVE_ERROR_BAD_SIZE, "negative N");
  EXPECT(nerve_dense_forward(ctx, a, a, a, NULL, 1, (int64_t)1 << 40, (int64_t)1 << 40) == NERVE_ERROR_BAD_SIZE, "overflow");
  EXPECT(nerve_dense_backward(ctx, a, a, a, NULL, a, a, 1, 2, 2) == NERVE_ERROR_NULL_POINTER, "dout NULL");
  EXPECT(nerve_activation_forward(ctx, (nerve_activation)42, a, b, 4) == NERVE_ERROR_BAD_ARGUMENT, "bad kind");
  EXPECT(nerve_activation_backward(ctx, NERVE_ACTIVATION_SIGMOID, a, b, b, NULL, 4) == NERVE_ERROR_NULL_POINTER, "sigmoid needs out");
  EXPECT(nerve_activation_backward(ctx, NERVE_ACTIVATION_LECUN_TANH, a, b, NULL, b, 4) == NERVE_ERROR_NULL_POINTER, "lecun needs in");
  EXPECT(nerve_softmax_forward(ctx, a, b, 2, -2) == NERVE_ERROR_BAD_SIZE, "negative C");
  EXPECT(nerve_softmax_backward(ctx, a, b, NULL, 2, 2) == NERVE_ERROR_NULL_POINTER, "out NULL");
  EXPECT(nerve_loss_mse(ctx, &loss, a, a, b, 2, 2, 1) == NERVE_ERROR_BAD_SIZE, "count < N");
  EXPECT(nerve_loss_mse(ctx, &loss, a, NULL, b, 2, 2, 2) == NERVE_ERROR_NULL_POINTER, "out NULL");
  EXPECT(nerve_loss_softmax_cross_entropy(ctx, &loss, a, NULL, a, NULL, 2, 2, 2) == NERVE_ERROR_NULL_POINTER, "target NULL");
  EXPECT(nerve_loss_nll(ctx, &loss, a, a, b, 2, 2, -1.0f, 2) == NERVE_ERROR_BAD_ARGUMENT, "negative eps");
  EXPECT(nerve_sgd_step(ctx, a, b, 4, NAN, 0) == NERVE_ERROR_BAD_ARGUMENT, "NaN lr");
  EXPECT(nerve_momentum_step(ctx, a, NULL, b, 4, 0.1f, 0.9f, 0) == NERVE_ERROR_NULL_POINTER, "velocity NULL");
  EXPECT(nerve_momentum_step(ctx, a, a, b, 4, 0.1f, -0.5f, 0) == NERVE_ERROR_BAD_ARGUMENT, "negative momentum");
  EXPECT(nerve_argmax(ctx, classes, a, 2, 0) == NERVE_ERROR_BAD_SIZE, "C = 0");
  EXPECT(nerve_count_correct(ctx, &correct, a, labels, 2, 2) == NERVE_ERROR_BAD_ARGUMENT, "label out of range");
  EXPECT(strstr(nerve_context_last_error(ctx), "row 1") != NULL, "%s", nerve_context_last_error(ctx));
  EXPECT(nerve_sum_squares(ctx, NULL, a, 4) == NERVE_ERROR_NULL_POINTER, "out NULL");
  EXPECT(nerve_sum_abs(ctx, &loss, NULL, 4) == NERVE_ERROR_NULL_POINTER, "x NULL");
  /* Zero sizes are no-ops, not errors. */
  EXPECT(nerve_dense_forward(ctx, NULL, NULL, NULL, NULL, 0, 3, 3) == NERVE_OK, "N = 0");
  EXPECT(nerve_sgd_step(ctx, NULL, NULL, 0, 0.1f, 0) == NERVE_OK, "n = 0");
  /* A success clears the previous message. */
  EXPECT(nerve_context_last_error(ctx)[0] == 0, "cleared: %s", nerve_context_last_error(ctx));
}

/* The lab's 2-2-1 network: inputs (0.8, 0.2), target 0.4, sigmoid + MSE, lr 5. */
static void test_worked_example_221(nerve_context *ctx) {
  float x[2] = {0.8f, 0.2f}, y[1] = {0.4f};
  float w1[4] = {0.3f, -0.5f, 0.8f, 0.2f}, b1[2] = {0.2f, -0.4f};
  float w2[2] = {-0.6f, 0.4f}, b2[1] = {0.5f};
  float z1[2], h[2], z2[1], o[1], d_o[1], dz2[1], dh[2], dz1[2];
  float dw1[4] = {0}, db1[2] = {0}, dw2[2] = {0}, db2[1] = {0};
  double loss;
  OK(ctx, nerve_dense_forward(ctx, z1, x, w1, b1, 1, 2, 2));
  OK(ctx, nerve_activation_forward(ctx, NERVE_ACTIVATION_SIGMOID, h, z1, 2));
  OK(ctx, nerve_dense_forward(ctx, z2, h, w2, b2, 1, 2, 1));
  OK(ctx, nerve_activation_forward(ctx, NERVE_ACTIVATION_SIGMOID, o, z2, 1));
  CLOSE(o[0], 0.5597295991, 1e-6);
  OK(ctx, nerve_loss_mse(ctx, &loss, d_o, o, y, 1, 1, 1));
  OK(ctx, nerve_activation_backward(ctx, NERVE_ACTIVATION_SIGMOID, dz2, d_o, z2, o, 1));
  OK(ctx, nerve_dense_backward(ctx, dh, dw2, db2, dz2, h, w2, 1, 2, 1));
  OK(ctx, nerve_activation_backward(ctx, NERVE_ACTIVATION_SIGMOID, dz1, dh, z1, h, 2));
  OK(ctx, nerve_dense_backward(ctx, NULL, dw1, db1, dz1, x, w1, 1, 2, 2));
  OK(ctx, nerve_sgd_step(ctx, w1, dw1, 4, 5, 0));
  OK(ctx, nerve_sgd_step(ctx, b1, db1, 2, 5, 0));
  OK(ctx, nerve_sgd_step(ctx, w2, dw2, 2, 5, 0));
  OK(ctx, nerve_sgd_step(ctx, b2, db2, 1, 5, 0));
  const double w1_after[6] = {0.34322654, -0.52734731, 0.81080664, 0.19316317, 0.25403318, -0.43418414};
  for (int k = 0; k < 4; k++) CLOSE(w1[k], w1_after[k], 1e-6);
  for (int k = 0; k < 2; k++) CLOSE(b1[k], w1_after[4 + k], 1e-6);
  CLOSE(w2[0], -0.85414675, 1e-6);
  CLOSE(w2[1], 0.27457272, 1e-6);
  CLOSE(b2[0], 0.10637456, 1e-6);
  OK(ctx, nerve_dense_forward(ctx, z1, x, w1, b1, 1, 2, 2));
  OK(ctx, nerve_activation_forward(ctx, NERVE_ACTIVATION_SIGMOID, h, z1, 2));
  OK(ctx, nerve_dense_forward(ctx, z2, h, w2, b2, 1, 2, 1));
  OK(ctx, nerve_activation_forward(ctx, NERVE_ACTIVATION_SIGMOID, o, z2, 1));
  CLOSE(o[0], 0.40648824, 1e-6);
}

/* The other lab's 2-3-2 example: sigmoid hidden, softmax cross-entropy, target class 0. Both
 * logits are equal, so the hidden layer's gradients are exactly zero: they start as NaN (input
 * gradients are written) or as 0.25 (parameter gradients accumulate), so a pass that wrote
 * nothing cannot look right. */
static void test_worked_example_232(nerve_context *ctx) {
  float x[2] = {1, -1}, t[2] = {1, 0};
  float W[6] = {1, 1, 1, -1, -1, -1}, bW[3] = {0}, V[6] = {1, 1, -1, -1, -1, -1}, bV[2] = {0};
  float z[3], h[3], logits[2], dlogits[2];
  float dh[3] = {NAN, NAN, NAN}, dz[3] = {NAN, NAN, NAN}, dx[2] = {NAN, NAN};
  float dW[6] = {0.25f, 0.25f, 0.25f, 0.25f, 0.25f, 0.25f}, dbW[3] = {0.25f, 0.25f, 0.25f}, dV[6] = {0}, dbV[2] = {0};
  double loss;
  OK(ctx, nerve_dense_forward(ctx, z, x, W, bW, 1, 2, 3));
  OK(ctx, nerve_activation_forward(ctx, NERVE_ACTIVATION_SIGMOID, h, z, 3));
  OK(ctx, nerve_dense_forward(ctx, logits, h, V, bV, 1, 3, 2));
  OK(ctx, nerve_loss_softmax_cross_entropy(ctx, &loss, dlogits, NULL, logits, t, 1, 2, 1));
  CLOSE(loss, log(2.0), 1e-6);
  OK(ctx, nerve_dense_backward(ctx, dh, dV, dbV, dlogits, h, V, 1, 3, 2));
  OK(ctx, nerve_activation_backward(ctx, NERVE_ACTIVATION_SIGMOID, dz, dh, z, h, 3));
  OK(ctx, nerve_dense_backward(ctx, dx, dW, dbW, dz, x, W, 1, 2, 3));
  for (int r = 0; r < 3; r++) {
    CLOSE(dV[2 * r], -0.44039853898894116, 1e-6);
    CLOSE(dV[2 * r + 1], 0.44039853898894116, 1e-6);
  }
  CLOSE(dbV[0], -0.5, 1e-7);
  CLOSE(dbV[1], 0.5, 1e-7);
  for (int k = 0; k < 3; k++) CLOSE(dh[k], 0.0, 1e-7);
  for (int k = 0; k < 3; k++) CLOSE(dz[k], 0.0, 1e-7);
  for (int k = 0; k < 2; k++) CLOSE(dx[k], 0.0, 1e-7);
  for (int k = 0; k < 6; k++) CLOSE(dW[k], 0.25, 1e-7);
  for (int k = 0; k < 3; k++) CLOSE(dbW[k], 0.25, 1e-7);
}

/* The best instruction set this CPU has, found here as nerve_isa documents it (AVX-512 F, VL,
 * BW and DQ; AVX2 with FMA), independently of libnerve's own detection. */
static nerve_isa cpu_best_isa(void) {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq"))
    return NERVE_ISA_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return NERVE_ISA_AVX2;
#endif
  return NERVE_ISA_BASELINE;
}

/* The instruction set a new context takes on a CPU whose best is cpu: the one NERVE_ISA names
 * where the CPU has it, else the best. */
static nerve_isa told_isa(nerve_isa cpu) {
  const char *env = getenv("NERVE_ISA");
  nerve_isa told = NERVE_ISA_AUTO;
  if (env && strcmp(env, "baseline") == 0) told = NERVE_ISA_BASELINE;
  if (env && strcmp(env, "avx2") == 0) told = NERVE_ISA_AVX2;
  if (env && strcmp(env, "avx512") == 0) told = NERVE_ISA_AVX512;
  return told != NERVE_ISA_AUTO && told <= cpu ? told : cpu;
}

/* NERVE_ISA chooses new contexts' instruction set (and NERVE_ISA_AUTO's) within the CPU's;
 * unknown names and sets beyond the CPU leave its best. The variable is restored after. */
static void test_isa_told(void) {
  const nerve_isa cpu = cpu_best_isa();
  const char *was = getenv("NERVE_ISA");
  char *saved = was ? strdup(was) : NULL; /* setenv may free what getenv returned */
  static const char *const names[] = {"baseline", "avx2", "avx512", "avx1024", ""};
  static const nerve_isa wanted[] = {NERVE_ISA_BASELINE, NERVE_ISA_AVX2, NERVE_ISA_AVX512, NERVE_ISA_AUTO, NERVE_ISA_AUTO};
  for (int i = 0; i < 5; i++) {
    setenv("NERVE_ISA", names[i], 1);
    const nerve_isa expected = wanted[i] != NERVE_ISA_AUTO && wanted[i] <= cpu ? wanted[i] : cpu;
    nerve_context *ctx = NULL;
    EXPECT(nerve_context_create(&ctx, 1) == NERVE_OK && ctx, "create with NERVE_ISA=%s", names[i]);
    if (!ctx) continue;
    EXPECT(nerve_context_isa(ctx) == expected, "NERVE_ISA=%s: instruction set %d, expected %d", names[i],
           (int)nerve_context_isa(ctx), (int)expected);
    /* A context may still choose any set the CPU has, and AUTO comes back to the told one. */
    EXPECT(nerve_context_set_isa(ctx, cpu) == NERVE_OK && nerve_context_isa(ctx) == cpu, "NERVE_ISA=%s: best", names[i]);
    EXPECT(nerve_context_set_isa(ctx, NERVE_ISA_AUTO) == NERVE_OK && nerve_context_isa(ctx) == expected,
           "NERVE_ISA=%s: auto gave %d", names[i], (int)nerve_context_isa(ctx));
    nerve_context_free(ctx);
  }
  if (saved) setenv("NERVE_ISA", saved, 1);
  else unsetenv("NERVE_ISA");
  free(saved);
}

/* Pseudo-random values in [-0.5, 0.5) from *seed. */
static void fill_random(float *v, int64_t n, unsigned *seed) {
  for (int64_t k = 0; k < n; k++)
    v[k] = (float)((*seed = *seed * 1103515245u + 12345u) >> 16 & 0x7fff) / 32768.0f - 0.5f;
}

/*
 * What a team does differently while its cores are far apart (nerve__cores_far; ctest runs this
 * program again with NERVE_CORES=far): the convolution's forward shares out its blocks of images
 * by contiguous shares, and a fused Adam step past 16 MB streams its weights back (where the
 * CPU streams), and so do batch norm's input gradient and the weights a fused SGD step copies
 * back from a padded copy. Either way the bits of one thread: a 3x3 "same" convolution of 40
 * images at 3 threads, a batch norm backward (through a ReLU) of 4,096 rows of 32 channels at
 * 3, an SGD step of a 90 -> 300 layer over 100 rows at 3, and two Adam steps of a 1,500 ->
 * 1,008 layer at 2.
 */
static void test_far_cores_paths(void) {
  nerve_context *one = NULL, *many = NULL;
  EXPECT(nerve_context_create(&one, 1) == NERVE_OK && nerve_context_create(&many, 3) == NERVE_OK, "contexts");
  if (!one || !many) return;
  unsigned seed = 11;
  enum { N = 40, H = 28, W = 28, C = 1, K = 8 };
  float *in = malloc(sizeof(float) * N * H * W * C), wc[3 * 3 * C * K], bc[K];
  float *out1 = malloc(sizeof(float) * N * H * W * K), *out3 = malloc(sizeof(float) * N * H * W * K);
  fill_random(in, N * H * W * C, &seed);
  fill_random(wc, 3 * 3 * C * K, &seed);
  fill_random(bc, K, &seed);
  OK(one, nerve_conv2d_forward(one, out1, in, wc, bc, N, H, W, C, K, 3, 3, 1, 1, 1, 1, H, W));
  OK(many, nerve_conv2d_forward(many, out3, in, wc, bc, N, H, W, C, K, 3, 3, 1, 1, 1, 1, H, W));
  EXPECT(memcmp(out1, out3, sizeof(float) * N * H * W * K) == 0, "convolution forward differs between 1 and 3 threads");
  free(in), free(out1), free(out3);

  enum { BR = 4096, BC = 32 };
  float *bx = malloc(sizeof(float) * BR * BC), *bdy = malloc(sizeof(float) * BR * BC), gamma[BC], mean[BC], invstd[BC];
  float *bdx[2] = {nerve_alloc(sizeof(float) * BR * BC), nerve_alloc(sizeof(float) * BR * BC)}, dgb[2][2 * BC];
  fill_random(bx, BR * BC, &seed);
  fill_random(bdy, BR * BC, &seed);
  fill_random(gamma, BC, &seed);
  fill_random(mean, BC, &seed);
  for (int c = 0; c < BC; c++) invstd[c] = 1.0f + 0.1f * (float)c;
  for (int c = 0; c < 2; c++) {
    nerve_context *ctx = c == 0 ? one : many;
    memset(dgb[c], 0, sizeof dgb[c]);
    if (bdx[c])
      OK(ctx, nerve_batchnorm_backward_relu(ctx, bdx[c], dgb[c], dgb[c] + BC, bdy, bx, gamma, mean, invstd, BR, BC));
  }
  EXPECT(bdx[0] && bdx[1] && memcmp(bdx[0], bdx[1], sizeof(float) * BR * BC) == 0 &&
             memcmp(dgb[0], dgb[1], sizeof dgb[0]) == 0,
         "batch norm backward differs between 1 and 3 threads");
  nerve_free(bdx[0]), nerve_free(bdx[1]), free(bx), free(bdy);

  enum { SN = 100, SI = 90, SO = 300 };
  float *sx = malloc(sizeof(float) * SN * SI), *sdy = malloc(sizeof(float) * SN * SO), *sw[2], sb[2][SO];
  fill_random(sx, SN * SI, &seed);
  fill_random(sdy, SN * SO, &seed);
  for (int c = 0; c < 2; c++) {
    nerve_context *ctx = c == 0 ? one : many;
    sw[c] = malloc(sizeof(float) * SI * SO);
    if (!sw[c]) continue;
    unsigned wseed = 9;
    fill_random(sw[c], SI * SO, &wseed);
    memset(sb[c], 0, sizeof sb[c]);
    OK(ctx, nerve_dense_backward_sgd(ctx, NULL, sw[c], sb[c], sdy, sx, SN, SI, SO, 0.05f));
  }
  EXPECT(sw[0] && sw[1] && memcmp(sw[0], sw[1], sizeof(float) * SI * SO) == 0 &&
             memcmp(sb[0], sb[1], sizeof sb[0]) == 0,
         "a fused SGD step on a padded copy differs between 1 and 3 threads");
  free(sw[0]), free(sw[1]), free(sx), free(sdy);

  enum { R = 8, I = 1500, O = 1008 }; /* 18 MB of weights and moments */
  OK(many, nerve_context_set_threads(many, 2));
  float *x = malloc(sizeof(float) * R * I), *dy = malloc(sizeof(float) * R * O), *din[2];
  float *w[2], *m[2], *v[2], b[2][O], bm[2][O], bv[2][O];
  fill_random(x, R * I, &seed);
  fill_random(dy, R * O, &seed);
  for (int c = 0; c < 2; c++) {
    w[c] = nerve_alloc(sizeof(float) * I * O), m[c] = nerve_alloc(sizeof(float) * I * O);
    v[c] = nerve_alloc(sizeof(float) * I * O), din[c] = malloc(sizeof(float) * R * I);
    if (!w[c] || !m[c] || !v[c] || !din[c]) {
      EXPECT(0, "memory for the 1,500 x 1,008 layer");
      return;
    }
    unsigned wseed = 5;
    fill_random(w[c], I * O, &wseed);
    memset(m[c], 0, sizeof(float) * I * O), memset(v[c], 0, sizeof(float) * I * O);
    memset(b[c], 0, sizeof b[c]), memset(bm[c], 0, sizeof bm[c]), memset(bv[c], 0, sizeof bv[c]);
  }
  for (int step = 1; step <= 2; step++)
    for (int c = 0; c < 2; c++) {
      nerve_context *ctx = c == 0 ? one : many;
      OK(ctx, nerve_dense_backward_adam(ctx, din[c], w[c], b[c], m[c], v[c], bm[c], bv[c], dy, x, R, I, O, 0.01f, 0.9f,
                                        0.999f, 1e-7f, 0.0f, 0.0f, step));
    }
  EXPECT(memcmp(w[0], w[1], sizeof(float) * I * O) == 0 && memcmp(m[0], m[1], sizeof(float) * I * O) == 0 &&
             memcmp(v[0], v[1], sizeof(float) * I * O) == 0 && memcmp(din[0], din[1], sizeof(float) * R * I) == 0,
         "a fused Adam step past 16 MB differs between 1 and 2 threads");
  for (int c = 0; c < 2; c++) nerve_free(w[c]), nerve_free(m[c]), nerve_free(v[c]), free(din[c]);
  free(x), free(dy);
  nerve_context_free(one);
  nerve_context_free(many);
}

/* A dense layer against plain loops, and bit-identical at 1 and 3 threads, on every instruction
 * set this CPU has (each must be selectable, and in effect); the ones it lacks are refused. */
static void test_dense_threads(void) {
  enum { N = 203, I = 37, O = 29 };
  float *x = malloc(sizeof(float) * N * I), *w = malloc(sizeof(float) * I * O), b[O];
  float *y1 = malloc(sizeof(float) * N * O), *y3 = malloc(sizeof(float) * N * O);
  float *dw1 = calloc(I * O, sizeof(float)), *dw3 = calloc(I * O, sizeof(float));
  unsigned seed = 7;
  for (int k = 0; k < N * I; k++) x[k] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0x7fff) / 32768.0f - 0.5f;
  for (int k = 0; k < I * O; k++) w[k] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0x7fff) / 32768.0f - 0.5f;
  for (int k = 0; k < O; k++) b[k] = 0.01f * k;
  nerve_context *one = NULL, *three = NULL;
  EXPECT(nerve_context_create(&one, 1) == NERVE_OK && nerve_context_create(&three, 3) == NERVE_OK, "contexts");
  if (!one || !three) return;
  const nerve_isa cpu = cpu_best_isa();
  EXPECT(nerve_context_isa(one) == told_isa(cpu), "libnerve chose instruction set %d, this CPU's best is %d (NERVE_ISA %s)",
         (int)nerve_context_isa(one), (int)cpu, getenv("NERVE_ISA") ? getenv("NERVE_ISA") : "unset");
  int tested = 0;
  for (int isa = NERVE_ISA_BASELINE; isa <= NERVE_ISA_AVX512; isa++) {
    if (isa > (int)cpu) {
      EXPECT(nerve_context_set_isa(one, (nerve_isa)isa) == NERVE_ERROR_UNSUPPORTED, "instruction set %d accepted", isa);
      continue;
    }
    if (nerve_context_set_isa(one, (nerve_isa)isa) != NERVE_OK || nerve_context_set_isa(three, (nerve_isa)isa) != NERVE_OK ||
        nerve_context_isa(one) != (nerve_isa)isa || nerve_context_isa(three) != (nerve_isa)isa) {
      EXPECT(0, "instruction set %d could not be selected: %s", isa, nerve_context_last_error(one));
      continue;
    }
    memset(y1, 0xff, sizeof(float) * N * O); /* NaN: a result not written shows */
    OK(one, nerve_dense_forward(one, y1, x, w, b, N, I, O));
    OK(three, nerve_dense_forward(three, y3, x, w, b, N, I, O));
    EXPECT(memcmp(y1, y3, sizeof(float) * N * O) == 0, "forward differs between 1 and 3 threads (isa %d)", isa);
    memset(dw1, 0, sizeof(float) * I * O);
    memset(dw3, 0, sizeof(float) * I * O);
    OK(one, nerve_dense_backward(one, NULL, dw1, NULL, y1, x, w, N, I, O));
    OK(three, nerve_dense_backward(three, NULL, dw3, NULL, y1, x, w, N, I, O));
    EXPECT(memcmp(dw1, dw3, sizeof(float) * I * O) == 0, "weight gradient differs between 1 and 3 threads (isa %d)", isa);
    /* Against sums in double: out = x . w + b, and dweight = x^T . dout (dout = out here). */
    double worst = 0, worst_dw = 0;
    for (int n = 0; n < N; n++)
      for (int o = 0; o < O; o++) {
        double s = b[o];
        for (int i = 0; i < I; i++) s += (double)x[n * I + i] * w[i * O + o];
        double d = fabs(s - y1[n * O + o]);
        if (!(d <= worst)) worst = d; /* NaN counts as worst */
      }
    for (int i = 0; i < I; i++)
      for (int o = 0; o < O; o++) {
        double s = 0;
        for (int n = 0; n < N; n++) s += (double)x[n * I + i] * y1[n * O + o];
        double d = fabs(s - dw1[i * O + o]) / (1.0 + fabs(s));
        if (!(d <= worst_dw)) worst_dw = d;
      }
    EXPECT(worst < 1e-5, "forward off by %g (isa %d)", worst, isa);
    EXPECT(worst_dw < 1e-5, "weight gradient off by %g relative (isa %d)", worst_dw, isa);
    tested++;
  }
  EXPECT(tested == (int)cpu - NERVE_ISA_BASELINE + 1, "dense checked on %d of this CPU's %d instruction sets", tested,
         (int)cpu - NERVE_ISA_BASELINE + 1);
  printf("dense checked on %d instruction set(s)\n", tested);
  nerve_context_free(one);
  nerve_context_free(three);
  free(x), free(w), free(y1), free(y3), free(dw1), free(dw3);
}

/* Lab A's second layer over a chunk of rows (30 -> 10, sigmoid before it): the backward two
 * threads take by halves of the rows gives one thread's bits: its input gradient, and weight
 * and bias gradients added to what they held. Run also with OMP_THREAD_LIMIT=1 (CMake's
 * c_api_one_thread_granted), where the runtime grants the two-thread context one thread. */
static void test_dense_backward_halves(void) {
  enum { N = 1001, I = 30, O = 10 };
  float *in = malloc(sizeof(float) * N * I), *w = malloc(sizeof(float) * I * O), *dout = malloc(sizeof(float) * N * O);
  float *din[2] = {malloc(sizeof(float) * N * I), malloc(sizeof(float) * N * I)};
  float dw[2][I * O], db[2][O];
  unsigned seed = 11;
  for (int k = 0; k < N * I; k++) in[k] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0x7fff) / 32768.0f;
  for (int k = 0; k < N * I; k += 3) in[k] = 0.0f; /* zero inputs, which the chains skip */
  for (int k = 0; k < I * O; k++) w[k] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0x7fff) / 32768.0f - 0.5f;
  for (int k = 0; k < N * O; k++) dout[k] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0x7fff) / 32768.0f - 0.5f;
  for (int joined = 0; joined < 2; joined++) {
    for (int c = 0; c < 2; c++) {
      nerve_context *ctx = NULL;
      EXPECT(nerve_context_create(&ctx, c + 1) == NERVE_OK, "context of %d thread(s)", c + 1);
      if (!ctx) return;
      for (int k = 0; k < I * O; k++) dw[c][k] = 0.001f * k;
      for (int k = 0; k < O; k++) db[c][k] = -0.01f * k;
      memset(din[c], 0xff, sizeof(float) * N * I);
      if (joined)
        OK(ctx, nerve_dense_backward_activation(ctx, NERVE_ACTIVATION_SIGMOID, din[c], dw[c], db[c], dout, in, w, N, I, O));
      else
        OK(ctx, nerve_dense_backward(ctx, din[c], dw[c], db[c], dout, in, w, N, I, O));
      nerve_context_free(ctx);
    }
    EXPECT(memcmp(din[0], din[1], sizeof(float) * N * I) == 0, "input gradients differ between 1 and 2 threads (joined %d)", joined);
    EXPECT(memcmp(dw[0], dw[1], sizeof dw[0]) == 0, "weight gradients differ between 1 and 2 threads (joined %d)", joined);
    EXPECT(memcmp(db[0], db[1], sizeof db[0]) == 0, "bias gradients differ between 1 and 2 threads (joined %d)", joined);
  }
  free(in), free(w), free(dout), free(din[0]), free(din[1]);
}

/* A convolution's backward, which two threads take as one team for both gradients
 * (conv.c's both_grads_member, where the weight is packed): one thread's bits for the input,
 * weight and bias gradients, with an even and an odd count of lowered columns (24 and 23
 * channels, 3 x 3). Run also with OMP_THREAD_LIMIT=1, where that team's one member takes it
 * all. */
static void test_conv_backward_team(void) {
  enum { N = 40, H = 12, W = 12, K = 32, MAXC = 24 };
  float *in = malloc(sizeof(float) * N * H * W * MAXC), *w = malloc(sizeof(float) * 9 * MAXC * K);
  float *dout = malloc(sizeof(float) * N * H * W * K);
  float *din[2] = {malloc(sizeof(float) * N * H * W * MAXC), malloc(sizeof(float) * N * H * W * MAXC)};
  float *dw[2] = {malloc(sizeof(float) * 9 * MAXC * K), malloc(sizeof(float) * 9 * MAXC * K)}, db[2][K];
  unsigned seed = 17;
  fill_random(in, N * H * W * MAXC, &seed);
  fill_random(w, 9 * MAXC * K, &seed);
  fill_random(dout, N * H * W * K, &seed);
  for (int k = 0; k < N * H * W * K; k++) /* a max pool's gradient: mostly zeros */
    if (k % 4) dout[k] = 0.0f;
  for (int C = MAXC - 1; C <= MAXC; C++) {
    for (int c = 0; c < 2; c++) {
      nerve_context *ctx = NULL;
      EXPECT(nerve_context_create(&ctx, c + 1) == NERVE_OK, "context of %d thread(s)", c + 1);
      if (!ctx) return;
      for (int k = 0; k < 9 * C * K; k++) dw[c][k] = 0.001f * k;
      for (int k = 0; k < K; k++) db[c][k] = -0.01f * k;
      OK(ctx, nerve_conv2d_backward(ctx, din[c], dw[c], db[c], dout, in, w, N, H, W, C, K, 3, 3, 1, 1, 1, 1, H, W));
      nerve_context_free(ctx);
    }
    EXPECT(memcmp(din[0], din[1], sizeof(float) * N * H * W * C) == 0, "conv input gradients differ (C %d)", C);
    EXPECT(memcmp(dw[0], dw[1], sizeof(float) * 9 * C * K) == 0, "conv weight gradients differ (C %d)", C);
    EXPECT(memcmp(db[0], db[1], sizeof db[0]) == 0, "conv bias gradients differ (C %d)", C);
  }
  free(in), free(w), free(dout), free(din[0]), free(din[1]), free(dw[0]), free(dw[1]);
}

/* The input gradient of batches of 8-40 rows, which the AVX-512 kernels take with the batch's
 * rows in vector lanes (gemm.c's nn_lanes, one asm statement a row for two vectors of rows:
 * 17-32): against sums in double, and bit-identical at 1 and 3 threads, as CMake's compiler
 * builds it (the Swift tests check clang's build). */
static void test_input_gradient_lanes(void) {
  enum { I = 50, O = 100, MAXN = 40 };
  static const int rows[] = {8, 20, 32, 40};
  float *w = malloc(sizeof(float) * I * O), *dout = malloc(sizeof(float) * MAXN * O);
  float *din1 = malloc(sizeof(float) * MAXN * I), *din3 = malloc(sizeof(float) * MAXN * I);
  unsigned seed = 5;
  for (int k = 0; k < I * O; k++) w[k] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0x7fff) / 32768.0f - 0.5f;
  for (int k = 0; k < MAXN * O; k++) /* a relu's gradient: about half zeros */
    dout[k] = k % 2 ? 0.0f : (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0x7fff) / 32768.0f - 0.5f;
  nerve_context *one = NULL, *three = NULL;
  EXPECT(nerve_context_create(&one, 1) == NERVE_OK && nerve_context_create(&three, 3) == NERVE_OK, "contexts");
  for (size_t r = 0; one && three && r < sizeof rows / sizeof rows[0]; r++) {
    const int N = rows[r];
    memset(din1, 0xff, sizeof(float) * MAXN * I);
    memset(din3, 0xff, sizeof(float) * MAXN * I);
    /* The input gradient alone (no weight gradient: its inputs are not read). */
    OK(one, nerve_dense_backward(one, din1, NULL, NULL, dout, NULL, w, N, I, O));
    OK(three, nerve_dense_backward(three, din3, NULL, NULL, dout, NULL, w, N, I, O));
    EXPECT(memcmp(din1, din3, sizeof(float) * N * I) == 0, "input gradient of %d rows differs between 1 and 3 threads", N);
    double worst = 0;
    for (int n = 0; n < N; n++)
      for (int i = 0; i < I; i++) {
        double s = 0;
        for (int o = 0; o < O; o++) s += (double)dout[n * O + o] * w[i * O + o];
        const double d = fabs(s - din1[n * I + i]) / (1.0 + fabs(s));
        if (!(d <= worst)) worst = d; /* NaN counts as worst */
      }
    EXPECT(worst < 1e-5, "input gradient of %d rows off by %g relative", N, worst);
  }
  nerve_context_free(one);
  nerve_context_free(three);
  free(w), free(dout), free(din1), free(din3);
}

/* The optimizer steps take subnormal floats as zero on x86-64 (nerve__subnormals_as_zero):
 * Adam's first moment decaying from just above the smallest normal float is stored as zero, the
 * caller's floating-point modes are the same after the call whatever they were before, and the
 * context's other thread is left with its own: a plain SGD step (no state, no flush) after the
 * Adam step keeps subnormal weights. Elsewhere the steps keep subnormals. */
static int adam_flushes(nerve_context *ctx, float *w, float *m, float *v, const float *g, int n) {
  for (int i = 0; i < n; i++) w[i] = 0.5f, m[i] = 1.2e-38f, v[i] = 1.0e-4f; /* 0.9 m: subnormal */
  OK(ctx, nerve_adam_step(ctx, w, m, v, g, n, 0.01f, 0.9f, 0.999f, 1e-7f, 0.0f, 0.0f, 1));
  int flushed = 0, kept = 0;
  for (int i = 0; i < n; i++) flushed += m[i] == 0.0f, kept += w[i] == 0.5f;
  EXPECT(kept == n, "%d of %d weights kept without a gradient", kept, n);
  return flushed;
}

static void test_optimizer_subnormals(void) {
  nerve_context *ctx = NULL;
  EXPECT(nerve_context_create(&ctx, 2) == NERVE_OK, "context of 2 threads");
  enum { n = 1 << 18 }; /* 4 steps' grains (optim.c's STEP_GRAIN), so both threads step */
  float *w = malloc(sizeof(float) * n), *m = malloc(sizeof(float) * n), *v = malloc(sizeof(float) * n);
  float *g = calloc(n, sizeof(float));
  if (!ctx || !w || !m || !v || !g) {
    nerve_context_free(ctx);
    free(w), free(m), free(v), free(g);
    return;
  }
#if defined(__x86_64__)
  const unsigned modes[2] = {0x1f80u, 0x1f80u | 0x8040u}; /* the default; FTZ and DAZ already on */
  for (int k = 0; k < 2; k++) {
    const unsigned before = _mm_getcsr();
    _mm_setcsr(modes[k]);
    const int flushed = adam_flushes(ctx, w, m, v, g, n);
    const unsigned after = _mm_getcsr();
    volatile float tiny = 1.0e-38f;
    const float half = tiny * 0.5f; /* in the modes the call left this thread */
    _mm_setcsr(before);
    EXPECT(flushed == n, "%d of %d first moments that decayed below 2^-126 are zero (MXCSR %#x)", flushed, n, modes[k]);
    /* The modes, not the exception flags (bits 0-5), which any arithmetic may raise. */
    EXPECT((after & ~0x3fu) == modes[k], "MXCSR %#x before the Adam step, %#x after", modes[k], after);
    if (k == 0) EXPECT(half != 0.0f, "a subnormal product flushed after the Adam step in the default modes");
  }
#else
  const int flushed = adam_flushes(ctx, w, m, v, g, n);
  EXPECT(flushed == 0, "%d of %d subnormal first moments flushed off x86-64", flushed, n);
#endif
  /* Plain SGD with a zero gradient on subnormal weights, by both threads: w - lr * 0 is w
   * unless a thread were left taking subnormals as zero. */
  for (int i = 0; i < n; i++) w[i] = 1.0e-39f;
  OK(ctx, nerve_sgd_step(ctx, w, g, n, 0.5f, 0.0f));
  int kept = 0;
  for (int i = 0; i < n; i++) kept += w[i] == 1.0e-39f;
  EXPECT(kept == n, "%d of %d subnormal weights kept by a plain SGD step after the Adam step", kept, n);
  free(w), free(m), free(v), free(g);
  nerve_context_free(ctx);
}

int main(void) {
  test_blas_pool_stopped(); /* first: before any team has started */
  test_version_and_status();
  test_context();
  test_isa_told();
  nerve_context *ctx = NULL;
  if (nerve_context_create(&ctx, 2) != NERVE_OK) {
    fprintf(stderr, "no context\n");
    return 1;
  }
  test_errors(ctx);
  test_worked_example_221(ctx);
  test_worked_example_232(ctx);
  nerve_context_free(ctx);
  test_dense_threads();
  test_dense_backward_halves();
  test_conv_backward_team();
  test_input_gradient_lanes();
  test_optimizer_subnormals();
  test_far_cores_paths();
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("all C API checks passed\n");
  return 0;
}
