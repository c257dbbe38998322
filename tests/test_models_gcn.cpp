// The GCN of loom/models.h and the sparse op under it (loom_sparse_mm,
// loom_sparse_to_dense; their table-driven case is in op_cases_sparse.h):
// structure and init, dense and sparse forward agree, parity with a plain
// torch twin (tools/fixtures/gen_models_gcn.py: strict state_dict load,
// logits, one step's gradients), loom_gcn_adjacency against a hand-computed
// graph, bad input, CUDA against the CPU, and semi-supervised learning on
// Zachary's karate club.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "loom_test.h"

namespace {

std::string error() { return loom_last_error(); }

bool has(const std::string &s, const std::string &part) { return s.find(part) != std::string::npos; }

// Zachary's karate club: 78 undirected edges (networkx's karate_club_graph) and
// the 2-faction split (0 = Mr. Hi's club, 1 = the Officer's).
const int64_t kKarate[78][2] = {
    {0, 1},   {0, 2},   {0, 3},   {0, 4},   {0, 5},   {0, 6},   {0, 7},   {0, 8},   {0, 10},  {0, 11},
    {0, 12},  {0, 13},  {0, 17},  {0, 19},  {0, 21},  {0, 31},  {1, 2},   {1, 3},   {1, 7},   {1, 13},
    {1, 17},  {1, 19},  {1, 21},  {1, 30},  {2, 3},   {2, 7},   {2, 8},   {2, 9},   {2, 13},  {2, 27},
    {2, 28},  {2, 32},  {3, 7},   {3, 12},  {3, 13},  {4, 6},   {4, 10},  {5, 6},   {5, 10},  {5, 16},
    {6, 16},  {8, 30},  {8, 32},  {8, 33},  {9, 33},  {13, 33}, {14, 32}, {14, 33}, {15, 32}, {15, 33},
    {18, 32}, {18, 33}, {19, 33}, {20, 32}, {20, 33}, {22, 32}, {22, 33}, {23, 25}, {23, 27}, {23, 29},
    {23, 32}, {23, 33}, {24, 25}, {24, 27}, {24, 31}, {25, 31}, {26, 29}, {26, 33}, {27, 33}, {28, 31},
    {28, 33}, {29, 32}, {29, 33}, {30, 32}, {30, 33}, {31, 32}, {31, 33}, {32, 33}};
const int kFaction[34] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0,
                          0, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

loom_tensor *karate_edges() {
  std::vector<double> v(2 * 78);
  for (int e = 0; e < 78; e++) v[e] = (double)kKarate[e][0], v[78 + e] = (double)kKarate[e][1];
  return T(v, LOOM_SHAPE(2, 78), LOOM_I64);
}

loom_tensor *I64(const std::vector<double> &v, loom_shape s) { return T(v, s, LOOM_I64); }

// ---- loom_sparse_mm / loom_sparse_to_dense ----

TEST(SparseMM, DuplicatesAddAndMatchesDense) {
  ScopeGuard scope;
  // A = [[0, 3, 0], [1 + 2, 0, 0]] with (1, 0) given twice, entries out of order.
  loom_tensor *idx = I64({1, 0, 1, 0, 1, 0}, LOOM_SHAPE(2, 3));
  loom_tensor *val = T({1, 3, 2}, LOOM_SHAPE(3));
  loom_tensor *d = T({1, 2, 3, 4, 5, 6}, LOOM_SHAPE(3, 2));
  loom_tensor *out = loom_sparse_mm(idx, val, 2, 3, d);
  ASSERT_NE(out, nullptr) << error();
  EXPECT_EQ(V(out), (std::vector<double>{9, 12, 3, 6}));
  loom_tensor *dense = loom_sparse_to_dense(idx, val, 2, 3);
  ASSERT_NE(dense, nullptr) << error();
  EXPECT_EQ(V(dense), (std::vector<double>{0, 3, 0, 3, 0, 0}));
  EXPECT_LT(rel_err(loom_matmul(dense, d), out), 1e-7);
}

TEST(SparseMM, EmptyMatrixGivesZeros) {
  ScopeGuard scope;
  loom_tensor *idx = loom_zeros(LOOM_SHAPE(2, 0), LOOM_I64, loom_cpu());
  loom_tensor *val = loom_zeros(LOOM_SHAPE(0), LOOM_F32, loom_cpu());
  loom_tensor *out = loom_sparse_mm(idx, val, 3, 2, T({1, 2, 3, 4}, LOOM_SHAPE(2, 2)));
  ASSERT_NE(out, nullptr) << error();
  EXPECT_EQ(V(out), std::vector<double>(6, 0.0));
  loom_tensor *dense = loom_sparse_to_dense(idx, val, 3, 2);
  ASSERT_NE(dense, nullptr) << error();
  EXPECT_EQ(V(dense), std::vector<double>(6, 0.0));
}

TEST(SparseMM, GradientsOfValuesAndDense) {
  ScopeGuard scope;
  loom_tensor *idx = I64({0, 1, 1, 2, 0, 2}, LOOM_SHAPE(2, 3));
  loom_tensor *val = T({1, 2, 3}, LOOM_SHAPE(3));
  loom_tensor *d = T({1, 2, 3, 4, 5, 6}, LOOM_SHAPE(3, 2));
  ASSERT_EQ(loom_set_requires_grad(val, true), 0);
  ASSERT_EQ(loom_set_requires_grad(d, true), 0);
  loom_tensor *g = T({1, -1, 2, 0.5}, LOOM_SHAPE(2, 2));
  loom_tensor *loss = loom_sum(loom_mul(loom_sparse_mm(idx, val, 2, 3, d), g), nullptr, 0, false);
  ASSERT_NE(loss, nullptr) << error();
  ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << error();
  // grad_values[e] = dot(g[row_e], d[col_e]); entries (0, 2), (1, 0), (1, 2)
  EXPECT_EQ(V(loom_grad(val)), (std::vector<double>{5 - 6, 2 + 1, 10 + 3}));
  // grad_dense = A^T g with A = [[0, 0, 1], [2, 0, 3]]
  EXPECT_EQ(V(loom_grad(d)), (std::vector<double>{4, 1, 0, 0, 1 + 6, -1 + 1.5}));
}

TEST(SparseMM, BadInput) {
  ScopeGuard scope;
  loom_tensor *idx = I64({0, 1, 2, 0}, LOOM_SHAPE(2, 2)), *val = T({1, 2}, LOOM_SHAPE(2));
  loom_tensor *d = T({1, 2, 3, 4, 5, 6}, LOOM_SHAPE(3, 2));
  EXPECT_NE(loom_sparse_mm(idx, val, 2, 3, d), nullptr) << error();
  // row 1 is fine for 2 rows; a row index of 2 is not
  EXPECT_EQ(loom_sparse_mm(I64({0, 2, 0, 1}, LOOM_SHAPE(2, 2)), val, 2, 3, d), nullptr);
  EXPECT_TRUE(has(error(), "sparse_mm: row index 2 is out of range")) << error();
  EXPECT_EQ(loom_sparse_mm(I64({0, 1, -1, 0}, LOOM_SHAPE(2, 2)), val, 2, 3, d), nullptr);
  EXPECT_TRUE(has(error(), "column index -1 is out of range")) << error();
  EXPECT_EQ(loom_sparse_to_dense(I64({0, 1, 0, 3}, LOOM_SHAPE(2, 2)), val, 2, 3), nullptr);
  EXPECT_TRUE(has(error(), "sparse_to_dense: column index 3")) << error();
  EXPECT_EQ(loom_sparse_mm(T({0, 1, 2, 0}, LOOM_SHAPE(2, 2), LOOM_I32), val, 2, 3, d), nullptr);
  EXPECT_TRUE(has(error(), "indices must be i64 [2, nnz]")) << error();
  EXPECT_EQ(loom_sparse_mm(I64({0, 1, 2}, LOOM_SHAPE(3)), val, 2, 3, d), nullptr);
  EXPECT_TRUE(has(error(), "indices must be i64 [2, nnz]")) << error();
  EXPECT_EQ(loom_sparse_mm(idx, T({1, 2, 3}, LOOM_SHAPE(3)), 2, 3, d), nullptr);
  EXPECT_TRUE(has(error(), "values must be floating [nnz] = [2]")) << error();
  EXPECT_EQ(loom_sparse_mm(idx, I64({1, 2}, LOOM_SHAPE(2)), 2, 3, d), nullptr);
  EXPECT_TRUE(has(error(), "values must be floating")) << error();
  EXPECT_EQ(loom_sparse_mm(idx, val, 2, 3, T({1, 2, 3, 4}, LOOM_SHAPE(2, 2))), nullptr);
  EXPECT_TRUE(has(error(), "dense must be [cols, k] = [3, k]")) << error();
  EXPECT_EQ(loom_sparse_mm(idx, val, 2, 3, T({1, 2, 3}, LOOM_SHAPE(3))), nullptr);
  EXPECT_TRUE(has(error(), "dense must be [cols, k]")) << error();
  EXPECT_EQ(loom_sparse_mm(idx, val, 2, 3, loom_to_dtype(d, LOOM_F64)), nullptr);
  EXPECT_TRUE(has(error(), "values dtype f32 does not match dense dtype f64")) << error();
  EXPECT_EQ(loom_sparse_mm(idx, val, -1, 3, d), nullptr);
  EXPECT_TRUE(has(error(), "negative")) << error();
  EXPECT_EQ(loom_sparse_mm(nullptr, val, 2, 3, d), nullptr);
  EXPECT_EQ(loom_sparse_mm(idx, val, 2, 3, nullptr), nullptr);
  EXPECT_EQ(loom_sparse_to_dense(idx, nullptr, 2, 3), nullptr);
}

TEST(SparseMM, MismatchedDevices) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  loom_tensor *idx = I64({0, 1, 2, 0}, LOOM_SHAPE(2, 2)), *val = T({1, 2}, LOOM_SHAPE(2));
  loom_tensor *d = T({1, 2, 3, 4, 5, 6}, LOOM_SHAPE(3, 2));
  EXPECT_EQ(loom_sparse_mm(idx, val, 2, 3, loom_to_device(d, loom_cuda(0))), nullptr);
  EXPECT_TRUE(has(error(), "sparse_mm")) << error();
  EXPECT_EQ(loom_sparse_mm(loom_to_device(idx, loom_cuda(0)), val, 2, 3, d), nullptr);
  EXPECT_TRUE(has(error(), "sparse_mm")) << error();
}

