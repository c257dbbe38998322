/* Loom convolution and pooling layers (modules and functional forms). */
#ifndef LOOM_NN_CONV_H
#define LOOM_NN_CONV_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_module loom_module;

#ifdef __cplusplus
}
#endif
#endif
