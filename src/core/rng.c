/* Per-device Philox generator state: a seed and a counter offset. */
#include <pthread.h>

#include "core/tensor_impl.h"

#define MAX_CUDA_GENERATORS 64
#define DEFAULT_SEED 67280421310721ULL /* PyTorch's default seed */

typedef struct generator { uint64_t seed, offset; } generator;
static generator gens[1 + MAX_CUDA_GENERATORS];
static bool gens_init;
static pthread_mutex_t rng_lock = PTHREAD_MUTEX_INITIALIZER;

static generator *gen_for(loom_device dev) {
  if (!gens_init) {
    for (int i = 0; i <= MAX_CUDA_GENERATORS; i++) gens[i].seed = DEFAULT_SEED;
    gens_init = true;
  }
  if (dev.type == LOOM_CUDA && dev.index >= 0 && dev.index < MAX_CUDA_GENERATORS) return &gens[1 + dev.index];
  return &gens[0];
}

/* Reserves `blocks` Philox counters on dev's generator. */
void core_rng_next(loom_device dev, uint64_t blocks, uint64_t *seed, uint64_t *offset) {
  pthread_mutex_lock(&rng_lock);
  generator *g = gen_for(dev);
  *seed = g->seed;
  *offset = g->offset;
  g->offset += blocks;
  pthread_mutex_unlock(&rng_lock);
}

void loom_manual_seed(uint64_t seed) {
  pthread_mutex_lock(&rng_lock);
  gen_for(loom_cpu());
  for (int i = 0; i <= MAX_CUDA_GENERATORS; i++) gens[i] = (generator){seed, 0};
  pthread_mutex_unlock(&rng_lock);
}

void loom_manual_seed_device(loom_device dev, uint64_t seed) {
  pthread_mutex_lock(&rng_lock);
  *gen_for(dev) = (generator){seed, 0};
  pthread_mutex_unlock(&rng_lock);
}

void loom_rng_get_state(loom_device dev, uint64_t *seed, uint64_t *offset) {
  pthread_mutex_lock(&rng_lock);
  generator *g = gen_for(dev);
  if (seed) *seed = g->seed;
  if (offset) *offset = g->offset;
  pthread_mutex_unlock(&rng_lock);
}

void loom_rng_set_state(loom_device dev, uint64_t seed, uint64_t offset) {
  pthread_mutex_lock(&rng_lock);
  *gen_for(dev) = (generator){seed, offset};
  pthread_mutex_unlock(&rng_lock);
}
