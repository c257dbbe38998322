// tools/loom-bench --json on the seed CNN, run as a program: one line per timed
// step, and a summary whose figures agree with each other and with the model.
#include <math.h>
#include <stdlib.h>

#include <algorithm>
#include <string>

#include "loom_test.h"

namespace {

// The number after "key": in a JSON line (NAN when absent or null).
double field(const std::string &line, const std::string &key) {
  size_t at = line.find("\"" + key + "\": ");
  if (at == std::string::npos || line.compare(at + key.size() + 4, 4, "null") == 0) return NAN;
  return strtod(line.c_str() + at + key.size() + 4, nullptr);
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
  // MFU against the CPU's peak, measured by a GEMM and labelled so
  EXPECT_GT(field(s, "peak_tflops"), 0);
  EXPECT_NEAR(field(s, "mfu"), field(s, "achieved_tflops") / field(s, "peak_tflops"), 1e-4 * field(s, "mfu")) << s;
  EXPECT_NE(s.find("\"peak_source\": \"measured: best of 10 GEMMs 1024x1024x1024 f32"), std::string::npos) << s;
  EXPECT_NE(s.find("\"latency_why\": \"measured in --mode infer\""), std::string::npos) << s;
  EXPECT_NE(s.find("\"unit\": \"images\""), std::string::npos) << s;
  EXPECT_EQ(field(s, "global_samples_per_s"), sps);  // one process
  EXPECT_NEAR(field(s, "batches_per_s"), sps / batch, 1e-3 * sps / batch);
  // energy: a figure and its source, or null and why (no RAPL counter in a container)
  bool energy = !std::isnan(field(s, "energy_j_per_sample"));
  EXPECT_EQ(energy, s.find("\"energy_why\": null") != std::string::npos) << s;
  EXPECT_EQ(energy, s.find("\"energy_source\": null") == std::string::npos) << s;
  // the header names the build and the settings
  at = r.text.find("{\"header\": true");
  ASSERT_NE(at, std::string::npos) << r.text;
  std::string h = r.text.substr(at, r.text.find('\n', at) - at);
  EXPECT_NE(h.find(std::string("\"commit\": \"") + loom_commit() + "\""), std::string::npos) << h;
  EXPECT_NE(h.find("\"settings\": \"--model seed_cnn --batch 16 --steps 6 --warmup 2 --json\""), std::string::npos) << h;
  EXPECT_NE(h.find("OpenBLAS"), std::string::npos) << h;
}

// The summary line of a --json run.
std::string summary_of(const std::string &command) {
  ToolRun r = run_tool(std::string(LOOM_BENCH_TOOL) + " " + command + " --json");
  EXPECT_EQ(r.status, 0) << r.text;
  size_t at = r.text.find("{\"summary\": true");
  EXPECT_NE(at, std::string::npos) << r.text;
  return at == std::string::npos ? "" : r.text.substr(at, r.text.find('\n', at) - at);
}

TEST(LoomBench, SingleSampleLatencyInInference) {
  std::string s = summary_of("--model mlp --batch 8 --steps 4 --warmup 1 --mode infer --latency-steps 7");
  EXPECT_EQ(field(s, "latency_steps"), 7);
  double mean = field(s, "latency_ms_mean"), p50 = field(s, "latency_ms_p50"), p99 = field(s, "latency_ms_p99");
  EXPECT_GT(mean, 0) << s;
  EXPECT_LE(p50, field(s, "latency_ms_p90"));
  EXPECT_LE(field(s, "latency_ms_p90"), p99);
  EXPECT_NE(s.find("\"latency_why\": null"), std::string::npos) << s;
  std::string off = summary_of("--model mlp --batch 8 --steps 4 --warmup 1 --mode infer --latency-steps 0");
  EXPECT_TRUE(std::isnan(field(off, "latency_ms_mean"))) << off;
  EXPECT_NE(off.find("\"latency_why\": \"--latency-steps 0\""), std::string::npos) << off;
}

TEST(LoomBench, GivenPeakAndLowPrecision) {
  std::string s = summary_of("--model seed_cnn --batch 8 --steps 4 --warmup 1 --dtype bf16 --peak-tflops 2");
  EXPECT_NE(s.find("\"dtype\": \"bf16\""), std::string::npos) << s;
  EXPECT_EQ(field(s, "peak_tflops"), 2);
  EXPECT_NE(s.find("\"peak_source\": \"given: --peak-tflops\""), std::string::npos) << s;
  EXPECT_NEAR(field(s, "mfu"), field(s, "achieved_tflops") / 2, 1e-6) << s;
  // f16 training runs with loss scaling; the CPU's peak is measured in f16
  std::string h = summary_of("--model mlp --batch 8 --steps 4 --warmup 1 --dtype f16");
  EXPECT_NE(h.find("GEMMs 1024x1024x1024 f16"), std::string::npos) << h;
  EXPECT_GT(field(h, "samples_per_s"), 0);
}

TEST(LoomBench, LoaderWaitIsMeasured) {
  std::string s = summary_of("--model seed_cnn --batch 8 --steps 5 --warmup 1 --loader 2");
  double wait = field(s, "loader_wait_ms_mean");
  EXPECT_GE(wait, 0) << s;
  EXPECT_LT(wait, field(s, "step_ms_mean")) << "the wait is part of the step: " << s;
  EXPECT_NE(s.find("\"loader_wait_why\": null"), std::string::npos) << s;
  std::string none = summary_of("--model seed_cnn --batch 8 --steps 3 --warmup 1");
  EXPECT_TRUE(std::isnan(field(none, "loader_wait_ms_mean"))) << none;
}

TEST(LoomBench, GraphModelCountsNodes) {
  std::string s = summary_of("--model gcn --steps 3 --warmup 1 --mode infer --latency-steps 2");
  EXPECT_EQ(field(s, "batch"), 34);  // karate club: one graph of 34 nodes per step
  EXPECT_NE(s.find("\"unit\": \"nodes\""), std::string::npos) << s;
  EXPECT_NE(s.find("\"input\": \"[34, 34]\""), std::string::npos) << s;
  EXPECT_GT(field(s, "macs_per_sample"), 0);
}

TEST(LoomBench, CsvHasOneRowOfTheSummaryKeys) {
  ToolRun r = run_tool(std::string(LOOM_BENCH_TOOL) + " --model mlp --batch 4 --steps 3 --warmup 1 --csv");
  ASSERT_EQ(r.status, 0) << r.text;
  size_t nl = r.text.find('\n');
  ASSERT_NE(nl, std::string::npos);
  std::string keys = r.text.substr(0, nl), row = r.text.substr(nl + 1);
  ASSERT_EQ(keys.rfind("framework,model,mode,", 0), 0u) << keys;
  EXPECT_NE(keys.find(",samples_per_s,"), std::string::npos) << keys;
  EXPECT_NE(row.find("\"loom\",\"mlp\",\"train\""), std::string::npos) << row;
  // as many values as keys (no comma inside this run's quoted strings but the settings-free summary)
  size_t commas_keys = std::count(keys.begin(), keys.end(), ','), commas_row = 0;
  bool quoted = false;
  for (char c : row) {
    if (c == '"') quoted = !quoted;
    if (c == ',' && !quoted) commas_row++;
  }
  EXPECT_EQ(commas_row, commas_keys) << row;
  EXPECT_EQ(std::count(row.begin(), row.end(), '\n'), 1) << "one row: " << r.text;
}

TEST(LoomBench, ProfileListsOpsAndLayers) {
  ToolRun r = run_tool(std::string(LOOM_BENCH_TOOL) + " --model mlp --batch 4 --steps 3 --warmup 1 --profile --json");
  ASSERT_EQ(r.status, 0) << r.text;
  EXPECT_NE(r.text.find("{\"op\": \"matmul\", \"device\": \"cpu\""), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("{\"op\": \"sgd_step\""), std::string::npos) << "a training step: " << r.text;
  size_t at = r.text.find("{\"layer\": \"1\", \"type\": \"Linear\"");
  ASSERT_NE(at, std::string::npos) << r.text;
  EXPECT_EQ(field(r.text.substr(at), "calls"), 2) << "2 profiled steps (steps - warmup): " << r.text;
  size_t last = r.text.rfind('\n', r.text.size() - 2);
  EXPECT_EQ(r.text.compare(last + 1, 16, "{\"summary\": true"), 0) << "the summary is the last line: " << r.text;
  ToolRun table = run_tool(std::string(LOOM_BENCH_TOOL) + " --model mlp --batch 4 --steps 3 --warmup 1 --profile");
  ASSERT_EQ(table.status, 0) << table.text;
  EXPECT_NE(table.text.find("modules with the most forward time of their own"), std::string::npos) << table.text;
}

TEST(LoomBench, RefusalsExitWithTwo) {
  for (const char *args : {"--model seed --steps 2 --warmup 2", "--model seed --dtype f64", "--model seed --dtype tf32",
                           "--model gcn --batch 5", "--model text_classifier --loader 0", "--model seed --json --csv",
                           "--model seed --batch 0", "--model seed --frobnicate 1", "--model seed --profile --csv"}) {
    ToolRun r = run_tool(std::string(LOOM_BENCH_TOOL) + " " + args);
    EXPECT_EQ(r.status, 2) << args << ": " << r.text;
    EXPECT_NE(r.text.find("loom-bench: "), std::string::npos) << args << ": " << r.text;
  }
}

// Every rank runs; rank 0's summary adds the ranks' throughputs.
TEST(LoomBench, TwoRanksUnderMpirun) {
#ifndef LOOM_BENCH_MPIRUN
  GTEST_SKIP() << "Loom was built without MPI (LOOM_MPI off or no MPI found)";
#else
  ToolRun r = run_tool(std::string("OMP_NUM_THREADS=1 ") + LOOM_BENCH_MPIRUN + " " + LOOM_BENCH_TOOL +
                       " --model seed_cnn --batch 8 --steps 4 --warmup 1 --json");
  ASSERT_EQ(r.status, 0) << r.text;
  double sum = 0;
  for (int rank = 0; rank < 2; rank++) {
    size_t at = r.text.find("{\"rank\": " + std::to_string(rank) + ",");
    ASSERT_NE(at, std::string::npos) << r.text;
    sum += field(r.text.substr(at, r.text.find('\n', at) - at), "samples_per_s");
  }
  size_t at = r.text.find("{\"summary\": true");
  ASSERT_NE(at, std::string::npos) << r.text;
  EXPECT_EQ(r.text.find("{\"summary\": true", at + 1), std::string::npos) << "rank 0 alone prints it";
  std::string s = r.text.substr(at, r.text.find('\n', at) - at);
  EXPECT_EQ(field(s, "world_size"), 2);
  EXPECT_NEAR(field(s, "global_samples_per_s"), sum, 1e-3 * sum) << r.text;
#endif
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
  EXPECT_NE(s.find("\"unit\": \"tokens\""), std::string::npos) << s;
  EXPECT_NEAR(field(s, "tokens_per_s"), field(s, "samples_per_s") * 128, 1e-3 * field(s, "tokens_per_s"));
}

}  // namespace
