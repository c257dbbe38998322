// Linear, LazyLinear, activations, Softmax / LogSoftmax, Dropout, Embedding,
// Flatten, Identity: PyTorch fixtures (tools/fixtures/gen_layers.py), gradient
// checks, default initialisation, MACs and bad input; CUDA against the CPU is in
// test_nn_layers_cuda.cpp.
// The kernel ops themselves are also walked by test_ops (tests/op_cases_act.h).
#include <cmath>
#include <string>

#include "loom_test.h"

namespace {

// d sum(out * w) / d t for every t in ts (leaves), after one backward.
void backward_with(loom_tensor *out, loom_tensor *w) {
  loom_tensor *loss = loom_sum(loom_mul(out, w), nullptr, 0, false);
  ASSERT_NE(loss, nullptr) << loom_last_error();
  ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << loom_last_error();
}

loom_tensor *leaf(loom_tensor *t) {
  loom_tensor *c = loom_clone(t);
  EXPECT_EQ(loom_set_requires_grad(c, true), 0);
  return c;
}

// A module with one forward call on x, freed at the end of the test.
struct Mod {
  explicit Mod(loom_module *mod) : m(mod) {}
  ~Mod() { loom_module_free(m); }
  loom_module *m;
};

std::string err() { return loom_last_error(); }

// The last error mentions text.
#define EXPECT_ERROR_HAS(text) EXPECT_NE(err().find(text), std::string::npos) << "error: " << err()

}  // namespace

// ---- activations against PyTorch ----

TEST(Activations, MatchPyTorch) {
  ScopeGuard scope;
  Fixture fx("layers_act");
  ASSERT_TRUE(fx.ok());
  struct Act { const char *name; loom_module *mod; };
  Act acts[] = {{"relu", loom_nn_relu()},          {"leaky_relu", loom_nn_leaky_relu(0.2)},
                {"elu", loom_nn_elu(1.5)},          {"gelu", loom_nn_gelu(false)},
                {"gelu_tanh", loom_nn_gelu(true)}, {"silu", loom_nn_silu()},
                {"sigmoid", loom_nn_sigmoid()},    {"tanh", loom_nn_tanh()}};
  for (Act &a : acts) {
    SCOPED_TRACE(a.name);
    Mod m(a.mod);
    ASSERT_NE(m.m, nullptr) << err();
    loom_tensor *x = leaf(fx["x"]);
    loom_tensor *y = loom_forward(m.m, x);
    ASSERT_NE(y, nullptr) << err();
    EXPECT_TRUE(close(y, fx[a.name], 1e-12));
    backward_with(y, fx[std::string(a.name) + "_w"]);
    EXPECT_TRUE(close(loom_grad(x), fx[std::string(a.name) + "_gx"], 1e-12));
  }
}

TEST(Activations, TypeNamesAndFunctionalForms) {
  ScopeGuard scope;
  Mod l(loom_nn_leaky_relu(0.01)), g(loom_nn_gelu(true)), s(loom_nn_silu());
  EXPECT_STREQ(loom_module_type(l.m), "LeakyReLU");
  EXPECT_STREQ(loom_module_type(g.m), "GELU");
  EXPECT_STREQ(loom_module_type(s.m), "SiLU");
  EXPECT_EQ(((loom_gelu_config *)loom_module_state(g.m))->tanh_approx, true);
  EXPECT_DOUBLE_EQ(((loom_leaky_relu_config *)loom_module_state(l.m))->negative_slope, 0.01);
  // hand-derivable values: leaky_relu(-2, 0.5) = -1, elu(-inf) = -alpha, silu(0) = 0
  loom_tensor *x = T({-2, 0, 3}, LOOM_SHAPE(3));
  EXPECT_EQ(V(loom_leaky_relu(x, 0.5)), (std::vector<double>{-1, 0, 3}));
  EXPECT_EQ(V(loom_elu(T({-INFINITY, 2}, LOOM_SHAPE(2)), 2.0)), (std::vector<double>{-2, 2}));
  EXPECT_EQ(V(loom_silu(x))[1], 0.0);
  EXPECT_EQ(V(loom_gelu(x, false))[1], 0.0);
  // NaN stays NaN
  EXPECT_TRUE(std::isnan(V(loom_leaky_relu(T({NAN}, LOOM_SHAPE(1)), 0.1))[0]));
}

