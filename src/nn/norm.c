/* Normalisation modules: BatchNorm1d/2d/3d, InstanceNorm1d/2d/3d, LayerNorm,
 * GroupNorm (PyTorch's torch.nn classes, forward through the functional ops
 * of src/core/norm.c). macs: one multiply-add per output element (the
 * normalising affine map y = x * scale + shift); statistics are not counted. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/ops.h"
#include "nn/layers_impl.h"
#include "nn/module_impl.h"

static loom_norm_config *cfg(const loom_module *m) { return loom_module_state(m); }

static loom_tensor *param(const loom_module *m, const char *name, bool present) {
  return present ? loom_module_param(m, name) : NULL;
}

static int64_t norm_macs(const loom_module *m, loom_tensor *const *in, int n_in, const loom_tensor *out) {
  return out ? loom_numel(out) : 0;
}

static void reset_running_stats(loom_module *m) {
  if (!cfg(m)->track_running_stats) return;
  loom_init_zeros_(loom_module_buffer(m, "running_mean"));
  loom_init_ones_(loom_module_buffer(m, "running_var"));
  loom_fill_(loom_module_buffer(m, "num_batches_tracked"), 0);
}

static void reset_parameters(loom_module *m) {
  loom_norm_config *c = cfg(m);
  reset_running_stats(m);
  if (!c->affine) return;
  loom_init_ones_(loom_module_param(m, "weight"));
  if (c->bias) loom_init_zeros_(loom_module_param(m, "bias"));
}

/* Errors of the functional op name the layer too: "LayerNorm: layer_norm: ...". */
static loom_tensor *named(const loom_module *m, loom_tensor *y) {
  if (y) return y;
  const char *type = loom_module_type(m);
  if (strncmp(loom_last_error(), type, strlen(type)) == 0) return NULL; /* named already */
  return nn_layer_error(m);
}

/* ---- BatchNorm ---- */

static loom_tensor *batch_norm_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (!nn_one_input(m, n_in)) return NULL;
  const loom_norm_config *c = cfg(m);
  const loom_tensor *x = in[0];
  const char *type = loom_module_type(m);
  int nd = x->shape.ndim;
  bool ok_rank = c->kind == LOOM_NORM_BATCH3D ? nd == 5 : c->kind == LOOM_NORM_BATCH2D ? nd == 4 : (nd == 2 || nd == 3);
  if (!ok_rank || x->shape.d[1] != c->num_features) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected input %s with C = %lld, got %s", type,
                   c->kind == LOOM_NORM_BATCH3D   ? "[N, C, D, H, W]"
                   : c->kind == LOOM_NORM_BATCH2D ? "[N, C, H, W]"
                                                  : "[N, C] or [N, C, L]",
                   (long long)c->num_features, loom_shape_str(x->shape));
    return NULL;
  }
  bool training = loom_module_training(m);
  double factor = isnan(c->momentum) ? 0.0 : c->momentum;
  loom_tensor *rm = NULL, *rv = NULL, *nbt = NULL;
  if (c->track_running_stats) {
    rm = loom_module_buffer(m, "running_mean");
    rv = loom_module_buffer(m, "running_var");
    nbt = training ? loom_module_buffer(m, "num_batches_tracked") : NULL;
    if ((training && !nbt) || !rm || !rv) return named(m, NULL);
    /* momentum None: a cumulative moving average over the batches counted so far */
    if (nbt && isnan(c->momentum)) factor = 1.0 / (loom_item(nbt) + 1);
  }
  /* batch statistics when training or when no running statistics are kept;
   * the running ones are updated only while training */
  bool use_batch = training || !c->track_running_stats;
  loom_tensor *y = loom_batch_norm(x, rm, rv, param(m, "weight", c->affine), param(m, "bias", c->affine), use_batch,
                                   factor, c->eps);
  /* counted only once the batch went through, so a rejected input changes nothing */
  if (y && nbt) {
    loom_scope_begin();
    loom_no_grad_begin();
    loom_status st = loom_copy_(nbt, loom_add(nbt, loom_ones_like(nbt))); /* i64 throughout */
    loom_no_grad_end();
    loom_scope_end();
    if (st) y = NULL; /* y stays in the caller's scope */
  }
  return named(m, y);
}

static const loom_module_kind batch_norm1d_kind = {"BatchNorm1d", batch_norm_forward, NULL, norm_macs,
                                                   reset_parameters};
static const loom_module_kind batch_norm2d_kind = {"BatchNorm2d", batch_norm_forward, NULL, norm_macs,
                                                   reset_parameters};
static const loom_module_kind batch_norm3d_kind = {"BatchNorm3d", batch_norm_forward, NULL, norm_macs,
                                                   reset_parameters};

/* Builds the module: parameters weight / bias of shape ps when affine (bias
 * when c->bias), running statistics [num_features] when tracked. Takes c. */
