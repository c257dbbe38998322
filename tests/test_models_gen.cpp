// The generative models of loom/models.h (src/models/generative.c, gan.c):
// parity with their PyTorch twins (tools/fixtures/gen_models_gen.py: strict
// state_dict load, eval outputs, one training step's gradients, the VAE loss),
// the GAN training step against the same step written by hand, options, bad
// input, init and CUDA against the CPU. The short learning runs on
// Fashion-MNIST are in test_models_gen_learn.cpp.
#include "models_fill_util.h"

#include <cstdio>

namespace {

using namespace models;

std::string error() { return loom_last_error(); }

std::vector<std::string> split(const std::string &s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, sep);) out.push_back(part);
  return out;
}

// The options of gen_models_gen.py's CASES.
loom_model_opts case_opts(const std::string &name) {
  loom_model_opts o{};
  if (name == "autoencoder") o.hidden = 4, o.latent_dim = 3;
  if (name == "vae") o.hidden = 4, o.latent_dim = 4;
  if (name == "gan") o.hidden = 2, o.latent_dim = 8;
  if (name == "dcgan") o.hidden = 4, o.latent_dim = 8;
  return o;
}

// The case's model with the twin's state_dict loaded strictly.
loom_module *load_case(const std::string &name) {
  loom_model_opts o = case_opts(name);
  loom_module *m = loom_model_create(name.c_str(), &o);
  if (!m) {
    ADD_FAILURE() << name << ": " << error();
    return nullptr;
  }
  std::string path = std::string(LOOM_FIXTURE_DIR) + "/models_gen_" + name + "_state.safetensors";
  if (loom_module_load(m, path.c_str(), /*strict=*/true) != 0) {
    ADD_FAILURE() << name << ": strict load of " << path << ": " << error();
    loom_module_free(m);
    return nullptr;
  }
  return m;
}

// Every parameter of m (named prefix + name in the fixture) under prefix has
// a gradient whose norm and hash projection match the twin's (rel 1e-4).
void check_grads(const Fixture &fx, loom_module *m, const std::string &prefix) {
  NamedPtr list(loom_module_named_parameters(m), loom_named_tensors_free);
  ASSERT_NE(list, nullptr) << error();
  int checked = 0;
  for (int i = 0; i < list->n; i++) {
    std::string name = list->names[i];
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    Projection p;
    ASSERT_TRUE(project(loom_grad(list->tensors[i]), name + "#grad", &p)) << name << " has no gradient";
    double norm = loom_item(fx["gnorm." + name]), proj = loom_item(fx["gproj." + name]);
    EXPECT_NEAR(p.norm, norm, 1e-4 * norm + 1e-9) << name;
    EXPECT_NEAR(p.proj, proj, 1e-4 * norm * p.r_norm + 1e-9) << name;
    checked++;
  }
  EXPECT_GT(checked, 0) << "no parameters under " << prefix;
}

double item(const loom_tensor *t) { return t ? loom_item(t) : NAN; }

loom_tensor *bce1(loom_tensor *logits, double label) {
  return loom_bce_with_logits(logits, loom_full_like(logits, label), nullptr, nullptr, LOOM_REDUCTION_MEAN);
}

}  // namespace

// ---- names, counts, strict loads ----

class GenModel : public ::testing::TestWithParam<std::string> {};

// The twin's state_dict loads strictly and Loom's names are the twin's, in
// order; at the defaults the parameter count is the twin's.
TEST_P(GenModel, StateDictAndCountMatchTheTwin) {
  const std::string name = GetParam();
  ModulePtr m(load_case(name), loom_module_free);
  ASSERT_NE(m, nullptr);
  Fixture state(("models_gen_" + name + "_state").c_str());
  ASSERT_TRUE(state.ok());
  std::vector<std::string> want = split(state.meta("state_dict"), ',');
  loom_tensor_map *sd = loom_module_state_dict(m.get());
  ASSERT_NE(sd, nullptr) << error();
  std::vector<std::string> got;
  for (int i = 0; i < loom_map_size(sd); i++) got.push_back(loom_map_name(sd, i));
  loom_map_free(sd);
  EXPECT_EQ(got, want);
  Fixture fx(("models_gen_" + name).c_str());
  ASSERT_TRUE(fx.ok());
  ModulePtr def(loom_model_create(name.c_str(), nullptr), loom_module_free);
  ASSERT_NE(def, nullptr) << error();
  EXPECT_EQ(std::to_string(loom_module_num_params(def.get(), false)), fx.meta("params_default")) << name;
}

