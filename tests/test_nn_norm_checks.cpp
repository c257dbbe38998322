// Norm layers: f64 gradchecks of the functional forms, bad input, autocast,
// and CUDA against the CPU (forward, gradients, running statistics; f32,
// f16, bf16). PyTorch comparisons are in test_nn_norm.cpp.
#include <cmath>
#include <functional>
#include <string>

#include "loom_test.h"

namespace {

loom_tensor *leaf(loom_shape s, double scale = 1, double shift = 0) {
  loom_tensor *t = loom_add_scalar(loom_mul_scalar(loom_randn(s, LOOM_F64, loom_cpu()), scale), shift);
  loom_set_requires_grad(t, true);
  return t;
}

bool error_has(const char *a, const char *b = "") {
  std::string e = loom_last_error();
  bool ok = e.find(a) != std::string::npos && e.find(b) != std::string::npos;
  if (!ok) ADD_FAILURE() << "error \"" << e << "\" lacks \"" << a << "\" / \"" << b << "\"";
  return ok;
}

}  // namespace

// ---- gradients by finite differences (f64) ----

TEST(NormGradcheck, BatchNormTrainingAndEval) {
  ScopeGuard scope;
  loom_manual_seed(7);
  std::vector<loom_tensor *> in = {leaf(LOOM_SHAPE(4, 3, 5), 2, 1), leaf(LOOM_SHAPE(3), 0.5, 1), leaf(LOOM_SHAPE(3))};
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &x) {
    return loom_batch_norm(x[0], nullptr, nullptr, x[1], x[2], true, 0.1, 1e-5);
  }, in));
  std::vector<loom_tensor *> in2 = {leaf(LOOM_SHAPE(6, 3)), in[1], in[2]};
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &x) {
    return loom_batch_norm(x[0], nullptr, nullptr, x[1], x[2], true, 0.1, 1e-5);
  }, in2));
  loom_tensor *rm = loom_randn(LOOM_SHAPE(3), LOOM_F64, loom_cpu());
  loom_tensor *rv = loom_add_scalar(loom_rand(LOOM_SHAPE(3), LOOM_F64, loom_cpu()), 0.5);
  EXPECT_TRUE(gradcheck([rm, rv](const std::vector<loom_tensor *> &x) {
    return loom_batch_norm(x[0], rm, rv, x[1], x[2], false, 0.1, 1e-5);
  }, in));
}

TEST(NormGradcheck, LayerGroupInstance) {
  ScopeGuard scope;
  loom_manual_seed(8);
  std::vector<loom_tensor *> ln = {leaf(LOOM_SHAPE(3, 4, 5), 2, 1), leaf(LOOM_SHAPE(4, 5), 0.5, 1),
                                   leaf(LOOM_SHAPE(4, 5))};
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &x) {
    static const int64_t ns[] = {4, 5};
    return loom_layer_norm(x[0], ns, 2, x[1], x[2], 1e-5);
  }, ln));
  std::vector<loom_tensor *> gn = {leaf(LOOM_SHAPE(2, 6, 3, 2), 2, -1), leaf(LOOM_SHAPE(6), 0.5, 1),
                                   leaf(LOOM_SHAPE(6))};
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &x) {
    return loom_group_norm(x[0], 2, x[1], x[2], 1e-5);
  }, gn));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &x) {
    return loom_instance_norm(x[0], nullptr, nullptr, x[1], x[2], true, 0.1, 1e-5);
  }, gn));
  // without weight and bias: the gradient of x alone
  std::vector<loom_tensor *> x_only = {gn[0]};
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &x) {
    return loom_group_norm(x[0], 3, nullptr, nullptr, 1e-5);
  }, x_only));
}

// ---- hand-derivable values ----

TEST(NormValues, SmallCases) {
  ScopeGuard scope;
  // [1, 3] over the last dim: mean 2, biased var 2/3 -> (-1, 0, 1) * sqrt(3/2)
  static const int64_t ns[] = {3};
  loom_tensor *y = loom_layer_norm(T({1, 2, 3}, LOOM_SHAPE(1, 3), LOOM_F64), ns, 1, nullptr, nullptr, 0);
  ASSERT_NE(y, nullptr) << loom_last_error();
  std::vector<double> v = V(y);
  EXPECT_NEAR(v[0], -std::sqrt(1.5), 1e-12);
  EXPECT_NEAR(v[1], 0, 1e-12);
  EXPECT_NEAR(v[2], std::sqrt(1.5), 1e-12);
  // batch norm of channel values {0, 2}: running_mean 0.1 * 1, running_var 0.9 + 0.1 * 2 (unbiased)
  loom_tensor *rm = loom_zeros(LOOM_SHAPE(1), LOOM_F32, loom_cpu()), *rv = loom_ones(LOOM_SHAPE(1), LOOM_F32, loom_cpu());
  y = loom_batch_norm(T({0, 2}, LOOM_SHAPE(2, 1)), rm, rv, nullptr, nullptr, true, 0.1, 0);
  ASSERT_NE(y, nullptr) << loom_last_error();
  EXPECT_NEAR(V(y)[0], -1, 1e-6);
  EXPECT_NEAR(V(rm)[0], 0.1, 1e-6);
  EXPECT_NEAR(V(rv)[0], 1.1, 1e-6);
}

