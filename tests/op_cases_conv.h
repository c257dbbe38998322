// Op cases of the conv family (see tests/op_cases.h).
#pragma once
#include "op_cases_core.h"

namespace opcases {

inline std::vector<OpCase> conv_cases() { return {}; }

}  // namespace opcases
