/* The process group and the collectives' public entry points: checks, the
 * work item, and the local backend of a world of one. */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime, gethostname */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cuda/cuda_util.h"   /* cuda_pci_bus_id (no CUDA headers) */
#include "dist/dist_impl.h"
#include "loom/ops.h"

dist_state dist_g = {.device = {LOOM_CPU, 0}};

double dist_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void dist_timedwait(pthread_cond_t *cv, pthread_mutex_t *mu, long ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_nsec += ms * 1000 * 1000;
  ts.tv_sec += ts.tv_nsec / 1000000000;
  ts.tv_nsec %= 1000000000;
  pthread_cond_timedwait(cv, mu, &ts);
}

const char *dist_kind_name(dist_kind k) {
  switch (k) {
    case DIST_ALL_REDUCE: return "all_reduce";
    case DIST_BROADCAST: return "broadcast";
    case DIST_ALL_GATHER: return "all_gather";
    case DIST_REDUCE_SCATTER: return "reduce_scatter";
    case DIST_BARRIER: return "barrier";
  }
  return "?";
}

const char *loom_reduce_op_name(loom_reduce_op op) {
  switch (op) {
    case LOOM_REDUCE_SUM: return "sum";
    case LOOM_REDUCE_AVG: return "avg";
    case LOOM_REDUCE_MAX: return "max";
    case LOOM_REDUCE_MIN: return "min";
  }
  return "?";
}

void dist_mark_done(loom_dist_work *w, loom_status st, const char *msg) {
  w->t_end = dist_now();
  w->status = st;
  if (msg) snprintf(w->err, sizeof w->err, "%s", msg);
  if (st == LOOM_OK) {
    dist_g.last_done_seq = w->seq;
    dist_g.last_done_kind = w->kind;
  }
  __atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
}

void dist_print_timeout(const loom_dist_work *w) {
  char last[96] = "none";
  if (dist_g.last_done_seq)
    snprintf(last, sizeof last, "%s #%llu", dist_kind_name(dist_g.last_done_kind),
             (unsigned long long)dist_g.last_done_seq);
  fprintf(stderr,
          "loom dist: rank %d/%d: %s #%llu (%zu bytes) did not finish within %.0f s (LOOM_DIST_TIMEOUT); last "
          "completed: %s. Another rank is stuck, dead, or calling collectives in another order. Aborting every "
          "rank.\n",
          dist_g.place.rank, dist_g.place.world_size, dist_kind_name(w->kind), (unsigned long long)w->seq, w->bytes,
          dist_g.timeout_s, last);
  fflush(stderr);
}

int dist_divide_by_world(loom_tensor *t) {
  loom_tensor *q = loom_mul_scalar(t, 1.0 / dist_g.place.world_size);
  loom_status st = q ? (loom_status)loom_copy_(t, q) : loom_last_status();
  loom_release(q);
  return st;
}

int dist_versions(char *buf, size_t size) {
#ifdef LOOM_WITH_MPI
  char v[256];
  dist_mpi_version(v, sizeof v);
  return snprintf(buf, size, "MPI: %s\n", v);
#else
  return snprintf(buf, size, "MPI: not built\n");
#endif
}

/* ---- a world of one: every collective is the identity (or a copy) ---- */
static int local_submit(loom_dist_work *w) {
  w->t_start = dist_now();
  if ((w->kind == DIST_ALL_GATHER || w->kind == DIST_REDUCE_SCATTER) && w->out != w->in) {
    memcpy(core_ptr(w->out), core_ptr(w->in), w->bytes);
  }
  dist_mark_done(w, LOOM_OK, NULL);
  return LOOM_OK;
}
static int local_wait(loom_dist_work *w) { return LOOM_OK; }
static void local_finalize(void) {}
static const dist_backend LOCAL = {.name = "local", .submit = local_submit, .wait = local_wait,
                                   .finalize = local_finalize};

