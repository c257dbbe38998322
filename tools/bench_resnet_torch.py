"""examples/resnet_train.c with PyTorch: ResNet-18 with the CIFAR stem on Fashion-MNIST padded to 32x32.

    python3 tools/bench_resnet_torch.py [--epochs N] [--batch-size N] [--lr X] [--momentum X]
                                        [--weight-decay X] [--nesterov] [--schedule cosine|onecycle]
                                        [--no-augment] [--device cpu|cuda[:N]] [--dtype f32|bf16] [--tf32]
                                        [--data DIR] [--limit N] [--test-limit N] [--seed N]
                                        [--log-every N] [--threads N]

Same model: torchvision.models.resnet18(num_classes=10) with conv1 = Conv2d(1, 64, 3, 1, 1,
bias=False) (initialised like the rest, kaiming normal fan_out, as Loom's zoo does) and maxpool =
Identity. Same recipe: SGD lr 0.1, momentum 0.9, weight decay 5e-4 on every parameter, batch 128,
cosine annealing over all steps stepped after every step (or OneCycleLR with its defaults,
momentum cycled, as Loom's one-cycle), cross-entropy, 10 epochs, TF32 off unless --tf32 (Loom's default; cuDNN's
benchmark mode on), a new shuffle every epoch, the last batch kept.
Same data: the IDX .gz files read with gzip + numpy, zero-padded from 28x28 to 32x32, a random
32x32 crop of the padded image padded by 4 more and a horizontal flip with probability 0.5
(unless --no-augment), then normalised with mean 0.2860 / std 0.3530. The images stay in one
uint8 tensor on the device and each batch is cropped, flipped and normalised there with one
gather (PyTorch's fast path: no DataLoader, no worker processes).

Prints the same lines as resnet_train (progress, "test accuracy", "training: ... samples/s (after
the first step)", "time per epoch", and after --limit the extrapolation to all the training
images), so the two can be read side by side. It saves no checkpoints (resnet_train's training
time includes its end-of-epoch checkpoint saves). Developers run it beside build/resnet_train;
CI never runs it (torch is not a dependency of Loom).
"""
import argparse
import gzip
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

PROG = "bench_resnet_torch"
MEAN, STD = 0.2860, 0.3530
SIDE, PAD, AUG_PAD = 32, 2, 4   # 28 + 2 * 2 = 32; the random crop pads by 4 more
FULL_EPOCHS = 10


def read_idx(path):
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SystemExit(f"{PROG}: cannot open {path}: {e}")
    magic, n = struct.unpack(">II", data[:8])
    if magic == 0x803:
        rows, cols = struct.unpack(">II", data[8:16])
        return torch.from_numpy(np.frombuffer(data, np.uint8, n * rows * cols, 16).reshape(n, rows, cols).copy())
    if magic == 0x801:
        return torch.from_numpy(np.frombuffer(data, np.uint8, n, 8).astype(np.int64))
    raise SystemExit(f"{PROG}: {path}: not an IDX file")


