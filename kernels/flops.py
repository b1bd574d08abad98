"""FLOPs per unit, forward and backward, from one real step (docs/design.md §8).

A dispatch mode sees every ATen op that runs, prices it with the formulas of
``torch.utils.flop_counter`` (FLOPs = 2 × multiply-adds; only ops with a
formula count, chiefly matmul and convolution), and charges it to the label the
``Instrumenter`` says is running. Backward FLOPs are therefore what autograd
actually ran: a unit whose input needs no grad (the stem, the first trainable
unit of a frozen run) computes only its weight gradient, a frozen unit nothing.

Other FLOPs: the ops ``flop_registry`` leaves at zero but fvcore, thop and
calflops count (BatchNorm, ReLU, pooling, add) are priced by ``OTHER_FLOPS``
and kept apart, per unit (``other_fwd``/``other_bwd``), so the registry's
figures stay comparable with ``FlopCounterMode``; both are also tallied per
operator (``by_op``). The convention is in docs/kernels.md.

Threads: the mode is entered on the calling thread. The autograd engine copies
the caller's thread-local state, dispatch modes included, into each backward
worker thread (CUDA runs backward on a device thread), which is also why
``FlopCounterMode`` counts backward on CUDA. The marks that set
``Instrumenter.current`` are stamped on that same worker thread, so each op is
charged to the unit whose backward is running. ``StepFlops.threads`` records
how many threads ops were counted on per pass, and a step whose trainable units
show no backward FLOPs at all is reported, not silently stored as zeros.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from tlprof.clock import HostClock
from tlprof.instrument import Instrumenter, first_tensor
from tlprof.marks import Label, charge
from tlprof.memory import tensor_bytes
from tlprof.units import Unit

_aten = torch.ops.aten
# Metadata queries a tensor subclass may route here; FlopCounterMode declines them too.
_METADATA_OPS = {
    _aten.is_contiguous.default, _aten.is_contiguous.memory_format,
    _aten.is_strides_like_format.default, _aten.is_non_overlapping_and_dense.default,
    _aten.size.default, _aten.sym_size.default, _aten.stride.default, _aten.sym_stride.default,
    _aten.storage_offset.default, _aten.sym_storage_offset.default, _aten.numel.default,
    _aten.sym_numel.default, _aten.dim.default, torch.ops.prim.layout.default,
}


def _numel(t: object) -> int:
    return t.numel() if isinstance(t, torch.Tensor) else 0


def _first(value: object) -> object:
    return value[0] if isinstance(value, (tuple, list)) and value else value


def _window(kernel: object) -> int:
    sizes = [kernel] * 2 if isinstance(kernel, int) else list(kernel)
    return math.prod(sizes) if len(sizes) > 1 else sizes[0] ** 2


def _per_input(k: int) -> Callable[..., int]:
    return lambda args, out: k * _numel(args[0])


def _per_output(k: int) -> Callable[..., int]:
    return lambda args, out: k * _numel(_first(out))


def _pool(args, out) -> int:
    """Window size per output element; the backward pays the same per gradient element."""
    return _window(args[1]) * _numel(_first(out))


def _pool_backward(args, out) -> int:
    return _window(args[2]) * _numel(args[0])


OTHER_FLOPS: dict[object, Callable[..., int]] = {
    # BatchNorm: x − μ, × 1/σ, × γ, + β per element; backward twice that
    _aten.native_batch_norm: _per_input(4),
    _aten._native_batch_norm_legit: _per_input(4),
    _aten._native_batch_norm_legit_no_training: _per_input(4),
    _aten.cudnn_batch_norm: _per_input(4),
    _aten.native_batch_norm_backward: _per_input(8),
    _aten.cudnn_batch_norm_backward: _per_input(8),
    # ReLU: one comparison per element, forward and backward
    _aten.relu: _per_input(1),
    _aten.relu_: _per_input(1),
    _aten.threshold_backward: _per_input(1),
    # pooling
    _aten.max_pool2d_with_indices: _pool,
    _aten.max_pool2d: _pool,
    _aten.avg_pool2d: _pool,
    _aten.max_pool2d_with_indices_backward: _pool_backward,
    _aten.avg_pool2d_backward: lambda args, out: _window(args[2]) * _numel(args[0]),
    _aten._adaptive_avg_pool2d: _per_input(1),
    _aten._adaptive_avg_pool2d_backward: _per_output(1),
    _aten.mean: _per_input(1),  # adaptive average pooling to 1×1 runs as a mean
    # add: one per output element (residual adds, gradient accumulation)
    _aten.add: _per_output(1),
    _aten.add_: _per_output(1),
}


class LabelFlopCounter(TorchDispatchMode):
    """Prices each op with ``flop_registry`` (and ``OTHER_FLOPS``, kept apart) and charges it to
    the label running now."""

    def __init__(self, current: Callable[[], Label]) -> None:
        super().__init__()
        self._current = current
        self.by_label: dict[Label, int] = defaultdict(int)
        self.other_by_label: dict[Label, int] = defaultdict(int)
        self.by_op: dict[str, int] = defaultdict(int)
        self.other_by_op: dict[str, int] = defaultdict(int)
        self.threads: dict[str, set[int]] = defaultdict(set)  # label kind -> thread ids

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _METADATA_OPS:
            return NotImplemented
        formula = flop_registry.get(func._overloadpacket)
        other = OTHER_FLOPS.get(func._overloadpacket)
        if other is not None:
            out = func(*args, **kwargs)
            flops = int(other(args, out))
            self.other_by_label[self._current()] += flops
            self.other_by_op[func._overloadpacket.__name__] += flops
            return out
        if formula is None:
            if func is not torch.ops.prim.device.default:
                with self:  # as FlopCounterMode: an op with no formula may decompose into some
                    out = func.decompose(*args, **kwargs)
                if out is not NotImplemented:
                    return out
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        label = self._current()
        flops = int(formula(*args, **kwargs, out_val=out))
        self.by_label[label] += flops
        self.by_op[func._overloadpacket.__name__] += flops
        self.threads[label[0]].add(threading.get_ident())
        return out


@dataclass
class StepFlops:
    fwd: list[int]  # per unit, index i-1
    bwd: list[int]
    phases: dict[str, int]  # FLOPs outside units (loss, optimizer...)
    threads: dict[str, int]  # pass kind ("fwd", "bwd", "phase") -> threads that ran counted ops
    other_fwd: list[int] = field(default_factory=list)  # OTHER_FLOPS per unit, index i-1
    other_bwd: list[int] = field(default_factory=list)
    by_op: dict[str, int] = field(default_factory=dict)  # operator -> FLOPs of the whole step
    other_by_op: dict[str, int] = field(default_factory=dict)  # the same for OTHER_FLOPS


@dataclass
class UnitActivation:
    in_bytes: int = 0
    out_bytes: int = 0
    input_requires_grad: bool = False


class ActivationRecorder:
    """Bytes of each unit's input and output activations, as the step sees them.

    A unit's input is the first tensor its weight module receives; its output is
    the next unit's input (the model's output for the last unit), which is what
    the modules it owns hand on. Each unit is recorded at its first call.
    """

    def __init__(self, model: nn.Module, units: Sequence[Unit]) -> None:
        self.model = model
        self.units = list(units)
        self._inputs: dict[int, tuple[int, bool]] = {}
        self._output_bytes = 0

    def _pre_hook(self, index: int):
        def hook(_module: nn.Module, args: tuple) -> None:
            t = first_tensor(args)
            if t is not None and index not in self._inputs:
                self._inputs[index] = (tensor_bytes(t), t.requires_grad and torch.is_grad_enabled())

        return hook

    def _output_hook(self, _module: nn.Module, _args: tuple, output: object) -> None:
        t = first_tensor(output)
        if t is not None:
            self._output_bytes = tensor_bytes(t)

    @contextmanager
    def installed(self) -> Iterator[ActivationRecorder]:
        handles = [u.module.register_forward_pre_hook(self._pre_hook(u.index)) for u in self.units]
        handles.append(self.model.register_forward_hook(self._output_hook))
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def activations(self) -> list[UnitActivation]:
        result = []
        for i, unit in enumerate(self.units):
            in_bytes, needs_grad = self._inputs.get(unit.index, (0, False))
            nxt = self.units[i + 1].index if i + 1 < len(self.units) else None
            out_bytes = self._inputs.get(nxt, (0, False))[0] if nxt else self._output_bytes
            result.append(UnitActivation(in_bytes, out_bytes, needs_grad))
        return result


StepFn = Callable[[Instrumenter], None]


def count_flops(
    model: nn.Module, units: Sequence[Unit], step: StepFn
) -> tuple[StepFlops, list[UnitActivation]]:
    """Run ``step`` once under the counter, marked by its own Instrumenter (host clock)."""
    inst = Instrumenter(model, units, HostClock())
    counter = LabelFlopCounter(lambda: inst.current)
    recorder = ActivationRecorder(model, units)
    with recorder.installed(), inst.step():
        with counter:
            step(inst)
    return _step_flops(counter, len(units)), recorder.activations()


def _step_flops(counter: LabelFlopCounter, n_units: int) -> StepFlops:
    a = charge(counter.by_label, n_units)
    o = charge(counter.other_by_label, n_units)
    threads = {kind: len(ids) for kind, ids in counter.threads.items()}
    return StepFlops([int(f) for f in a.fwd], [int(b) for b in a.bwd],
                     {k: int(v) for k, v in a.phases.items() if v}, threads,
                     [int(f) for f in o.fwd], [int(b) for b in o.bwd],
                     _largest_first(counter.by_op), _largest_first(counter.other_by_op))


def _largest_first(by_op: dict[str, int]) -> dict[str, int]:
    return dict(sorted(((k, int(v)) for k, v in by_op.items() if v), key=lambda kv: -kv[1]))


def forward_flops(model: nn.Module, units: Sequence[Unit], x: torch.Tensor) -> StepFlops:
    """FLOPs of one forward pass without grad (the model as it is: eval or train)."""

    def step(_inst: Instrumenter) -> None:
        with torch.no_grad():
            model(x)

    return count_flops(model, units, step)[0]
