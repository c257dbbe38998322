"""The seed CNN training step of examples/seed_cnn.c, run with PyTorch on the same machine.

    python3 tools/bench_seed_cnn_torch.py [--steps N] [--warmup N] [--batch-size N] [--lr X]
                                          [--device cpu|cuda] [--threads N] [--data DIR] [--epochs N]

Same model (conv 1->32 k3, ReLU, maxpool 2, conv 32->64 k3, ReLU, maxpool 2, flatten,
linear 1600->128, ReLU, linear 128->10, PyTorch's default init), same optimiser (SGD lr 0.01,
momentum 0.9), batch 64, cross-entropy, and the same data: the Fashion-MNIST training images read
from the IDX .gz files, scaled to [0, 1] and normalised with mean 0.2860 / std 0.3530, a new
shuffle every epoch. Like seed_cnn, one step includes taking the shuffled batch, forward,
loss, backward, the update, and adding the batch's loss and correct count on the device.

Prints training samples/s over --steps steps after --warmup steps (samples over wall time),
then the single-image inference latency as seed_cnn prints it (mean, p50, p99 over 200).
With --epochs N it trains N whole epochs instead and prints the test accuracy.
Developers run it beside build/seed_cnn; CI never runs it (torch is not a dependency of Loom).
"""
import argparse
import math
import gzip
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN, STD = 0.2860, 0.3530


def read_idx(path):
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SystemExit(f"bench_seed_cnn_torch: cannot open {path}: {e}")
    magic, n = struct.unpack(">II", data[:8])
    if magic == 0x803:
        rows, cols = struct.unpack(">II", data[8:16])
        x = np.frombuffer(data, np.uint8, n * rows * cols, 16).reshape(n, 1, rows, cols)
        return torch.from_numpy(((x.astype(np.float32) / 255.0) - MEAN) / STD)
    if magic == 0x801:
        return torch.from_numpy(np.frombuffer(data, np.uint8, n, 8).astype(np.int64))
    raise SystemExit(f"bench_seed_cnn_torch: {path}: not an IDX file")


def load(data, split):
    x = read_idx(os.path.join(data, f"{split}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(data, f"{split}-labels-idx1-ubyte.gz"))
    return x, y


def seed_cnn():
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10))


def batches(x, y, batch, gen):
    """Endless shuffled batches, a new permutation per epoch."""
    while True:
        perm = torch.randperm(x.shape[0], generator=gen)
        for i in range(0, x.shape[0], batch):
            idx = perm[i:i + batch]
            yield x[idx], y[idx]


def step(net, opt, xb, yb, acc):
    logits = net(xb)
    loss = F.cross_entropy(logits, yb)
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        acc[0] += loss.detach() * xb.shape[0]
        acc[1] += (logits.argmax(1) == yb).sum()


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--epochs", type=int, default=0, help="train whole epochs and report test accuracy")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(args.seed)
    xtr, ytr = load(args.data, "train")
    xtr, ytr = xtr.to(dev), ytr.to(dev)
    net = seed_cnn().to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum)
    gen = torch.Generator().manual_seed(args.seed)
    acc = [torch.zeros((), device=dev), torch.zeros((), device=dev, dtype=torch.int64)]
    print(f"torch {torch.__version__}, device {dev}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    if args.epochs > 0:
        steps_per_epoch = (xtr.shape[0] + args.batch_size - 1) // args.batch_size
        it = batches(xtr, ytr, args.batch_size, gen)
        t0 = time.perf_counter()
        for e in range(args.epochs):
            for _ in range(steps_per_epoch):
                xb, yb = next(it)
                step(net, opt, xb, yb, acc)
            print(f"epoch {e + 1}/{args.epochs}  {time.perf_counter() - t0:.1f} s", flush=True)
        xte, yte = load(args.data, "t10k")
        net.eval()
        with torch.no_grad():
            correct = sum((net(xte[i:i + 1000].to(dev)).argmax(1) == yte[i:i + 1000].to(dev)).sum().item()
                          for i in range(0, xte.shape[0], 1000))
        print(f"test accuracy {100.0 * correct / xte.shape[0]:.2f}%")
        return
    it = batches(xtr, ytr, args.batch_size, gen)
    for _ in range(args.warmup):
        step(net, opt, *next(it), acc)
    sync(dev)
    t0 = time.perf_counter()
    samples = 0
    for _ in range(args.steps):
        xb, yb = next(it)
        step(net, opt, xb, yb, acc)
        samples += xb.shape[0]
    sync(dev)
    secs = time.perf_counter() - t0
    print(f"seed CNN training: {args.steps} steps after {args.warmup} warm-up, {samples / secs:.0f} samples/s "
          f"({1e3 * secs / args.steps:.2f} ms/step)")
    latency(net, args.data, dev)


def latency(net, data, dev, runs=200):
    """One test image at a time, as seed_cnn's latency line: eval mode, no grad, forward + argmax
    + the class back on the host, five warm-up calls; the images are tensors already."""
    xte, _ = load(data, "t10k")
    net.eval()
    times = []
    with torch.no_grad():
        for i in range(-5, runs):
            x = xte[(i + 5) % xte.shape[0]].unsqueeze(0).to(dev)
            t0 = time.perf_counter()
            int(net(x).argmax(1).item())
            if i >= 0:
                times.append(time.perf_counter() - t0)
    times.sort()
    print(f"inference latency, 1 image: mean {1e3 * sum(times) / runs:.3f} ms, p50 {1e3 * times[runs // 2]:.3f} ms, "
          f"p99 {1e3 * times[math.ceil(0.99 * runs) - 1]:.3f} ms over {runs}")


if __name__ == "__main__":
    main()
