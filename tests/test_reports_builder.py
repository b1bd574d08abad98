"""Report builder arithmetic: exact figures on a hand-written document, consistency on a real run."""

from __future__ import annotations

import json
import math

import pytest
from report_docs import hand_document, uniform_document
from report_models import staged

from tlprof import ProfileConfig, TlprofError, profile_model
from tlprof.document import RunDocument
from tlprof.reports.builder import (
    HOLDS,
    NOT_ENOUGH,
    NOT_MEASURED,
    REFUTED,
    ReportOptions,
    build_report,
)

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


# -- the cost model: model 1 in full, models 2..k frozen (docs/design.md §6, issue #13) -----------
# The hand document: t = [1, 2, 3, 4, 5, 9], Σt = 24, t̄ = 4, Σ_(i>N) t = 14, L = 6, N = 4;
# s_full = 28, s_frozen = 18; F_N = 3, h_N = 10 (ms per step).

ROWS_ORDER = ("paper_uniform", "paper_measured_t", "measured", "measured_cached")
ROWS = set(ROWS_ORDER)


def test_cost_rows_by_hand_at_k_1_2_3():
    cm = report(models=3).cost_model
    assert (cm.k, cm.unit, cm.ms_per_unit) == ([1, 2, 3], "ms", 1.0)
    expected = {  # row: (T_classic(k), T_transfer(k), what model k adds), k = 1, 2, 3
        # 6·4·k | 6·4 + (k−1)·2·4
        "paper_uniform": ([24, 48, 72], [24, 32, 40], [24, 8, 8]),
        # 24·k | 24 + (k−1)·14
        "paper_measured_t": ([24, 48, 72], [24, 38, 52], [24, 14, 14]),
        # 28·k | 28 + (k−1)·18
        "measured": ([28, 56, 84], [28, 46, 64], [28, 18, 18]),
        # 28·k | 28, then 28 + 3 (features once, with model 2) + 10, then 28 + 3 + 2·10
        "measured_cached": ([28, 56, 84], [28, 41, 51], [28, 13, 10]),
    }
    assert set(cm.rows) == set(expected)
    for name, (classic, transfer, marginal) in expected.items():
        row = cm.rows[name]
        assert row.classic == approx(classic), name
        assert row.transfer == approx(transfer), name
        assert row.ratio == approx([t / c for t, c in zip(transfer, classic)]), name
        assert row.marginal_transfer == approx(marginal), name
        assert row.marginal_classic == approx([classic[0]] * 3), name
    fields = {name: (r.first_model, r.per_model_classic, r.per_model_transfer, r.shared_once,
                     r.limit_ratio) for name, r in cm.rows.items()}
    assert fields == {
        "paper_uniform": (24, 24, 8, 0, approx(8 / 24)),
        "paper_measured_t": (24, 24, 14, 0, approx(14 / 24)),
        "measured": (28, 28, 18, 0, approx(18 / 28)),
        "measured_cached": (28, 28, 10, 3, approx(10 / 28)),
    }


def test_cached_row_with_data_per_model():
    row = report(models=3, data_per_model=True).cost_model.rows["measured_cached"]
    # every later model pays its own features: 28 + (k−1)·(3 + 10)
    assert row.transfer == approx([28, 41, 54])
    assert row.marginal_transfer == approx([28, 13, 13])
    assert (row.shared_once, row.per_model_transfer, row.limit_ratio) == (0, 13, approx(13 / 28))
    assert "data per model" in row.formula and "--different-data" in row.departs
    shared = report(models=3).cost_model.rows["measured_cached"]
    assert "same data" in shared.formula and "share the data" in shared.departs


@pytest.mark.parametrize("options", [{}, {"models": 1}, {"data_per_model": True},
                                     {"steps_per_epoch": 100, "epochs": 10, "data_per_model": True}])
def test_one_model_costs_the_same_either_way(options):
    cm = report(**options).cost_model
    assert set(cm.rows) == ROWS
    steps = options.get("steps_per_epoch", 1) * options.get("epochs", 1)
    for name, row in cm.rows.items():
        assert row.transfer[0] == approx(row.classic[0]) and row.ratio[0] == approx(1.0), name
        # one full training: Σt = 24 ms a step in the paper's rows, s_full = 28 in the measured ones
        full = (24 if name.startswith("paper") else 28) * steps / cm.ms_per_unit
        assert row.first_model == approx(full) and row.classic[0] == approx(full), name


