"""Host cost of one mark: a 50-unit chain of tiny Linear layers, instrumented vs plain.

    python benchmarks/hook_cost.py [--device cuda]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from tlprof import ProfileConfig, profile_model

N_UNITS = 50


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.ReLU()) for _ in range(N_UNITS)])
    cfg = ProfileConfig(batch_size=1, input_shape=(8,), device=args.device, steps=30, warmup=3)
    run = profile_model(model, cfg).runs["full"]
    marks = 2 * N_UNITS  # one forward and one backward mark per unit, phases aside
    extra_us = (run.step_ms.median - run.plain_step_ms.median) * 1000 / marks
    print(f"plain {run.plain_step_ms.median:.3f} ms, instrumented {run.step_ms.median:.3f} ms: "
          f"+{extra_us:.1f} us per mark ({marks} marks)")


if __name__ == "__main__":
    main()
