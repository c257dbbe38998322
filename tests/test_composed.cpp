// Composed ops against scalar references, with gradient checks.
#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

#include "loom_test.h"

#define ASSERT_T(t) ASSERT_NE((t), nullptr) << loom_last_error()

namespace {

using Fn = std::function<loom_tensor *(const std::vector<loom_tensor *> &)>;

std::vector<double> randv(int64_t n, unsigned seed, double lo = -2, double hi = 2) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v((size_t)n);
  for (double &x : v) x = u(rng);
  return v;
}

std::vector<int64_t> dims_of(loom_shape s) { return std::vector<int64_t>(s.d, s.d + s.ndim); }

// The elements of a row-major tensor grouped by their index over the dims not in `red`
// (all dims when red is empty), groups in row-major order of the kept dims.
std::vector<std::vector<double>> groups(const std::vector<double> &x, const std::vector<int64_t> &shape,
                                        std::vector<int> red) {
  int nd = (int)shape.size();
  for (int &d : red) d = d < 0 ? d + nd : d;
  auto reduced = [&](int d) { return red.empty() || std::find(red.begin(), red.end(), d) != red.end(); };
  int64_t n_out = 1;
  for (int d = 0; d < nd; d++)
    if (!reduced(d)) n_out *= shape[(size_t)d];
  std::vector<std::vector<double>> out((size_t)n_out);
  for (int64_t flat = 0; flat < (int64_t)x.size(); flat++) {
    int64_t rest = flat, o = 0, mul = 1;
    for (int d = nd - 1; d >= 0; d--) {
      int64_t i = rest % shape[(size_t)d];
      rest /= shape[(size_t)d];
      if (!reduced(d)) o += i * mul, mul *= shape[(size_t)d];
    }
    out[(size_t)o].push_back(x[(size_t)flat]);
  }
  return out;
}

std::vector<double> reduce_ref(const std::vector<double> &x, const std::vector<int64_t> &shape,
                               const std::vector<int> &red,
                               const std::function<double(const std::vector<double> &)> &f) {
  std::vector<double> out;
  for (const auto &grp : groups(x, shape, red)) out.push_back(f(grp));
  return out;
}

double mean_of(const std::vector<double> &g) {
  double s = 0;
  for (double v : g) s += v;
  return s / (double)g.size();
}

double var_of(const std::vector<double> &g, int correction) {
  double m = mean_of(g), s = 0;
  for (double v : g) s += (v - m) * (v - m);
  return s / (double)((int64_t)g.size() - correction);
}

// Shape after reducing `red` of `shape` (with or without keepdim).
loom_shape reduced_shape(const std::vector<int64_t> &shape, std::vector<int> red, bool keepdim) {
  int nd = (int)shape.size();
  for (int &d : red) d = d < 0 ? d + nd : d;
  loom_shape s{0, {0}};
  for (int d = 0; d < nd; d++) {
    bool r = red.empty() || std::find(red.begin(), red.end(), d) != red.end();
    if (!r)
      s.d[s.ndim++] = shape[(size_t)d];
    else if (keepdim)
      s.d[s.ndim++] = 1;
  }
  return s;
}

void expect_close(const std::vector<double> &got, const std::vector<double> &want, double rtol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); i++)
    EXPECT_NEAR(got[i], want[i], rtol * (1 + std::fabs(want[i]))) << "element " << i;
}

