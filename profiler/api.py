"""``Profiler``: instruments training steps, the user's own or the runner's.

Each ``with prof.step():`` is scheduled by the profiler: the first ``warmup``
steps are instrumented and dropped, the next one measures memory (saved
tensors, allocator), then plain and instrumented steps alternate so that the
overhead ratio compares like with like.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .clock import Clock, clock_for
from .diagnose import GradientWatch, annotate_run
from .errors import TlprofError
from .instrument import Instrumenter, MarkListener, PlainTimer, StepInfo
from .marks import StepSample
from .memory import AllocatorReadings, SavedBytes, static_memory
from .session import Profile, Run
from .units import Unit, find_units


class Profiler:
    def __init__(
        self,
        model: nn.Module,
        units: Sequence[Unit] | None = None,
        *,
        example: torch.Tensor | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        hook_optimizer: bool = True,
        device: torch.device | None = None,
        warmup: int = 1,
        listeners: Sequence[MarkListener] = (),
        clock: Clock | None = None,
        name: str = "user",
    ) -> None:
        if units is None:
            if example is None:
                raise TlprofError("Profiler needs the units or an example input to find them")
            units = find_units(model, example)
        self.model = model
        self.units = list(units)
        self.optimizer = optimizer
        self.device = device or _model_device(model)
        self.clock = clock or clock_for(self.device)
        self.warmup = warmup
        self.listeners = list(listeners)
        self.name = name  # the run's name in step notifications ("full", "frozen")
        self._step_listeners = [x for x in self.listeners if hasattr(x, "on_step_begin")]
        self._hook_optimizer = hook_optimizer and optimizer is not None
        self._instrumenter = Instrumenter(model, self.units, self.clock, self.listeners)
        self._handles: list[Any] = []
        self._timer: Instrumenter | PlainTimer | None = None
        self._steps_started = 0
        self.samples: list[StepSample] = []
        self.plain_ms: list[float] = []
        self.timeline: list[tuple[tuple, float]] = []  # marks of the last kept step, in ms
        self.saved: SavedBytes | None = None
        self.grads: GradientWatch | None = None  # which parameters the memory step's gradient reached
        self.memory: dict[str, Any] = {}

    # -- context -------------------------------------------------------------

    def __enter__(self) -> Profiler:
        if self._hook_optimizer:
            self._handles = [
                self.optimizer.register_step_pre_hook(lambda *_: self.begin("optimizer")),
                self.optimizer.register_step_post_hook(lambda *_: self.begin("other")),
            ]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def begin(self, phase: str) -> None:
        """Mark the start of a named phase (zero_grad, loss_fwd, loss_bwd, optimizer, other)."""
        if self._timer is not None:
            self._timer.begin(phase)

    def next_kind(self) -> str:
        n = self._steps_started
        if n < self.warmup:
            return "warmup"
        if n == self.warmup:
            return "memory"
        return "plain" if (n - self.warmup) % 2 == 1 else "timed"

    @contextmanager
    def step(self) -> Iterator[Profiler]:
        kind = self.next_kind()
        info = StepInfo(self.name, self._steps_started, kind, self.units)
        self._steps_started += 1
        for listener in self._step_listeners:
            listener.on_step_begin(info)
        try:
            if kind == "plain":
                yield from self._plain_step()
            elif kind == "memory":
                yield from self._memory_step()
            else:
                yield from self._timed_step(keep=kind == "timed")
        finally:
            for listener in self._step_listeners:
                listener.on_step_end(info)

    # -- the three kinds of step ---------------------------------------------

    def _plain_step(self) -> Iterator[Profiler]:
        timer = PlainTimer(self.clock)
        self._timer = timer
        try:
            timer.begin_step()
            yield self
            self.plain_ms.append(timer.end_step())
        finally:
            self._timer = None

    def _timed_step(self, keep: bool) -> Iterator[Profiler]:
        inst = self._instrumenter
        with inst.installed():
            self._timer = inst
            try:
                inst.begin_step()
                yield self
                sample = inst.end_step()
            finally:
                inst.active = False
                self._timer = None
        if keep:
            self.samples.append(sample)
            self.timeline = inst.last_times

    def _memory_step(self) -> Iterator[Profiler]:
        cuda = self.device.type == "cuda"
        readings = AllocatorReadings(self.device) if cuda else None
        listeners = self.listeners + ([readings] if readings else [])
        inst = Instrumenter(self.model, self.units, self.clock, listeners)
        resident = [*self.model.parameters(), *self.model.buffers()]
        saved = SavedBytes(lambda: inst.current, resident)
        if cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            start_bytes = torch.cuda.memory_allocated(self.device)
        self.grads = GradientWatch(list(self.model.parameters()))
        with inst.installed(), saved.recording(), self.grads.recording():
            self._timer = inst
            try:
                inst.begin_step()
                yield self
                inst.end_step()
            finally:
                inst.active = False
                self._timer = None
        self.saved = saved
        self.memory = {
            "saved_bytes_total": sum(saved.by_label.values()),
            "saved_other_bytes": saved.other_bytes(),
        }
        if cuda:
            self.memory.update(_allocator_summary(self.device, start_bytes, readings, self.units))

    # -- results -------------------------------------------------------------

    def profile(self, mode: str = "full", meta: dict[str, Any] | None = None) -> Profile:
        """The measured steps as a run document, for ``save`` and ``tlprof report``."""
        base = {"device": str(self.device), "clock": getattr(self.clock, "name", ""),
                "torch_version": torch.__version__, "warmup": self.warmup}
        return Profile(meta={**base, **(meta or {})}, units=[u.to_dict() for u in self.units],
                       runs={mode: self.run(mode)})

    def run(self, mode: str = "user", freeze: int = 0) -> Run:
        if not self.samples:
            needed = self.warmup + 3
            raise TlprofError(
                f"no measured step: profile at least {needed} steps "
                f"({self.warmup} warm-up, 1 memory, then plain and instrumented in turn)"
            )
        plain = self.plain_ms or [float("nan")]
        run = Run.from_samples(mode, freeze, self.samples, plain)
        saved_units = self.saved.unit_bytes(len(self.units)) if self.saved else [0] * len(self.units)
        for unit, record, saved_bytes in zip(self.units, run.units, saved_units):
            record.saved_bytes = saved_bytes
            if self.optimizer is not None:
                for key, value in static_memory(unit, self.optimizer).items():
                    setattr(record, key, value)
            else:
                record.param_bytes = unit.param_bytes
        run.memory = dict(self.memory)
        run.extra["timeline"] = timeline_spans(self.timeline, self.units)
        annotate_run(run, self.units, self.grads, self.saved, mode)
        for key in ("param_bytes", "grad_bytes", "optimizer_state_bytes", "saved_bytes"):
            run.memory[f"{key}_units_total"] = sum(getattr(u, key) for u in run.units)
        return run


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def timeline_spans(times: list[tuple[tuple, float]], units: Sequence[Unit]) -> list[dict]:
    """One step's marks as spans: what began, when (ms from the step's start), for how long."""
    names = {u.index: u.name for u in units}
    spans = []
    for (label, t0), (_, t1) in zip(times, times[1:]):
        kind, key = label
        span = {"kind": kind, "name": names[key] if kind in ("fwd", "bwd") else key,
                "start_ms": t0, "dur_ms": t1 - t0}
        if kind in ("fwd", "bwd"):
            span["unit"] = key
        spans.append(span)
    return spans


def _allocator_summary(
    device: torch.device, start_bytes: int, readings: AllocatorReadings, units: Sequence[Unit]
) -> dict[str, Any]:
    names = {u.index: u.name for u in units}

    def label_text(label: tuple) -> str:
        kind, key = label
        return f"{kind}:{names.get(key, key)}" if kind in ("fwd", "bwd") else f"{kind}:{key}"

    return {
        "peak_allocated_bytes": torch.cuda.max_memory_allocated(device),
        "step_start_allocated_bytes": start_bytes,
        "reserved_bytes": torch.cuda.memory_reserved(device),
        "allocated_at_marks": [
            {"mark": label_text(label), "allocated_bytes": b} for label, b in readings.readings
        ],
    }
