"""The profile command's terminal view: a per-unit table and a summary, as rich renderables.

Renderers read a ``Profile`` and never measure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tlprof.session import Profile, Run, UnitRun
from tlprof.stats import Stats


def fmt_ms(s: Stats) -> str:
    flag = "*" if s.noisy else ""
    return f"{s.median:.2f}{flag}"


def fmt_bytes(n: float | None) -> str:
    """Binary units, compact: 0, 512B, 1.5K, 788K, 3.1M, 2.0G."""
    if n is None:
        return "-"
    if n == 0:
        return "0"
    for unit in ("B", "K", "M", "G"):
        if abs(n) < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" or abs(n) >= 100 else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}G"


def fmt_count(n: int) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    return f"{n / 1e3:.1f}K" if n >= 1e4 else str(n)


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[UnitRun], str]


RUN_COLUMNS = (
    Column("fwd\nms", lambda u: fmt_ms(u.fwd_ms)),
    Column("bwd\nms", lambda u: fmt_ms(u.bwd_ms)),
    Column("saved", lambda u: fmt_bytes(u.saved_bytes)),
)


TABLE_RUNS_LEFT_OUT = ("cached",)  # its frozen units replay cached outputs: see the summary


def unit_table(profile: Profile) -> Table:
    runs = {n: r for n, r in profile.runs.items() if n not in TABLE_RUNS_LEFT_OUT}
    table = Table(title="Per unit (median over measured steps; * = IQR > 10% of median)",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0, 0, 1))
    table.add_column("#", justify="right")
    table.add_column("unit", no_wrap=True)
    table.add_column("params", justify="right")
    for name in runs:
        for col in RUN_COLUMNS:
            table.add_column(f"{name}\n{col.header}", justify="right")
    table.add_column("train", justify="center")
    frozen_run = profile.runs.get("frozen") or profile.runs.get("cached")
    for i, unit in enumerate(profile.units):
        cells = [str(unit["index"]), unit["name"], fmt_count(unit["params"])]
        for run in runs.values():
            cells += [col.value(run.units[i]) for col in RUN_COLUMNS]
        trainable = frozen_run is None or unit["index"] > frozen_run.freeze
        cells.append("yes" if trainable else "no")
        table.add_row(*cells)
    return table


def _stat(s: Stats) -> str:
    return f"{s.median:.2f} ± {s.iqr:.2f}" + (" *" if s.noisy else "")


def summary_table(profile: Profile) -> Table:
    table = Table(title="Step summary (ms: median ± IQR)")
    table.add_column("")
    for name in profile.runs:
        table.add_column(name, justify="right")
    runs = list(profile.runs.values())

    def row(label: str, value: Callable[[Run], str]) -> None:
        table.add_row(label, *[value(r) for r in runs])

    row("step", lambda r: _stat(r.step_ms))
    row("  units forward", lambda r: f"{sum(u.fwd_ms.median for u in r.units):.2f}")
    row("  units backward", lambda r: f"{sum(u.bwd_ms.median for u in r.units):.2f}")
    for key in runs[0].phases:
        row(f"  {key.removesuffix('_ms').replace('_', ' ')}", lambda r, k=key: _stat(r.phases[k]))
    row("plain step (no hooks)", lambda r: _stat(r.plain_step_ms))
    row("instrumented / plain", lambda r: f"{r.overhead_ratio:.3f}")
    row("saved activations", lambda r: fmt_bytes(r.memory.get("saved_bytes_total")))
    row("grad + optimizer state", lambda r: fmt_bytes(
        r.memory.get("grad_bytes_units_total", 0) + r.memory.get("optimizer_state_bytes_units_total", 0)))
    row("peak allocated", lambda r: fmt_bytes(r.memory.get("peak_allocated_bytes")))
    return table


def ratio_line(profile: Profile) -> Text | None:
    full, frozen = profile.runs.get("full"), profile.runs.get("frozen")
    if not (full and frozen):
        return None
    n_units = len(profile.units)
    ratio = frozen.step_ms.median / full.step_ms.median
    paper = (n_units - frozen.freeze) / n_units
    return Text(
        f"frozen/full step time: {ratio:.3f} (measured) vs {paper:.3f} "
        f"= {n_units - frozen.freeze}/{n_units} (the paper's uniform-layer assumption)",
        style="bold",
    )


def header(profile: Profile) -> Text:
    m = profile.meta
    what = m.get("arch") or m.get("model", "model")
    shape = "×".join(str(d) for d in m.get("input_shape", []))
    return Text(
        f"tlprof {what} on {m.get('device')} ({m.get('device_name')}), batch {m.get('batch_size')}, "
        f"input {shape}, {m.get('precision')}, {m.get('optimizer')}, "
        f"{m.get('steps')} measured + {m.get('warmup')} warm-up steps per run"
    )


def profile_view(profile: Profile) -> RenderableType:
    parts: list[RenderableType] = [header(profile), unit_table(profile), summary_table(profile)]
    line = ratio_line(profile)
    if line is not None:
        parts.append(line)
    return Group(*parts)
