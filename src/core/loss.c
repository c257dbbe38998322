/* Cross-entropy and NLL (torch.nn.functional semantics): argument checks, the
 * composed forms (reference for the fused kernel of loss_fused.c), and the
 * reduction helpers shared by every loss. */
#include <math.h>

#include "core/autocast.h"
#include "core/loss_impl.h"
#include "loom/nn_layers.h"

/* ---- shared helpers ---- */
bool core_loss_check_reduction(const char *name, loom_reduction r, bool allow_batchmean) {
  if (r == LOOM_REDUCTION_MEAN || r == LOOM_REDUCTION_SUM || r == LOOM_REDUCTION_NONE) return true;
  if (r == LOOM_REDUCTION_BATCHMEAN && allow_batchmean) return true;
  core_set_error(LOOM_ERR_INVALID, "%s: reduction %d is not one of none, mean, sum%s", name, (int)r,
                 allow_batchmean ? ", batchmean" : " (batchmean is for kl_div only)");
  return false;
}

loom_tensor *core_loss_reduce(const loom_tensor *l, loom_reduction r, int64_t batch) {
  switch (r) {
    case LOOM_REDUCTION_NONE: return (loom_tensor *)l; /* already registered by its maker */
    case LOOM_REDUCTION_SUM: return loom_sum(l, NULL, 0, false);
    case LOOM_REDUCTION_BATCHMEAN:
      return loom_mul_scalar(loom_sum(l, NULL, 0, false), batch > 0 ? 1.0 / (double)batch : NAN);
    default: return loom_mean(l, NULL, 0, false);
  }
}

bool core_loss_check_pair(const char *name, const loom_tensor *input, const loom_tensor *target) {
  if (!loom_dtype_is_float(input->dtype) || input->dtype != target->dtype) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected float input and target of one dtype, got input %s and target %s",
                   name, loom_dtype_name(input->dtype), loom_dtype_name(target->dtype));
    return false;
  }
  if (!loom_shape_equal(input->shape, target->shape)) {
    core_set_error(LOOM_ERR_INVALID, "%s: target shape %s must match input shape %s", name,
                   loom_shape_str(target->shape), loom_shape_str(input->shape));
    return false;
  }
  return core_check_same_device(name, input, target);
}

bool core_loss_check_broadcast(const char *name, const char *what, const loom_tensor *w, const loom_tensor *x) {
  if (!w) return true;
  if (w->dtype != x->dtype) {
    core_set_error(LOOM_ERR_INVALID, "%s: %s is %s but input is %s", name, what, loom_dtype_name(w->dtype),
                   loom_dtype_name(x->dtype));
    return false;
  }
  loom_shape s;
  if (!core_broadcast_shapes(name, w->shape, x->shape, &s) || !loom_shape_equal(s, x->shape)) {
    core_set_error(LOOM_ERR_INVALID, "%s: %s of shape %s does not broadcast to input shape %s", name, what,
                   loom_shape_str(w->shape), loom_shape_str(x->shape));
    return false;
  }
  return core_check_same_device(name, w, x);
}

loom_tensor *core_loss_class_target(const char *name, const loom_tensor *target, loom_shape want, int64_t C,
                                    int64_t ignore, loom_device dev) {
  if (target->dtype != LOOM_I64 && target->dtype != LOOM_I32) {
    core_set_error(LOOM_ERR_INVALID, "%s: class-index target must be i64 (or i32), got %s", name,
                   loom_dtype_name(target->dtype));
    return NULL;
  }
  if (!loom_shape_equal(target->shape, want)) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected class-index target of shape %s, got %s", name,
                   loom_shape_str(want), loom_shape_str(target->shape));
    return NULL;
  }
  if (!loom_device_equal(target->storage->device, dev)) {
    core_set_error(LOOM_ERR_INVALID, "%s: target is on %s but the input is on %s", name,
                   loom_device_name(target->storage->device), loom_device_name(dev));
    return NULL;
  }
  loom_tensor *t = loom_to_dtype(target, LOOM_I64);
  if (!t || core_numel(t) == 0) return t;
  /* one host read of min and max (ignored entries counted as class 0) */
  loom_no_grad_begin();
  loom_tensor *ign = loom_scalar_like(t, (double)ignore);
  loom_tensor *safe = loom_where(loom_ne(t, ign), t, loom_scalar_like(t, 0));
  double lo = loom_item(loom_min_all(safe)), hi = loom_item(loom_max_all(safe));
  loom_no_grad_end();
  if (lo != lo || hi != hi) return NULL;
  if (lo < 0 || hi >= (double)C) {
    core_set_error(LOOM_ERR_INVALID, "%s: target class index %lld is out of range for %lld classes (ignore_index %lld)",
                   name, (long long)(lo < 0 ? lo : hi), (long long)C, (long long)ignore);
    return NULL;
  }
  return t;
}

