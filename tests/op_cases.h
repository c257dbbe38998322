// One case per kernel-level op of src/core/ops.def: inputs, the public ops that
// reach the kernel, a host reference (or statistics for random ops), and flags.
// Run by tests/test_ops.cpp; helpers in tests/op_ref.h and op_cases_core.h;
// the layer families' cases in tests/op_cases_<family>.h.
#pragma once
#include "op_cases_core.h"
#include "op_cases_conv.h"
#include "op_cases_norm.h"
#include "op_cases_act.h"
#include "op_cases_rnn.h"
#include "op_cases_attention.h"
#include "op_cases_loss.h"
#include "op_cases_optim.h"
#include "op_cases_sparse.h"

namespace opcases {

inline std::vector<OpCase> all_op_cases() {
  std::vector<OpCase> cs;
  for (auto part : {creation_cases, unary_cases, binary_cases, other_cases, conv_cases, norm_cases, act_cases, rnn_cases, attention_cases, loss_cases, optim_cases, sparse_cases})
    for (OpCase &c : part()) cs.push_back(c);
  return cs;
}

}  // namespace opcases
