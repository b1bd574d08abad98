"""The family table (issue #11): every model family profiled full and frozen at small sizes.

    python benchmarks/families.py [--device cpu] [--out docs/models.md]

For each model: its units and how they roll up into stages, the frozen/full
step-time ratio with ~90% of the units frozen (the paper's 45 of 50), every
warning and the wall time. Small inputs and one measured step per run, so the
ratios are rough (CPU, shared cores); the point is that every family profiles
with the right units and warnings that name the right cause.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tlprof import ProfileConfig, find_units, profile_model  # noqa: E402
from tlprof.models import build_arch  # noqa: E402
from tlprof.workload import EXAMPLE_ROWS, ModelSpec, make_batch  # noqa: E402


@dataclass
class Case:
    name: str
    size: int = 64
    options: dict = field(default_factory=dict)
    batch: int = 2


CASES = [
    Case("resnet18"),
    Case("mobilenet_v3_small"),
    Case("efficientnet_b0"),
    Case("densenet121"),
    Case("googlenet", options={"output": "logits"}),
    Case("inception_v3", 299, {"output": "logits"}),
    Case("convnext_tiny"),
    Case("vit_b_16", 224),
    Case("swin_t"),
    Case("regnet_y_400mf"),
    Case("tiny_gpt", 8, {"input_dtype": "int64", "loss": "ce"}, batch=32),
]


def _model(case: Case) -> torch.nn.Module:
    if case.name == "tiny_gpt":
        from models import tiny_gpt

        return tiny_gpt()
    return build_arch(case.name)


def _shape(case: Case) -> tuple[int, ...]:
    return (case.size,) if case.name == "tiny_gpt" else (3, case.size, case.size)


def _stages(units) -> str:
    counts = Counter(u.stage for u in units)
    return " · ".join(f"{stage} {n}" for stage, n in counts.items())


def _warnings(prof) -> str:
    out = []
    for run in prof.runs.values():
        for w in (w.text for w in run.warnings if w.part == "marks"):
            cause = "not in the loss" if "not in the loss" in w else "merge"
            names = w.split("unit(s) ", 1)[1].split(" are not in" if cause != "merge" else ":", 1)[0]
            out.append(f"{run.name}: {cause} ({len(names.split(', '))}: {_short(names)})")
    return "; ".join(out) or "none"


def _short(names: str, keep: int = 2) -> str:
    parts = names.split(", ")
    return ", ".join(parts[:keep]) + (", …" if len(parts) > keep else "")


def row(case: Case, device: str) -> dict:
    model = _model(case)
    base = ProfileConfig(batch_size=case.batch, input_shape=_shape(case), device=device, steps=3,
                         warmup=1, **case.options)
    example = make_batch(ModelSpec(model), base, torch.device("cpu"), rows=EXAMPLE_ROWS)
    n_units = len(find_units(model, example))
    n_frozen = max(1, round(0.9 * n_units))
    cfg = ProfileConfig(**{**base.__dict__, "freeze": n_frozen, "runs": ("full", "frozen")})
    start = time.perf_counter()
    prof = profile_model(model, cfg)
    wall = time.perf_counter() - start
    full, frozen = prof.runs["full"].step_ms.median, prof.runs["frozen"].step_ms.median
    return {
        "model": case.name, "input": f"{case.batch}×" + "×".join(map(str, _shape(case))), "units": n_units,
        "frozen": n_frozen, "ratio": frozen / full, "stages": _stages(prof.units),
        "warnings": _warnings(prof), "wall_s": wall, "options": case.options,
    }


def markdown(rows: list[dict], device: str) -> str:
    lines = [
        "| model | input | units | frozen | frozen/full step | stages (units) | warnings | wall s |",
        "| --- | --- | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | | | | | | error: {r['error']} | |")
            continue
        opts = " ".join(f"`--{k.replace('_', '-')} {v}`" for k, v in r["options"].items())
        lines.append(f"| {r['model']} {opts} | {r['input']} | {r['units']} | {r['frozen']} | "
                     f"{r['ratio']:.2f} | {r['stages']} | {r['warnings']} | {r['wall_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", nargs="*", help="model names to run")
    parser.add_argument("--out", help="write the Markdown table here")
    args = parser.parse_args()
    rows = []
    for case in CASES:
        if args.only and case.name not in args.only:
            continue
        try:
            rows.append(row(case, args.device))
        except Exception as exc:  # one family failing is a row, not the end of the table
            rows.append({"model": case.name, "error": f"{type(exc).__name__}: {exc}"})
        print(markdown(rows[-1:], args.device).splitlines()[-1], flush=True)
    table = markdown(rows, args.device)
    total = sum(r.get("wall_s", 0) for r in rows)
    table += f"\n{len(rows)} models on {args.device}, {total:.0f} s of profiling in all.\n"
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    failed = [r["model"] for r in rows if "error" in r]
    if failed:
        print(f"families: {len(failed)} of {len(rows)} models failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
