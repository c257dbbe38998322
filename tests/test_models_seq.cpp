// The sequence models of loom/models.h: the RNN / LSTM / GRU, Transformer and
// text classifiers and the pointer network. Parity with PyTorch twins
// (tools/fixtures/gen_models_seq.py: state_dicts loaded strictly, eval logits,
// one training step's gradients), shapes, options and bad input, and short
// learning runs: a char-RNN language-of-a-word classifier (/usr/share/dict),
// synthetic token tasks and the pointer network sorting numbers.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "loom_test.h"

namespace {

struct Model {
  explicit Model(loom_module *m) : m(m) {}
  ~Model() { loom_module_free(m); }
  Model(const Model &) = delete;
  Model &operator=(const Model &) = delete;
  loom_module *m;
};

std::string error() { return loom_last_error(); }

std::string state_path(const std::string &name) {
  return std::string(LOOM_FIXTURE_DIR) + "/models_seq_" + name + "_state.safetensors";
}

// out against ref element by element: the same -inf entries, and the finite
// ones within tol relative error (as a whole).
::testing::AssertionResult close_masked(const loom_tensor *out, const loom_tensor *ref, double tol) {
  if (!out || !ref) return ::testing::AssertionFailure() << "missing tensor: " << error();
  if (!loom_shape_equal(loom_shape_of(out), loom_shape_of(ref)))
    return ::testing::AssertionFailure() << "shape " << loom_shape_str(loom_shape_of(out)) << " vs "
                                         << loom_shape_str(loom_shape_of(ref));
  std::vector<double> a = V(out), b = V(ref);
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); i++) {
    if (std::isinf(a[i]) || std::isinf(b[i])) {
      if (a[i] != b[i]) return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs " << b[i];
      continue;
    }
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  double e = std::sqrt(num / (den > 0 ? den : 1));
  if (e <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "relative error " << e << " > " << tol;
}

// ---- parity with the PyTorch twins ----

// The names of a list, comma-separated (frees the list).
std::string joined(loom_named_tensors *l) {
  std::string out;
  for (int i = 0; l && i < l->n; i++) out += (i ? "," : "") + std::string(l->names[i]);
  loom_named_tensors_free(l);
  return out;
}

struct ParityCase {
  const char *name;
  loom_module *(*build)();
};

loom_module *build_rnn() {
  loom_model_opts o = {};
  o.in_channels = 5, o.hidden = 6, o.bidirectional = true, o.num_classes = 3;
  return loom_model_rnn_classifier(LOOM_RNN_TANH, &o);
}
loom_module *build_lstm() {
  loom_model_opts o = {};
  o.in_channels = 5, o.hidden = 6, o.num_layers = 2, o.bidirectional = true, o.num_classes = 3;
  return loom_model_rnn_classifier(LOOM_RNN_LSTM, &o);
}
loom_module *build_gru() {
  loom_model_opts o = {};
  o.in_channels = 5, o.hidden = 6, o.num_layers = 2, o.num_classes = 3;
  return loom_model_rnn_classifier(LOOM_RNN_GRU, &o);
}
loom_module *build_transformer() {
  loom_model_opts o = {};
  o.vocab_size = 11, o.embed_dim = 8, o.num_heads = 2, o.num_layers = 2, o.max_len = 16, o.num_classes = 3;
  o.set_dropout = true;
  return loom_model_transformer_classifier(&o);
}
loom_module *build_text() {
  loom_model_opts o = {};
  o.vocab_size = 13, o.embed_dim = 5, o.num_classes = 3;
  return loom_model_text_classifier(&o);
}
loom_module *build_pointer() {
  loom_model_opts o = {};
  o.in_channels = 2, o.hidden = 6;
  return loom_model_pointer_net(&o);
}

class SeqParity : public ::testing::TestWithParam<ParityCase> {};

// The twin's state_dict loads strictly (same names and shapes); eval logits
// and every parameter's gradient of one mean cross-entropy step match
// PyTorch's (computed in f64) within f32 tolerance.
TEST_P(SeqParity, LogitsAndGradientsMatchPyTorch) {
  const ParityCase &c = GetParam();
  bool pointer = std::string(c.name) == "pointer";
  Fixture fx((std::string("models_seq_") + c.name).c_str());
  ASSERT_TRUE(fx.ok());
  Model net(c.build());
  ASSERT_NE(net.m, nullptr) << error();
  ASSERT_EQ(loom_module_load(net.m, state_path(c.name).c_str(), true), 0) << error();
  // the same names in the same order as the twin's state_dict, parameters and buffers
  Fixture st((std::string("models_seq_") + c.name + "_state").c_str());
  loom_tensor_map *sd = loom_module_state_dict(net.m);
  ASSERT_NE(sd, nullptr) << error();
  std::string keys;
  for (int i = 0; i < loom_map_size(sd); i++) keys += (i ? "," : "") + std::string(loom_map_name(sd, i));
  loom_map_free(sd);
  EXPECT_EQ(keys, st.meta("state_dict"));
  EXPECT_EQ(joined(loom_module_named_parameters(net.m)), st.meta("parameters"));
  EXPECT_EQ(joined(loom_module_named_buffers(net.m)), st.meta("buffers"));
  ScopeGuard scope;
  loom_tensor *x = fx["input"], *target = fx["target"];
  ASSERT_TRUE(x && target);
  loom_module_train(net.m, false);
  loom_tensor *logits = loom_forward(net.m, x);
  ASSERT_NE(logits, nullptr) << error();
  EXPECT_TRUE(close_masked(logits, fx["logits"], 1e-5)) << c.name << " eval logits";

  loom_module_train(net.m, true);
  loom_tensor *loss;
  if (pointer) {
    loom_tensor *tf = loom_pointer_net_forward(net.m, x, target);
    ASSERT_NE(tf, nullptr) << error();
    EXPECT_TRUE(close_masked(tf, fx["tf_logits"], 1e-5)) << "teacher-forced logits";
    int64_t l = loom_size(x, 1);
    loss = loom_cross_entropy(loom_reshape(tf, LOOM_SHAPE(-1, l)), loom_reshape(target, LOOM_SHAPE(-1)), nullptr);
  } else {
    loss = loom_cross_entropy(loom_forward(net.m, x), target, nullptr);
  }
  ASSERT_NE(loss, nullptr) << error();
  EXPECT_NEAR(loom_item(loss), loom_item(fx["loss"]), 1e-5 * std::fabs(loom_item(fx["loss"])) + 1e-6);
  ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << error();
  loom_named_tensors *ps = loom_module_named_parameters(net.m);
  ASSERT_NE(ps, nullptr);
  int grads = 0;
  for (int i = 0; i < ps->n; i++) {
    loom_tensor *g = loom_grad(ps->tensors[i]);
    loom_tensor *ref = fx[std::string("grad.") + ps->names[i]];
    if (!ref) continue;
    grads++;
    ASSERT_NE(g, nullptr) << ps->names[i] << " has no gradient";
    EXPECT_TRUE(close(g, ref, 1e-4)) << c.name << " gradient of " << ps->names[i];
  }
  EXPECT_EQ(grads, ps->n);
  loom_named_tensors_free(ps);
}

INSTANTIATE_TEST_SUITE_P(Twins, SeqParity,
                         ::testing::Values(ParityCase{"rnn", build_rnn}, ParityCase{"lstm", build_lstm},
                                           ParityCase{"gru", build_gru}, ParityCase{"transformer", build_transformer},
                                           ParityCase{"text", build_text}, ParityCase{"pointer", build_pointer}),
                         [](const ::testing::TestParamInfo<ParityCase> &p) { return std::string(p.param.name); });

// ---- defaults, registry, shapes ----

struct Default {
  const char *name;
  int64_t params;   // PyTorch twin's count at the defaults
  int64_t classes;  // logits' last dim (pointer: L)
};

class SeqDefaults : public ::testing::TestWithParam<Default> {};

// Every registry model builds at its defaults with the twin's parameter
// count, takes its registry input (kind and size) and gives [N, classes].
TEST_P(SeqDefaults, RegistryInputGivesLogits) {
  const Default &d = GetParam();
  const loom_model_info *info = loom_model_find(d.name);
  ASSERT_NE(info, nullptr) << error();
  Model net(loom_model_create(d.name, nullptr));
  ASSERT_NE(net.m, nullptr) << error();
  EXPECT_EQ(loom_module_num_params(net.m, false), d.params) << d.name;
  loom_module_train(net.m, false);
  ScopeGuard scope;
  const int64_t n = 2, l = info->kind == LOOM_INPUT_TOKENS ? 9 : info->input[0];
  loom_tensor *x;
  if (info->kind == LOOM_INPUT_TOKENS) {
    x = loom_randint(0, 256, LOOM_SHAPE(n, l), LOOM_I64, loom_cpu());
  } else {
    ASSERT_EQ(info->kind, LOOM_INPUT_SEQUENCE) << d.name;
    x = loom_rand(LOOM_SHAPE(n, l, info->input[1]), LOOM_F32, loom_cpu());
  }
  loom_tensor *y = loom_forward(net.m, x);
  ASSERT_NE(y, nullptr) << d.name << ": " << error();
  loom_shape want = std::string(d.name) == "pointer_net" ? LOOM_SHAPE(n, l, l) : LOOM_SHAPE(n, d.classes);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(y), want)) << d.name << ": " << loom_shape_str(loom_shape_of(y));
  for (double v : V(y)) EXPECT_FALSE(std::isnan(v)) << d.name;
}

