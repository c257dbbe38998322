// The loader: order, shuffling, sharding, drop_last, transforms, prefetch,
// seek/resume, errors from the worker thread, freeing mid-epoch, CUDA.
#include <gmock/gmock.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "data_test_util.h"
#include "loom_test.h"

using ::testing::HasSubstr;

namespace {

// Sample i: [C, H, W] with x[c, h, w] = i * 1000 + c * 100 + h * 10 + w; label i.
struct Ramp { int c, h, w; int64_t fail_at; };
const loom_dataset_kind ramp_kind = {
    "Ramp",
    [](void *st, int64_t i, void *x, void *y) -> int {
      const Ramp *r = (const Ramp *)st;
      if (i == r->fail_at) {
        loom_tensor *bad = loom_reshape(nullptr, LOOM_SHAPE(1));   // leaves an error message on this thread
        (void)bad;
        return (int)LOOM_ERR_IO;
      }
      float *xf = (float *)x;
      for (int c = 0; c < r->c; c++)
        for (int h = 0; h < r->h; h++)
          for (int w = 0; w < r->w; w++) xf[(c * r->h + h) * r->w + w] = (float)(i * 1000 + c * 100 + h * 10 + w);
      *(int64_t *)y = i;
      return 0;
    },
    [](void *st) { delete (Ramp *)st; }};

loom_dataset *ramp(int64_t n, int c = 1, int h = 1, int w = 1, int64_t fail_at = -1) {
  return loom_dataset_new(&ramp_kind, new Ramp{c, h, w, fail_at}, n, LOOM_SHAPE(c, h, w), LOOM_F32, LOOM_SHAPE(),
                          LOOM_I64);
}

struct Batch { std::vector<double> x, y; };

// All batches of one epoch (the loader's current one), as host values.
std::vector<Batch> epoch_batches(loom_loader *l, int64_t max = -1) {
  std::vector<Batch> out;
  ScopeGuard scope;
  loom_tensor *x, *y;
  while ((max < 0 || (int64_t)out.size() < max) && loom_loader_next(l, &x, &y)) out.push_back({V(x), V(y)});
  return out;
}

std::vector<int64_t> labels_of(const std::vector<Batch> &bs) {
  std::vector<int64_t> v;
  for (const Batch &b : bs)
    for (double d : b.y) v.push_back((int64_t)d);
  return v;
}

loom_loader_opts opts(int64_t batch, bool shuffle = false, uint64_t seed = 0) {
  loom_loader_opts o = {};
  o.batch_size = batch;
  o.shuffle = shuffle;
  o.seed = seed;
  return o;
}

}  // namespace

TEST(DataLoader, OrderCountsAndDropLast) {
  int64_t live = loom_live_tensors();
  loom_dataset *ds = ramp(10);
  for (bool drop : {false, true}) {
    loom_loader_opts o = opts(3);
    o.drop_last = drop;
    loom_loader *l = loom_loader_new(ds, &o);
    ASSERT_NE(l, nullptr) << loom_last_error();
    EXPECT_EQ(loom_loader_num_samples(l), 10);
    EXPECT_EQ(loom_loader_num_batches(l), drop ? 3 : 4);
    std::vector<Batch> bs = epoch_batches(l);
    EXPECT_EQ(loom_last_status(), LOOM_OK) << "the end of an epoch is not an error";
    ASSERT_EQ(bs.size(), drop ? 3u : 4u);
    EXPECT_EQ(bs[0].x, (std::vector<double>{0, 1000, 2000}));
    if (!drop) EXPECT_EQ(bs[3].y, (std::vector<double>{9}));
    std::vector<int64_t> want(drop ? 9 : 10);
    std::iota(want.begin(), want.end(), 0);
    EXPECT_EQ(labels_of(bs), want);
    EXPECT_TRUE(epoch_batches(l).empty()) << "past the end until the next epoch starts";
    ASSERT_EQ(loom_loader_start_epoch(l, 1), 0);
    EXPECT_EQ(labels_of(epoch_batches(l)), want);
    loom_loader_free(l);
  }
  loom_dataset_free(ds);
  EXPECT_EQ(loom_live_tensors(), live);
}

