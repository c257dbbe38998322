/* Optimiser checkpoint state (PyTorch's state_dict layout flattened into
 * named tensors), the number helpers the schedulers and the scaler share, and
 * the constructors over a module's parameters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/nn.h"
#include "optim/optimizer_impl.h"

const char *optim_key(char *buf, size_t size, const char *prefix, const char *suffix) {
  snprintf(buf, size, "%s%s", prefix ? prefix : "", suffix);
  return buf;
}

int optim_put_number(loom_tensor_map *m, const char *key, double v) {
  loom_scope_begin();
  loom_tensor *t = loom_full(LOOM_SHAPE(), v, LOOM_F64, loom_cpu());
  int st = t ? loom_map_set(m, key, t) : (int)loom_last_status();
  loom_scope_end();
  return st;
}

bool optim_get_number(const loom_tensor_map *m, const char *key, double *v) {
  loom_tensor *t = loom_map_get(m, key);
  /* numbers are stored as f64 (optim_put_number): an integer entry is a
   * damaged or foreign file, not a value to reinterpret */
  if (!t || loom_numel(t) != 1 || !loom_dtype_is_float(loom_dtype_of(t))) return false;
  *v = loom_item(t);
  return true;
}

/* ---- optimiser state ---- */

static bool uses_step(const loom_optimizer *opt) { return opt->kind != OPT_SGD; }

/* A group option as stored: one number, a pair (betas) or a flag (0 / 1). */
typedef struct group_field {
  const char *name;
  double *v[2];
  bool *flag;
} group_field;

/* The options of grp beyond lr and weight_decay, PyTorch's param_groups keys. */
static int group_fields(const loom_optimizer *opt, optim_group *grp, group_field *f) {
  int n = 0;
  switch (opt->kind) {
    case OPT_SGD:
      f[n++] = (group_field){"momentum", {&grp->o.sgd.momentum, NULL}, NULL};
      f[n++] = (group_field){"dampening", {&grp->o.sgd.dampening, NULL}, NULL};
      f[n++] = (group_field){"nesterov", {NULL, NULL}, &grp->o.sgd.nesterov};
      f[n++] = (group_field){"maximize", {NULL, NULL}, &grp->o.sgd.maximize};
      break;
    case OPT_ADAM:
    case OPT_ADAMW:
      f[n++] = (group_field){"betas", {&grp->o.adam.beta1, &grp->o.adam.beta2}, NULL};
      f[n++] = (group_field){"eps", {&grp->o.adam.eps, NULL}, NULL};
      f[n++] = (group_field){"amsgrad", {NULL, NULL}, &grp->o.adam.amsgrad};
      f[n++] = (group_field){"maximize", {NULL, NULL}, &grp->o.adam.maximize};
      break;
    default:
      f[n++] = (group_field){"alpha", {&grp->o.rmsprop.alpha, NULL}, NULL};
      f[n++] = (group_field){"eps", {&grp->o.rmsprop.eps, NULL}, NULL};
      f[n++] = (group_field){"momentum", {&grp->o.rmsprop.momentum, NULL}, NULL};
      f[n++] = (group_field){"centered", {NULL, NULL}, &grp->o.rmsprop.centered};
      f[n++] = (group_field){"maximize", {NULL, NULL}, &grp->o.rmsprop.maximize};
      break;
  }
  return n;
}

static int put_group_fields(const loom_optimizer *opt, int g, loom_tensor_map *out, const char *prefix) {
  group_field f[5];
  char key[512], suffix[128];
  int n = group_fields(opt, &opt->groups[g], f), st = LOOM_OK;
  for (int k = 0; st == LOOM_OK && k < n; k++) {
    snprintf(suffix, sizeof suffix, "param_groups.%d.%s", g, f[k].name);
    optim_key(key, sizeof key, prefix, suffix);
    if (!f[k].v[1]) {
      st = optim_put_number(out, key, f[k].flag ? (double)*f[k].flag : *f[k].v[0]);
      continue;
    }
    double pair[2] = {*f[k].v[0], *f[k].v[1]};
    loom_scope_begin();
    loom_tensor *t = loom_from_host(pair, LOOM_SHAPE(2), LOOM_F64, loom_cpu());
    st = t ? loom_map_set(out, key, t) : (int)loom_last_status();
    loom_scope_end();
  }
  return st;
}