INSTANTIATE_TEST_SUITE_P(Zoo, SeqDefaults,
                         ::testing::Values(Default{"rnn_classifier", 26258, 18}, Default{"lstm_classifier", 98066, 18},
                                           Default{"gru_classifier", 74130, 18},
                                           Default{"transformer_classifier", 429570, 2},
                                           Default{"text_classifier", 16514, 2}, Default{"pointer_net", 167041, 0}),
                         [](const ::testing::TestParamInfo<Default> &p) { return std::string(p.param.name); });

std::vector<std::string> param_names(const loom_module *m) {
  std::vector<std::string> out;
  loom_named_tensors *l = loom_module_named_parameters(m);
  for (int i = 0; l && i < l->n; i++) out.push_back(l->names[i]);
  loom_named_tensors_free(l);
  return out;
}

int64_t dim_of(const loom_module *m, const char *path, int d) { return loom_size(loom_module_param(m, path), d); }

TEST(SeqOptions, LayersDirectionsAndSizes) {
  loom_model_opts o = {};
  o.in_channels = 26, o.hidden = 16, o.num_layers = 3, o.bidirectional = true, o.num_classes = 4;
  Model lstm(loom_model_rnn_classifier(LOOM_RNN_LSTM, &o));
  ASSERT_NE(lstm.m, nullptr) << error();
  std::vector<std::string> names = param_names(lstm.m);
  ASSERT_EQ(names.size(), 3u * 2 * 4 + 2);  // layers x directions x (w_ih, w_hh, b_ih, b_hh) + fc
  EXPECT_EQ(names[0], "rnn.weight_ih_l0");
  EXPECT_EQ(names[4], "rnn.weight_ih_l0_reverse");
  EXPECT_EQ(names.back(), "fc.bias");
  EXPECT_EQ(dim_of(lstm.m, "rnn.weight_ih_l0", 0), 64);       // 4 gates x 16
  EXPECT_EQ(dim_of(lstm.m, "rnn.weight_ih_l1", 1), 32);       // both directions' outputs
  EXPECT_EQ(dim_of(lstm.m, "fc.weight", 1), 32);              // both final states
  EXPECT_EQ(dim_of(lstm.m, "fc.weight", 0), 4);
  o.bidirectional = false, o.num_layers = 0;
  Model gru(loom_model_rnn_classifier(LOOM_RNN_GRU, &o));
  ASSERT_NE(gru.m, nullptr) << error();
  EXPECT_EQ(param_names(gru.m).size(), 6u);
  EXPECT_EQ(dim_of(gru.m, "rnn.weight_hh_l0", 0), 48);        // 3 gates
  EXPECT_STREQ(loom_module_type(gru.m), "GRUClassifier");
  Model relu(loom_model_rnn_classifier(LOOM_RNN_RELU, &o));
  ASSERT_NE(relu.m, nullptr) << error();
  EXPECT_EQ(dim_of(relu.m, "rnn.weight_hh_l0", 0), 16);

  loom_model_opts t = {};
  t.vocab_size = 100, t.embed_dim = 24, t.num_heads = 3, t.num_layers = 1, t.max_len = 32, t.num_classes = 5;
  Model tr(loom_model_transformer_classifier(&t));
  ASSERT_NE(tr.m, nullptr) << error();
  EXPECT_EQ(dim_of(tr.m, "embedding.weight", 0), 100);
  EXPECT_EQ(dim_of(tr.m, "encoder.layers.0.linear1.weight", 0), 96);  // feed-forward 4 d
  EXPECT_EQ(loom_module_param(tr.m, "encoder.layers.1.linear1.weight"), nullptr);
  EXPECT_EQ(dim_of(tr.m, "fc.weight", 0), 5);
  // the padding row of the embeddings starts at zero
  ScopeGuard scope;
  std::vector<double> row0 = V(loom_select(loom_module_param(tr.m, "embedding.weight"), 0, 0));
  for (double v : row0) EXPECT_EQ(v, 0.0);

  loom_model_opts p = {};
  p.in_channels = 3, p.hidden = 10;
  Model ptr(loom_model_pointer_net(&p));
  ASSERT_NE(ptr.m, nullptr) << error();
  EXPECT_EQ(param_names(ptr.m)[0], "decoder_start");
  EXPECT_EQ(dim_of(ptr.m, "decoder_start", 0), 3);
  EXPECT_EQ(dim_of(ptr.m, "decoder.weight_ih", 1), 3);
  EXPECT_EQ(dim_of(ptr.m, "attention.W_q.weight", 0), 10);
}

