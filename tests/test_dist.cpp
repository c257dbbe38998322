// The process group and data parallel in one process (world size 1): where
// rank and world size come from, the collectives' checks and local results,
// and the DDP wrapper's buckets, names, no_sync and unused parameters. The
// multi-process checks run under mpirun (tests/mpi/).
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>

#include "dist_test_util.h"
#include "loom_test.h"
#include "../src/dist/placement.h"

namespace {

const char *const VARS[] = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                            "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
                            "SLURM_STEP_ID", "LOOM_DIST_TIMEOUT", "PMIX_RANK", "PMI_RANK", "PMI_SIZE",
                            "MASTER_ADDR", "MASTER_PORT", "LOOM_DIST_BACKEND"};

// Clears the launcher variables for a test and puts them back after it.
struct CleanEnv {
  std::vector<std::pair<std::string, std::string>> saved;
  CleanEnv() {
    for (const char *v : VARS) {
      if (const char *s = getenv(v)) saved.emplace_back(v, s);
      unsetenv(v);
    }
  }
  ~CleanEnv() {
    for (const char *v : VARS) unsetenv(v);
    for (auto &kv : saved) setenv(kv.first.c_str(), kv.second.c_str(), 1);
    loom_dist_finalize();
  }
};

dist_place place(const loom_dist_opts *o = nullptr) {
  dist_place p{};
  EXPECT_EQ(dist_placement(o, &p), LOOM_OK) << loom_last_error();
  return p;
}

TEST(DistPlacement, NoLauncherIsOneProcess) {
  CleanEnv env;
  dist_place p = place();
  EXPECT_EQ(p.world_size, 1);
  EXPECT_EQ(p.rank, 0);
  EXPECT_STREQ(p.launcher, "none");
}

TEST(DistPlacement, TorchrunBeforeMpiBeforeSlurm) {
  CleanEnv env;
  setenv("SLURM_PROCID", "5", 1); setenv("SLURM_NTASKS", "8", 1); setenv("SLURM_LOCALID", "1", 1);
  setenv("SLURM_STEP_ID", "0", 1);
  dist_place p = place();
  EXPECT_STREQ(p.launcher, "slurm");
  EXPECT_EQ(p.rank, 5); EXPECT_EQ(p.world_size, 8); EXPECT_EQ(p.local_rank, 1);
  setenv("OMPI_COMM_WORLD_RANK", "3", 1); setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "3", 1);
  p = place();
  EXPECT_STREQ(p.launcher, "mpirun");
  EXPECT_EQ(p.rank, 3); EXPECT_EQ(p.world_size, 4); EXPECT_EQ(p.local_rank, 3);
  setenv("RANK", "1", 1); setenv("WORLD_SIZE", "2", 1); setenv("LOCAL_RANK", "0", 1);
  p = place();
  EXPECT_STREQ(p.launcher, "torchrun");
  EXPECT_EQ(p.rank, 1); EXPECT_EQ(p.world_size, 2); EXPECT_EQ(p.local_rank, 0);
  loom_dist_opts o{};
  o.world_size = 3; o.rank = 2; o.local_rank = 2;
  p = place(&o);
  EXPECT_STREQ(p.launcher, "explicit");
  EXPECT_EQ(p.rank, 2); EXPECT_EQ(p.world_size, 3);
}

TEST(DistPlacement, SlurmBatchScriptWithoutStepIsOneProcess) {
  CleanEnv env;
  setenv("SLURM_PROCID", "0", 1); setenv("SLURM_NTASKS", "4", 1);
  EXPECT_EQ(place().world_size, 1);
}

