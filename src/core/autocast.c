/* Autocast regions: a thread-local stack of (device type, dtype) entries.
 * The innermost entry for a device type decides that type's dtype, so regions
 * nest like PyTorch's `with autocast(...)` blocks, and a region opened with
 * LOOM_F32 switches autocast off inside an enclosing one. */
#include "core/autocast.h"
#include "core/autograd_impl.h"
#include "loom/optim.h"

#define AUTOCAST_MAX_DEPTH 64

typedef struct region { loom_device_type type; loom_dtype dtype; } region;

static _Thread_local region stack[AUTOCAST_MAX_DEPTH];
static _Thread_local int depth;

int loom_autocast_begin(loom_device_type type, loom_dtype dtype) {
  if ((int)type < 0 || type >= LOOM_DEVICE_TYPE_COUNT)
    return core_set_error(LOOM_ERR_INVALID, "autocast_begin: bad device type %d", (int)type);
  if (dtype != LOOM_F16 && dtype != LOOM_BF16 && dtype != LOOM_F32)
    return core_set_error(LOOM_ERR_INVALID, "autocast_begin: dtype must be f16, bf16 (or f32 to turn it off), got %s",
                          loom_dtype_name(dtype));
  if (depth >= AUTOCAST_MAX_DEPTH)
    return core_set_error(LOOM_ERR_INVALID, "autocast_begin: regions nested deeper than %d", AUTOCAST_MAX_DEPTH);
  stack[depth].type = type;
  stack[depth].dtype = dtype;
  depth++;
  return LOOM_OK;
}

int loom_autocast_end(void) {
  if (depth == 0) return core_set_error(LOOM_ERR_INVALID, "autocast_end: no autocast region is open");
  depth--;
  return LOOM_OK;
}

loom_dtype loom_autocast_dtype(loom_device_type type) {
  for (int i = depth - 1; i >= 0; i--)
    if (stack[i].type == type) return stack[i].dtype == LOOM_F32 ? LOOM_DTYPE_COUNT : stack[i].dtype;
  return LOOM_DTYPE_COUNT;
}

loom_dtype core_autocast_dtype(loom_device dev) { return loom_autocast_dtype(dev.type); }

static bool castable(loom_dtype dt) { return dt == LOOM_F32 || dt == LOOM_F16 || dt == LOOM_BF16; }

loom_tensor *core_autocast_low(const loom_tensor *x) {
  if (!x) return NULL;
  loom_dtype dt = core_autocast_dtype(x->storage->device);
  if (dt == LOOM_DTYPE_COUNT || !castable(x->dtype) || x->dtype == dt) return (loom_tensor *)x;
  return loom_to_dtype(x, dt);
}

loom_tensor *core_autocast_f32(const loom_tensor *x) {
  if (!x) return NULL;
  if (core_autocast_dtype(x->storage->device) == LOOM_DTYPE_COUNT) return (loom_tensor *)x;
  if (x->dtype != LOOM_F16 && x->dtype != LOOM_BF16) return (loom_tensor *)x;
  return loom_to_dtype(x, LOOM_F32);
}