// Padding (id 0) does not change a text / Transformer classifier's logits,
// wherever the padding sits and however much of it there is.
TEST(SeqOptions, PaddingIsIgnored) {
  loom_model_opts o = {};
  o.vocab_size = 20, o.embed_dim = 8, o.num_heads = 2, o.num_layers = 1, o.max_len = 16, o.set_dropout = true;
  Model tr(loom_model_transformer_classifier(&o));
  Model text(loom_model_text_classifier(&o));
  ASSERT_TRUE(tr.m && text.m) << error();
  loom_module_train(tr.m, false);
  ScopeGuard scope;
  loom_tensor *a = T({3, 7, 11, 5}, LOOM_SHAPE(1, 4), LOOM_I64);
  loom_tensor *b = T({3, 7, 11, 5, 0, 0, 0}, LOOM_SHAPE(1, 7), LOOM_I64);
  for (loom_module *m : {tr.m, text.m}) {
    loom_tensor *ya = loom_forward(m, a), *yb = loom_forward(m, b);
    ASSERT_TRUE(ya && yb) << error();
    EXPECT_LT(rel_err(yb, ya), 1e-5) << loom_module_type(m);
  }
  // the text classifier is a bag of tokens: order does not matter, padding inside neither
  loom_tensor *c = T({5, 0, 11, 7, 0, 3}, LOOM_SHAPE(1, 6), LOOM_I64);
  EXPECT_LT(rel_err(loom_forward(text.m, c), loom_forward(text.m, a)), 1e-5);
}

