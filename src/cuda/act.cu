// CUDA kernels of the act family. leaky_relu, elu, gelu, silu and their fused
// backward ops (x, g) -> gx are elementwise maps (f16 / bf16 compute in f32).
// softmax / log_softmax and their backward ops work on a contiguous [O, R, I]:
// I == 1 and R <= 1024: one warp per row; I == 1 and longer rows: one block
// per row; I > 1: one thread per column (neighbouring threads on neighbouring
// columns, so loads coalesce). The forward keeps a running (max, sum) pair, so
// it reads x twice (statistics, then output) rather than three times.
#include <limits>

#include "cuda/map.cuh"

namespace {

constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kGeluC = 0.044715;

__device__ __forceinline__ float m_erf(float x) { return erff(x); }
__device__ __forceinline__ double m_erf(double x) { return erf(x); }

// ---- elementwise ----

struct LeakyRelu {
  double slope;
  template <class T> __device__ T operator()(T x) const { return x > T(0) ? x : x * (T)slope; }
};
struct Elu {
  double alpha;
  template <class T> __device__ T operator()(T x) const { return x > T(0) ? x : (T)alpha * (m_exp(x) - T(1)); }
};
struct Gelu {
  bool tanh_form;
  template <class T> __device__ T operator()(T x) const {
    if (tanh_form) return T(0.5) * x * (T(1) + m_tanh((T)kSqrt2OverPi * (x + (T)kGeluC * x * x * x)));
    return T(0.5) * x * (T(1) + m_erf(x * (T)kInvSqrt2));
  }
};
struct Silu {
  template <class T> __device__ T operator()(T x) const { return x / (T(1) + m_exp(-x)); }
};

// Backward maps: (x, g) -> g * f'(x).
struct LeakyReluBackward {
  double slope;
  template <class T> __device__ T operator()(T x, T g) const { return x > T(0) ? g : g * (T)slope; }
};
struct EluBackward {
  double alpha;
  template <class T> __device__ T operator()(T x, T g) const { return x > T(0) ? g : g * (T)alpha * m_exp(x); }
};
struct GeluBackward {
  bool tanh_form;
  template <class T> __device__ T operator()(T x, T g) const {
    if (tanh_form) {
      const T k = (T)kSqrt2OverPi, c = (T)kGeluC;
      T t = m_tanh(k * (x + c * x * x * x));
      return g * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * k * (T(1) + T(3) * c * x * x));
    }
    return g * (T(0.5) * (T(1) + m_erf(x * (T)kInvSqrt2)) + x * (T)kInvSqrt2Pi * m_exp(T(-0.5) * x * x));
  }
};
struct SiluBackward {
  template <class T> __device__ T operator()(T x, T g) const {
    T s = T(1) / (T(1) + m_exp(-x));
    return g * s * (T(1) + x * (T(1) - s));
  }
};

struct ReluBackward {
  template <class T> __device__ T operator()(T y, T g) const { return y <= T(0) ? T(0) : g; }
};

template <loom_dtype DT> loom_status leaky_relu_kernel(const core_kctx *k) {
  return map_launch<DT, DT, 1>(k, LeakyRelu{k->a.f[0]});
}
template <loom_dtype DT> loom_status elu_kernel(const core_kctx *k) { return map_launch<DT, DT, 1>(k, Elu{k->a.f[0]}); }
template <loom_dtype DT> loom_status gelu_kernel(const core_kctx *k) {
  return map_launch<DT, DT, 1>(k, Gelu{k->a.i[0] != 0});
}
template <loom_dtype DT> loom_status silu_kernel(const core_kctx *k) { return map_launch<DT, DT, 1>(k, Silu{}); }
template <loom_dtype DT> loom_status leaky_relu_backward_kernel(const core_kctx *k) {
  return map_launch<DT, DT, 2>(k, LeakyReluBackward{k->a.f[0]});
}
template <loom_dtype DT> loom_status elu_backward_kernel(const core_kctx *k) {
  return map_launch<DT, DT, 2>(k, EluBackward{k->a.f[0]});
}
template <loom_dtype DT> loom_status gelu_backward_kernel(const core_kctx *k) {
  return map_launch<DT, DT, 2>(k, GeluBackward{k->a.i[0] != 0});
}
template <loom_dtype DT> loom_status relu_backward_kernel(const core_kctx *k) {
  return map_launch<DT, DT, 2>(k, ReluBackward{});
}
template <loom_dtype DT> loom_status silu_backward_kernel(const core_kctx *k) {
  return map_launch<DT, DT, 2>(k, SiluBackward{});
}

