/* Loom model zoo: ready-made networks, each a function returning a module.
 *
 * Vision models follow torchvision: the same layers, parameter and buffer
 * names, shapes, order and default initialisation, so a torchvision
 * state_dict saved as safetensors loads with loom_module_load (strict), and
 * a Loom checkpoint loads into torchvision. Inputs are NCHW images [N, C, H, W].
 *
 * Every constructor takes a loom_model_opts (NULL or all-zero = the model's
 * defaults) and returns a new module on the CPU in f32 (NULL + loom_last_error
 * on bad options). A model's forward checks its input (dims, channels, the
 * smallest image its stem allows) and errors name the model and the layer:
 * "ResNet-50: at layer1.0.conv1: Conv2d: ...".
 *
 * By name (tools, benchmarks): loom_model_create("resnet50", &opts); the
 * names are listed by loom_model_names() and described by loom_model_find(). */
#ifndef LOOM_MODELS_H
#define LOOM_MODELS_H

#include "loom/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The first layers of an image model. IMAGENET is torchvision's stem (ResNet:
 * 7x7 stride-2 conv + 3x3 stride-2 max pool, a quarter of the resolution
 * before layer1). CIFAR keeps small images (28x28, 32x32) whole: ResNet's conv1
 * becomes 3x3 stride 1 and its max pool an Identity (same parameter names,
 * conv1.weight [64, C, 3, 3]); MobileNetV2's first conv gets stride 1;
 * AlexNet's first conv becomes 3x3 stride 1 padding 1; VGG's average pool
 * becomes 1x1 and its classifier's first Linear takes 512 inputs. */
typedef enum loom_model_stem { LOOM_STEM_IMAGENET = 0, LOOM_STEM_CIFAR = 1 } loom_model_stem;

typedef struct loom_model_opts {
  int64_t num_classes;      /* 0 = the model's default: 1000 for the ImageNet models, 10 otherwise */
  int64_t in_channels;      /* 0 = 3 (1 for mlp, seed_cnn, lenet5: Fashion-MNIST) */
  double dropout;           /* 0 = the default (AlexNet, VGG 0.5; MobileNetV2 0.2) unless set_dropout */
  bool set_dropout;         /* take dropout as given, 0 included (no dropout) */
  loom_model_stem stem;     /* ImageNet (default) or CIFAR */
  bool zero_init_residual;  /* ResNet: zero the last BN weight of each residual branch */
  int groups;               /* ResNet Bottleneck: 0 = 1 (ResNeXt-50 32x4d: 32) */
  int width_per_group;      /* ResNet Bottleneck: 0 = 64 (ResNeXt-50 32x4d: 4; Wide-ResNet-50-2: 128) */
  double width_mult;        /* MobileNetV2: 0 = 1.0 */
  int64_t hidden;           /* mlp: hidden units, 0 = 256 */
} loom_model_opts;

/* The seed network (Linear 3-3, Sigmoid, Linear 3-2, ReLU, Linear 2-2,
 * Softmax over dim 1; input [N, 3]): a Sequential. */
loom_module *loom_model_seed(const loom_model_opts *opts);
/* MLP: Flatten, Linear 784-hidden, ReLU, Linear hidden-num_classes on
 * [N, in_channels, 28, 28] (a Sequential: 1.weight, 3.weight ...). */
loom_module *loom_model_mlp(const loom_model_opts *opts);
/* The seed CNN of SPEC section 4 for [N, in_channels, 28, 28]: conv 32 k3,
 * ReLU, maxpool 2, conv 64 k3, ReLU, maxpool 2, Flatten, Linear 1600-128, ReLU,
 * Linear 128-num_classes (a Sequential: 0.weight, 3.weight, 7.weight, 9.weight). */
loom_module *loom_model_seed_cnn(const loom_model_opts *opts);
/* LeNet-5 for 28x28 (or larger) images: features = conv 6 k5 padding 2, Tanh,
 * AvgPool 2, conv 16 k5, Tanh, AvgPool 2; classifier = Linear 400-120, Tanh,
 * Linear 120-84, Tanh, Linear 84-num_classes. At 32x32 the first conv keeps
 * padding 2 too (not in torchvision; names features.0.weight, classifier.0.weight). */
loom_module *loom_model_lenet5(const loom_model_opts *opts);
/* torchvision AlexNet: features, avgpool (adaptive 6x6), classifier. */
loom_module *loom_model_alexnet(const loom_model_opts *opts);
/* torchvision VGG-11/13/16/19 (configurations A, B, D, E), with BatchNorm
 * after every conv when batch_norm: features, avgpool (adaptive 7x7), classifier. */
loom_module *loom_model_vgg(int depth, bool batch_norm, const loom_model_opts *opts);
/* torchvision ResNet-18/34 (BasicBlock) and -50/101/152 (Bottleneck): conv1,
 * bn1, relu, maxpool, layer1..layer4, avgpool, fc. groups / width_per_group
 * widen the Bottleneck's 3x3 conv (ResNeXt, Wide ResNet); BasicBlock takes
 * only the defaults, as in torchvision. */
loom_module *loom_model_resnet(int depth, const loom_model_opts *opts);
/* torchvision MobileNetV2: features (stem conv, 17 inverted residual blocks,
 * 1x1 conv to 1280 channels), global average pool, classifier (Dropout, Linear).
 * Channel counts are width_mult times torchvision's, rounded to multiples of 8. */
loom_module *loom_model_mobilenet_v2(const loom_model_opts *opts);

/* ---- registry ---- */
typedef struct loom_model_info {
  const char *name;          /* "resnet50" */
  const char *description;   /* one line */
  const char *torchvision;   /* "torchvision.models.resnet50", "" when not from torchvision */
  int64_t input[3];          /* default per-sample input (C, H, W); input[1] = 0 for [N, C] models */
} loom_model_info;

/* The zoo's names, NULL-terminated, in a stable order. */
const char *const *loom_model_names(void);
/* The entry of name, or NULL (+ error listing the known names). */
const loom_model_info *loom_model_find(const char *name);
/* Builds model `name` ("resnet50", "vgg16_bn", "resnext50_32x4d",
 * "wide_resnet50_2", "mobilenet_v2", ...) with opts (NULL = defaults; the
 * named variants fix groups / width_per_group themselves). NULL + error for
 * an unknown name, naming the known ones. */
loom_module *loom_model_create(const char *name, const loom_model_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
