"""The profile command's terminal view, as rich renderables: the per-unit table, the step
summary, the frozen/full ratio, then the report's cost model, verdicts, notes and warnings.

Renderers read a ``RunDocument`` and never measure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tlprof.document import Run, RunDocument, UnitRun
from tlprof.errors import TlprofError
from tlprof.reports.builder import Report, ReportOptions, build_report, frozen_summary, overhead_ci
from tlprof.reports.provenance import settings_text
from tlprof.reports.rich_view import (
    claims_section,
    cost_section,
    distributed_section,
    launch_section,
    notes_section,
    warnings_section,
)
from tlprof.reports.text import fmt_bytes, fmt_ratio, section_titles
from tlprof.reports.uncertainty import Interval, bounds_text
from tlprof.stats import Stats

# What tlprof profile shows of the report, numbered in this order.
PROFILE_SECTIONS = ("launch", "cost", "distributed", "claims")


def fmt_ms(s: Stats) -> str:
    flag = "*" if s.noisy else ""
    return f"{s.median:.2f}{flag}"


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


def unit_table(profile: RunDocument) -> Table:
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
        cells = [str(unit.index), unit.name, fmt_count(unit.params)]
        for run in runs.values():
            cells += [col.value(run.units[i]) for col in RUN_COLUMNS]
        trainable = frozen_run is None or unit.index > frozen_run.freeze
        cells.append("yes" if trainable else "no")
        table.add_row(*cells)
    return table


def _stat(s: Stats) -> str:
    return f"{s.median:.2f} ± {s.iqr:.2f}" + (" *" if s.noisy else "")


def _overhead(run: Run, ci: Interval | None = None) -> str:
    """instrumented / plain with its 95% CI (the report's, else its own), e.g. ``1.020 [1.01, 1.03]``."""
    bounds = bounds_text(overhead_ci(run) if ci is None else ci, lambda x: f"{x:.2f}")
    return f"{run.overhead_ratio:.3f} {bounds}".rstrip()


def summary_table(profile: RunDocument, report: Report | None = None) -> Table:
    """The runs' steps, phases and memory; ``report``, when built, gives the overhead's CIs."""
    table = Table(title="Step summary (ms: median ± IQR; ratios with their 95% CI)")
    table.add_column("")
    for name in profile.runs:
        table.add_column(name, justify="right")
    runs = list(profile.runs.values())

    def row(label: str, value: Callable[[Run], str]) -> None:
        table.add_row(label, *[value(r) for r in runs])

    row("step", lambda r: _stat(r.step_ms))
    row("  units forward", lambda r: f"{r.fwd_ms():.2f}")
    row("  units backward", lambda r: f"{r.bwd_ms():.2f}")
    for key in runs[0].phases_ms:
        row(f"  {key.replace('_', ' ')}", lambda r, k=key: _stat(r.phases_ms[k]))
    row("plain step (no hooks)", lambda r: _stat(r.plain_step_ms))
    table.add_row("instrumented / plain", *[_overhead(r, report.overhead[n] if report is not None else None)
                                            for n, r in profile.runs.items()])
    row("saved activations", lambda r: fmt_bytes(r.memory.saved_bytes_total))
    row("grad + optimizer state", lambda r: fmt_bytes(
        r.units_total("grad_bytes") + r.units_total("optimizer_state_bytes")))
    if any(_weight_copies(r) for r in runs):
        row("autocast weight copies", lambda r: fmt_bytes(_weight_copies(r)))
    row("peak allocated", lambda r: fmt_bytes(
        r.memory.allocator.peak_allocated_bytes if r.memory.allocator else None))
    return table


def _weight_copies(run: Run) -> int:
    """Autocast's lower-precision copies of the weights, saved for backward: memory, not activations."""
    return run.units_total("weight_cast_bytes") + sum(run.memory.weight_cast_other_bytes.values())


def ratio_line(profile: RunDocument, report: Report | None = None) -> Text | None:
    """frozen/full step with its CI: the report's figures when built, else their own."""
    full, frozen = profile.runs.get("full"), profile.runs.get("frozen")
    if not (full and frozen):
        return None
    n_units = len(profile.units)
    f = report.frozen if report is not None else frozen_summary(full, frozen, n_units)
    return Text(
        f"frozen/full step time: {f.step_ratio:.3f}{f.step_ratio_ci.after(fmt_ratio)} (measured) vs "
        f"{f.paper_ratio:.3f} = {n_units - f.freeze}/{n_units} (the paper's uniform-layer assumption)",
        style="bold",
    )


def header(profile: RunDocument) -> Text:
    m = profile.meta
    text = Text(f"tlprof {m.label}, {len(profile.units)} units, runs: {', '.join(profile.runs)}")
    text.append("\nsettings: " + settings_text(m.to_dict()), style="dim")
    return text


def profile_report(profile: RunDocument) -> Report | TlprofError:
    """The report builder's view of the profile (its cost model at k ≤ 3), or why there is none."""
    try:
        return build_report(profile, ReportOptions(models=3))
    except TlprofError as exc:
        return exc


def report_sections(profile: RunDocument, built: Report | TlprofError | None = None) -> list[RenderableType]:
    """The report's cost model at k ≤ 3, the verdicts, notes and warnings (``built``: ``profile_report``'s
    answer, when the caller has it)."""
    report = profile_report(profile) if built is None else built
    if isinstance(report, TlprofError):
        return [Text(f"no report: {report}", style="dim")]
    titles = section_titles(report, shown=PROFILE_SECTIONS)  # numbered as shown here
    return [launch_section(report, titles), cost_section(report, titles=titles),
            distributed_section(report, titles),
            claims_section(report, titles), notes_section(report), warnings_section(report)]


def profile_view(profile: RunDocument) -> RenderableType:
    built = profile_report(profile)  # once: its figures feed the summary and the ratio line too
    report = built if isinstance(built, Report) else None
    parts: list[RenderableType] = [header(profile), unit_table(profile), summary_table(profile, report)]
    line = ratio_line(profile, report)
    if line is not None:
        parts.append(line)
    return Group(*parts, *report_sections(profile, built))
