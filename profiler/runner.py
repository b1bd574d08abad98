"""The step runner: synthetic training of a model in full and frozen regimes."""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch
from torch import nn

from .api import Profiler
from .errors import TlprofError
from .instrument import MarkListener
from .nvml import DeviceWatch
from .session import Profile, Run
from .state import ModelState
from .units import Unit, find_units, freeze
from .workload import (  # noqa: F401  (re-exported: the workload lived here)
    LOSSES,
    ModelSpec,
    Workload,
    as_spec,
    describe_batch,
    eager,
    input_dtype,
    make_workload,
    probe_output,
)

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
OPTIMIZERS = ("sgd", "adam", "adamw")
MODES = ("full", "frozen", "cached")

Progress = Callable[[str, int, int], None]  # (run name, steps done, steps in the run)


class NullMarker:
    """Stands in for a Profiler when a step is run without measuring it."""

    def begin(self, phase: str) -> None:
        pass


@dataclass
class RunContext:
    """What an extra measurement needs to run more steps of a regime, as configured."""

    model: nn.Module
    units: Sequence[Unit]
    work: Workload
    cfg: ProfileConfig
    mode: str
    n_frozen: int
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    forward_phase: str | None = None  # see train_step

    def step_scope(self) -> contextlib.AbstractContextManager:
        """Set-up around each step, outside its timing (the cached regime's replay)."""
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
    """A further measurement made on each regime after its timed steps (kernels, energy...)."""

    def after_run(self, ctx: RunContext, run: Run) -> None: ...


