/* Activation ops with their own kernels: leaky_relu, elu, gelu (erf and tanh
 * forms) and silu. Each backward is one fused kernel op taking (x, g), so a
 * backward pass reads x and g once instead of running a chain of ops. */
#include <math.h>

#include "core/autograd_impl.h"

/* out = op(ins...) elementwise over ins[0]'s shape; every input has that shape
 * (any strides), dtype and device. Untracked on failure. */
static loom_tensor *launch_act(core_op op, const core_attrs *a, int n, const loom_tensor *const *ins) {
  loom_tensor *out = core_new(ins[0]->shape, ins[0]->dtype, ins[0]->storage->device);
  if (!out) return NULL;
  core_kctx k = {op, n, 1, {0}, {out}, {{0}, {0}}, NULL};
  k.a = *a;
  loom_status st = LOOM_OK;
  for (int i = 0; i < n && st == LOOM_OK; i++) {
    k.in[i] = core_expand_to(ins[i], ins[0]->shape);
    if (!k.in[i]) st = loom_last_status();
  }
  if (st == LOOM_OK) st = core_launch(&k);
  for (int i = 0; i < n; i++) loom_release(k.in[i]);
  if (st != LOOM_OK) {
    core_untrack(out);
    loom_release(out);
    return NULL;
  }
  return out;
}

/* The backward op of each forward op (they sit in the same order in ops_act.def). */
static core_op backward_op(core_op op) { return (core_op)(op - CORE_OP_leaky_relu + CORE_OP_leaky_relu_backward); }

static void act_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *x = n->saved[0];
  core_op op = (core_op)n->dims[0];
  loom_scope_begin();
  const loom_tensor *gc = g;
  if (g->dtype != x->dtype) gc = loom_to_dtype(g, x->dtype);
  loom_tensor *gx = NULL;
  if (gc) {
    const loom_tensor *ins[2] = {x, gc};
    gx = launch_act(backward_op(op), &n->a, 2, ins);
  }
  gin[0] = loom_keep(gx);
  loom_scope_end();
}

loom_tensor *core_relu_backward(const loom_tensor *y, const loom_tensor *g) {
  loom_scope_begin();
  const loom_tensor *ins[2] = {y, g->dtype != y->dtype ? loom_to_dtype(g, y->dtype) : g};
  static const core_attrs none;
  loom_tensor *gx = ins[1] ? launch_act(CORE_OP_relu_backward, &none, 2, ins) : NULL;
  loom_keep(gx);
  loom_scope_end();
  return gx;
}

static loom_tensor *activation(core_op op, const loom_tensor *x, const core_attrs *a) {
  const char *name = core_ops[op].name;
  CORE_CHECK_NULL1(name, x);
  if (!loom_dtype_is_float(x->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "%s: needs a floating input, got %s %s", name, loom_dtype_name(x->dtype),
                   loom_shape_str(x->shape));
    return NULL;
  }
  loom_tensor *out = launch_act(op, a, 1, &x);
  if (out && core_grad_needed(1, &x)) {
    core_node *n = core_record(name, act_bw, out, 1, &x);
    if (n) {
      core_save(n, x);
      n->a = *a;
      n->dims[0] = (int)op;
      n->n_dims = 1;
    }
  }
  return out;
}

loom_tensor *loom_leaky_relu(const loom_tensor *x, double negative_slope) {
  if (isnan(negative_slope)) {
    core_set_error(LOOM_ERR_INVALID, "leaky_relu: negative_slope is NaN");
    return NULL;
  }
  core_attrs a = {{0}, {negative_slope}};
  return activation(CORE_OP_leaky_relu, x, &a);
}

loom_tensor *loom_elu(const loom_tensor *x, double alpha) {
  if (isnan(alpha)) {
    core_set_error(LOOM_ERR_INVALID, "elu: alpha is NaN");
    return NULL;
  }
  core_attrs a = {{0}, {alpha}};
  return activation(CORE_OP_elu, x, &a);
}

loom_tensor *loom_gelu(const loom_tensor *x, bool tanh_approx) {
  core_attrs a = {{tanh_approx ? 1 : 0}, {0}};
  return activation(CORE_OP_gelu, x, &a);
}

loom_tensor *loom_silu(const loom_tensor *x) {
  core_attrs a = {{0}, {0}};
  return activation(CORE_OP_silu, x, &a);
}
