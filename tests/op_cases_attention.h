// Op cases of the attention family (see tests/op_cases.h): the fused scaled
// dot-product attention forward (sdpa) and backward (sdpa_backward), checked
// against a naive host reference (scores, softmax, weighted sum in double).
#pragma once
#include <limits>

#include "op_cases_core.h"

namespace opcases {

// Geometry of the cases: batch 2, 4 query heads over 2 key/value heads (GQA),
// 5 queries, 7 keys, E = 8, Ev = 6.
constexpr int64_t kAB = 2, kAHq = 4, kAHkv = 2, kAL = 5, kAS = 7, kAE = 8, kAEv = 6;

// Additive [Hq, 1, S] mask used by the float-mask outputs (a constant, not an input).
inline double attn_case_bias(int64_t h, int64_t j) { return -0.25 * (double)((h + 2 * j) % 5); }

// Naive attention on host tensors; mask(b, h, i, j) returns the additive term (may be -inf).
// With w (grad of out) non-null, also fills dq, dk, dv.
inline HT attn_ref(const HT &q, const HT &k, const HT &v, bool causal, double scale,
                   const std::function<double(int64_t, int64_t, int64_t, int64_t)> &mask, const HT *w = nullptr,
                   HT *dq = nullptr, HT *dk = nullptr, HT *dv = nullptr) {
  const double ninf = -std::numeric_limits<double>::infinity();
  HT out{std::vector<double>((size_t)(kAB * kAHq * kAL * kAEv)), shape_of({kAB, kAHq, kAL, kAEv}), q.dt};
  if (w) {
    *dq = {std::vector<double>(q.v.size()), q.s, q.dt};
    *dk = {std::vector<double>(k.v.size()), k.s, k.dt};
    *dv = {std::vector<double>(v.v.size()), v.s, v.dt};
  }
  for (int64_t b = 0; b < kAB; b++)
    for (int64_t h = 0; h < kAHq; h++) {
      int64_t hk = h / (kAHq / kAHkv);
      auto Q = [&](int64_t i, int64_t e) { return q.v[(size_t)(((b * kAHq + h) * kAL + i) * kAE + e)]; };
      auto K = [&](int64_t j, int64_t e) { return k.v[(size_t)(((b * kAHkv + hk) * kAS + j) * kAE + e)]; };
      auto Vv = [&](int64_t j, int64_t e) { return v.v[(size_t)(((b * kAHkv + hk) * kAS + j) * kAEv + e)]; };
      for (int64_t i = 0; i < kAL; i++) {
        std::vector<double> s((size_t)kAS), p((size_t)kAS, 0.0);
        double m = ninf;
        for (int64_t j = 0; j < kAS; j++) {
          double d = 0;
          for (int64_t e = 0; e < kAE; e++) d += Q(i, e) * K(j, e);
          s[(size_t)j] = causal && j > i ? ninf : d * scale + mask(b, h, i, j);
          m = std::max(m, s[(size_t)j]);
        }
        double l = 0;
        if (m != ninf)
          for (int64_t j = 0; j < kAS; j++) l += p[(size_t)j] = std::exp(s[(size_t)j] - m);
        for (int64_t j = 0; j < kAS; j++) p[(size_t)j] = l > 0 ? p[(size_t)j] / l : 0;
        for (int64_t e = 0; e < kAEv; e++) {
          double o = 0;
          for (int64_t j = 0; j < kAS; j++) o += p[(size_t)j] * Vv(j, e);
          out.v[(size_t)(((b * kAHq + h) * kAL + i) * kAEv + e)] = o;
        }
        if (!w) continue;
        auto Wg = [&](int64_t e) { return w->v[(size_t)(((b * kAHq + h) * kAL + i) * kAEv + e)]; };
        std::vector<double> dp((size_t)kAS);
        double D = 0;
        for (int64_t j = 0; j < kAS; j++) {
          for (int64_t e = 0; e < kAEv; e++) dp[(size_t)j] += Wg(e) * Vv(j, e);
          D += p[(size_t)j] * dp[(size_t)j];
        }
        for (int64_t j = 0; j < kAS; j++) {
          double ds = p[(size_t)j] * (dp[(size_t)j] - D) * scale;
          for (int64_t e = 0; e < kAE; e++) {
            dq->v[(size_t)(((b * kAHq + h) * kAL + i) * kAE + e)] += ds * K(j, e);
            dk->v[(size_t)(((b * kAHkv + hk) * kAS + j) * kAE + e)] += ds * Q(i, e);
          }
          for (int64_t e = 0; e < kAEv; e++) dv->v[(size_t)(((b * kAHkv + hk) * kAS + j) * kAEv + e)] += p[(size_t)j] * Wg(e);
        }
      }
    }
  return out;
}

// The float mask as a tensor [Hq, 1, S] on dev in dtype dt.
inline loom_tensor *attn_case_float_mask(loom_device dev, loom_dtype dt) {
  std::vector<double> m;
  for (int64_t h = 0; h < kAHq; h++)
    for (int64_t j = 0; j < kAS; j++) m.push_back(attn_case_bias(h, j));
  return T(m, LOOM_SHAPE(kAHq, 1, kAS), dt == LOOM_F64 ? LOOM_F64 : LOOM_F32, dev);
}

inline std::vector<OpCase> attention_cases() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<In> ins = {data(LOOM_SHAPE(kAB, kAHq, kAL, kAE)), data(LOOM_SHAPE(kAB, kAHkv, kAS, kAE)),
                               data(LOOM_SHAPE(kAB, kAHkv, kAS, kAEv)), boolean(LOOM_SHAPE(kAL, kAS))};
  auto none = [](int64_t, int64_t, int64_t, int64_t) { return 0.0; };
  auto boolmask = [](const HT &m) {
    return [m](int64_t, int64_t, int64_t i, int64_t j) {
      return m.v[(size_t)(i * kAS + j)] != 0 ? 0.0 : -std::numeric_limits<double>::infinity();
    };
  };
  auto bias = [](int64_t, int64_t h, int64_t, int64_t j) { return attn_case_bias(h, j); };

