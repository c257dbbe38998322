/* Learning-rate schedules, as torch.optim.lr_scheduler computes them: the
 * chainable (recursive) form on each step from the optimiser's current lr, so
 * that two schedulers on one optimiser compose as in PyTorch, and the closed
 * form for step(epoch) (used by SequentialLR at its milestones). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim/optim_impl.h"

#define SCHED_PI 3.14159265358979323846

typedef enum {
  SCH_STEP, SCH_MULTISTEP, SCH_COSINE, SCH_LINEAR, SCH_ONECYCLE, SCH_SEQUENTIAL,
  SCH_EXPONENTIAL, SCH_POLYNOMIAL, SCH_LAMBDA, SCH_WARM_RESTARTS, SCH_PLATEAU, SCH_CYCLIC
} sched_kind;

struct loom_scheduler {
  sched_kind kind;
  loom_optimizer *opt;
  int64_t last_epoch, step_count;
  int n_groups;
  double *base_lrs, *last_lrs;
  /* StepLR, MultiStepLR */
  int step_size;
  double gamma;
  int *milestones, n_milestones;   /* sorted; also SequentialLR's */
  /* CosineAnnealingLR */
  int t_max;
  double eta_min;
  /* LinearLR, PolynomialLR (power) */
  double start_factor, end_factor, power;
  int total_iters;
  /* LambdaLR */
  loom_lr_lambda lambda;
  void *lambda_ctx;
  /* CosineAnnealingWarmRestarts (eta_min above) */
  int64_t t_0, t_mult, t_i;
  double t_cur;
  /* ReduceLROnPlateau (min_lrs: one per group) */
  loom_plateau_opts plateau;
  double best, *min_lrs;
  int64_t num_bad_epochs, cooldown_counter;
  /* OneCycleLR: phases end at phase_end[k]; group g goes from lr phase_lrs[4g + k]
   * to phase_lrs[4g + k + 1] and from momentum mom[2g + phase_mom[k]] to
   * mom[2g + phase_mom[k + 1]] (0 = base, 1 = max) */
  int total_steps, n_phases, phase_mom[4];
  double phase_end[3], *phase_lrs;
  bool anneal_linear;
  /* OneCycleLR, CyclicLR: momentum cycling between mom[2g] (base) and mom[2g + 1] (max) */
  bool cycle_momentum;
  double *mom;
  /* CyclicLR (max_lrs: one per group) */
  double *max_lrs, total_size, step_ratio;
  loom_cyclic_opts cyclic;
  /* SequentialLR */
  loom_scheduler **subs;
  int n_subs;
};

static double *group_lr(loom_scheduler *s, int g) {
  int n;
  return &optim_groups(s->opt, &n)[g].lr;
}

/* OneCycleLR's or CyclicLR's lr and momentum of group g at s->last_epoch
 * (closed forms only). */
static void cycle_at(const loom_scheduler *s, int g, double *lr, double *mom) {
  int64_t e = s->last_epoch;
  const double *m = s->mom ? s->mom + 2 * g : NULL;
  *lr = *mom = NAN;
  if (s->kind == SCH_CYCLIC) {
    const loom_cyclic_opts *o = &s->cyclic;
    double cycle = floor(1 + e / s->total_size), x = 1.0 + e / s->total_size - cycle;
    double f = x <= s->step_ratio ? x / s->step_ratio : (x - 1) / (s->step_ratio - 1), scale;
    if (o->scale_fn) scale = o->scale_fn(o->scale_by_step ? (double)e : cycle, o->scale_ctx);
    else if (o->mode == LOOM_CYCLIC_TRIANGULAR2) scale = 1 / pow(2.0, cycle - 1);
    else if (o->mode == LOOM_CYCLIC_EXP_RANGE) scale = pow(o->gamma, (double)e);
    else scale = 1.0;
    *lr = s->base_lrs[g] + (s->max_lrs[g] - s->base_lrs[g]) * f * scale;
    *mom = m ? m[1] - (m[1] - m[0]) * f * scale : NAN;
    return;
  }
  double start = 0;
  for (int k = 0; k < s->n_phases; k++) {
    double end = s->phase_end[k];
    if (e <= end || k == s->n_phases - 1) {
      double pct = (e - start) / (end - start);
      double a[2] = {s->phase_lrs[4 * g + k], m ? m[s->phase_mom[k]] : NAN};
      double b[2] = {s->phase_lrs[4 * g + k + 1], m ? m[s->phase_mom[k + 1]] : NAN};
      double out[2];
      for (int j = 0; j < 2; j++)
        out[j] = s->anneal_linear ? (b[j] - a[j]) * pct + a[j] : b[j] + (a[j] - b[j]) / 2.0 * (cos(SCHED_PI * pct) + 1);
      *lr = out[0], *mom = out[1];
      return;
    }
    start = end;
  }
}

