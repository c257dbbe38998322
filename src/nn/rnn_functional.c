/* The functional multi-layer RNN / LSTM / GRU (loom_rnn): checks, layout
 * (batch_first, unbatched), layers, directions and dropout between layers.
 * Each direction of a layer projects its whole input sequence with one
 * matmul, then runs the recurrence: without lengths or projection as one
 * autograd node (nn_rnn_sequence), else step by step (nn_rnn_step). Dropout
 * between layers is loom_dropout's (the device's Philox generator). */
#include <stdio.h>
#include <stdlib.h>

#include "core/autograd_impl.h"
#include "loom/autograd.h"
#include "loom/ops.h"
#include "nn/rnn_impl.h"

/* One direction of one layer over seq [L, N, in]: returns [L, N, H] ([L, N,
 * proj] with w_hr); *h_last and *c_last (LSTM) receive the final states.
 * w = {w_ih, w_hh, b_ih, b_hh, w_hr}. valid (may be NULL): bool [L, N], false
 * past each sequence's length, where the state stays as it is and the output
 * is zero (pack_padded_sequence's semantics, the reverse direction starting
 * at each sequence's own end). */
static loom_tensor *run_direction(loom_rnn_mode mode, const loom_tensor *seq, loom_tensor *h, loom_tensor *c,
                                  loom_tensor *const *w, const loom_tensor *valid, bool reverse,
                                  loom_tensor **h_last, loom_tensor **c_last) {
  int64_t L = seq->shape.d[0], N = seq->shape.d[1], in = seq->shape.d[2];
  /* For RNN and LSTM both biases simply add: fold b_hh into the projection. */
  bool fold = mode != LOOM_RNN_GRU && w[3];
  loom_tensor *b = fold ? loom_add(w[2], w[3]) : w[2];
  loom_tensor *xp = nn_rnn_linear(loom_reshape(seq, LOOM_SHAPE(L * N, in)), w[0], b);
  if (!xp) return NULL;
  xp = loom_reshape(xp, LOOM_SHAPE(L, N, xp->shape.d[1]));
  /* without lengths or projection: one node for the whole recurrence (rnn_sequence.c) */
  const loom_tensor *b_hh = fold ? NULL : w[3];
  if (!valid && !w[4] && nn_rnn_sequence_applies(xp, h, c, w[1], b_hh))
    return nn_rnn_sequence(mode, xp, h, c, w[1], b_hh, reverse, h_last, c_last);
  loom_tensor **hs = calloc((size_t)L, sizeof *hs);
  if (!hs) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", nn_rnn_mode_name(mode));
    return NULL;
  }
  for (int64_t s = 0; s < L && h; s++) {
    int64_t t = reverse ? L - 1 - s : s;
    loom_tensor *cn = NULL;
    loom_scope_begin(); /* the step's temporaries go at once; autograd keeps what it saved */
    loom_tensor *hn = nn_rnn_step(mode, loom_select(xp, 0, t), h, c, w[1], w[3], fold, &cn);
    if (w[4]) hn = nn_rnn_linear(hn, w[4], NULL); /* LSTM projection: h = W_hr (o * tanh(c)) */
    loom_tensor *out = hn;
    if (valid) {
      loom_tensor *v = loom_reshape(loom_select(valid, 0, t), LOOM_SHAPE(N, 1));
      out = loom_where(v, hn, loom_zeros_like(hn));
      hn = loom_where(v, hn, h);
      if (cn) cn = loom_where(v, cn, c);
    }
    loom_keep(hn);
    loom_keep(cn);
    loom_keep(out);
    loom_scope_end();
    hs[t] = out;
    h = hn;
    c = cn;
  }
  loom_tensor *out = h ? loom_stack(hs, (int)L, 0) : NULL;
  free(hs);
  *h_last = h;
  *c_last = c;
  return out;
}

/* The lengths as a bool [L, N] of valid steps on x's device, or NULL + error. */
static loom_tensor *valid_steps(const char *layer, const loom_tensor *lengths, int64_t L, int64_t N,
                                loom_device dev) {
  if (lengths->shape.ndim != 1 || lengths->shape.d[0] != N ||
      (lengths->dtype != LOOM_I64 && lengths->dtype != LOOM_I32)) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected lengths of i64 (or i32) [N = %lld], got %s %s", layer,
                   (long long)N, loom_dtype_name(lengths->dtype), loom_shape_str(lengths->shape));
    return NULL;
  }
  loom_tensor *len = loom_to(lengths, dev, LOOM_I64);
  double lo = loom_item(loom_min_all(len)), hi = loom_item(loom_max_all(len));
  if (!(lo >= 1 && hi <= (double)L)) {
    core_set_error(LOOM_ERR_INVALID, "%s: every length must lie in [1, %lld] (the input's length), got %g to %g",
                   layer, (long long)L, lo, hi);
    return NULL;
  }
  loom_tensor *t = loom_reshape(loom_arange(0, (double)L, 1, LOOM_I64, dev), LOOM_SHAPE(L, 1));
  return loom_lt(t, loom_reshape(len, LOOM_SHAPE(1, N)));
}

