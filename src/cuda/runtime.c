/* CUDA devices: count, selection, properties, versions and synchronisation. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <cuda_runtime_api.h>
#include <cublas_api.h>
#include <cudnn.h>
#include <library_types.h>
#ifdef LOOM_WITH_NCCL
#include <nccl.h>
#endif

#include "cuda/cuda_backend.h"
#include "cuda/cuda_util.h"

static pthread_once_t count_once = PTHREAD_ONCE_INIT;
static int device_count;

static void count_devices(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0; /* no driver, no GPU: not an error */
  cudaGetLastError();
  device_count = n < CUDA_MAX_DEVICES ? n : CUDA_MAX_DEVICES;
}

int cuda_device_count(void) {
  pthread_once(&count_once, count_devices);
  return device_count;
}

loom_status cuda_check_device(int index) {
  int n = cuda_device_count();
  if (n == 0)
    return core_set_error(LOOM_ERR_DEVICE,
                          "cuda:%d: no CUDA device is visible (no GPU, or no NVIDIA driver)", index);
  if (index < 0 || index >= n)
    return core_set_error(LOOM_ERR_DEVICE, "cuda:%d: no such device (%d CUDA device%s visible)",
                          index, n, n == 1 ? "" : "s");
  return LOOM_OK;
}

loom_status cuda_set_device(int index) {
  int cur = -1;
  if (cudaGetDevice(&cur) == cudaSuccess && cur == index) return LOOM_OK;
  cudaGetLastError();
  return CUDA_CHECK(cudaSetDevice(index));
}

static atomic_int sm_counts[CUDA_MAX_DEVICES];
static atomic_int cc_majors[CUDA_MAX_DEVICES];

static int cached_attribute(atomic_int *cache, enum cudaDeviceAttr attr, int index, int fallback) {
  if (index < 0 || index >= CUDA_MAX_DEVICES) return fallback;
  int v = atomic_load(&cache[index]);
  if (v > 0) return v;
  if (cudaDeviceGetAttribute(&v, attr, index) != cudaSuccess || v <= 0) {
    cudaGetLastError();
    return fallback;
  }
  atomic_store(&cache[index], v);
  return v;
}

int cuda_sm_count(int index) {
  return cached_attribute(sm_counts, cudaDevAttrMultiProcessorCount, index, 1);
}

int cuda_cc_major(int index) {
  return cached_attribute(cc_majors, cudaDevAttrComputeCapabilityMajor, index, 0);
}

int loom_cuda_device_info(int index, loom_device_info *out) {
  if (!out) return core_set_error(LOOM_ERR_INVALID, "loom_cuda_device_info: out is NULL");
  loom_status st = cuda_check_device(index);
  if (st) return st;
  struct cudaDeviceProp p;
  size_t free_b = 0, total_b = 0;
  if ((st = CUDA_CHECK(cudaGetDeviceProperties(&p, index)))) return st;
  if ((st = cuda_set_device(index))) return st;
  if ((st = CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b)))) return st;
  memset(out, 0, sizeof *out);
  snprintf(out->name, sizeof out->name, "%s", p.name);
  out->major = p.major;
  out->minor = p.minor;
  out->total_memory = p.totalGlobalMem;
  out->free_memory = free_b;
  out->multiprocessors = p.multiProcessorCount;
  return CUDA_CHECK(cudaDeviceGetPCIBusId(out->pci_bus_id, (int)sizeof out->pci_bus_id, index));
}

int cuda_pci_bus_id(int index, char *buf, int len) {
  loom_status st = cuda_check_device(index);
  return st ? st : CUDA_CHECK(cudaDeviceGetPCIBusId(buf, len, index));
}

loom_status cuda_synchronize(int index) {
  loom_status st = cuda_check_device(index);
  if (!st) st = cuda_set_device(index);
  if (!st) st = CUDA_CHECK(cudaDeviceSynchronize());
  return st;
}

/* ---- versions ---- */

static void append(char *buf, size_t size, size_t *n, const char *fmt, ...) {
  if (*n >= size) return;
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(buf + *n, size - *n, fmt, ap);
  va_end(ap);
  if (w > 0) *n += (size_t)w < size - *n ? (size_t)w : size - *n - 1;
}

int cuda_versions(char *buf, size_t size) {
  if (!buf || size == 0) return 0;
  size_t n = 0;
  buf[0] = '\0';
  int drv = 0, rt = 0;
  if (cudaDriverGetVersion(&drv) != cudaSuccess) drv = 0;
  if (cudaRuntimeGetVersion(&rt) != cudaSuccess) rt = 0;
  cudaGetLastError();
  if (drv > 0)
    append(buf, size, &n, "driver: CUDA %d.%d\n", drv / 1000, drv % 1000 / 10);
  else
    append(buf, size, &n, "driver: none (no NVIDIA driver found)\n");
  append(buf, size, &n, "CUDA runtime: %d.%d\n", rt / 1000, rt % 1000 / 10);

  int bmaj = 0, bmin = 0, bpatch = 0;
  cublasGetProperty(MAJOR_VERSION, &bmaj);
  cublasGetProperty(MINOR_VERSION, &bmin);
  cublasGetProperty(PATCH_LEVEL, &bpatch);
  append(buf, size, &n, "cuBLAS: %d.%d.%d\n", bmaj, bmin, bpatch);

  size_t dnn = cudnnGetVersion();
  append(buf, size, &n, "cuDNN: %zu.%zu.%zu\n", dnn / 10000, dnn % 10000 / 100, dnn % 100);

#ifdef LOOM_WITH_NCCL
  int nccl = 0;
  if (ncclGetVersion(&nccl) != ncclSuccess) nccl = 0;
  if (nccl >= 20900) /* codes from 2.9 on are major*10000 + minor*100 + patch */
    append(buf, size, &n, "NCCL: %d.%d.%d\n", nccl / 10000, nccl % 10000 / 100, nccl % 100);
  else
    append(buf, size, &n, "NCCL: %d.%d.%d\n", nccl / 1000, nccl % 1000 / 100, nccl % 100);
#else
  append(buf, size, &n, "NCCL: not built\n");
#endif
  return (int)n;
}
