// Op cases of the norm family (see tests/op_cases.h).
#pragma once
#include "op_cases_core.h"

namespace opcases {

inline std::vector<OpCase> norm_cases() { return {}; }

}  // namespace opcases
