/* The generative models on flattened 28x28 images: the autoencoder
 * (784-128-64-12-3 and back) and the VAE of the PyTorch examples
 * repository (vae/main.py: fc1, fc21, fc22, fc3, fc4), with its loss.
 * The GANs are in gan.c. PyTorch's default initialisation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/ops.h"
#include "models/models_impl.h"

typedef struct gen_state {
  char name[16];        /* "Autoencoder", "VAE": the first word of every error */
  int64_t in_channels;  /* images [N, C, 28, 28] ... */
  int64_t in_features;  /* ... or vectors [N, C * 784] */
  int64_t latent;
} gen_state;

static loom_module *gen_root(const loom_module_kind *kind, const char *name, int64_t channels, int64_t latent) {
  gen_state *s = calloc(1, sizeof *s);
  if (!s) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", name);
    return NULL;
  }
  snprintf(s->name, sizeof s->name, "%s", name);
  s->in_channels = channels;
  s->in_features = channels * 28 * 28;
  s->latent = latent;
  loom_module *m = loom_module_new(kind, s);
  if (!m) free(s);
  return m;
}

/* x as [N, in_features] (a view of [N, C, 28, 28]), in the caller's scope;
 * NULL + an error naming the model when x is neither. */
static loom_tensor *flat_input(const gen_state *s, const loom_tensor *x) {
  if (!x) return NULL;
  loom_shape sh = loom_shape_of(x);
  bool vec = sh.ndim == 2 && sh.d[1] == s->in_features;
  bool img = sh.ndim == 4 && sh.d[1] == s->in_channels && sh.d[2] == 28 && sh.d[3] == 28;
  if ((!vec && !img) || sh.d[0] < 1 || !loom_dtype_is_float(loom_dtype_of(x))) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected float input [N, %lld] or [N, %lld, 28, 28], got %s %s", s->name,
                   (long long)s->in_features, (long long)s->in_channels, loom_dtype_name(loom_dtype_of(x)),
                   loom_shape_str(sh));
    return NULL;
  }
  return vec ? loom_flatten(x, 1, -1) : loom_reshape(x, LOOM_SHAPE(sh.d[0], s->in_features));
}

/* Options shared by the autoencoder and the VAE. */
static bool gen_opts_ok(const char *name, const loom_model_opts *o, int64_t hidden, int64_t latent) {
  if (!model_opts_ok(name, o)) return false;
  if (hidden < 1 || latent < 1) {
    core_set_error(LOOM_ERR_INVALID, "%s: hidden (%lld) and latent_dim (%lld) must be >= 1", name, (long long)hidden,
                   (long long)latent);
    return false;
  }
  return true;
}

/* ---- autoencoder ---- */

static loom_tensor *ae_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  const gen_state *s = loom_module_state(m);
  if (!model_one_input(s->name, n_in)) return NULL;
  if (!in[0]) return NULL;
  loom_scope_begin();
  loom_tensor *x = flat_input(s, in[0]);
  loom_tensor *y = model_run(m, "decoder", model_run(m, "encoder", x));
  if (x && !y) model_name_error("%s", s->name);
  loom_keep(y);
  loom_scope_end();
  return y;
}

static const loom_module_kind ae_kind = {.type = "Autoencoder", .forward = ae_forward};

loom_module *loom_model_autoencoder(const loom_model_opts *opts) {
  loom_model_opts o = model_opts(opts, 10, 1);
  int64_t h = o.hidden ? o.hidden : 128, z = o.latent_dim ? o.latent_dim : 3, f = o.in_channels * 28 * 28;
  if (!gen_opts_ok("Autoencoder", &o, h, z)) return NULL;
  loom_module *m = gen_root(&ae_kind, "Autoencoder", o.in_channels, z);
  bool ok = m && !loom_module_add(m, "encoder",
                                  LOOM_SEQUENTIAL(loom_nn_linear(f, h, NULL), loom_nn_relu(),
                                                  loom_nn_linear(h, 64, NULL), loom_nn_relu(),
                                                  loom_nn_linear(64, 12, NULL), loom_nn_relu(),
                                                  loom_nn_linear(12, z, NULL)));
  ok = ok && !loom_module_add(m, "decoder",
                              LOOM_SEQUENTIAL(loom_nn_linear(z, 12, NULL), loom_nn_relu(), loom_nn_linear(12, 64, NULL),
                                              loom_nn_relu(), loom_nn_linear(64, h, NULL), loom_nn_relu(),
                                              loom_nn_linear(h, f, NULL), loom_nn_sigmoid()));
  return model_done(m, ok);
}

/* ---- VAE ---- */

