// Recurrent layers (RNN, LSTM, GRU and cells) against PyTorch fixtures
// (tools/fixtures/gen_rnn.py), gradient checks, CPU vs CUDA, bad input.
#include <cmath>
#include <string>

#include "loom_test.h"

#define ASSERT_T(t) ASSERT_NE((t), nullptr) << loom_last_error()

namespace {

// Copies every parameter of m from the fixture entry of the same name.
void load_params(loom_module *m, const Fixture &fx) {
  loom_named_tensors *l = loom_module_named_parameters(m);
  ASSERT_NE(l, nullptr);
  for (int i = 0; i < l->n; i++) {
    loom_tensor *src = fx[l->names[i]];
    ASSERT_NE(src, nullptr) << l->names[i];
    ASSERT_EQ(loom_copy_(l->tensors[i], src), 0) << l->names[i] << ": " << loom_last_error();
  }
  loom_named_tensors_free(l);
}

// A leaf copy of a fixture tensor that requires grad.
loom_tensor *leaf(loom_tensor *t) {
  loom_tensor *c = loom_clone(t);
  if (c) loom_set_requires_grad(c, true);
  return c;
}

enum class Kind { Seq, Cell, LstmCell };

// Runs m (already in f64 with the fixture's parameters) on the fixture's
// inputs and compares outputs and every gradient with PyTorch's.
void check_fixture(const char *name, loom_module *m, Kind kind, double tol = 1e-9) {
  ScopeGuard g;
  Fixture fx(name);
  ASSERT_TRUE(fx.ok());
  load_params(m, fx);
  bool has_h0 = loom_map_get(fx.map, "h0") != nullptr, has_c0 = loom_map_get(fx.map, "c0") != nullptr;
  loom_tensor *x = leaf(fx["x"]);
  loom_tensor *h0 = has_h0 ? leaf(fx["h0"]) : nullptr, *c0 = has_c0 ? leaf(fx["c0"]) : nullptr;
  loom_tensor *out = nullptr, *hn = nullptr, *cn = nullptr;
  if (kind == Kind::Seq) {  // packed when the fixture has lengths
    const loom_tensor *lengths = loom_map_get(fx.map, "lengths");
    out = lengths ? loom_rnn_forward_packed(m, x, lengths, h0, c0, &hn, &cn) : loom_rnn_forward(m, x, h0, c0, &hn, &cn);
  } else if (kind == Kind::LstmCell) {
    ASSERT_EQ(loom_lstm_cell_forward(m, x, h0, c0, &out, &cn), 0) << loom_last_error();
  } else {
    loom_tensor *in[2] = {x, h0};
    out = loom_forward_n(m, in, has_h0 ? 2 : 1);
  }
  ASSERT_T(out);
  EXPECT_TRUE(close(out, fx["out"], tol));
  loom_tensor *loss = loom_sum(loom_mul(out, fx["w_out"]), nullptr, 0, false);
  if (loom_map_get(fx.map, "h_n")) {
    ASSERT_T(hn);
    EXPECT_TRUE(close(hn, fx["h_n"], tol));
    loss = loom_add(loss, loom_sum(loom_mul(hn, fx["w_h"]), nullptr, 0, false));
  }
  if (loom_map_get(fx.map, "c_n")) {
    ASSERT_T(cn);
    EXPECT_TRUE(close(cn, fx["c_n"], tol));
    loss = loom_add(loss, loom_sum(loom_mul(cn, fx["w_c"]), nullptr, 0, false));
  }
  ASSERT_T(loss);
  ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << loom_last_error();
  EXPECT_TRUE(close(loom_grad(x), fx["grad_x"], tol));
  if (h0) EXPECT_TRUE(close(loom_grad(h0), fx["grad_h0"], tol));
  if (c0) EXPECT_TRUE(close(loom_grad(c0), fx["grad_c0"], tol));
  loom_named_tensors *l = loom_module_named_parameters(m);
  for (int i = 0; i < l->n; i++)
    EXPECT_TRUE(close(loom_grad(l->tensors[i]), fx[std::string("grad.") + l->names[i]], tol)) << l->names[i];
  loom_named_tensors_free(l);
}

void run_seq(const char *name, loom_module *m) {
  ASSERT_T(m);
  ASSERT_EQ(loom_module_to_dtype(m, LOOM_F64), 0);
  check_fixture(name, m, Kind::Seq);
  loom_module_free(m);
}

}  // namespace

