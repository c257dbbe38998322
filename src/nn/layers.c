/* Modules with parameters or options: Linear, LazyLinear, Embedding, Dropout,
 * Flatten, Identity. */
#include <math.h>
#include <stdio.h>

#include "loom/ops.h"
#include "nn/layers_impl.h"

/* ---- Linear / LazyLinear ---- */

/* Input/parameter agreement, with the layer's name in the message. */
static bool linear_check(const loom_module *m, const loom_tensor *x, const loom_tensor *w) {
  const loom_linear_config *c = loom_module_state(m);
  const char *type = loom_module_type(m);
  if (x->shape.ndim < 1 || x->shape.d[x->shape.ndim - 1] != c->in_features) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected input [..., %lld] (in_features = %lld), got %s", type,
                   (long long)c->in_features, (long long)c->in_features, loom_shape_str(x->shape));
    return false;
  }
  if (!loom_device_equal(x->storage->device, w->storage->device)) {
    char dev[32];
    snprintf(dev, sizeof dev, "%s", loom_device_name(x->storage->device));
    core_set_error(LOOM_ERR_INVALID, "%s: input is on %s but the weight is on %s", type, dev,
                   loom_device_name(w->storage->device));
    return false;
  }
  return true;
}

static loom_tensor *linear_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (!nn_one_input(m, n_in)) return NULL;
  const loom_linear_config *c = loom_module_state(m);
  loom_tensor *w = loom_module_param(m, "weight");
  loom_tensor *b = c->no_bias ? NULL : loom_module_param(m, "bias");
  if (!w || (!c->no_bias && !b)) return nn_layer_error(m);
  if (!linear_check(m, in[0], w)) return NULL;
  loom_tensor *y = loom_linear(in[0], w, b);
  return y ? y : nn_layer_error(m);
}

static int64_t linear_macs(const loom_module *m, loom_tensor *const *in, int n_in, const loom_tensor *out) {
  const loom_linear_config *c = loom_module_state(m);
  (void)out;
  if (n_in < 1 || !in[0] || c->in_features <= 0) return 0;
  return loom_numel(in[0]) / c->in_features * c->in_features * c->out_features;
}

/* PyTorch: kaiming_uniform(a = sqrt(5)) on the weight, i.e. U(-1/sqrt(in),
 * 1/sqrt(in)), and the bias from the same range. */
static void linear_reset(loom_module *m) {
  const loom_linear_config *c = loom_module_state(m);
  if (c->in_features <= 0) return; /* a LazyLinear before its first call */
  loom_tensor *w = loom_module_param(m, "weight");
  if (w) loom_init_kaiming_uniform_(w, sqrt(5.0), LOOM_FAN_IN, "leaky_relu");
  if (!c->no_bias) {
    loom_tensor *b = loom_module_param(m, "bias");
    double bound = 1.0 / sqrt((double)c->in_features);
    if (b) loom_init_uniform_(b, -bound, bound);
  }
}

static const loom_module_kind linear_kind = {"Linear", linear_forward, NULL, linear_macs, linear_reset};

/* Registers weight [out, in] and bias [out] (shape [0] placeholders when in is 0). */
static loom_module *linear_build(const loom_module_kind *kind, int64_t in, int64_t out, const loom_linear_opts *o) {
  loom_linear_config c = {in, out, o && o->no_bias};
  loom_module *m = nn_new_with_config(kind, &c, sizeof c);
  if (!m) return NULL;
  loom_scope_begin();
  loom_shape ws = in > 0 ? LOOM_SHAPE(out, in) : LOOM_SHAPE(0), bs = in > 0 ? LOOM_SHAPE(out) : LOOM_SHAPE(0);
  bool ok = loom_module_add_parameter(m, "weight", loom_zeros(ws, LOOM_F32, loom_cpu())) != NULL;
  if (ok && !c.no_bias) ok = loom_module_add_parameter(m, "bias", loom_zeros(bs, LOOM_F32, loom_cpu())) != NULL;
  loom_scope_end();
  if (!ok) {
    loom_module_free(m);
    return NULL;
  }
  kind->reset_parameters(m);
  return m;
}

