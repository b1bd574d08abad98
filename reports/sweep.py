"""Savings against freeze depth: one full run, then the frozen (and cached) regime per depth.

The sweep document (``tlprof.sweep/1``) keeps every run whole, so each depth's
report can be rebuilt with the same builder as a single profile's.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from html import escape
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text
from torch import nn

from tlprof.errors import TlprofError
from tlprof.reports.builder import ReportOptions, build_report
from tlprof.reports.html_view import STYLE, html_table
from tlprof.reports.markdown import md_table
from tlprof.reports.svg import PALETTE, Series, line_chart
from tlprof.reports.text import fmt_bytes, fmt_num, fmt_ratio
from tlprof.runner import ProfileConfig, check_freeze, profile_model
from tlprof.session import Profile, Run, RunDocumentError, finite
from tlprof.units import find_units
from tlprof.workload import EXAMPLE_ROWS, ModelSpec, as_spec, eager, make_batch

SCHEMA = "tlprof.sweep/1"
REPORT_SCHEMA = "tlprof.sweep-report/1"
SWEEP_MODES = {"frozen": ("frozen",), "cached": ("cached",), "all": ("frozen", "cached")}

Progress = Callable[[str, int, int], None]


@dataclass
class SweepPoint:
    freeze: int
    runs: dict[str, Run]


@dataclass
class Sweep:
    meta: dict[str, Any]
    units: list[dict[str, Any]]
    full: Run
    points: list[SweepPoint]

    def profile_at(self, point: SweepPoint) -> Profile:
        meta = {**self.meta, "freeze": point.freeze, "modes": ["full", *point.runs]}
        return Profile(meta, self.units, {"full": self.full, **point.runs})

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "meta": self.meta, "units": self.units, "full": self.full.to_dict(),
            "points": [{"freeze": p.freeze, "runs": {k: r.to_dict() for k, r in p.runs.items()}}
                       for p in self.points],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sweep:
        if d.get("schema") != SCHEMA:
            raise RunDocumentError(f"not a tlprof sweep document (schema {d.get('schema')!r})")
        try:
            return cls(
                meta=dict(d["meta"]), units=list(d["units"]), full=Run.from_dict(d["full"]),
                points=[SweepPoint(int(p["freeze"]), {k: Run.from_dict(r) for k, r in p["runs"].items()})
                        for p in d["points"]],
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RunDocumentError(f"incomplete tlprof sweep document: missing or bad {exc}") from exc

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(finite(self.to_dict()), indent=1, allow_nan=False) + "\n")


def parse_depths(text: str) -> list[int]:
    try:
        depths = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError as exc:
        raise TlprofError(f"--freeze {text!r}: expected depths like 0,10,20,45") from exc
    if not depths or depths[0] < 0:
        raise TlprofError(f"--freeze {text!r}: depths must be integers ≥ 0")
    return depths


def _check_depths(model: nn.Module | ModelSpec, cfg: ProfileConfig, depths: Sequence[int]) -> None:
    """Refuse a depth the model cannot take before the first run, not after it."""
    spec = as_spec(model)
    device = next(spec.model.parameters()).device
    with eager(spec.model):
        n_units = len(find_units(spec.model, make_batch(spec, cfg, device, rows=EXAMPLE_ROWS)))
    check_freeze(max(depths), n_units)


def run_sweep(model: nn.Module | ModelSpec, cfg: ProfileConfig, depths: Sequence[int], modes: Sequence[str],
              meta: dict[str, Any] | None = None, progress: Progress | None = None) -> Sweep:
    """One full run, then ``modes`` at every depth N ≥ 1 (depth 0 is the full run itself)."""

    def tagged(n: int) -> Progress | None:
        return None if progress is None else (lambda m, done, total: progress(f"{m} {n}", done, total))

    _check_depths(model, cfg, depths)
    base = profile_model(model, replace(cfg, freeze=0, modes=("full",)), meta=meta, progress=tagged(0))
    points = []
    for n in depths:
        if n == 0:
            continue
        prof = profile_model(model, replace(cfg, freeze=n, modes=tuple(modes)), meta=meta,
                             progress=tagged(n))
        points.append(SweepPoint(n, prof.runs))
    sweep_meta = {**base.meta, "freeze_depths": list(depths), "sweep_modes": list(modes)}
    sweep_meta.pop("freeze", None)
    return Sweep(sweep_meta, base.units, base.runs["full"], points)


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


@dataclass
class SweepReport:
    source: dict[str, Any]
    n_units: int
    full_step_ms: float
    rows: list[SweepRow]

    def to_dict(self) -> dict[str, Any]:
        return finite({"schema": REPORT_SCHEMA, **asdict(self)})


def _bytes(run: Run | None, *keys: str) -> int | None:
    if run is None or any(k not in run.memory for k in keys):
        return None
    return sum(int(run.memory[k]) for k in keys)


def build_sweep_report(sweep: Sweep) -> SweepReport:
    n_units = len(sweep.units)
    s_full = sweep.full.step_ms.median
    t_total = sum(u.fwd_ms.median + u.bwd_ms.median for u in sweep.full.units)
    rows = [SweepRow(0, n_units, 1.0, 1.0, s_full, 1.0, 0.0, 1.0, None, None, None,
                     _bytes(sweep.full, "saved_bytes_total"),
                     _bytes(sweep.full, "grad_bytes_units_total", "optimizer_state_bytes_units_total"))]
    for point in sweep.points:
        rep = build_report(sweep.profile_at(point), ReportOptions(models=1))
        f, c = rep.frozen, rep.cached
        frozen = point.runs.get("frozen")
        rows.append(SweepRow(
            freeze=point.freeze, trainable_units=n_units - point.freeze,
            paper_ratio=(n_units - point.freeze) / n_units,
            tail_share=sum(rep.t_ms[point.freeze:]) / t_total if t_total else float("nan"),
            step_ms=f.frozen_step_ms if f else None, step_ratio=f.step_ratio if f else None,
            saved_ms=f.saved_ms if f else None, predicted_ratio=f.predicted_ratio if f else None,
            cached_step_ms=c.step_ms if c else None, cached_features_ms=c.features_ms if c else None,
            cached_ratio=c.step_ratio if c else None,
            saved_activation_bytes=_bytes(frozen, "saved_bytes_total"),
            grad_and_state_bytes=_bytes(frozen, "grad_bytes_units_total",
                                        "optimizer_state_bytes_units_total"),
        ))
    source = {k: sweep.meta[k] for k in ("arch", "model", "device", "device_name", "batch_size",
                                         "input_shape", "precision", "optimizer") if k in sweep.meta}
    return SweepReport(source, n_units, s_full, rows)


# -- renderers --------------------------------------------------------------------

COLUMNS = ("N", "train", "paper\n(L−N)/L", "Σt\ntail", "frozen\nms", "frozen\n/full", "est.",
           "h_N\nms", "h_N\n/full", "saved\nact.", "grad+\nstate")
LEGEND = ("Σt tail = Σ_(i>N) t_i / Σ t_i (the paper's counting with measured t_i); est. = (every "
          "forward + backward of units N+1..L + phases) / full step, from the full run; h_N = "
          "cached-features step (--mode cached or all)")
FLAT_COLUMNS = tuple(c.replace("\n", " ") for c in COLUMNS)


def _cells(r: SweepRow) -> list[str]:
    return [str(r.freeze), str(r.trainable_units), fmt_ratio(r.paper_ratio), fmt_ratio(r.tail_share),
            fmt_num(r.step_ms), fmt_ratio(r.step_ratio), fmt_ratio(r.predicted_ratio),
            fmt_num(r.cached_step_ms), fmt_ratio(r.cached_ratio),
            fmt_bytes(r.saved_activation_bytes), fmt_bytes(r.grad_and_state_bytes)]


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
    table = md_table(FLAT_COLUMNS, [_cells(r) for r in rep.rows], right=FLAT_COLUMNS)
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
