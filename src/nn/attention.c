/* Attention modules: MultiheadAttention (and its grouped-query variant),
 * additive (Bahdanau) attention, sinusoidal positional encoding. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor_impl.h"
#include "loom/nn.h"
#include "nn/module_impl.h"
#include "loom/ops.h"

static void *dup_state(const void *c, size_t n) {
  void *p = malloc(n);
  if (p) memcpy(p, c, n);
  return p;
}

/* Wraps module construction: a failed step frees m and returns NULL. */
static loom_module *finish(loom_module *m, bool ok) {
  if (!ok) {
    loom_module_free(m);
    return NULL;
  }
  return m;
}

/* ---- MultiheadAttention ---- */

static void mha_reset(loom_module *m) {
  const loom_mha_config *c = loom_module_state(m);
  if (c->grouped) return; /* its Linear children reset themselves */
  const char *names[] = {"in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"};
  for (int i = c->separate_proj ? 1 : 0; i < (c->separate_proj ? 4 : 1); i++)
    loom_init_xavier_uniform_(loom_module_param(m, names[i]), 1.0);
  if (!c->no_bias) {
    loom_init_zeros_(loom_module_param(m, "in_proj_bias"));
    loom_init_zeros_(loom_module_param(m, "out_proj.bias"));
  }
  if (c->add_bias_kv) {
    loom_init_xavier_normal_(loom_module_param(m, "bias_k"), 1.0);
    loom_init_xavier_normal_(loom_module_param(m, "bias_v"), 1.0);
  }
}

/* x [N, S, E] with the module's bias_k / bias_v ([1, 1, E]) appended as one more position. */
static loom_tensor *append_bias(loom_module *m, const char *name, loom_tensor *x) {
  loom_tensor *b = loom_module_param(m, name);
  if (!x || !b) return NULL;
  loom_tensor *parts[2] = {x, loom_expand(b, LOOM_SHAPE(x->shape.d[0], 1, x->shape.d[2]))};
  return loom_cat(parts, 2, 1);
}

/* x [N, H, S, hd] with one more position of zeros. */
static loom_tensor *append_zeros(loom_tensor *x) {
  if (!x) return NULL;
  loom_tensor *parts[2] = {x, loom_zeros(LOOM_SHAPE(x->shape.d[0], x->shape.d[1], 1, x->shape.d[3]), x->dtype,
                                         x->storage->device)};
  return loom_cat(parts, 2, 2);
}

/* The projection of x by part i (0 = q, 1 = k, 2 = v) of the module. */
static loom_tensor *project(loom_module *m, int i, const loom_tensor *x) {
  const loom_mha_config *c = loom_module_state(m);
  if (c->grouped) {
    static const char *kids[] = {"q_proj", "k_proj", "v_proj"};
    return loom_forward(loom_module_child(m, kids[i]), x);
  }
  loom_tensor *w, *b = NULL;
  if (c->separate_proj) {
    static const char *ws[] = {"q_proj_weight", "k_proj_weight", "v_proj_weight"};
    w = loom_module_param(m, ws[i]);
  } else {
    w = loom_narrow(loom_module_param(m, "in_proj_weight"), 0, i * c->embed_dim, c->embed_dim);
  }
  if (!c->no_bias) b = loom_narrow(loom_module_param(m, "in_proj_bias"), 0, i * c->embed_dim, c->embed_dim);
  return loom_linear(x, w, b);
}