// A larger random product with many duplicates, CUDA (cuSPARSE) against the CPU, forward and backward.
TEST(SparseMM, CudaMatchesCpu) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  loom_set_tf32(false);
  loom_manual_seed(3);
  const int64_t rows = 300, cols = 200, k = 33, nnz = 5000;
  loom_tensor *r = loom_randint(0, rows, LOOM_SHAPE(nnz), LOOM_I64, loom_cpu());
  loom_tensor *c = loom_randint(0, cols, LOOM_SHAPE(nnz), LOOM_I64, loom_cpu());
  loom_tensor *rc[2] = {r, c};
  loom_tensor *idx = loom_stack(rc, 2, 0);
  loom_tensor *val = loom_randn(LOOM_SHAPE(nnz), LOOM_F32, loom_cpu());
  loom_tensor *d = loom_randn(LOOM_SHAPE(cols, k), LOOM_F32, loom_cpu());
  loom_tensor *gval = loom_to_device(val, loom_cuda(0)), *gd = loom_to_device(d, loom_cuda(0));
  for (loom_tensor *t : {val, d, gval, gd}) ASSERT_EQ(loom_set_requires_grad(t, true), 0);
  loom_tensor *w = loom_randn(LOOM_SHAPE(rows, k), LOOM_F32, loom_cpu());
  loom_tensor *out = loom_sparse_mm(idx, val, rows, cols, d);
  loom_tensor *gout = loom_sparse_mm(loom_to_device(idx, loom_cuda(0)), gval, rows, cols, gd);
  ASSERT_NE(gout, nullptr) << error();
  EXPECT_EQ(loom_device_of(gout).type, LOOM_CUDA);
  EXPECT_LT(rel_err(gout, out), 1e-5);
  ASSERT_EQ(loom_backward(loom_sum(loom_mul(out, w), nullptr, 0, false), nullptr, false), 0) << error();
  ASSERT_EQ(loom_backward(loom_sum(loom_mul(gout, loom_to_device(w, loom_cuda(0))), nullptr, 0, false), nullptr,
                          false), 0) << error();
  EXPECT_LT(rel_err(loom_grad(gval), loom_grad(val)), 1e-5);
  EXPECT_LT(rel_err(loom_grad(gd), loom_grad(d)), 1e-5);
}

