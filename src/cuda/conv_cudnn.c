/* The conv2d kernel ops through cuDNN's legacy API (cuDNN 9):
 * cudnnConvolutionForward / BackwardData / BackwardFilter, NCHW, groups via
 * the convolution descriptor. The algorithm is cuDNN's heuristic choice
 * (cudnnGet*Algorithm_v7), skipping non-deterministic ones in
 * loom_deterministic() mode and ones whose workspace cannot be had. Math:
 * tensor cores for f16 / bf16 (f32 accumulation), and for f32 only when
 * loom_tf32() is on (otherwise FMA math: no TF32 rounding); f64 as is.
 * The workspace comes from the device's caching allocator, freed
 * stream-ordered after the call. */
#include <limits.h>

#include <cuda_runtime.h>
#include <cudnn.h>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_util.h"

typedef enum { DIR_FWD, DIR_BWD_DATA, DIR_BWD_FILTER } conv_dir;

typedef struct conv_descs {
  cudnnTensorDescriptor_t x, y;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
} conv_descs;

static bool data_type(loom_dtype dt, cudnnDataType_t *data, cudnnDataType_t *compute, cudnnMathType_t *math) {
  switch (dt) {
    case LOOM_F32:
      *data = *compute = CUDNN_DATA_FLOAT;
      *math = loom_tf32() ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
      return true;
    case LOOM_F64: *data = *compute = CUDNN_DATA_DOUBLE, *math = CUDNN_DEFAULT_MATH; return true;
    case LOOM_F16: *data = CUDNN_DATA_HALF, *compute = CUDNN_DATA_FLOAT, *math = CUDNN_TENSOR_OP_MATH; return true;
    case LOOM_BF16: *data = CUDNN_DATA_BFLOAT16, *compute = CUDNN_DATA_FLOAT, *math = CUDNN_TENSOR_OP_MATH; return true;
    default: return false;
  }
}

static void destroy_descs(conv_descs *d) {
  if (d->x) cudnnDestroyTensorDescriptor(d->x);
  if (d->y) cudnnDestroyTensorDescriptor(d->y);
  if (d->w) cudnnDestroyFilterDescriptor(d->w);
  if (d->conv) cudnnDestroyConvolutionDescriptor(d->conv);
}

static bool fits_int(const loom_tensor *t) {
  for (int i = 0; i < t->shape.ndim; i++)
    if (t->shape.d[i] > INT_MAX) return false;
  return core_numel(t) <= INT_MAX;
}

