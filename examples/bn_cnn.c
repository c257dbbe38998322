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
#include "fashion_common.h"

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
  fashion_opts o = {"/usr/share/datasets/fashion-mnist", NULL, 10, 64, 0, 0, 1e-3};
  if (fashion_parse("bn_cnn", argc, argv, &o)) return 2;
  loom_device dev;
  int rc = ex_device("bn_cnn", o.device, 0, &dev);
  if (rc) return rc;
  loom_loader *train_loader, *test_loader;
  if (fashion_loaders("bn_cnn", &o, dev, &train_loader, &test_loader)) return 1;
  loom_manual_seed((uint64_t)o.seed);
  loom_module *net = bn_cnn();
  loom_optimizer *opt = NULL;
  loom_scheduler *sched = NULL;
  rc = 1;
  if (!net || loom_module_to_device(net, dev)) goto done;
  opt = loom_adam_module(net, &(loom_adam_opts){.lr = o.lr});
  sched = opt ? loom_cosine_annealing_lr(opt, (int)o.epochs, 0) : NULL;
  if (!sched) goto done;
  printf("Fashion-MNIST: %lld training images, device %s\n", (long long)loom_loader_num_samples(train_loader),
         loom_device_name(dev));
  printf("BatchNorm CNN (%lld parameters), Adam lr %g with cosine decay, batch size %ld, %ld epochs\n",
         (long long)loom_module_num_params(net, false), o.lr, o.batch_size, o.epochs);
  double t_start = ex_now(), acc = NAN;
  for (long epoch = 1; epoch <= o.epochs; epoch++) {
    double t0 = ex_now(), loss;
    if (fashion_train_epoch(net, opt, train_loader, epoch, &loss)) goto done;
    double n = (double)loom_loader_num_samples(train_loader), secs = ex_now() - t0;
    double lr = loom_optimizer_get_lr(opt, 0);
    /* the test set, to follow progress; no choices are made on it */
    if (loom_evaluate(net, test_loader, NULL, &acc) || isnan(acc) || loom_scheduler_step(sched)) goto done;
    printf("epoch %ld/%ld  loss %.4f  lr %.2e  test acc %.2f%%  %.0f samples/s  (%.1f s)\n", epoch, o.epochs,
           loss, lr, 100 * acc, n / secs, secs);
    fflush(stdout);
  }
  if (isnan(acc)) goto done;
  printf("test accuracy %.2f%% (%lld images), training %.1f s\n", 100 * acc,
         (long long)loom_loader_num_samples(test_loader), ex_now() - t_start);
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
