// Checkpoint files (loom_checkpoint_* in loom/io.h): a full round trip, a
// checkpoint of another model, corrupt and truncated files, failed saves that
// leave the old file alone, rotation and the newest file.
#include <gmock/gmock.h>
#include <loom/loom.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <unistd.h>

#include "loom_test.h"

using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("loom_ckpt_" + std::to_string(getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const char *name) const { return (path / name).string(); }
};

std::string slurp(const std::string &p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void spit(const std::string &p, const std::string &bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << bytes;
}

// A small model with its optimiser, schedule, scaler and loader.
struct Parts {
  loom_module *model;
  loom_optimizer *opt;
  loom_scheduler *sched;
  loom_grad_scaler *scaler;
  loom_loader *loader;
  explicit Parts(uint64_t seed, int64_t hidden = 6) {
    loom_manual_seed(seed);
    model = LOOM_SEQUENTIAL(loom_nn_linear(3, hidden, nullptr), loom_nn_relu(), loom_nn_linear(hidden, 2, nullptr));
    opt = loom_adam_module(model, nullptr);
    sched = loom_step_lr(opt, 2, 0.5);
    loom_grad_scaler_opts so = {};
    so.init_scale = 256;
    so.growth_interval = 2;
    scaler = loom_grad_scaler_new(&so);
    loom_dataset *ds = loom_dataset_synthetic(20, LOOM_SHAPE(3), 2, 3);
    loom_loader_opts lo = {};
    lo.batch_size = 4;
    lo.shuffle = true;
    lo.seed = 5;   // the loader's seed is configuration, not checkpoint state
    loader = loom_loader_new(ds, &lo);
    loom_dataset_free(ds);
  }
  ~Parts() {
    loom_scheduler_free(sched);
    loom_optimizer_free(opt);
    loom_grad_scaler_free(scaler);
    loom_loader_free(loader);
    loom_module_free(model);
  }
  // n training steps with loss scaling, the schedule and the loader moving.
  void train(int n) {
    for (int i = 0; i < n; i++) {
      ScopeGuard scope;
      loom_tensor *x, *y;
      ASSERT_TRUE(loom_loader_next(loader, &x, &y)) << loom_last_error();
      loom_tensor *loss = loom_cross_entropy(loom_forward(model, x), y, nullptr);
      ASSERT_EQ(loom_backward(loom_grad_scaler_scale(scaler, loss), nullptr, false), LOOM_OK) << loom_last_error();
      ASSERT_EQ(loom_grad_scaler_step(scaler, opt, nullptr), LOOM_OK);
      ASSERT_EQ(loom_grad_scaler_update(scaler), LOOM_OK);
      loom_optimizer_zero_grad(opt);
      ASSERT_EQ(loom_scheduler_step(sched), LOOM_OK);
    }
  }
};

// Every tensor of a state map as doubles, by name.
std::map<std::string, std::vector<double>> values(loom_tensor_map *m) {
  std::map<std::string, std::vector<double>> out;
  for (int i = 0; i < loom_map_size(m); i++) out[loom_map_name(m, i)] = V(loom_map_get(m, loom_map_name(m, i)));
  loom_map_free(m);
  return out;
}
std::map<std::string, std::vector<double>> model_values(const loom_module *m) { return values(loom_module_state_dict(m)); }
std::map<std::string, std::vector<double>> optim_values(const loom_optimizer *o) {
  ScopeGuard scope;
  loom_tensor_map *m = loom_map_new();
  EXPECT_EQ(loom_optimizer_state_dict(o, m, nullptr), LOOM_OK);
  return values(m);
}

}  // namespace

