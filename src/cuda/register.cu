// The CUDA backend's entry point: fills the kernel table, one family at a time.
#include "cuda/kernels.cuh"

extern "C" void cuda_register_kernels(void) {
  cuda_register_copy();
  cuda_register_random();
  cuda_register_unary();
  cuda_register_binary();
  cuda_register_reduce();
  cuda_register_index();
  cuda_register_logsumexp();
  cuda_register_conv();
  cuda_register_norm();
  cuda_register_act();
  cuda_register_rnn();
  cuda_register_attention();
  cuda_register_loss();
  cuda_register_optim();
  cuda_register_sparse();
  for (loom_dtype dt : {LOOM_F32, LOOM_F64, LOOM_F16, LOOM_BF16})
    core_register(LOOM_CUDA, CORE_OP_matmul, dt, cuda_matmul);
}
