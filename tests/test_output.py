"""What the command line prints where (issue 12): full width off a terminal, progress lines,
notes on stderr, sections in order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_docs import hand_document

from tlprof.cli import main

MODELS = Path(__file__).parent / "report_models.py"
TINY = ["--model", f"{MODELS}:staged", "--input-shape", "3,8,8", "--device", "cpu",
        "--batch-size", "2", "--steps", "1", "--warmup", "0"]
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
    assert any(line.startswith("tlprof: full run: 3 steps in ") for line in lines), err
    assert any(line.startswith("tlprof: frozen run: 3 steps in ") for line in lines), err
    assert f"profile written to {path}" in err and "written to" not in out


def test_profile_sections_are_numbered_in_order(capsys):
    assert main(["profile", *TINY, "--freeze", "2", "--quiet"]) == 0
    assert main(["profile", *TINY, "--freeze", "2"]) == 0
    out = capsys.readouterr().out
    assert "3. Cost model" not in out and "4. The paper's claims" not in out
    assert "1. Cost model" in out and "2. The paper's claims" in out
