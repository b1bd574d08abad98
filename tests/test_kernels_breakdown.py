"""The per-unit kernel breakdown on CPU: planted ops land on their unit; disagreement is reported."""

from __future__ import annotations

import threading

import pytest
from kernel_models import planted_ops, python_sleep

from tlprof import ProfileConfig, profile_model
from tlprof.document import RunDocument
from tlprof.kernels import KernelsExtra
from tlprof.kernels.breakdown import RangeMarks, parse_range, range_name
from tlprof.marks import Label

CFG = dict(batch_size=2, input_shape=(16,), device="cpu", steps=1, warmup=1)


def _names(kernels: list[dict]) -> list[str]:
    return [k["name"] for k in kernels]


@pytest.fixture(scope="module")
def planted_run():
    cfg = ProfileConfig(**CFG)
    profile = profile_model(planted_ops(), cfg, extras=[KernelsExtra(measure=False)])
    return RunDocument.from_dict(profile.to_dict()).runs["full"]  # as read back from JSON


def test_planted_forward_op_is_charged_to_its_unit(planted_run):
    units = planted_run.units
    assert _names(units[1].kernels.kernels_fwd)[0] == "aten::cdist"
    assert [u.index for u in units if "aten::cdist" in _names(u.kernels.kernels_fwd)] == [2]
    assert units[1].kernels.kernels_fwd[0]["count"] == 1
    fwd_ms = [u.kernels.kernel_fwd_ms for u in units]
    assert max(fwd_ms) == fwd_ms[1]


def test_planted_backward_op_is_charged_to_its_unit(planted_run):
    units = planted_run.units
    holders = [u.index for u in units
               if any("cdist" in n or "_SlowBackwardOp" in n for n in _names(u.kernels.kernels_bwd))]
    assert holders == [3]
    bwd_ms = [u.kernels.kernel_bwd_ms for u in units]
    assert max(bwd_ms) == bwd_ms[2]
    assert all(u.kernels.kernel_fwd_ms > 0 and u.kernels.kernel_bwd_ms > 0 for u in units)


def test_agreement_figures_are_stored(planted_run):
    assert planted_run.kernels.kernel_agreement > 0
    assert all(u.kernels.kernel_agreement > 0 for u in planted_run.units)
    assert planted_run.kernels.source == "cpu ops"


def test_time_outside_any_op_is_reported_as_disagreement():
    """Unit 2 sleeps in Python: its hook time has 30 ms that no op accounts for."""
    cfg = ProfileConfig(**CFG)
    run = profile_model(python_sleep(), cfg, extras=[KernelsExtra(measure=False)]).runs["full"]
    assert run.units[1].kernels.kernel_agreement < 0.5
    warnings = [w.text for w in run.warnings if w.part == "kernels"]
    assert any(w.startswith("kernel time is") for w in warnings)  # the run as a whole
    flagged = [w.split("for unit ")[1] for w in warnings if "for unit" in w]
    assert len(flagged) == 1 and any(x.startswith("2 (") for x in flagged[0].split(", "))


def test_range_names_round_trip():
    for label in [Label("fwd", 3), Label("bwd", 12), Label("phase", "loss_bwd")]:
        assert parse_range(range_name(label)) == label
    assert range_name(Label("phase", "other")) is None and range_name(Label("end", "")) is None
    assert parse_range("aten::mm") is None


def test_ranges_close_on_the_thread_that_opened_them():
    marks = RangeMarks()
    marks.on_mark(Label("fwd", 1))

    def backward_thread() -> None:
        marks.on_mark(Label("bwd", 2))
        marks.on_mark(Label("bwd", 1))
        marks.on_mark(Label("phase", "other"))  # the end of backward closes this thread's range

    t = threading.Thread(target=backward_thread)
    t.start()
    t.join()
    assert marks.close_here() == 0
