// Accuracy of the CPU backend's f32 exp (a vectorised polynomial, not libm) and
// of the ops built on it, sigmoid, logsumexp and the tanh-form gelu, against double rounded
// to float: a sweep of every 97th float in [-104, 89] plus special values.
#include "loom_test.h"

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>

namespace {

const float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

// Position of f on the number line of floats (-0 and +0 both 0): the ulp
// distance of a and b is |ord(a) - ord(b)|.
int64_t ord(float f) {
  int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i < 0 ? -(int64_t)(i & 0x7fffffff) : i;
}
int64_t ulps(float a, float b) { return std::llabs(ord(a) - ord(b)); }

// op applied to xs as one f32 CPU tensor of shape [n].
std::vector<float> run(loom_tensor *(*op)(const loom_tensor *), const std::vector<float> &xs) {
  ScopeGuard scope;
  loom_tensor *x = loom_from_host(xs.data(), LOOM_SHAPE((int64_t)xs.size()), LOOM_F32, loom_cpu());
  EXPECT_NE(x, nullptr) << loom_last_error();
  loom_tensor *y = x ? op(x) : nullptr;
  EXPECT_NE(y, nullptr) << loom_last_error();
  std::vector<float> out(xs.size(), kNaN);
  if (y) EXPECT_EQ(loom_to_host(y, out.data(), out.size() * sizeof(float)), 0) << loom_last_error();
  return out;
}

// Every 97th float bit pattern whose value lies in [-104, 89].
std::vector<float> sweep() {
  std::vector<float> xs;
  for (uint64_t b = 0; b <= 0xffffffffu; b += 97) {
    float x = from_bits((uint32_t)b);
    if (x >= -104.0f && x <= 89.0f) xs.push_back(x);
  }
  return xs;
}

// Inputs at the edges: zeros, infinities, NaN, the overflow / underflow thresholds
// and their neighbours, tiny and huge values.
std::vector<float> edges() {
  std::vector<float> xs = {0.0f, -0.0f, kInf, -kInf, kNaN, -kNaN, FLT_MAX, -FLT_MAX, 1e30f, -1e30f,
                           FLT_MIN, -FLT_MIN, FLT_TRUE_MIN, -FLT_TRUE_MIN, 1e-30f, -1e-30f, 1.0f, -1.0f,
                           88.0f, 88.72f, 88.73f, 89.0f, -87.3f, -87.34f, -88.72f, -103.97f, -103.98f,
                           -104.0f, -150.0f, 100.0f};
  // ln(FLT_MAX) and the smallest x with a nonzero f32 exp (exp(x) = 2^-150), with 4 floats either side.
  for (float t : {88.7228391f, -103.972084f}) {
    float v = t;
    for (int i = 0; i < 4; i++) v = std::nextafter(v, -kInf);
    for (int i = 0; i < 9; i++, v = std::nextafter(v, kInf)) xs.push_back(v);
  }
  return xs;
}

float ref_exp(float x) { return (float)std::exp((double)x); }
float ref_sigmoid(float x) { return (float)(1.0 / (1.0 + std::exp(-(double)x))); }

// Checks op against ref on xs: exact where ref is 0, +-inf or NaN, else within
// max_ulp (a subnormal ref only when check_subnormal, otherwise |result| <=
// FLT_MIN). Returns the largest error seen on normal results.
int64_t check(const char *name, loom_tensor *(*op)(const loom_tensor *), float (*ref)(float),
              const std::vector<float> &xs, int64_t max_ulp, bool check_subnormal) {
  std::vector<float> ys = run(op, xs);
  int64_t worst = 0, worst_sub = 0;
  float worst_x = 0;
  int failures = 0;
  for (size_t i = 0; i < xs.size() && failures < 10; i++) {
    float x = xs[i], y = ys[i], r = ref(x);
    bool ok;
    if (std::isnan(r)) {
      ok = std::isnan(y);
    } else if (r == 0 || std::isinf(r)) {
      ok = y == r;
    } else if (std::fabs(r) < FLT_MIN) {
      worst_sub = std::max(worst_sub, ulps(y, r));
      ok = check_subnormal ? ulps(y, r) <= max_ulp : std::fabs(y) <= FLT_MIN;
    } else {
      int64_t u = ulps(y, r);
      if (u > worst) worst = u, worst_x = x;
      ok = u <= max_ulp;
    }
    if (!ok) {
      failures++;
      ADD_FAILURE() << name << "(" << x << " = " << std::hexfloat << x << ") = " << y << ", expected "
                    << r << std::defaultfloat;
    }
  }
  std::cout << "[ measured ] " << name << " over " << xs.size() << " inputs: max error " << worst
            << " ulp (at x = " << worst_x << ")";
  if (check_subnormal) std::cout << ", on subnormal results " << worst_sub << " ulp";
  std::cout << "\n";
  return worst;
}

TEST(CpuMath, ExpSweepWithin2Ulp) {
  EXPECT_LE(check("exp", loom_exp, ref_exp, sweep(), 2, true), 2);
}

TEST(CpuMath, ExpEdgeValues) {
  check("exp edges", loom_exp, ref_exp, edges(), 2, true);
  std::vector<float> y = run(loom_exp, {0.0f, -0.0f, -kInf, kInf, kNaN, 89.0f, -104.0f, 1e-30f});
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], 1.0f);
  EXPECT_EQ(y[2], 0.0f);
  EXPECT_FALSE(std::signbit(y[2]));
  EXPECT_EQ(y[3], kInf);
  EXPECT_TRUE(std::isnan(y[4]));
  EXPECT_EQ(y[5], kInf);
  EXPECT_EQ(y[6], 0.0f);
  EXPECT_EQ(y[7], 1.0f);
}