/* MultiheadAttention's masks as one additive float tensor broadcasting to [N, H, L, S], or NULL. */
static loom_tensor *merge_masks(const char *type, const loom_mha_config *c, const loom_tensor *kpm,
                                const loom_tensor *am, int64_t N, int64_t L, int64_t S, loom_dtype dt, bool *bad) {
  loom_tensor *sum = NULL;
  *bad = false;
  if (kpm) {
    if (!(kpm->shape.ndim == 2 && kpm->shape.d[0] == N && kpm->shape.d[1] == S) &&
        !(N == 1 && kpm->shape.ndim == 1 && kpm->shape.d[0] == S)) {
      core_set_error(LOOM_ERR_INVALID, "%s: expected key_padding_mask [N, S] = [%lld, %lld], got %s", type,
                     (long long)N, (long long)S, loom_shape_str(kpm->shape));
      *bad = true;
      return NULL;
    }
    loom_tensor *r = loom_reshape(kpm, LOOM_SHAPE(N, 1, 1, S));
    sum = kpm->dtype == LOOM_BOOL ? loom_masked_fill(loom_zeros(r->shape, dt, r->storage->device), r, -INFINITY)
                                  : loom_to_dtype(r, dt);
  }
  if (am) {
    bool two = am->shape.ndim == 2 && am->shape.d[0] == L && am->shape.d[1] == S;
    bool three = am->shape.ndim == 3 && am->shape.d[0] == N * c->num_heads && am->shape.d[1] == L && am->shape.d[2] == S;
    if (!two && !three) {
      core_set_error(LOOM_ERR_INVALID, "%s: expected attn_mask [L, S] = [%lld, %lld] or [N * num_heads, L, S], got %s",
                     type, (long long)L, (long long)S, loom_shape_str(am->shape));
      *bad = true;
      return NULL;
    }
    loom_tensor *r = three ? loom_reshape(am, LOOM_SHAPE(N, c->num_heads, L, S)) : (loom_tensor *)am;
    loom_tensor *a = am->dtype == LOOM_BOOL ? loom_masked_fill(loom_zeros(r->shape, dt, r->storage->device), r, -INFINITY)
                                            : loom_to_dtype(r, dt);
    sum = sum ? loom_add(sum, a) : a;
  }
  return sum;
}

static loom_tensor *mha_run(loom_module *m, const loom_tensor *query, const loom_tensor *key,
                            const loom_tensor *value, const loom_tensor *kpm, const loom_tensor *am, bool causal,
                            bool per_head, loom_tensor **weights) {
  if (weights) *weights = NULL;
  if (!m || !query || !key || !value) {
    core_null_error("MultiheadAttention: NULL module or input");
    return NULL;
  }
  const loom_mha_config *c = loom_module_state(m);
  const char *type = loom_module_type(m);
  int nd = query->shape.ndim;
  if ((nd != 2 && nd != 3) || key->shape.ndim != nd || value->shape.ndim != nd ||
      query->shape.d[nd - 1] != c->embed_dim || key->shape.d[nd - 1] != c->kdim ||
      value->shape.d[nd - 1] != c->vdim) {
    core_set_error(LOOM_ERR_INVALID,
                   "%s: expected query [.., E = %lld], key [.., kdim = %lld], value [.., vdim = %lld] of rank 3 "
                   "(or 2, unbatched), got %s, %s, %s",
                   type, (long long)c->embed_dim, (long long)c->kdim, (long long)c->vdim,
                   loom_shape_str(query->shape), loom_shape_str(key->shape), loom_shape_str(value->shape));
    return NULL;
  }
  loom_scope_begin();
  const loom_tensor *x[3] = {query, key, value};
  loom_tensor *b[3];
  for (int i = 0; i < 3; i++) /* batch first, batched */
    b[i] = nd == 2 ? loom_unsqueeze(x[i], 0) : c->batch_first ? (loom_tensor *)x[i] : loom_transpose(x[i], 0, 1);
  int64_t N = b[0]->shape.d[0], L = b[0]->shape.d[1], S = b[1]->shape.d[1], H = c->num_heads, hd = c->head_dim;
  int64_t Hkv = c->num_kv_heads;
  loom_tensor *out = NULL;
  bool bad = b[1]->shape.d[0] != N || b[2]->shape.d[0] != N || b[2]->shape.d[1] != S;
  if (bad)
    core_set_error(LOOM_ERR_INVALID, "%s: query, key, value batch or key/value lengths differ: %s, %s, %s", type,
                   loom_shape_str(query->shape), loom_shape_str(key->shape), loom_shape_str(value->shape));
  loom_tensor *mask = bad ? NULL : merge_masks(type, c, kpm, am, N, L, S, query->dtype, &bad);
  int64_t extra = c->add_bias_kv + c->add_zero_attn, S2 = S + c->add_bias_kv;
  if (!bad && extra) { /* the added keys are attended: causal masks the original ones only, masks get zeros */
    if (causal) {
      loom_tensor *ii = loom_reshape(loom_arange(0, (double)L, 1, LOOM_I64, query->storage->device), LOOM_SHAPE(L, 1));
      loom_tensor *jj = loom_arange(0, (double)S, 1, LOOM_I64, query->storage->device);
      loom_tensor *cm = loom_masked_fill(loom_zeros(LOOM_SHAPE(L, S), query->dtype, query->storage->device),
                                         loom_gt(jj, ii), -INFINITY);
      mask = mask ? loom_add(mask, cm) : cm;
      causal = false;
    }
    const int64_t pad[2] = {0, extra};
    if (mask) mask = loom_pad(mask, pad, 2, NULL, 0);
  }
  if (!bad) {
    loom_tensor *kp = project(m, 1, b[1]), *vp = project(m, 2, b[2]);
    if (c->add_bias_kv) kp = append_bias(m, "bias_k", kp), vp = append_bias(m, "bias_v", vp);
    loom_tensor *q = loom_transpose(loom_reshape(project(m, 0, b[0]), LOOM_SHAPE(N, L, H, hd)), 1, 2);
    loom_tensor *k = loom_transpose(loom_reshape(kp, LOOM_SHAPE(N, S2, Hkv, hd)), 1, 2);
    loom_tensor *v = loom_transpose(loom_reshape(vp, LOOM_SHAPE(N, S2, Hkv, hd)), 1, 2);
    if (c->add_zero_attn) k = append_zeros(k), v = append_zeros(v), S2++;
    S = S2;
    double p = loom_module_training(m) ? c->dropout : 0;
    loom_tensor *o;
    if (weights) { /* explicit softmax: the weights are wanted */
      if (Hkv != H) {
        k = loom_reshape(loom_expand(loom_unsqueeze(k, 2), LOOM_SHAPE(N, Hkv, H / Hkv, S, hd)), LOOM_SHAPE(N, H, S, hd));
        v = loom_reshape(loom_expand(loom_unsqueeze(v, 2), LOOM_SHAPE(N, Hkv, H / Hkv, S, hd)), LOOM_SHAPE(N, H, S, hd));
      }
      loom_tensor *s = loom_mul_scalar(loom_matmul(q, loom_transpose(k, 2, 3)), 1 / sqrt((double)hd));
      if (mask) s = loom_add(s, mask);
      if (causal) {
        loom_tensor *ii = loom_reshape(loom_arange(0, (double)L, 1, LOOM_I64, s->storage->device), LOOM_SHAPE(L, 1));
        loom_tensor *jj = loom_arange(0, (double)S, 1, LOOM_I64, s->storage->device);
        s = loom_masked_fill(s, loom_gt(jj, ii), -INFINITY);
      }
      loom_tensor *w = loom_dropout(loom_softmax(s, -1), p, p > 0);
      o = loom_matmul(w, v);
      static const int heads[] = {1};
      *weights = per_head ? w : loom_mean(w, heads, 1, false);
      if (nd == 2) *weights = loom_squeeze(*weights, 0);
    } else {
      o = loom_scaled_dot_product_attention(q, k, v, mask, p, causal, NAN);
    }
    o = loom_reshape(loom_transpose(o, 1, 2), LOOM_SHAPE(N, L, H * hd));
    out = loom_forward(loom_module_child(m, "out_proj"), o);
    if (nd == 2) out = loom_squeeze(out, 0);
    else if (!c->batch_first) out = loom_transpose(out, 0, 1);
  }
  if (weights && !out) *weights = NULL;
  if (weights && *weights) loom_keep(*weights);
  loom_keep(out);
  loom_scope_end();
  if (weights && !out && *weights) loom_release(*weights), *weights = NULL;
  return out;
}

