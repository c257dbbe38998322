// Reinforcement learning in the zoo (loom/models.h): the DQN Q-network
// against the PyTorch tutorial's twin, the CartPole-v1 environment against
// hand-computed dynamics and the Python twin's trajectories
// (tools/fixtures/gen_models_dqn.py), its termination and error rules, and
// loom_dqn_train_cartpole: argument checks, step and episode accounting, the
// stopping rule, determinism and a short learning run. The full run to a mean
// length of 195 is the ctest dqn_solves_cartpole (examples/dqn.c).
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "loom_test.h"
#include <loom/models.h>

namespace {

std::string err() { return loom_last_error(); }

std::vector<float> params_of(loom_module *m) {
  std::vector<float> out;
  loom_named_tensors *l = loom_module_named_parameters(m);
  for (int i = 0; l && i < l->n; i++)
    for (double v : V(l->tensors[i])) out.push_back((float)v);
  loom_named_tensors_free(l);
  return out;
}

// ---------------------------------------------------------------- the network

TEST(DqnModel, NamesShapesAndRegistry) {
  ScopeGuard g;
  loom_module *q = loom_model_dqn(nullptr);
  ASSERT_NE(q, nullptr) << err();
  EXPECT_STREQ(loom_module_type(q), "DQN");
  loom_named_tensors *l = loom_module_named_parameters(q);
  ASSERT_NE(l, nullptr);
  const char *names[] = {"layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias", "layer3.weight", "layer3.bias"};
  const loom_shape shapes[] = {LOOM_SHAPE(128, 4), LOOM_SHAPE(128), LOOM_SHAPE(128, 128),
                               LOOM_SHAPE(128), LOOM_SHAPE(2, 128), LOOM_SHAPE(2)};
  ASSERT_EQ(l->n, 6);
  for (int i = 0; i < 6; i++) {
    EXPECT_STREQ(l->names[i], names[i]);
    EXPECT_TRUE(loom_shape_equal(loom_shape_of(l->tensors[i]), shapes[i])) << names[i];
  }
  loom_named_tensors_free(l);
  Fixture fx("models_dqn");
  EXPECT_EQ(std::to_string(loom_module_num_params(q, false)), fx.meta("params_default"));
  loom_tensor *y = loom_forward(q, loom_randn(LOOM_SHAPE(5, 4), LOOM_F32, loom_cpu()));
  ASSERT_NE(y, nullptr) << err();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(y), LOOM_SHAPE(5, 2)));
  loom_module_free(q);

  const loom_model_info *info = loom_model_find("dqn");
  ASSERT_NE(info, nullptr) << err();
  EXPECT_EQ(info->kind, LOOM_INPUT_TENSOR);
  EXPECT_EQ(info->input[0], 4);
  EXPECT_EQ(info->input[1], 0);
  loom_model_opts o = {};
  o.hidden = 16;
  o.num_classes = 3;
  o.in_channels = 6;
  loom_module *m = loom_model_create("dqn", &o);
  ASSERT_NE(m, nullptr) << err();
  EXPECT_EQ(loom_module_num_params(m, false), 6 * 16 + 16 + 16 * 16 + 16 + 16 * 3 + 3);
  loom_module_free(m);
}

TEST(DqnModel, BadInputAndOptions) {
  ScopeGuard g;
  loom_model_opts bad = {};
  bad.num_classes = -1;
  EXPECT_EQ(loom_model_dqn(&bad), nullptr);
  EXPECT_NE(err().find("DQN: num_classes (-1)"), std::string::npos) << err();
  bad = {};
  bad.hidden = -4;
  EXPECT_EQ(loom_model_dqn(&bad), nullptr);
  loom_module *q = loom_model_dqn(nullptr);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(loom_forward(q, loom_zeros(LOOM_SHAPE(5, 3), LOOM_F32, loom_cpu())), nullptr);
  EXPECT_NE(err().find("DQN: expected floating states [N, 4], got f32 [5, 3]"), std::string::npos) << err();
  EXPECT_EQ(loom_forward(q, loom_zeros(LOOM_SHAPE(4), LOOM_F32, loom_cpu())), nullptr);
  EXPECT_NE(err().find("DQN: expected floating states"), std::string::npos) << err();
  EXPECT_EQ(loom_forward(q, loom_zeros(LOOM_SHAPE(2, 4), LOOM_I64, loom_cpu())), nullptr);
  EXPECT_NE(err().find("got i64 [2, 4]"), std::string::npos) << err();
  // A dtype the layers refuse names the layer.
  EXPECT_EQ(loom_forward(q, loom_zeros(LOOM_SHAPE(2, 4), LOOM_F64, loom_cpu())), nullptr);
  EXPECT_NE(err().find("DQN: at layer1: "), std::string::npos) << err();
  EXPECT_EQ(loom_forward(q, nullptr), nullptr);
  loom_module_free(q);
}

