/* CartPole-v1: the cart-pole of Barto, Sutton & Anderson (1983) as Gymnasium
 * implements it. State (x, x_dot, theta, theta_dot) in double precision,
 * observations in float; explicit Euler steps (Gymnasium's "euler"
 * integrator): positions move with the old velocities, velocities with the
 * new accelerations. Reward 1 for every step, the failing one included.
 *
 * The start state is uniform in [-0.05, 0.05]^4, drawn from a splitmix64
 * stream seeded by the caller (tools/fixtures/gen_cartpole.py has the same
 * generator and equations in Python, for the reference trajectory). */
#include <math.h>
#include <stdlib.h>

#include "models/cartpole_impl.h"
#include "models/models_impl.h"

#define GRAVITY 9.8
#define MASS_CART 1.0
#define MASS_POLE 0.1
#define TOTAL_MASS (MASS_CART + MASS_POLE)
#define HALF_LENGTH 0.5
#define POLE_MASS_LENGTH (MASS_POLE * HALF_LENGTH)
#define FORCE_MAG 10.0
#define TAU 0.02
#define THETA_LIMIT (12 * 2 * 3.14159265358979323846 / 360)
#define X_LIMIT 2.4
#define MAX_STEPS 500

struct loom_cartpole {
  double s[4];
  int steps;
  bool started, done;
  uint64_t rng;
};

uint64_t models_splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double models_uniform(uint64_t *state) { return (double)(models_splitmix64(state) >> 11) * 0x1.0p-53; }

loom_cartpole *loom_cartpole_new(uint64_t seed) {
  loom_cartpole *env = calloc(1, sizeof *env);
  if (!env) {
    core_set_error(LOOM_ERR_OOM, "loom_cartpole_new: out of host memory");
    return NULL;
  }
  env->rng = seed;
  return env;
}

void loom_cartpole_free(loom_cartpole *env) { free(env); }

static void observe(const loom_cartpole *env, float obs[4]) {
  if (!obs) return;
  for (int i = 0; i < 4; i++) obs[i] = (float)env->s[i];
}

void loom_cartpole_reset(loom_cartpole *env, float obs[4]) {
  if (!env) return;
  for (int i = 0; i < 4; i++) env->s[i] = -0.05 + 0.1 * models_uniform(&env->rng);
  env->steps = 0;
  env->started = true;
  env->done = false;
  observe(env, obs);
}

double loom_cartpole_step(loom_cartpole *env, int action, float obs[4], bool *done) {
  if (!env) {
    core_set_error(LOOM_ERR_INVALID, "CartPole: step on a NULL environment");
    return -1;
  }
  if (action != 0 && action != 1) {
    core_set_error(LOOM_ERR_INVALID, "CartPole: action %d is not 0 (push left) or 1 (push right)", action);
    return -1;
  }
  if (!env->started || env->done) {
    core_set_error(LOOM_ERR_INVALID, "CartPole: step %s; call loom_cartpole_reset first",
                   env->started ? "after the episode ended" : "before the first reset");
    return -1;
  }
  double x = env->s[0], x_dot = env->s[1], theta = env->s[2], theta_dot = env->s[3];
  double force = action == 1 ? FORCE_MAG : -FORCE_MAG;
  double c = cos(theta), s = sin(theta);
  double temp = (force + POLE_MASS_LENGTH * theta_dot * theta_dot * s) / TOTAL_MASS;
  double theta_acc = (GRAVITY * s - c * temp) / (HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * c * c / TOTAL_MASS));
  double x_acc = temp - POLE_MASS_LENGTH * theta_acc * c / TOTAL_MASS;
  x = x + TAU * x_dot;
  x_dot = x_dot + TAU * x_acc;
  theta = theta + TAU * theta_dot;
  theta_dot = theta_dot + TAU * theta_acc;
  env->s[0] = x, env->s[1] = x_dot, env->s[2] = theta, env->s[3] = theta_dot;
  env->steps++;
  bool terminated = x < -X_LIMIT || x > X_LIMIT || theta < -THETA_LIMIT || theta > THETA_LIMIT;
  env->done = terminated || env->steps >= MAX_STEPS;
  observe(env, obs);
  if (done) *done = env->done;
  return 1.0;
}

bool models_cartpole_terminated(const loom_cartpole *env) {
  const double *s = env->s;
  return s[0] < -X_LIMIT || s[0] > X_LIMIT || s[2] < -THETA_LIMIT || s[2] > THETA_LIMIT;
}
