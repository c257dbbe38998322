// Op cases of the rnn family (see tests/op_cases.h): the fused LSTM cell
// pointwise op and its backward.
#pragma once
#include <cmath>

#include "op_cases_core.h"

namespace opcases {

namespace rnn {

inline double sig(double x) { return 1 / (1 + std::exp(-x)); }

// Host LSTM pointwise step: gates [N, 4H] (i, f, g, o), c [N, H]. Returns
// {h', c'}; with grad ([2, N, H], of h' then c') also {d gates, d c}.
inline Refs lstm_ref(const HT &gates, const HT &c, const HT *grad) {
  const int64_t N = c.s.d[0], H = c.s.d[1];
  HT h1{std::vector<double>((size_t)(N * H)), c.s, c.dt}, c1 = h1, dc = h1;
  HT dg{std::vector<double>((size_t)(N * 4 * H)), gates.s, gates.dt};
  for (int64_t n = 0; n < N; n++)
    for (int64_t j = 0; j < H; j++) {
      const double *a = &gates.v[(size_t)(n * 4 * H)];
      size_t e = (size_t)(n * H + j);
      double i = sig(a[j]), f = sig(a[H + j]), g = std::tanh(a[2 * H + j]), o = sig(a[3 * H + j]);
      double cn = f * c.v[e] + i * g, tc = std::tanh(cn);
      c1.v[e] = cn;
      h1.v[e] = o * tc;
      if (!grad) continue;
      double gh = grad->v[e], gc = grad->v[(size_t)(N * H) + e], dcn = gc + gh * o * (1 - tc * tc);
      double *d = &dg.v[(size_t)(n * 4 * H)];
      d[j] = dcn * g * i * (1 - i);
      d[H + j] = dcn * c.v[e] * f * (1 - f);
      d[2 * H + j] = dcn * i * (1 - g * g);
      d[3 * H + j] = gh * tc * o * (1 - o);
      dc.v[e] = dcn * f;
    }
  return grad ? Refs{dg, dc} : Refs{h1, c1};
}

}  // namespace rnn

inline std::vector<OpCase> rnn_cases() {
  OpCase fw;
  fw.op = "lstm_pointwise";
  // c comes transposed (a strided input the op must make contiguous)
  fw.inputs = {data(LOOM_SHAPE(3, 20), -3, 3), data(LOOM_SHAPE(5, 3))};
  fw.run = [](const Ctx &k) {
    loom_tensor *c1 = nullptr;
    loom_tensor *h1 = loom_lstm_gates(k.in[0], loom_transpose(k.in[1], 0, 1), &c1);
    return Tensors{h1, c1};
  };
  fw.ref = [](HostIn in, loom_dtype) { return rnn::lstm_ref(in[0], transpose(in[1], 0, 1), nullptr); };
  fw.differentiable = true;
  fw.half = true;
  fw.dtypes = kFloat;

  OpCase bw;
  bw.op = "lstm_pointwise_backward";
  bw.inputs = {data(LOOM_SHAPE(3, 20), -3, 3), data(LOOM_SHAPE(3, 5)), data(LOOM_SHAPE(2, 3, 5))};
  bw.run = [](const Ctx &k) {
    loom_tensor *g = loom_detach(k.in[0]), *c = loom_detach(k.in[1]), *c1 = nullptr;
    if (!g || !c || loom_set_requires_grad(g, true) || loom_set_requires_grad(c, true)) return Tensors{};
    loom_tensor *h1 = loom_lstm_gates(g, c, &c1);
    loom_tensor *both[2] = {h1, c1};
    loom_tensor *y = h1 ? loom_stack(both, 2, 0) : nullptr;
    if (!y || loom_backward(y, k.in[2], false)) return Tensors{};
    return Tensors{loom_clone(loom_grad(g)), loom_clone(loom_grad(c))};
  };
  bw.ref = [](HostIn in, loom_dtype) { return rnn::lstm_ref(in[0], in[1], &in[2]); };
  bw.differentiable = false;  // the gradient itself is not recorded
  bw.half = true;
  bw.dtypes = kFloat;
  return {fw, bw};
}

}  // namespace opcases
