// Shared helpers for the GoogleTest suites (declared in loom_test.h).
#include <stdio.h>
#include <sys/wait.h>

#include "loom_test.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>

loom_tensor *T(const std::vector<double> &vals, loom_shape s, loom_dtype dt, loom_device dev) {
  if ((int64_t)vals.size() != loom_shape_numel(s)) {
    ADD_FAILURE() << "T: " << vals.size() << " values for shape " << loom_shape_str(s);
    return nullptr;
  }
  if (dt == LOOM_F64 && dev.type == LOOM_CPU) return loom_from_host(vals.data(), s, dt, dev);
  // Build in f64 on the CPU, convert, and hand only the result to the caller's scope.
  loom_scope_begin();
  loom_tensor *host = loom_from_host(vals.data(), s, LOOM_F64, loom_cpu());
  loom_tensor *out = loom_to(host, dev, dt);
  if (out) loom_keep(out);
  loom_scope_end();
  return out;
}

std::vector<double> V(const loom_tensor *t) {
  if (!t) return {};
  std::vector<double> out((size_t)loom_numel(t));
  loom_scope_begin();
  loom_tensor *h = loom_to(t, loom_cpu(), LOOM_F64);
  int rc = h ? loom_to_host(h, out.data(), out.size() * sizeof(double)) : -1;
  loom_scope_end();
  if (rc != 0) {
    ADD_FAILURE() << "V: cannot read tensor back: " << loom_last_error();
    return {};
  }
  return out;
}

double rel_err(const loom_tensor *out, const loom_tensor *ref) {
  if (!out || !ref || !loom_shape_equal(loom_shape_of(out), loom_shape_of(ref))) return INFINITY;
  std::vector<double> o = V(out), r = V(ref);
  if (o.size() != r.size()) return INFINITY;
  long double diff = 0, norm = 0;
  for (size_t i = 0; i < o.size(); i++) {
    if (std::isnan(o[i]) || std::isnan(r[i])) return INFINITY;
    if (std::isinf(o[i]) || std::isinf(r[i])) {
      if (o[i] == r[i]) continue;
      return INFINITY;
    }
    long double d = (long double)o[i] - r[i];
    diff += d * d;
    norm += (long double)r[i] * r[i];
  }
  if (norm == 0) return (double)std::sqrt(diff);
  return (double)std::sqrt(diff / norm);
}

bool has_gpu() { return loom_cuda_device_count() > 0; }

namespace {

// Offset (in elements, from loom_data_ptr) of the row-major element `flat` of t.
int64_t element_offset(const loom_tensor *t, int64_t flat) {
  int64_t off = 0;
  for (int d = loom_ndim(t) - 1; d >= 0; d--) {
    int64_t n = loom_size(t, d);
    off += (flat % n) * loom_stride(t, d);
    flat /= n;
  }
  return off;
}

// sum(f(x) * w) computed on the host in long double; NaN when f fails.
double host_loss(const std::function<loom_tensor *(const std::vector<loom_tensor *> &)> &f,
                 const std::vector<loom_tensor *> &inputs, const std::vector<double> &w) {
  loom_scope_begin();
  std::vector<double> y = V(f(inputs));
  loom_scope_end();
  if (y.size() != w.size()) return NAN;
  long double acc = 0;
  for (size_t i = 0; i < y.size(); i++) acc += (long double)y[i] * w[i];
  return (double)acc;
}

}  // namespace

