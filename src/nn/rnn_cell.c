/* RNNCell, LSTMCell and GRUCell modules (weight_ih, weight_hh, bias_ih,
 * bias_hh), forward through the functional cells in rnn_cell_ops.c. */
#include <math.h>
#include <stdlib.h>

#include "core/autograd_impl.h"
#include "loom/nn_init.h"
#include "nn/module_impl.h"
#include "nn/rnn_impl.h"

/* The parameters in registration order; biases NULL without bias. */
static void cell_params(const loom_module *m, loom_tensor **w) {
  for (int i = 0; i < 4; i++) w[i] = i < m->n_params ? m->params[i].t : NULL;
}

static loom_tensor *run_cell(loom_module *m, const loom_tensor *x, const loom_tensor *h, const loom_tensor *c,
                             loom_tensor **c1) {
  const loom_rnn_cell_config *cfg = loom_module_state(m);
  loom_tensor *w[4];
  cell_params(m, w);
  switch (cfg->mode) {
  case LOOM_RNN_TANH: return loom_rnn_tanh_cell(x, h, w[0], w[1], w[2], w[3]);
  case LOOM_RNN_RELU: return loom_rnn_relu_cell(x, h, w[0], w[1], w[2], w[3]);
  case LOOM_RNN_GRU: return loom_gru_cell(x, h, w[0], w[1], w[2], w[3]);
  case LOOM_RNN_LSTM: break;
  }
  return loom_lstm_cell(x, h, c, w[0], w[1], w[2], w[3], c1);
}

/* loom_lstm_cell_forward passes its c1 destination to cell_forward through
 * this, so that the call still goes through loom_forward_n (and its forward
 * hook, used by summaries), as loom_rnn_forward does. */
static _Thread_local loom_tensor **pending_c1;

static loom_tensor *cell_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  loom_tensor **c1_dst = pending_c1;
  pending_c1 = NULL;
  const loom_rnn_cell_config *cfg = loom_module_state(m);
  bool lstm = cfg->mode == LOOM_RNN_LSTM;
  if (n_in < 1 || n_in > (lstm ? 3 : 2) || (lstm && n_in == 2)) {
    core_set_error(LOOM_ERR_INVALID, "%s: forward takes (input%s), got %d tensors", loom_module_type(m),
                   lstm ? "[, h, c]" : "[, h]", n_in);
    return NULL;
  }
  if (!lstm) return run_cell(m, in[0], n_in > 1 ? in[1] : NULL, NULL, NULL);
  loom_scope_begin();
  loom_tensor *c1 = NULL;
  loom_tensor *h1 = loom_keep(run_cell(m, in[0], n_in > 1 ? in[1] : NULL, n_in > 2 ? in[2] : NULL, &c1));
  if (h1 && c1_dst) *c1_dst = loom_keep(c1);
  loom_scope_end();
  return h1;
}

static int64_t cell_macs(const loom_module *m, loom_tensor *const *in, int n_in, const loom_tensor *out) {
  const loom_rnn_cell_config *cfg = loom_module_state(m);
  if (n_in < 1 || !in[0]) return 0;
  int64_t N = loom_ndim(in[0]) == 2 ? loom_size(in[0], 0) : 1;
  return N * nn_rnn_gates(cfg->mode) * cfg->hidden_size * (cfg->input_size + cfg->hidden_size);
}

static void cell_reset(loom_module *m) {
  const loom_rnn_cell_config *cfg = loom_module_state(m);
  double k = 1.0 / sqrt((double)cfg->hidden_size);
  for (int i = 0; i < m->n_params; i++) loom_init_uniform_(m->params[i].t, -k, k);
}

static const loom_module_kind rnn_cell_kind = {"RNNCell", cell_forward, NULL, cell_macs, cell_reset};
static const loom_module_kind lstm_cell_kind = {"LSTMCell", cell_forward, NULL, cell_macs, cell_reset};
static const loom_module_kind gru_cell_kind = {"GRUCell", cell_forward, NULL, cell_macs, cell_reset};

