"""bench_report.py: Loom against PyTorch from the --json lines of loom-bench and tools/bench_torch.py.

    python3 tools/bench_report.py table FILE...
    python3 tools/bench_report.py plot OUT.png [--min-points N] FILE...

Only the summary lines ({"summary": true, ...}) are read; a summary without "framework" is Loom's
(loom-bench's first JSON had none). Runs are paired by (model, mode, batch, dtype, device).

table: a Markdown table, one row per key: Loom and PyTorch samples/s, their ratio, step p50 in ms,
MFU in %, and peak memory (the pool's peak where the framework keeps one, and the peak RSS). Repeated
runs of one key and framework (bench_sweep.sh interleaves them) give the median samples/s, p50, MFU
and memory, and the runs column counts them (Loom/PyTorch). Under the table, the devices, threads
and library versions each framework reported.

plot: samples/s (log scale) against batch size (log 2), one line per (framework, model, mode)
(dtype added to the name when not f32): a colour per model, solid for Loom, dashed for PyTorch, a
marker per mode; medians over repeated runs. Only series with at least --min-points batch sizes
(default 3: the batch sweeps) are drawn, or every series when none has that many. Needs matplotlib
(Agg backend, no display)."""
import json
import statistics
import sys

NAMES = {"loom": "Loom", "pytorch": "PyTorch"}


def read_summaries(paths):
    out = []
    for path in paths:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    d = json.loads(line)
                except json.JSONDecodeError:
                    print(f"bench_report.py: {path}:{n}: not JSON, skipped", file=sys.stderr)
                    continue
                if d.get("summary"):
                    d.setdefault("framework", "loom")
                    out.append(d)
    return out


def key_of(s):
    return (s.get("model"), s.get("mode"), s.get("batch"), s.get("dtype"), s.get("device"))


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def group(summaries):
    """{key: {framework: [summary, ...]}} in first-seen order."""
    groups = {}
    for s in summaries:
        groups.setdefault(key_of(s), {}).setdefault(s["framework"], []).append(s)
    return groups


def peak_memory(runs):
    """The pool's peak where the framework keeps one, and the peak RSS: "13.4 MB, RSS 30 MB"."""
    pool, rss = median([r.get("mem_peak") for r in runs]), median([r.get("peak_rss_kb") for r in runs])
    parts = ([f"{pool / 1e6:.1f} MB"] if pool is not None else []) + ([f"RSS {rss / 1e3:.0f} MB"] if rss else [])
    return ", ".join(parts) or "-"


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def percent(v):
    return "-" if v is None else f"{100 * v:.2f}%"


def table(paths):
    summaries = read_summaries(paths)
    if not summaries:
        print("bench_report.py: no summary lines in " + " ".join(paths), file=sys.stderr)
        return 1
    rows = ["| model | mode | batch | dtype | device | runs L/P | Loom samples/s | PyTorch samples/s | Loom/PyTorch "
            "| p50 ms Loom | p50 ms PyTorch | MFU Loom | MFU PyTorch | peak mem Loom | peak mem PyTorch |",
            "|" + "---|" * 15]
    for (model, mode, batch, dtype, device), by_fw in group(summaries).items():
        loom, torch = by_fw.get("loom", []), by_fw.get("pytorch", [])
        sl, st = median([r.get("samples_per_s") for r in loom]), median([r.get("samples_per_s") for r in torch])
        ml, mt = median([r.get("mfu") for r in loom]), median([r.get("mfu") for r in torch])
        ratio = f"{sl / st:.2f}x" if sl and st else "-"
        rows.append(f"| {model} | {mode} | {batch} | {dtype} | {device} | {len(loom)}/{len(torch)} | {fmt(sl, '.1f')} "
                    f"| {fmt(st, '.1f')} | {ratio} | {fmt(median([r.get('step_ms_p50') for r in loom]), '.3f')} "
                    f"| {fmt(median([r.get('step_ms_p50') for r in torch]), '.3f')} "
                    f"| {percent(ml)} | {percent(mt)} "
                    f"| {peak_memory(loom) if loom else '-'} | {peak_memory(torch) if torch else '-'} |")
    print("\n".join(rows))
    print()
    seen = set()
    for s in summaries:
        world = f", world size {s['world_size']}" if (s.get("world_size") or 1) > 1 else ""
        line = (f"- {NAMES.get(s['framework'], s['framework'])}: {s.get('device')} ({s.get('device_name', '?')}), "
                f"{s.get('threads')} threads{world}")
        if line not in seen:
            seen.add(line)
            print(line)
    return 0


def plot(out, paths, min_points=3):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    summaries = read_summaries(paths)
    series = {}  # (framework, model, mode, dtype) -> {batch: [samples/s]}
    for s in summaries:
        if s.get("samples_per_s") is None:
            continue
        k = (s["framework"], s["model"], s["mode"], s["dtype"])
        series.setdefault(k, {}).setdefault(s["batch"], []).append(s["samples_per_s"])
    if not series:
        print("bench_report.py: nothing to plot in " + " ".join(paths), file=sys.stderr)
        return 1
    chosen = {k: v for k, v in series.items() if len(v) >= min_points} or series
    models = sorted({k[1] for k in chosen})
    colours = plt.get_cmap("tab10" if len(models) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(9, 6))
    for (fw, model, mode, dtype), points in sorted(chosen.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        batches = sorted(points)
        label = f"{NAMES.get(fw, fw)} {model} {mode}" + ("" if dtype == "f32" else f" {dtype}")
        ax.plot(batches, [statistics.median(points[b]) for b in batches], label=label,
                color=colours(models.index(model) % colours.N), linestyle="-" if fw == "loom" else "--",
                marker="o" if mode == "train" else "s")
    devices = sorted({f"{s.get('device')} ({s.get('device_name', '?')}), {s.get('threads')} threads"
                      for s in summaries})
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({b for points in chosen.values() for b in points}))
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_yscale("log")
    ax.set_xlabel("batch size (samples per step)")
    ax.set_ylabel("throughput (samples/s, median over runs)")
    ax.set_title("Loom (solid) and PyTorch (dashed): throughput against batch size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="; ".join(devices), fontsize="small", title_fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"bench_report.py: wrote {out} ({len(chosen)} lines)")
    return 0


def main(argv):
    usage = ("usage: bench_report.py table FILE...\n"
             "       bench_report.py plot OUT.png [--min-points N] FILE...")
    if len(argv) >= 2 and argv[0] == "table":
        return table(argv[1:])
    if len(argv) >= 3 and argv[0] == "plot":
        out, rest, min_points = argv[1], argv[2:], 3
        if rest[0] == "--min-points":
            if len(rest) < 3 or not rest[1].isdigit():
                print(usage, file=sys.stderr)
                return 2
            min_points, rest = int(rest[1]), rest[2:]
        return plot(out, rest, min_points)
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except OSError as e:
        print(f"bench_report.py: {e}", file=sys.stderr)
        sys.exit(1)