TEST(DataLoader, ShuffleIsAReproduciblePermutationPerEpoch) {
  loom_dataset *ds = ramp(37);
  loom_loader_opts o = opts(5, true, 1234);
  loom_loader *a = loom_loader_new(ds, &o), *b = loom_loader_new(ds, &o);
  o.seed = 99;
  loom_loader *c = loom_loader_new(ds, &o);
  ASSERT_TRUE(a && b && c);
  std::vector<int64_t> a0 = labels_of(epoch_batches(a)), b0 = labels_of(epoch_batches(b)), c0 = labels_of(epoch_batches(c));
  EXPECT_EQ(a0, b0);
  EXPECT_NE(a0, c0);
  std::vector<int64_t> sorted = a0, want(37);
  std::sort(sorted.begin(), sorted.end());
  std::iota(want.begin(), want.end(), 0);
  EXPECT_EQ(sorted, want);
  std::vector<int64_t> identity = want;
  EXPECT_NE(a0, identity);
  loom_loader_start_epoch(a, 1);
  std::vector<int64_t> a1 = labels_of(epoch_batches(a));
  EXPECT_NE(a1, a0) << "a new permutation every epoch";
  std::sort(a1.begin(), a1.end());
  EXPECT_EQ(a1, want);
  loom_loader_start_epoch(a, 0);
  EXPECT_EQ(labels_of(epoch_batches(a)), a0) << "an epoch's order depends on (seed, epoch) only";
  loom_loader_free(a), loom_loader_free(b), loom_loader_free(c);
  loom_dataset_free(ds);
}

TEST(DataLoader, ShardingCoversEveryIndexWithEqualCounts) {
  loom_dataset *ds = ramp(10);
  for (bool shuffle : {false, true}) {
    const int world = 3;
    std::vector<std::vector<int64_t>> per_rank;
    for (int r = 0; r < world; r++) {
      loom_loader_opts o = opts(2, shuffle, 7);
      o.rank = r, o.world_size = world;
      loom_loader *l = loom_loader_new(ds, &o);
      ASSERT_NE(l, nullptr) << loom_last_error();
      EXPECT_EQ(loom_loader_num_samples(l), 4);   // ceil(10 / 3)
      EXPECT_EQ(loom_loader_num_batches(l), 2);
      per_rank.push_back(labels_of(epoch_batches(l)));
      loom_loader_free(l);
    }
    std::set<int64_t> all;
    for (auto &v : per_rank) {
      EXPECT_EQ(v.size(), 4u);
      all.insert(v.begin(), v.end());
    }
    EXPECT_EQ(all.size(), 10u) << "the union over ranks covers every index";
    // Interleaving the ranks gives one order of 12: a permutation of 10 padded
    // by wrapping (PyTorch DistributedSampler), the same on every rank.
    std::vector<int64_t> merged;
    for (int k = 0; k < 4; k++)
      for (int r = 0; r < world; r++) merged.push_back(per_rank[r][k]);
    EXPECT_EQ(merged[10], merged[0]);
    EXPECT_EQ(merged[11], merged[1]);
    std::set<int64_t> first10(merged.begin(), merged.begin() + 10);
    EXPECT_EQ(first10.size(), 10u);
    if (!shuffle) EXPECT_EQ(per_rank[1], (std::vector<int64_t>{1, 4, 7, 0}));
  }
  loom_dataset_free(ds);
}

TEST(DataLoader, BadOptionsAreClearErrors) {
  loom_dataset *ds = ramp(10, 3, 4, 4);
  auto fails = [&](loom_loader_opts o, const char *text) {
    loom_clear_error();
    loom_loader *l = loom_loader_new(ds, &o);
    EXPECT_EQ(l, nullptr) << text;
    loom_loader_free(l);
    EXPECT_THAT(loom_last_error(), HasSubstr(text));
  };
  fails(opts(0), "batch_size must be >= 1");
  loom_loader_opts o = opts(2);
  o.rank = 2, o.world_size = 2;
  fails(o, "rank 2, world_size 2");
  o = opts(2), o.prefetch = -1;
  fails(o, "prefetch");
  o = opts(2), o.workers = -2;
  fails(o, "workers");
  o = opts(2), o.transform.crop_size = 20, o.transform.crop_padding = 4;
  fails(o, "crop_size 20 is larger");
  float mean[2] = {0, 0}, sd[2] = {1, 1};
  o = opts(2), o.transform.norm_channels = 2, o.transform.mean = mean, o.transform.std = sd;
  fails(o, "2 channels");
  o = opts(2), o.device = loom_cuda(63);  // no machine has it
  fails(o, "loader: target device cuda:63 is not available: ");
  std::string msg = loom_last_error();  // said once, with the reason after it (it was doubled and cut)
  EXPECT_EQ(msg.find("loader:", 1), std::string::npos) << msg;
  EXPECT_GT(msg.size(), std::string("loader: target device cuda:63 is not available: ").size()) << msg;
  loom_dataset *text_like = loom_dataset_synthetic(4, LOOM_SHAPE(8), 2, 0);
  o = opts(2), o.transform.hflip = true;
  loom_clear_error();
  EXPECT_EQ(loom_loader_new(text_like, &o), nullptr);
  EXPECT_THAT(loom_last_error(), HasSubstr("[C, H, W]"));
  EXPECT_EQ(loom_loader_new(nullptr, &o), nullptr);
  loom_dataset_free(text_like);
  loom_dataset_free(ds);
}

