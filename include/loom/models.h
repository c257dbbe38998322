/* Loom model zoo: ready-made networks, each a function returning a module.
 *
 * Vision models follow torchvision: the same layers, parameter and buffer
 * names, shapes, order and default initialisation, so a torchvision
 * state_dict saved as safetensors loads with loom_module_load (strict), and
 * a Loom checkpoint loads into torchvision. Inputs are NCHW images [N, C, H, W].
 *
 * Every constructor takes a loom_model_opts (NULL or all-zero = the model's
 * defaults) and returns a new module on the CPU in f32 (NULL + loom_last_error
 * on bad options). A model's forward checks its input (dims, channels, the
 * smallest image its stem allows) and errors name the model and the layer:
 * "ResNet-50: at layer1.0.conv1: Conv2d: ...".
 *
 * By name (tools, benchmarks): loom_model_create("resnet50", &opts); the
 * names are listed by loom_model_names() and described by loom_model_find(). */
#ifndef LOOM_MODELS_H
#define LOOM_MODELS_H

#include "loom/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The first layers of an image model. IMAGENET is torchvision's stem (ResNet:
 * 7x7 stride-2 conv + 3x3 stride-2 max pool, a quarter of the resolution
 * before layer1). CIFAR keeps small images (28x28, 32x32) whole: ResNet's conv1
 * becomes 3x3 stride 1 and its max pool an Identity (same parameter names,
 * conv1.weight [64, C, 3, 3]); MobileNetV2's first conv gets stride 1;
 * AlexNet's first conv becomes 3x3 stride 1 padding 1; VGG's average pool
 * becomes 1x1 and its classifier's first Linear takes 512 inputs. */
typedef enum loom_model_stem { LOOM_STEM_IMAGENET = 0, LOOM_STEM_CIFAR = 1 } loom_model_stem;

typedef struct loom_model_opts {
  int64_t num_classes;      /* 0 = the model's default: 1000 for the ImageNet models, 10 otherwise */
  int64_t in_channels;      /* 0 = 3 (1 for mlp, seed_cnn, lenet5: Fashion-MNIST) */
  double dropout;           /* 0 = the default (AlexNet, VGG 0.5; MobileNetV2 0.2) unless set_dropout */
  bool set_dropout;         /* take dropout as given, 0 included (no dropout) */
  loom_model_stem stem;     /* ImageNet (default) or CIFAR */
  bool zero_init_residual;  /* ResNet: zero the last BN weight of each residual branch */
  int groups;               /* ResNet Bottleneck: 0 = 1 (ResNeXt-50 32x4d: 32) */
  int width_per_group;      /* ResNet Bottleneck: 0 = 64 (ResNeXt-50 32x4d: 4; Wide-ResNet-50-2: 128) */
  double width_mult;        /* MobileNetV2: 0 = 1.0 */
  int64_t hidden;           /* hidden units: mlp 256, RNN classifiers 128, autoencoder/VAE first layer (0 = default) */
  /* Sequence, generative and graph models (0 = the model's default): */
  int64_t vocab_size;       /* token models: GPT 50257, the text classifiers 256 (bytes) */
  int64_t max_len;          /* longest sequence: GPT n_ctx 1024, Transformer classifier 512 */
  int64_t embed_dim;        /* GPT n_embd 768; Transformer classifier d_model 128; text classifier 64 */
  int num_layers;           /* GPT n_layer 12; Transformer classifier 2; RNN classifiers 1 */
  int num_heads;            /* GPT n_head 12; Transformer classifier 4 */
  bool bidirectional;       /* RNN classifiers */
  int64_t latent_dim;       /* VAE 20, GAN / DCGAN 100 (the noise size) */
} loom_model_opts;

/* The seed network (Linear 3-3, Sigmoid, Linear 3-2, ReLU, Linear 2-2,
 * Softmax over dim 1; input [N, 3]): a Sequential. */
