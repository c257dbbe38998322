// tools/loom-ckpt on a good checkpoint, a corrupt one, a truncated one, a plain
// safetensors file, and diffs between them (the tool is run as a program).
#include <stdio.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <string>

#include "loom_test.h"

namespace {

using Out = ToolRun;
Out run(const std::string &args) { return run_tool(std::string(LOOM_CKPT_TOOL) + " " + args); }

struct Files {
  std::string dir = ::testing::TempDir() + "/loom_ckpt_" + std::to_string(getpid());
  std::string a = dir + "/a.safetensors", b = dir + "/b.safetensors";
  Files() {
    std::string mk = "mkdir -p " + dir;
    EXPECT_EQ(system(mk.c_str()), 0);
    loom_manual_seed(1);
    Model m(LOOM_SEQUENTIAL(loom_nn_linear(4, 3, NULL), loom_nn_relu(), loom_nn_linear(3, 2, NULL)));
    loom_checkpoint_meta meta{};
    meta.step = 7;
    EXPECT_EQ(loom_checkpoint_save(a.c_str(), m.m, nullptr, nullptr, nullptr, nullptr, &meta), LOOM_OK);
    ScopeGuard g;
    loom_fill_(loom_module_param(m.m, "2.bias"), 0.25);
    EXPECT_EQ(loom_checkpoint_save(b.c_str(), m.m, nullptr, nullptr, nullptr, nullptr, &meta), LOOM_OK);
  }
  ~Files() {
    std::string rm = "rm -rf " + dir;
    EXPECT_EQ(system(rm.c_str()), 0);
  }
  std::string bytes(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  std::string write(const std::string &name, const std::string &data) {
    std::string path = dir + "/" + name;
    std::ofstream(path, std::ios::binary) << data;
    return path;
  }
};

bool has(const Out &o, const std::string &s) { return o.text.find(s) != std::string::npos; }

TEST(LoomCkpt, ListsTensorsAndMetadata) {
  Files f;
  Out o = run("list " + f.a);
  EXPECT_EQ(o.status, 0) << o.text;
  EXPECT_TRUE(has(o, "format               loom-checkpoint")) << o.text;
  EXPECT_TRUE(has(o, "model.0.weight")) << o.text;
  EXPECT_TRUE(has(o, "f32   [3, 4]")) << o.text;
  EXPECT_TRUE(has(o, "total 108 bytes in 5 tensors")) << o.text;  // (12 + 3 + 6 + 2) floats + rng.cpu (2 x i64)
}

TEST(LoomCkpt, VerifiesGoodCorruptAndTruncatedFiles) {
  Files f;
  Out good = run("verify " + f.a);
  EXPECT_EQ(good.status, 0) << good.text;
  EXPECT_TRUE(has(good, "OK, Loom checkpoint version 2, checksum matches; 5 tensors, step 7")) << good.text;
  std::string data = f.bytes(f.a);
  std::string flipped = data;
  flipped[data.size() - 3] ^= 0x40;  // a byte of the last tensor's data
  Out bad = run("verify " + f.write("flipped.safetensors", flipped));
  EXPECT_EQ(bad.status, 1);
  EXPECT_TRUE(has(bad, "checksum mismatch")) << bad.text;
  Out cut = run("verify " + f.write("cut.safetensors", data.substr(0, data.size() - 10)));
  EXPECT_EQ(cut.status, 1);
  EXPECT_TRUE(has(cut, "truncated")) << cut.text;
  Out junk = run("verify " + f.write("junk.safetensors", "not a safetensors file at all"));
  EXPECT_EQ(junk.status, 1) << junk.text;
  Out missing = run("verify " + f.dir + "/none.safetensors");
  EXPECT_EQ(missing.status, 1);
  EXPECT_TRUE(has(missing, "none.safetensors")) << missing.text;
}

TEST(LoomCkpt, PlainSafetensorsHaveNoChecksumToVerify) {
  Files f;
  loom_tensor_map *m = loom_map_new();
  ScopeGuard g;
  loom_map_set(m, "w", T({1, 2}, LOOM_SHAPE(2)));
  std::string path = f.dir + "/plain.safetensors";
  ASSERT_EQ(loom_safetensors_save(path.c_str(), m), LOOM_OK);
  loom_map_free(m);
  Out o = run("verify " + path);
  EXPECT_EQ(o.status, 0);
  EXPECT_TRUE(has(o, "not a Loom checkpoint, so no checksum to verify")) << o.text;
}

TEST(LoomCkpt, DiffNamesEachDifference) {
  Files f;
  Out same = run("diff " + f.a + " " + f.a);
  EXPECT_EQ(same.status, 0);
  EXPECT_TRUE(has(same, "same tensors, same values")) << same.text;
  Out d = run("diff " + f.a + " " + f.b);
  EXPECT_EQ(d.status, 1);
  EXPECT_TRUE(has(d, "model.2.bias")) << d.text;
  EXPECT_FALSE(has(d, "model.0.weight")) << d.text;
  EXPECT_TRUE(has(d, "1 of the tensors differ")) << d.text;
  Out bad = run("diff " + f.a + " " + f.dir + "/none.safetensors");
  EXPECT_EQ(bad.status, 1);
  EXPECT_TRUE(has(bad, "none.safetensors")) << bad.text;
}

TEST(LoomCkpt, BadArgumentsShowTheUsage) {
  Out o = run("frobnicate x");
  EXPECT_EQ(o.status, 2);
  EXPECT_TRUE(has(o, "usage: loom-ckpt list FILE")) << o.text;
}

}  // namespace
