"""Data-parallel profiling: 2 ranks on gloo (CPU), gathered on rank 0; bad launches; a rank that dies.

Every process runs under a timeout and every process group has one, so a broken rank cannot hang
the suite.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ddp_models import SPIN_S

from tlprof.cli import main
from tlprof.distributed import ENV_KEYS, check_devices, check_same_options
from tlprof.document import RunDocument
from tlprof.errors import TlprofError
from tlprof.reports.builder import build_report
from tlprof.reports.compare import compare, compare_markdown
from tlprof.reports.render import render

TESTS = Path(__file__).parent
ROOT = TESTS.parent
MODEL = TESTS / "ddp_models.py"
PARAMS = 16 * 64 + 64 + 2 * (64 * 64 + 64) + 64 * 4 + 4  # the four Linear units of ddp_models.mlp
TAIL_PARAMS = 64 * 64 + 64 + 64 * 4 + 4  # units 3 and 4: what trains with --freeze 2
WALL_S = 120  # a hung rank fails the test instead of the suite


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS)}


@pytest.fixture(scope="module")
def ddp_doc(tmp_path_factory) -> RunDocument:
    """torchrun, 2 ranks, rank 1 spins 40 ms in unit 1's forward; full and frozen (2 of 4) runs."""
    out = tmp_path_factory.mktemp("ddp") / "ddp.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", "localhost:0", "-m", "tlprof", "profile",
           "--model", f"{MODEL}:slow_rank1", "--input-shape", "16", "--batch-size", "8", "--device", "cpu",
           "--steps", "3", "--warmup", "1", "--freeze", "2", "--ddp", "--ddp-timeout", "30",
           "--quiet", "--json", str(out)]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=WALL_S, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return RunDocument.load(out)


def test_both_ranks_are_gathered_into_one_document(ddp_doc):
    for run in ddp_doc.runs.values():
        d = run.distributed
        assert (d.world_size, d.backend, d.rank) == (2, "gloo", 0)
        assert [r.rank for r in d.ranks] == [0, 1]
        assert all(len(r.step_ms.samples) == 3 and len(r.unit_fwd_ms) == 4 for r in d.ranks)
        assert d.ranks[0].step_ms == run.step_ms  # rank 0's own figures are the run's


def test_bytes_all_reduced_are_the_trainable_gradients(ddp_doc):
    full, frozen = ddp_doc.runs["full"].distributed, ddp_doc.runs["frozen"].distributed
    assert full.comm.bytes_per_step == full.comm.grad_bytes == 4 * PARAMS
    assert frozen.comm.bytes_per_step == frozen.comm.grad_bytes == 4 * TAIL_PARAMS
    assert full.comm.padding.startswith("none") and frozen.comm.padding.startswith("none")
    assert [r.bytes_per_step for r in frozen.ranks] == [4 * TAIL_PARAMS] * 2
    assert sorted({u for b in full.comm.buckets for u in b.units}) == [1, 2, 3, 4]
    assert sorted({u for b in frozen.comm.buckets for u in b.units}) == [3, 4]
    for b in full.comm.buckets:
        assert 0 <= b.launch_ms.median <= b.finish_ms.median <= ddp_doc.runs["full"].step_ms.median


def test_marks_keep_their_order_under_ddp(ddp_doc):
    """DDP's gradient-ready hooks and the all-reduce do not reorder tlprof's backward marks."""
    for run, expected in (("full", [4, 3, 2, 1]), ("frozen", [4, 3])):
        spans = ddp_doc.runs[run].timeline
        assert [s.unit for s in spans if s.kind == "bwd"] == expected
        kinds = [s.kind for s in spans]
        assert kinds.index("bwd") > max(i for i, k in enumerate(kinds) if k == "fwd")


def test_a_planted_delay_shows_as_the_slow_rank(ddp_doc):
    report = build_report(ddp_doc)
    spin_ms = SPIN_S * 1000
    for summary in report.distributed.ranks:
        assert summary.slowest_rank == 1 and summary.holds_back, summary.verdict
        rank0, rank1 = summary.ranks
        assert rank1.compute_ms - rank0.compute_ms > 0.7 * spin_ms
        assert rank0.exposed_ms > 0.7 * spin_ms  # rank 0 waits for rank 1 in the all-reduce
        assert summary.compute_spread > 2
        unit1 = summary.units[0]
        assert unit1.slowest_rank == 1 and unit1.max_ms - unit1.min_ms > 0.7 * spin_ms
        assert "rank 1 holds the others back" in summary.verdict


def test_saving_is_split_into_compute_and_communication(ddp_doc):
    report = build_report(ddp_doc)
    compute, comm = report.distributed.saving
    saved = report.frozen.saved_ms
    assert compute.ms + comm.ms == pytest.approx(saved)
    assert comm.bytes == 4 * (PARAMS - TAIL_PARAMS)
    assert "measured_compute" in report.cost_model.rows
    assert "data-parallel over 2 ranks" in report.cost_model.rows["measured"].departs


