/* loom-bench: training or inference throughput of a zoo model.
 *   loom-bench --model NAME [--batch N] [--input 1,28,28] [--mode train|infer] [--steps N] [--warmup N]
 *              [--device cpu|cuda[:N]] [--dtype f32] [--threads N] [--classes N] [--json]
 * --steps counts every step, warm-up included; the figures cover the last steps - warmup.
 * Random input of the model's kind (images / vectors: uniform [0, 1); token
 * models: ids 0 and 1). A training step is forward, a loss (cross-entropy
 * against random labels for [N, C] outputs, else the mean square of the
 * output), backward and an SGD update; an inference step is a forward under
 * no_grad in eval mode. Each step ends with the device synchronised. Figures
 * leave the warm-up steps out; samples/s is samples over wall time.
 * Exit status: 0, 1 when the model fails to build or run, 2 on bad arguments. */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime */
#include <math.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "tool_args.h"

typedef struct opts {
  const char *model, *input, *device, *dtype, *mode;
  long batch, steps, warmup, threads, classes;
  bool json;
} opts;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(FILE *f) {
  fprintf(f, "usage: loom-bench --model NAME [--batch N] [--input 1,28,28] [--mode train|infer] [--steps N]\n"
             "                  [--warmup N] [--device cpu|cuda[:N]] [--dtype f32] [--threads N] [--classes N] [--json]\n"
             "defaults: --batch 32 --mode train --steps 20 --warmup 5 --device cpu, the model's own input;\n"
             "--steps counts every step, the warm-up ones too, so it must exceed --warmup; loom-summary --list\n"
             "names the models\n");
}

static int parse_long(const char *flag, const char *v, long lo, long *out) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || *end || x < lo) {
    fprintf(stderr, "loom-bench: %s needs an integer >= %ld, got '%s'\n", flag, lo, v);
    return -1;
  }
  *out = x;
  return 0;
}

