/* The CPU backend's entry point and its shared checks. */
#include "cpu/cpu.h"

void cpu_register_kernels(void) {
  cpu_register_copy();
  cpu_register_random();
  cpu_register_unary();
  cpu_register_binary();
  cpu_register_reduce();
  cpu_register_index();
  cpu_register_matmul();
  cpu_register_conv();
  cpu_register_norm();
  cpu_register_act();
  cpu_register_rnn();
  cpu_register_attention();
  cpu_register_loss();
  cpu_register_optim();
  cpu_register_sparse();
}

loom_status cpu_need_contiguous(const char *op, loom_tensor *const *ts, int n) {
  for (int j = 0; j < n; j++)
    if (!core_is_contiguous(ts[j]))
      return core_set_error(LOOM_ERR_INVALID, "%s: operand of shape %s must be contiguous", op,
                            loom_shape_str(ts[j]->shape));
  return LOOM_OK;
}
