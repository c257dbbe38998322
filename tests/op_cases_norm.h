// Op cases of the norm family (see tests/op_cases.h): batch, layer and group
// norm forward kernels through loom_batch_norm / loom_layer_norm /
// loom_group_norm / loom_instance_norm, and their backward kernels through a
// backward pass on fresh leaves.
#pragma once
#include "op_cases_core.h"

namespace opcases {

// Which statistics group and which weight / bias element each flat index of x uses.
struct NormMap {
  std::function<int64_t(int64_t)> group, param;
  int64_t ngroups, nparams;
};

// [N, C, S] per channel (batch norm).
inline NormMap bn_map(loom_shape s) {
  int64_t C = s.d[1], S = 1;
  for (int i = 2; i < s.ndim; i++) S *= s.d[i];
  auto ch = [C, S](int64_t i) { return i / S % C; };
  return {ch, ch, C, C};
}
// Rows of K (layer norm over the last dims holding K elements).
inline NormMap ln_map(loom_shape s, int64_t K) {
  return {[K](int64_t i) { return i / K; }, [K](int64_t i) { return i % K; }, loom_shape_numel(s) / K, K};
}
// [N, C, S] in G groups of channels (group norm; G = C is instance norm).
inline NormMap gn_map(loom_shape s, int64_t G) {
  int64_t C = s.d[1], S = 1;
  for (int i = 2; i < s.ndim; i++) S *= s.d[i];
  int64_t L = C / G * S;
  return {[L](int64_t i) { return i / L; }, [C, S](int64_t i) { return i / S % C; }, s.d[0] * G, C};
}

// Forward ({y}) or, with dy, backward ({dx, dweight, dbias}) of a training-mode
// norm; w / b nullptr = ones / zeros.
inline Refs norm_ref(const HT &x, const HT *w, const HT *b, const HT *dy, const NormMap &m, double eps) {
  size_t n = x.v.size();
  std::vector<long double> sum((size_t)m.ngroups, 0), sq((size_t)m.ngroups, 0), cnt((size_t)m.ngroups, 0);
  for (size_t i = 0; i < n; i++) sum[(size_t)m.group((int64_t)i)] += x.v[i], cnt[(size_t)m.group((int64_t)i)] += 1;
  std::vector<double> mean((size_t)m.ngroups), r((size_t)m.ngroups);
  for (size_t g = 0; g < mean.size(); g++) mean[g] = (double)(sum[g] / cnt[g]);
  for (size_t i = 0; i < n; i++) {
    double d = x.v[i] - mean[(size_t)m.group((int64_t)i)];
    sq[(size_t)m.group((int64_t)i)] += d * d;
  }
  for (size_t g = 0; g < r.size(); g++) r[g] = 1 / std::sqrt((double)(sq[g] / cnt[g]) + eps);
  auto W = [&](size_t i) { return w ? w->v[(size_t)m.param((int64_t)i)] : 1.0; };
  auto xhat = [&](size_t i) { size_t g = (size_t)m.group((int64_t)i); return (x.v[i] - mean[g]) * r[g]; };
  if (!dy) {
    HT y = x;
    for (size_t i = 0; i < n; i++) y.v[i] = xhat(i) * W(i) + (b ? b->v[(size_t)m.param((int64_t)i)] : 0.0);
    return {y};
  }
  std::vector<long double> s1((size_t)m.ngroups, 0), s2((size_t)m.ngroups, 0);
  HT dw{std::vector<double>((size_t)m.nparams, 0), shape_of({m.nparams}), x.dt}, db = dw;
  for (size_t i = 0; i < n; i++) {
    size_t g = (size_t)m.group((int64_t)i), p = (size_t)m.param((int64_t)i);
    double gh = dy->v[i] * W(i);
    s1[g] += gh;
    s2[g] += gh * xhat(i);
    dw.v[p] += dy->v[i] * xhat(i);
    db.v[p] += dy->v[i];
  }
  HT dx = x;
  for (size_t i = 0; i < n; i++) {
    size_t g = (size_t)m.group((int64_t)i);
    dx.v[i] = r[g] * (dy->v[i] * W(i) - (double)(s1[g] / cnt[g]) - xhat(i) * (double)(s2[g] / cnt[g]));
  }
  return {dx, dw, db};
}

// Runs fwd on fresh leaf copies of in[0..2] (x, weight, bias), back-propagates
// in[3] (dy) and returns the three gradients.
inline Tensors norm_grads(const Ctx &k, const std::function<loom_tensor *(const Tensors &)> &fwd) {
  Tensors leaves;
  for (int i = 0; i < 3; i++) {
    leaves.push_back(loom_detach(k.in[(size_t)i]));
    loom_set_requires_grad(leaves.back(), true);
  }
  loom_tensor *y = fwd(leaves);
  if (!y || loom_backward(y, k.in[3], false) != 0) return {nullptr, nullptr, nullptr};
  return {loom_clone(loom_grad(leaves[0])), loom_clone(loom_grad(leaves[1])), loom_clone(loom_grad(leaves[2]))};
}

inline OpCase norm_case(const char *op, std::vector<In> in, std::function<Tensors(const Ctx &)> run,
                        std::function<Refs(HostIn)> ref, bool differentiable) {
  OpCase c;
  c.op = op;
  c.inputs = std::move(in);
  c.run = std::move(run);
  c.ref = [ref](HostIn h, loom_dtype) { return ref(h); };
  c.differentiable = differentiable;
  c.half = true;
  c.dtypes = kFloat;
  c.cuda_f32_bound = 2e-5;
  return c;
}

inline std::vector<OpCase> norm_cases() {
  const double eps = 1e-5;
  const loom_shape xs = LOOM_SHAPE(3, 4, 5), gs = LOOM_SHAPE(2, 6, 5);
  std::vector<OpCase> cs;

  // batch norm: affine and not; plus a 2-d input [N, C]
  cs.push_back(norm_case(
      "batch_norm", {data(xs), data(LOOM_SHAPE(4)), data(LOOM_SHAPE(4)), data(LOOM_SHAPE(6, 4))},
      [](const Ctx &k) {
        return Tensors{loom_batch_norm(k.in[0], nullptr, nullptr, k.in[1], k.in[2], true, 0.1, 1e-5),
                       loom_batch_norm(k.in[0], nullptr, nullptr, nullptr, nullptr, true, 0.1, 1e-5),
                       loom_batch_norm(k.in[3], nullptr, nullptr, k.in[1], k.in[2], true, 0.1, 1e-5)};
      },
      [=](HostIn h) {
        return Refs{norm_ref(h[0], &h[1], &h[2], nullptr, bn_map(xs), eps)[0],
                    norm_ref(h[0], nullptr, nullptr, nullptr, bn_map(xs), eps)[0],
                    norm_ref(h[3], &h[1], &h[2], nullptr, bn_map(h[3].s), eps)[0]};
      },
      true));
  cs.push_back(norm_case(
      "batch_norm_backward", {data(xs), data(LOOM_SHAPE(4)), data(LOOM_SHAPE(4)), data(xs)},
      [](const Ctx &k) {
        return norm_grads(k, [](const Tensors &l) {
          return loom_batch_norm(l[0], nullptr, nullptr, l[1], l[2], true, 0.1, 1e-5);
        });
      },
      [=](HostIn h) { return norm_ref(h[0], &h[1], &h[2], &h[3], bn_map(xs), eps); }, false));

  // eval-mode batch norm (running statistics) without gradients: one
  // per-channel affine pass; affine and not, and a 2-d input [N, C]
  cs.push_back(norm_case(
      "channel_affine",
      {data(xs), data(LOOM_SHAPE(4)), data(LOOM_SHAPE(4), 0.25, 2), data(LOOM_SHAPE(4)), data(LOOM_SHAPE(4)),
       data(LOOM_SHAPE(6, 4))},
      [](const Ctx &k) {
        return Tensors{loom_batch_norm(k.in[0], k.in[1], k.in[2], k.in[3], k.in[4], false, 0.1, 1e-5),
                       loom_batch_norm(k.in[0], k.in[1], k.in[2], nullptr, nullptr, false, 0.1, 1e-5),
                       loom_batch_norm(k.in[5], k.in[1], k.in[2], k.in[3], k.in[4], false, 0.1, 1e-5)};
      },
      [=](HostIn h) {
        auto ref = [&](const HT &x, bool affine) {
          HT y = x;
          int64_t C = x.s.d[1], S = (int64_t)x.v.size() / (x.s.d[0] * C);
          for (size_t i = 0; i < y.v.size(); i++) {
            size_t c = (size_t)((int64_t)i / S % C);
            double v = (x.v[i] - h[1].v[c]) / std::sqrt(h[2].v[c] + eps);
            y.v[i] = affine ? v * h[3].v[c] + h[4].v[c] : v;
          }
          return y;
        };
        return Refs{ref(h[0], true), ref(h[0], false), ref(h[5], true)};
      },
      true));  // with gradients the same call takes the composed path, which the gradcheck covers

  // layer norm: over the last dim with affine, over the last two without,
  // and on a non-contiguous input
  cs.push_back(norm_case(
      "layer_norm", {data(xs), data(LOOM_SHAPE(5)), data(LOOM_SHAPE(5))},
      [](const Ctx &k) {
        static const int64_t last[] = {5}, last2[] = {4, 5};
        return Tensors{loom_layer_norm(k.in[0], last, 1, k.in[1], k.in[2], 1e-5),
                       loom_layer_norm(k.in[0], last2, 2, nullptr, nullptr, 1e-5),
                       loom_layer_norm(loom_transpose(k.in[0], 0, 1), last, 1, k.in[1], k.in[2], 1e-5)};
      },
      [=](HostIn h) {
        HT t = transpose(h[0], 0, 1);
        return Refs{norm_ref(h[0], &h[1], &h[2], nullptr, ln_map(xs, 5), eps)[0],
                    norm_ref(h[0], nullptr, nullptr, nullptr, ln_map(xs, 20), eps)[0],
                    norm_ref(t, &h[1], &h[2], nullptr, ln_map(t.s, 5), eps)[0]};
      },
      true));
  cs.push_back(norm_case(
      "layer_norm_backward", {data(xs), data(LOOM_SHAPE(5)), data(LOOM_SHAPE(5)), data(xs)},
      [](const Ctx &k) {
        return norm_grads(k, [](const Tensors &l) {
          static const int64_t last[] = {5};
          return loom_layer_norm(l[0], last, 1, l[1], l[2], 1e-5);
        });
      },
      [=](HostIn h) { return norm_ref(h[0], &h[1], &h[2], &h[3], ln_map(xs, 5), eps); }, false));

  // group norm in 3 and 2 groups, and instance norm (one channel per group)
  cs.push_back(norm_case(
      "group_norm", {data(gs), data(LOOM_SHAPE(6)), data(LOOM_SHAPE(6))},
      [](const Ctx &k) {
        return Tensors{loom_group_norm(k.in[0], 3, k.in[1], k.in[2], 1e-5),
                       loom_group_norm(k.in[0], 2, nullptr, nullptr, 1e-5),
                       loom_instance_norm(k.in[0], nullptr, nullptr, k.in[1], k.in[2], true, 0.1, 1e-5)};
      },
      [=](HostIn h) {
        return Refs{norm_ref(h[0], &h[1], &h[2], nullptr, gn_map(gs, 3), eps)[0],
                    norm_ref(h[0], nullptr, nullptr, nullptr, gn_map(gs, 2), eps)[0],
                    norm_ref(h[0], &h[1], &h[2], nullptr, gn_map(gs, 6), eps)[0]};
      },
      true));
  cs.push_back(norm_case(
      "group_norm_backward", {data(gs), data(LOOM_SHAPE(6)), data(LOOM_SHAPE(6)), data(gs)},
      [](const Ctx &k) {
        return norm_grads(k, [](const Tensors &l) { return loom_group_norm(l[0], 3, l[1], l[2], 1e-5); });
      },
      [=](HostIn h) { return norm_ref(h[0], &h[1], &h[2], &h[3], gn_map(gs, 3), eps); }, false));
  return cs;
}

}  // namespace opcases
