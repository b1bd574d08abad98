"""The step runner: one run (full, frozen, cached) of synthetic training, as configured."""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch
from torch import nn

from .api import Profiler
from .defaults import (
    LOSSES,
    OPTIMIZERS,
    PRECISIONS,
    RUN_CHOICES,
    RUNS,
    Progress,  # noqa: F401  (re-exported: engine and sweep import it from here)
    defaults_for,
)
from .document import Run
from .errors import TlprofError
from .instrument import MarkListener
from .units import Unit, freeze
from .workload import Workload, input_dtype, make_workload  # noqa: F401  (re-exported: engine, benchmarks)

MAX_BLOCKS = 4  # blocks per run when several runs take turns (see ProfileConfig.block_sizes)
REWARM_STEPS = 1  # dropped at the start of each block, after the other runs' steps


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
    params: list[nn.Parameter] = field(default_factory=list)  # what trains in this run

    def activate(self) -> None:
        """Make this run's state the model's: its frozen units and BatchNorm modes, no gradients
        left over from another run."""
        model = self.inner
        model.train()
        freeze(model, self.units, self.n_frozen, self.cfg.frozen_bn)
        for p in model.parameters():
            p.grad = None

    @property
    def inner(self) -> nn.Module:
        """The user's model (inside DDP when the run is data-parallel)."""
        ddp = isinstance(self.model, torch.nn.parallel.DistributedDataParallel)
        return self.model.module if ddp else self.model

    def fresh_optimizer(self) -> torch.optim.Optimizer:
        """A new optimizer over this run's parameters: the old one's state is released."""
        self.optimizer = make_optimizer(self.cfg.optimizer, self.params, self.cfg.lr, self.cfg.graph)
        return self.optimizer

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
    precision: str = "default"  # the backend flags as PyTorch (or the caller) has them
    channels_last: bool = False
    optimizer: str = "sgd"
    steps: int | None = None
    warmup: int | None = None
    freeze: int = 0
    runs: tuple[str, ...] = ("full",)
    frozen_bn: str = "eval"
    num_classes: int | None = None
    lr: float = 1e-3
    blocks: int | None = None  # see block_sizes
    input_dtype: str | None = None  # one of workload.INPUT_DTYPES; default float32
    input_max: int | None = None  # integer inputs are drawn from 0..input_max-1
    output: str | None = None  # index or key of the output the loss uses
    loss: str | None = None  # ce | mse | sum; default ce for a (B, C) output, else mse
    graph: bool = False  # capture the whole step as a CUDA graph (tlprof.graph)

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
        if self.loss is not None and self.loss not in LOSSES:
            raise TlprofError(f"--loss must be one of {', '.join(LOSSES)}")
        input_dtype(self.input_dtype)
        bad = [r for r in self.runs if r not in RUNS]
        if bad or not self.runs:
            choices = f"{', '.join(RUN_CHOICES[:-1])} or {RUN_CHOICES[-1]}"
            raise TlprofError(f"unknown run {bad[0] if bad else ''!r}; use {choices}")
        for run in ("frozen", "cached"):
            if run in self.runs and self.freeze < 1:
                raise TlprofError(f"--runs {run} needs --freeze N with N >= 1")
        if self.graph and "cached" in self.runs:
            raise TlprofError("--graph measures the full and frozen runs; the cached run is eager-only "
                              "(use --runs both, or drop --graph)")
        if self.graph and self.precision == "fp16":
            raise TlprofError("--graph cannot capture fp16's grad scaler (it checks for inf on the host "
                              "each step); use --precision bf16 with --graph, or fp16 without it")
        if self.blocks is not None and self.blocks < 1:
            raise TlprofError(f"--blocks must be at least 1, got {self.blocks}")

    def block_sizes(self) -> list[int]:
        """Instrumented steps (each with a plain one) per block. Several runs take turns block by
        block, so drift in the machine's speed hits them alike; by default up to MAX_BLOCKS blocks
        of at least two. One run is one block."""
        if len(self.runs) == 1:
            return [self.steps]
        n = min(self.blocks or max(1, min(MAX_BLOCKS, self.steps // 2)), self.steps)
        base, longer = divmod(self.steps, n)
        return [base + (i < longer) for i in range(n)]

    @property
    def rewarm_steps(self) -> int:
        return REWARM_STEPS if len(self.runs) > 1 else 0

    @property
    def steps_per_run(self) -> int:
        """Warm-up, the memory step, then per block its re-warm step and plain and instrumented
        steps in turn (resolved configs)."""
        return self.warmup + 1 + 2 * self.steps + self.rewarm_steps * len(self.block_sizes())


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


def make_optimizer(name: str, params: list[nn.Parameter], lr: float,
                   capturable: bool = False) -> torch.optim.Optimizer:
    """``capturable``: Adam's step counts on the device, so a CUDA graph can capture its step."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, capturable=capturable)
    return torch.optim.AdamW(params, lr=lr, capturable=capturable)


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


def set_precision_flags(precision: str, device: torch.device) -> None:
    """``default`` leaves every backend flag as it is (a user's own fp32 training on Ampere or
    later runs cuDNN in TF32 by default); ``fp32`` is strict (TF32 off), ``tf32`` explicit;
    bf16 and fp16 keep their fp32 work strict. The flags are restored after the profile
    (``ModelState``) and recorded in ``meta`` (``backend_flags``)."""
    if precision == "default":
        return
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = device.type == "cuda"


def prepare_run(
    model: nn.Module, units: Sequence[Unit], work: Workload, cfg: ProfileConfig, name: str,
    n_frozen: int, wrap: Callable[[nn.Module], nn.Module] | None = None,
) -> RunContext:
    """Units 1..n_frozen frozen, and an optimizer over what trains; ``wrap`` puts the model in
    DDP once it is frozen."""
    ctx = RunContext(model, units, work, cfg, name, n_frozen, None, work.scaler())  # type: ignore[arg-type]
    ctx.activate()
    ctx.params = [p for p in model.parameters() if p.requires_grad]
    ctx.fresh_optimizer()
    if wrap:
        ctx.model = wrap(model)  # DDP, once the run's trainable parameters are fixed
    return ctx


def run_profiler(ctx: RunContext, listeners: Sequence[MarkListener] = ()) -> Profiler:
    """The Profiler that schedules and measures a run's steps."""
    return Profiler(
        ctx.model, ctx.units, optimizer=ctx.optimizer, hook_optimizer=False,
        device=ctx.work.device, warmup=ctx.cfg.warmup, listeners=listeners, name=ctx.run,
    )


def run_steps(ctx: RunContext, prof: Profiler, n: int, done: Callable[[], None] | None = None) -> None:
    """``n`` steps of the run, each scheduled and measured by ``prof``."""
    for _ in range(n):
        with ctx.step_scope(), prof.step():
            ctx.marked_step(prof)
        ctx.after_step()
        if done:
            done()


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
