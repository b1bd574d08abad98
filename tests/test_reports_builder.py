"""Report builder arithmetic: exact figures on a hand-written document, consistency on a real run."""

from __future__ import annotations

import json
import math

import pytest
from report_docs import hand_document, uniform_document
from report_models import staged

from tlprof import ProfileConfig, TlprofError, profile_model
from tlprof.document import RunDocument
from tlprof.reports.builder import HOLDS, NOT_MEASURED, REFUTED, ReportOptions, build_report

approx = pytest.approx


def report(doc=None, **options):
    return build_report(RunDocument.from_dict(doc or hand_document()), ReportOptions(**options))


# -- the hand-written document: every figure by hand ----------------------------------


def test_t_per_unit_and_shares():
    r = report()
    assert r.t_ms == [1.0, 2.0, 3.0, 4.0, 5.0, 9.0]
    assert r.full_step_ms == 28.0  # median of 27, 28, 29
    assert [u.step_share for u in r.units] == approx([1 / 28, 2 / 28, 3 / 28, 4 / 28, 5 / 28, 9 / 28])
    assert r.units[-1].cum_share == approx(24 / 28)
    assert [u.trainable for u in r.units] == [0, 0, 0, 0, 1, 1]
    assert r.units[0].frozen_fwd_ms == 0.5 and r.units[4].frozen_bwd_ms == 2.0
    assert r.units[5].cached_fwd_ms == 3.0


def test_uniformity():
    u = report().uniformity
    assert (u.mean_ms, u.min_ms, u.max_ms, u.max_over_min) == (4.0, 1.0, 9.0, 9.0)
    # deviations from 4: -3 -2 -1 0 1 5 → Σ² = 40, population variance 40/6
    assert u.cv == approx(math.sqrt(40 / 6) / 4)
    assert u.top5_share == approx(23 / 24)  # all but the 1 ms unit
    assert u.top5_units[0] == "head.fc"
    assert (u.tail_units, u.tail_share, u.paper_tail_share) == (2, approx(14 / 24), approx(2 / 6))


def test_rollups_by_block_and_stage():
    r = report()
    blocks = {b.name: (b.first, b.units, b.t_ms, b.trainable) for b in r.blocks}
    assert blocks == {"stem": (1, 1, 1.0, 0), "s1.0": (2, 2, 5.0, 0), "s1.1": (4, 1, 4.0, 0),
                      "s2.0": (5, 1, 5.0, 1), "head": (6, 1, 9.0, 1)}
    stages = [(s.name, s.t_ms, s.fwd_ms, s.bwd_ms) for s in r.stages]
    assert stages == [("stem", 1.0, 1.0, 0.0), ("s1", 9.0, 4.0, 5.0), ("s2", 5.0, 2.0, 3.0),
                      ("head", 9.0, 3.0, 6.0)]
    assert r.stages[-1].cum_share == approx(24 / 28)
    assert r.stages[1].frozen_fwd_ms == approx(2.5)


def test_frozen_run_breakdown_and_savings():
    f = report().frozen
    assert (f.full_step_ms, f.frozen_step_ms, f.saved_ms) == (28.0, 18.0, 10.0)
    assert f.step_ratio == approx(18 / 28)
    assert f.paper_ratio == approx(2 / 6)
    assert f.predicted_ratio == approx((10 + 9 + 4) / 28)  # Σf + tail's b + phases
    assert f.bwd_over_fwd == approx(14 / 10)
    parts = {p.name: p.ms for p in f.breakdown}
    assert parts == {"forward of frozen units": 3.0, "forward of trainable units": 5.0,
                     "backward of trainable units": 8.0, "loss forward + backward": 1.0,
                     "optimizer + zero_grad": 1.0, "other": 0.0, "step − Σ medians": 0.0}
    saving = {p.name: (p.ms, p.bytes) for p in f.savings}
    assert saving == {
        "backward not run": (6.0, 500),  # Σb − Σb' = 14 − 8; gradients 600 − 100
        "activations not saved (lighter forward)": (2.0, 800),  # 10 − 8; saved 1000 − 200
        "smaller optimizer step": (1.5, 500),  # (2 + .5) − (.75 + .25)
        "loss and other phases": (0.5, None),  # 1.5 − 1.0
        "step − Σ medians": (0.0, None),
    }
    assert f.savings[0].share == approx(0.6)
    assert f.memory["saved activations"] == {"full": 1000, "frozen": 200, "saved": 800}


