/* loom-bench-core: throughput of Loom's core ops against a plain reference.
 *
 *   loom-bench-core [--device cpu|cuda[:N]] [--runs N] [--json]
 *
 * matmul f32 (GFLOP/s) against cblas_sgemm on the CPU; elementwise add, mul,
 * exp on 16M floats, row / column / full sums of [4096, 4096] and logsumexp
 * over the last dim of [4096, 1024] (GB/s, bytes read + written) against
 * memcpy (CPU) or a device-to-device loom_copy_ (CUDA) of 64 MiB, counted the
 * same way. Each number is the median of --runs timed runs after a warm-up;
 * a run repeats the op until it lasts at least 50 ms. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <cblas.h>
#include <loom/loom.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_time.h"

#define MIN_RUN_S 0.05
#define BIG (16L << 20)  /* elements of the elementwise / reduction inputs */

typedef enum bench_kind { B_MATMUL, B_SGEMM, B_ADD, B_MUL, B_EXP, B_SUM_ROWS, B_SUM_COLS,
                          B_SUM_ALL, B_LOGSUMEXP, B_MEMCPY, B_DEVCOPY } bench_kind;

typedef struct bench {
  bench_kind kind;
  loom_tensor *a, *b;     /* inputs (b: second operand or copy destination) */
  const float *ha, *hb;   /* host copies for cblas / memcpy */
  float *hc;
  int n;                  /* matrix size for matmul / sgemm */
  size_t bytes;           /* bytes for memcpy */
} bench;

static void fail(const char *what) {
  fprintf(stderr, "loom-bench-core: %s failed: %s\n", what, loom_last_error());
  exit(1);
}

/* Runs the op once; ops that produce a tensor free it at once (scope). */
static void run_once(const bench *b) {
  static const int last = -1, first = 0;
  loom_tensor *out = NULL;
  int produces = 1;
  loom_scope_begin();
  switch (b->kind) {
    case B_MATMUL: out = loom_matmul(b->a, b->b); break;
    case B_ADD: out = loom_add(b->a, b->b); break;
    case B_MUL: out = loom_mul(b->a, b->b); break;
    case B_EXP: out = loom_exp(b->a); break;
    case B_SUM_ROWS: out = loom_sum(b->a, &last, 1, false); break;
    case B_SUM_COLS: out = loom_sum(b->a, &first, 1, false); break;
    case B_SUM_ALL: out = loom_sum(b->a, NULL, 0, false); break;
    case B_LOGSUMEXP: out = loom_logsumexp(b->a, &last, 1, false); break;
    case B_DEVCOPY:
      if (loom_copy_(b->b, b->a) != 0) fail("loom_copy_");
      produces = 0;
      break;
    case B_SGEMM:
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b->n, b->n, b->n, 1.0f, b->ha, b->n,
                  b->hb, b->n, 0.0f, b->hc, b->n);
      produces = 0;
      break;
    case B_MEMCPY:
      memcpy(b->hc, b->ha, b->bytes);
      produces = 0;
      break;
  }
  if (produces && !out) fail("op");
  loom_scope_end();
}

/* Median seconds per call over `runs` runs, after a warm-up. */
static double time_median(const bench *b, loom_device dev, int runs) {
  for (int i = 0; i < 2; i++) run_once(b);
  if (loom_synchronize(dev) != 0) fail("loom_synchronize");
  double t0 = now_s();
  run_once(b);
  loom_synchronize(dev);
  double once = now_s() - t0;
  long iters = once > 0 ? (long)(MIN_RUN_S / once) + 1 : 1000;
  if (iters > 1000) iters = 1000;
  double times[64];
  for (int r = 0; r < runs; r++) {
    loom_synchronize(dev);
    t0 = now_s();
    for (long i = 0; i < iters; i++) run_once(b);
    if (loom_synchronize(dev) != 0) fail("loom_synchronize");
    times[r] = (now_s() - t0) / (double)iters;
  }
  qsort(times, (size_t)runs, sizeof times[0], cmp_double);
  return times[runs / 2];
}

typedef struct report { int json; char device[32]; } report;

static void print_row(const report *rp, const char *name, const char *shape, double loom,
                      const char *ref_name, double ref, const char *unit, double secs) {
  if (rp->json) {
    printf("{\"bench\": \"%s\", \"shape\": \"%s\", \"device\": \"%s\", \"loom\": %.2f, ", name, shape,
           rp->device, loom);
    if (ref_name) printf("\"reference\": \"%s\", \"reference_value\": %.2f, ", ref_name, ref);
    printf("\"unit\": \"%s\", \"median_ms\": %.4f}\n", unit, secs * 1e3);
  } else if (ref_name) {
    printf("%-16s %-16s %10.2f %10.2f  %-8s %6.2f  (%s)\n", name, shape, loom, ref, unit, loom / ref,
           ref_name);
  } else {
    printf("%-16s %-16s %10.2f %10s  %-8s\n", name, shape, loom, "-", unit);
  }
  fflush(stdout);
}

static loom_tensor *random_tensor(loom_shape s, loom_device dev) {
  loom_tensor *t = loom_rand(s, LOOM_F32, dev);
  if (!t) fail("loom_rand");
  return t;
}

