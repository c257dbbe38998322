/* Shared by cartpole.c and dqn.c: the environment's random stream and its
 * terminated / truncated distinction. Internal. */
#ifndef LOOM_CARTPOLE_IMPL_H
#define LOOM_CARTPOLE_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "loom/models.h"

/* splitmix64: the next 64 random bits of *state. */
uint64_t models_splitmix64(uint64_t *state);
/* Uniform in [0, 1) with 53 random bits. */
double models_uniform(uint64_t *state);
/* True when the last step failed (pole or cart out of bounds), false when the
 * episode is running or was only cut at 500 steps. */
bool models_cartpole_terminated(const loom_cartpole *env);

#endif