static int parse(int argc, char **argv, opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
    if (!strcmp(a, "--json")) { o->json = true; continue; }
    if (i + 1 >= argc) {
      fprintf(stderr, "loom-bench: unknown or incomplete argument '%s'\n", a);
      return -1;
    }
    const char *v = argv[++i];
    int r = 0;
    if (!strcmp(a, "--model")) o->model = v;
    else if (!strcmp(a, "--input")) o->input = v;
    else if (!strcmp(a, "--device")) o->device = v;
    else if (!strcmp(a, "--dtype")) o->dtype = v;
    else if (!strcmp(a, "--mode")) o->mode = v;
    else if (!strcmp(a, "--batch")) r = parse_long(a, v, 1, &o->batch);
    else if (!strcmp(a, "--steps")) r = parse_long(a, v, 1, &o->steps);
    else if (!strcmp(a, "--warmup")) r = parse_long(a, v, 0, &o->warmup);
    else if (!strcmp(a, "--threads")) r = parse_long(a, v, 1, &o->threads);
    else if (!strcmp(a, "--classes")) r = parse_long(a, v, 1, &o->classes);
    else {
      fprintf(stderr, "loom-bench: unknown argument '%s'\n", a);
      return -1;
    }
    if (r) return -1;
  }
  if (!o->model) return fprintf(stderr, "loom-bench: --model is required\n"), -1;
  if (strcmp(o->mode, "train") && strcmp(o->mode, "infer"))
    return fprintf(stderr, "loom-bench: --mode must be train or infer, got '%s'\n", o->mode), -1;
  if (strcmp(o->dtype, "f32"))
    return fprintf(stderr, "loom-bench: --dtype %s is not supported yet (f32 only)\n", o->dtype), -1;
  if (o->steps <= o->warmup)
    return fprintf(stderr, "loom-bench: --steps (%ld) must be larger than --warmup (%ld): the warm-up steps are "
                           "not timed\n", o->steps, o->warmup), -1;
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The q-quantile (0..1) of n sorted values, nearest rank. */
static double quantile(const double *v, long n, double q) {
  long i = (long)ceil(q * (double)n) - 1;
  return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* One step; returns 0 or an error status. */
static int step(loom_module *m, loom_optimizer *opt, const loom_tensor *x, loom_device dev, bool train) {
  loom_scope_begin();
  loom_tensor *out = loom_forward(m, x);
  int st = out ? 0 : (int)loom_last_status();
  if (!st && train) {
    loom_shape s = loom_shape_of(out);
    loom_tensor *loss;
    if (s.ndim == 2) {
      loom_tensor *y = loom_randint(0, s.d[1], LOOM_SHAPE(s.d[0]), LOOM_I64, dev);
      loss = loom_cross_entropy(out, y, NULL);
    } else {
      loss = loom_mean(loom_mul(out, out), NULL, 0, false);
    }
    st = loss ? loom_backward(loss, NULL, false) : (int)loom_last_status();
    if (!st) st = loom_optimizer_step(opt);
    loom_optimizer_zero_grad(opt);
  }
  if (!st) st = loom_synchronize(dev);
  loom_scope_end();
  return st;
}

int main(int argc, char **argv) {
  double t_start = now_s();
  opts o = {NULL, NULL, "cpu", "f32", "train", 32, 20, 5, 0, 0, false};
  if (parse(argc, argv, &o)) {
    usage(stderr);
    return 2;
  }
  const loom_model_info *info = loom_model_find(o.model);
  if (!info) {
    fprintf(stderr, "loom-bench: %s\n", loom_last_error());
    return 2;
  }
  if (info->kind == LOOM_INPUT_GRAPH) {
    fprintf(stderr, "loom-bench: %s takes a graph (two inputs); loom-bench runs one-input models so far\n", o.model);
    return 2;
  }
  char dflt[64];
  default_input(info, dflt, sizeof dflt);
  loom_shape shape;
  if (!parse_shape(o.input ? o.input : dflt, &shape, o.batch)) {
    fprintf(stderr, "loom-bench: --input needs positive sizes separated by commas, got '%s'\n", o.input);
    return 2;
  }
  loom_device dev;
  if (!loom_device_parse(o.device, &dev)) {
    fprintf(stderr, "loom-bench: bad --device '%s': %s\n", o.device, loom_last_error());
    return 2;
  }
  if (o.threads) loom_set_num_threads((int)o.threads);
  loom_model_opts mo = {.num_classes = o.classes};
  if (info->kind == LOOM_INPUT_TENSOR && info->input[1] && shape.ndim == 4) mo.in_channels = shape.d[1];
  bool train = !strcmp(o.mode, "train");
  loom_manual_seed(1);
  loom_module *m = loom_model_create(o.model, &mo);
  loom_optimizer *opt = NULL;
  loom_tensor *x = NULL;
  double *t = calloc((size_t)o.steps, sizeof *t);
  int rc = 1;
  if (!m || !t || loom_module_to_device(m, dev)) goto fail;
  int64_t macs = loom_module_macs(m, shape, info->kind == LOOM_INPUT_TOKENS ? LOOM_I64 : LOOM_F32, dev);
  if (macs < 0) goto fail;
  x = info->kind == LOOM_INPUT_TOKENS ? loom_randint(0, 2, shape, LOOM_I64, dev) : loom_rand(shape, LOOM_F32, dev);
  if (train) opt = loom_sgd_module(m, &(loom_sgd_opts){.lr = 1e-3});
  if (!x || (train && !opt)) goto fail;
  loom_module_train(m, train);
  if (!train) loom_no_grad_begin();
  double first_output = 0;
  for (long i = 0; i < o.steps; i++) {
    double t0 = now_s();
    if (step(m, opt, x, dev, train)) goto fail;
    t[i] = now_s() - t0;
    if (i == 0) first_output = now_s() - t_start;
    if (o.json && i >= o.warmup)
      printf("{\"step\": %ld, \"seconds\": %.6f, \"samples_per_s\": %.2f}\n", i - o.warmup, t[i], o.batch / t[i]);
  }
  if (!train) loom_no_grad_end();

  long n = o.steps - o.warmup;
  double *timed = t + o.warmup, total = 0;
  for (long i = 0; i < n; i++) total += timed[i];
  qsort(timed, (size_t)n, sizeof *timed, cmp_double);
  double sps = (double)(o.batch * n) / total, mean = total / (double)n;
  double flops_sample = 2.0 * (double)macs / (double)o.batch;
  double flops_step = flops_sample * (double)o.batch * (train ? 3 : 1);   /* training: forward + 2x for backward */
  int64_t params = loom_module_num_params(m, false);
  loom_memory_stats mem = {0};
  loom_memory_stats_get(dev, &mem);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  char versions[1024];
  loom_versions(versions, sizeof versions);
  for (char *p = versions; (p = strchr(p, '\n'));) *p = ';';
  if (o.json) {
    printf("{\"summary\": true, \"model\": \"%s\", \"mode\": \"%s\", \"device\": \"%s\", \"dtype\": \"%s\", "
           "\"batch\": %ld, \"input\": \"%s\", \"threads\": %d, \"timed_steps\": %ld, \"warmup\": %ld, "
           "\"samples_per_s\": %.3f, \"step_ms_mean\": %.4f, \"step_ms_p50\": %.4f, \"step_ms_p90\": %.4f, "
           "\"step_ms_p99\": %.4f, \"first_step_ms\": %.3f, \"first_output_from_start_ms\": %.3f, "
           "\"params\": %lld, \"param_bytes\": %lld, \"macs_per_sample\": %.0f, \"flops_per_sample\": %.0f, "
           "\"flops_per_step\": %.0f, \"achieved_tflops\": %.6f, \"mfu\": null, "
           "\"mfu_why\": \"no peak for this device yet\", \"mem_allocated\": %zu, \"mem_reserved\": %zu, "
           "\"mem_peak\": %zu, \"peak_rss_kb\": %ld, \"versions\": \"%s\"}\n",
           o.model, o.mode, loom_device_name(dev), o.dtype, o.batch, loom_shape_str(shape), loom_num_threads(),
           n, o.warmup, sps, 1e3 * mean, 1e3 * quantile(timed, n, 0.5), 1e3 * quantile(timed, n, 0.9),
           1e3 * quantile(timed, n, 0.99), 1e3 * t[0], 1e3 * first_output, (long long)params,
           (long long)params * 4, (double)macs / (double)o.batch, flops_sample, flops_step,
           flops_step * (double)n / total / 1e12, mem.allocated, mem.reserved, mem.peak_allocated, ru.ru_maxrss,
           versions);
  } else {
    printf("loom-bench: %s, %s, batch %ld, input %s, %s f32, %d threads; %ld timed steps after %ld warm-up\n", o.model,
           o.mode, o.batch, loom_shape_str(shape), loom_device_name(dev), loom_num_threads(), n, o.warmup);
    printf("  samples/s          %.1f\n", sps);
    printf("  step time          mean %.3f ms, p50 %.3f, p90 %.3f, p99 %.3f\n", 1e3 * mean,
           1e3 * quantile(timed, n, 0.5), 1e3 * quantile(timed, n, 0.9), 1e3 * quantile(timed, n, 0.99));
    printf("  first step         %.3f ms (first output %.3f ms after process start)\n", 1e3 * t[0],
           1e3 * first_output);
    printf("  parameters         %lld (%.2f MB in f32)\n", (long long)params, (double)params * 4 / 1e6);
    printf("  per sample         %.4g MACs, %.4g FLOPs (forward)%s\n", (double)macs / (double)o.batch, flops_sample,
           train ? "; a training step counts 3x" : "");
    printf("  achieved           %.4f TFLOP/s; MFU unavailable (no peak for this device yet)\n",
           flops_step * (double)n / total / 1e12);
    printf("  memory             %s: %.1f MB allocated, %.1f MB reserved, %.1f MB peak; peak RSS %.1f MB\n",
           loom_device_name(dev), mem.allocated / 1e6, mem.reserved / 1e6, mem.peak_allocated / 1e6,
           ru.ru_maxrss / 1e3);
  }
  rc = 0;
  goto done;
fail:
  fprintf(stderr, "loom-bench: %s: %s\n", o.model, loom_last_error());
done:
  loom_release(x);
  loom_optimizer_free(opt);
  loom_module_free(m);
  free(t);
  return rc;
}
