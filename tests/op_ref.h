// Host-side reference helpers, random input specs and the case struct used by
// the ops table cases (tests/op_cases.h) and their runner (tests/test_ops.cpp).
#pragma once
#include "loom_test.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace opcases {

using Tensors = std::vector<loom_tensor *>;

// A host tensor: values in row-major order, shape and dtype.
struct HT {
  std::vector<double> v;
  loom_shape s;
  loom_dtype dt;
};

inline HT ht_of(const loom_tensor *t) { return {V(t), loom_shape_of(t), loom_dtype_of(t)}; }

inline loom_shape shape_of(std::vector<int64_t> dims) {
  loom_shape s{(int)dims.size(), {0}};
  for (size_t i = 0; i < dims.size(); i++) s.d[i] = dims[i];
  return s;
}

// Multi-index of the row-major element `flat` of shape s.
inline std::vector<int64_t> unravel(loom_shape s, int64_t flat) {
  std::vector<int64_t> idx((size_t)s.ndim);
  for (int d = s.ndim - 1; d >= 0; d--) {
    idx[(size_t)d] = flat % s.d[d];
    flat /= s.d[d];
  }
  return idx;
}

inline int64_t ravel(loom_shape s, const std::vector<int64_t> &idx) {
  int64_t flat = 0;
  for (int d = 0; d < s.ndim; d++) flat = flat * s.d[d] + idx[(size_t)d];
  return flat;
}

inline loom_shape broadcast_shape(loom_shape a, loom_shape b) {
  loom_shape out{std::max(a.ndim, b.ndim), {0}};
  for (int k = 0; k < out.ndim; k++) {
    int ia = a.ndim - out.ndim + k, ib = b.ndim - out.ndim + k;
    int64_t da = ia >= 0 ? a.d[ia] : 1, db = ib >= 0 ? b.d[ib] : 1;
    out.d[k] = da == 1 ? db : da;
  }
  return out;
}

// Flat index in src (broadcast to out, aligned on the right) of out's element `flat`.
inline int64_t bcast_index(loom_shape src, loom_shape out, int64_t flat) {
  std::vector<int64_t> oi = unravel(out, flat), si((size_t)src.ndim);
  for (int d = 0; d < src.ndim; d++)
    si[(size_t)d] = src.d[d] == 1 ? 0 : oi[(size_t)(out.ndim - src.ndim + d)];
  return ravel(src, si);
}

inline HT transpose(const HT &a, int d0, int d1) {
  HT out{std::vector<double>(a.v.size()), a.s, a.dt};
  std::swap(out.s.d[d0], out.s.d[d1]);
  for (int64_t i = 0; i < (int64_t)a.v.size(); i++) {
    std::vector<int64_t> idx = unravel(out.s, i);
    std::swap(idx[(size_t)d0], idx[(size_t)d1]);
    out.v[(size_t)i] = a.v[(size_t)ravel(a.s, idx)];
  }
  return out;
}

// out[..., j, ...] = a[..., start + j * step, ...] along dim.
inline HT slice(const HT &a, int dim, int64_t start, int64_t len, int64_t step = 1) {
  HT out{{}, a.s, a.dt};
  out.s.d[dim] = len;
  out.v.resize((size_t)loom_shape_numel(out.s));
  for (int64_t i = 0; i < (int64_t)out.v.size(); i++) {
    std::vector<int64_t> idx = unravel(out.s, i);
    idx[(size_t)dim] = start + idx[(size_t)dim] * step;
    out.v[(size_t)i] = a.v[(size_t)ravel(a.s, idx)];
  }
  return out;
}

inline HT map(const HT &a, const std::function<double(double)> &fn, loom_dtype dt) {
  HT out{a.v, a.s, dt};
  for (double &x : out.v) x = fn(x);
  return out;
}