// The tutorial's network (hidden 32) loaded strictly: Q values, the smooth L1
// loss of Q(s, a) against targets and its gradients.
TEST(DqnModel, MatchesTorchTwin) {
  ScopeGuard g;
  Fixture fx("models_dqn");
  ASSERT_TRUE(fx.ok());
  loom_model_opts o = {};
  o.hidden = 32;
  loom_module *q = loom_model_dqn(&o);
  ASSERT_NE(q, nullptr);
  std::string path = std::string(LOOM_FIXTURE_DIR) + "/models_dqn_state.safetensors";
  ASSERT_EQ(loom_module_load(q, path.c_str(), true), 0) << err();
  loom_module_train(q, false);
  EXPECT_TRUE(close(loom_forward(q, fx["input"]), fx["q"], 1e-5));
  loom_module_train(q, true);
  loom_tensor *a = loom_unsqueeze(fx["actions"], 1);
  loom_tensor *loss = loom_smooth_l1_loss(loom_gather(loom_forward(q, fx["input"]), 1, a), fx["target"], 1.0,
                                          LOOM_REDUCTION_MEAN);
  ASSERT_NE(loss, nullptr) << err();
  EXPECT_NEAR(loom_item(loss), loom_item(fx["loss"]), 1e-5);
  ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << err();
  loom_named_tensors *l = loom_module_named_parameters(q);
  for (int i = 0; i < l->n; i++)
    EXPECT_TRUE(close(loom_grad(l->tensors[i]), fx[std::string("grad.") + l->names[i]], 1e-4)) << l->names[i];
  loom_named_tensors_free(l);
  loom_module_free(q);
}

// ---------------------------------------------------------------- the environment

// One Euler step of Gymnasium's equations, written out by hand.
void hand_step(const double s[4], int action, double out[4]) {
  const double g = 9.8, mc = 1.0, mp = 0.1, l = 0.5, tau = 0.02;
  double f = action ? 10.0 : -10.0, c = std::cos(s[2]), sn = std::sin(s[2]);
  double temp = (f + mp * l * s[3] * s[3] * sn) / (mc + mp);
  double th_acc = (g * sn - c * temp) / (l * (4.0 / 3.0 - mp * c * c / (mc + mp)));
  double x_acc = temp - mp * l * th_acc * c / (mc + mp);
  out[0] = s[0] + tau * s[1];
  out[1] = s[1] + tau * x_acc;
  out[2] = s[2] + tau * s[3];
  out[3] = s[3] + tau * th_acc;
}

TEST(CartPole, HandComputedFirstStep) {
  // From rest (x = theta = 0, no velocity) a push right gives the cart
  // xacc = 10/1.1 + 0.05 * 14.634 / 1.1 = 9.7561 and the pole
  // thetaacc = -(10/1.1) / (0.5 (4/3 - 0.1/1.1)) = -14.634.
  double rest[4] = {0, 0, 0, 0}, out[4];
  hand_step(rest, 1, out);
  EXPECT_NEAR(out[1], 0.02 * 9.7561, 1e-5);
  EXPECT_NEAR(out[3], 0.02 * -14.6341, 1e-5);
  EXPECT_EQ(out[0], 0);
  EXPECT_EQ(out[2], 0);
  // The environment from its seeded start state (observations are floats of
  // the double state, so compare at float precision).
  for (int action = 0; action < 2; action++) {
    loom_cartpole *env = loom_cartpole_new(42);
    ASSERT_NE(env, nullptr);
    float obs[4], next[4];
    loom_cartpole_reset(env, obs);
    double s[4] = {obs[0], obs[1], obs[2], obs[3]};
    hand_step(s, action, out);
    bool done = true;
    EXPECT_EQ(loom_cartpole_step(env, action, next, &done), 1.0);
    EXPECT_FALSE(done);
    for (int i = 0; i < 4; i++) EXPECT_NEAR(next[i], out[i], 1e-6) << "action " << action << " component " << i;
    // Explicit Euler: x moves with the old velocity, not the new one.
    EXPECT_GT(std::fabs(next[0] - (obs[0] + 0.02 * next[1])), 1e-3);
    loom_cartpole_free(env);
  }
}

