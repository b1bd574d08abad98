"""What trains: the output the loss uses, the loss, the model's own inputs and loss (issue #11)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tlprof import ModelSpec, ProfileConfig, TlprofError, find_units, profile_model
from tlprof.diagnose import MERGE, NOT_IN_LOSS, GradientWatch, unmarked_cause

from models import (
    aux_head,
    features_and_logits,
    gpt_with_inputs_and_loss,
    spin,
    two_branches,
    two_heads,
    two_inputs,
)

MODELS = str(Path(__file__).parent / "models.py")


def _run(model, mode="full", **kw):
    cfg = ProfileConfig(batch_size=4, input_shape=(8,), device="cpu", steps=2, warmup=1,
                        runs=(mode,), **kw)
    return profile_model(model, cfg).runs[mode]


def _by_name(run, model, example=None):
    units = find_units(model, torch.randn(1, 8) if example is None else example)
    return {u.name: r for u, r in zip(units, run.units)}


@pytest.mark.parametrize("output, used, unused", [("0", "b", "c"), ("1", "c", "b")])
def test_the_head_in_the_loss_does_the_backward_the_other_is_not_in_the_loss(output, used, unused):
    model = two_heads()
    run = _run(model, output=output)
    units = _by_name(run, model)
    assert units[used].bwd_ms.median > 0 and units[used].grad_bytes > 0
    assert units[unused].bwd_ms.median == 0 and units[unused].grad_bytes == 0
    (warning,) = [w.text for w in run.warnings]
    assert f"unit(s) {unused} are {NOT_IN_LOSS}" in warning and "merge" not in warning


def test_several_outputs_without_output_is_one_line_listing_them(capsys):
    from tlprof.cli import main

    code = main(["profile", "--model", f"{MODELS}:features_and_logits", "--input-shape", "8",
                 "--batch-size", "2", "--device", "cpu", "--steps", "1", "--warmup", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "2 outputs (features: B×64, logits: B×5)" in err[0] and "--output" in err[0]


def test_a_dict_output_trains_the_chosen_key_even_frozen():
    model = features_and_logits()
    cfg = ProfileConfig(batch_size=4, input_shape=(8,), device="cpu", steps=2, warmup=1, freeze=1,
                        runs=("full", "frozen"), output="logits")
    prof = profile_model(model, cfg)
    assert prof.meta.num_classes == 5 and prof.meta.loss == "ce"
    assert prof.runs["frozen"].units[1].bwd_ms.median > 0
    with pytest.raises(TlprofError, match="the loss depends on no trainable parameter"):
        profile_model(model, ProfileConfig(**{**cfg.__dict__, "output": "features"}))


def test_bad_output_key_names_the_outputs():
    with pytest.raises(TlprofError, match="outputs are features, logits"):
        _run(features_and_logits(), output="probs")


def test_an_auxiliary_head_is_not_in_the_loss_not_a_merge():
    model = aux_head()
    run = _run(model, output="0")
    assert run.units[1].grad_bytes == 0 and run.units[1].bwd_ms.median == 0
    assert run.units[0].bwd_ms.median > 0  # the trunk's gradient is the stem's, not the aux head's
    (warning,) = [w.text for w in run.warnings]
    assert "unit(s) aux are not in the loss" in warning


def test_a_merge_keeps_the_merge_wording():
    (warning,) = [w.text for w in _run(two_branches()).warnings]
    assert "left: their output only feeds a merge" in warning and "not in the loss" not in warning


def _cause(model, output_index: int, unit_name: str) -> str:
    units = {u.name: u for u in find_units(model, torch.randn(1, 8))}
    watch = GradientWatch(list(model.parameters()))
    with watch.recording():
        out = model(torch.randn(4, 8))
        out = out[output_index] if isinstance(out, tuple) else out
        out.sum().backward()
    return unmarked_cause(units[unit_name], watch)


def test_unmarked_cause_for_each_case():
    assert _cause(two_heads(), 0, "c") == NOT_IN_LOSS
    assert _cause(two_branches(), 0, "left") == MERGE
    assert _cause(aux_head(), 0, "aux") == NOT_IN_LOSS
    assert unmarked_cause(find_units(two_heads(), torch.randn(1, 8))[2], None) == MERGE  # unknown


@pytest.mark.parametrize("loss", ["ce", "mse", "sum"])
def test_every_builtin_loss_trains_the_model(loss):
    run = _run(two_heads(), output="1", loss=loss)
    assert run.units[2].bwd_ms.median > 0


def test_a_factory_may_bring_its_inputs_and_loss():
    prof = profile_model(gpt_with_inputs_and_loss(), ProfileConfig(batch_size=3, device="cpu", steps=1,
                                                                   warmup=0))
    assert prof.meta.inputs == [{"shape": [8], "dtype": "int64"}] and prof.meta.loss == "custom"
    assert prof.meta.batch_size == 3  # the example batch's rows repeated to the batch size
    assert all(u.bwd_ms.median > 0 for u in prof.runs["full"].units[1:])


def test_several_inputs_through_a_model_spec():
    spec = two_inputs()
    assert isinstance(spec, ModelSpec)
    prof = profile_model(spec, ProfileConfig(batch_size=2, device="cpu", steps=1, warmup=0))
    assert [i["dtype"] for i in prof.meta.inputs] == ["float32", "int64"]
    assert [u.name for u in prof.units] == ["body", "embed", "head"]


def test_a_factory_returning_a_mapping_through_the_cli(tmp_path):
    from tlprof.cli import main

    path = tmp_path / "p.json"
    assert main(["profile", "--model", f"{MODELS}:gpt_with_inputs_and_loss", "--device", "cpu",
                 "--steps", "1", "--warmup", "0", "--quiet", "--json", str(path)]) == 0
    assert '"loss": "custom"' in path.read_text()


def test_a_bad_spec_is_one_clear_error():
    with pytest.raises(TlprofError, match="'model'"):
        profile_model({"net": two_heads()}, ProfileConfig(device="cpu"))


class _AuxWithNorm(torch.nn.Module):
    """An auxiliary head with BatchNorm runs only in training, where one sample is refused."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Linear(8, 8)
        self.aux = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.BatchNorm1d(4))
        self.fc = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor):
        h = self.stem(x)
        return (self.fc(h), self.aux(h)) if self.training else self.fc(h)


