/* The NCCL backend for CUDA tensors. Each collective runs on this process's
 * communication stream: it waits (by an event) for the compute stream's work
 * so far, and the compute stream waits for its "done" event only in
 * loom_dist_wait, so backward keeps computing while a bucket's all-reduce
 * runs and no wait blocks the host (except a barrier's, which promises it).
 * A watchdog thread marks works done as their events pass, and enforces the
 * timeout: a work older than it (or an NCCL error) aborts the communicator
 * and ends the process, so every other rank's NCCL fails too. */
#define _POSIX_C_SOURCE 200809L   /* nanosleep */
#include "dist/dist_impl.h"

#ifdef LOOM_WITH_NCCL
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>
#include <nccl.h>
#ifdef LOOM_WITH_MPI
#include <mpi.h>
#endif

#include "cuda/cuda_backend.h"
#include "cuda/cuda_util.h"

/* NCCL failures are the process group's (LOOM_ERR_COMM), not the device's. */
static loom_status as_comm(loom_status st) {
  if (!st) return LOOM_OK;
  char msg[512];
  snprintf(msg, sizeof msg, "%s", loom_last_error());
  return core_set_error(LOOM_ERR_COMM, "%s", msg);
}
#define NCCL_COMM_CHECK(call) as_comm(NCCL_CHECK(call))

/* One collective in flight. Its work item is freed when loom_dist_wait
 * returns, which may be before the GPU has finished it, so from then on w
 * points at snap, a copy that still names it in a timeout message. */
typedef struct nccl_rec {
  loom_dist_work *w;
  loom_dist_work snap;
  cudaEvent_t queued, done;   /* the compute stream's work before it; the collective's end */
  bool issued;                /* done is recorded (an unrecorded event would read as passed) */
  struct nccl_rec *next;
} nccl_rec;

static ncclComm_t comm;
static cudaStream_t comm_stream;
static int dev_index;
static int *barrier_buf;     /* one int on the device, what a barrier all-reduces */
static bool we_initialized_mpi;

static pthread_t watchdog;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;        /* guards everything below and each rec */
static pthread_mutex_t issue_mu = PTHREAD_MUTEX_INITIALIZER;  /* a communicator takes one caller at a time */
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;          /* a rec finished, or stop */
static nccl_rec *inflight;
static bool stopping;
static int aborting;   /* set (atomically) before exit: finalize must not wait then */

static ncclDataType_t nccl_type(loom_dtype dt) {
  switch (dt) {
    case LOOM_F32: return ncclFloat32;
    case LOOM_F64: return ncclFloat64;
    case LOOM_F16: return ncclFloat16;
    case LOOM_BF16: return ncclBfloat16;
    case LOOM_I32: return ncclInt32;
    case LOOM_I64: return ncclInt64;
    case LOOM_U8:
    case LOOM_BOOL:
    default: return ncclUint8;
  }
}

static ncclRedOp_t nccl_op(loom_reduce_op op, loom_dtype dt) {
  switch (op) {
    case LOOM_REDUCE_AVG: return ncclAvg;   /* check_op allows it for floating dtypes only */
    case LOOM_REDUCE_MAX: return ncclMax;
    case LOOM_REDUCE_MIN: return ncclMin;   /* bool (0 / 1): a logical and */
    case LOOM_REDUCE_SUM:
    default: return dt == LOOM_BOOL ? ncclMax : ncclSum;   /* bool: a logical or */
  }
}

/* ---- the watchdog ---- */

/* Under mu: unlinks r, marks its work done (when still attached, the work
 * forgets r first, so a later wait finds nothing to wait for) and frees it. */
static void finish(nccl_rec *r, loom_status st, const char *msg) {
  for (nccl_rec **pp = &inflight; *pp; pp = &(*pp)->next)
    if (*pp == r) {
      *pp = r->next;
      break;
    }
  r->w->backend_data = NULL;
  dist_mark_done(r->w, st, msg);
  cudaEventDestroy(r->queued);   /* teardown: nothing to report */
  cudaEventDestroy(r->done);
  free(r);
  pthread_cond_broadcast(&cv);
}

