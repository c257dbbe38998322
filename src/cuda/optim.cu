// CUDA kernels of the optim family: the fused multi-tensor updates sgd_step,
// adam_step and rmsprop_step (src/core/ops_optim.def). One launch updates the
// whole list: block b takes global chunk b (OPTIM_CHUNK elements of one
// tensor), finds its tensor in the device-side list by binary search, and its
// threads stride over the chunk. Math in f32 (f64 for f64), as PyTorch's
// fused optimisers do for f32 / f16 / bf16 parameters.
#include "cuda/kernels.cuh"
#include "optim/fused.h"

namespace {

constexpr int kOptimThreads = 512;

template <loom_dtype DT> struct Ptr {
  using S = typename dt<DT>::S;
  static __device__ __forceinline__ S *at(void *p) { return static_cast<S *>(p); }
};

template <class A> __device__ __forceinline__ A m_sqrt_(A x);
template <> __device__ __forceinline__ float m_sqrt_(float x) { return sqrtf(x); }
template <> __device__ __forceinline__ double m_sqrt_(double x) { return sqrt(x); }

// The chunk of this block: its entry (in shared memory) and element range.
__device__ __forceinline__ const optim_entry *chunk_of(const optim_entry *list, int64_t n, optim_entry *sh,
                                                        int64_t *lo, int64_t *hi) {
  if (threadIdx.x == 0) *sh = list[optim_find_entry(list, n, blockIdx.x)];
  __syncthreads();
  *lo = ((int64_t)blockIdx.x - sh->chunk0) * OPTIM_CHUNK;
  *hi = *lo + OPTIM_CHUNK < sh->n ? *lo + OPTIM_CHUNK : sh->n;
  return sh;
}

template <loom_dtype DT, class A>
__global__ void sgd_kernel(const optim_entry *list, int64_t n, A mom, A damp, bool nesterov, bool maximize) {
  using T = dt<DT>;
  __shared__ optim_entry sh;
  int64_t lo, hi;
  const optim_entry *e = chunk_of(list, n, &sh, &lo, &hi);
  auto *p = Ptr<DT>::at(e->p[0]);
  auto *g = Ptr<DT>::at(e->p[1]);
  auto *buf = Ptr<DT>::at(e->p[2]);
  const A lr = (A)e->s[0], wd = (A)e->s[1];
  const bool first = e->s[2] != 0;
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    A pv = (A)T::load(p[i]), d = (A)T::load(g[i]);
    if (maximize) d = -d;
    if (wd != 0) d += wd * pv;
    if (mom != 0) {
      A b = first ? d : mom * (A)T::load(buf[i]) + (1 - damp) * d;
      buf[i] = T::store((typename T::C)b);
      d = nesterov ? d + mom * b : b;
    }
    p[i] = T::store((typename T::C)(pv - lr * d));
  }
}

template <loom_dtype DT, class A>
__global__ void adam_kernel(const optim_entry *list, int64_t n, A b1, A b2, A eps, bool amsgrad, bool maximize,
                            bool decoupled) {
  using T = dt<DT>;
  __shared__ optim_entry sh;
  int64_t lo, hi;
  const optim_entry *e = chunk_of(list, n, &sh, &lo, &hi);
  auto *p = Ptr<DT>::at(e->p[0]);
  auto *g = Ptr<DT>::at(e->p[1]);
  auto *m = Ptr<DT>::at(e->p[2]);
  auto *v = Ptr<DT>::at(e->p[3]);
  auto *vmax = Ptr<DT>::at(e->p[4]);
  const A lr = (A)e->s[0], wd = (A)e->s[1];
  const A step_size = (A)(e->s[0] / e->s[2]), bc2_sqrt = (A)sqrt(e->s[3]);
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    A pv = (A)T::load(p[i]), d = (A)T::load(g[i]);
    if (maximize) d = -d;
    if (decoupled) pv *= 1 - lr * wd;
    else if (wd != 0) d += wd * pv;
    A mv = (A)T::load(m[i]), vv = (A)T::load(v[i]);
    mv += (1 - b1) * (d - mv);
    vv = b2 * vv + (1 - b2) * d * d;
    m[i] = T::store((typename T::C)mv);
    v[i] = T::store((typename T::C)vv);
    if (amsgrad) {
      A vm = (A)T::load(vmax[i]);
      if (vm == vm && !(vv <= vm)) vm = vv;  // NaN in either stays NaN, as torch.maximum
      vmax[i] = T::store((typename T::C)vm);
      vv = vm;
    }
    p[i] = T::store((typename T::C)(pv - step_size * mv / (m_sqrt_(vv) / bc2_sqrt + eps)));
  }
}