def test_discovery_runs_in_training_mode_so_an_auxiliary_head_with_batchnorm_is_a_unit():
    prof = profile_model(_AuxWithNorm(), ProfileConfig(batch_size=4, input_shape=(8,), device="cpu",
                                                       steps=1, warmup=0, output="0"))
    assert [u.name for u in prof.units] == ["stem", "fc", "aux.0"]
    assert "aux.0 are not in the loss" in prof.runs["full"].warnings[0].text


SPIN_MS = 6.0


class _SlowBoth(torch.autograd.Function):
    """An op whose forward and backward each spin SPIN_MS."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        spin(SPIN_MS / 1000)
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        spin(SPIN_MS / 1000)
        return grad


class _SideBranch(torch.nn.Module):
    """A trunk ``a → b`` with a side unit reading ``a``'s output; the slow op runs on the trunk
    either before the side unit starts or after it (then, in time, it is the side unit's)."""

    def __init__(self, slow_after_side: bool) -> None:
        super().__init__()
        self.a = torch.nn.Linear(8, 16)
        self.side = torch.nn.Linear(16, 3)
        self.b = torch.nn.Linear(16, 4)
        self.slow_after_side = slow_after_side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        if self.slow_after_side:
            s = self.side(h)
            y = _SlowBoth.apply(h)
        else:
            y = _SlowBoth.apply(h)
            s = self.side(h)
        return self.b(y) + s.mean(-1, keepdim=True)


@pytest.mark.parametrize("slow_after_side, owner", [(False, "a"), (True, "side")])
def test_an_op_backward_goes_to_the_unit_its_forward_went_to(slow_after_side, owner):
    """The backward mark of a tensor opens the backward of the unit its autograd node was made
    under (autograd sequence numbers), so an op's backward lands where its forward did."""
    model = _SideBranch(slow_after_side)
    units = _by_name(_run(model), model)
    for name, run in units.items():
        if name == owner:
            assert run.fwd_ms.median > 0.8 * SPIN_MS and run.bwd_ms.median > 0.8 * SPIN_MS, name
        else:
            assert run.fwd_ms.median < 0.5 * SPIN_MS and run.bwd_ms.median < 0.5 * SPIN_MS, name