/* The chainable lr of group g at s->last_epoch. */
static double chain_lr(loom_scheduler *s, int g) {
  double lr = *group_lr(s, g), base = s->base_lrs[g];
  int64_t e = s->last_epoch;
  switch (s->kind) {
    case SCH_STEP: return e == 0 || e % s->step_size != 0 ? lr : lr * s->gamma;
    case SCH_MULTISTEP: {
      int hits = 0;
      for (int k = 0; k < s->n_milestones; k++) hits += s->milestones[k] == e;
      return lr * pow(s->gamma, hits);
    }
    case SCH_COSINE: {
      double T = s->t_max;
      if (e == 0) return lr;
      if (s->step_count == 1 && e > 0) return s->eta_min + (base - s->eta_min) * (1 + cos(e * SCHED_PI / T)) / 2;
      int64_t period = 2 * (int64_t)s->t_max, r = ((e - 1 - s->t_max) % period + period) % period;
      if (r == 0) return lr + (base - s->eta_min) * (1 - cos(SCHED_PI / T)) / 2;
      return (1 + cos(SCHED_PI * e / T)) / (1 + cos(SCHED_PI * (e - 1) / T)) * (lr - s->eta_min) + s->eta_min;
    }
    case SCH_LINEAR: {
      if (e == 0) return lr * s->start_factor;
      if (e > s->total_iters) return lr;
      double d = s->end_factor - s->start_factor;
      return lr * (1.0 + d / (s->total_iters * s->start_factor + (e - 1) * d));
    }
    case SCH_EXPONENTIAL: return e == 0 ? lr : lr * s->gamma;
    case SCH_POLYNOMIAL: {
      if (e == 0 || e > s->total_iters) return lr;
      double T = s->total_iters;
      return lr * pow((1.0 - e / T) / (1.0 - (e - 1) / T), s->power);
    }
    case SCH_LAMBDA: return base * s->lambda(e, g, s->lambda_ctx);
    case SCH_WARM_RESTARTS: return s->eta_min + (base - s->eta_min) * (1 + cos(SCHED_PI * s->t_cur / s->t_i)) / 2;
    default: break;
  }
  double lr_out, mom_out;
  cycle_at(s, g, &lr_out, &mom_out);
  return lr_out;
}

static double closed_lr(loom_scheduler *s, int g) {
  double base = s->base_lrs[g];
  int64_t e = s->last_epoch;
  switch (s->kind) {
    case SCH_STEP: return base * pow(s->gamma, (double)(e / s->step_size));
    case SCH_MULTISTEP: {
      int below = 0;
      for (int k = 0; k < s->n_milestones; k++) below += s->milestones[k] <= e;
      return base * pow(s->gamma, below);
    }
    case SCH_COSINE: return s->eta_min + (base - s->eta_min) * (1 + cos(SCHED_PI * e / s->t_max)) / 2;
    case SCH_LINEAR:
      return base * (s->start_factor +
                     (s->end_factor - s->start_factor) * (double)(e < s->total_iters ? e : s->total_iters) / s->total_iters);
    case SCH_EXPONENTIAL: return base * pow(s->gamma, (double)e);
    case SCH_POLYNOMIAL:
      return base * pow(1.0 - (double)(e < s->total_iters ? e : s->total_iters) / s->total_iters, s->power);
    default: return chain_lr(s, g);
  }
}

/* CosineAnnealingWarmRestarts' own step: T_cur and T_i. The first step (and
 * step(epoch)) places epoch within its period. */
static void warm_restarts_advance(loom_scheduler *s, int64_t epoch) {
  if (epoch < 0 && s->last_epoch < 0) epoch = 0;
  if (epoch < 0) {
    s->t_cur += 1;
    if (s->t_cur >= s->t_i) s->t_cur -= s->t_i, s->t_i *= s->t_mult;
  } else if (epoch >= s->t_0) {
    if (s->t_mult == 1) {
      s->t_cur = (double)(epoch % s->t_0);
    } else {
      int64_t n = (int64_t)(log((double)epoch / s->t_0 * (s->t_mult - 1) + 1) / log((double)s->t_mult));
      double span = pow((double)s->t_mult, (double)n);
      s->t_cur = epoch - s->t_0 * (span - 1) / (s->t_mult - 1);
      s->t_i = s->t_0 * (int64_t)span;
    }
  } else {
    s->t_i = s->t_0;
    s->t_cur = (double)epoch;
  }
}

