// Shared by the CUDA kernel files (CUDA C++ only): dtype traits, tensor
// geometry passed to kernels by value, launch helpers, and the per-family
// registration functions that register.cu calls.
#ifndef LOOM_CUDA_KERNELS_CUH
#define LOOM_CUDA_KERNELS_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <type_traits>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_util.h"

// ---- dtypes: S is the storage type, C the type arithmetic is done in ----

template <loom_dtype DT> struct dt;

#define LOOM_PLAIN_DTYPE(DT, TYPE)                                        \
  template <> struct dt<DT> {                                             \
    using S = TYPE;                                                       \
    using C = TYPE;                                                       \
    static __device__ __forceinline__ C load(S s) { return s; }           \
    static __device__ __forceinline__ S store(C c) { return c; }          \
  };
LOOM_PLAIN_DTYPE(LOOM_F32, float)
LOOM_PLAIN_DTYPE(LOOM_F64, double)
LOOM_PLAIN_DTYPE(LOOM_I32, int32_t)
LOOM_PLAIN_DTYPE(LOOM_I64, int64_t)
LOOM_PLAIN_DTYPE(LOOM_U8, uint8_t)
#undef LOOM_PLAIN_DTYPE

template <> struct dt<LOOM_F16> {
  using S = __half;
  using C = float;
  static __device__ __forceinline__ C load(S s) { return __half2float(s); }
  static __device__ __forceinline__ S store(C c) { return __float2half_rn(c); }
};
template <> struct dt<LOOM_BF16> {
  using S = __nv_bfloat16;
  using C = float;
  static __device__ __forceinline__ C load(S s) { return __bfloat162float(s); }
  static __device__ __forceinline__ S store(C c) { return __float2bfloat16_rn(c); }
};
template <> struct dt<LOOM_BOOL> {
  using S = uint8_t;
  using C = bool;
  static __device__ __forceinline__ C load(S s) { return s != 0; }
  static __device__ __forceinline__ S store(C c) { return c ? 1 : 0; }
};

// An unsigned type of SIZE bytes, for moves that only need the element size.
template <int SIZE> struct Bits;
template <> struct Bits<1> { using T = uint8_t; };
template <> struct Bits<2> { using T = uint16_t; };
template <> struct Bits<4> { using T = uint32_t; };
template <> struct Bits<8> { using T = uint64_t; };

// Conversion between arithmetic types (to bool: x != 0). Floats go to u8
// through i64, as on the CPU, so that negative values wrap instead of
// saturating (a direct conversion is undefined there).
template <class To, class From> __device__ __forceinline__ To cvt(From x) {
  if constexpr (std::is_same<To, uint8_t>::value && std::is_floating_point<From>::value)
    return static_cast<uint8_t>(static_cast<int64_t>(x));
  else
    return static_cast<To>(x);
}

// Stores v as element `off` of p, whose dtype is only known at run time.
template <class A> __device__ __forceinline__ void store_as(void *p, int64_t off, loom_dtype t, A v) {
  switch (t) {
    case LOOM_F32: static_cast<float *>(p)[off] = cvt<float>(v); break;
    case LOOM_F64: static_cast<double *>(p)[off] = cvt<double>(v); break;
    case LOOM_F16: static_cast<__half *>(p)[off] = __float2half_rn(cvt<float>(v)); break;
    case LOOM_BF16: static_cast<__nv_bfloat16 *>(p)[off] = __float2bfloat16_rn(cvt<float>(v)); break;
    case LOOM_I32: static_cast<int32_t *>(p)[off] = cvt<int32_t>(v); break;
    case LOOM_I64: static_cast<int64_t *>(p)[off] = cvt<int64_t>(v); break;
    case LOOM_U8: static_cast<uint8_t *>(p)[off] = cvt<uint8_t>(v); break;
    default: static_cast<uint8_t *>(p)[off] = cvt<bool>(v) ? 1 : 0; break;
  }
}

template <class T> __host__ __device__ __forceinline__ bool is_nan(T x) { return x != x; }

// Float maths by overload (float -> the f-suffixed function), and a + b * c
// rounded twice (never fused), as the CPU computes it.
#define LOOM_MATH1(NAME, F32, F64)                                                \
  __device__ __forceinline__ float NAME(float x) { return F32(x); }              \
  __device__ __forceinline__ double NAME(double x) { return F64(x); }