// ---- softmax ----

TEST(Softmax, MatchPyTorchOnLargeValues) {
  ScopeGuard scope;
  Fixture fx("layers_softmax");
  ASSERT_TRUE(fx.ok());
  for (int dim : {0, 1, -1})
    for (bool log : {false, true}) {
      std::string key = std::string(log ? "log_softmax" : "softmax") + "_d" + std::to_string(dim);
      SCOPED_TRACE(key);
      Mod m(log ? loom_nn_log_softmax(dim) : loom_nn_softmax(dim));
      EXPECT_STREQ(loom_module_type(m.m), log ? "LogSoftmax" : "Softmax");
      loom_tensor *x = leaf(fx["x"]);
      loom_tensor *y = loom_forward(m.m, x);
      ASSERT_NE(y, nullptr) << err();
      EXPECT_TRUE(close(y, fx[key], 1e-12));
      backward_with(y, fx[key + "_w"]);
      EXPECT_TRUE(close(loom_grad(x), fx[key + "_gx"], 1e-10));
      // f32 is stable too (values near 1000 would overflow exp without the max)
      loom_tensor *y32 = log ? loom_log_softmax(loom_to_dtype(fx["x"], LOOM_F32), dim)
                             : loom_softmax(loom_to_dtype(fx["x"], LOOM_F32), dim);
      EXPECT_TRUE(close(y32, fx[key], 1e-5));
    }
}

TEST(Softmax, RowsSumToOneAndZeroD) {
  ScopeGuard scope;
  loom_tensor *x = loom_randn(LOOM_SHAPE(7, 3000), LOOM_F32, loom_cpu());  // a long row
  int last[] = {-1};
  loom_tensor *s = loom_sum(loom_softmax(x, -1), last, 1, false);
  for (double v : V(s)) EXPECT_NEAR(v, 1.0, 1e-5);
  EXPECT_EQ(V(loom_softmax(T({5}, LOOM_SHAPE()), 0)), std::vector<double>{1});
  EXPECT_EQ(V(loom_log_softmax(T({5}, LOOM_SHAPE()), -1)), std::vector<double>{0});
}

TEST(Softmax, AutocastComputesInF32) {
  ScopeGuard scope;
  loom_tensor *x = loom_to_dtype(T({1, 2, 3, 4}, LOOM_SHAPE(2, 2)), LOOM_BF16);
  ASSERT_EQ(loom_autocast_begin(LOOM_CPU, LOOM_BF16), 0) << err();
  loom_tensor *y = loom_softmax(x, 1);
  loom_autocast_end();
  ASSERT_NE(y, nullptr) << err();
  EXPECT_EQ(loom_dtype_of(y), LOOM_F32);
  EXPECT_EQ(loom_dtype_of(loom_softmax(x, 1)), LOOM_BF16);  // outside the region: the input's dtype
}

// ---- Linear / LazyLinear ----

TEST(Linear, MatchesPyTorchOn3dInput) {
  ScopeGuard scope;
  Fixture fx("layers_linear");
  ASSERT_TRUE(fx.ok());
  Mod m(loom_nn_linear(4, 5, nullptr));
  ASSERT_NE(m.m, nullptr) << err();
  EXPECT_STREQ(loom_module_type(m.m), "Linear");
  ASSERT_EQ(loom_module_to_dtype(m.m, LOOM_F64), 0) << err();
  ASSERT_EQ(loom_copy_(loom_module_param(m.m, "weight"), fx["weight"]), 0);
  ASSERT_EQ(loom_copy_(loom_module_param(m.m, "bias"), fx["bias"]), 0);
  loom_tensor *x = leaf(fx["x"]);
  loom_tensor *y = loom_forward(m.m, x);
  ASSERT_NE(y, nullptr) << err();
  EXPECT_TRUE(close(y, fx["out"], 1e-12));
  backward_with(y, fx["w"]);
  EXPECT_TRUE(close(loom_grad(x), fx["gx"], 1e-12));
  EXPECT_TRUE(close(loom_grad(loom_module_param(m.m, "weight")), fx["gweight"], 1e-12));
  EXPECT_TRUE(close(loom_grad(loom_module_param(m.m, "bias")), fx["gbias"], 1e-12));
  EXPECT_TRUE(close(loom_forward(m.m, fx["x1"]), fx["out1"], 1e-12));  // 1-d input
  EXPECT_TRUE(close(loom_linear(fx["x"], fx["weight"], nullptr), fx["out_nobias"], 1e-12));
  // MACs = rows * in * out
  loom_tensor *in[1] = {fx["x"]};
  EXPECT_EQ(loom_module_kind_of(m.m)->macs(m.m, in, 1, y), 2 * 3 * 4 * 5);
}

