/* A tiny rendezvous over TCP for launchers without MPI (torchrun, srun
 * without PMI, explicit placement). Rank 0 listens on MASTER_PORT + 1
 * (torchrun's own store holds MASTER_PORT itself); the others connect to
 * MASTER_ADDR at that port, retrying until the timeout because rank 0 may
 * start later. Two exchanges use it: rank 0 hands a few bytes (NCCL's unique
 * id) to every rank (dist_store_share), or every rank tells rank 0 where its
 * TCP backend listens and gets the whole table back (dist_store_endpoints).
 * Every read is length-checked: a short or foreign answer is an error, never
 * a crash. The socket helpers here serve tcp.c too. */
#define _POSIX_C_SOURCE 200809L   /* getaddrinfo, nanosleep */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dist/dist_impl.h"

/* What rank 0 sends first, so a rank that reached some other program on the
 * port (or a rank 0 doing the other exchange) says so instead of taking its
 * bytes for an answer. */
static const char MAGIC_ID[8] = "loomid1", MAGIC_EP[8] = "loomep1";

int dist_ms_left(double deadline, int max_ms) {
  double ms = (deadline - dist_now()) * 1000.0;
  return ms <= 0 ? 0 : ms >= max_ms ? max_ms : (int)ms + 1;
}

size_t dist_read_full(int fd, void *buf, size_t len, double deadline) {
  size_t got = 0;
  while (got < len) {
    struct pollfd pf = {fd, POLLIN, 0};
    int r = poll(&pf, 1, dist_ms_left(deadline, INT_MAX));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    ssize_t n = recv(fd, (char *)buf + got, len - got, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n <= 0) break;   /* closed early, or an error */
    got += (size_t)n;
  }
  return got;
}

bool dist_write_full(int fd, const void *buf, size_t len, double deadline) {
  size_t put = 0;
  while (put < len) {
    struct pollfd pf = {fd, POLLOUT, 0};
    int r = poll(&pf, 1, dist_ms_left(deadline, INT_MAX));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    ssize_t n = send(fd, (const char *)buf + put, len - put, MSG_NOSIGNAL);  /* a vanished peer is an error, not SIGPIPE */
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n <= 0) return false;
    put += (size_t)n;
  }
  return true;
}

/* A socket bound to ai and listening, or -1 (*err = errno). */
static int listen_one(const struct addrinfo *ai, int backlog, int *err) {
  int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  int one = 1, zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  /* a previous run's TIME_WAIT does not block the port */
  if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);  /* IPv4 too */
  if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, backlog)) {
    *err = errno;
    close(fd);
    return -1;
  }
  return fd;
}

int dist_listen(const char *port, int backlog, int *err) {
  /* Every interface: MASTER_ADDR may resolve locally to a loopback alias
   * (Debian's 127.0.1.1 for the host name) that other nodes cannot reach. */
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res = NULL;
  int rc = getaddrinfo(NULL, port, &hints, &res);
  if (rc) {
    *err = EINVAL;
    return -1;
  }
  /* IPv6 first: with IPV6_V6ONLY off, one socket takes IPv4 and IPv6 peers alike */
  int fd = -1;
  for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
    if (ai->ai_family == AF_INET6) fd = listen_one(ai, backlog, err);
  for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
    if (ai->ai_family != AF_INET6) fd = listen_one(ai, backlog, err);
  freeaddrinfo(res);
  return fd;
}

/* One non-blocking connection attempt to ai, waiting at most until deadline (and 1 s). */
static int try_connect(const struct addrinfo *ai, double deadline, int *err) {
  int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);  /* so an unreachable host cannot outlast the timeout */
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) return fd;
  if (errno == EINPROGRESS) {
    struct pollfd pf = {fd, POLLOUT, 0};
    int soerr = ETIMEDOUT;
    socklen_t sl = sizeof soerr;
    if (poll(&pf, 1, dist_ms_left(deadline, 1000)) > 0) getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (soerr == 0) return fd;
    errno = soerr;
  }
  *err = errno;
  close(fd);
  return -1;
}

