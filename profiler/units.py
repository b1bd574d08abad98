"""Layer units (docs/design.md §2): what counts as a layer, what it owns, how it freezes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch import nn
from torch.overrides import TorchFunctionMode

from .errors import TlprofError
from .families import rollup_for
from .memory import total_bytes

Example = torch.Tensor | tuple[torch.Tensor, ...]


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
        return total_bytes(self.params)

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


@dataclass(frozen=True)
class Convention:
    """How a model family counts its layers."""

    counts: Callable[[str, nn.Module], bool]
    stage_block: Callable[[str], tuple[str, str]]


def _counts_all_but(shortcut: str | None) -> Callable[[str, nn.Module], bool]:
    """Every module with a weight matrix counts, but those inside a ``shortcut`` projection."""
    if shortcut is None:
        return lambda name, m: has_own_weight(m)
    return lambda name, m: has_own_weight(m) and f".{shortcut}." not in f".{name}."


SHORTCUTS = {"resnet": "downsample", "regnet": "proj"}  # projection shortcuts: owned, not counted


def convention_for(model: nn.Module) -> Convention:
    family, stage_block = rollup_for(model)
    return Convention(_counts_all_but(SHORTCUTS.get(family)), stage_block)


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


def as_args(example: Example) -> tuple[torch.Tensor, ...]:
    """A model's positional inputs: one tensor, or a tuple or list of them."""
    return tuple(example) if isinstance(example, (tuple, list)) else (example,)


def probe_forward(model: nn.Module, args: tuple[torch.Tensor, ...],
                  scope: contextlib.AbstractContextManager | None = None,
                  retry: Callable[[], None] | None = None) -> Any:
    """One no-grad forward that leaves the model as it was: in training mode first, as profiled
    (modules that run only in training, such as auxiliary heads, are part of a training step),
    in eval mode if that fails (BatchNorm refuses a batch of one). ``scope`` is entered around
    each forward (inside the no-grad); ``retry`` runs before the eval-mode one. A failure in eval
    mode is raised; every module's mode is restored after."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        try:
            model.train()
            with train_no_grad(model), scope or contextlib.nullcontext():
                return model(*args)
        except Exception:
            if retry is not None:
                retry()
            with eval_no_grad(model), scope or contextlib.nullcontext():
                return model(*args)
    finally:
        for m, training in modes:
            m.training = training


@dataclass
class Discovery:
    order: list[str]  # modules in order of their first call
    weight_users: dict[str, str]  # weight owner -> the module whose forward uses it as a module does not


class _WeightUse(TorchFunctionMode):
    """Sees which running module each operation on a weight matrix happens in.

    A weight consumed while its own module is not running (torchvision's Swin calls
    ``F.linear`` with ``attn.qkv.weight``; ``MultiheadAttention`` uses ``out_proj.weight``)
    makes the innermost running module the layer that runs it.
    """

    def __init__(self, weights: dict[int, str], running: list[str]) -> None:
        super().__init__()
        self.weights = weights
        self.running = running
        self.users: dict[str, str] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for arg in pytree.arg_tree_leaves(*args, **kwargs):
            owner = self.weights.get(id(arg)) if isinstance(arg, torch.Tensor) else None
            if owner is not None and owner not in self.running and self.running[-1:] != [""]:
                self.users.setdefault(owner, self.running[-1])
        return func(*args, **kwargs)


def _weight_owners(model: nn.Module) -> dict[int, str]:
    owners: dict[int, str] = {}
    for name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if pname.endswith("weight") and p.dim() >= 2:
                owners.setdefault(id(p), name)
    return owners


def discover(model: nn.Module, example: Example) -> Discovery:
    """Module call order and functional weight use, from one no-grad forward (``probe_forward``:
    training mode, since modules that run only in training are layers of a training step too;
    eval mode if that fails)."""
    names = {m: n for n, m in model.named_modules()}
    order: list[str] = []
    seen: set[str] = set()
    running: list[str] = []

    def pre_hook(module: nn.Module, _args: object) -> None:
        name = names[module]
        running.append(name)
        if name not in seen:
            seen.add(name)
            order.append(name)

    def post_hook(module: nn.Module, _args: object, _out: object) -> None:
        if running and running[-1] == names[module]:
            running.pop()

    handles = [m.register_forward_pre_hook(pre_hook) for m in model.modules()]
    handles += [m.register_forward_hook(post_hook, always_call=True) for m in model.modules()]
    use = _WeightUse(_weight_owners(model), running)

    def forget() -> None:  # what the failed training-mode forward saw
        order.clear()
        seen.clear()
        running.clear()
        use.users.clear()

    try:
        probe_forward(model, as_args(example), use, forget)
    finally:
        for h in handles:
            h.remove()
    return Discovery(order, use.users)


def find_units(model: nn.Module, example: Example) -> list[Unit]:
    """Units in first-execution order, each owning the modules that run until the next one.

    A module that runs another module's weight matrix itself (see ``_WeightUse``) is a unit.
    """
    convention = convention_for(model)
    modules = dict(model.named_modules())
    found = discover(model, example)
    order = [n for n in found.order if n]
    runs_weights = set(found.weight_users.values())
    owner_of: dict[str, int] = {}
    unit_names: list[str] = []
    for name in order:
        if convention.counts(name, modules[name]) or name in runs_weights:
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
