"""The cached-features run (docs/design.md §6): units 1..N run once, without grad; N+1..L train.

This is the only run in which a frozen layer costs nothing per epoch. Two
figures are measured:

- **F_N**: a no-grad forward of the frozen run from the model's start to the
  moment unit N+1 starts (the forward is cut there), per batch;
- **h_N**: the training step of units N+1..L fed cached features; recorded as
  the ``cached`` run, marked like any other run.

How the features are fed, for any model, without rewriting its ``forward``:
one no-grad forward records every module call (a tree: calls nest) and whether
it returned before unit N+1 started. The outermost calls that did are *replayed*
in the timed steps: the module's ``forward`` returns the recorded output instead
of running (by the module's call count within the forward, so a module shared
by the frozen and the trainable part, like ResNet's per-block ReLU, runs for
real after the boundary). Everything else runs as usual.

The approximation: Python glue of a module that spans the boundary (in
ResNet-50 with N = 45, the bottleneck ``layer4.1``'s own forward) still runs, as
do the lookups; in the cached run that time is charged to ``other`` (the phase
begun just before the forward) and to the frozen units whose weight module is
replayed directly. A replayed output that the glue modifies in place is
recorded again, outside the timed steps, before the next step. Data-dependent
control flow in the frozen part that changes the call sequence is refused.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .clock import Clock, clock_for
from .document import CacheSection
from .errors import TlprofError
from .instrument import all_tensors
from .runner import ProfileConfig, RunContext, Workload, prepare_run
from .stats import Stats
from .units import Unit

REPLAY_PHASE = "other"  # the replayed frozen part runs before the first trainable unit


@dataclass
class _Call:
    module: nn.Module
    parent: int | None
    before_boundary: bool = False  # returned before unit N+1 started
    output: Any = None
    replayed: bool = False  # outermost call that returned before the boundary
    hidden: bool = False  # inside a replayed call: does not happen in a replayed forward


def record_calls(model: nn.Module, boundary: nn.Module, forward: Callable[[], Any]) -> list[_Call]:
    """Every module call of one forward, in call order, with its output."""
    calls: list[_Call] = []
    stack: list[int] = []
    passed = False

    def pre(module: nn.Module, _args: tuple) -> None:
        nonlocal passed
        passed = passed or module is boundary
        calls.append(_Call(module, stack[-1] if stack else None))
        stack.append(len(calls) - 1)

    def post(module: nn.Module, _args: tuple, output: Any) -> None:
        call = calls[stack.pop()]
        call.before_boundary = not passed
        call.output = output

    handles = []
    try:
        for m in model.modules():
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
        forward()
    finally:
        for h in handles:
            h.remove()
    return calls


@dataclass
class FeatureCache:
    """The recorded outputs of the frozen part, by module and by its call count in a forward."""

    model: nn.Module
    boundary: nn.Module
    forward: Callable[[], Any]  # one no-grad forward of the frozen run
    outputs: dict[nn.Module, dict[int, Any]] = field(default_factory=dict)
    expected_calls: dict[nn.Module, int] = field(default_factory=dict)
    calls: dict[nn.Module, int] = field(default_factory=dict)  # in the last replayed forward
    versions: list[tuple[torch.Tensor, int]] = field(default_factory=list)

    def capture(self) -> FeatureCache:
        recorded = record_calls(self.model, self.boundary, self.forward)
        ordinal: dict[nn.Module, int] = defaultdict(int)
        outputs: dict[nn.Module, dict[int, Any]] = defaultdict(dict)
        for call in recorded:
            parent = recorded[call.parent] if call.parent is not None else None
            call.hidden = parent is not None and (parent.replayed or parent.hidden)
            call.replayed = not call.hidden and parent is not None and call.before_boundary
            if call.hidden:
                continue
            k = ordinal[call.module]
            ordinal[call.module] += 1
            if call.replayed:
                outputs[call.module][k] = call.output
        if not outputs:
            raise TlprofError("--runs cached: nothing of the model runs before the first "
                              "trainable unit, so there is nothing to cache")
        for module, outs in outputs.items():  # update in place: replayers hold these dicts
            self.outputs.setdefault(module, {}).clear()
            self.outputs[module].update(outs)
        self.expected_calls = {m: ordinal[m] for m in outputs}
        recorded = [list(outs.values()) for outs in outputs.values()]
        self.versions = [(t, t._version) for t in all_tensors(recorded)]
        return self

    @property
    def nbytes(self) -> int:
        seen, total = set(), 0
        for t, _ in self.versions:
            key = (t.untyped_storage().data_ptr(), t.device)
            if key not in seen:
                seen.add(key)
                total += t.untyped_storage().nbytes()
        return total

    @property
    def replayed_calls(self) -> int:
        return sum(len(outs) for outs in self.outputs.values())

    def _replayer(self, module: nn.Module, original: Callable[..., Any]) -> Callable[..., Any]:
        outs = self.outputs[module]

        def forward(*args: Any, **kwargs: Any) -> Any:
            k = self.calls[module]
            self.calls[module] = k + 1
            return outs[k] if k in outs else original(*args, **kwargs)

        return forward

    def _reset(self, *_: Any) -> None:
        for m in self.calls:
            self.calls[m] = 0

    @contextmanager
    def replaying(self) -> Iterator[FeatureCache]:
        """The frozen part's recorded outputs stand in for running it; restored after."""
        patched: list[tuple[nn.Module, bool, Any]] = []
        self.calls = dict.fromkeys(self.outputs, 0)
        handle = self.model.register_forward_pre_hook(self._reset)
        try:
            for module in self.outputs:
                own = "forward" in module.__dict__
                patched.append((module, own, module.__dict__.get("forward")))
                module.forward = self._replayer(module, module.forward)
            yield self
        finally:
            handle.remove()
            for module, own, previous in reversed(patched):
                if own:
                    module.forward = previous
                else:
                    del module.forward

    def check_replay(self) -> None:
        """After a replayed step: the frozen part was called as recorded."""
        for module, expected in self.expected_calls.items():
            if self.calls.get(module) != expected:
                raise TlprofError(
                    "--runs cached: the frozen part's module calls differ from one forward "
                    "to the next (data-dependent control flow?); cached features cannot be replayed"
                )

    def refresh_if_modified(self) -> bool:
        """Record the features again if a step modified one in place (outside timed steps)."""
        if all(t._version == v for t, v in self.versions):
            return False
        self.capture()
        return True


