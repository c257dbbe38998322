// Op cases of the conv family (see tests/op_cases.h): conv2d and its two
// backward ops, max_pool2d, avg_pool2d and its backward. The host references
// are direct loops over the definitions. Backward ops without a public
// function of their own are reached through autograd on a detached leaf.
#pragma once
#include "op_cases_core.h"

namespace opcases {

// Conv geometry of a case: stride, padding, dilation (h, w), groups.
struct ConvGeom {
  int64_t sh, sw, ph, pw, dh, dw, g;
  loom_conv_opts opts() const {
    loom_conv_opts o{};
    o.stride[0] = (int)sh, o.stride[1] = (int)sw, o.padding[0] = (int)ph, o.padding[1] = (int)pw;
    o.dilation[0] = (int)dh, o.dilation[1] = (int)dw, o.groups = (int)g;
    return o;
  }
};

// Calls f(x index, w index, y index) for every product of the convolution of
// x shape xs with w shape ws into y shape ys.
inline void conv_products(loom_shape xs, loom_shape ws, loom_shape ys, const ConvGeom &c,
                          const std::function<void(int64_t, int64_t, int64_t)> &f) {
  int64_t N = xs.d[0], C = xs.d[1], H = xs.d[2], W = xs.d[3], Co = ws.d[0], Cg = ws.d[1];
  int64_t kh = ws.d[2], kw = ws.d[3], Ho = ys.d[2], Wo = ys.d[3], Cog = Co / c.g;
  for (int64_t n = 0; n < N; n++)
    for (int64_t co = 0; co < Co; co++)
      for (int64_t ci = 0; ci < Cg; ci++)
        for (int64_t i = 0; i < kh; i++)
          for (int64_t j = 0; j < kw; j++)
            for (int64_t oh = 0; oh < Ho; oh++)
              for (int64_t ow = 0; ow < Wo; ow++) {
                int64_t ih = oh * c.sh - c.ph + i * c.dh, iw = ow * c.sw - c.pw + j * c.dw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                int64_t cx = co / Cog * Cg + ci;
                f(((n * C + cx) * H + ih) * W + iw, ((co * Cg + ci) * kh + i) * kw + j,
                  ((n * Co + co) * Ho + oh) * Wo + ow);
              }
}

inline int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
  return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

inline HT ref_conv2d(const HT &x, const HT &w, const ConvGeom &c) {
  loom_shape ys = shape_of({x.s.d[0], w.s.d[0], conv_out(x.s.d[2], w.s.d[2], c.sh, c.ph, c.dh),
                            conv_out(x.s.d[3], w.s.d[3], c.sw, c.pw, c.dw)});
  HT y{std::vector<double>((size_t)loom_shape_numel(ys), 0.0), ys, x.dt};
  conv_products(x.s, w.s, ys, c, [&](int64_t xi, int64_t wi, int64_t yi) { y.v[(size_t)yi] += x.v[(size_t)xi] * w.v[(size_t)wi]; });
  return y;
}

// Gradient of the convolution's input (x shape xs) from gy: the transposed convolution.
inline HT ref_conv_bwd_input(const HT &gy, const HT &w, loom_shape xs, const ConvGeom &c) {
  HT gx{std::vector<double>((size_t)loom_shape_numel(xs), 0.0), xs, gy.dt};
  conv_products(xs, w.s, gy.s, c, [&](int64_t xi, int64_t wi, int64_t yi) { gx.v[(size_t)xi] += gy.v[(size_t)yi] * w.v[(size_t)wi]; });
  return gx;
}

inline HT ref_conv_bwd_weight(const HT &gy, const HT &x, loom_shape ws, const ConvGeom &c) {
  HT gw{std::vector<double>((size_t)loom_shape_numel(ws), 0.0), ws, gy.dt};
  conv_products(x.s, ws, gy.s, c, [&](int64_t xi, int64_t wi, int64_t yi) { gw.v[(size_t)wi] += gy.v[(size_t)yi] * x.v[(size_t)xi]; });
  return gw;
}

// Pooling window [lo, hi) of output o along one dim and its divisor count (PyTorch's rules).
struct Win { int64_t lo, hi, count; };
inline Win pool_win(int64_t o, int64_t in, int64_t out, int64_t k, int64_t s, int64_t p, bool excl, bool adaptive) {
  if (adaptive) {
    int64_t lo = (int64_t)std::floor((double)(o * in) / (double)out);
    int64_t hi = (int64_t)std::ceil((double)((o + 1) * in) / (double)out);
    return {lo, hi, hi - lo};
  }
  int64_t lo = o * s - p, hi = std::min(lo + k, in + p), padded = hi - lo;
  lo = std::max<int64_t>(lo, 0);
  hi = std::min(hi, in);
  return {lo, hi, excl ? hi - lo : padded};
}

struct PoolGeom { int64_t kh, kw, sh, sw, ph, pw; bool excl, adaptive; double divisor = 0; };  // divisor_override

inline HT ref_avg_pool(const HT &x, loom_shape ys, const PoolGeom &p, const HT *gy = nullptr) {
  // forward: y from x; with gy: the input gradient (x gives the shape only)
  int64_t P = x.s.d[0] * x.s.d[1], H = x.s.d[2], W = x.s.d[3], Ho = ys.d[2], Wo = ys.d[3];
  HT out = gy ? HT{std::vector<double>(x.v.size(), 0.0), x.s, x.dt}
              : HT{std::vector<double>((size_t)loom_shape_numel(ys), 0.0), ys, x.dt};
  for (int64_t q = 0; q < P; q++)
    for (int64_t oh = 0; oh < Ho; oh++)
      for (int64_t ow = 0; ow < Wo; ow++) {
        Win a = pool_win(oh, H, Ho, p.kh, p.sh, p.ph, p.excl, p.adaptive);
        Win b = pool_win(ow, W, Wo, p.kw, p.sw, p.pw, p.excl, p.adaptive);
        double div = p.divisor ? p.divisor : (double)(a.count * b.count);
        size_t yi = (size_t)((q * Ho + oh) * Wo + ow);
        for (int64_t ih = a.lo; ih < a.hi; ih++)
          for (int64_t iw = b.lo; iw < b.hi; iw++) {
            size_t xi = (size_t)((q * H + ih) * W + iw);
            if (gy) out.v[xi] += gy->v[yi] / div;
            else out.v[yi] += x.v[xi] / div;
          }
      }
  return out;
}

// Max pooling (floor mode, no padding or with padding; dilation 1): values and flat indices.
inline std::pair<HT, HT> ref_max_pool(const HT &x, loom_shape ys, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                      int64_t ph, int64_t pw) {
  int64_t P = x.s.d[0] * x.s.d[1], H = x.s.d[2], W = x.s.d[3], Ho = ys.d[2], Wo = ys.d[3];
  HT v{std::vector<double>((size_t)loom_shape_numel(ys)), ys, x.dt}, idx{v.v, ys, LOOM_I64};
  for (int64_t q = 0; q < P; q++)
    for (int64_t oh = 0; oh < Ho; oh++)
      for (int64_t ow = 0; ow < Wo; ow++) {
        double best = -INFINITY;
        int64_t at = -1;
        for (int64_t ih = std::max<int64_t>(oh * sh - ph, 0); ih < std::min(oh * sh - ph + kh, H); ih++)
          for (int64_t iw = std::max<int64_t>(ow * sw - pw, 0); iw < std::min(ow * sw - pw + kw, W); iw++)
            if (at < 0 || x.v[(size_t)((q * H + ih) * W + iw)] > best) best = x.v[(size_t)((q * H + ih) * W + iw)], at = ih * W + iw;
        v.v[(size_t)((q * Ho + oh) * Wo + ow)] = best;
        idx.v[(size_t)((q * Ho + oh) * Wo + ow)] = (double)at;
      }
  return {v, idx};
}

// Adaptive max pooling to ys: values and flat indices (the first of ties).
inline std::pair<HT, HT> ref_adaptive_max_pool(const HT &x, loom_shape ys) {
  int64_t P = x.s.d[0] * x.s.d[1], H = x.s.d[2], W = x.s.d[3], Ho = ys.d[2], Wo = ys.d[3];
  HT v{std::vector<double>((size_t)loom_shape_numel(ys)), ys, x.dt}, idx{v.v, ys, LOOM_I64};
  for (int64_t q = 0; q < P; q++)
    for (int64_t oh = 0; oh < Ho; oh++)
      for (int64_t ow = 0; ow < Wo; ow++) {
        Win a = pool_win(oh, H, Ho, 0, 0, 0, false, true), b = pool_win(ow, W, Wo, 0, 0, 0, false, true);
        double best = -INFINITY;
        int64_t at = -1;
        for (int64_t ih = a.lo; ih < a.hi; ih++)
          for (int64_t iw = b.lo; iw < b.hi; iw++)
            if (at < 0 || x.v[(size_t)((q * H + ih) * W + iw)] > best) best = x.v[(size_t)((q * H + ih) * W + iw)], at = ih * W + iw;
        v.v[(size_t)((q * Ho + oh) * Wo + ow)] = best;
        idx.v[(size_t)((q * Ho + oh) * Wo + ow)] = (double)at;
      }
  return {v, idx};
}

// The gradient of a detached leaf copy of x through y = f(leaf), given gy.
inline loom_tensor *grad_through(loom_tensor *x, loom_tensor *gy,
                                 const std::function<loom_tensor *(loom_tensor *)> &f) {
  loom_tensor *leaf = loom_detach(x);
  if (!leaf || loom_set_requires_grad(leaf, true) != 0) return nullptr;
  loom_tensor *y = f(leaf);
  if (!y || loom_backward(y, gy, false) != 0) return nullptr;
  return loom_clone(loom_grad(leaf));
}

inline std::vector<OpCase> conv_cases() {
  // x [2, 4, 7, 6], w [6, 2, 3, 2], groups 2, stride (2, 1), padding (1, 1), dilation (1, 2) -> y [2, 6, 4, 6]
  static const ConvGeom cg{2, 1, 1, 1, 1, 2, 2};
  static const ConvGeom plain{1, 1, 0, 0, 1, 1, 1};
  OpCase conv;
  conv.op = "conv2d";
  conv.inputs = {data(LOOM_SHAPE(2, 4, 7, 6)), data(LOOM_SHAPE(6, 2, 3, 2)), data(LOOM_SHAPE(3, 4, 1, 1))};
  conv.run = [](const Ctx &k) {
    loom_conv_opts o = cg.opts();
    // the 1x1 conv on a transposed (non-contiguous) input takes the no-im2col path
    return Tensors{loom_conv2d(k.in[0], k.in[1], nullptr, &o),
                   loom_conv2d(loom_transpose(k.in[0], 2, 3), loom_reshape(k.in[2], LOOM_SHAPE(3, 4, 1, 1)), nullptr, nullptr)};
  };
  conv.ref = [](HostIn in, loom_dtype) {
    return Refs{ref_conv2d(in[0], in[1], cg), ref_conv2d(transpose(in[0], 2, 3), in[2], plain)};
  };
  conv.differentiable = true;
  conv.half = true;
  conv.dtypes = kFloat;
  conv.cuda_f32_bound = 1e-4;

  // conv_transpose2d(gy [2, 6, 4, 6], w [6, 2, 3, 2]) with output_padding (1, 0) -> [2, 4, 8, 6]
  OpCase bin;
  bin.op = "conv2d_backward_input";
  bin.inputs = {data(LOOM_SHAPE(2, 6, 4, 6)), data(LOOM_SHAPE(6, 2, 3, 2))};
  bin.run = [](const Ctx &k) {
    loom_conv_opts o = cg.opts();
    o.output_padding[0] = 1;
    return Tensors{loom_conv_transpose2d(k.in[0], k.in[1], nullptr, &o)};
  };
  bin.ref = [](HostIn in, loom_dtype) { return Refs{ref_conv_bwd_input(in[0], in[1], LOOM_SHAPE(2, 4, 8, 6), cg)}; };
  bin.differentiable = true;
  bin.half = true;
  bin.dtypes = kFloat;
  bin.cuda_f32_bound = 1e-4;

  OpCase bw;
  bw.op = "conv2d_backward_weight";
  bw.inputs = {data(LOOM_SHAPE(2, 6, 4, 6)), data(LOOM_SHAPE(2, 4, 7, 6))};
  bw.run = [](const Ctx &k) {
    loom_tensor *w = loom_zeros(LOOM_SHAPE(6, 2, 3, 2), k.dt, k.dev);
    if (!w || loom_set_requires_grad(w, true) != 0) return Tensors{nullptr};
    loom_conv_opts o = cg.opts();
    loom_tensor *y = loom_conv2d(loom_detach(k.in[1]), w, nullptr, &o);
    if (!y || loom_backward(y, k.in[0], false) != 0) return Tensors{nullptr};
    return Tensors{loom_clone(loom_grad(w))};
  };
  bw.ref = [](HostIn in, loom_dtype) { return Refs{ref_conv_bwd_weight(in[0], in[1], LOOM_SHAPE(6, 2, 3, 2), cg)}; };
  bw.differentiable = false;  // its gradient is conv2d's, checked there
  bw.half = true;
  bw.dtypes = kFloat;
  bw.cuda_f32_bound = 1e-4;

  OpCase mp;
  mp.op = "max_pool2d";
  mp.inputs = {data(LOOM_SHAPE(2, 3, 7, 8))};
  mp.run = [](const Ctx &k) {
    loom_pool_opts o{};
    o.stride[0] = o.stride[1] = 2;
    o.padding[0] = o.padding[1] = 1;
    loom_tensor *i1 = nullptr, *i2 = nullptr, *i3 = nullptr;
    loom_tensor *v1 = loom_max_pool2d(k.in[0], 3, 3, &o, &i1), *v2 = loom_max_pool2d(k.in[0], 2, 3, nullptr, &i2);
    loom_tensor *v3 = loom_adaptive_max_pool2d(k.in[0], 3, 5, &i3);  // overlapping windows
    return Tensors{v1, i1, v2, i2, v3, i3};
  };
  mp.ref = [](HostIn in, loom_dtype) {
    auto a = ref_max_pool(in[0], LOOM_SHAPE(2, 3, 4, 4), 3, 3, 2, 2, 1, 1);
    auto b = ref_max_pool(in[0], LOOM_SHAPE(2, 3, 3, 2), 2, 3, 2, 3, 0, 0);
    auto c = ref_adaptive_max_pool(in[0], LOOM_SHAPE(2, 3, 3, 5));
    return Refs{a.first, a.second, b.first, b.second, c.first, c.second};
  };
  mp.differentiable = true;
  mp.half = true;
  mp.dtypes = kFloat;

  // avg k3 s2 p1 counting padding; the same excluding it; adaptive to (3, 5); divisor_override -5
  static const PoolGeom incl{3, 3, 2, 2, 1, 1, false, false}, excl{3, 3, 2, 2, 1, 1, true, false},
      adapt{0, 0, 0, 0, 0, 0, false, true}, divd{3, 3, 2, 2, 1, 1, true, false, -5};
  OpCase ap;
  ap.op = "avg_pool2d";
  ap.inputs = {data(LOOM_SHAPE(2, 3, 7, 8))};
  ap.run = [](const Ctx &k) {
    loom_pool_opts o{};
    o.stride[0] = o.stride[1] = 2;
    o.padding[0] = o.padding[1] = 1;
    loom_pool_opts e = o;
    e.exclude_pad = true;
    loom_pool_opts d = e;
    d.divisor_override = -5;
    return Tensors{loom_avg_pool2d(k.in[0], 3, 3, &o), loom_avg_pool2d(k.in[0], 3, 3, &e),
                   loom_adaptive_avg_pool2d(k.in[0], 3, 5), loom_avg_pool2d(k.in[0], 3, 3, &d)};
  };
  ap.ref = [](HostIn in, loom_dtype) {
    return Refs{ref_avg_pool(in[0], LOOM_SHAPE(2, 3, 4, 4), incl), ref_avg_pool(in[0], LOOM_SHAPE(2, 3, 4, 4), excl),
                ref_avg_pool(in[0], LOOM_SHAPE(2, 3, 3, 5), adapt), ref_avg_pool(in[0], LOOM_SHAPE(2, 3, 4, 4), divd)};
  };
  ap.differentiable = true;
  ap.half = true;
  ap.dtypes = kFloat;

  OpCase apb;
  apb.op = "avg_pool2d_backward";
  apb.inputs = {data(LOOM_SHAPE(2, 3, 7, 8)), data(LOOM_SHAPE(2, 3, 4, 4))};
  apb.run = [](const Ctx &k) {
    loom_pool_opts o{};
    o.stride[0] = o.stride[1] = 2;
    o.padding[0] = o.padding[1] = 1;
    loom_pool_opts e = o;
    e.exclude_pad = true;
    loom_pool_opts d = e;
    d.divisor_override = -5;
    return Tensors{grad_through(k.in[0], k.in[1], [&](loom_tensor *x) { return loom_avg_pool2d(x, 3, 3, &o); }),
                   grad_through(k.in[0], k.in[1], [&](loom_tensor *x) { return loom_avg_pool2d(x, 3, 3, &e); }),
                   grad_through(k.in[0], k.in[1], [](loom_tensor *x) { return loom_adaptive_avg_pool2d(x, 4, 4); }),
                   grad_through(k.in[0], k.in[1], [&](loom_tensor *x) { return loom_avg_pool2d(x, 3, 3, &d); })};
  };
  apb.ref = [](HostIn in, loom_dtype) {
    loom_shape ys = LOOM_SHAPE(2, 3, 4, 4);
    return Refs{ref_avg_pool(in[0], ys, incl, &in[1]), ref_avg_pool(in[0], ys, excl, &in[1]),
                ref_avg_pool(in[0], ys, adapt, &in[1]), ref_avg_pool(in[0], ys, divd, &in[1])};
  };
  apb.differentiable = false;  // avg_pool2d's gradient, checked there
  apb.half = true;
  apb.dtypes = kFloat;

  // the max-pool gradient: gy added at the argmax of each window (overlapping 3x3 s2 p1,
  // 2x2 s2 over an odd height, adaptive to (3, 5))
  OpCase mpb;
  mpb.op = "max_pool2d_backward";
  mpb.inputs = {data(LOOM_SHAPE(2, 3, 7, 8)), data(LOOM_SHAPE(2, 3, 4, 4)), data(LOOM_SHAPE(2, 3, 3, 4)),
                data(LOOM_SHAPE(2, 3, 3, 5))};
  mpb.run = [](const Ctx &k) {
    loom_pool_opts o{};
    o.stride[0] = o.stride[1] = 2;
    o.padding[0] = o.padding[1] = 1;
    return Tensors{
        grad_through(k.in[0], k.in[1], [&](loom_tensor *x) { return loom_max_pool2d(x, 3, 3, &o, nullptr); }),
        grad_through(k.in[0], k.in[2], [](loom_tensor *x) { return loom_max_pool2d(x, 2, 2, nullptr, nullptr); }),
        grad_through(k.in[0], k.in[3], [](loom_tensor *x) { return loom_adaptive_max_pool2d(x, 3, 5, nullptr); })};
  };
  mpb.ref = [](HostIn in, loom_dtype) {
    auto scatter = [&](const std::pair<HT, HT> &vi, const HT &gy) {
      HT gx{std::vector<double>(in[0].v.size(), 0.0), in[0].s, in[0].dt};
      int64_t HW = in[0].s.d[2] * in[0].s.d[3], L = loom_shape_numel(gy.s) / (in[0].s.d[0] * in[0].s.d[1]);
      for (size_t e = 0; e < gy.v.size(); e++) gx.v[(size_t)((int64_t)e / L * HW + (int64_t)vi.second.v[e])] += gy.v[e];
      return gx;
    };
    return Refs{scatter(ref_max_pool(in[0], LOOM_SHAPE(2, 3, 4, 4), 3, 3, 2, 2, 1, 1), in[1]),
                scatter(ref_max_pool(in[0], LOOM_SHAPE(2, 3, 3, 4), 2, 2, 2, 2, 0, 0), in[2]),
                scatter(ref_adaptive_max_pool(in[0], LOOM_SHAPE(2, 3, 3, 5)), in[3])};
  };
  mpb.differentiable = false;  // max_pool2d's gradient, checked there
  mpb.half = true;
  mpb.dtypes = kFloat;

  return {conv, bin, bw, mp, ap, apb, mpb};
}

}  // namespace opcases
