// The CUDA runtime: host <-> device transfers of every dtype, the current
// stream, streams ordered by events, event timing, reuse of freed blocks,
// threads with their own streams, and a tensor of more than 2^31 elements.
// Kernels against the CPU are in test_cuda.cpp. Every test skips itself when
// no GPU is visible.
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "loom_test.h"

namespace {

const loom_device CPU = {LOOM_CPU, 0}, GPU = {LOOM_CUDA, 0};
const loom_dtype ALL[] = {LOOM_F32, LOOM_F64, LOOM_F16, LOOM_BF16, LOOM_I32, LOOM_I64, LOOM_U8, LOOM_BOOL};

// Fails the test when it ends with more live tensors than it began with.
struct LeakCheck {
  int64_t before = loom_live_tensors();
  ~LeakCheck() { EXPECT_EQ(loom_live_tensors(), before) << "tensors leaked by this test"; }
};

// Fresh allocations are NaN (0xFF bytes) while this lives, so unwritten or
// not-yet-written results show.
struct Poison {
  Poison() { loom_set_poison(true); }
  ~Poison() { loom_set_poison(false); }
};

// A stream of cuda:0, made current on this thread by use(); on exit the
// default stream is current again and the stream is destroyed.
struct OwnStream {
  loom_stream *s = loom_stream_create(GPU);
  void use() const { loom_set_current_stream(GPU, s); }
  ~OwnStream() {
    if (loom_current_stream(GPU) == s) loom_set_current_stream(GPU, nullptr);
    loom_stream_destroy(s);
  }
};

struct OwnEvent {
  loom_event *e = loom_event_create(GPU);
  ~OwnEvent() { loom_event_destroy(e); }
};

// The bytes of t's elements in row-major order (empty on failure).
std::vector<unsigned char> Bytes(const loom_tensor *t) {
  if (!t) return {};
  std::vector<unsigned char> v((size_t)loom_numel(t) * loom_dtype_size(loom_dtype_of(t)));
  if (loom_to_host(t, v.data(), v.size()) != 0) {
    ADD_FAILURE() << "to_host: " << loom_last_error();
    return {};
  }
  return v;
}

std::vector<unsigned char> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<unsigned char> v(n);
  for (unsigned char &b : v) b = (unsigned char)(rng() >> 24);
  return v;
}

// ones @ ones / side, `rounds` times, on the current stream: about 2 * side^3 *
// rounds flops of GPU work whose result is exactly ones (sums of ones are exact).
loom_tensor *SlowOnes(int64_t side, int rounds) {
  loom_tensor *ones = loom_ones(LOOM_SHAPE(side, side), LOOM_F32, GPU), *a = ones;
  for (int i = 0; i < rounds; i++) a = loom_mul_scalar(loom_matmul(a, ones), 1.0 / (double)side);
  return a;
}

// x on the CPU (f32) and on cuda:0, side x side, values in [1, 5).
void HostAndDevice(int64_t side, uint64_t seed, loom_tensor **x, loom_tensor **gx) {
  loom_manual_seed_device(CPU, seed);
  *x = loom_add_scalar(loom_mul_scalar(loom_rand(LOOM_SHAPE(side, side), LOOM_F32, CPU), 4.0), 1.0);
  *gx = loom_to_device(*x, GPU);
}

