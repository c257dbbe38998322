// Autograd: recording, leaves, accumulation, detach, no_grad, graph freeing, hooks, leaks.
#include <cmath>
#include <string>

#include "loom_test.h"

#define ASSERT_T(t) ASSERT_NE((t), nullptr) << loom_last_error()

namespace {

loom_tensor *param(const std::vector<double> &v, loom_shape s, loom_dtype dt = LOOM_F64) {
  loom_tensor *t = T(v, s, dt);
  if (t) {
    EXPECT_EQ(loom_set_requires_grad(t, true), 0) << loom_last_error();
  }
  return t;
}

loom_tensor *sum_all(const loom_tensor *t) { return loom_sum(t, nullptr, 0, false); }

void expect_near(const std::vector<double> &got, const std::vector<double> &want, double tol = 1e-12) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); i++) EXPECT_NEAR(got[i], want[i], tol) << "element " << i;
}

bool contains(const std::string &s, const char *sub) { return s.find(sub) != std::string::npos; }

}  // namespace

TEST(Autograd, RequiresGradPropagationAndLeaves) {
  ScopeGuard g;
  loom_tensor *x = param({1, 2, 3}, LOOM_SHAPE(3));
  loom_tensor *c = T({4, 5, 6}, LOOM_SHAPE(3), LOOM_F64);
  ASSERT_T(x);
  EXPECT_TRUE(loom_requires_grad(x));
  EXPECT_TRUE(loom_is_leaf(x));
  EXPECT_EQ(loom_grad_fn_name(x), nullptr);
  EXPECT_FALSE(loom_requires_grad(c));
  EXPECT_TRUE(loom_is_leaf(c));

  loom_tensor *xc = loom_mul(x, c);
  ASSERT_T(xc);
  EXPECT_TRUE(loom_requires_grad(xc));
  EXPECT_FALSE(loom_is_leaf(xc));
  loom_tensor *cc = loom_add(c, c);
  ASSERT_T(cc);
  EXPECT_FALSE(loom_requires_grad(cc));
  EXPECT_TRUE(loom_is_leaf(cc)) << "an op on tensors needing no grad records nothing";
  EXPECT_EQ(loom_grad_fn_name(cc), nullptr);
  loom_tensor *v = loom_narrow(x, 0, 1, 2);
  ASSERT_T(v);
  EXPECT_TRUE(loom_requires_grad(v)) << "a view of a tensor needing grad needs grad";
  EXPECT_FALSE(loom_is_leaf(v));
  EXPECT_EQ(loom_grad(x), nullptr) << "no gradient before backward";

  ASSERT_EQ(loom_set_requires_grad(x, false), 0);
  EXPECT_FALSE(loom_requires_grad(x));
  EXPECT_FALSE(loom_requires_grad(loom_mul(x, c)));
}

TEST(Autograd, GradFnNames) {
  ScopeGuard g;
  loom_tensor *x = param({1, 2, 3, 4}, LOOM_SHAPE(2, 2));
  ASSERT_T(x);
  EXPECT_STREQ(loom_grad_fn_name(loom_add(x, x)), "add");
  EXPECT_STREQ(loom_grad_fn_name(loom_mul(x, x)), "mul");
  EXPECT_STREQ(loom_grad_fn_name(loom_exp(x)), "exp");
  EXPECT_STREQ(loom_grad_fn_name(loom_matmul(x, x)), "matmul");
  EXPECT_STREQ(loom_grad_fn_name(sum_all(x)), "sum");
}