/* One step; epoch >= 0 jumps there (closed form), as PyTorch's step(epoch). */
static int step_to(loom_scheduler *s, int64_t epoch) {
  if (s->kind == SCH_SEQUENTIAL) {
    s->last_epoch++;
    int idx = 0;
    while (idx < s->n_milestones && s->milestones[idx] <= s->last_epoch) idx++;
    loom_scheduler *sub = s->subs[idx];
    int st = step_to(sub, idx > 0 && s->milestones[idx - 1] == s->last_epoch ? 0 : -1);
    memcpy(s->last_lrs, sub->last_lrs, (size_t)s->n_groups * sizeof(double));
    return st;
  }
  s->step_count++;
  if (s->kind == SCH_WARM_RESTARTS) warm_restarts_advance(s, epoch);
  s->last_epoch = epoch >= 0 ? epoch : s->last_epoch + 1;
  if (s->kind == SCH_ONECYCLE && s->last_epoch > s->total_steps)
    return core_set_error(LOOM_ERR_INVALID, "OneCycleLR: stepped %lld times, more than total_steps = %d",
                          (long long)s->last_epoch, s->total_steps);
  for (int g = 0; g < s->n_groups; g++) s->last_lrs[g] = epoch >= 0 ? closed_lr(s, g) : chain_lr(s, g);
  for (int g = 0; g < s->n_groups; g++) *group_lr(s, g) = s->last_lrs[g];
  for (int g = 0; s->cycle_momentum && g < s->n_groups; g++) {
    double lr, mom;
    cycle_at(s, g, &lr, &mom);
    *optim_group_momentum(s->opt, g) = mom;
  }
  return LOOM_OK;
}

int loom_scheduler_step(loom_scheduler *s) {
  if (!s) return core_set_error(LOOM_ERR_INVALID, "scheduler_step: scheduler is NULL");
  if (s->kind == SCH_PLATEAU)
    return core_set_error(LOOM_ERR_INVALID, "scheduler_step: ReduceLROnPlateau needs the metric: "
                                            "call loom_scheduler_step_metric");
  return step_to(s, -1);
}

static bool plateau_better(const loom_scheduler *s, double a) {
  const loom_plateau_opts *o = &s->plateau;
  double b = s->best, t = o->threshold;
  if (o->mode_max) return o->threshold_abs ? a > b + t : a > b * (t + 1);
  return o->threshold_abs ? a < b - t : a < b * (1 - t);
}

int loom_scheduler_step_metric(loom_scheduler *s, double metric) {
  if (!s) return core_set_error(LOOM_ERR_INVALID, "scheduler_step_metric: scheduler is NULL");
  if (s->kind != SCH_PLATEAU)
    return core_set_error(LOOM_ERR_INVALID, "scheduler_step_metric: only ReduceLROnPlateau takes a metric; "
                                            "call loom_scheduler_step");
  s->last_epoch++;
  if (plateau_better(s, metric)) s->best = metric, s->num_bad_epochs = 0;
  else s->num_bad_epochs++;
  if (s->cooldown_counter > 0) s->cooldown_counter--, s->num_bad_epochs = 0;
  if (s->num_bad_epochs > s->plateau.patience) {
    for (int g = 0; g < s->n_groups; g++) {
      double old = *group_lr(s, g), lr = fmax(old * s->plateau.factor, s->min_lrs[g]);
      if (old - lr > s->plateau.eps) *group_lr(s, g) = lr;
    }
    s->cooldown_counter = s->plateau.cooldown;
    s->num_bad_epochs = 0;
  }
  for (int g = 0; g < s->n_groups; g++) s->last_lrs[g] = *group_lr(s, g);
  return LOOM_OK;
}

void loom_scheduler_free(loom_scheduler *s) {
  if (!s) return;
  for (int k = 0; k < s->n_subs; k++) loom_scheduler_free(s->subs[k]);
  free(s->subs);
  free(s->base_lrs);
  free(s->last_lrs);
  free(s->milestones);
  free(s->min_lrs);
  free(s->phase_lrs);
  free(s->mom);
  free(s->max_lrs);
  free(s);
}

/* A scheduler of kind over opt's groups, their initial_lr set (PyTorch's setdefault). */
static loom_scheduler *create(const char *name, sched_kind kind, loom_optimizer *opt) {
  int n;
  optim_group *groups = optim_groups(opt, &n);
  if (!opt) {
    core_set_error(LOOM_ERR_INVALID, "%s: optimizer is NULL", name);
    return NULL;
  }
  loom_scheduler *s = calloc(1, sizeof *s);
  if (s) {
    s->base_lrs = calloc((size_t)n + 1, sizeof(double));
    s->last_lrs = calloc((size_t)n + 1, sizeof(double));
  }
  if (!s || !s->base_lrs || !s->last_lrs) {
    loom_scheduler_free(s);
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", name);
    return NULL;
  }
  s->kind = kind;
  s->opt = opt;
  s->n_groups = n;
  s->last_epoch = -1;
  for (int g = 0; g < n; g++) {
    if (!groups[g].has_initial_lr) groups[g].initial_lr = groups[g].lr, groups[g].has_initial_lr = true;
    s->base_lrs[g] = groups[g].initial_lr;
    s->last_lrs[g] = groups[g].lr;
  }
  return s;
}

