// Op cases of the rnn family (see tests/op_cases.h).
#pragma once
#include "op_cases_core.h"

namespace opcases {

inline std::vector<OpCase> rnn_cases() { return {}; }

}  // namespace opcases