// Odd lengths and strides go through the loops' tails and the strided path.
TEST(CpuMath, ExpStridedAndShortInputs) {
  ScopeGuard scope;
  std::vector<float> xs(2 * 37);
  for (size_t i = 0; i < xs.size(); i++) xs[i] = -40.0f + 1.1f * (float)i;
  loom_tensor *x = loom_from_host(xs.data(), LOOM_SHAPE(37, 2), LOOM_F32, loom_cpu());
  ASSERT_NE(x, nullptr) << loom_last_error();
  loom_tensor *y = loom_exp(loom_transpose(x, 0, 1));
  ASSERT_NE(y, nullptr) << loom_last_error();
  std::vector<float> out(xs.size());
  ASSERT_EQ(loom_to_host(y, out.data(), out.size() * sizeof(float)), 0) << loom_last_error();
  for (int c = 0; c < 2; c++)
    for (int r = 0; r < 37; r++)
      EXPECT_LE(ulps(out[c * 37 + r], ref_exp(xs[r * 2 + c])), 2) << "x = " << xs[r * 2 + c];
}

// sigmoid = 1 / (1 + exp(-x)): exp's error plus two roundings (2 ulp at most,
// as with libm's expf, over all floats). Results below
// FLT_MIN (x < -87.3) are not checked in ulps: for x < -88.72, exp(-x) is +inf
// and the result is flushed to 0 (as with libm's expf).
TEST(CpuMath, SigmoidSweepWithin2Ulp) {
  std::vector<float> xs = sweep(), e = edges();
  for (float &x : xs) x = -x;  // the same exp arguments as the exp sweep
  xs.insert(xs.end(), e.begin(), e.end());
  EXPECT_LE(check("sigmoid", loom_sigmoid, ref_sigmoid, xs, 2, false), 2);
  std::vector<float> y = run(loom_sigmoid, {0.0f, kInf, -kInf, kNaN, -100.0f, 100.0f});
  EXPECT_EQ(y[0], 0.5f);
  EXPECT_EQ(y[1], 1.0f);
  EXPECT_EQ(y[2], 0.0f);
  EXPECT_TRUE(std::isnan(y[3]));
  EXPECT_EQ(y[4], 0.0f);
  EXPECT_EQ(y[5], 1.0f);
}