/* ---- the process group ---- */
static double timeout_from(const loom_dist_opts *o) {
  if (o && o->timeout_s > 0) return o->timeout_s;
  const char *s = getenv("LOOM_DIST_TIMEOUT");
  if (s && *s) {
    char *end;
    double v = strtod(s, &end);
    if (*end || !(v > 0)) return -1;
    return v;
  }
  return 600;
}

static int pick_device(const loom_dist_opts *o, const dist_place *p, loom_device *dev) {
  bool any_gpu = o && o->device && strcmp(o->device, "cuda") == 0;   /* "cuda": the rank's own GPU */
  if (any_gpu && loom_cuda_device_count() == 0)
    return core_set_error(LOOM_ERR_DEVICE, "dist_init: device cuda but no CUDA device is visible");
  if (o && o->device && !any_gpu) {
    if (!loom_device_parse(o->device, dev))
      return core_set_error(LOOM_ERR_INVALID, "dist_init: unknown device '%s' (cpu, cuda, cuda:N)", o->device);
    if (dev->type == LOOM_CUDA && dev->index >= loom_cuda_device_count())
      return core_set_error(LOOM_ERR_DEVICE, "dist_init: device %s but %d CUDA device(s) visible", o->device,
                            loom_cuda_device_count());
    return LOOM_OK;
  }
  int n = loom_cuda_device_count();
  if (n == 0) {
    *dev = (loom_device){LOOM_CPU, 0};
    return LOOM_OK;
  }
  if (p->local_rank >= n) {
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    return core_set_error(LOOM_ERR_DEVICE,
                          "dist_init: local rank %d needs cuda:%d but %d CUDA device(s) are visible "
                          "(CUDA_VISIBLE_DEVICES=%s): start at most %d processes per node, or pass device",
                          p->local_rank, p->local_rank, n, vis ? vis : "unset", n);
  }
  *dev = (loom_device){LOOM_CUDA, p->local_rank};
  return LOOM_OK;
}

/* CPU tensors in a world > 1: MPI under an MPI launcher (when built), else TCP; LOOM_DIST_BACKEND forces one. */
static const dist_backend *pick_cpu_backend(const dist_place *p, const char *forced) {
#ifdef LOOM_WITH_MPI
  bool mpi_built = true, mpi_job = dist_mpi_job();
#else
  bool mpi_built = false, mpi_job = false;
#endif
  const char *want = forced ? forced : mpi_built && mpi_job ? "mpi" : "tcp";
  if (!strcmp(want, "mpi")) {
    if (!mpi_built) {
      core_set_error(LOOM_ERR_UNSUPPORTED,
                     "dist_init: LOOM_DIST_BACKEND=mpi, but Loom was built without MPI (LOOM_MPI=OFF, or Open MPI not "
                     "found: Debian's libopenmpi-dev); unset it to use the TCP backend");
      return NULL;
    }
    if (!mpi_job) {
      core_set_error(LOOM_ERR_UNSUPPORTED,
                     "dist_init: LOOM_DIST_BACKEND=mpi, but this process was not started by an MPI launcher (%s says "
                     "world size %d): launch with mpirun -np N (or srun --mpi=pmix), or unset it to use the TCP backend",
                     p->launcher, p->world_size);
      return NULL;
    }
#ifdef LOOM_WITH_MPI
    return dist_mpi_init(p);
#endif
  }
  const char *addr = getenv("MASTER_ADDR"), *port = getenv("MASTER_PORT");
  const char *missing = !addr || !*addr ? "MASTER_ADDR" : !port || !*port ? "MASTER_PORT" : NULL;
  if (missing) {
    const char *how = !strcmp(p->launcher, "slurm")
                          ? "under srun, export MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1) "
                            "and MASTER_PORT=29500 (any free port) before it, or use srun --mpi=pmix for MPI"
                          : !strcmp(p->launcher, "torchrun") ? "torchrun sets both: is this process started by torchrun?"
                          : "export them on every rank (mpirun: -x MASTER_ADDR -x MASTER_PORT)";
    core_set_error(LOOM_ERR_INVALID,
                   "dist_init: %s says world size %d on the CPU: the TCP backend needs MASTER_ADDR and MASTER_PORT "
                   "(rank 0's host and a free TCP port; Loom listens on MASTER_PORT + 1), and %s is not set: %s",
                   p->launcher, p->world_size, missing, how);
    return NULL;
  }
  return dist_tcp_init(p, dist_g.timeout_s);
}

