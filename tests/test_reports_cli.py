"""``tlprof report``, ``compare`` and ``sweep`` through the command line, on tiny models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from report_docs import TINY, hand_document

from tlprof.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two saved profiles of the tiny model: freeze 3 (every run) and freeze 2, batch 4."""
    d = tmp_path_factory.mktemp("runs")
    paths = {"a": d / "a.json", "b": d / "b.json"}
    assert main(["profile", *TINY, "--freeze", "3", "--runs", "all", "--json", str(paths["a"]),
                 "--quiet"]) == 0
    assert main(["profile", *TINY, "--freeze", "2", "--batch-size", "4", "--json", str(paths["b"]),
                 "--quiet"]) == 0
    return paths


def test_report_formats(runs, capsys, tmp_path):
    rc, out, _ = run_cli(capsys, "report", runs["a"], "--format", "json", "--models", "4")
    assert rc == 0
    d = json.loads(out)
    assert d["schema"] == "tlprof.report/2" and d["cost_model"]["k"] == [1, 2, 3, 4]
    assert "measured_cached" in d["cost_model"]["rows"]
    for fmt, marker in (("markdown", "## 4. The paper's claims"), ("html", "<svg"),
                        ("csv", "first_unit,units,name"), ("rich", "4. The paper's claims")):
        target = tmp_path / f"r.{fmt}"
        rc, out, err = run_cli(capsys, "report", runs["a"], "--format", fmt, "-o", target)
        assert rc == 0 and out == "" and str(target) in err
        assert marker in target.read_text()


@pytest.mark.parametrize("extra", [[], ["--different-data"], ["--steps-per-epoch", "50", "--epochs", "3"]])
def test_report_json_one_model_costs_the_same_either_way(runs, capsys, tmp_path, extra):
    hand = tmp_path / "hand.json"
    hand.write_text(json.dumps(hand_document()))
    for path in (hand, runs["a"]):
        rc, out, _ = run_cli(capsys, "report", path, "--format", "json", "--models", "3", *extra)
        assert rc == 0
        rows = json.loads(out)["cost_model"]["rows"]
        assert set(rows) == {"paper_uniform", "paper_measured_t", "measured", "measured_cached"}
        for name, row in rows.items():
            assert row["transfer"][0] == pytest.approx(row["classic"][0]), (path.name, name)
            assert row["ratio"][0] == pytest.approx(1.0), (path.name, name)


def test_report_json_counts_models_by_hand(capsys, tmp_path):
    hand = tmp_path / "hand.json"
    hand.write_text(json.dumps(hand_document()))  # s_full 28, s_frozen 18, F_N 3, h_N 10 ms
    rc, out, _ = run_cli(capsys, "report", hand, "--format", "json", "--models", "3")
    d = json.loads(out)
    assert d["options"]["data_per_model"] is False
    assert d["cost_model"]["rows"]["measured"]["transfer"] == [28, 46, 64]  # 28 + (k−1)·18
    assert d["cost_model"]["rows"]["measured_cached"]["transfer"] == [28, 41, 51]  # + 3 once + (k−1)·10
    rc, out, _ = run_cli(capsys, "report", hand, "--format", "json", "--models", "3", "--different-data")
    d = json.loads(out)
    assert d["options"]["data_per_model"] is True
    assert d["cost_model"]["rows"]["measured_cached"]["transfer"] == [28, 41, 54]  # 28 + (k−1)·13
    assert "data per model" in d["cost_model"]["rows"]["measured_cached"]["formula"]


def test_report_epochs_and_plots(runs, capsys, tmp_path):
    rc, out, err = run_cli(capsys, "report", runs["a"], "--format", "json", "--steps-per-epoch",
                           "1000", "--epochs", "100", "--granularity", "stage", "--plots",
                           tmp_path / "plots")
    assert rc == 0
    d = json.loads(out)
    cm = d["cost_model"]
    assert (cm["steps_per_epoch"], cm["epochs"]) == (1000, 100) and cm["unit"] in ("s", "min", "h")
    full_ms = d["full_step_ms"]
    assert cm["rows"]["measured"]["classic"][0] == pytest.approx(full_ms * 1e5 / cm["ms_per_unit"])
    assert len(list((tmp_path / "plots").glob("*.svg"))) == 4 and "SVG" in err


