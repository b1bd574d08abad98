"""Layer units (docs/design.md §2)."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from tlprof import find_units


def _resnet_unit_names(blocks: list[int], convs_per_block: int) -> list[str]:
    names = ["conv1"]
    for stage, n in enumerate(blocks, start=1):
        for b in range(n):
            names += [f"layer{stage}.{b}.conv{c}" for c in range(1, convs_per_block + 1)]
    return names + ["fc"]


def test_resnet50_has_the_papers_50_layers_in_execution_order():
    units = find_units(torchvision.models.resnet50(), torch.randn(1, 3, 64, 64))
    assert [u.name for u in units] == _resnet_unit_names([3, 4, 6, 3], 3)
    assert [u.index for u in units] == list(range(1, 51))


def test_resnet18_counts_two_convs_per_block():
    units = find_units(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64))
    assert [u.name for u in units] == _resnet_unit_names([2, 2, 2, 2], 2)


def test_ownership_follows_execution():
    units = find_units(torchvision.models.resnet50(), torch.randn(1, 3, 64, 64))
    by_name = {u.name: u for u in units}
    assert by_name["conv1"].modules == ["conv1", "bn1", "relu", "maxpool"]
    assert by_name["layer4.0.conv3"].modules == [
        "layer4.0.conv3", "layer4.0.bn3", "layer4.0.downsample.0", "layer4.0.downsample.1"]
    assert "avgpool" in by_name["layer4.2.conv3"].modules
    assert by_name["fc"].modules == ["fc"]
    assert (by_name["layer2.1.conv2"].stage, by_name["layer2.1.conv2"].block) == ("layer2", "layer2.1")
    owned = [p for u in units for p in u.params]
    assert len(owned) == len({id(p) for p in owned}) == len(list(torchvision.models.resnet50().parameters()))


def test_generic_rule_counts_every_module_with_a_matrix_weight():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(5)
    )
    model(torch.randn(1, 3, 8, 8))  # materialise the lazy layer
    units = find_units(model, torch.randn(1, 3, 8, 8))
    assert [u.name for u in units] == ["0", "4"]
    assert units[0].modules == ["0", "1", "2", "3"]


def _tiny_vit() -> nn.Module:
    return torchvision.models.VisionTransformer(
        image_size=16, patch_size=8, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16,
        num_classes=3)


def test_every_parameter_of_a_vit_belongs_to_exactly_one_unit():
    model = _tiny_vit()
    units = find_units(model, torch.randn(2, 3, 16, 16))
    assert "encoder" not in [u.name for u in units]  # a position embedding is not a layer
    owned = [id(p) for u in units for p in u.params]
    assert sorted(owned) == sorted(id(p) for p in model.parameters())
    attention = next(u for u in units if u.name.endswith("self_attention"))
    assert attention.name + ".out_proj" in attention.modules  # used by its parent, never called
    assert model.class_token in units[0].params


def test_frozen_vit_units_do_no_backward():
    from tlprof import ProfileConfig, profile_model

    cfg = ProfileConfig(batch_size=2, input_shape=(3, 16, 16), device="cpu", steps=1, warmup=0,
                        freeze=4, runs=("frozen",))
    run = profile_model(_tiny_vit(), cfg).runs["frozen"]
    assert all(u.bwd_ms.median == 0 and u.saved_bytes == 0 for u in run.units[:4])
    assert all(u.bwd_ms.median > 0 for u in run.units[5:])


def test_probe_forward_falls_back_to_eval_and_leaves_the_model_as_it_was():
    from tlprof.units import probe_forward

    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    model.eval()
    model[1].train()
    before = [b.clone() for b in model.buffers()]
    out = probe_forward(model, (torch.randn(1, 3),))  # BatchNorm refuses one sample in training mode
    assert out.shape == (1, 4) and not out.requires_grad
    assert [m.training for m in model] == [False, True, False]
    out = probe_forward(model, (torch.randn(5, 3),))  # training mode: statistics put back after
    assert all(torch.equal(b, a) for b, a in zip(before, model.buffers()))
    assert [m.training for m in model] == [False, True, False]
