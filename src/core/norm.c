/* Batch and instance norm (functional), and the fused-kernel plumbing shared
 * by every norm op: forward kernel, autograd node, backward kernel. */
#include <math.h>
#include <stdio.h>

#include "core/autocast.h"
#include "core/norm_impl.h"
#include "loom/nn_norm.h"

static core_op backward_op(core_op op) {
  switch (op) {
    case CORE_OP_batch_norm: return CORE_OP_batch_norm_backward;
    case CORE_OP_layer_norm: return CORE_OP_layer_norm_backward;
    default: return CORE_OP_group_norm_backward;
  }
}

static loom_dtype stats_dtype(loom_dtype dt) { return dt == LOOM_F64 ? LOOM_F64 : LOOM_F32; }

bool core_norm_check_param(const char *op, const char *what, const loom_tensor *p, const loom_tensor *x,
                           loom_shape want, bool same_dtype) {
  if (!p) return true;
  if (!loom_shape_equal(p->shape, want)) {
    char w[96];
    snprintf(w, sizeof w, "%s", loom_shape_str(want));
    core_set_error(LOOM_ERR_INVALID, "%s: expected %s of shape %s, got %s", op, what, w, loom_shape_str(p->shape));
    return false;
  }
  if (!loom_device_equal(p->storage->device, x->storage->device)) {
    char d[32];
    snprintf(d, sizeof d, "%s", loom_device_name(x->storage->device));
    core_set_error(LOOM_ERR_INVALID, "%s: %s is on %s but the input is on %s", op, what,
                   loom_device_name(p->storage->device), d);
    return false;
  }
  if (!loom_dtype_is_float(p->dtype) || (same_dtype && p->dtype != x->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "%s: %s is %s but the input is %s", op, what, loom_dtype_name(p->dtype),
                   loom_dtype_name(x->dtype));
    return false;
  }
  return true;
}

/* saved: x (contiguous), stats, weight (absent when NULL); dims[0] = op, dims[1] = P */
static void norm_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *x = n->saved[0], *st = n->saved[1];
  loom_device dev = x->storage->device;
  int64_t P = n->a.i[7];
  if (core_numel(x) == 0) {
    /* nothing normalised: the kernels would not run (core_launch skips empty
     * outputs), and PyTorch gives zero weight / bias gradients */
    gin[0] = core_needs(n, 0) ? loom_zeros(x->shape, x->dtype, dev) : NULL;
    if (core_needs(n, 1)) gin[1] = loom_zeros(LOOM_SHAPE(P), x->dtype, dev);
    if (core_needs(n, 2)) gin[2] = loom_zeros(LOOM_SHAPE(P), x->dtype, dev);
    return;
  }
  const loom_tensor *w = n->n_saved > 2 ? n->saved[2] : loom_ones(LOOM_SHAPE(P), x->dtype, dev);
  loom_tensor *dy = loom_contiguous(g->dtype == x->dtype ? g : loom_to_dtype(g, x->dtype));
  loom_tensor *dx = core_new(x->shape, x->dtype, dev), *dwb = core_new(LOOM_SHAPE(2, P), x->dtype, dev);
  if (!w || !dy || !dx || !dwb) return;
  core_kctx k = {backward_op((core_op)n->dims[0]), 4, 2, {dy, (loom_tensor *)x, (loom_tensor *)w, (loom_tensor *)st},
                 {dx, dwb}, n->a, NULL};
  if (core_launch(&k) != LOOM_OK) return;
  gin[0] = dx;
  if (core_needs(n, 1)) gin[1] = loom_select(dwb, 0, 0);
  if (core_needs(n, 2)) gin[2] = loom_select(dwb, 0, 1);
}

