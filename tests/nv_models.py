"""Tiny models and fakes for the NVTX and NVML tests; the model is usable as ``--model``.

``RecordingNvtx`` records every push and pop with the calling thread; ``FakeNvml``
is a whole NVML with GPUs described in a list and an energy counter that
advances with time, in ticks, at a fixed power.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from tlprof.nvml import NvmlError


def named_mlp() -> nn.Module:
    """Units enc.fc1, enc.fc2 (stage "enc") and head (stage "head"); 8 inputs, 4 classes."""
    enc = nn.Sequential(OrderedDict(fc1=nn.Linear(8, 16), act1=nn.ReLU(),
                                    fc2=nn.Linear(16, 16), act2=nn.ReLU()))
    return nn.Sequential(OrderedDict(enc=enc, head=nn.Linear(16, 4)))


UNIT_NAMES = ("enc.fc1", "enc.fc2", "head")


# -- NVTX -------------------------------------------------------------------------------


@dataclass
class Call:
    thread: int
    op: str  # push | pop
    message: str | None = None
    color: int | None = None


class RecordingNvtx:
    name = "recording"
    domain: str | None = "tlprof"

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def push(self, message: str, color: int) -> None:
        with self._lock:
            self.calls.append(Call(threading.get_ident(), "push", message, color))

    def pop(self) -> None:
        with self._lock:
            self.calls.append(Call(threading.get_ident(), "pop"))


@dataclass
class Node:
    name: str
    color: int
    children: list[Node] = field(default_factory=list)


@dataclass
class ThreadRanges:
    roots: list[Node]
    still_open: list[str]  # names of ranges never popped, outermost first


def replay(calls: list[Call]) -> dict[int, ThreadRanges]:
    """Each thread's pushes and pops as trees; a pop with nothing pushed on its thread fails."""
    stacks: dict[int, list[Node]] = {}
    out: dict[int, ThreadRanges] = {}
    for call in calls:
        stack = stacks.setdefault(call.thread, [])
        ranges = out.setdefault(call.thread, ThreadRanges([], []))
        if call.op == "push":
            node = Node(call.message, call.color)
            (stack[-1].children if stack else ranges.roots).append(node)
            stack.append(node)
        else:
            assert stack, f"pop on thread {call.thread} with no range of that thread open"
            stack.pop()
    for thread, stack in stacks.items():
        out[thread].still_open = [n.name for n in stack]
    return out


# -- NVML -------------------------------------------------------------------------------


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-1111-2222-3333-444444444444"
    memory_total_bytes: int = 80 * 2**30
    power_limit_w: float = 700.0
    power_w: float = 300.0  # also the rate of the energy counter
    temperature_c: int = 35
    sm_clock_mhz: int = 1755
    max_sm_clock_mhz: int = 1980
    memory_clock_mhz: int = 2619
    max_memory_clock_mhz: int = 2619
    throttle_mask: int = 0x1
    has_energy: bool = True


class SteppingClock:
    """A clock that moves ``step_s`` forward at every reading: energy tests that do not depend on load."""

    def __init__(self, step_s: float = 0.001) -> None:
        self.step_s = step_s
        self.now = 0.0

    def __call__(self) -> float:
        self.now += self.step_s
        return self.now


class FakeNvml:
    """NVML with made-up GPUs; the energy counter grows at ``power_w`` in steps of ``tick_s``."""

    def __init__(self, gpus: list[FakeGpu] | None = None, tick_s: float = 0.005,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.gpus = [FakeGpu()] if gpus is None else gpus
        self.tick_s = tick_s
        self.clock = clock
        self.t0 = clock()
        self.closed = 0
        self.temperature_reads = 0

    def _gpu(self, index: int) -> FakeGpu:
        if not 0 <= index < len(self.gpus):
            raise NvmlError(f"no GPU {index}")
        return self.gpus[index]

    def driver_version(self) -> str:
        return "550.54.15"

    def cuda_driver_version(self) -> int:
        return 12040

    def device_count(self) -> int:
        return len(self.gpus)

    def name(self, index: int) -> str:
        return self._gpu(index).name

    def uuid(self, index: int) -> str:
        return self._gpu(index).uuid

    def memory_total_bytes(self, index: int) -> int:
        return self._gpu(index).memory_total_bytes

    def clock_mhz(self, index: int, clock: str, maximum: bool = False) -> int:
        gpu = self._gpu(index)
        if clock == "graphics":
            raise NvmlError("not supported")
        return getattr(gpu, f"{'max_' if maximum else ''}{clock}_clock_mhz")

    def power_limit_w(self, index: int) -> float:
        return self._gpu(index).power_limit_w

    def power_w(self, index: int) -> float:
        return self._gpu(index).power_w

    def temperature_c(self, index: int) -> int:
        self.temperature_reads += 1  # warms by one degree per reading
        return self._gpu(index).temperature_c + self.temperature_reads - 1

    def throttle_reasons(self, index: int) -> int:
        return self._gpu(index).throttle_mask

    def total_energy_mj(self, index: int) -> int:
        gpu = self._gpu(index)
        if not gpu.has_energy:
            raise NvmlError("nvmlDeviceGetTotalEnergyConsumption: Not Supported")
        ticks = math.floor((self.clock() - self.t0) / self.tick_s)
        return 10**9 + int(ticks * self.tick_s * gpu.power_w * 1000)

    def close(self) -> None:
        self.closed += 1
