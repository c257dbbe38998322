// Max unpooling (MaxUnpool2d / MaxUnpool1d and the functional forms) against
// PyTorch fixtures (tools/fixtures/gen_conv.py), its round trip with max
// pooling, its errors, and CUDA against the CPU (skipped without a GPU).
#include "loom_test.h"

#include <string>

namespace {

bool has(const char *s, const char *part) { return s && std::string(s).find(part) != std::string::npos; }

loom_pool_opts sp(int stride, int padding) {
  loom_pool_opts o{};
  o.stride[0] = o.stride[1] = stride, o.padding[0] = o.padding[1] = padding;
  return o;
}

// Module m on the fixture's x and indices (and like, for a given output size):
// output and the gradient of sum(out * out_weight) against PyTorch's.
void check_fixture(const char *name, loom_module *m, loom_tensor *like = nullptr) {
  SCOPED_TRACE(name);
  ScopeGuard scope;
  Fixture fx(name);
  ASSERT_TRUE(fx.ok());
  ASSERT_NE(m, nullptr) << loom_last_error();
  loom_tensor *x = loom_clone(fx["x"]);
  ASSERT_EQ(loom_set_requires_grad(x, true), 0);
  loom_tensor *in[3] = {x, fx["indices"], like};
  loom_tensor *out = loom_forward_n(m, in, like ? 3 : 2);
  ASSERT_NE(out, nullptr) << loom_last_error();
  EXPECT_TRUE(close(out, fx["out"], 0));
  ASSERT_EQ(loom_backward(loom_sum(loom_mul(out, fx["out_weight"]), nullptr, 0, false), nullptr, false), 0)
      << loom_last_error();
  EXPECT_TRUE(close(loom_grad(x), fx["grad_x"], 1e-12)) << "grad_x";
  loom_module_free(m);
}

}  // namespace

TEST(Unpool, MatchesPyTorch) {
  loom_pool_opts o = sp(2, 1);
  check_fixture("conv_maxunpool2d", loom_nn_max_unpool2d(3, 3, &o));
  ScopeGuard scope;
  loom_tensor *like = loom_zeros(LOOM_SHAPE(6, 7), LOOM_F32, loom_cpu());
  check_fixture("conv_maxunpool2d_size", loom_nn_max_unpool2d(2, 2, nullptr), like);
  loom_pool_opts o1 = sp(2, 0);
  check_fixture("conv_maxunpool1d", loom_nn_max_unpool1d(3, &o1));
  // the functional forms
  Fixture f2("conv_maxunpool2d_size"), f1("conv_maxunpool1d");
  const int64_t size[2] = {6, 7};
  EXPECT_TRUE(close(loom_max_unpool2d(f2["x"], f2["indices"], 2, 2, nullptr, size), f2["out"], 0));
  EXPECT_TRUE(close(loom_max_unpool1d(f1["x"], f1["indices"], 3, &o1, nullptr), f1["out"], 0));
}

// unpool(max_pool(x)) keeps each window's maximum in place and zeros the rest;
// unbatched inputs keep their rank; f32 and f64 agree.
TEST(Unpool, InvertsMaxPool) {
  ScopeGuard scope;
  loom_tensor *x = loom_randn(LOOM_SHAPE(2, 3, 6, 8), LOOM_F64, loom_cpu()), *idx = nullptr;
  loom_tensor *p = loom_max_pool2d(x, 2, 2, nullptr, &idx);
  ASSERT_NE(p, nullptr) << loom_last_error();
  loom_tensor *u = loom_max_unpool2d(p, idx, 2, 2, nullptr, nullptr);
  ASSERT_NE(u, nullptr) << loom_last_error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(u), loom_shape_of(x)));
  std::vector<double> xv = V(x), uv = V(u);
  int kept = 0;
  for (size_t i = 0; i < xv.size(); i++) {
    if (uv[i] == 0) continue;
    EXPECT_EQ(uv[i], xv[i]) << "element " << i;
    kept++;
  }
  EXPECT_EQ(kept, 2 * 3 * 3 * 4);  // one maximum per 2x2 window
  loom_tensor *pu = loom_select(p, 0, 1), *iu = loom_select(idx, 0, 1);
  loom_tensor *uu = loom_max_unpool2d(pu, iu, 2, 2, nullptr, nullptr);
  ASSERT_NE(uu, nullptr) << loom_last_error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(uu), LOOM_SHAPE(3, 6, 8)));
  EXPECT_EQ(V(uu), V(loom_select(u, 0, 1)));
  loom_tensor *u32 = loom_max_unpool2d(loom_to_dtype(p, LOOM_F32), idx, 2, 2, nullptr, nullptr);
  ASSERT_NE(u32, nullptr) << loom_last_error();
  EXPECT_EQ(loom_dtype_of(u32), LOOM_F32);
  EXPECT_LE(rel_err(u32, u), 1e-7);
}

