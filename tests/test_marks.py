from __future__ import annotations

import pytest

from tlprof.marks import END, OTHER, PHASES, Label, attribute


def test_each_interval_goes_to_what_began_at_its_start():
    marks = [
        (OTHER, 0.0), (Label("phase", "zero_grad"), 1.0), (Label("fwd", 1), 2.0), (Label("fwd", 2), 5.0),
        (Label("phase", "loss_fwd"), 9.0), (Label("phase", "loss_bwd"), 10.0), (Label("bwd", 2), 12.0),
        (Label("bwd", 1), 20.0), (OTHER, 23.0), (Label("phase", "optimizer"), 23.5), (END, 30.0),
    ]
    s = attribute(marks, 2)
    assert s.fwd_ms == [3.0, 4.0]
    assert s.bwd_ms == [3.0, 8.0]
    assert s.phases_ms == {"zero_grad": 1.0, "loss_fwd": 1.0, "loss_bwd": 2.0,
                           "optimizer": 6.5, "other": 1.5}
    assert s.step_ms == 30.0
    assert s.accounted_ms() == pytest.approx(s.step_ms)
    assert set(s.phases_ms) == set(PHASES)


def test_a_unit_called_twice_accumulates_both_spans():
    marks = [(OTHER, 0.0), (Label("fwd", 1), 1.0), (Label("fwd", 2), 2.0), (Label("fwd", 1), 4.0), (END, 7.0)]
    assert attribute(marks, 2).fwd_ms == [1.0 + 3.0, 2.0]


def test_a_step_without_end_mark_is_refused():
    with pytest.raises(ValueError):
        attribute([(OTHER, 0.0), (Label("fwd", 1), 1.0)], 1)
