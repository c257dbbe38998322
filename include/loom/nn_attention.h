/* Loom attention: scaled dot-product, additive, multi-head, positional encoding, Transformer blocks. */
#ifndef LOOM_NN_ATTENTION_H
#define LOOM_NN_ATTENTION_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_module loom_module;

#ifdef __cplusplus
}
#endif
#endif
