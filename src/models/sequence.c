/* The sequence classifiers: RNN / LSTM / GRU over float sequences (the
 * char-RNN name classifier), a Transformer encoder and a bag of embeddings
 * over token ids. Each root has its own forward; errors name the model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/ops.h"
#include "models/models_impl.h"
#include "models/sequence_impl.h"

typedef struct seq_cfg {
  char name[40];          /* "LSTMClassifier": the first word of every error */
  int64_t in_channels;    /* RNN classifiers: features per step */
  int64_t vocab_size;     /* token models */
  int64_t max_len;        /* Transformer classifier: longest sequence (0 = any) */
  int64_t embed_dim;
  bool bidirectional;
  int num_layers;
} seq_cfg;

static loom_module *seq_root(const loom_module_kind *kind, const seq_cfg *cfg) {
  seq_cfg *s = malloc(sizeof *s);
  if (!s) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", cfg->name);
    return NULL;
  }
  *s = *cfg;
  loom_module *m = loom_module_new(kind, s);
  if (!m) free(s);
  return m;
}

/* ---- shared input checks (also used by pointer.c) ---- */

bool seq_check_sequence(const char *model, const loom_tensor *x, int64_t features) {
  loom_shape sh = loom_shape_of(x);
  if (sh.ndim != 3 || sh.d[2] != features) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected a batch-first sequence [N, L, %lld], got %s", model,
                   (long long)features, loom_shape_str(sh));
    return false;
  }
  if (sh.d[0] < 1 || sh.d[1] < 1) {
    core_set_error(LOOM_ERR_INVALID, "%s: empty %s: input %s", model, sh.d[0] < 1 ? "batch" : "sequence",
                   loom_shape_str(sh));
    return false;
  }
  if (!loom_dtype_is_float(loom_dtype_of(x))) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected a floating sequence, got dtype %s", model,
                   loom_dtype_name(loom_dtype_of(x)));
    return false;
  }
  return true;
}

/* Copies an integer tensor's values to host (int64); NULL + error naming model otherwise. */
int64_t *seq_host_ids(const char *model, const char *what, const loom_tensor *t) {
  loom_dtype dt = loom_dtype_of(t);
  if (dt != LOOM_I64 && dt != LOOM_I32) {
    core_set_error(LOOM_ERR_INVALID, "%s: %s must be LOOM_I64 or LOOM_I32, got %s", model, what, loom_dtype_name(dt));
    return NULL;
  }
  size_t n = (size_t)loom_numel(t);
  int64_t *v = malloc((n ? n : 1) * sizeof *v);
  if (!v) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", model);
    return NULL;
  }
  loom_scope_begin();
  loom_tensor *c = dt == LOOM_I64 ? (loom_tensor *)t : loom_to_dtype(t, LOOM_I64);
  int rc = c ? loom_to_host(c, v, n * sizeof *v) : -1;
  loom_scope_end();
  if (rc) {
    free(v);
    model_name_error("%s", model);
    return NULL;
  }
  return v;
}

/* ids [N, L] (N, L >= 1, L <= max_len unless 0) with every id in [0, vocab). */
static bool check_tokens(const seq_cfg *s, const loom_tensor *ids) {
  loom_shape sh = loom_shape_of(ids);
  if (sh.ndim != 2) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected token ids [N, L], got %s", s->name, loom_shape_str(sh));
    return false;
  }
  if (sh.d[0] < 1 || sh.d[1] < 1) {
    core_set_error(LOOM_ERR_INVALID, "%s: empty %s: token ids %s", s->name, sh.d[0] < 1 ? "batch" : "sequence",
                   loom_shape_str(sh));
    return false;
  }
  if (s->max_len && sh.d[1] > s->max_len) {
    core_set_error(LOOM_ERR_INVALID, "%s: sequence length %lld exceeds max_len %lld", s->name, (long long)sh.d[1],
                   (long long)s->max_len);
    return false;
  }
  int64_t *v = seq_host_ids(s->name, "token ids", ids);
  if (!v) return false;
  bool ok = true;
  for (int64_t i = 0; i < sh.d[0] * sh.d[1]; i++)
    if (v[i] < 0 || v[i] >= s->vocab_size) {
      core_set_error(LOOM_ERR_INVALID, "%s: token id %lld at [%lld, %lld] is outside the vocabulary [0, %lld)",
                     s->name, (long long)v[i], (long long)(i / sh.d[1]), (long long)(i % sh.d[1]),
                     (long long)s->vocab_size);
      ok = false;
      break;
    }
  free(v);
  return ok;
}

/* Mean of h [N, L, E] over the positions where ids != 0 (a row of padding
 * only gives zeros). */
