/* Loom module summaries: the torchsummary-style table, parameter counts, MACs and FLOPs. */
#ifndef LOOM_NN_SUMMARY_H
#define LOOM_NN_SUMMARY_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_module loom_module;

#ifdef __cplusplus
}
#endif
#endif
