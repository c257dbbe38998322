/* cuDNN batch norm for f32 [N, C, S] input (SPATIAL mode: statistics per
 * channel over N * S), used by the batch_norm / batch_norm_backward kernels of
 * src/cuda/norm.cu. cuDNN's saved mean and inverse standard deviation are
 * exactly the ops' stats rows (mean; 1 / sqrt(biased var + eps)), and its
 * parameter gradients are written straight into dwb = [dweight; dbias]. The
 * running statistics are updated by the core with PyTorch's rule, so cuDNN
 * is called without them (both pointers NULL, factor 0). The legacy
 * cudnnBatchNormalization* calls are deprecated in cuDNN 9 but still the
 * direct way to this operation (PyTorch uses them too). */
#include <cudnn.h>
#include <limits.h>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_util.h"

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

bool cuda_batch_norm_cudnn_fits(const core_kctx *k) {
  int64_t N = k->a.i[0], C = k->a.i[1], S = k->a.i[2];
  return N > 0 && C > 0 && S > 0 && N * S > 1 && N * C * S <= INT_MAX && k->a.f[0] >= CUDNN_BN_MIN_EPSILON;
}

/* Descriptors of x ([N, C, S, 1], NCHW) and of the per-channel tensors ([1, C, 1, 1]). */
static loom_status descriptors(const core_kctx *k, cudnnTensorDescriptor_t *xd, cudnnTensorDescriptor_t *pd) {
  int N = (int)k->a.i[0], C = (int)k->a.i[1], S = (int)k->a.i[2];
  loom_status st = CUDNN_CHECK(cudnnCreateTensorDescriptor(xd));
  if (!st) st = CUDNN_CHECK(cudnnCreateTensorDescriptor(pd));
  if (!st) st = CUDNN_CHECK(cudnnSetTensor4dDescriptor(*xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, N, C, S, 1));
  if (!st) st = CUDNN_CHECK(cudnnSetTensor4dDescriptor(*pd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, C, 1, 1));
  return st;
}

/* Forward (backward = false): in = (x, weight, bias), out = (y, stats).
 * Backward: in = (dy, x, weight, stats), out = (dx, dwb). Shapes and dtypes
 * are checked by the caller. */
loom_status cuda_batch_norm_cudnn(const core_kctx *k, bool backward) {
  int dev = (k->n_out ? k->out[0] : k->in[0])->storage->device.index;
  int64_t C = k->a.i[1];
  void *h = NULL;
  loom_status st = cuda_cudnn_handle(dev, k->stream, &h);
  if (st) return st;
  cudnnTensorDescriptor_t xd = NULL, pd = NULL;
  st = descriptors(k, &xd, &pd);
  const float one = 1, zero = 0;
  double eps = k->a.f[0];
  if (!st && !backward) {
    float *stats = core_ptr(k->out[1]);
    st = CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
        (cudnnHandle_t)h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, xd, core_ptr(k->in[0]), xd, core_ptr(k->out[0]), pd,
        core_ptr(k->in[1]), core_ptr(k->in[2]), 0.0, NULL, NULL, eps, stats, stats + C));
  } else if (!st) {
    const float *stats = core_ptr(k->in[3]);
    float *dwb = core_ptr(k->out[1]);
    st = CUDNN_CHECK(cudnnBatchNormalizationBackward(
        (cudnnHandle_t)h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &zero, xd, core_ptr(k->in[1]), xd,
        core_ptr(k->in[0]), xd, core_ptr(k->out[0]), pd, core_ptr(k->in[2]), dwb, dwb + C, eps, stats, stats + C));
  }
  if (xd) cudnnDestroyTensorDescriptor(xd);
  if (pd) cudnnDestroyTensorDescriptor(pd);
  return st;
}
