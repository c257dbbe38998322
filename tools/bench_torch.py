"""bench_torch.py: the PyTorch twin of loom-bench (tools/loom-bench.c).

    python3 tools/bench_torch.py --model NAME [--batch N] [--input 1,28,28] [--mode train|infer]
        [--steps N] [--warmup N] [--device cpu|cuda[:N]] [--dtype f32|tf32|bf16|f16] [--threads N]
        [--classes N] [--latency-steps N] [--loader N] [--peak-tflops X] [--json | --csv]

Same flags, defaults and figures as loom-bench, so that a side-by-side table is two commands
(tools/bench_report.py reads both --json outputs; tools/bench_sweep.sh runs both).

The models: every name of Loom's zoo (read from src/models/registry.c: name, default per-sample
input, input kind), built with the PyTorch twins of the test fixtures (tools/fixtures/gen_models*.py;
GPT-2 is transformers.GPT2LMHeadModel) and Loom's default sizes. --classes sets num_classes; a 4-D
image input whose channel count is not the model's own rebuilds the first conv (mlp: the first Linear)
with that many input channels, as Loom's in_channels does.

Input, created once on the device (PyTorch's fast path): floats uniform [0, 1) of [N, *input]
(images, vectors, sequences [N, L, F]), token ids 0 and 1 of [N, L], or for gcn one graph: node
features [V, F] and a dense row-normalised adjacency (identity + random symmetric 0/1); a graph
step is one graph of V nodes, so --batch must be V or left out. --loader N feeds float inputs from
a DataLoader (4*batch samples, N workers, pinned on CUDA) and measures the wait.

A training step: forward, loss (cross-entropy against random labels for [N, C] outputs; over the
last dim for a token model's [N, L, V]; else mean(out * out)), backward, SGD(lr=1e-3) step,
zero_grad. An inference step: eval mode, no_grad, forward. Each step ends synchronised.
--dtype f32 turns TF32 off (cuBLAS and cuDNN); tf32 turns it on (CUDA only); bf16 / f16 autocast
the forward and loss over f32 weights (f16 training with a GradScaler).

Figures leave the warm-up steps out; samples/s is samples over the timed wall time. FLOPs: one
forward of the batch under torch.utils.flop_counter.FlopCounterMode (a training step counts 3x; the
counter skips BatchNorm and other non-matmul ops, which Loom's count includes). MFU: against the
datasheet row of tools/gpu_peaks.h on CUDA, on the CPU against the best 1024^3 torch.matmul in the
run's dtype, or --peak-tflops. Memory: the CUDA caching allocator's figures; peak RSS. Energy: NVML's
board counter on CUDA, RAPL package 0 on the CPU, null with energy_why where neither can be read.
On a busy machine with few cores, OMP_WAIT_POLICY=passive keeps spinning OpenMP workers from
stalling small ops (tools/bench_sweep.sh sets it for both frameworks).

Under torchrun (WORLD_SIZE > 1) each rank trains its DistributedDataParallel replica, prints
{"rank", "samples_per_s", "step_ms_mean"}, and rank 0 prints the header and the summary, whose
global_samples_per_s is the sum over ranks.

Output: a readable table, or with --json a header line, one line per timed step and a summary line
(keys in HEADER_KEYS / SUMMARY_KEYS order; a null figure has a *_why saying why), or with --csv one
row of the summary keys and one of values. Exit status: 0, 1 when the model fails to build or run,
2 on bad arguments or a model / mode this twin cannot run."""
import time

T_START = time.perf_counter()  # before torch is imported: first_output_from_start_ms counts from here

import argparse  # noqa: E402
import contextlib  # noqa: E402
import csv  # noqa: E402
import ctypes  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tools", "fixtures")
RAPL = "/sys/class/powercap/intel-rapl:0/"

HEADER_KEYS = ["header", "framework", "version", "commit", "device", "device_name", "versions", "threads",
               "world_size", "settings"]
