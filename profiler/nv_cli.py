"""Commands and profile options for NVIDIA tools: ``tlprof devices``, ``--nvtx``, ``--energy``.

Nothing here imports torch until a command runs.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from .document import RunDocument
    from .runner import ProfileConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="GPUs seen through NVML: name, memory, clocks, power limit, "
                       "temperature, driver (exit 2 with one line when there is none)")
    p.set_defaults(func=cmd_devices)


def cmd_devices(args: argparse.Namespace, console: Console) -> int:
    from tlprof.reports.devices_view import devices_table

    from .nvml import devices_snapshot

    console.print(devices_table(devices_snapshot()))
    return 0


def profile_listeners(args: argparse.Namespace, cfg: ProfileConfig) -> list:
    from .nvtx_ranges import nvtx_listeners

    return nvtx_listeners(getattr(args, "nvtx", None), cfg.device)


def profile_extras(args: argparse.Namespace, cfg: ProfileConfig) -> list:
    from .energy import energy_extras

    return energy_extras(getattr(args, "energy", False), cfg.device)


def after_profile(args: argparse.Namespace, profile: RunDocument, console: Console) -> None:
    if args.quiet or not getattr(args, "energy", False):
        return
    from tlprof.reports.energy_view import energy_view

    view = energy_view(profile)
    if view is not None:
        console.print(view)
