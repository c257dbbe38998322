// Bad input: every failure returns NULL / non-zero and records a precise, thread-local error.
#include <cmath>
#include <initializer_list>
#include <string>
#include <thread>

#include "loom_test.h"

#define ASSERT_T(t) ASSERT_NE((t), nullptr) << loom_last_error()

namespace {

bool failed(const loom_tensor *r) { return r == nullptr; }
bool failed(int r) { return r != 0; }
bool failed(bool r) { return !r; }
bool failed(double r) { return std::isnan(r); }

// The last error has status st and its message holds every one of subs.
testing::AssertionResult error_is(loom_status st, std::initializer_list<const char *> subs) {
  std::string msg = loom_last_error();
  if (loom_last_status() != st)
    return testing::AssertionFailure() << "status \"" << loom_status_name(loom_last_status()) << "\", want \""
                                       << loom_status_name(st) << "\" (message: \"" << msg << "\")";
  if (msg.empty()) return testing::AssertionFailure() << "empty message";
  for (const char *s : subs)
    if (msg.find(s) == std::string::npos)
      return testing::AssertionFailure() << "message \"" << msg << "\" does not mention \"" << s << "\"";
  return testing::AssertionSuccess();
}

}  // namespace

// Runs expr with a clean error state and checks that it failed with status st and a
// message mentioning each of the strings that follow.
#define EXPECT_FAILS(expr, st, ...)                                \
  do {                                                             \
    loom_clear_error();                                            \
    auto r_ = (expr);                                              \
    EXPECT_TRUE(failed(r_)) << #expr << " did not fail";           \
    EXPECT_TRUE(error_is(st, {__VA_ARGS__})) << "after " << #expr; \
  } while (0)

