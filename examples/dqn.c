/* DQN on CartPole-v1 (loom/models.h): the zoo's Q-network (4-128-128-2)
 * trained by loom_dqn_train_cartpole until the mean length of the last 100
 * episodes reaches 195 (or --steps environment steps pass), then a few greedy
 * evaluation episodes, and the Q-network saved with loom_module_save.
 *
 *   dqn [--steps N] [--seed N] [--device cpu|cuda[:N]] [--out FILE] [--threads N] [--quiet]
 *
 * Progress lines every 20 episodes go to stderr; the last line on stdout is
 *   "dqn: solved|not solved: episodes E, steps S, mean length of the last 100 M, T s". */
#include "example_util.h" /* first: it sets _POSIX_C_SOURCE */

#include <loom/models.h>
#include <string.h>

#define PROG "dqn"

static int usage(const char *msg, const char *arg) {
  fprintf(stderr, "%s: %s%s%s\nusage: %s [--steps N] [--seed N] [--device cpu|cuda[:N]] [--out FILE] [--threads N] [--quiet]\n",
          PROG, msg, arg ? " " : "", arg ? arg : "", PROG);
  return 2;
}

/* Greedy episodes with the trained network: mean length. */
static double evaluate(loom_module *q, loom_device dev, uint64_t seed, int episodes) {
  loom_cartpole *env = loom_cartpole_new(seed);
  double total = 0;
  for (int e = 0; env && e < episodes; e++) {
    float obs[4];
    bool done = false;
    loom_cartpole_reset(env, obs);
    while (!done) {
      loom_scope_begin();
      loom_no_grad_begin();
      loom_tensor *v = loom_forward(q, loom_from_host(obs, LOOM_SHAPE(1, 4), LOOM_F32, dev));
      float qv[2] = {0, 0};
      if (!v || loom_to_host(v, qv, sizeof qv)) done = true;
      loom_no_grad_end();
      loom_scope_end();
      if (!done && loom_cartpole_step(env, qv[1] > qv[0], obs, &done) < 0) done = true;
      total += 1;
    }
  }
  loom_cartpole_free(env);
  return total / episodes;
}

int main(int argc, char **argv) {
  long steps = 50000, seed = 1, threads = 0;
  const char *device = "cpu", *out = NULL;
  bool quiet = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--quiet")) {
      quiet = true;
      continue;
    }
    if (strcmp(a, "--steps") && strcmp(a, "--seed") && strcmp(a, "--device") && strcmp(a, "--out") &&
        strcmp(a, "--threads"))
      return usage("unknown flag", a);
    if (!v) return usage("missing value for", a);
    i++;
    if (!strcmp(a, "--steps") && ex_parse_long(PROG, a, v, 1, LONG_MAX, &steps)) return 2;
    if (!strcmp(a, "--seed") && ex_parse_long(PROG, a, v, 0, LONG_MAX, &seed)) return 2;
    if (!strcmp(a, "--threads") && ex_parse_long(PROG, a, v, 0, INT_MAX, &threads)) return 2;
    if (!strcmp(a, "--device")) device = v;
    if (!strcmp(a, "--out")) out = v;
  }
  loom_device dev;
  int st = ex_device(PROG, device, 0, &dev);
  if (st) return st;
  if (threads) loom_set_num_threads((int)threads);
  loom_manual_seed((uint64_t)seed);
  loom_module *q = loom_model_dqn(NULL);
  if (!q || loom_module_to_device(q, dev)) {
    fprintf(stderr, "%s: %s\n", PROG, loom_last_error());
    loom_module_free(q);
    return 1;
  }
  printf("%s: DQN %lld parameters on %s, CartPole-v1, at most %ld steps, seed %ld\n", PROG,
         (long long)loom_module_num_params(q, false), loom_device_name(dev), steps, seed);
  fflush(stdout);
  loom_dqn_opts o = {.max_steps = steps, .seed = (uint64_t)seed, .verbose = !quiet};
  loom_dqn_result r;
  double t0 = ex_now();
  if (loom_dqn_train_cartpole(q, &o, &r)) {
    fprintf(stderr, "%s: training failed: %s\n", PROG, loom_last_error());
    loom_module_free(q);
    return 1;
  }
  double secs = ex_now() - t0;
  printf("%s: greedy evaluation: mean length %.1f over 10 episodes\n", PROG, evaluate(q, dev, (uint64_t)seed + 1000, 10));
  int rc = 0;
  if (out) {
    if (loom_module_save(q, out)) {
      fprintf(stderr, "%s: cannot save %s: %s\n", PROG, out, loom_last_error());
      rc = 1;
    } else {
      printf("%s: model saved: %s\n", PROG, out);
    }
  }
  printf("%s: %s: episodes %lld, steps %lld, mean length of the last 100 %.1f, %.1f s\n", PROG,
         r.solved ? "solved" : "not solved", (long long)r.episodes, (long long)r.steps, r.mean_last100, secs);
  loom_module_free(q);
  return rc;
}
