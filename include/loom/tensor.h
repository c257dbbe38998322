/* Loom tensors: dtypes, devices, shapes, creation, views and lifetime. */
#ifndef LOOM_TENSOR_H
#define LOOM_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_MAX_DIMS 8

typedef enum loom_dtype {
  LOOM_F32 = 0, LOOM_F64, LOOM_F16, LOOM_BF16,
  LOOM_I32, LOOM_I64, LOOM_U8, LOOM_BOOL,
  LOOM_DTYPE_COUNT
} loom_dtype;

typedef enum loom_device_type { LOOM_CPU = 0, LOOM_CUDA = 1, LOOM_DEVICE_TYPE_COUNT } loom_device_type;

typedef struct loom_device { loom_device_type type; int index; } loom_device;

typedef struct loom_shape { int ndim; int64_t d[LOOM_MAX_DIMS]; } loom_shape;

/* LOOM_SHAPE(2, 3) -> a 2-d shape; LOOM_SHAPE() -> a 0-d (scalar) shape. */
#define LOOM__NARGS_(_0, _1, _2, _3, _4, _5, _6, _7, _8, N, ...) N
/* __VA_OPT__ counts zero arguments right in every mode of gcc, clang and nvcc
 * (strict -std=c11 / c++17 included), where the older ", ##__VA_ARGS__" does not. */
#define LOOM__NARGS(...) LOOM__NARGS_(_0 __VA_OPT__(, ) __VA_ARGS__, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#ifdef __cplusplus
#define LOOM_SHAPE(...) (loom_shape{LOOM__NARGS(__VA_ARGS__), {__VA_ARGS__}})
#else
#define LOOM_SHAPE(...) ((loom_shape){LOOM__NARGS(__VA_ARGS__), {__VA_ARGS__}})
#endif

typedef struct loom_tensor loom_tensor;

/* ---- dtypes and devices ---- */
const char *loom_dtype_name(loom_dtype dt);          /* "f32", "bf16", ... */
size_t loom_dtype_size(loom_dtype dt);               /* bytes per element */
bool loom_dtype_is_float(loom_dtype dt);
loom_dtype loom_promote_types(loom_dtype a, loom_dtype b);
loom_device loom_cpu(void);
loom_device loom_cuda(int index);
bool loom_device_equal(loom_device a, loom_device b);
/* Parses "cpu", "cuda", "cuda:1". Returns false (and sets the error) on bad text. */
bool loom_device_parse(const char *text, loom_device *out);
/* Writes "cpu" / "cuda:0" into a static thread-local buffer. */
const char *loom_device_name(loom_device dev);

/* ---- shapes ---- */
int64_t loom_shape_numel(loom_shape s);
bool loom_shape_equal(loom_shape a, loom_shape b);
/* Formats "[2, 3]" into a thread-local buffer (rotating, 4 slots). */
const char *loom_shape_str(loom_shape s);

/* ---- lifetime ----
 * Every function returning a new loom_tensor* gives the caller one reference.
 * Inside a scope, the scope holds that reference instead and drops it at
 * loom_scope_end unless the tensor was passed to loom_keep. */
loom_tensor *loom_retain(loom_tensor *t);
void loom_release(loom_tensor *t);
void loom_scope_begin(void);
void loom_scope_end(void);
/* Moves t out of the innermost scope to its parent (or to the caller when it
 * is the outermost). Returns t. */
loom_tensor *loom_keep(loom_tensor *t);
/* Number of live loom_tensor handles in this process (for leak tests). */
int64_t loom_live_tensors(void);

/* ---- properties ---- */
loom_shape loom_shape_of(const loom_tensor *t);
int loom_ndim(const loom_tensor *t);
int64_t loom_size(const loom_tensor *t, int dim);   /* negative dims count from the end */
int64_t loom_stride(const loom_tensor *t, int dim);
int64_t loom_numel(const loom_tensor *t);
loom_dtype loom_dtype_of(const loom_tensor *t);
loom_device loom_device_of(const loom_tensor *t);
bool loom_is_contiguous(const loom_tensor *t);
int64_t loom_storage_offset(const loom_tensor *t);
/* True when a and b view the same storage. */
bool loom_shares_storage(const loom_tensor *a, const loom_tensor *b);
/* Raw pointer to the first element (device memory for CUDA tensors). */
void *loom_data_ptr(const loom_tensor *t);