TEST(Errors, NullInputsToEveryFamily) {
  ScopeGuard g;
  loom_tensor *x = T({1, 2, 3, 4, 5, 6}, LOOM_SHAPE(2, 3));
  loom_tensor *idx = T({0, 1}, LOOM_SHAPE(2), LOOM_I64);
  loom_tensor *mask = T({1, 0, 1}, LOOM_SHAPE(3), LOOM_BOOL);
  loom_tensor *n = nullptr;
  const int d0[] = {0};
  // creation from a NULL template
  EXPECT_FAILS(loom_zeros_like(n), LOOM_ERR_INVALID, "zeros_like");
  EXPECT_FAILS(loom_full_like(n, 1), LOOM_ERR_INVALID, "full_like");
  EXPECT_FAILS(loom_scalar_like(n, 1), LOOM_ERR_INVALID, "scalar_like");
  EXPECT_FAILS(loom_from_host(nullptr, LOOM_SHAPE(2), LOOM_F32, loom_cpu()), LOOM_ERR_INVALID, "from_host");
  // unary, scalar and binary elementwise
  EXPECT_FAILS(loom_exp(n), LOOM_ERR_INVALID, "exp");
  EXPECT_FAILS(loom_relu(n), LOOM_ERR_INVALID, "relu");
  EXPECT_FAILS(loom_clamp(n, 0, 1), LOOM_ERR_INVALID, "clamp");
  EXPECT_FAILS(loom_mul_scalar(n, 2), LOOM_ERR_INVALID, "mul");
  EXPECT_FAILS(loom_add(x, n), LOOM_ERR_INVALID, "add");
  EXPECT_FAILS(loom_add(n, x), LOOM_ERR_INVALID, "add");
  EXPECT_FAILS(loom_lt(n, x), LOOM_ERR_INVALID, "lt");
  EXPECT_FAILS(loom_logical_not(n), LOOM_ERR_INVALID, "logical_not");
  // selection and indexing
  EXPECT_FAILS(loom_where(n, x, x), LOOM_ERR_INVALID, "where");
  EXPECT_FAILS(loom_where(mask, x, n), LOOM_ERR_INVALID, "where");
  EXPECT_FAILS(loom_masked_fill(x, n, 0), LOOM_ERR_INVALID, "masked_fill");
  EXPECT_FAILS(loom_index_select(x, 0, n), LOOM_ERR_INVALID, "index_select");
  EXPECT_FAILS(loom_gather(n, 0, idx), LOOM_ERR_INVALID, "gather");
  EXPECT_FAILS(loom_scatter_add(x, 0, idx, n), LOOM_ERR_INVALID, "scatter_add");
  EXPECT_FAILS(loom_scatter(x, 0, idx, n), LOOM_ERR_INVALID, "scatter");
  EXPECT_FAILS(loom_scatter(n, 0, idx, x), LOOM_ERR_INVALID, "scatter");
  EXPECT_FAILS(loom_one_hot(n, 3), LOOM_ERR_INVALID, "one_hot");
  // reductions
  EXPECT_FAILS(loom_sum(n, nullptr, 0, false), LOOM_ERR_INVALID, "sum");
  EXPECT_FAILS(loom_mean(n, d0, 1, false), LOOM_ERR_INVALID, "mean");
  EXPECT_FAILS(loom_var(n, nullptr, 0, 1, false), LOOM_ERR_INVALID, "var");
  EXPECT_FAILS(loom_logsumexp(n, d0, 1, false), LOOM_ERR_INVALID, "logsumexp");
  EXPECT_FAILS(loom_norm(n, 2, nullptr, 0, false), LOOM_ERR_INVALID, "norm");
  EXPECT_FAILS(loom_max(n, 0, false, nullptr), LOOM_ERR_INVALID, "max");
  EXPECT_FAILS(loom_argmin(n, 0, false), LOOM_ERR_INVALID, "argmin");
  EXPECT_FAILS(loom_max_all(n), LOOM_ERR_INVALID, "max_all");
  // linear algebra
  EXPECT_FAILS(loom_matmul(x, n), LOOM_ERR_INVALID, "matmul");
  EXPECT_FAILS(loom_bmm(n, x), LOOM_ERR_INVALID, "bmm");
  EXPECT_FAILS(loom_addmm(x, n, x, 1, 1), LOOM_ERR_INVALID, "addmm");
  // views, moves, joins
  EXPECT_FAILS(loom_view(n, LOOM_SHAPE(6)), LOOM_ERR_INVALID, "view");
  EXPECT_FAILS(loom_reshape(n, LOOM_SHAPE(6)), LOOM_ERR_INVALID, "reshape");
  EXPECT_FAILS(loom_permute(n, d0, 1), LOOM_ERR_INVALID, "permute");
  EXPECT_FAILS(loom_transpose(n, 0, 1), LOOM_ERR_INVALID, "transpose");
  EXPECT_FAILS(loom_expand(n, LOOM_SHAPE(2, 3)), LOOM_ERR_INVALID, "expand");
  EXPECT_FAILS(loom_narrow(n, 0, 0, 1), LOOM_ERR_INVALID, "narrow");
  EXPECT_FAILS(loom_select(n, 0, 0), LOOM_ERR_INVALID, "select");
  EXPECT_FAILS(loom_unsqueeze(n, 0), LOOM_ERR_INVALID, "unsqueeze");
  EXPECT_FAILS(loom_contiguous(n), LOOM_ERR_INVALID, "contiguous");
  EXPECT_FAILS(loom_clone(n), LOOM_ERR_INVALID, "clone");
  EXPECT_FAILS(loom_to_dtype(n, LOOM_F64), LOOM_ERR_INVALID, "to");
  loom_tensor *with_null[] = {x, n};
  EXPECT_FAILS(loom_cat(with_null, 2, 0), LOOM_ERR_INVALID, "cat");
  EXPECT_FAILS(loom_stack(with_null, 2, 0), LOOM_ERR_INVALID, "stack");
  EXPECT_FAILS(loom_cat(nullptr, 2, 0), LOOM_ERR_INVALID, "cat");
  loom_tensor *out[4];
  EXPECT_FAILS(loom_split(n, 1, 0, out, 4), LOOM_ERR_INVALID, "split");
  EXPECT_FAILS(loom_split(x, 1, 0, nullptr, 4), LOOM_ERR_INVALID, "split");
  // in-place, host copies, autograd
  EXPECT_FAILS(loom_copy_(n, x), LOOM_ERR_INVALID, "copy_");
  EXPECT_FAILS(loom_copy_(x, n), LOOM_ERR_INVALID, "copy_");
  EXPECT_FAILS(loom_fill_(n, 1), LOOM_ERR_INVALID, "fill_");
  float host[6];
  EXPECT_FAILS(loom_to_host(n, host, sizeof host), LOOM_ERR_INVALID, "to_host");
  EXPECT_FAILS(loom_to_host(x, nullptr, sizeof host), LOOM_ERR_INVALID, "to_host");
  EXPECT_FAILS(loom_item(n), LOOM_ERR_INVALID, "item");
  EXPECT_FAILS(loom_backward(n, nullptr, false), LOOM_ERR_INVALID, "backward");
  EXPECT_FAILS(loom_set_requires_grad(n, true), LOOM_ERR_INVALID, "requires_grad");
  EXPECT_FAILS(loom_detach(n), LOOM_ERR_INVALID, "detach");
  // lifetime functions accept NULL quietly, like free()
  loom_release(nullptr);
  EXPECT_EQ(loom_retain(nullptr), nullptr);
  EXPECT_EQ(loom_keep(nullptr), nullptr);
}

TEST(Errors, NullPropagatesThroughAChainKeepingTheFirstError) {
  ScopeGuard g;
  loom_tensor *a = T({1, 2, 3, 4, 5, 6}, LOOM_SHAPE(2, 3));
  loom_tensor *b = T({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, LOOM_SHAPE(4, 3));
  loom_clear_error();
  loom_tensor *r = loom_sum(loom_exp(loom_mul_scalar(loom_add(a, b), 2)), nullptr, 0, false);
  EXPECT_EQ(r, nullptr);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INVALID);
  EXPECT_TRUE(error_is(LOOM_ERR_INVALID, {"add", "[2, 3]", "[4, 3]"}))
      << "checking a chain once at its end must report the call that failed first";
}

