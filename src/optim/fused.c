/* The fused multi-tensor optimiser updates (ops sgd_step, adam_step,
 * rmsprop_step; see src/core/ops_optim.def): checks, the list record built on
 * the host and moved to the device, one kernel launch per call. Also the
 * option defaults of the optimisers. */
#include <string.h>

#include "optim/fused.h"
#include "optim/optim_impl.h"

/* ---- options ---- */

bool optim_resolve_sgd(const loom_sgd_opts *in, loom_sgd_opts *out) {
  loom_sgd_opts o = in ? *in : (loom_sgd_opts){0};
  o.lr = optim_or(o.lr, 1e-3);
  if (!(o.lr >= 0) || !(o.momentum >= 0) || !(o.weight_decay >= 0) || !(o.dampening >= 0)) {
    core_set_error(LOOM_ERR_INVALID, "SGD: lr, momentum, dampening and weight_decay must be >= 0, got %g, %g, %g, %g",
                   o.lr, o.momentum, o.dampening, o.weight_decay);
    return false;
  }
  if (o.nesterov && (o.momentum <= 0 || o.dampening != 0)) {
    core_set_error(LOOM_ERR_INVALID, "SGD: nesterov needs momentum > 0 and dampening = 0, got %g and %g", o.momentum,
                   o.dampening);
    return false;
  }
  *out = o;
  return true;
}

bool optim_resolve_adam(const char *name, const loom_adam_opts *in, bool adamw, loom_adam_opts *out) {
  loom_adam_opts o = in ? *in : (loom_adam_opts){0};
  o.lr = optim_or(o.lr, 1e-3);
  o.beta1 = optim_or(o.beta1, 0.9);
  o.beta2 = optim_or(o.beta2, 0.999);
  o.eps = optim_or(o.eps, 1e-8);
  o.weight_decay = adamw ? optim_or(o.weight_decay, 1e-2) : o.weight_decay;
  if (!(o.lr >= 0) || !(o.eps >= 0) || !(o.weight_decay >= 0)) {
    core_set_error(LOOM_ERR_INVALID, "%s: lr, eps and weight_decay must be >= 0, got %g, %g, %g", name, o.lr, o.eps,
                   o.weight_decay);
    return false;
  }
  if (!(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1)) {
    core_set_error(LOOM_ERR_INVALID, "%s: betas must be in [0, 1), got (%g, %g)", name, o.beta1, o.beta2);
    return false;
  }
  *out = o;
  return true;
}

bool optim_resolve_rmsprop(const loom_rmsprop_opts *in, loom_rmsprop_opts *out) {
  loom_rmsprop_opts o = in ? *in : (loom_rmsprop_opts){0};
  o.lr = optim_or(o.lr, 1e-2);
  o.alpha = optim_or(o.alpha, 0.99);
  o.eps = optim_or(o.eps, 1e-8);
  if (!(o.lr >= 0) || !(o.alpha >= 0) || !(o.eps >= 0) || !(o.weight_decay >= 0) || !(o.momentum >= 0)) {
    core_set_error(LOOM_ERR_INVALID, "RMSprop: lr, alpha, eps, weight_decay and momentum must be >= 0, got %g, %g, %g, %g, %g",
                   o.lr, o.alpha, o.eps, o.weight_decay, o.momentum);
    return false;
  }
  *out = o;
  return true;
}

/* ---- the list and the launch ---- */

