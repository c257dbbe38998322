// Model summaries: the torchsummary table (rows, shapes, parameter counts,
// sizes), MACs and FLOPs, the stats struct, side effects (mode, generator),
// custom containers, errors.
#include <cmath>
#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <string>

#include "loom_test.h"

// EXPECT_TRUE(has(text, part)): prints both on failure (no gmock here).
::testing::AssertionResult has(const std::string &text, const std::string &part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << part << "\" not found in:\n" << text;
}

namespace {

// ---- small local module kinds, so the tests do not depend on the layer
// catalogue; NetLayers below uses the real layers. ----
struct LocalLinear { int64_t in, out; };

loom_tensor *local_linear_forward(loom_module *m, loom_tensor *const *in, int) {
  loom_tensor *w = loom_module_param(m, "weight"), *b = loom_module_param(m, "bias");
  return loom_add(loom_matmul(in[0], loom_transpose(w, 0, 1)), b);
}
int64_t local_linear_macs(const loom_module *m, loom_tensor *const *in, int, const loom_tensor *) {
  auto *s = (LocalLinear *)loom_module_state(m);
  return loom_numel(in[0]) / s->in * s->in * s->out;
}
const loom_module_kind local_linear_kind = {"Linear", local_linear_forward, nullptr, local_linear_macs, nullptr};

loom_module *local_linear(int64_t in, int64_t out) {
  auto *s = (LocalLinear *)malloc(sizeof(LocalLinear));
  *s = {in, out};
  loom_module *m = loom_module_new(&local_linear_kind, s);
  loom_scope_begin();
  loom_module_add_parameter(m, "weight", loom_rand(LOOM_SHAPE(out, in), LOOM_F32, loom_cpu()));
  loom_module_add_parameter(m, "bias", loom_rand(LOOM_SHAPE(out), LOOM_F32, loom_cpu()));
  loom_scope_end();
  return m;
}

loom_tensor *sigmoid_fwd(loom_module *, loom_tensor *const *in, int) { return loom_sigmoid(in[0]); }
loom_tensor *relu_fwd(loom_module *, loom_tensor *const *in, int) { return loom_relu(in[0]); }
loom_tensor *softmax_fwd(loom_module *, loom_tensor *const *in, int) {
  int dim = 1;
  loom_tensor *e = loom_exp(in[0]);
  return loom_div(e, loom_sum(e, &dim, 1, true));
}
const loom_module_kind sigmoid_kind = {"Sigmoid", sigmoid_fwd, nullptr, nullptr, nullptr};
const loom_module_kind relu_kind = {"ReLU", relu_fwd, nullptr, nullptr, nullptr};
const loom_module_kind softmax_kind = {"Softmax", softmax_fwd, nullptr, nullptr, nullptr};

// The seed network: Linear 3->3, Sigmoid, Linear 3->2, ReLU, Linear 2->2, Softmax(dim=1).
loom_module *seed_net_local() {
  return LOOM_SEQUENTIAL(local_linear(3, 3), loom_module_new(&sigmoid_kind, nullptr), local_linear(3, 2),
                         loom_module_new(&relu_kind, nullptr), local_linear(2, 2),
                         loom_module_new(&softmax_kind, nullptr));
}

// The whitespace-separated fields of the table row that starts with `name`.
std::vector<std::string> row(const std::string &table, const std::string &name) {
  std::istringstream lines(table);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream f(line);
    std::vector<std::string> fields;
    std::string w;
    while (f >> w) fields.push_back(w);
    if (!fields.empty() && fields[0] == name) return fields;
  }
  return {};
}

// Row fields: name, shape tokens ("[-1," "3]"), params, MACs, FLOPs.
void expect_row(const std::string &table, const std::string &name, const std::string &shape, const std::string &params,
                const std::string &macs) {
  std::vector<std::string> f = row(table, name);
  ASSERT_GE(f.size(), 5u) << name << " missing in\n" << table;
  std::string s;
  for (size_t i = 1; i + 3 < f.size(); i++) s += (i > 1 ? " " : "") + f[i];
  EXPECT_EQ(s, shape) << name;
  EXPECT_EQ(f[f.size() - 3], params) << name;
  EXPECT_EQ(f[f.size() - 2], macs) << name;
  std::string m = macs, fl = f[f.size() - 1];
  m.erase(std::remove(m.begin(), m.end(), ','), m.end());
  fl.erase(std::remove(fl.begin(), fl.end(), ','), fl.end());
  EXPECT_EQ(fl, std::to_string(2 * std::stoll(m))) << name << ": FLOPs = 2 MACs";
}

