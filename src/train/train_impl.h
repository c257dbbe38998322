/* Shared between the files of src/train. */
#ifndef LOOM_TRAIN_IMPL_H
#define LOOM_TRAIN_IMPL_H

#include "loom/nn.h"

/* The loss's value and the correct predictions of logits [B, C] against
 * integer labels [B] (*correct = -1 when they do not allow counting), read
 * back together: one device sync per step. NAN (error set) when the loss is
 * NULL or cannot be read. */
double train_read_loss(const loom_tensor *loss, const loom_tensor *logits, const loom_tensor *y, double *correct);

/* loom_check_finite over parameters and / or gradients. */
int train_first_nonfinite(const loom_module *model, bool params, bool grads, char *msg, size_t size);

#endif
