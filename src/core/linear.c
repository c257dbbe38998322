/* linear: y = x @ weight^T + bias over the last dim of x, through matmul /
 * addmm (which apply autocast regions). */
#include "core/autocast.h"
#include "core/autograd_impl.h"

static bool check_linear(const loom_tensor *x, const loom_tensor *w, const loom_tensor *b) {
  if (x->shape.ndim < 1 || w->shape.ndim != 2) {
    core_set_error(LOOM_ERR_INVALID, "linear: expected input [..., in_features] and weight [out, in], got %s and %s",
                   loom_shape_str(x->shape), loom_shape_str(w->shape));
    return false;
  }
  int64_t in = w->shape.d[1], out = w->shape.d[0];
  if (x->shape.d[x->shape.ndim - 1] != in) {
    core_set_error(LOOM_ERR_INVALID, "linear: expected input [..., %lld] for weight %s, got %s", (long long)in,
                   loom_shape_str(w->shape), loom_shape_str(x->shape));
    return false;
  }
  if (b && (b->shape.ndim != 1 || b->shape.d[0] != out)) {
    core_set_error(LOOM_ERR_INVALID, "linear: expected bias [%lld] for weight %s, got %s", (long long)out,
                   loom_shape_str(w->shape), loom_shape_str(b->shape));
    return false;
  }
  if (!core_check_same_device("linear", x, w) || (b && !core_check_same_device("linear", w, b))) return false;
  if (!loom_dtype_is_float(x->dtype) || !loom_dtype_is_float(w->dtype) || (b && !loom_dtype_is_float(b->dtype))) {
    core_set_error(LOOM_ERR_INVALID, "linear: needs floating tensors, got input %s, weight %s%s%s",
                   loom_dtype_name(x->dtype), loom_dtype_name(w->dtype), b ? ", bias " : "",
                   b ? loom_dtype_name(b->dtype) : "");
    return false;
  }
  /* inside an autocast region matmul converts both sides; outside, they must agree */
  bool autocast = core_autocast_dtype(x->storage->device) != LOOM_DTYPE_COUNT;
  if (!autocast && (x->dtype != w->dtype || (b && b->dtype != w->dtype))) {
    core_set_error(LOOM_ERR_INVALID, "linear: input is %s but weight is %s%s%s", loom_dtype_name(x->dtype),
                   loom_dtype_name(w->dtype), b ? " and bias " : "", b ? loom_dtype_name(b->dtype) : "");
    return false;
  }
  return true;
}

loom_tensor *loom_linear(const loom_tensor *x, const loom_tensor *weight, const loom_tensor *bias) {
  if (!x || !weight) {
    core_null_error("linear: %s is NULL", !x ? "input" : "weight");
    return NULL;
  }
  if (!check_linear(x, weight, bias)) return NULL;
  int64_t in = weight->shape.d[1], outf = weight->shape.d[0];
  loom_scope_begin();
  loom_tensor *wt = loom_transpose(weight, 0, 1), *y = NULL;
  if (x->shape.ndim == 1) {
    y = loom_matmul(x, wt);
    /* autocast: the bias takes the product's dtype, as addmm does */
    bool autocast = core_autocast_dtype(x->storage->device) != LOOM_DTYPE_COUNT;
    if (bias) y = loom_add(y, autocast ? core_autocast_low(bias) : bias);
  } else {
    const loom_tensor *x2 = x->shape.ndim == 2 ? x : loom_reshape(x, LOOM_SHAPE(-1, in));
    y = bias ? loom_addmm(bias, x2, wt, 1, 1) : loom_matmul(x2, wt);
    if (y && x->shape.ndim != 2) {
      loom_shape s = x->shape;
      s.d[s.ndim - 1] = outf;
      y = loom_reshape(y, s);
    }
  }
  loom_keep(y);
  loom_scope_end();
  return y;
}