TEST(DistPlacement, BadVariablesAreNamed) {
  CleanEnv env;
  dist_place p;
  setenv("RANK", "one", 1); setenv("WORLD_SIZE", "2", 1);
  EXPECT_NE(dist_placement(nullptr, &p), LOOM_OK);
  EXPECT_NE(std::string(loom_last_error()).find("RANK='one' is not a non-negative integer"), std::string::npos)
      << loom_last_error();
  setenv("RANK", "2", 1);
  EXPECT_NE(dist_placement(nullptr, &p), LOOM_OK);
  EXPECT_NE(std::string(loom_last_error()).find("rank 2 (from RANK=2, WORLD_SIZE=2"), std::string::npos)
      << loom_last_error();
  unsetenv("WORLD_SIZE");
  EXPECT_NE(dist_placement(nullptr, &p), LOOM_OK);
  EXPECT_NE(std::string(loom_last_error()).find("RANK is set but WORLD_SIZE is not"), std::string::npos)
      << loom_last_error();
  loom_dist_opts o{};
  o.rank = 1;
  EXPECT_NE(dist_placement(&o, &p), LOOM_OK);
  EXPECT_NE(std::string(loom_last_error()).find("without a world_size"), std::string::npos);
}

TEST(DistInit, WorldOfOneNeedsNothing) {
  CleanEnv env;
  loom_dist_opts o{};
  o.quiet = true;
  o.device = "cpu";
  ASSERT_EQ(loom_dist_init(&o), LOOM_OK) << loom_last_error();
  EXPECT_TRUE(loom_dist_is_initialized());
  EXPECT_EQ(loom_dist_world_size(), 1);
  EXPECT_STREQ(loom_dist_launcher(), "none");
  EXPECT_DOUBLE_EQ(loom_dist_timeout(), 600);
  EXPECT_NE(loom_dist_init(&o), LOOM_OK);
  EXPECT_NE(std::string(loom_last_error()).find("already initialised"), std::string::npos);
  EXPECT_EQ(loom_barrier(), LOOM_OK);
  EXPECT_EQ(loom_dist_finalize(), LOOM_OK);
  EXPECT_FALSE(loom_dist_is_initialized());
}

TEST(DistInit, TimeoutFromTheEnvironment) {
  CleanEnv env;
  setenv("LOOM_DIST_TIMEOUT", "42", 1);
  loom_dist_opts o{};
  o.quiet = true;
  ASSERT_EQ(loom_dist_init(&o), LOOM_OK) << loom_last_error();
  EXPECT_DOUBLE_EQ(loom_dist_timeout(), 42);
  loom_dist_finalize();
  setenv("LOOM_DIST_TIMEOUT", "soon", 1);
  EXPECT_NE(loom_dist_init(&o), LOOM_OK);
  EXPECT_NE(std::string(loom_last_error()).find("LOOM_DIST_TIMEOUT='soon'"), std::string::npos);
}

bool has(const char *text, const char *part) { return std::string(text).find(part) != std::string::npos; }

TEST(DistInit, TorchrunOnTheCpuWithoutMasterAddrSaysWhatToSet) {
  CleanEnv env;
  setenv("RANK", "0", 1); setenv("WORLD_SIZE", "2", 1); setenv("LOCAL_RANK", "0", 1);
  loom_dist_opts o{};
  o.quiet = true;
  o.device = "cpu";
  EXPECT_NE(loom_dist_init(&o), LOOM_OK);
  EXPECT_TRUE(has(loom_last_error(), "the TCP backend needs MASTER_ADDR and MASTER_PORT")) << loom_last_error();
  EXPECT_TRUE(has(loom_last_error(), "MASTER_ADDR is not set")) << loom_last_error();
  EXPECT_FALSE(loom_dist_is_initialized());
  setenv("MASTER_ADDR", "127.0.0.1", 1);
  EXPECT_NE(loom_dist_init(&o), LOOM_OK);
  EXPECT_TRUE(has(loom_last_error(), "MASTER_PORT is not set")) << loom_last_error();
}