loom_module *loom_model_seed(const loom_model_opts *opts);
/* MLP: Flatten, Linear 784-hidden, ReLU, Linear hidden-num_classes on
 * [N, in_channels, 28, 28] (a Sequential: 1.weight, 3.weight ...). */
loom_module *loom_model_mlp(const loom_model_opts *opts);
/* The seed CNN of SPEC section 4 for [N, in_channels, 28, 28]: conv 32 k3,
 * ReLU, maxpool 2, conv 64 k3, ReLU, maxpool 2, Flatten, Linear 1600-128, ReLU,
 * Linear 128-num_classes (a Sequential: 0.weight, 3.weight, 7.weight, 9.weight). */
loom_module *loom_model_seed_cnn(const loom_model_opts *opts);
/* LeNet-5 for 28x28 (or larger) images: features = conv 6 k5 padding 2, Tanh,
 * AvgPool 2, conv 16 k5, Tanh, AvgPool 2; classifier = Linear 400-120, Tanh,
 * Linear 120-84, Tanh, Linear 84-num_classes. At 32x32 the first conv keeps
 * padding 2 too (not in torchvision; names features.0.weight, classifier.0.weight). */
loom_module *loom_model_lenet5(const loom_model_opts *opts);
/* torchvision AlexNet: features, avgpool (adaptive 6x6), classifier. */
loom_module *loom_model_alexnet(const loom_model_opts *opts);
/* torchvision VGG-11/13/16/19 (configurations A, B, D, E), with BatchNorm
 * after every conv when batch_norm: features, avgpool (adaptive 7x7), classifier. */
loom_module *loom_model_vgg(int depth, bool batch_norm, const loom_model_opts *opts);
/* torchvision ResNet-18/34 (BasicBlock) and -50/101/152 (Bottleneck): conv1,
 * bn1, relu, maxpool, layer1..layer4, avgpool, fc. groups / width_per_group
 * widen the Bottleneck's 3x3 conv (ResNeXt, Wide ResNet); BasicBlock takes
 * only the defaults, as in torchvision. */
loom_module *loom_model_resnet(int depth, const loom_model_opts *opts);
/* torchvision MobileNetV2: features (stem conv, 17 inverted residual blocks,
 * 1x1 conv to 1280 channels), global average pool, classifier (Dropout, Linear).
 * Channel counts are width_mult times torchvision's, rounded to multiples of 8. */
loom_module *loom_model_mobilenet_v2(const loom_model_opts *opts);

/* ---- language models ----
 * GPT-2 (Hugging Face GPT2LMHeadModel): token ids [N, L] (LOOM_I64 or
 * LOOM_I32, L <= n_ctx, ids in [0, vocab)) -> logits [N, L, vocab]. Options:
 * vocab_size, max_len (n_ctx), embed_dim (n_embd), num_layers (n_layer),
 * num_heads (n_head), dropout (resid/embd/attn pdrop, 0.1 unless
 * set_dropout); all-zero = GPT-2 124M. Parameters carry Hugging Face's names
 * and layouts (transformer.wte.weight, transformer.h.0.attn.c_attn.weight
 * stored as GPT-2's Conv1D [in, out], transformer.ln_f.weight) and lm_head is
 * tied to wte (one tensor under both names in the state_dict, counted once).
 * Hugging Face's init: N(0, 0.02), c_proj weights N(0, 0.02 / sqrt(2 n_layer)),
 * biases 0, LayerNorm 1 / 0. Causal fused attention, GELU tanh. */
loom_module *loom_model_gpt(const loom_model_opts *opts);
/* Mean next-token cross-entropy of a GPT on ids [N, L]: logits at positions
 * 0..L-2 against ids 1..L-1 (Hugging Face's labels = input_ids). */
loom_tensor *loom_gpt_loss(loom_module *gpt, const loom_tensor *ids);
/* Sampling for generation. temperature > 0 divides the logits (1 = as is);
 * top_k > 0 keeps the k most likely tokens (0 = all); greedy takes the
 * argmax instead of sampling. seed makes the draws repeatable. */
