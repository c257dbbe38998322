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

static loom_tensor *rnn_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  loom_tensor **hn_dst = pending_hn, **cn_dst = pending_cn;
  pending_hn = pending_cn = NULL;
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
  int D = cfg->bidirectional ? 2 : 1, per = cfg->bias ? 4 : 2, n = cfg->num_layers * D;
  if (m->n_params != n * per) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected %d parameters, the module has %d", layer, n * per, m->n_params);
    return NULL;
  }
  loom_tensor **w = calloc((size_t)n * 4, sizeof *w);
  if (!w) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", layer);
    return NULL;
  }
  for (int i = 0; i < n; i++)
    for (int j = 0; j < per; j++) w[4 * i + j] = m->params[i * per + j].t;
  loom_tensor *hn = NULL, *cn = NULL;
  loom_tensor *out = loom_rnn(cfg->mode, in[0], n_in > 1 ? in[1] : NULL, n_in > 2 ? in[2] : NULL, w,
                              cfg->num_layers, cfg->bidirectional, cfg->batch_first, cfg->dropout, m->training,
                              hn_dst ? &hn : NULL, cn_dst ? &cn : NULL);
  free(w);
  if (hn_dst) *hn_dst = hn;
  if (cn_dst) *cn_dst = cn;
  return out;
}

loom_tensor *loom_rnn_forward(loom_module *m, const loom_tensor *x, const loom_tensor *h0, const loom_tensor *c0,
                              loom_tensor **h_n, loom_tensor **c_n) {
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
  loom_tensor *out = loom_forward_n(m, in, h0 ? (c0 ? 3 : 2) : 1);
  pending_hn = pending_cn = NULL;
  return out;
}

static int64_t rnn_macs(const loom_module *m, loom_tensor *const *in, int n_in, const loom_tensor *out) {
  const loom_rnn_config *cfg = loom_module_state(m);
  if (n_in < 1 || !in[0]) return 0;
  loom_shape s = loom_shape_of(in[0]);
  int64_t L = s.d[0], N = s.ndim == 3 ? s.d[1] : 1;
  if (s.ndim == 3 && cfg->batch_first) L = s.d[1], N = s.d[0];
  int64_t H = cfg->hidden_size, G = nn_rnn_gates(cfg->mode), D = cfg->bidirectional ? 2 : 1, total = 0;
  for (int k = 0; k < cfg->num_layers; k++) {
    int64_t fin = k == 0 ? cfg->input_size : D * H;
    total += D * L * N * G * H * (fin + H);
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
  loom_rnn_config *cfg = malloc(sizeof *cfg);
  if (!cfg) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", kind->type);
    return NULL;
  }
  *cfg = (loom_rnn_config){o.relu ? LOOM_RNN_RELU : mode, input_size, hidden_size, K, !o.no_bias,
                           o.batch_first, o.bidirectional, o.dropout};
  loom_module *m = loom_module_new(kind, cfg);
  if (!m) {
    free(cfg);
    return NULL;
  }
  int64_t GH = nn_rnn_gates(mode) * hidden_size;
  int D = o.bidirectional ? 2 : 1;
  bool ok = true;
  loom_scope_begin();
  for (int k = 0; k < K && ok; k++)
    for (int d = 0; d < D && ok; d++) {
      const char *sfx = d ? "_reverse" : "";
      int64_t fin = k == 0 ? input_size : D * hidden_size;
      char name[64];
      snprintf(name, sizeof name, "weight_ih_l%d%s", k, sfx);
      ok = loom_module_add_parameter(m, name, loom_empty(LOOM_SHAPE(GH, fin), LOOM_F32, loom_cpu())) != NULL;
      snprintf(name, sizeof name, "weight_hh_l%d%s", k, sfx);
      ok = ok && loom_module_add_parameter(m, name, loom_empty(LOOM_SHAPE(GH, hidden_size), LOOM_F32, loom_cpu()));
      if (cfg->bias) {
        snprintf(name, sizeof name, "bias_ih_l%d%s", k, sfx);
        ok = ok && loom_module_add_parameter(m, name, loom_empty(LOOM_SHAPE(GH), LOOM_F32, loom_cpu()));
        snprintf(name, sizeof name, "bias_hh_l%d%s", k, sfx);
        ok = ok && loom_module_add_parameter(m, name, loom_empty(LOOM_SHAPE(GH), LOOM_F32, loom_cpu()));
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