class _Boundary(Exception):
    """Raised at unit N+1's start to cut the feature forward there."""


def time_features(model: nn.Module, boundary: nn.Module, work: Workload, clock: Clock,
                  warmup: int, steps: int) -> list[float]:
    """F_N per batch, ms: no-grad forward from the model's start to unit N+1's start."""
    end: list[Any] = []

    def stop(_module: nn.Module, _args: tuple) -> None:
        end.append(clock.stamp())
        raise _Boundary

    samples = []
    handle = boundary.register_forward_pre_hook(stop)
    try:
        for i in range(warmup + steps):
            end.clear()
            start = clock.stamp()
            try:
                with torch.no_grad(), work.autocast():
                    work.forward(model)
            except _Boundary:
                pass
            clock.sync()
            if i >= warmup:
                samples.append(clock.elapsed_ms(start, end[0]))
            clock.recycle()
    finally:
        handle.remove()
    return samples


@dataclass
class CachedRunContext(RunContext):
    """Every step of the cached run, timed or extra, replays the recorded features."""

    cache: FeatureCache | None = None
    forward_phase: str | None = REPLAY_PHASE
    recaptured_steps: int = 0
    features_ms: list[float] = field(default_factory=list)  # F_N per batch

    def step_scope(self) -> contextlib.AbstractContextManager:
        return self.cache.replaying()

    def after_step(self) -> None:
        self.cache.check_replay()
        self.recaptured_steps += self.cache.refresh_if_modified()

    def section(self) -> CacheSection:
        return CacheSection(Stats(self.features_ms), self.cache.replayed_calls, self.cache.nbytes,
                            self.recaptured_steps)


def prepare_cached(model: nn.Module, units: Sequence[Unit], work: Workload, cfg: ProfileConfig,
                   name: str) -> CachedRunContext:
    """The ``cached`` run: F_N measured first, then the features recorded for the timed steps of
    units N+1..L."""
    n_frozen = cfg.freeze
    base = prepare_run(model, units, work, cfg, name, n_frozen)
    boundary = units[n_frozen].module
    features_ms = time_features(model, boundary, work, clock_for(work.device), cfg.warmup, cfg.steps)

    def feature_forward() -> Any:
        with torch.no_grad(), work.autocast():
            return work.forward(model)

    cache = FeatureCache(model, boundary, feature_forward).capture()
    return CachedRunContext(**{**vars(base), "forward_phase": REPLAY_PHASE}, cache=cache,
                            features_ms=features_ms)
