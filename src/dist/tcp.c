/* The TCP backend for CPU tensors, for launchers that are not MPI (torchrun,
 * srun without PMI) or when LOOM_DIST_BACKEND=tcp: Loom's own small gloo.
 *
 * Set-up: each rank listens on a free port, tells rank 0 through the store
 * (store.c, MASTER_ADDR:MASTER_PORT + 1) and gets every rank's address back;
 * then it connects to rank + 1 and accepts rank - 1: one ring.
 *
 * Collectives run in order on the communication thread (queue.c). Each
 * first swaps a small header with its neighbours (so ranks that call
 * different collectives fail with a message instead of mixing bytes). An
 * all-reduce is a ring reduce-scatter then a ring all-gather over world-size
 * chunks: each chunk is reduced by the ranks in ring order and its last rank
 * sends the result round, so every rank holds the same bits. A broadcast is
 * pipelined along the ring from the root in segments.
 *
 * Every wait is a poll() bounded by the collective's timeout. On expiry the
 * rank prints what was stuck and exits; a neighbour that closes its socket
 * or dies ends this rank too, with a message naming it. By convention library
 * code never exits; this is the exception the timeout promises
 * (docs/distributed.md): the group cannot go on, and ending this rank is what
 * tells the next ones. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dist/dist_impl.h"

enum { SEG_BYTES = 1 << 20 };   /* the unit of the pipeline: received, then reduced, 1 MiB at a time */

static const char MAGIC_RING[8] = "loomrg1";

static int next_fd = -1, prev_fd = -1;   /* to rank + 1, from rank - 1 (non-blocking) */
static int rank_, world_;
static void *seg;                        /* SEG_BYTES for incoming data to reduce */
static dist_queue queue = DIST_QUEUE_INIT;   /* run enforces the timeout (poll): no give_up */

static int mod(int a, int b) { return ((a % b) + b) % b; }

/* ---- the end of a group that cannot continue ---- */

static void die(void) {
  fflush(stdout);
  fflush(stderr);
  _exit(1);   /* not exit(): the other threads keep running, and atexit handlers would race them */
}

static void timed_out(const loom_dist_work *w) {
  dist_print_timeout(w);
  die();
}

/* A neighbour went away (err 0: it closed its socket). */
static void peer_failed(loom_dist_work *w, bool next, int err) {
  int peer = next ? mod(rank_ + 1, world_) : mod(rank_ - 1, world_);
  char why[160];
  if (err)
    snprintf(why, sizeof why, "the connection %s rank %d failed (%s)", next ? "to" : "from", peer, strerror(err));
  else
    snprintf(why, sizeof why, "rank %d closed its connection (it exited, ended, or died)", peer);
  snprintf(w->err, sizeof w->err, "%s #%llu (%zu bytes): %s", dist_kind_name(w->kind), (unsigned long long)w->seq,
           w->bytes, why);
  w->status = LOOM_ERR_COMM;
  fprintf(stderr, "loom dist: rank %d/%d: %s; the group cannot continue: exiting.\n", rank_, world_, w->err);
  die();
}

/* ---- moving bytes ---- */

/* Sends slen bytes of s to rank + 1 while receiving rlen bytes into r from rank - 1, before deadline. */
static void exchange(loom_dist_work *w, const void *s, size_t slen, void *r, size_t rlen, double deadline) {
  size_t sent = 0, got = 0;
  while (sent < slen || got < rlen) {
    struct pollfd pf[2];
    int n = 0, is = -1, ir = -1;
    if (sent < slen) is = n, pf[n++] = (struct pollfd){next_fd, POLLOUT, 0};
    if (got < rlen) ir = n, pf[n++] = (struct pollfd){prev_fd, POLLIN, 0};
    int k = poll(pf, (nfds_t)n, dist_ms_left(deadline, INT_MAX));
    if (k < 0 && errno != EINTR) peer_failed(w, is >= 0, errno);
    if (k <= 0) {
      if (dist_now() >= deadline) timed_out(w);
      continue;
    }
    if (is >= 0 && pf[is].revents) {
      ssize_t m = send(next_fd, (const char *)s + sent, slen - sent, MSG_NOSIGNAL);
      if (m > 0) sent += (size_t)m;
      else if (m < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) peer_failed(w, true, errno);
    }
    if (ir >= 0 && pf[ir].revents) {
      ssize_t m = recv(prev_fd, (char *)r + got, rlen - got, 0);
      if (m > 0) got += (size_t)m;
      else if (m == 0) peer_failed(w, false, 0);
      else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) peer_failed(w, false, errno);
    }
  }
}

/* ---- reductions: dst[i] = op(dst[i], src[i]) ---- */

