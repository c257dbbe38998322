// Elementwise binary ops (arithmetic, maximum / minimum, comparisons, logical)
// and where. Integer arithmetic wraps around; maximum / minimum propagate NaN.
#include <stdint.h>

#include <type_traits>

#include "cuda/map.cuh"

namespace {

// a op b in unsigned arithmetic for integers (wraps instead of overflowing).
template <class T, class Op> __device__ __forceinline__ T wrap(T a, T b, Op op) {
  if constexpr (std::is_integral<T>::value) {
    using U = typename std::make_unsigned<T>::type;
    return (T)op((U)a, (U)b);
  } else {
    return op(a, b);
  }
}

struct Add {
  template <class T> __device__ T operator()(T a, T b) const {
    return wrap(a, b, [](auto x, auto y) { return x + y; });
  }
};
struct Sub {
  template <class T> __device__ T operator()(T a, T b) const {
    return wrap(a, b, [](auto x, auto y) { return x - y; });
  }
};
struct Mul {
  template <class T> __device__ T operator()(T a, T b) const {
    return wrap(a, b, [](auto x, auto y) { return x * y; });
  }
};
struct Div {
  template <class T> __device__ T operator()(T a, T b) const { return a / b; }
};
struct Pow {
  template <class T> __device__ T operator()(T a, T b) const { return m_pow(a, b); }
};
struct Maximum {
  template <class T> __device__ T operator()(T a, T b) const { return (is_nan(a) || a > b) ? a : b; }
};
struct Minimum {
  template <class T> __device__ T operator()(T a, T b) const { return (is_nan(a) || a < b) ? a : b; }
};
struct Eq {
  template <class T> __device__ bool operator()(T a, T b) const { return a == b; }
};
struct Ne {
  template <class T> __device__ bool operator()(T a, T b) const { return a != b; }
};
struct Lt {
  template <class T> __device__ bool operator()(T a, T b) const { return a < b; }
};
struct Le {
  template <class T> __device__ bool operator()(T a, T b) const { return a <= b; }
};
struct Gt {
  template <class T> __device__ bool operator()(T a, T b) const { return a > b; }
};
struct Ge {
  template <class T> __device__ bool operator()(T a, T b) const { return a >= b; }
};
// Nonzero (and NaN) is true.
struct LogicalAnd {
  template <class T> __device__ bool operator()(T a, T b) const { return a != T(0) && b != T(0); }
};
struct LogicalOr {
  template <class T> __device__ bool operator()(T a, T b) const { return a != T(0) || b != T(0); }
};
struct LogicalXor {
  template <class T> __device__ bool operator()(T a, T b) const { return (a != T(0)) != (b != T(0)); }
};

template <loom_dtype DT, class F> loom_status arith_kernel(const core_kctx *k) {
  return map_launch<DT, DT, 2>(k, F{});
}

template <loom_dtype DT, class F> loom_status pred_kernel(const core_kctx *k) {
  return map_launch<DT, LOOM_BOOL, 2>(k, F{});
}

template <class F, loom_dtype... DTs> void reg_arith(core_op op) {
  (core_register(LOOM_CUDA, op, DTs, arith_kernel<DTs, F>), ...);
}

template <class F, loom_dtype... DTs> void reg_pred(core_op op) {
  (core_register(LOOM_CUDA, op, DTs, pred_kernel<DTs, F>), ...);
}

// ---- where: operands (out, a, b, cond) ----

template <class S, class IT>
__global__ void __launch_bounds__(kThreads)
    where_map(IT n, Geom<4, IT> g, S *out, const S *a, const S *b, const uint8_t *cond) {
  const IT step = (IT)gridDim.x * blockDim.x;
  for (IT i = (IT)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    IT off[4];
    geom_offsets(g, i, off);
    out[off[0]] = cond[off[3]] ? a[off[1]] : b[off[2]];
  }
}

template <loom_dtype DT> loom_status where_kernel(const core_kctx *k) {
  using S = typename dt<DT>::S;
  const loom_tensor *out = k->out[0], *a = k->in[0], *b = k->in[1], *cond = k->in[2];
  if (a->dtype != DT || b->dtype != DT || out->dtype != DT ||
      (cond->dtype != LOOM_BOOL && cond->dtype != LOOM_U8))
    return core_set_error(LOOM_ERR_INVALID, "where: CUDA kernel for %s got a %s, b %s, cond %s, out %s",
                          loom_dtype_name(DT), loom_dtype_name(a->dtype), loom_dtype_name(b->dtype),
                          loom_dtype_name(cond->dtype), loom_dtype_name(out->dtype));
  loom_status st = check_same_shapes(k, 3);
  const int64_t n = core_numel(out);
  if (st || n == 0) return st;
  const int dev = kernel_device(k);
  if ((st = cuda_set_device(dev))) return st;
  const int64_t *strides[4] = {out->strides, a->strides, b->strides, cond->strides};
  GeomHost<4> g = geom_make<4>(out->shape, strides);
  S *po = static_cast<S *>(core_ptr(out));
  const S *pa = static_cast<const S *>(core_ptr(a)), *pb = static_cast<const S *>(core_ptr(b));
  const uint8_t *pc = static_cast<const uint8_t *>(core_ptr(cond));
  cudaStream_t stream = (cudaStream_t)k->stream;
  if (geom_fits32(g, n))
    where_map<<<grid_for(n, dev), kThreads, 0, stream>>>((uint32_t)n, geom_to<uint32_t>(g), po, pa, pb, pc);
  else
    where_map<<<grid_for(n, dev), kThreads, 0, stream>>>(n, geom_to<int64_t>(g), po, pa, pb, pc);
  return CUDA_CHECK_LAUNCH("where");
}

template <loom_dtype... DTs> void reg_where() {
  (core_register(LOOM_CUDA, CORE_OP_where, DTs, where_kernel<DTs>), ...);
}

}  // namespace

void cuda_register_binary(void) {
  reg_arith<Add, LOOM_FLOATS, LOOM_INTS, LOOM_U8>(CORE_OP_add);
  reg_arith<Sub, LOOM_FLOATS, LOOM_INTS, LOOM_U8>(CORE_OP_sub);
  reg_arith<Mul, LOOM_FLOATS, LOOM_INTS, LOOM_U8>(CORE_OP_mul);
  reg_arith<Div, LOOM_FLOATS>(CORE_OP_div);
  reg_arith<Pow, LOOM_FLOATS>(CORE_OP_pow);
  reg_arith<Maximum, LOOM_FLOATS, LOOM_INTS, LOOM_U8>(CORE_OP_maximum);
  reg_arith<Minimum, LOOM_FLOATS, LOOM_INTS, LOOM_U8>(CORE_OP_minimum);
  reg_pred<Eq, LOOM_ALL_DTYPES>(CORE_OP_eq);
  reg_pred<Ne, LOOM_ALL_DTYPES>(CORE_OP_ne);
  reg_pred<Lt, LOOM_ALL_DTYPES>(CORE_OP_lt);
  reg_pred<Le, LOOM_ALL_DTYPES>(CORE_OP_le);
  reg_pred<Gt, LOOM_ALL_DTYPES>(CORE_OP_gt);
  reg_pred<Ge, LOOM_ALL_DTYPES>(CORE_OP_ge);
  reg_pred<LogicalAnd, LOOM_ALL_DTYPES>(CORE_OP_logical_and);
  reg_pred<LogicalOr, LOOM_ALL_DTYPES>(CORE_OP_logical_or);
  reg_pred<LogicalXor, LOOM_ALL_DTYPES>(CORE_OP_logical_xor);
  reg_where<LOOM_ALL_DTYPES>();
}
