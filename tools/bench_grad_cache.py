"""Peak memory and time of GradCache against the plain step, SimCLR on random 32 px images.

Each setting runs in its own subprocess, ``--repeats`` times: GradCache at ``--global_batch``
in chunks of ``--chunk``, and the plain step at ``--chunk``, doubling up to ``--global_batch``
while its peak stays within ``--memory_budget_gb`` (the largest such batch is "the largest
that fits"); ``--plain_batches`` names the plain batches instead of the doubling. The first
round finds the settings; the next rounds run them in turn (GradCache, then each plain batch),
so a change in the machine's load falls on every setting alike. Peak memory: on a CPU the
subprocess's peak RSS (``ru_maxrss``), also given above its RSS once model and inputs are
built; on a GPU ``torch.cuda.max_memory_allocated``, also above what is allocated before the
first step. Time: seconds per step after ``--warmup``
steps. JSON on stdout, with the command, the commit and every run.

    python tools/bench_grad_cache.py                       # ResNet-18 (CIFAR stem), 4096 / 256
    python tools/bench_grad_cache.py --encoder small_cnn --plain_batches 256,4096 \\
        --threads 1                                        # what a loaded 2-core CPU can run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoder", choices=["resnet18", "small_cnn"], default="resnet18")
    p.add_argument("--cifar_stem", type=int, default=1, help="ResNet: 3x3 stem, no max-pool")
    p.add_argument("--head_hidden_dim", type=int, default=512)
    p.add_argument("--image_size", type=int, default=32)
    p.add_argument("--global_batch", type=int, default=4096)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--memory_budget_gb", type=float, default=0.0,
                   help="the plain step 'fits' while its peak stays below (0: the GPU's memory; "
                   "on a CPU: half the machine's)")  # fmt: skip
    p.add_argument("--plain_batches", default="",
                   help="comma-separated plain batches, instead of doubling from --chunk "
                   "(the largest within the budget is 'the largest that fits')")  # fmt: skip
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default). On a CPU shared with other jobs, "
                   "1 keeps each op from waiting on a second, descheduled thread")  # fmt: skip
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--_child", nargs=2, type=int, metavar=("BATCH", "CHUNK"), help=argparse.SUPPRESS
    )
    return p.parse_args(argv)


def child(args: argparse.Namespace) -> dict:
    """One setting: build, warm up, time ``--steps`` steps; the peak memory."""
    import torch
    from accelerate import Accelerator

    from multicon import PairBatch, methods
    from multicon.steps import AutogradStep, GradCacheStep, StepContext

    batch, chunk = args._child
    if args.threads:
        torch.set_num_threads(args.threads)
    device = _device(args.device)
    acc = Accelerator(cpu=device == "cpu")
    torch.manual_seed(0)
    model = methods.simclr(_encoder(args), temperature=0.5).to(acc.device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step = GradCacheStep(chunk) if chunk else AutogradStep()
    ctx = StepContext(acc, model, model, opt, 0.01, 0.0, lambda loss: None)
    size = args.image_size
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=acc.device)
    x = images.float().div_(255)
    pair = PairBatch(x.flip(3), x + 0.05 * torch.randn_like(x), torch.arange(batch))
    model.train()
    cuda = acc.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = _rss_bytes()
    seconds = []
    with _quiet():
        for i in range(args.warmup + args.steps):
            start = time.perf_counter()
            step(pair, ctx)
            if cuda:
                torch.cuda.synchronize()
            if i >= args.warmup:
                seconds.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if cuda else _peak_rss_bytes()
    return {
        "seconds_per_step": seconds,
        "peak_bytes": peak,
        "base_bytes": base,
        "threads": torch.get_num_threads(),
    }


def _encoder(args):
    if args.encoder == "small_cnn":
        from multicon.encoders.small_cnn import SmallConvEncoder

        return SmallConvEncoder(in_channels=3, width=32, proj_dim=128, proj_hidden_dim=512)
    from multicon.encoders.vision import ImageEncoder

    return ImageEncoder(
        "resnet18", cifar_stem=bool(args.cifar_stem), head_hidden_dim=args.head_hidden_dim
    )


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


class _quiet:
    """GradCache's BatchNorm warning once per run is expected here (a ResNet)."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.filterwarnings("ignore", "grad_cache_chunk: .* BatchNorm")

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return _peak_rss_bytes()


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def run_setting(args, argv: list[str], batch: int, chunk: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--_child", str(batch), str(chunk)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or ["rc " + str(done.returncode)]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _git(*cmd: str) -> str:
    out = subprocess.run(["git", "-C", str(ROOT), *cmd], capture_output=True, text=True)
    return out.stdout.strip()


def _summary(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0]["error"] if runs else "no run"}
    per_step = [s for r in ok for s in r["seconds_per_step"]]
    return {
        "seconds_per_step": round(statistics.median(per_step), 4),
        "peak_gb": round(max(r["peak_bytes"] for r in ok) / 2**30, 3),
        "above_base_gb": round(max(r["peak_bytes"] - r["base_bytes"] for r in ok) / 2**30, 3),
    }


