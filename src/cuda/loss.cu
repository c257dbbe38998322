// CUDA kernels of the loss family: the fused cross-entropy over rows and its
// backward (see src/core/ops_loss.def). One warp per row: lanes stride over
// the C classes, so a row is read once in forward (an online log-sum-exp
// that keeps a running max and rescales the sum) and once in backward.
// Arithmetic in f32 (f64 for f64); f16 / bf16 are loaded and stored as such.
#include <limits>

#include "cuda/kernels.cuh"

namespace {

template <class A> struct Lse {
  A m, s;  // running max and sum of exp(x - m)
};

template <class A> __device__ __forceinline__ bool finite_max(A m) {
  return m > -std::numeric_limits<A>::infinity() && m < std::numeric_limits<A>::infinity();
}

// Folds v into (m, s). -inf values add nothing; a NaN makes s NaN.
template <class A> __device__ __forceinline__ void lse_add(Lse<A> &a, A v) {
  if (v == -std::numeric_limits<A>::infinity()) return;
  if (v > a.m) {
    a.s = a.s * m_exp(a.m - v) + A(1);  // exp(-inf) = 0 for the first value
    a.m = v;
  } else {
    a.s += v == a.m ? A(1) : m_exp(v - a.m);  // equal +inf values would give exp(NaN)
  }
}

template <class A> __device__ __forceinline__ Lse<A> lse_merge(Lse<A> a, Lse<A> b) {
  if (b.m == -std::numeric_limits<A>::infinity()) return a;
  if (a.m == -std::numeric_limits<A>::infinity()) return b;
  if (is_nan(a.m) || is_nan(b.m)) return {std::numeric_limits<A>::quiet_NaN(), A(1)};
  if (a.m < b.m) { Lse<A> t = a; a = b; b = t; }
  if (b.m == a.m) return {a.m, a.s + b.s};  // also +inf == +inf
  return {a.m, a.s + b.s * m_exp(b.m - a.m)};
}

template <class A> __device__ __forceinline__ A lse_value(Lse<A> a) {
  if (is_nan(a.s) || !finite_max(a.m)) return is_nan(a.s) ? a.s : a.m;
  return a.m + m_log(a.s);
}

template <class A> __device__ __forceinline__ A warp_sum(A v) {
  for (int d = 16; d; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d);
  return v;
}

template <loom_dtype DT, class A>
__global__ void ce_forward(const typename dt<DT>::S *x, const int64_t *target, const typename dt<DT>::S *w,
                           typename dt<DT>::S *loss, A *lse_out, int64_t R, int64_t C, int64_t ignore, A s) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = ((int64_t)gridDim.x * blockDim.x) >> 5;
  for (int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < R; r += warps) {
    const typename dt<DT>::S *row = x + r * C;
    Lse<A> acc = {-std::numeric_limits<A>::infinity(), A(0)};
    A sw = 0, W = 0;  // sum w[c] x[c] and sum w[c], for smoothing
    for (int64_t c = lane; c < C; c += 32) {
      A v = (A)dt<DT>::load(row[c]);
      if (is_nan(v)) acc.s = v;  // NaN stays in s
      else lse_add(acc, v);
      if (s > A(0)) {
        A wc = (A)dt<DT>::load(w[c]);
        sw += wc * v;
        W += wc;
      }
    }
    for (int d = 16; d; d >>= 1) {
      Lse<A> o = {__shfl_xor_sync(0xffffffffu, acc.m, d), __shfl_xor_sync(0xffffffffu, acc.s, d)};
      if (is_nan(acc.s) || is_nan(o.s)) acc.s = std::numeric_limits<A>::quiet_NaN();
      else acc = lse_merge(acc, o);
    }
    if (s > A(0)) {
      sw = warp_sum(sw);
      W = warp_sum(W);
    }
    if (lane == 0) {
      const A l = lse_value(acc);
      lse_out[r] = l;
      const int64_t t = target[r];
      A out;
      if (t == ignore) out = 0;
      else if (t < 0 || t >= C) out = std::numeric_limits<A>::quiet_NaN();  // the core checks first
      else {
        out = (A(1) - s) * (A)dt<DT>::load(w[t]) * (l - (A)dt<DT>::load(row[t]));
        if (s > A(0)) out += s / (A)C * (W * l - sw);
      }
      loss[r] = dt<DT>::store((typename dt<DT>::C)out);
    }
  }
}

template <loom_dtype DT, class A>
__global__ void ce_backward(const typename dt<DT>::S *x, const int64_t *target, const typename dt<DT>::S *w,
                            const A *gl, typename dt<DT>::S *dx, int64_t R, int64_t C, int64_t ignore, A s) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = ((int64_t)gridDim.x * blockDim.x) >> 5;
  for (int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < R; r += warps) {
    const typename dt<DT>::S *row = x + r * C;
    typename dt<DT>::S *drow = dx + r * C;
    const int64_t t = target[r];
    if (t == ignore || t < 0 || t >= C) {
      for (int64_t c = lane; c < C; c += 32) drow[c] = dt<DT>::store((typename dt<DT>::C)0);
      continue;
    }
    A W = 0;
    if (s > A(0)) {  // the weights are shared by every row: L2 hits
      for (int64_t c = lane; c < C; c += 32) W += (A)dt<DT>::load(w[c]);
      W = warp_sum(W);
    }
    const A l = gl[2 * r], g = gl[2 * r + 1];
    const A a = g * (A(1) - s) * (A)dt<DT>::load(w[t]), b = g * s / (A)C;
    for (int64_t c = lane; c < C; c += 32) {
      A p = m_exp((A)dt<DT>::load(row[c]) - l);
      A v = a * (c == t ? p - A(1) : p);
      if (s > A(0)) v += b * (W * p - (A)dt<DT>::load(w[c]));
      drow[c] = dt<DT>::store((typename dt<DT>::C)v);
    }
  }
}

