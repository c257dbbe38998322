/* The recurrence of one direction of one layer (RNN, LSTM or GRU) as ONE
 * autograd node, so that its forward and backward cost is linear in the
 * sequence length L. (Step by step under autograd, each step took a select
 * of the projected sequence, whose backward pads one step's gradient to the
 * whole sequence: quadratic; and recorded a dozen nodes per step.)
 *
 * Inputs: xp [L, N, G*H] (x W_ih^T + b_ih, plus b_hh for RNN and LSTM: one
 * matmul recorded by the caller), h0 [N, H], c0 [N, H] (LSTM), w_hh [G*H, H]
 * and b_hh [G*H] (GRU, whose n gate needs r * (W_hn h + b_hn)).
 * Output: the state buffer Z [L + 1, S, N, H] (S = 2 for LSTM: h then c,
 * else 1), in time order: forward, row 0 holds the initial state and row
 * t + 1 the state after step t; reverse, row L holds the initial state and
 * row t the state after step t. The caller gets views of Z (the outputs, the
 * final state); their backward pads to Z's size only a few times.
 *
 * Forward, per step, untracked, with kernels writing into the big buffers:
 *   LSTM  G[t] = xp[t] + h W_hh^T (add kernel), lstm_pointwise -> Z[row]
 *   RNN   tanh / relu kernel of xp[t] + h W_hh^T -> Z[row]
 *   GRU   P[t] = h W_hh^T + b_hh; r, z, n and h' = n + z (h - n) -> Z[row]
 * saving Z, w_hh and (LSTM) the pre-activations G or (GRU) P and xp.
 * Backward walks the steps in reverse, writing d xp[t] into ONE [L, N, G*H]
 * buffer and carrying the state's gradient: dh of the previous row = its
 * output gradient + d(h W_hh^T)[t] W_hh (+ z dh' for GRU); finally
 * d W_hh = dP^T H_prev is one GEMM over all L * N rows (dP = d xp but for
 * GRU's n gate), d b_hh one sum, d h0 and d c0 the last carried state. */
#include <stdio.h>

#include "core/autocast.h"
#include "core/autograd_impl.h"
#include "loom/autograd.h"
#include "loom/ops.h"
#include "nn/rnn_impl.h"

/* Rows of Z (see above) for step time t: the state it reads and the one it writes. */
static int64_t row_prev(bool reverse, int64_t t) { return reverse ? t + 1 : t; }
static int64_t row_new(bool reverse, int64_t t) { return reverse ? t : t + 1; }

/* Runs one kernel op writing out (contiguous): in = a (, b) of out's shape, any strides. */
static bool launch_into(core_op op, loom_tensor *out, const loom_tensor *a, const loom_tensor *b) {
  if (!out || !a || (core_ops[op].n_in > 1 && !b)) return false;
  core_kctx k = {op, core_ops[op].n_in, 1, {(loom_tensor *)a, (loom_tensor *)b}, {out}, {{0}, {0}}, NULL};
  return core_launch(&k) == LOOM_OK;
}

/* lstm_pointwise (see src/core/ops_rnn.def): (gates [N, 4H], c [N, H]) -> out [2, N, H]. */
static bool lstm_pointwise_into(loom_tensor *out, const loom_tensor *gates, const loom_tensor *c) {
  if (!out || !gates || !c) return false;
  int64_t N = c->shape.d[0], H = c->shape.d[1];
  core_kctx k = {CORE_OP_lstm_pointwise, 2, 1, {(loom_tensor *)gates, (loom_tensor *)c}, {out}, {{N, H}, {0}}, NULL};
  return core_launch(&k) == LOOM_OK;
}

/* lstm_pointwise_backward: (gates, c, grad [2, N, H] of (h', c')) -> dgates [N, 4H], dc [N, H]. */
static bool lstm_pointwise_backward_into(loom_tensor *dgates, loom_tensor *dc, const loom_tensor *gates,
                                         const loom_tensor *c, const loom_tensor *grad) {
  if (!dgates || !dc || !gates || !c || !grad) return false;
  int64_t N = c->shape.d[0], H = c->shape.d[1];
  core_kctx k = {CORE_OP_lstm_pointwise_backward, 3, 2, {(loom_tensor *)gates, (loom_tensor *)c, (loom_tensor *)grad},
                 {dgates, dc}, {{N, H}, {0}}, NULL};
  return core_launch(&k) == LOOM_OK;
}

static bool copy_into(loom_tensor *dst, const loom_tensor *src) {
  return dst && src && loom_copy_(dst, src) == LOOM_OK;
}

