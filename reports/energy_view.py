"""The ``--energy`` part of the profile report: reads the run document, never measures."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tlprof.document import RunDocument
from tlprof.reports.text import fmt_opt

TOP_UNITS = 10


def energy_table(profile: RunDocument) -> Table | None:
    runs = {name: r.energy for name, r in profile.runs.items() if r.energy}
    if not runs:
        return None
    table = Table(title="Energy per step (NVML total-energy counter, plain steps)")
    table.add_column("")
    for name in runs:
        table.add_column(name, justify="right")
    rows = (
        ("energy per step (J)", "energy_per_step_j", ".3f"),
        ("average power (W)", "avg_power_w", ".1f"),
        ("steps in the window", "steps", ""),
        ("window (s)", "window_s", ".2f"),
        ("counter tick (ms)", "counter_tick_s", ".1f"),
        ("resolution (± share)", "resolution", ".1%"),
    )
    for label, key, fmt in rows:
        scale = 1000 if key == "counter_tick_s" else 1
        table.add_row(label, *[fmt_opt(None if getattr(e, key) is None else getattr(e, key) * scale, fmt)
                               for e in runs.values()])
    return table


def unit_estimate_table(profile: RunDocument) -> Table | None:
    names = [n for n, r in profile.runs.items() if r.energy]
    if not names:
        return None
    first = profile.runs[names[0]]
    order = sorted(range(len(first.units)),
                   key=lambda i: -(first.units[i].energy_estimate_j or 0.0))
    table = Table(title=f"Per-unit energy, ESTIMATE: time share × measured J/step "
                        f"(top {TOP_UNITS} of the {names[0]} run; all units in the JSON)")
    table.add_column("#", justify="right")
    table.add_column("unit")
    for name in names:
        table.add_column(f"{name}\nmJ (estimate)", justify="right")
    for i in order[:TOP_UNITS]:
        cells = [profile.runs[n].units[i].energy_estimate_j for n in names]
        table.add_row(str(i + 1), profile.units[i].name,
                      *[fmt_opt(None if c is None else c * 1000, ".1f") for c in cells])
    return table


def energy_view(profile: RunDocument) -> RenderableType | None:
    energy = energy_table(profile)
    if energy is None:
        return None
    parts: list[RenderableType] = [energy]
    full, frozen = profile.runs.get("full"), profile.runs.get("frozen")
    if full and frozen and full.energy and frozen.energy and full.energy.energy_per_step_j:
        ratio = (frozen.energy.energy_per_step_j or float("nan")) / full.energy.energy_per_step_j
        parts.append(Text(f"frozen/full energy per step: {ratio:.3f} (measured)", style="bold"))
    for name, w in profile.warnings():
        if w.part == "energy":
            parts.append(Text(f"warning ({name}): {w.text}", style="yellow"))
    units = unit_estimate_table(profile)
    if units is not None:
        parts.append(units)
    return Group(*parts)
