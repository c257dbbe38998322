// Regression tests of the review of the act, norm, loss, rnn families and the
// module core: each test failed (or crashed) before its fix. PyTorch's
// behaviour quoted in a comment was checked with torch 2.15.
#include <cmath>
#include <string>

#include "loom_test.h"

namespace {

bool error_has(const char *a, const char *b = "") {
  std::string e = loom_last_error();
  bool ok = e.find(a) != std::string::npos && e.find(b) != std::string::npos;
  if (!ok) ADD_FAILURE() << "error \"" << e << "\" lacks \"" << a << "\" / \"" << b << "\"";
  return ok;
}

// Leaves host pool blocks full of a non-zero pattern, so that a kernel output
// that is never written shows up as garbage rather than as lucky zeros.
void dirty_pool() {
  loom_scope_begin();
  for (int64_t n : {2, 3, 4, 6, 8, 16, 64, 256}) loom_fill_(loom_empty(LOOM_SHAPE(n), LOOM_F32, loom_cpu()), 7);
  loom_scope_end();
}

double item(const loom_tensor *t) { return loom_item(t); }

}  // namespace

// ---- norm: momentum = 0 (PyTorch: running statistics never move) ----

TEST(ReviewNorm, BatchNormMomentumZeroKeepsRunningStats) {
  ScopeGuard scope;
  loom_manual_seed(1);
  loom_batch_norm_options o = {};
  o.momentum = 0;
  o.set_momentum = true;
  loom_module *m = loom_nn_batch_norm1d(3, &o);
  ASSERT_NE(m, nullptr) << loom_last_error();
  EXPECT_EQ(static_cast<loom_norm_config *>(loom_module_state(m))->momentum, 0.0);
  loom_tensor *x = loom_add_scalar(loom_mul_scalar(loom_randn(LOOM_SHAPE(8, 3), LOOM_F32, loom_cpu()), 3), 2);
  ASSERT_NE(loom_forward(m, x), nullptr) << loom_last_error();
  for (double v : V(loom_module_buffer(m, "running_mean"))) EXPECT_EQ(v, 0.0);
  for (double v : V(loom_module_buffer(m, "running_var"))) EXPECT_EQ(v, 1.0);
  EXPECT_EQ(item(loom_module_buffer(m, "num_batches_tracked")), 1.0);
  loom_module_free(m);

  // without set_momentum, 0 still means the default 0.1
  loom_batch_norm_options d = {};
  m = loom_nn_batch_norm2d(3, &d);
  EXPECT_DOUBLE_EQ(static_cast<loom_norm_config *>(loom_module_state(m))->momentum, 0.1);
  loom_module_free(m);
}

TEST(ReviewNorm, InstanceNormMomentumZeroKeepsRunningStats) {
  ScopeGuard scope;
  loom_manual_seed(2);
  loom_instance_norm_options o = {};
  o.track_running_stats = true;
  o.set_momentum = true;  // momentum 0
  loom_module *m = loom_nn_instance_norm1d(3, &o);
  ASSERT_NE(m, nullptr) << loom_last_error();
  loom_tensor *x = loom_add_scalar(loom_randn(LOOM_SHAPE(2, 3, 5), LOOM_F32, loom_cpu()), 4);
  ASSERT_NE(loom_forward(m, x), nullptr) << loom_last_error();
  for (double v : V(loom_module_buffer(m, "running_mean"))) EXPECT_EQ(v, 0.0);
  for (double v : V(loom_module_buffer(m, "running_var"))) EXPECT_EQ(v, 1.0);
  loom_module_free(m);
}

