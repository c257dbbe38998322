/* The tensor and storage structs and the core helpers that backends use.
 * Internal: not installed. Compiles as C11 and as CUDA C++. */
#ifndef LOOM_CORE_TENSOR_IMPL_H
#define LOOM_CORE_TENSOR_IMPL_H

#include "loom/tensor.h"
#include "loom/runtime.h"
#include "loom/autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct core_storage {
  void *data;
  size_t nbytes;
  loom_device device;
  int refcount;
  bool external;        /* data not owned (never freed) */
} core_storage;

struct core_node;

/* A live handle's magic; a freed one's (kept a while, see loom_release). */
#define CORE_TENSOR_LIVE 0x4c4f4f4du
#define CORE_TENSOR_FREED 0x46524545u

struct loom_tensor {
  uint32_t magic;                  /* CORE_TENSOR_LIVE until freed */
  core_storage *storage;
  loom_shape shape;
  int64_t strides[LOOM_MAX_DIMS];  /* in elements */
  int64_t offset;                  /* in elements */
  loom_dtype dtype;
  int refcount;
  bool requires_grad;
  loom_tensor *grad;               /* owned */
  struct core_node *grad_fn;       /* owned reference */
  loom_grad_hook hook;
  void *hook_user;
  int pending;                     /* backward walk: contributions still to come */
  loom_tensor *freed_next;         /* debug handles: the list of freed handles kept */
};

/* ---- errors ---- */
/* Records the thread-local error and returns status. printf-style. */
loom_status core_set_error(loom_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* For a NULL tensor argument: keeps the error of the failed call that most
 * likely produced the NULL (so a chain reports its first failure), else
 * records LOOM_ERR_INVALID with this message. Returns the status. */
/* True (with an error naming op) when t is a handle already freed: released
 * more times than retained, or used after the scope that owned it ended. */
bool core_freed_handle(const char *op, const loom_tensor *t);
loom_status core_null_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* ---- element access ---- */
static inline void *core_ptr(const loom_tensor *t) {
  return (char *)t->storage->data + (size_t)t->offset * loom_dtype_size(t->dtype);
}
static inline int64_t core_numel(const loom_tensor *t) { return loom_shape_numel(t->shape); }
bool core_is_contiguous(const loom_tensor *t);
/* Sets row-major strides for shape into strides. */
void core_contiguous_strides(loom_shape s, int64_t *strides);

/* ---- creation (internal) ----
 * New tensors are registered with the current scope (see loom_scope_begin). */
loom_tensor *core_new(loom_shape s, loom_dtype dt, loom_device dev);   /* uninitialised */
/* A new handle viewing t's storage with the given geometry. */
loom_tensor *core_view(const loom_tensor *t, loom_shape s, const int64_t *strides, int64_t offset);
/* Removes t from the scope that tracks it, so the caller owns the reference. */
void core_untrack(loom_tensor *t);

/* ---- memory (src/core/memory.c) ---- */
void *core_alloc(loom_device dev, size_t nbytes);   /* NULL + error on failure */
void core_free(loom_device dev, void *p);
/* Copies nbytes between any two devices (synchronous for device -> host). */
loom_status core_memcpy(void *dst, loom_device dst_dev, const void *src, loom_device src_dev, size_t nbytes);

/* ---- half precision conversions (round to nearest even) ---- */
float core_half_to_float(uint16_t h);
uint16_t core_float_to_half(float f);
float core_bf16_to_float(uint16_t b);
uint16_t core_float_to_bf16(float f);

/* ---- threads ---- */
int core_num_threads(void);

#ifdef __cplusplus
}
#endif
#endif
