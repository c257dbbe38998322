// The sequence models of loom/models.h learning, seconds each: a char-RNN
// language-of-a-word classifier (/usr/share/dict), synthetic token tasks for
// the text and Transformer classifiers, and the pointer network sorting
// numbers. Parity, options and bad input are in test_models_seq.cpp.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "loom_test.h"

namespace {

std::string error() { return loom_last_error(); }

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
