/* The fused pointwise part of an LSTM cell (ops lstm_pointwise and
 * lstm_pointwise_backward, see ops_rnn.def): one kernel instead of a dozen
 * elementwise ops per time step, forward and backward. */
#include "core/autograd_impl.h"
#include "loom/nn.h"

/* out = [2, N, H] (h', c'); one kernel launch. */
static loom_tensor *launch_forward(const loom_tensor *gates, const loom_tensor *c, int64_t N, int64_t H) {
  loom_tensor *out = core_new(LOOM_SHAPE(2, N, H), gates->dtype, gates->storage->device);
  if (!out) return NULL;
  core_kctx k = {CORE_OP_lstm_pointwise, 2, 1, {(loom_tensor *)gates, (loom_tensor *)c}, {out}, {{N, H}, {0}}, NULL};
  return core_launch(&k) == LOOM_OK ? out : NULL;
}

static void lstm_pointwise_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *gates = n->saved[0], *c = n->saved[1];
  int64_t N = n->a.i[0], H = n->a.i[1];
  loom_tensor *gc = loom_contiguous(g);
  loom_tensor *dg = core_new(gates->shape, gates->dtype, gates->storage->device);
  loom_tensor *dc = core_new(c->shape, c->dtype, c->storage->device);
  if (!gc || !dg || !dc) return;
  core_kctx k = {CORE_OP_lstm_pointwise_backward, 3, 2, {(loom_tensor *)gates, (loom_tensor *)c, gc}, {dg, dc},
                 {{N, H}, {0}}, NULL};
  if (core_launch(&k) != LOOM_OK) return;
  if (core_needs(n, 0)) gin[0] = dg;
  if (core_needs(n, 1)) gin[1] = dc;
}

loom_tensor *loom_lstm_gates(const loom_tensor *gates, const loom_tensor *c, loom_tensor **c1) {
  if (c1) *c1 = NULL;
  CORE_CHECK_NULL1("lstm_gates", gates);
  CORE_CHECK_NULL1("lstm_gates", c);
  if (!c1) {
    core_set_error(LOOM_ERR_INVALID, "lstm_gates: c1 (the new cell state's destination) is NULL");
    return NULL;
  }
  if (c->shape.ndim != 2 || gates->shape.ndim != 2 || gates->shape.d[0] != c->shape.d[0] ||
      gates->shape.d[1] != 4 * c->shape.d[1]) {
    core_set_error(LOOM_ERR_INVALID, "lstm_gates: expected gates [N, 4H] and c [N, H], got %s and %s",
                   loom_shape_str(gates->shape), loom_shape_str(c->shape));
    return NULL;
  }
  if (!loom_dtype_is_float(gates->dtype) || !loom_dtype_is_float(c->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "lstm_gates: expected floating gates and c, got %s and %s",
                   loom_dtype_name(gates->dtype), loom_dtype_name(c->dtype));
    return NULL;
  }
  if (!core_check_same_device("lstm_gates", gates, c)) return NULL;
  int64_t N = c->shape.d[0], H = c->shape.d[1];
  loom_scope_begin();
  /* mixed dtypes (autocast gates, f32 state): compute in the promoted one */
  loom_dtype dt = loom_promote_types(gates->dtype, c->dtype);
  loom_tensor *gs = loom_contiguous(gates->dtype == dt ? gates : loom_to_dtype(gates, dt));
  loom_tensor *cs = loom_contiguous(c->dtype == dt ? c : loom_to_dtype(c, dt));
  loom_tensor *out = NULL, *h = NULL, *cn = NULL;
  if (gs && cs) out = launch_forward(gs, cs, N, H);
  if (out) {
    const loom_tensor *ins[2] = {gs, cs};
    if (core_grad_needed(2, ins)) {
      core_node *n = core_record("lstm_gates", lstm_pointwise_bw, out, 2, ins);
      if (n) {
        core_save(n, gs);
        core_save(n, cs);
        n->a.i[0] = N;
        n->a.i[1] = H;
      }
    }
    h = loom_select(out, 0, 0);
    cn = loom_select(out, 0, 1);
  }
  if (!h || !cn) h = cn = NULL;
  loom_keep(h);
  *c1 = loom_keep(cn);
  loom_scope_end();
  return h;
}
