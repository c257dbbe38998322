// GPT-2 on CUDA against Hugging Face's numbers and the CPU: the small random
// model of tools/fixtures/gen_models_gpt.py moved to the GPU gives the same
// logits, loss, gradients and greedy continuation; bf16 autocast stays close;
// AdamW steps on both devices land on the same weights. Each test skips
// without a visible GPU.
#include <string>
#include <vector>

#include "loom_test.h"

namespace {

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

// The fixture's weights (strict load) on dev.
loom_module *loaded_on(loom_device dev) {
  loom_model_opts o = small_opts();
  loom_module *m = loom_model_gpt(&o);
  std::string path = std::string(LOOM_FIXTURE_DIR) + "/models_gpt_state.safetensors";
  if (!m || loom_module_load(m, path.c_str(), true) || loom_module_to_device(m, dev)) {
    ADD_FAILURE() << loom_last_error();
    loom_module_free(m);
    return nullptr;
  }
  return m;
}

}  // namespace

TEST(GptCuda, LogitsLossGradientsAndGenerationMatchHuggingFace) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  Fixture fx("models_gpt_ref");
  ASSERT_TRUE(fx.ok());
  Model net(loaded_on(loom_cuda(0)));
  ASSERT_NE(net.m, nullptr);
  EXPECT_EQ(loom_module_param(net.m, "lm_head.weight"), loom_module_param(net.m, "transformer.wte.weight"));
  loom_tensor *ids = loom_to_device(fx["ids"], loom_cuda(0));
  loom_module_train(net.m, false);
  loom_tensor *logits = loom_forward(net.m, ids);
  ASSERT_NE(logits, nullptr) << loom_last_error();
  EXPECT_EQ(loom_device_of(logits).type, LOOM_CUDA);
  EXPECT_TRUE(close(logits, fx["logits"], 1e-4));

  loom_module_train(net.m, true);
  loom_tensor *loss = loom_gpt_loss(net.m, ids);
  ASSERT_NE(loss, nullptr) << loom_last_error();
  EXPECT_NEAR(loom_item(loss), loom_item(fx["loss"]), 1e-4 * loom_item(fx["loss"]));
  ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << loom_last_error();
  loom_named_tensors *params = loom_module_named_parameters(net.m);
  for (int i = 0; i < params->n; i++) {
    std::string key = std::string("grad.") + params->names[i];
    ASSERT_NE(loom_grad(params->tensors[i]), nullptr) << params->names[i];
    EXPECT_TRUE(close(loom_grad(params->tensors[i]), fx[key], 1e-3)) << key;
  }
  loom_named_tensors_free(params);

  loom_sample_opts greedy = {};
  greedy.greedy = true;
  loom_tensor *out = loom_gpt_generate(net.m, loom_to_device(fx["prompt"], loom_cuda(0)), 6, &greedy);
  ASSERT_NE(out, nullptr) << loom_last_error();
  EXPECT_EQ(V(out), V(fx["greedy"]));

  // bf16 autocast (matmuls in bf16, accumulation and softmax in f32): close, not equal.
  loom_module_train(net.m, false);
  ASSERT_EQ(loom_autocast_begin(LOOM_CUDA, LOOM_BF16), 0) << loom_last_error();
  loom_tensor *half = loom_forward(net.m, ids);
  loom_autocast_end();
  ASSERT_NE(half, nullptr) << loom_last_error();
  EXPECT_LT(rel_err(half, fx["logits"]), 3e-2);
}

TEST(GptCuda, AdamWStepsMatchTheCpu) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  Fixture fx("models_gpt_ref");
  ASSERT_TRUE(fx.ok());
  Model cpu(loaded_on(loom_cpu())), gpu(loaded_on(loom_cuda(0)));
  ASSERT_NE(cpu.m, nullptr);
  ASSERT_NE(gpu.m, nullptr);
  loom_adam_opts ao = {};
  ao.lr = 1e-3;
  ao.weight_decay = 0.1;
  loom_optimizer *oc = loom_adamw_module(cpu.m, &ao), *og = loom_adamw_module(gpu.m, &ao);
  ASSERT_NE(oc, nullptr) << loom_last_error();
  ASSERT_NE(og, nullptr) << loom_last_error();
  loom_tensor *ids_c = fx["ids"], *ids_g = loom_to_device(ids_c, loom_cuda(0));
  for (int step = 0; step < 5; step++) {
    loom_scope_begin();
    loom_tensor *lc = loom_gpt_loss(cpu.m, ids_c), *lg = loom_gpt_loss(gpu.m, ids_g);
    ASSERT_NE(lc, nullptr) << loom_last_error();
    ASSERT_NE(lg, nullptr) << loom_last_error();
    EXPECT_NEAR(loom_item(lg), loom_item(lc), 1e-4 * loom_item(lc)) << "step " << step;
    ASSERT_EQ(loom_backward(lc, nullptr, false), 0) << loom_last_error();
    ASSERT_EQ(loom_backward(lg, nullptr, false), 0) << loom_last_error();
    ASSERT_EQ(loom_optimizer_step(oc), 0) << loom_last_error();
    ASSERT_EQ(loom_optimizer_step(og), 0) << loom_last_error();
    loom_optimizer_zero_grad(oc);
    loom_optimizer_zero_grad(og);
    loom_scope_end();
  }
  loom_named_tensors *pc = loom_module_named_parameters(cpu.m), *pg = loom_module_named_parameters(gpu.m);
  ASSERT_EQ(pc->n, pg->n);
  for (int i = 0; i < pc->n; i++) EXPECT_LT(rel_err(pg->tensors[i], pc->tensors[i]), 1e-4) << pc->names[i];
  loom_named_tensors_free(pc);
  loom_named_tensors_free(pg);
  loom_optimizer_free(oc);
  loom_optimizer_free(og);
}
