/* The batch loader: epoch order (shuffle, rank shard), per-sample transforms,
 * a worker thread that fills a ring of host staging slots ahead of the
 * consumer, and the copy to the target device.
 *
 * To a GPU, each slot also owns a device buffer. Once the worker has filled
 * the slot's pinned memory it starts the upload on the device's copy stream,
 * which does not wait for the compute stream, so batch b+1 crosses the bus
 * while batch b trains. next() makes the caller's stream wait for the upload
 * and copies device to device into a fresh tensor from the pool (the tensor
 * lives as long as the caller wants; the slot's buffer is reused). Events:
 * `uploaded` (copy stream: the pinned memory may be refilled, the buffer
 * read) and `consumed` (compute stream: the buffer may be overwritten).
 *
 * Batches are a pure function of (seed, epoch, batch index): the worker only
 * decides *when* a batch is built, never what is in it. That is what makes
 * prefetch and no prefetch agree, and seek() exact. */
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/dist.h"
#include "cuda/cuda_backend.h"
#include "data/data_impl.h"

enum { SLOT_FREE, SLOT_READY };

typedef struct slot {
  void *x, *y;              /* staging: one batch of samples / labels */
  int64_t batch, count;     /* batch index held, samples in it */
  int state;
  loom_status status;       /* error met while filling (worker thread) */
  char msg[1024];
  void *dx, *dy;            /* CUDA: the slot's device buffers */
  loom_event *uploaded, *consumed;
  bool upload_pending;      /* uploaded recorded and not yet waited for by fill() */
} slot;

struct loom_loader {
  loom_dataset *ds;
  loom_loader_opts o;
  float *mean, *std;                 /* copies of the transform's arrays */
  loom_shape xshape, yshape;         /* per sample, after transforms */
  size_t xbytes, ybytes, raw_bytes;  /* per sample; raw = before transforms */
  int64_t per_rank, nbatches;
  int64_t *order;                    /* this epoch's dataset indices (per_rank) */
  int64_t epoch, next_batch;         /* consumer position */
  bool cuda, pinned, transform;
  void *scratch;                     /* one raw sample (used by the one producer) */
  int nslots;
  slot *slots;
  /* worker thread; mu guards slot states, produce and stop */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t thread;
  bool running, stop;
  int64_t produce;                   /* next batch the worker fills */
};

/* Sample k of batch b into slot s; runs on any of the fill threads. */
static loom_status fill_one(loom_loader *l, slot *s, int64_t b, int64_t k, void *scratch) {
  int64_t i = l->order[b * l->o.batch_size + k];
  char *x = (char *)s->x + k * l->xbytes, *y = (char *)s->y + k * l->ybytes;
  loom_status st = l->ds->kind->get(l->ds->state, i, l->transform ? scratch : x, y);
  if (!st && l->transform)
    st = loom_transform_apply(&l->o.transform, l->o.seed, l->epoch, i, scratch, l->ds->sample_shape, (float *)x);
  return st;
}

static void record_failure(loom_loader *l, slot *s, int64_t b, loom_status st) {
  s->status = st ? st : LOOM_ERR_INTERNAL;
  snprintf(s->msg, sizeof s->msg, "loader (%s, epoch %lld, batch %lld): %s", l->ds->kind->name, (long long)l->epoch,
           (long long)b, *loom_last_error() ? loom_last_error() : loom_status_name(s->status));
}

/* Fills slot s with batch b. Runs on the worker (or in next() without
 * prefetch); with workers > 1 the samples are shared among OpenMP threads. */