std::string summary_text(loom_module *m, loom_shape in, loom_device dev = loom_cpu(), loom_dtype dt = LOOM_F32) {
  char *s = loom_summary_string(m, in, dt, dev);
  EXPECT_NE(s, nullptr) << loom_last_error();
  std::string r = s ? s : "";
  free(s);
  return r;
}

void check_seed_table(loom_module *net, loom_device dev = loom_cpu()) {
  std::string t = summary_text(net, LOOM_SHAPE(5, 3), dev);
  EXPECT_TRUE(has(t, "Layer (type)"));
  EXPECT_TRUE(has(t, "Output Shape"));
  EXPECT_TRUE(has(t, "Param #"));
  // MACs for the whole batch of 5: N * in * out
  expect_row(t, "Linear-1", "[-1, 3]", "12", "45");
  expect_row(t, "Sigmoid-2", "[-1, 3]", "0", "0");
  expect_row(t, "Linear-3", "[-1, 2]", "8", "30");
  expect_row(t, "ReLU-4", "[-1, 2]", "0", "0");
  expect_row(t, "Linear-5", "[-1, 2]", "6", "20");
  expect_row(t, "Softmax-6", "[-1, 2]", "0", "0");
  EXPECT_TRUE(row(t, "Sequential-7").empty()) << "containers get no row";
  EXPECT_TRUE(has(t, "\nTotal params: 26\n"));
  EXPECT_TRUE(has(t, "\nTrainable params: 26\n"));
  EXPECT_TRUE(has(t, "\nNon-trainable params: 0\n"));
  EXPECT_TRUE(has(t, "\nTotal MACs: 95\n"));
  EXPECT_TRUE(has(t, "\nTotal FLOPs: 190\n"));
  EXPECT_TRUE(has(t, "\nInput size (MB): 0.00\n"));
  EXPECT_TRUE(has(t, "\nForward/backward pass size (MB): 0.00\n"));
  EXPECT_TRUE(has(t, "\nParams size (MB): 0.00\n"));
  EXPECT_TRUE(has(t, "\nEstimated Total Size (MB): 0.00\n"));
}

TEST(NnSummary, SeedNetworkTableLocalKinds) {
  ScopeGuard g;
  loom_module *net = seed_net_local();
  ASSERT_NE(net, nullptr) << loom_last_error();
  check_seed_table(net);
  loom_module_free(net);
}

TEST(NnSummary, SeedNetworkStats) {
  ScopeGuard g;
  loom_module *net = seed_net_local();
  loom_summary_stats s;
  ASSERT_EQ(loom_summary_stats_get(net, LOOM_SHAPE(5, 3), LOOM_F32, loom_cpu(), &s), 0) << loom_last_error();
  ASSERT_EQ(s.n_rows, 6);
  const int64_t params[] = {12, 0, 8, 0, 6, 0}, macs[] = {45, 0, 30, 0, 20, 0}, width[] = {3, 3, 2, 2, 2, 2};
  for (int i = 0; i < 6; i++) {
    EXPECT_EQ(s.rows[i].params, params[i]) << i;
    EXPECT_EQ(s.rows[i].trainable, params[i]) << i;
    EXPECT_EQ(s.rows[i].macs, macs[i]) << i;
    EXPECT_TRUE(loom_shape_equal(s.rows[i].output, LOOM_SHAPE(5, width[i]))) << i;
  }
  EXPECT_STREQ(s.rows[5].type, "Softmax");
  EXPECT_EQ(s.total_params, 26);
  EXPECT_EQ(s.trainable_params, 26);
  EXPECT_EQ(s.non_trainable_params, 0);
  EXPECT_EQ(s.macs, 95);
  EXPECT_EQ(s.flops, 190);
  EXPECT_EQ(s.output_elements, 5 * (3 + 3 + 2 + 2 + 2 + 2));
  const double mb = 1024.0 * 1024.0;
  EXPECT_DOUBLE_EQ(s.input_mb, 15 * 4 / mb);
  EXPECT_DOUBLE_EQ(s.forward_backward_mb, 2.0 * 70 * 4 / mb);
  EXPECT_DOUBLE_EQ(s.params_mb, 26 * 4 / mb);
  EXPECT_DOUBLE_EQ(s.total_mb, s.input_mb + s.forward_backward_mb + s.params_mb);
  loom_summary_stats_free(&s);
  EXPECT_EQ(s.rows, nullptr);
  // MACs scale with the batch
  EXPECT_EQ(loom_module_macs(net, LOOM_SHAPE(1, 3), LOOM_F32, loom_cpu()), 19);
  EXPECT_EQ(loom_module_macs(net, LOOM_SHAPE(7, 3), LOOM_F32, loom_cpu()), 7 * 19);
  loom_module_free(net);
}

