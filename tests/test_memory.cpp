// The caching allocator (through core_cache_* with a fake raw allocator) and
// the public memory API (stats, limits, OOM, poisoning) on CPU and CUDA.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../src/core/cache_alloc.h"
#include "loom_test.h"

namespace {

constexpr size_t KiB = 1024, MiB = 1024 * KiB;

// A raw allocator with a byte budget that counts its calls.
struct FakeRaw {
  size_t budget = SIZE_MAX, used = 0;
  int allocs = 0, failures = 0, frees = 0;

  static void *alloc(size_t n, void *ctx) {
    auto *f = static_cast<FakeRaw *>(ctx);
    if (n > f->budget - f->used) {
      f->failures++;
      return nullptr;
    }
    void *p = std::aligned_alloc(64, (n + 63) / 64 * 64);
    if (p) {
      f->used += n;
      f->allocs++;
    }
    return p;
  }
  static void release(void *p, size_t n, void *ctx) {
    auto *f = static_cast<FakeRaw *>(ctx);
    f->used -= n;
    f->frees++;
    std::free(p);
  }
  static size_t free_bytes(void *ctx) {
    auto *f = static_cast<FakeRaw *>(ctx);
    return f->budget == SIZE_MAX ? SIZE_MAX : f->budget - f->used;
  }
};

// A cache over a FakeRaw, destroyed with the test.
struct Cache {
  FakeRaw raw;
  core_cache *c;
  explicit Cache(size_t budget = SIZE_MAX) {
    raw.budget = budget;
    c = core_cache_new({FakeRaw::alloc, FakeRaw::release, FakeRaw::free_bytes, &raw, "fake"});
  }
  ~Cache() { core_cache_destroy(c); }
  loom_memory_stats stats() const {
    loom_memory_stats s;
    core_cache_stats(c, &s);
    return s;
  }
};

void *const kStreamA = reinterpret_cast<void *>(0x1000);
void *const kStreamB = reinterpret_cast<void *>(0x2000);

TEST(MemoryCache, SecondAllocationOfTheSameSizeIsACacheHit) {
  Cache k;
  void *p = core_cache_alloc(k.c, 1000, nullptr);
  ASSERT_NE(p, nullptr);
  core_cache_free(k.c, p);
  void *q = core_cache_alloc(k.c, 1000, nullptr);
  EXPECT_EQ(q, p);
  EXPECT_EQ(k.raw.allocs, 1);
  loom_memory_stats s = k.stats();
  EXPECT_EQ(s.alloc_count, 2u);
  EXPECT_EQ(s.cache_hits, 1u);
  core_cache_free(k.c, q);
}

TEST(MemoryCache, SmallBlocksShareASegment) {
  Cache k;
  char *a = static_cast<char *>(core_cache_alloc(k.c, 100, nullptr));
  char *b = static_cast<char *>(core_cache_alloc(k.c, 100, nullptr));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(k.raw.allocs, 1);
  EXPECT_EQ(b - a, 512);  // rounded to 512 B, split from the same segment
  core_cache_free(k.c, a);
  core_cache_free(k.c, b);
}

TEST(MemoryCache, LargeBlocksSplitAndCoalesce) {
  Cache k;
  char *big = static_cast<char *>(core_cache_alloc(k.c, 8 * MiB, nullptr));
  ASSERT_NE(big, nullptr);
  core_cache_free(k.c, big);
  char *h1 = static_cast<char *>(core_cache_alloc(k.c, 4 * MiB, nullptr));
  char *h2 = static_cast<char *>(core_cache_alloc(k.c, 4 * MiB, nullptr));
  ASSERT_TRUE(h1 && h2);
  EXPECT_EQ(k.raw.allocs, 1);
  EXPECT_NE(h1, h2);
  EXPECT_TRUE(h1 >= big && h1 < big + 8 * MiB);
  EXPECT_TRUE(h2 >= big && h2 < big + 8 * MiB);
  std::memset(h1, 1, 4 * MiB);  // the halves must not overlap
  std::memset(h2, 2, 4 * MiB);
  EXPECT_EQ(h1[4 * MiB - 1], 1);
  core_cache_free(k.c, h2);
  core_cache_free(k.c, h1);
  char *whole = static_cast<char *>(core_cache_alloc(k.c, 8 * MiB, nullptr));
  EXPECT_EQ(whole, big);  // the halves coalesced back into the segment
  EXPECT_EQ(k.raw.allocs, 1);
  core_cache_free(k.c, whole);
}

TEST(MemoryCache, SmallRemainderIsNotSplitOffALargeBlock) {
  Cache k;
  void *p = core_cache_alloc(k.c, 2 * MiB, nullptr);
  core_cache_free(k.c, p);
  // 1.5 MiB from the 2 MiB block leaves 0.5 MiB: not worth a block of its own.
  void *q = core_cache_alloc(k.c, 3 * MiB / 2, nullptr);
  EXPECT_EQ(q, p);
  EXPECT_EQ(k.stats().allocated, 2 * MiB);
  void *r = core_cache_alloc(k.c, 3 * MiB / 2, nullptr);
  EXPECT_EQ(k.raw.allocs, 2);
  core_cache_free(k.c, q);
  core_cache_free(k.c, r);
}

TEST(MemoryCache, BlocksAreReusedOnlyOnTheirStream) {
  Cache k;
  void *a = core_cache_alloc(k.c, 3 * MiB, kStreamA);
  ASSERT_NE(a, nullptr);
  core_cache_free(k.c, a);
  void *b = core_cache_alloc(k.c, 3 * MiB, kStreamB);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(b, a);
  EXPECT_EQ(k.raw.allocs, 2);
  void *a2 = core_cache_alloc(k.c, 3 * MiB, kStreamA);
  EXPECT_EQ(a2, a);
  EXPECT_EQ(k.raw.allocs, 2);
  void *s = core_cache_alloc(k.c, 64, nullptr);
  core_cache_free(k.c, s);
  void *s2 = core_cache_alloc(k.c, 64, kStreamA);
  EXPECT_NE(s2, s);
  EXPECT_EQ(k.raw.allocs, 4);
  for (void *p : {b, a2, s2}) core_cache_free(k.c, p);
}

TEST(MemoryCache, PointersAre64ByteAlignedAndRememberTheirSize) {
  Cache k;
  std::mt19937 rng(7);
  std::vector<void *> ps;
  for (int i = 0; i < 300; i++) {
    size_t n = rng() % 3 ? rng() % 5000 : rng() % (5 * MiB);
    void *p = core_cache_alloc(k.c, n, nullptr);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << "size " << n;
    EXPECT_EQ(core_cache_size_of(k.c, p), n);
    ps.push_back(p);
  }
  void *zero = core_cache_alloc(k.c, 0, nullptr);
  EXPECT_NE(zero, nullptr);
  EXPECT_EQ(core_cache_size_of(k.c, zero), 0u);
  ps.push_back(zero);
  for (void *p : ps) core_cache_free(k.c, p);
  EXPECT_EQ(core_cache_size_of(k.c, ps[0]), 0u);  // no longer live
  EXPECT_EQ(k.stats().allocated, 0u);
}

TEST(MemoryCache, StatsFollowAllocationsAndEmptying) {
  Cache k;
  void *a = core_cache_alloc(k.c, 1000, nullptr);  // 1024 B in a 2 MiB small segment
  loom_memory_stats s = k.stats();
  EXPECT_EQ(s.allocated, 1024u);
  EXPECT_EQ(s.reserved, 2 * MiB);
  // 5 MiB + 512 B in a 6 MiB segment; the rest is too small to split off, so
  // the whole segment counts as allocated.
  void *b = core_cache_alloc(k.c, 5 * MiB + 1, nullptr);
  s = k.stats();
  EXPECT_EQ(s.allocated, 1024 + 6 * MiB);
  EXPECT_EQ(s.reserved, 8 * MiB);
  EXPECT_EQ(s.peak_allocated, s.allocated);
  core_cache_free(k.c, b);
  s = k.stats();
  EXPECT_EQ(s.allocated, 1024u);
  EXPECT_EQ(s.reserved, 8 * MiB);  // still cached
  EXPECT_EQ(s.peak_allocated, 1024 + 6 * MiB);
  core_cache_reset_peak(k.c);
  EXPECT_EQ(k.stats().peak_allocated, 1024u);
  core_cache_empty(k.c);  // the small segment holds a live block: it stays
  EXPECT_EQ(k.stats().reserved, 2 * MiB);
  EXPECT_EQ(k.raw.frees, 1);
  core_cache_free(k.c, a);
  core_cache_empty(k.c);
  EXPECT_EQ(k.stats().reserved, 0u);
  EXPECT_EQ(k.raw.used, 0u);
  EXPECT_EQ(k.stats().alloc_count, 2u);
}

TEST(MemoryCache, OutOfMemoryEmptiesTheCacheAndRetriesOnce) {
  Cache k(10 * MiB);
  char *live = static_cast<char *>(core_cache_alloc(k.c, 4 * MiB, nullptr));
  ASSERT_NE(live, nullptr);
  std::memset(live, 0x5A, 4 * MiB);
  core_cache_free(k.c, core_cache_alloc(k.c, 2 * MiB, nullptr));  // 2 MiB cached, 6 MiB used
  // 6 MiB more does not fit next to the cached block: the cache is emptied and the retry works.
  void *six = core_cache_alloc(k.c, 6 * MiB, nullptr);
  ASSERT_NE(six, nullptr);
  EXPECT_EQ(k.raw.failures, 1);
  EXPECT_EQ(k.raw.frees, 1);
  EXPECT_EQ(k.stats().reserved, 10 * MiB);

  loom_clear_error();
  loom_memory_stats before = k.stats();
  EXPECT_EQ(core_cache_alloc(k.c, 4 * MiB, nullptr), nullptr);
  EXPECT_EQ(k.raw.failures, 3);  // the first try and one retry
  EXPECT_EQ(loom_last_status(), LOOM_ERR_OOM);
  std::string msg = loom_last_error();
  EXPECT_NE(msg.find("out of memory"), std::string::npos) << msg;
  EXPECT_NE(msg.find("fake"), std::string::npos) << msg;
  EXPECT_NE(msg.find("4.00 MiB"), std::string::npos) << msg;   // requested
  EXPECT_NE(msg.find("10.00 MiB"), std::string::npos) << msg;  // reserved, allocated, peak
  EXPECT_NE(msg.find("free 0 B"), std::string::npos) << msg;
  loom_memory_stats after = k.stats();
  EXPECT_EQ(after.allocated, before.allocated);
  EXPECT_EQ(after.reserved, before.reserved);
  for (size_t i = 0; i < 4 * MiB; i += 4096) ASSERT_EQ(live[i], 0x5A);  // live blocks untouched
  core_cache_free(k.c, six);
  void *four = core_cache_alloc(k.c, 4 * MiB, nullptr);  // reuses the freed 6 MiB block
  EXPECT_NE(four, nullptr);
  EXPECT_EQ(k.raw.failures, 3);
  core_cache_free(k.c, four);
  core_cache_free(k.c, live);
}

TEST(MemoryCache, LimitCapsReservedBytes) {
  Cache k;
  core_cache_set_limit(k.c, 3 * MiB);
  void *a = core_cache_alloc(k.c, 2 * MiB, nullptr);
  ASSERT_NE(a, nullptr);
  loom_clear_error();
  EXPECT_EQ(core_cache_alloc(k.c, 2 * MiB, nullptr), nullptr);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_OOM);
  std::string msg = loom_last_error();
  EXPECT_NE(msg.find("out of memory"), std::string::npos) << msg;
  EXPECT_NE(msg.find("limit 3.00 MiB"), std::string::npos) << msg;
  EXPECT_EQ(k.raw.allocs, 1);  // the cap stops the request before the raw allocator
  core_cache_set_limit(k.c, 0);
  void *b = core_cache_alloc(k.c, 2 * MiB, nullptr);
  EXPECT_NE(b, nullptr);
  core_cache_free(k.c, a);
  core_cache_free(k.c, b);
}