typedef struct loom_sample_opts {
  double temperature;   /* 0 = 1.0 */
  int top_k;            /* 0 = no top-k filter */
  bool greedy;
  uint64_t seed;
} loom_sample_opts;
/* Appends max_new tokens to prompt [N, L0] (LOOM_I64), feeding the last
 * n_ctx tokens back each step (no gradient, eval mode for the call).
 * Returns [N, L0 + max_new] LOOM_I64 on the model's device. */
loom_tensor *loom_gpt_generate(loom_module *gpt, const loom_tensor *prompt, int64_t max_new,
                               const loom_sample_opts *opts);

/* ---- sequence classifiers ----
 * RNN / LSTM / GRU classifiers (the char-RNN name classifier): float
 * sequences [N, L, in_channels] (batch first; one-hot letters, in_channels
 * 0 = 57) through a recurrent stack "rnn" (hidden 0 = 128, num_layers 0 = 1,
 * bidirectional) and a Linear "fc" on the last step's hidden state (both
 * directions' final states with bidirectional) -> logits [N, num_classes
 * (0 = 18)]. mode picks the cell. */
loom_module *loom_model_rnn_classifier(loom_rnn_mode mode, const loom_model_opts *opts);
/* Transformer encoder classifier: token ids [N, L] (id 0 = padding, masked
 * out of attention and of the mean) -> embedding "embedding" (vocab_size
 * 0 = 256, embed_dim 0 = 128) scaled by sqrt(d), sinusoidal "pos_encoder"
 * (max_len 0 = 512), TransformerEncoder "encoder" (num_layers 0 = 2,
 * num_heads 0 = 4, feed-forward 4 d, batch first, dropout 0.1 unless
 * set_dropout), mean over the unpadded positions, Linear "fc" -> logits
 * [N, num_classes (0 = 2)]. */
loom_module *loom_model_transformer_classifier(const loom_model_opts *opts);
/* Text classifier: token ids [N, L] (id 0 = padding) -> Embedding
 * "embedding" (vocab_size 0 = 256, embed_dim 0 = 64, padding_idx 0), mean over
 * the unpadded positions, Linear "fc" -> logits [N, num_classes (0 = 2)]. */
loom_module *loom_model_text_classifier(const loom_model_opts *opts);

/* Pointer network (Vinyals et al. 2015): an encoder LSTM over float inputs
 * [N, L, in_channels (0 = 1)], a decoder LSTMCell fed the input it pointed
 * at last (a learned start vector first) and additive attention over the
 * encoder outputs whose scores are the pointer logits (hidden 0 = 128).
 * loom_forward gives the logits [N, L, L] (step i over input positions) of
 * greedy decoding; positions already chosen are masked out (-inf). */
loom_module *loom_model_pointer_net(const loom_model_opts *opts);
/* The same with teacher forcing when targets [N, L] (LOOM_I64 positions) is
 * given: step i is fed the input at targets[:, i - 1]. targets NULL = greedy. */
loom_tensor *loom_pointer_net_forward(loom_module *m, const loom_tensor *x, const loom_tensor *targets);

/* ---- generative models ----
 * Inputs are flattened images [N, in_features] with in_features = in_channels
 * * 28 * 28 (in_channels 0 = 1: Fashion-MNIST, pixels in [0, 1]); [N, C, 28, 28]
 * is flattened first. */
/* Autoencoder 784-128-64-12-3 and back (children "encoder", "decoder"; ReLU
 * between, Sigmoid at the end) -> reconstruction [N, 784]. latent_dim 0 = 3. */
loom_module *loom_model_autoencoder(const loom_model_opts *opts);
/* VAE 784-400-20 (children fc1, fc21 (mu), fc22 (logvar), fc3, fc4, as the
 * PyTorch example): loom_forward gives the reconstruction probabilities
 * [N, 784] (sampled in training, the mean in eval). hidden 0 = 400, latent_dim
 * 0 = 20. */