/* ---- creation ---- */
loom_tensor *loom_empty(loom_shape s, loom_dtype dt, loom_device dev);
loom_tensor *loom_zeros(loom_shape s, loom_dtype dt, loom_device dev);
loom_tensor *loom_ones(loom_shape s, loom_dtype dt, loom_device dev);
loom_tensor *loom_full(loom_shape s, double value, loom_dtype dt, loom_device dev);
loom_tensor *loom_zeros_like(const loom_tensor *t);
loom_tensor *loom_ones_like(const loom_tensor *t);
loom_tensor *loom_full_like(const loom_tensor *t, double value);
/* A 0-d tensor holding value, with the dtype and device of like. */
loom_tensor *loom_scalar_like(const loom_tensor *like, double value);
loom_tensor *loom_arange(double start, double end, double step, loom_dtype dt, loom_device dev);
loom_tensor *loom_linspace(double start, double end, int64_t steps, loom_dtype dt, loom_device dev);
loom_tensor *loom_eye(int64_t n, int64_t m, loom_dtype dt, loom_device dev);
/* Random tensors from the device's Philox generator (same numbers on CPU and CUDA). */
loom_tensor *loom_rand(loom_shape s, loom_dtype dt, loom_device dev);
loom_tensor *loom_randn(loom_shape s, loom_dtype dt, loom_device dev);
loom_tensor *loom_randint(int64_t low, int64_t high, loom_shape s, loom_dtype dt, loom_device dev);
/* Copies count = numel(s) elements of dtype dt from host memory. */
loom_tensor *loom_from_host(const void *data, loom_shape s, loom_dtype dt, loom_device dev);
/* Copies t's elements (in logical row-major order) to host memory of nbytes. */
int loom_to_host(const loom_tensor *t, void *dst, size_t nbytes);
/* Reads one element as double (any dtype, any device); index has ndim entries. */
double loom_item_at(const loom_tensor *t, const int64_t *index);
/* Value of a one-element tensor; NAN and an error otherwise. */
double loom_item(const loom_tensor *t);

/* ---- device and dtype moves ---- */
loom_tensor *loom_to(const loom_tensor *t, loom_device dev, loom_dtype dt);
loom_tensor *loom_to_device(const loom_tensor *t, loom_device dev);
loom_tensor *loom_to_dtype(const loom_tensor *t, loom_dtype dt);
loom_tensor *loom_clone(const loom_tensor *t);
loom_tensor *loom_contiguous(const loom_tensor *t);
/* dst[...] = src (broadcast to dst's shape, cast to dst's dtype, any devices).
 * Writes through views. Not recorded by autograd. Returns 0 or an error status. */
int loom_copy_(loom_tensor *dst, const loom_tensor *src);
int loom_fill_(loom_tensor *dst, double value);
/* Makes the leaf t view src's data (storage, shape, strides, dtype), keeping
 * t's identity, requires_grad, gradient and hook: PyTorch's `t.data = src`.
 * Modules use it to move parameters without changing their handles. */
int loom_set_data(loom_tensor *t, const loom_tensor *src);

/* ---- views (share storage) ---- */
loom_tensor *loom_view(const loom_tensor *t, loom_shape s);     /* needs compatible strides */
loom_tensor *loom_reshape(const loom_tensor *t, loom_shape s);  /* view when possible, else copy; one -1 allowed */
loom_tensor *loom_flatten(const loom_tensor *t, int start_dim, int end_dim);
loom_tensor *loom_squeeze(const loom_tensor *t, int dim);       /* no-op when size != 1 */
loom_tensor *loom_squeeze_all(const loom_tensor *t);
loom_tensor *loom_unsqueeze(const loom_tensor *t, int dim);
loom_tensor *loom_permute(const loom_tensor *t, const int *dims, int ndims);
loom_tensor *loom_transpose(const loom_tensor *t, int dim0, int dim1);
loom_tensor *loom_expand(const loom_tensor *t, loom_shape s);   /* -1 keeps a size */
loom_tensor *loom_narrow(const loom_tensor *t, int dim, int64_t start, int64_t length);
/* Python-style slice t[start:end:step] along dim; end is clamped. */
loom_tensor *loom_slice(const loom_tensor *t, int dim, int64_t start, int64_t end, int64_t step);
loom_tensor *loom_select(const loom_tensor *t, int dim, int64_t index);

/* ---- joins and splits ---- */
loom_tensor *loom_cat(loom_tensor *const *ts, int n, int dim);
loom_tensor *loom_stack(loom_tensor *const *ts, int n, int dim);
/* Fills out[] with views; returns the number of pieces or -1. */
int loom_split(const loom_tensor *t, int64_t split_size, int dim, loom_tensor **out, int max_out);
int loom_chunk(const loom_tensor *t, int chunks, int dim, loom_tensor **out, int max_out);
/* PyTorch's F.pad: pad[0..npad) pairs (before, after) from the last dim
 * backwards; negative amounts crop. mode NULL or "constant" fills with value
 * (truncated for integer dtypes) and pads up to every dim; "reflect",
 * "replicate" and "circular" take value 0 and pad 1 to 3 trailing dims of a
 * tensor with one or two dims more (a reflect pad must be smaller than its
 * dim; a circular pad at most the dim left after cropping). Always a new
 * tensor; differentiable. */
loom_tensor *loom_pad(const loom_tensor *x, const int64_t *pad, int npad, const char *mode, double value);

/* Prints a short description and (up to 6 per dim) values to stdout. */
void loom_print(const loom_tensor *t, const char *label);

#ifdef __cplusplus
}
#endif
#endif
