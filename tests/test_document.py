"""The run document: v1 files still read, saved runs re-render the same figures, warnings reach
every format, rendering never loads torch, no import cycles, one set of defaults."""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from tlprof.cli import main
from tlprof.document import (
    SCHEMA,
    RunDocument,
    RunDocumentError,
    Sweep,
    read_document,
    save_json,
    upgrade_v1,
)

DATA = Path(__file__).parent / "data"
EXPECTED = DATA / "expected"
ROOT = Path(__file__).parent.parent
FORMATS = ("rich", "markdown", "html", "csv", "json")


def _load_json(path: Path) -> dict:
    return json.loads(path.read_text())


# -- tlprof.run/1 still reads, and re-renders with the same figures ------------------------


def test_v1_document_reads_into_typed_sections():
    v1 = _load_json(DATA / "run_v1.json")
    assert v1["schema"] == "tlprof.run/1"
    doc = RunDocument.load(DATA / "run_v1.json")
    assert set(doc.runs) == {"full", "frozen", "cached"}
    full, cached = doc.runs["full"], doc.runs["cached"]
    assert full.name == "full" and doc.meta.runs == ["full", "frozen", "cached"]
    assert set(full.phases_ms) == {"zero_grad", "loss_fwd", "loss_bwd", "optimizer", "other"}
    assert full.units[1].kernels.flops_fwd == v1["runs"]["full"]["units"][1]["flops_fwd"] > 0
    assert full.kernels.ceilings.copy_gbps == v1["runs"]["full"]["kernels"]["ceilings"]["copy_gbps"]
    assert full.kernels.kernel_agreement == v1["runs"]["full"]["kernel_agreement"]
    assert cached.cache.features_ms.samples == v1["runs"]["cached"]["features_ms"]["samples"]
    assert full.memory.saved_bytes_total == v1["runs"]["full"]["memory"]["saved_bytes_total"]
    assert full.units_total("grad_bytes") == v1["runs"]["full"]["memory"]["grad_bytes_units_total"]
    assert [s.kind for s in full.timeline][:2] == ["phase", "phase"]


def test_v1_and_its_v2_save_give_one_document(tmp_path):
    doc = RunDocument.load(DATA / "run_v1.json")
    doc.save(tmp_path / "v2.json")
    saved = _load_json(tmp_path / "v2.json")
    assert saved["schema"] == SCHEMA == "tlprof.run/2"
    assert RunDocument.from_dict(saved) == doc
    assert RunDocument.from_dict(upgrade_v1(_load_json(DATA / "run_v1.json"))) == doc