TEST(Checkpoint, RoundTripRestoresEveryPart) {
  TempDir dir;
  std::string path = dir.file("a.safetensors");
  Parts a(1);
  a.train(3);
  uint64_t seed, offset;
  loom_manual_seed(42);
  { ScopeGuard s; loom_rand(LOOM_SHAPE(5), LOOM_F32, loom_cpu()); }   // move the counter
  loom_rng_get_state(loom_cpu(), &seed, &offset);
  loom_checkpoint_meta meta = {};
  meta.step = 3;
  meta.epoch = 0;
  snprintf(meta.config, sizeof meta.config, "hidden=6");
  ASSERT_EQ(loom_checkpoint_save(path.c_str(), a.model, a.opt, a.sched, a.scaler, a.loader, &meta), LOOM_OK)
      << loom_last_error();
  ASSERT_FALSE(fs::exists(path + ".tmp." + std::to_string(getpid())));

  Parts b(2);
  loom_manual_seed(7);
  loom_checkpoint_meta got;
  ASSERT_EQ(loom_checkpoint_load(path.c_str(), b.model, b.opt, b.sched, b.scaler, b.loader, &got), LOOM_OK)
      << loom_last_error();
  EXPECT_EQ(got.step, 3);
  EXPECT_EQ(got.epoch, 0);
  EXPECT_EQ(got.version, LOOM_CHECKPOINT_VERSION);
  EXPECT_STREQ(got.config, "hidden=6");
  EXPECT_STREQ(got.model_type, "Sequential");
  EXPECT_STREQ(got.optimizer, "Adam");
  EXPECT_EQ(model_values(b.model), model_values(a.model));
  auto oa = optim_values(a.opt), ob = optim_values(b.opt);
  EXPECT_EQ(ob, oa);
  EXPECT_TRUE(oa.count("state.0.exp_avg_sq"));
  EXPECT_EQ(loom_scheduler_last_epoch(b.sched), 3);
  EXPECT_EQ(loom_optimizer_get_lr(b.opt, 0), loom_optimizer_get_lr(a.opt, 0));
  EXPECT_EQ(loom_grad_scaler_get_scale(b.scaler), loom_grad_scaler_get_scale(a.scaler));
  EXPECT_NE(loom_grad_scaler_get_scale(a.scaler), 256.0);   // it grew: the state is not the default
  uint64_t seed2, offset2;
  loom_rng_get_state(loom_cpu(), &seed2, &offset2);
  EXPECT_EQ(seed2, seed);
  EXPECT_EQ(offset2, offset);
  EXPECT_EQ(loom_loader_position(b.loader).epoch, 0);
  EXPECT_EQ(loom_loader_position(b.loader).batch, 3);
  // The next batch is the one a would have given.
  ScopeGuard scope;
  loom_tensor *xa, *ya, *xb, *yb;
  ASSERT_TRUE(loom_loader_next(a.loader, &xa, &ya));
  ASSERT_TRUE(loom_loader_next(b.loader, &xb, &yb));
  EXPECT_EQ(V(xb), V(xa));
  // Other safetensors readers see plain tensors and metadata.
  loom_tensor_map *raw = loom_safetensors_load(path.c_str(), loom_cpu());
  ASSERT_NE(raw, nullptr);
  EXPECT_NE(loom_map_get(raw, "model.0.weight"), nullptr);
  EXPECT_NE(loom_map_get(raw, "optim.state.0.exp_avg"), nullptr);
  EXPECT_NE(loom_map_get(raw, "sched.last_epoch"), nullptr);
  EXPECT_NE(loom_map_get(raw, "scaler.scale"), nullptr);
  EXPECT_NE(loom_map_get(raw, "rng.cpu"), nullptr);
  EXPECT_EQ(V(loom_map_get(raw, "data.position")), (std::vector<double>{0, 3}));
  EXPECT_STREQ(loom_map_get_meta(raw, "format"), "loom-checkpoint");
  EXPECT_STREQ(loom_map_get_meta(raw, "step"), "3");
  loom_map_free(raw);
}

