"""``--graph``: the whole training step captured once as a CUDA graph, every mark inside it.

PyTorch's whole-network capture recipe: warm-up on a side stream (gradients and
optimizer state allocated there), then zero_grad (gradients kept), forward,
loss, backward and the optimizer step captured into one graph. Each mark is a
``torch.cuda.Event(enable_timing=True, external=True)`` recorded during the
capture, so it becomes an event-record node and every replay stamps every mark
on the GPU with no host work. The plain step is the same graph captured with
only its first and last mark; both are timed alike (events, and wall-to-wall
around replay, synchronize and read-out).

``GraphCapture`` does the bookkeeping; a ``GraphBackend`` does the CUDA work,
so the bookkeeping is tested on the CPU with a fake backend. Memory readings,
``--kernels``, ``--energy`` and NVTX ranges are eager-only.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from .api import Profiler
from .clock import Clock
from .document import GraphSection, Run
from .errors import TlprofError, first_line
from .instrument import Instrumenter
from .marks import END, OTHER, Label, StepSample, attribute
from .runner import NullMarker, ProfileConfig, RunContext, prepare_run, run_profiler
from .state import ModelState
from .units import Unit
from .workload import Workload

GRAPH_WARMUP = 3  # side-stream steps before capture (PyTorch's recipe uses a few)


class GraphBackend(Protocol):
    """The CUDA side of a capture, behind a seam."""

    def warmup(self, fn: Callable[[], None], steps: int) -> None: ...

    def mark_clock(self) -> Clock: ...

    def capture(self, fn: Callable[[], None]) -> Any:
        """``fn`` captured: an opaque graph, which ``replay`` and ``pool_bytes`` take."""

    def replay(self, graph: Any) -> None: ...

    def sync(self) -> None: ...

    def pool_bytes(self, graph: Any) -> int:
        """What ``graph``'s own capture reserved (its private pool)."""


class ExternalEventClock:
    """A fresh external timing event per mark: recorded during capture, stamped at every replay."""

    name = "cuda_event_external"

    def stamp(self) -> Any:
        event = torch.cuda.Event(enable_timing=True, external=True)
        event.record()
        return event

    def sync(self) -> None:
        pass  # the backend synchronizes after each replay

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return start.elapsed_time(end)

    def recycle(self) -> None:
        pass  # the events belong to the graph


@dataclass
class CapturedGraph:
    graph: torch.cuda.CUDAGraph
    pool_bytes: int  # what the reserved memory grew by over the capture: the graph's private pool


