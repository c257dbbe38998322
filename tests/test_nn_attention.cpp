// Scaled dot-product attention (functional): PyTorch fixtures
// (tools/fixtures/gen_attention.py), fused vs composed path, gradchecks,
// dropout, CUDA vs CPU and bad input. Modules are in test_nn_attention_modules.cpp.
#include <cmath>
#include <limits>
#include <string>

#include "loom_test.h"

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

loom_tensor *sdpa(const loom_tensor *q, const loom_tensor *k, const loom_tensor *v, const loom_tensor *mask,
                  bool causal = false, double scale = kNaN) {
  return loom_scaled_dot_product_attention(q, k, v, mask, 0, causal, scale);
}

struct Variant {
  const char *name;
  const char *mask;  // fixture key or nullptr
  bool causal;
  double scale;
};
const Variant kVariants[] = {{"plain", nullptr, false, kNaN},
                             {"bool", "bmask", false, kNaN},
                             {"float", "fmask", false, kNaN},
                             {"causal", nullptr, true, kNaN},
                             {"scale", nullptr, false, 0.3}};

// Runs every fixture variant on dev in dtype dt; checks outputs and q/k/v gradients.
void check_fixture(bool fused, loom_device dev, loom_dtype dt, double tol) {
  Fixture fx("attention_sdpa");
  ASSERT_TRUE(fx.ok());
  loom_sdpa_set_fused(fused);
  for (const Variant &var : kVariants) {
    SCOPED_TRACE(std::string(var.name) + (fused ? " fused" : " composed") + " " + loom_device_name(dev) + " " +
                 loom_dtype_name(dt));
    ScopeGuard scope;
    loom_tensor *in[3];
    const char *keys[3] = {"q", "k", "v"};
    for (int i = 0; i < 3; i++) {
      in[i] = loom_to(fx[keys[i]], dev, dt);
      ASSERT_EQ(loom_set_requires_grad(in[i], true), 0) << loom_last_error();
    }
    loom_tensor *mask = var.mask ? loom_to_device(fx[var.mask], dev) : nullptr;
    loom_tensor *out = sdpa(in[0], in[1], in[2], mask, var.causal, var.scale);
    ASSERT_NE(out, nullptr) << loom_last_error();
    EXPECT_TRUE(close(out, fx[std::string("out_") + var.name], tol));
    loom_tensor *loss = loom_sum(loom_mul(out, loom_to(fx["w"], dev, dt)), nullptr, 0, false);
    ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << loom_last_error();
    const char *gk[3] = {"dq_", "dk_", "dv_"};
    for (int i = 0; i < 3; i++) EXPECT_TRUE(close(loom_grad(in[i]), fx[gk[i] + std::string(var.name)], tol));
  }
  loom_sdpa_set_fused(true);
}

}  // namespace

TEST(Sdpa, MatchesPyTorchFused) { check_fixture(true, loom_cpu(), LOOM_F64, 1e-10); }
TEST(Sdpa, MatchesPyTorchComposed) { check_fixture(false, loom_cpu(), LOOM_F64, 1e-10); }
TEST(Sdpa, MatchesPyTorchF32) { check_fixture(true, loom_cpu(), LOOM_F32, 1e-5); }

TEST(Sdpa, FullyMaskedRowGivesZeros) {
  ScopeGuard scope;
  Fixture fx("attention_sdpa");
  loom_tensor *out = sdpa(fx["q"], fx["k"], fx["v"], fx["bmask"]);
  ASSERT_NE(out, nullptr) << loom_last_error();
  loom_tensor *row = loom_select(out, 2, 3);  // bmask row 3 is all false
  for (double x : V(row)) EXPECT_EQ(x, 0.0);
}

