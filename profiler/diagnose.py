"""Why a trainable unit has no backward mark, and which parameters a gradient really reached.

A trainable unit's backward can be unmarked for two reasons, which call for
different fixes:

- **not in the loss**: its output does not reach the loss (a second head, an
  auxiliary classifier, an output the loss does not use), so no gradient reaches
  its parameters and it does no backward work at all;
- **only feeds a merge**: its output is summed or concatenated with another
  branch's, so the gradient of its output is the merge's and its backward time
  is charged to the unit whose backward was running.

Which parameters got a gradient is watched on the memory step (a hook per
parameter, off the timed steps).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from .document import Run
from .memory import SavedBytes, unit_grad_bytes
from .units import Unit

NOT_IN_LOSS = "not in the loss"
MERGE = "only feeds a merge"


@dataclass
class GradientWatch:
    """Records which parameters receive a gradient while recording."""

    params: list[nn.Parameter]
    received: set[int] = field(default_factory=set)
    watched: bool = False

    @contextmanager
    def recording(self) -> Iterator[GradientWatch]:
        handles = [p.register_hook(self._seen(p)) for p in self.params if p.requires_grad]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()
            self.watched = True

    def _seen(self, p: nn.Parameter):
        def hook(grad: torch.Tensor) -> None:
            self.received.add(id(p))

        return hook

    def got_gradient(self, p: nn.Parameter) -> bool:
        return id(p) in self.received


def unmarked_cause(unit: Unit, grads: GradientWatch | None) -> str:
    """Why a trainable unit with no backward mark has none."""
    trainable = [p for p in unit.params if p.requires_grad]
    if grads is not None and grads.watched and trainable and not any(map(grads.got_gradient, trainable)):
        return NOT_IN_LOSS
    return MERGE


def backward_warnings(units: Sequence[Unit], unmarked: Sequence[int],
                      grads: GradientWatch | None) -> list[str]:
    """One warning per cause, naming the units (``unmarked``: indices of trainable units with no
    backward mark)."""
    by_cause: dict[str, list[str]] = {}
    for unit in units:
        if unit.index in unmarked:
            by_cause.setdefault(unmarked_cause(unit, grads), []).append(unit.name)
    warnings = []
    if NOT_IN_LOSS in by_cause:
        warnings.append(
            f"trainable unit(s) {', '.join(by_cause[NOT_IN_LOSS])} are not in the loss: their "
            "output does not reach it, so they get no gradient and do no backward work (choose the "
            "output the loss uses with --output, or give the model's own loss)")
    if MERGE in by_cause:
        warnings.append(
            f"no backward mark for trainable unit(s) {', '.join(by_cause[MERGE])}: their output "
            "only feeds a merge (concat, sum) of branches, so their backward time is charged to "
            "the unit whose backward was running")
    return warnings


def annotate_run(run: Run, units: Sequence[Unit], grads: GradientWatch | None,
                 saved: SavedBytes | None) -> None:
    """Gradient bytes only where a gradient arrived, autocast's weight casts per unit, and the
    warnings for trainable units with no backward mark."""
    if grads is not None and grads.watched:
        for unit, record in zip(units, run.units):
            record.grad_bytes = unit_grad_bytes(unit, grads.got_gradient)
    if saved is not None:
        for record, cast in zip(run.units, saved.unit_cast_bytes(len(units))):
            record.weight_cast_bytes = cast
        run.memory.weight_cast_other_bytes = saved.other_cast_bytes()
    unmarked = [u.index for u, r in zip(units, run.units) if u.trainable() and r.bwd_ms.median == 0]
    for text in backward_warnings(units, unmarked, grads):
        run.warn("marks", text)
