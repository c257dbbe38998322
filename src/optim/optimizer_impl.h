/* The optimiser struct, shared by optimizer.c and optim_state.c. */
#ifndef LOOM_OPTIM_OPTIMIZER_IMPL_H
#define LOOM_OPTIM_OPTIMIZER_IMPL_H

#include "optim/optim_impl.h"

typedef enum optim_kind { OPT_SGD, OPT_ADAM, OPT_ADAMW, OPT_RMSPROP, OPT_KIND_COUNT } optim_kind;

typedef struct optim_param {
  loom_tensor *p;          /* owned reference */
  int group;
  int64_t step;            /* updates done (PyTorch's state["step"]) */
  loom_tensor *state[3];   /* owned; which ones a group uses: optim_state_used */
  bool fresh;              /* state[0] was just created (SGD sets a new momentum buffer to the grad) */
} optim_param;

struct loom_optimizer {
  optim_kind kind;
  optim_group defaults;     /* the constructor's options: what new groups start from */
  optim_param *params;
  int n_params;
  optim_group *groups;
  int n_groups;
};

/* PyTorch's name of state slot s ("exp_avg", ...) and whether the options of grp use it. */
const char *optim_state_name(const loom_optimizer *opt, int s);
bool optim_state_used(const loom_optimizer *opt, const optim_group *grp, int s);
/* Checks group options o of opt's kind (lr and weight_decay included):
 * false + error naming the optimiser when out of range. */
bool optim_check_group(const loom_optimizer *opt, const optim_group *grp);
/* Drops a parameter's state and step count. */
void optim_param_clear(optim_param *p);

#endif
