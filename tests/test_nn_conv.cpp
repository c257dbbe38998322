// Conv and pooling layers: PyTorch fixtures (tools/fixtures/gen_conv.py),
// f64 gradient checks, CPU vs CUDA, bad input, init and MACs.
#include "conv_fixture.h"
#include "loom_test.h"

#include <cmath>

namespace {

bool has(const char *text, const char *part) { return std::string(text).find(part) != std::string::npos; }

loom_conv_opts conv_opts(int s0, int s1, int p0, int p1, int d0 = 1, int d1 = 1, int groups = 1) {
  loom_conv_opts o{};
  o.stride[0] = s0, o.stride[1] = s1, o.padding[0] = p0, o.padding[1] = p1;
  o.dilation[0] = d0, o.dilation[1] = d1, o.groups = groups;
  return o;
}

loom_pool_opts pool_opts(int s0, int s1, int p0, int p1, bool ceil = false, bool excl = false) {
  loom_pool_opts o{};
  o.stride[0] = s0, o.stride[1] = s1, o.padding[0] = p0, o.padding[1] = p1;
  o.ceil_mode = ceil, o.exclude_pad = excl;
  return o;
}

// Max pooling fixtures also carry PyTorch's indices.
void check_indices(const char *name, loom_tensor *indices) {
  Fixture fx(name);
  ASSERT_NE(indices, nullptr) << loom_last_error();
  EXPECT_EQ(loom_dtype_of(indices), LOOM_I64);
  EXPECT_TRUE(close(indices, fx["indices"], 0));
}

}  // namespace

// ---- against PyTorch ----

TEST(ConvFixture, Conv2d) {
  loom_conv_opts pad1 = conv_opts(1, 1, 1, 1);
  check_fixture("conv2d_basic", loom_nn_conv2d(3, 4, 3, 3, &pad1));
  loom_conv_opts g = conv_opts(2, 2, 1, 0, 2, 1, 2);
  check_fixture("conv2d_groups", loom_nn_conv2d(4, 6, 3, 2, &g));
  loom_conv_opts dw = conv_opts(1, 1, 1, 1, 1, 1, 4);
  dw.no_bias = true;
  check_fixture("conv2d_depthwise", loom_nn_conv2d(4, 8, 3, 3, &dw));
  loom_conv_opts same = conv_opts(1, 1, 0, 0, 1, 2);
  same.same_padding = true;  // odd total padding along H: one more row at the bottom
  check_fixture("conv2d_same", loom_nn_conv2d(3, 4, 4, 3, &same));
}

TEST(ConvFixture, Conv1d) {
  loom_conv_opts o = conv_opts(2, 0, 1, 0, 2, 0);
  check_fixture("conv1d", loom_nn_conv1d(3, 5, 3, &o));
  loom_conv_opts same{};
  same.same_padding = true;
  check_fixture("conv1d_same", loom_nn_conv1d(2, 3, 4, &same));
}

TEST(ConvFixture, ConvTranspose2d) {
  loom_conv_opts o = conv_opts(2, 2, 1, 1, 1, 2, 2);
  o.output_padding[0] = o.output_padding[1] = 1;
  check_fixture("conv_transpose2d", loom_nn_conv_transpose2d(4, 6, 3, 3, &o));
  check_fixture("conv_transpose2d_plain", loom_nn_conv_transpose2d(3, 2, 2, 3, nullptr));
  loom_conv_opts dil = conv_opts(2, 2, 0, 0, 3, 3);
  dil.output_padding[0] = dil.output_padding[1] = 2;  // below the dilation, not the stride
  check_fixture("conv_transpose2d_dil_op", loom_nn_conv_transpose2d(2, 3, 3, 3, &dil));
  loom_conv_opts size = conv_opts(3, 3, 1, 1);
  size.output_size[0] = 9, size.output_size[1] = 11;
  check_fixture("conv_transpose2d_size", loom_nn_conv_transpose2d(2, 3, 3, 3, &size));
}

