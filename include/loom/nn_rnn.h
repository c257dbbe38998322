/* Loom recurrent layers: RNN, LSTM, GRU and their cells (torch.nn semantics).
 *
 * Shapes (N batch, L sequence length, H hidden_size, D = 2 if bidirectional
 * else 1, K = num_layers):
 *   input  [L, N, input_size]  ([N, L, input_size] with batch_first;
 *          unbatched [L, input_size], whatever batch_first says)
 *   h0, c0 [K * D, N, H]        ([K * D, H] for unbatched input); NULL = zeros
 *   output [L, N, D * H]        (batch_first: [N, L, D * H]); on the last dim
 *          the forward direction's H features come first, then the reverse's
 *   h_n, c_n [K * D, N, H]      layer-major, then direction (l0, l0_reverse, l1, ...)
 * LSTM with proj_size P > 0 (PyTorch's projections): h = W_hr (o * tanh(c)),
 * so h0, h_n are [K * D, N, P], output [L, N, D * P], weight_hh is [4H, P],
 * the next layer's input D * P, and each layer and direction has one more
 * parameter weight_hr_l{k}{s} [P, H] (after the biases). c stays [.., H].
 * Parameters, for each layer k and direction suffix s ("" or "_reverse"):
 *   weight_ih_l{k}{s} [G * H, in]   in = input_size for k = 0, else D * H
 *   weight_hh_l{k}{s} [G * H, H]
 *   bias_ih_l{k}{s}, bias_hh_l{k}{s} [G * H]   (absent with no_bias)
 * with G = 1 (RNN), 4 (LSTM: gates i, f, g, o), 3 (GRU: r, z, n where
 * n = tanh(W_in x + b_in + r * (W_hn h + b_hn))), all initialised
 * U(-1/sqrt(H), 1/sqrt(H)) like PyTorch. Cells use weight_ih, weight_hh,
 * bias_ih, bias_hh. */
#ifndef LOOM_NN_RNN_H
#define LOOM_NN_RNN_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_module loom_module;

typedef enum loom_rnn_mode {
  LOOM_RNN_TANH = 0,  /* Elman RNN, h' = tanh(W_ih x + b_ih + W_hh h + b_hh) */
  LOOM_RNN_RELU = 1,  /* same with relu */
  LOOM_RNN_LSTM = 2,
  LOOM_RNN_GRU = 3
} loom_rnn_mode;

/* Options of RNN / LSTM / GRU; all-zero (or NULL) = PyTorch's defaults. */
typedef struct loom_rnn_options {
  int num_layers;      /* 0 = 1 */
  bool no_bias;        /* bias=False */
  bool batch_first;
  double dropout;      /* on the outputs of every layer but the last, in training only */
  bool bidirectional;
  bool relu;           /* RNN only: nonlinearity='relu' (default tanh) */
  int64_t proj_size;   /* LSTM only: 0 = none, else < hidden_size (see above) */
} loom_rnn_options;

/* Module state of RNN / LSTM / GRU (loom_module_state). */
typedef struct loom_rnn_config {
  loom_rnn_mode mode;
  int64_t input_size, hidden_size;
  int num_layers;
  bool bias, batch_first, bidirectional;
  double dropout;
  int64_t proj_size;
} loom_rnn_config;

loom_module *loom_nn_rnn(int64_t input_size, int64_t hidden_size, const loom_rnn_options *opts);
loom_module *loom_nn_lstm(int64_t input_size, int64_t hidden_size, const loom_rnn_options *opts);
loom_module *loom_nn_gru(int64_t input_size, int64_t hidden_size, const loom_rnn_options *opts);

/* Runs an RNN / LSTM / GRU module. h0 and c0 (LSTM only) may be NULL
 * (zeros); h_n and c_n may be NULL when not wanted (*c_n is set to NULL for
 * RNN and GRU). Returns output. loom_forward(m, x) is the same with NULLs;
 * loom_forward_n(m, {x, h0[, c0]}) passes initial states. */
loom_tensor *loom_rnn_forward(loom_module *m, const loom_tensor *x, const loom_tensor *h0,
                              const loom_tensor *c0, loom_tensor **h_n, loom_tensor **c_n);
/* The same over padded variable-length sequences, as PyTorch's
 * pack_padded_sequence(x, lengths, enforce_sorted=False) -> module ->
 * pad_packed_sequence(total_length = L): lengths (i64 or i32 [N], each in
 * [1, L], any order) gives each sequence's length; steps past it leave the
 * state as it is and output zeros, the reverse direction starts at each
 * sequence's own last step, and h_n / c_n hold each sequence's final states. */
