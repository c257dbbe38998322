// Conv and pooling layers given bad input or options: NULL and an error that
// names the layer (or the functional op) and what was wrong; never a crash.
#include "loom_test.h"

#include <string>

namespace {

// Expects the call to have failed with a message containing every part.
::testing::AssertionResult failed_with(const void *result, std::initializer_list<const char *> parts) {
  if (result) return ::testing::AssertionFailure() << "call succeeded";
  std::string msg = loom_last_error();
  for (const char *p : parts)
    if (msg.find(p) == std::string::npos)
      return ::testing::AssertionFailure() << "error \"" << msg << "\" lacks \"" << p << "\"";
  return ::testing::AssertionSuccess();
}

loom_tensor *randn(loom_shape s, loom_dtype dt = LOOM_F32) { return loom_randn(s, dt, loom_cpu()); }

}  // namespace

TEST(ConvErrors, Conv2dModuleInputs) {
  ScopeGuard scope;
  loom_module *m = loom_nn_conv2d(3, 4, 3, 3, nullptr);
  ASSERT_NE(m, nullptr) << loom_last_error();
  EXPECT_TRUE(failed_with(loom_forward(m, randn(LOOM_SHAPE(2, 4, 8, 8))), {"Conv2d", "C = 3", "[2, 4, 8, 8]"}));
  EXPECT_TRUE(failed_with(loom_forward(m, randn(LOOM_SHAPE(1, 2, 3, 8, 8))), {"Conv2d", "[N, C, H, W]"}));
  EXPECT_TRUE(failed_with(loom_forward(m, randn(LOOM_SHAPE(8, 8))), {"Conv2d", "expected input"}));
  EXPECT_TRUE(failed_with(loom_forward(m, randn(LOOM_SHAPE(1, 3, 8, 8), LOOM_F64)), {"Conv2d", "f64", "f32"}));
  EXPECT_TRUE(failed_with(loom_forward(m, loom_ones(LOOM_SHAPE(1, 3, 8, 8), LOOM_I32, loom_cpu())), {"Conv2d"}));
  // kernel 3 does not fit a 2x2 input without padding
  EXPECT_TRUE(failed_with(loom_forward(m, randn(LOOM_SHAPE(1, 3, 2, 8))), {"Conv2d", "larger than the padded input"}));
  EXPECT_TRUE(failed_with(loom_forward(m, nullptr), {}));
  loom_module_free(m);
}

TEST(ConvErrors, FunctionalConv) {
  ScopeGuard scope;
  loom_tensor *x = randn(LOOM_SHAPE(1, 4, 6, 6)), *w = randn(LOOM_SHAPE(6, 2, 3, 3));
  loom_conv_opts g{};
  g.groups = 3;  // 4 input channels do not split into 3 groups
  EXPECT_TRUE(failed_with(loom_conv2d(x, w, nullptr, &g), {"conv2d", "groups"}));
  g.groups = 2;
  EXPECT_NE(loom_conv2d(x, w, nullptr, &g), nullptr) << loom_last_error();
  EXPECT_TRUE(failed_with(loom_conv2d(x, w, randn(LOOM_SHAPE(5)), &g), {"conv2d", "bias [6]"}));
  EXPECT_TRUE(failed_with(loom_conv2d(x, randn(LOOM_SHAPE(6, 2, 3)), nullptr, &g), {"conv2d", "weight"}));
  loom_conv_opts bad{};
  bad.stride[0] = -1;
  EXPECT_TRUE(failed_with(loom_conv2d(x, randn(LOOM_SHAPE(6, 4, 3, 3)), nullptr, &bad), {"conv2d", "negative"}));
  loom_conv_opts same{};
  same.same_padding = true, same.stride[0] = 2;
  EXPECT_TRUE(failed_with(loom_conv2d(x, randn(LOOM_SHAPE(6, 4, 3, 3)), nullptr, &same), {"conv2d", "'same'"}));
  loom_conv_opts mode{};
  mode.padding_mode = "reflect";
  EXPECT_NE(loom_conv2d(x, randn(LOOM_SHAPE(6, 4, 3, 3)), nullptr, &mode), nullptr) << loom_last_error();
  EXPECT_TRUE(failed_with(loom_conv_transpose2d(x, randn(LOOM_SHAPE(4, 2, 3, 3)), nullptr, &mode),
                          {"conv_transpose2d", "reflect"}));
  mode.padding[0] = mode.padding[1] = 6;  // reflect needs a pad below the size 6
  EXPECT_TRUE(failed_with(loom_conv2d(x, randn(LOOM_SHAPE(6, 4, 3, 3)), nullptr, &mode), {"conv2d", "reflect"}));
  mode.padding_mode = "mirror";
  EXPECT_TRUE(failed_with(loom_conv2d(x, randn(LOOM_SHAPE(6, 4, 3, 3)), nullptr, &mode), {"conv2d", "mirror"}));
  loom_conv_opts os{};
  os.stride[0] = os.stride[1] = 2, os.output_size[0] = os.output_size[1] = 20;
  EXPECT_TRUE(failed_with(loom_conv_transpose2d(x, randn(LOOM_SHAPE(4, 2, 3, 3)), nullptr, &os),
                          {"conv_transpose2d", "output_size", "13 to 14"}));
  os.output_size[0] = os.output_size[1] = 14;
  loom_tensor *t12 = loom_conv_transpose2d(x, randn(LOOM_SHAPE(4, 2, 3, 3)), nullptr, &os);
  ASSERT_NE(t12, nullptr) << loom_last_error();
  EXPECT_EQ(loom_size(t12, 2), 14);
  EXPECT_TRUE(failed_with(loom_conv2d(x, randn(LOOM_SHAPE(6, 4, 3, 3)), nullptr, &os), {"conv2d", "output_size"}));
  loom_conv_opts op{};
  op.output_padding[0] = 1;
  EXPECT_TRUE(failed_with(loom_conv2d(x, randn(LOOM_SHAPE(6, 4, 3, 3)), nullptr, &op), {"output_padding"}));
  EXPECT_TRUE(failed_with(loom_conv_transpose2d(x, randn(LOOM_SHAPE(4, 2, 3, 3)), nullptr, &op),
                          {"conv_transpose2d", "smaller than stride"}));
  EXPECT_TRUE(failed_with(loom_conv_transpose2d(x, randn(LOOM_SHAPE(3, 2, 3, 3)), nullptr, nullptr),
                          {"conv_transpose2d", "C = 3"}));
  EXPECT_TRUE(failed_with(loom_conv1d(x, randn(LOOM_SHAPE(2, 4, 3)), nullptr, nullptr), {"conv1d", "[N, C, L]"}));
  EXPECT_TRUE(failed_with(loom_conv2d(nullptr, w, nullptr, nullptr), {}));
}