TEST(Linear, NoBiasAndDefaultInit) {
  ScopeGuard scope;
  loom_linear_opts o = {true};
  Mod nb(loom_nn_linear(3, 2, &o));
  ASSERT_NE(nb.m, nullptr) << err();
  EXPECT_EQ(loom_module_num_params(nb.m, false), 6);
  EXPECT_EQ(loom_module_param(nb.m, "bias"), nullptr);
  Mod m(loom_nn_linear(64, 32, nullptr));
  double bound = 1.0 / 8;  // 1/sqrt(in)
  for (const char *p : {"weight", "bias"}) {
    std::vector<double> v = V(loom_module_param(m.m, p));
    double lo = 1, hi = -1, ss = 0;
    for (double x : v) lo = std::min(lo, x), hi = std::max(hi, x), ss += x * x;
    EXPECT_GE(lo, -bound) << p;
    EXPECT_LE(hi, bound) << p;
    EXPECT_GT(hi - lo, bound) << p;  // spread over the range, not constant
    if (v.size() > 1000) EXPECT_NEAR(std::sqrt(ss / (double)v.size()), bound / std::sqrt(3.0), 0.01) << p;
  }
}

TEST(Linear, LazyInfersInFeatures) {
  ScopeGuard scope;
  Fixture fx("layers_linear");
  Mod m(loom_nn_lazy_linear(5, nullptr));
  ASSERT_NE(m.m, nullptr) << err();
  EXPECT_STREQ(loom_module_type(m.m), "LazyLinear");
  EXPECT_EQ(loom_module_num_params(m.m, false), 0);
  ASSERT_EQ(loom_module_to_dtype(m.m, LOOM_F64), 0) << err();
  ASSERT_NE(loom_forward(m.m, fx["x"]), nullptr) << err();
  EXPECT_EQ(((loom_linear_config *)loom_module_state(m.m))->in_features, 4);
  loom_tensor *w = loom_module_param(m.m, "weight");
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(w), LOOM_SHAPE(5, 4)));
  EXPECT_EQ(loom_dtype_of(w), LOOM_F64);  // the placeholder's dtype
  EXPECT_EQ(loom_module_num_params(m.m, false), 25);
  for (double v : V(w)) EXPECT_LE(std::fabs(v), 0.5);
  ASSERT_EQ(loom_copy_(w, fx["weight"]), 0);
  ASSERT_EQ(loom_copy_(loom_module_param(m.m, "bias"), fx["bias"]), 0);
  EXPECT_TRUE(close(loom_forward(m.m, fx["x"]), fx["out"], 1e-12));
  EXPECT_EQ(loom_forward(m.m, T({1, 2, 3}, LOOM_SHAPE(1, 3), LOOM_F64)), nullptr);  // now fixed at 4
  EXPECT_ERROR_HAS("LazyLinear");
}

TEST(Linear, Gradcheck) {
  ScopeGuard scope;
  loom_tensor *x = leaf(loom_randn(LOOM_SHAPE(2, 3, 4), LOOM_F64, loom_cpu()));
  loom_tensor *w = leaf(loom_randn(LOOM_SHAPE(5, 4), LOOM_F64, loom_cpu()));
  loom_tensor *b = leaf(loom_randn(LOOM_SHAPE(5), LOOM_F64, loom_cpu()));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_linear(in[0], in[1], in[2]); },
                        {x, w, b}));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_linear(in[0], in[1], nullptr); },
                        {x, w}));
}

