"""Two run documents side by side: per run, the step, its phases and every unit, with deltas."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from tlprof.document import Run, RunDocument, finite
from tlprof.reports.markdown import md_table
from tlprof.reports.provenance import SAME_WORK, differences, settings
from tlprof.reports.text import fmt_num, fmt_ratio
from tlprof.reports.uncertainty import MIN_SAMPLES, Interval, bounds_text, diff_ci, step_totals
from tlprof.stats import Stats

SCHEMA = "tlprof.compare/1"  # fields added by issue #12: each delta's ci, noise, a_iqr_ms, b_iqr_ms
WITHIN_NOISE = "within noise"
FEW_STEPS = f"n < {MIN_SAMPLES}"


@dataclass
class Delta:
    """One figure in A and in B (ms), by kind: step, phase, units (sums) or unit."""

    kind: str
    name: str
    a_ms: float
    b_ms: float
    index: int | None = None
    a_fwd_ms: float | None = None
    a_bwd_ms: float | None = None
    b_fwd_ms: float | None = None
    b_bwd_ms: float | None = None
    ci: Interval | None = None  # bootstrap CI of B − A (difference of medians); none per unit
    a_iqr_ms: float | None = None
    b_iqr_ms: float | None = None

    @property
    def delta_ms(self) -> float:
        return self.b_ms - self.a_ms

    @property
    def noise(self) -> str:
        """``within noise`` when the CI of B − A includes 0, ``n < 5`` when too few steps say nothing."""
        if self.ci is None:
            return ""
        if self.ci.n < MIN_SAMPLES:
            return FEW_STEPS
        return "" if self.ci.finite and not self.ci.contains(0.0) else WITHIN_NOISE

    @property
    def ratio(self) -> float:
        return self.b_ms / self.a_ms if self.a_ms else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "delta_ms": self.delta_ms, "ratio": self.ratio, "noise": self.noise}


@dataclass
class RunComparison:
    run: str
    summary: list[Delta]  # step, phases, units' forward and backward totals
    units: list[Delta] | None  # None when the two documents' units differ


@dataclass
class Comparison:
    label_a: str
    label_b: str
    runs: list[RunComparison]
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings_a: list[tuple[str, str]] = field(default_factory=list)
    settings_b: list[tuple[str, str]] = field(default_factory=list)
    differences: list[tuple[str, str, str]] = field(default_factory=list)  # setting, in A, in B

    def to_dict(self) -> dict:
        return finite({
            "schema": SCHEMA, "a": self.label_a, "b": self.label_b,
            "runs": {rc.run: {"summary": [d.to_dict() for d in rc.summary],
                              "units": None if rc.units is None else [d.to_dict() for d in rc.units]}
                     for rc in self.runs},
            "only_in_a": self.only_in_a, "only_in_b": self.only_in_b, "notes": self.notes,
            "settings": {"a": dict(self.settings_a), "b": dict(self.settings_b)},
            "differences": [{"setting": n, "a": va, "b": vb} for n, va, vb in self.differences],
        })


def _stats_delta(kind: str, name: str, a: Stats, b: Stats) -> Delta:
    """A figure measured every step: its medians, the CI of their difference, and both IQRs."""
    return Delta(kind, name, a.median, b.median, ci=diff_ci(a.samples, b.samples),
                 a_iqr_ms=a.iqr, b_iqr_ms=b.iqr)


def _totals_delta(name: str, attr: str, a: Run, b: Run) -> Delta:
    """Σ over units of the medians; the CI from per-step totals when every unit has every step."""
    cols_a = [getattr(u, attr).samples for u in a.units]
    cols_b = [getattr(u, attr).samples for u in b.units]
    tot_a, tot_b = step_totals(cols_a), step_totals(cols_b)
    ci = diff_ci(tot_a, tot_b) if tot_a is not None and tot_b is not None else None
    return Delta("units", name, getattr(a, attr)(), getattr(b, attr)(), ci=ci)  # Run.fwd_ms(), Run.bwd_ms()


def _summary(a: Run, b: Run) -> list[Delta]:
    rows = [_stats_delta("step", "step", a.step_ms, b.step_ms)]
    for name in a.phases_ms:
        if name in b.phases_ms:
            rows.append(_stats_delta("phase", name, a.phases_ms[name], b.phases_ms[name]))
    rows += [_totals_delta("units forward", "fwd_ms", a, b), _totals_delta("units backward", "bwd_ms", a, b)]
    rows.append(_stats_delta("plain", "plain step (no hooks)", a.plain_step_ms, b.plain_step_ms))
    return rows + _comm(a, b)


def _comm(a: Run, b: Run) -> list[Delta]:
    """Two data-parallel runs: their all-reduce, exposed communication and each rank's step."""
    ca = a.distributed.comm if a.distributed else None
    cb = b.distributed.comm if b.distributed else None
    if ca is None or cb is None:
        return []
    rows = [_stats_delta("comm", "all-reduce (Σ buckets)", ca.allreduce_ms, cb.allreduce_ms),
            _stats_delta("comm", "exposed communication", ca.exposed_ms, cb.exposed_ms)]
    steps_b = {r.rank: r.step_ms for r in b.distributed.ranks}
    rows += [_stats_delta("rank", f"rank {r.rank} step", r.step_ms, steps_b[r.rank])
             for r in a.distributed.ranks if r.rank in steps_b]
    return rows


