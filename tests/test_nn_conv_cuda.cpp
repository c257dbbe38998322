// Conv and pooling layers on CUDA against the CPU: the same input and
// parameters, forward and every gradient; f32 tight (TF32 off), f16 / bf16
// forward loose. Skips (with the reason) where no GPU is visible.
#include "loom_test.h"

#include <functional>

namespace {

loom_conv_opts conv_opts(int s0, int s1, int p0, int p1, int d0 = 1, int d1 = 1, int groups = 1) {
  loom_conv_opts o{};
  o.stride[0] = s0, o.stride[1] = s1, o.padding[0] = p0, o.padding[1] = p1;
  o.dilation[0] = d0, o.dilation[1] = d1, o.groups = groups;
  return o;
}

// Runs make()'s module on the CPU and on cuda:0 with the same parameters and
// input x (shape xs); compares outputs and gradients of sum(out * r).
void compare(const char *what, const std::function<loom_module *()> &make, loom_shape xs) {
  SCOPED_TRACE(what);
  ScopeGuard scope;
  loom_set_tf32(false);
  loom_module *cpu = make(), *gpu = make();
  ASSERT_TRUE(cpu && gpu) << loom_last_error();
  loom_named_tensors *pc = loom_module_named_parameters(cpu), *pg = loom_module_named_parameters(gpu);
  for (int i = 0; i < pc->n; i++) ASSERT_EQ(loom_copy_(pg->tensors[i], pc->tensors[i]), 0) << loom_last_error();
  ASSERT_EQ(loom_module_to_device(gpu, loom_cuda(0)), 0) << loom_last_error();
  loom_tensor *x = loom_randn(xs, LOOM_F32, loom_cpu()), *xg = loom_to_device(x, loom_cuda(0));
  loom_set_requires_grad(x, true);
  loom_set_requires_grad(xg, true);
  loom_tensor *y = loom_forward(cpu, x), *yg = loom_forward(gpu, xg);
  ASSERT_TRUE(y && yg) << loom_last_error();
  EXPECT_EQ(loom_device_of(yg).type, LOOM_CUDA);
  EXPECT_LE(rel_err(yg, y), 1e-4) << "out";
  loom_tensor *r = loom_randn(loom_shape_of(y), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_backward(loom_sum(loom_mul(y, r), nullptr, 0, false), nullptr, false), 0) << loom_last_error();
  ASSERT_EQ(loom_backward(loom_sum(loom_mul(yg, loom_to_device(r, loom_cuda(0))), nullptr, 0, false), nullptr, false),
            0) << loom_last_error();
  EXPECT_LE(rel_err(loom_grad(xg), loom_grad(x)), 1e-4) << "grad_x";
  for (int i = 0; i < pc->n; i++)
    EXPECT_LE(rel_err(loom_grad(pg->tensors[i]), loom_grad(pc->tensors[i])), 1e-4) << pc->names[i];
  // half precision forward (f32 accumulation) against the f32 CPU result
  for (loom_dtype dt : {LOOM_F16, LOOM_BF16}) {
    ASSERT_EQ(loom_module_to_dtype(gpu, dt), 0) << loom_last_error();
    loom_tensor *yh = loom_forward(gpu, loom_to_dtype(xg, dt));
    ASSERT_NE(yh, nullptr) << loom_dtype_name(dt) << ": " << loom_last_error();
    EXPECT_EQ(loom_dtype_of(yh), dt);
    EXPECT_LE(rel_err(yh, y), dt == LOOM_F16 ? 1e-2 : 3e-2) << loom_dtype_name(dt);
  }
  ASSERT_EQ(loom_synchronize(loom_cuda(0)), 0) << loom_last_error();
  loom_named_tensors_free(pc);
  loom_named_tensors_free(pg);
  loom_module_free(cpu);
  loom_module_free(gpu);
}

}  // namespace

