/* The default loss, evaluation over a loader, and the NaN / Inf search that
 * names the first bad parameter or gradient. */
#include "loom/train.h"
#include "loom/autograd.h"
#include "loom/losses.h"
#include "loom/ops.h"
#include "loom/runtime.h"
#include "core/tensor_impl.h"
#include "train/train_impl.h"

#include <math.h>
#include <stdio.h>

loom_tensor *loom_loss_cross_entropy(loom_module *model, loom_tensor *x, loom_tensor *y, loom_tensor **logits,
                                     void *user) {
  (void)user;
  loom_tensor *out = loom_forward(model, x);
  if (logits) *logits = out;
  return loom_cross_entropy(out, y, NULL);
}

double train_read_loss(const loom_tensor *loss, const loom_tensor *logits, const loom_tensor *y, double *correct) {
  *correct = -1;
  if (!loss) return NAN;   /* whoever failed said why */
  bool count = logits && y && loom_ndim(logits) == 2 && loom_ndim(y) == 1 && loom_size(y, 0) == loom_size(logits, 0) &&
               !loom_dtype_is_float(loom_dtype_of(y));
  double out[2] = {NAN, -1};
  loom_no_grad_begin();
  loom_scope_begin();
  loom_tensor *parts[2] = {loom_to_dtype(loom_reshape(loss, LOOM_SHAPE(1)), LOOM_F64), NULL};
  if (count) {
    loom_tensor *pred = loom_argmax(logits, 1, false);
    loom_tensor *hits = loom_eq(pred, loom_dtype_of(y) == LOOM_I64 ? y : loom_to_dtype(y, LOOM_I64));
    parts[1] = loom_reshape(loom_sum(loom_to_dtype(hits, LOOM_F64), NULL, 0, false), LOOM_SHAPE(1));
  }
  loom_tensor *both = loom_cat(parts, count ? 2 : 1, 0);
  if (both && loom_to_host(both, out, (size_t)(count ? 2 : 1) * sizeof(double)) != LOOM_OK) out[0] = NAN, out[1] = -1;
  if (!both) out[0] = NAN;
  loom_scope_end();
  loom_no_grad_end();
  *correct = out[1];
  return out[0];
}

int loom_evaluate_fn(loom_module *model, loom_loader *loader, loom_loss_fn fn, void *user, double *loss,
                     double *acc) {
  if (loss) *loss = NAN;
  if (acc) *acc = NAN;
  if (!model || !loader) return core_set_error(LOOM_ERR_INVALID, "loom_evaluate: NULL %s", !model ? "model" : "loader");
  if (!fn) fn = loom_loss_cross_entropy;
  bool was_training = loom_module_training(model);
  loom_module_train(model, false);
  loom_no_grad_begin();
  int st = loom_loader_start_epoch(loader, 0);
  double loss_sum = 0, correct = 0;
  int64_t seen = 0, counted = 0;
  while (!st) {
    loom_scope_begin();
    loom_tensor *x, *y, *logits = NULL;
    if (!loom_loader_next(loader, &x, &y)) {
      st = loom_last_status();
      loom_scope_end();
      break;
    }
    int64_t b = loom_size(x, 0);
    loom_clear_error();
    loom_tensor *batch_loss = fn(model, x, y, &logits, user);
    double c, l = train_read_loss(batch_loss, logits, y, &c);
    if (isnan(l) && loom_last_status() != LOOM_OK) st = loom_last_status();
    loom_scope_end();
    if (st) break;
    loss_sum += l * (double)b;
    seen += b;
    if (c >= 0) correct += c, counted += b;
  }
  loom_no_grad_end();
  loom_module_train(model, was_training);
  if (st) return st;
  if (loss) *loss = seen ? loss_sum / (double)seen : NAN;
  if (acc) *acc = counted ? correct / (double)counted : NAN;
  return LOOM_OK;
}

int loom_evaluate(loom_module *model, loom_loader *loader, double *loss, double *acc) {
  return loom_evaluate_fn(model, loader, NULL, NULL, loss, acc);
}

/* 1 when t holds a NaN or Inf (kind set), 0 when not, negative status on error. */
static int nonfinite(const loom_tensor *t, const char **kind) {
  loom_clear_error();
  loom_scope_begin();
  /* x * 0 is 0 for finite x and NaN otherwise: the sum cannot overflow. */
  double probe = loom_item(loom_sum(loom_mul_scalar(t, 0.0), NULL, 0, false));
  int r = 0;
  if (isnan(probe) && loom_last_status() != LOOM_OK) r = -(int)loom_last_status();
  else if (probe != 0) {
    double same = loom_item(loom_sum(loom_to_dtype(loom_eq(t, t), LOOM_F32), NULL, 0, false));
    *kind = same < (double)loom_numel(t) ? "NaN" : "Inf";
    r = 1;
  }
  loom_scope_end();
  return r;
}

/* The tensor checked at (pass, i): pass 0 = parameters, pass 1 = gradients. */
static const loom_tensor *checked(const loom_named_tensors *p, int pass, int i) {
  const loom_tensor *t = pass ? loom_grad(p->tensors[i]) : p->tensors[i];
  return t && loom_dtype_is_float(loom_dtype_of(t)) ? t : NULL;
}

/* 1 when any tensor of the passes holds a NaN or Inf: one sum of x * 0 over
 * all of them (x * 0 is 0 for finite x, NaN otherwise), so one device sync. */
static int any_nonfinite(const loom_named_tensors *p, int first, int last) {
  loom_clear_error();
  loom_scope_begin();
  loom_tensor *acc = NULL;
  for (int pass = first; pass <= last; pass++)
    for (int i = 0; i < p->n; i++) {
      const loom_tensor *t = checked(p, pass, i);
      if (!t) continue;
      loom_tensor *probe = loom_to_dtype(loom_sum(loom_mul_scalar(t, 0.0), NULL, 0, false), LOOM_F32);
      acc = acc ? loom_add(acc, probe) : probe;
    }
  double v = acc ? loom_item(acc) : 0;
  int r = isnan(v) && loom_last_status() != LOOM_OK ? -(int)loom_last_status() : v != 0;
  loom_scope_end();
  return r;
}

int train_first_nonfinite(const loom_module *model, bool params, bool grads, char *msg, size_t size) {
  if (!model) return -core_set_error(LOOM_ERR_INVALID, "loom_check_finite: model is NULL");
  loom_named_tensors *p = loom_module_named_parameters(model);
  if (!p) return -(int)loom_last_status();
  int first = params ? 0 : 1, last = grads ? 1 : 0;
  loom_no_grad_begin();
  int r = first <= last ? any_nonfinite(p, first, last) : 0;
  for (int pass = first; pass <= last && r == 1; pass++) {
    for (int i = 0; i < p->n && r == 1; i++) {
      const loom_tensor *t = checked(p, pass, i);
      const char *kind = "";
      if (!t || nonfinite(t, &kind) != 1) continue;
      if (msg && size)
        snprintf(msg, size, pass ? "gradient of '%s' holds %s" : "parameter '%s' holds %s", p->names[i], kind);
      r = 2;
    }
  }
  loom_no_grad_end();
  loom_named_tensors_free(p);
  if (r == 1 && msg && size) snprintf(msg, size, "a %s holds NaN or Inf", grads ? "gradient" : "parameter");
  return r ? (r < 0 ? r : 1) : 0;
}

int loom_check_finite(const loom_module *model, bool grads, char *msg, size_t size) {
  return train_first_nonfinite(model, true, grads, msg, size);
}