int dist_connect(const char *host, const char *port, double deadline, int *err) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc) {
    *err = rc;
    return -2;
  }
  int fd = -1;
  *err = ECONNREFUSED;
  while (fd < 0 && dist_now() < deadline) {
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) fd = try_connect(ai, deadline, err);
    if (fd < 0) nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);  /* the peer may not listen yet */
  }
  freeaddrinfo(res);
  return fd;
}

/* MASTER_ADDR and MASTER_PORT + 1 (as text in port1), checked; what names the purpose in the error. */
static int master(int world_size, const char *what, const char **addr, char port1[8]) {
  const char *port = getenv("MASTER_PORT");
  *addr = getenv("MASTER_ADDR");
  const char *missing = !*addr || !**addr ? "MASTER_ADDR" : !port || !*port ? "MASTER_PORT" : NULL;
  if (missing)
    return core_set_error(LOOM_ERR_INVALID,
                          "dist_init: world size %d without an MPI launcher needs MASTER_ADDR and MASTER_PORT (rank 0's "
                          "host and a free TCP port, as torchrun sets them) %s; %s is not set",
                          world_size, what, missing);
  char *end;
  long p = strtol(port, &end, 10);
  if (*end || p < 1 || p > 65534)
    return core_set_error(LOOM_ERR_INVALID, "dist_init: MASTER_PORT='%s' is not a TCP port (1 to 65534)", port);
  snprintf(port1, 8, "%ld", p + 1);   /* torchrun's rendezvous store listens on MASTER_PORT */
  return LOOM_OK;
}

/* Rank 0: listens on MASTER_PORT + 1 (fd, or -1 and the error recorded). */
static int listen_master(const char *addr, const char *port, int world_size) {
  int err = 0, fd = dist_listen(port, world_size, &err);
  if (fd < 0)
    core_set_error(LOOM_ERR_COMM, "dist_init: rank 0 cannot listen on MASTER_ADDR=%s port %s (MASTER_PORT + 1): %s%s", addr,
                   port, strerror(err),
                   err == EADDRINUSE ? " (pick a free port; under torchrun, torchrun's own store may hold it)" : "");
  return fd;
}

/* Rank 0: the next connection before deadline (or -1, with the error recorded: served of world_size came). */
static int accept_rank(int fd, const char *addr, const char *port, int served, int world_size, double deadline,
                       double timeout_s) {
  for (;;) {
    struct pollfd pf = {fd, POLLIN, 0};
    int r = poll(&pf, 1, dist_ms_left(deadline, INT_MAX));
    if (r < 0 && errno == EINTR) continue;
    int c = r > 0 ? accept(fd, NULL, NULL) : -1;
    if (c < 0 && r > 0 && (errno == EINTR || errno == ECONNABORTED)) continue;
    if (c >= 0) return c;
    core_set_error(LOOM_ERR_COMM,
                   "dist_init: only %d of %d ranks reached rank 0 on MASTER_ADDR=%s port %s (MASTER_PORT + 1) within %.0f s "
                   "(LOOM_DIST_TIMEOUT)",
                   served, world_size, addr, port, timeout_s);
    return -1;
  }
}

