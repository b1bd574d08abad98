"""FLOPs per unit against closed forms: conv and linear, forward and backward, stem and frozen
boundary; ResNet-50's forward total against torchvision's published 4.09 GMACs."""

from __future__ import annotations

import pytest
import torch
import torchvision
from kernel_models import CONV_INPUT, conv_flops, convnet, convnet_forward_flops, linear_flops

from tlprof import ProfileConfig, find_units, freeze, profile_model
from tlprof.kernels import KernelsExtra, count_flops, forward_flops

BATCH = 2


@pytest.fixture(scope="module", params=[1, 2], ids=["freeze1", "freeze2"])
def conv_profile(request):
    cfg = ProfileConfig(batch_size=BATCH, input_shape=CONV_INPUT, device="cpu", steps=1, warmup=0,
                        freeze=request.param, runs=("full", "frozen"))
    extra = KernelsExtra(breakdown=False, measure=False)
    return profile_model(convnet(), cfg, extras=[extra])


def _flops(run, key: str) -> list[int]:
    return [getattr(u.kernels, key) for u in run.units]


def test_forward_flops_match_closed_form_in_both_runs(conv_profile):
    expected = convnet_forward_flops(BATCH)
    for run in conv_profile.runs.values():
        assert _flops(run, "flops_fwd") == expected
        assert all(isinstance(f, int) for f in _flops(run, "flops_bwd"))


def test_full_run_backward_stem_computes_weight_grad_only(conv_profile):
    fwd = convnet_forward_flops(BATCH)
    # stem: its input needs no grad, so only dL/dW (= one forward's worth); the others: dL/dx + dL/dW
    assert _flops(conv_profile.runs["full"], "flops_bwd") == [fwd[0], 2 * fwd[1], 2 * fwd[2]]


def test_frozen_run_backward_at_the_boundary(conv_profile):
    run = conv_profile.runs["frozen"]
    n = run.freeze
    fwd = convnet_forward_flops(BATCH)
    bwd = _flops(run, "flops_bwd")
    assert bwd[:n] == [0] * n  # frozen units compute no gradient
    assert bwd[n] == fwd[n]  # first trainable unit: weight gradient only
    assert bwd[n + 1:] == [2 * f for f in fwd[n + 1:]]


def test_bytes_and_intensity(conv_profile):
    run = conv_profile.runs["frozen"]
    units = run.units
    act_in = [BATCH * 3 * 8 * 8 * 4, BATCH * 4 * 8 * 8 * 4, BATCH * 8 * 4 * 4 * 4]
    assert [u.kernels.act_in_bytes for u in units] == act_in
    assert [u.kernels.act_out_bytes for u in units] == act_in[1:] + [BATCH * 5 * 4]
    for u in units:
        assert u.kernels.bytes_fwd == u.param_bytes + u.kernels.act_in_bytes + u.kernels.act_out_bytes
        assert u.kernels.intensity_fwd == pytest.approx(u.kernels.flops_fwd / u.kernels.bytes_fwd)
    for u in units[:run.freeze]:
        assert u.kernels.bytes_bwd == 0 and u.kernels.intensity_bwd is None
    first = units[run.freeze]  # input needs no grad: no weight read, no input gradient written
    assert first.kernels.bytes_bwd == first.kernels.act_out_bytes + first.saved_bytes + first.grad_bytes


def test_resnet50_forward_total_is_2x_4_09_gmacs():
    model = torchvision.models.resnet50().eval()
    x = torch.randn(1, 3, 224, 224)
    units = find_units(model, x)
    flops = forward_flops(model, units, x)
    assert sum(flops.fwd) == pytest.approx(2 * 4.09e9, rel=0.01)
    assert flops.phases == {} and not any(flops.bwd)
    assert flops.fwd[0] == conv_flops(3, 64, 7, 112, 112, 1)  # stem
    # layer1.0.conv3 owns its downsample shortcut: two 64→256 1×1 convs at 56×56
    assert flops.fwd[3] == 2 * conv_flops(64, 256, 1, 56, 56, 1)
    assert flops.fwd[-1] == linear_flops(2048, 1000, 1)


def test_resnet50_frozen_45_backward_flops():
    model = torchvision.models.resnet50()
    x = torch.randn(2, 3, 32, 32)
    units = find_units(model, x[:1])
    freeze(model, units, 45)

    def step(inst) -> None:
        model(x).sum().backward()

    flops, acts = count_flops(model, units, step)
    assert flops.bwd[:45] == [0] * 45
    assert flops.bwd[45] == flops.fwd[45] > 0  # layer4.1.conv3: weight gradient only
    assert flops.bwd[46:] == [2 * f for f in flops.fwd[46:]]
    assert [a.input_requires_grad for a in acts[44:47]] == [False, False, True]


# -- FLOPs that flop_registry leaves out (issue 12) ------------------------------------------


class _Residual(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


def _counted_by_hand() -> torch.nn.Module:
    """Input 2×3×8×8. Unit 1 conv 3→4 + BN + ReLU, unit 2 residual conv 4→4 + add + 2×2 max pool,
    unit 3 linear 64→5."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        _Residual(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64, 5))


def test_other_flops_by_hand_in_their_own_column():
    model = _counted_by_hand().eval()
    x = torch.randn(2, 3, 8, 8)
    units = find_units(model, x[:1])
    flops = forward_flops(model, units, x)
    elements = 2 * 4 * 8 * 8  # one activation of the conv stages
    assert flops.fwd == [conv_flops(3, 4, 3, 8, 8, 2), conv_flops(4, 4, 3, 8, 8, 2), linear_flops(64, 5, 2)]
    bn, relu, add = 4 * elements, elements, elements
    pool = 4 * (2 * 4 * 4 * 4)  # a 2×2 window per output element
    assert flops.other_fwd == [bn + relu, add + pool, 0]
    assert sum(flops.by_op.values()) == sum(flops.fwd)
    assert flops.by_op["convolution"] == flops.fwd[0] + flops.fwd[1]
    other = flops.other_by_op
    assert other["relu"] == relu and other["add"] == add and other["max_pool2d_with_indices"] == pool
    assert sum(v for k, v in other.items() if "batch_norm" in k) == bn


def test_other_flops_of_a_training_step_are_stored_and_shown(tmp_path, capsys):
    from tlprof.cli import main

    cfg = ProfileConfig(batch_size=2, input_shape=(3, 8, 8), device="cpu", steps=1, warmup=0)
    doc = profile_model(_counted_by_hand(), cfg, extras=[KernelsExtra(breakdown=False, measure=False)])
    run = doc.runs["full"]
    elements = 2 * 4 * 8 * 8
    assert run.kernels.flops_other_by_op["native_batch_norm_backward"] == 8 * elements
    assert run.kernels.flops_other_by_op["threshold_backward"] == elements
    assert run.units[0].kernels.flops_other_bwd >= 9 * elements
    assert run.units[2].kernels.flops_other_fwd == 0
    path = tmp_path / "run.json"
    doc.save(path)
    assert main(["kernels", str(path)]) == 0
    out = capsys.readouterr().out
    assert "other" in out and "FLOPs by operator" in out and "native_batch_norm_backward" in out
    assert main(["kernels", str(path), "--format", "csv"]) == 0
    assert "flops_other" in capsys.readouterr().out.splitlines()[0]
