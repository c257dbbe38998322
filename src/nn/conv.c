/* Conv and pooling modules: Conv1d, Conv2d, ConvTranspose1d/2d, MaxPool1d/2d,
 * AvgPool1d/2d, AdaptiveAvgPool1d/2d, AdaptiveMaxPool1d/2d, MaxUnpool1d/2d. Forward calls the op definitions of
 * src/core/conv.c and pool.c with the layer's type name, so errors read
 * "Conv2d: ...". State: a loom_conv_config with the defaults filled in. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/conv_impl.h"
#include "core/tensor_impl.h"
#include "loom/nn.h"

static loom_conv_config *config_of(const loom_module *m) { return loom_module_state(m); }

static bool one_input(const loom_module *m, int n_in) {
  if (n_in == 1) return true;
  core_set_error(LOOM_ERR_INVALID, "%s: forward takes 1 input, got %d", loom_module_type(m), n_in);
  return false;
}

static loom_module *new_module(const loom_module_kind *kind, const loom_conv_config *c) {
  loom_conv_config *state = malloc(sizeof *state);
  if (!state) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", kind->type);
    return NULL;
  }
  *state = *c;
  loom_module *m = loom_module_new(kind, state);
  if (!m) free(state);
  return m;
}

/* ---- convolutions ---- */

static loom_tensor *conv_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (!one_input(m, n_in)) return NULL;
  const loom_conv_config *c = config_of(m);
  loom_tensor *w = loom_module_param(m, "weight");
  loom_tensor *b = c->conv.no_bias ? NULL : loom_module_param(m, "bias");
  if (!w || (!c->conv.no_bias && !b)) return NULL;
  bool transpose = strncmp(loom_module_type(m), "ConvTranspose", 13) == 0;
  return core_conv(loom_module_type(m), c->dims, transpose, in[0], w, b, &c->conv);
}

/* Per output element: in_channels / groups * kernel multiply-accumulates. */
static int64_t conv_macs(const loom_module *m, loom_tensor *const *in, int n_in, const loom_tensor *out) {
  (void)in, (void)n_in;
  const loom_conv_config *c = config_of(m);
  if (!out) return 0;
  return loom_numel(out) * (c->in_channels / c->conv.groups) * c->kernel[0] * c->kernel[1];
}

/* Per input element: out_channels / groups * kernel (each input scatters its
 * products over a kernel-sized patch of every output channel of its group). */
static int64_t conv_transpose_macs(const loom_module *m, loom_tensor *const *in, int n_in, const loom_tensor *out) {
  (void)out;
  const loom_conv_config *c = config_of(m);
  if (n_in < 1 || !in[0]) return 0;
  return loom_numel(in[0]) * (c->out_channels / c->conv.groups) * c->kernel[0] * c->kernel[1];
}

/* PyTorch's _ConvNd.reset_parameters: kaiming_uniform(a = sqrt(5)) weight and
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) bias, fan_in from the weight (for the
 * transposed conv weight [in, out / groups, k...], dim 1 times the kernel). */
static void conv_reset(loom_module *m) {
  const loom_conv_config *c = config_of(m);
  loom_tensor *w = loom_module_param(m, "weight");
  if (!w) return;
  loom_init_kaiming_uniform_(w, sqrt(5.0), LOOM_FAN_IN, "leaky_relu");
  int64_t fan_in = 0, fan_out = 0;
  if (c->conv.no_bias || loom_init_fans(w, &fan_in, &fan_out) != 0) return;
  loom_tensor *b = loom_module_param(m, "bias");
  double bound = fan_in > 0 ? 1.0 / sqrt((double)fan_in) : 0;
  if (b) loom_init_uniform_(b, -bound, bound);
}

static const loom_module_kind conv1d_kind = {"Conv1d", conv_forward, NULL, conv_macs, conv_reset};
static const loom_module_kind conv2d_kind = {"Conv2d", conv_forward, NULL, conv_macs, conv_reset};
static const loom_module_kind conv_transpose2d_kind = {"ConvTranspose2d", conv_forward, NULL, conv_transpose_macs,
                                                       conv_reset};