loom_module *loom_model_vae(const loom_model_opts *opts);
/* Reconstruction plus mu and logvar [N, latent]; z = mu + eps * exp(logvar / 2)
 * with eps from the model's device generator in training, z = mu in eval.
 * *mu and *logvar are new references (required). */
loom_tensor *loom_vae_forward(loom_module *vae, const loom_tensor *x, loom_tensor **mu, loom_tensor **logvar);
/* BCE(recon, x, sum) + KLD = -0.5 sum(1 + logvar - mu^2 - exp(logvar)),
 * summed over the batch as in the PyTorch example (0-d). */
loom_tensor *loom_vae_loss(const loom_tensor *recon, const loom_tensor *x, const loom_tensor *mu,
                           const loom_tensor *logvar);
/* GAN with MLP generator (noise [N, latent_dim] -> 256 -> 512 -> 1024 -> 784,
 * LeakyReLU 0.2, Tanh) and discriminator (784 -> 512 -> 256 -> 1 logit),
 * children "generator" and "discriminator"; DCGAN: transposed-conv generator
 * (noise -> 7x7 -> 14x14 -> 28x28 with BatchNorm and ReLU, Tanh) and a conv
 * discriminator (LeakyReLU 0.2), DCGAN's N(0, 0.02) init. loom_forward(gan, z)
 * = discriminator(generator(z)) logits [N, 1]; images are scaled to [-1, 1]. */
loom_module *loom_model_gan(const loom_model_opts *opts);
loom_module *loom_model_dcgan(const loom_model_opts *opts);
typedef struct loom_optimizer loom_optimizer;
typedef struct loom_gan_stats {
  double d_loss, g_loss;   /* BCE-with-logits losses of the step */
  double d_real, d_fake;   /* mean D(x) and D(G(z)) probabilities before the updates */
} loom_gan_stats;
/* One alternating step on a batch of real images [N, ...] in [-1, 1]: the
 * discriminator on real (label 1) and generated (label 0, detached), then the
 * generator through the discriminator with label 1 (non-saturating loss).
 * Noise from the device generator. Returns 0 or an error status. */
int loom_gan_train_step(loom_module *gan, loom_optimizer *opt_g, loom_optimizer *opt_d, const loom_tensor *real,
                        loom_gan_stats *stats);

/* ---- graph ----
 * GCN (Kipf & Welling 2017): two graph convolutions H' = A_hat H W + b with
 * A_hat = D^-1/2 (A + I) D^-1/2, ReLU and dropout (0.5 unless set_dropout)
 * between (children conv1, conv2, each with lin.weight [out, in] glorot and
 * bias [out] zeros, as PyTorch Geometric's GCNConv). in_channels = node
 * features (0 = 34), hidden 0 = 16, num_classes 0 = 4. Forward:
 * loom_forward_n(gcn, {x [V, F], adjacency [V, V]}) with a dense A_hat, or
 * loom_forward_n(gcn, {x, indices [2, nnz], values [nnz]}) with a sparse one
 * (loom_sparse_mm); logits [V, num_classes]. */
loom_module *loom_model_gcn(const loom_model_opts *opts);
/* A_hat of an undirected graph in COO form (indices [2, nnz] LOOM_I64, values
 * [nnz] f32, self loops added, duplicate edges counted once) from
 * edge_index [2, E] (LOOM_I64; each edge in either or both directions).
 * An edge endpoint outside [0, num_nodes) is an error naming it. Returns 0
 * or an error status; *indices and *values are new references. */
int loom_gcn_adjacency(const loom_tensor *edge_index, int64_t num_nodes, loom_tensor **indices, loom_tensor **values);

/* ---- reinforcement learning ----
 * DQN Q-network: an MLP state [N, in_channels (0 = 4)] -> hidden (0 = 128) ->
 * hidden -> Q values [N, num_classes (0 = 2 actions)], ReLU between. */