// ---- loom_gcn_adjacency ----

TEST(GcnAdjacency, HandComputedGraph) {
  ScopeGuard scope;
  // path 0 - 1 - 2, the edge 1 - 0 again reversed, a self loop at 2, node 3 isolated.
  // Degrees with self loops: 2, 3, 2, 1.
  loom_tensor *edges = I64({0, 1, 1, 2, 1, 2, 0, 2}, LOOM_SHAPE(2, 4));
  loom_tensor *idx = nullptr, *val = nullptr;
  ASSERT_EQ(loom_gcn_adjacency(edges, 4, &idx, &val), 0) << error();
  ASSERT_NE(idx, nullptr);
  ASSERT_NE(val, nullptr);
  EXPECT_EQ(loom_dtype_of(idx), LOOM_I64);
  EXPECT_EQ(loom_dtype_of(val), LOOM_F32);
  EXPECT_EQ(V(idx), (std::vector<double>{0, 0, 1, 1, 1, 2, 2, 3, /* cols */ 0, 1, 0, 1, 2, 1, 2, 3}));
  const double s6 = 1 / std::sqrt(6.0);
  std::vector<double> want = {0.5, s6, s6, 1.0 / 3, s6, s6, 0.5, 1.0}, got = V(val);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); i++) EXPECT_NEAR(got[i], want[i], 1e-7) << "entry " << i;
}