static void fill(loom_loader *l, slot *s, int64_t b) {
  loom_clear_error();
  s->status = LOOM_OK;
  s->batch = b;
  s->count = 0;
  /* The previous upload out of this slot may still be reading it. */
  if (s->upload_pending) {
    loom_status st = loom_event_synchronize(s->uploaded);
    if (st) {
      record_failure(l, s, b, st);
      return;
    }
    s->upload_pending = false;
  }
  int64_t count = l->per_rank - b * l->o.batch_size;
  if (count > l->o.batch_size) count = l->o.batch_size;
  int threads = l->o.workers > 1 && count > 1 ? l->o.workers : 1;
  if (threads == 1) {
    for (int64_t k = 0; k < count; k++) {
      loom_status st = fill_one(l, s, b, k, l->scratch);
      if (st) {
        record_failure(l, s, b, st);
        return;
      }
    }
  } else {
    int failed = 0;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t k = 0; k < count; k++) {
      int t = omp_get_thread_num();
      int done;
#pragma omp atomic read
      done = failed;
      if (done) continue;
      loom_clear_error();
      loom_status st = fill_one(l, s, b, k, (char *)l->scratch + (size_t)t * l->raw_bytes);
      if (st) {
#pragma omp critical(loom_loader_fill)
        if (!failed) {   /* the first failure, message from this thread's error slot */
          record_failure(l, s, b, st);
#pragma omp atomic write
          failed = 1;
        }
      }
    }
    if (failed) return;
  }
  if (l->cuda) {
    /* The device buffer is free once the caller's stream has copied the
     * previous batch out of it (consumed). */
    int dev = l->o.device.index;
    loom_status st = cuda_upload_async(dev, s->dx, s->x, (size_t)count * l->xbytes, s->consumed, NULL);
    if (!st) st = cuda_upload_async(dev, s->dy, s->y, (size_t)count * l->ybytes, NULL, s->uploaded);
    if (st) {
      record_failure(l, s, b, st);
      return;
    }
    s->upload_pending = true;
  }
  s->count = count;
}

