// The sequence-level recurrence of loom_rnn (src/nn/rnn_sequence.c: one
// autograd node per layer and direction, every mode) against two references computed
// other ways: the cells composed step by step by hand (loom_lstm_cell, ...)
// and loom_rnn's own step-by-step path (taken when lengths are given; here
// every length is L). Outputs, final states and every gradient, on random
// shapes; finite-difference checks in f64; inference, retain_graph, errors.
#include <string>
#include <vector>

#include "loom_test.h"

#define ASSERT_T(t) ASSERT_NE((t), nullptr) << loom_last_error()

namespace {

struct Config {
  loom_rnn_mode mode;
  int64_t L, N, I, H;
  int K;  // layers
  bool bidirectional, batch_first, states, bias;
};

int gates(loom_rnn_mode m) { return m == LOOM_RNN_LSTM ? 4 : m == LOOM_RNN_GRU ? 3 : 1; }

loom_tensor *leaf(loom_shape s, loom_dtype dt) {
  loom_tensor *t = loom_mul_scalar(loom_randn(s, dt, loom_cpu()), 0.5);
  loom_set_requires_grad(t, true);
  return t;
}

// The inputs of one case: x, h0, c0 (or NULL) and the weights list of loom_rnn.
struct Inputs {
  loom_tensor *x = nullptr, *h0 = nullptr, *c0 = nullptr;
  std::vector<loom_tensor *> w;
  std::vector<loom_tensor *> leaves() const {
    std::vector<loom_tensor *> v = {x};
    if (h0) v.push_back(h0);
    if (c0) v.push_back(c0);
    for (loom_tensor *t : w)
      if (t) v.push_back(t);
    return v;
  }
};

Inputs make_inputs(const Config &c, loom_dtype dt) {
  Inputs in;
  int D = c.bidirectional ? 2 : 1, G = gates(c.mode);
  in.x = leaf(c.batch_first ? LOOM_SHAPE(c.N, c.L, c.I) : LOOM_SHAPE(c.L, c.N, c.I), dt);
  if (c.states) {
    in.h0 = leaf(LOOM_SHAPE(c.K * D, c.N, c.H), dt);
    if (c.mode == LOOM_RNN_LSTM) in.c0 = leaf(LOOM_SHAPE(c.K * D, c.N, c.H), dt);
  }
  for (int k = 0; k < c.K; k++)
    for (int d = 0; d < D; d++) {
      in.w.push_back(leaf(LOOM_SHAPE(G * c.H, k ? D * c.H : c.I), dt));
      in.w.push_back(leaf(LOOM_SHAPE(G * c.H, c.H), dt));
      in.w.push_back(c.bias ? leaf(LOOM_SHAPE(G * c.H), dt) : nullptr);
      in.w.push_back(c.bias ? leaf(LOOM_SHAPE(G * c.H), dt) : nullptr);
    }
  return in;
}

struct Result {
  loom_tensor *out = nullptr, *hn = nullptr, *cn = nullptr;
};

// loom_rnn itself; full_lengths passes lengths = L for every sequence, which
// takes the step-by-step path with the same results.
Result run_rnn(const Config &c, const Inputs &in, bool full_lengths) {
  Result r;
  loom_rnn_args a{};
  a.num_layers = c.K, a.bidirectional = c.bidirectional, a.batch_first = c.batch_first;
  if (full_lengths) {
    std::vector<double> len((size_t)c.N, (double)c.L);
    a.lengths = T(len, LOOM_SHAPE(c.N), LOOM_I64);
  }
  bool lstm = c.mode == LOOM_RNN_LSTM;
  r.out = loom_rnn(c.mode, in.x, in.h0, in.c0, in.w.data(), &a, &r.hn, lstm ? &r.cn : nullptr);
  return r;
}

// The same stack from the cells, step by step.
Result run_cells(const Config &c, const Inputs &in) {
  Result r;
  int D = c.bidirectional ? 2 : 1;
  bool lstm = c.mode == LOOM_RNN_LSTM;
  loom_tensor *seq = c.batch_first ? loom_transpose(in.x, 0, 1) : in.x;
  std::vector<loom_tensor *> hs, cs;
  for (int k = 0; k < c.K; k++) {
    loom_tensor *dirs[2];
    for (int d = 0; d < D; d++) {
      int idx = k * D + d;
      loom_tensor *const *w = in.w.data() + 4 * idx;
      loom_tensor *h = in.h0 ? loom_select(in.h0, 0, idx) : nullptr;
      loom_tensor *cc = in.c0 ? loom_select(in.c0, 0, idx) : nullptr;
      std::vector<loom_tensor *> outs((size_t)c.L);
      for (int64_t s = 0; s < c.L; s++) {
        int64_t t = d ? c.L - 1 - s : s;
        loom_tensor *xt = loom_select(seq, 0, t);
        switch (c.mode) {
        case LOOM_RNN_TANH: h = loom_rnn_tanh_cell(xt, h, w[0], w[1], w[2], w[3]); break;
        case LOOM_RNN_RELU: h = loom_rnn_relu_cell(xt, h, w[0], w[1], w[2], w[3]); break;
        case LOOM_RNN_GRU: h = loom_gru_cell(xt, h, w[0], w[1], w[2], w[3]); break;
        case LOOM_RNN_LSTM: h = loom_lstm_cell(xt, h, cc, w[0], w[1], w[2], w[3], &cc); break;
        }
        if (!h) return r;
        outs[(size_t)t] = h;
      }
      dirs[d] = loom_stack(outs.data(), (int)c.L, 0);
      hs.push_back(h);
      cs.push_back(cc);
    }
    seq = D == 2 ? loom_cat(dirs, 2, 2) : dirs[0];
  }
  r.out = c.batch_first ? loom_transpose(seq, 0, 1) : seq;
  r.hn = loom_stack(hs.data(), (int)hs.size(), 0);
  if (lstm) r.cn = loom_stack(cs.data(), (int)cs.size(), 0);
  return r;
}

// Which results the loss reads.
enum Loss { kAll, kOutOnly, kHnOnly, kCnOnly };

// loss = sum(out * wo) + sum(h_n * wh) + sum(c_n * wc), or one of the terms.
loom_tensor *loss_of(const Result &r, Loss l, loom_tensor *wo, loom_tensor *wh, loom_tensor *wc) {
  std::vector<loom_tensor *> terms;
  if (l == kAll || l == kOutOnly) terms.push_back(loom_sum(loom_mul(r.out, wo), nullptr, 0, false));
  if (l == kAll || l == kHnOnly) terms.push_back(loom_sum(loom_mul(r.hn, wh), nullptr, 0, false));
  if (r.cn && (l == kAll || l == kCnOnly)) terms.push_back(loom_sum(loom_mul(r.cn, wc), nullptr, 0, false));
  loom_tensor *loss = terms[0];
  for (size_t i = 1; i < terms.size(); i++) loss = loom_add(loss, terms[i]);
  return loss;
}

// Gradients of every leaf (cloned), zeroing them for the next run; a leaf
// without a gradient gives zeros.
std::vector<loom_tensor *> take_grads(const Inputs &in) {
  std::vector<loom_tensor *> g;
  for (loom_tensor *t : in.leaves()) {
    loom_tensor *gt = loom_grad(t);
    g.push_back(gt ? loom_clone(gt) : loom_zeros_like(t));
    loom_zero_grad(t);
  }
  return g;
}

std::string describe(const Config &c) {
  char buf[160];
  snprintf(buf, sizeof buf, "mode %d L %lld N %lld I %lld H %lld layers %d%s%s%s%s", (int)c.mode, (long long)c.L,
           (long long)c.N, (long long)c.I, (long long)c.H, c.K, c.bidirectional ? " bidirectional" : "",
           c.batch_first ? " batch_first" : "", c.states ? " h0/c0" : "", c.bias ? " bias" : " no bias");
  return buf;
}

// Runs the three ways on one case and compares results and gradients.
void compare(const Config &c, double tol) {
  ScopeGuard g;
  Inputs in = make_inputs(c, LOOM_F32);
  int D = c.bidirectional ? 2 : 1;
  loom_shape os = c.batch_first ? LOOM_SHAPE(c.N, c.L, D * c.H) : LOOM_SHAPE(c.L, c.N, D * c.H);
  loom_tensor *wo = loom_randn(os, LOOM_F32, loom_cpu());
  loom_tensor *wh = loom_randn(LOOM_SHAPE(c.K * D, c.N, c.H), LOOM_F32, loom_cpu());
  loom_tensor *wc = loom_randn(LOOM_SHAPE(c.K * D, c.N, c.H), LOOM_F32, loom_cpu());
  for (Loss l : {kAll, kOutOnly, kHnOnly, kCnOnly}) {
    if (l == kCnOnly && c.mode != LOOM_RNN_LSTM) continue;
    SCOPED_TRACE("loss " + std::to_string((int)l));
    Result r[3];
    std::vector<loom_tensor *> grads[3];
    for (int way = 0; way < 3; way++) {
      r[way] = way == 2 ? run_cells(c, in) : run_rnn(c, in, way == 1);
      ASSERT_T(r[way].out);
      ASSERT_T(r[way].hn);
      loom_tensor *loss = loss_of(r[way], l, wo, wh, wc);
      ASSERT_T(loss);
      ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << loom_last_error();
      grads[way] = take_grads(in);
    }
    for (int way = 1; way < 3; way++) {
      SCOPED_TRACE(way == 1 ? "against the step path" : "against the cells");
      EXPECT_LT(rel_err(r[0].out, r[way].out), tol);
      EXPECT_LT(rel_err(r[0].hn, r[way].hn), tol);
      if (r[0].cn) EXPECT_LT(rel_err(r[0].cn, r[way].cn), tol);
      for (size_t i = 0; i < grads[0].size(); i++) {
        std::vector<double> ref = V(grads[way][i]);
        if (ref == std::vector<double>(ref.size(), 0.0)) {  // no path to the loss: exact zeros
          EXPECT_EQ(V(grads[0][i]), ref) << "gradient " << i;
          continue;
        }
        EXPECT_LT(rel_err(grads[0][i], grads[way][i]), tol) << "gradient " << i;
      }
    }
  }
}

}  // namespace