TEST(ConvFixture, ConvTranspose1d) {
  loom_conv_opts o = conv_opts(2, 0, 1, 0, 2, 0, 2);
  o.output_padding[0] = 1;
  check_fixture("conv_transpose1d", loom_nn_conv_transpose1d(4, 6, 3, &o));
  loom_conv_opts size = conv_opts(3, 0, 0, 0);
  size.output_size[0] = 15;
  check_fixture("conv_transpose1d_size", loom_nn_conv_transpose1d(3, 2, 4, &size));
}

TEST(ConvFixture, PaddingModes) {
  loom_conv_opts r = conv_opts(1, 1, 1, 2);
  r.padding_mode = "reflect";
  check_fixture("conv2d_reflect", loom_nn_conv2d(3, 4, 3, 3, &r));
  loom_conv_opts rs = conv_opts(1, 1, 0, 0, 1, 2);
  rs.same_padding = true, rs.padding_mode = "replicate";
  check_fixture("conv2d_replicate_same", loom_nn_conv2d(2, 3, 4, 3, &rs));
  loom_conv_opts c = conv_opts(2, 2, 2, 1, 1, 1, 2);
  c.padding_mode = "circular";
  check_fixture("conv2d_circular", loom_nn_conv2d(2, 4, 3, 3, &c));
  loom_conv_opts r1 = conv_opts(1, 0, 2, 0, 2, 0);
  r1.padding_mode = "reflect";
  check_fixture("conv1d_reflect", loom_nn_conv1d(2, 3, 3, &r1));
  loom_conv_opts c1{};
  c1.same_padding = true, c1.padding_mode = "circular";
  check_fixture("conv1d_circular_same", loom_nn_conv1d(2, 3, 4, &c1));
}

TEST(ConvFixture, MaxPool) {
  loom_pool_opts c = pool_opts(2, 2, 1, 1, true);
  check_fixture("conv_maxpool2d_ceil", loom_nn_max_pool2d(3, 3, &c));
  loom_pool_opts d = pool_opts(1, 2, 0, 0);
  d.dilation[0] = 2;
  check_fixture("conv_maxpool2d_dil", loom_nn_max_pool2d(2, 3, &d));
  loom_pool_opts c1 = pool_opts(2, 0, 0, 0, true);
  check_fixture("conv_maxpool1d", loom_nn_max_pool1d(3, &c1));
  ScopeGuard scope;
  loom_tensor *idx = nullptr;
  Fixture f2("conv_maxpool2d_ceil"), fd("conv_maxpool2d_dil"), f1("conv_maxpool1d");
  EXPECT_NE(loom_max_pool2d(f2["x"], 3, 3, &c, &idx), nullptr);
  check_indices("conv_maxpool2d_ceil", idx);
  EXPECT_NE(loom_max_pool2d(fd["x"], 2, 3, &d, &idx), nullptr);
  check_indices("conv_maxpool2d_dil", idx);
  EXPECT_NE(loom_max_pool1d(f1["x"], 3, &c1, &idx), nullptr);
  check_indices("conv_maxpool1d", idx);
}

TEST(ConvFixture, AvgPool) {
  loom_pool_opts incl = pool_opts(2, 2, 1, 1, true), excl = pool_opts(2, 2, 1, 1, true, true);
  check_fixture("conv_avgpool2d_incl", loom_nn_avg_pool2d(3, 3, &incl));
  check_fixture("conv_avgpool2d_excl", loom_nn_avg_pool2d(3, 3, &excl));
  loom_pool_opts fl = pool_opts(2, 1, 1, 1);
  check_fixture("conv_avgpool2d_floor", loom_nn_avg_pool2d(2, 3, &fl));
  loom_pool_opts a1 = pool_opts(3, 0, 2, 0, true, true);
  check_fixture("conv_avgpool1d", loom_nn_avg_pool1d(4, &a1));
  loom_pool_opts dv = incl, dn{};
  dv.divisor_override = 5, dn.divisor_override = -3;
  check_fixture("conv_avgpool2d_div", loom_nn_avg_pool2d(3, 3, &dv));
  check_fixture("conv_avgpool2d_div_neg", loom_nn_avg_pool2d(2, 2, &dn));
}

