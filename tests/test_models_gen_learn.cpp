// The generative models of loom/models.h learning on Fashion-MNIST (skipped
// without the Debian dataset): the autoencoder's reconstruction error and the
// VAE's ELBO fall, and the GAN / DCGAN discriminators separate real from
// generated images while the samples move toward the data. Parity, the
// training step, options and bad input are in test_models_gen.cpp.
#include "models_fill_util.h"

#include <cstdio>

namespace {

using namespace models;

std::string error() { return loom_last_error(); }

double item(const loom_tensor *t) { return t ? loom_item(t) : NAN; }

}  // namespace

// ---- learning on Fashion-MNIST (the first images of the training set) ----

namespace {

const char *kFashion = "/usr/share/datasets/fashion-mnist";

bool have_fashion() {
  std::string images = std::string(kFashion) + "/train-images-idx3-ubyte.gz";
  if (FILE *fp = fopen(images.c_str(), "rb")) {
    fclose(fp);
    return true;
  }
  return false;
}

// Shuffled batches of the first n images, pixels in [0, 1] or, with
// to_pm1, (x - 0.5) / 0.5 in [-1, 1].
loom_loader *fashion(int64_t n, int64_t batch, bool to_pm1) {
  static const float half = 0.5f;
  loom_dataset *full = loom_dataset_mnist(kFashion, true);
  loom_dataset *ds = full ? loom_dataset_subset(full, 0, n) : nullptr;
  loom_dataset_free(full);
  if (!ds) return nullptr;
  loom_loader_opts lo = {};
  lo.batch_size = batch;
  lo.shuffle = true;
  lo.seed = 1;
  lo.drop_last = true;
  lo.no_prefetch = true;
  if (to_pm1) {
    lo.transform.norm_channels = 1;
    lo.transform.mean = &half;
    lo.transform.std = &half;
  }
  loom_loader *l = loom_loader_new(ds, &lo);
  loom_dataset_free(ds);
  return l;
}

#define REQUIRE_FASHION()                                                                                \
  do {                                                                                                  \
    if (!have_fashion())                                                                                \
      GTEST_SKIP() << kFashion << "/train-images-idx3-ubyte.gz not found (Debian package dataset-fashion-mnist)"; \
  } while (0)

// Per-epoch mean of loss_fn over the batches of `epochs` epochs, Adam at lr.
// loss_fn returns the loss to minimise (in the caller's scope) and *report,
// the number to record.
template <class F>
std::vector<double> train(loom_module *m, loom_loader *loader, int epochs, double lr, double *first, F loss_fn) {
  loom_adam_opts ao = {};
  ao.lr = lr;
  loom_optimizer *opt = loom_adam_module(m, &ao);
  std::vector<double> means;
  *first = NAN;
  for (int e = 0; opt && e < epochs; e++) {
    EXPECT_EQ(loom_loader_start_epoch(loader, e), 0) << error();
    double sum = 0;
    int n = 0;
    loom_tensor *x, *y;
    while (loom_loader_next(loader, &x, &y)) {
      loom_scope_begin();
      double report = NAN;
      loom_tensor *loss = loss_fn(x, &report);
      if (loss) loom_optimizer_zero_grad(opt);
      bool ok = loss && !loom_backward(loss, nullptr, false) && !loom_optimizer_step(opt);
      loom_scope_end();
      loom_release(x);
      loom_release(y);
      if (!ok) {
        ADD_FAILURE() << error();
        loom_optimizer_free(opt);
        return means;
      }
      if (std::isnan(*first)) *first = report;
      sum += report, n++;
    }
    means.push_back(sum / n);
  }
  loom_optimizer_free(opt);
  return means;
}

}  // namespace

// The autoencoder (784-128-64-12-3) on 1,024 images: the last epoch's mean
// reconstruction MSE falls below 0.6 x the first batch's.
TEST(GenLearns, AutoencoderReconstructionErrorFalls) {
  REQUIRE_FASHION();
  loom_manual_seed(1);
  ModulePtr m(loom_model_autoencoder(nullptr), loom_module_free);
  loom_loader *loader = fashion(1024, 32, false);
  ASSERT_TRUE(m && loader) << error();
  double first;
  std::vector<double> means = train(m.get(), loader, 3, 3e-3, &first, [&](loom_tensor *x, double *report) {
    loom_tensor *loss = loom_mse_loss(loom_forward(m.get(), x), loom_flatten(x, 1, -1), LOOM_REDUCTION_MEAN);
    *report = item(loss);
    return loss;
  });
  loom_loader_free(loader);
  ASSERT_EQ(means.size(), 3u);
  printf("autoencoder MSE: first batch %.4f, epochs %.4f %.4f %.4f\n", first, means[0], means[1], means[2]);
  EXPECT_LT(means.back(), 0.6 * first);
}

