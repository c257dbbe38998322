// Recurrent layers: bad input gives clear errors; CPU vs CUDA (forward and
// gradients, f32 / f16 / bf16).
#include <string>

#include "loom_test.h"

#define ASSERT_T(t) ASSERT_NE((t), nullptr) << loom_last_error()

namespace {

// The last error mentions `what`.
#define EXPECT_ERROR(what)                                                                   \
  EXPECT_NE(std::string(loom_last_error()).find(what), std::string::npos)                    \
      << "error: " << loom_last_error() << "\nexpected to contain: " << (what)
// The call returned NULL and the error mentions `what`.
#define EXPECT_FAILS(call, what)         \
  do {                                   \
    EXPECT_EQ((call), nullptr) << #call; \
    EXPECT_ERROR(what) << "\n" << #call; \
  } while (0)

loom_tensor *randn(loom_shape s, loom_dtype dt = LOOM_F32) { return loom_randn(s, dt, loom_cpu()); }

}  // namespace

TEST(NnRnnErrors, BadOptions) {
  loom_rnn_options o{};
  EXPECT_FAILS(loom_nn_lstm(0, 4, &o), "LSTM");
  EXPECT_FAILS(loom_nn_gru(3, -1, &o), "GRU");
  o.num_layers = -2;
  EXPECT_FAILS(loom_nn_rnn(3, 4, &o), "num_layers");
  o = {};
  o.dropout = 1.5;
  EXPECT_FAILS(loom_nn_lstm(3, 4, &o), "dropout");
  o = {};
  o.relu = true;
  EXPECT_FAILS(loom_nn_gru(3, 4, &o), "relu");
  loom_rnn_cell_options co{};
  co.relu = true;
  EXPECT_FAILS(loom_nn_lstm_cell(3, 4, &co), "LSTMCell");
  EXPECT_FAILS(loom_nn_gru_cell(3, 0, nullptr), "GRUCell");
}

