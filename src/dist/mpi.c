/* The MPI backend for CPU tensors. Collectives run in order on the
 * communication thread (queue.c), so backward keeps computing while a
 * bucket's all-reduce runs. The waiting thread enforces the timeout: when the
 * running collective is older than it, the rank prints what was stuck and
 * aborts the whole job (MPI_Abort). */
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist_impl.h"

static MPI_Comm comm = MPI_COMM_NULL;
static bool we_initialized;
static MPI_Datatype dt_f16 = MPI_DATATYPE_NULL, dt_bf16 = MPI_DATATYPE_NULL;
static MPI_Op op16[3];   /* sum, max, min of f16 / bf16 (through float) */
static dist_queue queue = DIST_QUEUE_INIT;

void dist_mpi_version(char *buf, size_t size) {
  char v[MPI_MAX_LIBRARY_VERSION_STRING] = "";
  int len = 0;
  MPI_Get_library_version(v, &len);
  v[strcspn(v, ",\n")] = 0;   /* "Open MPI v4.1.4, package: ..." -> "Open MPI v4.1.4" */
  snprintf(buf, size, "%s", v);
}

static void finalize_at_exit(void) { loom_dist_finalize(); }

bool dist_mpi_job(void) {
  return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK") || getenv("PMI_SIZE");
}

/* ---- 16-bit floats: MPI has no such type, so reduce through float ---- */
static void reduce16(void *in, void *inout, int *len, MPI_Datatype *dt, int which) {
  const uint16_t *a = in;
  uint16_t *b = inout;
  bool half = *dt == dt_f16;
  for (int i = 0; i < *len; i++) {
    float x = half ? core_half_to_float(a[i]) : core_bf16_to_float(a[i]);
    float y = half ? core_half_to_float(b[i]) : core_bf16_to_float(b[i]);
    float r = which == 0 ? x + y : which == 1 ? (x > y || x != x ? x : y) : (x < y || x != x ? x : y);
    b[i] = half ? core_float_to_half(r) : core_float_to_bf16(r);
  }
}
static void sum16(void *in, void *inout, int *len, MPI_Datatype *dt) { reduce16(in, inout, len, dt, 0); }
static void max16(void *in, void *inout, int *len, MPI_Datatype *dt) { reduce16(in, inout, len, dt, 1); }
static void min16(void *in, void *inout, int *len, MPI_Datatype *dt) { reduce16(in, inout, len, dt, 2); }

static MPI_Datatype mpi_type(loom_dtype dt) {
  switch (dt) {
    case LOOM_F32: return MPI_FLOAT;
    case LOOM_F64: return MPI_DOUBLE;
    case LOOM_F16: return dt_f16;
    case LOOM_BF16: return dt_bf16;
    case LOOM_I32: return MPI_INT32_T;
    case LOOM_I64: return MPI_INT64_T;
    case LOOM_U8: return MPI_UINT8_T;
    case LOOM_BOOL: return MPI_C_BOOL;
    default: return MPI_DATATYPE_NULL;
  }
}

static MPI_Op mpi_op(loom_reduce_op op, loom_dtype dt) {
  int which = op == LOOM_REDUCE_MAX ? 1 : op == LOOM_REDUCE_MIN ? 2 : 0;  /* avg = sum, divided after */
  if (dt == LOOM_F16 || dt == LOOM_BF16) return op16[which];
  if (dt == LOOM_BOOL) return which == 2 ? MPI_LAND : MPI_LOR;
  return which == 1 ? MPI_MAX : which == 2 ? MPI_MIN : MPI_SUM;
}

/* ---- one collective, on the communication thread ---- */
static void run(loom_dist_work *w) {
  loom_dtype dt = w->in ? w->in->dtype : LOOM_U8;
  MPI_Datatype t = mpi_type(dt);
  int n = (int)w->count, world = dist_g.place.world_size, rc = MPI_SUCCESS;
  void *in = w->in ? core_ptr(w->in) : NULL, *out = w->out ? core_ptr(w->out) : NULL;
  switch (w->kind) {
    case DIST_ALL_REDUCE: rc = MPI_Allreduce(MPI_IN_PLACE, out, n, t, mpi_op(w->op, dt), comm); break;
    case DIST_BROADCAST: rc = MPI_Bcast(out, n, t, w->root, comm); break;
    case DIST_ALL_GATHER: rc = MPI_Allgather(in, n, t, out, n, t, comm); break;
    case DIST_REDUCE_SCATTER: rc = MPI_Reduce_scatter_block(in, out, n / world, t, mpi_op(w->op, dt), comm); break;
    case DIST_BARRIER: rc = MPI_Barrier(comm); break;
  }
  if (rc == MPI_SUCCESS) {
    dist_mark_done(w, LOOM_OK, NULL);
    return;
  }
  char why[MPI_MAX_ERROR_STRING] = "";
  int len = 0;
  MPI_Error_string(rc, why, &len);
  char msg[512];
  snprintf(msg, sizeof msg, "%s #%llu (%zu bytes) failed in MPI: %s", dist_kind_name(w->kind),
           (unsigned long long)w->seq, w->bytes, why);
  dist_mark_done(w, LOOM_ERR_COMM, msg);
}

