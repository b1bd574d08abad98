"""Commands and profile options of ``tlprof.kernels``: ceilings, kernels, --kernels, --trace.

Nothing here imports torch until a command that measures runs.
"""

from __future__ import annotations

import argparse

from rich.console import Console

from tlprof.cli_args import check_writable
from tlprof.document import RunDocument, RunDocumentError, save_json
from tlprof.errors import TlprofError, say


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ceilings", help="measure the device's matmul rate per precision and "
                       "copy bandwidth")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--json", metavar="PATH", help="write the figures and every sample here")
    p.add_argument("--refresh", action="store_true",
                   help="measure again instead of reading the figures cached for this device and torch "
                        "($TLPROF_CACHE or ~/.cache/tlprof)")
    p.set_defaults(func=cmd_ceilings)

    p = sub.add_parser("kernels", help="per unit: FLOPs, bytes, roofline and top kernels of a "
                       "run document profiled with --kernels")
    p.add_argument("run_json", metavar="RUN.json")
    p.add_argument("--run", action="append", metavar="NAME",
                   help="only this run (full, frozen); repeatable")
    p.add_argument("--top", type=int, default=3, metavar="N", help="kernels shown per unit")
    p.add_argument("--format", choices=("rich", "markdown", "csv", "json"), default="rich")
    p.add_argument("-o", "--output", metavar="PATH", help="write here instead of the terminal")
    p.set_defaults(func=cmd_kernels)


def cmd_ceilings(args: argparse.Namespace, console: Console) -> int:
    from tlprof.reports.kernels_view import ceilings_table
    from tlprof.runner import on_device, resolve_device

    from .ceilings import cached_ceilings

    check_writable(args.json, "--json")
    device = resolve_device(args.device)
    with on_device(device):
        ceilings = cached_ceilings(device, refresh=args.refresh, notify=say)
    if args.json:
        save_json(ceilings.to_dict(), args.json)
    console.print(ceilings_table(ceilings))
    return 0


def cmd_kernels(args: argparse.Namespace, console: Console) -> int:
    from tlprof.reports import kernels_view as view
    from tlprof.reports.cli import emit, plain_text

    check_writable(args.output, "--output")
    try:
        profile = RunDocument.load(args.run_json)
    except RunDocumentError as exc:
        raise TlprofError(str(exc)) from exc
    if args.format == "rich":
        renderable = view.kernels_view(profile, top=args.top, runs=args.run)
        emit(console, plain_text(renderable) if args.output else None, renderable, args.output)
        return 0
    text = {"markdown": lambda: view.kernels_markdown(profile, args.top, args.run),
            "csv": lambda: view.kernels_csv(profile, args.run),
            "json": lambda: view.kernels_json(profile, args.top, args.run)}[args.format]()
    emit(console, text, None, args.output)
    return 0


def profile_extras(args: argparse.Namespace) -> list:
    """The RunExtras ``tlprof profile`` gets from this package's options."""
    if not getattr(args, "kernels", False):
        return []
    from .extra import KernelsExtra

    return [KernelsExtra(notify=None if args.quiet else say)]


def after_profile(args: argparse.Namespace, profile: RunDocument, console: Console) -> None:
    """Write the trace, and say how well the kernel sums agree with the measured times."""
    if getattr(args, "trace", None):
        from tlprof.reports.trace import write_trace

        write_trace(profile, args.trace)
    if args.quiet:
        return
    if getattr(args, "kernels", False):
        from tlprof.reports.kernels_view import run_summary

        for name, run in profile.runs.items():
            console.print(run_summary(name, run))
        if args.json:
            say(f"per-unit kernels: tlprof kernels {args.json}")
    if getattr(args, "trace", None):
        say(f"trace written to {args.trace} (open in ui.perfetto.dev)")