/* Reads group g's options present in `in` into *grp (a copy) and checks them. */
static loom_status get_group_fields(const loom_optimizer *opt, int g, const loom_tensor_map *in, const char *prefix,
                                    optim_group *grp) {
  group_field f[5];
  char key[512], suffix[128];
  snprintf(suffix, sizeof suffix, "param_groups.%d.lr", g);
  optim_get_number(in, optim_key(key, sizeof key, prefix, suffix), &grp->lr);
  snprintf(suffix, sizeof suffix, "param_groups.%d.weight_decay", g);
  const loom_tensor *wd = loom_map_get(in, optim_key(key, sizeof key, prefix, suffix));
  if (wd && !optim_get_number(in, key, &grp->weight_decay))
    return core_set_error(LOOM_ERR_INVALID, "optimizer_load_state_dict: %s is %s %s, not a float number", key,
                          loom_dtype_name(loom_dtype_of(wd)), loom_shape_str(loom_shape_of(wd)));
  int n = group_fields(opt, grp, f);
  for (int k = 0; k < n; k++) {
    snprintf(suffix, sizeof suffix, "param_groups.%d.%s", g, f[k].name);
    loom_tensor *t = loom_map_get(in, optim_key(key, sizeof key, prefix, suffix));
    if (!t) continue;   /* older checkpoints: the option stays as it is */
    int want = f[k].v[1] ? 2 : 1;
    double v[2];
    if (loom_numel(t) != want || !loom_dtype_is_float(t->dtype) ||
        loom_to_host(loom_to(t, loom_cpu(), LOOM_F64), v, sizeof(double) * (size_t)want) != LOOM_OK)
      return core_set_error(LOOM_ERR_INVALID, "optimizer_load_state_dict: %s must hold %d floating number%s, got %s %s",
                            key, want, want > 1 ? "s" : "", loom_dtype_name(t->dtype), loom_shape_str(t->shape));
    if (f[k].flag) {
      if (v[0] != 0 && v[0] != 1)
        return core_set_error(LOOM_ERR_INVALID, "optimizer_load_state_dict: %s is %g, not 0 or 1", key, v[0]);
      *f[k].flag = v[0] == 1;
    } else {
      for (int j = 0; j < want; j++) *f[k].v[j] = v[j];
    }
  }
  if (!optim_check_group(opt, grp)) {
    char why[400];
    snprintf(why, sizeof why, "%s", loom_last_error());
    return core_set_error(LOOM_ERR_INVALID, "optimizer_load_state_dict: param group %d: %s", g, why);
  }
  return LOOM_OK;
}

int loom_optimizer_state_dict(const loom_optimizer *opt, loom_tensor_map *out, const char *prefix) {
  if (!opt || !out) return core_set_error(LOOM_ERR_INVALID, "optimizer_state_dict: NULL %s", opt ? "map" : "optimizer");
  const optim_group *groups = opt->groups;
  char key[512], suffix[128];
  int st = LOOM_OK;
  for (int g = 0; st == LOOM_OK && g < opt->n_groups; g++) {
    const optim_group *grp = &opt->groups[g];
    snprintf(suffix, sizeof suffix, "param_groups.%d.lr", g);
    st = optim_put_number(out, optim_key(key, sizeof key, prefix, suffix), grp->lr);
    snprintf(suffix, sizeof suffix, "param_groups.%d.weight_decay", g);
    if (st == LOOM_OK) st = optim_put_number(out, optim_key(key, sizeof key, prefix, suffix), grp->weight_decay);
    snprintf(suffix, sizeof suffix, "param_groups.%d.initial_lr", g);
    if (st == LOOM_OK && grp->has_initial_lr)
      st = optim_put_number(out, optim_key(key, sizeof key, prefix, suffix), grp->initial_lr);
    if (st == LOOM_OK) st = put_group_fields(opt, g, out, prefix);
  }
  for (int i = 0; st == LOOM_OK && i < opt->n_params; i++) {
    const optim_param *p = &opt->params[i];
    if (p->step == 0) continue;   /* no state yet */
    if (uses_step(opt)) {
      snprintf(suffix, sizeof suffix, "state.%d.step", i);
      st = optim_put_number(out, optim_key(key, sizeof key, prefix, suffix), (double)p->step);
    }
    for (int s = 0; st == LOOM_OK && s < 3; s++) {
      if (!p->state[s] || !optim_state_used(opt, &groups[p->group], s)) continue;
      snprintf(suffix, sizeof suffix, "state.%d.%s", i, optim_state_name(opt, s));
      st = loom_map_set(out, optim_key(key, sizeof key, prefix, suffix), p->state[s]);
    }
  }
  return st;
}