static void bench_matmul(const report *rp, loom_device dev, int runs) {
  for (int n = 256; n <= 2048; n *= 2) {
    bench b = {.kind = B_MATMUL, .a = random_tensor(LOOM_SHAPE(n, n), dev),
               .b = random_tensor(LOOM_SHAPE(n, n), dev), .n = n};
    double flop = 2.0 * n * n * (double)n, t = time_median(&b, dev, runs), ref = 0;
    char shape[32];
    snprintf(shape, sizeof shape, "%dx%dx%d", n, n, n);
    if (dev.type == LOOM_CPU) {
      bench s = {.kind = B_SGEMM, .n = n};
      s.ha = loom_data_ptr(b.a);
      s.hb = loom_data_ptr(b.b);
      s.hc = malloc((size_t)n * n * sizeof(float));
      if (!s.hc) fail("malloc");
      ref = flop / time_median(&s, dev, runs) / 1e9;
      free(s.hc);
    }
    print_row(rp, "matmul f32", shape, flop / t / 1e9, dev.type == LOOM_CPU ? "cblas_sgemm" : NULL,
              ref, "GFLOP/s", t);
    loom_release(b.a);
    loom_release(b.b);
  }
}

/* Bandwidth of a plain copy of 64 MiB (bytes read + written) on dev. */
static double copy_bandwidth(loom_device dev, int runs, const char **name) {
  size_t bytes = (size_t)BIG * sizeof(float);
  double t;
  if (dev.type == LOOM_CPU) {
    bench b = {.kind = B_MEMCPY, .bytes = bytes};
    float *src = malloc(bytes), *dst = malloc(bytes);
    if (!src || !dst) fail("malloc");
    memset(src, 1, bytes);
    memset(dst, 0, bytes);
    b.ha = src;
    b.hc = dst;
    t = time_median(&b, dev, runs);
    free(src);
    free(dst);
    *name = "memcpy";
  } else {
    bench b = {.kind = B_DEVCOPY, .a = random_tensor(LOOM_SHAPE(BIG), dev),
               .b = random_tensor(LOOM_SHAPE(BIG), dev)};
    t = time_median(&b, dev, runs);
    loom_release(b.a);
    loom_release(b.b);
    *name = "loom_copy_ d2d";
  }
  return 2.0 * (double)bytes / t / 1e9;
}

static void bench_memory(const report *rp, loom_device dev, int runs) {
  const char *ref_name;
  double ref = copy_bandwidth(dev, runs, &ref_name);
  loom_tensor *x = random_tensor(LOOM_SHAPE(BIG), dev), *y = random_tensor(LOOM_SHAPE(BIG), dev);
  loom_tensor *sq = loom_view(x, LOOM_SHAPE(4096, 4096));
  loom_tensor *rows = random_tensor(LOOM_SHAPE(4096, 1024), dev);
  if (!sq) fail("loom_view");
  const double f = sizeof(float);
  struct {
    const char *name, *shape;
    bench b;
    double bytes;
  } cases[] = {
    {"add f32", "16M", {.kind = B_ADD, .a = x, .b = y}, 3.0 * f * BIG},
    {"mul f32", "16M", {.kind = B_MUL, .a = x, .b = y}, 3.0 * f * BIG},
    {"exp f32", "16M", {.kind = B_EXP, .a = x}, 2.0 * f * BIG},
    {"sum rows", "4096x4096 -> 4096", {.kind = B_SUM_ROWS, .a = sq}, f * (BIG + 4096)},
    {"sum cols", "4096x4096 -> 4096", {.kind = B_SUM_COLS, .a = sq}, f * (BIG + 4096)},
    {"sum all", "4096x4096 -> 1", {.kind = B_SUM_ALL, .a = sq}, f * (BIG + 1)},
    {"logsumexp", "4096x1024 -> 4096", {.kind = B_LOGSUMEXP, .a = rows}, f * (4096.0 * 1024 + 4096)},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    double t = time_median(&cases[i].b, dev, runs);
    print_row(rp, cases[i].name, cases[i].shape, cases[i].bytes / t / 1e9, ref_name, ref, "GB/s", t);
  }
  if (!rp->json) printf("%-16s %-16s %10s %10.2f  %-8s\n", ref_name, "64 MiB", "-", ref, "GB/s");
  loom_release(x);
  loom_release(y);
  loom_release(sq);
  loom_release(rows);
}

int main(int argc, char **argv) {
  loom_device dev = loom_cpu();
  report rp = {0, ""};
  int runs = 5;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) {
      rp.json = 1;
    } else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
      if (!loom_device_parse(argv[++i], &dev)) fail("--device");
    } else if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
      runs = atoi(argv[++i]);
      if (runs < 1 || runs > 64) {
        fprintf(stderr, "loom-bench-core: --runs must be in 1..64\n");
        return 2;
      }
    } else {
      fprintf(stderr, "usage: loom-bench-core [--device cpu|cuda[:N]] [--runs N] [--json]\n");
      return 2;
    }
  }
  if (dev.type == LOOM_CUDA && loom_cuda_device_count() <= dev.index) {
    fprintf(stderr, "loom-bench-core: %s is not available (%d CUDA devices visible)\n",
            loom_device_name(dev), loom_cuda_device_count());
    return 1;
  }
  snprintf(rp.device, sizeof rp.device, "%s", loom_device_name(dev));
  loom_manual_seed(0);
  if (!rp.json) {
    if (dev.type == LOOM_CUDA) {
      loom_device_info info;
      if (loom_cuda_device_info(dev.index, &info) == 0) printf("device: %s (%s)\n", rp.device, info.name);
    } else {
      printf("device: cpu, %d threads\n", loom_num_threads());
    }
    printf("%-16s %-16s %10s %10s  %-8s %6s\n", "benchmark", "shape", "loom", "reference", "unit",
           "ratio");
  }
  bench_matmul(&rp, dev, runs);
  bench_memory(&rp, dev, runs);
  return 0;
}
