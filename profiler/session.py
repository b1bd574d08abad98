"""The run document (``tlprof.run/1``): what one profile measured, every sample kept.

Renderers read this and never measure; a saved document re-renders without
re-running (after pyinstrument's session).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .marks import PHASES, StepSample
from .stats import Stats

SCHEMA = "tlprof.run/1"


def finite(value: Any) -> Any:
    """NaN and ±inf become None, so the document is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


class RunDocumentError(ValueError):
    """A run document that cannot be read: missing, corrupt, truncated or of another schema."""


@dataclass
class UnitRun:
    index: int
    fwd_ms: Stats
    bwd_ms: Stats
    saved_bytes: int = 0
    param_bytes: int = 0
    grad_bytes: int = 0
    optimizer_state_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # fields added by other parts

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "fwd_ms": self.fwd_ms.to_dict(),
            "bwd_ms": self.bwd_ms.to_dict(),
            "saved_bytes": self.saved_bytes,
            "param_bytes": self.param_bytes,
            "grad_bytes": self.grad_bytes,
            "optimizer_state_bytes": self.optimizer_state_bytes,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict) -> UnitRun:
        known = {"index", "fwd_ms", "bwd_ms", "saved_bytes", "param_bytes", "grad_bytes",
                 "optimizer_state_bytes"}
        return cls(
            index=int(d["index"]),
            fwd_ms=Stats.from_dict(d["fwd_ms"]),
            bwd_ms=Stats.from_dict(d["bwd_ms"]),
            saved_bytes=int(d.get("saved_bytes", 0)),
            param_bytes=int(d.get("param_bytes", 0)),
            grad_bytes=int(d.get("grad_bytes", 0)),
            optimizer_state_bytes=int(d.get("optimizer_state_bytes", 0)),
            extra={k: v for k, v in d.items() if k not in known},
        )


@dataclass
class Run:
    """One regime (full, frozen...) of a profile."""

    mode: str
    freeze: int
    step_ms: Stats
    phases: dict[str, Stats]  # keys "<phase>_ms"
    units: list[UnitRun]
    plain_step_ms: Stats
    memory: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def overhead_ratio(self) -> float:
        plain = self.plain_step_ms.median
        return self.step_ms.median / plain if plain > 0 else float("nan")

    @classmethod
    def from_samples(
        cls, mode: str, freeze: int, samples: list[StepSample], plain_ms: list[float]
    ) -> Run:
        n = len(samples[0].fwd_ms)
        units = [
            UnitRun(
                index=i + 1,
                fwd_ms=Stats([s.fwd_ms[i] for s in samples]),
                bwd_ms=Stats([s.bwd_ms[i] for s in samples]),
            )
            for i in range(n)
        ]
        phases = {f"{p}_ms": Stats([s.phases_ms[p] for s in samples]) for p in PHASES}
        return cls(mode, freeze, Stats([s.step_ms for s in samples]), phases, units, Stats(plain_ms))

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "freeze": self.freeze,
            "step_ms": self.step_ms.to_dict(),
            "phases": {k: v.to_dict() for k, v in self.phases.items()},
            "units": [u.to_dict() for u in self.units],
            "overhead": {"plain_step_ms": self.plain_step_ms.to_dict(), "ratio": self.overhead_ratio},
            "memory": self.memory,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Run:
        known = {"mode", "freeze", "step_ms", "phases", "units", "overhead", "memory"}
        return cls(
            mode=d["mode"],
            freeze=int(d["freeze"]),
            step_ms=Stats.from_dict(d["step_ms"]),
            phases={k: Stats.from_dict(v) for k, v in d["phases"].items()},
            units=[UnitRun.from_dict(u) for u in d["units"]],
            plain_step_ms=Stats.from_dict(d["overhead"]["plain_step_ms"]),
            memory=dict(d.get("memory", {})),
            extra={k: v for k, v in d.items() if k not in known},
        )


@dataclass
class Profile:
    meta: dict[str, Any]
    units: list[dict[str, Any]]
    runs: dict[str, Run]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "meta": self.meta,
            "units": self.units,
            "runs": {name: run.to_dict() for name, run in self.runs.items()},
            **self.extra,
        }

    @classmethod
    def from_dict(cls, d: Any) -> Profile:
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            found = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise RunDocumentError(f"not a tlprof run document (schema {found!r}, expected {SCHEMA!r})")
        try:
            return cls(
                meta=dict(d["meta"]),
                units=list(d["units"]),
                runs={name: Run.from_dict(r) for name, r in d["runs"].items()},
                extra={k: v for k, v in d.items() if k not in {"schema", "meta", "units", "runs"}},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RunDocumentError(f"incomplete tlprof run document: missing or bad {exc}") from exc

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(finite(self.to_dict()), indent=1, allow_nan=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        return cls.from_dict(read_json_document(path))


def read_json_document(path: str | Path) -> Any:
    """Parsed JSON, or one RunDocumentError saying what is wrong with the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RunDocumentError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise RunDocumentError(f"{path} is not a JSON text file (binary or corrupt)") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunDocumentError(f"{path} is not valid JSON (truncated or corrupt): {exc}") from exc