// ---- softmax family ----

enum Mode { kSoftmax, kLogSoftmax, kSoftmaxBack, kLogSoftmaxBack };

// Running max m and sum s of exp(x - m). -inf elements add nothing; a NaN
// makes s NaN, so the whole row comes out NaN (as in PyTorch).
template <class A> struct MS {
  A m, s;
};
template <class A> __device__ __forceinline__ MS<A> ms_push(MS<A> a, A x) {
  if (x == -std::numeric_limits<A>::infinity()) return a;
  if (x > a.m) {
    a.s = a.s * m_exp(a.m - x) + A(1);
    a.m = x;
  } else {
    a.s += m_exp(x - a.m);
  }
  return a;
}
template <class A> __device__ __forceinline__ MS<A> ms_merge(MS<A> a, MS<A> b) {
  if (b.m > a.m) {
    MS<A> t = a;
    a = b;
    b = t;
  }
  if (b.m == -std::numeric_limits<A>::infinity()) return a;
  a.s += b.s * m_exp(b.m - a.m);
  return a;
}
template <class A> __device__ __forceinline__ MS<A> ms_warp(MS<A> v) {
  for (int d = 16; d; d >>= 1) {
    MS<A> o{__shfl_xor_sync(0xffffffffu, v.m, d), __shfl_xor_sync(0xffffffffu, v.s, d)};
    v = ms_merge(v, o);
  }
  return v;
}
template <class A> __device__ __forceinline__ A sum_warp(A v) {
  for (int d = 16; d; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d);
  return v;
}

// Per element of one line: a = x (forward) or y (backward), b = g (backward only).
template <Mode M, class A> struct Line {
  // the reduced statistics of a line
  using Stat = typename std::conditional<M == kSoftmax || M == kLogSoftmax, MS<A>, A>::type;
  static __device__ __forceinline__ Stat init() {
    if constexpr (M == kSoftmax || M == kLogSoftmax) return MS<A>{-std::numeric_limits<A>::infinity(), A(0)};
    else return A(0);
  }
  static __device__ __forceinline__ Stat push(Stat s, A a, A b) {
    if constexpr (M == kSoftmax || M == kLogSoftmax) return ms_push(s, a);
    else if constexpr (M == kSoftmaxBack) return s + a * b;
    else return s + b;
  }
  static __device__ __forceinline__ Stat merge(Stat x, Stat y) {
    if constexpr (M == kSoftmax || M == kLogSoftmax) return ms_merge(x, y);
    else return x + y;
  }
  static __device__ __forceinline__ Stat warp(Stat s) {
    if constexpr (M == kSoftmax || M == kLogSoftmax) return ms_warp(s);
    else return sum_warp(s);
  }
  static __device__ __forceinline__ A out(Stat s, A a, A b) {
    if constexpr (M == kSoftmax) return m_exp(a - s.m) / s.s;
    else if constexpr (M == kLogSoftmax) return a - s.m - m_log(s.s);
    else if constexpr (M == kSoftmaxBack) return a * (b - s);
    else return b - m_exp(a) * s;
  }
};

template <Mode M> constexpr bool kBack = M == kSoftmaxBack || M == kLogSoftmaxBack;

