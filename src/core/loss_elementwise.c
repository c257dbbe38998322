/* Elementwise losses (MSE, L1, SmoothL1, Huber, BCE, BCEWithLogits, KLDiv),
 * composed from core ops so that every device and autograd get them for
 * free. BCE records its own node to give PyTorch's gradient, which stays
 * finite where the input reaches exactly 0 or 1. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>

#include "core/autocast.h"
#include "core/loss_impl.h"

/* How a loss pairs input and target: the same shape and dtype (BCE; KL also
 * takes batchmean), or, for the regression losses as in PyTorch, any float
 * dtypes (the loss takes the promoted one) and shapes that broadcast. */
typedef enum { PAIR_SAME, PAIR_SAME_BATCHMEAN, PAIR_BROADCAST } pair_rule;

/* PyTorch's regression-loss rule: float input and target that broadcast; where
 * their shapes differ, PyTorch's warning on stderr, once per loss (*warned). */
static bool check_broadcast_pair(const char *name, atomic_bool *warned, const loom_tensor *x, const loom_tensor *y) {
  if (!loom_dtype_is_float(x->dtype) || !loom_dtype_is_float(y->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected float input and target, got input %s and target %s", name,
                   loom_dtype_name(x->dtype), loom_dtype_name(y->dtype));
    return false;
  }
  if (!core_check_same_device(name, x, y)) return false;
  if (loom_shape_equal(x->shape, y->shape)) return true;
  loom_shape s;
  if (!core_broadcast_shapes(name, x->shape, y->shape, &s)) {
    core_set_error(LOOM_ERR_INVALID, "%s: target shape %s does not broadcast with input shape %s", name,
                   loom_shape_str(y->shape), loom_shape_str(x->shape));
    return false;
  }
  if (!atomic_exchange(warned, true))
    fprintf(stderr, "loom: warning: %s: target size %s differs from input size %s; both are broadcast to %s, "
            "which is likely a mistake (as PyTorch warns; shown once per loss)\n", name, loom_shape_str(y->shape),
            loom_shape_str(x->shape), loom_shape_str(s));
  return true;
}

/* NULL checks, autocast to f32, dtype / shape / device and reduction checks
 * of an (input, target) pair. Call inside a scope; on success *x and *y are
 * the tensors to compute with. */
static bool prepare(const char *name, const loom_tensor **x, const loom_tensor **y, loom_reduction r,
                    pair_rule rule, atomic_bool *warned) {
  if (!*x || !*y) {
    core_null_error("%s: %s is NULL", name, *x ? "target" : "input");
    return false;
  }
  if (!core_loss_check_reduction(name, r, rule == PAIR_SAME_BATCHMEAN)) return false;
  *x = core_autocast_f32(*x);
  *y = core_autocast_f32(*y);
  if (!*x || !*y) return false;
  return rule == PAIR_BROADCAST ? check_broadcast_pair(name, warned, *x, *y) : core_loss_check_pair(name, *x, *y);
}

static int64_t batch_of(const loom_tensor *x) { return x->shape.ndim ? x->shape.d[0] : 1; }

/* Runs the body (__VA_ARGS__: a statement that sets `l`, the unreduced loss) in a scope and reduces it. */
#define LOSS_BODY(name, x, y, r, rule, ...)                            \
  static atomic_bool warned_;                                           \
  loom_scope_begin();                                                   \
  loom_tensor *out = NULL;                                              \
  if (prepare(name, &x, &y, r, rule, &warned_)) {                       \
    loom_tensor *l = NULL;                                              \
    __VA_ARGS__;                                                        \
    out = l ? core_loss_reduce(l, r, batch_of(x)) : NULL;               \
  }                                                                     \
  loom_keep(out);                                                       \
  loom_scope_end();                                                     \
  return out

