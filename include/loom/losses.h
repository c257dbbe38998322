/* Loom losses (torch.nn.functional style), reductions none / mean / sum.
 *
 * Every loss follows PyTorch's functional form: same formulas, defaults and
 * reductions; it returns a new tensor (0-d for mean / sum, the per-element
 * or per-sample loss for none), NULL + loom_last_error on bad input, and
 * NULL at once when given a NULL input. Gradients flow to the input and,
 * where PyTorch gives one, to float targets; class weights are constants.
 * Inside an autocast region, f16 / bf16 inputs are computed in f32. */
#ifndef LOOM_LOSSES_H
#define LOOM_LOSSES_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_module loom_module;

/* How the per-element losses are combined. MEAN (the zero value) is
 * PyTorch's default; BATCHMEAN (sum / batch size) is for loom_kl_div only. */
typedef enum loom_reduction {
  LOOM_REDUCTION_MEAN = 0,
  LOOM_REDUCTION_SUM,
  LOOM_REDUCTION_NONE,
  LOOM_REDUCTION_BATCHMEAN
} loom_reduction;

/* PyTorch's default ignore_index. */
#define LOOM_IGNORE_INDEX_DEFAULT (-100)

/* Options of loom_cross_entropy; all-zero (or a NULL pointer) = PyTorch's
 * defaults: no weight, ignore_index -100, no smoothing, mean.
 * ignore_index: 0 means PyTorch's default -100 unless set_ignore_index is
 * true (class 0 is a real class); any other value is used as given. So
 * {.ignore_index = pad} works for every pad but 0, and
 * {.ignore_index = 0, .set_ignore_index = true} ignores class 0. */
typedef struct loom_cross_entropy_opts {
  const loom_tensor *weight;   /* [C] rescaling of each class, or NULL */
  bool set_ignore_index;       /* take ignore_index as given, 0 included */
  int64_t ignore_index;        /* class-index targets equal to it add nothing; 0 = -100 unless set */
  double label_smoothing;      /* in [0, 1] */
  loom_reduction reduction;
} loom_cross_entropy_opts;

/* Options of loom_nll_loss (cross-entropy's without smoothing; ignore_index
 * and set_ignore_index as there). */
typedef struct loom_nll_loss_opts {
  const loom_tensor *weight;
  bool set_ignore_index;       /* take ignore_index as given, 0 included */
  int64_t ignore_index;        /* 0 = -100 unless set */
  loom_reduction reduction;
} loom_nll_loss_opts;

/* torch.nn.functional.cross_entropy. logits: [N, C], [N, C, d1, ...] or
 * unbatched [C]. target: class indices (i64 or i32) of shape [N] /
 * [N, d1, ...] / [] in [0, C) or equal to ignore_index, or class
 * probabilities (float, logits' shape). Mean over class indices divides by
 * the summed weight of the non-ignored targets; mean over probabilities by
 * N * d1 * ... . Label smoothing mixes (1 - s) * the hard loss with s / C *
 * the loss against the uniform distribution (weighted like PyTorch).
 * reduction none gives [N, d1, ...]. Class-index targets use a fused kernel
 * (log-softmax, pick, smoothing, weights in one pass; softmax - one-hot in
 * backward). */
loom_tensor *loom_cross_entropy(const loom_tensor *logits, const loom_tensor *target,
                                const loom_cross_entropy_opts *opts);
/* The same loss composed from core ops (logsumexp, gather, ...) rather than
 * the fused kernel: slower; kept as the reference the fused kernel is tested
 * against. */
loom_tensor *loom_cross_entropy_unfused(const loom_tensor *logits, const loom_tensor *target,
                                        const loom_cross_entropy_opts *opts);
/* torch.nn.functional.nll_loss: log_probs [N, C, d1...] (or [C]), class-index target. */
loom_tensor *loom_nll_loss(const loom_tensor *log_probs, const loom_tensor *target, const loom_nll_loss_opts *opts);

/* Elementwise regression losses. As in PyTorch, input and target may have any
 * two float dtypes (the loss takes the promoted one) and shapes that broadcast
 * (the loss takes the broadcast shape; where they differ PyTorch's warning is
 * printed to stderr, once per loss function). */
loom_tensor *loom_mse_loss(const loom_tensor *input, const loom_tensor *target, loom_reduction reduction);
loom_tensor *loom_l1_loss(const loom_tensor *input, const loom_tensor *target, loom_reduction reduction);
/* 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (beta >= 0; PyTorch's default 1.0; 0 = L1). */
loom_tensor *loom_smooth_l1_loss(const loom_tensor *input, const loom_tensor *target, double beta,
                                 loom_reduction reduction);
/* 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta) (delta > 0; PyTorch's default 1.0). */
loom_tensor *loom_huber_loss(const loom_tensor *input, const loom_tensor *target, double delta,
                             loom_reduction reduction);

/* Binary cross-entropy of probabilities input in [0, 1]: -w (y log x + (1 - y) log(1 - x)),
 * each log clamped at -100 as in PyTorch. weight (NULL or broadcastable to
 * input) rescales each element. */
loom_tensor *loom_bce_loss(const loom_tensor *input, const loom_tensor *target, const loom_tensor *weight,
                           loom_reduction reduction);
/* Binary cross-entropy of logits, computed stably:
 * -w (p y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))), p = pos_weight
 * (NULL = 1; broadcast against input, usually [C] for the last dim). */
loom_tensor *loom_bce_with_logits(const loom_tensor *input, const loom_tensor *target, const loom_tensor *weight,
                                  const loom_tensor *pos_weight, loom_reduction reduction);

/* KL divergence, input holds log-probabilities: target (log(target) - input),
 * or exp(target) (target - input) when log_target. BATCHMEAN divides the sum by
 * input's first dim (PyTorch's recommended mode); MEAN divides by the element count.
 * Without log_target, a target of exactly 0 adds 0 to the loss and, as in PyTorch,
 * its own gradient is NaN (the derivative log(target) + 1 does not exist there). */
loom_tensor *loom_kl_div(const loom_tensor *input, const loom_tensor *target, loom_reduction reduction,
                         bool log_target);

#ifdef __cplusplus
}
#endif
#endif