enum { SUM, MAX, MIN };
#define LOOP(T, EXPR)                                   \
  do {                                                  \
    T *d = dst;                                         \
    const T *s = src;                                   \
    for (int64_t i = 0; i < n; i++) {                   \
      T x = d[i], y = s[i];                             \
      d[i] = (EXPR);                                    \
    }                                                   \
  } while (0)
/* NaN wins max and min, as in mpi.c's 16-bit reductions */
#define ARITH(T, UT)                                                 \
  do {                                                               \
    if (which == SUM) LOOP(T, (T)((UT)x + (UT)y));                   \
    else if (which == MAX) LOOP(T, x > y || x != x ? x : y);         \
    else LOOP(T, x < y || x != x ? x : y);                           \
  } while (0)

static float reduce_float(float x, float y, int which) {
  return which == SUM ? x + y : which == MAX ? (x > y || x != x ? x : y) : (x < y || x != x ? x : y);
}

static void reduce(void *dst, const void *src, int64_t n, loom_dtype dt, int which) {
  switch (dt) {
    case LOOM_F32: ARITH(float, float); break;
    case LOOM_F64: ARITH(double, double); break;
    case LOOM_I32: ARITH(int32_t, uint32_t); break;   /* sums wrap, as in MPI, without signed overflow */
    case LOOM_I64: ARITH(int64_t, uint64_t); break;
    case LOOM_U8: ARITH(uint8_t, uint8_t); break;
    case LOOM_F16: LOOP(uint16_t, core_float_to_half(reduce_float(core_half_to_float(x), core_half_to_float(y), which))); break;
    case LOOM_BF16: LOOP(uint16_t, core_float_to_bf16(reduce_float(core_bf16_to_float(x), core_bf16_to_float(y), which))); break;
    case LOOM_BOOL:   /* sum and max: or; min: and */
      if (which == MIN) LOOP(uint8_t, x && y);
      else LOOP(uint8_t, x || y);
      break;
    default: break;
  }
}

/* ---- the ring algorithms, over buf of count elements of esz bytes ---- */

/* Chunk c of world_ (elements): the first count % world_ chunks hold one more. */
static void chunk(int c, int64_t count, int64_t *off, int64_t *len) {
  int64_t base = count / world_, extra = count % world_;
  *off = c * base + (c < extra ? c : extra);
  *len = base + (c < extra);
}

/* Afterwards this rank's chunk (chunk rank_) holds op over every rank's. */
static void ring_reduce_scatter(loom_dist_work *w, char *buf, int64_t count, size_t esz, loom_dtype dt, int which,
                                double deadline) {
  int64_t seg_n = SEG_BYTES / (int64_t)esz;
  for (int s = 0; s < world_ - 1; s++) {
    int64_t so, sn, ro, rn;
    chunk(mod(rank_ - s - 1, world_), count, &so, &sn);   /* the chunk reduced in the step before */
    chunk(mod(rank_ - s - 2, world_), count, &ro, &rn);
    for (int64_t ds = 0, dr = 0; ds < sn || dr < rn;) {
      int64_t ns = sn - ds < seg_n ? sn - ds : seg_n, nr = rn - dr < seg_n ? rn - dr : seg_n;
      exchange(w, buf + (size_t)(so + ds) * esz, (size_t)ns * esz, seg, (size_t)nr * esz, deadline);
      reduce(buf + (size_t)(ro + dr) * esz, seg, nr, dt, which);
      ds += ns, dr += nr;
    }
  }
}

/* With chunk rank_ final on every rank, sends each round the ring: afterwards all are everywhere. */
static void ring_all_gather(loom_dist_work *w, char *buf, int64_t count, size_t esz, double deadline) {
  for (int s = 0; s < world_ - 1; s++) {
    int64_t so, sn, ro, rn;
    chunk(mod(rank_ - s, world_), count, &so, &sn);
    chunk(mod(rank_ - s - 1, world_), count, &ro, &rn);
    exchange(w, buf + (size_t)so * esz, (size_t)sn * esz, buf + (size_t)ro * esz, (size_t)rn * esz, deadline);
  }
}

/* Segment i goes from the root round the ring; a rank forwards segment i - 1 while segment i comes in. */
static void ring_broadcast(loom_dist_work *w, char *buf, size_t bytes, int root, double deadline) {
  int d = mod(rank_ - root, world_);   /* the distance from the root */
  size_t nseg = (bytes + SEG_BYTES - 1) / SEG_BYTES;
  for (size_t i = 0; i <= nseg; i++) {
    size_t sent_i = d == 0 ? i : i - 1;   /* the segment this rank sends now (the root: no delay) */
    bool send_now = d < world_ - 1 && (d == 0 ? i < nseg : i >= 1);
    bool recv_now = d > 0 && i < nseg;
    size_t so = sent_i * SEG_BYTES, ro = i * SEG_BYTES;
    size_t sl = send_now ? (bytes - so < SEG_BYTES ? bytes - so : SEG_BYTES) : 0;
    size_t rl = recv_now ? (bytes - ro < SEG_BYTES ? bytes - ro : SEG_BYTES) : 0;
    exchange(w, buf + (send_now ? so : 0), sl, buf + (recv_now ? ro : 0), rl, deadline);
  }
}

