// The PyTorch options of the attention modules against PyTorch
// (tools/fixtures/gen_attention.py, options()): MultiheadAttention add_bias_kv,
// add_zero_attn, per-head weights (average_attn_weights=False), a float mask's
// gradient; TransformerEncoderLayer activations and bias=False.
#include <cmath>
#include <string>
#include <vector>

#include "loom_test.h"

namespace {

const double kTol = 1e-10;

loom_tensor *leaf(loom_tensor *t) {
  loom_tensor *c = loom_clone(t);
  loom_set_requires_grad(c, true);
  return c;
}

// Makes m f64 and copies its parameters from fx["<c>.<name>"].
void load(loom_module *m, const Fixture &fx, const std::string &c) {
  ASSERT_EQ(loom_module_to_dtype(m, LOOM_F64), 0) << loom_last_error();
  loom_named_tensors *l = loom_module_named_parameters(m);
  for (int i = 0; i < l->n; i++) {
    loom_tensor *src = fx[c + "." + l->names[i]];
    ASSERT_NE(src, nullptr) << c + "." + l->names[i];
    ASSERT_EQ(loom_copy_(l->tensors[i], src), 0) << l->names[i] << ": " << loom_last_error();
  }
  loom_named_tensors_free(l);
}

// Backward of sum(out * w) (+ sum(weights * ww)), then every parameter's
// gradient against fx["<c>.d.<name>"].
void check_grads(loom_module *m, const Fixture &fx, const std::string &c, loom_tensor *out, loom_tensor *weights) {
  ASSERT_NE(out, nullptr) << loom_last_error();
  EXPECT_TRUE(close(out, fx[c + ".out"], kTol)) << "out";
  loom_tensor *loss = loom_sum(loom_mul(out, fx[c + ".w"]), nullptr, 0, false);
  if (weights) {
    EXPECT_TRUE(close(weights, fx[c + ".weights"], kTol)) << "weights";
    loss = loom_add(loss, loom_sum(loom_mul(weights, fx[c + ".ww"]), nullptr, 0, false));
  }
  ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << loom_last_error();
  loom_named_tensors *l = loom_module_named_parameters(m);
  for (int i = 0; i < l->n; i++)
    EXPECT_TRUE(close(loom_grad(l->tensors[i]), fx[c + ".d." + l->names[i]], kTol)) << "d." << l->names[i];
  loom_named_tensors_free(l);
}

}  // namespace

TEST(MultiheadAttentionOptions, BiasKvAndFloatMaskGradient) {
  ScopeGuard scope;
  Fixture fx("attention_options");
  ASSERT_TRUE(fx.ok());
  loom_mha_opts o{};
  o.batch_first = true, o.add_bias_kv = true;
  loom_module *m = loom_nn_multihead_attention(8, 2, &o);
  ASSERT_NE(m, nullptr) << loom_last_error();
  EXPECT_EQ(param_names(m), (std::vector<std::string>{"in_proj_weight", "in_proj_bias", "bias_k", "bias_v",
                                                   "out_proj.weight", "out_proj.bias"}));
  load(m, fx, "bias_kv");
  loom_tensor *q = leaf(fx["bias_kv.q"]), *k = leaf(fx["bias_kv.k"]), *am = leaf(fx["bias_kv.am"]);
  // no weights asked: the fused SDPA path, which must step aside for the mask's gradient
  loom_tensor *out = loom_mha_forward(m, q, k, k, fx["bias_kv.kpm"], am, nullptr);
  check_grads(m, fx, "bias_kv", out, nullptr);
  EXPECT_TRUE(close(loom_grad(q), fx["bias_kv.d.q"], kTol)) << "d.q";
  EXPECT_TRUE(close(loom_grad(k), fx["bias_kv.d.k"], kTol)) << "d.k";
  EXPECT_TRUE(close(loom_grad(am), fx["bias_kv.d.am"], kTol)) << "d.am";
  loom_module_free(m);
}

