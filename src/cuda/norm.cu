// CUDA kernels of the norm family (layouts in src/core/ops_norm.def).
// Statistics and gradient sums are accumulated in A (float; double for f64),
// two passes (mean, then squared deviations) so f32 / f16 input does not lose
// the variance to cancellation. f32 batch norm goes to cuDNN (norm_cudnn.c);
// f16 / bf16 / f64 batch norm and all layer / group norm run here.
//   - rows (layer norm rows, group norm (sample, group) blocks): one block
//     per row, warp-shuffle + shared-memory reductions;
//   - batch norm channels and per-channel parameter gradients: one block per
//     channel striding over the N * S elements of that channel;
//   - layer norm weight / bias gradients: partial column sums over chunks of
//     rows into a workspace, then summed in a fixed order (deterministic).
#include "cuda/kernels.cuh"

// cuDNN batch norm for f32 (src/cuda/norm_cudnn.c).
extern "C" bool cuda_batch_norm_cudnn_fits(const core_kctx *k);
extern "C" loom_status cuda_batch_norm_cudnn(const core_kctx *k, bool backward);

namespace {

constexpr int kNormThreads = 256;
// Layer norm parameter gradients: chunks of at least kRowsPerChunk rows, at
// most kMaxChunks of them (more rows per chunk for large M). That keeps the
// grid's y dimension (<= 65535) and the workspace (chunks * 2K sums) bounded
// while (K / 256) * 1024 blocks still fill the GPU.
constexpr int64_t kRowsPerChunk = 64;
constexpr int64_t kMaxChunks = 1024;

template <class A> __device__ __forceinline__ A rsqrt_of(A v) { return (A)1 / m_sqrt(v); }

// Sum over the block of v (blockDim.x a multiple of 32, at most 1024); every thread gets it.
template <class A> __device__ A block_sum(A v) {
  __shared__ A part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int d = 16; d; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d);
  __syncthreads();  // part may still be read by a previous call
  if (lane == 0) part[warp] = v;
  __syncthreads();
  A t = lane < nw ? part[lane] : (A)0;
  for (int d = 16; d; d >>= 1) t += __shfl_xor_sync(0xffffffffu, t, d);
  return t;
}

// Which weight / bias element affects element i of a row: the column (layer
// norm, per = 1, c0 = 0) or the channel c0 + i / S (group norm, per = S).
struct Affine {
  int64_t per, c0;
  __device__ __forceinline__ int64_t at(int64_t i) const { return c0 + i / per; }
};

// ---- rows: layer norm ([M, K], affine per column) and group norm ([N*G, cg*S]) ----

template <loom_dtype DT, class A>
__global__ void rows_fwd(const typename dt<DT>::S *x, const typename dt<DT>::S *w, const typename dt<DT>::S *b,
                         typename dt<DT>::S *y, A *st, int64_t R, int64_t L, int64_t S, int64_t G, A eps) {
  const int64_t row = blockIdx.x;
  const typename dt<DT>::S *p = x + row * L;
  A s = 0;
  for (int64_t i = threadIdx.x; i < L; i += blockDim.x) s += (A)dt<DT>::load(p[i]);
  const A mean = block_sum(s) / (A)L;
  A q = 0;
  for (int64_t i = threadIdx.x; i < L; i += blockDim.x) {
    A d = (A)dt<DT>::load(p[i]) - mean;
    q += d * d;
  }
  const A r = rsqrt_of(block_sum(q) / (A)L + eps);
  if (threadIdx.x == 0) st[row] = mean, st[R + row] = r;
  const Affine af = {S, G ? row % G * (L / S) : 0};
  for (int64_t i = threadIdx.x; i < L; i += blockDim.x) {
    int64_t c = af.at(i);
    A v = ((A)dt<DT>::load(p[i]) - mean) * r * (A)dt<DT>::load(w[c]) + (A)dt<DT>::load(b[c]);
    y[row * L + i] = dt<DT>::store((typename dt<DT>::C)v);
  }
}