SUMMARY_KEYS = [
    "summary", "framework", "model", "mode", "device", "device_name", "dtype", "batch", "input", "threads",
    "world_size", "timed_steps", "warmup", "unit", "samples_per_s", "global_samples_per_s", "tokens_per_s",
    "batches_per_s", "step_ms_mean", "step_ms_p50", "step_ms_p90", "step_ms_p99", "first_step_ms",
    "first_output_from_start_ms", "latency_steps", "latency_ms_mean", "latency_ms_p50", "latency_ms_p90",
    "latency_ms_p99", "latency_why", "params", "param_bytes", "macs_per_sample", "flops_per_sample",
    "flops_per_step", "achieved_tflops", "peak_tflops", "peak_source", "mfu", "mfu_why", "mem_allocated",
    "mem_reserved", "mem_peak", "mem_why", "peak_rss_kb", "loader_wait_ms_mean", "loader_wait_why",
    "energy_j_per_sample", "energy_source", "energy_why"]

# Models with no classifier head: --classes means nothing to them.
NO_CLASSES = {"gpt2", "pointer_net", "autoencoder", "vae", "gan", "dcgan"}


class Refused(Exception):
    """A flag / model combination this twin does not run (exit 2)."""


# ---------------------------------------------------------------- arguments
def at_least(lo):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < lo:
            raise argparse.ArgumentTypeError(f"needs an integer >= {lo}, got '{text}'")
        return v
    return parse


def positive_float(text):
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v > 0:
        raise argparse.ArgumentTypeError(f"needs a number > 0, got '{text}'")
    return v


def device_text(text):
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"needs cpu, cuda or cuda:N, got '{text}'")
    return text


