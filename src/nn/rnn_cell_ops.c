/* Functional recurrent cells (RNN tanh / relu, LSTM, GRU), composed from
 * core ops so that every device runs them and autograd comes for free.
 * The step functions here are shared with the sequence code in
 * rnn_functional.c: there the input projection x W_ih^T + b_ih of the whole
 * sequence is one matmul, and a step only adds h W_hh^T. */
#include "nn/rnn_impl.h"

#include <stdio.h>

#include "core/autograd_impl.h"
#include "loom/autograd.h"
#include "loom/ops.h"

const char *nn_rnn_mode_name(loom_rnn_mode mode) {
  switch (mode) {
  case LOOM_RNN_TANH:
  case LOOM_RNN_RELU: return "RNN";
  case LOOM_RNN_LSTM: return "LSTM";
  case LOOM_RNN_GRU: return "GRU";
  }
  return "RNN";
}

int nn_rnn_gates(loom_rnn_mode mode) {
  return mode == LOOM_RNN_LSTM ? 4 : mode == LOOM_RNN_GRU ? 3 : 1;
}

/* x @ w^T (+ b): x [N, in], w [out, in], b [out] or NULL. */
loom_tensor *nn_rnn_linear(const loom_tensor *x, const loom_tensor *w, const loom_tensor *b) {
  loom_tensor *y = loom_matmul(x, loom_transpose(w, 0, 1));
  return b ? loom_add(y, b) : y;
}

loom_tensor *nn_rnn_step(loom_rnn_mode mode, const loom_tensor *xp, const loom_tensor *h, const loom_tensor *c,
                         const loom_tensor *w_hh, const loom_tensor *b_hh, bool b_hh_folded, loom_tensor **c1) {
  if (mode == LOOM_RNN_GRU) {
    /* b_hh stays inside hp: the n gate needs r * (W_hn h + b_hn). */
    loom_tensor *hp = nn_rnn_linear(h, w_hh, b_hh);
    loom_tensor *xs[3], *hs[3];
    if (loom_chunk(xp, 3, 1, xs, 3) != 3 || loom_chunk(hp, 3, 1, hs, 3) != 3) return NULL;
    loom_tensor *r = loom_sigmoid(loom_add(xs[0], hs[0]));
    loom_tensor *z = loom_sigmoid(loom_add(xs[1], hs[1]));
    loom_tensor *n = loom_tanh(loom_add(xs[2], loom_mul(r, hs[2])));
    /* (1 - z) * n + z * h = n + z * (h - n) */
    return loom_add(n, loom_mul(z, loom_sub(h, n)));
  }
  loom_tensor *g = loom_add(xp, nn_rnn_linear(h, w_hh, b_hh_folded ? NULL : b_hh));
  if (mode == LOOM_RNN_TANH) return loom_tanh(g);
  if (mode == LOOM_RNN_RELU) return loom_relu(g);
  /* LSTM: gate activations, c' and h' in one fused kernel */
  return loom_lstm_gates(g, c, c1);
}

/* Checks that t is a float tensor with x's dtype and device (t names the
 * argument in the error). */
bool nn_rnn_check_like(const char *layer, const char *what, const loom_tensor *t, const loom_tensor *x) {
  if (t->dtype != x->dtype) {
    core_set_error(LOOM_ERR_INVALID, "%s: %s has dtype %s but the input has dtype %s", layer, what,
                   loom_dtype_name(t->dtype), loom_dtype_name(x->dtype));
    return false;
  }
  if (!loom_device_equal(loom_device_of(t), loom_device_of(x))) {
    char dt[32];
    snprintf(dt, sizeof dt, "%s", loom_device_name(loom_device_of(t)));
    core_set_error(LOOM_ERR_INVALID, "%s: %s is on %s but the input is on %s", layer, what, dt,
                   loom_device_name(loom_device_of(x)));
    return false;
  }
  return true;
}

/* Checks w_ih [G*H, in], w_hh [G*H, H] ([G*H, proj] with an LSTM projection),
 * biases [G*H] (both or neither) and their dtype / device against x. Sets *hidden. */