/* Z[r, k] ([N, H]; k = 0 for h, 1 for c) or Z[r] ([S, N, H]) for k < 0. */
static loom_tensor *zrow(const loom_tensor *z, int64_t r, int k) {
  loom_tensor *row = loom_select(z, 0, r);
  return k < 0 ? row : loom_select(row, 0, k);
}

/* Gate k of [N, G*H]: [N, H]. */
static loom_tensor *gate(const loom_tensor *t, int k, int64_t H) { return loom_narrow(t, 1, k * H, H); }

/* The GRU gates from xp[t] and P[t] = h W_hh^T + b_hh. */
static void gru_gates(const loom_tensor *xt, const loom_tensor *pt, int64_t H, loom_tensor **r, loom_tensor **z,
                      loom_tensor **n) {
  *r = loom_sigmoid(loom_add(gate(xt, 0, H), gate(pt, 0, H)));
  *z = loom_sigmoid(loom_add(gate(xt, 1, H), gate(pt, 1, H)));
  *n = loom_tanh(loom_add(gate(xt, 2, H), loom_mul(*r, gate(pt, 2, H))));
}

/* One forward step. sv: the step's slot of the saved buffer (G[t] for LSTM,
 * P[t] for GRU) or a temporary; out: Z[row_new] [S, N, H]. */
static bool step_forward(loom_rnn_mode mode, const loom_tensor *xt, const loom_tensor *h, const loom_tensor *c,
                         const loom_tensor *wt, const loom_tensor *b_hh, loom_tensor *sv, loom_tensor *out) {
  int64_t H = h->shape.d[1];
  loom_tensor *hp = loom_matmul(h, wt);
  switch (mode) {
  case LOOM_RNN_LSTM: return launch_into(CORE_OP_add, sv, xt, hp) && lstm_pointwise_into(out, sv, c);
  case LOOM_RNN_TANH:
  case LOOM_RNN_RELU:
    return launch_into(mode == LOOM_RNN_TANH ? CORE_OP_tanh : CORE_OP_relu, loom_select(out, 0, 0),
                       loom_add(xt, hp), NULL);
  case LOOM_RNN_GRU: {
    bool ok = b_hh ? launch_into(CORE_OP_add, sv, hp, loom_expand(b_hh, sv->shape)) : copy_into(sv, hp);
    loom_tensor *r, *z, *n;
    if (!ok) return false;
    gru_gates(xt, sv, H, &r, &z, &n);
    return launch_into(CORE_OP_add, loom_select(out, 0, 0), n, loom_mul(z, loom_sub(h, n)));
  }
  }
  return false;
}

/* One backward step: cur [S, N, H] is the gradient of the state the step
 * wrote (from the outputs and the later steps); writes d xp[t] into dx, for
 * GRU d P[t] into dp, and the previous state's gradient into next [S, N, H]
 * (gprev: that row's gradient from outside). */
static bool step_backward(loom_rnn_mode mode, const loom_tensor *const *saved, int64_t t, bool reverse,
                          const loom_tensor *cur, const loom_tensor *gprev, loom_tensor *dx, loom_tensor *dp,
                          loom_tensor *next) {
  const loom_tensor *z = saved[0], *w_hh = saved[1];
  int64_t H = z->shape.d[3], rp = row_prev(reverse, t);
  loom_tensor *dh = loom_select(cur, 0, 0), *pre = NULL;
  switch (mode) {
  case LOOM_RNN_LSTM:
    /* the c rows of Z other than the final state get no gradient from outside
     * (only the final state and the outputs are viewed), so dc goes straight to next */
    if (!lstm_pointwise_backward_into(dx, loom_select(next, 0, 1), loom_select(saved[2], 0, t), zrow(z, rp, 1), cur))
      return false;
    pre = dx;
    break;
  case LOOM_RNN_TANH: {
    loom_tensor *y = zrow(z, row_new(reverse, t), 0);
    if (!copy_into(dx, loom_mul(dh, loom_add_scalar(loom_neg(loom_mul(y, y)), 1)))) return false;
    pre = dx;
    break;
  }
  case LOOM_RNN_RELU: {
    loom_tensor *y = zrow(z, row_new(reverse, t), 0), *zero = loom_zeros_like(dh);
    if (!copy_into(dx, loom_where(loom_gt(y, zero), dh, zero))) return false;
    pre = dx;
    break;
  }
  case LOOM_RNN_GRU: {
    loom_tensor *xt = loom_select(saved[3], 0, t), *pt = loom_select(saved[2], 0, t), *r, *zg, *n;
    gru_gates(xt, pt, H, &r, &zg, &n);
    loom_tensor *hprev = zrow(z, rp, 0);
    loom_tensor *dn = loom_sub(dh, loom_mul(dh, zg));                                 /* dh (1 - z) */
    loom_tensor *dan = loom_mul(dn, loom_add_scalar(loom_neg(loom_mul(n, n)), 1));    /* through tanh */
    loom_tensor *dar = loom_mul(loom_mul(dan, gate(pt, 2, H)), loom_mul(r, loom_add_scalar(loom_neg(r), 1)));
    loom_tensor *daz = loom_mul(loom_mul(dh, loom_sub(hprev, n)), loom_mul(zg, loom_add_scalar(loom_neg(zg), 1)));
    if (!copy_into(gate(dx, 0, H), dar) || !copy_into(gate(dx, 1, H), daz) || !copy_into(gate(dx, 2, H), dan) ||
        !copy_into(gate(dp, 0, H), dar) || !copy_into(gate(dp, 1, H), daz) ||
        !copy_into(gate(dp, 2, H), loom_mul(dan, r)))
      return false;
    /* dh of the previous row also has the direct term z dh' */
    gprev = loom_add(gprev, loom_mul(dh, zg));
    pre = dp;
    break;
  }
  }
  return launch_into(CORE_OP_add, loom_select(next, 0, 0), gprev, loom_matmul(pre, w_hh));
}

