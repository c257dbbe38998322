// Attention modules against PyTorch (tools/fixtures/gen_attention.py):
// MultiheadAttention, grouped-query attention, additive attention, positional
// encoding, TransformerEncoderLayer / Encoder, decoder block; gradchecks, CUDA
// vs CPU, bad input.
#include <cmath>
#include <string>

#include "loom_test.h"

namespace {

// Copies every parameter of m from fx[prefix + name]; m is made f64 first.
void load(loom_module *m, const Fixture &fx, const std::string &prefix) {
  ASSERT_EQ(loom_module_to_dtype(m, LOOM_F64), 0) << loom_last_error();
  loom_named_tensors *l = loom_module_named_parameters(m);
  for (int i = 0; i < l->n; i++) {
    loom_tensor *src = fx[prefix + l->names[i]];
    ASSERT_NE(src, nullptr) << prefix + l->names[i];
    ASSERT_EQ(loom_copy_(l->tensors[i], src), 0) << l->names[i] << ": " << loom_last_error();
  }
  loom_named_tensors_free(l);
}

loom_tensor *leaf(loom_tensor *t) {
  loom_tensor *c = loom_clone(t);
  loom_set_requires_grad(c, true);
  return c;
}

loom_tensor *weighted_sum(loom_tensor *out, loom_tensor *w) { return loom_sum(loom_mul(out, w), nullptr, 0, false); }

}  // namespace

TEST(MultiheadAttention, MatchesPyTorch) {
  ScopeGuard scope;
  Fixture fx("attention_mha");
  loom_mha_opts o = {};
  o.batch_first = true;
  loom_module *m = loom_nn_multihead_attention(8, 2, &o);
  ASSERT_NE(m, nullptr) << loom_last_error();
  EXPECT_EQ(param_names(m), (std::vector<std::string>{"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"}));
  EXPECT_STREQ(loom_module_type(m), "MultiheadAttention");
  load(m, fx, "");
  loom_tensor *q = leaf(fx["query"]), *w = nullptr;
  loom_tensor *out = loom_mha_forward(m, q, fx["key"], fx["value"], fx["kpm"], fx["amask"], &w);
  ASSERT_NE(out, nullptr) << loom_last_error();
  EXPECT_TRUE(close(out, fx["out"], 1e-10));
  EXPECT_TRUE(close(w, fx["weights"], 1e-10));
  // without weights: the fused SDPA path gives the same output
  EXPECT_TRUE(close(loom_mha_forward(m, q, fx["key"], fx["value"], fx["kpm"], fx["amask"], nullptr), fx["out"], 1e-10));
  ASSERT_EQ(loom_backward(weighted_sum(out, fx["w"]), nullptr, false), 0) << loom_last_error();
  EXPECT_TRUE(close(loom_grad(q), fx["dquery"], 1e-9));
  for (const char *p : {"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"})
    EXPECT_TRUE(close(loom_grad(loom_module_param(m, p)), fx[std::string("d.") + p], 1e-9)) << p;
  loom_module_free(m);

  // sequence-first self-attention through loom_forward
  loom_module *s = loom_nn_multihead_attention(8, 2, nullptr);
  load(s, fx, "sf.");
  EXPECT_TRUE(close(loom_forward(s, fx["sf.x"]), fx["sf.out"], 1e-10));
  loom_module_free(s);
}

TEST(MultiheadAttention, DefaultInitAndKdim) {
  ScopeGuard scope;
  loom_mha_opts o = {};
  o.kdim = 4;
  o.vdim = 6;
  loom_module *m = loom_nn_multihead_attention(8, 2, &o);
  ASSERT_NE(m, nullptr) << loom_last_error();
  EXPECT_EQ(param_names(m), (std::vector<std::string>{"q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias",
                                                   "out_proj.weight", "out_proj.bias"}));
  for (double b : V(loom_module_param(m, "in_proj_bias"))) EXPECT_EQ(b, 0.0);
  for (double b : V(loom_module_param(m, "out_proj.bias"))) EXPECT_EQ(b, 0.0);
  double bound = std::sqrt(6.0 / (8 + 4)), mx = 0;  // xavier_uniform of k_proj_weight [8, 4]
  for (double x : V(loom_module_param(m, "k_proj_weight"))) mx = std::max(mx, std::fabs(x));
  EXPECT_LE(mx, bound);
  EXPECT_GT(mx, bound / 3);
  loom_tensor *out = loom_mha_forward(m, loom_randn(LOOM_SHAPE(5, 2, 8), LOOM_F32, loom_cpu()),
                                      loom_randn(LOOM_SHAPE(3, 2, 4), LOOM_F32, loom_cpu()),
                                      loom_randn(LOOM_SHAPE(3, 2, 6), LOOM_F32, loom_cpu()), nullptr, nullptr, nullptr);
  ASSERT_NE(out, nullptr) << loom_last_error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(out), LOOM_SHAPE(5, 2, 8)));
  loom_module_free(m);
}