TEST(Errors, ShapeMismatches) {
  ScopeGuard g;
  loom_tensor *a23 = loom_ones(LOOM_SHAPE(2, 3), LOOM_F32, loom_cpu());
  loom_tensor *a43 = loom_ones(LOOM_SHAPE(4, 3), LOOM_F32, loom_cpu());
  loom_tensor *a45 = loom_ones(LOOM_SHAPE(4, 5), LOOM_F32, loom_cpu());
  loom_tensor *a24 = loom_ones(LOOM_SHAPE(2, 4), LOOM_F32, loom_cpu());
  EXPECT_FAILS(loom_add(a23, a43), LOOM_ERR_INVALID, "add", "[2, 3]", "[4, 3]");
  EXPECT_FAILS(loom_matmul(a23, a45), LOOM_ERR_INVALID, "matmul", "[2, 3]", "[4, 5]");
  EXPECT_FAILS(
      loom_matmul(loom_ones(LOOM_SHAPE(3), LOOM_F32, loom_cpu()), loom_ones(LOOM_SHAPE(4), LOOM_F32, loom_cpu())),
      LOOM_ERR_INVALID, "matmul", "[3]", "[4]");
  EXPECT_FAILS(loom_matmul(loom_ones(LOOM_SHAPE(2, 2, 3), LOOM_F32, loom_cpu()),
                           loom_ones(LOOM_SHAPE(3, 3, 4), LOOM_F32, loom_cpu())),
               LOOM_ERR_INVALID, "matmul", "[2, 2, 3]", "[3, 3, 4]");
  EXPECT_FAILS(loom_bmm(loom_ones(LOOM_SHAPE(2, 2, 3), LOOM_F32, loom_cpu()),
                        loom_ones(LOOM_SHAPE(3, 3, 4), LOOM_F32, loom_cpu())),
               LOOM_ERR_INVALID, "bmm", "[2, 2, 3]", "[3, 3, 4]");
  EXPECT_FAILS(loom_bmm(a23, a43), LOOM_ERR_INVALID, "bmm", "[2, 3]");
  EXPECT_FAILS(loom_addmm(a45, a23, loom_ones(LOOM_SHAPE(3, 2), LOOM_F32, loom_cpu()), 1, 1), LOOM_ERR_INVALID, "addmm",
               "[4, 5]");
  loom_tensor *cat_in[] = {a23, a24};
  EXPECT_FAILS(loom_cat(cat_in, 2, 0), LOOM_ERR_INVALID, "cat", "[2, 3]", "[2, 4]");
  loom_tensor *cat_nd[] = {a23, loom_ones(LOOM_SHAPE(2, 3, 1), LOOM_F32, loom_cpu())};
  EXPECT_FAILS(loom_cat(cat_nd, 2, 0), LOOM_ERR_INVALID, "cat");
  EXPECT_FAILS(loom_cat(cat_in, 0, 0), LOOM_ERR_INVALID, "cat");
  loom_tensor *stack_in[] = {a23, a43};
  EXPECT_FAILS(loom_stack(stack_in, 2, 0), LOOM_ERR_INVALID, "stack", "[2, 3]", "[4, 3]");
  loom_tensor *cond = loom_ones(LOOM_SHAPE(4), LOOM_BOOL, loom_cpu());
  EXPECT_FAILS(loom_where(cond, a23, a23), LOOM_ERR_INVALID, "where", "[4]", "[2, 3]");
  EXPECT_FAILS(loom_where(loom_ones(LOOM_SHAPE(3), LOOM_BOOL, loom_cpu()), a23, a43), LOOM_ERR_INVALID, "where",
               "[2, 3]", "[4, 3]");
  EXPECT_FAILS(loom_masked_fill(a23, cond, 0), LOOM_ERR_INVALID, "masked_fill", "[4]");
  EXPECT_FAILS(loom_copy_(a23, a43), LOOM_ERR_INVALID, "copy_", "[2, 3]", "[4, 3]");
  loom_tensor *idx = loom_zeros(LOOM_SHAPE(2, 3), LOOM_I64, loom_cpu());
  EXPECT_FAILS(loom_scatter_add(a23, 0, idx, loom_ones(LOOM_SHAPE(1, 3), LOOM_F32, loom_cpu())), LOOM_ERR_INVALID,
               "scatter_add");
  EXPECT_FAILS(loom_gather(a23, 0, loom_zeros(LOOM_SHAPE(2, 3, 1), LOOM_I64, loom_cpu())), LOOM_ERR_INVALID, "gather");
}