/* PyTorch's _initial_step: step 0 sets the starting lrs. */
static loom_scheduler *start(loom_scheduler *s) {
  if (!s) return NULL;
  s->step_count = 0;
  if (step_to(s, -1) != LOOM_OK) {
    loom_scheduler_free(s);
    return NULL;
  }
  return s;
}

loom_scheduler *loom_step_lr(loom_optimizer *opt, int step_size, double gamma) {
  if (step_size < 1) {
    core_set_error(LOOM_ERR_INVALID, "StepLR: step_size must be >= 1, got %d", step_size);
    return NULL;
  }
  loom_scheduler *s = create("StepLR", SCH_STEP, opt);
  if (!s) return NULL;
  s->step_size = step_size;
  s->gamma = optim_or(gamma, 0.1);
  return start(s);
}

static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

static bool copy_milestones(loom_scheduler *s, const char *name, const int *milestones, int n, bool sorted_strict) {
  if (n < 0 || (n > 0 && !milestones)) {
    core_set_error(LOOM_ERR_INVALID, "%s: need n >= 0 milestones, got %d", name, n);
    return false;
  }
  s->milestones = malloc((size_t)(n + 1) * sizeof(int));
  if (!s->milestones) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", name);
    return false;
  }
  if (n > 0) memcpy(s->milestones, milestones, (size_t)n * sizeof(int));
  s->n_milestones = n;
  for (int k = 0; sorted_strict && k < n; k++)
    if (milestones[k] < 1 || (k > 0 && milestones[k] <= milestones[k - 1])) {
      core_set_error(LOOM_ERR_INVALID, "%s: milestones must be increasing and >= 1, got %d after %d", name,
                     milestones[k], k > 0 ? milestones[k - 1] : 0);
      return false;
    }
  qsort(s->milestones, (size_t)n, sizeof(int), cmp_int);
  return true;
}

loom_scheduler *loom_multistep_lr(loom_optimizer *opt, const int *milestones, int n, double gamma) {
  loom_scheduler *s = create("MultiStepLR", SCH_MULTISTEP, opt);
  if (!s) return NULL;
  if (!copy_milestones(s, "MultiStepLR", milestones, n, false)) {
    loom_scheduler_free(s);
    return NULL;
  }
  s->gamma = optim_or(gamma, 0.1);
  return start(s);
}

loom_scheduler *loom_cosine_annealing_lr(loom_optimizer *opt, int t_max, double eta_min) {
  if (t_max < 1) {
    core_set_error(LOOM_ERR_INVALID, "CosineAnnealingLR: T_max must be >= 1, got %d", t_max);
    return NULL;
  }
  loom_scheduler *s = create("CosineAnnealingLR", SCH_COSINE, opt);
  if (!s) return NULL;
  s->t_max = t_max;
  s->eta_min = eta_min;
  return start(s);
}

loom_scheduler *loom_linear_lr(loom_optimizer *opt, double start_factor, double end_factor, int total_iters) {
  start_factor = optim_or(start_factor, 1.0 / 3);
  end_factor = optim_or(end_factor, 1.0);
  total_iters = total_iters == 0 ? 5 : total_iters;
  if (!(start_factor > 0 && start_factor <= 1) || !(end_factor >= 0 && end_factor <= 1) || total_iters < 1) {
    core_set_error(LOOM_ERR_INVALID, "LinearLR: need 0 < start_factor <= 1, 0 <= end_factor <= 1, total_iters >= 1, got %g, %g, %d",
                   start_factor, end_factor, total_iters);
    return NULL;
  }
  loom_scheduler *s = create("LinearLR", SCH_LINEAR, opt);
  if (!s) return NULL;
  s->start_factor = start_factor;
  s->end_factor = end_factor;
  s->total_iters = total_iters;
  return start(s);
}

/* n values: arr's, or v for every group when arr is NULL. NULL + error when out of memory. */
static double *per_group(const char *name, const double *arr, double v, int n) {
  double *out = malloc((size_t)(n + 1) * sizeof *out);
  if (!out) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", name);
    return NULL;
  }
  for (int g = 0; g < n; g++) out[g] = arr ? arr[g] : v;
  return out;
}

/* The momentum bounds of every group: base[g] or base, max[g] or max. Each
 * must be a valid value of the option it moves (checked before anything changes). */
static double bound(const double *arr, double v, int g) { return arr ? arr[g] : v; }