/* Under mu: finishes r when its collective has ended on the GPU; returns whether it did. */
static bool poll_rec(nccl_rec *r) {
  if (!r->issued) return false;
  cudaError_t e = cudaEventQuery(r->done);
  if (e == cudaErrorNotReady) return false;
  if (e == cudaSuccess) {
    finish(r, LOOM_OK, NULL);
  } else {
    char msg[512];
    snprintf(msg, sizeof msg, "%s #%llu (%zu bytes) failed on the GPU: %s", dist_kind_name(r->w->kind),
             (unsigned long long)r->w->seq, r->w->bytes, cudaGetErrorString(e));
    cudaGetLastError();
    finish(r, LOOM_ERR_COMM, msg);
  }
  return true;
}

/* Aborts the communicator and ends the process (mu held). By convention
 * library code never exits; this is the exception the timeout promises
 * (docs/distributed.md): a collective that never ends would otherwise hang
 * the program at its next synchronisation, and ending this rank makes the
 * other ranks' NCCL calls fail instead of hang. */
static void abort_job(const loom_dist_work *w, ncclResult_t async_err) {
  if (w)
    dist_print_timeout(w);
  else
    fprintf(stderr, "loom dist: rank %d/%d: NCCL failed: %s. Aborting the communicator and this rank.\n",
            dist_g.place.rank, dist_g.place.world_size, ncclGetErrorString(async_err));
  fflush(stderr);
  __atomic_store_n(&aborting, 1, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&mu);
  ncclCommAbort(comm);   /* on the way out: its result changes nothing */
  exit(1);
}

static void *watchdog_main(void *arg) {
  cuda_set_device(dev_index);   /* else this thread's first CUDA call opens a context on cuda:0 */
  pthread_mutex_lock(&mu);
  while (!stopping) {
    ncclResult_t async_err = ncclSuccess;
    if (ncclCommGetAsyncError(comm, &async_err) == ncclSuccess && async_err != ncclSuccess &&
        async_err != ncclInProgress)
      abort_job(NULL, async_err);
    double now = dist_now();
    for (nccl_rec *r = inflight, *next; r; r = next) {
      next = r->next;
      if (!poll_rec(r) && now - r->w->t_start > dist_g.timeout_s) abort_job(r->w, ncclSuccess);
    }
    dist_timedwait(&cv, &mu, 100);
  }
  pthread_mutex_unlock(&mu);
  return NULL;
}

/* ---- the backend ---- */

static int check_on_device(const loom_dist_work *w, const loom_tensor *t) {
  if (!t || loom_device_equal(t->storage->device, dist_g.device)) return LOOM_OK;
  char on[32];
  snprintf(on, sizeof on, "%s", loom_device_name(t->storage->device));
  return core_set_error(LOOM_ERR_DEVICE, "%s: a tensor is on %s but the NCCL backend works on this rank's device %s",
                        dist_kind_name(w->kind), on, loom_device_name(dist_g.device));
}

/* The NCCL call of w on the communication stream. */
static int issue(const loom_dist_work *w) {
  if (w->kind == DIST_BARRIER)
    return NCCL_COMM_CHECK(ncclAllReduce(barrier_buf, barrier_buf, 1, ncclInt32, ncclSum, comm, comm_stream));
  if (w->count == 0) return LOOM_OK;   /* nothing to move, on every rank alike */
  loom_dtype dt = w->in->dtype;
  ncclDataType_t t = nccl_type(dt);
  void *in = core_ptr(w->in), *out = core_ptr(w->out);
  size_t n = (size_t)w->count;
  switch (w->kind) {
    case DIST_ALL_REDUCE: return NCCL_COMM_CHECK(ncclAllReduce(out, out, n, t, nccl_op(w->op, dt), comm, comm_stream));
    case DIST_BROADCAST: return NCCL_COMM_CHECK(ncclBroadcast(out, out, n, t, w->root, comm, comm_stream));
    case DIST_ALL_GATHER: return NCCL_COMM_CHECK(ncclAllGather(in, out, n, t, comm, comm_stream));
    case DIST_REDUCE_SCATTER:
      return NCCL_COMM_CHECK(
          ncclReduceScatter(in, out, n / (size_t)dist_g.place.world_size, t, nccl_op(w->op, dt), comm, comm_stream));
    case DIST_BARRIER: break;   /* above */
  }
  return core_set_error(LOOM_ERR_INTERNAL, "nccl: unknown collective %d", (int)w->kind);
}

