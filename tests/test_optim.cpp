// Optimisers, schedules, clipping and loss scaling against PyTorch
// (tools/fixtures/gen_optim.py), plus state round trips, bad input and CUDA.
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <functional>
#include <map>

#include "loom_test.h"

namespace {

using Make = std::function<loom_optimizer *(loom_tensor *const *, int)>;
// Adds group g (one parameter) with options of its own; returns the index.
using AddGroup = std::function<int(loom_optimizer *, loom_tensor *const *, int g)>;

struct Config {
  const char *name;
  Make make;
  std::vector<std::pair<double, double>> groups;  // (lr, weight_decay) per group; empty = one group
  AddGroup add;  // set: two groups, each with its own options
};

std::vector<Config> configs() {
  auto sgd = [](loom_sgd_opts o) { return [o](loom_tensor *const *p, int n) { return loom_sgd(p, n, &o); }; };
  auto adam = [](loom_adam_opts o, bool w) {
    return [o, w](loom_tensor *const *p, int n) { return w ? loom_adamw(p, n, &o) : loom_adam(p, n, &o); };
  };
  auto rms = [](loom_rmsprop_opts o) { return [o](loom_tensor *const *p, int n) { return loom_rmsprop(p, n, &o); }; };
  loom_sgd_opts s1{}, s2{}, s3{}, s4{}, s5{};
  s1.lr = 0.1;
  s2.lr = 0.1, s2.momentum = 0.9, s2.dampening = 0.2, s2.weight_decay = 0.01;
  s3.lr = 0.1, s3.momentum = 0.9, s3.nesterov = true, s3.weight_decay = 0.05;
  s4.lr = 0.1, s4.momentum = 0.5, s4.maximize = true;
  s5.lr = 0.1, s5.momentum = 0.9;
  loom_adam_opts a1{}, a2{}, a3{}, w1{}, w2{}, ag{};
  a1.lr = 0.01;
  a2.lr = 0.01, a2.weight_decay = 0.1;
  a3.lr = 0.01, a3.beta1 = 0.8, a3.beta2 = 0.9, a3.amsgrad = true, a3.weight_decay = 0.1;
  w1.lr = 0.01, w1.weight_decay = 0.1;
  w2.lr = 0.01, w2.amsgrad = true;
  ag.lr = 0.01;
  loom_rmsprop_opts r1{}, r2{};
  r1.lr = 0.01;
  r2.lr = 0.01, r2.alpha = 0.9, r2.centered = true, r2.momentum = 0.9, r2.weight_decay = 0.01;
  // per-group options: each group's struct starts from the constructor's, as PyTorch's group dicts do
  static loom_sgd_opts sg[2];
  sg[0] = s5, sg[0].momentum = 0.5, sg[0].nesterov = true;
  sg[1] = s5, sg[1].lr = 0.05, sg[1].momentum = 0, sg[1].weight_decay = 0.1, sg[1].maximize = true;
  static loom_adam_opts adg[2], awg[2];
  adg[0] = ag, adg[0].beta1 = 0.8, adg[0].beta2 = 0.99, adg[0].eps = 1e-6, adg[0].amsgrad = true;
  adg[1] = ag, adg[1].lr = 0.02, adg[1].beta1 = 0.95, adg[1].beta2 = 0.9, adg[1].weight_decay = 0.1;
  awg[0] = ag, awg[0].weight_decay = LOOM_OPT_ZERO;
  awg[1] = ag, awg[1].amsgrad = true, awg[1].maximize = true, awg[1].eps = 1e-4;
  static loom_rmsprop_opts rg[2];
  rg[0] = r1, rg[0].alpha = 0.9, rg[0].centered = true;
  rg[1] = r1, rg[1].momentum = 0.8, rg[1].eps = 1e-3, rg[1].maximize = true, rg[1].weight_decay = 0.05;
  AddGroup sgd_g = [](loom_optimizer *o, loom_tensor *const *p, int g) { return loom_sgd_add_group(o, p, 1, &sg[g]); };
  AddGroup adam_g = [](loom_optimizer *o, loom_tensor *const *p, int g) { return loom_adam_add_group(o, p, 1, &adg[g]); };
  AddGroup adamw_g = [](loom_optimizer *o, loom_tensor *const *p, int g) { return loom_adam_add_group(o, p, 1, &awg[g]); };
  AddGroup rms_g = [](loom_optimizer *o, loom_tensor *const *p, int g) { return loom_rmsprop_add_group(o, p, 1, &rg[g]); };
  return {
      {"sgd", sgd(s1), {}},
      {"sgd_momentum", sgd(s2), {}},
      {"sgd_nesterov", sgd(s3), {}},
      {"sgd_maximize", sgd(s4), {}},
      {"adam", adam(a1, false), {}},
      {"adam_wd", adam(a2, false), {}},
      {"adam_amsgrad", adam(a3, false), {}},
      {"adamw", adam(w1, true), {}},
      {"adamw_amsgrad", adam(w2, true), {}},
      {"rmsprop", rms(r1), {}},
      {"rmsprop_centered", rms(r2), {}},
      {"sgd_groups", sgd(s5), {{0.1, 0.0}, {0.01, 0.1}}},
      {"adam_groups", adam(ag, false), {{0.05, 0.0}, {0.001, 0.2}}},
      {"sgd_group_opts", sgd(s5), {}, sgd_g},
      {"adam_group_opts", adam(ag, false), {}, adam_g},
      {"adamw_group_opts", adam(ag, true), {}, adamw_g},
      {"rmsprop_group_opts", rms(r1), {}, rms_g},
  };
}

std::string key(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
std::string key(const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

// Builds the optimiser of cfg over ps (its groups too).
loom_optimizer *build(const Config &cfg, loom_tensor **ps) {
  if (cfg.groups.empty() && !cfg.add) return cfg.make(ps, 2);
  loom_optimizer *opt = cfg.make(nullptr, 0);
  if (!opt) return nullptr;
  for (int g = 0; g < 2; g++)
    if ((cfg.add ? cfg.add(opt, &ps[g], g)
                 : loom_optimizer_add_param_group(opt, &ps[g], 1, cfg.groups[(size_t)g].first,
                                                  cfg.groups[(size_t)g].second)) != g) {
      loom_optimizer_free(opt);
      return nullptr;
    }
  return opt;
}

// Sets the fixture's grads of step s (parameter 1 has none at step 2).
void set_grads(const Fixture &fx, loom_tensor **ps, int s, loom_dtype dt, loom_device dev) {
  for (int i = 0; i < 2; i++) {
    loom_tensor *g = loom_map_get(fx.map, key("grad%d_step%d", i, s).c_str());
    ASSERT_EQ(loom_set_grad(ps[i], g ? loom_to(g, dev, dt) : nullptr), 0) << loom_last_error();
  }
}

// Runs cfg for the fixture's five steps in dt on dev, comparing every step.
void check_trajectory(const Fixture &fx, const Config &cfg, loom_dtype dt, loom_device dev, double tol) {
  SCOPED_TRACE(std::string(cfg.name) + " " + loom_dtype_name(dt) + " " + loom_device_name(dev));
  ScopeGuard scope;
  loom_tensor *ps[2];
  for (int i = 0; i < 2; i++) {
    ps[i] = loom_clone(loom_to(fx[key("param%d", i)], dev, dt));  // never the fixture's own storage
    ASSERT_EQ(loom_set_requires_grad(ps[i], true), 0);
  }
  loom_optimizer *opt = build(cfg, ps);
  ASSERT_NE(opt, nullptr) << loom_last_error();
  for (int s = 0; s < 5; s++) {
    set_grads(fx, ps, s, dt, dev);
    ASSERT_EQ(loom_optimizer_step(opt), 0) << loom_last_error();
    for (int i = 0; i < 2; i++) EXPECT_TRUE(close(ps[i], fx[key("%s.param%d_step%d", cfg.name, i, s)], tol)) << "step " << s;
  }
  // the state PyTorch ends with
  loom_tensor_map *sd = loom_map_new();
  ASSERT_EQ(loom_optimizer_state_dict(opt, sd, "opt."), 0) << loom_last_error();
  for (int k = 0; k < loom_map_size(fx.map); k++) {
    std::string name = loom_map_name(fx.map, k), pre = std::string(cfg.name) + ".state";
    if (name.rfind(pre, 0) != 0) continue;
    std::string rest = name.substr(pre.size());  // "<i>.<what>"
    loom_tensor *mine = loom_map_get(sd, ("opt.state." + rest).c_str());
    EXPECT_NE(mine, nullptr) << "no " << rest << " in the state_dict";
    if (mine) EXPECT_TRUE(close(mine, loom_map_get(fx.map, name.c_str()), tol)) << rest;
  }
  loom_map_free(sd);
  loom_optimizer_free(opt);
}

TEST(Optim, MatchesPyTorchF64) {
  Fixture fx("optim");
  ASSERT_TRUE(fx.ok());
  for (const Config &c : configs()) check_trajectory(fx, c, LOOM_F64, loom_cpu(), 1e-10);
}

TEST(Optim, MatchesPyTorchF32) {
  Fixture fx("optim");
  ASSERT_TRUE(fx.ok());
  for (const Config &c : configs()) check_trajectory(fx, c, LOOM_F32, loom_cpu(), 2e-5);
}

TEST(Optim, CudaMatchesPyTorch) {
  LOOM_REQUIRE_GPU();
  Fixture fx("optim");
  ASSERT_TRUE(fx.ok());
  for (const Config &c : configs()) check_trajectory(fx, c, LOOM_F32, loom_cuda(0), 2e-5);
}

TEST(Optim, AdamWDecayIsDecoupled) {
  Fixture fx("optim");
  ASSERT_TRUE(fx.ok());
  // same lr and weight_decay, different rules: PyTorch's numbers differ, and Loom follows each
  EXPECT_GT(rel_err(fx["adamw.param0_step4"], fx["adam_wd.param0_step4"]), 1e-4);
  ScopeGuard scope;
  loom_tensor *a = loom_clone(fx["param0"]), *b = loom_clone(fx["param0"]);
  loom_adam_opts o{};
  o.lr = 0.01, o.weight_decay = 0.1;
  loom_optimizer *adam = loom_adam(&a, 1, &o), *adamw = loom_adamw(&b, 1, &o);
  ASSERT_TRUE(adam && adamw);
  // a zero gradient: Adam's update comes only from the L2 term, AdamW's decay shrinks by lr * wd exactly
  loom_set_grad(a, loom_zeros_like(a));
  loom_set_grad(b, loom_zeros_like(b));
  ASSERT_EQ(loom_optimizer_step(adam), 0);
  ASSERT_EQ(loom_optimizer_step(adamw), 0);
  EXPECT_LT(rel_err(b, loom_mul_scalar(fx["param0"], 1 - 0.01 * 0.1)), 1e-12);
  EXPECT_GT(rel_err(a, b), 1e-4);
  loom_optimizer_free(adam);
  loom_optimizer_free(adamw);
}

TEST(Optim, DefaultsAndGroups) {
  ScopeGuard scope;
  loom_tensor *p = loom_ones(LOOM_SHAPE(2), LOOM_F32, loom_cpu()), *q = loom_ones(LOOM_SHAPE(3), LOOM_F32, loom_cpu());
  loom_optimizer *sgd = loom_sgd(&p, 1, nullptr), *adamw = loom_adamw(&p, 1, nullptr), *rms = loom_rmsprop(&p, 1, nullptr);
  ASSERT_TRUE(sgd && adamw && rms) << loom_last_error();
  EXPECT_DOUBLE_EQ(loom_optimizer_get_lr(sgd, 0), 1e-3);
  EXPECT_DOUBLE_EQ(loom_optimizer_get_lr(adamw, 0), 1e-3);
  EXPECT_DOUBLE_EQ(loom_optimizer_get_lr(rms, 0), 1e-2);
  EXPECT_STREQ(loom_optimizer_name(adamw), "AdamW");
  EXPECT_EQ(loom_optimizer_add_param_group(adamw, &q, 1, 0.5, -1), 1);
  EXPECT_EQ(loom_optimizer_num_groups(adamw), 2);
  EXPECT_DOUBLE_EQ(loom_optimizer_get_lr(adamw, 1), 0.5);
  EXPECT_EQ(loom_optimizer_set_lr(adamw, -1, 0.25), 0);
  EXPECT_DOUBLE_EQ(loom_optimizer_get_lr(adamw, 0), 0.25);
  EXPECT_DOUBLE_EQ(loom_optimizer_get_lr(adamw, 1), 0.25);
  EXPECT_TRUE(std::isnan(loom_optimizer_get_lr(adamw, 2)));
  // AdamW's default weight decay 1e-2, and LOOM_OPT_ZERO turns it off
  loom_set_grad(p, loom_zeros_like(p));
  loom_optimizer_set_lr(adamw, -1, 0.1);
  ASSERT_EQ(loom_optimizer_step(adamw), 0);
  EXPECT_NEAR(V(p)[0], 1 - 0.1 * 1e-2, 1e-7);
  loom_adam_opts off{};
  off.weight_decay = LOOM_OPT_ZERO;
  loom_optimizer *nodecay = loom_adamw(&q, 1, &off);
  loom_set_grad(q, loom_zeros_like(q));
  ASSERT_EQ(loom_optimizer_step(nodecay), 0);
  EXPECT_EQ(V(q)[0], 1.0);
  // zero_grad drops the grads; a step without grads changes nothing
  loom_optimizer_zero_grad(adamw);
  EXPECT_EQ(loom_grad(p), nullptr);
  EXPECT_EQ(loom_grad(q), nullptr);
  double before = V(p)[0];
  ASSERT_EQ(loom_optimizer_step(adamw), 0);
  EXPECT_EQ(V(p)[0], before);
  for (loom_optimizer *o : {sgd, adamw, rms, nodecay}) loom_optimizer_free(o);
}

// Options per group: NULL takes the optimiser's, the kind must match, the
// state dict carries every option and a bad one loaded changes nothing.
TEST(Optim, GroupOptions) {
  ScopeGuard scope;
  loom_tensor *p = loom_ones(LOOM_SHAPE(2), LOOM_F32, loom_cpu()), *q = loom_ones(LOOM_SHAPE(3), LOOM_F32, loom_cpu());
  loom_tensor *r = loom_ones(LOOM_SHAPE(1), LOOM_F32, loom_cpu());
  loom_adam_opts base{};
  base.lr = 0.01, base.beta1 = 0.7, base.amsgrad = true;
  loom_optimizer *opt = loom_adam(&p, 1, &base);
  ASSERT_NE(opt, nullptr) << loom_last_error();
  EXPECT_EQ(loom_adam_add_group(opt, &q, 1, nullptr), 1);  // the optimiser's options
  EXPECT_DOUBLE_EQ(loom_optimizer_get_momentum(opt, 1), 0.7);
  EXPECT_DOUBLE_EQ(loom_optimizer_get_lr(opt, 1), 0.01);
  loom_adam_opts own{};  // all-zero: PyTorch's defaults, not the optimiser's
  own.eps = 1e-3, own.beta2 = 0.5;
  EXPECT_EQ(loom_adam_add_group(opt, &r, 1, &own), 2);
  EXPECT_DOUBLE_EQ(loom_optimizer_get_momentum(opt, 2), 0.9);
  EXPECT_DOUBLE_EQ(loom_optimizer_get_lr(opt, 2), 1e-3);
  EXPECT_TRUE(std::isnan(loom_optimizer_get_momentum(opt, 3)));
  EXPECT_NE(std::string(loom_last_error()).find("group 3"), std::string::npos) << loom_last_error();
  // wrong kind, bad options, a parameter already in a group: refused, nothing added
  loom_tensor *u = loom_ones(LOOM_SHAPE(1), LOOM_F32, loom_cpu());
  EXPECT_EQ(loom_sgd_add_group(opt, &u, 1, nullptr), -1);
  EXPECT_NE(std::string(loom_last_error()).find("Adam"), std::string::npos) << loom_last_error();
  own.beta1 = 1.0;
  EXPECT_EQ(loom_adam_add_group(opt, &u, 1, &own), -1);
  EXPECT_NE(std::string(loom_last_error()).find("betas"), std::string::npos) << loom_last_error();
  EXPECT_EQ(loom_adam_add_group(opt, &q, 1, nullptr), -1);
  EXPECT_EQ(loom_optimizer_num_groups(opt), 3);
  for (loom_tensor *t : {p, q, r}) loom_set_grad(t, loom_ones_like(t));
  ASSERT_EQ(loom_optimizer_step(opt), 0) << loom_last_error();
  // the state dict names every option; amsgrad's buffer only where the group has it
  loom_tensor_map *m = loom_map_new();
  ASSERT_EQ(loom_optimizer_state_dict(opt, m, "o."), 0) << loom_last_error();
  EXPECT_EQ(V(loom_map_get(m, "o.param_groups.2.betas")), std::vector<double>({0.9, 0.5}));
  EXPECT_EQ(V(loom_map_get(m, "o.param_groups.2.eps"))[0], 1e-3);
  EXPECT_EQ(V(loom_map_get(m, "o.param_groups.0.amsgrad"))[0], 1.0);
  EXPECT_EQ(V(loom_map_get(m, "o.param_groups.2.amsgrad"))[0], 0.0);
  EXPECT_NE(loom_map_get(m, "o.state.1.max_exp_avg_sq"), nullptr);
  EXPECT_EQ(loom_map_get(m, "o.state.2.max_exp_avg_sq"), nullptr);
  // into a fresh optimiser whose groups start with other options: they follow the dict
  loom_tensor *p2 = loom_ones(LOOM_SHAPE(2), LOOM_F32, loom_cpu()), *q2 = loom_ones(LOOM_SHAPE(3), LOOM_F32, loom_cpu());
  loom_tensor *r2 = loom_ones(LOOM_SHAPE(1), LOOM_F32, loom_cpu());
  loom_optimizer *b = loom_adam(&p2, 1, nullptr);
  ASSERT_EQ(loom_adam_add_group(b, &q2, 1, nullptr), 1);
  ASSERT_EQ(loom_adam_add_group(b, &r2, 1, nullptr), 2);
  ASSERT_EQ(loom_optimizer_load_state_dict(b, m, "o."), 0) << loom_last_error();
  loom_tensor_map *m2 = loom_map_new();
  ASSERT_EQ(loom_optimizer_state_dict(b, m2, "o."), 0);
  for (int k = 0; k < loom_map_size(m); k++) {
    const char *name = loom_map_name(m, k);
    ASSERT_NE(loom_map_get(m2, name), nullptr) << name;
    EXPECT_EQ(V(loom_map_get(m2, name)), V(loom_map_get(m, name))) << name;
  }
  EXPECT_DOUBLE_EQ(loom_optimizer_get_momentum(b, 0), 0.7);
  // bad option values: the load fails with the key named and b keeps what it had
  auto refused = [&](const char *key, loom_tensor *v, const char *what) {
    loom_tensor_map *bad = loom_map_new();
    for (int k = 0; k < loom_map_size(m); k++) loom_map_set(bad, loom_map_name(m, k), loom_map_get(m, loom_map_name(m, k)));
    loom_map_set(bad, key, v);
    EXPECT_NE(loom_optimizer_load_state_dict(b, bad, "o."), 0) << key;
    EXPECT_NE(std::string(loom_last_error()).find(what), std::string::npos) << loom_last_error();
    loom_map_free(bad);
    loom_tensor_map *now = loom_map_new();
    ASSERT_EQ(loom_optimizer_state_dict(b, now, "o."), 0);
    for (int k = 0; k < loom_map_size(m); k++)
      EXPECT_EQ(V(loom_map_get(now, loom_map_name(m, k))), V(loom_map_get(m, loom_map_name(m, k)))) << loom_map_name(m, k);
    loom_map_free(now);
  };
  refused("o.param_groups.1.betas", T({0.9}, LOOM_SHAPE(1), LOOM_F64), "betas");
  refused("o.param_groups.1.betas", T({0.9, 1.5}, LOOM_SHAPE(2), LOOM_F64), "betas");
  refused("o.param_groups.0.amsgrad", T({2}, LOOM_SHAPE(), LOOM_F64), "not 0 or 1");
  refused("o.param_groups.2.eps", T({-1}, LOOM_SHAPE(), LOOM_F64), "eps");
  // numbers are f64: an integer entry (a header's F64 edited to I64) is refused, not reinterpreted
  refused("o.param_groups.1.lr", T({1}, LOOM_SHAPE(), LOOM_I64), "o.param_groups.1.lr is i64 [], not a float number");
  refused("o.param_groups.0.weight_decay", T({0}, LOOM_SHAPE(), LOOM_I64), "weight_decay is i64");
  // turning amsgrad on for a group whose parameter has no max_exp_avg_sq
  refused("o.param_groups.2.amsgrad", T({1}, LOOM_SHAPE(), LOOM_F64), "max_exp_avg_sq");
  loom_map_free(m);
  loom_map_free(m2);
  loom_optimizer_free(opt);
  loom_optimizer_free(b);
}

TEST(Optim, StepsDoNotRecordOrLeak) {
  int64_t live = loom_live_tensors();
  {
    ScopeGuard scope;
    loom_tensor *p = loom_randn(LOOM_SHAPE(4, 4), LOOM_F32, loom_cpu());
    loom_set_requires_grad(p, true);
    loom_adam_opts o{};
    o.amsgrad = true;
    loom_optimizer *opt = loom_adam(&p, 1, &o);
    for (int s = 0; s < 3; s++) {
      ScopeGuard step;
      loom_tensor *loss = loom_sum(loom_square(p), nullptr, 0, false);
      ASSERT_EQ(loom_backward(loss, nullptr, false), 0);
      ASSERT_EQ(loom_optimizer_step(opt), 0) << loom_last_error();
      loom_optimizer_zero_grad(opt);
    }
    EXPECT_TRUE(loom_is_leaf(p));
    EXPECT_EQ(loom_grad_fn_name(p), nullptr);
    loom_optimizer_free(opt);
  }
  EXPECT_EQ(loom_live_tensors(), live);
}

// A small regression learns: loss falls by 10x with each optimiser.
TEST(Optim, Learns) {
  for (int kind = 0; kind < 4; kind++) {
    ScopeGuard scope;
    loom_manual_seed(7);
    loom_tensor *x = loom_randn(LOOM_SHAPE(64, 3), LOOM_F32, loom_cpu());
    loom_tensor *wt = T({1.5, -2, 0.5}, LOOM_SHAPE(3, 1));
    loom_tensor *y = loom_matmul(x, wt);
    loom_tensor *w = loom_zeros(LOOM_SHAPE(3, 1), LOOM_F32, loom_cpu());
    loom_set_requires_grad(w, true);
    loom_sgd_opts so{};
    so.lr = 0.1, so.momentum = 0.9;
    loom_adam_opts ao{};
    ao.lr = 0.1;
    loom_rmsprop_opts ro{};
    ro.lr = 0.01;
    loom_optimizer *opt = kind == 0 ? loom_sgd(&w, 1, &so) : kind == 1 ? loom_adam(&w, 1, &ao)
                        : kind == 2 ? loom_adamw(&w, 1, &ao) : loom_rmsprop(&w, 1, &ro);
    double first = 0, last = 0;
    for (int s = 0; s < 100; s++) {
      ScopeGuard step;
      loom_tensor *loss = loom_mean(loom_square(loom_sub(loom_matmul(x, w), y)), nullptr, 0, false);
      if (s == 0) first = loom_item(loss);
      last = loom_item(loss);
      loom_optimizer_zero_grad(opt);
      ASSERT_EQ(loom_backward(loss, nullptr, false), 0);
      ASSERT_EQ(loom_optimizer_step(opt), 0);
    }
    EXPECT_LT(last, first / 10) << loom_optimizer_name(opt);
    loom_optimizer_free(opt);
  }
}

TEST(Optim, ModuleParameters) {
  loom_module *net = loom_nn_linear(4, 3, nullptr);
  ASSERT_NE(net, nullptr) << loom_last_error();
  loom_set_requires_grad(loom_module_param(net, "bias"), false);  // frozen
  EXPECT_EQ(loom_module_trainable_params(net, nullptr, 0), 1);
  loom_optimizer *opt = loom_sgd_module(net, nullptr);
  ASSERT_NE(opt, nullptr) << loom_last_error();
  {
    ScopeGuard scope;
    loom_tensor *w = loom_module_param(net, "weight"), *b = loom_module_param(net, "bias");
    std::vector<double> w0 = V(w), b0 = V(b);
    loom_set_grad(w, loom_ones_like(w));
    loom_set_grad(b, loom_ones_like(b));
    ASSERT_EQ(loom_optimizer_step(opt), 0);
    EXPECT_NEAR(V(w)[0], w0[0] - 1e-3, 1e-7);
    EXPECT_EQ(V(b), b0);  // not in the optimiser
  }
  loom_optimizer_free(opt);
  loom_module_free(net);
}

TEST(Optim, BadInput) {
  ScopeGuard scope;
  loom_tensor *p = loom_ones(LOOM_SHAPE(2), LOOM_F32, loom_cpu());
  loom_tensor *i = loom_ones(LOOM_SHAPE(2), LOOM_I64, loom_cpu());
  auto fails = [](loom_optimizer *o, const char *what) {
    EXPECT_EQ(o, nullptr);
    EXPECT_NE(std::string(loom_last_error()).find(what), std::string::npos) << loom_last_error();
    loom_optimizer_free(o);
  };
  loom_sgd_opts s{};
  s.lr = -1;
  fails(loom_sgd(&p, 1, &s), "SGD");
  s = {};
  s.nesterov = true;
  fails(loom_sgd(&p, 1, &s), "nesterov");
  loom_adam_opts a{};
  a.beta1 = 1.5;
  fails(loom_adam(&p, 1, &a), "Adam: betas");
  fails(loom_adamw(&i, 1, nullptr), "AdamW: parameter 0");
  loom_tensor *twice[2] = {p, p};
  fails(loom_rmsprop(twice, 2, nullptr), "RMSprop");
  loom_tensor *null_param = nullptr;
  loom_clear_error();  // a NULL argument keeps an earlier error as its cause
  fails(loom_sgd(&null_param, 1, nullptr), "parameter 0 is NULL");
  loom_tensor *t = loom_transpose(loom_ones(LOOM_SHAPE(2, 3), LOOM_F32, loom_cpu()), 0, 1);
  fails(loom_sgd(&t, 1, nullptr), "contiguous");
  // functional: mismatched state
  loom_tensor *g = loom_ones_like(p), *m = loom_zeros(LOOM_SHAPE(3), LOOM_F32, loom_cpu()), *v = loom_zeros_like(p);
  loom_fused_scalars sc{0.1, 0, 1, false};
  EXPECT_NE(loom_adam_update(&p, &g, &m, &v, nullptr, &sc, 1, nullptr, false), 0);
  EXPECT_NE(std::string(loom_last_error()).find("adam_step: state 0"), std::string::npos) << loom_last_error();
  sc.step = 0;
  m = loom_zeros_like(p);
  EXPECT_NE(loom_adam_update(&p, &g, &m, &v, nullptr, &sc, 1, nullptr, false), 0);
  EXPECT_NE(std::string(loom_last_error()).find("step"), std::string::npos) << loom_last_error();
  EXPECT_NE(loom_optimizer_set_lr(nullptr, 0, 1), 0);
}

// Tensors bigger than one chunk, several dtypes, one list: the CPU kernel against f64.
TEST(Optim, FusedHalfAndChunks) {
  ScopeGuard scope;
  loom_manual_seed(3);
  const int64_t sizes[3] = {70000, 3, 131073};
  for (loom_dtype dt : {LOOM_F32, LOOM_F16, LOOM_BF16}) {
    SCOPED_TRACE(loom_dtype_name(dt));
    loom_tensor *p[3], *g[3], *m[3], *v[3], *p64[3], *g64[3], *m64[3], *v64[3];
    loom_fused_scalars sc[3];
    for (int i = 0; i < 3; i++) {
      p[i] = loom_to_dtype(loom_randn(LOOM_SHAPE(sizes[i]), LOOM_F32, loom_cpu()), dt);
      g[i] = loom_to_dtype(loom_randn(LOOM_SHAPE(sizes[i]), LOOM_F32, loom_cpu()), dt);
      m[i] = loom_zeros_like(p[i]);
      v[i] = loom_zeros_like(p[i]);
      p64[i] = loom_to_dtype(p[i], LOOM_F64);
      g64[i] = loom_to_dtype(g[i], LOOM_F64);
      m64[i] = loom_zeros_like(p64[i]);
      v64[i] = loom_zeros_like(p64[i]);
      sc[i] = {0.01 * (i + 1), 0.01, 1, false};
    }
    ASSERT_EQ(loom_adam_update(p, g, m, v, nullptr, sc, 3, nullptr, true), 0) << loom_last_error();
    ASSERT_EQ(loom_adam_update(p64, g64, m64, v64, nullptr, sc, 3, nullptr, true), 0) << loom_last_error();
    double tol = dt == LOOM_F32 ? 1e-6 : dt == LOOM_F16 ? 2e-3 : 1e-2;
    for (int i = 0; i < 3; i++) {
      EXPECT_LT(rel_err(p[i], p64[i]), tol) << i;
      EXPECT_LT(rel_err(m[i], m64[i]), tol) << i;
    }
  }
}

}  // namespace