TEST(Cuda, TransfersRoundTripBitExact) {
  LOOM_REQUIRE_GPU();
  LeakCheck leaks;
  const loom_shape shapes[] = {LOOM_SHAPE(37, 53), LOOM_SHAPE(0, 5), LOOM_SHAPE(), LOOM_SHAPE(1)};
  uint32_t seed = 1;
  for (loom_dtype dt : ALL) {
    for (loom_shape s : shapes) {
      ScopeGuard scope;
      const std::string on = std::string(" ") + loom_dtype_name(dt) + " " + loom_shape_str(s);
      // Random bytes, so NaN payloads and bool bytes other than 0 / 1 too: copies keep bits.
      const std::vector<unsigned char> bytes = RandomBytes((size_t)loom_shape_numel(s) * loom_dtype_size(dt), seed++);
      loom_tensor *host = loom_from_host(bytes.data(), s, dt, CPU);
      loom_tensor *g = loom_to(host, GPU, dt);
      ASSERT_NE(g, nullptr) << "to cuda:0" << on << ": " << loom_last_error();
      EXPECT_TRUE(loom_device_equal(loom_device_of(g), GPU)) << "to cuda:0" << on;
      EXPECT_EQ(loom_dtype_of(g), dt) << "to cuda:0" << on;
      EXPECT_EQ(Bytes(loom_to(g, CPU, dt)), bytes) << "cpu -> cuda:0 -> cpu" << on;
      EXPECT_EQ(Bytes(g), bytes) << "to_host from cuda:0" << on;
      EXPECT_EQ(Bytes(loom_from_host(bytes.data(), s, dt, GPU)), bytes) << "from_host to cuda:0" << on;
      if (s.ndim != 2 || loom_shape_numel(s) == 0) continue;
      // Strided sources on either side, and a strided destination on the device.
      EXPECT_EQ(Bytes(loom_to(loom_transpose(g, 0, 1), CPU, dt)), Bytes(loom_transpose(host, 0, 1)))
          << "transposed view cuda:0 -> cpu" << on;
      EXPECT_EQ(Bytes(loom_to(loom_narrow(host, 1, 3, 41), GPU, dt)), Bytes(loom_narrow(host, 1, 3, 41)))
          << "view at offset 3 cpu -> cuda:0" << on;
      loom_tensor *gt = loom_empty(LOOM_SHAPE(s.d[1], s.d[0]), dt, GPU);
      EXPECT_EQ(loom_copy_(loom_transpose(gt, 0, 1), host), 0) << "copy_ into a transposed view" << on;
      EXPECT_EQ(Bytes(loom_transpose(gt, 0, 1)), bytes) << "copy_ into a transposed view" << on;
    }
  }
}

TEST(Cuda, CurrentStreamIsUsed) {
  LOOM_REQUIRE_GPU();
  LeakCheck leaks;
  OwnStream stream;
  ASSERT_NE(stream.s, nullptr) << loom_last_error();
  stream.use();
  ASSERT_EQ(loom_current_stream(GPU), stream.s);
  OwnEvent start, end;
  ASSERT_TRUE(start.e && end.e) << loom_last_error();
  ScopeGuard scope;
  Poison poison;
  loom_tensor *x, *gx;
  HostAndDevice(4096, 21, &x, &gx);
  ASSERT_NE(gx, nullptr) << loom_last_error();
  ASSERT_EQ(loom_event_record(start.e, stream.s), 0) << loom_last_error();
  // Long work on the current stream; reading back waits only for the current
  // stream, so work queued anywhere else would be read half done (NaN).
  loom_tensor *y = loom_mul(SlowOnes(4096, 10), gx);
  ASSERT_NE(y, nullptr) << loom_last_error();
  EXPECT_EQ(loom_event_record(end.e, nullptr), 0) << "record on the current stream: " << loom_last_error();
  EXPECT_EQ(V(y), V(x)) << "(ones @ ones / 4096)^10 * x, f32 [4096, 4096], on a new current stream";
  // After loom_stream_synchronize, results are readable from the default stream.
  loom_tensor *z = loom_add(y, y);
  ASSERT_EQ(loom_stream_synchronize(stream.s), 0) << loom_last_error();
  loom_set_current_stream(GPU, nullptr);
  std::vector<double> want = V(x);
  for (double &w : want) w *= 2;
  EXPECT_EQ(V(z), want) << "y + y, f32 [4096, 4096], on the new stream, read after loom_stream_synchronize";
  float ms = loom_event_elapsed_ms(start.e, end.e);
  EXPECT_TRUE(std::isfinite(ms) && ms >= 0) << "elapsed ms around the work on the stream: " << ms;
}

TEST(Cuda, StreamsOrderedByEvents) {
  LOOM_REQUIRE_GPU();
  LeakCheck leaks;
  OwnStream producer, consumer;
  OwnEvent done;
  ASSERT_TRUE(producer.s && consumer.s && done.e) << loom_last_error();
  ScopeGuard scope;
  Poison poison;
  producer.use();
  loom_tensor *x, *gx;
  HostAndDevice(4096, 22, &x, &gx);
  loom_tensor *y = loom_mul(SlowOnes(4096, 10), gx);
  ASSERT_NE(y, nullptr) << loom_last_error();
  ASSERT_EQ(loom_event_record(done.e, producer.s), 0) << loom_last_error();
  consumer.use();
  ASSERT_EQ(loom_stream_wait_event(consumer.s, done.e), 0) << loom_last_error();
  loom_tensor *z = loom_add(y, gx);  // on the consumer stream, after the producer's work
  ASSERT_NE(z, nullptr) << loom_last_error();
  ASSERT_EQ(loom_stream_synchronize(consumer.s), 0) << loom_last_error();
  loom_set_current_stream(GPU, nullptr);
  std::vector<double> want = V(x);
  for (double &w : want) w *= 2;
  EXPECT_EQ(V(z), want) << "add f32 [4096, 4096] on a stream waiting for an event of the stream computing y";
}

