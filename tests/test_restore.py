"""The user's model is left exactly as it was, also when a step raises."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from tlprof import ProfileConfig, Profiler, profile_model

from models import Exploding


def _snapshot(model: nn.Module) -> dict:
    return {
        "tensors": {k: v.clone() for k, v in model.state_dict().items()},
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "hooks": [
            (len(m._forward_pre_hooks), len(m._forward_hooks), len(m._backward_hooks),
             len(m._backward_pre_hooks))
            for m in model.modules()
        ],
        "strides": [p.stride() for p in model.parameters()],
        "flags": (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32),
    }


def _assert_same(before: dict, model: nn.Module) -> None:
    after = _snapshot(model)
    assert after["tensors"].keys() == before["tensors"].keys()
    for k, v in before["tensors"].items():
        assert torch.equal(after["tensors"][k], v), k
    for key in ("requires_grad", "training", "hooks", "strides", "flags"):
        assert after[key] == before[key], key
    for a, b in zip(after["grads"], before["grads"]):
        assert (a is None and b is None) or torch.equal(a, b)


def _user_model() -> nn.Module:
    model = torchvision.models.resnet18(num_classes=10)
    model.layer1.requires_grad_(False)  # the user's own choices must survive
    model(torch.randn(2, 3, 32, 32)).sum().backward()  # the user's own gradients
    model.eval()
    model.fc.train()
    return model


def test_model_is_bit_identical_after_profiling():
    model = _user_model()
    before = _snapshot(model)
    cfg = ProfileConfig(batch_size=2, input_shape=(3, 32, 32), device="cpu", steps=1, warmup=1,
                        freeze=5, runs=("full", "frozen"), channels_last=True, optimizer="adam")
    profile_model(model, cfg)
    _assert_same(before, model)


@pytest.mark.parametrize("fail_on_call", [3, 6])  # warm-up step, measured step
def test_model_is_restored_when_a_step_raises(fail_on_call):
    model = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), Exploding(fail_on_call), nn.Linear(8, 2))
    before = _snapshot(model)
    cfg = ProfileConfig(batch_size=4, input_shape=(8,), device="cpu", steps=3, warmup=1,
                        freeze=1, runs=("full", "frozen"))
    with pytest.raises(RuntimeError, match="planted failure"):
        profile_model(model, cfg)
    _assert_same(before, model)


def test_user_loop_profiler_removes_its_hooks_even_on_error():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = _snapshot(model)
    with pytest.raises(ValueError), Profiler(model, example=torch.randn(1, 8), optimizer=opt) as prof:
        for _ in range(3):
            with prof.step():
                model(torch.randn(4, 8)).sum().backward()
                raise ValueError("user code fails")
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    after = _snapshot(model)
    assert after["hooks"] == before["hooks"]


def test_state_puts_back_tensors_that_a_move_replaced():
    from tlprof.state import ModelState

    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    weight, running_mean = model[0].weight, model[1].running_mean
    state = ModelState.capture(model)
    model.to(torch.float64)  # replaces buffers, as a move to CUDA does
    model.train()
    model(torch.randn(8, 4, dtype=torch.float64)).sum().backward()
    state.restore()
    assert model[1].running_mean is running_mean and model[0].weight is weight
    assert running_mean.dtype == torch.float32 and torch.equal(running_mean, torch.zeros(4))
    assert model[0].weight.grad is None