INSTANTIATE_TEST_SUITE_P(Zoo, GenModel, ::testing::Values("autoencoder", "vae", "gan", "dcgan"),
                         [](const ::testing::TestParamInfo<std::string> &p) { return p.param; });

TEST(GenRegistry, EntriesDescribeTheInputs) {
  for (const char *name : {"autoencoder", "vae"}) {
    const loom_model_info *info = loom_model_find(name);
    ASSERT_NE(info, nullptr) << error();
    EXPECT_EQ(info->input[0], 784);
    EXPECT_EQ(info->input[1], 0);
    EXPECT_EQ(info->kind, LOOM_INPUT_TENSOR);
  }
  for (const char *name : {"gan", "dcgan"}) {
    const loom_model_info *info = loom_model_find(name);
    ASSERT_NE(info, nullptr) << error();
    EXPECT_EQ(info->input[0], 100);
    EXPECT_EQ(info->input[1], 0);
  }
}

// ---- parity with the twins ----

TEST(GenParity, AutoencoderReconstructionAndGradients) {
  ScopeGuard scope;
  Fixture fx("models_gen_autoencoder");
  ASSERT_TRUE(fx.ok());
  ModulePtr m(load_case("autoencoder"), loom_module_free);
  ASSERT_NE(m, nullptr);
  loom_module_train(m.get(), false);
  loom_tensor *x = fx["input"];
  loom_tensor *recon = loom_forward(m.get(), x);
  EXPECT_TRUE(close_logits(recon, fx["recon"], 1e-5));
  loom_tensor *loss = loom_mse_loss(recon, x, LOOM_REDUCTION_MEAN);
  EXPECT_NEAR(item(loss), item(fx["loss"]), 1e-5 * item(fx["loss"]));
  ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << error();
  check_grads(fx, m.get(), "");
  // [N, 1, 28, 28] images are flattened first
  loom_tensor *img = loom_reshape(x, LOOM_SHAPE(loom_size(x, 0), 1, 28, 28));
  EXPECT_TRUE(close_logits(loom_forward(m.get(), img), fx["recon"], 1e-5));
}

TEST(GenParity, VaeEvalOutputsLossAndGradients) {
  ScopeGuard scope;
  Fixture fx("models_gen_vae");
  ASSERT_TRUE(fx.ok());
  ModulePtr m(load_case("vae"), loom_module_free);
  ASSERT_NE(m, nullptr);
  loom_module_train(m.get(), false);
  loom_tensor *mu = nullptr, *logvar = nullptr;
  loom_tensor *recon = loom_vae_forward(m.get(), fx["input"], &mu, &logvar);
  ASSERT_NE(recon, nullptr) << error();
  EXPECT_TRUE(close_logits(recon, fx["recon"], 1e-5));
  EXPECT_TRUE(close_logits(mu, fx["mu"], 1e-5));
  EXPECT_TRUE(close_logits(logvar, fx["logvar"], 1e-5));
  loom_tensor *loss = loom_vae_loss(recon, fx["input"], mu, logvar);
  ASSERT_NE(loss, nullptr) << error();
  EXPECT_EQ(loom_ndim(loss), 0);
  EXPECT_NEAR(item(loss), item(fx["loss"]), 1e-5 * item(fx["loss"]));
  ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << error();
  check_grads(fx, m.get(), "");
  // loom_forward gives the same reconstruction (the mean in eval)
  EXPECT_TRUE(close_logits(loom_forward(m.get(), fx["input"]), fx["recon"], 1e-5));
}

// loom_vae_loss = BCE(recon, x, sum) - 0.5 sum(1 + logvar - mu^2 - exp(logvar)),
// the example's loss_function, on given tensors; x may be [N, 1, 28, 28].
TEST(GenParity, VaeLossIsTheExamplesFormula) {
  ScopeGuard scope;
  Fixture fx("models_gen_vae");
  ASSERT_TRUE(fx.ok());
  loom_tensor *recon = fx["lf.recon"], *x = fx["lf.x"];
  double want = item(fx["lf.loss"]);
  EXPECT_NEAR(item(loom_vae_loss(recon, x, fx["lf.mu"], fx["lf.logvar"])), want, 1e-5 * want);
  loom_tensor *img = loom_reshape(x, LOOM_SHAPE(loom_size(x, 0), 1, 28, 28));
  EXPECT_NEAR(item(loom_vae_loss(recon, img, fx["lf.mu"], fx["lf.logvar"])), want, 1e-5 * want);
}