TEST(GcnAdjacency, KarateMatchesTorch) {
  Fixture fx("models_gcn_ref");
  ASSERT_TRUE(fx.ok());
  ScopeGuard scope;
  loom_tensor *idx = nullptr, *val = nullptr;
  ASSERT_EQ(loom_gcn_adjacency(karate_edges(), 34, &idx, &val), 0) << error();
  EXPECT_EQ(V(karate_edges()), V(fx["edge_index"]));
  EXPECT_EQ(V(idx), V(fx["indices"]));
  EXPECT_TRUE(close(val, fx["values"], 1e-6));
  EXPECT_EQ(loom_shape_of(val).d[0], 2 * 78 + 34);
  EXPECT_TRUE(close(loom_sparse_to_dense(idx, val, 34, 34), fx["adj"], 1e-6));
}

TEST(GcnAdjacency, BadInput) {
  ScopeGuard scope;
  loom_tensor *idx = nullptr, *val = nullptr;
  EXPECT_NE(loom_gcn_adjacency(I64({0, 1, 1, 2, 7, 0}, LOOM_SHAPE(2, 3)), 5, &idx, &val), 0);
  EXPECT_TRUE(has(error(), "edge 1 (1, 7) has an endpoint outside [0, 5)")) << error();
  EXPECT_EQ(idx, nullptr);
  EXPECT_EQ(val, nullptr);
  EXPECT_NE(loom_gcn_adjacency(I64({-1, 1}, LOOM_SHAPE(2, 1)), 5, &idx, &val), 0);
  EXPECT_TRUE(has(error(), "edge 0 (-1, 1)")) << error();
  EXPECT_NE(loom_gcn_adjacency(I64({0, 1, 2}, LOOM_SHAPE(3, 1)), 5, &idx, &val), 0);
  EXPECT_TRUE(has(error(), "edge_index must be i64 [2, E]")) << error();
  EXPECT_NE(loom_gcn_adjacency(T({0, 1}, LOOM_SHAPE(2, 1)), 5, &idx, &val), 0);
  EXPECT_TRUE(has(error(), "edge_index must be i64 [2, E], got f32")) << error();
  EXPECT_NE(loom_gcn_adjacency(I64({0, 1}, LOOM_SHAPE(2, 1)), 0, &idx, &val), 0);
  EXPECT_TRUE(has(error(), "num_nodes 0")) << error();
  EXPECT_NE(loom_gcn_adjacency(nullptr, 5, &idx, &val), 0);
  EXPECT_NE(loom_gcn_adjacency(I64({0, 1}, LOOM_SHAPE(2, 1)), 5, nullptr, &val), 0);
  // no edges: only the self loops
  ASSERT_EQ(loom_gcn_adjacency(loom_zeros(LOOM_SHAPE(2, 0), LOOM_I64, loom_cpu()), 2, &idx, &val), 0) << error();
  EXPECT_EQ(V(val), (std::vector<double>{1, 1}));
}

