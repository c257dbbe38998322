// CUDA kernels of the rnn family.
#include "cuda/kernels.cuh"

void cuda_register_rnn(void) {}
