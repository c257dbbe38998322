// The model zoo (loom/models.h): the registry, parameter counts and MACs of
// every model against torchvision's figures, options, bad input, and a short
// learning run per architecture family on Fashion-MNIST. Parity with
// torchvision (names, init, logits, gradients) is in test_models_parity.cpp.
#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "loom_test.h"

namespace {

std::string error() { return loom_last_error(); }

// ---- registry ----

TEST(ModelRegistry, NamesAreUniqueAndEachBuilds) {
  std::set<std::string> seen;
  const char *const *names = loom_model_names();
  ASSERT_NE(names, nullptr);
  int n = 0;
  for (; names[n]; n++) {
    EXPECT_TRUE(seen.insert(names[n]).second) << names[n] << " listed twice";
    const loom_model_info *info = loom_model_find(names[n]);
    ASSERT_NE(info, nullptr) << names[n];
    EXPECT_STREQ(info->name, names[n]);
    EXPECT_GT(info->input[0], 0) << names[n];
  }
  EXPECT_GE(n, 23);
  for (const char *want : {"seed_cnn", "mlp", "lenet5", "alexnet", "vgg16_bn", "resnet50", "resnext50_32x4d",
                           "wide_resnet50_2", "mobilenet_v2"})
    EXPECT_TRUE(seen.count(want)) << want;
}

TEST(ModelRegistry, UnknownNameListsTheKnownOnes) {
  EXPECT_EQ(loom_model_create("resnet19", nullptr), nullptr);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INVALID);
  EXPECT_NE(error().find("unknown model 'resnet19'"), std::string::npos) << error();
  EXPECT_NE(error().find("resnet18"), std::string::npos) << error();
  EXPECT_EQ(loom_model_find(nullptr), nullptr);
  EXPECT_EQ(loom_model_resnet(20, nullptr), nullptr);
  EXPECT_NE(error().find("18, 34, 50, 101 or 152"), std::string::npos) << error();
  EXPECT_EQ(loom_model_vgg(12, false, nullptr), nullptr);
  EXPECT_NE(error().find("11, 13, 16 or 19"), std::string::npos) << error();
}

// ---- parameter counts and MACs: torchvision's parameter counts (sum of
// p.numel() over model.parameters()) and the conv + linear + norm MACs of a
// FLOP counter (thop / ptflops count the same layers) at the default input. ----
struct Count {
  const char *name;
  int64_t params;
  double gmacs;  // at the model's default input, batch 1
};

class ModelCounts : public ::testing::TestWithParam<Count> {};

TEST_P(ModelCounts, MatchTorchvision) {
  const Count &c = GetParam();
  Model net(loom_model_create(c.name, nullptr));
  ASSERT_NE(net.m, nullptr) << error();
  EXPECT_EQ(loom_module_num_params(net.m, false), c.params);
  EXPECT_EQ(loom_module_num_params(net.m, true), c.params);
  const loom_model_info *info = loom_model_find(c.name);
  loom_shape in = info->input[1] ? LOOM_SHAPE(1, info->input[0], info->input[1], info->input[2])
                                 : LOOM_SHAPE(1, info->input[0]);
  int64_t macs = loom_module_macs(net.m, in, LOOM_F32, loom_cpu());
  ASSERT_GT(macs, 0) << error();
  EXPECT_NEAR((double)macs / 1e9, c.gmacs, 0.01 * c.gmacs + 1e-6) << c.name;
}

// Parameter counts are torchvision 0.29's; GMACs as ptflops reports them (conv,
// linear and batch-norm multiply-adds) within 1 %.
INSTANTIATE_TEST_SUITE_P(Zoo, ModelCounts,
                         ::testing::Values(Count{"mlp", 203530, 0.000203}, Count{"seed_cnn", 225034, 0.002631},
                                           Count{"lenet5", 61706, 0.000420}, Count{"alexnet", 61100840, 0.714},
                                           Count{"vgg11", 132863336, 7.61}, Count{"vgg16", 138357544, 15.47},
                                           Count{"vgg16_bn", 138365992, 15.48}, Count{"vgg19_bn", 143678248, 19.65},
                                           Count{"resnet18", 11689512, 1.817}, Count{"resnet34", 21797672, 3.667},
                                           Count{"resnet50", 25557032, 4.100}, Count{"resnet101", 44549160, 7.818},
                                           Count{"resnext50_32x4d", 25028904, 4.245},
                                           Count{"wide_resnet50_2", 68883240, 11.41},
                                           Count{"mobilenet_v2", 3504872, 0.3075}),
                         [](const ::testing::TestParamInfo<Count> &p) { return std::string(p.param.name); });

