/* loom-bench-layers: forward + backward of the zoo's typical layers, timed
 * case by case, beside tools/bench_layers_torch.py (the same cases in
 * PyTorch) and tools/bench_layers.sh (both interleaved, a table of ratios).
 *
 *   loom-bench-layers [--threads N] [--runs N] [--only NAME[,NAME...]]
 *                     [--mode train|infer] [--json] [--list]
 *
 * Every case builds its module and inputs once (f32, CPU, random normal
 * inputs). One call, --mode train: drop the gradients (set to none: every
 * parameter's and the input's), forward, then backward from a fixed random
 * upstream gradient of the output's shape (made once with the inputs), or
 * from 1 where the output is a scalar loss (cross_entropy, seed_cnn_step);
 * seed_cnn_step also takes the SGD step. The input requires grad (its
 * gradient is computed) in every case but the seed CNN's, whose input is
 * data. --mode infer: the forward alone under no_grad, modules in eval mode.
 * A figure is the median of --runs runs after 2 warm-up calls; a run repeats
 * the call until it has lasted at least 50 ms and gives the mean time of a
 * call. The cases, their names and shapes are docs/benchmarking.md's
 * "Layer benchmarks" list (--list prints them); an inference-only case that
 * --only names in train mode is skipped with a note. Exit status 2 for bad
 * flags or an unknown case, 1 when a Loom call fails (with loom_last_error). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <errno.h>
#include <loom/loom.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_time.h"

#define PROG "loom-bench-layers"
#define MIN_RUN_S 0.05
#define WARMUP 2
#define MAX_RUNS 64

typedef enum case_kind {
  K_MODULE,        /* loom_forward(module, x) */
  K_MAXPOOL,       /* loom_max_pool2d(x, k, k, {stride, pad}) */
  K_SOFTMAX,       /* loom_softmax(x, -1) */
  K_GELU,          /* loom_gelu(x, erf form) */
  K_RELU,          /* loom_relu(x) */
  K_CROSS_ENTROPY, /* loom_cross_entropy(x, target), mean */
  K_LSTM,          /* loom_forward(lstm, x): the output sequence */
  K_MHA,           /* loom_mha_forward(mha, x, x, x): self-attention, no mask */
  K_SEED_CNN       /* cross-entropy of the seed CNN's logits (+ SGD step in train) */
} case_kind;

typedef enum case_modes { BOTH_MODES, INFER_ONLY } case_modes;

typedef struct layer_case {
  const char *name, *shape;
  case_kind kind;
  case_modes modes;
} layer_case;

/* The names and shape strings are bench_layers_torch.py's too. */
static const layer_case CASES[] = {
  {"conv3x3_64", "32x64x32x32 k3 s1 p1 -> 64, no bias", K_MODULE, BOTH_MODES},
  {"conv3x3_128", "32x128x16x16 k3 s1 p1 -> 128, no bias", K_MODULE, BOTH_MODES},
  {"conv3x3_256", "32x256x8x8 k3 s1 p1 -> 256, no bias", K_MODULE, BOTH_MODES},
  {"conv3x3_s2_64_128", "32x64x32x32 k3 s2 p1 -> 128, no bias", K_MODULE, BOTH_MODES},
  {"dwconv3x3_144", "32x144x28x28 k3 s1 p1 groups 144, no bias", K_MODULE, BOTH_MODES},
  {"maxpool2_s2", "64x32x26x26 k2 s2", K_MAXPOOL, BOTH_MODES},
  {"maxpool3_s2_p1", "32x64x112x112 k3 s2 p1", K_MAXPOOL, BOTH_MODES},
  {"batchnorm2d", "32x64x32x32", K_MODULE, BOTH_MODES},
  {"layernorm", "4096x768 over 768", K_MODULE, BOTH_MODES},
  {"softmax", "4096x768 dim -1", K_SOFTMAX, BOTH_MODES},
  {"gelu", "4096x3072 erf", K_GELU, BOTH_MODES},
  {"relu", "64x32x26x26", K_RELU, BOTH_MODES},
  {"linear_1600_128", "64x1600 -> 128", K_MODULE, BOTH_MODES},
  {"linear_768_3072", "1024x768 -> 3072", K_MODULE, BOTH_MODES},
  {"cross_entropy", "256x1000 i64 targets, mean", K_CROSS_ENTROPY, BOTH_MODES},
  {"lstm", "L50 N32 256 -> 256, 2 layers, seq first", K_LSTM, BOTH_MODES},
  {"mha", "L128 N32 E256 8 heads, self, no mask", K_MHA, BOTH_MODES},
  {"seed_cnn_step", "64x1x28x28, CE + SGD m0.9 lr0.01", K_SEED_CNN, BOTH_MODES},
  {"seed_cnn_b1", "1x1x28x28", K_SEED_CNN, INFER_ONLY},
};
#define N_CASES ((int)(sizeof CASES / sizeof CASES[0]))