template <loom_dtype DT, class A>
__global__ void rmsprop_kernel(const optim_entry *list, int64_t n, A alpha, A eps, A mom, bool centered,
                               bool maximize) {
  using T = dt<DT>;
  __shared__ optim_entry sh;
  int64_t lo, hi;
  const optim_entry *e = chunk_of(list, n, &sh, &lo, &hi);
  auto *p = Ptr<DT>::at(e->p[0]);
  auto *g = Ptr<DT>::at(e->p[1]);
  auto *sq = Ptr<DT>::at(e->p[2]);
  auto *buf = Ptr<DT>::at(e->p[3]);
  auto *ga = Ptr<DT>::at(e->p[4]);
  const A lr = (A)e->s[0], wd = (A)e->s[1];
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    A pv = (A)T::load(p[i]), d = (A)T::load(g[i]);
    if (maximize) d = -d;
    if (wd != 0) d += wd * pv;
    A sa = alpha * (A)T::load(sq[i]) + (1 - alpha) * d * d;
    sq[i] = T::store((typename T::C)sa);
    A avg;
    if (centered) {
      A gv = (A)T::load(ga[i]);
      gv += (1 - alpha) * (d - gv);
      ga[i] = T::store((typename T::C)gv);
      avg = m_sqrt_(sa - gv * gv) + eps;
    } else {
      avg = m_sqrt_(sa) + eps;
    }
    if (mom > 0) {
      A b = mom * (A)T::load(buf[i]) + d / avg;
      buf[i] = T::store((typename T::C)b);
      pv -= lr * b;
    } else {
      pv -= lr * d / avg;
    }
    p[i] = T::store((typename T::C)pv);
  }
}

// The list and its geometry, checked before a launch.
inline loom_status list_of(const core_kctx *k, const optim_entry **list, int64_t *n, unsigned *blocks) {
  *n = k->a.i[0];
  int64_t chunks = k->a.i[1];
  if (k->in[1]->dtype != LOOM_U8 || core_numel(k->in[1]) < *n * (int64_t)sizeof(optim_entry) || *n < 1 ||
      chunks < 1 || chunks > 0x7fffffffLL)
    return core_set_error(LOOM_ERR_INVALID, "%s: bad list (%lld entries, %lld chunks, %s %s)", core_ops[k->op].name,
                          (long long)*n, (long long)chunks, loom_dtype_name(k->in[1]->dtype),
                          loom_shape_str(k->in[1]->shape));
  *list = static_cast<const optim_entry *>(core_ptr(k->in[1]));
  *blocks = (unsigned)chunks;
  return cuda_set_device(kernel_device(k));
}

template <loom_dtype DT> loom_status sgd_step(const core_kctx *k) {
  using A = typename std::conditional<DT == LOOM_F64, double, float>::type;
  const optim_entry *list;
  int64_t n;
  unsigned blocks;
  loom_status st = list_of(k, &list, &n, &blocks);
  if (st) return st;
  sgd_kernel<DT, A><<<blocks, kOptimThreads, 0, (cudaStream_t)k->stream>>>(list, n, (A)k->a.f[0], (A)k->a.f[1],
                                                                         k->a.i[2] != 0, k->a.i[3] != 0);
  return CUDA_CHECK_LAUNCH("sgd_step");
}

template <loom_dtype DT> loom_status adam_step(const core_kctx *k) {
  using A = typename std::conditional<DT == LOOM_F64, double, float>::type;
  const optim_entry *list;
  int64_t n;
  unsigned blocks;
  loom_status st = list_of(k, &list, &n, &blocks);
  if (st) return st;
  adam_kernel<DT, A><<<blocks, kOptimThreads, 0, (cudaStream_t)k->stream>>>(
      list, n, (A)k->a.f[0], (A)k->a.f[1], (A)k->a.f[2], k->a.i[2] != 0, k->a.i[3] != 0, k->a.i[4] != 0);
  return CUDA_CHECK_LAUNCH("adam_step");
}

template <loom_dtype DT> loom_status rmsprop_step(const core_kctx *k) {
  using A = typename std::conditional<DT == LOOM_F64, double, float>::type;
  const optim_entry *list;
  int64_t n;
  unsigned blocks;
  loom_status st = list_of(k, &list, &n, &blocks);
  if (st) return st;
  rmsprop_kernel<DT, A><<<blocks, kOptimThreads, 0, (cudaStream_t)k->stream>>>(
      list, n, (A)k->a.f[0], (A)k->a.f[1], (A)k->a.f[2], k->a.i[2] != 0, k->a.i[3] != 0);
  return CUDA_CHECK_LAUNCH("rmsprop_step");
}

}  // namespace

#define OPTIM_REG(OP)                                                                 \
  core_register(LOOM_CUDA, CORE_OP_##OP, LOOM_F32, OP<LOOM_F32>);                     \
  core_register(LOOM_CUDA, CORE_OP_##OP, LOOM_F64, OP<LOOM_F64>);                     \
  core_register(LOOM_CUDA, CORE_OP_##OP, LOOM_F16, OP<LOOM_F16>);                     \
  core_register(LOOM_CUDA, CORE_OP_##OP, LOOM_BF16, OP<LOOM_BF16>);

void cuda_register_optim(void) {
  OPTIM_REG(sgd_step)
  OPTIM_REG(adam_step)
  OPTIM_REG(rmsprop_step)
}
