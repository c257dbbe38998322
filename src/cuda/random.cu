// uniform, normal and randint from the Philox mapping of src/core/philox.h,
// so that CUDA draws exactly the numbers the CPU draws. One thread per
// Philox counter: 4 elements (uniform, randint) or 2 (normal).
#include <type_traits>

#include "core/philox.h"
#include "cuda/kernels.cuh"

namespace {

// The maths runs in T = double for f64 and float otherwise, as on the CPU.
template <loom_dtype DT> using math_t = typename std::conditional<DT == LOOM_F64, double, float>::type;

template <loom_dtype DT> struct Uniform {
  static constexpr int kPerCounter = 4;
  math_t<DT> lo, span;
  __device__ math_t<DT> operator()(const core_u32x4 &r, int m) const {
    return m_add_mul(lo, (math_t<DT>)core_u01(r.v[m]), span);
  }
};

template <loom_dtype DT> struct Normal {
  static constexpr int kPerCounter = 2;
  math_t<DT> mean, std;
  __device__ math_t<DT> operator()(const core_u32x4 &r, int m) const {
    using T = math_t<DT>;
    const T two_pi = (T)6.283185307179586476925;
    T u0 = (T)core_u01_open0(r.v[2 * m]), u1 = (T)core_u01(r.v[2 * m + 1]);
    T z = m_sqrt((T)-2 * m_log(u0)) * m_cos(two_pi * u1);
    return m_add_mul(mean, z, std);
  }
};

struct Randint {
  static constexpr int kPerCounter = 4;
  int64_t low;
  uint64_t range;
  __device__ int64_t operator()(const core_u32x4 &r, int m) const {
    return low + (int64_t)((uint64_t)r.v[m] % range);
  }
};

template <loom_dtype DT, class IT, class G>
__global__ void __launch_bounds__(kThreads)
    draw(IT n, Geom<1, IT> g, typename dt<DT>::S *out, uint64_t seed, uint64_t offset, G gen) {
  using C = typename dt<DT>::C;
  constexpr int P = G::kPerCounter;
  const IT counters = (n + P - 1) / P, step = (IT)gridDim.x * blockDim.x;
  for (IT c = (IT)blockIdx.x * blockDim.x + threadIdx.x; c < counters; c += step) {
    core_u32x4 r = core_philox(seed, offset + (uint64_t)c);
#pragma unroll
    for (int m = 0; m < P; m++) {
      IT i = c * P + m, off[1];
      if (i >= n) break;
      geom_offsets(g, i, off);
      out[off[0]] = dt<DT>::store(cvt<C>(gen(r, m)));
    }
  }
}

template <loom_dtype DT, class G> loom_status draw_launch(const core_kctx *k, G gen) {
  const loom_tensor *out = k->out[0];
  const int64_t n = core_numel(out);
  if (n == 0) return LOOM_OK;
  const int dev = kernel_device(k);
  loom_status st = cuda_set_device(dev);
  if (st) return st;
  const int64_t *strides[1] = {out->strides};
  GeomHost<1> g = geom_make<1>(out->shape, strides);
  auto *p = static_cast<typename dt<DT>::S *>(core_ptr(out));
  const uint64_t seed = (uint64_t)k->a.i[0], offset = (uint64_t)k->a.i[1];
  const int64_t counters = (n + G::kPerCounter - 1) / G::kPerCounter;
  cudaStream_t stream = (cudaStream_t)k->stream;
  if (geom_fits32(g, n))
    draw<DT><<<grid_for(counters, dev), kThreads, 0, stream>>>((uint32_t)n, geom_to<uint32_t>(g), p, seed,
                                                              offset, gen);
  else
    draw<DT><<<grid_for(counters, dev), kThreads, 0, stream>>>(n, geom_to<int64_t>(g), p, seed, offset, gen);
  return CUDA_CHECK_LAUNCH(core_ops[k->op].name);
}

template <loom_dtype DT> loom_status uniform_kernel(const core_kctx *k) {
  using T = math_t<DT>;
  const T lo = (T)k->a.f[0];
  return draw_launch<DT>(k, Uniform<DT>{lo, (T)k->a.f[1] - lo});
}

template <loom_dtype DT> loom_status normal_kernel(const core_kctx *k) {
  using T = math_t<DT>;
  return draw_launch<DT>(k, Normal<DT>{(T)k->a.f[0], (T)k->a.f[1]});
}

template <loom_dtype DT> loom_status randint_kernel(const core_kctx *k) {
  const int64_t low = k->a.i[2], high = k->a.i[3];
  if (high <= low)
    return core_set_error(LOOM_ERR_INVALID, "randint: empty range [%lld, %lld)", (long long)low,
                          (long long)high);
  return draw_launch<DT>(k, Randint{low, (uint64_t)high - (uint64_t)low});
}

template <loom_dtype... DTs> void register_floats() {
  (core_register(LOOM_CUDA, CORE_OP_uniform, DTs, uniform_kernel<DTs>), ...);
  (core_register(LOOM_CUDA, CORE_OP_normal, DTs, normal_kernel<DTs>), ...);
}

template <loom_dtype... DTs> void register_randint() {
  (core_register(LOOM_CUDA, CORE_OP_randint, DTs, randint_kernel<DTs>), ...);
}

}  // namespace

void cuda_register_random(void) {
  register_floats<LOOM_FLOATS>();
  register_randint<LOOM_FLOATS, LOOM_INTS, LOOM_U8>();
}
