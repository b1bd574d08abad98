"""``compare`` on hand-written documents: each delta's CI, its noise mark and both spreads (issue #12)."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from report_docs import hand_document, plain

from tlprof.document import RunDocument
from tlprof.reports.compare import (
    FEW_STEPS,
    WITHIN_NOISE,
    compare,
    compare_csv,
    compare_markdown,
    compare_view,
)

FULL_STEPS = [26.5, 27.0, 28.0, 29.0, 29.5]


def pair(shift_ms: float):
    a, b = hand_document(cached=False), hand_document(cached=False)
    b["runs"]["full"]["step_ms"]["samples"] = [x + shift_ms for x in FULL_STEPS]
    return compare(RunDocument.from_dict(a), RunDocument.from_dict(b))


def deltas(c, run="full"):
    return {d.name: d for d in next(rc for rc in c.runs if rc.run == run).summary}


def test_a_shift_inside_the_steps_spread_is_within_noise():
    step = deltas(pair(0.5))["step"]
    assert step.delta_ms == pytest.approx(0.5)
    assert step.ci.contains(0.0) and step.ci.contains(0.5)
    assert step.noise == WITHIN_NOISE
    assert (step.a_iqr_ms, step.b_iqr_ms) == (2.0, 2.0)  # 27 → 29 in both


def test_a_shift_beyond_the_spread_is_marked_as_real():
    step = deltas(pair(10.0))["step"]
    assert step.ci.low > 5 and step.noise == ""


def test_too_few_steps_are_marked_not_judged():
    d = deltas(pair(10.0))
    assert d["optimizer"].ci.n == 1 and d["optimizer"].noise == FEW_STEPS  # one phase sample each
    units = d["units forward"]  # every unit has 5 identical steps: per-step totals, CI a point
    assert (units.ci.low, units.ci.high) == (0.0, 0.0) and units.noise == WITHIN_NOISE
    assert units.a_iqr_ms is None


def test_every_format_carries_the_ci_and_the_mark():
    c = pair(0.5)
    d = json.loads(json.dumps(c.to_dict(), allow_nan=False))
    step = d["runs"]["full"]["summary"][0]
    assert step["noise"] == WITHIN_NOISE and step["ci"]["low"] < 0 < step["ci"]["high"]
    assert (step["a_iqr_ms"], step["b_iqr_ms"]) == (2.0, 2.0) and step["ci"]["n_a"] == 5
    rows = list(csv.DictReader(io.StringIO(compare_csv(c))))
    first = rows[0]
    assert first["name"] == "step" and first["noise"] == WITHIN_NOISE and first["n_a"] == "5"
    assert float(first["delta_low_ms"]) < 0 < float(first["delta_high_ms"])
    md = compare_markdown(c)
    assert "| figure | A | B | Δ ms | B/A | 95% CI of Δ | IQR A / B | noise |" in md
    assert f"| step | 28 | 28.5 | +0.5 | 1.018 | [-2, +3] | 2 / 2 | {WITHIN_NOISE} |" in md
    # the terminal's step row (the full run's, the first): its CI, both IQRs and the mark
    step_row = r"^ step +28 +{} +{} +[\d.]+ +{} +2 / 2 *{} *$"
    text = plain(compare_view(c), width=160)
    assert re.search(step_row.format(r"28\.5", r"\+0\.5", r"\[-2, \+3\]", WITHIN_NOISE), text, re.M)
    text = plain(compare_view(pair(10.0)), width=160)  # clear of the noise: no mark
    assert re.search(step_row.format("38", r"\+10", r"\[\+7\.5, \+12\.5\]", ""), text, re.M)


def test_markdown_right_aligns_only_columns_of_figures():
    a, b = hand_document(cached=False), hand_document(cached=False)
    b["meta"]["optimizer"] = "adam"
    md = compare_markdown(compare(RunDocument.from_dict(a), RunDocument.from_dict(b)))
    lines = md.splitlines()
    # the settings are text (model handmade, optimizer sgd...): every column left-aligned
    assert lines[lines.index("| setting | A | B |  |") + 1] == "| --- | --- | --- | --- |"
    assert "| optimizer | sgd | adam | differs |" in md
    # the summary: figures right-aligned; the figure's name and the noise mark left
    header = "| figure | A | B | Δ ms | B/A | 95% CI of Δ | IQR A / B | noise |"
    assert lines[lines.index(header) + 1] == "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
