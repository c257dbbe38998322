/* Transformer blocks: TransformerEncoderLayer, TransformerEncoder and a
 * decoder-only (GPT-2 style) block, built from MultiheadAttention, Linear and
 * LayerNorm children with PyTorch's names. */
#include <stdlib.h>
#include <string.h>

#include "core/tensor_impl.h"
#include "loom/nn.h"
#include "loom/ops.h"

static loom_module *finish(loom_module *m, bool ok) {
  if (!ok) {
    loom_module_free(m);
    return NULL;
  }
  return m;
}

/* The activations a block may use, by name (the config keeps these pointers). */
static const char *const kActivations[] = {"relu",    "gelu", "gelu_tanh",  "silu", "tanh",
                                           "sigmoid", "elu",  "leaky_relu", "relu6"};
enum { N_ACTIVATIONS = sizeof kActivations / sizeof kActivations[0] };

static const char *activation_name(const char *type, const char *name) {
  for (int i = 0; i < N_ACTIVATIONS; i++)
    if (strcmp(name, kActivations[i]) == 0) return kActivations[i];
  core_set_error(LOOM_ERR_INVALID, "%s: unknown activation \"%s\" (expected relu, gelu, gelu_tanh, silu, tanh, "
                 "sigmoid, elu, leaky_relu or relu6)", type, name);
  return NULL;
}

/* The named activation with PyTorch's default arguments. */
static loom_tensor *activate(const char *name, const loom_tensor *x) {
  if (strcmp(name, "relu") == 0) return loom_relu(x);
  if (strcmp(name, "gelu") == 0) return loom_gelu(x, false);
  if (strcmp(name, "gelu_tanh") == 0) return loom_gelu(x, true);
  if (strcmp(name, "silu") == 0) return loom_silu(x);
  if (strcmp(name, "tanh") == 0) return loom_tanh(x);
  if (strcmp(name, "sigmoid") == 0) return loom_sigmoid(x);
  if (strcmp(name, "elu") == 0) return loom_elu(x, 1.0);
  if (strcmp(name, "leaky_relu") == 0) return loom_leaky_relu(x, 0.01);
  return loom_clamp(x, 0, 6); /* relu6 */
}

/* Options with PyTorch's defaults filled in; false + error when invalid. */
static bool resolve(const char *type, int64_t d, int64_t h, const loom_transformer_opts *o, int64_t ff_default,
                    const char *act_default, loom_transformer_config *c) {
  loom_transformer_opts z = {0};
  if (!o) o = &z;
  const char *act = activation_name(type, o->activation ? o->activation : act_default);
  if (!act) return false;
  *c = (loom_transformer_config){d, h, o->dim_feedforward ? o->dim_feedforward : ff_default,
                                 o->dropout == 0 ? 0.1 : o->dropout == LOOM_NO_DROPOUT ? 0 : o->dropout,
                                 o->layer_norm_eps ? o->layer_norm_eps : 1e-5, act, o->batch_first, o->norm_first,
                                 o->no_bias};
  if (d <= 0 || h <= 0 || d % h || c->dim_feedforward <= 0 || !(c->dropout >= 0 && c->dropout < 1) ||
      !(c->layer_norm_eps > 0)) {
    core_set_error(LOOM_ERR_INVALID,
                   "%s: expected d_model > 0 divisible by nhead > 0, dim_feedforward > 0, dropout in [0, 1) and "
                   "layer_norm_eps > 0; got d_model %lld, nhead %lld, dim_feedforward %lld, dropout %g",
                   type, (long long)d, (long long)h, (long long)c->dim_feedforward, c->dropout);
    return false;
  }
  return true;
}

static loom_module *new_with(const loom_module_kind *kind, const loom_transformer_config *c) {
  loom_transformer_config *s = malloc(sizeof *s);
  if (!s) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", kind->type);
    return NULL;
  }
  *s = *c;
  return loom_module_new(kind, s);
}

static loom_module *layer_norm(int64_t d, const loom_transformer_config *c) {
  loom_layer_norm_options o = {c->layer_norm_eps, false, c->no_bias};
  return loom_nn_layer_norm(&d, 1, &o);
}

static loom_module *linear(int64_t in, int64_t out, const loom_transformer_config *c) {
  loom_linear_opts o = {c->no_bias};
  return loom_nn_linear(in, out, &o);
}

static loom_tensor *drop(loom_module *m, const loom_tensor *x, double p) {
  return loom_dropout(x, p, loom_module_training(m) && p > 0);
}

/* ---- TransformerEncoderLayer ---- */