def test_cost_model_scaled_to_epochs():
    cm = report(models=3, steps_per_epoch=100, epochs=10).cost_model
    assert (cm.unit, cm.ms_per_unit) == ("min", 60_000.0)  # 3 · 28 ms · 1000 steps = 84 s
    assert (cm.steps_per_epoch, cm.epochs) == (100, 10)
    minute = 60_000
    # S·E = 1000 steps: 28 000 ms per full training, 18 000 per frozen one
    assert cm.rows["measured"].classic == approx([28_000 / minute * k for k in (1, 2, 3)])
    assert cm.rows["measured"].transfer == approx([28_000 / minute, 46_000 / minute, 64_000 / minute])
    assert cm.rows["measured"].first_model == approx(28_000 / minute)
    # features once: S·F_N = 300 ms; each later model S·E·h_N = 10 000 ms
    cached = cm.rows["measured_cached"]
    assert (cached.shared_once, cached.per_model_transfer) == (approx(300 / minute), approx(10_000 / minute))
    assert cached.transfer == approx([28_000 / minute, 38_300 / minute, 48_300 / minute])
    per_model = report(models=3, steps_per_epoch=100, epochs=10, data_per_model=True)
    # every later model: S·F_N + S·E·h_N = 10 300 ms
    assert per_model.cost_model.rows["measured_cached"].transfer == approx(
        [28_000 / minute, 38_300 / minute, 48_600 / minute])
    assert cm.rows["paper_uniform"].per_model_transfer == approx(2 * 4 * 1000 / minute)


def test_three_model_example_by_hand():
    claim = {c.id: c for c in report().claims}["three_models"]
    assert claim.verdict == REFUTED
    ex = claim.numbers
    assert list(ex) == ["paper", *ROWS_ORDER]
    # the paper's own: 50·3 = 150 h vs 45 + 5·3 = 60 h
    assert ex["paper"] == {"classic": 150, "transfer": 60, "ratio": approx(0.4)}
    # one training from scratch = L = 6 h, so classic = 18 h and transfer = 6 h · T_transfer(3) / T_full
    assert ex["paper_uniform"] == {"classic": 18, "transfer": approx(10), "ratio": approx(10 / 18)}  # 6·40/24
    assert ex["paper_measured_t"]["transfer"] == approx(13)  # 6·52/24
    assert ex["measured"]["transfer"] == approx(96 / 7)  # 6·64/28 = 13.71
    assert ex["measured_cached"]["transfer"] == approx(153 / 14)  # 6·51/28 = 10.93
    per_model = {c.id: c for c in report(data_per_model=True).claims}["three_models"]
    assert per_model.numbers["measured_cached"]["transfer"] == approx(81 / 7)  # 6·54/28 = 11.57
    for text in ("150 h vs 60 h", "18 h vs 10 h", "18 h vs 13 h", "18 h vs 13.7 h", "18 h vs 10.9 h"):
        assert text in claim.evidence, text
    assert "data per model: 18 h vs 11.6 h" in per_model.evidence


def test_claims_refuted_by_the_hand_document():
    claims = {c.id: c for c in report().claims}
    assert [c.verdict for c in claims.values()] == [REFUTED] * 4
    assert claims["per_model_cost"].numbers["step_ratio"] == approx(18 / 28)
    growth = claims["logarithmic_growth"]
    assert growth.numbers["measured"] == {"marginal": approx(18), "limit_ratio": approx(18 / 28)}
    assert "T_full + (k−1)·p = 28 + (k−1)·18 ms" in growth.evidence
    assert "affine" in growth.evidence and "from 1.000 (k=1)" in growth.evidence


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


def test_claim_4_needs_a_frozen_run():
    """A full-only run has only the paper's own counting: claim 4 is not measured, not "holds"."""
    for doc in (uniform_document(), hand_document(cached=False)):
        del doc["runs"]["frozen"]
        claim = {c.id: c for c in report(doc).claims}["three_models"]
        assert claim.verdict == NOT_MEASURED and "needs a frozen run" in claim.evidence


# -- uncertainty: a verdict needs enough steps and a CI clear of the band (issue #12) -------


def _steps(doc, run, samples):
    doc["runs"][run]["step_ms"]["samples"] = list(samples)
    doc["runs"][run]["overhead"]["plain_step_ms"]["samples"] = list(samples)


def _units_samples(doc, run, n):
    for u in doc["runs"][run]["units"]:
        for key in ("fwd_ms", "bwd_ms"):
            u[key]["samples"] = u[key]["samples"][:n]


def test_one_sample_gives_no_verdict():
    doc = hand_document()
    for run in ("full", "frozen", "cached"):
        _steps(doc, run, doc["runs"][run]["step_ms"]["samples"][2:3])
        _units_samples(doc, run, 1)
    claims = {c.id: c for c in report(doc).claims}
    for cid in ("uniform_t", "per_model_cost", "three_models"):
        assert claims[cid].verdict == NOT_ENOUGH, cid
        assert "n = 1" in claims[cid].reason and "at least 5" in claims[cid].reason, cid
        assert "not enough evidence: " in claims[cid].evidence
    assert claims["per_model_cost"].numbers["step_ratio"] == approx(18 / 28)  # the figure is still shown


def test_nan_data_gives_no_verdict():
    doc = hand_document()
    _steps(doc, "full", [0.0] * 5)  # frozen/full = 18 / 0
    claims = {c.id: c for c in report(doc).claims}
    assert claims["per_model_cost"].verdict == NOT_ENOUGH
    assert claims["three_models"].verdict == NOT_ENOUGH
    assert not claims["per_model_cost"].ci.finite
    json.dumps(report(doc).to_dict(), allow_nan=False)


