"""Layer units (docs/design.md §2): what counts as a layer, what it owns, how it freezes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import TlprofError


@dataclass
class Unit:
    index: int  # 1-based, execution order
    name: str  # qualified name of the weight module
    module: nn.Module = field(repr=False)
    modules: list[str]  # owned module names, the weight module first
    params: list[nn.Parameter] = field(repr=False)
    stage: str
    block: str

    @property
    def param_count(self) -> int:
        return sum(p.numel() for p in self.params)

    @property
    def param_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.params)

    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.params)

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "name": self.name,
            "modules": list(self.modules),
            "stage": self.stage,
            "block": self.block,
            "params": self.param_count,
            "trainable": self.trainable(),
        }


def has_own_weight(module: nn.Module) -> bool:
    """Conv/Linear-like: a weight of its own with two or more dimensions.

    Only parameters named ``*weight`` count (``weight``, ``in_proj_weight``), so
    a container holding, say, a position embedding is not a layer.
    """
    return any(
        name.endswith("weight") and p.dim() >= 2 for name, p in module.named_parameters(recurse=False)
    )


def _is_torchvision_resnet(model: nn.Module) -> bool:
    try:
        from torchvision.models import ResNet
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return False
    return isinstance(model, ResNet)


@dataclass(frozen=True)
class Convention:
    """How a model family counts its layers."""

    family: str
    counts: Callable[[str, nn.Module], bool]
    stage_block: Callable[[str], tuple[str, str]]


def _generic_stage_block(name: str) -> tuple[str, str]:
    parts = name.split(".")
    stage = parts[0]
    block = ".".join(parts[:2]) if len(parts) >= 3 else stage
    return stage, block


def _resnet_stage_block(name: str) -> tuple[str, str]:
    if name.startswith("layer"):
        parts = name.split(".")
        return parts[0], ".".join(parts[:2])
    if name == "fc":
        return "head", "fc"
    return "stem", "stem"


RESNET = Convention(
    family="resnet",
    counts=lambda name, m: has_own_weight(m) and ".downsample." not in f".{name}.",
    stage_block=_resnet_stage_block,
)
GENERIC = Convention(
    family="generic",
    counts=lambda name, m: has_own_weight(m),
    stage_block=_generic_stage_block,
)


def convention_for(model: nn.Module) -> Convention:
    return RESNET if _is_torchvision_resnet(model) else GENERIC


@contextmanager
def eval_no_grad(model: nn.Module) -> Iterator[None]:
    """Eval mode and no grad for a probing forward; every module's mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training


@contextmanager
def train_no_grad(model: nn.Module) -> Iterator[None]:
    """A probing forward in training mode (what is profiled); buffers such as BatchNorm
    statistics get their values back after it."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        with torch.no_grad():
            yield
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)


def execution_order(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of modules in order of their first call, from one no-grad forward.

    Training mode first, since modules that run only in training (auxiliary
    heads) are layers of a training step too; eval mode if that forward fails
    (BatchNorm refuses a batch of one).
    """
    names = {m: n for n, m in model.named_modules()}
    order: list[str] = []
    seen: set[str] = set()

    def pre_hook(module: nn.Module, _args: object) -> None:
        name = names[module]
        if name not in seen:
            seen.add(name)
            order.append(name)

    handles = [m.register_forward_pre_hook(pre_hook) for m in model.modules()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        try:
            model.train()
            with train_no_grad(model):
                model(example)
        except Exception:
            order.clear()
            seen.clear()
            with eval_no_grad(model):
                model(example)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training
    return order


def find_units(model: nn.Module, example: torch.Tensor) -> list[Unit]:
    """Units in first-execution order, each owning the modules that run until the next one."""
    convention = convention_for(model)
    modules = dict(model.named_modules())
    order = [n for n in execution_order(model, example) if n]
    owner_of: dict[str, int] = {}
    unit_names: list[str] = []
    for name in order:
        if convention.counts(name, modules[name]):
            unit_names.append(name)
        owner_of[name] = max(len(unit_names) - 1, 0)
    if not unit_names:
        raise TlprofError("the model has no layer with a weight of two or more dimensions")
    order += _adopt_uncalled(modules, owner_of)

    owned: list[list[str]] = [[u] for u in unit_names]
    for name in order:
        if name not in unit_names and _holds_params_or_is_leaf(modules[name]):
            owned[owner_of[name]].append(name)
    units = [_make_unit(i, unit_names[i], owned[i], modules, convention) for i in range(len(owned))]
    units[0].params[:0] = list(model.parameters(recurse=False))  # the root's run before unit 1
    return units


def _adopt_uncalled(modules: dict[str, nn.Module], owner_of: dict[str, int]) -> list[str]:
    """Modules with parameters that are never called themselves (their weights are used by a
    parent, as MultiheadAttention uses ``out_proj``) belong to their nearest called ancestor's
    unit, so that freezing by ownership freezes them too."""
    adopted = []
    for name, module in modules.items():
        if name and name not in owner_of and any(True for _ in module.parameters(recurse=False)):
            parent = name
            while "." in parent and parent not in owner_of:
                parent = parent.rpartition(".")[0]
            if parent in owner_of:
                owner_of[name] = owner_of[parent]
                adopted.append(name)
    return adopted


def _holds_params_or_is_leaf(module: nn.Module) -> bool:
    return next(module.children(), None) is None or any(True for _ in module.parameters(False))


def _make_unit(
    i: int, name: str, owned: list[str], modules: dict[str, nn.Module], convention: Convention
) -> Unit:
    params: list[nn.Parameter] = []
    seen: set[int] = set()
    for mod_name in owned:
        for p in modules[mod_name].parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    stage, block = convention.stage_block(name)
    return Unit(i + 1, name, modules[name], owned, params, stage, block)


def freeze(model: nn.Module, units: list[Unit], n_frozen: int, frozen_bn: str = "eval") -> None:
    """Freeze units 1..n_frozen by ownership; every other unit's parameters train."""
    modules = dict(model.named_modules())
    for unit in units:
        frozen = unit.index <= n_frozen
        for p in unit.params:
            p.requires_grad_(not frozen)
        if frozen and frozen_bn == "eval":
            for name in unit.modules:
                if isinstance(modules[name], nn.modules.batchnorm._BatchNorm):
                    modules[name].eval()