loom_tensor *core_norm_forward(const char *name, core_op op, const loom_tensor *x, const loom_tensor *weight,
                               const loom_tensor *bias, int64_t P, int64_t G, core_attrs a, loom_tensor **stats) {
  loom_device dev = x->storage->device;
  a.i[7] = P;
  loom_scope_begin();
  loom_tensor *xc = loom_contiguous(x);
  loom_tensor *w = weight ? loom_contiguous(weight) : loom_ones(LOOM_SHAPE(P), x->dtype, dev);
  loom_tensor *b = bias ? loom_contiguous(bias) : loom_zeros(LOOM_SHAPE(P), x->dtype, dev);
  loom_tensor *y = core_new(x->shape, x->dtype, dev);
  loom_tensor *st = core_new(LOOM_SHAPE(2, G), stats_dtype(x->dtype), dev);
  loom_tensor *out = NULL;
  if (xc && w && b && y && st) {
    core_kctx k = {op, 3, 2, {xc, w, b}, {y, st}, a, NULL};
    if (core_launch(&k) == LOOM_OK) out = y;
  }
  const loom_tensor *ins[3] = {x, weight, bias};
  if (out && core_grad_needed(3, ins)) {
    core_node *n = core_record(name, norm_bw, out, 3, ins);
    if (n) {
      n->a = a;
      n->dims[0] = (int)op;
      n->n_dims = 1;
      core_save(n, xc);
      core_save(n, st);
      core_save(n, weight ? w : NULL); /* the contiguous copy: the backward kernels need one */
    }
  }
  *stats = out ? loom_keep(st) : NULL;
  loom_keep(out);
  loom_scope_end();
  return out;
}

/* ---- batch norm ---- */

/* Common checks of x [N, C, *] and the per-channel tensors. */
static bool check_channels(const char *op, const loom_tensor *x, int min_dims, const loom_tensor *rm,
                           const loom_tensor *rv, const loom_tensor *w, const loom_tensor *b) {
  if (x->shape.ndim < min_dims || !loom_dtype_is_float(x->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected a floating input [N, C%s] with at least %d dims, got %s %s", op,
                   min_dims > 2 ? ", L, ..." : ", ...", min_dims, loom_dtype_name(x->dtype),
                   loom_shape_str(x->shape));
    return false;
  }
  loom_shape c = LOOM_SHAPE(x->shape.d[1]);
  if ((rm == NULL) != (rv == NULL)) {
    core_set_error(LOOM_ERR_INVALID, "%s: give both running_mean and running_var or neither", op);
    return false;
  }
  return core_norm_check_param(op, "weight", w, x, c, true) && core_norm_check_param(op, "bias", b, x, c, true) &&
         core_norm_check_param(op, "running_mean", rm, x, c, false) &&
         core_norm_check_param(op, "running_var", rv, x, c, false);
}

static bool check_numbers(const char *op, double momentum, double eps) {
  if (!(eps >= 0) || !isfinite(eps) || !(momentum >= 0 && momentum <= 1)) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected eps >= 0 and momentum in [0, 1], got eps %g, momentum %g", op, eps,
                   momentum);
    return false;
  }
  return true;
}