typedef struct bench {
  const layer_case *c;
  int train;
  loom_module *m;         /* NULL for the functional cases */
  loom_optimizer *opt;    /* seed_cnn_step in train mode */
  loom_tensor *x;         /* the input */
  loom_tensor *target;    /* class indices (cross_entropy, seed CNN) */
  loom_tensor *gout;      /* the fixed upstream gradient; NULL for a scalar loss */
  int pool_k, pool_s, pool_p;
} bench;

static void fail(const char *what) {
  fprintf(stderr, PROG ": %s failed: %s\n", what, loom_last_error());
  exit(1);
}

static loom_tensor *check(loom_tensor *t, const char *what) {
  if (!t) fail(what);
  return t;
}

static loom_module *check_module(loom_module *m, const char *what) {
  if (!m) fail(what);
  return m;
}

static loom_tensor *randn(loom_shape s) { return check(loom_randn(s, LOOM_F32, loom_cpu()), "loom_randn"); }

/* The case's output: a tensor in the caller's scope (NULL on failure). */
static loom_tensor *forward(const bench *b) {
  const layer_case *c = b->c;
  switch (c->kind) {
    case K_MODULE:
    case K_LSTM: return loom_forward(b->m, b->x);
    case K_MAXPOOL: {
      loom_pool_opts o = {.stride = {b->pool_s, b->pool_s}, .padding = {b->pool_p, b->pool_p}};
      return loom_max_pool2d(b->x, b->pool_k, b->pool_k, &o, NULL);
    }
    case K_SOFTMAX: return loom_softmax(b->x, -1);
    case K_GELU: return loom_gelu(b->x, false);
    case K_RELU: return loom_relu(b->x);
    case K_CROSS_ENTROPY: return loom_cross_entropy(b->x, b->target, NULL);
    case K_MHA: return loom_mha_forward(b->m, b->x, b->x, b->x, NULL, NULL, NULL);
    case K_SEED_CNN: {
      loom_tensor *logits = loom_forward(b->m, b->x);
      return b->train ? loom_cross_entropy(logits, b->target, NULL) : logits;
    }
  }
  return NULL;
}

/* One timed call (see the top of the file). Every tensor it makes is freed
 * by its scope; the gradients stay on their leaves until the next call. */
static void run_once(const bench *b) {
  loom_scope_begin();
  if (b->train) {
    if (b->m) loom_module_zero_grad(b->m);
    if (loom_requires_grad(b->x)) loom_zero_grad(b->x);
    loom_tensor *out = forward(b);
    if (!out) fail(b->c->name);
    if (loom_backward(out, b->gout, false) != 0) fail("loom_backward");
    if (b->opt && loom_optimizer_step(b->opt) != 0) fail("loom_optimizer_step");
  } else {
    loom_no_grad_begin();
    loom_tensor *out = forward(b);
    loom_no_grad_end();
    if (!out) fail(b->c->name);
  }
  loom_scope_end();
}

