/* A tiny rendezvous over TCP for launchers without MPI (torchrun, explicit
 * placement): rank 0 hands a few bytes (NCCL's unique id) to every other
 * rank. Rank 0 listens on MASTER_PORT + 1 (torchrun's own store holds
 * MASTER_PORT itself), the others connect to MASTER_ADDR at that port,
 * retrying until the timeout because rank 0 may
 * start later. Every read is length-checked: a short or foreign answer is an
 * error, never a crash. */
#define _POSIX_C_SOURCE 200809L   /* getaddrinfo, nanosleep */
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

/* What rank 0 sends before the payload, so a rank that reached some other
 * program on the port says so instead of taking its bytes for the id. */
static const char MAGIC[8] = "loomid1";

/* Milliseconds left until deadline, for poll (at least 0, at most max_ms). */
static int ms_left(double deadline, int max_ms) {
  double ms = (deadline - dist_now()) * 1000.0;
  return ms <= 0 ? 0 : ms > max_ms ? max_ms : (int)ms;
}

/* Reads exactly len bytes before deadline; returns the bytes read (len on success). */
static size_t read_full(int fd, void *buf, size_t len, double deadline) {
  size_t got = 0;
  while (got < len) {
    struct pollfd pf = {fd, POLLIN, 0};
    int r = poll(&pf, 1, ms_left(deadline, INT_MAX));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    ssize_t n = recv(fd, (char *)buf + got, len - got, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n <= 0) break;   /* closed early, or an error */
    got += (size_t)n;
  }
  return got;
}

static bool write_full(int fd, const void *buf, size_t len, double deadline) {
  size_t put = 0;
  while (put < len) {
    struct pollfd pf = {fd, POLLOUT, 0};
    int r = poll(&pf, 1, ms_left(deadline, INT_MAX));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    ssize_t n = send(fd, (const char *)buf + put, len - put, MSG_NOSIGNAL);  /* a vanished peer is an error, not SIGPIPE */
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n <= 0) return false;
    put += (size_t)n;
  }
  return true;
}

/* Rank 0: accepts world_size - 1 connections and sends each the header and buf. */
static int serve(const char *addr, const char *port, int world_size, const void *buf, size_t len, double deadline,
                 double timeout_s) {
  /* Listens on every interface: MASTER_ADDR may resolve locally to a loopback
   * alias (Debian's 127.0.1.1 for the host name) that other nodes cannot reach. */
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res = NULL;
  int rc = getaddrinfo(NULL, port, &hints, &res);
  if (rc) return core_set_error(LOOM_ERR_COMM, "dist_init: port %s (MASTER_PORT + 1): %s", port, gai_strerror(rc));
  int fd = -1, err = 0;
  for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  /* a previous run's TIME_WAIT does not block the port */
    if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);  /* IPv4 too */
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, world_size)) {
      err = errno;
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0)
    return core_set_error(LOOM_ERR_COMM, "dist_init: rank 0 cannot listen on MASTER_ADDR=%s port %s (MASTER_PORT + 1): %s%s", addr,
                          port, strerror(err),
                          err == EADDRINUSE ? " (pick a free port; under torchrun, torchrun's own store may hold it)" : "");
  loom_status st = LOOM_OK;
  for (int served = 1; served < world_size && !st;) {
    struct pollfd pf = {fd, POLLIN, 0};
    int r = poll(&pf, 1, ms_left(deadline, INT_MAX));
    if (r < 0 && errno == EINTR) continue;
    int c = r > 0 ? accept(fd, NULL, NULL) : -1;
    if (c < 0 && r > 0 && (errno == EINTR || errno == ECONNABORTED)) continue;
    if (c < 0) {
      st = core_set_error(LOOM_ERR_COMM,
                          "dist_init: only %d of %d ranks reached rank 0 on MASTER_ADDR=%s port %s (MASTER_PORT + 1) within %.0f s "
                          "(LOOM_DIST_TIMEOUT)",
                          served, world_size, addr, port, timeout_s);
      break;
    }
    if (write_full(c, MAGIC, sizeof MAGIC, deadline) && write_full(c, buf, len, deadline))
      served++;
    else   /* that rank went away: it fails on its side, and the others may still come */
      fprintf(stderr, "loom dist: rank 0: a rank connected to port %s but did not take the id\n", port);
    close(c);
  }
  close(fd);
  return st;
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
    if (poll(&pf, 1, ms_left(deadline, 1000)) > 0) getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (soerr == 0) return fd;
    errno = soerr;
  }
  *err = errno;
  close(fd);
  return -1;
}