static void rnn_sequence_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *z = n->saved[0];
  bool reverse = n->a.i[0] != 0;
  loom_rnn_mode mode = (loom_rnn_mode)n->a.i[1];
  int64_t L = z->shape.d[0] - 1, S = z->shape.d[1], N = z->shape.d[2], H = z->shape.d[3];
  int64_t GH = (int64_t)nn_rnn_gates(mode) * H;
  loom_device dev = z->storage->device;
  loom_tensor *gz = loom_contiguous(g);
  loom_tensor *dx = core_new(LOOM_SHAPE(L, N, GH), z->dtype, dev);
  loom_tensor *dp = mode == LOOM_RNN_GRU ? core_new(LOOM_SHAPE(L, N, GH), z->dtype, dev) : dx;
  if (!gz || !dx || !dp) return;
  /* cur: the gradient of the state written by the step under way (owned) */
  loom_tensor *cur = loom_retain(zrow(gz, reverse ? 0 : L, -1));
  bool ok = cur != NULL;
  for (int64_t s = L - 1; s >= 0 && ok; s--) {
    int64_t t = reverse ? L - 1 - s : s;
    loom_scope_begin(); /* the step's temporaries go at once */
    loom_tensor *next = core_new(LOOM_SHAPE(S, N, H), z->dtype, dev);
    ok = next && step_backward(mode, (const loom_tensor *const *)n->saved, t, reverse, cur,
                               zrow(gz, row_prev(reverse, t), 0), loom_select(dx, 0, t), loom_select(dp, 0, t), next);
    loom_keep(next);
    loom_scope_end();
    core_untrack(next);
    loom_release(cur);
    cur = next;
  }
  if (ok) {
    if (core_needs(n, 0)) gin[0] = dx;
    if (core_needs(n, 1)) gin[1] = loom_select(cur, 0, 0);
    if (core_needs(n, 2)) gin[2] = loom_select(cur, 0, 1);
    loom_tensor *dp2 = loom_reshape(dp, LOOM_SHAPE(L * N, GH));
    if (core_needs(n, 3)) {
      /* H_prev: the h each step read, in time order, as one [L * N, H] matrix */
      loom_tensor *hp = loom_select(loom_narrow(z, 0, reverse ? 1 : 0, L), 1, 0);
      hp = loom_reshape(loom_contiguous(hp), LOOM_SHAPE(L * N, H));
      gin[3] = loom_matmul(loom_transpose(dp2, 0, 1), hp);
    }
    if (core_needs(n, 4)) gin[4] = loom_sum(dp2, (const int[]){0}, 1, false);
  }
  loom_release(cur);
}

bool nn_rnn_sequence_applies(const loom_tensor *xp, const loom_tensor *h0, const loom_tensor *c0,
                             const loom_tensor *w_hh, const loom_tensor *b_hh) {
  if (!xp || !h0 || !w_hh || xp->shape.ndim != 3 || h0->shape.ndim != 2 || h0->shape.d[1] == 0) return false;
  const loom_tensor *ts[3] = {h0, c0, w_hh};
  for (int i = 0; i < 3; i++)
    if (ts[i] && ts[i]->dtype != xp->dtype) return false;
  if (b_hh && b_hh->dtype != xp->dtype) return false;
  /* inside an autocast region the step path's mixed dtypes apply */
  return core_autocast_dtype(xp->storage->device) == LOOM_DTYPE_COUNT;
}

