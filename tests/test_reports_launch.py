"""The launch section of the report: host beside GPU time per unit, and kernel sums as the GPU-busy
figure (reports/launch_rows.py, docs/design.md §3). Hand-built documents with known numbers
(tests/report_docs.py: launch_document); no torch, no GPU."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from report_docs import (
    FULL_BWD,
    FULL_FWD,
    FULL_HOST_BWD,
    FULL_HOST_FWD,
    LAUNCH_RULE,
    hand_document,
    launch_document,
    plain,
    run_python,
)
from rich.console import Group

from tlprof.document import RunDocument
from tlprof.reports import rich_view
from tlprof.reports.builder import ReportOptions, build_report
from tlprof.reports.csv_view import FIELDS
from tlprof.reports.launch_rows import launch_summary
from tlprof.reports.profile_view import PROFILE_SECTIONS, report_sections
from tlprof.reports.render import render
from tlprof.reports.text import launch_table, section_titles

approx = pytest.approx
TITLE = "Launch-bound units: host time beside GPU time"


def runs(doc: RunDocument):
    return {r.run: r for r in launch_summary(doc).runs}


# -- the rows --------------------------------------------------------------------------------


def test_rows_hold_gpu_and_host_ms_the_flags_and_the_kernel_sums():
    full = runs(launch_document())["full"]
    assert [r.index for r in full.rows] == [1, 2, 3, 4, 5, 6]
    assert [r.gpu_fwd_ms for r in full.rows] == FULL_FWD and [r.gpu_bwd_ms for r in full.rows] == FULL_BWD
    assert [r.host_fwd_ms for r in full.rows] == approx(FULL_HOST_FWD)  # medians of varied samples
    assert [r.host_bwd_ms for r in full.rows] == approx(FULL_HOST_BWD)
    assert [r.passes("host") for r in full.rows] == [["fwd"], ["fwd", "bwd"], [], ["fwd"], [], []]
    assert [r.kernel_fwd_ms for r in full.rows] == [0.2, 0.4, 0.9, 1.5, 1.9, 2.8]
    # by kernels: a pass whose kernel sum is under half its GPU time; unit 1's backward ran 0 ms of 0
    assert [r.passes("kernels") for r in full.rows] == [["fwd"], ["fwd", "bwd"], [], [], [], []]
    assert [r.index for r in full.flagged] == [1, 2, 4]  # host-paced (1, 2, 4) or by kernels (1, 2)
    assert full.gpu_wait_share == approx(0.4) and full.gpu_wait_iqr == approx(0.1)
    assert (full.launch_bound_units, full.kernel_bound_units, full.units) == (3, 2, 6)


def test_kernel_busy_share_is_kernel_ms_over_gpu_ms_summed_over_units():
    by_run = runs(launch_document())
    full, frozen = by_run["full"], by_run["frozen"]
    assert full.kernel_ms == approx(20.4) and full.kernel_gpu_ms == approx(24.0)
    assert full.kernel_busy_share == approx(20.4 / 24)
    assert frozen.kernel_ms == approx(8.0) and frozen.kernel_gpu_ms == approx(16.0)
    assert frozen.kernel_busy_share == approx(0.5)
    # unit 5's passes ran kernels exactly half their GPU time: not launch-bound by kernels
    assert [bool(r.passes("kernels")) for r in frozen.rows] == [True] * 4 + [False] * 2
    assert frozen.kernel_bound_units == 4 and frozen.launch_bound_units == 1
    assert [r.index for r in frozen.flagged] == [1, 2, 3, 4]  # by kernels; only unit 1 host-paced


def test_without_kernel_sums_there_is_no_kernel_figure():
    full = runs(launch_document(kernels=False))["full"]
    assert not full.kernels and full.kernel_busy_share is None and full.kernel_bound_units is None
    assert all(r.kernel_fwd_ms is None and r.fwd_kernel_bound is None for r in full.rows)
    table, hidden = launch_table(full)
    assert "kernel fwd" not in table.header and "by kernels" not in table.header and hidden == 0


def test_a_saved_document_gives_the_same_rows_and_older_ones_none(tmp_path):
    doc = launch_document()
    doc.save(tmp_path / "run.json")
    assert launch_summary(RunDocument.load(tmp_path / "run.json")) == launch_summary(doc)
    assert launch_summary(RunDocument.from_dict(hand_document())) is None
    v1 = RunDocument.load(Path(__file__).parent / "data" / "run_v1.json")  # kernels, no launch
    assert launch_summary(v1) is None and build_report(v1).launch is None


# -- the note --------------------------------------------------------------------------------


def test_the_note_cites_the_kernel_figure_which_decides_where_measured():
    notes = build_report(launch_document()).notes
    # full: GPU-wait share 40% but kernels busy 85% of the units' time: no note
    assert not any(n.startswith("full run:") for n in notes)
    frozen = next(n for n in notes if n.startswith("frozen run:"))
    assert frozen.startswith("frozen run: the GPU ran kernels for only 50% of the units' GPU time "
                             "(kernel sums, --kernels; 4 launch-bound units by kernels; the host-paced "
                             "upper bound: up to 10% of the step, 1 of 6 units)")
    assert "--graph" in frozen
    assert any(n.startswith("claim 2: the frozen/full ratio is host-bound (frozen run") for n in notes)
    # without kernel sums the GPU-wait share decides: full (40%) is noted, frozen (10%) is not
    notes = build_report(launch_document(kernels=False)).notes
    assert any(n.startswith("full run: the GPU waited for the host in up to 40% of the step "
                            "(3 launch-bound units)") for n in notes)
    assert not any(n.startswith("frozen run:") for n in notes)


# -- the section in each view ------------------------------------------------------------------


def test_the_section_is_numbered_after_the_units_where_a_run_has_launch_figures():
    report = build_report(launch_document())
    titles = section_titles(report)
    assert [titles[k][:2] for k in ("units", "launch", "frozen", "cost", "claims")] == [
        "1.", "2.", "3.", "4.", "5."]
    shown = section_titles(report, shown=PROFILE_SECTIONS)
    assert [shown[k][:2] for k in ("launch", "cost", "claims")] == ["1.", "2.", "3."]
    plain_titles = section_titles(build_report(RunDocument.from_dict(hand_document())))
    assert plain_titles["frozen"].startswith("2.") and not plain_titles["launch"][0].isdigit()


def test_every_view_shows_the_section_with_its_figures():
    report = build_report(launch_document())
    text = plain(rich_view.report_view(report))
    assert f"2. {TITLE}" in text and text.index(f"2. {TITLE}") < text.index("3. The frozen run")
    assert "full run: GPU-wait share 40.0% (IQR 10.0%), 3 of 6 units host-paced; kernel-busy share 85.0% " \
           "(Σ kernel 20.4 of Σ GPU 24 ms), 2 units launch-bound by kernels" in text.replace("\n", "")
    assert f"host-paced: {LAUNCH_RULE}" in text
    md = render(report, "markdown")
    assert f"## 2. {TITLE}" in md and "## 3. The frozen run" in md
    assert "| 2 | s1.0.conv1 | 1.00 | 1.00 | 1.00 | 1.00 | 0.40 | 0.30 | fwd bwd | fwd bwd |" in md
    assert "| 6 | head.fc | 3.00 | 0.90 | 6.00 | 1.00 | 2.20 | 3.00 | - | - |" in md  # frozen run
    html = render(report, "html")
    assert f"<h2>2. {TITLE}" in html and "kernel-busy share 50.0%" in html
    # each run under its launch line, which names the run: no heading above it that says it again
    assert "<p>frozen run: GPU-wait share 10.0% (IQR 0.0%)" in html and "<h3>frozen run</h3>" not in html
    launch = json.loads(render(report, "json"))["launch"]
    assert [r["run"] for r in launch["runs"]] == ["full", "frozen"]
    assert launch["runs"][1]["kernel_busy_share"] == approx(0.5)
    assert launch["runs"][0]["rows"][3]["host_fwd_ms"] == approx(2.0)
    compact = plain(Group(*report_sections(launch_document())))
    assert f"1. {TITLE}" in compact and "2. Cost model" in compact and "3. The paper's claims" in compact


def test_no_launch_figures_no_section():
    report = build_report(RunDocument.from_dict(hand_document()))
    assert report.launch is None
    for fmt in ("rich", "markdown", "html", "json"):
        assert "Launch-bound units" not in render(report, fmt)
    assert json.loads(render(report, "json"))["launch"] is None
    assert tuple(next(csv.reader(io.StringIO(render(report, "csv"))))) == FIELDS
    assert "Launch-bound" not in plain(Group(*report_sections(RunDocument.from_dict(hand_document()))))


def test_the_terminal_lists_only_launch_bound_units_of_a_long_run(monkeypatch):
    monkeypatch.setattr(rich_view, "LAUNCH_ROWS", 4)
    text = plain(rich_view.launch_section(build_report(launch_document(kernels=False))), width=120)
    assert "3 units not launch-bound left out" in text  # full: units 1, 2, 4 host-paced
    assert "5 units not launch-bound left out" in text  # frozen: unit 1
    assert "head.fc" not in text and "s1.1.conv1" in text
    full = runs(launch_document(kernels=False))["full"]
    table, hidden = launch_table(full, limit=4)
    assert [row[0] for row in table.rows] == ["1", "2", "4"] and hidden == 3
    assert len(launch_table(full, limit=6)[0].rows) == 6  # no longer than the limit: every unit


def test_csv_adds_host_and_kernel_columns_per_run():
    report = build_report(launch_document())
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert float(rows[0]["host_fwd_ms"]) == approx(0.9) and rows[0]["fwd_launch_bound"] == "1"
    assert rows[1]["bwd_kernel_bound"] == "1" and float(rows[1]["kernel_bwd_ms"]) == approx(0.3)
    assert rows[0]["frozen_fwd_launch_bound"] == "1" and float(rows[3]["frozen_kernel_fwd_ms"]) == 0.5
    text = render(report, "csv")
    assert "# launch: frozen run: gpu_wait_share median 0.1 iqr 0.0, kernel_busy_share 0.5" in text
    assert f"# launch rule: host-paced: {LAUNCH_RULE}" in text
    blocks = {r["name"]: r for r in csv.DictReader(io.StringIO(
        render(build_report(launch_document(), ReportOptions(granularity="block")), "csv")))}
    s10 = blocks["s1.0"]  # units 2 and 3: ms summed, flags counted
    assert float(s10["host_fwd_ms"]) == approx(1.3) and s10["fwd_launch_bound"] == "1"
    assert float(s10["kernel_fwd_ms"]) == approx(1.3) and s10["fwd_kernel_bound"] == "1"
    assert "kernel_fwd_ms" not in render(build_report(launch_document(kernels=False)), "csv")


def test_tlprof_report_re_renders_a_saved_document_without_torch(tmp_path):
    path = tmp_path / "run.json"
    launch_document().save(path)
    code = f"""