TEST(Errors, DimsOutOfRange) {
  ScopeGuard g;
  loom_tensor *x = loom_ones(LOOM_SHAPE(2, 3), LOOM_F32, loom_cpu());
  loom_tensor *i1 = loom_zeros(LOOM_SHAPE(1), LOOM_I64, loom_cpu());
  loom_tensor *i2 = loom_zeros(LOOM_SHAPE(2, 3), LOOM_I64, loom_cpu());
  loom_tensor *xs[] = {x, x};
  loom_tensor *out[4];
  for (int bad : {2, -3, 100, -100}) {
    SCOPED_TRACE(testing::Message() << "dim " << bad);
    const int dims[] = {bad};
    const int perm[] = {0, bad};
    EXPECT_FAILS(loom_size(x, bad) < 0 ? -1 : 0, LOOM_ERR_INVALID, "dim");
    EXPECT_FAILS(loom_stride(x, bad) < 0 ? -1 : 0, LOOM_ERR_INVALID, "dim");
    EXPECT_FAILS(loom_flatten(x, bad, -1), LOOM_ERR_INVALID, "flatten", "dim");
    EXPECT_FAILS(loom_flatten(x, 0, bad), LOOM_ERR_INVALID, "flatten", "dim");
    EXPECT_FAILS(loom_squeeze(x, bad), LOOM_ERR_INVALID, "squeeze", "dim");
    EXPECT_FAILS(loom_permute(x, perm, 2), LOOM_ERR_INVALID, "permute");
    EXPECT_FAILS(loom_transpose(x, 0, bad), LOOM_ERR_INVALID, "transpose", "dim");
    EXPECT_FAILS(loom_narrow(x, bad, 0, 1), LOOM_ERR_INVALID, "narrow", "dim");
    EXPECT_FAILS(loom_slice(x, bad, 0, 1, 1), LOOM_ERR_INVALID, "slice", "dim");
    EXPECT_FAILS(loom_select(x, bad, 0), LOOM_ERR_INVALID, "select", "dim");
    EXPECT_FAILS(loom_cat(xs, 2, bad), LOOM_ERR_INVALID, "cat", "dim");
    EXPECT_FAILS(loom_split(x, 1, bad, out, 4), LOOM_ERR_INVALID, "split", "dim");
    EXPECT_FAILS(loom_chunk(x, 2, bad, out, 4), LOOM_ERR_INVALID, "chunk", "dim");
    EXPECT_FAILS(loom_sum(x, dims, 1, false), LOOM_ERR_INVALID, "sum", "dim");
    EXPECT_FAILS(loom_mean(x, dims, 1, true), LOOM_ERR_INVALID, "mean", "dim");
    EXPECT_FAILS(loom_var(x, dims, 1, 1, false), LOOM_ERR_INVALID, "var", "dim");
    EXPECT_FAILS(loom_std(x, dims, 1, 0, false), LOOM_ERR_INVALID, "std", "dim");
    EXPECT_FAILS(loom_logsumexp(x, dims, 1, false), LOOM_ERR_INVALID, "logsumexp", "dim");
    EXPECT_FAILS(loom_norm(x, 2, dims, 1, false), LOOM_ERR_INVALID, "norm", "dim");
    EXPECT_FAILS(loom_max(x, bad, false, nullptr), LOOM_ERR_INVALID, "max", "dim");
    EXPECT_FAILS(loom_min(x, bad, true, nullptr), LOOM_ERR_INVALID, "min", "dim");
    EXPECT_FAILS(loom_argmax(x, bad, false), LOOM_ERR_INVALID, "argmax", "dim");
    EXPECT_FAILS(loom_argmin(x, bad, false), LOOM_ERR_INVALID, "argmin", "dim");
    EXPECT_FAILS(loom_index_select(x, bad, i1), LOOM_ERR_INVALID, "index_select", "dim");
    EXPECT_FAILS(loom_gather(x, bad, i2), LOOM_ERR_INVALID, "gather", "dim");
    EXPECT_FAILS(loom_scatter_add(x, bad, i2, x), LOOM_ERR_INVALID, "scatter_add", "dim");
    EXPECT_FAILS(loom_scatter(x, bad, i2, x), LOOM_ERR_INVALID, "scatter", "dim");
  }
  // unsqueeze and stack accept one more position: [-3, 2] for a 2-d tensor
  for (int bad : {3, -4}) {
    EXPECT_FAILS(loom_unsqueeze(x, bad), LOOM_ERR_INVALID, "unsqueeze", "dim");
    EXPECT_FAILS(loom_stack(xs, 2, bad), LOOM_ERR_INVALID, "stack", "dim");
  }
  const int dup[] = {0, 0}, dup_neg[] = {1, -1};
  EXPECT_FAILS(loom_permute(x, dup, 2), LOOM_ERR_INVALID, "permute");
  EXPECT_FAILS(loom_permute(x, dup_neg, 2), LOOM_ERR_INVALID, "permute");
  const int one[] = {0};
  EXPECT_FAILS(loom_permute(x, one, 1), LOOM_ERR_INVALID, "permute");
  EXPECT_FAILS(loom_permute(x, nullptr, 2), LOOM_ERR_INVALID, "permute: the permutation is NULL");
  EXPECT_FAILS(loom_sum(x, dup, 2, false), LOOM_ERR_INVALID, "sum");
  EXPECT_FAILS(loom_flatten(x, 1, 0), LOOM_ERR_INVALID, "flatten");
  loom_tensor *s = loom_zeros(LOOM_SHAPE(), LOOM_F32, loom_cpu());
  EXPECT_FAILS(loom_select(s, 0, 0), LOOM_ERR_INVALID, "select");
  EXPECT_FAILS(loom_transpose(s, 0, 1), LOOM_ERR_INVALID, "transpose");
}

