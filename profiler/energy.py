"""Energy per step from NVML's total-energy counter (docs/design.md §5): the ``--energy`` RunExtra.

After each run's timed steps, more plain steps (no hooks) run between two
readings of the counter (millijoules since the driver loaded): joules per step
and average power per run. The counter advances in ticks of milliseconds to
tens of milliseconds, so the window is made at least ``ticks_per_window`` ticks
long, starts right on a tick, and a warning is recorded when it is still too
short. One layer lasts far less than a tick: per-unit energy is only an
estimate, the unit's share of the instrumented step time × the measured joules
per step, and is labelled as such (``energy_estimate_j``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from . import nvml
from .document import EnergySection
from .errors import say

if TYPE_CHECKING:
    from .document import Run
    from .runner import RunContext

UNIT_BASIS = "estimate: the unit's share of the instrumented step time × measured joules per step"


@dataclass
class EnergyConfig:
    window_s: float = 3.0  # shortest measured window per run
    ticks_per_window: int = 20  # and at least this many counter ticks
    max_resolution: float = 0.05  # warn when one tick is more than this share of the window
    min_steps: int = 5
    max_steps: int = 2000
    warmup_steps: int = 2
    tick_changes: int = 4  # counter changes watched to measure its tick (3 intervals)
    tick_timeout_s: float = 2.0
    poll_s: float = 0.0005


@dataclass
class EnergyReading:
    steps: int
    window_s: float
    energy_j: float
    counter_tick_s: float | None
    warnings: list[str] = field(default_factory=list)

    @property
    def energy_per_step_j(self) -> float:
        return self.energy_j / self.steps

    @property
    def avg_power_w(self) -> float:
        return self.energy_j / self.window_s if self.window_s > 0 else float("nan")

    @property
    def resolution(self) -> float | None:
        """One counter tick as a share of the window: the reading's relative uncertainty."""
        return None if self.counter_tick_s is None else self.counter_tick_s / self.window_s

    def section(self, gpu_index: int) -> EnergySection:
        return EnergySection(
            energy_per_step_j=self.energy_per_step_j, avg_power_w=self.avg_power_w, steps=self.steps,
            window_s=self.window_s, energy_j=self.energy_j, counter_tick_s=self.counter_tick_s,
            resolution=self.resolution, gpu_index=gpu_index, unit_energy=UNIT_BASIS,
        )


def unit_estimates_j(run: Run, energy_per_step_j: float) -> list[float]:
    step_ms = run.step_ms.median
    if not step_ms > 0:
        return [float("nan")] * len(run.units)
    return [(u.fwd_ms.median + u.bwd_ms.median) / step_ms * energy_per_step_j for u in run.units]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class EnergyExtra:
    """A RunExtra: NVML energy over plain steps of each run, into ``run.energy``."""

    def __init__(self, nv: nvml.Nvml, index: int, cfg: EnergyConfig | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.nv = nv
        self.index = index
        self.cfg = cfg or EnergyConfig()
        self.clock = clock

    def _counter_mj(self) -> int:
        return self.nv.total_energy_mj(self.index)

    def _on_tick(self) -> tuple[float | None, int, float]:
        """Watch the counter change a few times: (mean time between changes or None,
        counter, time of the last change), so the window starts right on a tick."""
        deadline = self.clock() + self.cfg.tick_timeout_s
        last = self._counter_mj()
        changes: list[float] = []
        while len(changes) < self.cfg.tick_changes and self.clock() < deadline:
            time.sleep(self.cfg.poll_s)
            value = self._counter_mj()
            if value != last:
                changes.append(self.clock())
                last = value
        tick_s = (changes[-1] - changes[0]) / (len(changes) - 1) if len(changes) >= 2 else None
        return tick_s, last, changes[-1] if changes else self.clock()

    def _run_window(self, ctx: RunContext, t0: float, tick_s: float | None) -> int:
        """Plain steps until the window is long enough (host time; the GPU only lags behind)."""
        window_s = max(self.cfg.window_s, self.cfg.ticks_per_window * (tick_s or 0.0))
        steps = 0
        while steps < self.cfg.min_steps or (
                self.clock() - t0 < window_s and steps < self.cfg.max_steps):
            ctx.train_step()
            steps += 1
        return steps

    def measure(self, ctx: RunContext) -> EnergyReading:
        device = ctx.work.device
        for _ in range(self.cfg.warmup_steps):
            ctx.train_step()
        _sync(device)
        tick_s, start_mj, t0 = self._on_tick()
        steps = self._run_window(ctx, t0, tick_s)
        _sync(device)
        end_mj, t1 = self._counter_mj(), self.clock()
        reading = EnergyReading(steps, t1 - t0, (end_mj - start_mj) / 1000, tick_s)
        reading.warnings = self._warnings(reading, end_mj - start_mj)
        return reading

    def _warnings(self, r: EnergyReading, delta_mj: int) -> list[str]:
        out = []
        if r.counter_tick_s is None:
            out.append(f"the energy counter did not change twice within {self.cfg.tick_timeout_s:g} s "
                       "before the window; its resolution is unknown")
        elif r.resolution is not None and r.resolution > self.cfg.max_resolution:
            out.append(f"window of {r.window_s:.3f} s is only {r.window_s / r.counter_tick_s:.1f} "
                       f"counter ticks of {r.counter_tick_s * 1000:.1f} ms: ±{r.resolution:.0%} at best; "
                       "allow more steps for a usable reading")
        if delta_mj <= 0:
            out.append("the energy counter did not advance over the window: no reading")
        return out

    def after_run(self, ctx: RunContext, run: Run) -> None:
        reading = self.measure(ctx)
        run.energy = reading.section(self.index)
        for text in reading.warnings:
            run.warn("energy", text)
        for unit, joules in zip(run.units, unit_estimates_j(run, reading.energy_per_step_j)):
            unit.energy_estimate_j = joules


def energy_extras(enabled: bool, device: str, say: Callable[[str], None] = say) -> list[EnergyExtra]:
    """The ``--energy`` option: an EnergyExtra on a CUDA device with NVML, else one line why not."""
    if not enabled:
        return []
    dev = torch.device(device)
    if dev.type != "cuda":
        say("--energy: NVML measures NVIDIA GPUs and this profile runs on the CPU; "
            "profiling without energy")
        return []
    try:
        nv = nvml.open_nvml()
    except nvml.NvmlUnavailable as exc:
        say(f"--energy: {exc}; profiling without energy")
        return []
    index = nvml.nvml_index(nv, nvml.cuda_uuid(dev), dev.index or 0)
    try:
        nv.total_energy_mj(index)
    except nvml.NvmlError as exc:
        say(f"--energy: this GPU has no total-energy counter ({exc}); profiling without energy")
        return []
    return [EnergyExtra(nv, index)]