@pytest.mark.parametrize("fmt", ["rich", "markdown", "html", "json"])
def test_every_format_shows_the_data_parallel_section(ddp_doc, fmt):
    text = render(build_report(ddp_doc), fmt)
    assert "rank 1 holds the others back" in text
    assert f"{4 * TAIL_PARAMS:,}" in text or str(4 * TAIL_PARAMS) in text
    if fmt == "json":
        assert json.loads(text)["distributed"]["world_size"] == 2


def test_compare_two_distributed_runs(ddp_doc):
    c = compare(ddp_doc, ddp_doc)
    names = {d.name for rc in c.runs for d in rc.summary}
    assert {"exposed communication", "all-reduce (Σ buckets)", "rank 0 step", "rank 1 step"} <= names
    assert f"{4 * PARAMS:,} bytes all-reduced per step in A (2 ranks)" in compare_markdown(c)


def test_distributed_document_round_trips(ddp_doc, tmp_path):
    ddp_doc.save(tmp_path / "again.json")
    assert RunDocument.load(tmp_path / "again.json") == ddp_doc


# -- bad input ------------------------------------------------------------------------------


def test_ddp_without_torchrun_says_how_to_launch(monkeypatch, capsys):
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    code = main(["profile", "--model", f"{MODEL}:mlp", "--input-shape", "16", "--ddp", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "torchrun --nproc-per-node N -m tlprof profile" in err[0] and "RANK" in err[0]


def test_ranks_with_different_options_are_refused():
    same = {"batch_size": 8, "freeze": 2, "device": "cpu"}
    check_same_options([same, {**same, "device": "cuda:1"}])  # each rank has its own device
    with pytest.raises(TlprofError, match=r"batch_size is 8 on rank 0 but 4 on rank 1"):
        check_same_options([same, {**same, "batch_size": 4}])


def test_more_ranks_than_gpus_are_refused():
    check_devices("cuda", 1, 1)
    check_devices("cpu", 8, 0)  # gloo ranks share the CPU
    with pytest.raises(TlprofError, match=r"2 ranks on this machine but only 1 CUDA dev.*--nproc-per-node 1"):
        check_devices("cuda", 2, 1)


# -- a rank that dies ---------------------------------------------------------------------

WORKER = textwrap.dedent("""
    import sys
    import torch
    from ddp_models import fails_on_rank1
    from tlprof import ProfileConfig, TlprofError, profile_model
    from tlprof.distributed import DdpOptions

    model = fails_on_rank1()
    values = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    cfg = ProfileConfig(batch_size=4, input_shape=(16,), device="cpu", steps=3, warmup=1, freeze=1,
                        runs=("full", "frozen"))
    code = 0
    try:
        profile_model(model, cfg, ddp=DdpOptions(timeout_s=20))
    except TlprofError as exc:
        print(f"tlprof: error: {exc}", file=sys.stderr)
        code = 2
    except RuntimeError as exc:
        code = 1
    same = all(torch.equal(values[k], v) for k, v in model.state_dict().items())
    print("restored", same and flags == [p.requires_grad for p in model.parameters()] and model.training
          and not model._forward_hooks and not model._forward_pre_hooks)
    sys.exit(code)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_rank_that_fails_stops_the_others_with_one_line(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    base = {**_env(), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(_free_port())}
    procs = [subprocess.Popen([sys.executable, str(script)], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env={**base, "RANK": str(r), "LOCAL_RANK": str(r)})
             for r in (0, 1)]
    try:
        results = [p.communicate(timeout=WALL_S) for p in procs]
    finally:
        for p in procs:
            p.kill()
    (out0, err0), (out1, _) = results
    lines = [x for x in err0.splitlines() if x.startswith("tlprof")]
    assert procs[0].returncode == 2 and procs[1].returncode != 0, err0[-2000:]
    assert len(lines) == 1 and lines[0].startswith("tlprof: error: rank 0 of 2: another rank stopped")
    assert "the model is restored" in lines[0] and "pair.cc" not in lines[0]
    assert "restored True" in out0 and "restored True" in out1


# -- the user's own DDP loop, and world size 1 (NCCL when a GPU is here) ------------------

BACKENDS = ["gloo", pytest.param("nccl", marks=pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="NCCL needs a GPU"))]


@pytest.fixture(params=BACKENDS)
def one_rank_group(request):
    import datetime

    import torch
    import torch.distributed as dist

    device = torch.device("cuda", 0) if request.param == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(request.param, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                            world_size=1, timeout=datetime.timedelta(seconds=20))
    try:
        yield device
    finally:
        dist.destroy_process_group()


def test_user_ddp_loop_records_its_all_reduce(one_rank_group):
    import torch
    from ddp_models import mlp
    from torch.nn.parallel import DistributedDataParallel

    from tlprof import Profiler
    from tlprof.distributed import gather_document

    device = one_rank_group
    model = mlp().to(device)
    for p in model[0].parameters():
        p.requires_grad_(False)
    ddp = DistributedDataParallel(model, device_ids=[0] if device.type == "cuda" else None)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    x = torch.randn(8, 16, device=device)
    with Profiler(ddp, example=x[:1], optimizer=opt, warmup=1) as prof:
        for _ in range(6):
            with prof.step():
                opt.zero_grad()
                ddp(x).sum().backward()
                opt.step()
    doc = gather_document(prof.document("user"))
    d = doc.runs["user"].distributed
    assert [u.name for u in doc.units] == ["0", "2", "4", "6"]  # found inside the DDP wrapper
    assert d.world_size == 1 and [r.rank for r in d.ranks] == [0]
    assert d.comm.bytes_per_step == 4 * (PARAMS - 16 * 64 - 64)
    assert len(d.comm.exposed_ms.samples) == 2 and d.comm.backward_end_ms.median > 0


def test_engine_in_the_users_group_restores_the_model(one_rank_group):
    import torch
    from ddp_models import mlp

    from tlprof import ProfileConfig, profile_model
    from tlprof.distributed import DdpOptions

    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = ProfileConfig(batch_size=4, input_shape=(16,), device=one_rank_group.type, steps=2, warmup=1,
                        freeze=2, runs=("full", "frozen"))
    doc = profile_model(model, cfg, ddp=DdpOptions(timeout_s=20))
    import torch.distributed as dist

    assert dist.is_initialized()  # the user's group is left to the user
    assert doc.runs["frozen"].distributed.comm.bytes_per_step == 4 * TAIL_PARAMS
    assert all(torch.equal(before[k], v.cpu()) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters()) and not model._forward_pre_hooks


def test_only_timed_steps_are_stamped_and_a_bucket_is_read_once(one_rank_group):
    """Warm-up, memory and plain steps run the plain all-reduce; the buckets' facts are kept."""
    import torch
    from ddp_models import mlp
    from torch.nn.parallel import DistributedDataParallel

    from tlprof import Profiler

    device = one_rank_group
    model = mlp().to(device)
    ids = [0] if device.type == "cuda" else None
    ddp = DistributedDataParallel(model, device_ids=ids, bucket_cap_mb=0.01)  # several buckets
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(8, 16, device=device)
    kinds, stamps = [], []
    with Profiler(ddp, example=x[:1], optimizer=opt, warmup=1) as prof:
        clock = prof.comm.clock
        stamp = clock.stamp
        clock.stamp = lambda: stamps.append(kinds[-1]) or stamp()  # the kind of the step stamping
        for _ in range(6):
            kinds.append(prof.next_kind())
            with prof.step():
                opt.zero_grad()
                ddp(x).sum().backward()
                opt.step()
    assert kinds == ["warmup", "memory", "plain", "timed", "plain", "timed"]
    assert len(stamps) > 4 and set(stamps) == {"timed"}
    first, second = prof.comm.steps
    assert len(first.buckets) > 1 and [b for b, _, _ in first.buckets] == [b for b, _, _ in second.buckets]
    assert all(a is b for (a, _, _), (b, _, _) in zip(first.buckets, second.buckets))


class _FakeBucket:
    def __init__(self, index, params):
        import torch

        self._index, self._params = index, params
        self._buffer = torch.empty(sum(p.numel() for p in params))

    def index(self):
        return self._index

    def buffer(self):
        return self._buffer

    def parameters(self):
        return self._params


def test_a_bucket_is_read_again_when_it_changes_and_warnings_are_stated_once():
    import torch
    from ddp_models import mlp

    from tlprof import find_units
    from tlprof.distributed import CommRecorder, StepComm

    model = mlp()
    recorder = CommRecorder(torch.device("cpu"), find_units(model, torch.randn(1, 16)))
    head, tail = list(model[0].parameters()), list(model[6].parameters())
    bucket = recorder._bucket(_FakeBucket(0, head))
    assert recorder._bucket(_FakeBucket(0, head)) is bucket and bucket.units == [1]
    rebuilt = recorder._bucket(_FakeBucket(0, tail))  # DDP rebuilt its buckets: index 0 holds others
    assert rebuilt is not bucket and (rebuilt.units, rebuilt.params) == ([4], 64 * 4 + 4)
    recorder.steps = [StepComm([(bucket, 0.0, 1.0)], 1.0), StepComm([(rebuilt, 0.0, 1.0)], 1.0)]
    recorder.comm(0)
    recorder.comm(0)
    assert recorder.warnings == [f"bytes all-reduced differ between steps: {[4 * 260, 4 * 1088]}"]
