"""Frozen semantics on ResNet-50 (docs/design.md §2): freeze by ownership, measure directly."""

from __future__ import annotations

import torch
import torchvision

from tlprof import find_units, freeze

from conftest import R50_FREEZE


def test_frozen_units_do_no_backward_and_save_nothing(r50_profile):
    frozen = r50_profile.runs["frozen"]
    for u in frozen.units[:R50_FREEZE]:
        assert u.bwd_ms.samples == [0.0] * len(u.bwd_ms.samples), u.index
        assert u.saved_bytes == 0 and u.grad_bytes == 0 and u.optimizer_state_bytes == 0
    for u in frozen.units[R50_FREEZE:]:
        assert all(t > 0 for t in u.bwd_ms.samples), u.index
        assert u.saved_bytes > 0 and u.grad_bytes == u.param_bytes


def test_full_run_trains_every_unit(r50_profile):
    full = r50_profile.runs["full"]
    assert all(u.bwd_ms.median > 0 and u.saved_bytes > 0 for u in full.units)
    assert full.units[0].grad_bytes == full.units[0].param_bytes


def test_frozen_step_is_faster(r50_profile):
    full, frozen = r50_profile.runs["full"], r50_profile.runs["frozen"]
    # fastest samples: one step slowed by a busy machine must not decide it
    assert min(frozen.step_ms.samples) < min(full.step_ms.samples)
    assert min(frozen.plain_step_ms.samples) < min(full.plain_step_ms.samples)


def test_freeze_45_freezes_owned_bn_and_shortcut():
    model = torchvision.models.resnet50()
    units = find_units(model, torch.randn(1, 3, 64, 64))
    model.train()
    freeze(model, units, 45)
    for name in ("layer4.0.bn3", "layer4.0.downsample.0", "layer4.0.downsample.1", "layer4.1.bn2"):
        module = model.get_submodule(name)
        assert not any(p.requires_grad for p in module.parameters()), name
    assert not model.get_submodule("layer4.0.downsample.1").training
    for name in ("layer4.1.conv3", "layer4.1.bn3", "layer4.2.bn1", "fc"):
        assert all(p.requires_grad for p in model.get_submodule(name).parameters()), name
    assert model.get_submodule("layer4.1.bn3").training
    trainable = [u.name for u in units if u.trainable()]
    assert trainable == ["layer4.1.conv3", "layer4.2.conv1", "layer4.2.conv2", "layer4.2.conv3", "fc"]


def test_frozen_bn_train_keeps_batchnorm_training():
    model = torchvision.models.resnet18()
    units = find_units(model, torch.randn(1, 3, 64, 64))
    model.train()
    freeze(model, units, 10, frozen_bn="train")
    assert model.bn1.training and not model.bn1.weight.requires_grad


class _StepOrder:
    """A step listener: which run's step of which kind ran, in order."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, str]] = []

    def on_mark(self, label) -> None:
        pass

    def on_step_begin(self, step) -> None:
        self.steps.append((step.run, step.kind))

    def on_step_end(self, step) -> None:
        pass


def test_runs_take_turns_in_blocks_after_warming_up_alone():
    from tlprof import ProfileConfig, profile_model

    from models import mlp

    order = _StepOrder()
    cfg = ProfileConfig(batch_size=2, input_shape=(8,), device="cpu", steps=4, warmup=1, freeze=1,
                        runs=("full", "frozen"))
    assert cfg.block_sizes() == [2, 2] and cfg.steps_per_run == 1 + 1 + 8 + 2
    doc = profile_model(mlp(), cfg, listeners=[order])
    runs_in_turn = [run for run, kind in order.steps]
    block = [("warmup", 1), ("plain", 1), ("timed", 1), ("plain", 1), ("timed", 1)]
    expected = ["full", "full", "frozen", "frozen"] + (["full"] * 5 + ["frozen"] * 5) * 2
    assert runs_in_turn == expected
    assert [k for _, k in order.steps[4:9]] == [k for k, _ in block]
    assert all(len(r.step_ms.samples) == 4 and len(r.plain_step_ms.samples) == 4
               for r in doc.runs.values())
    single = ProfileConfig(batch_size=2, input_shape=(8,), device="cpu", steps=4, warmup=1)
    assert single.block_sizes() == [4] and single.steps_per_run == 1 + 1 + 8


def test_a_run_takes_its_hooks_off_while_the_other_runs_step():
    """Only the running step's unit hooks are on the model: the other runs' registered hooks are
    off the modules, or they would slow its steps."""
    from tlprof import ProfileConfig, profile_model

    from models import mlp

    model = mlp()
    counts: set[int] = set()

    class HookCount:
        def on_mark(self, label) -> None:  # inside an instrumented step, hooks attached
            counts.add(sum(len(m._forward_pre_hooks) for m in model.children()))  # unit modules

    cfg = ProfileConfig(batch_size=2, input_shape=(8,), device="cpu", steps=4, warmup=1, freeze=1,
                        runs=("full", "frozen", "cached"))
    profile_model(model, cfg, listeners=[HookCount()])
    assert counts == {3}, counts  # the three units' hooks, once: never another run's beside them
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())
