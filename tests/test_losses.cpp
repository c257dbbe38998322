// Losses (include/loom/losses.h) against PyTorch fixtures (tools/fixtures/gen_losses.py),
// finite-difference gradient checks, the fused cross-entropy against the composed one,
// and bad input. CUDA against the CPU: tests/test_losses_cuda.cpp.
#include "loom_test.h"

#include <cmath>
#include <string>

namespace {

loom_reduction red_of(const std::string &r) {
  if (r == "sum") return LOOM_REDUCTION_SUM;
  if (r == "none") return LOOM_REDUCTION_NONE;
  if (r == "batchmean") return LOOM_REDUCTION_BATCHMEAN;
  return LOOM_REDUCTION_MEAN;
}

// Like close(), but infinities must match exactly and NaN reference entries are skipped
// (PyTorch's own gradient is 0/0 there).
::testing::AssertionResult close_nonfinite(const loom_tensor *out, const loom_tensor *ref, double tol) {
  if (!out) return ::testing::AssertionFailure() << "output is NULL: " << loom_last_error();
  std::vector<double> o = V(out), r = V(ref);
  if (!loom_shape_equal(loom_shape_of(out), loom_shape_of(ref)))
    return ::testing::AssertionFailure() << "shape " << loom_shape_str(loom_shape_of(out)) << " want "
                                         << loom_shape_str(loom_shape_of(ref));
  double num = 0, den = 0;
  for (size_t i = 0; i < o.size(); i++) {
    if (std::isnan(r[i])) continue;
    if (std::isinf(r[i])) {
      if (o[i] != r[i]) return ::testing::AssertionFailure() << "element " << i << " is " << o[i] << " want " << r[i];
      continue;
    }
    num += (o[i] - r[i]) * (o[i] - r[i]);
    den += r[i] * r[i];
  }
  double err = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  if (!(err <= tol)) return ::testing::AssertionFailure() << "relative error " << err << " > " << tol;
  return ::testing::AssertionSuccess();
}

// A loss called with the fixture's case (constants read from fx), its input x and target t.
using LossFn = std::function<loom_tensor *(const Fixture &, const std::string &, loom_tensor *, loom_tensor *,
                                           loom_reduction)>;

// Runs the case for each reduction on CPU f64 and compares the loss and the gradients.
void check_case(const Fixture &fx, const std::string &c, const LossFn &f,
                std::vector<std::string> reds = {"mean", "sum", "none"}, double tol = 1e-10) {
  for (const std::string &red : reds) {
    SCOPED_TRACE(c + " " + red);
    ScopeGuard scope;
    loom_tensor *x = loom_clone(fx[c + ".x"]), *t = loom_clone(fx[c + ".t"]);
    ASSERT_EQ(loom_set_requires_grad(x, true), 0);
    bool t_grad = loom_dtype_is_float(loom_dtype_of(t));
    if (t_grad) ASSERT_EQ(loom_set_requires_grad(t, true), 0);
    loom_tensor *out = f(fx, c, x, t, red_of(red));
    ASSERT_NE(out, nullptr) << loom_last_error();
    EXPECT_TRUE(close(out, fx[c + "." + red + ".out"], tol));
    loom_tensor *scalar = loom_ndim(out) == 0 ? out : loom_sum(loom_mul(out, fx[c + "." + red + ".wout"]), nullptr, 0, false);
    ASSERT_EQ(loom_backward(scalar, nullptr, false), 0) << loom_last_error();
    EXPECT_TRUE(close_nonfinite(loom_grad(x), fx[c + "." + red + ".g_x"], tol)) << "grad of x";
    if (t_grad) EXPECT_TRUE(close_nonfinite(loom_grad(t), fx[c + "." + red + ".g_t"], tol)) << "grad of t";
  }
}

loom_tensor *opt(const Fixture &fx, const std::string &key) {
  loom_tensor *t = loom_map_get(fx.map, key.c_str());
  return t;
}

// cross_entropy with the case's options (weight when stored; ignore_index and smoothing given).
LossFn ce(bool fused, int64_t ignore = -100, double smoothing = 0) {
  return [=](const Fixture &fx, const std::string &c, loom_tensor *x, loom_tensor *t, loom_reduction r) {
    loom_cross_entropy_opts o = {};
    o.weight = opt(fx, c + ".c_weight");
    o.set_ignore_index = ignore != -100;
    o.ignore_index = ignore;
    o.label_smoothing = smoothing;
    o.reduction = r;
    return fused ? loom_cross_entropy(x, t, &o) : loom_cross_entropy_unfused(x, t, &o);
  };
}

}  // namespace