static const dist_backend *pick_backend(const dist_place *p, loom_device dev) {
  const char *forced = getenv("LOOM_DIST_BACKEND");
  if (forced && !*forced) forced = NULL;
  if (forced && strcmp(forced, "tcp") && strcmp(forced, "mpi")) {
    core_set_error(LOOM_ERR_INVALID,
                   "dist_init: LOOM_DIST_BACKEND='%s' is not a backend: tcp or mpi (for CPU tensors), or unset it to "
                   "choose by the launcher",
                   forced);
    return NULL;
  }
  if (forced && dev.type == LOOM_CUDA) {
    core_set_error(LOOM_ERR_UNSUPPORTED,
                   "dist_init: LOOM_DIST_BACKEND=%s is for CPU tensors, but this rank's device is %s (NCCL): unset it, "
                   "or pass device \"cpu\"",
                   forced, loom_device_name(dev));
    return NULL;
  }
#ifdef LOOM_WITH_NCCL
  /* also for a world of one, so that one GPU runs (and tests) the NCCL path */
  if (dev.type == LOOM_CUDA) return dist_nccl_init(p, dev);
#endif
  if (p->world_size == 1) return &LOCAL;
  if (dev.type == LOOM_CUDA) {
    core_set_error(LOOM_ERR_UNSUPPORTED,
                   "dist_init: world size %d on %s needs the NCCL backend, but Loom was built without NCCL (not "
                   "found: set LOOM_NCCL_ROOT to the folder holding include/nccl.h); use device \"cpu\" (MPI or TCP)",
                   p->world_size, loom_device_name(dev));
    return NULL;
  }
  return pick_cpu_backend(p, forced);
}

int loom_dist_init(const loom_dist_opts *o) {
  if (dist_g.initialized)
    return core_set_error(LOOM_ERR_INVALID, "dist_init: the process group is already initialised (rank %d of %d)",
                          dist_g.place.rank, dist_g.place.world_size);
  dist_place p;
  if (dist_placement(o, &p)) return loom_last_status();
  double timeout = timeout_from(o);
  if (timeout < 0)
    return core_set_error(LOOM_ERR_INVALID, "dist_init: LOOM_DIST_TIMEOUT='%s' is not a positive number of seconds",
                          getenv("LOOM_DIST_TIMEOUT"));
  loom_device dev;
  if (pick_device(o, &p, &dev)) return loom_last_status();
  dist_g = (dist_state){.place = p, .device = dev, .timeout_s = timeout};
  const dist_backend *b = pick_backend(&p, dev);
  if (!b) {
    dist_g = (dist_state){.device = {LOOM_CPU, 0}};
    return loom_last_status();
  }
  dist_g.backend = b;
  dist_g.initialized = true;
  if (!(o && o->quiet)) {
    char host[128] = "?";
    gethostname(host, sizeof host - 1);
    char where[320];
    snprintf(where, sizeof where, "%s", loom_device_name(dev));
    if (dev.type == LOOM_CUDA) {
      loom_device_info info;
      char bus[32];   /* the PCI bus id tells which physical GPU, whatever CUDA_VISIBLE_DEVICES renumbered */
      if (cuda_pci_bus_id(dev.index, bus, sizeof bus) != LOOM_OK) snprintf(bus, sizeof bus, "?");
      if (loom_cuda_device_info(dev.index, &info) == LOOM_OK)
        snprintf(where, sizeof where, "%s (%s, PCI %s)", loom_device_name(dev), info.name, bus);
    }
    printf("loom dist: rank %d/%d (local %d) on %s, host %s, pid %ld, launcher %s, backend %s, timeout %.0f s\n",
           p.rank, p.world_size, p.local_rank, where, host, (long)getpid(), p.launcher, b->name, timeout);
    fflush(stdout);
  }
  return LOOM_OK;
}

