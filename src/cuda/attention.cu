// CUDA kernels of the attention family: fused scaled dot-product attention
// (layouts in src/core/ops_attention.def), flash-attention style. A block
// takes 32 query rows (or, for dk/dv, 32 keys) of one head; each row is
// handled by 4 neighbouring threads that hold 32 of its head dims each (dims
// c, c + 4, ...), so head dims up to 128 live in registers and a dot product
// is 32 FMAs and two shuffles. The other side (keys and values, or queries
// and output gradients) streams through shared memory in tiles of 32 rows,
// converted to f32. Softmax is online (running max and sum, f32); the
// backward recomputes the probabilities from the saved logsumexp, with one
// kernel for dq (per query tile) and one for dk / dv (per key tile, looping
// over the query heads sharing it), so no atomics: results are deterministic.
#include <limits>

#include "cuda/kernels.cuh"

namespace {

constexpr int kNS = 4;                   // threads per row
constexpr int kDPT = 32;                 // head dims per thread
constexpr int kMaxDim = kNS * kDPT;      // 128
constexpr int kRows = 32;                // rows per block
constexpr int kTile = 32;                // rows of the streamed side per tile
constexpr int kBlock = kRows * kNS;      // 128 threads
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Params {
  int64_t B, Hq, Hkv, L, S, E, Ev;
  int64_t ms[4];  // mask strides over [B, Hq, L, S]
  float scale;
  bool causal, has_mask;
};

__device__ __forceinline__ float group_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  x += __shfl_xor_sync(0xffffffffu, x, 2);
  return x;
}

// This thread's share of dot(a, row) over n dims (a in registers, row in shared memory).
__device__ __forceinline__ float part_dot(const float (&a)[kDPT], const float *row, int c, int64_t n) {
  float s = 0;
#pragma unroll
  for (int u = 0; u < kDPT; u++)
    if (c + kNS * u < n) s += a[u] * row[c + kNS * u];
  return s;
}

// Score of (query i, key j), -inf when masked. i, j in range.
__device__ __forceinline__ float masked_score(const Params &p, const float *mask, int64_t b, int64_t h, int64_t i,
                                              int64_t j, float dot) {
  if (p.causal && j > i) return kNegInf;
  float s = dot * p.scale;
  if (p.has_mask) s += mask[b * p.ms[0] + h * p.ms[1] + i * p.ms[2] + j * p.ms[3]];
  return s;
}

// Loads rows [r0, r0 + kTile) of a [rows, stride] matrix (columns [col, col + n)) into tile as f32; zeros past the end.
template <loom_dtype DT>
__device__ __forceinline__ void load_tile(float (*tile)[kMaxDim], const typename dt<DT>::S *base, int64_t r0,
                                          int64_t rows, int64_t stride, int64_t col, int64_t n) {
  for (int64_t x = threadIdx.x; x < kTile * n; x += kBlock) {
    int64_t r = x / n, e = x - r * n;
    tile[r][e] = r0 + r < rows ? (float)dt<DT>::load(base[(r0 + r) * stride + col + e]) : 0.f;
  }
}

