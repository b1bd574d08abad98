"""The report as rich renderables: one per section, the whole report a ``Group``."""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tlprof.reports.builder import HOLDS, NOT_ENOUGH, REFUTED, Report
from tlprof.reports.text import (
    LAUNCH_ROWS,
    PER_LATER_MODEL,
    ROW_TITLES,
    UNIT_SPREAD_ROWS,
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
    hidden_line,
    launch_rules,
    launch_table,
    padding_lines,
    section_titles,
    settings_line,
    shown_ks,
    uniformity_lines,
    unit_cells,
    unit_columns,
)

VERDICT_STYLE = {HOLDS: "green", REFUTED: "bold red", NOT_ENOUGH: "yellow"}
LEFT_COLUMNS = {"unit", "block", "stage", "train"}
TEXT_COLUMNS = ("unit", "host", "host-paced", "by kernels")  # left-justified in a TextTable
TERMINAL_DROPS = {"saved"}  # per-unit saved bytes: in the profile table and the other formats


def _table(title: str | None, **kwargs) -> Table:
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                 padding=(0, 0, 0, 1), **kwargs)


def _pairs(title: str, pairs: list[tuple[str, str]]) -> Table:
    table = _table(title, show_header=False)
    table.add_column("", no_wrap=True)
    table.add_column("")
    for key, value in pairs:
        table.add_row(key, value)
    return table


def units_section(report: Report) -> Table:
    table = _table(section_titles(report)["units"])
    columns = unit_columns(report)
    keep = [i for i, col in enumerate(columns) if col not in TERMINAL_DROPS]
    rows = [[cells[i] for i in keep] for cells in (unit_cells(report, r) for r in report.rows())]
    for i, col in enumerate(columns[i] for i in keep):
        if col in LEFT_COLUMNS:
            table.add_column(col, no_wrap=True)
        else:
            widest = max((len(r[i]) for r in rows), default=1)
            table.add_column(col.replace(" ", "\n"), justify="right", no_wrap=True, min_width=widest)
    for cells in rows:
        table.add_row(*cells)
    return table


def uniformity_section(report: Report) -> Table:
    return _pairs(section_titles(report)["uniformity"], uniformity_lines(report))


def frozen_section(report: Report) -> RenderableType:
    f = report.frozen
    title = section_titles(report)["frozen"]
    if f is None:
        return Text(f"{title}: not measured (profile with --freeze N)", style="dim")
    return Group(Text(f"{title}\n{frozen_sentence(f)}"), *(_text_table(t) for t in frozen_tables(f)))


def _text_table(t: TextTable, titled: bool = True, stacked: bool = False) -> Table:
    """The first column and TEXT_COLUMNS left-justified, the rest right. ``titled=False``: the caller
    prints the title. ``stacked``, for a wide table of figures: a figure's header a word a line, no cell
    wrapped, and only TEXT_COLUMNS left-justified."""
    table = _table(t.title if titled else None)
    for i, col in enumerate(t.header):
        left = col in TEXT_COLUMNS or (i == 0 and not stacked)
        table.add_column(col.replace(" ", "\n") if stacked and not left else col,
                         justify="left" if left else "right", no_wrap=stacked)
    for row in t.rows:
        table.add_row(*row)
    return table


def distributed_section(report: Report, titles: dict[str, str] | None = None) -> RenderableType:
    d = report.distributed
    if d is None:
        return Group()
    tables = [_text_table(t) for t in distributed_tables(d, UNIT_SPREAD_ROWS)]
    lines = "\n".join([*d.verdicts, *padding_lines(d)])
    return Group(Text((titles or section_titles(report))["distributed"], style="bold"), *tables, Text(lines))


def launch_section(report: Report, titles: dict[str, str] | None = None) -> RenderableType:
    """Per run: its launch line over its units (past LAUNCH_ROWS units, only the launch-bound ones),
    then what the figures are and the rules."""
    s = report.launch
    if s is None:
        return Group()
    parts: list[RenderableType] = [Text((titles or section_titles(report))["launch"], style="bold")]
    for r in s.runs:
        t, hidden = launch_table(r, LAUNCH_ROWS)
        parts.append(Text(t.title))  # the run's line, as wide as the terminal
        if t.rows:
            parts.append(_text_table(t, titled=False, stacked=True))
        if hidden:
            parts.append(Text(hidden_line(hidden), style="dim"))
    parts.append(Text("\n".join(launch_rules(s)) + "\n", style="dim"))
    return Group(*parts)


def cached_section(report: Report) -> RenderableType:
    if report.cached is None:
        return Group()
    return _pairs(section_titles(report)["cached"], cached_lines(report))


def cost_section(report: Report, titles: dict[str, str] | None = None) -> Group:
    cm = report.cost_model
    ks = shown_ks(cm.k)
    idx = [cm.k.index(k) for k in ks]
    rows: list[list[str]] = []
    for name, row in cm.rows.items():
        rows.append([ROW_TITLES.get(name, name), "classic", *(fmt_num(row.classic[i]) for i in idx),
                     fmt_num(row.per_model_classic), ""])
        rows.append(["", "transfer", *(fmt_num(row.transfer[i]) for i in idx),
                     fmt_num(row.per_model_transfer), ""])
        rows.append(["", "ratio", *(fmt_ratio(row.ratio[i]) for i in idx), "",
                     fmt_ratio(row.limit_ratio)])
    table = _table((titles or section_titles(report))["cost"])
    headers = ["row", "", *(f"k={k}" for k in ks), PER_LATER_MODEL.replace(" model", "\nmodel"), "k→∞"]
    for i, header in enumerate(headers):
        widest = max(len(r[i]) for r in rows)
        table.add_column(header, justify="left" if i < 2 else "right", no_wrap=i > 0,
                         min_width=widest if i > 0 else None)
    for n, cells in enumerate(rows):
        table.add_row(*cells, end_section=n % 3 == 2)
    return Group(table, Text("\n".join(cost_notes(report)) + "\n"))


def example_section(report: Report) -> RenderableType:
    table = example_table(report)
    return Group() if table is None else _text_table(table)


def claims_section(report: Report, titles: dict[str, str] | None = None) -> Table:
    table = _table((titles or section_titles(report))["claims"], show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("the paper says")
    table.add_column("verdict", no_wrap=True)
    table.add_column("measured")
    for i, c in enumerate(report.claims, 1):
        table.add_row(str(i), c.claim, Text(c.verdict, style=VERDICT_STYLE.get(c.verdict, "dim")),
                      c.evidence, end_section=True)
    return table


def notes_section(report: Report) -> RenderableType:
    if not report.notes:
        return Group()
    return Text("\n".join(f"note: {n}" for n in report.notes), style="dim")


def warnings_section(report: Report) -> RenderableType:
    if not report.warnings:
        return Group()
    return Text("\n".join(f"warning: {w}" for w in report.warnings), style="yellow")


def report_view(report: Report) -> Group:
    return Group(
        Text(headline(report), style="bold"),
        Text(settings_line(report), style="dim"),
        units_section(report),
        uniformity_section(report),
        launch_section(report),
        frozen_section(report),
        cached_section(report),
        cost_section(report),
        example_section(report),
        distributed_section(report),
        claims_section(report),
        notes_section(report),
        warnings_section(report),
    )