class GanParity : public ::testing::TestWithParam<std::string> {};

// Eval: G(noise) and D(G(noise)). Train mode: the discriminator's loss
// (real -> 1, detached fake -> 0) and its gradients, then the generator's
// non-saturating loss and its gradients, as the twin computes them.
TEST_P(GanParity, EvalOutputsLossesAndGradients) {
  const std::string name = GetParam();
  ScopeGuard scope;
  Fixture fx(("models_gen_" + name).c_str());
  ASSERT_TRUE(fx.ok());
  ModulePtr m(load_case(name), loom_module_free);
  ASSERT_NE(m, nullptr);
  loom_module *G = loom_module_child(m.get(), "generator"), *D = loom_module_child(m.get(), "discriminator");
  ASSERT_TRUE(G && D) << error();
  loom_tensor *z = fx["noise"], *real = fx["real"];
  loom_module_train(m.get(), false);
  loom_no_grad_begin();
  EXPECT_TRUE(close_logits(loom_forward(G, z), fx["images"], 1e-5));
  EXPECT_TRUE(close_logits(loom_forward(m.get(), z), fx["logits"], 1e-5));
  loom_no_grad_end();
  loom_module_train(m.get(), true);
  loom_tensor *fake = loom_forward(G, z);
  loom_tensor *d_real = loom_forward(D, real), *d_fake = loom_forward(D, loom_detach(fake));
  loom_tensor *d_loss = loom_add(bce1(d_real, 1), bce1(d_fake, 0));
  ASSERT_NE(d_loss, nullptr) << error();
  EXPECT_NEAR(item(d_loss), item(fx["d_loss"]), 1e-5);
  EXPECT_NEAR(item(loom_mean(loom_sigmoid(d_real), nullptr, 0, false)), item(fx["d_real"]), 1e-5);
  EXPECT_NEAR(item(loom_mean(loom_sigmoid(d_fake), nullptr, 0, false)), item(fx["d_fake"]), 1e-5);
  ASSERT_EQ(loom_backward(d_loss, nullptr, false), 0) << error();
  check_grads(fx, m.get(), "discriminator.");
  loom_module_zero_grad(m.get());
  loom_tensor *g_loss = bce1(loom_forward(D, fake), 1);
  ASSERT_NE(g_loss, nullptr) << error();
  EXPECT_NEAR(item(g_loss), item(fx["g_loss"]), 1e-5);
  ASSERT_EQ(loom_backward(g_loss, nullptr, false), 0) << error();
  check_grads(fx, m.get(), "generator.");
}

INSTANTIATE_TEST_SUITE_P(Zoo, GanParity, ::testing::Values("gan", "dcgan"),
                         [](const ::testing::TestParamInfo<std::string> &p) { return p.param; });

// ---- the training step ----

class GanStep : public ::testing::TestWithParam<std::string> {};

