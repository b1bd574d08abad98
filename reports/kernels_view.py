"""``tlprof kernels`` and ``tlprof ceilings``: rich views of what ``--kernels`` stored.

Renderers read a ``RunDocument`` (or ``Ceilings``) and never measure.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tlprof.document import Ceilings, Run, RunDocument, UnitKernels, UnitRun, finite
from tlprof.errors import TlprofError
from tlprof.reports.kernel_rows import KernelRow, pass_rows
from tlprof.reports.markdown import md_table
from tlprof.reports.text import fmt_bytes, fmt_opt

BYTES_NOTE = (
    "bytes: a lower bound on traffic, each tensor once: forward reads parameters and input "
    "and writes output; backward reads the output's gradient and the saved tensors, writes "
    "weight gradients and, where the input needs one, reads parameters and writes its "
    "gradient. Intermediates are left out, so intensity errs high: 'memory' is certain, "
    "'compute' is not. FLOPs = 2 × multiply-adds of matmuls and convolutions "
    "(torch.utils.flop_counter); 'other' = BatchNorm 4/element (backward 8), ReLU 1/element, "
    "pooling window size per output, add 1/element, kept apart (docs/kernels.md)."
)


def fmt_si(n: float | None, unit: str = "") -> str:
    if n is None:
        return "-"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            v = n / scale
            return f"{v:.0f}{prefix}{unit}" if v >= 100 else f"{v:.3g}{prefix}{unit}"
    return f"{n:.0f}{unit}"


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


def _pass_cells(r: KernelRow) -> list[str]:
    """A pass's figures as the terminal and Markdown show them."""
    return [
        r.direction,
        fmt_si(r.flops),
        fmt_si(r.flops_other),
        fmt_bytes(r.bytes),
        fmt_opt(r.intensity, ".0f"),
        fmt_opt(r.achieved_tflops, ".3g"),
        f"{r.pct_of_roof:.0f}% {r.bound[:3]}" if r.pct_of_roof is not None else "-",
        f"{r.measured_ms:.2f}",
        fmt_opt(r.kernel_ms, ".2f"),
    ]


def _short(name: str, width: int = 48) -> str:
    name = name.removeprefix("void ")
    return name if len(name) <= width else name[: width - 1] + "…"


COLUMNS = ("", "FLOPs", "other", "bytes", "F/B", "TF/s", "roof", "ms", "kern")


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
        fwd, *bwd = pass_rows(name, u.index, unit.name, u)
        table.add_row(str(u.index), unit.name, *_pass_cells(fwd), fmt_opt(fwd.agreement, ".2f"))
        for row in bwd:
            table.add_row("", "", *_pass_cells(row), "")
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


def op_rows(run: Run) -> list[list[str]]:
    """Operator, FLOPs, share of all counted FLOPs, kind: one training step, units and phases."""
    k = run.kernels
    if k is None:
        return []
    ops = [(op, f, "matmul/conv") for op, f in k.flops_by_op.items()]
    ops += [(op, f, "other") for op, f in k.flops_other_by_op.items()]
    total = sum(f for _, f, _ in ops)
    return [[op, fmt_si(f), f"{f / total:.1%}", kind]
            for op, f, kind in sorted(ops, key=lambda o: -o[1]) if total]


def flops_by_op_table(name: str, run: Run) -> Table | None:
    rows = op_rows(run)
    if not rows:
        return None
    table = _table(f"{name} run, FLOPs by operator (one training step)")
    for col, justify in (("operator", "left"), ("FLOPs", "right"), ("share", "right"), ("kind", "left")):
        table.add_column(col, justify=justify)
    for row in rows:
        table.add_row(*row)
    return table


def run_summary(name: str, run: Run) -> Text:
    total_fwd = sum(_kernels(u).flops_fwd for u in run.units)
    total_bwd = sum(_kernels(u).flops_bwd for u in run.units)
    other_fwd = sum(_kernels(u).flops_other_fwd or 0 for u in run.units)
    other_bwd = sum(_kernels(u).flops_other_bwd or 0 for u in run.units)
    text = Text(f"{name}: units {fmt_si(total_fwd)}FLOP forward, {fmt_si(total_bwd)}FLOP backward")
    if other_fwd or other_bwd:
        text.append(f" (+ other: {fmt_si(other_fwd)}FLOP forward, {fmt_si(other_bwd)}FLOP backward)")
    k = run.kernels
    if k is not None and k.kernel_agreement is not None:
        text.append(f"; kernel agreement {k.kernel_agreement:.3f} ({k.source}: "
                    f"{k.kernel_units_ms or 0:.2f} ms vs measured {k.measured_units_ms or 0:.2f} ms)")
    for w in run.warnings:
        if w.part == "kernels":
            text.append(f"\n  warning: {w.text}", style="yellow")
    return text


def chosen_runs(profile: RunDocument, runs: list[str] | None) -> list[str]:
    """The runs asked for (all by default); one error line if one is missing or none has kernels."""
    chosen = runs or list(profile.runs)
    missing = [r for r in chosen if r not in profile.runs]
    if missing:
        raise TlprofError(f"no run {missing[0]!r} in this document (it has {', '.join(profile.runs)})")
    if not any(profile.runs[r].kernels for r in chosen):
        raise TlprofError("this run document has no kernel data: profile with --kernels")
    return chosen


