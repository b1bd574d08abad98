"""NVML through a fake (devices, meta, energy), and the real pynvml path on a machine without a driver."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from nv_models import FakeGpu, FakeNvml, SteppingClock, named_mlp
from rich.console import Console

from tlprof import ProfileConfig, RunDocument, profile_model
from tlprof.cli import main
from tlprof.energy import EnergyConfig, EnergyExtra, energy_extras
from tlprof.nvml import (
    DeviceWatch,
    NvmlUnavailable,
    decode_throttle_reasons,
    nvml_index,
    open_nvml,
)
from tlprof.reports.energy_view import energy_view

NV_MODELS = str(Path(__file__).parent / "nv_models.py")
CLI_SMALL = ["--model", f"{NV_MODELS}:named_mlp", "--input-shape", "8", "--steps", "1",
             "--warmup", "1", "--device", "cpu", "--quiet"]
FAST = EnergyConfig(window_s=0.2, min_steps=3, warmup_steps=1, tick_timeout_s=0.2, poll_s=0.0)


def _nvml_works() -> bool:
    try:
        open_nvml().close()
    except NvmlUnavailable:
        return False
    return True


no_driver = pytest.mark.skipif(_nvml_works(), reason="NVML works here; this needs a machine without")


def _one_error_line(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tlprof: error: "), err
    return lines[0]


# -- tlprof devices -------------------------------------------------------------------


def test_devices_lists_every_gpu(monkeypatch, capsys):
    throttled = FakeGpu(name="NVIDIA A100-SXM4-40GB", uuid="GPU-aaaa", memory_total_bytes=40 * 2**30,
                        power_limit_w=400.0, temperature_c=71, throttle_mask=0x1 | 0x4)
    fake = FakeNvml([FakeGpu(), throttled])
    monkeypatch.setattr("tlprof.nvml.open_nvml", lambda: fake)
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "2 GPU(s)" in out and "driver 550.54.15" in out and "CUDA 12.4" in out
    assert "NVIDIA H100 80GB HBM3" in out and "NVIDIA A100-SXM4-40GB" in out
    assert "80.0" in out and "40.0" in out  # GiB
    assert "300/700" in out and "300/400" in out  # power now/limit, W
    assert "1755/1980" in out  # SM clock now/max
    assert "sw_power_cap" in out and "gpu_idle" not in out
    assert fake.closed == 1


def test_devices_without_gpus_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr("tlprof.nvml.open_nvml", lambda: FakeNvml([]))
    assert "NVML sees no GPU (driver 550.54.15)" in _one_error_line(capsys, ["devices"])


@no_driver
def test_devices_without_a_driver_is_one_line(capsys):
    line = _one_error_line(capsys, ["devices"])
    assert line == ("tlprof: error: NVML is not available: "
                    "no NVIDIA driver on this machine (libnvidia-ml.so not found)")


# -- readings and meta ------------------------------------------------------------------


def test_throttle_reasons_are_named():
    assert decode_throttle_reasons(0) == []
    assert decode_throttle_reasons(0x1 | 0x4 | 0x40) == ["gpu_idle", "sw_power_cap", "hw_thermal_slowdown"]
    assert decode_throttle_reasons(0x8 | 0x4000) == ["hw_slowdown", "0x4000"]


def test_nvml_index_follows_the_uuid():
    fake = FakeNvml([FakeGpu(uuid="GPU-aaaa"), FakeGpu(uuid="GPU-bbbb")])
    assert nvml_index(fake, "bbbb", 0) == 1  # torch's UUID has no "GPU-" prefix
    assert nvml_index(fake, "GPU-aaaa", 1) == 0
    assert nvml_index(fake, "cccc", 1) == 1 and nvml_index(fake, None, 0) == 0


def test_cuda_meta_has_identity_and_state_at_start_and_end(monkeypatch):
    fake = FakeNvml([FakeGpu(throttle_mask=0x4)])
    monkeypatch.setattr("tlprof.nvml.open_nvml", lambda: fake)
    watch = DeviceWatch.start(torch.device("cuda:0"))  # no CUDA here: only NVML is read
    gpu = watch.finish()["gpu"]
    assert gpu["name"] == "NVIDIA H100 80GB HBM3" and gpu["uuid"].startswith("GPU-")
    assert gpu["driver_version"] == "550.54.15" and gpu["cuda_driver_version"] == "12.4"
    assert gpu["power_limit_w"] == 700.0 and gpu["max_sm_clock_mhz"] == 1980
    assert gpu["start"]["temperature_c"] == 35 and gpu["end"]["temperature_c"] == 36
    assert gpu["end"]["throttle_reasons"] == ["sw_power_cap"] and gpu["end"]["sm_clock_mhz"] == 1755
    assert fake.closed == 1
    json.dumps(gpu)


def test_cpu_profiles_never_open_nvml(monkeypatch):
    def refuse():
        raise AssertionError("NVML opened for a CPU profile")

    monkeypatch.setattr("tlprof.nvml.open_nvml", refuse)
    cfg = ProfileConfig(batch_size=2, input_shape=(8,), device="cpu", steps=1, warmup=0)
    assert profile_model(named_mlp(), cfg).meta.gpu is None


@no_driver
def test_cuda_meta_says_why_when_nvml_is_missing():
    assert DeviceWatch.start(torch.device("cuda")).finish() == {"gpu": {
        "nvml": "NVML is not available: no NVIDIA driver on this machine (libnvidia-ml.so not found)"}}


# -- energy -----------------------------------------------------------------------------


def _energy_profile(tick_s: float, cfg: EnergyConfig = FAST, power_w: float = 300.0) -> RunDocument:
    """Energy of named_mlp's runs on a fake GPU; time is a clock moving 1 ms per reading."""
    clock = SteppingClock(0.001)
    fake = FakeNvml([FakeGpu(power_w=power_w)], tick_s=tick_s, clock=clock)
    pc = ProfileConfig(batch_size=2, input_shape=(8,), device="cpu", steps=1, warmup=1,
                       freeze=2, runs=("full", "frozen"))
    return profile_model(named_mlp(), pc, extras=[EnergyExtra(fake, 0, cfg, clock=clock)])