/* Checks the entries of parameter i: *present tells whether it has state. */
static loom_status check_param_state(const loom_optimizer *opt, const optim_group *groups, const loom_tensor_map *in,
                                     const char *prefix, int i, bool *present) {
  char key[512], suffix[128];
  const optim_param *p = &opt->params[i];
  int found = 0, wanted = 0;
  const char *missing = "step";
  double step = 0;
  if (uses_step(opt)) {
    snprintf(suffix, sizeof suffix, "state.%d.step", i);
    wanted++;
    if (optim_get_number(in, optim_key(key, sizeof key, prefix, suffix), &step)) {
      found++;
      if (!(step >= 1) || step != (double)(int64_t)step)
        return core_set_error(LOOM_ERR_INVALID, "optimizer_load_state_dict: %s is %g, not a step count", key, step);
    }
  }
  for (int s = 0; s < 3; s++) {
    if (!optim_state_used(opt, &groups[p->group], s)) continue;
    snprintf(suffix, sizeof suffix, "state.%d.%s", i, optim_state_name(opt, s));
    loom_tensor *t = loom_map_get(in, optim_key(key, sizeof key, prefix, suffix));
    wanted++;
    if (!t) {
      missing = optim_state_name(opt, s);
      continue;
    }
    found++;
    if (!loom_shape_equal(t->shape, p->p->shape) || !loom_dtype_is_float(t->dtype))
      return core_set_error(LOOM_ERR_INVALID, "optimizer_load_state_dict: %s is %s %s, the parameter %s", key,
                            loom_dtype_name(t->dtype), loom_shape_str(t->shape), loom_shape_str(p->p->shape));
  }
  if (found != 0 && found != wanted)
    return core_set_error(LOOM_ERR_INVALID,
                          "optimizer_load_state_dict: parameter %d has %d of the %d %s state entries its group's "
                          "options use (no %s)", i, found, wanted, loom_optimizer_name(opt), missing);
  *present = found > 0;
  return LOOM_OK;
}