TEST(SeqOptions, BadOptionsAreClearErrors) {
  loom_model_opts o = {};
  o.num_classes = -1;
  EXPECT_EQ(loom_model_rnn_classifier(LOOM_RNN_LSTM, &o), nullptr);
  EXPECT_NE(error().find("LSTMClassifier"), std::string::npos) << error();
  EXPECT_EQ(loom_model_rnn_classifier((loom_rnn_mode)9, nullptr), nullptr);
  EXPECT_NE(error().find("unknown mode 9"), std::string::npos) << error();
  o = {};
  o.num_layers = -2;
  EXPECT_EQ(loom_model_rnn_classifier(LOOM_RNN_GRU, &o), nullptr);
  EXPECT_NE(error().find("num_layers"), std::string::npos) << error();
  o = {};
  o.embed_dim = 10, o.num_heads = 4;
  EXPECT_EQ(loom_model_transformer_classifier(&o), nullptr);
  EXPECT_NE(error().find("embed_dim 10 is not a multiple of num_heads 4"), std::string::npos) << error();
  o = {};
  o.vocab_size = -5;
  EXPECT_EQ(loom_model_text_classifier(&o), nullptr);
  EXPECT_NE(error().find("TextClassifier"), std::string::npos) << error();
  o = {};
  o.dropout = 2;
  EXPECT_EQ(loom_model_transformer_classifier(&o), nullptr);
  EXPECT_NE(error().find("dropout"), std::string::npos) << error();
  o = {};
  o.in_channels = -1;
  EXPECT_EQ(loom_model_pointer_net(&o), nullptr);
  EXPECT_NE(error().find("PointerNet"), std::string::npos) << error();
}

// ---- bad input ----

// Forward on x must fail with an error containing every one of want.
::testing::AssertionResult fails_with(loom_module *m, loom_tensor *const *in, int n,
                                      std::initializer_list<const char *> want) {
  loom_tensor *y = loom_forward_n(m, in, n);
  if (y) {
    loom_release(y);
    return ::testing::AssertionFailure() << "forward succeeded";
  }
  for (const char *w : want)
    if (error().find(w) == std::string::npos)
      return ::testing::AssertionFailure() << "error '" << error() << "' lacks '" << w << "'";
  return ::testing::AssertionSuccess();
}

TEST(SeqInput, SequenceModelsRejectBadShapes) {
  loom_model_opts o = {};
  o.in_channels = 4, o.hidden = 8;
  Model lstm(loom_model_rnn_classifier(LOOM_RNN_LSTM, &o));
  Model ptr(loom_model_pointer_net(&o));
  ASSERT_TRUE(lstm.m && ptr.m) << error();
  ScopeGuard scope;
  loom_tensor *flat = loom_rand(LOOM_SHAPE(2, 4), LOOM_F32, loom_cpu());
  loom_tensor *wide = loom_rand(LOOM_SHAPE(2, 3, 5), LOOM_F32, loom_cpu());
  loom_tensor *empty = loom_zeros(LOOM_SHAPE(2, 0, 4), LOOM_F32, loom_cpu());
  loom_tensor *ints = loom_zeros(LOOM_SHAPE(2, 3, 4), LOOM_I64, loom_cpu());
  for (loom_module *m : {lstm.m, ptr.m}) {
    const char *name = loom_module_type(m);
    EXPECT_TRUE(fails_with(m, &flat, 1, {name, "expected a batch-first sequence [N, L, 4], got [2, 4]"}));
    EXPECT_TRUE(fails_with(m, &wide, 1, {name, "[N, L, 4], got [2, 3, 5]"}));
    EXPECT_TRUE(fails_with(m, &empty, 1, {name, "empty sequence"}));
    EXPECT_TRUE(fails_with(m, &ints, 1, {name, "floating"}));
  }
  loom_tensor *two[2] = {flat, flat};
  EXPECT_TRUE(fails_with(lstm.m, two, 2, {"LSTMClassifier", "forward takes 1 input, got 2"}));
  EXPECT_EQ(loom_pointer_net_forward(lstm.m, wide, nullptr), nullptr);
  EXPECT_NE(error().find("expected a PointerNet, got LSTMClassifier"), std::string::npos) << error();
}

