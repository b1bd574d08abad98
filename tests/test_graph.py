"""--graph's bookkeeping through a fake capture backend (the CUDA path runs in the GPU check)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

from tlprof import ProfileConfig, TlprofError, profile_model
from tlprof.graph import GRAPH_WARMUP, CudaGraphBackend

MODELS = str(Path(__file__).parent / "models.py")
INTERVAL_MS = 0.5
POOL_BYTES = 1000  # the k-th capture reserves k times this
CAPTURE_ERROR = "CUDA error: operation not permitted when stream is capturing"


class FakeEvent:
    def __init__(self, index: int) -> None:
        self.index, self.t = index, None

    def elapsed_time(self, end: FakeEvent) -> float:
        return end.t - self.t


class FakeGraph:
    def __init__(self, events: list[FakeEvent], pool_bytes: int) -> None:
        self.events, self.pool_bytes = events, pool_bytes


class FakeBackend:
    """Captures by running the step once with events that only a replay stamps: each event of a
    graph lands INTERVAL_MS after the one recorded before it. Each capture reserves its own pool,
    a different size each (the k-th: k * POOL_BYTES)."""

    def __init__(self) -> None:
        self.warmups, self.captures, self.replays = [], 0, 0
        self.graphs = []

    def warmup(self, fn, steps):
        self.warmups.append(steps)
        for _ in range(steps):
            fn()

    def mark_clock(self):
        events = []

        class Clock:
            name = "fake"

            def stamp(self):
                events.append(FakeEvent(len(events)))
                return events[-1]

            def elapsed_ms(self, a, b):
                return a.elapsed_time(b)

        clock = Clock()
        clock.events = events
        return clock

    def capture(self, fn):
        self.captures += 1
        real_item = torch.Tensor.item

        def refused(_t):
            raise RuntimeError(CAPTURE_ERROR)

        torch.Tensor.item = refused  # as a capturing stream refuses a host sync
        try:
            fn()
        finally:
            torch.Tensor.item = real_item
        return FakeGraph(self._graph_events, self.captures * POOL_BYTES)

    def replay(self, graph):
        self.replays += 1
        for e in graph.events:
            e.t = self.replays * 1000.0 + e.index * INTERVAL_MS

    def sync(self):
        pass

    def pool_bytes(self, graph):
        return graph.pool_bytes


@pytest.fixture
def backend(monkeypatch):
    """The fake backend, told which clock's events each capture made."""
    fake = FakeBackend()
    clocks = []
    make = fake.mark_clock

    def mark_clock():
        clocks.append(make())
        return clocks[-1]

    fake.mark_clock = mark_clock
    capture = fake.capture

    def tracked(fn):
        fake._graph_events = clocks[-1].events
        return capture(fn)

    fake.capture = tracked
    return fake


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU(),
                               torch.nn.Linear(8, 3))


def _cfg(**kw):
    base = {"batch_size": 4, "input_shape": (4,), "device": "cpu", "steps": 3, "warmup": 0, "graph": True}
    return ProfileConfig(**{**base, **kw})


def _labels(run):
    """Each mark of the run's step but its last (END) as (kind, name, unit)."""
    return [(s.kind, s.name, s.unit) for s in run.timeline]


def test_replays_are_read_out_by_the_eager_marks_and_attribution(backend):
    model = _model()
    runs = {"freeze": 1, "runs": ("full", "frozen")}
    doc = profile_model(model, _cfg(**runs), graph_backend=backend)
    assert backend.warmups == [GRAPH_WARMUP] * 2 and backend.captures == 4  # plain + marked, per run
    assert backend.replays == 2 * 3 * 2
    full, frozen = doc.runs["full"], doc.runs["frozen"]
    assert [s.kind for s in full.timeline if s.unit is not None][:3] == ["fwd"] * 3
    assert {s.unit for s in full.timeline if s.kind == "bwd"} == {1, 2, 3}
    # The marks captured are exactly an eager step's: the same hooks, in the same order.
    eager = profile_model(model, _cfg(graph=False, **runs))
    for name, run in doc.runs.items():
        assert _labels(run) == _labels(eager.runs[name]) and run.graph.marks == len(run.timeline) + 1
    # Each run's pool is its own two captures' (the full run captured first and second).
    assert (full.graph.pool_bytes, frozen.graph.pool_bytes) == (POOL_BYTES * (1 + 2), POOL_BYTES * (3 + 4))
    for run in (full, frozen):
        assert [u.fwd_ms.median for u in run.units] == [INTERVAL_MS] * 3
        assert run.plain_step_ms.samples == [INTERVAL_MS] * 3  # first to last event of the plain graph
        assert run.step_ms.median == INTERVAL_MS * (run.graph.marks - 1)
        assert run.graph.replays == 3
        assert any(w.part == "graph" and "eager-only" in w.text for w in run.warnings)
    assert [u.bwd_ms.median for u in full.units] == [INTERVAL_MS] * 3
    assert frozen.units[0].bwd_ms.median == 0 and frozen.units[1].bwd_ms.median == INTERVAL_MS
    assert full.graph.marks == frozen.graph.marks + 1  # the frozen unit has no backward mark


def test_each_cuda_capture_reports_its_own_pool(monkeypatch):
    """CudaGraphBackend with torch.cuda faked: a capture's figure is what the reserved memory grew
    by during it, not the total so far (which the benchmarks still get without a graph)."""
    reserved = [0]

    class Graph:
        replays = 0

        def replay(self):
            self.replays += 1

    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: reserved[0])
    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(torch.cuda, "graph", lambda graph: contextlib.nullcontext())
    backend = CudaGraphBackend(torch.device("cuda", 0))

    def reserves(n):
        def step():
            reserved[0] += n
        return step

    first, second = backend.capture(reserves(3000)), backend.capture(reserves(5000))
    assert (backend.pool_bytes(first), backend.pool_bytes(second), backend.pool_bytes()) == (3000, 5000, 8000)
    backend.replay(second)
    assert (first.graph.replays, second.graph.replays) == (0, 1)


def test_a_model_that_syncs_in_forward_is_refused_in_one_line_and_left_untouched(backend):
    class Syncs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Linear(4, 4), torch.nn.Linear(4, 3)

        def forward(self, x):
            h = self.a(x)
            if h.sum().item() > 1e9:  # data-dependent control flow: a host sync
                h = h * 0
            return self.b(h)

    model = Syncs().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TlprofError, match=r"^--graph: the model cannot be captured as a CUDA graph: it "
                       r"synchronizes with the host inside the step \(\.item\(\).*eager mode"):
        profile_model(model, _cfg(), graph_backend=backend)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training and all(p.requires_grad and p.grad is None for p in model.parameters())
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("kw, text", [
    ({}, "needs a CUDA device"),
    ({"runs": ("full", "frozen", "cached"), "freeze": 1}, "the cached run is eager-only"),
    ({"precision": "fp16"}, "cannot capture fp16's grad scaler"),
])
def test_graph_refuses_what_it_cannot_serve(kw, text):
    with pytest.raises(TlprofError, match=text):
        profile_model(_model(), _cfg(**kw))


def test_the_cli_refuses_graph_on_the_cpu_with_one_line_and_exit_2(capsys):
    from tlprof.cli import main

    small = ["--model", f"{MODELS}:mlp", "--input-shape", "8", "--batch-size", "2", "--device", "cpu"]
    assert main(["profile", *small, "--graph", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--graph captures a CUDA graph and needs a CUDA device" in err[0]
    assert main(["profile", *small, "--graph", "--kernels", "--quiet"]) == 2
    assert "--graph: --kernels measure eager steps only" in capsys.readouterr().err