// Checks a reduction op over several dim sets and keepdim, values and shape, f32 and f64.
void check_reduction(const char *name, const std::function<loom_tensor *(loom_tensor *, const int *, int, bool)> &op,
                     const std::function<double(const std::vector<double> &)> &ref, double lo = -2, double hi = 2) {
  const std::vector<int64_t> shape = {2, 3, 4};
  const std::vector<std::vector<int>> dim_sets = {{}, {0}, {1}, {-1}, {0, 2}, {-3, -2}, {0, 1, 2}};
  std::vector<double> xv = randv(24, 11, lo, hi);
  for (loom_dtype dt : {LOOM_F32, LOOM_F64}) {
    loom_tensor *x = T(xv, LOOM_SHAPE(2, 3, 4), dt);
    for (const auto &dims : dim_sets)
      for (bool keep : {false, true}) {
        SCOPED_TRACE(testing::Message() << name << " " << loom_dtype_name(dt) << " dims "
                                        << testing::PrintToString(dims) << " keepdim " << keep);
        loom_tensor *y = op(x, dims.empty() ? nullptr : dims.data(), (int)dims.size(), keep);
        ASSERT_T(y);
        EXPECT_EQ(loom_dtype_of(y), dt);
        loom_shape want = reduced_shape(shape, dims, keep);
        EXPECT_TRUE(loom_shape_equal(loom_shape_of(y), want))
            << "got " << loom_shape_str(loom_shape_of(y)) << ", want " << loom_shape_str(want);
        expect_close(V(y), reduce_ref(xv, shape, dims, ref), dt == LOOM_F32 ? 1e-5 : 1e-12);
      }
  }
}

loom_tensor *leaf(const std::vector<double> &v, loom_shape s) {
  loom_tensor *t = T(v, s, LOOM_F64);
  loom_set_requires_grad(t, true);
  return t;
}

// Reference matmul of row-major [n, k] @ [k, m].
std::vector<double> mm_ref(const std::vector<double> &a, const std::vector<double> &b, int64_t n, int64_t k,
                           int64_t m) {
  std::vector<double> c((size_t)(n * m), 0.0);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < m; j++)
      for (int64_t p = 0; p < k; p++) c[(size_t)(i * m + j)] += a[(size_t)(i * k + p)] * b[(size_t)(p * m + j)];
  return c;
}

}  // namespace

TEST(Composed, Mean) {
  ScopeGuard g;
  check_reduction("mean", loom_mean, mean_of);
  loom_tensor *x = leaf(randv(12, 1), LOOM_SHAPE(3, 4));
  const int d[] = {1};
  EXPECT_TRUE(gradcheck([&](const std::vector<loom_tensor *> &in) { return loom_mean(in[0], d, 1, true); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_mean(in[0], nullptr, 0, false); }, {x}));
}

TEST(Composed, VarAndStdWithCorrection) {
  ScopeGuard g;
  for (int corr : {0, 1}) {
    SCOPED_TRACE(testing::Message() << "correction " << corr);
    check_reduction(
        "var", [corr](loom_tensor *x, const int *d, int n, bool k) { return loom_var(x, d, n, corr, k); },
        [corr](const std::vector<double> &grp) { return var_of(grp, corr); });
    check_reduction(
        "std", [corr](loom_tensor *x, const int *d, int n, bool k) { return loom_std(x, d, n, corr, k); },
        [corr](const std::vector<double> &grp) { return std::sqrt(var_of(grp, corr)); });
    loom_tensor *x = leaf(randv(12, 2), LOOM_SHAPE(3, 4));
    const int d[] = {0};
    EXPECT_TRUE(
        gradcheck([&](const std::vector<loom_tensor *> &in) { return loom_var(in[0], d, 1, corr, false); }, {x}));
    EXPECT_TRUE(
        gradcheck([&](const std::vector<loom_tensor *> &in) { return loom_std(in[0], nullptr, 0, corr, true); }, {x}));
  }
  // PyTorch: var of [1, 2, 3, 4] is 1.6667 (unbiased) and 1.25 (population)
  loom_tensor *v = T({1, 2, 3, 4}, LOOM_SHAPE(4));
  EXPECT_NEAR(loom_item(loom_var(v, nullptr, 0, 1, false)), 5.0 / 3.0, 1e-6);
  EXPECT_NEAR(loom_item(loom_var(v, nullptr, 0, 0, false)), 1.25, 1e-6);
}