static const loom_module_kind conv_transpose1d_kind = {"ConvTranspose1d", conv_forward, NULL, conv_transpose_macs,
                                                       conv_reset};

static loom_module *conv_build(const loom_module_kind *kind, int dims, int64_t in, int64_t out, const int *k,
                               const loom_conv_opts *o) {
  static const loom_conv_opts zero;
  const char *who = kind->type;
  bool transpose = kind == &conv_transpose2d_kind || kind == &conv_transpose1d_kind;
  if (!o) o = &zero;
  if (!core_conv_check_opts(who, dims, transpose, o)) return NULL;
  loom_conv_config c;
  memset(&c, 0, sizeof c);
  c.in_channels = in, c.out_channels = out, c.dims = dims, c.conv = *o;
  c.conv.padding_mode = core_conv_padding_mode(o->padding_mode); /* static: never keep the caller's pointer */
  c.kernel[0] = c.kernel[1] = 1;
  if (!c.conv.groups) c.conv.groups = 1;
  for (int i = 0; i < dims; i++) {
    c.kernel[2 - dims + i] = k[i];
    if (!c.conv.stride[i]) c.conv.stride[i] = 1;
    if (!c.conv.dilation[i]) c.conv.dilation[i] = 1;
  }
  int64_t g = c.conv.groups;
  if (in <= 0 || out <= 0 || k[0] <= 0 || (dims == 2 && k[1] <= 0) || in % g || out % g) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected positive channels and kernel with in_channels (%lld) and "
                   "out_channels (%lld) divisible by groups (%lld), kernel %d%s%d", who, (long long)in, (long long)out,
                   (long long)g, k[0], dims == 2 ? "x" : "", dims == 2 ? k[1] : 0);
    return NULL;
  }
  loom_module *m = new_module(kind, &c);
  if (!m) return NULL;
  loom_shape ws = dims == 2 ? LOOM_SHAPE(transpose ? in : out, (transpose ? out : in) / g, k[0], k[1])
                            : LOOM_SHAPE(transpose ? in : out, (transpose ? out : in) / g, k[0]);
  loom_scope_begin();
  bool ok = loom_module_add_parameter(m, "weight", loom_zeros(ws, LOOM_F32, loom_cpu())) != NULL;
  if (ok && !c.conv.no_bias)
    ok = loom_module_add_parameter(m, "bias", loom_zeros(LOOM_SHAPE(out), LOOM_F32, loom_cpu())) != NULL;
  loom_scope_end();
  if (!ok) {
    loom_module_free(m);
    return NULL;
  }
  conv_reset(m);
  return m;
}

loom_module *loom_nn_conv2d(int64_t in_channels, int64_t out_channels, int kernel_h, int kernel_w,
                            const loom_conv_opts *opts) {
  int k[2] = {kernel_h, kernel_w};
  return conv_build(&conv2d_kind, 2, in_channels, out_channels, k, opts);
}

loom_module *loom_nn_conv1d(int64_t in_channels, int64_t out_channels, int kernel_size, const loom_conv_opts *opts) {
  return conv_build(&conv1d_kind, 1, in_channels, out_channels, &kernel_size, opts);
}

loom_module *loom_nn_conv_transpose2d(int64_t in_channels, int64_t out_channels, int kernel_h, int kernel_w,
                                      const loom_conv_opts *opts) {
  int k[2] = {kernel_h, kernel_w};
  return conv_build(&conv_transpose2d_kind, 2, in_channels, out_channels, k, opts);
}

loom_module *loom_nn_conv_transpose1d(int64_t in_channels, int64_t out_channels, int kernel_size,
                                      const loom_conv_opts *opts) {
  return conv_build(&conv_transpose1d_kind, 1, in_channels, out_channels, &kernel_size, opts);
}