static loom_module *build(const loom_module_kind *kind, loom_norm_config *c, loom_shape ps) {
  loom_module *m = loom_module_new(kind, c);
  if (!m) {
    free(c);
    return NULL;
  }
  loom_scope_begin();
  bool ok = true;
  if (c->affine) {
    ok = loom_module_add_parameter(m, "weight", loom_ones(ps, LOOM_F32, loom_cpu())) != NULL;
    if (ok && c->bias) ok = loom_module_add_parameter(m, "bias", loom_zeros(ps, LOOM_F32, loom_cpu())) != NULL;
  }
  if (ok && c->track_running_stats) {
    loom_shape cs = LOOM_SHAPE(c->num_features);
    ok = loom_module_add_buffer(m, "running_mean", loom_zeros(cs, LOOM_F32, loom_cpu()), true) &&
         loom_module_add_buffer(m, "running_var", loom_ones(cs, LOOM_F32, loom_cpu()), true) &&
         loom_module_add_buffer(m, "num_batches_tracked", loom_zeros(LOOM_SHAPE(), LOOM_I64, loom_cpu()), true);
  }
  loom_scope_end();
  if (!ok) {
    loom_module_free(m);
    return NULL;
  }
  return m;
}

/* Validates eps / momentum (0 = defaults) and fills the common fields. */
static loom_norm_config *new_config(const char *type, loom_norm_kind kind, int64_t features, double eps,
                                    double momentum, bool set_momentum) {
  if (features <= 0 || eps < 0 || !isfinite(eps) || momentum < 0 || momentum > 1) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected num_features > 0, eps >= 0, momentum in [0, 1] or NAN; got %lld, %g, %g",
                   type, (long long)features, eps, momentum);
    return NULL;
  }
  loom_norm_config *c = calloc(1, sizeof *c);
  if (!c) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", type);
    return NULL;
  }
  c->kind = kind;
  c->num_features = features;
  c->eps = eps == 0 ? 1e-5 : eps;
  c->momentum = momentum == 0 && !set_momentum ? 0.1 : momentum;
  c->bias = true;
  return c;
}

static loom_module *batch_norm(const loom_module_kind *kind, loom_norm_kind nk, int64_t features,
                               const loom_batch_norm_options *o) {
  loom_batch_norm_options d = {0};
  if (!o) o = &d;
  loom_norm_config *c = new_config(kind->type, nk, features, o->eps, o->momentum, o->set_momentum);
  if (!c) return NULL;
  c->affine = !o->no_affine;
  c->track_running_stats = !o->no_track_running_stats;
  return build(kind, c, LOOM_SHAPE(features));
}

loom_module *loom_nn_batch_norm1d(int64_t num_features, const loom_batch_norm_options *opts) {
  return batch_norm(&batch_norm1d_kind, LOOM_NORM_BATCH1D, num_features, opts);
}
loom_module *loom_nn_batch_norm2d(int64_t num_features, const loom_batch_norm_options *opts) {
  return batch_norm(&batch_norm2d_kind, LOOM_NORM_BATCH2D, num_features, opts);
}
loom_module *loom_nn_batch_norm3d(int64_t num_features, const loom_batch_norm_options *opts) {
  return batch_norm(&batch_norm3d_kind, LOOM_NORM_BATCH3D, num_features, opts);
}

/* ---- InstanceNorm ---- */

static loom_tensor *instance_norm_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (!nn_one_input(m, n_in)) return NULL;
  const loom_norm_config *c = cfg(m);
  const loom_tensor *x = in[0];
  int batched = c->kind == LOOM_NORM_INSTANCE3D ? 5 : c->kind == LOOM_NORM_INSTANCE2D ? 4 : 3;
  int nd = x->shape.ndim;
  if (nd != batched && nd != batched - 1) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected input %s, got %s", loom_module_type(m),
                   batched == 5   ? "[N, C, D, H, W] or [C, D, H, W]"
                   : batched == 4 ? "[N, C, H, W] or [C, H, W]"
                                  : "[N, C, L] or [C, L]",
                   loom_shape_str(x->shape));
    return NULL;
  }
  int64_t C = x->shape.d[nd - batched + 1];
  if (C != c->num_features && (c->affine || c->track_running_stats)) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected %lld channels (dim %d), got input %s", loom_module_type(m),
                   (long long)c->num_features, nd - batched + 1, loom_shape_str(x->shape));
    return NULL;
  }
  bool use_input = loom_module_training(m) || !c->track_running_stats;
  loom_tensor *rm = c->track_running_stats ? loom_module_buffer(m, "running_mean") : NULL;
  loom_tensor *rv = c->track_running_stats ? loom_module_buffer(m, "running_var") : NULL;
  double momentum = isnan(c->momentum) ? 0.0 : c->momentum; /* PyTorch: momentum None -> 0 here */
  loom_scope_begin();
  const loom_tensor *xb = nd == batched ? x : loom_unsqueeze(x, 0); /* unbatched: a batch of one */
  loom_tensor *y = loom_instance_norm(xb, rm, rv, param(m, "weight", c->affine), param(m, "bias", c->affine),
                                      use_input, momentum, c->eps);
  if (nd != batched) y = loom_squeeze(y, 0);
  loom_keep(y);
  loom_scope_end();
  return named(m, y);
}

