/* Layer norm and group norm (functional); the kernels and autograd plumbing
 * are shared with batch norm (src/core/norm.c). */
#include <math.h>
#include <stdio.h>

#include "core/norm_impl.h"
#include "loom/nn_norm.h"

static bool check_eps(const char *op, double eps) {
  if (eps >= 0 && isfinite(eps)) return true;
  core_set_error(LOOM_ERR_INVALID, "%s: expected eps >= 0, got %g", op, eps);
  return false;
}

loom_tensor *loom_layer_norm(const loom_tensor *x, const int64_t *normalized_shape, int n, const loom_tensor *weight,
                             const loom_tensor *bias, double eps) {
  CORE_CHECK_NULL1("layer_norm", x);
  if (n < 1 || n > x->shape.ndim || !normalized_shape) {
    core_set_error(LOOM_ERR_INVALID, "layer_norm: normalized_shape needs 1 to %d dims for input %s, got %d",
                   x->shape.ndim, loom_shape_str(x->shape), n);
    return NULL;
  }
  loom_shape ns = {n, {0}};
  int64_t K = 1;
  bool match = true;
  for (int i = 0; i < n; i++) {
    ns.d[i] = normalized_shape[i];
    K *= ns.d[i];
    match = match && ns.d[i] == x->shape.d[x->shape.ndim - n + i];
  }
  if (!match) {
    char want[96];
    snprintf(want, sizeof want, "%s", loom_shape_str(ns));
    core_set_error(LOOM_ERR_INVALID, "layer_norm: expected input [*, %s] ending in normalized_shape, got %s",
                   want + 1, loom_shape_str(x->shape));
    return NULL;
  }
  if (!loom_dtype_is_float(x->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "layer_norm: expected a floating input, got %s", loom_dtype_name(x->dtype));
    return NULL;
  }
  if (!check_eps("layer_norm", eps)) return NULL;
  loom_scope_begin();
  loom_tensor *y = NULL, *st = NULL;
  const loom_tensor *xa = core_norm_autocast(x, &weight, &bias);
  if (xa && core_norm_check_param("layer_norm", "weight", weight, xa, ns, true) &&
      core_norm_check_param("layer_norm", "bias", bias, xa, ns, true)) {
    int64_t M = K ? core_numel(xa) / K : 0;
    core_attrs a = {{M, K}, {eps}};
    y = core_norm_forward("layer_norm", CORE_OP_layer_norm, xa, weight, bias, K, M, a, &st);
  }
  loom_keep(y);
  loom_scope_end();
  return y;
}

loom_tensor *loom_group_norm(const loom_tensor *x, int64_t num_groups, const loom_tensor *weight,
                             const loom_tensor *bias, double eps) {
  CORE_CHECK_NULL1("group_norm", x);
  if (x->shape.ndim < 2 || !loom_dtype_is_float(x->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "group_norm: expected a floating input [N, C, *], got %s %s",
                   loom_dtype_name(x->dtype), loom_shape_str(x->shape));
    return NULL;
  }
  int64_t N = x->shape.d[0], C = x->shape.d[1], S = 1;
  for (int i = 2; i < x->shape.ndim; i++) S *= x->shape.d[i];
  if (num_groups <= 0 || C % num_groups) {
    core_set_error(LOOM_ERR_INVALID, "group_norm: num_groups %lld must be positive and divide the %lld channels of %s",
                   (long long)num_groups, (long long)C, loom_shape_str(x->shape));
    return NULL;
  }
  if (!check_eps("group_norm", eps)) return NULL;
  loom_scope_begin();
  loom_tensor *y = NULL, *st = NULL;
  const loom_tensor *xa = core_norm_autocast(x, &weight, &bias);
  if (xa && core_norm_check_param("group_norm", "weight", weight, xa, LOOM_SHAPE(C), true) &&
      core_norm_check_param("group_norm", "bias", bias, xa, LOOM_SHAPE(C), true)) {
    core_attrs a = {{N, C, S, num_groups}, {eps}};
    y = core_norm_forward("group_norm", CORE_OP_group_norm, xa, weight, bias, C, N * num_groups, a, &st);
  }
  loom_keep(y);
  loom_scope_end();
  return y;
}