inline HT zip(const HT &a, const HT &b, const std::function<double(double, double)> &fn, loom_dtype dt) {
  loom_shape s = broadcast_shape(a.s, b.s);
  HT out{std::vector<double>((size_t)loom_shape_numel(s)), s, dt};
  for (int64_t i = 0; i < (int64_t)out.v.size(); i++)
    out.v[(size_t)i] = fn(a.v[(size_t)bcast_index(a.s, s, i)], b.v[(size_t)bcast_index(b.s, s, i)]);
  return out;
}

// cond ? a : b with broadcasting over all three.
inline HT where(const HT &c, const HT &a, const HT &b) {
  loom_shape s = broadcast_shape(c.s, broadcast_shape(a.s, b.s));
  HT out{std::vector<double>((size_t)loom_shape_numel(s)), s, a.dt};
  for (int64_t i = 0; i < (int64_t)out.v.size(); i++)
    out.v[(size_t)i] = c.v[(size_t)bcast_index(c.s, s, i)] != 0 ? a.v[(size_t)bcast_index(a.s, s, i)]
                                                                 : b.v[(size_t)bcast_index(b.s, s, i)];
  return out;
}

// Sum (in long double) over dims (empty = all); divides by the count when mean.
inline HT sum(const HT &a, std::vector<int> dims, bool keepdim, bool mean = false) {
  std::vector<bool> red((size_t)a.s.ndim, dims.empty());
  for (int d : dims) red[(size_t)(d < 0 ? d + a.s.ndim : d)] = true;
  loom_shape ks = a.s, os{0, {0}};
  for (int d = 0; d < a.s.ndim; d++) {
    if (red[(size_t)d]) ks.d[d] = 1;
    if (!red[(size_t)d] || keepdim) os.d[os.ndim++] = ks.d[d];
  }
  std::vector<long double> acc((size_t)loom_shape_numel(ks), 0.0L);
  for (int64_t i = 0; i < (int64_t)a.v.size(); i++) {
    std::vector<int64_t> idx = unravel(a.s, i);
    for (int d = 0; d < a.s.ndim; d++)
      if (red[(size_t)d]) idx[(size_t)d] = 0;
    acc[(size_t)ravel(ks, idx)] += a.v[(size_t)i];
  }
  long double count = (long double)a.v.size() / (long double)acc.size();
  HT out{std::vector<double>(acc.size()), os, a.dt};
  for (size_t i = 0; i < acc.size(); i++) out.v[i] = (double)(mean ? acc[i] / count : acc[i]);
  return out;
}

// Max (or min) over one dim: values and first index of the extreme.
inline std::pair<HT, HT> max_dim(const HT &a, int dim, bool keepdim, bool is_max) {
  int64_t R = a.s.d[dim];
  HT probe = slice(a, dim, 0, 1);
  HT vals{probe.v, probe.s, a.dt}, idx{std::vector<double>(probe.v.size(), 0.0), probe.s, LOOM_I64};
  for (int64_t i = 0; i < (int64_t)probe.v.size(); i++) {
    std::vector<int64_t> at = unravel(probe.s, i);
    for (int64_t r = 1; r < R; r++) {
      at[(size_t)dim] = r;
      double x = a.v[(size_t)ravel(a.s, at)];
      if (is_max ? x > vals.v[(size_t)i] : x < vals.v[(size_t)i]) {
        vals.v[(size_t)i] = x;
        idx.v[(size_t)i] = (double)r;
      }
    }
  }
  if (!keepdim) {
    for (HT *h : {&vals, &idx}) {
      for (int d = dim; d + 1 < h->s.ndim; d++) h->s.d[d] = h->s.d[d + 1];
      h->s.ndim--;
    }
  }
  return {vals, idx};
}