TEST(ConvFixture, AdaptivePools) {
  check_fixture("conv_adaptive_3x4", loom_nn_adaptive_avg_pool2d(3, 4));
  check_fixture("conv_adaptive_10xN", loom_nn_adaptive_avg_pool2d(10, -1));
  check_fixture("conv_adaptive_avg1d", loom_nn_adaptive_avg_pool1d(4));
  check_fixture("conv_adaptive_max2d", loom_nn_adaptive_max_pool2d(3, 4));
  check_fixture("conv_adaptive_max2d_up", loom_nn_adaptive_max_pool2d(10, -1));
  check_fixture("conv_adaptive_max1d", loom_nn_adaptive_max_pool1d(4));
  ScopeGuard scope;
  loom_tensor *idx = nullptr;
  Fixture f2("conv_adaptive_max2d"), fu("conv_adaptive_max2d_up"), f1("conv_adaptive_max1d");
  EXPECT_NE(loom_adaptive_max_pool2d(f2["x"], 3, 4, &idx), nullptr);
  check_indices("conv_adaptive_max2d", idx);
  EXPECT_NE(loom_adaptive_max_pool2d(fu["x"], 10, -1, &idx), nullptr);
  check_indices("conv_adaptive_max2d_up", idx);
  EXPECT_NE(loom_adaptive_max_pool1d(f1["x"], 4, &idx), nullptr);
  check_indices("conv_adaptive_max1d", idx);
}

// Options PyTorch does not have, or sizes it refuses, are errors naming the layer.
TEST(ConvSemantics, PoolOptionErrors) {
  ScopeGuard scope;
  loom_pool_opts d{};
  d.divisor_override = 2;
  EXPECT_EQ(loom_nn_avg_pool1d(2, &d), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "AvgPool1d")) << loom_last_error();
  EXPECT_EQ(loom_nn_max_pool2d(2, 2, &d), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "divisor_override")) << loom_last_error();
  EXPECT_EQ(loom_nn_adaptive_max_pool1d(0), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "AdaptiveMaxPool1d")) << loom_last_error();
  loom_tensor *x = loom_randn(LOOM_SHAPE(2, 3, 0), LOOM_F32, loom_cpu());
  EXPECT_EQ(loom_adaptive_avg_pool1d(x, 2), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "empty length")) << loom_last_error();
  EXPECT_EQ(loom_adaptive_max_pool2d(loom_randn(LOOM_SHAPE(4, 5), LOOM_F32, loom_cpu()), 2, 2, nullptr), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "adaptive_max_pool2d")) << loom_last_error();
  // unbatched input keeps its rank; indices match the batched call
  loom_tensor *u = loom_randn(LOOM_SHAPE(3, 7, 6), LOOM_F32, loom_cpu()), *iu = nullptr, *ib = nullptr;
  loom_tensor *yu = loom_adaptive_max_pool2d(u, 3, 4, &iu), *yb = loom_adaptive_max_pool2d(loom_unsqueeze(u, 0), 3, 4, &ib);
  ASSERT_NE(yu, nullptr) << loom_last_error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(yu), LOOM_SHAPE(3, 3, 4)));
  EXPECT_EQ(rel_err(iu, loom_squeeze(ib, 0)), 0);
}

// ---- finite-difference gradients (f64) ----

namespace {
std::vector<loom_tensor *> rand64(std::initializer_list<loom_shape> shapes) {
  std::vector<loom_tensor *> v;
  for (loom_shape s : shapes) {
    loom_tensor *t = loom_randn(s, LOOM_F64, loom_cpu());
    loom_set_requires_grad(t, true);
    v.push_back(t);
  }
  return v;
}
}  // namespace

TEST(ConvGrad, Conv2dAllOptions) {
  ScopeGuard scope;
  loom_manual_seed(7);
  auto in = rand64({LOOM_SHAPE(2, 4, 6, 7), LOOM_SHAPE(6, 2, 3, 2), LOOM_SHAPE(6)});
  loom_conv_opts o = conv_opts(2, 1, 1, 2, 1, 2, 2);
  EXPECT_TRUE(gradcheck([&](const std::vector<loom_tensor *> &x) { return loom_conv2d(x[0], x[1], x[2], &o); }, in));
  loom_conv_opts same{};
  same.same_padding = true;
  auto in2 = rand64({LOOM_SHAPE(1, 2, 5, 5), LOOM_SHAPE(3, 2, 2, 3)});
  EXPECT_TRUE(gradcheck([&](const std::vector<loom_tensor *> &x) { return loom_conv2d(x[0], x[1], nullptr, &same); }, in2));
}

