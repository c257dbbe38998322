/* Loom normalisation layers: BatchNorm, LayerNorm, GroupNorm, InstanceNorm (modules and functional forms). */
#ifndef LOOM_NN_NORM_H
#define LOOM_NN_NORM_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_module loom_module;

#ifdef __cplusplus
}
#endif
#endif