// logsumexp of each line in double, rounded to float.
float ref_lse(const std::vector<float> &line) {
  double m = -INFINITY;
  for (float v : line) {
    if (std::isnan(v)) return kNaN;
    m = std::max(m, (double)v);
  }
  if (std::isinf(m)) return (float)m;
  double s = 0;
  for (float v : line) s += std::exp((double)v - m);
  return (float)(m + std::log(s));
}

// Rows of many lengths (the lanes' tails), over the last dim (contiguous lines)
// and over the first (lines I apart), against ref_lse within 2 ulp of max(|ref|, 1).
TEST(CpuMath, LogsumexpMatchesDouble) {
  std::mt19937 rng(7);
  int64_t worst = 0;
  for (int n : {1, 2, 7, 8, 9, 31, 32, 33, 100, 1000, 4099}) {
    for (float scale : {1.0f, 30.0f, 200.0f}) {
      ScopeGuard scope;
      const int rows = 5;
      std::uniform_real_distribution<float> dist(-scale, scale);
      std::vector<float> xs((size_t)rows * n);
      for (float &v : xs) v = dist(rng);
      loom_tensor *x = loom_from_host(xs.data(), LOOM_SHAPE(rows, n), LOOM_F32, loom_cpu());
      ASSERT_NE(x, nullptr) << loom_last_error();
      const int last = 1, first = 0;
      loom_tensor *by_row = loom_logsumexp(x, &last, 1, false);
      loom_tensor *by_col = loom_logsumexp(x, &first, 1, false);
      ASSERT_TRUE(by_row && by_col) << loom_last_error();
      std::vector<float> yr(rows), yc(n);
      ASSERT_EQ(loom_to_host(by_row, yr.data(), yr.size() * sizeof(float)), 0);
      ASSERT_EQ(loom_to_host(by_col, yc.data(), yc.size() * sizeof(float)), 0);
      auto expect_close = [&](float y, float r, const char *what, int i) {
        float unit = std::max(std::fabs(r), 1.0f);  // error is absolute near 0
        int64_t u = (int64_t)std::ceil(std::fabs((double)y - r) / (std::nextafter(unit, kInf) - unit));
        worst = std::max(worst, u);
        EXPECT_LE(u, 2) << what << " " << i << " of [" << rows << ", " << n << "] scale " << scale << ": "
                        << y << " vs " << r;
      };
      for (int i = 0; i < rows; i++)
        expect_close(yr[i], ref_lse(std::vector<float>(xs.begin() + i * n, xs.begin() + (i + 1) * n)), "row", i);
      for (int j = 0; j < n; j++) {
        std::vector<float> col(rows);
        for (int i = 0; i < rows; i++) col[i] = xs[(size_t)i * n + j];
        expect_close(yc[j], ref_lse(col), "column", j);
      }
    }
  }
  std::cout << "[ measured ] logsumexp max error " << worst << " ulp of max(|result|, 1)\n";
}

// Lines holding NaN, infinities and extremes, at the start, in the vector body and in the tail.
TEST(CpuMath, LogsumexpSpecialLines) {
  const int n = 45;
  for (int at : {0, 5, 40, 44}) {
    for (float special : {kNaN, kInf, -kInf, FLT_MAX, -FLT_MAX, 88.0f, -104.0f}) {
      ScopeGuard scope;
      std::vector<float> xs(3 * n);
      for (int i = 0; i < 3 * n; i++) xs[i] = (float)(i % 7) - 3.0f;
      for (int i = 0; i < n; i++) xs[2 * n + i] = -kInf;  // row 2: all -inf but one
      xs[at] = special;
      xs[2 * n + at] = special;
      loom_tensor *x = loom_from_host(xs.data(), LOOM_SHAPE(3, n), LOOM_F32, loom_cpu());
      const int last = 1;
      loom_tensor *y = loom_logsumexp(x, &last, 1, false);
      ASSERT_NE(y, nullptr) << loom_last_error();
      std::vector<float> out(3);
      ASSERT_EQ(loom_to_host(y, out.data(), sizeof(float) * 3), 0);
      for (int r = 0; r < 3; r++) {
        float ref = ref_lse(std::vector<float>(xs.begin() + r * n, xs.begin() + (r + 1) * n));
        if (std::isnan(ref) || std::isinf(ref))
          EXPECT_TRUE(std::isnan(ref) ? std::isnan(out[r]) : out[r] == ref)
              << "row " << r << " special " << special << " at " << at << ": " << out[r];
        else
          EXPECT_LE(ulps(out[r], ref), 2) << "row " << r << " special " << special << " at " << at << ": "
                                          << out[r] << " vs " << ref;
      }
    }
  }
}