TEST(ConvGrad, Conv1dAndTranspose) {
  ScopeGuard scope;
  loom_manual_seed(8);
  auto in = rand64({LOOM_SHAPE(2, 3, 9), LOOM_SHAPE(4, 3, 3), LOOM_SHAPE(4)});
  loom_conv_opts o = conv_opts(2, 0, 1, 0, 2, 0);
  EXPECT_TRUE(gradcheck([&](const std::vector<loom_tensor *> &x) { return loom_conv1d(x[0], x[1], x[2], &o); }, in));
  auto tin = rand64({LOOM_SHAPE(2, 4, 3, 4), LOOM_SHAPE(4, 3, 3, 2), LOOM_SHAPE(6)});
  loom_conv_opts t = conv_opts(2, 3, 1, 0, 1, 1, 2);
  t.output_padding[0] = 1, t.output_padding[1] = 2;
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<loom_tensor *> &x) { return loom_conv_transpose2d(x[0], x[1], x[2], &t); }, tin));
  auto t1in = rand64({LOOM_SHAPE(2, 4, 4), LOOM_SHAPE(4, 3, 3), LOOM_SHAPE(6)});
  loom_conv_opts t1 = conv_opts(2, 0, 1, 0, 2, 0, 2);
  t1.output_size[0] = 10;  // one above the smallest size, 9
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<loom_tensor *> &x) { return loom_conv_transpose1d(x[0], x[1], x[2], &t1); }, t1in));
  auto rin = rand64({LOOM_SHAPE(1, 2, 4, 5), LOOM_SHAPE(2, 2, 3, 2)});
  for (const char *mode : {"reflect", "replicate", "circular"}) {
    SCOPED_TRACE(mode);
    loom_conv_opts m = conv_opts(1, 2, 2, 1);
    m.padding_mode = mode;
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<loom_tensor *> &x) { return loom_conv2d(x[0], x[1], nullptr, &m); }, rin));
  }
}

TEST(ConvGrad, Pooling) {
  ScopeGuard scope;
  loom_manual_seed(9);
  auto in = rand64({LOOM_SHAPE(2, 2, 7, 6)});
  loom_pool_opts c = pool_opts(2, 2, 1, 1, true), e = pool_opts(2, 2, 1, 1, true, true);
  auto g = [&](std::function<loom_tensor *(loom_tensor *)> f) {
    return gradcheck([&](const std::vector<loom_tensor *> &x) { return f(x[0]); }, in);
  };
  EXPECT_TRUE(g([&](loom_tensor *x) { return loom_max_pool2d(x, 3, 3, &c, nullptr); }));
  EXPECT_TRUE(g([&](loom_tensor *x) { return loom_avg_pool2d(x, 3, 3, &c); }));
  EXPECT_TRUE(g([&](loom_tensor *x) { return loom_avg_pool2d(x, 3, 3, &e); }));
  EXPECT_TRUE(g([&](loom_tensor *x) { return loom_adaptive_avg_pool2d(x, 4, 5); }));
  EXPECT_TRUE(g([&](loom_tensor *x) { return loom_adaptive_max_pool2d(x, 4, 5, nullptr); }));
  EXPECT_TRUE(g([&](loom_tensor *x) { return loom_adaptive_max_pool1d(loom_flatten(x, 2, 3), 5, nullptr); }));
  EXPECT_TRUE(g([&](loom_tensor *x) { return loom_adaptive_avg_pool1d(loom_flatten(x, 2, 3), 9); }));
  loom_pool_opts dv = c;
  dv.divisor_override = 4;
  EXPECT_TRUE(g([&](loom_tensor *x) { return loom_avg_pool2d(x, 3, 3, &dv); }));
  EXPECT_TRUE(g([&](loom_tensor *x) { return loom_max_pool1d(loom_flatten(x, 2, 3), 4, &c, nullptr); }));
  EXPECT_TRUE(g([&](loom_tensor *x) { return loom_avg_pool1d(loom_flatten(x, 2, 3), 4, &e); }));
}

