// Collectives and data parallel across processes, on either CPU backend:
// run by ctest under `mpirun -np 2` (MPI; once with torchrun-style variables
// that reverse the ranks; once with LOOM_DIST_BACKEND=tcp) and under
// tests/mpi/launch_tcp.sh 2 (TCP, torchrun's variables). LOOM_TEST_BACKEND
// names the backend the run must get. Every rank runs every test in the same
// order; a rank whose check fails still calls the same collectives, so the
// other never waits forever (and LOOM_DIST_TIMEOUT bounds it if it did).
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include <string>
#include <vector>

#include "dist_test_util.h"
#include "loom_test.h"

extern "C" const char *dist_backend_name(void);   // src/dist/dist.c

namespace {

int rank() { return loom_dist_rank(); }
int world() { return loom_dist_world_size(); }

TEST(DistMpi, PlacementFromTheLauncher) {
  EXPECT_EQ(world(), 2);
  if (const char *r = getenv("RANK")) {
    EXPECT_STREQ(loom_dist_launcher(), "torchrun");
    EXPECT_EQ(rank(), atoi(r));
  } else if (const char *r = getenv("OMPI_COMM_WORLD_RANK")) {
    EXPECT_STREQ(loom_dist_launcher(), "mpirun");
    EXPECT_EQ(rank(), atoi(r));
  } else {
    EXPECT_STREQ(loom_dist_launcher(), "slurm");
    EXPECT_EQ(rank(), atoi(getenv("SLURM_PROCID")));
  }
  if (const char *b = getenv("LOOM_TEST_BACKEND")) EXPECT_STREQ(dist_backend_name(), b);
  EXPECT_EQ(loom_dist_device().type, LOOM_CPU);
  // every rank's Open MPI rank (else its pid), in Loom's rank order: the communicator follows Loom's ranks
  ScopeGuard g;
  const char *ompi = getenv("OMPI_COMM_WORLD_RANK");
  int64_t mine = ompi ? atoi(ompi) : (int64_t)getpid();
  loom_tensor *in = loom_from_host(&mine, LOOM_SHAPE(1), LOOM_I64, loom_cpu());
  loom_tensor *all = loom_zeros(LOOM_SHAPE(2), LOOM_I64, loom_cpu());
  ASSERT_EQ(loom_all_gather(all, in), LOOM_OK) << loom_last_error();
  EXPECT_EQ(V(all)[rank()], (double)mine);
  EXPECT_NE(V(all)[0], V(all)[1]);
}

TEST(DistMpi, AllReduceEveryDtypeAndOp) {
  ScopeGuard g;
  const loom_dtype dts[] = {LOOM_F32, LOOM_F64, LOOM_F16, LOOM_BF16, LOOM_I32, LOOM_I64, LOOM_U8};
  for (loom_dtype dt : dts) {
    for (loom_reduce_op op : {LOOM_REDUCE_SUM, LOOM_REDUCE_AVG, LOOM_REDUCE_MAX, LOOM_REDUCE_MIN}) {
      if (op == LOOM_REDUCE_AVG && !loom_dtype_is_float(dt)) continue;
      // rank 0: 1, 2, ..., 7; rank 1: 7, 6, ..., 1 (small integers: exact in every dtype)
      std::vector<double> v(7);
      for (int i = 0; i < 7; i++) v[i] = rank() == 0 ? i + 1 : 7 - i;
      loom_tensor *t = T(v, LOOM_SHAPE(7), dt);
      ASSERT_EQ(loom_all_reduce(t, op), LOOM_OK) << loom_last_error();
      std::vector<double> want(7);
      for (int i = 0; i < 7; i++) {
        double a = i + 1, b = 7 - i;
        want[i] = op == LOOM_REDUCE_SUM ? a + b : op == LOOM_REDUCE_AVG ? (a + b) / 2 : op == LOOM_REDUCE_MAX ? std::max(a, b) : std::min(a, b);
      }
      EXPECT_EQ(V(t), want) << loom_dtype_name(dt) << " " << loom_reduce_op_name(op);
    }
  }
  // bool: sum and max are a logical or, min a logical and
  for (loom_reduce_op op : {LOOM_REDUCE_SUM, LOOM_REDUCE_MAX, LOOM_REDUCE_MIN}) {
    loom_tensor *t = T(rank() == 0 ? std::vector<double>{0, 1, 1, 0} : std::vector<double>{0, 1, 0, 1},
                       LOOM_SHAPE(4), LOOM_BOOL);
    ASSERT_EQ(loom_all_reduce(t, op), LOOM_OK) << loom_last_error();
    EXPECT_EQ(V(t), op == LOOM_REDUCE_MIN ? (std::vector<double>{0, 1, 0, 0}) : (std::vector<double>{0, 1, 1, 1}));
  }
}

TEST(DistMpi, BroadcastGatherScatter) {
  ScopeGuard g;
  for (int root = 0; root < 2; root++) {
    loom_tensor *t = T({(double)rank(), 10.0 + rank()}, LOOM_SHAPE(2), LOOM_F64);
    ASSERT_EQ(loom_broadcast(t, root), LOOM_OK) << loom_last_error();
    EXPECT_EQ(V(t), (std::vector<double>{(double)root, 10.0 + root}));
  }
  loom_tensor *in = T({1.0 + rank(), 2.0 + rank(), 3.0 + rank()}, LOOM_SHAPE(3), LOOM_BF16);
  loom_tensor *all = loom_zeros(LOOM_SHAPE(2, 3), LOOM_BF16, loom_cpu());
  ASSERT_EQ(loom_all_gather(all, in), LOOM_OK) << loom_last_error();
  EXPECT_EQ(V(all), (std::vector<double>{1, 2, 3, 2, 3, 4}));
  // reduce_scatter: rank r gets elements [2r, 2r + 2) of the sum
  loom_tensor *big = T({1, 2, 3, 4}, LOOM_SHAPE(4), LOOM_I32);
  loom_tensor *part = loom_zeros(LOOM_SHAPE(2), LOOM_I32, loom_cpu());
  ASSERT_EQ(loom_reduce_scatter(part, big, LOOM_REDUCE_SUM), LOOM_OK) << loom_last_error();
  EXPECT_EQ(V(part), rank() == 0 ? (std::vector<double>{2, 4}) : (std::vector<double>{6, 8}));
  loom_tensor *fbig = T({1.0 * rank(), 2, 3, 4.0 * rank()}, LOOM_SHAPE(4), LOOM_F32);
  loom_tensor *fpart = loom_zeros(LOOM_SHAPE(2), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_reduce_scatter(fpart, fbig, LOOM_REDUCE_AVG), LOOM_OK) << loom_last_error();
  EXPECT_EQ(V(fpart), rank() == 0 ? (std::vector<double>{0.5, 2}) : (std::vector<double>{3, 2}));
  EXPECT_EQ(loom_barrier(), LOOM_OK);
}

// Sizes the ring splits unevenly: empty, fewer elements than ranks, odd, and
// several 1 MiB segments per chunk; random floats reduce to the same bits on
// every rank.
TEST(DistMpi, OddAndLargeSizesGiveTheSameBitsEverywhere) {
  ScopeGuard g;
  for (int64_t n : {0, 1, 3, 1000003}) {
    std::vector<double> v(n);
    for (int64_t i = 0; i < n; i++) v[i] = (double)(i % 7) + rank();
    loom_tensor *t = T(v, LOOM_SHAPE(n), LOOM_F32);
    ASSERT_EQ(loom_all_reduce(t, LOOM_REDUCE_SUM), LOOM_OK) << loom_last_error();
    std::vector<double> got = V(t);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += got[i] != 2.0 * (i % 7) + 1;
    EXPECT_EQ(bad, 0) << n << " elements";
  }
  loom_manual_seed(100 + rank());   // another input on each rank
  loom_tensor *r = loom_randn(LOOM_SHAPE(700001), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_all_reduce(r, LOOM_REDUCE_AVG), LOOM_OK) << loom_last_error();
  loom_tensor *both = loom_empty(LOOM_SHAPE(2, 700001), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_all_gather(both, r), LOOM_OK) << loom_last_error();
  std::vector<float> b(2 * 700001);
  ASSERT_EQ(loom_to_host(both, b.data(), b.size() * sizeof(float)), LOOM_OK);
  EXPECT_EQ(memcmp(b.data(), b.data() + 700001, 700001 * sizeof(float)), 0) << "the ranks' sums differ in their bits";
  // a broadcast of several segments from rank 1
  loom_tensor *big = loom_full(LOOM_SHAPE(600000), 1.0 + rank(), LOOM_F64, loom_cpu());
  ASSERT_EQ(loom_broadcast(big, 1), LOOM_OK) << loom_last_error();
  std::vector<double> bv = V(big);
  EXPECT_EQ(std::count(bv.begin(), bv.end(), 2.0), 600000);
  // gather and scatter of other dtypes, large
  loom_tensor *in = loom_full(LOOM_SHAPE(300000), 3.0 + rank(), LOOM_I64, loom_cpu());
  loom_tensor *all = loom_zeros(LOOM_SHAPE(600000), LOOM_I64, loom_cpu());
  ASSERT_EQ(loom_all_gather(all, in), LOOM_OK) << loom_last_error();
  std::vector<double> av = V(all);
  EXPECT_EQ(std::count(av.begin(), av.begin() + 300000, 3.0), 300000);
  EXPECT_EQ(std::count(av.begin() + 300000, av.end(), 4.0), 300000);
  loom_tensor *h = loom_full(LOOM_SHAPE(800000), 1.5 + rank(), LOOM_F16, loom_cpu());
  loom_tensor *hpart = loom_zeros(LOOM_SHAPE(400000), LOOM_F16, loom_cpu());
  ASSERT_EQ(loom_reduce_scatter(hpart, h, LOOM_REDUCE_MAX), LOOM_OK) << loom_last_error();
  std::vector<double> hv = V(hpart);
  EXPECT_EQ(std::count(hv.begin(), hv.end(), 2.5), 400000);
  EXPECT_EQ(V(h)[0], 1.5 + rank()) << "reduce_scatter changed its input";
  for (int i = 0; i < 3; i++) EXPECT_EQ(loom_barrier(), LOOM_OK);
}

TEST(DistMpi, AsyncWorkFinishesInOrder) {
  ScopeGuard g;
  std::vector<loom_tensor *> ts;
  std::vector<loom_dist_work *> ws;
  for (int i = 0; i < 8; i++) {
    ts.push_back(loom_full(LOOM_SHAPE(100000), i + rank(), LOOM_F32, loom_cpu()));
    ws.push_back(loom_all_reduce_async(ts.back(), LOOM_REDUCE_SUM));
    ASSERT_NE(ws.back(), nullptr) << loom_last_error();
  }
  for (int i = 7; i >= 0; i--) {  // waited for in any order
    ASSERT_EQ(loom_dist_wait(ws[i]), LOOM_OK) << loom_last_error();
    EXPECT_EQ(V(ts[i])[99999], 2.0 * i + 1);
  }
}

// Parameters of m as one vector per parameter.
std::vector<std::vector<double>> params(loom_module *m) {
  loom_named_tensors *l = loom_module_named_parameters(m);
  std::vector<std::vector<double>> v;
  for (int i = 0; i < l->n; i++) v.push_back(V(l->tensors[i]));
  loom_named_tensors_free(l);
  return v;
}

TEST(DistMpi, TwoRanksTrainLikeOneOnTheGlobalBatch) {
  // rank 0 starts from another init: DDP must broadcast rank 0's parameters
  Model plain(dist_mlp(5)), inner(dist_mlp(5 + rank()));
  Model ddp(loom_ddp_new(inner.m, nullptr));
  ASSERT_NE(ddp.m, nullptr) << loom_last_error();
  loom_sgd_opts so{};
  so.lr = 0.1;
  so.momentum = 0.9;
  loom_optimizer *a = loom_sgd_module(plain.m, &so), *b = loom_sgd_module(ddp.m, &so);
  for (int step = 0; step < 10; step++) {
    int64_t first = 16 * (step % 3);
    ASSERT_EQ(dist_backward(plain.m, first, 16), LOOM_OK) << loom_last_error();  // the global batch of 16
    ASSERT_EQ(dist_backward(ddp.m, first + 8 * rank(), 8), LOOM_OK) << loom_last_error();  // this rank's half
    ASSERT_EQ(loom_optimizer_step(a), LOOM_OK);
    ASSERT_EQ(loom_optimizer_step(b), LOOM_OK);
    loom_optimizer_zero_grad(a);
    loom_optimizer_zero_grad(b);
  }
  auto pa = params(plain.m), pb = params(ddp.m);
  for (size_t i = 0; i < pa.size(); i++)
    for (size_t j = 0; j < pa[i].size(); j++) ASSERT_NEAR(pa[i][j], pb[i][j], 1e-5) << "param " << i << " [" << j << "]";
  // and the two ranks hold the very same bits
  ScopeGuard g;
  loom_named_tensors *l = loom_module_named_parameters(ddp.m);
  for (int i = 0; i < l->n; i++) {
    loom_tensor *both = loom_empty(LOOM_SHAPE(2, loom_numel(l->tensors[i])), LOOM_F32, loom_cpu());
    ASSERT_EQ(loom_all_gather(both, l->tensors[i]), LOOM_OK);
    std::vector<double> v = V(both);
    size_t n = v.size() / 2;
    EXPECT_TRUE(std::equal(v.begin(), v.begin() + n, v.begin() + n)) << l->names[i];
  }
  loom_named_tensors_free(l);
  loom_ddp_stats s{};
  loom_ddp_get_stats(ddp.m, &s);
  EXPECT_EQ(s.steps, 10);
  EXPECT_GE(s.hidden_fraction, 0.0);
  EXPECT_LE(s.hidden_fraction, 1.0);
  loom_optimizer_free(a);
  loom_optimizer_free(b);
}

TEST(DistMpi, NoSyncAccumulationEqualsOneBigBatch) {
  Model plain(dist_mlp(7)), inner(dist_mlp(7));
  Model ddp(loom_ddp_new(inner.m, nullptr));
  ASSERT_NE(ddp.m, nullptr) << loom_last_error();
  ASSERT_EQ(dist_backward(plain.m, 0, 16), LOOM_OK);
  // two micro-batches of 4 per rank: rows [8r, 8r + 4) without sync, then [8r + 4, 8r + 8) with it
  loom_ddp_set_sync(ddp.m, false);
  ASSERT_EQ(dist_backward(ddp.m, 8 * rank(), 4), LOOM_OK);
  loom_ddp_set_sync(ddp.m, true);
  ASSERT_EQ(dist_backward(ddp.m, 8 * rank() + 4, 4), LOOM_OK);
  loom_named_tensors *a = loom_module_named_parameters(plain.m), *b = loom_module_named_parameters(ddp.m);
  ScopeGuard g;
  for (int i = 0; i < a->n; i++) {
    loom_tensor *half = loom_mul_scalar(loom_grad(b->tensors[i]), 0.5);  // the sum of two means of 4 rows
    EXPECT_LT(rel_err(half, loom_grad(a->tensors[i])), 1e-5) << a->names[i];
  }
  loom_named_tensors_free(a);
  loom_named_tensors_free(b);
}

void record(int bucket, void *user) { ((std::vector<int> *)user)->push_back(bucket); }

TEST(DistMpi, BucketsStartInTheSameOrderOnEveryRank) {
  std::vector<int> order;
  loom_ddp_opts o{};
  o.bucket_cap_mb = 1e-3;
  o.first_bucket_mb = 1e-3;
  o.on_bucket = record;
  o.on_bucket_user = &order;
  Model inner(dist_mlp(1));
  Model ddp(loom_ddp_new(inner.m, &o));
  ASSERT_NE(ddp.m, nullptr) << loom_last_error();
  ASSERT_EQ(dist_backward(ddp.m, 4 * rank(), 4), LOOM_OK) << loom_last_error();
  loom_ddp_stats s{};
  loom_ddp_get_stats(ddp.m, &s);
  ASSERT_GT(s.buckets, 2);
  std::vector<int> want(s.buckets);
  for (int i = 0; i < s.buckets; i++) want[i] = i;
  EXPECT_EQ(order, want);
}

TEST(DistMpi, BatchNormBuffersComeFromRankZero) {
  loom_manual_seed(1);
  Model inner(LOOM_SEQUENTIAL(loom_nn_linear(6, 4, NULL), loom_nn_batch_norm1d(4, NULL)));
  Model ddp(loom_ddp_new(inner.m, nullptr));
  ASSERT_NE(ddp.m, nullptr) << loom_last_error();
  ScopeGuard g;
  loom_tensor *mean = loom_module_buffer(ddp.m, "1.running_mean");
  ASSERT_EQ(loom_fill_(mean, 5.0 * rank()), LOOM_OK);  // rank 1 drifts
  loom_tensor *x, *y;
  dist_batch(0, 8, &x, &y);  // the same batch on both ranks
  ASSERT_NE(loom_forward(ddp.m, x), nullptr) << loom_last_error();
  loom_tensor *both = loom_empty(LOOM_SHAPE(2, 4), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_all_gather(both, mean), LOOM_OK);
  std::vector<double> v = V(both);
  EXPECT_EQ(std::vector<double>(v.begin(), v.begin() + 4), std::vector<double>(v.begin() + 4, v.end()));
}

// ---- the trainer under a process group ----
struct TrainRun {
  Model inner, ddp;
  loom_optimizer *opt;
  loom_loader *loader;
  loom_trainer *trainer;
  TrainRun(const std::string &dir, int64_t max_steps, loom_step_fn on_step)
      : inner(dist_mlp(11)), ddp(loom_ddp_new(inner.m, nullptr)) {
    loom_sgd_opts so{};
    so.lr = 0.05;
    opt = loom_sgd_module(ddp.m, &so);
    loom_dataset *ds = loom_dataset_synthetic(96, LOOM_SHAPE(6), 3, 1);
    loom_loader_opts lo{};
    lo.batch_size = 4;  // world_size 0: the process group's shard
    lo.shuffle = true;
    lo.seed = 3;
    loader = loom_loader_new(ds, &lo);
    loom_dataset_free(ds);
    loom_trainer_opts to{};
    to.max_steps = max_steps;
    to.quiet = true;
    to.checkpoint_dir = dir.c_str();
    to.checkpoint_every = 100;
    to.on_step = on_step;
    trainer = loom_trainer_new(ddp.m, opt, nullptr, loader, &to);
  }
  ~TrainRun() {
    loom_trainer_free(trainer);
    loom_loader_free(loader);
    loom_optimizer_free(opt);
  }
};

int sigterm_on_rank1_at_step3(loom_trainer *, int64_t step, double, void *) {
  if (step == 3 && loom_dist_rank() == 1) raise(SIGTERM);
  return 0;
}

TEST(DistMpi, TrainerStopsEveryRankAtTheSameStepAndResumes) {
  // one folder for both ranks: named after rank 0's pid
  ScopeGuard g;
  int64_t pid = getpid();
  loom_tensor *p = loom_from_host(&pid, LOOM_SHAPE(1), LOOM_I64, loom_cpu());
  ASSERT_EQ(loom_broadcast(p, 0), LOOM_OK);
  std::string dir = ::testing::TempDir() + "/loom_ddp_" + std::to_string((long long)loom_item(p));
  {
    TrainRun r(dir, 8, sigterm_on_rank1_at_step3);
    ASSERT_NE(r.trainer, nullptr) << loom_last_error();
    EXPECT_EQ(loom_loader_num_samples(r.loader), 48);  // half of 96 on each rank
    EXPECT_EQ(loom_trainer_fit(r.trainer), LOOM_TRAIN_INTERRUPTED) << loom_last_error();
    EXPECT_EQ(loom_trainer_stats(r.trainer).step, 3);  // rank 0 stopped after the same step as rank 1
  }
  loom_barrier();  // rank 0 has written its checkpoint
  int files = 0;
  std::string only;
  for (const auto &e : std::filesystem::directory_iterator(dir)) files++, only = e.path().filename().string();
  EXPECT_EQ(files, 1) << "only rank 0 writes";
  EXPECT_EQ(only, "ckpt-00000003.safetensors");
  loom_barrier();
  std::vector<std::vector<double>> mine;
  {
    TrainRun r(dir, 8, nullptr);
    ASSERT_EQ(loom_trainer_resume_latest(r.trainer), 1) << loom_last_error();
    EXPECT_EQ(loom_trainer_stats(r.trainer).step, 3);
    EXPECT_EQ(loom_trainer_fit(r.trainer), LOOM_TRAIN_DONE) << loom_last_error();
    EXPECT_EQ(loom_trainer_stats(r.trainer).step, 8);
    mine = params(r.ddp.m);
  }
  // the ranks end with the same parameters
  for (const auto &v : mine) {
    loom_tensor *t = T(v, LOOM_SHAPE((int64_t)v.size()), LOOM_F64);
    loom_tensor *both = loom_empty(LOOM_SHAPE(2, (int64_t)v.size()), LOOM_F64, loom_cpu());
    ASSERT_EQ(loom_all_gather(both, t), LOOM_OK);
    std::vector<double> b = V(both);
    EXPECT_TRUE(std::equal(b.begin(), b.begin() + v.size(), b.begin() + v.size()));
  }
  loom_barrier();
  if (loom_dist_rank() == 0) std::filesystem::remove_all(dir);
}

}  // namespace

int main(int argc, char **argv) {
  ::testing::InitGoogleTest(&argc, argv);
  loom_dist_opts o{};
  if (loom_dist_init(&o) != LOOM_OK) {
    fprintf(stderr, "test_dist_mpi: %s\n", loom_last_error());
    return 1;
  }
  if (loom_dist_world_size() != 2) {
    fprintf(stderr, "test_dist_mpi: world size %d; run it under mpirun -np 2 or tests/mpi/launch_tcp.sh 2\n",
            loom_dist_world_size());
    return 1;
  }
  int rc = RUN_ALL_TESTS();
  loom_dist_finalize();
  return rc;
}
