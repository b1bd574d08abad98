"""The report as Markdown: headings and pipe tables, every unit and every k."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tlprof.reports.builder import Report
from tlprof.reports.text import (
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
    settings_line,
    uniformity_lines,
    unit_cells,
    unit_columns,
)


class Md(str):
    """Text that is already Markdown: left as it is by ``md_table``."""


def md_escape(text: str) -> str:
    if isinstance(text, Md):
        return text
    return text.replace("|", "\\|").replace("*", "\\*")


BLANK = ("", "-")  # a cell with no figure in it


def is_num_column(cells: Sequence[str]) -> bool:
    """A column of figures: every cell with something in it is a number."""
    return all(is_num(c) for c in cells if c not in BLANK)


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A pipe table; a column of figures (``is_num_column``) right-aligned."""
    align = ["---:" if is_num_column([row[i] for row in rows]) else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(md_escape(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def md_tables(tables: Iterable[TextTable]) -> list[str]:
    """Each table under its title."""
    return [part for t in tables for part in (f"{t.title}:", md_table(t.header, t.rows))]


def units_md(report: Report) -> str:
    rows = [unit_cells(report, r) for r in report.rows()]
    return md_table(unit_columns(report), rows)


def frozen_md(report: Report) -> str:
    f = report.frozen
    if f is None:
        return "Not measured: profile with `--freeze N`."
    parts = [frozen_sentence(f, strong=lambda x: f"**{x}**"), *md_tables(frozen_tables(f))]
    return "\n\n".join(parts)


def cost_md(report: Report) -> str:
    cm = report.cost_model
    parts = ["\n".join(f"- {note}" for note in cost_notes(report))]
    for name, row in cm.rows.items():
        rows = [[str(k), fmt_num(row.classic[i]), fmt_num(row.transfer[i]), fmt_ratio(row.ratio[i]),
                 fmt_num(row.marginal_transfer[i])] for i, k in enumerate(cm.k)]
        once = f"; paid once, with model 2: {fmt_num(row.shared_once)}" if row.shared_once else ""
        parts.append(
            f"**{ROW_TITLES.get(name, name)}** (`{name}`): {row.formula}. "
            f"Departs from the paper: {row.departs}. Model 1 (a full training): "
            f"{fmt_num(row.first_model)}; each later model: classic {fmt_num(row.per_model_classic)}, "
            f"transfer {fmt_num(row.per_model_transfer)}{once} {cm.unit}; "
            f"ratio → {fmt_ratio(row.limit_ratio)} as k grows. Marginal = what model k adds.\n\n"
            + md_table(["k", "classic", "transfer", "ratio", "marginal"], rows)
        )
    example = example_table(report)
    if example is not None:
        parts += md_tables([example])
    return "\n\n".join(parts)


def distributed_md(report: Report) -> str:
    d = report.distributed
    parts = md_tables(distributed_tables(d))
    parts.append("\n".join(f"- {line}" for line in [*d.verdicts, *padding_lines(d)]))
    return "\n\n".join(parts)


def launch_md(report: Report) -> str:
    """Per run: its launch line and every unit; then the rules."""
    s = report.launch
    parts = md_tables(launch_table(r)[0] for r in s.runs)
    parts.append("\n".join(f"- {rule}" for rule in launch_rules(s)))
    return "\n\n".join(parts)


def claims_md(report: Report) -> str:
    rows = [[str(i), c.claim, Md(f"**{c.verdict}**"), c.evidence] for i, c in enumerate(report.claims, 1)]
    return md_table(["#", "the paper says", "verdict", "measured"], rows)


def render_markdown(report: Report) -> str:
    t = section_titles(report)
    parts = [
        f"# {headline(report)}",
        settings_line(report),
        f"## {t['units']}", units_md(report),
        f"### {t['uniformity']}", md_table(["figure", "value"], uniformity_lines(report)),
    ]
    if report.launch is not None:
        parts += [f"## {t['launch']}", launch_md(report)]
    parts += [f"## {t['frozen']}", frozen_md(report)]
    if report.cached is not None:
        parts += [f"### {t['cached']}", md_table(["figure", "value"], cached_lines(report))]
    parts += [f"## {t['cost']}", cost_md(report)]
    if report.distributed is not None:
        parts += [f"## {t['distributed']}", distributed_md(report)]
    parts += [f"## {t['claims']}", claims_md(report)]
    if report.notes:
        parts.append("\n".join(f"- {n}" for n in report.notes))
    if report.warnings:
        parts.append("\n".join(f"- **warning**: {w}" for w in report.warnings))
    return "\n\n".join(parts) + "\n"