TEST(Autograd, SimpleGradientsAndAccumulation) {
  ScopeGuard g;
  loom_tensor *x = param({0.5, -1, 2}, LOOM_SHAPE(3));
  ASSERT_T(x);
  // loss = sum(x * x * 3 + exp(x)): d/dx = 6x + exp(x)
  auto build = [&] { return sum_all(loom_add(loom_mul_scalar(loom_mul(x, x), 3), loom_exp(x))); };
  loom_tensor *loss = build();
  ASSERT_T(loss);
  ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << loom_last_error();
  loom_tensor *gx = loom_grad(x);
  ASSERT_T(gx);
  EXPECT_EQ(loom_dtype_of(gx), LOOM_F64);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(gx), LOOM_SHAPE(3)));
  std::vector<double> once = {6 * 0.5 + std::exp(0.5), -6 + std::exp(-1.0), 12 + std::exp(2.0)};
  expect_near(V(gx), once);

  ASSERT_EQ(loom_backward(build(), nullptr, false), 0) << loom_last_error();
  std::vector<double> twice = once;
  for (double &v : twice) v *= 2;
  expect_near(V(loom_grad(x)), twice);

  loom_zero_grad(x);
  EXPECT_EQ(loom_grad(x), nullptr);
  ASSERT_EQ(loom_backward(build(), nullptr, false), 0) << loom_last_error();
  expect_near(V(loom_grad(x)), once);
}

TEST(Autograd, SetGradThenAccumulate) {
  ScopeGuard g;
  loom_tensor *x = param({1, 2}, LOOM_SHAPE(2));
  loom_tensor *g0 = T({10, 20}, LOOM_SHAPE(2), LOOM_F64);
  ASSERT_EQ(loom_set_grad(x, g0), 0) << loom_last_error();
  EXPECT_TRUE(loom_shares_storage(loom_grad(x), g0));
  ASSERT_EQ(loom_backward(sum_all(loom_mul(x, x)), nullptr, false), 0) << loom_last_error();
  expect_near(V(loom_grad(x)), {12, 24});
  ASSERT_EQ(loom_set_grad(x, nullptr), 0);
  EXPECT_EQ(loom_grad(x), nullptr);
}

TEST(Autograd, DetachCutsTheGraph) {
  ScopeGuard g;
  loom_tensor *x = param({1, -2, 3}, LOOM_SHAPE(3));
  loom_tensor *d = loom_detach(loom_mul_scalar(x, 3));
  ASSERT_T(d);
  EXPECT_FALSE(loom_requires_grad(d));
  EXPECT_TRUE(loom_is_leaf(d));
  EXPECT_EQ(loom_grad_fn_name(d), nullptr);
  loom_tensor *dx = loom_detach(x);
  ASSERT_T(dx);
  EXPECT_TRUE(loom_shares_storage(dx, x));
  // loss = sum(detach(3x) * x): gradient is 3x, not 6x
  ASSERT_EQ(loom_backward(sum_all(loom_mul(d, x)), nullptr, false), 0) << loom_last_error();
  expect_near(V(loom_grad(x)), {3, -6, 9});
}

TEST(Autograd, NoGradBlocksRecordingAndNests) {
  ScopeGuard g;
  loom_tensor *x = param({1, 2}, LOOM_SHAPE(2));
  EXPECT_TRUE(loom_grad_enabled());
  loom_no_grad_begin();
  EXPECT_FALSE(loom_grad_enabled());
  loom_no_grad_begin();
  loom_tensor *a = loom_mul(x, x);
  loom_no_grad_end();
  EXPECT_FALSE(loom_grad_enabled()) << "inner end must not re-enable recording";
  loom_tensor *b = loom_exp(x);
  loom_no_grad_end();
  EXPECT_TRUE(loom_grad_enabled());
  ASSERT_T(a);
  ASSERT_T(b);
  EXPECT_FALSE(loom_requires_grad(a));
  EXPECT_FALSE(loom_requires_grad(b));
  EXPECT_EQ(loom_grad_fn_name(a), nullptr);
  loom_tensor *c = loom_mul(x, x);
  EXPECT_TRUE(loom_requires_grad(c));
  // a mixed expression: only the recorded part contributes
  loom_no_grad_begin();
  loom_tensor *frozen = loom_mul_scalar(x, 5);
  loom_no_grad_end();
  ASSERT_EQ(loom_backward(sum_all(loom_mul(frozen, x)), nullptr, false), 0) << loom_last_error();
  expect_near(V(loom_grad(x)), {5, 10});
}