class CudaGraphBackend:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._reserved = 0  # every capture's pool_bytes, summed

    def warmup(self, fn: Callable[[], None], steps: int) -> None:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(steps):
                fn()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.sync()

    def mark_clock(self) -> Clock:
        return ExternalEventClock()

    def capture(self, fn: Callable[[], None]) -> CapturedGraph:
        self.sync()
        before = torch.cuda.memory_reserved(self.device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # its own private pool
            fn()
        self.sync()
        captured = CapturedGraph(graph, torch.cuda.memory_reserved(self.device) - before)
        self._reserved += captured.pool_bytes
        return captured

    def replay(self, captured: CapturedGraph) -> None:
        captured.graph.replay()

    def sync(self) -> None:
        torch.cuda.synchronize(self.device)

    def pool_bytes(self, captured: CapturedGraph | None = None) -> int:
        """What ``captured``'s capture reserved; without one, every capture on this backend's, summed
        (benchmarks/graph_stages.py)."""
        return self._reserved if captured is None else captured.pool_bytes


@dataclass
class CapturedStep:
    graph: Any
    marks: list[tuple[Label, Any]]
    clock: Clock


@dataclass
class GraphCapture:
    """One run's step as two graphs (instrumented and plain), replayed in turn and read out."""

    ctx: RunContext
    backend: GraphBackend
    wall: Callable[[], int] = time.perf_counter_ns
    timed: CapturedStep | None = None
    plain: CapturedStep | None = None
    samples: list[StepSample] = field(default_factory=list)
    timelines: list[list[tuple[Label, float]]] = field(default_factory=list)
    plain_ms: list[float] = field(default_factory=list)
    step_wall_ms: list[float] = field(default_factory=list)
    plain_wall_ms: list[float] = field(default_factory=list)
    pool_bytes: int = 0  # reserved by this run's two captures

    def capture(self) -> None:
        self.backend.warmup(lambda: self._step(NullMarker()), GRAPH_WARMUP)
        self.timed = self._capture(instrumented=True)
        self.plain = self._capture(instrumented=False)
        self.pool_bytes = sum(self.backend.pool_bytes(s.graph) for s in (self.timed, self.plain))

    def _capture(self, instrumented: bool) -> CapturedStep:
        clock = self.backend.mark_clock()
        inst = Instrumenter(self.ctx.model, self.ctx.units, clock)
        marker: Any = inst if instrumented else _Ends(clock)
        try:
            with inst.installed() if instrumented else contextlib.nullcontext():
                graph = self.backend.capture(lambda: self._marked(marker))
        except TlprofError:
            raise
        except Exception as exc:
            raise capture_error(exc) from exc
        finally:
            inst.active = False
        return CapturedStep(graph, list(marker.marks), clock)

    def _marked(self, marker: Any) -> None:
        marker.start()
        self._step(marker)
        marker.mark(END)
        marker.active = False

    def _step(self, marker: Any) -> None:
        """The training step as captured: gradients zeroed in place (the graph keeps them)."""
        ctx = self.ctx
        marker.begin("zero_grad")
        ctx.optimizer.zero_grad(set_to_none=False)
        with ctx.work.autocast():
            loss = ctx.work.loss(ctx.work.forward(ctx.model))
        marker.begin("loss_bwd")
        loss.backward()
        marker.begin("optimizer")
        ctx.optimizer.step()

    def measure(self, pairs: int) -> None:
        """``pairs`` plain and instrumented replays in turn, each timed the same two ways."""
        for _ in range(pairs):
            self.plain_ms.append(self._replay(self.plain, self.plain_wall_ms)[-1][1])
            times = self._replay(self.timed, self.step_wall_ms)
            self.timelines.append(times)
            self.samples.append(attribute(times, len(self.ctx.units)))

    def _replay(self, step: CapturedStep | None, wall: list[float]) -> list[tuple[Label, float]]:
        assert step is not None, "capture() first"
        start = self.wall()
        self.backend.replay(step.graph)
        self.backend.sync()
        first = step.marks[0][1]
        times = [(label, step.clock.elapsed_ms(first, stamp)) for label, stamp in step.marks]
        wall.append((self.wall() - start) / 1e6)
        return times


class _Ends:
    """The plain graph's marker: only the step's first and last marks."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.marks: list[tuple[Label, Any]] = []
        self.active = False

    def start(self) -> None:
        self.marks = [(OTHER, self.clock.stamp())]

    def begin(self, phase: str) -> None:
        pass

    def mark(self, label: Label) -> None:
        self.marks.append((label, self.clock.stamp()))


CAUSES = (
    ("operation not permitted when stream is capturing", "it synchronizes with the host inside the step "
     "(.item(), .cpu(), printing a tensor, data-dependent control flow)"),
    ("cudaErrorStreamCaptureUnsupported", "it runs an operation CUDA graphs cannot capture"),
    ("cudaErrorStreamCaptureInvalidated", "it synchronizes with the host inside the step"),
    ("dynamic shape", "its shapes change from step to step"),
)


def capture_error(exc: BaseException) -> TlprofError:
    """A failed capture as one line naming the cause, pointing to eager mode."""
    text = first_line(exc)
    cause = next((why for key, why in CAUSES if key.lower() in str(exc).lower()), f"capture failed: {text}")
    return TlprofError(f"--graph: the model cannot be captured as a CUDA graph: {cause}; "
                       "profile it in eager mode (without --graph)")


def refuse_cpu(device: torch.device) -> None:
    if device.type != "cuda":
        raise TlprofError("--graph captures a CUDA graph and needs a CUDA device; on the CPU profile "
                          "without --graph")


def graph_runs(model: torch.nn.Module, units: list[Unit], work: Workload, cfg: ProfileConfig,
               backend: GraphBackend) -> dict[str, Run]:
    """Each configured run captured and replayed, one run after another: a run's graph writes into
    the gradients it was captured with, so it is dropped before the next run is prepared."""
    placed = ModelState.capture(model)
    runs = {}
    for name in cfg.runs:
        placed.restore_values()
        n_frozen = cfg.freeze if name == "frozen" else 0
        ctx = prepare_run(model, units, work, cfg, name, n_frozen)
        cap = GraphCapture(ctx, backend)
        cap.capture()
        cap.measure(cfg.steps)
        runs[name] = graph_run(cap, name, n_frozen)
        del cap
        gc.collect()
    return runs


def graph_run(cap: GraphCapture, name: str, n_frozen: int) -> Run:
    """The replays as a run, through the same Profiler.run as an eager run (which attributes the
    timelines)."""
    prof: Profiler = run_profiler(cap.ctx)
    prof.timelines, prof.plain_ms = cap.timelines, cap.plain_ms
    prof.step_wall_ms, prof.plain_wall_ms = cap.step_wall_ms, cap.plain_wall_ms
    run = prof.run(name, n_frozen)
    run.graph = GraphSection(pool_bytes=cap.pool_bytes, warmup_steps=GRAPH_WARMUP,
                             replays=len(cap.samples), marks=len(cap.timed.marks) if cap.timed else 0)
    run.warn("graph", "memory readings (saved bytes, allocator) are eager-only: profile without --graph "
                      "for them; the graphs' private pools are in graph.pool_bytes")
    return run
