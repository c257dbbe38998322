// CUDA kernels of the conv family: the convolutions go through cuDNN
// (src/cuda/conv_cudnn.c), pooling has its own kernels (src/cuda/pool.cu).
#include "cuda/kernels.cuh"

extern "C" loom_status cuda_conv2d_cudnn(const core_kctx *k);

void cuda_register_conv(void) {
  for (loom_dtype dt : {LOOM_F32, LOOM_F64, LOOM_F16, LOOM_BF16}) {
    core_register(LOOM_CUDA, CORE_OP_conv2d, dt, cuda_conv2d_cudnn);
    core_register(LOOM_CUDA, CORE_OP_conv2d_backward_input, dt, cuda_conv2d_cudnn);
    core_register(LOOM_CUDA, CORE_OP_conv2d_backward_weight, dt, cuda_conv2d_cudnn);
  }
  cuda_register_pool();
}