loom_tensor *loom_rnn_forward_packed(loom_module *m, const loom_tensor *x, const loom_tensor *lengths,
                                     const loom_tensor *h0, const loom_tensor *c0, loom_tensor **h_n,
                                     loom_tensor **c_n);

/* The functional stack's arguments (all-zero: one layer, sequence first,
 * no dropout, no projection, full-length sequences). */
typedef struct loom_rnn_args {
  int num_layers;          /* 0 = 1 */
  bool bidirectional, batch_first;
  double dropout;          /* between layers, when training */
  bool training;
  int64_t proj_size;       /* LSTM: weights hold w_hr too */
  const loom_tensor *lengths; /* NULL, or [N] lengths as loom_rnn_forward_packed's */
} loom_rnn_args;
/* Functional form of the whole stack (torch._VF.rnn_tanh / lstm / gru).
 * weights lists, for each layer then direction, w_ih, w_hh, b_ih, b_hh
 * (b_ih = b_hh = NULL without bias) and, with proj_size, w_hr: 4 (or 5) *
 * num_layers * D entries. */
loom_tensor *loom_rnn(loom_rnn_mode mode, const loom_tensor *x, const loom_tensor *h0, const loom_tensor *c0,
                      loom_tensor *const *weights, const loom_rnn_args *args, loom_tensor **h_n,
                      loom_tensor **c_n);

/* ---- cells ----
 * x [N, input_size] (or unbatched [input_size]), h and c [N, H] (or [H]);
 * NULL states are zeros. */
typedef struct loom_rnn_cell_options {
  bool no_bias;
  bool relu;           /* RNNCell only: nonlinearity='relu' */
} loom_rnn_cell_options;

/* Module state of the cells. */
typedef struct loom_rnn_cell_config {
  loom_rnn_mode mode;
  int64_t input_size, hidden_size;
  bool bias;
} loom_rnn_cell_config;

loom_module *loom_nn_rnn_cell(int64_t input_size, int64_t hidden_size, const loom_rnn_cell_options *opts);
loom_module *loom_nn_lstm_cell(int64_t input_size, int64_t hidden_size, const loom_rnn_cell_options *opts);
loom_module *loom_nn_gru_cell(int64_t input_size, int64_t hidden_size, const loom_rnn_cell_options *opts);
/* loom_forward_n(cell, {x, h[, c]}) returns h' (for LSTMCell too; use
 * loom_lstm_cell_forward for c'). This one runs an LSTMCell and returns h1
 * and c1 (both new references in the caller's scope); returns 0 or an error
 * status. h and c may be NULL (zeros). */
int loom_lstm_cell_forward(loom_module *m, const loom_tensor *x, const loom_tensor *h,
                           const loom_tensor *c, loom_tensor **h1, loom_tensor **c1);

/* Functional cells (b_ih, b_hh may be NULL; h, c may be NULL = zeros). */
loom_tensor *loom_rnn_tanh_cell(const loom_tensor *x, const loom_tensor *h, const loom_tensor *w_ih,
                                const loom_tensor *w_hh, const loom_tensor *b_ih, const loom_tensor *b_hh);
loom_tensor *loom_rnn_relu_cell(const loom_tensor *x, const loom_tensor *h, const loom_tensor *w_ih,
                                const loom_tensor *w_hh, const loom_tensor *b_ih, const loom_tensor *b_hh);
loom_tensor *loom_gru_cell(const loom_tensor *x, const loom_tensor *h, const loom_tensor *w_ih,
                           const loom_tensor *w_hh, const loom_tensor *b_ih, const loom_tensor *b_hh);
/* Returns h1; *c1 (required) receives the new cell state. */
loom_tensor *loom_lstm_cell(const loom_tensor *x, const loom_tensor *h, const loom_tensor *c,
                            const loom_tensor *w_ih, const loom_tensor *w_hh, const loom_tensor *b_ih,
                            const loom_tensor *b_hh, loom_tensor **c1);

/* The pointwise part of an LSTM cell, fused into one kernel (forward and
 * backward) on every device: from pre-activation gates [N, 4H] (i, f, g, o)
 * and c [N, H], returns h' = sigmoid(o) * tanh(c') and sets *c1 to
 * c' = sigmoid(f) * c + sigmoid(i) * tanh(g). Mixed float dtypes compute in
 * the promoted one. */
loom_tensor *loom_lstm_gates(const loom_tensor *gates, const loom_tensor *c, loom_tensor **c1);

#ifdef __cplusplus
}
#endif
#endif