import sys
from tlprof.cli import main
for fmt in ("rich", "markdown", "html", "csv", "json"):
    assert main(["report", {str(path)!r}, "--format", fmt, "-o", {str(tmp_path)!r} + "/r." + fmt]) == 0
print("torch" in sys.modules)
"""
    assert run_python(code).strip().splitlines()[-1] == "False"
    assert f"2. {TITLE}" in (tmp_path / "r.rich").read_text()
    assert f"## 2. {TITLE}" in (tmp_path / "r.markdown").read_text()
    assert "kernel-busy share 85.0%" in (tmp_path / "r.html").read_text()
    assert "frozen_host_fwd_ms" in (tmp_path / "r.csv").read_text()
    launch = json.loads((tmp_path / "r.json").read_text())["launch"]
    assert launch["runs"][0]["kernel_busy_share"] == approx(0.85)


def test_a_pass_too_short_to_call_is_not_launch_bound_by_kernels():
    from tlprof.reports.launch_rows import KERNEL_MIN_GPU_MS, _kernel_bound

    assert _kernel_bound(0.0, KERNEL_MIN_GPU_MS / 5) is False  # a replayed frozen unit: no kernels, ~0 ms
    assert _kernel_bound(0.0, KERNEL_MIN_GPU_MS) is True
    assert _kernel_bound(None, 1.0) is None
