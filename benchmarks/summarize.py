"""Print a short summary table of the run documents given on the command line, then the issue-9
graph targets (graph_stages.py and graph_agreement.py results) among them.

Columns: the full and frozen runs' step medians and their ratio, each run's overhead ratio
(instrumented / plain), the full run's GPU-wait share (``launch.gpu_wait_share`` median: the share
of its GPU time in host-paced intervals; CUDA only, "-" elsewhere) and the peak allocated memory."""

from __future__ import annotations

import json
import sys
from typing import Any

from graph_agreement import KIND as GRAPH_AGREEMENT
from graph_agreement import _f
from graph_stages import KIND as GRAPH_STAGES

from tlprof.document import Run, RunDocument, RunDocumentError


def main(paths: list[str]) -> int:
    print(f"{'run document':<32} {'device':<28} {'prec':<5} {'batch':>5} {'full ms':>9} "
          f"{'frozen ms':>9} {'ratio':>6} {'ovh full':>8} {'ovh frz':>7} {'gpu wait':>8} {'peak MiB':>9}")
    bench: list[tuple[str, dict[str, Any]]] = []
    for path in paths:
        try:
            p = RunDocument.load(path)
        except RunDocumentError:
            found = _bench(path)  # other JSON under $OUT (traces, ceilings, the graph targets)
            if found:
                bench.append((path, found))
            continue
        full, frozen = p.runs.get("full"), p.runs.get("frozen")
        ratio = frozen.step_ms.median / full.step_ms.median if full and frozen else float("nan")
        peak = max((r.memory.allocator.peak_allocated_bytes if r.memory.allocator else 0)
                   for r in p.runs.values()) / 2**20
        print(f"{path.rsplit('/', 1)[-1]:<32} {p.meta.device_name[:28]:<28} "
              f"{p.meta.precision:<5} {p.meta.batch_size:>5} "
              f"{full.step_ms.median if full else float('nan'):>9.2f} "
              f"{frozen.step_ms.median if frozen else float('nan'):>9.2f} {ratio:>6.3f} "
              f"{full.overhead_ratio if full else float('nan'):>8.3f} "
              f"{frozen.overhead_ratio if frozen else float('nan'):>7.3f} {_f(_gpu_wait(full)):>8} "
              f"{peak:>9.0f}")
    for path, doc in bench:
        print(graph_line(path, doc))
    return 0


def _bench(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("kind") in (GRAPH_STAGES, GRAPH_AGREEMENT) else None


def _gpu_wait(run: Run | None) -> float | None:
    """The run's median share of GPU time in host-paced intervals (None without a launch section)."""
    launch = run.launch if run else None
    return launch.gpu_wait_share.median if launch and launch.gpu_wait_share.samples else None


def graph_line(path: str, d: dict[str, Any]) -> str:
    """One line per graph-target result: the figures, the target, met or not (or a rehearsal)."""
    name = path.rsplit("/", 1)[-1]
    tag = "rehearsal, not a measurement" if d.get("rehearsal") else ("met" if d.get("within_target")
                                                                      else "NOT met")
    if d["kind"] == GRAPH_STAGES:
        per = " ".join(f"{s['stage']} {_f(s['ratio'])}" for s in d["stages"] if s["stage"] != "forward")
        return (f"{name}: graph per-stage fwd tlprof/alone min {_f(d['ratio_min'])} max {_f(d['ratio_max'])} "
                f"({per}); target within {d['target']:.0%}: {tag}")
    s = d["summary"]
    return (f"{name}: graph kernel agreement min {_f(d['graph_min'])} (fwd {_f(s['graph_fwd']['min'])}, "
            f"bwd {_f(s['graph_bwd']['min'])}, {d['graph_under']} under {d['target']}); eager min fwd "
            f"{_f(s['eager_fwd']['min'])} bwd {_f(s['eager_bwd']['min'])}; target >= {d['target']} for "
            f"units >= {d['min_ms']} ms: {tag}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