TEST(Checkpoint, ModelOnlyLoadAndOptionalParts) {
  TempDir dir;
  std::string path = dir.file("m.safetensors");
  Parts a(1);
  ASSERT_EQ(loom_checkpoint_save(path.c_str(), a.model, nullptr, nullptr, nullptr, nullptr, nullptr), LOOM_OK);
  Parts b(2);
  ASSERT_EQ(loom_checkpoint_load(path.c_str(), b.model, nullptr, nullptr, nullptr, nullptr, nullptr), LOOM_OK);
  EXPECT_EQ(model_values(b.model), model_values(a.model));
  // Asking for a part the file does not hold is an error, and nothing changes.
  Parts c(3);
  auto before = model_values(c.model);
  EXPECT_EQ(loom_checkpoint_load(path.c_str(), c.model, c.opt, nullptr, nullptr, nullptr, nullptr), LOOM_ERR_INVALID);
  EXPECT_THAT(loom_last_error(), HasSubstr("holds no optimiser state, loading into Adam"));
  EXPECT_EQ(loom_checkpoint_load(path.c_str(), c.model, nullptr, nullptr, nullptr, c.loader, nullptr), LOOM_ERR_INVALID);
  EXPECT_THAT(loom_last_error(), HasSubstr("no loader position"));
  EXPECT_EQ(model_values(c.model), before);
}

// loom_module_load recognises a training checkpoint and loads its model part
// (it listed every model.* key as unexpected before); a corrupt one is refused.
TEST(Checkpoint, ModuleLoadTakesTheModelPartOfACheckpoint) {
  TempDir dir;
  std::string path = dir.file("a.safetensors");
  Parts a(1);
  a.train(2);
  ASSERT_EQ(loom_checkpoint_save(path.c_str(), a.model, a.opt, a.sched, a.scaler, a.loader, nullptr), LOOM_OK);
  Parts b(2);
  ASSERT_NE(model_values(b.model), model_values(a.model));
  ASSERT_EQ(loom_module_load(b.model, path.c_str(), true), LOOM_OK) << loom_last_error();
  EXPECT_EQ(model_values(b.model), model_values(a.model));
  std::string bytes = slurp(path);
  bytes[bytes.size() - 3] ^= 0x40;
  spit(path, bytes);
  Parts c(3);
  auto before = model_values(c.model);
  EXPECT_EQ(loom_module_load(c.model, path.c_str(), true), LOOM_ERR_IO);
  EXPECT_THAT(loom_last_error(), HasSubstr("checksum mismatch"));
  EXPECT_EQ(model_values(c.model), before);
}

TEST(Checkpoint, AnotherModelIsRefusedByKeyAndShape) {
  TempDir dir;
  std::string path = dir.file("a.safetensors");
  Parts a(1);
  ASSERT_EQ(loom_checkpoint_save(path.c_str(), a.model, a.opt, a.sched, a.scaler, a.loader, nullptr), LOOM_OK);
  Parts wide(2, 8);   // same keys, other shapes
  auto before = model_values(wide.model);
  EXPECT_EQ(loom_checkpoint_load(path.c_str(), wide.model, wide.opt, wide.sched, wide.scaler, wide.loader, nullptr),
            LOOM_ERR_INVALID);
  EXPECT_THAT(loom_last_error(), HasSubstr("does not fit the model (saved Sequential, loading into Sequential); "
                                           "nothing loaded: mismatched shapes: "));
  EXPECT_THAT(loom_last_error(), HasSubstr("0.weight (checkpoint [6, 3], model [8, 3])"));
  EXPECT_EQ(model_values(wide.model), before);
  EXPECT_EQ(loom_scheduler_last_epoch(wide.sched), 0);

  loom_module *other = LOOM_SEQUENTIAL(loom_nn_linear(3, 6, nullptr), loom_nn_linear(6, 2, nullptr));
  EXPECT_EQ(loom_checkpoint_load(path.c_str(), other, nullptr, nullptr, nullptr, nullptr, nullptr), LOOM_ERR_INVALID);
  EXPECT_THAT(loom_last_error(), HasSubstr("nothing loaded: missing keys: 1.weight, 1.bias"));
  EXPECT_THAT(loom_last_error(), HasSubstr("; unexpected keys: 2.bias, 2.weight"));
  loom_module_free(other);
  // The same model in another dtype: no silent cast, the tensors named.
  Parts f64(2);
  ASSERT_EQ(loom_module_to_dtype(f64.model, LOOM_F64), LOOM_OK);
  auto f64_before = model_values(f64.model);
  EXPECT_EQ(loom_checkpoint_load(path.c_str(), f64.model, nullptr, nullptr, nullptr, nullptr, nullptr),
            LOOM_ERR_INVALID);
  EXPECT_THAT(loom_last_error(), HasSubstr("0.weight (checkpoint f32, model f64)"));
  EXPECT_THAT(loom_last_error(), HasSubstr("loom_module_to_dtype"));
  EXPECT_EQ(model_values(f64.model), f64_before);
  // Another optimiser kind.
  loom_optimizer *sgd = loom_sgd_module(a.model, nullptr);
  EXPECT_EQ(loom_checkpoint_load(path.c_str(), a.model, sgd, nullptr, nullptr, nullptr, nullptr), LOOM_ERR_INVALID);
  EXPECT_THAT(loom_last_error(), HasSubstr("holds Adam optimiser state, loading into SGD"));
  loom_optimizer_free(sgd);
}

