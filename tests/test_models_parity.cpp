// The model zoo (loom/models.h) against torchvision (tools/fixtures/gen_models.py):
// state_dict names, shapes, dtypes and order of every registry model; eval-mode
// logits of hash-filled models (models_fill_util.h) loaded strictly from a
// safetensors file, on the CPU and on CUDA; torch-written state_dicts loaded
// strictly; default initialisation statistics. Training-step gradients:
// test_models_grads.cpp.
#include "models_fill_util.h"

namespace {

using namespace models;

std::vector<std::string> split(const std::string &s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, sep);) out.push_back(part);
  return out;
}

std::string fixture_path(const std::string &name) {
  return std::string(LOOM_FIXTURE_DIR) + "/" + name + ".safetensors";
}

// Equal lists, or the first difference and the lengths.
::testing::AssertionResult same_list(const char *what, const std::vector<std::string> &got,
                                     const std::vector<std::string> &want) {
  if (got == want) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) i++;
  int differ = 0;
  for (size_t k = 0; k < got.size() && k < want.size(); k++) differ += got[k] != want[k];
  return ::testing::AssertionFailure() << what << ": Loom has " << got.size() << " entries, torchvision "
                                       << want.size() << "; " << differ << " positions differ; first at " << i
                                       << ": Loom '" << (i < got.size() ? got[i] : "(end)") << "', torchvision '"
                                       << (i < want.size() ? want[i] : "(end)") << "'";
}

std::vector<std::string> names_of(loom_named_tensors *l) {
  std::vector<std::string> out;
  for (int i = 0; l && i < l->n; i++) out.push_back(l->names[i]);
  loom_named_tensors_free(l);
  return out;
}

// The vision models (torchvision's, and the small ones without a twin), which
// gen_models.py covers; the other families have their own parity tests.
std::vector<std::string> registry_names() {
  std::vector<std::string> out;
  for (const char *const *p = loom_model_names(); *p; p++) {
    const char *twin = loom_model_find(*p)->torchvision;
    if (!twin[0] || !strncmp(twin, "torchvision.", 12)) out.push_back(*p);
  }
  return out;
}

std::string param_name(const ::testing::TestParamInfo<std::string> &info) { return info.param; }

// Mean and unbiased std of an f32 tensor, in f64 (read in place on the CPU).
void moments(const loom_tensor *t, double *mean, double *std) {
  size_t n = (size_t)loom_numel(t);
  std::vector<float> copy;
  const float *v = static_cast<const float *>(loom_data_ptr(t));
  if (loom_device_of(t).type != LOOM_CPU || !loom_is_contiguous(t) || loom_dtype_of(t) != LOOM_F32) {
    copy.resize(n);
    if (loom_to_host(t, copy.data(), n * sizeof(float)) != 0) {
      ADD_FAILURE() << "cannot read a parameter: " << loom_last_error();
      *mean = *std = NAN;
      return;
    }
    v = copy.data();
  }
  double s = 0, ss = 0;
  for (size_t i = 0; i < n; i++) s += v[i];
  *mean = s / (double)n;
  for (size_t i = 0; i < n; i++) ss += ((double)v[i] - *mean) * ((double)v[i] - *mean);
  *std = n > 1 ? std::sqrt(ss / (double)(n - 1)) : NAN;
}

// gen_models.py's INIT_MODELS, whose init statistics are checked too: one of
// each family (the big VGGs and ResNets are slow to initialise under ASan).
const char *const kInitModels[] = {"seed",     "mlp",      "seed_cnn",        "lenet5",          "alexnet",
                                   "vgg11_bn", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "mobilenet_v2"};

// Each parameter's mean and std (m initialised after loom_manual_seed(0))
// against torch's default init after torch.manual_seed(0) (models_init):
// |std_l / std_t - 1| <= 6 / sqrt(n) + 0.02 and |mean_l - mean_t| <=
// 4 sqrt(2) s / sqrt(n) + 1e-6, s = sqrt(mean_t^2 + std_t^2): both means are
// samples (hence sqrt(2): a 4-sigma bound on their difference), and s, the
// spread about 0 of these zero-mean inits, stays a fair scale for the 2- and
// 3-element biases of the seed network, whose sample std does not. A constant
// tensor (std_t = 0: zeros, BatchNorm's ones) must be that constant exactly.
void check_init(const std::string &name, const loom_module *m) {
  Fixture fx("models_init");
  ASSERT_TRUE(fx.ok());
  std::vector<double> mean_t = V(fx[name + ".mean"]), std_t = V(fx[name + ".std"]);
  NamedPtr list(loom_module_named_parameters(m), loom_named_tensors_free);
  const loom_named_tensors *ps = list.get();
  ASSERT_EQ((size_t)ps->n, mean_t.size()) << "parameter count";
  ASSERT_EQ((size_t)ps->n, std_t.size()) << "parameter count";
  int bad = 0;
  for (int i = 0; i < ps->n; i++) {
    double mean, std, n = (double)loom_numel(ps->tensors[i]);
    moments(ps->tensors[i], &mean, &std);
    bool ok;
    if (std_t[i] == 0) {
      ok = mean == mean_t[i] && std == 0;
    } else {
      double spread = std::hypot(mean_t[i], std_t[i]);
      ok = std::fabs(mean - mean_t[i]) <= 4 * std::sqrt(2.0) * spread / std::sqrt(n) + 1e-6 &&
           std::fabs(std / std_t[i] - 1) <= 6 / std::sqrt(n) + 0.02;
    }
    if (!ok && ++bad <= 10)
      ADD_FAILURE() << "init of " << ps->names[i] << " (" << (int64_t)n << " elements): Loom mean " << mean
                    << " std " << std << ", torch mean " << mean_t[i] << " std " << std_t[i];
  }
  EXPECT_EQ(bad, 0) << "parameters off torch's init statistics";
}

}  // namespace