loom_tensor *loom_mse_loss(const loom_tensor *input, const loom_tensor *target, loom_reduction reduction) {
  LOSS_BODY("mse_loss", input, target, reduction, PAIR_BROADCAST, {
    loom_tensor *d = loom_sub(input, target);
    l = loom_mul(d, d);
  });
}

loom_tensor *loom_l1_loss(const loom_tensor *input, const loom_tensor *target, loom_reduction reduction) {
  LOSS_BODY("l1_loss", input, target, reduction, PAIR_BROADCAST, l = loom_abs(loom_sub(input, target)));
}

/* where(|d| < k, 0.5 d^2 * a, |d| * b - c): the quadratic middle and linear sides */
static loom_tensor *piecewise(const loom_tensor *d, double k, double a, double b, double c) {
  loom_tensor *ad = loom_abs(d);
  loom_tensor *quad = loom_mul_scalar(loom_mul(d, d), 0.5 * a);
  loom_tensor *lin = loom_add_scalar(loom_mul_scalar(ad, b), -c);
  return loom_where(loom_lt(ad, loom_scalar_like(ad, k)), quad, lin);
}

loom_tensor *loom_smooth_l1_loss(const loom_tensor *input, const loom_tensor *target, double beta,
                                 loom_reduction reduction) {
  if (!(beta >= 0)) {
    core_set_error(LOOM_ERR_INVALID, "smooth_l1_loss: beta must be >= 0, got %g", beta);
    return NULL;
  }
  LOSS_BODY("smooth_l1_loss", input, target, reduction, PAIR_BROADCAST, {
    loom_tensor *d = loom_sub(input, target);
    l = beta == 0 ? loom_abs(d) : piecewise(d, beta, 1 / beta, 1, 0.5 * beta);
  });
}

loom_tensor *loom_huber_loss(const loom_tensor *input, const loom_tensor *target, double delta,
                             loom_reduction reduction) {
  if (!(delta > 0)) {
    core_set_error(LOOM_ERR_INVALID, "huber_loss: delta must be > 0, got %g", delta);
    return NULL;
  }
  LOSS_BODY("huber_loss", input, target, reduction, PAIR_BROADCAST,
            l = piecewise(loom_sub(input, target), delta, 1, delta, 0.5 * delta * delta));
}

/* ---- binary cross-entropy ---- */
/* log(x) and log(1 - x), each clamped at -100 like PyTorch */
static void clamped_logs(const loom_tensor *x, loom_tensor **lx, loom_tensor **l1x) {
  *lx = loom_clamp(loom_log(x), -100, INFINITY);
  *l1x = loom_clamp(loom_log(loom_add_scalar(loom_neg(x), 1)), -100, INFINITY);
}

/* PyTorch's gradients: d/dx = w (x - y) / max(x (1 - x), 1e-12f) (a float
 * constant there too, so the edges match to the last bit),
 * d/dy = w (log(1 - x) - log(x)). */
static void bce_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *x = n->saved[0], *y = n->saved[1], *w = n->n_saved > 2 ? n->saved[2] : NULL;
  loom_tensor *gw = w ? loom_mul(g, w) : (loom_tensor *)g;
  if (core_needs(n, 0)) {
    loom_tensor *den = loom_clamp(loom_mul(x, loom_add_scalar(loom_neg(x), 1)), (double)1e-12f, INFINITY);
    gin[0] = loom_div(loom_mul(gw, loom_sub(x, y)), den);
  }
  if (core_needs(n, 1)) /* unclamped, as PyTorch: +-inf where x is exactly 0 or 1 */
    gin[1] = loom_mul(gw, loom_sub(loom_log(loom_add_scalar(loom_neg(x), 1)), loom_log(x)));
}

