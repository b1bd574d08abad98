"""The ncu helper's CSV reading (benchmarks/ncu_unit.py), on both of ncu's CSV page layouts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from nv_models import named_mlp

from tlprof import ProfileConfig, profile_model

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from ncu_unit import kernel_durations_ns, main  # noqa: E402

RAW = """==PROF== Connected to process 123 (/usr/bin/python3.12)
"ID","Process ID","Process Name","Kernel Name","Context","Stream","gpu__time_duration.sum"
"","","","","","","usecond"
"0","123","python3.12","sm90_xmma_fprop_implicit_gemm","1","7","1,234.50"
"1","123","python3.12","bn_fw_tr_1C11_kernel_NCHW","1","7","56.25"
==PROF== Disconnected from process 123
"""

DETAILS = """"ID","Process ID","Kernel Name","Section Name","Metric Name","Metric Unit","Metric Value"
"0","123","conv","Command line profiler metrics","gpu__time_duration.sum","nsecond","2,000"
"0","123","conv","Command line profiler metrics","dram__bytes_read.sum","byte","99"
"1","123","relu","Command line profiler metrics","gpu__time_duration.sum","msecond","0.5"
"""


def test_raw_page_with_a_row_of_units():
    assert kernel_durations_ns(RAW) == [
        ("sm90_xmma_fprop_implicit_gemm", pytest.approx(1_234_500.0)),
        ("bn_fw_tr_1C11_kernel_NCHW", pytest.approx(56_250.0)),
    ]


def test_details_page_picks_the_duration_metric():
    assert kernel_durations_ns(DETAILS) == [("conv", 2000.0), ("relu", 500_000.0)]


def test_no_kernels_profiled():
    assert kernel_durations_ns("==PROF== No kernels were profiled.\n") == []


def test_a_cpu_profile_is_skipped(tmp_path, capsys):
    doc, out = tmp_path / "mlp.json", tmp_path / "ncu_unit.json"
    cfg = ProfileConfig(batch_size=2, input_shape=(8,), device="cpu", steps=1, warmup=0)
    profile_model(named_mlp(), cfg).save(doc)
    assert main(["--profile", str(doc), "--out", str(out)]) == 0
    assert "skipped" in capsys.readouterr().out
    assert json.loads(out.read_text()) == {"skipped": f"{doc} is not a CUDA profile"}
