"""NVTX ranges against a recording fake: names, nesting, threads, and nothing when off."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from nv_models import UNIT_NAMES, RecordingNvtx, named_mlp, replay

from tlprof import ProfileConfig, find_units, profile_model
from tlprof.cli import main
from tlprof.instrument import StepInfo
from tlprof.marks import END, OTHER, Label
from tlprof.nvtx_ranges import (
    NvtxPackage,
    NvtxRanges,
    NvtxUnavailable,
    TorchNvtx,
    load_backend,
    nsight_filter,
    nsight_regex_filter,
    nvtx_listeners,
)

NV_MODELS = str(Path(__file__).parent / "nv_models.py")
CLI_SMALL = ["--model", f"{NV_MODELS}:named_mlp", "--input-shape", "8", "--steps", "1",
             "--warmup", "1", "--device", "cpu", "--quiet"]

FWD = [f"tlprof/fwd/{n}" for n in UNIT_NAMES]
BWD = [f"tlprof/bwd/{n}" for n in reversed(UNIT_NAMES)]
HEAD = ["tlprof/other", "tlprof/zero_grad", *FWD, "tlprof/loss_fwd", "tlprof/loss_bwd"]
FULL_STEP = [*HEAD, *BWD, "tlprof/other", "tlprof/optimizer"]
FROZEN_STEP = [*HEAD, "tlprof/bwd/head", "tlprof/other", "tlprof/optimizer"]


def _profile_with(fake: RecordingNvtx) -> None:
    cfg = ProfileConfig(batch_size=2, input_shape=(8,), device="cpu", steps=1, warmup=1,
                        freeze=2, runs=("full", "frozen"))
    profile_model(named_mlp(), cfg, listeners=[NvtxRanges(fake)])


def test_full_and_frozen_steps_have_the_expected_ranges():
    fake = RecordingNvtx()
    _profile_with(fake)
    threads = replay(fake.calls)
    assert len(threads) == 1  # on CPU, backward runs on the calling thread
    ranges = next(iter(threads.values()))
    assert ranges.still_open == []
    # each run alone: warm-up, memory; then in turn, each run: re-warm, plain (no hooks, so no
    # unit ranges), timed
    runs = (("full", FULL_STEP), ("frozen", FROZEN_STEP))
    expected = {f"tlprof/step/{run}/{n}": step for run, step in runs for n in range(2)}
    expected.update({f"tlprof/step/{run}/{n}": ([] if n == 3 else step) for run, step in runs
                     for n in range(2, 5)})
    assert [r.name for r in ranges.roots] == list(expected)
    for root in ranges.roots:
        assert [c.name for c in root.children] == expected[root.name], root.name
        assert all(not c.children for c in root.children)


def test_one_colour_per_stage():
    fake = RecordingNvtx()
    _profile_with(fake)
    colour = {c.message: c.color for c in fake.calls if c.op == "push"}
    assert colour["tlprof/fwd/enc.fc1"] == colour["tlprof/fwd/enc.fc2"] != colour["tlprof/fwd/head"]
    assert colour["tlprof/bwd/enc.fc1"] == colour["tlprof/bwd/enc.fc2"] != colour["tlprof/fwd/enc.fc1"]
    assert colour["tlprof/zero_grad"] == colour["tlprof/optimizer"]


UNITS = find_units(named_mlp(), torch.randn(1, 8))


def _cuda_like_step(ranges: NvtxRanges, worker: ThreadPoolExecutor, n: int,
                    end_of_backward_on_worker: bool) -> None:
    """The marks of one CUDA step: backward hooks on autograd's device thread."""
    step = StepInfo("full", n, "timed", UNITS)
    ranges.on_step_begin(step)
    for label in (OTHER, Label("phase", "zero_grad"), Label("fwd", 1), Label("fwd", 2), Label("fwd", 3),
                  Label("phase", "loss_fwd"), Label("phase", "loss_bwd")):
        ranges.on_mark(label)

    def backward() -> None:
        for label in (Label("bwd", 3), Label("bwd", 2), Label("bwd", 1)):
            ranges.on_mark(label)
        if end_of_backward_on_worker:
            ranges.on_mark(OTHER)

    worker.submit(backward).result()
    if not end_of_backward_on_worker:
        ranges.on_mark(OTHER)
    ranges.on_mark(Label("phase", "optimizer"))
    ranges.on_mark(END)
    ranges.on_step_end(step)