// ---- the model ----

TEST(GcnModel, StructureNamesAndInit) {
  Model net(loom_model_gcn(nullptr));
  ASSERT_NE(net.m, nullptr) << error();
  loom_named_tensors *p = loom_module_named_parameters(net.m);
  ASSERT_NE(p, nullptr);
  std::vector<std::string> names;
  for (int i = 0; i < p->n; i++) names.push_back(p->names[i]);
  EXPECT_EQ(names, (std::vector<std::string>{"conv1.bias", "conv1.lin.weight", "conv2.bias", "conv2.lin.weight"}));
  loom_named_tensors_free(p);
  EXPECT_EQ(loom_module_num_params(net.m, true), 16 + 16 * 34 + 4 + 4 * 16);
  EXPECT_EQ(std::string(loom_module_type(loom_module_child(net.m, "conv1"))), "GCNConv");
  // glorot uniform: |w| <= sqrt(6 / (in + out)), spread over the range; biases zero
  std::vector<double> w = V(loom_module_param(net.m, "conv1.lin.weight"));
  double bound = std::sqrt(6.0 / (34 + 16)), mx = 0;
  for (double x : w) mx = std::fmax(mx, std::fabs(x));
  EXPECT_LE(mx, bound);
  EXPECT_GT(mx, 0.9 * bound);
  for (double b : V(loom_module_param(net.m, "conv2.bias"))) EXPECT_EQ(b, 0.0);

  const loom_model_info *info = loom_model_find("gcn");
  ASSERT_NE(info, nullptr) << error();
  EXPECT_EQ(info->kind, LOOM_INPUT_GRAPH);
  EXPECT_EQ(info->input[0], 34);
  EXPECT_EQ(info->input[1], 34);
  Model named(loom_model_create("gcn", nullptr));
  ASSERT_NE(named.m, nullptr) << error();
  loom_model_opts o = {};
  o.num_classes = 2;
  o.hidden = 8;
  o.in_channels = 5;
  Model small(loom_model_gcn(&o));
  ASSERT_NE(small.m, nullptr) << error();
  EXPECT_EQ(loom_module_num_params(small.m, true), 8 + 8 * 5 + 2 + 2 * 8);
}