loom_tensor *loom_bce_loss(const loom_tensor *input, const loom_tensor *target, const loom_tensor *weight,
                           loom_reduction reduction) {
  LOSS_BODY("bce_loss", input, target, reduction, PAIR_SAME, {
    const loom_tensor *w = weight ? core_autocast_f32(weight) : NULL;
    if (core_loss_check_broadcast("bce_loss", "weight", w, input)) {
      loom_no_grad_begin();
      loom_tensor *lx, *l1x;
      clamped_logs(input, &lx, &l1x);
      /* (y - 1) log(1 - x) - y log(x) */
      l = loom_sub(loom_mul(loom_add_scalar(target, -1), l1x), loom_mul(target, lx));
      if (w) l = loom_mul(l, w);
      loom_no_grad_end();
      const loom_tensor *ins[2] = {input, target};
      if (l && core_grad_needed(2, ins)) {
        core_node *n = core_record("bce_loss", bce_bw, l, 2, ins);
        core_save(n, input);
        core_save(n, target);
        if (w) core_save(n, w);
      }
    }
  });
}

loom_tensor *loom_bce_with_logits(const loom_tensor *input, const loom_tensor *target, const loom_tensor *weight,
                                  const loom_tensor *pos_weight, loom_reduction reduction) {
  const char *name = "bce_with_logits";
  LOSS_BODY(name, input, target, reduction, PAIR_SAME, {
    const loom_tensor *w = weight ? core_autocast_f32(weight) : NULL;
    const loom_tensor *pw = pos_weight ? core_autocast_f32(pos_weight) : NULL;
    if (core_loss_check_broadcast(name, "weight", w, input) &&
        core_loss_check_broadcast(name, "pos_weight", pw, input)) {
      /* softplus(-x) = -log sigmoid(x) = m + log(exp(-m) + exp(-x - m)), m = max(-x, 0):
       * no exp overflows, and m's own derivative cancels out */
      loom_tensor *nx = loom_neg(input), *m = loom_relu(nx);
      loom_tensor *sp = loom_add(m, loom_log(loom_add(loom_exp(loom_neg(m)), loom_exp(loom_sub(nx, m)))));
      /* (1 - y) x + (1 + (p - 1) y) softplus(-x) */
      loom_tensor *lin = loom_mul(loom_add_scalar(loom_neg(target), 1), input);
      loom_tensor *lw = pw ? loom_add_scalar(loom_mul(loom_add_scalar(pw, -1), target), 1) : NULL;
      l = loom_add(lin, lw ? loom_mul(lw, sp) : sp);
      if (w) l = loom_mul(l, w);
    }
  });
}

/* ---- KL divergence ---- */
/* torch.xlogy(t, t): t log t with 0 log 0 = 0 (NaN for t < 0). Its gradient is
 * PyTorch's xlogy rule, g * (xlogy(t != 0, t) + t / t): NaN where t is 0, as in
 * torch.nn.functional.kl_div. */
static void xlogx_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *t = n->saved[0];
  loom_tensor *zero = loom_scalar_like(t, 0);
  loom_tensor *lg = loom_where(loom_ne(t, zero), loom_log(t), zero);
  gin[0] = loom_mul(g, loom_add(lg, loom_div(t, t)));
}

static loom_tensor *xlogx(const loom_tensor *t) {
  loom_no_grad_begin();
  loom_tensor *zero = loom_scalar_like(t, 0);
  loom_tensor *out = loom_where(loom_eq(t, zero), zero, loom_mul(t, loom_log(t)));
  loom_no_grad_end();
  if (out && core_grad_needed(1, &t)) {
    core_node *n = core_record("xlogy", xlogx_bw, out, 1, &t);
    core_save(n, t);
  }
  return out;
}

loom_tensor *loom_kl_div(const loom_tensor *input, const loom_tensor *target, loom_reduction reduction,
                         bool log_target) {
  LOSS_BODY("kl_div", input, target, reduction, PAIR_SAME_BATCHMEAN, {
    if (log_target) l = loom_mul(loom_exp(target), loom_sub(target, input));
    else l = loom_sub(xlogx(target), loom_mul(target, input));
  });
}
