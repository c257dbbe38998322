// The NCCL backend on one GPU (world size 1 on cuda:0, which runs the whole
// NCCL path: communicator, communication stream, events, watchdog): the
// start-up line, every collective on every dtype and op, async work, and the
// DDP wrapper against the plain model on the CPU. They skip without a GPU or
// without NCCL. The rendezvous that hands NCCL's id to the other ranks
// (src/dist/store.c) needs no GPU: its tests run everywhere. Runs on more
// than one GPU go through mpirun (ddp_train), not ctest.
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "dist_test_util.h"
#include "loom_test.h"

// src/dist/dist_impl.h (a C header without extern "C")
extern "C" int dist_store_share(int rank, int world_size, void *buf, size_t len, double timeout_s);

namespace {

bool nccl_built() {
  char buf[4096];
  loom_versions(buf, sizeof buf);
  return std::string(buf).find("NCCL: not built") == std::string::npos;
}

bool has(const std::string &text, const char *part) { return text.find(part) != std::string::npos; }

// Joins a world of one on cuda:0 (skipping without a GPU, NCCL, or when a
// launcher's variables would make it larger) and leaves it after the test.
class NcclWorld : public ::testing::Test {
 protected:
  void SetUp() override {
    LOOM_REQUIRE_GPU();
    if (!nccl_built()) GTEST_SKIP() << "built without NCCL";
    for (const char *v : {"WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS"})
      if (getenv(v)) GTEST_SKIP() << v << " is set: these tests are for one process, outside a launcher";
    if (!join_in_test) join();
  }
  void TearDown() override { loom_dist_finalize(); }
  void join(bool quiet = true) {
    loom_dist_opts o{};
    o.device = "cuda:0";
    o.quiet = quiet;
    ASSERT_EQ(loom_dist_init(&o), LOOM_OK) << loom_last_error();
  }
  bool join_in_test = false;
};

class NcclStartup : public NcclWorld {
 protected:
  NcclStartup() { join_in_test = true; }
};

TEST_F(NcclStartup, LineNamesTheBackendAndTheGpu) {
  testing::internal::CaptureStdout();
  join(false);
  std::string line = testing::internal::GetCapturedStdout();
  EXPECT_TRUE(has(line, "rank 0/1 (local 0) on cuda:0 (")) << line;
  EXPECT_TRUE(has(line, ", PCI ")) << line;
  EXPECT_FALSE(has(line, "PCI ?")) << line;
  EXPECT_TRUE(has(line, "launcher none, backend nccl")) << line;
  EXPECT_STREQ(loom_dist_launcher(), "none");
  EXPECT_EQ(loom_dist_world_size(), 1);
  EXPECT_TRUE(loom_device_equal(loom_dist_device(), loom_cuda(0)));
}

TEST_F(NcclWorld, AllReduceOfEveryDtypeAndOpGivesTheInputBack) {
  ScopeGuard g;
  for (loom_dtype dt : {LOOM_F32, LOOM_F64, LOOM_F16, LOOM_BF16, LOOM_I32, LOOM_I64, LOOM_U8, LOOM_BOOL}) {
    std::vector<double> vals = dt == LOOM_BOOL ? std::vector<double>{1, 0, 1, 1} : std::vector<double>{3, 0, 7, 2};
    for (loom_reduce_op op : {LOOM_REDUCE_SUM, LOOM_REDUCE_AVG, LOOM_REDUCE_MAX, LOOM_REDUCE_MIN}) {
      if (op == LOOM_REDUCE_AVG && !loom_dtype_is_float(dt)) continue;   // refused by the checks (test_dist)
      loom_tensor *t = T(vals, LOOM_SHAPE(2, 2), dt, loom_cuda(0));
      ASSERT_EQ(loom_all_reduce(t, op), LOOM_OK) << loom_dtype_name(dt) << " " << loom_reduce_op_name(op) << ": "
                                                 << loom_last_error();
      EXPECT_EQ(V(t), vals) << loom_dtype_name(dt) << " " << loom_reduce_op_name(op);
    }
  }
}

TEST_F(NcclWorld, BroadcastGatherAndScatterCopy) {
  ScopeGuard g;
  loom_device gpu = loom_cuda(0);
  loom_tensor *t = T({1, -2, 3, 4.5}, LOOM_SHAPE(4), LOOM_F32, gpu);
  ASSERT_EQ(loom_broadcast(t, 0), LOOM_OK) << loom_last_error();
  EXPECT_EQ(V(t), (std::vector<double>{1, -2, 3, 4.5}));
  loom_tensor *out = T({9, 9, 9, 9}, LOOM_SHAPE(4), LOOM_F32, gpu);   // poisoned: an unwritten element fails
  ASSERT_EQ(loom_all_gather(out, t), LOOM_OK) << loom_last_error();
  EXPECT_EQ(V(out), V(t));
  for (loom_reduce_op op : {LOOM_REDUCE_SUM, LOOM_REDUCE_AVG}) {
    loom_tensor *rs = T({9, 9, 9, 9}, LOOM_SHAPE(2, 2), LOOM_F32, gpu);
    ASSERT_EQ(loom_reduce_scatter(rs, t, op), LOOM_OK) << loom_last_error();
    EXPECT_EQ(V(rs), V(t)) << loom_reduce_op_name(op);
  }
  loom_tensor *empty = loom_zeros(LOOM_SHAPE(0), LOOM_F32, gpu);
  EXPECT_EQ(loom_all_reduce(empty, LOOM_REDUCE_SUM), LOOM_OK) << loom_last_error();
  EXPECT_EQ(loom_barrier(), LOOM_OK) << loom_last_error();
}

TEST_F(NcclWorld, AsyncWorkEndsAndItsResultReadsBack) {
  ScopeGuard g;
  loom_manual_seed(3);
  loom_tensor *t = loom_randn(LOOM_SHAPE(1 << 20), LOOM_F32, loom_cuda(0));
  std::vector<double> before = V(t);
  loom_dist_work *w[3];
  for (auto &wi : w) ASSERT_NE(wi = loom_all_reduce_async(t, LOOM_REDUCE_MAX), nullptr) << loom_last_error();
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!loom_dist_is_done(w[2]) && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(loom_dist_is_done(w[2])) << "the watchdog never marked the work done";
  for (auto &wi : w) EXPECT_EQ(loom_dist_wait(wi), LOOM_OK) << loom_last_error();
  EXPECT_EQ(V(t), before);
  // waited before the GPU ends it: the compute stream orders the read after it
  loom_dist_work *late = loom_all_reduce_async(t, LOOM_REDUCE_SUM);
  ASSERT_NE(late, nullptr) << loom_last_error();
  EXPECT_EQ(loom_dist_wait(late), LOOM_OK) << loom_last_error();
  EXPECT_EQ(V(t), before);
}

TEST_F(NcclWorld, TensorsOffTheRankDeviceAreRefused) {
  ScopeGuard g;
  loom_tensor *cpu = T({1, 2}, LOOM_SHAPE(2));
  EXPECT_NE(loom_all_reduce(cpu, LOOM_REDUCE_SUM), LOOM_OK);
  EXPECT_TRUE(has(loom_last_error(), "is on cpu but the NCCL backend works on this rank's device cuda:0"))
      << loom_last_error();
}

TEST_F(NcclWorld, DdpOnTheGpuGivesTheCpuGradients) {
  Model plain(dist_mlp(11));
  ASSERT_EQ(dist_backward(plain.m, 0, 8), LOOM_OK) << loom_last_error();

  Model inner(dist_mlp(11));   // the same seed: the same weights
  ASSERT_EQ(loom_module_to_device(inner.m, loom_cuda(0)), LOOM_OK) << loom_last_error();
  Model ddp(loom_ddp_new(inner.m, nullptr));
  ASSERT_NE(ddp.m, nullptr) << loom_last_error();
  {
    ScopeGuard g;
    loom_tensor *x, *y;
    dist_batch(0, 8, &x, &y);
    loom_tensor *loss = loom_cross_entropy(loom_forward(ddp.m, loom_to(x, loom_cuda(0), LOOM_F32)),
                                           loom_to(y, loom_cuda(0), LOOM_I64), NULL);
    ASSERT_NE(loss, nullptr) << loom_last_error();
    ASSERT_EQ(loom_backward(loss, NULL, false), LOOM_OK) << loom_last_error();
  }
  loom_named_tensors *want = loom_module_named_parameters(plain.m), *got = loom_module_named_parameters(ddp.m);
  ASSERT_EQ(got->n, want->n);
  for (int i = 0; i < want->n; i++) {
    EXPECT_STREQ(got->names[i], want->names[i]);
    EXPECT_LT(rel_err(loom_grad(got->tensors[i]), loom_grad(want->tensors[i])), 1e-4) << want->names[i];
  }
  loom_named_tensors_free(want);
  loom_named_tensors_free(got);
  loom_ddp_stats s{};
  ASSERT_EQ(loom_ddp_get_stats(ddp.m, &s), LOOM_OK);
  EXPECT_EQ(s.steps, 1);
}

// ---- the rendezvous (no GPU needed) ----

// Restores MASTER_ADDR / MASTER_PORT after a test.
struct MasterEnv {
  std::string addr, port;
  bool had_addr, had_port;
  MasterEnv() {
    const char *a = getenv("MASTER_ADDR"), *p = getenv("MASTER_PORT");
    had_addr = a, had_port = p;
    if (a) addr = a;
    if (p) port = p;
  }
  ~MasterEnv() {
    if (had_addr) setenv("MASTER_ADDR", addr.c_str(), 1); else unsetenv("MASTER_ADDR");
    if (had_port) setenv("MASTER_PORT", port.c_str(), 1); else unsetenv("MASTER_PORT");
  }
};

// A listening socket on a free loopback port (fd, port); with listen = false, only a free port.
std::pair<int, int> loopback(bool listening) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, (sockaddr *)&a, sizeof a), 0);
  socklen_t len = sizeof a;
  getsockname(fd, (sockaddr *)&a, &len);
  if (listening) EXPECT_EQ(listen(fd, 4), 0);
  else close(fd), fd = -1;
  return {fd, ntohs(a.sin_port)};
}

