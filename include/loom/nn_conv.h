/* Loom convolution and pooling layers (modules and functional forms).
 *
 * Tensors are NCHW ([N, C, H, W]; 1-d forms [N, C, L]); an unbatched input
 * ([C, H, W] / [C, L]) gives an unbatched output, as in PyTorch. Options
 * structs are all-zero for PyTorch's defaults and NULL means all-zero. 2-d
 * options are {h, w} pairs; the 1-d forms read element [0] only; Conv3d has
 * its own options with {d, h, w} triples. */
#ifndef LOOM_NN_CONV_H
#define LOOM_NN_CONV_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_module loom_module;

/* ---- convolution ---- */
typedef struct loom_conv_opts {
  int stride[2];          /* 0 = 1 */
  int padding[2];         /* zero padding on both sides (default 0) */
  int dilation[2];        /* 0 = 1 */
  int groups;             /* 0 = 1; groups = in_channels is depthwise */
  bool same_padding;      /* padding='same': output size = input size (stride 1 only);
                             an odd total padding puts the extra row/column at the end */
  int output_padding[2];  /* conv_transpose only: extra rows/columns at the end
                             (smaller than stride or dilation) */
  int64_t output_size[2]; /* conv_transpose only: 0 = from output_padding; else the
                             output's spatial size, within [Hout, Hout + stride - 1]
                             of the size without output_padding (PyTorch's output_size) */
  bool no_bias;           /* modules: bias=False */
  const char *padding_mode; /* NULL or "zeros", "reflect", "replicate", "circular" (F.pad
                               of the input by padding, then no zero padding; not for
                               transposed convolutions) */
} loom_conv_opts;

/* x [N, C, H, W], weight [Cout, C / groups, kh, kw], bias [Cout] or NULL. */
loom_tensor *loom_conv2d(const loom_tensor *x, const loom_tensor *weight, const loom_tensor *bias,
                         const loom_conv_opts *opts);
/* x [N, C, L], weight [Cout, C / groups, k], bias [Cout] or NULL. */
loom_tensor *loom_conv1d(const loom_tensor *x, const loom_tensor *weight, const loom_tensor *bias,
                         const loom_conv_opts *opts);
/* x [N, Cin, H, W], weight [Cin, Cout / groups, kh, kw], bias [Cout] or NULL;
 * Hout = (H - 1) stride - 2 padding + dilation (kh - 1) + output_padding + 1. */
loom_tensor *loom_conv_transpose2d(const loom_tensor *x, const loom_tensor *weight, const loom_tensor *bias,
                                   const loom_conv_opts *opts);
/* x [N, Cin, L], weight [Cin, Cout / groups, k], bias [Cout] or NULL. */
loom_tensor *loom_conv_transpose1d(const loom_tensor *x, const loom_tensor *weight, const loom_tensor *bias,
                                   const loom_conv_opts *opts);

/* Modules "Conv2d", "Conv1d", "ConvTranspose2d", "ConvTranspose1d" with parameters weight and
 * bias (absent with no_bias), PyTorch's default initialisation:
 * kaiming_uniform(a = sqrt(5)) weight, bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
loom_module *loom_nn_conv2d(int64_t in_channels, int64_t out_channels, int kernel_h, int kernel_w,
                            const loom_conv_opts *opts);
loom_module *loom_nn_conv1d(int64_t in_channels, int64_t out_channels, int kernel_size,
                            const loom_conv_opts *opts);
loom_module *loom_nn_conv_transpose2d(int64_t in_channels, int64_t out_channels, int kernel_h, int kernel_w,
                                      const loom_conv_opts *opts);
loom_module *loom_nn_conv_transpose1d(int64_t in_channels, int64_t out_channels, int kernel_size,
                                      const loom_conv_opts *opts);

/* ---- 3-d convolution ---- */
/* Conv3d's options, {d, h, w} triples; the same meanings as loom_conv_opts. */
typedef struct loom_conv3d_opts {
  int stride[3];            /* 0 = 1 */
  int padding[3];           /* on both sides */
  int dilation[3];          /* 0 = 1 */
  int groups;               /* 0 = 1 */
  bool same_padding;        /* padding='same' (stride 1; an odd total puts the extra one at the end) */
  bool no_bias;             /* module: bias=False */
  const char *padding_mode; /* NULL or "zeros", "reflect", "replicate", "circular" */
} loom_conv3d_opts;
/* x [N, C, D, H, W] or [C, D, H, W], weight [Cout, C / groups, kd, kh, kw],
 * bias [Cout] or NULL. Runs as kd 2-d convolutions, one per depth tap, each
 * over every output depth at once (so on cuDNN / OpenBLAS like conv2d), after
 * one loom_pad of the input. */
loom_tensor *loom_conv3d(const loom_tensor *x, const loom_tensor *weight, const loom_tensor *bias,
                         const loom_conv3d_opts *opts);
/* Module "Conv3d": weight [out, in / groups, kd, kh, kw] and bias [out],
 * initialised as the other convolutions. MACs N·Cout·Do·Ho·Wo·(Cin/groups)·kd·kh·kw. */
typedef struct loom_conv3d_config {
  int64_t in_channels, out_channels;
  int kernel[3];
  loom_conv3d_opts conv;  /* defaults filled in */
} loom_conv3d_config;
loom_module *loom_nn_conv3d(int64_t in_channels, int64_t out_channels, int kernel_d, int kernel_h, int kernel_w,
                            const loom_conv3d_opts *opts);

