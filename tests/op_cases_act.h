// Op cases of the act family (see tests/op_cases.h): leaky_relu, elu, gelu,
// silu, softmax, log_softmax and their backward kernel ops. A backward op is
// reached through autograd: a fresh leaf, the forward op, loom_backward with
// the case's second input as the output gradient; its output is the leaf's grad.
#pragma once
#include "op_cases_core.h"

namespace opcases {

namespace act {

constexpr double kSlope = 0.2, kAlpha = 1.5;

inline double gelu_erf(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
inline double gelu_tanh(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}
inline double silu(double x) { return x / (1 + std::exp(-x)); }
// derivatives, by hand
inline double d_gelu_erf(double x) {
  return 0.5 * (1 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
}
inline double d_gelu_tanh(double x) {
  double k = std::sqrt(2 / M_PI), t = std::tanh(k * (x + 0.044715 * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x);
}
inline double d_silu(double x) {
  double s = 1 / (1 + std::exp(-x));
  return s * (1 + x * (1 - s));
}

// softmax (or log_softmax) of x along dim, in long double.
inline HT softmax(const HT &x, int dim, bool log) {
  if (dim < 0) dim += x.s.ndim;
  HT out = x;
  for (int64_t i = 0; i < (int64_t)x.v.size(); i++) {
    std::vector<int64_t> at = unravel(x.s, i);
    if (at[(size_t)dim] != 0) continue;  // one pass per line, from its first element
    long double m = -INFINITY, s = 0;
    for (int64_t r = 0; r < x.s.d[dim]; r++) {
      at[(size_t)dim] = r;
      m = std::max(m, (long double)x.v[(size_t)ravel(x.s, at)]);
    }
    for (int64_t r = 0; r < x.s.d[dim]; r++) {
      at[(size_t)dim] = r;
      s += std::exp((long double)x.v[(size_t)ravel(x.s, at)] - m);
    }
    for (int64_t r = 0; r < x.s.d[dim]; r++) {
      at[(size_t)dim] = r;
      size_t k = (size_t)ravel(x.s, at);
      long double v = (long double)x.v[k] - m;
      out.v[k] = (double)(log ? v - std::log(s) : std::exp(v) / s);
    }
  }
  return out;
}

// gx of softmax (y(g - sum(g y))) or log_softmax (g - softmax(x) sum(g)) along dim.
inline HT softmax_grad(const HT &x, const HT &g, int dim, bool log) {
  if (dim < 0) dim += x.s.ndim;
  HT y = softmax(x, dim, false), out = x;
  for (int64_t i = 0; i < (int64_t)x.v.size(); i++) {
    std::vector<int64_t> at = unravel(x.s, i);
    if (at[(size_t)dim] != 0) continue;
    long double s = 0;
    for (int64_t r = 0; r < x.s.d[dim]; r++) {
      at[(size_t)dim] = r;
      size_t k = (size_t)ravel(x.s, at);
      s += log ? (long double)g.v[k] : (long double)g.v[k] * y.v[k];
    }
    for (int64_t r = 0; r < x.s.d[dim]; r++) {
      at[(size_t)dim] = r;
      size_t k = (size_t)ravel(x.s, at);
      out.v[k] = (double)(log ? g.v[k] - y.v[k] * s : y.v[k] * (g.v[k] - s));
    }
  }
  return out;
}

// d loss / d x for loss = sum(f(x) * g), through autograd on a fresh leaf.
inline loom_tensor *grad_through(const std::function<loom_tensor *(loom_tensor *)> &f, loom_tensor *x,
                                 loom_tensor *g) {
  loom_tensor *leaf = loom_detach(x);
  if (!leaf || loom_set_requires_grad(leaf, true)) return nullptr;
  loom_tensor *y = f(leaf);
  if (!y || loom_backward(y, g, false)) return nullptr;
  return loom_clone(loom_grad(leaf));
}

inline OpCase act_case(const char *name, const std::function<loom_tensor *(const loom_tensor *, int)> &fn,
                       const std::function<double(double, int)> &f, In x) {
  OpCase c;
  c.op = name;
  c.inputs = {x};
  // variant 0 on x, variant 1 on x transposed (gelu: erf, then tanh)
  c.run = [fn](const Ctx &k) { return Tensors{fn(k.in[0], 0), fn(loom_transpose(k.in[0], 0, 2), 1)}; };
  c.ref = [f](HostIn in, loom_dtype) {
    return Refs{map(in[0], [&](double v) { return f(v, 0); }, in[0].dt),
                map(transpose(in[0], 0, 2), [&](double v) { return f(v, 1); }, in[0].dt)};
  };
  c.differentiable = true;
  c.half = true;
  c.dtypes = kFloat;
  return c;
}

inline OpCase act_backward_case(const char *name, const std::function<loom_tensor *(const loom_tensor *, int)> &fn,
                                const std::function<double(double, int)> &df, In x) {
  OpCase c;
  c.op = name;
  loom_shape s = x.s;
  c.inputs = {x, data(s)};
  c.run = [fn](const Ctx &k) {
    return Tensors{grad_through([&](loom_tensor *t) { return fn(t, 0); }, k.in[0], k.in[1]),
                   grad_through([&](loom_tensor *t) { return fn(t, 1); }, k.in[0], k.in[1])};
  };
  c.ref = [df](HostIn in, loom_dtype) {
    Refs r;
    for (int v = 0; v < 2; v++)
      r.push_back(zip(in[0], in[1], [&](double a, double b) { return b * df(a, v); }, in[0].dt));
    return r;
  };
  c.differentiable = false;  // the gradient itself is not recorded
  c.half = true;
  c.dtypes = kFloat;
  return c;
}

// softmax / log_softmax over dims 1 and -1, and -1 of x transposed (a strided input).
inline OpCase softmax_case(const char *name, bool log) {
  OpCase c;
  c.op = name;
  c.inputs = {data(LOOM_SHAPE(3, 4, 5), -4, 4)};
  auto fn = log ? loom_log_softmax : loom_softmax;
  c.run = [fn](const Ctx &k) {
    return Tensors{fn(k.in[0], 1), fn(k.in[0], -1), fn(loom_transpose(k.in[0], 0, 2), -1), fn(k.in[0], 0)};
  };
  c.ref = [log](HostIn in, loom_dtype) {
    return Refs{softmax(in[0], 1, log), softmax(in[0], -1, log), softmax(transpose(in[0], 0, 2), -1, log),
                softmax(in[0], 0, log)};
  };
  c.differentiable = true;
  c.half = true;
  c.dtypes = kFloat;
  return c;
}

inline OpCase softmax_backward_case(const char *name, bool log) {
  OpCase c;
  c.op = name;
  c.inputs = {data(LOOM_SHAPE(3, 4, 5), -4, 4), data(LOOM_SHAPE(3, 4, 5))};
  auto fn = log ? loom_log_softmax : loom_softmax;
  c.run = [fn](const Ctx &k) {
    Tensors out;
    for (int d : {1, -1, 0})
      out.push_back(grad_through([&](loom_tensor *t) { return fn(t, d); }, k.in[0], k.in[1]));
    return out;
  };
  c.ref = [log](HostIn in, loom_dtype) {
    return Refs{softmax_grad(in[0], in[1], 1, log), softmax_grad(in[0], in[1], -1, log),
                softmax_grad(in[0], in[1], 0, log)};
  };
  c.differentiable = false;
  c.half = true;
  c.dtypes = kFloat;
  return c;
}

}  // namespace act

inline std::vector<OpCase> act_cases() {
  using namespace act;
  loom_shape s = LOOM_SHAPE(3, 4, 5);
  In kinked = data(s, -3, 3, {0});
  auto leaky = [](const loom_tensor *x, int) { return loom_leaky_relu(x, kSlope); };
  auto elu = [](const loom_tensor *x, int) { return loom_elu(x, kAlpha); };
  auto gelu = [](const loom_tensor *x, int v) { return loom_gelu(x, v == 1); };
  auto silu_fn = [](const loom_tensor *x, int) { return loom_silu(x); };
  auto relu_fn = [](const loom_tensor *x, int) { return loom_relu(x); };
  return {
      act_case("leaky_relu", leaky, [](double x, int) { return x > 0 ? x : kSlope * x; }, kinked),
      act_case("elu", elu, [](double x, int) { return x > 0 ? x : kAlpha * (std::exp(x) - 1); }, kinked),
      act_case("gelu", gelu, [](double x, int v) { return v ? gelu_tanh(x) : gelu_erf(x); }, data(s, -4, 4)),
      act_case("silu", silu_fn, [](double x, int) { return silu(x); }, data(s, -4, 4)),
      act_backward_case("leaky_relu_backward", leaky, [](double x, int) { return x > 0 ? 1 : kSlope; }, kinked),
      act_backward_case("elu_backward", elu, [](double x, int) { return x > 0 ? 1 : kAlpha * std::exp(x); }, kinked),
      act_backward_case("gelu_backward", gelu, [](double x, int v) { return v ? d_gelu_tanh(x) : d_gelu_erf(x); },
                        data(s, -4, 4)),
      act_backward_case("silu_backward", silu_fn, [](double x, int) { return d_silu(x); }, data(s, -4, 4)),
      act_backward_case("relu_backward", relu_fn, [](double x, int) { return x > 0 ? 1 : 0; }, kinked),
      softmax_case("softmax", false),
      softmax_case("log_softmax", true),
      softmax_backward_case("softmax_backward", false),
      softmax_backward_case("log_softmax_backward", true),
  };
}

}  // namespace opcases
