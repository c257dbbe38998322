/* Loom attention: scaled dot-product, additive, multi-head, positional
 * encoding, Transformer blocks (functional forms and modules). */
#ifndef LOOM_NN_ATTENTION_H
#define LOOM_NN_ATTENTION_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_module loom_module;

/* ---- functional ---- */

/* torch.nn.functional.scaled_dot_product_attention:
 *   out = softmax(q k^T * scale + mask) v
 * q [N..., Hq, L, E], k [N..., Hkv, S, E], v [N..., Hkv, S, Ev] -> [N..., Hq, L, Ev]
 * (N... may be empty; a 2-d q is one head). When Hq != Hkv, Hq must be a
 * multiple of Hkv and query head h uses key/value head h / (Hq / Hkv)
 * (PyTorch's enable_gqa=True, applied automatically).
 * attn_mask (may be NULL) broadcasts to [N..., Hq, L, S]: LOOM_BOOL (true =
 * attend) or floating (added to the scores; -inf masks). is_causal masks key
 * j > query i (top-left aligned, torch.tril(ones(L, S))); unlike PyTorch it
 * may be combined with attn_mask. scale NAN = 1 / sqrt(E). dropout_p in
 * [0, 1) is applied to the attention weights whenever > 0 (as in PyTorch's
 * functional form: pass 0 in eval mode). Rows whose keys are all masked give
 * zeros. Differentiable w.r.t. q, k and v, and a float attn_mask that
 * requires grad. Without dropout (and without a mask gradient) it runs as one
 * fused kernel (flash-attention style on CUDA, head dims up to 128);
 * otherwise through matmul and softmax. Inside an
 * autocast region q, k, v run in the region's low-precision dtype. */
loom_tensor *loom_scaled_dot_product_attention(const loom_tensor *q, const loom_tensor *k, const loom_tensor *v,
                                               const loom_tensor *attn_mask, double dropout_p, bool is_causal,
                                               double scale);
/* Thread-local switch: false makes SDPA take the composed (matmul, softmax)
 * path even where the fused kernel applies (testing, debugging). Default true. */
void loom_sdpa_set_fused(bool on);
bool loom_sdpa_fused_enabled(void);

/* ---- modules ----
 * Constructors follow nn.h (NULL + error on bad arguments; parameters on the
 * CPU in f32 with PyTorch's default initialisation). Masks everywhere follow
 * nn.MultiheadAttention: key_padding_mask [N, S] and attn_mask [L, S] or
 * [N * num_heads, L, S] are LOOM_BOOL with true = do NOT attend, or floating
 * (added to the scores). NULL = none. */

/* MultiheadAttention(embed_dim, num_heads, dropout, bias, kdim, vdim, batch_first).
 * All-zero options = PyTorch's defaults. Parameters: in_proj_weight [3E, E]
 * (xavier_uniform) when kdim = vdim = E, else q_proj_weight [E, E],
 * k_proj_weight [E, kdim], v_proj_weight [E, vdim]; in_proj_bias [3E]
 * (zeros); child out_proj (Linear E -> E, bias zeroed). MACs: projections
 * plus the two attention matmuls. */
typedef struct loom_mha_opts {
  double dropout;        /* on the attention weights, training only */
  bool no_bias;          /* bias=False: no in_proj_bias, no out_proj.bias */
  int64_t kdim, vdim;    /* 0 = embed_dim */
  bool batch_first;      /* inputs [N, L, E] instead of [L, N, E] */
  bool add_bias_kv;      /* parameters bias_k, bias_v [1, 1, E] (xavier_normal):
                            one more key and value, appended after the projections */
  bool add_zero_attn;    /* one more key and value of zeros per head, appended last */
} loom_mha_opts;
typedef struct loom_mha_config {
  int64_t embed_dim, num_heads, num_kv_heads, head_dim, kdim, vdim;
  double dropout;
  bool no_bias, batch_first;
  bool separate_proj;    /* q/k/v projections stored separately */
  bool grouped;          /* the grouped-query module (children q_proj, k_proj, v_proj) */
  bool add_bias_kv, add_zero_attn;
} loom_mha_config;
loom_module *loom_nn_multihead_attention(int64_t embed_dim, int64_t num_heads, const loom_mha_opts *opts);
/* Grouped-query attention: num_kv_heads key/value heads shared by
 * num_heads / num_kv_heads query heads each (1 = multi-query). Children
 * q_proj (E -> E), k_proj and v_proj (E -> num_kv_heads * head_dim) and
 * out_proj (E -> E), Linear layers with PyTorch's Linear init; kdim / vdim
 * options give k_proj / v_proj their input sizes. Type "GroupedQueryAttention". */
