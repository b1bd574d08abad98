"""``tlprof sweep``'s measurement: one full run, then the frozen (and cached) runs per depth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from torch import nn

from .document import Sweep, SweepPoint
from .engine import profile_model
from .runner import ProfileConfig, Progress, check_freeze
from .units import find_units
from .workload import EXAMPLE_ROWS, ModelSpec, as_spec, eager, make_batch


def _check_depths(model: nn.Module | ModelSpec, cfg: ProfileConfig, depths: Sequence[int]) -> None:
    """Refuse a depth the model cannot take before the first run, not after it."""
    spec = as_spec(model)
    device = next(spec.model.parameters()).device
    with eager(spec.model):
        n_units = len(find_units(spec.model, make_batch(spec, cfg, device, rows=EXAMPLE_ROWS)))
    check_freeze(max(depths), n_units)


def run_sweep(model: nn.Module | ModelSpec, cfg: ProfileConfig, depths: Sequence[int], runs: Sequence[str],
              meta: dict[str, Any] | None = None, progress: Progress | None = None) -> Sweep:
    """One full run, then ``runs`` at every depth N ≥ 1 (depth 0 is the full run itself)."""

    def tagged(n: int) -> Progress | None:
        return None if progress is None else (lambda m, done, total: progress(f"{m} {n}", done, total))

    _check_depths(model, cfg, depths)
    base = profile_model(model, replace(cfg, freeze=0, runs=("full",)), meta=meta, progress=tagged(0))
    points = []
    for n in depths:
        if n == 0:
            continue
        doc = profile_model(model, replace(cfg, freeze=n, runs=tuple(runs)), meta=meta, progress=tagged(n))
        points.append(SweepPoint(n, doc.runs))
    sweep_meta = replace(base.meta, freeze=None, runs=[])
    return Sweep(sweep_meta, base.units, base.runs["full"], points, list(depths), list(runs))
