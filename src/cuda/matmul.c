/* matmul through cuBLAS: out[b] = op(A[b]) @ op(B[b]), row-major.
 * cuBLAS is column-major, so it computes out^T = op(B)^T op(A)^T: the
 * row-major buffers read as column-major are already the transposes.
 * f32 uses TF32 tensor cores only when loom_tf32() is on; f16 / bf16
 * accumulate in f32, split-K reductions included. One handle per thread and
 * device, made on first use; the workspace comes from the device's pool on
 * every call. */
#include <limits.h>
#include <stdint.h>

#include <cublas_v2.h>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_util.h"

static _Thread_local cublasHandle_t handles[CUDA_MAX_DEVICES];

static loom_status get_handle(int dev, cublasHandle_t *out) {
  if (!handles[dev]) {
    cublasHandle_t h = NULL;
    loom_status st = CUBLAS_CHECK(cublasCreate(&h));
    if (!st) st = CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION));
    if (st) {
      if (h) cublasDestroy(h);
      return st;
    }
    handles[dev] = h;
  }
  *out = handles[dev];
  return LOOM_OK;
}

typedef struct gemm_types {
  cudaDataType_t data;
  cublasComputeType_t compute;
  bool double_scale;
} gemm_types;

static bool types_for(loom_dtype dt, gemm_types *t) {
  switch (dt) {
    case LOOM_F32:
      *t = (gemm_types){CUDA_R_32F, loom_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F_PEDANTIC, false};
      return true;
    case LOOM_F64: *t = (gemm_types){CUDA_R_64F, CUBLAS_COMPUTE_64F, true}; return true;
    case LOOM_F16: *t = (gemm_types){CUDA_R_16F, CUBLAS_COMPUTE_32F, false}; return true;
    case LOOM_BF16: *t = (gemm_types){CUDA_R_16BF, CUBLAS_COMPUTE_32F, false}; return true;
    default: return false;
  }
}

static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

loom_status cuda_matmul(const core_kctx *k) {
  const loom_tensor *a = k->in[0], *b = k->in[1], *c = k->out[0];
  const int64_t *i = k->a.i;
  const bool ta = i[0] != 0, tb = i[1] != 0;
  const int64_t batch = i[2], M = i[3], N = i[4], K = i[5], sa = i[6], sb = i[7];
  gemm_types t;
  if (a->dtype != b->dtype || a->dtype != c->dtype || !types_for(a->dtype, &t))
    return core_set_error(LOOM_ERR_UNSUPPORTED, "matmul: CUDA supports f32, f64, f16 and bf16 (got %s @ %s -> %s)",
                          loom_dtype_name(a->dtype), loom_dtype_name(b->dtype), loom_dtype_name(c->dtype));
  if (!fits_int(batch) || !fits_int(M) || !fits_int(N) || !fits_int(K) || sa < 0 || sb < 0)
    return core_set_error(LOOM_ERR_UNSUPPORTED,
                          "matmul: sizes B, M, N, K = %lld, %lld, %lld, %lld exceed what cuBLAS takes",
                          (long long)batch, (long long)M, (long long)N, (long long)K);
  if (core_numel(c) != batch * M * N || !core_is_contiguous(c))
    return core_set_error(LOOM_ERR_INVALID, "matmul: output %s is not a contiguous [%lld, %lld, %lld]",
                          loom_shape_str(c->shape), (long long)batch, (long long)M, (long long)N);
  if (batch * M * N == 0) return LOOM_OK;

  const int dev = c->storage->device.index;
  loom_status st = cuda_set_device(dev);
  if (st) return st;
  cudaStream_t stream = (cudaStream_t)k->stream;
  if (K == 0)
    return CUDA_CHECK(cudaMemsetAsync(core_ptr(c), 0, (size_t)(batch * M * N) * loom_dtype_size(c->dtype), stream));

  cublasHandle_t h;
  if ((st = get_handle(dev, &h))) return st;
  /* cuBLAS wants a 256-byte aligned workspace; 32 MiB lets Hopper use all its kernels. */
  const size_t ws_size = cuda_cc_major(dev) >= 9 ? (32u << 20) : (4u << 20);
  void *ws_block = cuda_alloc(dev, ws_size + 256);
  if (!ws_block) return loom_last_status();
  void *ws = (void *)(((uintptr_t)ws_block + 255) & ~(uintptr_t)255);

  const float alpha_f = 1.0f, beta_f = 0.0f;
  const double alpha_d = 1.0, beta_d = 0.0;
  const void *alpha = t.double_scale ? (const void *)&alpha_d : (const void *)&alpha_f;
  const void *beta = t.double_scale ? (const void *)&beta_d : (const void *)&beta_f;
  if (!(st = CUBLAS_CHECK(cublasSetStream(h, stream))) &&
      !(st = CUBLAS_CHECK(cublasSetWorkspace(h, ws, ws_size))))
    st = CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M, (int)K, alpha,
        core_ptr(b), t.data, tb ? (int)K : (int)N, sb, core_ptr(a), t.data, ta ? (int)M : (int)K, sa, beta,
        core_ptr(c), t.data, (int)N, M * N, (int)batch, t.compute, CUBLAS_GEMM_DEFAULT));
  cuda_free(dev, ws_block); /* stream-ordered: reused only by later work on this stream */
  return st;
}