/* valid = t != ignore; safe = valid ? t : 0 */
static void split_target(const loom_tensor *t, int64_t ignore, loom_tensor **valid, loom_tensor **safe) {
  *valid = loom_ne(t, loom_scalar_like(t, (double)ignore));
  *safe = loom_where(*valid, t, loom_scalar_like(t, 0));
}

loom_tensor *core_loss_target_weight(const loom_tensor *target, const loom_tensor *weight, int64_t ignore,
                                     loom_dtype dt) {
  loom_no_grad_begin();
  loom_tensor *valid, *safe, *out;
  split_target(target, ignore, &valid, &safe);
  if (weight) {
    loom_tensor *w = loom_reshape(loom_index_select(weight, 0, loom_reshape(safe, LOOM_SHAPE(-1))), target->shape);
    out = loom_where(valid, w, loom_scalar_like(weight, 0));
  } else {
    out = loom_to_dtype(valid, dt);
  }
  loom_no_grad_end();
  return out;
}

/* ---- argument checks shared by cross_entropy and nll_loss ---- */
typedef struct ce_args {
  const loom_tensor *x, *t, *w; /* batched: x [N, C, d...]; t i64 [N, d...] or float x-shaped */
  bool probs, unbatched;
  int64_t C, ignore;
  double s;
  loom_reduction r;
} ce_args;

static bool ce_prepare(const char *name, const loom_tensor *logits, const loom_tensor *target,
                       const loom_tensor *weight, bool set_ignore, int64_t ignore, double s, loom_reduction r,
                       ce_args *a) {
  if (!core_loss_check_reduction(name, r, false)) return false;
  if (!(s >= 0 && s <= 1)) {
    core_set_error(LOOM_ERR_INVALID, "%s: label_smoothing must be in [0, 1], got %g", name, s);
    return false;
  }
  const loom_tensor *x = core_autocast_f32(logits);
  if (!x) return false;
  if (!loom_dtype_is_float(x->dtype) || x->shape.ndim == 0) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected float input [N, C, d1...] or [C], got %s %s", name,
                   loom_dtype_name(x->dtype), loom_shape_str(x->shape));
    return false;
  }
  a->unbatched = x->shape.ndim == 1;
  if (a->unbatched) x = loom_unsqueeze(x, 0);
  a->C = x->shape.d[1];
  /* 0 is the all-zero options' value: the default unless explicitly set (losses.h) */
  a->ignore = set_ignore || ignore != 0 ? ignore : LOOM_IGNORE_INDEX_DEFAULT;
  a->s = s;
  a->r = r;
  a->w = weight ? core_autocast_f32(weight) : NULL;
  if (a->w && (a->w->shape.ndim != 1 || a->w->shape.d[0] != a->C || a->w->dtype != x->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "%s: weight must be %s [%lld] like the input, got %s %s", name,
                   loom_dtype_name(x->dtype), (long long)a->C, loom_dtype_name(a->w->dtype),
                   loom_shape_str(a->w->shape));
    return false;
  }
  if (a->w && !core_check_same_device(name, x, a->w)) return false;
  a->probs = loom_dtype_is_float(target->dtype);
  if (a->probs) {
    const loom_tensor *t = core_autocast_f32(target);
    if (t && a->unbatched) t = loom_unsqueeze(t, 0);
    if (!t || !core_loss_check_pair(name, x, t)) return false;
    a->t = t;
  } else {
    loom_shape want = x->shape;
    for (int i = 1; i < want.ndim - 1; i++) want.d[i] = want.d[i + 1];
    want.ndim--;
    if (a->unbatched) want.ndim = 0;
    const loom_tensor *t = core_loss_class_target(name, target, want, a->C, a->ignore, x->storage->device);
    if (t && a->unbatched) t = loom_unsqueeze(t, 0);
    if (!t) return false;
    a->t = t;
  }
  a->x = x;
  return true;
}

/* weight viewed as [1, C, 1, ...] to broadcast over x */
static loom_tensor *class_view(const loom_tensor *w, const loom_tensor *x) {
  loom_shape s = x->shape;
  for (int i = 0; i < s.ndim; i++) s.d[i] = i == 1 ? s.d[i] : 1;
  return loom_reshape(w, s);
}

static loom_tensor *finish(const ce_args *a, loom_tensor *out) {
  if (out && a->unbatched && a->r == LOOM_REDUCTION_NONE) out = loom_reshape(out, LOOM_SHAPE());
  return out;
}

/* ---- composed forms ---- */
static loom_tensor *log_softmax_1(const loom_tensor *x) { return loom_log_softmax(x, 1); }

/* Reduces the per-target loss l with mean dividing by the summed target weights wt. */
static loom_tensor *reduce_weighted(const loom_tensor *l, const loom_tensor *wt, loom_reduction r) {
  if (r != LOOM_REDUCTION_MEAN) return core_loss_reduce(l, r, 0);
  return loom_div(loom_sum(l, NULL, 0, false), loom_sum(wt, NULL, 0, false));
}

