/* Device memory: one caching allocator per device (created on first use),
 * a pinned host pool, memset on the current stream, and memcpy: host <->
 * device on the device's copy stream, device -> device on the current one. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "core/cache_alloc.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_util.h"

typedef struct device_pool {
  int index;
  char name[16];
  _Atomic(core_cache *) cache;
} device_pool;

static device_pool pools[CUDA_MAX_DEVICES];
static _Atomic(core_cache *) pinned_pool;
static pthread_mutex_t pools_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- raw allocators (return NULL without recording an error) ---- */

static void *device_raw_alloc(size_t nbytes, void *ctx) {
  const device_pool *d = ctx;
  void *p = NULL;
  if (cudaSetDevice(d->index) != cudaSuccess || cudaMalloc(&p, nbytes) != cudaSuccess) {
    cudaGetLastError();
    return NULL;
  }
  return p;
}

static void device_raw_free(void *p, size_t nbytes, void *ctx) { CUDA_CHECK(cudaFree(p)); }

static size_t device_raw_free_bytes(void *ctx) {
  const device_pool *d = ctx;
  size_t free_b = 0, total_b = 0;
  if (cudaSetDevice(d->index) != cudaSuccess || cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return free_b;
}

static void *pinned_raw_alloc(size_t nbytes, void *ctx) {
  void *p = NULL;
  if (cudaHostAlloc(&p, nbytes, cudaHostAllocPortable) != cudaSuccess) {
    cudaGetLastError();
    return NULL;
  }
  return p;
}

static void pinned_raw_free(void *p, size_t nbytes, void *ctx) { CUDA_CHECK(cudaFreeHost(p)); }

/* ---- pools ---- */

/* The pool of device `index`, created on first use; NULL + error when the device is missing. */
static core_cache *device_cache(int index) {
  if (cuda_check_device(index)) return NULL;
  device_pool *d = &pools[index];
  core_cache *c = atomic_load(&d->cache);
  if (c) return c;
  pthread_mutex_lock(&pools_lock);
  c = atomic_load(&d->cache);
  if (!c) {
    d->index = index;
    snprintf(d->name, sizeof d->name, "cuda:%d", index);
    core_raw_allocator raw = {device_raw_alloc, device_raw_free, device_raw_free_bytes, d, d->name, false};
    c = core_cache_new(raw);
    atomic_store(&d->cache, c);
  }
  pthread_mutex_unlock(&pools_lock);
  if (!c) core_set_error(LOOM_ERR_OOM, "cuda:%d: could not create the memory pool", index);
  return c;
}

/* The pool of device `index` if it was ever used, else NULL (no error). */
static core_cache *existing_cache(int index) {
  if (index < 0 || index >= CUDA_MAX_DEVICES) return NULL;
  return atomic_load(&pools[index].cache);
}

void *cuda_alloc(int index, size_t nbytes) {
  core_cache *c = device_cache(index);
  if (!c || cuda_set_device(index)) return NULL;
  return core_cache_alloc(c, nbytes, cuda_current_stream(index));
}

void cuda_free(int index, void *p) {
  core_cache *c = existing_cache(index);
  if (p && c) core_cache_free(c, p);
}

void cuda_pool_stats(int index, loom_memory_stats *out) {
  core_cache *c = existing_cache(index);
  if (c)
    core_cache_stats(c, out);
  else
    memset(out, 0, sizeof *out);
}

void cuda_pool_reset_peak(int index) {
  core_cache *c = existing_cache(index);
  if (c) core_cache_reset_peak(c);
}

void cuda_pool_empty(int index) {
  core_cache *c = existing_cache(index);
  if (c) core_cache_empty(c);
}

void cuda_pool_set_limit(int index, size_t bytes) {
  core_cache *c = device_cache(index);
  if (c) core_cache_set_limit(c, bytes);
}

void loom_cuda_empty_cache(void) {
  for (int i = 0; i < CUDA_MAX_DEVICES; i++) cuda_pool_empty(i);
}

void *cuda_pinned_alloc(size_t nbytes) {
  core_cache *c = atomic_load(&pinned_pool);
  if (!c) {
    pthread_mutex_lock(&pools_lock);
    c = atomic_load(&pinned_pool);
    if (!c) {
      core_raw_allocator raw = {pinned_raw_alloc, pinned_raw_free, NULL, NULL, "pinned", false};
      c = core_cache_new(raw);
      atomic_store(&pinned_pool, c);
    }
    pthread_mutex_unlock(&pools_lock);
    if (!c) {
      core_set_error(LOOM_ERR_OOM, "pinned: could not create the memory pool");
      return NULL;
    }
  }
  return core_cache_alloc(c, nbytes, NULL);
}

void cuda_pinned_free(void *p) {
  core_cache *c = atomic_load(&pinned_pool);
  if (p && c) core_cache_free(c, p);
}

/* ---- memset / memcpy ---- */

loom_status cuda_memset(int index, void *p, int value, size_t nbytes) {
  if (nbytes == 0) return LOOM_OK;
  loom_status st = cuda_set_device(index);
  if (st) return st;
  return CUDA_CHECK(cudaMemsetAsync(p, value, nbytes, (cudaStream_t)cuda_current_stream(index)));
}

/* One host <-> device copy on the copy stream of device `dev`, ordered by
 * events: the copy first waits for the work already queued on the current
 * stream (which may still use or produce the device memory), and the current
 * stream then waits for the copy (so that later kernels, and later users of
 * the memory once it is freed to the pool, come after it). Device -> host
 * returns once the copy is done. The events live for this call only. */
static loom_status copy_stream_memcpy(int dev, void *dst, const void *src, size_t nbytes, enum cudaMemcpyKind kind) {
  loom_status st = cuda_check_device(dev);
  if (!st) st = cuda_set_device(dev);
  if (st) return st;
  cudaStream_t compute = (cudaStream_t)cuda_current_stream(dev), copy = (cudaStream_t)cuda_copy_stream(dev);
  if (!copy) return loom_last_status();
  cudaEvent_t queued = NULL, copied = NULL;
  st = CUDA_CHECK(cudaEventCreateWithFlags(&queued, cudaEventDisableTiming));
  if (!st) st = CUDA_CHECK(cudaEventCreateWithFlags(&copied, cudaEventDisableTiming));
  if (!st) st = CUDA_CHECK(cudaEventRecord(queued, compute));
  if (!st) st = CUDA_CHECK(cudaStreamWaitEvent(copy, queued, 0));
  if (!st) st = CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, kind, copy));
  if (!st) st = CUDA_CHECK(cudaEventRecord(copied, copy));
  if (!st) st = CUDA_CHECK(cudaStreamWaitEvent(compute, copied, 0));
  if (!st && kind == cudaMemcpyDeviceToHost) st = CUDA_CHECK(cudaEventSynchronize(copied));
  if (queued) cudaEventDestroy(queued); /* released by CUDA once the event has completed */
  if (copied) cudaEventDestroy(copied);
  return st;
}