TEST(Unpool, Errors) {
  ScopeGuard scope;
  loom_tensor *x = loom_randn(LOOM_SHAPE(1, 2, 3, 3), LOOM_F32, loom_cpu()), *idx = nullptr;
  ASSERT_NE(loom_max_pool2d(loom_randn(LOOM_SHAPE(1, 2, 6, 6), LOOM_F32, loom_cpu()), 2, 2, nullptr, &idx), nullptr);
  // an index outside the 6x6 output plane
  loom_tensor *bad = loom_add_scalar(idx, 30);
  EXPECT_EQ(loom_max_unpool2d(x, bad, 2, 2, nullptr, nullptr), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "max_unpool2d") && has(loom_last_error(), "out of range")) << loom_last_error();
  // output size outside (default - stride, default + stride) = (4, 8)
  for (int64_t s : {4, 8}) {
    const int64_t size[2] = {s, 6};
    EXPECT_EQ(loom_max_unpool2d(x, idx, 2, 2, nullptr, size), nullptr) << s;
    EXPECT_TRUE(has(loom_last_error(), "between 4 and 8")) << loom_last_error();
  }
  const int64_t ok[2] = {7, 6};  // holds every index of the 6x6 plane
  loom_tensor *y = loom_max_unpool2d(x, idx, 2, 2, nullptr, ok);
  ASSERT_NE(y, nullptr) << loom_last_error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(y), LOOM_SHAPE(1, 2, 7, 6)));
  // shapes, dtypes, NULLs, options
  EXPECT_EQ(loom_max_unpool2d(x, loom_narrow(idx, 3, 0, 2), 2, 2, nullptr, nullptr), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "indices shape")) << loom_last_error();
  EXPECT_EQ(loom_max_unpool2d(x, loom_to_dtype(idx, LOOM_F32), 2, 2, nullptr, nullptr), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "indices must be i64")) << loom_last_error();
  EXPECT_EQ(loom_max_unpool2d(loom_to_dtype(x, LOOM_I64), idx, 2, 2, nullptr, nullptr), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "floating")) << loom_last_error();
  EXPECT_EQ(loom_max_unpool1d(x, idx, 2, nullptr, nullptr), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "[N, C, L]")) << loom_last_error();
  loom_clear_error();  // a NULL input keeps the error that made it, else says it is NULL
  EXPECT_EQ(loom_max_unpool2d(nullptr, idx, 2, 2, nullptr, nullptr), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "input is NULL")) << loom_last_error();
  loom_clear_error();
  EXPECT_EQ(loom_max_unpool2d(x, nullptr, 2, 2, nullptr, nullptr), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "indices is NULL")) << loom_last_error();
  EXPECT_EQ(loom_max_unpool2d(x, idx, 0, 2, nullptr, nullptr), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "kernel size must be positive")) << loom_last_error();
  loom_pool_opts d{};
  d.dilation[0] = 2;
  EXPECT_EQ(loom_nn_max_unpool2d(2, 2, &d), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "MaxUnpool2d") && has(loom_last_error(), "dilation")) << loom_last_error();
  loom_pool_opts c{};
  c.ceil_mode = true;
  EXPECT_EQ(loom_nn_max_unpool1d(2, &c), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "MaxUnpool1d") && has(loom_last_error(), "ceil_mode")) << loom_last_error();
  // a padding larger than half the kernel is fine (PyTorch has no such rule for unpooling)
  // but the default size must be positive: here (3 - 1) * 2 - 2 * 3 + 2 = 0
  loom_pool_opts big = sp(2, 3);
  EXPECT_EQ(loom_max_unpool2d(x, idx, 2, 2, &big, nullptr), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "not positive")) << loom_last_error();
  const int64_t s2[2] = {1, 1};
  loom_tensor *yb = loom_max_unpool2d(x, loom_zeros_like(idx), 2, 2, &big, s2);
  ASSERT_NE(yb, nullptr) << loom_last_error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(yb), LOOM_SHAPE(1, 2, 1, 1)));
  // the module: input counts and the output-size tensor
  loom_module *m = loom_nn_max_unpool2d(2, 2, nullptr);
  ASSERT_NE(m, nullptr) << loom_last_error();
  EXPECT_EQ(loom_forward(m, x), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "MaxUnpool2d: forward takes 2 inputs")) << loom_last_error();
  loom_tensor *one[3] = {x, idx, loom_zeros(LOOM_SHAPE(5), LOOM_F32, loom_cpu())};
  EXPECT_EQ(loom_forward_n(m, one, 3), nullptr);
  EXPECT_TRUE(has(loom_last_error(), "fewer than 2 dims")) << loom_last_error();
  one[2] = loom_zeros(LOOM_SHAPE(9, 6, 6), LOOM_F32, loom_cpu());
  loom_tensor *ym = loom_forward_n(m, one, 3);
  ASSERT_NE(ym, nullptr) << loom_last_error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(ym), LOOM_SHAPE(1, 2, 6, 6)));
  EXPECT_STREQ(loom_module_type(m), "MaxUnpool2d");
  loom_module_free(m);
}