def test_cost_model_per_step():
    cm = report(models=3).cost_model
    assert (cm.k, cm.unit, cm.ms_per_unit) == ([1, 2, 3], "ms", 1.0)
    rows = cm.rows
    # t̄ = 4, L = 6, N = 4: classic 24k, transfer (4 + 2k)·4
    assert rows["paper_uniform"].classic == approx([24, 48, 72])
    assert rows["paper_uniform"].transfer == approx([24, 32, 40])
    assert rows["paper_uniform"].ratio == approx([1, 32 / 48, 40 / 72])
    assert rows["paper_uniform"].marginal_transfer == approx([8, 8, 8])
    assert rows["paper_uniform"].base == approx(16)
    assert rows["paper_uniform"].limit_ratio == approx(2 / 6)
    # Σ_(i≤4) t = 10, Σ_(i>4) t = 14
    assert rows["paper_measured_t"].transfer == approx([24, 38, 52])
    assert rows["paper_measured_t"].limit_ratio == approx(14 / 24)
    # s_full = 28, s_frozen = 18
    assert rows["measured"].classic == approx([28, 56, 84])
    assert rows["measured"].transfer == approx([46, 64, 82])
    assert rows["measured"].marginal_classic == approx([28, 28, 28])
    # F_N = 3, h_N = 10, S = E = 1: per model 13
    assert rows["measured_cached"].transfer == approx([41, 54, 67])
    assert rows["measured_cached"].limit_ratio == approx(13 / 28)


def test_cost_model_scaled_to_epochs():
    cm = report(models=3, steps_per_epoch=100, epochs=10).cost_model
    assert (cm.unit, cm.ms_per_unit) == ("min", 60_000.0)  # 3 · 28 ms · 1000 steps = 84 s
    assert (cm.steps_per_epoch, cm.epochs) == (100, 10)
    minute = 60_000
    assert cm.rows["measured"].classic == approx([28_000 / minute * k for k in (1, 2, 3)])
    assert cm.rows["measured"].base == approx(28_000 / minute)
    # features once per epoch's samples: S·F_N + S·E·h_N = 300 + 10000
    assert cm.rows["measured_cached"].per_model_transfer == approx(10_300 / minute)
    assert cm.rows["paper_uniform"].per_model_transfer == approx(2 * 4 * 1000 / minute)


def test_claims_refuted_by_the_hand_document():
    claims = {c.id: c for c in report().claims}
    assert [c.verdict for c in claims.values()] == [REFUTED] * 4
    assert claims["per_model_cost"].numbers["step_ratio"] == approx(18 / 28)
    example = claims["three_models"].numbers
    assert example["paper"] == {"classic": 18.0, "transfer": 10.0}  # L·3 vs N + (L−N)·3
    assert example["measured_t"]["transfer"] == approx(6 * (10 + 3 * 14) / 24)
    assert example["measured_step"]["transfer"] == approx(6 * (1 + 3 * 18 / 28))
    assert example["measured_cached"]["transfer"] == approx(6 * (1 + 3 * 13 / 28))
    growth = claims["logarithmic_growth"].numbers
    assert growth["measured"] == {"marginal": approx(18), "limit_ratio": approx(18 / 28)}
    assert "affine" in claims["logarithmic_growth"].evidence


def test_claims_hold_in_the_papers_world():
    claims = {c.id: c.verdict for c in report(uniform_document()).claims}
    assert claims == {"uniform_t": HOLDS, "per_model_cost": HOLDS, "logarithmic_growth": REFUTED,
                      "three_models": HOLDS}


def test_without_a_frozen_run():
    doc = hand_document(cached=False)
    del doc["runs"]["frozen"]
    r = report(doc)
    assert r.frozen is None and set(r.cost_model.rows) == {"paper_uniform", "paper_measured_t"}
    assert {c.id: c.verdict for c in r.claims}["per_model_cost"] == NOT_MEASURED
    assert r.freeze == 4  # from the meta


def test_notes_name_noise_and_profiler_overhead():
    doc = hand_document()
    doc["runs"]["cached"]["overhead"]["plain_step_ms"] = {"samples": [8.0]}  # 10 / 8 = 1.25
    notes = report(doc).notes
    assert any(n.startswith("cached run: instrumented/plain step = 1.25") for n in notes)
    assert not any(n.startswith(("full run", "frozen run")) for n in notes)
    assert any("measured on a CPU" in n for n in notes)


def test_needs_the_full_run_and_sane_options():
    doc = hand_document()
    del doc["runs"]["full"]
    with pytest.raises(TlprofError, match="full run"):
        report(doc)
    for bad in ({"models": 0}, {"epochs": 0}, {"steps_per_epoch": -1}, {"granularity": "layer"}):
        with pytest.raises(TlprofError):
            report(**bad)


