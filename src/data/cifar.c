/* CIFAR-10 binary batches: records of 1 label byte + 3 x 32 x 32 bytes (CHW). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_impl.h"

enum { CIFAR_PIXELS = 3 * 32 * 32, CIFAR_RECORD = 1 + CIFAR_PIXELS };

typedef struct cifar_state { unsigned char *records; } cifar_state;

static int cifar_get(void *state, int64_t i, void *x, void *y) {
  const unsigned char *r = ((cifar_state *)state)->records + i * CIFAR_RECORD;
  float *xf = x;
  for (int k = 0; k < CIFAR_PIXELS; k++) xf[k] = r[1 + k] * (1.0f / 255.0f);
  *(int64_t *)y = r[0];
  return LOOM_OK;
}

static void cifar_free(void *state) {
  cifar_state *s = state;
  free(s->records);
  free(s);
}

static const loom_dataset_kind cifar_kind = {"CIFAR10", cifar_get, cifar_free};

loom_dataset *loom_dataset_cifar10_files(const char *const *paths, int n) {
  if (!paths || n < 1) {
    core_set_error(LOOM_ERR_INVALID, "loom_dataset_cifar10_files: need at least one file");
    return NULL;
  }
  cifar_state *s = calloc(1, sizeof *s);
  if (!s) {
    core_set_error(LOOM_ERR_OOM, "CIFAR10: out of host memory");
    return NULL;
  }
  size_t total = 0;
  loom_status st = LOOM_OK;
  for (int f = 0; f < n && !st; f++) {
    unsigned char *buf;
    size_t size;
    if (!paths[f]) {
      st = core_set_error(LOOM_ERR_INVALID, "loom_dataset_cifar10_files: path %d is NULL", f);
      break;
    }
    if ((st = data_read_file(paths[f], &buf, &size))) break;
    if (size == 0 || size % CIFAR_RECORD) {
      st = core_set_error(LOOM_ERR_IO, "%s: %zu bytes is not a whole number of CIFAR-10 records (%d bytes each: "
                          "1 label + 3x32x32 pixels)%s", paths[f], size, CIFAR_RECORD,
                          size % CIFAR_RECORD ? "; truncated or not a CIFAR-10 binary batch" : "");
    }
    for (size_t r = 0; !st && r < size / CIFAR_RECORD; r++)
      if (buf[r * CIFAR_RECORD] > 9)
        st = core_set_error(LOOM_ERR_IO, "%s: record %zu has label %d (expected 0..9): not a CIFAR-10 binary batch",
                            paths[f], r, buf[r * CIFAR_RECORD]);
    unsigned char *all = st ? NULL : realloc(s->records, total + size);
    if (!st && !all) st = core_set_error(LOOM_ERR_OOM, "CIFAR10: out of host memory reading %s", paths[f]);
    if (!st) {
      memcpy(all + total, buf, size);
      s->records = all;
      total += size;
    }
    free(buf);
  }
  if (st) {
    cifar_free(s);
    return NULL;
  }
  return loom_dataset_new(&cifar_kind, s, (int64_t)(total / CIFAR_RECORD), LOOM_SHAPE(3, 32, 32), LOOM_F32,
                          LOOM_SHAPE(), LOOM_I64);
}

loom_dataset *loom_dataset_cifar10(const char *dir, bool train) {
  if (!dir) {
    core_set_error(LOOM_ERR_INVALID, "loom_dataset_cifar10: dir is NULL");
    return NULL;
  }
  /* The archive unpacks to cifar-10-batches-bin/: accept its parent too. */
  char base[4096], probe[4096];
  snprintf(base, sizeof base, "%s", dir);
  if (!data_join(probe, sizeof probe, dir, train ? "data_batch_1.bin" : "test_batch.bin")) return NULL;
  if (!data_file_exists(probe)) {
    char sub[4096];
    if (data_join(sub, sizeof sub, dir, "cifar-10-batches-bin") &&
        data_join(probe, sizeof probe, sub, train ? "data_batch_1.bin" : "test_batch.bin") && data_file_exists(probe))
      snprintf(base, sizeof base, "%s", sub);
  }
  char paths[5][4096];
  const char *ptrs[5];
  int n = train ? 5 : 1;
  for (int k = 0; k < n; k++) {
    char name[32];
    if (train) snprintf(name, sizeof name, "data_batch_%d.bin", k + 1);
    else snprintf(name, sizeof name, "test_batch.bin");
    if (!data_join(paths[k], sizeof paths[k], base, name)) return NULL;
    ptrs[k] = paths[k];
  }
  return loom_dataset_cifar10_files(ptrs, n);
}