TEST(CartPole, MatchesPythonTwinTrajectories) {
  Fixture fx("models_dqn_cartpole");
  ASSERT_TRUE(fx.ok());
  for (const char *name : {"right", "mixed", "balance"}) {
    std::string c = name;
    std::vector<double> states = V(fx[c + ".states"]), actions = V(fx[c + ".actions"]), dones = V(fx[c + ".done"]);
    int steps = std::stoi(fx.meta(c + ".steps"));
    ASSERT_EQ((int)actions.size(), steps);
    loom_cartpole *env = loom_cartpole_new(std::stoull(fx.meta(c + ".seed")));
    float obs[4];
    loom_cartpole_reset(env, obs);
    for (int i = 0; i < 4; i++) EXPECT_EQ(obs[i], (float)states[i]) << c << ": the start state";
    for (int t = 0; t < steps; t++) {
      bool done = false;
      ASSERT_EQ(loom_cartpole_step(env, (int)actions[t], obs, &done), 1.0) << c << " step " << t << ": " << err();
      for (int i = 0; i < 4; i++) ASSERT_NEAR(obs[i], states[4 * (t + 1) + i], 1e-5) << c << " step " << t + 1;
      ASSERT_EQ(done, dones[t] != 0) << c << " step " << t + 1;
    }
    EXPECT_EQ(loom_cartpole_step(env, 0, obs, nullptr), -1.0) << c;
    EXPECT_NE(err().find("CartPole: step after the episode ended"), std::string::npos) << err();
    loom_cartpole_free(env);
  }
  EXPECT_EQ(fx.meta("balance.steps"), "500");
  EXPECT_EQ(fx.meta("balance.terminated"), "0");
  EXPECT_EQ(fx.meta("right.terminated"), "1");
}

TEST(CartPole, TerminationRules) {
  // Always pushing one way: the episode ends when theta passes 12 degrees or
  // x passes 2.4, never before; the observation at the end shows which.
  const double theta_limit = 12 * 2 * M_PI / 360;
  for (int action = 0; action < 2; action++) {
    loom_cartpole *env = loom_cartpole_new(5 + action);
    float obs[4];
    loom_cartpole_reset(env, obs);
    bool done = false;
    int steps = 0;
    while (!done && steps < 600) {
      bool outside = std::fabs(obs[2]) > theta_limit || std::fabs(obs[0]) > 2.4;
      ASSERT_FALSE(outside) << "still running outside the bounds at step " << steps;
      ASSERT_EQ(loom_cartpole_step(env, action, obs, &done), 1.0);
      steps++;
    }
    EXPECT_TRUE(std::fabs(obs[2]) > theta_limit - 1e-6 || std::fabs(obs[0]) > 2.4 - 1e-6);
    EXPECT_LT(steps, 30);
    loom_cartpole_free(env);
  }
}

TEST(CartPole, ErrorsAndSeeds) {
  loom_cartpole *env = loom_cartpole_new(1);
  float obs[4];
  bool done = false;
  EXPECT_EQ(loom_cartpole_step(env, 0, obs, &done), -1.0);
  EXPECT_NE(err().find("CartPole: step before the first reset"), std::string::npos) << err();
  loom_cartpole_reset(env, obs);
  EXPECT_EQ(loom_cartpole_step(env, 2, obs, &done), -1.0);
  EXPECT_NE(err().find("CartPole: action 2 is not 0 (push left) or 1 (push right)"), std::string::npos) << err();
  EXPECT_EQ(loom_cartpole_step(env, -1, obs, &done), -1.0);
  EXPECT_EQ(loom_cartpole_step(nullptr, 0, obs, &done), -1.0);
  // A bad action changes nothing: the episode goes on.
  EXPECT_EQ(loom_cartpole_step(env, 1, obs, &done), 1.0);
  loom_cartpole_reset(nullptr, obs);  // no crash
  // Start states: uniform in [-0.05, 0.05], repeatable per seed, new each reset.
  loom_cartpole *a = loom_cartpole_new(9), *b = loom_cartpole_new(9), *c = loom_cartpole_new(10);
  float oa[4], ob[4], oc[4];
  double lo = 1, hi = -1;
  for (int e = 0; e < 200; e++) {
    loom_cartpole_reset(a, oa);
    loom_cartpole_reset(b, ob);
    loom_cartpole_reset(c, oc);
    EXPECT_EQ(std::memcmp(oa, ob, sizeof oa), 0);
    EXPECT_NE(std::memcmp(oa, oc, sizeof oa), 0);
    for (float v : oa) lo = std::fmin(lo, v), hi = std::fmax(hi, v);
  }
  EXPECT_GE(lo, -0.05);
  EXPECT_LE(hi, 0.05);
  EXPECT_LT(lo, -0.045);
  EXPECT_GT(hi, 0.045);
  for (loom_cartpole *e : {env, a, b, c}) loom_cartpole_free(e);
  loom_cartpole_free(nullptr);
}

