"""What one training step feeds the model and what it minimises.

A model is given as an ``nn.Module`` or as a ``ModelSpec``: the model with its
example inputs and, optionally, its loss. A factory passed to ``--model`` may
return either, or a mapping with the same keys (``model``, ``inputs``,
``loss``). ``inputs`` is one tensor or a tuple of tensors, each with the batch
as its first dimension; the model is called as ``model(*inputs)``. ``loss`` is
``loss(output, inputs) -> scalar tensor`` and sees the model's whole output.

Without a loss, the step trains one output tensor (``--output INDEX|KEY``
chooses it when the model returns several) with ``--loss ce|mse|sum``:
cross-entropy over the last dimension (targets drawn at random), mean squared
error to a random target, or the plain sum. The default is cross-entropy for a
(B, C) float output, mean squared error otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from .defaults import INPUT_DTYPES, LOSSES  # noqa: F401  (LOSSES re-exported)
from .errors import TlprofError, first_line, say
from .units import probe_forward

if TYPE_CHECKING:
    from .runner import ProfileConfig

Batch = tuple[torch.Tensor, ...]
LossFn = Callable[[Any, Batch], torch.Tensor]
EXAMPLE_ROWS = 2  # rows of the batch that discovery runs: BatchNorm in training mode needs two
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # precisions that run under autocast


@dataclass
class ModelSpec:
    """A model with what trains it: example inputs (a tensor or a tuple) and optionally a loss.

    ``inputs`` fixes the shapes and dtypes of one batch; the profiled batch repeats its rows
    up to the configured batch size. ``loss(output, inputs)`` returns a scalar to minimise.
    """

    model: nn.Module
    inputs: torch.Tensor | tuple[torch.Tensor, ...] | None = None
    loss: LossFn | None = None

    def batch(self) -> Batch | None:
        if self.inputs is None:
            return None
        return (self.inputs,) if isinstance(self.inputs, torch.Tensor) else tuple(self.inputs)


def as_spec(value: Any, what: str = "the model") -> ModelSpec:
    """A module, a ModelSpec, or a mapping/dataclass with ``model`` (``inputs``, ``loss``)."""
    if isinstance(value, ModelSpec):
        spec = value
    elif isinstance(value, nn.Module):
        spec = ModelSpec(value)
    elif isinstance(value, Mapping) or (is_dataclass(value) and not isinstance(value, type)):
        items = dict(value) if isinstance(value, Mapping) else {f.name: getattr(value, f.name)
                                                                 for f in fields(value)}
        unknown = sorted(set(items) - {"model", "inputs", "loss"})
        if unknown or not isinstance(items.get("model"), nn.Module):
            raise TlprofError(f"{what} must be an nn.Module or have 'model' (an nn.Module), 'inputs' "
                              f"and 'loss'; got keys {', '.join(sorted(items))}")
        spec = ModelSpec(items["model"], items.get("inputs"), items.get("loss"))
    else:
        raise TlprofError(f"{what} is {type(value).__name__}, not an nn.Module or a ModelSpec")
    _check_inputs(spec, what)
    if spec.loss is not None and not callable(spec.loss):
        raise TlprofError(f"{what}: loss must be callable(output, inputs), got {type(spec.loss).__name__}")
    return ModelSpec(unwrap_compiled(spec.model), spec.inputs, spec.loss)


def _check_inputs(spec: ModelSpec, what: str) -> None:
    batch = spec.batch()
    if batch is None:
        return
    if not batch or not all(isinstance(t, torch.Tensor) and t.dim() >= 1 for t in batch):
        raise TlprofError(f"{what}: inputs must be a tensor or a tuple of tensors with a batch dimension")
    if len({t.shape[0] for t in batch}) > 1:
        raise TlprofError(f"{what}: inputs disagree on the batch size: {[t.shape[0] for t in batch]}")


# -- compiled models ------------------------------------------------------------------


def unwrap_compiled(model: nn.Module) -> nn.Module:
    """The eager model behind ``torch.compile(model)``, with a note: hooks per layer need eager
    execution, and a compiled graph would hide the layers being measured."""
    inner = unwrap_compiled_quiet(model)
    if inner is not model:
        say("the model is compiled (torch.compile); profiling its eager model, layer by layer")
    return inner


@contextlib.contextmanager
def eager(model: nn.Module) -> Iterator[nn.Module]:
    """Submodules compiled in place (``module.compile()``) or wrapped (``torch.compile(child)``)
    run eagerly inside; the model is put back as it was after."""
    undo: list[Callable[[], None]] = []
    for module in list(model.modules()):
        if getattr(module, "_compiled_call_impl", None) is not None:
            impl = module._compiled_call_impl
            module._compiled_call_impl = None
            undo.append(lambda m=module, i=impl: setattr(m, "_compiled_call_impl", i))
        for name, child in list(module._modules.items()):
            inner = None if child is None else unwrap_compiled_quiet(child)
            if inner is not child:
                module._modules[name] = inner
                undo.append(lambda m=module, n=name, c=child: m._modules.__setitem__(n, c))
    if undo:
        say("parts of the model are compiled (torch.compile); profiling them eagerly, layer by layer")
    try:
        yield model
    finally:
        for fn in reversed(undo):
            fn()


def unwrap_compiled_quiet(model: nn.Module) -> nn.Module:
    """The eager model behind any number of ``torch.compile`` wrappers; the model itself if none."""
    inner = getattr(model, "_orig_mod", None)
    if isinstance(inner, nn.Module) and type(model).__name__ == "OptimizedModule":
        return unwrap_compiled_quiet(inner)
    return model


# -- inputs ---------------------------------------------------------------------------


def input_dtype(name: str | None) -> torch.dtype:
    if name is None:
        return torch.float32
    if name not in INPUT_DTYPES:
        raise TlprofError(f"--input-dtype {name!r}: use one of {', '.join(INPUT_DTYPES)}")
    return getattr(torch, name)


def synthetic_input(shape: tuple[int, ...], dtype: torch.dtype, high: int | None,
                    device: torch.device) -> torch.Tensor:
    if dtype == torch.bool:
        return torch.rand(shape, device=device) < 0.5
    if dtype.is_floating_point:
        return torch.randn(shape, device=device, dtype=dtype)
    return torch.randint(0, high, shape, device=device, dtype=dtype)


def integer_range(model: nn.Module, dtype_name: str | None, input_max: int | None) -> int | None:
    """Token ids (and other integer inputs) are drawn from [0, N): --input-max N, else the
    smallest embedding table of the model."""
    dtype = input_dtype(dtype_name)
    if dtype.is_floating_point or dtype == torch.bool:
        if input_max is not None:
            raise TlprofError("--input-max applies to integer inputs; add --input-dtype int64")
        return None
    if input_max is not None:
        if input_max < 1:
            raise TlprofError(f"--input-max must be at least 1, got {input_max}")
        return input_max
    tables = [m.num_embeddings for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]
    if not tables:
        raise TlprofError(f"--input-dtype {dtype_name} needs --input-max N (inputs are drawn from 0..N-1)")
    return min(tables)


def repeat_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    if t.shape[0] == rows:
        return t
    return t[torch.arange(rows, device=t.device) % t.shape[0]]


def make_batch(spec: ModelSpec, cfg: ProfileConfig, device: torch.device, rows: int) -> Batch:
    """The batch the model is fed: the spec's inputs (rows repeated or cut), else synthetic."""
    given = spec.batch()
    if given is not None:
        batch = tuple(repeat_rows(t.to(device), rows) for t in given)
    else:
        dtype = input_dtype(cfg.input_dtype)
        high = integer_range(spec.model, cfg.input_dtype, cfg.input_max)
        batch = (synthetic_input((rows, *cfg.input_shape), dtype, high, device),)
    if cfg.channels_last:
        batch = tuple(t.contiguous(memory_format=torch.channels_last)
                      if t.dim() == 4 and t.is_floating_point() else t for t in batch)
    return batch