template <loom_dtype DT, class A>
__global__ void rows_bwd(const typename dt<DT>::S *dy, const typename dt<DT>::S *x, const typename dt<DT>::S *w,
                         const A *st, typename dt<DT>::S *dx, int64_t R, int64_t L, int64_t S, int64_t G) {
  const int64_t row = blockIdx.x;
  const typename dt<DT>::S *p = x + row * L, *g = dy + row * L;
  const A mean = st[row], r = st[R + row];
  const Affine af = {S, G ? row % G * (L / S) : 0};
  A s1 = 0, s2 = 0;
  for (int64_t i = threadIdx.x; i < L; i += blockDim.x) {
    A gh = (A)dt<DT>::load(g[i]) * (A)dt<DT>::load(w[af.at(i)]);
    s1 += gh;
    s2 += gh * ((A)dt<DT>::load(p[i]) - mean) * r;
  }
  s1 = block_sum(s1) / (A)L;
  s2 = block_sum(s2) / (A)L;
  for (int64_t i = threadIdx.x; i < L; i += blockDim.x) {
    A gh = (A)dt<DT>::load(g[i]) * (A)dt<DT>::load(w[af.at(i)]);
    A v = r * (gh - s1 - ((A)dt<DT>::load(p[i]) - mean) * r * s2);
    dx[row * L + i] = dt<DT>::store((typename dt<DT>::C)v);
  }
}

// Layer norm dweight / dbias, stage 1: part[chunk][0 / 1][k] over the `rows` rows of the chunk.
template <loom_dtype DT, class A>
__global__ void cols_partial(const typename dt<DT>::S *dy, const typename dt<DT>::S *x, const A *st, A *part,
                             int64_t M, int64_t K, int64_t rows) {
  const int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, chunk = blockIdx.y;
  if (k >= K) return;
  const int64_t m0 = chunk * rows, m1 = m0 + rows < M ? m0 + rows : M;
  A sw = 0, sb = 0;
  for (int64_t m = m0; m < m1; m++) {
    A g = (A)dt<DT>::load(dy[m * K + k]);
    sw += g * ((A)dt<DT>::load(x[m * K + k]) - st[m]) * st[M + m];
    sb += g;
  }
  part[(chunk * 2) * K + k] = sw;
  part[(chunk * 2 + 1) * K + k] = sb;
}

// Stage 2: dwb[j] = sum over chunks of part[chunk][j] (j over 2 * K), in order.
template <loom_dtype DT, class A>
__global__ void cols_finish(const A *part, typename dt<DT>::S *dwb, int64_t chunks, int64_t K) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < 2 * K; j += step) {
    A s = 0;
    for (int64_t c = 0; c < chunks; c++) s += part[c * 2 * K + j];
    dwb[j] = dt<DT>::store((typename dt<DT>::C)s);
  }
}

// ---- channels: batch norm, and group norm's per-channel parameter gradients ----

template <loom_dtype DT, class A>
__global__ void bn_fwd(const typename dt<DT>::S *x, const typename dt<DT>::S *w, const typename dt<DT>::S *b,
                       typename dt<DT>::S *y, A *st, int64_t N, int64_t C, int64_t S, A eps) {
  const int64_t c = blockIdx.x, n_el = N * S;
  A s = 0;
  for (int64_t i = threadIdx.x; i < n_el; i += blockDim.x) s += (A)dt<DT>::load(x[(i / S * C + c) * S + i % S]);
  const A mean = block_sum(s) / (A)n_el;
  A q = 0;
  for (int64_t i = threadIdx.x; i < n_el; i += blockDim.x) {
    A d = (A)dt<DT>::load(x[(i / S * C + c) * S + i % S]) - mean;
    q += d * d;
  }
  const A r = rsqrt_of(block_sum(q) / (A)n_el + eps);
  if (threadIdx.x == 0) st[c] = mean, st[C + c] = r;
  const A scale = r * (A)dt<DT>::load(w[c]), shift = (A)dt<DT>::load(b[c]) - mean * scale;
  for (int64_t i = threadIdx.x; i < n_el; i += blockDim.x) {
    int64_t o = (i / S * C + c) * S + i % S;
    y[o] = dt<DT>::store((typename dt<DT>::C)((A)dt<DT>::load(x[o]) * scale + shift));
  }
}