TEST(ModelCounts, LargeVariantsBuild) {
  // Slow to summarise on two cores; their parameter counts are enough.
  const std::vector<std::pair<const char *, int64_t>> cases = {
      {"vgg11_bn", 132868840}, {"vgg13", 133047848},       {"vgg13_bn", 133053736},
      {"vgg16_bn", 138365992}, {"vgg19", 143667240},       {"resnet152", 60192808},
      {"resnext101_32x8d", 88791336}, {"wide_resnet101_2", 126886696}};
  for (auto &c : cases) {
    Model net(loom_model_create(c.first, nullptr));
    ASSERT_NE(net.m, nullptr) << c.first << ": " << error();
    EXPECT_EQ(loom_module_num_params(net.m, false), c.second) << c.first;
  }
}

TEST(ModelSummary, ResNet50TableShowsTorchvisionCounts) {
  Model net(loom_model_resnet(50, nullptr));
  ASSERT_NE(net.m, nullptr) << error();
  char *s = loom_summary_string(net.m, LOOM_SHAPE(1, 3, 224, 224), LOOM_F32, loom_cpu());
  ASSERT_NE(s, nullptr) << error();
  std::string text(s);
  free(s);
  EXPECT_NE(text.find("Total params: 25,557,032"), std::string::npos) << text;
  EXPECT_NE(text.find("Total MACs: 4,1"), std::string::npos) << text;  // 4.10 G
  EXPECT_NE(text.find("Bottleneck-"), std::string::npos);
  EXPECT_NE(text.find("[-1, 2048, 7, 7]"), std::string::npos);
  EXPECT_NE(text.find("[-1, 1000]"), std::string::npos);
}

// ---- options ----

TEST(ModelOptions, ClassesChannelsAndStem) {
  ScopeGuard g;
  loom_model_opts o = {};
  o.num_classes = 7;
  o.in_channels = 1;
  o.stem = LOOM_STEM_CIFAR;
  Model net(loom_model_resnet(18, &o));
  ASSERT_NE(net.m, nullptr) << error();
  loom_tensor *w = loom_module_param(net.m, "conv1.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(w), LOOM_SHAPE(64, 1, 3, 3)));
  EXPECT_STREQ(loom_module_type(loom_module_child(net.m, "maxpool")), "Identity");
  loom_module_train(net.m, false);
  loom_tensor *y = loom_forward(net.m, loom_rand(LOOM_SHAPE(2, 1, 28, 28), LOOM_F32, loom_cpu()));
  ASSERT_NE(y, nullptr) << error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(y), LOOM_SHAPE(2, 7)));
  // The ImageNet stem quarters the image before layer1: 28 -> 7 -> ... -> 1.
  loom_model_opts im = {};
  im.num_classes = 7;
  im.in_channels = 1;
  Model big(loom_model_resnet(18, &im));
  ASSERT_NE(big.m, nullptr);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(loom_module_param(big.m, "conv1.weight")), LOOM_SHAPE(64, 1, 7, 7)));
}

