// Elementwise unary ops: neg abs sign exp log sqrt rsqrt sin cos relu sigmoid
// tanh clamp logical_not. f16 / bf16 compute in f32; integers wrap like the CPU.
#include <math.h>
#include <stdint.h>

#include <limits>
#include <type_traits>

#include "cuda/map.cuh"

namespace {

template <class T> constexpr bool kIsInt = std::is_integral<T>::value;

// -x in unsigned arithmetic, so that the most negative integer wraps to itself.
template <class T> __device__ __forceinline__ T wrap_neg(T x) {
  using U = typename std::make_unsigned<T>::type;
  return (T)((U)0 - (U)x);
}

struct Neg {
  template <class T> __device__ T operator()(T x) const {
    if constexpr (kIsInt<T>) return wrap_neg(x);
    else return -x;
  }
};
struct Abs {
  template <class T> __device__ T operator()(T x) const {
    if constexpr (std::is_unsigned<T>::value) return x;
    else if constexpr (kIsInt<T>) return x < 0 ? wrap_neg(x) : x;
    else return m_fabs(x);
  }
};
struct Sign { // 0 for NaN and -0, like PyTorch
  template <class T> __device__ T operator()(T x) const {
    if constexpr (std::is_unsigned<T>::value) return x != 0;
    else return x > T(0) ? T(1) : x < T(0) ? T(-1) : T(0);
  }
};
struct Exp {
  template <class T> __device__ T operator()(T x) const { return m_exp(x); }
};
struct Log {
  template <class T> __device__ T operator()(T x) const { return m_log(x); }
};
struct Sqrt {
  template <class T> __device__ T operator()(T x) const { return m_sqrt(x); }
};
struct Rsqrt {
  template <class T> __device__ T operator()(T x) const { return T(1) / m_sqrt(x); }
};
struct Sin {
  template <class T> __device__ T operator()(T x) const { return m_sin(x); }
};
struct Cos {
  template <class T> __device__ T operator()(T x) const { return m_cos(x); }
};
struct Relu { // NaN stays NaN
  template <class T> __device__ T operator()(T x) const { return x < T(0) ? T(0) : x; }
};
struct Sigmoid {
  template <class T> __device__ T operator()(T x) const { return T(1) / (T(1) + m_exp(-x)); }
};
struct Tanh {
  template <class T> __device__ T operator()(T x) const { return m_tanh(x); }
};
struct LogicalNot {
  template <class T> __device__ bool operator()(T x) const { return x == T(0); }
};

// Floats compare against the bounds in double (NaN stays NaN; loom_clamp turns
// lo > hi into lo = hi, and a NaN bound into lo = hi = NaN: NaN everywhere);
// integers clamp to the integers inside the bounds.
struct Clamp {
  double lo, hi;
  int64_t ilo, ihi;
  template <class T> __device__ T operator()(T x) const {
    if constexpr (kIsInt<T>) return x < (T)ilo ? (T)ilo : x > (T)ihi ? (T)ihi : x;
    else return lo != lo || (double)x < lo ? (T)lo : (double)x > hi ? (T)hi : x;
  }
};

int64_t int_bound(double v, bool lower, int64_t tmin, int64_t tmax) {
  if (isnan(v)) return lower ? tmin : tmax;
  v = lower ? ceil(v) : floor(v);
  if (v <= (double)tmin) return tmin;
  if (v >= (double)tmax) return tmax;
  return (int64_t)v;
}

template <loom_dtype DT, class F> loom_status unary_kernel(const core_kctx *k) {
  return map_launch<DT, DT, 1>(k, F{});
}

template <loom_dtype DT> loom_status not_kernel(const core_kctx *k) {
  return map_launch<DT, LOOM_BOOL, 1>(k, LogicalNot{});
}

template <loom_dtype DT> loom_status clamp_kernel(const core_kctx *k) {
  using S = typename dt<DT>::S;
  int64_t tmin = 0, tmax = 0;
  if constexpr (kIsInt<S>) {
    tmin = (int64_t)std::numeric_limits<S>::lowest();
    tmax = (int64_t)std::numeric_limits<S>::max();
  }
  Clamp f{k->a.f[0], k->a.f[1], int_bound(k->a.f[0], true, tmin, tmax), int_bound(k->a.f[1], false, tmin, tmax)};
  return map_launch<DT, DT, 1>(k, f);
}

template <class F, loom_dtype... DTs> void reg(core_op op) {
  (core_register(LOOM_CUDA, op, DTs, unary_kernel<DTs, F>), ...);
}

template <loom_dtype... DTs> void reg_clamp_not() {
  (core_register(LOOM_CUDA, CORE_OP_clamp, DTs, clamp_kernel<DTs>), ...);
  (core_register(LOOM_CUDA, CORE_OP_logical_not, DTs, not_kernel<DTs>), ...);
}

}  // namespace

void cuda_register_unary(void) {
  reg<Neg, LOOM_FLOATS, LOOM_INTS>(CORE_OP_neg);
  reg<Abs, LOOM_FLOATS, LOOM_INTS, LOOM_U8>(CORE_OP_abs);
  reg<Sign, LOOM_FLOATS, LOOM_INTS, LOOM_U8>(CORE_OP_sign);
  reg<Exp, LOOM_FLOATS>(CORE_OP_exp);
  reg<Log, LOOM_FLOATS>(CORE_OP_log);
  reg<Sqrt, LOOM_FLOATS>(CORE_OP_sqrt);
  reg<Rsqrt, LOOM_FLOATS>(CORE_OP_rsqrt);
  reg<Sin, LOOM_FLOATS>(CORE_OP_sin);
  reg<Cos, LOOM_FLOATS>(CORE_OP_cos);
  reg<Relu, LOOM_FLOATS>(CORE_OP_relu);
  reg<Sigmoid, LOOM_FLOATS>(CORE_OP_sigmoid);
  reg<Tanh, LOOM_FLOATS>(CORE_OP_tanh);
  reg_clamp_not<LOOM_FLOATS, LOOM_INTS, LOOM_U8>();
  core_register(LOOM_CUDA, CORE_OP_logical_not, LOOM_BOOL, not_kernel<LOOM_BOOL>);
}