TEST(DistInit, SrunWithoutMasterAddrSaysWhatToExport) {
  CleanEnv env;
  setenv("SLURM_PROCID", "1", 1); setenv("SLURM_NTASKS", "2", 1); setenv("SLURM_LOCALID", "1", 1);
  setenv("SLURM_STEP_ID", "0", 1);
  loom_dist_opts o{};
  o.quiet = true;
  o.device = "cpu";
  EXPECT_NE(loom_dist_init(&o), LOOM_OK);
  EXPECT_TRUE(has(loom_last_error(), "export MASTER_ADDR=$(scontrol show hostnames")) << loom_last_error();
  EXPECT_TRUE(has(loom_last_error(), "srun --mpi=pmix")) << loom_last_error();
}

TEST(DistInit, UnknownOrUnavailableBackendIsRefused) {
  CleanEnv env;
  loom_dist_opts o{};
  o.quiet = true;
  o.device = "cpu";
  setenv("LOOM_DIST_BACKEND", "bogus", 1);
  EXPECT_NE(loom_dist_init(&o), LOOM_OK);   // refused even in a world of one
  EXPECT_TRUE(has(loom_last_error(), "LOOM_DIST_BACKEND='bogus' is not a backend: tcp or mpi")) << loom_last_error();
  EXPECT_FALSE(loom_dist_is_initialized());
  // mpi without an MPI launcher (or without MPI in the build)
  setenv("LOOM_DIST_BACKEND", "mpi", 1);
  setenv("RANK", "0", 1); setenv("WORLD_SIZE", "2", 1);
  EXPECT_NE(loom_dist_init(&o), LOOM_OK);
  EXPECT_TRUE(has(loom_last_error(), "LOOM_DIST_BACKEND=mpi, but")) << loom_last_error();
  EXPECT_FALSE(loom_dist_is_initialized());
}

// Rank 1 of 2 whose rank 0 never comes: the rendezvous times out naming the address, and
// leaves nothing behind (a second init gets as far).
TEST(DistInit, TcpRankWithoutRankZeroTimesOut) {
  CleanEnv env;
  setenv("RANK", "1", 1); setenv("WORLD_SIZE", "2", 1); setenv("LOCAL_RANK", "0", 1);
  setenv("MASTER_ADDR", "127.0.0.1", 1);
  setenv("MASTER_PORT", "1", 1);   // port 2: nothing listens there
  loom_dist_opts o{};
  o.quiet = true;
  o.device = "cpu";
  o.timeout_s = 0.3;
  for (int i = 0; i < 2; i++) {
    EXPECT_NE(loom_dist_init(&o), LOOM_OK);
    EXPECT_TRUE(has(loom_last_error(), "rank 1 could not reach rank 0 at MASTER_ADDR=127.0.0.1 port 2 (MASTER_PORT + 1)"))
        << loom_last_error();
    EXPECT_FALSE(loom_dist_is_initialized());
  }
}

TEST(DistCollectives, WorldOfOneIsTheIdentity) {
  ScopeGuard g;
  loom_tensor *t = T({1, -2, 3}, LOOM_SHAPE(3));
  for (loom_reduce_op op : {LOOM_REDUCE_SUM, LOOM_REDUCE_AVG, LOOM_REDUCE_MAX, LOOM_REDUCE_MIN}) {
    ASSERT_EQ(loom_all_reduce(t, op), LOOM_OK) << loom_last_error();
    EXPECT_EQ(V(t), (std::vector<double>{1, -2, 3}));
  }
  ASSERT_EQ(loom_broadcast(t, 0), LOOM_OK);
  loom_tensor *out = loom_zeros(LOOM_SHAPE(3), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_all_gather(out, t), LOOM_OK);
  EXPECT_EQ(V(out), V(t));
  loom_tensor *rs = loom_zeros(LOOM_SHAPE(3), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_reduce_scatter(rs, t, LOOM_REDUCE_SUM), LOOM_OK);
  EXPECT_EQ(V(rs), V(t));
  loom_dist_work *w = loom_all_reduce_async(t, LOOM_REDUCE_SUM);
  ASSERT_NE(w, nullptr);
  EXPECT_TRUE(loom_dist_is_done(w));
  EXPECT_EQ(loom_dist_wait(w), LOOM_OK);
}