/* lists[0] = params, lists[1] = grads, lists[2..] = states (a NULL list = unused). */
static loom_status check_lists(const char *op, loom_tensor *const *const *lists, int n, const loom_fused_scalars *sc) {
  if (n < 0 || (n > 0 && (!lists[0] || !lists[1] || !sc)))
    return core_set_error(LOOM_ERR_INVALID, "%s: need n >= 0 and non-NULL params, grads and scalars", op);
  static const char *what[5] = {"param", "grad", "state 0", "state 1", "state 2"};
  const loom_tensor *p0 = n ? lists[0][0] : NULL;
  for (int i = 0; i < n; i++) {
    const loom_tensor *p = lists[0][i];
    if (!p) return core_set_error(LOOM_ERR_INVALID, "%s: param %d is NULL", op, i);
    if (!loom_dtype_is_float(p->dtype) || p->dtype != p0->dtype || !loom_device_equal(p->storage->device, p0->storage->device))
      return core_set_error(LOOM_ERR_INVALID, "%s: params must share one floating dtype and device: param 0 is %s on %s, param %d %s on %s",
                            op, loom_dtype_name(p0->dtype), loom_device_name(p0->storage->device), i,
                            loom_dtype_name(p->dtype), loom_device_name(p->storage->device));
    for (int l = 0; l < 5; l++) {
      if (!lists[l]) continue;
      const loom_tensor *t = lists[l][i];
      if (!t) return core_set_error(LOOM_ERR_INVALID, "%s: %s %d is NULL", op, what[l], i);
      if (t->dtype != p->dtype || !loom_device_equal(t->storage->device, p->storage->device) ||
          !loom_shape_equal(t->shape, p->shape) || !core_is_contiguous(t))
        return core_set_error(LOOM_ERR_INVALID, "%s: %s %d must be a contiguous %s %s tensor on %s like its param, got %s %s on %s%s",
                              op, what[l], i, loom_dtype_name(p->dtype), loom_shape_str(p->shape),
                              loom_device_name(p->storage->device), loom_dtype_name(t->dtype), loom_shape_str(t->shape),
                              loom_device_name(t->storage->device), core_is_contiguous(t) ? "" : " (not contiguous)");
      for (int j = 0; j < l; j++)
        if (l >= 2 && j != 1 && lists[j] && loom_shares_storage(lists[j][i], t))
          return core_set_error(LOOM_ERR_INVALID, "%s: %s %d shares storage with %s %d", op, what[l], i, what[j], i);
    }
  }
  return LOOM_OK;
}

/* Builds the list, moves it to the params' device and launches op. fill()
 * sets the op-specific per-tensor scalars s[2], s[3]. */
static loom_status launch(core_op op, loom_tensor *const *const *lists, int n, const loom_fused_scalars *sc,
                          core_attrs a, void (*fill)(optim_entry *e, const loom_fused_scalars *sc, const core_attrs *a)) {
  if (n == 0) return LOOM_OK;
  loom_status st = LOOM_OK;
  loom_scope_begin();
  loom_tensor *host = loom_empty(LOOM_SHAPE((int64_t)(n * sizeof(optim_entry))), LOOM_U8, loom_cpu());
  if (!host) st = loom_last_status();
  int m = 0;
  int64_t chunks = 0;
  for (int i = 0; st == LOOM_OK && i < n; i++) {
    int64_t numel = core_numel(lists[0][i]);
    if (numel == 0) continue;
    optim_entry *e = (optim_entry *)core_ptr(host) + m++;
    memset(e, 0, sizeof *e);
    for (int l = 0; l < 5; l++) e->p[l] = lists[l] ? core_ptr(lists[l][i]) : NULL;
    e->n = numel;
    e->chunk0 = chunks;
    chunks += (numel + OPTIM_CHUNK - 1) / OPTIM_CHUNK;
    e->s[0] = sc[i].lr;
    e->s[1] = sc[i].weight_decay;
    fill(e, &sc[i], &a);
  }
  if (st == LOOM_OK && m > 0) {
    loom_tensor *p0 = lists[0][0];
    loom_tensor *table = host;
    if (p0->storage->device.type != LOOM_CPU) table = loom_to_device(host, p0->storage->device);
    if (!table) st = loom_last_status();
    if (st == LOOM_OK) {
      a.i[0] = m;
      a.i[1] = chunks;
      core_kctx k = {op, 2, 0, {p0, table}, {NULL}, a, NULL};
      st = core_launch(&k);
    }
  }
  loom_scope_end();
  return st;
}

static void fill_sgd(optim_entry *e, const loom_fused_scalars *sc, const core_attrs *a) {
  (void)a;
  e->s[2] = sc->first ? 1 : 0;
}

static void fill_adam(optim_entry *e, const loom_fused_scalars *sc, const core_attrs *a) {
  e->s[2] = 1 - pow(a->f[0], (double)sc->step);
  e->s[3] = 1 - pow(a->f[1], (double)sc->step);
}

static void fill_none(optim_entry *e, const loom_fused_scalars *sc, const core_attrs *a) {
  (void)e, (void)sc, (void)a;
}

