// torch.nn.init: statistics of every initialiser against theory, the gain and
// fan tables against PyTorch, orthogonal_ against the QR characterisation,
// in-place semantics (views, dtypes, no autograd), errors, and an apply walk.
#include <cmath>
#include <string>

#include "loom_test.h"

namespace {

struct Stats {
  double mean = 0, std = 0, min = 0, max = 0;
  int64_t n = 0;
};

Stats stats(const loom_tensor *t) {
  std::vector<double> v = V(t);
  Stats s;
  s.n = (int64_t)v.size();
  s.min = s.max = v.empty() ? 0 : v[0];
  for (double x : v) {
    s.mean += x;
    s.min = std::min(s.min, x);
    s.max = std::max(s.max, x);
  }
  s.mean /= (double)s.n;
  for (double x : v) s.std += (x - s.mean) * (x - s.mean);
  s.std = std::sqrt(s.std / (double)(s.n - 1));
  return s;
}

// Tolerances: for n samples the standard error of the mean is std/sqrt(n), and
// of the sample std about std*sqrt((kurtosis-1)/(4n)) (kurtosis 1.8 for a
// uniform, 3 for a normal). We allow 6 standard errors (a false alarm about
// once in 5e8 runs; the generator is seeded, so the runs are repeatable anyway).
void expect_uniform(const loom_tensor *t, double a, double b) {
  Stats s = stats(t);
  double sd = (b - a) / std::sqrt(12.0), n = (double)s.n;
  EXPECT_NEAR(s.mean, (a + b) / 2, 6 * sd / std::sqrt(n));
  EXPECT_NEAR(s.std, sd, 6 * sd * std::sqrt(0.8 / (4 * n)));
  EXPECT_GE(s.min, a);
  EXPECT_LE(s.max, b);
  // the extremes come within a few expected gaps (b-a)/n of the bounds
  EXPECT_LT(s.min - a, 20 * (b - a) / n);
  EXPECT_LT(b - s.max, 20 * (b - a) / n);
}

void expect_normal(const loom_tensor *t, double mean, double sd) {
  Stats s = stats(t);
  double n = (double)s.n;
  EXPECT_NEAR(s.mean, mean, 6 * sd / std::sqrt(n));
  EXPECT_NEAR(s.std, sd, 6 * sd * std::sqrt(2.0 / (4 * n)));
}

TEST(NnInit, UniformAndNormalStatistics) {
  ScopeGuard g;
  loom_manual_seed(1);
  loom_tensor *t = loom_empty(LOOM_SHAPE(400, 500), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_init_uniform_(t, -2.0, 3.0), 0) << loom_last_error();
  expect_uniform(t, -2.0, 3.0);
  ASSERT_EQ(loom_init_normal_(t, 1.5, 0.25), 0) << loom_last_error();
  expect_normal(t, 1.5, 0.25);
}

TEST(NnInit, ConstantZerosOnes) {
  ScopeGuard g;
  loom_tensor *t = loom_rand(LOOM_SHAPE(3, 4), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_init_constant_(t, -0.75), 0);
  for (double v : V(t)) EXPECT_EQ(v, -0.75);
  ASSERT_EQ(loom_init_ones_(t), 0);
  for (double v : V(t)) EXPECT_EQ(v, 1.0);
  ASSERT_EQ(loom_init_zeros_(t), 0);
  for (double v : V(t)) EXPECT_EQ(v, 0.0);
  // like torch.nn.init.constant_, integer tensors may be filled
  loom_tensor *i = loom_zeros(LOOM_SHAPE(5), LOOM_I64, loom_cpu());
  ASSERT_EQ(loom_init_constant_(i, 7), 0);
  for (double v : V(i)) EXPECT_EQ(v, 7.0);
}

TEST(NnInit, GainsAndFansMatchPyTorch) {
  ScopeGuard g;
  Fixture fx("init_gains");
  ASSERT_TRUE(fx.ok());
  const char *names[] = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                         "conv_transpose3d", "sigmoid", "tanh", "relu", "selu", "leaky_relu",
                         "leaky_relu", "leaky_relu", "leaky_relu", "leaky_relu"};
  const double params[] = {NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, 0.0, 0.2, std::sqrt(5.0), -3.0};
  std::vector<double> ref = V(fx["gains"]);
  ASSERT_EQ(ref.size(), 16u);
  for (size_t i = 0; i < ref.size(); i++)
    EXPECT_NEAR(loom_init_gain(names[i], params[i]), ref[i], 1e-15) << names[i] << " " << params[i];

