// The CPU fast paths (issue 17) against plain host references on random
// shapes, odd sizes and edge windows: max pooling (the dense and 2x2 paths,
// values, indices, NaN and ties, and its gradient), convolution through the
// im2col / col2im runs (stride, padding, dilation, groups; forward and both
// gradients), relu's fused gradient, and the vectorised softmax /
// cross-entropy rows (long and short rows, -inf and NaN entries), and the
// team sizing of OpenBLAS / oneDNN calls (small work on one thread).
#include "loom_test.h"

#include <omp.h>

#include <cmath>
#include <random>

namespace {

std::vector<double> randv(std::mt19937 &rng, size_t n, double lo = -2, double hi = 2) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(n);
  for (double &x : v) x = u(rng);
  return v;
}

// Max pooling on the host in double: values and flat indices; NaN wins (the
// last NaN), else the first of ties, as PyTorch.
void ref_max_pool(const std::vector<double> &x, int64_t P, int64_t H, int64_t W, int k[2], int s[2], int p[2],
                  int64_t Ho, int64_t Wo, std::vector<double> &y, std::vector<int64_t> &idx) {
  y.assign((size_t)(P * Ho * Wo), 0);
  idx.assign(y.size(), 0);
  for (int64_t q = 0; q < P; q++)
    for (int64_t oh = 0; oh < Ho; oh++)
      for (int64_t ow = 0; ow < Wo; ow++) {
        double m = -INFINITY;
        int64_t at = -1;
        for (int64_t ih = oh * s[0] - p[0]; ih < oh * s[0] - p[0] + k[0]; ih++)
          for (int64_t iw = ow * s[1] - p[1]; iw < ow * s[1] - p[1] + k[1]; iw++) {
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            double v = x[(size_t)((q * H + ih) * W + iw)];
            if (at < 0 || v > m || std::isnan(v)) m = v, at = ih * W + iw;
          }
        y[(size_t)((q * Ho + oh) * Wo + ow)] = m;
        idx[(size_t)((q * Ho + oh) * Wo + ow)] = at;
      }
}

bool same(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

TEST(CpuFastPaths, MaxPoolMatchesHostReferenceOnRandomShapes) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> pick(0, 1 << 30);
  for (int trial = 0; trial < 60; trial++) {
    ScopeGuard scope;
    int k[2], s[2], p[2];
    bool two = trial % 3 == 0;  // the 2x2 stride-2 path
    for (int j = 0; j < 2; j++) {
      k[j] = two ? 2 : 1 + pick(rng) % 4;
      s[j] = two ? 2 : 1 + pick(rng) % 3;
      p[j] = two ? 0 : pick(rng) % (k[j] / 2 + 1);
    }
    int64_t N = 1 + pick(rng) % 2, C = 1 + pick(rng) % 3, H = k[0] + pick(rng) % 9, W = k[1] + pick(rng) % 9;
    loom_pool_opts o{};
    o.stride[0] = s[0], o.stride[1] = s[1], o.padding[0] = p[0], o.padding[1] = p[1];
    o.ceil_mode = trial % 4 == 1;
    std::vector<double> xv = randv(rng, (size_t)(N * C * H * W));
    for (size_t i = 0; i < xv.size(); i++) {  // ties and NaNs
      if (pick(rng) % 5 == 0) xv[i] = 0.5;
      if (pick(rng) % 23 == 0) xv[i] = NAN;
      xv[i] = (float)xv[i];  // the reference sees the f32 input
    }
    SCOPED_TRACE(testing::Message() << "x [" << N << ", " << C << ", " << H << ", " << W << "] k " << k[0] << "x"
                                    << k[1] << " s " << s[0] << "," << s[1] << " p " << p[0] << "," << p[1]
                                    << (o.ceil_mode ? " ceil" : ""));
    loom_tensor *x = T(xv, LOOM_SHAPE(N, C, H, W));
    ASSERT_EQ(loom_set_requires_grad(x, true), 0);
    loom_tensor *idx = nullptr, *y = loom_max_pool2d(x, k[0], k[1], &o, &idx);
    ASSERT_NE(y, nullptr) << loom_last_error();
    int64_t Ho = loom_shape_of(y).d[2], Wo = loom_shape_of(y).d[3];
    std::vector<double> ry;
    std::vector<int64_t> ri;
    ref_max_pool(xv, N * C, H, W, k, s, p, Ho, Wo, ry, ri);
    std::vector<double> yv = V(y), iv = V(idx);
    ASSERT_EQ(yv.size(), ry.size());
    for (size_t e = 0; e < ry.size(); e++) {
      ASSERT_TRUE(same(yv[e], ry[e])) << "value " << e << ": " << yv[e] << " vs " << ry[e];
      ASSERT_EQ((int64_t)iv[e], ri[e]) << "index " << e;
    }
    // gradient: every upstream value added at its index
    std::vector<double> gv = randv(rng, ry.size());
    ASSERT_EQ(loom_backward(y, T(gv, loom_shape_of(y)), false), 0) << loom_last_error();
    std::vector<double> want((size_t)(N * C * H * W), 0.0), got = V(loom_grad(x));
    for (size_t e = 0; e < gv.size(); e++) want[(size_t)((int64_t)e / (Ho * Wo) * H * W + ri[e])] += gv[e];
    for (size_t e = 0; e < want.size(); e++) ASSERT_NEAR(got[e], want[e], 1e-5) << "grad " << e;
  }
}