/* ---- pooling (no parameters; MACs 0: comparisons and sums, no multiplies) ---- */

static const int *pool_kernel(const loom_conv_config *c) { return c->dims == 2 ? c->kernel : c->kernel + 1; }

static loom_tensor *max_pool_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (!one_input(m, n_in)) return NULL;
  const loom_conv_config *c = config_of(m);
  return core_max_pool(loom_module_type(m), c->dims, in[0], pool_kernel(c), &c->pool, NULL);
}

static loom_tensor *avg_pool_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (!one_input(m, n_in)) return NULL;
  const loom_conv_config *c = config_of(m);
  return core_avg_pool(loom_module_type(m), c->dims, in[0], pool_kernel(c), &c->pool);
}

static loom_tensor *adaptive_forward(loom_module *m, loom_tensor *const *in, int n_in, bool is_max) {
  if (!one_input(m, n_in)) return NULL;
  const loom_conv_config *c = config_of(m);
  return core_adaptive_pool(loom_module_type(m), c->dims, is_max, in[0], c->output_size, NULL);
}
static loom_tensor *adaptive_avg_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  return adaptive_forward(m, in, n_in, false);
}
static loom_tensor *adaptive_max_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  return adaptive_forward(m, in, n_in, true);
}

static const loom_module_kind max_pool1d_kind = {"MaxPool1d", max_pool_forward, NULL, NULL, NULL};
static const loom_module_kind max_pool2d_kind = {"MaxPool2d", max_pool_forward, NULL, NULL, NULL};
static const loom_module_kind avg_pool1d_kind = {"AvgPool1d", avg_pool_forward, NULL, NULL, NULL};
static const loom_module_kind avg_pool2d_kind = {"AvgPool2d", avg_pool_forward, NULL, NULL, NULL};
static const loom_module_kind adaptive_avg2d_kind = {"AdaptiveAvgPool2d", adaptive_avg_forward, NULL, NULL, NULL};
static const loom_module_kind adaptive_avg1d_kind = {"AdaptiveAvgPool1d", adaptive_avg_forward, NULL, NULL, NULL};
static const loom_module_kind adaptive_max2d_kind = {"AdaptiveMaxPool2d", adaptive_max_forward, NULL, NULL, NULL};
static const loom_module_kind adaptive_max1d_kind = {"AdaptiveMaxPool1d", adaptive_max_forward, NULL, NULL, NULL};

static loom_module *pool_build(const loom_module_kind *kind, int dims, const int *k, const loom_pool_opts *o) {
  static const loom_pool_opts zero;
  bool is_max = kind == &max_pool1d_kind || kind == &max_pool2d_kind;
  if (!o) o = &zero;
  if (!core_pool_check_opts(kind->type, dims, is_max, k, o)) return NULL;
  loom_conv_config c;
  memset(&c, 0, sizeof c);
  c.dims = dims, c.pool = *o;
  c.kernel[0] = c.kernel[1] = 1;
  for (int i = 0; i < dims; i++) {
    c.kernel[2 - dims + i] = k[i];
    if (!c.pool.stride[i]) c.pool.stride[i] = k[i];
    if (!c.pool.dilation[i]) c.pool.dilation[i] = 1;
  }
  return new_module(kind, &c);
}

loom_module *loom_nn_max_pool2d(int kernel_h, int kernel_w, const loom_pool_opts *opts) {
  int k[2] = {kernel_h, kernel_w};
  return pool_build(&max_pool2d_kind, 2, k, opts);
}

loom_module *loom_nn_max_pool1d(int kernel_size, const loom_pool_opts *opts) {
  return pool_build(&max_pool1d_kind, 1, &kernel_size, opts);
}

loom_module *loom_nn_avg_pool2d(int kernel_h, int kernel_w, const loom_pool_opts *opts) {
  int k[2] = {kernel_h, kernel_w};
  return pool_build(&avg_pool2d_kind, 2, k, opts);
}

