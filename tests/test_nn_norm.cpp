// Normalisation layers against PyTorch (tests/fixtures/norm_*.safetensors from
// tools/fixtures/gen_norm.py, float64): BatchNorm1d/2d with running statistics
// over 3 steps, momentum=None, affine=False, track_running_stats=False;
// LayerNorm, GroupNorm, InstanceNorm1d/2d; names, buffers and config.
// Gradchecks, bad input, autocast and CUDA are in test_nn_norm_checks.cpp.
#include <cmath>
#include <string>

#include "loom_test.h"


namespace {

const double kTol = 1e-10;

// A module in f64 with parameters copied from the fixture (prefix + name;
// an empty prefix keeps the default init).
loom_module *f64(loom_module *m, const Fixture &fx, const std::string &prefix) {
  EXPECT_NE(m, nullptr) << loom_last_error();
  EXPECT_EQ(loom_module_to_dtype(m, LOOM_F64), 0) << loom_last_error();
  if (prefix.empty()) return m;
  loom_named_tensors *ps = loom_module_named_parameters(m);
  for (int i = 0; ps && i < ps->n; i++) EXPECT_EQ(loom_copy_(ps->tensors[i], fx[prefix + ps->names[i]]), 0);
  loom_named_tensors_free(ps);
  return m;
}

// Runs m on a leaf copy of x, back-propagates (y * gy).sum() and compares y,
// dx and the parameter gradients with the fixture's prefix entries.
void check_step(loom_module *m, const Fixture &fx, const loom_tensor *x, const std::string &p) {
  SCOPED_TRACE(p);
  ScopeGuard scope;
  loom_module_zero_grad(m);
  loom_tensor *xl = loom_clone(x);
  loom_set_requires_grad(xl, true);
  loom_tensor *y = loom_forward(m, xl);
  ASSERT_NE(y, nullptr) << loom_last_error();
  EXPECT_TRUE(close(y, fx[p + "y"], kTol));
  ASSERT_EQ(loom_backward(loom_sum(loom_mul(y, fx[p + "gy"]), nullptr, 0, false), nullptr, false), 0)
      << loom_last_error();
  EXPECT_TRUE(close(loom_grad(xl), fx[p + "dx"], 1e-9));
  loom_named_tensors *ps = loom_module_named_parameters(m);
  for (int i = 0; i < ps->n; i++) EXPECT_TRUE(close(loom_grad(ps->tensors[i]), fx[p + "d" + ps->names[i]], 1e-9));
  loom_named_tensors_free(ps);
}

loom_tensor *eval_out(loom_module *m, const loom_tensor *x) {
  loom_module_train(m, false);
  loom_tensor *y = loom_forward(m, x);
  loom_module_train(m, true);
  EXPECT_NE(y, nullptr) << loom_last_error();
  return y;
}

}  // namespace

TEST(BatchNorm2d, ThreeTrainingStepsThenEval) {
  ScopeGuard scope;
  Fixture fx("norm_batch");
  ASSERT_TRUE(fx.ok());
  loom_module *m = f64(loom_nn_batch_norm2d(3, nullptr), fx, "bn.");
  EXPECT_STREQ(loom_module_type(m), "BatchNorm2d");
  for (int i = 0; i < 3; i++) {
    std::string p = "bn." + std::to_string(i) + ".";
    check_step(m, fx, fx["x" + std::to_string(i)], p);
    EXPECT_TRUE(close(loom_module_buffer(m, "running_mean"), fx[p + "running_mean"], kTol));
    EXPECT_TRUE(close(loom_module_buffer(m, "running_var"), fx[p + "running_var"], kTol));
    loom_tensor *nbt = loom_module_buffer(m, "num_batches_tracked");
    EXPECT_EQ(loom_dtype_of(nbt), LOOM_I64);
    EXPECT_EQ(loom_ndim(nbt), 0);
    EXPECT_EQ(loom_item(nbt), i + 1);
  }
  EXPECT_TRUE(close(eval_out(m, fx["xe"]), fx["bn.eval.y"], kTol));
  // eval leaves the running statistics alone
  EXPECT_TRUE(close(loom_module_buffer(m, "running_mean"), fx["bn.2.running_mean"], kTol));
  EXPECT_EQ(loom_item(loom_module_buffer(m, "num_batches_tracked")), 3);
  loom_module_free(m);
}