static loom_tensor *masked_mean(const loom_tensor *h, const loom_tensor *ids) {
  loom_tensor *keep = loom_to_dtype(loom_ne(ids, loom_scalar_like(ids, 0)), loom_dtype_of(h));
  int d1 = 1;
  loom_tensor *count = loom_clamp(loom_sum(keep, &d1, 1, true), 1, INFINITY); /* [N, 1] */
  loom_tensor *sum = loom_sum(loom_mul(h, loom_unsqueeze(keep, 2)), &d1, 1, false);
  return loom_div(sum, count);
}

/* ---- RNN / LSTM / GRU classifier ---- */

static loom_tensor *rnn_cls_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  const seq_cfg *s = loom_module_state(m);
  if (!model_one_input(s->name, n_in) || !in[0]) return NULL;
  if (!seq_check_sequence(s->name, in[0], s->in_channels)) return NULL;
  loom_scope_begin();
  loom_tensor *h_n = NULL, *feat = NULL, *y = NULL;
  loom_tensor *out = loom_rnn_forward(loom_module_child(m, "rnn"), in[0], NULL, NULL, &h_n, NULL);
  if (!out) {
    model_error(s->name, "rnn");
  } else {
    int64_t last = (int64_t)s->num_layers * (s->bidirectional ? 2 : 1) - 1;
    if (s->bidirectional) {
      loom_tensor *both[2] = {loom_select(h_n, 0, last - 1), loom_select(h_n, 0, last)};
      feat = loom_cat(both, 2, 1);
    } else {
      feat = loom_select(h_n, 0, last);
    }
    y = model_run(m, "fc", feat);
    if (!y) model_name_error("%s", s->name);
  }
  loom_keep(y);
  loom_scope_end();
  return y;
}

static const loom_module_kind rnn_cls_kinds[4] = {
    {.type = "RNNClassifier", .forward = rnn_cls_forward},
    {.type = "RNNClassifier", .forward = rnn_cls_forward},
    {.type = "LSTMClassifier", .forward = rnn_cls_forward},
    {.type = "GRUClassifier", .forward = rnn_cls_forward},
};

loom_module *loom_model_rnn_classifier(loom_rnn_mode mode, const loom_model_opts *opts) {
  if (mode < LOOM_RNN_TANH || mode > LOOM_RNN_GRU) {
    core_set_error(LOOM_ERR_INVALID, "RNN classifier: unknown mode %d (LOOM_RNN_TANH, _RELU, _LSTM or _GRU)",
                   (int)mode);
    return NULL;
  }
  const char *name = rnn_cls_kinds[mode].type;
  loom_model_opts o = model_opts(opts, 18, 57);
  if (!model_opts_ok(name, &o)) return NULL;
  if (o.num_layers < 0) {
    core_set_error(LOOM_ERR_INVALID, "%s: num_layers must be >= 0 (0 = 1), got %d", name, o.num_layers);
    return NULL;
  }
  int64_t hidden = o.hidden ? o.hidden : 128;
  seq_cfg cfg = {.in_channels = o.in_channels, .bidirectional = o.bidirectional,
                 .num_layers = o.num_layers ? o.num_layers : 1};
  snprintf(cfg.name, sizeof cfg.name, "%s", name);
  loom_rnn_options ro = {.num_layers = cfg.num_layers, .batch_first = true, .bidirectional = o.bidirectional,
                         .dropout = o.dropout, .relu = mode == LOOM_RNN_RELU};
  loom_module *rnn = mode == LOOM_RNN_LSTM  ? loom_nn_lstm(o.in_channels, hidden, &ro)
                     : mode == LOOM_RNN_GRU ? loom_nn_gru(o.in_channels, hidden, &ro)
                                            : loom_nn_rnn(o.in_channels, hidden, &ro);
  if (!rnn) {
    model_error(name, "rnn");
    return NULL;
  }
  loom_module *m = seq_root(&rnn_cls_kinds[mode], &cfg);
  bool ok = m && !loom_module_add(m, "rnn", rnn);
  if (!m) loom_module_free(rnn);
  ok = ok && !loom_module_add(m, "fc", loom_nn_linear(hidden * (o.bidirectional ? 2 : 1), o.num_classes, NULL));
  return model_done(m, ok);
}

/* ---- Transformer encoder classifier ---- */

static loom_tensor *transformer_cls_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  const seq_cfg *s = loom_module_state(m);
  if (!model_one_input(s->name, n_in) || !in[0] || !check_tokens(s, in[0])) return NULL;
  loom_scope_begin();
  const loom_tensor *ids = in[0];
  loom_tensor *e = model_run(m, "embedding", (loom_tensor *)ids);
  e = e ? loom_mul_scalar(e, sqrt((double)s->embed_dim)) : NULL;
  e = model_run(m, "pos_encoder", e);
  loom_tensor *pad = loom_eq(ids, loom_scalar_like(ids, 0)), *h = NULL, *y = NULL;
  if (e) {
    h = loom_encoder_forward(loom_module_child(m, "encoder"), e, NULL, pad);
    if (!h) model_error(s->name, "encoder");
  }
  if (h) {
    y = model_run(m, "fc", masked_mean(h, ids));
    if (!y) model_name_error("%s", s->name);
  } else if (e == NULL) {
    model_name_error("%s", s->name);
  }
  loom_keep(y);
  loom_scope_end();
  return y;
}