/* recon, with *mu and *logvar, all in the caller's scope (NULLs on error). */
static loom_tensor *vae_run(loom_module *m, const loom_tensor *x_in, loom_tensor **mu, loom_tensor **logvar) {
  const gen_state *s = loom_module_state(m);
  *mu = *logvar = NULL;
  loom_tensor *x = flat_input(s, x_in);
  if (!x) return NULL;
  loom_tensor *h1 = loom_relu(model_run(m, "fc1", x));
  *mu = model_run(m, "fc21", h1);
  *logvar = *mu ? model_run(m, "fc22", h1) : NULL;
  loom_tensor *z = *logvar ? *mu : NULL;
  if (z && loom_module_training(m)) {
    /* z = mu + eps * exp(logvar / 2), eps from the device's generator */
    loom_tensor *eps = loom_randn(loom_shape_of(*mu), loom_dtype_of(*mu), loom_device_of(*mu));
    z = loom_add(*mu, loom_mul(eps, loom_exp(loom_mul_scalar(*logvar, 0.5))));
  }
  loom_tensor *recon = loom_sigmoid(model_run(m, "fc4", loom_relu(model_run(m, "fc3", z))));
  if (!recon) {
    model_name_error("%s", s->name);
    *mu = *logvar = NULL;
  }
  return recon;
}

static loom_tensor *vae_module_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  const gen_state *s = loom_module_state(m);
  if (!model_one_input(s->name, n_in)) return NULL;
  if (!in[0]) return NULL;
  loom_scope_begin();
  loom_tensor *mu, *logvar;
  loom_tensor *recon = loom_keep(vae_run(m, in[0], &mu, &logvar));
  loom_scope_end();
  return recon;
}

static const loom_module_kind vae_kind = {.type = "VAE", .forward = vae_module_forward};

loom_module *loom_model_vae(const loom_model_opts *opts) {
  loom_model_opts o = model_opts(opts, 10, 1);
  int64_t h = o.hidden ? o.hidden : 400, z = o.latent_dim ? o.latent_dim : 20, f = o.in_channels * 28 * 28;
  if (!gen_opts_ok("VAE", &o, h, z)) return NULL;
  loom_module *m = gen_root(&vae_kind, "VAE", o.in_channels, z);
  bool ok = m && !loom_module_add(m, "fc1", loom_nn_linear(f, h, NULL));
  ok = ok && !loom_module_add(m, "fc21", loom_nn_linear(h, z, NULL));
  ok = ok && !loom_module_add(m, "fc22", loom_nn_linear(h, z, NULL));
  ok = ok && !loom_module_add(m, "fc3", loom_nn_linear(z, h, NULL));
  ok = ok && !loom_module_add(m, "fc4", loom_nn_linear(h, f, NULL));
  return model_done(m, ok);
}

loom_tensor *loom_vae_forward(loom_module *vae, const loom_tensor *x, loom_tensor **mu, loom_tensor **logvar) {
  if (mu) *mu = NULL;
  if (logvar) *logvar = NULL;
  if (!vae || !mu || !logvar || loom_module_kind_of(vae) != &vae_kind) {
    core_set_error(LOOM_ERR_INVALID, "loom_vae_forward: needs a loom_model_vae module and mu and logvar pointers");
    return NULL;
  }
  if (!x) return NULL;
  loom_scope_begin();
  loom_tensor *recon = vae_run(vae, x, mu, logvar);
  if (recon) {
    loom_keep(recon);
    loom_keep(*mu);
    loom_keep(*logvar);
  }
  loom_scope_end();
  return recon;
}

loom_tensor *loom_vae_loss(const loom_tensor *recon, const loom_tensor *x, const loom_tensor *mu,
                           const loom_tensor *logvar) {
  if (!recon || !x || !mu || !logvar) {
    if (loom_last_status() == LOOM_OK) core_set_error(LOOM_ERR_INVALID, "loom_vae_loss: NULL input");
    return NULL;
  }
  loom_shape rs = loom_shape_of(recon), ms = loom_shape_of(mu);
  if (rs.ndim != 2 || loom_numel(x) != loom_numel(recon) || loom_size(x, 0) != rs.d[0] || ms.ndim != 2 ||
      ms.d[0] != rs.d[0] || !loom_shape_equal(ms, loom_shape_of(logvar))) {
    core_set_error(LOOM_ERR_INVALID,
                   "loom_vae_loss: expected recon [N, F], x with N * F elements, mu and logvar [N, latent]; got "
                   "recon %s, x %s, mu %s, logvar %s",
                   loom_shape_str(rs), loom_shape_str(loom_shape_of(x)), loom_shape_str(ms),
                   loom_shape_str(loom_shape_of(logvar)));
    return NULL;
  }
  loom_scope_begin();
  loom_tensor *bce = loom_bce_loss(recon, loom_reshape(x, rs), NULL, LOOM_REDUCTION_SUM);
  /* KLD = -0.5 sum(1 + logvar - mu^2 - exp(logvar)) */
  loom_tensor *terms = loom_sub(loom_sub(loom_add_scalar(logvar, 1.0), loom_square(mu)), loom_exp(logvar));
  loom_tensor *kld = loom_mul_scalar(loom_sum(terms, NULL, 0, false), -0.5);
  loom_tensor *loss = loom_keep(loom_add(bce, kld));
  loom_scope_end();
  if (!loss) model_name_error("loom_vae_loss");
  return loss;
}