TEST(BatchNorm2d, MomentumNoneAndCustom) {
  ScopeGuard scope;
  Fixture fx("norm_batch");
  for (const char *tag : {"cma", "m3"}) {
    SCOPED_TRACE(tag);
    loom_batch_norm_options o = {};
    o.momentum = std::string(tag) == "cma" ? NAN : 0.3;
    loom_module *m = f64(loom_nn_batch_norm2d(3, &o), fx, "");
    for (int i = 0; i < 3; i++) ASSERT_NE(loom_forward(m, fx["x" + std::to_string(i)]), nullptr) << loom_last_error();
    EXPECT_TRUE(close(loom_module_buffer(m, "running_mean"), fx[std::string(tag) + ".running_mean"], kTol));
    EXPECT_TRUE(close(loom_module_buffer(m, "running_var"), fx[std::string(tag) + ".running_var"], kTol));
    EXPECT_TRUE(close(eval_out(m, fx["xe"]), fx[std::string(tag) + ".eval.y"], kTol));
    loom_module_free(m);
  }
}

TEST(BatchNorm2d, NoAffineAndNoRunningStats) {
  ScopeGuard scope;
  Fixture fx("norm_batch");
  loom_batch_norm_options o = {};
  o.no_affine = true;
  loom_module *m = f64(loom_nn_batch_norm2d(3, &o), fx, "");
  EXPECT_EQ(loom_module_num_params(m, false), 0);
  check_step(m, fx, fx["x1"], "noaffine.");
  loom_module_free(m);

  loom_batch_norm_options nt = {};
  nt.no_track_running_stats = true;
  m = f64(loom_nn_batch_norm2d(3, &nt), fx, "notrack.");
  loom_named_tensors *bufs = loom_module_named_buffers(m);
  EXPECT_EQ(bufs->n, 0);
  loom_named_tensors_free(bufs);
  EXPECT_TRUE(close(eval_out(m, fx["xe"]), fx["notrack.eval.y"], kTol));  // batch statistics in eval
  loom_module_free(m);
}

TEST(BatchNorm1d, TwoAndThreeDimInput) {
  ScopeGuard scope;
  Fixture fx("norm_batch");
  for (const char *tag : {"bn1d2", "bn1d3"}) {
    std::string p = std::string(tag) + ".";
    loom_module *m = f64(loom_nn_batch_norm1d(4, nullptr), fx, p);
    EXPECT_STREQ(loom_module_type(m), "BatchNorm1d");
    check_step(m, fx, fx[p + "x"], p);
    EXPECT_TRUE(close(loom_module_buffer(m, "running_mean"), fx[p + "running_mean"], kTol));
    EXPECT_TRUE(close(loom_module_buffer(m, "running_var"), fx[p + "running_var"], kTol));
    EXPECT_TRUE(close(eval_out(m, fx[p + "x"]), fx[p + "eval.y"], kTol));
    loom_module_free(m);
  }
}

TEST(LayerNorm, LastOneAndTwoDims) {
  ScopeGuard scope;
  Fixture fx("norm_layer");
  const int64_t s1[] = {6}, s2[] = {4, 6};
  loom_layer_norm_options nb = {}, na = {};
  nb.no_bias = true;
  na.no_elementwise_affine = true;
  struct Case { const char *tag; const int64_t *shape; int n; const loom_layer_norm_options *o; int params; };
  for (const Case &c : {Case{"ln1", s1, 1, nullptr, 2}, Case{"ln2", s2, 2, nullptr, 2}, Case{"lnnb", s1, 1, &nb, 1},
                        Case{"lnna", s1, 1, &na, 0}}) {
    std::string p = std::string(c.tag) + ".";
    loom_module *m = f64(loom_nn_layer_norm(c.shape, c.n, c.o), fx, p);
    EXPECT_STREQ(loom_module_type(m), "LayerNorm");
    loom_named_tensors *ps = loom_module_named_parameters(m);
    EXPECT_EQ(ps->n, c.params) << c.tag;
    loom_named_tensors_free(ps);
    check_step(m, fx, fx["ln.x"], p);
    loom_module_free(m);
  }
}

