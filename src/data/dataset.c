/* The dataset interface, subsets, synthetic data and file helpers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "data/data_impl.h"

/* ---- the interface ---- */

loom_dataset *loom_dataset_new(const loom_dataset_kind *kind, void *state, int64_t length, loom_shape sample_shape,
                               loom_dtype sample_dtype, loom_shape label_shape, loom_dtype label_dtype) {
  const char *bad = NULL;
  if (!kind || !kind->get) bad = "kind or its get() is NULL";
  else if (length < 0) bad = "negative length";
  else if (sample_shape.ndim < 0 || sample_shape.ndim > LOOM_MAX_DIMS - 1 || label_shape.ndim < 0 ||
           label_shape.ndim > LOOM_MAX_DIMS - 1)
    bad = "sample and label shapes need 0 to 7 dims (the batch adds one)";
  else if ((unsigned)sample_dtype >= LOOM_DTYPE_COUNT || (unsigned)label_dtype >= LOOM_DTYPE_COUNT)
    bad = "unknown dtype";
  for (int i = 0; !bad && i < sample_shape.ndim; i++)
    if (sample_shape.d[i] < 0) bad = "negative sample size";
  for (int i = 0; !bad && i < label_shape.ndim; i++)
    if (label_shape.d[i] < 0) bad = "negative label size";
  loom_dataset *ds = bad ? NULL : calloc(1, sizeof *ds);
  if (!ds) {
    if (kind && kind->free_state && state) kind->free_state(state);
    if (bad) core_set_error(LOOM_ERR_INVALID, "loom_dataset_new: %s", bad);
    else core_set_error(LOOM_ERR_OOM, "loom_dataset_new: out of host memory");
    return NULL;
  }
  ds->kind = kind;
  ds->state = state;
  atomic_init(&ds->refcount, 1);
  ds->length = length;
  ds->sample_shape = sample_shape;
  ds->sample_dtype = sample_dtype;
  ds->label_shape = label_shape;
  ds->label_dtype = label_dtype;
  return ds;
}

void loom_dataset_free(loom_dataset *ds) {
  if (!ds || atomic_fetch_sub(&ds->refcount, 1) != 1) return;
  if (ds->kind->free_state && ds->state) ds->kind->free_state(ds->state);
  free(ds);
}

const char *loom_dataset_name(const loom_dataset *ds) { return ds ? ds->kind->name : ""; }
int64_t loom_dataset_len(const loom_dataset *ds) { return ds ? ds->length : 0; }
loom_shape loom_dataset_sample_shape(const loom_dataset *ds) { return ds ? ds->sample_shape : (loom_shape){0}; }
loom_dtype loom_dataset_sample_dtype(const loom_dataset *ds) { return ds ? ds->sample_dtype : LOOM_F32; }
loom_shape loom_dataset_label_shape(const loom_dataset *ds) { return ds ? ds->label_shape : (loom_shape){0}; }
loom_dtype loom_dataset_label_dtype(const loom_dataset *ds) { return ds ? ds->label_dtype : LOOM_I64; }

size_t data_sample_bytes(const loom_dataset *ds) {
  return (size_t)loom_shape_numel(ds->sample_shape) * loom_dtype_size(ds->sample_dtype);
}
size_t data_label_bytes(const loom_dataset *ds) {
  return (size_t)loom_shape_numel(ds->label_shape) * loom_dtype_size(ds->label_dtype);
}

int loom_dataset_get(const loom_dataset *ds, int64_t i, void *x, void *y) {
  if (!ds || !x) return core_set_error(LOOM_ERR_INVALID, "loom_dataset_get: %s is NULL", ds ? "x" : "dataset");
  if (i < 0 || i >= ds->length)
    return core_set_error(LOOM_ERR_INVALID, "%s: index %lld out of range for %lld items", ds->kind->name,
                          (long long)i, (long long)ds->length);
  if (y) return ds->kind->get(ds->state, i, x, y);
  /* The kinds always write a label: give them scratch space. */
  unsigned char small[64];
  size_t lb = data_label_bytes(ds);
  void *scratch = lb <= sizeof small ? small : malloc(lb);
  if (!scratch) return core_set_error(LOOM_ERR_OOM, "loom_dataset_get: out of host memory");
  int st = ds->kind->get(ds->state, i, x, scratch);
  if (scratch != small) free(scratch);
  return st;
}