TEST(NnRnn, LstmGateOrderWithInitialState) { run_seq("rnn_lstm", loom_nn_lstm(3, 4, nullptr)); }

TEST(NnRnn, GruGateOrderBidirectional) {
  loom_rnn_options o{};
  o.bidirectional = true;
  run_seq("rnn_gru_bidir", loom_nn_gru(3, 4, &o));
}

TEST(NnRnn, LstmTwoLayersBidirectionalBatchFirst) {
  loom_rnn_options o{};
  o.num_layers = 2;
  o.bidirectional = true;
  o.batch_first = true;
  run_seq("rnn_lstm_2l_bidir_bf", loom_nn_lstm(3, 4, &o));
}

TEST(NnRnn, GruTwoLayersBatchFirstNoBias) {
  loom_rnn_options o{};
  o.num_layers = 2;
  o.batch_first = true;
  o.no_bias = true;
  run_seq("rnn_gru_2l_bf_nobias", loom_nn_gru(3, 4, &o));
}

TEST(NnRnn, RnnReluTwoLayersBidirectional) {
  loom_rnn_options o{};
  o.num_layers = 2;
  o.bidirectional = true;
  o.relu = true;
  run_seq("rnn_relu_2l_bidir", loom_nn_rnn(3, 4, &o));
}

TEST(NnRnn, RnnTanh) { run_seq("rnn_tanh", loom_nn_rnn(3, 5, nullptr)); }

// proj_size: h = W_hr (o * tanh(c)); weight_hr_l{k}{s} after each direction's biases.
TEST(NnRnn, LstmProjection) {
  loom_rnn_options o{};
  o.num_layers = 2, o.bidirectional = true, o.batch_first = true, o.proj_size = 2;
  loom_module *m = loom_nn_lstm(3, 5, &o);
  ASSERT_T(m);
  loom_named_tensors *l = loom_module_named_parameters(m);
  ASSERT_EQ(l->n, 20);
  EXPECT_STREQ(l->names[4], "weight_hr_l0");
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(l->tensors[4]), LOOM_SHAPE(2, 5)));
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(l->tensors[1]), LOOM_SHAPE(20, 2)));   // weight_hh_l0 [4H, P]
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(l->tensors[10]), LOOM_SHAPE(20, 4)));  // weight_ih_l1 [4H, D P]
  loom_named_tensors_free(l);
  run_seq("rnn_lstm_proj", m);
  loom_rnn_options bad{};
  bad.proj_size = 5;
  EXPECT_EQ(loom_nn_lstm(3, 5, &bad), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("proj_size"), std::string::npos) << loom_last_error();
  bad.proj_size = 2;
  EXPECT_EQ(loom_nn_gru(3, 5, &bad), nullptr);
}

// Packed sequences: PyTorch's pack_padded_sequence / pad_packed_sequence
// round trip, lengths unsorted.
TEST(NnRnn, PackedSequences) {
  loom_rnn_options g{};
  g.num_layers = 2, g.bidirectional = true, g.batch_first = true;
  run_seq("rnn_gru_packed", loom_nn_gru(3, 4, &g));
  loom_rnn_options lp{};
  lp.bidirectional = true, lp.proj_size = 3;
  run_seq("rnn_lstm_proj_packed", loom_nn_lstm(3, 4, &lp));
  run_seq("rnn_tanh_packed", loom_nn_rnn(3, 4, nullptr));
  // full lengths give the unpacked result; bad lengths are refused
  ScopeGuard scope;
  loom_module *m = loom_nn_gru(3, 4, nullptr);
  loom_tensor *x = loom_randn(LOOM_SHAPE(5, 2, 3), LOOM_F32, loom_cpu()), *h1 = nullptr, *h2 = nullptr;
  loom_tensor *full = loom_full(LOOM_SHAPE(2), 5, LOOM_I64, loom_cpu());
  loom_tensor *a = loom_rnn_forward_packed(m, x, full, nullptr, nullptr, &h1, nullptr);
  loom_tensor *b = loom_rnn_forward(m, x, nullptr, nullptr, &h2, nullptr);
  ASSERT_TRUE(a && b) << loom_last_error();
  EXPECT_EQ(V(a), V(b));
  EXPECT_EQ(V(h1), V(h2));
  for (double bad : {0.0, 6.0}) {
    loom_tensor *len = T({5, bad}, LOOM_SHAPE(2), LOOM_I64);
    EXPECT_EQ(loom_rnn_forward_packed(m, x, len, nullptr, nullptr, nullptr, nullptr), nullptr);
    EXPECT_NE(std::string(loom_last_error()).find("GRU: every length must lie in [1, 5]"), std::string::npos)
        << loom_last_error();
  }
  EXPECT_EQ(loom_rnn_forward_packed(m, x, T({5, 1, 2}, LOOM_SHAPE(3), LOOM_I64), nullptr, nullptr, nullptr, nullptr),
            nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("lengths"), std::string::npos) << loom_last_error();
  EXPECT_EQ(loom_rnn_forward_packed(m, x, T({5, 1}, LOOM_SHAPE(2), LOOM_F32), nullptr, nullptr, nullptr, nullptr),
            nullptr);
  loom_module_free(m);
}