TEST(GroupNorm, TwoGroupsAndNoAffine) {
  ScopeGuard scope;
  Fixture fx("norm_layer");
  loom_group_norm_options na = {};
  na.no_affine = true;
  loom_module *m = f64(loom_nn_group_norm(2, 6, nullptr), fx, "gn.");
  EXPECT_STREQ(loom_module_type(m), "GroupNorm");
  check_step(m, fx, fx["gn.x"], "gn.");
  loom_module_free(m);
  m = f64(loom_nn_group_norm(3, 6, &na), fx, "gnna.");
  EXPECT_EQ(loom_module_num_params(m, false), 0);
  check_step(m, fx, fx["gn.x"], "gnna.");
  loom_module_free(m);
}

TEST(InstanceNorm, OneAndTwoDims) {
  ScopeGuard scope;
  Fixture fx("norm_layer");
  loom_module *m1 = f64(loom_nn_instance_norm1d(4, nullptr), fx, "");
  loom_module *m2 = f64(loom_nn_instance_norm2d(3, nullptr), fx, "");
  EXPECT_STREQ(loom_module_type(m1), "InstanceNorm1d");
  EXPECT_STREQ(loom_module_type(m2), "InstanceNorm2d");
  EXPECT_EQ(loom_module_num_params(m1, false), 0);  // affine=False by default
  loom_named_tensors *bufs = loom_module_named_buffers(m1);
  EXPECT_EQ(bufs->n, 0);  // track_running_stats=False by default
  loom_named_tensors_free(bufs);
  check_step(m1, fx, fx["in1.x"], "in1.");
  check_step(m2, fx, fx["in2.x"], "in2.");
  // eval without running statistics still uses the instance statistics
  EXPECT_TRUE(close(eval_out(m2, fx["in2.x"]), fx["in2.y"], kTol));
  // unbatched [C, H, W]
  loom_tensor *y = loom_forward(m2, loom_select(fx["in2.x"], 0, 0));
  ASSERT_NE(y, nullptr) << loom_last_error();
  EXPECT_TRUE(close(y, fx["in2.unbatched.y"], kTol));
  loom_module_free(m1);
  loom_module_free(m2);
}

TEST(InstanceNorm, AffineWithRunningStats) {
  ScopeGuard scope;
  Fixture fx("norm_layer");
  loom_instance_norm_options o = {};
  o.affine = true;
  o.track_running_stats = true;
  loom_module *m = f64(loom_nn_instance_norm1d(4, &o), fx, "in1t.");
  check_step(m, fx, fx["in1.x"], "in1t.");
  ASSERT_NE(loom_forward(m, loom_add_scalar(loom_mul_scalar(fx["in1.x"], 2), -1)), nullptr) << loom_last_error();
  EXPECT_TRUE(close(loom_module_buffer(m, "running_mean"), fx["in1t.running_mean"], kTol));
  EXPECT_TRUE(close(loom_module_buffer(m, "running_var"), fx["in1t.running_var"], kTol));
  EXPECT_TRUE(close(eval_out(m, fx["in1.x"]), fx["in1t.eval.y"], kTol));
  loom_module_free(m);
}

