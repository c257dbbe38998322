/* Turning CUDA, cuBLAS, cuDNN and NCCL status codes into Loom errors that
 * name the call site. */
#include <string.h>

#include <cuda_runtime_api.h>
#include <cublas_api.h>
#include <cudnn.h>
#ifdef LOOM_WITH_NCCL
#include <nccl.h>
#endif

#include "cuda/cuda_util.h"

/* "…/src/cuda/allocator.c" -> "cuda/allocator.c" */
static const char *short_file(const char *file) {
  const char *s = strstr(file, "src/");
  return s ? s + 4 : file;
}

static loom_status fail(const char *call, const char *file, int line, const char *what) {
  int name_len = (int)strcspn(call, "(");
  return core_set_error(LOOM_ERR_DEVICE, "%s:%d: %.*s: %s", short_file(file), line, name_len,
                        call, what);
}

loom_status cuda_check_rt(int err, const char *call, const char *file, int line) {
  if (err == (int)cudaSuccess) return LOOM_OK;
  cudaGetLastError(); /* clear the non-sticky error so later launch checks do not see it */
  return fail(call, file, line, cudaGetErrorString((cudaError_t)err));
}

loom_status cuda_check_launch(const char *kernel, const char *file, int line) {
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return LOOM_OK;
  return core_set_error(LOOM_ERR_DEVICE, "%s:%d: %s kernel: %s", short_file(file), line, kernel,
                        cudaGetErrorString(err));
}

loom_status cuda_check_blas(int status, const char *call, const char *file, int line) {
  if (status == (int)CUBLAS_STATUS_SUCCESS) return LOOM_OK;
  return fail(call, file, line, cublasGetStatusString((cublasStatus_t)status));
}

loom_status cuda_check_dnn(int status, const char *call, const char *file, int line) {
  if (status == (int)CUDNN_STATUS_SUCCESS) return LOOM_OK;
  return fail(call, file, line, cudnnGetErrorString((cudnnStatus_t)status));
}

#ifdef LOOM_WITH_NCCL
loom_status cuda_check_nccl(int result, const char *call, const char *file, int line) {
  if (result == (int)ncclSuccess) return LOOM_OK;
  return fail(call, file, line, ncclGetErrorString((ncclResult_t)result));
}
#endif
