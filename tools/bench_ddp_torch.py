"""PyTorch DDP (gloo) twin of examples/ddp_train.c for the seed CNN on the CPU.

    torchrun --nproc-per-node N tools/bench_ddp_torch.py [--batch-size 64] [--steps 150] [--warmup 10]
                                                         [--threads 1] [--data DIR]

Same model, optimiser (SGD lr 0.01, momentum 0.9), global batch (--batch-size, split over the N
ranks) and data (Fashion-MNIST, normalised) as ddp_train; PyTorch gets its fast path: the images
already in one tensor. Each rank takes its share of a shuffled permutation (rank r: positions r,
r + N, ...: DistributedSampler's order). Prints, on rank 0, samples/s over --steps steps after
--warmup, per rank and in all. tools/bench_ddp.sh runs it beside ddp_train. Not run by CI.
"""
import argparse
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_seed_cnn_torch import load, seed_cnn  # noqa: E402  (the same model and data reader)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if a.batch_size % world:
        raise SystemExit(f"--batch-size {a.batch_size} must be a multiple of the world size {world}")
    per_rank = a.batch_size // world
    x, y = load(a.data, "train")
    torch.manual_seed(1)
    net = DDP(seed_cnn())
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    perm = torch.randperm(x.shape[0], generator=gen)[rank::world]
    t0 = None
    for s in range(a.warmup + a.steps):
        if s == a.warmup:
            dist.barrier()
            t0 = time.perf_counter()
        i = (s * per_rank) % (perm.shape[0] - per_rank)
        idx = perm[i:i + per_rank]
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    dist.barrier()
    dt = time.perf_counter() - t0
    if rank == 0:
        rate = a.steps * per_rank / dt
        print(f"pytorch ddp gloo: world {world}, threads {a.threads}, global batch {a.batch_size}: "
              f"{rate * world:.0f} samples/s in all, {rate:.0f} per rank")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