TEST(Errors, IndicesOutOfRange) {
  ScopeGuard g;
  loom_tensor *x = loom_ones(LOOM_SHAPE(3, 4), LOOM_F32, loom_cpu());
  auto i64 = [](std::vector<double> v, loom_shape s) { return T(v, s, LOOM_I64); };
  EXPECT_FAILS(loom_index_select(x, 0, i64({0, 3}, LOOM_SHAPE(2))), LOOM_ERR_INVALID, "index_select", "3");
  EXPECT_FAILS(loom_index_select(x, 1, i64({-1}, LOOM_SHAPE(1))), LOOM_ERR_INVALID, "index_select", "-1");
  EXPECT_FAILS(loom_index_select(x, 0, i64({0, 1, 0, 1}, LOOM_SHAPE(2, 2))), LOOM_ERR_INVALID, "index_select");
  EXPECT_FAILS(loom_gather(x, 1, i64({0, 1, 4, 0, 0, 0}, LOOM_SHAPE(3, 2))), LOOM_ERR_INVALID, "gather", "4");
  EXPECT_FAILS(loom_gather(x, 0, i64({0, 0, -5, 0}, LOOM_SHAPE(1, 4))), LOOM_ERR_INVALID, "gather", "-5");
  EXPECT_FAILS(
      loom_scatter_add(x, 0, i64({0, 1, 2, 3}, LOOM_SHAPE(1, 4)), loom_ones(LOOM_SHAPE(1, 4), LOOM_F32, loom_cpu())),
      LOOM_ERR_INVALID, "scatter_add", "3");
  EXPECT_FAILS(loom_scatter(x, 1, i64({0, 1, 4, 0}, LOOM_SHAPE(1, 4)), loom_ones(LOOM_SHAPE(1, 4), LOOM_F32, loom_cpu())),
               LOOM_ERR_INVALID, "scatter", "4");
  EXPECT_FAILS(loom_select(x, 0, 3), LOOM_ERR_INVALID, "select", "3");
  EXPECT_FAILS(loom_select(x, 1, -5), LOOM_ERR_INVALID, "select", "-5");
  EXPECT_FAILS(loom_narrow(x, 1, 2, 3), LOOM_ERR_INVALID, "narrow");
  EXPECT_FAILS(loom_narrow(x, 1, 5, 0), LOOM_ERR_INVALID, "narrow");
  EXPECT_FAILS(loom_narrow(x, 0, 0, -1), LOOM_ERR_INVALID, "narrow");
  EXPECT_FAILS(loom_slice(x, 1, 0, 4, 0), LOOM_ERR_INVALID, "slice", "step");
  EXPECT_FAILS(loom_slice(x, 1, 0, 4, -1), LOOM_ERR_INVALID, "slice", "step");
  EXPECT_FAILS(loom_one_hot(i64({0, 5}, LOOM_SHAPE(2)), 3), LOOM_ERR_INVALID, "one_hot", "5");
  EXPECT_FAILS(loom_one_hot(i64({0, -1}, LOOM_SHAPE(2)), -1), LOOM_ERR_INVALID, "one_hot", "-1");
  const int64_t at[] = {0, 4};
  EXPECT_FAILS(loom_item_at(x, at), LOOM_ERR_INVALID, "item_at");
  loom_tensor *pieces[4];
  EXPECT_FAILS(loom_split(x, 0, 0, pieces, 4), LOOM_ERR_INVALID, "split");
  EXPECT_FAILS(loom_chunk(x, 0, 0, pieces, 4), LOOM_ERR_INVALID, "chunk");
}

TEST(Errors, WrongDtypes) {
  ScopeGuard g;
  loom_tensor *x = loom_ones(LOOM_SHAPE(3, 4), LOOM_F32, loom_cpu());
  loom_tensor *fi1 = T({0, 1}, LOOM_SHAPE(2), LOOM_F32);
  loom_tensor *fi2 = T({0, 1, 2, 0}, LOOM_SHAPE(1, 4), LOOM_F32);
  EXPECT_FAILS(loom_index_select(x, 0, fi1), LOOM_ERR_INVALID, "index_select", "f32");
  EXPECT_FAILS(loom_gather(x, 0, fi2), LOOM_ERR_INVALID, "gather", "f32");
  EXPECT_FAILS(loom_scatter_add(x, 0, fi2, loom_ones(LOOM_SHAPE(1, 4), LOOM_F32, loom_cpu())), LOOM_ERR_INVALID,
               "scatter_add", "f32");
  EXPECT_FAILS(loom_one_hot(fi1, 3), LOOM_ERR_INVALID, "one_hot", "f32");
  loom_tensor *idx = loom_zeros(LOOM_SHAPE(1, 4), LOOM_I64, loom_cpu());
  EXPECT_FAILS(loom_scatter_add(x, 0, idx, loom_ones(LOOM_SHAPE(1, 4), LOOM_F64, loom_cpu())), LOOM_ERR_INVALID,
               "scatter_add", "f32", "f64");
  EXPECT_FAILS(loom_scatter(x, 0, idx, loom_ones(LOOM_SHAPE(1, 4), LOOM_F64, loom_cpu())), LOOM_ERR_INVALID, "scatter",
               "f32", "f64");
  EXPECT_FAILS(loom_scatter(x, 0, fi2, x), LOOM_ERR_INVALID, "scatter", "f32");
  EXPECT_FAILS(loom_scatter(x, 0, loom_zeros(LOOM_SHAPE(4, 4), LOOM_I64, loom_cpu()), x), LOOM_ERR_INVALID, "scatter");
  EXPECT_FAILS(loom_scatter(x, 0, idx, loom_ones(LOOM_SHAPE(1, 3), LOOM_F32, loom_cpu())), LOOM_ERR_INVALID, "scatter");
  EXPECT_FAILS(loom_where(loom_ones(LOOM_SHAPE(4), LOOM_F32, loom_cpu()), x, x), LOOM_ERR_INVALID, "where", "f32");
  EXPECT_FAILS(loom_masked_fill(x, loom_ones(LOOM_SHAPE(4), LOOM_I64, loom_cpu()), 0), LOOM_ERR_INVALID, "masked_fill",
               "i64");
  EXPECT_FAILS(loom_empty(LOOM_SHAPE(2), (loom_dtype)42, loom_cpu()), LOOM_ERR_INVALID, "dtype");
  EXPECT_FAILS(loom_to_dtype(x, LOOM_DTYPE_COUNT), LOOM_ERR_INVALID, "dtype");
  EXPECT_FAILS(loom_randn(LOOM_SHAPE(2), LOOM_I32, loom_cpu()), LOOM_ERR_INVALID, "randn", "i32");
  EXPECT_FAILS(loom_rand(LOOM_SHAPE(2), LOOM_BOOL, loom_cpu()), LOOM_ERR_INVALID, "rand", "bool");
}

