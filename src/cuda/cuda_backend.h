/* What the core calls in the CUDA backend (C linkage). When Loom is built
 * without CUDA, src/nocuda/nocuda.c provides the same functions, reporting
 * that CUDA is absent. */
#ifndef LOOM_CUDA_BACKEND_H
#define LOOM_CUDA_BACKEND_H

#include <stddef.h>
#include "loom/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Visible devices; 0 (and no error) when the driver or GPU is missing. */
int cuda_device_count(void);
/* Checks that device `index` exists; records an error naming it otherwise. */
loom_status cuda_check_device(int index);
/* From the device's caching allocator, for `stream` (NULL = its current stream). */
void *cuda_alloc(int index, size_t nbytes);
void cuda_free(int index, void *p);
void cuda_pool_stats(int index, loom_memory_stats *out);
void cuda_pool_reset_peak(int index);
void cuda_pool_empty(int index);
void cuda_pool_set_limit(int index, size_t bytes);
/* Fills nbytes at p with byte value on the current stream. */
loom_status cuda_memset(int index, void *p, int value, size_t nbytes);
/* Copies between host and device or device and device, on the current stream;
 * returns after the copy when the destination is host memory. */
loom_status cuda_memcpy(void *dst, loom_device dst_dev, const void *src, loom_device src_dev, size_t nbytes);
/* The current stream of a device, as a cudaStream_t (NULL = legacy default). */
void *cuda_current_stream(int index);
/* Waits for all work on the device. */
loom_status cuda_synchronize(int index);
/* Appends lines "driver: ...", "CUDA runtime: ...", "cuBLAS: ...", "cuDNN: ...",
 * "NCCL: ..." (or "CUDA: not built") to buf. Returns bytes written. */
int cuda_versions(char *buf, size_t size);
/* Pinned host memory from its own pool. */
void *cuda_pinned_alloc(size_t nbytes);
void cuda_pinned_free(void *p);
/* Host -> device copy on the copy stream of device `index` that does NOT wait
 * for the current stream, so it overlaps with queued compute work: dst must be
 * device memory that no queued kernel uses (not a block the pool may hand out
 * again), src pinned memory left unchanged until `done` passes. The copy
 * first waits for `after` when given (an event of this device recorded
 * earlier, or never recorded), and records `done` when given. Callable from
 * any thread. */
loom_status cuda_upload_async(int index, void *dst, const void *src, size_t nbytes, loom_event *after,
                              loom_event *done);

/* Also implemented by the backend (declared in loom/runtime.h):
 * loom_cuda_device_info, loom_stream_*, loom_event_*, loom_current_stream,
 * loom_set_current_stream, loom_cuda_empty_cache. */

#ifdef __cplusplus
}
#endif
#endif
