// CUDA kernels of the loss family.
#include "cuda/kernels.cuh"

void cuda_register_loss(void) {}
