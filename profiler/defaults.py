"""How tlprof measures when not told: one set per device, shared by the API and the CLI; and the
choices its options accept. Torch-free."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Defaults:
    batch_size: int
    steps: int  # measured (instrumented) steps per run; as many plain steps alternate with them
    warmup: int  # dropped steps per run


CPU = Defaults(batch_size=2, steps=10, warmup=2)
CUDA = Defaults(batch_size=64, steps=20, warmup=5)


def defaults_for(device_type: str) -> Defaults:
    return CUDA if device_type == "cuda" else CPU


LOSSES = ("ce", "mse", "sum")
INPUT_DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8",
                "uint8", "bool")
PRECISIONS = ("default", "fp32", "tf32", "bf16", "fp16")
OPTIMIZERS = ("sgd", "adam", "adamw")
RUNS = ("full", "frozen", "cached")
RUN_SETS = {"both": ("full", "frozen"), "all": RUNS}  # what --runs both|all stand for
RUN_CHOICES = (*RUNS, *RUN_SETS)
DDP_TIMEOUT_S = 120.0  # how long a rank waits for the others (--ddp-timeout)

Progress = Callable[[str, int, int], None]  # (run name, steps done, steps in the run)