// The store listens on MASTER_PORT + 1 (torchrun's store holds MASTER_PORT): makes it use port.
void use_port(int port) {
  setenv("MASTER_ADDR", "127.0.0.1", 1);
  setenv("MASTER_PORT", std::to_string(port - 1).c_str(), 1);
}

TEST(NcclStore, RankZeroHandsItsBytesToEveryRank) {
  MasterEnv env;
  use_port(loopback(false).second);
  unsigned char id[128], got[2][128] = {};
  for (int i = 0; i < 128; i++) id[i] = (unsigned char)(i * 37 + 1);
  int st[2] = {-1, -1};
  std::thread peers[2];
  for (int r = 1; r <= 2; r++)   // they start first: they retry until rank 0 listens
    peers[r - 1] = std::thread([&, r] { st[r - 1] = dist_store_share(r, 3, got[r - 1], sizeof id, 20); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(dist_store_share(0, 3, id, sizeof id, 20), LOOM_OK) << loom_last_error();
  for (auto &t : peers) t.join();
  for (int r = 0; r < 2; r++) {
    EXPECT_EQ(st[r], LOOM_OK);
    EXPECT_EQ(memcmp(got[r], id, sizeof id), 0) << "rank " << r + 1;
  }
}

TEST(NcclStore, MissingVariablesAreNamed) {
  MasterEnv env;
  unsigned char id[128];
  unsetenv("MASTER_ADDR");
  setenv("MASTER_PORT", "29500", 1);
  EXPECT_NE(dist_store_share(1, 2, id, sizeof id, 1), LOOM_OK);
  EXPECT_TRUE(has(loom_last_error(), "MASTER_ADDR is not set")) << loom_last_error();
  setenv("MASTER_ADDR", "127.0.0.1", 1);
  unsetenv("MASTER_PORT");
  EXPECT_NE(dist_store_share(0, 2, id, sizeof id, 1), LOOM_OK);
  EXPECT_TRUE(has(loom_last_error(), "MASTER_PORT is not set")) << loom_last_error();
  setenv("MASTER_PORT", "http", 1);
  EXPECT_NE(dist_store_share(1, 2, id, sizeof id, 1), LOOM_OK);
  EXPECT_TRUE(has(loom_last_error(), "MASTER_PORT='http' is not a TCP port")) << loom_last_error();
  EXPECT_EQ(dist_store_share(0, 1, id, sizeof id, 1), LOOM_OK);   // a world of one needs nothing
}

TEST(NcclStore, NoRankZeroTimesOutNamingAddressAndPort) {
  MasterEnv env;
  int port = loopback(false).second;
  use_port(port);
  unsigned char id[128];
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_NE(dist_store_share(1, 2, id, sizeof id, 0.5), LOOM_OK);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  std::string want =
      "rank 1 could not reach rank 0 at MASTER_ADDR=127.0.0.1 port " + std::to_string(port) + " (MASTER_PORT + 1)";
  EXPECT_TRUE(has(loom_last_error(), want.c_str())) << loom_last_error();
  // rank 0 whose peers never come
  use_port(loopback(false).second);
  EXPECT_NE(dist_store_share(0, 2, id, sizeof id, 0.5), LOOM_OK);
  EXPECT_TRUE(has(loom_last_error(), "only 1 of 2 ranks reached rank 0")) << loom_last_error();
}

// Another program on the port, or a rank 0 that sends too little: errors, not crashes.
TEST(NcclStore, ShortOrForeignAnswersAreErrors) {
  MasterEnv env;
  for (std::string answer : {std::string("loomid1\0short", 13), std::string("HTTP/1.1 400 Bad Request\r\n")}) {
    auto [fd, port] = loopback(true);
    use_port(port);
    std::thread server([fd = fd, &answer] {
      int c = accept(fd, nullptr, nullptr);
      if (c >= 0) {
        EXPECT_EQ(write(c, answer.data(), answer.size()), (ssize_t)answer.size());
        close(c);
      }
      close(fd);
    });
    unsigned char id[128];
    EXPECT_NE(dist_store_share(1, 2, id, sizeof id, 5), LOOM_OK);
    server.join();
    const char *want = answer[0] == 'l' ? "sent 5 of 128 bytes" : "is not Loom's rank 0";
    EXPECT_TRUE(has(loom_last_error(), want)) << loom_last_error();
  }
}

}  // namespace