TEST(NnRnn, LstmUnbatched) {
  loom_rnn_options o{};
  o.bidirectional = true;
  run_seq("rnn_lstm_unbatched", loom_nn_lstm(3, 4, &o));
}

TEST(NnRnn, Cells) {
  struct {
    const char *name;
    loom_module *m;
    Kind kind;
  } cases[] = {
      {"rnn_cell_tanh", loom_nn_rnn_cell(3, 4, nullptr), Kind::Cell},
      {"rnn_cell_relu", nullptr, Kind::Cell},
      {"rnn_lstm_cell", loom_nn_lstm_cell(3, 4, nullptr), Kind::LstmCell},
      {"rnn_gru_cell", loom_nn_gru_cell(3, 4, nullptr), Kind::Cell},
  };
  loom_rnn_cell_options relu{};
  relu.relu = true;
  cases[1].m = loom_nn_rnn_cell(3, 4, &relu);
  for (auto &c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_T(c.m);
    ASSERT_EQ(loom_module_to_dtype(c.m, LOOM_F64), 0);
    check_fixture(c.name, c.m, c.kind);
    loom_module_free(c.m);
  }
}

TEST(NnRnn, ParameterNamesShapesAndInit) {
  ScopeGuard g;
  loom_rnn_options o{};
  o.num_layers = 2;
  o.bidirectional = true;
  loom_module *m = loom_nn_gru(5, 6, &o);
  ASSERT_T(m);
  EXPECT_STREQ(loom_module_type(m), "GRU");
  const char *names[] = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                         "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse",
                         "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1",
                         "weight_ih_l1_reverse", "weight_hh_l1_reverse", "bias_ih_l1_reverse", "bias_hh_l1_reverse"};
  loom_named_tensors *l = loom_module_named_parameters(m);
  ASSERT_EQ(l->n, 16);
  double bound = 1 / std::sqrt(6.0);
  for (int i = 0; i < 16; i++) {
    EXPECT_STREQ(l->names[i], names[i]);
    std::vector<double> v = V(l->tensors[i]);
    double lo = 1, hi = -1;
    for (double e : v) lo = std::min(lo, e), hi = std::max(hi, e);
    EXPECT_GE(lo, -bound) << names[i];
    EXPECT_LE(hi, bound) << names[i];
    EXPECT_GT(hi - lo, bound / 2) << names[i];  // really random, not constant
  }
  loom_named_tensors_free(l);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(loom_module_param(m, "weight_ih_l0")), LOOM_SHAPE(18, 5)));
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(loom_module_param(m, "weight_ih_l1_reverse")), LOOM_SHAPE(18, 12)));
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(loom_module_param(m, "weight_hh_l1")), LOOM_SHAPE(18, 6)));
  EXPECT_EQ(loom_module_num_params(m, false), 2 * (18 * 5 + 18 * 6 + 36) + 2 * (18 * 12 + 18 * 6 + 36));
  const loom_rnn_config *cfg = (const loom_rnn_config *)loom_module_state(m);
  EXPECT_EQ(cfg->num_layers, 2);
  EXPECT_TRUE(cfg->bidirectional && cfg->bias);
  loom_module_free(m);

  loom_rnn_cell_options co{};
  co.no_bias = true;
  m = loom_nn_lstm_cell(3, 4, &co);
  ASSERT_T(m);
  EXPECT_STREQ(loom_module_type(m), "LSTMCell");
  EXPECT_EQ(loom_module_num_params(m, false), 16 * 3 + 16 * 4);
  EXPECT_EQ(loom_module_param(m, "bias_ih"), nullptr);
  loom_module_free(m);
}

