"""``profile_model``: every configured run of a model, as one run document.

The runs (full, frozen, cached) are measured one after another on the model as
placed; the model is left exactly as it was, also when profiling fails.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from . import __version__
from .cached import run_cached
from .document import Meta, Run, RunDocument, UnitInfo
from .errors import TlprofError
from .instrument import MarkListener
from .nvml import DeviceWatch
from .runner import (
    ProfileConfig,
    Progress,
    RunExtra,
    Workload,
    check_freeze,
    device_name,
    guard_batch,
    make_workload,
    on_device,
    resolve_device,
    run_named,
    set_precision_flags,
)
from .state import ModelState
from .units import Unit, find_units

if TYPE_CHECKING:
    from .distributed import DdpOptions, Group


def profile_model(
    model: nn.Module,
    cfg: ProfileConfig,
    *,
    meta: dict[str, Any] | None = None,
    progress: Progress | None = None,
    listeners: Sequence[MarkListener] = (),
    extras: Sequence[RunExtra] = (),
    ddp: DdpOptions | None = None,
) -> RunDocument:
    """Profile ``model``: every run in ``cfg.runs``; the model is left exactly as it was.

    With ``ddp`` every rank of the process group (the user's, or one made from torchrun's
    environment) profiles its replica in DDP, and rank 0's document holds every rank.
    """
    cfg.validate()
    group = _open_group(cfg, ddp) if ddp is not None else None
    try:
        device = group.device if group else resolve_device(cfg.device)
        cfg = cfg.resolved(device.type)
        original = ModelState.capture(model)
        try:
            with on_device(device), group.guard() if group else contextlib.nullcontext():
                doc = _profile_placed(model, cfg, device, meta, progress, listeners, extras, group)
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
    model: nn.Module,
    cfg: ProfileConfig,
    device: torch.device,
    meta: dict[str, Any] | None,
    progress: Progress | None,
    listeners: Sequence[MarkListener],
    extras: Sequence[RunExtra],
    group: Group | None = None,
) -> RunDocument:
    _place(model, device, cfg.channels_last)
    work = guard_batch(cfg, lambda: make_workload(model, cfg, device))
    units = find_units(model, work.x[:1])
    if group:
        from .distributed import options_of

        group.check_same(options_of(cfg, meta, len(units)))
    check_freeze(cfg.freeze, len(units))
    set_precision_flags(cfg.precision, device)
    placed = ModelState.capture(model)
    watch = DeviceWatch.start(device)  # NVML identity and state of a CUDA device, for meta
    runs: dict[str, Run] = {}
    for name in cfg.runs:
        placed.restore_values()
        measure = run_cached if name == "cached" else run_named
        wrap = {"wrap": group.wrap} if group else {}
        runs[name] = guard_batch(cfg, lambda n=name, m=measure, w=wrap: m(
            model, units, work, cfg, n, progress, listeners, extras, **w))
    return RunDocument(
        meta=run_meta(cfg, device, work, {**(meta or {}), **watch.finish()}),
        units=unit_infos(units, cfg.freeze),
        runs=runs,
    )


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
        "input_shape": list(cfg.input_shape),
        "runs": list(cfg.runs),
        "num_classes": work.num_classes,
        "output_shape": list(work.output_shape),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