def _report_json(path: Path, capsys) -> dict:
    assert main(["report", str(path), "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", ["run_v1", "branches_v1"])
def test_report_of_a_v1_run_keeps_its_figures(name, capsys):
    """Figures that the cost-model counting does not touch, against tlprof.run/1's own report."""
    old = _load_json(EXPECTED / f"report_{name}.json")
    new = _report_json(DATA / f"{name}.json", capsys)
    for key in ("n_units", "freeze", "full_step_ms", "t_ms", "units", "blocks", "stages", "uniformity",
                "frozen", "cached"):
        assert _kept(new[key], old[key]), key
    for claim, before in zip(new["claims"][:2], old["claims"][:2]):
        assert _kept(claim["numbers"], before["numbers"]), claim["id"]
        # issue #12: the v1 runs measured 3 steps, too few for a verdict (MIN_SAMPLES = 5)
        if before["verdict"] != "not measured":
            assert claim["verdict"] == "not enough evidence" and "n = 3" in claim["reason"], claim["id"]
        else:
            assert claim["verdict"] == "not measured"


def _kept(new, old) -> bool:
    """Every figure of ``old`` unchanged in ``new`` (which may add fields: issue #12's intervals)."""
    if isinstance(old, dict):
        return isinstance(new, dict) and all(k in new and _kept(new[k], v) for k, v in old.items())
    if isinstance(old, list):
        return isinstance(new, list) and len(new) == len(old) and all(map(_kept, new, old))
    return new == old


def test_sweep_and_compare_of_v1_documents_keep_their_figures(capsys):
    old = _load_json(EXPECTED / "report_sweep_v1.json")
    assert isinstance(read_document(DATA / "sweep_v1.json"), Sweep)
    assert _kept(_report_json(DATA / "sweep_v1.json", capsys)["rows"], old["rows"])
    argv = ["compare", str(DATA / "run_v1.json"), str(DATA / "run_v1_freeze2.json"), "--format", "json"]
    assert main(argv) == 0
    new = json.loads(capsys.readouterr().out)
    old = _load_json(EXPECTED / "compare_v1.json")
    assert _kept(new["runs"], old["runs"]) and set(old["notes"]) <= set(new["notes"])
    assert {"setting": "freeze", "a": "3", "b": "2"} in new["differences"]


def test_kernels_view_of_a_v1_document_is_unchanged():
    from tlprof.reports.kernels_view import kernels_view

    console = Console(width=140, color_system=None, record=True, file=io.StringIO())
    console.print(kernels_view(RunDocument.load(DATA / "run_v1.json")))
    assert console.export_text() == (EXPECTED / "kernels_v1.txt").read_text()


def test_not_a_run_document_is_one_error(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"schema": "something/1"}')
    with pytest.raises(RunDocumentError, match="not a tlprof run document"):
        RunDocument.load(path)


# -- warnings --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_stored_warning_is_shown_in_every_format(fmt, capsys):
    assert main(["report", str(DATA / "branches_v1.json"), "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert "no backward mark for trainable unit(s) left" in out
    assert "full run (marks)" in out or fmt == "json"
    if fmt == "json":
        (warning,) = json.loads(out)["warnings"]
        assert warning == {"run": "full", "part": "marks", "text": warning["text"]}


def test_the_profile_command_prints_the_same_warning(capsys):
    models = str(Path(__file__).parent / "models.py")
    argv = ["profile", "--model", f"{models}:two_branches", "--input-shape", "8", "--batch-size", "2",
            "--steps", "2", "--warmup", "1", "--device", "cpu"]
    assert main(argv) == 0
    assert "warning: full run (marks): no backward mark for trainable unit(s) left" in \
        capsys.readouterr().out.replace("\n", " ")


# -- saving ------------------------------------------------------------------------------


def test_a_failed_save_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    path.write_text("old")

    def disk_full(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tlprof.document.os.replace", disk_full)
    with pytest.raises(OSError):
        save_json({"x": 1}, path)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["run.json"]


# -- what imports what -----------------------------------------------------------------------


def _run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_rendering_a_saved_run_never_imports_torch(tmp_path):
    code = f"""
import sys
from tlprof.cli import main
for fmt in {FORMATS!r}:
    out = {str(tmp_path)!r} + "/r." + fmt
    assert main(["report", {str(DATA / "run_v1.json")!r}, "--format", fmt, "-o", out]) == 0
assert main(["report", {str(DATA / "sweep_v1.json")!r}, "--format", "markdown"]) == 0
assert main(["compare", {str(DATA / "run_v1.json")!r}, {str(DATA / "run_v1_freeze2.json")!r}]) == 0
assert main(["kernels", {str(DATA / "run_v1.json")!r}]) == 0
print("torch" in sys.modules)
"""
    assert _run_python(code).strip().splitlines()[-1] == "False"


def test_import_tlprof_is_cheap():
    out = _run_python("import sys, tlprof; tlprof.RunDocument; print('torch' in sys.modules)")
    assert out.strip() == "False"


def _tlprof_modules() -> dict[str, Path]:
    roots = {"tlprof": ROOT / "profiler", "tlprof.kernels": ROOT / "kernels",
             "tlprof.reports": ROOT / "reports"}
    modules = {}
    for package, folder in roots.items():
        for path in folder.glob("*.py"):
            modules[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return modules


def _runtime_nodes(tree: ast.AST):
    """Every node, less the bodies of ``if TYPE_CHECKING:`` (imports for type hints only)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """tlprof modules that ``module`` imports anywhere in its text (functions included)."""
    package = module if path.stem == "__init__" else module.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in known else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in known and m != module and not (
        path.stem == "__init__" and m.startswith(module + "."))}


def test_no_import_cycles_between_modules():
    modules = _tlprof_modules()
    graph = {m: _imports(m, p, set(modules)) for m, p in modules.items()}
    graph = {m: {d for d in deps if d not in ("tlprof", "tlprof.kernels", "tlprof.reports")}
             for m, deps in graph.items()}  # the packages' lazy faces import nothing at load
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " → ".join([*path[path.index(d):], d]))
            if d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_every_module_imports_alone():
    names = sorted(_tlprof_modules())
    code = f"""
import importlib, sys
for name in {names!r}:
    for loaded in [m for m in sys.modules if m == "tlprof" or m.startswith("tlprof.")]:
        del sys.modules[loaded]
    importlib.import_module(name)
print("ok")
"""
    assert _run_python(code).strip() == "ok"


# -- one set of defaults -----------------------------------------------------------------------


def test_the_api_and_the_cli_measure_the_same_way_by_default():
    import argparse

    from tlprof import ProfileConfig, Profiler
    from tlprof.cli_args import config_from_args
    from tlprof.defaults import defaults_for

    args = argparse.Namespace(device="cpu", runs=None, freeze=0, precision="fp32", channels_last=False,
                              optimizer="sgd", frozen_bn="eval", num_classes=None, model=None,
                              batch_size=None, steps=None, warmup=None, input_dtype=None,
                              input_max=None, output=None, loss=None)
    cli_cfg, notes = config_from_args(args, (3, 8, 8))
    api_cfg = ProfileConfig(input_shape=(3, 8, 8), device="cpu").resolved("cpu")
    d = defaults_for("cpu")
    assert (cli_cfg.batch_size, cli_cfg.steps, cli_cfg.warmup) == (d.batch_size, d.steps, d.warmup)
    assert (api_cfg.batch_size, api_cfg.steps, api_cfg.warmup) == (d.batch_size, d.steps, d.warmup)
    assert len(notes) == 3
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    assert Profiler(model, example=torch.randn(1, 2)).warmup == d.warmup