bool nn_rnn_check_weights(const char *layer, loom_rnn_mode mode, const loom_tensor *x, int64_t in, int64_t proj,
                          const loom_tensor *w_ih, const loom_tensor *w_hh, const loom_tensor *b_ih,
                          const loom_tensor *b_hh, int64_t *hidden) {
  if (!w_ih || !w_hh) {
    core_null_error("%s: %s is NULL", layer, w_ih ? "weight_hh" : "weight_ih");
    return false;
  }
  if ((b_ih == NULL) != (b_hh == NULL)) {
    core_set_error(LOOM_ERR_INVALID, "%s: bias_ih and bias_hh must be both given or both NULL", layer);
    return false;
  }
  int G = nn_rnn_gates(mode);
  bool hh_ok = w_hh->shape.ndim == 2 && (proj ? w_hh->shape.d[1] == proj && w_hh->shape.d[0] % G == 0
                                              : w_hh->shape.d[0] == G * w_hh->shape.d[1]);
  if (!hh_ok) {
    if (proj)
      core_set_error(LOOM_ERR_INVALID, "%s: expected weight_hh of shape [%d * hidden_size, proj_size = %lld], got %s",
                     layer, G, (long long)proj, loom_shape_str(w_hh->shape));
    else
      core_set_error(LOOM_ERR_INVALID, "%s: expected weight_hh of shape [%d * hidden_size, hidden_size], got %s",
                     layer, G, loom_shape_str(w_hh->shape));
    return false;
  }
  int64_t H = proj ? w_hh->shape.d[0] / G : w_hh->shape.d[1];
  if (w_ih->shape.ndim != 2 || w_ih->shape.d[0] != G * H || w_ih->shape.d[1] != in) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected weight_ih of shape [%lld, %lld], got %s", layer,
                   (long long)(G * H), (long long)in, loom_shape_str(w_ih->shape));
    return false;
  }
  const loom_tensor *bs[2] = {b_ih, b_hh};
  for (int k = 0; k < 2; k++)
    if (bs[k] && (bs[k]->shape.ndim != 1 || bs[k]->shape.d[0] != G * H)) {
      core_set_error(LOOM_ERR_INVALID, "%s: expected %s of shape [%lld], got %s", layer, k ? "bias_hh" : "bias_ih",
                     (long long)(G * H), loom_shape_str(bs[k]->shape));
      return false;
    }
  if (!nn_rnn_check_like(layer, "weight_ih", w_ih, x) || !nn_rnn_check_like(layer, "weight_hh", w_hh, x) ||
      (b_ih && !nn_rnn_check_like(layer, "bias_ih", b_ih, x)) ||
      (b_hh && !nn_rnn_check_like(layer, "bias_hh", b_hh, x)))
    return false;
  *hidden = H;
  return true;
}

/* A state argument of a cell: shape [N, H] (batched) or [H]; NULL = zeros. */
static loom_tensor *cell_state(const char *layer, const char *what, const loom_tensor *s, const loom_tensor *x,
                               bool batched, int64_t N, int64_t H) {
  if (!s) return loom_zeros(LOOM_SHAPE(N, H), x->dtype, loom_device_of(x));
  loom_shape want = batched ? LOOM_SHAPE(N, H) : LOOM_SHAPE(H);
  if (!loom_shape_equal(s->shape, want)) {
    char ws[64];
    snprintf(ws, sizeof ws, "%s", loom_shape_str(want));
    core_set_error(LOOM_ERR_INVALID, "%s: expected %s of shape %s, got %s", layer, what, ws, loom_shape_str(s->shape));
    return NULL;
  }
  if (!nn_rnn_check_like(layer, what, s, x)) return NULL;
  return batched ? (loom_tensor *)s : loom_unsqueeze(s, 0);
}

static const char *cell_name(loom_rnn_mode mode) {
  return mode == LOOM_RNN_LSTM ? "LSTMCell" : mode == LOOM_RNN_GRU ? "GRUCell" : "RNNCell";
}

