"""Leave the user's model exactly as it was: values, devices, layouts, flags, modes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Slot:
    """One parameter or buffer, where it lives, and a copy of its value."""

    module: nn.Module
    name: str
    kind: str  # "_parameters" | "_buffers"
    tensor: torch.Tensor  # the object the user's model held
    saved: torch.Tensor


@dataclass
class ModelState:
    slots: list[Slot]
    grads: list[tuple[nn.Parameter, torch.Tensor | None]]
    requires_grad: list[tuple[nn.Parameter, bool]]
    training: list[tuple[nn.Module, bool]]
    backend_flags: dict[str, bool | str | None]

    @classmethod
    def capture(cls, model: nn.Module) -> ModelState:
        params = list(model.parameters())
        return cls(
            slots=[
                Slot(m, name, kind, t, t.detach().clone())
                for m in model.modules()
                for kind in ("_parameters", "_buffers")
                for name, t in getattr(m, kind).items()
                if t is not None
            ],
            grads=[(p, None if p.grad is None else p.grad.detach().clone()) for p in params],
            requires_grad=[(p, p.requires_grad) for p in params],
            training=[(m, m.training) for m in model.modules()],
            backend_flags=backend_flags(),
        )

    def restore_values(self) -> None:
        """The captured objects back in their modules, with their captured values.

        ``Module.to`` may replace a tensor rather than change it (buffers always),
        so the module's slot is set back to the object it held, not only refilled.
        """
        with torch.no_grad():
            for slot in self.slots:
                slot.tensor.data = slot.saved.clone()
                getattr(slot.module, slot.kind)[slot.name] = slot.tensor

    def restore(self) -> None:
        self.restore_values()
        for p, grad in self.grads:
            p.grad = grad
        for p, flag in self.requires_grad:
            p.requires_grad_(flag)
        for m, training in self.training:
            m.training = training
        _set_backend_flags(self.backend_flags)


def matmul_precision() -> str | None:
    """``torch.get_float32_matmul_precision()``, or None where torch refuses to say (it raises once
    the legacy ``allow_tf32`` flags and the newer ``fp32_precision`` ones have both been set)."""
    try:
        return torch.get_float32_matmul_precision()
    except RuntimeError:
        return None


def backend_flags() -> dict[str, bool | str | None]:
    """The flags that decide fp32 arithmetic, as they are now: captured to be restored, and
    recorded in a profile's ``meta``."""
    return {
        "float32_matmul_precision": matmul_precision(),
        "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }


def _set_backend_flags(flags: dict[str, bool | str | None]) -> None:
    torch.backends.cuda.matmul.allow_tf32 = flags["matmul_tf32"]
    torch.backends.cudnn.allow_tf32 = flags["cudnn_tf32"]
    torch.backends.cudnn.benchmark = flags["cudnn_benchmark"]
    if flags["float32_matmul_precision"] is not None:  # last: it also sets matmul_tf32 ("medium" too)
        torch.set_float32_matmul_precision(flags["float32_matmul_precision"])
