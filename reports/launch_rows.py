"""The ``launch`` figures of a run document as plain rows for the report (docs/design.md §3).

Per unit of each run with a ``launch`` section: the GPU's time (``fwd_ms``/``bwd_ms`` medians) beside
the host's, the host-paced flags, and, where ``--kernels`` stored per-unit kernel sums, those sums and
the "by kernels" flags. Per run: the GPU-wait share (host-paced, an upper bound of the GPU's idle
time) and the kernel-busy share, Σ kernel ms / Σ GPU ms over the units' passes with kernel sums: how
much of the units' GPU time the GPU ran kernels. Derived from the document alone; never measures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tlprof.document import Run, RunDocument, UnitKernels
from tlprof.launch import BOUND_SHARE

KERNEL_BUSY_MIN = 1 - BOUND_SHARE  # a pass whose kernel sum is under this share of its GPU time idled most
KERNEL_MIN_GPU_MS = 0.05  # shorter passes (a replayed frozen unit's) are too short to call
KERNEL_RULE = (f"a pass of {KERNEL_MIN_GPU_MS} ms or more is launch-bound by kernels when its kernel sum "
               f"(--kernels) is under {KERNEL_BUSY_MIN:.0%} of its GPU time: the GPU ran no kernel for "
               f"most of it")
PASSES = ("fwd", "bwd")


@dataclass
class LaunchRow:
    """One unit of one run: GPU and host ms per pass (medians), and why it is launch-bound."""

    run: str
    index: int
    name: str
    stage: str
    block: str
    gpu_fwd_ms: float
    host_fwd_ms: float
    gpu_bwd_ms: float
    host_bwd_ms: float
    fwd_launch_bound: bool  # host-paced over half its GPU time (tlprof.launch)
    bwd_launch_bound: bool
    kernel_fwd_ms: float | None = None  # None: no kernel sum for the pass
    kernel_bwd_ms: float | None = None
    fwd_kernel_bound: bool | None = None  # kernel sum < KERNEL_BUSY_MIN × GPU time; None: no kernel sum
    bwd_kernel_bound: bool | None = None

    @property
    def flagged(self) -> bool:
        """Launch-bound in either pass, by host pacing or by kernels: a row with something to say."""
        return bool(self.fwd_launch_bound or self.bwd_launch_bound or self.fwd_kernel_bound
                    or self.bwd_kernel_bound)

    def passes(self, kind: str) -> list[str]:
        """The passes flagged ``host`` (host-paced) or ``kernels`` (by kernels)."""
        suffix = "launch_bound" if kind == "host" else "kernel_bound"
        return [p for p in PASSES if getattr(self, f"{p}_{suffix}")]


@dataclass
class LaunchRun:
    """One run's launch figures: its rule, GPU-wait share, kernel-busy share and unit rows."""

    run: str
    rule: str  # LaunchSection.rule: when an interval is host-paced and a unit launch-bound
    slack_ms: float
    gpu_wait_share: float  # median over steps
    gpu_wait_iqr: float
    launch_bound_units: int  # host-paced in either pass
    units: int
    kernels: bool = False  # the run has per-unit kernel sums
    kernel_busy_share: float | None = None  # Σ kernel ms / Σ GPU ms, passes with kernel sums
    kernel_ms: float | None = None  # Σ kernel ms over those passes
    kernel_gpu_ms: float | None = None  # Σ GPU ms (medians) over the same passes
    kernel_bound_units: int | None = None  # launch-bound by kernels in either pass
    rows: list[LaunchRow] = field(default_factory=list)

    @property
    def flagged(self) -> list[LaunchRow]:
        return [r for r in self.rows if r.flagged]


@dataclass
class LaunchSummary:
    runs: list[LaunchRun] = field(default_factory=list)
    kernel_rule: str = KERNEL_RULE

    @property
    def kernels(self) -> bool:
        return any(r.kernels for r in self.runs)


def _kernel_bound(kernel_ms: float | None, gpu_ms: float) -> bool | None:
    if kernel_ms is None:
        return None
    return gpu_ms >= KERNEL_MIN_GPU_MS and kernel_ms < KERNEL_BUSY_MIN * gpu_ms


