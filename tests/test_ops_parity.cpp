// The edge cases where Loom follows PyTorch's exact rule (tools/fixtures/gen_parity.py):
// ties in max-like reductions, clamp at its bounds (scalar or tensor), maximum / minimum
// with NaN, var / std with correction >= N,
// addmm with beta = 0, kl_div at zero targets, the norm orders, F.pad in every mode and scatter with
// repeated indices. Each case runs on the
// CPU and, when a GPU is visible, on CUDA, in f64; NaN and infinities must sit where
// PyTorch puts them.
#include "loom_test.h"

#include <cmath>
#include <map>
#include <sstream>
#include <string>

namespace {

using Ins = std::vector<loom_tensor *>;
using CaseFn = std::function<loom_tensor *(const Ins &)>;

// Equal NaN / infinity pattern and a relative error <= tol over the finite entries.
::testing::AssertionResult same(const loom_tensor *out, const loom_tensor *ref, double tol) {
  if (!out) return ::testing::AssertionFailure() << "NULL: " << loom_last_error();
  if (!loom_shape_equal(loom_shape_of(out), loom_shape_of(ref)))
    return ::testing::AssertionFailure() << "shape " << loom_shape_str(loom_shape_of(out)) << ", PyTorch "
                                         << loom_shape_str(loom_shape_of(ref));
  std::vector<double> o = V(out), r = V(ref);
  double num = 0, den = 0;
  for (size_t i = 0; i < o.size(); i++) {
    if (std::isnan(r[i]) || std::isinf(r[i])) {
      if (!(std::isnan(r[i]) ? std::isnan(o[i]) : o[i] == r[i]))
        return ::testing::AssertionFailure() << "element " << i << " is " << o[i] << ", PyTorch " << r[i];
      continue;
    }
    if (!std::isfinite(o[i]))
      return ::testing::AssertionFailure() << "element " << i << " is " << o[i] << ", PyTorch " << r[i];
    num += (o[i] - r[i]) * (o[i] - r[i]);
    den += r[i] * r[i];
  }
  double err = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  if (!(err <= tol)) return ::testing::AssertionFailure() << "relative error " << err << " > " << tol;
  return ::testing::AssertionSuccess();
}

const int kD1[] = {1}, kD0[] = {0}, kD02[] = {0, 2};

// The Loom call of each fixture case (same names and arguments as gen_parity.py).
std::map<std::string, CaseFn> case_table() {
  auto amax = [](const int *d, int n, bool k) { return [=](const Ins &x) { return loom_amax(x[0], d, n, k); }; };
  auto amin = [](const int *d, int n, bool k) { return [=](const Ins &x) { return loom_amin(x[0], d, n, k); }; };
  auto norm = [](double p, const int *d, int n, bool k) {
    return [=](const Ins &x) { return loom_norm(x[0], p, d, n, k); };
  };
  auto clamp = [](double lo, double hi) { return [=](const Ins &x) { return loom_clamp(x[0], lo, hi); }; };
  auto var = [](const int *d, int n, double c, bool k) {
    return [=](const Ins &x) { return loom_var(x[0], d, n, c, k); };
  };
  auto stdv = [](const int *d, int n, double c) {
    return [=](const Ins &x) { return loom_std(x[0], d, n, c, false); };
  };
  auto kl = [](loom_reduction r) { return [=](const Ins &x) { return loom_kl_div(x[0], x[1], r, false); }; };
  auto pad = [](std::vector<int64_t> p, const char *mode, double value) {
    return [=](const Ins &x) { return loom_pad(x[0], p.data(), (int)p.size(), mode, value); };
  };
  auto scatter = [](int dim) {
    return [=](const Ins &x) {  // CUDA keeps the last of repeated indices only when deterministic
      bool det = loom_deterministic();
      loom_set_deterministic(true);
      loom_tensor *y = loom_scatter(x[0], dim, loom_to_dtype(x[1], LOOM_I64), x[2]);
      loom_set_deterministic(det);
      return y;
    };
  };
  return {
      {"max_all_ties", [](const Ins &x) { return loom_max_all(x[0]); }},
      {"min_all_ties", [](const Ins &x) { return loom_min_all(x[0]); }},
      {"max_all_nan", [](const Ins &x) { return loom_max_all(x[0]); }},
      {"min_all_nan", [](const Ins &x) { return loom_min_all(x[0]); }},
      {"amax_d1", amax(kD1, 1, false)},
      {"amax_d02_keep", amax(kD02, 2, true)},
      {"amax_all", amax(nullptr, 0, false)},
      {"amin_d1", amin(kD1, 1, false)},
      {"amin_d02_keep", amin(kD02, 2, true)},
      {"amax_nan_d1", amax(kD1, 1, false)},
      {"norm_inf_ties", norm(INFINITY, nullptr, 0, false)},
      {"norm_inf_d1_keep", norm(INFINITY, kD1, 1, true)},
      {"norm_ninf_d1", norm(-INFINITY, kD1, 1, false)},
      {"norm_ninf_zero", norm(-INFINITY, nullptr, 0, false)},
      {"norm_inf_nan", norm(INFINITY, nullptr, 0, false)},
      {"norm_p0_d1", norm(0, kD1, 1, false)},
      {"norm_p0_all", norm(0, nullptr, 0, false)},
      {"norm_pm1", norm(-1, nullptr, 0, false)},
      {"norm_pm1_zero", norm(-1, kD1, 1, false)},
      {"norm_pm2_d0", norm(-2, kD0, 1, false)},
      {"norm_p05_zero", norm(0.5, nullptr, 0, false)},
      {"norm_p15_zero", norm(1.5, kD1, 1, false)},
      {"norm_p3_d02", norm(3, kD02, 2, false)},
      {"norm_p3_zero_row", norm(3, kD1, 1, false)},
      {"norm_p2_zero_row", norm(2, kD1, 1, false)},
      {"norm_p1_zero", norm(1, nullptr, 0, false)},
      {"clamp_both", clamp(-1, 1)},
      {"clamp_lo", clamp(-1, INFINITY)},
      {"clamp_hi", clamp(-INFINITY, 1)},
      {"clamp_swapped", clamp(1, -1)},
      {"clamp_equal", clamp(0, 0)},
      {"clamp_nan_lo", clamp(NAN, 1)},
      {"clamp_nan_hi", clamp(-INFINITY, NAN)},
      {"clamp_t_grid", [](const Ins &x) { return loom_clamp_tensor(x[0], x[1], x[2]); }},
      {"clamp_t_min", [](const Ins &x) { return loom_clamp_tensor(x[0], x[1], nullptr); }},
      {"clamp_t_max", [](const Ins &x) { return loom_clamp_tensor(x[0], nullptr, x[1]); }},
      {"clamp_t_bcast", [](const Ins &x) { return loom_clamp_tensor(x[0], x[1], x[2]); }},
      {"clamp_t_bcast_out", [](const Ins &x) { return loom_clamp_tensor(x[0], x[1], x[2]); }},
      {"maximum_nan", [](const Ins &x) { return loom_maximum(x[0], x[1]); }},
      {"minimum_nan", [](const Ins &x) { return loom_minimum(x[0], x[1]); }},
      {"var_all_ceqn", var(nullptr, 0, 6, false)},
      {"var_all_cgtn", var(nullptr, 0, 7, false)},
      {"var_all_frac", var(nullptr, 0, 2.5, false)},
      {"var_d1_ceqn", var(kD1, 1, 3, false)},
      {"var_d1_cgtn", var(kD1, 1, 4, false)},
      {"var_d0_frac", var(kD0, 1, 2.5, false)},
      {"var_d1_frac_keep", var(kD1, 1, 0.5, true)},
      {"var_single", var(nullptr, 0, 1, false)},
      {"std_all_ceqn", stdv(nullptr, 0, 6)},
      {"std_all_cgtn", stdv(nullptr, 0, 7)},
      {"std_d1_ceqn", stdv(kD1, 1, 3)},
      {"std_d1_cgtn", stdv(kD1, 1, 4)},
      {"std_d1_frac", stdv(kD1, 1, 2.5)},
      {"addmm_beta0", [](const Ins &x) { return loom_addmm(x[0], x[1], x[2], 0, 1.5); }},
      {"addmm_beta0_bcast", [](const Ins &x) { return loom_addmm(x[0], x[1], x[2], 0, 1); }},
      {"kl_zero_sum", kl(LOOM_REDUCTION_SUM)},
      {"kl_zero_none", kl(LOOM_REDUCTION_NONE)},
      {"kl_neg_batchmean", kl(LOOM_REDUCTION_BATCHMEAN)},
      {"pad_const", pad({1, 2, 0, 1}, "constant", 1.5)},
      {"pad_const_crop", pad({-1, 2, 1, -2}, nullptr, 0)},
      {"pad_const_all", pad({1, 0, 0, 1, 2, 1}, "constant", -1)},
      {"pad_reflect1", pad({2, 3}, "reflect", 0)},
      {"pad_reflect1_crop", pad({-1, 3}, "reflect", 0)},
      {"pad_reflect2", pad({1, 2, 3, 0}, "reflect", 0)},
      {"pad_reflect3", pad({1, 1, 2, 0, 1, 2}, "reflect", 0)},
      {"pad_replicate1", pad({3, -1}, "replicate", 0)},
      {"pad_replicate2", pad({1, 2, 2, 1}, "replicate", 0)},
      {"pad_replicate3", pad({0, 2, 1, 1, 2, 0}, "replicate", 0)},
      {"pad_circular1", pad({2, 4}, "circular", 0)},
      {"pad_circular1_crop", pad({-1, 3}, "circular", 0)},
      {"pad_circular2", pad({1, 2, 3, 0}, "circular", 0)},
      {"pad_circular3", pad({1, 0, 2, 1, 1, 1}, "circular", 0)},
      {"scatter_d0_dup", scatter(0)},
      {"scatter_d1", scatter(1)},
      {"scatter_3d_neg_dim", scatter(-2)},
  };
}

std::vector<std::string> fixture_cases(const Fixture &fx) {
  std::istringstream in(fx.meta("cases"));
  std::vector<std::string> names;
  for (std::string n; in >> n;) names.push_back(n);
  return names;
}

// Runs one case on dev: forward, then the gradients of sum(out * w).
void run_case(const Fixture &fx, const std::string &c, const CaseFn &f, loom_device dev) {
  SCOPED_TRACE(c + " on " + (dev.type == LOOM_CUDA ? "cuda" : "cpu"));
  ScopeGuard scope;
  Ins ins;
  for (int i = 0; loom_map_get(fx.map, (c + ".in" + std::to_string(i)).c_str()); i++) {
    loom_tensor *x = loom_to_device(fx[c + ".in" + std::to_string(i)], dev);
    ASSERT_NE(x, nullptr) << loom_last_error();
    ASSERT_EQ(loom_set_requires_grad(x, true), 0);
    ins.push_back(x);
  }
  loom_tensor *out = f(ins);
  ASSERT_NE(out, nullptr) << loom_last_error();
  EXPECT_EQ(loom_device_of(out).type, dev.type);
  EXPECT_TRUE(same(out, fx[c + ".out"], 1e-12)) << "output";
  loom_tensor *w = loom_to_device(fx[c + ".w"], dev);
  ASSERT_EQ(loom_backward(loom_sum(loom_mul(out, w), nullptr, 0, false), nullptr, false), 0) << loom_last_error();
  for (size_t i = 0; i < ins.size(); i++) {
    std::string key = c + ".g" + std::to_string(i);
    if (loom_map_get(fx.map, key.c_str()))
      EXPECT_TRUE(same(loom_grad(ins[i]), fx[key], 1e-12)) << "gradient of input " << i;
    else
      EXPECT_EQ(loom_grad(ins[i]), nullptr) << "input " << i << " has a gradient; PyTorch gives it none";
  }
}

void run_all(loom_device dev) {
  Fixture fx("ops_parity");
  ASSERT_TRUE(fx.ok());
  std::map<std::string, CaseFn> table = case_table();
  std::vector<std::string> names = fixture_cases(fx);
  EXPECT_EQ(names.size(), table.size()) << "the fixture and the test list different cases";
  for (const std::string &c : names) {
    auto it = table.find(c);
    if (it == table.end()) {
      ADD_FAILURE() << "fixture case " << c << " has no Loom call in case_table()";
      continue;
    }
    run_case(fx, c, it->second, dev);
  }
}

}  // namespace