template <loom_dtype DT, Mode M, class A>
__global__ void sm_rows_warp(const typename dt<DT>::S *a, const typename dt<DT>::S *b, typename dt<DT>::S *out,
                             int64_t O, int64_t R) {
  using L = Line<M, A>;
  const int lane = threadIdx.x & 31;
  const int64_t warps = ((int64_t)gridDim.x * blockDim.x) >> 5;
  for (int64_t o = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; o < O; o += warps) {
    const int64_t base = o * R;
    typename L::Stat s = L::init();
    for (int64_t r = lane; r < R; r += 32)
      s = L::push(s, (A)dt<DT>::load(a[base + r]), kBack<M> ? (A)dt<DT>::load(b[base + r]) : A(0));
    s = L::warp(s);
    for (int64_t r = lane; r < R; r += 32)
      out[base + r] = dt<DT>::store((typename dt<DT>::C)L::out(
          s, (A)dt<DT>::load(a[base + r]), kBack<M> ? (A)dt<DT>::load(b[base + r]) : A(0)));
  }
}

template <loom_dtype DT, Mode M, class A>
__global__ void __launch_bounds__(kThreads) sm_rows_block(const typename dt<DT>::S *a, const typename dt<DT>::S *b,
                                                          typename dt<DT>::S *out, int64_t O, int64_t R) {
  using L = Line<M, A>;
  __shared__ typename L::Stat part[kThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t o = blockIdx.x; o < O; o += gridDim.x) {
    const int64_t base = o * R;
    typename L::Stat s = L::init();
    for (int64_t r = threadIdx.x; r < R; r += blockDim.x)
      s = L::push(s, (A)dt<DT>::load(a[base + r]), kBack<M> ? (A)dt<DT>::load(b[base + r]) : A(0));
    s = L::warp(s);
    if (lane == 0) part[warp] = s;
    __syncthreads();
    s = part[0];
    for (int w = 1; w < kThreads / 32; w++) s = L::merge(s, part[w]);  // same order in every thread
    for (int64_t r = threadIdx.x; r < R; r += blockDim.x)
      out[base + r] = dt<DT>::store((typename dt<DT>::C)L::out(
          s, (A)dt<DT>::load(a[base + r]), kBack<M> ? (A)dt<DT>::load(b[base + r]) : A(0)));
    __syncthreads();  // part[] is reused by the next row
  }
}

template <loom_dtype DT, Mode M, class A>
__global__ void sm_cols(const typename dt<DT>::S *a, const typename dt<DT>::S *b, typename dt<DT>::S *out, int64_t O,
                        int64_t R, int64_t I) {
  using L = Line<M, A>;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < O * I; t += step) {
    const int64_t base = (t / I) * R * I + t % I;
    typename L::Stat s = L::init();
    for (int64_t r = 0; r < R; r++)
      s = L::push(s, (A)dt<DT>::load(a[base + r * I]), kBack<M> ? (A)dt<DT>::load(b[base + r * I]) : A(0));
    for (int64_t r = 0; r < R; r++)
      out[base + r * I] = dt<DT>::store((typename dt<DT>::C)L::out(
          s, (A)dt<DT>::load(a[base + r * I]), kBack<M> ? (A)dt<DT>::load(b[base + r * I]) : A(0)));
  }
}

