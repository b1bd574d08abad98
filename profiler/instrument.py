"""Hooks that stamp marks: forward pre-hooks, autograd-node pre-hooks for backward (docs/design.md §3).

``Instrumenter`` is the one engine behind both the step runner and the
context manager around a user's own loop. Hooks are built by small factories
and removed in ``finally`` by whoever installs them.
"""

from __future__ import annotations

import time
from bisect import bisect_right
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
    """Filled in when a ``with instrumenter.step()`` block ends without an error: the marks, ms from
    the step's start, and the host stamps beside them (ns, when ``host_stamps``). Attribution
    waits until asked for (``sample``), outside the timed step."""

    n_units: int
    times: list[tuple[Label, float]] = field(default_factory=list)
    host_ns: list[int] = field(default_factory=list)

    @property
    def sample(self) -> StepSample | None:
        return attribute(self.times, self.n_units) if self.times else None


LOSS_FWD = Label.phase("loss_fwd")
_next_sequence_nr = torch.autograd._get_sequence_nr  # the number the next autograd node made here gets


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
        self.current: Label = OTHER
        self.active = False
        self._hooked: dict[int, Any] = {}  # nodes and leaves hooked this step, held so ids stay unique
        self._grad_hooks: dict[bool, dict[Label, Any]] = {False: {}, True: {}}  # by ends_backward, producer
        self._span_seqs: list[int] = []  # see _open
        self._span_labels: list[Label] = []
        self._end_queued = False
        self._handles: list[Any] = []  # the installed forward hooks (see install)
        self._entries: list[tuple[dict[int, Any], int, Any]] = []  # (hook dict, key, hook) of each
        self.host_marks: list[int] = []  # perf_counter_ns beside each mark, when host_stamps
        self.host_stamps = False
        self.host_ns = time.perf_counter_ns  # the host clock beside the mark clock

    # -- hooks ---------------------------------------------------------------

    def mark(self, label: Label) -> None:
        if self.host_stamps:
            self.host_marks.append(self.host_ns())
        self.marks.append((label, self.clock.stamp()))
        self.current = label
        for listener in self.listeners:
            listener.on_mark(label)

    def _open(self, label: Label) -> None:
        """A mark on the forward's thread: autograd nodes made from here to the next such mark are
        owned by ``label`` (their sequence numbers, which that thread hands out in order)."""
        self._span_seqs.append(_next_sequence_nr())
        self._span_labels.append(label)
        self.mark(label)

    def _unit_pre_hook(self, index: int):
        label = Label.fwd(index)

        def hook(_module: nn.Module, args: tuple) -> None:  # attached only while active
            tensor = args[0] if args and type(args[0]) is torch.Tensor else first_tensor(args)
            start = self._backward_start(tensor)  # before the mark: a leaf's producer is what runs
            self._open(label)
            if start is not None:
                self._hook_gradient(*start)

        return hook

    def _backward_start(self, tensor: torch.Tensor | None) -> tuple[Any, Label] | None:
        """Where a backward mark goes for ``tensor`` and whose backward it opens: its autograd node
        (the tensor itself for a leaf) and the producer, the mark the node was made under (a
        leaf's: what runs now). None when it gets no gradient or another consumer hooked it."""
        if tensor is None or not tensor.requires_grad or not torch.is_grad_enabled():
            return None
        node = tensor.grad_fn
        if node is None:
            return None if id(tensor) in self._hooked else (tensor, self.current)
        if id(node) in self._hooked:
            return None
        i = bisect_right(self._span_seqs, node._sequence_nr()) - 1
        return node, self._span_labels[i] if i >= 0 else OTHER

    def _hook_gradient(self, target: Any, producer: Label, ends_backward: bool = False) -> None:
        """When the gradient reaches ``target`` (an autograd node, or a leaf tensor), the backward
        of its producer begins (callers take both from ``_backward_start``). A node's pre-hook
        fires when a tensor hook on its output would, and costs less to register."""
        self._hooked[id(target)] = target
        hook = self._grad_hooks[ends_backward].get(producer) or self._grad_hook(producer, ends_backward)
        if isinstance(target, torch.Tensor):
            target.register_hook(hook)
        else:
            target.register_prehook(hook)

    def _grad_hook(self, producer: Label, ends_backward: bool):
        """Built once per producer and kept: the timed step only registers it."""
        opens = _backward_of(producer)

        def hook(_grad: Any) -> None:
            if self.active:
                self.mark(opens)
                if ends_backward and not self._end_queued:
                    self._end_queued = True
                    # Runs when the whole backward pass is done, on the autograd thread.
                    Variable._execution_engine.queue_callback(self._backward_done)

        self._grad_hooks[ends_backward][producer] = hook
        return hook

    def _output_hook(self, _module: nn.Module, _args: tuple, output: Any) -> None:
        # Every output that needs grad: only those the loss uses get a gradient, and the first
        # one ready begins its own producer's backward.
        hooked = [start for out in all_tensors(output) if (start := self._backward_start(out)) is not None]
        self._open(LOSS_FWD)
        for target, producer in hooked:
            if id(target) not in self._hooked:  # the same tensor (or node) returned twice
                self._hook_gradient(target, producer, ends_backward=True)

    def _backward_done(self) -> None:
        if self.active:
            self.mark(OTHER)

    @property
    def is_installed(self) -> bool:
        return bool(self._handles)

    def install(self) -> None:
        """Register the forward hooks (once: a second call does nothing), detached: they sit in the
        modules' hook dicts only during an instrumented step (``_attach``), so a run keeps them to its
        end while its plain steps take the modules' plain path (PyTorch dispatches any registered
        hook, even one that returns at once)."""
        if self._handles:
            return
        hooks = [(u.module.register_forward_pre_hook, self._unit_pre_hook(u.index)) for u in self.units]
        hooks.append((self.model.register_forward_hook, self._output_hook))
        try:
            for register, fn in hooks:
                handle = register(fn)
                self._handles.append(handle)
                self._entries.append((handle.hooks_dict_ref(), handle.id, fn))
        except BaseException:
            self.remove()
            raise
        self._detach()

    def _attach(self) -> None:
        for hooks, key, fn in self._entries:
            hooks[key] = fn

    def _detach(self) -> None:
        for hooks, key, _ in self._entries:
            hooks.pop(key, None)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._entries = []

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
    def step(self) -> Iterator[StepResult]:
        """One marked step: hooks installed (unless they already are), the first and last marks
        stamped, the times read once after the block; hooks off even when it raises."""
        result = StepResult(len(self.units))
        with self.installed():
            self._begin_step()
            try:
                yield result
                result.times = self._end_step()
                if self.host_stamps:
                    result.host_ns = list(self.host_marks)
            finally:
                self.active = False
                self._detach()
                self._forget()

    def begin(self, phase: str) -> None:
        self._open(Label.phase(phase))

    def start(self) -> None:
        """Switch on and stamp the first mark (a captured graph's step: ``step()`` reads out too)."""
        self._begin_step()

    def _forget(self) -> None:
        """Drop the step's marks, tensors and autograd nodes (held so ids stay unique in the step)."""
        self.marks.clear()
        self.host_marks.clear()
        self._hooked.clear()
        self._span_seqs.clear()
        self._span_labels.clear()

    def _begin_step(self) -> None:
        self._end_queued = False
        self._attach()
        self.active = True
        self._open(OTHER)

    def _end_step(self) -> list[tuple[Label, float]]:
        """The step's marks as ms from its first; the only read-out inside the step, since the
        clock's stamps (CUDA events) are recycled for the next one."""
        self.mark(END)
        self.active = False
        self.clock.sync()
        first = self.marks[0][1]
        times = [(label, self.clock.elapsed_ms(first, stamp)) for label, stamp in self.marks]
        self.clock.recycle()
        return times


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