static const char *node_name(loom_rnn_mode mode) {
  return mode == LOOM_RNN_LSTM ? "lstm_sequence" : mode == LOOM_RNN_GRU ? "gru_sequence" : "rnn_sequence";
}

loom_tensor *nn_rnn_sequence(loom_rnn_mode mode, const loom_tensor *xp, const loom_tensor *h0, const loom_tensor *c0,
                             const loom_tensor *w_hh, const loom_tensor *b_hh, bool reverse, loom_tensor **h_last,
                             loom_tensor **c_last) {
  *h_last = NULL;
  if (c_last) *c_last = NULL;
  bool lstm = mode == LOOM_RNN_LSTM, gru = mode == LOOM_RNN_GRU;
  const char *layer = nn_rnn_mode_name(mode);
  int64_t L = xp->shape.d[0], N = xp->shape.d[1], H = h0->shape.d[1], GH = (int64_t)nn_rnn_gates(mode) * H, S = lstm ? 2 : 1;
  if (xp->shape.d[2] != GH || h0->shape.d[0] != N || (lstm && (!c0 || !loom_shape_equal(c0->shape, h0->shape))) ||
      w_hh->shape.ndim != 2 || w_hh->shape.d[0] != GH || w_hh->shape.d[1] != H ||
      (b_hh && (!gru || b_hh->shape.ndim != 1 || b_hh->shape.d[0] != GH))) {
    core_set_error(LOOM_ERR_INTERNAL, "%s: sequence of xp %s, h0 %s and weight_hh %s", layer,
                   loom_shape_str(xp->shape), loom_shape_str(h0->shape), loom_shape_str(w_hh->shape));
    return NULL;
  }
  if (!lstm) c0 = NULL;
  if (!gru) b_hh = NULL;
  loom_device dev = xp->storage->device;
  const loom_tensor *ins[5] = {xp, h0, c0, w_hh, b_hh};
  bool record = core_grad_needed(5, ins);
  bool keep = record && (lstm || gru); /* G (LSTM) or P (GRU) for the backward */
  loom_no_grad_begin();
  loom_scope_begin();
  loom_tensor *z = core_new(LOOM_SHAPE(L + 1, S, N, H), xp->dtype, dev);
  loom_tensor *sv = keep ? core_new(xp->shape, xp->dtype, dev) : NULL;
  loom_tensor *wt = loom_transpose(w_hh, 0, 1);
  int64_t r0 = row_prev(reverse, reverse ? L - 1 : 0);
  bool ok = z && (sv || !keep) && wt && copy_into(zrow(z, r0, 0), h0) && (!lstm || copy_into(zrow(z, r0, 1), c0));
  for (int64_t s = 0; s < L && ok; s++) {
    int64_t t = reverse ? L - 1 - s : s, rp = row_prev(reverse, t);
    loom_scope_begin(); /* the step's temporaries go at once */
    loom_tensor *st = keep ? loom_select(sv, 0, t) : lstm || gru ? core_new(LOOM_SHAPE(N, GH), xp->dtype, dev) : NULL;
    ok = step_forward(mode, loom_select(xp, 0, t), zrow(z, rp, 0), lstm ? zrow(z, rp, 1) : NULL, wt, b_hh, st,
                      zrow(z, row_new(reverse, t), -1));
    loom_scope_end();
  }
  if (ok) {
    loom_keep(z);
    loom_keep(sv);
  }
  loom_scope_end();
  loom_no_grad_end();
  if (!ok) { /* name the layer: out of memory for the states, a kernel's error */
    char why[768];
    snprintf(why, sizeof why, "%s", loom_last_error());
    core_set_error(loom_last_status() != LOOM_OK ? loom_last_status() : LOOM_ERR_INTERNAL, "%s: %s", layer, why);
    return NULL;
  }
  if (record) {
    core_untrack(sv);
    core_node *n = core_record(node_name(mode), rnn_sequence_bw, z, 5, ins);
    core_save(n, z);
    core_save(n, w_hh);
    if (keep) core_save(n, sv);
    if (gru) core_save(n, xp);
    if (n) {
      n->a.i[0] = reverse;
      n->a.i[1] = mode;
    }
    loom_release(sv);
  }
  /* views of z: the outputs [L, N, H] in time order, the final state */
  loom_tensor *out = loom_select(loom_narrow(z, 0, reverse ? 0 : 1, L), 1, 0);
  loom_tensor *last = loom_select(z, 0, row_new(reverse, reverse ? 0 : L - 1));
  *h_last = loom_select(last, 0, 0);
  if (lstm && c_last) *c_last = loom_select(last, 0, 1);
  return out;
}