// ---- bad input ----

TEST(NormErrors, ModulesNameTheLayer) {
  ScopeGuard scope;
  loom_module *bn2 = loom_nn_batch_norm2d(3, nullptr), *bn1 = loom_nn_batch_norm1d(4, nullptr);
  const int64_t s6[] = {6};
  loom_module *ln = loom_nn_layer_norm(s6, 1, nullptr), *gn = loom_nn_group_norm(2, 6, nullptr);
  loom_module *in2 = loom_nn_instance_norm2d(3, nullptr);
  loom_tensor *x3 = loom_randn(LOOM_SHAPE(2, 3, 5), LOOM_F32, loom_cpu());
  EXPECT_EQ(loom_forward(bn2, x3), nullptr);
  error_has("BatchNorm2d", "[2, 3, 5]");
  EXPECT_EQ(loom_forward(bn2, loom_randn(LOOM_SHAPE(2, 4, 5, 5), LOOM_F32, loom_cpu())), nullptr);
  error_has("BatchNorm2d", "C = 3");
  EXPECT_EQ(loom_forward(bn1, loom_randn(LOOM_SHAPE(2, 4, 5, 5), LOOM_F32, loom_cpu())), nullptr);
  error_has("BatchNorm1d");
  EXPECT_EQ(loom_forward(bn1, loom_randn(LOOM_SHAPE(1, 4), LOOM_F32, loom_cpu())), nullptr);
  error_has("BatchNorm1d", "more than 1 value");
  EXPECT_EQ(loom_forward(bn2, loom_randn(LOOM_SHAPE(2, 3, 4, 4), LOOM_F64, loom_cpu())), nullptr);
  error_has("BatchNorm2d", "weight is f32");
  EXPECT_EQ(loom_forward(ln, loom_randn(LOOM_SHAPE(3, 5), LOOM_F32, loom_cpu())), nullptr);
  error_has("LayerNorm", "[3, 5]");
  EXPECT_EQ(loom_forward(gn, loom_randn(LOOM_SHAPE(2, 4, 3), LOOM_F32, loom_cpu())), nullptr);
  error_has("GroupNorm", "C = 6");
  EXPECT_EQ(loom_forward(in2, loom_randn(LOOM_SHAPE(2, 3), LOOM_F32, loom_cpu())), nullptr);
  error_has("InstanceNorm2d");
  EXPECT_EQ(loom_forward(in2, loom_randn(LOOM_SHAPE(2, 3, 1, 1), LOOM_F32, loom_cpu())), nullptr);
  error_has("InstanceNorm2d", "spatial");
  EXPECT_EQ(loom_forward(bn2, loom_ones(LOOM_SHAPE(2, 3, 4, 4), LOOM_I64, loom_cpu())), nullptr);
  error_has("BatchNorm2d", "floating");
  for (loom_module *m : {bn2, bn1, ln, gn, in2}) loom_module_free(m);
}

