/* GANs on 28x28 images scaled to [-1, 1]: the MLP GAN (generator
 * noise-256-512-1024-784 with LeakyReLU 0.2 and Tanh, discriminator
 * 784-512-256-1) and DCGAN (the PyTorch DCGAN tutorial's Generator and
 * Discriminator, "main" Sequentials, scaled to 28x28: transposed convs
 * 1 -> 7 -> 14 -> 28 and convs 28 -> 14 -> 7 -> 1, its N(0, 0.02) init), and
 * one alternating training step with BCE-with-logits losses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/ops.h"
#include "loom/optim.h"
#include "models/models_impl.h"

typedef struct gan_state {
  char name[24];        /* "GAN", "DCGAN", "DCGAN generator": the first word of every error */
  bool conv;            /* DCGAN */
  int64_t latent;       /* noise size */
  int64_t channels;     /* images [N, channels, 28, 28] = [N, features] */
  int64_t features;
} gan_state;

static loom_module *gan_node(const loom_module_kind *kind, const char *name, bool conv, int64_t latent,
                             int64_t channels) {
  gan_state *s = calloc(1, sizeof *s);
  if (!s) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", name);
    return NULL;
  }
  snprintf(s->name, sizeof s->name, "%s", name);
  s->conv = conv;
  s->latent = latent;
  s->channels = channels;
  s->features = channels * 28 * 28;
  loom_module *m = loom_module_new(kind, s);
  if (!m) free(s);
  return m;
}

/* Noise [N, latent] (DCGAN also [N, latent, 1, 1]) as [N, latent] or, with
 * conv, [N, latent, 1, 1]; in the caller's scope. */
static loom_tensor *noise_input(const gan_state *s, const loom_tensor *z, bool conv) {
  loom_shape sh = loom_shape_of(z);
  bool flat = sh.ndim == 2 && sh.d[1] == s->latent;
  bool img = s->conv && sh.ndim == 4 && sh.d[1] == s->latent && sh.d[2] == 1 && sh.d[3] == 1;
  if ((!flat && !img) || sh.d[0] < 1 || !loom_dtype_is_float(loom_dtype_of(z))) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected float noise [N, %lld]%s, got %s %s", s->name,
                   (long long)s->latent, s->conv ? " or [N, latent, 1, 1]" : "", loom_dtype_name(loom_dtype_of(z)),
                   loom_shape_str(sh));
    return NULL;
  }
  return conv ? loom_reshape(z, LOOM_SHAPE(sh.d[0], s->latent, 1, 1)) : loom_reshape(z, LOOM_SHAPE(sh.d[0], s->latent));
}

/* Images [N, features] or [N, C, 28, 28] as [N, C, 28, 28] (conv) or
 * [N, features]; in the caller's scope. */
static loom_tensor *image_input(const gan_state *s, const loom_tensor *x, bool conv) {
  loom_shape sh = loom_shape_of(x);
  bool flat = sh.ndim == 2 && sh.d[1] == s->features;
  bool img = sh.ndim == 4 && sh.d[1] == s->channels && sh.d[2] == 28 && sh.d[3] == 28;
  if ((!flat && !img) || sh.d[0] < 1 || !loom_dtype_is_float(loom_dtype_of(x))) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected float images [N, %lld] or [N, %lld, 28, 28], got %s %s", s->name,
                   (long long)s->features, (long long)s->channels, loom_dtype_name(loom_dtype_of(x)),
                   loom_shape_str(sh));
    return NULL;
  }
  return conv ? loom_reshape(x, LOOM_SHAPE(sh.d[0], s->channels, 28, 28))
              : loom_reshape(x, LOOM_SHAPE(sh.d[0], s->features));
}

/* ---- DCGAN's Generator and Discriminator: a "main" Sequential each ---- */

static loom_tensor *dc_generator_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  const gan_state *s = loom_module_state(m);
  if (!model_one_input(s->name, n_in) || !in[0]) return NULL;
  loom_scope_begin();
  loom_tensor *y = loom_keep(model_run(m, "main", noise_input(s, in[0], true)));
  loom_scope_end();
  return y;
}

static loom_tensor *dc_discriminator_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  const gan_state *s = loom_module_state(m);
  if (!model_one_input(s->name, n_in) || !in[0]) return NULL;
  loom_scope_begin();
  loom_tensor *y = loom_keep(loom_flatten(model_run(m, "main", image_input(s, in[0], true)), 1, -1));
  loom_scope_end();
  return y;
}

