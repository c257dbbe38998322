// The training loop helper (loom/train.h): learning, progress lines, resume
// giving bit-identical parameters, NaN / Inf stops naming the tensor,
// SIGINT handling with a checkpoint, rotation, stopping and bad arguments.
#include <gmock/gmock.h>
#include <loom/train.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "loom_test.h"

using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

// Sample i: 4 values in [-1, 1) from a hash of i; label = argmax of the first 3.
uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
const loom_dataset_kind blobs_kind = {
    "Blobs",
    [](void *, int64_t i, void *x, void *y) -> int {
      float *xf = (float *)x;
      for (int k = 0; k < 4; k++) xf[k] = (float)((mix((uint64_t)i * 4 + k + 1) >> 11) * 0x1p-53 * 2 - 1);
      int best = 0;
      for (int k = 1; k < 3; k++)
        if (xf[k] > xf[best]) best = k;
      *(int64_t *)y = best;
      return 0;
    },
    [](void *) {}};

loom_dataset *blobs(int64_t n) {
  return loom_dataset_new(&blobs_kind, nullptr, n, LOOM_SHAPE(4), LOOM_F32, LOOM_SHAPE(), LOOM_I64);
}

// Model, optimiser, schedule, loader: everything a run needs, freed together.
struct TrainRun {
  loom_module *model = nullptr;
  loom_optimizer *opt = nullptr;
  loom_scheduler *sched = nullptr;
  loom_loader *loader = nullptr;
  loom_trainer *trainer = nullptr;
  TrainRun(uint64_t init_seed, int64_t n, const loom_trainer_opts &o, bool dropout = true, double lr = 1e-2) {
    loom_manual_seed(init_seed);
    model = LOOM_SEQUENTIAL(loom_nn_linear(4, 16, nullptr), loom_nn_relu(),
                            dropout ? loom_nn_dropout(0.2) : loom_nn_identity(), loom_nn_linear(16, 3, nullptr));
    loom_adam_opts ao = {};
    ao.lr = lr;
    opt = loom_adam_module(model, &ao);
    sched = loom_step_lr(opt, 4, 0.5);
    loom_dataset *ds = blobs(n);
    loom_loader_opts lo = {};
    lo.batch_size = 8;
    lo.shuffle = true;
    lo.seed = 7;
    loader = loom_loader_new(ds, &lo);
    loom_dataset_free(ds);
    trainer = loom_trainer_new(model, opt, sched, loader, &o);
  }
  ~TrainRun() {
    loom_trainer_free(trainer);
    loom_scheduler_free(sched);
    loom_optimizer_free(opt);
    loom_loader_free(loader);
    loom_module_free(model);
  }
  bool ok() const { return model && opt && sched && loader && trainer; }
  // Every parameter's bytes, in named_parameters order.
  std::vector<std::vector<char>> params() const {
    std::vector<std::vector<char>> out;
    loom_named_tensors *p = loom_module_named_parameters(model);
    for (int i = 0; i < p->n; i++) {
      std::vector<char> bytes((size_t)loom_numel(p->tensors[i]) * 4);
      loom_to_host(p->tensors[i], bytes.data(), bytes.size());
      out.push_back(bytes);
    }
    loom_named_tensors_free(p);
    return out;
  }
};

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("loom_train_" + std::to_string(getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

loom_trainer_opts quiet_opts() {
  loom_trainer_opts o = {};
  o.quiet = true;
  o.epochs = 100;
  return o;
}

std::string read_all(FILE *f) {
  std::string s;
  rewind(f);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  return s;
}

}  // namespace

TEST(Train, LearnsAndPrintsProgressLines) {
  FILE *log = tmpfile();
  ASSERT_NE(log, nullptr);
  loom_trainer_opts o = {};
  o.epochs = 4;
  o.log_every = 10;
  o.log = log;
  TrainRun r(1, 512, o, false, 2e-2);
  ASSERT_TRUE(r.ok()) << loom_last_error();
  loom_scheduler_free(r.sched);   // a constant lr for this one
  r.sched = nullptr;
  loom_trainer_free(r.trainer);
  r.trainer = loom_trainer_new(r.model, r.opt, nullptr, r.loader, &o);
  EXPECT_EQ(loom_trainer_fit(r.trainer), LOOM_TRAIN_DONE) << loom_last_error();
  loom_train_stats s = loom_trainer_stats(r.trainer);
  EXPECT_EQ(s.step, 4 * 64);
  EXPECT_EQ(s.epoch, 4);
  EXPECT_GT(s.accuracy, 0.85);
  EXPECT_GT(s.samples_per_s, 0);
  double loss = NAN, acc = NAN;
  ASSERT_EQ(loom_evaluate(r.model, r.loader, &loss, &acc), LOOM_OK) << loom_last_error();
  EXPECT_GT(acc, 0.85);
  EXPECT_LT(loss, 0.5);
  std::string text = read_all(log);
  fclose(log);
  // Not a terminal: plain lines, no carriage returns.
  EXPECT_EQ(text.find('\r'), std::string::npos);
  EXPECT_THAT(text, HasSubstr("epoch 1/4  step 10/64  loss "));
  EXPECT_THAT(text, HasSubstr("acc "));
  EXPECT_THAT(text, HasSubstr("lr 0.02"));
  EXPECT_THAT(text, HasSubstr("samples/s  ETA "));
  EXPECT_THAT(text, HasSubstr("epoch 4/4  step 64/64"));
  // Steps count within the epoch: every epoch logs at 10, 20, ... and its end.
  EXPECT_THAT(text, HasSubstr("epoch 2/4  step 10/64  loss "));
  EXPECT_THAT(text, HasSubstr("epoch 3/4  step 60/64  loss "));
  EXPECT_THAT(text, HasSubstr("epoch 2/4  step 64/64  loss "));
}

// k steps, checkpoint, fresh objects, load, the rest == never stopping (CPU, bit for bit).
class Resume : public ::testing::TestWithParam<int> {};

TEST_P(Resume, GivesBitIdenticalParameters) {
  const int total = 13, k = GetParam();   // 5 batches per epoch: k = 5 stops at an epoch's end
  std::vector<std::vector<char>> straight;
  {
    loom_trainer_opts o = quiet_opts();
    o.max_steps = total;
    TrainRun r(1, 40, o);
    ASSERT_TRUE(r.ok()) << loom_last_error();
    ASSERT_EQ(loom_trainer_fit(r.trainer), LOOM_TRAIN_DONE) << loom_last_error();
    straight = r.params();
  }
  TempDir dir;
  std::string path = (dir.path / "resume.safetensors").string();
  {
    loom_trainer_opts o = quiet_opts();
    o.max_steps = k;
    TrainRun r(1, 40, o);
    ASSERT_EQ(loom_trainer_fit(r.trainer), LOOM_TRAIN_DONE) << loom_last_error();
    ASSERT_EQ(loom_trainer_save(r.trainer, path.c_str()), LOOM_OK) << loom_last_error();
    EXPECT_NE(r.params(), straight);
    loom_manual_seed(12345);   // the RNG must come back from the checkpoint
  }
  loom_trainer_opts o = quiet_opts();
  o.max_steps = total;
  TrainRun r(99, 40, o);   // other initial weights
  ASSERT_EQ(loom_trainer_resume(r.trainer, path.c_str()), LOOM_OK) << loom_last_error();
  EXPECT_EQ(loom_trainer_stats(r.trainer).step, k);
  EXPECT_EQ(loom_trainer_stats(r.trainer).epoch, k / 5);
  ASSERT_EQ(loom_trainer_fit(r.trainer), LOOM_TRAIN_DONE) << loom_last_error();
  EXPECT_EQ(loom_trainer_stats(r.trainer).step, total);
  std::vector<std::vector<char>> resumed = r.params();
  ASSERT_EQ(resumed.size(), straight.size());
  for (size_t i = 0; i < straight.size(); i++)
    EXPECT_EQ(memcmp(resumed[i].data(), straight[i].data(), straight[i].size()), 0) << "parameter " << i;
}
INSTANTIATE_TEST_SUITE_P(Steps, Resume, ::testing::Values(3, 5, 7));

TEST(Train, NaNParameterIsNamedAndNothingIsUpdated) {
  TrainRun r(1, 40, quiet_opts());
  ASSERT_TRUE(r.ok());
  loom_tensor *w = loom_module_param(r.model, "3.weight");
  ASSERT_NE(w, nullptr);
  ScopeGuard scope;
  float nan = NAN;
  ASSERT_EQ(loom_copy_(loom_narrow(loom_narrow(w, 0, 1, 1), 1, 2, 1), loom_from_host(&nan, LOOM_SHAPE(1, 1), LOOM_F32,
                                                                                     loom_cpu())),
            LOOM_OK);
  auto before = r.params();
  EXPECT_EQ(loom_trainer_fit(r.trainer), LOOM_TRAIN_NONFINITE);
  EXPECT_THAT(loom_last_error(), HasSubstr("loss is NaN; parameter '3.weight' holds NaN"));
  EXPECT_THAT(loom_last_error(), HasSubstr("step 1 "));
  EXPECT_EQ(r.params(), before);
  EXPECT_EQ(loom_trainer_stats(r.trainer).step, 0);
}

// A finite loss whose gradient is NaN for one parameter: sqrt(0 * |b|) has d/db = 0 * inf.
loom_tensor *poisoned_loss(loom_module *m, loom_tensor *x, loom_tensor *y, loom_tensor **logits, void *) {
  loom_tensor *ce = loom_loss_cross_entropy(m, x, y, logits, nullptr);
  loom_tensor *b = loom_module_param(m, "0.bias");
  return loom_add(ce, loom_sum(loom_sqrt(loom_mul_scalar(loom_abs(b), 0.0)), nullptr, 0, false));
}

TEST(Train, NaNGradientIsNamed) {
  loom_trainer_opts o = quiet_opts();
  o.loss = poisoned_loss;
  TrainRun r(1, 40, o);
  ASSERT_TRUE(r.ok());
  auto before = r.params();
  EXPECT_EQ(loom_trainer_fit(r.trainer), LOOM_TRAIN_NONFINITE);
  EXPECT_THAT(loom_last_error(), HasSubstr("gradient of '0.bias' holds NaN"));
  EXPECT_EQ(r.params(), before);
}

// A learning rate far too high: the loss overflows; the message says what
// usually causes it, and the trainer leaves printing it to the caller (once).
TEST(Train, DivergingLossSaysWhyOnce) {
  loom_trainer_opts o = quiet_opts();
  o.quiet = false;
  FILE *log = tmpfile();
  o.log = log;
  o.log_every = -1;
  TrainRun r(1, 400, o, false, 1e30);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(loom_trainer_fit(r.trainer), LOOM_TRAIN_NONFINITE);
  EXPECT_THAT(loom_last_error(), HasSubstr("learning rate too high"));
  EXPECT_THAT(read_all(log), ::testing::Not(HasSubstr("training stopped")));
  fclose(log);
}

int signal_to_raise = SIGINT;
int raise_at_3(loom_trainer *, int64_t step, double, void *) {
  if (step == 3) raise(signal_to_raise);
  return 0;
}
void user_handler(int) {}

class Signal : public ::testing::TestWithParam<int> {};

TEST_P(Signal, SavesACheckpointAndRestoresHandlers) {
  signal_to_raise = GetParam();
  TempDir dir;
  struct sigaction mine = {}, after = {};
  mine.sa_handler = user_handler;
  sigemptyset(&mine.sa_mask);
  struct sigaction saved;
  ASSERT_EQ(sigaction(signal_to_raise, &mine, &saved), 0);
  FILE *log = tmpfile();
  ASSERT_NE(log, nullptr);
  loom_trainer_opts o = quiet_opts();
  o.quiet = false;
  o.log_every = -1;
  o.log = log;
  o.on_step = raise_at_3;
  std::string d = dir.path.string();
  o.checkpoint_dir = d.c_str();
  TrainRun r(1, 40, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(loom_trainer_fit(r.trainer), LOOM_TRAIN_INTERRUPTED) << loom_last_error();
  sigaction(signal_to_raise, nullptr, &after);
  sigaction(signal_to_raise, &saved, nullptr);
  EXPECT_EQ(after.sa_handler, user_handler);
  EXPECT_EQ(loom_trainer_stats(r.trainer).step, 3);
  std::string expect = (dir.path / "ckpt-00000003.safetensors").string();
  EXPECT_EQ(std::string(loom_trainer_last_checkpoint(r.trainer)), expect);
  loom_checkpoint_meta meta;
  ASSERT_GT(loom_checkpoint_check(expect.c_str(), &meta), 0) << loom_last_error();
  EXPECT_EQ(meta.step, 3);
  EXPECT_STREQ(meta.optimizer, "Adam");
  std::string text = read_all(log);
  fclose(log);
  EXPECT_THAT(text, HasSubstr(signal_to_raise == SIGTERM ? "SIGTERM received: stopping at step 3"
                                                         : "SIGINT received: stopping at step 3"));
}

INSTANTIATE_TEST_SUITE_P(Train, Signal, ::testing::Values(SIGINT, SIGTERM),
                         [](const ::testing::TestParamInfo<int> &i) {
                           return std::string(i.param == SIGTERM ? "SIGTERM" : "SIGINT");
                         });

TEST(Train, CheckpointsEveryNStepsKeepTheLastTwo) {
  TempDir dir;
  loom_trainer_opts o = quiet_opts();
  std::string d = (dir.path / "sub").string();   // created by loom_trainer_new
  o.checkpoint_dir = d.c_str();
  o.checkpoint_prefix = "run";
  o.checkpoint_every = 2;
  o.keep = 2;
  o.max_steps = 9;
  o.config = "lr=0.01 batch=8";
  TrainRun r(1, 40, o);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(loom_trainer_fit(r.trainer), LOOM_TRAIN_DONE) << loom_last_error();
  std::vector<std::string> names;
  for (auto &e : fs::directory_iterator(d)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"run-00000008.safetensors", "run-00000009.safetensors"}));
  loom_checkpoint_meta meta;
  ASSERT_GT(loom_checkpoint_check((d + "/run-00000009.safetensors").c_str(), &meta), 0);
  EXPECT_STREQ(meta.config, "lr=0.01 batch=8");
  EXPECT_EQ(meta.epoch, 1);
  // A new trainer picks the newest up.
  TrainRun again(5, 40, o);
  EXPECT_EQ(loom_trainer_resume_latest(again.trainer), 1) << loom_last_error();
  EXPECT_EQ(loom_trainer_stats(again.trainer).step, 9);
}