TEST(NnRnnSequence, LstmMatchesStepPathAndCells) {
  const Config cases[] = {
      {LOOM_RNN_LSTM, 1, 1, 3, 5, 1, false, false, true, true},  // L = 1, N = 1
      {LOOM_RNN_LSTM, 6, 3, 4, 7, 2, true, false, true, true},   // bidirectional, odd H
      {LOOM_RNN_LSTM, 5, 2, 3, 4, 3, false, true, false, true},  // 3 layers, batch_first, no states
      {LOOM_RNN_LSTM, 4, 1, 2, 3, 2, true, true, true, false},   // no bias, N = 1
      {LOOM_RNN_LSTM, 1, 4, 5, 6, 3, true, false, false, true},  // L = 1, 3 layers, bidirectional
      {LOOM_RNN_LSTM, 9, 5, 8, 16, 2, true, false, true, true},  // bigger
  };
  for (const Config &c : cases) {
    SCOPED_TRACE(describe(c));
    compare(c, 1e-5);
  }
}

TEST(NnRnnSequence, OtherModesMatchStepPathAndCells) {
  for (loom_rnn_mode mode : {LOOM_RNN_TANH, LOOM_RNN_RELU, LOOM_RNN_GRU}) {
    const Config cases[] = {
        {mode, 1, 1, 3, 5, 1, false, false, true, true},
        {mode, 6, 3, 4, 7, 2, true, true, true, true},
        {mode, 5, 2, 3, 4, 3, false, false, false, false},
    };
    for (const Config &c : cases) {
      SCOPED_TRACE(describe(c));
      compare(c, 1e-5);
    }
  }
}

