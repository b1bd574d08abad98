"""Savings against freeze depth, from a sweep document (``tlprof.sweep/2``). Never measures.

The sweep keeps every run whole, so each depth's figures come from the same builder
functions as a single profile's report; ``tlprof.sweep.run_sweep`` measures it.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from html import escape
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from tlprof.document import Run, Sweep, finite
from tlprof.errors import TlprofError
from tlprof.reports.builder import cached_summary, frozen_summary
from tlprof.reports.html_view import STYLE, html_table
from tlprof.reports.markdown import md_table
from tlprof.reports.svg import PALETTE, Series, line_chart
from tlprof.reports.text import fmt_bytes, fmt_num, fmt_ratio
from tlprof.reports.uncertainty import MIN_SAMPLES, Interval, bounds_text

REPORT_SCHEMA = "tlprof.sweep-report/1"
SWEEP_RUNS = {"frozen": ("frozen",), "cached": ("cached",), "all": ("frozen", "cached")}


def parse_depths(text: str) -> list[int]:
    try:
        depths = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError as exc:
        raise TlprofError(f"--freeze {text!r}: expected depths like 0,10,20,45") from exc
    if not depths or depths[0] < 0:
        raise TlprofError(f"--freeze {text!r}: depths must be integers ≥ 0")
    return depths


# -- the derived table ------------------------------------------------------------


@dataclass
class SweepRow:
    freeze: int
    trainable_units: int
    paper_ratio: float  # (L − N) / L
    tail_share: float  # Σ_(i>N) t_i / Σ t_i: the paper's counting with measured t_i
    step_ms: float | None  # frozen step
    step_ratio: float | None  # frozen / full
    saved_ms: float | None
    predicted_ratio: float | None
    cached_step_ms: float | None
    cached_features_ms: float | None
    cached_ratio: float | None  # h_N / s_full
    saved_activation_bytes: int | None  # frozen run
    grad_and_state_bytes: int | None  # frozen run
    step_ratio_low: float | None = None  # bootstrap 95% CI of frozen / full
    step_ratio_high: float | None = None
    steps: int | None = None  # the fewer measured steps of the frozen and the full run
    noise: str = ""  # NOISE_MARK: the CI overlaps the shallower depth's, FEW_STEPS: too few steps


NOISE_MARK = "~"
FEW_STEPS = f"n<{MIN_SAMPLES}"


def _ci(row: SweepRow) -> Interval | None:
    if row.step_ratio_low is None or row.step_ratio_high is None or row.step_ratio is None:
        return None
    return Interval(row.step_ratio_low, row.step_ratio, row.step_ratio_high, row.steps or 0)


def mark_noise(rows: list[SweepRow]) -> None:
    """Each depth against the one before it (depth 0: the full run, ratio 1 exactly): ``~`` when
    their frozen/full CIs overlap, so the difference between them is inside the noise."""
    for prev, row in zip(rows, rows[1:]):
        ci, before = _ci(row), _ci(prev)
        if ci is None or before is None:
            continue
        if ci.n < MIN_SAMPLES:
            row.noise = FEW_STEPS
        elif ci.overlaps(before):
            row.noise = NOISE_MARK


@dataclass
class SweepReport:
    source: dict[str, Any]
    n_units: int
    full_step_ms: float
    rows: list[SweepRow]

    def to_dict(self) -> dict[str, Any]:
        return finite({"schema": REPORT_SCHEMA, **asdict(self)})


def _saved(run: Run | None) -> int | None:
    return None if run is None else run.memory.saved_bytes_total


def _grad_and_state(run: Run | None) -> int | None:
    return None if run is None else run.units_total("grad_bytes") + run.units_total("optimizer_state_bytes")


def _ci_fields(ci: Interval | None) -> dict[str, Any]:
    if ci is None:
        return {}
    finite = ci.finite
    return {"step_ratio_low": ci.low if finite else None, "step_ratio_high": ci.high if finite else None,
            "steps": ci.n}


def build_sweep_report(sweep: Sweep) -> SweepReport:
    full, n_units = sweep.full, len(sweep.units)
    runs = [full, *(run for point in sweep.points for run in point.runs.values())]
    if not full.units or any(len(run.units) != n_units for run in runs):  # as build_report refuses them
        raise TlprofError("the sweep document's units do not match its runs")
    s_full = full.step_ms.median
    t = [u.t_ms for u in full.units]  # t_i, as the report's
    t_total = sum(t)
    rows = [SweepRow(0, n_units, 1.0, 1.0, s_full, 1.0, 0.0, 1.0, None, None, None,
                     _saved(full), _grad_and_state(full), 1.0, 1.0, len(full.step_ms.samples))]
    for point in sweep.points:
        frozen, cached = point.runs.get("frozen"), point.runs.get("cached")
        f = frozen_summary(full, frozen, n_units) if frozen else None
        c = cached_summary(full, cached, frozen) if cached else None
        rows.append(SweepRow(
            freeze=point.freeze, trainable_units=n_units - point.freeze,
            paper_ratio=(n_units - point.freeze) / n_units,
            tail_share=sum(t[point.freeze:]) / t_total if t_total else float("nan"),
            step_ms=f.frozen_step_ms if f else None, step_ratio=f.step_ratio if f else None,
            saved_ms=f.saved_ms if f else None, predicted_ratio=f.predicted_ratio if f else None,
            cached_step_ms=c.step_ms if c else None, cached_features_ms=c.features_ms if c else None,
            cached_ratio=c.step_ratio if c else None,
            saved_activation_bytes=_saved(frozen),
            grad_and_state_bytes=_grad_and_state(frozen),
            **_ci_fields(f.step_ratio_ci if f else None),
        ))
    mark_noise(rows)
    meta = sweep.meta.to_dict()
    source = {k: meta[k] for k in ("arch", "model", "device", "device_name", "batch_size",
                                   "input_shape", "precision", "optimizer") if meta.get(k) not in (None, [])}
    return SweepReport(source, n_units, s_full, rows)


# -- renderers --------------------------------------------------------------------

COLUMNS = ("N", "train", "paper\n(L−N)/L", "Σt\ntail", "frozen\nms", "frozen\n/full", "95% CI", "noise",
           "est.", "h_N\nms", "h_N\n/full", "saved\nact.", "grad+\nstate")
LEGEND = ("Σt tail = Σ_(i>N) t_i / Σ t_i (the paper's counting with measured t_i); est. = (every "
          "forward + backward of units N+1..L + phases) / full step, from the full run; h_N = "
          "cached-features step (--runs cached or all); 95% CI of frozen/full by bootstrap over the "
          f"measured steps; {NOISE_MARK} = its CI overlaps the depth above's (depth 0: 1), so the "
          f"difference is inside the noise; {FEW_STEPS} = fewer than {MIN_SAMPLES} steps")
FLAT_COLUMNS = tuple(c.replace("\n", " ") for c in COLUMNS)


def _cells(r: SweepRow) -> list[str]:
    return [str(r.freeze), str(r.trainable_units), fmt_ratio(r.paper_ratio), fmt_ratio(r.tail_share),
            fmt_num(r.step_ms), fmt_ratio(r.step_ratio), _ci_cell(r), r.noise, fmt_ratio(r.predicted_ratio),
            fmt_num(r.cached_step_ms), fmt_ratio(r.cached_ratio),
            fmt_bytes(r.saved_activation_bytes), fmt_bytes(r.grad_and_state_bytes)]


def _ci_cell(r: SweepRow) -> str:
    return "-" if r.freeze == 0 else bounds_text(_ci(r), lambda x: f"{x:.3f}", "-")


def _title(rep: SweepReport) -> str:
    s = rep.source
    what = s.get("arch") or s.get("model", "model")
    return (f"Freeze sweep: {what} on {s.get('device')}, {rep.n_units} units, "
            f"full step {fmt_num(rep.full_step_ms)} ms")


def sweep_view(rep: SweepReport) -> Group:
    t = Table(title=_title(rep), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
              padding=(0, 0, 0, 1))
    rows = [_cells(r) for r in rep.rows]
    for i, col in enumerate(COLUMNS):
        t.add_column(col, justify="right", no_wrap=True, min_width=max(len(r[i]) for r in rows))
    for cells in rows:
        t.add_row(*cells)
    return Group(t, Text(LEGEND, style="dim"))


def sweep_markdown(rep: SweepReport) -> str:
    table = md_table(FLAT_COLUMNS, [_cells(r) for r in rep.rows])
    return f"# {_title(rep)}\n\n{table}\n\n{LEGEND}\n"


def sweep_csv(rep: SweepReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    names = list(SweepRow.__dataclass_fields__)
    w.writerow(names)
    for r in rep.rows:
        w.writerow(["" if getattr(r, n) is None else getattr(r, n) for n in names])
    return buf.getvalue()


def sweep_json(rep: SweepReport) -> str:
    return json.dumps(rep.to_dict(), indent=1, ensure_ascii=False) + "\n"


def sweep_svg(rep: SweepReport) -> str:
    xs = [float(r.freeze) for r in rep.rows]
    series = [Series("paper (L−N)/L", [r.paper_ratio for r in rep.rows], "#999", dashed=True),
              Series("Σt tail share", [r.tail_share for r in rep.rows], PALETTE[1])]
    if all(r.step_ratio is not None for r in rep.rows):
        series.append(Series("frozen/full step", [r.step_ratio for r in rep.rows], PALETTE[0]))
    if all(r.cached_ratio is not None for r in rep.rows[1:]) and len(rep.rows) > 1:
        series.append(Series("cached h_N/full step", [1.0] + [r.cached_ratio for r in rep.rows[1:]],
                             PALETTE[3]))
    return line_chart("Cost of one model against freeze depth", xs, series, "× full step",
                      "N frozen units")


def sweep_html(rep: SweepReport) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{escape(_title(rep))}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{escape(_title(rep))}</h1>\n<figure>{sweep_svg(rep)}</figure>\n"
            + html_table(FLAT_COLUMNS, [_cells(r) for r in rep.rows]) + "\n</body>\n</html>\n")


def render_sweep(rep: SweepReport, fmt: str) -> str:
    renderers = {"markdown": sweep_markdown, "csv": sweep_csv, "json": sweep_json, "html": sweep_html}
    return renderers[fmt](rep)
