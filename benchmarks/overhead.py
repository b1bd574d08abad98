"""What profiling costs, measured from outside each step in one process (issue 9).

Interleaved rounds; in each round every mode runs STEPS steps, each timed
wall-to-wall from outside (synchronized on CUDA); medians over rounds:

  bare          the training step alone
  plain, timed  tlprof's plain and instrumented steps (one Profiler, in turn)
  graph_plain, graph_timed   --graph replays (CUDA only)
  floor         the hook machinery alone, no tlprof: a forward pre-hook per unit that stamps the
                host clock and hooks a stamp on its input's autograd node (what any per-layer
                forward+backward timing by hooks pays; on CUDA it records no events)
  torch_prof    torch.profiler (CPU + CUDA activities) around the steps
  torch_prof_rf the same with a record_function per unit forward

It also prints tlprof's reported overhead ratio beside the ratio felt outside, both the same
statistic: the median over rounds of each round's ratio (felt: timed / plain of the round's medians;
reported: the round's Profiler ``overhead_ratio``).

    python benchmarks/overhead.py --model mlp --device cpu          # 40 x Linear(256, 256), batch 64
    python benchmarks/overhead.py --model resnet50 --precision bf16 --channels-last --batch-size 128
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from _setup import MLP_WIDTH, mlp, prepare
from torch import nn

from tlprof import ProfileConfig
from tlprof.api import Profiler
from tlprof.runner import RunContext, on_device, resolve_device


def build(args: argparse.Namespace) -> RunContext:
    if args.model == "mlp":
        model: nn.Module = mlp()
        shape: tuple[int, ...] = (MLP_WIDTH,)
    else:
        import torchvision

        model, shape = torchvision.models.resnet50(), (3, 224, 224)
    cfg = ProfileConfig(batch_size=args.batch_size, input_shape=shape, device=args.device,
                        precision=args.precision, channels_last=args.channels_last, steps=args.steps,
                        warmup=2, graph=args.graph_mode)
    return prepare(model, cfg)


def timed(sync: Callable[[], None], fn: Callable[[], None]) -> float:
    t0 = time.perf_counter_ns()
    fn()
    sync()
    return (time.perf_counter_ns() - t0) / 1e6


def bare(ctx: RunContext, steps: int, sync) -> dict[str, list[float]]:
    return {"bare": [timed(sync, ctx.train_step) for _ in range(steps)]}


def tlprof_steps(ctx: RunContext, steps: int, sync) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"plain": [], "timed": [], "reported": []}
    with Profiler(ctx.model, ctx.units, optimizer=ctx.optimizer, hook_optimizer=False,
                  device=ctx.work.device, warmup=2) as prof:
        for _ in range(3 + 2 * steps):
            kind = prof.next_kind()

            def step() -> None:
                with prof.step():
                    ctx.marked_step(prof)

            ms = timed(lambda: None, step)  # the profiler synchronizes inside its step
            if kind in out:
                out[kind].append(ms)
    out["reported"] = [prof.run().overhead_ratio]
    return out


def floor(ctx: RunContext, steps: int, sync) -> dict[str, list[float]]:
    stamps: list[int] = []

    def on_grad(_grad: object) -> None:
        stamps.append(time.perf_counter_ns())

    def pre(_module: nn.Module, args: tuple) -> None:
        stamps.append(time.perf_counter_ns())
        node = args[0].grad_fn if args and isinstance(args[0], torch.Tensor) else None
        if node is not None:
            node.register_prehook(on_grad)

    handles = [u.module.register_forward_pre_hook(pre) for u in ctx.units]
    try:
        ms = []
        for _ in range(steps):
            ms.append(timed(sync, ctx.train_step))
            stamps.clear()
        return {"floor": ms}
    finally:
        for h in handles:
            h.remove()


def torch_prof(ctx: RunContext, steps: int, sync, per_unit: bool) -> dict[str, list[float]]:
    from torch.profiler import ProfilerActivity, profile, record_function

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ctx.work.device.type == "cuda" else [])
    handles, open_ranges = [], []
    if per_unit:
        for u in ctx.units:
            def pre(_m, _a, name=u.name):
                rf = record_function(name)
                rf.__enter__()
                open_ranges.append(rf)

            def post(_m, _a, _o):
                open_ranges.pop().__exit__(None, None, None)

            handles += [u.module.register_forward_pre_hook(pre), u.module.register_forward_hook(post)]
    try:
        with profile(activities=acts):
            ms = [timed(sync, ctx.train_step) for _ in range(steps)]
    finally:
        for h in handles:
            h.remove()
    return {"torch_prof_rf" if per_unit else "torch_prof": ms}


def graph_steps(ctx: RunContext, steps: int, sync) -> dict[str, list[float]]:
    from tlprof.graph import CudaGraphBackend, GraphCapture

    cap = GraphCapture(ctx, CudaGraphBackend(ctx.work.device))
    cap.capture()
    cap.measure(steps)
    return {"graph_plain": cap.plain_wall_ms, "graph_timed": cap.step_wall_ms,
            "graph_event_ratio": [statistics.median(s.step_ms for s in cap.samples)
                                  / statistics.median(cap.plain_ms)]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["mlp", "resnet50"], default="mlp")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="default")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="CPU threads (CPU runs)")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args()
    args.graph_mode = False
    if resolve_device(args.device).type == "cpu":
        torch.set_num_threads(args.threads)
    ctx = build(args)
    cuda = ctx.work.device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(ctx.work.device)) if cuda else (lambda: None)
    modes: list[Callable[[], dict[str, list[float]]]] = [
        lambda: bare(ctx, args.steps, sync),
        lambda: tlprof_steps(ctx, args.steps, sync),
        lambda: floor(ctx, args.steps, sync),
        lambda: torch_prof(ctx, args.steps, sync, per_unit=False),
        lambda: torch_prof(ctx, args.steps, sync, per_unit=True),
    ]
    rounds: dict[str, list[float]] = {}
    with on_device(ctx.work.device):
        for _ in range(2):
            ctx.train_step()  # warm-up outside the rounds
        for _ in range(args.rounds):
            for mode in modes:
                for key, samples in mode().items():
                    rounds.setdefault(key, []).append(statistics.median(samples))
        if cuda:  # the graph last: its capture keeps memory and a capturable optimizer
            args.graph_mode = True
            gctx = build(args)
            for _ in range(args.rounds):
                for key, samples in graph_steps(gctx, args.steps, sync).items():
                    rounds.setdefault(key, []).append(statistics.median(samples))
    med = {k: statistics.median(v) for k, v in rounds.items()}
    report(args, med, rounds)


def report(args: argparse.Namespace, med: dict[str, float], rounds: dict[str, list[float]]) -> None:
    base = med["bare"]
    print(f"{args.model} on {args.device}, {args.precision}{' channels-last' if args.channels_last else ''}, "
          f"batch {args.batch_size}, {args.rounds} rounds x {args.steps} steps (median ms, x bare)")
    keys = ("bare", "plain", "timed", "floor", "graph_plain", "graph_timed", "torch_prof", "torch_prof_rf")
    for key in keys:
        if key in med:
            print(f"  {key:14s} {med[key]:9.3f} ms  {med[key] / base:6.3f}x")
    # the same statistic as "reported": each round's ratio, then the median over rounds
    felt = statistics.median(t / p for t, p in zip(rounds["timed"], rounds["plain"]))
    print(f"  tlprof instrumented/bare {med['timed'] / base:.4f}; "
          f"the hook floor/bare {med['floor'] / base:.4f}")
    felt_rounds = ", ".join(f"{t / p:.4f}" for t, p in zip(rounds["timed"], rounds["plain"]))
    reported_rounds = ", ".join(f"{x:.4f}" for x in rounds["reported"])
    print(f"  tlprof instrumented/plain, medians over rounds of each round's ratio: felt outside {felt:.4f}, "
          f"reported {med['reported']:.4f}")
    print(f"    per round, felt: {felt_rounds}; reported: {reported_rounds}")
    if "graph_timed" in med:
        print(f"  graph instrumented/plain: wall {med['graph_timed'] / med['graph_plain']:.4f}, "
              f"events {med['graph_event_ratio']:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "median": med, "rounds": rounds}, f, indent=1)


if __name__ == "__main__":
    main()
