/* A CNN with BatchNorm and dropout trained on Fashion-MNIST with Adam and a
 * cosine learning-rate schedule (one step per epoch):
 *
 *   conv 1->32 k3 pad 1 (no bias), BatchNorm2d, ReLU, maxpool 2      28 -> 14
 *   conv 32->64 k3 pad 1 (no bias), BatchNorm2d, ReLU, maxpool 2     14 -> 7
 *   flatten, dropout 0.25, linear 3136->128, ReLU, dropout 0.25, linear 128->10
 *
 *   bn_cnn [--data DIR] [--epochs N] [--batch-size N] [--lr X]
 *          [--device cpu|cuda[:N]] [--limit N] [--seed N]
 *
 * Prints one line per epoch (with the test accuracy) and the final test accuracy. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <errno.h>
#include <loom/loom.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const float PIXEL_MEAN = 0.2860f, PIXEL_STD = 0.3530f; /* Fashion-MNIST training set */

typedef struct options {
  const char *data, *device;
  long epochs, batch_size, limit, seed;
  double lr;
} options;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(FILE *to) {
  fprintf(to, "usage: bn_cnn [--data DIR] [--epochs N] [--batch-size N] [--lr X] [--device cpu|cuda[:N]]\n"
              "              [--limit N] [--seed N]\n"
              "defaults: --data /usr/share/datasets/fashion-mnist --epochs 10 --batch-size 64 --lr 0.001\n"
              "          --device cuda when a GPU is visible, else cpu\n");
}

static int parse_args(int argc, char **argv, options *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
    if (i + 1 >= argc) {
      fprintf(stderr, "bn_cnn: unknown option or missing value: %s\n", a);
      return -1;
    }
    const char *v = argv[++i];
    char *end;
    errno = 0;
    if (!strcmp(a, "--data")) { o->data = v; continue; }
    if (!strcmp(a, "--device")) { o->device = v; continue; }
    if (!strcmp(a, "--lr")) {
      o->lr = strtod(v, &end);
      if (end == v || *end || !(o->lr > 0)) {
        fprintf(stderr, "bn_cnn: --lr needs a positive number, got '%s'\n", v);
        return -1;
      }
      continue;
    }
    long *dst = !strcmp(a, "--epochs") ? &o->epochs : !strcmp(a, "--batch-size") ? &o->batch_size
              : !strcmp(a, "--limit")  ? &o->limit  : !strcmp(a, "--seed")       ? &o->seed : NULL;
    if (!dst) {
      fprintf(stderr, "bn_cnn: unknown option %s\n", a);
      return -1;
    }
    long lo = dst == &o->seed ? 0 : 1;
    *dst = strtol(v, &end, 10);
    if (errno || end == v || *end || *dst < lo) {
      fprintf(stderr, "bn_cnn: %s needs an integer >= %ld, got '%s'\n", a, lo, v);
      return -1;
    }
  }
  return 0;
}

/* Fraction of test images classified right (eval mode, no autograd); NAN on error. */
static double evaluate(loom_module *net, loom_loader *test) {
  double correct = 0;
  loom_tensor *x, *y;
  if (loom_loader_start_epoch(test, 0)) return NAN;
  loom_module_train(net, false);
  loom_no_grad_begin();
  loom_scope_begin();
  while (loom_loader_next(test, &x, &y))
    correct += loom_item(loom_sum(loom_to_dtype(loom_eq(loom_argmax(loom_forward(net, x), 1, false), y), LOOM_F32),
                                  NULL, 0, false));
  loom_scope_end();
  loom_no_grad_end();
  loom_module_train(net, true);
  return loom_last_status() == LOOM_OK ? correct / (double)loom_loader_num_samples(test) : NAN;
}

static loom_module *conv_block(int64_t in, int64_t out) {
  loom_conv_opts c = {.padding = {1, 1}, .no_bias = true}; /* BatchNorm's shift replaces the bias */
  return LOOM_SEQUENTIAL(loom_nn_conv2d(in, out, 3, 3, &c), loom_nn_batch_norm2d(out, NULL), loom_nn_relu(),
                         loom_nn_max_pool2d(2, 2, NULL));
}

static loom_module *bn_cnn(void) {
  return LOOM_SEQUENTIAL(conv_block(1, 32), conv_block(32, 64), loom_nn_flatten(1, -1), loom_nn_dropout(0.25),
                         loom_nn_linear(64 * 7 * 7, 128, NULL), loom_nn_relu(), loom_nn_dropout(0.25),
                         loom_nn_linear(128, 10, NULL));
}