// loom_summary_stats_get_n: one row per Linear (X W) and per GCNConv (the
// propagation only: nnz x out sparse, V x V x out dense), nothing counted twice.
TEST(GcnModel, SummaryCountsEachProductOnce) {
  ScopeGuard scope;
  Model net(loom_model_gcn(nullptr));
  ASSERT_NE(net.m, nullptr) << error();
  loom_tensor *idx = nullptr, *val = nullptr;
  ASSERT_EQ(loom_gcn_adjacency(karate_edges(), 34, &idx, &val), 0) << error();
  const int64_t nnz = loom_numel(val);
  EXPECT_EQ(nnz, 34 + 2 * 78);
  loom_tensor *x = loom_rand(LOOM_SHAPE(34, 34), LOOM_F32, loom_cpu());
  loom_tensor *sparse[3] = {x, idx, val};
  loom_summary_stats s;
  ASSERT_EQ(loom_summary_stats_get_n(net.m, sparse, 3, &s), 0) << error();
  ASSERT_EQ(s.n_rows, 4);
  const char *types[4] = {"Linear", "GCNConv", "Linear", "GCNConv"};
  const int64_t macs[4] = {34 * 34 * 16, nnz * 16, 34 * 16 * 4, nnz * 4};
  for (int i = 0; i < 4; i++) {
    EXPECT_STREQ(s.rows[i].type, types[i]) << "row " << i;
    EXPECT_EQ(s.rows[i].macs, macs[i]) << "row " << i;
  }
  EXPECT_EQ(s.macs, macs[0] + macs[1] + macs[2] + macs[3]);
  EXPECT_EQ(s.total_params, 16 + 16 * 34 + 4 + 4 * 16);
  EXPECT_EQ(s.rows[3].output.ndim, 2);
  EXPECT_EQ(s.rows[3].output.d[0], 34);
  EXPECT_EQ(s.rows[3].output.d[1], 4);
  EXPECT_DOUBLE_EQ(s.input_mb, (34.0 * 34 + 3.0 * nnz) * 4 / (1024.0 * 1024.0));
  loom_summary_stats_free(&s);

  loom_tensor *dense[2] = {x, loom_sparse_to_dense(idx, val, 34, 34)};
  ASSERT_EQ(loom_summary_stats_get_n(net.m, dense, 2, &s), 0) << error();
  EXPECT_EQ(s.macs, 34 * 34 * 16 + 34 * 34 * 16 + 34 * 16 * 4 + 34 * 34 * 4);
  loom_summary_stats_free(&s);

  // the forward's error, named with every input's shape; missing inputs
  loom_tensor *bad[2] = {loom_rand(LOOM_SHAPE(34, 5), LOOM_F32, loom_cpu()), dense[1]};
  EXPECT_NE(loom_summary_stats_get_n(net.m, bad, 2, &s), 0);
  EXPECT_TRUE(has(error(), "summary: forward of GCN on input [34, 5] + [34, 34] (f32, cpu) failed: GCN:")) << error();
  EXPECT_EQ(s.rows, nullptr);
  EXPECT_NE(loom_summary_stats_get_n(net.m, sparse, 0, &s), 0);
  EXPECT_TRUE(has(error(), "summary: needs at least one input, got 0")) << error();
  loom_tensor *holes[2] = {x, nullptr};
  loom_clear_error();
  EXPECT_NE(loom_summary_stats_get_n(net.m, holes, 2, &s), 0);
  EXPECT_TRUE(has(error(), "summary: input 1 is NULL")) << error();
  FILE *f = tmpfile();
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(loom_summary_n(net.m, sparse, 3, f), 0) << error();
  rewind(f);
  std::string text;
  char buf[256];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  fclose(f);
  EXPECT_TRUE(has(text, "Total MACs: 24,472\n")) << text;
  EXPECT_TRUE(has(text, "Inputs [34, 34] f32, [2, 190] i64, [190] f32 (cpu): MACs, FLOPs and sizes are for these inputs"))
      << text;
}

TEST(GcnModel, DenseAndSparseForwardAgree) {
  ScopeGuard scope;
  loom_manual_seed(1);
  Model net(loom_model_gcn(nullptr));
  ASSERT_NE(net.m, nullptr) << error();
  loom_module_train(net.m, false);
  loom_tensor *idx = nullptr, *val = nullptr;
  ASSERT_EQ(loom_gcn_adjacency(karate_edges(), 34, &idx, &val), 0) << error();
  loom_tensor *x = loom_randn(LOOM_SHAPE(34, 34), LOOM_F32, loom_cpu());
  loom_tensor *dense_in[2] = {x, loom_sparse_to_dense(idx, val, 34, 34)}, *sparse_in[3] = {x, idx, val};
  loom_tensor *a = loom_forward_n(net.m, dense_in, 2), *b = loom_forward_n(net.m, sparse_in, 3);
  ASSERT_NE(a, nullptr) << error();
  ASSERT_NE(b, nullptr) << error();
  EXPECT_EQ(loom_shape_of(a).d[1], 4);
  EXPECT_LT(rel_err(a, b), 1e-6);
}

// The torch twin's state_dict loads strictly; logits (dense and sparse A_hat)
// and the gradients of cross_entropy(logits, factions) match it.
TEST(GcnModel, MatchesTorchTwin) {
  Fixture fx("models_gcn_ref");
  ASSERT_TRUE(fx.ok());
  ScopeGuard scope;
  Model net(loom_model_gcn(nullptr));
  ASSERT_NE(net.m, nullptr) << error();
  std::string state = std::string(LOOM_FIXTURE_DIR) + "/models_gcn_state.safetensors";
  ASSERT_EQ(loom_module_load(net.m, state.c_str(), true), 0) << error();
  loom_module_train(net.m, false);
  loom_tensor *x = fx["x"], *adj = loom_to_dtype(fx["adj"], LOOM_F32);
  loom_tensor *idx = fx["indices"], *val = loom_to_dtype(fx["values"], LOOM_F32);
  loom_tensor *dense_in[2] = {x, adj}, *sparse_in[3] = {x, idx, val};
  loom_tensor *sparse_logits = loom_forward_n(net.m, sparse_in, 3);
  ASSERT_NE(sparse_logits, nullptr) << error();
  EXPECT_TRUE(close(sparse_logits, fx["logits"], 1e-5));
  loom_tensor *logits = loom_forward_n(net.m, dense_in, 2);
  ASSERT_NE(logits, nullptr) << error();
  EXPECT_TRUE(close(logits, fx["logits"], 1e-5));
  for (loom_tensor *in : {logits, sparse_logits}) {
    loom_module_zero_grad(net.m);
    loom_tensor *loss = loom_cross_entropy(in, fx["y"], nullptr);
    ASSERT_NE(loss, nullptr) << error();
    EXPECT_NEAR(loom_item(loss), loom_item(fx["loss"]), 1e-5);
    ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << error();
    for (const char *p : {"conv1.bias", "conv1.lin.weight", "conv2.bias", "conv2.lin.weight"}) {
      loom_tensor *g = loom_grad(loom_module_param(net.m, p));
      ASSERT_NE(g, nullptr) << p;
      EXPECT_TRUE(close(g, fx[std::string("grad.") + p], 1e-4)) << p;
    }
  }
}

