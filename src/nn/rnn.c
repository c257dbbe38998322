/* RNN, LSTM and GRU modules: parameters under PyTorch's names and order
 * (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, then _reverse, then
 * the next layer), forward through loom_rnn. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/autograd_impl.h"
#include "loom/nn_init.h"
#include "nn/module_impl.h"
#include "nn/rnn_impl.h"

/* loom_rnn_forward passes its state destinations to the forward callback
 * through these, so that a call made with it still goes through
 * loom_forward_n (and its forward hook, used by summaries). */
static _Thread_local loom_tensor **pending_hn, **pending_cn;
static _Thread_local const loom_tensor *pending_lengths;

static loom_tensor *rnn_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  loom_tensor **hn_dst = pending_hn, **cn_dst = pending_cn;
  const loom_tensor *lengths = pending_lengths;
  pending_hn = pending_cn = NULL;
  pending_lengths = NULL;
  const loom_rnn_config *cfg = loom_module_state(m);
  const char *layer = loom_module_type(m);
  int max_in = cfg->mode == LOOM_RNN_LSTM ? 3 : 2;
  if (n_in < 1 || n_in > max_in) {
    core_set_error(LOOM_ERR_INVALID, "%s: forward takes (input%s), got %d tensors", layer,
                   cfg->mode == LOOM_RNN_LSTM ? "[, h0, c0]" : "[, h0]", n_in);
    return NULL;
  }
  if (cfg->mode == LOOM_RNN_LSTM && n_in == 2) {
    core_set_error(LOOM_ERR_INVALID, "LSTM: the initial state needs both h0 and c0");
    return NULL;
  }
  /* per layer and direction the module holds w_ih, w_hh, [b_ih, b_hh,] [w_hr] */
  int D = cfg->bidirectional ? 2 : 1, proj = cfg->proj_size > 0, per = (cfg->bias ? 4 : 2) + proj;
  int n = cfg->num_layers * D, slots = 4 + proj;
  if (m->n_params != n * per) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected %d parameters, the module has %d", layer, n * per, m->n_params);
    return NULL;
  }
  loom_tensor **w = calloc((size_t)n * (size_t)slots, sizeof *w);
  if (!w) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", layer);
    return NULL;
  }
  for (int i = 0; i < n; i++) {
    nn_entry *p = m->params + i * per;
    w[slots * i] = p[0].t, w[slots * i + 1] = p[1].t;
    if (cfg->bias) w[slots * i + 2] = p[2].t, w[slots * i + 3] = p[3].t;
    if (proj) w[slots * i + 4] = p[per - 1].t;
  }
  loom_tensor *hn = NULL, *cn = NULL;
  loom_rnn_args a = {cfg->num_layers, cfg->bidirectional, cfg->batch_first, cfg->dropout, m->training,
                     cfg->proj_size, lengths};
  loom_tensor *out = loom_rnn(cfg->mode, in[0], n_in > 1 ? in[1] : NULL, n_in > 2 ? in[2] : NULL, w, &a,
                              hn_dst ? &hn : NULL, cn_dst ? &cn : NULL);
  free(w);
  if (hn_dst) *hn_dst = hn;
  if (cn_dst) *cn_dst = cn;
  return out;
}

loom_tensor *loom_rnn_forward(loom_module *m, const loom_tensor *x, const loom_tensor *h0, const loom_tensor *c0,
                              loom_tensor **h_n, loom_tensor **c_n) {
  return loom_rnn_forward_packed(m, x, NULL, h0, c0, h_n, c_n);
}

loom_tensor *loom_rnn_forward_packed(loom_module *m, const loom_tensor *x, const loom_tensor *lengths,
                                     const loom_tensor *h0, const loom_tensor *c0, loom_tensor **h_n,
                                     loom_tensor **c_n) {
  if (h_n) *h_n = NULL;
  if (c_n) *c_n = NULL;
  if (!m) {
    core_null_error("rnn_forward: module is NULL");
    return NULL;
  }
  const loom_module_kind *kind = loom_module_kind_of(m);
  if (kind->forward != rnn_forward) {
    core_set_error(LOOM_ERR_INVALID, "rnn_forward: expected an RNN, LSTM or GRU module, got %s", kind->type);
    return NULL;
  }
  const loom_rnn_config *cfg = loom_module_state(m);
  if (c0 && cfg->mode != LOOM_RNN_LSTM) {
    core_set_error(LOOM_ERR_INVALID, "%s: c0 is for LSTM only", kind->type);
    return NULL;
  }
  if (cfg->mode == LOOM_RNN_LSTM && (h0 == NULL) != (c0 == NULL)) {
    core_set_error(LOOM_ERR_INVALID, "LSTM: give both h0 and c0 or neither");
    return NULL;
  }
  loom_tensor *in[3] = {(loom_tensor *)x, (loom_tensor *)h0, (loom_tensor *)c0};
  pending_hn = h_n;
  pending_cn = c_n;
  pending_lengths = lengths;
  loom_tensor *out = loom_forward_n(m, in, h0 ? (c0 ? 3 : 2) : 1);
  pending_hn = pending_cn = NULL;
  pending_lengths = NULL;
  return out;
}

static int64_t rnn_macs(const loom_module *m, loom_tensor *const *in, int n_in, const loom_tensor *out) {
  const loom_rnn_config *cfg = loom_module_state(m);
  if (n_in < 1 || !in[0]) return 0;
  loom_shape s = loom_shape_of(in[0]);
  int64_t L = s.d[0], N = s.ndim == 3 ? s.d[1] : 1;
  if (s.ndim == 3 && cfg->batch_first) L = s.d[1], N = s.d[0];
  int64_t H = cfg->hidden_size, G = nn_rnn_gates(cfg->mode), D = cfg->bidirectional ? 2 : 1, total = 0;
  int64_t P = cfg->proj_size, hout = P ? P : H; /* the projection adds P * H per step */
  for (int k = 0; k < cfg->num_layers; k++) {
    int64_t fin = k == 0 ? cfg->input_size : D * hout;
    total += D * L * N * (G * H * (fin + hout) + P * H);
  }
  return total;
}