static const loom_module_kind instance_norm1d_kind = {"InstanceNorm1d", instance_norm_forward, NULL, norm_macs,
                                                      reset_parameters};
static const loom_module_kind instance_norm2d_kind = {"InstanceNorm2d", instance_norm_forward, NULL, norm_macs,
                                                      reset_parameters};
static const loom_module_kind instance_norm3d_kind = {"InstanceNorm3d", instance_norm_forward, NULL, norm_macs,
                                                      reset_parameters};

static loom_module *instance_norm(const loom_module_kind *kind, loom_norm_kind nk, int64_t features,
                                  const loom_instance_norm_options *o) {
  loom_instance_norm_options d = {0};
  if (!o) o = &d;
  loom_norm_config *c = new_config(kind->type, nk, features, o->eps, o->momentum, o->set_momentum);
  if (!c) return NULL;
  c->affine = o->affine;
  c->track_running_stats = o->track_running_stats;
  return build(kind, c, LOOM_SHAPE(features));
}

loom_module *loom_nn_instance_norm1d(int64_t num_features, const loom_instance_norm_options *opts) {
  return instance_norm(&instance_norm1d_kind, LOOM_NORM_INSTANCE1D, num_features, opts);
}
loom_module *loom_nn_instance_norm2d(int64_t num_features, const loom_instance_norm_options *opts) {
  return instance_norm(&instance_norm2d_kind, LOOM_NORM_INSTANCE2D, num_features, opts);
}
loom_module *loom_nn_instance_norm3d(int64_t num_features, const loom_instance_norm_options *opts) {
  return instance_norm(&instance_norm3d_kind, LOOM_NORM_INSTANCE3D, num_features, opts);
}

/* ---- LayerNorm ---- */

static loom_tensor *layer_norm_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (!nn_one_input(m, n_in)) return NULL;
  const loom_norm_config *c = cfg(m);
  return named(m, loom_layer_norm(in[0], c->normalized_shape, c->n_normalized, param(m, "weight", c->affine),
                                  param(m, "bias", c->affine && c->bias), c->eps));
}

static const loom_module_kind layer_norm_kind = {"LayerNorm", layer_norm_forward, NULL, norm_macs, reset_parameters};

loom_module *loom_nn_layer_norm(const int64_t *normalized_shape, int n, const loom_layer_norm_options *o) {
  loom_layer_norm_options d = {0};
  if (!o) o = &d;
  bool ok = normalized_shape && n >= 1 && n <= LOOM_MAX_DIMS;
  for (int i = 0; ok && i < n; i++) ok = normalized_shape[i] > 0;
  if (!ok) {
    core_set_error(LOOM_ERR_INVALID, "LayerNorm: normalized_shape needs 1 to %d positive sizes (got %d dims)",
                   LOOM_MAX_DIMS, n);
    return NULL;
  }
  loom_norm_config *c = new_config("LayerNorm", LOOM_NORM_LAYER, normalized_shape[n - 1], o->eps, 0, false);
  if (!c) return NULL;
  loom_shape ps = {n, {0}};
  for (int i = 0; i < n; i++) ps.d[i] = c->normalized_shape[i] = normalized_shape[i];
  c->n_normalized = n;
  c->momentum = NAN;
  c->affine = !o->no_elementwise_affine;
  c->bias = !o->no_bias;
  return build(&layer_norm_kind, c, ps);
}

/* ---- GroupNorm ---- */

static loom_tensor *group_norm_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (!nn_one_input(m, n_in)) return NULL;
  const loom_norm_config *c = cfg(m);
  const loom_tensor *x = in[0];
  /* without affine parameters PyTorch only needs num_groups to divide C (checked by group_norm) */
  if (x->shape.ndim < 2 || (c->affine && x->shape.d[1] != c->num_features)) {
    core_set_error(LOOM_ERR_INVALID, "GroupNorm: expected input [N, C, *] with C = %lld, got %s",
                   (long long)c->num_features, loom_shape_str(x->shape));
    return NULL;
  }
  return named(m, loom_group_norm(x, c->num_groups, param(m, "weight", c->affine), param(m, "bias", c->affine),
                                  c->eps));
}

static const loom_module_kind group_norm_kind = {"GroupNorm", group_norm_forward, NULL, norm_macs, reset_parameters};

loom_module *loom_nn_group_norm(int64_t num_groups, int64_t num_channels, const loom_group_norm_options *o) {
  loom_group_norm_options d = {0};
  if (!o) o = &d;
  if (num_groups <= 0 || num_channels <= 0 || num_channels % num_groups) {
    core_set_error(LOOM_ERR_INVALID, "GroupNorm: num_groups %lld must be positive and divide num_channels %lld",
                   (long long)num_groups, (long long)num_channels);
    return NULL;
  }
  loom_norm_config *c = new_config("GroupNorm", LOOM_NORM_GROUP, num_channels, o->eps, 0, false);
  if (!c) return NULL;
  c->num_groups = num_groups;
  c->momentum = NAN;
  c->affine = !o->no_affine;
  return build(&group_norm_kind, c, LOOM_SHAPE(num_channels));
}