static loom_status make_descs(const core_kctx *k, const loom_tensor *x, const loom_tensor *w, const loom_tensor *y,
                              conv_descs *d) {
  const char *op = core_ops[k->op].name;
  cudnnDataType_t data, compute;
  cudnnMathType_t math;
  if (x->dtype != w->dtype || x->dtype != y->dtype || !data_type(x->dtype, &data, &compute, &math))
    return core_set_error(LOOM_ERR_UNSUPPORTED, "%s: CUDA supports f32, f64, f16 and bf16 (got %s, %s, %s)", op,
                          loom_dtype_name(x->dtype), loom_dtype_name(w->dtype), loom_dtype_name(y->dtype));
  if (x->shape.ndim != 4 || w->shape.ndim != 4 || y->shape.ndim != 4 || !core_is_contiguous(x) ||
      !core_is_contiguous(w) || !core_is_contiguous(y) || !fits_int(x) || !fits_int(w) || !fits_int(y))
    return core_set_error(LOOM_ERR_INVALID, "%s: cuDNN needs contiguous 4-d operands under 2^31 elements "
                          "(x %s, w %s, y %s)", op, loom_shape_str(x->shape), loom_shape_str(w->shape),
                          loom_shape_str(y->shape));
  const int64_t *a = k->a.i;
  for (int i = 0; i < 7; i++)
    if (a[i] < (i == 2 || i == 3 ? 0 : 1) || a[i] > INT_MAX)
      return core_set_error(LOOM_ERR_INVALID, "%s: bad stride / padding / dilation / groups", op);
  const int64_t *xs = x->shape.d, *ws = w->shape.d, *ys = y->shape.d;
  loom_status st;
  if ((st = CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->x))) || (st = CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->y))) ||
      (st = CUDNN_CHECK(cudnnCreateFilterDescriptor(&d->w))) ||
      (st = CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d->conv))))
    return st;
  if ((st = CUDNN_CHECK(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, data, (int)xs[0], (int)xs[1], (int)xs[2],
                                                   (int)xs[3]))) ||
      (st = CUDNN_CHECK(cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, data, (int)ys[0], (int)ys[1], (int)ys[2],
                                                   (int)ys[3]))) ||
      (st = CUDNN_CHECK(cudnnSetFilter4dDescriptor(d->w, data, CUDNN_TENSOR_NCHW, (int)ws[0], (int)ws[1], (int)ws[2],
                                                   (int)ws[3]))) ||
      (st = CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d->conv, (int)a[2], (int)a[3], (int)a[0], (int)a[1], (int)a[4],
                                                        (int)a[5], CUDNN_CROSS_CORRELATION, compute))) ||
      (st = CUDNN_CHECK(cudnnSetConvolutionGroupCount(d->conv, (int)a[6]))) ||
      (st = CUDNN_CHECK(cudnnSetConvolutionMathType(d->conv, math))))
    return st;
  /* cuDNN's own output size must be the one Loom computed */
  int n, c, h, wd;
  if ((st = CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(d->conv, d->x, d->w, &n, &c, &h, &wd)))) return st;
  if (n != ys[0] || c != ys[1] || h != ys[2] || wd != ys[3])
    return core_set_error(LOOM_ERR_INVALID, "%s: output %s does not match cuDNN's [%d, %d, %d, %d]", op,
                          loom_shape_str(y->shape), n, c, h, wd);
  return LOOM_OK;
}

#define MAX_ALGOS 16

