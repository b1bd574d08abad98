"""Files (issue 12): output paths checked before measuring; run files with impossible samples refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli_helpers import MODELS, SMALL, one_error_line
from report_docs import hand_document

from tlprof import RunDocument, RunDocumentError


@pytest.mark.parametrize("option", ["--json", "--trace"])
def test_a_folder_as_output_is_refused_before_measuring(option, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("tlprof.engine.profile_model", _never_measures)
    line = one_error_line(capsys, ["profile", "--model", f"{MODELS}:mlp", *SMALL, option, tmp_path])
    assert f"{option} {tmp_path}: is a folder" in line


def test_an_unwritable_existing_file_is_refused_before_measuring(capsys, tmp_path, monkeypatch):
    target = tmp_path / "run.json"
    target.write_text("{}")
    target.chmod(0o444)
    real_access = os.access
    # root may write anything: let os.access answer as it would for a user
    monkeypatch.setattr("tlprof.cli_args.os.access",
                        lambda p, mode: False if Path(p) == target else real_access(p, mode))
    monkeypatch.setattr("tlprof.engine.profile_model", _never_measures)
    line = one_error_line(capsys, ["profile", "--model", f"{MODELS}:mlp", *SMALL, "--json", target])
    assert "exists and is not writable" in line


def test_ceilings_json_folder_is_refused_before_measuring(capsys, tmp_path):
    assert "is a folder" in one_error_line(capsys, ["ceilings", "--device", "cpu", "--json", tmp_path])


def _never_measures(*_args, **_kwargs):
    raise AssertionError("measured before checking the output path")


# -- impossible samples ----------------------------------------------------------------------


def _with(edit) -> dict:
    doc = hand_document()
    edit(doc)
    return doc


BAD = {
    "nan step": (lambda d: d["runs"]["frozen"]["step_ms"].update(samples=[18.0, None, 18.0]),
                 "runs.frozen.step_ms: a sample is not a number"),
    "negative unit": (lambda d: d["runs"]["frozen"]["units"][3]["bwd_ms"].update(samples=[-0.773]),
                      "runs.frozen.units[3].bwd_ms: sample -0.773 is negative"),
    "negative phase": (lambda d: d["runs"]["full"]["phases"]["optimizer_ms"].update(samples=[-1.0]),
                       "runs.full.phases_ms.optimizer: sample -1 is negative"),
    "infinite plain": (lambda d: d["runs"]["full"]["overhead"]["plain_step_ms"].update(samples=[1e999]),
                       "runs.full.plain_step_ms: sample inf is not finite"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_run_with_impossible_samples_is_refused_in_one_line(case, capsys, tmp_path):
    edit, says = BAD[case]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(_with(edit)))  # 1e999 is written as Infinity
    with pytest.raises(RunDocumentError, match=says.replace("[", r"\[").replace("]", r"\]")):
        RunDocument.load(path)
    line = one_error_line(capsys, ["report", path])
    assert says in line and str(path) in line
    assert says in one_error_line(capsys, ["kernels", path])


def test_a_plain_step_that_was_not_measured_still_loads(tmp_path):
    """``Run.plain_step_ms`` is ``[NaN]``, saved as ``[null]``, when no plain step ran."""
    path = tmp_path / "run.json"
    path.write_text(json.dumps(_with(
        lambda d: d["runs"]["full"]["overhead"]["plain_step_ms"].update(samples=[None]))))
    assert RunDocument.load(path).runs["full"].step_ms.median == 28.0
