// copy (with a cast between any two dtypes, any strides on both sides),
// fill and arange.
#include <math.h>

#include "cuda/map.cuh"

namespace {

struct Identity {
  template <class T> __device__ T operator()(T x) const { return x; }
};

// out = in element by element as raw bits: same-dtype copies keep NaN
// payloads and bool bytes as they are, as on the CPU.
template <class T, class IT>
__global__ void __launch_bounds__(kThreads) move_map(IT n, Geom<2, IT> g, T *out, const T *in) {
  const IT step = (IT)gridDim.x * blockDim.x;
  for (IT i = (IT)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    IT off[2];
    geom_offsets(g, i, off);
    out[off[0]] = in[off[1]];
  }
}

template <class T> loom_status move_bits(const core_kctx *k) {
  const loom_tensor *in = k->in[0], *out = k->out[0];
  loom_status st = check_same_shapes(k, 1);
  const int64_t n = core_numel(out);
  if (st || n == 0) return st;
  const int dev = kernel_device(k);
  if ((st = cuda_set_device(dev))) return st;
  const int64_t *strides[2] = {out->strides, in->strides};
  GeomHost<2> g = geom_make<2>(out->shape, strides);
  T *po = static_cast<T *>(core_ptr(out));
  const T *pi = static_cast<const T *>(core_ptr(in));
  cudaStream_t stream = (cudaStream_t)k->stream;
  if (geom_contiguous(g))
    return CUDA_CHECK(cudaMemcpyAsync(po, pi, (size_t)n * sizeof(T), cudaMemcpyDeviceToDevice, stream));
  if (geom_fits32(g, n))
    move_map<<<grid_for(n, dev), kThreads, 0, stream>>>((uint32_t)n, geom_to<uint32_t>(g), po, pi);
  else
    move_map<<<grid_for(n, dev), kThreads, 0, stream>>>(n, geom_to<int64_t>(g), po, pi);
  return CUDA_CHECK_LAUNCH("copy");
}

template <loom_dtype DTI, loom_dtype DTO> loom_status copy_typed(const core_kctx *k) {
  if constexpr (DTI == DTO)
    return move_bits<typename Bits<sizeof(typename dt<DTI>::S)>::T>(k);
  else
    return map_launch<DTI, DTO, 1>(k, Identity{});
}

template <loom_dtype DTI> loom_status copy_from(const core_kctx *k) {
  switch (k->out[0]->dtype) {
    case LOOM_F32: return copy_typed<DTI, LOOM_F32>(k);
    case LOOM_F64: return copy_typed<DTI, LOOM_F64>(k);
    case LOOM_F16: return copy_typed<DTI, LOOM_F16>(k);
    case LOOM_BF16: return copy_typed<DTI, LOOM_BF16>(k);
    case LOOM_I32: return copy_typed<DTI, LOOM_I32>(k);
    case LOOM_I64: return copy_typed<DTI, LOOM_I64>(k);
    case LOOM_U8: return copy_typed<DTI, LOOM_U8>(k);
    case LOOM_BOOL: return copy_typed<DTI, LOOM_BOOL>(k);
    default: break;
  }
  return core_set_error(LOOM_ERR_UNSUPPORTED, "copy: bad output dtype %d on CUDA", (int)k->out[0]->dtype);
}

loom_status copy_kernel(const core_kctx *k) {
  switch (k->in[0]->dtype) {
    case LOOM_F32: return copy_from<LOOM_F32>(k);
    case LOOM_F64: return copy_from<LOOM_F64>(k);
    case LOOM_F16: return copy_from<LOOM_F16>(k);
    case LOOM_BF16: return copy_from<LOOM_BF16>(k);
    case LOOM_I32: return copy_from<LOOM_I32>(k);
    case LOOM_I64: return copy_from<LOOM_I64>(k);
    case LOOM_U8: return copy_from<LOOM_U8>(k);
    case LOOM_BOOL: return copy_from<LOOM_BOOL>(k);
    default: break;
  }
  return core_set_error(LOOM_ERR_UNSUPPORTED, "copy: bad input dtype %d on CUDA", (int)k->in[0]->dtype);
}

// ---- fill and arange: out[i] = gen(i) for the logical index i, any strides ----

struct FillGen {
  double value;
  __device__ double operator()(int64_t) const { return value; }
};
struct ArangeGen {
  double start, step;
  __device__ double operator()(int64_t i) const { return m_add_mul(start, (double)i, step); }
};

template <loom_dtype DT, class IT, class G>
__global__ void __launch_bounds__(kThreads) generate(IT n, Geom<1, IT> g, typename dt<DT>::S *out, G gen) {
  using C = typename dt<DT>::C;
  const IT step = (IT)gridDim.x * blockDim.x;
  for (IT i = (IT)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    IT off[1];
    geom_offsets(g, i, off);
    out[off[0]] = dt<DT>::store(cvt<C>(gen((int64_t)i)));
  }
}

template <loom_dtype DT, class G> loom_status generate_launch(const core_kctx *k, G gen) {
  const loom_tensor *out = k->out[0];
  const int64_t n = core_numel(out);
  if (n == 0) return LOOM_OK;
  const int dev = kernel_device(k);
  loom_status st = cuda_set_device(dev);
  if (st) return st;
  const int64_t *strides[1] = {out->strides};
  GeomHost<1> g = geom_make<1>(out->shape, strides);
  auto *p = static_cast<typename dt<DT>::S *>(core_ptr(out));
  cudaStream_t stream = (cudaStream_t)k->stream;
  if (geom_fits32(g, n))
    generate<DT><<<grid_for(n, dev), kThreads, 0, stream>>>((uint32_t)n, geom_to<uint32_t>(g), p, gen);
  else
    generate<DT><<<grid_for(n, dev), kThreads, 0, stream>>>(n, geom_to<int64_t>(g), p, gen);
  return CUDA_CHECK_LAUNCH(core_ops[k->op].name);
}

template <loom_dtype DT> loom_status fill_kernel(const core_kctx *k) {
  const loom_tensor *out = k->out[0];
  const double value = k->a.f[0];
  if (value == 0.0 && !signbit(value) && core_is_contiguous(out)) { // all-zero bytes
    size_t nbytes = (size_t)core_numel(out) * sizeof(typename dt<DT>::S);
    if (nbytes == 0) return LOOM_OK;
    loom_status st = cuda_set_device(kernel_device(k));
    if (st) return st;
    return CUDA_CHECK(cudaMemsetAsync(core_ptr(out), 0, nbytes, (cudaStream_t)k->stream));
  }
  return generate_launch<DT>(k, FillGen{value});
}

template <loom_dtype DT> loom_status arange_kernel(const core_kctx *k) {
  return generate_launch<DT>(k, ArangeGen{k->a.f[0], k->a.f[1]});
}

template <loom_dtype... DTs> void register_all() {
  (core_register(LOOM_CUDA, CORE_OP_copy, DTs, copy_kernel), ...);
  (core_register(LOOM_CUDA, CORE_OP_fill, DTs, fill_kernel<DTs>), ...);
}

template <loom_dtype... DTs> void register_arange() {
  (core_register(LOOM_CUDA, CORE_OP_arange, DTs, arange_kernel<DTs>), ...);
}

}  // namespace

void cuda_register_copy(void) {
  register_all<LOOM_ALL_DTYPES>();
  register_arange<LOOM_FLOATS, LOOM_INTS, LOOM_U8>();
}
