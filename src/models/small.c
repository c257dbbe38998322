/* The small models: the seed network, the MLP and the seed CNN (children
 * named "0", "1", ... as the Sequential they were in the examples, so their
 * checkpoints still load), and LeNet-5. PyTorch's default initialisation. */
#include <stdio.h>

#include "models/models_impl.h"

static const loom_module_kind seed_kind = {.type = "SeedNet", .forward = model_root_forward};
static const loom_module_kind mlp_kind = {.type = "MLP", .forward = model_root_forward};
static const loom_module_kind seed_cnn_kind = {.type = "SeedCNN", .forward = model_root_forward};
static const loom_module_kind lenet5_kind = {.type = "LeNet5", .forward = model_root_forward};

/* A root of kind with children "0".."n-1" (takes over the references). */
static loom_module *numbered(const loom_module_kind *kind, const model_root *cfg, int n, loom_module *const *mods) {
  loom_module *m = model_root_new(kind, cfg);
  bool ok = m != NULL;
  for (int i = 0; i < n; i++) {
    if (ok) ok = !loom_module_append(m, mods[i]);
    else loom_module_free(mods[i]);
  }
  return model_done(m, ok);
}
#define NUMBERED(kind, cfg, ...)                                                                    \
  numbered(kind, cfg, (int)(sizeof((loom_module *[]){__VA_ARGS__}) / sizeof(loom_module *)),        \
           (loom_module *[]){__VA_ARGS__})

loom_module *loom_model_seed(const loom_model_opts *opts) {
  loom_model_opts o = model_opts(opts, 2, 3);
  if (!model_opts_ok("SeedNet", &o)) return NULL;
  model_root cfg = {.name = "SeedNet", .in_features = o.in_channels};
  return NUMBERED(&seed_kind, &cfg, loom_nn_linear(o.in_channels, 3, NULL), loom_nn_sigmoid(),
                  loom_nn_linear(3, 2, NULL), loom_nn_relu(), loom_nn_linear(2, o.num_classes, NULL),
                  loom_nn_softmax(1));
}

loom_module *loom_model_mlp(const loom_model_opts *opts) {
  loom_model_opts o = model_opts(opts, 10, 1);
  if (!model_opts_ok("MLP", &o)) return NULL;
  int64_t hidden = o.hidden ? o.hidden : 256;
  model_root cfg = {.name = "MLP", .in_channels = o.in_channels, .exact_hw = 28};
  return NUMBERED(&mlp_kind, &cfg, loom_nn_flatten(1, -1), loom_nn_linear(o.in_channels * 28 * 28, hidden, NULL),
                  loom_nn_relu(), loom_nn_linear(hidden, o.num_classes, NULL));
}

loom_module *loom_model_seed_cnn(const loom_model_opts *opts) {
  loom_model_opts o = model_opts(opts, 10, 1);
  if (!model_opts_ok("SeedCNN", &o)) return NULL;
  model_root cfg = {.name = "SeedCNN", .in_channels = o.in_channels, .exact_hw = 28};
  return NUMBERED(&seed_cnn_kind, &cfg, loom_nn_conv2d(o.in_channels, 32, 3, 3, NULL), loom_nn_relu(),
                  loom_nn_max_pool2d(2, 2, NULL), loom_nn_conv2d(32, 64, 3, 3, NULL), loom_nn_relu(),
                  loom_nn_max_pool2d(2, 2, NULL), loom_nn_flatten(1, -1), loom_nn_linear(64 * 5 * 5, 128, NULL),
                  loom_nn_relu(), loom_nn_linear(128, o.num_classes, NULL));
}

loom_module *loom_model_lenet5(const loom_model_opts *opts) {
  loom_model_opts o = model_opts(opts, 10, 1);
  if (!model_opts_ok("LeNet-5", &o)) return NULL;
  model_root cfg = {.name = "LeNet-5", .in_channels = o.in_channels, .exact_hw = 28, .head = HEAD_FLATTEN};
  loom_module *m = model_root_new(&lenet5_kind, &cfg);
  bool ok = m && !loom_module_add(m, "features",
                                  LOOM_SEQUENTIAL(model_conv(o.in_channels, 6, 5, 1, 2, 1, true), loom_nn_tanh(),
                                                  loom_nn_avg_pool2d(2, 2, NULL), model_conv(6, 16, 5, 1, 0, 1, true),
                                                  loom_nn_tanh(), loom_nn_avg_pool2d(2, 2, NULL)));
  ok = ok && !loom_module_add(m, "classifier",
                              LOOM_SEQUENTIAL(loom_nn_linear(16 * 5 * 5, 120, NULL), loom_nn_tanh(),
                                              loom_nn_linear(120, 84, NULL), loom_nn_tanh(),
                                              loom_nn_linear(84, o.num_classes, NULL)));
  return model_done(m, ok);
}
