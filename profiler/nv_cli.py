"""Commands and profile options for NVIDIA tools: ``tlprof devices``, ``--nvtx``, ``--energy``."""

from __future__ import annotations

import argparse

from rich.console import Console

from .energy import energy_extras
from .nvml import cmd_devices
from .nvtx_ranges import nvtx_listeners
from .runner import ProfileConfig
from .session import Profile


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="GPUs seen through NVML: name, memory, clocks, power limit, "
                       "temperature, driver (exit 2 with one line when there is none)")
    p.set_defaults(func=cmd_devices)


def profile_listeners(args: argparse.Namespace, cfg: ProfileConfig) -> list:
    return nvtx_listeners(getattr(args, "nvtx", None), cfg.device)


def profile_extras(args: argparse.Namespace, cfg: ProfileConfig) -> list:
    return energy_extras(getattr(args, "energy", False), cfg.device)


def after_profile(args: argparse.Namespace, profile: Profile, console: Console) -> None:
    if args.quiet or not getattr(args, "energy", False):
        return
    from .energy_view import energy_view

    view = energy_view(profile)
    if view is not None:
        console.print(view)