TEST(MultiheadAttention, Gradcheck) {
  ScopeGuard scope;
  loom_mha_opts o = {};
  o.batch_first = true;
  loom_module *m = loom_nn_multihead_attention(4, 2, &o);
  ASSERT_EQ(loom_module_to_dtype(m, LOOM_F64), 0);
  loom_tensor *x = loom_randn(LOOM_SHAPE(2, 3, 4), LOOM_F64, loom_cpu());
  loom_set_requires_grad(x, true);
  loom_tensor *kpm = T({0, 0, 0, 0, 0, 1}, LOOM_SHAPE(2, 3), LOOM_BOOL);
  loom_tensor *wp = loom_module_param(m, "in_proj_weight"), *bp = loom_module_param(m, "in_proj_bias");
  loom_init_normal_(bp, 0, 0.5);
  for (bool weights : {false, true})
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<loom_tensor *> &in) {
          loom_tensor *w = nullptr;
          return loom_mha_forward(m, in[0], in[0], in[0], kpm, nullptr, weights ? &w : nullptr);
        },
        {x, wp, bp}));
  loom_module_free(m);
}

TEST(GroupedQueryAttention, MatchesPyTorch) {
  ScopeGuard scope;
  Fixture fx("attention_gqa_additive");
  loom_mha_opts o = {};
  o.batch_first = true;
  loom_module *m = loom_nn_grouped_query_attention(8, 4, 2, &o);
  ASSERT_NE(m, nullptr) << loom_last_error();
  EXPECT_EQ(loom_numel(loom_module_param(m, "k_proj.weight")), 4 * 8);
  load(m, fx, "");
  loom_tensor *x = leaf(fx["x"]);
  loom_tensor *out = loom_mha_forward_causal(m, x, x, x, nullptr, nullptr, nullptr);
  ASSERT_NE(out, nullptr) << loom_last_error();
  EXPECT_TRUE(close(out, fx["out"], 1e-10));
  ASSERT_EQ(loom_backward(weighted_sum(out, fx["w"]), nullptr, false), 0) << loom_last_error();
  EXPECT_TRUE(close(loom_grad(x), fx["dx"], 1e-9));
  for (const char *p : {"q_proj.weight", "k_proj.weight", "v_proj.weight", "out_proj.weight"})
    EXPECT_TRUE(close(loom_grad(loom_module_param(m, p)), fx[std::string("d.") + p], 1e-9)) << p;
  // multi-query (1 key/value head) runs and keeps shapes
  loom_module *mq = loom_nn_grouped_query_attention(8, 4, 1, &o);
  ASSERT_NE(mq, nullptr) << loom_last_error();
  loom_tensor *y = loom_forward(mq, loom_randn(LOOM_SHAPE(2, 3, 8), LOOM_F32, loom_cpu()));
  ASSERT_NE(y, nullptr) << loom_last_error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(y), LOOM_SHAPE(2, 3, 8)));
  loom_module_free(mq);
  loom_module_free(m);
}

TEST(AdditiveAttention, MatchesPyTorch) {
  ScopeGuard scope;
  Fixture fx("attention_gqa_additive");
  loom_module *m = loom_nn_additive_attention(3, 4, 6, 0);
  ASSERT_NE(m, nullptr) << loom_last_error();
  load(m, fx, "add.");
  loom_tensor *q = leaf(fx["add.q"]), *w = nullptr;
  loom_tensor *ctx = loom_additive_attention_forward(m, q, fx["add.k"], fx["add.v"], fx["add.kpm"], &w);
  ASSERT_NE(ctx, nullptr) << loom_last_error();
  EXPECT_TRUE(close(ctx, fx["add.ctx"], 1e-10));
  EXPECT_TRUE(close(w, fx["add.weights"], 1e-10));
  ASSERT_EQ(loom_backward(weighted_sum(ctx, fx["add.w"]), nullptr, false), 0) << loom_last_error();
  EXPECT_TRUE(close(loom_grad(q), fx["add.dq"], 1e-9));
  EXPECT_TRUE(close(loom_grad(loom_module_param(m, "W_q.weight")), fx["add.d.W_q.weight"], 1e-9));
  loom_module_free(m);
}