// gelu (tanh form) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3), and its
// derivative, in double rounded to float.
double gelu_u2(double x) { return 2 * 0.79788456080286535588 * (x + 0.044715 * x * x * x); }
float ref_gelu_tanh(float x) { return (float)((double)x / (1 + std::exp(-gelu_u2(x)))); }
float ref_gelu_tanh_grad(float x) {
  double s = 1 / (1 + std::exp(-gelu_u2(x))), dv = 2 * 0.79788456080286535588 * (1 + 3 * 0.044715 * (double)x * x);
  return (float)(s + x * s * (1 - s) * dv);
}

// The x at which the gelu values are taken: every 4099th float in [-12, 12] (below
// -12 the result is under 1e-43, above it is x) plus the edges.
std::vector<float> gelu_inputs() {
  std::vector<float> xs;
  for (uint64_t b = 0; b <= 0xffffffffu; b += 4099) {
    float x = from_bits((uint32_t)b);
    if (x >= -12.0f && x <= 12.0f) xs.push_back(x);
  }
  for (float x : {0.0f, -0.0f, 1e-30f, -1e-30f, 3.0f, -3.0f, 8.0f, -8.0f, 20.0f, -20.0f, 1e6f, -1e6f}) xs.push_back(x);
  return xs;
}

// gelu and its gradient (autograd through gelu_backward) at xs.
void gelu_and_grad(const std::vector<float> &xs, std::vector<float> &y, std::vector<float> &g, bool tanh_form = true) {
  ScopeGuard scope;
  loom_tensor *x = loom_from_host(xs.data(), LOOM_SHAPE((int64_t)xs.size()), LOOM_F32, loom_cpu());
  ASSERT_NE(x, nullptr) << loom_last_error();
  ASSERT_EQ(loom_set_requires_grad(x, true), 0) << loom_last_error();
  loom_tensor *out = loom_gelu(x, tanh_form);
  ASSERT_NE(out, nullptr) << loom_last_error();
  ASSERT_EQ(loom_backward(loom_sum(out, nullptr, 0, false), nullptr, false), 0) << loom_last_error();
  y.assign(xs.size(), kNaN);
  g.assign(xs.size(), kNaN);
  ASSERT_EQ(loom_to_host(out, y.data(), y.size() * sizeof(float)), 0) << loom_last_error();
  ASSERT_EQ(loom_to_host(loom_grad(x), g.data(), g.size() * sizeof(float)), 0) << loom_last_error();
}

// Error in units of the last place of max(|r|, floor): relative where the value is
// large, absolute (floor's ulp) near zero.
int64_t err_units(float y, float r, float floor) {
  float unit = std::max(std::fabs(r), floor);
  return (int64_t)std::ceil(std::fabs((double)y - r) / (std::nextafter(unit, kInf) - unit));
}