static void *worker(void *arg) {
  loom_loader *l = arg;
  pthread_mutex_lock(&l->mu);
  while (!l->stop && l->produce < l->nbatches) {
    int64_t b = l->produce;
    slot *s = &l->slots[b % l->nslots];
    if (s->state != SLOT_FREE) {
      pthread_cond_wait(&l->cv, &l->mu);
      continue;
    }
    pthread_mutex_unlock(&l->mu);
    fill(l, s, b);
    pthread_mutex_lock(&l->mu);
    s->state = SLOT_READY;
    l->produce++;
    pthread_cond_broadcast(&l->cv);
    if (s->status) break;   /* the consumer reports it; nothing after it is wanted */
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

static void stop_worker(loom_loader *l) {
  if (!l->running) return;
  pthread_mutex_lock(&l->mu);
  l->stop = true;
  pthread_cond_broadcast(&l->cv);
  pthread_mutex_unlock(&l->mu);
  pthread_join(l->thread, NULL);
  l->running = l->stop = false;
}

/* Stops the worker, moves to (epoch, batch) and restarts it. */
static int restart(loom_loader *l, int64_t epoch, int64_t batch) {
  stop_worker(l);
  for (int k = 0; k < l->nslots; k++) l->slots[k].state = SLOT_FREE;
  loom_status st = data_shard_indices(l->ds->length, l->o.shuffle, l->o.seed, epoch, l->o.rank, l->o.world_size,
                                      l->order);
  l->epoch = epoch;
  l->next_batch = l->produce = batch;
  if (st) {
    l->next_batch = l->nbatches;   /* nothing sensible to return */
    return st;
  }
  if (l->o.no_prefetch || batch >= l->nbatches) return LOOM_OK;
  if (pthread_create(&l->thread, NULL, worker, l))
    return core_set_error(LOOM_ERR_INTERNAL, "loader: could not start the prefetch thread");
  l->running = true;
  return LOOM_OK;
}

static loom_status check_opts(const loom_dataset *ds, const loom_loader_opts *o) {
  if (o->batch_size < 1)
    return core_set_error(LOOM_ERR_INVALID, "loader: batch_size must be >= 1, got %lld", (long long)o->batch_size);
  if (o->world_size < 1 || o->rank < 0 || o->rank >= o->world_size)
    return core_set_error(LOOM_ERR_INVALID, "loader: need 0 <= rank < world_size, got rank %d, world_size %d",
                          o->rank, o->world_size);
  if (o->prefetch < 0 || o->prefetch > 64)
    return core_set_error(LOOM_ERR_INVALID, "loader: prefetch must be 0..64 batches, got %d", o->prefetch);
  if (o->workers < 0 || o->workers > 256)
    return core_set_error(LOOM_ERR_INVALID, "loader: workers must be 0..256 threads, got %d", o->workers);
  if (o->device.type == LOOM_CUDA) {
    if (cuda_check_device(o->device.index))
      return core_set_error(LOOM_ERR_DEVICE, "loader: target device %s is not available: %s",
                            loom_device_name(o->device), loom_last_error());
  } else if (o->device.type != LOOM_CPU) {
    return core_set_error(LOOM_ERR_INVALID, "loader: unknown device type %d", (int)o->device.type);
  }
  if (ds->length > 0 && (uint64_t)o->batch_size > SIZE_MAX / (data_sample_bytes(ds) + data_label_bytes(ds) + 1))
    return core_set_error(LOOM_ERR_INVALID, "loader: batch_size %lld is too large", (long long)o->batch_size);
  return LOOM_OK;
}

static void *stage_alloc(loom_loader *l, size_t nbytes) {
  if (nbytes == 0) nbytes = 1;
  return l->pinned ? cuda_pinned_alloc(nbytes) : malloc(nbytes);
}

static void stage_free(loom_loader *l, void *p) {
  if (!p) return;
  if (l->pinned) cuda_pinned_free(p);
  else free(p);
}

void loom_loader_free(loom_loader *l) {
  if (!l) return;
  stop_worker(l);
  for (int k = 0; l->slots && k < l->nslots; k++) {
    slot *s = &l->slots[k];
    /* Memory goes back to its pools only after the GPU is done with it. */
    if (s->uploaded) loom_event_synchronize(s->uploaded);
    if (s->consumed) loom_event_synchronize(s->consumed);
    loom_event_destroy(s->uploaded);
    loom_event_destroy(s->consumed);
    if (s->dx) cuda_free(l->o.device.index, s->dx);
    if (s->dy) cuda_free(l->o.device.index, s->dy);
    stage_free(l, s->x);
    stage_free(l, s->y);
  }
  free(l->slots);
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->cv);
  free(l->order);
  free(l->scratch);
  free(l->mean);
  free(l->std);
  loom_dataset_free(l->ds);
  free(l);
}

static float *copy_floats(const float *v, int n) {
  float *c = malloc((size_t)n * sizeof *c);
  if (c) memcpy(c, v, (size_t)n * sizeof *c);
  return c;
}

loom_loader *loom_loader_new(loom_dataset *ds, const loom_loader_opts *opts) {
  if (!ds) {
    core_null_error("loom_loader_new: dataset is NULL");
    return NULL;
  }
  loom_loader_opts o = opts ? *opts : (loom_loader_opts){.batch_size = 1};
  if (o.world_size == 0) { /* the process group's place (rank 0 of 1 without one) */
    if (o.rank != 0) {
      core_set_error(LOOM_ERR_INVALID, "loom_loader_new: rank %d given without a world_size", o.rank);
      return NULL;
    }
    o.world_size = loom_dist_world_size();
    o.rank = loom_dist_rank();
  }
  loom_shape xshape;
  loom_clear_error();   /* an allocation failure below is told apart by the status */
  if (check_opts(ds, &o) ||
      data_transform_check(&o.transform, ds->sample_shape, ds->sample_dtype, &xshape))
    return NULL;
  loom_loader *l = calloc(1, sizeof *l);
  if (!l) {
    core_set_error(LOOM_ERR_OOM, "loader: out of host memory");
    return NULL;
  }
  atomic_fetch_add(&ds->refcount, 1);
  l->ds = ds;
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->cv, NULL);
  l->o = o;
  l->transform = data_transform_active(&o.transform);
  if (l->transform && o.transform.norm_channels > 0) {
    l->mean = copy_floats(o.transform.mean, o.transform.norm_channels);
    l->std = copy_floats(o.transform.std, o.transform.norm_channels);
    l->o.transform.mean = l->mean;
    l->o.transform.std = l->std;
  }
  l->xshape = xshape;
  l->yshape = ds->label_shape;
  l->xbytes = (size_t)loom_shape_numel(xshape) * loom_dtype_size(ds->sample_dtype);
  l->ybytes = data_label_bytes(ds);
  l->raw_bytes = data_sample_bytes(ds);
  l->per_rank = (ds->length + o.world_size - 1) / o.world_size;
  l->nbatches = o.drop_last ? l->per_rank / o.batch_size : (l->per_rank + o.batch_size - 1) / o.batch_size;
  l->cuda = l->pinned = o.device.type == LOOM_CUDA;
  l->nslots = o.no_prefetch ? 1 : o.prefetch ? o.prefetch : 2;
  int64_t per_batch = l->per_rank < o.batch_size ? l->per_rank : o.batch_size;
  l->order = malloc((size_t)(l->per_rank ? l->per_rank : 1) * sizeof *l->order);
  l->scratch = malloc((l->raw_bytes ? l->raw_bytes : 1) * (size_t)(o.workers > 1 ? o.workers : 1));
  l->slots = calloc((size_t)l->nslots, sizeof *l->slots);
  bool ok = l->order && l->scratch && l->slots && (!l->transform || o.transform.norm_channels == 0 || (l->mean && l->std));
  for (int k = 0; ok && k < l->nslots; k++) {
    slot *s = &l->slots[k];
    s->x = stage_alloc(l, (size_t)per_batch * l->xbytes);
    s->y = stage_alloc(l, (size_t)per_batch * l->ybytes);
    ok = s->x && s->y;
    if (ok && l->cuda) {
      s->dx = cuda_alloc(o.device.index, (size_t)per_batch * l->xbytes + 1);
      s->dy = cuda_alloc(o.device.index, (size_t)per_batch * l->ybytes + 1);
      s->uploaded = s->dx && s->dy ? loom_event_create(o.device) : NULL;
      s->consumed = s->uploaded ? loom_event_create(o.device) : NULL;
      if (!s->consumed) {   /* the pool or the event said why */
        char why[768];
        snprintf(why, sizeof why, "%s", loom_last_error());
        loom_status st = loom_last_status() ? loom_last_status() : LOOM_ERR_OOM;
        loom_loader_free(l);
        core_set_error(st, "loader: no device staging for %lld samples on %s: %s", (long long)per_batch,
                       loom_device_name(o.device), why);
        return NULL;
      }
    }
  }
  if (!ok) {
    if (loom_last_status() != LOOM_OK) {   /* the pinned pool said why */
      char why[512];
      snprintf(why, sizeof why, "%s", loom_last_error());
      core_set_error(LOOM_ERR_OOM, "loader: no %s staging memory for %d batches of %lld samples: %s",
                     l->pinned ? "pinned" : "host", l->nslots, (long long)per_batch, why);
    } else {
      core_set_error(LOOM_ERR_OOM, "loader: out of host memory for %d staging batches of %lld samples", l->nslots,
                     (long long)per_batch);
    }
    loom_status st = loom_last_status();
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", loom_last_error());
    loom_loader_free(l);
    core_set_error(st, "%s", msg);
    return NULL;
  }
  if (restart(l, 0, 0)) {
    loom_loader_free(l);
    return NULL;
  }
  return l;
}

