// Autocast regions: matmul / bmm / addmm run in the region's dtype, the casts
// are recorded so f32 leaves get f32 gradients, and regions nest per thread.
#include <thread>

#include "loom_test.h"

namespace {

TEST(Autocast, MatmulRunsInRegionDtypeAndGradsStayF32) {
  ScopeGuard scope;
  loom_manual_seed(11);
  loom_tensor *a = loom_randn(LOOM_SHAPE(4, 8), LOOM_F32, loom_cpu()), *w = loom_randn(LOOM_SHAPE(8, 3), LOOM_F32, loom_cpu());
  loom_set_requires_grad(a, true);
  loom_set_requires_grad(w, true);
  loom_tensor *ref = loom_matmul(a, w);
  EXPECT_EQ(loom_autocast_dtype(LOOM_CPU), LOOM_DTYPE_COUNT);
  for (loom_dtype dt : {LOOM_BF16, LOOM_F16}) {
    SCOPED_TRACE(loom_dtype_name(dt));
    ASSERT_EQ(loom_autocast_begin(LOOM_CPU, dt), 0);
    EXPECT_EQ(loom_autocast_dtype(LOOM_CPU), dt);
    loom_tensor *y = loom_matmul(a, w);
    ASSERT_NE(y, nullptr) << loom_last_error();
    EXPECT_EQ(loom_dtype_of(y), dt);
    EXPECT_LT(rel_err(y, ref), dt == LOOM_BF16 ? 2e-2 : 2e-3);
    ASSERT_EQ(loom_autocast_end(), 0);
    loom_zero_grad(a);
    loom_zero_grad(w);
    ASSERT_EQ(loom_backward(loom_sum(loom_to_dtype(y, LOOM_F32), nullptr, 0, false), nullptr, false), 0)
        << loom_last_error();
    ASSERT_NE(loom_grad(w), nullptr);
    EXPECT_EQ(loom_dtype_of(loom_grad(w)), LOOM_F32);
    EXPECT_EQ(loom_dtype_of(loom_grad(a)), LOOM_F32);
    // d(sum(a @ w))/dw[k][j] = sum_i a[i][k]
    static const int dim0[] = {0};
    loom_tensor *want = loom_expand(loom_unsqueeze(loom_sum(a, dim0, 1, false), 1), LOOM_SHAPE(8, 3));
    EXPECT_LT(rel_err(loom_grad(w), want), dt == LOOM_BF16 ? 2e-2 : 2e-3);
  }
}

TEST(Autocast, BmmAddmmAndUntouchedDtypes) {
  ScopeGuard scope;
  loom_tensor *x = loom_ones(LOOM_SHAPE(2, 3, 4), LOOM_F32, loom_cpu()), *y = loom_ones(LOOM_SHAPE(2, 4, 5), LOOM_F32, loom_cpu());
  loom_tensor *m1 = loom_ones(LOOM_SHAPE(3, 4), LOOM_F32, loom_cpu()), *m2 = loom_ones(LOOM_SHAPE(4, 2), LOOM_F32, loom_cpu());
  loom_tensor *bias = loom_ones(LOOM_SHAPE(2), LOOM_F32, loom_cpu());
  loom_tensor *d = loom_ones(LOOM_SHAPE(3, 4), LOOM_F64, loom_cpu()), *d2 = loom_ones(LOOM_SHAPE(4, 2), LOOM_F64, loom_cpu());
  ASSERT_EQ(loom_autocast_begin(LOOM_CPU, LOOM_BF16), 0);
  loom_tensor *b = loom_bmm(x, y), *am = loom_addmm(bias, m1, m2, 1, 2), *dd = loom_matmul(d, d2);
  ASSERT_TRUE(b && am && dd) << loom_last_error();
  EXPECT_EQ(loom_dtype_of(b), LOOM_BF16);
  EXPECT_EQ(loom_dtype_of(am), LOOM_BF16);
  EXPECT_EQ(V(am)[0], 1 + 2 * 4.0);
  EXPECT_EQ(loom_dtype_of(dd), LOOM_F64);  // f64 is left alone, as PyTorch does
  // a region for CUDA does not touch CPU ops
  ASSERT_EQ(loom_autocast_begin(LOOM_CUDA, LOOM_F16), 0);
  EXPECT_EQ(loom_autocast_dtype(LOOM_CUDA), LOOM_F16);
  EXPECT_EQ(loom_dtype_of(loom_matmul(m1, m2)), LOOM_BF16);
  ASSERT_EQ(loom_autocast_end(), 0);
  ASSERT_EQ(loom_autocast_end(), 0);
  EXPECT_EQ(loom_dtype_of(loom_matmul(m1, m2)), LOOM_F32);
}

TEST(Autocast, NestsAndIsPerThread) {
  ScopeGuard scope;
  loom_tensor *m = loom_ones(LOOM_SHAPE(2, 2), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_autocast_begin(LOOM_CPU, LOOM_BF16), 0);
  ASSERT_EQ(loom_autocast_begin(LOOM_CPU, LOOM_F32), 0);   // off inside
  EXPECT_EQ(loom_autocast_dtype(LOOM_CPU), LOOM_DTYPE_COUNT);
  EXPECT_EQ(loom_dtype_of(loom_matmul(m, m)), LOOM_F32);
  ASSERT_EQ(loom_autocast_begin(LOOM_CPU, LOOM_F16), 0);
  EXPECT_EQ(loom_dtype_of(loom_matmul(m, m)), LOOM_F16);
  ASSERT_EQ(loom_autocast_end(), 0);
  ASSERT_EQ(loom_autocast_end(), 0);
  EXPECT_EQ(loom_autocast_dtype(LOOM_CPU), LOOM_BF16);
  loom_dtype other = LOOM_F32;
  std::thread t([&other] { other = loom_autocast_dtype(LOOM_CPU); });
  t.join();
  EXPECT_EQ(other, LOOM_DTYPE_COUNT);
  ASSERT_EQ(loom_autocast_end(), 0);
  EXPECT_EQ(loom_autocast_dtype(LOOM_CPU), LOOM_DTYPE_COUNT);
}

TEST(Autocast, BadInput) {
  EXPECT_NE(loom_autocast_end(), 0);
  EXPECT_NE(std::string(loom_last_error()).find("autocast_end"), std::string::npos);
  EXPECT_NE(loom_autocast_begin(LOOM_CPU, LOOM_I32), 0);
  EXPECT_NE(std::string(loom_last_error()).find("autocast_begin"), std::string::npos);
  EXPECT_NE(loom_autocast_begin((loom_device_type)7, LOOM_F16), 0);
  EXPECT_EQ(loom_autocast_dtype(LOOM_CPU), LOOM_DTYPE_COUNT);  // failed begins open nothing
}

TEST(Autocast, CudaMatmulInHalf) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  loom_manual_seed(2);
  loom_tensor *a = loom_randn(LOOM_SHAPE(16, 32), LOOM_F32, loom_cuda(0)), *w = loom_randn(LOOM_SHAPE(32, 8), LOOM_F32, loom_cuda(0));
  loom_set_requires_grad(w, true);
  loom_tensor *ref = loom_matmul(a, w);
  for (loom_dtype dt : {LOOM_F16, LOOM_BF16}) {
    ASSERT_EQ(loom_autocast_begin(LOOM_CUDA, dt), 0);
    loom_tensor *y = loom_matmul(a, w);
    ASSERT_EQ(loom_autocast_end(), 0);
    ASSERT_NE(y, nullptr) << loom_last_error();
    EXPECT_EQ(loom_dtype_of(y), dt);
    EXPECT_LT(rel_err(y, ref), 2e-2);
    loom_zero_grad(w);
    ASSERT_EQ(loom_backward(loom_sum(y, nullptr, 0, false), nullptr, false), 0) << loom_last_error();
    EXPECT_EQ(loom_dtype_of(loom_grad(w)), LOOM_F32);
  }
}

}  // namespace
