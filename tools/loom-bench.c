/* loom-bench: training or inference throughput, latency, compute, memory and
 * energy of a zoo model (docs/tools.md; tools/bench_torch.py is its PyTorch twin).
 *   loom-bench --model NAME [--batch N] [--input 1,28,28] [--mode train|infer] [--steps N] [--warmup N]
 *              [--device cpu|cuda[:N]] [--dtype f32|tf32|bf16|f16] [--threads N] [--classes N]
 *              [--latency-steps N] [--loader WORKERS] [--peak-tflops X] [--profile] [--json | --csv]
 * --profile runs up to 10 more steps under the op profiler and the layer
 * profile (loom/profile.h) and prints the top ops and layers.
 * --steps counts every step, warm-up included; the figures cover the last steps - warmup.
 * Random input of the model's kind (images / vectors / sequences: uniform
 * [0, 1); token models: ids 0 and 1; graphs: node features and a random
 * adjacency). A training step is forward, a loss (cross-entropy against random
 * labels for [N, C] outputs and for a token model's [N, L, V], else the mean
 * square of the output), backward and an SGD update; an inference step is a
 * forward under no_grad in eval mode. Each step ends with the device
 * synchronised. Under mpirun / torchrun / srun every rank runs the benchmark
 * (training through loom_ddp_new) and rank 0 prints the global figures.
 * Exit status: 0, 1 when the model fails to build or run, 2 on bad arguments. */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime */
#include <string.h>
#include <sys/resource.h>

#include "bench_metrics.h"
#include "tool_args.h"

typedef struct opts {
  const char *model, *input, *device, *dtype, *mode;
  long batch, steps, warmup, threads, classes, latency_steps, loader;
  double peak_tflops;
  bool json, csv, profile, batch_given, device_given;
} opts;

static void usage(FILE *f) {
  fprintf(f, "usage: loom-bench --model NAME [--batch N] [--input 1,28,28] [--mode train|infer] [--steps N]\n"
             "                  [--warmup N] [--device cpu|cuda[:N]] [--dtype f32|tf32|bf16|f16] [--threads N]\n"
             "                  [--classes N] [--latency-steps N] [--loader WORKERS] [--peak-tflops X] [--profile]\n"
             "                  [--json | --csv]\n"
             "defaults: --batch 32 --mode train --steps 20 --warmup 5 --device cpu --dtype f32 --latency-steps 50,\n"
             "the model's own input; --steps counts every step, the warm-up ones too, so it must exceed --warmup;\n"
             "bf16 / f16 run under autocast with f32 master weights (f16 training with loss scaling), tf32 is CUDA's;\n"
             "--loader feeds the batches through loom_loader with that many workers; loom-summary --list names the\n"
             "models\n");
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
    if (!strcmp(a, "--csv")) { o->csv = true; continue; }
    if (!strcmp(a, "--profile")) { o->profile = true; continue; }
    if (i + 1 >= argc) {
      fprintf(stderr, "loom-bench: unknown or incomplete argument '%s'\n", a);
      return -1;
    }
    const char *v = argv[++i];
    int r = 0;
    if (!strcmp(a, "--model")) o->model = v;
    else if (!strcmp(a, "--input")) o->input = v;
    else if (!strcmp(a, "--device")) o->device = v, o->device_given = true;
    else if (!strcmp(a, "--dtype")) o->dtype = v;
    else if (!strcmp(a, "--mode")) o->mode = v;
    else if (!strcmp(a, "--batch")) r = parse_long(a, v, 1, &o->batch), o->batch_given = true;
    else if (!strcmp(a, "--steps")) r = parse_long(a, v, 1, &o->steps);
    else if (!strcmp(a, "--warmup")) r = parse_long(a, v, 0, &o->warmup);
    else if (!strcmp(a, "--threads")) r = parse_long(a, v, 1, &o->threads);
    else if (!strcmp(a, "--classes")) r = parse_long(a, v, 1, &o->classes);
    else if (!strcmp(a, "--latency-steps")) r = parse_long(a, v, 0, &o->latency_steps);
    else if (!strcmp(a, "--loader")) r = parse_long(a, v, 0, &o->loader);
    else if (!strcmp(a, "--peak-tflops")) {
      char *end;
      o->peak_tflops = strtod(v, &end);
      if (*end || !(o->peak_tflops > 0))
        return fprintf(stderr, "loom-bench: --peak-tflops needs a number > 0, got '%s'\n", v), -1;
    } else {
      fprintf(stderr, "loom-bench: unknown argument '%s'\n", a);
      return -1;
    }
    if (r) return -1;
  }
  if (!o->model) return fprintf(stderr, "loom-bench: --model is required\n"), -1;
  if (strcmp(o->mode, "train") && strcmp(o->mode, "infer"))
    return fprintf(stderr, "loom-bench: --mode must be train or infer, got '%s'\n", o->mode), -1;
  if (strcmp(o->dtype, "f32") && strcmp(o->dtype, "tf32") && strcmp(o->dtype, "bf16") && strcmp(o->dtype, "f16"))
    return fprintf(stderr, "loom-bench: --dtype must be f32, tf32, bf16 or f16, got '%s'\n", o->dtype), -1;
  if (o->steps <= o->warmup)
    return fprintf(stderr, "loom-bench: --steps (%ld) must be larger than --warmup (%ld): the warm-up steps are "
                           "not timed\n", o->steps, o->warmup), -1;
  if (o->json && o->csv) return fprintf(stderr, "loom-bench: --json and --csv exclude each other\n"), -1;
  if (o->profile && o->csv)
    return fprintf(stderr, "loom-bench: --profile prints tables: use it with the default output or --json\n"), -1;
  return 0;
}