TEST(NnRnnErrors, BadInput) {
  ScopeGuard g;
  loom_module *lstm = loom_nn_lstm(3, 4, nullptr), *gru = loom_nn_gru(3, 4, nullptr);
  ASSERT_T(lstm);
  ASSERT_T(gru);
  // rank and feature count
  EXPECT_FAILS(loom_forward(lstm, randn(LOOM_SHAPE(3))), "LSTM: expected a non-empty input [L, N, input_size]");
  EXPECT_FAILS(loom_forward(lstm, randn(LOOM_SHAPE(5, 2, 3, 1))), "LSTM");
  EXPECT_FAILS(loom_forward(gru, randn(LOOM_SHAPE(5, 2, 4))), "GRU: expected input with 3 features");
  EXPECT_FAILS(loom_forward(gru, randn(LOOM_SHAPE(0, 2, 3))), "GRU");
  // dtype mismatch and non-floating input
  EXPECT_FAILS(loom_forward(gru, randn(LOOM_SHAPE(5, 2, 3), LOOM_F64)), "dtype");
  EXPECT_FAILS(loom_forward(gru, loom_zeros(LOOM_SHAPE(5, 2, 3), LOOM_I64, loom_cpu())), "GRU: expected a floating");
  // state shapes and kinds
  loom_tensor *x = randn(LOOM_SHAPE(5, 2, 3));
  EXPECT_FAILS(loom_rnn_forward(gru, x, randn(LOOM_SHAPE(2, 2, 4)), nullptr, nullptr, nullptr), "GRU: expected h0 of shape [1, 2, 4]");
  EXPECT_FAILS(loom_rnn_forward(gru, x, randn(LOOM_SHAPE(1, 2, 4)), randn(LOOM_SHAPE(1, 2, 4)), nullptr, nullptr),
               "c0 is for LSTM only");
  EXPECT_FAILS(loom_rnn_forward(lstm, x, randn(LOOM_SHAPE(1, 2, 4)), nullptr, nullptr, nullptr), "LSTM");
  EXPECT_FAILS(loom_rnn_forward(lstm, x, randn(LOOM_SHAPE(1, 2, 4)), randn(LOOM_SHAPE(1, 3, 4)), nullptr, nullptr),
               "LSTM: expected c0 of shape [1, 2, 4]");
  EXPECT_FAILS(loom_rnn_forward(lstm, x, randn(LOOM_SHAPE(1, 2, 4), LOOM_F64), randn(LOOM_SHAPE(1, 2, 4)), nullptr,
                                nullptr),
               "h0 has dtype f64");
  loom_tensor *in[4] = {x, x, x, x};
  EXPECT_FAILS(loom_forward_n(gru, in, 3), "GRU: forward takes");
  EXPECT_EQ(loom_forward(lstm, nullptr), nullptr);
  // loom_rnn_forward on something else
  loom_module *cell = loom_nn_gru_cell(3, 4, nullptr);
  EXPECT_FAILS(loom_rnn_forward(cell, x, nullptr, nullptr, nullptr, nullptr), "GRUCell");
  // cells
  EXPECT_FAILS(loom_forward(cell, randn(LOOM_SHAPE(2, 5))), "GRUCell: expected input with 3 features");
  EXPECT_FAILS(loom_forward(cell, randn(LOOM_SHAPE(1, 2, 3))), "GRUCell: expected input [N, input_size]");
  loom_tensor *cin[2] = {randn(LOOM_SHAPE(2, 3)), randn(LOOM_SHAPE(3, 4))};
  EXPECT_FAILS(loom_forward_n(cell, cin, 2), "GRUCell: expected hx of shape [2, 4]");
  loom_module *lc = loom_nn_lstm_cell(3, 4, nullptr);
  loom_tensor *h1 = nullptr, *c1 = nullptr;
  EXPECT_NE(loom_lstm_cell_forward(lc, cin[0], randn(LOOM_SHAPE(2, 4)), nullptr, &h1, &c1), 0);
  EXPECT_ERROR("LSTMCell");
  EXPECT_NE(loom_lstm_cell_forward(cell, cin[0], nullptr, nullptr, &h1, &c1), 0);
  EXPECT_ERROR("expected an LSTMCell");
  EXPECT_EQ(h1, nullptr);
  // unbatched cell input works and gives [H]
  loom_tensor *u = loom_forward(cell, randn(LOOM_SHAPE(3)));
  ASSERT_T(u);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(u), LOOM_SHAPE(4)));
  // functional weights with wrong shapes
  loom_tensor *w_ih = randn(LOOM_SHAPE(12, 3)), *w_hh = randn(LOOM_SHAPE(12, 4));
  EXPECT_FAILS(loom_lstm_cell(cin[0], nullptr, nullptr, w_ih, w_hh, nullptr, nullptr, &c1),
               "LSTMCell: expected weight_hh of shape [4 * hidden_size, hidden_size]");
  EXPECT_FAILS(loom_gru_cell(cin[0], nullptr, w_ih, w_hh, randn(LOOM_SHAPE(12)), nullptr), "both given");
  loom_module_free(lstm);
  loom_module_free(gru);
  loom_module_free(cell);
  loom_module_free(lc);
}

// ---- CPU vs CUDA ----