// Random shapes (seeded by the suite's generator), every option.
TEST(NnRnnSequence, RandomShapes) {
  ScopeGuard g;
  loom_tensor *u = loom_rand(LOOM_SHAPE(12, 8), LOOM_F64, loom_cpu());
  std::vector<double> v = V(u);
  for (int i = 0; i < 12; i++) {
    const double *p = &v[(size_t)i * 8];
    Config c{LOOM_RNN_LSTM,
             1 + (int64_t)(p[0] * 8),
             1 + (int64_t)(p[1] * 4),
             1 + (int64_t)(p[2] * 6),
             1 + (int64_t)(p[3] * 9),
             1 + (int)(p[4] * 3),
             p[5] < 0.5,
             p[6] < 0.5,
             p[7] < 0.6,
             p[7] > 0.2};
    if (i % 4 == 3) c.mode = i % 8 == 3 ? LOOM_RNN_GRU : LOOM_RNN_TANH;
    SCOPED_TRACE(describe(c));
    compare(c, 1e-5);
  }
}

// Finite differences in f64 through every input of tiny stacks.
TEST(NnRnnSequence, Gradcheck) {
  ScopeGuard g;
  const Config cases[] = {
      {LOOM_RNN_LSTM, 1, 1, 2, 3, 1, false, true, true, true},
      {LOOM_RNN_LSTM, 3, 2, 2, 3, 3, false, false, false, true},
      {LOOM_RNN_LSTM, 4, 1, 3, 2, 1, true, true, true, false},
      {LOOM_RNN_GRU, 1, 1, 2, 3, 1, false, true, true, true},
      {LOOM_RNN_GRU, 3, 2, 2, 2, 2, true, false, false, false},
      {LOOM_RNN_TANH, 3, 2, 2, 3, 2, true, true, true, true},
      {LOOM_RNN_RELU, 3, 2, 2, 3, 1, false, false, false, true},
  };
  for (const Config &c : cases) {
    SCOPED_TRACE(describe(c));
    Inputs in = make_inputs(c, LOOM_F64);
    std::vector<loom_tensor *> v = in.leaves();
    auto f = [&](const std::vector<loom_tensor *> &x) -> loom_tensor * {
      Inputs at = in;
      size_t j = 0;
      at.x = x[j++];
      if (in.h0) at.h0 = x[j++];
      if (in.c0) at.c0 = x[j++];
      for (loom_tensor *&w : at.w)
        if (w) w = x[j++];
      Result r = run_rnn(c, at, false);
      if (!r.out) return nullptr;
      loom_tensor *parts[3] = {loom_flatten(r.out, 0, -1), loom_flatten(r.hn, 0, -1),
                               r.cn ? loom_flatten(r.cn, 0, -1) : nullptr};
      return loom_cat(parts, r.cn ? 3 : 2, 0);
    };
    EXPECT_TRUE(gradcheck(f, v));
  }
}

