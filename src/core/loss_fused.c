/* The fused cross-entropy over rows (ops cross_entropy and
 * cross_entropy_backward, see ops_loss.def): one pass per row computes the
 * log-sum-exp, picks the target and adds the label-smoothing term; backward is
 * softmax - one-hot in one more pass. loom_cross_entropy (loss.c) moves the
 * class dim last and calls this; loom_cross_entropy_unfused is its reference. */
#include "core/loss_impl.h"

static loom_dtype acc_dtype(loom_dtype dt) { return dt == LOOM_F64 ? LOOM_F64 : LOOM_F32; }

/* saved: x (contiguous), target, weight, lse */
static void cross_entropy_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  loom_tensor *x = n->saved[0], *t = n->saved[1], *w = n->saved[2], *lse = n->saved[3];
  loom_tensor *pair[2] = {lse, loom_contiguous(loom_to_dtype(loom_reshape(g, lse->shape), lse->dtype))};
  loom_tensor *gl = pair[1] ? loom_stack(pair, 2, 1) : NULL;
  loom_tensor *dx = gl ? core_new(x->shape, x->dtype, x->storage->device) : NULL;
  core_kctx k = {CORE_OP_cross_entropy_backward, 4, 1, {x, t, w, gl}, {dx}, n->a, NULL};
  gin[0] = dx && core_launch(&k) == LOOM_OK ? dx : NULL;
}

loom_tensor *core_cross_entropy_rows(const loom_tensor *x, const loom_tensor *target, const loom_tensor *weight,
                                     int64_t ignore, double smoothing) {
  if (!x || !target) {
    core_null_error("cross_entropy: %s is NULL", x ? "target" : "input");
    return NULL;
  }
  const int64_t R = x->shape.d[0], C = x->shape.d[1];
  if (x->shape.ndim != 2 || C == 0 || target->dtype != LOOM_I64 || target->shape.ndim != 1 ||
      target->shape.d[0] != R) {
    core_set_error(LOOM_ERR_INVALID, "cross_entropy: expected rows [R, C > 0] and i64 targets [R], got %s and %s %s",
                   loom_shape_str(x->shape), loom_dtype_name(target->dtype), loom_shape_str(target->shape));
    return NULL;
  }
  loom_device dev = x->storage->device;
  loom_scope_begin();
  loom_no_grad_begin();
  loom_tensor *xc = loom_contiguous(x), *tc = loom_contiguous(target);
  loom_tensor *wc = weight ? loom_contiguous(weight) : loom_ones(LOOM_SHAPE(C), x->dtype, dev);
  loom_no_grad_end();
  loom_tensor *loss = core_new(LOOM_SHAPE(R), x->dtype, dev), *lse = core_new(LOOM_SHAPE(R), acc_dtype(x->dtype), dev);
  core_kctx k = {CORE_OP_cross_entropy, 3, 2, {xc, tc, wc}, {loss, lse}, {{R, C, ignore}, {smoothing}}, NULL};
  if (!xc || !tc || !wc || !loss || !lse || core_launch(&k) != LOOM_OK) loss = NULL;
  if (loss && core_grad_needed(1, &x)) {
    core_node *n = core_record("cross_entropy", cross_entropy_bw, loss, 1, &x);
    core_save(n, xc);
    core_save(n, tc);
    core_save(n, wc);
    core_save(n, lse);
    if (n) n->a = k.a;
  }
  loom_keep(loss);
  loom_scope_end();
  return loss;
}
