/* Internal pieces of the data pipeline shared by the files of src/data. */
#ifndef LOOM_DATA_IMPL_H
#define LOOM_DATA_IMPL_H

#include <stdatomic.h>

#include "core/tensor_impl.h"
#include "loom/data.h"

struct loom_dataset {
  const loom_dataset_kind *kind;
  void *state;
  atomic_int refcount;
  int64_t length;
  loom_shape sample_shape, label_shape;
  loom_dtype sample_dtype, label_dtype;
};

/* Bytes of one sample / one label. */
size_t data_sample_bytes(const loom_dataset *ds);
size_t data_label_bytes(const loom_dataset *ds);

/* Reads a whole file (plain or gzip) into a malloc'd buffer. Errors
 * (LOOM_ERR_IO) name the file. *out is NULL on failure. */
loom_status data_read_file(const char *path, unsigned char **out, size_t *size);
/* Joins dir and name into buf; false + error when it does not fit. */
bool data_join(char *buf, size_t size, const char *dir, const char *name);
bool data_file_exists(const char *path);

/* ---- deterministic random numbers (independent of thread timing) ---- */
static inline uint64_t data_mix(uint64_t x) {   /* splitmix64 finaliser */
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
/* A key for (a, b, c): distinct tuples give unrelated streams. */
static inline uint64_t data_key(uint64_t a, uint64_t b, uint64_t c) {
  return data_mix(data_mix(data_mix(a) ^ b) ^ c);
}
typedef struct data_rng { uint64_t s; } data_rng;
static inline uint64_t data_next(data_rng *r) {
  r->s += 0x9E3779B97F4A7C15ull;
  uint64_t z = r->s;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
/* Uniform in [0, n) without modulo bias (n > 0). */
uint64_t data_below(data_rng *r, uint64_t n);

/* ---- sampler (src/data/sampler.c) ---- */
/* This rank's dataset indices for one epoch (PyTorch DistributedSampler with
 * drop_last = false): the epoch's order (a seeded permutation or 0..n-1),
 * padded by wrapping to a multiple of world, then every world-th from rank.
 * Writes ceil(n / world) indices to out. */
loom_status data_shard_indices(int64_t n, bool shuffle, uint64_t seed, int64_t epoch, int rank, int world,
                               int64_t *out);

/* ---- transforms (src/data/transform.c) ---- */
bool data_transform_active(const loom_transform_opts *t);
/* Validates t for samples of shape/dt and gives the transformed shape. */
loom_status data_transform_check(const loom_transform_opts *t, loom_shape shape, loom_dtype dt, loom_shape *out);

#endif
