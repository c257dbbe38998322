// Op cases of the loss family (see tests/op_cases.h).
#pragma once
#include "op_cases_core.h"

namespace opcases {

inline std::vector<OpCase> loss_cases() { return {}; }

}  // namespace opcases
