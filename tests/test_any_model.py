"""Integer inputs, autocast's weight casts, compiled models, modules from the current folder (#11)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from tlprof import ProfileConfig, TlprofError, profile_model
from tlprof.cli import main

from models import compiled_mlp, convnet, mlp, tiny_gpt

MODELS = str(Path(__file__).parent / "models.py")


def test_a_tiny_gpt_profiles_frozen_from_token_ids(tmp_path):
    path = tmp_path / "gpt.json"
    argv = ["profile", "--model", f"{MODELS}:tiny_gpt", "--input-dtype", "int64", "--input-max", "50",
            "--input-shape", "8", "--loss", "ce", "--freeze", "5", "--device", "cpu", "--steps", "2",
            "--warmup", "1", "--quiet", "--json", str(path)]
    assert main(argv) == 0
    doc = json.loads(path.read_text())
    names = [u["name"] for u in doc["units"]]
    assert names == ["tok"] + [f"blocks.{b}.{m}" for b in (0, 1)
                               for m in ("attn.qkv", "attn.proj", "mlp.0", "mlp.2")] + ["head"]
    assert doc["meta"]["inputs"] == [{"shape": [8], "dtype": "int64"}] and doc["meta"]["num_classes"] == 50
    frozen = doc["runs"]["frozen"]["units"]
    assert all(u["bwd_ms"]["median"] == 0 for u in frozen[:5])
    assert all(u["bwd_ms"]["median"] > 0 for u in frozen[5:])


def test_token_ids_default_to_the_embedding_table_and_need_a_range_otherwise():
    cfg = ProfileConfig(batch_size=2, input_shape=(8,), device="cpu", steps=1, warmup=0,
                        input_dtype="int64", loss="ce")
    assert profile_model(tiny_gpt(), cfg).meta.input_max is None  # the table's 50 rows, no error
    with pytest.raises(TlprofError, match="needs --input-max"):
        profile_model(mlp(), cfg)


def test_layers_takes_integer_inputs(capsys):
    assert main(["layers", "--model", f"{MODELS}:tiny_gpt", "--input-dtype", "int64",
                 "--input-shape", "8"]) == 0
    assert "10 units" in capsys.readouterr().out


def _saved(precision: str):
    cfg = ProfileConfig(batch_size=2, input_shape=(3, 6, 6), device="cpu", steps=1, warmup=0,
                        precision=precision)
    return profile_model(convnet(), cfg).runs["full"]


def test_bf16_saved_activations_exclude_autocast_weight_copies():
    fp32, bf16 = _saved("fp32"), _saved("bf16")
    for a, b in zip(fp32.units, bf16.units):
        assert b.saved_bytes <= a.saved_bytes
    assert bf16.units[0].saved_bytes > 0
    casts = [u.weight_cast_bytes for u in bf16.units]
    weights = [m.weight.numel() * 2 for m in convnet() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert casts == weights  # each unit's weight matrix, once, in bf16
    assert fp32.units_total("weight_cast_bytes") == 0 and not fp32.memory.weight_cast_other_bytes


def test_a_compiled_model_is_profiled_eagerly_with_a_note(capsys):
    model = compiled_mlp()
    cfg = ProfileConfig(batch_size=2, input_shape=(8,), device="cpu", steps=1, warmup=0)
    prof = profile_model(model, cfg)
    assert [u.name for u in prof.units] == ["0", "2", "4"]
    assert "compiled (torch.compile); profiling its eager model" in capsys.readouterr().err


def test_compiled_submodules_run_eagerly_and_stay_compiled():
    model = mlp()
    model[2].compile()
    model[4] = torch.compile(model[4])
    prof = profile_model(model, ProfileConfig(batch_size=2, input_shape=(8,), device="cpu", steps=1,
                                              warmup=0))
    assert [u.name for u in prof.units] == ["0", "2", "4"]
    assert model[2]._compiled_call_impl is not None and type(model[4]).__name__ == "OptimizedModule"


def test_layers_of_a_compiled_model_is_no_dynamo_error(capsys):
    assert main(["layers", "--model", f"{MODELS}:compiled_mlp", "--input-shape", "8"]) == 0
    captured = capsys.readouterr()
    assert "3 units" in captured.out and "dynamo" not in captured.err.lower()


def test_model_module_is_found_in_the_current_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "tlprof_cwd_net.py").write_text(
        "from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "tlprof_cwd_net", raising=False)
    assert main(["layers", "--model", "tlprof_cwd_net:build", "--input-shape", "4"]) == 0
    assert "2 units" in capsys.readouterr().out


def test_a_bf16_classifier_saves_its_input_not_a_copy_of_its_weight():
    model = torch.nn.Sequential(torch.nn.Linear(8, 512), torch.nn.ReLU(), torch.nn.Linear(512, 1000))
    cfg = ProfileConfig(batch_size=2, input_shape=(8,), device="cpu", steps=1, warmup=0, precision="bf16")
    run = profile_model(model, cfg).runs["full"]
    fc = run.units[-1]
    assert fc.saved_bytes < 512 * 1000  # as resnet18's fc was: 2 × its parameter count + 48
    assert run.units[-1].weight_cast_bytes == 512 * 1000 * 2


def test_the_profile_view_shows_autocast_weight_copies_apart():
    from rich.console import Console

    from tlprof.reports.profile_view import summary_table

    model = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    cfg = ProfileConfig(batch_size=2, input_shape=(8,), device="cpu", steps=1, warmup=0, precision="bf16")
    doc = profile_model(model, cfg)
    console = Console(width=200, record=True, color_system=None)
    console.print(summary_table(doc))
    line = next(x for x in console.export_text().splitlines() if "autocast weight copies" in x)
    # the second layer's bf16 weight is saved to give the first layer's input its gradient; the first
    # layer's is not needed (its input needs no gradient)
    assert doc.runs["full"].units_total("weight_cast_bytes") == 64 * 10 * 2 and "1.2K" in line


def test_only_a_compiled_model_is_unwrapped_with_a_note(capsys):
    from tlprof.workload import unwrap_compiled

    inner = mlp()
    assert unwrap_compiled(torch.compile(inner)) is inner
    assert capsys.readouterr().err.count("compiled (torch.compile)") == 1
    assert unwrap_compiled(inner) is inner and not capsys.readouterr().err


def test_the_output_the_loss_uses_is_found_once_and_again_when_the_structure_changes():
    from tlprof.workload import output_picker

    a, b = torch.zeros(2, 3), torch.ones(2, 3)
    pick = output_picker((a, None, b), "2")
    assert pick((b, None, a)) is a  # same structure: the same slot
    assert pick([a, None, b]) is b  # another type: searched again
    pick = output_picker({"logits": a, "aux": 1}, None)
    assert pick({"aux": 1, "logits": b}) is b
    with pytest.raises(TlprofError, match="returns 2 outputs"):
        pick({"x": a, "y": b})
    pick = output_picker(a, None)
    assert pick(b) is b
    with pytest.raises(TlprofError, match="returns 2 outputs"):
        pick((a, b))
