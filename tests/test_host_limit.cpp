// The cgroup memory limit that host out-of-memory messages report
// (src/core/host_limit.c), read from fake cgroup trees in a temporary folder.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "../src/core/host_limit.h"

namespace {
namespace fs = std::filesystem;

struct Tree {
  fs::path root;
  Tree() {
    root = fs::path(::testing::TempDir()) / ("loom_cgroup_" + std::to_string(getpid()) + "_" +
                                             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root);
    fs::create_directories(root / "sys");
  }
  ~Tree() { fs::remove_all(root); }
  void write(const std::string &rel, const std::string &text) {
    fs::path p = root / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  std::string sys() const { return (root / "sys").string(); }
  std::string proc() const { return (root / "proc_cgroup").string(); }
};

void expect_limit(const Tree &t, uint64_t want_limit, uint64_t want_usage) {
  uint64_t limit = 0, usage = 0;
  ASSERT_TRUE(core_cgroup_memory_limit(t.sys().c_str(), t.proc().c_str(), &limit, &usage));
  EXPECT_EQ(limit, want_limit);
  EXPECT_EQ(usage, want_usage);
}

TEST(HostLimit, CgroupV2LeafLimit) {
  Tree t;
  t.write("proc_cgroup", "0::/job/step\n");
  t.write("sys/job/step/memory.max", "1073741824\n");
  t.write("sys/job/step/memory.current", "52428800\n");
  expect_limit(t, 1073741824u, 52428800u);
}

TEST(HostLimit, CgroupV2ParentLimitHoldsForTheChild) {
  Tree t;
  t.write("proc_cgroup", "0::/job/step\n");
  t.write("sys/job/step/memory.max", "max\n");
  t.write("sys/job/memory.max", "2147483648\n");
  t.write("sys/job/memory.current", "1000\n");
  t.write("sys/memory.max", "4294967296\n");  // a looser limit further up
  expect_limit(t, 2147483648u, 1000u);
}

TEST(HostLimit, CgroupV1MemoryController) {
  Tree t;
  t.write("proc_cgroup", "9:pids:/\n4:memory:/docker/abc\n0::/\n");
  t.write("sys/memory/docker/abc/memory.limit_in_bytes", "536870912\n");
  t.write("sys/memory/docker/abc/memory.usage_in_bytes", "4096\n");
  expect_limit(t, 536870912u, 4096u);
}

TEST(HostLimit, CgroupV1InsideAContainerSeesItsOwnRoot) {
  // The path in /proc/self/cgroup is the host's; the container mounts its own cgroup at the root.
  Tree t;
  t.write("proc_cgroup", "4:cpu,memory:/process_api/e0b3\n");
  t.write("sys/memory/memory.limit_in_bytes", "25769803776\n");
  expect_limit(t, 25769803776u, 0u);  // no usage file
}

TEST(HostLimit, NoLimitIsReportedAsNone) {
  Tree t;
  t.write("proc_cgroup", "4:memory:/\n0::/user.slice\n");
  t.write("sys/memory/memory.limit_in_bytes", "9223372036854771712\n");  // v1's "unlimited"
  t.write("sys/user.slice/memory.max", "max\n");
  uint64_t limit = 0, usage = 0;
  EXPECT_FALSE(core_cgroup_memory_limit(t.sys().c_str(), t.proc().c_str(), &limit, &usage));
}

TEST(HostLimit, MissingOrJunkFilesAreNotALimit) {
  Tree t;
  uint64_t limit = 0, usage = 0;
  EXPECT_FALSE(core_cgroup_memory_limit(t.sys().c_str(), t.proc().c_str(), &limit, &usage));  // no proc file
  t.write("proc_cgroup", "garbage without colons\n0::/a\n");
  EXPECT_FALSE(core_cgroup_memory_limit(t.sys().c_str(), t.proc().c_str(), &limit, &usage));  // no memory.max
  t.write("sys/a/memory.max", "12abc\n");
  EXPECT_FALSE(core_cgroup_memory_limit(t.sys().c_str(), t.proc().c_str(), &limit, &usage));
  t.write("sys/a/memory.max", "\n");
  EXPECT_FALSE(core_cgroup_memory_limit(t.sys().c_str(), t.proc().c_str(), &limit, &usage));
}

}  // namespace