// ---- names, shapes, dtypes and order at the defaults; init statistics ----

TEST(ModelRegistry, FixtureCoversEveryModel) {
  Fixture fx("models_keys");
  ASSERT_TRUE(fx.ok());
  EXPECT_TRUE(same_list("models", registry_names(), split(fx.meta("models"), ',')));
}

class ModelDefaults : public ::testing::TestWithParam<std::string> {};

// At the model's defaults: Loom's state_dict lines "name:dtype:d0,d1,...",
// named_parameters and named_buffers equal torchvision's, in order; for the
// models of kInitModels the init statistics match too (one model built for both).
TEST_P(ModelDefaults, MatchTorchvision) {
  const std::string &name = GetParam();
  Fixture fx("models_keys");
  ASSERT_TRUE(fx.ok());
  std::string lines = fx.meta(name);
  ASSERT_FALSE(lines.empty()) << "models_keys has no entry for " << name << " (rerun tools/fixtures/gen_models.py)";
  std::vector<std::string> want_sd, want_params, want_buffers;
  for (const std::string &line : split(lines, '\n')) {
    size_t kind = line.rfind(':');
    want_sd.push_back(line.substr(0, kind));
    (line.substr(kind + 1) == "P" ? want_params : want_buffers).push_back(line.substr(0, line.find(':')));
  }
  loom_manual_seed(0);
  ModulePtr m(loom_model_create(name.c_str(), nullptr), loom_module_free);
  ASSERT_NE(m, nullptr) << loom_last_error();
  loom_tensor_map *sd = loom_module_state_dict(m.get());
  ASSERT_NE(sd, nullptr) << loom_last_error();
  std::vector<std::string> got_sd;
  for (int i = 0; i < loom_map_size(sd); i++) {
    const char *key = loom_map_name(sd, i);
    const loom_tensor *t = loom_map_get(sd, key);
    std::string line = std::string(key) + ":" + loom_dtype_name(loom_dtype_of(t)) + ":";
    for (int d = 0; d < loom_ndim(t); d++) line += (d ? "," : "") + std::to_string(loom_size(t, d));
    got_sd.push_back(line);
  }
  loom_map_free(sd);
  EXPECT_TRUE(same_list("state_dict", got_sd, want_sd));
  EXPECT_TRUE(same_list("named_parameters", names_of(loom_module_named_parameters(m.get())), want_params));
  EXPECT_TRUE(same_list("named_buffers", names_of(loom_module_named_buffers(m.get())), want_buffers));
  for (const char *init : kInitModels)
    if (name == init) check_init(name, m.get());
}

INSTANTIATE_TEST_SUITE_P(Registry, ModelDefaults, ::testing::ValuesIn(registry_names()), param_name);

// Every model of kInitModels is in the registry (so its init is checked).
TEST(ModelRegistry, InitModelsExist) {
  for (const char *init : kInitModels) EXPECT_NE(loom_model_find(init), nullptr) << init;
}

// ---- eval-mode logits of hash-filled models ----

