"""Marks and their attribution (DESIGN.md §3).

A step is a sequence of marks; each mark says what *begins* at it. The time
from one mark to the next is charged to what began at the first, so units and
phases add up to the step exactly.

Labels:
  ("fwd", i)        unit i's forward (its weight module's pre-hook)
  ("bwd", i)        unit i's backward (the gradient of what it produced is ready)
  ("phase", name)   a named phase, one of PHASES
  ("end", "")       the step's last mark
"""

from __future__ import annotations

from dataclasses import dataclass

Label = tuple[str, object]

PHASES = ("zero_grad", "loss_fwd", "loss_bwd", "optimizer", "other")
END: Label = ("end", "")
OTHER: Label = ("phase", "other")


@dataclass
class StepSample:
    """One measured step, in milliseconds."""

    step_ms: float
    fwd_ms: list[float]
    bwd_ms: list[float]
    phases_ms: dict[str, float]

    def accounted_ms(self) -> float:
        return sum(self.fwd_ms) + sum(self.bwd_ms) + sum(self.phases_ms.values())


def attribute(marks: list[tuple[Label, float]], n_units: int) -> StepSample:
    """Charge each interval between consecutive marks (times in ms) to what began at its start."""
    if len(marks) < 2 or marks[-1][0] != END:
        raise ValueError("a step needs a start mark and an end mark")
    fwd = [0.0] * n_units
    bwd = [0.0] * n_units
    phases = dict.fromkeys(PHASES, 0.0)
    for (label, t0), (_, t1) in zip(marks, marks[1:]):
        kind, key = label
        dt = t1 - t0
        if kind == "fwd":
            fwd[key - 1] += dt
        elif kind == "bwd":
            bwd[key - 1] += dt
        elif kind == "phase":
            phases[key] += dt
        else:
            raise ValueError(f"mark after the end of the step: {label}")
    return StepSample(marks[-1][1] - marks[0][1], fwd, bwd, phases)