def test_rich_report_on_the_terminal(runs, capsys):
    rc, out, _ = run_cli(capsys, "report", runs["a"], "--granularity", "block")
    assert rc == 0
    assert "1. Empirical t per block" in out and "stage1.0" in out
    assert re.search(r"cached features\s+classic", out)


def test_compare_two_runs(runs, capsys):
    rc, out, _ = run_cli(capsys, "compare", runs["a"], runs["b"], "--format", "json")
    assert rc == 0
    d = json.loads(out)
    assert d["schema"] == "tlprof.compare/1"
    assert set(d["runs"]) == {"full", "frozen"} and d["only_in_a"] == ["cached"]
    assert "frozen run: freeze 3 in A, 2 in B" in d["notes"]
    step = d["runs"]["full"]["summary"][0]
    assert step["name"] == "step" and step["delta_ms"] == pytest.approx(step["b_ms"] - step["a_ms"])
    units = d["runs"]["frozen"]["units"]
    assert [u["index"] for u in units] == [1, 2, 3, 4, 5, 6]
    u = units[4]
    assert u["a_ms"] == pytest.approx(u["a_fwd_ms"] + u["a_bwd_ms"])
    rc, out, _ = run_cli(capsys, "compare", runs["a"], runs["b"])
    assert rc == 0 and "full run, per unit" in out and "B/A" in out
    rc, out, _ = run_cli(capsys, "compare", runs["a"], runs["b"], "--format", "csv")
    assert out.splitlines()[0].startswith("run,kind,index,name")


def test_sweep_then_report_it(capsys, tmp_path):
    path = tmp_path / "sweep.json"
    rc, out, _ = run_cli(capsys, "sweep", *TINY, "--freeze", "0,3,1", "--runs", "all",
                         "--json", path)
    assert rc == 0 and "Freeze sweep" in out
    doc = json.loads(path.read_text())
    assert doc["schema"] == "tlprof.sweep/2"
    assert [p["freeze"] for p in doc["points"]] == [1, 3]
    assert set(doc["points"][0]["runs"]) == {"frozen", "cached"}
    rc, out, _ = run_cli(capsys, "report", path, "--format", "json")
    rows = json.loads(out)["rows"]
    assert [r["freeze"] for r in rows] == [0, 1, 3]
    assert rows[0]["step_ratio"] == 1.0
    assert rows[2]["paper_ratio"] == pytest.approx(3 / 6)
    full_ms = json.loads(out)["full_step_ms"]
    frozen_ms = doc["points"][1]["runs"]["frozen"]["step_ms"]["median"]
    assert rows[2]["step_ratio"] == pytest.approx(frozen_ms / full_ms)
    rc, out, _ = run_cli(capsys, "report", path, "--format", "csv", "--plots", tmp_path / "p")
    assert rc == 0 and len(out.splitlines()) == 4
    assert (tmp_path / "p" / "sweep.svg").read_text().startswith("<svg")


def test_profile_prints_the_report(capsys):
    rc, out, _ = run_cli(capsys, "profile", *TINY, "--freeze", "2", "--runs", "all")
    assert rc == 0
    assert "2. The paper's claims" in out and re.search(r"cached features\s+classic", out)


# -- bad input: one clear line, exit code 2 -------------------------------------------


