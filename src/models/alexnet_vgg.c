/* torchvision's AlexNet and VGG: features, avgpool, classifier. */
#include <stdio.h>

#include "models/models_impl.h"

static const loom_module_kind alexnet_kind = {.type = "AlexNet", .forward = model_root_forward};
static const loom_module_kind vgg_kind = {.type = "VGG", .forward = model_root_forward};

static double dropout_of(const loom_model_opts *o, double dflt) { return o->set_dropout || o->dropout ? o->dropout : dflt; }

loom_module *loom_model_alexnet(const loom_model_opts *opts) {
  loom_model_opts o = model_opts(opts, 1000, 3);
  if (!model_opts_ok("AlexNet", &o)) return NULL;
  bool cifar = o.stem == LOOM_STEM_CIFAR;
  double p = dropout_of(&o, 0.5);
  /* The three 3x3 stride-2 max pools need 15x15 after the first conv. */
  model_root cfg = {.name = "AlexNet", .in_channels = o.in_channels, .min_hw = cifar ? 15 : 63,
                    .size_hint = cifar ? "" : " (the CIFAR stem takes images from 15x15)", .head = HEAD_FLATTEN};
  loom_module *m = model_root_new(&alexnet_kind, &cfg);
  loom_module *first = cifar ? model_conv(o.in_channels, 64, 3, 1, 1, 1, true)
                             : model_conv(o.in_channels, 64, 11, 4, 2, 1, true);
  loom_pool_opts pool = {.stride = {2, 2}};
  bool ok = m && !loom_module_add(m, "features",
                                  LOOM_SEQUENTIAL(first, loom_nn_relu(), loom_nn_max_pool2d(3, 3, &pool),
                                                  model_conv(64, 192, 5, 1, 2, 1, true), loom_nn_relu(),
                                                  loom_nn_max_pool2d(3, 3, &pool), model_conv(192, 384, 3, 1, 1, 1, true),
                                                  loom_nn_relu(), model_conv(384, 256, 3, 1, 1, 1, true), loom_nn_relu(),
                                                  model_conv(256, 256, 3, 1, 1, 1, true), loom_nn_relu(),
                                                  loom_nn_max_pool2d(3, 3, &pool)));
  ok = ok && !loom_module_add(m, "avgpool", loom_nn_adaptive_avg_pool2d(6, 6));
  ok = ok && !loom_module_add(m, "classifier",
                              LOOM_SEQUENTIAL(loom_nn_dropout(p), loom_nn_linear(256 * 6 * 6, 4096, NULL), loom_nn_relu(),
                                              loom_nn_dropout(p), loom_nn_linear(4096, 4096, NULL), loom_nn_relu(),
                                              loom_nn_linear(4096, o.num_classes, NULL)));
  return model_done(m, ok);
}

/* Channels per conv, 0 for a 2x2 max pool (torchvision's cfgs A, B, D, E). */
static const int vgg_cfg[4][21] = {
    {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0, -1},
    {64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0, -1},
    {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0, -1},
    {64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0},
};

static loom_module *vgg_features(const int *cfg, int64_t in, bool batch_norm) {
  loom_module *f = loom_nn_sequential(0, NULL);
  bool ok = f != NULL;
  for (int i = 0; i < 21 && cfg[i] >= 0 && ok; i++) {
    if (cfg[i] == 0) {
      ok = !loom_module_append(f, loom_nn_max_pool2d(2, 2, NULL));
      continue;
    }
    ok = !loom_module_append(f, model_conv(in, cfg[i], 3, 1, 1, 1, true));
    if (ok && batch_norm) ok = !loom_module_append(f, loom_nn_batch_norm2d(cfg[i], NULL));
    if (ok) ok = !loom_module_append(f, loom_nn_relu());
    in = cfg[i];
  }
  return model_done(f, ok);
}

loom_module *loom_model_vgg(int depth, bool batch_norm, const loom_model_opts *opts) {
  int which = depth == 11 ? 0 : depth == 13 ? 1 : depth == 16 ? 2 : depth == 19 ? 3 : -1;
  char name[40];
  snprintf(name, sizeof name, "VGG-%d%s", depth, batch_norm ? "-BN" : "");
  if (which < 0) {
    core_set_error(LOOM_ERR_INVALID, "VGG: depth must be 11, 13, 16 or 19, got %d", depth);
    return NULL;
  }
  loom_model_opts o = model_opts(opts, 1000, 3);
  if (!model_opts_ok(name, &o)) return NULL;
  bool cifar = o.stem == LOOM_STEM_CIFAR;
  double p = dropout_of(&o, 0.5);
  model_root cfg = {.in_channels = o.in_channels, .min_hw = 32, .size_hint = "", .head = HEAD_FLATTEN};
  snprintf(cfg.name, sizeof cfg.name, "%s", name);
  int64_t pooled = cifar ? 1 : 7;
  loom_module *m = model_root_new(&vgg_kind, &cfg);
  bool ok = m && !loom_module_add(m, "features", vgg_features(vgg_cfg[which], o.in_channels, batch_norm));
  ok = ok && !loom_module_add(m, "avgpool", loom_nn_adaptive_avg_pool2d(pooled, pooled));
  ok = ok && !loom_module_add(m, "classifier",
                              LOOM_SEQUENTIAL(loom_nn_linear(512 * pooled * pooled, 4096, NULL), loom_nn_relu(),
                                              loom_nn_dropout(p), loom_nn_linear(4096, 4096, NULL), loom_nn_relu(),
                                              loom_nn_dropout(p), loom_nn_linear(4096, o.num_classes, NULL)));
  if (ok) model_init_torchvision(m, 0.01);
  return model_done(m, ok);
}