/* Other ranks: connect to rank 0 (retrying until deadline) and receive buf. */
static int fetch(int rank, const char *addr, const char *port, void *buf, size_t len, double deadline,
                 double timeout_s) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
  int rc = getaddrinfo(addr, port, &hints, &res);
  if (rc)
    return core_set_error(LOOM_ERR_COMM, "dist_init: rank %d cannot resolve MASTER_ADDR=%s port %s (MASTER_PORT + 1): %s", rank,
                          addr, port, gai_strerror(rc));
  int fd = -1, err = ECONNREFUSED;
  while (fd < 0 && dist_now() < deadline) {
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) fd = try_connect(ai, deadline, &err);
    if (fd < 0) nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);  /* rank 0 may not listen yet */
  }
  freeaddrinfo(res);
  if (fd < 0)
    return core_set_error(LOOM_ERR_COMM,
                          "dist_init: rank %d could not reach rank 0 at MASTER_ADDR=%s port %s (MASTER_PORT + 1) within %.0f s "
                          "(LOOM_DIST_TIMEOUT; last error: %s): is rank 0 running, and are the address and port right?",
                          rank, addr, port, timeout_s, strerror(err));
  char magic[sizeof MAGIC];
  size_t got = read_full(fd, magic, sizeof magic, deadline);
  bool ours = got == sizeof magic && memcmp(magic, MAGIC, sizeof magic) == 0;
  if (ours) got = read_full(fd, buf, len, deadline);
  close(fd);
  if (!ours)
    return core_set_error(LOOM_ERR_COMM,
                          "dist_init: rank %d: what answers on MASTER_ADDR=%s port %s (MASTER_PORT + 1) is not Loom's rank 0 (its "
                          "first %zu bytes are not Loom's greeting)",
                          rank, addr, port, got);
  if (got != len)
    return core_set_error(LOOM_ERR_COMM,
                          "dist_init: rank %d: rank 0 at MASTER_ADDR=%s port %s (MASTER_PORT + 1) sent %zu of %zu bytes before "
                          "closing or the timeout",
                          rank, addr, port, got, len);
  return LOOM_OK;
}

int dist_store_share(int rank, int world_size, void *buf, size_t len, double timeout_s) {
  if (world_size <= 1) return LOOM_OK;
  const char *addr = getenv("MASTER_ADDR"), *port = getenv("MASTER_PORT");
  const char *missing = !addr || !*addr ? "MASTER_ADDR" : !port || !*port ? "MASTER_PORT" : NULL;
  if (missing)
    return core_set_error(LOOM_ERR_INVALID,
                          "dist_init: world size %d without an MPI launcher needs MASTER_ADDR and MASTER_PORT (rank 0's "
                          "host and a free TCP port, as torchrun sets them) to share NCCL's id; %s is not set",
                          world_size, missing);
  char *end;
  long p = strtol(port, &end, 10);
  if (*end || p < 1 || p > 65534)
    return core_set_error(LOOM_ERR_INVALID, "dist_init: MASTER_PORT='%s' is not a TCP port (1 to 65534)", port);
  char mine[8];   /* MASTER_PORT + 1: torchrun's rendezvous store listens on MASTER_PORT */
  snprintf(mine, sizeof mine, "%ld", p + 1);
  double deadline = dist_now() + timeout_s;
  return rank == 0 ? serve(addr, mine, world_size, buf, len, deadline, timeout_s)
                   : fetch(rank, addr, mine, buf, len, deadline, timeout_s);
}
