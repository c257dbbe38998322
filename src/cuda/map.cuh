// Elementwise map: out = f(in[0], ..., in[NIN-1]) over tensors of one shape
// with any strides (0 = broadcast). Inputs share dtype DTI; the output has
// dtype DTO. When every operand is dense the kernel moves 16 bytes per
// operand per load/store where the pointers allow it.
#ifndef LOOM_CUDA_MAP_CUH
#define LOOM_CUDA_MAP_CUH

#include "cuda/kernels.cuh"

template <class T, int V> struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

template <class S, int NIN> struct Ptrs {
  const S *p[NIN];
};

template <class F, class C> __device__ __forceinline__ auto map_call(const F &f, const C (&x)[1]) {
  return f(x[0]);
}
template <class F, class C> __device__ __forceinline__ auto map_call(const F &f, const C (&x)[2]) {
  return f(x[0], x[1]);
}

template <loom_dtype DTI, loom_dtype DTO, int NIN, int V, class F>
__global__ void __launch_bounds__(kThreads)
    map_dense(int64_t n, typename dt<DTO>::S *__restrict__ out, Ptrs<typename dt<DTI>::S, NIN> in, F f) {
  using SI = typename dt<DTI>::S;
  using SO = typename dt<DTO>::S;
  using CI = typename dt<DTI>::C;
  using CO = typename dt<DTO>::C;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t nvec = n / V;
  for (int64_t v = tid; v < nvec; v += step) {
    Vec<SI, V> x[NIN];
#pragma unroll
    for (int k = 0; k < NIN; k++) x[k] = reinterpret_cast<const Vec<SI, V> *>(in.p[k])[v];
    Vec<SO, V> y;
#pragma unroll
    for (int j = 0; j < V; j++) {
      CI a[NIN];
#pragma unroll
      for (int k = 0; k < NIN; k++) a[k] = dt<DTI>::load(x[k].v[j]);
      y.v[j] = dt<DTO>::store(cvt<CO>(map_call(f, a)));
    }
    reinterpret_cast<Vec<SO, V> *>(out)[v] = y;
  }
  for (int64_t i = nvec * V + tid; i < n; i += step) {
    CI a[NIN];
#pragma unroll
    for (int k = 0; k < NIN; k++) a[k] = dt<DTI>::load(in.p[k][i]);
    out[i] = dt<DTO>::store(cvt<CO>(map_call(f, a)));
  }
}

template <loom_dtype DTI, loom_dtype DTO, int NIN, class IT, class F>
__global__ void __launch_bounds__(kThreads)
    map_strided(IT n, Geom<NIN + 1, IT> g, typename dt<DTO>::S *out, Ptrs<typename dt<DTI>::S, NIN> in, F f) {
  using CI = typename dt<DTI>::C;
  using CO = typename dt<DTO>::C;
  const IT step = (IT)gridDim.x * blockDim.x;
  for (IT i = (IT)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    IT off[NIN + 1];
    geom_offsets(g, i, off);
    CI a[NIN];
#pragma unroll
    for (int k = 0; k < NIN; k++) a[k] = dt<DTI>::load(in.p[k][off[k + 1]]);
    out[off[0]] = dt<DTO>::store(cvt<CO>(map_call(f, a)));
  }
}

// Runs the map for kernel context k (out[0], in[0..NIN-1]) on k's stream.
template <loom_dtype DTI, loom_dtype DTO, int NIN, class F> loom_status map_launch(const core_kctx *k, F f) {
  using SI = typename dt<DTI>::S;
  using SO = typename dt<DTO>::S;
  const loom_tensor *out = k->out[0];
  bool dtypes_ok = out->dtype == DTO;
  for (int i = 0; i < NIN; i++) dtypes_ok = dtypes_ok && k->in[i]->dtype == DTI;
  if (!dtypes_ok)
    return core_set_error(LOOM_ERR_INVALID, "%s: CUDA kernel for %s inputs got %s -> %s",
                          core_ops[k->op].name, loom_dtype_name(DTI), loom_dtype_name(k->in[0]->dtype),
                          loom_dtype_name(out->dtype));
  loom_status st = check_same_shapes(k, NIN);
  const int64_t n = core_numel(out);
  if (st || n == 0) return st;
  const int dev = kernel_device(k);
  if ((st = cuda_set_device(dev))) return st;
  cudaStream_t stream = (cudaStream_t)k->stream;

  const int64_t *strides[NIN + 1] = {out->strides};
  Ptrs<SI, NIN> in;
  for (int i = 0; i < NIN; i++) {
    strides[i + 1] = k->in[i]->strides;
    in.p[i] = static_cast<const SI *>(core_ptr(k->in[i]));
  }
  SO *po = static_cast<SO *>(core_ptr(out));
  GeomHost<NIN + 1> g = geom_make<NIN + 1>(out->shape, strides);

  if (geom_contiguous(g)) {
    constexpr int V = 16 / (sizeof(SI) > sizeof(SO) ? sizeof(SI) : sizeof(SO));
    bool vec = aligned_to(po, sizeof(SO) * V);
    for (int i = 0; i < NIN; i++) vec = vec && aligned_to(in.p[i], sizeof(SI) * V);
    if (vec)
      map_dense<DTI, DTO, NIN, V><<<grid_for(n / V + 1, dev), kThreads, 0, stream>>>(n, po, in, f);
    else
      map_dense<DTI, DTO, NIN, 1><<<grid_for(n, dev), kThreads, 0, stream>>>(n, po, in, f);
  } else if (geom_fits32(g, n)) {
    map_strided<DTI, DTO, NIN><<<grid_for(n, dev), kThreads, 0, stream>>>(
        (uint32_t)n, geom_to<uint32_t>(g), po, in, f);
  } else {
    map_strided<DTI, DTO, NIN><<<grid_for(n, dev), kThreads, 0, stream>>>(n, geom_to<int64_t>(g), po,
                                                                          in, f);
  }
  return CUDA_CHECK_LAUNCH(core_ops[k->op].name);
}

#endif