/* ---- pooling ---- */
typedef struct loom_pool_opts {
  int stride[2];     /* 0 = the kernel size */
  int padding[2];    /* implicit padding on both sides, at most half the kernel */
  int dilation[2];   /* max pooling only; 0 = 1 */
  bool ceil_mode;    /* ceil instead of floor for the output size (the last window
                        must still start inside the input or the left padding) */
  bool exclude_pad;  /* avg pooling: count_include_pad=False (divide by the
                        number of input elements in the window) */
  int divisor_override; /* avg_pool2d: divide every window's sum by this
                           (PyTorch's divisor_override; 0 = none) */
} loom_pool_opts;

/* Max pooling; *indices (may be NULL) receives LOOM_I64 positions of the
 * maxima, flat in each input plane (h * W + w; 1-d: l), as PyTorch's
 * return_indices. */
loom_tensor *loom_max_pool2d(const loom_tensor *x, int kernel_h, int kernel_w, const loom_pool_opts *opts,
                             loom_tensor **indices);
loom_tensor *loom_max_pool1d(const loom_tensor *x, int kernel_size, const loom_pool_opts *opts,
                             loom_tensor **indices);
loom_tensor *loom_avg_pool2d(const loom_tensor *x, int kernel_h, int kernel_w, const loom_pool_opts *opts);
loom_tensor *loom_avg_pool1d(const loom_tensor *x, int kernel_size, const loom_pool_opts *opts);
/* Output [N, C, out_h, out_w]; output row i averages input rows
 * [floor(i H / out_h), ceil((i + 1) H / out_h)). A size of -1 keeps the
 * input's size (PyTorch's None). Inputs [N, C, H, W] or [C, H, W]; the 1-d
 * forms take [N, C, L] or [C, L]. */
loom_tensor *loom_adaptive_avg_pool2d(const loom_tensor *x, int64_t out_h, int64_t out_w);
loom_tensor *loom_adaptive_avg_pool1d(const loom_tensor *x, int64_t out_l);
/* Adaptive max pooling over the same windows; *indices (may be NULL) as
 * loom_max_pool2d's (PyTorch's return_indices). */
loom_tensor *loom_adaptive_max_pool2d(const loom_tensor *x, int64_t out_h, int64_t out_w, loom_tensor **indices);
loom_tensor *loom_adaptive_max_pool1d(const loom_tensor *x, int64_t out_l, loom_tensor **indices);

/* Max unpooling (F.max_unpool2d / 1d), the inverse of max pooling: zeros of
 * x's rank with x's values at the flat positions in each plane that indices
 * (x's shape, as loom_max_pool2d returns them) names. Only the stride (0 = the
 * kernel) and padding of opts apply. output_size (NULL for the default, else
 * 2 sizes; 1-d: 1) gives the spatial size; the default is
 * (in - 1) * stride - 2 * padding + kernel, and a given size must lie strictly
 * within stride of it, as in PyTorch. An index outside the output plane is an
 * error. The gradient of x is the gather of the output's at the indices. */
loom_tensor *loom_max_unpool2d(const loom_tensor *x, const loom_tensor *indices, int kernel_h, int kernel_w,
                               const loom_pool_opts *opts, const int64_t *output_size);
loom_tensor *loom_max_unpool1d(const loom_tensor *x, const loom_tensor *indices, int kernel_size,
                               const loom_pool_opts *opts, const int64_t *output_size);

/* Modules "MaxPool2d", "MaxPool1d", "AvgPool2d", "AvgPool1d", "AdaptiveAvgPool2d",
 * "AdaptiveAvgPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool1d" (the 1-d
 * adaptive ones take out_l). */
loom_module *loom_nn_max_pool2d(int kernel_h, int kernel_w, const loom_pool_opts *opts);
loom_module *loom_nn_max_pool1d(int kernel_size, const loom_pool_opts *opts);
loom_module *loom_nn_avg_pool2d(int kernel_h, int kernel_w, const loom_pool_opts *opts);
loom_module *loom_nn_avg_pool1d(int kernel_size, const loom_pool_opts *opts);
loom_module *loom_nn_adaptive_avg_pool2d(int64_t out_h, int64_t out_w);
loom_module *loom_nn_adaptive_avg_pool1d(int64_t out_l);
loom_module *loom_nn_adaptive_max_pool2d(int64_t out_h, int64_t out_w);
loom_module *loom_nn_adaptive_max_pool1d(int64_t out_l);
/* Modules "MaxUnpool2d" and "MaxUnpool1d": forward takes {x, indices} or
 * {x, indices, like}, where like's last 2 (1-d: 1) sizes are the output size
 * (PyTorch's output_size=like.size()). */
loom_module *loom_nn_max_unpool2d(int kernel_h, int kernel_w, const loom_pool_opts *opts);
loom_module *loom_nn_max_unpool1d(int kernel_size, const loom_pool_opts *opts);

/* The configuration of a conv or pooling module (loom_module_state(m)). */
typedef struct loom_conv_config {
  int64_t in_channels, out_channels;  /* conv only */
  int kernel[2];                      /* conv and pooling */
  int64_t output_size[2];             /* adaptive pooling (1-d: output_size[1]) */
  int dims;                           /* 1 or 2 */
  loom_conv_opts conv;                /* conv layers: defaults filled in */
  loom_pool_opts pool;                /* pooling layers: defaults filled in */
} loom_conv_config;

#ifdef __cplusplus
}
#endif
#endif