TEST(NormErrors, BadOptionsAndFunctionalArguments) {
  ScopeGuard scope;
  EXPECT_EQ(loom_nn_batch_norm2d(0, nullptr), nullptr);
  error_has("BatchNorm2d", "num_features");
  loom_batch_norm_options o = {};
  o.momentum = 2;
  EXPECT_EQ(loom_nn_batch_norm1d(3, &o), nullptr);
  error_has("BatchNorm1d", "momentum");
  loom_instance_norm_options io = {};
  io.eps = -1;
  EXPECT_EQ(loom_nn_instance_norm1d(3, &io), nullptr);
  error_has("InstanceNorm1d", "eps");
  EXPECT_EQ(loom_nn_group_norm(4, 6, nullptr), nullptr);
  error_has("GroupNorm", "divide");
  EXPECT_EQ(loom_nn_layer_norm(nullptr, 0, nullptr), nullptr);
  error_has("LayerNorm", "normalized_shape");

  loom_tensor *x = loom_randn(LOOM_SHAPE(4, 3, 5), LOOM_F32, loom_cpu());
  loom_tensor *w = loom_ones(LOOM_SHAPE(3), LOOM_F32, loom_cpu());
  EXPECT_EQ(loom_batch_norm(x, nullptr, nullptr, w, nullptr, true, NAN, 1e-5), nullptr);
  error_has("batch_norm", "momentum");
  EXPECT_EQ(loom_batch_norm(x, nullptr, nullptr, w, nullptr, false, 0.1, 1e-5), nullptr);
  error_has("batch_norm", "running_mean");
  EXPECT_EQ(loom_batch_norm(x, w, nullptr, nullptr, nullptr, true, 0.1, 1e-5), nullptr);
  error_has("batch_norm", "running_var");
  EXPECT_EQ(loom_batch_norm(x, nullptr, nullptr, loom_ones(LOOM_SHAPE(4), LOOM_F32, loom_cpu()), nullptr, true, 0.1,
                            1e-5), nullptr);
  error_has("batch_norm", "weight of shape [3]");
  EXPECT_EQ(loom_group_norm(x, 2, nullptr, nullptr, 1e-5), nullptr);
  error_has("group_norm", "divide");
  static const int64_t ns[] = {5};
  EXPECT_EQ(loom_layer_norm(x, ns, 1, w, nullptr, 1e-5), nullptr);
  error_has("layer_norm", "weight");
  EXPECT_EQ(loom_instance_norm(x, nullptr, nullptr, nullptr, nullptr, true, 0.1, -1), nullptr);
  error_has("instance_norm", "eps");
  EXPECT_EQ(loom_batch_norm(nullptr, nullptr, nullptr, nullptr, nullptr, true, 0.1, 1e-5), nullptr);
  EXPECT_EQ(loom_layer_norm(nullptr, ns, 1, nullptr, nullptr, 1e-5), nullptr);
}

// ---- autocast: f16 / bf16 input is normalised in f32 ----

TEST(NormAutocast, HalfInputRunsInF32) {
  ScopeGuard scope;
  loom_module *m = loom_nn_batch_norm2d(3, nullptr);
  const int64_t ns[] = {4};
  loom_module *ln = loom_nn_layer_norm(ns, 1, nullptr);
  loom_tensor *x = loom_to_dtype(loom_randn(LOOM_SHAPE(2, 3, 4, 4), LOOM_F32, loom_cpu()), LOOM_BF16);
  loom_tensor *x32 = loom_to_dtype(x, LOOM_F32);
  loom_tensor *ref = loom_forward(m, x32), *lref = loom_forward(ln, x32);
  ASSERT_EQ(loom_autocast_begin(LOOM_CPU, LOOM_BF16), 0);
  loom_tensor *y = loom_forward(m, x), *ly = loom_forward(ln, x);
  ASSERT_EQ(loom_autocast_end(), 0);
  ASSERT_NE(y, nullptr) << loom_last_error();
  ASSERT_NE(ly, nullptr) << loom_last_error();
  EXPECT_EQ(loom_dtype_of(y), LOOM_F32);
  EXPECT_EQ(loom_dtype_of(ly), LOOM_F32);
  EXPECT_LE(rel_err(y, ref), 1e-6);
  EXPECT_LE(rel_err(ly, lref), 1e-6);
  loom_module_free(m);
  loom_module_free(ln);
}

// ---- CUDA against the CPU ----