TEST(Autograd, RetainGraphAllowsSecondBackwardOtherwiseClearError) {
  ScopeGuard g;
  loom_tensor *x = param({0.5, 1.5}, LOOM_SHAPE(2));
  loom_tensor *loss = sum_all(loom_mul(loom_exp(x), x));  // d/dx = exp(x) * (1 + x)
  ASSERT_T(loss);
  std::vector<double> once = {std::exp(0.5) * 1.5, std::exp(1.5) * 2.5};
  ASSERT_EQ(loom_backward(loss, nullptr, true), 0) << loom_last_error();
  expect_near(V(loom_grad(x)), once);
  ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << loom_last_error();
  expect_near(V(loom_grad(x)), {2 * once[0], 2 * once[1]});
  loom_clear_error();
  EXPECT_NE(loom_backward(loss, nullptr, false), 0) << "the graph was freed by the second backward";
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INVALID);
  std::string msg = loom_last_error();
  EXPECT_TRUE(contains(msg, "backward")) << msg;
  EXPECT_TRUE(contains(msg, "retain_graph")) << msg;
  expect_near(V(loom_grad(x)), {2 * once[0], 2 * once[1]});
}

TEST(Autograd, NonScalarRootNeedsGradOutput) {
  ScopeGuard g;
  loom_tensor *x = param({1, 2, 3}, LOOM_SHAPE(3));
  loom_tensor *y = loom_mul(x, x);
  ASSERT_T(y);
  loom_clear_error();
  EXPECT_NE(loom_backward(y, nullptr, true), 0);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INVALID);
  EXPECT_TRUE(contains(loom_last_error(), "backward")) << loom_last_error();
  EXPECT_TRUE(contains(loom_last_error(), "[3]")) << loom_last_error();
  EXPECT_EQ(loom_grad(x), nullptr);

  loom_clear_error();
  EXPECT_NE(loom_backward(y, T({1, 1}, LOOM_SHAPE(2), LOOM_F64), true), 0) << "grad_output of the wrong shape";
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INVALID);

  ASSERT_EQ(loom_backward(y, T({1, 0.5, -2}, LOOM_SHAPE(3), LOOM_F64), false), 0) << loom_last_error();
  expect_near(V(loom_grad(x)), {2, 2, -12});

  // a one-element root of any rank needs no grad_output
  loom_tensor *z = param({3}, LOOM_SHAPE(1, 1));
  ASSERT_EQ(loom_backward(loom_mul(z, z), nullptr, false), 0) << loom_last_error();
  expect_near(V(loom_grad(z)), {6});
}

TEST(Autograd, DiamondAccumulates) {
  ScopeGuard g;
  loom_tensor *x = param({1, -2, 0.5}, LOOM_SHAPE(3));
  // a = 2x, b = 3x, c = a * b = 6x^2, d = c + exp(a): dd/dx = 12x + 2 exp(2x)
  loom_tensor *a = loom_mul_scalar(x, 2), *b = loom_mul_scalar(x, 3);
  loom_tensor *d = loom_add(loom_mul(a, b), loom_exp(a));
  ASSERT_EQ(loom_backward(sum_all(d), nullptr, false), 0) << loom_last_error();
  std::vector<double> want;
  for (double v : {1.0, -2.0, 0.5}) want.push_back(12 * v + 2 * std::exp(2 * v));
  expect_near(V(loom_grad(x)), want, 1e-10);

  // a broadcast input used twice
  loom_tensor *w = param({0.5, 2}, LOOM_SHAPE(2));
  loom_tensor *m = T({1, 2, 3, 4, 5, 6}, LOOM_SHAPE(3, 2), LOOM_F64);
  ASSERT_EQ(loom_backward(sum_all(loom_mul(loom_mul(m, w), w)), nullptr, false), 0) << loom_last_error();
  expect_near(V(loom_grad(w)), {2 * 0.5 * (1 + 3 + 5), 2 * 2 * (2 + 4 + 6)});
}