TEST(DistCollectives, BadArgumentsAreRefused) {
  ScopeGuard g;
  loom_tensor *m = loom_zeros(LOOM_SHAPE(2, 3), LOOM_F32, loom_cpu());
  loom_tensor *i = loom_zeros(LOOM_SHAPE(3), LOOM_I64, loom_cpu());
  auto fails = [](int st, const char *text) {  // (a NULL argument keeps the previous error: cleared after each)
    EXPECT_NE(st, LOOM_OK);
    EXPECT_NE(std::string(loom_last_error()).find(text), std::string::npos) << loom_last_error();
    loom_clear_error();
  };
  fails(loom_all_reduce(loom_transpose(m, 0, 1), LOOM_REDUCE_SUM), "is not contiguous");
  fails(loom_all_reduce(i, LOOM_REDUCE_AVG), "avg needs a floating tensor, got i64");
  fails(loom_all_reduce(m, (loom_reduce_op)9), "unknown reduce op 9");
  fails(loom_all_reduce(nullptr, LOOM_REDUCE_SUM), "all_reduce: tensor is NULL");
  fails(loom_broadcast(m, 1), "root 1 is outside world size 1");
  fails(loom_all_gather(loom_zeros(LOOM_SHAPE(5), LOOM_F32, loom_cpu()), m), "must hold world size (1) x in [2, 3]");
  fails(loom_all_gather(loom_zeros(LOOM_SHAPE(6), LOOM_I64, loom_cpu()), m), "out is i64 but in is f32");
  fails(loom_all_gather(m, m), "share storage");
  fails(loom_dist_wait(nullptr), "work is NULL");
}

// ---- the DDP wrapper (world size 1: the buckets run, their all-reduce is local) ----
std::vector<std::string> names(loom_named_tensors *l) {
  std::vector<std::string> v(l->names, l->names + l->n);
  loom_named_tensors_free(l);
  return v;
}

TEST(Ddp, SameNamesAndTensorsAsTheModel) {
  Model inner(dist_mlp(1));
  Model ddp(loom_ddp_new(inner.m, nullptr));
  ASSERT_NE(ddp.m, nullptr) << loom_last_error();
  EXPECT_STREQ(loom_module_type(ddp.m), "DistributedDataParallel");
  EXPECT_EQ(loom_ddp_module(ddp.m), inner.m);
  EXPECT_EQ(loom_ddp_module(inner.m), nullptr);
  EXPECT_EQ(names(loom_module_named_parameters(ddp.m)), names(loom_module_named_parameters(inner.m)));
  EXPECT_EQ(loom_module_param(ddp.m, "4.bias"), loom_module_param(inner.m, "4.bias"));
  Model again(loom_ddp_new(inner.m, nullptr));
  EXPECT_EQ(again.m, nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("already belongs to a DDP module"), std::string::npos);
}

TEST(Ddp, CheckpointsAreTheModels) {
  Model inner(dist_mlp(1)), plain(dist_mlp(2));
  Model ddp(loom_ddp_new(inner.m, nullptr));
  std::string path = ::testing::TempDir() + "/loom_ddp_ckpt_" + std::to_string(getpid()) + ".safetensors";
  ASSERT_EQ(loom_checkpoint_save(path.c_str(), ddp.m, nullptr, nullptr, nullptr, nullptr, nullptr), LOOM_OK)
      << loom_last_error();
  loom_checkpoint_meta meta{};
  ASSERT_EQ(loom_checkpoint_load(path.c_str(), plain.m, nullptr, nullptr, nullptr, nullptr, &meta), LOOM_OK)
      << loom_last_error();
  EXPECT_STREQ(meta.model_type, "Sequential");
  EXPECT_EQ(V(loom_module_param(plain.m, "0.weight")), V(loom_module_param(inner.m, "0.weight")));
  remove(path.c_str());
}