namespace {

struct Case {
  const char *name;
  loom_module *(*make)();
  bool seq, lstm;
};

loom_module *make_lstm() {
  loom_rnn_options o{};
  o.num_layers = 2;
  o.bidirectional = true;
  o.batch_first = true;
  return loom_nn_lstm(5, 8, &o);
}
loom_module *make_gru() {
  loom_rnn_options o{};
  o.bidirectional = true;
  return loom_nn_gru(5, 8, &o);
}
loom_module *make_rnn() {
  loom_rnn_options o{};
  o.num_layers = 2;
  o.relu = true;
  return loom_nn_rnn(5, 8, &o);
}
loom_module *make_lstm_cell() { return loom_nn_lstm_cell(5, 8, nullptr); }
loom_module *make_gru_cell() { return loom_nn_gru_cell(5, 8, nullptr); }
loom_module *make_rnn_cell() { return loom_nn_rnn_cell(5, 8, nullptr); }

// Runs m on x (and a random h0 / c0 when given) and returns {out, grads of x, h0, params}.
std::vector<loom_tensor *> run(loom_module *m, const Case &c, loom_tensor *x, loom_tensor *h0, loom_tensor *c0) {
  std::vector<loom_tensor *> r;
  loom_tensor *hn = nullptr, *cn = nullptr, *out;
  if (c.seq)
    out = loom_rnn_forward(m, x, h0, c.lstm ? c0 : nullptr, &hn, c.lstm ? &cn : nullptr);
  else if (c.lstm) {
    if (loom_lstm_cell_forward(m, x, h0, c0, &out, &cn) != 0) return r;
  } else {
    loom_tensor *in[2] = {x, h0};
    out = loom_forward_n(m, in, 2);
  }
  if (!out) return r;
  r.push_back(out);
  if (hn) r.push_back(hn);
  if (cn) r.push_back(cn);
  loom_tensor *loss = loom_sum(loom_to_dtype(out, LOOM_F32), nullptr, 0, false);
  if (hn) loss = loom_add(loss, loom_sum(loom_to_dtype(loom_mul_scalar(hn, 0.5), LOOM_F32), nullptr, 0, false));
  if (cn) loss = loom_add(loss, loom_sum(loom_to_dtype(loom_mul_scalar(cn, 0.25), LOOM_F32), nullptr, 0, false));
  if (loom_backward(loss, nullptr, false) != 0) return {};
  r.push_back(loom_grad(x));
  r.push_back(loom_grad(h0));
  if (c.lstm) r.push_back(loom_grad(c0));
  loom_named_tensors *l = loom_module_named_parameters(m);
  for (int i = 0; i < l->n; i++) r.push_back(loom_grad(l->tensors[i]));
  loom_named_tensors_free(l);
  return r;
}

// Copies every parameter of src into dst (converting dtype and device).
int copy_params(loom_module *dst, loom_module *src) {
  loom_named_tensors *a = loom_module_named_parameters(dst), *b = loom_module_named_parameters(src);
  int rc = a->n == b->n ? 0 : -1;
  for (int i = 0; i < a->n && rc == 0; i++) rc = loom_copy_(a->tensors[i], b->tensors[i]);
  loom_named_tensors_free(a);
  loom_named_tensors_free(b);
  return rc;
}

}  // namespace

TEST(NnRnnCuda, MatchesCpu) {
  LOOM_REQUIRE_GPU();
  const Case cases[] = {{"LSTM", make_lstm, true, true},      {"GRU", make_gru, true, false},
                        {"RNN", make_rnn, true, false},       {"LSTMCell", make_lstm_cell, false, true},
                        {"GRUCell", make_gru_cell, false, false}, {"RNNCell", make_rnn_cell, false, false}};
  struct Prec {
    loom_dtype dt;
    double tol;
  } precs[] = {{LOOM_F32, 1e-4}, {LOOM_F16, 1e-2}, {LOOM_BF16, 5e-2}};
  for (const Case &c : cases)
    for (const Prec &p : precs) {
      SCOPED_TRACE(std::string(c.name) + " " + loom_dtype_name(p.dt));
      ScopeGuard g;
      loom_module *cpu = c.make(), *gpu = c.make();
      ASSERT_T(cpu);
      ASSERT_T(gpu);
      ASSERT_EQ(copy_params(gpu, cpu), 0);
      ASSERT_EQ(loom_module_to_device(gpu, loom_cuda(0)), 0) << loom_last_error();
      ASSERT_EQ(loom_module_to_dtype(gpu, p.dt), 0) << loom_last_error();
      // CPU reference from the same (rounded) parameters
      ASSERT_EQ(copy_params(cpu, gpu), 0);
      int64_t N = 3, L = 4;
      loom_shape xs = c.seq ? LOOM_SHAPE(N, L, 5) : LOOM_SHAPE(N, 5);
      loom_shape hs = LOOM_SHAPE(N, 8);
      if (c.seq) {
        const loom_rnn_config *cfg = (const loom_rnn_config *)loom_module_state(cpu);
        if (!cfg->batch_first) xs = LOOM_SHAPE(L, N, 5);
        hs = LOOM_SHAPE(cfg->num_layers * (cfg->bidirectional ? 2 : 1), N, 8);
      }
      loom_tensor *vals[3] = {loom_to_dtype(randn(xs), p.dt), loom_to_dtype(randn(hs), p.dt),
                              loom_to_dtype(randn(hs), p.dt)};
      loom_tensor *xc[3], *xg[3];
      for (int i = 0; i < 3; i++) {
        xc[i] = loom_to_dtype(vals[i], LOOM_F32);
        xg[i] = loom_to_device(vals[i], loom_cuda(0));
        loom_set_requires_grad(xc[i], true);
        loom_set_requires_grad(xg[i], true);
      }
      std::vector<loom_tensor *> rc = run(cpu, c, xc[0], xc[1], xc[2]);
      std::vector<loom_tensor *> rg = run(gpu, c, xg[0], xg[1], xg[2]);
      ASSERT_FALSE(rc.empty()) << loom_last_error();
      ASSERT_EQ(rc.size(), rg.size()) << loom_last_error();
      for (size_t i = 0; i < rc.size(); i++) EXPECT_LT(rel_err(rg[i], rc[i]), p.tol) << "result " << i;
      loom_module_free(cpu);
      loom_module_free(gpu);
    }
}

