"""Saved activations equal the analytic count; static memory per unit."""

from __future__ import annotations

import pytest

from tlprof import ProfileConfig, profile_model

from models import convnet, mlp

F32 = 4


def _units(model, shape, batch, **kw):
    cfg = ProfileConfig(batch_size=batch, input_shape=shape, device="cpu", steps=1, warmup=0, **kw)
    return profile_model(model, cfg).runs["full"].units


def test_mlp_saved_bytes_match_the_analytic_count():
    b = 4
    units = _units(mlp(), (8,), b)
    # unit 1: its input (for the weight grad) + its ReLU output; unit 2: its ReLU output;
    # unit 3: its input is unit 2's ReLU output, already counted once.
    assert [u.saved_bytes for u in units] == [b * (8 + 16) * F32, b * 32 * F32, 0]


def test_convnet_saved_bytes_match_the_analytic_count():
    b, h, w = 2, 6, 6
    units = _units(convnet(), (3, h, w), b)
    unit1 = (
        b * 3 * h * w * F32  # conv1 input
        + b * 4 * h * w * F32  # batch-norm input (conv1 output)
        + 2 * 4 * F32  # batch-norm saved mean and inverse std per channel
        + b * 4 * h * w * F32  # ReLU output (conv2 reads the same storage)
    )
    unit2 = b * 8 * h * w * F32  # ReLU output; the flatten view and fc input share it
    assert [u.saved_bytes for u in units] == [unit1, unit2, 0]


@pytest.mark.parametrize("optimizer, per_param", [("sgd", 1), ("adam", 2)])
def test_static_memory_per_unit(optimizer, per_param):
    units = _units(mlp(), (8,), 2, optimizer=optimizer)
    for u, n_params in zip(units, [8 * 16 + 16, 16 * 32 + 32, 32 * 4 + 4]):
        assert u.param_bytes == u.grad_bytes == n_params * F32
        state = u.optimizer_state_bytes - per_param * u.param_bytes
        assert 0 <= state <= 2 * 8  # Adam's step counters: one scalar per tensor