TEST(MemoryCache, FreeingNullOrAForeignPointerIsHarmless) {
  Cache k;
  void *p = core_cache_alloc(k.c, 256, nullptr);
  loom_clear_error();
  core_cache_free(k.c, nullptr);
  EXPECT_EQ(loom_last_status(), LOOM_OK);
  int local = 0;
  core_cache_free(k.c, &local);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INTERNAL);
  loom_clear_error();
  core_cache_free(k.c, static_cast<char *>(p) + 64);  // inside a block, not its start
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INTERNAL);
  EXPECT_EQ(k.stats().allocated, 512u);
  core_cache_free(k.c, p);
  loom_clear_error();
  core_cache_free(k.c, p);  // twice
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INTERNAL);
  EXPECT_EQ(k.stats().allocated, 0u);
}

TEST(MemoryCache, DestroyReturnsCachedSegments) {
  FakeRaw raw;
  core_cache *c = core_cache_new({FakeRaw::alloc, FakeRaw::release, nullptr, &raw, "fake"});
  for (size_t n : {size_t(10), 3 * MiB, 100 * KiB, 7 * MiB}) core_cache_free(c, core_cache_alloc(c, n, nullptr));
  EXPECT_GT(raw.used, 0u);
  core_cache_destroy(c);
  EXPECT_EQ(raw.used, 0u);
  EXPECT_EQ(raw.frees, raw.allocs);
}

