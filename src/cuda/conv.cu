// CUDA kernels of the conv family.
#include "cuda/kernels.cuh"

void cuda_register_conv(void) {}