// ---- forward: grid (B * Hq, ceil(L / kRows)) ----
template <loom_dtype DT>
__global__ void __launch_bounds__(kBlock) sdpa_fwd(const typename dt<DT>::S *q, const typename dt<DT>::S *k,
                                                   const typename dt<DT>::S *v, const float *mask,
                                                   typename dt<DT>::S *out, float *lse, Params p) {
  __shared__ float ks[kTile][kMaxDim], vs[kTile][kMaxDim];
  const int r = threadIdx.x / kNS, c = threadIdx.x % kNS;
  const int64_t bh = blockIdx.x, b = bh / p.Hq, h = bh % p.Hq, kvh = b * p.Hkv + h / (p.Hq / p.Hkv);
  const int64_t i = (int64_t)blockIdx.y * kRows + r, ic = i < p.L ? i : p.L - 1;
  const int64_t last = min((int64_t)blockIdx.y * kRows + kRows, p.L) - 1;
  const int64_t jend = p.causal ? min(p.S, last + 1) : p.S;
  float qr[kDPT], acc[kDPT];
#pragma unroll
  for (int u = 0; u < kDPT; u++) {
    int64_t e = c + kNS * u;
    qr[u] = e < p.E ? (float)dt<DT>::load(q[(bh * p.L + ic) * p.E + e]) : 0.f;
    acc[u] = 0;
  }
  float m = kNegInf, l = 0;
  for (int64_t j0 = 0; j0 < jend; j0 += kTile) {
    __syncthreads();
    load_tile<DT>(ks, k + kvh * p.S * p.E, j0, p.S, p.E, 0, p.E);
    load_tile<DT>(vs, v + kvh * p.S * p.Ev, j0, p.S, p.Ev, 0, p.Ev);
    __syncthreads();
    float s[kTile], bm = kNegInf;
#pragma unroll
    for (int jj = 0; jj < kTile; jj++) {
      float d = group_sum(part_dot(qr, ks[jj], c, p.E));
      s[jj] = j0 + jj < p.S ? masked_score(p, mask, b, h, ic, j0 + jj, d) : kNegInf;
      bm = fmaxf(bm, s[jj]);
    }
    if (bm == kNegInf) continue;  // every key of the tile masked for this row
    if (bm > m) {
      float corr = m == kNegInf ? 0.f : __expf(m - bm);
      l *= corr;
#pragma unroll
      for (int u = 0; u < kDPT; u++) acc[u] *= corr;
      m = bm;
    }
#pragma unroll
    for (int jj = 0; jj < kTile; jj++) {
      float pj = __expf(s[jj] - m);
      l += pj;
#pragma unroll
      for (int u = 0; u < kDPT; u++) acc[u] += pj * vs[jj][c + kNS * u];
    }
  }
  if (i >= p.L) return;
#pragma unroll
  for (int u = 0; u < kDPT; u++) {
    int64_t e = c + kNS * u;
    if (e < p.Ev) out[(bh * p.L + i) * p.Ev + e] = dt<DT>::store(l > 0 ? acc[u] / l : 0.f);
  }
  if (c == 0) lse[bh * p.L + i] = l > 0 ? m + logf(l) : kNegInf;
}

// ---- backward, dq: grid (B * Hq, ceil(L / kRows)) ----
template <loom_dtype DT>
__global__ void __launch_bounds__(kBlock) sdpa_bwd_dq(const typename dt<DT>::S *qdo, const typename dt<DT>::S *kv,
                                                      const float *stats, const float *mask,
                                                      typename dt<DT>::S *dq, Params p) {
  __shared__ float ks[kTile][kMaxDim], vs[kTile][kMaxDim];
  const int r = threadIdx.x / kNS, c = threadIdx.x % kNS;
  const int64_t W = p.E + p.Ev;
  const int64_t bh = blockIdx.x, b = bh / p.Hq, h = bh % p.Hq, kvh = b * p.Hkv + h / (p.Hq / p.Hkv);
  const int64_t i = (int64_t)blockIdx.y * kRows + r, ic = i < p.L ? i : p.L - 1;
  const int64_t last = min((int64_t)blockIdx.y * kRows + kRows, p.L) - 1;
  const int64_t jend = p.causal ? min(p.S, last + 1) : p.S;
  float qr[kDPT], dor[kDPT], g[kDPT];
#pragma unroll
  for (int u = 0; u < kDPT; u++) {
    int64_t e = c + kNS * u;
    const typename dt<DT>::S *row = qdo + (bh * p.L + ic) * W;
    qr[u] = e < p.E ? (float)dt<DT>::load(row[e]) : 0.f;
    dor[u] = e < p.Ev ? (float)dt<DT>::load(row[p.E + e]) : 0.f;
    g[u] = 0;
  }
  const float lse = stats[(bh * p.L + ic) * 2], D = stats[(bh * p.L + ic) * 2 + 1];
  for (int64_t j0 = 0; j0 < jend; j0 += kTile) {
    __syncthreads();
    load_tile<DT>(ks, kv + kvh * p.S * W, j0, p.S, W, 0, p.E);
    load_tile<DT>(vs, kv + kvh * p.S * W, j0, p.S, W, p.E, p.Ev);
    __syncthreads();
#pragma unroll 4
    for (int jj = 0; jj < kTile; jj++) {
      float d = group_sum(part_dot(qr, ks[jj], c, p.E));
      float dp = group_sum(part_dot(dor, vs[jj], c, p.Ev));
      float s = j0 + jj < p.S ? masked_score(p, mask, b, h, ic, j0 + jj, d) : kNegInf;
      float pj = s == kNegInf || lse == kNegInf ? 0.f : __expf(s - lse);
      float ds = pj * (dp - D);
#pragma unroll
      for (int u = 0; u < kDPT; u++) g[u] += ds * ks[jj][c + kNS * u];
    }
  }
  if (i >= p.L) return;
#pragma unroll
  for (int u = 0; u < kDPT; u++) {
    int64_t e = c + kNS * u;
    if (e < p.E) dq[(bh * p.L + i) * p.E + e] = dt<DT>::store(g[u] * p.scale);
  }
}