TEST(MemoryCache, ManyThreadsEndBalanced) {
  Cache k;
  auto work = [&k](unsigned seed) {
    std::mt19937 rng(seed);
    void *stream = (seed % 2) ? kStreamA : nullptr;
    std::vector<std::pair<unsigned char *, size_t>> held;
    for (int op = 0; op < 10000; op++) {
      if (held.empty() || (held.size() < 64 && rng() % 2)) {
        size_t n = rng() % 8 ? 1 + rng() % 20000 : 1 + rng() % (3 * MiB);
        auto *p = static_cast<unsigned char *>(core_cache_alloc(k.c, n, stream));
        ASSERT_NE(p, nullptr);
        p[0] = p[n - 1] = static_cast<unsigned char>(seed);
        held.emplace_back(p, n);
      } else {
        size_t i = rng() % held.size();
        auto [p, n] = held[i];
        // Another thread writing into this block would show up here.
        ASSERT_EQ(p[0], static_cast<unsigned char>(seed));
        ASSERT_EQ(p[n - 1], static_cast<unsigned char>(seed));
        core_cache_free(k.c, p);
        held[i] = held.back();
        held.pop_back();
      }
    }
    for (auto &h : held) core_cache_free(k.c, h.first);
  };
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 4; t++) threads.emplace_back(work, 100 + t);
  for (auto &t : threads) t.join();
  loom_memory_stats s = k.stats();
  EXPECT_EQ(s.allocated, 0u);
  EXPECT_GE(s.alloc_count, 4 * 5000u);
  EXPECT_GT(s.cache_hits, 0u);
  core_cache_empty(k.c);
  EXPECT_EQ(k.stats().reserved, 0u);
  EXPECT_EQ(k.raw.used, 0u);
}

