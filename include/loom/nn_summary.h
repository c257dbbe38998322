/* Loom module summaries: the torchsummary-style table, parameter counts, MACs and FLOPs.
 *
 * The model runs once, under no_grad and in eval mode (each module's training
 * flag and the device's generator are restored afterwards), on random input of
 * the given shape (uniform [0, 1) for floating dtypes, 0 or 1 for integer
 * ones, e.g. token ids), with a forward hook that records one row per module
 * forward call, in the order the calls finish, like torchsummary: every module
 * except Sequential / ModuleList containers and the root itself (a root without
 * children gets its own row). Row names are "<Type>-<index>", "Linear-1".
 *
 * input is the whole input shape, batch first: [N, 1, 28, 28]. Output shapes
 * are printed with -1 for the batch dimension as torchsummary does; every
 * count (sizes, MACs, FLOPs) is for the whole given input (all N samples),
 * so with N = 1 the figures equal torchsummary's defaults. 1 MAC = 2 FLOPs;
 * a module's MACs come from its kind's macs callback (0 when it has none).
 * A row's "Param #" counts the module's own parameters (not its children's);
 * the totals count every unique parameter of the model once. Sizes follow
 * torchsummary: 4 bytes per element whatever the dtype; forward/backward =
 * 2 x the sum of every row's output elements. */
#ifndef LOOM_NN_SUMMARY_H
#define LOOM_NN_SUMMARY_H

#include <stdio.h>

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_module loom_module;

typedef struct loom_summary_row {
  char name[64];          /* "Conv2d-1" */
  const char *type;       /* kind type name ("Conv2d"), static */
  loom_shape output;      /* real output shape (batch dimension included) */
  int64_t params;         /* the module's own parameters (elements) */
  int64_t trainable;      /* of which requires_grad */
  int64_t macs;           /* this call, whole input */
} loom_summary_row;

typedef struct loom_summary_stats {
  int64_t total_params, trainable_params, non_trainable_params;
  int64_t macs, flops;             /* whole input; flops = 2 * macs */
  int64_t output_elements;         /* sum over rows of their output numel */
  double input_mb, forward_backward_mb, params_mb, total_mb;
  int n_rows;
  loom_summary_row *rows;          /* n_rows entries; free with loom_summary_stats_free */
} loom_summary_stats;

/* Runs m once on random input of shape `input` (dtype dt, device dev: the
 * model's parameters must already be there) and fills *out. Returns 0, or an
 * error status with the forward's error message (*out is then zeroed). */
int loom_summary_stats_get(loom_module *m, loom_shape input, loom_dtype dt, loom_device dev,
                           loom_summary_stats *out);
void loom_summary_stats_free(loom_summary_stats *s);
/* The same for a model of several inputs (a GCN's node features and graph):
 * runs loom_forward_n(m, inputs, n_in) on the caller's tensors. Sizes count
 * every input's elements at 4 bytes. */
int loom_summary_stats_get_n(loom_module *m, loom_tensor *const *inputs, int n_in, loom_summary_stats *out);

/* Total multiply-accumulates of one forward on `input` (whole input); -1 on error. */
int64_t loom_module_macs(loom_module *m, loom_shape input, loom_dtype dt, loom_device dev);

/* The summary table as a malloc'd string (free() it), or NULL on error. */
char *loom_summary_string(loom_module *m, loom_shape input, loom_dtype dt, loom_device dev);
/* Prints the summary table to out (stdout when NULL). Returns 0 or an error status. */
int loom_summary(loom_module *m, loom_shape input, loom_dtype dt, loom_device dev, FILE *out);
/* The table of loom_summary_stats_get_n, printed to out (stdout when NULL). */
int loom_summary_n(loom_module *m, loom_tensor *const *inputs, int n_in, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