int loom_lstm_cell_forward(loom_module *m, const loom_tensor *x, const loom_tensor *h, const loom_tensor *c,
                           loom_tensor **h1, loom_tensor **c1) {
  if (h1) *h1 = NULL;
  if (c1) *c1 = NULL;
  if (!m) return core_null_error("lstm_cell_forward: module is NULL");
  if (loom_module_kind_of(m) != &lstm_cell_kind)
    return core_set_error(LOOM_ERR_INVALID, "lstm_cell_forward: expected an LSTMCell, got %s", loom_module_type(m));
  if (!h1 || !c1) return core_set_error(LOOM_ERR_INVALID, "LSTMCell: h1 and c1 must not be NULL");
  if (!x) return core_null_error("LSTMCell: input is NULL");
  if ((h == NULL) != (c == NULL)) return core_set_error(LOOM_ERR_INVALID, "LSTMCell: give both h and c or neither");
  loom_tensor *in[3] = {(loom_tensor *)x, (loom_tensor *)h, (loom_tensor *)c};
  pending_c1 = c1;
  loom_tensor *out = loom_forward_n(m, in, h ? 3 : 1);
  pending_c1 = NULL;
  if (!out) {
    *c1 = NULL;
    return loom_last_status();
  }
  *h1 = out;
  return LOOM_OK;
}

static loom_module *make(loom_rnn_mode mode, const loom_module_kind *kind, int64_t input_size,
                         int64_t hidden_size, const loom_rnn_cell_options *opts) {
  loom_rnn_cell_options o = opts ? *opts : (loom_rnn_cell_options){0};
  if (input_size <= 0 || hidden_size <= 0) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected input_size > 0 and hidden_size > 0, got %lld and %lld",
                   kind->type, (long long)input_size, (long long)hidden_size);
    return NULL;
  }
  if (o.relu && mode != LOOM_RNN_TANH) {
    core_set_error(LOOM_ERR_INVALID, "%s: the relu nonlinearity is for RNNCell only", kind->type);
    return NULL;
  }
  loom_rnn_cell_config *cfg = malloc(sizeof *cfg);
  if (!cfg) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", kind->type);
    return NULL;
  }
  *cfg = (loom_rnn_cell_config){o.relu ? LOOM_RNN_RELU : mode, input_size, hidden_size, !o.no_bias};
  loom_module *m = loom_module_new(kind, cfg);
  if (!m) {
    free(cfg);
    return NULL;
  }
  int64_t GH = nn_rnn_gates(mode) * hidden_size;
  loom_scope_begin();
  bool ok = loom_module_add_parameter(m, "weight_ih", loom_empty(LOOM_SHAPE(GH, input_size), LOOM_F32, loom_cpu())) &&
            loom_module_add_parameter(m, "weight_hh", loom_empty(LOOM_SHAPE(GH, hidden_size), LOOM_F32, loom_cpu()));
  if (ok && cfg->bias)
    ok = loom_module_add_parameter(m, "bias_ih", loom_empty(LOOM_SHAPE(GH), LOOM_F32, loom_cpu())) &&
         loom_module_add_parameter(m, "bias_hh", loom_empty(LOOM_SHAPE(GH), LOOM_F32, loom_cpu()));
  loom_scope_end();
  if (!ok) {
    loom_module_free(m);
    return NULL;
  }
  cell_reset(m);
  return m;
}

loom_module *loom_nn_rnn_cell(int64_t input_size, int64_t hidden_size, const loom_rnn_cell_options *opts) {
  return make(LOOM_RNN_TANH, &rnn_cell_kind, input_size, hidden_size, opts);
}

loom_module *loom_nn_lstm_cell(int64_t input_size, int64_t hidden_size, const loom_rnn_cell_options *opts) {
  return make(LOOM_RNN_LSTM, &lstm_cell_kind, input_size, hidden_size, opts);
}

loom_module *loom_nn_gru_cell(int64_t input_size, int64_t hidden_size, const loom_rnn_cell_options *opts) {
  return make(LOOM_RNN_GRU, &gru_cell_kind, input_size, hidden_size, opts);
}
