"""Small models for the kernels tests, with their closed-form FLOPs."""

from __future__ import annotations

import torch
from torch import nn

# convnet(): input 3×8×8
CONV_INPUT = (3, 8, 8)
CONV_CLASSES = 5


def conv_flops(c_in: int, c_out: int, k: int, h_out: int, w_out: int, batch: int) -> int:
    return 2 * c_in * c_out * k * k * h_out * w_out * batch


def linear_flops(n_in: int, n_out: int, batch: int) -> int:
    return 2 * n_in * n_out * batch


def convnet() -> nn.Module:
    """Three units: a stem conv (3→4, 8×8), a strided conv (4→8, 4×4), a linear (128→5)."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, CONV_CLASSES),
    )


def convnet_forward_flops(batch: int) -> list[int]:
    return [conv_flops(3, 4, 3, 8, 8, batch), conv_flops(4, 8, 3, 4, 4, batch),
            linear_flops(8 * 4 * 4, CONV_CLASSES, batch)]


PLANT_N = 1024  # a cdist of PLANT_N points in 64 dimensions takes milliseconds


def _planted_work(buf: torch.Tensor) -> None:
    torch.cdist(buf, buf)


class SlowForwardOp(nn.Module):
    """Runs a cdist in its forward (an op no other unit runs); owned by the unit before it."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("buf", torch.randn(PLANT_N, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _planted_work(self.buf)
        return x


class _SlowBackwardOp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
        ctx.buf = buf
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        _planted_work(ctx.buf)
        return grad, None


class SlowBackwardOp(nn.Module):
    """Runs a cdist in its backward only."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("buf", torch.randn(PLANT_N, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SlowBackwardOp.apply(x, self.buf)


def planted_ops() -> nn.Module:
    """Four Linear units on 16 features: unit 2 runs a cdist in forward, unit 3 in backward."""
    return nn.Sequential(
        nn.Linear(16, 16), nn.ReLU(),
        nn.Linear(16, 16), SlowForwardOp(), nn.ReLU(),
        nn.Linear(16, 16), SlowBackwardOp(), nn.ReLU(),
        nn.Linear(16, 4),
    )


def python_sleep() -> nn.Module:
    """Three Linear units; unit 2 owns a module that sleeps in Python (tests/models.py), no op."""
    from models import SleepForward

    return nn.Sequential(
        nn.Linear(16, 16), nn.ReLU(),
        nn.Linear(16, 16), SleepForward(), nn.ReLU(),
        nn.Linear(16, 4),
    )
