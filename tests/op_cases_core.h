// The op cases of the core ops (tensor ops of src/core/ops.def) and helpers
// the family files (tests/op_cases_*.h) use. Collected by tests/op_cases.h.
#pragma once
#include "op_ref.h"

namespace opcases {

using UnaryFn = loom_tensor *(*)(const loom_tensor *);
using BinaryFn = loom_tensor *(*)(const loom_tensor *, const loom_tensor *);
using Refs = std::vector<HT>;
using HostIn = const std::vector<HT> &;

inline const std::vector<loom_dtype> kFloat = {LOOM_F32, LOOM_F64};

// A host tensor of shape s holding fn(flat index).
inline HT filled(loom_shape s, loom_dtype dt, const std::function<double(int64_t)> &fn) {
  HT h{std::vector<double>((size_t)loom_shape_numel(s)), s, dt};
  for (size_t i = 0; i < h.v.size(); i++) h.v[i] = fn((int64_t)i);
  return h;
}

// out = x with `dim` replaced by index[...] (index_select when idx is 1-d, else gather).
inline HT take(const HT &x, int dim, const HT &idx, bool gather) {
  loom_shape s = gather ? idx.s : x.s;
  if (!gather) s.d[dim] = idx.s.d[0];
  return filled(s, x.dt, [&](int64_t i) {
    std::vector<int64_t> at = unravel(s, i);
    at[(size_t)dim] = (int64_t)idx.v[(size_t)(gather ? i : at[(size_t)dim])];
    return x.v[(size_t)ravel(x.s, at)];
  });
}

// out = x; out[.., idx[i], ..] += src[i] (put: = src[i], the last one wins).
// src may be larger than idx.
inline HT scatter_add(const HT &x, int dim, const HT &idx, const HT &src, bool put = false) {
  HT out = x;
  for (int64_t i = 0; i < (int64_t)idx.v.size(); i++) {
    std::vector<int64_t> at = unravel(idx.s, i);
    double v = src.v[(size_t)ravel(src.s, at)];
    at[(size_t)dim] = (int64_t)idx.v[(size_t)i];
    double &o = out.v[(size_t)ravel(x.s, at)];
    o = put ? v : o + v;
  }
  return out;
}

inline double mean_of(const std::vector<double> &v) {
  long double s = 0;
  for (double x : v) s += x;
  return (double)(s / (long double)v.size());
}

inline double var_of(const std::vector<double> &v) {
  double m = mean_of(v);
  long double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return (double)(s / (long double)v.size());
}

// Outputs 0 and 2 come from the same seed, output 1 continues the stream.
inline std::string seeding_problem(const std::vector<HT> &o) {
  if (o[0].v != o[2].v) return "same seed gave different numbers";
  if (o[0].v == o[1].v) return "two draws in a row gave the same numbers";
  return "";
}

inline OpCase random_case(const char *name, const std::vector<loom_dtype> &dtypes,
                          loom_tensor *(*draw)(loom_device, loom_dtype),
                          std::string (*stats)(const std::vector<double> &)) {
  OpCase c;
  c.op = name;
  c.run = [draw](const Ctx &k) {
    loom_manual_seed(1234);
    loom_tensor *a = draw(k.dev, k.dt), *b = draw(k.dev, k.dt);
    loom_manual_seed(1234);
    return Tensors{a, b, draw(k.dev, k.dt)};
  };
  c.stats = [stats](const std::vector<HT> &o) {
    std::string s = stats(o[0].v);
    return s.empty() ? seeding_problem(o) : s;
  };
  c.differentiable = false;
  c.half = false;
  c.dtypes = dtypes;
  return c;
}

inline std::string uniform_stats(const std::vector<double> &v) {
  for (double x : v)
    if (!(x >= 0 && x < 1)) return "value " + std::to_string(x) + " outside [0, 1)";
  double m = mean_of(v), var = var_of(v);
  if (std::fabs(m - 0.5) > 0.02 || std::fabs(var - 1.0 / 12) > 0.006)
    return "mean " + std::to_string(m) + " var " + std::to_string(var) + " (want 0.5, 0.0833)";
  return "";
}

inline std::string normal_stats(const std::vector<double> &v) {
  double m = mean_of(v), var = var_of(v);
  if (std::fabs(m) > 0.08 || std::fabs(var - 1) > 0.12)
    return "mean " + std::to_string(m) + " var " + std::to_string(var) + " (want 0, 1)";
  return "";
}

inline std::string randint_stats(const std::vector<double> &v) {
  std::vector<int64_t> count(8, 0);
  for (double x : v) {
    if (x != std::floor(x) || x < -3 || x >= 5) return "value " + std::to_string(x) + " outside [-3, 5)";
    count[(size_t)(x + 3)]++;
  }
  for (size_t i = 0; i < count.size(); i++)
    if (std::llabs(count[i] - 512) > 130) return "value " + std::to_string((int)i - 3) + " drawn " +
                                                  std::to_string(count[i]) + " times of 4096";
  return "";
}

// f(x) and f(x transposed) on a [3, 4, 5] input.
inline OpCase unary(const char *name, UnaryFn fn, double (*f)(double), In x, bool differentiable = true) {
  OpCase c;
  c.op = name;
  c.inputs = {x};
  c.run = [fn](const Ctx &k) { return Tensors{fn(k.in[0]), fn(loom_transpose(k.in[0], 0, 2))}; };
  c.ref = [f](HostIn in, loom_dtype) {
    return Refs{map(in[0], f, in[0].dt), map(transpose(in[0], 0, 2), f, in[0].dt)};
  };
  c.differentiable = differentiable;
  c.half = x.kind == In::Data;
  c.dtypes = x.kind == In::Bool ? std::vector<loom_dtype>{LOOM_BOOL} : kFloat;
  return c;
}

// op(a[3,1,4], b[5,4]) broadcast, op(c[4,5] transposed, b), and an optional scalar form of a.
inline OpCase binary(const char *name, BinaryFn fn, double (*f)(double, double), In a, In b, In cin,
                     std::vector<loom_dtype> dtypes, loom_dtype out_dt = LOOM_DTYPE_COUNT,
                     UnaryFn scalar_fn = nullptr, double (*scalar_f)(double) = nullptr) {
  OpCase c;
  c.op = name;
  a.s = LOOM_SHAPE(3, 1, 4);
  b.s = LOOM_SHAPE(5, 4);
  cin.s = LOOM_SHAPE(4, 5);
  c.inputs = {a, b, cin};
  c.run = [fn, scalar_fn](const Ctx &k) {
    Tensors out{fn(k.in[0], k.in[1]), fn(loom_transpose(k.in[2], 0, 1), k.in[1])};
    if (scalar_fn) out.push_back(scalar_fn(k.in[0]));
    return out;
  };
  c.ref = [f, scalar_f, out_dt](HostIn in, loom_dtype) {
    loom_dtype dt = out_dt == LOOM_DTYPE_COUNT ? in[0].dt : out_dt;
    Refs out{zip(in[0], in[1], f, dt), zip(transpose(in[2], 0, 1), in[1], f, dt)};
    if (scalar_f) out.push_back(map(in[0], scalar_f, dt));
    return out;
  };
  c.differentiable = out_dt == LOOM_DTYPE_COUNT;
  c.half = c.differentiable;
  c.dtypes = std::move(dtypes);
  return c;
}

inline std::vector<OpCase> unary_cases() {
  loom_shape s = LOOM_SHAPE(3, 4, 5);
  std::vector<OpCase> cs = {
      unary("neg", loom_neg, [](double x) { return -x; }, data(s)),
      unary("abs", loom_abs, [](double x) { return std::fabs(x); }, data(s, -2, 2, {0})),
      unary("sign", loom_sign, [](double x) { return (double)((x > 0) - (x < 0)); }, data(s, -2, 2, {0})),
      unary("exp", loom_exp, [](double x) { return std::exp(x); }, data(s)),
      unary("log", loom_log, [](double x) { return std::log(x); }, data(s, 0.3, 3)),
      unary("sqrt", loom_sqrt, [](double x) { return std::sqrt(x); }, data(s, 0.3, 3)),
      unary("rsqrt", loom_rsqrt, [](double x) { return 1 / std::sqrt(x); }, data(s, 0.3, 3)),
      unary("sin", loom_sin, [](double x) { return std::sin(x); }, data(s, -3, 3)),
      unary("cos", loom_cos, [](double x) { return std::cos(x); }, data(s, -3, 3)),
      unary("relu", loom_relu, [](double x) { return x > 0 ? x : 0; }, data(s, -2, 2, {0})),
      unary("sigmoid", loom_sigmoid, [](double x) { return 1 / (1 + std::exp(-x)); }, data(s, -3, 3)),
      unary("tanh", loom_tanh, [](double x) { return std::tanh(x); }, data(s)),
      unary("logical_not", loom_logical_not, [](double x) { return (double)(x == 0); }, boolean(s), false),
  };
  OpCase clamp;
  clamp.op = "clamp";
  clamp.inputs = {data(s, -2, 2, {-0.5, 0.7})};
  clamp.run = [](const Ctx &k) {
    loom_tensor *x = k.in[0];
    return Tensors{loom_clamp(x, -0.5, 0.7), loom_clamp(loom_transpose(x, 0, 2), -INFINITY, 0.7),
                   loom_clamp(x, -0.5, INFINITY)};
  };
  clamp.ref = [](HostIn in, loom_dtype) {
    const HT &x = in[0];
    return Refs{map(x, [](double v) { return std::min(std::max(v, -0.5), 0.7); }, x.dt),
                map(transpose(x, 0, 2), [](double v) { return std::min(v, 0.7); }, x.dt),
                map(x, [](double v) { return std::max(v, -0.5); }, x.dt)};
  };
  clamp.differentiable = true;
  clamp.half = true;
  clamp.dtypes = kFloat;
  cs.push_back(clamp);
  return cs;
}

inline std::vector<OpCase> binary_cases() {
  loom_shape s = LOOM_SHAPE(1);  // replaced by binary()
  In d = data(s), pos = data(s, 0.5, 2), i = ints(s, -2, 2), bl = boolean(s);
  std::vector<loom_dtype> cmp = {LOOM_F32, LOOM_F64, LOOM_I64}, lg = {LOOM_BOOL};
  return {
      binary("add", loom_add, [](double a, double b) { return a + b; }, d, d, d, kFloat, LOOM_DTYPE_COUNT,
             [](const loom_tensor *a) { return loom_add_scalar(a, 1.5); }, [](double a) { return a + 1.5; }),
      binary("sub", loom_sub, [](double a, double b) { return a - b; }, d, d, d, kFloat),
      binary("mul", loom_mul, [](double a, double b) { return a * b; }, d, d, d, kFloat, LOOM_DTYPE_COUNT,
             [](const loom_tensor *a) { return loom_mul_scalar(a, -0.75); }, [](double a) { return a * -0.75; }),
      binary("div", loom_div, [](double a, double b) { return a / b; }, d, data(s, -2, 2, {0}, 0.5), d, kFloat),
      binary("pow", loom_pow, [](double a, double b) { return std::pow(a, b); }, pos, d, pos, kFloat,
             LOOM_DTYPE_COUNT, [](const loom_tensor *a) { return loom_pow_scalar(a, 1.7); },
             [](double a) { return std::pow(a, 1.7); }),
      binary("maximum", loom_maximum, [](double a, double b) { return std::max(a, b); }, d, d, d, kFloat),
      binary("minimum", loom_minimum, [](double a, double b) { return std::min(a, b); }, d, d, d, kFloat),
      binary("eq", loom_eq, [](double a, double b) { return (double)(a == b); }, i, i, i, cmp, LOOM_BOOL),
      binary("ne", loom_ne, [](double a, double b) { return (double)(a != b); }, i, i, i, cmp, LOOM_BOOL),
      binary("lt", loom_lt, [](double a, double b) { return (double)(a < b); }, i, i, i, cmp, LOOM_BOOL),
      binary("le", loom_le, [](double a, double b) { return (double)(a <= b); }, i, i, i, cmp, LOOM_BOOL),
      binary("gt", loom_gt, [](double a, double b) { return (double)(a > b); }, i, i, i, cmp, LOOM_BOOL),
      binary("ge", loom_ge, [](double a, double b) { return (double)(a >= b); }, i, i, i, cmp, LOOM_BOOL),
      binary("logical_and", loom_logical_and, [](double a, double b) { return (double)(a != 0 && b != 0); },
             bl, bl, bl, lg, LOOM_BOOL),
      binary("logical_or", loom_logical_or, [](double a, double b) { return (double)(a != 0 || b != 0); },
             bl, bl, bl, lg, LOOM_BOOL),
      binary("logical_xor", loom_logical_xor, [](double a, double b) { return (double)((a != 0) != (b != 0)); },
             bl, bl, bl, lg, LOOM_BOOL),
  };
}

// copy, fill, arange and the random generators.
inline std::vector<OpCase> creation_cases() {
  auto other = [](loom_dtype dt) { return dt == LOOM_F32 ? LOOM_F64 : LOOM_F32; };
  OpCase copy;
  copy.op = "copy";
  copy.inputs = {data(LOOM_SHAPE(4, 6))};
  copy.run = [other](const Ctx &k) {
    loom_tensor *x = k.in[0];
    return Tensors{loom_contiguous(loom_transpose(x, 0, 1)), loom_to_dtype(x, other(k.dt)),
                   loom_contiguous(loom_slice(x, 1, 1, 6, 2))};
  };
  copy.ref = [other](HostIn in, loom_dtype dt) {
    return Refs{transpose(in[0], 0, 1), HT{in[0].v, in[0].s, other(dt)}, slice(in[0], 1, 1, 3, 2)};
  };
  copy.differentiable = true;
  copy.half = true;
  copy.dtypes = kFloat;
  copy.eps = 1e-2;  // the f32 round trip is linear: a large step keeps rounding out of the difference

  OpCase fill;
  fill.op = "fill";
  fill.run = [](const Ctx &k) {
    loom_tensor *z = loom_zeros(LOOM_SHAPE(4, 6), k.dt, k.dev);
    int rc = loom_fill_(loom_narrow(loom_transpose(z, 0, 1), 0, 1, 3), -1.5);
    return Tensors{loom_full(LOOM_SHAPE(3, 5), 2.5, k.dt, k.dev), rc == 0 ? z : nullptr,
                   loom_ones(LOOM_SHAPE(7), k.dt, k.dev)};
  };
  fill.ref = [](HostIn, loom_dtype dt) {
    return Refs{filled(LOOM_SHAPE(3, 5), dt, [](int64_t) { return 2.5; }),
                filled(LOOM_SHAPE(4, 6), dt, [](int64_t i) { return i % 6 >= 1 && i % 6 <= 3 ? -1.5 : 0.0; }),
                filled(LOOM_SHAPE(7), dt, [](int64_t) { return 1.0; })};
  };
  fill.differentiable = false;
  fill.half = true;
  fill.dtypes = kFloat;

  OpCase arange;
  arange.op = "arange";
  arange.run = [](const Ctx &k) {
    double step = loom_dtype_is_float(k.dt) ? 0.5 : 1;
    return Tensors{loom_arange(-2, 3, step, k.dt, k.dev), loom_arange(0, 7, 1, k.dt, k.dev)};
  };
  arange.ref = [](HostIn, loom_dtype dt) {
    double step = loom_dtype_is_float(dt) ? 0.5 : 1;
    return Refs{filled(LOOM_SHAPE((int64_t)(5 / step)), dt, [step](int64_t i) { return -2 + step * i; }),
                filled(LOOM_SHAPE(7), dt, [](int64_t i) { return (double)i; })};
  };
  arange.differentiable = false;
  arange.half = false;
  arange.dtypes = {LOOM_F32, LOOM_F64, LOOM_I64};

  return {copy, fill, arange,
          random_case("uniform", kFloat,
                      [](loom_device dev, loom_dtype dt) { return loom_rand(LOOM_SHAPE(64, 64), dt, dev); },
                      uniform_stats),
          random_case("normal", kFloat,
                      [](loom_device dev, loom_dtype dt) { return loom_randn(LOOM_SHAPE(64, 64), dt, dev); },
                      normal_stats),
          random_case("randint", {LOOM_I64},
                      [](loom_device dev, loom_dtype dt) { return loom_randint(-3, 5, LOOM_SHAPE(64, 64), dt, dev); },
                      randint_stats)};
}

// where, sum, max/min, the indexing ops and matmul.
inline std::vector<OpCase> other_cases() {
  OpCase where;
  where.op = "where";
  where.inputs = {boolean(LOOM_SHAPE(3, 1, 4)), data(LOOM_SHAPE(5, 4)), data(LOOM_SHAPE(4)), data(LOOM_SHAPE(4, 5))};
  where.run = [](const Ctx &k) {
    loom_tensor *cond = k.in[0], *a = k.in[1], *b = k.in[2], *c = k.in[3];
    return Tensors{loom_where(cond, a, b), loom_where(cond, loom_transpose(c, 0, 1), a),
                   loom_masked_fill(a, loom_select(cond, 0, 1), 2.5)};
  };
  where.ref = [](HostIn in, loom_dtype dt) {
    HT mask = slice(in[0], 0, 1, 1);
    mask.s = LOOM_SHAPE(1, 4);
    return Refs{opcases::where(in[0], in[1], in[2]), opcases::where(in[0], transpose(in[3], 0, 1), in[1]),
                opcases::where(mask, HT{{2.5}, shape_of({}), dt}, in[1])};
  };
  where.differentiable = true;
  where.half = false;
  where.dtypes = kFloat;

  OpCase sum;
  sum.op = "sum";
  sum.inputs = {data(LOOM_SHAPE(3, 4, 5))};
  sum.run = [](const Ctx &k) {
    static const int d1[] = {1}, d02[] = {0, 2}, last[] = {-1};
    loom_tensor *x = k.in[0];
    return Tensors{loom_sum(x, d1, 1, false), loom_sum(x, d02, 2, true), loom_sum(x, nullptr, 0, false),
                   loom_sum(loom_transpose(x, 0, 2), last, 1, false), loom_mean(x, last, 1, false)};
  };
  sum.ref = [](HostIn in, loom_dtype) {
    const HT &x = in[0];
    return Refs{opcases::sum(x, {1}, false), opcases::sum(x, {0, 2}, true), opcases::sum(x, {}, false),
                opcases::sum(transpose(x, 0, 2), {-1}, false), opcases::sum(x, {-1}, false, true)};
  };
  sum.differentiable = true;
  sum.half = true;
  sum.dtypes = kFloat;

  OpCase lse;
  lse.op = "logsumexp";
  lse.inputs = {data(LOOM_SHAPE(3, 4, 5))};
  lse.run = [](const Ctx &k) {
    static const int d1[] = {1}, d02[] = {0, 2}, last[] = {-1};
    loom_tensor *x = k.in[0];
    return Tensors{loom_logsumexp(x, d1, 1, false), loom_logsumexp(x, d02, 2, true),
                   loom_logsumexp(x, nullptr, 0, false), loom_logsumexp(loom_transpose(x, 0, 2), last, 1, false)};
  };
  lse.ref = [](HostIn in, loom_dtype) {
    HT e = in[0];
    for (double &v : e.v) v = std::exp(v);
    Refs r{opcases::sum(e, {1}, false), opcases::sum(e, {0, 2}, true), opcases::sum(e, {}, false),
           opcases::sum(transpose(e, 0, 2), {-1}, false)};
    for (HT &h : r)
      for (double &v : h.v) v = std::log(v);
    return r;
  };
  lse.differentiable = true;
  lse.half = true;
  lse.dtypes = kFloat;

  std::vector<OpCase> cs = {where, sum, lse};
  for (bool is_max : {true, false}) {
    OpCase m;
    m.op = is_max ? "max" : "min";
    m.inputs = {data(LOOM_SHAPE(3, 4, 5))};
    m.run = [is_max](const Ctx &k) {
      auto fn = is_max ? loom_max : loom_min;
      loom_tensor *x = k.in[0], *i1 = nullptr, *i2 = nullptr;
      loom_tensor *v1 = fn(x, 1, false, &i1), *v2 = fn(loom_transpose(x, 0, 2), 0, true, &i2);
      static const int d02[] = {0, 2}, dm2[] = {-2};  // amax / amin over several dims (ties: test_ops_parity)
      auto afn = is_max ? loom_amax : loom_amin;
      return Tensors{v1, i1, v2, i2, is_max ? loom_max_all(x) : loom_min_all(x), afn(x, d02, 2, true),
                     afn(loom_transpose(x, 0, 2), dm2, 1, false)};
    };
    m.ref = [is_max](HostIn in, loom_dtype) {
      auto r1 = max_dim(in[0], 1, false, is_max), r2 = max_dim(transpose(in[0], 0, 2), 0, true, is_max);
      const std::vector<double> &v = in[0].v;
      double all = is_max ? *std::max_element(v.begin(), v.end()) : *std::min_element(v.begin(), v.end());
      HT d02 = max_dim(max_dim(in[0], 2, true, is_max).first, 0, true, is_max).first;
      return Refs{r1.first, r1.second, r2.first, r2.second, HT{{all}, shape_of({}), in[0].dt}, d02,
                  max_dim(transpose(in[0], 0, 2), 1, false, is_max).first};
    };
    m.differentiable = true;
    m.half = false;
    m.dtypes = kFloat;
    cs.push_back(m);
  }

  OpCase isel;
  isel.op = "index_select";
  isel.inputs = {data(LOOM_SHAPE(5, 3, 4)), index(LOOM_SHAPE(6), 5), index(LOOM_SHAPE(4), 3)};
  isel.run = [](const Ctx &k) {
    loom_tensor *x = k.in[0], *i5 = k.in[1], *i3 = k.in[2];
    return Tensors{loom_index_select(x, 0, i5), loom_index_select(x, 1, i3),
                   loom_index_select(loom_transpose(x, 0, 2), 2, i5)};
  };
  isel.ref = [](HostIn in, loom_dtype) {
    return Refs{take(in[0], 0, in[1], false), take(in[0], 1, in[2], false),
                take(transpose(in[0], 0, 2), 2, in[1], false)};
  };

  OpCase gather;
  gather.op = "gather";
  gather.inputs = {data(LOOM_SHAPE(4, 5)), index(LOOM_SHAPE(4, 3), 5), index(LOOM_SHAPE(2, 5), 4)};
  gather.run = [](const Ctx &k) {
    loom_tensor *x = k.in[0], *i1 = k.in[1], *i0 = k.in[2];
    return Tensors{loom_gather(x, 1, i1), loom_gather(x, 0, i0), loom_gather(loom_transpose(x, 0, 1), 1, i0)};
  };
  gather.ref = [](HostIn in, loom_dtype) {
    return Refs{take(in[0], 1, in[1], true), take(in[0], 0, in[2], true), take(transpose(in[0], 0, 1), 1, in[2], true)};
  };

  OpCase scatter;
  scatter.op = "scatter_add";
  // scatter_add, then scatter (the same kernel, overwriting) with one source
  // per written element, so that its gradient is defined; repeated indices
  // are pinned by the PyTorch fixtures. A source larger than the index too.
  scatter.inputs = {data(LOOM_SHAPE(4, 5)), index(LOOM_SHAPE(3, 5), 4), data(LOOM_SHAPE(3, 5)),
                    index(LOOM_SHAPE(4, 2), 5), data(LOOM_SHAPE(4, 2)), index(LOOM_SHAPE(1, 5), 4),
                    data(LOOM_SHAPE(2, 5)), index(LOOM_SHAPE(4, 1), 5), data(LOOM_SHAPE(4, 2))};
  scatter.run = [](const Ctx &k) {
    const Tensors &in = k.in;
    return Tensors{loom_scatter_add(in[0], 0, in[1], in[2]), loom_scatter_add(in[0], 1, in[3], in[4]),
                   loom_scatter(in[0], 0, in[5], in[6]), loom_scatter(in[0], 1, in[7], in[8])};
  };
  scatter.ref = [](HostIn in, loom_dtype) {
    return Refs{scatter_add(in[0], 0, in[1], in[2]), scatter_add(in[0], 1, in[3], in[4]),
                scatter_add(in[0], 0, in[5], in[6], true), scatter_add(in[0], 1, in[7], in[8], true)};
  };
  for (OpCase *c : {&isel, &gather, &scatter}) {
    c->differentiable = true;
    c->half = false;
    c->dtypes = kFloat;
    cs.push_back(*c);
  }

  OpCase onehot;
  onehot.op = "one_hot";
  onehot.inputs = {index(LOOM_SHAPE(2, 3), 4)};
  onehot.run = [](const Ctx &k) { return Tensors{loom_one_hot(k.in[0], 5), loom_one_hot(k.in[0], -1)}; };
  onehot.ref = [](HostIn in, loom_dtype) {
    const HT &i = in[0];
    int64_t n = (int64_t)*std::max_element(i.v.begin(), i.v.end()) + 1;
    auto hot = [&i](int64_t c) {
      return [&i, c](int64_t k) { return (double)((int64_t)i.v[(size_t)(k / c)] == k % c); };
    };
    return Refs{filled(LOOM_SHAPE(2, 3, 5), LOOM_I64, hot(5)), filled(LOOM_SHAPE(2, 3, n), LOOM_I64, hot(n))};
  };
  onehot.differentiable = false;
  onehot.half = false;
  onehot.dtypes = {LOOM_I64};
  cs.push_back(onehot);

  OpCase mm;
  mm.op = "matmul";
  mm.inputs = {data(LOOM_SHAPE(2, 1, 3, 4)), data(LOOM_SHAPE(3, 4, 5)), data(LOOM_SHAPE(4)), data(LOOM_SHAPE(3, 4)),
               data(LOOM_SHAPE(5, 4))};
  mm.run = [](const Ctx &k) {
    loom_tensor *a = k.in[0], *b = k.in[1], *v = k.in[2], *m = k.in[3], *n = k.in[4];
    return Tensors{loom_matmul(a, b), loom_matmul(v, b), loom_matmul(a, v), loom_matmul(m, loom_transpose(n, 0, 1)),
                   loom_matmul(v, v)};
  };
  mm.ref = [](HostIn in, loom_dtype) {
    return Refs{matmul(in[0], in[1]), matmul(in[2], in[1]), matmul(in[0], in[2]), matmul(in[3], transpose(in[4], 0, 1)),
                matmul(in[2], in[2])};
  };
  mm.differentiable = true;
  mm.half = true;
  mm.dtypes = kFloat;
  mm.cuda_f32_bound = 1e-4;
  cs.push_back(mm);
  return cs;
}

}  // namespace opcases