TEST(SeqInput, PointerTargetsAreChecked) {
  loom_model_opts o = {};
  o.in_channels = 1, o.hidden = 8;
  Model ptr(loom_model_pointer_net(&o));
  ASSERT_NE(ptr.m, nullptr) << error();
  ScopeGuard scope;
  loom_tensor *x = loom_rand(LOOM_SHAPE(2, 3, 1), LOOM_F32, loom_cpu());
  loom_tensor *in[2] = {x, T({0, 1, 3, 2, 1, 0}, LOOM_SHAPE(2, 3), LOOM_I64)};
  EXPECT_TRUE(fails_with(ptr.m, in, 2, {"PointerNet", "target 3 at [0, 2] is outside the positions [0, 3)"}));
  in[1] = T({0, 1, 2, 2, 1, 2}, LOOM_SHAPE(2, 3), LOOM_I64);
  EXPECT_TRUE(fails_with(ptr.m, in, 2, {"PointerNet", "row 1 is not a permutation", "position 2 repeats"}));
  in[1] = T({0, 1, 2}, LOOM_SHAPE(1, 3), LOOM_I64);
  EXPECT_TRUE(fails_with(ptr.m, in, 2, {"PointerNet", "expected targets [2, 3]"}));
  in[1] = T({0, 1, 2, 2, 1, 0}, LOOM_SHAPE(2, 3), LOOM_F32);
  EXPECT_TRUE(fails_with(ptr.m, in, 2, {"PointerNet", "targets must be LOOM_I64 or LOOM_I32"}));
  in[1] = T({0, 1, 2, 2, 1, 0}, LOOM_SHAPE(2, 3), LOOM_I32);
  loom_tensor *y = loom_forward_n(ptr.m, in, 2);
  ASSERT_NE(y, nullptr) << error();
  // teacher forcing masks what the targets chose: row 0 step 2 only position 2 is open
  std::vector<double> v = V(y);
  EXPECT_TRUE(std::isinf(v[2 * 3 + 0]) && std::isinf(v[2 * 3 + 1]) && std::isfinite(v[2 * 3 + 2]));
  // greedy decoding points at every position once
  loom_tensor *g = loom_forward(ptr.m, x);
  ASSERT_NE(g, nullptr) << error();
  loom_tensor *picks = loom_argmax(g, 2, false);
  std::vector<double> p = V(picks);
  for (int r = 0; r < 2; r++) {
    std::vector<bool> seen(3, false);
    for (int i = 0; i < 3; i++) seen[(size_t)p[r * 3 + i]] = true;
    EXPECT_TRUE(seen[0] && seen[1] && seen[2]) << "row " << r;
  }
}

TEST(SeqInput, TokenModelsRejectBadIds) {
  loom_model_opts o = {};
  o.embed_dim = 8, o.num_heads = 2, o.num_layers = 1, o.max_len = 6;
  Model tr(loom_model_transformer_classifier(&o));
  Model text(loom_model_text_classifier(&o));
  ASSERT_TRUE(tr.m && text.m) << error();
  ScopeGuard scope;
  loom_tensor *big = T({1, 300, 2}, LOOM_SHAPE(1, 3), LOOM_I64);
  loom_tensor *neg = T({1, 2, 3, 4, 5, -1}, LOOM_SHAPE(2, 3), LOOM_I32);
  loom_tensor *flat = T({1, 2, 3}, LOOM_SHAPE(3), LOOM_I64);
  loom_tensor *floats = T({1, 2, 3}, LOOM_SHAPE(1, 3), LOOM_F32);
  loom_tensor *empty = loom_zeros(LOOM_SHAPE(1, 0), LOOM_I64, loom_cpu());
  loom_tensor *longer = loom_ones(LOOM_SHAPE(1, 7), LOOM_I64, loom_cpu());
  for (loom_module *m : {tr.m, text.m}) {
    const char *name = loom_module_type(m);
    EXPECT_TRUE(fails_with(m, &big, 1, {name, "token id 300 at [0, 1] is outside the vocabulary [0, 256)"}));
    EXPECT_TRUE(fails_with(m, &neg, 1, {name, "token id -1 at [1, 2]"}));
    EXPECT_TRUE(fails_with(m, &flat, 1, {name, "expected token ids [N, L], got [3]"}));
    EXPECT_TRUE(fails_with(m, &floats, 1, {name, "LOOM_I64 or LOOM_I32"}));
    EXPECT_TRUE(fails_with(m, &empty, 1, {name, "empty sequence"}));
  }
  EXPECT_TRUE(fails_with(tr.m, &longer, 1, {"TransformerClassifier", "sequence length 7 exceeds max_len 6"}));
  loom_tensor *ok = loom_forward(text.m, longer);  // no length limit without positions
  EXPECT_NE(ok, nullptr) << error();
}

// Out-of-range class targets are cross-entropy's error, after a valid forward.
TEST(SeqInput, TargetsOutOfRange) {
  Model text(loom_model_text_classifier(nullptr));
  ASSERT_NE(text.m, nullptr) << error();
  ScopeGuard scope;
  loom_tensor *y = loom_forward(text.m, T({1, 2, 3, 4}, LOOM_SHAPE(2, 2), LOOM_I64));
  ASSERT_NE(y, nullptr) << error();
  EXPECT_EQ(loom_cross_entropy(y, T({0, 5}, LOOM_SHAPE(2), LOOM_I64), nullptr), nullptr);
  EXPECT_NE(error().find("5"), std::string::npos) << error();
}