// A rejected input must not count as a tracked batch.
TEST(ReviewNorm, RejectedBatchIsNotCounted) {
  ScopeGuard scope;
  loom_module *m = loom_nn_batch_norm1d(3, nullptr);
  loom_tensor *x = loom_randn(LOOM_SHAPE(4, 3), LOOM_F64, loom_cpu());  // module is f32
  EXPECT_EQ(loom_forward(m, x), nullptr);
  error_has("BatchNorm1d", "f64");
  EXPECT_EQ(item(loom_module_buffer(m, "num_batches_tracked")), 0.0);
  // momentum None: the factor of the first accepted batch is 1 (running = batch mean)
  loom_module_free(m);
  loom_batch_norm_options cma = {};
  cma.momentum = NAN;
  m = loom_nn_batch_norm1d(3, &cma);
  EXPECT_EQ(loom_forward(m, x), nullptr);
  loom_tensor *xf = T({1, 2, 3, 3, 4, 5}, LOOM_SHAPE(2, 3));
  ASSERT_NE(loom_forward(m, xf), nullptr) << loom_last_error();
  std::vector<double> rm = V(loom_module_buffer(m, "running_mean"));
  EXPECT_NEAR(rm[0], 2, 1e-6);
  EXPECT_NEAR(rm[2], 4, 1e-6);
  loom_module_free(m);
}

// PyTorch: BatchNorm on an empty batch returns an empty output and leaves
// the running statistics alone (num_batches_tracked still counts it).
TEST(ReviewNorm, EmptyBatchLeavesRunningStats) {
  ScopeGuard scope;
  dirty_pool();
  loom_module *m = loom_nn_batch_norm1d(3, nullptr);
  loom_tensor *y = loom_forward(m, loom_empty(LOOM_SHAPE(0, 3), LOOM_F32, loom_cpu()));
  ASSERT_NE(y, nullptr) << loom_last_error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(y), LOOM_SHAPE(0, 3)));
  for (double v : V(loom_module_buffer(m, "running_mean"))) EXPECT_EQ(v, 0.0);
  for (double v : V(loom_module_buffer(m, "running_var"))) EXPECT_EQ(v, 1.0);
  EXPECT_EQ(item(loom_module_buffer(m, "num_batches_tracked")), 1.0);
  loom_module_free(m);

  loom_instance_norm_options io = {};
  io.track_running_stats = true;
  m = loom_nn_instance_norm1d(3, &io);
  dirty_pool();
  ASSERT_NE(loom_forward(m, loom_empty(LOOM_SHAPE(2, 3, 0), LOOM_F32, loom_cpu())), nullptr) << loom_last_error();
  for (double v : V(loom_module_buffer(m, "running_mean"))) EXPECT_EQ(v, 0.0);
  for (double v : V(loom_module_buffer(m, "running_var"))) EXPECT_EQ(v, 1.0);
  loom_module_free(m);
}

// PyTorch: zero weight / bias gradients from an empty input (the kernels do
// not run on empty outputs, so nothing else would write them).
TEST(ReviewNorm, EmptyInputGivesZeroParameterGradients) {
  ScopeGuard scope;
  const int64_t ns[] = {4};
  loom_module *mods[3] = {loom_nn_layer_norm(ns, 1, nullptr), loom_nn_batch_norm1d(4, nullptr),
                          loom_nn_group_norm(2, 4, nullptr)};
  loom_shape shapes[3] = {LOOM_SHAPE(0, 4), LOOM_SHAPE(0, 4), LOOM_SHAPE(0, 4, 3)};
  for (int i = 0; i < 3; i++) {
    SCOPED_TRACE(loom_module_type(mods[i]));
    dirty_pool();
    loom_tensor *x = loom_zeros(shapes[i], LOOM_F32, loom_cpu());
    loom_set_requires_grad(x, true);
    loom_tensor *y = loom_forward(mods[i], x);
    ASSERT_NE(y, nullptr) << loom_last_error();
    dirty_pool();
    ASSERT_EQ(loom_backward(loom_sum(y, nullptr, 0, false), nullptr, false), LOOM_OK) << loom_last_error();
    for (const char *p : {"weight", "bias"}) {
      loom_tensor *g = loom_grad(loom_module_param(mods[i], p));
      ASSERT_NE(g, nullptr) << p;
      for (double v : V(g)) EXPECT_EQ(v, 0.0) << p;
    }
    EXPECT_EQ(loom_numel(loom_grad(x)), 0);
    loom_module_free(mods[i]);
  }
}

