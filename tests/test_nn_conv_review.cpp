// Review fixes for the conv family: each test fails without its fix.
#include "loom_test.h"

#include <omp.h>

#include <vector>

namespace {

// dW of conv2d(x, w) with sum() as the loss, as host doubles.
std::vector<double> weight_grad(loom_tensor *x, loom_tensor *w0) {
  ScopeGuard scope;
  loom_tensor *w = loom_clone(w0);
  EXPECT_EQ(loom_set_requires_grad(w, true), 0);
  loom_tensor *y = loom_conv2d(x, w, nullptr, nullptr);
  EXPECT_NE(y, nullptr) << loom_last_error();
  if (!y) return {};
  EXPECT_EQ(loom_backward(loom_sum(y, nullptr, 0, false), nullptr, false), 0) << loom_last_error();
  loom_tensor *g = loom_contiguous(loom_grad(w));
  std::vector<double> out(loom_numel(g));
  EXPECT_EQ(loom_to_host(g, out.data(), out.size() * sizeof(double)), 0) << loom_last_error();
  return out;
}

}  // namespace

// The CPU weight gradient split the batch by the number of threads asked for;
// when OpenMP ran a smaller team (nested region, OMP_DYNAMIC, thread limit),
// the samples of the missing threads were skipped and their never-written
// partial buffers summed in. Here the team is forced down to one thread.
TEST(ConvReview, WeightGradientWithSmallerOpenMPTeam) {
  ScopeGuard scope;
  loom_tensor *x = loom_randn(LOOM_SHAPE(4, 2, 5, 5), LOOM_F64, loom_cpu());
  loom_tensor *w = loom_randn(LOOM_SHAPE(3, 2, 3, 3), LOOM_F64, loom_cpu());
  ASSERT_TRUE(x && w) << loom_last_error();
  int threads = loom_num_threads(), levels = omp_get_max_active_levels();
  loom_set_num_threads(4);
  std::vector<double> ref = weight_grad(x, w);
  omp_set_max_active_levels(0);  // every parallel region now runs one thread
  bool forced = omp_get_max_active_levels() == 0;
  std::vector<double> got = weight_grad(x, w);
  omp_set_max_active_levels(levels);
  loom_set_num_threads(threads);
  if (!forced) GTEST_SKIP() << "this OpenMP runtime does not take max_active_levels = 0";
  ASSERT_EQ(ref.size(), got.size());
  ASSERT_FALSE(ref.empty());
  for (size_t i = 0; i < ref.size(); i++) EXPECT_NEAR(got[i], ref[i], 1e-9) << "element " << i;
}
