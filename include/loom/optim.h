/* Loom optimisers, learning-rate schedules, gradient clipping, loss scaling and autocast.
 *
 * Optimisers follow torch.optim: the same update rules, defaults, per-parameter
 * state (created lazily at a parameter's first step) and parameter groups,
 * each with its own options. Parameters whose .grad is NULL are skipped by
 * step. Updates run with autograd recording off, in place on the parameters'
 * storage; every (group, device, dtype) bucket of parameters is updated by ONE
 * fused multi-tensor kernel launch (PyTorch's foreach path, also per group).
 *
 * Options structs: all-zero means PyTorch's defaults (pass NULL for them too).
 * A field whose PyTorch default is not zero (lr, betas, eps, alpha, AdamW's
 * weight_decay) reads 0 as "default"; to ask for a true zero there, write
 * LOOM_OPT_ZERO (negative zero), e.g. .beta1 = LOOM_OPT_ZERO. */
#ifndef LOOM_OPTIM_H
#define LOOM_OPTIM_H

#include "loom/tensor.h"
#include "loom/io.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_module loom_module;

/* An explicit zero for an option whose all-zero reading is "default". */
#define LOOM_OPT_ZERO (-0.0)

/* ---- optimisers ---- */
typedef struct loom_optimizer loom_optimizer;

typedef struct loom_sgd_opts {
  double lr;            /* 0 = 1e-3 */
  double momentum;      /* 0 */
  double dampening;     /* 0 */
  double weight_decay;  /* 0 (L2, added to the gradient) */
  bool nesterov;        /* needs momentum > 0 and dampening == 0 */
  bool maximize;
} loom_sgd_opts;

typedef struct loom_adam_opts {
  double lr;            /* 0 = 1e-3 */
  double beta1, beta2;  /* 0 = 0.9, 0.999 */
  double eps;           /* 0 = 1e-8 */
  double weight_decay;  /* Adam: 0, coupled (L2). AdamW: 0 = 1e-2, decoupled */
  bool amsgrad;
  bool maximize;
} loom_adam_opts;

typedef struct loom_rmsprop_opts {
  double lr;            /* 0 = 1e-2 */
  double alpha;         /* 0 = 0.99 */
  double eps;           /* 0 = 1e-8 */
  double weight_decay;  /* 0 */
  double momentum;      /* 0 */
  bool centered;
  bool maximize;
} loom_rmsprop_opts;

/* The optimiser keeps a reference to each parameter. params may be NULL with
 * n == 0 (then add groups with loom_optimizer_add_param_group). NULL + error
 * on bad options or a parameter that is not a floating, contiguous leaf. */
loom_optimizer *loom_sgd(loom_tensor *const *params, int n, const loom_sgd_opts *o);
loom_optimizer *loom_adam(loom_tensor *const *params, int n, const loom_adam_opts *o);
loom_optimizer *loom_adamw(loom_tensor *const *params, int n, const loom_adam_opts *o);
loom_optimizer *loom_rmsprop(loom_tensor *const *params, int n, const loom_rmsprop_opts *o);
/* The same over a module's trainable parameters (requires_grad, in
 * named_parameters order). */
loom_optimizer *loom_sgd_module(const loom_module *m, const loom_sgd_opts *o);
loom_optimizer *loom_adam_module(const loom_module *m, const loom_adam_opts *o);
loom_optimizer *loom_adamw_module(const loom_module *m, const loom_adam_opts *o);
loom_optimizer *loom_rmsprop_module(const loom_module *m, const loom_rmsprop_opts *o);
/* Fills out[0..max) with m's trainable parameters (borrowed) and returns how
 * many m has (may exceed max; call with max 0 to count). -1 on error. */
int loom_module_trainable_params(const loom_module *m, loom_tensor **out, int max);