// Unbatched [L, E] inputs and a non-contiguous (transposed) q, against the composed path.
TEST(Sdpa, ShapesAndStridesMatchComposed) {
  ScopeGuard scope;
  loom_manual_seed(7);
  loom_tensor *q = loom_transpose(loom_randn(LOOM_SHAPE(3, 6, 2, 5), LOOM_F64, loom_cpu()), 1, 2);  // [3, 2, 6, 5]
  loom_tensor *k = loom_randn(LOOM_SHAPE(3, 2, 9, 5), LOOM_F64, loom_cpu());
  loom_tensor *v = loom_randn(LOOM_SHAPE(3, 2, 9, 4), LOOM_F64, loom_cpu());
  loom_tensor *kpm = loom_gt(loom_rand(LOOM_SHAPE(3, 1, 1, 9), LOOM_F64, loom_cpu()),
                             loom_scalar_like(k, 0.3));  // a key-padding style bool mask
  for (bool causal : {false, true}) {
    loom_tensor *a = sdpa(q, k, v, kpm, causal);
    loom_sdpa_set_fused(false);
    loom_tensor *b = sdpa(q, k, v, kpm, causal);
    loom_sdpa_set_fused(true);
    ASSERT_NE(a, nullptr) << loom_last_error();
    ASSERT_NE(b, nullptr) << loom_last_error();
    EXPECT_LE(rel_err(a, b), 1e-12);
  }
  loom_tensor *q2 = loom_randn(LOOM_SHAPE(4, 5), LOOM_F64, loom_cpu());
  loom_tensor *k2 = loom_randn(LOOM_SHAPE(7, 5), LOOM_F64, loom_cpu());
  loom_tensor *v2 = loom_randn(LOOM_SHAPE(7, 3), LOOM_F64, loom_cpu());
  loom_tensor *o2 = sdpa(q2, k2, v2, nullptr);
  ASSERT_NE(o2, nullptr) << loom_last_error();
  EXPECT_EQ(loom_ndim(o2), 2);
  loom_tensor *ref = loom_matmul(loom_softmax(loom_mul_scalar(loom_matmul(q2, loom_transpose(k2, 0, 1)), 1 / std::sqrt(5.0)), -1), v2);
  EXPECT_LE(rel_err(o2, ref), 1e-12);
}

TEST(Sdpa, Gradcheck) {
  ScopeGuard scope;
  loom_manual_seed(3);
  std::vector<loom_tensor *> in = {loom_randn(LOOM_SHAPE(2, 4, 3, 4), LOOM_F64, loom_cpu()),
                                   loom_randn(LOOM_SHAPE(2, 2, 5, 4), LOOM_F64, loom_cpu()),
                                   loom_randn(LOOM_SHAPE(2, 2, 5, 3), LOOM_F64, loom_cpu())};
  for (loom_tensor *t : in) loom_set_requires_grad(t, true);
  loom_tensor *fmask = loom_randn(LOOM_SHAPE(3, 5), LOOM_F64, loom_cpu());
  for (bool fused : {true, false}) {
    loom_sdpa_set_fused(fused);
    EXPECT_TRUE(gradcheck([&](const std::vector<loom_tensor *> &x) { return sdpa(x[0], x[1], x[2], fmask, true, 0.7); },
                          in));
    EXPECT_TRUE(gradcheck([&](const std::vector<loom_tensor *> &x) { return sdpa(x[0], x[1], x[2], nullptr); }, in));
  }
  loom_sdpa_set_fused(true);
}

// v = 1 makes every output 1 without dropout; with dropout it averages 1 (inverted scaling).
TEST(Sdpa, DropoutKeepsTheMean) {
  ScopeGuard scope;
  loom_manual_seed(11);
  loom_tensor *q = loom_randn(LOOM_SHAPE(1, 128, 4), LOOM_F32, loom_cpu());
  loom_tensor *k = loom_randn(LOOM_SHAPE(1, 128, 4), LOOM_F32, loom_cpu());
  loom_tensor *v = loom_ones(LOOM_SHAPE(1, 128, 1), LOOM_F32, loom_cpu());
  loom_tensor *a = loom_scaled_dot_product_attention(q, k, v, nullptr, 0.5, false, kNaN);
  ASSERT_NE(a, nullptr) << loom_last_error();
  std::vector<double> x = V(a);
  double mean = 0;
  bool varies = false;
  for (double e : x) mean += e / (double)x.size(), varies = varies || std::fabs(e - 1) > 1e-3;
  EXPECT_NEAR(mean, 1.0, 0.05);
  EXPECT_TRUE(varies);
  for (double e : V(sdpa(q, k, v, nullptr))) EXPECT_NEAR(e, 1.0, 1e-5);
}