TEST(MultiheadAttentionOptions, ZeroAttnPerHeadWeights) {
  ScopeGuard scope;
  Fixture fx("attention_options");
  loom_mha_opts o{};
  o.add_zero_attn = true;  // sequence first
  loom_module *m = loom_nn_multihead_attention(8, 2, &o);
  ASSERT_NE(m, nullptr) << loom_last_error();
  load(m, fx, "zero_attn");
  loom_tensor *q = leaf(fx["zero_attn.q"]), *k = leaf(fx["zero_attn.k"]), *w = nullptr;
  loom_mha_args a{};
  a.attn_mask = fx["zero_attn.bm"], a.per_head_weights = true;
  loom_tensor *out = loom_mha_forward_ex(m, q, k, k, &a, &w);
  ASSERT_NE(w, nullptr) << loom_last_error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(w), LOOM_SHAPE(2, 2, 4, 6)));  // [N, H, L, S + 1]
  check_grads(m, fx, "zero_attn", out, w);
  EXPECT_TRUE(close(loom_grad(q), fx["zero_attn.d.q"], kTol)) << "d.q";
  EXPECT_TRUE(close(loom_grad(k), fx["zero_attn.d.k"], kTol)) << "d.k";
  loom_module_free(m);
}

TEST(MultiheadAttentionOptions, BothWithCausalMask) {
  ScopeGuard scope;
  Fixture fx("attention_options");
  loom_mha_opts o{};
  o.batch_first = true, o.add_bias_kv = true, o.add_zero_attn = true;
  for (bool weights : {true, false}) {
    SCOPED_TRACE(weights ? "weights" : "fused");
    ScopeGuard inner;
    loom_module *m = loom_nn_multihead_attention(8, 2, &o);
    ASSERT_NE(m, nullptr) << loom_last_error();
    load(m, fx, "both_causal");
    loom_tensor *x = leaf(fx["both_causal.x"]), *w = nullptr;
    loom_mha_args a{};
    a.is_causal = true;  // masks the 5 original keys only, like PyTorch's padded causal attn_mask
    loom_tensor *out = loom_mha_forward_ex(m, x, x, x, &a, weights ? &w : nullptr);
    if (weights) {
      check_grads(m, fx, "both_causal", out, w);
      EXPECT_TRUE(close(loom_grad(x), fx["both_causal.d.x"], kTol)) << "d.x";
    } else {
      ASSERT_NE(out, nullptr) << loom_last_error();
      EXPECT_TRUE(close(out, fx["both_causal.out"], kTol));
    }
    loom_module_free(m);
  }
}

TEST(MultiheadAttentionOptions, FloatMaskPerHeadGradient) {
  ScopeGuard scope;
  Fixture fx("attention_options");
  loom_mha_opts o{};
  o.batch_first = true;
  loom_module *m = loom_nn_multihead_attention(8, 2, &o);
  ASSERT_NE(m, nullptr) << loom_last_error();
  load(m, fx, "float_mask");
  loom_tensor *x = leaf(fx["float_mask.x"]), *fm = leaf(fx["float_mask.fm"]), *w = nullptr;
  loom_tensor *out = loom_mha_forward(m, x, x, x, nullptr, fm, &w);
  check_grads(m, fx, "float_mask", out, w);
  EXPECT_TRUE(close(loom_grad(x), fx["float_mask.d.x"], kTol)) << "d.x";
  EXPECT_TRUE(close(loom_grad(fm), fx["float_mask.d.fm"], kTol)) << "d.fm";
  loom_module_free(m);
}

// SDPA itself: a float mask that requires grad gets dScores, with or without
// the fused kernel enabled.
TEST(MultiheadAttentionOptions, SdpaMaskGradientMatchesComposed) {
  ScopeGuard scope;
  loom_tensor *q = loom_randn(LOOM_SHAPE(2, 3, 4, 8), LOOM_F64, loom_cpu());
  loom_tensor *k = loom_randn(LOOM_SHAPE(2, 3, 5, 8), LOOM_F64, loom_cpu());
  loom_tensor *v = loom_randn(LOOM_SHAPE(2, 3, 5, 8), LOOM_F64, loom_cpu());
  loom_tensor *mk = loom_randn(LOOM_SHAPE(1, 3, 4, 5), LOOM_F64, loom_cpu());
  std::vector<double> grads[2];
  for (int fused = 0; fused < 2; fused++) {
    loom_sdpa_set_fused(fused == 1);
    loom_tensor *m = leaf(mk);
    loom_tensor *y = loom_scaled_dot_product_attention(q, k, v, m, 0, false, NAN);
    ASSERT_NE(y, nullptr) << loom_last_error();
    ASSERT_EQ(loom_backward(loom_sum(loom_mul(y, y), nullptr, 0, false), nullptr, false), 0) << loom_last_error();
    ASSERT_NE(loom_grad(m), nullptr);
    grads[fused] = V(loom_grad(m));
  }
  loom_sdpa_set_fused(true);
  EXPECT_EQ(grads[0], grads[1]);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<loom_tensor *> &in) { return loom_scaled_dot_product_attention(q, k, v, in[0], 0, true, NAN); },
      {leaf(mk)}));
}