// ---- Embedding ----

TEST(Embedding, PaddingRowGetsNoGradient) {
  ScopeGuard scope;
  Fixture fx("layers_embedding");
  ASSERT_TRUE(fx.ok());
  loom_embedding_opts o = {true, 1};
  Mod m(loom_nn_embedding(10, 3, &o));
  ASSERT_NE(m.m, nullptr) << err();
  EXPECT_STREQ(loom_module_type(m.m), "Embedding");
  // default init: the padding row is zero
  std::vector<double> w0 = V(loom_module_param(m.m, "weight"));
  for (int j = 0; j < 3; j++) EXPECT_EQ(w0[3 + j], 0.0);
  ASSERT_EQ(loom_module_to_dtype(m.m, LOOM_F64), 0) << err();
  loom_tensor *w = loom_module_param(m.m, "weight");
  ASSERT_EQ(loom_copy_(w, fx["weight"]), 0);
  loom_tensor *y = loom_forward(m.m, fx["idx"]);
  ASSERT_NE(y, nullptr) << err();
  EXPECT_TRUE(close(y, fx["out"], 0));
  backward_with(y, fx["w"]);
  EXPECT_TRUE(close(loom_grad(w), fx["gweight"], 1e-12));
  // i32 indices give the same rows
  EXPECT_TRUE(close(loom_forward(m.m, loom_to_dtype(fx["idx"], LOOM_I32)), fx["out"], 0));
  // without padding_idx every row gets its gradient
  loom_tensor *w2 = leaf(fx["weight"]);
  backward_with(loom_embedding(fx["idx"], w2, LOOM_NO_PADDING_IDX), fx["w"]);
  EXPECT_TRUE(close(loom_grad(w2), fx["gweight_nopad"], 1e-12));
  // negative padding_idx counts from the end
  loom_tensor *w3 = leaf(fx["weight"]);
  backward_with(loom_embedding(fx["idx"], w3, -9), fx["w"]);
  EXPECT_TRUE(close(loom_grad(w3), fx["gweight"], 1e-12));
}

TEST(Embedding, DefaultInitIsStandardNormal) {
  ScopeGuard scope;
  Mod m(loom_nn_embedding(400, 10, nullptr));
  std::vector<double> v = V(loom_module_param(m.m, "weight"));
  double s = 0, ss = 0;
  for (double x : v) s += x, ss += x * x;
  double mean = s / (double)v.size(), var = ss / (double)v.size() - mean * mean;
  EXPECT_NEAR(mean, 0, 0.06);
  EXPECT_NEAR(var, 1, 0.08);
  EXPECT_EQ(((loom_embedding_config *)loom_module_state(m.m))->padding_idx, LOOM_NO_PADDING_IDX);
}

TEST(Embedding, Gradcheck) {
  ScopeGuard scope;
  loom_tensor *w = leaf(loom_randn(LOOM_SHAPE(6, 3), LOOM_F64, loom_cpu()));
  loom_tensor *idx = T({0, 2, 2, 5, 3, 0}, LOOM_SHAPE(3, 2), LOOM_I64);
  // (with a padding_idx the padding row's gradient is zero by design, not the
  // finite difference: that case is checked against PyTorch above)
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<loom_tensor *> &in) { return loom_embedding(idx, in[0], LOOM_NO_PADDING_IDX); }, {w}));
}

