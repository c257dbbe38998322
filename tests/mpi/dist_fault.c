/* A rank that goes missing: `sleep` makes rank 1 sleep past the collective
 * timeout, `kill` makes it die. Either way rank 0's all-reduce must not wait
 * for ever: the job ends non-zero (tests/mpi/fault_check.sh). `mismatch`
 * makes rank 1 call a broadcast where rank 0 all-reduces (the TCP backend
 * says so and ends both). */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <loom/loom.h>
#include <loom/dist.h>

int main(int argc, char **argv) {
  if (argc != 2 || (strcmp(argv[1], "sleep") && strcmp(argv[1], "kill") && strcmp(argv[1], "mismatch"))) {
    fprintf(stderr, "usage: dist_fault sleep|kill|mismatch (under mpirun -np 2 or tests/mpi/launch_tcp.sh 2)\n");
    return 2;
  }
  if (loom_dist_init(NULL)) {
    fprintf(stderr, "dist_fault: %s\n", loom_last_error());
    return 1;
  }
  loom_tensor *t = loom_ones(LOOM_SHAPE(1000), LOOM_F32, loom_cpu());
  if (loom_all_reduce(t, LOOM_REDUCE_SUM)) return 1;  /* one that works: it is the "last completed" */
  int st;
  if (loom_dist_rank() == 1 && !strcmp(argv[1], "mismatch")) {
    st = loom_broadcast(t, 0);
  } else {
    if (loom_dist_rank() == 1) {
      if (!strcmp(argv[1], "kill")) raise(SIGKILL);
      sleep(60);
    }
    st = loom_all_reduce(t, LOOM_REDUCE_SUM);
  }
  printf("dist_fault: rank %d finished its all-reduce (status %d)\n", loom_dist_rank(), st);
  loom_release(t);
  loom_dist_finalize();
  return 0;
}