// ---- PyTorch fixtures ----

TEST(Losses, CrossEntropyMatchesPyTorch) {
  Fixture fx("losses_ce");
  ASSERT_TRUE(fx.ok());
  for (bool fused : {true, false}) {
    SCOPED_TRACE(fused ? "fused" : "composed");
    check_case(fx, "ce_idx", ce(fused));
    check_case(fx, "ce_w", ce(fused));
    check_case(fx, "ce_ign", ce(fused));
    check_case(fx, "ce_ign2", ce(fused, 2));
    check_case(fx, "ce_ls", ce(fused, -100, 0.1));
    check_case(fx, "ce_ls_w", ce(fused, -100, 0.2));
    check_case(fx, "ce_3d", ce(fused));
    check_case(fx, "ce_4d", ce(fused, -100, 0.15));
    check_case(fx, "ce_prob", ce(fused));
    check_case(fx, "ce_prob_w_ls", ce(fused, -100, 0.3));
    check_case(fx, "ce_prob_3d", ce(fused));
    check_case(fx, "ce_unbatched", ce(fused));
  }
}

TEST(Losses, NllMatchesPyTorch) {
  Fixture fx("losses_ce");
  ASSERT_TRUE(fx.ok());
  LossFn nll = [](const Fixture &fx, const std::string &c, loom_tensor *x, loom_tensor *t, loom_reduction r) {
    loom_nll_loss_opts o = {};
    o.weight = opt(fx, c + ".c_weight");
    o.reduction = r;
    return loom_nll_loss(x, t, &o);
  };
  check_case(fx, "nll", nll);
  check_case(fx, "nll_w_ign", nll);
  check_case(fx, "nll_3d", nll);
}

TEST(Losses, RegressionLossesMatchPyTorch) {
  Fixture fx("losses_elementwise");
  ASSERT_TRUE(fx.ok());
  auto plain = [](loom_tensor *(*fn)(const loom_tensor *, const loom_tensor *, loom_reduction)) -> LossFn {
    return [fn](const Fixture &, const std::string &, loom_tensor *x, loom_tensor *t, loom_reduction r) {
      return fn(x, t, r);
    };
  };
  auto param = [](loom_tensor *(*fn)(const loom_tensor *, const loom_tensor *, double, loom_reduction),
                  double p) -> LossFn {
    return [fn, p](const Fixture &, const std::string &, loom_tensor *x, loom_tensor *t, loom_reduction r) {
      return fn(x, t, p, r);
    };
  };
  check_case(fx, "mse", plain(loom_mse_loss));
  check_case(fx, "l1", plain(loom_l1_loss));
  check_case(fx, "smooth_l1", param(loom_smooth_l1_loss, 1.0));
  check_case(fx, "smooth_l1_b05", param(loom_smooth_l1_loss, 0.5));
  check_case(fx, "smooth_l1_b0", param(loom_smooth_l1_loss, 0.0));
  check_case(fx, "huber", param(loom_huber_loss, 1.0));
  check_case(fx, "huber_d07", param(loom_huber_loss, 0.7));
  // a target of another shape broadcasts (with PyTorch's warning on stderr)
  check_case(fx, "mse_bcast", plain(loom_mse_loss));
  check_case(fx, "l1_bcast_out", plain(loom_l1_loss));
  check_case(fx, "smooth_l1_bcast", param(loom_smooth_l1_loss, 0.5));
  check_case(fx, "huber_bcast", param(loom_huber_loss, 0.7));
}