TEST(NnSummary, FrozenParametersAndLargeNumbers) {
  ScopeGuard g;
  loom_module *net = LOOM_SEQUENTIAL(local_linear(1000, 1200), local_linear(1200, 10));
  loom_module_requires_grad(loom_module_child(net, "1"), false);
  std::string t = summary_text(net, LOOM_SHAPE(2, 1000));
  // 1000 * 1200 + 1200 = 1,201,200; 1200 * 10 + 10 = 12,010
  expect_row(t, "Linear-1", "[-1, 1200]", "1,201,200", "2,400,000");
  std::vector<std::string> f = row(t, "Linear-1");
  ASSERT_FALSE(f.empty());
  EXPECT_EQ(f.back(), "4,800,000");
  EXPECT_TRUE(has(t, "\nTotal params: 1,213,210\n"));
  EXPECT_TRUE(has(t, "\nTrainable params: 1,201,200\n"));
  EXPECT_TRUE(has(t, "\nNon-trainable params: 12,010\n"));
  // torchsummary's sizes: params 1,213,210 * 4 bytes = 4.63 MB; input 2000 * 4
  // = 0.01 MB; forward/backward 2 * (2 * 1200 + 2 * 10) * 4 = 0.02 MB
  EXPECT_TRUE(has(t, "\nParams size (MB): 4.63\n"));
  EXPECT_TRUE(has(t, "\nInput size (MB): 0.01\n"));
  EXPECT_TRUE(has(t, "\nForward/backward pass size (MB): 0.02\n"));
  EXPECT_TRUE(has(t, "\nEstimated Total Size (MB): 4.65\n"));
  loom_module_free(net);
}

// A user-defined container: its own parameter, children called from its forward.
loom_tensor *block_forward(loom_module *m, loom_tensor *const *in, int) {
  loom_tensor *h = loom_forward(loom_module_child(m, "fc"), in[0]);
  h = loom_forward(loom_module_child(m, "act"), h);
  return loom_mul(h, loom_module_param(m, "scale"));
}
const loom_module_kind block_kind = {"Block", block_forward, nullptr, nullptr, nullptr};

loom_module *block(int64_t in, int64_t out) {
  loom_module *m = loom_module_new(&block_kind, nullptr);
  loom_module_add(m, "fc", local_linear(in, out));
  loom_module_add(m, "act", loom_module_new(&relu_kind, nullptr));
  loom_scope_begin();
  loom_module_add_parameter(m, "scale", loom_ones(LOOM_SHAPE(out), LOOM_F32, loom_cpu()));
  loom_scope_end();
  return m;
}