/* The public entry points: a forward seen by the layer profile and the forward hook. */
static loom_tensor *mha_call(loom_module *m, const loom_tensor *query, const loom_tensor *key,
                             const loom_tensor *value, const loom_tensor *key_padding_mask,
                             const loom_tensor *attn_mask, bool causal, bool per_head, loom_tensor **weights) {
  loom_tensor *in[3] = {(loom_tensor *)query, (loom_tensor *)key, (loom_tensor *)value};
  bool whole = m && query && key && value;
  int token = whole ? nn_forward_enter(m, in, 3) : 0;
  loom_tensor *out = mha_run(m, query, key, value, key_padding_mask, attn_mask, causal, per_head, weights);
  return whole ? nn_forward_exit(token, m, in, 3, out) : out;
}

loom_tensor *loom_mha_forward(loom_module *m, const loom_tensor *query, const loom_tensor *key,
                              const loom_tensor *value, const loom_tensor *key_padding_mask,
                              const loom_tensor *attn_mask, loom_tensor **weights) {
  return mha_call(m, query, key, value, key_padding_mask, attn_mask, false, false, weights);
}

loom_tensor *loom_mha_forward_causal(loom_module *m, const loom_tensor *query, const loom_tensor *key,
                                     const loom_tensor *value, const loom_tensor *key_padding_mask,
                                     const loom_tensor *attn_mask, loom_tensor **weights) {
  return mha_call(m, query, key, value, key_padding_mask, attn_mask, true, false, weights);
}

