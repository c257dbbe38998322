// GPT-2 (loom_model_gpt): Hugging Face parity (tools/fixtures/gen_models_gpt.py:
// strict state_dict load, eval logits, the LM loss and its gradients, greedy
// generation), the 124M preset's parameter count, Hugging Face's init, bad
// input, sampling, and a char-level model that learns a text.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "loom_test.h"

namespace {

using ModulePtr = std::unique_ptr<loom_module, void (*)(loom_module *)>;

loom_model_opts small_opts() {
  loom_model_opts o = {};
  o.vocab_size = 61;
  o.max_len = 16;
  o.embed_dim = 32;
  o.num_layers = 2;
  o.num_heads = 4;
  o.set_dropout = true;  // dropout 0, as the fixture
  return o;
}

std::string fixture_path(const char *name) { return std::string(LOOM_FIXTURE_DIR) + "/" + name + ".safetensors"; }

ModulePtr small_loaded() {
  loom_model_opts o = small_opts();
  ModulePtr m(loom_model_gpt(&o), loom_module_free);
  if (m && loom_module_load(m.get(), fixture_path("models_gpt_state").c_str(), true)) {
    ADD_FAILURE() << loom_last_error();
    return ModulePtr(nullptr, loom_module_free);
  }
  return m;
}

TEST(GptParity, LogitsLossGradientsMatchHuggingFace) {
  ScopeGuard scope;
  Fixture fx("models_gpt_ref");
  ASSERT_TRUE(fx.ok());
  ModulePtr m = small_loaded();
  ASSERT_NE(m, nullptr) << loom_last_error();
  loom_module_train(m.get(), false);
  loom_tensor *logits = loom_forward(m.get(), fx["ids"]);
  ASSERT_NE(logits, nullptr) << loom_last_error();
  EXPECT_TRUE(close(logits, fx["logits"], 2e-5));

  loom_module_train(m.get(), true);  // dropout is 0: the same numbers, with gradients
  loom_tensor *loss = loom_gpt_loss(m.get(), fx["ids"]);
  ASSERT_NE(loss, nullptr) << loom_last_error();
  EXPECT_NEAR(loom_item(loss), loom_item(fx["loss"]), 2e-5 * loom_item(fx["loss"]));
  ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << loom_last_error();
  loom_named_tensors *params = loom_module_named_parameters(m.get());
  ASSERT_EQ(params->n, 28);  // lm_head.weight is wte's tensor, listed once
  for (int i = 0; i < params->n; i++) {
    std::string key = std::string("grad.") + params->names[i];
    ASSERT_NE(loom_grad(params->tensors[i]), nullptr) << params->names[i];
    EXPECT_TRUE(close(loom_grad(params->tensors[i]), fx[key], 1e-4)) << key;
  }
  loom_named_tensors_free(params);
}

TEST(GptParity, TiedHeadAndGreedyGeneration) {
  ScopeGuard scope;
  Fixture fx("models_gpt_ref");
  ASSERT_TRUE(fx.ok());
  ModulePtr m = small_loaded();
  ASSERT_NE(m, nullptr);
  loom_tensor *wte = loom_module_param(m.get(), "transformer.wte.weight");
  EXPECT_EQ(loom_module_param(m.get(), "lm_head.weight"), wte);
  loom_tensor_map *sd = loom_module_state_dict(m.get());
  EXPECT_EQ(loom_map_size(sd), 29);  // both names, as Hugging Face's state_dict
  loom_map_free(sd);

  loom_sample_opts greedy = {};
  greedy.greedy = true;
  loom_tensor *out = loom_gpt_generate(m.get(), fx["prompt"], 6, &greedy);
  ASSERT_NE(out, nullptr) << loom_last_error();
  EXPECT_EQ(V(out), V(fx["greedy"]));
  // top_k = 1 sampling is greedy whatever the temperature.
  loom_sample_opts top1 = {};
  top1.top_k = 1;
  top1.temperature = 3.0;
  top1.seed = 9;
  EXPECT_EQ(V(loom_gpt_generate(m.get(), fx["prompt"], 6, &top1)), V(fx["greedy"]));
  EXPECT_TRUE(loom_module_training(m.get()));  // generate restores the mode
}

TEST(GptSampling, SeedsRepeatAndPastContextSlides) {
  ScopeGuard scope;
  ModulePtr m = small_loaded();
  ASSERT_NE(m, nullptr);
  loom_tensor *prompt = T({1, 2, 3, 4}, LOOM_SHAPE(2, 2), LOOM_I64);
  loom_sample_opts o = {};
  o.top_k = 10;
  o.temperature = 0.8;
  o.seed = 42;
  // 20 new tokens pass n_ctx = 16: the last 16 are fed back.
  loom_tensor *a = loom_gpt_generate(m.get(), prompt, 20, &o), *b = loom_gpt_generate(m.get(), prompt, 20, &o);
  ASSERT_NE(a, nullptr) << loom_last_error();
  ASSERT_NE(b, nullptr);
  loom_shape s = loom_shape_of(a);
  EXPECT_EQ(s.ndim, 2);
  EXPECT_EQ(s.d[1], 22);
  std::vector<double> va = V(a);
  EXPECT_EQ(va, V(b));
  for (double id : va) EXPECT_TRUE(id >= 0 && id < 61) << id;
  EXPECT_EQ(va[0], 1);
  EXPECT_EQ(va[23], 4);
  o.seed = 43;
  EXPECT_NE(V(loom_gpt_generate(m.get(), prompt, 20, &o)), va);
}

// The 124M preset's count (124,439,808) is the loom_summary_gpt2 ctest; here
// Hugging Face's count of a mid-size configuration (tied head counted once):
// V E + C E + n (12 E^2 + 13 E) + 2 E.
TEST(GptModel, ParameterCountsLikeHuggingFace) {
  loom_model_opts o = small_opts();
  o.vocab_size = 1000;
  o.max_len = 128;
  o.embed_dim = 96;
  o.num_layers = 3;
  ModulePtr m(loom_model_gpt(&o), loom_module_free);
  ASSERT_NE(m, nullptr) << loom_last_error();
  const int64_t e = 96;
  EXPECT_EQ(loom_module_num_params(m.get(), false), 1000 * e + 128 * e + 3 * (12 * e * e + 13 * e) + 2 * e);
  EXPECT_NE(loom_module_child(m.get(), "transformer.h.2.mlp.c_proj"), nullptr);
  EXPECT_EQ(loom_size(loom_module_param(m.get(), "transformer.h.0.attn.c_attn.weight"), 1), 3 * e);
  const loom_model_info *info = loom_model_find("gpt2");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->kind, LOOM_INPUT_TOKENS);
  EXPECT_EQ(info->input[0], 1024);
}