TEST(NormModules, NamesBuffersAndConfig) {
  ScopeGuard scope;
  loom_module *m = loom_nn_batch_norm2d(5, nullptr);
  ASSERT_NE(m, nullptr) << loom_last_error();
  loom_named_tensors *ps = loom_module_named_parameters(m), *bs = loom_module_named_buffers(m);
  ASSERT_EQ(ps->n, 2);
  EXPECT_STREQ(ps->names[0], "weight");
  EXPECT_STREQ(ps->names[1], "bias");
  ASSERT_EQ(bs->n, 3);
  EXPECT_STREQ(bs->names[0], "running_mean");
  EXPECT_STREQ(bs->names[1], "running_var");
  EXPECT_STREQ(bs->names[2], "num_batches_tracked");
  // PyTorch's default init: weight ones, bias zeros, running_mean 0, running_var 1
  EXPECT_EQ(V(ps->tensors[0]), std::vector<double>(5, 1.0));
  EXPECT_EQ(V(ps->tensors[1]), std::vector<double>(5, 0.0));
  EXPECT_EQ(V(bs->tensors[0]), std::vector<double>(5, 0.0));
  EXPECT_EQ(V(bs->tensors[1]), std::vector<double>(5, 1.0));
  loom_named_tensors_free(ps);
  loom_named_tensors_free(bs);
  const loom_norm_config *c = (const loom_norm_config *)loom_module_state(m);
  EXPECT_EQ(c->num_features, 5);
  EXPECT_DOUBLE_EQ(c->eps, 1e-5);
  EXPECT_DOUBLE_EQ(c->momentum, 0.1);
  EXPECT_TRUE(c->affine);
  EXPECT_TRUE(c->track_running_stats);
  // reset_parameters restores the defaults and the running statistics
  loom_fill_(loom_module_param(m, "weight"), 3);
  loom_fill_(loom_module_buffer(m, "running_var"), 7);
  loom_module_kind_of(m)->reset_parameters(m);
  EXPECT_EQ(V(loom_module_param(m, "weight")), std::vector<double>(5, 1.0));
  EXPECT_EQ(V(loom_module_buffer(m, "running_var")), std::vector<double>(5, 1.0));
  // macs: one multiply-add per output element
  loom_tensor *x = loom_randn(LOOM_SHAPE(2, 5, 3, 3), LOOM_F32, loom_cpu());
  loom_tensor *y = loom_forward(m, x);
  EXPECT_EQ(loom_module_kind_of(m)->macs(m, &x, 1, y), 90);
  loom_module_free(m);

  const int64_t ns[] = {4, 6};
  m = loom_nn_layer_norm(ns, 2, nullptr);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(loom_ndim(loom_module_param(m, "weight")), 2);
  EXPECT_EQ(loom_size(loom_module_param(m, "bias"), 0), 4);
  loom_module_free(m);
}

TEST(Norm3d, BatchNorm3dAndInstanceNorm3dMatchPyTorch) {
  ScopeGuard scope;
  Fixture fx("norm_3d");
  ASSERT_TRUE(fx.ok());
  loom_module *bn = f64(loom_nn_batch_norm3d(2, nullptr), fx, "bn3.");
  EXPECT_STREQ(loom_module_type(bn), "BatchNorm3d");
  check_step(bn, fx, fx["x"], "bn3.");
  EXPECT_TRUE(close(loom_module_buffer(bn, "running_mean"), fx["bn3.running_mean"], kTol));
  EXPECT_TRUE(close(loom_module_buffer(bn, "running_var"), fx["bn3.running_var"], kTol));
  EXPECT_TRUE(close(eval_out(bn, fx["xe"]), fx["bn3.eval.y"], kTol));
  EXPECT_EQ(loom_forward(bn, loom_select(fx["x"], 0, 0)), nullptr);  // no unbatched BatchNorm3d, as in PyTorch
  EXPECT_NE(std::string(loom_last_error()).find("BatchNorm3d: expected input [N, C, D, H, W]"), std::string::npos)
      << loom_last_error();
  loom_module_free(bn);
  loom_instance_norm_options io{};
  io.affine = true;
  loom_module *in = f64(loom_nn_instance_norm3d(2, &io), fx, "in3.");
  EXPECT_STREQ(loom_module_type(in), "InstanceNorm3d");
  check_step(in, fx, fx["x"], "in3.");
  loom_tensor *u = loom_forward(in, loom_select(fx["x"], 0, 1));
  ASSERT_NE(u, nullptr) << loom_last_error();
  EXPECT_TRUE(close(u, fx["in3.unbatched.y"], kTol));
  EXPECT_EQ(loom_forward(in, loom_randn(LOOM_SHAPE(2, 4, 4), LOOM_F64, loom_cpu())), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("[N, C, D, H, W] or [C, D, H, W]"), std::string::npos)
      << loom_last_error();
  loom_module_free(in);
}