namespace {

struct LogitCase {
  const char *key, *model;
  int64_t n, hw, num_classes;  // num_classes 0: the model's default
  bool cifar;
};
// The cases of gen_models.py's LOGIT_CASES (VGG-11 with the ImageNet stem at 32x32:
// its 1x1 map is pooled up to 7x7; the other VGGs with the CIFAR stem).
const LogitCase kLogitCases[] = {
    {"seed", "seed", 2, 0, 0, false},
    {"mlp", "mlp", 2, 28, 0, false},
    {"seed_cnn", "seed_cnn", 2, 28, 0, false},
    {"lenet5", "lenet5", 2, 28, 0, false},
    {"resnet18", "resnet18", 2, 64, 0, false},
    {"resnet34", "resnet34", 2, 64, 0, false},
    {"resnet50", "resnet50", 1, 224, 0, false},
    {"resnet101", "resnet101", 2, 64, 0, false},
    {"resnet152", "resnet152", 2, 64, 0, false},
    {"resnext50_32x4d", "resnext50_32x4d", 1, 64, 0, false},
    {"wide_resnet50_2", "wide_resnet50_2", 1, 64, 0, false},
    {"alexnet", "alexnet", 1, 224, 0, false},
    {"vgg11", "vgg11", 1, 32, 10, false},
    {"vgg11_bn_cifar", "vgg11_bn", 1, 32, 10, true},
    {"vgg16_cifar", "vgg16", 1, 32, 10, true},
    {"vgg16_bn_cifar", "vgg16_bn", 1, 32, 10, true},
    {"vgg19_bn_cifar", "vgg19_bn", 1, 32, 10, true},
    {"mobilenet_v2", "mobilenet_v2", 2, 64, 0, false},
};

// Builds c's model, loads a hash-filled state_dict strictly, moves it to dev
// and compares its eval logits on the hash input with torchvision's.
void check_logits(const LogitCase &c, loom_device dev, double tol) {
  ScopeGuard scope;
  Fixture fx("models_logits");
  ASSERT_TRUE(fx.ok());
  loom_tensor *ref = fx[c.key];
  ASSERT_NE(ref, nullptr);
  loom_model_opts o{};
  o.num_classes = c.num_classes;
  o.stem = c.cifar ? LOOM_STEM_CIFAR : LOOM_STEM_IMAGENET;
  ModulePtr m(loom_model_create(c.model, &o), loom_module_free);
  ASSERT_NE(m, nullptr) << loom_last_error();
  ASSERT_TRUE(load_hash_filled(m.get(), c.key));
  loom_module_train(m.get(), false);
  if (dev.type != LOOM_CPU) ASSERT_EQ(loom_module_to_device(m.get(), dev), 0) << loom_last_error();
  loom_no_grad_begin();
  loom_tensor *y = loom_forward(m.get(), loom_to_device(hash_input(input_shape(c.model, c.n, c.hw)), dev));
  loom_no_grad_end();
  EXPECT_TRUE(close_logits(y, ref, tol)) << c.model << " on " << loom_device_name(dev) << ": " << fx.meta(c.key);
}

std::string logit_name(const ::testing::TestParamInfo<LogitCase> &info) { return info.param.key; }
void PrintTo(const LogitCase &c, std::ostream *os) { *os << c.key; }

}  // namespace

class ModelLogits : public ::testing::TestWithParam<LogitCase> {};

TEST_P(ModelLogits, Cpu) { check_logits(GetParam(), loom_cpu(), 1e-4); }

// The same fixture on the GPU. cuDNN's heuristic may pick Winograd or FFT
// convolutions, whose f32 rounding is a few 1e-5 relative per layer.
TEST_P(ModelLogits, Cuda) {
  LOOM_REQUIRE_GPU();
  check_logits(GetParam(), loom_cuda(0), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Zoo, ModelLogits, ::testing::ValuesIn(kLogitCases), logit_name);

// ---- state_dicts written by torch (default init), loaded strictly ----

namespace {

struct TorchCase {
  const char *model;
  int64_t num_classes;
  double width_mult;  // 0: the default
  int64_t n, hw;
};
// gen_models.py's TORCH_CASES (MobileNetV2 at width 0.1 keeps the file under 1 MB).
const TorchCase kTorchCases[] = {
    {"lenet5", 0, 0, 2, 28}, {"seed_cnn", 0, 0, 2, 28}, {"mlp", 0, 0, 2, 28}, {"mobilenet_v2", 10, 0.1, 2, 32}};

std::string torch_name(const ::testing::TestParamInfo<TorchCase> &info) { return info.param.model; }
void PrintTo(const TorchCase &c, std::ostream *os) { *os << c.model; }

}  // namespace

class TorchStateDict : public ::testing::TestWithParam<TorchCase> {};

TEST_P(TorchStateDict, LoadsStrictlyAndMatchesLogits) {
  const TorchCase &c = GetParam();
  ScopeGuard scope;
  Fixture fx("models_logits");
  ASSERT_TRUE(fx.ok());
  loom_model_opts o{};
  o.num_classes = c.num_classes;
  o.width_mult = c.width_mult;
  ModulePtr m(loom_model_create(c.model, &o), loom_module_free);
  ASSERT_NE(m, nullptr) << loom_last_error();
  std::string path = fixture_path(std::string("models_torch_") + c.model);
  ASSERT_EQ(loom_module_load(m.get(), path.c_str(), /*strict=*/true), 0) << loom_last_error();
  loom_module_train(m.get(), false);
  loom_no_grad_begin();
  loom_tensor *y = loom_forward(m.get(), hash_input(input_shape(c.model, c.n, c.hw)));
  loom_no_grad_end();
  EXPECT_TRUE(close_logits(y, fx[std::string("torch_") + c.model], 1e-5));
}

INSTANTIATE_TEST_SUITE_P(Zoo, TorchStateDict, ::testing::ValuesIn(kTorchCases), torch_name);