  std::vector<loom_shape> shapes = {LOOM_SHAPE(3, 4), LOOM_SHAPE(8, 3, 5), LOOM_SHAPE(16, 8, 3, 3),
                                    LOOM_SHAPE(4, 2, 2, 3, 5), LOOM_SHAPE(1, 7)};
  std::vector<double> fans = V(fx["fans"]), bounds = V(fx["kaiming_linear_bound"]);
  loom_manual_seed(2);
  for (size_t i = 0; i < shapes.size(); i++) {
    loom_tensor *w = loom_empty(shapes[i], LOOM_F64, loom_cpu());
    int64_t fi = -1, fo = -1;
    ASSERT_EQ(loom_init_fans(w, &fi, &fo), 0);
    EXPECT_EQ(fi, (int64_t)fans[2 * i]) << loom_shape_str(shapes[i]);
    EXPECT_EQ(fo, (int64_t)fans[2 * i + 1]) << loom_shape_str(shapes[i]);
    // Linear/Conv's default: every value within PyTorch's bound
    ASSERT_EQ(loom_init_kaiming_uniform_(w, std::sqrt(5.0), LOOM_FAN_IN, "leaky_relu"), 0);
    Stats s = stats(w);
    EXPECT_LE(std::max(-s.min, s.max), bounds[i]);
    EXPECT_GT(std::max(-s.min, s.max), 0.5 * bounds[i]);
  }
}

TEST(NnInit, XavierStatistics) {
  ScopeGuard g;
  loom_manual_seed(3);
  // fan_in = 300 * 4 = 1200, fan_out = 200 * 4 = 800: std = gain sqrt(2 / 2000)
  loom_tensor *w = loom_empty(LOOM_SHAPE(200, 300, 2, 2), LOOM_F32, loom_cpu());
  double gain = 1.7, sd = gain * std::sqrt(2.0 / 2000.0);
  ASSERT_EQ(loom_init_xavier_uniform_(w, gain), 0) << loom_last_error();
  expect_uniform(w, -std::sqrt(3.0) * sd, std::sqrt(3.0) * sd);
  ASSERT_EQ(loom_init_xavier_normal_(w, gain), 0) << loom_last_error();
  expect_normal(w, 0, sd);
}

TEST(NnInit, KaimingStatisticsPerModeAndNonlinearity) {
  ScopeGuard g;
  loom_manual_seed(4);
  // fan_in = 50 * 9 = 450, fan_out = 600 * 9 = 5400
  loom_tensor *w = loom_empty(LOOM_SHAPE(600, 50, 3, 3), LOOM_F32, loom_cpu());
  struct Case { double a; loom_fan_mode mode; const char *nl; double gain; };
  const Case cases[] = {
      {0.0, LOOM_FAN_IN, nullptr, std::sqrt(2.0)},             // PyTorch's defaults (leaky_relu, a = 0)
      {0.0, LOOM_FAN_OUT, "relu", std::sqrt(2.0)},
      {std::sqrt(5.0), LOOM_FAN_IN, "leaky_relu", std::sqrt(1.0 / 3.0)},  // Linear / Conv default
      {0.0, LOOM_FAN_OUT, "tanh", 5.0 / 3.0},
      {0.0, LOOM_FAN_IN, "selu", 0.75},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(std::string(c.nl ? c.nl : "default") + (c.mode == LOOM_FAN_IN ? " fan_in" : " fan_out"));
    double sd = c.gain / std::sqrt(c.mode == LOOM_FAN_IN ? 450.0 : 5400.0);
    ASSERT_EQ(loom_init_kaiming_uniform_(w, c.a, c.mode, c.nl), 0) << loom_last_error();
    expect_uniform(w, -std::sqrt(3.0) * sd, std::sqrt(3.0) * sd);
    ASSERT_EQ(loom_init_kaiming_normal_(w, c.a, c.mode, c.nl), 0) << loom_last_error();
    expect_normal(w, 0, sd);
  }
}

