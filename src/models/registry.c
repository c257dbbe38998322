/* The zoo by name: loom_model_names, loom_model_find, loom_model_create. */
#include <stdio.h>
#include <string.h>

#include "models/models_impl.h"

typedef struct entry {
  loom_model_info info;
  int kind;          /* which constructor */
  int depth;         /* VGG / ResNet */
  bool batch_norm;   /* VGG */
  int groups, width; /* ResNeXt, Wide ResNet */
} entry;

enum { SEED, MLP, SEED_CNN, LENET5, ALEXNET, VGG, RESNET, MOBILENET_V2, GPT, RNN_CLS, TRANSFORMER_CLS, TEXT_CLS, POINTER_NET, AUTOENCODER, VAE, GAN, DCGAN, GCN, DQN };

#define TV "torchvision.models."
#define IMAGENET {3, 224, 224}
static const entry zoo[] = {
    {{"seed", "the seed network: Linear 3-3, Sigmoid, Linear 3-2, ReLU, Linear 2-2, Softmax", "", {3, 0, 0}, LOOM_INPUT_TENSOR},
     SEED, 0, false, 0, 0},
    {{"mlp", "Flatten, Linear 784-256, ReLU, Linear 256-10", "", {1, 28, 28}, LOOM_INPUT_TENSOR}, MLP, 0, false, 0, 0},
    {{"seed_cnn", "conv 32 k3, ReLU, maxpool 2, conv 64 k3, ReLU, maxpool 2, Linear 1600-128, ReLU, Linear 128-10", "",
      {1, 28, 28}, LOOM_INPUT_TENSOR}, SEED_CNN, 0, false, 0, 0},
    {{"lenet5", "LeNet-5: conv 6 k5, Tanh, avgpool, conv 16 k5, Tanh, avgpool, Linear 400-120-84-10", "",
      {1, 28, 28}, LOOM_INPUT_TENSOR}, LENET5, 0, false, 0, 0},
    {{"alexnet", "AlexNet", TV "alexnet", IMAGENET, LOOM_INPUT_TENSOR}, ALEXNET, 0, false, 0, 0},
    {{"vgg11", "VGG-11", TV "vgg11", IMAGENET, LOOM_INPUT_TENSOR}, VGG, 11, false, 0, 0},
    {{"vgg11_bn", "VGG-11 with BatchNorm", TV "vgg11_bn", IMAGENET, LOOM_INPUT_TENSOR}, VGG, 11, true, 0, 0},
    {{"vgg13", "VGG-13", TV "vgg13", IMAGENET, LOOM_INPUT_TENSOR}, VGG, 13, false, 0, 0},
    {{"vgg13_bn", "VGG-13 with BatchNorm", TV "vgg13_bn", IMAGENET, LOOM_INPUT_TENSOR}, VGG, 13, true, 0, 0},
    {{"vgg16", "VGG-16", TV "vgg16", IMAGENET, LOOM_INPUT_TENSOR}, VGG, 16, false, 0, 0},
    {{"vgg16_bn", "VGG-16 with BatchNorm", TV "vgg16_bn", IMAGENET, LOOM_INPUT_TENSOR}, VGG, 16, true, 0, 0},
    {{"vgg19", "VGG-19", TV "vgg19", IMAGENET, LOOM_INPUT_TENSOR}, VGG, 19, false, 0, 0},
    {{"vgg19_bn", "VGG-19 with BatchNorm", TV "vgg19_bn", IMAGENET, LOOM_INPUT_TENSOR}, VGG, 19, true, 0, 0},
    {{"resnet18", "ResNet-18 (BasicBlock)", TV "resnet18", IMAGENET, LOOM_INPUT_TENSOR}, RESNET, 18, false, 0, 0},
    {{"resnet34", "ResNet-34 (BasicBlock)", TV "resnet34", IMAGENET, LOOM_INPUT_TENSOR}, RESNET, 34, false, 0, 0},
    {{"resnet50", "ResNet-50 (Bottleneck)", TV "resnet50", IMAGENET, LOOM_INPUT_TENSOR}, RESNET, 50, false, 0, 0},
    {{"resnet101", "ResNet-101 (Bottleneck)", TV "resnet101", IMAGENET, LOOM_INPUT_TENSOR}, RESNET, 101, false, 0, 0},
    {{"resnet152", "ResNet-152 (Bottleneck)", TV "resnet152", IMAGENET, LOOM_INPUT_TENSOR}, RESNET, 152, false, 0, 0},
    {{"resnext50_32x4d", "ResNeXt-50 32x4d (groups 32, width 4)", TV "resnext50_32x4d", IMAGENET, LOOM_INPUT_TENSOR}, RESNET, 50, false,
     32, 4},
    {{"resnext101_32x8d", "ResNeXt-101 32x8d (groups 32, width 8)", TV "resnext101_32x8d", IMAGENET, LOOM_INPUT_TENSOR}, RESNET, 101,
     false, 32, 8},
    {{"wide_resnet50_2", "Wide ResNet-50-2 (width 128)", TV "wide_resnet50_2", IMAGENET, LOOM_INPUT_TENSOR}, RESNET, 50, false, 1, 128},
    {{"wide_resnet101_2", "Wide ResNet-101-2 (width 128)", TV "wide_resnet101_2", IMAGENET, LOOM_INPUT_TENSOR}, RESNET, 101, false, 1,
     128},
    {{"mobilenet_v2", "MobileNetV2 (inverted residuals, depthwise convs)", TV "mobilenet_v2", IMAGENET, LOOM_INPUT_TENSOR},
     MOBILENET_V2, 0, false, 0, 0},
    {{"gpt2", "GPT-2 124M decoder LM (12 layers, 12 heads, 768 wide, n_ctx 1024, tied lm_head)",
      "transformers.GPT2LMHeadModel", {1024, 0, 0}, LOOM_INPUT_TOKENS}, GPT, 0, false, 0, 0},
    {{"rnn_classifier", "char-RNN classifier: Elman RNN (tanh) 57-128 over one-hot letters, Linear on the last hidden state",
      "gen_models_seq.RNNClassifier (nn.RNN + nn.Linear)", {16, 57, 0}, LOOM_INPUT_SEQUENCE}, RNN_CLS, LOOM_RNN_TANH, false, 0, 0},
    {{"lstm_classifier", "char-RNN classifier: LSTM 57-128 over one-hot letters, Linear on the last hidden state",
      "gen_models_seq.RNNClassifier (nn.LSTM + nn.Linear)", {16, 57, 0}, LOOM_INPUT_SEQUENCE}, RNN_CLS, LOOM_RNN_LSTM, false, 0, 0},
    {{"gru_classifier", "char-RNN classifier: GRU 57-128 over one-hot letters, Linear on the last hidden state",
      "gen_models_seq.RNNClassifier (nn.GRU + nn.Linear)", {16, 57, 0}, LOOM_INPUT_SEQUENCE}, RNN_CLS, LOOM_RNN_GRU, false, 0, 0},
    {{"transformer_classifier", "Transformer encoder classifier: embedding 256x128, sinusoidal positions, 2 layers, 4 heads, "
      "masked mean, Linear", "gen_models_seq.TransformerClassifier (nn.TransformerEncoder)", {128, 0, 0}, LOOM_INPUT_TOKENS},
     TRANSFORMER_CLS, 0, false, 0, 0},
    {{"text_classifier", "text classifier: embedding 256x64 (padding 0), mean over the tokens, Linear",
      "gen_models_seq.TextClassifier (nn.Embedding + nn.Linear)", {128, 0, 0}, LOOM_INPUT_TOKENS}, TEXT_CLS, 0, false, 0, 0},
    {{"pointer_net", "pointer network: LSTM encoder, LSTMCell decoder, additive attention pointing at input positions",
      "gen_models_seq.PointerNet", {10, 1, 0}, LOOM_INPUT_SEQUENCE}, POINTER_NET, 0, false, 0, 0},
    {{"autoencoder", "autoencoder: Linear 784-128-64-12-3 and back (ReLU between, Sigmoid out) -> reconstruction [N, 784]",
      "gen_models_gen.Autoencoder", {784, 0, 0}, LOOM_INPUT_TENSOR}, AUTOENCODER, 0, false, 0, 0},
    {{"vae", "VAE of the PyTorch examples (vae/main.py): 784-400-20 (mu, logvar) and back -> probabilities [N, 784]",
      "gen_models_gen.VAE (examples/vae/main.py)", {784, 0, 0}, LOOM_INPUT_TENSOR}, VAE, 0, false, 0, 0},
    {{"gan", "MLP GAN: generator noise 100-256-512-1024-784 (LeakyReLU 0.2, Tanh), discriminator 784-512-256-1 -> D(G(z)) logits",
      "gen_models_gen.GAN", {100, 0, 0}, LOOM_INPUT_TENSOR}, GAN, 0, false, 0, 0},
    {{"dcgan", "DCGAN for 28x28: transposed-conv generator 1-7-14-28 with BatchNorm, conv discriminator -> D(G(z)) logits",
      "gen_models_gen.DCGAN (the PyTorch DCGAN tutorial's Generator, Discriminator)", {100, 0, 0}, LOOM_INPUT_TENSOR},
     DCGAN, 0, false, 0, 0},
    {{"gcn", "GCN (Kipf & Welling): two graph convolutions A_hat H W + b, ReLU and dropout between; karate club",
      "gen_models_gcn.GCN (plain-torch twin of 2 PyG GCNConv)", {34, 34, 0}, LOOM_INPUT_GRAPH}, GCN, 0, false, 0, 0},
    {{"dqn", "DQN Q-network of the PyTorch DQN tutorial: MLP 4-128-128-2 (ReLU), states -> Q values; CartPole-v1",
      "gen_models_dqn.DQN (the PyTorch DQN tutorial's layer1, layer2, layer3)", {4, 0, 0}, LOOM_INPUT_TENSOR}, DQN, 0, false, 0, 0},
};
#define N_ZOO (int)(sizeof zoo / sizeof zoo[0])

