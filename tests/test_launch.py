"""Launch-bound detection: host stamps beside the GPU's, tested with fake clocks (tlprof.launch)."""

from __future__ import annotations

import pytest

from tlprof.launch import LAUNCH_SLACK_MS, analyse_step, launch_section
from tlprof.marks import END, OTHER, Label

F1, F2, B2, B1 = Label.fwd(1), Label.fwd(2), Label.bwd(2), Label.bwd(1)
LABELS = [OTHER, F1, F2, B2, B1, END]


def test_a_gpu_that_keeps_up_with_the_host_is_host_paced_and_a_backlog_is_not():
    # Forward: the host launches faster than the GPU runs (the lag grows to 2.6 ms, then 1 ms).
    # Backward: the GPU has caught up and reaches each mark as it is recorded: host-paced.
    gpu = [0.0, 1.0, 3.0, 6.0, 7.0, 8.0]
    host = [0.0, 0.2, 0.4, 5.0, 7.0, 8.0]
    step = analyse_step(list(zip(LABELS, gpu)), host)
    assert step.host_ms[F1] == pytest.approx(0.2) and step.gpu_ms[F1] == 2.0
    assert step.host_ms[F2] == pytest.approx(4.6) and step.gpu_ms[F2] == 3.0
    assert step.paced_ms[F1] == 0.0 and step.paced_ms[F2] == 0.0
    assert step.paced_ms[B2] == 1.0 and step.paced_ms[B1] == 1.0  # GPU reached them as launched
    assert step.paced_share == pytest.approx(2.0 / 8.0)


def test_a_lag_within_the_slack_is_host_paced_and_beyond_it_is_not():
    gpu = [(OTHER, 0.0), (F1, 1.0), (END, 2.0)]
    within = analyse_step(gpu, [0.0, 1.0 - LAUNCH_SLACK_MS / 2, 2.0])
    beyond = analyse_step(gpu, [0.0, 1.0 - 2 * LAUNCH_SLACK_MS, 2.0])
    assert within.paced_ms[OTHER] == 1.0 and beyond.paced_ms[OTHER] == 0.0


def test_a_unit_is_launch_bound_when_most_of_its_steps_are_host_paced():
    paced = analyse_step([(OTHER, 0.0), (F1, 1.0), (F2, 2.0), (END, 5.0)], [0.0, 1.0, 2.0, 5.0])
    backlog = analyse_step([(OTHER, 0.0), (F1, 1.0), (F2, 2.0), (END, 5.0)], [0.0, 0.1, 0.2, 0.3])
    section = launch_section([paced, paced, backlog], n_units=2)
    assert [u.fwd_launch_bound for u in section.units] == [True, True]
    assert section.launch_bound_units == [1, 2]
    assert section.gpu_wait_share.samples == [1.0, 1.0, 0.0]
    assert launch_section([paced, backlog, backlog], 2).launch_bound_units == []
    with pytest.raises(ValueError, match="3 GPU marks but 2 host stamps"):
        analyse_step([(OTHER, 0.0), (F1, 1.0), (END, 2.0)], [0.0, 1.0])


def test_a_profiler_with_host_stamps_reports_launch_figures_that_survive_a_save(tmp_path):
    import torch

    from tlprof import Profiler, RunDocument

    class Ticks:
        """Mark clock (the 'GPU') 1 ms per stamp; the host clock 0.5 ms per stamp: a growing lag."""

        name = "fake"

        def __init__(self, ms: float) -> None:
            self.t, self.ms = 0, ms

        def stamp(self) -> int:
            self.t += int(self.ms * 1e6)
            return self.t

        def sync(self) -> None:
            pass

        def elapsed_ms(self, a: int, b: int) -> float:
            return (b - a) / 1e6

        def recycle(self) -> None:
            pass

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with Profiler(model, example=torch.randn(1, 4), warmup=0, clock=Ticks(1.0), host_stamps=True) as prof:
        prof._instrumenter.host_ns = Ticks(0.5).stamp
        for _ in range(5):
            with prof.step():
                model(torch.randn(3, 4)).sum().backward()
    path = tmp_path / "run.json"
    prof.document("user").save(path)
    launch = RunDocument.load(path).runs["user"].launch
    assert [u.fwd_host_ms.median for u in launch.units] == [0.5, 0.5]
    assert launch.gpu_wait_share.median == 0.0 and launch.launch_bound_units == []
    assert Profiler(model, example=torch.randn(1, 4))._instrumenter.host_stamps is False  # the CPU needs none


def test_a_host_bound_run_gets_a_note_and_claim_2_is_called_host_bound():
    from report_docs import hand_document

    from tlprof import RunDocument
    from tlprof.reports.builder import build_report

    doc = RunDocument.from_dict(hand_document())
    paced = analyse_step([(OTHER, 0.0), (F1, 1.0), (END, 4.0)], [0.0, 1.0, 4.0])
    doc.runs["frozen"].launch = launch_section([paced], len(doc.units))
    notes = build_report(RunDocument.from_dict(doc.to_dict())).notes
    assert any(n.startswith("frozen run: the GPU waited for the host in up to 100% of the step (1 "
                            "launch-bound units)") for n in notes)
    assert any(n.startswith("claim 2: the frozen/full ratio is host-bound (frozen run") for n in notes)
    doc.runs["frozen"].launch = launch_section([analyse_step([(OTHER, 0.0), (END, 4.0)], [0.0, 0.1])], 1)
    assert not any("host-bound" in n for n in build_report(doc).notes)