def describe_batch(batch: Batch) -> list[dict[str, Any]]:
    return [{"shape": list(t.shape[1:]), "dtype": str(t.dtype).removeprefix("torch.")} for t in batch]


# -- outputs --------------------------------------------------------------------------


WHOLE = object()  # the slot of an output that is itself the tensor (None may be a mapping's key)


def output_entries(output: Any) -> list[tuple[str, Any, torch.Tensor]]:
    """The tensors a model returns at its top level: each with its index or key as text, and its
    slot (what indexes the output: a position, a mapping's own key, or ``WHOLE``)."""
    if isinstance(output, torch.Tensor):
        return [("", WHOLE, output)]
    if isinstance(output, Mapping):
        return [(str(k), k, v) for k, v in output.items() if isinstance(v, torch.Tensor)]
    if isinstance(output, (tuple, list)):
        names = getattr(output, "_fields", None)
        return [(names[i] if names else str(i), i, v) for i, v in enumerate(output)
                if isinstance(v, torch.Tensor)]
    return []


def output_slot(output: Any, key: str | None) -> Any:
    """Where the tensor the loss uses is in the output: the only one, or the one named by
    ``--output``."""
    entries = output_entries(output)
    if not entries:
        raise TlprofError(f"the model returned {type(output).__name__}, with no tensor to train on")
    if key is None:
        if len(entries) == 1:
            return entries[0][1]
        listed = ", ".join(f"{k}: {_shape_text(v)}" for k, _, v in entries)
        raise TlprofError(f"the model returns {len(entries)} outputs ({listed}); "
                          "choose the one the loss uses with --output INDEX|KEY")
    if isinstance(output, torch.Tensor):
        raise TlprofError(f"--output {key}: the model returns a single tensor")
    if isinstance(output, (tuple, list)) and key.lstrip("-").isdigit():
        index = int(key)
        if -len(output) <= index < len(output) and isinstance(output[index], torch.Tensor):
            return index
    for k, slot, _ in entries:
        if k == key:
            return slot
    raise TlprofError(f"--output {key}: the model's outputs are {', '.join(k for k, _, _ in entries)}")


