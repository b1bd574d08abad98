"""Tiny models for the data-parallel tests; ``--model tests/ddp_models.py:NAME`` on every rank."""

from __future__ import annotations

import os
import time

import torch
from torch import nn

SPIN_S = 0.04  # the planted delay on rank 1, per forward
FAIL_AT_CALL = 6  # rank 1's forward raises at this call (find_units and the probe come first)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


class Spin(nn.Module):  # standalone: this file is loaded by path on every rank
    """Busy-waits in its forward (a sleep would let the CPU go idle and hide nothing)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        end = time.perf_counter() + self.seconds
        while time.perf_counter() < end:
            pass
        return x


class FailAt(nn.Module):
    """Raises at its ``at``-th call: a rank that dies mid-run."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls >= self.at:
            raise RuntimeError(f"planted failure on rank {_rank()}")
        return x


def mlp(extra: nn.Module | None = None) -> nn.Sequential:
    """Four Linear units (16 → 64 → 64 → 64 → 4): 9,668 parameters."""
    layers: list[nn.Module] = [nn.Linear(16, 64), nn.ReLU()]
    if extra is not None:
        layers.append(extra)  # owned by unit 1
    layers += [nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4)]
    return nn.Sequential(*layers)


def slow_rank1() -> nn.Sequential:
    """Rank 1 spins in unit 1's forward; the other ranks do not."""
    return mlp(Spin(SPIN_S) if _rank() == 1 else None)


def fails_on_rank1() -> nn.Sequential:
    return mlp(FailAt(FAIL_AT_CALL) if _rank() == 1 else None)