/* What one step needs. */
typedef struct bench {
  const loom_model_info *info;
  loom_module *net;                /* the model, or its DDP wrapper */
  loom_optimizer *opt;
  loom_grad_scaler *scaler;        /* f16 training */
  loom_device dev;
  loom_dtype amp;                  /* autocast dtype; LOOM_F32 = none */
  bool train;
  loom_tensor *in[2];
  int n_in;
  loom_loader *loader;             /* --loader: batches come from here */
  int64_t epoch;
  double wait_s;                   /* this step's wait for the loader */
} bench;

static loom_tensor *make_loss(const bench *b, loom_tensor *out) {
  loom_shape s = loom_shape_of(out);
  if (s.ndim == 2) return loom_cross_entropy(out, loom_randint(0, s.d[1], LOOM_SHAPE(s.d[0]), LOOM_I64, b->dev), NULL);
  if (s.ndim == 3 && b->info->kind == LOOM_INPUT_TOKENS) {   /* a language model's [N, L, V] */
    loom_tensor *flat = loom_reshape(out, LOOM_SHAPE(s.d[0] * s.d[1], s.d[2]));
    loom_tensor *y = loom_randint(0, s.d[2], LOOM_SHAPE(s.d[0] * s.d[1]), LOOM_I64, b->dev);
    return flat && y ? loom_cross_entropy(flat, y, NULL) : NULL;
  }
  return loom_mean(loom_mul(out, out), NULL, 0, false);
}

static int next_batch(bench *b, loom_tensor **x) {
  double t0 = now_s();
  loom_tensor *y;
  bool ok = loom_loader_next(b->loader, x, &y);
  if (!ok && loom_last_status() == LOOM_OK && loom_loader_start_epoch(b->loader, ++b->epoch) == 0)
    ok = loom_loader_next(b->loader, x, &y);
  b->wait_s = now_s() - t0;
  return ok ? 0 : loom_last_status() ? (int)loom_last_status() : LOOM_ERR_INTERNAL;
}

/* One step on in (NULL: b's input or the loader's batch); returns 0 or an error status. */
static int step(bench *b, loom_tensor *const *in) {
  loom_scope_begin();
  loom_tensor *x[2] = {b->in[0], b->in[1]};
  int st = 0;
  if (in) x[0] = in[0], x[1] = in[1];
  else if (b->loader) st = next_batch(b, &x[0]);
  bool amp = !st && b->amp != LOOM_F32;
  if (amp) st = loom_autocast_begin(b->dev.type, b->amp);
  loom_tensor *out = st ? NULL : loom_forward_n(b->net, x, b->n_in), *loss = NULL;
  if (!st && !out) st = (int)loom_last_status();
  if (!st && b->train && !(loss = make_loss(b, out))) st = (int)loom_last_status();
  if (amp) loom_autocast_end();
  if (!st && b->train) {
    if (b->scaler) {
      loom_tensor *scaled = loom_grad_scaler_scale(b->scaler, loss);
      st = scaled ? loom_backward(scaled, NULL, false) : (int)loom_last_status();
      if (!st) st = loom_grad_scaler_step(b->scaler, b->opt, NULL);
      if (!st) st = loom_grad_scaler_update(b->scaler);
    } else {
      st = loom_backward(loss, NULL, false);
      if (!st) st = loom_optimizer_step(b->opt);
    }
    loom_optimizer_zero_grad(b->opt);
  }
  if (!st) st = loom_synchronize(b->dev);
  loom_scope_end();
  return st;
}