// max_norm renormalises the rows it looks up in place (PyTorch's
// embedding_renorm_), norm_type picks the norm, scale_grad_by_freq divides each
// row's gradient by its index's count; functional form and module.
TEST(Embedding, OptionsMatchPyTorch) {
  Fixture fx("layers_embedding_opts");
  ASSERT_TRUE(fx.ok());
  struct Case {
    const char *name;
    loom_embedding_opts o;
  };
  const Case cases[] = {{"maxnorm", {false, 0, 1.2, 0, false}},
                        {"maxnorm_p1", {false, 0, 2.0, 1.0, false}},
                        {"freq_pad", {true, 4, 0, 0, true}},
                        {"maxnorm_inf_freq", {false, 0, 1.0, INFINITY, true}}};
  for (const Case &c : cases) {
    SCOPED_TRACE(c.name);
    ScopeGuard scope;
    std::string k = c.name;
    loom_tensor *w = leaf(loom_clone(fx["weight"]));
    loom_tensor *y = loom_embedding_ex(fx["idx"], w, &c.o);
    ASSERT_NE(y, nullptr) << err();
    EXPECT_TRUE(close(y, fx[k + ".out"], 1e-14));
    EXPECT_TRUE(close(w, fx[k + ".weight_after"], 1e-14)) << "the weight after the renormalisation";
    backward_with(y, fx[k + ".w"]);
    EXPECT_TRUE(close(loom_grad(w), fx[k + ".gweight"], 1e-14)) << "gradient";
    // the module does the same to its own weight
    Mod m(loom_nn_embedding(8, 4, &c.o));
    ASSERT_NE(m.m, nullptr) << err();
    ASSERT_EQ(loom_module_to_dtype(m.m, LOOM_F64), 0) << err();
    loom_tensor *mw = loom_module_param(m.m, "weight");
    ASSERT_EQ(loom_copy_(mw, fx["weight"]), 0);
    loom_tensor *ym = loom_forward(m.m, fx["idx"]);
    ASSERT_NE(ym, nullptr) << err();
    EXPECT_TRUE(close(ym, fx[k + ".out"], 1e-14));
    EXPECT_TRUE(close(mw, fx[k + ".weight_after"], 1e-14));
    backward_with(ym, fx[k + ".w"]);
    EXPECT_TRUE(close(loom_grad(mw), fx[k + ".gweight"], 1e-14));
  }
  ScopeGuard scope;
  loom_embedding_opts bad{};
  bad.max_norm = -1;
  EXPECT_EQ(loom_nn_embedding(8, 4, &bad), nullptr);
  EXPECT_NE(std::string(err()).find("Embedding: max_norm"), std::string::npos) << err();
  EXPECT_EQ(loom_embedding_ex(fx["idx"], loom_clone(fx["weight"]), &bad), nullptr);
  EXPECT_NE(std::string(err()).find("embedding: max_norm"), std::string::npos) << err();
  bad.max_norm = 1, bad.norm_type = NAN;
  EXPECT_EQ(loom_embedding_ex(fx["idx"], loom_clone(fx["weight"]), &bad), nullptr);
  // a bad index leaves the weight untouched
  loom_embedding_opts mn{};
  mn.max_norm = 0.1;
  loom_tensor *w = loom_clone(fx["weight"]);
  EXPECT_EQ(loom_embedding_ex(T({0, 8}, LOOM_SHAPE(2), LOOM_I64), w, &mn), nullptr);
  EXPECT_TRUE(close(w, fx["weight"], 0));
}

// ---- Dropout ----

TEST(Dropout, StatisticsScaleAndSeed) {
  ScopeGuard scope;
  const int64_t n = 200000;
  const double p = 0.3;
  loom_tensor *x = leaf(loom_ones(LOOM_SHAPE(n), LOOM_F32, loom_cpu()));
  loom_manual_seed(42);
  loom_tensor *y = loom_dropout(x, p, true);
  ASSERT_NE(y, nullptr) << err();
  std::vector<double> v = V(y);
  int64_t kept = 0;
  for (double e : v) {
    if (e != 0) {
      kept++;
      EXPECT_NEAR(e, 1 / (1 - p), 1e-6);
      if (std::fabs(e - 1 / (1 - p)) > 1e-6) break;
    }
  }
  EXPECT_NEAR((double)kept / (double)n, 1 - p, 0.005);
  // the gradient is the same mask, scaled
  backward_with(y, loom_ones_like(y));
  EXPECT_EQ(V(loom_grad(x)), v);
  loom_manual_seed(42);
  EXPECT_EQ(V(loom_dropout(x, p, true)), v);  // same seed, same mask
  EXPECT_NE(V(loom_dropout(x, p, true)), v);  // the stream moves on
  // f64 input: the mask does not depend on the dtype
  loom_manual_seed(42);
  std::vector<double> v64 = V(loom_dropout(loom_to_dtype(x, LOOM_F64), p, true));
  ASSERT_EQ(v64.size(), v.size());
  for (size_t i = 0; i < v.size(); i++) ASSERT_EQ(v64[i] == 0, v[i] == 0) << "element " << i;
}

