/* The caching allocator of cache_alloc.h.
 *
 * Segments are asked from the raw allocator and cut into blocks. A block knows
 * its neighbours in its segment (prev / next, address order), so freeing it can
 * merge it with free neighbours; a block with neither neighbour is a whole
 * segment and can go back to the system. Free blocks sit in one of two pools
 * (small requests < 1 MiB share 2 MiB segments; large requests get their own
 * segment rounded to 2 MiB), each a sorted array keyed by (stream, size,
 * address): the first entry at or after (stream, size) is the best fit. Live
 * blocks are found from their pointer through a chained hash table. One mutex
 * guards everything. */
#include "core/cache_alloc.h"

#include <pthread.h>
#include <sys/resource.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/host_limit.h"
#include "core/tensor_impl.h"

#define KIB ((size_t)1024)
#define MIB (1024 * KIB)
#define ROUND_SMALL (512)            /* every block size is a multiple of this */
#define LARGE_REQUEST (1 * MIB)      /* rounded requests from here on are large */
#define SMALL_SEGMENT (2 * MIB)      /* segment shared by small blocks */
#define LARGE_ROUND (2 * MIB)        /* large segments are multiples of this */
#define MIN_SPLIT_SMALL ((size_t)ROUND_SMALL)
#define MIN_SPLIT_LARGE (1 * MIB)

typedef struct block {
  char *ptr;
  size_t size;               /* rounded size */
  size_t requested;          /* what the caller asked for (live blocks) */
  void *stream;
  bool live;
  bool small;                /* which pool it belongs to */
  struct block *prev, *next; /* neighbours in the same segment */
  struct block *hnext;       /* chain in the live table */
} block;

typedef struct pool {
  block **free;              /* sorted by (stream, size, ptr) */
  size_t nfree, cap;
  size_t nblocks;            /* blocks of this pool, live or free: nfree never exceeds it */
} pool;

struct core_cache {
  core_raw_allocator raw;
  pthread_mutex_t mu;
  pool small, large;
  block **live;              /* hash buckets */
  size_t nbuckets, nlive;
  size_t allocated, reserved, peak, limit;
  uint64_t alloc_count, cache_hits;
};

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

static void format_bytes(char *buf, size_t size, size_t n) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = (double)n;
  int u = 0;
  while (v >= 1024.0 && u < 5) {
    v /= 1024.0;
    u++;
  }
  if (u == 0) snprintf(buf, size, "%zu B", n);
  else snprintf(buf, size, "%.2f %s", v, units[u]);
}

/* ---- the sorted free arrays ---- */

static int block_cmp(void *stream, size_t size, const char *ptr, const block *b) {
  uintptr_t s1 = (uintptr_t)stream, s2 = (uintptr_t)b->stream;
  if (s1 != s2) return s1 < s2 ? -1 : 1;
  if (size != b->size) return size < b->size ? -1 : 1;
  if (ptr != b->ptr) return (uintptr_t)ptr < (uintptr_t)b->ptr ? -1 : 1;
  return 0;
}

