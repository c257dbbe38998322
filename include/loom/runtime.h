/* Loom runtime: errors, devices, versions, memory, streams, RNG, modes. */
#ifndef LOOM_RUNTIME_H
#define LOOM_RUNTIME_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ---- */
typedef enum loom_status {
  LOOM_OK = 0,
  LOOM_ERR_INVALID,       /* bad argument: shape, dtype, device, dim, index, NULL */
  LOOM_ERR_UNSUPPORTED,   /* no kernel for this op / dtype / device */
  LOOM_ERR_OOM,           /* out of memory after emptying the cache once */
  LOOM_ERR_IO,            /* file missing, unreadable, truncated or corrupt */
  LOOM_ERR_DEVICE,        /* CUDA / cuBLAS / cuDNN / NCCL failure or no device */
  LOOM_ERR_INTERNAL,
  LOOM_ERR_COMM           /* a collective failed (MPI / NCCL) or the process group is unusable */
} loom_status;

/* Message of the last failing call on this thread ("" when none). */
const char *loom_last_error(void);
loom_status loom_last_status(void);
void loom_clear_error(void);
const char *loom_status_name(loom_status s);

/* ---- devices ---- */
/* Number of visible CUDA devices; 0 when built without CUDA or with no GPU. */
int loom_cuda_device_count(void);
bool loom_cuda_is_built(void);
typedef struct loom_device_info {
  char name[256];
  int major, minor;          /* compute capability */
  size_t total_memory, free_memory;
  int multiprocessors;
  char pci_bus_id[32];       /* "0000:17:00.0", as NVML names the device */
} loom_device_info;
int loom_cuda_device_info(int index, loom_device_info *out);
/* The git commit the build was configured from ("abc123def456", "-dirty" with
 * local changes; "unknown" outside a git checkout). */
const char *loom_commit(void);
/* Writes one line per component: Loom (with its commit), OpenBLAS, OpenMP threads, MPI, driver, CUDA runtime, cuBLAS, cuDNN, NCCL. */
int loom_versions(char *buf, size_t size);
void loom_print_versions(void);

/* ---- memory ---- */
typedef struct loom_memory_stats {
  size_t allocated;         /* bytes handed out now */
  size_t reserved;          /* bytes held from the system (allocated + cached) */
  size_t peak_allocated;
  uint64_t alloc_count, cache_hits;
} loom_memory_stats;
int loom_memory_stats_get(loom_device dev, loom_memory_stats *out);
void loom_memory_reset_peak(loom_device dev);
/* Returns cached, unused blocks of dev to the system. */
void loom_empty_cache(loom_device dev);
void loom_cuda_empty_cache(void);
/* Caps what a device's pool may reserve (0 = no cap): used to test OOM handling. */
void loom_set_memory_limit(loom_device dev, size_t bytes);
/* When on, fresh allocations are filled with 0xFF bytes (NaN for floats) so
 * that an unwritten output element shows up in tests. */
void loom_set_poison(bool on);
/* Freed tensor handles are always marked, and kept for the next 4,096 frees,
 * so that a second release or an op on a freed handle is a clear error. With
 * debug handles on, freed handles are never reused (about 200 bytes each are
 * kept), so the check holds however long ago the handle was freed. Off by
 * default; the environment variable LOOM_DEBUG_HANDLES=1 turns it on at
 * start-up (the test suite runs under it). */
void loom_set_debug_handles(bool on);

/* ---- streams and events (CUDA; no-ops on the CPU) ---- */
typedef struct loom_stream loom_stream;
typedef struct loom_event loom_event;
loom_stream *loom_stream_create(loom_device dev);
void loom_stream_destroy(loom_stream *s);
/* The thread-local current stream of dev's compute work (NULL = default stream). */
loom_stream *loom_current_stream(loom_device dev);
void loom_set_current_stream(loom_device dev, loom_stream *s);
int loom_stream_synchronize(loom_stream *s);
loom_event *loom_event_create(loom_device dev);
void loom_event_destroy(loom_event *e);
int loom_event_record(loom_event *e, loom_stream *s);
int loom_stream_wait_event(loom_stream *s, loom_event *e);
int loom_event_synchronize(loom_event *e);
float loom_event_elapsed_ms(loom_event *start, loom_event *end);
/* Waits for all work on dev. */
int loom_synchronize(loom_device dev);

/* ---- random numbers ---- */
void loom_manual_seed(uint64_t seed);                    /* every device */
void loom_manual_seed_device(loom_device dev, uint64_t seed);
/* Generator state: seed and counter offset, for checkpoints. */
void loom_rng_get_state(loom_device dev, uint64_t *seed, uint64_t *offset);
void loom_rng_set_state(loom_device dev, uint64_t seed, uint64_t offset);

/* ---- the ops table (kernel-level ops, as in src/core/ops.def) ---- */
int loom_op_count(void);
const char *loom_op_name(int op);          /* NULL when op is out of range */
int loom_op_find(const char *name);        /* -1 when unknown */
/* True when backend dev_type has a kernel for op and dtype (known even
 * without a GPU: it reflects the compiled kernel tables). */
bool loom_supports_op(loom_device_type dev_type, int op, loom_dtype dt);

/* ---- modes ---- */
void loom_set_deterministic(bool on);
bool loom_deterministic(void);
void loom_set_tf32(bool on);       /* TF32 tensor cores for f32 matmul on CUDA (default off) */
bool loom_tf32(void);
/* OpenMP threads used by CPU kernels (0 = library default). */
void loom_set_num_threads(int n);
int loom_num_threads(void);
/* oneDNN for the CPU's f32 convolutions, in builds with it (CMake LOOM_ONEDNN):
 * 1 = where it measured faster than im2col + OpenBLAS (the default; the
 * environment's LOOM_ONEDNN=0 or =2 starts with 0 or 2), 0 = off, 2 = wherever
 * oneDNN implements the shape (tests, benchmarks). loom_onednn() is -1 in
 * builds without oneDNN, where loom_set_onednn does nothing. */
void loom_set_onednn(int mode);
int loom_onednn(void);

#ifdef __cplusplus
}
#endif
#endif