static const loom_module_kind transformer_cls_kind = {.type = "TransformerClassifier",
                                                      .forward = transformer_cls_forward};

static bool token_opts_ok(const char *name, const loom_model_opts *o) {
  if (!model_opts_ok(name, o)) return false;
  if (o->vocab_size < 0 || o->embed_dim < 0 || o->max_len < 0 || o->num_layers < 0 || o->num_heads < 0) {
    core_set_error(LOOM_ERR_INVALID,
                   "%s: vocab_size (%lld), embed_dim (%lld), max_len (%lld), num_layers (%d) and num_heads (%d) "
                   "must be >= 0 (0 = the default)",
                   name, (long long)o->vocab_size, (long long)o->embed_dim, (long long)o->max_len, o->num_layers,
                   o->num_heads);
    return false;
  }
  return true;
}

loom_module *loom_model_transformer_classifier(const loom_model_opts *opts) {
  const char *name = "TransformerClassifier";
  loom_model_opts o = model_opts(opts, 2, 1);
  if (!token_opts_ok(name, &o)) return NULL;
  seq_cfg cfg = {.vocab_size = o.vocab_size ? o.vocab_size : 256,
                 .max_len = o.max_len ? o.max_len : 512,
                 .embed_dim = o.embed_dim ? o.embed_dim : 128,
                 .num_layers = o.num_layers ? o.num_layers : 2};
  snprintf(cfg.name, sizeof cfg.name, "%s", name);
  int64_t heads = o.num_heads ? o.num_heads : 4, d = cfg.embed_dim;
  if (d % heads) {
    core_set_error(LOOM_ERR_INVALID, "%s: embed_dim %lld is not a multiple of num_heads %lld", name, (long long)d,
                   (long long)heads);
    return NULL;
  }
  double p = o.set_dropout || o.dropout ? o.dropout : 0.1;
  loom_embedding_opts eo = {.has_padding_idx = true, .padding_idx = 0};
  loom_transformer_opts to = {.dim_feedforward = 4 * d, .dropout = p > 0 ? p : LOOM_NO_DROPOUT, .batch_first = true};
  loom_module *m = seq_root(&transformer_cls_kind, &cfg);
  bool ok = m && !loom_module_add(m, "embedding", loom_nn_embedding(cfg.vocab_size, d, &eo));
  ok = ok && !loom_module_add(m, "pos_encoder", loom_nn_positional_encoding(d, cfg.max_len, p));
  ok = ok && !loom_module_add(m, "encoder", loom_nn_transformer_encoder(d, heads, cfg.num_layers, false, &to));
  ok = ok && !loom_module_add(m, "fc", loom_nn_linear(d, o.num_classes, NULL));
  if (m && !ok) model_name_error("%s", name);
  return model_done(m, ok);
}

/* ---- text classifier (mean of embeddings) ---- */

static loom_tensor *text_cls_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  const seq_cfg *s = loom_module_state(m);
  if (!model_one_input(s->name, n_in) || !in[0] || !check_tokens(s, in[0])) return NULL;
  loom_scope_begin();
  loom_tensor *e = model_run(m, "embedding", in[0]);
  loom_tensor *y = model_run(m, "fc", e ? masked_mean(e, in[0]) : NULL);
  if (!y) model_name_error("%s", s->name);
  loom_keep(y);
  loom_scope_end();
  return y;
}

static const loom_module_kind text_cls_kind = {.type = "TextClassifier", .forward = text_cls_forward};

loom_module *loom_model_text_classifier(const loom_model_opts *opts) {
  const char *name = "TextClassifier";
  loom_model_opts o = model_opts(opts, 2, 1);
  if (!token_opts_ok(name, &o)) return NULL;
  seq_cfg cfg = {.vocab_size = o.vocab_size ? o.vocab_size : 256, .embed_dim = o.embed_dim ? o.embed_dim : 64};
  snprintf(cfg.name, sizeof cfg.name, "%s", name);
  loom_embedding_opts eo = {.has_padding_idx = true, .padding_idx = 0};
  loom_module *m = seq_root(&text_cls_kind, &cfg);
  bool ok = m && !loom_module_add(m, "embedding", loom_nn_embedding(cfg.vocab_size, cfg.embed_dim, &eo));
  ok = ok && !loom_module_add(m, "fc", loom_nn_linear(cfg.embed_dim, o.num_classes, NULL));
  if (m && !ok) model_name_error("%s", name);
  return model_done(m, ok);
}