TEST(OpsParity, MatchesPyTorchOnCpu) { run_all(loom_cpu()); }

TEST(OpsParity, MatchesPyTorchOnCuda) {
  LOOM_REQUIRE_GPU();
  run_all(loom_cuda(0));
}

// What PyTorch refuses, Loom refuses with a message naming the op.
TEST(OpsParity, RefusesUndefinedReductions) {
  ScopeGuard scope;
  loom_tensor *empty = loom_zeros(LOOM_SHAPE(0, 3), LOOM_F64, loom_cpu());
  for (double p : {double(INFINITY), -double(INFINITY), -1.0}) {
    EXPECT_EQ(loom_norm(empty, p, kD0, 1, false), nullptr) << "p = " << p;
    EXPECT_NE(std::string(loom_last_error()).find("norm"), std::string::npos);
  }
  EXPECT_NEAR(loom_item(loom_norm(empty, 0, nullptr, 0, false)), 0.0, 0);
  EXPECT_NEAR(loom_item(loom_norm(empty, 2, nullptr, 0, false)), 0.0, 0);
  EXPECT_EQ(loom_norm(empty, NAN, nullptr, 0, false), nullptr);
  EXPECT_EQ(loom_amax(empty, kD0, 1, false), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("amax"), std::string::npos);
  loom_tensor *row_max = loom_amax(empty, kD1, 1, false);  // a kept empty dim is fine
  ASSERT_NE(row_max, nullptr) << loom_last_error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(row_max), LOOM_SHAPE(0)));
  EXPECT_EQ(loom_var(empty, nullptr, 0, NAN, false), nullptr);
  EXPECT_EQ(loom_amin(loom_zeros(LOOM_SHAPE(2), LOOM_BOOL, loom_cpu()), nullptr, 0, false), nullptr);
}

