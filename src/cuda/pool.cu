// CUDA pooling kernels: max_pool2d (plain or adaptive), avg_pool2d (optional
// divisor_override) and avg_pool2d_backward over
// contiguous [N, C, H, W] planes (f32, f64, f16, bf16; sums in f32, f64 for
// f64), and max_pool2d_backward. Own kernels rather than cuDNN's pooling, which has no ceil_mode and
// another padding rule for averages. One thread per output element; the
// average-pool gradient is one thread per input element summing the windows
// that cover it, so it is deterministic (no atomics). Windows follow PyTorch
// (src/core/conv_window.h, shared with the CPU kernels).
#include "core/conv_window.h"
#include "cuda/kernels.cuh"

namespace {

// i[0..7] as in src/core/ops_conv.def; f: max_pool2d adaptive flag or avg_pool2d divisor_override (0 = none).
struct PoolAttrs {
  int64_t a[8];
  double f;
};

template <loom_dtype DT, class A>
__global__ void max_pool_kernel(const typename dt<DT>::S *x, typename dt<DT>::S *y, int64_t *idx, int64_t total,
                                int64_t H, int64_t W, int64_t Ho, int64_t Wo, PoolAttrs p) {
  const int64_t *a = p.a;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
    int64_t ow = t % Wo, oh = t / Wo % Ho, plane = t / (Wo * Ho);
    const typename dt<DT>::S *xp = x + plane * H * W;
    int64_t h0, nh, dh, w0, nw, dw, best = -1;
    conv_max_window(a, p.f != 0, 0, oh, H, Ho, &h0, &nh, &dh);
    conv_max_window(a, p.f != 0, 1, ow, W, Wo, &w0, &nw, &dw);
    A m = 0;
    for (int64_t i = 0; i < nh; i++) {
      int64_t ih = h0 + i * dh;
      if (ih < 0 || ih >= H) continue;
      for (int64_t j = 0; j < nw; j++) {
        int64_t iw = w0 + j * dw;
        if (iw < 0 || iw >= W) continue;
        A v = (A)dt<DT>::load(xp[ih * W + iw]);
        if (best < 0 || v > m || is_nan(v)) m = v, best = ih * W + iw;  // a NaN wins, as in PyTorch
      }
    }
    y[t] = dt<DT>::store((typename dt<DT>::C)m);
    idx[t] = best < 0 ? 0 : best;
  }
}

template <loom_dtype DT, class A>
__global__ void avg_pool_kernel(const typename dt<DT>::S *x, typename dt<DT>::S *y, int64_t total, int64_t H,
                                int64_t W, int64_t Ho, int64_t Wo, PoolAttrs p) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
    int64_t ow = t % Wo, oh = t / Wo % Ho, plane = t / (Wo * Ho), h0, h1, w0, w1;
    int64_t cnt = conv_avg_window(p.a, 0, oh, H, Ho, &h0, &h1) * conv_avg_window(p.a, 1, ow, W, Wo, &w0, &w1);
    const typename dt<DT>::S *xp = x + plane * H * W;
    A s = 0;
    for (int64_t ih = h0; ih < h1; ih++)
      for (int64_t iw = w0; iw < w1; iw++) s += (A)dt<DT>::load(xp[ih * W + iw]);
    y[t] = dt<DT>::store((typename dt<DT>::C)(cnt > 0 ? s / (p.f != 0 ? (A)p.f : (A)cnt) : (A)0));
  }
}

// Outputs [lo, hi] along one dim whose windows may cover input i (checked exactly by the caller).
__device__ __forceinline__ void covering(const int64_t *a, int j, int64_t i, int64_t n_in, int64_t n_out,
                                         int64_t *lo, int64_t *hi) {
  if (a[7]) {
    *lo = i * n_out / n_in;
    *hi = ((i + 1) * n_out + n_in - 1) / n_in - 1;
  } else {
    int64_t t = i + a[4 + j] - a[j] + 1;
    *lo = t <= 0 ? 0 : (t + a[2 + j] - 1) / a[2 + j];
    *hi = (i + a[4 + j]) / a[2 + j];
  }
  if (*hi > n_out - 1) *hi = n_out - 1;
}

template <loom_dtype DT, class A>
__global__ void avg_pool_backward_kernel(const typename dt<DT>::S *gy, typename dt<DT>::S *gx, int64_t total,
                                         int64_t H, int64_t W, int64_t Ho, int64_t Wo, PoolAttrs p) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
    int64_t iw = t % W, ih = t / W % H, plane = t / (W * H), oh0, oh1, ow0, ow1;
    covering(p.a, 0, ih, H, Ho, &oh0, &oh1);
    covering(p.a, 1, iw, W, Wo, &ow0, &ow1);
    const typename dt<DT>::S *gp = gy + plane * Ho * Wo;
    A s = 0;
    for (int64_t oh = oh0; oh <= oh1; oh++) {
      int64_t h0, h1, ch = conv_avg_window(p.a, 0, oh, H, Ho, &h0, &h1);
      if (ih < h0 || ih >= h1) continue;
      for (int64_t ow = ow0; ow <= ow1; ow++) {
        int64_t w0, w1, cw = conv_avg_window(p.a, 1, ow, W, Wo, &w0, &w1);
        if (iw < w0 || iw >= w1 || ch * cw <= 0) continue;
        s += (A)dt<DT>::load(gp[oh * Wo + ow]) / (p.f != 0 ? (A)p.f : (A)(ch * cw));
      }
    }
    gx[t] = dt<DT>::store((typename dt<DT>::C)s);
  }
}

