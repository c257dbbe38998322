// Losses on CUDA against the CPU (forward and gradients; f32, f16, bf16), and
// device mismatches. Skips itself without a GPU.
#include "loom_test.h"

#include <string>

namespace {

loom_tensor *leaf(loom_tensor *t) {
  EXPECT_EQ(loom_set_requires_grad(t, true), 0);
  return t;
}

::testing::AssertionResult fails_with(loom_tensor *out, const std::string &what) {
  if (out) return ::testing::AssertionFailure() << "returned a tensor, expected an error mentioning " << what;
  std::string msg = loom_last_error();
  if (msg.find(what) == std::string::npos)
    return ::testing::AssertionFailure() << "error \"" << msg << "\" does not mention " << what;
  return ::testing::AssertionSuccess();
}

}  // namespace

// ---- CUDA against the CPU ----

namespace {

using Loss2 = std::function<loom_tensor *(loom_tensor *x, loom_tensor *t, loom_device dev)>;

// Runs f on CPU (f32) and CUDA (dt) on the same values; compares the loss and the grads of x
// (and of t when it is float).
void cuda_vs_cpu(const char *name, const Loss2 &f, loom_tensor *x, loom_tensor *t, loom_dtype dt, double tol) {
  SCOPED_TRACE(std::string(name) + " " + loom_dtype_name(dt));
  ScopeGuard scope;
  bool tf = loom_dtype_is_float(loom_dtype_of(t));
  // the CPU runs in f32 on the values rounded to dt, so only the computation differs
  auto rounded = [dt](loom_tensor *a) { return loom_to_dtype(loom_to_dtype(a, dt), LOOM_F32); };
  loom_tensor *xs[2] = {rounded(x), loom_to(x, loom_cuda(0), dt)};
  loom_tensor *ts[2] = {tf ? rounded(t) : loom_clone(t), loom_to(t, loom_cuda(0), tf ? dt : loom_dtype_of(t))};
  loom_tensor *outs[2];
  for (int k = 0; k < 2; k++) {
    leaf(xs[k]);
    if (tf) leaf(ts[k]);
    outs[k] = f(xs[k], ts[k], loom_device_of(xs[k]));
    ASSERT_NE(outs[k], nullptr) << loom_last_error();
    loom_tensor *g = loom_ndim(outs[k]) ? loom_sum(loom_mul(outs[k], outs[k]), nullptr, 0, false) : outs[k];
    ASSERT_EQ(loom_backward(g, nullptr, false), 0) << loom_last_error();
  }
  EXPECT_EQ(loom_device_of(outs[1]).type, LOOM_CUDA);
  EXPECT_LE(rel_err(outs[1], outs[0]), tol) << "loss";
  EXPECT_LE(rel_err(loom_grad(xs[1]), loom_grad(xs[0])), tol) << "grad of x";
  if (tf) EXPECT_LE(rel_err(loom_grad(ts[1]), loom_grad(ts[0])), tol) << "grad of target";
}

}  // namespace

