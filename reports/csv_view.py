"""The per-unit (or per-block, per-stage) table as CSV, full precision, one row per unit.

The runs' warnings follow the table as ``#`` comment lines."""

from __future__ import annotations

import csv
import io

from tlprof.reports.builder import Report

FIELDS = ("first_unit", "units", "name", "stage", "block", "trainable_units", "fwd_ms", "bwd_ms",
          "t_ms", "step_share", "cum_share", "noisy", "frozen_fwd_ms", "frozen_bwd_ms",
          "cached_fwd_ms", "cached_bwd_ms", "saved_bytes", "param_bytes")


def render_csv(report: Report) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(FIELDS)
    for r in report.rows():
        writer.writerow([
            r.first, r.units, r.name, r.stage, r.block, r.trainable, r.fwd_ms, r.bwd_ms, r.t_ms,
            r.step_share, r.cum_share, int(r.noisy),
            *("" if v is None else v
              for v in (r.frozen_fwd_ms, r.frozen_bwd_ms, r.cached_fwd_ms, r.cached_bwd_ms)),
            r.saved_bytes, r.param_bytes,
        ])
    for w in report.warnings:
        buf.write(f"# warning: {w}\n")
    return buf.getvalue()
