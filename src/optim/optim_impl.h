/* Internals shared by the files of src/optim: option defaults and the
 * optimiser's parameter groups, which the schedulers and the scaler read. */
#ifndef LOOM_OPTIM_IMPL_H
#define LOOM_OPTIM_IMPL_H

#include <math.h>

#include "core/autograd_impl.h"
#include "loom/io.h"
#include "loom/optim.h"

/* v, or dflt when v is +0 (LOOM_OPT_ZERO, i.e. -0, stays a true zero). */
static inline double optim_or(double v, double dflt) { return v == 0 && !signbit(v) ? dflt : v; }

/* Options with every default filled in; false + error when out of range. */
bool optim_resolve_sgd(const loom_sgd_opts *in, loom_sgd_opts *out);
bool optim_resolve_adam(const char *name, const loom_adam_opts *in, bool adamw, loom_adam_opts *out);
bool optim_resolve_rmsprop(const loom_rmsprop_opts *in, loom_rmsprop_opts *out);

/* A parameter group: PyTorch's param_groups entry. lr and weight_decay are
 * the group's (schedulers write lr); the options struct of the optimiser's
 * kind holds the rest (its own lr and weight_decay fields are not read). */
typedef struct optim_group {
  double lr, weight_decay;
  double initial_lr;
  bool has_initial_lr;
  union {
    loom_sgd_opts sgd;
    loom_adam_opts adam;
    loom_rmsprop_opts rmsprop;
  } o;
} optim_group;
optim_group *optim_groups(loom_optimizer *opt, int *n);
/* The option of group g that cycling schedules move: SGD's and RMSprop's
 * momentum, Adam's and AdamW's beta1 (NULL when g is out of range). */
double *optim_group_momentum(loom_optimizer *opt, int g);
/* Whether v is a valid value of that option for group g (0 <= g < groups). */
bool optim_momentum_ok(const loom_optimizer *opt, int g, double v);

/* Parameters of opt with a gradient, in order (borrowed; free the array). */
loom_tensor **optim_params_with_grad(const loom_optimizer *opt, int *n);

/* Names "prefix" + "suffix" into buf. */
const char *optim_key(char *buf, size_t size, const char *prefix, const char *suffix);
/* Stores a new 0-d f64 tensor holding v under key. */
int optim_put_number(loom_tensor_map *m, const char *key, double v);
/* The value of the one-element tensor under key: false when absent. */
bool optim_get_number(const loom_tensor_map *m, const char *key, double *v);

#endif
