"""One entry point per output format; all take the built report and return text."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from tlprof.reports.builder import Report
from tlprof.reports.csv_view import render_csv
from tlprof.reports.html_view import render_html
from tlprof.reports.markdown import render_markdown
from tlprof.reports.rich_view import report_view
from tlprof.reports.svg import report_plots

FORMATS = ("rich", "markdown", "html", "csv", "json")
TEXT_WIDTH = 120  # rich output written to a file


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=1, ensure_ascii=False) + "\n"


def render_text(report: Report, width: int = TEXT_WIDTH) -> str:
    """The rich report as plain text (no colour), for ``-o`` files."""
    console = Console(width=width, color_system=None, record=True, file=io.StringIO())
    console.print(report_view(report))
    return console.export_text()


def render(report: Report, fmt: str) -> str:
    renderers = {"rich": render_text, "markdown": render_markdown, "html": render_html,
                 "csv": render_csv, "json": render_json}
    return renderers[fmt](report)


def write_plots(report: Report, directory: str | Path) -> list[Path]:
    """Every plot as an SVG file in ``directory`` (created if missing)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, svg in report_plots(report).items():
        path = out / f"{name}.svg"
        path.write_text(svg + "\n")
        paths.append(path)
    return paths