// Outputs [lo, hi] along one dim whose max-pool windows may hold input i
// (kernel, stride, padding, dilation; or adaptive windows).
__device__ __forceinline__ void covering_max(const int64_t *a, bool adaptive, int j, int64_t i, int64_t n_in,
                                             int64_t n_out, int64_t *lo, int64_t *hi) {
  if (adaptive) {
    *lo = i * n_out / n_in;
    *hi = ((i + 1) * n_out + n_in - 1) / n_in - 1;
  } else {
    int64_t t = i + a[4 + j] - a[6 + j] * (a[j] - 1);  // window start of the first output reaching i
    *lo = t <= 0 ? 0 : (t + a[2 + j] - 1) / a[2 + j];
    *hi = (i + a[4 + j]) / a[2 + j];
  }
  if (*hi > n_out - 1) *hi = n_out - 1;
}

// One thread per input element summing, in output order, the gradients of the
// outputs whose saved index is this element: deterministic, no atomics. The
// indices are max_pool2d's own; one outside the plane matches no element, so
// it adds nothing (memory-safe without a check).
template <loom_dtype DT, class A>
__global__ void max_pool_backward_kernel(const typename dt<DT>::S *gy, const int64_t *idx, typename dt<DT>::S *gx,
                                         int64_t total, int64_t H, int64_t W, int64_t Ho, int64_t Wo, PoolAttrs p) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
    int64_t iw = t % W, ih = t / W % H, plane = t / (W * H), oh0, oh1, ow0, ow1, self = ih * W + iw;
    covering_max(p.a, p.f != 0, 0, ih, H, Ho, &oh0, &oh1);
    covering_max(p.a, p.f != 0, 1, iw, W, Wo, &ow0, &ow1);
    const typename dt<DT>::S *gp = gy + plane * Ho * Wo;
    const int64_t *ip = idx + plane * Ho * Wo;
    A s = 0;
    for (int64_t oh = oh0; oh <= oh1; oh++)
      for (int64_t ow = ow0; ow <= ow1; ow++)
        if (ip[oh * Wo + ow] == self) s += (A)dt<DT>::load(gp[oh * Wo + ow]);
    gx[t] = dt<DT>::store((typename dt<DT>::C)s);
  }
}

// x / y: contiguous 4-d of one dtype with the same N and C.
loom_status check_planes(const core_kctx *k, const loom_tensor *x, const loom_tensor *y) {
  const char *op = core_ops[k->op].name;
  if (x->shape.ndim != 4 || y->shape.ndim != 4 || x->shape.d[0] != y->shape.d[0] || x->shape.d[1] != y->shape.d[1] ||
      x->dtype != y->dtype || !core_is_contiguous(x) || !core_is_contiguous(y))
    return core_set_error(LOOM_ERR_INVALID, "%s: expected contiguous [N, C, H, W] operands of one dtype, got %s %s and %s %s",
                          op, loom_dtype_name(x->dtype), loom_shape_str(x->shape), loom_dtype_name(y->dtype),
                          loom_shape_str(y->shape));
  bool is_max = k->op == CORE_OP_max_pool2d || k->op == CORE_OP_max_pool2d_backward, adaptive = !is_max && k->a.i[7];
  for (int j = 0; j < 4 && !adaptive; j++)
    if (k->a.i[j] < 1) return core_set_error(LOOM_ERR_INVALID, "%s: kernel and stride must be positive", op);
  if (is_max && (k->a.i[6] < 1 || k->a.i[7] < 1 || k->a.i[4] < 0 || k->a.i[5] < 0))
    return core_set_error(LOOM_ERR_INVALID, "%s: bad padding or dilation", op);
  return LOOM_OK;
}

PoolAttrs attrs_of(const core_kctx *k) {
  PoolAttrs p;
  for (int i = 0; i < 8; i++) p.a[i] = k->a.i[i];
  p.f = k->a.f[0];
  return p;
}