// A CUDA copy gives the CPU's logits (skipped without a GPU).
TEST(SeqCuda, MatchesTheCpu) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  for (const ParityCase &c : {ParityCase{"lstm", build_lstm}, ParityCase{"transformer", build_transformer},
                              ParityCase{"pointer", build_pointer}}) {
    Fixture fx((std::string("models_seq_") + c.name).c_str());
    Model net(c.build());
    ASSERT_TRUE(fx.ok() && net.m) << error();
    ASSERT_EQ(loom_module_load(net.m, state_path(c.name).c_str(), true), 0) << error();
    loom_module_train(net.m, false);
    loom_tensor *cpu = loom_forward(net.m, fx["input"]);
    ASSERT_EQ(loom_module_to_device(net.m, loom_cuda(0)), 0) << error();
    loom_tensor *gpu = loom_forward(net.m, loom_to_device(fx["input"], loom_cuda(0)));
    ASSERT_NE(gpu, nullptr) << c.name << ": " << error();
    EXPECT_TRUE(close_masked(gpu, cpu, 1e-4)) << c.name;
  }
}

// ---- learning (seconds each) ----

// Adam over a module's parameters, freed with the object.
struct Adam {
  Adam(loom_module *m, double lr) {
    loom_adam_opts o = {};
    o.lr = lr;
    opt = loom_adam_module(m, &o);
  }
  ~Adam() { loom_optimizer_free(opt); }
  Adam(const Adam &) = delete;
  Adam &operator=(const Adam &) = delete;
  // One step on loss (in the caller's scope); returns its value or NAN.
  double step(loom_tensor *loss) {
    if (!loss) return NAN;
    loom_optimizer_zero_grad(opt);
    if (loom_backward(loss, nullptr, false) || loom_optimizer_step(opt)) return NAN;
    return loom_item(loss);
  }
  loom_optimizer *opt;
};

// Fraction of rows of logits [N, C] whose argmax is labels[i].
double accuracy(const loom_tensor *logits, const std::vector<int64_t> &labels) {
  ScopeGuard scope;
  std::vector<double> p = V(loom_argmax(logits, 1, false));
  if (p.size() != labels.size()) return 0;
  int hit = 0;
  for (size_t i = 0; i < p.size(); i++) hit += (int64_t)p[i] == labels[i];
  return (double)hit / (double)p.size();
}

// Lowercase words of 3..10 letters a-z from a word list (others dropped).
std::vector<std::string> read_words(const std::string &path) {
  std::vector<std::string> out;
  FILE *fp = fopen(path.c_str(), "r");
  if (!fp) return out;
  char line[256];
  while (fgets(line, sizeof line, fp)) {
    std::string w;
    bool ok = true;
    for (char *c = line; *c && *c != '\n'; c++) {
      char l = (char)((*c >= 'A' && *c <= 'Z') ? *c - 'A' + 'a' : *c);
      ok = ok && l >= 'a' && l <= 'z';
      w += l;
    }
    if (ok && w.size() >= 3 && w.size() <= 10) out.push_back(w);
  }
  fclose(fp);
  return out;
}

constexpr int kWordLen = 10;

// One-hot letters [N, 10, 26], each word right-aligned (zeros before it), so
// the last step is the word's last letter.
loom_tensor *one_hot_words(const std::vector<std::string> &words, size_t from, size_t n) {
  std::vector<float> x(n * kWordLen * 26, 0.0f);
  for (size_t i = 0; i < n; i++) {
    const std::string &w = words[from + i];
    size_t off = kWordLen - w.size();
    for (size_t k = 0; k < w.size(); k++) x[(i * kWordLen + off + k) * 26 + (size_t)(w[k] - 'a')] = 1.0f;
  }
  return loom_from_host(x.data(), LOOM_SHAPE((int64_t)n, kWordLen, 26), LOOM_F32, loom_cpu());
}

loom_tensor *labels_tensor(const std::vector<int64_t> &y, size_t from, size_t n) {
  return loom_from_host(y.data() + from, LOOM_SHAPE((int64_t)n), LOOM_I64, loom_cpu());
}

struct Lang {
  const char *name, *file;
};

class WordLanguage : public ::testing::TestWithParam<loom_rnn_mode> {};