/* One direction: the heuristic list, then the first usable algorithm run. */
static loom_status run_dir(cudnnHandle_t h, int dev, conv_dir dir, const conv_descs *d, const loom_tensor *x,
                           const loom_tensor *w, const loom_tensor *y) {
  int algos[MAX_ALGOS], n_algos = 0, count = 0;
  loom_status st = LOOM_OK;
  if (dir == DIR_FWD) {
    cudnnConvolutionFwdAlgoPerf_t perf[MAX_ALGOS];
    st = CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, d->x, d->w, d->conv, d->y, MAX_ALGOS, &count, perf));
    for (int i = 0; !st && i < count; i++)
      if (perf[i].status == CUDNN_STATUS_SUCCESS && (!loom_deterministic() || perf[i].determinism == CUDNN_DETERMINISTIC))
        algos[n_algos++] = (int)perf[i].algo;
  } else if (dir == DIR_BWD_DATA) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[MAX_ALGOS];
    st = CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d->w, d->y, d->conv, d->x, MAX_ALGOS, &count, perf));
    for (int i = 0; !st && i < count; i++)
      if (perf[i].status == CUDNN_STATUS_SUCCESS && (!loom_deterministic() || perf[i].determinism == CUDNN_DETERMINISTIC))
        algos[n_algos++] = (int)perf[i].algo;
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[MAX_ALGOS];
    st = CUDNN_CHECK(
        cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d->x, d->y, d->conv, d->w, MAX_ALGOS, &count, perf));
    for (int i = 0; !st && i < count; i++)
      if (perf[i].status == CUDNN_STATUS_SUCCESS && (!loom_deterministic() || perf[i].determinism == CUDNN_DETERMINISTIC))
        algos[n_algos++] = (int)perf[i].algo;
  }
  if (st) return st;
  if (n_algos == 0)
    return core_set_error(LOOM_ERR_UNSUPPORTED, "conv2d: cuDNN has no %salgorithm for x %s, w %s, y %s %s",
                          loom_deterministic() ? "deterministic " : "", loom_shape_str(x->shape),
                          loom_shape_str(w->shape), loom_shape_str(y->shape), loom_dtype_name(x->dtype));
  const float one_f = 1.0f, zero_f = 0.0f;
  const double one_d = 1.0, zero_d = 0.0;
  const bool dbl = x->dtype == LOOM_F64;
  const void *one = dbl ? (const void *)&one_d : (const void *)&one_f;
  const void *zero = dbl ? (const void *)&zero_d : (const void *)&zero_f;
  for (int i = 0; i < n_algos; i++) {
    size_t ws_size = 0;
    if (dir == DIR_FWD)
      st = CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, d->x, d->w, d->conv, d->y,
                                                               (cudnnConvolutionFwdAlgo_t)algos[i], &ws_size));
    else if (dir == DIR_BWD_DATA)
      st = CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(h, d->w, d->y, d->conv, d->x,
                                                                    (cudnnConvolutionBwdDataAlgo_t)algos[i], &ws_size));
    else
      st = CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
          h, d->x, d->y, d->conv, d->w, (cudnnConvolutionBwdFilterAlgo_t)algos[i], &ws_size));
    if (st) continue;
    void *ws = ws_size ? cuda_alloc(dev, ws_size) : NULL;
    if (ws_size && !ws) {
      st = loom_last_status(); /* too big now: a later algorithm may need less */
      continue;
    }
    if (dir == DIR_FWD)
      st = CUDNN_CHECK(cudnnConvolutionForward(h, one, d->x, core_ptr(x), d->w, core_ptr(w), d->conv,
                                               (cudnnConvolutionFwdAlgo_t)algos[i], ws, ws_size, zero, d->y,
                                               core_ptr(y)));
    else if (dir == DIR_BWD_DATA)
      st = CUDNN_CHECK(cudnnConvolutionBackwardData(h, one, d->w, core_ptr(w), d->y, core_ptr(y), d->conv,
                                                    (cudnnConvolutionBwdDataAlgo_t)algos[i], ws, ws_size, zero, d->x,
                                                    core_ptr(x)));
    else
      st = CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, one, d->x, core_ptr(x), d->y, core_ptr(y), d->conv,
                                                      (cudnnConvolutionBwdFilterAlgo_t)algos[i], ws, ws_size, zero,
                                                      d->w, core_ptr(w)));
    if (ws) cuda_free(dev, ws); /* stream-ordered: reused only by later work on this stream */
    if (st == LOOM_OK) return LOOM_OK;
    if (st != LOOM_ERR_OOM) return st; /* a real failure, not a workspace shortage */
  }
  return st;
}

/* Registered for conv2d, conv2d_backward_input and conv2d_backward_weight. */
loom_status cuda_conv2d_cudnn(const core_kctx *k);
loom_status cuda_conv2d_cudnn(const core_kctx *k) {
  const loom_tensor *x, *w, *y, *out = k->out[0];
  conv_dir dir;
  switch (k->op) {
    case CORE_OP_conv2d: x = k->in[0], w = k->in[1], y = k->out[0], dir = DIR_FWD; break;
    case CORE_OP_conv2d_backward_input: y = k->in[0], w = k->in[1], x = k->out[0], dir = DIR_BWD_DATA; break;
    default: y = k->in[0], x = k->in[1], w = k->out[0], dir = DIR_BWD_FILTER; break;
  }
  const int dev = out->storage->device.index;
  loom_status st = cuda_set_device(dev);
  if (st) return st;
  if (core_numel(out) == 0) return LOOM_OK;
  if (core_numel(x) == 0 || core_numel(w) == 0 || core_numel(y) == 0) /* empty sums */
    return CUDA_CHECK(cudaMemsetAsync(core_ptr(out), 0, (size_t)core_numel(out) * loom_dtype_size(out->dtype),
                                      (cudaStream_t)k->stream));
  conv_descs d = {0};
  void *h = NULL;
  if (!(st = make_descs(k, x, w, y, &d)) && !(st = cuda_cudnn_handle(dev, k->stream, &h)))
    st = run_dir((cudnnHandle_t)h, dev, dir, &d, x, w, y);
  destroy_descs(&d);
  return st;
}