// Per channel c: dweight = sum dy * xhat, dbias = sum dy over (n, s). The
// statistics of element (n, c) are st[c] for batch norm (G == 0) and
// st[n * G + c / (C / G)] for group norm. With dx != nullptr (batch norm)
// also writes dx.
template <loom_dtype DT, class A>
__global__ void channel_bwd(const typename dt<DT>::S *dy, const typename dt<DT>::S *x, const typename dt<DT>::S *w,
                            const A *st, typename dt<DT>::S *dx, typename dt<DT>::S *dwb, int64_t N, int64_t C,
                            int64_t S, int64_t G) {
  const int64_t c = blockIdx.x, n_el = N * S;
  const int64_t nst = G ? N * G : C, cg = G ? C / G : 1;
  A sw = 0, sb = 0;
  for (int64_t i = threadIdx.x; i < n_el; i += blockDim.x) {
    const int64_t n = i / S, o = (n * C + c) * S + i % S, si = G ? n * G + c / cg : c;
    A g = (A)dt<DT>::load(dy[o]);
    sw += g * ((A)dt<DT>::load(x[o]) - st[si]) * st[nst + si];
    sb += g;
  }
  sw = block_sum(sw);
  sb = block_sum(sb);
  if (threadIdx.x == 0) {
    dwb[c] = dt<DT>::store((typename dt<DT>::C)sw);
    dwb[C + c] = dt<DT>::store((typename dt<DT>::C)sb);
  }
  if (!dx) return;
  const A mean = st[c], r = st[C + c], a = (A)dt<DT>::load(w[c]) * r;
  const A mdy = sb / (A)n_el, mdyx = sw / (A)n_el;
  for (int64_t i = threadIdx.x; i < n_el; i += blockDim.x) {
    const int64_t o = (i / S * C + c) * S + i % S;
    A v = a * ((A)dt<DT>::load(dy[o]) - mdy - ((A)dt<DT>::load(x[o]) - mean) * r * mdyx);
    dx[o] = dt<DT>::store((typename dt<DT>::C)v);
  }
}

// ---- host side ----

template <loom_dtype DT> using Acc = typename std::conditional<DT == LOOM_F64, double, float>::type;

template <loom_dtype DT> loom_status check(const core_kctx *k, int64_t n, int64_t P, int64_t G, bool bwd) {
  const char *name = core_ops[k->op].name;
  const loom_dtype sdt = DT == LOOM_F64 ? LOOM_F64 : LOOM_F32;
  const loom_tensor *st = bwd ? k->in[3] : k->out[1], *pw = bwd ? k->in[2] : k->in[1];
  bool ok = n >= 0 && P >= 0 && G >= 0 && core_numel(k->in[0]) == n && core_numel(k->out[0]) == n &&
            core_numel(pw) == P && core_numel(st) == 2 * G && st->dtype == sdt && k->out[0]->dtype == DT &&
            pw->dtype == DT;
  if (bwd) ok = ok && core_numel(k->in[1]) == n && core_numel(k->out[1]) == 2 * P && k->out[1]->dtype == DT &&
                k->in[1]->dtype == DT;
  else ok = ok && core_numel(k->in[2]) == P && k->in[2]->dtype == DT;
  for (int i = 0; i < k->n_in && ok; i++) ok = core_is_contiguous(k->in[i]);
  for (int i = 0; i < k->n_out && ok; i++) ok = core_is_contiguous(k->out[i]);
  if (!ok)
    return core_set_error(LOOM_ERR_INVALID, "%s: operands do not match %lld elements, %lld parameters, %lld statistics "
                          "(contiguous, %s; stats %s)", name, (long long)n, (long long)P, (long long)G,
                          loom_dtype_name(DT), loom_dtype_name(sdt));
  return LOOM_OK;
}

