"""--precision default leaves the backend flags as they are and records them; fp32 is strict."""

from __future__ import annotations

import pytest
import torch

from tlprof import ProfileConfig, RunDocument, profile_model
from tlprof.document import BackendFlags

UNUSUAL = {"float32_matmul_precision": "high", "cudnn_tf32": False, "cudnn_benchmark": True}


@pytest.fixture
def unusual_flags():
    """Flags no tlprof precision would set, put back after the test."""
    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32,
              torch.backends.cudnn.benchmark)
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    yield
    torch.set_float32_matmul_precision(before[0])
    torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = before[1:]


def _profile(precision: str, tmp_path) -> BackendFlags:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    cfg = ProfileConfig(batch_size=2, input_shape=(4,), device="cpu", steps=1, warmup=0, precision=precision)
    path = tmp_path / "run.json"
    profile_model(model, cfg).save(path)
    meta = RunDocument.load(path).meta
    assert meta.precision == precision
    return meta.backend_flags


def _now() -> dict:
    return {"float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn_tf32": torch.backends.cudnn.allow_tf32, "cudnn_benchmark": torch.backends.cudnn.benchmark}


def test_the_default_precision_changes_no_flag_and_records_them(unusual_flags, tmp_path):
    assert ProfileConfig().precision == "default"
    flags = _profile("default", tmp_path)
    assert flags == BackendFlags(matmul_tf32=True, **UNUSUAL)  # "high" is TF32 matmuls
    assert _now() == UNUSUAL


def test_fp32_is_strict_while_it_runs_and_the_flags_come_back(unusual_flags, tmp_path):
    flags = _profile("fp32", tmp_path)
    assert flags.matmul_tf32 is False and flags.cudnn_tf32 is False
    assert flags.float32_matmul_precision in ("highest", None)  # None: torch refuses after mixed APIs
    assert _now() == UNUSUAL


def test_tf32_is_explicit(tmp_path):
    flags = _profile("tf32", tmp_path)
    assert flags.matmul_tf32 is True and flags.cudnn_tf32 is True


def test_an_older_document_has_no_flags():
    from tlprof import Meta

    assert Meta.from_dict({"precision": "fp32"}).backend_flags is None


@pytest.mark.parametrize(("precision", "dtype"), [("default", None), ("fp32", None), ("bf16", torch.bfloat16),
                                                  ("fp16", torch.float16)])
def test_autocast_is_resolved_once_from_the_precision(precision, dtype):
    from tlprof.workload import make_workload

    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    cfg = ProfileConfig(batch_size=2, input_shape=(4,), device="cpu", precision=precision)
    work = make_workload(model, cfg, torch.device("cpu"))
    assert work.autocast_dtype == dtype
    with work.autocast():
        assert torch.is_autocast_enabled("cpu") == (dtype is not None)