TEST(Dropout, EvalIdentityAndEdges) {
  ScopeGuard scope;
  loom_tensor *x = T({1, -2, 3, 4}, LOOM_SHAPE(2, 2));
  Mod m(loom_nn_dropout(0.5));
  EXPECT_STREQ(loom_module_type(m.m), "Dropout");
  loom_module_train(m.m, false);
  loom_tensor *y = loom_forward(m.m, x);
  ASSERT_NE(y, nullptr) << err();
  EXPECT_TRUE(loom_shares_storage(x, y));
  EXPECT_EQ(V(y), V(x));
  EXPECT_EQ(V(loom_dropout(x, 0, true)), V(x));
  EXPECT_EQ(V(loom_dropout(x, 1, true)), (std::vector<double>{0, 0, 0, 0}));
  loom_module_train(m.m, true);
  std::vector<double> t = V(loom_forward(m.m, x));
  for (size_t i = 0; i < t.size(); i++) EXPECT_TRUE(t[i] == 0 || t[i] == 2 * V(x)[i]);
}

TEST(Dropout, Gradcheck) {
  ScopeGuard scope;
  loom_tensor *x = leaf(loom_randn(LOOM_SHAPE(4, 5), LOOM_F64, loom_cpu()));
  EXPECT_TRUE(gradcheck(
      [](const std::vector<loom_tensor *> &in) {
        loom_manual_seed(3);  // the same mask on every call
        return loom_dropout(in[0], 0.4, true);
      },
      {x}));
}

// ---- Flatten / Identity ----

TEST(Flatten, ShapesMatchPyTorch) {
  ScopeGuard scope;
  Fixture fx("layers_linear");
  struct Case { int a, b; const char *key; } cases[] = {{1, -1, "flatten_default"}, {0, 2, "flatten_0_2"},
                                                       {-2, -1, "flatten_2_3"}};
  for (const Case &c : cases) {
    Mod m(loom_nn_flatten(c.a, c.b));
    EXPECT_STREQ(loom_module_type(m.m), "Flatten");
    EXPECT_TRUE(close(loom_forward(m.m, fx["x4"]), fx[c.key], 0)) << c.key;
  }
  Mod id(loom_nn_identity());
  EXPECT_STREQ(loom_module_type(id.m), "Identity");
  loom_tensor *y = loom_forward(id.m, fx["x4"]);
  EXPECT_TRUE(loom_shares_storage(y, fx["x4"]));
  EXPECT_TRUE(close(y, fx["x4"], 0));
}

// ---- bad input ----

#define EXPECT_FAILS_WITH(call, text)                        \
  do {                                                       \
    EXPECT_EQ((call), nullptr);                              \
    EXPECT_ERROR_HAS(text);                     \
  } while (0)