// The char-RNN classifier tells English, German and Italian words apart from
// their letters: 300 training and 100 held-out words per language (Debian
// wamerican, wngerman, witalian), chance 1/3.
TEST_P(WordLanguage, HeldOutAccuracyWellAboveChance) {
  const Lang langs[] = {{"English", "/usr/share/dict/american-english"},
                        {"German", "/usr/share/dict/ngerman"},
                        {"Italian", "/usr/share/dict/italian"}};
  const size_t train_per = 300, test_per = 100;
  std::vector<std::string> train_w, test_w;
  std::vector<int64_t> train_y, test_y;
  std::mt19937 rng(7);
  for (int64_t k = 0; k < 3; k++) {
    std::vector<std::string> all = read_words(langs[k].file);
    if (all.size() < train_per + test_per)
      GTEST_SKIP() << langs[k].file << " is missing or short (Debian packages wamerican, wngerman, witalian)";
    std::shuffle(all.begin(), all.end(), rng);
    for (size_t i = 0; i < train_per + test_per; i++) {
      (i < train_per ? train_w : test_w).push_back(all[i]);
      (i < train_per ? train_y : test_y).push_back(k);
    }
  }
  std::vector<size_t> order(train_w.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  loom_manual_seed(1);
  loom_model_opts o = {};
  o.in_channels = 26, o.hidden = 48, o.num_classes = 3;
  Model net(loom_model_rnn_classifier(GetParam(), &o));
  ASSERT_NE(net.m, nullptr) << error();
  Adam adam(net.m, 1e-2);
  const size_t batch = 30;
  double first = NAN, last = NAN;
  for (int epoch = 0; epoch < 8; epoch++) {
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<std::string> w(order.size());
    std::vector<int64_t> y(order.size());
    for (size_t i = 0; i < order.size(); i++) w[i] = train_w[order[i]], y[i] = train_y[order[i]];
    for (size_t b = 0; b + batch <= w.size(); b += batch) {
      ScopeGuard scope;
      last = adam.step(loom_cross_entropy(loom_forward(net.m, one_hot_words(w, b, batch)), labels_tensor(y, b, batch),
                                          nullptr));
      ASSERT_FALSE(std::isnan(last)) << error();
      if (std::isnan(first)) first = last;
    }
  }
  loom_module_train(net.m, false);
  ScopeGuard scope;
  double train_acc = accuracy(loom_forward(net.m, one_hot_words(train_w, 0, train_w.size())), train_y);
  double test_acc = accuracy(loom_forward(net.m, one_hot_words(test_w, 0, test_w.size())), test_y);
  printf("%s: loss %.3f -> %.3f, accuracy train %.3f, held-out %.3f (chance 0.333)\n", loom_module_type(net.m), first,
         last, train_acc, test_acc);
  EXPECT_GT(test_acc, 0.6);
  EXPECT_LT(last, first);
}

INSTANTIATE_TEST_SUITE_P(CharRNN, WordLanguage, ::testing::Values(LOOM_RNN_LSTM, LOOM_RNN_GRU),
                         [](const ::testing::TestParamInfo<loom_rnn_mode> &p) {
                           return std::string(p.param == LOOM_RNN_LSTM ? "LSTM" : "GRU");
                         });

// Token sequences of 6..12 ids padded with 0 to 12.
constexpr int kTokLen = 12;

// Sentiment from token sets: ids 1..6 are positive, 7..12 negative, 13..39
// neutral; the label is whether positives outnumber negatives (no ties).
void sentiment_data(std::mt19937 &rng, size_t n, std::vector<int64_t> &ids, std::vector<int64_t> &labels) {
  std::uniform_int_distribution<int> len(6, kTokLen), pos(1, 6), neg(7, 12), neutral(13, 39), coin(0, 9);
  while (labels.size() < n) {
    int l = len(rng), score = 0;
    std::vector<int64_t> row(kTokLen, 0);
    for (int i = 0; i < l; i++) {
      int c = coin(rng);
      row[i] = c < 2 ? pos(rng) : c < 4 ? neg(rng) : neutral(rng);
      score += c < 2 ? 1 : c < 4 ? -1 : 0;
    }
    if (score == 0) continue;
    ids.insert(ids.end(), row.begin(), row.end());
    labels.push_back(score > 0);
  }
}

// Whether a sequence holds both token 1 and token 2 (anywhere): half hold
// both, a quarter only one of them, a quarter only one of the other; the rest
// are ids 3..19. Not a linear function of the token counts / length.
void pair_data(std::mt19937 &rng, size_t n, std::vector<int64_t> &ids, std::vector<int64_t> &labels) {
  std::uniform_int_distribution<int> len(6, kTokLen), other(3, 19), kind(0, 3);
  for (size_t s = 0; s < n; s++) {
    int l = len(rng), k = kind(rng);
    std::vector<int64_t> row(kTokLen, 0);
    for (int i = 0; i < l; i++) row[i] = other(rng);
    std::uniform_int_distribution<int> at(0, l - 1);
    int a = at(rng), b = at(rng);
    while (b == a) b = at(rng);
    if (k != 3) row[a] = 1;          // k 0, 1: both; 2: only 1
    if (k != 2) row[b] = 2;          // 3: only 2
    ids.insert(ids.end(), row.begin(), row.end());
    labels.push_back(k < 2);
  }
}

// Trains a token model on (ids, labels) for epochs, batch 50; returns the
// held-out accuracy on (tids, tlabels).
double train_tokens(loom_module *m, double lr, int epochs, const std::vector<int64_t> &ids,
                    const std::vector<int64_t> &labels, const std::vector<int64_t> &tids,
                    const std::vector<int64_t> &tlabels, double *first, double *last) {
  Adam adam(m, lr);
  const size_t batch = 50, n = labels.size();
  *first = NAN;
  for (int e = 0; e < epochs; e++)
    for (size_t b = 0; b + batch <= n; b += batch) {
      ScopeGuard scope;
      loom_tensor *x = loom_from_host(ids.data() + b * kTokLen, LOOM_SHAPE((int64_t)batch, kTokLen), LOOM_I64,
                                      loom_cpu());
      *last = adam.step(loom_cross_entropy(loom_forward(m, x), labels_tensor(labels, b, batch), nullptr));
      if (std::isnan(*last)) return 0;
      if (std::isnan(*first)) *first = *last;
    }
  loom_module_train(m, false);
  ScopeGuard scope;
  loom_tensor *x = loom_from_host(tids.data(), LOOM_SHAPE((int64_t)tlabels.size(), kTokLen), LOOM_I64, loom_cpu());
  return accuracy(loom_forward(m, x), tlabels);
}

TEST(TokenTasks, TextClassifierLearnsSentiment) {
  std::mt19937 rng(3);
  std::vector<int64_t> ids, labels, tids, tlabels;
  sentiment_data(rng, 2000, ids, labels);
  sentiment_data(rng, 500, tids, tlabels);
  loom_manual_seed(2);
  loom_model_opts o = {};
  o.vocab_size = 40, o.embed_dim = 16;
  Model net(loom_model_text_classifier(&o));
  ASSERT_NE(net.m, nullptr) << error();
  double first, last;
  double acc = train_tokens(net.m, 2e-2, 5, ids, labels, tids, tlabels, &first, &last);
  printf("TextClassifier sentiment: loss %.3f -> %.3f, held-out accuracy %.3f\n", first, last, acc);
  EXPECT_GT(acc, 0.9) << error();
}

TEST(TokenTasks, TransformerLearnsTokenPair) {
  std::mt19937 rng(4);
  std::vector<int64_t> ids, labels, tids, tlabels;
  pair_data(rng, 2000, ids, labels);
  pair_data(rng, 500, tids, tlabels);
  loom_manual_seed(2);
  loom_model_opts o = {};
  o.vocab_size = 20, o.embed_dim = 32, o.num_heads = 2, o.num_layers = 1, o.max_len = 16, o.set_dropout = true;
  Model net(loom_model_transformer_classifier(&o));
  ASSERT_NE(net.m, nullptr) << error();
  double first, last;
  double acc = train_tokens(net.m, 3e-3, 4, ids, labels, tids, tlabels, &first, &last);
  printf("TransformerClassifier token pair: loss %.3f -> %.3f, held-out accuracy %.3f (chance 0.5)\n", first, last,
         acc);
  EXPECT_GT(acc, 0.9) << error();
}

// The pointer network learns to sort 5 numbers in [0, 1) (teacher forcing on
// random batches); greedy decoding of 500 new sequences is scored per output
// position and per whole sequence (chance 1/5 and 1/120).
TEST(PointerNetLearns, SortsFiveNumbers) {
  const int64_t L = 5, batch = 64;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(0, 1);
  auto make = [&](int64_t n, std::vector<float> &x, std::vector<int64_t> &order) {
    x.resize((size_t)(n * L));
    order.resize((size_t)(n * L));
    for (auto &v : x) v = u(rng);
    for (int64_t r = 0; r < n; r++) {
      int64_t *o = &order[(size_t)(r * L)];
      for (int64_t i = 0; i < L; i++) o[i] = i;
      std::sort(o, o + L, [&](int64_t a, int64_t b) { return x[(size_t)(r * L + a)] < x[(size_t)(r * L + b)]; });
    }
  };
  loom_manual_seed(3);
  loom_model_opts o = {};
  o.hidden = 32;
  Model net(loom_model_pointer_net(&o));
  ASSERT_NE(net.m, nullptr) << error();
  Adam adam(net.m, 1e-2);
  double first = NAN, last = NAN;
  std::vector<float> x;
  std::vector<int64_t> order;
  for (int step = 0; step < 200; step++) {
    make(batch, x, order);
    ScopeGuard scope;
    loom_tensor *xt = loom_from_host(x.data(), LOOM_SHAPE(batch, L, 1), LOOM_F32, loom_cpu());
    loom_tensor *t = loom_from_host(order.data(), LOOM_SHAPE(batch, L), LOOM_I64, loom_cpu());
    loom_tensor *logits = loom_pointer_net_forward(net.m, xt, t);
    last = adam.step(loom_cross_entropy(loom_reshape(logits, LOOM_SHAPE(-1, L)), loom_reshape(t, LOOM_SHAPE(-1)),
                                        nullptr));
    ASSERT_FALSE(std::isnan(last)) << error();
    if (std::isnan(first)) first = last;
  }
  loom_module_train(net.m, false);
  const int64_t n = 500;
  make(n, x, order);
  ScopeGuard scope;
  loom_tensor *g = loom_forward(net.m, loom_from_host(x.data(), LOOM_SHAPE(n, L, 1), LOOM_F32, loom_cpu()));
  ASSERT_NE(g, nullptr) << error();
  std::vector<double> picks = V(loom_argmax(g, 2, false));
  int pos_hits = 0, seq_hits = 0;
  for (int64_t r = 0; r < n; r++) {
    int row = 0;
    for (int64_t i = 0; i < L; i++) row += (int64_t)picks[(size_t)(r * L + i)] == order[(size_t)(r * L + i)];
    pos_hits += row;
    seq_hits += row == L;
  }
  double pos_acc = (double)pos_hits / (double)(n * L), seq_acc = (double)seq_hits / (double)n;
  printf("PointerNet sorting 5 numbers: loss %.3f -> %.3f, per-position accuracy %.3f, whole sequence %.3f\n", first,
         last, pos_acc, seq_acc);
  EXPECT_GT(pos_acc, 0.8);
  EXPECT_GT(seq_acc, 0.4);
}

}  // namespace
