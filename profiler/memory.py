"""Memory per unit (docs/design.md §4): saved activations, parameters, gradients, optimizer state."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn

from .marks import Label, charge

if TYPE_CHECKING:
    from .units import Unit  # units imports this module (total_bytes)


class SavedBytes:
    """Charges every tensor autograd saves to the label running when it is saved.

    Each storage is counted once, at its first save; parameters and buffers
    (and views of them) are skipped, since they are resident whether or not
    anything trains. Autocast's lower-precision copies of the weights are real
    memory but not activations: they are charged apart, in ``cast_by_label``.
    """

    def __init__(self, current: Callable[[], Label], resident: Sequence[torch.Tensor]) -> None:
        self._current = current
        self._resident = {_storage_key(t) for t in resident}
        self._weights: dict[tuple, list[torch.Tensor]] = defaultdict(list)
        for t in resident:
            if t.is_floating_point():
                self._weights[(t.numel(), t.device)].append(t)
        self._seen: set[tuple] = set()
        self.by_label: dict[Label, int] = defaultdict(int)
        self.cast_by_label: dict[Label, int] = defaultdict(int)

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        key = _storage_key(tensor)
        if key not in self._seen and key not in self._resident:
            self._seen.add(key)
            charged = self.cast_by_label if self._is_weight_cast(tensor) else self.by_label
            charged[self._current()] += tensor.untyped_storage().nbytes()
        return tensor

    def _is_weight_cast(self, tensor: torch.Tensor) -> bool:
        """Whether the tensor's storage holds a parameter or buffer cast to another dtype."""
        if not tensor.is_floating_point():
            return False
        stored = _whole_storage(tensor)
        for weight in self._weights.get((stored.numel(), tensor.device), ()):
            if weight.dtype != tensor.dtype:
                with torch.no_grad():
                    if torch.equal(stored, _whole_storage(weight.detach().to(tensor.dtype))):
                        return True
        return False

    @contextmanager
    def recording(self) -> Iterator[SavedBytes]:
        with torch.autograd.graph.saved_tensors_hooks(self.pack, _unpack):
            yield self

    def unit_bytes(self, n_units: int) -> list[int]:
        return [int(b) for b in charge(self.by_label, n_units).fwd]

    def other_bytes(self) -> dict[str, int]:
        return {label.text(): v for label, v in self.by_label.items() if label.kind != "fwd"}

    def unit_cast_bytes(self, n_units: int) -> list[int]:
        return [int(b) for b in charge(self.cast_by_label, n_units).fwd]

    def other_cast_bytes(self) -> dict[str, int]:
        return {label.text(): v for label, v in self.cast_by_label.items() if label.kind != "fwd"}


def _whole_storage(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor's whole storage as a flat tensor of its dtype (a view of a cast: the cast)."""
    flat = torch.empty(0, dtype=tensor.dtype, device=tensor.device)
    return flat.set_(tensor.untyped_storage())


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _storage_key(tensor: torch.Tensor) -> tuple:
    storage = tensor.untyped_storage()
    return (tensor.device, storage.data_ptr(), storage.nbytes())


class AllocatorTrace:
    """``torch.cuda.memory_allocated`` at every mark (a mark listener, memory step only)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.readings: list[tuple[Label, int]] = []
        self.start_bytes = 0

    def start(self) -> None:
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self.start_bytes = torch.cuda.memory_allocated(self.device)

    def on_mark(self, label: Label) -> None:
        self.readings.append((label, torch.cuda.memory_allocated(self.device)))

    def finish(self) -> tuple[int, int]:
        """Peak allocated and reserved bytes over the step."""
        return torch.cuda.max_memory_allocated(self.device), torch.cuda.memory_reserved(self.device)


def tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def total_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(map(tensor_bytes, tensors))


def unit_grad_bytes(unit: Unit, got_gradient: Callable[[nn.Parameter], bool] | None = None) -> int:
    """The unit's gradients: every trainable parameter's, or only those ``got_gradient`` says a
    gradient reached (``diagnose.GradientWatch``)."""
    return total_bytes(p for p in unit.params
                       if p.requires_grad and (got_gradient is None or got_gradient(p)))


def optimizer_state_bytes(optimizer: torch.optim.Optimizer, params: Sequence[nn.Parameter]) -> int:
    total = 0
    for p in params:
        for value in optimizer.state.get(p, {}).values():
            if isinstance(value, torch.Tensor):
                total += tensor_bytes(value)
    return total


def static_memory(unit: Unit, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes that do not depend on the step; ``grad_bytes`` counts every trainable parameter
    (``diagnose.annotate_run`` narrows it to those a gradient reached, once that was watched)."""
    return {
        "param_bytes": unit.param_bytes,
        "grad_bytes": unit_grad_bytes(unit),
        "optimizer_state_bytes": optimizer_state_bytes(optimizer, unit.params),
    }