def _per_round(by_setting: dict, gc_name: str, args, largest: int | None) -> list[dict]:
    """Each round's ratios, GradCache against the plain runs of the same round (run side by
    side, so under about the same load)."""
    rounds = []
    for repeat in range(args.repeats):
        pick = {
            name: next((r for r in runs if r["repeat"] == repeat and "error" not in r), None)
            for name, runs in by_setting.items()
        }
        gc, at_chunk = pick.get(gc_name), pick.get(f"plain_{args.chunk}")
        fits = pick.get(f"plain_{largest}") if largest else None
        row: dict = {"repeat": repeat}
        if gc and at_chunk:
            row["above_base_ratio_to_plain_at_chunk"] = round(
                (gc["peak_bytes"] - gc["base_bytes"])
                / (at_chunk["peak_bytes"] - at_chunk["base_bytes"]),
                3,
            )
        if gc and fits:
            gc_s = statistics.median(gc["seconds_per_step"]) / args.global_batch
            fits_s = statistics.median(fits["seconds_per_step"]) / largest
            row["time_per_sample_ratio_to_largest_plain"] = round(gc_s / fits_s, 3)
        rounds.append(row)
    return rounds


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args._child:
        result = child(args)
        print(json.dumps(result))
        return result
    if args.chunk > args.global_batch:
        raise ValueError(f"--chunk {args.chunk} is larger than --global_batch {args.global_batch}")
    device = _device(args.device)
    budget = args.memory_budget_gb * 2**30
    if not budget:
        if device == "cuda":
            import torch

            budget = torch.cuda.get_device_properties(0).total_memory
        else:
            budget = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2
    settings: dict[str, dict] = {}
    runs: list[dict] = []
    load_at_start = os.getloadavg()
    commit = _git("rev-parse", "HEAD")  # what the runs import: read before they start
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))

    by_setting: dict[str, list[dict]] = {}

    def run(name: str, batch: int, chunk: int, repeat: int) -> dict:
        r = run_setting(args, argv, batch, chunk)
        r.update(setting=name, batch=batch, chunk=chunk, repeat=repeat)
        r["load_average_after"] = os.getloadavg()
        by_setting.setdefault(name, []).append(r)
        runs.append(r)
        print(json.dumps(r), file=sys.stderr, flush=True)
        settings[name] = {"batch": batch, "chunk": chunk, **_summary(by_setting[name])}
        return settings[name]

    gc_name = f"grad_cache_{args.global_batch}_chunk_{args.chunk}"
    order = [(gc_name, args.global_batch, args.chunk)]
    run(gc_name, args.global_batch, args.chunk, 0)
    # Round 0 finds the plain batches that fit; later rounds interleave every setting.
    if args.plain_batches:
        candidates = sorted({int(b) for b in args.plain_batches.split(",")})
    else:
        candidates = [args.chunk * 2**i for i in range(args.global_batch.bit_length())]
        candidates = [b for b in candidates if b <= args.global_batch]
    largest = None
    for batch in candidates:
        s = run(f"plain_{batch}", batch, 0, 0)
        order.append((f"plain_{batch}", batch, 0))
        if "error" in s or s["peak_gb"] * 2**30 > budget:
            break
        largest = batch
    for repeat in range(1, args.repeats):
        for name, batch, chunk in order:
            run(name, batch, chunk, repeat)
    gc = settings[gc_name]
    at_chunk = settings.get(f"plain_{args.chunk}", {})
    fits = settings.get(f"plain_{largest}", {}) if largest else {}
    checks = {}
    if "error" not in gc and "peak_gb" in at_chunk:
        checks["peak_ratio_to_plain_at_chunk"] = round(gc["peak_gb"] / at_chunk["peak_gb"], 3)
        checks["above_base_ratio_to_plain_at_chunk"] = round(
            gc["above_base_gb"] / at_chunk["above_base_gb"], 3
        )
        checks["memory_target_1.3x"] = checks["above_base_ratio_to_plain_at_chunk"] <= 1.3
    if "error" not in gc and fits:
        per_sample = gc["seconds_per_step"] / args.global_batch
        plain_per_sample = fits["seconds_per_step"] / fits["batch"]
        checks["largest_plain_batch_that_fits"] = largest
        checks["time_per_sample_ratio_to_largest_plain"] = round(per_sample / plain_per_sample, 3)
        checks["time_target_1.5x"] = checks["time_per_sample_ratio_to_largest_plain"] <= 1.5
    checks["per_round"] = _per_round(by_setting, gc_name, args, largest)
    report = {
        "command": " ".join(["python", "tools/bench_grad_cache.py", *argv]),
        "commit": commit,
        "dirty": dirty,
        "device": device,
        "load_average": {"start": load_at_start, "end": os.getloadavg()},
        "memory_budget_gb": round(budget / 2**30, 2),
        "threads": sorted({r["threads"] for r in runs if "threads" in r}),
        "settings": settings,
        "checks": checks,
        "runs": runs,
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
