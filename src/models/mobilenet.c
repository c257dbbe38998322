/* torchvision's MobileNetV2: inverted residual blocks with depthwise convs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "loom/ops.h"
#include "models/models_impl.h"

typedef struct inverted_state { bool residual; } inverted_state;

static loom_tensor *inverted_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (!model_one_input("InvertedResidual", n_in)) return NULL;
  const inverted_state *s = loom_module_state(m);
  if (!s->residual) return model_run(m, "conv", in[0]);
  loom_scope_begin();
  loom_tensor *y = model_run(m, "conv", in[0]);
  loom_tensor *out = loom_keep(y ? loom_add(in[0], y) : NULL);
  loom_scope_end();
  return out;
}

static const loom_module_kind inverted_kind = {.type = "InvertedResidual", .forward = inverted_forward};
static const loom_module_kind mobilenet_kind = {.type = "MobileNetV2", .forward = model_root_forward};

/* torchvision's _make_divisible(v, 8): the nearest multiple of 8, at least 8
 * and not below 90 % of v. */
static int64_t divisible(double v) {
  int64_t r = (int64_t)(v + 4) / 8 * 8;
  if (r < 8) r = 8;
  if ((double)r < 0.9 * v) r += 8;
  return r;
}

/* Conv2dNormActivation: conv (no bias), BatchNorm, ReLU6. */
static loom_module *conv_bn_relu6(int64_t in, int64_t out, int k, int stride, int groups) {
  return LOOM_SEQUENTIAL(model_conv(in, out, k, stride, (k - 1) / 2, groups, false), loom_nn_batch_norm2d(out, NULL),
                         loom_nn_relu6());
}

static loom_module *inverted(int64_t inp, int64_t oup, int stride, int expand) {
  int64_t hidden = inp * expand;
  inverted_state *s = malloc(sizeof *s);
  if (!s) {
    core_set_error(LOOM_ERR_OOM, "MobileNetV2: out of host memory");
    return NULL;
  }
  s->residual = stride == 1 && inp == oup;
  loom_module *m = loom_module_new(&inverted_kind, s);
  if (!m) {
    free(s);
    return NULL;
  }
  loom_module *conv = loom_nn_sequential(0, NULL);
  bool ok = conv != NULL;
  if (ok && expand != 1) ok = !loom_module_append(conv, conv_bn_relu6(inp, hidden, 1, 1, 1));
  ok = ok && !loom_module_append(conv, conv_bn_relu6(hidden, hidden, 3, stride, (int)hidden));
  ok = ok && !loom_module_append(conv, model_conv(hidden, oup, 1, 1, 0, 1, false));
  ok = ok && !loom_module_append(conv, loom_nn_batch_norm2d(oup, NULL));
  if (ok) ok = !loom_module_add(m, "conv", conv);
  else loom_module_free(conv);
  return model_done(m, ok);
}

loom_module *loom_model_mobilenet_v2(const loom_model_opts *opts) {
  static const int setting[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2},
                                    {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  loom_model_opts o = model_opts(opts, 1000, 3);
  if (!model_opts_ok("MobileNetV2", &o)) return NULL;
  double wm = o.width_mult ? o.width_mult : 1.0;
  if (!(wm > 0) || !isfinite(wm) || wm > 64) {
    core_set_error(LOOM_ERR_INVALID, "MobileNetV2: width_mult must be in (0, 64], got %g", wm);
    return NULL;
  }
  double p = o.set_dropout || o.dropout ? o.dropout : 0.2;
  model_root cfg = {.name = "MobileNetV2", .in_channels = o.in_channels, .head = HEAD_POOL_FLATTEN};
  loom_module *m = model_root_new(&mobilenet_kind, &cfg);
  int64_t in = divisible(32 * wm), last = divisible(1280 * (wm > 1 ? wm : 1.0));
  loom_module *features = loom_nn_sequential(0, NULL);
  bool ok = m && features && !loom_module_append(features, conv_bn_relu6(o.in_channels, in, 3,
                                                                         o.stem == LOOM_STEM_CIFAR ? 1 : 2, 1));
  for (int i = 0; i < 7 && ok; i++) {
    int64_t out = divisible(setting[i][1] * wm);
    for (int b = 0; b < setting[i][2] && ok; b++) {
      ok = !loom_module_append(features, inverted(in, out, b == 0 ? setting[i][3] : 1, setting[i][0]));
      in = out;
    }
  }
  ok = ok && !loom_module_append(features, conv_bn_relu6(in, last, 1, 1, 1));
  if (m && ok) ok = !loom_module_add(m, "features", features);
  else loom_module_free(features);
  ok = ok && !loom_module_add(m, "classifier", LOOM_SEQUENTIAL(loom_nn_dropout(p), loom_nn_linear(last, o.num_classes, NULL)));
  if (ok) model_init_torchvision(m, 0.01);
  return model_done(m, ok);
}