// ---- backward, dk and dv: grid (B * Hkv, ceil(S / kRows)) ----
template <loom_dtype DT>
__global__ void __launch_bounds__(kBlock) sdpa_bwd_dkv(const typename dt<DT>::S *qdo, const typename dt<DT>::S *kv,
                                                       const float *stats, const float *mask,
                                                       typename dt<DT>::S *dkv, Params p) {
  __shared__ float qs[kTile][kMaxDim], ds_[kTile][kMaxDim];
  __shared__ float lse_s[kTile], d_s[kTile];
  const int r = threadIdx.x / kNS, c = threadIdx.x % kNS;
  const int64_t W = p.E + p.Ev, grp = p.Hq / p.Hkv;
  const int64_t bk = blockIdx.x, b = bk / p.Hkv, hk = bk % p.Hkv;
  const int64_t j = (int64_t)blockIdx.y * kRows + r, jc = j < p.S ? j : p.S - 1;
  float kr[kDPT], vr[kDPT], gk[kDPT], gv[kDPT];
#pragma unroll
  for (int u = 0; u < kDPT; u++) {
    int64_t e = c + kNS * u;
    const typename dt<DT>::S *row = kv + (bk * p.S + jc) * W;
    kr[u] = e < p.E ? (float)dt<DT>::load(row[e]) : 0.f;
    vr[u] = e < p.Ev ? (float)dt<DT>::load(row[p.E + e]) : 0.f;
    gk[u] = gv[u] = 0;
  }
  // with a causal mask, queries before the block's first key see none of its keys
  const int64_t istart = p.causal ? min((int64_t)blockIdx.y * kRows, p.L) : 0;
  for (int64_t h = hk * grp; h < (hk + 1) * grp; h++) {
    const int64_t bh = b * p.Hq + h;
    for (int64_t i0 = istart; i0 < p.L; i0 += kTile) {
      __syncthreads();
      load_tile<DT>(qs, qdo + bh * p.L * W, i0, p.L, W, 0, p.E);
      load_tile<DT>(ds_, qdo + bh * p.L * W, i0, p.L, W, p.E, p.Ev);
      if (threadIdx.x < kTile) {
        int64_t i = i0 + threadIdx.x;
        lse_s[threadIdx.x] = i < p.L ? stats[(bh * p.L + i) * 2] : kNegInf;
        d_s[threadIdx.x] = i < p.L ? stats[(bh * p.L + i) * 2 + 1] : 0.f;
      }
      __syncthreads();
#pragma unroll 4
      for (int ii = 0; ii < kTile; ii++) {
        const int64_t i = i0 + ii;
        float d = group_sum(part_dot(kr, qs[ii], c, p.E));
        float dp = group_sum(part_dot(vr, ds_[ii], c, p.Ev));
        float lse = lse_s[ii];
        float s = i < p.L && j < p.S ? masked_score(p, mask, b, h, i, jc, d) : kNegInf;
        float pj = s == kNegInf || lse == kNegInf ? 0.f : __expf(s - lse);
        float gs = pj * (dp - d_s[ii]);
#pragma unroll
        for (int u = 0; u < kDPT; u++) {
          gv[u] += pj * ds_[ii][c + kNS * u];
          gk[u] += gs * qs[ii][c + kNS * u];
        }
      }
    }
  }
  if (j >= p.S) return;
  typename dt<DT>::S *row = dkv + (bk * p.S + j) * W;
#pragma unroll
  for (int u = 0; u < kDPT; u++) {
    int64_t e = c + kNS * u;
    if (e < p.E) row[e] = dt<DT>::store(gk[u] * p.scale);
    if (e < p.Ev) row[p.E + e] = dt<DT>::store(gv[u]);
  }
}