static bool momentum_ok(loom_optimizer *opt, const char *name, const double *bases, double base, const double *maxes,
                        double max) {
  int n;
  optim_groups(opt, &n);
  for (int g = 0; g < n; g++)
    for (int j = 0; j < 2; j++) {
      double v = j ? bound(maxes, max, g) : bound(bases, base, g);
      if (!optim_momentum_ok(opt, g, v)) {
        const char *kind = loom_optimizer_name(opt);
        core_set_error(LOOM_ERR_INVALID, "%s: %s momentum %g of group %d is not a valid %s of %s", name,
                       j ? "max" : "base", v, g, kind[0] == 'A' ? "beta1" : "momentum", kind);
        return false;
      }
    }
  return true;
}

/* Cycles momentum between those bounds (s->mom: base, max per group). */
static bool setup_momentum(loom_scheduler *s, const char *name, const double *bases, double base, const double *maxes,
                           double max) {
  s->cycle_momentum = true;
  s->mom = malloc((size_t)(2 * s->n_groups + 1) * sizeof *s->mom);
  if (!s->mom) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", name);
    return false;
  }
  for (int g = 0; g < s->n_groups; g++) s->mom[2 * g] = bound(bases, base, g), s->mom[2 * g + 1] = bound(maxes, max, g);
  return true;
}

loom_scheduler *loom_onecycle_lr(loom_optimizer *opt, double max_lr, int total_steps, const loom_onecycle_opts *o) {
  loom_onecycle_opts r = o ? *o : (loom_onecycle_opts){0};
  double pct = optim_or(r.pct_start, 0.3), div = optim_or(r.div_factor, 25), fdiv = optim_or(r.final_div_factor, 1e4);
  bool lrs_ok = true;
  int n;
  optim_group *groups = optim_groups(opt, &n);
  for (int g = 0; r.max_lrs && g < n; g++) lrs_ok = lrs_ok && r.max_lrs[g] > 0 && isfinite(r.max_lrs[g]);
  if (total_steps < 1 || !(r.max_lrs || (max_lr > 0 && isfinite(max_lr))) || !lrs_ok || !(pct >= 0 && pct <= 1) ||
      !(div > 0) || !(fdiv > 0)) {
    core_set_error(LOOM_ERR_INVALID, "OneCycleLR: need total_steps >= 1, max_lr%s > 0, pct_start in [0, 1], div factors > 0, got %d, %g, %g, %g, %g",
                   r.max_lrs ? "s" : "", total_steps, r.max_lrs ? (lrs_ok ? 1.0 : 0.0) : max_lr, pct, div, fdiv);
    return NULL;
  }
  double mb = optim_or(r.base_momentum, 0.85), mm = optim_or(r.max_momentum, 0.95);
  if (!r.no_cycle_momentum && !momentum_ok(opt, "OneCycleLR", r.base_momentums, mb, r.max_momentums, mm)) return NULL;
  loom_scheduler *s = create("OneCycleLR", SCH_ONECYCLE, opt);
  if (!s) return NULL;
  s->phase_lrs = calloc((size_t)(4 * n + 1), sizeof *s->phase_lrs);
  if (!s->phase_lrs) {
    loom_scheduler_free(s);
    core_set_error(LOOM_ERR_OOM, "OneCycleLR: out of host memory");
    return NULL;
  }
  if (!r.no_cycle_momentum &&
      !setup_momentum(s, "OneCycleLR", r.base_momentums, mb, r.max_momentums, mm)) {
    loom_scheduler_free(s);
    return NULL;
  }
  s->total_steps = total_steps;
  s->anneal_linear = r.anneal_linear;
  double up = pct * total_steps;
  s->n_phases = r.three_phase ? 3 : 2;
  double ends3[3] = {up - 1, 2 * up - 2, total_steps - 1.0}, ends2[2] = {up - 1, total_steps - 1.0};
  int mom3[4] = {1, 0, 1, 1}, mom2[3] = {1, 0, 1};
  memcpy(s->phase_end, r.three_phase ? ends3 : ends2, (size_t)s->n_phases * sizeof(double));
  memcpy(s->phase_mom, r.three_phase ? mom3 : mom2, (size_t)(s->n_phases + 1) * sizeof(int));
  for (int g = 0; g < n; g++) {
    double peak = r.max_lrs ? r.max_lrs[g] : max_lr, initial = peak / div, min_lr = initial / fdiv;
    double lrs3[4] = {initial, peak, initial, min_lr}, lrs2[3] = {initial, peak, min_lr};
    memcpy(s->phase_lrs + 4 * g, r.three_phase ? lrs3 : lrs2, (size_t)(s->n_phases + 1) * sizeof(double));
    groups[g].initial_lr = initial, groups[g].has_initial_lr = true;  /* PyTorch overwrites initial_lr */
    s->base_lrs[g] = initial;
  }
  return start(s);
}

