// CUDA kernels of the norm family.
#include "cuda/kernels.cuh"

void cuda_register_norm(void) {}