def _at(output: Any, slot: Any) -> Any:
    return output if slot is WHOLE else output[slot]


def select_output(output: Any, key: str | None) -> torch.Tensor:
    """The tensor the loss uses: the only one, or the one named by ``--output``."""
    return _at(output, output_slot(output, key))


def output_picker(probe: Any, key: str | None) -> Callable[[Any], torch.Tensor]:
    """``select_output`` resolved once, on the probe's output (the loss's targets are sized from
    it too): each step takes the tensor from the same slot of an output of the same type, and
    only an output of another structure is searched again (with ``select_output``'s errors)."""
    slot = output_slot(probe, key)
    kind = type(probe)

    def pick(output: Any) -> torch.Tensor:
        if type(output) is kind:
            try:
                value = _at(output, slot)
            except (LookupError, TypeError):
                value = None
            if isinstance(value, torch.Tensor):
                return value
        return select_output(output, key)

    return pick


def _shape_text(t: torch.Tensor) -> str:
    return "×".join(["B", *map(str, t.shape[1:])])


def probe_output(model: nn.Module, batch: Batch) -> Any:
    """One no-grad forward (``units.probe_forward``: training mode as profiled, eval mode if that
    fails), for the output's structure and shapes."""
    try:
        return probe_forward(model, batch)
    except Exception as exc:  # the model's own error is the message
        shapes = ", ".join(str(tuple(t.shape[1:])) for t in batch)
        raise TlprofError(f"the model rejects input shape {shapes}: {first_line(exc)}") from exc


# -- the workload ---------------------------------------------------------------------


@dataclass
class Workload:
    """One batch, its loss and the precision settings, for one model on one device."""

    inputs: Batch
    loss_fn: Callable[[Any], torch.Tensor] = field(repr=False)
    device: torch.device
    precision: str
    num_classes: int | None = None
    output_shape: tuple[int, ...] = field(default_factory=tuple)
    loss_name: str = "custom"
    output_key: str | None = None
    autocast_dtype: torch.dtype | None = field(init=False, repr=False)  # from precision, once

    def __post_init__(self) -> None:
        self.autocast_dtype = AUTOCAST_DTYPES.get(self.precision)

    @property
    def x(self) -> torch.Tensor:
        """The first input (most models take one)."""
        return self.inputs[0]

    def example(self) -> Batch:
        """Two samples of the batch (BatchNorm in training mode needs two), for finding units."""
        return tuple(t[:EXAMPLE_ROWS] for t in self.inputs)

    def forward(self, model: nn.Module) -> Any:
        return model(*self.inputs)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def loss(self, output: Any) -> torch.Tensor:
        return self.loss_fn(output)

    def scaler(self) -> torch.amp.GradScaler | None:
        return torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None


def make_workload(model: nn.Module | ModelSpec, cfg: ProfileConfig, device: torch.device) -> Workload:
    spec = model if isinstance(model, ModelSpec) else ModelSpec(model)
    batch = make_batch(spec, cfg, device, cfg.batch_size)
    if spec.loss is not None:
        user_loss = spec.loss
        return Workload(batch, lambda output: user_loss(output, batch), device, cfg.precision)
    probe = probe_output(spec.model, tuple(t[:EXAMPLE_ROWS] for t in batch))
    pick = output_picker(probe, cfg.output)
    out = pick(probe)
    name = cfg.loss or ("ce" if out.dim() == 2 and out.is_floating_point() else "mse")
    fn, classes = _builtin_loss(name, out, cfg, device, pick)
    return Workload(batch, fn, device, cfg.precision, classes, tuple(out.shape[1:]), name, cfg.output)


def _builtin_loss(name: str, out: torch.Tensor, cfg: ProfileConfig, device: torch.device,
                  pick: Callable[[Any], torch.Tensor]) -> tuple[Callable[[Any], torch.Tensor], int | None]:
    if name not in LOSSES:
        raise TlprofError(f"--loss {name!r}: use one of {', '.join(LOSSES)}")
    if not out.is_floating_point():
        raise TlprofError(f"the output the loss uses is {out.dtype}; choose a float one with --output")
    rows = (cfg.batch_size, *out.shape[1:])
    if name == "sum":
        return lambda output: pick(output).float().sum(), None
    if name == "mse":
        target = torch.randn(rows, device=device)
        return lambda output: F.mse_loss(pick(output).float(), target), None
    if out.dim() < 2:
        raise TlprofError(f"--loss ce needs a (B, C) or (B, ..., C) output; the output is {tuple(out.shape)}")
    classes = out.shape[-1]
    if cfg.num_classes is not None and cfg.num_classes != classes:
        raise TlprofError(f"--num-classes {cfg.num_classes}, but the model outputs {classes} classes")
    target = torch.randint(0, classes, rows[:-1], device=device).reshape(-1)
    return lambda output: F.cross_entropy(pick(output).float().reshape(-1, classes), target), classes
