/* Trains a 784-256-10 MLP on Fashion-MNIST with raw Loom ops and autograd.
 *
 *   fashion_mlp [--data DIR] [--epochs N] [--batch-size N] [--lr X]
 *               [--device cpu|cuda[:N]] [--limit N] [--seed N]
 *
 * Reads the four IDX .gz files of the dataset (the Debian package
 * dataset-fashion-mnist puts them in /usr/share/datasets/fashion-mnist),
 * prints one line per epoch and the test accuracy. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <errno.h>
#include <loom/loom.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#define IMAGE_SIDE 28
#define IMAGE_SIZE (IMAGE_SIDE * IMAGE_SIDE)
#define HIDDEN 256
#define CLASSES 10
/* Pixel statistics of the training set, for input normalisation. */
#define PIXEL_MEAN 0.2860f
#define PIXEL_STD 0.3530f

typedef struct options {
  const char *data, *device;
  int epochs, batch_size;
  double lr;
  long limit;
  unsigned long seed;
} options;

typedef struct dataset {
  long n;
  float *x;      /* [n, 784], normalised */
  int64_t *y;    /* [n] */
} dataset;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die_loom(const char *what) {
  fprintf(stderr, "fashion_mlp: %s failed: %s\n", what, loom_last_error());
  exit(1);
}

/* ---- IDX files ---- */

