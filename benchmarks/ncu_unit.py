"""Nsight Compute over one unit's forward NVTX range, against tlprof's CUDA-event time for it.

    python benchmarks/ncu_unit.py --profile OUT/r50_fp32.json --unit layer4.2.conv2 --out OUT/ncu_unit.json

Runs ``ncu --nvtx --nvtx-include <the unit's tlprof/fwd range>`` over this script in
``--target`` mode, which rebuilds the profiled model with the profile's settings,
trains a few steps with no ranges (so cuDNN has chosen its kernels), then runs one
instrumented step with NVTX ranges. The durations (``gpu__time_duration.sum``) of
the kernels inside the range are summed and compared with the unit's median
forward time in the profile (CUDA events, measured without ncu). Clock and cache
control are off so kernels run as they do in the profile. Needs ``ncu``, not
``nsys``; without ``ncu`` it says so and exits 0. Works with the ``nvtx`` package
(``tlprof`` domain) and with the ``torch.cuda.nvtx`` fallback (default domain).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

UNIT_NS = {"nsecond": 1.0, "ns": 1.0, "usecond": 1e3, "us": 1e3, "msecond": 1e6, "ms": 1e6,
           "second": 1e9, "s": 1e9}
METRIC = "gpu__time_duration.sum"
NCU_TIMEOUT_S = 300


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def kernel_durations_ns(log_text: str) -> list[tuple[str, float]]:
    """(kernel name, duration in ns) per profiled kernel, from ncu's ``--csv`` output (raw or details)."""
    rows = list(csv.reader(line for line in log_text.splitlines() if line.startswith('"')))
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    name_col = header.index("Kernel Name")
    if "Metric Name" in header:  # --page details: one row per metric
        m, u, v = (header.index(c) for c in ("Metric Name", "Metric Unit", "Metric Value"))
        return [(r[name_col], _number(r[v]) * UNIT_NS.get(r[u], 1.0)) for r in body if r[m] == METRIC]
    col = header.index(METRIC)  # --page raw: one row per kernel, maybe a row of units first
    scale = 1.0
    if body and not body[0][0].strip().isdigit():
        scale = UNIT_NS.get(body[0][col], 1.0)
        body = body[1:]
    return [(r[name_col], _number(r[col]) * scale) for r in body]


# -- the profiled program ---------------------------------------------------------------


def target(profile_path: str, warmup_steps: int) -> int:
    import torch
    from _setup import prepare

    from tlprof import Profiler
    from tlprof.document import RunDocument
    from tlprof.models import build_arch
    from tlprof.nvtx_ranges import NvtxRanges
    from tlprof.runner import ProfileConfig

    meta = RunDocument.load(profile_path).meta
    cfg = ProfileConfig(batch_size=meta.batch_size, input_shape=tuple(meta.input_shape), device="cuda",
                        precision=meta.precision or "default", channels_last=bool(meta.channels_last),
                        optimizer=meta.optimizer or "sgd", lr=meta.lr if meta.lr is not None else 1e-3)
    # placed and flagged (the profile's cuDNN and TF32 settings, so the same kernels run) as tlprof does
    ctx = prepare(build_arch(meta.arch, meta.num_classes), cfg)
    for _ in range(warmup_steps):
        ctx.train_step()
    torch.cuda.synchronize()
    ranges = NvtxRanges()
    prof = Profiler(ctx.model, ctx.units, optimizer=ctx.optimizer, hook_optimizer=False,
                    device=ctx.work.device, warmup=0, listeners=[ranges], name="ncu")
    with prof, prof.step():
        ctx.marked_step(prof)
    torch.cuda.synchronize()
    print(f"target: one step with NVTX ranges through {ranges.backend.name}")
    return 0


# -- the driver -------------------------------------------------------------------------