// A corrupt or empty newest checkpoint is refused, naming the newest valid one;
// resume_skip_corrupt resumes from that one.
TEST(Train, CorruptNewestCheckpointNamesTheValidOne) {
  TempDir dir;
  loom_trainer_opts o = quiet_opts();
  std::string d = dir.path.string();
  o.checkpoint_dir = d.c_str();
  o.checkpoint_every = 2;
  o.keep = 5;
  o.max_steps = 4;
  {
    TrainRun r(1, 40, o);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(loom_trainer_fit(r.trainer), LOOM_TRAIN_DONE) << loom_last_error();
  }
  std::string newest = d + "/ckpt-00000004.safetensors", valid = d + "/ckpt-00000002.safetensors";
  for (bool empty : {true, false}) {
    if (empty) {
      FILE *f = fopen(newest.c_str(), "wb");
      fclose(f);
    } else {
      fs::resize_file(newest, 100);  // truncated
    }
    TrainRun again(5, 40, o);
    ASSERT_TRUE(again.ok());
    EXPECT_LT(loom_trainer_resume_latest(again.trainer), 0);
    EXPECT_THAT(loom_last_error(), HasSubstr("the newest checkpoint " + newest + " cannot be loaded"));
    EXPECT_THAT(loom_last_error(), HasSubstr("the newest valid one is " + valid));
    EXPECT_THAT(loom_last_error(), HasSubstr("--resume-skip-corrupt"));
    EXPECT_EQ(loom_trainer_stats(again.trainer).step, 0);
  }
  loom_trainer_opts skip = o;
  skip.resume_skip_corrupt = true;
  TrainRun skipping(5, 40, skip);
  ASSERT_TRUE(skipping.ok());
  EXPECT_EQ(loom_trainer_resume_latest(skipping.trainer), 1) << loom_last_error();
  EXPECT_EQ(loom_trainer_stats(skipping.trainer).step, 2);
  EXPECT_STREQ(loom_trainer_last_checkpoint(skipping.trainer), valid.c_str());
}