bool loom_loader_next(loom_loader *l, loom_tensor **x, loom_tensor **y) {
  if (x) *x = NULL;
  if (y) *y = NULL;
  if (!l || !x || !y) {
    core_set_error(LOOM_ERR_INVALID, "loom_loader_next: %s is NULL", !l ? "loader" : "an output pointer");
    return false;
  }
  if (l->next_batch >= l->nbatches) {
    loom_clear_error();   /* the end of the epoch is not a failure */
    return false;
  }
  int64_t b = l->next_batch;
  slot *s = &l->slots[b % l->nslots];
  if (l->running) {
    pthread_mutex_lock(&l->mu);
    while (!(s->state == SLOT_READY && s->batch == b)) pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
  } else {
    fill(l, s, b);
  }
  if (s->status) {   /* from the worker's thread: re-raise on this one */
    core_set_error(s->status, "%s", s->msg);
    return false;
  }
  loom_shape xs = {l->xshape.ndim + 1, {s->count}}, ys = {l->yshape.ndim + 1, {s->count}};
  for (int k = 0; k < l->xshape.ndim; k++) xs.d[k + 1] = l->xshape.d[k];
  for (int k = 0; k < l->yshape.ndim; k++) ys.d[k + 1] = l->yshape.d[k];
  loom_scope_begin();   /* on failure the tensors made here go with it */
  loom_tensor *bx, *by;
  loom_status st;
  if (l->cuda) {
    /* The upload is on the copy stream: the caller's stream waits for it,
     * copies the batch out of the slot's buffers and marks them consumed. */
    loom_device dev = l->o.device;
    st = loom_stream_wait_event(NULL, s->uploaded);
    bx = st ? NULL : loom_empty(xs, l->ds->sample_dtype, dev);
    by = bx ? loom_empty(ys, l->ds->label_dtype, dev) : NULL;
    st = by ? LOOM_OK : loom_last_status() ? loom_last_status() : LOOM_ERR_INTERNAL;
    if (!st) st = cuda_memcpy(loom_data_ptr(bx), dev, s->dx, dev, (size_t)s->count * l->xbytes);
    if (!st) st = cuda_memcpy(loom_data_ptr(by), dev, s->dy, dev, (size_t)s->count * l->ybytes);
    if (!st) st = loom_event_record(s->consumed, NULL);
  } else {
    bx = loom_from_host(s->x, xs, l->ds->sample_dtype, l->o.device);
    by = bx ? loom_from_host(s->y, ys, l->ds->label_dtype, l->o.device) : NULL;
    st = by ? LOOM_OK : loom_last_status();
  }
  if (!st) {
    loom_keep(bx);
    loom_keep(by);
  }
  loom_scope_end();
  if (st) {
    if (l->cuda) loom_synchronize(l->o.device);   /* nothing in flight may still read the slot */
    return false;
  }
  pthread_mutex_lock(&l->mu);
  s->state = SLOT_FREE;
  pthread_cond_broadcast(&l->cv);
  pthread_mutex_unlock(&l->mu);
  l->next_batch++;
  *x = bx;
  *y = by;
  return true;
}

