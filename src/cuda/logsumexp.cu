// logsumexp over R of a contiguous [O, R, I] input: m + log(sum(exp(x - m))),
// m the max over R (a NaN gives NaN, an infinite max gives the max), computed
// in f32 (f64 for f64). I == 1: one warp per row, lanes striding over R;
// I > 1: one thread per output, neighbouring threads on neighbouring columns.
#include <limits>

#include "cuda/kernels.cuh"

namespace {

template <class A> __device__ __forceinline__ bool is_inf(A x) {
  return x == std::numeric_limits<A>::infinity() || x == -std::numeric_limits<A>::infinity();
}
// max that lets a NaN through from either side
template <class A> __device__ __forceinline__ A max_nan(A a, A b) { return is_nan(a) || a >= b ? a : b; }
template <class A> __device__ __forceinline__ A finish(A m, A s) { return is_nan(m) || is_inf(m) ? m : m + m_log(s); }

template <loom_dtype DT, class A>
__global__ void lse_rows(const typename dt<DT>::S *x, typename dt<DT>::S *out, int64_t O, int64_t R) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = ((int64_t)gridDim.x * blockDim.x) >> 5;
  for (int64_t o = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; o < O; o += warps) {
    const typename dt<DT>::S *row = x + o * R;
    A m = -std::numeric_limits<A>::infinity();
    for (int64_t r = lane; r < R; r += 32) m = max_nan(m, (A)dt<DT>::load(row[r]));
    for (int d = 16; d; d >>= 1) m = max_nan(m, __shfl_xor_sync(0xffffffffu, m, d));
    A s = 0;
    if (!is_nan(m) && !is_inf(m))
      for (int64_t r = lane; r < R; r += 32) s += m_exp((A)dt<DT>::load(row[r]) - m);
    for (int d = 16; d; d >>= 1) s += __shfl_xor_sync(0xffffffffu, s, d);
    if (lane == 0) out[o] = dt<DT>::store((typename dt<DT>::C)finish(m, s));
  }
}

template <loom_dtype DT, class A>
__global__ void lse_cols(const typename dt<DT>::S *x, typename dt<DT>::S *out, int64_t O, int64_t R, int64_t I) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < O * I; t += step) {
    const typename dt<DT>::S *p = x + (t / I) * R * I + t % I;
    A m = -std::numeric_limits<A>::infinity();
    for (int64_t r = 0; r < R; r++) m = max_nan(m, (A)dt<DT>::load(p[r * I]));
    A s = 0;
    if (!is_nan(m) && !is_inf(m))
      for (int64_t r = 0; r < R; r++) s += m_exp((A)dt<DT>::load(p[r * I]) - m);
    out[t] = dt<DT>::store((typename dt<DT>::C)finish(m, s));
  }
}

template <loom_dtype DT> loom_status logsumexp_kernel(const core_kctx *k) {
  using S = typename dt<DT>::S;
  using A = typename std::conditional<DT == LOOM_F64, double, float>::type;
  const int64_t O = k->a.i[0], R = k->a.i[1], I = k->a.i[2];
  if (R <= 0) return core_set_error(LOOM_ERR_INVALID, "logsumexp: reduced dim has size 0");
  if (k->out[0]->dtype != DT || core_numel(k->in[0]) != O * R * I || core_numel(k->out[0]) != O * I)
    return core_set_error(LOOM_ERR_INVALID, "logsumexp: input %s / output %s %s do not match [O, R, I] = [%lld, %lld, %lld]",
                          loom_shape_str(k->in[0]->shape), loom_dtype_name(k->out[0]->dtype),
                          loom_shape_str(k->out[0]->shape), (long long)O, (long long)R, (long long)I);
  const int dev = kernel_device(k);
  cudaStream_t stream = (cudaStream_t)k->stream;
  const S *x = static_cast<const S *>(core_ptr(k->in[0]));
  S *out = static_cast<S *>(core_ptr(k->out[0]));
  if (I == 1) lse_rows<DT, A><<<grid_for(O * 32, dev), kThreads, 0, stream>>>(x, out, O, R);
  else lse_cols<DT, A><<<grid_for(O * I, dev), kThreads, 0, stream>>>(x, out, O, R, I);
  return CUDA_CHECK_LAUNCH("logsumexp");
}

}  // namespace

void cuda_register_logsumexp(void) {
  core_register(LOOM_CUDA, CORE_OP_logsumexp, LOOM_F32, logsumexp_kernel<LOOM_F32>);
  core_register(LOOM_CUDA, CORE_OP_logsumexp, LOOM_F64, logsumexp_kernel<LOOM_F64>);
  core_register(LOOM_CUDA, CORE_OP_logsumexp, LOOM_F16, logsumexp_kernel<LOOM_F16>);
  core_register(LOOM_CUDA, CORE_OP_logsumexp, LOOM_BF16, logsumexp_kernel<LOOM_BF16>);
}