def input_text(text):
    if not re.fullmatch(r"[1-9]\d*(,[1-9]\d*)*", text):
        raise argparse.ArgumentTypeError(f"needs positive sizes separated by commas, got '{text}'")
    return [int(v) for v in text.split(",")]


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench_torch.py", description="PyTorch twin of loom-bench.")
    p.add_argument("--model", required=True)
    p.add_argument("--batch", type=at_least(1), default=None, help="samples per step (default 32)")
    p.add_argument("--input", type=input_text, default=None, help="per-sample shape (default: the model's own)")
    p.add_argument("--mode", choices=["train", "infer"], default="train")
    p.add_argument("--steps", type=at_least(1), default=20, help="every step, the warm-up ones too")
    p.add_argument("--warmup", type=at_least(0), default=5)
    p.add_argument("--device", type=device_text, default="cpu")
    p.add_argument("--dtype", choices=["f32", "tf32", "bf16", "f16"], default="f32")
    p.add_argument("--threads", type=at_least(1), default=None)
    p.add_argument("--classes", type=at_least(1), default=None)
    p.add_argument("--latency-steps", type=at_least(0), default=50)
    p.add_argument("--loader", type=at_least(0), default=None, help="DataLoader with N workers")
    p.add_argument("--peak-tflops", type=positive_float, default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--csv", action="store_true")
    a = p.parse_args(argv)
    if a.steps <= a.warmup:
        p.error(f"--steps ({a.steps}) must be larger than --warmup ({a.warmup}): the warm-up steps are not timed")
    if a.json and a.csv:
        p.error("--json and --csv: pick one")
    return a


# ---------------------------------------------------------------- the zoo
def read_registry():
    """name -> (kind, default per-sample input) from src/models/registry.c."""
    src = open(os.path.join(ROOT, "src", "models", "registry.c")).read()
    rows = re.findall(r'\{\{"(\w+)",(.*?),\s*(\{[^{}]*\}|IMAGENET),\s*LOOM_INPUT_(\w+)\}', src, re.S)
    zoo = {}
    for name, _, shape, kind in rows:
        dims = [3, 224, 224] if shape == "IMAGENET" else [int(v) for v in shape.strip("{}").split(",")]
        zoo[name] = (kind, [d for d in dims if d])
    return zoo


def fixture(module):
    """Imports tools/fixtures/<module>.py. Their common.py imports safetensors to write fixture files;
    the benchmark writes none, so a stand-in does when safetensors is missing."""
    if FIXTURES not in sys.path:
        sys.path.insert(0, FIXTURES)
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        def save_file(*_a, **_k):
            raise RuntimeError("safetensors is not installed")
        sys.modules["safetensors"] = types.ModuleType("safetensors")
        sys.modules["safetensors.torch"] = types.ModuleType("safetensors.torch")
        sys.modules["safetensors.torch"].save_file = save_file
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise Refused(f"the twin needs tools/fixtures/{module}.py, which failed to import: {e} "
                      f"(pip install {e.name or 'it'})")


class GPT2Logits(nn.Module):
    """transformers.GPT2LMHeadModel at its defaults (GPT-2 124M: vocab 50257, n_ctx 1024, 12 layers,
    12 heads, 768 wide, dropout 0.1, tied lm_head), returning the logits [N, L, V]."""

    def __init__(self):
        super().__init__()
        try:
            from transformers import GPT2Config, GPT2LMHeadModel
        except ImportError:
            raise Refused("gpt2's twin is transformers.GPT2LMHeadModel: pip install transformers")
        self.lm = GPT2LMHeadModel(GPT2Config(use_cache=False))

    def forward(self, ids):
        return self.lm(input_ids=ids, use_cache=False).logits


class OnDevice(nn.Module):
    """Runs `inner` with `device` as the default for new tensors (PointerNet makes its mask with
    torch.zeros, which would land on the CPU)."""

    def __init__(self, inner, device):
        super().__init__()
        self.inner, self.device = inner, device

    def forward(self, *xs):
        with torch.device(self.device):
            return self.inner(*xs)


def set_in_channels(model, c, default_c):
    """Rebuilds the first Conv2d with c input channels (mlp, which has none: the first Linear)."""
    for kind in (nn.Conv2d, nn.Linear):
        for name, mod in model.named_modules():
            if not isinstance(mod, kind):
                continue
            parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            if kind is nn.Conv2d:
                new = nn.Conv2d(c, mod.out_channels, mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                                mod.groups, mod.bias is not None)
            else:
                new = nn.Linear(mod.in_features // default_c * c, mod.out_features, mod.bias is not None)
            setattr(parent, name.rpartition(".")[2], new)
            return model
    raise Refused(f"found no first layer to give {c} input channels")


def build_model(name, classes, in_channels, graph_features):
    """The twin of Loom's `name` with Loom's default sizes (src/models/*.c)."""
    gm = fixture("gen_models")
    if name in gm.REGISTRY:  # seed, mlp, seed_cnn, lenet5, the torchvision models
        m = gm.build(name, classes)
        default_c = 3 if name not in ("seed", "mlp", "seed_cnn", "lenet5") else 1
        if in_channels is not None and in_channels != default_c:
            m = set_in_channels(m, in_channels, default_c)
        return m
    if name == "gpt2":
        return GPT2Logits()
    if name in ("rnn_classifier", "lstm_classifier", "gru_classifier"):
        seq = fixture("gen_models_seq")
        return seq.RNNClassifier(name.split("_")[0], 57, 128, 1, False, classes or 18)
    if name == "transformer_classifier":
        return fixture("gen_models_seq").TransformerClassifier(256, 128, 4, 2, 512, classes or 2, 0.1)
    if name == "text_classifier":
        return fixture("gen_models_seq").TextClassifier(256, 64, classes or 2)
    if name == "pointer_net":
        return fixture("gen_models_seq").PointerNet(1, 128)
    gen = {"autoencoder": lambda g: g.Autoencoder(128, 3, 784), "vae": lambda g: g.VAE(400, 20, 784),
           "gan": lambda g: g.GAN(256, 100, 784), "dcgan": lambda g: g.DCGAN(64, 100)}
    if name in gen:
        return gen[name](fixture("gen_models_gen"))
    if name == "gcn":
        return fixture("gen_models_gcn").GCN(graph_features, 16, classes or 4, 0.5)
    if name == "dqn":
        return fixture("gen_models_dqn").DQN(4, classes or 2, 128)
    raise Refused(f"no PyTorch twin for '{name}'")


# ---------------------------------------------------------------- measurements
def quantile(sorted_values, q):
    """Nearest rank, as loom-bench."""
    n = len(sorted_values)
    return sorted_values[min(max(math.ceil(q * n) - 1, 0), n - 1)]


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions_line(threads):
    def safe(f):
        try:
            v = f()
            return "none" if v is None else ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
        except Exception:
            return "none"
    return (f"Python {platform.python_version()}; PyTorch {torch.__version__}; "
            f"CUDA {safe(lambda: torch.version.cuda)}; cuDNN {safe(torch.backends.cudnn.version)}; "
            f"NCCL {safe(torch.cuda.nccl.version)}; threads {threads}")


def gpu_peak(device_name, dtype):
    """(TFLOP/s, label) from tools/gpu_peaks.h, or (None, None)."""
    try:
        text = open(os.path.join(ROOT, "tools", "gpu_peaks.h")).read()
    except OSError:
        return None, None
    num = r"\s*([\d.]+)"
    for pattern, label, *cols in re.findall(r'\{"([^"]*)",\s*"([^"]*)",' + ",".join([num] * 4) + r"\s*\}", text):
        if pattern in device_name:
            return float(cols[["f32", "tf32", "bf16", "f16"].index(dtype)]), label
    return None, None


def cpu_peak(dtype, threads):
    """Best of 10 timed 1024^3 GEMMs after 2 untimed ones, in TFLOP/s. Where a GEMM takes seconds (f16 on
    a CPU without f16 arithmetic) it stops once the timed ones pass 2 s and says how many it timed."""
    dt = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[dtype]
    a, b = torch.rand(1024, 1024).to(dt), torch.rand(1024, 1024).to(dt)
    for _ in range(2):
        torch.matmul(a, b)
    runs = []
    while len(runs) < 10 and (not runs or sum(runs) < 2.0):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        runs.append(time.perf_counter() - t0)
    return 2 * 1024 ** 3 / min(runs) / 1e12, (f"measured: best of {len(runs)} GEMMs 1024x1024x1024 {dtype}, "
                                               f"{threads} threads (torch.matmul)")


class Energy:
    """Joules over the timed steps: NVML's board counter on CUDA, RAPL package 0 on the CPU."""

    def __init__(self, device):
        self.why, self.source, self.read = None, None, None
        if device.type == "cuda":
            try:
                nvml = ctypes.CDLL("libnvidia-ml.so.1")
            except OSError as e:
                self.why = f"could not load libnvidia-ml.so.1 ({e})"
                return
            handle, mj = ctypes.c_void_p(), ctypes.c_ulonglong()
            rc = nvml.nvmlInit_v2() or nvml.nvmlDeviceGetHandleByIndex_v2(device.index, ctypes.byref(handle))
            if rc:
                self.why = f"NVML would not open device {device.index} (nvml error {rc})"
                return

            def read():
                r = nvml.nvmlDeviceGetTotalEnergyConsumption(handle, ctypes.byref(mj))
                if r:
                    raise OSError(f"nvmlDeviceGetTotalEnergyConsumption failed (nvml error {r})")
                return mj.value / 1e3
            self.read, self.source = read, "nvml: board energy counter"
        else:
            def read():
                return int(open(RAPL + "energy_uj").read()) / 1e6
            self.read, self.source = read, "rapl: package 0"
        try:
            self.start = self.read()
        except (OSError, ValueError) as e:
            self.read, self.source = None, None
            self.why = (f"no RAPL counter readable at {RAPL}energy_uj" if device.type == "cpu" else str(e))

    def begin(self):
        if self.read:
            try:
                self.start = self.read()
            except (OSError, ValueError) as e:
                self.read, self.source, self.why = None, None, str(e)

    def joules(self):
        if not self.read:
            return None
        try:
            j = self.read() - self.start
            if j < 0 and self.source.startswith("rapl"):  # the counter wrapped once
                j += int(open(RAPL + "max_energy_range_uj").read()) / 1e6
            return j
        except (OSError, ValueError) as e:
            self.why, self.source = str(e), None
            return None


@contextlib.contextmanager
def fused_rnns_off(model):
    """oneDNN's and cuDNN's fused RNN kernels are one op that FlopCounterMode cannot see into; without
    them an RNN runs as the matmuls it counts. Only for models with an RNN (cuDNN's convolutions stay)."""
    if not any(isinstance(m, (nn.RNNBase, nn.RNNCellBase)) for m in model.modules()):
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.backends.mkldnn.flags(enabled=False), torch.backends.cudnn.flags(enabled=False):
            yield


# ---------------------------------------------------------------- the run
def make_inputs(kind, shape, gen, device):
    """The model's inputs (a tuple) for the full input shape."""
    if kind == "TOKENS":
        return (torch.randint(0, 2, shape, generator=gen).to(device),)
    if kind == "GRAPH":
        v = shape[0]
        a = (torch.rand(v, v, generator=gen) < 0.1).float()
        a = ((a + a.t() + torch.eye(v)) > 0).float()
        return torch.rand(shape, generator=gen).to(device), (a / a.sum(1, keepdim=True)).to(device)
    return (torch.rand(shape, generator=gen).to(device),)


def run(a):
    zoo = read_registry()
    if a.model not in zoo:
        raise Refused(f"unknown model '{a.model}'; known models: {', '.join(zoo)}")
    kind, default_input = zoo[a.model]
    per_sample = a.input or default_input
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))

    # device, dtype, threads
    if a.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise Refused(f"--device {a.device}: no CUDA device available to PyTorch")
        index = int(os.environ.get("LOCAL_RANK", "0")) if world > 1 else \
            int(a.device.split(":")[1]) if ":" in a.device else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise Refused(f"--device {a.device}: only {torch.cuda.device_count()} CUDA devices")
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = a.dtype == "tf32"
    else:
        device = torch.device("cpu")
        if a.dtype == "tf32":
            raise Refused("--dtype tf32 is a CUDA mode")
    if a.threads:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    cuda = device.type == "cuda"
    dev_name = torch.cuda.get_device_name(device) if cuda else cpu_name()
    if world > 1:
        import torch.distributed as dist
        dist.init_process_group("nccl" if cuda else "gloo")

    # the shape of one step
    if kind == "GRAPH":
        if a.batch is not None and a.batch != per_sample[0]:
            raise Refused(f"--batch {a.batch}: a {a.model} step is one graph of {per_sample[0]} nodes "
                          f"(--input V,F sets V; leave --batch out)")
        batch, shape = per_sample[0], list(per_sample)
    else:
        batch = a.batch or 32
        shape = [batch] + list(per_sample)
    if a.classes and a.model in NO_CLASSES:
        raise Refused(f"--classes: {a.model} has no classifier head")
    if a.loader is not None and kind in ("TOKENS", "GRAPH"):
        takes = "token ids" if kind == "TOKENS" else "a graph"
        raise Refused(f"--loader feeds float inputs; {a.model} takes {takes}")
    image = kind == "TENSOR" and len(default_input) == 3 and len(shape) == 4
    unit = "images" if image else "tokens" if kind == "TOKENS" else "nodes" if kind == "GRAPH" else "samples"
    train = a.mode == "train"

    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(1)
    model = build_model(a.model, a.classes, shape[1] if image else None, per_sample[-1])
    model.to(device)
    if a.model == "pointer_net" and cuda:
        model = OnDevice(model, device)
    net = model
    if world > 1 and train:
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    model.train(train)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3) if train else None
    amp_dtype = {"bf16": torch.bfloat16, "f16": torch.float16}.get(a.dtype)
    scaler = torch.amp.GradScaler(device.type) if train and a.dtype == "f16" else None

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()

    inputs = make_inputs(kind, shape, gen, device)
    batches = None
    if a.loader is not None:
        data = torch.utils.data.TensorDataset(torch.rand([4 * batch] + list(per_sample), generator=gen))
        loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=False, num_workers=a.loader,
                                             pin_memory=cuda, drop_last=True, persistent_workers=a.loader > 0)

        def cycle():
            while True:
                yield from loader
        batches = cycle()

    targets = {}  # random labels, made on the device once per output shape

    def loss_of(out):
        out = out[0] if isinstance(out, (tuple, list)) else out
        if out.dim() == 2 and out.shape[0] == batch:  # [N, C] (a graph: [V, C])
            key = tuple(out.shape)
            if key not in targets:
                targets[key] = torch.randint(0, out.shape[1], out.shape[:1], generator=gen).to(device)
            return F.cross_entropy(out.float(), targets[key])
        if kind == "TOKENS" and out.dim() == 3:
            key = tuple(out.shape)
            if key not in targets:
                targets[key] = torch.randint(0, out.shape[2], out.shape[:2], generator=gen).to(device)
            return F.cross_entropy(out.float().reshape(-1, out.shape[2]), targets[key].reshape(-1))
        return (out.float() * out.float()).mean()

    def step(xs):
        if train:
            with autocast():
                loss = loss_of(model(*xs))
            if scaler:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            with torch.no_grad(), autocast():
                model(*xs)
        if cuda:
            torch.cuda.synchronize(device)

    header = dict(zip(HEADER_KEYS, [True, "pytorch", torch.__version__, torch.version.git_version, str(device),
                                    dev_name, versions_line(threads), threads, world, " ".join(sys.argv[1:])]))
    if a.json and rank == 0:
        print(json.dumps(header), flush=True)

    # the throughput loop
    energy = Energy(device)
    times, waits, first_output = [], [], None
    for i in range(a.steps):
        if i == a.warmup:
            energy.begin()
        t0 = time.perf_counter()
        xs = inputs
        if batches is not None:
            xs = tuple(t.to(device, non_blocking=True) for t in next(batches))
            if cuda:
                torch.cuda.synchronize(device)
            waits.append(time.perf_counter() - t0)
        step(xs)
        t = time.perf_counter() - t0
        times.append(t)
        if i == 0:
            first_output = time.perf_counter() - T_START
        if a.json and rank == 0 and i >= a.warmup:
            print(json.dumps({"step": i - a.warmup, "seconds": round(t, 6), "samples_per_s": round(batch / t, 2)}))
    joules = energy.joules()
    mem = [torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device),
           torch.cuda.max_memory_allocated(device)] if cuda else [None] * 3
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    timed = times[a.warmup:]
    n, total = len(timed), sum(timed)
    sps = batch * n / total
    global_sps = sps
    if world > 1:
        import torch.distributed as dist
        line = {"rank": rank, "samples_per_s": round(sps, 3), "step_ms_mean": round(1e3 * total / n, 4)}
        print(json.dumps(line), file=sys.stdout if a.json else sys.stderr, flush=True)
        t = torch.tensor([sps], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        global_sps = t.item()

    # batch-1 latency
    lat, lat_why = [], None
    if train:
        lat_why = "measured in --mode infer"
    elif a.latency_steps == 0:
        lat_why = "--latency-steps 0"
    else:
        one = inputs if kind == "GRAPH" else tuple(t[:1] for t in inputs)  # a graph's request is the graph
        with torch.no_grad(), autocast():
            for i in range(a.warmup + a.latency_steps):
                t0 = time.perf_counter()
                model(*one)
                if cuda:
                    torch.cuda.synchronize(device)
                if i >= a.warmup:
                    lat.append(time.perf_counter() - t0)
    lat.sort()

    # forward FLOPs of one batch, in the run's mode with grad on (eval fast paths need no_grad, so
    # they hide no ops from the counter; train mode would refuse BatchNorm on one sample)
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with fused_rnns_off(net), counter:
        net(*inputs)
    flops_sample = counter.get_total_flops() / batch
    flops_step = flops_sample * batch * (3 if train else 1)
    achieved = flops_step * n / total / 1e12

    # peak and MFU
    peak, source, mfu_why = None, None, None
    if a.peak_tflops:
        peak, source = a.peak_tflops, "given: --peak-tflops"
    elif cuda:
        peak, label = gpu_peak(dev_name, a.dtype)
        if peak:
            source = f"datasheet: {label}, dense {a.dtype}"
        else:
            mfu_why = f"no peak known for {dev_name}; --peak-tflops X sets one"
    else:
        peak, source = cpu_peak(a.dtype, threads)

    params = list({id(p): p for p in net.parameters()}.values())
    sorted_t = sorted(timed)
    ms = lambda v: None if v is None else round(1e3 * v, 4)  # noqa: E731
    count = lambda v: int(v) if v == int(v) else round(v, 1)  # noqa: E731
    values = {
        "summary": True, "framework": "pytorch", "model": a.model, "mode": a.mode, "device": str(device),
        "device_name": dev_name, "dtype": a.dtype, "batch": batch, "input": str(shape), "threads": threads,
        "world_size": world, "timed_steps": n, "warmup": a.warmup, "unit": unit,
        "samples_per_s": round(sps, 3), "global_samples_per_s": round(global_sps, 3),
        "tokens_per_s": round(sps * shape[1], 3) if kind == "TOKENS" else None,
        "batches_per_s": round(n / total, 4), "step_ms_mean": ms(total / n),
        "step_ms_p50": ms(quantile(sorted_t, 0.5)), "step_ms_p90": ms(quantile(sorted_t, 0.9)),
        "step_ms_p99": ms(quantile(sorted_t, 0.99)), "first_step_ms": ms(times[0]),
        "first_output_from_start_ms": ms(first_output), "latency_steps": len(lat),
        "latency_ms_mean": ms(sum(lat) / len(lat)) if lat else None,
        "latency_ms_p50": ms(quantile(lat, 0.5)) if lat else None,
        "latency_ms_p90": ms(quantile(lat, 0.9)) if lat else None,
        "latency_ms_p99": ms(quantile(lat, 0.99)) if lat else None, "latency_why": lat_why,
        "params": sum(p.numel() for p in params), "param_bytes": sum(p.numel() * p.element_size() for p in params),
        "macs_per_sample": count(flops_sample / 2), "flops_per_sample": count(flops_sample),
        "flops_per_step": count(flops_step), "achieved_tflops": round(achieved, 6),
        "peak_tflops": None if peak is None else round(peak, 4), "peak_source": source,
        "mfu": None if peak is None else round(achieved / peak, 6), "mfu_why": mfu_why,
        "mem_allocated": mem[0], "mem_reserved": mem[1], "mem_peak": mem[2],
        "mem_why": None if cuda else "PyTorch keeps no CPU pool statistics", "peak_rss_kb": rss,
        "loader_wait_ms_mean": ms(sum(waits[a.warmup:]) / n) if batches is not None else None,
        "loader_wait_why": None if batches is not None else
        "input already in a tensor on the device (--loader N to measure the wait)",
        "energy_j_per_sample": None if joules is None else round(joules / (batch * n), 9),
        "energy_source": energy.source if joules is not None else None,
        "energy_why": None if joules is not None else energy.why,
    }
    summary = {k: values[k] for k in SUMMARY_KEYS}
    if rank == 0:
        report(a, header, summary)
    if world > 1:
        import torch.distributed as dist
        dist.destroy_process_group()


# Which *_why explains a null figure in the table.
WHY = {"latency": "latency_why", "peak_tflops": "mfu_why", "mfu": "mfu_why", "mem": "mem_why",
       "loader_wait_ms_mean": "loader_wait_why", "energy_j_per_sample": "energy_why"}


def report(a, header, s):
    if a.json:
        print(json.dumps(s), flush=True)
        return
    if a.csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(SUMMARY_KEYS)
        w.writerow(["" if s[k] is None else str(s[k]).lower() if isinstance(s[k], bool) else s[k]
                    for k in SUMMARY_KEYS])
        return
    print(f"bench_torch: {s['model']}, {s['mode']}, batch {s['batch']}, input {s['input']}, {s['device']} "
          f"({s['device_name']}) {s['dtype']}, {s['threads']} threads; {s['timed_steps']} timed steps after "
          f"{s['warmup']} warm-up")
    print(f"  {header['versions']}")
    skip = {"summary", "framework", "model", "mode", "device", "device_name", "dtype", "batch", "input",
            "threads", "timed_steps", "warmup"}
    for k in SUMMARY_KEYS:
        if k in skip or k.endswith("_why") or k in ("peak_source", "energy_source"):
            continue
        v = s[k]
        if v is None:
            why = next((s[w] for p, w in WHY.items() if k.startswith(p)), None)
            why = why or ("not a token model" if k == "tokens_per_s" else "unknown")
            v = f"unavailable: {why}"
        elif k == "peak_tflops":
            v = f"{v} ({s['peak_source']})"
        elif k == "energy_j_per_sample":
            v = f"{v} ({s['energy_source']})"
        print(f"  {k:28s} {v}")


def main():
    a = parse_args(sys.argv[1:])
    try:
        run(a)
    except Refused as e:
        print(f"bench_torch.py: {a.model}: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # the model failed to build or run
        print(f"bench_torch.py: {a.model}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