template <loom_dtype DT> struct Ptrs {
  using S = typename dt<DT>::S;
  static const S *in(const core_kctx *k, int i) { return static_cast<const S *>(core_ptr(k->in[i])); }
  static S *out(const core_kctx *k, int i) { return static_cast<S *>(core_ptr(k->out[i])); }
};

template <loom_dtype DT> loom_status batch_norm_kernel(const core_kctx *k) {
  using P = Ptrs<DT>;
  using A = Acc<DT>;
  const int64_t N = k->a.i[0], C = k->a.i[1], S = k->a.i[2];
  if (check<DT>(k, N * C * S, C, C, false)) return loom_last_status();
  if (C == 0) return LOOM_OK;
  if (loom_status st = cuda_set_device(kernel_device(k))) return st;
  if constexpr (DT == LOOM_F32)
    if (cuda_batch_norm_cudnn_fits(k)) return cuda_batch_norm_cudnn(k, false);
  bn_fwd<DT, A><<<(unsigned)C, kNormThreads, 0, (cudaStream_t)k->stream>>>(
      P::in(k, 0), P::in(k, 1), P::in(k, 2), P::out(k, 0), static_cast<A *>(core_ptr(k->out[1])), N, C, S,
      (A)k->a.f[0]);
  return CUDA_CHECK_LAUNCH("batch_norm");
}

template <loom_dtype DT> loom_status batch_norm_backward_kernel(const core_kctx *k) {
  using P = Ptrs<DT>;
  using A = Acc<DT>;
  const int64_t N = k->a.i[0], C = k->a.i[1], S = k->a.i[2];
  if (check<DT>(k, N * C * S, C, C, true)) return loom_last_status();
  if (C == 0) return LOOM_OK;
  if (loom_status st = cuda_set_device(kernel_device(k))) return st;
  if constexpr (DT == LOOM_F32)
    if (cuda_batch_norm_cudnn_fits(k)) return cuda_batch_norm_cudnn(k, true);
  channel_bwd<DT, A><<<(unsigned)C, kNormThreads, 0, (cudaStream_t)k->stream>>>(
      P::in(k, 0), P::in(k, 1), P::in(k, 2), static_cast<const A *>(core_ptr(k->in[3])), P::out(k, 0), P::out(k, 1),
      N, C, S, 0);
  return CUDA_CHECK_LAUNCH("batch_norm_backward");
}

// Threads per row block: enough warps for the row, at most kNormThreads.
inline int row_threads(int64_t L) { return L >= kNormThreads ? kNormThreads : (int)((L + 31) / 32 * 32); }

template <loom_dtype DT> loom_status layer_norm_kernel(const core_kctx *k) {
  using P = Ptrs<DT>;
  using A = Acc<DT>;
  const int64_t M = k->a.i[0], K = k->a.i[1];
  if (check<DT>(k, M * K, K, M, false)) return loom_last_status();
  if (M == 0 || K == 0) return LOOM_OK;
  if (M > INT32_MAX) return core_set_error(LOOM_ERR_INVALID, "layer_norm: %lld rows is too many", (long long)M);
  if (loom_status st = cuda_set_device(kernel_device(k))) return st;
  rows_fwd<DT, A><<<(unsigned)M, row_threads(K), 0, (cudaStream_t)k->stream>>>(
      P::in(k, 0), P::in(k, 1), P::in(k, 2), P::out(k, 0), static_cast<A *>(core_ptr(k->out[1])), M, K, 1, 0,
      (A)k->a.f[0]);
  return CUDA_CHECK_LAUNCH("layer_norm");
}