/* y = x * scale + shift per channel (dim 1) from the running statistics. */
static loom_tensor *norm_with_running(const loom_tensor *x, const loom_tensor *rm, const loom_tensor *rv,
                                      const loom_tensor *w, const loom_tensor *b, double eps) {
  loom_shape cs = {x->shape.ndim - 1, {0}};
  cs.d[0] = x->shape.d[1];
  for (int i = 1; i < cs.ndim; i++) cs.d[i] = 1;
  loom_scope_begin();
  loom_tensor *scale = loom_to_dtype(loom_rsqrt(loom_add_scalar(rv, eps)), x->dtype);
  loom_tensor *mean = loom_to_dtype(rm, x->dtype);
  if (w) scale = loom_mul(scale, w);
  loom_tensor *shift = loom_neg(loom_mul(mean, scale));
  if (b) shift = loom_add(shift, b);
  const loom_tensor *ops[3] = {x, scale, shift};
  loom_tensor *y = NULL;
  if (scale && shift && !core_grad_needed(3, ops)) { /* inference: one fused pass */
    int64_t N = x->shape.d[0], C = x->shape.d[1], S = C > 0 && N > 0 ? core_numel(x) / (N * C) : 0;
    loom_tensor *xc = loom_contiguous(x), *sc = loom_contiguous(scale), *sh = loom_contiguous(shift);
    y = core_new(x->shape, x->dtype, x->storage->device);
    core_kctx k = {CORE_OP_channel_affine, 3, 1, {xc, sc, sh}, {y}, {{N, C, S}, {0}}, NULL};
    if (!xc || !sc || !sh || !y || core_launch(&k) != LOOM_OK) y = NULL;
    loom_keep(y);
  } else {
    y = loom_keep(loom_add(loom_mul(x, loom_reshape(scale, cs)), loom_reshape(shift, cs)));
  }
  loom_scope_end();
  return y;
}

/* running = (1 - m) * running + m * batch, for mean [C] and biased variance
 * var [C] of `count` values each; running_var takes the unbiased variance. */
static loom_status update_running(loom_tensor *rm, loom_tensor *rv, const loom_tensor *mean, const loom_tensor *var,
                                  double count, double momentum) {
  loom_scope_begin();
  loom_no_grad_begin();
  loom_tensor *uv = loom_mul_scalar(var, count / (count - 1));
  loom_tensor *nm = loom_add(loom_mul_scalar(loom_to_dtype(rm, mean->dtype), 1 - momentum), loom_mul_scalar(mean, momentum));
  loom_tensor *nv = loom_add(loom_mul_scalar(loom_to_dtype(rv, var->dtype), 1 - momentum), loom_mul_scalar(uv, momentum));
  loom_status st = nm && nv ? LOOM_OK : loom_last_status();
  if (st == LOOM_OK) st = loom_copy_(rm, nm);
  if (st == LOOM_OK) st = loom_copy_(rv, nv);
  loom_no_grad_end();
  loom_scope_end();
  return st;
}

/* Biased variance from rstd = 1 / sqrt(var + eps). */
static loom_tensor *var_of_rstd(const loom_tensor *rstd, double eps) {
  return loom_add_scalar(loom_div(loom_ones_like(rstd), loom_square(rstd)), -eps);
}

const loom_tensor *core_norm_autocast(const loom_tensor *x, const loom_tensor **w, const loom_tensor **b) {
  const loom_tensor *xa = core_autocast_f32(x);
  if (xa && xa != x) { /* autocast made x f32: so are the parameters */
    if (*w && (*w)->dtype != xa->dtype) *w = loom_to_dtype(*w, xa->dtype);
    if (*b && (*b)->dtype != xa->dtype) *b = loom_to_dtype(*b, xa->dtype);
  }
  return xa;
}

/* Autocast and the checks shared by batch and instance norm. Called inside
 * the op's scope; *w and *b may be replaced by f32 copies. Returns the input
 * to use, or NULL after an error. */
static const loom_tensor *prepare(const char *op, const loom_tensor *x, int min_dims, const loom_tensor *rm,
                                  const loom_tensor *rv, const loom_tensor **w, const loom_tensor **b,
                                  bool batch_stats, double momentum, double eps) {
  const loom_tensor *xa = core_norm_autocast(x, w, b);
  if (!xa || !check_channels(op, xa, min_dims, rm, rv, *w, *b) || !check_numbers(op, batch_stats ? momentum : 0, eps))
    return NULL;
  if (!batch_stats && !rm) {
    core_set_error(LOOM_ERR_INVALID, "%s: running_mean and running_var are required when not using batch statistics",
                   op);
    return NULL;
  }
  return xa;
}

static int64_t spatial(const loom_tensor *x) {
  int64_t S = 1;
  for (int i = 2; i < x->shape.ndim; i++) S *= x->shape.d[i];
  return S;
}