// Resuming a checkpoint of a run with another shape of work or other flags is
// refused, naming each difference; resume_any_config carries on.
TEST(Train, ResumeWithOtherSettingsIsRefused) {
  TempDir dir;
  loom_trainer_opts o = quiet_opts();
  std::string d = dir.path.string();
  o.checkpoint_dir = d.c_str();
  o.max_steps = 2;
  o.config = "prog --lr 0.01 --momentum 0.9 --nesterov";
  {
    TrainRun r(1, 40, o);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(loom_trainer_fit(r.trainer), LOOM_TRAIN_DONE) << loom_last_error();
  }
  loom_trainer_opts other = o;
  other.epochs = 7;
  other.config = "prog --lr 0.1 --momentum 0.9 --seed 3";
  TrainRun again(1, 24, other);
  ASSERT_TRUE(again.ok());
  EXPECT_LT(loom_trainer_resume_latest(again.trainer), 0);
  for (const char *part : {"written by a run with other settings", "dataset length 40 (now 24)", "epochs 100 (now 7)",
                           "--lr 0.01 (now 0.1)", "--nesterov on (now (unset))", "--seed (unset) (now 3)",
                           "--resume-any-config"})
    EXPECT_THAT(loom_last_error(), HasSubstr(part));
  EXPECT_THAT(loom_last_error(), ::testing::Not(HasSubstr("--momentum")));
  EXPECT_EQ(loom_trainer_stats(again.trainer).step, 0);
  other.resume_any_config = true;
  TrainRun anyway(1, 24, other);
  ASSERT_TRUE(anyway.ok());
  EXPECT_EQ(loom_trainer_resume_latest(anyway.trainer), 1) << loom_last_error();
  EXPECT_EQ(loom_trainer_stats(anyway.trainer).step, 2);
  // the shape of work is in the checkpoint's metadata
  loom_checkpoint_meta meta;
  ASSERT_GT(loom_checkpoint_check((d + "/ckpt-00000002.safetensors").c_str(), &meta), 0);
  EXPECT_EQ(meta.batch_size, 8);
  EXPECT_EQ(meta.dataset_len, 40);
  EXPECT_EQ(meta.world_size, 1);
  EXPECT_EQ(meta.epochs, 100);
}

