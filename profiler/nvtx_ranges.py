"""NVTX ranges from marks, so Nsight Systems and Nsight Compute see tlprof's structure (docs/design.md §7).

Each mark opens the range of what begins and closes the one before it:
``tlprof/fwd/<unit>``, ``tlprof/bwd/<unit>``, ``tlprof/<phase>``; each step a
Profiler runs is a range ``tlprof/step/<run>/<n>`` around them. Ranges live in
the ``tlprof`` domain with one colour per stage when the ``nvtx`` package is
installed; otherwise ``torch.cuda.nvtx`` puts them in the default domain,
without colours.

NVTX push/pop ranges belong to the thread that pushes them, so every thread
keeps its own stack and pops only what it pushed. On CUDA, autograd runs the
backward pass on its own device thread: the ``tlprof/bwd/*`` ranges are pushed
and popped there (the end-of-backward mark, also on that thread, pops the last
one), while the step's thread stays inside ``tlprof/loss_bwd``, blocked in
``backward()``, until the optimizer mark. Should a thread still hold a range
from an earlier step (the end-of-backward callback ran elsewhere), it pops it
at its next mark, before anything else.

Nothing here runs unless a listener is installed (``--nvtx``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .errors import TlprofError, say
from .instrument import StepInfo
from .marks import END, Label
from .units import Unit

DOMAIN = "tlprof"
STAGE_COLORS = (0x1F77B4, 0xFF7F0E, 0x2CA02C, 0xD62728, 0x9467BD, 0x8C564B, 0xE377C2, 0x17BECF)
PHASE_COLOR = 0x9E9E9E
STEP_COLOR = 0x37474F


class NvtxUnavailable(TlprofError):
    """Neither the ``nvtx`` package nor torch's NVTX bindings are usable."""


class NvtxBackend(Protocol):
    """The two calls tlprof needs; ``domain`` is None for NVTX's default domain."""

    name: str
    domain: str | None

    def push(self, message: str, color: int) -> None: ...

    def pop(self) -> None: ...


class NvtxPackage:
    """The ``nvtx`` package: a ``tlprof`` domain, colours, attributes built once per name."""

    name = "nvtx"
    domain: str | None = DOMAIN

    def __init__(self, module: Any) -> None:
        self._domain = module.get_domain(DOMAIN)  # a no-op domain when no tool is attached
        self._attributes: dict[str, Any] = {}

    def push(self, message: str, color: int) -> None:
        attributes = self._attributes.get(message)
        if attributes is None:
            attributes = self._domain.get_event_attributes(message=message, color=color)
            self._attributes[message] = attributes
        self._domain.push_range(attributes)

    def pop(self) -> None:
        self._domain.pop_range()


class TorchNvtx:
    """``torch.cuda.nvtx``: the default domain and no colours (its push takes only a message)."""

    name = "torch.cuda.nvtx"
    domain: str | None = None

    def __init__(self, module: Any) -> None:
        self._push = module.range_push
        self._pop = module.range_pop

    def push(self, message: str, color: int) -> None:
        self._push(message)

    def pop(self) -> None:
        self._pop()


def load_backend() -> NvtxBackend:
    try:
        import nvtx
    except ImportError:
        pass
    else:
        return NvtxPackage(nvtx)
    import torch

    if not hasattr(torch._C, "_nvtx"):
        raise NvtxUnavailable("no NVTX library: pip install nvtx, or use a CUDA build of torch")
    return TorchNvtx(torch.cuda.nvtx)


def range_name(label: Label, names: dict[int, str]) -> str:
    return f"{DOMAIN}/{Label(*label).text(names, sep='/')}"


def step_range_name(run: str, n: int) -> str:
    return f"{DOMAIN}/step/{run}/{n}"


def nsight_filter(message: str, domain: str | None) -> str:
    """An ``ncu --nvtx-include`` expression for one push/pop range: '/' in a name is escaped."""
    escaped = message.replace("\\", "\\\\").replace("/", "\\/")
    return f"{domain}@{escaped}/" if domain else f"{escaped}/"