TEST(Unpool, CudaMatchesCpu) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  loom_tensor *idx = nullptr;
  loom_pool_opts o = sp(2, 1);
  loom_tensor *x = loom_max_pool2d(loom_randn(LOOM_SHAPE(2, 3, 9, 8), LOOM_F32, loom_cpu()), 3, 3, &o, &idx);
  ASSERT_NE(x, nullptr) << loom_last_error();
  loom_tensor *xg = loom_to_device(x, loom_cuda(0)), *ig = loom_to_device(idx, loom_cuda(0));
  loom_set_requires_grad(x, true);
  loom_set_requires_grad(xg, true);
  const int64_t size[2] = {9, 8};
  loom_tensor *y = loom_max_unpool2d(x, idx, 3, 3, &o, size), *yg = loom_max_unpool2d(xg, ig, 3, 3, &o, size);
  ASSERT_TRUE(y && yg) << loom_last_error();
  EXPECT_EQ(loom_device_of(yg).type, LOOM_CUDA);
  EXPECT_EQ(V(yg), V(y));
  loom_tensor *r = loom_randn(loom_shape_of(y), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_backward(loom_sum(loom_mul(y, r), nullptr, 0, false), nullptr, false), 0) << loom_last_error();
  ASSERT_EQ(loom_backward(loom_sum(loom_mul(yg, loom_to_device(r, loom_cuda(0))), nullptr, 0, false), nullptr, false),
            0)
      << loom_last_error();
  EXPECT_LE(rel_err(loom_grad(xg), loom_grad(x)), 1e-6);
  for (loom_dtype dt : {LOOM_F16, LOOM_BF16}) {
    loom_tensor *yh = loom_max_unpool2d(loom_to_dtype(xg, dt), ig, 3, 3, &o, size);
    ASSERT_NE(yh, nullptr) << loom_dtype_name(dt) << ": " << loom_last_error();
    EXPECT_EQ(V(yh), V(loom_max_unpool2d(loom_to_dtype(x, dt), idx, 3, 3, &o, size))) << loom_dtype_name(dt);
  }
}