TEST(NnRnn, Macs) {
  ScopeGuard g;
  loom_rnn_options o{};
  o.num_layers = 2;
  o.bidirectional = true;
  o.batch_first = true;
  loom_module *m = loom_nn_lstm(3, 4, &o);
  ASSERT_T(m);
  loom_tensor *x = loom_zeros(LOOM_SHAPE(2, 5, 3), LOOM_F32, loom_cpu());  // N = 2, L = 5
  loom_tensor *out = loom_forward(m, x);
  ASSERT_T(out);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(out), LOOM_SHAPE(2, 5, 8)));
  int64_t per_step_l0 = 16 * (3 + 4) * 2, per_step_l1 = 16 * (8 + 4) * 2;
  EXPECT_EQ(loom_module_kind_of(m)->macs(m, &x, 1, out), 5 * 2 * (per_step_l0 + per_step_l1));
  loom_module_free(m);
  m = loom_nn_gru_cell(3, 4, nullptr);
  loom_tensor *xc = loom_zeros(LOOM_SHAPE(7, 3), LOOM_F32, loom_cpu());
  EXPECT_EQ(loom_module_kind_of(m)->macs(m, &xc, 1, nullptr), 7 * 12 * (3 + 4));
  loom_module_free(m);
}

TEST(NnRnn, DropoutBetweenLayers) {
  ScopeGuard g;
  loom_rnn_options o{};
  o.num_layers = 3;
  o.dropout = 0.5;
  loom_module *m = loom_nn_lstm(4, 8, &o);
  ASSERT_T(m);
  loom_tensor *x = loom_randn(LOOM_SHAPE(6, 3, 4), LOOM_F32, loom_cpu());
  loom_module_train(m, false);
  loom_tensor *e1 = loom_forward(m, x), *e2 = loom_forward(m, x);
  ASSERT_T(e1);
  EXPECT_EQ(rel_err(e1, e2), 0.0);
  loom_module_train(m, true);
  loom_tensor *t1 = loom_forward(m, x), *t2 = loom_forward(m, x);
  ASSERT_T(t1);
  ASSERT_T(t2);
  EXPECT_GT(rel_err(t1, t2), 1e-3);
  EXPECT_GT(rel_err(t1, e1), 1e-3);
  // The same weights without dropout give the eval output in training too.
  o.dropout = 0;
  loom_module *m0 = loom_nn_lstm(4, 8, &o);
  loom_named_tensors *a = loom_module_named_parameters(m), *b = loom_module_named_parameters(m0);
  for (int i = 0; i < a->n; i++) ASSERT_EQ(loom_copy_(b->tensors[i], a->tensors[i]), 0);
  loom_named_tensors_free(a);
  loom_named_tensors_free(b);
  loom_module_train(m0, true);
  EXPECT_LT(rel_err(loom_forward(m0, x), e1), 1e-6);
  loom_module_free(m);
  loom_module_free(m0);
}

TEST(NnRnn, ForwardNAndStates) {
  ScopeGuard g;
  loom_module *m = loom_nn_gru(3, 4, nullptr);
  loom_tensor *x = loom_randn(LOOM_SHAPE(5, 2, 3), LOOM_F32, loom_cpu());
  loom_tensor *h0 = loom_randn(LOOM_SHAPE(1, 2, 4), LOOM_F32, loom_cpu());
  loom_tensor *in[2] = {x, h0};
  loom_tensor *a = loom_forward_n(m, in, 2);
  loom_tensor *hn = nullptr, *cn = x;
  loom_tensor *b = loom_rnn_forward(m, x, h0, nullptr, &hn, &cn);
  ASSERT_T(a);
  ASSERT_T(b);
  EXPECT_EQ(rel_err(a, b), 0.0);
  EXPECT_EQ(cn, nullptr);
  // h_n of a one-layer unidirectional GRU is the output's last step.
  EXPECT_EQ(rel_err(loom_select(hn, 0, 0), loom_select(b, 0, 4)), 0.0);
  // zeros h0 is the same as no h0
  EXPECT_EQ(rel_err(loom_forward(m, x), loom_rnn_forward(m, x, loom_zeros_like(h0), nullptr, nullptr, nullptr)), 0.0);
  loom_module_free(m);
}

// ---- finite-difference gradient checks of the functional forms ----

