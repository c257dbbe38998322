/* GPT-2 decoder language model with Hugging Face GPT2LMHeadModel's modules,
 * names and layouts: transformer (wte, wpe, drop, h.<i> blocks, ln_f) and a
 * lm_head tied to wte. Blocks: ln_1, attn (c_attn, c_proj: GPT-2's Conv1D,
 * weight [in, out]), ln_2, mlp (c_fc, c_proj). Loss and sampling in gpt_sample.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "loom/ops.h"
#include "models/gpt_impl.h"

/* ---- Conv1D: y = x @ weight + bias, weight [in, out] ---- */

typedef struct conv1d_cfg {
  int64_t in, out;
} conv1d_cfg;

static loom_tensor *conv1d_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  const conv1d_cfg *c = loom_module_state(m);
  if (!model_one_input("Conv1D", n_in) || !in[0]) return NULL;
  const loom_tensor *x = in[0];
  loom_shape sh = loom_shape_of(x);
  if (sh.ndim < 1 || sh.d[sh.ndim - 1] != c->in) {
    core_set_error(LOOM_ERR_INVALID, "Conv1D: expected input [..., %lld], got %s", (long long)c->in,
                   loom_shape_str(sh));
    return NULL;
  }
  loom_scope_begin();
  loom_tensor *x2 = loom_reshape(x, LOOM_SHAPE(-1, c->in));
  loom_tensor *y = loom_addmm(loom_module_param(m, "bias"), x2, loom_module_param(m, "weight"), 1, 1);
  sh.d[sh.ndim - 1] = c->out;
  y = loom_keep(loom_reshape(y, sh));
  loom_scope_end();
  return y;
}

static int64_t conv1d_macs(const loom_module *m, loom_tensor *const *in, int n_in, const loom_tensor *out) {
  const conv1d_cfg *c = loom_module_state(m);
  (void)out;
  return n_in >= 1 && in[0] ? loom_numel(in[0]) / c->in * c->in * c->out : 0;
}

static const loom_module_kind conv1d_kind = {.type = "Conv1D", .forward = conv1d_forward, .macs = conv1d_macs};

static loom_module *conv1d(int64_t in, int64_t out, double std) {
  conv1d_cfg *c = malloc(sizeof *c);
  if (!c) {
    core_set_error(LOOM_ERR_OOM, "Conv1D: out of host memory");
    return NULL;
  }
  *c = (conv1d_cfg){in, out};
  loom_module *m = loom_module_new(&conv1d_kind, c);
  if (!m) {
    free(c);
    return NULL;
  }
  loom_scope_begin();
  loom_tensor *w = loom_empty(LOOM_SHAPE(in, out), LOOM_F32, loom_cpu());
  bool ok = w && !loom_init_normal_(w, 0, std) && loom_module_add_parameter(m, "weight", w) &&
            loom_module_add_parameter(m, "bias", loom_zeros(LOOM_SHAPE(out), LOOM_F32, loom_cpu()));
  loom_scope_end();
  return model_done(m, ok);
}

/* ---- attention, MLP, block ---- */

static loom_tensor *drop(loom_module *m, loom_tensor *x, double p) {
  return p > 0 && loom_module_training(m) ? loom_dropout(x, p, true) : x;
}

/* [N, L, E] -> [N, H, L, E / H] (a view) */
static loom_tensor *heads(loom_tensor *x, int64_t h) {
  loom_shape s = loom_shape_of(x);
  return loom_transpose(loom_view(x, LOOM_SHAPE(s.d[0], s.d[1], h, s.d[2] / h)), 1, 2);
}

static loom_tensor *attn_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  const gpt_config *c = loom_module_state(m);
  if (n_in != 1 || !in[0]) return NULL;
  loom_scope_begin();
  loom_tensor *qkv = model_run(m, "c_attn", in[0]), *parts[3] = {NULL, NULL, NULL}, *y = NULL;
  if (qkv && loom_split(qkv, c->n_embd, 2, parts, 3) == 3) {
    double p = loom_module_training(m) ? c->dropout : 0;
    y = loom_scaled_dot_product_attention(heads(parts[0], c->n_head), heads(parts[1], c->n_head),
                                          heads(parts[2], c->n_head), NULL, p, true, NAN);
    loom_shape s = loom_shape_of(in[0]);
    if (y) y = loom_reshape(loom_transpose(y, 1, 2), s);
    y = drop(m, model_run(m, "c_proj", y), c->dropout);
  }
  loom_keep(y);
  loom_scope_end();
  return y;
}

/* The two attention matmuls (q k^T and weights v) as FLOP counters count them. */
static int64_t attn_macs(const loom_module *m, loom_tensor *const *in, int n_in, const loom_tensor *out) {
  (void)m, (void)out;
  if (n_in < 1 || !in[0] || loom_ndim(in[0]) != 3) return 0;
  int64_t n = loom_size(in[0], 0), l = loom_size(in[0], 1), e = loom_size(in[0], 2);
  return 2 * n * l * l * e;
}

