/* Loom optimisers, learning-rate schedules, gradient clipping, loss scaling and autocast. */
#ifndef LOOM_OPTIM_H
#define LOOM_OPTIM_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_module loom_module;

#ifdef __cplusplus
}
#endif
#endif