static loom_shape batch_shape(int64_t n, loom_shape s) {
  loom_shape b = {s.ndim + 1, {n}};
  for (int i = 0; i < s.ndim; i++) b.d[i + 1] = s.d[i];
  return b;
}

int loom_dataset_batch(const loom_dataset *ds, const int64_t *idx, int64_t n, loom_tensor **x, loom_tensor **y) {
  if (!ds || !x || !y || (!idx && n > 0))
    return core_set_error(LOOM_ERR_INVALID, "loom_dataset_batch: NULL argument");
  *x = *y = NULL;
  if (n < 0) return core_set_error(LOOM_ERR_INVALID, "loom_dataset_batch: negative count %lld", (long long)n);
  /* A scope of our own: on failure everything made here goes with it. */
  loom_scope_begin();
  loom_tensor *bx = loom_empty(batch_shape(n, ds->sample_shape), ds->sample_dtype, loom_cpu());
  loom_tensor *by = bx ? loom_empty(batch_shape(n, ds->label_shape), ds->label_dtype, loom_cpu()) : NULL;
  int st = by ? LOOM_OK : loom_last_status();
  size_t sb = data_sample_bytes(ds), lb = data_label_bytes(ds);
  for (int64_t k = 0; !st && k < n; k++)
    st = loom_dataset_get(ds, idx[k], (char *)loom_data_ptr(bx) + k * sb, (char *)loom_data_ptr(by) + k * lb);
  if (!st) {
    *x = loom_keep(bx);
    *y = loom_keep(by);
  }
  loom_scope_end();
  return st;
}

/* ---- subset ---- */

typedef struct subset_state { loom_dataset *parent; int64_t start; } subset_state;

static int subset_get(void *state, int64_t i, void *x, void *y) {
  subset_state *s = state;
  return s->parent->kind->get(s->parent->state, s->start + i, x, y);
}

static void subset_free(void *state) {
  subset_state *s = state;
  loom_dataset_free(s->parent);
  free(s);
}

static const loom_dataset_kind subset_kind = {"Subset", subset_get, subset_free};

loom_dataset *loom_dataset_subset(loom_dataset *ds, int64_t start, int64_t count) {
  if (!ds) {
    core_null_error("loom_dataset_subset: dataset is NULL");
    return NULL;
  }
  if (start < 0 || start > ds->length) {
    core_set_error(LOOM_ERR_INVALID, "loom_dataset_subset: start %lld outside 0..%lld of %s", (long long)start,
                   (long long)ds->length, ds->kind->name);
    return NULL;
  }
  if (count < 0 || count > ds->length - start) count = ds->length - start;
  subset_state *s = malloc(sizeof *s);
  if (!s) {
    core_set_error(LOOM_ERR_OOM, "loom_dataset_subset: out of host memory");
    return NULL;
  }
  atomic_fetch_add(&ds->refcount, 1);
  s->parent = ds;
  s->start = start;
  return loom_dataset_new(&subset_kind, s, count, ds->sample_shape, ds->sample_dtype, ds->label_shape,
                          ds->label_dtype);
}

/* ---- synthetic ---- */

typedef struct synthetic_state { int64_t numel, classes; uint64_t seed; } synthetic_state;