TEST(PositionalEncoding, MatchesPyTorch) {
  ScopeGuard scope;
  Fixture fx("attention_gqa_additive");
  loom_module *m = loom_nn_positional_encoding(6, 10, 0.1);
  ASSERT_NE(m, nullptr) << loom_last_error();
  EXPECT_TRUE(close(loom_module_buffer(m, "pe"), fx["pe"], 1e-6));
  loom_tensor_map *sd = loom_module_state_dict(m);  // non-persistent: not in the state_dict
  ASSERT_NE(sd, nullptr) << loom_last_error();
  EXPECT_EQ(loom_map_size(sd), 0);
  loom_map_free(sd);
  loom_module_train(m, false);
  loom_tensor *x = loom_zeros(LOOM_SHAPE(2, 4, 6), LOOM_F32, loom_cpu());
  loom_tensor *y = loom_forward(m, x);
  ASSERT_NE(y, nullptr) << loom_last_error();
  EXPECT_TRUE(close(loom_select(y, 0, 1), loom_narrow(fx["pe"], 0, 0, 4), 1e-6));
  EXPECT_EQ(loom_forward(m, loom_zeros(LOOM_SHAPE(2, 11, 6), LOOM_F32, loom_cpu())), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("PositionalEncoding"), std::string::npos);
  loom_module_free(m);
}

TEST(TransformerEncoderLayer, MatchesPyTorchPostAndPreNorm) {
  ScopeGuard scope;
  Fixture fx("attention_encoder");
  for (const char *name : {"post", "pre"}) {
    SCOPED_TRACE(name);
    bool pre = std::string(name) == "pre";
    loom_transformer_opts o = {};
    o.dim_feedforward = 16;
    o.activation = pre ? "gelu" : nullptr;
    o.norm_first = pre;
    o.batch_first = true;
    loom_module *m = loom_nn_transformer_encoder_layer(8, 2, &o);
    ASSERT_NE(m, nullptr) << loom_last_error();
    load(m, fx, std::string(name) + ".");
    loom_module_train(m, false);
    loom_tensor *out = loom_encoder_layer_forward(m, fx["x"], nullptr, fx["kpm"]);
    ASSERT_NE(out, nullptr) << loom_last_error();
    EXPECT_TRUE(close(out, fx[std::string(name) + ".out"], 1e-10));
    loom_tensor *causal = T({0, -INFINITY, -INFINITY, -INFINITY, -INFINITY, 0, 0, -INFINITY, -INFINITY, -INFINITY,
                             0, 0, 0, -INFINITY, -INFINITY, 0, 0, 0, 0, -INFINITY, 0, 0, 0, 0, 0},
                            LOOM_SHAPE(5, 5), LOOM_F64);
    EXPECT_TRUE(close(loom_encoder_layer_forward(m, fx["x"], causal, nullptr), fx[std::string(name) + ".out_causal"], 1e-10));
    loom_module_free(m);
  }
}

TEST(TransformerEncoder, MatchesPyTorch) {
  ScopeGuard scope;
  Fixture fx("attention_encoder");
  loom_transformer_opts o = {};
  o.dim_feedforward = 16;
  o.dropout = LOOM_NO_DROPOUT;
  o.batch_first = true;
  loom_module *m = loom_nn_transformer_encoder(8, 2, 2, true, &o);
  ASSERT_NE(m, nullptr) << loom_last_error();
  load(m, fx, "enc.");
  loom_tensor *x = leaf(fx["x"]);
  loom_tensor *out = loom_encoder_forward(m, x, nullptr, fx["kpm"]);
  ASSERT_NE(out, nullptr) << loom_last_error();
  EXPECT_TRUE(close(out, fx["enc.out"], 1e-10));
  ASSERT_EQ(loom_backward(weighted_sum(out, fx["enc.w"]), nullptr, false), 0) << loom_last_error();
  EXPECT_TRUE(close(loom_grad(x), fx["enc.dx"], 1e-9));
  EXPECT_TRUE(close(loom_grad(loom_module_param(m, "layers.0.self_attn.in_proj_weight")),
                    fx["enc.d.layers.0.self_attn.in_proj_weight"], 1e-9));
  loom_module_free(m);
}

TEST(TransformerDecoderBlock, MatchesPyTorchPreAndPostNorm) {
  ScopeGuard scope;
  Fixture fx("attention_decoder");
  for (const char *name : {"pre", "post"}) {
    SCOPED_TRACE(name);
    loom_transformer_opts o = {};
    o.norm_first = std::string(name) == "pre";
    loom_module *m = loom_nn_transformer_decoder_block(8, 2, &o);
    ASSERT_NE(m, nullptr) << loom_last_error();
    load(m, fx, std::string(name) + ".");
    loom_module_train(m, false);
    loom_tensor *x = leaf(fx["x"]);
    loom_tensor *out = loom_forward(m, x);
    ASSERT_NE(out, nullptr) << loom_last_error();
    EXPECT_TRUE(close(out, fx[std::string(name) + ".out"], 1e-10));
    ASSERT_EQ(loom_backward(weighted_sum(out, fx[std::string(name) + ".w"]), nullptr, false), 0) << loom_last_error();
    EXPECT_TRUE(close(loom_grad(x), fx[std::string(name) + ".dx"], 1e-9));
    EXPECT_TRUE(close(loom_grad(loom_module_param(m, "mlp.c_fc.weight")), fx[std::string(name) + ".d.mlp.c_fc.weight"], 1e-9));
    loom_module_free(m);
  }
}