// loom_gan_train_step with noise from the generator seeded as the test's own
// draw: its statistics are the hand-written step's; the discriminator is
// updated before the generator's loss (g_loss = the loss through the updated
// discriminator of the old generator), and both networks change.
TEST_P(GanStep, MatchesTheStepWrittenByHand) {
  const std::string name = GetParam();
  ScopeGuard scope;
  Fixture fx(("models_gen_" + name).c_str());
  ASSERT_TRUE(fx.ok());
  ModulePtr a(load_case(name), loom_module_free), b(load_case(name), loom_module_free);
  ASSERT_TRUE(a && b);
  loom_module_train(a.get(), true);
  loom_module_train(b.get(), true);
  loom_tensor *real = fx["real"];
  loom_module *Gb = loom_module_child(b.get(), "generator"), *Db = loom_module_child(b.get(), "discriminator");
  loom_manual_seed(11);
  loom_tensor *z = loom_randn(LOOM_SHAPE(loom_size(real, 0), 8), LOOM_F32, loom_cpu());
  loom_tensor *fake = loom_forward(Gb, z);
  loom_tensor *d_real = loom_forward(Db, real), *d_fake = loom_forward(Db, fake);
  double want_d = item(loom_add(bce1(d_real, 1), bce1(d_fake, 0)));
  double want_real = item(loom_mean(loom_sigmoid(d_real), nullptr, 0, false));
  double want_fake = item(loom_mean(loom_sigmoid(d_fake), nullptr, 0, false));

  loom_sgd_opts so{};
  so.lr = 0.05;
  loom_optimizer *opt_g = loom_sgd_module(loom_module_child(a.get(), "generator"), &so);
  loom_optimizer *opt_d = loom_sgd_module(loom_module_child(a.get(), "discriminator"), &so);
  ASSERT_TRUE(opt_g && opt_d) << error();
  const char *g_weight = name == "gan" ? "generator.0.weight" : "generator.main.0.weight";
  loom_tensor *g0 = loom_clone(loom_module_param(a.get(), g_weight));
  loom_manual_seed(11);
  loom_gan_stats st{};
  ASSERT_EQ(loom_gan_train_step(a.get(), opt_g, opt_d, real, &st), 0) << error();
  EXPECT_NEAR(st.d_loss, want_d, 1e-5);
  EXPECT_NEAR(st.d_real, want_real, 1e-6);
  EXPECT_NEAR(st.d_fake, want_fake, 1e-6);
  // b's discriminator := a's updated one; b's generator is still the old one
  loom_tensor_map *sd = loom_module_state_dict(loom_module_child(a.get(), "discriminator"));
  ASSERT_EQ(loom_module_load_state_dict(Db, sd, true), 0) << error();
  loom_map_free(sd);
  double want_g = item(bce1(loom_forward(Db, loom_forward(Gb, z)), 1));
  EXPECT_NEAR(st.g_loss, want_g, 1e-5);
  EXPECT_GT(rel_err(loom_module_param(a.get(), g_weight), g0), 1e-6) << "the generator did not move";
  loom_optimizer_free(opt_g);
  loom_optimizer_free(opt_d);
}

INSTANTIATE_TEST_SUITE_P(Zoo, GanStep, ::testing::Values("gan", "dcgan"),
                         [](const ::testing::TestParamInfo<std::string> &p) { return p.param; });

// ---- sampling, init, options, bad input ----

// Training samples z = mu + eps * exp(logvar / 2): mu and logvar are the
// eval ones, the reconstruction differs from eval's, and a reseeded run repeats.
TEST(GenVae, TrainingSamplesAndEvalTakesTheMean) {
  ScopeGuard scope;
  Fixture fx("models_gen_vae");
  ASSERT_TRUE(fx.ok());
  ModulePtr m(load_case("vae"), loom_module_free);
  ASSERT_NE(m, nullptr);
  loom_module_train(m.get(), true);
  loom_tensor *mu, *logvar;
  loom_manual_seed(5);
  loom_tensor *r1 = loom_vae_forward(m.get(), fx["input"], &mu, &logvar);
  ASSERT_NE(r1, nullptr) << error();
  EXPECT_TRUE(close_logits(mu, fx["mu"], 1e-5));
  EXPECT_TRUE(close_logits(logvar, fx["logvar"], 1e-5));
  loom_manual_seed(5);
  loom_tensor *r2 = loom_forward(m.get(), fx["input"]);
  EXPECT_LT(rel_err(r2, r1), 1e-7) << "same seed, same sample";
  EXPECT_GT(rel_err(r1, fx["recon"]), 1e-4) << "training must sample z";
}

TEST(GenInit, DcganIsNormal002AndTheRestPyTorchDefault) {
  loom_manual_seed(0);
  ModulePtr dc(loom_model_dcgan(nullptr), loom_module_free);
  ASSERT_NE(dc, nullptr) << error();
  double mean, std;
  auto stats = [&](const loom_tensor *t) {
    std::vector<double> v = V(t);
    double s = 0, ss = 0;
    for (double x : v) s += x;
    mean = s / v.size();
    for (double x : v) ss += (x - mean) * (x - mean);
    std = std::sqrt(ss / (v.size() - 1));
  };
  for (const char *p : {"generator.main.0.weight", "generator.main.3.weight", "discriminator.main.2.weight"}) {
    stats(loom_module_param(dc.get(), p));
    EXPECT_NEAR(mean, 0, 0.002) << p;
    EXPECT_NEAR(std, 0.02, 0.002) << p;
  }
  stats(loom_module_param(dc.get(), "generator.main.1.weight"));
  EXPECT_NEAR(mean, 1, 0.01);
  EXPECT_NEAR(std, 0.02, 0.01);
  EXPECT_EQ(V(loom_module_param(dc.get(), "generator.main.1.bias")), std::vector<double>(128, 0.0));
  ModulePtr gan(loom_model_gan(nullptr), loom_module_free);
  ASSERT_NE(gan, nullptr) << error();
  stats(loom_module_param(gan.get(), "generator.6.weight"));  // U(-1/sqrt(1024), 1/sqrt(1024))
  EXPECT_NEAR(std, 1 / std::sqrt(3.0 * 1024), 0.001);
}

