// tools/loom-bench --json on the seed CNN, run as a program: one line per timed
// step, and a summary whose figures agree with each other and with the model.
#include <math.h>
#include <stdlib.h>

#include <string>

#include "loom_test.h"

namespace {

// The number after "key": in a JSON line (NAN when absent).
double field(const std::string &line, const std::string &key) {
  size_t at = line.find("\"" + key + "\": ");
  return at == std::string::npos ? NAN : strtod(line.c_str() + at + key.size() + 4, nullptr);
}

TEST(LoomBench, SummaryFiguresAgree) {
  ToolRun r = run_tool(std::string(LOOM_BENCH_TOOL) + " --model seed_cnn --batch 16 --steps 6 --warmup 2 --json");
  ASSERT_EQ(r.status, 0) << r.text;
  size_t steps = 0, pos = 0;
  while ((pos = r.text.find("{\"step\": ", pos)) != std::string::npos) steps++, pos++;
  EXPECT_EQ(steps, 4u) << "6 steps, 2 of them warm-up:\n" << r.text;
  size_t at = r.text.find("{\"summary\": true");
  ASSERT_NE(at, std::string::npos) << r.text;
  std::string s = r.text.substr(at, r.text.find('\n', at) - at);
  double batch = field(s, "batch"), sps = field(s, "samples_per_s"), ms = field(s, "step_ms_mean");
  EXPECT_EQ(batch, 16);
  EXPECT_NEAR(sps * ms / 1e3, batch, 0.01 * batch) << "samples/s x mean step time is the batch: " << s;
  EXPECT_LE(field(s, "step_ms_p50"), field(s, "step_ms_p99"));
  EXPECT_EQ(field(s, "params"), 225034);  // the seed CNN
  Model m(loom_model_seed_cnn(NULL));
  double macs = (double)loom_module_macs(m.m, LOOM_SHAPE(1, 1, 28, 28), LOOM_F32, loom_cpu());
  EXPECT_EQ(field(s, "macs_per_sample"), macs);
  EXPECT_EQ(field(s, "flops_per_sample"), 2 * macs);
  EXPECT_EQ(field(s, "flops_per_step"), 3 * 2 * macs * batch);  // training: forward + backward (2x)
  EXPECT_NEAR(field(s, "achieved_tflops"), 3 * 2 * macs * sps / 1e12, 1e-3 * 3 * 2 * macs * sps / 1e12 + 1e-9);
  EXPECT_GT(field(s, "peak_rss_kb"), 0);
  EXPECT_NE(s.find("\"mfu\": null, \"mfu_why\": \"no peak for this device yet\""), std::string::npos) << s;
}

TEST(LoomBench, InferenceOfATokenModel) {
  ToolRun r = run_tool(std::string(LOOM_BENCH_TOOL) +
                       " --model text_classifier --batch 4 --steps 3 --warmup 1 --mode infer --json");
  ASSERT_EQ(r.status, 0) << r.text;
  size_t at = r.text.find("{\"summary\": true");
  ASSERT_NE(at, std::string::npos) << r.text;
  std::string s = r.text.substr(at);
  EXPECT_NE(s.find("\"mode\": \"infer\""), std::string::npos) << s;
  EXPECT_EQ(field(s, "flops_per_step"), field(s, "flops_per_sample") * 4);  // inference: forward only
}

}  // namespace