TEST(Checkpoint, CorruptAndTruncatedFilesAreIOErrors) {
  TempDir dir;
  std::string path = dir.file("a.safetensors"), bad = dir.file("bad.safetensors");
  Parts a(1);
  a.train(2);
  ASSERT_EQ(loom_checkpoint_save(path.c_str(), a.model, a.opt, a.sched, a.scaler, a.loader, nullptr), LOOM_OK);
  std::string bytes = slurp(path);
  ASSERT_GT(bytes.size(), 200u);
  Parts b(2);
  auto before = model_values(b.model);
  auto refused = [&](const std::string &content, const char *why) {
    spit(bad, content);
    EXPECT_EQ(loom_checkpoint_load(bad.c_str(), b.model, b.opt, b.sched, b.scaler, b.loader, nullptr), LOOM_ERR_IO)
        << why << ": " << loom_last_error();
    EXPECT_EQ(loom_checkpoint_check(bad.c_str(), nullptr), -(int)LOOM_ERR_IO) << why;
    EXPECT_EQ(model_values(b.model), before) << why;
  };
  refused(bytes.substr(0, bytes.size() - 5), "truncated data");
  refused(bytes.substr(0, 100), "truncated header");
  refused("", "empty");
  std::string flipped = bytes;
  flipped[flipped.size() - 3] ^= 0x40;   // one bit of a tensor
  refused(flipped, "flipped data bit");
  EXPECT_THAT(loom_last_error(), HasSubstr("checksum mismatch"));
  std::string header = bytes;
  size_t at = header.find("\"step\":\"0\"");
  ASSERT_NE(at, std::string::npos);
  header[at + 8] = '9';   // metadata changed, the JSON still valid
  refused(header, "edited metadata");
  // A dtype of the same size edited in the tensor table (F32 -> I32): the
  // bytes are untouched, the checksum covers the table too.
  std::string table = bytes;
  at = table.find("\"model.0.weight\":{\"dtype\":\"F32\"");
  ASSERT_NE(at, std::string::npos);
  table[at + 27] = 'I';
  refused(table, "edited dtype");
  EXPECT_THAT(loom_last_error(), HasSubstr("checksum mismatch"));
  // A plain safetensors file that is no checkpoint.
  ASSERT_EQ(loom_module_save(a.model, bad.c_str()), LOOM_OK);
  EXPECT_EQ(loom_checkpoint_load(bad.c_str(), b.model, nullptr, nullptr, nullptr, nullptr, nullptr), LOOM_ERR_IO);
  EXPECT_THAT(loom_last_error(), HasSubstr("not a Loom checkpoint"));
  EXPECT_EQ(loom_checkpoint_load(dir.file("none").c_str(), b.model, nullptr, nullptr, nullptr, nullptr, nullptr),
            LOOM_ERR_IO);
}