const char *dist_backend_name(void) { return dist_g.initialized ? dist_g.backend->name : LOCAL.name; }

int loom_dist_finalize(void) {
  if (!dist_g.initialized) return LOOM_OK;
  dist_g.backend->finalize();
  dist_g = (dist_state){.device = {LOOM_CPU, 0}};
  return LOOM_OK;
}

bool loom_dist_is_initialized(void) { return dist_g.initialized; }
int loom_dist_rank(void) { return dist_g.initialized ? dist_g.place.rank : 0; }
int loom_dist_world_size(void) { return dist_g.initialized ? dist_g.place.world_size : 1; }
int loom_dist_local_rank(void) { return dist_g.initialized ? dist_g.place.local_rank : 0; }
loom_device loom_dist_device(void) { return dist_g.device; }
const char *loom_dist_launcher(void) { return dist_g.initialized ? dist_g.place.launcher : "none"; }
double loom_dist_timeout(void) { return dist_g.initialized ? dist_g.timeout_s : timeout_from(NULL); }

/* ---- collectives ---- */
static const dist_backend *backend(void) { return dist_g.initialized ? dist_g.backend : &LOCAL; }

static int check_tensor(const char *op, const char *what, const loom_tensor *t) {
  if (!t) return core_null_error("%s: %s is NULL", op, what);
  if (core_freed_handle(op, t)) return loom_last_status();
  if (!core_is_contiguous(t))
    return core_set_error(LOOM_ERR_INVALID, "%s: %s of shape %s is not contiguous (use loom_contiguous)", op, what,
                          loom_shape_str(t->shape));
  loom_device dev = t->storage->device;
  if (dist_g.initialized && dist_g.place.world_size > 1 && !loom_device_equal(dev, dist_g.device))
    return core_set_error(LOOM_ERR_DEVICE, "%s: %s is on %s but this rank's device is %s", op, what,
                          loom_device_name(dev), loom_device_name(dist_g.device));
  return LOOM_OK;
}

static int check_op(const char *name, const loom_tensor *t, loom_reduce_op op) {
  if ((unsigned)op > LOOM_REDUCE_MIN) return core_set_error(LOOM_ERR_INVALID, "%s: unknown reduce op %d", name, (int)op);
  if (op == LOOM_REDUCE_AVG && !loom_dtype_is_float(t->dtype))
    return core_set_error(LOOM_ERR_INVALID, "%s: avg needs a floating tensor, got %s (use sum)", name,
                          loom_dtype_name(t->dtype));
  return LOOM_OK;
}

static loom_dist_work *submit(dist_kind kind, loom_tensor *out, const loom_tensor *in, loom_reduce_op op, int root) {
  loom_dist_work *w = calloc(1, sizeof *w);
  if (!w) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", dist_kind_name(kind));
    return NULL;
  }
  w->kind = kind;
  w->op = op;
  w->root = root;
  w->in = loom_retain((loom_tensor *)in);
  w->out = loom_retain(out);
  w->count = in ? core_numel(in) : 0;
  w->bytes = in ? (size_t)w->count * loom_dtype_size(in->dtype) : 0;
  w->seq = ++dist_g.seq;
  if (backend()->submit(w)) {
    loom_release(w->in);
    loom_release(w->out);
    free(w);
    return NULL;
  }
  return w;
}

int dist_wait_timed(loom_dist_work *w, double *t0, double *t1) {
  if (!w) return core_null_error("dist_wait: work is NULL");
  loom_status st = backend()->wait(w);
  if (!st && w->status) st = core_set_error(w->status, "%s", w->err);
  bool avg = w->op == LOOM_REDUCE_AVG && (w->kind == DIST_ALL_REDUCE || w->kind == DIST_REDUCE_SCATTER);
  if (!st && avg && loom_dist_world_size() > 1 && !backend()->native_avg) st = dist_divide_by_world(w->out);
  if (t0) *t0 = w->t_start;
  if (t1) *t1 = w->t_end;
  loom_release(w->in);
  loom_release(w->out);
  free(w);
  return st;
}

