"""``compare`` on hand-written documents: each delta's CI, its noise mark and both spreads (issue #12)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from report_docs import hand_document
from rich.console import Console

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
    assert f"| 2 / 2 | {WITHIN_NOISE} |" in md
    console = Console(width=160, color_system=None, record=True, file=io.StringIO())
    console.print(compare_view(c))
    text = console.export_text()
    assert "95% CI of Δ" in text and WITHIN_NOISE in text and "IQR A / B" in text
