"""A hand-written run document (``tlprof.run/1``) whose report figures are known exactly, and the
helpers the report tests share (``plain``, ``run_python``, the ``TINY`` profile's flags).

Six units, N = 4 frozen, five measured steps (``STEPS``: enough for a verdict, reports/uncertainty.py);
each unit's samples are the same every step. Full run: f = [1,1,1,2,2,3], b = [0,1,2,2,3,6], so
t = [1,2,3,4,5,9] (Σ 24, mean 4); phases add 4 ms; the step's median is 28.
Frozen run: f' = [.5,.5,.5,1.5,2,3], b' = [0,0,0,0,2,6], phases 2 ms, step 18.
Cached run: F_N = 3 ms, h_N = 10 ms. The expected numbers are worked out in
tests/test_reports_builder.py.
"""

from __future__ import annotations

import copy
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

ROOT = Path(__file__).parent.parent
MODELS = Path(__file__).parent / "report_models.py"
TINY = ["--model", f"{MODELS}:staged", "--input-shape", "3,8,8", "--device", "cpu",  # a tiny profile's flags
        "--batch-size", "2", "--steps", "1", "--warmup", "0"]


def plain(renderable, width: int = 100) -> str:
    """A rich renderable as the plain text a terminal this wide shows."""
    console = Console(width=width, color_system=None, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def run_python(code: str) -> str:
    """``code`` in a fresh interpreter (what it imports is its own); its stdout, once it exits 0."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


UNITS = [  # name, stage, block
    ("stem.0", "stem", "stem"),
    ("s1.0.conv1", "s1", "s1.0"),
    ("s1.0.conv2", "s1", "s1.0"),
    ("s1.1.conv1", "s1", "s1.1"),
    ("s2.0.conv1", "s2", "s2.0"),
    ("head.fc", "head", "head"),
]
FULL_FWD = [1.0, 1.0, 1.0, 2.0, 2.0, 3.0]
FULL_BWD = [0.0, 1.0, 2.0, 2.0, 3.0, 6.0]
FROZEN_FWD = [0.5, 0.5, 0.5, 1.5, 2.0, 3.0]
FROZEN_BWD = [0.0, 0.0, 0.0, 0.0, 2.0, 6.0]
N_FROZEN = 4
STEPS = 5


def stats(*samples: float) -> dict[str, Any]:
    return {"median": 0.0, "iqr": 0.0, "samples": list(samples)}  # median/iqr recomputed on load


def _share(memory: dict[str, int], key: str, i: int, freeze: int, n: int) -> int:
    return memory.get(key, 0) // (n - freeze) if i >= freeze else 0


def run(mode: str, freeze: int, fwd: list[float], bwd: list[float], step: list[float],
        phases: dict[str, float], memory: dict[str, int]) -> dict[str, Any]:
    return {
        "mode": mode,
        "freeze": freeze,
        "step_ms": stats(*step),
        "phases": {f"{k}_ms": stats(v) for k, v in phases.items()},
        "units": [
            {"index": i + 1, "fwd_ms": stats(*[f] * STEPS), "bwd_ms": stats(*[b] * STEPS),
             "saved_bytes": 100 * (i + 1),
             "param_bytes": 10 * (i + 1),
             # the memory totals spread evenly over the trainable units
             "grad_bytes": _share(memory, "grad_bytes_units_total", i, freeze, len(fwd)),
             "optimizer_state_bytes": _share(memory, "optimizer_state_bytes_units_total", i, freeze,
                                             len(fwd))}
            for i, (f, b) in enumerate(zip(fwd, bwd))
        ],
        "overhead": {"plain_step_ms": stats(*step), "ratio": 1.0},
        "memory": memory,
    }


def hand_document(cached: bool = True) -> dict[str, Any]:
    doc = {
        "schema": "tlprof.run/1",
        "meta": {"arch": "handmade", "device": "cpu", "device_name": "test CPU", "batch_size": 2,
                 "input_shape": [3, 8, 8], "precision": "fp32", "optimizer": "sgd", "steps": STEPS,
                 "warmup": 1, "freeze": N_FROZEN},
        "units": [{"index": i + 1, "name": n, "stage": s, "block": b, "modules": [n], "params": 1,
                   "trainable": i >= N_FROZEN} for i, (n, s, b) in enumerate(UNITS)],
        "runs": {
            "full": run("full", 0, FULL_FWD, FULL_BWD, [26.5, 27.0, 28.0, 29.0, 29.5],
                        {"zero_grad": 0.5, "loss_fwd": 0.5, "loss_bwd": 0.5, "optimizer": 2.0,
                         "other": 0.5},
                        {"saved_bytes_total": 1000, "grad_bytes_units_total": 600,
                         "optimizer_state_bytes_units_total": 600}),
            "frozen": run("frozen", N_FROZEN, FROZEN_FWD, FROZEN_BWD, [18.0] * STEPS,
                          {"zero_grad": 0.25, "loss_fwd": 0.5, "loss_bwd": 0.5, "optimizer": 0.75,
                           "other": 0.0},
                          {"saved_bytes_total": 200, "grad_bytes_units_total": 100,
                           "optimizer_state_bytes_units_total": 100}),
        },
    }
    if cached:
        c = run("cached", N_FROZEN, [0.0] * 4 + [2.0, 3.0], [0.0] * 4 + [2.0, 2.0],
                [9.0, 9.5, 10.0, 10.5, 11.0],
                {"zero_grad": 0.25, "loss_fwd": 0.25, "loss_bwd": 0.25, "optimizer": 0.5, "other": 0.25},
                {"saved_bytes_total": 200})
        c["features_ms"] = stats(2.5, 3.0, 3.5)
        doc["runs"]["cached"] = c
    return doc


def uniform_document() -> dict[str, Any]:
    """Every t_i = 2 ms and frozen/full = (L−N)/L exactly: the paper's world."""
    doc = copy.deepcopy(hand_document(cached=False))
    full, frozen = doc["runs"]["full"], doc["runs"]["frozen"]
    for u in full["units"]:
        u["fwd_ms"], u["bwd_ms"] = stats(*[1.0] * STEPS), stats(*[1.0] * STEPS)
    full["step_ms"] = stats(*[12.0] * STEPS)
    frozen["step_ms"] = stats(*[4.0] * STEPS)  # 12 · 2/6
    return doc


# -- launch figures (eager CUDA, tlprof.launch) with and without kernel sums -------------------------

# Full run: host ms per unit beside f = [1,1,1,2,2,3], b = [0,1,2,2,3,6]; forward host-paced in units
# 1, 2, 4, backward in unit 2; GPU-wait share median 0.4 (IQR 0.1). Kernel sums Σ 20.4 of Σ GPU 24 ms:
# busy 0.85, so by kernels the GPU idled 15%, under the 20% note; by kernels unit 1's forward (0.2 of 1)
# and unit 2's forward and backward (0.4, 0.3 of 1) are launch-bound.
FULL_HOST_FWD = [0.9, 1.0, 0.3, 2.0, 0.5, 0.8]
FULL_HOST_BWD = [0.1, 1.0, 0.4, 0.5, 0.6, 1.0]
FULL_FWD_BOUND = [True, True, False, True, False, False]
FULL_BWD_BOUND = [False, True, False, False, False, False]
FULL_WAIT = [0.3, 0.5, 0.4, 0.45, 0.35]
FULL_KERNEL_FWD = [0.2, 0.4, 0.9, 1.5, 1.9, 2.8]
FULL_KERNEL_BWD = [0.0, 0.3, 1.8, 1.8, 2.9, 5.9]
# Frozen run: GPU-wait share 0.1 (under the note), but kernels Σ 8 of Σ GPU 16 ms: busy 0.5, the GPU
# idled half the units' time; by kernels units 1-4 (forwards 0.1, 0.1, 0.1 of 0.5 and 0.5 of 1.5).
FROZEN_HOST_FWD = [0.5, 0.2, 0.2, 0.4, 0.6, 0.9]
FROZEN_HOST_BWD = [0.0, 0.0, 0.0, 0.0, 0.5, 1.0]
FROZEN_WAIT = [0.1] * STEPS
FROZEN_KERNEL_FWD = [0.1, 0.1, 0.1, 0.5, 1.0, 2.2]
FROZEN_KERNEL_BWD = [0.0, 0.0, 0.0, 0.0, 1.0, 3.0]
LAUNCH_RULE = "an interval is host-paced when ... (the rule as the run stored it)"


def launch_document(kernels: bool = True) -> Any:
    """The hand document, its full and frozen runs with a ``launch`` section (and kernel sums)."""
    from tlprof.document import LaunchSection, RunDocument, UnitKernels, UnitLaunch
    from tlprof.stats import Stats

    doc = RunDocument.from_dict(hand_document(cached=False))
    doc.meta.device, doc.meta.device_name = "cuda:0", "test GPU"
    figures = {
        "full": (FULL_HOST_FWD, FULL_HOST_BWD, FULL_FWD_BOUND, FULL_BWD_BOUND, FULL_WAIT,
                 FULL_KERNEL_FWD, FULL_KERNEL_BWD),
        "frozen": (FROZEN_HOST_FWD, FROZEN_HOST_BWD, [True] + [False] * 5, [False] * 6, FROZEN_WAIT,
                   FROZEN_KERNEL_FWD, FROZEN_KERNEL_BWD),
    }
    for name, (hf, hb, fb, bb, wait, kf, kb) in figures.items():
        run = doc.runs[name]
        # the host's forward samples vary; their median is the figure
        run.launch = LaunchSection(slack_ms=0.05, rule=LAUNCH_RULE, gpu_wait_share=Stats(list(wait)), units=[
            UnitLaunch(i + 1, Stats([f - 0.1, f, f + 0.1, f, f + 0.05]), Stats([b] * STEPS), fwd, bwd)
            for i, (f, b, fwd, bwd) in enumerate(zip(hf, hb, fb, bb))])
        if kernels:
            for u, f, b in zip(run.units, kf, kb):
                u.kernels = UnitKernels(kernel_fwd_ms=f, kernel_bwd_ms=b)
    return RunDocument.from_dict(doc.to_dict())