// Direct convolution on the host in double: y, and the gradients of sum(y * gy).
struct ConvRef {
  std::vector<double> y, gx, gw;
};
ConvRef ref_conv(const std::vector<double> &x, const std::vector<double> &w, const std::vector<double> &gy, int64_t N,
                 int64_t C, int64_t H, int64_t W, int64_t Co, int64_t kh, int64_t kw, int s[2], int p[2], int d[2],
                 int64_t G, int64_t Ho, int64_t Wo) {
  ConvRef r;
  int64_t Cg = C / G, Cog = Co / G;
  r.y.assign((size_t)(N * Co * Ho * Wo), 0);
  r.gx.assign(x.size(), 0);
  r.gw.assign(w.size(), 0);
  for (int64_t n = 0; n < N; n++)
    for (int64_t co = 0; co < Co; co++)
      for (int64_t oh = 0; oh < Ho; oh++)
        for (int64_t ow = 0; ow < Wo; ow++) {
          size_t yi = (size_t)(((n * Co + co) * Ho + oh) * Wo + ow);
          int64_t g = co / Cog;
          for (int64_t c = 0; c < Cg; c++)
            for (int64_t i = 0; i < kh; i++)
              for (int64_t j = 0; j < kw; j++) {
                int64_t ih = oh * s[0] - p[0] + i * d[0], iw = ow * s[1] - p[1] + j * d[1];
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                size_t xi = (size_t)(((n * C + g * Cg + c) * H + ih) * W + iw);
                size_t wi = (size_t)(((co * Cg + c) * kh + i) * kw + j);
                r.y[yi] += x[xi] * w[wi];
                r.gx[xi] += gy[yi] * w[wi];
                r.gw[wi] += gy[yi] * x[xi];
              }
        }
  return r;
}