// A non-contiguous weight (a column of a bigger parameter) must work in
// backward too: the kernels get the contiguous copy.
TEST(ReviewNorm, NonContiguousWeightBackward) {
  ScopeGuard scope;
  loom_manual_seed(3);
  loom_tensor *x = loom_randn(LOOM_SHAPE(3, 4), LOOM_F64, loom_cpu());
  loom_tensor *wb = loom_add_scalar(loom_randn(LOOM_SHAPE(4, 2), LOOM_F64, loom_cpu()), 1);
  loom_set_requires_grad(x, true);
  loom_set_requires_grad(wb, true);
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) {
    static const int64_t ns[] = {4};
    loom_tensor *w = loom_select(in[1], 1, 1);  // stride 2
    return loom_layer_norm(in[0], ns, 1, w, nullptr, 1e-5);
  }, {x, wb}));
  loom_tensor *x3 = loom_randn(LOOM_SHAPE(5, 4, 2), LOOM_F64, loom_cpu());
  loom_set_requires_grad(x3, true);
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) {
    return loom_group_norm(in[0], 2, loom_select(in[1], 1, 0), nullptr, 1e-5);
  }, {x3, wb}));
}

// PyTorch: GroupNorm(affine=False) only needs num_groups to divide C.
TEST(ReviewNorm, GroupNormWithoutAffineTakesAnyDivisibleChannels) {
  ScopeGuard scope;
  loom_group_norm_options o = {};
  o.no_affine = true;
  loom_module *m = loom_nn_group_norm(2, 4, &o);
  loom_tensor *y = loom_forward(m, loom_randn(LOOM_SHAPE(2, 6, 3), LOOM_F32, loom_cpu()));
  EXPECT_NE(y, nullptr) << loom_last_error();
  EXPECT_EQ(loom_forward(m, loom_randn(LOOM_SHAPE(2, 5, 3), LOOM_F32, loom_cpu())), nullptr);
  error_has("GroupNorm", "divide");
  loom_module_free(m);
  m = loom_nn_group_norm(2, 4, nullptr);  // affine: C must be num_channels
  EXPECT_EQ(loom_forward(m, loom_randn(LOOM_SHAPE(2, 6, 3), LOOM_F32, loom_cpu())), nullptr);
  error_has("GroupNorm", "C = 4");
  loom_module_free(m);
}

// ---- loss: a non-zero ignore_index is used without set_ignore_index ----

TEST(ReviewLoss, IgnoreIndexZeroMeansDefaultUnlessSet) {
  ScopeGuard scope;
  loom_tensor *x = T({1, 2, 3, 0.5, -1, 2, 3, 3, 1, 0, 0, 4}, LOOM_SHAPE(4, 3));
  loom_tensor *t = T({0, 2, 1, 2}, LOOM_SHAPE(4), LOOM_I64);
  // reference: the mean of the rows whose target is not 2
  loom_cross_entropy_opts none = {};
  none.reduction = LOOM_REDUCTION_NONE;
  std::vector<double> rows = V(loom_cross_entropy(x, t, &none));
  double want = (rows[0] + rows[2]) / 2, all = (rows[0] + rows[1] + rows[2] + rows[3]) / 4;

  loom_cross_entropy_opts o = {};
  o.ignore_index = 2;  // no set_ignore_index: still ignores class 2
  EXPECT_NEAR(item(loom_cross_entropy(x, t, &o)), want, 1e-6);
  o.set_ignore_index = true;
  EXPECT_NEAR(item(loom_cross_entropy(x, t, &o)), want, 1e-6);
  EXPECT_NEAR(item(loom_cross_entropy_unfused(x, t, &o)), want, 1e-6);
  loom_cross_entropy_opts zero = {};  // 0 without the flag: the default -100, nothing ignored
  EXPECT_NEAR(item(loom_cross_entropy(x, t, &zero)), all, 1e-6);
  zero.set_ignore_index = true;  // class 0 ignored
  EXPECT_NEAR(item(loom_cross_entropy(x, t, &zero)), (rows[1] + rows[2] + rows[3]) / 3, 1e-6);

  loom_nll_loss_opts n = {};
  n.ignore_index = 2;
  loom_tensor *lp = loom_log_softmax(x, 1);
  EXPECT_NEAR(item(loom_nll_loss(lp, t, &n)), want, 1e-6);
}

