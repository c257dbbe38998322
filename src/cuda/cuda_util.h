/* Internal helpers shared by the CUDA backend's C and CUDA C++ files:
 * status checks that turn CUDA / cuBLAS / cuDNN / NCCL failures into Loom
 * errors naming the call site, device selection, and the entry points that
 * register.cu wires into the kernel table. */
#ifndef LOOM_CUDA_UTIL_H
#define LOOM_CUDA_UTIL_H

#include "core/kernel.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CUDA_MAX_DEVICES 64

/* Each returns LOOM_OK for success; otherwise records LOOM_ERR_DEVICE with
 * "file:line: call: error text" and returns it. `call` is the source text of
 * the call; only the function name is kept. */
loom_status cuda_check_rt(int err, const char *call, const char *file, int line);
loom_status cuda_check_blas(int status, const char *call, const char *file, int line);
loom_status cuda_check_dnn(int status, const char *call, const char *file, int line);
loom_status cuda_check_nccl(int result, const char *call, const char *file, int line);

#define CUDA_CHECK(call) cuda_check_rt((int)(call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(call) cuda_check_blas((int)(call), #call, __FILE__, __LINE__)
#define CUDNN_CHECK(call) cuda_check_dnn((int)(call), #call, __FILE__, __LINE__)
#define NCCL_CHECK(call) cuda_check_nccl((int)(call), #call, __FILE__, __LINE__)
/* After a kernel launch: reports a bad configuration or an earlier fault,
 * naming the kernel ("exp", "sum", ...). */
loom_status cuda_check_launch(const char *kernel, const char *file, int line);
#define CUDA_CHECK_LAUNCH(kernel) cuda_check_launch((kernel), __FILE__, __LINE__)

/* Makes device `index` current for this thread (checked). */
loom_status cuda_set_device(int index);
/* The PCI bus id of device `index` ("0000:3b:00.0") into buf; LOOM_OK or an
 * error (also in builds without CUDA: src/nocuda/nocuda.c). */
int cuda_pci_bus_id(int index, char *buf, int len);
/* Multiprocessors of device `index` (cached; 1 when unknown). */
int cuda_sm_count(int index);
/* Compute capability major of device `index` (cached; 0 when unknown). */
int cuda_cc_major(int index);
/* The copy stream of device `index` (a cudaStream_t), created on first use,
 * non-blocking; the device must be current. NULL + error on failure. */
void *cuda_copy_stream(int index);

/* The calling thread's cuDNN handle for device dev (current), bound to
 * stream; *out is a cudnnHandle_t. cudnn_handle.c */
loom_status cuda_cudnn_handle(int dev, void *stream, void **out);

/* matmul.c */
loom_status cuda_matmul(const core_kctx *k);

#ifdef __cplusplus
}
#endif
#endif