static void rnn_reset(loom_module *m) {
  const loom_rnn_config *cfg = loom_module_state(m);
  double k = 1.0 / sqrt((double)cfg->hidden_size);
  for (int i = 0; i < m->n_params; i++) loom_init_uniform_(m->params[i].t, -k, k);
}

static const loom_module_kind rnn_kind = {"RNN", rnn_forward, NULL, rnn_macs, rnn_reset};
static const loom_module_kind lstm_kind = {"LSTM", rnn_forward, NULL, rnn_macs, rnn_reset};
static const loom_module_kind gru_kind = {"GRU", rnn_forward, NULL, rnn_macs, rnn_reset};

static loom_module *make(loom_rnn_mode mode, const loom_module_kind *kind, int64_t input_size,
                         int64_t hidden_size, const loom_rnn_options *opts) {
  loom_rnn_options o = opts ? *opts : (loom_rnn_options){0};
  int K = o.num_layers == 0 ? 1 : o.num_layers;
  if (input_size <= 0 || hidden_size <= 0 || K < 1 || K > 32) {
    core_set_error(LOOM_ERR_INVALID,
                   "%s: expected input_size > 0, hidden_size > 0 and 1 <= num_layers <= 32, got %lld, %lld, %d",
                   kind->type, (long long)input_size, (long long)hidden_size, o.num_layers);
    return NULL;
  }
  if (!(o.dropout >= 0 && o.dropout <= 1)) {
    core_set_error(LOOM_ERR_INVALID, "%s: dropout must be in [0, 1], got %g", kind->type, o.dropout);
    return NULL;
  }
  if (o.relu && mode != LOOM_RNN_TANH) {
    core_set_error(LOOM_ERR_INVALID, "%s: the relu nonlinearity is for RNN only", kind->type);
    return NULL;
  }
  if (o.proj_size < 0 || (o.proj_size > 0 && (mode != LOOM_RNN_LSTM || o.proj_size >= hidden_size))) {
    core_set_error(LOOM_ERR_INVALID, "%s: proj_size must be >= 0, smaller than hidden_size (%lld) and is for LSTM "
                   "only; got %lld", kind->type, (long long)hidden_size, (long long)o.proj_size);
    return NULL;
  }
  loom_rnn_config *cfg = malloc(sizeof *cfg);
  if (!cfg) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", kind->type);
    return NULL;
  }
  *cfg = (loom_rnn_config){o.relu ? LOOM_RNN_RELU : mode, input_size, hidden_size, K, !o.no_bias,
                           o.batch_first, o.bidirectional, o.dropout, o.proj_size};
  loom_module *m = loom_module_new(kind, cfg);
  if (!m) {
    free(cfg);
    return NULL;
  }
  int64_t GH = nn_rnn_gates(mode) * hidden_size, P = o.proj_size, hout = P ? P : hidden_size;
  int D = o.bidirectional ? 2 : 1;
  bool ok = true;
  loom_scope_begin();
  for (int k = 0; k < K && ok; k++)
    for (int d = 0; d < D && ok; d++) {
      const char *sfx = d ? "_reverse" : "";
      int64_t fin = k == 0 ? input_size : D * hout;
      char name[64];
      snprintf(name, sizeof name, "weight_ih_l%d%s", k, sfx);
      ok = loom_module_add_parameter(m, name, loom_empty(LOOM_SHAPE(GH, fin), LOOM_F32, loom_cpu())) != NULL;
      snprintf(name, sizeof name, "weight_hh_l%d%s", k, sfx);
      ok = ok && loom_module_add_parameter(m, name, loom_empty(LOOM_SHAPE(GH, hout), LOOM_F32, loom_cpu()));
      if (cfg->bias) {
        snprintf(name, sizeof name, "bias_ih_l%d%s", k, sfx);
        ok = ok && loom_module_add_parameter(m, name, loom_empty(LOOM_SHAPE(GH), LOOM_F32, loom_cpu()));
        snprintf(name, sizeof name, "bias_hh_l%d%s", k, sfx);
        ok = ok && loom_module_add_parameter(m, name, loom_empty(LOOM_SHAPE(GH), LOOM_F32, loom_cpu()));
      }
      if (P) {
        snprintf(name, sizeof name, "weight_hr_l%d%s", k, sfx);
        ok = ok && loom_module_add_parameter(m, name, loom_empty(LOOM_SHAPE(P, hidden_size), LOOM_F32, loom_cpu()));
      }
    }
  loom_scope_end();
  if (!ok) {
    loom_module_free(m);
    return NULL;
  }
  rnn_reset(m);
  return m;
}

loom_module *loom_nn_rnn(int64_t input_size, int64_t hidden_size, const loom_rnn_options *opts) {
  return make(LOOM_RNN_TANH, &rnn_kind, input_size, hidden_size, opts);
}

loom_module *loom_nn_lstm(int64_t input_size, int64_t hidden_size, const loom_rnn_options *opts) {
  return make(LOOM_RNN_LSTM, &lstm_kind, input_size, hidden_size, opts);
}

loom_module *loom_nn_gru(int64_t input_size, int64_t hidden_size, const loom_rnn_options *opts) {
  return make(LOOM_RNN_GRU, &gru_kind, input_size, hidden_size, opts);
}
