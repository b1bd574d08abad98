"""``profile_model``: every configured run of a model, as one run document.

Each run (full, frozen, cached) first runs its warm-up and memory steps alone,
from the weights as placed and with a fresh optimizer, so its memory readings
see only its own state. Then the runs take turns in blocks of plain and
instrumented steps (``ProfileConfig.block_sizes``), each block after one
dropped re-warm step, so a machine that speeds up or slows down during the
profile shifts every run alike. The model is left exactly as it was, also when
profiling fails.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from . import __version__
from .api import Profiler
from .cached import CachedRunContext, prepare_cached
from .document import Meta, Run, RunDocument, UnitInfo
from .instrument import MarkListener
from .nvml import DeviceWatch
from .runner import (
    ProfileConfig,
    Progress,
    RunContext,
    RunExtra,
    Workload,
    check_freeze,
    device_name,
    guard_batch,
    make_workload,
    on_device,
    prepare_run,
    resolve_device,
    run_profiler,
    run_steps,
    set_precision_flags,
)
from .state import ModelState
from .units import Unit, find_units
from .workload import ModelSpec, as_spec, describe_batch, eager


def profile_model(
    model: nn.Module | ModelSpec,
    cfg: ProfileConfig,
    *,
    meta: dict[str, Any] | None = None,
    progress: Progress | None = None,
    listeners: Sequence[MarkListener] = (),
    extras: Sequence[RunExtra] = (),
) -> RunDocument:
    """Profile ``model`` (an ``nn.Module``, or a ``ModelSpec`` with its inputs and loss): every run
    in ``cfg.runs``; the model is left exactly as it was."""
    cfg.validate()
    device = resolve_device(cfg.device)
    cfg = cfg.resolved(device.type)
    spec = as_spec(model)
    original = ModelState.capture(spec.model)
    try:
        with on_device(device), eager(spec.model):
            return _profile_placed(spec, cfg, device, meta, progress, listeners, extras)
    finally:
        original.restore()


def _profile_placed(
    spec: ModelSpec,
    cfg: ProfileConfig,
    device: torch.device,
    meta: dict[str, Any] | None,
    progress: Progress | None,
    listeners: Sequence[MarkListener],
    extras: Sequence[RunExtra],
) -> RunDocument:
    model = spec.model
    _place(model, device, cfg.channels_last)
    work = guard_batch(cfg, lambda: make_workload(spec, cfg, device))
    units = find_units(model, work.example())
    check_freeze(cfg.freeze, len(units))
    set_precision_flags(cfg.precision, device)
    watch = DeviceWatch.start(device)  # NVML identity and state of a CUDA device, for meta
    load_start = _load_avg()
    runs = guard_batch(cfg, lambda: _measure_runs(model, units, work, cfg, progress, listeners, extras))
    load = {"load_avg": {"start": load_start, "end": _load_avg()}, "cpu_count": os.cpu_count()}
    return RunDocument(
        meta=run_meta(cfg, device, work, {**(meta or {}), **watch.finish(), **load}),
        units=unit_infos(units, cfg.freeze),
        runs=runs,
    )


def _measure_runs(
    model: nn.Module,
    units: Sequence[Unit],
    work: Workload,
    cfg: ProfileConfig,
    progress: Progress | None,
    listeners: Sequence[MarkListener],
    extras: Sequence[RunExtra],
) -> dict[str, Run]:
    placed = ModelState.capture(model)
    turns: dict[str, tuple[RunContext, Profiler, Any]] = {}
    for name in cfg.runs:  # warm-up and memory, each run alone
        placed.restore_values()
        ctx = _prepare(model, units, work, cfg, name)
        prof = run_profiler(ctx, listeners)
        done = _counter(progress, name, cfg.steps_per_run)
        run_steps(ctx, prof, cfg.warmup + 1, done)
        prof.optimizer = ctx.fresh_optimizer()  # the next run's memory step must not see this state
        turns[name] = (ctx, prof, done)
    for pairs in cfg.block_sizes():  # then plain and instrumented steps, the runs taking turns
        for ctx, prof, done in turns.values():
            ctx.activate()
            prof.rewarm(cfg.rewarm_steps)
            run_steps(ctx, prof, cfg.rewarm_steps + 2 * pairs, done)
    runs = {}
    for name, (ctx, prof, _) in turns.items():
        ctx.activate()
        runs[name] = prof.run(name, ctx.n_frozen)
        if isinstance(ctx, CachedRunContext):
            runs[name].cache = ctx.section()
        for extra in extras:
            extra.after_run(ctx, runs[name])
    return runs


def _prepare(model: nn.Module, units: Sequence[Unit], work: Workload, cfg: ProfileConfig,
             name: str) -> RunContext:
    if name == "cached":
        return prepare_cached(model, units, work, cfg, name)
    return prepare_run(model, units, work, cfg, name, cfg.freeze if name == "frozen" else 0)


def _counter(progress: Progress | None, name: str, total: int) -> Any:
    if progress is None:
        return None
    count = [0]

    def done() -> None:
        count[0] += 1
        progress(name, count[0], total)

    return done


def _load_avg() -> list[float]:
    """The machine's load average (1, 5, 15 minutes): other work competing for its CPUs."""
    try:
        return list(os.getloadavg())
    except OSError:
        return []


def unit_infos(units: Sequence[Unit], n_frozen: int) -> list[UnitInfo]:
    return [UnitInfo(**{**u.to_dict(), "trainable": u.index > n_frozen}) for u in units]


def _place(model: nn.Module, device: torch.device, channels_last: bool) -> None:
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)


def run_meta(cfg: ProfileConfig, device: torch.device, work: Workload, given: dict[str, Any]) -> Meta:
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("device", "runs")}
    return Meta.from_dict({
        **given,
        "device": str(device),
        "device_name": device_name(device),
        "clock": "cuda_event" if device.type == "cuda" else "perf_counter_ns",
        "torch_version": torch.__version__,
        "tlprof_version": __version__,
        "cuda_version": torch.version.cuda,
        "cpu_threads": torch.get_num_threads(),
        **settings,
        "runs": list(cfg.runs),
        "num_classes": work.num_classes,
        "output_shape": list(work.output_shape),
        "batch_size": len(work.x),
        "input_shape": list(work.x.shape[1:]),
        "inputs": describe_batch(work.inputs),
        "loss": work.loss_name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
