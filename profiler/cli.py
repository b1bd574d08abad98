"""``tlprof``: a thin command line over the Python API.

The parser is built without importing torch; each command imports what it
measures with when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from functools import partial

from rich.console import Console
from rich.table import Table

from tlprof.kernels import cli as kernels_cli
from tlprof.reports import cli as reports_cli

from . import nv_cli
from .cli_args import (
    RUN_CHOICES,
    add_model_args,
    add_run_args,
    check_writable,
    config_from_args,
    model_from_args,
    progress_bar,
)
from .errors import TlprofError


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
    p.add_argument("--ddp", action="store_true",
                   help="data-parallel: every torchrun rank profiles its DDP replica, rank 0 reports "
                        "(torchrun --nproc-per-node N -m tlprof profile ... --ddp)")
    p.add_argument("--ddp-timeout", type=float, default=120.0, metavar="S",
                   help="seconds a rank waits for the others before it stops (default 120)")
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
        print("tlprof: using " + ", ".join(notes), file=sys.stderr)
    listeners = nv_cli.profile_listeners(args, cfg)  # see every mark (NVTX ranges)
    extras = kernels_cli.profile_extras(args) + nv_cli.profile_extras(args, cfg)  # after each run
    run = partial(profile_model, spec.model, cfg, meta=spec.description,
                  listeners=listeners, extras=extras, ddp=ddp)
    if args.quiet:
        profile = run()
    else:
        with progress_bar(console) as bar:
            tasks = {m: bar.add_task(m, total=cfg.steps_per_run) for m in cfg.runs}
            profile = run(progress=lambda name, done, _n: bar.update(tasks[name], completed=done))
    if args.json:
        profile.save(args.json)
    if not args.quiet:
        console.print(profile_view(profile))
        if args.json:
            console.print(f"profile written to {args.json}", style="dim")
    kernels_cli.after_profile(args, profile, console)
    nv_cli.after_profile(args, profile, console)
    return 0


def cmd_layers(args: argparse.Namespace, console: Console) -> int:
    import torch

    from .runner import check_freeze
    from .units import find_units, freeze

    spec = model_from_args(args)
    example = torch.randn(1, *spec.input_shape)
    try:
        units = find_units(spec.model, example)
    except TlprofError:
        raise
    except Exception as exc:
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TlprofError(f"the model rejects input shape {spec.input_shape}: {msg}") from exc
    check_freeze(args.freeze, len(units))
    freeze(spec.model, units, args.freeze)
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

    for part in (reports_cli, kernels_cli, nv_cli):  # commands that live with their parts
        part.register(sub)
    return parser


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