loom_tensor *loom_mha_forward_ex(loom_module *m, const loom_tensor *query, const loom_tensor *key,
                                 const loom_tensor *value, const loom_mha_args *args, loom_tensor **weights) {
  static const loom_mha_args none;
  if (!args) args = &none;
  return mha_call(m, query, key, value, args->key_padding_mask, args->attn_mask, args->is_causal,
                  args->per_head_weights, weights);
}

static loom_tensor *mha_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (n_in != 1 && n_in != 3) {
    core_set_error(LOOM_ERR_INVALID, "%s: forward takes 1 (self-attention) or 3 (query, key, value) inputs, got %d",
                   loom_module_type(m), n_in);
    return NULL;
  }
  return mha_run(m, in[0], in[n_in == 3], in[n_in == 3 ? 2 : 0], NULL, NULL, false, false, NULL);
}

/* The q, k, v projections (rows * in * out each) and the two attention
 * products; out_proj is a child Linear and counts itself. */
static int64_t mha_macs(const loom_module *m, loom_tensor *const *in, int n_in, const loom_tensor *out) {
  const loom_mha_config *c = loom_module_state(m);
  (void)out;
  if (n_in < 1) return 0;
  const loom_tensor *q = in[0], *k = in[n_in == 3 ? 1 : 0];
  int64_t nq = loom_numel(q) / c->embed_dim, nk = loom_numel(k) / c->kdim;
  int64_t S = (k->shape.ndim >= 2 ? k->shape.d[c->batch_first && k->shape.ndim == 3 ? 1 : 0] : 1) + c->add_bias_kv +
              c->add_zero_attn;
  int64_t kvw = c->num_kv_heads * c->head_dim;
  return nq * c->embed_dim * c->embed_dim + nk * (c->kdim + c->vdim) * kvw + 2 * nq * S * c->embed_dim;
}

static const loom_module_kind mha_kind = {"MultiheadAttention", mha_forward, NULL, mha_macs, mha_reset};
static const loom_module_kind gqa_kind = {"GroupedQueryAttention", mha_forward, NULL, mha_macs, mha_reset};

static loom_module *mha_build(const char *type, int64_t E, int64_t H, int64_t Hkv, const loom_mha_opts *o,
                              bool grouped) {
  loom_mha_opts d = {0};
  if (!o) o = &d;
  if (E <= 0 || H <= 0 || E % H || Hkv <= 0 || H % Hkv || o->kdim < 0 || o->vdim < 0 ||
      !(o->dropout >= 0 && o->dropout < 1)) {
    core_set_error(LOOM_ERR_INVALID,
                   "%s: expected embed_dim > 0 divisible by num_heads > 0, num_heads a multiple of the key/value heads, "
                   "kdim, vdim >= 0 and dropout in [0, 1); got embed_dim %lld, num_heads %lld, kv heads %lld, "
                   "dropout %g",
                   type, (long long)E, (long long)H, (long long)Hkv, o->dropout);
    return NULL;
  }
  if (grouped && (o->add_bias_kv || o->add_zero_attn)) {
    core_set_error(LOOM_ERR_INVALID, "%s: add_bias_kv and add_zero_attn are options of MultiheadAttention only", type);
    return NULL;
  }
  loom_mha_config c = {E, H, Hkv, E / H, o->kdim ? o->kdim : E, o->vdim ? o->vdim : E, o->dropout, o->no_bias,
                       o->batch_first, false, grouped, o->add_bias_kv, o->add_zero_attn};
  c.separate_proj = !grouped && (c.kdim != E || c.vdim != E);
  loom_module *m = loom_module_new(grouped ? &gqa_kind : &mha_kind, dup_state(&c, sizeof c));
  if (!m) return NULL;
  bool ok = true;
  loom_linear_opts lo = {o->no_bias};
  loom_scope_begin();
  if (grouped) {
    ok = !loom_module_add(m, "q_proj", loom_nn_linear(E, E, &lo)) &&
         !loom_module_add(m, "k_proj", loom_nn_linear(c.kdim, Hkv * c.head_dim, &lo)) &&
         !loom_module_add(m, "v_proj", loom_nn_linear(c.vdim, Hkv * c.head_dim, &lo));
  } else if (c.separate_proj) {
    ok = loom_module_add_parameter(m, "q_proj_weight", loom_zeros(LOOM_SHAPE(E, E), LOOM_F32, loom_cpu())) &&
         loom_module_add_parameter(m, "k_proj_weight", loom_zeros(LOOM_SHAPE(E, c.kdim), LOOM_F32, loom_cpu())) &&
         loom_module_add_parameter(m, "v_proj_weight", loom_zeros(LOOM_SHAPE(E, c.vdim), LOOM_F32, loom_cpu()));
  } else {
    ok = loom_module_add_parameter(m, "in_proj_weight", loom_zeros(LOOM_SHAPE(3 * E, E), LOOM_F32, loom_cpu()));
  }
  if (ok && !grouped && !c.no_bias)
    ok = loom_module_add_parameter(m, "in_proj_bias", loom_zeros(LOOM_SHAPE(3 * E), LOOM_F32, loom_cpu())) != NULL;
  if (ok && c.add_bias_kv)
    ok = loom_module_add_parameter(m, "bias_k", loom_zeros(LOOM_SHAPE(1, 1, E), LOOM_F32, loom_cpu())) &&
         loom_module_add_parameter(m, "bias_v", loom_zeros(LOOM_SHAPE(1, 1, E), LOOM_F32, loom_cpu()));
  if (ok) ok = !loom_module_add(m, "out_proj", loom_nn_linear(E, E, &lo));
  loom_scope_end();
  if (ok) mha_reset(m);
  return finish(m, ok);
}

