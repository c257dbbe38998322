// The sequence models of loom/models.h: the RNN / LSTM / GRU, Transformer and
// text classifiers and the pointer network. Parity with PyTorch twins
// (tools/fixtures/gen_models_seq.py: state_dicts loaded strictly, eval logits,
// one training step's gradients), shapes, options, bad input and CUDA against
// the CPU. The learning runs are in test_models_seq_learn.cpp.
#include <cmath>
#include <string>
#include <vector>

#include "loom_test.h"

namespace {

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

}  // namespace
