"""The cached-features run (``--runs cached``): replay of the frozen part, F_N and h_N."""

from __future__ import annotations

import pytest
import torch
from report_models import InPlaceGlue, VaryingCalls, slow_stem, staged

from tlprof import ProfileConfig, TlprofError, find_units, freeze, profile_model
from tlprof.cached import FeatureCache

SLEEP_MS = 20.0


def _cache(model, n_frozen: int, x: torch.Tensor) -> FeatureCache:
    units = find_units(model, x[:1])
    freeze(model, units, n_frozen)

    def forward():
        with torch.no_grad():
            return model(x)

    return FeatureCache(model, units[n_frozen].module, forward).capture()


@pytest.mark.parametrize("n_frozen", [1, 2, 3, 5])
def test_replay_gives_the_same_output_and_skips_the_frozen_part(n_frozen):
    torch.manual_seed(0)
    model = staged().eval()
    x = torch.randn(2, 3, 8, 8)
    expected = model(x).detach()
    counter = model.stem[3]
    cache = _cache(model, n_frozen, x)
    runs_before = counter.runs
    with cache.replaying():
        out = model(x)
    cache.check_replay()
    assert torch.allclose(out, expected, atol=1e-6)
    assert counter.runs == runs_before  # the stem's modules did not run
    out.sum().backward()
    assert model.head[2].weight.grad is not None
    assert all(p.grad is None for p in model.stem.parameters())
    assert not any("forward" in m.__dict__ for m in model.modules())  # restored


def test_shared_relu_runs_for_real_after_the_boundary():
    model = staged().eval()
    x = torch.randn(2, 3, 8, 8)
    cache = _cache(model, 2, x)  # boundary inside stage1.0: its ReLU runs on both sides
    relu = model.stage1[0].relu
    assert set(cache.outputs[relu]) == {0}
    assert cache.expected_calls[relu] == 2


def test_varying_calls_are_refused():
    cfg = ProfileConfig(batch_size=2, input_shape=(8,), device="cpu", steps=1, warmup=0,
                        freeze=1, runs=("cached",))
    model = VaryingCalls()
    with pytest.raises(TlprofError, match="cached features cannot be replayed"):
        profile_model(model, cfg)
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_features_modified_in_place_are_recorded_again():
    cfg = ProfileConfig(batch_size=2, input_shape=(8,), device="cpu", steps=1, warmup=0,
                        freeze=1, runs=("cached",))
    run = profile_model(InPlaceGlue(), cfg).runs["cached"]
    assert run.cache.recaptured_steps == cfg.steps_per_run


def test_cached_step_does_not_pay_the_frozen_forward():
    """Unit 1's forward sleeps 20 ms: F_N and the frozen step pay it, the cached step does not."""
    cfg = ProfileConfig(batch_size=2, input_shape=(16,), device="cpu", steps=2, warmup=1,
                        freeze=1, runs=("frozen", "cached"))
    prof = profile_model(slow_stem(SLEEP_MS / 1000), cfg)
    frozen, cached = prof.runs["frozen"], prof.runs["cached"]
    features = cached.cache.features_ms.samples
    assert len(features) == cfg.steps and min(features) >= SLEEP_MS
    assert frozen.step_ms.median >= SLEEP_MS
    assert min(cached.step_ms.samples) < SLEEP_MS / 2  # the fastest: a busy machine slows some
    assert cached.units[0].fwd_ms.median < SLEEP_MS / 2


def test_cached_needs_a_freeze_depth():
    with pytest.raises(TlprofError, match="--runs cached needs --freeze"):
        ProfileConfig(runs=("cached",), freeze=0).validate()