loom_module *loom_nn_multihead_attention(int64_t embed_dim, int64_t num_heads, const loom_mha_opts *opts) {
  return mha_build("MultiheadAttention", embed_dim, num_heads, num_heads, opts, false);
}

loom_module *loom_nn_grouped_query_attention(int64_t embed_dim, int64_t num_heads, int64_t num_kv_heads,
                                             const loom_mha_opts *opts) {
  return mha_build("GroupedQueryAttention", embed_dim, num_heads, num_kv_heads, opts, true);
}

/* ---- AdditiveAttention ---- */

loom_tensor *loom_additive_attention_forward(loom_module *m, const loom_tensor *queries, const loom_tensor *keys,
                                             const loom_tensor *values, const loom_tensor *kpm,
                                             loom_tensor **weights) {
  if (weights) *weights = NULL;
  if (!m || !queries || !keys || !values) {
    core_null_error("AdditiveAttention: NULL module or input");
    return NULL;
  }
  const loom_additive_attention_config *c = loom_module_state(m);
  if (queries->shape.ndim != 3 || keys->shape.ndim != 3 || values->shape.ndim != 3 ||
      queries->shape.d[2] != c->query_size || keys->shape.d[2] != c->key_size ||
      keys->shape.d[0] != queries->shape.d[0] || values->shape.d[0] != queries->shape.d[0] ||
      values->shape.d[1] != keys->shape.d[1] ||
      (kpm && (kpm->shape.ndim != 2 || kpm->shape.d[0] != keys->shape.d[0] || kpm->shape.d[1] != keys->shape.d[1] ||
               kpm->dtype != LOOM_BOOL))) {
    core_set_error(LOOM_ERR_INVALID,
                   "AdditiveAttention: expected queries [N, L, %lld], keys [N, S, %lld], values [N, S, Dv] and a "
                   "bool key_padding_mask [N, S]; got %s, %s, %s, %s",
                   (long long)c->query_size, (long long)c->key_size, loom_shape_str(queries->shape),
                   loom_shape_str(keys->shape), loom_shape_str(values->shape),
                   kpm ? loom_shape_str(kpm->shape) : "none");
    return NULL;
  }
  loom_scope_begin();
  loom_tensor *fq = loom_unsqueeze(loom_forward(loom_module_child(m, "W_q"), queries), 2); /* [N, L, 1, h] */
  loom_tensor *fk = loom_unsqueeze(loom_forward(loom_module_child(m, "W_k"), keys), 1);    /* [N, 1, S, h] */
  loom_tensor *s = loom_squeeze(loom_forward(loom_module_child(m, "w_v"), loom_tanh(loom_add(fq, fk))), -1);
  if (kpm) s = loom_masked_fill(s, loom_unsqueeze(kpm, 1), -INFINITY);
  loom_tensor *w = loom_softmax(s, -1);
  bool tr = loom_module_training(m);
  loom_tensor *out = loom_matmul(loom_dropout(w, c->dropout, tr && c->dropout > 0), values);
  if (weights && out) *weights = loom_keep(w);
  loom_keep(out);
  loom_scope_end();
  return out;
}

