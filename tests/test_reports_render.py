"""Each renderer on the hand-written document: golden rich text, structure of the others."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_docs import UNITS, hand_document, plain
from rich.console import Group

from tlprof.document import RunDocument
from tlprof.reports.builder import ReportOptions, build_report
from tlprof.reports.csv_view import FIELDS
from tlprof.reports.profile_view import report_sections
from tlprof.reports.render import render, write_plots
from tlprof.reports.rich_view import report_view

GOLDEN = Path(__file__).parent / "golden" / "report_rich.txt"


def build(**options):
    return build_report(RunDocument.from_dict(hand_document()), ReportOptions(**{"models": 3, **options}))


def test_rich_report_matches_golden_text():
    # To update after a deliberate change: write plain(report_view(build())) to GOLDEN and review.
    assert plain(report_view(build())) == GOLDEN.read_text()


def test_rich_sections_at_block_granularity():
    text = plain(report_view(build(granularity="block")))
    assert "1. Empirical t per block" in text
    assert "2–3  s1.0" in text  # units 2 and 3 as one block
    assert "s1.0.conv1" not in text.split("Uniformity")[0]


def compact_view(doc: RunDocument) -> Group:
    return Group(*report_sections(doc))


def test_compact_view_for_the_profile_command():
    text = plain(compact_view(RunDocument.from_dict(hand_document())))
    assert "1. Cost model" in text and "2. The paper's claims" in text
    assert "k=3" in text and "k=4" not in text
    doc = hand_document()
    del doc["runs"]["full"]
    assert "no report" in plain(compact_view(RunDocument.from_dict(doc)))


def _table_rows(md: str, header_start: str) -> list[list[str]]:
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


def test_markdown_structure():
    md = render(build(), "markdown")
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert headings[0].startswith("# tlprof report: handmade")
    for title in ("## 1. Empirical t per unit", "## 2. The frozen run", "## 3. Cost model",
                  "## 4. The paper's claims"):
        assert any(h.startswith(title) for h in headings), title
    units = _table_rows(md, "| # | unit")
    assert len(units) == 2 + len(UNITS)  # header, alignment, one row per unit
    assert all(len(row) == len(units[0]) for row in units)
    assert units[-1][:2] == ["6", "head.fc"]
    assert "| 3 | 72 | 40 | 0.556 | 8 |" in md  # paper_uniform at k = 3
    assert "| 3 | 84 | 64 | 0.762 | 18 |" in md  # measured at k = 3: 28 + 2·18
    assert "| the paper (L = 50, N = 45) | 150 | 60 | 0.400 |" in md
    assert "| measured steps | 18 | 13.7 | 0.762 |" in md  # 6 h · 64/28
    assert "**refuted**" in md


@pytest.mark.parametrize("fmt", ["rich", "markdown", "html"])
@pytest.mark.parametrize("data_per_model", [False, True])
def test_every_format_states_the_counting_and_the_cached_assumption(fmt, data_per_model):
    text = render(build(data_per_model=data_per_model), fmt)
    assert "model 1 trains in full" in text and "T_transfer(1) = T_classic(1)" in text
    assert ("data per model" if data_per_model else "share the data") in text
    assert ("share the data" if data_per_model else "data per model") not in text
    assert "The paper's example at k = 3".replace("'", "&#x27;" if fmt == "html" else "'") in text
    assert "the paper (L = 50, N = 45)" in text


def test_csv_rows_per_granularity():
    for granularity, names in (("unit", [u[0] for u in UNITS]),
                               ("block", ["stem", "s1.0", "s1.1", "s2.0", "head"]),
                               ("stage", ["stem", "s1", "s2", "head"])):
        rows = list(csv.DictReader(io.StringIO(render(build(granularity=granularity), "csv"))))
        assert [r["name"] for r in rows] == names
        assert tuple(rows[0]) == FIELDS
    rows = list(csv.DictReader(io.StringIO(render(build(), "csv"))))
    assert [float(r["t_ms"]) for r in rows] == [1, 2, 3, 4, 5, 9]
    assert float(rows[-1]["frozen_bwd_ms"]) == 6.0 and rows[-1]["trainable_units"] == "1"


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.external.append(value)


def test_html_is_self_contained_with_plots():
    html = render(build(), "html")
    parser = _Collect()
    parser.feed(html)
    assert parser.external == []  # nothing fetched: no scripts, links or images
    assert parser.tags.count("svg") == 4  # full and frozen bars, cumulative share, T(k)
    assert parser.tags.count("table") >= 6
    assert html.count("<h2>") == 5 and "<h2>Run settings</h2>" in html
    for svg in html.split("<svg")[1:]:
        ET.fromstring("<svg" + svg.split("</svg>")[0] + "</svg>")  # each plot is well-formed XML
    assert 'class="refuted"' in html


def test_json_renderer_is_the_report_document():
    d = json.loads(render(build(), "json"))
    assert d["schema"] == "tlprof.report/2" and d["t_ms"] == [1, 2, 3, 4, 5, 9]


def test_plots_written_as_svg(tmp_path):
    paths = write_plots(build(), tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["cost_model.svg", "cumulative_share.svg",
                                              "units_frozen.svg", "units_full.svg"]
    for p in paths:
        root = ET.parse(p).getroot()
        assert root.tag.endswith("svg")


@pytest.mark.parametrize("fmt", ["markdown", "html", "csv", "json", "rich"])
def test_every_format_renders_without_a_frozen_run(fmt):
    doc = hand_document(cached=False)
    del doc["runs"]["frozen"]
    text = render(build_report(RunDocument.from_dict(doc), ReportOptions()), fmt)
    assert text.strip()


def _few_noisy_steps() -> dict:
    """One measured step in the frozen run, a noisy cached step: notes and "not enough evidence"."""
    doc = hand_document()
    doc["runs"]["frozen"]["step_ms"]["samples"] = [18.0]
    doc["runs"]["cached"]["step_ms"]["samples"] = [4.0, 6.0, 10.0, 20.0, 40.0]
    return doc


def test_profile_view_prints_the_reports_notes():
    from tlprof.reports.profile_view import profile_view

    doc = RunDocument.from_dict(_few_noisy_steps())
    notes = build_report(doc).notes
    assert any("1 measured step(s)" in n for n in notes) and any("unreliable" in n for n in notes)
    text = plain(profile_view(doc), width=1000)
    for note in notes:
        assert f"note: {note}" in text
    assert "not enough evidence" in text
    assert "frozen/full step time: 0.643 [0.610, 0.679], 95% CI, n = 1/5" in text  # the full run's spread
    assert "instrumented / plain" in text and "1.000 [0.92, 1.09]" in text  # the full run's overhead


@pytest.mark.parametrize("fmt", ["rich", "markdown", "html"])
def test_every_format_shows_not_enough_evidence_and_the_ci(fmt):
    text = render(build_report(RunDocument.from_dict(_few_noisy_steps()), ReportOptions()), fmt)
    assert "not enough evidence" in text
    assert "0.357 [0.143, 1.429], 95% CI, n = 5/5" in text  # h_N / full step: 4..40 ms over 26.5..29.5
    if fmt == "html":
        assert 'class="not-enough"' in text
    full = render(build(), fmt).replace("<b>", "").replace("</b>", "").replace("**", "")
    assert "0.643 [0.610, 0.679], 95% CI, n = 5/5" in full


def test_html_shows_the_kernels_and_roofline_when_measured():
    data = Path(__file__).parent / "data"
    html = render(build_report(RunDocument.load(data / "run_v1.json")), "html")
    assert "<h2>Below the layer: FLOPs, bytes and the roofline (--kernels)</h2>" in html
    assert "<title>Roofline (fp32 matmul peak" in html and html.count("<circle") >= 12
    assert "stage1.1.conv2" in html.split("Below the layer")[1]
    plain_html = render(build_report(RunDocument.load(data / "run_v1_freeze2.json")), "html")
    assert "Below the layer" not in plain_html and "Roofline" not in plain_html


def test_sections_are_numbered_in_the_order_each_view_shows_them():
    from types import SimpleNamespace

    from tlprof.reports.profile_view import PROFILE_SECTIONS
    from tlprof.reports.text import section_titles

    report = build()
    full = section_titles(report)
    assert [full[k][:2] for k in ("units", "frozen", "cost", "claims")] == ["1.", "2.", "3.", "4."]
    report.distributed = SimpleNamespace(world_size=2, backend="gloo")
    full = section_titles(report)
    assert full["distributed"].startswith("4. Data parallelism: 2 ranks") and full["claims"][:2] == "5."
    shown = section_titles(report, shown=PROFILE_SECTIONS)
    assert [shown[k][:2] for k in ("cost", "distributed", "claims")] == ["1.", "2.", "3."]
    assert not shown["units"][0].isdigit()


def test_units_across_ranks_are_listed_widest_first_and_say_so():
    from tlprof.reports.builder import DistributedSummary, Part, RankSummary, UnitSpread
    from tlprof.reports.text import distributed_tables

    units = [UnitSpread(1, "a", 1.0, 1.1, 1.1, 1), UnitSpread(2, "b", 1.0, 3.0, 3.0, 0),
             UnitSpread(3, "c", 2.0, 2.5, 1.25, 1)]  # max − min: 0.1, 2, 0.5
    d = DistributedSummary(2, "gloo", [], [RankSummary("full", [], 1, 1.0, 1.0, units, False, "")],
                           [Part("compute", 6.0, 0.6), Part("exposed communication", 4.0, 0.4, 512)], [],
                           saved_ms=10.0)
    for limit in (None, 2):  # every unit (Markdown, HTML) or the widest (the terminal): the same order
        spread = next(t for t in distributed_tables(d, limit) if "across ranks" in t.title)
        assert spread.title == "full run: t per unit across ranks (widest first)"
        assert [row[1] for row in spread.rows] == ["b", "c", "a"][:limit]
    saving = distributed_tables(d)[-1]
    assert saving.title.startswith("Where the frozen saving of 10 ms per step comes from")
    assert saving.rows[1] == ["exposed communication", "4", "40.0%", "512B"]
