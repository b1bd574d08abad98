"""The context manager around a user's own training loop: the same engine as the runner."""

from __future__ import annotations

import json

import pytest
import torch

from tlprof import Meta, Profiler, RunDocument, Stats, TlprofError

from models import DELAY_MS, planted_delays


def _train(model, opt, prof, steps):
    for _ in range(steps):
        with prof.step():
            opt.zero_grad()
            loss = model(torch.randn(4, 16)).square().mean()
            prof.begin("loss_bwd")
            loss.backward()
            opt.step()


def test_user_loop_measures_units_and_optimizer():
    model = planted_delays()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Profiler(model, example=torch.randn(1, 16), optimizer=opt, warmup=1) as prof:
        _train(model, opt, prof, steps=6)  # warm-up, memory, then plain and timed in turn
    run = prof.run()
    assert len(run.step_ms.samples) == 2 and len(run.plain_step_ms.samples) == 2
    assert run.units[1].fwd_ms.median >= DELAY_MS and run.units[2].bwd_ms.median >= DELAY_MS
    assert run.phases_ms["optimizer"].median > 0
    assert run.units[0].saved_bytes > 0 and run.units[0].optimizer_state_bytes == 0


def test_user_loop_document_renders_as_a_report(tmp_path, capsys):
    from tlprof.cli import main

    model = planted_delays()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Profiler(model, example=torch.randn(1, 16), optimizer=opt, warmup=1) as prof:
        _train(model, opt, prof, steps=4)
    path = tmp_path / "mine.json"
    prof.document(meta={"model": "planted"}).save(path)
    assert main(["report", str(path), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["t_ms"]) == 4 and report["t_ms"][1] >= DELAY_MS


def test_too_few_steps_is_a_clear_error():
    model = planted_delays()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Profiler(model, example=torch.randn(1, 16), optimizer=opt, warmup=1) as prof:
        _train(model, opt, prof, steps=2)
    with pytest.raises(TlprofError, match="at least 4 steps"):
        prof.run()


def test_a_run_document_is_strict_json_even_with_undefined_figures(tmp_path):
    model = planted_delays()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Profiler(model, example=torch.randn(1, 16), optimizer=opt, warmup=0) as prof:
        _train(model, opt, prof, steps=3)  # memory, plain, timed
    run = prof.run()
    run.plain_step_ms, run.plain_wall_ms = Stats([float("nan")]), Stats()  # as with no plain step
    path = tmp_path / "run.json"
    RunDocument(meta=Meta(), units=[], runs={"user": run}).save(path)
    text = path.read_text()
    assert "NaN" not in text and '"overhead_ratio": null' in text
    loaded = RunDocument.load(path).runs["user"]
    assert loaded.step_ms.samples == run.step_ms.samples
