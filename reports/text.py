"""Number formatting and fixed wording shared by the renderers."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tlprof.reports.builder import (
    NOT_MEASURED,
    PAPER_K,
    PAPER_L,
    PAPER_N,
    CostModel,
    DistributedSummary,
    FrozenSummary,
    Report,
    UnitRow,
)
from tlprof.reports.launch_rows import LaunchRun, LaunchSummary
from tlprof.reports.provenance import settings_text

ROW_TITLES = {
    "paper_uniform": "paper, uniform t̄",
    "paper_measured_t": "paper, measured t_i",
    "measured": "measured steps",
    "measured_cached": "cached features",
    "measured_compute": "measured, compute only",
}
PER_LATER_MODEL = "per later model"  # models 2..k: per_model_classic and per_model_transfer


def fmt_num(x: float | None, digits: int = 3) -> str:
    """Significant digits, no exponent for everyday sizes: 0.684, 12.4, 117, 1.2e+04."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    if x == 0:
        return "0"
    if abs(x) >= 10 ** digits:
        return f"{x:,.0f}" if abs(x) < 1e9 else f"{x:.{digits}g}"
    return f"{x:.{digits}g}"


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


def fmt_opt(x: Any, spec: str) -> str:
    """``format(x, spec)``, or "-" where the figure is missing (None or NaN)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, spec)


def fmt_ms(x: float | None) -> str:
    return fmt_opt(x, ".2f")


def fmt_pct(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "-"
    return f"{x:.1%}"


def fmt_ratio(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "-"
    return "inf" if math.isinf(x) else f"{x:.3f}"


def is_num(cell: str) -> bool:
    """A cell that holds a figure: 0.684, -1.2, +0.5, 12.5%, 1.5K, 2–3 (units), [0.61, 0.68], inf."""
    body = cell.lstrip("[+-–")
    return body[:1].isdigit() or (body[:3] == "inf" and not body[3:4].isalpha())


def headline(report: Report) -> str:
    s = report.source
    what = s.get("arch") or s.get("model", "model")
    shape = "×".join(str(d) for d in s.get("input_shape", []))
    device = s.get("device", "?")
    name = f" ({s['device_name']})" if s.get("device_name") else ""
    return (f"tlprof report: {what} on {device}{name}, batch {s.get('batch_size')}, input {shape}, "
            f"{s.get('precision')}, {report.n_units} units, N = {report.freeze} frozen")


def settings_line(report: Report) -> str:
    """Every setting of the run, for the line under the headline."""
    return "settings: " + settings_text(report.source)


REPORT_SECTIONS = ("units", "launch", "frozen", "cost", "distributed", "claims")  # numbered, as shown


def section_titles(report: Report, shown: tuple[str, ...] = REPORT_SECTIONS) -> dict[str, str]:
    """Every section's title; the ``shown`` ones that the report has are numbered in their order,
    so a view with fewer sections (``tlprof profile``) numbers its own from 1."""
    g = report.options.granularity
    titles = {
        "units": f"Empirical t per {g} (full run, ms per step; * = IQR > 10% of median)",
        "uniformity": "Uniformity of t_i",
        "frozen": f"The frozen run (N = {report.freeze}), measured directly",
        "cached": "The cached-features run",
        "cost": f"Cost model, {cost_unit_text(report.cost_model)}",
        "claims": "The paper's claims",
        "distributed": _distributed_title(report.distributed),
        "launch": "Launch-bound units: host time beside GPU time (eager CUDA; ms per step, medians)",
    }
    optional = {"distributed": report.distributed, "launch": report.launch}  # numbered when present
    present = [k for k in shown if k not in optional or optional[k] is not None]
    for n, key in enumerate(present, 1):
        titles[key] = f"{n}. {titles[key]}"
    return titles


def _distributed_title(d: DistributedSummary | None) -> str:
    if d is None:
        return "Data parallelism"
    return f"Data parallelism: {d.world_size} ranks, {d.backend}"


def cost_unit_text(cm: CostModel) -> str:
    if cm.steps_per_epoch == 1 and cm.epochs == 1 and cm.unit == "ms":
        return "ms per model-step (S = E = 1)"
    return f"{cm.unit}, S = {cm.steps_per_epoch} steps per epoch, E = {cm.epochs} epochs"


def shown_ks(ks: list[int], limit: int = 6) -> list[int]:
    """All k when few; else 1, 2, 3, then a spread up to K."""
    if len(ks) <= limit:
        return ks
    k_max = ks[-1]
    picks = [1, 2, 3] + [k for k in (5, 10, 20, 50, 100, 200, 500, 1000) if k < k_max]
    return sorted(set(picks[: limit - 1] + [k_max]))


def unit_columns(report: Report) -> list[str]:
    cols = ["#", report.options.granularity, "fwd ms", "bwd ms", "t ms", "share", "cum"]
    if report.frozen is not None:
        cols += ["frozen fwd", "frozen bwd"]
    if report.cached is not None:
        cols += ["cached fwd", "cached bwd"]
    cols += ["saved", "train"]
    return cols


def _train_cell(row: UnitRow) -> str:
    if row.units == 1:
        return "yes" if row.trainable else "no"
    return f"{row.trainable}/{row.units}"


def unit_cells(report: Report, row: UnitRow) -> list[str]:
    flag = "*" if row.noisy else ""
    first = str(row.first) if row.units == 1 else f"{row.first}–{row.first + row.units - 1}"
    cells = [first, row.name, fmt_ms(row.fwd_ms), fmt_ms(row.bwd_ms), fmt_ms(row.t_ms) + flag,
             fmt_pct(row.step_share), fmt_pct(row.cum_share)]
    if report.frozen is not None:
        cells += [fmt_ms(row.frozen_fwd_ms), fmt_ms(row.frozen_bwd_ms)]
    if report.cached is not None:
        cells += [fmt_ms(row.cached_fwd_ms), fmt_ms(row.cached_bwd_ms)]
    cells += [fmt_bytes(row.saved_bytes), _train_cell(row)]
    return cells


def uniformity_lines(report: Report) -> list[tuple[str, str]]:
    u = report.uniformity
    lines = [
        ("mean t̄", f"{fmt_num(u.mean_ms)} ms"),
        ("min / max", f"{fmt_num(u.min_ms)} / {fmt_num(u.max_ms)} ms"),
        ("max / min", fmt_num(u.max_over_min)),
        ("coefficient of variation", f"{u.cv:.3f}"),
        ("costliest 5 units, share of Σt", f"{fmt_pct(u.top5_share)} ({', '.join(u.top5_units)})"),
    ]
    if report.freeze:
        lines.append((f"last {u.tail_units} units, share of Σt",
                      f"{fmt_pct(u.tail_share)} vs the paper's {fmt_pct(u.paper_tail_share)}"))
    return lines


def cached_lines(report: Report) -> list[tuple[str, str]]:
    c = report.cached
    if c is None:
        return []
    lines = [
        ("F_N: no-grad forward of units 1..N, per batch", f"{fmt_num(c.features_ms)} ms"),
        ("h_N: training step of units N+1..L on cached features", f"{fmt_num(c.step_ms)} ms"),
        ("h_N / full step", fmt_ratio(c.step_ratio) + c.step_ratio_ci.after(fmt_ratio)),
    ]
    if c.frozen_step_ratio is not None:
        lines.append(("h_N / frozen step", fmt_ratio(c.frozen_step_ratio)))
    return lines


@dataclass
class TextTable:
    """A titled table of formatted cells; each renderer draws it its own way."""

    title: str
    header: list[str]
    rows: list[list[str]]


def frozen_sentence(f: FrozenSummary, strong: Callable[[str], str] = str) -> str:
    return (
        f"Frozen/full step: {fmt_num(f.frozen_step_ms)} / {fmt_num(f.full_step_ms)} ms = "
        f"{strong(fmt_ratio(f.step_ratio))}{f.step_ratio_ci.after(fmt_ratio)} "
        f"(paper: {fmt_ratio(f.paper_ratio)}; "
        f"forward-all + backward-tail estimate from the full run: {fmt_ratio(f.predicted_ratio)})."
    )


def frozen_tables(f: FrozenSummary) -> list[TextTable]:
    return [
        TextTable("Where the frozen step's time goes", ["part", "ms", "share"],
                  [[p.name, fmt_num(p.ms), fmt_pct(p.share)] for p in f.breakdown]),
        TextTable(f"Where the saving of {fmt_num(f.saved_ms)} ms per step comes from",
                  ["source", "ms", "share", "bytes"],
                  [[p.name, fmt_num(p.ms), fmt_pct(p.share), fmt_bytes(p.bytes)] for p in f.savings]),
        TextTable("Memory, full → frozen", ["figure", "full", "frozen", "saved"],
                  [[k, *(fmt_bytes(m[c]) for c in ("full", "frozen", "saved"))]
                   for k, m in f.memory.items()]),
    ]


def cached_assumption(data_per_model: bool) -> str:
    if data_per_model:
        return ("cached features: data per model (--different-data), so each of models 2..k "
                "computes units 1..N's features (S·F_N)")
    return ("cached features: the k models share the data, so units 1..N's features are computed "
            "once (S·F_N, with model 2); --different-data: once per model")


def cost_notes(report: Report) -> list[str]:
    """How the cost model counts models, and what the cached row assumes."""
    notes = ["transfer: model 1 trains in full, models 2..k with units 1..N frozen, "
             "so T_transfer(1) = T_classic(1)"]
    if "measured_cached" in report.cost_model.rows:
        notes.append(cached_assumption(report.options.data_per_model))
    return notes


def example_titles(report: Report) -> dict[str, str]:
    cached = "data per model" if report.options.data_per_model else "same data"
    return {**ROW_TITLES, "paper": f"the paper (L = {PAPER_L}, N = {PAPER_N})",
            "paper_uniform": f"paper, uniform t̄ (L = {report.n_units}, N = {report.freeze})",
            "measured_cached": f"cached features, {cached}"}


def example_table(report: Report) -> TextTable | None:
    """Claim 4's numbers: the paper's example at k = 3 in every row, in the paper's hours."""
    claim = next((c for c in report.claims if c.id == "three_models"), None)
    if claim is None or claim.verdict == NOT_MEASURED:
        return None
    titles = example_titles(report)
    rows = [[titles.get(name, name), fmt_num(e["classic"]), fmt_num(e["transfer"]), fmt_ratio(e["ratio"])]
            for name, e in claim.numbers.items()]
    return TextTable(f"The paper's example at k = {PAPER_K}, in its hours (one training = L h)",
                     ["row", "classic h", "transfer h", "ratio"], rows)