TEST(Cuda, EventsTimeWork) {
  LOOM_REQUIRE_GPU();
  LeakCheck leaks;
  OwnEvent e0, e1;
  ASSERT_TRUE(e0.e && e1.e) << loom_last_error();
  ScopeGuard scope;
  ASSERT_EQ(loom_event_record(e0.e, nullptr), 0) << loom_last_error();
  loom_tensor *a = SlowOnes(2048, 4);
  ASSERT_EQ(loom_event_record(e1.e, nullptr), 0) << loom_last_error();
  ASSERT_EQ(loom_event_synchronize(e1.e), 0) << loom_last_error();
  float ms = loom_event_elapsed_ms(e0.e, e1.e);
  EXPECT_TRUE(std::isfinite(ms) && ms >= 0) << "elapsed ms of four f32 [2048, 2048] matmuls: " << ms;
  EXPECT_EQ(V(loom_sum(a, nullptr, 0, false)), std::vector<double>{2048.0 * 2048.0}) << "sum of the timed result";
  loom_clear_error();
  EXPECT_TRUE(std::isnan(loom_event_elapsed_ms(nullptr, e1.e))) << "elapsed ms with a NULL event";
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INVALID) << "elapsed ms with a NULL event";
}

TEST(Cuda, FreedBlocksAreReusedSafely) {
  LOOM_REQUIRE_GPU();
  LeakCheck leaks;
  const int64_t n = 1 << 24;
  const std::vector<float> ones((size_t)n, 1.0f);
  for (bool own : {false, true}) {
    OwnStream stream;
    ASSERT_NE(stream.s, nullptr) << loom_last_error();
    if (own) stream.use();
    for (int it = 0; it < 10; it++) {
      ScopeGuard scope;
      loom_tensor *busy;
      {
        ScopeGuard inner;  // frees big while the kernels reading it may still run
        loom_tensor *big = loom_full(LOOM_SHAPE(n), 3.0, LOOM_F32, GPU);
        busy = loom_keep(loom_sum(loom_exp(loom_mul(big, big)), nullptr, 0, false));
      }
      // A host -> device copy into memory the pool may have just handed back.
      loom_tensor *fresh = loom_from_host(ones.data(), LOOM_SHAPE(n), LOOM_F32, GPU);
      EXPECT_EQ(loom_item(loom_sum(fresh, nullptr, 0, false)), (double)n)
          << "sum of f32 [2^24] ones copied in after a free, round " << it << (own ? ", own stream" : ", default stream");
      EXPECT_TRUE(std::isfinite(loom_item(busy))) << "sum(exp(9)) f32 [2^24], round " << it;
    }
  }
}

TEST(Cuda, ThreadsWithTheirOwnStreams) {
  LOOM_REQUIRE_GPU();
  LeakCheck leaks;
  const int threads = 4, rounds = 50;
  std::vector<std::string> trouble(threads);
  std::vector<std::thread> pool;
  for (int k = 0; k < threads; k++)
    pool.emplace_back([k, &trouble] {
      loom_stream *st = k % 2 ? loom_stream_create(GPU) : nullptr;  // odd threads: own stream
      loom_set_current_stream(GPU, st);
      for (int it = 0; it < rounds && trouble[k].empty(); it++) {
        ScopeGuard scope;
        std::vector<float> v((size_t)(100000 + k)), back(v.size());
        for (size_t i = 0; i < v.size(); i++) v[i] = (float)(i % 1000 + k + it);
        loom_tensor *h = loom_mul_scalar(loom_from_host(v.data(), LOOM_SHAPE((int64_t)v.size()), LOOM_F32, GPU), 2.0);
        if (loom_to_host(h, back.data(), back.size() * sizeof(float)) != 0)
          trouble[k] = std::string("round ") + std::to_string(it) + ": " + loom_last_error();
        for (size_t i = 0; i < v.size() && trouble[k].empty(); i++)
          if (back[i] != 2 * v[i])
            trouble[k] = "round " + std::to_string(it) + ": element " + std::to_string(i) + " is " +
                         std::to_string(back[i]) + ", want " + std::to_string(2 * v[i]);
      }
      loom_set_current_stream(GPU, nullptr);
      loom_stream_destroy(st);
    });
  for (std::thread &t : pool) t.join();
  for (int k = 0; k < threads; k++)
    EXPECT_EQ(trouble[k], "") << "thread " << k << (k % 2 ? " (own stream)" : " (default stream)")
                              << ": from_host, mul_scalar 2, to_host of f32 [" << 100000 + k << "]";
}