TEST(NnSummary, CustomContainersAndLeafRoot) {
  ScopeGuard g;
  loom_module *net = LOOM_SEQUENTIAL(block(4, 6), block(6, 2));
  std::string t = summary_text(net, LOOM_SHAPE(3, 4));
  // rows in the order the calls finish, like torchsummary's hooks
  expect_row(t, "Linear-1", "[-1, 6]", "30", "72");
  expect_row(t, "ReLU-2", "[-1, 6]", "0", "0");
  expect_row(t, "Block-3", "[-1, 6]", "6", "0");  // its own "scale" only
  expect_row(t, "Linear-4", "[-1, 2]", "14", "36");
  expect_row(t, "Block-6", "[-1, 2]", "2", "0");
  EXPECT_TRUE(has(t, "\nTotal params: 52\n"));
  EXPECT_TRUE(has(t, "\nTotal MACs: 108\n"));
  loom_module_free(net);

  // a root without children has its own row
  loom_module *leaf = local_linear(4, 3);
  t = summary_text(leaf, LOOM_SHAPE(2, 4));
  expect_row(t, "Linear-1", "[-1, 3]", "15", "24");
  // a root with children does not (torchsummary skips the model itself)
  loom_module *b = block(4, 3);
  t = summary_text(b, LOOM_SHAPE(2, 4));
  EXPECT_TRUE(row(t, "Block-3").empty()) << t;
  EXPECT_TRUE(has(t, "\nTotal params: 18\n"));
  loom_module_free(leaf);
  loom_module_free(b);
}

TEST(NnSummary, NoSideEffects) {
  ScopeGuard g;
  loom_module *net = seed_net_local();
  loom_module_train(net, true);
  loom_module_train(loom_module_child(net, "2"), false);
  uint64_t seed0, off0, seed1, off1;
  loom_manual_seed(11);
  loom_rng_get_state(loom_cpu(), &seed0, &off0);
  int64_t live = loom_live_tensors();
  ASSERT_EQ(loom_module_macs(net, LOOM_SHAPE(5, 3), LOOM_F32, loom_cpu()), 95);
  loom_rng_get_state(loom_cpu(), &seed1, &off1);
  EXPECT_EQ(seed0, seed1);
  EXPECT_EQ(off0, off1);
  EXPECT_EQ(loom_live_tensors(), live);
  EXPECT_TRUE(loom_module_training(net));
  EXPECT_TRUE(loom_module_training(loom_module_child(net, "0")));
  EXPECT_FALSE(loom_module_training(loom_module_child(net, "2")));
  // the summary's hook (on a dead stack frame) is replaced by the user's own
  // afterwards: ASan would catch a call through it
  int calls = 0;
  loom_forward_hook count = [](loom_module *, loom_tensor *const *, int, const loom_tensor *, void *u) {
    ++*static_cast<int *>(u);
  };
  loom_set_forward_hook(count, &calls);
  ASSERT_EQ(loom_module_macs(net, LOOM_SHAPE(5, 3), LOOM_F32, loom_cpu()), 95);
  EXPECT_EQ(calls, 0) << "the user's hook ran during the summary";
  loom_tensor *y = loom_forward(net, loom_rand(LOOM_SHAPE(2, 3), LOOM_F32, loom_cpu()));
  loom_set_forward_hook(nullptr, nullptr);
  EXPECT_EQ(calls, 7) << "the user's hook was not restored (6 layers + the Sequential)";
  ASSERT_NE(y, nullptr);
  EXPECT_NE(loom_grad_fn_name(y), nullptr) << "grad mode is back on after the summary";
  loom_module_free(net);
}

TEST(NnSummary, WritesToFile) {
  ScopeGuard g;
  loom_module *net = seed_net_local();
  FILE *f = tmpfile();
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(loom_summary(net, LOOM_SHAPE(5, 3), LOOM_F32, loom_cpu(), f), 0);
  rewind(f);
  std::string got;
  char buf[256];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) got.append(buf, n);
  fclose(f);
  EXPECT_EQ(got, summary_text(net, LOOM_SHAPE(5, 3)));
  loom_module_free(net);
}

