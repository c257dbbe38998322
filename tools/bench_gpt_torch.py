"""examples/gpt_train.c with PyTorch: a char-level GPT-2 (Hugging Face transformers) on a text file.

    python3 tools/bench_gpt_torch.py [--text FILE] [--bytes] [--preset gpt2] [--layers N] [--heads N]
                                     [--embd N] [--seq-len N] [--dropout X] [--steps N] [--batch-size N]
                                     [--lr X] [--weight-decay X] [--warmup N] [--device cpu|cuda[:N]]
                                     [--dtype f32|bf16] [--threads N] [--seed N] [--log-every N]
                                     [--eval-every N]

Same data: the text file (default the GPL-3) read as UTF-8, one token per code point numbered by
its rank in the sorted set of code points seen (vocab = the number of distinct ones), or with
--bytes one token per byte (vocab 256). Non-overlapping windows: window i starts at token i * L,
x = tokens[s:s+L], y = tokens[s+1:s+L+1], (n_tokens - 1) // L of them; the last 10 % (at least
1) are held out for validation. Every epoch shuffles the training windows (a generator seeded with
--seed + epoch) and takes them in batches, the last incomplete batch kept. All windows stay in one
tensor on the device and each batch is one gather from it (PyTorch's fast path: no DataLoader).
Same model: transformers' GPT2LMHeadModel (GELU tanh approximation, pre-LayerNorm blocks, tied
lm_head, SDPA attention) seeded with torch.manual_seed(--seed) before it is built; 4 layers, 4 heads,
n_embd 128, seq_len 64 and the text's vocab, or with --preset gpt2 the GPT-2 124M shape (12 layers,
12 heads, n_embd 768, seq_len 1024, vocab 50257; the tokens still come from the text).
Same recipe: cross-entropy over every position (x and y are already shifted), AdamW lr 1e-3
betas (0.9, 0.99) weight decay 0.1 on every parameter, a linear warm-up from 0.01 * lr over --warmup
steps then cosine annealing over the rest, stepped after every optimiser step, no gradient clipping,
--steps optimiser steps in all. bf16 is an autocast region (CUDA only) around the forward and loss.

Prints the same lines as gpt_train ("text:", "model:", the optimiser line, "step k/S  loss ...",
"step k: val loss ...", "training: ... tokens/s (after the first step)" and on CUDA "peak memory:"),
so the two can be read side by side. tokens/s counts batch rows * seq_len of every step after the
first (the warm-up step) over the wall time since the end of the first step, validation left
out, as in gpt_train (run gpt_train with --checkpoint-every 0 so that no checkpoint falls inside
its timed steps); the lr printed is the next step's, as gpt_train prints it. Developers run it
beside build/gpt_train; CI never runs it (torch and transformers are not dependencies of Loom).
"""
import argparse
import sys
import time

import torch
import torch.nn.functional as F

PROG = "bench_gpt_torch"
GPT2_124M = dict(layers=12, heads=12, embd=768, seq_len=1024, vocab=50257)
SMALL = dict(layers=4, heads=4, embd=128, seq_len=64)


