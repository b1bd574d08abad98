"""The per-unit (or per-block, per-stage) table as CSV, full precision, one row per unit.

Where runs have a ``launch`` section, each adds its host and kernel columns (prefixed by the run's
name, as ``frozen_fwd_ms``; the full run's unprefixed), its flags counted over the row's units; its
run-level figures and the rules follow the table as ``#`` comment lines, then the runs' warnings."""

from __future__ import annotations

import csv
import io

from tlprof.reports.builder import Report
from tlprof.reports.launch_rows import LaunchGroup, LaunchRun, launch_groups
from tlprof.reports.text import launch_rules

FIELDS = ("first_unit", "units", "name", "stage", "block", "trainable_units", "fwd_ms", "bwd_ms",
          "t_ms", "step_share", "cum_share", "noisy", "frozen_fwd_ms", "frozen_bwd_ms",
          "cached_fwd_ms", "cached_bwd_ms", "saved_bytes", "param_bytes")
LAUNCH_FIELDS = ("host_fwd_ms", "host_bwd_ms", "fwd_launch_bound", "bwd_launch_bound")
KERNEL_FIELDS = ("kernel_fwd_ms", "kernel_bwd_ms", "fwd_kernel_bound", "bwd_kernel_bound")
GROUP_KEY = {"unit": "index", "block": "block", "stage": "stage"}


def _launch_fields(r: LaunchRun) -> tuple[str, ...]:
    return LAUNCH_FIELDS + (KERNEL_FIELDS if r.kernels else ())


def _prefix(r: LaunchRun) -> str:
    return "" if r.run == "full" else f"{r.run}_"


def _cell(value: object) -> object:
    return "" if value is None else int(value) if isinstance(value, bool) else value


def render_csv(report: Report) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    launch = report.launch.runs if report.launch else []
    granularity = report.options.granularity
    groups = [launch_groups(r, GROUP_KEY[granularity]) for r in launch]
    writer.writerow([*FIELDS, *(_prefix(r) + f for r in launch for f in _launch_fields(r))])
    for r in report.rows():
        cells = [
            r.first, r.units, r.name, r.stage, r.block, r.trainable, r.fwd_ms, r.bwd_ms, r.t_ms,
            r.step_share, r.cum_share, int(r.noisy),
            *("" if v is None else v
              for v in (r.frozen_fwd_ms, r.frozen_bwd_ms, r.cached_fwd_ms, r.cached_bwd_ms)),
            r.saved_bytes, r.param_bytes,
        ]
        for run, by_name in zip(launch, groups):
            g: LaunchGroup | None = by_name.get(r.first if granularity == "unit" else r.name)
            cells += [_cell(getattr(g, f) if g else None) for f in _launch_fields(run)]
        writer.writerow(cells)
    for r in launch:
        kernels = (f", kernel_busy_share {r.kernel_busy_share} (kernel {r.kernel_ms} ms / GPU "
                   f"{r.kernel_gpu_ms} ms)" if r.kernels else "")
        buf.write(f"# launch: {r.run} run: gpu_wait_share median {r.gpu_wait_share} iqr {r.gpu_wait_iqr}"
                  f"{kernels}\n")
    for rule in launch_rules(report.launch) if report.launch else []:
        buf.write(f"# launch rule: {rule}\n")
    for w in report.warnings:
        buf.write(f"# warning: {w}\n")
    return buf.getvalue()
