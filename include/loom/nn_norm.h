/* Loom normalisation layers: BatchNorm, LayerNorm, GroupNorm, InstanceNorm
 * (modules and functional forms), with PyTorch's semantics, defaults,
 * parameter names (weight, bias) and buffer names (running_mean,
 * running_var, num_batches_tracked).
 *
 * Statistics use the biased variance for normalising; running_var is updated
 * with the unbiased one: running = (1 - momentum) * running + momentum * batch.
 * Inside an autocast region f16 / bf16 input is normalised in f32 (and the
 * result is f32). Weight and bias must have the input's dtype and device.
 * Second derivatives through the training-mode normalisation are not
 * supported (the backward runs as one kernel). */
#ifndef LOOM_NN_NORM_H
#define LOOM_NN_NORM_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_module loom_module;

/* ---- functional forms (torch.nn.functional) ----
 * weight and bias may be NULL (no affine transform). */

/* x [N, C, *]. training: normalise with the batch statistics (over every dim
 * but 1) and, when running_mean / running_var are given (both or neither),
 * update them in place with factor `momentum` (finite, in [0, 1]; modules
 * pass 1 / num_batches_tracked for a cumulative average); an empty batch
 * leaves them as they are. Not training: normalise with running_mean /
 * running_var (required). */
loom_tensor *loom_batch_norm(const loom_tensor *x, loom_tensor *running_mean, loom_tensor *running_var,
                             const loom_tensor *weight, const loom_tensor *bias, bool training, double momentum,
                             double eps);
/* Normalises over the last n dims of x, which must equal normalized_shape;
 * weight and bias have shape normalized_shape. */
loom_tensor *loom_layer_norm(const loom_tensor *x, const int64_t *normalized_shape, int n, const loom_tensor *weight,
                             const loom_tensor *bias, double eps);
/* x [N, C, *]; statistics per sample over each group of C / num_groups
 * channels; weight and bias [C]. */
loom_tensor *loom_group_norm(const loom_tensor *x, int64_t num_groups, const loom_tensor *weight,
                             const loom_tensor *bias, double eps);
/* x [N, C, *] (at least one spatial dim). use_input_stats: statistics per
 * (sample, channel); running_mean / running_var [C], when given, are updated
 * with the batch average of the per-instance statistics. Otherwise the
 * running statistics (required) are used, as batch norm in eval mode. */
loom_tensor *loom_instance_norm(const loom_tensor *x, loom_tensor *running_mean, loom_tensor *running_var,
                                const loom_tensor *weight, const loom_tensor *bias, bool use_input_stats,
                                double momentum, double eps);

/* ---- modules ---- */

/* BatchNorm1d / 2d / 3d. All zero = PyTorch's defaults.
 * momentum: 0 means PyTorch's default 0.1 unless set_momentum is true; any
 * other value is used as given (in [0, 1]), NAN meaning None (a cumulative
 * moving average). For PyTorch's momentum=0 (running statistics never move)
 * write {.momentum = 0, .set_momentum = true}. */
typedef struct loom_batch_norm_options {
  double eps;                   /* 0 = 1e-5 */
  double momentum;              /* 0 = 0.1 unless set_momentum; NAN = None */
  bool set_momentum;            /* take momentum as given, 0 included */
  bool no_affine;               /* affine=False: no weight and bias */
  bool no_track_running_stats;  /* track_running_stats=False: always batch statistics */
} loom_batch_norm_options;

/* BatchNorm1d: input [N, C] or [N, C, L]. Parameters weight (ones) and bias
 * (zeros) [C]; buffers running_mean (zeros), running_var (ones) [C] and
 * num_batches_tracked (i64, 0-d). Eval uses the running statistics when
 * tracked, else the batch's. */
loom_module *loom_nn_batch_norm1d(int64_t num_features, const loom_batch_norm_options *opts);
/* BatchNorm2d: input [N, C, H, W]. */
loom_module *loom_nn_batch_norm2d(int64_t num_features, const loom_batch_norm_options *opts);
/* BatchNorm3d: input [N, C, D, H, W]. */
loom_module *loom_nn_batch_norm3d(int64_t num_features, const loom_batch_norm_options *opts);

/* InstanceNorm1d / 2d / 3d: PyTorch's defaults are affine=False and
 * track_running_stats=False, so the booleans here turn them on. momentum and
 * set_momentum as in loom_batch_norm_options (NAN = None, which InstanceNorm
 * treats as 0, as PyTorch does). */
typedef struct loom_instance_norm_options {
  double eps;                /* 0 = 1e-5 */
  double momentum;           /* 0 = 0.1 unless set_momentum; NAN = None */
  bool set_momentum;         /* take momentum as given, 0 included */
  bool affine;               /* weight (ones) and bias (zeros) [C] */
  bool track_running_stats;  /* running_mean, running_var, num_batches_tracked buffers */
} loom_instance_norm_options;

/* InstanceNorm1d: input [N, C, L] or unbatched [C, L]. */
loom_module *loom_nn_instance_norm1d(int64_t num_features, const loom_instance_norm_options *opts);
/* InstanceNorm2d: input [N, C, H, W] or unbatched [C, H, W]. */
loom_module *loom_nn_instance_norm2d(int64_t num_features, const loom_instance_norm_options *opts);
/* InstanceNorm3d: input [N, C, D, H, W] or unbatched [C, D, H, W]. */
loom_module *loom_nn_instance_norm3d(int64_t num_features, const loom_instance_norm_options *opts);

typedef struct loom_layer_norm_options {
  double eps;                   /* 0 = 1e-5 */
  bool no_elementwise_affine;   /* elementwise_affine=False: no weight, no bias */
  bool no_bias;                 /* bias=False: weight only */
} loom_layer_norm_options;

/* LayerNorm over the last n dims (normalized_shape); weight (ones) and bias
 * (zeros) of that shape. */
loom_module *loom_nn_layer_norm(const int64_t *normalized_shape, int n, const loom_layer_norm_options *opts);

typedef struct loom_group_norm_options {
  double eps;       /* 0 = 1e-5 */
  bool no_affine;   /* affine=False */
} loom_group_norm_options;

/* GroupNorm: input [N, C, *]; num_groups must divide num_channels. */
loom_module *loom_nn_group_norm(int64_t num_groups, int64_t num_channels, const loom_group_norm_options *opts);

/* The configuration of a norm module, as loom_module_state returns it. */
typedef enum loom_norm_kind {
  LOOM_NORM_BATCH1D,
  LOOM_NORM_BATCH2D,
  LOOM_NORM_INSTANCE1D,
  LOOM_NORM_INSTANCE2D,
  LOOM_NORM_LAYER,
  LOOM_NORM_GROUP,
  LOOM_NORM_BATCH3D,
  LOOM_NORM_INSTANCE3D
} loom_norm_kind;

typedef struct loom_norm_config {
  loom_norm_kind kind;
  int64_t num_features;       /* channels (BatchNorm, InstanceNorm, GroupNorm) */
  int64_t num_groups;         /* GroupNorm */
  int64_t normalized_shape[LOOM_MAX_DIMS];  /* LayerNorm */
  int n_normalized;
  double eps;
  double momentum;            /* NAN = cumulative moving average */
  bool affine;                /* weight (and bias) present */
  bool bias;                  /* LayerNorm: bias present */
  bool track_running_stats;
} loom_norm_config;

#ifdef __cplusplus
}
#endif
#endif