/* Reads a whole gzip (or plain) file into *out; returns its size or -1. */
static long read_gz(const char *path, unsigned char **out) {
  errno = 0;
  gzFile f = gzopen(path, "rb");
  if (!f) {
    fprintf(stderr, "fashion_mlp: cannot open %s: %s\n", path, errno ? strerror(errno) : "out of memory");
    return -1;
  }
  size_t cap = 1 << 20, len = 0;
  unsigned char *buf = malloc(cap);
  for (;;) {
    if (!buf) break;
    if (len == cap) {
      unsigned char *bigger = realloc(buf, cap * 2);
      if (!bigger) { free(buf); buf = NULL; break; }
      buf = bigger;
      cap *= 2;
    }
    int got = gzread(f, buf + len, (unsigned)(cap - len));
    if (got <= 0) break;
    len += (size_t)got;
  }
  int zerr = Z_OK;
  char msg[256];
  snprintf(msg, sizeof msg, "%s", gzerror(f, &zerr));  /* "path: what"; gzclose frees it */
  gzclose(f);
  if (!buf || (zerr != Z_OK && zerr != Z_STREAM_END)) {
    if (buf) fprintf(stderr, "fashion_mlp: %s (truncated or corrupt gzip data)\n", msg);
    else fprintf(stderr, "fashion_mlp: cannot read %s: out of memory\n", path);
    free(buf);
    return -1;
  }
  *out = buf;
  return (long)len;
}

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Loads DIR/<prefix>-images-idx3-ubyte.gz and DIR/<prefix>-labels-idx1-ubyte.gz. */
static int load_split(const char *dir, const char *prefix, dataset *ds) {
  char ipath[4096], lpath[4096];
  snprintf(ipath, sizeof ipath, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
  snprintf(lpath, sizeof lpath, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
  unsigned char *img = NULL, *lab = NULL;
  long isize = read_gz(ipath, &img), lsize = isize < 0 ? -1 : read_gz(lpath, &lab);
  int ok = 0;
  if (isize < 0 || lsize < 0) goto done;
  if (isize < 16 || be32(img) != 0x803) {
    fprintf(stderr, "fashion_mlp: %s: not an IDX image file (bad magic number or too short)\n", ipath);
    goto done;
  }
  if (lsize < 8 || be32(lab) != 0x801) {
    fprintf(stderr, "fashion_mlp: %s: not an IDX label file (bad magic number or too short)\n", lpath);
    goto done;
  }
  uint32_t n = be32(img + 4), rows = be32(img + 8), cols = be32(img + 12), nl = be32(lab + 4);
  if (rows != IMAGE_SIDE || cols != IMAGE_SIDE) {
    fprintf(stderr, "fashion_mlp: %s: images are %ux%u, expected 28x28\n", ipath, rows, cols);
    goto done;
  }
  if (n == 0 || n != nl) {
    fprintf(stderr, "fashion_mlp: %s holds %u images but %s holds %u labels\n", ipath, n, lpath, nl);
    goto done;
  }
  if ((uint64_t)isize != 16 + (uint64_t)n * IMAGE_SIZE) {
    fprintf(stderr, "fashion_mlp: %s: %ld bytes, expected %llu for %u images (truncated or corrupt)\n",
            ipath, isize, (unsigned long long)(16 + (uint64_t)n * IMAGE_SIZE), n);
    goto done;
  }
  if ((uint64_t)lsize != 8 + (uint64_t)n) {
    fprintf(stderr, "fashion_mlp: %s: %ld bytes, expected %u for %u labels (truncated or corrupt)\n",
            lpath, lsize, 8 + n, n);
    goto done;
  }
  ds->n = n;
  ds->x = malloc((size_t)n * IMAGE_SIZE * sizeof(float));
  ds->y = malloc((size_t)n * sizeof(int64_t));
  if (!ds->x || !ds->y) {
    fprintf(stderr, "fashion_mlp: out of memory loading %s\n", ipath);
    goto done;
  }
  for (size_t i = 0; i < (size_t)n * IMAGE_SIZE; i++)
    ds->x[i] = ((float)img[16 + i] / 255.0f - PIXEL_MEAN) / PIXEL_STD;
  for (uint32_t i = 0; i < n; i++) {
    if (lab[8 + i] >= CLASSES) {
      fprintf(stderr, "fashion_mlp: %s: label %u of image %u is not in 0..9\n", lpath, (unsigned)lab[8 + i], i);
      goto done;
    }
    ds->y[i] = lab[8 + i];
  }
  ok = 1;
done:
  free(img);
  free(lab);
  return ok ? 0 : -1;
}

static void free_split(dataset *ds) {
  free(ds->x);
  free(ds->y);
}

/* ---- the model ---- */

typedef struct mlp { loom_tensor *w1, *b1, *w2, *b2; } mlp;

/* U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as PyTorch's nn.Linear initialises. */
static loom_tensor *init_uniform(loom_shape s, int fan_in, loom_device dev) {
  double bound = 1.0 / sqrt((double)fan_in);
  loom_scope_begin();
  loom_tensor *u = loom_rand(s, LOOM_F32, dev);
  loom_tensor *p = loom_add_scalar(loom_mul_scalar(u, 2.0 * bound), -bound);
  if (!p || loom_set_requires_grad(p, true) != 0) die_loom("parameter init");
  loom_keep(p);
  loom_scope_end();
  return p;
}

static loom_tensor *forward(const mlp *m, const loom_tensor *x) {
  loom_tensor *h = loom_relu(loom_add(loom_matmul(x, m->w1), m->b1));
  return loom_add(loom_matmul(h, m->w2), m->b2);
}

/* mean over the batch of -log_softmax(logits)[label] */
static loom_tensor *cross_entropy(const loom_tensor *logits, const loom_tensor *labels) {
  const int last = -1;
  loom_tensor *lse = loom_logsumexp(logits, &last, 1, true);
  loom_tensor *logp = loom_sub(logits, lse);
  loom_tensor *picked = loom_gather(logp, 1, loom_unsqueeze(labels, 1));
  return loom_neg(loom_mean(picked, NULL, 0, false));
}

/* Number of rows whose largest logit is at the label. */
static double count_correct(const loom_tensor *logits, const loom_tensor *labels) {
  loom_no_grad_begin();
  loom_tensor *hits = loom_eq(loom_argmax(logits, 1, false), labels);
  double n = loom_item(loom_sum(loom_to_dtype(hits, LOOM_F32), NULL, 0, false));
  loom_no_grad_end();
  return n;
}

static void sgd_step(mlp *m, double lr) {
  loom_tensor *params[4] = {m->w1, m->b1, m->w2, m->b2};
  loom_no_grad_begin();
  for (int i = 0; i < 4; i++) {
    loom_tensor *g = loom_grad(params[i]);
    if (!g) die_loom("sgd step (parameter without gradient)");
    loom_tensor *updated = loom_sub(params[i], loom_mul_scalar(g, lr));
    if (!updated || loom_copy_(params[i], updated) != 0) die_loom("sgd step");
    loom_zero_grad(params[i]);
  }
  loom_no_grad_end();
}

/* ---- command line ---- */

static void usage(FILE *to) {
  fprintf(to,
          "usage: fashion_mlp [--data DIR] [--epochs N] [--batch-size N] [--lr X]\n"
          "                   [--device cpu|cuda[:N]] [--limit N] [--seed N]\n"
          "defaults: --data /usr/share/datasets/fashion-mnist --epochs 5 --batch-size 64\n"
          "          --lr 0.05 --device cuda when a GPU is visible, else cpu\n");
}

static int parse_long(const char *flag, const char *text, long lo, long *out) {
  char *end;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno || end == text || *end || v < lo) {
    fprintf(stderr, "fashion_mlp: %s needs an integer >= %ld, got '%s'\n", flag, lo, text);
    return -1;
  }
  *out = v;
  return 0;
}

static int parse_args(int argc, char **argv, options *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
    if (i + 1 >= argc) {
      fprintf(stderr, "fashion_mlp: unknown option or missing value: %s\n", a);
      return -1;
    }
    const char *v = argv[++i];
    long n;
    if (!strcmp(a, "--data")) o->data = v;
    else if (!strcmp(a, "--device")) o->device = v;
    else if (!strcmp(a, "--epochs")) { if (parse_long(a, v, 1, &n)) return -1; o->epochs = (int)n; }
    else if (!strcmp(a, "--batch-size")) { if (parse_long(a, v, 1, &n)) return -1; o->batch_size = (int)n; }
    else if (!strcmp(a, "--limit")) { if (parse_long(a, v, 1, &o->limit)) return -1; }
    else if (!strcmp(a, "--seed")) { if (parse_long(a, v, 0, &n)) return -1; o->seed = (unsigned long)n; }
    else if (!strcmp(a, "--lr")) {
      char *end;
      o->lr = strtod(v, &end);
      if (end == v || *end || !(o->lr > 0)) {
        fprintf(stderr, "fashion_mlp: --lr needs a positive number, got '%s'\n", v);
        return -1;
      }
    } else {
      fprintf(stderr, "fashion_mlp: unknown option %s\n", a);
      return -1;
    }
  }
  return 0;
}

