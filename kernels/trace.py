"""Chrome/Perfetto trace of one measured step per run: unit and phase spans (issue 4).

Reads ``run.extra["timeline"]`` (the marks of the last measured step) and never
measures. Each run is a process; forward units, backward units and the named
phases are its three threads. Open the file in https://ui.perfetto.dev or
chrome://tracing.
"""

from __future__ import annotations

import json
from pathlib import Path

from tlprof.errors import TlprofError
from tlprof.session import Profile

TRACKS = {"fwd": (1, "forward"), "bwd": (2, "backward"), "phase": (3, "phases")}


def chrome_trace(profile: Profile) -> dict:
    events: list[dict] = []
    for pid, (name, run) in enumerate(profile.runs.items(), start=1):
        spans = run.extra.get("timeline")
        if not spans:
            raise TlprofError(f"run {name!r} has no timeline of a measured step")
        title = f"{name} run" + (f", units 1–{run.freeze} frozen" if run.freeze else "")
        events.append(_meta("process_name", pid, 0, title))
        events.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0,
                       "args": {"sort_index": pid}})
        for tid, track in TRACKS.values():
            events.append(_meta("thread_name", pid, tid, track))
        events += [_span(span, pid, name) for span in spans]
    m = profile.meta
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"tool": "tlprof", "model": m.get("arch") or m.get("model"),
                      "device": m.get("device_name"), "precision": m.get("precision"),
                      "batch_size": m.get("batch_size")},
    }


def _meta(kind: str, pid: int, tid: int, name: str) -> dict:
    return {"ph": "M", "name": kind, "pid": pid, "tid": tid, "args": {"name": name}}


def _span(span: dict, pid: int, run: str) -> dict:
    kind = span["kind"]
    tid = TRACKS.get(kind, TRACKS["phase"])[0]
    args = {"run": run, "dur_ms": span["dur_ms"]}
    if "unit" in span:
        args["unit"] = span["unit"]
    name = span["name"] if kind != "phase" else str(span["name"]).replace("_", " ")
    return {"name": name, "cat": kind, "ph": "X", "ts": span["start_ms"] * 1e3,
            "dur": span["dur_ms"] * 1e3, "pid": pid, "tid": tid, "args": args}


def write_trace(profile: Profile, path: str | Path) -> None:
    Path(path).write_text(json.dumps(chrome_trace(profile)) + "\n")