namespace {

// Builds the same module twice (CPU f32 and `dev`/`dt`), runs two training
// steps and an eval step on the same inputs, and compares outputs, input and
// parameter gradients, and buffers.
void compare_devices(const std::function<loom_module *()> &make, loom_shape xs, loom_dtype dt, double tol) {
  SCOPED_TRACE(loom_dtype_name(dt));
  ScopeGuard scope;
  loom_module *a = make(), *b = make();
  ASSERT_NE(a, nullptr) << loom_last_error();
  SCOPED_TRACE(loom_module_type(a));
  loom_named_tensors *pa = loom_module_named_parameters(a), *pb = loom_module_named_parameters(b);
  for (int i = 0; i < pa->n; i++) {  // distinct, non-trivial affine parameters
    loom_copy_(pa->tensors[i], loom_add_scalar(loom_randn(loom_shape_of(pa->tensors[i]), LOOM_F32, loom_cpu()), 1));
    loom_copy_(pb->tensors[i], pa->tensors[i]);
  }
  ASSERT_EQ(loom_module_to_device(b, loom_cuda(0)), 0) << loom_last_error();
  ASSERT_EQ(loom_module_to_dtype(b, dt), 0) << loom_last_error();
  for (int step = 0; step < 3; step++) {
    bool train = step < 2;
    loom_module_train(a, train);
    loom_module_train(b, train);
    loom_module_zero_grad(a);
    loom_module_zero_grad(b);
    // inputs rounded to dt so both sides see the same numbers
    loom_tensor *xd = loom_to(loom_add_scalar(loom_randn(xs, LOOM_F32, loom_cpu()), step), loom_cuda(0), dt);
    loom_tensor *xc = loom_to(xd, loom_cpu(), LOOM_F32);
    loom_set_requires_grad(xd, true);
    loom_set_requires_grad(xc, true);
    loom_tensor *ya = loom_forward(a, xc), *yb = loom_forward(b, xd);
    ASSERT_NE(ya, nullptr) << loom_last_error();
    ASSERT_NE(yb, nullptr) << loom_last_error();
    EXPECT_EQ(loom_device_of(yb).type, LOOM_CUDA);
    EXPECT_LE(rel_err(yb, ya), tol) << "output, step " << step;
    loom_tensor *gy = loom_randn(loom_shape_of(ya), LOOM_F32, loom_cpu());
    ASSERT_EQ(loom_backward(loom_sum(loom_mul(ya, gy), nullptr, 0, false), nullptr, false), 0) << loom_last_error();
    ASSERT_EQ(loom_backward(loom_sum(loom_mul(yb, loom_to(gy, loom_cuda(0), dt)), nullptr, 0, false), nullptr, false), 0)
        << loom_last_error();
    EXPECT_LE(rel_err(loom_grad(xd), loom_grad(xc)), tol) << "dx, step " << step;
    for (int i = 0; i < pa->n; i++)
      EXPECT_LE(rel_err(loom_grad(pb->tensors[i]), loom_grad(pa->tensors[i])), tol) << pa->names[i] << ", step " << step;
    loom_named_tensors *ba = loom_module_named_buffers(a), *bb = loom_module_named_buffers(b);
    for (int i = 0; i < ba->n; i++)
      EXPECT_LE(rel_err(bb->tensors[i], ba->tensors[i]), tol) << ba->names[i] << ", step " << step;
    loom_named_tensors_free(ba);
    loom_named_tensors_free(bb);
  }
  loom_named_tensors_free(pa);
  loom_named_tensors_free(pb);
  loom_module_free(a);
  loom_module_free(b);
}

}  // namespace

TEST(NormCuda, ModulesMatchCpu) {
  LOOM_REQUIRE_GPU();
  loom_set_tf32(false);
  static const int64_t ns1[] = {64}, ns2[] = {8, 33};
  loom_instance_norm_options it = {};
  it.affine = true;
  it.track_running_stats = true;
  loom_batch_norm_options cma = {};
  cma.momentum = NAN;
  struct Case { std::function<loom_module *()> make; loom_shape xs; };
  std::vector<Case> cases = {
      {[] { return loom_nn_batch_norm2d(16, nullptr); }, LOOM_SHAPE(8, 16, 12, 12)},
      {[cma] { return loom_nn_batch_norm2d(3, &cma); }, LOOM_SHAPE(5, 3, 7, 9)},
      {[] { return loom_nn_batch_norm1d(10, nullptr); }, LOOM_SHAPE(32, 10)},
      {[] { return loom_nn_batch_norm1d(6, nullptr); }, LOOM_SHAPE(4, 6, 50)},
      {[] { return loom_nn_layer_norm(ns1, 1, nullptr); }, LOOM_SHAPE(300, 64)},
      {[] { return loom_nn_layer_norm(ns2, 2, nullptr); }, LOOM_SHAPE(3, 8, 33)},
      {[] { return loom_nn_group_norm(4, 32, nullptr); }, LOOM_SHAPE(3, 32, 9, 9)},
      {[] { return loom_nn_instance_norm1d(5, nullptr); }, LOOM_SHAPE(4, 5, 40)},
      {[it] { return loom_nn_instance_norm2d(4, &it); }, LOOM_SHAPE(3, 4, 10, 10)},
  };
  for (const Case &c : cases) {
    compare_devices(c.make, c.xs, LOOM_F32, 1e-4);
    compare_devices(c.make, c.xs, LOOM_F16, 1e-2);
    compare_devices(c.make, c.xs, LOOM_BF16, 2e-2);
  }
}

TEST(NormCuda, DeviceMismatchIsAnError) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  loom_module *m = loom_nn_batch_norm2d(3, nullptr);
  EXPECT_EQ(loom_forward(m, loom_randn(LOOM_SHAPE(2, 3, 4, 4), LOOM_F32, loom_cuda(0))), nullptr);
  error_has("BatchNorm2d", "cuda");
  loom_module_free(m);
}