TEST(ModelOptions, ZeroInitResidualZeroesTheLastNormOfEachBranch) {
  ScopeGuard g;
  loom_model_opts o = {};
  o.zero_init_residual = true;
  Model r18(loom_model_resnet(18, &o)), r50(loom_model_resnet(50, &o)), plain(loom_model_resnet(18, nullptr));
  ASSERT_TRUE(r18.m && r50.m && plain.m) << error();
  for (const char *p : {"layer1.0.bn2.weight", "layer4.1.bn2.weight"})
    EXPECT_EQ(loom_item(loom_sum(loom_abs(loom_module_param(r18.m, p)), nullptr, 0, false)), 0.0) << p;
  EXPECT_EQ(loom_item(loom_sum(loom_abs(loom_module_param(r50.m, "layer3.5.bn3.weight")), nullptr, 0, false)), 0.0);
  EXPECT_EQ(loom_item(loom_sum(loom_module_param(r50.m, "layer3.5.bn2.weight"), nullptr, 0, false)), 256.0);
  EXPECT_EQ(loom_item(loom_sum(loom_module_param(plain.m, "layer1.0.bn2.weight"), nullptr, 0, false)), 64.0);
}

TEST(ModelOptions, DropoutAndWidth) {
  ScopeGuard g;
  loom_model_opts o = {};
  o.set_dropout = true;  // dropout 0 as given
  Model a(loom_model_alexnet(&o));
  ASSERT_NE(a.m, nullptr);
  auto *cfg = (const loom_dropout_config *)loom_module_state(loom_module_child(a.m, "classifier.0"));
  EXPECT_EQ(cfg->p, 0.0);
  loom_model_opts small = {};
  small.stem = LOOM_STEM_CIFAR;  // a 512-input classifier: quicker to build
  Model d(loom_model_vgg(11, false, &small));
  ASSERT_NE(d.m, nullptr);
  EXPECT_EQ(((const loom_dropout_config *)loom_module_state(loom_module_child(d.m, "classifier.2")))->p, 0.5);
  Model mb(loom_model_mobilenet_v2(nullptr));
  ASSERT_NE(mb.m, nullptr);
  EXPECT_EQ(((const loom_dropout_config *)loom_module_state(loom_module_child(mb.m, "classifier.0")))->p, 0.2);
  loom_model_opts half = {};
  half.width_mult = 0.5;
  Model m(loom_model_mobilenet_v2(&half));
  ASSERT_NE(m.m, nullptr);
  // torchvision mobilenet_v2(width_mult=0.5): 1,968,680 parameters, first conv 16 channels.
  EXPECT_EQ(loom_module_num_params(m.m, false), 1968680);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(loom_module_param(m.m, "features.0.0.weight")), LOOM_SHAPE(16, 3, 3, 3)));
  loom_model_opts bad = {};
  bad.width_mult = -1;
  EXPECT_EQ(loom_model_mobilenet_v2(&bad), nullptr);
  EXPECT_NE(error().find("width_mult"), std::string::npos) << error();
  bad = {};
  bad.dropout = 1.5;
  EXPECT_EQ(loom_model_vgg(16, true, &bad), nullptr);
  EXPECT_NE(error().find("VGG-16-BN: dropout 1.5"), std::string::npos) << error();
  bad = {};
  bad.num_classes = -3;
  EXPECT_EQ(loom_model_create("resnet50", &bad), nullptr);
  EXPECT_NE(error().find("ResNet-50: num_classes (-3)"), std::string::npos) << error();
  bad = {};
  bad.groups = 32;
  EXPECT_EQ(loom_model_resnet(18, &bad), nullptr);
  EXPECT_NE(error().find("BasicBlock only supports groups=1"), std::string::npos) << error();
}

// ---- bad input: the error names the model, the layer and the shapes ----

