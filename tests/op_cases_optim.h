// Op cases of the optim family (see tests/op_cases.h).
#pragma once
#include "op_cases_core.h"

namespace opcases {

inline std::vector<OpCase> optim_cases() { return {}; }

}  // namespace opcases