TEST(Losses, BinaryCrossEntropyMatchesPyTorch) {
  Fixture fx("losses_elementwise");
  ASSERT_TRUE(fx.ok());
  LossFn bce = [](const Fixture &fx, const std::string &c, loom_tensor *x, loom_tensor *t, loom_reduction r) {
    return loom_bce_loss(x, t, opt(fx, c + ".c_weight"), r);
  };
  LossFn bcel = [](const Fixture &fx, const std::string &c, loom_tensor *x, loom_tensor *t, loom_reduction r) {
    return loom_bce_with_logits(x, t, opt(fx, c + ".c_weight"), opt(fx, c + ".c_pos_weight"), r);
  };
  check_case(fx, "bce", bce);
  check_case(fx, "bce_w", bce);
  check_case(fx, "bce_edge", bce);  // input exactly 0 and 1: log clamped at -100
  check_case(fx, "bcel", bcel);
  check_case(fx, "bcel_w_pw", bcel);
}

TEST(Losses, KlDivMatchesPyTorch) {
  Fixture fx("losses_elementwise");
  ASSERT_TRUE(fx.ok());
  auto kl = [](bool log_target) -> LossFn {
    return [log_target](const Fixture &, const std::string &, loom_tensor *x, loom_tensor *t, loom_reduction r) {
      return loom_kl_div(x, t, r, log_target);
    };
  };
  check_case(fx, "kl", kl(false), {"mean", "sum", "none", "batchmean"});
  check_case(fx, "kl_log", kl(true), {"mean", "sum", "none", "batchmean"});
}

// ---- finite-difference gradient checks (f64) ----

namespace {

loom_tensor *leaf(loom_tensor *t) {
  EXPECT_EQ(loom_set_requires_grad(t, true), 0);
  return t;
}

// Random f64 CPU tensor in [lo, hi) from a fixed seed.
loom_tensor *rnd(loom_shape s, double lo, double hi, uint64_t seed) {
  loom_manual_seed(seed);
  return loom_add_scalar(loom_mul_scalar(loom_rand(s, LOOM_F64, loom_cpu()), hi - lo), lo);
}

}  // namespace

TEST(LossesGrad, CrossEntropy) {
  ScopeGuard scope;
  loom_tensor *x = leaf(rnd(LOOM_SHAPE(3, 4, 2), -2, 2, 1));
  loom_tensor *t = T({0, 3, 1, -100, 2, 2}, LOOM_SHAPE(3, 2), LOOM_I64);
  loom_tensor *w = T({0.5, 1.0, 2.0, 1.5}, LOOM_SHAPE(4), LOOM_F64);
  for (bool fused : {true, false})
    for (loom_reduction r : {LOOM_REDUCTION_MEAN, LOOM_REDUCTION_SUM, LOOM_REDUCTION_NONE}) {
      loom_cross_entropy_opts o = {w, false, 0, 0.2, r};
      auto f = [&](const std::vector<loom_tensor *> &in) {
        return fused ? loom_cross_entropy(in[0], t, &o) : loom_cross_entropy_unfused(in[0], t, &o);
      };
      EXPECT_TRUE(gradcheck(f, {x})) << (fused ? "fused" : "composed") << " reduction " << r;
    }
  // probabilities: gradient w.r.t. logits and target
  loom_tensor *p = leaf(rnd(LOOM_SHAPE(3, 4, 2), 0.1, 1, 2));
  loom_cross_entropy_opts o = {w, false, 0, 0.1, LOOM_REDUCTION_MEAN};
  EXPECT_TRUE(gradcheck([&](const std::vector<loom_tensor *> &in) { return loom_cross_entropy(in[0], in[1], &o); },
                        {x, p}));
}

TEST(LossesGrad, Nll) {
  ScopeGuard scope;
  loom_tensor *x = leaf(rnd(LOOM_SHAPE(4, 3), -3, -0.1, 3));
  loom_tensor *t = T({0, 2, -100, 1}, LOOM_SHAPE(4), LOOM_I64);
  loom_nll_loss_opts o = {T({1, 2, 0.5}, LOOM_SHAPE(3), LOOM_F64), false, 0, LOOM_REDUCTION_MEAN};
  EXPECT_TRUE(gradcheck([&](const std::vector<loom_tensor *> &in) { return loom_nll_loss(in[0], t, &o); }, {x}));
}