/* ---- the GAN root: discriminator(generator(z)) ---- */

static loom_tensor *gan_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  const gan_state *s = loom_module_state(m);
  if (!model_one_input(s->name, n_in) || !in[0]) return NULL;
  loom_scope_begin();
  loom_tensor *z = noise_input(s, in[0], false);
  loom_tensor *y = model_run(m, "discriminator", model_run(m, "generator", z));
  if (z && !y) model_name_error("%s", s->name);
  loom_keep(y);
  loom_scope_end();
  return y;
}

static const loom_module_kind gan_kind = {.type = "GAN", .forward = gan_forward};
static const loom_module_kind dcgan_kind = {.type = "DCGAN", .forward = gan_forward};
static const loom_module_kind dc_generator_kind = {.type = "Generator", .forward = dc_generator_forward};
static const loom_module_kind dc_discriminator_kind = {.type = "Discriminator", .forward = dc_discriminator_forward};

static bool gan_opts_ok(const char *name, const loom_model_opts *o, int64_t width, int64_t latent) {
  if (!model_opts_ok(name, o)) return false;
  if (width < 1 || latent < 1) {
    core_set_error(LOOM_ERR_INVALID, "%s: hidden (%lld) and latent_dim (%lld) must be >= 1", name, (long long)width,
                   (long long)latent);
    return false;
  }
  return true;
}

loom_module *loom_model_gan(const loom_model_opts *opts) {
  loom_model_opts o = model_opts(opts, 10, 1);
  int64_t h = o.hidden ? o.hidden : 256, z = o.latent_dim ? o.latent_dim : 100, f = o.in_channels * 28 * 28;
  if (!gan_opts_ok("GAN", &o, h, z)) return NULL;
  loom_module *m = gan_node(&gan_kind, "GAN", false, z, o.in_channels);
  bool ok = m && !loom_module_add(m, "generator",
                                  LOOM_SEQUENTIAL(loom_nn_linear(z, h, NULL), loom_nn_leaky_relu(0.2),
                                                  loom_nn_linear(h, 2 * h, NULL), loom_nn_leaky_relu(0.2),
                                                  loom_nn_linear(2 * h, 4 * h, NULL), loom_nn_leaky_relu(0.2),
                                                  loom_nn_linear(4 * h, f, NULL), loom_nn_tanh()));
  ok = ok && !loom_module_add(m, "discriminator",
                              LOOM_SEQUENTIAL(loom_nn_linear(f, 2 * h, NULL), loom_nn_leaky_relu(0.2),
                                              loom_nn_linear(2 * h, h, NULL), loom_nn_leaky_relu(0.2),
                                              loom_nn_linear(h, 1, NULL)));
  return model_done(m, ok);
}

static loom_module *conv_t(int64_t in, int64_t out, int k, int stride, int pad) {
  loom_conv_opts c = {.stride = {stride, stride}, .padding = {pad, pad}, .no_bias = true};
  return loom_nn_conv_transpose2d(in, out, k, k, &c);
}

/* The DCGAN tutorial's weights_init: conv weights N(0, 0.02), BatchNorm weight N(1, 0.02) and bias 0. */
static void dcgan_init(loom_module *m, void *user) {
  (void)user;
  const char *type = loom_module_type(m);
  if (!strcmp(type, "Conv2d") || !strcmp(type, "ConvTranspose2d")) {
    loom_init_normal_(loom_module_param(m, "weight"), 0, 0.02);
  } else if (!strcmp(type, "BatchNorm2d")) {
    loom_init_normal_(loom_module_param(m, "weight"), 1, 0.02);
    loom_init_zeros_(loom_module_param(m, "bias"));
  }
}