def test_backward_ranges_stay_on_the_autograd_thread():
    fake = RecordingNvtx()
    ranges = NvtxRanges(fake)
    with ThreadPoolExecutor(max_workers=1) as worker:  # one long-lived thread, as autograd's
        for n in range(2):
            _cuda_like_step(ranges, worker, n, end_of_backward_on_worker=True)
        worker_id = worker.submit(threading.get_ident).result()
    threads = replay(fake.calls)
    assert set(threads) == {worker_id, next(t for t in threads if t != worker_id)}
    main_ranges = next(r for t, r in threads.items() if t != worker_id)
    assert main_ranges.still_open == [] and threads[worker_id].still_open == []
    assert [r.name for r in main_ranges.roots] == ["tlprof/step/full/0", "tlprof/step/full/1"]
    for root in main_ranges.roots:  # loss_bwd lasts while the main thread waits in backward()
        assert [c.name for c in root.children] == [*HEAD, "tlprof/optimizer"]
    assert [r.name for r in threads[worker_id].roots] == BWD * 2


def test_a_range_left_on_another_thread_is_popped_there_next_time():
    """If autograd's end-of-backward callback runs on the main thread, the device thread's last
    range cannot be popped from it; that thread pops it at its next mark, never elsewhere."""
    fake = RecordingNvtx()
    ranges = NvtxRanges(fake)
    with ThreadPoolExecutor(max_workers=1) as worker:
        for n in range(2):
            _cuda_like_step(ranges, worker, n, end_of_backward_on_worker=False)
        worker_id = worker.submit(threading.get_ident).result()
    threads = replay(fake.calls)  # fails on any pop of a range another thread pushed
    worker_ranges = threads.pop(worker_id)
    (main_ranges,) = threads.values()
    assert main_ranges.still_open == []
    assert [r.name for r in worker_ranges.roots] == BWD * 2
    assert worker_ranges.still_open == ["tlprof/bwd/enc.fc1"]  # until that thread marks again
    worker_calls = [c.op for c in fake.calls if c.thread == worker_id]
    assert worker_calls[5:7] == ["pop", "push"]  # step 1 begins by popping step 0's last range


def test_off_means_no_calls(monkeypatch, tmp_path):
    fake = RecordingNvtx()
    monkeypatch.setattr("tlprof.nvtx_ranges.load_backend", lambda: fake)
    for flags in ([], ["--no-nvtx"]):  # off by default on the CPU
        assert main(["profile", *CLI_SMALL, *flags]) == 0
    assert fake.calls == []
    assert main(["profile", *CLI_SMALL, "--nvtx"]) == 0
    ranges = next(iter(replay(fake.calls).values()))
    assert len(ranges.roots) == 4 and ranges.still_open == []


def test_default_is_on_for_cuda(monkeypatch):
    monkeypatch.setattr("tlprof.nvtx_ranges.load_backend", RecordingNvtx)
    assert len(nvtx_listeners(None, "cuda:0")) == 1
    assert nvtx_listeners(None, "cpu") == []
    assert nvtx_listeners(False, "cuda") == []


def test_no_nvtx_library_is_one_line_and_no_ranges(monkeypatch):
    def missing():
        raise NvtxUnavailable("no NVTX library: pip install nvtx, or use a CUDA build of torch")

    monkeypatch.setattr("tlprof.nvtx_ranges.load_backend", missing)
    said: list[str] = []
    assert nvtx_listeners(True, "cpu", said.append) == []
    assert len(said) == 1 and said[0].startswith("--nvtx: no NVTX library")


def test_nvtx_package_first_then_torch(monkeypatch):
    backend = load_backend()
    assert isinstance(backend, NvtxPackage) and backend.domain == "tlprof"
    backend.push("tlprof/step/test/0", 0x123456)  # no tool attached: a no-op domain
    backend.pop()
    monkeypatch.setitem(sys.modules, "nvtx", None)  # as on a machine without the package
    backend = load_backend()
    assert isinstance(backend, TorchNvtx) and backend.domain is None
    backend.push("tlprof/step/test/0", 0)
    backend.pop()


def test_nsight_filters_select_one_range():
    name = "tlprof/fwd/layer4.2.conv2"
    assert nsight_filter(name, "tlprof") == r"tlprof@tlprof\/fwd\/layer4.2.conv2/"
    assert nsight_filter(name, None) == r"tlprof\/fwd\/layer4.2.conv2/"
    assert nsight_regex_filter(name, "tlprof") == "regex:tlprof@^tlprof.fwd.layer4.2.conv2$/"
    assert nsight_regex_filter(name, None) == "regex:^tlprof.fwd.layer4.2.conv2$/"


@pytest.mark.parametrize("label", [Label("fwd", 9), Label("phase", "loss_fwd")])
def test_marks_outside_a_step_still_balance(label):
    fake = RecordingNvtx()
    ranges = NvtxRanges(fake)
    ranges.on_mark(label)
    ranges.on_mark(END)
    assert [(c.op, c.message) for c in fake.calls] == [
        ("push", "tlprof/fwd/#9" if label[0] == "fwd" else "tlprof/loss_fwd"), ("pop", None)]