int loom_dist_wait(loom_dist_work *w) { return dist_wait_timed(w, NULL, NULL); }

bool loom_dist_is_done(const loom_dist_work *w) { return w && __atomic_load_n(&w->done, __ATOMIC_ACQUIRE); }

loom_dist_work *loom_all_reduce_async(loom_tensor *t, loom_reduce_op op) {
  if (check_tensor("all_reduce", "tensor", t) || check_op("all_reduce", t, op)) return NULL;
  return submit(DIST_ALL_REDUCE, t, t, op, 0);
}

loom_dist_work *loom_broadcast_async(loom_tensor *t, int root) {
  if (check_tensor("broadcast", "tensor", t)) return NULL;
  if (root < 0 || root >= loom_dist_world_size()) {
    core_set_error(LOOM_ERR_INVALID, "broadcast: root %d is outside world size %d", root, loom_dist_world_size());
    return NULL;
  }
  return submit(DIST_BROADCAST, t, t, LOOM_REDUCE_SUM, root);
}

/* big has world_size times small's elements, same dtype. */
static int check_pair(const char *op, const loom_tensor *big, const char *bigname, const loom_tensor *small,
                      const char *smallname) {
  if (big->dtype != small->dtype)
    return core_set_error(LOOM_ERR_INVALID, "%s: %s is %s but %s is %s", op, bigname, loom_dtype_name(big->dtype),
                          smallname, loom_dtype_name(small->dtype));
  int world = loom_dist_world_size();
  if (core_numel(big) != core_numel(small) * world)
    return core_set_error(LOOM_ERR_INVALID, "%s: %s %s must hold world size (%d) x %s %s = %lld elements", op, bigname,
                          loom_shape_str(big->shape), world, smallname, loom_shape_str(small->shape),
                          (long long)(core_numel(small) * world));
  if (big->storage == small->storage)
    return core_set_error(LOOM_ERR_INVALID, "%s: %s and %s share storage", op, bigname, smallname);
  return LOOM_OK;
}

loom_dist_work *loom_all_gather_async(loom_tensor *out, const loom_tensor *in) {
  if (check_tensor("all_gather", "out", out) || check_tensor("all_gather", "in", in) ||
      check_pair("all_gather", out, "out", in, "in"))
    return NULL;
  return submit(DIST_ALL_GATHER, out, in, LOOM_REDUCE_SUM, 0);
}

loom_dist_work *loom_reduce_scatter_async(loom_tensor *out, const loom_tensor *in, loom_reduce_op op) {
  if (check_tensor("reduce_scatter", "out", out) || check_tensor("reduce_scatter", "in", in) ||
      check_pair("reduce_scatter", in, "in", out, "out") || check_op("reduce_scatter", in, op))
    return NULL;
  return submit(DIST_REDUCE_SCATTER, out, in, op, 0);
}

static int wait_or_status(loom_dist_work *w) { return w ? loom_dist_wait(w) : (int)loom_last_status(); }
int loom_all_reduce(loom_tensor *t, loom_reduce_op op) { return wait_or_status(loom_all_reduce_async(t, op)); }
int loom_broadcast(loom_tensor *t, int root) { return wait_or_status(loom_broadcast_async(t, root)); }
int loom_all_gather(loom_tensor *out, const loom_tensor *in) { return wait_or_status(loom_all_gather_async(out, in)); }
int loom_reduce_scatter(loom_tensor *out, const loom_tensor *in, loom_reduce_op op) {
  return wait_or_status(loom_reduce_scatter_async(out, in, op));
}
int loom_barrier(void) { return wait_or_status(submit(DIST_BARRIER, NULL, NULL, LOOM_REDUCE_SUM, 0)); }