/* Random input of the model's kind: x [shape] (and the adjacency for graphs). */
static int make_input(const loom_model_info *info, loom_shape shape, loom_device dev, loom_tensor **in) {
  if (info->kind == LOOM_INPUT_TOKENS) in[0] = loom_randint(0, 2, shape, LOOM_I64, dev);
  else in[0] = loom_rand(shape, LOOM_F32, dev);
  if (info->kind == LOOM_INPUT_GRAPH) in[1] = loom_rand(LOOM_SHAPE(shape.d[0], shape.d[0]), LOOM_F32, dev);
  return info->kind == LOOM_INPUT_GRAPH ? 2 : 1;
}

/* ---- the summary's fields, printed as JSON or CSV ---- */
typedef struct field { const char *key; char val[600]; } field;
typedef struct fields { field f[72]; int n; } fields;

static void put_raw(fields *fs, const char *key, const char *val) {
  if (fs->n == (int)(sizeof fs->f / sizeof fs->f[0])) return;
  fs->f[fs->n].key = key;
  snprintf(fs->f[fs->n++].val, sizeof fs->f[0].val, "%s", val);
}
static void put_num(fields *fs, const char *key, double v, int digits) {
  char b[64];
  if (isnan(v)) snprintf(b, sizeof b, "null");
  else snprintf(b, sizeof b, "%.*f", digits, v);
  put_raw(fs, key, b);
}
static void put_int(fields *fs, const char *key, long long v) {
  char b[32];
  snprintf(b, sizeof b, "%lld", v);
  put_raw(fs, key, b);
}
/* A JSON string (NULL = null); control characters become spaces. */
static void put_str(fields *fs, const char *key, const char *s) {
  if (!s) return put_raw(fs, key, "null");
  char b[600];
  size_t n = 0;
  b[n++] = '"';
  for (; *s && n < sizeof b - 3; s++) {
    if (*s == '"' || *s == '\\') b[n++] = '\\';
    b[n++] = (unsigned char)*s < 0x20 ? ' ' : *s;
  }
  b[n++] = '"';
  b[n] = 0;
  put_raw(fs, key, b);
}

static void print_json(const fields *fs, const char *first) {
  printf("{\"%s\": true", first);
  for (int i = 0; i < fs->n; i++) printf(", \"%s\": %s", fs->f[i].key, fs->f[i].val);
  printf("}\n");
}

/* CSV: the keys, then the values (strings quoted with "" inside, null empty). */
static void print_csv(const fields *fs) {
  for (int i = 0; i < fs->n; i++) printf("%s%s", i ? "," : "", fs->f[i].key);
  printf("\n");
  for (int i = 0; i < fs->n; i++) {
    const char *v = fs->f[i].val;
    printf("%s", i ? "," : "");
    if (!strcmp(v, "null")) continue;
    if (*v != '"') {
      printf("%s", v);
      continue;
    }
    putchar('"');
    for (const char *p = v + 1; p[1]; p++) {
      if (*p == '\\') p++;
      if (*p == '"') putchar('"');
      putchar(*p);
    }
    putchar('"');
  }
  printf("\n");
}

/* Step-time figures of n values (sorted in place): mean, p50, p90, p99 in ms. */
static void time_stats(double *v, long n, double out[4]) {
  double total = 0;
  for (long i = 0; i < n; i++) total += v[i];
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  out[0] = 1e3 * total / (double)n;
  out[1] = 1e3 * quantile(v, n, 0.5);
  out[2] = 1e3 * quantile(v, n, 0.9);
  out[3] = 1e3 * quantile(v, n, 0.99);
}

