/* Tensor handles: lifetime, scopes, geometry and properties. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd_impl.h"

static int64_t live_tensors;

/* ---- scopes ---- */
typedef struct scope { loom_tensor **items; int n, cap; } scope;
static _Thread_local scope *scopes;
static _Thread_local int n_scopes, cap_scopes;

static void scope_push(scope *s, loom_tensor *t) {
  if (s->n == s->cap) {
    int cap = s->cap ? s->cap * 2 : 64;
    loom_tensor **items = realloc(s->items, (size_t)cap * sizeof *items);
    if (!items) return; /* out of host memory: the tensor stays owned by the caller */
    s->items = items;
    s->cap = cap;
  }
  s->items[s->n++] = t;
}

/* Removes the last occurrence of t from s; returns whether it was there. */
static bool scope_remove(scope *s, const loom_tensor *t) {
  for (int i = s->n - 1; i >= 0; i--) {
    if (s->items[i] == t) {
      s->items[i] = NULL;
      if (i == s->n - 1) s->n--;
      return true;
    }
  }
  return false;
}

void loom_scope_begin(void) {
  if (n_scopes == cap_scopes) {
    int cap = cap_scopes ? cap_scopes * 2 : 16;
    scope *ns = realloc(scopes, (size_t)cap * sizeof *ns);
    if (!ns) return;
    memset(ns + cap_scopes, 0, (size_t)(cap - cap_scopes) * sizeof *ns);
    scopes = ns;
    cap_scopes = cap;
  }
  scopes[n_scopes++].n = 0;
}

void loom_scope_end(void) {
  if (n_scopes == 0) return;
  scope *s = &scopes[n_scopes - 1];
  /* release in reverse creation order; releases may not create tensors here */
  for (int i = s->n - 1; i >= 0; i--)
    if (s->items[i]) loom_release(s->items[i]);
  s->n = 0;
  n_scopes--;
  if (n_scopes == 0) { /* outermost scope closed: give the memory back */
    for (int i = 0; i < cap_scopes; i++) free(scopes[i].items);
    free(scopes);
    scopes = NULL;
    cap_scopes = 0;
  }
}

loom_tensor *loom_keep(loom_tensor *t) {
  if (!t || n_scopes == 0) return t;
  if (scope_remove(&scopes[n_scopes - 1], t) && n_scopes > 1) scope_push(&scopes[n_scopes - 2], t);
  return t;
}

void core_untrack(loom_tensor *t) {
  if (t && n_scopes > 0) scope_remove(&scopes[n_scopes - 1], t);
}

static loom_tensor *track(loom_tensor *t) {
  if (n_scopes > 0) scope_push(&scopes[n_scopes - 1], t);
  return t;
}

int64_t loom_live_tensors(void) { return __atomic_load_n(&live_tensors, __ATOMIC_RELAXED); }

/* ---- lifetime ---- */
loom_tensor *loom_retain(loom_tensor *t) {
  if (t) __atomic_add_fetch(&t->refcount, 1, __ATOMIC_RELAXED);
  return t;
}

static void storage_release(core_storage *s) {
  if (!s || __atomic_sub_fetch(&s->refcount, 1, __ATOMIC_ACQ_REL) != 0) return;
  if (!s->external) core_free(s->device, s->data);
  free(s);
}

/* Freed handles are kept, marked freed, for the last QUARANTINE frees before
 * their memory goes back, so that a handle released twice or used after its
 * scope ended meets a clear error instead of undefined behaviour (while it is
 * among those; about 200 bytes each). */
#define QUARANTINE 4096
static _Atomic(loom_tensor *) quarantine[QUARANTINE];
static _Atomic unsigned quarantine_pos;
/* Debug handles: every freed handle is kept, on a list (reachable, so leak
 * checkers do not count it). -1 until LOOM_DEBUG_HANDLES has been read. */
static _Atomic int debug_handles = -1;
static _Atomic(loom_tensor *) kept_freed;

void loom_set_debug_handles(bool on) { atomic_store(&debug_handles, on ? 1 : 0); }

static bool keep_freed_handles(void) {
  int v = atomic_load(&debug_handles);
  if (v < 0) {
    const char *e = getenv("LOOM_DEBUG_HANDLES");
    int want = e && *e && strcmp(e, "0") != 0;
    atomic_compare_exchange_strong(&debug_handles, &v, want);
    v = atomic_load(&debug_handles);
  }
  return v == 1;
}