def test_a_ci_straddling_the_band_is_not_enough_evidence():
    """Median frozen/full = 10/28 = 0.357, inside 0.333 ± 25%, but the steps spread over 0.21–0.5."""
    doc = hand_document()
    _steps(doc, "frozen", [6.0, 8.0, 10.0, 12.0, 14.0])
    claim = {c.id: c for c in report(doc).claims}["per_model_cost"]
    assert claim.numbers["step_ratio"] == approx(10 / 28)
    assert claim.verdict == NOT_ENOUGH
    assert claim.ci.low < 0.25 and claim.ci.high > 0.417
    assert "straddles the band [0.25, 0.417]" in claim.reason


def test_tight_steps_inside_the_band_hold_and_outside_refute():
    doc = uniform_document()
    _steps(doc, "full", [11.9, 12.0, 12.1, 12.0, 11.95, 12.05])
    _steps(doc, "frozen", [3.95, 4.0, 4.05, 4.0, 4.02])
    claim = {c.id: c for c in report(doc).claims}["per_model_cost"]
    assert claim.verdict == HOLDS and claim.ci.within(0.25, 0.417)
    hand = {c.id: c for c in report().claims}["per_model_cost"]
    assert hand.verdict == REFUTED and hand.ci.low > 0.417  # 18 / [26.5 .. 29.5]
    assert "frozen/full step = 0.643 [0.610, 0.679] (95% CI, n = 5/5)" in hand.evidence


def test_uniformity_verdict_uses_the_spread_over_steps():
    doc = uniform_document()
    # unit 1's t swings between 1 and 4 ms from step to step: its median is 2, as uniform as the rest
    doc["runs"]["full"]["units"][0]["fwd_ms"]["samples"] = [0.0, 0.5, 1.0, 2.0, 3.0]
    claim = {c.id: c for c in report(doc).claims}["uniform_t"]
    assert claim.numbers["cv"] == approx(0.0)
    assert claim.verdict == NOT_ENOUGH and "the CV of t_i's 95% CI [0, 0.319] straddles" in claim.reason
    assert {c.id: c for c in report(uniform_document()).claims}["uniform_t"].verdict == HOLDS


def test_every_ratio_a_verdict_uses_has_its_ci():
    r = report()
    assert r.frozen.step_ratio_ci.contains(18 / 28) and r.frozen.step_ratio_ci.n == 5
    assert r.cached.step_ratio_ci.contains(10 / 28)
    assert set(r.overhead) == {"full", "frozen", "cached"} and r.overhead["full"].contains(1.0)
    claims = {c.id: c for c in r.claims}
    assert claims["logarithmic_growth"].ci.value == approx(18)  # the marginal cost per model
    assert claims["three_models"].ci.value == approx((1 + 2 * 18 / 28) / (1 + 2 * 2 / 6))
    d = r.to_dict()
    assert d["frozen"]["step_ratio_ci"]["n_a"] == 5 and d["claims"][1]["ci"]["value"] == approx(18 / 28)


def test_a_noisy_step_is_said_in_words():
    doc = hand_document()
    _steps(doc, "frozen", [40.0, 60.0, 141.69, 300.0, 400.0])
    notes = report(doc).notes
    assert ("frozen step: IQR 240.0 ms is 169% of its median 141.7 ms: the figure is unreliable; "
            "more --steps or a quieter machine") in notes
    assert not any(n.startswith("full step") for n in notes)


def test_too_few_steps_are_noted():
    doc = hand_document()
    _steps(doc, "frozen", [18.0])
    notes = report(doc).notes
    assert any(n.startswith("frozen run: 1 measured step(s); a verdict needs at least 5") for n in notes)
    assert not any(n.startswith("full run: ") for n in report().notes)


def test_notes_name_noise_and_profiler_overhead():
    doc = hand_document()
    doc["runs"]["cached"]["overhead"]["plain_step_ms"] = {"samples": [8.0]}  # 10 / 8 = 1.25
    notes = report(doc).notes
    assert any(n.startswith("cached run: instrumented/plain step = 1.25 [1.12, 1.38], 95% CI, n = 5/1")
               for n in notes)
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
    assert d["schema"] == "tlprof.report/2"
    assert d["t_ms"] == [1.0, 2.0, 3.0, 4.0, 5.0, 9.0]
    assert set(d["uniformity"]) >= {"mean_ms", "min_ms", "max_ms", "max_over_min", "cv", "top5_share"}
    assert d["frozen"]["step_ratio"] == approx(18 / 28)
    assert d["cost_model"]["k"] == [1, 2, 3, 4]
    assert d["cost_model"]["unit"] == "ms"
    assert set(d["cost_model"]["rows"]) == ROWS
    for row in d["cost_model"]["rows"].values():
        assert len(row["classic"]) == len(row["transfer"]) == 4
        assert {"first_model", "shared_once", "per_model_transfer", "limit_ratio"} <= set(row)
    assert d["options"]["data_per_model"] is False
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
    assert measured.transfer[3] == approx(full.step_ms.median + 3 * frozen.step_ms.median)
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