namespace {
loom_tensor *rnd(loom_shape s, bool grad = true) {
  loom_tensor *t = loom_mul_scalar(loom_randn(s, LOOM_F64, loom_cpu()), 0.5);
  if (grad) loom_set_requires_grad(t, true);
  return t;
}
// Flattened out, h_n (and c_n) joined into one tensor for gradcheck.
loom_tensor *joined(loom_tensor *out, loom_tensor *hn, loom_tensor *cn) {
  loom_tensor *parts[3] = {loom_flatten(out, 0, -1), loom_flatten(hn, 0, -1), cn ? loom_flatten(cn, 0, -1) : nullptr};
  return loom_cat(parts, cn ? 3 : 2, 0);
}
}  // namespace

TEST(NnRnnGrad, SequencesAllModes) {
  ScopeGuard g;
  const int64_t I = 2, H = 3, N = 2, L = 3;
  for (loom_rnn_mode mode : {LOOM_RNN_TANH, LOOM_RNN_RELU, LOOM_RNN_LSTM, LOOM_RNN_GRU}) {
    SCOPED_TRACE((int)mode);
    int G = mode == LOOM_RNN_LSTM ? 4 : mode == LOOM_RNN_GRU ? 3 : 1;
    bool lstm = mode == LOOM_RNN_LSTM;
    // two layers, bidirectional, batch_first: exercises every path
    std::vector<loom_tensor *> in = {rnd(LOOM_SHAPE(N, L, I)), rnd(LOOM_SHAPE(4, N, H))};
    if (lstm) in.push_back(rnd(LOOM_SHAPE(4, N, H)));
    size_t w0 = in.size();
    for (int k = 0; k < 2; k++)
      for (int d = 0; d < 2; d++) {
        in.push_back(rnd(LOOM_SHAPE(G * H, k ? 2 * H : I)));
        in.push_back(rnd(LOOM_SHAPE(G * H, H)));
        in.push_back(rnd(LOOM_SHAPE(G * H)));
        in.push_back(rnd(LOOM_SHAPE(G * H)));
      }
    auto f = [&](const std::vector<loom_tensor *> &v) {
      loom_tensor *hn = nullptr, *cn = nullptr;
      loom_rnn_args a{};
      a.num_layers = 2, a.bidirectional = true, a.batch_first = true;
      loom_tensor *out = loom_rnn(mode, v[0], v[1], lstm ? v[2] : nullptr, v.data() + w0, &a, &hn, lstm ? &cn : nullptr);
      return out ? joined(out, hn, cn) : nullptr;
    };
    EXPECT_TRUE(gradcheck(f, in));
  }
}

TEST(NnRnnGrad, Cells) {
  ScopeGuard g;
  const int64_t I = 3, H = 2, N = 2;
  for (loom_rnn_mode mode : {LOOM_RNN_TANH, LOOM_RNN_RELU, LOOM_RNN_LSTM, LOOM_RNN_GRU}) {
    SCOPED_TRACE((int)mode);
    int G = mode == LOOM_RNN_LSTM ? 4 : mode == LOOM_RNN_GRU ? 3 : 1;
    std::vector<loom_tensor *> in = {rnd(LOOM_SHAPE(N, I)),     rnd(LOOM_SHAPE(N, H)),     rnd(LOOM_SHAPE(N, H)),
                                     rnd(LOOM_SHAPE(G * H, I)), rnd(LOOM_SHAPE(G * H, H)), rnd(LOOM_SHAPE(G * H)),
                                     rnd(LOOM_SHAPE(G * H))};
    auto f = [&](const std::vector<loom_tensor *> &v) -> loom_tensor * {
      switch (mode) {
      case LOOM_RNN_TANH: return loom_rnn_tanh_cell(v[0], v[1], v[3], v[4], v[5], v[6]);
      case LOOM_RNN_RELU: return loom_rnn_relu_cell(v[0], v[1], v[3], v[4], v[5], v[6]);
      case LOOM_RNN_GRU: return loom_gru_cell(v[0], v[1], v[3], v[4], v[5], v[6]);
      case LOOM_RNN_LSTM: break;
      }
      loom_tensor *c1 = nullptr;
      loom_tensor *h1 = loom_lstm_cell(v[0], v[1], v[2], v[3], v[4], v[5], v[6], &c1);
      loom_tensor *parts[2] = {h1, c1};
      return h1 ? loom_cat(parts, 2, 1) : nullptr;
    };
    if (mode != LOOM_RNN_LSTM) loom_set_requires_grad(in[2], false);  // c unused
    EXPECT_TRUE(gradcheck(f, in));
  }
}
