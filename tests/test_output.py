"""What the command line prints where (issue 12): full width off a terminal, progress lines,
notes on stderr, sections in order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_docs import TINY, hand_document, run_python

from tlprof.cli import main

LONG_NAME = "encoder.layers.11.self_attention.in_projection_with_a_long_name"


def _long_docs(tmp_path: Path) -> tuple[Path, Path]:
    paths = []
    for scale, name in ((1.0, "a.json"), (1.25, "b.json")):
        doc = hand_document(cached=False)
        doc["units"][2]["name"] = LONG_NAME
        for run in doc["runs"].values():
            run["step_ms"]["samples"] = [s * 1000.123 * scale for s in run["step_ms"]["samples"]]
        path = tmp_path / name
        path.write_text(json.dumps(doc))
        paths.append(path)
    return paths[0], paths[1]


@pytest.mark.parametrize("command", ["compare", "report"])
def test_piped_output_cuts_no_name_or_number(command, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    a, b = _long_docs(tmp_path)
    argv = [command, str(a), str(b)] if command == "compare" else [command, str(a)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert LONG_NAME in out
    assert "…" not in out
    if command == "compare":
        assert "28,003" in out or "28003" in out  # the full step in A: 28 × 1000.123 ms


def test_profile_off_a_terminal_prints_a_line_per_run_and_notes_on_stderr(tmp_path, capsys):
    path = tmp_path / "run.json"
    assert main(["profile", *TINY, "--freeze", "2", "--json", str(path)]) == 0
    out, err = capsys.readouterr()
    lines = err.splitlines()
    per_run = 0 + 1 + 2 + 1  # no warm-up, the memory step, a plain and a timed step, a re-warm step
    assert any(line.startswith(f"tlprof: full run: {per_run} steps, done ") for line in lines), err
    assert any(line.startswith(f"tlprof: frozen run: {per_run} steps, done ") for line in lines), err
    assert f"profile written to {path}" in err and "written to" not in out


def test_profile_sections_are_numbered_in_order(capsys):
    assert main(["profile", *TINY, "--freeze", "2"]) == 0
    out = capsys.readouterr().out
    assert "3. Cost model" not in out and "4. The paper's claims" not in out
    assert "1. Cost model" in out and "2. The paper's claims" in out


# -- the kernels step and the ceilings ---------------------------------------------------------


def _fake_ceilings(calls: list[str]):
    from tlprof.document import Ceilings

    def measure(device, sizes=None, notify=None):
        calls.append(str(device))
        return Ceilings(str(device), "fake", {"fp32": 1.0}, 10.0, 256, 1 << 20, 1)

    return measure


def test_ceilings_are_cached_per_device_and_torch_version(tmp_path, capsys, monkeypatch):
    import torch

    from tlprof.kernels import ceilings

    monkeypatch.setenv("TLPROF_CACHE", str(tmp_path))
    calls: list[str] = []
    monkeypatch.setattr(ceilings, "measure_ceilings", _fake_ceilings(calls))
    assert main(["ceilings", "--device", "cpu"]) == 0
    assert calls == ["cpu"] and "ceilings cached in" in capsys.readouterr().err
    assert main(["ceilings", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert calls == ["cpu"] and "ceilings cached from" in err and "matmul fp32" in out
    assert main(["ceilings", "--device", "cpu", "--refresh"]) == 0
    assert calls == ["cpu", "cpu"]
    path = ceilings.cache_path(torch.device("cpu"))
    assert path.parent == tmp_path / "ceilings" and torch.__version__ in path.name
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    assert ceilings.cache_path(torch.device("cpu")) != path


def test_measuring_ceilings_says_what_it_measures():
    import torch

    from tlprof.kernels.ceilings import CeilingSizes, measure_ceilings

    said: list[str] = []
    sizes = CeilingSizes(matmul_n=64, copy_bytes=1 << 20, warmup=0, reps=1)
    measure_ceilings(torch.device("cpu"), sizes, notify=said.append)
    assert said[0] == "measuring ceilings on cpu: matmul fp32…" and "copy bandwidth" in said[-1]


def test_kernels_step_says_what_it_does_and_kineto_stays_quiet(tmp_path, capfd, monkeypatch):
    from tlprof.kernels import ceilings

    monkeypatch.setenv("TLPROF_CACHE", str(tmp_path))
    monkeypatch.delenv("TLPROF_DEBUG", raising=False)
    monkeypatch.setattr(ceilings, "measure_ceilings", _fake_ceilings([]))
    assert main(["profile", *TINY, "--kernels"]) == 0
    err = capfd.readouterr().err
    assert "tlprof: full run: counting FLOPs" in err and "tlprof: full run: kernels per unit" in err
    assert "USDT" not in err and "profiler_start" not in err
    assert main(["profile", *TINY, "--kernels", "--quiet"]) == 0
    assert capfd.readouterr().err == ""


def test_kineto_lines_only_with_tlprof_debug(capfd, monkeypatch):
    import os

    from tlprof.kernels.breakdown import quiet_stderr

    monkeypatch.delenv("TLPROF_DEBUG", raising=False)
    with quiet_stderr():
        os.write(2, b"USDT:2026 SyncActivityProfilerHandler.cpp:39] profiler_start\n")
        os.write(2, b"something else\n")
    assert capfd.readouterr().err == "something else\n"
    monkeypatch.setenv("TLPROF_DEBUG", "1")
    with quiet_stderr():
        os.write(2, b"USDT: profiler_stop\n")
    assert "USDT" in capfd.readouterr().err


def test_help_and_the_parser_load_neither_torch_nor_numpy():
    """``tlprof --help`` stays well under half a second: it never imports torch or numpy."""
    code = """
import sys
from tlprof.cli import build_parser, main
build_parser()
for argv in (["--help"], ["profile", "--help"], ["kernels", "--help"], ["ceilings", "--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "numpy", "torchvision")))
"""
    assert run_python(code).strip().splitlines()[-1] == "[]"