static int nccl_submit(loom_dist_work *w) {
  loom_status st = check_on_device(w, w->in);
  if (!st) st = check_on_device(w, w->out);
  if (!st) st = cuda_set_device(dev_index);
  if (st) return st;
  nccl_rec *r = calloc(1, sizeof *r);
  if (!r) return core_set_error(LOOM_ERR_OOM, "%s: out of host memory", dist_kind_name(w->kind));
  r->w = w;
  cudaStream_t compute = (cudaStream_t)cuda_current_stream(dev_index);
  st = CUDA_CHECK(cudaEventCreateWithFlags(&r->queued, cudaEventDisableTiming));
  if (!st) st = CUDA_CHECK(cudaEventCreateWithFlags(&r->done, cudaEventDisableTiming));
  if (!st) st = CUDA_CHECK(cudaEventRecord(r->queued, compute));
  if (!st) st = CUDA_CHECK(cudaStreamWaitEvent(comm_stream, r->queued, 0));
  if (st) {
    if (r->queued) cudaEventDestroy(r->queued);
    if (r->done) cudaEventDestroy(r->done);
    free(r);
    return st;
  }
  /* In the list before the NCCL call: the call itself can block the host
   * (connecting to peers on first use), and the watchdog must see that too. */
  pthread_mutex_lock(&mu);
  w->t_start = dist_now();
  w->backend_data = r;
  r->next = inflight;
  inflight = r;
  pthread_mutex_unlock(&mu);

  pthread_mutex_lock(&issue_mu);
  st = issue(w);
  if (!st) st = CUDA_CHECK(cudaEventRecord(r->done, comm_stream));
  pthread_mutex_unlock(&issue_mu);

  pthread_mutex_lock(&mu);
  if (st)
    finish(r, st, NULL);   /* the caller frees w: r goes first */
  else
    r->issued = true;
  pthread_mutex_unlock(&mu);
  return st;
}

static int nccl_wait(loom_dist_work *w) {
  loom_status st = LOOM_OK;
  pthread_mutex_lock(&mu);
  nccl_rec *r = w->backend_data;
  if (r && poll_rec(r)) r = NULL;   /* already over: nothing for the compute stream to wait for */
  /* A barrier promises the host that every rank has reached it. */
  while (r && w->kind == DIST_BARRIER) {
    pthread_mutex_unlock(&mu);
    nanosleep(&(struct timespec){0, 100 * 1000}, NULL);   /* the watchdog still enforces the timeout */
    pthread_mutex_lock(&mu);
    r = w->backend_data;
    if (r && poll_rec(r)) r = NULL;
  }
  if (r) {
    st = cuda_set_device(dev_index);
    if (!st) st = CUDA_CHECK(cudaStreamWaitEvent((cudaStream_t)cuda_current_stream(dev_index), r->done, 0));
    /* The GPU has not finished it: the end this rank's host sees is now (it
     * waits no longer). The watchdog keeps r, now on a copy, until it ends. */
    w->t_end = dist_now();
    r->snap = *w;
    r->snap.in = r->snap.out = NULL;
    r->w = &r->snap;
    w->backend_data = NULL;
  }
  pthread_mutex_unlock(&mu);
  return st;
}

/* Frees what dist_nccl_init made (each part only when it exists). */
static void release(void) {
  if (comm) NCCL_CHECK(ncclCommDestroy(comm));
  comm = NULL;
  if (comm_stream) CUDA_CHECK(cudaStreamDestroy(comm_stream));
  comm_stream = NULL;
  if (barrier_buf) CUDA_CHECK(cudaFree(barrier_buf));
  barrier_buf = NULL;
#ifdef LOOM_WITH_MPI
  if (we_initialized_mpi) MPI_Finalize();
#endif
  we_initialized_mpi = false;
}

static void nccl_finalize(void) {
  if (__atomic_load_n(&aborting, __ATOMIC_ACQUIRE)) return;   /* exit handlers while aborting: nothing may wait */
  pthread_mutex_lock(&mu);
  while (inflight) pthread_cond_wait(&cv, &mu);   /* work nobody waited for still ends, or times out */
  stopping = true;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  pthread_join(watchdog, NULL);
  stopping = false;
  cuda_set_device(dev_index);
  release();
}