TEST(Sdpa, BadInput) {
  ScopeGuard scope;
  loom_tensor *q = loom_zeros(LOOM_SHAPE(2, 4, 5, 8), LOOM_F32, loom_cpu());
  loom_tensor *k = loom_zeros(LOOM_SHAPE(2, 2, 7, 8), LOOM_F32, loom_cpu());
  loom_tensor *v = loom_zeros(LOOM_SHAPE(2, 2, 7, 6), LOOM_F32, loom_cpu());
  auto expect_error = [](loom_tensor *out, const char *what) {
    EXPECT_EQ(out, nullptr);
    std::string e = loom_last_error();
    EXPECT_NE(e.find("scaled_dot_product_attention"), std::string::npos) << e;
    EXPECT_NE(e.find(what), std::string::npos) << e;
  };
  expect_error(sdpa(q, loom_zeros(LOOM_SHAPE(2, 2, 7, 3), LOOM_F32, loom_cpu()), v, nullptr), "expected k");
  expect_error(sdpa(q, loom_zeros(LOOM_SHAPE(2, 7, 8), LOOM_F32, loom_cpu()), v, nullptr), "rank");
  expect_error(sdpa(q, loom_zeros(LOOM_SHAPE(2, 3, 7, 8), LOOM_F32, loom_cpu()),
                    loom_zeros(LOOM_SHAPE(2, 3, 7, 6), LOOM_F32, loom_cpu()), nullptr),
               "multiple");
  expect_error(sdpa(q, loom_to_dtype(k, LOOM_F64), v, nullptr), "dtype");
  expect_error(sdpa(q, k, v, loom_zeros(LOOM_SHAPE(5, 6), LOOM_BOOL, loom_cpu())), "attn_mask");
  expect_error(sdpa(q, k, v, loom_zeros(LOOM_SHAPE(5, 7), LOOM_I64, loom_cpu())), "attn_mask");
  expect_error(loom_scaled_dot_product_attention(q, k, v, nullptr, 1.0, false, kNaN), "dropout_p");
  EXPECT_EQ(sdpa(q, k, nullptr, nullptr), nullptr);
  if (has_gpu()) expect_error(sdpa(q, loom_to_device(k, loom_cuda(0)), v, nullptr), "device");
}

TEST(Sdpa, CudaMatchesCpu) {
  LOOM_REQUIRE_GPU();
  loom_set_tf32(false);
  check_fixture(true, loom_cuda(0), LOOM_F32, 1e-5);
  check_fixture(false, loom_cuda(0), LOOM_F32, 1e-5);
  check_fixture(true, loom_cuda(0), LOOM_F16, 3e-3);
  check_fixture(true, loom_cuda(0), LOOM_BF16, 2e-2);
  // longer sequences, several key tiles, head dim 128, causal and padding masks
  ScopeGuard scope;
  loom_manual_seed(5);
  loom_tensor *q = loom_randn(LOOM_SHAPE(2, 4, 77, 128), LOOM_F32, loom_cpu());
  loom_tensor *k = loom_randn(LOOM_SHAPE(2, 1, 100, 128), LOOM_F32, loom_cpu());
  loom_tensor *v = loom_randn(LOOM_SHAPE(2, 1, 100, 64), LOOM_F32, loom_cpu());
  loom_tensor *mask = loom_gt(loom_rand(LOOM_SHAPE(2, 1, 1, 100), LOOM_F32, loom_cpu()), loom_scalar_like(q, 0.2));
  loom_tensor *w = loom_randn(LOOM_SHAPE(2, 4, 77, 64), LOOM_F32, loom_cpu());
  for (bool causal : {false, true}) {
    std::vector<loom_tensor *> grads[2];
    loom_tensor *outs[2];
    for (int d = 0; d < 2; d++) {
      loom_device dev = d ? loom_cuda(0) : loom_cpu();
      loom_tensor *x[3] = {loom_to_device(q, dev), loom_to_device(k, dev), loom_to_device(v, dev)};
      for (loom_tensor *t : x) loom_set_requires_grad(t, true);
      outs[d] = sdpa(x[0], x[1], x[2], loom_to_device(mask, dev), causal, kNaN);
      ASSERT_NE(outs[d], nullptr) << loom_last_error();
      ASSERT_EQ(loom_backward(outs[d], loom_to_device(w, dev), false), 0) << loom_last_error();
      for (loom_tensor *t : x) grads[d].push_back(loom_grad(t));
    }
    EXPECT_LE(rel_err(outs[1], outs[0]), 1e-5);
    for (int i = 0; i < 3; i++) EXPECT_LE(rel_err(grads[1][(size_t)i], grads[0][(size_t)i]), 1e-5) << "grad " << i;
  }
}