// ---- More than 2^31 elements (a u8 tensor of 2 GiB; about 6 GiB at the
// peak). Skipped on GPUs with less than 16 GiB, or less than 10 GiB free. ----
TEST(Cuda, MoreThan2Pow31Elements) {
  LOOM_REQUIRE_GPU();
  loom_device_info info;
  ASSERT_EQ(loom_cuda_device_info(0, &info), 0) << loom_last_error();
  const double GiB = 1024.0 * 1024.0 * 1024.0;
  if (info.total_memory < 16 * GiB)
    GTEST_SKIP() << "needs a GPU with at least 16 GiB; " << info.name << " has " << info.total_memory / GiB << " GiB";
  if (info.free_memory < 10 * GiB)
    GTEST_SKIP() << "needs 10 GiB free on " << info.name << "; " << info.free_memory / GiB << " GiB are free";
  LeakCheck leaks;
  ScopeGuard scope;
  const int64_t n = (1LL << 31) + 1000;
  loom_memory_stats before, after;
  ASSERT_EQ(loom_memory_stats_get(GPU, &before), 0) << loom_last_error();
  loom_tensor *x = loom_zeros(LOOM_SHAPE(n), LOOM_U8, GPU);
  ASSERT_NE(x, nullptr) << "zeros u8 [2^31 + 1000]: " << loom_last_error();
  ASSERT_EQ(loom_memory_stats_get(GPU, &after), 0) << loom_last_error();
  EXPECT_GE(after.allocated, before.allocated + (size_t)n) << "allocated bytes after zeros u8 [2^31 + 1000]";
  EXPECT_GE(after.peak_allocated, after.allocated);
  ASSERT_EQ(loom_fill_(loom_narrow(x, 0, n - 3, 1), 9), 0) << loom_last_error();
  ASSERT_EQ(loom_fill_(loom_narrow(x, 0, n - 1, 1), 9), 0) << loom_last_error();
  loom_tensor *idx = nullptr, *m = loom_max(x, 0, false, &idx);
  EXPECT_EQ(loom_item(m), 9) << "max of u8 [2^31 + 1000]: " << loom_last_error();
  EXPECT_EQ(loom_item(idx), (double)(n - 3)) << "argmax of u8 [2^31 + 1000]: the first of two 9s";
  {
    ScopeGuard inner;  // y is freed before the next 2 GiB tensor
    loom_tensor *y = loom_add(x, x);
    ASSERT_NE(y, nullptr) << "add u8 [2^31 + 1000]: " << loom_last_error();
    for (int64_t i : {n - 3, n - 2, n - 1}) {
      int64_t at[1] = {i};
      EXPECT_EQ(loom_item_at(y, at), 2 * loom_item_at(x, at)) << "add u8 [2^31 + 1000] at element n - " << n - i;
    }
  }
  // [2, n / 2] transposed and copied: a strided copy with 64-bit offsets.
  loom_tensor *t = loom_transpose(loom_view(x, LOOM_SHAPE(2, n / 2)), 0, 1), *tc = loom_contiguous(t);
  ASSERT_NE(tc, nullptr) << "contiguous of u8 [n / 2, 2] transposed: " << loom_last_error();
  // Rows n/2 - 3 and n/2 - 1 of column 1 hold the two 9s; the view is read on the host.
  for (int64_t r : {n / 2 - 3, n / 2 - 2, n / 2 - 1}) {
    int64_t at[2] = {r, 1};
    EXPECT_EQ(loom_item_at(tc, at), loom_item_at(t, at)) << "contiguous copy of u8 [n / 2, 2] transposed at row " << r;
  }
}

}  // namespace
