/* The ops table, the per-backend kernel tables and the dispatcher. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "core/autograd_impl.h"
#include "cuda/cuda_backend.h"

/* The op profiler (src/core/profile.c): set while loom_profiler_start is in effect. */
extern atomic_int core_profile_on;
loom_status core_profile_launch(core_kernel fn, core_kctx *k, loom_device dev);

const core_op_info core_ops[CORE_OP_COUNT] = {
#define LOOM_OP(name, nin, nout, kind) {#name, nin, nout, CORE_KIND_##kind},
#include "core/ops.def"
#undef LOOM_OP
};

static core_backend backends[LOOM_DEVICE_TYPE_COUNT] = {{"cpu", {{0}}}, {"cuda", {{0}}}};
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_backends(void) {
  cpu_register_kernels();
#ifdef LOOM_WITH_CUDA
  cuda_register_kernels();
#endif
}

core_backend *core_backend_get(loom_device_type type) {
  pthread_once(&init_once, init_backends);
  return (unsigned)type < LOOM_DEVICE_TYPE_COUNT ? &backends[type] : NULL;
}

void core_register(loom_device_type type, core_op op, loom_dtype dt, core_kernel fn) {
  if ((unsigned)type < LOOM_DEVICE_TYPE_COUNT && (unsigned)op < CORE_OP_COUNT && (unsigned)dt < LOOM_DTYPE_COUNT)
    backends[type].kernels[op][dt] = fn;
}

int loom_op_count(void) { return CORE_OP_COUNT; }
const char *loom_op_name(int op) { return (unsigned)op < CORE_OP_COUNT ? core_ops[op].name : NULL; }
int loom_op_find(const char *name) {
  for (int i = 0; name && i < CORE_OP_COUNT; i++)
    if (strcmp(core_ops[i].name, name) == 0) return i;
  return -1;
}
bool loom_supports_op(loom_device_type type, int op, loom_dtype dt) {
  core_backend *b = core_backend_get(type);
  return b && (unsigned)op < CORE_OP_COUNT && (unsigned)dt < LOOM_DTYPE_COUNT && b->kernels[op][dt];
}

static bool is_half(loom_dtype dt) { return dt == LOOM_F16 || dt == LOOM_BF16; }

static loom_tensor *cast_temp(const loom_tensor *t, loom_dtype dt) {
  loom_tensor *c = core_temp(t->shape, dt, t->storage->device);
  if (!c) return NULL;
  core_kctx k = {CORE_OP_copy, 1, 1, {(loom_tensor *)t}, {c}, {{0}, {0}}, NULL};
  if (core_launch(&k) != LOOM_OK) {
    loom_release(c);
    return NULL;
  }
  return c;
}

/* CPU kernels compute f16 / bf16 in f32: convert in, run, convert out. */
static loom_status launch_via_f32(core_kctx *k) {
  core_kctx k32 = *k;
  loom_tensor *temps[6] = {0};
  int nt = 0;
  loom_status st = LOOM_OK;
  for (int i = 0; i < k->n_in && st == LOOM_OK; i++) {
    if (!is_half(k->in[i]->dtype)) continue;
    k32.in[i] = temps[nt++] = cast_temp(k->in[i], LOOM_F32);
    if (!k32.in[i]) st = loom_last_status();
  }
  for (int i = 0; i < k->n_out && st == LOOM_OK; i++) {
    if (!is_half(k->out[i]->dtype)) continue;
    /* scatter_add accumulates into its output, so that one is converted in too */
    k32.out[i] = temps[nt++] = k->op == CORE_OP_scatter_add ? cast_temp(k->out[i], LOOM_F32)
                                                            : core_temp(k->out[i]->shape, LOOM_F32, loom_cpu());
    if (!k32.out[i]) st = loom_last_status();
  }
  if (st == LOOM_OK) st = core_launch(&k32);
  for (int i = 0; i < k->n_out && st == LOOM_OK; i++) {
    if (k32.out[i] == k->out[i]) continue;
    core_kctx back = {CORE_OP_copy, 1, 1, {k32.out[i]}, {k->out[i]}, {{0}, {0}}, NULL};
    st = core_launch(&back);
  }
  for (int i = 0; i < nt; i++) loom_release(temps[i]);
  return st;
}

loom_status core_launch(core_kctx *k) {
  const core_op_info *info = &core_ops[k->op];
  k->n_in = info->n_in;
  k->n_out = info->n_out;
  const loom_tensor *ref = k->n_out ? k->out[0] : k->in[0];
  loom_device dev = ref->storage->device;
  for (int i = 0; i < k->n_in; i++)
    if (!loom_device_equal(k->in[i]->storage->device, dev))
      return core_set_error(LOOM_ERR_INVALID, "%s: input %d is on %s but the output is on %s", info->name, i,
                            loom_device_name(k->in[i]->storage->device), loom_device_name(dev));
  loom_dtype key = k->n_in ? k->in[0]->dtype : k->out[0]->dtype;
  core_backend *b = core_backend_get(dev.type);
  core_kernel fn = b->kernels[k->op][key];
  if (!fn) {
    if (dev.type == LOOM_CPU && is_half(key) && b->kernels[k->op][LOOM_F32]) return launch_via_f32(k);
    return core_set_error(LOOM_ERR_UNSUPPORTED, "%s: no %s kernel for dtype %s%s", info->name, b->name,
                          loom_dtype_name(key),
                          dev.type == LOOM_CUDA && !loom_cuda_is_built() ? " (Loom was built without CUDA)" : "");
  }
  k->stream = dev.type == LOOM_CUDA ? cuda_current_stream(dev.index) : NULL;
  if (k->n_out && core_numel(k->out[0]) == 0) return LOOM_OK;
  /* only leaf launches reach here: launch_via_f32 above recurses into this one */
  if (atomic_load_explicit(&core_profile_on, memory_order_relaxed)) return core_profile_launch(fn, k, dev);
  return fn(k);
}