loom_module *loom_nn_grouped_query_attention(int64_t embed_dim, int64_t num_heads, int64_t num_kv_heads,
                                             const loom_mha_opts *opts);
/* Forward of either attention module: query [N, L, E] (batch_first) or
 * [L, N, E] (or unbatched [L, E]); key, value with S positions. Returns the
 * output shaped like query. weights (may be NULL): when given, receives the
 * attention weights averaged over heads [N, L, S] (need_weights=True; that
 * path computes the softmax explicitly). loom_forward_n(m, {x}) is
 * self-attention, {q, k, v} cross-attention, both without masks. */
loom_tensor *loom_mha_forward(loom_module *m, const loom_tensor *query, const loom_tensor *key,
                              const loom_tensor *value, const loom_tensor *key_padding_mask,
                              const loom_tensor *attn_mask, loom_tensor **weights);
/* Same with a causal mask on top of the others (key j > query i masked). */
loom_tensor *loom_mha_forward_causal(loom_module *m, const loom_tensor *query, const loom_tensor *key,
                                     const loom_tensor *value, const loom_tensor *key_padding_mask,
                                     const loom_tensor *attn_mask, loom_tensor **weights);
/* Every argument of nn.MultiheadAttention.forward (all-zero: no masks,
 * head-averaged weights). per_head_weights is average_attn_weights=False:
 * *weights gets [N, H, L, S] (unbatched [H, L, S]). The keys added by
 * add_bias_kv / add_zero_attn are attended by every query (the masks are
 * padded with zeros, and is_causal masks only the original keys); the weights
 * include them (S + 1 or S + 2 columns). A float mask that requires grad gets
 * its gradient. */
typedef struct loom_mha_args {
  const loom_tensor *key_padding_mask, *attn_mask;
  bool is_causal;
  bool per_head_weights;
} loom_mha_args;
loom_tensor *loom_mha_forward_ex(loom_module *m, const loom_tensor *query, const loom_tensor *key,
                                 const loom_tensor *value, const loom_mha_args *args, loom_tensor **weights);

/* Additive (Bahdanau) attention: score(q, k) = w_v^T tanh(W_q q + W_k k),
 * softmax over keys, context = weights @ values. Children W_q (Linear
 * query_size -> num_hiddens, no bias), W_k (key_size -> num_hiddens, no
 * bias), w_v (num_hiddens -> 1, no bias). dropout on the weights in training. */
typedef struct loom_additive_attention_config {
  int64_t query_size, key_size, num_hiddens;
  double dropout;
} loom_additive_attention_config;
loom_module *loom_nn_additive_attention(int64_t query_size, int64_t key_size, int64_t num_hiddens, double dropout);
/* queries [N, L, query_size], keys [N, S, key_size], values [N, S, Dv];
 * key_padding_mask [N, S] bool (true = ignore) or NULL. Returns the context
 * [N, L, Dv]; *weights (may be NULL) receives [N, L, S]. */
loom_tensor *loom_additive_attention_forward(loom_module *m, const loom_tensor *queries, const loom_tensor *keys,
                                             const loom_tensor *values, const loom_tensor *key_padding_mask,
                                             loom_tensor **weights);