TEST(ConvCuda, Convolutions) {
  LOOM_REQUIRE_GPU();
  loom_conv_opts g = conv_opts(2, 1, 1, 2, 2, 1, 2);
  compare("Conv2d groups", [&] { return loom_nn_conv2d(4, 6, 3, 2, &g); }, LOOM_SHAPE(3, 4, 11, 9));
  loom_conv_opts dw = conv_opts(1, 1, 1, 1, 1, 1, 8);
  compare("Conv2d depthwise", [&] { return loom_nn_conv2d(8, 8, 3, 3, &dw); }, LOOM_SHAPE(2, 8, 10, 10));
  loom_conv_opts same{};
  same.same_padding = true;
  compare("Conv2d same", [&] { return loom_nn_conv2d(3, 5, 4, 4, &same); }, LOOM_SHAPE(2, 3, 9, 8));
  compare("Conv2d 1x1", [] { return loom_nn_conv2d(16, 32, 1, 1, nullptr); }, LOOM_SHAPE(2, 16, 7, 7));
  loom_conv_opts c1 = conv_opts(2, 0, 1, 0);
  compare("Conv1d", [&] { return loom_nn_conv1d(3, 4, 5, &c1); }, LOOM_SHAPE(2, 3, 20));
  loom_conv_opts t = conv_opts(2, 2, 1, 0, 1, 2, 2);
  t.output_padding[0] = 1;
  compare("ConvTranspose2d", [&] { return loom_nn_conv_transpose2d(4, 6, 3, 3, &t); }, LOOM_SHAPE(2, 4, 5, 6));
  loom_conv_opts dil = conv_opts(2, 2, 1, 1, 3, 3);
  dil.output_padding[0] = dil.output_padding[1] = 2;  // crop-and-fill path
  compare("ConvTranspose2d op >= stride", [&] { return loom_nn_conv_transpose2d(3, 4, 3, 3, &dil); },
          LOOM_SHAPE(2, 3, 4, 5));
  loom_conv_opts t1 = conv_opts(3, 0, 1, 0);
  t1.output_size[0] = 15;
  compare("ConvTranspose1d", [&] { return loom_nn_conv_transpose1d(4, 2, 4, &t1); }, LOOM_SHAPE(2, 4, 5));
  for (const char *mode : {"reflect", "replicate", "circular"}) {
    loom_conv_opts m = conv_opts(1, 2, 2, 1);
    m.padding_mode = mode;
    compare(mode, [&] { return loom_nn_conv2d(3, 4, 3, 3, &m); }, LOOM_SHAPE(2, 3, 7, 8));
  }
}

TEST(ConvCuda, Pooling) {
  LOOM_REQUIRE_GPU();
  loom_pool_opts c{};
  c.stride[0] = c.stride[1] = 2, c.padding[0] = c.padding[1] = 1, c.ceil_mode = true;
  loom_pool_opts e = c;
  e.exclude_pad = true;
  loom_pool_opts d{};
  d.dilation[0] = 2;
  compare("MaxPool2d ceil", [&] { return loom_nn_max_pool2d(3, 3, &c); }, LOOM_SHAPE(2, 3, 10, 11));
  compare("MaxPool2d dilation", [&] { return loom_nn_max_pool2d(2, 3, &d); }, LOOM_SHAPE(2, 3, 10, 11));
  compare("MaxPool1d", [&] { return loom_nn_max_pool1d(3, &c); }, LOOM_SHAPE(2, 3, 17));
  compare("AvgPool2d incl", [&] { return loom_nn_avg_pool2d(3, 3, &c); }, LOOM_SHAPE(2, 3, 10, 11));
  compare("AvgPool2d excl", [&] { return loom_nn_avg_pool2d(3, 3, &e); }, LOOM_SHAPE(2, 3, 10, 11));
  compare("AvgPool1d", [&] { return loom_nn_avg_pool1d(4, &e); }, LOOM_SHAPE(2, 3, 17));
  compare("AdaptiveAvgPool2d", [] { return loom_nn_adaptive_avg_pool2d(4, 3); }, LOOM_SHAPE(2, 3, 10, 11));
  compare("AdaptiveAvgPool2d up", [] { return loom_nn_adaptive_avg_pool2d(13, 7); }, LOOM_SHAPE(2, 3, 10, 5));
}

TEST(ConvCuda, MaxPoolIndicesMatch) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  loom_tensor *x = loom_randn(LOOM_SHAPE(2, 3, 9, 9), LOOM_F32, loom_cpu()), *i = nullptr, *ig = nullptr;
  loom_pool_opts c{};
  c.stride[0] = c.stride[1] = 2, c.padding[0] = c.padding[1] = 1, c.ceil_mode = true;
  ASSERT_NE(loom_max_pool2d(x, 3, 3, &c, &i), nullptr) << loom_last_error();
  ASSERT_NE(loom_max_pool2d(loom_to_device(x, loom_cuda(0)), 3, 3, &c, &ig), nullptr) << loom_last_error();
  EXPECT_EQ(V(ig), V(i));
}

TEST(ConvCuda, DeterministicConvIsRepeatable) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  loom_set_deterministic(true);
  loom_tensor *x = loom_randn(LOOM_SHAPE(4, 8, 16, 16), LOOM_F32, loom_cuda(0));
  loom_tensor *w = loom_randn(LOOM_SHAPE(8, 8, 3, 3), LOOM_F32, loom_cuda(0));
  loom_set_requires_grad(w, true);
  std::vector<double> first;
  for (int rep = 0; rep < 2; rep++) {
    loom_zero_grad(w);
    loom_conv_opts o = conv_opts(1, 1, 1, 1);
    loom_tensor *y = loom_conv2d(x, w, nullptr, &o);
    ASSERT_NE(y, nullptr) << loom_last_error();
    ASSERT_EQ(loom_backward(loom_sum(y, nullptr, 0, false), nullptr, false), 0) << loom_last_error();
    if (rep == 0) first = V(loom_grad(w));
    else EXPECT_EQ(V(loom_grad(w)), first);
  }
  loom_set_deterministic(false);
}