// The checkpoint folder is made ready before training: parents created, an
// unusable one refused at once, stale temporaries of killed saves removed.
TEST(Train, CheckpointFolderIsCheckedBeforeTraining) {
  TempDir dir;
  loom_trainer_opts o = quiet_opts();
  std::string nested = (dir.path / "a" / "b" / "c").string();
  o.checkpoint_dir = nested.c_str();
  {
    TrainRun r(1, 16, o);
    ASSERT_TRUE(r.ok()) << loom_last_error();
    EXPECT_TRUE(fs::is_directory(nested));
  }
  std::string file = (dir.path / "plain_file").string();
  FILE *f = fopen(file.c_str(), "wb");
  fclose(f);
  std::string under_file = file + "/ckpt";
  o.checkpoint_dir = under_file.c_str();
  {
    TrainRun r(1, 16, o);
    EXPECT_EQ(r.trainer, nullptr);
    EXPECT_THAT(loom_last_error(), HasSubstr("cannot create the checkpoint folder '" + under_file + "'"));
  }
  // a temporary of a process that is gone goes; one of a live process (this one) stays
  std::string stale = nested + "/ckpt-00000003.safetensors.tmp.999999999", live = nested +
                      "/ckpt-00000004.safetensors.tmp." + std::to_string(getpid()), other = nested + "/notes.tmp.1";
  for (const std::string &p : {stale, live, other}) {
    FILE *g = fopen(p.c_str(), "wb");
    fputs("x", g);
    fclose(g);
  }
  o.checkpoint_dir = nested.c_str();
  o.quiet = false;
  FILE *log = tmpfile();
  o.log = log;
  {
    TrainRun r(1, 16, o);
    ASSERT_TRUE(r.ok()) << loom_last_error();
  }
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(other));
  EXPECT_THAT(read_all(log), HasSubstr("removed 1 stale temporary checkpoint file in " + nested));
  fclose(log);
}

