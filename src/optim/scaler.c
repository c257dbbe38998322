/* Dynamic loss scaling (torch.amp.GradScaler): scale the loss, unscale the
 * gradients once per step while checking them for inf / NaN, skip the step
 * when one is found, and grow or back off the scale in update. */
#include <stdlib.h>

#include "optim/optim_impl.h"

typedef struct scaler_record { loom_optimizer *opt; bool found_inf; } scaler_record;

struct loom_grad_scaler {
  double scale, growth_factor, backoff_factor;
  int growth_interval;
  int64_t growth_tracker;
  bool disabled;
  scaler_record *recs;   /* optimisers unscaled since the last update */
  int n_recs;
};

loom_grad_scaler *loom_grad_scaler_new(const loom_grad_scaler_opts *o) {
  loom_grad_scaler_opts r = o ? *o : (loom_grad_scaler_opts){0};
  double init = optim_or(r.init_scale, 65536), growth = optim_or(r.growth_factor, 2),
         backoff = optim_or(r.backoff_factor, 0.5);
  int interval = r.growth_interval == 0 ? 2000 : r.growth_interval;
  if (!(init > 0) || !(growth > 1) || !(backoff > 0 && backoff < 1) || interval < 1) {
    core_set_error(LOOM_ERR_INVALID, "GradScaler: need init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1, growth_interval >= 1, got %g, %g, %g, %d",
                   init, growth, backoff, interval);
    return NULL;
  }
  loom_grad_scaler *s = calloc(1, sizeof *s);
  if (!s) {
    core_set_error(LOOM_ERR_OOM, "GradScaler: out of host memory");
    return NULL;
  }
  *s = (loom_grad_scaler){r.disabled ? 1.0 : init, growth, backoff, interval, 0, r.disabled, NULL, 0};
  return s;
}

void loom_grad_scaler_free(loom_grad_scaler *s) {
  if (!s) return;
  free(s->recs);
  free(s);
}

double loom_grad_scaler_get_scale(const loom_grad_scaler *s) { return s ? s->scale : NAN; }

loom_tensor *loom_grad_scaler_scale(loom_grad_scaler *s, const loom_tensor *loss) {
  CORE_CHECK_NULL1("GradScaler.scale", loss);
  if (!s) {
    core_set_error(LOOM_ERR_INVALID, "GradScaler.scale: scaler is NULL");
    return NULL;
  }
  return loom_mul_scalar(loss, s->scale);
}

static scaler_record *find(loom_grad_scaler *s, const loom_optimizer *opt) {
  for (int i = 0; i < s->n_recs; i++)
    if (s->recs[i].opt == opt) return &s->recs[i];
  return NULL;
}

int loom_grad_scaler_unscale(loom_grad_scaler *s, loom_optimizer *opt) {
  if (!s || !opt) return core_set_error(LOOM_ERR_INVALID, "GradScaler.unscale: NULL %s", s ? "optimizer" : "scaler");
  if (s->disabled) return LOOM_OK;
  if (find(s, opt))
    return core_set_error(LOOM_ERR_INVALID, "GradScaler.unscale: already called for this optimizer since the last update");
  scaler_record *recs = realloc(s->recs, (size_t)(s->n_recs + 1) * sizeof *recs);
  if (!recs) return core_set_error(LOOM_ERR_OOM, "GradScaler.unscale: out of host memory");
  s->recs = recs;
  int n;
  loom_tensor **ps = optim_params_with_grad(opt, &n);
  if (!ps) return core_set_error(LOOM_ERR_OOM, "GradScaler.unscale: out of host memory");
  loom_status st = LOOM_OK;
  bool found_inf = false;
  double inv = 1.0 / s->scale;
  loom_no_grad_begin();
  loom_scope_begin();
  /* g * 0 is 0 for finite g and NaN for inf / NaN: one sum per device tells */
  loom_tensor *checks[8] = {NULL};
  loom_device devs[8];
  int n_dev = 0;
  for (int i = 0; i < n && st == LOOM_OK; i++) {
    loom_tensor *g = ps[i]->grad;
    if (core_numel(g) == 0) continue;
    loom_tensor *bad = loom_sum(loom_to_dtype(loom_mul_scalar(g, 0), LOOM_F32), NULL, 0, false);
    int d = 0;
    while (d < n_dev && !loom_device_equal(devs[d], g->storage->device)) d++;
    if (d == n_dev && n_dev == 8) d = 7;   /* more devices than slots: share the last one's (moved to it) */
    if (d == n_dev) devs[n_dev++] = g->storage->device;
    if (bad && !loom_device_equal(devs[d], g->storage->device)) bad = loom_to_device(bad, devs[d]);
    checks[d] = !checks[d] ? bad : loom_add(checks[d], bad);
    st = checks[d] ? (loom_status)loom_copy_(g, loom_mul_scalar(g, inv)) : loom_last_status();
  }
  for (int d = 0; d < n_dev && st == LOOM_OK; d++) {
    loom_clear_error();
    double v = loom_item(checks[d]);
    st = loom_last_status();
    found_inf = found_inf || !isfinite(v);
  }
  loom_scope_end();
  loom_no_grad_end();
  free(ps);
  if (st == LOOM_OK) s->recs[s->n_recs++] = (scaler_record){opt, found_inf};
  return st;
}

