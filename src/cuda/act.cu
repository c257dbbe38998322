// CUDA kernels of the act family.
#include "cuda/kernels.cuh"

void cuda_register_act(void) {}
