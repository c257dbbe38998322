/* Inverted dropout composed from ops: the keep mask is u >= p for u = rand()
 * drawn in f32 from the device's Philox generator, whatever x's dtype, so the
 * same seed drops the same elements on the CPU and on CUDA, in every dtype.
 * The backward (g * mask / (1 - p)) is mul's. */
#include <math.h>

#include "core/autograd_impl.h"

loom_tensor *loom_dropout(const loom_tensor *x, double p, bool training) {
  CORE_CHECK_NULL1("dropout", x);
  if (!(p >= 0 && p <= 1)) {
    core_set_error(LOOM_ERR_INVALID, "dropout: probability p has to be between 0 and 1, got %g", p);
    return NULL;
  }
  if (!loom_dtype_is_float(x->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "dropout: needs a floating input, got %s %s", loom_dtype_name(x->dtype),
                   loom_shape_str(x->shape));
    return NULL;
  }
  if (!training || p == 0) return loom_view(x, x->shape);
  if (p == 1) return loom_mul_scalar(x, 0.0);
  loom_scope_begin();
  loom_tensor *out = NULL;
  loom_no_grad_begin();
  loom_tensor *u = loom_rand(x->shape, LOOM_F32, x->storage->device);
  loom_tensor *keep = loom_ge(u, u ? loom_scalar_like(u, p) : NULL);
  loom_tensor *mask = loom_mul_scalar(loom_to_dtype(keep, x->dtype), 1.0 / (1.0 - p));
  loom_no_grad_end();
  if (mask) out = loom_mul(x, mask);
  loom_keep(out);
  loom_scope_end();
  return out;
}
