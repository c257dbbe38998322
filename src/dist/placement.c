/* Rank, world size and local rank: explicit options, else torchrun's
 * variables, else Open MPI's, else Slurm's (an srun step), else one process. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "dist/dist_impl.h"

/* *out = the integer in variable name; 0 when unset, 1 when read, negative (error recorded) when malformed. */
static int env_int(const char *name, int *out) {
  const char *s = getenv(name);
  if (!s || !*s) return 0;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < 0 || v > INT_MAX) {
    core_set_error(LOOM_ERR_INVALID, "dist_init: %s='%s' is not a non-negative integer", name, s);
    return -1;
  }
  *out = (int)v;
  return 1;
}

typedef struct launcher_vars {
  const char *launcher, *rank, *size, *local;
} launcher_vars;

static const launcher_vars LAUNCHERS[] = {
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
    {"mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
    {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
};

static int check_place(const dist_place *p, const char *from) {
  if (p->world_size < 1)
    return core_set_error(LOOM_ERR_INVALID, "dist_init: world size %d (%s) must be at least 1", p->world_size, from);
  if (p->rank < 0 || p->rank >= p->world_size)
    return core_set_error(LOOM_ERR_INVALID, "dist_init: rank %d (%s) is outside world size %d", p->rank, from,
                          p->world_size);
  if (p->local_rank < 0 || p->local_rank > p->rank)
    return core_set_error(LOOM_ERR_INVALID, "dist_init: local rank %d (%s) must be between 0 and the rank %d",
                          p->local_rank, from, p->rank);
  return LOOM_OK;
}

int dist_placement(const loom_dist_opts *o, dist_place *p) {
  if (o && o->world_size > 0) {
    *p = (dist_place){o->rank, o->world_size, o->local_rank, "explicit"};
    return check_place(p, "given in the options");
  }
  if (o && (o->rank || o->local_rank))
    return core_set_error(LOOM_ERR_INVALID, "dist_init: rank %d / local_rank %d given without a world_size", o->rank,
                          o->local_rank);
  for (size_t i = 0; i < sizeof LAUNCHERS / sizeof *LAUNCHERS; i++) {
    const launcher_vars *l = &LAUNCHERS[i];
    /* Slurm sets SLURM_PROCID / SLURM_NTASKS in a batch script too; only an srun step (SLURM_STEP_ID) is a launch. */
    if (!strcmp(l->launcher, "slurm") && !getenv("SLURM_STEP_ID")) continue;
    int rank = 0, size = 0, local = 0;
    int hr = env_int(l->rank, &rank), hs = env_int(l->size, &size), hl = env_int(l->local, &local);
    if (hr < 0 || hs < 0 || hl < 0) return loom_last_status();
    if (!hr && !hs) continue;
    if (!hr || !hs)
      return core_set_error(LOOM_ERR_INVALID, "dist_init: %s is set but %s is not (%s sets both)",
                            hr ? l->rank : l->size, hr ? l->size : l->rank, l->launcher);
    if (!hl) local = 0;
    *p = (dist_place){rank, size, local, l->launcher};
    char from[160];
    snprintf(from, sizeof from, "from %s=%s, %s=%s, %s=%s", l->rank, getenv(l->rank), l->size, getenv(l->size), l->local,
             hl ? getenv(l->local) : "unset");
    return check_place(p, from);
  }
  *p = (dist_place){0, 1, 0, "none"};
  return LOOM_OK;
}
