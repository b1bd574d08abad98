"""Leave the user's model exactly as it was: values, devices, layouts, flags, modes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ModelState:
    tensors: list[tuple[torch.Tensor, torch.Tensor]]  # (live tensor, saved copy)
    grads: list[tuple[nn.Parameter, torch.Tensor | None]]
    requires_grad: list[tuple[nn.Parameter, bool]]
    training: list[tuple[nn.Module, bool]]
    backend_flags: dict[str, bool]

    @classmethod
    def capture(cls, model: nn.Module) -> ModelState:
        live = list(model.parameters()) + [b for b in model.buffers()]
        return cls(
            tensors=[(t, t.detach().clone()) for t in live],
            grads=[(p, None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()],
            requires_grad=[(p, p.requires_grad) for p in model.parameters()],
            training=[(m, m.training) for m in model.modules()],
            backend_flags=_backend_flags(),
        )

    def restore_values(self) -> None:
        """Weights and buffers (BatchNorm statistics) back to their captured values."""
        with torch.no_grad():
            for live, saved in self.tensors:
                live.data = saved.clone()

    def restore(self) -> None:
        self.restore_values()
        for p, grad in self.grads:
            p.grad = grad
        for p, flag in self.requires_grad:
            p.requires_grad_(flag)
        for m, training in self.training:
            m.training = training
        _set_backend_flags(self.backend_flags)


def _backend_flags() -> dict[str, bool]:
    return {
        "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }


def _set_backend_flags(flags: dict[str, bool]) -> None:
    torch.backends.cuda.matmul.allow_tf32 = flags["matmul_tf32"]
    torch.backends.cudnn.allow_tf32 = flags["cudnn_tf32"]
    torch.backends.cudnn.benchmark = flags["cudnn_benchmark"]