void loom_optimizer_free(loom_optimizer *opt);
/* "SGD", "Adam", "AdamW", "RMSprop". */
const char *loom_optimizer_name(const loom_optimizer *opt);
/* A new group with the optimiser's options, but lr / weight_decay when >= 0
 * (negative = the optimiser's). Returns the group's index or -1. A parameter
 * may belong to one group only. */
int loom_optimizer_add_param_group(loom_optimizer *opt, loom_tensor *const *params, int n, double lr,
                                   double weight_decay);
/* A new group with options of its own (PyTorch's param group dict): o is read
 * exactly as the constructor reads it (all-zero = PyTorch's defaults, not the
 * optimiser's; start from a copy of the constructor's struct to change one
 * field); NULL = the optimiser's options. The kind must match (adam for Adam
 * and AdamW). Returns the group's index or -1. */
int loom_sgd_add_group(loom_optimizer *opt, loom_tensor *const *params, int n, const loom_sgd_opts *o);
int loom_adam_add_group(loom_optimizer *opt, loom_tensor *const *params, int n, const loom_adam_opts *o);
int loom_rmsprop_add_group(loom_optimizer *opt, loom_tensor *const *params, int n, const loom_rmsprop_opts *o);
/* Group g's option that cycling schedules move: SGD's and RMSprop's momentum,
 * Adam's and AdamW's beta1 (NAN + error when g is out of range). */
double loom_optimizer_get_momentum(const loom_optimizer *opt, int group);
int loom_optimizer_num_groups(const loom_optimizer *opt);
/* One update of every parameter with a gradient. Returns 0 or an error status. */
int loom_optimizer_step(loom_optimizer *opt);
/* Drops every parameter's gradient (set_to_none, PyTorch's default). */
void loom_optimizer_zero_grad(loom_optimizer *opt);
/* Per-group learning rate (group -1 = every group for set). */
int loom_optimizer_set_lr(loom_optimizer *opt, int group, double lr);
double loom_optimizer_get_lr(const loom_optimizer *opt, int group);   /* NAN + error when out of range */
/* The lr a group was created with (schedulers start from it: PyTorch's initial_lr). */
double loom_optimizer_get_initial_lr(const loom_optimizer *opt, int group);

/* Checkpoint state, in PyTorch's numbering (parameters counted 0.. across
 * groups in order). Names are prefix followed by
 *   state.<i>.step (0-d f64), state.<i>.momentum_buffer, state.<i>.exp_avg,
 *   state.<i>.exp_avg_sq, state.<i>.max_exp_avg_sq, state.<i>.square_avg,
 *   state.<i>.grad_avg, param_groups.<g>.lr, param_groups.<g>.initial_lr,
 *   param_groups.<g>.weight_decay and the group's other options:
 *   SGD momentum, dampening, nesterov, maximize; Adam / AdamW betas (a pair),
 *   eps, amsgrad, maximize; RMSprop alpha, eps, momentum, centered, maximize
 *   (flags as 0 / 1)
 * The buffers are the live tensors (references); the numbers are new f64
 * tensors. prefix may be NULL. Load copies values in (device / dtype
 * converted), checks shapes, group counts and options (a group option absent
 * from the map is left as it is), and changes nothing on error. */
int loom_optimizer_state_dict(const loom_optimizer *opt, loom_tensor_map *out, const char *prefix);
int loom_optimizer_load_state_dict(loom_optimizer *opt, const loom_tensor_map *in, const char *prefix);

/* ---- functional fused updates (what step runs; in place, no autograd) ----
 * All lists have n entries; params, grads and state tensors of one entry share
 * shape; all entries share one device and one floating dtype, and are
 * contiguous. On CUDA the whole list is updated in one kernel launch. */
typedef struct loom_fused_scalars {
  double lr, weight_decay;
  int64_t step;           /* Adam: the step count after this update (>= 1) */
  bool first;             /* SGD: momentum buffer holds nothing yet (it is set to the grad) */
} loom_fused_scalars;
int loom_sgd_update(loom_tensor *const *params, loom_tensor *const *grads, loom_tensor *const *momentum_bufs,
                    const loom_fused_scalars *sc, int n, const loom_sgd_opts *o);
