"""Launch-bound detection in eager mode: host stamps beside the GPU's (docs/design.md §3).

Each mark is stamped twice: a CUDA event (when the GPU reached it) and
``perf_counter_ns`` (when the host recorded it). Both are taken from the step's
first mark, which the GPU reaches at once: the step starts after a synchronize,
with an empty queue. The GPU's lag behind the host at mark k is g_k − h_k; it is
never negative beyond the stamps' own error. An interval whose closing mark the
GPU reached within ``LAUNCH_SLACK_MS`` of the host recording it was paced by the
host: the queue had run dry, so the GPU waited for launches, and its GPU time is
host time. A unit is launch-bound when most of its GPU time (median over the
measured steps) lies in such intervals. The run's GPU-wait share is the share of
the step's GPU time in host-paced intervals (an upper bound of the time the GPU
sat idle; ``--graph`` gives the GPU-true figures).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from .document import LaunchSection, UnitLaunch
from .marks import Label
from .stats import Stats

LAUNCH_SLACK_MS = 0.05
BOUND_SHARE = 0.5  # a unit's GPU time in host-paced intervals above this share: launch-bound

RULE = (f"an interval is host-paced when the GPU reached its closing mark within {LAUNCH_SLACK_MS} ms "
        f"of the host recording it (the queue was empty); a unit is launch-bound when over "
        f"{BOUND_SHARE:.0%} of its GPU time is host-paced (median over steps)")


@dataclass
class StepLaunch:
    """One step's host and host-paced GPU time per label, and the step's paced share."""

    host_ms: dict[Label, float]
    gpu_ms: dict[Label, float]
    paced_ms: dict[Label, float]
    paced_share: float


def analyse_step(gpu: Sequence[tuple[Label, float]], host: Sequence[float],
                 slack_ms: float = LAUNCH_SLACK_MS) -> StepLaunch:
    """``gpu``: the step's marks, ms from its first (GPU clock); ``host``: the host stamps beside them."""
    if len(gpu) != len(host):
        raise ValueError(f"{len(gpu)} GPU marks but {len(host)} host stamps")
    host_ms: dict[Label, float] = {}
    gpu_ms: dict[Label, float] = {}
    paced_ms: dict[Label, float] = {}
    for k, ((label, g0), (_, g1)) in enumerate(zip(gpu, gpu[1:])):
        g = g1 - g0
        host_ms[label] = host_ms.get(label, 0.0) + host[k + 1] - host[k]
        gpu_ms[label] = gpu_ms.get(label, 0.0) + g
        paced = g1 - host[k + 1] <= slack_ms
        paced_ms[label] = paced_ms.get(label, 0.0) + (g if paced else 0.0)
    total = gpu[-1][1] - gpu[0][1] if gpu else 0.0
    return StepLaunch(host_ms, gpu_ms, paced_ms, sum(paced_ms.values()) / total if total > 0 else 0.0)


def launch_section(steps: Sequence[StepLaunch], n_units: int) -> LaunchSection:
    units = [_unit(steps, i) for i in range(1, n_units + 1)]
    return LaunchSection(slack_ms=LAUNCH_SLACK_MS, rule=RULE,
                         gpu_wait_share=Stats([s.paced_share for s in steps]), units=units)


def _unit(steps: Sequence[StepLaunch], index: int) -> UnitLaunch:
    fwd, bwd = Label.fwd(index), Label.bwd(index)
    return UnitLaunch(
        index=index,
        fwd_host_ms=Stats([s.host_ms.get(fwd, 0.0) for s in steps]),
        bwd_host_ms=Stats([s.host_ms.get(bwd, 0.0) for s in steps]),
        fwd_launch_bound=_bound(steps, fwd),
        bwd_launch_bound=_bound(steps, bwd),
    )


def _bound(steps: Sequence[StepLaunch], label: Label) -> bool:
    shares = [s.paced_ms[label] / s.gpu_ms[label] for s in steps if s.gpu_ms.get(label, 0.0) > 0]
    return bool(shares) and statistics.median(shares) > BOUND_SHARE
