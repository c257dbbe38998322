/* Per-sample host transforms: random crop with zero padding, horizontal flip,
 * per-channel normalisation (torchvision's RandomCrop, RandomHorizontalFlip,
 * Normalize, in that order). */
#include <stdlib.h>
#include <string.h>

#include "data/data_impl.h"

bool data_transform_active(const loom_transform_opts *t) {
  return t && (t->crop_size > 0 || t->crop_padding > 0 || t->hflip || t->norm_channels > 0);
}

loom_status data_transform_check(const loom_transform_opts *t, loom_shape shape, loom_dtype dt, loom_shape *out) {
  *out = shape;
  if (!data_transform_active(t)) return LOOM_OK;
  if (dt != LOOM_F32 || shape.ndim != 3)
    return core_set_error(LOOM_ERR_INVALID, "transform: expected f32 samples [C, H, W], got %s %s",
                          loom_dtype_name(dt), loom_shape_str(shape));
  int64_t c = shape.d[0], h = shape.d[1], w = shape.d[2];
  if (t->crop_size < 0 || t->crop_padding < 0 || (t->crop_padding > 0 && t->crop_size == 0))
    return core_set_error(LOOM_ERR_INVALID, "transform: random crop needs crop_size > 0 and crop_padding >= 0, got "
                          "crop_size = %d, crop_padding = %d", t->crop_size, t->crop_padding);
  if (t->crop_size > 0 && (t->crop_size > h + 2 * t->crop_padding || t->crop_size > w + 2 * t->crop_padding))
    return core_set_error(LOOM_ERR_INVALID, "transform: crop_size %d is larger than the padded sample %lldx%lld "
                          "(%lldx%lld + 2 x padding %d)", t->crop_size, (long long)(h + 2 * t->crop_padding),
                          (long long)(w + 2 * t->crop_padding), (long long)h, (long long)w, t->crop_padding);
  if (t->norm_channels < 0 || (t->norm_channels > 0 && t->norm_channels != c))
    return core_set_error(LOOM_ERR_INVALID, "transform: normalise has %d channels, the samples %s have %lld",
                          t->norm_channels, loom_shape_str(shape), (long long)c);
  if (t->norm_channels > 0) {
    if (!t->mean || !t->std) return core_set_error(LOOM_ERR_INVALID, "transform: normalise mean or std is NULL");
    for (int k = 0; k < t->norm_channels; k++)
      if (!(t->std[k] > 0.0f))
        return core_set_error(LOOM_ERR_INVALID, "transform: std[%d] = %g must be positive", k, (double)t->std[k]);
  }
  if (t->crop_size > 0) *out = LOOM_SHAPE(c, t->crop_size, t->crop_size);
  return LOOM_OK;
}

int loom_transform_apply(const loom_transform_opts *t, uint64_t seed, int64_t epoch, int64_t index, const float *x,
                         loom_shape shape, float *out) {
  if (!x || !out) return core_set_error(LOOM_ERR_INVALID, "loom_transform_apply: %s is NULL", x ? "out" : "x");
  loom_shape os;
  loom_status st = data_transform_check(t, shape, LOOM_F32, &os);
  if (st) return st;
  int64_t n = loom_shape_numel(shape), on = loom_shape_numel(os);
  if (!data_transform_active(t)) {
    if (out != x) memcpy(out, x, (size_t)n * sizeof *x);
    return LOOM_OK;
  }
  int64_t c = shape.d[0], h = shape.d[1], w = shape.d[2], oh = os.d[1], ow = os.d[2];
  data_rng r = {data_key(seed, (uint64_t)epoch, data_mix((uint64_t)index ^ 0x7A45F0))};
  if (t->crop_size > 0) {
    int p = t->crop_padding;
    /* Window origin in padded coordinates; minus p gives source rows/cols. */
    int64_t top = (int64_t)data_below(&r, (uint64_t)(h + 2 * p - oh + 1)) - p;
    int64_t left = (int64_t)data_below(&r, (uint64_t)(w + 2 * p - ow + 1)) - p;
    float *dst = out;
    float *tmp = NULL;
    if (out == x) {   /* the window may shift content: work from a copy */
      tmp = malloc((size_t)on * sizeof *tmp);
      if (!tmp) return core_set_error(LOOM_ERR_OOM, "transform: out of host memory");
      dst = tmp;
    }
    for (int64_t ch = 0; ch < c; ch++)
      for (int64_t i = 0; i < oh; i++) {
        int64_t si = top + i;
        float *row = dst + (ch * oh + i) * ow;
        for (int64_t j = 0; j < ow; j++) {
          int64_t sj = left + j;
          row[j] = si >= 0 && si < h && sj >= 0 && sj < w ? x[(ch * h + si) * w + sj] : 0.0f;
        }
      }
    if (tmp) {
      memcpy(out, tmp, (size_t)on * sizeof *tmp);
      free(tmp);
    }
  } else if (out != x) {
    memcpy(out, x, (size_t)n * sizeof *x);
  }
  if (t->hflip && (data_next(&r) >> 63)) {
    for (int64_t row = 0; row < c * oh; row++) {
      float *v = out + row * ow;
      for (int64_t a = 0, b = ow - 1; a < b; a++, b--) {
        float s = v[a];
        v[a] = v[b];
        v[b] = s;
      }
    }
  }
  if (t->norm_channels > 0)
    for (int64_t ch = 0; ch < c; ch++) {
      float m = t->mean[ch], sd = t->std[ch];
      float *v = out + ch * oh * ow;
      for (int64_t k = 0; k < oh * ow; k++) v[k] = (v[k] - m) / sd;   /* as torchvision: divide, not * 1/std */
    }
  return LOOM_OK;
}
