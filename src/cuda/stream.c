/* Streams and events. Each thread has its own current stream per device;
 * NULL means the legacy default stream. Each device also has one copy stream
 * for host <-> device transfers (see cuda_memcpy). Streams Loom creates are
 * non-blocking: they do not wait on the legacy default stream, so ordering
 * between streams is expressed with events. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime_api.h>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_util.h"

struct loom_stream {
  loom_device dev;
  cudaStream_t stream;
};

struct loom_event {
  loom_device dev;
  cudaEvent_t event;
};

static _Thread_local loom_stream *current[CUDA_MAX_DEVICES];
static _Atomic(cudaStream_t) copy_streams[CUDA_MAX_DEVICES];
static pthread_mutex_t copy_streams_lock = PTHREAD_MUTEX_INITIALIZER;

static loom_status check_cuda_device(const char *fn, loom_device dev) {
  if (dev.type != LOOM_CUDA)
    return core_set_error(LOOM_ERR_INVALID, "%s: streams and events exist only on CUDA devices (got %s)",
                          fn, loom_device_name(dev));
  loom_status st = cuda_check_device(dev.index);
  if (!st) st = cuda_set_device(dev.index);
  if (st) {
    char why[256];
    snprintf(why, sizeof why, "%s", loom_last_error());
    core_set_error(st, "%s: %s", fn, why);
  }
  return st;
}

void *cuda_current_stream(int index) {
  if (index < 0 || index >= CUDA_MAX_DEVICES || !current[index]) return NULL;
  return current[index]->stream;
}

void *cuda_copy_stream(int index) {
  if (index < 0 || index >= CUDA_MAX_DEVICES) {
    cuda_check_device(index);
    return NULL;
  }
  cudaStream_t s = atomic_load(&copy_streams[index]);
  if (s) return s;
  pthread_mutex_lock(&copy_streams_lock);
  s = atomic_load(&copy_streams[index]);
  if (!s) {
    cudaStream_t made = NULL;
    if (CUDA_CHECK(cudaStreamCreateWithFlags(&made, cudaStreamNonBlocking)) == LOOM_OK) {
      s = made;
      atomic_store(&copy_streams[index], s);
    }
  }
  pthread_mutex_unlock(&copy_streams_lock);
  return s;
}

loom_status cuda_upload_async(int index, void *dst, const void *src, size_t nbytes, loom_event *after,
                              loom_event *done) {
  loom_status st = cuda_check_device(index);
  if (!st) st = cuda_set_device(index);
  if (st) return st;
  if ((after && after->dev.index != index) || (done && done->dev.index != index))
    return core_set_error(LOOM_ERR_INVALID, "cuda_upload_async: an event belongs to cuda:%d, the copy to cuda:%d",
                          after && after->dev.index != index ? after->dev.index : done->dev.index, index);
  cudaStream_t copy = (cudaStream_t)cuda_copy_stream(index);
  if (!copy) return loom_last_status();
  if (after && (st = CUDA_CHECK(cudaStreamWaitEvent(copy, after->event, 0)))) return st;
  if (nbytes && (st = CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, copy)))) return st;
  return done ? CUDA_CHECK(cudaEventRecord(done->event, copy)) : LOOM_OK;
}

loom_stream *loom_current_stream(loom_device dev) {
  if (dev.type != LOOM_CUDA || dev.index < 0 || dev.index >= CUDA_MAX_DEVICES) return NULL;
  return current[dev.index];
}

void loom_set_current_stream(loom_device dev, loom_stream *s) {
  if (dev.type != LOOM_CUDA) {
    if (s) core_set_error(LOOM_ERR_INVALID, "loom_set_current_stream: %s has no streams", loom_device_name(dev));
    return;
  }
  if (dev.index < 0 || dev.index >= CUDA_MAX_DEVICES) {
    cuda_check_device(dev.index);
    return;
  }
  if (s && !loom_device_equal(s->dev, dev)) {
    char want[32];
    snprintf(want, sizeof want, "%s", loom_device_name(dev));
    core_set_error(LOOM_ERR_INVALID, "loom_set_current_stream: the stream belongs to %s, not %s",
                   loom_device_name(s->dev), want);
    return;
  }
  current[dev.index] = s;
}

loom_stream *loom_stream_create(loom_device dev) {
  if (check_cuda_device("loom_stream_create", dev)) return NULL;
  cudaStream_t cs;
  if (CUDA_CHECK(cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking))) return NULL;
  loom_stream *s = malloc(sizeof *s);
  if (!s) {
    cudaStreamDestroy(cs);
    core_set_error(LOOM_ERR_OOM, "loom_stream_create: out of host memory");
    return NULL;
  }
  s->dev = dev;
  s->stream = cs;
  return s;
}

/* Waits for the stream's work first: the device pool keys cached blocks by
 * stream handle, and a later stream may be given the same handle. */