/* Sinusoidal positional encoding: non-persistent buffer pe [max_len, d_model]
 * with pe[p, 2i] = sin(p / 10000^(2i / d)), pe[p, 2i + 1] = cos(same);
 * forward x [..., L, d_model] (batch first, L <= max_len) -> dropout(x + pe[:L]). */
typedef struct loom_positional_encoding_config {
  int64_t d_model, max_len;
  double dropout;
} loom_positional_encoding_config;
loom_module *loom_nn_positional_encoding(int64_t d_model, int64_t max_len, double dropout);

/* TransformerEncoderLayer(d_model, nhead, dim_feedforward=2048, dropout=0.1,
 * activation, layer_norm_eps=1e-5, batch_first, norm_first, bias).
 * Children self_attn (MultiheadAttention), linear1, linear2, norm1, norm2.
 * activation names one of the catalogue's activations: "relu" (NULL, the
 * encoder's default), "gelu", "gelu_tanh" (GELU(approximate="tanh"), the
 * decoder block's default), "silu", "tanh", "sigmoid", "elu" (alpha 1),
 * "leaky_relu" (slope 0.01), "relu6". no_bias is bias=False: no bias in
 * the attention, the two Linear layers and the LayerNorms. */
typedef struct loom_transformer_opts {
  int64_t dim_feedforward;   /* 0 = 2048 (encoder) / 4 * d_model (decoder block) */
  double dropout;            /* 0 = 0.1; pass LOOM_NO_DROPOUT for none */
  const char *activation;    /* NULL = the default above */
  double layer_norm_eps;     /* 0 = 1e-5 */
  bool batch_first;
  bool norm_first;
  bool no_bias;
} loom_transformer_opts;
#define LOOM_NO_DROPOUT (-1.0)
typedef struct loom_transformer_config {
  int64_t d_model, nhead, dim_feedforward;
  double dropout, layer_norm_eps;
  const char *activation;    /* a static name from the list above */
  bool batch_first, norm_first, no_bias;
} loom_transformer_config;
loom_module *loom_nn_transformer_encoder_layer(int64_t d_model, int64_t nhead, const loom_transformer_opts *opts);
/* src [N, L, E] (batch_first) or [L, N, E]; src_mask like attn_mask, src_key_padding_mask like key_padding_mask. */
loom_tensor *loom_encoder_layer_forward(loom_module *m, const loom_tensor *src, const loom_tensor *src_mask,
                                        const loom_tensor *src_key_padding_mask);
/* TransformerEncoder: num_layers encoder layers built from the same options
 * (children "layers.0", "layers.1", ...; each initialised on its own, where
 * PyTorch deep-copies one layer) and, with final_norm, a LayerNorm "norm". */
loom_module *loom_nn_transformer_encoder(int64_t d_model, int64_t nhead, int num_layers, bool final_norm,
                                         const loom_transformer_opts *opts);
loom_tensor *loom_encoder_forward(loom_module *m, const loom_tensor *src, const loom_tensor *mask,
                                  const loom_tensor *src_key_padding_mask);
/* Decoder-only (GPT-2 style) block: causal self-attention and an MLP.
 * Children ln_1 (LayerNorm), attn (MultiheadAttention, batch_first), ln_2,
 * mlp with mlp.c_fc (d -> dim_feedforward, default 4 d), the activation
 * (default "gelu_tanh", as GPT-2) and mlp.c_proj. Pre-norm
 * (GPT-2) when norm_first, post-norm otherwise. Input [N, L, d] (always
 * batch first). */
loom_module *loom_nn_transformer_decoder_block(int64_t d_model, int64_t nhead, const loom_transformer_opts *opts);
/* Forward with an optional key_padding_mask [N, L] (true = ignore); loom_forward works too. */
loom_tensor *loom_decoder_block_forward(loom_module *m, const loom_tensor *x, const loom_tensor *key_padding_mask);

#ifdef __cplusplus
}
#endif
#endif