// The CPU computes sigmoid(2u) from exp(-|2u|) (no libm tanh, no cancellation where
// tanh u is near -1). u itself is rounded in f32, and the result's relative
// sensitivity to it is |2u| (1 - sigmoid(2u)), up to ~20 on [-12, 0]: measured 11
// ulp of max(|r|, 1e-3) there; limit 16. The gradient adds s and x s (1 - s) dv of
// opposite signs for x < 0, so its error is absolute: 3 ulp of max(|r|, 0.25); limit 4.
TEST(CpuMath, GeluTanhAndItsGradientMatchDouble) {
  std::vector<float> xs = gelu_inputs(), y, g;
  gelu_and_grad(xs, y, g);
  ASSERT_EQ(y.size(), xs.size());
  int64_t worst_y = 0, worst_g = 0;
  for (size_t i = 0; i < xs.size(); i++) {
    float x = xs[i];
    int64_t ey = err_units(y[i], ref_gelu_tanh(x), 1e-3f), eg = err_units(g[i], ref_gelu_tanh_grad(x), 0.25f);
    worst_y = std::max(worst_y, ey);
    worst_g = std::max(worst_g, eg);
    EXPECT_LE(ey, 16) << "gelu(" << x << ") = " << y[i] << ", expected " << ref_gelu_tanh(x);
    EXPECT_LE(eg, 4) << "gelu'(" << x << ") = " << g[i] << ", expected " << ref_gelu_tanh_grad(x);
    if (ey > 16 || eg > 4) break;
  }
  std::cout << "[ measured ] gelu tanh over " << xs.size() << " inputs: max error " << worst_y
            << " ulp of max(|r|, 1e-3), its gradient " << worst_g << " ulp of max(|r|, 0.25)\n";
  std::vector<float> e;
  gelu_and_grad({0.0f, kNaN, kInf, -kInf, -1e30f}, e, g);
  EXPECT_EQ(e[0], 0.0f);
  EXPECT_EQ(g[0], 0.5f);
  EXPECT_TRUE(std::isnan(e[1]) && std::isnan(g[1]));
  EXPECT_EQ(e[2], kInf);
  EXPECT_EQ(e[4], 0.0f);
  EXPECT_EQ(g[4], 0.0f);
}

// gelu (erf form) = x Phi(x) and its derivative Phi(x) + x phi(x), in double
// rounded to float. The CPU takes Phi from a vectorised erfc (fractional error
// under 1.2e-7, exp(-x^2 / 2) split so that x^2 is exact), so Phi stays
// accurate relative to itself in the left tail, where 1 + erf(x) (libm's erff,
// the previous kernel) cancels: measured 7 ulp of the value, relative, and 6
// ulp of max(|r|, 0.25) for the gradient; limits 8 and 8.
float ref_gelu_erf(float x) { return (float)((double)x * 0.5 * std::erfc(-(double)x / std::sqrt(2.0))); }
float ref_gelu_erf_grad(float x) {
  double phi = std::exp(-0.5 * (double)x * x) / std::sqrt(2 * M_PI);
  return (float)(0.5 * std::erfc(-(double)x / std::sqrt(2.0)) + x * phi);
}

TEST(CpuMath, GeluErfAndItsGradientMatchDouble) {
  std::vector<float> xs = gelu_inputs(), y, g;
  gelu_and_grad(xs, y, g, false);
  ASSERT_EQ(y.size(), xs.size());
  int64_t worst_y = 0, worst_g = 0;
  for (size_t i = 0; i < xs.size(); i++) {
    float x = xs[i];
    int64_t ey = err_units(y[i], ref_gelu_erf(x), 1e-30f), eg = err_units(g[i], ref_gelu_erf_grad(x), 0.25f);
    worst_y = std::max(worst_y, ey);
    worst_g = std::max(worst_g, eg);
    EXPECT_LE(ey, 8) << "gelu(" << x << ") = " << y[i] << ", expected " << ref_gelu_erf(x);
    EXPECT_LE(eg, 8) << "gelu'(" << x << ") = " << g[i] << ", expected " << ref_gelu_erf_grad(x);
    if (ey > 8 || eg > 8) break;
  }
  std::cout << "[ measured ] gelu erf over " << xs.size() << " inputs: max error " << worst_y
            << " ulp (relative), its gradient " << worst_g << " ulp of max(|r|, 0.25)\n";
  std::vector<float> e;
  gelu_and_grad({0.0f, kNaN, kInf, -kInf, -1e30f}, e, g, false);
  EXPECT_EQ(e[0], 0.0f);
  EXPECT_EQ(g[0], 0.5f);
  EXPECT_TRUE(std::isnan(e[1]) && std::isnan(g[1]));
  EXPECT_EQ(e[2], kInf);
  EXPECT_EQ(e[4], 0.0f);
}

}  // namespace
