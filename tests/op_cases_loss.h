// Op cases of the loss family (see tests/op_cases.h): the fused cross-entropy
// and its backward, reached through loom_cross_entropy, against a host
// reference of PyTorch's formula (weights, ignore_index, label smoothing).
#pragma once
#include "op_cases_core.h"

namespace opcases {

// Host cross-entropy of x [N, C, d...] (D = prod d) with class targets t [N, d...]:
// per-target loss, and the gradient of sum(loss * g) when g is given.
struct HostCe {
  std::vector<double> loss, grad;
  double wsum = 0;  // summed weight of the non-ignored targets
};

inline HostCe host_ce(const HT &x, const HT &t, const std::vector<double> &w, int64_t ignore, double s,
                      const std::vector<double> *g = nullptr) {
  const int64_t N = x.s.d[0], C = x.s.d[1], D = (int64_t)x.v.size() / (N * C);
  double W = 0;
  for (double v : w) W += v;
  HostCe r;
  r.loss.assign((size_t)(N * D), 0);
  r.grad.assign(x.v.size(), 0);
  for (int64_t n = 0; n < N; n++)
    for (int64_t d = 0; d < D; d++) {
      auto at = [&](int64_t c) { return (size_t)((n * C + c) * D + d); };
      const int64_t tr = (int64_t)t.v[(size_t)(n * D + d)];
      if (tr == ignore) continue;
      double m = -INFINITY, acc = 0, sw = 0;
      for (int64_t c = 0; c < C; c++) m = std::max(m, x.v[at(c)]);
      for (int64_t c = 0; c < C; c++) acc += std::exp(x.v[at(c)] - m), sw += w[(size_t)c] * x.v[at(c)];
      const double lse = m + std::log(acc);
      r.loss[(size_t)(n * D + d)] = (1 - s) * w[(size_t)tr] * (lse - x.v[at(tr)]) + s / (double)C * (W * lse - sw);
      r.wsum += w[(size_t)tr];
      if (!g) continue;
      const double gr = (*g)[(size_t)(n * D + d)];
      for (int64_t c = 0; c < C; c++) {
        double p = std::exp(x.v[at(c)] - lse);
        r.grad[at(c)] = gr * ((1 - s) * w[(size_t)tr] * (p - (c == tr ? 1 : 0)) + s / (double)C * (W * p - w[(size_t)c]));
      }
    }
  return r;
}

inline const std::vector<double> kCeWeight = {0.5, 1.0, 2.0, 1.5, 0.75};
inline const std::vector<double> kCeGrad = {1.0, -0.5, 2.0, 0.25, -1.5, 0.75};

inline loom_cross_entropy_opts ce_case_opts(const loom_tensor *w) {
  loom_cross_entropy_opts o = {};
  o.weight = w;
  o.set_ignore_index = true;  // class 1 ignored: random targets hit it
  o.ignore_index = 1;
  o.label_smoothing = 0.1;
  o.reduction = LOOM_REDUCTION_NONE;
  return o;
}

inline std::vector<OpCase> loss_cases() {
  OpCase fwd;
  fwd.op = "cross_entropy";
  fwd.inputs = {data(LOOM_SHAPE(6, 5)), index(LOOM_SHAPE(6), 5), data(LOOM_SHAPE(2, 4, 3)), index(LOOM_SHAPE(2, 3), 4)};
  fwd.run = [](const Ctx &k) {
    loom_tensor *w = T(kCeWeight, LOOM_SHAPE(5), k.dt, k.dev);
    loom_cross_entropy_opts o = ce_case_opts(w);
    return Tensors{loom_cross_entropy(k.in[0], k.in[1], &o), loom_cross_entropy(k.in[2], k.in[3], nullptr)};
  };
  fwd.ref = [](HostIn in, loom_dtype dt) {
    HostCe a = host_ce(in[0], in[1], kCeWeight, 1, 0.1);
    HostCe b = host_ce(in[2], in[3], {1, 1, 1, 1}, -100, 0);
    double sum = 0;
    for (double v : b.loss) sum += v;
    return Refs{HT{a.loss, shape_of({6}), dt}, HT{{sum / b.wsum}, shape_of({}), dt}};
  };
  fwd.differentiable = true;
  fwd.half = true;
  fwd.dtypes = kFloat;

  // The gradient of sum(loss * g) w.r.t. the logits: the backward kernel.
  OpCase bwd;
  bwd.op = "cross_entropy_backward";
  bwd.inputs = {data(LOOM_SHAPE(6, 5)), index(LOOM_SHAPE(6), 5)};
  bwd.run = [](const Ctx &k) {
    loom_tensor *x = loom_detach(k.in[0]);
    if (loom_set_requires_grad(x, true)) return Tensors{nullptr};
    loom_cross_entropy_opts o = ce_case_opts(T(kCeWeight, LOOM_SHAPE(5), k.dt, k.dev));
    loom_tensor *loss = loom_cross_entropy(x, k.in[1], &o);
    if (!loss || loom_backward(loss, T(kCeGrad, LOOM_SHAPE(6), k.dt, k.dev), false)) return Tensors{nullptr};
    return Tensors{loom_clone(loom_grad(x))};
  };
  bwd.ref = [](HostIn in, loom_dtype dt) {
    return Refs{HT{host_ce(in[0], in[1], kCeWeight, 1, 0.1, &kCeGrad).grad, in[0].s, dt}};
  };
  bwd.differentiable = false;
  bwd.half = true;
  bwd.dtypes = kFloat;
  return {fwd, bwd};
}

}  // namespace opcases