loom_module *loom_nn_avg_pool1d(int kernel_size, const loom_pool_opts *opts) {
  return pool_build(&avg_pool1d_kind, 1, &kernel_size, opts);
}

/* ---- max unpooling: {x, indices} or {x, indices, like} ---- */

static loom_tensor *unpool_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  const loom_conv_config *c = config_of(m);
  const char *who = loom_module_type(m);
  if (n_in != 2 && n_in != 3) {
    core_set_error(LOOM_ERR_INVALID, "%s: forward takes 2 inputs (x, indices) or 3 (x, indices, a tensor of the "
                   "output's size), got %d", who, n_in);
    return NULL;
  }
  int64_t out[2];
  if (n_in == 3) {
    if (!in[2]) {
      core_null_error("%s: the output-size tensor is NULL", who);
      return NULL;
    }
    loom_shape ls = loom_shape_of(in[2]);
    if (ls.ndim < c->dims) {
      core_set_error(LOOM_ERR_INVALID, "%s: the output-size tensor %s has fewer than %d dims", who,
                     loom_shape_str(ls), c->dims);
      return NULL;
    }
    for (int i = 0; i < c->dims; i++) out[i] = ls.d[ls.ndim - c->dims + i];
  }
  return core_max_unpool(who, c->dims, in[0], in[1], pool_kernel(c), &c->pool, n_in == 3 ? out : NULL);
}

static const loom_module_kind max_unpool1d_kind = {"MaxUnpool1d", unpool_forward, NULL, NULL, NULL};
static const loom_module_kind max_unpool2d_kind = {"MaxUnpool2d", unpool_forward, NULL, NULL, NULL};

static loom_module *unpool_build(const loom_module_kind *kind, int dims, const int *k, const loom_pool_opts *o) {
  static const loom_pool_opts zero;
  if (!o) o = &zero;
  if (!core_unpool_check_opts(kind->type, dims, k, o)) return NULL;
  loom_conv_config c;
  memset(&c, 0, sizeof c);
  c.dims = dims, c.kernel[0] = c.kernel[1] = 1;
  for (int i = 0; i < dims; i++) {
    c.kernel[2 - dims + i] = k[i];
    c.pool.stride[i] = o->stride[i] ? o->stride[i] : k[i];
    c.pool.padding[i] = o->padding[i];
  }
  return new_module(kind, &c);
}

loom_module *loom_nn_max_unpool2d(int kernel_h, int kernel_w, const loom_pool_opts *opts) {
  int k[2] = {kernel_h, kernel_w};
  return unpool_build(&max_unpool2d_kind, 2, k, opts);
}

loom_module *loom_nn_max_unpool1d(int kernel_size, const loom_pool_opts *opts) {
  return unpool_build(&max_unpool1d_kind, 1, &kernel_size, opts);
}

/* out[1] only for 1-d; -1 keeps the input's size. */
static loom_module *adaptive_build(const loom_module_kind *kind, int dims, int64_t out_h, int64_t out_w) {
  if (!core_adaptive_check_size(kind->type, dims, out_h, out_w)) return NULL;
  loom_conv_config c;
  memset(&c, 0, sizeof c);
  c.dims = dims, c.output_size[0] = dims == 2 ? out_h : 1, c.output_size[1] = out_w;
  return new_module(kind, &c);
}

loom_module *loom_nn_adaptive_avg_pool2d(int64_t out_h, int64_t out_w) {
  return adaptive_build(&adaptive_avg2d_kind, 2, out_h, out_w);
}

loom_module *loom_nn_adaptive_avg_pool1d(int64_t out_l) { return adaptive_build(&adaptive_avg1d_kind, 1, 1, out_l); }

loom_module *loom_nn_adaptive_max_pool2d(int64_t out_h, int64_t out_w) {
  return adaptive_build(&adaptive_max2d_kind, 2, out_h, out_w);
}

loom_module *loom_nn_adaptive_max_pool1d(int64_t out_l) { return adaptive_build(&adaptive_max1d_kind, 1, 1, out_l); }
