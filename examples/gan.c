/* A GAN trained on Fashion-MNIST with the zoo's loom_model_gan (MLP) or
 * loom_model_dcgan and loom_gan_train_step: images scaled to [-1, 1], Adam
 * lr 2e-4 with beta1 0.5 for both networks (the DCGAN tutorial's recipe),
 * batch 64.
 *
 *   gan [--model gan|dcgan] [--data DIR] [--epochs N] [--batch-size N] [--lr X]
 *       [--device cpu|cuda[:N]] [--limit N] [--seed N] [--out DIR]
 *
 * Prints the losses, mean D(x), D(G(z)) and samples/s (every 100 steps and per
 * epoch); writes DIR/<model>.safetensors (loom_module_save) and
 * DIR/<model>_samples.pgm (an 8x8 grid of generated images). */
#include "fashion_common.h" /* first: it sets _POSIX_C_SOURCE */

#include <sys/stat.h>

#define LATENT 100

/* Takes "--out DIR" and "--model NAME" out of argv (the rest go to fashion_parse). */
static void take_flags(int *argc, char **argv, const char **out, const char **model) {
  int k = 1;
  for (int i = 1; i < *argc; i++) {
    if (!strcmp(argv[i], "--out") && i + 1 < *argc) *out = argv[++i];
    else if (!strcmp(argv[i], "--model") && i + 1 < *argc) *model = argv[++i];
    else argv[k++] = argv[i];
  }
  *argc = k;
}

static int generate(loom_module *gan, loom_device dev, float *img) {
  loom_module_train(gan, false);
  loom_no_grad_begin();
  loom_scope_begin();
  loom_tensor *z = loom_randn(LOOM_SHAPE(64, LATENT), LOOM_F32, dev);
  loom_tensor *x = loom_forward(loom_module_child(gan, "generator"), z);
  int rc = x ? loom_to_host(x, img, 64 * 784 * sizeof(float)) : -1;
  loom_scope_end();
  loom_no_grad_end();
  loom_module_train(gan, true);
  return rc;
}

int main(int argc, char **argv) {
  const char *out = ".", *model = "gan";
  take_flags(&argc, argv, &out, &model);
  fashion_opts o = {"/usr/share/datasets/fashion-mnist", NULL, 5, 64, 0, 1, 2e-4};
  if (fashion_parse("gan", argc, argv, &o)) {
    fprintf(stderr, "       [--model gan|dcgan] (default gan) [--out DIR] (default .)\n");
    return 2;
  }
  if (strcmp(model, "gan") && strcmp(model, "dcgan")) {
    fprintf(stderr, "gan: --model must be gan or dcgan, got '%s'\n", model);
    return 2;
  }
  loom_device dev;
  int rc = ex_device("gan", o.device, 0, &dev);
  if (rc) return rc;
  static const float half = 0.5f; /* (x - 0.5) / 0.5: pixels in [-1, 1] like the generator's Tanh */
  loom_loader *loader = fashion_loader(&o, dev, true, &half, &half, true);
  if (!loader) {
    fprintf(stderr, "gan: %s\n", loom_last_error());
    return 1;
  }
  loom_manual_seed((uint64_t)o.seed);
  loom_module *gan = loom_model_create(model, NULL);
  loom_optimizer *opt_g = NULL, *opt_d = NULL;
  float *img = malloc(64 * 784 * sizeof(float));
  rc = 1;
  if (!gan || !img || loom_module_to_device(gan, dev)) goto done;
  loom_adam_opts ao = {.lr = o.lr, .beta1 = 0.5};
  opt_g = loom_adam_module(loom_module_child(gan, "generator"), &ao);
  opt_d = loom_adam_module(loom_module_child(gan, "discriminator"), &ao);
  if (!opt_g || !opt_d) goto done;
  long steps_per_epoch = (long)loom_loader_num_batches(loader);
  printf("Fashion-MNIST: %lld training images, device %s\n", (long long)loom_loader_num_samples(loader),
         loom_device_name(dev));
  printf("%s: generator %lld, discriminator %lld parameters; Adam lr %g beta1 0.5, batch size %ld, %ld epochs\n",
         model, (long long)loom_module_num_params(loom_module_child(gan, "generator"), false),
         (long long)loom_module_num_params(loom_module_child(gan, "discriminator"), false), o.lr, o.batch_size,
         o.epochs);
  double t_start = ex_now(), first_d = NAN, last_d = NAN;
  long step = 0;
  for (long epoch = 1; epoch <= o.epochs; epoch++) {
    double t0 = ex_now(), tw = t0, sum[4] = {0};
    long n = 0, since = 0;
    if (loom_loader_start_epoch(loader, epoch - 1)) goto done;
    loom_tensor *x, *y;
    for (;;) {
      loom_scope_begin();
      if (!loom_loader_next(loader, &x, &y)) {
        loom_scope_end();
        break;
      }
      loom_gan_stats st;
      int bad = loom_gan_train_step(gan, opt_g, opt_d, x, &st);
      loom_scope_end();
      if (bad) goto done;
      step++, n++, since++;
      sum[0] += st.d_loss, sum[1] += st.g_loss, sum[2] += st.d_real, sum[3] += st.d_fake;
      if (step == 1) first_d = st.d_loss;
      if (step % 100 == 0) {
        double now = ex_now();
        printf("  step %ld  d_loss %.3f  g_loss %.3f  D(x) %.3f  D(G(z)) %.3f  %.0f samples/s\n", step, st.d_loss,
               st.g_loss, st.d_real, st.d_fake, (double)(since * o.batch_size) / (now - tw));
        fflush(stdout);
        tw = now, since = 0;
      }
    }
    if (loom_last_status() != LOOM_OK || n == 0) goto done;
    double secs = ex_now() - t0;
    last_d = sum[0] / n;
    printf("epoch %ld/%ld  d_loss %.3f  g_loss %.3f  D(x) %.3f  D(G(z)) %.3f  %.0f samples/s  (%.1f s, %ld steps)\n",
           epoch, o.epochs, last_d, sum[1] / n, sum[2] / n, sum[3] / n, (double)(n * o.batch_size) / secs, secs,
           steps_per_epoch);
    fflush(stdout);
  }
  printf("training %.1f s; discriminator loss %s from %.3f (first step) to %.3f (last epoch's mean)\n",
         ex_now() - t_start, last_d < first_d ? "fell" : "did not fall", first_d, last_d);
  mkdir(out, 0777); /* may exist already */
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.safetensors", out, model);
  if (loom_module_save(gan, path)) goto done;
  printf("model saved: %s\n", path);
  snprintf(path, sizeof path, "%s/%s_samples.pgm", out, model);
  if (generate(gan, dev, img)) goto done;
  if (fashion_write_pgm(path, img, -1)) {
    fprintf(stderr, "gan: cannot write %s: %s\n", path, strerror(errno));
    goto done;
  }
  printf("samples saved: %s (8x8 grid of G(z), z ~ N(0, I))\n", path);
  rc = 0;
done:
  if (rc && loom_last_status() != LOOM_OK) fprintf(stderr, "gan: %s\n", loom_last_error());
  free(img);
  loom_optimizer_free(opt_g);
  loom_optimizer_free(opt_d);
  loom_loader_free(loader);
  loom_module_free(gan);
  return rc;
}