TEST(Composed, LogSumExpStaysFinite) {
  ScopeGuard g;
  check_reduction("logsumexp", loom_logsumexp, [](const std::vector<double> &grp) {
    double s = 0;
    for (double v : grp) s += std::exp(v);
    return std::log(s);
  });
  loom_tensor *big = T({1000, 1000.5, 999, -1000, -1001, -999.5}, LOOM_SHAPE(2, 3));
  const int d[] = {1};
  loom_tensor *l = loom_logsumexp(big, d, 1, false);
  ASSERT_T(l);
  std::vector<double> lv = V(l);
  EXPECT_NEAR(lv[0], 1000.5 + std::log(std::exp(-0.5) + 1 + std::exp(-1.5)), 1e-3);
  EXPECT_NEAR(lv[1], -999.5 + std::log(std::exp(-0.5) + std::exp(-1.5) + 1), 1e-3);
  loom_tensor *x = leaf({500, 501, -3, 2, 0.5, 1}, LOOM_SHAPE(2, 3));
  EXPECT_TRUE(gradcheck([&](const std::vector<loom_tensor *> &in) { return loom_logsumexp(in[0], d, 1, true); }, {x}));
}

TEST(Composed, Norms) {
  ScopeGuard g;
  auto pnorm = [](double p) {
    return [p](const std::vector<double> &grp) {
      double s = 0, m = 0;
      for (double v : grp) s += std::pow(std::fabs(v), p), m = std::max(m, std::fabs(v));
      return std::isinf(p) ? m : std::pow(s, 1 / p);
    };
  };
  for (double p : {1.0, 2.0, 3.0, (double)INFINITY}) {
    SCOPED_TRACE(testing::Message() << "p = " << p);
    check_reduction(
        "norm", [p](loom_tensor *x, const int *d, int n, bool k) { return loom_norm(x, p, d, n, k); }, pnorm(p));
  }
  EXPECT_NEAR(loom_item(loom_norm(T({3, -4}, LOOM_SHAPE(2)), 2, nullptr, 0, false)), 5.0, 1e-6);
  // away from zero and with a unique largest magnitude so each norm is differentiable
  loom_tensor *x = leaf({0.5, -1.5, 2.5, 0.75, -0.25, 1.25}, LOOM_SHAPE(2, 3));
  const int d[] = {-1};
  for (double p : {1.0, 2.0, 3.0, (double)INFINITY})
    EXPECT_TRUE(gradcheck([&](const std::vector<loom_tensor *> &in) { return loom_norm(in[0], p, d, 1, false); }, {x}))
        << "p = " << p;
}

TEST(Composed, MaskedFill) {
  ScopeGuard g;
  loom_tensor *x = T({1, 2, 3, 4, 5, 6}, LOOM_SHAPE(2, 3));
  loom_tensor *mask = T({1, 0, 1}, LOOM_SHAPE(3), LOOM_BOOL);
  loom_tensor *y = loom_masked_fill(x, mask, -9);
  ASSERT_T(y);
  EXPECT_EQ(V(y), (std::vector<double>{-9, 2, -9, -9, 5, -9}));
  EXPECT_EQ(V(x), (std::vector<double>{1, 2, 3, 4, 5, 6})) << "masked_fill is out of place";
  loom_tensor *ninf = loom_masked_fill(x, T({0, 1, 0, 0, 0, 1}, LOOM_SHAPE(2, 3), LOOM_BOOL), -INFINITY);
  ASSERT_T(ninf);
  EXPECT_EQ(V(ninf), (std::vector<double>{1, -INFINITY, 3, 4, 5, -INFINITY}));
  loom_tensor *xl = leaf(randv(6, 3), LOOM_SHAPE(2, 3));
  EXPECT_TRUE(
      gradcheck([&](const std::vector<loom_tensor *> &in) { return loom_masked_fill(in[0], mask, 2.5); }, {xl}));
  loom_tensor *m64 = loom_masked_fill(xl, mask, 0);
  ASSERT_EQ(loom_backward(loom_sum(m64, nullptr, 0, false), nullptr, false), 0) << loom_last_error();
  EXPECT_EQ(V(loom_grad(xl)), (std::vector<double>{0, 1, 0, 0, 1, 0}));
}