/* Other ranks: connects to rank 0 (retrying until deadline) and reads its greeting; fd or -1 + error. */
static int reach_master(int rank, const char *addr, const char *port, const char magic[8], double deadline,
                        double timeout_s) {
  int err = 0, fd = dist_connect(addr, port, deadline, &err);
  if (fd == -2) {
    core_set_error(LOOM_ERR_COMM, "dist_init: rank %d cannot resolve MASTER_ADDR=%s port %s (MASTER_PORT + 1): %s", rank,
                   addr, port, gai_strerror(err));
    return -1;
  }
  if (fd < 0) {
    core_set_error(LOOM_ERR_COMM,
                   "dist_init: rank %d could not reach rank 0 at MASTER_ADDR=%s port %s (MASTER_PORT + 1) within %.0f s "
                   "(LOOM_DIST_TIMEOUT; last error: %s): is rank 0 running, and are the address and port right?",
                   rank, addr, port, timeout_s, strerror(err));
    return -1;
  }
  char got[8];
  size_t n = dist_read_full(fd, got, sizeof got, deadline);
  if (n == sizeof got && !memcmp(got, magic, sizeof got)) return fd;
  close(fd);
  const char *other = n == sizeof got && !memcmp(got, magic == MAGIC_ID ? MAGIC_EP : MAGIC_ID, sizeof got)
                          ? " (it is Loom's, but for the other backend: do all ranks use the same device and "
                            "LOOM_DIST_BACKEND?)"
                          : "";
  core_set_error(LOOM_ERR_COMM,
                 "dist_init: rank %d: what answers on MASTER_ADDR=%s port %s (MASTER_PORT + 1) is not Loom's rank 0 (its "
                 "first %zu bytes are not Loom's greeting)%s",
                 rank, addr, port, n, other);
  return -1;
}

int dist_store_share(int rank, int world_size, void *buf, size_t len, double timeout_s) {
  if (world_size <= 1) return LOOM_OK;
  const char *addr;
  char port[8];
  if (master(world_size, "to share NCCL's id", &addr, port)) return loom_last_status();
  double deadline = dist_now() + timeout_s;
  if (rank == 0) {
    int fd = listen_master(addr, port, world_size);
    if (fd < 0) return loom_last_status();
    loom_status st = LOOM_OK;
    for (int served = 1; served < world_size && !st;) {
      int c = accept_rank(fd, addr, port, served, world_size, deadline, timeout_s);
      if (c < 0) {
        st = loom_last_status();
        break;
      }
      if (dist_write_full(c, MAGIC_ID, sizeof MAGIC_ID, deadline) && dist_write_full(c, buf, len, deadline))
        served++;
      else   /* that rank went away: it fails on its side, and the others may still come */
        fprintf(stderr, "loom dist: rank 0: a rank connected to port %s but did not take the id\n", port);
      close(c);
    }
    close(fd);
    return st;
  }
  int fd = reach_master(rank, addr, port, MAGIC_ID, deadline, timeout_s);
  if (fd < 0) return loom_last_status();
  size_t got = dist_read_full(fd, buf, len, deadline);
  close(fd);
  if (got != len)
    return core_set_error(LOOM_ERR_COMM,
                          "dist_init: rank %d: rank 0 at MASTER_ADDR=%s port %s (MASTER_PORT + 1) sent %zu of %zu bytes before "
                          "closing or the timeout",
                          rank, addr, port, got, len);
  return LOOM_OK;
}

/* ---- the TCP backend's table of endpoints ---- */

typedef struct ep_request {   /* what rank r > 0 sends rank 0 */
  uint32_t rank, world_size;  /* network byte order */
  dist_endpoint ep;
} ep_request;

/* The numeric local address of the connected socket fd (the address this rank is reachable at). */
static void local_host(int fd, char *host, size_t size) {
  struct sockaddr_storage sa;
  socklen_t len = sizeof sa;
  if (getsockname(fd, (struct sockaddr *)&sa, &len) ||
      getnameinfo((struct sockaddr *)&sa, len, host, (socklen_t)size, NULL, 0, NI_NUMERICHOST))
    snprintf(host, size, "127.0.0.1");
}

/* A loopback address (127.x, ::1): reachable from this host alone. */
static bool loopback(const char *host) {
  return !strncmp(host, "127.", 4) || !strcmp(host, "::1") || !strncmp(host, "::ffff:127.", 11);
}