bool core_freed_handle(const char *op, const loom_tensor *t) {
  if (!t || t->magic == CORE_TENSOR_LIVE) return false;
  core_set_error(LOOM_ERR_INVALID, "%s: tensor %p was already freed (released once too often, or used after the "
                 "scope that owned it ended: loom_keep it, or loom_retain it to hold it past the scope)", op,
                 (const void *)t);
  return true;
}

void loom_release(loom_tensor *t) {
  if (!t || core_freed_handle("loom_release", t)) return;
  if (__atomic_sub_fetch(&t->refcount, 1, __ATOMIC_ACQ_REL) != 0) return;
  storage_release(t->storage);
  loom_release(t->grad);
  if (t->grad_fn) core_node_release(t->grad_fn);
  t->magic = CORE_TENSOR_FREED;
  t->storage = NULL, t->grad = NULL, t->grad_fn = NULL;
  if (keep_freed_handles()) {
    loom_tensor *head = atomic_load(&kept_freed);
    do t->freed_next = head;
    while (!atomic_compare_exchange_weak(&kept_freed, &head, t));
  } else {
    unsigned slot = atomic_fetch_add(&quarantine_pos, 1) % QUARANTINE;
    free(atomic_exchange(&quarantine[slot], t));
  }
  __atomic_sub_fetch(&live_tensors, 1, __ATOMIC_RELAXED);
}

/* ---- geometry ---- */
void core_contiguous_strides(loom_shape s, int64_t *strides) {
  int64_t st = 1;
  for (int i = s.ndim - 1; i >= 0; i--) {
    strides[i] = st;
    st *= s.d[i] > 0 ? s.d[i] : 1;
  }
}

bool core_is_contiguous(const loom_tensor *t) {
  int64_t st = 1;
  for (int i = t->shape.ndim - 1; i >= 0; i--) {
    if (t->shape.d[i] == 1) continue;
    if (t->shape.d[i] == 0) return true;
    if (t->strides[i] != st) return false;
    st *= t->shape.d[i];
  }
  return true;
}

static bool check_shape(const char *op, loom_shape s, loom_dtype dt) {
  if ((unsigned)dt >= LOOM_DTYPE_COUNT) {
    core_set_error(LOOM_ERR_INVALID, "%s: invalid dtype %d", op, (int)dt);
    return false;
  }
  if (s.ndim < 0 || s.ndim > LOOM_MAX_DIMS) {
    core_set_error(LOOM_ERR_INVALID, "%s: %d dims requested; Loom tensors have at most %d", op, s.ndim,
                   LOOM_MAX_DIMS);
    return false;
  }
  int64_t n = 1;
  for (int i = 0; i < s.ndim; i++) {
    if (s.d[i] < 0) {
      core_set_error(LOOM_ERR_INVALID, "%s: negative size %lld in dim %d of shape %s", op,
                     (long long)s.d[i], i, loom_shape_str(s));
      return false;
    }
    if (s.d[i] > 0 && n > (INT64_MAX / 16) / s.d[i]) {
      core_set_error(LOOM_ERR_INVALID, "%s: shape %s has too many elements", op, loom_shape_str(s));
      return false;
    }
    n *= s.d[i] > 0 ? s.d[i] : 1;
  }
  return true;
}

static bool check_device(const char *op, loom_device dev) {
  if (dev.type == LOOM_CPU && dev.index == 0) return true;
  if (dev.type == LOOM_CUDA && dev.index >= 0) return true; /* existence checked on allocation */
  core_set_error(LOOM_ERR_INVALID, "%s: invalid device (type %d, index %d)", op, (int)dev.type, dev.index);
  return false;
}

static loom_tensor *handle_new(core_storage *st, loom_shape s, loom_dtype dt) {
  loom_tensor *t = calloc(1, sizeof *t);
  if (!t) {
    core_set_error(LOOM_ERR_OOM, "out of host memory allocating a tensor handle");
    return NULL;
  }
  t->magic = CORE_TENSOR_LIVE;
  t->storage = st;
  t->shape = s;
  t->dtype = dt;
  t->refcount = 1;
  core_contiguous_strides(s, t->strides);
  __atomic_add_fetch(&live_tensors, 1, __ATOMIC_RELAXED);
  return t;
}

loom_tensor *core_new(loom_shape s, loom_dtype dt, loom_device dev) {
  if (!check_shape("empty", s, dt) || !check_device("empty", dev)) return NULL;
  size_t nbytes = (size_t)loom_shape_numel(s) * loom_dtype_size(dt);
  core_storage *st = calloc(1, sizeof *st);
  if (!st) {
    core_set_error(LOOM_ERR_OOM, "out of host memory allocating a storage");
    return NULL;
  }
  st->data = core_alloc(dev, nbytes);
  if (!st->data) {
    free(st);
    return NULL;
  }
  st->nbytes = nbytes;
  st->device = dev;
  st->refcount = 1;
  loom_tensor *t = handle_new(st, s, dt);
  if (!t) {
    storage_release(st);
    return NULL;
  }
  return track(t);
}