TEST(Composed, Addmm) {
  ScopeGuard g;
  std::vector<double> iv = randv(3, 4), av = randv(8, 5), bv = randv(12, 6);
  for (double beta : {0.0, 1.0, 0.5})
    for (double alpha : {1.0, 2.0}) {
      SCOPED_TRACE(testing::Message() << "beta " << beta << " alpha " << alpha);
      loom_tensor *y = loom_addmm(T(iv, LOOM_SHAPE(3)), T(av, LOOM_SHAPE(2, 4)), T(bv, LOOM_SHAPE(4, 3)), beta, alpha);
      ASSERT_T(y);
      EXPECT_TRUE(loom_shape_equal(loom_shape_of(y), LOOM_SHAPE(2, 3)));
      std::vector<double> ref = mm_ref(av, bv, 2, 4, 3);
      for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) ref[(size_t)(i * 3 + j)] = beta * iv[(size_t)j] + alpha * ref[(size_t)(i * 3 + j)];
      expect_close(V(y), ref, 1e-5);
    }
  loom_tensor *in = leaf(randv(2, 7), LOOM_SHAPE(2, 1)), *a = leaf(av, LOOM_SHAPE(2, 4)),
              *b = leaf(bv, LOOM_SHAPE(4, 3));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &x) { return loom_addmm(x[0], x[1], x[2], 0.5, -1.5); },
                        {in, a, b}));
}

TEST(Composed, MatmulShapeRules) {
  ScopeGuard g;
  std::vector<double> a3 = randv(3, 8), b3 = randv(3, 9), m32 = randv(6, 10), m23 = randv(6, 12);
  loom_tensor *dot = loom_matmul(T(a3, LOOM_SHAPE(3)), T(b3, LOOM_SHAPE(3)));
  ASSERT_T(dot);
  EXPECT_EQ(loom_ndim(dot), 0);
  expect_close(V(dot), mm_ref(a3, b3, 1, 3, 1), 1e-5);

  loom_tensor *vm = loom_matmul(T(a3, LOOM_SHAPE(3)), T(m32, LOOM_SHAPE(3, 2)));
  ASSERT_T(vm);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(vm), LOOM_SHAPE(2)));
  expect_close(V(vm), mm_ref(a3, m32, 1, 3, 2), 1e-5);

  loom_tensor *mv = loom_matmul(T(m23, LOOM_SHAPE(2, 3)), T(b3, LOOM_SHAPE(3)));
  ASSERT_T(mv);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(mv), LOOM_SHAPE(2)));
  expect_close(V(mv), mm_ref(m23, b3, 2, 3, 1), 1e-5);

  // [2, 1, 3, 4] @ [5, 4, 2] -> [2, 5, 3, 2]
  std::vector<double> av = randv(24, 13), bv = randv(40, 14);
  loom_tensor *bb = loom_matmul(T(av, LOOM_SHAPE(2, 1, 3, 4)), T(bv, LOOM_SHAPE(5, 4, 2)));
  ASSERT_T(bb);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(bb), LOOM_SHAPE(2, 5, 3, 2))) << loom_shape_str(loom_shape_of(bb));
  std::vector<double> ref;
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 5; j++) {
      std::vector<double> ai(av.begin() + i * 12, av.begin() + (i + 1) * 12);
      std::vector<double> bj(bv.begin() + j * 8, bv.begin() + (j + 1) * 8);
      for (double v : mm_ref(ai, bj, 3, 4, 2)) ref.push_back(v);
    }
  expect_close(V(bb), ref, 1e-5);
  // 1-d operand against a batch: [4] @ [5, 4, 2] -> [5, 2]
  loom_tensor *vb = loom_matmul(T(randv(4, 15), LOOM_SHAPE(4)), T(bv, LOOM_SHAPE(5, 4, 2)));
  ASSERT_T(vb);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(vb), LOOM_SHAPE(5, 2))) << loom_shape_str(loom_shape_of(vb));

  loom_tensor *x = leaf(randv(24, 16), LOOM_SHAPE(2, 1, 3, 4)), *y = leaf(randv(40, 17), LOOM_SHAPE(5, 4, 2));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_matmul(in[0], in[1]); }, {x, y}));
  loom_tensor *v = leaf(randv(4, 18), LOOM_SHAPE(4)), *w = leaf(randv(4, 19), LOOM_SHAPE(4));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_matmul(in[0], in[1]); }, {v, w}));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_matmul(in[0], in[1]); }, {v, y}));
}