def test_energy_per_step_and_power_per_run():
    profile = _energy_profile(tick_s=0.005, power_w=250.0)
    for run in profile.runs.values():
        e = run.energy
        assert run.warnings == []
        assert e.steps >= FAST.min_steps and e.window_s >= FAST.window_s
        assert e.avg_power_w == pytest.approx(250.0, rel=0.05)  # the end lags by < 1 tick
        assert e.energy_per_step_j == pytest.approx(e.energy_j / e.steps)
        assert e.counter_tick_s == pytest.approx(0.005, rel=0.25)
        assert e.resolution < FAST.max_resolution


def test_unit_energy_is_a_labelled_estimate(tmp_path):
    profile = _energy_profile(tick_s=0.005)
    path = tmp_path / "run.json"
    profile.save(path)
    doc = json.loads(path.read_text())
    full = doc["runs"]["full"]
    assert full["energy"]["unit_energy"].startswith("estimate")
    estimates = [u["energy_estimate_j"] for u in full["units"]]
    run = RunDocument.load(path).runs["full"]
    share = (run.units[0].fwd_ms.median + run.units[0].bwd_ms.median) / run.step_ms.median
    assert estimates[0] == pytest.approx(share * full["energy"]["energy_per_step_j"])
    assert 0 < sum(estimates) <= full["energy"]["energy_per_step_j"]


def test_too_short_a_window_is_flagged():
    short = EnergyConfig(window_s=0.0, min_steps=1, max_steps=1, warmup_steps=0, poll_s=0.0)
    warnings = [w.text for w in _energy_profile(0.05, short).runs["full"].warnings if w.part == "energy"]
    assert any(re.search(r"only 0\.\d counter ticks of 5\d\.\d ms: .* at best", w) for w in warnings)


def test_a_counter_that_does_not_tick_is_flagged():
    stuck = EnergyConfig(window_s=0.05, min_steps=1, warmup_steps=0, tick_timeout_s=0.05, poll_s=0.0)
    warnings = [w.text for w in _energy_profile(60.0, stuck).runs["full"].warnings if w.part == "energy"]
    assert any("did not change twice" in w for w in warnings)
    assert any("did not advance over the window" in w for w in warnings)


def test_energy_report_labels_the_estimate():
    console = Console(record=True, width=200)
    console.print(energy_view(_energy_profile(tick_s=0.005)))
    text = console.export_text()
    assert "energy per step (J)" in text and "average power (W)" in text
    assert "frozen/full energy per step" in text and "ESTIMATE" in text and "(estimate)" in text


def test_energy_option_with_the_fake(monkeypatch):
    fake = FakeNvml([FakeGpu(uuid="GPU-aaaa"), FakeGpu(uuid="GPU-bbbb")])
    monkeypatch.setattr("tlprof.nvml.open_nvml", lambda: fake)
    monkeypatch.setattr("tlprof.nvml.cuda_uuid", lambda device: "bbbb")
    (extra,) = energy_extras(True, "cuda:0", print)
    assert extra.index == 1
    said: list[str] = []
    fake.gpus[1].has_energy = False
    assert energy_extras(True, "cuda:0", said.append) == []
    assert said and "no total-energy counter" in said[0]
    assert energy_extras(False, "cuda:0") == []


@no_driver
def test_energy_without_nvml_is_one_line():
    said: list[str] = []
    assert energy_extras(True, "cuda", said.append) == []
    assert said == ["--energy: NVML is not available: no NVIDIA driver on this machine "
                    "(libnvidia-ml.so not found); profiling without energy"]


def test_energy_on_the_cpu_says_so_and_the_profile_runs(capsys, tmp_path):
    path = tmp_path / "run.json"
    assert main(["profile", *CLI_SMALL, "--energy", "--json", str(path)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tlprof: --energy: NVML measures NVIDIA GPUs and this profile runs on the CPU; "
                   "profiling without energy"]
    assert RunDocument.load(path).runs["full"].energy is None