static int64_t param_bytes(loom_module *m) {
  loom_named_tensors *l = loom_module_named_parameters(m);
  int64_t bytes = 0;
  for (int i = 0; l && i < l->n; i++)
    bytes += loom_numel(l->tensors[i]) * (int64_t)loom_dtype_size(loom_dtype_of(l->tensors[i]));
  loom_named_tensors_free(l);
  return bytes;
}

static int by_self_ms(const void *a, const void *b) {
  double x = ((const loom_layer_stat *)a)->self_ms, y = ((const loom_layer_stat *)b)->self_ms;
  return (x < y) - (x > y);
}

/* The top ops and the layers with the most time of their own, of the profiled steps. */
static void print_profile(bool json, long steps) {
  enum { TOP = 15 };
  int n_ops = loom_profiler_ops(NULL, 0), n_layers = loom_layer_profile_stats(NULL, 0);
  loom_op_stat *ops = calloc((size_t)(n_ops > 0 ? n_ops : 1), sizeof *ops);
  loom_layer_stat *layers = calloc((size_t)(n_layers > 0 ? n_layers : 1), sizeof *layers);
  if (!ops || !layers || n_ops < 0 || n_layers < 0) {
    fprintf(stderr, "loom-bench: the profile could not be read: %s\n", ops && layers ? loom_last_error() : "out of memory");
    free(ops), free(layers);
    return;
  }
  loom_profiler_ops(ops, n_ops);
  loom_layer_profile_stats(layers, n_layers);
  qsort(layers, (size_t)n_layers, sizeof *layers, by_self_ms);
  double total = 0;
  for (int i = 0; i < n_ops; i++) total += ops[i].total_ms;
  if (!json) {
    printf("profile of %ld steps after the timed ones (top %d ops by time):\n", steps, TOP);
    loom_profiler_print(stdout, TOP);
    printf("modules with the most forward time of their own (%d of %d):\n", n_layers < TOP ? n_layers : TOP, n_layers);
    printf("  %-32s %-20s %8s %12s %12s %12s\n", "module", "type", "calls", "self ms", "total ms", "kept MB");
  }
  for (int i = 0; json && i < n_ops && i < TOP; i++)
    printf("{\"op\": \"%s\", \"device\": \"%s\", \"calls\": %lld, \"total_ms\": %.4f, \"share\": %.4f}\n", ops[i].op,
           ops[i].device == LOOM_CUDA ? "cuda" : "cpu", (long long)ops[i].calls, ops[i].total_ms,
           total > 0 ? ops[i].total_ms / total : 0);
  for (int i = 0; i < n_layers && i < TOP; i++) {
    const loom_layer_stat *l = &layers[i];
    if (json)
      printf("{\"layer\": \"%s\", \"type\": \"%s\", \"calls\": %lld, \"self_ms\": %.4f, \"total_ms\": %.4f, "
             "\"kept_bytes\": %lld, \"peak_bytes\": %lld}\n", l->name, l->type, (long long)l->calls, l->self_ms,
             l->total_ms, (long long)l->kept_bytes, (long long)l->peak_bytes);
    else
      printf("  %-32s %-20s %8lld %12.3f %12.3f %12.3f\n", *l->name ? l->name : "(model)", l->type,
             (long long)l->calls, l->self_ms, l->total_ms, (double)l->kept_bytes / 1e6);
  }
  free(ops);
  free(layers);
}

/* The sum over ranks of v (v itself in a world of one). */
static double sum_over_ranks(double v) {
  if (loom_dist_world_size() == 1) return v;
  loom_scope_begin();
  loom_tensor *t = loom_from_host(&v, LOOM_SHAPE(1), LOOM_F64, loom_dist_device());
  if (!t || loom_all_reduce(t, LOOM_REDUCE_SUM) || loom_to_host(t, &v, sizeof v)) v = NAN;
  loom_scope_end();
  return v;
}