// Integer inputs to float math: either promoted to a float dtype with correct values
// (PyTorch's behaviour) or refused with a clear error naming the op and the dtype.
TEST(Errors, IntegerInputsToFloatMath) {
  ScopeGuard g;
  loom_tensor *xi = T({1, 4, 9, 16}, LOOM_SHAPE(2, 2), LOOM_I32);
  struct Case {
    const char *name;
    loom_tensor *(*op)(const loom_tensor *);
    double (*ref)(double);
  };
  const Case cases[] = {{"exp", loom_exp, [](double v) { return std::exp(v); }},
                        {"log", loom_log, [](double v) { return std::log(v); }},
                        {"sqrt", loom_sqrt, [](double v) { return std::sqrt(v); }}};
  for (const Case &c : cases) {
    SCOPED_TRACE(c.name);
    loom_clear_error();
    loom_tensor *y = c.op(xi);
    if (y) {
      EXPECT_TRUE(loom_dtype_is_float(loom_dtype_of(y)))
          << "promoted result has dtype " << loom_dtype_name(loom_dtype_of(y));
      std::vector<double> v = V(y);
      const double in[] = {1, 4, 9, 16};
      for (int i = 0; i < 4; i++) EXPECT_NEAR(v[(size_t)i], c.ref(in[i]), 1e-5 * (1 + c.ref(in[i])));
    } else {
      EXPECT_TRUE(loom_last_status() == LOOM_ERR_INVALID || loom_last_status() == LOOM_ERR_UNSUPPORTED)
          << loom_status_name(loom_last_status());
      EXPECT_TRUE(error_is(loom_last_status(), {c.name, "i32"}));
    }
  }
  loom_clear_error();
  loom_tensor *m = loom_matmul(xi, xi);
  if (m) {
    EXPECT_EQ(V(m), (std::vector<double>{1 * 1 + 4 * 9, 1 * 4 + 4 * 16, 9 * 1 + 16 * 9, 9 * 4 + 16 * 16}));
  } else {
    EXPECT_TRUE(loom_last_status() == LOOM_ERR_INVALID || loom_last_status() == LOOM_ERR_UNSUPPORTED);
    EXPECT_TRUE(error_is(loom_last_status(), {"matmul", "i32"}));
  }
}

TEST(Errors, CudaWithoutAVisibleDevice) {
  if (has_gpu()) GTEST_SKIP() << "a CUDA device is visible";
  ScopeGuard g;
  const loom_status want = LOOM_ERR_DEVICE;  // "no device", whether or not CUDA was built
  EXPECT_FAILS(loom_zeros(LOOM_SHAPE(2, 3), LOOM_F32, loom_cuda(0)), want, "cuda");
  EXPECT_FAILS(loom_empty(LOOM_SHAPE(4), LOOM_F16, loom_cuda(1)), want, "cuda");
  EXPECT_FAILS(loom_randn(LOOM_SHAPE(4), LOOM_F32, loom_cuda(0)), want, "cuda");
  loom_tensor *x = loom_ones(LOOM_SHAPE(2), LOOM_F32, loom_cpu());
  EXPECT_FAILS(loom_to_device(x, loom_cuda(0)), want, "cuda");
  const float host[] = {1, 2};
  EXPECT_FAILS(loom_from_host(host, LOOM_SHAPE(2), LOOM_F32, loom_cuda(0)), want, "cuda");
  EXPECT_FAILS(loom_synchronize(loom_cuda(0)), want, "cuda");
}

