/* Device discovery, versions and synchronisation, over the CUDA backend. */
#include <stdio.h>
#include <string.h>
#include <cblas.h>

#include "core/tensor_impl.h"
#include "cuda/cuda_backend.h"

#ifndef LOOM_VERSION_TEXT
#define LOOM_VERSION_TEXT "unknown"
#endif

bool loom_cuda_is_built(void) {
#ifdef LOOM_WITH_CUDA
  return true;
#else
  return false;
#endif
}

/* The MPI line of loom_versions (src/dist/dist.c). */
int dist_versions(char *buf, size_t size);
/* The oneDNN line (src/cpu/onednn.c). */
int cpu_onednn_versions(char *buf, size_t size);

int loom_cuda_device_count(void) { return cuda_device_count(); }

int loom_synchronize(loom_device dev) {
  if (dev.type == LOOM_CPU) return LOOM_OK;
  if (dev.type == LOOM_CUDA) return cuda_synchronize(dev.index);
  return core_set_error(LOOM_ERR_INVALID, "synchronize: invalid device");
}

const char *loom_commit(void) { return LOOM_COMMIT_TEXT; }

int loom_versions(char *buf, size_t size) {
  if (!buf || size == 0) return 0;
  int n = snprintf(buf, size, "Loom: %s (commit %s)\nOpenBLAS: %s\nOpenMP threads: %d\n", LOOM_VERSION_TEXT,
                   LOOM_COMMIT_TEXT, openblas_get_config(), core_num_threads());
  if (n < 0 || (size_t)n >= size) return (int)size - 1;
  n += cpu_onednn_versions(buf + n, size - (size_t)n);
  if ((size_t)n >= size - 1) return (int)size - 1;
  int d = dist_versions(buf + n, size - (size_t)n);  /* src/dist/dist.c */
  if (d < 0 || (size_t)(n + d) >= size) return (int)size - 1;
  n += d;
  n += cuda_versions(buf + n, size - (size_t)n);
  return n;
}

void loom_print_versions(void) {
  char buf[2048];
  loom_versions(buf, sizeof buf);
  fputs(buf, stdout);
}