TEST(DataTransform, FlipMirrorsCropShiftsNormaliseScales) {
  const int C = 2, H = 4, W = 5;
  std::vector<float> x(C * H * W);
  for (int k = 0; k < C * H * W; k++) x[k] = 1.0f + (float)k;
  auto at4 = [](const std::vector<float> &v, int c, int h, int w, int hh, int ww) { return v[(c * hh + h) * ww + w]; };
  auto at = [&](const std::vector<float> &v, int c, int h, int w) { return at4(v, c, h, w, H, W); };
  // Flip: each output is either the input or its mirror; both happen.
  loom_transform_opts t = {};
  t.hflip = true;
  int flipped = 0;
  for (int64_t i = 0; i < 40; i++) {
    std::vector<float> y(x.size());
    ASSERT_EQ(loom_transform_apply(&t, 5, 0, i, x.data(), LOOM_SHAPE(C, H, W), y.data()), 0);
    bool mirror = at(y, 0, 0, 0) == at(x, 0, 0, W - 1);
    flipped += mirror;
    for (int c = 0; c < C; c++)
      for (int h = 0; h < H; h++)
        for (int w = 0; w < W; w++) EXPECT_EQ(at(y, c, h, w), at(x, c, h, mirror ? W - 1 - w : w));
  }
  EXPECT_GT(flipped, 5);
  EXPECT_LT(flipped, 35);
  // Crop 4x4 of the sample padded by 2: same size, content shifted by (dy, dx), zeros outside.
  t = {};
  t.crop_size = 4, t.crop_padding = 2;
  std::set<std::pair<int, int>> shifts;
  for (int64_t i = 0; i < 40; i++) {
    std::vector<float> y(C * 4 * 4);
    ASSERT_EQ(loom_transform_apply(&t, 5, 0, i, x.data(), LOOM_SHAPE(C, H, W), y.data()), 0);
    // The value at (0, 0, h, w) identifies the source pixel: find the shift from any non-zero.
    int dy = 99, dx = 99;
    for (int h = 0; h < 4 && dy == 99; h++)
      for (int w = 0; w < 4; w++)
        if (at4(y, 0, h, w, 4, 4) != 0.0f) {
          int k = (int)at4(y, 0, h, w, 4, 4) - 1;
          dy = k / W - h, dx = k % W - w;
          break;
        }
    ASSERT_NE(dy, 99);
    EXPECT_TRUE(dy >= -2 && dy <= 2 && dx >= -2 && dx <= 3) << dy << "," << dx;
    shifts.insert({dy, dx});
    for (int c = 0; c < C; c++)
      for (int h = 0; h < 4; h++)
        for (int w = 0; w < 4; w++) {
          int sh = h + dy, sw = w + dx;
          float want = sh >= 0 && sh < H && sw >= 0 && sw < W ? at(x, c, sh, sw) : 0.0f;
          EXPECT_EQ(at4(y, c, h, w, 4, 4), want);
        }
  }
  EXPECT_GT(shifts.size(), 5u);
  // Normalise: (x - mean[c]) / std[c]; in place is allowed.
  float mean[2] = {1.0f, 20.0f}, sd[2] = {2.0f, 0.5f};
  t = {};
  t.norm_channels = 2, t.mean = mean, t.std = sd;
  std::vector<float> y = x;
  ASSERT_EQ(loom_transform_apply(&t, 0, 0, 0, y.data(), LOOM_SHAPE(C, H, W), y.data()), 0);
  EXPECT_FLOAT_EQ(y[0], 0.0f);
  EXPECT_FLOAT_EQ(y[3], 1.5f);
  EXPECT_FLOAT_EQ(y[H * W], (21.0f - 20.0f) / 0.5f);
  // Same (seed, epoch, index) -> same result; another epoch -> other draws.
  t = {};
  t.crop_size = 4, t.crop_padding = 2, t.hflip = true;
  std::vector<float> a(C * 16), b(C * 16);
  int differ = 0;
  for (int64_t i = 0; i < 10; i++) {
    loom_transform_apply(&t, 1, 0, i, x.data(), LOOM_SHAPE(C, H, W), a.data());
    loom_transform_apply(&t, 1, 0, i, x.data(), LOOM_SHAPE(C, H, W), b.data());
    EXPECT_EQ(a, b);
    loom_transform_apply(&t, 1, 1, i, x.data(), LOOM_SHAPE(C, H, W), b.data());
    differ += a != b;
  }
  EXPECT_GT(differ, 3);
}