// clamp with tensor bounds: PyTorch's result type over x, lo and hi; each gradient in its
// input's dtype; and clear refusals.
TEST(OpsParity, ClampTensorTypesAndErrors) {
  ScopeGuard scope;
  loom_tensor *x = T({-1, 0.5, 3}, LOOM_SHAPE(3), LOOM_F32);
  loom_tensor *lo = T({0, 0, 0}, LOOM_SHAPE(3), LOOM_F64);
  loom_tensor *hi0 = T({2}, LOOM_SHAPE(), LOOM_F64);  // 0-d: does not promote x's category
  ASSERT_EQ(loom_set_requires_grad(x, true), 0);
  ASSERT_EQ(loom_set_requires_grad(lo, true), 0);
  loom_tensor *y = loom_clamp_tensor(x, lo, hi0);
  ASSERT_NE(y, nullptr) << loom_last_error();
  EXPECT_EQ(loom_dtype_of(y), LOOM_F64);
  EXPECT_EQ(V(y), (std::vector<double>{0, 0.5, 2}));
  ASSERT_EQ(loom_backward(loom_sum(y, nullptr, 0, false), nullptr, false), 0) << loom_last_error();
  ASSERT_NE(loom_grad(x), nullptr);
  EXPECT_EQ(loom_dtype_of(loom_grad(x)), LOOM_F32);
  EXPECT_EQ(V(loom_grad(x)), (std::vector<double>{0, 1, 0}));
  EXPECT_EQ(V(loom_grad(lo)), (std::vector<double>{1, 0, 0}));

  loom_tensor *i32 = T({-3, 1, 9}, LOOM_SHAPE(3), LOOM_I32);
  loom_tensor *yi = loom_clamp_tensor(i32, T({0}, LOOM_SHAPE(), LOOM_I64), T({5.5}, LOOM_SHAPE(), LOOM_F32));
  ASSERT_NE(yi, nullptr) << loom_last_error();
  EXPECT_EQ(loom_dtype_of(yi), LOOM_F32);  // a 0-d float bound lifts an integer x to float
  EXPECT_EQ(V(yi), (std::vector<double>{0, 1, 5.5}));

  auto refuses = [](loom_tensor *r, const char *what) {
    EXPECT_EQ(r, nullptr);
    std::string e = loom_last_error();
    EXPECT_NE(e.find("clamp"), std::string::npos) << e;
    EXPECT_NE(e.find(what), std::string::npos) << e;
  };
  refuses(loom_clamp_tensor(x, nullptr, nullptr), "NULL");
  refuses(loom_clamp(i32, NAN, 1), "NaN bound");
  refuses(loom_clamp_tensor(x, loom_zeros(LOOM_SHAPE(2), LOOM_F32, loom_cpu()), nullptr), "broadcast");
  refuses(loom_clamp_tensor(loom_zeros(LOOM_SHAPE(3), LOOM_BOOL, loom_cpu()), lo, nullptr), "bool");
  loom_clear_error();  // a NULL input keeps an earlier error; start clean to see clamp's own
  refuses(loom_clamp_tensor(nullptr, lo, nullptr), "NULL");
}