TEST(NnInit, EveryFloatDtypeAndViews) {
  ScopeGuard g;
  loom_manual_seed(5);
  for (loom_dtype dt : {LOOM_F64, LOOM_F16, LOOM_BF16}) {
    loom_tensor *w = loom_empty(LOOM_SHAPE(300, 400), dt, loom_cpu());
    ASSERT_EQ(loom_init_normal_(w, 0.0, 2.0), 0) << loom_dtype_name(dt) << ": " << loom_last_error();
    EXPECT_EQ(loom_dtype_of(w), dt);
    expect_normal(w, 0.0, 2.0);
  }
  // a non-contiguous view: only its elements change
  loom_tensor *base = loom_zeros(LOOM_SHAPE(6, 8), LOOM_F32, loom_cpu());
  loom_tensor *view = loom_transpose(loom_narrow(base, 1, 2, 4), 0, 1);  // [4, 6], columns 2..5
  ASSERT_EQ(loom_init_uniform_(view, 1.0, 2.0), 0) << loom_last_error();
  std::vector<double> v = V(base);
  for (int r = 0; r < 6; r++)
    for (int c = 0; c < 8; c++) {
      double x = v[r * 8 + c];
      if (c >= 2 && c < 6) {
        EXPECT_GE(x, 1.0);
        EXPECT_LT(x, 2.0);
      } else {
        EXPECT_EQ(x, 0.0);
      }
    }
  // zero-element tensors are a no-op, as in PyTorch
  loom_tensor *empty = loom_empty(LOOM_SHAPE(0, 5), LOOM_F32, loom_cpu());
  EXPECT_EQ(loom_init_kaiming_uniform_(empty, 0, LOOM_FAN_IN, "relu"), 0);
  EXPECT_EQ(loom_init_orthogonal_(empty, 1.0), 0);
}

TEST(NnInit, ParametersStayLeavesAndSeedsRepeat) {
  ScopeGuard g;
  loom_tensor *w = loom_empty(LOOM_SHAPE(4, 3), LOOM_F32, loom_cpu());
  loom_set_requires_grad(w, true);
  loom_manual_seed(6);
  ASSERT_EQ(loom_init_xavier_uniform_(w, 1.0), 0);
  EXPECT_TRUE(loom_requires_grad(w));
  EXPECT_TRUE(loom_is_leaf(w));
  std::vector<double> first = V(w);
  loom_manual_seed(6);
  ASSERT_EQ(loom_init_xavier_uniform_(w, 1.0), 0);
  EXPECT_EQ(V(w), first);
  // the values are what loom_rand gives for the same seed, scaled to the bound
  loom_manual_seed(6);
  std::vector<double> u = V(loom_rand(LOOM_SHAPE(4, 3), LOOM_F32, loom_cpu()));
  double bound = std::sqrt(3.0) * std::sqrt(2.0 / 7.0);
  for (size_t i = 0; i < u.size(); i++) EXPECT_NEAR(first[i], -bound + 2 * bound * u[i], 1e-6);
}

// PyTorch's orthogonal_ is Q diag(sign(diag R)) from the QR of a normal matrix
// G (of G^T when rows < cols): the unique QR with a positive diagonal. So for
// the G the generator gives, W must have orthonormal columns (rows) and W^T G
// (W G^T) must be upper triangular with a positive diagonal.
void check_orthogonal(loom_shape s, double gain) {
  ScopeGuard g;
  SCOPED_TRACE(loom_shape_str(s));
  int64_t rows = s.d[0], cols = loom_shape_numel(s) / rows;
  loom_tensor *w = loom_empty(s, LOOM_F64, loom_cpu());
  uint64_t seed, offset;
  loom_manual_seed(7);
  loom_rng_get_state(loom_cpu(), &seed, &offset);
  loom_tensor *gm = loom_randn(LOOM_SHAPE(rows, cols), LOOM_F64, loom_cpu());
  loom_rng_set_state(loom_cpu(), seed, offset);
  ASSERT_EQ(loom_init_orthogonal_(w, gain), 0) << loom_last_error();
  loom_tensor *w2 = loom_mul_scalar(loom_reshape(w, LOOM_SHAPE(rows, cols)), 1.0 / gain);
  bool wide = rows < cols;
  int64_t k = wide ? rows : cols;
  // gram = W^T W (tall) or W W^T (wide): k x k identity
  loom_tensor *gram = wide ? loom_matmul(w2, loom_transpose(w2, 0, 1)) : loom_matmul(loom_transpose(w2, 0, 1), w2);
  ASSERT_NE(gram, nullptr) << loom_last_error();
  EXPECT_LT(rel_err(gram, loom_eye(k, k, LOOM_F64, loom_cpu())), 1e-12);
  loom_tensor *r = wide ? loom_matmul(w2, loom_transpose(gm, 0, 1)) : loom_matmul(loom_transpose(w2, 0, 1), gm);
  std::vector<double> rv = V(r);
  for (int64_t i = 0; i < k; i++) {
    EXPECT_GT(rv[i * k + i], 0.0) << "diag " << i;
    for (int64_t j = 0; j < i; j++) EXPECT_NEAR(rv[i * k + j], 0.0, 1e-10) << i << "," << j;
  }
}

