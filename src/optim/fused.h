/* The list record of the fused multi-tensor optimiser ops (src/core/ops_optim.def),
 * shared by the op definitions (src/optim/fused.c), the CPU kernels
 * (src/cpu/optim.c) and the CUDA kernels (src/cuda/optim.cu). Compiles as C11
 * and CUDA C++. */
#ifndef LOOM_OPTIM_FUSED_H
#define LOOM_OPTIM_FUSED_H

#include <stdint.h>

/* Elements per chunk: one CUDA block (or one OpenMP work item) each. */
#define OPTIM_CHUNK 65536

typedef struct optim_entry {
  void *p[5];        /* param, grad, state 0..2 (NULL when unused): device pointers */
  int64_t n;         /* elements of each */
  int64_t chunk0;    /* index of this tensor's first chunk in the whole list */
  double s[4];       /* per-tensor scalars: lr, weight_decay, op-specific */
} optim_entry;

#ifdef __CUDACC__
#define OPTIM_HD __host__ __device__
#else
#define OPTIM_HD
#endif

/* The entry holding global chunk c: the last one with chunk0 <= c. */
static inline OPTIM_HD int64_t optim_find_entry(const optim_entry *e, int64_t n, int64_t c) {
  int64_t lo = 0, hi = n - 1;
  while (lo < hi) {
    int64_t mid = (lo + hi + 1) / 2;
    if (e[mid].chunk0 <= c) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

#endif
