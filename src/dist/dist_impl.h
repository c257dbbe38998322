/* The process group's state, the work items that collectives queue, and the
 * interface each backend (local, MPI, TCP, NCCL) implements. Internal. */
#ifndef LOOM_DIST_IMPL_H
#define LOOM_DIST_IMPL_H

#include <pthread.h>

#include "core/tensor_impl.h"
#include "dist/placement.h"

typedef enum dist_kind { DIST_ALL_REDUCE, DIST_BROADCAST, DIST_ALL_GATHER, DIST_REDUCE_SCATTER, DIST_BARRIER } dist_kind;
const char *dist_kind_name(dist_kind k);

struct loom_dist_work {
  dist_kind kind;
  loom_reduce_op op;
  int root;
  loom_tensor *in, *out;    /* owned references (in == out for in-place ops); NULL for a barrier */
  int64_t count;            /* elements of in */
  size_t bytes;             /* bytes of in */
  uint64_t seq;             /* 1, 2, ... in the order collectives were called */
  double t_start, t_end;    /* dist_now() when the backend started and finished it */
  int done;                 /* set (atomically) by the backend when finished */
  loom_status status;
  char err[512];
  struct loom_dist_work *next;  /* the communication thread's queue (dist_queue) */
  void *backend_data;           /* the backend's own record of w (NCCL: its events) */
};

typedef struct dist_backend {
  const char *name;
  /* Starts w (its fields filled and checked); returns 0 or an error status. */
  int (*submit)(loom_dist_work *w);
  /* Returns when w has finished (the backend enforces the timeout). */
  int (*wait)(loom_dist_work *w);
  void (*finalize)(void);
  bool native_avg;   /* AVG reduces to the mean itself (else SUM, then dist_divide_by_world) */
} dist_backend;

typedef struct dist_state {
  bool initialized;
  dist_place place;
  loom_device device;
  double timeout_s;
  const dist_backend *backend;
  uint64_t seq;                        /* last sequence number handed out */
  uint64_t last_done_seq;              /* the last finished work (for timeout messages) */
  dist_kind last_done_kind;
} dist_state;
extern dist_state dist_g;

double dist_now(void);
/* pthread_cond_timedwait(cv, mu) for at most ms milliseconds (mu held). */
void dist_timedwait(pthread_cond_t *cv, pthread_mutex_t *mu, long ms);
/* Marks w finished with status st (and message, for errors); records it as the last one done. */
void dist_mark_done(loom_dist_work *w, loom_status st, const char *msg);
/* The timeout message of w, printed by the rank that gave up on it. */
void dist_print_timeout(const loom_dist_work *w);
/* loom_dist_wait that also reports when the backend started and finished w
 * (t0 / t1 may be NULL). */
int dist_wait_timed(loom_dist_work *w, double *t0, double *t1);
/* After a SUM that stands for an AVG: out /= world size (floating dtypes). */
int dist_divide_by_world(loom_tensor *t);

/* The communication thread of the CPU backends (queue.c): collectives run on
 * it one at a time, in the order submitted. Storage: static, DIST_QUEUE_INIT. */
typedef struct dist_queue {
  void (*run)(loom_dist_work *w);   /* runs w and marks it done */
  void (*give_up)(void);   /* ends the job when the running work is past the timeout (after dist_print_timeout);
                              never returns. NULL: run enforces the timeout, waits just sleep */
  pthread_mutex_t mu;
  pthread_cond_t cv_work, cv_done;
  loom_dist_work *head, *tail, *running;   /* queued; on the thread now (under mu) */
  bool stopping;
  pthread_t thread;
} dist_queue;
#define DIST_QUEUE_INIT \
  {.mu = PTHREAD_MUTEX_INITIALIZER, .cv_work = PTHREAD_COND_INITIALIZER, .cv_done = PTHREAD_COND_INITIALIZER}
/* Starts the thread; 0 or an error status (recorded). */
int dist_queue_start(dist_queue *q, void (*run)(loom_dist_work *w), void (*give_up)(void));
/* Queues w behind the work before it; returns 0. */
int dist_queue_submit(dist_queue *q, loom_dist_work *w);
/* Returns 0 when w is done. */
int dist_queue_wait(dist_queue *q, loom_dist_work *w);
/* Lets work nobody waited for finish (or time out), then joins the thread. */
void dist_queue_stop(dist_queue *q);

#ifdef LOOM_WITH_MPI
/* Joins the MPI job (MPI_Init_thread unless the program did) with ranks
 * ordered by p->rank; returns the backend or NULL + error. */
const dist_backend *dist_mpi_init(const dist_place *p);
/* "Open MPI v4.1.4": the MPI library's version. */
void dist_mpi_version(char *buf, size_t size);
/* True when the environment shows an MPI launcher (mpirun, srun with PMI/PMIx). */
bool dist_mpi_job(void);
#endif

/* A rendezvous for world_size processes without MPI (store.c): rank 0 listens
 * on MASTER_ADDR:MASTER_PORT + 1 and sends its len bytes of buf to every other
 * rank, which connects (retrying until timeout_s) and receives them into buf.
 * Returns 0 or an error status (recorded). */
int dist_store_share(int rank, int world_size, void *buf, size_t len, double timeout_s);

/* Where one rank of the TCP backend listens: a host (numeric; rank 0's is
 * MASTER_ADDR) and a port, as text. */
typedef struct dist_endpoint {
  char host[256], port[8];   /* a host name (MASTER_ADDR) may be long */
} dist_endpoint;
/* The same rendezvous, both ways: every rank sends rank 0 its port and the
 * local address of its connection to rank 0; table (world_size entries) gets
 * every rank's endpoint. Returns 0 or an error status (recorded). */
int dist_store_endpoints(int rank, int world_size, const char *port, dist_endpoint *table, double timeout_s);

/* Socket helpers (store.c, used by tcp.c). Milliseconds until deadline for
 * poll (0 to max_ms); read / write exactly len bytes before deadline
 * (read returns the bytes read, write whether all went); a listening socket
 * on every interface at port ("0": any free one; -1 and *err = errno on
 * failure); a connection to host:port, retrying until deadline (-1 and
 * *err = errno, or -2 and *err = a getaddrinfo code). */
int dist_ms_left(double deadline, int max_ms);
size_t dist_read_full(int fd, void *buf, size_t len, double deadline);
bool dist_write_full(int fd, const void *buf, size_t len, double deadline);
int dist_listen(const char *port, int backlog, int *err);
int dist_connect(const char *host, const char *port, double deadline, int *err);

/* The TCP backend for CPU tensors (tcp.c): a ring of sockets between the
 * ranks, set up through dist_store_endpoints; returns the backend or NULL +
 * error. */
const dist_backend *dist_tcp_init(const dist_place *p, double timeout_s);
/* The name of the process group's backend ("local" outside one): for tests. */
const char *dist_backend_name(void);

#ifdef LOOM_WITH_NCCL
/* Joins the NCCL communicator of the world on CUDA device dev (the unique id
 * travels over MPI under an MPI launcher, else through dist_store_share);
 * returns the backend or NULL + error. nccl.c */
const dist_backend *dist_nccl_init(const dist_place *p, loom_device dev);
#endif

#endif
