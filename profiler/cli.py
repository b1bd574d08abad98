"""``tlprof``: a thin command line over the Python API.

The parser is built without importing torch; each command imports what it
measures with when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from tlprof.kernels import cli as kernels_cli
from tlprof.reports import cli as reports_cli

from . import nv_cli
from .cli_args import (
    add_model_args,
    add_run_args,
    check_writable,
    config_from_args,
    make_console,
    model_from_args,
    run_progress,
)
from .defaults import DDP_TIMEOUT_S, RUN_CHOICES
from .errors import TlprofError, first_line, say


def add_profile_args(p: argparse.ArgumentParser) -> None:
    add_run_args(p)
    p.add_argument("--freeze", type=int, default=0, metavar="N", help="freeze units 1..N")
    p.add_argument("--runs", "--mode", dest="runs", choices=RUN_CHOICES,
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
    p.add_argument("--graph", action="store_true",
                   help="capture the whole training step as a CUDA graph: per-unit GPU time with no "
                        "launch overhead (CUDA; memory, --kernels, --energy, --trace are eager-only)")
    p.add_argument("--ddp", action="store_true",
                   help="data-parallel: every torchrun rank profiles its DDP replica, rank 0 reports "
                        "(torchrun --nproc-per-node N -m tlprof profile ... --ddp)")
    p.add_argument("--ddp-timeout", type=float, default=DDP_TIMEOUT_S, metavar="S",
                   help=f"seconds a rank waits for the others before it stops (default {DDP_TIMEOUT_S:g})")
    p.add_argument("--bucket-cap-mb", type=float, metavar="MB", help="DDP's bucket size (default 25)")


def _ddp_options(args: argparse.Namespace) -> tuple[object | None, bool]:
    """DDP's options and whether this process reports (rank 0), or (None, True) without --ddp."""
    if not args.ddp:
        return None, True
    from tlprof.distributed import DdpOptions, LaunchEnv, stop_on_sigterm

    env = LaunchEnv.from_environ()  # no torchrun environment: one line on how to launch
    options = DdpOptions(args.ddp_timeout, args.bucket_cap_mb)
    options.validate()
    stop_on_sigterm()
    return options, env.rank == 0


def cmd_profile(args: argparse.Namespace, console: Console) -> int:
    eager_only = [o for o, on in (("--kernels", args.kernels), ("--energy", args.energy),
                                  ("--trace", args.trace), ("--ddp", args.ddp)) if on]
    if args.graph and eager_only:
        raise TlprofError(f"--graph: {', '.join(eager_only)} measure eager steps only; drop them or --graph")
    ddp, reporter = _ddp_options(args)
    from tlprof.engine import profile_model
    from tlprof.reports.profile_view import profile_view

    if not reporter:  # ranks other than 0 measure and send their figures to rank 0
        args.quiet, args.json, args.trace = True, None, None
    check_writable(args.json, "--json")
    check_writable(args.trace, "--trace")
    spec = model_from_args(args)
    cfg, notes = config_from_args(args, spec.input_shape)
    if notes and not args.quiet:
        say("using " + ", ".join(notes))
    listeners = nv_cli.profile_listeners(args, cfg)  # see every mark (NVTX ranges)
    extras = kernels_cli.profile_extras(args) + nv_cli.profile_extras(args, cfg)  # after each run
    with run_progress(console, args.quiet) as progress:
        profile = profile_model(spec.model, cfg, meta=spec.description, listeners=listeners,
                                extras=extras, progress=progress, ddp=ddp)
    if args.json:
        profile.save(args.json)
    if not args.quiet:
        console.print(profile_view(profile))
        if args.json:
            say(f"profile written to {args.json}")
    kernels_cli.after_profile(args, profile, console)
    nv_cli.after_profile(args, profile, console)
    return 0


def cmd_layers(args: argparse.Namespace, console: Console) -> int:
    import torch

    from .layers import module_tree, record_shapes, share_text, unit_rows
    from .runner import ProfileConfig, check_freeze
    from .units import find_units, freeze
    from .workload import EXAMPLE_ROWS, as_spec, eager, make_batch

    spec = model_from_args(args)
    target = as_spec(spec.model)
    model = target.model
    cfg = ProfileConfig(batch_size=1, input_shape=spec.input_shape, input_dtype=args.input_dtype,
                        input_max=args.input_max)
    example = make_batch(target, cfg, torch.device("cpu"), rows=EXAMPLE_ROWS)
    with eager(model):
        try:
            units = find_units(model, example)
            shapes = record_shapes(model, tuple(t[:1] for t in example))  # one sample's shapes
        except TlprofError:
            raise
        except Exception as exc:
            raise TlprofError(f"the model rejects input shape {spec.input_shape}: {first_line(exc)}") from exc
    check_freeze(args.freeze, len(units))
    if args.depth is not None and args.depth < 1:
        raise TlprofError(f"--depth must be 1 or more, got {args.depth}")
    freeze(model, units, args.freeze)
    total = sum(p.numel() for p in model.parameters())
    label = args.arch or args.model
    if args.depth is not None:
        rows = module_tree(model, units, shapes, args.depth)
        table = Table(title=f"modules of {label} to depth {args.depth} ({len(units)} units, "
                            f"{total:,} parameters; shapes for one sample)")
        for col in ("module", "type", "input", "output", "kernel", "params", "share", "unit"):
            table.add_column(col, justify="right" if col in ("params", "share", "unit") else "left",
                             no_wrap=True)
        for r in rows:
            table.add_row("  " * r.depth + r.name.rpartition(".")[2] if r.depth else r.name, r.kind,
                          r.input, r.output, r.kernel, f"{r.params:,}", share_text(r.params, total), r.units)
        console.print(table)
        return 0
    table = Table(title=f"{len(units)} units of {label} ({total:,} parameters; shapes for one sample)")
    for col in ("#", "unit", "stage", "block", "input", "output", "kernel", "params", "share", "trainable"):
        table.add_column(col, justify="right" if col in ("#", "params", "share") else "left", no_wrap=True)
    table.add_column("also owns", overflow="fold")
    for u, r in zip(units, unit_rows(model, units, shapes)):
        table.add_row(str(u.index), u.name, u.stage, u.block, r.input, r.output, r.kernel,
                      f"{u.param_count:,}", share_text(u.param_count, total),
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
    p.add_argument("--depth", type=int, metavar="D",
                   help="the module tree to depth D (1 = the model's children) instead of the units")
    p.set_defaults(func=cmd_layers)

    for part in (reports_cli, kernels_cli, nv_cli):  # commands that live with their parts
        part.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = make_console()
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
        text = first_line(exc, default="")  # the type name is printed before it
        print(f"tlprof: error: {type(exc).__name__}: {text} (TLPROF_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1
