// index_select, gather, scatter_add and one_hot over contiguous [O, D, I]
// views. The core range-checks indices; here an index outside [0, D) is still
// never used to touch memory (clamped for reads, skipped for writes).
#include <stdint.h>

#include <type_traits>

#include "cuda/kernels.cuh"

namespace {

__device__ __forceinline__ int64_t clamp_index(int64_t j, int64_t D) { return j < 0 ? 0 : j >= D ? D - 1 : j; }

// out[o, k, i] = x[o, index[k], i]
template <class T>
__global__ void __launch_bounds__(kThreads) index_select_map(T *out, const T *x, const int64_t *idx, int64_t istride,
                                                              int64_t O, int64_t D, int64_t I, int64_t K) {
  const int64_t n = O * K * I, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step) {
    const int64_t i = e % I, r = e / I, kk = r % K, o = r / K;
    out[e] = x[(o * D + clamp_index(idx[kk * istride], D)) * I + i];
  }
}

// out[o, k, i] = x[o, index[o, k, i], i]
template <class T>
__global__ void __launch_bounds__(kThreads)
    gather_map(T *out, const T *x, const int64_t *idx, int64_t O, int64_t D, int64_t I, int64_t K) {
  const int64_t n = O * K * I, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step) {
    const int64_t i = e % I, o = e / (K * I);
    out[e] = x[(o * D + clamp_index(idx[e], D)) * I + i];
  }
}

loom_status check_index(const core_kctx *k, const loom_tensor *big, const loom_tensor *small, bool index_is_1d) {
  const char *name = core_ops[k->op].name;
  const int64_t O = k->a.i[0], D = k->a.i[1], I = k->a.i[2], K = k->a.i[3];
  const loom_tensor *index = k->in[1];
  if (index->dtype != LOOM_I64)
    return core_set_error(LOOM_ERR_INVALID, "%s: index has dtype %s, expected i64", name, loom_dtype_name(index->dtype));
  if (k->in[0]->dtype != k->out[0]->dtype)
    return core_set_error(LOOM_ERR_INVALID, "%s: input dtype %s but output dtype %s", name,
                          loom_dtype_name(k->in[0]->dtype), loom_dtype_name(k->out[0]->dtype));
  if (core_numel(big) != O * D * I || core_numel(small) != O * K * I ||
      core_numel(index) != (index_is_1d ? K : O * K * I))
    return core_set_error(LOOM_ERR_INVALID, "%s: shapes %s, %s, index %s do not match O, D, I, K = %lld, %lld, %lld, %lld",
                          name, loom_shape_str(big->shape), loom_shape_str(small->shape),
                          loom_shape_str(index->shape), (long long)O, (long long)D, (long long)I, (long long)K);
  if (D == 0 && K > 0 && O * I > 0)
    return core_set_error(LOOM_ERR_INVALID, "%s: no index is valid in a dim of size 0", name);
  if (!core_is_contiguous(k->in[0]) || !core_is_contiguous(k->out[0]) ||
      (!index_is_1d && !core_is_contiguous(index)))
    return core_set_error(LOOM_ERR_INVALID, "%s: operands must be contiguous", name);
  return cuda_set_device(kernel_device(k));
}

template <int SIZE> loom_status index_select_kernel(const core_kctx *k) {
  using T = typename Bits<SIZE>::T;
  const int64_t O = k->a.i[0], D = k->a.i[1], I = k->a.i[2], K = k->a.i[3];
  const loom_tensor *x = k->in[0], *index = k->in[1], *out = k->out[0];
  loom_status st = check_index(k, x, out, true);
  if (st || O * K * I == 0) return st;
  const int64_t istride = index->shape.ndim == 1 ? index->strides[0] : 1;
  index_select_map<T><<<grid_for(O * K * I, kernel_device(k)), kThreads, 0, (cudaStream_t)k->stream>>>(
      static_cast<T *>(core_ptr(out)), static_cast<const T *>(core_ptr(x)),
      static_cast<const int64_t *>(core_ptr(index)), istride, O, D, I, K);
  return CUDA_CHECK_LAUNCH("index_select");
}

template <int SIZE> loom_status gather_kernel(const core_kctx *k) {
  using T = typename Bits<SIZE>::T;
  const int64_t O = k->a.i[0], D = k->a.i[1], I = k->a.i[2], K = k->a.i[3];
  const loom_tensor *x = k->in[0], *index = k->in[1], *out = k->out[0];
  loom_status st = check_index(k, x, out, false);
  if (st || O * K * I == 0) return st;
  gather_map<T><<<grid_for(O * K * I, kernel_device(k)), kThreads, 0, (cudaStream_t)k->stream>>>(
      static_cast<T *>(core_ptr(out)), static_cast<const T *>(core_ptr(x)),
      static_cast<const int64_t *>(core_ptr(index)), O, D, I, K);
  return CUDA_CHECK_LAUNCH("gather");
}

