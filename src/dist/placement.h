/* Rank, world size and local rank from the options or the launcher's
 * variables. Internal (tests/test_dist.cpp checks the precedence). */
#ifndef LOOM_DIST_PLACEMENT_H
#define LOOM_DIST_PLACEMENT_H

#include "loom/dist.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where this process sits, from the options or the launcher's variables. */
typedef struct dist_place {
  int rank, world_size, local_rank;
  const char *launcher;     /* "explicit", "torchrun", "mpirun", "slurm", "none" */
} dist_place;
/* Fills p from o and the environment; returns 0 or an error status (recorded). */
int dist_placement(const loom_dist_opts *o, dist_place *p);

#ifdef __cplusplus
}
#endif
#endif