int loom_loader_start_epoch(loom_loader *l, int64_t epoch) {
  if (!l) return core_set_error(LOOM_ERR_INVALID, "loom_loader_start_epoch: loader is NULL");
  if (epoch < 0) return core_set_error(LOOM_ERR_INVALID, "loader: epoch must be >= 0, got %lld", (long long)epoch);
  /* Already there and untouched: keep what the worker has prepared. */
  if (epoch == l->epoch && l->next_batch == 0 && (l->running || l->o.no_prefetch)) return LOOM_OK;
  return restart(l, epoch, 0);
}

int loom_loader_seek(loom_loader *l, loom_loader_pos pos) {
  if (!l) return core_set_error(LOOM_ERR_INVALID, "loom_loader_seek: loader is NULL");
  if (pos.epoch < 0 || pos.batch < 0 || pos.batch > l->nbatches)
    return core_set_error(LOOM_ERR_INVALID, "loader: cannot seek to epoch %lld, batch %lld (an epoch has %lld batches)",
                          (long long)pos.epoch, (long long)pos.batch, (long long)l->nbatches);
  return restart(l, pos.epoch, pos.batch);
}

loom_loader_pos loom_loader_position(const loom_loader *l) {
  return l ? (loom_loader_pos){l->epoch, l->next_batch} : (loom_loader_pos){0, 0};
}

int64_t loom_loader_num_batches(const loom_loader *l) { return l ? l->nbatches : 0; }
int64_t loom_loader_num_samples(const loom_loader *l) { return l ? l->per_rank : 0; }

loom_loader_shape loom_loader_work_shape(const loom_loader *l) {
  loom_loader_shape s = {0, 0, 0};
  if (l) s = (loom_loader_shape){l->o.batch_size, l->ds->length, l->o.world_size > 0 ? l->o.world_size : 1};
  return s;
}