/* The shared body of the functional cells. Returns h1 and, for LSTM, *c1. */
static loom_tensor *cell(loom_rnn_mode mode, const loom_tensor *x, const loom_tensor *h, const loom_tensor *c,
                         const loom_tensor *w_ih, const loom_tensor *w_hh, const loom_tensor *b_ih,
                         const loom_tensor *b_hh, loom_tensor **c1) {
  const char *layer = cell_name(mode);
  if (c1) *c1 = NULL;
  CORE_CHECK_NULL1(layer, x);
  if (!loom_dtype_is_float(x->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected a floating input, got dtype %s", layer, loom_dtype_name(x->dtype));
    return NULL;
  }
  if (x->shape.ndim != 1 && x->shape.ndim != 2) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected input [N, input_size] or [input_size], got %s", layer,
                   loom_shape_str(x->shape));
    return NULL;
  }
  bool batched = x->shape.ndim == 2;
  int64_t in = x->shape.d[x->shape.ndim - 1], N = batched ? x->shape.d[0] : 1, H;
  if (w_ih && w_ih->shape.ndim == 2 && w_ih->shape.d[1] != in) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected input with %lld features (input_size), got %s", layer,
                   (long long)w_ih->shape.d[1], loom_shape_str(x->shape));
    return NULL;
  }
  if (!nn_rnn_check_weights(layer, mode, x, in, 0, w_ih, w_hh, b_ih, b_hh, &H)) return NULL;
  loom_scope_begin();
  loom_tensor *x2 = batched ? (loom_tensor *)x : loom_unsqueeze(x, 0);
  loom_tensor *h2 = cell_state(layer, "hx", h, x, batched, N, H);
  loom_tensor *c2 = NULL, *cn = NULL, *out = NULL;
  if (h2 && mode == LOOM_RNN_LSTM) c2 = cell_state(layer, "cx", c, x, batched, N, H);
  if (h2 && (mode != LOOM_RNN_LSTM || c2)) {
    loom_tensor *xp = nn_rnn_linear(x2, w_ih, b_ih);
    out = nn_rnn_step(mode, xp, h2, c2, w_hh, b_hh, false, &cn);
    if (!batched) {
      out = loom_squeeze(out, 0);
      if (cn) cn = loom_squeeze(cn, 0);
    }
    if (mode == LOOM_RNN_LSTM && !cn) out = NULL;
  }
  loom_keep(out);
  if (out && c1) *c1 = loom_keep(cn);
  loom_scope_end();
  return out;
}

loom_tensor *loom_rnn_tanh_cell(const loom_tensor *x, const loom_tensor *h, const loom_tensor *w_ih,
                                const loom_tensor *w_hh, const loom_tensor *b_ih, const loom_tensor *b_hh) {
  return cell(LOOM_RNN_TANH, x, h, NULL, w_ih, w_hh, b_ih, b_hh, NULL);
}

loom_tensor *loom_rnn_relu_cell(const loom_tensor *x, const loom_tensor *h, const loom_tensor *w_ih,
                                const loom_tensor *w_hh, const loom_tensor *b_ih, const loom_tensor *b_hh) {
  return cell(LOOM_RNN_RELU, x, h, NULL, w_ih, w_hh, b_ih, b_hh, NULL);
}

loom_tensor *loom_gru_cell(const loom_tensor *x, const loom_tensor *h, const loom_tensor *w_ih,
                           const loom_tensor *w_hh, const loom_tensor *b_ih, const loom_tensor *b_hh) {
  return cell(LOOM_RNN_GRU, x, h, NULL, w_ih, w_hh, b_ih, b_hh, NULL);
}

loom_tensor *loom_lstm_cell(const loom_tensor *x, const loom_tensor *h, const loom_tensor *c,
                            const loom_tensor *w_ih, const loom_tensor *w_hh, const loom_tensor *b_ih,
                            const loom_tensor *b_hh, loom_tensor **c1) {
  if (!c1) {
    core_set_error(LOOM_ERR_INVALID, "LSTMCell: c1 (the new cell state's destination) is NULL");
    return NULL;
  }
  return cell(LOOM_RNN_LSTM, x, h, c, w_ih, w_hh, b_ih, b_hh, c1);
}
