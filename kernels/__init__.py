"""tlprof.kernels: below the layer — FLOPs and bytes per unit, device ceilings, roofline,
the per-unit kernel breakdown that cross-checks the timings, and the step trace."""

from __future__ import annotations

from .ceilings import Ceilings, measure_ceilings
from .extra import KernelsExtra
from .flops import StepFlops, count_flops, forward_flops
from .trace import chrome_trace, write_trace

__all__ = [
    "Ceilings", "KernelsExtra", "StepFlops", "chrome_trace", "count_flops", "forward_flops",
    "measure_ceilings", "write_trace",
]