TEST(Composed, Bmm) {
  ScopeGuard g;
  std::vector<double> av = randv(24, 20), bv = randv(40, 21);
  loom_tensor *c = loom_bmm(T(av, LOOM_SHAPE(2, 3, 4)), T(bv, LOOM_SHAPE(2, 4, 5)));
  ASSERT_T(c);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(c), LOOM_SHAPE(2, 3, 5)));
  std::vector<double> ref;
  for (int b = 0; b < 2; b++) {
    std::vector<double> ab(av.begin() + b * 12, av.begin() + (b + 1) * 12),
        bb(bv.begin() + b * 20, bv.begin() + (b + 1) * 20);
    for (double v : mm_ref(ab, bb, 3, 4, 5)) ref.push_back(v);
  }
  expect_close(V(c), ref, 1e-5);
  loom_tensor *x = leaf(av, LOOM_SHAPE(2, 3, 4)), *y = leaf(bv, LOOM_SHAPE(2, 4, 5));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_bmm(in[0], in[1]); }, {x, y}));
}

TEST(Composed, ClampSquarePow) {
  ScopeGuard g;
  std::vector<double> xv = {-2, -0.7, -0.1, 0.3, 0.9, 1.6};
  loom_tensor *x = T(xv, LOOM_SHAPE(6));
  struct Case {
    double lo, hi;
  };
  for (Case c : {Case{-0.5, 0.5}, Case{-INFINITY, 0.5}, Case{-0.5, INFINITY}}) {
    std::vector<double> want;
    for (double v : xv) want.push_back(std::min(std::max(v, c.lo), c.hi));
    expect_close(V(loom_clamp(x, c.lo, c.hi)), want, 1e-6);
  }
  std::vector<double> sq, cube, root;
  for (double v : xv) sq.push_back(v * v), cube.push_back(v * v * v), root.push_back(std::sqrt(std::fabs(v)));
  expect_close(V(loom_square(x)), sq, 1e-6);
  expect_close(V(loom_pow_scalar(x, 3)), cube, 1e-6);
  expect_close(V(loom_pow_scalar(loom_abs(x), 0.5)), root, 1e-6);
  expect_close(V(loom_pow_scalar(x, 0)), std::vector<double>(6, 1.0), 0);

  loom_tensor *xl = leaf(xv, LOOM_SHAPE(6));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_clamp(in[0], -0.5, INFINITY); }, {xl}));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_clamp(in[0], -INFINITY, 0.5); }, {xl}));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_square(in[0]); }, {xl}));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_pow_scalar(in[0], 3); }, {xl}));
  loom_tensor *pos = leaf({0.5, 1, 2.5, 4}, LOOM_SHAPE(4));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_pow_scalar(in[0], -1.5); }, {pos}));
}