/* decoupled: AdamW's weight decay. max_exp_avg_sqs may be NULL unless amsgrad. */
int loom_adam_update(loom_tensor *const *params, loom_tensor *const *grads, loom_tensor *const *exp_avgs,
                     loom_tensor *const *exp_avg_sqs, loom_tensor *const *max_exp_avg_sqs,
                     const loom_fused_scalars *sc, int n, const loom_adam_opts *o, bool decoupled);
/* momentum_bufs may be NULL unless momentum > 0; grad_avgs unless centered. */
int loom_rmsprop_update(loom_tensor *const *params, loom_tensor *const *grads, loom_tensor *const *square_avgs,
                        loom_tensor *const *momentum_bufs, loom_tensor *const *grad_avgs,
                        const loom_fused_scalars *sc, int n, const loom_rmsprop_opts *o);

/* ---- learning-rate schedules ----
 * A scheduler drives the lr of every group of one optimiser, from each
 * group's initial lr. Creating one sets the lrs for step 0 (as PyTorch's
 * constructors do); loom_scheduler_step advances one step (call it after
 * loom_optimizer_step). The scheduler keeps no reference to the optimiser's
 * lifetime: free the scheduler first. */
typedef struct loom_scheduler loom_scheduler;

loom_scheduler *loom_step_lr(loom_optimizer *opt, int step_size, double gamma);          /* gamma 0 = 0.1 */
loom_scheduler *loom_multistep_lr(loom_optimizer *opt, const int *milestones, int n, double gamma); /* 0 = 0.1 */
loom_scheduler *loom_cosine_annealing_lr(loom_optimizer *opt, int t_max, double eta_min);
/* start_factor 0 = 1/3, end_factor 0 = 1.0, total_iters 0 = 5. */
loom_scheduler *loom_linear_lr(loom_optimizer *opt, double start_factor, double end_factor, int total_iters);
/* OneCycleLR and CyclicLR cycle each group's momentum (SGD / RMSprop
 * momentum, Adam's beta1) inversely to the lr, as PyTorch's default
 * cycle_momentum=True does; no_cycle_momentum leaves it alone. The per-group
 * arrays (max_lrs, base_momentums, ...) have one entry per group of the
 * optimiser; NULL = the scalar for every group. */
typedef struct loom_onecycle_opts {
  double pct_start;         /* 0 = 0.3 */
  double div_factor;        /* 0 = 25 */
  double final_div_factor;  /* 0 = 1e4 */
  bool anneal_linear;       /* false = cosine annealing */
  bool three_phase;
  bool no_cycle_momentum;   /* PyTorch's cycle_momentum=False */
  double base_momentum;     /* 0 = 0.85 */
  double max_momentum;      /* 0 = 0.95 */
  const double *max_lrs;    /* per group; NULL = max_lr */
  const double *base_momentums, *max_momentums;  /* per group; NULL = the scalars */
} loom_onecycle_opts;
/* total_steps > 0. */
loom_scheduler *loom_onecycle_lr(loom_optimizer *opt, double max_lr, int total_steps, const loom_onecycle_opts *o);
/* CyclicLR: the lr cycles between base_lr (set as each group's lr) and max_lr
 * over step_size_up + step_size_down steps; the amplitude is scaled by mode
 * (triangular: 1, triangular2: halved every cycle, exp_range: gamma^step) or
 * by scale_fn(x, ctx) with x the cycle number (from 1), or the step when
 * scale_by_step (PyTorch's scale_mode 'iterations'). */