loom_scheduler *loom_cyclic_lr(loom_optimizer *opt, double base_lr, double max_lr, const loom_cyclic_opts *o) {
  loom_cyclic_opts r = o ? *o : (loom_cyclic_opts){0};
  r.step_size_up = r.step_size_up == 0 ? 2000 : r.step_size_up;
  r.step_size_down = r.step_size_down == 0 ? r.step_size_up : r.step_size_down;
  r.gamma = optim_or(r.gamma, 1.0);
  int n;
  optim_group *groups = optim_groups(opt, &n);
  bool lrs_ok = true;
  for (int g = 0; g < n; g++) {
    double b = r.base_lrs ? r.base_lrs[g] : base_lr, m = r.max_lrs ? r.max_lrs[g] : max_lr;
    lrs_ok = lrs_ok && b >= 0 && m >= 0 && isfinite(b) && isfinite(m);
  }
  if (r.step_size_up < 1 || r.step_size_down < 1 || !lrs_ok || !(r.gamma > 0) || r.mode < LOOM_CYCLIC_TRIANGULAR ||
      r.mode > LOOM_CYCLIC_EXP_RANGE) {
    core_set_error(LOOM_ERR_INVALID, "CyclicLR: need step_size_up, step_size_down >= 1, finite base and max lrs >= 0, "
                   "gamma > 0 and a known mode, got %d, %d, %s, %g, mode %d", r.step_size_up, r.step_size_down,
                   lrs_ok ? "lrs ok" : "a bad lr", r.gamma, (int)r.mode);
    return NULL;
  }
  if (!opt) {
    core_set_error(LOOM_ERR_INVALID, "CyclicLR: optimizer is NULL");
    return NULL;
  }
  double mb = optim_or(r.base_momentum, 0.8), mm = optim_or(r.max_momentum, 0.9);
  if (!r.no_cycle_momentum && !momentum_ok(opt, "CyclicLR", r.base_momentums, mb, r.max_momentums, mm)) return NULL;
  for (int g = 0; g < n; g++) groups[g].lr = r.base_lrs ? r.base_lrs[g] : base_lr;   /* PyTorch sets the lrs first */
  loom_scheduler *s = create("CyclicLR", SCH_CYCLIC, opt);
  if (!s) return NULL;
  s->cyclic = r;
  s->cyclic.base_lrs = s->cyclic.max_lrs = s->cyclic.base_momentums = s->cyclic.max_momentums = NULL;
  s->total_size = (double)r.step_size_up + r.step_size_down;
  s->step_ratio = r.step_size_up / s->total_size;
  s->max_lrs = per_group("CyclicLR", r.max_lrs, max_lr, n);
  if (!s->max_lrs || (!r.no_cycle_momentum && !setup_momentum(s, "CyclicLR", r.base_momentums, mb, r.max_momentums, mm))) {
    loom_scheduler_free(s);
    return NULL;
  }
  for (int g = 0; g < n; g++) s->base_lrs[g] = groups[g].lr;
  return start(s);
}

loom_scheduler *loom_exponential_lr(loom_optimizer *opt, double gamma) {
  if (!(gamma > 0)) {
    core_set_error(LOOM_ERR_INVALID, "ExponentialLR: gamma must be > 0, got %g", gamma);
    return NULL;
  }
  loom_scheduler *s = create("ExponentialLR", SCH_EXPONENTIAL, opt);
  if (!s) return NULL;
  s->gamma = gamma;
  return start(s);
}

loom_scheduler *loom_polynomial_lr(loom_optimizer *opt, int total_iters, double power) {
  total_iters = total_iters == 0 ? 5 : total_iters;
  power = optim_or(power, 1.0);
  if (total_iters < 1 || !(power >= 0)) {
    core_set_error(LOOM_ERR_INVALID, "PolynomialLR: need total_iters >= 1 and power >= 0, got %d, %g", total_iters,
                   power);
    return NULL;
  }
  loom_scheduler *s = create("PolynomialLR", SCH_POLYNOMIAL, opt);
  if (!s) return NULL;
  s->total_iters = total_iters;
  s->power = power;
  return start(s);
}

loom_scheduler *loom_lambda_lr(loom_optimizer *opt, loom_lr_lambda fn, void *ctx) {
  if (!fn) {
    core_set_error(LOOM_ERR_INVALID, "LambdaLR: lr_lambda is NULL");
    return NULL;
  }
  loom_scheduler *s = create("LambdaLR", SCH_LAMBDA, opt);
  if (!s) return NULL;
  s->lambda = fn;
  s->lambda_ctx = ctx;
  return start(s);
}

