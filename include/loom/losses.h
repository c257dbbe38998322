/* Loom losses (torch.nn.functional style), reductions none / mean / sum. */
#ifndef LOOM_LOSSES_H
#define LOOM_LOSSES_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_module loom_module;

#ifdef __cplusplus
}
#endif
#endif