// LSTM with proj_size over packed sequences (lengths on the CPU, moved by
// the layer): output, states and the input's gradient.
TEST(NnRnnCuda, ProjectedPackedLstmMatchesCpu) {
  LOOM_REQUIRE_GPU();
  ScopeGuard g;
  loom_rnn_options o{};
  o.num_layers = 2, o.bidirectional = true, o.batch_first = true, o.proj_size = 3;
  loom_module *cpu = loom_nn_lstm(5, 8, &o), *gpu = loom_nn_lstm(5, 8, &o);
  ASSERT_T(cpu);
  ASSERT_T(gpu);
  ASSERT_EQ(copy_params(gpu, cpu), 0);
  ASSERT_EQ(loom_module_to_device(gpu, loom_cuda(0)), 0) << loom_last_error();
  loom_tensor *x = randn(LOOM_SHAPE(3, 6, 5)), *len = T({6, 2, 4}, LOOM_SHAPE(3), LOOM_I64);
  loom_tensor *xs[2] = {loom_clone(x), loom_to_device(x, loom_cuda(0))}, *out[2], *hn[2], *cn[2];
  for (int d = 0; d < 2; d++) {
    loom_set_requires_grad(xs[d], true);
    out[d] = loom_rnn_forward_packed(d ? gpu : cpu, xs[d], len, nullptr, nullptr, &hn[d], &cn[d]);
    ASSERT_T(out[d]);
    ASSERT_EQ(loom_backward(loom_sum(loom_mul(out[d], out[d]), nullptr, 0, false), nullptr, false), 0)
        << loom_last_error();
  }
  EXPECT_LT(rel_err(out[1], out[0]), 1e-4);
  EXPECT_LT(rel_err(hn[1], hn[0]), 1e-4);
  EXPECT_LT(rel_err(cn[1], cn[0]), 1e-4);
  EXPECT_LT(rel_err(loom_grad(xs[1]), loom_grad(xs[0])), 1e-4);
  loom_module_free(cpu);
  loom_module_free(gpu);
}

TEST(NnRnnCuda, DeviceMismatch) {
  LOOM_REQUIRE_GPU();
  ScopeGuard g;
  loom_module *m = loom_nn_lstm(3, 4, nullptr);
  loom_tensor *x = loom_randn(LOOM_SHAPE(5, 2, 3), LOOM_F32, loom_cuda(0));
  EXPECT_FAILS(loom_forward(m, x), "LSTM");
  EXPECT_ERROR("cuda");
  loom_module_free(m);
}