static loom_tensor *mlp_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  const gpt_config *c = loom_module_state(m);
  if (n_in != 1 || !in[0]) return NULL;
  loom_scope_begin();
  loom_tensor *y = model_run(m, "c_fc", in[0]);
  y = drop(m, model_run(m, "c_proj", y ? loom_gelu(y, true) : NULL), c->dropout);
  loom_keep(y);
  loom_scope_end();
  return y;
}

static loom_tensor *block_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (n_in != 1 || !in[0]) return NULL;
  loom_scope_begin();
  loom_tensor *x = in[0];
  loom_tensor *a = model_run(m, "attn", model_run(m, "ln_1", x));
  x = a ? loom_add(x, a) : NULL;
  loom_tensor *f = model_run(m, "mlp", model_run(m, "ln_2", x));
  x = f ? loom_add(x, f) : NULL;
  loom_keep(x);
  loom_scope_end();
  return x;
}

static const loom_module_kind attn_kind = {.type = "GPT2Attention", .forward = attn_forward, .macs = attn_macs};
static const loom_module_kind mlp_kind = {.type = "GPT2MLP", .forward = mlp_forward};
static const loom_module_kind block_kind = {.type = "GPT2Block", .forward = block_forward};

static loom_module *with_config(const loom_module_kind *kind, const gpt_config *c) {
  gpt_config *s = malloc(sizeof *s);
  if (!s) {
    core_set_error(LOOM_ERR_OOM, "GPT-2: out of host memory");
    return NULL;
  }
  *s = *c;
  loom_module *m = loom_module_new(kind, s);
  if (!m) free(s);
  return m;
}

static loom_module *layer_norm(int64_t e, double eps) {
  loom_layer_norm_options o = {.eps = eps};
  return loom_nn_layer_norm(&e, 1, &o);
}

/* Hugging Face's init: N(0, 0.02) weights, c_proj N(0, 0.02 / sqrt(2 n_layer)). */
static loom_module *block(const gpt_config *c) {
  const double std = 0.02, proj_std = 0.02 / sqrt(2.0 * c->n_layer);
  int64_t e = c->n_embd;
  loom_module *b = with_config(&block_kind, c), *attn = with_config(&attn_kind, c), *mlp = with_config(&mlp_kind, c);
  bool ok = b && attn && mlp;
  ok = ok && !loom_module_add(attn, "c_attn", conv1d(e, 3 * e, std)) &&
       !loom_module_add(attn, "c_proj", conv1d(e, e, proj_std));
  ok = ok && !loom_module_add(mlp, "c_fc", conv1d(e, 4 * e, std)) &&
       !loom_module_add(mlp, "c_proj", conv1d(4 * e, e, proj_std));
  ok = ok && !loom_module_add(b, "ln_1", layer_norm(e, c->eps));
  ok = ok && !loom_module_add(b, "attn", attn);
  attn = NULL;
  ok = ok && !loom_module_add(b, "ln_2", layer_norm(e, c->eps));
  ok = ok && !loom_module_add(b, "mlp", mlp);
  mlp = NULL;
  loom_module_free(attn);
  loom_module_free(mlp);
  return model_done(b, ok);
}

/* ---- the transformer and the LM head ---- */

static bool check_ids(const gpt_config *c, const loom_tensor *ids) {
  loom_shape s = loom_shape_of(ids);
  loom_dtype dt = loom_dtype_of(ids);
  if (s.ndim != 2 || (dt != LOOM_I64 && dt != LOOM_I32) || s.d[1] < 1) {
    core_set_error(LOOM_ERR_INVALID, "GPT-2: expected token ids [N, L] of dtype i64 or i32 with L >= 1, got %s %s",
                   loom_dtype_name(dt), loom_shape_str(s));
    return false;
  }
  if (s.d[1] > c->n_ctx) {
    core_set_error(LOOM_ERR_INVALID, "GPT-2: sequence of %lld tokens is longer than n_ctx = %lld",
                   (long long)s.d[1], (long long)c->n_ctx);
    return false;
  }
  return true;
}

static loom_tensor *transformer_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  const gpt_config *c = loom_module_state(m);
  if (n_in != 1 || !in[0]) return NULL;
  if (!check_ids(c, in[0])) return NULL;
  loom_scope_begin();
  int64_t l = loom_size(in[0], 1);
  loom_tensor *pos = loom_arange(0, (double)l, 1, LOOM_I64, loom_device_of(in[0]));
  loom_tensor *tok = model_run(m, "wte", in[0]), *pe = model_run(m, "wpe", pos);
  loom_tensor *x = tok && pe ? loom_add(tok, pe) : NULL;
  x = x ? drop(m, x, c->dropout) : NULL;
  char path[32];
  for (int i = 0; i < c->n_layer && x; i++) {
    snprintf(path, sizeof path, "h.%d", i);
    x = model_run(m, path, x);
  }
  x = model_run(m, "ln_f", x);
  loom_keep(x);
  loom_scope_end();
  return x;
}