def _bad_documents(tmp_path: Path) -> dict[str, Path]:
    good = json.dumps(hand_document(), indent=1)
    wrong = {**hand_document(), "schema": "tlprof.run/0"}
    no_units = hand_document()
    del no_units["runs"]["full"]["units"]
    docs = {
        "corrupt": "{not json at all",
        "truncated": good[: len(good) // 2],
        "wrong schema": json.dumps(wrong),
        "other JSON": "[1, 2, 3]",
        "incomplete": json.dumps(no_units),
        "empty": "",
        "binary": b"\x89PNG\r\n\x1a\n\x00\xff",
    }
    paths = {}
    for name, content in docs.items():
        p = tmp_path / f"{name.replace(' ', '_')}.json"
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        paths[name] = p
    paths["missing"] = tmp_path / "missing.json"
    return paths


@pytest.mark.parametrize("command", ["report", "compare"])
def test_bad_documents_give_one_error_line(capsys, tmp_path, command):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(hand_document()))
    for name, path in _bad_documents(tmp_path).items():
        argv = ["report", path] if command == "report" else ["compare", good, path]
        rc, out, err = run_cli(capsys, *argv)
        lines = err.strip().splitlines()
        assert rc == 2, name
        assert len(lines) == 1 and lines[0].startswith("tlprof: error: "), (name, err)
        assert str(path) in lines[0], name
        assert "Traceback" not in err and out == ""


def test_bad_options_give_one_error_line(capsys, tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(hand_document()))
    for argv in (["report", good, "--models", "0"], ["report", good, "--epochs", "0"],
                 ["sweep", *TINY, "--freeze", "1,x"], ["sweep", *TINY, "--freeze", "0,9"],
                 ["profile", *TINY, "--runs", "cached"]):
        rc, _, err = run_cli(capsys, *argv)
        assert rc == 2 and len(err.strip().splitlines()) == 1, (argv, err)
        assert err.startswith("tlprof: error: ")


def test_headers_give_every_setting_and_compare_lists_what_differs(tmp_path, capsys):
    from report_docs import hand_document

    a, b = hand_document(), hand_document()
    a["meta"].update(optimizer="sgd", channels_last=False, cpu_threads=1, torch_version="2.14.1",
                     tlprof_version="0.1.0")
    b["meta"].update(optimizer="adam", channels_last=True, cpu_threads=2, torch_version="2.14.1",
                     tlprof_version="0.1.0")
    paths = []
    for name, doc in (("a", a), ("b", b)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(doc))
    rc, out, _ = run_cli(capsys, "report", paths[1], "--format", "markdown")
    for text in ("optimizer adam", "channels-last yes", "steps 5 measured + 1 warm-up", "threads 2",
                 "torch 2.14.1", "tlprof 0.1.0", "batch 2", "input 3×8×8", "precision fp32"):
        assert text in out, text
    rc, out, _ = run_cli(capsys, "compare", *paths, "--format", "json")
    found = {d["setting"]: (d["a"], d["b"]) for d in json.loads(out)["differences"]}
    assert found == {"optimizer": ("sgd", "adam"), "channels-last": ("no", "yes"), "threads": ("1", "2")}
    rc, out, _ = run_cli(capsys, "compare", *paths)
    assert "optimizer sgd (A) vs adam (B)" in " ".join(out.split()) and "measured different work" in out


def test_the_user_loop_header_has_no_empty_settings():
    import torch
    from rich.console import Console

    from tlprof import Profiler
    from tlprof.reports.profile_view import header
    from tlprof.reports.provenance import SETTINGS

    from models import planted_delays

    model = planted_delays()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Profiler(model, example=torch.randn(1, 16), optimizer=opt, warmup=0) as prof:
        for _ in range(3):
            with prof.step():
                opt.zero_grad()
                model(torch.randn(4, 16)).sum().backward()
                opt.step()
    console = Console(width=1000, record=True, color_system=None)
    console.print(header(prof.document(meta={"model": "mine"})))
    text = console.export_text()
    assert "None" not in text and "model mine" in text
    line = next(line for line in text.splitlines() if line.startswith("settings: "))
    names = [name for name, _ in SETTINGS]
    for item in line.removeprefix("settings: ").split(" · "):  # each setting: its name, then a value
        assert re.fullmatch(rf"({'|'.join(map(re.escape, names))}) \S.*", item.strip()), item