/* splitmix64, for the host-side shuffle */
static uint64_t next_random(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* ---- training ---- */

static double evaluate(const mlp *m, const loom_tensor *x, const loom_tensor *y) {
  int64_t n = loom_size(x, 0), correct = 0;
  loom_no_grad_begin();
  for (int64_t off = 0; off < n; off += 1000) {
    int64_t len = n - off < 1000 ? n - off : 1000;
    loom_scope_begin();
    loom_tensor *logits = forward(m, loom_narrow(x, 0, off, len));
    double c = count_correct(logits, loom_narrow(y, 0, off, len));
    if (isnan(c)) die_loom("evaluation");
    correct += (int64_t)c;
    loom_scope_end();
  }
  loom_no_grad_end();
  return (double)correct / (double)n;
}

int main(int argc, char **argv) {
  options o = {"/usr/share/datasets/fashion-mnist", NULL, 5, 64, 0.05, 0, 0};
  if (parse_args(argc, argv, &o)) { usage(stderr); return 2; }
  loom_device dev = loom_cuda_device_count() > 0 ? loom_cuda(0) : loom_cpu();
  if (o.device && !loom_device_parse(o.device, &dev)) {
    fprintf(stderr, "fashion_mlp: --device: %s\n", loom_last_error());
    return 2;
  }
  if (dev.type == LOOM_CUDA && dev.index >= loom_cuda_device_count()) {
    fprintf(stderr, "fashion_mlp: --device %s: %d CUDA devices visible (CUDA built: %s)\n",
            loom_device_name(dev), loom_cuda_device_count(), loom_cuda_is_built() ? "yes" : "no");
    return 1;
  }

  dataset train = {0}, test = {0};
  if (load_split(o.data, "train", &train) || load_split(o.data, "t10k", &test)) {
    free_split(&train);
    free_split(&test);
    return 1;
  }
  long n = o.limit > 0 && o.limit < train.n ? o.limit : train.n;
  printf("Fashion-MNIST: %ld training images, %ld test images, device %s\n", n, test.n,
         loom_device_name(dev));
  printf("MLP 784-%d-%d, batch size %d, lr %g, %d epochs\n", HIDDEN, CLASSES, o.batch_size, o.lr,
         o.epochs);

  loom_manual_seed(o.seed);
  loom_tensor *xtr = loom_from_host(train.x, LOOM_SHAPE(n, IMAGE_SIZE), LOOM_F32, dev);
  loom_tensor *ytr = loom_from_host(train.y, LOOM_SHAPE(n), LOOM_I64, dev);
  loom_tensor *xte = loom_from_host(test.x, LOOM_SHAPE(test.n, IMAGE_SIZE), LOOM_F32, dev);
  loom_tensor *yte = loom_from_host(test.y, LOOM_SHAPE(test.n), LOOM_I64, dev);
  free_split(&train);
  free_split(&test);
  if (!xtr || !ytr || !xte || !yte) die_loom("copying the dataset to the device");
  mlp m = {init_uniform(LOOM_SHAPE(IMAGE_SIZE, HIDDEN), IMAGE_SIZE, dev),
           init_uniform(LOOM_SHAPE(HIDDEN), IMAGE_SIZE, dev),
           init_uniform(LOOM_SHAPE(HIDDEN, CLASSES), HIDDEN, dev),
           init_uniform(LOOM_SHAPE(CLASSES), HIDDEN, dev)};

  int64_t *order = malloc((size_t)n * sizeof *order);
  if (!order) { fprintf(stderr, "fashion_mlp: out of memory\n"); return 1; }
  for (long i = 0; i < n; i++) order[i] = i;
  uint64_t rng = o.seed;
  double t_start = now_s();
  for (int epoch = 1; epoch <= o.epochs; epoch++) {
    for (long i = n - 1; i > 0; i--) {
      long j = (long)(next_random(&rng) % (uint64_t)(i + 1));
      int64_t t = order[i]; order[i] = order[j]; order[j] = t;
    }
    double t0 = now_s(), loss_sum = 0, correct = 0;
    for (long off = 0; off < n; off += o.batch_size) {
      long len = n - off < o.batch_size ? n - off : o.batch_size;
      loom_scope_begin();
      loom_tensor *idx = loom_from_host(order + off, LOOM_SHAPE(len), LOOM_I64, dev);
      loom_tensor *xb = loom_index_select(xtr, 0, idx), *yb = loom_index_select(ytr, 0, idx);
      loom_tensor *logits = forward(&m, xb);
      loom_tensor *loss = cross_entropy(logits, yb);
      if (!loss || loom_backward(loss, NULL, false) != 0) die_loom("training step");
      sgd_step(&m, o.lr);
      loss_sum += loom_item(loss) * (double)len;
      correct += count_correct(logits, yb);
      loom_scope_end();
    }
    double secs = now_s() - t0;
    printf("epoch %d/%d  loss %.4f  train acc %.2f%%  %.0f samples/s  (%.1f s)\n", epoch, o.epochs,
           loss_sum / (double)n, 100.0 * correct / (double)n, (double)n / secs, secs);
    fflush(stdout);
  }
  double acc = evaluate(&m, xte, yte);
  loom_memory_stats mem = {0};
  loom_memory_stats_get(dev, &mem);
  printf("test accuracy %.2f%% (%ld images), training %.1f s, peak memory %.1f MiB\n", 100.0 * acc,
         (long)loom_size(xte, 0), now_s() - t_start, (double)mem.peak_allocated / (1 << 20));

  free(order);
  loom_tensor *all[] = {xtr, ytr, xte, yte, m.w1, m.b1, m.w2, m.b2};
  for (int i = 0; i < 8; i++) loom_release(all[i]);
  return 0;
}
