from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torchvision

from tlprof import ProfileConfig, profile_model

sys.path.insert(0, str(Path(__file__).parent))

R50_FREEZE = 45


@pytest.fixture(scope="session")
def r50_profile():
    """ResNet-50 at 64×64, batch 2, full and frozen (45), two measured steps each."""
    cfg = ProfileConfig(
        batch_size=2, input_shape=(3, 64, 64), device="cpu", steps=2, warmup=1,
        freeze=R50_FREEZE, runs=("full", "frozen"),
    )
    return profile_model(torchvision.models.resnet50(), cfg, meta={"arch": "resnet50"})


@pytest.fixture(scope="session", autouse=True)
def ceilings_cache(tmp_path_factory):
    """Ceilings cached for the session only, never in the user's ~/.cache/tlprof."""
    os.environ["TLPROF_CACHE"] = str(tmp_path_factory.mktemp("tlprof-cache"))
