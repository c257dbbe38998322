// The module interface (include/loom/nn.h): user-defined modules, children,
// parameters, buffers, names, sharing, freezing, train/eval, device and dtype
// moves, Sequential / ModuleList, forward hooks, state_dict save and load.
#include <cstdio>
#include <string>

#include "loom_test.h"

namespace {

// y = x * scale + shift, with scale a parameter and shift a buffer.
loom_tensor *affine_forward(loom_module *m, loom_tensor *const *in, int n) {
  if (n != 1) return nullptr;
  loom_tensor *y = loom_mul(in[0], loom_module_param(m, "scale"));
  return loom_add(y, loom_module_buffer(m, "shift"));
}

int64_t affine_macs(const loom_module *, loom_tensor *const *in, int, const loom_tensor *) {
  return loom_numel(in[0]);
}

const loom_module_kind affine_kind = {"Affine", affine_forward, nullptr, affine_macs, nullptr};

loom_module *affine(int64_t n, double scale, double shift) {
  loom_module *m = loom_module_new(&affine_kind, nullptr);
  ScopeGuard g;
  loom_module_add_parameter(m, "scale", loom_full(LOOM_SHAPE(n), scale, LOOM_F32, loom_cpu()));
  loom_module_add_buffer(m, "shift", loom_full(LOOM_SHAPE(n), shift, LOOM_F32, loom_cpu()), true);
  return m;
}

const loom_module_kind net_kind = {"Net", nullptr, nullptr, nullptr, nullptr};

std::string err() { return loom_last_error(); }

TEST(Module, ParametersBuffersAndNames) {
  int64_t live = loom_live_tensors();
  {
    ScopeGuard g;
    loom_module *net = loom_module_new(&net_kind, nullptr);
    loom_module *features = LOOM_SEQUENTIAL(affine(3, 2, 1), affine(3, 3, 0));
    ASSERT_NE(features, nullptr) << err();
    ASSERT_EQ(loom_module_add(net, "features", features), 0);
    ASSERT_EQ(loom_module_add(net, "head", affine(3, 1, 0)), 0);
    EXPECT_NE(loom_module_add_buffer(net, "steps", loom_zeros(LOOM_SHAPE(), LOOM_I64, loom_cpu()), false),
              nullptr);

    loom_named_tensors *p = loom_module_named_parameters(net);
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(p->n, 3);
    EXPECT_STREQ(p->names[0], "features.0.scale");
    EXPECT_STREQ(p->names[1], "features.1.scale");
    EXPECT_STREQ(p->names[2], "head.scale");
    EXPECT_TRUE(loom_requires_grad(p->tensors[0]));
    loom_named_tensors_free(p);

    loom_named_tensors *b = loom_module_named_buffers(net);
    ASSERT_EQ(b->n, 4);
    EXPECT_STREQ(b->names[0], "steps");
    EXPECT_STREQ(b->names[3], "head.shift");
    loom_named_tensors_free(b);

    EXPECT_EQ(loom_module_param(net, "features.1.scale"), loom_module_param(loom_module_child(net, "features.1"), "scale"));
    EXPECT_EQ(loom_module_param(net, "features.2.scale"), nullptr);
    EXPECT_NE(err().find("no submodule '2'"), std::string::npos) << err();
    EXPECT_EQ(loom_module_buffer(net, "head.scale"), nullptr);
    EXPECT_NE(err().find("no buffer"), std::string::npos) << err();
    EXPECT_EQ(loom_module_num_params(net, false), 9);
    EXPECT_STREQ(loom_module_type(loom_module_child(net, "features")), "Sequential");

    // state_dict: parameters and persistent buffers only ("steps" is not persistent).
    loom_tensor_map *sd = loom_module_state_dict(net);
    ASSERT_NE(sd, nullptr);
    EXPECT_EQ(loom_map_size(sd), 6);
    EXPECT_NE(loom_map_get(sd, "features.0.shift"), nullptr);
    EXPECT_EQ(loom_map_get(sd, "steps"), nullptr);
    loom_map_free(sd);
    loom_module_free(net);
  }
  EXPECT_EQ(loom_live_tensors(), live) << "module tensors leaked";
}

TEST(Module, BadNamesAndNullChildren) {
  ScopeGuard g;
  loom_module *m = affine(2, 1, 0);
  EXPECT_EQ(loom_module_add_parameter(m, "scale", loom_ones(LOOM_SHAPE(2), LOOM_F32, loom_cpu())), nullptr);
  EXPECT_NE(err().find("already has a member named 'scale'"), std::string::npos) << err();
  EXPECT_NE(loom_module_add(m, "a.b", affine(2, 1, 0)), 0);
  EXPECT_NE(err().find("without '.'"), std::string::npos) << err();
  EXPECT_EQ(loom_module_add_parameter(m, "idx", loom_zeros(LOOM_SHAPE(2), LOOM_I64, loom_cpu())), nullptr);
  EXPECT_NE(err().find("floating leaf"), std::string::npos) << err();
  loom_clear_error();
  loom_module *mods[2] = {affine(2, 1, 0), nullptr};
  EXPECT_EQ(loom_nn_sequential(2, mods), nullptr);
  EXPECT_NE(err().find("module 1"), std::string::npos) << err();
  loom_module *list = loom_nn_module_list();
  EXPECT_EQ(loom_module_append(list, affine(2, 1, 0)), 0);
  EXPECT_EQ(loom_forward(list, loom_ones(LOOM_SHAPE(2), LOOM_F32, loom_cpu())), nullptr);
  EXPECT_NE(err().find("ModuleList has no forward"), std::string::npos) << err();
  loom_module_free(list);
  loom_module_free(m);
}

TEST(Module, SequentialForwardBackwardAndErrorPath) {
  ScopeGuard g;
  loom_module *seq = LOOM_SEQUENTIAL(affine(3, 2, 1), LOOM_SEQUENTIAL(affine(3, 3, 0)));
  ASSERT_NE(seq, nullptr) << err();
  loom_tensor *x = T({1, 2, 3}, LOOM_SHAPE(3));
  loom_tensor *y = loom_forward(seq, x);
  EXPECT_EQ(V(y), (std::vector<double>{9, 15, 21}));  // (x * 2 + 1) * 3
  ASSERT_EQ(loom_backward(loom_sum(y, nullptr, 0, false), nullptr, false), 0) << err();
  // d/dscale0 = x * 3, d/dscale1 = x * 2 + 1
  EXPECT_EQ(V(loom_grad(loom_module_param(seq, "0.scale"))), (std::vector<double>{3, 6, 9}));
  EXPECT_EQ(V(loom_grad(loom_module_param(seq, "1.0.scale"))), (std::vector<double>{3, 5, 7}));
  loom_module_zero_grad(seq);
  EXPECT_EQ(loom_grad(loom_module_param(seq, "0.scale")), nullptr);

  // A failing child deep inside reports its path.
  EXPECT_EQ(loom_forward(seq, T({1, 2}, LOOM_SHAPE(2))), nullptr);
  EXPECT_EQ(err().rfind("at 0: ", 0), 0u) << err();
  loom_module_free(seq);
  loom_module *nested = LOOM_SEQUENTIAL(LOOM_SEQUENTIAL(affine(3, 1, 0)));
  EXPECT_EQ(loom_forward(nested, T({1, 2}, LOOM_SHAPE(2))), nullptr);
  EXPECT_EQ(err().rfind("at 0.0: ", 0), 0u) << err();
  loom_module_free(nested);
}

TEST(Module, SharedParametersAndModules) {
  ScopeGuard g;
  loom_module *a = affine(2, 2, 0);
  loom_module *b = loom_module_new(&affine_kind, nullptr);
  loom_module_add_parameter(b, "scale", loom_module_param(a, "scale"));  // tied weights
  loom_module_add_buffer(b, "shift", loom_zeros(LOOM_SHAPE(2), LOOM_F32, loom_cpu()), true);
  loom_module *shared = affine(2, 5, 0);
  loom_module *seq = LOOM_SEQUENTIAL(a, b, loom_module_retain(shared), shared);
  ASSERT_NE(seq, nullptr) << err();
  loom_named_tensors *p = loom_module_named_parameters(seq);
  ASSERT_EQ(p->n, 2);  // a's scale (also b's) and shared's scale, once each
  EXPECT_STREQ(p->names[0], "0.scale");
  EXPECT_STREQ(p->names[1], "2.scale");
  loom_named_tensors_free(p);
  loom_tensor_map *sd = loom_module_state_dict(seq);
  EXPECT_EQ(loom_map_size(sd), 8);  // every name, as in PyTorch
  loom_map_free(sd);
  EXPECT_EQ(loom_module_num_params(seq, false), 4);

  // Gradients from both uses of a tied weight accumulate.
  loom_tensor *y = loom_forward(seq, T({1, 1}, LOOM_SHAPE(2)));
  EXPECT_EQ(V(y), (std::vector<double>{100, 100}));  // 1 * 2 * 2 * 5 * 5
  loom_backward(loom_sum(y, nullptr, 0, false), nullptr, false);
  EXPECT_EQ(V(loom_grad(loom_module_param(seq, "0.scale"))), (std::vector<double>{100, 100}));
  loom_module_free(seq);
}

TEST(Module, FreezingTrainEvalApply) {
  ScopeGuard g;
  loom_module *seq = LOOM_SEQUENTIAL(affine(3, 1, 0), affine(2, 1, 0));
  loom_module_requires_grad(loom_module_child(seq, "0"), false);
  EXPECT_EQ(loom_module_num_params(seq, true), 2);
  EXPECT_EQ(loom_module_num_params(seq, false), 5);
  EXPECT_TRUE(loom_module_training(loom_module_child(seq, "1")));
  loom_module_train(seq, false);
  EXPECT_FALSE(loom_module_training(seq));
  EXPECT_FALSE(loom_module_training(loom_module_child(seq, "1")));

  std::vector<std::string> order;
  loom_module_apply(
      seq,
      [](loom_module *m, void *user) {
        auto *o = static_cast<std::vector<std::string> *>(user);
        o->push_back(loom_module_type(m));
        if (std::string(loom_module_type(m)) == "Affine") loom_fill_(loom_module_param(m, "scale"), 7);
      },
      &order);
  EXPECT_EQ(order, (std::vector<std::string>{"Affine", "Affine", "Sequential"}));
  EXPECT_EQ(V(loom_module_param(seq, "1.scale")), (std::vector<double>{7, 7}));
  loom_module_free(seq);
}

TEST(Module, ForwardHookSeesEveryModule) {
  ScopeGuard g;
  loom_module *seq = LOOM_SEQUENTIAL(affine(2, 1, 0), affine(2, 1, 0));
  std::vector<std::string> seen;
  loom_set_forward_hook(
      [](loom_module *m, loom_tensor *const *, int, const loom_tensor *out, void *user) {
        static_cast<std::vector<std::string> *>(user)->push_back(std::string(loom_module_type(m)) + loom_shape_str(loom_shape_of(out)));
      },
      &seen);
  loom_forward(seq, T({1, 2}, LOOM_SHAPE(2)));
  loom_set_forward_hook(nullptr, nullptr);
  EXPECT_EQ(seen, (std::vector<std::string>{"Affine[2]", "Affine[2]", "Sequential[2]"}));
  loom_module_free(seq);
}

TEST(Module, ToDtypeKeepsHandlesAndMovesGrads) {
  ScopeGuard g;
  loom_module *m = affine(2, 3, 1);
  loom_tensor *scale = loom_module_param(m, "scale");
  loom_backward(loom_sum(loom_forward(m, T({1, 2}, LOOM_SHAPE(2))), nullptr, 0, false), nullptr, false);
  ASSERT_EQ(loom_module_to_dtype(m, LOOM_F64), 0) << err();
  EXPECT_EQ(loom_module_param(m, "scale"), scale);
  EXPECT_EQ(loom_dtype_of(scale), LOOM_F64);
  EXPECT_EQ(loom_dtype_of(loom_grad(scale)), LOOM_F64);
  EXPECT_EQ(loom_dtype_of(loom_module_buffer(m, "shift")), LOOM_F64);
  EXPECT_EQ(V(loom_forward(m, T({1, 2}, LOOM_SHAPE(2), LOOM_F64))), (std::vector<double>{4, 7}));
  EXPECT_NE(loom_module_to_dtype(m, LOOM_I32), 0);
  EXPECT_NE(err().find("floating dtype"), std::string::npos) << err();
  loom_module_free(m);
}

TEST(Module, ToCudaAndBack) {
  LOOM_REQUIRE_GPU();
  ScopeGuard g;
  loom_module *m = affine(2, 3, 1);
  loom_tensor *scale = loom_module_param(m, "scale");
  ASSERT_EQ(loom_module_to_device(m, loom_cuda(0)), 0) << err();
  EXPECT_EQ(loom_device_of(scale).type, LOOM_CUDA);
  loom_tensor *y = loom_forward(m, T({1, 2}, LOOM_SHAPE(2), LOOM_F32, loom_cuda(0)));
  EXPECT_EQ(V(y), (std::vector<double>{4, 7}));
  ASSERT_EQ(loom_module_to_device(m, loom_cpu()), 0) << err();
  EXPECT_EQ(loom_device_of(loom_module_buffer(m, "shift")).type, LOOM_CPU);
  loom_module_free(m);
}

TEST(Module, StateDictRoundTripAndStrictErrors) {
  ScopeGuard g;
  std::string path = testing::TempDir() + "loom_module_sd.safetensors";
  loom_module *a = LOOM_SEQUENTIAL(affine(2, 3, 1), affine(2, 5, 2));
  ASSERT_EQ(loom_module_save(a, path.c_str()), 0) << err();
  loom_module *b = LOOM_SEQUENTIAL(affine(2, 0, 0), affine(2, 0, 0));
  ASSERT_EQ(loom_module_load(b, path.c_str(), true), 0) << err();
  EXPECT_EQ(V(loom_module_param(b, "1.scale")), (std::vector<double>{5, 5}));
  EXPECT_EQ(V(loom_module_buffer(b, "0.shift")), (std::vector<double>{1, 1}));

  // Missing and unexpected keys: strict fails and changes nothing; non-strict loads the rest.
  loom_module *c = LOOM_SEQUENTIAL(affine(2, 0, 0), affine(2, 0, 0), affine(2, 0, 0));
  EXPECT_NE(loom_module_load(c, path.c_str(), true), 0);
  EXPECT_NE(err().find("2 missing keys: 2.scale, 2.shift"), std::string::npos) << err();
  EXPECT_EQ(V(loom_module_param(c, "0.scale")), (std::vector<double>{0, 0}));
  ASSERT_EQ(loom_module_load(c, path.c_str(), false), 0) << err();
  EXPECT_EQ(V(loom_module_param(c, "0.scale")), (std::vector<double>{3, 3}));
  loom_module *d = LOOM_SEQUENTIAL(affine(2, 0, 0));
  EXPECT_NE(loom_module_load(d, path.c_str(), true), 0);
  EXPECT_NE(err().find("unexpected keys: 1.scale, 1.shift"), std::string::npos) << err();

  // A shape mismatch fails even when not strict, and names the key and both shapes.
  loom_module *e = LOOM_SEQUENTIAL(affine(2, 0, 0), affine(3, 0, 0));
  EXPECT_NE(loom_module_load(e, path.c_str(), false), 0);
  EXPECT_NE(err().find("1.scale: checkpoint [2], model [3]"), std::string::npos) << err();
  EXPECT_EQ(V(loom_module_param(e, "0.scale")), (std::vector<double>{0, 0}));

  // Missing and corrupt files are I/O errors.
  EXPECT_EQ(loom_module_load(e, (path + ".none").c_str(), true), LOOM_ERR_IO);
  FILE *f = fopen(path.c_str(), "r+b");
  ASSERT_NE(f, nullptr);
  fputs("garbage!", f);
  fclose(f);
  EXPECT_EQ(loom_module_load(b, path.c_str(), true), LOOM_ERR_IO);
  EXPECT_EQ(V(loom_module_param(b, "1.scale")), (std::vector<double>{5, 5}));
  std::remove(path.c_str());
  for (loom_module *m : {a, b, c, d, e}) loom_module_free(m);
}

}  // namespace