TEST(NnSummary, Errors) {
  ScopeGuard g;
  loom_module *net = seed_net_local();
  // 4 features into Linear(3, 3): the forward's error, named by the summary
  EXPECT_EQ(loom_summary_string(net, LOOM_SHAPE(5, 4), LOOM_F32, loom_cpu()), nullptr);
  EXPECT_TRUE(has(std::string(loom_last_error()), "summary: forward of Sequential on input [5, 4]"));
  loom_summary_stats s;
  EXPECT_NE(loom_summary_stats_get(net, LOOM_SHAPE(), LOOM_F32, loom_cpu(), &s), 0);
  EXPECT_TRUE(has(std::string(loom_last_error()), "summary: input shape"));
  EXPECT_EQ(s.rows, nullptr);
  EXPECT_NE(loom_summary_stats_get(net, LOOM_SHAPE(0, 3), LOOM_F32, loom_cpu(), &s), 0);
  loom_clear_error();  // a NULL argument keeps an earlier error (the likely cause)
  EXPECT_EQ(loom_module_macs(nullptr, LOOM_SHAPE(5, 3), LOOM_F32, loom_cpu()), -1);
  EXPECT_TRUE(has(std::string(loom_last_error()), "summary: module is NULL"));
  EXPECT_NE(loom_summary(nullptr, LOOM_SHAPE(5, 3), LOOM_F32, loom_cpu(), stdout), 0);
  loom_module_free(net);
}

// ---- with the real layers (include/loom/nn_layers.h, nn_conv.h) ----

loom_module *seed_net() {
  return LOOM_SEQUENTIAL(loom_nn_linear(3, 3, nullptr), loom_nn_sigmoid(), loom_nn_linear(3, 2, nullptr),
                         loom_nn_relu(), loom_nn_linear(2, 2, nullptr), loom_nn_softmax(1));
}

loom_module *seed_cnn() {
  return LOOM_SEQUENTIAL(loom_nn_conv2d(1, 32, 3, 3, nullptr), loom_nn_relu(), loom_nn_max_pool2d(2, 2, nullptr),
                         loom_nn_conv2d(32, 64, 3, 3, nullptr), loom_nn_relu(), loom_nn_max_pool2d(2, 2, nullptr),
                         loom_nn_flatten(1, -1), loom_nn_linear(64 * 5 * 5, 128, nullptr), loom_nn_relu(),
                         loom_nn_linear(128, 10, nullptr));
}

// Attention called with masks (the encoder layer's self-attention) is a row
// of its own: q, k, v projections and the two attention products, out_proj
// counted once, as its own Linear row. Per layer: 4 L E^2 + 2 L^2 E + 2 L E F
// + 2 LayerNorms of L E; then the classifier's Linear E -> 2.
TEST(NnSummary, MaskedAttentionCountsItsProjections) {
  Model m(loom_model_create("transformer_classifier", NULL));
  ASSERT_NE(m.m, nullptr) << loom_last_error();
  const int64_t L = 128, E = 128, F = 512, layers = 2;
  int64_t per_layer = 4 * L * E * E + 2 * L * L * E + 2 * L * E * F + 2 * L * E;
  EXPECT_EQ(loom_module_macs(m.m, LOOM_SHAPE(1, L), LOOM_I64, loom_cpu()), layers * per_layer + E * 2);
  char *table = loom_summary_string(m.m, LOOM_SHAPE(1, L), LOOM_I64, loom_cpu());
  ASSERT_NE(table, nullptr) << loom_last_error();
  EXPECT_TRUE(has(table, "MultiheadAttention-4"));
  free(table);
}

TEST(NnSummary, SeedNetworkTable) {
  ScopeGuard g;
  loom_module *net = seed_net();
  ASSERT_NE(net, nullptr) << loom_last_error();
  check_seed_table(net);
  loom_module_free(net);
}