static int synthetic_get(void *state, int64_t i, void *x, void *y) {
  synthetic_state *s = state;
  data_rng r = {data_key(s->seed, (uint64_t)i, 0x5EED)};
  float *xf = x;
  int64_t k = 0;
  /* Two 24-bit uniforms per 64-bit draw: cheap enough for image benchmarks. */
  for (; k + 1 < s->numel; k += 2) {
    uint64_t v = data_next(&r);
    xf[k] = (float)(v >> 40) * 0x1p-24f;
    xf[k + 1] = (float)((v >> 8) & 0xFFFFFF) * 0x1p-24f;
  }
  if (k < s->numel) xf[k] = (float)(data_next(&r) >> 40) * 0x1p-24f;
  data_rng lr = {data_key(s->seed, (uint64_t)i, 0x1ABE1)};
  *(int64_t *)y = (int64_t)data_below(&lr, (uint64_t)s->classes);
  return LOOM_OK;
}

static const loom_dataset_kind synthetic_kind = {"Synthetic", synthetic_get, free};

loom_dataset *loom_dataset_synthetic(int64_t n, loom_shape sample_shape, int64_t num_classes, uint64_t seed) {
  if (n < 0 || num_classes < 1) {
    core_set_error(LOOM_ERR_INVALID, "loom_dataset_synthetic: need n >= 0 and num_classes >= 1, got n = %lld, "
                   "num_classes = %lld", (long long)n, (long long)num_classes);
    return NULL;
  }
  synthetic_state *s = malloc(sizeof *s);
  if (!s) {
    core_set_error(LOOM_ERR_OOM, "loom_dataset_synthetic: out of host memory");
    return NULL;
  }
  s->numel = loom_shape_numel(sample_shape);
  s->classes = num_classes;
  s->seed = seed;
  return loom_dataset_new(&synthetic_kind, s, n, sample_shape, LOOM_F32, LOOM_SHAPE(), LOOM_I64);
}

/* ---- helpers ---- */

uint64_t data_below(data_rng *r, uint64_t n) {
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;   /* reject the uneven top */
  uint64_t v;
  do v = data_next(r);
  while (v >= limit);
  return v % n;
}

bool data_join(char *buf, size_t size, const char *dir, const char *name) {
  int n = snprintf(buf, size, "%s/%s", dir, name);
  if (n < 0 || (size_t)n >= size) {
    core_set_error(LOOM_ERR_INVALID, "path too long: %s/%s", dir, name);
    return false;
  }
  return true;
}

bool data_file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

loom_status data_read_file(const char *path, unsigned char **out, size_t *size) {
  *out = NULL;
  *size = 0;
  /* gzopen reads plain files as they are, so one path serves .gz and raw. */
  errno = 0;
  gzFile f = gzopen(path, "rb");
  if (!f) return core_set_error(LOOM_ERR_IO, "cannot open %s: %s", path, errno ? strerror(errno) : "zlib error");
  size_t cap = 1 << 20, len = 0;
  unsigned char *buf = malloc(cap);
  loom_status st = buf ? LOOM_OK : core_set_error(LOOM_ERR_OOM, "reading %s: out of host memory", path);
  while (!st) {
    if (len == cap) {
      unsigned char *bigger = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
      if (!bigger) {
        st = core_set_error(LOOM_ERR_OOM, "reading %s: out of host memory after %zu bytes", path, len);
        break;
      }
      buf = bigger;
      cap *= 2;
    }
    unsigned want = cap - len > (1u << 30) ? (1u << 30) : (unsigned)(cap - len);
    int got = gzread(f, buf + len, want);
    if (got < 0) {
      int zerr = 0;
      const char *msg = gzerror(f, &zerr);
      st = core_set_error(LOOM_ERR_IO, "reading %s: %s (after %zu bytes)", path,
                          zerr == Z_ERRNO ? strerror(errno) : msg, len);
      break;
    }
    if (got == 0) break;
    len += (size_t)got;
  }
  /* A .gz cut short reads as a clean end of data, gzclose reports it. */
  int zc = gzclose(f);
  if (!st && zc == Z_BUF_ERROR)
    st = core_set_error(LOOM_ERR_IO, "reading %s: truncated gzip stream (after %zu bytes)", path, len);
  if (st) {
    free(buf);
    return st;
  }
  *out = buf;
  *size = len;
  return LOOM_OK;
}