TEST(ModelInput, WrongChannelsOrSizeIsAClearError) {
  ScopeGuard g;
  Model r(loom_model_resnet(18, nullptr));
  ASSERT_NE(r.m, nullptr);
  EXPECT_EQ(loom_forward(r.m, loom_zeros(LOOM_SHAPE(2, 1, 64, 64), LOOM_F32, loom_cpu())), nullptr);
  EXPECT_NE(error().find("ResNet-18: expected input [N, 3, H, W], got [2, 1, 64, 64]"), std::string::npos) << error();
  EXPECT_EQ(loom_forward(r.m, loom_zeros(LOOM_SHAPE(3, 64, 64), LOOM_F32, loom_cpu())), nullptr);
  EXPECT_NE(error().find("got [3, 64, 64]"), std::string::npos) << error();

  Model a(loom_model_alexnet(nullptr));
  ASSERT_NE(a.m, nullptr);
  EXPECT_EQ(loom_forward(a.m, loom_zeros(LOOM_SHAPE(1, 3, 32, 32), LOOM_F32, loom_cpu())), nullptr);
  EXPECT_NE(error().find("AlexNet: input [1, 3, 32, 32] is too small: its layers need H and W >= 63"),
            std::string::npos)
      << error();
  EXPECT_NE(error().find("CIFAR stem"), std::string::npos) << error();

  loom_model_opts cifar = {};
  cifar.stem = LOOM_STEM_CIFAR;  // the same 32x32 minimum, quicker to build
  Model v(loom_model_vgg(11, true, &cifar));
  ASSERT_NE(v.m, nullptr);
  EXPECT_EQ(loom_forward(v.m, loom_zeros(LOOM_SHAPE(1, 3, 28, 28), LOOM_F32, loom_cpu())), nullptr);
  EXPECT_NE(error().find("VGG-11-BN: input [1, 3, 28, 28] is too small"), std::string::npos) << error();

  Model c(loom_model_seed_cnn(nullptr));
  ASSERT_NE(c.m, nullptr);
  EXPECT_EQ(loom_forward(c.m, loom_zeros(LOOM_SHAPE(4, 1, 32, 32), LOOM_F32, loom_cpu())), nullptr);
  EXPECT_NE(error().find("SeedCNN: expected 28x28 images, got [4, 1, 32, 32]"), std::string::npos) << error();
  Model s(loom_model_seed(nullptr));
  EXPECT_EQ(loom_forward(s.m, loom_zeros(LOOM_SHAPE(4, 5), LOOM_F32, loom_cpu())), nullptr);
  EXPECT_NE(error().find("SeedNet: expected input [N, 3], got [4, 5]"), std::string::npos) << error();
  EXPECT_EQ(loom_forward(s.m, nullptr), nullptr);
}

TEST(ModelInput, LayerErrorsCarryTheModelAndThePath) {
  ScopeGuard g;
  Model r(loom_model_resnet(50, nullptr));
  ASSERT_NE(r.m, nullptr);
  // f64 input into f32 weights fails inside the first conv.
  EXPECT_EQ(loom_forward(r.m, loom_zeros(LOOM_SHAPE(1, 3, 32, 32), LOOM_F64, loom_cpu())), nullptr);
  EXPECT_EQ(error().rfind("ResNet-50: at conv1: Conv2d", 0), 0u) << error();
  // A block's own layer: shrink one conv's weight so layer2.0.conv2 sees the wrong channels.
  loom_tensor *w = loom_module_param(r.m, "layer2.0.conv2.weight");
  ASSERT_NE(w, nullptr);
  ASSERT_EQ(loom_module_replace_tensor(loom_module_child(r.m, "layer2.0.conv2"), "weight",
                                       loom_zeros(LOOM_SHAPE(128, 64, 3, 3), LOOM_F32, loom_cpu())) != nullptr,
            true)
      << error();
  EXPECT_EQ(loom_forward(r.m, loom_zeros(LOOM_SHAPE(1, 3, 32, 32), LOOM_F32, loom_cpu())), nullptr);
  EXPECT_EQ(error().rfind("ResNet-50: at layer2.0.conv2: Conv2d", 0), 0u) << error();
  EXPECT_NE(error().find("128"), std::string::npos) << error();
}

// ---- each family learns: Adam over a few hundred Fashion-MNIST images (one
// to three epochs, batch 16, no dropout) must bring the last epoch's mean
// training loss below 3/4 of the first step's. ----

struct Family {
  const char *name;
  int size;   // input side: 28 as is, 32 zero-padded, 14 average-pooled
  bool cifar;
  double lr;
  int images, epochs;
};

class ModelLearns : public ::testing::TestWithParam<Family> {};

