// Conv3d (module and loom_conv3d) against PyTorch fixtures
// (tools/fixtures/gen_conv.py), its errors, and CUDA against the CPU (skipped
// without a GPU).
#include <string>

#include "conv_fixture.h"
#include "loom_test.h"

namespace {

bool has(const char *s, const char *part) { return s && std::string(s).find(part) != std::string::npos; }

loom_conv3d_opts opts3(int s0, int s1, int s2, int p0, int p1, int p2, int d0 = 1, int d1 = 1, int d2 = 1) {
  loom_conv3d_opts o{};
  o.stride[0] = s0, o.stride[1] = s1, o.stride[2] = s2;
  o.padding[0] = p0, o.padding[1] = p1, o.padding[2] = p2;
  o.dilation[0] = d0, o.dilation[1] = d1, o.dilation[2] = d2;
  return o;
}

}  // namespace

TEST(Conv3d, MatchesPyTorch) {
  loom_conv3d_opts a = opts3(1, 2, 1, 1, 1, 0, 2, 1, 1);
  check_fixture("conv3d", loom_nn_conv3d(2, 3, 2, 3, 3, &a), 1e-10, true);
  loom_conv3d_opts s{};
  s.same_padding = true, s.groups = 2, s.no_bias = true;
  check_fixture("conv3d_groups_same", loom_nn_conv3d(4, 6, 2, 3, 4, &s), 1e-10, true);
  loom_conv3d_opts r = opts3(2, 2, 2, 1, 1, 1);
  r.padding_mode = "reflect";
  check_fixture("conv3d_reflect", loom_nn_conv3d(2, 2, 3, 3, 3, &r), 1e-10, true);
  // the functional form
  ScopeGuard scope;
  Fixture fx("conv3d");
  EXPECT_TRUE(close(loom_conv3d(fx["x"], fx["weight"], fx["bias"], &a), fx["out"], 1e-10));
}

TEST(Conv3d, ModuleShapesAndMacs) {
  ScopeGuard scope;
  loom_conv3d_opts o = opts3(1, 1, 1, 1, 1, 1);
  loom_module *m = loom_nn_conv3d(3, 8, 3, 3, 3, &o);
  ASSERT_NE(m, nullptr) << loom_last_error();
  EXPECT_STREQ(loom_module_type(m), "Conv3d");
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(loom_module_param(m, "weight")), LOOM_SHAPE(8, 3, 3, 3, 3)));
  const loom_conv3d_config *c = (const loom_conv3d_config *)loom_module_state(m);
  EXPECT_EQ(c->conv.stride[2], 1);
  EXPECT_EQ(c->conv.groups, 1);
  loom_tensor *y = loom_forward(m, loom_randn(LOOM_SHAPE(2, 3, 4, 5, 6), LOOM_F32, loom_cpu()));
  ASSERT_NE(y, nullptr) << loom_last_error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(y), LOOM_SHAPE(2, 8, 4, 5, 6)));
  // N Cout Do Ho Wo (Cin / groups) kd kh kw
  EXPECT_EQ(loom_module_macs(m, LOOM_SHAPE(2, 3, 4, 5, 6), LOOM_F32, loom_cpu()), 2LL * 8 * 4 * 5 * 6 * 3 * 27);
  loom_module_free(m);
}

TEST(Conv3d, Errors) {
  ScopeGuard scope;
  loom_tensor *x = loom_randn(LOOM_SHAPE(1, 2, 4, 4, 4), LOOM_F32, loom_cpu());
  loom_tensor *w = loom_randn(LOOM_SHAPE(3, 2, 3, 3, 3), LOOM_F32, loom_cpu());
  EXPECT_EQ(loom_conv3d(loom_randn(LOOM_SHAPE(2, 4, 4), LOOM_F32, loom_cpu()), w, nullptr, nullptr), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "conv3d: expected a floating input [N, C, D, H, W]")) << loom_last_error();
  EXPECT_EQ(loom_conv3d(x, loom_randn(LOOM_SHAPE(3, 1, 3, 3, 3), LOOM_F32, loom_cpu()), nullptr, nullptr), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "weight")) << loom_last_error();
  EXPECT_EQ(loom_conv3d(x, w, loom_zeros(LOOM_SHAPE(2), LOOM_F32, loom_cpu()), nullptr), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "bias")) << loom_last_error();
  EXPECT_EQ(loom_conv3d(loom_randn(LOOM_SHAPE(1, 2, 2, 4, 4), LOOM_F32, loom_cpu()), w, nullptr, nullptr), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "too small")) << loom_last_error();
  loom_conv3d_opts o{};
  o.same_padding = true, o.stride[1] = 2;
  EXPECT_EQ(loom_conv3d(x, w, nullptr, &o), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "'same'")) << loom_last_error();
  o = {};
  o.padding_mode = "mirror";
  EXPECT_EQ(loom_nn_conv3d(2, 3, 3, 3, 3, &o), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "Conv3d: unknown padding_mode")) << loom_last_error();
  o = {};
  o.groups = 2;
  EXPECT_EQ(loom_nn_conv3d(3, 4, 3, 3, 3, &o), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "divisible by groups")) << loom_last_error();
  o.padding_mode = "reflect", o.groups = 0, o.padding[0] = 4;  // reflect needs each pad below the size
  EXPECT_EQ(loom_conv3d(x, w, nullptr, &o), nullptr);
  loom_module *m = loom_nn_conv3d(2, 3, 3, 3, 3, nullptr);
  loom_tensor *two[2] = {x, x};
  EXPECT_EQ(loom_forward_n(m, two, 2), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "Conv3d: forward takes 1 input")) << loom_last_error();
  EXPECT_EQ(loom_forward(m, loom_randn(LOOM_SHAPE(1, 3, 4, 4, 4), LOOM_F32, loom_cpu())), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "Conv3d:")) << loom_last_error();
  loom_module_free(m);
}

TEST(Conv3d, CudaMatchesCpu) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  loom_set_tf32(false);
  loom_conv3d_opts o = opts3(2, 1, 1, 1, 2, 1, 1, 2, 1);
  o.groups = 2, o.padding_mode = "circular";
  loom_tensor *x = loom_randn(LOOM_SHAPE(2, 4, 7, 8, 6), LOOM_F32, loom_cpu());
  loom_tensor *w = loom_randn(LOOM_SHAPE(6, 2, 3, 3, 2), LOOM_F32, loom_cpu());
  loom_tensor *b = loom_randn(LOOM_SHAPE(6), LOOM_F32, loom_cpu());
  loom_tensor *in[2][3], *out[2];
  for (int d = 0; d < 2; d++) {
    loom_device dev = d ? loom_cuda(0) : loom_cpu();
    in[d][0] = loom_to_device(x, dev), in[d][1] = loom_to_device(w, dev), in[d][2] = loom_to_device(b, dev);
    for (loom_tensor *t : in[d]) loom_set_requires_grad(t, true);
    out[d] = loom_conv3d(in[d][0], in[d][1], in[d][2], &o);
    ASSERT_NE(out[d], nullptr) << loom_last_error();
    ASSERT_EQ(loom_backward(loom_sum(loom_mul(out[d], out[d]), nullptr, 0, false), nullptr, false), 0)
        << loom_last_error();
  }
  EXPECT_EQ(loom_device_of(out[1]).type, LOOM_CUDA);
  EXPECT_LE(rel_err(out[1], out[0]), 1e-4);
  for (int i = 0; i < 3; i++) EXPECT_LE(rel_err(loom_grad(in[1][i]), loom_grad(in[0][i])), 1e-4) << "input " << i;
}