TEST(Errors, TensorsOnDifferentDevices) {
  LOOM_REQUIRE_GPU();
  ScopeGuard g;
  loom_tensor *c = loom_ones(LOOM_SHAPE(2, 2), LOOM_F32, loom_cpu());
  loom_tensor *d = loom_ones(LOOM_SHAPE(2, 2), LOOM_F32, loom_cuda(0));
  ASSERT_T(d);
  EXPECT_FAILS(loom_add(c, d), LOOM_ERR_INVALID, "add", "cpu", "cuda:0");
  EXPECT_FAILS(loom_matmul(d, c), LOOM_ERR_INVALID, "matmul", "cpu", "cuda:0");
  loom_tensor *both[] = {c, d};
  EXPECT_FAILS(loom_cat(both, 2, 0), LOOM_ERR_INVALID, "cat", "cpu", "cuda:0");
  EXPECT_FAILS(loom_where(loom_ones(LOOM_SHAPE(2, 2), LOOM_BOOL, loom_cpu()), d, d), LOOM_ERR_INVALID, "where", "cpu",
               "cuda:0");
  EXPECT_FAILS(loom_index_select(d, 0, loom_zeros(LOOM_SHAPE(1), LOOM_I64, loom_cpu())), LOOM_ERR_INVALID,
               "index_select", "cpu", "cuda:0");
  EXPECT_EQ(loom_copy_(c, d), 0) << "copy_ moves data across devices: " << loom_last_error();
}

TEST(Errors, BadViewsAndExpands) {
  ScopeGuard g;
  loom_tensor *x = loom_ones(LOOM_SHAPE(2, 3), LOOM_F32, loom_cpu());
  EXPECT_FAILS(loom_view(x, LOOM_SHAPE(4)), LOOM_ERR_INVALID, "view", "[2, 3]", "[4]");
  EXPECT_FAILS(loom_view(x, LOOM_SHAPE(-1, 4)), LOOM_ERR_INVALID, "view", "[-1, 4]", "6");
  EXPECT_FAILS(loom_view(x, LOOM_SHAPE(-1, -1)), LOOM_ERR_INVALID, "view");
  EXPECT_FAILS(loom_reshape(x, LOOM_SHAPE(5, -1)), LOOM_ERR_INVALID, "reshape", "[5, -1]", "6");
  EXPECT_FAILS(loom_reshape(x, LOOM_SHAPE(7)), LOOM_ERR_INVALID, "reshape", "[2, 3]", "[7]");
  EXPECT_FAILS(loom_reshape(x, LOOM_SHAPE(2, -3)), LOOM_ERR_INVALID, "reshape");
  loom_tensor *c = loom_ones(LOOM_SHAPE(3, 1), LOOM_F32, loom_cpu());
  EXPECT_FAILS(loom_expand(c, LOOM_SHAPE(4, 4)), LOOM_ERR_INVALID, "expand", "[3, 1]", "[4, 4]");
  EXPECT_FAILS(loom_expand(c, LOOM_SHAPE(4)), LOOM_ERR_INVALID, "expand", "[3, 1]", "[4]");
  EXPECT_FAILS(loom_expand(c, LOOM_SHAPE(-1, 4, 2)), LOOM_ERR_INVALID, "expand");
  EXPECT_FAILS(loom_expand(c, LOOM_SHAPE(3, -2)), LOOM_ERR_INVALID, "expand");
}