double max_abs_diff(const std::vector<double> &a, const std::vector<double> &b) {
  double m = a.size() == b.size() ? 0 : INFINITY;
  for (size_t i = 0; i < a.size() && i < b.size(); i++) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

TEST(CpuFastPaths, ConvMatchesDirectConvolutionOnRandomShapes) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> pick(0, 1 << 30);
  for (int trial = 0; trial < 40; trial++) {
    ScopeGuard scope;
    int64_t G = trial % 5 == 0 ? 2 : 1, N = 1 + pick(rng) % 3, C = G * (1 + pick(rng) % 3),
            Co = G * (1 + pick(rng) % 3), kh = 1 + pick(rng) % 3, kw = 1 + pick(rng) % 4;
    int s[2] = {1 + pick(rng) % 3, 1 + pick(rng) % 3}, p[2] = {pick(rng) % 3, pick(rng) % 4},
        d[2] = {1 + pick(rng) % 2, 1 + pick(rng) % 3};
    int64_t H = 1 + pick(rng) % 9, W = 1 + pick(rng) % 11;
    int64_t Ho = (H + 2 * p[0] - d[0] * (kh - 1) - 1) / s[0] + 1, Wo = (W + 2 * p[1] - d[1] * (kw - 1) - 1) / s[1] + 1;
    if (H + 2 * p[0] < d[0] * (kh - 1) + 1 || W + 2 * p[1] < d[1] * (kw - 1) + 1) continue;  // no output
    SCOPED_TRACE(testing::Message() << "x [" << N << ", " << C << ", " << H << ", " << W << "] w [" << Co << ", "
                                    << C / G << ", " << kh << ", " << kw << "] s " << s[0] << "," << s[1] << " p "
                                    << p[0] << "," << p[1] << " d " << d[0] << "," << d[1] << " groups " << G);
    std::vector<double> xv = randv(rng, (size_t)(N * C * H * W)), wv = randv(rng, (size_t)(Co * C / G * kh * kw)),
                        gv = randv(rng, (size_t)(N * Co * Ho * Wo));
    loom_tensor *x = T(xv, LOOM_SHAPE(N, C, H, W)), *w = T(wv, LOOM_SHAPE(Co, C / G, kh, kw));
    ASSERT_EQ(loom_set_requires_grad(x, true), 0);
    ASSERT_EQ(loom_set_requires_grad(w, true), 0);
    loom_conv_opts o{};
    o.stride[0] = s[0], o.stride[1] = s[1], o.padding[0] = p[0], o.padding[1] = p[1];
    o.dilation[0] = d[0], o.dilation[1] = d[1], o.groups = (int)G;
    loom_tensor *y = loom_conv2d(x, w, nullptr, &o);
    ASSERT_NE(y, nullptr) << loom_last_error();
    ASSERT_EQ(loom_shape_of(y).d[2], Ho);
    ASSERT_EQ(loom_shape_of(y).d[3], Wo);
    ASSERT_EQ(loom_backward(y, T(gv, loom_shape_of(y)), false), 0) << loom_last_error();
    ConvRef r = ref_conv(xv, wv, gv, N, C, H, W, Co, kh, kw, s, p, d, G, Ho, Wo);
    EXPECT_LT(max_abs_diff(V(y), r.y), 1e-4);
    EXPECT_LT(max_abs_diff(V(loom_grad(x)), r.gx), 1e-4);
    EXPECT_LT(max_abs_diff(V(loom_grad(w)), r.gw), 1e-4);
  }
}

// GEMMs and batch-1 convolutions under CPU_GEMM_PARALLEL_MIN run on one
// thread, larger ones on loom_set_num_threads threads: either way the results
// match the host reference and the caller's OpenMP setting comes back.
TEST(CpuFastPaths, GemmTeamSizingKeepsResultsAndTheCallersThreadCount) {
  ScopeGuard scope;
  std::mt19937 rng(5);
  int saved_omp = omp_get_max_threads(), saved_loom = loom_num_threads(), saved_dnn = loom_onednn();
  omp_set_num_threads(3);
  loom_set_num_threads(2);
  for (int64_t n : {8, 203}) {  // 512 and 8.4M multiply-adds
    SCOPED_TRACE(testing::Message() << "matmul " << n << "^3");
    std::vector<double> av = randv(rng, (size_t)(n * n)), bv = randv(rng, (size_t)(n * n)), cv((size_t)(n * n), 0);
    for (int64_t i = 0; i < n; i++)
      for (int64_t k = 0; k < n; k++)
        for (int64_t j = 0; j < n; j++) cv[(size_t)(i * n + j)] += av[(size_t)(i * n + k)] * bv[(size_t)(k * n + j)];
    loom_tensor *c = loom_matmul(T(av, LOOM_SHAPE(n, n)), T(bv, LOOM_SHAPE(n, n)));
    ASSERT_NE(c, nullptr) << loom_last_error();
    EXPECT_LT(max_abs_diff(V(c), cv), 1e-3 * (double)n);
    EXPECT_EQ(omp_get_max_threads(), 3);
  }
  for (int mode : {0, 1}) {  // im2col + OpenBLAS, and oneDNN where built
    loom_set_onednn(mode);
    for (int64_t C : {4, 64}) {  // 0.3M and 4.7M multiply-adds at batch 1
      SCOPED_TRACE(testing::Message() << "conv 3x3 " << C << " channels, oneDNN mode " << mode);
      int64_t H = 12, Co = 32;
      std::vector<double> xv = randv(rng, (size_t)(C * H * H)), wv = randv(rng, (size_t)(Co * C * 9)),
                          gv = randv(rng, (size_t)(Co * (H - 2) * (H - 2)));
      int s[2] = {1, 1}, p[2] = {0, 0}, d[2] = {1, 1};
      ConvRef r = ref_conv(xv, wv, gv, 1, C, H, H, Co, 3, 3, s, p, d, 1, H - 2, H - 2);
      loom_tensor *x = T(xv, LOOM_SHAPE(1, C, H, H)), *w = T(wv, LOOM_SHAPE(Co, C, 3, 3));
      ASSERT_EQ(loom_set_requires_grad(x, true), 0);
      ASSERT_EQ(loom_set_requires_grad(w, true), 0);
      loom_tensor *y = loom_conv2d(x, w, nullptr, nullptr);
      ASSERT_NE(y, nullptr) << loom_last_error();
      ASSERT_EQ(loom_backward(y, T(gv, loom_shape_of(y)), false), 0) << loom_last_error();
      EXPECT_LT(max_abs_diff(V(y), r.y), 1e-3);
      EXPECT_LT(max_abs_diff(V(loom_grad(x)), r.gx), 1e-3);
      EXPECT_LT(max_abs_diff(V(loom_grad(w)), r.gw), 1e-3);
      EXPECT_EQ(omp_get_max_threads(), 3);
    }
  }
  loom_set_onednn(saved_dnn < 0 ? 1 : saved_dnn);
  loom_set_num_threads(saved_loom);
  omp_set_num_threads(saved_omp);
}