loom_tensor *loom_encoder_layer_forward(loom_module *m, const loom_tensor *src, const loom_tensor *src_mask,
                                        const loom_tensor *kpm) {
  if (!m || !src) {
    core_null_error("TransformerEncoderLayer: NULL module or input");
    return NULL;
  }
  const loom_transformer_config *c = loom_module_state(m);
  if (src->shape.ndim != 3 || src->shape.d[2] != c->d_model) {
    core_set_error(LOOM_ERR_INVALID, "TransformerEncoderLayer: expected src [%s, d_model = %lld], got %s",
                   c->batch_first ? "N, L" : "L, N", (long long)c->d_model, loom_shape_str(src->shape));
    return NULL;
  }
  loom_scope_begin();
  loom_module *sa = loom_module_child(m, "self_attn"), *n1 = loom_module_child(m, "norm1"),
              *n2 = loom_module_child(m, "norm2"), *l1 = loom_module_child(m, "linear1"),
              *l2 = loom_module_child(m, "linear2");
  loom_tensor *x = (loom_tensor *)src, *h;
  h = c->norm_first ? loom_forward(n1, x) : x;
  h = drop(m, loom_mha_forward(sa, h, h, h, kpm, src_mask, NULL), c->dropout);
  x = c->norm_first ? loom_add(x, h) : loom_forward(n1, loom_add(x, h));
  h = c->norm_first ? loom_forward(n2, x) : x;
  h = loom_forward(l1, h);
  h = activate(c->activation, h);
  h = drop(m, loom_forward(l2, drop(m, h, c->dropout)), c->dropout);
  x = c->norm_first ? loom_add(x, h) : loom_forward(n2, loom_add(x, h));
  loom_keep(x);
  loom_scope_end();
  return x;
}

static loom_tensor *encoder_layer_fwd(loom_module *m, loom_tensor *const *in, int n_in) {
  return loom_encoder_layer_forward(m, in[0], n_in > 1 ? in[1] : NULL, n_in > 2 ? in[2] : NULL);
}

static const loom_module_kind encoder_layer_kind = {"TransformerEncoderLayer", encoder_layer_fwd, NULL, NULL, NULL};

static loom_module *build_encoder_layer(const loom_transformer_config *c) {
  loom_module *m = new_with(&encoder_layer_kind, c);
  if (!m) return NULL;
  loom_mha_opts mo = {.dropout = c->dropout, .no_bias = c->no_bias, .batch_first = c->batch_first};
  bool ok = !loom_module_add(m, "self_attn", loom_nn_multihead_attention(c->d_model, c->nhead, &mo)) &&
            !loom_module_add(m, "linear1", linear(c->d_model, c->dim_feedforward, c)) &&
            !loom_module_add(m, "linear2", linear(c->dim_feedforward, c->d_model, c)) &&
            !loom_module_add(m, "norm1", layer_norm(c->d_model, c)) &&
            !loom_module_add(m, "norm2", layer_norm(c->d_model, c));
  return finish(m, ok);
}

loom_module *loom_nn_transformer_encoder_layer(int64_t d_model, int64_t nhead, const loom_transformer_opts *opts) {
  loom_transformer_config c;
  if (!resolve("TransformerEncoderLayer", d_model, nhead, opts, 2048, "relu", &c)) return NULL;
  return build_encoder_layer(&c);
}

/* ---- TransformerEncoder ---- */

loom_tensor *loom_encoder_forward(loom_module *m, const loom_tensor *src, const loom_tensor *mask,
                                  const loom_tensor *kpm) {
  if (!m || !src) {
    core_null_error("TransformerEncoder: NULL module or input");
    return NULL;
  }
  loom_module *layers = loom_module_child(m, "layers");
  if (!layers) return NULL;
  loom_scope_begin();
  loom_tensor *x = (loom_tensor *)src;
  for (int i = 0; x && i < loom_module_num_children(layers); i++)
    x = loom_encoder_layer_forward(loom_module_child_at(layers, i, NULL), x, mask, kpm);
  const loom_transformer_config *c = loom_module_state(m);
  (void)c;
  for (int i = 0; x && i < loom_module_num_children(m); i++) {
    const char *name;
    loom_module *ch = loom_module_child_at(m, i, &name);
    if (strcmp(name, "norm") == 0) x = loom_forward(ch, x);
  }
  loom_keep(x);
  loom_scope_end();
  return x;
}

static loom_tensor *encoder_fwd(loom_module *m, loom_tensor *const *in, int n_in) {
  return loom_encoder_forward(m, in[0], n_in > 1 ? in[1] : NULL, n_in > 2 ? in[2] : NULL);
}

static const loom_module_kind encoder_kind = {"TransformerEncoder", encoder_fwd, NULL, NULL, NULL};

