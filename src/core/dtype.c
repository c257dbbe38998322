/* dtypes, devices, shapes, half-precision conversions, global modes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#include "core/tensor_impl.h"

static const char *const dtype_names[LOOM_DTYPE_COUNT] = {"f32", "f64", "f16", "bf16",
                                                          "i32", "i64", "u8",  "bool"};
static const size_t dtype_sizes[LOOM_DTYPE_COUNT] = {4, 8, 2, 2, 4, 8, 1, 1};

const char *loom_dtype_name(loom_dtype dt) {
  return (unsigned)dt < LOOM_DTYPE_COUNT ? dtype_names[dt] : "invalid-dtype";
}
size_t loom_dtype_size(loom_dtype dt) { return (unsigned)dt < LOOM_DTYPE_COUNT ? dtype_sizes[dt] : 0; }
bool loom_dtype_is_float(loom_dtype dt) {
  return dt == LOOM_F32 || dt == LOOM_F64 || dt == LOOM_F16 || dt == LOOM_BF16;
}

/* PyTorch's promotion for same-category and mixed operands (no scalars). */
loom_dtype loom_promote_types(loom_dtype a, loom_dtype b) {
  if ((unsigned)a >= LOOM_DTYPE_COUNT || (unsigned)b >= LOOM_DTYPE_COUNT) return LOOM_DTYPE_COUNT;
  if (a == b) return a;
  bool fa = loom_dtype_is_float(a), fb = loom_dtype_is_float(b);
  if (fa && !fb) return a;
  if (fb && !fa) return b;
  if (fa && fb) {
    if (a == LOOM_F64 || b == LOOM_F64) return LOOM_F64;
    return LOOM_F32; /* f32 with f16/bf16, and f16 with bf16 */
  }
  /* integers and bool: bool < u8 < i32 < i64 */
  static const int rank[LOOM_DTYPE_COUNT] = {0, 0, 0, 0, 3, 4, 2, 1};
  if (a == LOOM_U8 && b == LOOM_BOOL) return LOOM_U8;
  if (b == LOOM_U8 && a == LOOM_BOOL) return LOOM_U8;
  return rank[a] >= rank[b] ? a : b;
}

loom_device loom_cpu(void) { loom_device d = {LOOM_CPU, 0}; return d; }
loom_device loom_cuda(int index) { loom_device d = {LOOM_CUDA, index}; return d; }
bool loom_device_equal(loom_device a, loom_device b) { return a.type == b.type && a.index == b.index; }

bool loom_device_parse(const char *text, loom_device *out) {
  if (!text || !out) {
    core_set_error(LOOM_ERR_INVALID, "loom_device_parse: NULL argument");
    return false;
  }
  if (strcmp(text, "cpu") == 0) { *out = loom_cpu(); return true; }
  if (strncmp(text, "cuda", 4) == 0) {
    if (text[4] == '\0') { *out = loom_cuda(0); return true; }
    if (text[4] == ':' && text[5] >= '0' && text[5] <= '9') {
      char *end;
      long idx = strtol(text + 5, &end, 10);
      if (*end == '\0' && idx < 1024) { *out = loom_cuda((int)idx); return true; }
    }
  }
  core_set_error(LOOM_ERR_INVALID, "loom_device_parse: '%s' is not a device (expected cpu, cuda or cuda:N)", text);
  return false;
}

const char *loom_device_name(loom_device dev) {
  static _Thread_local char buf[4][32];
  static _Thread_local int slot;
  char *b = buf[slot++ & 3];
  if (dev.type == LOOM_CPU) snprintf(b, 32, "cpu");
  else if (dev.type == LOOM_CUDA) snprintf(b, 32, "cuda:%d", dev.index);
  else snprintf(b, 32, "invalid-device");
  return b;
}

int64_t loom_shape_numel(loom_shape s) {
  if (s.ndim < 0 || s.ndim > LOOM_MAX_DIMS) return -1;
  int64_t n = 1;
  for (int i = 0; i < s.ndim; i++)
    if (s.d[i] < 0 || __builtin_mul_overflow(n, s.d[i], &n)) return -1;
  return n;
}

bool loom_shape_equal(loom_shape a, loom_shape b) {
  if (a.ndim != b.ndim) return false;
  for (int i = 0; i < a.ndim; i++)
    if (a.d[i] != b.d[i]) return false;
  return true;
}

const char *loom_shape_str(loom_shape s) {
  static _Thread_local char buf[4][160];
  static _Thread_local int slot;
  char *b = buf[slot++ & 3];
  int n = snprintf(b, 160, "[");
  for (int i = 0; i < s.ndim && i < LOOM_MAX_DIMS && n < 150; i++)
    n += snprintf(b + n, 160 - n, i ? ", %lld" : "%lld", (long long)s.d[i]);
  snprintf(b + n, 160 - n, "]");
  return b;
}

/* ---- half precision ---- */
float core_half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0) {
    if (man == 0) bits = sign;
    else { /* subnormal */
      float f = ldexpf((float)man, -24);
      return sign ? -f : f;
    }
  } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
  else bits = sign | ((exp + 112) << 23) | (man << 13);
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

uint16_t core_float_to_half(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0); /* inf / nan */
  if (ax >= 0x477ff000u) return sign | 0x7c00;                                  /* overflow */
  if (ax < 0x38800000u) {                                                       /* subnormal or zero */
    float a;
    memcpy(&a, &ax, 4);
    return sign | (uint16_t)lrintf(a * 16777216.0f); /* a / 2^-24, round to nearest even */
  }
  uint32_t e = (ax >> 23) - 112, m = ax & 0x7fffff;
  uint32_t h = (e << 10) | (m >> 13);
  uint32_t rest = m & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
  return sign | (uint16_t)h;
}

float core_bf16_to_float(uint16_t b) {
  uint32_t x = (uint32_t)b << 16;
  float f;
  memcpy(&f, &x, 4);
  return f;
}

uint16_t core_float_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
  x += 0x7fff + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}

/* ---- modes ---- */
static bool deterministic_mode, tf32_mode;
static int num_threads;
void loom_set_deterministic(bool on) { deterministic_mode = on; }
bool loom_deterministic(void) { return deterministic_mode; }
void loom_set_tf32(bool on) { tf32_mode = on; }
bool loom_tf32(void) { return tf32_mode; }
void loom_set_num_threads(int n) { num_threads = n > 0 ? n : 0; }
int loom_num_threads(void) { return core_num_threads(); }
int core_num_threads(void) { return num_threads > 0 ? num_threads : omp_get_max_threads(); }