// The baseline the learning tests beat: a uniformly random policy lasts about 22 steps.
double random_policy_mean(int episodes, uint64_t seed) {
  loom_cartpole *env = loom_cartpole_new(seed);
  uint64_t r = seed * 2654435761u + 1;
  double total = 0;
  for (int e = 0; e < episodes; e++) {
    float obs[4];
    bool done = false;
    loom_cartpole_reset(env, obs);
    while (!done) {
      r = r * 6364136223846793005ull + 1442695040888963407ull;
      total += loom_cartpole_step(env, (int)(r >> 63), obs, &done);
    }
  }
  loom_cartpole_free(env);
  return total / episodes;
}

TEST(CartPole, RandomPolicyLastsAbout22Steps) {
  double mean = random_policy_mean(1000, 3);
  EXPECT_GT(mean, 18);
  EXPECT_LT(mean, 26);
}

// ---------------------------------------------------------------- training

TEST(DqnTrain, BadArguments) {
  loom_dqn_result r;
  loom_module *seed = loom_model_seed(nullptr);
  EXPECT_NE(loom_dqn_train_cartpole(seed, nullptr, &r), 0);
  EXPECT_NE(err().find("loom_dqn_train_cartpole: q must be a loom_model_dqn, got SeedNet"), std::string::npos) << err();
  loom_module_free(seed);
  EXPECT_NE(loom_dqn_train_cartpole(nullptr, nullptr, &r), 0);
  loom_model_opts mo = {};
  mo.num_classes = 3;
  loom_module *three = loom_model_dqn(&mo);
  EXPECT_NE(loom_dqn_train_cartpole(three, nullptr, &r), 0);
  EXPECT_NE(err().find("CartPole needs a DQN of 4 inputs and 2 actions, got 4 and 3"), std::string::npos) << err();
  loom_module_free(three);

  loom_module *q = loom_model_dqn(nullptr);
  std::vector<float> before = params_of(q);
  struct bad_case {
    loom_dqn_opts o;
    const char *msg;
  };
  std::vector<bad_case> cases(7);
  cases[0].o.batch_size = 64, cases[0].o.buffer_size = 32, cases[0].msg = "batch_size 64 is larger than buffer_size 32";
  cases[1].o.gamma = 1.5, cases[1].msg = "gamma 1.5 is outside [0, 1]";
  cases[2].o.tau = LOOM_OPT_ZERO, cases[2].msg = "tau 0 is outside (0, 1]";
  cases[3].o.lr = -1, cases[3].msg = "lr -1 must be > 0";
  cases[4].o.eps_end = 2, cases[4].msg = "eps_start 1 and eps_end 2 must be in [0, 1]";
  cases[5].o.max_steps = -5, cases[5].msg = "must be >= 0";
  cases[6].o.grad_clip = -1, cases[6].msg = "grad_clip -1 must be > 0";
  for (const bad_case &c : cases) {
    r.steps = 99;
    EXPECT_NE(loom_dqn_train_cartpole(q, &c.o, &r), 0) << c.msg;
    EXPECT_NE(err().find(c.msg), std::string::npos) << err();
    EXPECT_EQ(r.steps, 0);
  }
  EXPECT_EQ(params_of(q), before) << "a refused call changes nothing";
  loom_module_free(q);
}

loom_dqn_opts short_opts(int64_t steps, uint64_t seed) {
  loom_dqn_opts o = {};
  o.max_steps = steps;
  o.batch_size = 32;
  o.seed = seed;
  return o;
}

TEST(DqnTrain, StepsEpisodesAndDeterminism) {
  int64_t live = loom_live_tensors();
  std::vector<float> first;
  loom_dqn_result r[2];
  for (int run = 0; run < 2; run++) {
    loom_manual_seed(7);
    loom_module *q = loom_model_dqn(nullptr);
    std::vector<float> init = params_of(q);
    loom_dqn_opts o = short_opts(400, 3);
    ASSERT_EQ(loom_dqn_train_cartpole(q, &o, &r[run]), 0) << err();
    EXPECT_EQ(r[run].steps, 400);
    // 400 steps of mostly random play: about 400 / 22 episodes.
    EXPECT_GE(r[run].episodes, 5);
    EXPECT_LE(r[run].episodes, 60);
    EXPECT_FALSE(r[run].solved);
    EXPECT_GT(r[run].mean_last100, 8);
    EXPECT_LT(r[run].mean_last100, 80);
    std::vector<float> now = params_of(q);
    EXPECT_NE(now, init) << "the Q-network learned nothing";
    if (run == 0) first = now;
    else EXPECT_EQ(now, first) << "the same seeds give the same run";
    loom_module_free(q);
  }
  EXPECT_EQ(r[0].episodes, r[1].episodes);
  EXPECT_EQ(r[0].mean_last100, r[1].mean_last100);
  EXPECT_EQ(loom_live_tensors(), live) << "training leaks tensors";
}

