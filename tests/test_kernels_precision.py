"""The ceiling a run is held to: ``--precision default`` is tf32 on CUDA with TF32 allowed (extra,
report rows, roofline chart alike); ceilings of another device are dropped; the profiled-step
agreement sums the same units on both sides."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from kernel_models import CONV_INPUT, convnet

from tlprof import ProfileConfig, profile_model
from tlprof.document import BackendFlags, Ceilings, RunDocument
from tlprof.kernels import KernelsExtra
from tlprof.kernels.breakdown import LabelKernels
from tlprof.kernels.extra import KernelStep, _store_kernels
from tlprof.kernels.precision import effective_precision
from tlprof.kernels.roofline import roofline_point
from tlprof.marks import Label
from tlprof.reports.kernel_rows import kernels_summary
from tlprof.reports.svg import roofline

FP32, TF32 = 1.0, 8.0  # TFLOP/s: far apart, so the chosen peak shows
TF32_ON = BackendFlags(matmul_tf32=False, cudnn_tf32=True, cudnn_benchmark=True,
                       float32_matmul_precision="highest")
TF32_OFF = BackendFlags(matmul_tf32=False, cudnn_tf32=False, cudnn_benchmark=True,
                        float32_matmul_precision="highest")
CFG = dict(batch_size=2, input_shape=CONV_INPUT, steps=1, warmup=0)


def fake_ceilings(device: str = "cpu") -> Ceilings:
    return Ceilings(device, "fake", {"fp32": FP32, "tf32": TF32}, 100.0, 1, 1, 1)


@pytest.mark.parametrize(("precision", "flags", "device", "expected"), [
    ("default", TF32_ON, "cuda:0", "tf32"),  # cuDNN's TF32, on by default in PyTorch
    ("default", {"matmul_tf32": True}, "cuda", "tf32"),  # the dict of an older reader
    ("default", {"float32_matmul_precision": "high"}, "cuda", "tf32"),
    ("default", TF32_OFF, "cuda:0", "fp32"),
    ("default", TF32_ON, "cpu", "fp32"),  # no TF32 on a CPU
    ("default", None, "cuda", "fp32"),  # flags not recorded
    ("fp32", TF32_ON, "cuda", "fp32"),  # strict: tlprof turned TF32 off
    ("bf16", TF32_ON, "cuda", "bf16"),
    ("tf32", None, "cpu", "tf32"),
    (None, TF32_ON, "cuda", "fp32"),
])
def test_effective_precision(precision, flags, device, expected):
    assert effective_precision(precision, flags, device) == expected


def test_effective_precision_is_torch_free():
    code = ("import sys; from tlprof.kernels.precision import effective_precision; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_roofline_takes_the_tf32_peak_for_default_on_cuda():
    c = fake_ceilings("cuda")
    flops, nbytes, ms = 10**12, 10**9, 1000.0  # intensity 1000: compute-bound under both peaks
    strict = roofline_point(flops, nbytes, ms, c, effective_precision("default", TF32_OFF, "cuda"))
    tf32 = roofline_point(flops, nbytes, ms, c, effective_precision("default", TF32_ON, "cuda"))
    assert (strict["ceiling"], strict["roof_tflops"]) == ("fp32", FP32)
    assert (tf32["ceiling"], tf32["roof_tflops"]) == ("tf32", TF32)
    assert strict["pct_of_roof"] == pytest.approx(TF32 * tf32["pct_of_roof"])


@pytest.fixture(scope="module")
def cpu_doc() -> RunDocument:
    """A CPU profile with ceilings given (fp32 and tf32 peaks), as read back from JSON."""
    cfg = ProfileConfig(device="cpu", **CFG)
    extra = KernelsExtra(breakdown=False, ceilings=fake_ceilings("cpu"), measure=False)
    return RunDocument.from_dict(profile_model(convnet(), cfg, extras=[extra]).to_dict())


def test_default_on_cpu_is_held_to_fp32(cpu_doc):
    run = cpu_doc.runs["full"]
    assert run.kernels.ceilings == fake_ceilings("cpu")
    points = [p for u in run.units for p in u.kernels.roofline.values() if p]
    assert points and all(p["ceiling"] == "fp32" for p in points)
    summary = kernels_summary(cpu_doc)
    assert (summary.precision, summary.ceiling_precision) == ("default", "fp32")
    assert f"fp32 matmul peak {FP32:.3g} TFLOP/s" in roofline(SimpleNamespace(kernels=summary))


def test_report_holds_default_on_cuda_with_tf32_to_the_tf32_peak(cpu_doc):
    doc = RunDocument.from_dict(cpu_doc.to_dict())
    doc.meta.device, doc.meta.backend_flags = "cuda:0", TF32_ON  # as a CUDA profile records them
    summary = kernels_summary(doc)
    assert (summary.precision, summary.ceiling_precision) == ("default", "tf32")
    assert f"tf32 matmul peak {TF32:.3g} TFLOP/s" in roofline(SimpleNamespace(kernels=summary))
    doc.meta.backend_flags = TF32_OFF
    assert kernels_summary(doc).ceiling_precision == "fp32"


def test_ceilings_of_another_device_are_dropped():
    cfg = ProfileConfig(device="cpu", **CFG)
    extra = KernelsExtra(breakdown=False, ceilings=fake_ceilings("cuda"), measure=False)
    run = profile_model(convnet(), cfg, extras=[extra]).runs["full"]
    assert extra.ceilings is None and run.kernels.ceilings is None
    assert all(u.kernels.roofline is None for u in run.units)


def test_profiled_step_agreement_counts_only_units_that_ran_kernels(cpu_doc):
    run = RunDocument.from_dict(cpu_doc.to_dict()).runs["full"]
    ran = LabelKernels()
    ran.add("aten::mm", 2.0)
    step = KernelStep({Label.fwd(2): ran}, hook_units_ms=[5.0, 4.0, 3.0], left_open=0)
    _store_kernels(run, step, top=3, cuda=False)
    section = run.kernels
    assert section.units_without_kernels == [1, 3]
    assert section.kernel_units_ms == 2.0 and section.measured_units_ms == run.units[1].t_ms
    assert section.profiled_step_units_ms == 4.0  # unit 2's own hook time, not all three units'
    assert section.kernel_agreement_profiled_step == pytest.approx(2.0 / 4.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_kernels_extra_holds_default_with_cudnn_tf32_to_tf32_on_cuda():
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default; --precision default keeps it
    try:
        cfg = ProfileConfig(device="cuda", **CFG)
        extra = KernelsExtra(breakdown=False, ceilings=fake_ceilings("cuda"), measure=False)
        run = profile_model(convnet(), cfg, extras=[extra]).runs["full"]
    finally:
        torch.backends.cudnn.allow_tf32 = before
    points = [p for u in run.units for p in u.kernels.roofline.values() if p]
    assert points and all(p["ceiling"] == "tf32" for p in points)
