/* Loom I/O: safetensors files. */
#ifndef LOOM_IO_H
#define LOOM_IO_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A set of named tensors plus string metadata, as held in a safetensors file. */
typedef struct loom_tensor_map loom_tensor_map;

loom_tensor_map *loom_map_new(void);
void loom_map_free(loom_tensor_map *m);
/* Stores a reference to t under name (replacing an earlier one). */
int loom_map_set(loom_tensor_map *m, const char *name, loom_tensor *t);
/* Borrowed: owned by the map. NULL when absent. */
loom_tensor *loom_map_get(const loom_tensor_map *m, const char *name);
int loom_map_size(const loom_tensor_map *m);
const char *loom_map_name(const loom_tensor_map *m, int i);   /* in insertion order */
int loom_map_set_meta(loom_tensor_map *m, const char *key, const char *value);
const char *loom_map_get_meta(const loom_tensor_map *m, const char *key);
int loom_map_meta_size(const loom_tensor_map *m);
const char *loom_map_meta_key(const loom_tensor_map *m, int i);

/* Writes m to path as safetensors (tensors copied to the host, names sorted as
 * the format's writers do). Written to "path.tmp.<pid>", flushed, then renamed, so
 * an existing file is never left half-written. Returns 0 or an error status. */
int loom_safetensors_save(const char *path, const loom_tensor_map *m);
/* Reads and validates every field; tensors are placed on dev. NULL on error. */
loom_tensor_map *loom_safetensors_load(const char *path, loom_device dev);
/* Same, from a memory buffer. */
loom_tensor_map *loom_safetensors_parse(const void *buf, size_t size, loom_device dev);


/* ---- checkpoints ----
 * A checkpoint is one safetensors file holding the model's state_dict under
 * "model.", the optimiser's state under "optim.", the schedule's under
 * "sched.", the loss scaler's under "scaler.", the RNG state of the CPU and of
 * every visible CUDA device ("rng.cpu", "rng.cuda.<i>": i64 [seed, offset])
 * and the loader position ("data.position": i64 [epoch, batch]), plus
 * __metadata__ strings: format ("loom-checkpoint"), format_version, step,
 * epoch, model_type, optimizer, config and a CRC-32 "checksum" of every
 * tensor's name, dtype, shape and bytes and every metadata string. Other safetensors tools read it as is. */
typedef struct loom_module loom_module;
typedef struct loom_optimizer loom_optimizer;
typedef struct loom_scheduler loom_scheduler;
typedef struct loom_grad_scaler loom_grad_scaler;
typedef struct loom_loader loom_loader;

/* 2: the checksum covers each tensor's dtype and shape too (version 1 files still load). */
#define LOOM_CHECKPOINT_VERSION 2
typedef struct loom_checkpoint_meta {
  int64_t step;              /* optimiser steps taken */
  int64_t epoch;             /* epoch in progress (0-based) */
  char config[4096];         /* free text (options, command line); truncated on load */
  /* Filled by load (ignored by save, which takes them from the objects): */
  char model_type[64];       /* loom_module_type of the saved model */
  char optimizer[32];        /* loom_optimizer_name, "" when none was saved */
  int version;               /* format_version */
  /* The run's shape of work (0 = not recorded; save stores what is set):
   * metadata run_batch_size, run_dataset_len, run_world_size, run_epochs. */
  int64_t batch_size, dataset_len, world_size, epochs;
} loom_checkpoint_meta;

/* Writes a checkpoint of model (required) and of optimizer, scheduler,
 * scaler, loader (each may be NULL) with meta (may be NULL: step 0). Through
 * loom_safetensors_save: a temporary file, fsync, rename, so an existing file
 * at path is replaced only by a complete new one. Returns 0 or an error. */
int loom_checkpoint_save(const char *path, const loom_module *model, const loom_optimizer *optimizer,
                         const loom_scheduler *scheduler, const loom_grad_scaler *scaler,
                         const loom_loader *loader, const loom_checkpoint_meta *meta);
/* Reads a checkpoint into the given objects (model required, the others may
 * be NULL to skip them) and meta_out (may be NULL). Everything is checked
 * before anything changes: a corrupt or truncated file is LOOM_ERR_IO; a
 * checkpoint of another model (LOOM_ERR_INVALID) names the missing,
 * unexpected and mis-shaped keys; a part asked for but absent is an error. */
int loom_checkpoint_load(const char *path, loom_module *model, loom_optimizer *optimizer,
                         loom_scheduler *scheduler, loom_grad_scaler *scaler, loom_loader *loader,
                         loom_checkpoint_meta *meta_out);
/* Reads and verifies a checkpoint (format, checksum) without loading it:
 * meta_out (may be NULL) and the number of tensors, or a negative status. */
int loom_checkpoint_check(const char *path, loom_checkpoint_meta *meta_out);
/* DIR/PREFIX-<step as 8 digits>.safetensors into buf. Returns 0 or an error
 * (LOOM_ERR_INVALID when it does not fit). */
int loom_checkpoint_path(const char *dir, const char *prefix, int64_t step, char *buf, size_t size);
/* Deletes all but the keep newest (highest step) DIR/PREFIX-<step>.safetensors
 * files. Returns how many were deleted, or a negative status. */
int loom_checkpoint_rotate(const char *dir, const char *prefix, int keep);
/* The newest DIR/PREFIX-<step>.safetensors into buf: 1 when found, 0 when
 * there is none (or DIR does not exist), a negative status on error. */
int loom_checkpoint_latest(const char *dir, const char *prefix, char *buf, size_t size);
/* The newest checkpoint that passes loom_checkpoint_check: 1 found (path in
 * buf), 0 none, or a negative status. */
int loom_checkpoint_latest_valid(const char *dir, const char *prefix, char *buf, size_t size);
/* Makes dir ready for checkpoints: creates it and its parents, checks that a
 * file can be written there, and removes the temporaries
 * (PREFIX-*.safetensors.tmp.<pid>) of saves whose process is gone. Returns
 * how many it removed, or a negative status. */
int loom_checkpoint_prepare_dir(const char *dir, const char *prefix);

#ifdef __cplusplus
}
#endif
#endif
