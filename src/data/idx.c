/* IDX files (MNIST, Fashion-MNIST), plain or gzip: u8 images and labels. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

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

/* Reads an IDX file (plain or gzip) of unsigned bytes: magic, ndim big-endian
 * u32 sizes, then exactly prod(sizes) bytes. The product is checked for
 * overflow and against a plausible size before anything is allocated, and
 * inflating stops once the announced bytes (and one more, to find extra bytes)
 * are in. *out holds the whole file (header first); fills dims. */
static loom_status read_idx(const char *path, uint32_t magic, int ndim, uint32_t *dims, const char *what,
                            unsigned char **out) {
  *out = NULL;
  errno = 0;
  gzFile f = gzopen(path, "rb");
  if (!f) return core_set_error(LOOM_ERR_IO, "cannot open %s: %s", path, errno ? strerror(errno) : "zlib error");
  unsigned char head[16];
  size_t header = 4 + 4 * (size_t)ndim;
  int got = gzread(f, head, (unsigned)header);
  loom_status st = LOOM_OK;
  if (got < (int)header)
    st = core_set_error(LOOM_ERR_IO, "%s: truncated: %d bytes, shorter than the %zu-byte IDX header of %s", path,
                        got < 0 ? 0 : got, header, what);
  else if (be32(head) != magic)
    st = core_set_error(LOOM_ERR_IO, "%s: bad magic number 0x%08x (expected 0x%08x: IDX %s, unsigned bytes)", path,
                        be32(head), magic, what);
  uint64_t need = 1;
  const uint64_t limit = (uint64_t)1 << 40;
  for (int k = 0; !st && k < ndim; k++) {
    dims[k] = be32(head + 4 + 4 * k);
    if (dims[k] && need > limit / dims[k]) /* checked before multiplying: 2^16 * 2^24 * 2^24 wraps to 0 */
      st = core_set_error(LOOM_ERR_IO, "%s: implausible dimensions in the IDX header (more than 2^40 bytes of %s)",
                          path, what);
    need *= dims[k];
  }
  unsigned char *buf = st ? NULL : malloc(header + (size_t)need + 1);
  if (!st && !buf) st = core_set_error(LOOM_ERR_OOM, "reading %s: out of host memory", path);
  size_t len = 0;
  while (!st && len < need + 1) { /* one byte more than announced: finds extra bytes */
    uint64_t left = need + 1 - len;
    int n = gzread(f, buf + header + len, left > (1u << 30) ? (1u << 30) : (unsigned)left);
    if (n < 0) {
      int zerr = 0;
      const char *msg = gzerror(f, &zerr);
      st = core_set_error(LOOM_ERR_IO, "reading %s: %s (after %zu bytes)", path, zerr == Z_ERRNO ? strerror(errno) : msg,
                          header + len);
    }
    if (n <= 0) break;
    len += (size_t)n;
  }
  int zc = gzclose(f);
  if (!st && zc == Z_BUF_ERROR && len < need)
    st = core_set_error(LOOM_ERR_IO, "reading %s: truncated gzip stream (after %zu bytes)", path, header + len);
  if (!st && len < need)
    st = core_set_error(LOOM_ERR_IO, "%s: truncated: the header announces %llu bytes of %s, the file holds %zu",
                        path, (unsigned long long)need, what, len);
  if (!st && len > need)
    st = core_set_error(LOOM_ERR_IO, "%s: bytes after the %llu bytes of %s the header announces", path,
                        (unsigned long long)need, what);
  if (st) {
    free(buf);
    return st;
  }
  memcpy(buf, head, header);
  *out = buf;
  return LOOM_OK;
}

/* The dataset of an images and a labels file; classes > 0 (MNIST-style: 10)
 * refuses a label outside [0, classes), naming the file and the item. */
static loom_dataset *open_idx(const char *images_path, const char *labels_path, int classes,
                              const loom_dataset_kind *kind) {
  if (!images_path || !labels_path) {
    core_set_error(LOOM_ERR_INVALID, "loom_dataset_idx: path is NULL");
    return NULL;
  }
  idx_state *s = calloc(1, sizeof *s);
  if (!s) {
    core_set_error(LOOM_ERR_OOM, "loom_dataset_idx: out of host memory");
    return NULL;
  }
  uint32_t idims[3] = {0}, ldims[1] = {0};
  loom_status st = read_idx(images_path, 0x00000803u, 3, idims, "images", &s->images);
  if (!st) st = read_idx(labels_path, 0x00000801u, 1, ldims, "labels", &s->labels);
  if (!st && idims[0] != ldims[0])
    st = core_set_error(LOOM_ERR_IO, "%s holds %u images but %s holds %u labels", images_path, idims[0], labels_path,
                        ldims[0]);
  for (uint32_t i = 0; !st && classes > 0 && i < ldims[0]; i++)
    if (s->labels[8 + i] >= classes)
      st = core_set_error(LOOM_ERR_IO, "%s: label %u of item %u is outside the %d classes [0, %d)", labels_path,
                          s->labels[8 + i], i, classes, classes);
  if (st) {
    idx_free(s);
    return NULL;
  }
  s->pixels = (int64_t)idims[1] * idims[2];
  return loom_dataset_new(kind, s, idims[0], LOOM_SHAPE(1, idims[1], idims[2]), LOOM_F32, LOOM_SHAPE(), LOOM_I64);
}

loom_dataset *loom_dataset_idx(const char *images_path, const char *labels_path) {
  return open_idx(images_path, labels_path, 0, &idx_kind);
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
  return open_idx(ipath, lpath, 10, &mnist_kind); /* same layout, a name users recognise */
}
