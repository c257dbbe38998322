/* Shared between the files of src/train. */
#ifndef LOOM_TRAIN_IMPL_H
#define LOOM_TRAIN_IMPL_H

#include "loom/nn.h"

/* Correct predictions of logits [B, C] against integer labels [B]; -1 when
 * the shapes do not allow counting (or on error). */
double train_count_correct(const loom_tensor *logits, const loom_tensor *y);

/* loom_check_finite over parameters and / or gradients. */
int train_first_nonfinite(const loom_module *model, bool params, bool grads, char *msg, size_t size);

#endif