// Without autograd the same numbers (the pre-activations are not kept);
// retain_graph walks the node twice; every output element is written.
TEST(NnRnnSequence, InferenceRetainGraphAndPoison) {
  ScopeGuard g;
  loom_set_poison(true);
  Config c{LOOM_RNN_LSTM, 5, 3, 4, 6, 2, true, false, true, true};
  Inputs in = make_inputs(c, LOOM_F32);
  Result a = run_rnn(c, in, false);
  ASSERT_T(a.out);
  loom_no_grad_begin();
  Result b = run_rnn(c, in, false);
  loom_no_grad_end();
  loom_set_poison(false);
  ASSERT_T(b.out);
  EXPECT_FALSE(loom_requires_grad(b.out));
  EXPECT_EQ(rel_err(a.out, b.out), 0.0);
  EXPECT_EQ(rel_err(a.hn, b.hn), 0.0);
  EXPECT_EQ(rel_err(a.cn, b.cn), 0.0);
  loom_tensor *loss = loom_add(loom_sum(a.out, nullptr, 0, false), loom_sum(a.cn, nullptr, 0, false));
  ASSERT_EQ(loom_backward(loss, nullptr, true), 0) << loom_last_error();
  std::vector<loom_tensor *> once;
  for (loom_tensor *t : in.leaves()) once.push_back(loom_clone(loom_grad(t)));
  ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << loom_last_error();
  std::vector<loom_tensor *> leaves = in.leaves();
  for (size_t i = 0; i < leaves.size(); i++)
    EXPECT_LT(rel_err(loom_grad(leaves[i]), loom_mul_scalar(once[i], 2)), 1e-6) << "gradient " << i;
  // a third walk finds the saved tensors freed
  EXPECT_NE(loom_backward(loss, nullptr, false), 0);
  EXPECT_NE(std::string(loom_last_error()).find("second time"), std::string::npos) << loom_last_error();
}