loom_tensor *core_temp(loom_shape s, loom_dtype dt, loom_device dev) {
  loom_tensor *t = core_new(s, dt, dev);
  core_untrack(t);
  return t;
}

loom_tensor *core_view(const loom_tensor *t, loom_shape s, const int64_t *strides, int64_t offset) {
  __atomic_add_fetch(&t->storage->refcount, 1, __ATOMIC_RELAXED);
  loom_tensor *v = handle_new(t->storage, s, t->dtype);
  if (!v) {
    storage_release(t->storage);
    return NULL;
  }
  memcpy(v->strides, strides, sizeof(int64_t) * (size_t)s.ndim);
  v->offset = offset;
  return track(v);
}

loom_tensor *core_alias(const loom_tensor *t) { return core_view(t, t->shape, t->strides, t->offset); }

int core_norm_dim(const char *op, const loom_tensor *t, int dim, bool allow_end) {
  int nd = t->shape.ndim + (allow_end ? 1 : 0);
  int d = dim < 0 ? dim + nd : dim;
  if (d < 0 || d >= nd || (nd == 0)) {
    core_set_error(LOOM_ERR_INVALID, "%s: dim %d out of range for a %d-d tensor of shape %s", op, dim,
                   t->shape.ndim, loom_shape_str(t->shape));
    return -1;
  }
  return d;
}

bool core_check_same_device(const char *op, const loom_tensor *a, const loom_tensor *b) {
  if (loom_device_equal(a->storage->device, b->storage->device)) return true;
  core_set_error(LOOM_ERR_INVALID, "%s: expected tensors on the same device, got %s and %s", op,
                 loom_device_name(a->storage->device), loom_device_name(b->storage->device));
  return false;
}

/* ---- properties ---- */
loom_shape loom_shape_of(const loom_tensor *t) {
  loom_shape s = {0, {0}};
  return t ? t->shape : s;
}
int loom_ndim(const loom_tensor *t) { return t ? t->shape.ndim : -1; }
int64_t loom_size(const loom_tensor *t, int dim) {
  if (!t) return -1;
  int d = core_norm_dim("loom_size", t, dim, false);
  return d < 0 ? -1 : t->shape.d[d];
}
int64_t loom_stride(const loom_tensor *t, int dim) {
  if (!t) return -1;
  int d = core_norm_dim("loom_stride", t, dim, false);
  return d < 0 ? -1 : t->strides[d];
}
int64_t loom_numel(const loom_tensor *t) { return t ? core_numel(t) : -1; }
loom_dtype loom_dtype_of(const loom_tensor *t) { return t ? t->dtype : LOOM_DTYPE_COUNT; }
loom_device loom_device_of(const loom_tensor *t) {
  loom_device none = {LOOM_DEVICE_TYPE_COUNT, -1};
  return t ? t->storage->device : none;
}
bool loom_is_contiguous(const loom_tensor *t) { return t && core_is_contiguous(t); }
int64_t loom_storage_offset(const loom_tensor *t) { return t ? t->offset : -1; }
bool loom_shares_storage(const loom_tensor *a, const loom_tensor *b) {
  return a && b && a->storage == b->storage;
}
void *loom_data_ptr(const loom_tensor *t) { return t ? core_ptr(t) : NULL; }

int loom_set_data(loom_tensor *t, const loom_tensor *src) {
  if (!t || !src) return core_null_error("set_data: tensor is NULL");
  if (t->grad_fn)
    return core_set_error(LOOM_ERR_INVALID, "set_data: needs a leaf tensor, got the output of %s",
                          t->grad_fn->name);
  if (t->requires_grad && !loom_dtype_is_float(src->dtype))
    return core_set_error(LOOM_ERR_INVALID, "set_data: a tensor that requires grad cannot take %s data",
                          loom_dtype_name(src->dtype));
  __atomic_add_fetch(&src->storage->refcount, 1, __ATOMIC_RELAXED);
  storage_release(t->storage);
  t->storage = src->storage;
  t->shape = src->shape;
  memcpy(t->strides, src->strides, sizeof t->strides);
  t->offset = src->offset;
  t->dtype = src->dtype;
  return LOOM_OK;
}