TEST(GenOptions, ShapesAndBadOptions) {
  ScopeGuard scope;
  loom_model_opts o{};
  o.latent_dim = 7;
  o.hidden = 32;
  ModulePtr vae(loom_model_vae(&o), loom_module_free);
  ASSERT_NE(vae, nullptr) << error();
  loom_tensor *mu, *logvar;
  loom_tensor *r = loom_vae_forward(vae.get(), loom_rand(LOOM_SHAPE(2, 1, 28, 28), LOOM_F32, loom_cpu()), &mu, &logvar);
  ASSERT_NE(r, nullptr) << error();
  EXPECT_EQ(loom_shape_str(loom_shape_of(r)), std::string("[2, 784]"));
  EXPECT_EQ(loom_shape_str(loom_shape_of(mu)), std::string("[2, 7]"));
  EXPECT_EQ(loom_size(loom_module_param(vae.get(), "fc1.weight"), 0), 32);
  ModulePtr dc(loom_model_dcgan(nullptr), loom_module_free);
  ASSERT_NE(dc, nullptr) << error();
  loom_tensor *noise = loom_randn(LOOM_SHAPE(2, 100), LOOM_F32, loom_cpu());
  loom_tensor *img = loom_forward(loom_module_child(dc.get(), "generator"), noise);
  ASSERT_NE(img, nullptr) << error();
  EXPECT_EQ(loom_shape_str(loom_shape_of(img)), std::string("[2, 1, 28, 28]"));
  loom_tensor *logits = loom_forward(dc.get(), loom_randn(LOOM_SHAPE(2, 100, 1, 1), LOOM_F32, loom_cpu()));
  ASSERT_NE(logits, nullptr) << error();
  EXPECT_EQ(loom_shape_str(loom_shape_of(logits)), std::string("[2, 1]"));
  o = {};
  o.latent_dim = -1;
  EXPECT_EQ(loom_model_vae(&o), nullptr);
  EXPECT_NE(error().find("VAE: hidden (400) and latent_dim (-1) must be >= 1"), std::string::npos) << error();
  o = {};
  o.hidden = -3;
  EXPECT_EQ(loom_model_gan(&o), nullptr);
  EXPECT_EQ(error().rfind("GAN: ", 0), 0u) << error();
  o = {};
  o.in_channels = -1;
  EXPECT_EQ(loom_model_autoencoder(&o), nullptr);
  EXPECT_EQ(error().rfind("Autoencoder: ", 0), 0u) << error();
}

