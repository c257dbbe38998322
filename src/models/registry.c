/* The zoo by name: loom_model_names, loom_model_find, loom_model_create. */
#include <stdio.h>
#include <string.h>

#include "models/models_impl.h"

typedef struct entry {
  loom_model_info info;
  int kind;          /* which constructor */
  int depth;         /* VGG / ResNet */
  bool batch_norm;   /* VGG */
  int groups, width; /* ResNeXt, Wide ResNet */
} entry;

enum { SEED, MLP, SEED_CNN, LENET5, ALEXNET, VGG, RESNET, MOBILENET_V2 };

#define TV "torchvision.models."
#define IMAGENET {3, 224, 224}
static const entry zoo[] = {
    {{"seed", "the seed network: Linear 3-3, Sigmoid, Linear 3-2, ReLU, Linear 2-2, Softmax", "", {3, 0, 0}},
     SEED, 0, false, 0, 0},
    {{"mlp", "Flatten, Linear 784-256, ReLU, Linear 256-10", "", {1, 28, 28}}, MLP, 0, false, 0, 0},
    {{"seed_cnn", "conv 32 k3, ReLU, maxpool 2, conv 64 k3, ReLU, maxpool 2, Linear 1600-128, ReLU, Linear 128-10", "",
      {1, 28, 28}}, SEED_CNN, 0, false, 0, 0},
    {{"lenet5", "LeNet-5: conv 6 k5, Tanh, avgpool, conv 16 k5, Tanh, avgpool, Linear 400-120-84-10", "",
      {1, 28, 28}}, LENET5, 0, false, 0, 0},
    {{"alexnet", "AlexNet", TV "alexnet", IMAGENET}, ALEXNET, 0, false, 0, 0},
    {{"vgg11", "VGG-11", TV "vgg11", IMAGENET}, VGG, 11, false, 0, 0},
    {{"vgg11_bn", "VGG-11 with BatchNorm", TV "vgg11_bn", IMAGENET}, VGG, 11, true, 0, 0},
    {{"vgg13", "VGG-13", TV "vgg13", IMAGENET}, VGG, 13, false, 0, 0},
    {{"vgg13_bn", "VGG-13 with BatchNorm", TV "vgg13_bn", IMAGENET}, VGG, 13, true, 0, 0},
    {{"vgg16", "VGG-16", TV "vgg16", IMAGENET}, VGG, 16, false, 0, 0},
    {{"vgg16_bn", "VGG-16 with BatchNorm", TV "vgg16_bn", IMAGENET}, VGG, 16, true, 0, 0},
    {{"vgg19", "VGG-19", TV "vgg19", IMAGENET}, VGG, 19, false, 0, 0},
    {{"vgg19_bn", "VGG-19 with BatchNorm", TV "vgg19_bn", IMAGENET}, VGG, 19, true, 0, 0},
    {{"resnet18", "ResNet-18 (BasicBlock)", TV "resnet18", IMAGENET}, RESNET, 18, false, 0, 0},
    {{"resnet34", "ResNet-34 (BasicBlock)", TV "resnet34", IMAGENET}, RESNET, 34, false, 0, 0},
    {{"resnet50", "ResNet-50 (Bottleneck)", TV "resnet50", IMAGENET}, RESNET, 50, false, 0, 0},
    {{"resnet101", "ResNet-101 (Bottleneck)", TV "resnet101", IMAGENET}, RESNET, 101, false, 0, 0},
    {{"resnet152", "ResNet-152 (Bottleneck)", TV "resnet152", IMAGENET}, RESNET, 152, false, 0, 0},
    {{"resnext50_32x4d", "ResNeXt-50 32x4d (groups 32, width 4)", TV "resnext50_32x4d", IMAGENET}, RESNET, 50, false,
     32, 4},
    {{"resnext101_32x8d", "ResNeXt-101 32x8d (groups 32, width 8)", TV "resnext101_32x8d", IMAGENET}, RESNET, 101,
     false, 32, 8},
    {{"wide_resnet50_2", "Wide ResNet-50-2 (width 128)", TV "wide_resnet50_2", IMAGENET}, RESNET, 50, false, 1, 128},
    {{"wide_resnet101_2", "Wide ResNet-101-2 (width 128)", TV "wide_resnet101_2", IMAGENET}, RESNET, 101, false, 1,
     128},
    {{"mobilenet_v2", "MobileNetV2 (inverted residuals, depthwise convs)", TV "mobilenet_v2", IMAGENET},
     MOBILENET_V2, 0, false, 0, 0},
};
#define N_ZOO (int)(sizeof zoo / sizeof zoo[0])

const char *const *loom_model_names(void) {
  static const char *names[N_ZOO + 1];
  if (!names[0])
    for (int i = 0; i < N_ZOO; i++) names[i] = zoo[i].info.name;
  return names;
}

static const entry *find(const char *name) {
  for (int i = 0; name && i < N_ZOO; i++)
    if (!strcmp(zoo[i].info.name, name)) return &zoo[i];
  char known[1024] = "";
  size_t len = 0;
  for (int i = 0; i < N_ZOO && len < sizeof known; i++)
    len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "", zoo[i].info.name);
  core_set_error(LOOM_ERR_INVALID, "unknown model '%s'; known models: %s", name ? name : "(null)", known);
  return NULL;
}

const loom_model_info *loom_model_find(const char *name) {
  const entry *e = find(name);
  return e ? &e->info : NULL;
}

loom_module *loom_model_create(const char *name, const loom_model_opts *opts) {
  const entry *e = find(name);
  if (!e) return NULL;
  loom_model_opts o = opts ? *opts : (loom_model_opts){0};
  if (e->groups) {
    o.groups = e->groups;
    o.width_per_group = e->width;
  }
  switch (e->kind) {
    case SEED: return loom_model_seed(&o);
    case MLP: return loom_model_mlp(&o);
    case SEED_CNN: return loom_model_seed_cnn(&o);
    case LENET5: return loom_model_lenet5(&o);
    case ALEXNET: return loom_model_alexnet(&o);
    case VGG: return loom_model_vgg(e->depth, e->batch_norm, &o);
    case RESNET: return loom_model_resnet(e->depth, &o);
    default: return loom_model_mobilenet_v2(&o);
  }
}