// ---- semantics ----

TEST(ConvSemantics, UnbatchedInputMatchesBatched) {
  ScopeGuard scope;
  loom_tensor *x = loom_randn(LOOM_SHAPE(3, 6, 5), LOOM_F32, loom_cpu());
  loom_tensor *w = loom_randn(LOOM_SHAPE(4, 3, 3, 3), LOOM_F32, loom_cpu());
  loom_conv_opts o = conv_opts(1, 1, 1, 1);
  loom_tensor *y = loom_conv2d(x, w, nullptr, &o), *yb = loom_conv2d(loom_unsqueeze(x, 0), w, nullptr, &o);
  ASSERT_NE(y, nullptr) << loom_last_error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(y), LOOM_SHAPE(4, 6, 5)));
  EXPECT_EQ(rel_err(y, loom_squeeze(yb, 0)), 0);
  loom_tensor *p = loom_max_pool2d(x, 2, 2, nullptr, nullptr);
  ASSERT_NE(p, nullptr) << loom_last_error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(p), LOOM_SHAPE(3, 3, 2)));
}

// Hand-derivable: a 1x1 input channel of ones with a 2x2 kernel of ones sums windows.
TEST(ConvSemantics, HandComputed) {
  ScopeGuard scope;
  loom_tensor *x = T({1, 2, 3, 4, 5, 6, 7, 8, 9}, LOOM_SHAPE(1, 1, 3, 3));
  loom_tensor *w = loom_ones(LOOM_SHAPE(1, 1, 2, 2), LOOM_F32, loom_cpu());
  loom_tensor *b = T({10}, LOOM_SHAPE(1));
  EXPECT_EQ(V(loom_conv2d(x, w, b, nullptr)), (std::vector<double>{22, 26, 34, 38}));
  EXPECT_EQ(V(loom_max_pool2d(x, 2, 2, nullptr, nullptr)), (std::vector<double>{5}));
  loom_pool_opts ceil{};
  ceil.ceil_mode = true;
  EXPECT_EQ(V(loom_max_pool2d(x, 2, 2, &ceil, nullptr)), (std::vector<double>{5, 6, 8, 9}));
  EXPECT_EQ(V(loom_avg_pool2d(x, 2, 2, &ceil)), (std::vector<double>{3, 4.5, 7.5, 9}));
  EXPECT_EQ(V(loom_adaptive_avg_pool2d(x, 1, 1)), (std::vector<double>{5}));
}

TEST(ConvSemantics, AutocastRunsConvInLowPrecision) {
  ScopeGuard scope;
  loom_tensor *x = loom_randn(LOOM_SHAPE(1, 2, 5, 5), LOOM_F32, loom_cpu());
  loom_tensor *w = loom_randn(LOOM_SHAPE(3, 2, 3, 3), LOOM_F32, loom_cpu());
  loom_tensor *ref = loom_conv2d(x, w, nullptr, nullptr);
  ASSERT_EQ(loom_autocast_begin(LOOM_CPU, LOOM_BF16), 0) << loom_last_error();
  loom_tensor *y = loom_conv2d(x, w, nullptr, nullptr);
  loom_autocast_end();
  ASSERT_NE(y, nullptr) << loom_last_error();
  EXPECT_EQ(loom_dtype_of(y), LOOM_BF16);
  EXPECT_LT(rel_err(y, ref), 2e-2);
}

// ---- modules: names, init, MACs, leaks ----