TEST(GcnModel, BadInput) {
  ScopeGuard scope;
  Model net(loom_model_gcn(nullptr));
  ASSERT_NE(net.m, nullptr) << error();
  loom_tensor *x = loom_zeros(LOOM_SHAPE(5, 34), LOOM_F32, loom_cpu());
  loom_tensor *adj = loom_eye(5, 5, LOOM_F32, loom_cpu());
  loom_tensor *in2[2] = {x, adj};
  EXPECT_NE(loom_forward_n(net.m, in2, 2), nullptr) << error();
  EXPECT_EQ(loom_forward(net.m, x), nullptr);
  EXPECT_TRUE(has(error(), "GCN: forward takes {x [V, F], adjacency [V, V]}")) << error();
  loom_tensor *bad_x[2] = {loom_zeros(LOOM_SHAPE(5, 3), LOOM_F32, loom_cpu()), adj};
  EXPECT_EQ(loom_forward_n(net.m, bad_x, 2), nullptr);
  EXPECT_TRUE(has(error(), "GCN: expected node features x [V, 34]")) << error();
  loom_tensor *bad_adj[2] = {x, loom_eye(4, 4, LOOM_F32, loom_cpu())};
  EXPECT_EQ(loom_forward_n(net.m, bad_adj, 2), nullptr);
  EXPECT_TRUE(has(error(), "GCN: expected a dense adjacency [V, V] = [5, 5]")) << error();
  loom_tensor *null_in[2] = {x, nullptr};
  EXPECT_EQ(loom_forward_n(net.m, null_in, 2), nullptr);
  // a sparse A_hat with a node index past V names the model, the layer and the index
  loom_tensor *far[3] = {x, I64({0, 5, 0, 1}, LOOM_SHAPE(2, 2)), T({1, 1}, LOOM_SHAPE(2))};
  EXPECT_EQ(loom_forward_n(net.m, far, 3), nullptr);
  EXPECT_TRUE(has(error(), "GCN: at conv1")) << error();
  EXPECT_TRUE(has(error(), "row index 5 is out of range")) << error();
  loom_tensor *short_vals[3] = {x, I64({0, 1, 0, 1}, LOOM_SHAPE(2, 2)), T({1}, LOOM_SHAPE(1))};
  EXPECT_EQ(loom_forward_n(net.m, short_vals, 3), nullptr);
  EXPECT_TRUE(has(error(), "GCN: at conv1") && has(error(), "values must be floating [nnz] = [2]")) << error();
  loom_model_opts o = {};
  o.num_classes = -1;
  EXPECT_EQ(loom_model_gcn(&o), nullptr);
  EXPECT_TRUE(has(error(), "GCN: num_classes (-1)")) << error();
  o = {};
  o.dropout = 1.5;
  EXPECT_EQ(loom_model_gcn(&o), nullptr);
  EXPECT_TRUE(has(error(), "GCN: dropout 1.5")) << error();
}

