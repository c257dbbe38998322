/* A 784-256-10 MLP trained on Fashion-MNIST with Loom modules: Sequential,
 * Flatten, Linear, ReLU, cross-entropy, SGD and the data loader.
 *
 *   mlp [--data DIR] [--epochs N] [--batch-size N] [--lr X]
 *       [--device cpu|cuda[:N]] [--limit N] [--seed N]
 *
 * Prints one line per epoch and the test accuracy. */
#include "fashion_common.h"

int main(int argc, char **argv) {
  fashion_opts o = {"/usr/share/datasets/fashion-mnist", NULL, 5, 64, 0, 0, 0.05};
  if (fashion_parse("mlp", argc, argv, &o)) return 2;
  loom_device dev;
  int rc = ex_device("mlp", o.device, 0, &dev);
  if (rc) return rc;
  loom_loader *train_loader, *test_loader;
  if (fashion_loaders("mlp", &o, dev, &train_loader, &test_loader)) return 1;
  loom_manual_seed((uint64_t)o.seed);
  loom_module *net = loom_model_mlp(NULL); /* the zoo's MLP: Flatten, 784-256, ReLU, 256-10 */
  loom_optimizer *opt = NULL;
  rc = 1;
  if (!net || loom_module_to_device(net, dev)) goto done;
  opt = loom_sgd_module(net, &(loom_sgd_opts){.lr = o.lr});
  if (!opt) goto done;
  printf("Fashion-MNIST: %lld training images, device %s\n", (long long)loom_loader_num_samples(train_loader),
         loom_device_name(dev));
  printf("MLP 784-256-10 (%lld parameters), SGD lr %g, batch size %ld, %ld epochs\n",
         (long long)loom_module_num_params(net, false), o.lr, o.batch_size, o.epochs);
  double t_start = ex_now();
  for (long epoch = 1; epoch <= o.epochs; epoch++) {
    double t0 = ex_now(), loss;
    if (fashion_train_epoch(net, opt, train_loader, epoch, &loss)) goto done;
    double n = (double)loom_loader_num_samples(train_loader), secs = ex_now() - t0;
    printf("epoch %ld/%ld  loss %.4f  %.0f samples/s  (%.1f s)\n", epoch, o.epochs, loss, n / secs, secs);
    fflush(stdout);
  }
  double acc;
  if (loom_evaluate(net, test_loader, NULL, &acc) || isnan(acc)) goto done;
  printf("test accuracy %.2f%% (%lld images), training %.1f s\n", 100 * acc,
         (long long)loom_loader_num_samples(test_loader), ex_now() - t_start);
  rc = 0;
done:
  if (rc) fprintf(stderr, "mlp: %s\n", loom_last_error());
  loom_optimizer_free(opt);
  loom_loader_free(train_loader);
  loom_loader_free(test_loader);
  loom_module_free(net);
  return rc;
}