TEST(DataLoader, PrefetchGivesTheSameBatchesAsNoPrefetch) {
  loom_dataset *ds = ramp(23, 3, 6, 6);
  float mean[3] = {0.5f, 1.0f, 2.0f}, sd[3] = {1.0f, 2.0f, 4.0f};
  loom_loader_opts o = opts(4, true, 77);
  o.transform.crop_size = 5, o.transform.crop_padding = 1, o.transform.hflip = true;
  o.transform.norm_channels = 3, o.transform.mean = mean, o.transform.std = sd;
  loom_loader_opts sync = o;
  sync.no_prefetch = true;
  loom_loader_opts deep = o;
  deep.prefetch = 5;
  deep.workers = 3;   // and samples shared among threads
  loom_loader *a = loom_loader_new(ds, &sync), *b = loom_loader_new(ds, &o), *c = loom_loader_new(ds, &deep);
  ASSERT_TRUE(a && b && c) << loom_last_error();
  mean[0] = 100.0f;   // the loader keeps its own copy
  for (int64_t e = 0; e < 3; e++) {
    for (loom_loader *l : {a, b, c}) loom_loader_start_epoch(l, e);
    std::vector<Batch> ba = epoch_batches(a), bb = epoch_batches(b), bc = epoch_batches(c);
    ASSERT_EQ(ba.size(), 6u);
    ASSERT_EQ(bb.size(), 6u);
    ASSERT_EQ(bc.size(), 6u);
    for (size_t k = 0; k < ba.size(); k++) {
      EXPECT_EQ(ba[k].x, bb[k].x) << "epoch " << e << " batch " << k;
      EXPECT_EQ(ba[k].y, bb[k].y);
      EXPECT_EQ(ba[k].x, bc[k].x);
    }
    EXPECT_EQ(ba[5].x.size(), 3u * 3 * 5 * 5);   // last batch: 23 - 20 samples of [3, 5, 5]
  }
  loom_loader_free(a), loom_loader_free(b), loom_loader_free(c);
  loom_dataset_free(ds);
}

TEST(DataLoader, SeekResumesWithTheSameBatches) {
  loom_dataset *ds = ramp(30, 1, 3, 3);
  loom_loader_opts o = opts(4, true, 5);
  o.transform.crop_size = 3, o.transform.crop_padding = 1, o.transform.hflip = true;
  loom_loader *l = loom_loader_new(ds, &o);
  ASSERT_NE(l, nullptr);
  epoch_batches(l);
  loom_loader_start_epoch(l, 1);
  epoch_batches(l, 3);
  loom_loader_pos pos = loom_loader_position(l);
  EXPECT_EQ(pos.epoch, 1);
  EXPECT_EQ(pos.batch, 3);
  std::vector<Batch> rest = epoch_batches(l);
  ASSERT_EQ(rest.size(), 5u);   // ceil(30 / 4) = 8 batches
  loom_loader_start_epoch(l, 2);
  std::vector<Batch> next_epoch = epoch_batches(l);
  loom_loader_free(l);
  for (bool prefetch : {true, false}) {
    o.no_prefetch = !prefetch;
    loom_loader *r = loom_loader_new(ds, &o);   // a fresh process resuming from a checkpoint
    ASSERT_EQ(loom_loader_seek(r, pos), 0);
    std::vector<Batch> resumed = epoch_batches(r);
    ASSERT_EQ(resumed.size(), rest.size());
    for (size_t k = 0; k < rest.size(); k++) {
      EXPECT_EQ(resumed[k].x, rest[k].x);
      EXPECT_EQ(resumed[k].y, rest[k].y);
    }
    loom_loader_start_epoch(r, 2);
    std::vector<Batch> ne = epoch_batches(r);
    ASSERT_EQ(ne.size(), next_epoch.size());
    for (size_t k = 0; k < ne.size(); k++) EXPECT_EQ(ne[k].x, next_epoch[k].x);
    EXPECT_NE(loom_loader_seek(r, loom_loader_pos{0, 9}), 0);
    EXPECT_THAT(loom_last_error(), HasSubstr("8 batches"));
    loom_loader_free(r);
  }
  loom_dataset_free(ds);
}

