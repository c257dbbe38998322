// Op cases of the act family (see tests/op_cases.h).
#pragma once
#include "op_cases_core.h"

namespace opcases {

inline std::vector<OpCase> act_cases() { return {}; }

}  // namespace opcases
