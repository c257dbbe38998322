// oneDNN's CPU convolutions (src/cpu/onednn.c) against Loom's own im2col +
// OpenBLAS kernels, the reference (loom_set_onednn(0)): forward and both
// gradients on random shapes (stride, padding, dilation, groups, depthwise,
// odd sizes, batch 1, 1-d and transposed convolutions), at 1 and 2 threads, on
// two threads at once through more shapes than the primitive cache holds, and
// the mode switch. Skipped, saying why, in builds without oneDNN.
#include "loom_test.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>
#include <thread>

namespace {

#define LOOM_REQUIRE_ONEDNN()                                                                           \
  do {                                                                                                  \
    if (loom_onednn() < 0) GTEST_SKIP() << "built without oneDNN (CMake LOOM_ONEDNN=OFF, or dnnl.h / " \
                                           "libdnnl not found: Debian's libdnnl-dev)";                 \
  } while (0)

// Restores the oneDNN mode, the thread count and poisoning at the end of a test.
struct ModeGuard {
  int mode = loom_onednn();
  ModeGuard() { loom_set_poison(true); }  // an output element oneDNN leaves unwritten is NaN
  ~ModeGuard() {
    if (mode >= 0) loom_set_onednn(mode);
    loom_set_num_threads(0);
    loom_set_poison(false);
  }
};

std::vector<double> randv(std::mt19937 &rng, size_t n) {
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> v(n);
  for (double &x : v) x = u(rng);
  return v;
}

// One convolution problem: x [N, C, H, W], w [Co, C / G, kh, kw] (transposed:
// x [N, C, H, W], w [C, Co / G, kh, kw]), the output gradient drawn per run.
struct Case {
  int64_t N, C, H, W, Co, kh, kw, G;
  int s[2], p[2], d[2], op[2] = {0, 0};
  bool transpose = false, one_d = false;
};

std::string describe(const Case &c) {
  std::ostringstream o;
  o << (c.transpose ? "conv_transpose" : c.one_d ? "conv1d" : "conv2d") << " x [" << c.N << ", " << c.C << ", "
    << c.H << ", " << c.W << "] -> " << c.Co << " k " << c.kh << "x" << c.kw << " s " << c.s[0] << "," << c.s[1]
    << " p " << c.p[0] << "," << c.p[1] << " d " << c.d[0] << "," << c.d[1] << " groups " << c.G;
  if (c.transpose) o << " output_padding " << c.op[0] << "," << c.op[1];
  return o.str();
}

struct Result {
  std::vector<double> y, gx, gw;
  std::string error;
};

// y = conv(x, w) and the gradients of sum(y * gy), in the current mode and thread count.
Result run(const Case &c, const std::vector<double> &xv, const std::vector<double> &wv, uint32_t gy_seed) {
  ScopeGuard scope;
  Result r;
  loom_shape xs = c.one_d ? LOOM_SHAPE(c.N, c.C, c.W) : LOOM_SHAPE(c.N, c.C, c.H, c.W);
  loom_shape ws = c.transpose ? LOOM_SHAPE(c.C, c.Co / c.G, c.kh, c.kw)
                  : c.one_d   ? LOOM_SHAPE(c.Co, c.C / c.G, c.kw)
                              : LOOM_SHAPE(c.Co, c.C / c.G, c.kh, c.kw);
  loom_tensor *x = T(xv, xs), *w = T(wv, ws);
  loom_set_requires_grad(x, true);
  loom_set_requires_grad(w, true);
  loom_conv_opts o{};
  int j = c.one_d ? 1 : 0;  // 1-d layers read element [0]
  o.stride[0] = c.s[j], o.padding[0] = c.p[j], o.dilation[0] = c.d[j], o.output_padding[0] = c.op[j];
  o.stride[1] = c.s[1], o.padding[1] = c.p[1], o.dilation[1] = c.d[1], o.output_padding[1] = c.op[1];
  o.groups = (int)c.G;
  loom_tensor *y = c.transpose ? loom_conv_transpose2d(x, w, nullptr, &o)
                   : c.one_d   ? loom_conv1d(x, w, nullptr, &o)
                               : loom_conv2d(x, w, nullptr, &o);
  if (!y) return r.error = loom_last_error(), r;
  std::mt19937 rng(gy_seed);
  loom_tensor *gy = T(randv(rng, (size_t)loom_numel(y)), loom_shape_of(y));
  if (loom_backward(y, gy, false) != 0) return r.error = loom_last_error(), r;
  r.y = V(y), r.gx = V(loom_grad(x)), r.gw = V(loom_grad(w));
  return r;
}

// ||a - b|| / ||b|| (||a - b|| when b is all zeros); +inf for different sizes or a NaN.
double rel(const std::vector<double> &a, const std::vector<double> &b) {
  if (a.size() != b.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); i++) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
  double e = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return std::isnan(e) ? INFINITY : e;
}