// torch.matmul: 1-d operands are promoted and the added dim removed; batch dims broadcast.
inline HT matmul(const HT &a, const HT &b) {
  bool a1 = a.s.ndim == 1, b1 = b.s.ndim == 1;
  loom_shape as = a1 ? shape_of({1, a.s.d[0]}) : a.s, bs = b1 ? shape_of({b.s.d[0], 1}) : b.s;
  int64_t M = as.d[as.ndim - 2], K = as.d[as.ndim - 1], N = bs.d[bs.ndim - 1];
  loom_shape ab = as, bb = bs;
  ab.ndim -= 2;
  bb.ndim -= 2;
  loom_shape batch = broadcast_shape(ab, bb), os = batch;
  if (!a1) os.d[os.ndim++] = M;
  if (!b1) os.d[os.ndim++] = N;
  HT out{std::vector<double>((size_t)loom_shape_numel(os)), os, a.dt};
  for (int64_t bi = 0; bi < loom_shape_numel(batch); bi++) {
    const double *pa = a.v.data() + bcast_index(ab, batch, bi) * M * K;
    const double *pb = b.v.data() + bcast_index(bb, batch, bi) * K * N;
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        long double acc = 0;
        for (int64_t k = 0; k < K; k++) acc += (long double)pa[m * K + k] * pb[k * N + n];
        out.v[(size_t)((bi * M + m) * N + n)] = (double)acc;
      }
  }
  return out;
}

// ---- random inputs ----

// How one input is made: Data takes the case's dtype; Bool and Index have their own.
struct In {
  enum Kind { Data, Bool, Index } kind;
  loom_shape s;
  double lo = -2, hi = 2;
  std::vector<double> avoid = {};  // keep values at least `margin` from these points
  double margin = 0.05;
  bool integral = false;           // round Data values to integers
};

inline In data(loom_shape s, double lo = -2, double hi = 2, std::vector<double> avoid = {},
               double margin = 0.05) {
  return {In::Data, s, lo, hi, std::move(avoid), margin, false};
}
inline In ints(loom_shape s, double lo, double hi) { return {In::Data, s, lo, hi, {}, 0.05, true}; }
inline In boolean(loom_shape s) { return {In::Bool, s}; }
// I64 indices in [0, n).
inline In index(loom_shape s, int64_t n) { return {In::Index, s, 0, (double)n}; }

// Fresh random CPU tensors for the specs (never all zeros), deterministic in seed.
inline Tensors make_inputs(const std::vector<In> &specs, loom_dtype dt, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Tensors out;
  for (const In &in : specs) {
    std::vector<double> v((size_t)loom_shape_numel(in.s));
    for (double &x : v) {
      bool ok = false;
      while (!ok) {
        if (in.kind == In::Bool) x = (double)(rng() & 1);
        else if (in.kind == In::Index) x = (double)(rng() % (uint64_t)in.hi);
        else if (in.integral) x = std::round(std::uniform_real_distribution<double>(in.lo, in.hi)(rng));
        else x = std::uniform_real_distribution<double>(in.lo, in.hi)(rng);
        ok = true;
        if (in.kind == In::Data && !in.integral)
          for (double p : in.avoid) ok = ok && std::fabs(x - p) >= in.margin;
      }
    }
    if (std::all_of(v.begin(), v.end(), [](double x) { return x == 0; })) v[0] = 1;
    loom_dtype t = in.kind == In::Bool ? LOOM_BOOL : in.kind == In::Index ? LOOM_I64 : dt;
    out.push_back(T(v, in.s, t, loom_cpu()));
  }
  return out;
}

// ---- a case ----

struct Ctx {
  Tensors in;
  loom_device dev;
  loom_dtype dt;
};

struct OpCase {
  std::string op;                                  // kernel op name in src/core/ops.def
  std::vector<In> inputs;                          // see make_inputs
  std::function<Tensors(const Ctx &)> run;         // calls the public op(s)
  // Expected outputs from the host values of the inputs (empty for random ops).
  std::function<std::vector<HT>(const std::vector<HT> &, loom_dtype)> ref;
  // Checks random outputs; returns "" when they look right.
  std::function<std::string(const std::vector<HT> &)> stats;
  bool differentiable;
  bool half;                                       // float math: CUDA needs f16 and bf16 kernels
  std::vector<loom_dtype> dtypes;                  // run on these; CPU kernels required for each
  double eps = 1e-6;                               // gradcheck step
  double cuda_f32_bound = 1e-5;

  Tensors make(loom_dtype dt, uint64_t seed) const { return make_inputs(inputs, dt, seed); }
};

}  // namespace opcases