static loom_tensor *additive_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (n_in != 3) {
    core_set_error(LOOM_ERR_INVALID, "AdditiveAttention: forward takes (queries, keys, values), got %d inputs", n_in);
    return NULL;
  }
  return loom_additive_attention_forward(m, in[0], in[1], in[2], NULL, NULL);
}

static const loom_module_kind additive_kind = {"AdditiveAttention", additive_forward, NULL, NULL, NULL};

loom_module *loom_nn_additive_attention(int64_t query_size, int64_t key_size, int64_t num_hiddens, double dropout) {
  if (query_size <= 0 || key_size <= 0 || num_hiddens <= 0 || !(dropout >= 0 && dropout < 1)) {
    core_set_error(LOOM_ERR_INVALID, "AdditiveAttention: expected positive sizes and dropout in [0, 1), got %lld, %lld, "
                   "%lld, %g", (long long)query_size, (long long)key_size, (long long)num_hiddens, dropout);
    return NULL;
  }
  loom_additive_attention_config c = {query_size, key_size, num_hiddens, dropout};
  loom_module *m = loom_module_new(&additive_kind, dup_state(&c, sizeof c));
  if (!m) return NULL;
  loom_linear_opts nb = {true};
  bool ok = !loom_module_add(m, "W_k", loom_nn_linear(key_size, num_hiddens, &nb)) &&
            !loom_module_add(m, "W_q", loom_nn_linear(query_size, num_hiddens, &nb)) &&
            !loom_module_add(m, "w_v", loom_nn_linear(num_hiddens, 1, &nb));
  return finish(m, ok);
}

/* ---- PositionalEncoding ---- */

static loom_tensor *pe_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  const loom_positional_encoding_config *c = loom_module_state(m);
  const loom_tensor *x = n_in == 1 ? in[0] : NULL;
  if (!x || x->shape.ndim < 2 || x->shape.d[x->shape.ndim - 1] != c->d_model ||
      x->shape.d[x->shape.ndim - 2] > c->max_len) {
    core_set_error(LOOM_ERR_INVALID, "PositionalEncoding: expected one input [..., L <= %lld, d_model = %lld], got %s",
                   (long long)c->max_len, (long long)c->d_model, x ? loom_shape_str(x->shape) : "none");
    return NULL;
  }
  loom_scope_begin();
  loom_tensor *pe = loom_narrow(loom_module_buffer(m, "pe"), 0, 0, x->shape.d[x->shape.ndim - 2]);
  loom_tensor *out = loom_add(x, loom_to_dtype(pe, x->dtype));
  if (c->dropout > 0) out = loom_dropout(out, c->dropout, loom_module_training(m));
  loom_keep(out);
  loom_scope_end();
  return out;
}

static const loom_module_kind pe_kind = {"PositionalEncoding", pe_forward, NULL, NULL, NULL};

loom_module *loom_nn_positional_encoding(int64_t d_model, int64_t max_len, double dropout) {
  if (d_model <= 0 || max_len <= 0 || !(dropout >= 0 && dropout < 1)) {
    core_set_error(LOOM_ERR_INVALID, "PositionalEncoding: expected d_model > 0, max_len > 0, dropout in [0, 1), got "
                   "%lld, %lld, %g", (long long)d_model, (long long)max_len, dropout);
    return NULL;
  }
  loom_positional_encoding_config c = {d_model, max_len, dropout};
  loom_module *m = loom_module_new(&pe_kind, dup_state(&c, sizeof c));
  if (!m) return NULL;
  float *v = malloc(sizeof(float) * (size_t)(d_model * max_len));
  if (!v) {
    core_set_error(LOOM_ERR_OOM, "PositionalEncoding: out of host memory");
    return finish(m, false);
  }
  for (int64_t p = 0; p < max_len; p++)
    for (int64_t i = 0; i < d_model; i += 2) {
      double a = (double)p * exp(-(double)i * log(10000.0) / (double)d_model);
      v[p * d_model + i] = (float)sin(a);
      if (i + 1 < d_model) v[p * d_model + i + 1] = (float)cos(a);
    }
  loom_scope_begin();
  bool ok = loom_module_add_buffer(m, "pe", loom_from_host(v, LOOM_SHAPE(max_len, d_model), LOOM_F32, loom_cpu()),
                                   false) != NULL;
  loom_scope_end();
  free(v);
  return finish(m, ok);
}