def _comm_notes(name: str, a: Run, b: Run) -> list[str]:
    ca = a.distributed.comm if a.distributed else None
    cb = b.distributed.comm if b.distributed else None
    if ca is None and cb is None:
        return []
    if ca is None or cb is None:
        return [f"{name} run: data-parallel only in {'B' if ca is None else 'A'}"]
    wa, wb = a.distributed.world_size, b.distributed.world_size
    return [f"{name} run: {ca.bytes_per_step:,} bytes all-reduced per step in A ({wa} ranks), "
            f"{cb.bytes_per_step:,} in B ({wb} ranks)"]


def _units(names: list[str], a: Run, b: Run) -> list[Delta]:
    out = []
    for name, ua, ub in zip(names, a.units, b.units):
        out.append(Delta("unit", name, ua.t_ms, ub.t_ms, ua.index, ua.fwd_ms.median, ua.bwd_ms.median,
                         ub.fwd_ms.median, ub.bwd_ms.median))
    return out


def compare(a: RunDocument, b: RunDocument, label_a: str = "A", label_b: str = "B") -> Comparison:
    names_a = a.unit_names
    same_units = names_a == b.unit_names
    runs = [RunComparison(name, _summary(a.runs[name], b.runs[name]),
                          _units(names_a, a.runs[name], b.runs[name]) if same_units else None)
            for name in a.runs if name in b.runs]
    notes = []
    if not same_units:
        notes.append(f"the units differ ({len(a.units)} vs {len(b.units)}): per-unit rows left out")
    for name in a.runs.keys() & b.runs.keys():
        notes += _comm_notes(name, a.runs[name], b.runs[name])
    freeze_a = {n: r.freeze for n, r in a.runs.items()}
    freeze_b = {n: r.freeze for n, r in b.runs.items()}
    for name in freeze_a.keys() & freeze_b.keys():
        if freeze_a[name] != freeze_b[name]:
            notes.append(f"{name} run: freeze {freeze_a[name]} in A, {freeze_b[name]} in B")
    meta_a, meta_b = a.meta.to_dict(), b.meta.to_dict()
    diff = differences(meta_a, meta_b)
    work = [f"{n} {va} (A) vs {vb} (B)" for n, va, vb in diff if n in SAME_WORK]
    if work:
        notes.append("A and B measured different work: " + "; ".join(work))
    return Comparison(label_a, label_b, runs,
                      only_in_a=[n for n in a.runs if n not in b.runs],
                      only_in_b=[n for n in b.runs if n not in a.runs], notes=sorted(notes),
                      settings_a=settings(meta_a), settings_b=settings(meta_b), differences=diff)


# -- renderers ------------------------------------------------------------------


SUMMARY_COLUMNS = ("A", "B", "Δ ms", "B/A", "95% CI of Δ", "IQR A / B", "noise")
UNIT_COLUMNS = ("#", "unit", "A fwd", "A bwd", "B fwd", "B bwd", "A t", "B t", "Δ ms", "B/A")


def _delta_cells(d: Delta) -> list[str]:
    return [fmt_num(d.a_ms), fmt_num(d.b_ms), f"{d.delta_ms:+.3g}", fmt_ratio(d.ratio)]


def _ci_cell(ci: Interval | None) -> str:
    return bounds_text(ci, lambda x: f"{x:+.3g}", "-")


def _iqr_cell(d: Delta) -> str:
    if d.a_iqr_ms is None or d.b_iqr_ms is None:
        return "-"
    return f"{fmt_num(d.a_iqr_ms)} / {fmt_num(d.b_iqr_ms)}"


