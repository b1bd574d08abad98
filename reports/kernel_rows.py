"""The ``--kernels`` figures of a run document as plain rows for the report (HTML, JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tlprof.document import Ceilings, RunDocument


@dataclass
class KernelRow:
    """One unit's pass (forward or backward) against the roofline."""

    run: str
    index: int
    name: str
    direction: str  # fwd | bwd
    flops: int
    bytes: int
    intensity: float | None  # FLOP/byte
    achieved_tflops: float | None
    pct_of_roof: float | None
    bound: str | None  # compute | memory
    measured_ms: float
    kernel_ms: float | None


@dataclass
class KernelsSummary:
    ceilings: Ceilings | None
    precision: str | None
    rows: list[KernelRow] = field(default_factory=list)
    agreement: dict[str, float | None] = field(default_factory=dict)  # run -> kernel sum / measured


def kernels_summary(doc: RunDocument) -> KernelsSummary | None:
    """None when no run of the document was profiled with ``--kernels``."""
    runs = {name: run for name, run in doc.runs.items() if run.kernels is not None}
    if not runs:
        return None
    first = next(iter(runs.values())).kernels
    out = KernelsSummary(first.ceilings, doc.meta.precision)
    for name, run in runs.items():
        out.agreement[name] = run.kernels.kernel_agreement
        for info, u in zip(doc.units, run.units):
            k = u.kernels
            if k is None:
                continue
            for direction, ms in (("fwd", u.fwd_ms.median), ("bwd", u.bwd_ms.median)):
                flops = getattr(k, f"flops_{direction}")
                if not flops and direction == "bwd":
                    continue
                roof = (k.roofline or {}).get(direction) or {}
                out.rows.append(KernelRow(
                    run=name, index=u.index, name=info.name, direction=direction, flops=flops,
                    bytes=getattr(k, f"bytes_{direction}"), intensity=getattr(k, f"intensity_{direction}"),
                    achieved_tflops=roof.get("achieved_tflops"), pct_of_roof=roof.get("pct_of_roof"),
                    bound=roof.get("bound"), measured_ms=ms, kernel_ms=getattr(k, f"kernel_{direction}_ms")))
    return out