void expect_close(const Result &got, const Result &ref, double tol) {
  ASSERT_EQ(got.error, "");
  ASSERT_EQ(ref.error, "");
  EXPECT_LT(rel(got.y, ref.y), tol) << "forward";
  EXPECT_LT(rel(got.gx, ref.gx), tol) << "input gradient";
  EXPECT_LT(rel(got.gw, ref.gw), tol) << "weight gradient";
}

// A random case with an output; depthwise, grouped and 1-d / transposed ones among them.
Case random_case(std::mt19937 &rng, int trial) {
  std::uniform_int_distribution<int> pick(0, 1 << 30);
  for (;;) {
    Case c{};
    int kind = trial % 6;  // 0, 1: dense; 2: depthwise; 3: grouped; 4: 1-d; 5: transposed
    c.G = kind == 2 ? 1 + pick(rng) % 24 : kind == 3 ? 2 + pick(rng) % 3 : kind == 5 && pick(rng) % 2 ? 2 : 1;
    int64_t cg = kind == 2 ? 1 : 1 + pick(rng) % (pick(rng) % 3 ? 20 : 40);
    c.C = c.G * cg;
    c.Co = kind == 2 ? c.C : c.G * (1 + pick(rng) % 24);
    c.N = pick(rng) % 3 ? 1 + pick(rng) % 4 : 1;
    c.one_d = kind == 4;
    c.transpose = kind == 5;
    for (int j = 0; j < 2; j++) {
      c.s[j] = pick(rng) % 3 ? 1 : 2 + pick(rng) % 2;
      c.d[j] = pick(rng) % 4 ? 1 : 2;
    }
    c.kh = c.one_d ? 1 : 1 + pick(rng) % 5;
    c.kw = 1 + pick(rng) % 5;
    c.p[0] = c.one_d ? 0 : pick(rng) % ((int)c.kh / 2 + 2);
    c.p[1] = pick(rng) % ((int)c.kw / 2 + 2);
    if (c.one_d) c.s[0] = 1, c.d[0] = 1;
    c.H = c.one_d ? 1 : 1 + pick(rng) % 19;
    c.W = 1 + pick(rng) % 23;
    if (c.transpose)  // output_padding below the stride or the dilation
      for (int j = 0; j < 2; j++) c.op[j] = pick(rng) % std::max(c.s[j], c.d[j]);
    if (c.transpose) {  // no output where (in - 1) * s - 2 p + d (k - 1) + output_padding + 1 < 1
      if ((c.H - 1) * c.s[0] - 2 * c.p[0] + c.d[0] * (c.kh - 1) + c.op[0] < 0 ||
          (c.W - 1) * c.s[1] - 2 * c.p[1] + c.d[1] * (c.kw - 1) + c.op[1] < 0)
        continue;
    } else if (c.H + 2 * c.p[0] < c.d[0] * (c.kh - 1) + 1 || c.W + 2 * c.p[1] < c.d[1] * (c.kw - 1) + 1) {
      continue;
    }
    return c;
  }
}

TEST(OneDnn, MatchesTheReferenceKernelsOnRandomShapes) {
  LOOM_REQUIRE_ONEDNN();
  ModeGuard guard;
  std::mt19937 rng(17);
  std::vector<Case> cases;
  // ResNet-18 / CIFAR-like and seed-CNN-like shapes, then random ones
  cases.push_back({2, 16, 8, 8, 32, 3, 3, 1, {1, 1}, {1, 1}, {1, 1}});
  cases.push_back({2, 16, 8, 8, 32, 3, 3, 1, {2, 2}, {1, 1}, {1, 1}});
  cases.push_back({3, 1, 28, 28, 8, 3, 3, 1, {1, 1}, {0, 0}, {1, 1}});
  cases.push_back({1, 32, 13, 13, 16, 3, 3, 1, {1, 1}, {0, 0}, {1, 1}});
  cases.push_back({2, 24, 7, 9, 24, 3, 3, 24, {2, 2}, {1, 1}, {1, 1}});
  for (int trial = 0; trial < 90; trial++) cases.push_back(random_case(rng, trial));
  for (size_t i = 0; i < cases.size(); i++) {
    const Case &c = cases[i];
    SCOPED_TRACE(describe(c));
    size_t nx = (size_t)(c.N * c.C * c.H * c.W), nw = (size_t)(c.Co * c.C / c.G * c.kh * c.kw);
    std::vector<double> xv = randv(rng, nx), wv = randv(rng, nw);
    loom_set_onednn(0);
    Result ref = run(c, xv, wv, (uint32_t)i);
    for (int mode : {2, 1}) {
      SCOPED_TRACE(mode == 2 ? "oneDNN wherever it implements the shape" : "oneDNN where faster");
      loom_set_onednn(mode);
      expect_close(run(c, xv, wv, (uint32_t)i), ref, 1e-4);
    }
  }
}