// Eval-mode batch / instance norm runs one fused per-channel pass when no
// gradient is needed and the composed mul + add when one is: same values,
// also for a non-contiguous input.
TEST(CpuFastPaths, EvalNormFusedPassMatchesTheComposedOne) {
  ScopeGuard scope;
  std::mt19937 rng(9);
  loom_tensor *x = T(randv(rng, 2 * 3 * 4 * 5), LOOM_SHAPE(2, 3, 4, 5));
  loom_tensor *rm = T(randv(rng, 3), LOOM_SHAPE(3)), *rv = T(randv(rng, 3, 0.2, 2), LOOM_SHAPE(3));
  loom_tensor *w = T(randv(rng, 3), LOOM_SHAPE(3)), *b = T(randv(rng, 3), LOOM_SHAPE(3));
  loom_tensor *wg = T(V(w), LOOM_SHAPE(3));
  ASSERT_EQ(loom_set_requires_grad(wg, true), 0);
  for (loom_tensor *in : {x, loom_transpose(x, 2, 3)}) {
    loom_tensor *fused = loom_batch_norm(in, rm, rv, w, b, false, 0.1, 1e-5);
    loom_tensor *composed = loom_batch_norm(in, rm, rv, wg, b, false, 0.1, 1e-5);
    ASSERT_NE(fused, nullptr) << loom_last_error();
    ASSERT_NE(composed, nullptr) << loom_last_error();
    EXPECT_TRUE(loom_requires_grad(composed));
    EXPECT_LT(max_abs_diff(V(fused), V(composed)), 1e-6);
    loom_tensor *inst = loom_instance_norm(in, rm, rv, w, b, false, 0.1, 1e-5);
    ASSERT_NE(inst, nullptr) << loom_last_error();
    EXPECT_LT(max_abs_diff(V(inst), V(fused)), 1e-6);
  }
}

TEST(CpuFastPaths, ReluGradientIsOneKernelWithPyTorchsRule) {
  ScopeGuard scope;
  // PyTorch's threshold_backward: 0 where the output is <= 0, the gradient
  // elsewhere (a NaN output passes it)
  loom_tensor *x = T({-1, 0, 2, NAN, 3}, LOOM_SHAPE(5));
  ASSERT_EQ(loom_set_requires_grad(x, true), 0);
  loom_tensor *y = loom_relu(x);
  ASSERT_EQ(loom_backward(y, T({10, 20, 30, 40, INFINITY}, LOOM_SHAPE(5)), false), 0) << loom_last_error();
  EXPECT_EQ(V(loom_grad(x)), (std::vector<double>{0, 0, 30, 40, INFINITY}));
}

