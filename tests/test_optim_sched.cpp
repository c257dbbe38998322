// Learning-rate schedules, gradient clipping, loss scaling and checkpoint state
// of the optim family, against PyTorch (tools/fixtures/gen_optim.py).
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>

#include "loom_test.h"

namespace {

using MakeSched = std::function<loom_scheduler *(loom_optimizer *)>;

// SGD (or Adam) over two one-element params with lrs 0.1 and 0.05, as the fixture's.
struct TwoGroups {
  loom_tensor *p[2];
  loom_optimizer *opt;
  explicit TwoGroups(bool adam = false) {
    p[0] = loom_zeros(LOOM_SHAPE(1), LOOM_F32, loom_cpu());
    p[1] = loom_zeros(LOOM_SHAPE(1), LOOM_F32, loom_cpu());
    loom_sgd_opts o{};
    o.lr = 0.1;
    loom_adam_opts a{};
    a.lr = 0.1;
    opt = adam ? loom_adam(p, 1, &a) : loom_sgd(p, 1, &o);
    loom_optimizer_add_param_group(opt, &p[1], 1, 0.05, -1);
  }
  ~TwoGroups() { loom_optimizer_free(opt); }
};

enum class Opt { SGD, SGD_MOMENTUM, ADAM_MOMENTUM };

// lrs [21, 2]: after construction, then after each of 20 steps; with
// *_MOMENTUM also each group's momentum (SGD's, Adam's beta1) against name.momentum.
void check_schedule(const char *name, const MakeSched &make, int n_scheds = 1, Opt kind = Opt::SGD) {
  SCOPED_TRACE(name);
  Fixture fx("optim_sched");
  ASSERT_TRUE(fx.ok());
  ScopeGuard scope;
  TwoGroups tg(kind == Opt::ADAM_MOMENTUM);
  std::vector<loom_scheduler *> scheds;
  loom_scheduler *first = make(tg.opt);
  ASSERT_NE(first, nullptr) << loom_last_error();
  scheds.push_back(first);
  std::vector<double> lrs, moms;
  auto record = [&] {
    for (int g = 0; g < 2; g++) lrs.push_back(loom_optimizer_get_lr(tg.opt, g));
    for (int g = 0; g < 2; g++) moms.push_back(loom_optimizer_get_momentum(tg.opt, g));
  };
  if (n_scheds == 2) {  // "chained": LinearLR then StepLR on one optimiser
    loom_scheduler *second = loom_step_lr(tg.opt, 5, 0.5);
    ASSERT_NE(second, nullptr);
    scheds.push_back(second);
  }
  record();
  for (int s = 0; s < 20; s++) {
    for (loom_scheduler *sc : scheds) ASSERT_EQ(loom_scheduler_step(sc), 0) << loom_last_error();
    record();
  }
  EXPECT_TRUE(close(T(lrs, LOOM_SHAPE(21, 2), LOOM_F64), fx[name], 1e-12));
  if (kind != Opt::SGD) EXPECT_TRUE(close(T(moms, LOOM_SHAPE(21, 2), LOOM_F64), fx[std::string(name) + ".momentum"], 1e-12));
  EXPECT_DOUBLE_EQ(loom_scheduler_get_lr(scheds.back(), 1), lrs.back());
  for (loom_scheduler *sc : scheds) loom_scheduler_free(sc);
}

TEST(Schedule, MatchesPyTorch) {
  check_schedule("step", [](loom_optimizer *o) { return loom_step_lr(o, 3, 0.5); });
  check_schedule("multistep", [](loom_optimizer *o) {
    static const int ms[] = {9, 4, 15};  // unsorted on purpose
    return loom_multistep_lr(o, ms, 3, 0.3);
  });
  check_schedule("cosine", [](loom_optimizer *o) { return loom_cosine_annealing_lr(o, 7, 0.001); });
  check_schedule("linear", [](loom_optimizer *o) { return loom_linear_lr(o, 0.25, 1.0, 6); });
  check_schedule("onecycle", [](loom_optimizer *o) {
    loom_onecycle_opts oc{};
    oc.no_cycle_momentum = true;
    return loom_onecycle_lr(o, 1.0, 21, &oc);
  });
  check_schedule("onecycle3", [](loom_optimizer *o) {
    loom_onecycle_opts oc{};
    oc.pct_start = 0.25, oc.div_factor = 10, oc.final_div_factor = 100, oc.anneal_linear = true, oc.three_phase = true;
    oc.no_cycle_momentum = true;
    return loom_onecycle_lr(o, 0.5, 25, &oc);
  });
  check_schedule("sequential", [](loom_optimizer *o) {
    loom_scheduler *parts[2] = {loom_linear_lr(o, 0.1, 0, 4), loom_cosine_annealing_lr(o, 10, 0)};
    static const int ms[] = {4};
    return loom_sequential_lr(o, parts, 2, ms);
  });
  check_schedule("chained", [](loom_optimizer *o) { return loom_linear_lr(o, 0.5, 0, 4); }, 2);
  check_schedule("exponential", [](loom_optimizer *o) { return loom_exponential_lr(o, 0.8); });
  check_schedule("polynomial", [](loom_optimizer *o) { return loom_polynomial_lr(o, 7, 2.5); });
  check_schedule("lambda", [](loom_optimizer *o) {
    return loom_lambda_lr(o, [](int64_t e, int g, void *) { return g == 0 ? std::pow(0.9, (double)e) : 1.0 / (1 + 0.5 * e); },
                          nullptr);
  });
  check_schedule("warm_restarts", [](loom_optimizer *o) { return loom_cosine_warm_restarts_lr(o, 3, 2, 0.01); });
  check_schedule("warm_restarts1", [](loom_optimizer *o) { return loom_cosine_warm_restarts_lr(o, 4, 0, 0); });
  check_schedule("sequential_warm", [](loom_optimizer *o) {
    loom_scheduler *parts[2] = {loom_exponential_lr(o, 0.7), loom_cosine_warm_restarts_lr(o, 3, 1, 0)};
    static const int ms[] = {5};
    return loom_sequential_lr(o, parts, 2, ms);
  });
}

double inverse_cycle(double x, void *) { return 1.0 / (1.0 + x); }
double decay_by_step(double x, void *ctx) { return std::pow(*(const double *)ctx, x); }

// OneCycleLR and CyclicLR move momentum too (PyTorch's cycle_momentum=True).
TEST(Schedule, CyclingMatchesPyTorch) {
  check_schedule("onecycle_mom", [](loom_optimizer *o) {
    static const double peaks[] = {1.0, 0.4};
    loom_onecycle_opts oc{};
    oc.max_lrs = peaks;
    return loom_onecycle_lr(o, 0, 21, &oc);
  }, 1, Opt::SGD_MOMENTUM);
  check_schedule("onecycle3_mom_adam", [](loom_optimizer *o) {
    loom_onecycle_opts oc{};
    oc.pct_start = 0.25, oc.anneal_linear = true, oc.three_phase = true, oc.base_momentum = 0.8, oc.max_momentum = 0.9;
    return loom_onecycle_lr(o, 0.5, 25, &oc);
  }, 1, Opt::ADAM_MOMENTUM);
  check_schedule("cyclic", [](loom_optimizer *o) {
    static const double base[] = {0.01, 0.02}, peak[] = {0.1, 0.3};
    loom_cyclic_opts c{};
    c.step_size_up = 4, c.step_size_down = 3, c.base_lrs = base, c.max_lrs = peak;
    return loom_cyclic_lr(o, 0, 0, &c);
  }, 1, Opt::SGD_MOMENTUM);
  check_schedule("cyclic_tri2", [](loom_optimizer *o) {
    loom_cyclic_opts c{};
    c.step_size_up = 3, c.mode = LOOM_CYCLIC_TRIANGULAR2, c.no_cycle_momentum = true;
    return loom_cyclic_lr(o, 0.01, 0.2, &c);
  });
  check_schedule("cyclic_exp_adam", [](loom_optimizer *o) {
    static const double base_mom[] = {0.7, 0.6};
    loom_cyclic_opts c{};
    c.step_size_up = 2, c.step_size_down = 5, c.mode = LOOM_CYCLIC_EXP_RANGE, c.gamma = 0.9;
    c.base_momentums = base_mom, c.max_momentum = 0.85;
    return loom_cyclic_lr(o, 0.001, 0.05, &c);
  }, 1, Opt::ADAM_MOMENTUM);
  check_schedule("cyclic_fn_cycle", [](loom_optimizer *o) {
    loom_cyclic_opts c{};
    c.step_size_up = 3, c.scale_fn = inverse_cycle;
    return loom_cyclic_lr(o, 0.01, 0.1, &c);
  }, 1, Opt::SGD_MOMENTUM);
  check_schedule("cyclic_fn_iter", [](loom_optimizer *o) {
    static double rate = 0.95;
    loom_cyclic_opts c{};
    c.step_size_up = 3, c.scale_fn = decay_by_step, c.scale_ctx = &rate, c.scale_by_step = true;
    return loom_cyclic_lr(o, 0.01, 0.1, &c);
  }, 1, Opt::SGD_MOMENTUM);
}

// Cycled momentum reaches the update: SGD under OneCycleLR takes the steps
// of the SGD rule written out with each step's lr and momentum.
TEST(Schedule, CycledMomentumDrivesTheUpdate) {
  ScopeGuard scope;
  loom_tensor *p = loom_ones(LOOM_SHAPE(3), LOOM_F64, loom_cpu());
  loom_sgd_opts o{};
  o.lr = 0.1, o.momentum = 0.5;
  loom_optimizer *opt = loom_sgd(&p, 1, &o);
  loom_scheduler *s = loom_onecycle_lr(opt, 0.3, 10, nullptr);
  ASSERT_NE(s, nullptr) << loom_last_error();
  EXPECT_DOUBLE_EQ(loom_optimizer_get_momentum(opt, 0), 0.95);  // max_momentum at step 0
  std::vector<double> want = {1, 1, 1}, buf(3), moms;
  for (int i = 0; i < 6; i++) {
    std::vector<double> g = {1, -2, 0.5 * i};
    double lr = loom_optimizer_get_lr(opt, 0), m = loom_optimizer_get_momentum(opt, 0);
    moms.push_back(m);
    for (int k = 0; k < 3; k++) {
      buf[(size_t)k] = i == 0 ? g[(size_t)k] : m * buf[(size_t)k] + g[(size_t)k];
      want[(size_t)k] -= lr * buf[(size_t)k];
    }
    loom_set_grad(p, T(g, LOOM_SHAPE(3), LOOM_F64));
    ASSERT_EQ(loom_optimizer_step(opt), 0);
    ASSERT_EQ(loom_scheduler_step(s), 0);
  }
  EXPECT_LT(moms[3], moms[0]);  // it moved
  EXPECT_TRUE(close(p, T(want, LOOM_SHAPE(3), LOOM_F64), 1e-12));
  loom_scheduler_free(s);
  loom_optimizer_free(opt);
}

// ReduceLROnPlateau stepped with the fixture's metrics (one NaN among them).
void check_plateau(const char *name, const loom_plateau_opts &po, double sign) {
  SCOPED_TRACE(name);
  Fixture fx("optim_sched");
  ASSERT_TRUE(fx.ok());
  ScopeGuard scope;
  TwoGroups tg;
  loom_scheduler *s = loom_reduce_lr_on_plateau(tg.opt, &po);
  ASSERT_NE(s, nullptr) << loom_last_error();
  std::vector<double> metrics = V(fx["plateau_metrics"]), lrs;
  auto record = [&] { for (int g = 0; g < 2; g++) lrs.push_back(loom_optimizer_get_lr(tg.opt, g)); };
  record();
  for (double m : metrics) {
    ASSERT_EQ(loom_scheduler_step_metric(s, sign * m), 0) << loom_last_error();
    record();
  }
  EXPECT_TRUE(close(T(lrs, LOOM_SHAPE((int64_t)metrics.size() + 1, 2), LOOM_F64), fx[name], 1e-12));
  EXPECT_EQ(loom_scheduler_last_epoch(s), (int64_t)metrics.size());
  EXPECT_NE(loom_scheduler_step(s), 0);  // needs the metric
  EXPECT_NE(std::string(loom_last_error()).find("step_metric"), std::string::npos);
  loom_scheduler_free(s);
}

TEST(Schedule, ReduceLROnPlateauMatchesPyTorch) {
  loom_plateau_opts a{};
  a.factor = 0.5, a.patience = 2, a.threshold = 0.01, a.cooldown = 1, a.min_lr = 0.01;
  check_plateau("plateau_min", a, 1);
  loom_plateau_opts b{};
  b.mode_max = true, b.factor = 0.3, b.set_patience = true, b.threshold = 0.05, b.threshold_abs = true, b.min_lr = 0.02;
  check_plateau("plateau_max_abs", b, -1);
  static const double floors[] = {0.02, 0.005};
  loom_plateau_opts c{};
  c.factor = 0.5, c.patience = 1, c.min_lrs = floors, c.eps = 1e-3;
  check_plateau("plateau_min_lrs", c, 1);
}

// Warm restarts and ReduceLROnPlateau carry their own counters through a
// checkpoint; CyclicLR's cycled momentum comes back with the optimiser's groups.
TEST(Schedule, CountersRoundTrip) {
  ScopeGuard scope;
  for (int kind = 0; kind < 3; kind++) {
    SCOPED_TRACE(kind == 0 ? "warm restarts" : kind == 1 ? "plateau" : "cyclic");
    TwoGroups a(kind == 2), b(kind == 2);
    loom_plateau_opts po{};
    po.patience = 1;
    loom_cyclic_opts co{};
    co.step_size_up = 3;
    auto make = [&](loom_optimizer *o) {
      return kind == 0   ? loom_cosine_warm_restarts_lr(o, 2, 3, 0.001)
             : kind == 1 ? loom_reduce_lr_on_plateau(o, &po)
                         : loom_cyclic_lr(o, 0.01, 0.1, &co);
    };
    loom_scheduler *sa = make(a.opt), *sb = make(b.opt);
    auto step = [&](loom_scheduler *s, int i) {
      return kind == 1 ? loom_scheduler_step_metric(s, 1.0 / (1 + i % 3)) : loom_scheduler_step(s);
    };
    for (int i = 0; i < 7; i++) ASSERT_EQ(step(sa, i), 0);
    loom_tensor_map *m = loom_map_new();
    ASSERT_EQ(loom_scheduler_state_dict(sa, m, "sched."), 0);
    ASSERT_EQ(loom_optimizer_state_dict(a.opt, m, "opt."), 0);
    ASSERT_EQ(loom_scheduler_load_state_dict(sb, m, "sched."), 0) << loom_last_error();
    ASSERT_EQ(loom_optimizer_load_state_dict(b.opt, m, "opt."), 0) << loom_last_error();
    for (int i = 7; i < 20; i++) {
      ASSERT_EQ(step(sa, i), 0);
      ASSERT_EQ(step(sb, i), 0);
      for (int g = 0; g < 2; g++) {
        EXPECT_DOUBLE_EQ(loom_optimizer_get_lr(b.opt, g), loom_optimizer_get_lr(a.opt, g)) << i;
        EXPECT_DOUBLE_EQ(loom_optimizer_get_momentum(b.opt, g), loom_optimizer_get_momentum(a.opt, g)) << i;
      }
    }
    loom_map_free(m);
    loom_scheduler_free(sa);
    loom_scheduler_free(sb);
  }
}

TEST(Schedule, StateRoundTrip) {
  ScopeGuard scope;
  TwoGroups a, b;
  loom_scheduler *sa = loom_cosine_annealing_lr(a.opt, 7, 0.001), *sb = loom_cosine_annealing_lr(b.opt, 7, 0.001);
  for (int s = 0; s < 9; s++) loom_scheduler_step(sa);
  loom_tensor_map *m = loom_map_new();
  ASSERT_EQ(loom_scheduler_state_dict(sa, m, "sched."), 0);
  ASSERT_EQ(loom_optimizer_state_dict(a.opt, m, "opt."), 0);
  ASSERT_EQ(loom_scheduler_load_state_dict(sb, m, "sched."), 0) << loom_last_error();
  ASSERT_EQ(loom_optimizer_load_state_dict(b.opt, m, "opt."), 0) << loom_last_error();
  EXPECT_EQ(loom_scheduler_last_epoch(sb), 9);
  for (int s = 0; s < 5; s++) {
    loom_scheduler_step(sa);
    loom_scheduler_step(sb);
    for (int g = 0; g < 2; g++) EXPECT_DOUBLE_EQ(loom_optimizer_get_lr(b.opt, g), loom_optimizer_get_lr(a.opt, g));
  }
  EXPECT_NE(loom_scheduler_load_state_dict(sb, m, "nothing."), 0);
  loom_map_free(m);
  loom_scheduler_free(sa);
  loom_scheduler_free(sb);
}

TEST(Schedule, BadInput) {
  ScopeGuard scope;
  TwoGroups tg;
  EXPECT_EQ(loom_step_lr(tg.opt, 0, 0.1), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("StepLR"), std::string::npos);
  EXPECT_EQ(loom_cosine_annealing_lr(tg.opt, 0, 0), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("CosineAnnealingLR"), std::string::npos);
  EXPECT_EQ(loom_linear_lr(tg.opt, 2.0, 1, 5), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("LinearLR"), std::string::npos);
  EXPECT_EQ(loom_onecycle_lr(tg.opt, 1.0, 0, nullptr), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("OneCycleLR"), std::string::npos);
  // momentum bounds must be valid options of the optimiser: beta1 < 1 for Adam
  TwoGroups adam(true);
  loom_onecycle_opts bad{};
  bad.max_momentum = 1.0;
  double lr0 = loom_optimizer_get_lr(adam.opt, 0), m0 = loom_optimizer_get_momentum(adam.opt, 0);
  EXPECT_EQ(loom_onecycle_lr(adam.opt, 1.0, 10, &bad), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("not a valid beta1 of Adam"), std::string::npos) << loom_last_error();
  loom_cyclic_opts cb{};
  cb.base_momentum = -0.5;
  EXPECT_EQ(loom_cyclic_lr(adam.opt, 0.01, 0.1, &cb), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("base momentum -0.5 of group 0"), std::string::npos) << loom_last_error();
  EXPECT_EQ(loom_optimizer_get_lr(adam.opt, 0), lr0);  // nothing changed
  EXPECT_EQ(loom_optimizer_get_momentum(adam.opt, 0), m0);
  loom_cyclic_opts cs{};
  cs.step_size_up = -1;
  EXPECT_EQ(loom_cyclic_lr(tg.opt, 0.01, 0.1, &cs), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("CyclicLR"), std::string::npos);
  cs = {};
  cs.mode = (loom_cyclic_mode)7;
  EXPECT_EQ(loom_cyclic_lr(tg.opt, 0.01, 0.1, &cs), nullptr);
  EXPECT_EQ(loom_cyclic_lr(tg.opt, -0.01, 0.1, nullptr), nullptr);
  EXPECT_EQ(loom_cyclic_lr(nullptr, 0.01, 0.1, nullptr), nullptr);
  static const double neg[] = {0.01, -1};
  loom_plateau_opts pn{};
  pn.min_lrs = neg;
  EXPECT_EQ(loom_reduce_lr_on_plateau(tg.opt, &pn), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("ReduceLROnPlateau"), std::string::npos);
  loom_scheduler *oc = loom_onecycle_lr(tg.opt, 1.0, 3, nullptr);
  for (int s = 0; s < 3; s++) EXPECT_EQ(loom_scheduler_step(oc), 0);
  EXPECT_NE(loom_scheduler_step(oc), 0);  // past total_steps, as PyTorch
  loom_scheduler_free(oc);
  EXPECT_EQ(loom_step_lr(nullptr, 1, 0.1), nullptr);
  EXPECT_EQ(loom_exponential_lr(tg.opt, 0), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("ExponentialLR"), std::string::npos);
  EXPECT_EQ(loom_polynomial_lr(tg.opt, -1, 1), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("PolynomialLR"), std::string::npos);
  EXPECT_EQ(loom_lambda_lr(tg.opt, nullptr, nullptr), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("LambdaLR"), std::string::npos);
  EXPECT_EQ(loom_cosine_warm_restarts_lr(tg.opt, 0, 1, 0), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("CosineAnnealingWarmRestarts"), std::string::npos);
  loom_plateau_opts po{};
  po.factor = 1.5;
  EXPECT_EQ(loom_reduce_lr_on_plateau(tg.opt, &po), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("ReduceLROnPlateau"), std::string::npos);
  loom_scheduler *ex = loom_exponential_lr(tg.opt, 0.5);
  EXPECT_NE(loom_scheduler_step_metric(ex, 1.0), 0);  // takes no metric
  EXPECT_NE(std::string(loom_last_error()).find("ReduceLROnPlateau"), std::string::npos);
  loom_scheduler *pl = loom_reduce_lr_on_plateau(tg.opt, nullptr);
  loom_scheduler *parts[2] = {ex, pl};
  static const int ms[] = {3};
  EXPECT_EQ(loom_sequential_lr(tg.opt, parts, 2, ms), nullptr);  // frees both
  EXPECT_NE(std::string(loom_last_error()).find("ReduceLROnPlateau"), std::string::npos);
}

// ---- clipping ----

struct ClipParams {
  loom_tensor *p[3];
  explicit ClipParams(const Fixture &fx) {
    for (int i = 0; i < 3; i++) {
      std::string k = "grad" + std::to_string(i);
      p[i] = loom_zeros_like(fx[k]);
      loom_set_grad(p[i], loom_clone(fx[k]));
    }
  }
};

TEST(Clip, MatchesPyTorch) {
  Fixture fx("optim_clip");
  ASSERT_TRUE(fx.ok());
  struct Case { const char *name; double max_norm, type; };
  for (Case c : {Case{"l2", 1.0, 2.0}, Case{"inf", 0.5, INFINITY}, Case{"l1", 2.0, 1.0}, Case{"noclip", 100.0, 2.0}}) {
    SCOPED_TRACE(c.name);
    ScopeGuard scope;
    ClipParams cp(fx);
    double total = loom_clip_grad_norm(cp.p, 3, c.max_norm, c.type);
    EXPECT_NEAR(total, loom_item(fx[std::string(c.name) + ".total"]), 1e-12);
    for (int i = 0; i < 3; i++)
      EXPECT_TRUE(close(loom_grad(cp.p[i]), fx[std::string(c.name) + ".grad" + std::to_string(i)], 1e-12));
  }
  ScopeGuard scope;
  ClipParams cp(fx);
  ASSERT_EQ(loom_clip_grad_value(cp.p, 3, 0.7), 0);
  for (int i = 0; i < 3; i++) EXPECT_TRUE(close(loom_grad(cp.p[i]), fx["value.grad" + std::to_string(i)], 0));
}

TEST(Clip, NonFiniteLeavesGrads) {
  ScopeGuard scope;
  for (double bad : {NAN, INFINITY}) {
    for (double type : {2.0, (double)INFINITY}) {
      loom_tensor *p[2] = {loom_zeros(LOOM_SHAPE(3), LOOM_F32, loom_cpu()), loom_zeros(LOOM_SHAPE(2), LOOM_F32, loom_cpu())};
      loom_set_grad(p[0], T({3, bad, 4}, LOOM_SHAPE(3)));
      loom_set_grad(p[1], T({5, 6}, LOOM_SHAPE(2)));
      double total = loom_clip_grad_norm(p, 2, 1.0, type);
      EXPECT_FALSE(std::isfinite(total)) << bad << " " << type;
      EXPECT_EQ(V(loom_grad(p[1])), (std::vector<double>{5, 6}));
    }
  }
  // a NULL grad counts as none; bad arguments are errors
  loom_tensor *q = loom_zeros(LOOM_SHAPE(2), LOOM_F32, loom_cpu());
  EXPECT_EQ(loom_clip_grad_norm(&q, 1, 1.0, 2.0), 0.0);
  EXPECT_TRUE(std::isnan(loom_clip_grad_norm(&q, 1, 1.0, -1)));
  EXPECT_NE(std::string(loom_last_error()).find("clip_grad_norm"), std::string::npos);
  EXPECT_NE(loom_clip_grad_value(&q, 1, -1), 0);
}

TEST(Clip, CudaMatchesCpu) {
  LOOM_REQUIRE_GPU();
  Fixture fx("optim_clip");
  ScopeGuard scope;
  loom_tensor *p[3];
  for (int i = 0; i < 3; i++) {
    std::string k = "grad" + std::to_string(i);
    p[i] = loom_zeros(loom_shape_of(fx[k]), LOOM_F32, loom_cuda(0));
    loom_set_grad(p[i], loom_to(fx[k], loom_cuda(0), LOOM_F32));
  }
  EXPECT_NEAR(loom_clip_grad_norm(p, 3, 1.0, 2.0), loom_item(fx["l2.total"]), 1e-5);
  for (int i = 0; i < 3; i++) EXPECT_TRUE(close(loom_grad(p[i]), fx["l2.grad" + std::to_string(i)], 1e-5));
}

// ---- loss scaling ----

TEST(GradScaler, SkipsBacksOffAndGrows) {
  ScopeGuard scope;
  loom_tensor *p = loom_ones(LOOM_SHAPE(2), LOOM_F32, loom_cpu());
  loom_set_requires_grad(p, true);
  loom_sgd_opts so{};
  so.lr = 0.5;
  loom_optimizer *opt = loom_sgd(&p, 1, &so);
  loom_grad_scaler_opts o{};
  o.growth_interval = 2;
  loom_grad_scaler *s = loom_grad_scaler_new(&o);
  EXPECT_EQ(loom_grad_scaler_get_scale(s), 65536.0);
  // scale(loss) -> backward gives scaled grads; unscale divides them back
  loom_tensor *loss = loom_grad_scaler_scale(s, loom_sum(p, nullptr, 0, false));
  EXPECT_EQ(loom_item(loss), 2 * 65536.0);
  ASSERT_EQ(loom_backward(loss, nullptr, false), 0);
  EXPECT_EQ(V(loom_grad(p))[0], 65536.0);
  bool skipped = true;
  ASSERT_EQ(loom_grad_scaler_step(s, opt, &skipped), 0) << loom_last_error();
  EXPECT_FALSE(skipped);
  EXPECT_EQ(V(p), (std::vector<double>{0.5, 0.5}));   // 1 - 0.5 * 1
  ASSERT_EQ(loom_grad_scaler_update(s), 0);
  EXPECT_EQ(loom_grad_scaler_get_scale(s), 65536.0);
  // an inf gradient: step skipped, scale halved, params untouched
  loom_set_grad(p, T({INFINITY, 1}, LOOM_SHAPE(2)));
  ASSERT_EQ(loom_grad_scaler_step(s, opt, &skipped), 0);
  EXPECT_TRUE(skipped);
  EXPECT_EQ(V(p), (std::vector<double>{0.5, 0.5}));
  ASSERT_EQ(loom_grad_scaler_update(s), 0);
  EXPECT_EQ(loom_grad_scaler_get_scale(s), 32768.0);
  // two clean steps: the scale grows back
  for (int k = 0; k < 2; k++) {
    loom_set_grad(p, T({0, 0}, LOOM_SHAPE(2)));
    ASSERT_EQ(loom_grad_scaler_unscale(s, opt), 0);
    EXPECT_NE(loom_grad_scaler_unscale(s, opt), 0);  // once per step
    ASSERT_EQ(loom_grad_scaler_step(s, opt, &skipped), 0);
    EXPECT_FALSE(skipped);
    ASSERT_EQ(loom_grad_scaler_update(s), 0);
  }
  EXPECT_EQ(loom_grad_scaler_get_scale(s), 65536.0);
  EXPECT_NE(loom_grad_scaler_update(s), 0);  // nothing recorded
  // state round trip
  loom_tensor_map *m = loom_map_new();
  ASSERT_EQ(loom_grad_scaler_state_dict(s, m, "scaler."), 0);
  loom_grad_scaler *s2 = loom_grad_scaler_new(nullptr);
  ASSERT_EQ(loom_grad_scaler_load_state_dict(s2, m, "scaler."), 0);
  EXPECT_EQ(loom_grad_scaler_get_scale(s2), 65536.0);
  EXPECT_NE(loom_grad_scaler_load_state_dict(s2, m, "x."), 0);
  loom_map_free(m);
  loom_grad_scaler_free(s2);
  loom_grad_scaler_free(s);
  loom_optimizer_free(opt);
  loom_grad_scaler_opts bad{};
  bad.backoff_factor = 2;
  EXPECT_EQ(loom_grad_scaler_new(&bad), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("GradScaler"), std::string::npos);
}

// ---- optimiser state ----

TEST(OptimState, ResumeGivesTheSameSteps) {
  ScopeGuard scope;
  loom_manual_seed(5);
  loom_tensor *a = loom_randn(LOOM_SHAPE(3, 2), LOOM_F32, loom_cpu()), *b = loom_clone(a);
  loom_tensor *a2 = loom_randn(LOOM_SHAPE(4), LOOM_F32, loom_cpu()), *b2 = loom_clone(a2);
  loom_adam_opts o{};
  o.amsgrad = true, o.lr = 0.01;
  loom_tensor *pa[2] = {a, a2}, *pb[2] = {b, b2};
  loom_optimizer *oa = loom_adam(pa, 1, &o), *ob = loom_adam(pb, 1, &o);
  loom_optimizer_add_param_group(oa, &a2, 1, 0.02, -1);
  loom_optimizer_add_param_group(ob, &b2, 1, 0.02, -1);
  auto step = [](loom_optimizer *opt, loom_tensor **ps, int s) {
    for (int i = 0; i < 2; i++) {
      loom_tensor *g = loom_mul_scalar(loom_ones_like(ps[i]), 0.1 * (s + 1) * (i + 1));
      loom_set_grad(ps[i], i == 1 && s == 0 ? nullptr : g);   // param 1 starts a step late
    }
    return loom_optimizer_step(opt);
  };
  for (int s = 0; s < 3; s++) ASSERT_EQ(step(oa, pa, s), 0);
  // through a safetensors file, as a checkpoint would
  loom_tensor_map *m = loom_map_new();
  ASSERT_EQ(loom_optimizer_state_dict(oa, m, "optimizer."), 0);
  EXPECT_EQ(loom_item(loom_map_get(m, "optimizer.state.0.step")), 3.0);
  EXPECT_EQ(loom_item(loom_map_get(m, "optimizer.state.1.step")), 2.0);
  EXPECT_NE(loom_map_get(m, "optimizer.state.1.max_exp_avg_sq"), nullptr);
  std::string path = ::testing::TempDir() + "optim_state.safetensors";
  ASSERT_EQ(loom_safetensors_save(path.c_str(), m), 0) << loom_last_error();
  loom_map_free(m);
  loom_copy_(b, a);
  loom_copy_(b2, a2);
  loom_tensor_map *in = loom_safetensors_load(path.c_str(), loom_cpu());
  ASSERT_NE(in, nullptr) << loom_last_error();
  ASSERT_EQ(loom_optimizer_load_state_dict(ob, in, "optimizer."), 0) << loom_last_error();
  for (int s = 3; s < 6; s++) {
    ASSERT_EQ(step(oa, pa, s), 0);
    ASSERT_EQ(step(ob, pb, s), 0);
  }
  EXPECT_EQ(V(a), V(b));
  EXPECT_EQ(V(a2), V(b2));
  // a mis-shaped or incomplete state is refused and changes nothing
  loom_tensor_map *bad = loom_map_new();
  loom_map_set(bad, "optimizer.param_groups.0.lr", loom_scalar_like(a, 5.0));
  loom_map_set(bad, "optimizer.param_groups.1.lr", loom_scalar_like(a, 5.0));
  loom_map_set(bad, "optimizer.state.0.step", loom_scalar_like(a, 1.0));
  loom_map_set(bad, "optimizer.state.0.exp_avg", loom_zeros(LOOM_SHAPE(7), LOOM_F32, loom_cpu()));
  EXPECT_NE(loom_optimizer_load_state_dict(ob, bad, "optimizer."), 0);
  EXPECT_NE(std::string(loom_last_error()).find("state.0"), std::string::npos) << loom_last_error();
  EXPECT_DOUBLE_EQ(loom_optimizer_get_lr(ob, 0), 0.01);
  loom_map_free(bad);
  loom_map_free(in);
  std::remove(path.c_str());
  loom_optimizer_free(oa);
  loom_optimizer_free(ob);
}

}  // namespace