  OpCase f;
  f.op = "sdpa";
  f.inputs = ins;
  f.run = [nan](const Ctx &c) {
    loom_tensor *q = c.in[0], *k = c.in[1], *v = c.in[2], *m = c.in[3];
    return Tensors{loom_scaled_dot_product_attention(q, k, v, nullptr, 0, false, nan),
                   loom_scaled_dot_product_attention(q, k, v, m, 0, true, 0.5),
                   loom_scaled_dot_product_attention(q, k, v, attn_case_float_mask(c.dev, c.dt), 0, false, nan)};
  };
  f.ref = [=](HostIn in, loom_dtype) {
    double sc = 1 / std::sqrt((double)kAE);
    return Refs{attn_ref(in[0], in[1], in[2], false, sc, none), attn_ref(in[0], in[1], in[2], true, 0.5, boolmask(in[3])),
                attn_ref(in[0], in[1], in[2], false, sc, bias)};
  };
  f.differentiable = true;
  f.half = true;
  f.dtypes = kFloat;
  f.cuda_f32_bound = 1e-5;

  // Gradients through the op's backward (causal + bool mask, GQA), against the host reference.
  OpCase bw;
  bw.op = "sdpa_backward";
  bw.inputs = ins;
  bw.inputs.push_back(data(LOOM_SHAPE(kAB, kAHq, kAL, kAEv)));
  bw.run = [](const Ctx &c) {
    Tensors leaves, out;
    for (int i = 0; i < 3; i++) {
      leaves.push_back(loom_detach(c.in[(size_t)i]));
      if (loom_set_requires_grad(leaves.back(), true)) return Tensors{nullptr};
    }
    loom_tensor *o = loom_scaled_dot_product_attention(leaves[0], leaves[1], leaves[2], c.in[3], 0, true, 0.5);
    if (!o || loom_backward(o, c.in[4], false)) return Tensors{nullptr};
    for (loom_tensor *l : leaves) out.push_back(loom_clone(loom_grad(l)));
    return out;
  };
  bw.ref = [=](HostIn in, loom_dtype) {
    HT dq, dk, dv;
    attn_ref(in[0], in[1], in[2], true, 0.5, boolmask(in[3]), &in[4], &dq, &dk, &dv);
    return Refs{dq, dk, dv};
  };
  bw.differentiable = false;
  bw.half = true;
  bw.dtypes = kFloat;
  bw.cuda_f32_bound = 1e-5;
  return {f, bw};
}

}  // namespace opcases