// Hugging Face's _init_weights: N(0, 0.02), c_proj N(0, 0.02 / sqrt(2 n_layer)), zero biases, LayerNorm 1 / 0.
TEST(GptModel, HuggingFaceInit) {
  loom_model_opts o = small_opts();
  o.embed_dim = 128;
  o.max_len = 64;
  o.num_layers = 8;
  o.vocab_size = 500;
  loom_manual_seed(1);
  ModulePtr m(loom_model_gpt(&o), loom_module_free);
  ASSERT_NE(m, nullptr) << loom_last_error();
  auto stats = [&](const char *path, double *mean, double *std) {
    std::vector<double> v = V(loom_module_param(m.get(), path));
    double s = 0, ss = 0;
    for (double x : v) s += x;
    *mean = s / v.size();
    for (double x : v) ss += (x - *mean) * (x - *mean);
    *std = std::sqrt(ss / (v.size() - 1));
  };
  double mean, std;
  for (const char *p : {"transformer.wte.weight", "transformer.wpe.weight", "transformer.h.3.attn.c_attn.weight",
                        "transformer.h.3.mlp.c_fc.weight"}) {
    stats(p, &mean, &std);
    EXPECT_NEAR(mean, 0, 1e-3) << p;
    EXPECT_NEAR(std, 0.02, 0.02 * 0.03) << p;
  }
  const double proj = 0.02 / std::sqrt(16.0);
  for (const char *p : {"transformer.h.3.attn.c_proj.weight", "transformer.h.7.mlp.c_proj.weight"}) {
    stats(p, &mean, &std);
    EXPECT_NEAR(std, proj, proj * 0.04) << p;
  }
  stats("transformer.h.3.mlp.c_fc.bias", &mean, &std);
  EXPECT_EQ(mean, 0);
  EXPECT_EQ(std, 0);
  stats("transformer.ln_f.weight", &mean, &std);
  EXPECT_EQ(mean, 1);
}