// The VAE (784-400-20) on 1,024 images: the ELBO loss per sample (BCE sum +
// KLD over the batch / batch size) falls below 0.7 x the first batch's.
TEST(GenLearns, VaeElboFalls) {
  REQUIRE_FASHION();
  loom_manual_seed(1);
  ModulePtr m(loom_model_vae(nullptr), loom_module_free);
  loom_loader *loader = fashion(1024, 64, false);
  ASSERT_TRUE(m && loader) << error();
  double first;
  std::vector<double> means = train(m.get(), loader, 3, 1e-3, &first, [&](loom_tensor *x, double *report) {
    loom_tensor *mu, *logvar;
    loom_tensor *recon = loom_vae_forward(m.get(), x, &mu, &logvar);
    loom_tensor *loss = loom_vae_loss(recon, x, mu, logvar);
    *report = item(loss) / (double)loom_size(x, 0);
    return loss;
  });
  loom_loader_free(loader);
  ASSERT_EQ(means.size(), 3u);
  printf("VAE loss per sample: first batch %.1f, epochs %.1f %.1f %.1f\n", first, means[0], means[1], means[2]);
  EXPECT_LT(means.back(), 0.7 * first);
}

namespace {

// Mean and std of the pixels of 256 generated images (no grad; in training
// mode, the batch's statistics, as the DCGAN tutorial samples: after a few
// dozen steps BatchNorm's running statistics still lag behind).
void sample_stats(loom_module *gan, int64_t latent, double *mean, double *std) {
  ScopeGuard scope;
  loom_no_grad_begin();
  loom_tensor *z = loom_randn(LOOM_SHAPE(256, latent), LOOM_F32, loom_cpu());
  loom_tensor *img = loom_forward(loom_module_child(gan, "generator"), z);
  loom_no_grad_end();
  *mean = item(loom_mean(img, nullptr, 0, false));
  *std = item(loom_std(img, nullptr, 0, 1, false));
}

struct GanRun {
  const char *name;
  int64_t hidden;
  int steps, batch;
  double lr;
};

}  // namespace

class GanLearns : public ::testing::TestWithParam<GanRun> {};

// Adam (lr 1e-3, beta1 0.5) on batches of 32 images in [-1, 1]: within a few
// dozen steps the discriminator tells real from generated (mean D(x) - D(G(z))
// over the last 10 steps > 0.2, its loss below the 2 ln 2 of a coin), and
// the generator's samples' pixel mean and std move toward the data's.
TEST_P(GanLearns, DiscriminatorSeparatesAndSamplesMoveTowardTheData) {
  REQUIRE_FASHION();
  const GanRun &r = GetParam();
  loom_manual_seed(2);
  loom_model_opts o{};
  o.hidden = r.hidden;
  ModulePtr m(loom_model_create(r.name, &o), loom_module_free);
  loom_loader *loader = fashion(r.batch * r.steps, r.batch, true);
  ASSERT_TRUE(m && loader) << error();
  loom_adam_opts ao = {};
  ao.lr = r.lr;
  ao.beta1 = 0.5;
  loom_optimizer *og = loom_adam_module(loom_module_child(m.get(), "generator"), &ao);
  loom_optimizer *od = loom_adam_module(loom_module_child(m.get(), "discriminator"), &ao);
  ASSERT_TRUE(og && od) << error();
  double data_mean = 0, data_sq = 0, mean0, std0;
  sample_stats(m.get(), 100, &mean0, &std0);
  ASSERT_EQ(loom_loader_start_epoch(loader, 0), 0) << error();
  std::vector<loom_gan_stats> hist;
  loom_tensor *x, *y;
  while (loom_loader_next(loader, &x, &y)) {
    {
      ScopeGuard batch;
      data_mean += item(loom_mean(x, nullptr, 0, false));
      data_sq += item(loom_mean(loom_square(x), nullptr, 0, false));
    }
    loom_gan_stats st{};
    int rc = loom_gan_train_step(m.get(), og, od, x, &st);
    loom_release(x);
    loom_release(y);
    ASSERT_EQ(rc, 0) << error();
    hist.push_back(st);
  }
  loom_optimizer_free(og);
  loom_optimizer_free(od);
  loom_loader_free(loader);
  ASSERT_EQ((int)hist.size(), r.steps);
  data_mean /= r.steps;
  double data_std = std::sqrt(data_sq / r.steps - data_mean * data_mean), mean1, std1;
  sample_stats(m.get(), 100, &mean1, &std1);
  double gap = 0, d_loss = 0;
  for (int i = r.steps - 10; i < r.steps; i++) {
    gap += (hist[i].d_real - hist[i].d_fake) / 10;
    d_loss += hist[i].d_loss / 10;
  }
  printf("%s: first step d_loss %.3f g_loss %.3f D(x) %.3f D(G(z)) %.3f;"
         " last 10 steps d_loss %.3f, D(x) - D(G(z)) %.3f\n"
         "   samples: mean %.3f -> %.3f, std %.3f -> %.3f (data: mean %.3f, std %.3f)\n",
         r.name, hist[0].d_loss, hist[0].g_loss, hist[0].d_real, hist[0].d_fake, d_loss, gap, mean0, mean1, std0, std1,
         data_mean, data_std);
  EXPECT_GT(gap, 0.2);
  EXPECT_LT(d_loss, 2 * std::log(2.0));
  EXPECT_LT(std::fabs(mean1 - data_mean), 0.9 * std::fabs(mean0 - data_mean));
  EXPECT_LT(std::fabs(std1 - data_std), 0.9 * std::fabs(std0 - data_std));
}

INSTANTIATE_TEST_SUITE_P(Zoo, GanLearns,
                         ::testing::Values(GanRun{"gan", 0, 30, 32, 1e-3}, GanRun{"dcgan", 16, 30, 32, 3e-3}),
                         [](const ::testing::TestParamInfo<GanRun> &p) { return std::string(p.param.name); });