int main(int argc, char **argv) {
  double t_start = now_s();
  opts o = {NULL, NULL, "cpu", "f32", "train", 32, 20, 5, 0, 0, 50, -1, 0, false, false, false, false, false};
  if (parse(argc, argv, &o)) {
    usage(stderr);
    return 2;
  }
  const loom_model_info *info = loom_model_find(o.model);
  if (!info) {
    fprintf(stderr, "loom-bench: %s\n", loom_last_error());
    return 2;
  }
  bool graph = info->kind == LOOM_INPUT_GRAPH;
  char dflt[64];
  default_input(info, dflt, sizeof dflt);
  loom_shape shape;
  if (!parse_shape(o.input ? o.input : dflt, &shape, graph ? 1 : o.batch)) {
    fprintf(stderr, "loom-bench: --input needs positive sizes separated by commas, got '%s'\n", o.input);
    return 2;
  }
  if (graph) {   /* one graph per step; its nodes are the samples */
    if (shape.ndim != 3 || (o.batch_given && o.batch != shape.d[1])) {
      fprintf(stderr, "loom-bench: %s takes --input NODES,FEATURES (one graph per step, its nodes the samples; "
                      "no --batch)\n", o.model);
      return 2;
    }
    shape = LOOM_SHAPE(shape.d[1], shape.d[2]);
    o.batch = shape.d[0];
  }
  if (o.loader >= 0 && info->kind != LOOM_INPUT_TENSOR && info->kind != LOOM_INPUT_SEQUENCE) {
    fprintf(stderr, "loom-bench: --loader feeds float samples; %s takes %s\n", o.model,
            graph ? "a graph" : "token ids");
    return 2;
  }
  loom_device dev;
  if (!loom_device_parse(o.device, &dev)) {
    fprintf(stderr, "loom-bench: bad --device '%s': %s\n", o.device, loom_last_error());
    return 2;
  }
  bool tf32 = !strcmp(o.dtype, "tf32");
  loom_dtype amp = !strcmp(o.dtype, "bf16") ? LOOM_BF16 : !strcmp(o.dtype, "f16") ? LOOM_F16 : LOOM_F32;
  if (tf32 && dev.type != LOOM_CUDA) {
    fprintf(stderr, "loom-bench: --dtype tf32 is a CUDA mode (TF32 tensor cores); the CPU runs f32\n");
    return 2;
  }
  if (o.threads) loom_set_num_threads((int)o.threads);
  loom_set_tf32(tf32);
  /* Under a launcher every rank benchmarks; "cuda" is then the rank's GPU. */
  if (loom_dist_init(&(loom_dist_opts){.device = o.device_given ? o.device : "cpu", .quiet = true})) {
    fprintf(stderr, "loom-bench: %s\n", loom_last_error());
    return 1;
  }
  int world = loom_dist_world_size(), rank = loom_dist_rank();
  if (world > 1) dev = loom_dist_device();
  bool lead = rank == 0, train = !strcmp(o.mode, "train");

  loom_model_opts mo = {.num_classes = o.classes};
  if (info->kind == LOOM_INPUT_TENSOR && info->input[1] && shape.ndim == 4) mo.in_channels = shape.d[1];
  loom_manual_seed(1);
  loom_module *m = loom_model_create(o.model, &mo);
  bench b = {.info = info, .net = m, .dev = dev, .amp = amp, .train = train};
  loom_tensor *one[2] = {NULL, NULL};   /* a single sample, for latency */
  loom_dataset *ds = NULL;
  loom_summary_stats ss = {0};
  energy_meter em;
  energy_open(&em, dev);
  double *t = calloc((size_t)o.steps, sizeof *t), *wait = calloc((size_t)o.steps, sizeof *wait);
  double *lat = calloc((size_t)(o.latency_steps ? o.latency_steps : 1), sizeof *lat);
  int rc = 1;
  if (!m || !t || !wait || !lat || loom_module_to_device(m, dev)) goto fail;
  b.n_in = make_input(info, shape, dev, b.in);
  if (!b.in[0] || (graph && !b.in[1])) goto fail;
  int64_t params = loom_module_num_params(m, false), pbytes = param_bytes(m);
  if (train && world > 1 && !(b.net = loom_ddp_new(m, NULL))) goto fail;
  if (train && !(b.opt = loom_sgd_module(b.net, &(loom_sgd_opts){.lr = 1e-3}))) goto fail;
  if (train && amp == LOOM_F16 && !(b.scaler = loom_grad_scaler_new(NULL))) goto fail;
  if (o.loader >= 0) {
    loom_shape sample = shape;
    sample.ndim--;
    memmove(sample.d, shape.d + 1, (size_t)sample.ndim * sizeof sample.d[0]);
    ds = loom_dataset_synthetic(4 * o.batch, sample, 2, 1);
    loom_loader_opts lo = {.batch_size = o.batch, .workers = (int)o.loader, .device = dev, .world_size = 1};
    if (!ds || !(b.loader = loom_loader_new(ds, &lo))) goto fail;
  }
  char name[256], versions[2048], settings[1024] = "";
  device_name(dev, name, sizeof name);
  loom_versions(versions, sizeof versions);
  for (char *p = versions; (p = strchr(p, '\n'));) *p = (p[1] ? ';' : 0);
  for (int i = 1, len = 0; i < argc && len < (int)sizeof settings; i++)
    len += snprintf(settings + len, sizeof settings - (size_t)len, "%s%s", i > 1 ? " " : "", argv[i]);
  if (lead && o.json) {
    fields h = {0};
    put_str(&h, "framework", "loom");
    put_str(&h, "version", LOOM_VERSION_STRING);
    put_str(&h, "commit", loom_commit());
    put_str(&h, "device", loom_device_name(dev));
    put_str(&h, "device_name", name);
    put_str(&h, "versions", versions);
    put_int(&h, "threads", loom_num_threads());
    put_int(&h, "world_size", world);
    put_str(&h, "settings", settings);
    print_json(&h, "header");
  } else if (lead && !o.csv) {
    printf("loom-bench: Loom %s (commit %s) on %s (%s), %d threads, world size %d\n  versions: %s\n  settings: %s\n",
           LOOM_VERSION_STRING, loom_commit(), name, loom_device_name(dev), loom_num_threads(), world, versions,
           settings);
  }

  loom_module_train(m, train);
  if (!train) loom_no_grad_begin();
  double first_output = 0, e0 = -1, e1 = -1;
  for (long i = 0; i < o.steps; i++) {
    if (i == o.warmup) e0 = energy_read(&em);
    double t0 = now_s();
    if (step(&b, NULL)) goto fail;
    t[i] = now_s() - t0;
    wait[i] = b.wait_s;
    if (i == 0) first_output = now_s() - t_start;
    if (lead && o.json && i >= o.warmup)
      printf("{\"step\": %ld, \"seconds\": %.6f, \"samples_per_s\": %.2f}\n", i - o.warmup, t[i], o.batch / t[i]);
  }
  e1 = energy_read(&em);
  /* Latency: single-sample forwards (a graph's one forward), warm-up first. */
  bool latency = !train && o.latency_steps > 0;
  if (latency) {
    loom_shape s1 = shape;
    s1.d[0] = 1;
    if (!graph && (make_input(info, s1, dev, one), !one[0])) goto fail;
    for (long i = 0; i < o.warmup + o.latency_steps; i++) {
      double t0 = now_s();
      if (step(&b, graph ? b.in : one)) goto fail;
      if (i >= o.warmup) lat[i - o.warmup] = now_s() - t0;
    }
  }
  /* --profile: up to 10 more steps under the op profiler and the layer profile. */
  long profiled = o.profile ? (o.steps - o.warmup < 10 ? o.steps - o.warmup : 10) : 0;
  if (profiled && (loom_profiler_start() || loom_layer_profile_start(m))) goto fail;
  for (long i = 0; i < profiled; i++)
    if (step(&b, NULL)) goto fail;
  if (profiled && (loom_profiler_stop() || loom_layer_profile_stop())) goto fail;
  if (!train) loom_no_grad_end();
  /* After the timed work, so that the first output counts only what a user's first forward waits for. */
  if (loom_summary_stats_get_n(m, b.in, b.n_in, &ss)) goto fail;
  char peak_source[256];
  double peak = o.peak_tflops;
  if (peak > 0) snprintf(peak_source, sizeof peak_source, "given: --peak-tflops");
  else peak = device_peak(dev, amp, tf32, peak_source, sizeof peak_source);

  long n = o.steps - o.warmup;
  double total = 0, wait_total = 0, st4[4], lat4[4] = {NAN, NAN, NAN, NAN};
  for (long i = o.warmup; i < o.steps; i++) total += t[i], wait_total += wait[i];
  double first_step = t[0];
  time_stats(t + o.warmup, n, st4);
  if (latency) time_stats(lat, o.latency_steps, lat4);
  double sps = (double)(o.batch * n) / total;
  double global_sps = sum_over_ranks(sps);
  double flops_sample = (double)ss.flops / (double)o.batch;
  double flops_step = flops_sample * (double)o.batch * (train ? 3 : 1);   /* training: forward + 2x for backward */
  double achieved = flops_step * (double)n / total / 1e12;
  double joules = e0 >= 0 && e1 >= e0 ? e1 - e0 : NAN;
  loom_memory_stats mem = {0};
  loom_memory_stats_get(dev, &mem);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const char *unit = info->kind == LOOM_INPUT_TOKENS ? "tokens" : graph ? "nodes"
                     : info->kind == LOOM_INPUT_TENSOR && shape.ndim == 4 ? "images" : "samples";
  double tokens_s = info->kind == LOOM_INPUT_TOKENS ? sps * (double)shape.d[1] : NAN;
  const char *latency_why = latency ? NULL : train ? "measured in --mode infer" : "--latency-steps 0";
  const char *loader_why = b.loader ? NULL : "input already in a tensor on the device (--loader N to measure the wait)";
  const char *energy_why = em.source ? (isnan(joules) ? "the energy counter could not be read" : NULL) : em.why;
  if (world > 1 && o.json)
    printf("{\"rank\": %d, \"samples_per_s\": %.3f, \"step_ms_mean\": %.4f}\n", rank, sps, st4[0]);
  else if (world > 1 && !o.csv)
    printf("rank %d: %.1f %s/s, step time mean %.3f ms\n", rank, info->kind == LOOM_INPUT_TOKENS ? tokens_s : sps, unit, st4[0]);

  if (lead && profiled && o.json) print_profile(true, profiled);   /* the summary stays the last line */
  if (lead && (o.json || o.csv)) {
    fields s = {0};
    put_str(&s, "framework", "loom");
    put_str(&s, "model", o.model);
    put_str(&s, "mode", o.mode);
    put_str(&s, "device", loom_device_name(dev));
    put_str(&s, "device_name", name);
    put_str(&s, "dtype", o.dtype);
    put_int(&s, "batch", o.batch);
    put_str(&s, "input", loom_shape_str(shape));
    put_int(&s, "threads", loom_num_threads());
    put_int(&s, "world_size", world);
    put_int(&s, "timed_steps", n);
    put_int(&s, "warmup", o.warmup);
    put_str(&s, "unit", unit);
    put_num(&s, "samples_per_s", sps, 3);
    put_num(&s, "global_samples_per_s", global_sps, 3);
    put_num(&s, "tokens_per_s", tokens_s, 3);
    put_num(&s, "batches_per_s", sps / (double)o.batch, 4);
    put_num(&s, "step_ms_mean", st4[0], 4);
    put_num(&s, "step_ms_p50", st4[1], 4);
    put_num(&s, "step_ms_p90", st4[2], 4);
    put_num(&s, "step_ms_p99", st4[3], 4);
    put_num(&s, "first_step_ms", 1e3 * first_step, 3);
    put_num(&s, "first_output_from_start_ms", 1e3 * first_output, 3);
    put_int(&s, "latency_steps", latency ? o.latency_steps : 0);
    put_num(&s, "latency_ms_mean", lat4[0], 4);
    put_num(&s, "latency_ms_p50", lat4[1], 4);
    put_num(&s, "latency_ms_p90", lat4[2], 4);
    put_num(&s, "latency_ms_p99", lat4[3], 4);
    put_str(&s, "latency_why", latency_why);
    put_int(&s, "params", params);
    put_int(&s, "param_bytes", pbytes);
    put_num(&s, "macs_per_sample", (double)ss.macs / (double)o.batch, 0);
    put_num(&s, "flops_per_sample", flops_sample, 0);
    put_num(&s, "flops_per_step", flops_step, 0);
    put_num(&s, "achieved_tflops", achieved, 6);
    put_num(&s, "peak_tflops", peak > 0 ? peak : NAN, 6);
    put_str(&s, "peak_source", peak > 0 ? peak_source : NULL);
    put_num(&s, "mfu", peak > 0 ? achieved / peak : NAN, 6);
    put_str(&s, "mfu_why", peak > 0 ? NULL : peak_source);
    put_int(&s, "mem_allocated", (long long)mem.allocated);
    put_int(&s, "mem_reserved", (long long)mem.reserved);
    put_int(&s, "mem_peak", (long long)mem.peak_allocated);
    put_str(&s, "mem_why", NULL);
    put_int(&s, "peak_rss_kb", ru.ru_maxrss);
    put_num(&s, "loader_wait_ms_mean", b.loader ? 1e3 * wait_total / (double)n : NAN, 4);
    put_str(&s, "loader_wait_why", loader_why);
    put_num(&s, "energy_j_per_sample", joules / (double)(o.batch * n), 6);
    put_str(&s, "energy_source", energy_why ? NULL : em.source);
    put_str(&s, "energy_why", energy_why);
    if (o.json) print_json(&s, "summary");
    else print_csv(&s);
  } else if (lead) {
    printf("%s, %s, batch %ld, input %s, %s %s; %ld timed steps after %ld warm-up\n", o.model, o.mode, o.batch,
           loom_shape_str(shape), loom_device_name(dev), o.dtype, n, o.warmup);
    printf("  %-18s %.1f %s/s", "throughput", info->kind == LOOM_INPUT_TOKENS ? tokens_s : sps, unit);
    if (info->kind == LOOM_INPUT_TOKENS) printf(" (%.2f sequences/s)", sps);
    if (world > 1) printf("; all %d ranks: %.1f %s/s", world,
                        info->kind == LOOM_INPUT_TOKENS ? global_sps * (double)shape.d[1] : global_sps, unit);
    printf("\n  %-18s mean %.3f ms, p50 %.3f, p90 %.3f, p99 %.3f\n", "step time", st4[0], st4[1], st4[2], st4[3]);
    printf("  %-18s %.3f ms (first output %.3f ms after process start)\n", "first step", 1e3 * first_step,
           1e3 * first_output);
    if (latency) printf("  %-18s mean %.3f ms, p50 %.3f, p90 %.3f, p99 %.3f (%ld single-sample forwards)\n",
                        "latency", lat4[0], lat4[1], lat4[2], lat4[3], o.latency_steps);
    else printf("  %-18s unavailable: %s\n", "latency", latency_why);
    printf("  %-18s %lld (%.2f MB)\n", "parameters", (long long)params, (double)pbytes / 1e6);
    printf("  %-18s %.4g MACs, %.4g FLOPs (forward)%s\n", "per sample", (double)ss.macs / (double)o.batch,
           flops_sample, train ? "; a training step counts 3x" : "");
    printf("  %-18s %.4f TFLOP/s", "achieved", achieved);
    if (peak > 0) printf("; MFU %.2f%% of %.3f TFLOP/s (%s)\n", 100 * achieved / peak, peak, peak_source);
    else printf("; MFU unavailable: %s\n", peak_source);
    printf("  %-18s %s: %.1f MB allocated, %.1f MB reserved, %.1f MB peak; peak RSS %.1f MB\n", "memory",
           loom_device_name(dev), mem.allocated / 1e6, mem.reserved / 1e6, mem.peak_allocated / 1e6,
           ru.ru_maxrss / 1e3);
    if (b.loader) printf("  %-18s %.3f ms per step waiting for the loader\n", "data", 1e3 * wait_total / (double)n);
    else printf("  %-18s %s\n", "data", loader_why);
    if (energy_why) printf("  %-18s unavailable: %s\n", "energy", energy_why);
    else printf("  %-18s %.4g J per sample (%s)\n", "energy", joules / (double)(o.batch * n), em.source);
  }
  if (lead && profiled && !o.json) print_profile(false, profiled);
  rc = 0;
  goto done;
fail:
  fprintf(stderr, "loom-bench: %s: %s\n", o.model, loom_last_error());
done:
  loom_summary_stats_free(&ss);
  loom_loader_free(b.loader);
  loom_dataset_free(ds);
  for (int i = 0; i < 2; i++) loom_release(b.in[i]), loom_release(one[i]);
  loom_grad_scaler_free(b.scaler);
  loom_optimizer_free(b.opt);
  if (b.net != m) loom_module_free(b.net);
  loom_module_free(m);
  energy_close(&em);
  free(t);
  free(wait);
  free(lat);
  loom_dist_finalize();
  return rc;
}
