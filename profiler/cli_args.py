"""Arguments shared by the commands that train a model (profile, sweep, layers), and their checks.

Torch-free at import, so ``tlprof --help`` and the report-only commands stay quick.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from .defaults import CPU, CUDA, INPUT_DTYPES, LOSSES, OPTIMIZERS, PRECISIONS, RUN_SETS
from .defaults import Progress as ProgressFn
from .errors import TlprofError

if TYPE_CHECKING:
    from rich.progress import Progress
    from torch import nn

    from .runner import ProfileConfig
    from .workload import ModelSpec


def add_model_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--arch", help="a torchvision classification model, e.g. resnet50")
    src.add_argument("--model", metavar="SPEC",
                     help="MODULE:CALLABLE or path/to/file.py:CALLABLE returning an nn.Module or a "
                          "tlprof.ModelSpec (model, inputs, loss); MODULE is found from the current folder")
    p.add_argument("--input-shape", metavar="DIMS",
                   help="one sample's shape, e.g. 3,224,224 or 32 (default 3×S×S)")
    p.add_argument("--image-size", type=int, default=224, metavar="S", help="default 224")
    p.add_argument("--num-classes", type=int, metavar="N", help="default: from the model's output")
    p.add_argument("--input-dtype", choices=INPUT_DTYPES, metavar="DTYPE",
                   help="dtype of the synthetic input, e.g. int64 for token ids (default float32)")
    p.add_argument("--input-max", type=int, metavar="N",
                   help="integer inputs are drawn from 0..N-1 (default: the smallest embedding table)")


def add_run_args(p: argparse.ArgumentParser) -> None:
    """What every command that trains a model takes (profile, sweep)."""
    add_model_args(p)
    p.add_argument("--batch-size", type=int, metavar="B",
                   help=f"default {CPU.batch_size} on CPU, {CUDA.batch_size} on CUDA")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="default", choices=PRECISIONS,
                   help="default: the backend flags as PyTorch has them (TF32 convolutions on Ampere+); "
                        "fp32: strict, TF32 off; tf32: TF32 on; bf16, fp16: autocast")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS)
    p.add_argument("--steps", type=int, metavar="N",
                   help=f"measured steps per run (default {CPU.steps} CPU, {CUDA.steps} CUDA)")
    p.add_argument("--warmup", type=int, metavar="N",
                   help=f"dropped steps per run (default {CPU.warmup} CPU, {CUDA.warmup} CUDA)")
    p.add_argument("--output", metavar="INDEX|KEY",
                   help="the output the loss uses, when the model returns several")
    p.add_argument("--loss", choices=list(LOSSES),
                   help="ce, mse or sum (default: ce for a (B, C) output, else mse)")
    p.add_argument("--blocks", type=int, metavar="N",
                   help="several runs take turns in N blocks of measured steps, so drift hits them "
                        "alike (default: up to 4 blocks of at least 2 steps)")
    p.add_argument("--frozen-bn", choices=["eval", "train"], default="eval",
                   help="BatchNorm of frozen units (default eval)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no report")


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(x) for x in text.replace("x", ",").split(",") if x.strip())
    except ValueError as exc:
        raise TlprofError(f"--input-shape {text!r}: expected sizes like 3,224,224 or 32") from exc
    if not shape or any(d < 1 for d in shape):
        raise TlprofError(f"--input-shape {text!r}: sizes must be positive integers")
    return shape


@dataclass
class ModelArgs:
    model: nn.Module | ModelSpec  # a factory's ModelSpec brings its inputs and loss
    description: dict[str, Any]
    input_shape: tuple[int, ...]


def model_from_args(args: argparse.Namespace) -> ModelArgs:
    from .models import build_arch, load_factory

    if args.image_size < 1:
        raise TlprofError(f"--image-size must be positive, got {args.image_size}")
    shape = parse_shape(args.input_shape) if args.input_shape else (3, args.image_size, args.image_size)
    if args.arch:
        return ModelArgs(build_arch(args.arch, args.num_classes), {"arch": args.arch}, shape)
    return ModelArgs(load_factory(args.model), {"model": args.model}, shape)


def config_from_args(args: argparse.Namespace, shape: tuple[int, ...]) -> tuple[ProfileConfig, list[str]]:
    """The configuration, resolved for its device, and a note for each default it took."""
    from .runner import ProfileConfig, resolve_device

    device = resolve_device(args.device)
    runs = getattr(args, "runs", None) or ("both" if args.freeze else "full")
    if runs in RUN_SETS and not args.freeze:
        raise TlprofError(f"--runs {runs} needs --freeze N with N >= 1")
    cfg = ProfileConfig(
        input_shape=shape, device=str(device), precision=args.precision,
        channels_last=args.channels_last, optimizer=args.optimizer, freeze=args.freeze,
        runs=RUN_SETS.get(runs, (runs,)), frozen_bn=args.frozen_bn,
        num_classes=args.num_classes if args.model else None,
        batch_size=args.batch_size, steps=args.steps, warmup=args.warmup,
        blocks=getattr(args, "blocks", None), input_dtype=args.input_dtype, input_max=args.input_max,
        output=args.output, loss=args.loss, graph=getattr(args, "graph", False),
    )
    cfg.validate()
    resolved = cfg.resolved(device.type)
    notes = [f"{k.replace('_', '-')} {getattr(resolved, k)} (default on {device.type})"
             for k in cfg.defaulted()]
    return resolved, notes


def check_writable(path: str | None, option: str) -> None:
    """Fail before a long measurement, not after it."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise TlprofError(f"{option} {path}: is a folder, not a file")
    parent = target.resolve().parent
    if not parent.is_dir():
        raise TlprofError(f"{option} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise TlprofError(f"{option} {path}: folder {parent} is not writable")
    if target.exists() and not os.access(target, os.W_OK):
        raise TlprofError(f"{option} {path}: the file exists and is not writable")


PIPE_WIDTH = 200  # columns of output that is not a terminal: no unit name or number cut


def make_console() -> Console:
    """The terminal's width on a terminal; piped or redirected, wide enough to cut nothing."""
    probe = Console()
    if probe.is_terminal:
        return probe
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    return Console(width=max(columns, PIPE_WIDTH), soft_wrap=False)


def progress_bar(console: Console) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description:>8}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=True,
    )


@dataclass
class PlainProgress:
    """Off a terminal: one line on stderr as each run finishes, no bar."""

    started: float = field(default_factory=time.perf_counter)

    def __call__(self, name: str, done: int, total: int) -> None:
        if done < total:
            return
        # the runs take turns, so a run's own steps are not one stretch of time
        elapsed = time.perf_counter() - self.started
        print(f"tlprof: {name} run: {total} steps, done {elapsed:.1f} s into the profile", file=sys.stderr)


@contextmanager
def run_progress(console: Console, quiet: bool) -> Iterator[ProgressFn | None]:
    """A bar per run on a terminal, a line per run elsewhere, nothing with --quiet."""
    if quiet:
        yield None
        return
    if not console.is_terminal:
        yield PlainProgress()
        return
    with progress_bar(console) as bar:
        tasks: dict[str, int] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done)

        yield progress
