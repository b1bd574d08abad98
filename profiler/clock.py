"""Clocks behind one small interface: host clock on CPU, CUDA events on CUDA (docs/design.md §3).

A clock hands out opaque stamps from inside hooks (cheap, no synchronisation);
the elapsed times are read once per step, after ``sync``.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import torch


class Clock(Protocol):
    def stamp(self) -> Any: ...

    def sync(self) -> None: ...

    def elapsed_ms(self, start: Any, end: Any) -> float: ...

    def recycle(self) -> None: ...


class HostClock:
    """``time.perf_counter_ns``: exact for CPU work, which runs synchronously."""

    name = "perf_counter_ns"

    def stamp(self) -> int:
        return time.perf_counter_ns()

    def sync(self) -> None:
        pass

    def elapsed_ms(self, start: int, end: int) -> float:
        return (end - start) / 1e6

    def recycle(self) -> None:
        pass


class CudaEventClock:
    """``torch.cuda.Event(enable_timing=True)`` recorded on the current stream.

    Events are taken from a pool that grows once and is reused every step, so a
    hook does no allocation after the first step.
    """

    name = "cuda_event"

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._pool: list[torch.cuda.Event] = []
        self._next = 0

    def stamp(self) -> torch.cuda.Event:
        if self._next == len(self._pool):
            self._pool.append(torch.cuda.Event(enable_timing=True))
        event = self._pool[self._next]
        self._next += 1
        event.record()
        return event

    def sync(self) -> None:
        torch.cuda.synchronize(self.device)

    def elapsed_ms(self, start: torch.cuda.Event, end: torch.cuda.Event) -> float:
        return start.elapsed_time(end)

    def recycle(self) -> None:
        """Called after a step's times are read: its events may be recorded again."""
        self._next = 0


def clock_for(device: torch.device) -> Clock:
    return CudaEventClock(device) if device.type == "cuda" else HostClock()
