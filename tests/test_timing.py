"""Time by marks: planted delays land in their unit; units and phases close the step."""

from __future__ import annotations

import pytest

from tlprof import ProfileConfig, profile_model

from models import DELAY_MS, planted_delays


@pytest.fixture(scope="module")
def planted():
    cfg = ProfileConfig(batch_size=4, input_shape=(16,), device="cpu", steps=3, warmup=1)
    return profile_model(planted_delays(), cfg).runs["full"]


def test_forward_delay_is_charged_to_unit_2_only(planted):
    fwd = [u.fwd_ms.median for u in planted.units]
    assert fwd[1] >= DELAY_MS
    assert all(t < DELAY_MS / 2 for i, t in enumerate(fwd) if i != 1), fwd


def test_backward_delay_is_charged_to_unit_3_only(planted):
    bwd = [u.bwd_ms.median for u in planted.units]
    assert bwd[2] >= DELAY_MS
    assert all(t < DELAY_MS / 2 for i, t in enumerate(bwd) if i != 2), bwd


def test_plain_steps_see_both_delays_too(planted):
    assert planted.plain_step_ms.median >= 2 * DELAY_MS
    assert planted.overhead_ratio == pytest.approx(1.0, abs=0.5)


@pytest.mark.parametrize("name", ["full", "frozen"])
def test_units_and_phases_add_up_to_every_step(r50_profile, name):
    run = r50_profile.runs[name]
    for k, step in enumerate(run.step_ms.samples):
        units = sum(u.fwd_ms.samples[k] + u.bwd_ms.samples[k] for u in run.units)
        phases = sum(p.samples[k] for p in run.phases_ms.values())
        assert units + phases == pytest.approx(step, rel=1e-9)
    assert run.phases_ms["other"].median < 0.05 * run.step_ms.median
    # against an independent clock: the same step without hooks, timed end to end
    assert 0.5 < run.step_ms.median / run.plain_step_ms.median < 2.0


def test_backward_marks_arrive_in_descending_unit_order(r50_profile):
    for name, first_trainable in (("full", 1), ("frozen", 46)):
        spans = r50_profile.runs[name].timeline
        bwd_units = [s.unit for s in spans if s.kind == "bwd"]
        assert bwd_units == list(range(50, first_trainable - 1, -1))
        fwd_units = [s.unit for s in spans if s.kind == "fwd"]
        assert fwd_units == list(range(1, 51))


def test_a_unit_without_backward_mark_is_reported():
    from models import two_branches

    cfg = ProfileConfig(batch_size=4, input_shape=(8,), device="cpu", steps=1, warmup=0)
    run = profile_model(two_branches(), cfg).runs["full"]
    assert run.units[1].bwd_ms.median == 0 and run.units[2].bwd_ms.median > 0
    assert "left" in run.warnings[0].text and "right" not in run.warnings[0].text
