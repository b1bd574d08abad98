"""``tlprof``: a thin command line over the Python API."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from torch import nn

from .errors import TlprofError
from .models import build_arch, load_factory
from .runner import ProfileConfig, check_freeze, profile_model, resolve_device
from .session import Profile
from .units import find_units, freeze
from .workload import EXAMPLE_ROWS, INPUT_DTYPES, LOSSES, ModelSpec, as_spec, eager, make_batch

CPU_DEFAULTS = {"batch_size": 2, "steps": 10, "warmup": 2}
CUDA_DEFAULTS = {"batch_size": 64, "steps": 20, "warmup": 5}
MODE_SETS = {"both": ("full", "frozen"), "all": ("full", "frozen", "cached")}


# -- arguments ----------------------------------------------------------------


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
    p.add_argument("--batch-size", type=int, metavar="B", help="default 2 on CPU, 64 on CUDA")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16", "fp16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"])
    p.add_argument("--steps", type=int, metavar="N", help="measured steps per run (default 10 CPU, 20 CUDA)")
    p.add_argument("--warmup", type=int, metavar="N", help="dropped steps per run (default 2 CPU, 5 CUDA)")
    p.add_argument("--output", metavar="INDEX|KEY",
                   help="the output the loss uses, when the model returns several")
    p.add_argument("--loss", choices=list(LOSSES),
                   help="ce, mse or sum (default: ce for a (B, C) output, else mse)")
    p.add_argument("--frozen-bn", choices=["eval", "train"], default="eval",
                   help="BatchNorm of frozen units (default eval)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no report")


def add_profile_args(p: argparse.ArgumentParser) -> None:
    add_run_args(p)
    p.add_argument("--freeze", type=int, default=0, metavar="N", help="freeze units 1..N")
    p.add_argument("--mode", choices=["full", "frozen", "cached", "both", "all"],
                   help="both = full + frozen, all = full + frozen + cached; "
                        "default: both with --freeze, else full")
    p.add_argument("--json", metavar="PATH", help="write the whole profile here")
    p.add_argument("--kernels", action="store_true",
                   help="also FLOPs, bytes, ceilings, roofline and kernels per unit (2 extra steps)")
    p.add_argument("--trace", metavar="PATH", help="write one step's unit and phase spans as a Chrome trace")
    p.add_argument("--nvtx", action=argparse.BooleanOptionalAction,
                   help="NVTX ranges per unit, phase and step for Nsight (default: on for CUDA)")
    p.add_argument("--energy", action="store_true",
                   help="joules per step and average power from NVML's energy counter (CUDA)")


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(x) for x in text.replace("x", ",").split(",") if x.strip())
    except ValueError as exc:
        raise TlprofError(f"--input-shape {text!r}: expected sizes like 3,224,224 or 32") from exc
    if not shape or any(d < 1 for d in shape):
        raise TlprofError(f"--input-shape {text!r}: sizes must be positive integers")
    return shape


# -- shared steps ---------------------------------------------------------------


@dataclass
class ModelArgs:
    model: nn.Module | ModelSpec  # a factory's ModelSpec brings its inputs and loss
    description: dict
    input_shape: tuple[int, ...]


def model_from_args(args: argparse.Namespace) -> ModelArgs:
    if args.image_size < 1:
        raise TlprofError(f"--image-size must be positive, got {args.image_size}")
    shape = parse_shape(args.input_shape) if args.input_shape else (3, args.image_size, args.image_size)
    if args.arch:
        return ModelArgs(build_arch(args.arch, args.num_classes), {"arch": args.arch}, shape)
    return ModelArgs(load_factory(args.model), {"model": args.model}, shape)


def config_from_args(args: argparse.Namespace, shape: tuple[int, ...]) -> tuple[ProfileConfig, list[str]]:
    device = resolve_device(args.device)
    defaults = CUDA_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS
    chosen = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in defaults.items()}
    notes = [f"{k.replace('_', '-')} {v} (default on {device.type})"
             for k, v in chosen.items() if getattr(args, k) is None]
    mode = args.mode or ("both" if args.freeze else "full")
    if mode in MODE_SETS and not args.freeze:
        raise TlprofError(f"--mode {mode} needs --freeze N with N >= 1")
    cfg = ProfileConfig(
        input_shape=shape, device=str(device), precision=args.precision,
        channels_last=args.channels_last, optimizer=args.optimizer, freeze=args.freeze,
        modes=MODE_SETS.get(mode, (mode,)), frozen_bn=args.frozen_bn,
        num_classes=args.num_classes if args.model else None, input_dtype=args.input_dtype,
        input_max=args.input_max, output=args.output, loss=args.loss, **chosen,
    )
    return cfg, notes


def check_writable(path: str | None, option: str) -> None:
    """Fail before a long measurement, not after it."""
    if path is None:
        return
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise TlprofError(f"{option} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise TlprofError(f"{option} {path}: folder {parent} is not writable")


def _progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:>8}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=True,
    )


# -- commands -------------------------------------------------------------------


def cmd_profile(args: argparse.Namespace, console: Console) -> int:
    from tlprof import nv_cli
    from tlprof.kernels import cli as kernels_cli
    from tlprof.reports.profile_view import profile_view
    from tlprof.reports.rich_view import compact_view

    check_writable(args.json, "--json")
    check_writable(args.trace, "--trace")
    spec = model_from_args(args)
    cfg, notes = config_from_args(args, spec.input_shape)
    if notes and not args.quiet:
        console.print("using " + ", ".join(notes), style="dim")
    listeners: list = []  # MarkListeners seeing every mark (NVTX ranges...)
    extras: list = []  # RunExtras measuring more after each regime (kernels, energy...)
    extras += kernels_cli.profile_extras(args)
    listeners += nv_cli.profile_listeners(args, cfg)
    extras += nv_cli.profile_extras(args, cfg)
    run = partial(profile_model, spec.model, cfg, meta=spec.description,
                  listeners=listeners, extras=extras)
    if args.quiet:
        profile = run()
    else:
        with _progress_bar(console) as bar:
            tasks = {m: bar.add_task(m, total=cfg.steps_per_run) for m in cfg.modes}
            profile = run(progress=lambda mode, done, _n: bar.update(tasks[mode], completed=done))
    if args.json:
        profile.save(args.json)
    if not args.quiet:
        console.print(profile_view(profile))
        for run in profile.runs.values():
            for warning in run.extra.get("warnings", []):
                console.print(f"warning: {warning}", style="yellow")
        console.print(compact_view(profile))  # the report builder's cost model and verdicts
        if args.json:
            console.print(f"profile written to {args.json}", style="dim")
    kernels_cli.after_profile(args, profile, console)
    nv_cli.after_profile(args, profile, console)
    return 0


def cmd_layers(args: argparse.Namespace, console: Console) -> int:
    spec = model_from_args(args)
    target = as_spec(spec.model)
    cfg = ProfileConfig(batch_size=1, input_shape=spec.input_shape, input_dtype=args.input_dtype,
                        input_max=args.input_max)
    example = make_batch(target, cfg, torch.device("cpu"), rows=EXAMPLE_ROWS)
    with eager(target.model):
        try:
            units = find_units(target.model, example)
        except TlprofError:
            raise
        except Exception as exc:
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TlprofError(f"the model rejects input shape {spec.input_shape}: {msg}") from exc
    check_freeze(args.freeze, len(units))
    freeze(target.model, units, args.freeze)
    table = Table(title=f"{len(units)} units of {args.arch or args.model}")
    for col in ("#", "unit", "stage", "block", "params", "trainable"):
        table.add_column(col, justify="right" if col in ("#", "params") else "left", no_wrap=True)
    table.add_column("also owns", overflow="fold")
    for u in units:
        table.add_row(str(u.index), u.name, u.stage, u.block, f"{u.param_count:,}",
                      "yes" if u.trainable() else "frozen", _owned_text(u.name, u.modules[1:]))
    console.print(table)
    return 0


def _owned_text(unit_name: str, owned: list[str]) -> str:
    """Owned modules relative to the unit's parent: bn3, downsample.0 for layer4.0.conv3."""
    parent = unit_name.rpartition(".")[0]
    prefix = f"{parent}." if parent else ""
    return ", ".join(n.removeprefix(prefix) for n in owned)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tlprof", description="Per-layer time and memory of PyTorch training.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("profile", help="train a model on synthetic data and measure every unit")
    add_profile_args(p)
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("layers", help="list the model's units and what each owns")
    add_model_args(p)
    p.add_argument("--freeze", type=int, default=0, metavar="N")
    p.set_defaults(func=cmd_layers)

    _register_extensions(sub)
    return parser


def _register_extensions(sub: argparse._SubParsersAction) -> None:
    """Commands that live with the parts they belong to."""
    from tlprof import nv_cli
    from tlprof.kernels import cli as kernels_cli
    from tlprof.reports import cli as reports_cli

    for part in (kernels_cli, nv_cli, reports_cli):
        part.register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return args.func(args, console)
    except TlprofError as exc:
        print(f"tlprof: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tlprof: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the model failing mid-run, or a bug: one line, details on request
        if os.environ.get("TLPROF_DEBUG"):
            raise
        text = (str(exc).strip().splitlines() or [""])[0]
        print(f"tlprof: error: {type(exc).__name__}: {text} (TLPROF_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1


__all__ = ["main", "build_parser", "Profile"]