TEST_P(ModelLearns, LossFalls) {
  const Family &f = GetParam();
  const char *dir = "/usr/share/datasets/fashion-mnist";
  std::string images = std::string(dir) + "/train-images-idx3-ubyte.gz";
  if (FILE *fp = fopen(images.c_str(), "rb")) fclose(fp);
  else GTEST_SKIP() << images << " not found (Debian package dataset-fashion-mnist)";
  loom_manual_seed(3);
  loom_dataset *full = loom_dataset_mnist(dir, true);
  ASSERT_NE(full, nullptr) << error();
  loom_dataset *ds = loom_dataset_subset(full, 0, f.images);
  loom_dataset_free(full);
  ASSERT_NE(ds, nullptr) << error();
  const float mean = 0.2860f, std_ = 0.3530f;
  loom_loader_opts lo = {};
  lo.batch_size = 16;
  lo.shuffle = true;
  lo.seed = 1;
  lo.no_prefetch = true;
  lo.transform.norm_channels = 1;
  lo.transform.mean = &mean;
  lo.transform.std = &std_;
  if (f.size == 32) {  // a 32x32 crop of the image padded by 2 = zero padding
    lo.transform.crop_size = 32;
    lo.transform.crop_padding = 2;
  }
  loom_loader *loader = loom_loader_new(ds, &lo);
  loom_dataset_free(ds);
  ASSERT_NE(loader, nullptr) << error();

  loom_model_opts o = {};
  o.num_classes = 10;
  o.in_channels = 1;
  o.stem = f.cifar ? LOOM_STEM_CIFAR : LOOM_STEM_IMAGENET;
  o.set_dropout = true;  // dropout 0: a few steps must show the loss falling
  Model net(loom_model_create(f.name, &o));
  ASSERT_NE(net.m, nullptr) << error();
  loom_adam_opts ao = {};
  ao.lr = f.lr;
  loom_optimizer *opt = loom_adam_module(net.m, &ao);
  ASSERT_NE(opt, nullptr) << error();
  double first = NAN, last_epoch = 0;
  for (int e = 0; e < f.epochs; e++) {
    ASSERT_EQ(loom_loader_start_epoch(loader, e), 0) << error();
    double sum = 0;
    int n = 0;
    loom_tensor *x, *y;
    while (loom_loader_next(loader, &x, &y)) {
      loom_scope_begin();
      loom_tensor *in = f.size == 14 ? loom_avg_pool2d(x, 2, 2, nullptr) : x;
      loom_tensor *loss = loom_cross_entropy(loom_forward(net.m, in), y, nullptr);
      ASSERT_NE(loss, nullptr) << f.name << ": " << error();
      loom_optimizer_zero_grad(opt);
      ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << error();
      ASSERT_EQ(loom_optimizer_step(opt), 0) << error();
      double v = loom_item(loss);
      if (std::isnan(first)) first = v;
      sum += v;
      n++;
      loom_scope_end();
      loom_release(x);
      loom_release(y);
    }
    ASSERT_EQ(loom_last_status(), LOOM_OK) << error();
    last_epoch = sum / n;
  }
  loom_optimizer_free(opt);
  loom_loader_free(loader);
  EXPECT_TRUE(std::isfinite(last_epoch));
  EXPECT_LT(last_epoch, 0.75 * first) << f.name << ": first loss " << first << ", last epoch's mean " << last_epoch;
}

INSTANTIATE_TEST_SUITE_P(Zoo, ModelLearns,
                         ::testing::Values(Family{"mlp", 28, false, 1e-3, 256, 3},
                                           Family{"seed_cnn", 28, false, 1e-3, 256, 3},
                                           Family{"lenet5", 28, false, 3e-3, 256, 3},
                                           Family{"alexnet", 28, true, 1e-4, 16, 10},
                                           Family{"vgg11_bn", 32, true, 3e-4, 32, 6},
                                           Family{"resnet18", 14, true, 1e-3, 32, 6},
                                           Family{"mobilenet_v2", 14, true, 1e-3, 32, 6}),
                         [](const ::testing::TestParamInfo<Family> &p) { return std::string(p.param.name); });

}  // namespace
