"""``tlprof devices``: the GPUs NVML sees, as a rich table. Reads a snapshot, never measures."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from tlprof.reports.text import fmt_opt


def _whole(value: float | None) -> str:
    return fmt_opt(value, ".0f")


def devices_table(snapshot: Any) -> Table:
    """``snapshot``: a ``tlprof.nvml.DevicesSnapshot`` (driver info, then (info, state) per GPU)."""
    info = snapshot.driver
    table = Table(title=f"{len(snapshot.devices)} GPU(s) seen by NVML · driver {info['driver_version']} · "
                        f"CUDA {info['cuda_driver_version']}",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0, 0, 1))
    for col in ("#", "name", "memory\nGiB", "SM MHz\nnow/max", "mem MHz\nnow/max", "power W\nnow/limit",
                "temp\n°C", "throttle"):
        text = col in ("name", "throttle")
        table.add_column(col, justify="left" if text else "right", no_wrap=not text,
                         overflow="fold" if text else "ellipsis")
    for i, (d, s) in enumerate(snapshot.devices):
        mem = None if d.memory_total_bytes is None else d.memory_total_bytes / 2**30
        slow = [r for r in s.throttle_reasons or [] if r != "gpu_idle"]
        table.add_row(
            str(i), d.name, fmt_opt(mem, ".1f"),
            f"{_whole(s.sm_clock_mhz)}/{_whole(d.max_sm_clock_mhz)}",
            f"{_whole(s.memory_clock_mhz)}/{_whole(d.max_memory_clock_mhz)}",
            f"{_whole(s.power_w)}/{_whole(d.power_limit_w)}", _whole(s.temperature_c),
            ", ".join(slow) or ("-" if s.throttle_reasons is None else "none"),
        )
    return table