static void build(bench *b, const layer_case *c, int train) {
  memset(b, 0, sizeof *b);
  b->c = c;
  b->train = train;
  const char *n = c->name;
  loom_conv_opts conv = {.padding = {1, 1}, .no_bias = true};
  int input_grad = 1;
  if (!strcmp(n, "conv3x3_64")) {
    b->m = loom_nn_conv2d(64, 64, 3, 3, &conv);
    b->x = randn(LOOM_SHAPE(32, 64, 32, 32));
  } else if (!strcmp(n, "conv3x3_128")) {
    b->m = loom_nn_conv2d(128, 128, 3, 3, &conv);
    b->x = randn(LOOM_SHAPE(32, 128, 16, 16));
  } else if (!strcmp(n, "conv3x3_256")) {
    b->m = loom_nn_conv2d(256, 256, 3, 3, &conv);
    b->x = randn(LOOM_SHAPE(32, 256, 8, 8));
  } else if (!strcmp(n, "conv3x3_s2_64_128")) {
    conv.stride[0] = conv.stride[1] = 2;
    b->m = loom_nn_conv2d(64, 128, 3, 3, &conv);
    b->x = randn(LOOM_SHAPE(32, 64, 32, 32));
  } else if (!strcmp(n, "dwconv3x3_144")) {
    conv.groups = 144;
    b->m = loom_nn_conv2d(144, 144, 3, 3, &conv);
    b->x = randn(LOOM_SHAPE(32, 144, 28, 28));
  } else if (!strcmp(n, "maxpool2_s2")) {
    b->pool_k = b->pool_s = 2;
    b->x = randn(LOOM_SHAPE(64, 32, 26, 26));
  } else if (!strcmp(n, "maxpool3_s2_p1")) {
    b->pool_k = 3, b->pool_s = 2, b->pool_p = 1;
    b->x = randn(LOOM_SHAPE(32, 64, 112, 112));
  } else if (!strcmp(n, "batchnorm2d")) {
    b->m = loom_nn_batch_norm2d(64, NULL);
    b->x = randn(LOOM_SHAPE(32, 64, 32, 32));
  } else if (!strcmp(n, "layernorm")) {
    const int64_t d = 768;
    b->m = loom_nn_layer_norm(&d, 1, NULL);
    b->x = randn(LOOM_SHAPE(32 * 128, 768));
  } else if (!strcmp(n, "softmax")) {
    b->x = randn(LOOM_SHAPE(4096, 768));
  } else if (!strcmp(n, "gelu")) {
    b->x = randn(LOOM_SHAPE(32 * 128, 3072));
  } else if (!strcmp(n, "relu")) {
    b->x = randn(LOOM_SHAPE(64, 32, 26, 26));
  } else if (!strcmp(n, "linear_1600_128")) {
    b->m = loom_nn_linear(1600, 128, NULL);
    b->x = randn(LOOM_SHAPE(64, 1600));
  } else if (!strcmp(n, "linear_768_3072")) {
    b->m = loom_nn_linear(768, 3072, NULL);
    b->x = randn(LOOM_SHAPE(1024, 768));
  } else if (!strcmp(n, "cross_entropy")) {
    b->x = randn(LOOM_SHAPE(256, 1000));
    b->target = check(loom_randint(0, 1000, LOOM_SHAPE(256), LOOM_I64, loom_cpu()), "loom_randint");
  } else if (!strcmp(n, "lstm")) {
    loom_rnn_options o = {.num_layers = 2};
    b->m = loom_nn_lstm(256, 256, &o);
    b->x = randn(LOOM_SHAPE(50, 32, 256));
  } else if (!strcmp(n, "mha")) {
    b->m = loom_nn_multihead_attention(256, 8, NULL);
    b->x = randn(LOOM_SHAPE(128, 32, 256));
  } else if (!strcmp(n, "seed_cnn_step") || !strcmp(n, "seed_cnn_b1")) {
    int64_t batch = !strcmp(n, "seed_cnn_b1") ? 1 : 64;
    b->m = loom_model_seed_cnn(NULL);
    b->x = randn(LOOM_SHAPE(batch, 1, 28, 28));
    b->target = check(loom_randint(0, 10, LOOM_SHAPE(batch), LOOM_I64, loom_cpu()), "loom_randint");
    input_grad = 0;
  } else {
    fprintf(stderr, PROG ": internal: case %s has no builder\n", n);
    exit(1);
  }
  if (c->kind == K_MODULE || c->kind == K_LSTM || c->kind == K_MHA || c->kind == K_SEED_CNN)
    check_module(b->m, n);
  if (b->m) loom_module_train(b->m, train);
  if (!train) return;
  if (input_grad && loom_set_requires_grad(b->x, true) != 0) fail("loom_set_requires_grad");
  if (!strcmp(n, "seed_cnn_step")) {
    loom_sgd_opts o = {.lr = 0.01, .momentum = 0.9};
    b->opt = loom_sgd_module(b->m, &o);
    if (!b->opt) fail("loom_sgd_module");
  }
  if (c->kind == K_CROSS_ENTROPY || c->kind == K_SEED_CNN) return; /* a scalar loss: backward from 1 */
  /* The upstream gradient: random normal of the output's shape, made once. */
  loom_scope_begin();
  loom_no_grad_begin();
  loom_tensor *out = forward(b);
  loom_no_grad_end();
  if (!out) fail(n);
  b->gout = loom_keep(randn(loom_shape_of(out)));
  loom_scope_end();
}

static void release(bench *b) {
  if (b->opt) loom_optimizer_free(b->opt);
  if (b->m) loom_module_free(b->m);
  loom_release(b->x);
  if (b->target) loom_release(b->target);
  if (b->gout) loom_release(b->gout);
}

/* Fills times[0..runs) with seconds per call (unsorted) and returns the median. */
static double time_case(const bench *b, int runs, double *times) {
  for (int i = 0; i < WARMUP; i++) run_once(b);
  for (int r = 0; r < runs; r++) {
    long calls = 0;
    double t0 = now_s(), t;
    do {
      run_once(b);
      calls++;
      t = now_s() - t0;
    } while (t < MIN_RUN_S);
    times[r] = t / (double)calls;
  }
  double sorted[MAX_RUNS];
  memcpy(sorted, times, (size_t)runs * sizeof times[0]);
  qsort(sorted, (size_t)runs, sizeof sorted[0], cmp_double);
  return runs % 2 ? sorted[runs / 2] : 0.5 * (sorted[runs / 2 - 1] + sorted[runs / 2]);
}