TEST(ConvModule, ParametersAndDefaultInit) {
  ScopeGuard scope;
  loom_module *m = loom_nn_conv2d(8, 16, 3, 3, nullptr);
  ASSERT_NE(m, nullptr) << loom_last_error();
  EXPECT_STREQ(loom_module_type(m), "Conv2d");
  loom_tensor *w = loom_module_param(m, "weight"), *b = loom_module_param(m, "bias");
  ASSERT_TRUE(w && b);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(w), LOOM_SHAPE(16, 8, 3, 3)));
  double bound = 1 / std::sqrt(8.0 * 9);  // kaiming_uniform(a = sqrt(5)) and the bias share it
  double wmax = V(loom_max_all(loom_abs(w)))[0], bmax = V(loom_max_all(loom_abs(b)))[0];
  EXPECT_LE(wmax, bound);
  EXPECT_GT(wmax, 0.9 * bound);
  EXPECT_LE(bmax, bound);
  EXPECT_GT(bmax, 0.2 * bound);
  std::vector<double> before = V(w);
  loom_module_kind_of(m)->reset_parameters(m);
  EXPECT_NE(V(w), before);
  loom_module_free(m);

  // ConvTranspose2d: weight [in, out / groups, k...], fan_in = out / groups * k
  loom_conv_opts g{};
  g.groups = 2;
  m = loom_nn_conv_transpose2d(4, 6, 2, 2, &g);
  ASSERT_NE(m, nullptr) << loom_last_error();
  w = loom_module_param(m, "weight");
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(w), LOOM_SHAPE(4, 3, 2, 2)));
  EXPECT_LE(V(loom_max_all(loom_abs(w)))[0], 1 / std::sqrt(3.0 * 4));
  EXPECT_LE(V(loom_max_all(loom_abs(loom_module_param(m, "bias"))))[0], 1 / std::sqrt(3.0 * 4));
  loom_module_free(m);

  loom_conv_opts nb{};
  nb.no_bias = true;
  m = loom_nn_conv1d(2, 3, 5, &nb);
  ASSERT_NE(m, nullptr) << loom_last_error();
  EXPECT_EQ(loom_module_num_params(m, false), 3 * 2 * 5);
  EXPECT_STREQ(loom_module_type(m), "Conv1d");
  loom_module_free(m);
}

TEST(ConvModule, Macs) {
  ScopeGuard scope;
  loom_conv_opts o = conv_opts(2, 2, 1, 1, 1, 1, 2);
  loom_module *m = loom_nn_conv2d(4, 6, 3, 3, &o);
  loom_tensor *x = loom_randn(LOOM_SHAPE(2, 4, 8, 8), LOOM_F32, loom_cpu());
  loom_tensor *y = loom_forward(m, x);
  ASSERT_NE(y, nullptr) << loom_last_error();
  EXPECT_EQ(loom_module_kind_of(m)->macs(m, &x, 1, y), 2 * 6 * 4 * 4 * (4 / 2) * 9);
  loom_module_free(m);
  m = loom_nn_conv_transpose2d(4, 6, 3, 3, &o);
  y = loom_forward(m, x);
  ASSERT_NE(y, nullptr) << loom_last_error();
  EXPECT_EQ(loom_module_kind_of(m)->macs(m, &x, 1, y), 2 * 4 * 8 * 8 * (6 / 2) * 9);
  loom_module_free(m);
  m = loom_nn_max_pool2d(2, 2, nullptr);
  const loom_conv_config *c = (const loom_conv_config *)loom_module_state(m);
  EXPECT_EQ(c->pool.stride[0], 2);  // stride defaults to the kernel
  EXPECT_STREQ(loom_module_type(m), "MaxPool2d");
  loom_module_free(m);
}

TEST(ConvModule, NoLeaks) {
  int64_t live = loom_live_tensors();
  {
    ScopeGuard scope;
    loom_module *m = loom_nn_conv2d(2, 3, 3, 3, nullptr), *p = loom_nn_max_pool2d(2, 2, nullptr);
    loom_tensor *x = loom_randn(LOOM_SHAPE(1, 2, 6, 6), LOOM_F32, loom_cpu());
    loom_set_requires_grad(x, true);
    loom_tensor *y = loom_forward(p, loom_forward(m, x));
    ASSERT_NE(y, nullptr) << loom_last_error();
    ASSERT_EQ(loom_backward(loom_sum(y, nullptr, 0, false), nullptr, false), 0) << loom_last_error();
    loom_module_free(m);
    loom_module_free(p);
  }
  EXPECT_EQ(loom_live_tensors(), live);
}