TEST(Errors, BadShapesAndSizes) {
  ScopeGuard g;
  loom_shape nine{9, {1, 1, 1, 1, 1, 1, 1, 1}};
  EXPECT_FAILS(loom_zeros(nine, LOOM_F32, loom_cpu()), LOOM_ERR_INVALID, "8");
  loom_shape negative_ndim{-1, {0}};
  EXPECT_FAILS(loom_empty(negative_ndim, LOOM_F32, loom_cpu()), LOOM_ERR_INVALID);
  loom_tensor *eight = loom_ones(LOOM_SHAPE(1, 1, 1, 1, 1, 1, 1, 2), LOOM_F32, loom_cpu());
  ASSERT_T(eight);
  EXPECT_FAILS(loom_unsqueeze(eight, 0), LOOM_ERR_INVALID, "unsqueeze", "8");
  EXPECT_FAILS(loom_view(eight, nine), LOOM_ERR_INVALID, "view", "8");
  loom_tensor *eights[] = {eight, eight};
  EXPECT_FAILS(loom_stack(eights, 2, 0), LOOM_ERR_INVALID, "stack", "8");
  EXPECT_FAILS(loom_zeros(LOOM_SHAPE(2, -3), LOOM_F32, loom_cpu()), LOOM_ERR_INVALID, "[2, -3]");
  EXPECT_FAILS(loom_full(LOOM_SHAPE(-1), 1, LOOM_F32, loom_cpu()), LOOM_ERR_INVALID, "-1");
  EXPECT_FAILS(loom_rand(LOOM_SHAPE(-5, 2), LOOM_F32, loom_cpu()), LOOM_ERR_INVALID, "-5");
  EXPECT_FAILS(loom_eye(-2, 3, LOOM_F32, loom_cpu()), LOOM_ERR_INVALID, "eye");
  EXPECT_FAILS(loom_linspace(0, 1, -1, LOOM_F32, loom_cpu()), LOOM_ERR_INVALID, "linspace");
  EXPECT_FAILS(loom_randint(5, 5, LOOM_SHAPE(2), LOOM_I64, loom_cpu()), LOOM_ERR_INVALID, "randint");

  // the element count overflows int64
  const int64_t big = (int64_t)1 << 40;
  loom_clear_error();
  EXPECT_EQ(loom_zeros(LOOM_SHAPE(big, big), LOOM_F32, loom_cpu()), nullptr);
  EXPECT_TRUE(loom_last_status() == LOOM_ERR_INVALID || loom_last_status() == LOOM_ERR_OOM)
      << loom_status_name(loom_last_status()) << ": " << loom_last_error();
  EXPECT_STRNE(loom_last_error(), "");
  loom_clear_error();
  EXPECT_EQ(loom_empty(LOOM_SHAPE(INT64_MAX / 2, 3), LOOM_U8, loom_cpu()), nullptr);
  EXPECT_NE(loom_last_status(), LOOM_OK);
  // the count fits but the bytes cannot exist: 4 PiB is beyond any address space
  loom_clear_error();
  EXPECT_EQ(loom_empty(LOOM_SHAPE((int64_t)1 << 50), LOOM_F32, loom_cpu()), nullptr);
  EXPECT_TRUE(loom_last_status() == LOOM_ERR_OOM || loom_last_status() == LOOM_ERR_INVALID)
      << loom_status_name(loom_last_status()) << ": " << loom_last_error();
  EXPECT_STRNE(loom_last_error(), "");
  loom_clear_error();
  loom_tensor *one = loom_ones(LOOM_SHAPE(1), LOOM_F32, loom_cpu());
  EXPECT_EQ(loom_expand(one, LOOM_SHAPE(big, big)), nullptr) << "an expanded view of 2^80 elements";
  EXPECT_NE(loom_last_status(), LOOM_OK);
}

TEST(Errors, ToHostBufferTooSmall) {
  ScopeGuard g;
  loom_tensor *x = loom_ones(LOOM_SHAPE(2, 3), LOOM_F32, loom_cpu());
  float buf[6] = {-1, -1, -1, -1, -1, -1};
  EXPECT_FAILS(loom_to_host(x, buf, 5 * sizeof(float)), LOOM_ERR_INVALID, "to_host", "24");
  EXPECT_EQ(buf[0], -1.0f) << "nothing is written on failure";
  EXPECT_EQ(loom_to_host(x, buf, sizeof buf), 0) << loom_last_error();
  EXPECT_EQ(buf[5], 1.0f);
}

TEST(Errors, BackwardWithoutGrad) {
  ScopeGuard g;
  loom_tensor *x = loom_ones(LOOM_SHAPE(3), LOOM_F32, loom_cpu());
  loom_tensor *loss = loom_sum(loom_mul(x, x), nullptr, 0, false);
  ASSERT_T(loss);
  EXPECT_FAILS(loom_backward(loss, nullptr, false), LOOM_ERR_INVALID, "backward", "grad");
  loom_tensor *w = loom_ones(LOOM_SHAPE(3), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_set_requires_grad(w, true), 0);
  loom_tensor *y = loom_mul(w, x);
  EXPECT_FAILS(loom_backward(loom_sum(y, nullptr, 0, false), loom_ones(LOOM_SHAPE(2), LOOM_F32, loom_cpu()), false),
               LOOM_ERR_INVALID, "backward");
  EXPECT_FAILS(loom_set_requires_grad(y, false), LOOM_ERR_INVALID, "requires_grad");
}

TEST(Errors, ErrorStateIsThreadLocal) {
  ScopeGuard g;
  loom_clear_error();
  EXPECT_EQ(loom_view(loom_ones(LOOM_SHAPE(2, 3), LOOM_F32, loom_cpu()), LOOM_SHAPE(5)), nullptr);
  ASSERT_EQ(loom_last_status(), LOOM_ERR_INVALID);
  const std::string main_msg = loom_last_error();
  loom_status seen_status = LOOM_ERR_INTERNAL;
  std::string seen_msg = "unset", thread_msg;
  loom_status thread_status = LOOM_OK;
  std::thread t([&] {
    seen_status = loom_last_status();
    seen_msg = loom_last_error();
    loom_scope_begin();
    loom_transpose(loom_ones(LOOM_SHAPE(2), LOOM_F32, loom_cpu()), 0, 3);
    thread_status = loom_last_status();
    thread_msg = loom_last_error();
    loom_scope_end();
  });
  t.join();
  EXPECT_EQ(seen_status, LOOM_OK) << "a new thread starts with no error";
  EXPECT_EQ(seen_msg, "");
  EXPECT_EQ(thread_status, LOOM_ERR_INVALID);
  EXPECT_NE(thread_msg.find("transpose"), std::string::npos) << thread_msg;
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INVALID);
  EXPECT_EQ(std::string(loom_last_error()), main_msg) << "the other thread's error did not leak here";
  loom_clear_error();
  EXPECT_EQ(loom_last_status(), LOOM_OK);
  EXPECT_STREQ(loom_last_error(), "");
}