int loom_grad_scaler_step(loom_grad_scaler *s, loom_optimizer *opt, bool *skipped) {
  if (skipped) *skipped = false;
  if (!s || !opt) return core_set_error(LOOM_ERR_INVALID, "GradScaler.step: NULL %s", s ? "optimizer" : "scaler");
  if (s->disabled) return loom_optimizer_step(opt);
  if (!find(s, opt)) {
    int st = loom_grad_scaler_unscale(s, opt);
    if (st) return st;
  }
  if (find(s, opt)->found_inf) {
    if (skipped) *skipped = true;
    return LOOM_OK;
  }
  return loom_optimizer_step(opt);
}

int loom_grad_scaler_update(loom_grad_scaler *s) {
  if (!s) return core_set_error(LOOM_ERR_INVALID, "GradScaler.update: scaler is NULL");
  if (s->disabled) return LOOM_OK;
  if (s->n_recs == 0)
    return core_set_error(LOOM_ERR_INVALID, "GradScaler.update: no unscale / step was recorded since the last update");
  bool found_inf = false;
  for (int i = 0; i < s->n_recs; i++) found_inf = found_inf || s->recs[i].found_inf;
  if (found_inf) {
    s->scale *= s->backoff_factor;
    s->growth_tracker = 0;
  } else if (++s->growth_tracker == s->growth_interval) {
    s->scale *= s->growth_factor;
    s->growth_tracker = 0;
  }
  s->n_recs = 0;
  return LOOM_OK;
}

int loom_grad_scaler_state_dict(const loom_grad_scaler *s, loom_tensor_map *out, const char *prefix) {
  if (!s || !out) return core_set_error(LOOM_ERR_INVALID, "GradScaler.state_dict: NULL %s", s ? "map" : "scaler");
  char key[512];
  int st = optim_put_number(out, optim_key(key, sizeof key, prefix, "scale"), s->scale);
  if (!st) st = optim_put_number(out, optim_key(key, sizeof key, prefix, "growth_tracker"), (double)s->growth_tracker);
  return st;
}

int loom_grad_scaler_load_state_dict(loom_grad_scaler *s, const loom_tensor_map *in, const char *prefix) {
  if (!s || !in) return core_set_error(LOOM_ERR_INVALID, "GradScaler.load_state_dict: NULL %s", s ? "map" : "scaler");
  char key[512];
  double scale, tracker;
  if (!optim_get_number(in, optim_key(key, sizeof key, prefix, "scale"), &scale) || !(scale > 0))
    return core_set_error(LOOM_ERR_INVALID, "GradScaler.load_state_dict: %s missing or not > 0", key);
  if (!optim_get_number(in, optim_key(key, sizeof key, prefix, "growth_tracker"), &tracker) || !(tracker >= 0))
    return core_set_error(LOOM_ERR_INVALID, "GradScaler.load_state_dict: %s missing or negative", key);
  s->scale = scale;
  s->growth_tracker = (int64_t)tracker;
  return LOOM_OK;
}