TEST(OneDnn, OneAndTwoThreadsAgree) {
  LOOM_REQUIRE_ONEDNN();
  ModeGuard guard;
  std::mt19937 rng(3);
  const Case cases[] = {{4, 16, 12, 12, 32, 3, 3, 1, {1, 1}, {1, 1}, {1, 1}},
                        {3, 32, 9, 9, 32, 3, 3, 32, {1, 1}, {1, 1}, {1, 1}},
                        {1, 8, 10, 10, 16, 3, 3, 1, {2, 2}, {1, 1}, {1, 1}}};
  for (const Case &c : cases) {
    SCOPED_TRACE(describe(c));
    std::vector<double> xv = randv(rng, (size_t)(c.N * c.C * c.H * c.W)),
                        wv = randv(rng, (size_t)(c.Co * c.C / c.G * c.kh * c.kw));
    loom_set_onednn(0);
    Result ref = run(c, xv, wv, 1);
    loom_set_onednn(2);
    loom_set_num_threads(1);
    Result one = run(c, xv, wv, 1);
    loom_set_num_threads(2);
    Result two = run(c, xv, wv, 1), again = run(c, xv, wv, 1);
    expect_close(one, ref, 1e-4);
    expect_close(two, one, 1e-5);
    // run to run the same at one thread count (loom_set_deterministic needs nothing more)
    EXPECT_EQ(again.y, two.y);
    EXPECT_EQ(again.gx, two.gx);
    EXPECT_EQ(again.gw, two.gw);
  }
}

// Two threads at once through more shapes (3 ops each) than the cache's 128
// entries: primitives are shared, made and evicted while the other runs.
TEST(OneDnn, TwoCallerThreadsThroughAnEvictingCache) {
  LOOM_REQUIRE_ONEDNN();
  ModeGuard guard;
  std::mt19937 rng(5);
  std::vector<Case> cases;
  for (int64_t w = 4; w < 4 + 48; w++) cases.push_back({2, 8, 5, w, 8, 3, 3, 1, {1, 1}, {1, 1}, {1, 1}});
  std::vector<std::vector<double>> xs, ws;
  std::vector<Result> refs;
  loom_set_onednn(0);
  for (size_t i = 0; i < cases.size(); i++) {
    const Case &c = cases[i];
    xs.push_back(randv(rng, (size_t)(c.N * c.C * c.H * c.W)));
    ws.push_back(randv(rng, (size_t)(c.Co * c.C * c.kh * c.kw)));
    refs.push_back(run(c, xs[i], ws[i], (uint32_t)i));
  }
  loom_set_onednn(2);
  std::vector<double> worst(2, 0);
  std::vector<std::string> errors(2);
  auto work = [&](int t) {
    for (int round = 0; round < 2; round++)
      for (size_t k = 0; k < cases.size(); k++) {
        size_t i = t ? cases.size() - 1 - k : k;  // the two threads walk the shapes in opposite orders
        Result r = run(cases[i], xs[i], ws[i], (uint32_t)i);
        if (!r.error.empty()) errors[t] = r.error;
        worst[t] = std::max({worst[t], rel(r.y, refs[i].y), rel(r.gx, refs[i].gx), rel(r.gw, refs[i].gw)});
      }
  };
  std::thread a(work, 0), b(work, 1);
  a.join();
  b.join();
  for (int t = 0; t < 2; t++) {
    EXPECT_EQ(errors[t], "") << "thread " << t;
    EXPECT_LT(worst[t], 1e-4) << "thread " << t;
  }
}

TEST(OneDnn, ModeSwitchAndVersionLine) {
  char buf[4096];
  loom_versions(buf, sizeof buf);
  int mode = loom_onednn();
  if (mode < 0) {
    EXPECT_NE(std::string(buf).find("oneDNN: not built"), std::string::npos) << buf;
    loom_set_onednn(1);  // does nothing without oneDNN
    EXPECT_EQ(loom_onednn(), -1);
    return;
  }
  EXPECT_NE(std::string(buf).find("oneDNN: "), std::string::npos) << buf;
  loom_clear_error();
  loom_set_onednn(3);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INVALID);
  EXPECT_NE(std::string(loom_last_error()).find("loom_set_onednn"), std::string::npos) << loom_last_error();
  EXPECT_EQ(loom_onednn(), mode);
  loom_set_onednn(0);
  EXPECT_EQ(loom_onednn(), 0);
  loom_versions(buf, sizeof buf);
  EXPECT_NE(std::string(buf).find("CPU f32 convolutions: off"), std::string::npos) << buf;
  loom_set_onednn(mode);
}

}  // namespace
