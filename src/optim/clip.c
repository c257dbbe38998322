/* Gradient clipping: torch.nn.utils.clip_grad_norm_ / clip_grad_value_.
 * The total norm is combined per device on the device (one host read per
 * device), then across devices on the host. */
#include <stdlib.h>

#include "optim/optim_impl.h"

static bool is_half(loom_dtype dt) { return dt == LOOM_F16 || dt == LOOM_BF16; }

/* The sum of |g|^p (the max of |g| for p = inf) over the grads of params on
 * dev, marking them done; *st receives an error status. */
static double device_norm(loom_tensor *const *params, int n, loom_device dev, double p, bool *done, loom_status *st) {
  loom_scope_begin();
  loom_tensor *acc = NULL;
  for (int i = 0; i < n && *st == LOOM_OK; i++) {
    loom_tensor *g = params[i] ? params[i]->grad : NULL;
    if (done[i] || !g || !loom_device_equal(g->storage->device, dev)) continue;
    done[i] = true;
    if (core_numel(g) == 0) continue;
    /* f64 on the CPU, f32 for half grads, else the grad's own dtype */
    loom_dtype acc_dt = dev.type == LOOM_CPU ? LOOM_F64 : is_half(g->dtype) ? LOOM_F32 : g->dtype;
    if (acc) acc_dt = acc->dtype;
    loom_tensor *x = loom_abs(g->dtype == acc_dt ? g : loom_to_dtype(g, acc_dt));
    loom_tensor *term = isinf(p) ? loom_max_all(x) : loom_sum(p == 1 ? x : loom_pow_scalar(x, p), NULL, 0, false);
    acc = !acc ? term : isinf(p) ? loom_maximum(acc, term) : loom_add(acc, term);
    if (!acc) *st = loom_last_status();
  }
  double v = 0;
  if (acc && *st == LOOM_OK) {
    loom_clear_error();
    v = loom_item(acc);   /* NaN is a legitimate answer: tell it from a failure by the status */
    *st = loom_last_status();
  }
  loom_scope_end();
  return v;
}

double loom_clip_grad_norm(loom_tensor *const *params, int n, double max_norm, double norm_type) {
  if (n < 0 || (n > 0 && !params) || !(norm_type > 0) || !(max_norm >= 0)) {
    core_set_error(LOOM_ERR_INVALID, "clip_grad_norm: need n >= 0 params, norm_type > 0 and max_norm >= 0, got %d, %g, %g",
                   n, norm_type, max_norm);
    return NAN;
  }
  bool *done = calloc((size_t)n + 1, 1);
  if (!done) {
    core_set_error(LOOM_ERR_OOM, "clip_grad_norm: out of host memory");
    return NAN;
  }
  loom_clear_error();
  loom_status st = LOOM_OK;
  double total = 0;
  loom_no_grad_begin();
  for (int i = 0; i < n && st == LOOM_OK; i++) {
    loom_tensor *g = params[i] ? params[i]->grad : NULL;
    if (done[i] || !g) continue;
    double d = device_norm(params, n, g->storage->device, norm_type, done, &st);
    total = isinf(norm_type) ? (d > total || d != d ? d : total) : total + d;
  }
  if (!isinf(norm_type)) total = pow(total, 1.0 / norm_type);
  if (st == LOOM_OK && isfinite(total)) {
    double coef = max_norm / (total + 1e-6);
    for (int i = 0; coef < 1 && i < n && st == LOOM_OK; i++) {
      loom_tensor *g = params[i] ? params[i]->grad : NULL;
      if (!g) continue;
      loom_scope_begin();
      st = loom_copy_(g, loom_mul_scalar(g, coef));
      loom_scope_end();
    }
  }
  loom_no_grad_end();
  free(done);
  return st == LOOM_OK ? total : NAN;
}

int loom_clip_grad_value(loom_tensor *const *params, int n, double clip_value) {
  if (n < 0 || (n > 0 && !params) || !(clip_value >= 0))
    return core_set_error(LOOM_ERR_INVALID, "clip_grad_value: need n >= 0 params and clip_value >= 0, got %d, %g", n,
                          clip_value);
  loom_status st = LOOM_OK;
  loom_no_grad_begin();
  for (int i = 0; i < n && st == LOOM_OK; i++) {
    loom_tensor *g = params[i] ? params[i]->grad : NULL;
    if (!g) continue;
    loom_scope_begin();
    st = loom_copy_(g, loom_clamp(g, -clip_value, clip_value));
    loom_scope_end();
  }
  loom_no_grad_end();
  return st;
}