// ---- host side ----

loom_status bad_numel(const core_kctx *k, const char *what, const loom_tensor *t, int64_t want) {
  return core_set_error(LOOM_ERR_INVALID, "%s: %s has shape %s, expected %lld elements", core_ops[k->op].name, what,
                        loom_shape_str(t->shape), (long long)want);
}

// Reads the attributes and checks the tensors against them; fwd selects the sdpa or sdpa_backward layout.
loom_status get_params(const core_kctx *k, bool fwd, Params *p) {
  const char *name = core_ops[k->op].name;
  const core_attrs &a = k->a;
  *p = Params{a.i[0], a.i[1], a.i[2], a.i[3], a.i[4], a.i[5], a.i[6], {0, 0, 0, 0}, (float)a.f[0],
              (a.i[7] & 1) != 0, (a.i[7] & 2) != 0};
  if (p->B < 0 || p->Hq < 0 || p->Hkv <= 0 || p->L < 0 || p->S < 0 || p->E < 0 || p->Ev < 0 || p->Hq % p->Hkv)
    return core_set_error(LOOM_ERR_INVALID, "%s: bad sizes", name);
  if (p->E > kMaxDim || p->Ev > kMaxDim)
    return core_set_error(LOOM_ERR_UNSUPPORTED, "%s: CUDA kernel supports head dims up to %d, got E = %lld, Ev = %lld",
                          name, kMaxDim, (long long)p->E, (long long)p->Ev);
  if ((p->L + kRows - 1) / kRows > 65535 || (p->S + kRows - 1) / kRows > 65535)
    return core_set_error(LOOM_ERR_UNSUPPORTED, "%s: sequence too long for the CUDA kernel", name);
  const int64_t W = p->E + p->Ev, BQ = p->B * p->Hq * p->L, BK = p->B * p->Hkv * p->S;
  if (fwd) {
    if (core_numel(k->in[0]) != BQ * p->E) return bad_numel(k, "q", k->in[0], BQ * p->E);
    if (core_numel(k->in[1]) != BK * p->E) return bad_numel(k, "k", k->in[1], BK * p->E);
    if (core_numel(k->in[2]) != BK * p->Ev) return bad_numel(k, "v", k->in[2], BK * p->Ev);
    if (core_numel(k->out[0]) != BQ * p->Ev) return bad_numel(k, "out", k->out[0], BQ * p->Ev);
    if (core_numel(k->out[1]) != BQ) return bad_numel(k, "lse", k->out[1], BQ);
  } else {
    if (core_numel(k->in[0]) != BQ * W) return bad_numel(k, "qdo", k->in[0], BQ * W);
    if (core_numel(k->in[1]) != BK * W) return bad_numel(k, "kv", k->in[1], BK * W);
    if (core_numel(k->in[2]) != BQ * 2) return bad_numel(k, "stats", k->in[2], BQ * 2);
    if (core_numel(k->out[0]) != BQ * p->E) return bad_numel(k, "dq", k->out[0], BQ * p->E);
    if (core_numel(k->out[1]) != BK * W) return bad_numel(k, "dkv", k->out[1], BK * W);
  }
  const loom_dtype dt0 = k->in[0]->dtype;
  const loom_tensor *want_dt[] = {k->in[1], fwd ? k->in[2] : k->out[1], k->out[0]};
  for (const loom_tensor *t : want_dt)
    if (t->dtype != dt0) return core_set_error(LOOM_ERR_INVALID, "%s: tensors must share one dtype", name);
  const loom_tensor *f32s[] = {fwd ? k->out[1] : k->in[2], k->in[3]};
  for (const loom_tensor *t : f32s)
    if (t->dtype != LOOM_F32) return core_set_error(LOOM_ERR_INVALID, "%s: lse / stats / mask must be f32", name);
  const loom_tensor *contig[] = {k->in[0], k->in[1], k->in[2], k->out[0], k->out[1]};
  for (const loom_tensor *t : contig)
    if (!core_is_contiguous(t)) return core_set_error(LOOM_ERR_INVALID, "%s: tensors must be contiguous", name);
  if (p->has_mask) {
    const loom_tensor *m = k->in[3];
    if (m->shape.ndim != 4 || m->shape.d[0] != p->B || m->shape.d[1] != p->Hq || m->shape.d[2] != p->L ||
        m->shape.d[3] != p->S)
      return core_set_error(LOOM_ERR_INVALID, "%s: mask has shape %s, expected [%lld, %lld, %lld, %lld]", name,
                            loom_shape_str(m->shape), (long long)p->B, (long long)p->Hq, (long long)p->L,
                            (long long)p->S);
    for (int d = 0; d < 4; d++) p->ms[d] = m->strides[d];
  }
  return LOOM_OK;
}