// clamp with tensor bounds, broadcast, away from ties (some lo > hi): finite differences.
TEST(Composed, ClampTensorGradcheck) {
  ScopeGuard g;
  loom_tensor *x = leaf(randv(12, 11), LOOM_SHAPE(3, 4));
  loom_tensor *lo = leaf(randv(4, 12, -1.5, 0.5), LOOM_SHAPE(4));
  loom_tensor *hi = leaf(randv(3, 13, -0.5, 1.5), LOOM_SHAPE(3, 1));
  auto both = [](const std::vector<loom_tensor *> &in) { return loom_clamp_tensor(in[0], in[1], in[2]); };
  EXPECT_TRUE(gradcheck(both, {x, lo, hi}));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_clamp_tensor(in[0], in[1], nullptr); },
                        {x, lo}));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_clamp_tensor(in[0], nullptr, in[1]); },
                        {x, hi}));
}

TEST(Composed, ArgMaxMinAndAll) {
  ScopeGuard g;
  // ties resolve to the first index, as in PyTorch
  loom_tensor *x = T({1, 3, 3, 2, -1, 0, -1, 5}, LOOM_SHAPE(2, 4));
  loom_tensor *am = loom_argmax(x, 1, false);
  ASSERT_T(am);
  EXPECT_EQ(loom_dtype_of(am), LOOM_I64);
  EXPECT_EQ(V(am), (std::vector<double>{1, 3}));
  loom_tensor *an = loom_argmin(x, -1, true);
  ASSERT_T(an);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(an), LOOM_SHAPE(2, 1)));
  EXPECT_EQ(V(an), (std::vector<double>{0, 0}));
  EXPECT_EQ(V(loom_argmax(x, 0, false)), (std::vector<double>{0, 0, 0, 1}));
  EXPECT_EQ(V(loom_argmin(x, 0, false)), (std::vector<double>{1, 1, 1, 0}));

  loom_tensor *idx = nullptr;
  loom_tensor *mx = loom_max(x, 1, true, &idx);
  ASSERT_T(mx);
  ASSERT_T(idx);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(mx), LOOM_SHAPE(2, 1)));
  EXPECT_EQ(V(mx), (std::vector<double>{3, 5}));
  EXPECT_EQ(V(idx), (std::vector<double>{1, 3}));
  loom_tensor *mn = loom_min(x, 0, false, nullptr);
  ASSERT_T(mn);
  EXPECT_EQ(V(mn), (std::vector<double>{-1, 0, -1, 2}));

  loom_tensor *ma = loom_max_all(x), *mi = loom_min_all(x);
  ASSERT_T(ma);
  ASSERT_T(mi);
  EXPECT_EQ(loom_ndim(ma), 0);
  EXPECT_EQ(loom_item(ma), 5.0);
  EXPECT_EQ(loom_item(mi), -1.0);
  loom_tensor *ints = T({4, -7, 9, 2}, LOOM_SHAPE(4), LOOM_I32);
  EXPECT_EQ(loom_item(loom_max_all(ints)), 9.0);
  EXPECT_EQ(loom_item(loom_argmin(ints, 0, false)), 1.0);

  loom_tensor *xl = leaf({0.1, 2, -1, 0.7, 3, -2}, LOOM_SHAPE(2, 3));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_max(in[0], 1, false, nullptr); }, {xl}));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_min(in[0], 0, true, nullptr); }, {xl}));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_max_all(in[0]); }, {xl}));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_min_all(in[0]); }, {xl}));
}

TEST(Composed, OneHotInfersClasses) {
  ScopeGuard g;
  loom_tensor *i = T({2, 0, 3}, LOOM_SHAPE(3), LOOM_I64);
  loom_tensor *oh = loom_one_hot(i, -1);
  ASSERT_T(oh);
  EXPECT_EQ(loom_dtype_of(oh), LOOM_I64);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(oh), LOOM_SHAPE(3, 4)));
  EXPECT_EQ(V(oh), (std::vector<double>{0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1}));
  loom_tensor *oh6 = loom_one_hot(i, 6);
  ASSERT_T(oh6);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(oh6), LOOM_SHAPE(3, 6)));
  loom_tensor *i2 = T({1, 0, 1, 1}, LOOM_SHAPE(2, 2), LOOM_I64);
  loom_tensor *oh2 = loom_one_hot(i2, -1);
  ASSERT_T(oh2);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(oh2), LOOM_SHAPE(2, 2, 2)));
  EXPECT_EQ(V(oh2), (std::vector<double>{0, 1, 1, 0, 0, 1, 0, 1}));
}

