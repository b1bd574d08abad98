"""Marks and their attribution (docs/design.md §3). Torch-free.

A step is a sequence of marks; each mark says what *begins* at it. The time
from one mark to the next is charged to what began at the first, so units and
phases add up to the step exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .errors import TlprofError

PHASES = ("zero_grad", "loss_fwd", "loss_bwd", "optimizer", "other")
UNIT_KINDS = ("fwd", "bwd")


class Label(NamedTuple):
    """What begins at a mark: ``fwd``/``bwd`` of unit ``key`` (1-based), a ``phase``, or the ``end``.

    A tuple, so ``Label("fwd", 3) == ("fwd", 3)``; its one text form is ``text``.
    """

    kind: str
    key: int | str

    @classmethod
    def fwd(cls, index: int) -> Label:
        return cls("fwd", index)

    @classmethod
    def bwd(cls, index: int) -> Label:
        return cls("bwd", index)

    @classmethod
    def phase(cls, name: str) -> Label:
        """The phase's label, one object per phase; an unknown name is refused."""
        label = PHASE_LABELS.get(name)
        if label is None:
            raise TlprofError(f"unknown phase {name!r}; the phases are {', '.join(PHASES)}")
        return label

    @property
    def is_unit(self) -> bool:
        return self.kind in UNIT_KINDS

    def name(self, names: Mapping[int, str] | None = None) -> str:
        """The unit's name (``#i`` when ``names`` lacks it, ``i`` without names), or the phase's."""
        if self.is_unit:
            return str(self.key) if names is None else names.get(self.key, f"#{self.key}")  # type: ignore[arg-type]
        return str(self.key) if self.kind == "phase" else self.kind

    def text(self, names: Mapping[int, str] | None = None, sep: str = ":") -> str:
        """``fwd:layer1.0.conv1`` (``fwd:2`` without names), ``loss_bwd``, ``end``."""
        return f"{self.kind}{sep}{self.name(names)}" if self.is_unit else self.name()

    @classmethod
    def parse(cls, text: str, sep: str = ":") -> Label:
        """The inverse of ``text()`` without names."""
        kind, found, key = text.partition(sep)
        if found and kind in UNIT_KINDS:
            return cls(kind, int(key))
        if text == "end":
            return END
        return cls.phase(text)


PHASE_LABELS = {p: Label("phase", p) for p in PHASES}
END = Label("end", "")
OTHER = PHASE_LABELS["other"]



@dataclass
class StepSample:
    """One measured step, in milliseconds."""

    step_ms: float
    fwd_ms: list[float]
    bwd_ms: list[float]
    phases_ms: dict[str, float]

    def accounted_ms(self) -> float:
        return sum(self.fwd_ms) + sum(self.bwd_ms) + sum(self.phases_ms.values())


@dataclass
class Attributed:
    """Any quantity (ms, FLOPs, bytes) charged per unit and pass, and per phase."""

    fwd: list[float]
    bwd: list[float]
    phases: dict[str, float]


def charge(amounts: Mapping[Label, float] | Sequence[tuple[Label, float]], n_units: int) -> Attributed:
    """Sum amounts by label into per-unit forward, backward, and per-phase totals."""
    fwd, bwd = [0.0] * n_units, [0.0] * n_units
    phases = dict.fromkeys(PHASES, 0.0)
    items = amounts.items() if isinstance(amounts, Mapping) else amounts
    for label, amount in items:
        kind, key = label
        if kind == "fwd":
            fwd[key - 1] += amount
        elif kind == "bwd":
            bwd[key - 1] += amount
        elif kind == "phase":
            phases[key] = phases.get(key, 0.0) + amount
        else:
            raise ValueError(f"mark after the end of the step: {label}")
    return Attributed(fwd, bwd, phases)


def attribute(marks: list[tuple[Label, float]], n_units: int) -> StepSample:
    """Charge each interval between consecutive marks (times in ms) to what began at its start."""
    if len(marks) < 2 or marks[-1][0] != END:
        raise ValueError("a step needs a start mark and an end mark")
    spans = [(label, t1 - t0) for (label, t0), (_, t1) in zip(marks, marks[1:])]
    a = charge(spans, n_units)
    return StepSample(marks[-1][1] - marks[0][1], a.fwd, a.bwd, a.phases)