int loom_optimizer_load_state_dict(loom_optimizer *opt, const loom_tensor_map *in, const char *prefix) {
  if (!opt || !in) return core_set_error(LOOM_ERR_INVALID, "optimizer_load_state_dict: NULL %s", opt ? "map" : "optimizer");
  char key[512], suffix[128];
  double v;
  /* check everything first, so that a bad map changes nothing */
  for (int g = 0; g <= opt->n_groups; g++) {
    snprintf(suffix, sizeof suffix, "param_groups.%d.lr", g);
    bool has = optim_get_number(in, optim_key(key, sizeof key, prefix, suffix), &v);
    const loom_tensor *raw = loom_map_get(in, key);
    if (raw && !has)
      return core_set_error(LOOM_ERR_INVALID, "optimizer_load_state_dict: %s is %s %s, not a float number", key,
                            loom_dtype_name(loom_dtype_of(raw)), loom_shape_str(loom_shape_of(raw)));
    if (has != (g < opt->n_groups))
      return core_set_error(LOOM_ERR_INVALID, "optimizer_load_state_dict: the optimizer has %d param groups but %s is %s",
                            opt->n_groups, key, has ? "present" : "missing");
  }
  bool *present = calloc((size_t)opt->n_params + 1, 1);
  optim_group *groups = malloc((size_t)(opt->n_groups + 1) * sizeof *groups);
  if (!present || !groups) {
    free(present);
    free(groups);
    return core_set_error(LOOM_ERR_OOM, "optimizer_load_state_dict: out of host memory");
  }
  loom_status st = LOOM_OK;
  loom_scope_begin();
  for (int g = 0; st == LOOM_OK && g < opt->n_groups; g++) {
    groups[g] = opt->groups[g];
    st = get_group_fields(opt, g, in, prefix, &groups[g]);
  }
  loom_scope_end();
  for (int i = 0; st == LOOM_OK && i < opt->n_params; i++) st = check_param_state(opt, groups, in, prefix, i, &present[i]);
  snprintf(suffix, sizeof suffix, "state.%d.", opt->n_params);
  optim_key(key, sizeof key, prefix, suffix);
  for (int k = 0; st == LOOM_OK && k < loom_map_size(in); k++)
    if (strncmp(loom_map_name(in, k), key, strlen(key)) == 0)
      st = core_set_error(LOOM_ERR_INVALID, "optimizer_load_state_dict: %s names a parameter the optimizer (%d parameters) does not have",
                          loom_map_name(in, k), opt->n_params);
  if (st != LOOM_OK) {
    free(present);
    free(groups);
    return st;
  }
  /* apply */
  loom_scope_begin();
  for (int g = 0; g < opt->n_groups; g++) {
    optim_group *grp = &opt->groups[g];
    grp->lr = groups[g].lr, grp->weight_decay = groups[g].weight_decay, grp->o = groups[g].o;
    snprintf(suffix, sizeof suffix, "param_groups.%d.initial_lr", g);
    if (optim_get_number(in, optim_key(key, sizeof key, prefix, suffix), &v)) {
      grp->initial_lr = v;
      grp->has_initial_lr = true;
    }
  }
  for (int i = 0; st == LOOM_OK && i < opt->n_params; i++) {
    optim_param *p = &opt->params[i];
    optim_param_clear(p);
    if (!present[i]) continue;
    p->step = 1;  /* SGD keeps no count: any value > 0 means "the buffer exists" */
    snprintf(suffix, sizeof suffix, "state.%d.step", i);
    if (uses_step(opt) && optim_get_number(in, optim_key(key, sizeof key, prefix, suffix), &v)) p->step = (int64_t)v;
    for (int s = 0; st == LOOM_OK && s < 3; s++) {
      if (!optim_state_used(opt, &groups[p->group], s)) continue;
      snprintf(suffix, sizeof suffix, "state.%d.%s", i, optim_state_name(opt, s));
      loom_tensor *src = loom_map_get(in, optim_key(key, sizeof key, prefix, suffix));
      loom_tensor *t = loom_empty(p->p->shape, p->p->dtype, p->p->storage->device);
      if (!t || loom_copy_(t, src) != LOOM_OK) {
        st = loom_last_status();
        break;
      }
      core_untrack(t);
      p->state[s] = t;
    }
  }
  loom_scope_end();
  free(present);
  free(groups);
  return st;
}

/* ---- over a module ---- */

int loom_module_trainable_params(const loom_module *m, loom_tensor **out, int max) {
  if (!m) return core_null_error("module_trainable_params: module is NULL"), -1;
  loom_named_tensors *l = loom_module_named_parameters(m);
  if (!l) return -1;
  int n = 0;
  for (int i = 0; i < l->n; i++) {
    if (!loom_requires_grad(l->tensors[i])) continue;
    if (n < max && out) out[n] = l->tensors[i];
    n++;
  }
  loom_named_tensors_free(l);
  return n;
}

#define MODULE_CTOR(NAME, OPTS)                                                  \
  loom_optimizer *NAME##_module(const loom_module *m, const OPTS *o) {          \
    int n = loom_module_trainable_params(m, NULL, 0);                            \
    if (n < 0) return NULL;                                                      \
    loom_tensor **ps = malloc((size_t)(n + 1) * sizeof *ps);                     \
    if (!ps) {                                                                   \
      core_set_error(LOOM_ERR_OOM, #NAME "_module: out of host memory");         \
      return NULL;                                                               \
    }                                                                            \
    loom_module_trainable_params(m, ps, n);                                      \
    loom_optimizer *opt = NAME(ps, n, o);                                        \
    free(ps);                                                                    \
    return opt;                                                                  \
  }
MODULE_CTOR(loom_sgd, loom_sgd_opts)
MODULE_CTOR(loom_adam, loom_adam_opts)
MODULE_CTOR(loom_adamw, loom_adam_opts)
MODULE_CTOR(loom_rmsprop, loom_rmsprop_opts)
