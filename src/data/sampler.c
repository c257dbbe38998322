/* The epoch's sample order and its share for one data-parallel rank. */
#include <stdlib.h>

#include "data/data_impl.h"

loom_status data_shard_indices(int64_t n, bool shuffle, uint64_t seed, int64_t epoch, int rank, int world,
                               int64_t *out) {
  if (n <= 0) return LOOM_OK;
  int64_t per_rank = (n + world - 1) / world;
  /* Only this rank's positions of the padded order are needed: position j of
   * the padded list is order[j % n] (PyTorch wraps the order to pad). */
  if (!shuffle) {
    for (int64_t k = 0; k < per_rank; k++) out[k] = (rank + k * world) % n;
    return LOOM_OK;
  }
  int64_t *order = malloc((size_t)n * sizeof *order);
  if (!order) return core_set_error(LOOM_ERR_OOM, "loader: out of host memory for a permutation of %lld", (long long)n);
  for (int64_t k = 0; k < n; k++) order[k] = k;
  /* Fisher-Yates from a stream keyed by (seed, epoch): every rank draws the
   * same permutation without talking to the others. */
  data_rng r = {data_key(seed, (uint64_t)epoch, 0x5A3B1E)};
  for (int64_t k = n - 1; k > 0; k--) {
    int64_t j = (int64_t)data_below(&r, (uint64_t)k + 1);
    int64_t t = order[k];
    order[k] = order[j];
    order[j] = t;
  }
  for (int64_t k = 0; k < per_rank; k++) out[k] = order[(rank + k * world) % n];
  free(order);
  return LOOM_OK;
}
