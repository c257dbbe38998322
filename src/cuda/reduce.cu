// Reductions of a contiguous [O, R, I] input over R: sum, and max / min with
// the index of the first extreme (NaN counts as the extreme). Accumulation
// in f32 for f16 / bf16 / f32, f64 for f64, i64 for integers. Every order of
// combination is fixed by the launch shape, so results are deterministic.
//   I == 1, short rows: one warp per row.
//   I == 1, long rows:  one block per row, or per (row, chunk) when there are
//                       too few rows to fill the GPU; chunk results are then
//                       reduced by a second, one-warp-per-row pass.
//   I > 1:              a block of (bx, by) threads per (row, bx columns), the
//                       by threads of a column striding over R; chunked the
//                       same way when there are too few outputs.
#include <stdint.h>

#include <limits>
#include <type_traits>

#include "cuda/kernels.cuh"

namespace {

enum Kind { kSum, kMax, kMin };

template <loom_dtype DT>
using acc_t = typename std::conditional<
    DT == LOOM_F64, double,
    typename std::conditional<std::is_floating_point<typename dt<DT>::C>::value, float, int64_t>::type>::type;

template <class A> struct Item {
  A v;
  int64_t i;
};

template <class A, int K> struct Reducer {
  static __host__ __device__ __forceinline__ Item<A> identity() {
    using L = std::numeric_limits<A>;
    if constexpr (K == kSum) return {A(0), 0};
    else if constexpr (K == kMax) return {L::has_infinity ? -L::infinity() : L::lowest(), INT64_MAX};
    else return {L::has_infinity ? L::infinity() : L::max(), INT64_MAX};
  }
  // Commutative and associative: NaN beats numbers, then the better value, then the lower index.
  static __host__ __device__ __forceinline__ Item<A> combine(Item<A> a, Item<A> b) {
    if constexpr (K == kSum) {
      return {a.v + b.v, 0};
    } else {
      bool an = is_nan(a.v), bn = is_nan(b.v);
      if (an != bn) return an ? a : b;
      if (!an) {
        if (K == kMax ? a.v > b.v : a.v < b.v) return a;
        if (K == kMax ? b.v > a.v : b.v < a.v) return b;
      }
      return a.i <= b.i ? a : b;
    }
  }
};

// Element `off` of the input, which is element r of its row.
template <loom_dtype DT, class A> struct InSrc {
  const typename dt<DT>::S *p;
  __device__ __forceinline__ Item<A> get(int64_t off, int64_t r) const { return {cvt<A>(dt<DT>::load(p[off])), r}; }
};
// A partial result of the first pass (ix NULL for sums).
template <class A> struct PartSrc {
  const A *v;
  const int64_t *ix;
  __device__ __forceinline__ Item<A> get(int64_t off, int64_t) const { return {v[off], ix ? ix[off] : 0}; }
};
// The op's outputs (values in any dtype; ix NULL for sums).
template <class A> struct OutDst {
  void *v;
  loom_dtype t;
  int64_t *ix;
  __device__ __forceinline__ void put(int64_t off, Item<A> it) const {
    store_as(v, off, t, it.v);
    if (ix) ix[off] = it.i;
  }
};
template <class A> struct PartDst {
  A *v;
  int64_t *ix;
  __device__ __forceinline__ void put(int64_t off, Item<A> it) const {
    v[off] = it.v;
    if (ix) ix[off] = it.i;
  }
};

template <class R, class A> __device__ __forceinline__ Item<A> warp_reduce(Item<A> x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    Item<A> y{__shfl_down_sync(0xffffffffu, x.v, o), __shfl_down_sync(0xffffffffu, x.i, o)};
    x = R::combine(x, y);
  }
  return x;
}

// out[o] for rows of length n, one warp per row.
template <class R, class A, class Src, class Dst>
__global__ void __launch_bounds__(kThreads) rows_warp(Src src, Dst dst, int64_t O, int64_t n) {
  const int lane = threadIdx.x % 32, wpb = blockDim.x / 32;
  for (int64_t o = (int64_t)blockIdx.x * wpb + threadIdx.x / 32; o < O; o += (int64_t)gridDim.x * wpb) {
    Item<A> acc = R::identity();
#pragma unroll 4
    for (int64_t r = lane; r < n; r += 32) acc = R::combine(acc, src.get(o * n + r, r));
    acc = warp_reduce<R>(acc);
    if (lane == 0) dst.put(o, acc);
  }
}

