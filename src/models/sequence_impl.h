/* Shared by the sequence models (sequence.c, pointer.c). Internal. */
#ifndef LOOM_MODELS_SEQUENCE_IMPL_H
#define LOOM_MODELS_SEQUENCE_IMPL_H

#include "models/models_impl.h"

/* x is a floating batch-first sequence [N, L, features] with N, L >= 1;
 * otherwise records an error naming model. */
bool seq_check_sequence(const char *model, const loom_tensor *x, int64_t features);
/* t's values (LOOM_I64 or LOOM_I32, any device) as a malloc'ed int64 array
 * (free it); NULL + an error naming model and what otherwise. */
int64_t *seq_host_ids(const char *model, const char *what, const loom_tensor *t);

#endif