typedef enum loom_cyclic_mode { LOOM_CYCLIC_TRIANGULAR, LOOM_CYCLIC_TRIANGULAR2, LOOM_CYCLIC_EXP_RANGE } loom_cyclic_mode;
typedef double (*loom_cyclic_scale_fn)(double x, void *ctx);
typedef struct loom_cyclic_opts {
  int step_size_up;         /* 0 = 2000 */
  int step_size_down;       /* 0 = step_size_up */
  loom_cyclic_mode mode;    /* triangular */
  double gamma;             /* 0 = 1 (exp_range) */
  loom_cyclic_scale_fn scale_fn;  /* NULL = mode's */
  void *scale_ctx;
  bool scale_by_step;       /* with scale_fn: x = the step, not the cycle */
  bool no_cycle_momentum;
  double base_momentum;     /* 0 = 0.8 */
  double max_momentum;      /* 0 = 0.9 */
  const double *base_lrs, *max_lrs;              /* per group; NULL = the scalars */
  const double *base_momentums, *max_momentums;  /* per group; NULL = the scalars */
} loom_cyclic_opts;
loom_scheduler *loom_cyclic_lr(loom_optimizer *opt, double base_lr, double max_lr, const loom_cyclic_opts *o);
/* ExponentialLR: lr * gamma every step (gamma > 0). */
loom_scheduler *loom_exponential_lr(loom_optimizer *opt, double gamma);
/* PolynomialLR: initial_lr * (1 - min(t, total_iters) / total_iters)^power;
 * total_iters 0 = 5, power 0 = 1. */
loom_scheduler *loom_polynomial_lr(loom_optimizer *opt, int total_iters, double power);
/* LambdaLR: initial_lr of group g times fn(epoch, g, ctx) (PyTorch's lr_lambda,
 * one function for every group; it is told the group). */
typedef double (*loom_lr_lambda)(int64_t epoch, int group, void *ctx);
loom_scheduler *loom_lambda_lr(loom_optimizer *opt, loom_lr_lambda fn, void *ctx);
/* CosineAnnealingWarmRestarts: cosine from initial_lr to eta_min over t_0
 * steps, then restarts, each period t_mult times longer (t_mult 0 = 1). */
loom_scheduler *loom_cosine_warm_restarts_lr(loom_optimizer *opt, int t_0, int t_mult, double eta_min);
/* ReduceLROnPlateau, stepped with loom_scheduler_step_metric. All-zero =
 * PyTorch's defaults (mode 'min', factor 0.1, patience 10, threshold 1e-4
 * 'rel', cooldown 0, min_lr 0, eps 1e-8); LOOM_OPT_ZERO gives a true 0 to
 * threshold and eps, set_patience a patience of 0. */
typedef struct loom_plateau_opts {
  bool mode_max;        /* false = 'min': lower metrics are better */
  double factor;        /* 0 = 0.1; must be < 1 */
  int patience;         /* 0 = 10 unless set_patience */
  bool set_patience;
  double threshold;     /* 0 = 1e-4 */
  bool threshold_abs;   /* false = 'rel' */
  int cooldown;         /* 0 */
  double min_lr;        /* 0, for every group */
  const double *min_lrs;  /* one per group; NULL = min_lr */
  double eps;           /* 0 = 1e-8: a smaller change of lr is skipped */
} loom_plateau_opts;
loom_scheduler *loom_reduce_lr_on_plateau(loom_optimizer *opt, const loom_plateau_opts *o);
/* One ReduceLROnPlateau step with this epoch's metric (a NaN metric counts as
 * no improvement). An error for the other schedulers, whose loom_scheduler_step
 * takes no metric (and loom_scheduler_step is an error for this one). */
int loom_scheduler_step_metric(loom_scheduler *s, double metric);
/* Runs scheds[0] until milestones[0], then scheds[1], ... (PyTorch's
 * SequentialLR). Takes over the n schedulers (freed with this one). */
loom_scheduler *loom_sequential_lr(loom_optimizer *opt, loom_scheduler *const *scheds, int n,
                                   const int *milestones);