loom_tensor *loom_batch_norm(const loom_tensor *x, loom_tensor *running_mean, loom_tensor *running_var,
                             const loom_tensor *weight, const loom_tensor *bias, bool training, double momentum,
                             double eps) {
  CORE_CHECK_NULL1("batch_norm", x);
  loom_scope_begin();
  loom_tensor *y = NULL, *st = NULL;
  const loom_tensor *xa =
      prepare("batch_norm", x, 2, running_mean, running_var, &weight, &bias, training, momentum, eps);
  int64_t N = xa ? xa->shape.d[0] : 0, C = xa ? xa->shape.d[1] : 0, S = xa ? spatial(xa) : 0;
  if (!xa) {
  } else if (!training) {
    y = norm_with_running(xa, running_mean, running_var, weight, bias, eps);
  } else if (N * S == 1) {
    core_set_error(LOOM_ERR_INVALID, "batch_norm: expected more than 1 value per channel when training, got input %s",
                   loom_shape_str(x->shape));
  } else {
    core_attrs a = {{N, C, S}, {eps}};
    y = core_norm_forward("batch_norm", CORE_OP_batch_norm, xa, weight, bias, C, C, a, &st);
    /* an empty batch has no statistics (the kernel does not even run): the
     * running ones stay, as in PyTorch */
    if (y && running_mean && N * S > 0) {
      loom_no_grad_begin();
      loom_tensor *var = var_of_rstd(loom_select(st, 0, 1), eps);
      loom_no_grad_end();
      if (!var || update_running(running_mean, running_var, loom_select(st, 0, 0), var, (double)(N * S), momentum))
        y = NULL;
    }
  }
  loom_keep(y);
  loom_scope_end();
  return y;
}

/* ---- instance norm: group norm with one channel per group ---- */

loom_tensor *loom_instance_norm(const loom_tensor *x, loom_tensor *running_mean, loom_tensor *running_var,
                                const loom_tensor *weight, const loom_tensor *bias, bool use_input_stats,
                                double momentum, double eps) {
  CORE_CHECK_NULL1("instance_norm", x);
  loom_scope_begin();
  loom_tensor *y = NULL, *st = NULL;
  const loom_tensor *xa =
      prepare("instance_norm", x, 3, running_mean, running_var, &weight, &bias, use_input_stats, momentum, eps);
  int64_t N = xa ? xa->shape.d[0] : 0, C = xa ? xa->shape.d[1] : 0, S = xa ? spatial(xa) : 0;
  if (!xa) {
  } else if (!use_input_stats) {
    y = norm_with_running(xa, running_mean, running_var, weight, bias, eps);
  } else if (S == 1) {
    core_set_error(LOOM_ERR_INVALID, "instance_norm: expected more than 1 spatial element when training, got input %s",
                   loom_shape_str(x->shape));
  } else {
    core_attrs a = {{N, C, S, C}, {eps}};
    y = core_norm_forward("instance_norm", CORE_OP_group_norm, xa, weight, bias, C, N * C, a, &st);
    if (y && running_mean && N * S > 0) { /* empty input: the running statistics stay */
      /* per-instance statistics [N, C] averaged over the batch (PyTorch's rule) */
      static const int d0[] = {0};
      loom_no_grad_begin();
      loom_tensor *mean = loom_mean(loom_reshape(loom_select(st, 0, 0), LOOM_SHAPE(N, C)), d0, 1, false);
      loom_tensor *var = var_of_rstd(loom_reshape(loom_select(st, 0, 1), LOOM_SHAPE(N, C)), eps);
      var = loom_mean(var, d0, 1, false);
      loom_no_grad_end();
      if (!mean || !var || update_running(running_mean, running_var, mean, var, (double)S, momentum)) y = NULL;
    }
  }
  loom_keep(y);
  loom_scope_end();
  return y;
}
