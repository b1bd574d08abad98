"""Host costs of the hooks (docs/design.md §3), on the CPU, one thread, in one process.

1. One mark: a 50-unit chain of tiny Linear layers, instrumented vs plain (profile_model).
2. On ``overhead.py --model mlp``'s model and step (40 × (Linear(256, 256), ReLU), batch 64), the
   step alone and with a registered hook per unit that returns at once (what hooks left registered
   but switched off would cost a plain step: PyTorch's slow dispatch path), interleaved step by
   step, medians; and, hot, the time to register and remove tlprof's hooks vs to attach and detach
   them (``Instrumenter._attach``/``_detach``, what a tlprof step does instead). The
   model and its step are those ``overhead.py --model mlp`` times (``_setup.prepare``, the run
   context's ``train_step``: tlprof's synthetic batch, loss and SGD step).

    OMP_NUM_THREADS=1 python benchmarks/hook_cost.py [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from _setup import MLP_WIDTH, mlp, prepare
from torch import nn

from tlprof import ProfileConfig, profile_model
from tlprof.clock import clock_for
from tlprof.instrument import Instrumenter

N_UNITS = 50


def per_mark(device: str) -> None:
    model = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.ReLU()) for _ in range(N_UNITS)])
    cfg = ProfileConfig(batch_size=1, input_shape=(8,), device=device, steps=30, warmup=3)
    run = profile_model(model, cfg).runs["full"]
    marks = 2 * N_UNITS  # one forward and one backward mark per unit, phases aside
    extra_us = (run.step_ms.median - run.plain_step_ms.median) * 1000 / marks
    print(f"plain {run.plain_step_ms.median:.3f} ms, instrumented {run.step_ms.median:.3f} ms: "
          f"+{extra_us:.1f} us per mark ({marks} marks)")


def _us(fn: Callable[[], None], n: int) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1e3)
    return statistics.median(samples)


def switching(steps: int) -> None:
    cfg = ProfileConfig(batch_size=64, input_shape=(MLP_WIDTH,), device="cpu", warmup=2)
    ctx = prepare(mlp(), cfg)  # overhead.py --model mlp's model and step
    inst = Instrumenter(ctx.model, ctx.units, clock_for(ctx.work.device))
    step = ctx.train_step

    def returns_at_once(*_: object) -> None:
        pass

    bare, idle = [], []
    for _ in range(2):
        step()
    for _ in range(steps):  # interleaved: the same machine state for both
        bare.append(_us(step, 1))
        handles = [u.module.register_forward_pre_hook(returns_at_once) for u in ctx.units]
        handles.append(ctx.model.register_forward_hook(returns_at_once))
        idle.append(_us(step, 1))  # what registered but switched-off hooks cost a plain step
        for h in handles:
            h.remove()
    b, i = statistics.median(bare) / 1e3, statistics.median(idle) / 1e3
    print(f"step {b:.3f} ms; with a registered hook per unit that returns at once {i:.3f} ms "
          f"(+{i - b:.3f} ms, {i / b:.3f}x)")

    def register_remove() -> None:
        inst.install()
        inst.remove()

    def attach_detach() -> None:
        inst._attach()
        inst._detach()

    inst.install()
    attach = _us(attach_detach, 2000)
    inst.remove()
    print(f"register + remove the hooks {_us(register_remove, 500):.1f} us; attach + detach {attach:.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)
    per_mark(args.device)
    switching(args.steps)


if __name__ == "__main__":
    main()
