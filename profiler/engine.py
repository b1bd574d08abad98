"""``profile_model``: every configured run of a model, as one run document.

Each run (full, frozen, cached) first runs its warm-up and memory steps alone,
from the weights as placed and with a fresh optimizer, so its memory readings
see only its own state. Then the runs take turns in blocks of plain and
instrumented steps (``ProfileConfig.block_sizes``), each block after one
dropped re-warm step, so a machine that speeds up or slows down during the
profile shifts every run alike. The model is left exactly as it was, also when
profiling fails. Under DDP each run is wrapped on its own (a wrapper's reducer
hooks every parameter), so there the runs are measured one after another.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from . import __version__
from .api import Profiler
from .cached import CachedRunContext, prepare_cached
from .document import BackendFlags, Meta, Run, RunDocument, UnitInfo
from .errors import TlprofError
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
from .state import ModelState, backend_flags
from .units import Unit, find_units
from .workload import ModelSpec, as_spec, describe_batch, eager

if TYPE_CHECKING:
    from .distributed import DdpOptions, Group
    from .graph import GraphBackend


def profile_model(
    model: nn.Module | ModelSpec,
    cfg: ProfileConfig,
    *,
    meta: dict[str, Any] | None = None,
    progress: Progress | None = None,
    listeners: Sequence[MarkListener] = (),
    extras: Sequence[RunExtra] = (),
    ddp: DdpOptions | None = None,
    graph_backend: GraphBackend | None = None,
) -> RunDocument:
    """Profile ``model`` (an ``nn.Module``, or a ``ModelSpec`` with its inputs and loss): every run
    in ``cfg.runs``; the model is left exactly as it was.

    With ``ddp`` every rank of the process group (the user's, or one made from torchrun's
    environment) profiles its replica in DDP, and rank 0's document holds every rank.
    """
    cfg.validate()
    spec = as_spec(model)
    group = _open_group(cfg, ddp) if ddp is not None else None
    try:
        device = group.device if group else resolve_device(cfg.device)
        if cfg.graph and graph_backend is None:
            from .graph import refuse_cpu

            refuse_cpu(device)
        if cfg.graph and (ddp is not None or extras):
            raise TlprofError("--graph: --ddp, --kernels and --energy are eager-only; drop them or --graph")
        cfg = cfg.resolved(device.type)
        original = ModelState.capture(spec.model)
        try:
            with on_device(device), eager(spec.model), group.guard() if group else contextlib.nullcontext():
                doc = _profile_placed(spec, cfg, device, meta, progress, listeners, extras, group,
                                      graph_backend)
                return group.gather(doc) if group else doc
        finally:
            original.restore()
    finally:
        if group:
            group.close()


def _open_group(cfg: ProfileConfig, ddp: DdpOptions) -> Group:
    from .distributed import open_group

    if "cached" in cfg.runs:
        raise TlprofError("--ddp profiles the full and frozen runs; the cached run is not measured "
                          "under DDP (use --runs both)")
    return open_group(cfg.device, ddp)


def _profile_placed(
    spec: ModelSpec,
    cfg: ProfileConfig,
    device: torch.device,
    meta: dict[str, Any] | None,
    progress: Progress | None,
    listeners: Sequence[MarkListener],
    extras: Sequence[RunExtra],
    group: Group | None = None,
    graph_backend: GraphBackend | None = None,
) -> RunDocument:
    model = spec.model
    _place(model, device, cfg.channels_last)
    work = guard_batch(cfg, lambda: make_workload(spec, cfg, device))
    units = find_units(model, work.example())
    if group:
        from .distributed import options_of

        group.check_same(options_of(cfg, meta, len(units)))
    check_freeze(cfg.freeze, len(units))
    set_precision_flags(cfg.precision, device)
    watch = DeviceWatch.start(device)  # NVML identity and state of a CUDA device, for meta
    load_start = _load_avg()
    if cfg.graph:
        from .graph import CudaGraphBackend, graph_runs

        backend = graph_backend or CudaGraphBackend(device)
        runs = guard_batch(cfg, lambda: graph_runs(model, units, work, cfg, backend))
    else:
        turns = _Turns(model, units, work, cfg, progress, listeners, extras, group.wrap if group else None)
        runs = guard_batch(cfg, turns.measure)
    load = {"load_avg": {"start": load_start, "end": _load_avg()}, "cpu_count": os.cpu_count()}
    return RunDocument(
        meta=run_meta(cfg, device, work, {**(meta or {}), **watch.finish(), **load}),
        units=unit_infos(units, cfg.freeze),
        runs=runs,
    )


@dataclass
class _Turns:
    """Every configured run: each warms up and measures memory alone, then the runs take turns
    block by block (one after another when each is wrapped in DDP)."""

    model: nn.Module
    units: Sequence[Unit]
    work: Workload
    cfg: ProfileConfig
    progress: Progress | None
    listeners: Sequence[MarkListener]
    extras: Sequence[RunExtra]
    wrap: Callable[[nn.Module], nn.Module] | None = None
    _opened: list[Profiler] = field(default_factory=list)

    def measure(self) -> dict[str, Run]:
        self._opened = []
        try:
            return self._measure()
        finally:
            for prof in self._opened:
                prof.close()  # the model keeps no hook, also when a run fails

    def _measure(self) -> dict[str, Run]:
        placed = ModelState.capture(self.model)
        if self.wrap is None:
            started = {name: self._start(name, placed) for name in self.cfg.runs}
            self._blocks(started)
            return {name: self._finish(name, *turn) for name, turn in started.items()}
        runs = {}
        for name in self.cfg.runs:
            turn = self._start(name, placed)
            try:
                self._blocks({name: turn})
                runs[name] = self._finish(name, *turn)
            finally:
                turn[1].close()
                self._opened.remove(turn[1])
                turn[0].model = self.model
                del turn  # nothing holds the wrapper now: its reducer and gradient hooks go
                gc.collect()
        return runs

    def _start(self, name: str, placed: ModelState) -> tuple[RunContext, Profiler, Any]:
        """The run's context from the weights as placed, its warm-up and memory steps, then a fresh
        optimizer (the next run's memory step must not see this one's state)."""
        placed.restore_values()
        if name == "cached":
            ctx: RunContext = prepare_cached(self.model, self.units, self.work, self.cfg, name)
        else:
            n_frozen = self.cfg.freeze if name == "frozen" else 0
            ctx = prepare_run(self.model, self.units, self.work, self.cfg, name, n_frozen, self.wrap)
        prof = run_profiler(ctx, self.listeners)
        self._opened.append(prof.__enter__())  # hooks registered once for the run (docs/design.md §3)
        done = _counter(self.progress, name, self.cfg.steps_per_run)
        run_steps(ctx, prof, self.cfg.warmup + 1, done)
        prof.optimizer = ctx.fresh_optimizer()
        return ctx, prof, done

    def _blocks(self, turns: dict[str, tuple[RunContext, Profiler, Any]]) -> None:
        for pairs in self.cfg.block_sizes():
            for ctx, prof, done in turns.values():
                ctx.activate()
                prof.rewarm(self.cfg.rewarm_steps)
                run_steps(ctx, prof, self.cfg.rewarm_steps + 2 * pairs, done)

    def _finish(self, name: str, ctx: RunContext, prof: Profiler, _done: Any) -> Run:
        prof.close()  # the extras run their own steps on a model without this run's hooks
        ctx.activate()
        run = prof.run(name, ctx.n_frozen)
        if isinstance(ctx, CachedRunContext):
            run.cache = ctx.section()
        for extra in self.extras:
            extra.after_run(ctx, run)
        return run


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
        "backend_flags": BackendFlags(**backend_flags()),
        "runs": list(cfg.runs),
        "num_classes": work.num_classes,
        "output_shape": list(work.output_shape),
        "batch_size": len(work.x),
        "input_shape": list(work.x.shape[1:]),
        "inputs": describe_batch(work.inputs),
        "loss": work.loss_name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
