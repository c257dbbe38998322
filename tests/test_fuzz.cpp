// Robustness fuzz test of the public API (tensor.h, ops.h, autograd.h): seeded
// random calls, often with bad arguments, fed with earlier results. Each call
// must either succeed with a sane result and no recorded error, or fail with
// NULL / a non-zero status and a message; nothing may crash, and a seed ends
// with as many live tensors as it began with. Failures name the seed, step and
// call. Environment: LOOM_FUZZ_TRACE=1 prints every call, LOOM_FUZZ_SEED_BASE=N
// shifts the seeds, LOOM_FUZZ_CALLS=N sets the calls per seed (to bisect a leak).
// This file holds the driver loop and the seeds; fuzz_args.h draws the arguments,
// fuzz_check.h checks the results, fuzz_calls*.h hold the op families.
#include <cstdint>
#include <cstdlib>

#include "fuzz_calls.h"
#include "fuzz_calls_math.h"

namespace fuzz {
namespace {

// One seed's run: random calls from the families until `calls` are made or too many failed.
class Fuzzer : public FuzzCalls {
 public:
  explicit Fuzzer(uint32_t seed) : FuzzCalls(seed) {}

  void run(int calls) {
    int64_t live0 = loom_live_tensors();
    // Huge requests then fail in the pool (an OOM error) instead of paging in gigabytes.
    loom_set_memory_limit(loom_cpu(), (size_t)1 << 30);
    loom_scope_begin();
    depth_ = 1;
    for (step_ = 0; step_ < calls && failures_ < 25; step_++) ops_[irand(0, (int)ops_.size() - 1)]();
    while (depth_ > 0) close_scope();
    for (; no_grad_ > 0; no_grad_--) loom_no_grad_end();
    loom_set_memory_limit(loom_cpu(), 0);
    EXPECT_EQ(loom_live_tensors(), live0) << "seed " << seed_ << ": tensors leaked after " << calls
                                          << " calls (bisect with LOOM_FUZZ_CALLS)";
    EXPECT_TRUE(loom_grad_enabled()) << "seed " << seed_ << ": grad mode left off";
  }
};

class Fuzz : public testing::TestWithParam<uint32_t> {};

TEST_P(Fuzz, RandomCallsNeverCrashOrLeak) {
  const char *base = getenv("LOOM_FUZZ_SEED_BASE"), *calls = getenv("LOOM_FUZZ_CALLS");
  Fuzzer f(GetParam() + (base ? (uint32_t)strtoul(base, nullptr, 10) : 0));
  f.run(calls ? atoi(calls) : 5000);
}

INSTANTIATE_TEST_SUITE_P(Seeds, Fuzz, testing::Values(1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u));

}  // namespace
}  // namespace fuzz