int loom_sgd_update(loom_tensor *const *params, loom_tensor *const *grads, loom_tensor *const *momentum_bufs,
                    const loom_fused_scalars *sc, int n, const loom_sgd_opts *o) {
  loom_sgd_opts r;
  if (!optim_resolve_sgd(o, &r)) return loom_last_status();
  if (r.momentum > 0 && n > 0 && !momentum_bufs)
    return core_set_error(LOOM_ERR_INVALID, "sgd_step: momentum %g needs momentum buffers", r.momentum);
  loom_tensor *const *lists[5] = {params, grads, r.momentum > 0 ? momentum_bufs : NULL, NULL, NULL};
  loom_status st = check_lists("sgd_step", lists, n, sc);
  if (st) return st;
  core_attrs a = {{0}, {0}};
  a.f[0] = r.momentum;
  a.f[1] = r.dampening;
  a.i[2] = r.nesterov;
  a.i[3] = r.maximize;
  return launch(CORE_OP_sgd_step, lists, n, sc, a, fill_sgd);
}

int loom_adam_update(loom_tensor *const *params, loom_tensor *const *grads, loom_tensor *const *exp_avgs,
                     loom_tensor *const *exp_avg_sqs, loom_tensor *const *max_exp_avg_sqs,
                     const loom_fused_scalars *sc, int n, const loom_adam_opts *o, bool decoupled) {
  const char *name = decoupled ? "AdamW" : "Adam";
  loom_adam_opts r;
  if (!optim_resolve_adam(name, o, decoupled, &r)) return loom_last_status();
  if (n > 0 && (!exp_avgs || !exp_avg_sqs || (r.amsgrad && !max_exp_avg_sqs)))
    return core_set_error(LOOM_ERR_INVALID, "adam_step: needs exp_avg and exp_avg_sq lists%s",
                          r.amsgrad ? " and (amsgrad) max_exp_avg_sq" : "");
  for (int i = 0; i < n && sc; i++)
    if (sc[i].step < 1) return core_set_error(LOOM_ERR_INVALID, "adam_step: step of entry %d is %lld, must be >= 1", i,
                                              (long long)sc[i].step);
  loom_tensor *const *lists[5] = {params, grads, exp_avgs, exp_avg_sqs, r.amsgrad ? max_exp_avg_sqs : NULL};
  loom_status st = check_lists("adam_step", lists, n, sc);
  if (st) return st;
  core_attrs a = {{0}, {0}};
  a.f[0] = r.beta1;
  a.f[1] = r.beta2;
  a.f[2] = r.eps;
  a.i[2] = r.amsgrad;
  a.i[3] = r.maximize;
  a.i[4] = decoupled;
  return launch(CORE_OP_adam_step, lists, n, sc, a, fill_adam);
}

int loom_rmsprop_update(loom_tensor *const *params, loom_tensor *const *grads, loom_tensor *const *square_avgs,
                        loom_tensor *const *momentum_bufs, loom_tensor *const *grad_avgs,
                        const loom_fused_scalars *sc, int n, const loom_rmsprop_opts *o) {
  loom_rmsprop_opts r;
  if (!optim_resolve_rmsprop(o, &r)) return loom_last_status();
  if (n > 0 && (!square_avgs || (r.momentum > 0 && !momentum_bufs) || (r.centered && !grad_avgs)))
    return core_set_error(LOOM_ERR_INVALID, "rmsprop_step: needs square_avg%s%s lists",
                          r.momentum > 0 ? ", momentum_buffer" : "", r.centered ? ", grad_avg" : "");
  loom_tensor *const *lists[5] = {params, grads, square_avgs, r.momentum > 0 ? momentum_bufs : NULL,
                                  r.centered ? grad_avgs : NULL};
  loom_status st = check_lists("rmsprop_step", lists, n, sc);
  if (st) return st;
  core_attrs a = {{0}, {0}};
  a.f[0] = r.alpha;
  a.f[1] = r.eps;
  a.f[2] = r.momentum;
  a.i[2] = r.centered;
  a.i[3] = r.maximize;
  return launch(CORE_OP_rmsprop_step, lists, n, sc, a, fill_none);
}
