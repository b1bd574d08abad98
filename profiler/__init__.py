"""tlprof: per-layer time and memory of PyTorch training, and what freezing really saves.

``import tlprof`` is cheap: the public names resolve on first use, so reading a
saved run never loads torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "Profiler": "api",
    "ProfileConfig": "runner",
    "profile_model": "engine",
    "Unit": "units",
    "find_units": "units",
    "freeze": "units",
    "Stats": "stats",
    "TlprofError": "errors",
    "Label": "marks",
    "RunDocument": "document",
    "Run": "document",
    "UnitRun": "document",
    "UnitInfo": "document",
    "Meta": "document",
    "Sweep": "document",
    "RunDocumentError": "document",
    "ModelSpec": "workload",
}
__all__ = [
    "Label", "Meta", "ModelSpec", "ProfileConfig", "Profiler", "Run", "RunDocument", "RunDocumentError",
    "Stats", "Sweep", "TlprofError", "Unit", "UnitInfo", "UnitRun", "find_units", "freeze", "profile_model",
]

if TYPE_CHECKING:
    from .api import Profiler
    from .document import Meta, Run, RunDocument, RunDocumentError, Sweep, UnitInfo, UnitRun
    from .engine import profile_model
    from .errors import TlprofError
    from .marks import Label
    from .runner import ProfileConfig
    from .stats import Stats
    from .units import Unit, find_units, freeze
    from .workload import ModelSpec


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'tlprof' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
