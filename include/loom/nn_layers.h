/* Loom layers: Linear, LazyLinear, activations, Softmax, LogSoftmax, Dropout, Embedding, Flatten, Identity (modules and functional forms). */
#ifndef LOOM_NN_LAYERS_H
#define LOOM_NN_LAYERS_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_module loom_module;

#ifdef __cplusplus
}
#endif
#endif
