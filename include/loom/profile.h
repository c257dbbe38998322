/* Loom profiling: an op profiler (calls and time per kernel-level op and
 * device type) and a per-layer forward profile (time and memory per module).
 * See docs/profiling.md. */
#ifndef LOOM_PROFILE_H
#define LOOM_PROFILE_H

#include <stdint.h>
#include <stdio.h>

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_module loom_module;

/* ---- op profiler ----
 * Records every kernel launch of the dispatcher, on every thread: calls and
 * time per (op, device type). Only leaf launches are counted: a CPU op on
 * f16 / bf16 shows up once under its own name, its conversions through f32
 * under "copy". CPU time is the kernel call's wall time (CLOCK_MONOTONIC);
 * CUDA time is device time between two events recorded on the launch's
 * stream, read when the profiler stops (or, to bound the pending events,
 * every 4,096 CUDA launches, which waits for the GPU). */
typedef struct loom_op_stat {
  const char *op;             /* loom_op_name: "matmul", "add", "copy", ... */
  loom_device_type device;    /* LOOM_CPU or LOOM_CUDA (all CUDA devices together) */
  int64_t calls;
  double total_ms;            /* mean = total_ms / calls */
} loom_op_stat;

/* Clears the table and starts recording. An error when already recording. */
int loom_profiler_start(void);
/* Stops recording; waits for the CUDA launches recorded and folds their
 * times in. The table stays readable until the next start. An error when
 * not recording. */
int loom_profiler_stop(void);
/* Fills out[0..min(count, cap)) with the ops recorded, by total_ms
 * descending, and returns their count (which may exceed cap; out may be NULL
 * with cap 0 to ask the count). While recording, CUDA times are those folded
 * so far. -1 with an error on bad arguments. */
int loom_profiler_ops(loom_op_stat *out, int cap);
/* Prints the table (rank, op, device, calls, total ms, mean us, % of the
 * recorded total) to f (stdout when NULL), the top `top` ops (all when
 * top <= 0). Returns 0 or an error status. */
int loom_profiler_print(FILE *f, int top);

/* ---- per-layer forward profile ----
 * Times every loom_forward_n of root and its descendants on the calling
 * thread. Memory figures come from the pool of the device of the forward's
 * first input (loom_memory_stats_get). On CUDA each module's forward is
 * bracketed by loom_synchronize, so layer profiling serialises the GPU. */
typedef struct loom_layer_stat {
  const char *name;           /* dotted name from root ("features.0"); "" for root */
  const char *type;           /* loom_module_type */
  int64_t calls;
  double total_ms;            /* forward time, children included */
  double self_ms;             /* total_ms minus the time of its profiled children */
  /* Largest over the calls of: pool bytes allocated after the forward minus
   * before (what it left allocated: output, saved activations) ... */
  int64_t kept_bytes;
  /* ... and of the peak bytes allocated during the forward minus those
   * allocated at its start. */
  int64_t peak_bytes;
} loom_layer_stat;

/* Starts profiling the forwards of root's tree on this thread. The module
 * names are taken now; root must stay alive until stop. An error when
 * already running (on any thread). While running, the device pools' peak
 * counters are reset at each module's forward (loom_memory_reset_peak). */
int loom_layer_profile_start(loom_module *root);
/* Stops; must be called on the thread that started. The stats stay
 * readable until the next start. */
int loom_layer_profile_stop(void);
/* Fills out[0..min(count, cap)) with one entry per module of the tree,
 * parents before children in registration order (as named_parameters), and
 * returns the count (out may be NULL with cap 0; 0 before any start). The
 * strings are valid until the next loom_layer_profile_start. -1 with an
 * error on bad arguments. */
int loom_layer_profile_stats(loom_layer_stat *out, int cap);
/* Prints the stats as a table to f (stdout when NULL). Returns 0 or an error status. */
int loom_layer_profile_print(FILE *f);

#ifdef __cplusplus
}
#endif
#endif
