"""The overhead ratio is what a user feels: plain and instrumented steps timed wall-to-wall, with
everything the profiler does for each inside (docs/design.md §3). A fake clock, never timings."""

from __future__ import annotations

import statistics

import pytest
import torch

from tlprof import Profiler, Run, Stats
from tlprof.instrument import Instrumenter

STAMP_NS, SYNC_NS, WORK_NS = 1_000, 50_000, 2_000_000
INSTALL_NS, READOUT_NS, ENABLE_NS = 300_000, 70_000, 9_000


class FakeTime:
    """One host clock that only the profiler's own work and the planted work move."""

    name = "fake"

    def __init__(self) -> None:
        self.now = 0

    def wall(self) -> int:
        return self.now

    def stamp(self) -> int:
        self.now += STAMP_NS
        return self.now

    def sync(self) -> None:
        self.now += SYNC_NS

    def elapsed_ms(self, start: int, end: int) -> float:
        return (end - start) / 1e6

    def recycle(self) -> None:
        pass


@pytest.fixture
def costly(monkeypatch):
    """Installing hooks, switching them on and reading the step out each cost fake time."""
    fake = FakeTime()
    calls: dict[int, int] = {}  # installs per instrumenter
    install, begin, end = Instrumenter.install, Instrumenter._begin_step, Instrumenter._end_step

    def paid_install(self):
        if not self.is_installed:
            calls[id(self)] = calls.get(id(self), 0) + 1
            fake.now += INSTALL_NS
        install(self)

    def paid_begin(self):
        fake.now += ENABLE_NS
        begin(self)

    def paid_end(self):
        fake.now += READOUT_NS
        return end(self)

    monkeypatch.setattr(Instrumenter, "install", paid_install)
    monkeypatch.setattr(Instrumenter, "_begin_step", paid_begin)
    monkeypatch.setattr(Instrumenter, "_end_step", paid_end)
    return fake, calls


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


def _loop(prof, model, fake, steps):
    """The user's loop, timed from outside ``with prof.step()`` on the same fake clock."""
    outside = {"plain": [], "timed": []}
    for _ in range(steps):
        kind = prof.next_kind()
        before = fake.now
        with prof.step():
            model(torch.randn(3, 4)).sum().backward()
            fake.now += WORK_NS
        if kind in outside:
            outside[kind].append((fake.now - before) / 1e6)
    return outside


@pytest.mark.parametrize("warmup", [0, 1])
def test_reported_overhead_is_the_wall_to_wall_ratio_with_all_profiler_work_inside(costly, warmup):
    fake, calls = costly
    model = _model()
    with Profiler(model, example=torch.randn(1, 4), warmup=warmup, clock=fake, wall=fake.wall) as prof:
        outside = _loop(prof, model, fake, steps=warmup + 1 + 2 * 4)
    run = prof.run()
    assert run.plain_wall_ms.samples == outside["plain"]
    assert run.step_wall_ms.samples == outside["timed"]
    felt = statistics.median(outside["timed"]) / statistics.median(outside["plain"])
    assert run.overhead_ratio == felt
    # The instrumented step's switch-on, read-out and sync are inside its figure; the hooks were
    # registered once, when the block was entered: in no measured step.
    marks = len(prof.timelines[0])
    assert calls[id(prof._instrumenter)] == 1
    assert all(x * 1e6 == WORK_NS + ENABLE_NS + READOUT_NS + marks * STAMP_NS + SYNC_NS
               for x in run.step_wall_ms.samples)
    assert run.plain_wall_ms.samples[-1] * 1e6 == WORK_NS + 2 * STAMP_NS + SYNC_NS
    # The marked step (first to last mark) leaves that work out; the ratio no longer does.
    assert run.step_ms.median / run.plain_step_ms.median < run.overhead_ratio


def test_outside_with_prof_each_step_installs_and_removes_its_hooks_and_pays_for_it(costly):
    fake, calls = costly
    model = _model()
    prof = Profiler(model, example=torch.randn(1, 4), warmup=0, clock=fake, wall=fake.wall)
    outside = _loop(prof, model, fake, steps=1 + 2 * 2)
    assert calls[id(prof._instrumenter)] == 2  # each instrumented step: no `with prof:` to hold them
    assert prof.step_wall_ms == outside["timed"]
    assert prof.step_wall_ms[-1] * 1e6 >= INSTALL_NS + WORK_NS
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


def _pre_hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_pre_hooks) for m in model.modules())


def test_hooks_are_on_the_modules_only_during_instrumented_steps_and_leave_with_the_block():
    model = _model()
    during = []
    with Profiler(model, example=torch.randn(1, 4), warmup=1) as prof:
        units = len(prof.units)
        for _ in range(4):  # warm-up, memory, plain, instrumented
            with prof.step():
                model(torch.randn(3, 4)).sum().backward()
                during.append(_pre_hooks(model))
        # Registered once for the run, but off the modules between steps: a plain step (and the
        # user's own forward) takes PyTorch's no-hook path, as without the profiler.
        assert during == [units, units, 0, units] and prof._instrumenter.is_installed
        marks = len(prof._instrumenter.marks)
        model(torch.randn(3, 4)).sum().backward()
        assert _pre_hooks(model) == 0 and not model._forward_hooks
        assert len(prof._instrumenter.marks) == marks and not prof._instrumenter.active
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())
    assert not prof._instrumenter.is_installed


def test_a_failed_instrumented_step_takes_the_hooks_off_at_once():
    model = _model()
    with Profiler(model, example=torch.randn(1, 4), warmup=2) as prof:
        with pytest.raises(RuntimeError, match="planted"), prof.step():
            model(torch.randn(3, 4))
            raise RuntimeError("planted")
        assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())
        assert not prof._instrumenter.is_installed
        with prof.step():  # the next (warm-up) step installs them again
            model(torch.randn(3, 4)).sum().backward()
            assert _pre_hooks(model) == len(prof.units)


def test_a_document_without_wall_samples_keeps_the_marked_ratio():
    run = Run("full", 0, Stats([12.0]), {}, [], Stats([10.0]))
    d = run.to_dict()
    del d["plain_wall_ms"], d["step_wall_ms"]
    assert Run.from_dict(d).overhead_ratio == pytest.approx(1.2)
    walled = Run("full", 0, Stats([12.0]), {}, [], Stats([10.0]), plain_wall_ms=Stats([10.0, 11.0, 12.0]),
                 step_wall_ms=Stats([13.0, 14.0, 18.0]))
    assert Run.from_dict(walled.to_dict()).overhead_ratio == 14.0 / 11.0
