// Profiling: the op profiler (counts, times, leaf-only counting of f16/bf16
// conversions, stop, restart, threads), the per-layer forward profile (names,
// types, calls, self and total time, memory, nested peaks), errors, and CUDA.
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "loom_test.h"

namespace {

std::vector<loom_op_stat> op_stats() {
  int n = loom_profiler_ops(nullptr, 0);
  EXPECT_GE(n, 0) << loom_last_error();
  std::vector<loom_op_stat> v(n > 0 ? n : 0);
  if (n > 0) EXPECT_EQ(loom_profiler_ops(v.data(), n), n);
  return v;
}

// Calls of op on device type d (0 when not recorded).
int64_t calls(const char *op, loom_device_type d = LOOM_CPU) {
  for (const loom_op_stat &s : op_stats())
    if (std::string(s.op) == op && s.device == d) return s.calls;
  return 0;
}

std::map<std::string, int64_t> counts_by_op() {
  std::map<std::string, int64_t> m;
  for (const loom_op_stat &s : op_stats()) m[s.op] += s.calls;
  return m;
}

std::string printed(int top) {
  char *buf = nullptr;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  EXPECT_EQ(loom_profiler_print(f, top), 0);
  fclose(f);
  std::string s(buf, len);
  free(buf);
  return s;
}

TEST(OpProfiler, CountsAKnownSequence) {
  ScopeGuard scope;
  loom_tensor *a = loom_rand(LOOM_SHAPE(64, 32), LOOM_F32, loom_cpu());
  loom_tensor *b = loom_rand(LOOM_SHAPE(32, 16), LOOM_F32, loom_cpu());
  loom_tensor *c = loom_rand(LOOM_SHAPE(64, 16), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_profiler_start(), 0) << loom_last_error();
  loom_tensor *y = loom_add(loom_add(loom_matmul(a, b), c), c);
  ASSERT_NE(y, nullptr) << loom_last_error();
  ASSERT_EQ(loom_profiler_stop(), 0) << loom_last_error();

  ASSERT_STREQ(loom_op_name(loom_op_find("matmul")), "matmul");
  ASSERT_STREQ(loom_op_name(loom_op_find("add")), "add");
  EXPECT_EQ(calls("matmul"), 1);
  EXPECT_EQ(calls("add"), 2);
  EXPECT_EQ(calls("matmul", LOOM_CUDA), 0);
  std::vector<loom_op_stat> v = op_stats();
  ASSERT_EQ(v.size(), 2u) << printed(0);
  double total = 0;
  for (size_t i = 0; i < v.size(); i++) {
    EXPECT_GE(v[i].total_ms, 0.0);
    if (i) EXPECT_GE(v[i - 1].total_ms, v[i].total_ms) << "sorted by total time";
    total += v[i].total_ms;
  }
  EXPECT_GT(total, 0.0);

  // A small cap fills what fits and still returns the count.
  loom_op_stat one;
  EXPECT_EQ(loom_profiler_ops(&one, 1), 2);
  EXPECT_STREQ(one.op, v[0].op);

  std::string table = printed(0);
  EXPECT_NE(table.find("matmul"), std::string::npos) << table;
  EXPECT_NE(table.find("mean us"), std::string::npos) << table;
  EXPECT_NE(printed(1).find("(1 more ops not shown)"), std::string::npos) << printed(1);

  // Not recording after stop; the table stays as it was.
  loom_add(a, a);
  EXPECT_EQ(calls("add"), 2);

  // A restart clears the table.
  ASSERT_EQ(loom_profiler_start(), 0);
  EXPECT_EQ(loom_profiler_ops(nullptr, 0), 0);
  loom_add(a, a);
  ASSERT_EQ(loom_profiler_stop(), 0);
  EXPECT_EQ(calls("add"), 1);
  EXPECT_EQ(calls("matmul"), 0);
}

// CPU kernels run f16 / bf16 through f32: the op counts once, the conversions as copy.
TEST(OpProfiler, HalfOnCpuCountsTheOpOnce) {
  ScopeGuard scope;
  for (loom_dtype dt : {LOOM_F16, LOOM_BF16}) {
    SCOPED_TRACE(loom_dtype_name(dt));
    loom_tensor *a = loom_rand(LOOM_SHAPE(8, 8), dt, loom_cpu());
    loom_tensor *b = loom_rand(LOOM_SHAPE(8, 8), dt, loom_cpu());
    ASSERT_EQ(loom_profiler_start(), 0);
    ASSERT_NE(loom_add(a, b), nullptr) << loom_last_error();
    ASSERT_EQ(loom_profiler_stop(), 0);
    EXPECT_EQ(calls("add"), 1) << printed(0);
    bool native = loom_supports_op(LOOM_CPU, loom_op_find("add"), dt);
    EXPECT_EQ(calls("copy"), native ? 0 : 3) << "two inputs in, one output back\n" << printed(0);
  }
}

TEST(OpProfiler, CountsLaunchesFromEveryThread) {
  const int per_thread = 200;
  ASSERT_EQ(loom_profiler_start(), 0);
  auto work = [] {
    loom_scope_begin();
    loom_tensor *x = loom_ones(LOOM_SHAPE(16), LOOM_F32, loom_cpu());
    for (int i = 0; i < per_thread; i++) {
      loom_scope_begin();
      loom_add(x, x);
      loom_scope_end();
    }
    loom_scope_end();
  };
  std::thread t1(work), t2(work);
  t1.join();
  t2.join();
  ASSERT_EQ(loom_profiler_stop(), 0);
  EXPECT_EQ(calls("add"), 2 * per_thread);
  EXPECT_EQ(calls("fill"), 2);
}

TEST(OpProfiler, Errors) {
  loom_clear_error();
  EXPECT_EQ(loom_profiler_stop(), LOOM_ERR_INVALID);
  EXPECT_NE(std::string(loom_last_error()).find("loom_profiler_stop"), std::string::npos) << loom_last_error();
  ASSERT_EQ(loom_profiler_start(), 0);
  EXPECT_EQ(loom_profiler_start(), LOOM_ERR_INVALID);
  EXPECT_NE(std::string(loom_last_error()).find("loom_profiler_start: the profiler is already running"),
            std::string::npos)
      << loom_last_error();
  EXPECT_EQ(loom_profiler_stop(), 0);
  EXPECT_EQ(loom_profiler_stop(), LOOM_ERR_INVALID);
  EXPECT_EQ(loom_profiler_ops(nullptr, 3), -1);
  EXPECT_NE(std::string(loom_last_error()).find("loom_profiler_ops"), std::string::npos) << loom_last_error();
  loom_op_stat s;
  EXPECT_EQ(loom_profiler_ops(&s, -1), -1);
  loom_clear_error();
}

// ---- the layer profile ----

std::vector<loom_layer_stat> layer_stats() {
  int n = loom_layer_profile_stats(nullptr, 0);
  EXPECT_GE(n, 0) << loom_last_error();
  std::vector<loom_layer_stat> v(n > 0 ? n : 0);
  if (n > 0) EXPECT_EQ(loom_layer_profile_stats(v.data(), n), n);
  return v;
}

std::string layer_table() {
  char *buf = nullptr;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  EXPECT_EQ(loom_layer_profile_print(f), 0);
  fclose(f);
  std::string s(buf, len);
  free(buf);
  return s;
}

TEST(LayerProfile, SequentialOfLinearReluLinear) {
  Model net(LOOM_SEQUENTIAL(loom_nn_linear(8, 16, nullptr), loom_nn_relu(), loom_nn_linear(16, 4, nullptr)));
  ASSERT_NE(net.m, nullptr) << loom_last_error();
  ScopeGuard scope;
  loom_tensor *x = loom_rand(LOOM_SHAPE(32, 8), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_layer_profile_start(net.m), 0) << loom_last_error();
  const int forwards = 3;
  for (int i = 0; i < forwards; i++) ASSERT_NE(loom_forward(net.m, x), nullptr) << loom_last_error();
  ASSERT_EQ(loom_layer_profile_stop(), 0) << loom_last_error();

  std::vector<loom_layer_stat> v = layer_stats();
  std::string table = layer_table();
  ASSERT_EQ(v.size(), 4u) << table;
  const char *names[] = {"", "0", "1", "2"}, *types[] = {"Sequential", "Linear", "ReLU", "Linear"};
  double children = 0;
  for (int i = 0; i < 4; i++) {
    SCOPED_TRACE(names[i]);
    EXPECT_STREQ(v[i].name, names[i]);
    EXPECT_STREQ(v[i].type, types[i]);
    EXPECT_EQ(v[i].calls, forwards);
    EXPECT_GE(v[i].self_ms, 0.0);
    EXPECT_LE(v[i].self_ms, v[i].total_ms + 1e-9);
    EXPECT_GE(v[i].peak_bytes, v[i].kept_bytes);
    if (i) children += v[i].total_ms;
  }
  EXPECT_GE(v[0].total_ms + 1e-9, children);
  EXPECT_NEAR(v[0].self_ms, v[0].total_ms - children, 1e-6);
  // Each Linear leaves its output allocated: 32 x 16 and 32 x 4 floats at least.
  EXPECT_GE(v[1].kept_bytes, 32 * 16 * 4);
  EXPECT_GE(v[3].kept_bytes, 32 * 4 * 4);
  EXPECT_GE(v[0].kept_bytes, v[1].kept_bytes);
  EXPECT_NE(table.find("(root)"), std::string::npos) << table;
  EXPECT_NE(table.find("ReLU"), std::string::npos) << table;

  // Not recording after stop; a restart resets.
  loom_forward(net.m, x);
  EXPECT_EQ(layer_stats()[1].calls, forwards);
  ASSERT_EQ(loom_layer_profile_start(net.m), 0);
  EXPECT_EQ(layer_stats()[1].calls, 0);
  ASSERT_EQ(loom_layer_profile_stop(), 0);
}

// A module whose forward allocates and frees 1 MiB before returning relu(x).
loom_tensor *spike_forward(loom_module *, loom_tensor *const *in, int) {
  loom_scope_begin();
  loom_empty(LOOM_SHAPE(256, 1024), LOOM_F32, loom_cpu());
  loom_scope_end();
  return loom_relu(in[0]);
}
const loom_module_kind spike_kind = {"Spike", spike_forward, nullptr, nullptr, nullptr};

// A later child's forward resets the pool's peak counter; the parent's peak
// still includes the earlier child's spike, and the user's forward hook runs.
TEST(LayerProfile, NestedPeaksAndTheUserHook) {
  Model net(LOOM_SEQUENTIAL(loom_module_new(&spike_kind, nullptr), loom_nn_linear(8, 8, nullptr)));
  ScopeGuard scope;
  loom_tensor *x = loom_rand(LOOM_SHAPE(4, 8), LOOM_F32, loom_cpu());
  int hooked = 0;
  loom_set_forward_hook([](loom_module *, loom_tensor *const *, int, const loom_tensor *, void *u) { ++*(int *)u; },
                        &hooked);
  ASSERT_EQ(loom_layer_profile_start(net.m), 0);
  ASSERT_NE(loom_forward(net.m, x), nullptr) << loom_last_error();
  ASSERT_EQ(loom_layer_profile_stop(), 0);
  loom_set_forward_hook(nullptr, nullptr);
  EXPECT_EQ(hooked, 3);
  std::vector<loom_layer_stat> v = layer_stats();
  ASSERT_EQ(v.size(), 3u);
  const int64_t MiB = 1 << 20;
  EXPECT_GE(v[1].peak_bytes, MiB) << layer_table();
  EXPECT_LT(v[1].kept_bytes, MiB);
  EXPECT_GE(v[0].peak_bytes, MiB) << layer_table();
  EXPECT_LT(v[2].peak_bytes, MiB) << layer_table();
}

// Only the thread that started records; modules outside the tree are not counted.
TEST(LayerProfile, OnlyTheStartingThreadAndTree) {
  Model net(loom_nn_relu());
  Model other(loom_nn_relu());
  ScopeGuard scope;
  loom_tensor *x = loom_rand(LOOM_SHAPE(4), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_layer_profile_start(net.m), 0);
  std::thread t([&] {
    loom_scope_begin();
    loom_forward(net.m, x);
    EXPECT_EQ(loom_layer_profile_stop(), LOOM_ERR_INVALID);
    EXPECT_NE(std::string(loom_last_error()).find("another thread"), std::string::npos) << loom_last_error();
    loom_scope_end();
  });
  t.join();
  loom_forward(other.m, x);
  loom_forward(net.m, x);
  ASSERT_EQ(loom_layer_profile_stop(), 0);
  std::vector<loom_layer_stat> v = layer_stats();
  ASSERT_EQ(v.size(), 1u);
  EXPECT_STREQ(v[0].name, "");
  EXPECT_STREQ(v[0].type, "ReLU");
  EXPECT_EQ(v[0].calls, 1);
}

TEST(LayerProfile, Errors) {
  Model net(loom_nn_relu());
  loom_clear_error();
  EXPECT_EQ(loom_layer_profile_start(nullptr), LOOM_ERR_INVALID);
  EXPECT_NE(std::string(loom_last_error()).find("loom_layer_profile_start: root is NULL"), std::string::npos)
      << loom_last_error();
  EXPECT_EQ(loom_layer_profile_stop(), LOOM_ERR_INVALID);
  EXPECT_NE(std::string(loom_last_error()).find("loom_layer_profile_stop"), std::string::npos) << loom_last_error();
  ASSERT_EQ(loom_layer_profile_start(net.m), 0);
  EXPECT_EQ(loom_layer_profile_start(net.m), LOOM_ERR_INVALID);
  EXPECT_NE(std::string(loom_last_error()).find("already running"), std::string::npos) << loom_last_error();
  EXPECT_EQ(loom_layer_profile_stop(), 0);
  EXPECT_EQ(loom_layer_profile_stats(nullptr, 2), -1);
  EXPECT_NE(std::string(loom_last_error()).find("loom_layer_profile_stats"), std::string::npos) << loom_last_error();
  loom_clear_error();
}

// A failing forward inside a profile is not counted and leaves its error alone.
TEST(LayerProfile, FailedForward) {
  Model net(loom_nn_linear(8, 4, nullptr));
  ScopeGuard scope;
  loom_tensor *bad = loom_rand(LOOM_SHAPE(2, 5), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_layer_profile_start(net.m), 0);
  EXPECT_EQ(loom_forward(net.m, bad), nullptr);
  std::string err = loom_last_error();
  ASSERT_EQ(loom_layer_profile_stop(), 0);
  EXPECT_EQ(err, loom_last_error());
  EXPECT_EQ(layer_stats()[0].calls, 0);
  loom_clear_error();
}

// ---- CUDA ----

TEST(ProfileCuda, MatmulAndAModelForward) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  loom_tensor *a = loom_rand(LOOM_SHAPE(256, 256), LOOM_F32, loom_cuda(0));
  loom_tensor *b = loom_rand(LOOM_SHAPE(256, 256), LOOM_F32, loom_cuda(0));
  ASSERT_EQ(loom_synchronize(loom_cuda(0)), 0);
  ASSERT_EQ(loom_profiler_start(), 0);
  ASSERT_NE(loom_matmul(a, b), nullptr) << loom_last_error();
  ASSERT_EQ(loom_profiler_stop(), 0) << loom_last_error();
  EXPECT_EQ(calls("matmul", LOOM_CUDA), 1);
  EXPECT_EQ(calls("matmul", LOOM_CPU), 0);
  for (const loom_op_stat &s : op_stats()) EXPECT_GT(s.total_ms, 0.0) << s.op;

