"""The ``--kernels`` figures of a run document as plain rows for the report (HTML, JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tlprof.document import Ceilings, RunDocument, UnitKernels, UnitRun
from tlprof.kernels.precision import effective_precision


@dataclass
class KernelRow:
    """One unit's pass (forward or backward) against the roofline."""

    run: str
    index: int
    name: str
    direction: str  # fwd | bwd
    flops: int  # matmuls and convolutions
    flops_other: int | None  # BatchNorm, ReLU, pooling, add (docs/kernels.md); None in older documents
    bytes: int
    intensity: float | None  # FLOP/byte
    achieved_tflops: float | None
    roof_tflops: float | None
    pct_of_roof: float | None
    bound: str | None  # compute | memory
    measured_ms: float
    kernel_ms: float | None
    agreement: float | None = None  # the unit's kernel sum / measured time, on its forward row


@dataclass
class KernelsSummary:
    ceilings: Ceilings | None
    precision: str | None  # as profiled (meta.precision)
    ceiling_precision: str  # whose matmul peak the roofline uses (kernels.precision.effective_precision)
    rows: list[KernelRow] = field(default_factory=list)
    agreement: dict[str, float | None] = field(default_factory=dict)  # run -> kernel sum / measured


def has_backward(u: UnitRun) -> bool:
    k = u.kernels or UnitKernels()
    return bool(k.flops_bwd or k.flops_other_bwd or k.kernel_bwd_ms or u.bwd_ms.median > 0)


def pass_rows(run_name: str, index: int, name: str, u: UnitRun) -> list[KernelRow]:
    """The unit's forward, and its backward where one ran, against the roofline."""
    k = u.kernels or UnitKernels()
    rows = []
    for direction, ms in (("fwd", u.fwd_ms.median), ("bwd", u.bwd_ms.median)):
        if direction == "bwd" and not has_backward(u):
            continue
        roof = (k.roofline or {}).get(direction) or {}
        rows.append(KernelRow(
            run=run_name, index=index, name=name, direction=direction,
            flops=getattr(k, f"flops_{direction}"), flops_other=getattr(k, f"flops_other_{direction}"),
            bytes=getattr(k, f"bytes_{direction}"), intensity=getattr(k, f"intensity_{direction}"),
            achieved_tflops=roof.get("achieved_tflops"), roof_tflops=roof.get("roof_tflops"),
            pct_of_roof=roof.get("pct_of_roof"), bound=roof.get("bound"), measured_ms=ms,
            kernel_ms=getattr(k, f"kernel_{direction}_ms"),
            agreement=k.kernel_agreement if direction == "fwd" else None))
    return rows


def kernels_summary(doc: RunDocument) -> KernelsSummary | None:
    """None when no run of the document was profiled with ``--kernels``."""
    runs = {name: run for name, run in doc.runs.items() if run.kernels is not None}
    if not runs:
        return None
    first = next(iter(runs.values())).kernels
    meta = doc.meta
    out = KernelsSummary(first.ceilings, meta.precision,
                         effective_precision(meta.precision, meta.backend_flags, meta.device))
    for name, run in runs.items():
        out.agreement[name] = run.kernels.kernel_agreement
        for info, u in zip(doc.units, run.units):
            if u.kernels is not None:
                out.rows += pass_rows(name, u.index, info.name, u)
    return out