template <loom_dtype DT> loom_status max_pool2d(const core_kctx *k) {
  using S = typename dt<DT>::S;
  using A = typename std::conditional<DT == LOOM_F64, double, float>::type;
  const loom_tensor *x = k->in[0], *y = k->out[0];
  if (loom_status st = check_planes(k, x, y)) return st;
  if (k->out[1]->dtype != LOOM_I64 || !loom_shape_equal(k->out[1]->shape, y->shape))
    return core_set_error(LOOM_ERR_INVALID, "max_pool2d: indices must be i64 of the output's shape");
  const int64_t total = core_numel(y);
  if (total == 0) return LOOM_OK;
  const int dev = kernel_device(k);
  if (loom_status st = cuda_set_device(dev)) return st;  /* the stream's device */
  max_pool_kernel<DT, A><<<grid_for(total, dev), kThreads, 0, (cudaStream_t)k->stream>>>(
      static_cast<const S *>(core_ptr(x)), static_cast<S *>(core_ptr(y)), static_cast<int64_t *>(core_ptr(k->out[1])),
      total, x->shape.d[2], x->shape.d[3], y->shape.d[2], y->shape.d[3], attrs_of(k));
  return CUDA_CHECK_LAUNCH("max_pool2d");
}

template <loom_dtype DT> loom_status avg_pool2d(const core_kctx *k) {
  using S = typename dt<DT>::S;
  using A = typename std::conditional<DT == LOOM_F64, double, float>::type;
  const loom_tensor *x = k->in[0], *y = k->out[0];
  if (loom_status st = check_planes(k, x, y)) return st;
  const int64_t total = core_numel(y);
  if (total == 0) return LOOM_OK;
  const int dev = kernel_device(k);
  if (loom_status st = cuda_set_device(dev)) return st;  /* the stream's device */
  avg_pool_kernel<DT, A><<<grid_for(total, dev), kThreads, 0, (cudaStream_t)k->stream>>>(
      static_cast<const S *>(core_ptr(x)), static_cast<S *>(core_ptr(y)), total, x->shape.d[2], x->shape.d[3],
      y->shape.d[2], y->shape.d[3], attrs_of(k));
  return CUDA_CHECK_LAUNCH("avg_pool2d");
}

template <loom_dtype DT> loom_status avg_pool2d_backward(const core_kctx *k) {
  using S = typename dt<DT>::S;
  using A = typename std::conditional<DT == LOOM_F64, double, float>::type;
  const loom_tensor *gy = k->in[0], *gx = k->out[0];
  if (loom_status st = check_planes(k, gx, gy)) return st;
  const int64_t total = core_numel(gx);
  if (total == 0) return LOOM_OK;
  const int dev = kernel_device(k);
  if (loom_status st = cuda_set_device(dev)) return st;  /* the stream's device */
  avg_pool_backward_kernel<DT, A><<<grid_for(total, dev), kThreads, 0, (cudaStream_t)k->stream>>>(
      static_cast<const S *>(core_ptr(gy)), static_cast<S *>(core_ptr(gx)), total, gx->shape.d[2], gx->shape.d[3],
      gy->shape.d[2], gy->shape.d[3], attrs_of(k));
  return CUDA_CHECK_LAUNCH("avg_pool2d_backward");
}

template <loom_dtype DT> loom_status max_pool2d_backward(const core_kctx *k) {
  using S = typename dt<DT>::S;
  using A = typename std::conditional<DT == LOOM_F64, double, float>::type;
  const loom_tensor *gy = k->in[0], *idx = k->in[1], *gx = k->out[0];
  if (loom_status st = check_planes(k, gx, gy)) return st;
  if (idx->dtype != LOOM_I64 || !loom_shape_equal(idx->shape, gy->shape) || !core_is_contiguous(idx))
    return core_set_error(LOOM_ERR_INVALID, "max_pool2d_backward: indices must be contiguous i64 of the gradient's "
                          "shape %s, got %s %s", loom_shape_str(gy->shape), loom_dtype_name(idx->dtype),
                          loom_shape_str(idx->shape));
  const int64_t total = core_numel(gx);
  if (total == 0) return LOOM_OK;
  const int dev = kernel_device(k);
  if (loom_status st = cuda_set_device(dev)) return st;  /* the stream's device */
  max_pool_backward_kernel<DT, A><<<grid_for(total, dev), kThreads, 0, (cudaStream_t)k->stream>>>(
      static_cast<const S *>(core_ptr(gy)), static_cast<const int64_t *>(core_ptr(idx)), static_cast<S *>(core_ptr(gx)),
      total, gx->shape.d[2], gx->shape.d[3], gy->shape.d[2], gy->shape.d[3], attrs_of(k));
  return CUDA_CHECK_LAUNCH("max_pool2d_backward");
}

template <loom_dtype DT> void register_dtype() {
  core_register(LOOM_CUDA, CORE_OP_max_pool2d_backward, DT, max_pool2d_backward<DT>);
  core_register(LOOM_CUDA, CORE_OP_max_pool2d, DT, max_pool2d<DT>);
  core_register(LOOM_CUDA, CORE_OP_avg_pool2d, DT, avg_pool2d<DT>);
  core_register(LOOM_CUDA, CORE_OP_avg_pool2d_backward, DT, avg_pool2d_backward<DT>);
}

}  // namespace

void cuda_register_pool(void) {
  register_dtype<LOOM_F32>();
  register_dtype<LOOM_F64>();
  register_dtype<LOOM_F16>();
  register_dtype<LOOM_BF16>();
}
