/* IDX files (MNIST, Fashion-MNIST), plain or gzip: u8 images and labels. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_impl.h"

typedef struct idx_state {
  unsigned char *images, *labels;   /* whole files; pixels start at images + 16 */
  int64_t pixels;                   /* per image */
} idx_state;

static int idx_get(void *state, int64_t i, void *x, void *y) {
  idx_state *s = state;
  const unsigned char *p = s->images + 16 + i * s->pixels;
  float *xf = x;
  for (int64_t k = 0; k < s->pixels; k++) xf[k] = p[k] * (1.0f / 255.0f);
  *(int64_t *)y = s->labels[8 + i];
  return LOOM_OK;
}

static void idx_free(void *state) {
  idx_state *s = state;
  free(s->images);
  free(s->labels);
  free(s);
}

static const loom_dataset_kind idx_kind = {"IDX", idx_get, idx_free};
static const loom_dataset_kind mnist_kind = {"MNIST", idx_get, idx_free};

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Checks an IDX header: magic, then ndim big-endian u32 sizes, then exactly
 * prod(sizes) bytes. Fills dims. */
static loom_status check_idx(const char *path, const unsigned char *buf, size_t size, uint32_t magic, int ndim,
                             uint32_t *dims, const char *what) {
  size_t header = 4 + 4 * (size_t)ndim;
  if (size < header)
    return core_set_error(LOOM_ERR_IO, "%s: truncated: %zu bytes, shorter than the %zu-byte IDX header of %s", path,
                          size, header, what);
  if (be32(buf) != magic)
    return core_set_error(LOOM_ERR_IO, "%s: bad magic number 0x%08x (expected 0x%08x: IDX %s, unsigned bytes)", path,
                          be32(buf), magic, what);
  uint64_t need = 1;
  for (int k = 0; k < ndim; k++) {
    dims[k] = be32(buf + 4 + 4 * k);
    need *= dims[k];
    if (need > ((uint64_t)1 << 40))
      return core_set_error(LOOM_ERR_IO, "%s: implausible dimensions in the IDX header", path);
  }
  if (size - header < need)
    return core_set_error(LOOM_ERR_IO, "%s: truncated: the header announces %llu bytes of %s, the file holds %zu",
                          path, (unsigned long long)need, what, size - header);
  if (size - header > need)
    return core_set_error(LOOM_ERR_IO, "%s: %zu bytes after the %llu bytes of %s the header announces", path,
                          size - header - (size_t)need, (unsigned long long)need, what);
  return LOOM_OK;
}

loom_dataset *loom_dataset_idx(const char *images_path, const char *labels_path) {
  if (!images_path || !labels_path) {
    core_set_error(LOOM_ERR_INVALID, "loom_dataset_idx: path is NULL");
    return NULL;
  }
  idx_state *s = calloc(1, sizeof *s);
  if (!s) {
    core_set_error(LOOM_ERR_OOM, "loom_dataset_idx: out of host memory");
    return NULL;
  }
  size_t isize = 0, lsize = 0;
  uint32_t idims[3] = {0}, ldims[1] = {0};
  loom_status st = data_read_file(images_path, &s->images, &isize);
  if (!st) st = check_idx(images_path, s->images, isize, 0x00000803u, 3, idims, "images");
  if (!st) st = data_read_file(labels_path, &s->labels, &lsize);
  if (!st) st = check_idx(labels_path, s->labels, lsize, 0x00000801u, 1, ldims, "labels");
  if (!st && idims[0] != ldims[0])
    st = core_set_error(LOOM_ERR_IO, "%s holds %u images but %s holds %u labels", images_path, idims[0], labels_path,
                        ldims[0]);
  if (st) {
    idx_free(s);
    return NULL;
  }
  s->pixels = (int64_t)idims[1] * idims[2];
  return loom_dataset_new(&idx_kind, s, idims[0], LOOM_SHAPE(1, idims[1], idims[2]), LOOM_F32, LOOM_SHAPE(),
                          LOOM_I64);
}

/* DIR/NAME.gz when it exists, else DIR/NAME when that exists, else the .gz
 * path (so that the error names the usual file). */
static bool pick(char *buf, size_t size, const char *dir, const char *name) {
  char gz[512];
  if (snprintf(gz, sizeof gz, "%s.gz", name) >= (int)sizeof gz || !data_join(buf, size, dir, gz)) return false;
  if (data_file_exists(buf)) return true;
  char plain[4096];
  if (!data_join(plain, sizeof plain, dir, name)) return false;
  if (data_file_exists(plain)) snprintf(buf, size, "%s", plain);
  return true;
}

loom_dataset *loom_dataset_mnist(const char *dir, bool train) {
  if (!dir) {
    core_set_error(LOOM_ERR_INVALID, "loom_dataset_mnist: dir is NULL");
    return NULL;
  }
  const char *prefix = train ? "train" : "t10k";
  char iname[64], lname[64], ipath[4096], lpath[4096];
  snprintf(iname, sizeof iname, "%s-images-idx3-ubyte", prefix);
  snprintf(lname, sizeof lname, "%s-labels-idx1-ubyte", prefix);
  if (!pick(ipath, sizeof ipath, dir, iname) || !pick(lpath, sizeof lpath, dir, lname)) return NULL;
  loom_dataset *ds = loom_dataset_idx(ipath, lpath);
  if (ds) ds->kind = &mnist_kind; /* same layout, a name users recognise */
  return ds;
}