static loom_tensor *lm_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (n_in != 1) {
    core_set_error(LOOM_ERR_INVALID, "GPT-2: forward takes 1 input (token ids), got %d", n_in);
    return NULL;
  }
  if (!in[0] || !check_ids(loom_module_state(m), in[0])) return NULL;
  loom_scope_begin();
  loom_tensor *y = model_run(m, "lm_head", model_run(m, "transformer", in[0]));
  if (!y) model_name_error("GPT-2");
  loom_keep(y);
  loom_scope_end();
  return y;
}

static const loom_module_kind transformer_kind = {.type = "GPT2Model", .forward = transformer_forward};
static const loom_module_kind lm_kind = {.type = "GPT2LMHeadModel", .forward = lm_forward};

static bool resolve(const loom_model_opts *opts, gpt_config *c) {
  loom_model_opts o = opts ? *opts : (loom_model_opts){0};
  *c = (gpt_config){.vocab = o.vocab_size ? o.vocab_size : 50257,
                    .n_ctx = o.max_len ? o.max_len : 1024,
                    .n_embd = o.embed_dim ? o.embed_dim : 768,
                    .n_layer = o.num_layers ? o.num_layers : 12,
                    .n_head = o.num_heads ? o.num_heads : 12,
                    .dropout = o.set_dropout || o.dropout ? o.dropout : 0.1,
                    .eps = 1e-5};
  if (c->vocab < 1 || c->n_ctx < 1 || c->n_layer < 1 || c->n_head < 1 || c->n_embd < 1 || c->n_embd % c->n_head) {
    core_set_error(LOOM_ERR_INVALID,
                   "GPT-2: expected vocab_size, max_len (n_ctx), num_layers, num_heads >= 1 and embed_dim (n_embd) "
                   "divisible by num_heads; got vocab %lld, n_ctx %lld, n_layer %d, n_head %d, n_embd %lld",
                   (long long)c->vocab, (long long)c->n_ctx, c->n_layer, c->n_head, (long long)c->n_embd);
    return false;
  }
  if (!(c->dropout >= 0 && c->dropout < 1)) {
    core_set_error(LOOM_ERR_INVALID, "GPT-2: dropout %g is outside [0, 1)", c->dropout);
    return false;
  }
  return true;
}

static loom_module *embedding(int64_t num, int64_t dim) {
  loom_module *e = loom_nn_embedding(num, dim, NULL);
  if (e && loom_init_normal_(loom_module_param(e, "weight"), 0, 0.02)) {
    loom_module_free(e);
    return NULL;
  }
  return e;
}

loom_module *loom_model_gpt(const loom_model_opts *opts) {
  gpt_config c;
  if (!resolve(opts, &c)) return NULL;
  loom_module *m = with_config(&lm_kind, &c), *t = with_config(&transformer_kind, &c);
  bool ok = m && t;
  ok = ok && !loom_module_add(t, "wte", embedding(c.vocab, c.n_embd)) &&
       !loom_module_add(t, "wpe", embedding(c.n_ctx, c.n_embd)) &&
       !loom_module_add(t, "drop", loom_nn_dropout(c.dropout));
  loom_module *h = ok ? loom_nn_module_list() : NULL;
  ok = ok && !loom_module_add(t, "h", h);
  for (int i = 0; ok && i < c.n_layer; i++) ok = !loom_module_append(h, block(&c));
  ok = ok && !loom_module_add(t, "ln_f", layer_norm(c.n_embd, c.eps));
  loom_tensor *wte = ok ? loom_module_param(t, "wte.weight") : NULL;
  ok = ok && !loom_module_add(m, "transformer", t);
  t = NULL;
  /* lm_head: a bias-free Linear whose weight is wte's tensor (tied). */
  loom_module *head = ok ? loom_nn_linear(c.n_embd, c.vocab, &(loom_linear_opts){.no_bias = true}) : NULL;
  if (ok && head && loom_module_replace_tensor(head, "weight", wte)) {
    ok = !loom_module_add(m, "lm_head", head);
  } else {
    ok = false;
    loom_module_free(head);
  }
  loom_module_free(t);
  return model_done(m, ok);
}

const gpt_config *gpt_config_of(const loom_module *m) {
  if (!m || loom_module_kind_of(m) != &lm_kind) {
    core_set_error(LOOM_ERR_INVALID, "expected a GPT-2 model (loom_model_gpt), got %s",
                   m ? loom_module_type(m) : "NULL");
    return NULL;
  }
  return loom_module_state(m);
}
