/* Shared by the small Fashion-MNIST examples (mlp.c, bn_cnn.c, vae.c, gan.c; ddp_train.c its dataset): their common
 * flags, the train / test loaders, the epoch loop and a PGM grid of images, on top of
 * example_util.h (clock, flag values, --device). Header-only, because each file in examples/
 * is its own program. */
#ifndef LOOM_EXAMPLES_FASHION_COMMON_H
#define LOOM_EXAMPLES_FASHION_COMMON_H

#include "example_util.h" /* first: it sets _POSIX_C_SOURCE */
#include <string.h>

static const float FASHION_MEAN = 0.2860f, FASHION_STD = 0.3530f; /* Fashion-MNIST training set */

typedef struct fashion_opts {
  const char *data, *device;
  long epochs, batch_size, limit, seed;
  double lr;
} fashion_opts;

static inline void fashion_usage(FILE *to, const char *prog, const fashion_opts *d) {
  fprintf(to, "usage: %s [--data DIR] [--epochs N] [--batch-size N] [--lr X] [--device cpu|cuda[:N]]\n"
              "       [--limit N] [--seed N]\n"
              "defaults: --data %s --epochs %ld --batch-size %ld --lr %g\n"
              "          --device cuda when a GPU is visible, else cpu\n",
          prog, d->data, d->epochs, d->batch_size, d->lr);
}

/* Parses the flags into *o (which holds the defaults); 0, or -1 after a
 * message and the usage on stderr. */
static inline int fashion_parse_flags(const char *prog, int argc, char **argv, fashion_opts *o,
                                      const fashion_opts *defaults) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fashion_usage(stdout, prog, defaults);
      exit(0);
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "%s: unknown option or missing value: %s\n", prog, a);
      return -1;
    }
    const char *v = argv[++i];
    if (!strcmp(a, "--data")) { o->data = v; continue; }
    if (!strcmp(a, "--device")) { o->device = v; continue; }
    if (!strcmp(a, "--lr")) {
      if (ex_parse_double(prog, a, v, 0, 1, &o->lr)) return -1;
      continue;
    }
    long *dst = !strcmp(a, "--epochs") ? &o->epochs : !strcmp(a, "--batch-size") ? &o->batch_size
              : !strcmp(a, "--limit")  ? &o->limit  : !strcmp(a, "--seed")       ? &o->seed : NULL;
    if (!dst) {
      fprintf(stderr, "%s: unknown option %s\n", prog, a);
      return -1;
    }
    if (ex_parse_long(prog, a, v, dst == &o->seed ? 0 : 1, LONG_MAX, dst)) return -1;
  }
  return 0;
}

static inline int fashion_parse(const char *prog, int argc, char **argv, fashion_opts *o) {
  const fashion_opts defaults = *o;
  if (!fashion_parse_flags(prog, argc, argv, o, &defaults)) return 0;
  fashion_usage(stderr, prog, &defaults);
  return -1;
}

/* An 8x8 grid of 28x28 images (64 rows of 784 floats in [lo, 1]) as binary
 * PGM; 0, or -1 with errno set. */
static inline int fashion_write_pgm(const char *path, const float *img, float lo) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  fprintf(f, "P5\n%d %d\n255\n", 8 * 28, 8 * 28);
  for (int r = 0; r < 8 * 28; r++)
    for (int c = 0; c < 8 * 28; c++) {
      float v = (img[(r / 28 * 8 + c / 28) * 784 + (r % 28) * 28 + c % 28] - lo) / (1 - lo);
      fputc((int)(255 * (v < 0 ? 0 : v > 1 ? 1 : v) + 0.5f), f);
    }
  return fclose(f) ? -1 : 0;
}

/* The loader of --data's train images (shuffled, the first --limit of them,
 * batches of --batch-size, an incomplete last one dropped when drop_last) or
 * test images (in order, batches of 1000) on dev. Pixels are read in [0, 1];
 * with mean and std (one value each; NULL = none) they become (x - mean) / std:
 * FASHION_MEAN / FASHION_STD standardise them, 0.5 / 0.5 maps them to [-1, 1]
 * (a Tanh generator's range). NULL with loom_last_error() saying why. */
/* The train images of DIR (the first limit of them when limit > 0) or its test images; NULL + error. */
static inline loom_dataset *fashion_dataset(const char *dir, bool train, long limit) {
  loom_dataset *ds = loom_dataset_mnist(dir, train);
  if (ds && train && limit > 0) {
    loom_dataset *sub = loom_dataset_subset(ds, 0, limit);
    loom_dataset_free(ds);
    ds = sub;
  }
  return ds;
}

static inline loom_loader *fashion_loader(const fashion_opts *o, loom_device dev, bool train, const float *mean,
                                          const float *std, bool drop_last) {
  loom_dataset *ds = fashion_dataset(o->data, train, o->limit);
  if (!ds) return NULL;
  loom_loader_opts lo = {.batch_size = train ? o->batch_size : 1000, .shuffle = train, .seed = (uint64_t)o->seed,
                         .drop_last = drop_last, .device = dev};
  if (mean && std) lo.transform = (loom_transform_opts){.norm_channels = 1, .mean = mean, .std = std};
  loom_loader *l = loom_loader_new(ds, &lo);
  loom_dataset_free(ds); /* the loader holds its own reference */
  return l;
}

/* Normalised train and test loaders (fashion_loader) on dev; 0, or 1 after a
 * message naming the problem (a missing file, ...). */
static inline int fashion_loaders(const char *prog, const fashion_opts *o, loom_device dev, loom_loader **train,
                                  loom_loader **test) {
  *train = fashion_loader(o, dev, true, &FASHION_MEAN, &FASHION_STD, false);
  *test = *train ? fashion_loader(o, dev, false, &FASHION_MEAN, &FASHION_STD, false) : NULL;
  if (*train && *test) return 0;
  fprintf(stderr, "%s: %s\n", prog, loom_last_error());
  loom_loader_free(*train);
  loom_loader_free(*test);
  *train = *test = NULL;
  return 1;
}

/* One epoch by hand (the loop loom_trainer runs for you): forward,
 * cross-entropy, zero_grad, backward, step. *mean_loss is the epoch's mean
 * loss; 0, or -1 with loom_last_error() saying why. */
static inline int fashion_train_epoch(loom_module *net, loom_optimizer *opt, loom_loader *loader, long epoch,
                                      double *mean_loss) {
  double loss_sum = 0;
  loom_tensor *x, *y;
  if (loom_loader_start_epoch(loader, epoch - 1)) return -1;
  for (;;) {
    loom_scope_begin();
    if (!loom_loader_next(loader, &x, &y)) { loom_scope_end(); break; }
    loom_tensor *loss = loom_cross_entropy(loom_forward(net, x), y, NULL);
    loom_optimizer_zero_grad(opt);
    bool ok = loss && !loom_backward(loss, NULL, false) && !loom_optimizer_step(opt);
    if (ok) loss_sum += loom_item(loss) * (double)loom_size(x, 0);
    loom_scope_end();
    if (!ok) return -1;
  }
  if (loom_last_status() != LOOM_OK) return -1;
  *mean_loss = loss_sum / (double)loom_loader_num_samples(loader);
  return 0;
}

#endif
