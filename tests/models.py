"""Small models for the core tests; also usable as ``--model tests/models.py:NAME``."""

from __future__ import annotations

import time

import torch
from torch import nn

DELAY_S = 0.03
DELAY_MS = DELAY_S * 1000


class SleepForward(nn.Module):
    """Sleeps in its forward; owned by whichever unit ran just before it."""

    def __init__(self, seconds: float = DELAY_S) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return x


class _SlowBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, seconds: float) -> torch.Tensor:
        ctx.seconds = seconds
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        time.sleep(ctx.seconds)
        return grad, None


class SleepBackward(nn.Module):
    def __init__(self, seconds: float = DELAY_S) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SlowBackward.apply(x, self.seconds)


def planted_delays() -> nn.Module:
    """Four Linear units: unit 2's forward sleeps, unit 3's backward sleeps."""
    return nn.Sequential(
        nn.Linear(16, 16), nn.ReLU(),
        nn.Linear(16, 16), SleepForward(), nn.ReLU(),
        nn.Linear(16, 16), SleepBackward(), nn.ReLU(),
        nn.Linear(16, 4),
    )


def mlp() -> nn.Module:
    """Saved bytes per unit, batch B, fp32: unit 1 = B·(8+16)·4, unit 2 = B·32·4, unit 3 = 0."""
    return nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)
    )


def convnet() -> nn.Module:
    """For 3×6×6 inputs: see tests/test_memory.py for the analytic saved bytes."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 6 * 6, 5),
    )


class Exploding(nn.Module):
    """Raises inside its forward on a chosen call, to test that profiling leaves no trace."""

    def __init__(self, fail_on_call: int) -> None:
        super().__init__()
        self.calls = 0
        self.fail_on_call = fail_on_call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("planted failure")
        return x


def failing_factory() -> nn.Module:
    raise ValueError("factory refuses")


def not_a_module() -> object:
    return 42


def explodes_in_training() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 8), Exploding(fail_on_call=4), nn.Linear(8, 2))


class TwoBranches(nn.Module):
    """Unit 2 and unit 3 both read unit 1's output; unit 2's output only feeds the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(8, 8)
        self.left = nn.Linear(8, 8)
        self.right = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(self.left(x) + self.right(x))


def two_branches() -> nn.Module:
    return TwoBranches()
