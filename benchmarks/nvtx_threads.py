"""On CUDA: which thread pushes which tlprof NVTX range, and does every thread pop all it pushed?

    python benchmarks/nvtx_threads.py [--device cuda] [--out nvtx_threads.json]

Profiles ResNet-50 (64×64, batch 32, 45 frozen, full and frozen) with the NVTX listener
on a recording backend, then replays each thread's pushes and pops. Exits 1 if a thread
popped with nothing of its own open, or left a range open.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections import Counter, defaultdict


class Recorder:
    name = "recorder"
    domain = "tlprof"

    def __init__(self) -> None:
        self.calls: list[tuple[int, str, str | None]] = []

    def push(self, message: str, color: int) -> None:
        self.calls.append((threading.get_ident(), "push", message))

    def pop(self) -> None:
        self.calls.append((threading.get_ident(), "pop", None))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default="nvtx_threads.json")
    args = p.parse_args()

    import torchvision

    from tlprof import ProfileConfig, profile_model
    from tlprof.nvtx_ranges import NvtxRanges

    recorder = Recorder()
    main_thread = threading.get_ident()
    cfg = ProfileConfig(batch_size=32, input_shape=(3, 64, 64), device=args.device, steps=2, warmup=1,
                        freeze=45, runs=("full", "frozen"))
    profile_model(torchvision.models.resnet50(), cfg, listeners=[NvtxRanges(recorder)])

    stacks: dict[int, list[str]] = defaultdict(list)
    kinds: dict[int, Counter] = defaultdict(Counter)
    bad: list[str] = []
    for thread, op, message in recorder.calls:
        if op == "push":
            stacks[thread].append(message)
            kinds[thread][message.split("/")[1]] += 1
        elif stacks[thread]:
            stacks[thread].pop()
        else:
            bad.append(f"pop with nothing open on thread {thread}")
    report = {
        "device": args.device,
        "threads": [{"thread": "main" if t == main_thread else f"other-{i}",
                     "pushes_by_kind": dict(kinds[t]), "left_open": stacks[t]}
                    for i, t in enumerate(stacks)],
        "errors": bad + [f"{len(s)} range(s) left open on a thread: {s}" for s in stacks.values() if s],
    }
    print(json.dumps(report, indent=1))
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