/* The timeout ends the whole job. */
static void abort_job(void) {
  MPI_Abort(MPI_COMM_WORLD, 1);
  abort();   /* MPI_Abort does not return; if an MPI library lets it, still never hang */
}

static int mpi_submit(loom_dist_work *w) {
  if (w->count > INT_MAX)
    return core_set_error(LOOM_ERR_UNSUPPORTED, "%s: %lld elements are more than MPI's count limit (%d); split the tensor",
                          dist_kind_name(w->kind), (long long)w->count, INT_MAX);
  return dist_queue_submit(&queue, w);
}

static int mpi_wait(loom_dist_work *w) { return dist_queue_wait(&queue, w); }

static void free_mpi_objects(void) {
  for (int i = 0; i < 3; i++) MPI_Op_free(&op16[i]);
  MPI_Type_free(&dt_f16);
  MPI_Type_free(&dt_bf16);
  MPI_Comm_free(&comm);
  if (we_initialized) MPI_Finalize();
  we_initialized = false;
}

static void mpi_finalize(void) {
  dist_queue_stop(&queue);
  free_mpi_objects();
}

static const dist_backend MPI_BACKEND = {.name = "mpi", .submit = mpi_submit, .wait = mpi_wait,
                                         .finalize = mpi_finalize};

const dist_backend *dist_mpi_init(const dist_place *p) {
  int inited = 0, finalized = 0, provided = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (finalized) {
    core_set_error(LOOM_ERR_COMM, "dist_init: MPI was already finalised in this process");
    return NULL;
  }
  if (!inited) {
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
      core_set_error(LOOM_ERR_COMM, "dist_init: MPI_Init_thread failed");
      return NULL;
    }
    we_initialized = true;
  } else {
    MPI_Query_thread(&provided);
  }
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  const char *why = NULL;
  char msg[256];
  if (provided < MPI_THREAD_MULTIPLE) {
    why = "MPI does not offer MPI_THREAD_MULTIPLE (Loom's communication thread needs it)";
  } else if (world != p->world_size) {
    snprintf(msg, sizeof msg, "%s says world size %d but the MPI job has %d processes", p->launcher, p->world_size,
             world);
    why = msg;
  }
  if (!why) {
    MPI_Comm_split(MPI_COMM_WORLD, 0, p->rank, &comm);
    int r = -1;
    MPI_Comm_rank(comm, &r);
    if (r != p->rank) {
      snprintf(msg, sizeof msg, "two processes claim rank %d (from %s)", p->rank, p->launcher);
      why = msg;
      MPI_Comm_free(&comm);
    }
  }
  if (why) {
    core_set_error(LOOM_ERR_COMM, "dist_init: %s", why);
    if (we_initialized) MPI_Finalize();
    we_initialized = false;
    return NULL;
  }
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  MPI_Type_contiguous(2, MPI_BYTE, &dt_f16);
  MPI_Type_contiguous(2, MPI_BYTE, &dt_bf16);
  MPI_Type_commit(&dt_f16);
  MPI_Type_commit(&dt_bf16);
  MPI_Op_create(sum16, 1, &op16[0]);
  MPI_Op_create(max16, 1, &op16[1]);
  MPI_Op_create(min16, 1, &op16[2]);
  static bool at_exit;  /* a program that forgets loom_dist_finalize still leaves MPI cleanly */
  if (!at_exit) at_exit = atexit(finalize_at_exit) == 0;
  if (dist_queue_start(&queue, run, abort_job)) {
    free_mpi_objects();
    return NULL;
  }
  return &MPI_BACKEND;
}
