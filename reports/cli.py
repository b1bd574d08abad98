"""``tlprof report``, ``tlprof compare`` and ``tlprof sweep``: registered by ``register``."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from rich.console import Console, RenderableType

from tlprof.cli_args import add_run_args, check_writable, config_from_args, model_from_args, run_progress
from tlprof.document import RunDocument, RunDocumentError, Sweep
from tlprof.document import read_document as _read
from tlprof.errors import TlprofError, say
from tlprof.reports.builder import DEFAULT_MODELS, GRANULARITIES, ReportOptions, build_report
from tlprof.reports.compare import compare, compare_csv, compare_json, compare_markdown, compare_view
from tlprof.reports.render import FORMATS, TEXT_WIDTH, render, write_plots
from tlprof.reports.rich_view import report_view
from tlprof.reports.sweep import (
    SWEEP_RUNS,
    build_sweep_report,
    parse_depths,
    render_sweep,
    sweep_svg,
    sweep_view,
)

# -- reading documents ------------------------------------------------------------


def read_document(path: str) -> RunDocument | Sweep:
    """A run or sweep document; any problem with it is one TlprofError line."""
    try:
        return _read(path)
    except RunDocumentError as exc:
        raise TlprofError(f"{path}: {exc}") from exc


def read_run_document(path: str) -> RunDocument:
    doc = read_document(path)
    if not isinstance(doc, RunDocument):
        raise TlprofError(f"{path} is a sweep document; compare takes two run documents")
    return doc


def _built(path: str, build):
    """Run the builder; a document that parses but does not add up is still one error line."""
    try:
        return build()
    except TlprofError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise TlprofError(f"{path}: the run document is inconsistent ({type(exc).__name__}: {exc})") from exc


# -- output -----------------------------------------------------------------------


def emit(console: Console, text: str | None, renderable: RenderableType | None, out: str | None) -> None:
    """Write ``text`` to ``out``, or print it (``renderable`` when given) to the terminal."""
    if out:
        try:
            Path(out).write_text(text if text is not None else "")
        except OSError as exc:
            raise TlprofError(f"cannot write {out}: {exc.strerror}") from exc
        print(f"written to {out}", file=sys.stderr)
    elif renderable is not None:
        console.print(renderable)
    else:
        sys.stdout.write(text or "")


# -- commands ---------------------------------------------------------------------


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    doc = read_document(args.run)
    if isinstance(doc, Sweep):
        rep = _built(args.run, lambda: build_sweep_report(doc))
        if args.plots:
            Path(args.plots).mkdir(parents=True, exist_ok=True)
            target = Path(args.plots) / "sweep.svg"
            target.write_text(sweep_svg(rep) + "\n")
            print(f"plot (SVG) written: {target}", file=sys.stderr)
        if args.format == "rich":
            emit(console, plain_text(sweep_view(rep)) if args.output else None, sweep_view(rep),
                 args.output)
        else:
            emit(console, render_sweep(rep, args.format), None, args.output)
        return 0
    options = ReportOptions(models=args.models, steps_per_epoch=args.steps_per_epoch,
                            epochs=args.epochs, granularity=args.granularity,
                            data_per_model=args.different_data)
    report = _built(args.run, lambda: build_report(doc, options))
    if args.plots:
        paths = write_plots(report, args.plots)
        print(f"plots (SVG) written: {', '.join(str(p) for p in paths)}", file=sys.stderr)
    if args.format == "rich":
        emit(console, render(report, "rich") if args.output else None, report_view(report), args.output)
    else:
        emit(console, render(report, args.format), None, args.output)
    return 0


def plain_text(renderable: RenderableType) -> str:
    console = Console(width=TEXT_WIDTH, color_system=None, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    a, b = read_run_document(args.a), read_run_document(args.b)
    comp = _built(args.b, lambda: compare(a, b, args.a, args.b))
    if not comp.runs:
        raise TlprofError(f"{args.a} and {args.b} have no run in common "
                          f"({', '.join(a.runs)} vs {', '.join(b.runs)})")
    if args.format == "rich":
        emit(console, plain_text(compare_view(comp)) if args.output else None, compare_view(comp),
             args.output)
        return 0
    renderers = {"markdown": compare_markdown, "csv": compare_csv, "json": compare_json}
    emit(console, renderers[args.format](comp), None, args.output)
    return 0


def cmd_sweep(args: argparse.Namespace, console: Console) -> int:
    from tlprof.sweep import run_sweep  # measures: the one command here that imports torch

    depths = parse_depths(args.freeze)
    check_writable(args.json, "--json")
    spec = model_from_args(args)
    base_args = argparse.Namespace(**{**vars(args), "freeze": 0, "runs": "full"})
    cfg, notes = config_from_args(base_args, spec.input_shape)
    if notes and not args.quiet:
        say("using " + ", ".join(notes))
    runs = SWEEP_RUNS[args.runs]
    with run_progress(console, args.quiet) as progress:
        sweep = run_sweep(spec.model, cfg, depths, runs, meta=spec.description, progress=progress)
    if args.json:
        sweep.save(args.json)
    if not args.quiet:
        console.print(sweep_view(build_sweep_report(sweep)))
        if args.json:
            say(f"sweep written to {args.json}")
    return 0


# -- registration -----------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="the cost model and the paper's claims, from a saved run")
    p.add_argument("run", metavar="RUN", help="a run (or sweep) document written by --json")
    p.add_argument("--format", choices=FORMATS, default="rich")
    p.add_argument("-o", "--output", metavar="PATH", help="write here instead of the terminal")
    p.add_argument("--models", type=int, default=DEFAULT_MODELS, metavar="K",
                   help=f"cost model for k = 1..K models (default {DEFAULT_MODELS})")
    p.add_argument("--steps-per-epoch", type=int, metavar="S",
                   help="scale the cost model to S steps per epoch")
    p.add_argument("--epochs", type=int, metavar="E", help="scale the cost model to E epochs")
    p.add_argument("--granularity", choices=GRANULARITIES, default="unit")
    p.add_argument("--different-data", action="store_true",
                   help="cached-features row: each model trains on its own data, so each pays the "
                        "frozen units' feature pass (default: the k models share the data, one pass)")
    p.add_argument("--plots", metavar="DIR", help="also write every plot as an SVG file in DIR")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="two saved runs side by side, per unit and per phase")
    p.add_argument("a", metavar="A", help="run document A")
    p.add_argument("b", metavar="B", help="run document B")
    p.add_argument("--format", choices=("rich", "markdown", "csv", "json"), default="rich")
    p.add_argument("-o", "--output", metavar="PATH")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("sweep", help="frozen step time and savings against freeze depth")
    add_run_args(p)
    p.add_argument("--freeze", required=True, metavar="N,N,...",
                   help="freeze depths, e.g. 0,10,20,30,40,45,49 (0 = the full run)")
    p.add_argument("--runs", "--mode", dest="runs", choices=tuple(SWEEP_RUNS), default="frozen",
                   help="runs per depth: frozen (default), cached, or all (both)")
    p.add_argument("--json", metavar="PATH", help="write the whole sweep here")
    p.set_defaults(func=cmd_sweep)