namespace {
struct HookLog {
  int calls = 0;
  std::vector<double> grad_at_call;
};
void record_hook(loom_tensor *leaf, void *user) {
  HookLog *log = static_cast<HookLog *>(user);
  log->calls++;
  log->grad_at_call = V(loom_grad(leaf));
}
}  // namespace

TEST(Autograd, GradReadyHookFiresOncePerLeafWithFinalGrad) {
  ScopeGuard g;
  loom_tensor *x = param({1, 2}, LOOM_SHAPE(2));
  loom_tensor *y = param({3, -1}, LOOM_SHAPE(2));
  HookLog hx, hy;
  ASSERT_EQ(loom_set_grad_hook(x, record_hook, &hx), 0) << loom_last_error();
  ASSERT_EQ(loom_set_grad_hook(y, record_hook, &hy), 0) << loom_last_error();
  // x reaches the loss along three paths: loss = sum(x*y + x*x + exp(x))
  auto build = [&] { return sum_all(loom_add(loom_add(loom_mul(x, y), loom_mul(x, x)), loom_exp(x))); };
  ASSERT_EQ(loom_backward(build(), nullptr, false), 0) << loom_last_error();
  EXPECT_EQ(hx.calls, 1);
  EXPECT_EQ(hy.calls, 1);
  std::vector<double> gx = {3 + 2 + std::exp(1.0), -1 + 4 + std::exp(2.0)};
  expect_near(hx.grad_at_call, gx);
  expect_near(hy.grad_at_call, {1, 2});

  ASSERT_EQ(loom_backward(build(), nullptr, false), 0) << loom_last_error();
  EXPECT_EQ(hx.calls, 2);
  EXPECT_EQ(hy.calls, 2);
  expect_near(hx.grad_at_call, {2 * gx[0], 2 * gx[1]});
  expect_near(V(loom_grad(x)), {2 * gx[0], 2 * gx[1]});

  // a leaf the loss does not depend on is not reported
  loom_tensor *unused = param({1}, LOOM_SHAPE(1));
  HookLog hu;
  ASSERT_EQ(loom_set_grad_hook(unused, record_hook, &hu), 0);
  ASSERT_EQ(loom_backward(sum_all(loom_mul(x, x)), nullptr, false), 0) << loom_last_error();
  EXPECT_EQ(hu.calls, 0);
  EXPECT_EQ(hx.calls, 3);
  EXPECT_EQ(hy.calls, 2);
}

TEST(Autograd, IntegerTensorsCannotRequireGrad) {
  ScopeGuard g;
  for (loom_dtype dt : {LOOM_I32, LOOM_I64, LOOM_U8, LOOM_BOOL}) {
    loom_tensor *t = loom_zeros(LOOM_SHAPE(2), dt, loom_cpu());
    ASSERT_T(t);
    loom_clear_error();
    EXPECT_NE(loom_set_requires_grad(t, true), 0) << loom_dtype_name(dt);
    EXPECT_EQ(loom_last_status(), LOOM_ERR_INVALID);
    EXPECT_TRUE(contains(loom_last_error(), loom_dtype_name(dt))) << loom_last_error();
    EXPECT_FALSE(loom_requires_grad(t));
  }
  for (loom_dtype dt : {LOOM_F32, LOOM_F16, LOOM_BF16}) {
    loom_tensor *t = loom_zeros(LOOM_SHAPE(2), dt, loom_cpu());
    EXPECT_EQ(loom_set_requires_grad(t, true), 0) << loom_dtype_name(dt) << ": " << loom_last_error();
  }
}