TEST(LossesCuda, MatchesCpu) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  loom_manual_seed(3);
  loom_tensor *x = loom_mul_scalar(loom_randn(LOOM_SHAPE(16, 10, 3), LOOM_F32, loom_cpu()), 2);
  loom_tensor *t = loom_randint(0, 10, LOOM_SHAPE(16, 3), LOOM_I64, loom_cpu());
  t = loom_where(loom_lt(t, loom_scalar_like(t, 1)), loom_scalar_like(t, -100), t);
  loom_tensor *w = loom_add_scalar(loom_rand(LOOM_SHAPE(10), LOOM_F32, loom_cpu()), 0.5);
  loom_tensor *p = loom_softmax(loom_randn(LOOM_SHAPE(16, 10, 3), LOOM_F32, loom_cpu()), 1);
  loom_tensor *big = loom_mul_scalar(loom_randn(LOOM_SHAPE(8, 5000), LOOM_F32, loom_cpu()), 4);
  loom_tensor *bigt = loom_randint(0, 5000, LOOM_SHAPE(8), LOOM_I64, loom_cpu());
  auto ce = [w](bool fused, double s, loom_reduction r) -> Loss2 {
    return [=](loom_tensor *x, loom_tensor *t, loom_device dev) {
      loom_cross_entropy_opts o = {loom_to(w, dev, loom_dtype_of(x)), false, 0, s, r};
      return fused ? loom_cross_entropy(x, t, &o) : loom_cross_entropy_unfused(x, t, &o);
    };
  };
  for (loom_dtype dt : {LOOM_F32, LOOM_F16, LOOM_BF16}) {
    double tol = dt == LOOM_F32 ? 1e-5 : dt == LOOM_F16 ? 1e-2 : 3e-2;
    cuda_vs_cpu("cross_entropy", ce(true, 0.1, LOOM_REDUCTION_MEAN), x, t, dt, tol);
    cuda_vs_cpu("cross_entropy none", ce(true, 0, LOOM_REDUCTION_NONE), x, t, dt, tol);
    cuda_vs_cpu("cross_entropy 5000 classes", ce(true, 0.1, LOOM_REDUCTION_SUM), big, bigt, dt, tol);
    cuda_vs_cpu("cross_entropy composed", ce(false, 0.1, LOOM_REDUCTION_MEAN), x, t, dt, tol);
    cuda_vs_cpu("cross_entropy probabilities", ce(true, 0.1, LOOM_REDUCTION_MEAN), x, p, dt, tol);
  }
  loom_tensor *y = loom_randn(LOOM_SHAPE(6, 7), LOOM_F32, loom_cpu()), *z = loom_randn(LOOM_SHAPE(6, 7), LOOM_F32, loom_cpu());
  loom_tensor *pr = loom_sigmoid(y), *q = loom_rand(LOOM_SHAPE(6, 7), LOOM_F32, loom_cpu());
  loom_tensor *pw = loom_add_scalar(loom_rand(LOOM_SHAPE(7), LOOM_F32, loom_cpu()), 0.5);
  Loss2 mse = [](loom_tensor *a, loom_tensor *b, loom_device) { return loom_mse_loss(a, b, LOOM_REDUCTION_MEAN); };
  Loss2 l1 = [](loom_tensor *a, loom_tensor *b, loom_device) { return loom_l1_loss(a, b, LOOM_REDUCTION_SUM); };
  Loss2 sl1 = [](loom_tensor *a, loom_tensor *b, loom_device) { return loom_smooth_l1_loss(a, b, 0.5, LOOM_REDUCTION_NONE); };
  Loss2 hub = [](loom_tensor *a, loom_tensor *b, loom_device) { return loom_huber_loss(a, b, 0.7, LOOM_REDUCTION_MEAN); };
  Loss2 bce = [](loom_tensor *a, loom_tensor *b, loom_device) { return loom_bce_loss(a, b, nullptr, LOOM_REDUCTION_MEAN); };
  Loss2 bcel = [pw](loom_tensor *a, loom_tensor *b, loom_device dev) {
    return loom_bce_with_logits(a, b, nullptr, loom_to(pw, dev, loom_dtype_of(a)), LOOM_REDUCTION_MEAN);
  };
  Loss2 kl = [](loom_tensor *a, loom_tensor *b, loom_device) { return loom_kl_div(a, b, LOOM_REDUCTION_BATCHMEAN, false); };
  Loss2 klog = [](loom_tensor *a, loom_tensor *b, loom_device) { return loom_kl_div(a, b, LOOM_REDUCTION_SUM, true); };
  loom_tensor *lp = loom_log_softmax(y, 1), *lq = loom_log_softmax(z, 1);
  for (loom_dtype dt : {LOOM_F32, LOOM_BF16}) {
    double tol = dt == LOOM_F32 ? 1e-5 : 3e-2;
    cuda_vs_cpu("mse_loss", mse, y, z, dt, tol);
    cuda_vs_cpu("l1_loss", l1, y, z, dt, tol);
    cuda_vs_cpu("smooth_l1_loss", sl1, y, z, dt, tol);
    cuda_vs_cpu("huber_loss", hub, y, z, dt, tol);
    cuda_vs_cpu("smooth_l1_loss broadcast target", sl1, y, loom_select(z, 0, 2), dt, tol);
    cuda_vs_cpu("bce_loss", bce, pr, q, dt, tol);
    cuda_vs_cpu("bce_with_logits", bcel, y, q, dt, tol);
    cuda_vs_cpu("kl_div", kl, lp, loom_softmax(z, 1), dt, tol);
    cuda_vs_cpu("kl_div log_target", klog, lp, lq, dt, tol);
  }
}

TEST(LossesCuda, BadDevice) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  loom_tensor *x = T({1, 2, 3, 4, 5, 6}, LOOM_SHAPE(2, 3)), *t = T({0, 2}, LOOM_SHAPE(2), LOOM_I64);
  EXPECT_TRUE(fails_with(loom_cross_entropy(loom_to_device(x, loom_cuda(0)), t, nullptr), "cross_entropy"));
  EXPECT_TRUE(fails_with(loom_mse_loss(loom_to_device(x, loom_cuda(0)), x, LOOM_REDUCTION_MEAN), "mse_loss"));
  loom_cross_entropy_opts o = {};
  o.weight = T({1, 2, 3}, LOOM_SHAPE(3));
  EXPECT_TRUE(fails_with(loom_cross_entropy(loom_to_device(x, loom_cuda(0)), loom_to_device(t, loom_cuda(0)), &o),
                         "cross_entropy"));
  // the range check works on device targets too
  EXPECT_TRUE(fails_with(loom_cross_entropy(loom_to_device(x, loom_cuda(0)),
                                            loom_to_device(T({0, 7}, LOOM_SHAPE(2), LOOM_I64), loom_cuda(0)), nullptr),
                         "out of range"));
}
