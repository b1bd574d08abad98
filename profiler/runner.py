"""The step runner: one run (full, frozen, cached) of synthetic training, as configured."""

from __future__ import annotations

import contextlib
import gc
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .api import Profiler
from .defaults import defaults_for
from .document import Run
from .errors import TlprofError
from .instrument import MarkListener, first_tensor
from .units import Unit, eval_no_grad, freeze

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
OPTIMIZERS = ("sgd", "adam", "adamw")
RUNS = ("full", "frozen", "cached")

Progress = Callable[[str, int, int], None]  # (run name, steps done, steps in the run)


class NullMarker:
    """Stands in for a Profiler when a step is run without measuring it."""

    def begin(self, phase: str) -> None:
        pass


@dataclass
class RunContext:
    """What an extra measurement needs to run more steps of a run, as configured."""

    model: nn.Module
    units: Sequence[Unit]
    work: Workload
    cfg: ProfileConfig
    run: str  # full | frozen | cached
    n_frozen: int
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    forward_phase: str | None = None  # see train_step

    def step_scope(self) -> contextlib.AbstractContextManager:
        """Set-up around each step, outside its timing (the cached run's replay)."""
        return contextlib.nullcontext()

    def after_step(self) -> None:
        """Checks after each step, outside its timing."""

    def train_step(self, marker: Any = None) -> None:
        with self.step_scope():
            self.marked_step(marker or NullMarker())
        self.after_step()

    def marked_step(self, marker: Any) -> None:
        train_step(marker, self.model, self.work, self.optimizer, self.scaler, self.forward_phase)


class RunExtra(Protocol):
    """A further measurement made on each run after its timed steps (kernels, energy...)."""

    def after_run(self, ctx: RunContext, run: Run) -> None: ...


