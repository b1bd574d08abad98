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


def test_label_text_round_trips_and_names_units():
    names = {2: "layer1.0.conv1"}
    for label in (Label.fwd(2), Label.bwd(12), Label.phase("loss_bwd"), END):
        assert Label.parse(label.text()) == label
    assert Label.fwd(2).text(names) == "fwd:layer1.0.conv1"
    assert Label.bwd(2).text(names, sep="/") == "bwd/layer1.0.conv1"
    assert Label.fwd(3).text(names) == "fwd:#3" and Label.phase("optimizer").text(names) == "optimizer"
    assert Label.fwd(2) == ("fwd", 2)


def test_an_unknown_phase_is_refused_at_once():
    import torch

    from tlprof import Profiler, TlprofError
    from tlprof.clock import HostClock
    from tlprof.instrument import Instrumenter, PlainTimer

    with pytest.raises(TlprofError, match="unknown phase 'loss_backward'; the phases are zero_grad"):
        Label.phase("loss_backward")
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    prof = Profiler(model, example=torch.randn(1, 2))
    inst = Instrumenter(model, prof.units, HostClock())
    for marker in (prof, inst, PlainTimer(HostClock())):
        with pytest.raises(TlprofError, match="unknown phase"):
            marker.begin("loss_backward")


def test_a_step_that_raises_leaves_no_hook_and_marks_nothing_more():
    import torch

    from tlprof import find_units
    from tlprof.clock import HostClock
    from tlprof.instrument import Instrumenter

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    inst = Instrumenter(model, find_units(model, torch.randn(1, 2)), HostClock())
    with pytest.raises(RuntimeError, match="planted"), inst.step() as result:
        model(torch.randn(3, 2))
        raise RuntimeError("planted")
    assert result.sample is None and not inst.active
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())
    marks = len(inst.marks)
    model(torch.randn(3, 2)).sum().backward()
    assert len(inst.marks) == marks