TEST(MultiheadAttentionOptions, Errors) {
  ScopeGuard scope;
  loom_mha_opts o{};
  o.add_zero_attn = true;
  EXPECT_EQ(loom_nn_grouped_query_attention(8, 4, 2, &o), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("add_zero_attn"), std::string::npos) << loom_last_error();
  // a mask sized for the original keys is still checked against them
  o.add_bias_kv = true;
  loom_module *m = loom_nn_multihead_attention(8, 2, &o);
  ASSERT_NE(m, nullptr) << loom_last_error();
  loom_tensor *x = loom_randn(LOOM_SHAPE(5, 8), LOOM_F32, loom_cpu());
  EXPECT_EQ(loom_mha_forward(m, x, x, x, nullptr, loom_zeros(LOOM_SHAPE(5, 7), LOOM_F32, loom_cpu()), nullptr),
            nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("attn_mask"), std::string::npos) << loom_last_error();
  loom_tensor *w = nullptr;  // unbatched per-head weights: [H, L, S + 2]
  loom_mha_args a{};
  a.per_head_weights = true;
  ASSERT_NE(loom_mha_forward_ex(m, x, x, x, &a, &w), nullptr) << loom_last_error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(w), LOOM_SHAPE(2, 5, 7)));
  loom_module_free(m);
}

TEST(TransformerEncoderLayerOptions, ActivationsAndNoBias) {
  ScopeGuard scope;
  Fixture fx("attention_options");
  struct Case {
    const char *name, *activation;
    bool no_bias, norm_first;
  };
  for (const Case &c : {Case{"enc_silu_nobias", "silu", true, true}, Case{"enc_elu", "elu", false, false},
                        Case{"enc_leaky", "leaky_relu", false, true}}) {
    SCOPED_TRACE(c.name);
    ScopeGuard inner;
    loom_transformer_opts o{};
    o.dim_feedforward = 12, o.dropout = LOOM_NO_DROPOUT, o.activation = c.activation;
    o.batch_first = true, o.norm_first = c.norm_first, o.no_bias = c.no_bias;
    loom_module *m = loom_nn_transformer_encoder_layer(8, 2, &o);
    ASSERT_NE(m, nullptr) << loom_last_error();
    if (c.no_bias)
      EXPECT_EQ(param_names(m), (std::vector<std::string>{"self_attn.in_proj_weight", "self_attn.out_proj.weight",
                                                       "linear1.weight", "linear2.weight", "norm1.weight",
                                                       "norm2.weight"}));
    load(m, fx, c.name);
    loom_tensor *x = leaf(fx[std::string(c.name) + ".x"]);
    check_grads(m, fx, c.name, loom_forward(m, x), nullptr);
    EXPECT_TRUE(close(loom_grad(x), fx[std::string(c.name) + ".d.x"], kTol)) << "d.x";
    loom_module_free(m);
  }
  loom_transformer_opts bad{};
  bad.activation = "swish";
  EXPECT_EQ(loom_nn_transformer_encoder_layer(8, 2, &bad), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("unknown activation \"swish\""), std::string::npos)
      << loom_last_error();
  // the decoder block takes the same options
  loom_transformer_opts d{};
  d.no_bias = true, d.activation = "relu";
  loom_module *blk = loom_nn_transformer_decoder_block(8, 2, &d);
  ASSERT_NE(blk, nullptr) << loom_last_error();
  EXPECT_EQ(param_names(blk), (std::vector<std::string>{"ln_1.weight", "attn.in_proj_weight", "attn.out_proj.weight",
                                                     "ln_2.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"}));
  // the activation is the one asked for: the same parameters with the default
  // (gelu_tanh) give another output
  d.activation = nullptr;
  loom_module *gelu = loom_nn_transformer_decoder_block(8, 2, &d);
  ASSERT_NE(gelu, nullptr) << loom_last_error();
  loom_named_tensors *pr = loom_module_named_parameters(blk), *pg = loom_module_named_parameters(gelu);
  for (int i = 0; i < pr->n; i++) ASSERT_EQ(loom_copy_(pg->tensors[i], pr->tensors[i]), 0);
  loom_named_tensors_free(pr);
  loom_named_tensors_free(pg);
  loom_module_train(blk, false);
  loom_module_train(gelu, false);
  loom_tensor *xb = loom_randn(LOOM_SHAPE(1, 4, 8), LOOM_F32, loom_cpu());
  loom_tensor *yr = loom_forward(blk, xb), *yg = loom_forward(gelu, xb);
  ASSERT_TRUE(yr && yg) << loom_last_error();
  EXPECT_GT(rel_err(yr, yg), 1e-3);
  loom_module_free(gelu);
  loom_module_free(blk);
}