TEST(Ddp, GradientsEqualThePlainModels) {
  Model plain(dist_mlp(1)), inner(dist_mlp(1));
  Model ddp(loom_ddp_new(inner.m, nullptr));
  ASSERT_NE(ddp.m, nullptr) << loom_last_error();
  ASSERT_EQ(dist_backward(plain.m, 0, 8), LOOM_OK) << loom_last_error();
  ASSERT_EQ(dist_backward(ddp.m, 0, 8), LOOM_OK) << loom_last_error();
  loom_named_tensors *a = loom_module_named_parameters(plain.m), *b = loom_module_named_parameters(ddp.m);
  for (int i = 0; i < a->n; i++) EXPECT_EQ(V(loom_grad(a->tensors[i])), V(loom_grad(b->tensors[i]))) << a->names[i];
  loom_named_tensors_free(a);
  loom_named_tensors_free(b);
  loom_ddp_stats s{};
  ASSERT_EQ(loom_ddp_get_stats(ddp.m, &s), LOOM_OK);
  EXPECT_EQ(s.buckets, 1);
  EXPECT_EQ(s.steps, 1);
}

struct Launches {
  std::vector<int> buckets;
  std::vector<bool> first_layer_grad;  // did 0.weight have its gradient when the bucket started?
  loom_module *m;
};

void record(int bucket, void *user) {
  Launches *l = (Launches *)user;
  l->buckets.push_back(bucket);
  l->first_layer_grad.push_back(loom_grad(loom_module_param(l->m, "0.weight")) != nullptr);
}