/* Rank 0: gathers every rank's endpoint into table and sends the table back. */
static int serve_endpoints(const char *addr, const char *port, int world_size, dist_endpoint *table, double deadline,
                           double timeout_s) {
  int fd = listen_master(addr, port, world_size);
  if (fd < 0) return loom_last_status();
  int *conns = calloc((size_t)world_size, sizeof *conns);
  if (!conns) {
    close(fd);
    return core_set_error(LOOM_ERR_OOM, "dist_init: out of host memory");
  }
  loom_status st = LOOM_OK;
  for (int came = 1; came < world_size && !st;) {
    int c = accept_rank(fd, addr, port, came, world_size, deadline, timeout_s);
    if (c < 0) {
      st = loom_last_status();
      break;
    }
    ep_request q;
    if (!dist_write_full(c, MAGIC_EP, sizeof MAGIC_EP, deadline) || dist_read_full(c, &q, sizeof q, deadline) != sizeof q) {
      fprintf(stderr, "loom dist: rank 0: a connection to port %s went away before it said its rank\n", port);
      close(c);
      continue;
    }
    int r = (int)ntohl(q.rank), w = (int)ntohl(q.world_size);
    q.ep.host[sizeof q.ep.host - 1] = q.ep.port[sizeof q.ep.port - 1] = 0;
    if (w != world_size)
      st = core_set_error(LOOM_ERR_COMM, "dist_init: rank 0 has world size %d but rank %d (at %s) says %d", world_size, r,
                          q.ep.host, w);
    else if (r < 1 || r >= world_size || conns[r])
      st = core_set_error(LOOM_ERR_COMM, "dist_init: rank 0 (world size %d): two processes claim rank %d (one at %s)",
                          world_size, r, q.ep.host);
    if (st) {
      close(c);
      break;
    }
    /* A rank that reached rank 0 over loopback is on rank 0's host; its ring
     * predecessor may be on another one, where MASTER_ADDR names this host. */
    if (loopback(q.ep.host)) snprintf(q.ep.host, sizeof q.ep.host, "%s", addr);
    conns[r] = c;
    table[r] = q.ep;
    came++;
  }
  for (int r = 1; r < world_size; r++) {
    if (!conns[r]) continue;
    if (!st && !dist_write_full(conns[r], table, (size_t)world_size * sizeof *table, deadline))
      st = core_set_error(LOOM_ERR_COMM, "dist_init: rank 0 could not send the table of ranks to rank %d (it went away)", r);
    close(conns[r]);
  }
  free(conns);
  close(fd);
  return st;
}

int dist_store_endpoints(int rank, int world_size, const char *port, dist_endpoint *table, double timeout_s) {
  const char *addr;
  char mport[8];
  if (master(world_size, "for the TCP backend's rendezvous", &addr, mport)) return loom_last_status();
  double deadline = dist_now() + timeout_s;
  memset(table, 0, (size_t)world_size * sizeof *table);
  if (rank == 0) {
    snprintf(table[0].host, sizeof table[0].host, "%s", addr);   /* where the others reached rank 0 */
    snprintf(table[0].port, sizeof table[0].port, "%s", port);
    return serve_endpoints(addr, mport, world_size, table, deadline, timeout_s);
  }
  int fd = reach_master(rank, addr, mport, MAGIC_EP, deadline, timeout_s);
  if (fd < 0) return loom_last_status();
  ep_request q = {htonl((uint32_t)rank), htonl((uint32_t)world_size), {{0}, {0}}};
  local_host(fd, q.ep.host, sizeof q.ep.host);
  snprintf(q.ep.port, sizeof q.ep.port, "%s", port);
  size_t want = (size_t)world_size * sizeof *table, got = 0;
  if (dist_write_full(fd, &q, sizeof q, deadline)) got = dist_read_full(fd, table, want, deadline);
  close(fd);
  if (got != want)
    return core_set_error(LOOM_ERR_COMM,
                          "dist_init: rank %d: rank 0 at MASTER_ADDR=%s port %s (MASTER_PORT + 1) sent %zu of %zu bytes of the "
                          "table of ranks before closing or the timeout (LOOM_DIST_TIMEOUT %.0f s): did every rank start?",
                          rank, addr, mport, got, want, timeout_s);
  for (int r = 0; r < world_size; r++) table[r].host[sizeof table[r].host - 1] = table[r].port[sizeof table[r].port - 1] = 0;
  return LOOM_OK;
}