// ---- the public API ----

TEST(Memory, CpuStatsFollowATensorsLifetime) {
  loom_memory_stats before, during, after;
  ASSERT_EQ(loom_memory_stats_get(loom_cpu(), &before), 0);
  loom_tensor *t = loom_empty(LOOM_SHAPE(1024, 1024), LOOM_F32, loom_cpu());
  ASSERT_NE(t, nullptr) << loom_last_error();
  ASSERT_EQ(loom_memory_stats_get(loom_cpu(), &during), 0);
  EXPECT_GE(during.allocated, before.allocated + 4 * MiB);
  EXPECT_GE(during.reserved, during.allocated);
  EXPECT_GE(during.peak_allocated, during.allocated);
  EXPECT_GT(during.alloc_count, before.alloc_count);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(loom_data_ptr(t)) % 64, 0u);
  loom_release(t);
  ASSERT_EQ(loom_memory_stats_get(loom_cpu(), &after), 0);
  EXPECT_EQ(after.allocated, before.allocated);
  loom_memory_reset_peak(loom_cpu());
  ASSERT_EQ(loom_memory_stats_get(loom_cpu(), &after), 0);
  EXPECT_EQ(after.peak_allocated, after.allocated);
  loom_empty_cache(loom_cpu());
  ASSERT_EQ(loom_memory_stats_get(loom_cpu(), &after), 0);
  EXPECT_LT(after.reserved, during.reserved);
}

