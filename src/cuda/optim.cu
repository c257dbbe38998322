// CUDA kernels of the optim family.
#include "cuda/kernels.cuh"

void cuda_register_optim(void) {}
