/* Loom recurrent layers: RNN, LSTM, GRU and their cells. */
#ifndef LOOM_NN_RNN_H
#define LOOM_NN_RNN_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_module loom_module;

#ifdef __cplusplus
}
#endif
#endif