::testing::AssertionResult gradcheck(
    const std::function<loom_tensor *(const std::vector<loom_tensor *> &)> &f,
    const std::vector<loom_tensor *> &inputs, double eps, double atol, double rtol) {
  for (size_t k = 0; k < inputs.size(); k++) {
    const loom_tensor *x = inputs[k];
    if (!x) return ::testing::AssertionFailure() << "gradcheck: input " << k << " is NULL";
    if (loom_requires_grad(x) &&
        (loom_dtype_of(x) != LOOM_F64 || loom_device_of(x).type != LOOM_CPU || !loom_is_leaf(x)))
      return ::testing::AssertionFailure() << "gradcheck: input " << k << " needs a grad but is not an f64 CPU leaf";
  }
  ScopeGuard scope;
  loom_tensor *y = f(inputs);
  if (!y) return ::testing::AssertionFailure() << "gradcheck: forward failed: " << loom_last_error();
  std::mt19937_64 rng(0x5EEDull);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  std::vector<double> w((size_t)loom_numel(y));
  for (double &v : w) v = uni(rng);
  loom_tensor *wt = loom_from_host(w.data(), loom_shape_of(y), LOOM_F64, loom_cpu());
  loom_tensor *loss = loom_sum(loom_mul(y, wt), nullptr, 0, false);
  if (!loss) return ::testing::AssertionFailure() << "gradcheck: loss failed: " << loom_last_error();
  for (loom_tensor *x : inputs)
    if (loom_requires_grad(x)) loom_zero_grad(x);
  if (loom_backward(loss, nullptr, false) != 0)
    return ::testing::AssertionFailure() << "gradcheck: backward failed: " << loom_last_error();

  std::vector<std::vector<double>> analytic(inputs.size());
  for (size_t k = 0; k < inputs.size(); k++) {
    loom_tensor *x = inputs[k];
    if (!loom_requires_grad(x)) continue;
    loom_tensor *g = loom_grad(x);
    if (g && !loom_shape_equal(loom_shape_of(g), loom_shape_of(x)))
      return ::testing::AssertionFailure() << "gradcheck: grad of input " << k << " has shape "
                                           << loom_shape_str(loom_shape_of(g)) << ", input has "
                                           << loom_shape_str(loom_shape_of(x));
    analytic[k] = g ? V(g) : std::vector<double>((size_t)loom_numel(x), 0.0);
    loom_zero_grad(x);
  }

  struct Worst { size_t input = 0; int64_t elem = -1; double a = 0, n = 0, ratio = 0; } worst;
  int64_t failures = 0, checked = 0;
  bool forward_failed = false;
  loom_no_grad_begin();
  for (size_t k = 0; k < inputs.size() && !forward_failed; k++) {
    loom_tensor *x = inputs[k];
    if (!loom_requires_grad(x)) continue;
    double *base = static_cast<double *>(loom_data_ptr(x));
    for (int64_t e = 0; e < loom_numel(x); e++) {
      double *p = base + element_offset(x, e);
      double orig = *p;
      *p = orig + eps;
      double lp = host_loss(f, inputs, w);
      *p = orig - eps;
      double lm = host_loss(f, inputs, w);
      *p = orig;
      if (std::isnan(lp) || std::isnan(lm)) { forward_failed = true; break; }
      double num = (lp - lm) / (2 * eps), an = analytic[k][(size_t)e];
      double ratio = std::fabs(an - num) / (atol + rtol * std::fabs(num));
      checked++;
      if (!(ratio <= 1.0)) failures++;
      if (!(ratio <= worst.ratio)) worst = {k, e, an, num, ratio};
    }
  }
  loom_no_grad_end();
  if (forward_failed)
    return ::testing::AssertionFailure() << "gradcheck: forward failed while perturbing: " << loom_last_error();
  if (failures == 0) return ::testing::AssertionSuccess() << checked << " elements checked";
  std::ostringstream msg;
  msg << "gradcheck: " << failures << " of " << checked << " elements out of tolerance; worst: input "
      << worst.input << " element " << worst.elem << " analytic " << worst.a << " numeric " << worst.n
      << " (atol " << atol << ", rtol " << rtol << ")";
  return ::testing::AssertionFailure() << msg.str();
}

Fixture::Fixture(const char *fixture_name) : name(fixture_name) {
  std::string path = std::string(LOOM_FIXTURE_DIR) + "/" + fixture_name + ".safetensors";
  map = loom_safetensors_load(path.c_str(), loom_cpu());
  if (!map) ADD_FAILURE() << "fixture " << path << ": " << loom_last_error();
}

Fixture::~Fixture() { loom_map_free(map); }

loom_tensor *Fixture::operator[](const std::string &key) const {
  loom_tensor *t = map ? loom_map_get(map, key.c_str()) : nullptr;
  if (!t && map) ADD_FAILURE() << "fixture " << name << " has no tensor '" << key << "'";
  return t;
}

std::string Fixture::meta(const std::string &key) const {
  const char *v = map ? loom_map_get_meta(map, key.c_str()) : nullptr;
  return v ? v : "";
}

std::vector<std::string> param_names(loom_module *m) {
  std::vector<std::string> v;
  loom_named_tensors *l = loom_module_named_parameters(m);
  for (int i = 0; l && i < l->n; i++) v.push_back(l->names[i]);
  loom_named_tensors_free(l);
  return v;
}

::testing::AssertionResult close(const loom_tensor *out, const loom_tensor *ref, double tol) {
  if (!out) return ::testing::AssertionFailure() << "output is NULL: " << loom_last_error();
  if (!ref) return ::testing::AssertionFailure() << "reference is missing";
  if (!loom_shape_equal(loom_shape_of(out), loom_shape_of(ref)))
    return ::testing::AssertionFailure() << "shape " << loom_shape_str(loom_shape_of(out))
                                         << ", reference " << loom_shape_str(loom_shape_of(ref));
  double e = rel_err(out, ref);
  if (e <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "relative error " << e << " > " << tol;
}

ToolRun run_tool(const std::string &command) {
  ToolRun o{-1, ""};
  FILE *p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return o;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) o.text.append(buf, n);
  int st = pclose(p);
  o.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return o;
}