template <loom_dtype DT> loom_status layer_norm_backward_kernel(const core_kctx *k) {
  using P = Ptrs<DT>;
  using A = Acc<DT>;
  const int64_t M = k->a.i[0], K = k->a.i[1];
  if (check<DT>(k, M * K, K, M, true)) return loom_last_status();
  if (K == 0) return LOOM_OK;
  cudaStream_t stream = (cudaStream_t)k->stream;
  const int dev = kernel_device(k);
  const A *st = static_cast<const A *>(core_ptr(k->in[3]));
  if (loom_status s = cuda_set_device(dev)) return s;
  if (M == 0) return cuda_memset(dev, core_ptr(k->out[1]), 0, (size_t)(2 * K) * sizeof(typename dt<DT>::S));
  if (M > INT32_MAX) return core_set_error(LOOM_ERR_INVALID, "layer_norm_backward: %lld rows is too many", (long long)M);
  rows_bwd<DT, A><<<(unsigned)M, row_threads(K), 0, stream>>>(P::in(k, 0), P::in(k, 1), P::in(k, 2), st, P::out(k, 0),
                                                             M, K, 1, 0);
  loom_status s = CUDA_CHECK_LAUNCH("layer_norm_backward");
  if (s) return s;
  int64_t rows = (M + kMaxChunks - 1) / kMaxChunks;
  if (rows < kRowsPerChunk) rows = kRowsPerChunk;
  const int64_t chunks = (M + rows - 1) / rows;
  A *part = static_cast<A *>(cuda_alloc(dev, (size_t)(chunks * 2 * K) * sizeof(A)));
  if (!part) return loom_last_status();
  dim3 grid((unsigned)((K + kNormThreads - 1) / kNormThreads), (unsigned)chunks);
  cols_partial<DT, A><<<grid, kNormThreads, 0, stream>>>(P::in(k, 0), P::in(k, 1), st, part, M, K, rows);
  s = CUDA_CHECK_LAUNCH("layer_norm_backward");
  if (!s) {
    cols_finish<DT, A><<<grid_for(2 * K, dev), kThreads, 0, stream>>>(part, P::out(k, 1), chunks, K);
    s = CUDA_CHECK_LAUNCH("layer_norm_backward");
  }
  cuda_free(dev, part);  // stream-ordered reuse: later work on this stream runs after the kernels
  return s;
}

template <loom_dtype DT> loom_status group_norm_kernel(const core_kctx *k) {
  using P = Ptrs<DT>;
  using A = Acc<DT>;
  const int64_t N = k->a.i[0], C = k->a.i[1], S = k->a.i[2], G = k->a.i[3];
  if (G <= 0 || C % G) return core_set_error(LOOM_ERR_INVALID, "group_norm: %lld groups do not divide %lld channels",
                                             (long long)G, (long long)C);
  if (check<DT>(k, N * C * S, C, N * G, false)) return loom_last_status();
  if (N == 0 || S == 0) return LOOM_OK;
  if (N * G > INT32_MAX) return core_set_error(LOOM_ERR_INVALID, "group_norm: too many groups");
  if (loom_status st = cuda_set_device(kernel_device(k))) return st;
  const int64_t L = C / G * S;
  rows_fwd<DT, A><<<(unsigned)(N * G), row_threads(L), 0, (cudaStream_t)k->stream>>>(
      P::in(k, 0), P::in(k, 1), P::in(k, 2), P::out(k, 0), static_cast<A *>(core_ptr(k->out[1])), N * G, L, S, G,
      (A)k->a.f[0]);
  return CUDA_CHECK_LAUNCH("group_norm");
}

template <loom_dtype DT> loom_status group_norm_backward_kernel(const core_kctx *k) {
  using P = Ptrs<DT>;
  using A = Acc<DT>;
  const int64_t N = k->a.i[0], C = k->a.i[1], S = k->a.i[2], G = k->a.i[3];
  if (G <= 0 || C % G)
    return core_set_error(LOOM_ERR_INVALID, "group_norm_backward: %lld groups do not divide %lld channels",
                          (long long)G, (long long)C);
  if (check<DT>(k, N * C * S, C, N * G, true)) return loom_last_status();
  if (C == 0) return LOOM_OK;
  if (N * G > INT32_MAX) return core_set_error(LOOM_ERR_INVALID, "group_norm_backward: too many groups");
  if (loom_status st = cuda_set_device(kernel_device(k))) return st;
  cudaStream_t stream = (cudaStream_t)k->stream;
  const A *st = static_cast<const A *>(core_ptr(k->in[3]));
  const int64_t L = C / G * S;
  if (N * S > 0) {
    rows_bwd<DT, A><<<(unsigned)(N * G), row_threads(L), 0, stream>>>(P::in(k, 0), P::in(k, 1), P::in(k, 2), st,
                                                                     P::out(k, 0), N * G, L, S, G);
    loom_status s = CUDA_CHECK_LAUNCH("group_norm_backward");
    if (s) return s;
  }
  channel_bwd<DT, A><<<(unsigned)C, kNormThreads, 0, stream>>>(P::in(k, 0), P::in(k, 1), P::in(k, 2), st, nullptr,
                                                              P::out(k, 1), N, C, S, G);
  return CUDA_CHECK_LAUNCH("group_norm_backward");
}