TEST(NnInit, Orthogonal) {
  check_orthogonal(LOOM_SHAPE(6, 6), 1.0);
  check_orthogonal(LOOM_SHAPE(40, 7), 2.0);      // tall
  check_orthogonal(LOOM_SHAPE(5, 3, 2, 2), 0.5);  // wide after flattening: [5, 12]
}

TEST(NnInit, OrthogonalF32MatchesScale) {
  ScopeGuard g;
  loom_tensor *w = loom_empty(LOOM_SHAPE(16, 64), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_init_orthogonal_(w, 3.0), 0);
  loom_tensor *gram = loom_matmul(w, loom_transpose(w, 0, 1));
  EXPECT_LT(rel_err(gram, loom_mul_scalar(loom_eye(16, 16, LOOM_F32, loom_cpu()), 9.0)), 1e-5);
}

void expect_error(int status, const char *what) {
  EXPECT_NE(status, 0);
  EXPECT_NE(std::string(loom_last_error()).find(what), std::string::npos) << loom_last_error();
}

TEST(NnInit, Errors) {
  ScopeGuard g;
  loom_tensor *v1 = loom_empty(LOOM_SHAPE(5), LOOM_F32, loom_cpu());
  loom_tensor *iw = loom_zeros(LOOM_SHAPE(3, 4), LOOM_I32, loom_cpu());
  loom_tensor *w = loom_empty(LOOM_SHAPE(3, 4), LOOM_F32, loom_cpu());
  int64_t fi, fo;
  expect_error(loom_init_fans(v1, &fi, &fo), "at least 2 dimensions");
  expect_error(loom_init_xavier_uniform_(v1, 1.0), "xavier_uniform_");
  expect_error(loom_init_xavier_normal_(v1, 1.0), "at least 2 dimensions");
  expect_error(loom_init_kaiming_uniform_(v1, 0, LOOM_FAN_IN, "relu"), "kaiming_uniform_");
  expect_error(loom_init_kaiming_normal_(v1, 0, LOOM_FAN_IN, "relu"), "kaiming_normal_");
  expect_error(loom_init_orthogonal_(v1, 1.0), "orthogonal_");
  expect_error(loom_init_uniform_(iw, 0, 1), "floating");
  expect_error(loom_init_normal_(iw, 0, 1), "i32");
  expect_error(loom_init_xavier_normal_(iw, 1.0), "floating");
  expect_error(loom_init_kaiming_uniform_(iw, 0, LOOM_FAN_IN, "relu"), "floating");
  expect_error(loom_init_orthogonal_(iw, 1.0), "floating");
  expect_error(loom_init_uniform_(w, 1, 0), "a <= b");
  expect_error(loom_init_normal_(w, 0, -1), "std >= 0");
  expect_error(loom_init_kaiming_uniform_(w, 0, (loom_fan_mode)7, "relu"), "mode");
  expect_error(loom_init_kaiming_normal_(w, 0, LOOM_FAN_IN, "swish"), "unsupported nonlinearity \"swish\"");
  expect_error(loom_init_xavier_uniform_(w, NAN), "gain");
  EXPECT_TRUE(std::isnan(loom_init_gain("softplus", NAN)));
  EXPECT_NE(std::string(loom_last_error()).find("softplus"), std::string::npos);
  EXPECT_TRUE(std::isnan(loom_init_gain(nullptr, NAN)));
  expect_error(loom_init_zeros_(nullptr), "NULL");
  // nothing was written by the failed calls
  for (double x : V(iw)) EXPECT_EQ(x, 0.0);
}

// The apply walk: re-initialise every Linear (nested ones included), leave the rest.
void reinit_linear(loom_module *m, void *user) {
  if (std::string(loom_module_type(m)) != "Linear") return;
  ++*(int *)user;
  EXPECT_EQ(loom_init_xavier_normal_(loom_module_param(m, "weight"), 1.0), 0) << loom_last_error();
  EXPECT_EQ(loom_init_zeros_(loom_module_param(m, "bias")), 0) << loom_last_error();
}