def test_json_contract():
    d = report(models=4).to_dict()
    text = json.dumps(d, allow_nan=False)  # strict JSON
    d = json.loads(text)
    assert d["schema"] == "tlprof.report/1"
    assert d["t_ms"] == [1.0, 2.0, 3.0, 4.0, 5.0, 9.0]
    assert set(d["uniformity"]) >= {"mean_ms", "min_ms", "max_ms", "max_over_min", "cv", "top5_share"}
    assert d["frozen"]["step_ratio"] == approx(18 / 28)
    assert d["cost_model"]["k"] == [1, 2, 3, 4]
    assert d["cost_model"]["unit"] == "ms"
    assert set(d["cost_model"]["rows"]) == {"paper_uniform", "paper_measured_t", "measured",
                                            "measured_cached"}
    for row in d["cost_model"]["rows"].values():
        assert len(row["classic"]) == len(row["transfer"]) == 4
    assert [c["verdict"] for c in d["claims"]] == ["refuted"] * 4


def test_infinite_spread_is_null_in_json():
    doc = hand_document()
    doc["runs"]["full"]["units"][0]["fwd_ms"]["samples"] = [0.0]  # t_1 = 0
    d = report(doc).to_dict()
    assert d["uniformity"]["max_over_min"] is None
    json.dumps(d, allow_nan=False)


# -- a real saved run of a tiny model ---------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    cfg = ProfileConfig(batch_size=2, input_shape=(3, 8, 8), device="cpu", steps=2, warmup=1,
                        freeze=3, runs=("full", "frozen", "cached"))
    path = tmp_path_factory.mktemp("run") / "tiny.json"
    profile_model(staged(), cfg, meta={"model": "staged"}).save(path)
    return RunDocument.load(path)


def test_real_run_figures_come_from_the_document(tiny_run):
    r = build_report(tiny_run, ReportOptions(models=4))
    full, frozen = tiny_run.runs["full"], tiny_run.runs["frozen"]
    assert r.t_ms == [u.fwd_ms.median + u.bwd_ms.median for u in full.units]
    assert r.uniformity.mean_ms == approx(sum(r.t_ms) / 6)
    assert r.frozen.step_ratio == approx(frozen.step_ms.median / full.step_ms.median)
    measured = r.cost_model.rows["measured"]
    assert measured.transfer[3] == approx(full.step_ms.median + 4 * frozen.step_ms.median)
    # the parts add up to the step (and the saving) with the residual named
    assert sum(p.ms for p in r.frozen.breakdown) == approx(frozen.step_ms.median)
    assert sum(p.ms for p in r.frozen.savings) == approx(r.frozen.saved_ms)
    assert sum(s.t_ms for s in r.stages) == approx(sum(r.t_ms))
    assert [s.name for s in r.stages] == ["stem", "stage1", "head"]
    assert r.cached is not None and r.cached.features_ms > 0 and r.cached.step_ms > 0


def test_real_cached_run_trains_only_the_tail(tiny_run):
    cached = tiny_run.runs["cached"]
    assert cached.freeze == 3
    assert all(u.bwd_ms.median == 0 for u in cached.units[:3])
    assert all(u.bwd_ms.median > 0 for u in cached.units[3:])
    assert cached.cache.replayed_calls >= 1
    assert cached.cache.recaptured_steps == 0


def test_a_busy_machine_is_noted():
    doc = hand_document()
    doc["meta"].update(cpu_count=2, cpu_threads=1, load_avg={"start": [3.5, 2.0, 1.0], "end": [1.0, 1, 1]})
    notes = build_report(RunDocument.from_dict(doc)).notes
    assert any("load average 3.5 at the start, 1.0 at the end on 2 cores" in n for n in notes)
    doc["meta"]["load_avg"] = {"start": [0.5, 0.5, 0.5], "end": [1.2, 1, 1]}
    assert not any("busy" in n for n in build_report(RunDocument.from_dict(doc)).notes)


def test_wall_time_without_cpu_time_is_noted():
    """Unit 1 sleeps 20 ms a step: the process holds the CPU for a fraction of the step."""
    from report_models import slow_stem

    cfg = ProfileConfig(batch_size=2, input_shape=(16,), device="cpu", steps=2, warmup=1)
    doc = profile_model(slow_stem(0.02), cfg)
    run = doc.runs["full"]
    assert len(run.cpu_ms.samples) == 2 and run.cpu_ms.median < 0.85 * run.step_ms.median
    assert any(n.startswith("full run: the process had the CPU for only") for n in build_report(doc).notes)