TEST(GptModel, BadInputIsAClearError) {
  ScopeGuard scope;
  ModulePtr m = small_loaded();
  ASSERT_NE(m, nullptr);
  auto fails = [&](loom_tensor *ids, const char *want) {
    EXPECT_EQ(loom_forward(m.get(), ids), nullptr) << want;
    std::string err = loom_last_error();
    EXPECT_NE(err.find("GPT-2"), std::string::npos) << err;
    EXPECT_NE(err.find(want), std::string::npos) << err;
  };
  fails(T({1, 2, 61}, LOOM_SHAPE(1, 3), LOOM_I64), "wte");
  fails(T({1, 2, -1}, LOOM_SHAPE(1, 3), LOOM_I64), "wte");
  fails(loom_zeros(LOOM_SHAPE(1, 17), LOOM_I64, loom_cpu()), "longer than n_ctx = 16");
  fails(loom_zeros(LOOM_SHAPE(1, 4), LOOM_F32, loom_cpu()), "token ids [N, L]");
  fails(loom_zeros(LOOM_SHAPE(1, 4, 2), LOOM_I64, loom_cpu()), "token ids [N, L]");
  EXPECT_EQ(loom_gpt_loss(m.get(), loom_zeros(LOOM_SHAPE(2, 1), LOOM_I64, loom_cpu())), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("L >= 2"), std::string::npos) << loom_last_error();
  loom_sample_opts bad = {};
  bad.temperature = -1;
  EXPECT_EQ(loom_gpt_generate(m.get(), T({1}, LOOM_SHAPE(1, 1), LOOM_I64), 3, &bad), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("temperature"), std::string::npos);
  ModulePtr mlp(loom_model_mlp(nullptr), loom_module_free);
  EXPECT_EQ(loom_gpt_loss(mlp.get(), T({1, 2}, LOOM_SHAPE(1, 2), LOOM_I64)), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("expected a GPT-2 model"), std::string::npos);
  loom_model_opts o = small_opts();
  o.num_heads = 5;  // 32 is not divisible by 5
  EXPECT_EQ(loom_model_gpt(&o), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("divisible by num_heads"), std::string::npos);
}

// A char-level GPT (bytes as tokens) on the GPL-3 text every Debian system has:
// the next-character loss falls from ln(128) ~ 4.85 below 2.85 nats (the
// text's unigram entropy is 3.17) in a few seconds.
TEST(GptLearns, CharLevelText) {
  const char *path = "/usr/share/common-licenses/GPL-3";
  FILE *f = fopen(path, "rb");
  if (!f) GTEST_SKIP() << path << " not found (Debian's base-files installs it)";
  std::vector<int64_t> text;
  for (int c; (c = fgetc(f)) != EOF;) text.push_back(c & 127);
  fclose(f);
  ASSERT_GT(text.size(), 10000u);
  loom_model_opts o = {};
  o.vocab_size = 128;
  o.max_len = 32;
  o.embed_dim = 64;
  o.num_layers = 2;
  o.num_heads = 4;
  o.set_dropout = true;
  loom_manual_seed(0);
  ModulePtr m(loom_model_gpt(&o), loom_module_free);
  ASSERT_NE(m, nullptr) << loom_last_error();
  loom_adam_opts ao = {};
  ao.lr = 5e-3;
  loom_optimizer *opt = loom_adamw_module(m.get(), &ao);
  ASSERT_NE(opt, nullptr) << loom_last_error();
  const int batch = 8, len = 32, steps = 300;
  uint64_t rng = 7;
  double first = 0, last = 0;
  std::vector<int64_t> ids(batch * len);
  for (int s = 0; s < steps; s++) {
    ScopeGuard scope;
    for (int b = 0; b < batch; b++) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      size_t start = (rng >> 33) % (text.size() - len);
      for (int i = 0; i < len; i++) ids[b * len + i] = text[start + i];
    }
    loom_tensor *x = loom_from_host(ids.data(), LOOM_SHAPE(batch, len), LOOM_I64, loom_cpu());
    loom_tensor *loss = loom_gpt_loss(m.get(), x);
    ASSERT_NE(loss, nullptr) << loom_last_error();
    double v = loom_item(loss);
    if (s < 5) first += v / 5;
    if (s >= steps - 10) last += v / 10;
    loom_module_zero_grad(m.get());
    ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << loom_last_error();
    ASSERT_EQ(loom_optimizer_step(opt), 0) << loom_last_error();
  }
  loom_optimizer_free(opt);
  printf("char GPT: loss %.3f (first 5 steps) -> %.3f (last 10)\n", first, last);
  EXPECT_GT(first, 4.0);
  EXPECT_LT(last, 2.85);
}

}  // namespace
