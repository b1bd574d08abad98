"""How tlprof measures when not told: one set per device, shared by the API and the CLI; and the
choices its options accept. Torch-free."""

from __future__ import annotations

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
