// CUDA kernels of the attention family.
#include "cuda/kernels.cuh"

void cuda_register_attention(void) {}