loom_scheduler *loom_cosine_warm_restarts_lr(loom_optimizer *opt, int t_0, int t_mult, double eta_min) {
  t_mult = t_mult == 0 ? 1 : t_mult;
  if (t_0 < 1 || t_mult < 1) {
    core_set_error(LOOM_ERR_INVALID, "CosineAnnealingWarmRestarts: need T_0 >= 1 and T_mult >= 1, got %d, %d", t_0,
                   t_mult);
    return NULL;
  }
  loom_scheduler *s = create("CosineAnnealingWarmRestarts", SCH_WARM_RESTARTS, opt);
  if (!s) return NULL;
  s->t_0 = s->t_i = t_0;
  s->t_mult = t_mult;
  s->t_cur = -1;
  s->eta_min = eta_min;
  return start(s);
}

loom_scheduler *loom_reduce_lr_on_plateau(loom_optimizer *opt, const loom_plateau_opts *o) {
  loom_plateau_opts r = o ? *o : (loom_plateau_opts){0};
  r.factor = optim_or(r.factor, 0.1);
  r.patience = r.patience == 0 && !r.set_patience ? 10 : r.patience;
  r.threshold = optim_or(r.threshold, 1e-4);
  r.eps = optim_or(r.eps, 1e-8);
  int n;
  optim_groups(opt, &n);
  bool min_ok = r.min_lr >= 0;
  for (int g = 0; r.min_lrs && g < n; g++) min_ok = min_ok && r.min_lrs[g] >= 0;
  if (!(r.factor < 1 && r.factor >= 0) || r.patience < 0 || r.cooldown < 0 || !(r.threshold >= 0) || !min_ok ||
      !(r.eps >= 0)) {
    core_set_error(LOOM_ERR_INVALID, "ReduceLROnPlateau: need 0 <= factor < 1, patience, cooldown, threshold, "
                   "min_lr, eps >= 0, got %g, %d, %d, %g, %g, %g", r.factor, r.patience, r.cooldown, r.threshold,
                   r.min_lr, r.eps);
    return NULL;
  }
  loom_scheduler *s = create("ReduceLROnPlateau", SCH_PLATEAU, opt);
  if (!s) return NULL;
  s->plateau = r;
  s->plateau.min_lrs = NULL;
  s->min_lrs = per_group("ReduceLROnPlateau", r.min_lrs, r.min_lr, n);
  if (!s->min_lrs) {
    loom_scheduler_free(s);
    return NULL;
  }
  s->best = r.mode_max ? -INFINITY : INFINITY;
  s->last_epoch = 0; /* PyTorch's constructor leaves the lrs as they are */
  return s;
}

loom_scheduler *loom_sequential_lr(loom_optimizer *opt, loom_scheduler *const *scheds, int n, const int *milestones) {
  bool ok = n >= 1 && scheds;
  for (int k = 0; ok && k < n; k++)
    ok = scheds[k] && scheds[k]->opt == opt && scheds[k]->kind != SCH_SEQUENTIAL && scheds[k]->kind != SCH_PLATEAU;
  loom_scheduler *s = ok ? create("SequentialLR", SCH_SEQUENTIAL, opt) : NULL;
  if (s) s->subs = calloc((size_t)n, sizeof *s->subs);
  if (s && s->subs)
    for (int k = 0; k < n; k++) s->subs[k] = scheds[k];
  if (s && s->subs) s->n_subs = n;
  else
    for (int k = 0; scheds && k < n; k++) loom_scheduler_free(scheds[k]);
  if (!ok) {
    core_set_error(LOOM_ERR_INVALID, "SequentialLR: need n >= 1 non-NULL schedulers of this optimizer, none "
                                     "sequential or ReduceLROnPlateau");
    return NULL;
  }
  if (!s || !s->subs || !copy_milestones(s, "SequentialLR", milestones, n - 1, true)) {
    if (s && !s->subs) core_set_error(LOOM_ERR_OOM, "SequentialLR: out of host memory");
    loom_scheduler_free(s);
    return NULL;
  }
  /* PyTorch: back to the initial lrs, undo the constructors' steps, start the first one */
  int ng;
  optim_group *groups = optim_groups(opt, &ng);
  for (int g = 0; g < ng; g++) groups[g].lr = groups[g].initial_lr;
  for (int k = 0; k < n; k++) s->subs[k]->last_epoch--;
  s->last_epoch = 0;
  s->subs[0]->step_count = 0;
  step_to(s->subs[0], -1);
  memcpy(s->last_lrs, s->subs[0]->last_lrs, (size_t)ng * sizeof(double));
  return s;
}

double loom_scheduler_get_lr(const loom_scheduler *s, int group) {
  if (!s || group < 0 || group >= s->n_groups) {
    core_set_error(LOOM_ERR_INVALID, "scheduler_get_lr: group %d out of range [0, %d)", group, s ? s->n_groups : 0);
    return NAN;
  }
  return s->last_lrs[group];
}

int64_t loom_scheduler_last_epoch(const loom_scheduler *s) { return s ? s->last_epoch : -1; }