template <loom_dtype DT, class A>
__global__ void channel_affine_k(const typename dt<DT>::S *x, const typename dt<DT>::S *sc,
                                 const typename dt<DT>::S *sh, typename dt<DT>::S *y, int64_t n, int64_t C,
                                 int64_t S) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t c = i / S % C;
    A v = (A)dt<DT>::load(x[i]) * (A)dt<DT>::load(sc[c]) + (A)dt<DT>::load(sh[c]);
    y[i] = dt<DT>::store((typename dt<DT>::C)v);
  }
}

template <loom_dtype DT> loom_status channel_affine_kernel(const core_kctx *k) {
  using P = Ptrs<DT>;
  const int64_t N = k->a.i[0], C = k->a.i[1], S = k->a.i[2], n = N * C * S;
  bool ok = N >= 0 && C >= 0 && S >= 0 && core_numel(k->in[0]) == n && core_numel(k->out[0]) == n &&
            core_numel(k->in[1]) == C && core_numel(k->in[2]) == C && k->out[0]->dtype == DT;
  for (int i = 1; i < 3 && ok; i++) ok = k->in[i]->dtype == DT;
  for (int i = 0; i < 3 && ok; i++) ok = core_is_contiguous(k->in[i]);
  if (!ok || !core_is_contiguous(k->out[0]))
    return core_set_error(LOOM_ERR_INVALID, "channel_affine: operands do not match x [%lld, %lld, %lld], scale and "
                          "shift [%lld] (contiguous, %s)", (long long)N, (long long)C, (long long)S, (long long)C,
                          loom_dtype_name(DT));
  if (n == 0) return LOOM_OK;
  if (loom_status st = cuda_set_device(kernel_device(k))) return st;
  const int64_t blocks = (n + 255) / 256;
  channel_affine_k<DT, Acc<DT>><<<(unsigned)(blocks < 65535 ? blocks : 65535), 256, 0, (cudaStream_t)k->stream>>>(
      P::in(k, 0), P::in(k, 1), P::in(k, 2), P::out(k, 0), n, C, S);
  return CUDA_CHECK_LAUNCH("channel_affine");
}

}  // namespace

#define LOOM_NORM_REGISTER(OP)                                                  \
  core_register(LOOM_CUDA, CORE_OP_##OP, LOOM_F32, OP##_kernel<LOOM_F32>);      \
  core_register(LOOM_CUDA, CORE_OP_##OP, LOOM_F64, OP##_kernel<LOOM_F64>);      \
  core_register(LOOM_CUDA, CORE_OP_##OP, LOOM_F16, OP##_kernel<LOOM_F16>);      \
  core_register(LOOM_CUDA, CORE_OP_##OP, LOOM_BF16, OP##_kernel<LOOM_BF16>);

void cuda_register_norm(void) {
  LOOM_NORM_REGISTER(batch_norm)
  LOOM_NORM_REGISTER(batch_norm_backward)
  LOOM_NORM_REGISTER(layer_norm)
  LOOM_NORM_REGISTER(layer_norm_backward)
  LOOM_NORM_REGISTER(group_norm)
  LOOM_NORM_REGISTER(group_norm_backward)
  LOOM_NORM_REGISTER(channel_affine)
}
