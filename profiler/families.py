"""How units roll up into blocks and stages, per model family (docs/design.md §2).

Each rule maps a unit's module name to (stage, block), following the
architecture's own stages and blocks rather than the first one or two parts of
the name: a Swin or ConvNeXt stage is its downsampling layer plus its blocks
(``features`` alternates the two), an EfficientNet stage is ``features.N``,
a ViT block is ``encoder.layers.encoder_layer_N``. Families are recognised by
class, never by module names; anything else gets the generic rule.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

StageBlock = Callable[[str], tuple[str, str]]


def generic_stage_block(name: str) -> tuple[str, str]:
    parts = name.split(".")
    stage = parts[0]
    block = ".".join(parts[:2]) if len(parts) >= 3 else stage
    return stage, block


def resnet_stage_block(name: str) -> tuple[str, str]:
    if name.startswith("layer"):
        parts = name.split(".")
        return parts[0], ".".join(parts[:2])
    if name == "fc":
        return "head", "fc"
    return "stem", "stem"


def _head(name: str) -> tuple[str, str]:
    return "head", name.split(".")[0]


def _alternating_stage_block(name: str) -> tuple[str, str]:
    """Swin and ConvNeXt: ``features`` = [stem, stage 1, downsample, stage 2, ...]; the stem or
    downsampling layer before a stage belongs to it."""
    parts = name.split(".")
    if parts[0] != "features" or len(parts) < 2 or not parts[1].isdigit():
        return _head(name)
    n = int(parts[1])
    stage = f"stage{n // 2 + 1}"
    if n % 2 == 1 and len(parts) >= 3:
        return stage, ".".join(parts[:3])
    return stage, ".".join(parts[:2])


def _vit_stage_block(name: str) -> tuple[str, str]:
    parts = name.split(".")
    if parts[:2] == ["encoder", "layers"] and len(parts) >= 3:
        return "encoder", ".".join(parts[:3])
    if parts[0] == "conv_proj":
        return "stem", "conv_proj"
    return _head(name)


def _numbered_features(last: int) -> StageBlock:
    """EfficientNet: ``features.0`` the stem, ``features.1..last-1`` the stages of MBConv
    blocks, ``features.last`` and the classifier the head."""

    def stage_block(name: str) -> tuple[str, str]:
        parts = name.split(".")
        if parts[0] != "features" or len(parts) < 2 or not parts[1].isdigit():
            return _head(name)
        n = int(parts[1])
        if n == 0:
            return "stem", "features.0"
        if n == last:
            return "head", f"features.{n}"
        return f"features.{n}", ".".join(parts[:3])

    return stage_block


def _densenet_stage_block(name: str) -> tuple[str, str]:
    """A dense block, then the transition layer after it."""
    parts = name.split(".")
    if parts[0] != "features" or len(parts) < 2:
        return _head(name)
    part = parts[1]
    if part.startswith("denseblock"):
        return f"features.{part}", ".".join(parts[:3])
    if part.startswith("transition"):
        return f"features.denseblock{part.removeprefix('transition')}", f"features.{part}"
    return "stem", ".".join(parts[:2])


def _regnet_stage_block(name: str) -> tuple[str, str]:
    parts = name.split(".")
    if parts[0] == "trunk_output" and len(parts) >= 3:
        return ".".join(parts[:2]), ".".join(parts[:3])
    return ("stem", "stem") if parts[0] == "stem" else _head(name)


def _transformer_stage_block(layers: list[str]) -> StageBlock:
    """torch.nn transformer layers: each layer a block, the container of layers the stage."""
    by_length = sorted(layers, key=len, reverse=True)

    def stage_block(name: str) -> tuple[str, str]:
        for layer in by_length:
            if name == layer or name.startswith(layer + "."):
                return layer.rpartition(".")[0] or layer, layer
        return generic_stage_block(name)

    return stage_block


def _torchvision_class(name: str) -> type | None:
    try:
        import torchvision.models as tvm
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return None
    return getattr(tvm, name, None)


def _is(model: nn.Module, *classes: str) -> bool:
    found = [c for c in map(_torchvision_class, classes) if c is not None]
    return bool(found) and isinstance(model, tuple(found))


def rollup_for(model: nn.Module) -> tuple[str, StageBlock]:
    """The family's name and its (stage, block) rule for unit names."""
    if _is(model, "ResNet"):
        return "resnet", resnet_stage_block
    if _is(model, "SwinTransformer"):
        return "swin", _alternating_stage_block
    if _is(model, "ConvNeXt"):
        return "convnext", _alternating_stage_block
    if _is(model, "VisionTransformer"):
        return "vit", _vit_stage_block
    if _is(model, "EfficientNet") and isinstance(getattr(model, "features", None), nn.Sequential):
        return "efficientnet", _numbered_features(len(model.features) - 1)
    if _is(model, "DenseNet"):
        return "densenet", _densenet_stage_block
    if _is(model, "RegNet"):
        return "regnet", _regnet_stage_block
    layer_types = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
    layers = [n for n, m in model.named_modules() if isinstance(m, layer_types) and n]
    if layers:
        return "transformer", _transformer_stage_block(layers)
    return "generic", generic_stage_block