static void usage(FILE *to) {
  fprintf(to, "usage: " PROG " [--threads N] [--runs N] [--only NAME[,NAME...]] [--mode train|infer] [--json] [--list]\n");
}

static int parse_int(const char *flag, const char *v, int lo, int hi, int *out) {
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (end == v || *end || errno || n < lo || n > hi) {
    fprintf(stderr, PROG ": %s must be an integer in %d..%d, got '%s'\n", flag, lo, hi, v);
    return -1;
  }
  *out = (int)n;
  return 0;
}

static int find_case(const char *name, size_t len) {
  for (int i = 0; i < N_CASES; i++)
    if (strlen(CASES[i].name) == len && !strncmp(CASES[i].name, name, len)) return i;
  return -1;
}

/* Marks the cases --only names; -1 after a message for an unknown or empty one. */
static int parse_only(const char *list, int *selected) {
  const char *p = list;
  for (;;) {
    size_t len = strcspn(p, ",");
    int i = find_case(p, len);
    if (i < 0) {
      fprintf(stderr, PROG ": unknown case '%.*s' in --only (--list names them)\n", (int)len, p);
      return -1;
    }
    selected[i] = 1;
    if (!p[len]) return 0;
    p += len + 1;
  }
}

int main(int argc, char **argv) {
  int threads = 0, runs = 5, json = 0, list = 0, train = 1, only = 0;
  int selected[N_CASES] = {0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--json")) {
      json = 1;
    } else if (!strcmp(a, "--list")) {
      list = 1;
    } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (i + 1 < argc && !strcmp(a, "--threads")) {
      if (parse_int(a, argv[++i], 1, 1024, &threads)) return 2;
    } else if (i + 1 < argc && !strcmp(a, "--runs")) {
      if (parse_int(a, argv[++i], 1, MAX_RUNS, &runs)) return 2;
    } else if (i + 1 < argc && !strcmp(a, "--mode")) {
      const char *v = argv[++i];
      if (strcmp(v, "train") && strcmp(v, "infer")) {
        fprintf(stderr, PROG ": --mode must be train or infer, got '%s'\n", v);
        return 2;
      }
      train = !strcmp(v, "train");
    } else if (i + 1 < argc && !strcmp(a, "--only")) {
      if (parse_only(argv[++i], selected)) return 2;
      only = 1;
    } else {
      fprintf(stderr, PROG ": unknown option or missing value: %s\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (list) {
    for (int i = 0; i < N_CASES; i++)
      printf("%-18s %-44s %s\n", CASES[i].name, CASES[i].shape, CASES[i].modes == INFER_ONLY ? "infer" : "train infer");
    return 0;
  }
  for (int i = 0; i < N_CASES; i++) {
    if (!only) selected[i] = !train || CASES[i].modes != INFER_ONLY;
    if (selected[i] && train && CASES[i].modes == INFER_ONLY) {
      fprintf(stderr, PROG ": case '%s' runs in --mode infer only; skipped\n", CASES[i].name);
      selected[i] = 0;
    }
  }
  if (threads > 0) loom_set_num_threads(threads);
  threads = loom_num_threads();
  loom_manual_seed(0);
  const char *mode = train ? "train" : "infer";
  if (!json) {
    printf("loom %s, cpu, %d threads, mode %s, median of %d runs (each >= %.0f ms, after %d warm-up calls)\n",
           loom_commit(), threads, mode, runs, MIN_RUN_S * 1e3, WARMUP);
    printf("%-18s %-44s %10s\n", "case", "shape", "ms/call");
  }
  for (int i = 0; i < N_CASES; i++) {
    if (!selected[i]) continue;
    bench b;
    double times[MAX_RUNS];
    build(&b, &CASES[i], train);
    double med = time_case(&b, runs, times);
    release(&b);
    if (json) {
      printf("{\"bench\": \"%s\", \"shape\": \"%s\", \"mode\": \"%s\", \"threads\": %d, \"framework\": \"loom\", "
             "\"median_ms\": %.4f, \"runs_ms\": [",
             CASES[i].name, CASES[i].shape, mode, threads, med * 1e3);
      for (int r = 0; r < runs; r++) printf("%s%.4f", r ? ", " : "", times[r] * 1e3);
      printf("]}\n");
    } else {
      printf("%-18s %-44s %10.3f\n", CASES[i].name, CASES[i].shape, med * 1e3);
    }
    fflush(stdout);
  }
  return 0;
}
