"""What ``tlprof layers`` shows beside the units: shapes, kernel sizes, parameter shares and
the module tree to a depth (after torchinfo's summary; no training step is run).

Shapes come from one no-grad forward in eval mode on the example, with a hook on
every module that records the first tensor in and out of its first call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .instrument import first_tensor
from .units import Example, Unit, as_args, eval_no_grad


@dataclass
class ModuleRow:
    """One module of the tree: where it sits, what it is, what it sees."""

    name: str
    depth: int  # 0 for a top-level child, +1 per level below
    kind: str  # the module's class name
    params: int  # its own and its children's
    input: str = "-"
    output: str = "-"
    kernel: str = "-"
    units: str = ""  # the unit it is or belongs to ("3"), or the units inside it ("2–10")


def shape_text(t: torch.Tensor | None) -> str:
    return "-" if t is None else "×".join(str(d) for d in t.shape)


def kernel_text(module: nn.Module) -> str:
    """3×3 /2 for a strided conv, 2048→1000 for a linear layer, the weight's shape otherwise."""
    size = getattr(module, "kernel_size", None)
    if isinstance(size, tuple) and hasattr(module, "in_channels"):
        stride = getattr(module, "stride", (1,))
        step = "" if all(s == 1 for s in stride) else " /" + "×".join(str(s) for s in dict.fromkeys(stride))
        return "×".join(str(k) for k in size) + step
    if isinstance(module, nn.Linear):
        return f"{module.in_features}→{module.out_features}"
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() >= 2:
        return "×".join(str(d) for d in weight.shape)
    return "-"


def record_shapes(model: nn.Module, example: Example) -> dict[str, tuple[str, str]]:
    """Module name → (input shape, output shape) of its first call."""
    seen: dict[str, tuple[str, str]] = {}
    handles = []
    for name, module in model.named_modules():
        def hook(_m: nn.Module, args: tuple, output: object, name: str = name) -> None:
            if name not in seen:
                seen[name] = (shape_text(first_tensor(args)), shape_text(first_tensor(output)))

        handles.append(module.register_forward_hook(hook))
    try:
        with eval_no_grad(model):
            model(*as_args(example))
    finally:
        for h in handles:
            h.remove()
    return seen


def unit_rows(model: nn.Module, units: Sequence[Unit], shapes: dict[str, tuple[str, str]]) -> list[ModuleRow]:
    """The units as rows: the weight module's shapes and kernel, the unit's parameters."""
    modules = dict(model.named_modules())
    rows = []
    for u in units:
        inp, out = shapes.get(u.name, ("-", "-"))
        rows.append(ModuleRow(u.name, 0, type(u.module).__name__, u.param_count, inp, out,
                              kernel_text(modules[u.name]), str(u.index)))
    return rows


def module_tree(model: nn.Module, units: Sequence[Unit], shapes: dict[str, tuple[str, str]],
                depth: int) -> list[ModuleRow]:
    """Every module down to ``depth`` levels (1 = the model's children), in definition order."""
    owner = {m: u.index for u in units for m in u.modules}
    rows = []
    for name, module in model.named_modules():
        level = name.count(".") if name else -1
        if not name or level >= depth:
            continue
        inside = sorted({i for m, i in owner.items() if m == name or m.startswith(name + ".")})
        inp, out = shapes.get(name, ("-", "-"))
        rows.append(ModuleRow(name, level, type(module).__name__,
                              sum(p.numel() for p in module.parameters()), inp, out,
                              kernel_text(module), _span(inside)))
    return rows


def _span(indices: list[int]) -> str:
    if not indices:
        return ""
    lo, hi = indices[0], indices[-1]
    return str(lo) if lo == hi else f"{lo}–{hi}"


def share_text(params: int, total: int) -> str:
    return "-" if total <= 0 else f"{params / total:.1%}"