/* Host -> device returns once the source has been read when it is pageable
 * memory; from pinned memory the copy may still be running, so the caller
 * keeps the source alive (and unchanged) until the current stream passes it.
 * Device -> device runs on the current stream. */
loom_status cuda_memcpy(void *dst, loom_device dst_dev, const void *src, loom_device src_dev, size_t nbytes) {
  if (nbytes == 0) return LOOM_OK;
  bool dst_gpu = dst_dev.type == LOOM_CUDA, src_gpu = src_dev.type == LOOM_CUDA;
  loom_status st;
  if (!dst_gpu && !src_gpu) {
    memcpy(dst, src, nbytes);
    return LOOM_OK;
  }
  if (!src_gpu) return copy_stream_memcpy(dst_dev.index, dst, src, nbytes, cudaMemcpyHostToDevice);
  if (!dst_gpu) return copy_stream_memcpy(src_dev.index, dst, src, nbytes, cudaMemcpyDeviceToHost);
  if ((st = cuda_check_device(src_dev.index)) || (st = cuda_set_device(src_dev.index))) return st;
  cudaStream_t s = (cudaStream_t)cuda_current_stream(src_dev.index);
  if (dst_dev.index == src_dev.index)
    return CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, s));
  /* Between devices (rare): wait for both sides, copy, wait again, so neither
   * pool can reuse either block while the copy runs. */
  if ((st = cuda_check_device(dst_dev.index))) return st;
  cudaStream_t ds = (cudaStream_t)cuda_current_stream(dst_dev.index);
  if ((st = cuda_set_device(dst_dev.index)) || (st = CUDA_CHECK(cudaStreamSynchronize(ds)))) return st;
  if ((st = cuda_set_device(src_dev.index))) return st;
  st = CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_dev.index, src, src_dev.index, nbytes, s));
  if (!st) st = CUDA_CHECK(cudaStreamSynchronize(s));
  return st;
}