int loom_scheduler_step(loom_scheduler *s);
double loom_scheduler_get_lr(const loom_scheduler *s, int group);   /* the last lr it set */
int64_t loom_scheduler_last_epoch(const loom_scheduler *s);
void loom_scheduler_free(loom_scheduler *s);
/* State: prefix + "last_epoch", "step_count", "base_lrs.<g>", "last_lr.<g>"
 * (0-d f64), "T_i" and "T_cur" for warm restarts, "best", "num_bad_epochs" and
 * "cooldown_counter" for ReduceLROnPlateau, plus the sub-schedulers' states
 * under prefix + "schedulers.<k>." for a sequential one. */
int loom_scheduler_state_dict(const loom_scheduler *s, loom_tensor_map *out, const char *prefix);
int loom_scheduler_load_state_dict(loom_scheduler *s, const loom_tensor_map *in, const char *prefix);

/* ---- gradient clipping ----
 * Returns the total norm of all gradients taken together (a NULL grad counts
 * as none), norm_type = INFINITY for the max-abs norm. When the total is not
 * finite the gradients are left as they are and the total is returned (NAN +
 * error on bad arguments). Otherwise grads are scaled by
 * min(1, max_norm / (total + 1e-6)). */
double loom_clip_grad_norm(loom_tensor *const *params, int n, double max_norm, double norm_type);
/* Clamps every gradient to [-clip_value, clip_value]. Returns 0 or an error. */
int loom_clip_grad_value(loom_tensor *const *params, int n, double clip_value);

/* ---- dynamic loss scaling (torch.amp.GradScaler) ---- */
typedef struct loom_grad_scaler loom_grad_scaler;
typedef struct loom_grad_scaler_opts {
  double init_scale;        /* 0 = 65536 */
  double growth_factor;     /* 0 = 2 */
  double backoff_factor;    /* 0 = 0.5 */
  int growth_interval;      /* 0 = 2000 */
  bool disabled;            /* scale 1, never skips: the same code runs without scaling */
} loom_grad_scaler_opts;
loom_grad_scaler *loom_grad_scaler_new(const loom_grad_scaler_opts *o);
void loom_grad_scaler_free(loom_grad_scaler *s);
/* loss * scale (recorded by autograd; a new tensor). */
loom_tensor *loom_grad_scaler_scale(loom_grad_scaler *s, const loom_tensor *loss);
/* Divides opt's gradients by the scale (once per step) and records whether
 * any is inf / NaN. */
int loom_grad_scaler_unscale(loom_grad_scaler *s, loom_optimizer *opt);
/* Unscales if not done yet, then steps opt unless an inf / NaN was found.
 * *skipped (may be NULL) tells which. */
int loom_grad_scaler_step(loom_grad_scaler *s, loom_optimizer *opt, bool *skipped);
/* Backs off after an inf / NaN, grows after growth_interval clean steps. */
int loom_grad_scaler_update(loom_grad_scaler *s);
double loom_grad_scaler_get_scale(const loom_grad_scaler *s);
/* prefix + "scale", "growth_tracker" (0-d f64). */
int loom_grad_scaler_state_dict(const loom_grad_scaler *s, loom_tensor_map *out, const char *prefix);
int loom_grad_scaler_load_state_dict(loom_grad_scaler *s, const loom_tensor_map *in, const char *prefix);

/* ---- autocast ----
 * Inside a region, matmul-like ops (matmul, bmm, addmm, linear, conv,
 * attention) on devices of `type` run in `dtype` (f16 or bf16) and
 * precision-sensitive ops (softmax, norms, losses) in f32, with the casts
 * recorded by autograd so gradients reach the f32 master weights. Regions are
 * thread-local and nest; a region with LOOM_F32 turns autocast off inside an
 * enclosing one. Returns 0 or an error status. */
int loom_autocast_begin(loom_device_type type, loom_dtype dtype);
int loom_autocast_end(void);
/* The dtype in force for device type `type`, or LOOM_DTYPE_COUNT when none. */
loom_dtype loom_autocast_dtype(loom_device_type type);

#ifdef __cplusplus
}
#endif
#endif
