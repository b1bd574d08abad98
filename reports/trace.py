"""Chrome/Perfetto trace of one measured step per run: unit and phase spans.

Reads each run's ``timeline`` (the marks of the median measured step; documents
from before it was chosen hold the last one) and never measures. Each run is a
process; forward units, backward units and the named phases are its three
threads. Open the file in https://ui.perfetto.dev or chrome://tracing.
"""

from __future__ import annotations

from pathlib import Path

from tlprof.document import Run, RunDocument, Span, save_json
from tlprof.errors import TlprofError

TRACKS = {"fwd": (1, "forward"), "bwd": (2, "backward"), "phase": (3, "phases")}


def chrome_trace(profile: RunDocument) -> dict:
    events: list[dict] = []
    for pid, (name, run) in enumerate(profile.runs.items(), start=1):
        spans = run.timeline
        if not spans:
            raise TlprofError(f"run {name!r} has no timeline of a measured step")
        title = f"{name} run" + (f", units 1–{run.freeze} frozen" if run.freeze else "")
        title += f", {step_text(run)}"
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
        "otherData": {"tool": "tlprof", "model": m.label, "device": m.device_name,
                      "precision": m.precision, "batch_size": m.batch_size,
                      "steps": {name: step_text(run) for name, run in profile.runs.items()}},
    }


def step_text(run: Run) -> str:
    """Which step the timeline shows."""
    n = len(run.step_ms.samples)
    if run.timeline_step is None:
        return f"the last of {n} measured steps"
    ms = f" ({run.timeline_step_ms:.3f} ms)" if run.timeline_step_ms is not None else ""
    return f"measured step {run.timeline_step} of {n}, the median step{ms}"


def _meta(kind: str, pid: int, tid: int, name: str) -> dict:
    return {"ph": "M", "name": kind, "pid": pid, "tid": tid, "args": {"name": name}}


def _span(span: Span, pid: int, run: str) -> dict:
    tid = TRACKS.get(span.kind, TRACKS["phase"])[0]
    args = {"run": run, "dur_ms": span.dur_ms}
    if span.unit is not None:
        args["unit"] = span.unit
    name = span.name if span.kind != "phase" else span.name.replace("_", " ")
    return {"name": name, "cat": span.kind, "ph": "X", "ts": span.start_ms * 1e3,
            "dur": span.dur_ms * 1e3, "pid": pid, "tid": tid, "args": args}


def write_trace(profile: RunDocument, path: str | Path) -> None:
    save_json(chrome_trace(profile), path)