TEST(Ddp, BucketsStartInOrderWhileBackwardRuns) {
  Model inner(dist_mlp(1));
  Launches l{};
  l.m = inner.m;
  loom_ddp_opts o{};
  o.bucket_cap_mb = 1e-6;  // one parameter per bucket
  o.first_bucket_mb = 1e-6;
  o.on_bucket = record;
  o.on_bucket_user = &l;
  Model ddp(loom_ddp_new(inner.m, &o));
  ASSERT_NE(ddp.m, nullptr) << loom_last_error();
  loom_ddp_stats s{};
  loom_ddp_get_stats(ddp.m, &s);
  EXPECT_EQ(s.buckets, 6);
  ASSERT_EQ(dist_backward(ddp.m, 0, 8), LOOM_OK) << loom_last_error();
  ASSERT_EQ(l.buckets, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  // buckets 0..3 (the last two layers) start before the first layer's gradient exists
  for (int i = 0; i < 4; i++) EXPECT_FALSE(l.first_layer_grad[i]) << "bucket " << i;
  EXPECT_TRUE(l.first_layer_grad[5]);
}

TEST(Ddp, DefaultBucketsHoldTheLastParametersFirst) {
  Model inner(LOOM_SEQUENTIAL(loom_nn_linear(512, 512, NULL), loom_nn_linear(512, 1024, NULL),
                              loom_nn_linear(1024, 2048, NULL)));
  Model ddp(loom_ddp_new(inner.m, nullptr));
  ASSERT_NE(ddp.m, nullptr) << loom_last_error();
  loom_ddp_stats s{};
  loom_ddp_get_stats(ddp.m, &s);
  // 2.weight alone passes the 1 MiB first bucket (8 MiB, with 2.bias: 8 KiB); then 25 MiB takes the rest
  EXPECT_EQ(s.buckets, 2);
}

TEST(Ddp, NoSyncAccumulatesLikeOneBigBatch) {
  Model big(dist_mlp(1)), inner(dist_mlp(1));
  Model ddp(loom_ddp_new(inner.m, nullptr));
  ASSERT_EQ(dist_backward(big.m, 0, 8), LOOM_OK);
  ASSERT_EQ(loom_ddp_set_sync(ddp.m, false), LOOM_OK);
  ASSERT_EQ(dist_backward(ddp.m, 0, 4), LOOM_OK);
  ASSERT_EQ(loom_ddp_set_sync(ddp.m, true), LOOM_OK);
  ASSERT_EQ(dist_backward(ddp.m, 4, 4), LOOM_OK);
  loom_ddp_stats s{};
  loom_ddp_get_stats(ddp.m, &s);
  EXPECT_EQ(s.steps, 1);
  loom_named_tensors *a = loom_module_named_parameters(big.m), *b = loom_module_named_parameters(ddp.m);
  ScopeGuard g;
  for (int i = 0; i < a->n; i++) {
    loom_tensor *half = loom_mul_scalar(loom_grad(b->tensors[i]), 0.5);  // two means of 4 = 2 x the mean of 8
    EXPECT_LT(rel_err(half, loom_grad(a->tensors[i])), 1e-6) << a->names[i];
  }
  loom_named_tensors_free(a);
  loom_named_tensors_free(b);
  EXPECT_NE(loom_ddp_set_sync(big.m, false), LOOM_OK);
  EXPECT_NE(std::string(loom_last_error()).find("is Sequential, not a DDP module"), std::string::npos);
}

// A model whose second branch the loss never uses.
loom_tensor *first_only(loom_module *m, loom_tensor *const *in, int n) {
  return loom_forward(loom_module_child(m, "a"), in[0]);
}
const loom_module_kind TWO_BRANCHES = {"TwoBranches", first_only, nullptr, nullptr, nullptr};

TEST(Ddp, UnusedParametersAreAnErrorUnlessAsked) {
  for (bool find : {false, true}) {
    loom_module *inner = loom_module_new(&TWO_BRANCHES, nullptr);
    loom_module_add(inner, "a", loom_nn_linear(6, 3, NULL));
    loom_module_add(inner, "b", loom_nn_linear(6, 3, NULL));
    loom_ddp_opts o{};
    o.find_unused_parameters = find;
    Model ddp(loom_ddp_new(inner, &o));
    loom_module_free(inner);
    ASSERT_NE(ddp.m, nullptr) << loom_last_error();
    int st = dist_backward(ddp.m, 0, 4);
    if (!find) {
      EXPECT_NE(st, LOOM_OK);
      EXPECT_NE(std::string(loom_last_error()).find("parameter 'b.bias' received no gradient"), std::string::npos)
          << loom_last_error();
    } else {
      EXPECT_EQ(st, LOOM_OK) << loom_last_error();
      EXPECT_NE(loom_grad(loom_module_param(ddp.m, "a.weight")), nullptr);
      EXPECT_EQ(loom_grad(loom_module_param(ddp.m, "b.weight")), nullptr);  // unused everywhere: stays none
    }
  }
}

TEST(Ddp, TrainsLikeThePlainModel) {
  Model plain(dist_mlp(3)), inner(dist_mlp(3));
  Model ddp(loom_ddp_new(inner.m, nullptr));
  ASSERT_NE(ddp.m, nullptr);
  loom_sgd_opts so{};
  so.lr = 0.2;
  so.momentum = 0.9;
  loom_optimizer *opts[2] = {loom_sgd_module(plain.m, &so), loom_sgd_module(ddp.m, &so)};
  loom_module *models[2] = {plain.m, ddp.m};
  double first = 0, last[2] = {0, 0};
  for (int step = 0; step < 60; step++) {
    for (int k = 0; k < 2; k++) {
      loom_scope_begin();
      loom_tensor *x, *y;
      dist_batch(0, 16, &x, &y);
      loom_tensor *loss = loom_cross_entropy(loom_forward(models[k], x), y, NULL);
      ASSERT_EQ(loom_backward(loss, NULL, false), LOOM_OK) << loom_last_error();
      ASSERT_EQ(loom_optimizer_step(opts[k]), LOOM_OK);
      loom_optimizer_zero_grad(opts[k]);
      last[k] = loom_item(loss);
      if (step == 0) first = last[k];
      loom_scope_end();
    }
    ASSERT_EQ(last[0], last[1]) << "step " << step;
  }
  EXPECT_LT(last[1], 0.5 * first);
  for (loom_optimizer *o : opts) loom_optimizer_free(o);
}

}  // namespace
