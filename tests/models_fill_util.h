// The model-zoo parity suites' shared helpers (tests/test_models_*.cpp): the
// "hash fill" that gives Loom and tools/fixtures/gen_models.py the same weights
// and inputs without storing them, and loading a hash-filled state_dict.
//
// Hash fill of a tensor named `name` (its full dotted state_dict name), flat
// row-major element i:
//   seed = FNV-1a 64 of name's bytes (offset 0xcbf29ce484222325, prime 0x100000001b3)
//   z = seed + (i + 1) * 0x9E3779B97F4A7C15 (mod 2^64), then splitmix64's finaliser:
//   z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9; z = (z ^ z >> 27) * 0x94D049BB133111EB;
//   z ^= z >> 31; u = (z >> 40) * 2^-24 (in [0, 1), exact in f32)
// value, computed in f64 and rounded to f32:
//   ...running_var 0.5 + u; ...running_mean 0.2 (2u - 1); ...num_batches_tracked 0 (i64);
//   1-d ...weight 0.5 + 0.5u; 1-d ...bias 0.1 (2u - 1);
//   >= 2 dims (2u - 1) sqrt(6 / fan_in), fan_in = numel / shape[0].
// Inputs: name "input", value 2u - 1; projection vectors: name + "#grad" / "#buf", 2u - 1.
#pragma once
#include "loom_test.h"

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace models {

using ModulePtr = std::unique_ptr<loom_module, decltype(&loom_module_free)>;
using NamedPtr = std::unique_ptr<loom_named_tensors, decltype(&loom_named_tensors_free)>;

// [n, C] for the seed network, [n, C, hw, hw] for image models (C from the registry).
inline loom_shape input_shape(const char *model, int64_t n, int64_t hw) {
  const loom_model_info *info = loom_model_find(model);
  if (!info) return LOOM_SHAPE();
  if (info->input[1] == 0) return LOOM_SHAPE(n, info->input[0]);
  return LOOM_SHAPE(n, info->input[0], hw, hw);
}

inline uint64_t fnv1a64(const std::string &s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// u in [0, 1) of element i of the tensor whose name hashes to seed.
inline double hash_u(uint64_t seed, int64_t i) {
  uint64_t z = seed + (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (double)(z >> 40) * 0x1p-24;
}

inline bool ends_with(const std::string &s, const char *tail) {
  size_t n = std::strlen(tail);
  return s.size() >= n && s.compare(s.size() - n, n, tail) == 0;
}

// A new CPU tensor of shape s holding the hash fill of state_dict entry name
// (an i64 counter is zeros). NULL + a test failure when no rule applies.
inline loom_tensor *hash_value(const std::string &name, loom_shape s, loom_dtype dt) {
  int64_t n = loom_shape_numel(s);
  if (ends_with(name, "num_batches_tracked")) return loom_zeros(s, dt, loom_cpu());
  enum { VAR, MEAN, WEIGHT1, BIAS1, FAN_IN } rule;
  if (ends_with(name, "running_var")) rule = VAR;
  else if (ends_with(name, "running_mean")) rule = MEAN;
  else if (s.ndim == 1 && ends_with(name, "weight")) rule = WEIGHT1;
  else if (s.ndim == 1 && ends_with(name, "bias")) rule = BIAS1;
  else if (s.ndim >= 2) rule = FAN_IN;
  else {
    ADD_FAILURE() << "hash fill: no rule for " << name << " " << loom_shape_str(s);
    return nullptr;
  }
  double scale = rule == FAN_IN ? std::sqrt(6.0 / (double)(n / s.d[0])) : 0;
  uint64_t seed = fnv1a64(name);
  loom_tensor *t = loom_empty(s, LOOM_F32, loom_cpu());
  float *v = t ? static_cast<float *>(loom_data_ptr(t)) : nullptr;
  for (int64_t i = 0; v && i < n; i++) {
    double u = hash_u(seed, i);
    double x = rule == VAR ? 0.5 + u : rule == MEAN ? 0.2 * (2 * u - 1) : rule == WEIGHT1 ? 0.5 + 0.5 * u
             : rule == BIAS1 ? 0.1 * (2 * u - 1) : (2 * u - 1) * scale;
    v[i] = (float)x;
  }
  if (t && dt != LOOM_F32) {
    loom_tensor *c = loom_to_dtype(t, dt);
    loom_release(t);
    t = c;
  }
  return t;
}

// 2u - 1 for every element of a tensor named name (inputs, projection vectors), as doubles.
inline std::vector<double> hash_signed(const std::string &name, int64_t n) {
  uint64_t seed = fnv1a64(name);
  std::vector<double> v((size_t)n);
  for (int64_t i = 0; i < n; i++) v[(size_t)i] = (double)(float)(2 * hash_u(seed, i) - 1);
  return v;
}

// ||t||, sum(t * r) and ||r|| for r = hash_signed(rname) of t's size, streamed
// (no copies: the big Linear layers' gradients have 100M elements). false when
// t is NULL or of an unexpected dtype.
struct Projection {
  double norm = 0, proj = 0, r_norm = 0;
};
inline bool project(const loom_tensor *t, const std::string &rname, Projection *out) {
  if (!t) return false;
  std::vector<double> copy;
  const void *data = loom_data_ptr(t);
  loom_dtype dt = loom_dtype_of(t);
  if (loom_device_of(t).type != LOOM_CPU || !loom_is_contiguous(t) ||
      (dt != LOOM_F32 && dt != LOOM_F64 && dt != LOOM_I64)) {
    copy = V(t);
    if (copy.size() != (size_t)loom_numel(t)) return false;
    data = copy.data(), dt = LOOM_F64;
  }
  uint64_t seed = fnv1a64(rname);
  double nn = 0, pr = 0, rr = 0;
  for (int64_t i = 0, n = loom_numel(t); i < n; i++) {
    double x = dt == LOOM_F32   ? (double)static_cast<const float *>(data)[i]
               : dt == LOOM_F64 ? static_cast<const double *>(data)[i]
                                : (double)static_cast<const int64_t *>(data)[i];
    double r = (double)(float)(2 * hash_u(seed, i) - 1);
    nn += x * x, pr += x * r, rr += r * r;
  }
  *out = {std::sqrt(nn), pr, std::sqrt(rr)};
  return true;
}

// The hash-filled input of shape s (f32, CPU), in the caller's scope.
inline loom_tensor *hash_input(loom_shape s) {
  std::vector<double> v = hash_signed("input", loom_shape_numel(s));
  std::vector<float> f(v.begin(), v.end());
  return loom_from_host(f.data(), s, LOOM_F32, loom_cpu());
}

// A file name unique to this process and test, for `bytes` bytes: in /dev/shm
// when it has room (a memory file system: saving a VGG's 500 MB and reading it
// back takes no disk), else in the system temp folder.
inline std::string temp_file(const std::string &stem, uintmax_t bytes) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path dir = fs::temp_directory_path();
  if (fs::is_directory("/dev/shm", ec) && fs::space("/dev/shm", ec).available > 2 * bytes + (256u << 20) && !ec)
    dir = "/dev/shm";
  return (dir / ("loom_models_" + std::to_string(getpid()) + "_" + stem + ".safetensors")).string();
}

// Writes a hash-filled copy of every entry of m's state_dict (names, shapes and
// dtypes as Loom has them) to a temporary safetensors file and loads it back
// into m with loom_module_load(strict): torchvision's names must match Loom's.
inline ::testing::AssertionResult load_hash_filled(loom_module *m, const std::string &stem) {
  loom_tensor_map *sd = loom_module_state_dict(m);
  if (!sd) return ::testing::AssertionFailure() << "state_dict: " << loom_last_error();
  loom_tensor_map *fill = loom_map_new();
  bool ok = true;
  uintmax_t bytes = 0;
  for (int i = 0; i < loom_map_size(sd) && ok; i++) {
    const char *name = loom_map_name(sd, i);
    const loom_tensor *t = loom_map_get(sd, name);
    bytes += (uintmax_t)loom_numel(t) * loom_dtype_size(loom_dtype_of(t));
    loom_scope_begin();  // the map keeps its own reference
    loom_tensor *v = hash_value(name, loom_shape_of(t), loom_dtype_of(t));
    ok = v && loom_map_set(fill, name, v) == 0;
    loom_scope_end();
  }
  loom_map_free(sd);
  std::string path = temp_file(stem, bytes);
  int rc = ok ? loom_safetensors_save(path.c_str(), fill) : -1;
  loom_map_free(fill);
  if (!ok) return ::testing::AssertionFailure() << "hash fill failed: " << loom_last_error();
  if (rc != 0) return ::testing::AssertionFailure() << "save " << path << ": " << loom_last_error();
  rc = loom_module_load(m, path.c_str(), /*strict=*/true);
  std::filesystem::remove(path);
  if (rc != 0) return ::testing::AssertionFailure() << "strict load: " << loom_last_error();
  return ::testing::AssertionSuccess();
}

// ||out - ref|| / ||ref|| plus the largest |out - ref|, as an assertion.
inline ::testing::AssertionResult close_logits(const loom_tensor *out, const loom_tensor *ref, double tol) {
  if (!out) return ::testing::AssertionFailure() << "output is NULL: " << loom_last_error();
  if (!ref) return ::testing::AssertionFailure() << "reference is missing";
  if (!loom_shape_equal(loom_shape_of(out), loom_shape_of(ref)))
    return ::testing::AssertionFailure() << "shape " << loom_shape_str(loom_shape_of(out)) << ", reference "
                                         << loom_shape_str(loom_shape_of(ref));
  std::vector<double> o = V(out), r = V(ref);
  if (o.empty() || o.size() != r.size()) return ::testing::AssertionFailure() << "cannot read the logits back";
  double diff = 0, norm = 0, max_abs = 0;
  size_t at = 0;
  for (size_t i = 0; i < o.size(); i++) {
    double d = std::fabs(o[i] - r[i]);
    if (!std::isnan(max_abs) && !(d <= max_abs)) max_abs = d, at = i;  // the first NaN sticks
    diff += d * d;
    norm += r[i] * r[i];
  }
  double rel = std::sqrt(diff / norm);
  if (rel < tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "relative error " << rel << " >= " << tol << "; max |diff| " << max_abs
                                       << " at element " << at << " (Loom " << o[at] << ", torch " << r[at]
                                       << ")";
}

}  // namespace models