// Out of memory in the recurrence is an error naming the layer, not a crash.
TEST(NnRnnSequence, OutOfMemoryIsAClearError) {
  ScopeGuard g;
  Config c{LOOM_RNN_LSTM, 64, 64, 8, 128, 1, false, false, false, true};
  Inputs in = make_inputs(c, LOOM_F32);
  loom_empty_cache(loom_cpu());
  loom_memory_stats s;
  ASSERT_EQ(loom_memory_stats_get(loom_cpu(), &s), 0);
  // room for the input projection [L, N, 4H] (8 MiB, twice: the product and
  // the bias added) and the states (4 MiB), not for the pre-activations (8 MiB)
  loom_set_memory_limit(loom_cpu(), s.reserved + 22 * ((size_t)1 << 20));
  loom_clear_error();
  Result r = run_rnn(c, in, false);
  loom_set_memory_limit(loom_cpu(), 0);
  EXPECT_EQ(r.out, nullptr);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_OOM);
  std::string msg = loom_last_error();
  EXPECT_NE(msg.find("out of memory"), std::string::npos) << msg;
  EXPECT_NE(msg.find("LSTM"), std::string::npos) << msg;
  loom_empty_cache(loom_cpu());
}

// On a GPU: the same stack as on the CPU (outputs, states, every gradient).
TEST(NnRnnSequence, CudaMatchesCpu) {
  LOOM_REQUIRE_GPU();
  ScopeGuard g;
  Config c{LOOM_RNN_LSTM, 7, 3, 5, 9, 2, true, true, true, true};
  Inputs in = make_inputs(c, LOOM_F32), gin;
  auto gpu = [](loom_tensor *t) {  // a CUDA leaf with t's values
    loom_tensor *d = loom_detach(loom_to_device(t, loom_cuda(0)));
    loom_set_requires_grad(d, true);
    return d;
  };
  gin.x = gpu(in.x);
  gin.h0 = gpu(in.h0);
  gin.c0 = gpu(in.c0);
  for (loom_tensor *w : in.w) gin.w.push_back(gpu(w));
  Result rc = run_rnn(c, in, false), rg = run_rnn(c, gin, false);
  ASSERT_T(rc.out);
  ASSERT_T(rg.out);
  EXPECT_LT(rel_err(rg.out, rc.out), 1e-4);
  EXPECT_LT(rel_err(rg.hn, rc.hn), 1e-4);
  EXPECT_LT(rel_err(rg.cn, rc.cn), 1e-4);
  loom_tensor *lc = loom_add(loom_sum(rc.out, nullptr, 0, false), loom_sum(rc.cn, nullptr, 0, false));
  loom_tensor *lg = loom_add(loom_sum(rg.out, nullptr, 0, false), loom_sum(rg.cn, nullptr, 0, false));
  ASSERT_EQ(loom_backward(lc, nullptr, false), 0) << loom_last_error();
  ASSERT_EQ(loom_backward(lg, nullptr, false), 0) << loom_last_error();
  std::vector<loom_tensor *> a = in.leaves(), b = gin.leaves();
  for (size_t i = 0; i < a.size(); i++) EXPECT_LT(rel_err(loom_grad(b[i]), loom_grad(a[i])), 1e-4) << i;
}
