"""tlprof: per-layer time and memory of PyTorch training, and what freezing really saves."""

from __future__ import annotations

from .api import Profiler
from .errors import TlprofError
from .runner import ProfileConfig, profile_model
from .session import Profile, Run, UnitRun
from .stats import Stats
from .units import Unit, find_units, freeze
from .workload import ModelSpec

__all__ = [
    "ModelSpec", "Profile", "ProfileConfig", "Profiler", "Run", "Stats", "TlprofError", "Unit", "UnitRun",
    "find_units", "freeze", "profile_model",
]
__version__ = "0.1.0"
