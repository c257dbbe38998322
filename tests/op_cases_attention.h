// Op cases of the attention family (see tests/op_cases.h).
#pragma once
#include "op_cases_core.h"

namespace opcases {

inline std::vector<OpCase> attention_cases() { return {}; }

}  // namespace opcases
