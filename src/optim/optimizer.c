/* The optimiser object: parameters in groups, lazily created per-parameter
 * state, step (one fused launch per device and dtype), zero_grad and lrs. The
 * checkpoint state is in src/optim/optim_state.c. */
#include <stdlib.h>
#include <string.h>

#include "optim/optimizer_impl.h"

static const char *const state_names[OPT_KIND_COUNT][3] = {
    {"momentum_buffer", NULL, NULL},
    {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
    {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
    {"square_avg", "momentum_buffer", "grad_avg"},
};
static const char *const kind_names[OPT_KIND_COUNT] = {"SGD", "Adam", "AdamW", "RMSprop"};

const char *optim_state_name(const loom_optimizer *opt, int s) { return state_names[opt->kind][s]; }

bool optim_state_used(const loom_optimizer *opt, const optim_group *grp, int s) {
  switch (opt->kind) {
    case OPT_SGD: return s == 0 && grp->o.sgd.momentum != 0;
    case OPT_ADAM:
    case OPT_ADAMW: return s < 2 || (s == 2 && grp->o.adam.amsgrad);
    default: return s == 0 || (s == 1 && grp->o.rmsprop.momentum > 0) || (s == 2 && grp->o.rmsprop.centered);
  }
}

const char *loom_optimizer_name(const loom_optimizer *opt) { return opt ? kind_names[opt->kind] : NULL; }

optim_group *optim_groups(loom_optimizer *opt, int *n) {
  *n = opt ? opt->n_groups : 0;
  return opt ? opt->groups : NULL;
}

static double *group_momentum(optim_kind kind, optim_group *grp) {
  switch (kind) {
    case OPT_SGD: return &grp->o.sgd.momentum;
    case OPT_ADAM:
    case OPT_ADAMW: return &grp->o.adam.beta1;
    default: return &grp->o.rmsprop.momentum;
  }
}

double *optim_group_momentum(loom_optimizer *opt, int g) {
  if (!opt || g < 0 || g >= opt->n_groups) return NULL;
  return group_momentum(opt->kind, &opt->groups[g]);
}

bool optim_momentum_ok(const loom_optimizer *opt, int g, double v) {
  optim_group trial = opt->groups[g];
  *group_momentum(opt->kind, &trial) = v;
  return isfinite(v) && optim_check_group(opt, &trial);
}

double loom_optimizer_get_momentum(const loom_optimizer *opt, int group) {
  if (!opt || group < 0 || group >= opt->n_groups) {
    core_set_error(LOOM_ERR_INVALID, "optimizer_get_momentum: group %d out of range [0, %d)", group,
                   opt ? opt->n_groups : 0);
    return NAN;
  }
  return *group_momentum(opt->kind, &opt->groups[group]);
}

static double pin(double v) { return v == 0 ? LOOM_OPT_ZERO : v; }

/* The options struct the fused update takes for group grp: the group's lr and
 * weight_decay, and every zero a true zero (not "default"). */
static optim_group explicit_opts(optim_kind kind, const optim_group *grp) {
  optim_group r = *grp;
  switch (kind) {
    case OPT_SGD: r.o.sgd.lr = pin(grp->lr), r.o.sgd.weight_decay = grp->weight_decay; break;
    case OPT_ADAM:
    case OPT_ADAMW:
      r.o.adam.lr = pin(grp->lr), r.o.adam.weight_decay = pin(grp->weight_decay);
      r.o.adam.beta1 = pin(r.o.adam.beta1), r.o.adam.beta2 = pin(r.o.adam.beta2), r.o.adam.eps = pin(r.o.adam.eps);
      break;
    default:
      r.o.rmsprop.lr = pin(grp->lr), r.o.rmsprop.weight_decay = grp->weight_decay;
      r.o.rmsprop.alpha = pin(r.o.rmsprop.alpha), r.o.rmsprop.eps = pin(r.o.rmsprop.eps);
      break;
  }
  return r;
}

bool optim_check_group(const loom_optimizer *opt, const optim_group *grp) {
  optim_group r = explicit_opts(opt->kind, grp), out;
  switch (opt->kind) {
    case OPT_SGD: return optim_resolve_sgd(&r.o.sgd, &out.o.sgd);
    case OPT_ADAM:
    case OPT_ADAMW: return optim_resolve_adam(kind_names[opt->kind], &r.o.adam, opt->kind == OPT_ADAMW, &out.o.adam);
    default: return optim_resolve_rmsprop(&r.o.rmsprop, &out.o.rmsprop);
  }
}

static loom_optimizer *create(optim_kind kind, double lr, double wd) {
  loom_optimizer *opt = calloc(1, sizeof *opt);
  if (!opt) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", kind_names[kind]);
    return NULL;
  }
  opt->kind = kind;
  opt->defaults.lr = lr;
  opt->defaults.weight_decay = wd;
  return opt;
}

static loom_optimizer *finish(loom_optimizer *opt, loom_tensor *const *params, int n) {
  if (n != 0 && loom_optimizer_add_param_group(opt, params, n, -1, -1) < 0) {
    loom_optimizer_free(opt);
    return NULL;
  }
  return opt;
}

loom_optimizer *loom_sgd(loom_tensor *const *params, int n, const loom_sgd_opts *o) {
  loom_sgd_opts r;
  if (!optim_resolve_sgd(o, &r)) return NULL;
  loom_optimizer *opt = create(OPT_SGD, r.lr, r.weight_decay);
  if (opt) opt->defaults.o.sgd = r;
  return opt ? finish(opt, params, n) : NULL;
}

static loom_optimizer *adam_like(optim_kind kind, loom_tensor *const *params, int n, const loom_adam_opts *o) {
  loom_adam_opts r;
  if (!optim_resolve_adam(kind_names[kind], o, kind == OPT_ADAMW, &r)) return NULL;
  loom_optimizer *opt = create(kind, r.lr, r.weight_decay);
  if (opt) opt->defaults.o.adam = r;
  return opt ? finish(opt, params, n) : NULL;
}

loom_optimizer *loom_adam(loom_tensor *const *params, int n, const loom_adam_opts *o) {
  return adam_like(OPT_ADAM, params, n, o);
}
loom_optimizer *loom_adamw(loom_tensor *const *params, int n, const loom_adam_opts *o) {
  return adam_like(OPT_ADAMW, params, n, o);
}

loom_optimizer *loom_rmsprop(loom_tensor *const *params, int n, const loom_rmsprop_opts *o) {
  loom_rmsprop_opts r;
  if (!optim_resolve_rmsprop(o, &r)) return NULL;
  loom_optimizer *opt = create(OPT_RMSPROP, r.lr, r.weight_decay);
  if (opt) opt->defaults.o.rmsprop = r;
  return opt ? finish(opt, params, n) : NULL;
}

void optim_param_clear(optim_param *p) {
  for (int s = 0; s < 3; s++) {
    loom_release(p->state[s]);
    p->state[s] = NULL;
  }
  p->step = 0;
  p->fresh = false;
}

void loom_optimizer_free(loom_optimizer *opt) {
  if (!opt) return;
  for (int i = 0; i < opt->n_params; i++) {
    optim_param_clear(&opt->params[i]);
    loom_release(opt->params[i].p);
  }
  free(opt->params);
  free(opt->groups);
  free(opt);
}

/* Adds a group holding params with options grp (already checked). */
static int add_group(loom_optimizer *opt, loom_tensor *const *params, int n, const optim_group *grp) {
  if (!opt) return core_set_error(LOOM_ERR_INVALID, "add_param_group: optimizer is NULL"), -1;
  const char *name = kind_names[opt->kind];
  if (n < 0 || (n > 0 && !params))
    return core_set_error(LOOM_ERR_INVALID, "%s.add_param_group: need n >= 0 parameters, got %d%s", name, n,
                          params ? "" : " and NULL"), -1;
  for (int i = 0; i < n; i++) {
    const loom_tensor *t = params[i];
    if (!t) return core_null_error("%s.add_param_group: parameter %d is NULL", name, i), -1;
    if (!loom_dtype_is_float(t->dtype) || !loom_is_leaf(t) || !core_is_contiguous(t))
      return core_set_error(LOOM_ERR_INVALID, "%s: parameter %d must be a contiguous floating leaf tensor, got %s %s%s%s",
                            name, i, loom_dtype_name(t->dtype), loom_shape_str(t->shape),
                            loom_is_leaf(t) ? "" : " (not a leaf)", core_is_contiguous(t) ? "" : " (not contiguous)"), -1;
    for (int j = 0; j < opt->n_params + i; j++)
      if ((j < opt->n_params ? opt->params[j].p : params[j - opt->n_params]) == t)
        return core_set_error(LOOM_ERR_INVALID, "%s: parameter %d appears in more than one place (groups must not overlap)",
                              name, i), -1;
  }
  optim_param *np = realloc(opt->params, (size_t)(opt->n_params + n + 1) * sizeof *np);
  if (np) opt->params = np;
  optim_group *ng = realloc(opt->groups, (size_t)(opt->n_groups + 1) * sizeof *ng);
  if (ng) opt->groups = ng;
  if (!np || !ng) return core_set_error(LOOM_ERR_OOM, "%s.add_param_group: out of host memory", name), -1;
  int g = opt->n_groups++;
  opt->groups[g] = *grp;
  opt->groups[g].initial_lr = 0;
  opt->groups[g].has_initial_lr = false;
  for (int i = 0; i < n; i++) {
    optim_param *p = &opt->params[opt->n_params++];
    memset(p, 0, sizeof *p);
    p->p = loom_retain(params[i]);
    p->group = g;
  }
  return g;
}

int loom_optimizer_add_param_group(loom_optimizer *opt, loom_tensor *const *params, int n, double lr,
                                   double weight_decay) {
  if (!opt) return core_set_error(LOOM_ERR_INVALID, "add_param_group: optimizer is NULL"), -1;
  optim_group grp = opt->defaults;
  if (lr >= 0) grp.lr = lr;
  if (weight_decay >= 0) grp.weight_decay = weight_decay;
  return add_group(opt, params, n, &grp);
}

/* A group with its own options o (NULL = the optimiser's), read as the constructor reads them. */
#define ADD_GROUP(FN, OPTS, FIELD, KIND_OK, RESOLVE)                                                      \
  int FN(loom_optimizer *opt, loom_tensor *const *params, int n, const OPTS *o) {                        \
    if (!opt) return core_set_error(LOOM_ERR_INVALID, #FN ": optimizer is NULL"), -1;                    \
    if (!(KIND_OK))                                                                                       \
      return core_set_error(LOOM_ERR_INVALID, #FN ": the optimizer is %s", kind_names[opt->kind]), -1;   \
    optim_group grp = opt->defaults;                                                                      \
    if (o) {                                                                                              \
      if (!(RESOLVE)) return -1;                                                                          \
      grp.lr = grp.o.FIELD.lr, grp.weight_decay = grp.o.FIELD.weight_decay;                               \
    }                                                                                                     \
    return add_group(opt, params, n, &grp);                                                               \
  }
ADD_GROUP(loom_sgd_add_group, loom_sgd_opts, sgd, opt->kind == OPT_SGD, optim_resolve_sgd(o, &grp.o.sgd))
ADD_GROUP(loom_adam_add_group, loom_adam_opts, adam, opt->kind == OPT_ADAM || opt->kind == OPT_ADAMW,
          optim_resolve_adam(kind_names[opt->kind], o, opt->kind == OPT_ADAMW, &grp.o.adam))
ADD_GROUP(loom_rmsprop_add_group, loom_rmsprop_opts, rmsprop, opt->kind == OPT_RMSPROP,
          optim_resolve_rmsprop(o, &grp.o.rmsprop))

int loom_optimizer_num_groups(const loom_optimizer *opt) { return opt ? opt->n_groups : 0; }

void loom_optimizer_zero_grad(loom_optimizer *opt) {
  for (int i = 0; opt && i < opt->n_params; i++) loom_zero_grad(opt->params[i].p);
}

int loom_optimizer_set_lr(loom_optimizer *opt, int group, double lr) {
  if (!opt || group < -1 || group >= opt->n_groups || !(lr >= 0))
    return core_set_error(LOOM_ERR_INVALID, "optimizer_set_lr: need a group in [-1, %d) and lr >= 0, got %d and %g",
                          opt ? opt->n_groups : 0, group, lr);
  for (int g = 0; g < opt->n_groups; g++)
    if (group == -1 || g == group) opt->groups[g].lr = lr;
  return LOOM_OK;
}

double loom_optimizer_get_lr(const loom_optimizer *opt, int group) {
  if (!opt || group < 0 || group >= opt->n_groups) {
    core_set_error(LOOM_ERR_INVALID, "optimizer_get_lr: group %d out of range [0, %d)", group, opt ? opt->n_groups : 0);
    return NAN;
  }
  return opt->groups[group].lr;
}

double loom_optimizer_get_initial_lr(const loom_optimizer *opt, int group) {
  if (!opt || group < 0 || group >= opt->n_groups) {
    core_set_error(LOOM_ERR_INVALID, "optimizer_get_initial_lr: group %d out of range [0, %d)", group,
                   opt ? opt->n_groups : 0);
    return NAN;
  }
  return opt->groups[group].has_initial_lr ? opt->groups[group].initial_lr : opt->groups[group].lr;
}

loom_tensor **optim_params_with_grad(const loom_optimizer *opt, int *n) {
  *n = 0;
  loom_tensor **out = malloc((size_t)(opt->n_params + 1) * sizeof *out);
  if (!out) return NULL;
  for (int i = 0; i < opt->n_params; i++)
    if (opt->params[i].p->grad) out[(*n)++] = opt->params[i].p;
  return out;
}

/* Makes p's state exist on p's device and dtype (zeros; SGD's momentum buffer
 * is written from the grad by the first update). */
static loom_status ensure_state(loom_optimizer *opt, optim_param *p) {
  for (int s = 0; s < 3; s++) {
    if (!optim_state_used(opt, &opt->groups[p->group], s)) continue;
    loom_tensor *t = p->state[s];
    if (t && t->dtype == p->p->dtype && loom_device_equal(t->storage->device, p->p->storage->device)) continue;
    /* a new buffer, or one left behind by loom_module_to_device / to_dtype: keep its values */
    loom_tensor *nt = t ? loom_to(t, p->p->storage->device, p->p->dtype) : loom_zeros_like(p->p);
    if (!nt) return loom_last_status();
    loom_tensor *c = loom_contiguous(nt);
    if (!c) return loom_last_status();
    core_untrack(c);  /* owned by the optimiser, not the step's scope */
    if (!t && s == 0) p->fresh = true;
    loom_release(t);
    p->state[s] = c;
  }
  return LOOM_OK;
}

/* Updates the k params sel[0..k) (one group, device and dtype) in one launch. */
static loom_status update_bucket(loom_optimizer *opt, optim_param **sel, int k) {
  loom_tensor **lists = calloc((size_t)k * 5, sizeof *lists);
  loom_fused_scalars *sc = calloc((size_t)k, sizeof *sc);
  loom_status st = lists && sc ? LOOM_OK : core_set_error(LOOM_ERR_OOM, "optimizer step: out of host memory");
  for (int i = 0; st == LOOM_OK && i < k; i++) {
    optim_param *p = sel[i];
    loom_tensor *g = p->p->grad;
    if (g->dtype != p->p->dtype || !loom_device_equal(g->storage->device, p->p->storage->device))
      g = loom_to(g, p->p->storage->device, p->p->dtype);
    if (g && !core_is_contiguous(g)) g = loom_contiguous(g);
    if (g && !loom_shape_equal(g->shape, p->p->shape))
      st = core_set_error(LOOM_ERR_INVALID, "%s: gradient of shape %s for a parameter of shape %s",
                          kind_names[opt->kind], loom_shape_str(g->shape), loom_shape_str(p->p->shape));
    if (!g) st = loom_last_status();
    lists[i] = p->p;
    lists[k + i] = g;
    for (int s = 0; s < 3; s++) lists[(2 + s) * k + i] = p->state[s];
    const optim_group *grp = &opt->groups[p->group];
    sc[i] = (loom_fused_scalars){grp->lr, grp->weight_decay, p->step + 1, p->fresh};
  }
  if (st == LOOM_OK) {
    loom_tensor **P = lists, **G = lists + k, **S0 = lists + 2 * k, **S1 = lists + 3 * k, **S2 = lists + 4 * k;
    optim_group o = explicit_opts(opt->kind, &opt->groups[sel[0]->group]);
    switch (opt->kind) {
      case OPT_SGD: st = loom_sgd_update(P, G, S0, sc, k, &o.o.sgd); break;
      case OPT_ADAM:
      case OPT_ADAMW: st = loom_adam_update(P, G, S0, S1, S2, sc, k, &o.o.adam, opt->kind == OPT_ADAMW); break;
      default: st = loom_rmsprop_update(P, G, S0, S1, S2, sc, k, &o.o.rmsprop); break;
    }
  }
  for (int i = 0; st == LOOM_OK && i < k; i++) sel[i]->step++, sel[i]->fresh = false;
  free(lists);
  free(sc);
  return st;
}

int loom_optimizer_step(loom_optimizer *opt) {
  if (!opt) return core_set_error(LOOM_ERR_INVALID, "optimizer_step: optimizer is NULL");
  optim_param **sel = malloc((size_t)(opt->n_params + 1) * sizeof *sel);
  bool *done = calloc((size_t)opt->n_params + 1, 1);
  if (!sel || !done) {
    free(sel);
    free(done);
    return core_set_error(LOOM_ERR_OOM, "optimizer step: out of host memory");
  }
  loom_status st = LOOM_OK;
  loom_no_grad_begin();
  loom_scope_begin();
  for (int i = 0; st == LOOM_OK && i < opt->n_params; i++) {
    optim_param *p = &opt->params[i];
    if (!p->p->grad) continue;
    if (!core_is_contiguous(p->p))
      st = core_set_error(LOOM_ERR_INVALID, "%s: parameter %d is no longer contiguous", kind_names[opt->kind], i);
    if (st == LOOM_OK) st = ensure_state(opt, p);
  }
  /* one bucket per (group, device, dtype), in parameter order */
  for (int i = 0; st == LOOM_OK && i < opt->n_params; i++) {
    optim_param *p = &opt->params[i];
    if (done[i] || !p->p->grad) continue;
    int k = 0;
    for (int j = i; j < opt->n_params; j++) {
      optim_param *q = &opt->params[j];
      if (done[j] || !q->p->grad || q->group != p->group || q->p->dtype != p->p->dtype ||
          !loom_device_equal(q->p->storage->device, p->p->storage->device))
        continue;
      done[j] = true;
      sel[k++] = q;
    }
    st = update_bucket(opt, sel, k);
  }
  loom_scope_end();
  loom_no_grad_end();
  free(sel);
  free(done);
  return st;
}