TEST(DataLoader, WorkerErrorsReachTheConsumer) {
  for (int mode = 0; mode < 3; mode++) {
    loom_dataset *ds = ramp(20, 1, 2, 2, /*fail_at=*/9);
    loom_loader_opts o = opts(4);
    o.no_prefetch = mode == 1;
    o.workers = mode == 2 ? 4 : 0;
    loom_loader *l = loom_loader_new(ds, &o);
    ASSERT_NE(l, nullptr);
    std::vector<Batch> bs = epoch_batches(l);
    EXPECT_EQ(bs.size(), 2u) << "batches 0 and 1 are fine, batch 2 holds index 9";
    EXPECT_NE(loom_last_status(), LOOM_OK);
    EXPECT_THAT(loom_last_error(), HasSubstr("Ramp"));
    EXPECT_THAT(loom_last_error(), HasSubstr("batch 2"));
    EXPECT_THAT(loom_last_error(), HasSubstr("reshape"));   // the dataset's own message
    ScopeGuard scope;
    loom_tensor *x, *y;
    EXPECT_FALSE(loom_loader_next(l, &x, &y)) << "still failing, not hanging";
    EXPECT_NE(loom_last_status(), LOOM_OK);
    loom_loader_free(l);
    loom_dataset_free(ds);
  }
}

TEST(DataLoader, FreeingMidEpochJoinsCleanly) {
  int64_t live = loom_live_tensors();
  loom_dataset *ds = loom_dataset_synthetic(500, LOOM_SHAPE(3, 16, 16), 10, 3);
  for (int round = 0; round < 20; round++) {
    loom_loader_opts o = opts(8, true, round);
    o.prefetch = 1 + round % 4;
    loom_loader *l = loom_loader_new(ds, &o);
    ASSERT_NE(l, nullptr);
    if (round % 2) epoch_batches(l, round % 5);
    if (round % 3 == 0) loom_loader_start_epoch(l, 3);   // restarts the worker mid-flight
    loom_loader_free(l);
  }
  loom_dataset_free(ds);   // the loaders held their own references
  EXPECT_EQ(loom_live_tensors(), live);
}

TEST(DataLoader, MnistBatchesFromFiles) {
  std::string dir = tmp_dir("loader_mnist");
  Bytes im = idx_images(10, 28, 28), lb = idx_labels(10);
  write_bytes(dir + "/train-images-idx3-ubyte.gz", gzip_bytes(im));
  write_bytes(dir + "/train-labels-idx1-ubyte.gz", gzip_bytes(lb));
  loom_dataset *ds = loom_dataset_mnist(dir.c_str(), true);
  ASSERT_NE(ds, nullptr) << loom_last_error();
  loom_loader_opts o = opts(4);
  loom_loader *l = loom_loader_new(ds, &o);
  loom_dataset_free(ds);
  ScopeGuard scope;
  loom_tensor *x, *y;
  ASSERT_TRUE(loom_loader_next(l, &x, &y)) << loom_last_error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(x), LOOM_SHAPE(4, 1, 28, 28)));
  EXPECT_EQ(loom_dtype_of(x), LOOM_F32);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(y), LOOM_SHAPE(4)));
  EXPECT_EQ(loom_dtype_of(y), LOOM_I64);
  std::vector<double> xv = V(x), yv = V(y);
  EXPECT_NEAR(xv[784 * 2 + 5], idx_pixel(2, 5) / 255.0, 1e-7);
  EXPECT_EQ(yv[3], idx_label(3));
  loom_loader_free(l);
}

