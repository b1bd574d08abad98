"""``Profiler``: instruments training steps, the user's own or the runner's.

Each ``with prof.step():`` is scheduled by the profiler: the first ``warmup``
steps are instrumented and dropped, the next one measures memory (saved
tensors, allocator), then plain and instrumented steps alternate so that the
overhead ratio compares like with like.

Every plain and instrumented step is also timed wall-to-wall on the host, from
the moment ``with prof.step()`` is entered to the moment it is left: all the
profiler does for the step (hooks switched on and off, marks, synchronisation,
read-out) is inside that figure, and the overhead ratio is the ratio of the two
kinds' wall-to-wall medians (docs/design.md §3). Inside ``with prof:`` the
unit hooks are registered when the block is entered and kept until it ends (a
failed step takes them off, the next instrumented step registers them again),
on the modules only during instrumented steps; outside it each step installs
its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from . import __version__
from .clock import Clock, clock_for
from .defaults import defaults_for
from .diagnose import GradientWatch, annotate_run
from .document import (
    AllocatorReadings,
    MarkAllocation,
    Memory,
    Meta,
    Run,
    RunDocument,
    Span,
    UnitInfo,
    UnitRun,
)
from .errors import TlprofError
from .instrument import Instrumenter, MarkListener, PlainTimer, StepInfo
from .launch import analyse_step, launch_section
from .marks import PHASES, Label, StepSample, attribute
from .memory import AllocatorTrace, SavedBytes, static_memory
from .stats import Stats
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
        warmup: int | None = None,
        listeners: Sequence[MarkListener] = (),
        clock: Clock | None = None,
        name: str = "user",
        wall: Callable[[], int] = time.perf_counter_ns,
        host_stamps: bool | None = None,
    ) -> None:
        ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
        if units is None:
            if example is None:
                raise TlprofError("Profiler needs the units or an example input to find them")
            units = find_units(model.module if ddp else model, example)  # the hooks fire inside DDP
        self.model = model
        self.units = list(units)
        self.optimizer = optimizer
        self.device = device or _model_device(model)
        self.clock = clock or clock_for(self.device)
        self.warmup = defaults_for(self.device.type).warmup if warmup is None else warmup
        self.listeners = list(listeners)
        self.comm = self._record_comm(model) if ddp else None
        self.name = name  # the run's name in step notifications ("full", "frozen")
        self._step_listeners = [x for x in self.listeners if hasattr(x, "on_step_begin")]
        self._hook_optimizer = hook_optimizer and optimizer is not None
        self._plain_timer = PlainTimer(self.clock)
        self._instrumenter = Instrumenter(model, self.units, self.clock, self.listeners)
        # Host stamps beside CUDA events tell a launch-bound step (tlprof.launch); on the CPU the
        # mark clock is the host clock already.
        self._instrumenter.host_stamps = self.device.type == "cuda" if host_stamps is None else host_stamps
        self._handles: list[Any] = []
        self._timer: Instrumenter | PlainTimer | None = None
        self._steps_started = 0
        self._scheduled = 0  # position in the warm-up, memory, plain/timed schedule
        self._rewarm = 0  # dropped steps still owed before the schedule goes on
        self.plain_ms: list[float] = []
        self.wall = wall  # ns; the wall-to-wall figure of each plain and instrumented step
        self.plain_wall_ms: list[float] = []
        self.step_wall_ms: list[float] = []
        self.host_timelines: list[list[int]] = []  # host stamps (ns) beside each kept step's marks
        self._entered = False
        self.cpu_ms: list[float] = []  # the process's CPU time in each kept instrumented step
        self.timelines: list[list[tuple[Label, float]]] = []  # marks of each kept step, in ms
        self.saved: SavedBytes | None = None
        self.grads: GradientWatch | None = None  # which parameters the memory step's gradient reached
        self.memory = Memory()

    def _record_comm(self, ddp: nn.Module) -> Any:
        """A DDP model: its gradient all-reduce is stamped per bucket (tlprof.distributed)."""
        from .distributed import CommRecorder

        recorder = CommRecorder(self.device, self.units)
        if recorder.attach(ddp):
            self.listeners.append(recorder)
        return recorder

    # -- context -------------------------------------------------------------

    def __enter__(self) -> Profiler:
        self._entered = True
        self._instrumenter.install()  # once for the block, off the modules between its steps
        if self._hook_optimizer:
            self._handles = [
                self.optimizer.register_step_pre_hook(lambda *_: self.begin("optimizer")),
                self.optimizer.register_step_post_hook(lambda *_: self.begin("other")),
            ]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Every hook off the model and the optimizer (what ``with prof:`` does on leaving)."""
        self._entered = False
        self._instrumenter.remove()
        for h in self._handles:
            h.remove()
        self._handles = []

    def begin(self, phase: str) -> None:
        """Mark the start of a named phase (zero_grad, loss_fwd, loss_bwd, optimizer, other); an
        unknown name is refused at once, inside a step or not."""
        if self._timer is None:
            Label.phase(phase)  # refuses an unknown name
        else:
            self._timer.begin(phase)  # which checks it

    def rewarm(self, steps: int = 1) -> None:
        """Drop the next ``steps`` steps (instrumented, not kept), e.g. after other work ran
        between this profiler's steps; the schedule resumes after them."""
        self._rewarm += steps

    def next_kind(self) -> str:
        if self._rewarm:
            return "warmup"
        n = self._scheduled
        if n < self.warmup:
            return "warmup"
        if n == self.warmup:
            return "memory"
        return "plain" if (n - self.warmup) % 2 == 1 else "timed"

    @contextmanager
    def step(self) -> Iterator[Profiler]:
        start = self.wall()
        kind = self.next_kind()
        info = StepInfo(self.name, self._steps_started, kind, self.units) if self._step_listeners else None
        self._steps_started += 1
        if self._rewarm:
            self._rewarm -= 1
        else:
            self._scheduled += 1
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
        self._keep_wall(kind, start)

    def _keep_wall(self, kind: str, start: int) -> None:
        """The step's wall-to-wall time, read last: everything the profiler did for it is inside."""
        if kind == "plain":
            self.plain_wall_ms.append((self.wall() - start) / 1e6)
        elif kind == "timed":
            self.step_wall_ms.append((self.wall() - start) / 1e6)

    # -- the three kinds of step ---------------------------------------------

    def _plain_step(self) -> Iterator[Profiler]:
        timer = self._plain_timer
        self._timer = timer
        try:
            timer.begin_step()
            yield self
            self.plain_ms.append(timer.end_step())
        finally:
            self._timer = None

    def _timed_step(self, keep: bool) -> Iterator[Profiler]:
        inst = self._instrumenter
        if self._entered:
            inst.install()  # again only after a failed step took them off
        cpu_start = time.process_time_ns() if keep else 0
        try:
            with inst.step() as result:
                self._timer = inst
                try:
                    yield self
                finally:
                    self._timer = None
        except BaseException:
            inst.remove()  # a failed step leaves the model without hooks
            raise
        if keep:
            self.cpu_ms.append((time.process_time_ns() - cpu_start) / 1e6)
            self.timelines.append(result.times)
            self.host_timelines.append(result.host_ns)

    def _memory_step(self) -> Iterator[Profiler]:
        trace = AllocatorTrace(self.device) if self.device.type == "cuda" else None
        listeners = self.listeners + ([trace] if trace else [])
        inst = Instrumenter(self.model, self.units, self.clock, listeners)
        resident = [*self.model.parameters(), *self.model.buffers()]
        saved = SavedBytes(lambda: inst.current, resident)
        if trace:
            trace.start()
        self.grads = GradientWatch(list(self.model.parameters()))
        with saved.recording(), self.grads.recording(), inst.step():
            self._timer = inst
            try:
                yield self
            finally:
                self._timer = None
        self.saved = saved
        self.memory = Memory(sum(saved.by_label.values()), saved.other_bytes(),
                             _allocator_readings(trace, self.units) if trace else None)

    # -- results -------------------------------------------------------------

    def document(self, run: str = "full", meta: Meta | dict[str, Any] | None = None) -> RunDocument:
        """The measured steps as a run document, for ``save`` and ``tlprof report``."""
        given = meta.to_dict() if isinstance(meta, Meta) else dict(meta or {})
        base = {"device": str(self.device), "clock": getattr(self.clock, "name", ""),
                "torch_version": torch.__version__, "tlprof_version": __version__,
                "warmup": self.warmup, "runs": [run]}
        units = [UnitInfo(**u.to_dict()) for u in self.units]
        return RunDocument(Meta.from_dict({**base, **given}), units, {run: self.run(run)})

    @property
    def samples(self) -> list[StepSample]:
        """The kept steps attributed (after the run, not inside its timed steps)."""
        return [attribute(t, len(self.units)) for t in self.timelines]

    def run(self, name: str = "user", freeze: int = 0) -> Run:
        samples = self.samples
        if not samples:
            needed = self.warmup + 3
            raise TlprofError(
                f"no measured step: profile at least {needed} steps "
                f"({self.warmup} warm-up, 1 memory, then plain and instrumented in turn)"
            )
        saved_units = self.saved.unit_bytes(len(self.units)) if self.saved else [0] * len(self.units)
        units = [self._unit_run(i, u, saved, samples)
                 for i, (u, saved) in enumerate(zip(self.units, saved_units))]
        typical = median_step(samples)
        run = Run(
            name=name, freeze=freeze, step_ms=Stats([s.step_ms for s in samples]),
            phases_ms={p: Stats([s.phases_ms[p] for s in samples]) for p in PHASES},
            units=units, plain_step_ms=Stats(self.plain_ms or [float("nan")]), cpu_ms=Stats(self.cpu_ms),
            plain_wall_ms=Stats(self.plain_wall_ms), step_wall_ms=Stats(self.step_wall_ms),
            memory=self.memory, timeline=timeline_spans(self.timelines[typical], self.units),
            timeline_step=typical + 1, timeline_step_ms=samples[typical].step_ms,
        )
        if self.host_timelines and all(self.host_timelines):
            steps = [analyse_step(t, [(h - hs[0]) / 1e6 for h in hs])
                     for t, hs in zip(self.timelines, self.host_timelines)]
            run.launch = launch_section(steps, len(self.units))
        if self.comm is not None:
            self._add_distributed(run)
        annotate_run(run, self.units, self.grads, self.saved)
        return run

    def _add_distributed(self, run: Run) -> None:
        import torch.distributed as dist

        from .distributed import grad_bytes

        run.distributed = self.comm.section(dist.get_rank(), dist.get_world_size(), grad_bytes(self.model))
        for text in self.comm.warnings:
            run.warn("ddp", text)

    def _unit_run(self, i: int, unit: Unit, saved_bytes: int, samples: list[StepSample]) -> UnitRun:
        record = UnitRun(unit.index, Stats([s.fwd_ms[i] for s in samples]),
                         Stats([s.bwd_ms[i] for s in samples]), saved_bytes=saved_bytes)
        if self.optimizer is not None:
            for key, value in static_memory(unit, self.optimizer).items():
                setattr(record, key, value)
        else:
            record.param_bytes = unit.param_bytes
        return record


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def median_step(samples: Sequence[StepSample]) -> int:
    """The measured step whose time is the median (the lower one of an even count)."""
    order = sorted(range(len(samples)), key=lambda i: samples[i].step_ms)
    return order[(len(order) - 1) // 2]


def timeline_spans(times: list[tuple[Label, float]], units: Sequence[Unit]) -> list[Span]:
    """One step's marks as spans: what began, when (ms from the step's start), for how long."""
    names = {u.index: u.name for u in units}
    return [Span(label.kind, label.name(names), t0, t1 - t0, label.key if label.is_unit else None)
            for (label, t0), (_, t1) in zip(times, times[1:])]


def _allocator_readings(trace: AllocatorTrace, units: Sequence[Unit]) -> AllocatorReadings:
    names = {u.index: u.name for u in units}
    peak, reserved = trace.finish()
    return AllocatorReadings(
        peak_allocated_bytes=peak, step_start_allocated_bytes=trace.start_bytes, reserved_bytes=reserved,
        at_marks=[MarkAllocation(label.text(names), b) for label, b in trace.readings],
    )