TEST(NnInit, ApplyReinitialisesEveryLinear) {
  ScopeGuard g;
  loom_module *net = LOOM_SEQUENTIAL(loom_nn_linear(300, 200, nullptr), loom_nn_relu(),
                                     LOOM_SEQUENTIAL(loom_nn_linear(200, 100, nullptr), loom_nn_tanh()),
                                     loom_nn_conv1d(1, 2, 3, nullptr), loom_nn_linear(98, 50, nullptr));
  ASSERT_NE(net, nullptr) << loom_last_error();
  loom_tensor *conv_w = loom_clone(loom_module_param(net, "3.weight"));
  int visited = 0;
  loom_manual_seed(9);
  loom_module_apply(net, reinit_linear, &visited);
  EXPECT_EQ(visited, 3);
  const char *names[] = {"0", "2.0", "4"};
  const double fans[] = {300 + 200, 200 + 100, 98 + 50};
  for (int i = 0; i < 3; i++) {
    SCOPED_TRACE(names[i]);
    std::string n = names[i];
    for (double b : V(loom_module_param(net, (n + ".bias").c_str()))) EXPECT_EQ(b, 0.0);
    loom_tensor *w = loom_module_param(net, (n + ".weight").c_str());
    expect_normal(w, 0.0, std::sqrt(2.0 / fans[i]));
    EXPECT_TRUE(loom_requires_grad(w));
  }
  EXPECT_EQ(V(loom_module_param(net, "3.weight")), V(conv_w));
  loom_module_free(net);
}

// Layers' default init (their constructors, other families) against
// PyTorch's: kaiming_uniform(a = sqrt(5)) -> U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
TEST(NnInit, LayerDefaultsFollowPyTorch) {
  ScopeGuard g;
  loom_manual_seed(10);
  loom_module *lin = loom_nn_linear(400, 300, nullptr);
  loom_module *conv = loom_nn_conv2d(16, 64, 5, 5, nullptr);
  ASSERT_NE(lin, nullptr) << loom_last_error();
  ASSERT_NE(conv, nullptr) << loom_last_error();
  double b = 1.0 / std::sqrt(400.0);
  expect_uniform(loom_module_param(lin, "weight"), -b, b);
  b = 1.0 / std::sqrt(16.0 * 25.0);
  expect_uniform(loom_module_param(conv, "weight"), -b, b);
  Stats s = stats(loom_module_param(conv, "bias"));
  EXPECT_LE(std::max(-s.min, s.max), b);
  loom_module_free(lin);
  loom_module_free(conv);
}

TEST(NnInit, CudaMatchesCpu) {
  LOOM_REQUIRE_GPU();
  ScopeGuard g;
  for (loom_dtype dt : {LOOM_F32, LOOM_F16, LOOM_BF16}) {
    SCOPED_TRACE(loom_dtype_name(dt));
    loom_tensor *c = loom_empty(LOOM_SHAPE(64, 32, 3), dt, loom_cpu());
    loom_tensor *d = loom_empty(LOOM_SHAPE(64, 32, 3), dt, loom_cuda(0));
    // the same seed gives the same numbers on both devices (Philox)
    loom_manual_seed(8);
    ASSERT_EQ(loom_init_kaiming_uniform_(c, std::sqrt(5.0), LOOM_FAN_IN, "leaky_relu"), 0);
    ASSERT_EQ(loom_init_kaiming_uniform_(d, std::sqrt(5.0), LOOM_FAN_IN, "leaky_relu"), 0) << loom_last_error();
    // an FMA on the GPU may move an f32 value by an ulp, and so a half value by one
    EXPECT_LT(rel_err(d, c), dt == LOOM_F32 ? 1e-6 : 1e-3);
    ASSERT_EQ(loom_init_xavier_normal_(c, 1.0), 0);
    ASSERT_EQ(loom_init_xavier_normal_(d, 1.0), 0);
    EXPECT_LT(rel_err(d, c), dt == LOOM_F32 ? 1e-5 : 1e-2);
    ASSERT_EQ(loom_init_orthogonal_(c, 1.0), 0);
    ASSERT_EQ(loom_init_orthogonal_(d, 1.0), 0) << loom_last_error();
    EXPECT_LT(rel_err(d, c), dt == LOOM_F32 ? 1e-5 : 1e-2);
    ASSERT_EQ(loom_init_constant_(d, 0.5), 0);
    for (double x : V(d)) ASSERT_EQ(x, 0.5);
  }
}

}  // namespace