template <loom_dtype DT> loom_status sdpa_kernel(const core_kctx *k) {
  using S = typename dt<DT>::S;
  Params p;
  if (get_params(k, true, &p)) return loom_last_status();
  if (p.B * p.Hq == 0 || p.L == 0) return LOOM_OK;
  if (loom_status st = cuda_set_device(kernel_device(k))) return st;  /* the stream's device */
  cudaStream_t stream = (cudaStream_t)k->stream;
  dim3 grid((unsigned)(p.B * p.Hq), (unsigned)((p.L + kRows - 1) / kRows));
  sdpa_fwd<DT><<<grid, kBlock, 0, stream>>>(static_cast<const S *>(core_ptr(k->in[0])),
                                            static_cast<const S *>(core_ptr(k->in[1])),
                                            static_cast<const S *>(core_ptr(k->in[2])),
                                            static_cast<const float *>(core_ptr(k->in[3])),
                                            static_cast<S *>(core_ptr(k->out[0])),
                                            static_cast<float *>(core_ptr(k->out[1])), p);
  return CUDA_CHECK_LAUNCH("sdpa");
}

template <loom_dtype DT> loom_status sdpa_backward_kernel(const core_kctx *k) {
  using S = typename dt<DT>::S;
  Params p;
  if (get_params(k, false, &p)) return loom_last_status();
  if (loom_status st = cuda_set_device(kernel_device(k))) return st;  /* the stream's device */
  cudaStream_t stream = (cudaStream_t)k->stream;
  const S *qdo = static_cast<const S *>(core_ptr(k->in[0])), *kv = static_cast<const S *>(core_ptr(k->in[1]));
  const float *stats = static_cast<const float *>(core_ptr(k->in[2])), *mask = static_cast<const float *>(core_ptr(k->in[3]));
  if (p.B * p.Hq > 0 && p.L > 0) {
    dim3 grid((unsigned)(p.B * p.Hq), (unsigned)((p.L + kRows - 1) / kRows));
    sdpa_bwd_dq<DT><<<grid, kBlock, 0, stream>>>(qdo, kv, stats, mask, static_cast<S *>(core_ptr(k->out[0])), p);
    if (CUDA_CHECK_LAUNCH("sdpa_backward (dq)")) return loom_last_status();
  }
  if (p.B * p.Hkv > 0 && p.S > 0) {
    dim3 grid((unsigned)(p.B * p.Hkv), (unsigned)((p.S + kRows - 1) / kRows));
    sdpa_bwd_dkv<DT><<<grid, kBlock, 0, stream>>>(qdo, kv, stats, mask, static_cast<S *>(core_ptr(k->out[1])), p);
    if (CUDA_CHECK_LAUNCH("sdpa_backward (dk, dv)")) return loom_last_status();
  }
  return LOOM_OK;
}

}  // namespace

void cuda_register_attention(void) {
  core_register(LOOM_CUDA, CORE_OP_sdpa, LOOM_F32, sdpa_kernel<LOOM_F32>);
  core_register(LOOM_CUDA, CORE_OP_sdpa, LOOM_F16, sdpa_kernel<LOOM_F16>);
  core_register(LOOM_CUDA, CORE_OP_sdpa, LOOM_BF16, sdpa_kernel<LOOM_BF16>);
  core_register(LOOM_CUDA, CORE_OP_sdpa_backward, LOOM_F32, sdpa_backward_kernel<LOOM_F32>);
  core_register(LOOM_CUDA, CORE_OP_sdpa_backward, LOOM_F16, sdpa_backward_kernel<LOOM_F16>);
  core_register(LOOM_CUDA, CORE_OP_sdpa_backward, LOOM_BF16, sdpa_backward_kernel<LOOM_BF16>);
}
