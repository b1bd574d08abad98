"""Tiny models for the report and cached-features tests; also ``--model tests/report_models.py:NAME``."""

from __future__ import annotations

import time
from collections import OrderedDict

import torch
from torch import nn


class SleepForward(nn.Module):
    """Sleeps in its forward; owned by whichever unit ran just before it."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return x


class Block(nn.Module):
    """Residual block whose one ReLU module runs twice, before and after the add (as in ResNet)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


class CountingIdentity(nn.Module):
    """Counts how often its forward really runs."""

    def __init__(self) -> None:
        super().__init__()
        self.runs = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.runs += 1
        return x


def staged() -> nn.Module:
    """Six units for 3×8×8 inputs: stem.0 | stage1.0.conv1, conv2 | stage1.1.conv1, conv2 | head.2."""
    return nn.Sequential(OrderedDict(
        stem=nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                           CountingIdentity()),
        stage1=nn.Sequential(Block(4), Block(4)),
        head=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)),
    ))


def slow_stem(seconds: float = 0.02) -> nn.Module:
    """Three Linear units for 16-sized inputs; unit 1's forward sleeps ``seconds``."""
    return nn.Sequential(
        nn.Linear(16, 16), SleepForward(seconds), nn.ReLU(),
        nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4),
    )


class VaryingCalls(nn.Module):
    """Calls its ReLU once or twice before unit 2, alternating between forwards."""

    def __init__(self) -> None:
        super().__init__()
        self.lin1 = nn.Linear(8, 8)
        self.act = nn.ReLU()
        self.lin2 = nn.Linear(8, 4)
        self.forwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        x = self.lin1(x)
        for _ in range(1 + self.forwards % 2):
            x = self.act(x)
        return self.lin2(x)


class InPlaceGlue(nn.Module):
    """Its own forward adds to unit 1's output in place before unit 2 runs."""

    def __init__(self) -> None:
        super().__init__()
        self.lin1 = nn.Linear(8, 8)
        self.lin2 = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin1(x)
        h += 1.0
        return self.lin2(h)
