"""``tlprof kernels`` and ``tlprof ceilings``: rich views of what ``--kernels`` stored.

Renderers read a ``RunDocument`` (or ``Ceilings``) and never measure.
"""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tlprof.document import Ceilings, Run, RunDocument, UnitKernels, UnitRun
from tlprof.errors import TlprofError
from tlprof.reports.text import fmt_bytes

BYTES_NOTE = (
    "bytes: a lower bound on traffic, each tensor once: forward reads parameters and input "
    "and writes output; backward reads the output's gradient and the saved tensors, writes "
    "weight gradients and, where the input needs one, reads parameters and writes its "
    "gradient. Intermediates are left out, so intensity errs high: 'memory' is certain, "
    "'compute' is not. FLOPs = 2 × multiply-adds of matmuls and convolutions "
    "(torch.utils.flop_counter)."
)


def fmt_si(n: float | None, unit: str = "") -> str:
    if n is None:
        return "-"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            v = n / scale
            return f"{v:.0f}{prefix}{unit}" if v >= 100 else f"{v:.3g}{prefix}{unit}"
    return f"{n:.0f}{unit}"


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def ceilings_table(c: Ceilings) -> Table:
    table = Table(title=f"Ceilings on {c.device} ({c.device_name}, {c.threads} CPU threads)",
                  box=box.SIMPLE_HEAD)
    table.add_column("measure")
    table.add_column("median", justify="right")
    table.add_column("size", justify="right")
    for precision, tflops in c.matmul_tflops.items():
        n = c.matmul_sizes.get(precision, c.matmul_n)
        table.add_row(f"matmul {precision}", f"{tflops:.3f} TFLOP/s", f"{n}³")
    table.add_row("device copy", f"{c.copy_gbps:.1f} GB/s",
                  f"{c.copy_bytes / 2**20:.0f} MiB, read + write")
    return table


def _kernels(u: UnitRun) -> UnitKernels:
    return u.kernels or UnitKernels()


def _has_backward(u: UnitRun) -> bool:
    k = _kernels(u)
    return bool(k.flops_bwd or k.kernel_bwd_ms or u.bwd_ms.median > 0)


def _pass_row(u: UnitRun, p: str) -> list[str]:
    k = _kernels(u)
    roof = (k.roofline or {}).get(p)
    ms = (u.fwd_ms if p == "fwd" else u.bwd_ms).median
    return [
        p,
        fmt_si(getattr(k, f"flops_{p}")),
        fmt_bytes(getattr(k, f"bytes_{p}")),
        _num(getattr(k, f"intensity_{p}"), ".0f"),
        _num(roof and roof["achieved_tflops"], ".3g"),
        f"{roof['pct_of_roof']:.0f}% {roof['bound'][:3]}" if roof else "-",
        f"{ms:.2f}",
        _num(getattr(k, f"kernel_{p}_ms"), ".2f"),
    ]


def _short(name: str, width: int = 48) -> str:
    name = name.removeprefix("void ")
    return name if len(name) <= width else name[: width - 1] + "…"


COLUMNS = ("", "FLOPs", "bytes", "F/B", "TF/s", "roof", "ms", "kern")


def _table(title: str) -> Table:
    return Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0, 0, 1),
                 title_justify="left")


def run_table(profile: RunDocument, name: str, run: Run) -> Table:
    table = _table(f"{name} run per unit (F/B: FLOP/byte; TF/s: achieved TFLOP/s; roof: % of "
                   "the roof at F/B, com/mem-bound; ms: measured median; kern: kernel sum; "
                   "agree: kern/ms)")
    table.add_column("#", justify="right")
    table.add_column("unit", no_wrap=True)
    for col in COLUMNS:
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("agree", justify="right")
    for unit, u in zip(profile.units, run.units):
        table.add_row(str(u.index), unit.name, *_pass_row(u, "fwd"),
                      _num(_kernels(u).kernel_agreement, ".2f"))
        if _has_backward(u):
            table.add_row("", "", *_pass_row(u, "bwd"), "")
    return table


def top_kernels_table(profile: RunDocument, name: str, run: Run, top: int) -> Table:
    table = _table(f"{name} run, top {top} kernels/ops per unit and pass (×count, total ms)")
    table.add_column("#", justify="right")
    table.add_column("unit", no_wrap=True)
    table.add_column("")
    table.add_column("kernels", overflow="fold")
    for unit, u in zip(profile.units, run.units):
        for p in ("fwd", "bwd"):
            kernels = getattr(_kernels(u), f"kernels_{p}")[:top]
            if kernels:
                text = "; ".join(f"{_short(k['name'])} ×{k['count']} {k['total_ms']:.2f}"
                                 for k in kernels)
                first = p == "fwd" or not _kernels(u).kernels_fwd
                table.add_row(str(u.index) if first else "", unit.name if first else "", p, text)
    return table


def run_summary(name: str, run: Run) -> Text:
    total_fwd = sum(_kernels(u).flops_fwd for u in run.units)
    total_bwd = sum(_kernels(u).flops_bwd for u in run.units)
    text = Text(f"{name}: units {fmt_si(total_fwd)}FLOP forward, {fmt_si(total_bwd)}FLOP backward")
    k = run.kernels
    if k is not None and k.kernel_agreement is not None:
        text.append(f"; kernel agreement {k.kernel_agreement:.3f} ({k.source}: "
                    f"{k.kernel_units_ms or 0:.2f} ms vs measured {k.measured_units_ms or 0:.2f} ms)")
    for w in run.warnings:
        if w.part == "kernels":
            text.append(f"\n  warning: {w.text}", style="yellow")
    return text


def kernels_view(profile: RunDocument, top: int = 3, runs: list[str] | None = None) -> RenderableType:
    chosen = runs or list(profile.runs)
    missing = [r for r in chosen if r not in profile.runs]
    if missing:
        raise TlprofError(f"no run {missing[0]!r} in this document (it has {', '.join(profile.runs)})")
    if not any(profile.runs[r].kernels for r in chosen):
        raise TlprofError("this run document has no kernel data: profile with --kernels")
    parts: list[RenderableType] = []
    ceilings = next((profile.runs[r].kernels.ceilings for r in chosen if profile.runs[r].kernels), None)
    if ceilings:
        parts.append(ceilings_table(ceilings))
    for name in chosen:
        run = profile.runs[name]
        parts.append(run_table(profile, name, run))
        if top > 0 and run.units[0].kernels is not None:
            parts.append(top_kernels_table(profile, name, run, top))
        parts.append(run_summary(name, run))
    parts.append(Text(BYTES_NOTE, style="dim"))
    return Group(*parts)