@dataclass
class ProfileConfig:
    batch_size: int = 2
    input_shape: tuple[int, ...] = (3, 224, 224)
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    optimizer: str = "sgd"
    steps: int = 5
    warmup: int = 1
    freeze: int = 0
    modes: tuple[str, ...] = ("full",)
    frozen_bn: str = "eval"
    num_classes: int | None = None
    lr: float = 1e-3
    input_dtype: str | None = None  # one of workload.INPUT_DTYPES; default float32
    input_max: int | None = None  # integer inputs are drawn from 0..input_max-1
    output: str | None = None  # index or key of the output the loss uses
    loss: str | None = None  # ce | mse | sum; default ce for a (B, C) output, else mse

    def validate(self) -> None:
        if self.batch_size < 1:
            raise TlprofError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.steps < 1:
            raise TlprofError(f"--steps must be at least 1, got {self.steps}")
        if self.warmup < 0:
            raise TlprofError(f"--warmup cannot be negative, got {self.warmup}")
        if self.precision not in PRECISIONS:
            raise TlprofError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.optimizer not in OPTIMIZERS:
            raise TlprofError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}")
        if not self.input_shape or any(d < 1 for d in self.input_shape):
            raise TlprofError(f"--input-shape needs positive sizes, got {self.input_shape}")
        if self.loss is not None and self.loss not in LOSSES:
            raise TlprofError(f"--loss must be one of {', '.join(LOSSES)}")
        input_dtype(self.input_dtype)
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise TlprofError(
                f"unknown mode {bad[0] if bad else ''!r}; use full, frozen, cached, both or all")
        for mode in ("frozen", "cached"):
            if mode in self.modes and self.freeze < 1:
                raise TlprofError(f"--mode {mode} needs --freeze N with N >= 1")

    @property
    def steps_per_run(self) -> int:
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
    nothing (the cached regime's replayed frozen part).
    """
    prof.begin("zero_grad")
    opt.zero_grad(set_to_none=True)
    if forward_phase:
        prof.begin(forward_phase)
    with work.autocast():
        output = work.forward(model)
        loss = work.loss(output)
    if not loss.requires_grad:
        raise TlprofError("the loss depends on no trainable parameter: the output it uses comes only "
                          "from frozen units (choose another with --output, or freeze fewer)")
    prof.begin("loss_bwd")
    (scaler.scale(loss) if scaler else loss).backward()
    prof.begin("optimizer")
    if scaler:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()


def _set_precision_flags(precision: str, device: torch.device) -> None:
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = device.type == "cuda"


def run_regime(
    model: nn.Module,
    units: Sequence[Unit],
    work: Workload,
    cfg: ProfileConfig,
    mode: str,
    progress: Progress | None = None,
    listeners: Sequence[MarkListener] = (),
    extras: Sequence[RunExtra] = (),
) -> Run:
    n_frozen = cfg.freeze if mode == "frozen" else 0
    return measure_regime(prepare_regime(model, units, work, cfg, mode, n_frozen),
                          progress, listeners, extras)


def prepare_regime(
    model: nn.Module, units: Sequence[Unit], work: Workload, cfg: ProfileConfig, mode: str,
    n_frozen: int,
) -> RunContext:
    """Units 1..n_frozen frozen, and an optimizer over what trains."""
    model.train()
    freeze(model, units, n_frozen, cfg.frozen_bn)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(cfg.optimizer, trainable, cfg.lr)
    return RunContext(model, units, work, cfg, mode, n_frozen, opt, work.scaler())


def measure_regime(
    ctx: RunContext,
    progress: Progress | None = None,
    listeners: Sequence[MarkListener] = (),
    extras: Sequence[RunExtra] = (),
) -> Run:
    """The regime's scheduled steps (warm-up, memory, plain and timed), then the extras."""
    prof = Profiler(
        ctx.model, ctx.units, optimizer=ctx.optimizer, hook_optimizer=False,
        device=ctx.work.device, warmup=ctx.cfg.warmup, listeners=listeners, name=ctx.mode,
    )
    total = ctx.cfg.steps_per_run
    with prof:
        for i in range(total):
            with ctx.step_scope(), prof.step():
                ctx.marked_step(prof)
            ctx.after_step()
            if progress:
                progress(ctx.mode, i + 1, total)
    run = prof.run(ctx.mode, ctx.n_frozen)
    for extra in extras:
        extra.after_run(ctx, run)
    return run


def _regime(mode: str) -> Callable[..., Run]:
    if mode == "cached":
        from .cached import run_cached_regime  # builds on this module

        return run_cached_regime
    return run_regime


def profile_model(
    model: nn.Module | ModelSpec,
    cfg: ProfileConfig,
    *,
    meta: dict[str, Any] | None = None,
    progress: Progress | None = None,
    listeners: Sequence[MarkListener] = (),
    extras: Sequence[RunExtra] = (),
) -> Profile:
    """Profile ``model`` (an ``nn.Module``, or a ``ModelSpec`` with its inputs and loss): every
    run in ``cfg.modes``; the model is left exactly as it was."""
    cfg.validate()
    device = resolve_device(cfg.device)
    spec = as_spec(model)
    original = ModelState.capture(spec.model)
    try:
        with on_device(device), eager(spec.model):
            return _profile_placed(spec, cfg, device, meta, progress, listeners, extras)
    finally:
        original.restore()


def on_device(device: torch.device) -> contextlib.AbstractContextManager:
    """CUDA events and allocator readings follow the current device: make it ours."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _profile_placed(
    spec: ModelSpec,
    cfg: ProfileConfig,
    device: torch.device,
    meta: dict[str, Any] | None,
    progress: Progress | None,
    listeners: Sequence[MarkListener],
    extras: Sequence[RunExtra],
) -> Profile:
    model = spec.model
    _place(model, device, cfg.channels_last)
    work = _guard_batch(cfg, lambda: make_workload(spec, cfg, device))
    units = find_units(model, work.example())
    check_freeze(cfg.freeze, len(units))
    _set_precision_flags(cfg.precision, device)
    placed = ModelState.capture(model)
    watch = DeviceWatch.start(device)  # NVML identity and state of a CUDA device, for meta
    runs = {}
    for mode in cfg.modes:
        placed.restore_values()
        runs[mode] = _guard_batch(cfg, lambda m=mode: _regime(m)(
            model, units, work, cfg, m, progress, listeners, extras))
    return Profile(
        meta=_meta(cfg, device, work, {**(meta or {}), **watch.finish()}),
        units=[{**u.to_dict(), "trainable": u.index > cfg.freeze} for u in units],
        runs=runs,
    )


def _place(model: nn.Module, device: torch.device, channels_last: bool) -> None:
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)


def check_freeze(n: int, n_units: int) -> None:
    if not 0 <= n < n_units:
        raise TlprofError(
            f"--freeze {n} is out of range: the model has {n_units} units, "
            f"so freeze between 0 and {n_units - 1} (at least one must train)"
        )


def _guard_batch(cfg: ProfileConfig, fn: Callable[[], Any]) -> Any:
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


def _meta(cfg: ProfileConfig, device: torch.device, work: Workload, extra: dict) -> dict[str, Any]:
    return {
        **extra,
        "device": str(device),
        "device_name": device_name(device),
        "clock": "cuda_event" if device.type == "cuda" else "perf_counter_ns",
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cpu_threads": torch.get_num_threads(),
        **{k: v for k, v in asdict(cfg).items() if k not in ("device", "modes")},
        "modes": list(cfg.modes),
        "num_classes": work.num_classes,
        "output_shape": list(work.output_shape),
        "batch_size": len(work.x),
        "input_shape": list(work.x.shape[1:]),
        "inputs": describe_batch(work.inputs),
        "loss": work.loss_name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
