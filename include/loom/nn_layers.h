/* Loom layers: Linear, LazyLinear, activations, Softmax, LogSoftmax, Dropout,
 * Embedding, Flatten, Identity (modules and functional forms).
 *
 * Functional forms follow ops.h: a new tensor, or NULL + loom_last_error; a
 * NULL input gives NULL at once. Modules follow nn.h: constructors return a
 * new module (NULL + error on bad arguments), parameters are created on the
 * CPU in f32 with PyTorch's default initialisation, and loom_module_state(m)
 * returns the layer's config struct below (read it, do not change it). */
#ifndef LOOM_NN_LAYERS_H
#define LOOM_NN_LAYERS_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_module loom_module;

/* ---- functional ---- */

/* y = x @ weight^T + bias: x [..., in], weight [out, in], bias [out] or NULL.
 * Runs through matmul/addmm, so autocast regions apply. */
loom_tensor *loom_linear(const loom_tensor *x, const loom_tensor *weight, const loom_tensor *bias);

/* x for x >= 0, negative_slope * x below (PyTorch's default slope is 0.01). */
loom_tensor *loom_leaky_relu(const loom_tensor *x, double negative_slope);
/* x for x > 0, alpha * (exp(x) - 1) otherwise (PyTorch's default alpha is 1). */
loom_tensor *loom_elu(const loom_tensor *x, double alpha);
/* x * Phi(x) with the exact erf form, or PyTorch's approximate="tanh" form
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) when tanh_approx. */
loom_tensor *loom_gelu(const loom_tensor *x, bool tanh_approx);
/* x * sigmoid(x) */
loom_tensor *loom_silu(const loom_tensor *x);

/* Softmax / log-softmax along dim (negative counts from the end), computed
 * stably (the max is subtracted first). Inside an autocast region f16/bf16
 * inputs are computed, and returned, in f32. */
loom_tensor *loom_softmax(const loom_tensor *x, int dim);
loom_tensor *loom_log_softmax(const loom_tensor *x, int dim);

/* Inverted dropout: in training each element is zeroed with probability p and
 * the rest are scaled by 1 / (1 - p). The mask comes from the device's Philox
 * generator, so the same seed gives the same mask on the CPU and on CUDA.
 * p == 0 or !training returns x unchanged (a new handle on the same data);
 * p == 1 gives zeros. p outside [0, 1] is an error. */
loom_tensor *loom_dropout(const loom_tensor *x, double p, bool training);

/* No padding row for loom_embedding. */
#define LOOM_NO_PADDING_IDX INT64_MIN
/* Rows of weight [num, dim] picked by indices (LOOM_I64 or LOOM_I32, any
 * shape): out has shape indices.shape + [dim]. Indices out of [0, num) are an
 * error. padding_idx (negative counts from the end, LOOM_NO_PADDING_IDX for
 * none) names a row that receives no gradient. */
loom_tensor *loom_embedding(const loom_tensor *indices, const loom_tensor *weight, int64_t padding_idx);

/* Embedding(num_embeddings, embedding_dim, ...)'s options (all-zero: none;
 * PyTorch's names). max_norm > 0: before the lookup, every row that indices
 * name whose norm_type-norm (0 = 2) exceeds max_norm is scaled in place by
 * max_norm / (norm + 1e-7), outside autograd, as PyTorch does.
 * scale_grad_by_freq: each row's gradient is divided by how often its index
 * occurs in indices. */
typedef struct loom_embedding_opts {
  bool has_padding_idx;
  int64_t padding_idx;   /* negative counts from the end */
  double max_norm;       /* 0 = none */
  double norm_type;      /* 0 = 2 */
  bool scale_grad_by_freq;
} loom_embedding_opts;
/* F.embedding with every option; weight is written when max_norm is set. */
loom_tensor *loom_embedding_ex(const loom_tensor *indices, loom_tensor *weight, const loom_embedding_opts *opts);

/* ---- modules ---- */

/* Linear(in_features, out_features, bias=True): parameters "weight"
 * [out, in] and "bias" [out], both U(-1/sqrt(in), 1/sqrt(in)) as PyTorch's
 * kaiming_uniform(a = sqrt(5)). MACs = rows * in * out. */
typedef struct loom_linear_opts {
  bool no_bias;
} loom_linear_opts;
typedef struct loom_linear_config {
  int64_t in_features;   /* 0 for a LazyLinear before its first forward */
  int64_t out_features;
  bool no_bias;
} loom_linear_config;
loom_module *loom_nn_linear(int64_t in_features, int64_t out_features, const loom_linear_opts *opts);
/* LazyLinear(out_features): in_features is taken from the last dim of the
 * first input; "weight" and "bias" exist from construction as empty [0]
 * placeholders (so the names are known) and are replaced then by
 * loom_module_replace_tensor, on the input's device and dtype, initialised as
 * Linear's. A LazyLinear that has not run yet has no parameters to count. */
loom_module *loom_nn_lazy_linear(int64_t out_features, const loom_linear_opts *opts);

/* Activations (no parameters; MACs 0). */
loom_module *loom_nn_relu(void);
/* ReLU6: min(max(x, 0), 6), through loom_clamp (its gradient is 0 at exactly 0 and 6, as in PyTorch). */
loom_module *loom_nn_relu6(void);
loom_module *loom_nn_sigmoid(void);
loom_module *loom_nn_tanh(void);
loom_module *loom_nn_silu(void);
typedef struct loom_leaky_relu_config { double negative_slope; } loom_leaky_relu_config;
loom_module *loom_nn_leaky_relu(double negative_slope);  /* PyTorch default 0.01 */
typedef struct loom_elu_config { double alpha; } loom_elu_config;
loom_module *loom_nn_elu(double alpha);                  /* PyTorch default 1.0 */
typedef struct loom_gelu_config { bool tanh_approx; } loom_gelu_config;
loom_module *loom_nn_gelu(bool tanh_approx);             /* false = approximate="none" */

/* Softmax(dim) and LogSoftmax(dim). */
typedef struct loom_softmax_config { int dim; } loom_softmax_config;
loom_module *loom_nn_softmax(int dim);
loom_module *loom_nn_log_softmax(int dim);

/* Dropout(p): active in training mode only (loom_module_train). */
typedef struct loom_dropout_config { double p; } loom_dropout_config;
loom_module *loom_nn_dropout(double p);                  /* PyTorch default 0.5 */

/* Embedding(num_embeddings, embedding_dim, padding_idx, max_norm, norm_type,
 * scale_grad_by_freq): "weight" [num, dim] from N(0, 1) with the padding row
 * zeroed; options (loom_embedding_opts above) all-zero = none. */
typedef struct loom_embedding_config {
  int64_t num_embeddings, embedding_dim;
  int64_t padding_idx;   /* normalised to [0, num), or LOOM_NO_PADDING_IDX */
  double max_norm;       /* 0 = none */
  double norm_type;      /* 2 unless set */
  bool scale_grad_by_freq;
} loom_embedding_config;
loom_module *loom_nn_embedding(int64_t num_embeddings, int64_t embedding_dim, const loom_embedding_opts *opts);

/* Flatten(start_dim, end_dim): PyTorch's defaults are 1 and -1. */
typedef struct loom_flatten_config { int start_dim, end_dim; } loom_flatten_config;
loom_module *loom_nn_flatten(int start_dim, int end_dim);
/* Identity: returns its input (a new handle on the same data). */
loom_module *loom_nn_identity(void);

#ifdef __cplusplus
}
#endif
#endif
