"""Units of weights used functionally, and stage/block roll-ups per family (issue #11)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.convnext import CNBlockConfig

from tlprof import ProfileConfig, find_units, profile_model

from models import encoder_layers


def _tiny_swin() -> nn.Module:
    return torchvision.models.SwinTransformer(
        patch_size=[2, 2], embed_dim=8, depths=[2, 2], num_heads=[1, 1], window_size=[2, 2],
        num_classes=3)


def test_swin_attention_runs_its_projections_so_it_is_the_unit():
    model = _tiny_swin()
    units = find_units(model, torch.randn(1, 3, 16, 16))
    names = [u.name for u in units]
    assert "features.1.0.attn" in names and "features.1.1.attn" in names
    attn = next(u for u in units if u.name == "features.1.1.attn")
    assert {"features.1.1.attn.qkv", "features.1.1.attn.proj"} <= set(attn.modules)
    for u in units:  # no unit owns another block's attention
        assert all(not m.startswith("features.1.1.attn") for m in u.modules) or u is attn
    owned = [id(p) for u in units for p in u.params]
    assert sorted(owned) == sorted(id(p) for p in model.parameters())


def test_swin_and_convnext_stages_are_the_real_stages():
    swin = find_units(_tiny_swin(), torch.randn(1, 3, 16, 16))
    assert [u.stage for u in swin] == ["stage1"] * 7 + ["stage2"] * 7 + ["head"]
    assert {u.block for u in swin if u.stage == "stage2"} == {"features.2", "features.3.0", "features.3.1"}
    convnext = torchvision.models.ConvNeXt([CNBlockConfig(8, 16, 2), CNBlockConfig(16, None, 1)],
                                           num_classes=3)
    units = find_units(convnext, torch.randn(1, 3, 32, 32))
    assert [u.stage for u in units].count("stage2") == 1 + 3  # downsample + one block of 3 units
    assert {u.block for u in units if u.stage == "stage1"} == {"features.0", "features.1.0", "features.1.1"}


def test_vit_blocks_are_its_encoder_layers():
    vit = torchvision.models.VisionTransformer(image_size=16, patch_size=8, num_layers=2, num_heads=2,
                                               hidden_dim=8, mlp_dim=16, num_classes=3)
    units = find_units(vit, torch.randn(1, 3, 16, 16))
    assert [(u.stage, u.block) for u in units][:2] == [("stem", "conv_proj"),
                                                       ("encoder", "encoder.layers.encoder_layer_0")]
    assert {u.block for u in units if u.stage == "encoder"} == {
        "encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"}


def test_efficientnet_and_densenet_stages():
    eff = find_units(torchvision.models.efficientnet_b0(), torch.randn(1, 3, 32, 32))
    assert eff[0].stage == "stem" and eff[-1].stage == "head"
    assert {u.stage for u in eff[1:-2]} == {f"features.{i}" for i in range(1, 8)}
    assert any(u.block == "features.2.1" for u in eff)
    dense = torchvision.models.DenseNet(growth_rate=4, block_config=(2, 2), num_init_features=8,
                                        num_classes=3)
    units = find_units(dense, torch.randn(1, 3, 32, 32))
    assert [u.stage for u in units] == ["stem"] + ["features.denseblock1"] * 5 \
        + ["features.denseblock2"] * 4 + ["head"]
    assert units[5].block == "features.transition1"


class FunctionalHead(nn.Module):
    """Runs its child's weight itself; the child's name says nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Linear(8, 3)  # never called

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.w.weight * 1.0, self.w.bias)


def test_a_module_that_runs_a_weight_functionally_is_the_unit():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), FunctionalHead())
    units = find_units(model, torch.randn(1, 8))
    assert [u.name for u in units] == ["0", "2"]
    assert units[1].modules == ["2", "2.w"]


def test_torch_transformer_layers_are_a_family():
    model = encoder_layers()
    units = find_units(model, torch.randn(1, 6, 4))
    layer = [u for u in units if u.block == "1.layers.0"]
    assert [u.name for u in layer] == ["1.layers.0.self_attn", "1.layers.0.linear1", "1.layers.0.linear2"]
    assert "1.layers.0.self_attn.out_proj" in layer[0].modules  # run functionally by the attention
    assert layer[0].stage == "1.layers"
    cfg = ProfileConfig(batch_size=2, input_shape=(6, 4), device="cpu", steps=1, warmup=0, freeze=4,
                        runs=("frozen",))
    run = profile_model(model, cfg).runs["frozen"]
    assert all(u.bwd_ms.median == 0 for u in run.units[:4])
    assert all(u.bwd_ms.median > 0 for u in run.units[4:]) and run.warnings == []
