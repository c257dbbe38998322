/* Helpers shared by the norm op definitions (src/core/norm.c, norm_layer.c). */
#ifndef LOOM_CORE_NORM_IMPL_H
#define LOOM_CORE_NORM_IMPL_H

#include "core/autograd_impl.h"

/* Checks a per-feature tensor p (weight, bias, running stat; NULL passes):
 * shape want, x's device, a floating dtype, and x's dtype when same_dtype.
 * Records an error naming op and what otherwise. */
bool core_norm_check_param(const char *op, const char *what, const loom_tensor *p, const loom_tensor *x,
                           loom_shape want, bool same_dtype);

/* Under autocast, f16 / bf16 x runs in f32, and so do *w and *b (replaced
 * by f32 copies in the current scope). Returns the input to use (NULL after
 * an error). */
const loom_tensor *core_norm_autocast(const loom_tensor *x, const loom_tensor **w, const loom_tensor **b);

/* Runs the fused forward op `op` (batch_norm / layer_norm / group_norm) on x
 * (made contiguous), weight and bias (NULL = ones / zeros), with attributes a;
 * P: elements of weight, G: statistics groups. Records autograd (inputs x,
 * weight, bias) with the matching backward op. Returns y (x's shape) and, in
 * *stats, the [2, G] stats tensor (both in the current scope). */
loom_tensor *core_norm_forward(const char *name, core_op op, const loom_tensor *x, const loom_tensor *weight,
                               const loom_tensor *bias, int64_t P, int64_t G, core_attrs a, loom_tensor **stats);

#endif
