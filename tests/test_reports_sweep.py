"""The sweep report on hand-made runs: frozen/full with its CI per depth, neighbours inside the noise."""

from __future__ import annotations

import copy
import csv
import io

import pytest
from report_docs import hand_document

from tlprof.document import RunDocument, Sweep, SweepPoint
from tlprof.reports.sweep import FEW_STEPS, NOISE_MARK, build_sweep_report, sweep_csv, sweep_markdown
from tlprof.stats import Stats


def hand_sweep(frozen_steps: dict[int, list[float]]) -> Sweep:
    doc = RunDocument.from_dict(hand_document(cached=False))
    points = []
    for depth, steps in frozen_steps.items():
        run = copy.deepcopy(doc.runs["frozen"])
        run.freeze, run.step_ms, run.plain_step_ms = depth, Stats(list(steps)), Stats(list(steps))
        points.append(SweepPoint(depth, {"frozen": run}))
    return Sweep(doc.meta, doc.units, doc.runs["full"], points, list(frozen_steps), ["frozen"])


def test_each_depth_has_its_ci_and_neighbours_inside_the_noise_are_marked():
    # full step 26.5..29.5 (median 28); frozen steps fixed, so each CI is 18/28-like over the full's spread
    rep = build_sweep_report(hand_sweep({2: [24.0] * 5, 4: [18.0] * 5, 5: [17.8] * 5, 6: [10.0]}))
    rows = {r.freeze: r for r in rep.rows}
    assert rows[0].noise == "" and (rows[0].step_ratio_low, rows[0].step_ratio_high) == (1.0, 1.0)
    assert rows[4].step_ratio_low < 18 / 28 < rows[4].step_ratio_high
    assert rows[2].step_ratio_high < 1.0 and rows[2].noise == ""  # clear of the full run's 1
    assert rows[4].step_ratio_high < rows[2].step_ratio_low and rows[4].noise == ""
    assert rows[5].noise == NOISE_MARK  # 17.8 vs 18: the CIs overlap
    assert rows[6].noise == FEW_STEPS and rows[6].steps == 1


def test_formats_show_the_ci_and_the_mark():
    rep = build_sweep_report(hand_sweep({4: [18.0] * 5, 5: [17.8] * 5}))
    # depth 5: paper 1/6; Σt tail 9/24; frozen/full 17.8/28, its CI 17.8 over the full run's bootstrap
    # medians 29.5..26.5; est. (Σf 10 + b_6 6 + phases 4) / 28; inside the noise of depth 4's 18/28
    assert ("| 5 | 1 | 0.167 | 0.375 | 17.8 | 0.636 | [0.603, 0.672] | ~ | 0.714 | - | - | 200B | 200B |"
            in sweep_markdown(rep))
    depth5 = next(r for r in csv.DictReader(io.StringIO(sweep_csv(rep))) if r["freeze"] == "5")
    assert float(depth5["step_ratio_low"]) == pytest.approx(17.8 / 29.5)
    assert float(depth5["step_ratio_high"]) == pytest.approx(17.8 / 26.5)
    assert (depth5["steps"], depth5["noise"]) == ("5", NOISE_MARK)
    assert rep.to_dict()["rows"][2]["noise"] == NOISE_MARK