def int_at_least(lo):
    def parse(s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer: {s!r}")
        if v < lo:
            raise argparse.ArgumentTypeError(f"needs an integer >= {lo}, got {v}")
        return v
    return parse


def float_in(lo, hi, lo_open=False, hi_open=False):
    def parse(s):
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid number: {s!r}")
        if not (v > lo if lo_open else v >= lo) or not (v < hi if hi_open else v <= hi):
            lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"
            raise argparse.ArgumentTypeError(f"needs a number in {lb}{lo:g}, {hi:g}{rb}, got {s}")
        return v
    return parse


def read_tokens(path, raw_bytes):
    """The text's tokens (int64) and its vocab size."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        sys.exit(f"{PROG}: cannot open {path}: {e.strerror}")
    if raw_bytes:
        return torch.frombuffer(bytearray(data), dtype=torch.uint8).long(), 256
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        sys.exit(f"{PROG}: {path}: not UTF-8 ({e}); --bytes reads it as raw bytes")
    chars = sorted(set(text))
    rank = {c: i for i, c in enumerate(chars)}
    return torch.tensor([rank[c] for c in text], dtype=torch.long), len(chars)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" except where the default is None or False (the help says it then)."""
    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main():
    ap = argparse.ArgumentParser(
        description="gpt_train's recipe in PyTorch + transformers (char-level GPT-2), for tokens/s side by side",
        formatter_class=HelpFormatter)
    ap.add_argument("--text", default="/usr/share/common-licenses/GPL-3", help="the training text (UTF-8)")
    ap.add_argument("--bytes", action="store_true", help="tokens are the raw bytes (vocab 256), not code points")
    ap.add_argument("--preset", choices=["gpt2"], default=None,
                    help="gpt2: the GPT-2 124M shape (12 layers, 12 heads, n_embd 768, seq_len 1024, vocab 50257); "
                         "--layers/--heads/--embd/--seq-len given as well override it (default: none, the small "
                         "shape below with the text's vocab)")
    ap.add_argument("--layers", type=int_at_least(1), default=None, help="transformer blocks (default 4; 12 with --preset gpt2)")
    ap.add_argument("--heads", type=int_at_least(1), default=None, help="attention heads (default 4; 12 with --preset gpt2)")
    ap.add_argument("--embd", type=int_at_least(1), default=None, help="n_embd, a multiple of --heads (default 128; 768 with --preset gpt2)")
    ap.add_argument("--seq-len", type=int_at_least(1), default=None, help="window length L = n_ctx (default 64; 1024 with --preset gpt2)")
    ap.add_argument("--dropout", type=float_in(0, 1, hi_open=True), default=0.0,
                    help="resid, embd and attn dropout")
    ap.add_argument("--steps", type=int_at_least(1), default=2000, help="optimiser steps in all (across epochs)")
    ap.add_argument("--batch-size", type=int_at_least(1), default=32, help="windows per step")
    ap.add_argument("--lr", type=float_in(0, float("inf"), lo_open=True, hi_open=True), default=1e-3,
                    help="AdamW peak learning rate")
    ap.add_argument("--weight-decay", type=float_in(0, float("inf"), hi_open=True), default=0.1,
                    help="AdamW decoupled weight decay, on every parameter")
    ap.add_argument("--warmup", type=int_at_least(0), default=100,
                    help="linear warm-up steps from 0.01 * lr (0 = cosine only)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="cpu, cuda or cuda:N")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32",
                    help="bf16: a bf16 autocast region around forward + loss (CUDA only)")
    ap.add_argument("--threads", type=int_at_least(0), default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--seed", type=int, default=1, help="model init and shuffle seed")
    ap.add_argument("--log-every", type=int_at_least(1), default=50, help="print the training loss every N steps")
    ap.add_argument("--eval-every", type=int_at_least(0), default=250,
                    help="validation loss every N steps (0 = only at the end)")
    a = ap.parse_args()

    shape = dict(GPT2_124M if a.preset == "gpt2" else SMALL)
    for k in ("layers", "heads", "embd", "seq_len"):
        if getattr(a, k) is not None:
            shape[k] = getattr(a, k)
    if shape["embd"] % shape["heads"]:
        ap.error(f"--embd {shape['embd']} is not a multiple of --heads {shape['heads']}")
    try:
        dev = torch.device(a.device)
    except RuntimeError:
        ap.error(f"--device {a.device}: cpu, cuda or cuda:N")
    if dev.type not in ("cpu", "cuda"):
        ap.error(f"--device {a.device}: cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {a.device}: this torch sees no CUDA device")
    if a.dtype == "bf16" and dev.type != "cuda":
        print(f"{PROG}: --dtype bf16 needs a CUDA device (a bf16 autocast region on the GPU); "
              "on the CPU use --dtype f32", file=sys.stderr)
        sys.exit(2)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    autocast = dict(device_type="cuda", dtype=torch.bfloat16, enabled=a.dtype == "bf16")

    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    # data: non-overlapping windows, the last 10 % held out, all on the device
    L = shape["seq_len"]
    tokens, text_vocab = read_tokens(a.text, a.bytes)
    n_tok = tokens.shape[0]
    count = (n_tok - 1) // L if n_tok > 0 else 0
    n_val = max(1, count // 10)
    n_train = count - n_val
    if n_train < 1:
        sys.exit(f"{PROG}: {a.text}: {n_tok} tokens make {count} windows of {L} + 1 tokens; "
                 "need at least 2 (one to train on, one held out)")
    vocab = shape.get("vocab", text_vocab)
    if text_vocab > vocab:
        sys.exit(f"{PROG}: {a.text}: {text_vocab} distinct tokens do not fit the vocab of {vocab}")
    X = tokens[:count * L].view(count, L).to(dev)
    Y = tokens[1:count * L + 1].view(count, L).to(dev)
    xtr, ytr, xval, yval = X[:n_train], Y[:n_train], X[n_train:], Y[n_train:]

    # model and optimiser
    torch.manual_seed(a.seed)
    cfg = GPT2Config(vocab_size=vocab, n_positions=L, n_embd=shape["embd"], n_layer=shape["layers"],
                     n_head=shape["heads"], resid_pdrop=a.dropout, embd_pdrop=a.dropout, attn_pdrop=a.dropout,
                     activation_function="gelu_new", use_cache=False, bos_token_id=None, eos_token_id=None,
                     attn_implementation="sdpa")
    model = GPT2LMHeadModel(cfg).to(dev)
    if model.config._attn_implementation != "sdpa":
        sys.exit(f"{PROG}: transformers chose {model.config._attn_implementation} attention, not sdpa")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.99), weight_decay=a.weight_decay)
    warmup = min(a.warmup, a.steps - 1)   # as gpt_train: at least one cosine step
    cosine_steps = a.steps - warmup
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cosine_steps)
    if warmup > 0:
        warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.01, end_factor=1.0, total_iters=warmup)
        sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cosine], milestones=[warmup])
    else:
        sched = cosine

    params = sum(p.numel() for p in model.parameters())
    where = f"{torch.get_num_threads()} threads" if dev.type == "cpu" else torch.cuda.get_device_name(dev)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"text: {a.text}, {count * L + 1} tokens (vocab {text_vocab} {'bytes' if a.bytes else 'characters'}), "
          f"{n_train} training windows, {n_val} held out, seq_len {L}")
    print(f"model: gpt2 (n_layer {shape['layers']}, n_head {shape['heads']}, n_embd {shape['embd']}, n_ctx {L}, "
          f"vocab {vocab}): {params} parameters (tied lm_head counted once)")
    print(f"AdamW lr {a.lr:g} betas (0.9, 0.99) weight decay {a.weight_decay:g}, warmup {warmup} then cosine "
          f"over {a.steps} steps, batch size {a.batch_size}, device {dev}, {where}, "
          f"{'bf16 autocast' if a.dtype == 'bf16' else 'f32'}", flush=True)

    eval_s = 0.0   # validation time, left out of tokens/s

    def val_loss():
        nonlocal eval_s
        t0 = time.perf_counter()
        model.eval()
        total = torch.zeros((), device=dev, dtype=torch.float64)
        with torch.no_grad(), torch.autocast(**autocast):
            for i in range(0, n_val, a.batch_size):
                xb, yb = xval[i:i + a.batch_size], yval[i:i + a.batch_size]
                logits = model(input_ids=xb, use_cache=False).logits
                total += F.cross_entropy(logits.view(-1, vocab).float(), yb.reshape(-1), reduction="sum").double()
        model.train()
        v = total.item() / (n_val * L)
        eval_s += time.perf_counter() - t0
        return v

    sync(dev)
    t_start = time.perf_counter()
    t_first, timed = None, 0
    loss_sum = torch.zeros((), device=dev, dtype=torch.float64)   # read only when printed
    loss_n, step, epoch, last_eval = 0, 0, 0, 0
    while step < a.steps:
        gen = torch.Generator().manual_seed(a.seed + epoch)
        perm = torch.randperm(n_train, generator=gen).to(dev)
        for i in range(0, n_train, a.batch_size):
            if step == a.steps:
                break
            idx = perm[i:i + a.batch_size]
            xb, yb = xtr[idx], ytr[idx]
            with torch.autocast(**autocast):
                logits = model(input_ids=xb, use_cache=False).logits
                loss = F.cross_entropy(logits.view(-1, vocab), yb.view(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            lr = opt.param_groups[0]["lr"]   # the next step's, as gpt_train prints it
            step += 1
            loss_sum += loss.detach().double()
            loss_n += 1
            if t_first is None:
                sync(dev)
                t_first = time.perf_counter()
            else:
                timed += xb.shape[0] * L
            if step % a.log_every == 0 or step == a.steps:
                mean = loss_sum.item() / loss_n   # syncs
                speed = f"  {timed / (time.perf_counter() - t_first - eval_s):.0f} tokens/s" if timed else ""
                print(f"step {step}/{a.steps}  loss {mean:.4f}  lr {lr:.2e}{speed}", flush=True)
                loss_sum.zero_()
                loss_n = 0
            if a.eval_every and step % a.eval_every == 0 and step < a.steps:
                print(f"step {step}: val loss {val_loss():.4f}", flush=True)
                last_eval = step
        epoch += 1
    sync(dev)
    t_end = time.perf_counter()
    if last_eval != step:
        print(f"step {step}: val loss {val_loss():.4f}")

    secs = t_end - t_start
    if not timed:
        print(f"training: {secs:.1f} s, no tokens/s (fewer than two steps in this run)")
    else:
        print(f"training: {secs:.1f} s, {timed / (t_end - t_first - eval_s):.0f} tokens/s (after the first step, validation excluded)")
    if dev.type == "cuda":
        print(f"peak memory: {torch.cuda.max_memory_allocated(dev) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