static const dist_backend NCCL_BACKEND = {"nccl", nccl_submit, nccl_wait, nccl_finalize, .native_avg = true};

/* ---- joining ---- */

#ifdef LOOM_WITH_MPI
/* The id from the MPI process whose placement rank is 0. */
static int share_over_mpi(const dist_place *p, ncclUniqueId *id) {
  int inited = 0, finalized = 0, provided = 0, world = 0, r = -1;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (finalized) return core_set_error(LOOM_ERR_COMM, "dist_init: MPI was already finalised in this process");
  if (!inited) {
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
      return core_set_error(LOOM_ERR_COMM, "dist_init: MPI_Init_thread failed");
    we_initialized_mpi = true;
  }
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world != p->world_size)
    return core_set_error(LOOM_ERR_COMM, "dist_init: %s says world size %d but the MPI job has %d processes",
                          p->launcher, p->world_size, world);
  MPI_Comm c = MPI_COMM_NULL;   /* ordered by placement rank, so its rank 0 is p->rank 0 */
  if (MPI_Comm_split(MPI_COMM_WORLD, 0, p->rank, &c) != MPI_SUCCESS)
    return core_set_error(LOOM_ERR_COMM, "dist_init: MPI_Comm_split failed");
  MPI_Comm_rank(c, &r);
  int rc = r == p->rank ? MPI_Bcast(id, (int)sizeof *id, MPI_BYTE, 0, c) : MPI_SUCCESS;
  MPI_Comm_free(&c);
  if (r != p->rank)
    return core_set_error(LOOM_ERR_COMM, "dist_init: two processes claim rank %d (from %s)", p->rank, p->launcher);
  if (rc != MPI_SUCCESS) return core_set_error(LOOM_ERR_COMM, "dist_init: MPI_Bcast of NCCL's id failed");
  return LOOM_OK;
}
#endif

/* Rank 0 makes the id; the others get it from rank 0. */
static int share_id(const dist_place *p, ncclUniqueId *id) {
  memset(id, 0, sizeof *id);
  if (p->rank == 0) {
    loom_status st = NCCL_COMM_CHECK(ncclGetUniqueId(id));
    if (st || p->world_size == 1) return st;
  }
#ifdef LOOM_WITH_MPI
  if (dist_mpi_job()) return share_over_mpi(p, id);
#endif
  return dist_store_share(p->rank, p->world_size, id, sizeof *id, dist_g.timeout_s);
}

const dist_backend *dist_nccl_init(const dist_place *p, loom_device dev) {
  dev_index = dev.index;
  ncclUniqueId id;
  ncclComm_t made = NULL;   /* comm only once it is whole: release() destroys comm */
  loom_status st = cuda_set_device(dev.index);
  if (!st) st = share_id(p, &id);
  if (!st) st = NCCL_COMM_CHECK(ncclCommInitRank(&made, p->world_size, id, p->rank));
  if (!st) comm = made;
  if (!st) st = CUDA_CHECK(cudaStreamCreateWithFlags(&comm_stream, cudaStreamNonBlocking));
  if (!st) st = CUDA_CHECK(cudaMalloc((void **)&barrier_buf, sizeof *barrier_buf));
  if (!st) st = CUDA_CHECK(cudaMemset(barrier_buf, 0, sizeof *barrier_buf));   /* 0 + 0 stays 0: no overflow */
  if (!st && pthread_create(&watchdog, NULL, watchdog_main, NULL))
    st = core_set_error(LOOM_ERR_COMM, "dist_init: cannot start the NCCL watchdog thread");
  if (st) {
    char why[600];
    snprintf(why, sizeof why, "%s", loom_last_error());
    release();   /* (may record errors of its own: why is kept) */
    if (strncmp(why, "dist_init:", 10) == 0)
      core_set_error(st, "%s", why);
    else
      core_set_error(st, "dist_init: NCCL on %s (rank %d of %d): %s", loom_device_name(dev), p->rank, p->world_size,
                     why);
    return NULL;
  }
  return &NCCL_BACKEND;
}
#endif
