/* A caching allocator over a raw allocator: size classes, block splitting and
 * coalescing, per-stream reuse, stats, a reservation limit, and the
 * out-of-memory policy of DESIGN.md (empty the cache, retry once, then fail
 * with requested / free / reserved / peak bytes). The same code backs the
 * host pool (raw = 64-byte aligned malloc), the pinned host pool (raw =
 * cudaHostAlloc) and each CUDA device's pool (raw = cudaMalloc). Thread-safe. */
#ifndef LOOM_CORE_CACHE_ALLOC_H
#define LOOM_CORE_CACHE_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include "loom/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct core_raw_allocator {
  /* Returns NULL on failure (no error recorded). */
  void *(*alloc)(size_t nbytes, void *ctx);
  void (*free)(void *p, size_t nbytes, void *ctx);
  /* Optional: bytes the system could still give (e.g. cudaMemGetInfo free); may be NULL. */
  size_t (*free_bytes)(void *ctx);
  void *ctx;
  const char *name;          /* "cpu", "cuda:0", "pinned" — used in error messages */
  /* Host memory the process touches directly: under AddressSanitizer, cached
   * and rounding bytes are poisoned so that overruns inside a segment are caught. */
  bool host_memory;
} core_raw_allocator;

typedef struct core_cache core_cache;

core_cache *core_cache_new(core_raw_allocator raw);
/* Frees every cached block; blocks still in use are leaked to the system. */
void core_cache_destroy(core_cache *c);
/* Returns a block of at least nbytes (aligned to 64 bytes, nbytes == 0 gives a
 * valid minimal block) reusable only on `stream` (NULL = default). On failure
 * records LOOM_ERR_OOM naming the pool and returns NULL. */
void *core_cache_alloc(core_cache *c, size_t nbytes, void *stream);
/* p must come from core_cache_alloc of the same cache; NULL is ignored. */
void core_cache_free(core_cache *c, void *p);
/* Size the caller asked for when p was allocated (0 when unknown). */
size_t core_cache_size_of(core_cache *c, void *p);
void core_cache_empty(core_cache *c);
void core_cache_stats(core_cache *c, loom_memory_stats *out);
void core_cache_reset_peak(core_cache *c);
/* Caps reserved bytes (0 = no cap); hitting the cap behaves as the system
 * running out of memory. */
void core_cache_set_limit(core_cache *c, size_t bytes);

#ifdef __cplusplus
}
#endif
#endif