TEST(LossesGrad, Elementwise) {
  ScopeGuard scope;
  // differences kept away from the kinks (0 and +-beta / +-delta)
  loom_tensor *x = leaf(T({-1.3, -0.2, 0.45, 1.7, 2.4, -2.2}, LOOM_SHAPE(2, 3), LOOM_F64));
  loom_tensor *y = leaf(T({0.1, 0.35, -0.3, 1.1, -0.5, 0.3}, LOOM_SHAPE(2, 3), LOOM_F64));
  using F = std::function<loom_tensor *(const std::vector<loom_tensor *> &)>;
  std::vector<std::pair<const char *, F>> fs = {
      {"mse", [](auto &in) { return loom_mse_loss(in[0], in[1], LOOM_REDUCTION_NONE); }},
      {"l1", [](auto &in) { return loom_l1_loss(in[0], in[1], LOOM_REDUCTION_MEAN); }},
      {"smooth_l1", [](auto &in) { return loom_smooth_l1_loss(in[0], in[1], 0.5, LOOM_REDUCTION_NONE); }},
      {"huber", [](auto &in) { return loom_huber_loss(in[0], in[1], 0.7, LOOM_REDUCTION_SUM); }},
  };
  for (auto &[name, f] : fs) EXPECT_TRUE(gradcheck(f, {x, y})) << name;
  loom_tensor *p = leaf(rnd(LOOM_SHAPE(2, 3), 0.1, 0.9, 4)), *q = leaf(rnd(LOOM_SHAPE(2, 3), 0, 1, 5));
  loom_tensor *w = T({0.5, 2, 1}, LOOM_SHAPE(3), LOOM_F64);
  EXPECT_TRUE(gradcheck([&](auto &in) { return loom_bce_loss(in[0], in[1], w, LOOM_REDUCTION_NONE); }, {p, q}))
      << "bce";
  EXPECT_TRUE(gradcheck([&](auto &in) { return loom_bce_with_logits(in[0], in[1], w, w, LOOM_REDUCTION_MEAN); },
                        {x, q}))
      << "bce_with_logits";
  loom_tensor *lp = leaf(rnd(LOOM_SHAPE(2, 3), -3, -0.2, 6));
  for (bool log_target : {false, true})
    EXPECT_TRUE(gradcheck([&](auto &in) { return loom_kl_div(in[0], in[1], LOOM_REDUCTION_BATCHMEAN, log_target); },
                          {lp, log_target ? lp : p}))
        << "kl_div log_target " << log_target;
}

// ---- the fused cross-entropy against the composed reference ----

TEST(Losses, FusedCrossEntropyMatchesComposed) {
  ScopeGuard scope;
  loom_manual_seed(7);
  loom_tensor *x0 = loom_mul_scalar(loom_randn(LOOM_SHAPE(64, 37, 3), LOOM_F32, loom_cpu()), 3);
  loom_tensor *t = loom_randint(0, 37, LOOM_SHAPE(64, 3), LOOM_I64, loom_cpu());
  t = loom_where(loom_lt(loom_rand(LOOM_SHAPE(64, 3), LOOM_F32, loom_cpu()), loom_scalar_like(x0, 0.1)),
                 loom_scalar_like(t, -1), t);
  loom_tensor *w = loom_add_scalar(loom_rand(LOOM_SHAPE(37), LOOM_F32, loom_cpu()), 0.5);
  for (double s : {0.0, 0.25})
    for (loom_reduction r : {LOOM_REDUCTION_MEAN, LOOM_REDUCTION_NONE}) {
      loom_cross_entropy_opts o = {w, true, -1, s, r};
      loom_tensor *xs[2], *outs[2];
      for (int k = 0; k < 2; k++) {
        xs[k] = leaf(loom_clone(x0));
        outs[k] = k ? loom_cross_entropy_unfused(xs[k], t, &o) : loom_cross_entropy(xs[k], t, &o);
        ASSERT_NE(outs[k], nullptr) << loom_last_error();
        loom_tensor *g = loom_ndim(outs[k]) ? loom_sum(loom_mul(outs[k], outs[k]), nullptr, 0, false) : outs[k];
        ASSERT_EQ(loom_backward(g, nullptr, false), 0) << loom_last_error();
      }
      EXPECT_LE(rel_err(outs[0], outs[1]), 1e-5) << "smoothing " << s << " reduction " << r;
      EXPECT_LE(rel_err(loom_grad(xs[0]), loom_grad(xs[1])), 1e-5) << "smoothing " << s << " reduction " << r;
    }
}

