"""The command line: the JSON contract, and one clear line for every bad input."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
from cli_helpers import MODELS, SMALL, one_error_line

from tlprof.cli import main


def test_unknown_arch_lists_close_matches(capsys):
    line = one_error_line(capsys, ["profile", "--arch", "resnet05"])
    assert "unknown arch 'resnet05'" in line and "resnet50" in line


def test_freeze_out_of_range_says_how_many_units(capsys):
    line = one_error_line(capsys, ["profile", "--model", f"{MODELS}:mlp", *SMALL, "--freeze", "3"])
    assert "3 units" in line and "between 0 and 2" in line


@pytest.mark.parametrize("spec, says", [
    ("nocolon", "expected MODULE:CALLABLE"),
    ("no/such/file.py:f", "no such file"),
    ("no_such_module_xyz:f", "cannot import no_such_module_xyz"),
    (f"{MODELS}:missing", "no callable named 'missing'"),
    (f"{MODELS}:not_a_module", "not an nn.Module"),
])
def test_bad_model_spec(capsys, spec, says):
    assert says in one_error_line(capsys, ["profile", "--model", spec, *SMALL])


def test_failing_factory_shows_its_error(capsys):
    line = one_error_line(capsys, ["profile", "--model", f"{MODELS}:failing_factory", *SMALL])
    assert "the factory failed: ValueError: factory refuses" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(capsys):
    line = one_error_line(capsys, ["profile", "--arch", "resnet18", "--device", "cuda"])
    assert "CUDA is not available" in line and "--device cpu" in line


def test_input_shape_the_model_rejects_shows_the_models_error(capsys):
    argv = ["profile", "--model", f"{MODELS}:mlp", *SMALL[2:], "--input-shape", "7"]
    line = one_error_line(capsys, argv)
    assert "rejects input shape (7,)" in line and "shapes cannot be multiplied" in line


def test_batch_size_zero(capsys):
    line = one_error_line(capsys, ["profile", "--model", f"{MODELS}:mlp", *SMALL, "--batch-size", "0"])
    assert "--batch-size must be at least 1" in line


def test_out_of_memory_names_the_batch_size(capsys):
    argv = ["profile", "--model", f"{MODELS}:convnet", "--input-shape", "3,6,6",
            "--device", "cpu", "--batch-size", str(10**13)]
    line = one_error_line(capsys, argv)
    assert f"out of memory at batch size {10**13}" in line
    assert f"--batch-size {10**13 // 2}" in line


def test_profile_writes_the_run_document(tmp_path, capsys):
    out = tmp_path / "run.json"
    code = main(["profile", "--model", f"{MODELS}:mlp", *SMALL, "--freeze", "1",
                 "--json", str(out), "--quiet"])
    assert code == 0 and capsys.readouterr().out == ""
    doc = json.loads(out.read_text())
    assert doc["schema"] == "tlprof.run/2"
    for key in ("model", "device", "device_name", "torch_version", "batch_size", "input_shape",
                "precision", "freeze", "steps", "warmup", "optimizer", "created"):
        assert key in doc["meta"], key
    assert doc["meta"]["freeze"] == 1 and doc["meta"]["input_shape"] == [8]
    assert [u["index"] for u in doc["units"]] == [1, 2, 3]
    assert set(doc["units"][0]) >= {"index", "name", "modules", "stage", "block", "params", "trainable"}
    assert set(doc["runs"]) == {"full", "frozen"}
    for run in doc["runs"].values():
        assert len(run["step_ms"]["samples"]) == 2
        assert set(run["phases_ms"]) == {"loss_fwd", "loss_bwd", "optimizer", "zero_grad", "other"}
        assert run["overhead_ratio"] > 0 and len(run["plain_step_ms"]["samples"]) == 2
        assert run["name"] in ("full", "frozen") and isinstance(run["warnings"], list)
        unit = run["units"][0]
        assert set(unit) >= {"index", "fwd_ms", "bwd_ms", "saved_bytes", "param_bytes",
                             "grad_bytes", "optimizer_state_bytes"}
        assert set(unit["fwd_ms"]) == {"median", "iqr", "samples"}
    assert doc["runs"]["frozen"]["units"][0]["bwd_ms"]["median"] == 0.0


def test_layers_lists_resnet50_units(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    assert main(["layers", "--arch", "resnet50", "--image-size", "64", "--freeze", "45"]) == 0
    out = capsys.readouterr().out
    assert "50 units of resnet50" in out and "bn3, downsample.0, downsample.1" in out


def test_console_script_runs_the_profile_and_prints_the_report(tmp_path):
    result = subprocess.run(
        ["tlprof", "profile", "--model", f"{MODELS}:planted_delays", "--input-shape", "16",
         "--device", "cpu", "--steps", "2", "--warmup", "1", "--freeze", "2"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "instrumented / plain" in result.stdout and "frozen/full step time" in result.stdout


def test_a_model_failing_mid_run_is_one_line(capsys):
    code = main(["profile", "--model", f"{MODELS}:explodes_in_training", *SMALL])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "RuntimeError: planted failure" in err


def test_json_path_is_checked_before_measuring(capsys, tmp_path):
    line = one_error_line(capsys, ["profile", "--model", f"{MODELS}:mlp", *SMALL,
                                "--json", str(tmp_path / "missing" / "run.json")])
    assert "does not exist" in line


def test_batch_of_one_with_batchnorm_is_one_line(capsys):
    argv = ["profile", "--arch", "resnet18", "--image-size", "32", "--batch-size", "1",
            "--steps", "1", "--warmup", "0", "--device", "cpu"]
    assert "too small for BatchNorm" in one_error_line(capsys, argv)


def test_option_choices_and_defaults_are_the_configs():
    from tlprof import defaults
    from tlprof.cli import build_parser
    from tlprof.distributed import DEFAULT_TIMEOUT_S
    from tlprof.runner import ProfileConfig

    profile = build_parser()._subparsers._group_actions[0].choices["profile"]
    options = {a.dest: a for a in profile._actions}
    assert tuple(options["precision"].choices) == defaults.PRECISIONS
    assert tuple(options["optimizer"].choices) == defaults.OPTIMIZERS
    assert tuple(options["runs"].choices) == defaults.RUN_CHOICES == (*defaults.RUNS, "both", "all")
    assert options["ddp_timeout"].default == defaults.DDP_TIMEOUT_S == DEFAULT_TIMEOUT_S
    for precision in defaults.PRECISIONS:
        ProfileConfig(precision=precision).validate()
    for optimizer in defaults.OPTIMIZERS:
        ProfileConfig(optimizer=optimizer).validate()
    for runs in defaults.RUN_SETS.values():
        ProfileConfig(runs=runs, freeze=1).validate()


@pytest.mark.parametrize(("exc", "default", "line"), [
    (RuntimeError("\n  shapes differ\nat line 3"), None, "shapes differ"),
    (RuntimeError(""), None, "RuntimeError"),
    (RuntimeError("  "), "", ""),
])
def test_first_line_of_an_error(exc, default, line):
    from tlprof.errors import first_line

    assert first_line(exc, default) == line