TEST(Memory, CpuLimitGivesOutOfMemoryUntilReset) {
  loom_empty_cache(loom_cpu());
  loom_memory_stats s;
  ASSERT_EQ(loom_memory_stats_get(loom_cpu(), &s), 0);
  loom_set_memory_limit(loom_cpu(), s.reserved + 4 * MiB);
  loom_clear_error();
  loom_tensor *huge = loom_empty(LOOM_SHAPE(64, 1024, 1024), LOOM_F32, loom_cpu());  // 256 MiB
  EXPECT_EQ(huge, nullptr);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_OOM);
  std::string msg = loom_last_error();
  EXPECT_NE(msg.find("out of memory"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cpu"), std::string::npos) << msg;
  EXPECT_NE(msg.find("256.00 MiB"), std::string::npos) << msg;
  loom_set_memory_limit(loom_cpu(), 0);
  huge = loom_empty(LOOM_SHAPE(64, 1024, 1024), LOOM_F32, loom_cpu());
  EXPECT_NE(huge, nullptr) << loom_last_error();
  loom_release(huge);
  loom_empty_cache(loom_cpu());
}

// Poisoning on: a fresh f32 tensor on dev reads back as NaN everywhere.
static void expect_fresh_tensor_is_nan(loom_device dev) {
  loom_set_poison(true);
  loom_tensor *t = loom_empty(LOOM_SHAPE(1000), LOOM_F32, dev);
  loom_set_poison(false);
  ASSERT_NE(t, nullptr) << loom_last_error();
  std::vector<float> v(1000, 0.0f);
  ASSERT_EQ(loom_to_host(t, v.data(), v.size() * sizeof(float)), 0) << loom_last_error();
  for (float x : v) ASSERT_TRUE(std::isnan(x));
  loom_release(t);
}

TEST(Memory, PoisonFillsFreshCpuTensorsWithNaN) {
  expect_fresh_tensor_is_nan(loom_cpu());
}

TEST(Memory, MissingCudaDeviceIsAnError) {
  loom_memory_stats s;
  if (!has_gpu()) {
    loom_clear_error();
    EXPECT_NE(loom_memory_stats_get(loom_cuda(0), &s), 0);
    EXPECT_NE(loom_last_status(), LOOM_OK);
    EXPECT_STRNE(loom_last_error(), "");
  }
  if (loom_cuda_device_count() <= 7) {
    loom_clear_error();
    EXPECT_NE(loom_memory_stats_get(loom_cuda(7), &s), 0);
    EXPECT_NE(loom_last_status(), LOOM_OK);
    loom_set_memory_limit(loom_cuda(7), MiB);  // errors, does not crash
    loom_empty_cache(loom_cuda(7));
    loom_memory_reset_peak(loom_cuda(7));
    EXPECT_EQ(loom_empty(LOOM_SHAPE(4), LOOM_F32, loom_cuda(7)), nullptr);
  }
  EXPECT_NE(loom_memory_stats_get(loom_cpu(), nullptr), 0);
}

// ---- GPU ----

TEST(MemoryGpu, CudaStatsFollowATensorsLifetime) {
  LOOM_REQUIRE_GPU();
  loom_memory_stats before, during, after;
  ASSERT_EQ(loom_memory_stats_get(loom_cuda(0), &before), 0) << loom_last_error();
  loom_tensor *t = loom_empty(LOOM_SHAPE(1024, 1024), LOOM_F32, loom_cuda(0));
  ASSERT_NE(t, nullptr) << loom_last_error();
  ASSERT_EQ(loom_memory_stats_get(loom_cuda(0), &during), 0);
  EXPECT_GE(during.allocated, before.allocated + 4 * MiB);
  EXPECT_GE(during.reserved, during.allocated);
  EXPECT_GE(during.peak_allocated, during.allocated);
  loom_release(t);
  ASSERT_EQ(loom_synchronize(loom_cuda(0)), 0);
  ASSERT_EQ(loom_memory_stats_get(loom_cuda(0), &after), 0);
  EXPECT_EQ(after.allocated, before.allocated);
  // The same size again comes from the cache.
  t = loom_empty(LOOM_SHAPE(1024, 1024), LOOM_F32, loom_cuda(0));
  ASSERT_NE(t, nullptr) << loom_last_error();
  loom_memory_stats again;
  ASSERT_EQ(loom_memory_stats_get(loom_cuda(0), &again), 0);
  EXPECT_GT(again.cache_hits, after.cache_hits);
  EXPECT_EQ(again.reserved, during.reserved);
  loom_release(t);
  loom_cuda_empty_cache();
  ASSERT_EQ(loom_memory_stats_get(loom_cuda(0), &after), 0);
  EXPECT_LT(after.reserved, during.reserved);
}

TEST(MemoryGpu, CudaLimitGivesOutOfMemoryUntilReset) {
  LOOM_REQUIRE_GPU();
  loom_empty_cache(loom_cuda(0));
  loom_memory_stats s;
  ASSERT_EQ(loom_memory_stats_get(loom_cuda(0), &s), 0);
  loom_set_memory_limit(loom_cuda(0), s.reserved + 8 * MiB);
  loom_clear_error();
  loom_tensor *huge = loom_empty(LOOM_SHAPE(64, 1024, 1024), LOOM_F32, loom_cuda(0));
  EXPECT_EQ(huge, nullptr);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_OOM);
  std::string msg = loom_last_error();
  EXPECT_NE(msg.find("out of memory"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cuda:0"), std::string::npos) << msg;
  loom_set_memory_limit(loom_cuda(0), 0);
  huge = loom_empty(LOOM_SHAPE(64, 1024, 1024), LOOM_F32, loom_cuda(0));
  EXPECT_NE(huge, nullptr) << loom_last_error();
  loom_release(huge);
  loom_empty_cache(loom_cuda(0));
}

TEST(MemoryGpu, PoisonFillsFreshCudaTensorsWithNaN) {
  LOOM_REQUIRE_GPU();
  expect_fresh_tensor_is_nan(loom_cuda(0));
}

}  // namespace