TEST(AttentionModules, BadInput) {
  ScopeGuard scope;
  auto has = [](const char *what) { return std::string(loom_last_error()).find(what) != std::string::npos; };
  EXPECT_EQ(loom_nn_multihead_attention(10, 3, nullptr), nullptr);
  EXPECT_TRUE(has("MultiheadAttention"));
  EXPECT_EQ(loom_nn_grouped_query_attention(8, 4, 3, nullptr), nullptr);
  EXPECT_TRUE(has("GroupedQueryAttention"));
  EXPECT_EQ(loom_nn_transformer_encoder_layer(8, 3, nullptr), nullptr);
  EXPECT_TRUE(has("TransformerEncoderLayer"));
  EXPECT_EQ(loom_nn_additive_attention(0, 2, 2, 0), nullptr);
  EXPECT_TRUE(has("AdditiveAttention"));
  loom_module *m = loom_nn_multihead_attention(8, 2, nullptr);
  loom_tensor *x = loom_zeros(LOOM_SHAPE(5, 2, 8), LOOM_F32, loom_cpu());
  EXPECT_EQ(loom_forward(m, loom_zeros(LOOM_SHAPE(5, 2, 7), LOOM_F32, loom_cpu())), nullptr);
  EXPECT_TRUE(has("MultiheadAttention"));
  EXPECT_EQ(loom_mha_forward(m, x, x, x, loom_zeros(LOOM_SHAPE(2, 4), LOOM_BOOL, loom_cpu()), nullptr, nullptr), nullptr);
  EXPECT_TRUE(has("key_padding_mask"));
  EXPECT_EQ(loom_mha_forward(m, x, x, x, nullptr, loom_zeros(LOOM_SHAPE(4, 5), LOOM_BOOL, loom_cpu()), nullptr), nullptr);
  EXPECT_TRUE(has("attn_mask"));
  EXPECT_EQ(loom_forward(m, loom_to_dtype(x, LOOM_F64)), nullptr);  // parameters are f32
  loom_module_free(m);
  loom_module *e = loom_nn_transformer_encoder_layer(8, 2, nullptr);
  EXPECT_EQ(loom_forward(e, loom_zeros(LOOM_SHAPE(5, 2, 6), LOOM_F32, loom_cpu())), nullptr);
  EXPECT_TRUE(has("TransformerEncoderLayer"));
  loom_module_free(e);
}

TEST(AttentionModules, CudaMatchesCpu) {
  LOOM_REQUIRE_GPU();
  loom_set_tf32(false);
  ScopeGuard scope;
  loom_manual_seed(1);
  loom_transformer_opts o = {};
  o.dim_feedforward = 32;
  o.batch_first = true;
  o.norm_first = true;
  loom_module *m = loom_nn_transformer_encoder_layer(16, 4, &o);
  loom_module_train(m, false);
  loom_tensor *x = loom_randn(LOOM_SHAPE(2, 9, 16), LOOM_F32, loom_cpu());
  loom_tensor *kpm = T({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1}, LOOM_SHAPE(2, 9), LOOM_BOOL);
  loom_tensor *ref = loom_encoder_layer_forward(m, x, nullptr, kpm);
  ASSERT_NE(ref, nullptr) << loom_last_error();
  ASSERT_EQ(loom_backward(loom_sum(ref, nullptr, 0, false), nullptr, false), 0);
  loom_tensor *gref = loom_clone(loom_grad(loom_module_param(m, "self_attn.in_proj_weight")));
  loom_module_zero_grad(m);
  ASSERT_EQ(loom_module_to_device(m, loom_cuda(0)), 0) << loom_last_error();
  loom_tensor *out = loom_encoder_layer_forward(m, loom_to_device(x, loom_cuda(0)), nullptr, loom_to_device(kpm, loom_cuda(0)));
  ASSERT_NE(out, nullptr) << loom_last_error();
  EXPECT_LE(rel_err(out, ref), 1e-4);
  ASSERT_EQ(loom_backward(loom_sum(out, nullptr, 0, false), nullptr, false), 0);
  EXPECT_LE(rel_err(loom_grad(loom_module_param(m, "self_attn.in_proj_weight")), gref), 1e-4);
  loom_module_free(m);
}