loom_module *loom_model_dqn(const loom_model_opts *opts);
/* CartPole-v1 (Barto, Sutton & Anderson's dynamics as in Gymnasium: 0.02 s
 * Euler steps, force 10 N, failure past 12 degrees or 2.4 m, 500 steps at
 * most, reward 1 per step; the start state uniform in [-0.05, 0.05]). */
typedef struct loom_cartpole loom_cartpole;
loom_cartpole *loom_cartpole_new(uint64_t seed);
void loom_cartpole_free(loom_cartpole *env);
/* Starts an episode; obs receives (x, x_dot, theta, theta_dot). */
void loom_cartpole_reset(loom_cartpole *env, float obs[4]);
/* action 0 pushes left, 1 right. Returns the reward (1) and sets *done when
 * the pole fell, the cart left the track or 500 steps passed; -1 + error for
 * a bad action or a step after done. */
double loom_cartpole_step(loom_cartpole *env, int action, float obs[4], bool *done);
typedef struct loom_dqn_opts {
  int64_t max_steps;        /* environment steps, 0 = 50000 */
  int64_t buffer_size;      /* replay buffer, 0 = 10000 */
  int64_t batch_size;       /* 0 = 64 */
  double gamma;             /* 0 = 0.99 */
  double lr;                /* Adam (AdamW amsgrad off), 0 = 1e-3 */
  double eps_start, eps_end;/* epsilon-greedy, 0 = 1.0 and 0.05 */
  int64_t eps_decay;        /* steps of exponential decay, 0 = 1000 */
  double tau;               /* soft target update per step, 0 = 0.01 */
  double grad_clip;         /* clamp every gradient to [-c, c], 0 = 100 */
  double solved;            /* stop when the mean of the last 100 episodes >= this, 0 = 195 */
  uint64_t seed;
  bool verbose;             /* a progress line every 20 episodes on stderr */
} loom_dqn_opts;
typedef struct loom_dqn_result {
  int64_t steps, episodes;
  double mean_last100;      /* mean episode length over the last 100 (or fewer) episodes */
  bool solved;
} loom_dqn_result;
/* Trains q (a loom_model_dqn on the CPU or CUDA) on CartPole: replay buffer,
 * target network (a copy of q), epsilon-greedy, Huber (smooth L1) loss,
 * gradient clamping. Returns 0 or an error status. */
int loom_dqn_train_cartpole(loom_module *q, const loom_dqn_opts *opts, loom_dqn_result *result);

/* ---- registry ---- */
/* What a model's forward takes, for tools that build a dummy input. */
typedef enum loom_model_input {
  LOOM_INPUT_TENSOR = 0,  /* floats [N, input...]: images [N, C, H, W], or vectors [N, C] when input[1] = 0 */
  LOOM_INPUT_TOKENS,      /* LOOM_I64 token ids [N, L] with L = input[0], ids below the vocabulary size */
  LOOM_INPUT_SEQUENCE,    /* floats [N, L, F] (batch first) with L = input[0], F = input[1] */
  LOOM_INPUT_GRAPH        /* two inputs: node features [V, F] and adjacency [V, V], V = input[0], F = input[1] */
} loom_model_input;

typedef struct loom_model_info {
  const char *name;          /* "resnet50" */
  const char *description;   /* one line */
  const char *torchvision;   /* "torchvision.models.resnet50" (or the PyTorch twin's name), "" when none */
  int64_t input[3];          /* default per-sample input, see kind */
  loom_model_input kind;
} loom_model_info;

/* The zoo's names, NULL-terminated, in a stable order. */
const char *const *loom_model_names(void);
/* The entry of name, or NULL (+ error listing the known names). */
const loom_model_info *loom_model_find(const char *name);
/* Builds model `name` ("resnet50", "vgg16_bn", "resnext50_32x4d",
 * "wide_resnet50_2", "mobilenet_v2", ...) with opts (NULL = defaults; the
 * named variants fix groups / width_per_group themselves). NULL + error for
 * an unknown name, naming the known ones. */
loom_module *loom_model_create(const char *name, const loom_model_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