loom_module *loom_nn_transformer_encoder(int64_t d_model, int64_t nhead, int num_layers, bool final_norm,
                                         const loom_transformer_opts *opts) {
  loom_transformer_config c;
  if (!resolve("TransformerEncoder", d_model, nhead, opts, 2048, "relu", &c)) return NULL;
  if (num_layers < 1) {
    core_set_error(LOOM_ERR_INVALID, "TransformerEncoder: expected num_layers >= 1, got %d", num_layers);
    return NULL;
  }
  loom_module *m = new_with(&encoder_kind, &c);
  if (!m) return NULL;
  loom_module *list = loom_nn_module_list();
  bool ok = list != NULL;
  for (int i = 0; ok && i < num_layers; i++) ok = !loom_module_append(list, build_encoder_layer(&c));
  ok = !loom_module_add(m, "layers", ok ? list : (loom_module_free(list), (loom_module *)NULL)) && ok;
  if (ok && final_norm) ok = !loom_module_add(m, "norm", layer_norm(d_model, &c));
  return finish(m, ok);
}

/* ---- decoder-only block ---- */

/* The block's MLP: c_fc, the activation, c_proj (state: the block's config). */
static loom_tensor *mlp_fwd(loom_module *m, loom_tensor *const *in, int n_in) {
  (void)n_in;
  const loom_transformer_config *c = loom_module_state(m);
  loom_scope_begin();
  loom_tensor *h = activate(c->activation, loom_forward(loom_module_child(m, "c_fc"), in[0]));
  loom_tensor *out = loom_keep(loom_forward(loom_module_child(m, "c_proj"), h));
  loom_scope_end();
  return out;
}

static const loom_module_kind mlp_kind = {"MLP", mlp_fwd, NULL, NULL, NULL};

loom_tensor *loom_decoder_block_forward(loom_module *m, const loom_tensor *x, const loom_tensor *kpm) {
  if (!m || !x) {
    core_null_error("TransformerDecoderBlock: NULL module or input");
    return NULL;
  }
  const loom_transformer_config *c = loom_module_state(m);
  if (x->shape.ndim != 3 || x->shape.d[2] != c->d_model) {
    core_set_error(LOOM_ERR_INVALID, "TransformerDecoderBlock: expected x [N, L, d_model = %lld], got %s",
                   (long long)c->d_model, loom_shape_str(x->shape));
    return NULL;
  }
  loom_scope_begin();
  loom_module *ln1 = loom_module_child(m, "ln_1"), *ln2 = loom_module_child(m, "ln_2"),
              *attn = loom_module_child(m, "attn"), *mlp = loom_module_child(m, "mlp");
  loom_tensor *h = c->norm_first ? loom_forward(ln1, x) : (loom_tensor *)x;
  h = drop(m, loom_mha_forward_causal(attn, h, h, h, kpm, NULL, NULL), c->dropout);
  loom_tensor *y = c->norm_first ? loom_add(x, h) : loom_forward(ln1, loom_add(x, h));
  h = drop(m, loom_forward(mlp, c->norm_first ? loom_forward(ln2, y) : y), c->dropout);
  y = c->norm_first ? loom_add(y, h) : loom_forward(ln2, loom_add(y, h));
  loom_keep(y);
  loom_scope_end();
  return y;
}

static loom_tensor *decoder_fwd(loom_module *m, loom_tensor *const *in, int n_in) {
  return loom_decoder_block_forward(m, in[0], n_in > 1 ? in[1] : NULL);
}

static const loom_module_kind decoder_kind = {"TransformerDecoderBlock", decoder_fwd, NULL, NULL, NULL};

loom_module *loom_nn_transformer_decoder_block(int64_t d_model, int64_t nhead, const loom_transformer_opts *opts) {
  loom_transformer_config c;
  if (!resolve("TransformerDecoderBlock", d_model, nhead, opts, 4 * d_model, "gelu_tanh", &c)) return NULL;
  c.batch_first = true;
  loom_module *m = new_with(&decoder_kind, &c);
  if (!m) return NULL;
  loom_mha_opts mo = {.dropout = c.dropout, .no_bias = c.no_bias, .batch_first = true};
  loom_module *mlp = new_with(&mlp_kind, &c);
  bool ok = mlp && !loom_module_add(mlp, "c_fc", linear(d_model, c.dim_feedforward, &c)) &&
            !loom_module_add(mlp, "c_proj", linear(c.dim_feedforward, d_model, &c));
  ok = !loom_module_add(m, "ln_1", layer_norm(d_model, &c)) && ok;
  ok = ok && !loom_module_add(m, "attn", loom_nn_multihead_attention(d_model, nhead, &mo));
  ok = ok && !loom_module_add(m, "ln_2", layer_norm(d_model, &c));
  ok = ok ? !loom_module_add(m, "mlp", mlp) : (loom_module_free(mlp), false);
  return finish(m, ok);
}