def nsight_regex_filter(message: str, domain: str | None) -> str:
    """The same range as an ``ncu`` regex with no escapes at all: '.' stands for '/' and '.'."""
    body = "^" + message.replace("/", ".") + "$"
    return f"regex:{domain}@{body}/" if domain else f"regex:{body}/"


def _darker(color: int) -> int:
    r, g, b = (color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF
    return (r * 3 // 5) << 16 | (g * 3 // 5) << 8 | (b * 3 // 5)


class NvtxRanges:
    """A MarkListener (and StepListener) turning marks into NVTX push/pop ranges."""

    def __init__(self, backend: NvtxBackend | None = None) -> None:
        self.backend = backend or load_backend()
        self._local = threading.local()
        self._serial = 0
        self._step_thread: int | None = None
        self._units: Sequence[Unit] = ()
        self._ranges: dict[Label, tuple[str, int]] = {}

    # -- naming ----------------------------------------------------------------

    def _bind(self, units: Sequence[Unit]) -> None:
        if units is self._units:
            return
        self._units = units
        names = {u.index: u.name for u in units}
        stages = list(dict.fromkeys(u.stage for u in units))
        ranges: dict[Label, tuple[str, int]] = {}
        for u in units:
            color = STAGE_COLORS[stages.index(u.stage) % len(STAGE_COLORS)]
            ranges[Label.fwd(u.index)] = (range_name(Label.fwd(u.index), names), color)
            ranges[Label.bwd(u.index)] = (range_name(Label.bwd(u.index), names), _darker(color))
        self._ranges = ranges

    def _range(self, label: Label) -> tuple[str, int]:
        found = self._ranges.get(label)
        if found is None:
            found = self._ranges[label] = (range_name(label, {}), PHASE_COLOR)
        return found

    # -- per-thread stacks -----------------------------------------------------

    # A stack entry is (serial of the step it was pushed in, whether it is the step's range).

    def _stack(self) -> list[tuple[int, bool]]:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def _push(self, stack: list[tuple[int, bool]], message: str, color: int, is_step: bool = False) -> None:
        self.backend.push(message, color)
        stack.append((self._serial, is_step))

    def _pop(self, stack: list[tuple[int, bool]]) -> None:
        stack.pop()
        self.backend.pop()

    def _pop_stale(self, stack: list[tuple[int, bool]]) -> None:
        while stack and stack[-1][0] != self._serial:
            self._pop(stack)

    # -- listener --------------------------------------------------------------

    def on_step_begin(self, step: StepInfo) -> None:
        self._bind(step.units)
        self._serial += 1
        self._step_thread = threading.get_ident()
        stack = self._stack()
        self._pop_stale(stack)
        self._push(stack, step_range_name(step.run, step.n), STEP_COLOR, is_step=True)

    def on_step_end(self, step: StepInfo) -> None:
        stack = self._stack()
        while stack and stack[-1][0] == self._serial:
            self._pop(stack)
        self._step_thread = None

    def on_mark(self, label: Label) -> None:
        stack = self._stack()
        self._pop_stale(stack)
        if stack and not stack[-1][1]:
            self._pop(stack)
        if label is END:  # the one END object (marks.END): no tuple comparison per mark
            return
        if label.kind == "phase" and self._step_thread not in (None, threading.get_ident()):
            return  # phases belong to the step's thread; this is autograd's end of backward
        self._push(stack, *self._range(label))


def nvtx_listeners(
    enabled: bool | None, device: str, say: Callable[[str], None] = say
) -> list[NvtxRanges]:
    """The ``--nvtx`` option: on by default on CUDA; one line and no ranges when NVTX is missing."""
    if enabled is None:
        enabled = device.startswith("cuda")
    if not enabled:
        return []
    try:
        return [NvtxRanges(load_backend())]
    except NvtxUnavailable as exc:
        say(f"--nvtx: {exc}; profiling without NVTX ranges")
        return []
