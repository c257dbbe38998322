// tools/loom-bench-layers run as a program: its --json lines parse (cJSON) and
// carry the keys tools/bench_layers.sh reads, with times > 0, in both modes;
// unknown cases and bad flags are refused with exit status 2.
#include <cjson/cJSON.h>

#include <sstream>
#include <string>
#include <vector>

#include "loom_test.h"

namespace {

std::string tool(const std::string &args) { return std::string(LOOM_BENCH_LAYERS_TOOL) + " " + args; }

// Each line of the output parsed as a JSON object (a failure names the line).
std::vector<cJSON *> parse_lines(const std::string &text) {
  std::vector<cJSON *> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    cJSON *j = cJSON_Parse(line.c_str());
    EXPECT_TRUE(j && cJSON_IsObject(j)) << "not a JSON object: " << line;
    if (j) out.push_back(j);
  }
  return out;
}

void free_lines(std::vector<cJSON *> &v) {
  for (cJSON *j : v) cJSON_Delete(j);
  v.clear();
}

std::string str(const cJSON *j, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  return cJSON_IsString(v) ? v->valuestring : "";
}

double num(const cJSON *j, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

// The lines of a --json run: bench names in order, each checked.
std::vector<std::string> check_run(const std::string &args, const char *mode, int runs, int threads) {
  ToolRun r = run_tool(tool(args));
  EXPECT_EQ(r.status, 0) << r.text;
  std::vector<cJSON *> lines = parse_lines(r.text);
  std::vector<std::string> names;
  for (const cJSON *j : lines) {
    names.push_back(str(j, "bench"));
    EXPECT_FALSE(str(j, "shape").empty()) << r.text;
    EXPECT_EQ(str(j, "mode"), mode) << r.text;
    EXPECT_EQ(str(j, "framework"), "loom") << r.text;
    EXPECT_EQ(num(j, "threads"), threads) << r.text;
    EXPECT_GT(num(j, "median_ms"), 0) << r.text;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "runs_ms");
    EXPECT_TRUE(cJSON_IsArray(rs)) << r.text;
    EXPECT_EQ(cJSON_GetArraySize(rs), runs) << r.text;
    const cJSON *t;
    cJSON_ArrayForEach(t, rs) EXPECT_TRUE(cJSON_IsNumber(t) && t->valuedouble > 0) << r.text;
  }
  free_lines(lines);
  return names;
}

TEST(LoomBenchLayers, TrainJsonLinesParse) {
  std::vector<std::string> names = check_run("--runs 1 --threads 1 --only relu,softmax --json", "train", 1, 1);
  EXPECT_EQ(names, (std::vector<std::string>{"softmax", "relu"}));  // the table's order
}

TEST(LoomBenchLayers, InferJsonLinesParse) {
  std::vector<std::string> names = check_run("--runs 2 --threads 1 --only seed_cnn_b1 --mode infer --json", "infer", 2, 1);
  EXPECT_EQ(names, (std::vector<std::string>{"seed_cnn_b1"}));
}

TEST(LoomBenchLayers, ListNamesEveryCase) {
  ToolRun r = run_tool(tool("--list"));
  ASSERT_EQ(r.status, 0) << r.text;
  for (const char *name : {"conv3x3_64", "dwconv3x3_144", "maxpool3_s2_p1", "batchnorm2d", "layernorm", "gelu",
                           "linear_768_3072", "cross_entropy", "lstm", "mha", "seed_cnn_step", "seed_cnn_b1"})
    EXPECT_NE(r.text.find(name), std::string::npos) << name << " missing from:\n" << r.text;
}

TEST(LoomBenchLayers, Refusals) {
  ToolRun r = run_tool(tool("--only relu,nope --runs 1"));
  EXPECT_EQ(r.status, 2) << r.text;
  EXPECT_NE(r.text.find("unknown case 'nope'"), std::string::npos) << r.text;
  // an inference-only case in train mode: skipped with a note, nothing timed
  r = run_tool(tool("--only seed_cnn_b1 --runs 1 --json"));
  EXPECT_EQ(r.status, 0) << r.text;
  EXPECT_NE(r.text.find("case 'seed_cnn_b1' runs in --mode infer only; skipped"), std::string::npos) << r.text;
  EXPECT_EQ(r.text.find("{\"bench\""), std::string::npos) << r.text;
  r = run_tool(tool("--mode fly"));
  EXPECT_EQ(r.status, 2) << r.text;
  EXPECT_NE(r.text.find("--mode must be train or infer, got 'fly'"), std::string::npos) << r.text;
  r = run_tool(tool("--runs 0"));
  EXPECT_EQ(r.status, 2) << r.text;
  EXPECT_NE(r.text.find("--runs must be an integer in 1..64, got '0'"), std::string::npos) << r.text;
  r = run_tool(tool("--threads"));
  EXPECT_EQ(r.status, 2) << r.text;
}

}  // namespace