loom_module *loom_nn_linear(int64_t in_features, int64_t out_features, const loom_linear_opts *opts) {
  if (in_features <= 0 || out_features < 0) {
    core_set_error(LOOM_ERR_INVALID, "Linear: expected in_features > 0 and out_features >= 0, got %lld and %lld",
                   (long long)in_features, (long long)out_features);
    return NULL;
  }
  return linear_build(&linear_kind, in_features, out_features, opts);
}

/* LazyLinear: the first forward fixes in_features from x's last dim and
 * replaces the placeholders by real parameters on the placeholders' device
 * and dtype (which follow loom_module_to_device / _to_dtype), as PyTorch's
 * uninitialised parameters do. */
static loom_tensor *lazy_linear_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (!nn_one_input(m, n_in)) return NULL;
  loom_linear_config *c = loom_module_state(m);
  if (c->in_features == 0) {
    const loom_tensor *x = in[0];
    int64_t inf = x->shape.ndim ? x->shape.d[x->shape.ndim - 1] : 0;
    if (inf <= 0) {
      core_set_error(LOOM_ERR_INVALID, "LazyLinear: cannot infer in_features from input %s", loom_shape_str(x->shape));
      return NULL;
    }
    loom_tensor *pw = loom_module_param(m, "weight");
    if (!pw) return nn_layer_error(m);
    loom_dtype dt = pw->dtype;
    loom_device dev = pw->storage->device;
    bool ok;
    loom_scope_begin();
    ok = loom_module_replace_tensor(m, "weight", loom_zeros(LOOM_SHAPE(c->out_features, inf), dt, dev)) != NULL;
    if (ok && !c->no_bias)
      ok = loom_module_replace_tensor(m, "bias", loom_zeros(LOOM_SHAPE(c->out_features), dt, dev)) != NULL;
    loom_scope_end();
    if (!ok) return nn_layer_error(m);
    c->in_features = inf;
    linear_reset(m);
  }
  return linear_forward(m, in, n_in);
}

static const loom_module_kind lazy_linear_kind = {"LazyLinear", lazy_linear_forward, NULL, linear_macs,
                                                  linear_reset};

loom_module *loom_nn_lazy_linear(int64_t out_features, const loom_linear_opts *opts) {
  if (out_features < 0) {
    core_set_error(LOOM_ERR_INVALID, "LazyLinear: expected out_features >= 0, got %lld", (long long)out_features);
    return NULL;
  }
  return linear_build(&lazy_linear_kind, 0, out_features, opts);
}

/* ---- Embedding ---- */

static loom_tensor *embedding_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (!nn_one_input(m, n_in)) return NULL;
  const loom_embedding_config *c = loom_module_state(m);
  const loom_tensor *x = in[0];
  loom_tensor *w = loom_module_param(m, "weight");
  if (!w) return nn_layer_error(m);
  if (x->dtype != LOOM_I64 && x->dtype != LOOM_I32) {
    core_set_error(LOOM_ERR_INVALID, "Embedding: expected i64 or i32 indices, got %s %s", loom_dtype_name(x->dtype),
                   loom_shape_str(x->shape));
    return NULL;
  }
  loom_embedding_opts o = {c->padding_idx != LOOM_NO_PADDING_IDX, c->padding_idx, c->max_norm, c->norm_type,
                           c->scale_grad_by_freq};
  loom_tensor *y = loom_embedding_ex(x, w, &o);
  return y ? y : nn_layer_error(m);
}

/* N(0, 1), the padding row zeroed. */
static void embedding_reset(loom_module *m) {
  const loom_embedding_config *c = loom_module_state(m);
  loom_tensor *w = loom_module_param(m, "weight");
  if (!w) return;
  loom_init_normal_(w, 0, 1);
  if (c->padding_idx != LOOM_NO_PADDING_IDX) {
    loom_scope_begin();
    loom_no_grad_begin();
    loom_fill_(loom_select(w, 0, c->padding_idx), 0);
    loom_no_grad_end();
    loom_scope_end();
  }
}