TEST(NnSummary, SeedCnnMatchesTorchsummary) {
  ScopeGuard g;
  Fixture fx("init_summary_seed_cnn");
  ASSERT_TRUE(fx.ok());
  loom_module *net = seed_cnn();
  ASSERT_NE(net, nullptr) << loom_last_error();
  loom_summary_stats s;
  ASSERT_EQ(loom_summary_stats_get(net, LOOM_SHAPE(2, 1, 28, 28), LOOM_F32, loom_cpu(), &s), 0) << loom_last_error();
  std::vector<double> params = V(fx["params"]), shapes = V(fx["shapes"]), ndims = V(fx["ndims"]);
  std::string types = fx.meta("types") + ",";
  ASSERT_EQ(s.n_rows, (int)params.size());
  for (int i = 0; i < s.n_rows; i++) {
    std::string type = types.substr(0, types.find(','));
    types.erase(0, type.size() + 1);
    EXPECT_EQ(s.rows[i].type, type) << i;
    EXPECT_EQ(s.rows[i].params, (int64_t)params[i]) << i;
    ASSERT_EQ(s.rows[i].output.ndim, (int)ndims[i]) << i;
    for (int d = 0; d < s.rows[i].output.ndim; d++) EXPECT_EQ(s.rows[i].output.d[d], (int64_t)shapes[i * 4 + d]) << i;
  }
  EXPECT_EQ(s.total_params, (int64_t)V(fx["total_params"])[0]);
  // MACs, batch 2: conv = N Cout Hout Wout Cin kh kw, linear = N in out
  const int64_t conv1 = 2 * 32 * 26 * 26 * 1 * 9, conv2 = 2 * 64 * 11 * 11 * 32 * 9, fc1 = 2 * 1600 * 128,
                fc2 = 2 * 128 * 10;
  EXPECT_EQ(s.rows[0].macs, conv1);
  EXPECT_EQ(s.rows[3].macs, conv2);
  EXPECT_EQ(s.rows[7].macs, fc1);
  EXPECT_EQ(s.rows[9].macs, fc2);
  EXPECT_EQ(s.macs, conv1 + conv2 + fc1 + fc2 + s.rows[1].macs + s.rows[2].macs + s.rows[4].macs +
                        s.rows[5].macs + s.rows[6].macs + s.rows[8].macs);
  loom_summary_stats_free(&s);
  // torchsummary's table for one image: Params size 225,034 * 4 B = 0.86 MB;
  // forward/backward 2 * 67,626 outputs * 4 B = 0.52 MB; total 1.38 MB
  std::string t = summary_text(net, LOOM_SHAPE(1, 1, 28, 28));
  expect_row(t, "Conv2d-1", "[-1, 32, 26, 26]", "320", "194,688");
  expect_row(t, "Linear-10", "[-1, 10]", "1,290", "1,280");
  EXPECT_TRUE(has(t, "\nTotal params: 225,034\n"));
  EXPECT_TRUE(has(t, "\nForward/backward pass size (MB): 0.52\n"));
  EXPECT_TRUE(has(t, "\nParams size (MB): 0.86\n"));
  EXPECT_TRUE(has(t, "\nEstimated Total Size (MB): 1.38\n"));
  loom_module_free(net);
}

TEST(NnSummary, CudaMatchesCpu) {
  LOOM_REQUIRE_GPU();
  ScopeGuard g;
  loom_module *net = seed_net_local();
  ASSERT_EQ(loom_module_to_device(net, loom_cuda(0)), 0) << loom_last_error();
  check_seed_table(net, loom_cuda(0));
  loom_module *cnn = seed_cnn();
  ASSERT_EQ(loom_module_to_device(cnn, loom_cuda(0)), 0) << loom_last_error();
  EXPECT_EQ(loom_module_macs(cnn, LOOM_SHAPE(1, 1, 28, 28), LOOM_F32, loom_cuda(0)),
            32 * 26 * 26 * 9 + 64 * 11 * 11 * 32 * 9 + 1600 * 128 + 128 * 10)
      << loom_last_error();
  ASSERT_EQ(loom_module_to_dtype(cnn, LOOM_BF16), 0) << loom_last_error();
  std::string t = summary_text(cnn, LOOM_SHAPE(3, 1, 28, 28), loom_cuda(0), LOOM_BF16);
  EXPECT_TRUE(has(t, "\nTotal params: 225,034\n"));
  loom_module_free(cnn);
  // a model left on the CPU: a clear error, not a crash
  loom_module *cpu_net = seed_net_local();
  EXPECT_EQ(loom_summary_string(cpu_net, LOOM_SHAPE(5, 3), LOOM_F32, loom_cuda(0)), nullptr);
  EXPECT_TRUE(has(std::string(loom_last_error()), "summary: forward of Sequential"));
  loom_module_free(net);
  loom_module_free(cpu_net);
}

}  // namespace
