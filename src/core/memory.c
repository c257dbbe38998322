/* The device-independent memory layer: core_alloc / core_free / core_memcpy
 * and the public memory API. Host memory comes from one process-wide caching
 * pool (src/core/cache_alloc.c over 64-byte aligned malloc); CUDA memory from
 * the device pools of the CUDA backend. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cache_alloc.h"
#include "core/tensor_impl.h"
#include "cuda/cuda_backend.h"

static core_cache *host_cache;
static pthread_once_t host_once = PTHREAD_ONCE_INIT;
static atomic_bool poison_on;

static void *host_raw_alloc(size_t nbytes, void *ctx) {
  (void)ctx;
  return aligned_alloc(64, (nbytes + 63) / 64 * 64);
}

static void host_raw_free(void *p, size_t nbytes, void *ctx) {
  (void)nbytes;
  (void)ctx;
  free(p);
}

/* Physical memory the system has free now (0 when unknown). */
static size_t host_free_bytes(void *ctx) {
  (void)ctx;
  long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
}

static void host_init(void) {
  core_raw_allocator raw = {host_raw_alloc, host_raw_free, host_free_bytes, NULL, "cpu", true};
  host_cache = core_cache_new(raw);
}

/* The host pool, or NULL with an error recorded. */
static core_cache *host_pool(void) {
  pthread_once(&host_once, host_init);
  if (!host_cache) core_set_error(LOOM_ERR_OOM, "cpu: the host memory pool could not be created");
  return host_cache;
}

/* LOOM_OK when dev names a usable device; records an error otherwise. */
static loom_status check_device(loom_device dev, const char *what) {
  if (dev.type == LOOM_CPU) return LOOM_OK;
  if (dev.type == LOOM_CUDA) return cuda_check_device(dev.index);
  return core_set_error(LOOM_ERR_INVALID, "%s: unknown device type %d", what, (int)dev.type);
}

void *core_alloc(loom_device dev, size_t nbytes) {
  if (check_device(dev, "alloc") != LOOM_OK) return NULL;
  if (dev.type == LOOM_CPU) {
    core_cache *c = host_pool();
    void *p = c ? core_cache_alloc(c, nbytes, NULL) : NULL;
    if (p && atomic_load(&poison_on)) memset(p, 0xFF, nbytes);
    return p;
  }
  void *p = cuda_alloc(dev.index, nbytes);
  if (p && nbytes && atomic_load(&poison_on) && cuda_memset(dev.index, p, 0xFF, nbytes) != LOOM_OK) {
    cuda_free(dev.index, p);
    return NULL;
  }
  return p;
}

void core_free(loom_device dev, void *p) {
  if (!p) return;
  if (dev.type == LOOM_CPU) {
    core_cache_free(host_pool(), p);
  } else if (dev.type == LOOM_CUDA) {
    cuda_free(dev.index, p);
  } else {
    core_set_error(LOOM_ERR_INTERNAL, "free: unknown device type %d", (int)dev.type);
  }
}

loom_status core_memcpy(void *dst, loom_device dst_dev, const void *src, loom_device src_dev, size_t nbytes) {
  if (nbytes == 0) return LOOM_OK;
  if (!dst || !src)
    return core_set_error(LOOM_ERR_INVALID, "memcpy: NULL %s pointer (%zu bytes, %s -> %s)",
                          dst ? "source" : "destination", nbytes, loom_device_name(src_dev),
                          loom_device_name(dst_dev));
  loom_status st = check_device(dst_dev, "memcpy");
  if (st == LOOM_OK) st = check_device(src_dev, "memcpy");
  if (st != LOOM_OK) return st;
  if (dst_dev.type == LOOM_CPU && src_dev.type == LOOM_CPU) {
    memmove(dst, src, nbytes);
    return LOOM_OK;
  }
  return cuda_memcpy(dst, dst_dev, src, src_dev, nbytes);
}

/* ---- the public memory API ---- */

int loom_memory_stats_get(loom_device dev, loom_memory_stats *out) {
  if (!out) return core_set_error(LOOM_ERR_INVALID, "loom_memory_stats_get: out is NULL");
  memset(out, 0, sizeof *out);
  loom_status st = check_device(dev, "loom_memory_stats_get");
  if (st != LOOM_OK) return st;
  if (dev.type == LOOM_CUDA) {
    cuda_pool_stats(dev.index, out);
    return LOOM_OK;
  }
  core_cache *c = host_pool();
  if (!c) return LOOM_ERR_OOM;
  core_cache_stats(c, out);
  return LOOM_OK;
}

void loom_memory_reset_peak(loom_device dev) {
  if (check_device(dev, "loom_memory_reset_peak") != LOOM_OK) return;
  if (dev.type == LOOM_CUDA) cuda_pool_reset_peak(dev.index);
  else core_cache_reset_peak(host_pool());
}

void loom_empty_cache(loom_device dev) {
  if (check_device(dev, "loom_empty_cache") != LOOM_OK) return;
  if (dev.type == LOOM_CUDA) cuda_pool_empty(dev.index);
  else core_cache_empty(host_pool());
}

void loom_set_memory_limit(loom_device dev, size_t bytes) {
  if (check_device(dev, "loom_set_memory_limit") != LOOM_OK) return;
  if (dev.type == LOOM_CUDA) cuda_pool_set_limit(dev.index, bytes);
  else core_cache_set_limit(host_pool(), bytes);
}

void loom_set_poison(bool on) { atomic_store(&poison_on, on); }