/* Index of the first free block not less than (stream, size, ptr). */
static size_t pool_lower_bound(const pool *p, void *stream, size_t size, const char *ptr) {
  size_t lo = 0, hi = p->nfree;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (block_cmp(stream, size, ptr, p->free[mid]) > 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* Makes room for `n` free entries; false when the host is out of memory. */
static bool pool_reserve(pool *p, size_t n) {
  if (n <= p->cap) return true;
  size_t cap = p->cap ? p->cap : 64;
  while (cap < n) cap *= 2;
  block **f = realloc(p->free, cap * sizeof *f);
  if (!f) return false;
  p->free = f;
  p->cap = cap;
  return true;
}

/* Capacity is kept >= nblocks (see alloc), so this never needs to grow. */
static void pool_insert(pool *p, block *b) {
  size_t i = pool_lower_bound(p, b->stream, b->size, b->ptr);
  memmove(p->free + i + 1, p->free + i, (p->nfree - i) * sizeof *p->free);
  p->free[i] = b;
  p->nfree++;
}

static void pool_remove(pool *p, block *b) {
  size_t i = pool_lower_bound(p, b->stream, b->size, b->ptr);
  if (i < p->nfree && p->free[i] == b) {
    memmove(p->free + i, p->free + i + 1, (p->nfree - i - 1) * sizeof *p->free);
    p->nfree--;
  }
}

static block *pool_best_fit(pool *p, void *stream, size_t size) {
  size_t i = pool_lower_bound(p, stream, size, NULL);
  if (i < p->nfree && p->free[i]->stream == stream) return p->free[i];
  return NULL;
}

/* ---- the live table ---- */

static size_t hash_ptr(const void *p, size_t nbuckets) {
  uint64_t h = (uint64_t)(uintptr_t)p >> 6;
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return (size_t)(h & (nbuckets - 1));
}

/* Doubles the table when it is full; on a failed malloc the old table stays
 * (chains just get longer). */
static void live_grow(core_cache *c) {
  if (c->nlive < c->nbuckets) return;
  size_t n = c->nbuckets * 2;
  block **t = calloc(n, sizeof *t);
  if (!t) return;
  for (size_t i = 0; i < c->nbuckets; i++) {
    block *b = c->live[i];
    while (b) {
      block *next = b->hnext;
      size_t h = hash_ptr(b->ptr, n);
      b->hnext = t[h];
      t[h] = b;
      b = next;
    }
  }
  free(c->live);
  c->live = t;
  c->nbuckets = n;
}

static void live_insert(core_cache *c, block *b) {
  live_grow(c);
  size_t h = hash_ptr(b->ptr, c->nbuckets);
  b->hnext = c->live[h];
  c->live[h] = b;
  c->nlive++;
}

static block *live_find(core_cache *c, const void *p, bool remove) {
  block **link = &c->live[hash_ptr(p, c->nbuckets)];
  for (; *link; link = &(*link)->hnext) {
    block *b = *link;
    if (b->ptr != p) continue;
    if (remove) {
      *link = b->hnext;
      b->hnext = NULL;
      c->nlive--;
    }
    return b;
  }
  return NULL;
}

/* ---- AddressSanitizer: poison what the caller may not touch ---- */
#if defined(__SANITIZE_ADDRESS__)
#define LOOM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LOOM_ASAN 1
#endif
#endif
#ifdef LOOM_ASAN
#include <sanitizer/asan_interface.h>
static void poison(core_cache *c, void *p, size_t n, bool on) {
  if (!c->raw.host_memory) return;
  if (on) ASAN_POISON_MEMORY_REGION(p, n);
  else ASAN_UNPOISON_MEMORY_REGION(p, n);
}
#else
static void poison(core_cache *c, void *p, size_t n, bool on) { (void)c, (void)p, (void)n, (void)on; }
#endif

/* ---- segments ---- */

static void release_free_segments(core_cache *c, pool *p) {
  size_t kept = 0;
  for (size_t i = 0; i < p->nfree; i++) {
    block *b = p->free[i];
    if (b->prev || b->next) {
      p->free[kept++] = b;
      continue;
    }
    poison(c, b->ptr, b->size, false);
    c->raw.free(b->ptr, b->size, c->raw.ctx);
    c->reserved -= b->size;
    p->nblocks--;
    free(b);
  }
  p->nfree = kept;
}

static void *raw_try(core_cache *c, size_t size) {
  if (c->limit && (c->reserved > c->limit || size > c->limit - c->reserved)) return NULL;
  return c->raw.alloc(size, c->raw.ctx);
}

/* A new segment as one free-standing block (not in any pool), or NULL. Empties
 * the cache and retries once when the first attempt fails. */
static block *segment_new(core_cache *c, size_t size, void *stream, bool small) {
  block *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  void *p = raw_try(c, size);
  if (!p) {
    release_free_segments(c, &c->small);
    release_free_segments(c, &c->large);
    p = raw_try(c, size);
  }
  if (!p) {
    free(b);
    return NULL;
  }
  poison(c, p, size, true);
  b->ptr = p;
  b->size = size;
  b->stream = stream;
  b->small = small;
  c->reserved += size;
  (small ? &c->small : &c->large)->nblocks++;
  return b;
}

/* Cuts b down to size, putting the rest in the pool when it is worth keeping. */
static void maybe_split(core_cache *c, pool *p, block *b, size_t size) {
  size_t rest = b->size - size;
  if (rest < (b->small ? MIN_SPLIT_SMALL : MIN_SPLIT_LARGE)) return;
  block *r = calloc(1, sizeof *r);
  if (!r) return; /* keep the whole block */
  *r = (block){.ptr = b->ptr + size, .size = rest, .stream = b->stream, .small = b->small,
               .prev = b, .next = b->next};
  if (b->next) b->next->prev = r;
  b->next = r;
  b->size = size;
  p->nblocks++;
  pool_insert(p, r);
}

static void oom_message(core_cache *c, char *msg, size_t size, size_t nbytes) {
  char req[32], res[32], al[32], pk[32], fr[32] = "", lim[32] = "";
  format_bytes(req, sizeof req, nbytes);
  format_bytes(res, sizeof res, c->reserved);
  format_bytes(al, sizeof al, c->allocated);
  format_bytes(pk, sizeof pk, c->peak);
  if (c->raw.free_bytes) format_bytes(fr, sizeof fr, c->raw.free_bytes(c->raw.ctx));
  if (c->limit) format_bytes(lim, sizeof lim, c->limit);
  char as[96] = ""; /* host memory: a process limit, not the machine, is often what bites */
  struct rlimit r;
  if (c->raw.host_memory && getrlimit(RLIMIT_AS, &r) == 0 && r.rlim_cur != RLIM_INFINITY) {
    char v[32];
    format_bytes(v, sizeof v, (size_t)r.rlim_cur);
    snprintf(as, sizeof as, ", process address-space limit %s (ulimit -v)", v);
  }
  char cg[128] = ""; /* ... or the memory cgroup of a container or a batch job */
  uint64_t cg_limit, cg_usage;
  if (c->raw.host_memory && core_cgroup_memory_limit("/sys/fs/cgroup", "/proc/self/cgroup", &cg_limit, &cg_usage)) {
    char l[32], u[32];
    format_bytes(l, sizeof l, (size_t)cg_limit);
    format_bytes(u, sizeof u, (size_t)cg_usage);
    snprintf(cg, sizeof cg, ", cgroup memory limit %s (%s in use)", l, u);
  }
  snprintf(msg, size, "%s: out of memory allocating %s (reserved %s, allocated %s, peak %s%s%s%s%s%s%s)",
           c->raw.name ? c->raw.name : "pool", req, res, al, pk, fr[0] ? ", free " : "", fr,
           lim[0] ? ", limit " : "", lim, as, cg);
}

/* ---- the interface ---- */

core_cache *core_cache_new(core_raw_allocator raw) {
  core_cache *c = calloc(1, sizeof *c);
  if (c) c->live = calloc(256, sizeof *c->live);
  if (!c || !c->live) {
    free(c);
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory creating the allocator",
                   raw.name ? raw.name : "pool");
    return NULL;
  }
  c->nbuckets = 256;
  c->raw = raw;
  pthread_mutex_init(&c->mu, NULL);
  return c;
}

void core_cache_destroy(core_cache *c) {
  if (!c) return;
  release_free_segments(c, &c->small);
  release_free_segments(c, &c->large);
  /* Free blocks left are parts of segments still in use: those segments leak. */
  for (int k = 0; k < 2; k++) {
    pool *p = k ? &c->large : &c->small;
    for (size_t i = 0; i < p->nfree; i++) free(p->free[i]);
    free(p->free);
  }
  for (size_t i = 0; i < c->nbuckets; i++) {
    for (block *b = c->live[i], *next; b; b = next) {
      next = b->hnext;
      free(b);
    }
  }
  free(c->live);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

void *core_cache_alloc(core_cache *c, size_t nbytes, void *stream) {
  if (!c) {
    core_set_error(LOOM_ERR_INTERNAL, "core_cache_alloc: no allocator");
    return NULL;
  }
  char msg[512];
  if (nbytes > SIZE_MAX / 4) {
    pthread_mutex_lock(&c->mu);
    oom_message(c, msg, sizeof msg, nbytes);
    pthread_mutex_unlock(&c->mu);
    core_set_error(LOOM_ERR_OOM, "%s", msg);
    return NULL;
  }
  size_t size = nbytes ? round_up(nbytes, ROUND_SMALL) : ROUND_SMALL;
  bool small = size < LARGE_REQUEST;
  pool *p = small ? &c->small : &c->large;

  pthread_mutex_lock(&c->mu);
  /* Up to two new blocks (a segment and a split remainder) may enter the pool. */
  block *b = NULL;
  bool hit = false;
  if (pool_reserve(p, p->nblocks + 2)) {
    b = pool_best_fit(p, stream, size);
    if (b) {
      pool_remove(p, b);
      hit = true;
    } else {
      b = segment_new(c, small ? SMALL_SEGMENT : round_up(size, LARGE_ROUND), stream, small);
    }
  }
  if (!b) {
    oom_message(c, msg, sizeof msg, nbytes);
    pthread_mutex_unlock(&c->mu);
    core_set_error(LOOM_ERR_OOM, "%s", msg);
    return NULL;
  }
  maybe_split(c, p, b, size);
  poison(c, b->ptr, nbytes, false);
  b->live = true;
  b->requested = nbytes;
  live_insert(c, b);
  c->allocated += b->size;
  if (c->allocated > c->peak) c->peak = c->allocated;
  c->alloc_count++;
  if (hit) c->cache_hits++;
  pthread_mutex_unlock(&c->mu);
  return b->ptr;
}

/* Merges n (free, out of the pool, directly after b) into b. */
static void absorb(pool *p, block *b, block *n) {
  b->size += n->size;
  b->next = n->next;
  if (n->next) n->next->prev = b;
  p->nblocks--;
  free(n);
}

void core_cache_free(core_cache *c, void *ptr) {
  if (!c || !ptr) return;
  pthread_mutex_lock(&c->mu);
  block *b = live_find(c, ptr, true);
  if (!b) {
    pthread_mutex_unlock(&c->mu);
    core_set_error(LOOM_ERR_INTERNAL, "%s: free of %p, which this pool did not allocate (or already freed)",
                   c->raw.name ? c->raw.name : "pool", ptr);
    return;
  }
  pool *p = b->small ? &c->small : &c->large;
  c->allocated -= b->size;
  poison(c, b->ptr, b->size, true);
  b->live = false;
  b->requested = 0;
  if (b->prev && !b->prev->live) {
    block *prev = b->prev;
    pool_remove(p, prev);
    absorb(p, prev, b);
    b = prev;
  }
  if (b->next && !b->next->live) {
    pool_remove(p, b->next);
    absorb(p, b, b->next);
  }
  pool_insert(p, b);
  pthread_mutex_unlock(&c->mu);
}

size_t core_cache_size_of(core_cache *c, void *ptr) {
  if (!c || !ptr) return 0;
  pthread_mutex_lock(&c->mu);
  block *b = live_find(c, ptr, false);
  size_t n = b ? b->requested : 0;
  pthread_mutex_unlock(&c->mu);
  return n;
}

void core_cache_empty(core_cache *c) {
  if (!c) return;
  pthread_mutex_lock(&c->mu);
  release_free_segments(c, &c->small);
  release_free_segments(c, &c->large);
  pthread_mutex_unlock(&c->mu);
}

void core_cache_stats(core_cache *c, loom_memory_stats *out) {
  if (!out) return;
  memset(out, 0, sizeof *out);
  if (!c) return;
  pthread_mutex_lock(&c->mu);
  out->allocated = c->allocated;
  out->reserved = c->reserved;
  out->peak_allocated = c->peak;
  out->alloc_count = c->alloc_count;
  out->cache_hits = c->cache_hits;
  pthread_mutex_unlock(&c->mu);
}

void core_cache_reset_peak(core_cache *c) {
  if (!c) return;
  pthread_mutex_lock(&c->mu);
  c->peak = c->allocated;
  pthread_mutex_unlock(&c->mu);
}

void core_cache_set_limit(core_cache *c, size_t bytes) {
  if (!c) return;
  pthread_mutex_lock(&c->mu);
  c->limit = bytes;
  pthread_mutex_unlock(&c->mu);
}
