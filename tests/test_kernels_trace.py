"""The step trace is Chrome trace JSON, one span per unit per pass; the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tlprof.cli import main

MODELS = str(Path(__file__).parent / "kernel_models.py")
SMALL = ["--input-shape", "3,8,8", "--steps", "1", "--warmup", "1", "--device", "cpu", "--quiet"]
FREEZE = 1
N_UNITS = 3


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("kernels")
    doc, trace = out / "run.json", out / "trace.json"
    argv = ["profile", "--model", f"{MODELS}:convnet", *SMALL, "--freeze", str(FREEZE),
            "--kernels", "--json", str(doc), "--trace", str(trace)]
    assert main(argv) == 0
    return doc, trace


def test_trace_is_chrome_trace_with_one_span_per_unit_per_pass(profiled):
    data = json.loads(profiled[1].read_text())
    events = data["traceEvents"]
    assert all(e["ph"] in ("X", "M") and isinstance(e["pid"], int) for e in events)
    spans = [e for e in events if e["ph"] == "X"]
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in spans)
    names = {e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert len(names) == 2
    for pid, trainable_from in ((1, 1), (2, FREEZE + 1)):
        fwd = [e["args"]["unit"] for e in spans if e["pid"] == pid and e["cat"] == "fwd"]
        bwd = [e["args"]["unit"] for e in spans if e["pid"] == pid and e["cat"] == "bwd"]
        assert fwd == list(range(1, N_UNITS + 1))
        assert sorted(bwd) == list(range(trainable_from, N_UNITS + 1))
        phases = {e["name"] for e in spans if e["pid"] == pid and e["cat"] == "phase"}
        assert {"zero grad", "loss fwd", "loss bwd", "optimizer"} <= phases


def test_run_document_carries_kernel_fields(profiled):
    doc = json.loads(profiled[0].read_text())
    for run in doc["runs"].values():
        assert run["kernels"]["kernel_agreement"] > 0
        assert run["kernels"]["ceilings"]["copy_gbps"] > 0
        for unit in run["units"]:
            assert {"flops_fwd", "flops_bwd", "bytes_fwd", "bytes_bwd", "roofline",
                    "kernel_fwd_ms", "kernels_fwd"} <= set(unit["kernels"])


def test_kernels_report(profiled, capsys):
    assert main(["kernels", str(profiled[0]), "--run", "frozen"]) == 0
    out = capsys.readouterr().out
    assert "frozen run per unit" in out and "full run" not in out and "kernel agreement" in out


def test_kernels_report_needs_kernel_data(tmp_path, capsys):
    doc = tmp_path / "plain.json"
    argv = ["profile", "--model", f"{MODELS}:convnet", *SMALL, "--json", str(doc)]
    assert main(argv) == 0
    assert main(["kernels", str(doc)]) == 2
    assert "profile with --kernels" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["markdown", "csv", "json"])
def test_kernels_report_formats(profiled, fmt, capsys, tmp_path):
    assert main(["kernels", str(profiled[0]), "--format", fmt]) == 0
    out = capsys.readouterr().out
    if fmt == "json":
        data = json.loads(out)
        assert data["schema"] == "tlprof.kernels/1" and set(data["runs"]) == {"full", "frozen"}
        unit = data["runs"]["full"]["units"][0]
        assert unit["passes"][0]["pass"] == "fwd" and unit["passes"][0]["flops"] > 0
    elif fmt == "csv":
        header, *rows = [line for line in out.splitlines() if not line.startswith("#")]
        assert header.startswith("run,index,unit,pass,flops")
        frozen_bwd = [r for r in rows if r.startswith("frozen,") and ",bwd," in r]
        assert len([r for r in rows if r.startswith("full,")]) == 2 * N_UNITS
        assert len(frozen_bwd) == N_UNITS - FREEZE
    else:
        assert "## full run per unit" in out and "| --- |" in out.replace("---:", "---")
    path = tmp_path / f"kernels.{fmt}"
    assert main(["kernels", str(profiled[0]), "--format", fmt, "-o", str(path)]) == 0
    assert path.read_text() == out


def test_trace_is_the_median_step_and_says_so(tmp_path):
    import time

    import torch

    from tlprof import Profiler
    from tlprof.reports.trace import chrome_trace

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    prof = Profiler(model, example=torch.randn(1, 4), warmup=0)
    sleeps = iter([0.0, 0.0, 0.06, 0.0, 0.03, 0.0, 0.01])  # memory, plain, then timed/plain in turn
    with prof:
        for pause in sleeps:
            with prof.step():
                model(torch.randn(2, 4)).sum().backward()
                prof.begin("other")
                time.sleep(pause)
    path = tmp_path / "user.json"
    prof.document("user").save(path)
    from tlprof import RunDocument

    run = RunDocument.load(path).runs["user"]
    assert run.timeline_step == 2 and run.timeline_step_ms == sorted(run.step_ms.samples)[1]
    other = [s for s in run.timeline if s.name == "other"][-1]
    assert 25 <= other.dur_ms < 55  # the 30 ms step, not the last (10 ms) one
    trace = chrome_trace(RunDocument.load(path))
    assert "measured step 2 of 3, the median step" in trace["otherData"]["steps"]["user"]
    names = [e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "process_name"]
    assert "median step" in names[0]