const char *const *loom_model_names(void) {
  static const char *names[N_ZOO + 1];
  if (!names[0])
    for (int i = 0; i < N_ZOO; i++) names[i] = zoo[i].info.name;
  return names;
}

static const entry *find(const char *name) {
  for (int i = 0; name && i < N_ZOO; i++)
    if (!strcmp(zoo[i].info.name, name)) return &zoo[i];
  char known[1024] = "";
  size_t len = 0;
  for (int i = 0; i < N_ZOO && len < sizeof known; i++)
    len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "", zoo[i].info.name);
  core_set_error(LOOM_ERR_INVALID, "unknown model '%s'; known models: %s", name ? name : "(null)", known);
  return NULL;
}

const loom_model_info *loom_model_find(const char *name) {
  const entry *e = find(name);
  return e ? &e->info : NULL;
}

loom_module *loom_model_create(const char *name, const loom_model_opts *opts) {
  const entry *e = find(name);
  if (!e) return NULL;
  loom_model_opts o = opts ? *opts : (loom_model_opts){0};
  if (e->groups) {
    o.groups = e->groups;
    o.width_per_group = e->width;
  }
  switch (e->kind) {
    case SEED: return loom_model_seed(&o);
    case MLP: return loom_model_mlp(&o);
    case SEED_CNN: return loom_model_seed_cnn(&o);
    case LENET5: return loom_model_lenet5(&o);
    case ALEXNET: return loom_model_alexnet(&o);
    case VGG: return loom_model_vgg(e->depth, e->batch_norm, &o);
    case RESNET: return loom_model_resnet(e->depth, &o);
    case MOBILENET_V2: return loom_model_mobilenet_v2(&o);
    case GPT: return loom_model_gpt(&o);
    case RNN_CLS: return loom_model_rnn_classifier((loom_rnn_mode)e->depth, &o);
    case TRANSFORMER_CLS: return loom_model_transformer_classifier(&o);
    case TEXT_CLS: return loom_model_text_classifier(&o);
    case POINTER_NET: return loom_model_pointer_net(&o);
    case AUTOENCODER: return loom_model_autoencoder(&o);
    case VAE: return loom_model_vae(&o);
    case GAN: return loom_model_gan(&o);
    case DCGAN: return loom_model_dcgan(&o);
    case GCN: return loom_model_gcn(&o);
    case DQN: return loom_model_dqn(&o);
    default: core_set_error(LOOM_ERR_INTERNAL, "model '%s' has no constructor", name); return NULL;
  }
}
