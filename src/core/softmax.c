/* softmax and log_softmax along one dim, each with a backward kernel op. The
 * input is viewed as a contiguous [O, R, I] (R the normalised dim) like the
 * reductions; inside an autocast region f16/bf16 inputs run in f32. */
#include "core/autocast.h"
#include "core/autograd_impl.h"

/* out[0] = op(a, b) over one [O, R, I] geometry (b may be NULL). */
static loom_tensor *launch_orI(core_op op, const core_attrs *a, const loom_tensor *x, const loom_tensor *b) {
  loom_tensor *out = core_new(x->shape, x->dtype, x->storage->device);
  if (!out) return NULL;
  core_kctx k = {op, b ? 2 : 1, 1, {(loom_tensor *)x, (loom_tensor *)b}, {out}, {{0}, {0}}, NULL};
  k.a = *a;
  if (core_launch(&k) != LOOM_OK) {
    core_untrack(out);
    loom_release(out);
    return NULL;
  }
  return out;
}

/* gx from (y, g): y is the saved output (contiguous), g any layout. */
static void softmax_family_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *y = n->saved[0];
  core_op op = n->dims[0] == 0 ? CORE_OP_softmax_backward : CORE_OP_log_softmax_backward;
  loom_scope_begin();
  const loom_tensor *gc = g->dtype == y->dtype ? g : loom_to_dtype(g, y->dtype);
  if (gc) gc = loom_contiguous(gc);
  loom_tensor *gx = gc ? launch_orI(op, &n->a, y, loom_reshape(gc, y->shape)) : NULL;
  if (gx && !loom_shape_equal(gx->shape, n->in_shape[0])) gx = loom_reshape(gx, n->in_shape[0]);
  gin[0] = loom_keep(gx);
  loom_scope_end();
}

static loom_tensor *softmax_family(core_op op, const loom_tensor *x, int dim) {
  const char *name = core_ops[op].name;
  CORE_CHECK_NULL1(name, x);
  if (!loom_dtype_is_float(x->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "%s: needs a floating input, got %s %s", name, loom_dtype_name(x->dtype),
                   loom_shape_str(x->shape));
    return NULL;
  }
  int d = 0;
  if (x->shape.ndim == 0) {
    if (dim != 0 && dim != -1) {
      core_set_error(LOOM_ERR_INVALID, "%s: dim %d is out of range for a 0-d input", name, dim);
      return NULL;
    }
  } else if ((d = core_norm_dim(name, x, dim, false)) < 0) {
    return NULL;
  }
  loom_scope_begin();
  const loom_tensor *in = core_autocast_f32(x);
  loom_tensor *out = NULL;
  if (in) {
    core_attrs a = {{1, 1, 1}, {0}};
    for (int i = 0; i < in->shape.ndim; i++) a.i[i < d ? 0 : i == d ? 1 : 2] *= in->shape.d[i];
    loom_no_grad_begin();
    loom_tensor *c = loom_contiguous(in);
    loom_no_grad_end();
    if (c) out = launch_orI(op, &a, c, NULL);
    if (out && core_grad_needed(1, &in)) {
      core_node *n = core_record(name, softmax_family_bw, out, 1, &in);
      if (n) {
        core_save(n, out);
        n->a = a;
        n->dims[0] = op == CORE_OP_softmax ? 0 : 1;
        n->n_dims = 1;
      }
    }
  }
  loom_keep(out);
  loom_scope_end();
  return out;
}

loom_tensor *loom_softmax(const loom_tensor *x, int dim) { return softmax_family(CORE_OP_softmax, x, dim); }
loom_tensor *loom_log_softmax(const loom_tensor *x, int dim) { return softmax_family(CORE_OP_log_softmax, x, dim); }