TEST(DataLoader, CudaBatchesMatchTheCpu) {
  LOOM_REQUIRE_GPU();
  int64_t live = loom_live_tensors();
  loom_dataset *ds = ramp(45, 3, 8, 8);
  float mean[3] = {0.1f, 0.2f, 0.3f}, sd[3] = {1.5f, 2.5f, 3.5f};
  loom_loader_opts o = opts(8, true, 11);
  o.transform.crop_size = 8, o.transform.crop_padding = 2, o.transform.hflip = true;
  o.transform.norm_channels = 3, o.transform.mean = mean, o.transform.std = sd;
  loom_loader *cpu = loom_loader_new(ds, &o);
  o.device = loom_cuda(0);
  o.prefetch = 3;
  loom_loader *gpu = loom_loader_new(ds, &o);
  ASSERT_TRUE(cpu && gpu) << loom_last_error();
  for (int64_t e = 0; e < 3; e++) {
    loom_loader_start_epoch(cpu, e), loom_loader_start_epoch(gpu, e);
    ScopeGuard scope;
    loom_tensor *xc, *yc, *xg, *yg;
    int n = 0;
    while (loom_loader_next(cpu, &xc, &yc)) {
      ASSERT_TRUE(loom_loader_next(gpu, &xg, &yg)) << loom_last_error();
      EXPECT_EQ(loom_device_of(xg).type, LOOM_CUDA);
      EXPECT_EQ(loom_device_of(yg).type, LOOM_CUDA);
      // Use the batch on the GPU before comparing, as a training step would.
      loom_tensor *sum = loom_sum(xg, nullptr, 0, false);
      std::vector<double> xcv = V(xc);
      double want = std::accumulate(xcv.begin(), xcv.end(), 0.0);
      EXPECT_NEAR(loom_item(sum), want, 1e-5 * std::fabs(want) + 1e-3);
      EXPECT_EQ(V(xg), V(xc));
      EXPECT_EQ(V(yg), V(yc));
      n++;
    }
    EXPECT_EQ(n, 6);
    EXPECT_FALSE(loom_loader_next(gpu, &xg, &yg));
    EXPECT_EQ(loom_last_status(), LOOM_OK);
  }
  loom_loader_start_epoch(gpu, 4);
  epoch_batches(gpu, 2);
  loom_loader_free(gpu);   // mid-epoch, copies possibly in flight
  loom_loader_free(cpu);
  loom_dataset_free(ds);
  EXPECT_EQ(loom_live_tensors(), live);
}

// Uploads run on the copy stream ahead of a busy compute stream: whatever the
// ring size, the batches equal the CPU's, and tensors kept while later batches
// pass through the same slots stay intact (they are not the slots' buffers).
TEST(DataLoader, CudaUploadsAheadOfBusyStreamStayCorrect) {
  LOOM_REQUIRE_GPU();
  int64_t live = loom_live_tensors();
  loom_dataset *ds = ramp(70, 2, 16, 16);
  loom_loader_opts o = opts(6, true, 5);
  loom_loader *cpu = loom_loader_new(ds, &o);
  ASSERT_NE(cpu, nullptr) << loom_last_error();
  std::vector<Batch> want = epoch_batches(cpu);
  ASSERT_EQ(want.size(), 12u);
  for (int prefetch : {0, 1, 2, 4}) {
    SCOPED_TRACE("prefetch " + std::to_string(prefetch));
    ScopeGuard scope;
    loom_tensor *a = loom_mul_scalar(loom_randn(LOOM_SHAPE(512, 512), LOOM_F32, loom_cuda(0)), 0.05);
    ASSERT_NE(a, nullptr) << loom_last_error();
    o.device = loom_cuda(0);
    o.no_prefetch = prefetch == 0;
    o.prefetch = prefetch;
    loom_loader *gpu = loom_loader_new(ds, &o);
    ASSERT_NE(gpu, nullptr) << loom_last_error();
    std::vector<loom_tensor *> xs, ys;
    loom_tensor *x, *y;
    while (loom_loader_next(gpu, &x, &y)) {
      loom_tensor *busy = a;   // keep the current stream busy while uploads run
      for (int k = 0; k < 8; k++) busy = loom_tanh(loom_matmul(busy, a));
      ASSERT_NE(busy, nullptr) << loom_last_error();
      xs.push_back(x);
      ys.push_back(y);
    }
    EXPECT_EQ(loom_last_status(), LOOM_OK) << loom_last_error();
    ASSERT_EQ(xs.size(), want.size());
    for (size_t b = 0; b < want.size(); b++) {
      EXPECT_EQ(V(xs[b]), want[b].x) << "batch " << b;
      EXPECT_EQ(V(ys[b]), want[b].y) << "batch " << b;
    }
    loom_loader_free(gpu);
  }
  loom_loader_free(cpu);
  loom_dataset_free(ds);
  EXPECT_EQ(loom_live_tensors(), live);
}
