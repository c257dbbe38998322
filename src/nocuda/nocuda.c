/* The CUDA backend's functions for builds without CUDA: no devices, and a
 * clear error from everything that would need one. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/tensor_impl.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_util.h"

static loom_status not_built(const char *what) {
  return core_set_error(LOOM_ERR_DEVICE, "%s: Loom was built without CUDA", what);
}

int cuda_device_count(void) { return 0; }

loom_status cuda_check_device(int index) {
  return core_set_error(LOOM_ERR_DEVICE, "cuda:%d: Loom was built without CUDA", index);
}

void *cuda_alloc(int index, size_t nbytes) {
  cuda_check_device(index);
  return NULL;
}

void cuda_free(int index, void *p) {}

void cuda_pool_stats(int index, loom_memory_stats *out) { memset(out, 0, sizeof *out); }
void cuda_pool_reset_peak(int index) {}
void cuda_pool_empty(int index) {}
void cuda_pool_set_limit(int index, size_t bytes) {}

loom_status cuda_memset(int index, void *p, int value, size_t nbytes) { return cuda_check_device(index); }

loom_status cuda_memcpy(void *dst, loom_device dst_dev, const void *src, loom_device src_dev, size_t nbytes) {
  return not_built("memcpy to or from a CUDA device");
}

void *cuda_current_stream(int index) { return NULL; }

loom_status cuda_synchronize(int index) { return cuda_check_device(index); }

int cuda_pci_bus_id(int index, char *buf, int len) { return cuda_check_device(index); }

int cuda_versions(char *buf, size_t size) {
  if (!buf || size == 0) return 0;
  int n = snprintf(buf, size, "CUDA: not built\n");
  return n < 0 ? 0 : (size_t)n < size ? n : (int)size - 1;
}

void *cuda_pinned_alloc(size_t nbytes) {
  not_built("pinned host memory");
  return NULL;
}

void cuda_pinned_free(void *p) {}

loom_status cuda_upload_async(int index, void *dst, const void *src, size_t nbytes, loom_event *after,
                              loom_event *done) {
  return cuda_check_device(index);
}

/* ---- public functions of loom/runtime.h ---- */

int loom_cuda_device_info(int index, loom_device_info *out) { return cuda_check_device(index); }

void loom_cuda_empty_cache(void) {}

loom_stream *loom_stream_create(loom_device dev) {
  not_built("loom_stream_create");
  return NULL;
}

void loom_stream_destroy(loom_stream *s) {}

loom_stream *loom_current_stream(loom_device dev) { return NULL; }

void loom_set_current_stream(loom_device dev, loom_stream *s) {
  if (s || dev.type == LOOM_CUDA) not_built("loom_set_current_stream");
}

/* NULL is the default stream, on which nothing can be pending. */
int loom_stream_synchronize(loom_stream *s) { return s ? not_built("loom_stream_synchronize") : LOOM_OK; }

loom_event *loom_event_create(loom_device dev) {
  not_built("loom_event_create");
  return NULL;
}

void loom_event_destroy(loom_event *e) {}

int loom_event_record(loom_event *e, loom_stream *s) { return not_built("loom_event_record"); }

int loom_stream_wait_event(loom_stream *s, loom_event *e) { return not_built("loom_stream_wait_event"); }

int loom_event_synchronize(loom_event *e) { return not_built("loom_event_synchronize"); }

float loom_event_elapsed_ms(loom_event *start, loom_event *end) {
  not_built("loom_event_elapsed_ms");
  return NAN;
}
