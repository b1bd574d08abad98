"""Layer units (DESIGN.md §2)."""

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
