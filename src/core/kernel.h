/* The one kernel signature, the ops enum and the backend kernel tables.
 * Included by src/core, src/cpu and src/cuda (C and CUDA C++). */
#ifndef LOOM_CORE_KERNEL_H
#define LOOM_CORE_KERNEL_H

#include "loom/runtime.h"
#include "core/tensor_impl.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum core_op {
#define LOOM_OP(name, nin, nout, kind) CORE_OP_##name,
#include "core/ops.def"
#undef LOOM_OP
  CORE_OP_COUNT
} core_op;

typedef enum core_op_kind { CORE_KIND_CREATE, CORE_KIND_UNARY, CORE_KIND_BINARY, CORE_KIND_OTHER } core_op_kind;

typedef struct core_op_info { const char *name; int n_in, n_out; core_op_kind kind; } core_op_info;
extern const core_op_info core_ops[CORE_OP_COUNT];

/* Attributes. Their meaning per op (O, R, I: outer, reduced, inner sizes of a
 * contiguous tensor viewed as [O, R, I]):
 *   copy        in[0] and out[0] same shape, any strides each; out dtype may differ (cast)
 *   fill        f[0] = value; out[0] any strides
 *   arange      out[k] = f[0] + k * f[1]
 *   uniform     out = f[0] + u * (f[1] - f[0]); i[0] = seed, i[1] = Philox counter offset
 *   normal      out = f[0] + z * f[1]; i[0] = seed, i[1] = offset
 *   randint     out = i[2] + (x mod (i[3] - i[2])); i[0] = seed, i[1] = offset
 *   clamp       f[0] = lo, f[1] = hi (may be +-inf)
 *   UNARY/BINARY out[0] contiguous; in[k] has out's shape, any strides (0 = broadcast).
 *               Comparisons and logical ops write LOOM_BOOL; others out dtype = in dtype.
 *   where       in = (a, b, cond[bool]); like BINARY, key dtype = a's
 *   sum         in[0] contiguous [O, R, I] -> out[0] [O, I]; i[0..2] = O, R, I
 *   max, min    like sum; out[0] values, out[1] LOOM_I64 index in [0, R) (first of ties)
 *   logsumexp   like sum (float dtypes, R > 0): m + log(sum(exp(x - m))), m the max over R;
 *               NaN anywhere gives NaN, an infinite max gives the max
 *   index_select in[0] = x contiguous [O, D, I], in[1] = index I64 [K] (checked in range);
 *               out [O, K, I]; i[0..2] = O, D, I; i[3] = K
 *   gather      in[0] = x contiguous [O, D, I], in[1] = index I64 contiguous [O, K, I];
 *               out [O, K, I]; i[0..3] = O, D, I, K
 *   scatter_add in[0] = src contiguous [O, K, I], in[1] = index I64 [O, K, I];
 *               out[0] contiguous [O, D, I] already holds the base values and is
 *               accumulated into; i[0..3] = O, D, I, K
 *   one_hot     in[0] = index I64 contiguous [N]; out I64 [N, C]; i[0] = C
 *   matmul      out[b] = op(A[b]) @ op(B[b]); out contiguous [B, M, N];
 *               i[0] = transA, i[1] = transB (A stored [K, M] / B stored [N, K] when set),
 *               i[2] = B, i[3] = M, i[4] = N, i[5] = K,
 *               i[6] = batch stride of A, i[7] = batch stride of B (elements; 0 = broadcast);
 *               A and B are otherwise contiguous row-major matrices.
 * The Philox mapping shared by CPU and CUDA is in src/core/philox.h. */
typedef struct core_attrs {
  int64_t i[8];
  double f[4];
} core_attrs;

typedef struct core_kctx {
  core_op op;
  int n_in, n_out;
  loom_tensor *in[4];
  loom_tensor *out[2];
  core_attrs a;
  void *stream;              /* cudaStream_t on CUDA, NULL on the CPU */
} core_kctx;

/* Returns LOOM_OK, or sets the error (core_set_error) and returns its status. */
typedef loom_status (*core_kernel)(const core_kctx *k);

typedef struct core_backend {
  const char *name;
  core_kernel kernels[CORE_OP_COUNT][LOOM_DTYPE_COUNT];
} core_backend;

core_backend *core_backend_get(loom_device_type type);
void core_register(loom_device_type type, core_op op, loom_dtype dt, core_kernel fn);

/* Called once at start-up by the dispatcher. */
void cpu_register_kernels(void);
void cuda_register_kernels(void);  /* defined only when built with CUDA */

/* Runs k on the device of its first output (or first input when it has no
 * output), filling in k->stream. Missing kernels are a clear error. */
loom_status core_launch(core_kctx *k);

/* Fills contiguous t in place with op's Philox mapping (uniform: f0 = low,
 * f1 = high; normal: f0 = mean, f1 = std; randint: [lo, hi)), advancing the
 * generator of t's device. Defined in creation.c. */
int core_random_fill(loom_tensor *t, core_op op, double f0, double f1, int64_t lo, int64_t hi);

#ifdef __cplusplus
}
#endif
#endif