// ---- module core ----

TEST(ReviewModule, CyclesAreRejected) {
  ScopeGuard scope;
  loom_module *a = loom_nn_sequential(0, nullptr), *b = loom_nn_sequential(0, nullptr);
  ASSERT_EQ(loom_module_add(a, "b", loom_module_retain(b)), LOOM_OK);
  EXPECT_NE(loom_module_add(b, "a", loom_module_retain(a)), LOOM_OK);  // would make a -> b -> a
  error_has("module_add", "cycle");
  EXPECT_NE(loom_module_add(b, "self", loom_module_retain(b)), LOOM_OK);
  error_has("module_add", "cycle");
  loom_module_train(a, false);  // would recurse forever with a cycle
  EXPECT_FALSE(loom_module_training(b));
  // sharing a module under two parents (no cycle) stays allowed
  loom_module *c = loom_nn_relu();
  EXPECT_EQ(loom_module_add(a, "c1", loom_module_retain(c)), LOOM_OK);
  EXPECT_EQ(loom_module_add(b, "c2", c), LOOM_OK);
  loom_module_free(b);
  loom_module_free(a);
}

TEST(ReviewModule, ReplaceTensorWithNullNameIsAnError) {
  ScopeGuard scope;
  loom_module *m = loom_nn_linear(2, 3, nullptr);
  EXPECT_EQ(loom_module_replace_tensor(m, nullptr, loom_zeros(LOOM_SHAPE(3), LOOM_F32, loom_cpu())), nullptr);
  error_has("module_replace_tensor");
  loom_module_free(m);
}

// ---- rnn: loom_lstm_cell_forward goes through loom_forward_n (hooks, summaries) ----

namespace {
int hook_calls = 0;
void count_hook(loom_module *, loom_tensor *const *, int, const loom_tensor *, void *) { hook_calls++; }
}  // namespace

TEST(ReviewRnn, LstmCellForwardFiresTheForwardHook) {
  ScopeGuard scope;
  loom_manual_seed(4);
  loom_module *cell = loom_nn_lstm_cell(3, 2, nullptr);
  loom_tensor *x = loom_randn(LOOM_SHAPE(4, 3), LOOM_F32, loom_cpu());
  loom_tensor *h1 = nullptr, *c1 = nullptr;
  hook_calls = 0;
  loom_set_forward_hook(count_hook, nullptr);
  int st = loom_lstm_cell_forward(cell, x, nullptr, nullptr, &h1, &c1);
  loom_set_forward_hook(nullptr, nullptr);
  ASSERT_EQ(st, LOOM_OK) << loom_last_error();
  EXPECT_EQ(hook_calls, 1);
  ASSERT_NE(c1, nullptr);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(c1), LOOM_SHAPE(4, 2)));
  // the same numbers as the functional cell
  loom_tensor *c_ref = nullptr;
  loom_tensor *h_ref = loom_lstm_cell(x, nullptr, nullptr, loom_module_param(cell, "weight_ih"),
                                      loom_module_param(cell, "weight_hh"), loom_module_param(cell, "bias_ih"),
                                      loom_module_param(cell, "bias_hh"), &c_ref);
  EXPECT_LT(rel_err(h1, h_ref), 1e-6);
  EXPECT_LT(rel_err(c1, c_ref), 1e-6);
  // states given: both or neither
  EXPECT_NE(loom_lstm_cell_forward(cell, x, h1, nullptr, &h1, &c1), LOOM_OK);
  error_has("LSTMCell", "both");
  loom_module_free(cell);
}