TEST(GenInput, WrongShapesAreClearErrors) {
  ScopeGuard scope;
  ModulePtr ae(loom_model_autoencoder(nullptr), loom_module_free), vae(loom_model_vae(nullptr), loom_module_free);
  ModulePtr gan(loom_model_gan(nullptr), loom_module_free), dc(loom_model_dcgan(nullptr), loom_module_free);
  ASSERT_TRUE(ae && vae && gan && dc) << error();
  loom_tensor *x100 = loom_rand(LOOM_SHAPE(2, 100), LOOM_F32, loom_cpu());
  EXPECT_EQ(loom_forward(ae.get(), x100), nullptr);
  EXPECT_EQ(error(), "Autoencoder: expected float input [N, 784] or [N, 1, 28, 28], got f32 [2, 100]");
  EXPECT_EQ(loom_forward(vae.get(), loom_rand(LOOM_SHAPE(2, 1, 32, 32), LOOM_F32, loom_cpu())), nullptr);
  EXPECT_EQ(error(), "VAE: expected float input [N, 784] or [N, 1, 28, 28], got f32 [2, 1, 32, 32]");
  EXPECT_EQ(loom_forward(vae.get(), loom_zeros(LOOM_SHAPE(2, 784), LOOM_I64, loom_cpu())), nullptr);
  EXPECT_NE(error().find("got i64 [2, 784]"), std::string::npos) << error();
  EXPECT_EQ(loom_forward(gan.get(), loom_rand(LOOM_SHAPE(2, 50), LOOM_F32, loom_cpu())), nullptr);
  EXPECT_EQ(error(), "GAN: expected float noise [N, 100], got f32 [2, 50]");
  EXPECT_EQ(loom_forward(dc.get(), loom_rand(LOOM_SHAPE(2, 100, 2, 2), LOOM_F32, loom_cpu())), nullptr);
  EXPECT_EQ(error(), "DCGAN: expected float noise [N, 100] or [N, latent, 1, 1], got f32 [2, 100, 2, 2]");
  EXPECT_EQ(loom_forward(loom_module_child(dc.get(), "discriminator"), x100), nullptr);
  EXPECT_EQ(error().rfind("DCGAN discriminator: expected float images [N, 784] or [N, 1, 28, 28]", 0), 0u) << error();
  loom_tensor *mu = nullptr, *logvar = nullptr;
  EXPECT_EQ(loom_vae_forward(ae.get(), x100, &mu, &logvar), nullptr);
  EXPECT_NE(error().find("loom_vae_forward: needs a loom_model_vae module"), std::string::npos) << error();
  EXPECT_EQ(loom_vae_forward(vae.get(), x100, nullptr, &logvar), nullptr);
  loom_tensor *r = loom_rand(LOOM_SHAPE(2, 784), LOOM_F32, loom_cpu());
  loom_tensor *m20 = loom_zeros(LOOM_SHAPE(2, 20), LOOM_F32, loom_cpu());
  EXPECT_EQ(loom_vae_loss(r, x100, m20, m20), nullptr);
  EXPECT_NE(error().find("loom_vae_loss: expected recon [N, F]"), std::string::npos) << error();
  EXPECT_EQ(loom_vae_loss(r, r, m20, loom_zeros(LOOM_SHAPE(2, 19), LOOM_F32, loom_cpu())), nullptr);
  EXPECT_NE(error().find("logvar [2, 19]"), std::string::npos) << error();
  // the training step checks the real batch and its arguments
  loom_optimizer *og = loom_adam_module(loom_module_child(gan.get(), "generator"), nullptr);
  loom_optimizer *od = loom_adam_module(loom_module_child(gan.get(), "discriminator"), nullptr);
  ASSERT_TRUE(og && od) << error();
  loom_gan_stats st{};
  EXPECT_EQ(loom_gan_train_step(gan.get(), og, od, x100, &st), LOOM_ERR_INVALID);
  EXPECT_EQ(error(), "GAN: expected float images [N, 784] or [N, 1, 28, 28], got f32 [2, 100]");
  EXPECT_EQ(loom_gan_train_step(vae.get(), og, od, r, &st), LOOM_ERR_INVALID);
  EXPECT_NE(error().find("loom_gan_train_step: needs a loom_model_gan"), std::string::npos) << error();
  EXPECT_EQ(loom_gan_train_step(gan.get(), og, nullptr, r, &st), LOOM_ERR_INVALID);
  loom_optimizer_free(og);
  loom_optimizer_free(od);
}

// ---- CUDA against the CPU ----

TEST(GenCuda, ForwardMatchesTheCpuAndTheStepRuns) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  for (const char *name : {"autoencoder", "vae", "gan", "dcgan"}) {
    Fixture fx((std::string("models_gen_") + name).c_str());
    ASSERT_TRUE(fx.ok());
    ModulePtr m(load_case(name), loom_module_free);
    ASSERT_NE(m, nullptr);
    loom_module_train(m.get(), false);
    bool gan = std::string(name) == "gan" || std::string(name) == "dcgan";
    loom_tensor *in = fx[gan ? "noise" : "input"];
    loom_no_grad_begin();
    loom_tensor *cpu = loom_forward(m.get(), in);
    ASSERT_EQ(loom_module_to_device(m.get(), loom_cuda(0)), 0) << error();
    loom_tensor *gpu = loom_forward(m.get(), loom_to_device(in, loom_cuda(0)));
    loom_no_grad_end();
    EXPECT_LT(rel_err(gpu, cpu), 1e-4) << name << ": " << error();
    if (!gan) continue;
    loom_module_train(m.get(), true);
    loom_optimizer *og = loom_adam_module(loom_module_child(m.get(), "generator"), nullptr);
    loom_optimizer *od = loom_adam_module(loom_module_child(m.get(), "discriminator"), nullptr);
    loom_gan_stats st{};
    EXPECT_EQ(loom_gan_train_step(m.get(), og, od, fx["real"], &st), 0) << name << ": " << error();  // real on the CPU
    EXPECT_TRUE(std::isfinite(st.d_loss) && std::isfinite(st.g_loss)) << name;
    loom_optimizer_free(og);
    loom_optimizer_free(od);
  }
}
