"""Bytes per unit (a lower bound on memory traffic) and the roofline per unit (issue 4).

Bytes, per unit and pass, count only traffic the pass cannot avoid, each
tensor once:

- forward: read the parameters and the unit's input, write its output;
- backward (units that run one): read the gradient of the output (the output's
  size) and the saved tensors charged to the unit, write the weight gradients;
  and, where the unit's input needs a gradient, read the parameters and write
  the gradient of the input.

Intermediates inside a unit (BatchNorm and ReLU outputs, the shortcut), re-reads
and workspace are left out, so the true traffic is higher and the arithmetic
intensity FLOPs / bytes is an upper bound: a unit found memory-bound is surely
memory-bound; one found compute-bound may not be.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ceilings import Ceilings


@dataclass(frozen=True)
class UnitBytes:
    param_bytes: int
    grad_bytes: int  # trainable parameters' gradients
    saved_bytes: int
    act_in_bytes: int
    act_out_bytes: int
    input_requires_grad: bool

    @property
    def bytes_fwd(self) -> int:
        return self.param_bytes + self.act_in_bytes + self.act_out_bytes

    @property
    def bytes_bwd(self) -> int:
        if not (self.grad_bytes or self.input_requires_grad):
            return 0  # no backward runs through a frozen unit whose input needs no grad
        total = self.act_out_bytes + self.saved_bytes + self.grad_bytes
        if self.input_requires_grad:
            total += self.param_bytes + self.act_in_bytes
        return total


def intensity(flops: int, nbytes: int) -> float | None:
    return flops / nbytes if nbytes > 0 and flops > 0 else None


def roofline_point(flops: int, nbytes: int, ms: float, ceilings: Ceilings,
                   precision: str) -> dict | None:
    """Achieved rate against the roof at the unit's intensity; None where nothing was counted."""
    ai = intensity(flops, nbytes)
    if ai is None or ms <= 0:
        return None
    ceiling, peak = ceilings.peak_tflops(precision)
    memory_roof = ai * ceilings.copy_gbps * 1e9 / 1e12
    roof = min(peak, memory_roof)
    achieved = flops / (ms * 1e-3) / 1e12
    return {
        "achieved_tflops": achieved,
        "intensity": ai,
        "ceiling": ceiling,
        "roof_tflops": roof,
        "pct_of_roof": 100 * achieved / roof,
        "pct_of_peak": 100 * achieved / peak,
        "bound": "compute" if memory_roof >= peak else "memory",
    }