def launch_run(doc: RunDocument, name: str, run: Run) -> LaunchRun:
    """One run's rows; the run must have a ``launch`` section."""
    launch = run.launch
    host = {u.index: u for u in launch.units}
    rows, kernel_ms, kernel_gpu_ms = [], 0.0, 0.0
    for info, u in zip(doc.units, run.units):
        k = u.kernels or UnitKernels()
        h = host.get(u.index)
        gpu = {"fwd": u.fwd_ms.median, "bwd": u.bwd_ms.median}
        sums = {"fwd": k.kernel_fwd_ms, "bwd": k.kernel_bwd_ms}
        for p in PASSES:
            if sums[p] is not None:
                kernel_ms += sums[p]
                kernel_gpu_ms += gpu[p]
        rows.append(LaunchRow(
            run=name, index=u.index, name=info.name, stage=info.stage, block=info.block,
            gpu_fwd_ms=gpu["fwd"], host_fwd_ms=h.fwd_host_ms.median if h else float("nan"),
            gpu_bwd_ms=gpu["bwd"], host_bwd_ms=h.bwd_host_ms.median if h else float("nan"),
            fwd_launch_bound=bool(h and h.fwd_launch_bound), bwd_launch_bound=bool(h and h.bwd_launch_bound),
            kernel_fwd_ms=sums["fwd"], kernel_bwd_ms=sums["bwd"],
            fwd_kernel_bound=_kernel_bound(sums["fwd"], gpu["fwd"]),
            bwd_kernel_bound=_kernel_bound(sums["bwd"], gpu["bwd"])))
    kernels = any(r.kernel_fwd_ms is not None or r.kernel_bwd_ms is not None for r in rows)
    return LaunchRun(
        run=name, rule=launch.rule, slack_ms=launch.slack_ms,
        gpu_wait_share=launch.gpu_wait_share.median, gpu_wait_iqr=launch.gpu_wait_share.iqr,
        launch_bound_units=sum(bool(r.passes("host")) for r in rows), units=len(rows),
        kernels=kernels,
        kernel_busy_share=kernel_ms / kernel_gpu_ms if kernels and kernel_gpu_ms > 0 else None,
        kernel_ms=kernel_ms if kernels else None, kernel_gpu_ms=kernel_gpu_ms if kernels else None,
        kernel_bound_units=sum(bool(r.passes("kernels")) for r in rows) if kernels else None,
        rows=rows)


def launch_summary(doc: RunDocument) -> LaunchSummary | None:
    """None when no run of the document has a ``launch`` section (CPU runs, graphs, older documents)."""
    runs = [launch_run(doc, name, run) for name, run in doc.runs.items() if run.launch is not None]
    return LaunchSummary(runs) if runs else None


# -- rollups for the CSV's block and stage rows ---------------------------------------------


@dataclass
class LaunchGroup:
    """Units of one run rolled up (a block or stage): ms summed, flags counted."""

    host_fwd_ms: float
    host_bwd_ms: float
    fwd_launch_bound: int  # units whose forward is host-paced
    bwd_launch_bound: int
    kernel_fwd_ms: float | None  # None when a member has no kernel sum for the pass
    kernel_bwd_ms: float | None
    fwd_kernel_bound: int | None
    bwd_kernel_bound: int | None


def opt_sum(values: list[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else sum(values)  # type: ignore[arg-type]


def _opt_count(values: list[bool | None]) -> int | None:
    return None if not values or any(v is None for v in values) else sum(bool(v) for v in values)


def launch_groups(run: LaunchRun, key: str) -> dict[str | int, LaunchGroup]:
    """The run's rows by ``key`` (``index`` for units, ``block`` or ``stage``)."""
    groups: dict[str | int, list[LaunchRow]] = {}
    for r in run.rows:
        groups.setdefault(getattr(r, key), []).append(r)
    return {name: LaunchGroup(
        host_fwd_ms=sum(r.host_fwd_ms for r in rows), host_bwd_ms=sum(r.host_bwd_ms for r in rows),
        fwd_launch_bound=sum(r.fwd_launch_bound for r in rows),
        bwd_launch_bound=sum(r.bwd_launch_bound for r in rows),
        kernel_fwd_ms=opt_sum([r.kernel_fwd_ms for r in rows]),
        kernel_bwd_ms=opt_sum([r.kernel_bwd_ms for r in rows]),
        fwd_kernel_bound=_opt_count([r.fwd_kernel_bound for r in rows]),
        bwd_kernel_bound=_opt_count([r.bwd_kernel_bound for r in rows]),
    ) for name, rows in groups.items()}