TEST(LayersErrors, BadInputNamesTheLayer) {
  ScopeGuard scope;
  Mod lin(loom_nn_linear(4, 3, nullptr));
  EXPECT_FAILS_WITH(loom_forward(lin.m, loom_zeros(LOOM_SHAPE(2, 5), LOOM_F32, loom_cpu())), "Linear");
  EXPECT_ERROR_HAS("[2, 5]");
  EXPECT_FAILS_WITH(loom_forward(lin.m, loom_zeros(LOOM_SHAPE(2, 4), LOOM_F64, loom_cpu())), "Linear");
  EXPECT_ERROR_HAS("f64");
  EXPECT_EQ(std::string(err()).find("inear: linear:"), std::string::npos) << err();  // the layer named once
  EXPECT_EQ(std::string(err()).find("Linear"), 0u) << err();
  EXPECT_FAILS_WITH(loom_forward(lin.m, loom_zeros(LOOM_SHAPE(), LOOM_F32, loom_cpu())), "Linear");
  EXPECT_FAILS_WITH(loom_linear(T({1, 2}, LOOM_SHAPE(1, 2)), T({1, 2}, LOOM_SHAPE(1, 2)), T({1, 2}, LOOM_SHAPE(2))),
                    "linear: expected bias [1]");
  EXPECT_FAILS_WITH(loom_nn_linear(0, 3, nullptr), "Linear");
  EXPECT_FAILS_WITH(loom_nn_linear(3, -1, nullptr), "Linear");
  Mod lazy(loom_nn_lazy_linear(3, nullptr));
  EXPECT_FAILS_WITH(loom_forward(lazy.m, loom_zeros(LOOM_SHAPE(), LOOM_F32, loom_cpu())), "LazyLinear");

  loom_embedding_opts bad_pad = {true, 10};
  EXPECT_FAILS_WITH(loom_nn_embedding(10, 3, &bad_pad), "padding_idx");
  Mod emb(loom_nn_embedding(10, 3, nullptr));
  EXPECT_FAILS_WITH(loom_forward(emb.m, T({1, 2}, LOOM_SHAPE(2))), "Embedding: expected i64 or i32 indices");
  EXPECT_FAILS_WITH(loom_forward(emb.m, T({1, 10}, LOOM_SHAPE(2), LOOM_I64)), "out of range");
  EXPECT_ERROR_HAS("Embedding");
  EXPECT_FAILS_WITH(loom_forward(emb.m, T({-1}, LOOM_SHAPE(1), LOOM_I64)), "index -1");
  EXPECT_FAILS_WITH(loom_embedding(T({0}, LOOM_SHAPE(1), LOOM_I64), T({1, 2}, LOOM_SHAPE(2)), 0), "embedding");

  Mod sm(loom_nn_softmax(3));
  EXPECT_FAILS_WITH(loom_forward(sm.m, loom_zeros(LOOM_SHAPE(2, 3), LOOM_F32, loom_cpu())), "Softmax");
  EXPECT_ERROR_HAS("dim 3");
  EXPECT_FAILS_WITH(loom_log_softmax(T({1, 2}, LOOM_SHAPE(2), LOOM_I64), 0), "log_softmax: needs a floating input");
  EXPECT_FAILS_WITH(loom_nn_dropout(1.5), "Dropout");
  EXPECT_FAILS_WITH(loom_dropout(T({1}, LOOM_SHAPE(1)), -0.1, true), "dropout");
  EXPECT_FAILS_WITH(loom_dropout(T({1}, LOOM_SHAPE(1)), NAN, true), "dropout");
  EXPECT_FAILS_WITH(loom_leaky_relu(T({1}, LOOM_SHAPE(1), LOOM_I32), 0.1), "leaky_relu");
  EXPECT_FAILS_WITH(loom_nn_elu(NAN), "ELU");
  Mod fl(loom_nn_flatten(1, -1));
  EXPECT_FAILS_WITH(loom_forward(fl.m, T({1}, LOOM_SHAPE(1))), "Flatten");
  Mod relu(loom_nn_relu());
  loom_tensor *two[2] = {T({1}, LOOM_SHAPE(1)), T({1}, LOOM_SHAPE(1))};
  EXPECT_FAILS_WITH(loom_forward_n(relu.m, two, 2), "ReLU: forward takes 1 input");
  // NULL in, NULL out
  EXPECT_EQ(loom_gelu(nullptr, false), nullptr);
  EXPECT_EQ(loom_softmax(nullptr, 0), nullptr);
  EXPECT_EQ(loom_linear(nullptr, nullptr, nullptr), nullptr);
  EXPECT_EQ(loom_embedding(nullptr, nullptr, 0), nullptr);
  EXPECT_EQ(loom_dropout(nullptr, 0.5, true), nullptr);
}
