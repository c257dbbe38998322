// Op cases of the optim family (see tests/op_cases.h): the fused multi-tensor
// updates, each run twice with different options on copies of a two-tensor
// list ([3, 4] and [5]); outputs are the updated params and states.
#pragma once
#include "op_cases_core.h"

namespace opcases {

namespace optim_case {

constexpr int kStates = 3;
inline const loom_shape kShapes[2] = {LOOM_SHAPE(3, 4), LOOM_SHAPE(5)};

// Inputs per entry: param, grad, then kStates states with value ranges
// r[0..2] (square averages must stay >= 0; RMSprop's grad_avg^2 below square_avg).
inline std::vector<In> inputs(const double (&r)[3][2]) {
  std::vector<In> in;
  for (loom_shape s : kShapes) {
    in.push_back(data(s));
    in.push_back(data(s));
    for (int j = 0; j < kStates; j++) in.push_back(data(s, r[j][0], r[j][1]));
  }
  return in;
}

// Clones of entry e's tensors: [param, grad, state0..2].
inline Tensors clones(const Ctx &k, int e) {
  Tensors t;  // cut from the graph: optimisers update leaves, outside autograd
  for (int j = 0; j < 2 + kStates; j++) t.push_back(loom_clone(loom_detach(k.in[(size_t)(e * (2 + kStates) + j)])));
  return t;
}

// Runs update on fresh clones; returns each entry's param and states.
template <class F> Tensors run_on_clones(const Ctx &k, F update) {
  Tensors e0 = clones(k, 0), e1 = clones(k, 1);
  loom_tensor *lists[2 + kStates][2];
  for (int j = 0; j < 2 + kStates; j++) lists[j][0] = e0[(size_t)j], lists[j][1] = e1[(size_t)j];
  if (update(lists) != 0) return Tensors{nullptr};
  Tensors out;
  for (const Tensors *e : {&e0, &e1})
    for (int j = 0; j < 2 + kStates; j++)
      if (j != 1) out.push_back((*e)[(size_t)j]);
  return out;
}

// Host update of one element: p, g, s[3] in place.
using ElemFn = std::function<void(double &p, double g, double *s, int entry)>;

inline Refs ref_update(HostIn in, const ElemFn &f) {
  Refs out;
  for (int e = 0; e < 2; e++) {
    std::vector<HT> t(in.begin() + e * (2 + kStates), in.begin() + (e + 1) * (2 + kStates));
    for (size_t i = 0; i < t[0].v.size(); i++) {
      double s[3] = {t[2].v[i], t[3].v[i], t[4].v[i]};
      f(t[0].v[i], t[1].v[i], s, e);
      for (int j = 0; j < 3; j++) t[(size_t)(2 + j)].v[i] = s[j];
    }
    for (int j = 0; j < 2 + kStates; j++)
      if (j != 1) out.push_back(t[(size_t)j]);
  }
  return out;
}

inline Refs concat(Refs a, const Refs &b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

inline OpCase make(const char *name, const double (&ranges)[3][2]) {
  OpCase c;
  c.op = name;
  c.inputs = inputs(ranges);
  c.differentiable = false;
  c.half = true;
  c.dtypes = kFloat;
  c.cuda_f32_bound = 1e-5;
  return c;
}

}  // namespace optim_case

inline std::vector<OpCase> optim_cases() {
  using namespace optim_case;
  // SGD: momentum with dampening (entry 0 has a buffer, entry 1 starts one), then nesterov + maximize.
  OpCase sgd = make("sgd_step", {{-1, 1}, {-1, 1}, {-1, 1}});
  sgd.run = [](const Ctx &k) {
    loom_fused_scalars sc[2] = {{0.1, 0.01, 3, false}, {0.05, 0.0, 0, true}};
    loom_sgd_opts a{}, b{};
    a.momentum = 0.9, a.dampening = 0.3;
    b.momentum = 0.8, b.nesterov = true, b.maximize = true;
    Tensors x = run_on_clones(k, [&](loom_tensor *(*l)[2]) { return loom_sgd_update(l[0], l[1], l[2], sc, 2, &a); });
    Tensors y = run_on_clones(k, [&](loom_tensor *(*l)[2]) { return loom_sgd_update(l[0], l[1], l[2], sc, 2, &b); });
    x.insert(x.end(), y.begin(), y.end());
    return x;
  };
  sgd.ref = [](HostIn in, loom_dtype) {
    auto f = [](double mom, double damp, bool nesterov, bool maximize) {
      return [=](double &p, double g, double *s, int e) {
        double lr = e == 0 ? 0.1 : 0.05, wd = e == 0 ? 0.01 : 0;
        double d = (maximize ? -g : g) + wd * p;
        s[0] = e == 1 ? d : mom * s[0] + (1 - damp) * d;
        p -= lr * (nesterov ? d + mom * s[0] : s[0]);
      };
    };
    return concat(ref_update(in, f(0.9, 0.3, false, false)), ref_update(in, f(0.8, 0, true, true)));
  };

  // Adam: coupled L2 + amsgrad, then AdamW's decoupled decay + maximize.
  OpCase adam = make("adam_step", {{-1, 1}, {0.1, 2}, {0.5, 3}});
  adam.run = [](const Ctx &k) {
    loom_fused_scalars sc[2] = {{0.01, 0.1, 3, false}, {0.02, 0.05, 1, false}};
    loom_adam_opts a{}, b{};
    a.amsgrad = true, a.beta1 = 0.8;
    b.maximize = true, b.eps = 1e-3;
    Tensors x = run_on_clones(k, [&](loom_tensor *(*l)[2]) {
      return loom_adam_update(l[0], l[1], l[2], l[3], l[4], sc, 2, &a, false);
    });
    Tensors y = run_on_clones(k, [&](loom_tensor *(*l)[2]) {
      return loom_adam_update(l[0], l[1], l[2], l[3], nullptr, sc, 2, &b, true);
    });
    x.insert(x.end(), y.begin(), y.end());
    return x;
  };
  adam.ref = [](HostIn in, loom_dtype) {
    auto f = [](double b1, double eps, bool amsgrad, bool decoupled, bool maximize) {
      return [=](double &p, double g, double *s, int e) {
        double lr = e == 0 ? 0.01 : 0.02, wd = e == 0 ? 0.1 : 0.05, step = e == 0 ? 3 : 1, b2 = 0.999;
        double d = maximize ? -g : g;
        if (decoupled) p *= 1 - lr * wd;
        else d += wd * p;
        s[0] = b1 * s[0] + (1 - b1) * d;
        s[1] = b2 * s[1] + (1 - b2) * d * d;
        double v = s[1];
        if (amsgrad) v = s[2] = std::max(s[2], s[1]);
        double bc1 = 1 - std::pow(b1, step), bc2 = 1 - std::pow(b2, step);
        p -= lr / bc1 * s[0] / (std::sqrt(v) / std::sqrt(bc2) + eps);
      };
    };
    return concat(ref_update(in, f(0.8, 1e-8, true, false, false)), ref_update(in, f(0.9, 1e-3, false, true, true)));
  };

  // RMSprop: centered with momentum and L2, then plain + maximize.
  OpCase rms = make("rmsprop_step", {{-1, 1}, {1, 2}, {-0.3, 0.3}});
  rms.run = [](const Ctx &k) {
    loom_fused_scalars sc[2] = {{0.01, 0.1, 0, false}, {0.02, 0.0, 0, false}};
    loom_rmsprop_opts a{}, b{};
    a.centered = true, a.momentum = 0.9, a.alpha = 0.9;
    b.maximize = true;
    Tensors x = run_on_clones(k, [&](loom_tensor *(*l)[2]) {
      return loom_rmsprop_update(l[0], l[1], l[3], l[2], l[4], sc, 2, &a);
    });
    Tensors y = run_on_clones(k, [&](loom_tensor *(*l)[2]) {
      return loom_rmsprop_update(l[0], l[1], l[3], nullptr, nullptr, sc, 2, &b);
    });
    x.insert(x.end(), y.begin(), y.end());
    return x;
  };
  rms.ref = [](HostIn in, loom_dtype) {
    // states: s[0] = momentum buffer, s[1] = square_avg (>= 0), s[2] = grad_avg (|.| small next to it)
    auto f = [](double alpha, double mom, bool centered, bool maximize) {
      return [=](double &p, double g, double *s, int e) {
        double lr = e == 0 ? 0.01 : 0.02, wd = e == 0 ? 0.1 : 0;
        double d = (maximize ? -g : g) + wd * p;
        s[1] = alpha * s[1] + (1 - alpha) * d * d;
        double avg;
        if (centered) {
          s[2] = alpha * s[2] + (1 - alpha) * d;
          avg = std::sqrt(s[1] - s[2] * s[2]) + 1e-8;
        } else {
          avg = std::sqrt(s[1]) + 1e-8;
        }
        if (mom > 0) {
          s[0] = mom * s[0] + d / avg;
          p -= lr * s[0];
        } else {
          p -= lr * d / avg;
        }
      };
    };
    return concat(ref_update(in, f(0.9, 0.9, true, false)), ref_update(in, f(0.99, 0, false, true)));
  };
  return {sgd, adam, rms};
}

}  // namespace opcases