// ---- scatter_add: out[o, index[o, k, i], i] += src[o, k, i]; scatter ----

// f16 / bf16 accumulate in an f32 copy of out, rounded once at the end (as
// on the CPU); the other dtypes accumulate in out itself.
template <loom_dtype DT>
using acc_of = typename std::conditional<DT == LOOM_F16 || DT == LOOM_BF16, float, typename dt<DT>::S>::type;

template <class A> constexpr bool kHasAtomicAdd = !std::is_same<A, uint8_t>::value;

template <class A> __device__ __forceinline__ void atomic_add(A *p, A v) {
  if constexpr (std::is_same<A, int64_t>::value)
    atomicAdd(reinterpret_cast<unsigned long long *>(p), (unsigned long long)v);
  else
    atomicAdd(p, v);
}

// One thread per source element, adding with atomics (order not fixed).
template <loom_dtype DT, class A>
__global__ void __launch_bounds__(kThreads) scatter_add_atomic(A *out, const typename dt<DT>::S *src, const int64_t *idx,
                                                                int64_t O, int64_t D, int64_t I, int64_t K) {
  const int64_t n = O * K * I, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step) {
    const int64_t d = idx[e], i = e % I, o = e / (K * I);
    if (d >= 0 && d < D) atomic_add(&out[(o * D + d) * I + i], (A)dt<DT>::load(src[e]));
  }
}

// One thread per (o, i) column adding its K sources in order: deterministic, no atomics.
template <loom_dtype DT, class A>
__global__ void __launch_bounds__(kThreads) scatter_add_ordered(A *out, const typename dt<DT>::S *src, const int64_t *idx,
                                                                 int64_t O, int64_t D, int64_t I, int64_t K) {
  const int64_t n = O * I, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < n; c += step) {
    const int64_t i = c % I, o = c / I;
    for (int64_t kk = 0; kk < K; kk++) {
      const int64_t e = (o * K + kk) * I + i, d = idx[e];
      if (d < 0 || d >= D) continue;
      A *p = &out[(o * D + d) * I + i];
      *p = (A)(*p + (A)dt<DT>::load(src[e]));
    }
  }
}

// f32 <-> f16 / bf16 for the accumulator copy.
template <loom_dtype DT> __global__ void __launch_bounds__(kThreads) widen(float *dst, const typename dt<DT>::S *src, int64_t n) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step) dst[e] = dt<DT>::load(src[e]);
}
template <loom_dtype DT> __global__ void __launch_bounds__(kThreads) narrow(typename dt<DT>::S *dst, const float *src, int64_t n) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step) dst[e] = dt<DT>::store(src[e]);
}

// scatter (a.i[4] = 1): out[o, index[o, k, i], i] = src[o, k, i]. One thread
// per source element (a repeated index keeps any one source, as in PyTorch) or,
// deterministic, one thread per column storing its K sources in order (the last wins).
template <class S>
__global__ void __launch_bounds__(kThreads) scatter_put_any(S *out, const S *src, const int64_t *idx, int64_t O,
                                                            int64_t D, int64_t I, int64_t K) {
  const int64_t n = O * K * I, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step) {
    const int64_t d = idx[e], i = e % I, o = e / (K * I);
    if (d >= 0 && d < D) out[(o * D + d) * I + i] = src[e];
  }
}

template <class S>
__global__ void __launch_bounds__(kThreads) scatter_put_ordered(S *out, const S *src, const int64_t *idx, int64_t O,
                                                                int64_t D, int64_t I, int64_t K) {
  const int64_t n = O * I, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < n; c += step) {
    const int64_t i = c % I, o = c / I;
    for (int64_t kk = 0; kk < K; kk++) {
      const int64_t e = (o * K + kk) * I + i, d = idx[e];
      if (d >= 0 && d < D) out[(o * D + d) * I + i] = src[e];
    }
  }
}