@dataclass
class ProfileConfig:
    """What to measure. ``batch_size``, ``steps`` and ``warmup`` left None take the device's
    defaults (``tlprof.defaults``), the same as the command line's."""

    batch_size: int | None = None
    input_shape: tuple[int, ...] = (3, 224, 224)
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    optimizer: str = "sgd"
    steps: int | None = None
    warmup: int | None = None
    freeze: int = 0
    runs: tuple[str, ...] = ("full",)
    frozen_bn: str = "eval"
    num_classes: int | None = None
    lr: float = 1e-3

    def resolved(self, device_type: str) -> ProfileConfig:
        """A copy with every default filled in for the device."""
        d = defaults_for(device_type)
        return replace(
            self,
            batch_size=d.batch_size if self.batch_size is None else self.batch_size,
            steps=d.steps if self.steps is None else self.steps,
            warmup=d.warmup if self.warmup is None else self.warmup,
        )

    def defaulted(self) -> list[str]:
        """The options left to the device's defaults, for a note."""
        return [k for k in ("batch_size", "steps", "warmup") if getattr(self, k) is None]

    def validate(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise TlprofError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.steps is not None and self.steps < 1:
            raise TlprofError(f"--steps must be at least 1, got {self.steps}")
        if self.warmup is not None and self.warmup < 0:
            raise TlprofError(f"--warmup cannot be negative, got {self.warmup}")
        if self.precision not in PRECISIONS:
            raise TlprofError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.optimizer not in OPTIMIZERS:
            raise TlprofError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}")
        if not self.input_shape or any(d < 1 for d in self.input_shape):
            raise TlprofError(f"--input-shape needs positive sizes, got {self.input_shape}")
        bad = [r for r in self.runs if r not in RUNS]
        if bad or not self.runs:
            raise TlprofError(
                f"unknown run {bad[0] if bad else ''!r}; use full, frozen, cached, both or all")
        for run in ("frozen", "cached"):
            if run in self.runs and self.freeze < 1:
                raise TlprofError(f"--runs {run} needs --freeze N with N >= 1")

    @property
    def steps_per_run(self) -> int:
        """Warm-up, the memory step, then plain and instrumented steps in turn (resolved configs)."""
        return self.warmup + 1 + 2 * self.steps


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise TlprofError(f"--device {spec!r} is not a device (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise TlprofError(f"--device {spec!r}: tlprof measures on cpu or cuda only")
    if not torch.cuda.is_available():
        raise TlprofError(
            f"--device {spec}: CUDA is not available on this machine "
            f"(torch {torch.__version__}, no usable GPU or driver); use --device cpu"
        )
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise TlprofError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


@dataclass
class Workload:
    """Synthetic batch, loss and precision settings for one model on one device."""

    x: torch.Tensor
    target: torch.Tensor
    classification: bool
    device: torch.device
    precision: str
    num_classes: int | None = None
    output_shape: tuple[int, ...] = field(default_factory=tuple)

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def loss(self, output: Any) -> torch.Tensor:
        out = first_tensor(output)
        if self.classification:
            return F.cross_entropy(out.float(), self.target)
        return F.mse_loss(out.float(), self.target)

    def scaler(self) -> torch.amp.GradScaler | None:
        return torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None


def make_workload(model: nn.Module, cfg: ProfileConfig, device: torch.device) -> Workload:
    x = torch.randn(cfg.batch_size, *cfg.input_shape, device=device)
    if cfg.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    out = _probe_output(model, x[:1])
    if out.dim() == 2 and out.is_floating_point():
        classes = out.shape[1]
        if cfg.num_classes is not None and cfg.num_classes != classes:
            raise TlprofError(f"--num-classes {cfg.num_classes}, but the model outputs {classes} classes")
        target = torch.randint(0, classes, (cfg.batch_size,), device=device)
        return Workload(x, target, True, device, cfg.precision, classes, tuple(out.shape[1:]))
    target = torch.randn(cfg.batch_size, *out.shape[1:], device=device)
    return Workload(x, target, False, device, cfg.precision, None, tuple(out.shape[1:]))


def _probe_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    try:
        with eval_no_grad(model):
            out = first_tensor(model(x))
    except Exception as exc:  # the model's own error is the message
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TlprofError(f"the model rejects input shape {tuple(x.shape[1:])}: {msg}") from exc
    if out is None:
        raise TlprofError("the model returned no tensor")
    return out


def make_optimizer(name: str, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.AdamW(params, lr=lr)


def train_step(
    prof: Profiler, model: nn.Module, work: Workload, opt, scaler, forward_phase: str | None = None
) -> None:
    """One training step, its phases marked (the model's hooks mark the units).

    ``forward_phase`` names what runs before the first unit when that is not
    nothing (the cached run's replayed frozen part).
    """
    prof.begin("zero_grad")
    opt.zero_grad(set_to_none=True)
    if forward_phase:
        prof.begin(forward_phase)
    with work.autocast():
        output = model(work.x)
        loss = work.loss(output)
    prof.begin("loss_bwd")
    (scaler.scale(loss) if scaler else loss).backward()
    prof.begin("optimizer")
    if scaler:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()


def set_precision_flags(precision: str, device: torch.device) -> None:
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = device.type == "cuda"


def run_named(
    model: nn.Module,
    units: Sequence[Unit],
    work: Workload,
    cfg: ProfileConfig,
    name: str,
    progress: Progress | None = None,
    listeners: Sequence[MarkListener] = (),
    extras: Sequence[RunExtra] = (),
    wrap: Callable[[nn.Module], nn.Module] | None = None,
) -> Run:
    """The full or the frozen run; ``wrap`` puts the model in DDP once it is frozen."""
    n_frozen = cfg.freeze if name == "frozen" else 0
    ctx = prepare_run(model, units, work, cfg, name, n_frozen, wrap)
    try:
        return measure_run(ctx, progress, listeners, extras)
    finally:
        if ctx.model is not model:
            ctx.model = model
            gc.collect()  # the wrapper's reducer goes now, and its gradient hooks with it


def prepare_run(
    model: nn.Module, units: Sequence[Unit], work: Workload, cfg: ProfileConfig, name: str,
    n_frozen: int, wrap: Callable[[nn.Module], nn.Module] | None = None,
) -> RunContext:
    """Units 1..n_frozen frozen, and an optimizer over what trains."""
    model.train()
    freeze(model, units, n_frozen, cfg.frozen_bn)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(cfg.optimizer, trainable, cfg.lr)
    stepped = wrap(model) if wrap else model
    return RunContext(stepped, units, work, cfg, name, n_frozen, opt, work.scaler())


def measure_run(
    ctx: RunContext,
    progress: Progress | None = None,
    listeners: Sequence[MarkListener] = (),
    extras: Sequence[RunExtra] = (),
) -> Run:
    """The run's scheduled steps (warm-up, memory, plain and timed), then the extras."""
    prof = Profiler(
        ctx.model, ctx.units, optimizer=ctx.optimizer, hook_optimizer=False,
        device=ctx.work.device, warmup=ctx.cfg.warmup, listeners=listeners, name=ctx.run,
    )
    total = ctx.cfg.steps_per_run
    with prof:
        for i in range(total):
            with ctx.step_scope(), prof.step():
                ctx.marked_step(prof)
            ctx.after_step()
            if progress:
                progress(ctx.run, i + 1, total)
    run = prof.run(ctx.run, ctx.n_frozen)
    for extra in extras:
        extra.after_run(ctx, run)
    return run


def on_device(device: torch.device) -> contextlib.AbstractContextManager:
    """CUDA events and allocator readings follow the current device: make it ours."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def check_freeze(n: int, n_units: int) -> None:
    if not 0 <= n < n_units:
        raise TlprofError(
            f"--freeze {n} is out of range: the model has {n_units} units, "
            f"so freeze between 0 and {n_units - 1} (at least one must train)"
        )


def guard_batch(cfg: ProfileConfig, fn: Callable[[], Any]) -> Any:
    """Failures that a different batch size fixes, as one clear line."""
    try:
        return fn()
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not _is_oom(exc):
            raise
        smaller = max(cfg.batch_size // 2, 1)
        raise TlprofError(
            f"out of memory at batch size {cfg.batch_size}; try --batch-size {smaller}"
        ) from exc
    except ValueError as exc:
        if "Expected more than 1 value per channel" not in str(exc):
            raise
        raise TlprofError(
            f"batch size {cfg.batch_size} is too small for BatchNorm in training mode "
            "(it needs more than one value per channel); try --batch-size 2"
        ) from exc


def _is_oom(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, torch.OutOfMemoryError) or any(
        s in text for s in ("can't allocate memory", "not enough memory", "out of memory")
    )


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