LOOM_MATH1(m_exp, expf, exp)
LOOM_MATH1(m_log, logf, log)
LOOM_MATH1(m_sqrt, sqrtf, sqrt)
LOOM_MATH1(m_sin, sinf, sin)
LOOM_MATH1(m_cos, cosf, cos)
LOOM_MATH1(m_tanh, tanhf, tanh)
LOOM_MATH1(m_fabs, fabsf, fabs)
#undef LOOM_MATH1
__device__ __forceinline__ float m_pow(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double m_pow(double a, double b) { return pow(a, b); }
__device__ __forceinline__ float m_add_mul(float a, float b, float c) { return __fadd_rn(a, __fmul_rn(b, c)); }
__device__ __forceinline__ double m_add_mul(double a, double b, double c) {
  return __dadd_rn(a, __dmul_rn(b, c));
}

// ---- geometry of N operands sharing one logical shape ----
// Host side: dims of size 1 dropped and mergeable dims merged, so most
// tensors become 1-d. Device side: IT is uint32_t when every index fits.

template <int N> struct GeomHost {
  int ndim;
  int64_t size[LOOM_MAX_DIMS];
  int64_t stride[N][LOOM_MAX_DIMS];
};

template <int N, class IT> struct Geom {
  int ndim;
  IT size[LOOM_MAX_DIMS];
  IT stride[N][LOOM_MAX_DIMS];
};

template <int N> GeomHost<N> geom_make(loom_shape shape, const int64_t *const *strides) {
  GeomHost<N> g;
  g.ndim = 0;
  for (int d = 0; d < shape.ndim; d++) {
    if (shape.d[d] == 1) continue;
    bool merge = g.ndim > 0;
    for (int k = 0; k < N && merge; k++)
      merge = g.stride[k][g.ndim - 1] == strides[k][d] * shape.d[d];
    if (merge) {
      g.size[g.ndim - 1] *= shape.d[d];
      for (int k = 0; k < N; k++) g.stride[k][g.ndim - 1] = strides[k][d];
    } else {
      g.size[g.ndim] = shape.d[d];
      for (int k = 0; k < N; k++) g.stride[k][g.ndim] = strides[k][d];
      g.ndim++;
    }
  }
  return g;
}

// Every operand dense in the same order (after merging).
template <int N> bool geom_contiguous(const GeomHost<N> &g) {
  if (g.ndim > 1) return false;
  for (int k = 0; k < N && g.ndim == 1; k++)
    if (g.stride[k][0] != 1) return false;
  return true;
}

// True when n and every element offset fit in 31 bits (and no stride is negative).
template <int N> bool geom_fits32(const GeomHost<N> &g, int64_t n) {
  if (n > INT32_MAX) return false;
  for (int k = 0; k < N; k++) {
    int64_t last = 0;
    for (int d = 0; d < g.ndim; d++) {
      if (g.stride[k][d] < 0) return false;
      last += (g.size[d] - 1) * g.stride[k][d];
    }
    if (last > INT32_MAX) return false;
  }
  return true;
}

template <class IT, int N> Geom<N, IT> geom_to(const GeomHost<N> &h) {
  Geom<N, IT> g;
  g.ndim = h.ndim;
  for (int d = 0; d < h.ndim; d++) {
    g.size[d] = (IT)h.size[d];
    for (int k = 0; k < N; k++) g.stride[k][d] = (IT)h.stride[k][d];
  }
  return g;
}

// Element offsets of each operand for logical (row-major) index i. (The
// loops over the N operands have a constant trip count: nvcc unrolls them.)
template <int N, class IT>
__host__ __device__ __forceinline__ void geom_offsets(const Geom<N, IT> &g, IT i, IT (&off)[N]) {
  if (g.ndim <= 1) {
    for (int k = 0; k < N; k++) off[k] = g.ndim ? i * g.stride[k][0] : 0;
    return;
  }
  for (int k = 0; k < N; k++) off[k] = 0;
  for (int d = g.ndim - 1; d >= 0; d--) {
    IT q = i / g.size[d], r = i - q * g.size[d];
    i = q;
    for (int k = 0; k < N; k++) off[k] += r * g.stride[k][d];
  }
}

// ---- launching ----

constexpr int kThreads = 256;

// Blocks for `work` items at kThreads per block, capped for grid-stride loops.
inline unsigned grid_for(int64_t work, int device) {
  int64_t blocks = (work + kThreads - 1) / kThreads;
  int64_t cap = (int64_t)cuda_sm_count(device) * 16;
  if (blocks > cap) blocks = cap;
  return blocks < 1 ? 1u : (unsigned)blocks;
}

inline int kernel_device(const core_kctx *k) {
  const loom_tensor *t = k->n_out > 0 ? k->out[0] : k->in[0];
  return t->storage->device.index;
}

inline bool aligned_to(const void *p, size_t bytes) { return (uintptr_t)p % bytes == 0; }

// Elementwise kernels index in[0..n) with out's geometry: their shapes must match.
inline loom_status check_same_shapes(const core_kctx *k, int n) {
  for (int i = 0; i < n; i++)
    if (!loom_shape_equal(k->in[i]->shape, k->out[0]->shape))
      return core_set_error(LOOM_ERR_INVALID, "%s: input %d has shape %s, the output %s", core_ops[k->op].name, i,
                            loom_shape_str(k->in[i]->shape), loom_shape_str(k->out[0]->shape));
  return LOOM_OK;
}

#define LOOM_FLOATS LOOM_F32, LOOM_F64, LOOM_F16, LOOM_BF16
#define LOOM_INTS LOOM_I32, LOOM_I64
#define LOOM_ALL_DTYPES LOOM_FLOATS, LOOM_INTS, LOOM_U8, LOOM_BOOL

// ---- registration, one function per kernel family ----
void cuda_register_copy(void);
void cuda_register_random(void);
void cuda_register_unary(void);
void cuda_register_binary(void);
void cuda_register_reduce(void);
void cuda_register_index(void);
void cuda_register_logsumexp(void);
void cuda_register_conv(void);
void cuda_register_pool(void);
void cuda_register_norm(void);
void cuda_register_act(void);
void cuda_register_rnn(void);
void cuda_register_attention(void);
void cuda_register_loss(void);
void cuda_register_optim(void);
void cuda_register_sparse(void);

#endif
