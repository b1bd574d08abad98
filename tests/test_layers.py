"""``tlprof layers`` (issue 12): shapes, kernel sizes, parameter shares, the module tree to a depth."""

from __future__ import annotations

import re
from pathlib import Path

from tlprof.cli import main

MODELS = str(Path(__file__).parent / "kernel_models.py")
CONVNET = ["layers", "--model", f"{MODELS}:convnet", "--input-shape", "3,8,8"]
TOTAL = 112 + 8 + 296 + 645  # conv 3→4 and its BatchNorm, conv 4→8, linear 128→5


def _row(out: str, first: str) -> list[str]:
    for line in out.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in\n{out}")


def test_layers_shows_shapes_kernels_and_parameter_shares(capsys):
    assert main(CONVNET) == 0
    out = capsys.readouterr().out
    assert f"3 units of {MODELS}:convnet ({TOTAL:,} parameters" in out
    assert _row(out, "1")[1:8] == ["0", "0", "0", "1×3×8×8", "1×4×8×8", "3×3", "120"]
    assert _row(out, "1")[8] == f"{120 / TOTAL:.1%}"
    assert _row(out, "2")[4:9] == ["1×4×8×8", "1×8×4×4", "3×3 /2", "296", f"{296 / TOTAL:.1%}"]
    assert _row(out, "3")[4:9] == ["1×128", "1×5", "128→5", "645", f"{645 / TOTAL:.1%}"]


def test_layers_depth_shows_the_module_tree(capsys):
    assert main([*CONVNET, "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "to depth 1" in out
    assert _row(out, "1")[1:] == ["BatchNorm2d", "1×4×8×8", "1×4×8×8", "-", "8", f"{8 / TOTAL:.1%}", "1"]
    assert _row(out, "5")[1:4] == ["Flatten", "1×8×4×4", "1×128"]
    assert _row(out, "5")[-1] == "2"  # owned by the strided conv's unit
    assert _row(out, "6")[1:5] == ["Linear", "1×128", "1×5", "128→5"]


def test_layers_depth_nests_blocks_under_stages(capsys):
    assert main(["layers", "--arch", "resnet18", "--image-size", "32", "--depth", "2"]) == 0
    out = capsys.readouterr().out
    layer1 = _row(out, "layer1")
    assert layer1[1] == "Sequential" and layer1[-1] == "2–5"
    assert re.search(r"│\s+  0\s+│ BasicBlock", out)  # layer1.0, indented under layer1
    assert "layer1.0.conv1" not in out
    assert main(["layers", "--arch", "resnet18", "--image-size", "32", "--depth", "0"]) == 2
