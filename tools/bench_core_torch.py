"""The cases of loom-bench-core, run with PyTorch on the same machine.

    python3 tools/bench_core_torch.py [--device cpu|cuda] [--runs N] [--threads N] [--json]

Same shapes, byte counts and timing rule as tools/loom-bench-core.c: the median
of --runs timed runs after a warm-up, each run repeating the op until it lasts
at least 50 ms. Developers run it beside loom-bench-core to compare; CI never
runs it (torch is not a dependency of Loom).
"""
import argparse
import json
import statistics
import time

import torch

MIN_RUN_S = 0.05
BIG = 16 << 20


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def seconds_per_call(fn, dev, runs):
    for _ in range(2):
        fn()
    sync(dev)
    t0 = time.perf_counter()
    fn()
    sync(dev)
    once = time.perf_counter() - t0
    iters = min(1000, int(MIN_RUN_S / once) + 1) if once > 0 else 1000
    times = []
    for _ in range(runs):
        sync(dev)
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        sync(dev)
        times.append((time.perf_counter() - t0) / iters)
    return statistics.median(times)


def row(args, name, shape, value, unit, secs):
    if args.json:
        print(json.dumps({"bench": name, "shape": shape, "device": args.device, "torch": round(value, 2),
                          "unit": unit, "median_ms": round(secs * 1e3, 4)}))
    else:
        print(f"{name:<16} {shape:<18} {value:10.2f}  {unit}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    if not args.json:
        print(f"torch {torch.__version__}, device {dev}, {torch.get_num_threads()} CPU threads")
        print(f"{'benchmark':<16} {'shape':<18} {'torch':>10}  unit")
    for n in (256, 512, 1024, 2048):
        a, b = torch.rand(n, n, device=dev), torch.rand(n, n, device=dev)
        t = seconds_per_call(lambda: a @ b, dev, args.runs)
        row(args, "matmul f32", f"{n}x{n}x{n}", 2.0 * n ** 3 / t / 1e9, "GFLOP/s", t)
    x, y = torch.rand(BIG, device=dev), torch.rand(BIG, device=dev)
    sq, rows = x.view(4096, 4096), torch.rand(4096, 1024, device=dev)
    f = 4.0
    cases = [
        ("add f32", "16M", lambda: x + y, 3 * f * BIG),
        ("mul f32", "16M", lambda: x * y, 3 * f * BIG),
        ("exp f32", "16M", lambda: torch.exp(x), 2 * f * BIG),
        ("sum rows", "4096x4096 -> 4096", lambda: sq.sum(-1), f * (BIG + 4096)),
        ("sum cols", "4096x4096 -> 4096", lambda: sq.sum(0), f * (BIG + 4096)),
        ("sum all", "4096x4096 -> 1", lambda: sq.sum(), f * (BIG + 1)),
        ("logsumexp", "4096x1024 -> 4096", lambda: torch.logsumexp(rows, -1), f * (4096 * 1024 + 4096)),
    ]
    for name, shape, fn, nbytes in cases:
        t = seconds_per_call(fn, dev, args.runs)
        row(args, name, shape, nbytes / t / 1e9, "GB/s", t)


if __name__ == "__main__":
    main()