TEST(CpuFastPaths, SoftmaxAndCrossEntropyRowsMatchDouble) {
  std::mt19937 rng(5);
  for (int64_t C : {1, 3, 15, 16, 17, 100, 1000, 4099}) {
    ScopeGuard scope;
    SCOPED_TRACE(testing::Message() << "rows of " << C);
    const int64_t R = 6;
    std::vector<double> xv = randv(rng, (size_t)(R * C), -20, 20);
    if (C > 2) xv[(size_t)(C + 1)] = -INFINITY;  // row 1: one -inf
    for (int64_t c = 0; c < C; c++) xv[(size_t)(2 * C + c)] = -INFINITY;  // row 2: all -inf
    xv[(size_t)(3 * C + C / 2)] = NAN;  // row 3: a NaN
    loom_tensor *x = T(xv, LOOM_SHAPE(R, C));
    std::vector<double> sm = V(loom_softmax(x, -1)), lsm = V(loom_log_softmax(x, -1));
    for (int64_t r = 0; r < R; r++) {
      double m = -INFINITY, s = 0;
      bool nan = false;
      for (int64_t c = 0; c < C; c++) m = std::max(m, xv[(size_t)(r * C + c)]), nan |= std::isnan(xv[(size_t)(r * C + c)]);
      for (int64_t c = 0; c < C; c++) s += std::exp(xv[(size_t)(r * C + c)] - m);
      for (int64_t c = 0; c < C; c++) {
        size_t e = (size_t)(r * C + c);
        if (nan || r == 2) {  // PyTorch: NaN rows and all -inf rows are NaN
          EXPECT_TRUE(std::isnan(sm[e])) << r << "," << c;
          continue;
        }
        double want = std::exp(xv[e] - m) / s, lwant = xv[e] - m - std::log(s);
        EXPECT_NEAR(sm[e], want, 1e-6 * (1 + want)) << r << "," << c;
        if (std::isinf(lwant)) EXPECT_EQ(lsm[e], lwant);
        else EXPECT_NEAR(lsm[e], lwant, 2e-5 * (1 + std::fabs(lwant))) << r << "," << c;
      }
    }
    // cross-entropy over the finite rows against log-softmax in double
    std::vector<double> tv;
    for (int64_t r = 0; r < R; r++) tv.push_back((double)(r * 7 % C));
    loom_tensor *xf = T(randv(rng, (size_t)(R * C), -20, 20), LOOM_SHAPE(R, C));
    ASSERT_EQ(loom_set_requires_grad(xf, true), 0);
    std::vector<double> xfv = V(xf);
    loom_cross_entropy_opts co{};
    co.reduction = LOOM_REDUCTION_NONE;
    loom_tensor *l = loom_cross_entropy(xf, T(tv, LOOM_SHAPE(R), LOOM_I64), &co);
    ASSERT_NE(l, nullptr) << loom_last_error();
    ASSERT_EQ(loom_backward(l, T(std::vector<double>((size_t)R, 1.0), LOOM_SHAPE(R)), false), 0) << loom_last_error();
    std::vector<double> lv = V(l), gv = V(loom_grad(xf));
    for (int64_t r = 0; r < R; r++) {
      double m = -INFINITY, s = 0;
      for (int64_t c = 0; c < C; c++) m = std::max(m, xfv[(size_t)(r * C + c)]);
      for (int64_t c = 0; c < C; c++) s += std::exp(xfv[(size_t)(r * C + c)] - m);
      double lse = m + std::log(s);
      int64_t t = (int64_t)tv[(size_t)r];
      EXPECT_NEAR(lv[(size_t)r], lse - xfv[(size_t)(r * C + t)], 2e-5 * (1 + std::fabs(lse)));
      for (int64_t c = 0; c < C; c++) {
        double p = std::exp(xfv[(size_t)(r * C + c)] - lse) - (c == t ? 1 : 0);
        EXPECT_NEAR(gv[(size_t)(r * C + c)], p, 1e-6) << r << "," << c;
      }
    }
  }
}

}  // namespace
