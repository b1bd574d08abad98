"""Per-unit kernel breakdown from one step under ``torch.profiler`` (issue 4).

The unit marks open and close ``record_function`` ranges (``RangeMarks``, a
mark listener), so every op, and on CUDA every kernel it launched, lands under
the unit running when it ran. A range is closed by the next mark on the thread
that opened it: the profiler only nests events under a range entered and
exited on the same thread, and on CUDA backward marks come from the autograd
device thread while forward marks come from the caller.

On CUDA a unit's kernel time is the sum of the device durations of the kernels
launched under its range. On the CPU the "kernels" are the range's top-level
ATen ops and their time is their host duration.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch.autograd.profiler import record_function

from tlprof.marks import Label

RANGE_PREFIX = "tlprof:"
_AUTOGRAD_PREFIX = "autograd::engine::evaluate_function: "

# Kineto logs an error line on every run when it finds no GPU; on the CPU that is noise.
os.environ.setdefault("KINETO_LOG_LEVEL", "5")


def range_name(label: Label) -> str | None:
    """``tlprof:fwd:3``, ``tlprof:loss_bwd``; none for ``other`` and the end."""
    label = Label(*label)
    if label.is_unit or (label.kind == "phase" and label.key != "other"):
        return RANGE_PREFIX + label.text()
    return None


def parse_range(name: str) -> Label | None:
    if not name.startswith(RANGE_PREFIX):
        return None
    return Label.parse(name[len(RANGE_PREFIX):])


class RangeMarks:
    """A mark listener: each mark closes this thread's open range and opens the next one."""

    def __init__(self) -> None:
        self._open: dict[int, record_function] = {}
        self._lock = threading.Lock()

    def on_mark(self, label: Label) -> None:
        tid = threading.get_ident()
        with self._lock:
            rf = self._open.pop(tid, None)
        if rf is not None:
            rf.__exit__(None, None, None)
        name = range_name(label)
        if name is None:
            return
        rf = record_function(name)
        rf.__enter__()
        with self._lock:
            self._open[tid] = rf

    def close_here(self) -> int:
        """Close this thread's range; returns how many stay open on other threads."""
        rf = self._open.pop(threading.get_ident(), None)
        if rf is not None:
            rf.__exit__(None, None, None)
        return len(self._open)


@dataclass
class KernelStat:
    name: str
    count: int = 0
    total_ms: float = 0.0

    def to_dict(self) -> dict:
        return {"name": self.name, "count": self.count, "total_ms": self.total_ms}


@dataclass
class LabelKernels:
    """What ran under one label's ranges."""

    stats: dict[str, KernelStat] = field(default_factory=dict)

    def add(self, name: str, ms: float) -> None:
        stat = self.stats.setdefault(name, KernelStat(name))
        stat.count += 1
        stat.total_ms += ms

    @property
    def total_ms(self) -> float:
        return sum(s.total_ms for s in self.stats.values())

    def top(self, n: int) -> list[dict]:
        ranked = sorted(self.stats.values(), key=lambda s: s.total_ms, reverse=True)
        return [s.to_dict() for s in ranked[:n]]


def breakdown(events: Iterable, device_kernels: bool) -> dict[Label, LabelKernels]:
    """Group the profiler's events under the tlprof ranges that hold them."""
    by_label: dict[Label, LabelKernels] = defaultdict(LabelKernels)
    for evt in events:
        label = parse_range(evt.name)
        if label is None or evt.is_async:
            continue
        collect = _device_kernels if device_kernels else _host_ops
        for name, ms in collect(evt):
            by_label[label].add(name, ms)
    return by_label


def _host_ops(range_evt) -> Iterable[tuple[str, float]]:
    for child in range_evt.cpu_children:
        yield child.name.removeprefix(_AUTOGRAD_PREFIX), child.cpu_time_total / 1e3


def _device_kernels(range_evt) -> Iterable[tuple[str, float]]:
    stack = list(range_evt.cpu_children)
    while stack:
        evt = stack.pop()
        stack.extend(evt.cpu_children)
        for k in evt.kernels:
            yield k.name, k.duration / 1e3


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Kineto's C++ side prints ``USDT: … profiler_start/stop`` straight to fd 2: send fd 2 to a
    scratch file while the profiler starts and stops, then replay what was not Kineto's.
    ``TLPROF_DEBUG`` leaves fd 2 alone."""
    if os.environ.get("TLPROF_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as scratch:
        os.dup2(scratch.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            scratch.seek(0)
            kept = [line for line in scratch.read().decode(errors="replace").splitlines(keepends=True)
                    if not _kineto_line(line)]
            if kept:
                sys.stderr.write("".join(kept))


def _kineto_line(line: str) -> bool:
    return line.startswith(("USDT:", "STAGE:")) or "kineto" in line.lower() or "ActivityProfiler" in line


def profile_step(step: Callable[[], None], device: torch.device):
    """Run ``step`` under torch.profiler; returns its function events."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Profiler clears events")  # one cycle is all
        prof = profile(activities=activities)
        with quiet_stderr():
            prof.start()
        try:
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        finally:
            with quiet_stderr():
                prof.stop()
        return prof.events()
