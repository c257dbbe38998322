/* The conv family's op definitions with the caller's name in their errors,
 * so the modules (src/nn/conv.c) report "Conv2d: ..." and the functional
 * forms "conv2d: ...". dims is 1 or 2; k[] the kernel (k[0] for 1-d).
 * Implemented in src/core/conv.c, conv3d.c, pool.c and unpool.c. */
#ifndef LOOM_CORE_CONV_IMPL_H
#define LOOM_CORE_CONV_IMPL_H

#include "loom/nn_conv.h"

loom_tensor *core_conv(const char *who, int dims, bool transpose, const loom_tensor *x, const loom_tensor *w,
                       const loom_tensor *b, const loom_conv_opts *opts);
loom_tensor *core_max_pool(const char *who, int dims, const loom_tensor *x, const int *k,
                           const loom_pool_opts *opts, loom_tensor **indices);
loom_tensor *core_avg_pool(const char *who, int dims, const loom_tensor *x, const int *k,
                           const loom_pool_opts *opts);
/* Adaptive max (is_max) or average pooling to out[0] x out[1] (1-d: out[1]). */
loom_tensor *core_adaptive_pool(const char *who, int dims, bool is_max, const loom_tensor *x, const int64_t *out,
                                loom_tensor **indices);
/* 3-d convolution (src/core/conv3d.c) and its option check. */
loom_tensor *core_conv3d(const char *who, const loom_tensor *x, const loom_tensor *w, const loom_tensor *b,
                         const loom_conv3d_opts *opts);
bool core_conv3d_check_opts(const char *who, const loom_conv3d_opts *opts);
/* Max unpooling of x at indices (src/core/unpool.c); out: NULL (the default
 * size) or dims spatial sizes. */
loom_tensor *core_max_unpool(const char *who, int dims, const loom_tensor *x, const loom_tensor *indices,
                             const int *k, const loom_pool_opts *opts, const int64_t *out);

/* The static name of a conv padding_mode (NULL = "zeros"), NULL when unknown. */
const char *core_conv_padding_mode(const char *mode);
/* Option checks alone (module constructors): true, or false + error. */
bool core_conv_check_opts(const char *who, int dims, bool transpose, const loom_conv_opts *opts);
bool core_pool_check_opts(const char *who, int dims, bool is_max, const int *k, const loom_pool_opts *opts);
bool core_unpool_check_opts(const char *who, int dims, const int *k, const loom_pool_opts *opts);
/* Adaptive output size: positive or -1 (keep the input's); 1-d checks ow alone. */
bool core_adaptive_check_size(const char *who, int dims, int64_t oh, int64_t ow);

#endif
