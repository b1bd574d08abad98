"""The report as one self-contained HTML page: inline CSS, the plots as inline SVG."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from tlprof.reports.builder import HOLDS, NOT_ENOUGH, REFUTED, Report
from tlprof.reports.provenance import settings
from tlprof.reports.svg import report_plots
from tlprof.reports.text import (
    PER_LATER_MODEL,
    ROW_TITLES,
    TextTable,
    cached_lines,
    cost_notes,
    distributed_tables,
    example_table,
    fmt_num,
    fmt_ratio,
    frozen_sentence,
    frozen_tables,
    headline,
    is_num,
    launch_rules,
    launch_table,
    padding_lines,
    section_titles,
    uniformity_lines,
    unit_cells,
    unit_columns,
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { padding: 2px 8px; border-bottom: 1px solid #e4e4e4; }
th { background: #f4f4f4; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.holds { color: #1a7f37; font-weight: bold; }
.refuted { color: #c62828; font-weight: bold; }
.not-enough { color: #a15c00; font-weight: bold; }
.dim { color: #777; }
.warning { color: #a15c00; }
figure { margin: 0.5em 0 1.5em; }
"""

VERDICT_CLASS = {HOLDS: "holds", REFUTED: "refuted", NOT_ENOUGH: "not-enough"}


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], raw_cols: Sequence[int] = ()) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            text = cell if i in raw_cols else escape(cell)
            cls = ' class="num"' if is_num(cell) else ""
            cells.append(f"<td{cls}>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def html_tables(tables: Iterable[TextTable], tag: str = "h3") -> list[str]:
    """Each table under its title, as an ``<h3>`` (or another element: ``tag``)."""
    return [part for t in tables
            for part in (f"<{tag}>{escape(t.title)}</{tag}>", html_table(t.header, t.rows))]


def _frozen_html(report: Report) -> str:
    f = report.frozen
    if f is None:
        return '<p class="dim">Not measured: profile with <code>--freeze N</code>.</p>'
    parts = [f"<p>{frozen_sentence(f, strong=lambda x: f'<b>{x}</b>')}</p>", *html_tables(frozen_tables(f))]
    return "\n".join(parts)


def _cost_html(report: Report) -> str:
    cm = report.cost_model
    header = ["k"]
    for name in cm.rows:
        title = ROW_TITLES.get(name, name)
        header += [f"{title}: classic", "transfer", "ratio"]
    rows = []
    for i, k in enumerate(cm.k):
        row = [str(k)]
        for r in cm.rows.values():
            row += [fmt_num(r.classic[i]), fmt_num(r.transfer[i]), fmt_ratio(r.ratio[i])]
        rows.append(row)
    summary = html_table(
        ["row", "formula", "model 1 (full)", f"{PER_LATER_MODEL}, classic", f"{PER_LATER_MODEL}, transfer",
         "paid once, with model 2", "ratio k→∞", "departs from the paper"],
        [[ROW_TITLES.get(n, n), r.formula, fmt_num(r.first_model), fmt_num(r.per_model_classic),
          fmt_num(r.per_model_transfer), fmt_num(r.shared_once), fmt_ratio(r.limit_ratio), r.departs]
         for n, r in cm.rows.items()])
    notes = "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in cost_notes(report)) + "</ul>"
    parts = [notes, summary, html_table(header, rows)]
    example = example_table(report)
    if example is not None:
        parts += html_tables([example])
    return "\n".join(parts)


def _distributed_html(report: Report) -> str:
    d = report.distributed
    parts = html_tables(distributed_tables(d))
    parts.append("<ul>" + "".join(f"<li>{escape(line)}</li>" for line in [*d.verdicts, *padding_lines(d)])
                 + "</ul>")
    return "\n".join(parts)


def _launch_html(report: Report) -> str:
    s = report.launch
    parts = html_tables((launch_table(r)[0] for r in s.runs), tag="p")  # "{run} run: GPU-wait share..."
    parts.append('<ul class="dim">' + "".join(f"<li>{escape(rule)}</li>" for rule in launch_rules(s))
                 + "</ul>")
    return "\n".join(parts)


def _claims_html(report: Report) -> str:
    rows = [[str(i), c.claim,
             f'<span class="{VERDICT_CLASS.get(c.verdict, "dim")}">{escape(c.verdict)}</span>',
             c.evidence] for i, c in enumerate(report.claims, 1)]
    return html_table(["#", "the paper says", "verdict", "measured"], rows, raw_cols=(2,))


def _figure(svg: str) -> str:
    return f"<figure>{svg}</figure>"


KERNEL_COLUMNS = ["run", "#", "unit", "pass", "FLOPs", "bytes", "FLOP/byte", "TFLOP/s", "% of roof",
                  "bound", "measured ms", "kernel ms"]


def _kernels_html(report: Report) -> str:
    k = report.kernels
    rows = [[r.run, str(r.index), r.name, r.direction, fmt_num(r.flops), fmt_num(r.bytes),
             fmt_num(r.intensity), fmt_num(r.achieved_tflops), fmt_num(r.pct_of_roof), r.bound or "-",
             fmt_num(r.measured_ms), fmt_num(r.kernel_ms)] for r in k.rows]
    agreement = "; ".join(f"{run}: kernel sum / measured {fmt_num(a)}" for run, a in k.agreement.items())
    return (f"<p>{escape(agreement)} (docs/kernels.md: FLOPs of matmuls and convolutions, bytes a "
            "lower bound on traffic)</p>" + html_table(KERNEL_COLUMNS, rows))


def render_html(report: Report) -> str:
    t = section_titles(report)
    plots = report_plots(report)
    body = [
        f"<h1>{escape(headline(report))}</h1>",
        "<h2>Run settings</h2>", html_table(["setting", "value"], settings(report.source)),
        f"<h2>{escape(t['units'])}</h2>",
        _figure(plots["units_full"]),
        _figure(plots["units_frozen"]) if "units_frozen" in plots else "",
        _figure(plots["cumulative_share"]),
        html_table(unit_columns(report), [unit_cells(report, r) for r in report.rows()]),
        f"<h3>{escape(t['uniformity'])}</h3>",
        html_table(["figure", "value"], uniformity_lines(report)),
    ]
    if report.launch is not None:
        body += [f"<h2>{escape(t['launch'])}</h2>", _launch_html(report)]
    body += [
        f"<h2>{escape(t['frozen'])}</h2>",
        _frozen_html(report),
    ]
    if report.cached is not None:
        body += [f"<h3>{escape(t['cached'])}</h3>", html_table(["figure", "value"], cached_lines(report))]
    body += [
        f"<h2>{escape(t['cost'])}</h2>", _figure(plots["cost_model"]), _cost_html(report),
    ]
    if report.distributed is not None:
        body += [f"<h2>{escape(t['distributed'])}</h2>", _distributed_html(report)]
    if report.kernels is not None:
        body += ["<h2>Below the layer: FLOPs, bytes and the roofline (--kernels)</h2>",
                 _figure(plots["roofline"]) if "roofline" in plots else "", _kernels_html(report)]
    body += [f"<h2>{escape(t['claims'])}</h2>", _claims_html(report)]
    if report.notes:
        body.append("<ul class=\"dim\">" + "".join(f"<li>{escape(n)}</li>" for n in report.notes)
                    + "</ul>")
    if report.warnings:
        body.append("<ul class=\"warning\">" + "".join(
            f"<li><b>warning</b>: {escape(str(w))}</li>" for w in report.warnings) + "</ul>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{escape(headline(report))}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body>\n</html>\n"
    )