// CUDA against the CPU: bias_kv + zero_attn, causal, a float mask with a
// gradient, per-head weights; output and every gradient.
TEST(MultiheadAttentionOptions, CudaMatchesCpu) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  loom_set_tf32(false);
  loom_mha_opts o{};
  o.batch_first = true, o.add_bias_kv = true, o.add_zero_attn = true;
  loom_module *mc = loom_nn_multihead_attention(16, 4, &o), *mg = loom_nn_multihead_attention(16, 4, &o);
  ASSERT_TRUE(mc && mg) << loom_last_error();
  loom_named_tensors *pc = loom_module_named_parameters(mc), *pg = loom_module_named_parameters(mg);
  for (int i = 0; i < pc->n; i++) ASSERT_EQ(loom_copy_(pg->tensors[i], pc->tensors[i]), 0);
  ASSERT_EQ(loom_module_to_device(mg, loom_cuda(0)), 0) << loom_last_error();
  loom_tensor *x = loom_randn(LOOM_SHAPE(2, 6, 16), LOOM_F32, loom_cpu());
  loom_tensor *fm = loom_randn(LOOM_SHAPE(6, 6), LOOM_F32, loom_cpu());
  loom_tensor *r = loom_randn(LOOM_SHAPE(2, 6, 16), LOOM_F32, loom_cpu());
  loom_tensor *rw = loom_randn(LOOM_SHAPE(2, 4, 6, 8), LOOM_F32, loom_cpu());
  loom_tensor *xs[2], *ms[2], *outs[2], *ws[2];
  for (int d = 0; d < 2; d++) {
    loom_device dev = d ? loom_cuda(0) : loom_cpu();
    xs[d] = leaf(loom_to_device(x, dev)), ms[d] = leaf(loom_to_device(fm, dev));
    loom_mha_args a{};
    a.attn_mask = ms[d], a.is_causal = true, a.per_head_weights = true;
    outs[d] = loom_mha_forward_ex(d ? mg : mc, xs[d], xs[d], xs[d], &a, &ws[d]);
    ASSERT_TRUE(outs[d] && ws[d]) << loom_last_error();
    loom_tensor *loss = loom_add(loom_sum(loom_mul(outs[d], loom_to_device(r, dev)), nullptr, 0, false),
                                 loom_sum(loom_mul(ws[d], loom_to_device(rw, dev)), nullptr, 0, false));
    ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << loom_last_error();
  }
  EXPECT_LE(rel_err(outs[1], outs[0]), 1e-5);
  EXPECT_LE(rel_err(ws[1], ws[0]), 1e-5);
  EXPECT_LE(rel_err(loom_grad(xs[1]), loom_grad(xs[0])), 1e-5);
  EXPECT_LE(rel_err(loom_grad(ms[1]), loom_grad(ms[0])), 1e-5);
  for (int i = 0; i < pc->n; i++)
    EXPECT_LE(rel_err(loom_grad(pg->tensors[i]), loom_grad(pc->tensors[i])), 1e-5) << pc->names[i];
  loom_named_tensors_free(pc);
  loom_named_tensors_free(pg);
  loom_module_free(mc);
  loom_module_free(mg);
}