/* ---- one collective ---- */

typedef struct header {   /* what every rank says of the collective it starts (network byte order) */
  uint32_t seq_hi, seq_lo, kind, op, root, dtype, bytes_hi, bytes_lo;
} header;

static header header_of(const loom_dist_work *w) {
  uint64_t b = w->bytes;
  return (header){htonl((uint32_t)(w->seq >> 32)), htonl((uint32_t)w->seq), htonl((uint32_t)w->kind),
                  htonl((uint32_t)w->op), htonl((uint32_t)w->root), htonl(w->in ? (uint32_t)w->in->dtype : 0u),
                  htonl((uint32_t)(b >> 32)), htonl((uint32_t)b)};
}

/* Swaps headers with the neighbours: rank - 1 must have started the same collective. */
static void check_header(loom_dist_work *w, double deadline) {
  header mine = header_of(w), theirs;
  exchange(w, &mine, sizeof mine, &theirs, sizeof theirs, deadline);
  if (!memcmp(&mine, &theirs, sizeof mine)) return;
  uint64_t seq = (uint64_t)ntohl(theirs.seq_hi) << 32 | ntohl(theirs.seq_lo);
  uint64_t bytes = (uint64_t)ntohl(theirs.bytes_hi) << 32 | ntohl(theirs.bytes_lo);
  unsigned kind = ntohl(theirs.kind), dt = ntohl(theirs.dtype);
  fprintf(stderr,
          "loom dist: rank %d/%d: %s #%llu (%zu bytes, %s) does not match rank %d's %s #%llu (%llu bytes, %s): every "
          "rank must call the same collectives in the same order, with the same shapes, dtypes, ops and roots; the "
          "group cannot continue: exiting.\n",
          rank_, world_, dist_kind_name(w->kind), (unsigned long long)w->seq, w->bytes,
          w->in ? loom_dtype_name(w->in->dtype) : "-", mod(rank_ - 1, world_),
          kind <= DIST_BARRIER ? dist_kind_name((dist_kind)kind) : "?", (unsigned long long)seq,
          (unsigned long long)bytes, kind == DIST_BARRIER ? "-" : dt <= LOOM_BOOL ? loom_dtype_name((loom_dtype)dt) : "?");
  die();
}

static void run(loom_dist_work *w) {
  double deadline = w->t_start + dist_g.timeout_s;
  check_header(w, deadline);
  loom_dtype dt = w->in ? w->in->dtype : LOOM_U8;
  size_t esz = loom_dtype_size(dt);
  int which = w->op == LOOM_REDUCE_MAX ? MAX : w->op == LOOM_REDUCE_MIN ? MIN : SUM;  /* avg: sum, divided after */
  char *out = w->out ? core_ptr(w->out) : NULL;
  switch (w->kind) {
    case DIST_ALL_REDUCE:
      ring_reduce_scatter(w, out, w->count, esz, dt, which, deadline);
      ring_all_gather(w, out, w->count, esz, deadline);
      break;
    case DIST_BROADCAST: ring_broadcast(w, out, w->bytes, w->root, deadline); break;
    case DIST_ALL_GATHER:
      memcpy(out + (size_t)rank_ * w->bytes, core_ptr(w->in), w->bytes);
      ring_all_gather(w, out, w->count * world_, esz, deadline);
      break;
    case DIST_REDUCE_SCATTER: {   /* in stays as it was: the ring works in a copy (made at submit) */
      char *work = w->backend_data;
      memcpy(work, core_ptr(w->in), w->bytes);
      ring_reduce_scatter(w, work, w->count, esz, dt, which, deadline);
      memcpy(out, work + (size_t)rank_ * (w->bytes / world_), w->bytes / world_);
      free(work);
      w->backend_data = NULL;
      break;
    }
    case DIST_BARRIER: {   /* the header came from rank - 1; world - 2 more rounds reach every rank */
      char token = 1, got;
      for (int s = 0; s < world_ - 2; s++) exchange(w, &token, 1, &got, 1, deadline);
      break;
    }
  }
  dist_mark_done(w, LOOM_OK, NULL);
}

/* ---- the backend ---- */

static int tcp_submit(loom_dist_work *w) {
  if (w->kind == DIST_REDUCE_SCATTER) {
    w->backend_data = malloc(w->bytes ? w->bytes : 1);
    if (!w->backend_data)
      return core_set_error(LOOM_ERR_OOM, "reduce_scatter: out of host memory for a %zu-byte copy of the input", w->bytes);
  }
  return dist_queue_submit(&queue, w);
}