int loom_scheduler_state_dict(const loom_scheduler *s, loom_tensor_map *out, const char *prefix) {
  if (!s || !out) return core_set_error(LOOM_ERR_INVALID, "scheduler_state_dict: NULL %s", s ? "map" : "scheduler");
  char key[512], suffix[96], sub[512];
  int st = optim_put_number(out, optim_key(key, sizeof key, prefix, "last_epoch"), (double)s->last_epoch);
  if (!st) st = optim_put_number(out, optim_key(key, sizeof key, prefix, "step_count"), (double)s->step_count);
  for (int g = 0; !st && g < s->n_groups; g++) {
    snprintf(suffix, sizeof suffix, "base_lrs.%d", g);
    st = optim_put_number(out, optim_key(key, sizeof key, prefix, suffix), s->base_lrs[g]);
    snprintf(suffix, sizeof suffix, "last_lr.%d", g);
    if (!st) st = optim_put_number(out, optim_key(key, sizeof key, prefix, suffix), s->last_lrs[g]);
  }
  const char *names[3] = {0};
  double vals[3] = {0};
  if (s->kind == SCH_WARM_RESTARTS) names[0] = "T_i", vals[0] = (double)s->t_i, names[1] = "T_cur", vals[1] = s->t_cur;
  if (s->kind == SCH_PLATEAU) {
    names[0] = "best", vals[0] = s->best;
    names[1] = "num_bad_epochs", vals[1] = (double)s->num_bad_epochs;
    names[2] = "cooldown_counter", vals[2] = (double)s->cooldown_counter;
  }
  for (int k = 0; !st && k < 3 && names[k]; k++) st = optim_put_number(out, optim_key(key, sizeof key, prefix, names[k]), vals[k]);
  for (int k = 0; !st && k < s->n_subs; k++) {
    snprintf(suffix, sizeof suffix, "schedulers.%d.", k);
    st = loom_scheduler_state_dict(s->subs[k], out, optim_key(sub, sizeof sub, prefix, suffix));
  }
  return st;
}

/* Checks (apply false) or applies (apply true) the state of s. */
static int load_state(loom_scheduler *s, const loom_tensor_map *in, const char *prefix, bool apply) {
  char key[512], suffix[96], sub[512];
  double v;
  if (!optim_get_number(in, optim_key(key, sizeof key, prefix, "last_epoch"), &v))
    return core_set_error(LOOM_ERR_INVALID, "scheduler_load_state_dict: %s is missing", key);
  if (apply) s->last_epoch = (int64_t)v;
  if (optim_get_number(in, optim_key(key, sizeof key, prefix, "step_count"), &v) && apply) s->step_count = (int64_t)v;
  for (int g = 0; g < s->n_groups; g++) {
    snprintf(suffix, sizeof suffix, "base_lrs.%d", g);
    if (!optim_get_number(in, optim_key(key, sizeof key, prefix, suffix), &v))
      return core_set_error(LOOM_ERR_INVALID, "scheduler_load_state_dict: %s is missing (%d groups)", key, s->n_groups);
    if (apply) s->base_lrs[g] = v;
    snprintf(suffix, sizeof suffix, "last_lr.%d", g);
    if (optim_get_number(in, optim_key(key, sizeof key, prefix, suffix), &v) && apply) s->last_lrs[g] = v;
  }
  static const char *warm[] = {"T_i", "T_cur", NULL}, *plateau[] = {"best", "num_bad_epochs", "cooldown_counter", NULL};
  const char *const *extra = s->kind == SCH_WARM_RESTARTS ? warm : s->kind == SCH_PLATEAU ? plateau : NULL;
  for (int k = 0; extra && extra[k]; k++) {
    if (!optim_get_number(in, optim_key(key, sizeof key, prefix, extra[k]), &v))
      return core_set_error(LOOM_ERR_INVALID, "scheduler_load_state_dict: %s is missing", key);
    if (!apply) continue;
    if (s->kind == SCH_WARM_RESTARTS) {
      if (k == 0) s->t_i = (int64_t)v;
      else s->t_cur = v;
    } else if (k == 0) s->best = v;
    else if (k == 1) s->num_bad_epochs = (int64_t)v;
    else s->cooldown_counter = (int64_t)v;
  }
  for (int k = 0; k < s->n_subs; k++) {
    snprintf(suffix, sizeof suffix, "schedulers.%d.", k);
    int st = load_state(s->subs[k], in, optim_key(sub, sizeof sub, prefix, suffix), apply);
    if (st) return st;
  }
  return LOOM_OK;
}

int loom_scheduler_load_state_dict(loom_scheduler *s, const loom_tensor_map *in, const char *prefix) {
  if (!s || !in) return core_set_error(LOOM_ERR_INVALID, "scheduler_load_state_dict: NULL %s", s ? "map" : "scheduler");
  int st = load_state(s, in, prefix, false);
  return st ? st : load_state(s, in, prefix, true);
}