/* Validates the arguments of loom_rnn (P = proj_size, 0 for none); sets *hidden. */
static bool check_args(const char *layer, loom_rnn_mode mode, const loom_tensor *x, const loom_tensor *h0,
                       const loom_tensor *c0, loom_tensor *const *weights, int K, int D, int64_t P,
                       bool batch_first, double dropout, int64_t *hidden) {
  if (mode < LOOM_RNN_TANH || mode > LOOM_RNN_GRU) {
    core_set_error(LOOM_ERR_INVALID, "RNN: unknown mode %d", (int)mode);
    return false;
  }
  if (K < 1 || !weights) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected num_layers >= 1 and a weights list, got %d layers%s", layer, K,
                   weights ? "" : " and no weights");
    return false;
  }
  if (!(dropout >= 0 && dropout <= 1)) {
    core_set_error(LOOM_ERR_INVALID, "%s: dropout must be in [0, 1], got %g", layer, dropout);
    return false;
  }
  if (P < 0 || (P > 0 && mode != LOOM_RNN_LSTM)) {
    core_set_error(LOOM_ERR_INVALID, "%s: proj_size (%lld) must be >= 0 and is for LSTM only", layer, (long long)P);
    return false;
  }
  if (!loom_dtype_is_float(x->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected a floating input, got dtype %s", layer, loom_dtype_name(x->dtype));
    return false;
  }
  int nd = x->shape.ndim;
  if ((nd != 2 && nd != 3) || loom_numel(x) == 0) {
    core_set_error(LOOM_ERR_INVALID,
                   "%s: expected a non-empty input [L, N, input_size] (or [L, input_size] unbatched), got %s", layer,
                   loom_shape_str(x->shape));
    return false;
  }
  int64_t in = x->shape.d[nd - 1];
  if (weights[0] && weights[0]->shape.ndim == 2 && weights[0]->shape.d[1] != in) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected input with %lld features (input_size), got %s", layer,
                   (long long)weights[0]->shape.d[1], loom_shape_str(x->shape));
    return false;
  }
  int64_t H = 0, per = P ? 5 : 4;
  for (int k = 0; k < K; k++)
    for (int d = 0; d < D; d++) {
      loom_tensor *const *w = weights + per * (k * D + d);
      int64_t Hk;
      char name[48];
      snprintf(name, sizeof name, "%s (layer %d%s)", layer, k, d ? ", reverse" : "");
      if (!nn_rnn_check_weights(name, mode, x, k == 0 ? in : D * (P ? P : H), P, w[0], w[1], w[2], w[3], &Hk))
        return false;
      if (k + d > 0 && Hk != H) {
        core_set_error(LOOM_ERR_INVALID, "%s: hidden size %lld differs from layer 0's %lld", name, (long long)Hk,
                       (long long)H);
        return false;
      }
      H = Hk;
      if (P && (!w[4] || w[4]->shape.ndim != 2 || w[4]->shape.d[0] != P || w[4]->shape.d[1] != H)) {
        if (!w[4]) core_null_error("%s: weight_hr is NULL", name);
        else
          core_set_error(LOOM_ERR_INVALID, "%s: expected weight_hr of shape [proj_size = %lld, hidden_size = %lld], "
                         "got %s", name, (long long)P, (long long)H, loom_shape_str(w[4]->shape));
        return false;
      }
      if (P && !nn_rnn_check_like(name, "weight_hr", w[4], x)) return false;
    }
  if (c0 && mode != LOOM_RNN_LSTM) {
    core_set_error(LOOM_ERR_INVALID, "%s: c0 is for LSTM only", layer);
    return false;
  }
  int64_t N = nd == 3 ? x->shape.d[batch_first ? 0 : 1] : 1;
  const loom_tensor *st[2] = {h0, c0};
  for (int i = 0; i < 2; i++) {
    if (!st[i]) continue;
    const char *what = i ? "c0" : "h0";
    int64_t S = i == 0 && P ? P : H; /* with a projection h0 holds proj_size features */
    loom_shape want = nd == 3 ? LOOM_SHAPE((int64_t)K * D, N, S) : LOOM_SHAPE((int64_t)K * D, S);
    if (!loom_shape_equal(st[i]->shape, want)) {
      char ws[64];
      snprintf(ws, sizeof ws, "%s", loom_shape_str(want));
      core_set_error(LOOM_ERR_INVALID, "%s: expected %s of shape %s (num_layers * num_directions, %s%s), got %s",
                     layer, what, ws, nd == 3 ? "N, " : "", i == 0 && P ? "proj_size" : "hidden_size",
                     loom_shape_str(st[i]->shape));
      return false;
    }
    if (!nn_rnn_check_like(layer, what, st[i], x)) return false;
  }
  *hidden = H;
  return true;
}