int stop_at_2(loom_trainer *, int64_t step, double loss, void *) { return step == 2 && std::isfinite(loss); }

TEST(Train, StepCallbackStops) {
  loom_trainer_opts o = quiet_opts();
  o.on_step = stop_at_2;
  TrainRun r(1, 40, o);
  EXPECT_EQ(loom_trainer_fit(r.trainer), LOOM_TRAIN_STOPPED);
  EXPECT_EQ(loom_trainer_stats(r.trainer).step, 2);
}

TEST(Train, BadArguments) {
  EXPECT_EQ(loom_trainer_new(nullptr, nullptr, nullptr, nullptr, nullptr), nullptr);
  EXPECT_THAT(loom_last_error(), HasSubstr("NULL model"));
  EXPECT_EQ(loom_trainer_fit(nullptr), LOOM_TRAIN_FAILED);
  EXPECT_NE(loom_evaluate(nullptr, nullptr, nullptr, nullptr), LOOM_OK);
  EXPECT_STREQ(loom_train_status_name(LOOM_TRAIN_INTERRUPTED), "interrupted");
  TrainRun r(1, 40, quiet_opts());
  EXPECT_NE(loom_trainer_save(r.trainer, nullptr), LOOM_OK);   // no folder set
  EXPECT_THAT(loom_last_error(), HasSubstr("no checkpoint_dir"));
  EXPECT_NE(loom_trainer_resume(r.trainer, "/nonexistent/ckpt.safetensors"), LOOM_OK);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_IO);
}

TEST(Train, LeavesNoTensorsBehind) {
  TempDir dir;
  std::string d = dir.path.string();
  int64_t live = loom_live_tensors();
  {
    loom_trainer_opts o = quiet_opts();
    o.checkpoint_dir = d.c_str();
    o.checkpoint_every = 3;
    o.max_steps = 7;
    TrainRun r(1, 40, o);
    ASSERT_EQ(loom_trainer_fit(r.trainer), LOOM_TRAIN_DONE) << loom_last_error();
    double loss, acc;
    ASSERT_EQ(loom_evaluate(r.model, r.loader, &loss, &acc), LOOM_OK);
    TrainRun again(2, 40, o);
    ASSERT_EQ(loom_trainer_resume_latest(again.trainer), 1) << loom_last_error();
  }
  EXPECT_EQ(loom_live_tensors(), live);
}