template <loom_dtype DT> loom_status check(const core_kctx *k, loom_dtype acc) {
  const int64_t R = k->a.i[0], C = k->a.i[1];
  bool fwd = k->op == CORE_OP_cross_entropy;
  bool ok = k->in[0]->dtype == DT && k->in[1]->dtype == LOOM_I64 && k->in[2]->dtype == DT &&
            k->out[0]->dtype == DT && core_numel(k->in[0]) == R * C && core_numel(k->in[1]) == R &&
            core_numel(k->in[2]) == C;
  for (int i = 0; i < k->n_in; i++) ok = ok && core_is_contiguous(k->in[i]);
  for (int i = 0; i < k->n_out; i++) ok = ok && core_is_contiguous(k->out[i]);
  if (fwd) ok = ok && k->out[1]->dtype == acc && core_numel(k->out[0]) == R && core_numel(k->out[1]) == R;
  else ok = ok && k->in[3]->dtype == acc && core_numel(k->in[3]) == 2 * R && core_numel(k->out[0]) == R * C;
  if (!ok)
    return core_set_error(LOOM_ERR_INVALID, "%s: operands are not contiguous or do not match [R, C] = [%lld, %lld] in %s",
                          core_ops[k->op].name, (long long)R, (long long)C, loom_dtype_name(DT));
  return LOOM_OK;
}

template <loom_dtype DT> loom_status forward_kernel(const core_kctx *k) {
  using S = typename dt<DT>::S;
  using A = typename std::conditional<DT == LOOM_F64, double, float>::type;
  if (check<DT>(k, DT == LOOM_F64 ? LOOM_F64 : LOOM_F32)) return loom_last_status();
  const int64_t R = k->a.i[0], C = k->a.i[1];
  if (loom_status st = cuda_set_device(kernel_device(k))) return st;  // tensors may live on another GPU
  ce_forward<DT, A><<<grid_for(R * 32, kernel_device(k)), kThreads, 0, (cudaStream_t)k->stream>>>(
      static_cast<const S *>(core_ptr(k->in[0])), static_cast<const int64_t *>(core_ptr(k->in[1])),
      static_cast<const S *>(core_ptr(k->in[2])), static_cast<S *>(core_ptr(k->out[0])),
      static_cast<A *>(core_ptr(k->out[1])), R, C, k->a.i[2], (A)k->a.f[0]);
  return CUDA_CHECK_LAUNCH("cross_entropy");
}

template <loom_dtype DT> loom_status backward_kernel(const core_kctx *k) {
  using S = typename dt<DT>::S;
  using A = typename std::conditional<DT == LOOM_F64, double, float>::type;
  if (check<DT>(k, DT == LOOM_F64 ? LOOM_F64 : LOOM_F32)) return loom_last_status();
  const int64_t R = k->a.i[0], C = k->a.i[1];
  if (loom_status st = cuda_set_device(kernel_device(k))) return st;  // tensors may live on another GPU
  ce_backward<DT, A><<<grid_for(R * 32, kernel_device(k)), kThreads, 0, (cudaStream_t)k->stream>>>(
      static_cast<const S *>(core_ptr(k->in[0])), static_cast<const int64_t *>(core_ptr(k->in[1])),
      static_cast<const S *>(core_ptr(k->in[2])), static_cast<const A *>(core_ptr(k->in[3])),
      static_cast<S *>(core_ptr(k->out[0])), R, C, k->a.i[2], (A)k->a.f[0]);
  return CUDA_CHECK_LAUNCH("cross_entropy_backward");
}

}  // namespace

void cuda_register_loss(void) {
  core_register(LOOM_CUDA, CORE_OP_cross_entropy, LOOM_F32, forward_kernel<LOOM_F32>);
  core_register(LOOM_CUDA, CORE_OP_cross_entropy, LOOM_F64, forward_kernel<LOOM_F64>);
  core_register(LOOM_CUDA, CORE_OP_cross_entropy, LOOM_F16, forward_kernel<LOOM_F16>);
  core_register(LOOM_CUDA, CORE_OP_cross_entropy, LOOM_BF16, forward_kernel<LOOM_BF16>);
  core_register(LOOM_CUDA, CORE_OP_cross_entropy_backward, LOOM_F32, backward_kernel<LOOM_F32>);
  core_register(LOOM_CUDA, CORE_OP_cross_entropy_backward, LOOM_F64, backward_kernel<LOOM_F64>);
  core_register(LOOM_CUDA, CORE_OP_cross_entropy_backward, LOOM_F16, backward_kernel<LOOM_F16>);
  core_register(LOOM_CUDA, CORE_OP_cross_entropy_backward, LOOM_BF16, backward_kernel<LOOM_BF16>);
}
