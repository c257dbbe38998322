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
 * the format's writers do). Written to "path.tmp", flushed, then renamed, so
 * an existing file is never left half-written. Returns 0 or an error status. */
int loom_safetensors_save(const char *path, const loom_tensor_map *m);
/* Reads and validates every field; tensors are placed on dev. NULL on error. */
loom_tensor_map *loom_safetensors_load(const char *path, loom_device dev);
/* Same, from a memory buffer. */
loom_tensor_map *loom_safetensors_parse(const void *buf, size_t size, loom_device dev);

#ifdef __cplusplus
}
#endif
#endif