// pad: integer and bool tensors keep their dtype (a constant value is truncated); a
// zero padding still gives a new tensor; PyTorch's refusals come with a message naming pad.
TEST(OpsParity, PadTypesAndErrors) {
  ScopeGuard scope;
  const int64_t p11[] = {1, 1};
  loom_tensor *xi = T({0, 1, 2}, LOOM_SHAPE(1, 3), LOOM_I32);
  loom_tensor *yi = loom_pad(xi, p11, 2, nullptr, 2.7);
  ASSERT_NE(yi, nullptr) << loom_last_error();
  EXPECT_EQ(loom_dtype_of(yi), LOOM_I32);
  EXPECT_EQ(V(yi), (std::vector<double>{2, 0, 1, 2, 2}));
  EXPECT_EQ(V(loom_pad(xi, p11, 2, "reflect", 0)), (std::vector<double>{1, 0, 1, 2, 1}));
  loom_tensor *yb = loom_pad(loom_zeros(LOOM_SHAPE(1, 2), LOOM_BOOL, loom_cpu()), p11, 2, "constant", 1);
  ASSERT_NE(yb, nullptr) << loom_last_error();
  EXPECT_EQ(V(yb), (std::vector<double>{1, 0, 0, 1}));
  loom_tensor *x = T({0, 1, 2}, LOOM_SHAPE(1, 3), LOOM_F32);
  const int64_t p00[] = {0, 0};
  loom_tensor *same = loom_pad(x, p00, 2, "constant", 0);
  ASSERT_NE(same, nullptr) << loom_last_error();
  EXPECT_FALSE(loom_shares_storage(same, x));
  loom_tensor *empty = loom_pad(loom_zeros(LOOM_SHAPE(0, 2, 3), LOOM_F32, loom_cpu()), p11, 2, "circular", 0);
  ASSERT_NE(empty, nullptr) << loom_last_error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(empty), LOOM_SHAPE(0, 2, 5)));

  auto refuses = [](loom_tensor *r, const char *what) {
    EXPECT_EQ(r, nullptr);
    std::string e = loom_last_error();
    EXPECT_NE(e.find("pad"), std::string::npos) << e;
    EXPECT_NE(e.find(what), std::string::npos) << e;
  };
  const int64_t p1[] = {1}, p6[] = {1, 1, 1, 1, 1, 1}, p30[] = {3, 0}, pm21[] = {-2, -1}, p40[] = {4, 0},
                pm31[] = {-3, 1}, pm22[] = {-2, -2}, p1111[] = {1, 1, 1, 1};
  refuses(loom_pad(x, p1, 1, nullptr, 0), "even");
  refuses(loom_pad(x, p6, 6, nullptr, 0), "6 padding values for a 2-d tensor");
  refuses(loom_pad(x, p30, 2, "reflect", 0), "smaller than the dim");
  refuses(loom_pad(x, pm21, 2, "reflect", 0), "leaves no elements");
  refuses(loom_pad(x, p40, 2, "circular", 0), "more than once");
  refuses(loom_pad(x, pm31, 2, "circular", 0), "nothing to wrap");
  refuses(loom_pad(x, pm22, 2, nullptr, 0), "negative size");
  EXPECT_EQ(V(loom_pad(x, pm31, 2, nullptr, 0)), (std::vector<double>{0}));  // crops to nothing, then pads
  refuses(loom_pad(x, p1111, 4, "reflect", 0), "3-d or 4-d");
  refuses(loom_pad(T({1, 2, 3}, LOOM_SHAPE(3), LOOM_F32), p11, 2, "replicate", 0), "2-d or 3-d");
  refuses(loom_pad(loom_zeros(LOOM_SHAPE(1, 0), LOOM_F32, loom_cpu()), p11, 2, "replicate", 0), "non-empty");
  refuses(loom_pad(x, p11, 2, "reflect", 1), "takes no value");
  refuses(loom_pad(x, p11, 2, "zeros", 0), "unknown mode");
  refuses(loom_pad(x, nullptr, 2, nullptr, 0), "NULL");
  loom_clear_error();
  refuses(loom_pad(nullptr, p11, 2, nullptr, 0), "NULL");
}