loom_module *loom_model_dcgan(const loom_model_opts *opts) {
  loom_model_opts o = model_opts(opts, 10, 1);
  int64_t w = o.hidden ? o.hidden : 64, z = o.latent_dim ? o.latent_dim : 100, c = o.in_channels;
  if (!gan_opts_ok("DCGAN", &o, w, z)) return NULL;
  loom_module *m = gan_node(&dcgan_kind, "DCGAN", true, z, c);
  loom_module *g = m ? gan_node(&dc_generator_kind, "DCGAN generator", true, z, c) : NULL;
  bool ok = m && !loom_module_add(m, "generator", g);
  ok = ok && !loom_module_add(g, "main",
                              LOOM_SEQUENTIAL(conv_t(z, 2 * w, 7, 1, 0), loom_nn_batch_norm2d(2 * w, NULL),
                                              loom_nn_relu(), conv_t(2 * w, w, 4, 2, 1),
                                              loom_nn_batch_norm2d(w, NULL), loom_nn_relu(), conv_t(w, c, 4, 2, 1),
                                              loom_nn_tanh()));
  loom_module *d = ok ? gan_node(&dc_discriminator_kind, "DCGAN discriminator", true, z, c) : NULL;
  ok = ok && !loom_module_add(m, "discriminator", d);
  ok = ok && !loom_module_add(d, "main",
                              LOOM_SEQUENTIAL(model_conv(c, w, 4, 2, 1, 1, false), loom_nn_leaky_relu(0.2),
                                              model_conv(w, 2 * w, 4, 2, 1, 1, false),
                                              loom_nn_batch_norm2d(2 * w, NULL), loom_nn_leaky_relu(0.2),
                                              model_conv(2 * w, 1, 7, 1, 0, 1, false)));
  if (ok) loom_module_apply(m, dcgan_init, NULL);
  return model_done(m, ok);
}

/* ---- one alternating step ---- */

static double mean_prob(loom_tensor *logits) { return loom_item(loom_mean(loom_sigmoid(logits), NULL, 0, false)); }

static int step_failed(const gan_state *s) {
  model_name_error("%s", s->name);
  return loom_last_status() ? loom_last_status() : LOOM_ERR_INVALID;
}

int loom_gan_train_step(loom_module *gan, loom_optimizer *opt_g, loom_optimizer *opt_d, const loom_tensor *real,
                        loom_gan_stats *stats) {
  if (!gan || (loom_module_kind_of(gan) != &gan_kind && loom_module_kind_of(gan) != &dcgan_kind) || !opt_g ||
      !opt_d || !real) {
    core_set_error(LOOM_ERR_INVALID,
                   "loom_gan_train_step: needs a loom_model_gan / loom_model_dcgan module, two optimisers and a "
                   "batch of real images");
    return LOOM_ERR_INVALID;
  }
  const gan_state *s = loom_module_state(gan);
  loom_tensor *weight = loom_module_param(gan, s->conv ? "discriminator.main.0.weight" : "discriminator.0.weight");
  if (!weight) return step_failed(s);
  loom_device dev = loom_device_of(weight);
  int rc = 0;
  loom_gan_stats st = {0};
  loom_scope_begin();
  loom_tensor *x = image_input(s, real, false);
  if (x && !loom_device_equal(loom_device_of(x), dev)) x = loom_to_device(x, dev);
  if (x && loom_dtype_of(x) != loom_dtype_of(weight)) x = loom_to_dtype(x, loom_dtype_of(weight));
  loom_tensor *z = x ? loom_randn(LOOM_SHAPE(loom_size(x, 0), s->latent), loom_dtype_of(weight), dev) : NULL;
  /* the discriminator: real -> 1, generated (detached) -> 0 */
  loom_tensor *fake = model_run(gan, "generator", z);
  loom_tensor *d_real = model_run(gan, "discriminator", x);
  loom_tensor *d_fake = fake && d_real ? model_run(gan, "discriminator", loom_detach(fake)) : NULL;
  loom_tensor *ones = loom_ones_like(d_real), *zeros = loom_zeros_like(d_real);
  loom_tensor *loss_d = loom_add(loom_bce_with_logits(d_real, ones, NULL, NULL, LOOM_REDUCTION_MEAN),
                                 loom_bce_with_logits(d_fake, zeros, NULL, NULL, LOOM_REDUCTION_MEAN));
  if (!loss_d) rc = step_failed(s);
  if (!rc) {
    st.d_real = mean_prob(d_real);
    st.d_fake = mean_prob(d_fake);
    st.d_loss = loom_item(loss_d);
    loom_optimizer_zero_grad(opt_d);
    if (loom_backward(loss_d, NULL, false) || loom_optimizer_step(opt_d)) rc = step_failed(s);
  }
  /* the generator through the updated discriminator, label 1 (non-saturating) */
  if (!rc) {
    loom_tensor *g_out = model_run(gan, "discriminator", fake);
    loom_tensor *loss_g = loom_bce_with_logits(g_out, ones, NULL, NULL, LOOM_REDUCTION_MEAN);
    loom_optimizer_zero_grad(opt_g);
    if (!loss_g || loom_backward(loss_g, NULL, false) || loom_optimizer_step(opt_g)) rc = step_failed(s);
    else st.g_loss = loom_item(loss_g);
  }
  loom_scope_end();
  if (!rc && stats) *stats = st;
  return rc;
}
