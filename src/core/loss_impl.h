/* Shared by the loss definitions (src/core/loss*.c): input checks, autocast
 * and reductions. Internal. */
#ifndef LOOM_CORE_LOSS_IMPL_H
#define LOOM_CORE_LOSS_IMPL_H

#include "core/autograd_impl.h"
#include "loom/losses.h"

/* False (with an error naming the loss) unless r is none / mean / sum, or
 * batchmean where allow_batchmean. */
bool core_loss_check_reduction(const char *name, loom_reduction r, bool allow_batchmean);
/* Applies the reduction to the unreduced loss l (mean over all elements;
 * batchmean divides the sum by batch). Registered in the current scope. */
loom_tensor *core_loss_reduce(const loom_tensor *l, loom_reduction r, int64_t batch);
/* True when input and target are float tensors of one dtype, shape and device;
 * otherwise sets an error naming the loss and the two tensors. */
bool core_loss_check_pair(const char *name, const loom_tensor *input, const loom_tensor *target);
/* True when w (may be NULL) is a float tensor of x's dtype and device whose
 * shape broadcasts to x's; `what` names it in the error ("weight"). */
bool core_loss_check_broadcast(const char *name, const char *what, const loom_tensor *w, const loom_tensor *x);

/* ---- class-index targets (src/core/loss.c) ---- */
/* Checked class-index target: i64 of the expected shape on x's device, every
 * value in [0, C) or equal to ignore. Returns the target as i64 (in the current
 * scope) or NULL with an error. */
loom_tensor *core_loss_class_target(const char *name, const loom_tensor *target, loom_shape want, int64_t C,
                                    int64_t ignore, loom_device dev);
/* Per-target weight: w[t] (1 without weight) where t != ignore, else 0; x's dtype, no grad. */
loom_tensor *core_loss_target_weight(const loom_tensor *target, const loom_tensor *weight, int64_t ignore,
                                     loom_dtype dt);

/* The fused cross-entropy over rows (src/core/loss_fused.c): x [R, C], target
 * i64 [R], weight [C] or NULL. Returns the per-row loss [R] (recorded). */
loom_tensor *core_cross_entropy_rows(const loom_tensor *x, const loom_tensor *target, const loom_tensor *weight,
                                     int64_t ignore, double smoothing);

#endif