/* The communication thread enforces the timeout (it exits when one passes). */
static int tcp_wait(loom_dist_work *w) { return dist_queue_wait(&queue, w); }

static void close_all(void) {
  if (next_fd >= 0) close(next_fd);
  if (prev_fd >= 0) close(prev_fd);
  next_fd = prev_fd = -1;
  free(seg);
  seg = NULL;
}

static void tcp_finalize(void) {
  dist_queue_stop(&queue);
  close_all();
}

static const dist_backend TCP_BACKEND = {.name = "tcp", .submit = tcp_submit, .wait = tcp_wait,
                                         .finalize = tcp_finalize};

typedef struct greeting {   /* what a rank sends the next one when it connects (network byte order) */
  char magic[8];
  uint32_t rank, world_size;
} greeting;

/* Accepts connections on lfd until rank - 1 greets (stray ones are closed); the socket or -1 + error. */
static int accept_prev(int lfd, double deadline, double timeout_s) {
  int prev = mod(rank_ - 1, world_);
  for (;;) {
    struct pollfd pf = {lfd, POLLIN, 0};
    int r = poll(&pf, 1, dist_ms_left(deadline, INT_MAX));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    int c = accept(lfd, NULL, NULL);
    if (c < 0) continue;
    greeting g;
    if (dist_read_full(c, &g, sizeof g, deadline) == sizeof g && !memcmp(g.magic, MAGIC_RING, sizeof g.magic) &&
        (int)ntohl(g.rank) == prev && (int)ntohl(g.world_size) == world_)
      return c;
    fprintf(stderr, "loom dist: rank %d: a connection to the ring's port did not come from rank %d; closed it\n", rank_,
            prev);
    close(c);
  }
  core_set_error(LOOM_ERR_COMM, "dist_init: rank %d: rank %d did not connect to it within %.0f s (LOOM_DIST_TIMEOUT)",
                 rank_, prev, timeout_s);
  return -1;
}

/* The ring: connect to rank + 1 (greeting it), accept rank - 1. */
static int make_ring(int lfd, const dist_endpoint *table, double deadline, double timeout_s) {
  const dist_endpoint *to = &table[mod(rank_ + 1, world_)];
  int err = 0;
  int fd = dist_connect(to->host, to->port, deadline, &err);
  if (fd < 0)
    return core_set_error(LOOM_ERR_COMM, "dist_init: rank %d cannot connect to rank %d at %s port %s within %.0f s: %s",
                          rank_, mod(rank_ + 1, world_), to->host, to->port, timeout_s,
                          fd == -2 ? gai_strerror(err) : strerror(err));
  next_fd = fd;
  greeting g = {{0}, htonl((uint32_t)rank_), htonl((uint32_t)world_)};
  memcpy(g.magic, MAGIC_RING, sizeof g.magic);
  if (!dist_write_full(next_fd, &g, sizeof g, deadline))
    return core_set_error(LOOM_ERR_COMM, "dist_init: rank %d: rank %d at %s port %s closed the connection at once", rank_,
                          mod(rank_ + 1, world_), to->host, to->port);
  prev_fd = accept_prev(lfd, deadline, timeout_s);
  if (prev_fd < 0) return loom_last_status();
  int one = 1;
  for (int i = 0; i < 2; i++) {
    int fd = i ? prev_fd : next_fd;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);   /* small collectives go out at once */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  return LOOM_OK;
}

const dist_backend *dist_tcp_init(const dist_place *p, double timeout_s) {
  rank_ = p->rank;
  world_ = p->world_size;
  double deadline = dist_now() + timeout_s;
  int err = 0, lfd = dist_listen("0", 4, &err);
  if (lfd < 0) {
    core_set_error(LOOM_ERR_COMM, "dist_init: rank %d cannot open a listening socket for the TCP backend: %s", rank_,
                   strerror(err));
    return NULL;
  }
  struct sockaddr_storage sa;
  socklen_t len = sizeof sa;
  getsockname(lfd, (struct sockaddr *)&sa, &len);
  int port = sa.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&sa)->sin6_port)
                                      : ntohs(((struct sockaddr_in *)&sa)->sin_port);
  char port_s[8];
  snprintf(port_s, sizeof port_s, "%d", port);
  dist_endpoint *table = calloc((size_t)world_, sizeof *table);
  seg = malloc(SEG_BYTES);
  loom_status st = !table || !seg ? core_set_error(LOOM_ERR_OOM, "dist_init: out of host memory")
                                  : (loom_status)dist_store_endpoints(rank_, world_, port_s, table, timeout_s);
  if (!st) st = make_ring(lfd, table, deadline, timeout_s);
  close(lfd);
  free(table);
  if (!st) st = dist_queue_start(&queue, run, NULL);
  if (st) {
    close_all();
    return NULL;
  }
  return &TCP_BACKEND;
}