  // The same forward counts the same ops on both devices.
  Model net(LOOM_SEQUENTIAL(loom_nn_linear(8, 16, nullptr), loom_nn_relu(), loom_nn_linear(16, 4, nullptr)));
  loom_tensor *x = loom_rand(LOOM_SHAPE(32, 8), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_profiler_start(), 0);
  ASSERT_NE(loom_forward(net.m, x), nullptr);
  ASSERT_EQ(loom_profiler_stop(), 0);
  std::map<std::string, int64_t> cpu = counts_by_op();
  ASSERT_EQ(loom_module_to_device(net.m, loom_cuda(0)), 0) << loom_last_error();
  loom_tensor *xc = loom_to_device(x, loom_cuda(0));
  ASSERT_EQ(loom_profiler_start(), 0);
  ASSERT_NE(loom_forward(net.m, xc), nullptr) << loom_last_error();
  ASSERT_EQ(loom_profiler_stop(), 0);
  EXPECT_EQ(counts_by_op(), cpu);
  EXPECT_EQ(calls("matmul", LOOM_CUDA), 2);
  EXPECT_EQ(calls("matmul", LOOM_CPU), 0);

  // The layer profile on the GPU.
  ASSERT_EQ(loom_layer_profile_start(net.m), 0);
  ASSERT_NE(loom_forward(net.m, xc), nullptr);
  ASSERT_EQ(loom_layer_profile_stop(), 0);
  std::vector<loom_layer_stat> v = layer_stats();
  ASSERT_EQ(v.size(), 4u);
  EXPECT_GT(v[0].total_ms, 0.0);
  EXPECT_GE(v[1].kept_bytes, 32 * 16 * 4);
}

}  // namespace
