"""``tlprof kernels`` and ``tlprof ceilings``: rich views of what ``--kernels`` stored.

Renderers read a ``Profile`` (or ``Ceilings``) and never measure.
"""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tlprof.errors import TlprofError
from tlprof.reports.profile_view import fmt_bytes
from tlprof.session import Profile, Run, UnitRun

from .ceilings import Ceilings

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


def _has_backward(u: UnitRun) -> bool:
    ex = u.extra
    return bool(ex.get("flops_bwd") or ex.get("kernel_bwd_ms") or u.bwd_ms.median > 0)


def _pass_row(u: UnitRun, p: str) -> list[str]:
    ex = u.extra
    roof = (ex.get("roofline") or {}).get(p)
    ms = (u.fwd_ms if p == "fwd" else u.bwd_ms).median
    return [
        p,
        fmt_si(ex.get(f"flops_{p}")),
        fmt_bytes(ex.get(f"bytes_{p}")),
        _num(ex.get(f"intensity_{p}"), ".0f"),
        _num(roof and roof["achieved_tflops"], ".3g"),
        f"{roof['pct_of_roof']:.0f}% {roof['bound'][:3]}" if roof else "-",
        f"{ms:.2f}",
        _num(ex.get(f"kernel_{p}_ms"), ".2f"),
    ]


def _short(name: str, width: int = 48) -> str:
    name = name.removeprefix("void ")
    return name if len(name) <= width else name[: width - 1] + "…"


COLUMNS = ("", "FLOPs", "bytes", "F/B", "TF/s", "roof", "ms", "kern")


def _table(title: str) -> Table:
    return Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0, 0, 1),
                 title_justify="left")


def run_table(profile: Profile, name: str, run: Run) -> Table:
    table = _table(f"{name} run per unit (F/B: FLOP/byte; TF/s: achieved TFLOP/s; roof: % of "
                   "the roof at F/B, com/mem-bound; ms: measured median; kern: kernel sum; "
                   "agree: kern/ms)")
    table.add_column("#", justify="right")
    table.add_column("unit", no_wrap=True)
    for col in COLUMNS:
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("agree", justify="right")
    for unit, u in zip(profile.units, run.units):
        table.add_row(str(u.index), unit["name"], *_pass_row(u, "fwd"),
                      _num(u.extra.get("kernel_agreement"), ".2f"))
        if _has_backward(u):
            table.add_row("", "", *_pass_row(u, "bwd"), "")
    return table


def top_kernels_table(profile: Profile, name: str, run: Run, top: int) -> Table:
    table = _table(f"{name} run, top {top} kernels/ops per unit and pass (×count, total ms)")
    table.add_column("#", justify="right")
    table.add_column("unit", no_wrap=True)
    table.add_column("")
    table.add_column("kernels", overflow="fold")
    for unit, u in zip(profile.units, run.units):
        for p in ("fwd", "bwd"):
            kernels = u.extra.get(f"kernels_{p}", [])[:top]
            if kernels:
                text = "; ".join(f"{_short(k['name'])} ×{k['count']} {k['total_ms']:.2f}"
                                 for k in kernels)
                first = p == "fwd" or not u.extra.get("kernels_fwd")
                table.add_row(str(u.index) if first else "", unit["name"] if first else "", p, text)
    return table


def run_summary(name: str, run: Run) -> Text:
    units = run.units
    k = run.extra.get("kernels", {})
    total_fwd = sum(u.extra.get("flops_fwd", 0) for u in units)
    total_bwd = sum(u.extra.get("flops_bwd", 0) for u in units)
    text = Text(f"{name}: units {fmt_si(total_fwd)}FLOP forward, {fmt_si(total_bwd)}FLOP backward")
    agreement = run.extra.get("kernel_agreement")
    if agreement is not None:
        text.append(f"; kernel agreement {agreement:.3f} ({k.get('source')}: "
                    f"{k.get('kernel_units_ms', 0):.2f} ms vs measured "
                    f"{k.get('measured_units_ms', 0):.2f} ms)")
    for w in k.get("warnings", []):
        text.append(f"\n  warning: {w}", style="yellow")
    return text


def kernels_view(profile: Profile, top: int = 3, runs: list[str] | None = None) -> RenderableType:
    chosen = runs or list(profile.runs)
    missing = [r for r in chosen if r not in profile.runs]
    if missing:
        raise TlprofError(f"no run {missing[0]!r} in this document (it has {', '.join(profile.runs)})")
    if not any("flops_fwd" in profile.runs[r].units[0].extra for r in chosen):
        raise TlprofError("this run document has no kernel data: profile with --kernels")
    parts: list[RenderableType] = []
    ceilings = next((profile.runs[r].extra.get("kernels", {}).get("ceilings") for r in chosen), None)
    if ceilings:
        parts.append(ceilings_table(Ceilings.from_dict(ceilings)))
    for name in chosen:
        run = profile.runs[name]
        parts.append(run_table(profile, name, run))
        if top > 0 and "kernels_fwd" in run.units[0].extra:
            parts.append(top_kernels_table(profile, name, run, top))
        parts.append(run_summary(name, run))
    parts.append(Text(BYTES_NOTE, style="dim"))
    return Group(*parts)