// f16 / bf16 logits on the CPU go through f32 and give the loss in their dtype.
TEST(Losses, HalfLogitsOnCpu) {
  ScopeGuard scope;
  loom_tensor *x = T({1, -2, 0.5, 3, 0, -1}, LOOM_SHAPE(2, 3)), *t = T({2, 0}, LOOM_SHAPE(2), LOOM_I64);
  loom_tensor *ref = loom_cross_entropy(x, t, nullptr);
  for (loom_dtype dt : {LOOM_F16, LOOM_BF16}) {
    loom_tensor *out = loom_cross_entropy(loom_to_dtype(x, dt), t, nullptr);
    ASSERT_NE(out, nullptr) << loom_last_error();
    EXPECT_EQ(loom_dtype_of(out), dt);
    EXPECT_LE(rel_err(out, ref), 1e-2);
  }
}

// Inside an autocast region, half inputs are computed (and returned) in f32, as in PyTorch.
TEST(Losses, AutocastComputesInF32) {
  ScopeGuard scope;
  loom_tensor *x = loom_to_dtype(T({1, -2, 0.5, 3, 0, -1}, LOOM_SHAPE(2, 3)), LOOM_BF16);
  loom_tensor *t = T({2, 0}, LOOM_SHAPE(2), LOOM_I64);
  ASSERT_EQ(loom_autocast_begin(LOOM_CPU, LOOM_BF16), 0) << loom_last_error();
  loom_tensor *ce = loom_cross_entropy(x, t, nullptr), *mse = loom_mse_loss(x, x, LOOM_REDUCTION_MEAN);
  loom_autocast_end();
  ASSERT_NE(ce, nullptr) << loom_last_error();
  ASSERT_NE(mse, nullptr) << loom_last_error();
  EXPECT_EQ(loom_dtype_of(ce), LOOM_F32);
  EXPECT_EQ(loom_dtype_of(mse), LOOM_F32);
  EXPECT_LE(rel_err(ce, loom_cross_entropy(loom_to_dtype(x, LOOM_F32), t, nullptr)), 1e-6);
}

// Hand-derivable: uniform logits over C classes give log C; a perfect guess gives ~0.
TEST(Losses, CrossEntropySmallCases) {
  ScopeGuard scope;
  loom_tensor *x = T({0, 0, 0, 0, 100, 0}, LOOM_SHAPE(2, 3)), *t = T({1, 1}, LOOM_SHAPE(2), LOOM_I64);
  loom_cross_entropy_opts o = {};
  o.reduction = LOOM_REDUCTION_NONE;
  std::vector<double> v = V(loom_cross_entropy(x, t, &o));
  EXPECT_NEAR(v[0], std::log(3.0), 1e-6);
  EXPECT_NEAR(v[1], 0, 1e-6);
  // every target ignored: mean is 0 / 0 = NaN as in PyTorch, sum is 0
  loom_tensor *all_ignored = T({-100, -100}, LOOM_SHAPE(2), LOOM_I64);
  EXPECT_TRUE(std::isnan(loom_item(loom_cross_entropy(x, all_ignored, nullptr))));
  o.reduction = LOOM_REDUCTION_SUM;
  EXPECT_EQ(loom_item(loom_cross_entropy(x, all_ignored, &o)), 0);
}