TEST(GcnModel, CudaMatchesCpu) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  loom_set_tf32(false);
  loom_manual_seed(2);
  Model net(loom_model_gcn(nullptr));
  ASSERT_NE(net.m, nullptr) << error();
  loom_module_train(net.m, false);
  loom_tensor *idx = nullptr, *val = nullptr;
  ASSERT_EQ(loom_gcn_adjacency(karate_edges(), 34, &idx, &val), 0) << error();
  loom_tensor *x = loom_randn(LOOM_SHAPE(34, 34), LOOM_F32, loom_cpu());
  loom_tensor *in[3] = {x, idx, val};
  loom_tensor *ref = loom_forward_n(net.m, in, 3);
  ASSERT_NE(ref, nullptr) << error();
  ASSERT_EQ(loom_module_to_device(net.m, loom_cuda(0)), 0) << error();
  loom_tensor *gin[3] = {loom_to_device(x, loom_cuda(0)), loom_to_device(idx, loom_cuda(0)),
                         loom_to_device(val, loom_cuda(0))};
  loom_tensor *out = loom_forward_n(net.m, gin, 3);
  ASSERT_NE(out, nullptr) << error();
  EXPECT_LT(rel_err(out, ref), 1e-5);
  loom_tensor *gi = nullptr, *gv = nullptr;
  ASSERT_EQ(loom_gcn_adjacency(loom_to_device(karate_edges(), loom_cuda(0)), 34, &gi, &gv), 0) << error();
  EXPECT_EQ(loom_device_of(gv).type, LOOM_CUDA);
  EXPECT_LT(rel_err(gv, val), 1e-7);
}

// Semi-supervised node classification on Zachary's karate club: identity
// features, one labelled node per faction plus one more each (the two leaders
// and a member of each side), the 30 others unlabelled; full-batch Adam as in
// Kipf & Welling (lr 0.01, weight decay 5e-4, dropout 0.5, hidden 16).
TEST(GcnLearns, KarateClubFactions) {
  ScopeGuard scope;
  loom_manual_seed(0);
  loom_model_opts o = {};
  o.num_classes = 2;
  Model net(loom_model_gcn(&o));
  ASSERT_NE(net.m, nullptr) << error();
  loom_tensor *idx = nullptr, *val = nullptr;
  ASSERT_EQ(loom_gcn_adjacency(karate_edges(), 34, &idx, &val), 0) << error();
  loom_tensor *x = loom_eye(34, 34, LOOM_F32, loom_cpu());
  const int labelled[4] = {0, 1, 32, 33};
  std::vector<double> y(34, -100);  // ignore_index: unlabelled
  for (int n : labelled) y[(size_t)n] = kFaction[n];
  loom_tensor *target = I64(y, LOOM_SHAPE(34));
  loom_adam_opts ao = {};
  ao.lr = 0.01;
  ao.weight_decay = 5e-4;
  loom_optimizer *opt = loom_adam_module(net.m, &ao);
  ASSERT_NE(opt, nullptr) << error();
  loom_tensor *in[3] = {x, idx, val};
  auto t0 = std::chrono::steady_clock::now();
  double first = 0, last = 0;
  loom_module_train(net.m, true);
  for (int epoch = 0; epoch < 200; epoch++) {
    loom_scope_begin();
    loom_optimizer_zero_grad(opt);
    loom_tensor *loss = loom_cross_entropy(loom_forward_n(net.m, in, 3), target, nullptr);
    ASSERT_NE(loss, nullptr) << error();
    ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << error();
    ASSERT_EQ(loom_optimizer_step(opt), 0) << error();
    last = loom_item(loss);
    if (epoch == 0) first = last;
    loom_scope_end();
  }
  loom_optimizer_free(opt);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  loom_module_train(net.m, false);
  loom_tensor *pred = loom_argmax(loom_forward_n(net.m, in, 3), 1, false);
  ASSERT_NE(pred, nullptr) << error();
  std::vector<double> p = V(pred);
  int right = 0, total = 0;
  for (int n = 0; n < 34; n++) {
    if (y[(size_t)n] >= 0) continue;
    total++;
    right += (int)p[(size_t)n] == kFaction[n];
  }
  double acc = (double)right / total;
  std::printf("[ GCN      ] karate club: loss %.4f -> %.4f in 200 epochs (%.2f s); unlabelled accuracy %d/%d = %.1f%%\n",
              first, last, secs, right, total, 100 * acc);
  EXPECT_LT(last, 0.5 * first);
  EXPECT_GT(acc, 0.9);
}

}  // namespace
