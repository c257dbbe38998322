"""The cases of loom-bench-layers, run with PyTorch on the same machine.

    python3 tools/bench_layers_torch.py [--threads N] [--runs N] [--only NAME[,NAME...]]
                                        [--mode train|infer] [--json] [--list]

Same cases, names, shapes, flags, rule for one call and JSON keys as
tools/loom-bench-layers.c (see its header and docs/benchmarking.md, "Layer
benchmarks"): f32 on the CPU, torch.nn modules with PyTorch's default init,
inputs already in tensors. One call in train mode: gradients set to None (the
module's and the input's), forward, backward from a fixed random upstream
gradient of the output's shape (from 1 for a scalar loss), and the SGD step for
seed_cnn_step; in infer mode the forward alone under torch.no_grad(), modules in
eval mode. The median of --runs runs after 2 warm-up calls, each run repeating
the call until it lasts at least 50 ms. tools/bench_layers.sh runs both;
CI never runs this (torch is not a dependency of Loom).
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PROG = "bench_layers_torch.py"
MIN_RUN_S = 0.05
WARMUP = 2
MAX_RUNS = 64

# name, shape, modes: the same table as loom-bench-layers.c's CASES.
CASES = [
    ("conv3x3_64", "32x64x32x32 k3 s1 p1 -> 64, no bias", "both"),
    ("conv3x3_128", "32x128x16x16 k3 s1 p1 -> 128, no bias", "both"),
    ("conv3x3_256", "32x256x8x8 k3 s1 p1 -> 256, no bias", "both"),
    ("conv3x3_s2_64_128", "32x64x32x32 k3 s2 p1 -> 128, no bias", "both"),
    ("dwconv3x3_144", "32x144x28x28 k3 s1 p1 groups 144, no bias", "both"),
    ("maxpool2_s2", "64x32x26x26 k2 s2", "both"),
    ("maxpool3_s2_p1", "32x64x112x112 k3 s2 p1", "both"),
    ("batchnorm2d", "32x64x32x32", "both"),
    ("layernorm", "4096x768 over 768", "both"),
    ("softmax", "4096x768 dim -1", "both"),
    ("gelu", "4096x3072 erf", "both"),
    ("relu", "64x32x26x26", "both"),
    ("linear_1600_128", "64x1600 -> 128", "both"),
    ("linear_768_3072", "1024x768 -> 3072", "both"),
    ("cross_entropy", "256x1000 i64 targets, mean", "both"),
    ("lstm", "L50 N32 256 -> 256, 2 layers, seq first", "both"),
    ("mha", "L128 N32 E256 8 heads, self, no mask", "both"),
    ("seed_cnn_step", "64x1x28x28, CE + SGD m0.9 lr0.01", "both"),
    ("seed_cnn_b1", "1x1x28x28", "infer"),
]


def seed_cnn():
    """examples/seed_cnn.c's model (tools/bench_seed_cnn_torch.py's)."""
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10))


def build(name):
    """(module or None, input, target or None, forward(module, x, target) -> output)."""
    m, tgt = None, None
    if name == "conv3x3_64":
        m, x = nn.Conv2d(64, 64, 3, padding=1, bias=False), torch.randn(32, 64, 32, 32)
    elif name == "conv3x3_128":
        m, x = nn.Conv2d(128, 128, 3, padding=1, bias=False), torch.randn(32, 128, 16, 16)
    elif name == "conv3x3_256":
        m, x = nn.Conv2d(256, 256, 3, padding=1, bias=False), torch.randn(32, 256, 8, 8)
    elif name == "conv3x3_s2_64_128":
        m, x = nn.Conv2d(64, 128, 3, stride=2, padding=1, bias=False), torch.randn(32, 64, 32, 32)
    elif name == "dwconv3x3_144":
        m, x = nn.Conv2d(144, 144, 3, padding=1, groups=144, bias=False), torch.randn(32, 144, 28, 28)
    elif name == "maxpool2_s2":
        return None, torch.randn(64, 32, 26, 26), None, lambda m, x, t: F.max_pool2d(x, 2, 2)
    elif name == "maxpool3_s2_p1":
        return None, torch.randn(32, 64, 112, 112), None, lambda m, x, t: F.max_pool2d(x, 3, 2, 1)
    elif name == "batchnorm2d":
        m, x = nn.BatchNorm2d(64), torch.randn(32, 64, 32, 32)
    elif name == "layernorm":
        m, x = nn.LayerNorm(768), torch.randn(32 * 128, 768)
    elif name == "softmax":
        return None, torch.randn(4096, 768), None, lambda m, x, t: torch.softmax(x, -1)
    elif name == "gelu":
        return None, torch.randn(32 * 128, 3072), None, lambda m, x, t: F.gelu(x)
    elif name == "relu":
        return None, torch.randn(64, 32, 26, 26), None, lambda m, x, t: F.relu(x)
    elif name == "linear_1600_128":
        m, x = nn.Linear(1600, 128), torch.randn(64, 1600)
    elif name == "linear_768_3072":
        m, x = nn.Linear(768, 3072), torch.randn(1024, 768)
    elif name == "cross_entropy":
        return (None, torch.randn(256, 1000), torch.randint(0, 1000, (256,), dtype=torch.int64),
                lambda m, x, t: F.cross_entropy(x, t))
    elif name == "lstm":
        return nn.LSTM(256, 256, num_layers=2), torch.randn(50, 32, 256), None, lambda m, x, t: m(x)[0]
    elif name == "mha":
        return (nn.MultiheadAttention(256, 8), torch.randn(128, 32, 256), None,
                lambda m, x, t: m(x, x, x, need_weights=False)[0])
    elif name in ("seed_cnn_step", "seed_cnn_b1"):
        batch = 1 if name == "seed_cnn_b1" else 64
        return (seed_cnn(), torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,), dtype=torch.int64),
                None)
    else:
        raise SystemExit(f"{PROG}: internal: case {name} has no builder")
    return m, x, tgt, lambda m, x, t: m(x)


def make_call(name, train):
    """The case's one timed call, as loom-bench-layers.c's run_once."""
    m, x, tgt, fwd = build(name)
    seed = name.startswith("seed_cnn")
    if m is not None:
        m.train(train)
    if not train:
        def infer():
            with torch.no_grad():
                m(x) if seed else fwd(m, x, tgt)
        return infer
    if seed:  # cross-entropy of the logits, backward from 1, SGD step; the input is data
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(m(x), tgt)
            loss.backward()
            opt.step()
        return step
    x.requires_grad_(True)
    gout = None
    if name != "cross_entropy":  # the fixed upstream gradient, made once
        with torch.no_grad():
            gout = torch.randn_like(fwd(m, x, tgt))

    def call():
        if m is not None:
            m.zero_grad(set_to_none=True)
        x.grad = None
        fwd(m, x, tgt).backward(gout)
    return call


def time_call(fn, runs):
    """Seconds per call of each run (each >= MIN_RUN_S, after WARMUP calls)."""
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(runs):
        calls = 0
        t0 = time.perf_counter()
        while True:
            fn()
            calls += 1
            t = time.perf_counter() - t0
            if t >= MIN_RUN_S:
                break
        times.append(t / calls)
    return times


def refuse(msg):
    print(f"{PROG}: {msg}", file=sys.stderr)
    sys.exit(2)


def int_in(flag, lo, hi):
    def parse(v):
        try:
            n = int(v)
        except ValueError:
            n = None
        if n is None or not lo <= n <= hi:
            refuse(f"{flag} must be an integer in {lo}..{hi}, got '{v}'")
        return n
    return parse


def main():
    ap = argparse.ArgumentParser(prog=PROG)
    ap.add_argument("--threads", type=int_in("--threads", 1, 1024), default=0)
    ap.add_argument("--runs", type=int_in("--runs", 1, MAX_RUNS), default=5)
    ap.add_argument("--only", default=None)
    ap.add_argument("--mode", default="train")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        for name, shape, modes in CASES:
            print(f"{name:<18} {shape:<44} {'infer' if modes == 'infer' else 'train infer'}")
        return
    if args.mode not in ("train", "infer"):
        refuse(f"--mode must be train or infer, got '{args.mode}'")
    train = args.mode == "train"
    names = [c[0] for c in CASES]
    if args.only is not None:
        wanted = args.only.split(",")
        for w in wanted:
            if w not in names:
                refuse(f"unknown case '{w}' in --only (--list names them)")
        selected = [c for c in CASES if c[0] in wanted]
    else:
        selected = [c for c in CASES if not (train and c[2] == "infer")]
    for name, _, modes in selected:
        if train and modes == "infer":
            print(f"{PROG}: case '{name}' runs in --mode infer only; skipped", file=sys.stderr)
    selected = [c for c in selected if not (train and c[2] == "infer")]
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    if not args.json:
        print(f"torch {torch.__version__}, cpu, {threads} threads, mode {args.mode}, median of {args.runs} runs "
              f"(each >= {MIN_RUN_S * 1e3:.0f} ms, after {WARMUP} warm-up calls)")
        print(f"{'case':<18} {'shape':<44} {'ms/call':>10}")
    for name, shape, _ in selected:
        times = time_call(make_call(name, train), args.runs)
        med = statistics.median(times)
        if args.json:
            print(json.dumps({"bench": name, "shape": shape, "mode": args.mode, "threads": threads,
                              "framework": "torch", "median_ms": round(med * 1e3, 4),
                              "runs_ms": [round(t * 1e3, 4) for t in times]}), flush=True)
        else:
            print(f"{name:<18} {shape:<44} {med * 1e3:10.3f}", flush=True)


if __name__ == "__main__":
    main()