UNIT_SPREAD_ROWS = 5  # the terminal shows the units whose t differs most between ranks


def distributed_tables(d: DistributedSummary, unit_rows: int | None = None) -> list[TextTable]:
    """Communication per run, every rank, units by rank spread (widest first; the first ``unit_rows``
    of them when given), and the frozen saving's split."""
    tables = [TextTable(
        "Gradient all-reduce per step (rank 0, medians, ms; bwd end from the step's start)",
        ["run", "buckets", "bytes", "grad×params", "allreduce", "span", "bwd end", "exposed",
         "of step", "hidden"],
        [[c.run, str(c.buckets), f"{c.bytes_per_step:,}", f"{c.grad_bytes:,}", fmt_num(c.allreduce_ms),
          fmt_num(c.span_ms), fmt_num(c.backward_end_ms), fmt_num(c.exposed_ms), fmt_pct(c.exposed_share),
          fmt_pct(c.hidden_share)] for c in d.comm])]
    for s in d.ranks:
        tables.append(TextTable(
            f"{s.run} run per rank (slowest: rank {s.slowest_rank}; step max/min "
            f"{fmt_num(s.step_spread)}, compute max/min {fmt_num(s.compute_spread)})",
            ["rank", "host", "step ms", "compute ms", "exposed ms", "allreduce ms", "bytes"],
            [[str(r.rank), r.host, fmt_num(r.step_ms), fmt_num(r.compute_ms), fmt_num(r.exposed_ms),
              fmt_num(r.allreduce_ms), fmt_opt(r.bytes_per_step, ",")]
             for r in s.ranks]))
        units = sorted(s.units, key=lambda u: u.max_ms - u.min_ms, reverse=True)[:unit_rows]
        tables.append(TextTable(
            f"{s.run} run: t per unit across ranks (widest first)",
            ["#", "unit", "min ms", "max ms", "max/min", "slowest rank"],
            [[str(u.index), u.name, fmt_num(u.min_ms), fmt_num(u.max_ms), fmt_ratio(u.spread),
              str(u.slowest_rank)] for u in units]))
    if d.saving:
        tables.append(TextTable(
            f"Where the frozen saving of {fmt_num(d.saved_ms)} ms per step comes from, data-parallel",
            ["source", "ms", "share", "bytes"],
            [[p.name, fmt_num(p.ms), fmt_pct(p.share), fmt_bytes(p.bytes)] for p in d.saving]))
    return tables


