/* The VAE of the PyTorch examples repository (vae/main.py: 784-400-20,
 * Adam lr 1e-3, batch 128, BCE + KL loss summed over the batch) trained on
 * Fashion-MNIST with the zoo's loom_model_vae, loom_vae_forward and
 * loom_vae_loss.
 *
 *   vae [--data DIR] [--epochs N] [--batch-size N] [--lr X] [--device cpu|cuda[:N]]
 *       [--limit N] [--seed N] [--out DIR]
 *
 * Prints the training loss per sample (the negative ELBO) and samples/s per
 * epoch, then the test set's loss; writes DIR/vae.safetensors (the model,
 * loom_module_save) and DIR/vae_samples.pgm (an 8x8 grid of images decoded
 * from z ~ N(0, I)). */
#include "fashion_common.h" /* first: it sets _POSIX_C_SOURCE */

#include <sys/stat.h>

#define LATENT 20

/* Takes "--out DIR" out of argv (the other flags go to fashion_parse). */
static const char *take_out(int *argc, char **argv, const char *dflt) {
  const char *out = dflt;
  int k = 1;
  for (int i = 1; i < *argc; i++) {
    if (!strcmp(argv[i], "--out") && i + 1 < *argc) out = argv[++i];
    else argv[k++] = argv[i];
  }
  *argc = k;
  return out;
}

static int run_epoch(loom_module *vae, loom_optimizer *opt, loom_loader *loader, long epoch, double *per_sample) {
  double sum = 0;
  loom_tensor *x, *y;
  loom_module_train(vae, opt != NULL);
  if (loom_loader_start_epoch(loader, epoch)) return -1;
  if (!opt) loom_no_grad_begin();
  bool ok = true;
  while (ok) {
    loom_scope_begin();
    if (!loom_loader_next(loader, &x, &y)) {
      loom_scope_end();
      break;
    }
    loom_tensor *mu = NULL, *logvar = NULL;
    loom_tensor *recon = loom_vae_forward(vae, x, &mu, &logvar); /* before mu and logvar are read */
    loom_tensor *loss = loom_vae_loss(recon, x, mu, logvar);
    if (opt) loom_optimizer_zero_grad(opt);
    ok = loss && (!opt || (!loom_backward(loss, NULL, false) && !loom_optimizer_step(opt)));
    if (ok) sum += loom_item(loss);
    loom_scope_end();
  }
  if (!opt) loom_no_grad_end();
  if (!ok || loom_last_status() != LOOM_OK) return -1;
  *per_sample = sum / (double)loom_loader_num_samples(loader);
  return 0;
}

/* Decodes 64 draws of z ~ N(0, I) (fc3, ReLU, fc4, Sigmoid) into host memory. */
static int decode_samples(loom_module *vae, loom_device dev, float *img) {
  loom_module_train(vae, false);
  loom_no_grad_begin();
  loom_scope_begin();
  loom_tensor *z = loom_randn(LOOM_SHAPE(64, LATENT), LOOM_F32, dev);
  loom_tensor *h = loom_relu(loom_forward(loom_module_child(vae, "fc3"), z));
  loom_tensor *p = loom_sigmoid(loom_forward(loom_module_child(vae, "fc4"), h));
  int rc = p ? loom_to_host(p, img, 64 * 784 * sizeof(float)) : -1;
  loom_scope_end();
  loom_no_grad_end();
  return rc;
}

int main(int argc, char **argv) {
  const char *out = take_out(&argc, argv, ".");
  fashion_opts o = {"/usr/share/datasets/fashion-mnist", NULL, 10, 128, 0, 1, 1e-3};
  if (fashion_parse("vae", argc, argv, &o)) {
    fprintf(stderr, "       [--out DIR] (default .): vae.safetensors and vae_samples.pgm\n");
    return 2;
  }
  loom_device dev;
  int rc = ex_device("vae", o.device, 0, &dev);
  if (rc) return rc;
  /* pixels in [0, 1] (no normalisation), as the Sigmoid decoder and the BCE loss expect */
  loom_loader *train = fashion_loader(&o, dev, true, NULL, NULL, false);
  loom_loader *test = train ? fashion_loader(&o, dev, false, NULL, NULL, false) : NULL;
  if (!train || !test) {
    fprintf(stderr, "vae: %s\n", loom_last_error());
    loom_loader_free(train);
    return 1;
  }
  loom_manual_seed((uint64_t)o.seed);
  loom_module *vae = loom_model_vae(NULL);
  loom_optimizer *opt = NULL;
  float *img = malloc(64 * 784 * sizeof(float));
  rc = 1;
  if (!vae || !img || loom_module_to_device(vae, dev)) goto done;
  opt = loom_adam_module(vae, &(loom_adam_opts){.lr = o.lr});
  if (!opt) goto done;
  printf("Fashion-MNIST: %lld training images, device %s\n", (long long)loom_loader_num_samples(train),
         loom_device_name(dev));
  printf("VAE 784-400-20 (%lld parameters), Adam lr %g, batch size %ld, %ld epochs\n",
         (long long)loom_module_num_params(vae, false), o.lr, o.batch_size, o.epochs);
  double t_start = ex_now(), first = NAN, last = NAN;
  for (long epoch = 1; epoch <= o.epochs; epoch++) {
    double t0 = ex_now();
    if (run_epoch(vae, opt, train, epoch - 1, &last)) goto done;
    if (epoch == 1) first = last;
    double secs = ex_now() - t0;
    printf("epoch %ld/%ld  loss per sample %.2f  %.0f samples/s  (%.1f s)\n", epoch, o.epochs, last,
           (double)loom_loader_num_samples(train) / secs, secs);
    fflush(stdout);
  }
  double test_loss;
  if (run_epoch(vae, NULL, test, 0, &test_loss)) goto done;
  printf("test loss per sample %.2f (%lld images), training %.1f s\n", test_loss,
         (long long)loom_loader_num_samples(test), ex_now() - t_start);
  if (o.epochs > 1) printf("training loss %s from %.2f to %.2f\n", last < first ? "fell" : "did not fall", first, last);
  mkdir(out, 0777); /* may exist already */
  char path[4096];
  snprintf(path, sizeof path, "%s/vae.safetensors", out);
  if (loom_module_save(vae, path)) goto done;
  printf("model saved: %s\n", path);
  snprintf(path, sizeof path, "%s/vae_samples.pgm", out);
  if (decode_samples(vae, dev, img)) goto done;
  if (fashion_write_pgm(path, img, 0)) {
    fprintf(stderr, "vae: cannot write %s: %s\n", path, strerror(errno));
    goto done;
  }
  printf("samples saved: %s (8x8 grid of decoded z ~ N(0, I))\n", path);
  rc = 0;
done:
  if (rc && loom_last_status() != LOOM_OK) fprintf(stderr, "vae: %s\n", loom_last_error());
  free(img);
  loom_optimizer_free(opt);
  loom_loader_free(train);
  loom_loader_free(test);
  loom_module_free(vae);
  return rc;
}
