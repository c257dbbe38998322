/* Autocast regions (loom_autocast_begin / end in loom/optim.h), as seen by the
 * op definitions. Matmul-like ops (matmul, bmm, addmm, linear, conv*,
 * scaled dot-product attention) run in the region's low-precision dtype;
 * precision-sensitive ops (softmax, log_softmax, norms, losses) run in f32.
 * Implemented in src/core/autocast.c. */
#ifndef LOOM_CORE_AUTOCAST_H
#define LOOM_CORE_AUTOCAST_H

#include "core/tensor_impl.h"

/* The dtype of the autocast region open on this thread for dev's device
 * type, or LOOM_DTYPE_COUNT when none is open. */
loom_dtype core_autocast_dtype(loom_device dev);
/* For a matmul-like op: x converted (recorded by autograd) to the region's
 * dtype when a region is open for x's device and x is f32 / f16 / bf16;
 * otherwise x itself. A converted tensor is registered in the current scope,
 * so call it inside the op's own loom_scope_begin / end. NULL in gives NULL. */
loom_tensor *core_autocast_low(const loom_tensor *x);
/* For a precision-sensitive op: x converted to f32 when a region is open for
 * x's device and x is f16 / bf16; otherwise x itself (same scope rule). */
loom_tensor *core_autocast_f32(const loom_tensor *x);

#endif