def padding_lines(d: DistributedSummary) -> list[str]:
    return [f"{c.run} run bucket padding: {c.padding}" for c in d.comm]


# -- launch-bound units (reports/launch_rows.py) -----------------------------------------------

LAUNCH_ROWS = 12  # the terminal lists every unit of a run this long; past it, the launch-bound ones


def _units(n: int | None) -> str:
    return f"{n} unit" if n == 1 else f"{n} units"


def launch_line(r: LaunchRun) -> str:
    """A run's launch figures in one line: GPU-wait share, kernel-busy share, units flagged."""
    line = (f"{r.run} run: GPU-wait share {fmt_pct(r.gpu_wait_share)} (IQR {fmt_pct(r.gpu_wait_iqr)}), "
            f"{r.launch_bound_units} of {_units(r.units)} host-paced")
    if r.kernels:
        line += (f"; kernel-busy share {fmt_pct(r.kernel_busy_share)} (Σ kernel {fmt_num(r.kernel_ms)} of "
                 f"Σ GPU {fmt_num(r.kernel_gpu_ms)} ms), {_units(r.kernel_bound_units)} launch-bound "
                 "by kernels")
    return line


def launch_rules(s: LaunchSummary) -> list[str]:
    """What the figures are, and each distinct rule once: host pacing (the runs'), and by kernels where
    a run has kernel sums."""
    rules = [f"host-paced: {rule}" for rule in dict.fromkeys(r.rule for r in s.runs)]
    rules.append("GPU-wait share: the step's GPU time in host-paced intervals, an upper bound of the GPU's "
                 "idle time")
    if s.kernels:
        rules += [f"by kernels: {s.kernel_rule}",
                  "kernel-busy share: Σ kernel ms / Σ GPU ms over the units' passes with kernel sums: how "
                  "much of the units' GPU time the GPU ran kernels (the better figure where measured)"]
    return rules