// PyTorch orders bools (false < true); every comparison works on them.
TEST(Composed, ComparisonsOnBool) {
  ScopeGuard g;
  loom_tensor *a = T({0, 0, 1, 1}, LOOM_SHAPE(4), LOOM_BOOL), *b = T({0, 1, 0, 1}, LOOM_SHAPE(4), LOOM_BOOL);
  struct {
    loom_tensor *(*fn)(const loom_tensor *, const loom_tensor *);
    bool (*ref)(bool, bool);
  } cases[] = {{loom_lt, [](bool x, bool y) { return x < y; }}, {loom_le, [](bool x, bool y) { return x <= y; }},
               {loom_gt, [](bool x, bool y) { return x > y; }}, {loom_ge, [](bool x, bool y) { return x >= y; }},
               {loom_eq, [](bool x, bool y) { return x == y; }}, {loom_ne, [](bool x, bool y) { return x != y; }}};
  const bool av[] = {false, false, true, true}, bv[] = {false, true, false, true};
  for (auto &c : cases) {
    loom_tensor *r = c.fn(a, b);
    ASSERT_TRUE(r) << loom_last_error();
    EXPECT_EQ(loom_dtype_of(r), LOOM_BOOL);
    std::vector<double> got = V(r);
    for (int i = 0; i < 4; i++) EXPECT_EQ(got[(size_t)i], c.ref(av[i], bv[i]) ? 1.0 : 0.0) << "element " << i;
  }
}

// PyTorch's type promotion: 0-d tensors and scalars only win with a higher category.
TEST(Composed, PromotionOfZeroDimAndScalars) {
  ScopeGuard g;
  loom_tensor *f32v = T({1, 2}, LOOM_SHAPE(2), LOOM_F32), *f64s = T({2}, LOOM_SHAPE(), LOOM_F64);
  loom_tensor *i32v = T({1, 2}, LOOM_SHAPE(2), LOOM_I32), *i64s = T({3}, LOOM_SHAPE(), LOOM_I64);
  loom_tensor *bv = T({1, 0}, LOOM_SHAPE(2), LOOM_BOOL);
  EXPECT_EQ(loom_dtype_of(loom_mul(f32v, f64s)), LOOM_F32);
  EXPECT_EQ(loom_dtype_of(loom_mul(f64s, f32v)), LOOM_F32);
  EXPECT_EQ(loom_dtype_of(loom_add(i32v, i64s)), LOOM_I32);
  EXPECT_EQ(loom_dtype_of(loom_add(i32v, f64s)), LOOM_F64);
  EXPECT_EQ(loom_dtype_of(loom_add(f32v, T({1, 1}, LOOM_SHAPE(2), LOOM_F64))), LOOM_F64);
  loom_tensor *b3 = loom_add_scalar(bv, 3);
  ASSERT_TRUE(b3) << loom_last_error();
  EXPECT_EQ(loom_dtype_of(b3), LOOM_I64);
  EXPECT_EQ(V(b3), (std::vector<double>{4, 3}));
  EXPECT_EQ(loom_dtype_of(loom_mul_scalar(bv, 0.5)), LOOM_F32);
  EXPECT_EQ(loom_dtype_of(loom_add_scalar(i32v, 0.5)), LOOM_F32);
  EXPECT_EQ(loom_dtype_of(loom_add_scalar(i32v, 2)), LOOM_I32);
}
