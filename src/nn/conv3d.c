/* Conv3d: the module over loom_conv3d (src/core/conv3d.c), with PyTorch's
 * parameter names and initialisation. State: a loom_conv3d_config with the
 * defaults filled in. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/conv_impl.h"
#include "core/tensor_impl.h"
#include "loom/nn.h"

static loom_tensor *conv3d_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (n_in != 1) {
    core_set_error(LOOM_ERR_INVALID, "Conv3d: forward takes 1 input, got %d", n_in);
    return NULL;
  }
  const loom_conv3d_config *c = loom_module_state(m);
  return core_conv3d("Conv3d", in[0], loom_module_param(m, "weight"), loom_module_param(m, "bias"), &c->conv);
}

static int64_t conv3d_macs(const loom_module *m, loom_tensor *const *in, int n_in, const loom_tensor *out) {
  (void)in, (void)n_in;
  const loom_conv3d_config *c = loom_module_state(m);
  if (!out) return 0;
  return loom_numel(out) * (c->in_channels / c->conv.groups) * c->kernel[0] * c->kernel[1] * c->kernel[2];
}

/* kaiming_uniform(a = sqrt(5)) weight, bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as PyTorch. */
static void conv3d_reset(loom_module *m) {
  const loom_conv3d_config *c = loom_module_state(m);
  loom_tensor *w = loom_module_param(m, "weight");
  if (!w) return;
  loom_init_kaiming_uniform_(w, sqrt(5.0), LOOM_FAN_IN, "leaky_relu");
  int64_t fan_in = 0, fan_out = 0;
  if (c->conv.no_bias || loom_init_fans(w, &fan_in, &fan_out) != 0) return;
  double bound = fan_in > 0 ? 1.0 / sqrt((double)fan_in) : 0;
  loom_init_uniform_(loom_module_param(m, "bias"), -bound, bound);
}

static const loom_module_kind conv3d_kind = {"Conv3d", conv3d_forward, NULL, conv3d_macs, conv3d_reset};

loom_module *loom_nn_conv3d(int64_t in_channels, int64_t out_channels, int kernel_d, int kernel_h, int kernel_w,
                            const loom_conv3d_opts *opts) {
  static const loom_conv3d_opts zero;
  if (!opts) opts = &zero;
  if (!core_conv3d_check_opts("Conv3d", opts)) return NULL;
  loom_conv3d_config c;
  memset(&c, 0, sizeof c);
  c.in_channels = in_channels, c.out_channels = out_channels, c.conv = *opts;
  c.conv.padding_mode = core_conv_padding_mode(opts->padding_mode); /* static: never keep the caller's pointer */
  c.kernel[0] = kernel_d, c.kernel[1] = kernel_h, c.kernel[2] = kernel_w;
  if (!c.conv.groups) c.conv.groups = 1;
  for (int i = 0; i < 3; i++) {
    if (!c.conv.stride[i]) c.conv.stride[i] = 1;
    if (!c.conv.dilation[i]) c.conv.dilation[i] = 1;
  }
  int64_t g = c.conv.groups;
  if (in_channels <= 0 || out_channels <= 0 || kernel_d <= 0 || kernel_h <= 0 || kernel_w <= 0 || in_channels % g ||
      out_channels % g) {
    core_set_error(LOOM_ERR_INVALID, "Conv3d: expected positive channels and kernel with in_channels (%lld) and "
                   "out_channels (%lld) divisible by groups (%lld), kernel %dx%dx%d", (long long)in_channels,
                   (long long)out_channels, (long long)g, kernel_d, kernel_h, kernel_w);
    return NULL;
  }
  loom_conv3d_config *state = malloc(sizeof *state);
  if (!state) {
    core_set_error(LOOM_ERR_OOM, "Conv3d: out of host memory");
    return NULL;
  }
  *state = c;
  loom_module *m = loom_module_new(&conv3d_kind, state);
  if (!m) {
    free(state);
    return NULL;
  }
  loom_scope_begin();
  loom_shape ws = LOOM_SHAPE(out_channels, in_channels / g, kernel_d, kernel_h, kernel_w);
  bool ok = loom_module_add_parameter(m, "weight", loom_zeros(ws, LOOM_F32, loom_cpu())) != NULL;
  if (ok && !c.conv.no_bias)
    ok = loom_module_add_parameter(m, "bias", loom_zeros(LOOM_SHAPE(out_channels), LOOM_F32, loom_cpu())) != NULL;
  loom_scope_end();
  if (!ok) {
    loom_module_free(m);
    return NULL;
  }
  conv3d_reset(m);
  return m;
}