TEST(Autograd, F32GradientsThroughMatmulAndReductions) {
  ScopeGuard g;
  loom_tensor *w = param({1, 2, 3, 4, 5, 6}, LOOM_SHAPE(3, 2), LOOM_F32);
  loom_tensor *x = T({1, -1, 2, 0.5, 0, -2}, LOOM_SHAPE(2, 3), LOOM_F32);
  // loss = sum(x @ w): dL/dw[k][j] = sum_i x[i][k]
  ASSERT_EQ(loom_backward(sum_all(loom_matmul(x, w)), nullptr, false), 0) << loom_last_error();
  loom_tensor *gw = loom_grad(w);
  ASSERT_T(gw);
  EXPECT_EQ(loom_dtype_of(gw), LOOM_F32);
  expect_near(V(gw), {1.5, 1.5, -1, -1, 0, 0}, 1e-6);
}

TEST(Autograd, TrainingLoopInScopesLeaksNothing) {
  const int64_t start = loom_live_tensors();
  loom_manual_seed(3);
  // fit y = x @ [1, -2, 0.5, 3] + 0.25 by gradient descent
  loom_scope_begin();
  loom_tensor *x = loom_keep(loom_randn(LOOM_SHAPE(32, 4), LOOM_F32, loom_cpu()));
  loom_tensor *w_true = T({1, -2, 0.5, 3}, LOOM_SHAPE(4, 1));
  loom_tensor *y = loom_keep(loom_add_scalar(loom_matmul(x, w_true), 0.25));
  loom_tensor *w = loom_keep(loom_zeros(LOOM_SHAPE(4, 1), LOOM_F32, loom_cpu()));
  loom_tensor *b = loom_keep(loom_zeros(LOOM_SHAPE(1), LOOM_F32, loom_cpu()));
  loom_scope_end();
  ASSERT_T(x);
  ASSERT_T(y);
  ASSERT_T(w);
  ASSERT_T(b);
  EXPECT_EQ(loom_live_tensors(), start + 4) << "the setup scope released its temporaries";
  ASSERT_EQ(loom_set_requires_grad(w, true), 0);
  ASSERT_EQ(loom_set_requires_grad(b, true), 0);
  const int64_t steady = loom_live_tensors();
  double first = NAN, last = NAN;
  for (int step = 0; step < 50; step++) {
    loom_scope_begin();
    loom_tensor *pred = loom_add(loom_matmul(x, w), b);
    loom_tensor *loss = loom_mean(loom_square(loom_sub(pred, y)), nullptr, 0, false);
    ASSERT_T(loss);
    last = loom_item(loss);
    if (step == 0) first = last;
    ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << loom_last_error();
    loom_no_grad_begin();
    for (loom_tensor *p : {w, b}) {
      ASSERT_T(loom_grad(p));
      ASSERT_EQ(loom_copy_(p, loom_sub(p, loom_mul_scalar(loom_grad(p), 0.1))), 0) << loom_last_error();
      loom_zero_grad(p);
    }
    loom_no_grad_end();
    loom_scope_end();
    ASSERT_EQ(loom_live_tensors(), steady) << "step " << step << " leaked tensors";
  }
  EXPECT_LT(last, first * 0.01) << "loss " << first << " -> " << last;
  for (loom_tensor *t : {x, y, w, b}) loom_release(t);
  EXPECT_EQ(loom_live_tensors(), start);
}

// Regression tests from a review of the engine.
TEST(Autograd, LeafGradsOwnTheirStorage) {
  ScopeGuard g;
  loom_tensor *a = T({1, 2, 3}, LOOM_SHAPE(3), LOOM_F64), *b = T({4, 5, 6}, LOOM_SHAPE(3), LOOM_F64);
  loom_set_requires_grad(a, true);
  loom_set_requires_grad(b, true);
  loom_tensor *go = T({1, 1, 1}, LOOM_SHAPE(3), LOOM_F64);
  ASSERT_EQ(loom_backward(loom_add(a, b), go, false), 0) << loom_last_error();
  EXPECT_FALSE(loom_shares_storage(loom_grad(a), loom_grad(b)));
  EXPECT_FALSE(loom_shares_storage(loom_grad(a), go));
  ASSERT_EQ(loom_fill_(go, 7), 0);
  EXPECT_EQ(V(loom_grad(b)), (std::vector<double>{1, 1, 1}));
  // a transposed gradient is stored contiguous
  loom_tensor *w = T({1, 2, 3, 4, 5, 6}, LOOM_SHAPE(2, 3), LOOM_F64);
  loom_set_requires_grad(w, true);
  ASSERT_EQ(loom_backward(loom_sum(loom_transpose(w, 0, 1), nullptr, 0, false), nullptr, false), 0);
  EXPECT_TRUE(loom_is_contiguous(loom_grad(w)));
}