/* NLL of log-probabilities over class indices, with PyTorch's label smoothing. */
static loom_tensor *nll_indices(const ce_args *a, const loom_tensor *logp) {
  const int d = 1;
  loom_tensor *valid, *safe;
  split_target(a->t, a->ignore, &valid, &safe);
  loom_tensor *wt = core_loss_target_weight(a->t, a->w, a->ignore, logp->dtype);
  loom_tensor *zero = loom_scalar_like(logp, 0);
  loom_tensor *picked = loom_squeeze(loom_gather(logp, 1, loom_unsqueeze(safe, 1)), 1);
  loom_tensor *l = loom_where(valid, loom_neg(loom_mul(picked, wt)), zero);
  loom_tensor *out = reduce_weighted(l, wt, a->r);
  if (a->s > 0) {
    const loom_tensor *wl = a->w ? loom_mul(logp, class_view(a->w, logp)) : logp;
    loom_tensor *smooth = loom_where(valid, loom_neg(loom_sum(wl, &d, 1, false)), zero);
    out = loom_add(loom_mul_scalar(out, 1 - a->s),
                   loom_mul_scalar(reduce_weighted(smooth, wt, a->r), a->s / (double)a->C));
  }
  return out;
}

/* Cross-entropy against class probabilities (mean divides by N * d1 * ...). */
static loom_tensor *ce_probs(const ce_args *a, const loom_tensor *logp) {
  const int d = 1;
  const loom_tensor *t = a->t;
  if (a->s > 0) t = loom_add_scalar(loom_mul_scalar(t, 1 - a->s), a->s / (double)a->C);
  loom_tensor *prod = loom_mul(logp, t);
  if (a->w) prod = loom_mul(prod, class_view(a->w, logp));
  loom_tensor *l = loom_neg(loom_sum(prod, &d, 1, false));
  return core_loss_reduce(l, a->r, 0);
}

static const loom_cross_entropy_opts k_ce_defaults = {0};

static loom_tensor *cross_entropy(const char *name, const loom_tensor *logits, const loom_tensor *target,
                                  const loom_cross_entropy_opts *o, bool fused) {
  if (!logits || !target) {
    core_null_error("%s: %s is NULL", name, logits ? "target" : "input");
    return NULL;
  }
  if (!o) o = &k_ce_defaults;
  loom_scope_begin();
  ce_args a;
  loom_tensor *out = NULL;
  if (ce_prepare(name, logits, target, o->weight, o->set_ignore_index, o->ignore_index, o->label_smoothing,
                 o->reduction, &a)) {
    if (a.probs) {
      out = ce_probs(&a, log_softmax_1(a.x));
    } else if (!fused) {
      out = nll_indices(&a, log_softmax_1(a.x));
    } else {
      /* rows of C: classes last, [N, C, d...] -> [N * d..., C] */
      const loom_tensor *x = a.x;
      if (x->shape.ndim > 2) {
        int perm[LOOM_MAX_DIMS], k = 0;
        perm[k++] = 0;
        for (int i = 2; i < x->shape.ndim; i++) perm[k++] = i;
        perm[k++] = 1;
        x = loom_permute(x, perm, x->shape.ndim);
      }
      x = loom_reshape(x, LOOM_SHAPE(-1, a.C));
      loom_tensor *rows = core_cross_entropy_rows(x, loom_reshape(a.t, LOOM_SHAPE(-1)), a.w, a.ignore, a.s);
      loom_tensor *l = rows ? loom_reshape(rows, a.t->shape) : NULL;
      out = l ? reduce_weighted(l, core_loss_target_weight(a.t, a.w, a.ignore, l->dtype), a.r) : NULL;
    }
    out = finish(&a, out);
  }
  loom_keep(out);
  loom_scope_end();
  return out;
}

loom_tensor *loom_cross_entropy(const loom_tensor *logits, const loom_tensor *target,
                                const loom_cross_entropy_opts *opts) {
  return cross_entropy("cross_entropy", logits, target, opts, true);
}

loom_tensor *loom_cross_entropy_unfused(const loom_tensor *logits, const loom_tensor *target,
                                        const loom_cross_entropy_opts *opts) {
  return cross_entropy("cross_entropy", logits, target, opts, false);
}

loom_tensor *loom_nll_loss(const loom_tensor *log_probs, const loom_tensor *target, const loom_nll_loss_opts *o) {
  const char *name = "nll_loss";
  if (!log_probs || !target) {
    core_null_error("%s: %s is NULL", name, log_probs ? "target" : "input");
    return NULL;
  }
  static const loom_nll_loss_opts defaults = {0};
  if (!o) o = &defaults;
  if (loom_dtype_is_float(target->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "%s: target must hold class indices (i64), got %s", name,
                   loom_dtype_name(target->dtype));
    return NULL;
  }
  loom_scope_begin();
  ce_args a;
  loom_tensor *out = NULL;
  if (ce_prepare(name, log_probs, target, o->weight, o->set_ignore_index, o->ignore_index, 0, o->reduction, &a))
    out = finish(&a, nll_indices(&a, a.x));
  loom_keep(out);
  loom_scope_end();
  return out;
}