TEST(Checkpoint, FailedSaveLeavesTheOldFile) {
  TempDir dir;
  std::string path = dir.file("a.safetensors");
  Parts a(1);
  ASSERT_EQ(loom_checkpoint_save(path.c_str(), a.model, a.opt, nullptr, nullptr, nullptr, nullptr), LOOM_OK);
  std::string bytes = slurp(path);
  a.train(1);
  EXPECT_EQ(loom_checkpoint_save(path.c_str(), nullptr, a.opt, nullptr, nullptr, nullptr, nullptr), LOOM_ERR_INVALID);
  EXPECT_THAT(loom_last_error(), HasSubstr("NULL model"));
  EXPECT_EQ(slurp(path), bytes);
  // The temporary file cannot be created (a folder is in its way).
  fs::path tmp = path + ".tmp." + std::to_string(getpid());
  fs::create_directory(tmp);
  EXPECT_EQ(loom_checkpoint_save(path.c_str(), a.model, a.opt, nullptr, nullptr, nullptr, nullptr), LOOM_ERR_IO);
  EXPECT_THAT(loom_last_error(), HasSubstr("cannot create"));
  EXPECT_EQ(slurp(path), bytes);
  fs::remove(tmp);
  // A folder that does not exist.
  EXPECT_EQ(loom_checkpoint_save(dir.file("no/such/x.safetensors").c_str(), a.model, nullptr, nullptr, nullptr,
                                 nullptr, nullptr),
            LOOM_ERR_IO);
  EXPECT_EQ(slurp(path), bytes);
}

TEST(Checkpoint, RotateKeepsTheNewestAndLatestFindsIt) {
  TempDir dir;
  std::string d = dir.path.string();
  char path[4096];
  EXPECT_EQ(loom_checkpoint_latest(d.c_str(), "ckpt", path, sizeof path), 0);
  EXPECT_EQ(loom_checkpoint_latest((d + "/missing").c_str(), "ckpt", path, sizeof path), 0);
  Parts a(1);
  for (int64_t step : {5, 100, 20, 7}) {
    ASSERT_EQ(loom_checkpoint_path(d.c_str(), "ckpt", step, path, sizeof path), LOOM_OK);
    loom_checkpoint_meta meta = {};
    meta.step = step;
    ASSERT_EQ(loom_checkpoint_save(path, a.model, nullptr, nullptr, nullptr, nullptr, &meta), LOOM_OK);
  }
  spit(dir.file("other-00000001.safetensors"), "x");
  spit(dir.file("ckpt-notes.txt"), "x");
  EXPECT_EQ(loom_checkpoint_rotate(d.c_str(), "ckpt", 2), 2);
  EXPECT_TRUE(fs::exists(dir.file("ckpt-00000100.safetensors")));
  EXPECT_TRUE(fs::exists(dir.file("ckpt-00000020.safetensors")));
  EXPECT_FALSE(fs::exists(dir.file("ckpt-00000007.safetensors")));
  EXPECT_FALSE(fs::exists(dir.file("ckpt-00000005.safetensors")));
  EXPECT_TRUE(fs::exists(dir.file("other-00000001.safetensors")));
  EXPECT_TRUE(fs::exists(dir.file("ckpt-notes.txt")));
  EXPECT_EQ(loom_checkpoint_latest(d.c_str(), "ckpt", path, sizeof path), 1);
  EXPECT_EQ(std::string(path), dir.file("ckpt-00000100.safetensors"));
  loom_checkpoint_meta meta;
  EXPECT_GT(loom_checkpoint_check(path, &meta), 0);
  EXPECT_EQ(meta.step, 100);
  EXPECT_EQ(loom_checkpoint_rotate(d.c_str(), "ckpt", 0), 2);
  EXPECT_EQ(loom_checkpoint_latest(d.c_str(), "ckpt", path, sizeof path), 0);
  EXPECT_LT(loom_checkpoint_rotate(nullptr, "ckpt", 1), 0);
  char tiny[8];
  EXPECT_EQ(loom_checkpoint_path(d.c_str(), "ckpt", 1, tiny, sizeof tiny), LOOM_ERR_INVALID);
}