// The stopping rule: solved needs 100 finished episodes whose mean reaches
// the threshold. A purely random policy (epsilon 1) with threshold 1 stops at
// exactly episode 100.
TEST(DqnTrain, StopsWhenSolved) {
  loom_module *q = loom_model_dqn(nullptr);
  loom_dqn_opts o = short_opts(20000, 1);
  o.batch_size = 8;
  o.eps_start = 1, o.eps_end = 1, o.solved = 1;
  loom_dqn_result r;
  ASSERT_EQ(loom_dqn_train_cartpole(q, &o, &r), 0) << err();
  EXPECT_TRUE(r.solved);
  EXPECT_EQ(r.episodes, 100);
  EXPECT_GT(r.mean_last100, 15);
  EXPECT_LT(r.mean_last100, 30);
  EXPECT_NEAR((double)r.steps, 100 * r.mean_last100, 1e-6) << "every step belongs to one of the 100 episodes";
  loom_module_free(q);
}

// Greedy episodes of a trained network: mean length.
double greedy_mean(loom_module *q, int episodes, uint64_t seed) {
  loom_cartpole *env = loom_cartpole_new(seed);
  double total = 0;
  for (int e = 0; e < episodes; e++) {
    float obs[4];
    bool done = false;
    loom_cartpole_reset(env, obs);
    while (!done) {
      ScopeGuard g;
      loom_no_grad_begin();
      std::vector<double> v = V(loom_forward(q, loom_from_host(obs, LOOM_SHAPE(1, 4), LOOM_F32, loom_cpu())));
      loom_no_grad_end();
      total += loom_cartpole_step(env, v.size() == 2 && v[1] > v[0], obs, &done);
    }
  }
  loom_cartpole_free(env);
  return total / episodes;
}

// A bounded run (4,000 steps, a few seconds): the greedy policy must last far longer than
// the random policy's ~22 steps. The full run to a mean of 195 over 100
// episodes is the ctest dqn_solves_cartpole.
TEST(DqnTrain, LearnsToBalance) {
  loom_manual_seed(1);
  loom_module *q = loom_model_dqn(nullptr);
  double before = greedy_mean(q, 10, 77);
  loom_dqn_opts o = {};
  o.max_steps = 4000;
  o.seed = 1;
  loom_dqn_result r;
  ASSERT_EQ(loom_dqn_train_cartpole(q, &o, &r), 0) << err();
  double after = greedy_mean(q, 10, 77);
  printf("DQN, 4000 steps: %lld episodes, mean of the last 100 %.1f; greedy mean length %.1f before, %.1f after\n",
         (long long)r.episodes, r.mean_last100, before, after);
  EXPECT_GT(r.mean_last100, 40);
  EXPECT_GT(after, 100);
  loom_module_free(q);
}

TEST(DqnTrain, RunsOnCuda) {
  LOOM_REQUIRE_GPU();
  ScopeGuard g;
  loom_manual_seed(3);
  loom_module *q = loom_model_dqn(nullptr);
  loom_tensor *x = loom_randn(LOOM_SHAPE(6, 4), LOOM_F32, loom_cpu());
  loom_tensor *ref = loom_forward(q, x);
  ASSERT_EQ(loom_module_to_device(q, loom_cuda(0)), 0) << err();
  EXPECT_LT(rel_err(loom_forward(q, loom_to_device(x, loom_cuda(0))), ref), 1e-5);
  loom_dqn_opts o = short_opts(600, 2);
  loom_dqn_result r;
  ASSERT_EQ(loom_dqn_train_cartpole(q, &o, &r), 0) << err();
  EXPECT_EQ(r.steps, 600);
  EXPECT_GE(r.episodes, 5);
  EXPECT_TRUE(loom_device_equal(loom_device_of(loom_module_param(q, "layer1.weight")), loom_cuda(0)));
  loom_module_free(q);
}

}  // namespace