template <loom_dtype DT> loom_status scatter_add_kernel(const core_kctx *k) {
  using S = typename dt<DT>::S;
  using A = acc_of<DT>;
  constexpr bool in_place = std::is_same<A, S>::value;
  const int64_t O = k->a.i[0], D = k->a.i[1], I = k->a.i[2], K = k->a.i[3];
  const loom_tensor *src = k->in[0], *index = k->in[1], *out = k->out[0];
  loom_status st = check_index(k, out, src, false);
  if (st || O * K * I == 0) return st;
  const int dev = kernel_device(k);
  const int64_t n_out = O * D * I;
  S *po = static_cast<S *>(core_ptr(out));
  const S *ps = static_cast<const S *>(core_ptr(src));
  const int64_t *pi = static_cast<const int64_t *>(core_ptr(index));
  cudaStream_t stream = (cudaStream_t)k->stream;
  if (k->a.i[4]) {
    if (loom_deterministic())
      scatter_put_ordered<S><<<grid_for(O * I, dev), kThreads, 0, stream>>>(po, ps, pi, O, D, I, K);
    else
      scatter_put_any<S><<<grid_for(O * K * I, dev), kThreads, 0, stream>>>(po, ps, pi, O, D, I, K);
    return CUDA_CHECK_LAUNCH("scatter");
  }
  A *acc;
  if constexpr (in_place) {
    acc = po;
  } else {
    acc = static_cast<A *>(cuda_alloc(dev, (size_t)n_out * sizeof(A)));
    if (!acc) return loom_last_status();
    widen<DT><<<grid_for(n_out, dev), kThreads, 0, stream>>>(acc, po, n_out);
  }
  bool ordered = true;
  if constexpr (kHasAtomicAdd<A>) {
    if (!loom_deterministic()) {
      scatter_add_atomic<DT><<<grid_for(O * K * I, dev), kThreads, 0, stream>>>(acc, ps, pi, O, D, I, K);
      ordered = false;
    }
  }
  if (ordered) scatter_add_ordered<DT><<<grid_for(O * I, dev), kThreads, 0, stream>>>(acc, ps, pi, O, D, I, K);
  if constexpr (!in_place) narrow<DT><<<grid_for(n_out, dev), kThreads, 0, stream>>>(po, acc, n_out);
  st = CUDA_CHECK_LAUNCH("scatter_add");
  if constexpr (!in_place) cuda_free(dev, acc); /* stream-ordered: later work on this stream reuses it */
  return st;
}

// ---- one_hot: out[n, c] = index[n] == c ----

__global__ void __launch_bounds__(kThreads) one_hot_map(int64_t *out, const int64_t *idx, int64_t N, int64_t C) {
  const int64_t n = N * C, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step)
    out[e] = idx[e / C] == e % C;
}

loom_status one_hot_kernel(const core_kctx *k) {
  const loom_tensor *index = k->in[0], *out = k->out[0];
  const int64_t N = core_numel(index), C = k->a.i[0];
  if (index->dtype != LOOM_I64 || out->dtype != LOOM_I64 || C < 0 || core_numel(out) != N * C ||
      !core_is_contiguous(index) || !core_is_contiguous(out))
    return core_set_error(LOOM_ERR_INVALID, "one_hot: index %s %s and output %s %s do not fit %lld classes",
                          loom_dtype_name(index->dtype), loom_shape_str(index->shape), loom_dtype_name(out->dtype),
                          loom_shape_str(out->shape), (long long)C);
  if (N * C == 0) return LOOM_OK;
  const int dev = kernel_device(k);
  loom_status st = cuda_set_device(dev);
  if (st) return st;
  one_hot_map<<<grid_for(N * C, dev), kThreads, 0, (cudaStream_t)k->stream>>>(
      static_cast<int64_t *>(core_ptr(out)), static_cast<const int64_t *>(core_ptr(index)), N, C);
  return CUDA_CHECK_LAUNCH("one_hot");
}

template <loom_dtype... DTs> void reg_moves() {
  (core_register(LOOM_CUDA, CORE_OP_index_select, DTs, index_select_kernel<(int)sizeof(typename dt<DTs>::S)>), ...);
  (core_register(LOOM_CUDA, CORE_OP_gather, DTs, gather_kernel<(int)sizeof(typename dt<DTs>::S)>), ...);
}

template <loom_dtype... DTs> void reg_scatter() {
  (core_register(LOOM_CUDA, CORE_OP_scatter_add, DTs, scatter_add_kernel<DTs>), ...);
}

}  // namespace

void cuda_register_index(void) {
  reg_moves<LOOM_ALL_DTYPES>();
  reg_scatter<LOOM_FLOATS, LOOM_INTS, LOOM_U8>();
  core_register(LOOM_CUDA, CORE_OP_one_hot, LOOM_I64, one_hot_kernel);
}