void loom_stream_destroy(loom_stream *s) {
  if (!s) return;
  if (current[s->dev.index] == s) current[s->dev.index] = NULL;
  CUDA_CHECK(cudaStreamSynchronize(s->stream));
  CUDA_CHECK(cudaStreamDestroy(s->stream));
  free(s);
}

int loom_stream_synchronize(loom_stream *s) {
  if (s) return CUDA_CHECK(cudaStreamSynchronize(s->stream));
  if (cuda_device_count() == 0) return LOOM_OK; /* nothing can be pending */
  return CUDA_CHECK(cudaStreamSynchronize(NULL));
}

loom_event *loom_event_create(loom_device dev) {
  if (check_cuda_device("loom_event_create", dev)) return NULL;
  cudaEvent_t ce;
  if (CUDA_CHECK(cudaEventCreateWithFlags(&ce, cudaEventDefault))) return NULL;
  loom_event *e = malloc(sizeof *e);
  if (!e) {
    cudaEventDestroy(ce);
    core_set_error(LOOM_ERR_OOM, "loom_event_create: out of host memory");
    return NULL;
  }
  e->dev = dev;
  e->event = ce;
  return e;
}

void loom_event_destroy(loom_event *e) {
  if (!e) return;
  CUDA_CHECK(cudaEventDestroy(e->event));
  free(e);
}

/* s == NULL stands for the current stream of the event's device. */
static cudaStream_t stream_or_current(loom_stream *s, const loom_event *e) {
  return s ? s->stream : (cudaStream_t)cuda_current_stream(e->dev.index);
}

int loom_event_record(loom_event *e, loom_stream *s) {
  if (!e) return core_set_error(LOOM_ERR_INVALID, "loom_event_record: event is NULL");
  if (s && !loom_device_equal(s->dev, e->dev)) {
    char ev_dev[32];
    snprintf(ev_dev, sizeof ev_dev, "%s", loom_device_name(e->dev));
    return core_set_error(LOOM_ERR_INVALID, "loom_event_record: event on %s, stream on %s", ev_dev,
                          loom_device_name(s->dev));
  }
  loom_status st = cuda_set_device(e->dev.index);
  if (st) return st;
  return CUDA_CHECK(cudaEventRecord(e->event, stream_or_current(s, e)));
}

int loom_stream_wait_event(loom_stream *s, loom_event *e) {
  if (!e) return core_set_error(LOOM_ERR_INVALID, "loom_stream_wait_event: event is NULL");
  loom_status st = cuda_set_device(s ? s->dev.index : e->dev.index);
  if (st) return st;
  return CUDA_CHECK(cudaStreamWaitEvent(stream_or_current(s, e), e->event, 0));
}

int loom_event_synchronize(loom_event *e) {
  if (!e) return core_set_error(LOOM_ERR_INVALID, "loom_event_synchronize: event is NULL");
  return CUDA_CHECK(cudaEventSynchronize(e->event));
}

float loom_event_elapsed_ms(loom_event *start, loom_event *end) {
  if (!start || !end) {
    core_set_error(LOOM_ERR_INVALID, "loom_event_elapsed_ms: event is NULL");
    return NAN;
  }
  float ms = 0.0f;
  if (CUDA_CHECK(cudaEventElapsedTime(&ms, start->event, end->event))) return NAN;
  return ms;
}
