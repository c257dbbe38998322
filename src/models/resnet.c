/* torchvision's ResNet: BasicBlock (18, 34) and Bottleneck (50, 101, 152)
 * with groups / width_per_group (ResNeXt, Wide ResNet). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/ops.h"
#include "models/models_impl.h"

typedef struct block_state {
  bool bottleneck;
  bool has_downsample;
} block_state;

static loom_tensor *block_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  const block_state *s = loom_module_state(m);
  if (!model_one_input(loom_module_type(m), n_in)) return NULL;
  loom_scope_begin();
  loom_tensor *x = in[0];
  loom_tensor *y = model_run(m, "relu", model_run(m, "bn1", model_run(m, "conv1", x)));
  y = model_run(m, "bn2", model_run(m, "conv2", y));
  if (s->bottleneck) y = model_run(m, "bn3", model_run(m, "conv3", model_run(m, "relu", y)));
  loom_tensor *identity = s->has_downsample ? model_run(m, "downsample", x) : x;
  loom_tensor *out = loom_keep(model_run(m, "relu", y && identity ? loom_add(y, identity) : NULL));
  loom_scope_end();
  return out;
}

static const loom_module_kind basic_kind = {.type = "BasicBlock", .forward = block_forward};
static const loom_module_kind bottleneck_kind = {.type = "Bottleneck", .forward = block_forward};
static const loom_module_kind resnet_kind = {.type = "ResNet", .forward = model_root_forward};

static loom_module *bn(int64_t c) { return loom_nn_batch_norm2d(c, NULL); }

/* One block: inplanes -> planes * expansion at `stride`. */
static loom_module *block(bool bottleneck, int64_t inplanes, int64_t planes, int stride, int groups,
                          int width_per_group) {
  int64_t out = planes * (bottleneck ? 4 : 1);
  block_state st = {bottleneck, stride != 1 || inplanes != out};
  block_state *s = malloc(sizeof *s);
  if (!s) {
    core_set_error(LOOM_ERR_OOM, "ResNet: out of host memory");
    return NULL;
  }
  *s = st;
  loom_module *m = loom_module_new(bottleneck ? &bottleneck_kind : &basic_kind, s);
  if (!m) {
    free(s);
    return NULL;
  }
  bool ok;
  if (bottleneck) {
    int64_t width = (int64_t)((double)planes * (width_per_group / 64.0)) * groups;
    ok = !loom_module_add(m, "conv1", model_conv(inplanes, width, 1, 1, 0, 1, false)) &&
         !loom_module_add(m, "bn1", bn(width)) &&
         !loom_module_add(m, "conv2", model_conv(width, width, 3, stride, 1, groups, false)) &&
         !loom_module_add(m, "bn2", bn(width)) &&
         !loom_module_add(m, "conv3", model_conv(width, out, 1, 1, 0, 1, false)) &&
         !loom_module_add(m, "bn3", bn(out)) && !loom_module_add(m, "relu", loom_nn_relu());
  } else {
    ok = !loom_module_add(m, "conv1", model_conv(inplanes, planes, 3, stride, 1, 1, false)) &&
         !loom_module_add(m, "bn1", bn(planes)) && !loom_module_add(m, "relu", loom_nn_relu()) &&
         !loom_module_add(m, "conv2", model_conv(planes, planes, 3, 1, 1, 1, false)) &&
         !loom_module_add(m, "bn2", bn(planes));
  }
  if (ok && st.has_downsample)
    ok = !loom_module_add(m, "downsample", LOOM_SEQUENTIAL(model_conv(inplanes, out, 1, stride, 0, 1, false), bn(out)));
  return model_done(m, ok);
}

static void zero_last_bn(loom_module *m, void *user) {
  (void)user;
  const char *type = loom_module_type(m);
  if (!strcmp(type, "Bottleneck")) loom_init_zeros_(loom_module_param(m, "bn3.weight"));
  else if (!strcmp(type, "BasicBlock")) loom_init_zeros_(loom_module_param(m, "bn2.weight"));
}

loom_module *loom_model_resnet(int depth, const loom_model_opts *opts) {
  static const int blocks[5][4] = {{2, 2, 2, 2}, {3, 4, 6, 3}, {3, 4, 6, 3}, {3, 4, 23, 3}, {3, 8, 36, 3}};
  int which = depth == 18 ? 0 : depth == 34 ? 1 : depth == 50 ? 2 : depth == 101 ? 3 : depth == 152 ? 4 : -1;
  if (which < 0) {
    core_set_error(LOOM_ERR_INVALID, "ResNet: depth must be 18, 34, 50, 101 or 152, got %d", depth);
    return NULL;
  }
  loom_model_opts o = model_opts(opts, 1000, 3);
  int groups = o.groups ? o.groups : 1, wpg = o.width_per_group ? o.width_per_group : 64;
  model_root cfg = {.in_channels = o.in_channels, .head = HEAD_FLATTEN};
  if (groups == 1 && wpg == 64) snprintf(cfg.name, sizeof cfg.name, "ResNet-%d", depth);
  else snprintf(cfg.name, sizeof cfg.name, "ResNet-%d (groups %d, width %d)", depth, groups, wpg);
  if (!model_opts_ok(cfg.name, &o)) return NULL;
  bool bottleneck = depth >= 50;
  if (groups < 1 || wpg < 1 || (!bottleneck && (groups != 1 || wpg != 64))) {
    core_set_error(LOOM_ERR_INVALID, "%s: %s", cfg.name,
                   bottleneck ? "groups and width_per_group must be >= 1"
                              : "BasicBlock only supports groups=1 and width_per_group=64 (as torchvision)");
    return NULL;
  }
  bool cifar = o.stem == LOOM_STEM_CIFAR;
  loom_module *m = model_root_new(&resnet_kind, &cfg);
  loom_pool_opts pool = {.stride = {2, 2}, .padding = {1, 1}};
  bool ok = m && !loom_module_add(m, "conv1", cifar ? model_conv(o.in_channels, 64, 3, 1, 1, 1, false)
                                                    : model_conv(o.in_channels, 64, 7, 2, 3, 1, false));
  ok = ok && !loom_module_add(m, "bn1", bn(64)) && !loom_module_add(m, "relu", loom_nn_relu());
  ok = ok && !loom_module_add(m, "maxpool", cifar ? loom_nn_identity() : loom_nn_max_pool2d(3, 3, &pool));
  int64_t inplanes = 64;
  for (int l = 0; l < 4 && ok; l++) {
    int64_t planes = (int64_t)64 << l;
    loom_module *layer = loom_nn_sequential(0, NULL);
    ok = layer != NULL;
    for (int b = 0; b < blocks[which][l] && ok; b++) {
      ok = !loom_module_append(layer, block(bottleneck, inplanes, planes, b == 0 && l > 0 ? 2 : 1, groups, wpg));
      inplanes = planes * (bottleneck ? 4 : 1);
    }
    char name[8];
    snprintf(name, sizeof name, "layer%d", l + 1);
    if (ok) ok = !loom_module_add(m, name, layer);
    else loom_module_free(layer);
  }
  ok = ok && !loom_module_add(m, "avgpool", loom_nn_adaptive_avg_pool2d(1, 1));
  ok = ok && !loom_module_add(m, "fc", loom_nn_linear(inplanes, o.num_classes, NULL));
  if (ok) {
    model_init_torchvision(m, 0);
    if (o.zero_init_residual) loom_module_apply(m, zero_last_bn, NULL);
  }
  return model_done(m, ok);
}
