"""How a run was made, as every report and comparison states it. Reads a run's meta (a dict)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Meta = dict[str, Any]


def _shape(m: Meta) -> str | None:
    return "×".join(str(d) for d in m["input_shape"]) if m.get("input_shape") else None


def _yes_no(key: str) -> Callable[[Meta], str | None]:
    return lambda m: None if m.get(key) is None else ("yes" if m[key] else "no")


def _steps(m: Meta) -> str | None:
    if m.get("steps") is None:
        return None
    return f"{m['steps']} measured + {m.get('warmup', '?')} warm-up per run"


def _device(m: Meta) -> str | None:
    if not m.get("device"):
        return None
    return f"{m['device']} ({m['device_name']})" if m.get("device_name") else str(m["device"])


# (name, how to read it from meta); a setting the meta lacks is left out
SETTINGS: tuple[tuple[str, Callable[[Meta], Any]], ...] = (
    ("model", lambda m: m.get("arch") or m.get("model")),
    ("batch", lambda m: m.get("batch_size")),
    ("input", _shape),
    ("precision", lambda m: m.get("precision")),
    ("channels-last", _yes_no("channels_last")),
    ("optimizer", lambda m: m.get("optimizer")),
    ("lr", lambda m: m.get("lr")),
    ("steps", _steps),
    ("freeze", lambda m: m.get("freeze")),
    ("frozen BN", lambda m: m.get("frozen_bn")),
    ("threads", lambda m: m.get("cpu_threads")),
    ("device", _device),
    ("torch", lambda m: m.get("torch_version")),
    ("tlprof", lambda m: m.get("tlprof_version")),
)
# settings that make two runs measure different work, not just on another day
SAME_WORK = ("model", "batch", "input", "precision", "channels-last", "optimizer", "freeze",
             "frozen BN", "threads", "device")


def settings(meta: Meta) -> list[tuple[str, str]]:
    out = []
    for name, read in SETTINGS:
        value = read(meta)
        if value is not None:
            out.append((name, str(value)))
    return out


def settings_text(meta: Meta) -> str:
    return " · ".join(f"{name} {value}" for name, value in settings(meta))


def differences(a: Meta, b: Meta) -> list[tuple[str, str, str]]:
    """Every setting whose value differs between two runs: (name, in A, in B)."""
    out = []
    for name, read in SETTINGS:
        va, vb = read(a), read(b)
        if va != vb:
            out.append((name, "-" if va is None else str(va), "-" if vb is None else str(vb)))
    return out
