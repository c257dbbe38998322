/* cuDNN handles: one per thread and device, made on first use, bound to the
 * stream of each call. Shared by the convolution, pooling and batch-norm
 * kernels. */
#include <cudnn.h>

#include "cuda/cuda_util.h"

static _Thread_local cudnnHandle_t handles[CUDA_MAX_DEVICES];

loom_status cuda_cudnn_handle(int dev, void *stream, void **out) {
  if (dev < 0 || dev >= CUDA_MAX_DEVICES)
    return core_set_error(LOOM_ERR_DEVICE, "cuDNN: device index %d out of range", dev);
  if (!handles[dev]) {
    cudnnHandle_t h = NULL;
    loom_status st = CUDNN_CHECK(cudnnCreate(&h));
    if (st) return st;
    handles[dev] = h;
  }
  loom_status st = CUDNN_CHECK(cudnnSetStream(handles[dev], (cudaStream_t)stream));
  if (st) return st;
  *out = handles[dev];
  return LOOM_OK;
}