def _summary_cells(d: Delta) -> list[str]:
    return [*_delta_cells(d), _ci_cell(d.ci), _iqr_cell(d), d.noise]


def _legend(c: Comparison) -> str:
    return (f"A = {c.label_a}, B = {c.label_b}; ms per step (medians); Δ = B − A; its 95% CI by "
            f"bootstrap over the measured steps; {WITHIN_NOISE} = the CI includes 0, "
            f"{FEW_STEPS} = too few steps to tell")


def _settings_rows(c: Comparison) -> list[list[str]]:
    """Each setting of A and B; those that differ marked."""
    a, b = dict(c.settings_a), dict(c.settings_b)
    differ = {n for n, _, _ in c.differences}
    names = list(dict.fromkeys([*a, *b]))
    return [[n, a.get(n, "-"), b.get(n, "-"), "differs" if n in differ else ""] for n in names]


def compare_view(c: Comparison) -> Group:
    parts: list = [Text(_legend(c), style="bold")]
    settings_table = Table(title="settings", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("setting", "A", "B", ""):
        settings_table.add_column(col)
    for row in _settings_rows(c):
        settings_table.add_row(*row, style="bold" if row[3] else None)
    parts.append(settings_table)
    for rc in c.runs:
        t = Table(title=f"{rc.run} run", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("", *SUMMARY_COLUMNS):
            t.add_column(col, justify="left" if col in ("", "noise") else "right", no_wrap=bool(col))
        for d in rc.summary:
            t.add_row(d.name, *_summary_cells(d), style="dim" if d.noise else None)
        parts.append(t)
        if rc.units:
            u = Table(title=f"{rc.run} run, per unit (t = fwd + bwd)", title_justify="left",
                      box=box.SIMPLE_HEAD, pad_edge=False)
            for col in UNIT_COLUMNS:
                u.add_column(col, justify="left" if col == "unit" else "right")
            for d in rc.units:
                u.add_row(str(d.index), d.name, *(fmt_num(v) for v in (
                    d.a_fwd_ms, d.a_bwd_ms, d.b_fwd_ms, d.b_bwd_ms)), *_delta_cells(d))
            parts.append(u)
    parts += [Text(f"note: {n}", style="dim") for n in _extra_notes(c)]
    return Group(*parts)


def _extra_notes(c: Comparison) -> list[str]:
    notes = list(c.notes)
    if c.only_in_a:
        notes.append(f"runs only in A: {', '.join(c.only_in_a)}")
    if c.only_in_b:
        notes.append(f"runs only in B: {', '.join(c.only_in_b)}")
    return notes


def compare_markdown(c: Comparison) -> str:
    parts = [f"# Compare: {_legend(c)}", md_table(["setting", "A", "B", ""], _settings_rows(c))]
    for rc in c.runs:
        parts.append(f"## {rc.run} run")
        parts.append(md_table(["figure", *SUMMARY_COLUMNS],
                              [[d.name, *_summary_cells(d)] for d in rc.summary]))
        if rc.units:
            parts.append(md_table(
                list(UNIT_COLUMNS),
                [[str(d.index), d.name, *(fmt_num(v) for v in (
                    d.a_fwd_ms, d.a_bwd_ms, d.b_fwd_ms, d.b_bwd_ms)), *_delta_cells(d)]
                 for d in rc.units]))
    parts += [f"- {n}" for n in _extra_notes(c)]
    return "\n\n".join(parts) + "\n"


CSV_FIELDS = ("run", "kind", "index", "name", "a_ms", "b_ms", "delta_ms", "ratio",
              "a_fwd_ms", "a_bwd_ms", "b_fwd_ms", "b_bwd_ms", "delta_low_ms", "delta_high_ms", "n_a", "n_b",
              "a_iqr_ms", "b_iqr_ms", "noise")


def compare_csv(c: Comparison) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for rc in c.runs:
        for d in rc.summary + (rc.units or []):
            ci = d.ci if d.ci is not None and d.ci.finite else None
            row = {**d.to_dict(), "run": rc.run, "delta_low_ms": ci.low if ci else None,
                   "delta_high_ms": ci.high if ci else None, "n_a": d.ci.n_a if d.ci else None,
                   "n_b": d.ci.n_b if d.ci else None}
            w.writerow(["" if row[f] is None else row[f] for f in CSV_FIELDS])
    return buf.getvalue()


def compare_json(c: Comparison) -> str:
    return json.dumps(c.to_dict(), indent=1, ensure_ascii=False) + "\n"