loom_tensor *loom_rnn(loom_rnn_mode mode, const loom_tensor *x, const loom_tensor *h0, const loom_tensor *c0,
                      loom_tensor *const *weights, const loom_rnn_args *args, loom_tensor **h_n, loom_tensor **c_n) {
  static const loom_rnn_args none;
  const char *layer = nn_rnn_mode_name(mode);
  if (h_n) *h_n = NULL;
  if (c_n) *c_n = NULL;
  CORE_CHECK_NULL1(layer, x);
  if (!args) args = &none;
  int K = args->num_layers ? args->num_layers : 1, D = args->bidirectional ? 2 : 1;
  int64_t H, P = args->proj_size;
  bool batch_first = args->batch_first;
  if (!check_args(layer, mode, x, h0, c0, weights, K, D, P, batch_first, args->dropout, &H)) return NULL;
  bool batched = x->shape.ndim == 3, lstm = mode == LOOM_RNN_LSTM;
  loom_tensor *finals[2 * 2 * 64];
  if (K * D > 64) {
    core_set_error(LOOM_ERR_INVALID, "%s: at most 64 layers x directions, got %d", layer, K * D);
    return NULL;
  }
  loom_scope_begin();
  loom_tensor *seq = !batched ? loom_unsqueeze(x, 1) : batch_first ? loom_transpose(x, 0, 1) : (loom_tensor *)x;
  int64_t L = seq->shape.d[0], N = seq->shape.d[1], per = P ? 5 : 4;
  loom_tensor *valid = args->lengths ? valid_steps(layer, args->lengths, L, N, loom_device_of(x)) : NULL;
  if (args->lengths && !valid) seq = NULL;
  loom_shape hst = LOOM_SHAPE((int64_t)K * D, N, P ? P : H), cst = LOOM_SHAPE((int64_t)K * D, N, H);
  loom_tensor *hs0 = !seq ? NULL
                     : h0 ? (batched ? (loom_tensor *)h0 : loom_unsqueeze(h0, 1))
                          : loom_zeros(hst, x->dtype, loom_device_of(x));
  loom_tensor *cs0 = !lstm || !seq ? NULL
                     : c0          ? (batched ? (loom_tensor *)c0 : loom_unsqueeze(c0, 1))
                                   : loom_zeros(cst, x->dtype, loom_device_of(x));
  loom_tensor **hf = finals, **cf = finals + K * D;
  for (int k = 0; k < K && seq; k++) {
    loom_tensor *outs[2] = {NULL, NULL};
    for (int d = 0; d < D; d++) {
      int idx = k * D + d;
      loom_tensor *w[5] = {NULL};
      for (int j = 0; j < per; j++) w[j] = weights[per * idx + j];
      outs[d] = run_direction(mode, seq, loom_select(hs0, 0, idx), lstm ? loom_select(cs0, 0, idx) : NULL, w, valid,
                              d == 1, &hf[idx], &cf[idx]);
    }
    seq = D == 2 ? (outs[0] && outs[1] ? loom_cat(outs, 2, 2) : NULL) : outs[0];
    if (seq && args->training && args->dropout > 0 && k < K - 1) seq = loom_dropout(seq, args->dropout, true);
  }
  loom_tensor *out = NULL, *hn = NULL, *cn = NULL;
  if (seq) {
    out = !batched ? loom_squeeze(seq, 1) : batch_first ? loom_transpose(seq, 0, 1) : seq;
    hn = loom_stack(hf, K * D, 0);
    if (lstm) cn = loom_stack(cf, K * D, 0);
    if (!batched) {
      hn = loom_squeeze(hn, 1);
      if (lstm) cn = loom_squeeze(cn, 1);
    }
    if (!hn || (lstm && !cn)) out = NULL;
  }
  loom_keep(out);
  if (out && h_n) *h_n = loom_keep(hn);
  if (out && c_n) *c_n = loom_keep(cn);
  loom_scope_end();
  return out;
}