def load(data, split, limit):
    x = read_idx(os.path.join(data, f"{split}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(data, f"{split}-labels-idx1-ubyte.gz"))
    full = x.shape[0]
    if limit > 0:
        x, y = x[:limit], y[:limit]
    # uint8 [N, 40, 40]: the 32x32 image with the random crop's 4 extra pixels of zeros on every side
    m = PAD + AUG_PAD
    return F.pad(x, (m, m, m, m)), y, full


def resnet18_cifar():
    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision inits the rest
    net.maxpool = nn.Identity()
    return net


def make_batch(xpad, idx, augment, gen):
    """Crop (random, or the centre = just padded), flip and normalise images idx of xpad: f32 [B, 1, 32, 32]."""
    b, dev = idx.shape[0], xpad.device
    ar = torch.arange(SIDE, device=dev)
    if augment:
        top = torch.randint(0, 2 * AUG_PAD + 1, (b,), generator=gen).to(dev)
        left = torch.randint(0, 2 * AUG_PAD + 1, (b,), generator=gen).to(dev)
        flip = (torch.rand(b, generator=gen) < 0.5).to(dev)
    else:
        top = left = torch.full((b,), AUG_PAD, device=dev)
        flip = torch.zeros(b, dtype=torch.bool, device=dev)
    rows = top[:, None] + ar                                        # [B, 32]
    cols = torch.where(flip[:, None], left[:, None] + SIDE - 1 - ar, left[:, None] + ar)
    x = xpad[idx[:, None, None], rows[:, :, None], cols[:, None, :]]  # [B, 32, 32] uint8
    return ((x.float() / 255.0 - MEAN) / STD).unsqueeze(1)


def hms(s):
    t = int(s + 0.5)
    return f"{t // 3600}:{t // 60 % 60:02d}:{t % 60:02d}" if t >= 3600 else f"{t // 60}:{t % 60:02d}"


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main():
    ap = argparse.ArgumentParser(description="resnet_train's recipe in PyTorch")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32", help="bf16: autocast on CUDA")
    ap.add_argument("--tf32", action="store_true", help="TF32 for f32 convs and matmuls on CUDA (off, as in Loom)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--nesterov", action="store_true")
    ap.add_argument("--schedule", choices=["cosine", "onecycle"], default="cosine")
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--limit", type=int, default=0, help="the first N training images (0 = all)")
    ap.add_argument("--test-limit", type=int, default=0, help="the first N test images (0 = all)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    a = ap.parse_args()
    if a.epochs < 1 or a.batch_size < 1 or a.log_every < 1 or a.limit < 0 or a.test_limit < 0 or a.threads < 0:
        ap.error("--epochs, --batch-size and --log-every need integers >= 1; --limit, --test-limit, --threads >= 0")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if a.dtype == "bf16" and dev.type != "cuda":
        sys.exit(f"{PROG}: --dtype bf16 needs a CUDA device (a bf16 autocast region on the GPU); "
                 "on the CPU use --dtype f32")
    # Loom's defaults: no TF32 (PyTorch lets cuDNN use it unless told not to); cuDNN picks its
    # fastest algorithms for the fixed shapes, PyTorch's usual setting for CNN training.
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    torch.backends.cudnn.benchmark = True
    autocast = dict(device_type="cuda", dtype=torch.bfloat16, enabled=a.dtype == "bf16")
    augment = not a.no_augment

    torch.manual_seed(a.seed)
    xtr, ytr, full_train = load(a.data, "train", a.limit)
    xte, yte, full_test = load(a.data, "t10k", a.test_limit)
    xtr, ytr, xte, yte = xtr.to(dev), ytr.to(dev), xte.to(dev), yte.to(dev)
    net = resnet18_cifar().to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay,
                          nesterov=a.nesterov)
    n = xtr.shape[0]
    per_epoch = (n + a.batch_size - 1) // a.batch_size
    total = a.epochs * per_epoch
    if a.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=total)
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    gen = torch.Generator().manual_seed(a.seed)

    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {torch.get_num_threads()} threads")
    extra = f", {torch.get_num_threads()} threads" if dev.type == "cpu" else ", TF32 on" if a.tf32 else ""
    print(f"Fashion-MNIST: {n} training images, {xte.shape[0]} test images, {SIDE}x{SIDE} (zero-padded from 28x28), "
          f"device {dev}{extra}")
    params = sum(p.numel() for p in net.parameters())
    print(f"resnet18 ({params} parameters, CIFAR stem), SGD lr {a.lr:g} momentum {a.momentum:g}"
          f"{' (Nesterov)' if a.nesterov else ''} weight decay {a.weight_decay:g}, "
          f"{'one-cycle' if a.schedule == 'onecycle' else 'cosine'} schedule over {total} steps, "
          f"batch size {a.batch_size}, cross-entropy, {a.epochs} epochs, {'bf16 autocast' if a.dtype == 'bf16' else 'f32'}")
    print("augmentation: " + (f"random crop {SIDE} with padding {AUG_PAD}, horizontal flip" if augment else "none"),
          flush=True)

    net.train()
    sync(dev)
    t_start = time.perf_counter()
    t_mark, t_first, timed, step = t_start, None, 0, 0
    epoch_s = []
    for e in range(a.epochs):
        perm = torch.randperm(n, generator=gen).to(dev)
        sums = torch.zeros(2, device=dev, dtype=torch.float64)   # loss * B, correct: read only when printed
        seen = 0
        for i in range(per_epoch):
            idx = perm[i * a.batch_size:(i + 1) * a.batch_size]
            xb, yb = make_batch(xtr, idx, augment, gen), ytr[idx]
            with torch.autocast(**autocast):
                logits = net(xb)
                loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            lr = opt.param_groups[0]["lr"]   # the next step's, as resnet_train prints it
            step += 1
            with torch.no_grad():
                sums += torch.stack([loss.detach().double() * xb.shape[0], (logits.argmax(1) == yb).sum().double()])
            seen += xb.shape[0]
            if t_first is None:
                sync(dev)
                t_first = time.perf_counter()
            else:
                timed += xb.shape[0]
            if (i + 1) % a.log_every == 0 or i + 1 == per_epoch:
                ls, correct = sums.tolist()   # syncs
                now = time.perf_counter()
                eta = (now - t_start) / step * (total - step)
                speed = f"  {timed / (now - t_first):.0f} samples/s" if timed else ""
                print(f"epoch {e + 1}/{a.epochs}  step {i + 1}/{per_epoch}  loss {ls / seen:.4f}  "
                      f"acc {100 * correct / seen:.2f}%  lr {lr:.3g}{speed}  ETA {hms(eta)}", flush=True)
        sync(dev)
        now = time.perf_counter()
        epoch_s.append(now - t_mark)
        t_mark = now
    sync(dev)
    t_end = time.perf_counter()

    net.eval()
    correct = 0
    with torch.no_grad(), torch.autocast(**autocast):
        for i in range(0, xte.shape[0], 500):
            idx = torch.arange(i, min(i + 500, xte.shape[0]), device=dev)
            correct += (net(make_batch(xte, idx, False, gen)).argmax(1) == yte[idx]).sum().item()
    print(f"test accuracy {100.0 * correct / xte.shape[0]:.2f}% ({xte.shape[0]} images)")
    secs = t_end - t_start
    rate = timed / (t_end - t_first) if timed else float("nan")
    if math.isnan(rate):
        print(f"training: {secs:.1f} s, one step only: no samples/s after the first step")
        return
    r = f"{rate:.1f}" if rate < 100 else f"{rate:.0f}"   # "8.4 samples/s" on a CPU, "4312" on a GPU
    print(f"training: {secs:.1f} s, {r} samples/s (after the first step)")
    listed = ", ".join(f"{k + 1}: {s:.1f} s" for k, s in enumerate(epoch_s))
    print(f"time per epoch: {sum(epoch_s) / len(epoch_s):.1f} s (mean of {len(epoch_s)}; epoch {listed})")
    if a.limit > 0 and n < full_train:
        epoch_full = full_train / rate
        print(f"extrapolated to all {full_train} training images from {r} samples/s (not measured): "
              f"{hms(epoch_full)} per epoch, {hms(FULL_EPOCHS * epoch_full)} for {FULL_EPOCHS} epochs")
    if a.test_limit > 0 and xte.shape[0] < full_test:
        print(f"(test accuracy on the first {xte.shape[0]} of {full_test} test images: --test-limit)")


if __name__ == "__main__":
    main()