// ---- bad input ----

namespace {
::testing::AssertionResult fails_with(loom_tensor *out, const std::string &what) {
  if (out) return ::testing::AssertionFailure() << "returned a tensor, expected an error mentioning " << what;
  std::string msg = loom_last_error();
  if (msg.find(what) == std::string::npos)
    return ::testing::AssertionFailure() << "error \"" << msg << "\" does not mention " << what;
  return ::testing::AssertionSuccess();
}
}  // namespace

TEST(Losses, BadInput) {
  ScopeGuard scope;
  loom_tensor *x = T({1, 2, 3, 4, 5, 6}, LOOM_SHAPE(2, 3)), *t = T({0, 2}, LOOM_SHAPE(2), LOOM_I64);
  EXPECT_TRUE(fails_with(loom_cross_entropy(x, T({0, 3}, LOOM_SHAPE(2), LOOM_I64), nullptr), "cross_entropy"));
  EXPECT_TRUE(fails_with(loom_cross_entropy(x, T({0, 3}, LOOM_SHAPE(2), LOOM_I64), nullptr), "out of range"));
  EXPECT_TRUE(fails_with(loom_cross_entropy(x, T({-1, 0}, LOOM_SHAPE(2), LOOM_I64), nullptr), "-1"));
  EXPECT_TRUE(fails_with(loom_cross_entropy(x, T({0, 1, 2}, LOOM_SHAPE(3), LOOM_I64), nullptr), "shape"));
  EXPECT_TRUE(fails_with(loom_cross_entropy(x, T({0, 1}, LOOM_SHAPE(2), LOOM_U8), nullptr), "i64"));
  EXPECT_TRUE(fails_with(loom_cross_entropy(x, T({0, 1, 0}, LOOM_SHAPE(3)), nullptr), "cross_entropy: target shape"));
  EXPECT_TRUE(fails_with(loom_cross_entropy(loom_to_dtype(x, LOOM_F64), loom_softmax(x, 1), nullptr), "dtype"));
  EXPECT_TRUE(fails_with(loom_cross_entropy(T({1}, LOOM_SHAPE()), T({0}, LOOM_SHAPE(), LOOM_I64), nullptr),
                         "cross_entropy: expected float input"));
  EXPECT_TRUE(fails_with(loom_cross_entropy(loom_to_dtype(x, LOOM_I64), t, nullptr), "cross_entropy"));
  loom_cross_entropy_opts o = {};
  o.weight = T({1, 2}, LOOM_SHAPE(2));
  EXPECT_TRUE(fails_with(loom_cross_entropy(x, t, &o), "weight"));
  o.weight = T({1, 2, 3}, LOOM_SHAPE(3), LOOM_F64);
  EXPECT_TRUE(fails_with(loom_cross_entropy(x, t, &o), "weight"));
  o = {};
  o.label_smoothing = 1.5;
  EXPECT_TRUE(fails_with(loom_cross_entropy(x, t, &o), "label_smoothing"));
  o = {};
  o.reduction = LOOM_REDUCTION_BATCHMEAN;
  EXPECT_TRUE(fails_with(loom_cross_entropy(x, t, &o), "reduction"));
  o.reduction = (loom_reduction)42;
  EXPECT_TRUE(fails_with(loom_cross_entropy(x, t, &o), "reduction"));
  EXPECT_EQ(loom_cross_entropy(nullptr, t, nullptr), nullptr);
  EXPECT_TRUE(fails_with(loom_nll_loss(x, x, nullptr), "nll_loss: target must hold class indices"));
  EXPECT_TRUE(fails_with(loom_nll_loss(x, T({5, 0}, LOOM_SHAPE(2), LOOM_I64), nullptr), "nll_loss"));

  loom_tensor *y = T({1, 2, 3}, LOOM_SHAPE(3));
  EXPECT_TRUE(fails_with(loom_mse_loss(x, T({1, 2}, LOOM_SHAPE(2)), LOOM_REDUCTION_MEAN),
                         "mse_loss: target shape [2] does not broadcast with input shape [2, 3]"));
  EXPECT_TRUE(fails_with(loom_l1_loss(x, loom_to_dtype(x, LOOM_I64), LOOM_REDUCTION_MEAN), "l1_loss: expected float"));
  EXPECT_TRUE(fails_with(loom_bce_loss(x, y, nullptr, LOOM_REDUCTION_MEAN), "bce_loss: target shape [3] must match"));
  EXPECT_TRUE(fails_with(loom_mse_loss(x, x, LOOM_REDUCTION_BATCHMEAN), "mse_loss: reduction"));
  EXPECT_TRUE(fails_with(loom_smooth_l1_loss(x, x, -1, LOOM_REDUCTION_MEAN), "smooth_l1_loss: beta"));
  EXPECT_TRUE(fails_with(loom_huber_loss(x, x, 0, LOOM_REDUCTION_MEAN), "huber_loss: delta"));
  EXPECT_TRUE(fails_with(loom_bce_loss(x, x, T({1, 2}, LOOM_SHAPE(2)), LOOM_REDUCTION_MEAN), "bce_loss: weight"));
  EXPECT_TRUE(fails_with(loom_bce_with_logits(x, x, nullptr, T({1, 2}, LOOM_SHAPE(2)), LOOM_REDUCTION_MEAN),
                         "bce_with_logits: pos_weight"));
  EXPECT_TRUE(fails_with(loom_kl_div(x, y, LOOM_REDUCTION_BATCHMEAN, false), "kl_div"));
  EXPECT_EQ(loom_mse_loss(x, nullptr, LOOM_REDUCTION_MEAN), nullptr);
  EXPECT_TRUE(fails_with(loom_mse_loss(loom_to_dtype(x, LOOM_I32), loom_to_dtype(x, LOOM_I32), LOOM_REDUCTION_MEAN),
                         "mse_loss: expected float"));
}