static const loom_module_kind embedding_kind = {"Embedding", embedding_forward, NULL, NULL, embedding_reset};

loom_module *loom_nn_embedding(int64_t num_embeddings, int64_t embedding_dim, const loom_embedding_opts *opts) {
  if (num_embeddings <= 0 || embedding_dim < 0) {
    core_set_error(LOOM_ERR_INVALID, "Embedding: expected num_embeddings > 0 and embedding_dim >= 0, got %lld and %lld",
                   (long long)num_embeddings, (long long)embedding_dim);
    return NULL;
  }
  loom_embedding_config c = {num_embeddings, embedding_dim, LOOM_NO_PADDING_IDX, 0, 2, false};
  if (opts && (!(opts->max_norm >= 0) || isnan(opts->norm_type))) {
    core_set_error(LOOM_ERR_INVALID, "Embedding: max_norm must be >= 0 (0 = none) and norm_type a number (0 = 2), "
                   "got %g and %g", opts->max_norm, opts->norm_type);
    return NULL;
  }
  if (opts) {
    c.max_norm = opts->max_norm, c.scale_grad_by_freq = opts->scale_grad_by_freq;
    if (opts->norm_type != 0) c.norm_type = opts->norm_type;
  }
  if (opts && opts->has_padding_idx) {
    int64_t p = opts->padding_idx;
    if (p < -num_embeddings || p >= num_embeddings) {
      core_set_error(LOOM_ERR_INVALID, "Embedding: padding_idx %lld must be within num_embeddings %lld",
                     (long long)p, (long long)num_embeddings);
      return NULL;
    }
    c.padding_idx = p < 0 ? p + num_embeddings : p;
  }
  loom_module *m = nn_new_with_config(&embedding_kind, &c, sizeof c);
  if (!m) return NULL;
  loom_scope_begin();
  bool ok = loom_module_add_parameter(m, "weight", loom_zeros(LOOM_SHAPE(num_embeddings, embedding_dim), LOOM_F32,
                                                              loom_cpu())) != NULL;
  loom_scope_end();
  if (!ok) {
    loom_module_free(m);
    return NULL;
  }
  embedding_reset(m);
  return m;
}

/* ---- Dropout ---- */

static loom_tensor *dropout_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (!nn_one_input(m, n_in)) return NULL;
  const loom_dropout_config *c = loom_module_state(m);
  loom_tensor *y = loom_dropout(in[0], c->p, loom_module_training(m));
  return y ? y : nn_layer_error(m);
}

static const loom_module_kind dropout_kind = {"Dropout", dropout_forward, NULL, NULL, NULL};

loom_module *loom_nn_dropout(double p) {
  if (!(p >= 0 && p <= 1)) {
    core_set_error(LOOM_ERR_INVALID, "Dropout: probability p has to be between 0 and 1, got %g", p);
    return NULL;
  }
  loom_dropout_config c = {p};
  return nn_new_with_config(&dropout_kind, &c, sizeof c);
}

/* ---- Flatten / Identity ---- */

static loom_tensor *flatten_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (!nn_one_input(m, n_in)) return NULL;
  const loom_flatten_config *c = loom_module_state(m);
  loom_tensor *y = loom_flatten(in[0], c->start_dim, c->end_dim);
  return y ? y : nn_layer_error(m);
}

static loom_tensor *identity_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (!nn_one_input(m, n_in)) return NULL;
  loom_tensor *y = loom_view(in[0], in[0]->shape);
  return y ? y : nn_layer_error(m);
}

static const loom_module_kind flatten_kind = {"Flatten", flatten_forward, NULL, NULL, NULL};
static const loom_module_kind identity_kind = {"Identity", identity_forward, NULL, NULL, NULL};

loom_module *loom_nn_flatten(int start_dim, int end_dim) {
  loom_flatten_config c = {start_dim, end_dim};
  return nn_new_with_config(&flatten_kind, &c, sizeof c);
}

loom_module *loom_nn_identity(void) { return nn_new_with_config(&identity_kind, NULL, 0); }