// out[o * C + c] for chunk c = blockIdx.y of each row, one block per (row, chunk).
template <class R, class A, class Src, class Dst>
__global__ void __launch_bounds__(kThreads) rows_block(Src src, Dst dst, int64_t O, int64_t n, int64_t chunk) {
  __shared__ A sv[32];
  __shared__ int64_t si[32];
  const int64_t c = blockIdx.y, C = gridDim.y, r0 = c * chunk, r1 = r0 + chunk < n ? r0 + chunk : n;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  for (int64_t o = blockIdx.x; o < O; o += gridDim.x) {
    Item<A> acc = R::identity();
#pragma unroll 4
    for (int64_t r = r0 + threadIdx.x; r < r1; r += blockDim.x) acc = R::combine(acc, src.get(o * n + r, r));
    acc = warp_reduce<R>(acc);
    if (lane == 0) {
      sv[warp] = acc.v;
      si[warp] = acc.i;
    }
    __syncthreads();
    if (warp == 0) {
      acc = lane < nwarps ? Item<A>{sv[lane], si[lane]} : R::identity();
      acc = warp_reduce<R>(acc);
      if (lane == 0) dst.put(o * C + c, acc);
    }
    __syncthreads();
  }
}

// out[(o * C + c) * I + i]: threads (tx, ty) of a block share column i and split chunk c of R.
template <class R, class A, class Src, class Dst>
__global__ void __launch_bounds__(kThreads)
    cols(Src src, Dst dst, int64_t O, int64_t n, int64_t I, int64_t chunk) {
  __shared__ A sv[kThreads];
  __shared__ int64_t si[kThreads];
  const int bx = blockDim.x, by = blockDim.y, tx = threadIdx.x, ty = threadIdx.y, t = ty * bx + tx;
  const int64_t c = blockIdx.y, C = gridDim.y, r0 = c * chunk, r1 = r0 + chunk < n ? r0 + chunk : n;
  const int64_t tiles = (I + bx - 1) / bx;
  for (int64_t b = blockIdx.x; b < O * tiles; b += gridDim.x) {
    const int64_t o = b / tiles, i = b % tiles * bx + tx;
    Item<A> acc = R::identity();
    if (i < I) {
#pragma unroll 4
      for (int64_t r = r0 + ty; r < r1; r += by) acc = R::combine(acc, src.get((o * n + r) * I + i, r));
    }
    sv[t] = acc.v;
    si[t] = acc.i;
    __syncthreads();
    for (int s = by / 2; s > 0; s /= 2) {
      if (ty < s) {
        acc = R::combine(acc, Item<A>{sv[t + s * bx], si[t + s * bx]});
        sv[t] = acc.v;
        si[t] = acc.i;
      }
      __syncthreads();
    }
    if (ty == 0 && i < I) dst.put((o * C + c) * I + i, acc);
    __syncthreads();
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Chunks to split R into so that about `target` blocks run, each chunk at least min_chunk long.
int64_t chunks_for(int64_t blocks, int64_t target, int64_t n, int64_t min_chunk) {
  if (blocks >= target || n <= min_chunk) return 1;
  int64_t c = ceil_div(target, blocks), most = ceil_div(n, min_chunk);
  return c < most ? c : most;
}

template <loom_dtype DT, int K> loom_status reduce_kernel(const core_kctx *k) {
  using A = acc_t<DT>;
  using R = Reducer<A, K>;
  const char *name = core_ops[k->op].name;
  const int64_t O = k->a.i[0], n = k->a.i[1], I = k->a.i[2];
  const loom_tensor *in = k->in[0], *out = k->out[0];
  if (O < 0 || n < 0 || I < 0 || core_numel(in) != O * n * I || in->dtype != DT)
    return core_set_error(LOOM_ERR_INVALID, "%s: input %s %s does not match [O, R, I] = [%lld, %lld, %lld] of %s",
                          name, loom_dtype_name(in->dtype), loom_shape_str(in->shape), (long long)O, (long long)n,
                          (long long)I, loom_dtype_name(DT));
  for (int j = 0; j < k->n_out; j++)
    if (core_numel(k->out[j]) != O * I || !core_is_contiguous(k->out[j]))
      return core_set_error(LOOM_ERR_INVALID, "%s: output %s is not a contiguous [O, I] = [%lld, %lld]", name,
                            loom_shape_str(k->out[j]->shape), (long long)O, (long long)I);
  if (!core_is_contiguous(in))
    return core_set_error(LOOM_ERR_INVALID, "%s: input %s must be contiguous", name, loom_shape_str(in->shape));
  if (K != kSum && (n == 0 || out->dtype != DT || k->out[1]->dtype != LOOM_I64))
    return core_set_error(LOOM_ERR_INVALID, "%s: needs a non-empty reduced dim and outputs %s, i64 (got R = %lld, %s, %s)",
                          name, loom_dtype_name(DT), (long long)n, loom_dtype_name(out->dtype),
                          loom_dtype_name(k->out[1]->dtype));
  if (O * I == 0) return LOOM_OK;
  const int dev = kernel_device(k);
  loom_status st = cuda_set_device(dev);
  if (st) return st;
  cudaStream_t stream = (cudaStream_t)k->stream;
  const int64_t target = (int64_t)cuda_sm_count(dev) * 8;  // blocks that fill the GPU

  InSrc<DT, A> src{static_cast<const typename dt<DT>::S *>(core_ptr(in))};
  OutDst<A> dst{core_ptr(out), out->dtype, K == kSum ? nullptr : static_cast<int64_t *>(core_ptr(k->out[1]))};
  if (I == 1 && n <= 512) {
    rows_warp<R, A><<<grid_for(O * 32, dev), kThreads, 0, stream>>>(src, dst, O, n);
    return CUDA_CHECK_LAUNCH(name);
  }

  // Shape of the first pass.
  dim3 block(kThreads), grid;
  int64_t C, base;
  if (I == 1) {
    base = O;
    C = chunks_for(base, target, n, 4096);
  } else {
    int bx = 1;
    while (bx < 32 && bx < I) bx *= 2;
    block = dim3(bx, kThreads / bx);
    base = O * ceil_div(I, bx);
    C = chunks_for(base, target, n, (int64_t)block.y * 4);
  }
  const int64_t chunk = ceil_div(n, C);
  C = n == 0 ? 1 : ceil_div(n, chunk);
  grid = dim3((unsigned)(base < target ? base : target), (unsigned)C);

  if (C == 1) {
    if (I == 1) rows_block<R, A><<<grid, block, 0, stream>>>(src, dst, O, n, chunk);
    else cols<R, A><<<grid, block, 0, stream>>>(src, dst, O, n, I, chunk);
    return CUDA_CHECK_LAUNCH(name);
  }
  // Two passes through partial results [O, C, I] from the pool (stream-ordered, so
  // freeing them right after the second launch is safe).
  const size_t np = (size_t)(O * C * I);
  A *pv = static_cast<A *>(cuda_alloc(dev, np * sizeof(A)));
  int64_t *pi = K == kSum || !pv ? nullptr : static_cast<int64_t *>(cuda_alloc(dev, np * sizeof(int64_t)));
  if (!pv || (K != kSum && !pi)) {
    cuda_free(dev, pv);
    return loom_last_status();
  }
  PartDst<A> pdst{pv, pi};
  PartSrc<A> psrc{pv, pi};
  if (I == 1) {
    rows_block<R, A><<<grid, block, 0, stream>>>(src, pdst, O, n, chunk);
    rows_warp<R, A><<<grid_for(O * 32, dev), kThreads, 0, stream>>>(psrc, dst, O, C);
  } else {
    cols<R, A><<<grid, block, 0, stream>>>(src, pdst, O, n, I, chunk);
    cols<R, A><<<dim3(grid.x, 1), block, 0, stream>>>(psrc, dst, O, C, I, C);
  }
  st = CUDA_CHECK_LAUNCH(name);
  cuda_free(dev, pv);
  cuda_free(dev, pi);
  return st;
}

template <loom_dtype... DTs> void reg() {
  (core_register(LOOM_CUDA, CORE_OP_sum, DTs, reduce_kernel<DTs, kSum>), ...);
  (core_register(LOOM_CUDA, CORE_OP_max, DTs, reduce_kernel<DTs, kMax>), ...);
  (core_register(LOOM_CUDA, CORE_OP_min, DTs, reduce_kernel<DTs, kMin>), ...);
}

}  // namespace

void cuda_register_reduce(void) { reg<LOOM_FLOATS, LOOM_INTS, LOOM_U8>(); }