int main(int argc, char **argv) {
  options o = {"/usr/share/datasets/fashion-mnist", NULL, 10, 64, 0, 0, 1e-3};
  if (parse_args(argc, argv, &o)) { usage(stderr); return 2; }
  loom_device dev = loom_cuda_device_count() > 0 ? loom_cuda(0) : loom_cpu();
  if (o.device && !loom_device_parse(o.device, &dev)) {
    fprintf(stderr, "bn_cnn: --device: %s\n", loom_last_error());
    return 2;
  }
  if (dev.type == LOOM_CUDA && dev.index >= loom_cuda_device_count()) {
    fprintf(stderr, "bn_cnn: --device %s: %d CUDA devices visible\n", loom_device_name(dev), loom_cuda_device_count());
    return 1;
  }
  loom_dataset *train = loom_dataset_mnist(o.data, true);
  loom_dataset *test = train ? loom_dataset_mnist(o.data, false) : NULL;
  if (train && test && o.limit > 0) {
    loom_dataset *sub = loom_dataset_subset(train, 0, o.limit);
    loom_dataset_free(train);
    train = sub;
  }
  if (!train || !test) {
    fprintf(stderr, "bn_cnn: %s\n", loom_last_error());
    loom_dataset_free(train);
    loom_dataset_free(test);
    return 1;
  }
  loom_manual_seed((uint64_t)o.seed);
  loom_module *net = bn_cnn();
  loom_loader_opts lo = {.batch_size = o.batch_size, .shuffle = true, .seed = (uint64_t)o.seed, .device = dev};
  lo.transform = (loom_transform_opts){.norm_channels = 1, .mean = &PIXEL_MEAN, .std = &PIXEL_STD};
  loom_loader *train_loader = loom_loader_new(train, &lo);
  lo.batch_size = 1000;
  lo.shuffle = false;
  loom_loader *test_loader = loom_loader_new(test, &lo);
  loom_dataset_free(train); /* the loaders hold their own references */
  loom_dataset_free(test);
  loom_optimizer *opt = NULL;
  loom_scheduler *sched = NULL;
  int rc = 1;
  if (!net || loom_module_to_device(net, dev) || !train_loader || !test_loader) goto done;
  opt = loom_adam_module(net, &(loom_adam_opts){.lr = o.lr});
  sched = opt ? loom_cosine_annealing_lr(opt, (int)o.epochs, 0) : NULL;
  if (!sched) goto done;
  printf("Fashion-MNIST: %lld training images, device %s\n", (long long)loom_loader_num_samples(train_loader),
         loom_device_name(dev));
  printf("BatchNorm CNN (%lld parameters), Adam lr %g with cosine decay, batch size %ld, %ld epochs\n",
         (long long)loom_module_num_params(net, false), o.lr, o.batch_size, o.epochs);
  double t_start = now_s(), acc = NAN;
  for (long epoch = 1; epoch <= o.epochs; epoch++) {
    double t0 = now_s(), loss_sum = 0;
    loom_tensor *x, *y;
    if (loom_loader_start_epoch(train_loader, epoch - 1)) goto done;
    for (;;) {
      loom_scope_begin();
      if (!loom_loader_next(train_loader, &x, &y)) { loom_scope_end(); break; }
      loom_tensor *loss = loom_cross_entropy(loom_forward(net, x), y, NULL);
      loom_optimizer_zero_grad(opt);
      bool ok = loss && !loom_backward(loss, NULL, false) && !loom_optimizer_step(opt);
      if (ok) loss_sum += loom_item(loss) * (double)loom_size(x, 0);
      loom_scope_end();
      if (!ok) goto done;
    }
    if (loom_last_status() != LOOM_OK) goto done;
    double n = (double)loom_loader_num_samples(train_loader), secs = now_s() - t0;
    double lr = loom_optimizer_get_lr(opt, 0);
    acc = evaluate(net, test_loader); /* the test set, to follow progress; no choices are made on it */
    if (isnan(acc) || loom_scheduler_step(sched)) goto done;
    printf("epoch %ld/%ld  loss %.4f  lr %.2e  test acc %.2f%%  %.0f samples/s  (%.1f s)\n", epoch, o.epochs,
           loss_sum / n, lr, 100 * acc, n / secs, secs);
    fflush(stdout);
  }
  if (isnan(acc)) goto done;
  printf("test accuracy %.2f%% (%lld images), training %.1f s\n", 100 * acc,
         (long long)loom_loader_num_samples(test_loader), now_s() - t_start);
  rc = 0;
done:
  if (rc) fprintf(stderr, "bn_cnn: %s\n", loom_last_error());
  loom_scheduler_free(sched);
  loom_optimizer_free(opt);
  loom_loader_free(train_loader);
  loom_loader_free(test_loader);
  loom_module_free(net);
  return rc;
}
