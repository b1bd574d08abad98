"""The model set-up the benchmarks share: what ``tlprof profile`` does before a run's steps.

``prepare`` resolves the device, places the model (``tlprof.engine._place``: device, then
channels-last), builds the workload, finds the units, sets the precision's backend flags and
prepares one run (units 1..n_frozen frozen, a fresh optimizer): the order of
``tlprof.engine._profile_placed``. ``mlp`` is the 40-layer model of ``overhead.py --model mlp``
and ``hook_cost.py``.
"""

from __future__ import annotations

from torch import nn

from tlprof import ProfileConfig, find_units
from tlprof.engine import _place
from tlprof.runner import RunContext, make_workload, prepare_run, resolve_device, set_precision_flags

MLP_LAYERS, MLP_WIDTH = 40, 256


def mlp() -> nn.Module:
    """40 × (Linear(256, 256), ReLU): input (256,)."""
    return nn.Sequential(*[nn.Sequential(nn.Linear(MLP_WIDTH, MLP_WIDTH), nn.ReLU())
                           for _ in range(MLP_LAYERS)])


def prepare(model: nn.Module, cfg: ProfileConfig, run: str = "full", n_frozen: int = 0) -> RunContext:
    """``model`` placed and flagged as ``tlprof profile`` does for ``cfg``, and its run ``run``
    prepared with units 1..``n_frozen`` frozen (0: every unit trains). ``cfg`` is resolved for its
    device here."""
    device = resolve_device(cfg.device)
    cfg = cfg.resolved(device.type)
    _place(model, device, cfg.channels_last)
    work = make_workload(model, cfg, device)
    units = find_units(model, work.example())
    set_precision_flags(cfg.precision, device)
    return prepare_run(model, units, work, cfg, run, n_frozen)