def run_ncu(ncu: str, nvtx_filter: str, profile_path: str, log: Path) -> tuple[int, str]:
    cmd = [ncu, "--nvtx", "--nvtx-include", nvtx_filter, "--metrics", METRIC, "--csv", "--page", "raw",
           "--clock-control", "none", "--cache-control", "none", "--target-processes", "all",
           "--log-file", str(log), sys.executable, __file__, "--target", "--profile", profile_path]
    print("$ " + " ".join(f"'{c}'" if any(ch in c for ch in " \\$") else c for c in cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=NCU_TIMEOUT_S)
    return done.returncode, (done.stdout + done.stderr)[-2000:]


def driver(args: argparse.Namespace) -> int:
    from tlprof.document import RunDocument
    from tlprof.nvtx_ranges import load_backend, nsight_filter, nsight_regex_filter

    out = Path(args.out)
    profile = RunDocument.load(args.profile)
    if not str(profile.meta.device or "").startswith("cuda"):
        return _skip(out, f"{args.profile} is not a CUDA profile")
    ncu = shutil.which("ncu") or next(
        (p for p in ("/usr/local/cuda/bin/ncu",) if os.access(p, os.X_OK)), None)
    if ncu is None:
        return _skip(out, "ncu (Nsight Compute) not found on PATH or in /usr/local/cuda/bin")
    names = profile.unit_names
    if args.unit not in names:
        print(f"ncu_unit: no unit {args.unit!r} in {args.profile}", file=sys.stderr)
        return 2
    index = names.index(args.unit)
    event = profile.runs[args.run].units[index].fwd_ms
    backend = load_backend()
    message = f"tlprof/fwd/{args.unit}"
    tried = []
    kernels: list[tuple[str, float]] = []
    for nvtx_filter in (nsight_filter(message, backend.domain), nsight_regex_filter(message, backend.domain)):
        log = out.with_suffix(f".{len(tried)}.csv")
        code, tail = run_ncu(ncu, nvtx_filter, args.profile, log)
        kernels = kernel_durations_ns(log.read_text()) if log.exists() else []
        tried.append({"filter": nvtx_filter, "ncu_exit": code, "kernels": len(kernels)})
        if code != 0:
            print(f"ncu failed (exit {code}):\n{tail}", file=sys.stderr)
        if kernels:
            break
    kernel_ms = sum(d for _, d in kernels) / 1e6
    result = {
        "unit": args.unit, "unit_index": index + 1, "range": message, "nvtx_backend": backend.name,
        "nvtx_domain": backend.domain, "filters_tried": tried, "profile": args.profile, "run": args.run,
        "device_name": profile.meta.device_name, "batch_size": profile.meta.batch_size,
        "precision": profile.meta.precision,
        "kernels": [{"name": n, "duration_ns": d} for n, d in kernels],
        "kernel_sum_ms": kernel_ms, "event_fwd_ms_median": event.median, "event_fwd_ms_iqr": event.iqr,
        "kernels_over_events": kernel_ms / event.median if kernels and event.median > 0 else None,
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    if not kernels:
        print(f"ncu profiled no kernel inside {message} with any of: "
              + ", ".join(t["filter"] for t in tried), file=sys.stderr)
        return 1
    print(f"{args.unit} forward ({profile.meta.arch}, batch {result['batch_size']}, "
          f"{result['precision']}, {result['device_name']}), NVTX via {backend.name}:")
    print(f"  ncu: {len(kernels)} kernels in {message} (filter {tried[-1]['filter']}): {kernel_ms:.4f} ms")
    for n, d in kernels:
        print(f"    {d / 1e3:9.1f} us  {n[:100]}")
    print(f"  tlprof CUDA events, {args.run} run median: {event.median:.4f} ms (IQR {event.iqr:.4f})")
    print(f"  kernels / events: {result['kernels_over_events']:.3f}")
    return 0


def _skip(out: Path, why: str) -> int:
    print(f"ncu_unit: skipped: {why}")
    out.write_text(json.dumps({"skipped": why}) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", required=True, help="a CUDA run document of a torchvision arch")
    p.add_argument("--unit", default="layer4.2.conv2")
    p.add_argument("--run", default="full", help="the run whose event time to compare with")
    p.add_argument("--out", default="ncu_unit.json")
    p.add_argument("--target", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--warmup-steps", type=int, default=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.target:
        return target(args.profile, args.warmup_steps)
    return driver(args)


if __name__ == "__main__":
    sys.exit(main())