def _passes(flags: list[str]) -> str:
    return " ".join(flags) or "-"


def launch_table(r: LaunchRun, limit: int | None = None) -> tuple[TextTable, int]:
    """The run's units (all, or past ``limit`` units only the launch-bound ones) under its launch line,
    and how many are left out. Kernel columns only where the run has kernel sums."""
    header = ["#", "unit", "GPU fwd", "host fwd", "GPU bwd", "host bwd"]
    if r.kernels:
        header += ["kernel fwd", "kernel bwd"]
    header += ["host-paced"] + (["by kernels"] if r.kernels else [])
    rows = r.rows if limit is None or len(r.rows) <= limit else r.flagged
    cells = []
    for u in rows:
        row = [str(u.index), u.name, *(fmt_ms(x) for x in (u.gpu_fwd_ms, u.host_fwd_ms, u.gpu_bwd_ms,
                                                             u.host_bwd_ms))]
        if r.kernels:
            row += [fmt_ms(u.kernel_fwd_ms), fmt_ms(u.kernel_bwd_ms)]
        row.append(_passes(u.passes("host")))
        if r.kernels:
            row.append(_passes(u.passes("kernels")))
        cells.append(row)
    return TextTable(launch_line(r), header, cells), len(r.rows) - len(rows)


def hidden_line(hidden: int) -> str:
    return (f"{_units(hidden)} not launch-bound left out; --format markdown, html or csv lists every unit"
            if hidden else "")
