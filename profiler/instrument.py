"""Hooks that stamp marks: forward pre-hooks, tensor hooks for backward (docs/design.md §3).

``Instrumenter`` is the one engine behind both the step runner and the
context manager around a user's own loop. Hooks are built by small factories
and removed in ``finally`` by whoever installs them.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn
from torch.autograd import Variable

from .clock import Clock
from .marks import END, OTHER, Label, StepSample, attribute
from .units import Unit


class MarkListener(Protocol):
    """Sees every mark on the thread that stamps it (NVTX ranges, memory readings...)."""

    def on_mark(self, label: Label) -> None: ...


@dataclass(frozen=True)
class StepInfo:
    """One step a Profiler runs: its run's name, index in the run, kind, and the units."""

    run: str
    n: int
    kind: str  # warmup | memory | plain | timed
    units: Sequence[Unit]


class StepListener(Protocol):
    """Optional on a MarkListener: told when each step begins and ends, on the step's thread."""

    def on_step_begin(self, step: StepInfo) -> None: ...

    def on_step_end(self, step: StepInfo) -> None: ...


def all_tensors(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a (nested) tuple, list or dict, in order."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from all_tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from all_tensors(v)


def first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    if isinstance(value, dict):
        return first_tensor(list(value.values()))
    return None


def _backward_of(producer: Label) -> Label:
    """What begins when the gradient of something ``producer`` made is ready."""
    return Label.bwd(producer.key) if producer.kind == "fwd" else OTHER


@dataclass
class StepResult:
    """Filled in when a ``with instrumenter.step()`` block ends without an error."""

    sample: StepSample | None = None
    times: list[tuple[Label, float]] = field(default_factory=list)  # marks, ms from the step's start
    host_times: list[float] = field(default_factory=list)  # host stamps beside them (host_stamps on)


LOSS_FWD = Label.phase("loss_fwd")


@contextmanager
def _held() -> Iterator[None]:
    yield


class Instrumenter:
    def __init__(
        self,
        model: nn.Module,
        units: Sequence[Unit],
        clock: Clock,
        listeners: Sequence[MarkListener] = (),
    ) -> None:
        self.model = model
        self.units = list(units)
        self.clock = clock
        self.listeners = list(listeners)
        self.marks: list[tuple[Label, Any]] = []
        self.last_times: list[tuple[Label, float]] = []  # the last step's marks, ms from its start
        self.current: Label = OTHER
        self.active = False
        self._hooked: dict[int, torch.Tensor] = {}  # held so ids stay unique
        self._grad_hooks: dict[tuple[Label, bool], Any] = {}
        self._made: dict[int, Label] = {}  # id of a unit's weight module output -> its unit
        self._made_fn: dict[Any, Label] = {}  # autograd node of such an output -> its unit
        self._alive: weakref.WeakValueDictionary[int, torch.Tensor] = weakref.WeakValueDictionary()
        self._end_queued = False
        self._handles: list[Any] = []  # the installed forward hooks (see install)
        self.host_marks: list[int] = []  # perf_counter_ns beside each mark, when host_stamps
        self.host_stamps = False
        self.host_ns = time.perf_counter_ns  # the host clock beside the mark clock
        self.last_host_times: list[float] = []  # the last step's host stamps, ms from its start

    # -- hooks ---------------------------------------------------------------

    def mark(self, label: Label) -> None:
        if self.host_stamps:
            self.host_marks.append(self.host_ns())
        self.marks.append((label, self.clock.stamp()))
        self.current = label
        for listener in self.listeners:
            listener.on_mark(label)

    def _unit_pre_hook(self, index: int):
        label = Label.fwd(index)

        def hook(_module: nn.Module, args: tuple) -> None:
            if not self.active:
                return
            tensor = first_tensor(args)
            if not self._needs_grad_hook(tensor):
                self.mark(label)
                return
            producer = self._producer(tensor)  # before the mark: it makes this unit the current one
            self.mark(label)
            self._hook_gradient(tensor, producer)

        return hook

    def _needs_grad_hook(self, tensor: torch.Tensor | None) -> bool:
        """Whether a backward mark is to be hooked on ``tensor``: it will get a gradient, and no
        other consumer hooked it already (one mark is enough)."""
        return (tensor is not None and tensor.requires_grad and torch.is_grad_enabled()
                and id(tensor) not in self._hooked)

    def _unit_post_hook(self, index: int):
        """Remembers which unit made a tensor, for a consumer that does not run right after it
        (a second head, a model output other than the last unit's)."""
        label = Label.fwd(index)

        def hook(_module: nn.Module, _args: tuple, output: Any) -> None:
            out = first_tensor(output) if self.active else None
            if out is not None:
                self._made[id(out)] = label
                self._alive[id(out)] = out
                node = out.grad_fn
                if node is not None:
                    self._made_fn[node] = label

        return hook

    def _producer(self, tensor: torch.Tensor | None) -> Label:
        """The unit that made ``tensor``: the one whose weight module returned it, else the latest
        unit upstream of it in the autograd graph (not a side branch that ran since, such as an
        auxiliary head), else what runs."""
        if tensor is None:
            return self.current
        if self._alive.get(id(tensor)) is tensor:
            return self._made[id(tensor)]
        node = tensor.grad_fn
        if node is None or not self._made_fn:
            return self.current
        return self._upstream_unit(node) or self.current

    def _upstream_unit(self, start: Any, budget: int = 256) -> Label | None:
        best: Label | None = None
        stack, seen = [start], {start}
        while stack and budget:
            node = stack.pop()
            budget -= 1
            label = self._made_fn.get(node)
            if label is not None:
                if label == self.current:
                    return label
                best = label if best is None or label[1] > best[1] else best
                continue
            for nxt, _ in node.next_functions:
                if nxt is not None and nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return best

    def _hook_gradient(self, tensor: torch.Tensor, producer: Label, ends_backward: bool = False) -> None:
        """When the gradient of ``tensor`` is ready, the backward of its producer begins (callers
        check ``_needs_grad_hook`` first)."""
        self._hooked[id(tensor)] = tensor
        tensor.register_hook(self._grad_hook(_backward_of(producer), ends_backward))

    def _grad_hook(self, opens: Label, ends_backward: bool = False):
        """Built once per label and kept: the timed step only registers it."""
        hook = self._grad_hooks.get((opens, ends_backward))
        if hook is None:

            def hook(_grad: torch.Tensor) -> None:
                if self.active:
                    self.mark(opens)
                    if ends_backward and not self._end_queued:
                        self._end_queued = True
                        # Runs when the whole backward pass is done, on the autograd thread.
                        Variable._execution_engine.queue_callback(self._backward_done)

            self._grad_hooks[(opens, ends_backward)] = hook
        return hook

    def _output_hook(self, _module: nn.Module, _args: tuple, output: Any) -> None:
        if not self.active:
            return
        # Every output that needs grad: only those the loss uses get a gradient, and the first
        # one ready begins its own producer's backward.
        hooked = [(out, self._producer(out)) for out in all_tensors(output)
                  if self._needs_grad_hook(out)]
        self.mark(LOSS_FWD)
        for out, producer in hooked:
            if id(out) not in self._hooked:  # the same tensor returned twice
                self._hook_gradient(out, producer, ends_backward=True)

    def _backward_done(self) -> None:
        if self.active:
            self.mark(OTHER)

    @property
    def is_installed(self) -> bool:
        return bool(self._handles)

    def install(self) -> None:
        """Register the forward hooks (once: a second call does nothing). They do nothing while
        ``active`` is off, so a run may keep them from its first instrumented step to its end."""
        if self._handles:
            return
        try:
            for u in self.units:
                self._handles.append(u.module.register_forward_pre_hook(self._unit_pre_hook(u.index)))
                self._handles.append(u.module.register_forward_hook(self._unit_post_hook(u.index)))
            self._handles.append(self.model.register_forward_hook(self._output_hook))
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    @contextmanager
    def installed(self) -> Iterator[Instrumenter]:
        """Hooks installed for the block, unless they already were (then they stay)."""
        held = self.is_installed
        self.install()
        try:
            yield self
        finally:
            if not held:
                self.remove()

    # -- steps ---------------------------------------------------------------

    @contextmanager
    def step(self, install: bool = True) -> Iterator[StepResult]:
        """One marked step: hooks installed (unless the caller holds them), the first and last
        marks stamped, the times read once after the block; hooks off even when it raises."""
        result = StepResult()
        with self.installed() if install else _held():
            self._begin_step()
            try:
                yield result
                result.sample = self._end_step()
                result.times = self.last_times
                result.host_times = self.last_host_times if self.host_stamps else []
            finally:
                self.active = False
                self._forget()

    def begin(self, phase: str) -> None:
        self.mark(Label.phase(phase))

    def start(self) -> None:
        """Switch on and stamp the first mark (a captured graph's step: ``step()`` reads out too)."""
        self._begin_step()

    def _forget(self) -> None:
        """Drop the step's tensors and autograd nodes (held so ids stay unique within the step)."""
        self._hooked.clear()
        self._made.clear()
        self._made_fn.clear()
        self._alive.clear()

    def _begin_step(self) -> None:
        self.marks = []
        self.host_marks = []
        self._forget()
        self._end_queued = False
        self.active = True
        self.mark(OTHER)

    def _end_step(self) -> StepSample:
        self.mark(END)
        self.active = False
        self.clock.sync()
        first = self.marks[0][1]
        times = [(label, self.clock.elapsed_ms(first, stamp)) for label, stamp in self.marks]
        self.clock.recycle()
        self.last_times = times
        if self.host_stamps:
            h0 = self.host_marks[0]
            self.last_host_times = [(h - h0) / 1e6 for h in self.host_marks]
        return attribute(times, len(self.units))


class PlainTimer:
    """The same step with no hooks: only the step's own start and end are stamped."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._start: Any = None

    def begin_step(self) -> None:
        self._start = self.clock.stamp()

    def begin(self, phase: str) -> None:
        Label.phase(phase)  # a typo fails here as in an instrumented step

    def end_step(self) -> float:
        end = self.clock.stamp()
        self.clock.sync()
        elapsed = self.clock.elapsed_ms(self._start, end)
        self.clock.recycle()
        return elapsed
