// Op case of the sparse family (see tests/op_cases.h): sparse_mm, the COO
// sparse x dense product, reached through loom_sparse_mm (plain, transposed
// indices, a strided dense operand) and loom_sparse_to_dense (a scatter_add,
// checked here with it). Random indices repeat, so duplicates add up.
#pragma once
#include "op_cases_core.h"

namespace opcases {

// Dense [rows, k] = A @ d for COO A (row / col index host tensors, values v).
inline HT coo_mm(const HT &row, const HT &col, const HT &v, int64_t rows, const HT &d) {
  int64_t k = d.s.d[1];
  HT out{std::vector<double>((size_t)(rows * k), 0.0), shape_of({rows, k}), d.dt};
  for (size_t e = 0; e < v.v.size(); e++)
    for (int64_t j = 0; j < k; j++)
      out.v[(size_t)((int64_t)row.v[e] * k + j)] += v.v[e] * d.v[(size_t)((int64_t)col.v[e] * k + j)];
  return out;
}

inline std::vector<OpCase> sparse_cases() {
  OpCase c;
  c.op = "sparse_mm";
  // values [12], rows in [0, 4), cols in [0, 5), dense [5, 3], dense [4, 2], dense^T [3, 5]
  c.inputs = {data(LOOM_SHAPE(12)), index(LOOM_SHAPE(12), 4), index(LOOM_SHAPE(12), 5), data(LOOM_SHAPE(5, 3)),
              data(LOOM_SHAPE(4, 2)), data(LOOM_SHAPE(3, 5))};
  c.run = [](const Ctx &k) {
    loom_tensor *v = k.in[0], *r = k.in[1], *cl = k.in[2];
    loom_tensor *rc[2] = {r, cl}, *cr[2] = {cl, r};
    loom_tensor *idx = loom_stack(rc, 2, 0), *tidx = loom_stack(cr, 2, 0);
    return Tensors{loom_sparse_mm(idx, v, 4, 5, k.in[3]), loom_sparse_mm(tidx, v, 5, 4, k.in[4]),
                   loom_sparse_to_dense(idx, v, 4, 5), loom_sparse_mm(idx, v, 4, 5, loom_transpose(k.in[5], 0, 1))};
  };
  c.ref = [](HostIn in, loom_dtype) {
    HT eye = filled(LOOM_SHAPE(5, 5), in[0].dt, [](int64_t i) { return (double)(i / 5 == i % 5); });
    return Refs{coo_mm(in[1], in[2], in[0], 4, in[3]), coo_mm(in[2], in[1], in[0], 5, in[4]),
                coo_mm(in[1], in[2], in[0], 4, eye), coo_mm(in[1], in[2], in[0], 4, transpose(in[5], 0, 1))};
  };
  c.differentiable = true;
  c.half = false;
  c.dtypes = kFloat;
  return {c};
}

}  // namespace opcases