def kernels_view(profile: RunDocument, top: int = 3, runs: list[str] | None = None) -> RenderableType:
    chosen = chosen_runs(profile, runs)
    parts: list[RenderableType] = []
    ceilings = next((profile.runs[r].kernels.ceilings for r in chosen if profile.runs[r].kernels), None)
    if ceilings:
        parts.append(ceilings_table(ceilings))
    for name in chosen:
        run = profile.runs[name]
        parts.append(run_table(profile, name, run))
        if top > 0 and run.units[0].kernels is not None:
            parts.append(top_kernels_table(profile, name, run, top))
        by_op = flops_by_op_table(name, run)
        if by_op is not None:
            parts.append(by_op)
        parts.append(run_summary(name, run))
    parts.append(Text(BYTES_NOTE, style="dim"))
    return Group(*parts)


# -- the same figures as data: CSV, JSON, Markdown ------------------------------------------

KERNELS_SCHEMA = "tlprof.kernels/1"
ROW_FIELDS = ("run", "index", "unit", "pass", "flops", "flops_other", "bytes", "intensity", "achieved_tflops",
              "roof_tflops", "pct_of_roof", "bound", "ms", "kernel_ms", "agreement")


def pass_record(r: KernelRow) -> dict[str, Any]:
    """One unit's pass, full precision (None where not measured), under the data formats' names."""
    return {
        "run": r.run, "index": r.index, "unit": r.name, "pass": r.direction, "flops": r.flops,
        "flops_other": r.flops_other, "bytes": r.bytes, "intensity": r.intensity,
        "achieved_tflops": r.achieved_tflops, "roof_tflops": r.roof_tflops, "pct_of_roof": r.pct_of_roof,
        "bound": r.bound, "ms": r.measured_ms, "kernel_ms": r.kernel_ms, "agreement": r.agreement,
    }


def pass_records(profile: RunDocument, name: str, run: Run) -> list[dict[str, Any]]:
    return [pass_record(r) for unit, u in zip(profile.units, run.units)
            for r in pass_rows(name, u.index, unit.name, u)]


def kernels_csv(profile: RunDocument, runs: list[str] | None = None) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=ROW_FIELDS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for name in chosen_runs(profile, runs):
        for row in pass_records(profile, name, profile.runs[name]):
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    for name in chosen_runs(profile, runs):
        for w in profile.runs[name].warnings:
            if w.part == "kernels":
                buf.write(f"# warning: {name} run: {w.text}\n")
    return buf.getvalue()


def kernels_json(profile: RunDocument, top: int = 3, runs: list[str] | None = None) -> str:
    chosen = chosen_runs(profile, runs)
    out: dict[str, Any] = {"schema": KERNELS_SCHEMA, "model": profile.meta.label, "runs": {}}
    for name in chosen:
        run = profile.runs[name]
        section = run.kernels.to_dict() if run.kernels else None
        units = []
        for unit, u in zip(profile.units, run.units):
            k = _kernels(u)
            units.append({"index": u.index, "unit": unit.name,
                          "passes": [r for r in pass_records(profile, name, run) if r["index"] == u.index],
                          "kernels_fwd": k.kernels_fwd[:top], "kernels_bwd": k.kernels_bwd[:top]})
        out["runs"][name] = {"kernels": section, "units": units,
                             "warnings": [w.text for w in run.warnings if w.part == "kernels"]}
    out["note"] = BYTES_NOTE
    return json.dumps(finite(out), indent=1, ensure_ascii=False) + "\n"


def _md_cells(r: KernelRow) -> list[str]:
    first = r.direction == "fwd"
    return [str(r.index) if first else "", r.name if first else "", *_pass_cells(r),
            fmt_opt(r.agreement, ".2f")]


def kernels_markdown(profile: RunDocument, top: int = 3, runs: list[str] | None = None) -> str:
    chosen = chosen_runs(profile, runs)
    parts = [f"# Kernels: {profile.meta.label}"]
    ceilings = next((profile.runs[r].kernels.ceilings for r in chosen if profile.runs[r].kernels), None)
    if ceilings:
        rows = [[f"matmul {p}", f"{t:.3f} TFLOP/s", f"{ceilings.matmul_sizes.get(p, ceilings.matmul_n)}³"]
                for p, t in ceilings.matmul_tflops.items()]
        rows.append(["device copy", f"{ceilings.copy_gbps:.1f} GB/s",
                     f"{ceilings.copy_bytes / 2**20:.0f} MiB"])
        parts += [f"## Ceilings on {ceilings.device} ({ceilings.device_name})",
                  md_table(["measure", "median", "size"], rows)]
    header = ["#", "unit", "", "FLOPs", "other", "bytes", "F/B", "TF/s", "roof", "ms", "kern", "agree"]
    for name in chosen:
        run = profile.runs[name]
        parts += [f"## {name} run per unit",
                  md_table(header, [_md_cells(r) for unit, u in zip(profile.units, run.units)
                                    for r in pass_rows(name, u.index, unit.name, u)])]
        if top > 0:
            kern_rows = [[str(u.index), unit.name, p, "; ".join(
                f"{_short(k['name'])} ×{k['count']} {k['total_ms']:.2f}"
                for k in getattr(_kernels(u), f"kernels_{p}")[:top])]
                for unit, u in zip(profile.units, run.units) for p in ("fwd", "bwd")
                if getattr(_kernels(u), f"kernels_{p}")]
            if kern_rows:
                parts += [f"### {name} run, top {top} kernels/ops per unit and pass (×count, total ms)",
                          md_table(["#", "unit", "", "kernels"], kern_rows)]
        if op_rows(run):
            parts += [f"### {name} run, FLOPs by operator (one training step)",
                      md_table(["operator", "FLOPs", "share", "kind"], op_rows(run))]
        parts.append(run_summary(name, run).plain.replace("\n  warning:", "\n- warning:"))
    parts.append(f"_{BYTES_NOTE}_")
    return "\n\n".join(parts) + "\n"
