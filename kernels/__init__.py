"""tlprof.kernels: below the layer — FLOPs and bytes per unit, device ceilings, roofline, and
the per-unit kernel breakdown that cross-checks the timings. Names resolve on first use."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "Ceilings": "tlprof.document",
    "measure_ceilings": "tlprof.kernels.ceilings",
    "KernelsExtra": "tlprof.kernels.extra",
    "StepFlops": "tlprof.kernels.flops",
    "count_flops": "tlprof.kernels.flops",
    "forward_flops": "tlprof.kernels.flops",
}
__all__ = ["Ceilings", "KernelsExtra", "StepFlops", "count_flops", "forward_flops", "measure_ceilings"]

if TYPE_CHECKING:
    from tlprof.document import Ceilings
    from tlprof.kernels.ceilings import measure_ceilings
    from tlprof.kernels.extra import KernelsExtra
    from tlprof.kernels.flops import StepFlops, count_flops, forward_flops


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'tlprof.kernels' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
