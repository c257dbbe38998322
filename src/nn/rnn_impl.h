/* Internals shared by the recurrent layers' files (src/nn/rnn*.c). */
#ifndef LOOM_NN_RNN_IMPL_H
#define LOOM_NN_RNN_IMPL_H

#include "loom/nn.h"

/* "RNN", "LSTM" or "GRU" (error messages). */
const char *nn_rnn_mode_name(loom_rnn_mode mode);
/* Gates per hidden unit: 1, 4 (LSTM) or 3 (GRU). */
int nn_rnn_gates(loom_rnn_mode mode);
/* x @ w^T (+ b). */
loom_tensor *nn_rnn_linear(const loom_tensor *x, const loom_tensor *w, const loom_tensor *b);
/* One time step from the input projection xp = x W_ih^T + b_ih [N, G*H]
 * (plus b_hh when b_hh_folded, RNN and LSTM only) and the state h [N, H]
 * (c [N, H] for LSTM). Returns h'; for LSTM *c1 receives c'. */
loom_tensor *nn_rnn_step(loom_rnn_mode mode, const loom_tensor *xp, const loom_tensor *h, const loom_tensor *c,
                         const loom_tensor *w_hh, const loom_tensor *b_hh, bool b_hh_folded, loom_tensor **c1);
/* The recurrence of one direction of one layer as one autograd node
 * (rnn_sequence.c), linear in L: xp [L, N, G*H] = x W_ih^T + b_ih (+ b_hh
 * for RNN and LSTM), h0 [N, H], c0 [N, H] (LSTM), w_hh [G*H, H], b_hh (GRU
 * only, else NULL). Returns the outputs [L, N, H] in time order (reverse
 * runs t = L-1 .. 0); *h_last and (LSTM) *c_last receive the final state.
 * nn_rnn_sequence_applies says whether it takes these tensors (one dtype,
 * no autocast region open); otherwise use nn_rnn_step per step. */
bool nn_rnn_sequence_applies(const loom_tensor *xp, const loom_tensor *h0, const loom_tensor *c0,
                             const loom_tensor *w_hh, const loom_tensor *b_hh);
loom_tensor *nn_rnn_sequence(loom_rnn_mode mode, const loom_tensor *xp, const loom_tensor *h0, const loom_tensor *c0,
                             const loom_tensor *w_hh, const loom_tensor *b_hh, bool reverse, loom_tensor **h_last,
                             loom_tensor **c_last);
/* Dtype and device of t match x's; otherwise an error naming layer and what. */
bool nn_rnn_check_like(const char *layer, const char *what, const loom_tensor *t, const loom_tensor *x);
/* Shapes [G*H, in], [G*H, H] ([G*H, proj] when proj > 0), [G*H] and dtype /
 * device of one layer's weights; sets *hidden = H. */
bool nn_rnn_check_weights(const char *layer, loom_rnn_mode mode, const loom_tensor *x, int64_t in, int64_t proj,
                          const loom_tensor *w_ih, const loom_tensor *w_hh, const loom_tensor *b_ih,
                          const loom_tensor *b_hh, int64_t *hidden);

#endif
