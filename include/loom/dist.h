/* Loom data-parallel training: the process group (rank, world size and
 * device from the launcher), collectives on tensors, and a data-parallel
 * wrapper that all-reduces gradients in buckets while backward runs.
 *
 * One process per GPU (NCCL) or per CPU slot (MPI under an MPI launcher,
 * else TCP; LOOM_DIST_BACKEND=tcp|mpi forces one). A program that never
 * calls loom_dist_init, or calls it without a launcher, is world size 1 and
 * every collective is then a local no-op (or copy). Collectives must be
 * called by every rank in the same order, with tensors of the same shapes. */
#ifndef LOOM_DIST_H
#define LOOM_DIST_H

#include "loom/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_dist_opts {
  /* Explicit placement: when world_size > 0, rank and local_rank are used as
   * given and the launcher's variables are ignored. 0 = from the launcher:
   * torchrun's RANK / WORLD_SIZE / LOCAL_RANK, else Open MPI's
   * OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK, else Slurm's SLURM_PROCID /
   * SLURM_NTASKS / SLURM_LOCALID, else a single process (world size 1). */
  int world_size, rank, local_rank;
  /* The device this rank computes on: NULL = "cuda:LOCAL_RANK" when CUDA
   * devices are visible, else "cpu"; "cuda" = "cuda:LOCAL_RANK" (an error
   * without a GPU); "cpu" or "cuda:N" as given. */
  const char *device;
  /* Seconds a collective may take before every rank is aborted with a
   * message; 0 = LOOM_DIST_TIMEOUT from the environment, else 600. */
  double timeout_s;
  bool quiet;   /* no line per rank naming its device at start */
} loom_dist_opts;

/* Joins the process group (NULL opts = defaults). Fails with a message when
 * the launcher's variables disagree, when the world needs a backend this
 * build lacks (NCCL for CUDA tensors; MPI when forced), when a TCP world
 * has no MASTER_ADDR / MASTER_PORT, or when it is
 * already initialised. */
int loom_dist_init(const loom_dist_opts *o);
/* Leaves the process group (waits for nothing: wait for your work first). */
int loom_dist_finalize(void);
bool loom_dist_is_initialized(void);
/* 0, 1 and 0 before init. */
int loom_dist_rank(void);
int loom_dist_world_size(void);
int loom_dist_local_rank(void);
/* The rank's device (cpu before init). */
loom_device loom_dist_device(void);
/* Who set the placement: "explicit", "torchrun", "mpirun", "slurm" or "none". */
const char *loom_dist_launcher(void);
/* The seconds a collective may take (from opts or LOOM_DIST_TIMEOUT). */
double loom_dist_timeout(void);

typedef enum loom_reduce_op { LOOM_REDUCE_SUM = 0, LOOM_REDUCE_AVG, LOOM_REDUCE_MAX, LOOM_REDUCE_MIN } loom_reduce_op;
const char *loom_reduce_op_name(loom_reduce_op op);

/* Asynchronous collectives return a handle to pass to loom_dist_wait, which
 * returns 0 (or an error) and frees it. Tensors must be contiguous, on the
 * rank's device and left untouched until the wait. dtypes: every Loom dtype;
 * AVG needs a floating dtype; for bool, SUM and MAX are a logical or and MIN
 * a logical and. */
typedef struct loom_dist_work loom_dist_work;
int loom_dist_wait(loom_dist_work *w);
/* True once w has finished (it still needs loom_dist_wait). */
bool loom_dist_is_done(const loom_dist_work *w);

/* t = op over every rank's t, in place. */
loom_dist_work *loom_all_reduce_async(loom_tensor *t, loom_reduce_op op);
int loom_all_reduce(loom_tensor *t, loom_reduce_op op);
/* t = root's t on every rank. */
loom_dist_work *loom_broadcast_async(loom_tensor *t, int root);
int loom_broadcast(loom_tensor *t, int root);
/* out (world_size x in's elements, same dtype) = every rank's in, rank 0 first. */
loom_dist_work *loom_all_gather_async(loom_tensor *out, const loom_tensor *in);
int loom_all_gather(loom_tensor *out, const loom_tensor *in);
/* out (in's elements / world_size) = op over every rank's in, this rank's share. */
loom_dist_work *loom_reduce_scatter_async(loom_tensor *out, const loom_tensor *in, loom_reduce_op op);
int loom_reduce_scatter(loom_tensor *out, const loom_tensor *in, loom_reduce_op op);
/* Returns when every rank has called it. */
int loom_barrier(void);

/* ---- data parallel (PyTorch DistributedDataParallel semantics) ---- */
typedef struct loom_ddp_opts {
  double bucket_cap_mb;         /* gradient bytes per bucket; 0 = 25 */
  double first_bucket_mb;       /* the first bucket (the last layers) starts sooner; 0 = 1 */
  bool find_unused_parameters;  /* a parameter without gradient counts as zero (otherwise an error) */
  bool no_broadcast_buffers;    /* do not broadcast buffers from rank 0 before each training forward */
  /* Called as each bucket's all-reduce starts (buckets are numbered from the
   * last parameters): for tests and timelines. */
  void (*on_bucket)(int bucket, void *user);
  void *on_bucket_user;
} loom_ddp_opts;

/* Wraps model (moved to its device first): broadcasts its parameters and
 * buffers from rank 0, then returns a module with the same parameters,
 * buffers and names (state_dicts and checkpoints are interchangeable with
 * model's) whose forward runs model's. During backward, each parameter's
 * gradient goes into its bucket and a full bucket's all-reduce starts at
 * once, in bucket order; backward returns when all have finished, with every
 * gradient averaged over the ranks. Takes its own reference to model. */
loom_module *loom_ddp_new(loom_module *model, const loom_ddp_opts *o);
/* The wrapped model (borrowed), or NULL when m is not a DDP module. */
loom_module *loom_ddp_module(loom_module *m);
/* While off, backward only accumulates local gradients (gradient
 * accumulation); the first backward with sync back on all-reduces the sums. */
int loom_ddp_set_sync(loom_module *m, bool on);

typedef struct loom_ddp_stats {
  int buckets;               /* number of buckets */
  int64_t steps;             /* backward passes synchronised */
  double comm_s;             /* last step: seconds the all-reduces ran, added up */
  double exposed_s;          /* last step: from the end of the autograd walk to the last all-reduce's end */
  double hidden_fraction;    /* last step: share of comm_s that overlapped backward (1 - exposed / comm) */
} loom_ddp_stats;
int loom_ddp_get_stats(loom_module *m, loom_ddp_stats *out);

#ifdef __cplusplus
}
#endif
#endif