template <loom_dtype DT, Mode M> loom_status softmax_kernel(const core_kctx *k) {
  using S = typename dt<DT>::S;
  using A = typename std::conditional<DT == LOOM_F64, double, float>::type;
  const char *name = core_ops[k->op].name;
  const int64_t O = k->a.i[0], R = k->a.i[1], I = k->a.i[2], n = O * R * I;
  const int nin = kBack<M> ? 2 : 1;
  if (O < 0 || R <= 0 || I < 0 || core_numel(k->out[0]) != n || k->out[0]->dtype != DT)
    return core_set_error(LOOM_ERR_INVALID, "%s: output %s %s does not match [O, R, I] = [%lld, %lld, %lld] %s", name,
                          loom_dtype_name(k->out[0]->dtype), loom_shape_str(k->out[0]->shape), (long long)O,
                          (long long)R, (long long)I, loom_dtype_name(DT));
  for (int j = 0; j < nin; j++)
    if (core_numel(k->in[j]) != n || k->in[j]->dtype != DT || !core_is_contiguous(k->in[j]))
      return core_set_error(LOOM_ERR_INVALID, "%s: input %d (%s %s) is not a contiguous %s [O, R, I] = [%lld, %lld, %lld]",
                            name, j, loom_dtype_name(k->in[j]->dtype), loom_shape_str(k->in[j]->shape),
                            loom_dtype_name(DT), (long long)O, (long long)R, (long long)I);
  if (!core_is_contiguous(k->out[0]))
    return core_set_error(LOOM_ERR_INVALID, "%s: output is not contiguous", name);
  if (n == 0) return LOOM_OK;
  const int dev = kernel_device(k);
  loom_status st = cuda_set_device(dev);
  if (st) return st;
  cudaStream_t stream = (cudaStream_t)k->stream;
  const S *a = static_cast<const S *>(core_ptr(k->in[0]));
  const S *b = kBack<M> ? static_cast<const S *>(core_ptr(k->in[1])) : nullptr;
  S *out = static_cast<S *>(core_ptr(k->out[0]));
  if (I > 1) {
    sm_cols<DT, M, A><<<grid_for(O * I, dev), kThreads, 0, stream>>>(a, b, out, O, R, I);
  } else if (R <= 1024) {
    sm_rows_warp<DT, M, A><<<grid_for(O * 32, dev), kThreads, 0, stream>>>(a, b, out, O, R);
  } else {
    int64_t blocks = O < (int64_t)cuda_sm_count(dev) * 16 ? O : (int64_t)cuda_sm_count(dev) * 16;
    sm_rows_block<DT, M, A><<<(unsigned)(blocks < 1 ? 1 : blocks), kThreads, 0, stream>>>(a, b, out, O, R);
  }
  return CUDA_CHECK_LAUNCH(name);
}

template <loom_dtype... DTs> void reg_all() {
  (core_register(LOOM_CUDA, CORE_OP_leaky_relu, DTs, leaky_relu_kernel<DTs>), ...);
  (core_register(LOOM_CUDA, CORE_OP_elu, DTs, elu_kernel<DTs>), ...);
  (core_register(LOOM_CUDA, CORE_OP_gelu, DTs, gelu_kernel<DTs>), ...);
  (core_register(LOOM_CUDA, CORE_OP_silu, DTs, silu_kernel<DTs>), ...);
  (core_register(LOOM_CUDA, CORE_OP_leaky_relu_backward, DTs, leaky_relu_backward_kernel<DTs>), ...);
  (core_register(LOOM_CUDA, CORE_OP_elu_backward, DTs, elu_backward_kernel<DTs>), ...);
  (core_register(LOOM_CUDA, CORE_OP_gelu_backward, DTs, gelu_backward_kernel<DTs>), ...);
  (core_register(LOOM_CUDA, CORE_OP_silu_backward, DTs, silu_backward_kernel<DTs>), ...);
  (core_register(LOOM_CUDA, CORE_OP_relu_backward, DTs, relu_backward_kernel<DTs>), ...);
  (core_register(LOOM_CUDA, CORE_OP_softmax, DTs, softmax_kernel<DTs, kSoftmax>), ...);
  (core_register(LOOM_CUDA, CORE_OP_log_softmax, DTs, softmax_kernel<DTs, kLogSoftmax>), ...);
  (core_register(LOOM_CUDA, CORE_OP_softmax_backward, DTs, softmax_kernel<DTs, kSoftmaxBack>), ...);
  (core_register(LOOM_CUDA, CORE_OP_log_softmax_backward, DTs, softmax_kernel<DTs, kLogSoftmaxBack>), ...);
}

}  // namespace

void cuda_register_act(void) { reg_all<LOOM_FLOATS>(); }