TEST(ConvErrors, ConstructorOptions) {
  loom_conv_opts g{};
  g.groups = 2;
  EXPECT_TRUE(failed_with(loom_nn_conv2d(3, 4, 3, 3, &g), {"Conv2d", "groups"}));
  EXPECT_TRUE(failed_with(loom_nn_conv2d(3, 0, 3, 3, nullptr), {"Conv2d"}));
  EXPECT_TRUE(failed_with(loom_nn_conv1d(3, 4, 0, nullptr), {"Conv1d"}));
  loom_conv_opts same{};
  same.same_padding = true;
  EXPECT_TRUE(failed_with(loom_nn_conv_transpose2d(3, 4, 3, 3, &same), {"ConvTranspose2d", "'same'"}));
  loom_pool_opts pad{};
  pad.padding[0] = pad.padding[1] = 2;  // more than half of kernel 3
  EXPECT_TRUE(failed_with(loom_nn_max_pool2d(3, 3, &pad), {"MaxPool2d", "half"}));
  EXPECT_TRUE(failed_with(loom_nn_avg_pool1d(-1, nullptr), {"AvgPool1d", "kernel"}));
  loom_pool_opts dil{};
  dil.dilation[0] = 2;
  EXPECT_TRUE(failed_with(loom_nn_avg_pool2d(2, 2, &dil), {"AvgPool2d", "dilation"}));
  EXPECT_TRUE(failed_with(loom_nn_adaptive_avg_pool2d(0, 3), {"AdaptiveAvgPool2d"}));
}

TEST(ConvErrors, PoolingInputs) {
  ScopeGuard scope;
  loom_module *m = loom_nn_max_pool2d(3, 3, nullptr), *a = loom_nn_adaptive_avg_pool2d(2, 2);
  loom_module *p1 = loom_nn_avg_pool1d(2, nullptr);
  ASSERT_TRUE(m && a && p1) << loom_last_error();
  EXPECT_TRUE(failed_with(loom_forward(m, randn(LOOM_SHAPE(1, 2, 2, 8))), {"MaxPool2d", "too small"}));
  EXPECT_TRUE(failed_with(loom_forward(m, randn(LOOM_SHAPE(8))), {"MaxPool2d", "[N, C, H, W]"}));
  EXPECT_TRUE(failed_with(loom_forward(m, loom_ones(LOOM_SHAPE(1, 1, 4, 4), LOOM_I64, loom_cpu())),
                          {"MaxPool2d", "floating"}));
  EXPECT_TRUE(failed_with(loom_forward(a, randn(LOOM_SHAPE(2, 2, 3, 3, 3))), {"AdaptiveAvgPool2d"}));
  EXPECT_TRUE(failed_with(loom_forward(p1, randn(LOOM_SHAPE(2, 2, 3, 3))), {"AvgPool1d", "[N, C, L]"}));
  loom_tensor *idx = randn(LOOM_SHAPE(1));
  EXPECT_TRUE(failed_with(loom_max_pool2d(nullptr, 2, 2, nullptr, &idx), {}));
  EXPECT_EQ(idx, nullptr);  // cleared on failure
  loom_module_free(m);
  loom_module_free(a);
  loom_module_free(p1);
}

TEST(ConvErrors, DeviceMismatch) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  loom_module *m = loom_nn_conv2d(3, 4, 3, 3, nullptr);
  loom_tensor *x = loom_randn(LOOM_SHAPE(1, 3, 8, 8), LOOM_F32, loom_cuda(0));
  EXPECT_TRUE(failed_with(loom_forward(m, x), {"Conv2d", "cuda:0", "cpu"}));
  loom_module_free(m);
}