TEST(Autograd, ZeroNotNanAtSingularPoints) {
  ScopeGuard g;
  loom_tensor *z = T({0, 0, 0}, LOOM_SHAPE(3), LOOM_F64);
  loom_set_requires_grad(z, true);
  ASSERT_EQ(loom_backward(loom_norm(z, 2, nullptr, 0, false), nullptr, false), 0) << loom_last_error();
  EXPECT_EQ(V(loom_grad(z)), (std::vector<double>{0, 0, 0}));
  loom_zero_grad(z);
  loom_tensor *c = T({2, 2, 2}, LOOM_SHAPE(3), LOOM_F64);
  loom_set_requires_grad(c, true);
  ASSERT_EQ(loom_backward(loom_std(c, nullptr, 0, 1, false), nullptr, false), 0) << loom_last_error();
  EXPECT_EQ(V(loom_grad(c)), (std::vector<double>{0, 0, 0}));
  ASSERT_EQ(loom_backward(loom_sum(loom_pow_scalar(z, 0), nullptr, 0, false), nullptr, false), 0);
  EXPECT_EQ(V(loom_grad(z)), (std::vector<double>{0, 0, 0}));
}

TEST(Autograd, ZeroDimIndexingAndEmptyMatmulRecord) {
  ScopeGuard g;
  loom_tensor *x = T({3}, LOOM_SHAPE(), LOOM_F64), *i = T({0}, LOOM_SHAPE(), LOOM_I64);
  loom_set_requires_grad(x, true);
  ASSERT_EQ(loom_backward(loom_gather(x, 0, i), nullptr, false), 0) << loom_last_error();
  EXPECT_EQ(V(loom_grad(x)), (std::vector<double>{1}));
  ASSERT_EQ(loom_backward(loom_index_select(x, 0, i), nullptr, false), 0) << loom_last_error();
  EXPECT_EQ(V(loom_grad(x)), (std::vector<double>{2}));
  loom_tensor *a = loom_zeros(LOOM_SHAPE(2, 0), LOOM_F64, loom_cpu()), *b = loom_zeros(LOOM_SHAPE(0, 3), LOOM_F64, loom_cpu());
  loom_set_requires_grad(a, true);
  loom_tensor *p = loom_matmul(a, b);
  ASSERT_TRUE(p);
  EXPECT_TRUE(loom_requires_grad(p));
}

TEST(Autograd, GraphWithoutSavedTensorsRunsTwice) {
  ScopeGuard g;
  loom_tensor *p = T({1, 2}, LOOM_SHAPE(2), LOOM_F64);
  loom_set_requires_grad(p, true);
  loom_tensor *y = loom_sum(loom_add(p, p), nullptr, 0, false);
  ASSERT_EQ(loom_backward(y, nullptr, false), 0);
  ASSERT_EQ(loom_backward(y, nullptr, false), 0) << loom_last_error();
  EXPECT_EQ(V(loom_grad(p)), (std::vector<double>{4, 4}));
}

TEST(Autograd, SetGradChecksDtype) {
  ScopeGuard g;
  loom_tensor *p = T({1, 2}, LOOM_SHAPE(2), LOOM_F64), *g32 = T({1, 1}, LOOM_SHAPE(2), LOOM_F32);
  EXPECT_NE(loom_set_grad(p, g32), 0);
  EXPECT_NE(std::string(loom_last_error()).find("set_grad"), std::string::npos);
}