TEST(Losses, NoLeaks) {
  int64_t before = loom_live_tensors();
  {
    ScopeGuard scope;
    loom_tensor *x = leaf(T({1, 2, 3, 4, 5, 6}, LOOM_SHAPE(2, 3))), *t = T({0, 2}, LOOM_SHAPE(2), LOOM_I64);
    loom_cross_entropy_opts o = {};
    o.label_smoothing = 0.1;
    loom_tensor *l = loom_add(loom_cross_entropy(x, t, &o), loom_mse_loss(x, x, LOOM_REDUCTION_SUM));
    ASSERT_EQ(loom_backward(l, nullptr, false), 0);
    EXPECT_EQ(loom_cross_entropy(x, T({9, 0}, LOOM_SHAPE(2), LOOM_I64), nullptr), nullptr);
  }
  EXPECT_EQ(loom_live_tensors(), before);
}

// Input and target of two float dtypes: the loss takes the promoted one, as in
// PyTorch, and each gradient its input's dtype.
TEST(Losses, RegressionLossesPromote) {
  ScopeGuard scope;
  loom_tensor *x = leaf(T({1, 2, 3, 4}, LOOM_SHAPE(2, 2))), *t = leaf(T({0.5, 2.5}, LOOM_SHAPE(2), LOOM_F64));
  loom_tensor *l = loom_mse_loss(x, t, LOOM_REDUCTION_MEAN);
  ASSERT_NE(l, nullptr) << loom_last_error();
  EXPECT_EQ(loom_dtype_of(l), LOOM_F64);
  EXPECT_DOUBLE_EQ(loom_item(l), (0.25 + 0.25 + 6.25 + 2.25) / 4);
  ASSERT_EQ(loom_backward(l, nullptr, false), 0) << loom_last_error();
  EXPECT_EQ(loom_dtype_of(loom_grad(x)), LOOM_F32);
  EXPECT_EQ(loom_dtype_of(loom_grad(t)), LOOM_F64);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(loom_grad(t)), LOOM_SHAPE(2)));
  EXPECT_EQ(V(loom_grad(t)), (std::vector<double>{-(0.5 + 2.5) / 2, -(-0.5 + 1.5) / 2}));
}
