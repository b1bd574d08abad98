"""The cost model against real trainings (issue #13): k models trained by a plain PyTorch loop.

1. tlprof profiles the model (full, frozen and cached runs, units 1..N frozen) and its report
   predicts T_classic(k) and T_transfer(k) for S steps per model, k = 1..K.
2. A plain loop, with no tlprof in it, trains k real models three ways:
   classic  = k full trainings of S steps;
   transfer = 1 full training, then k−1 with units 1..N frozen by ownership (tlprof.freeze only
              sets requires_grad and the frozen BatchNorms' eval mode before the timed loop);
   cached   = 1 full training, the features of units 1..N computed once over the S batches (the
              models share the data), then k−1 trainings of units N+1..L on those features.
3. It prints measured walls against the predictions, with the error, and the per-step figures.

    OMP_NUM_THREADS=1 python benchmarks/train_k_models.py [--arch resnet18] [--json out.json]

Models: torchvision ResNets (the cached tail is built by hand for them). Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models import ResNet

import tlprof
from tlprof.reports.builder import Report, ReportOptions, build_report

SCHEMES = ("classic", "transfer", "cached")
ROW_OF = {"classic": ("measured", "classic"), "transfer": ("measured", "transfer"),
          "cached": ("measured_cached", "transfer")}


# -- the model, split where the cached features are ---------------------------------


def build_model(arch: str, num_classes: int, device: torch.device) -> nn.Module:
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    if not isinstance(model, ResNet):
        raise SystemExit(f"{arch}: the cached tail is built by hand for torchvision ResNets only")
    return model.to(device).train()


def _conv_bn(block: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    names = ("1", "2", "3") if hasattr(block, "conv3") else ("1", "2")
    return [(getattr(block, f"conv{i}"), getattr(block, f"bn{i}")) for i in names]


class BlockHead(nn.Module):
    """The first ``j`` convs of a BasicBlock or Bottleneck; returns the block's input with them."""

    def __init__(self, block: nn.Module, j: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Sequential(conv, bn) for conv, bn in _conv_bn(block)[:j])
        self.relu = block.relu

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = x
        for layer in self.layers:
            out = self.relu(layer(out))
        return x, out


class BlockTail(nn.Module):
    """The rest of the block after ``BlockHead``: its later convs, the shortcut and the add."""

    def __init__(self, block: nn.Module, j: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Sequential(conv, bn) for conv, bn in _conv_bn(block)[j:])
        self.relu = block.relu
        self.downsample = block.downsample

    def forward(self, pair: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, out = pair
        for i, layer in enumerate(self.layers):
            out = layer(out)
            if i < len(self.layers) - 1:
                out = self.relu(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def split_resnet(model: ResNet, first_trainable: str) -> tuple[nn.Module, nn.Module]:
    """(head, tail): head = the model up to where unit N+1 starts, tail = the rest; shared weights."""
    layers = (model.layer1, model.layer2, model.layer3, model.layer4)
    blocks = [b for layer in layers for b in layer]
    names = [f"layer{i}.{j}" for i, layer in enumerate(layers, 1) for j in range(len(layer))]
    stem = [model.conv1, model.bn1, model.relu, model.maxpool]
    pool = [model.avgpool, nn.Flatten(1)]
    if first_trainable == "fc":
        return nn.Sequential(*stem, *blocks, *pool), model.fc
    block, _, conv = first_trainable.rpartition(".")
    if block not in names or not conv.startswith("conv"):
        raise SystemExit(f"cannot split the model before unit {first_trainable}")
    i, j = names.index(block), int(conv.removeprefix("conv")) - 1
    if j == 0:
        return nn.Sequential(*stem, *blocks[:i]), nn.Sequential(*blocks[i:], *pool, model.fc)
    return (nn.Sequential(*stem, *blocks[:i], BlockHead(blocks[i], j)),
            nn.Sequential(BlockTail(blocks[i], j), *blocks[i + 1:], *pool, model.fc))


def check_split(model: ResNet, first_trainable: str, x: torch.Tensor) -> None:
    head, tail = split_resnet(model, first_trainable)
    model.eval()
    with torch.no_grad():
        if not torch.allclose(tail(head(x)), model(x), atol=1e-4, rtol=1e-4):
            raise SystemExit(f"the hand-built head/tail split before {first_trainable} is wrong")
    model.train()


# -- the plain loop -----------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(model: nn.Module, batches: Iterable[tuple[Any, torch.Tensor]], device: torch.device,
          lr: float) -> float:
    """S plain training steps (SGD, momentum 0.9, as tlprof's); seconds of the loop alone."""
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    sync(device)
    start = time.perf_counter()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - start


def features(head: nn.Module, xs: list[torch.Tensor], device: torch.device) -> tuple[list[Any], float]:
    """Units 1..N once over every batch, no grad, their BatchNorms in eval (frozen)."""
    head.eval()
    sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        out = [head(x) for x in xs]
    sync(device)
    return out, time.perf_counter() - start


@dataclass
class Setup:
    arch: str
    num_classes: int
    n_frozen: int
    first_trainable: str  # name of unit N+1
    xs: list[torch.Tensor]
    ys: list[torch.Tensor]
    device: torch.device
    lr: float = 1e-3

    def model(self, weights: nn.Module | None = None) -> nn.Module:
        model = build_model(self.arch, self.num_classes, self.device)
        if weights is not None:
            model.load_state_dict(weights.state_dict())  # a later model starts from model 1
        return model

    def full(self) -> tuple[nn.Module, float]:
        model = self.model()
        return model, train(model, zip(self.xs, self.ys), self.device, self.lr)

    def frozen(self, base: nn.Module) -> float:
        model = self.model(base)
        tlprof.freeze(model, tlprof.find_units(model, self.xs[0][:1]), self.n_frozen)
        return train(model, zip(self.xs, self.ys), self.device, self.lr)

    def tail(self, base: nn.Module, feats: list[Any]) -> float:
        _, tail = split_resnet(self.model(base), self.first_trainable)
        return train(tail.train(), zip(feats, self.ys), self.device, self.lr)


def run_scheme(setup: Setup, scheme: str, k: int) -> dict[str, list[float]]:
    """One scheme's k models in a row: seconds per model (the cached features in model 2's)."""
    base, first = setup.full()
    walls: dict[str, list[float]] = {"full": [first], "frozen": [], "tail": [], "features": []}
    per_model = [first]
    if scheme == "classic":
        for _ in range(k - 1):
            per_model.append(setup.full()[1])
        walls["full"] += per_model[1:]
    elif scheme == "transfer":
        for _ in range(k - 1):
            walls["frozen"].append(setup.frozen(base))
        per_model += walls["frozen"]
    elif k > 1:
        feats, seconds = features(split_resnet(base, setup.first_trainable)[0], setup.xs, setup.device)
        walls["features"].append(seconds)
        for _ in range(k - 1):
            walls["tail"].append(setup.tail(base, feats))
        per_model += [seconds + walls["tail"][0], *walls["tail"][1:]]
    walls["per_model"] = per_model
    return walls


# -- predictions, measurements, comparison --------------------------------------------


def elementwise_median(lists: list[list[float]]) -> list[float]:
    return [statistics.median(values) for values in zip(*lists)]


@dataclass
class Repeat:
    """One round: tlprof profiles, then every scheme trains its k models; seconds unless named."""

    profile_ms: dict[str, float]  # tlprof's medians: s_full, s_frozen, h_N, F_N
    predicted: dict[str, dict[str, list[float]]]  # report row → classic/transfer, k = 1..K
    report_ratio: dict[str, float]  # report row → T_transfer/T_classic at k = K
    k_plus_1: dict[str, list[float]]  # the counting before issue #13, for the record
    measured: dict[str, list[float]] = field(default_factory=dict)  # scheme → T(k), k = 1..K
    parts: dict[str, list[float]] = field(default_factory=dict)  # full/frozen/tail/features walls


@dataclass
class Result:
    config: dict[str, Any]
    machine: dict[str, Any]
    repeats: list[Repeat] = field(default_factory=list)

    def measured(self, scheme: str) -> list[float]:
        return elementwise_median([r.measured[scheme] for r in self.repeats])

    def predicted(self, scheme: str) -> list[float]:
        row, column = ROW_OF[scheme]
        return elementwise_median([r.predicted[row][column] for r in self.repeats])

    def k_plus_1(self, scheme: str) -> list[float] | None:
        if scheme not in self.repeats[0].k_plus_1:
            return None
        return elementwise_median([r.k_plus_1[scheme] for r in self.repeats])

    def profile_ms(self, key: str) -> float:
        return statistics.median(r.profile_ms[key] for r in self.repeats)

    def step_ms(self, part: str) -> list[float]:
        steps = self.config["steps"]  # every part runs over the S batches once
        return [1000 * w / steps for r in self.repeats for w in r.parts[part]]


def predictions(report: Report) -> dict[str, dict[str, list[float]]]:
    s = report.cost_model.ms_per_unit / 1000
    return {name: {"classic": [v * s for v in row.classic], "transfer": [v * s for v in row.transfer]}
            for name, row in report.cost_model.rows.items()}


def k_plus_1(profile_ms: dict[str, float], k_max: int, steps: int) -> dict[str, list[float]]:
    """T_transfer(k) = s_full·S + k·p: a full training plus k frozen ones, in seconds."""
    full, frozen = profile_ms["s_full"] * steps / 1000, profile_ms["s_frozen"] * steps / 1000
    cached = (profile_ms["f_n"] + profile_ms["h_n"]) * steps / 1000
    ks = range(1, k_max + 1)
    return {"transfer": [full + k * frozen for k in ks], "cached": [full + k * cached for k in ks]}


def profile(args: argparse.Namespace, device: torch.device) -> tuple[Repeat, tlprof.RunDocument]:
    model = build_model(args.arch, args.num_classes, device)
    cfg = tlprof.ProfileConfig(
        batch_size=args.batch_size, input_shape=(3, args.image_size, args.image_size),
        device=str(device), steps=args.profile_steps, warmup=args.profile_warmup, freeze=args.freeze,
        runs=("full", "frozen", "cached"))
    prof = tlprof.profile_model(model, cfg, meta={"arch": args.arch})
    report = build_report(prof, ReportOptions(models=args.models, steps_per_epoch=args.steps, epochs=1))
    assert report.frozen is not None and report.cached is not None
    medians = {"s_full": report.full_step_ms, "s_frozen": report.frozen.frozen_step_ms,
               "h_n": report.cached.step_ms, "f_n": report.cached.features_ms}
    ratio = {name: row.ratio[-1] for name, row in report.cost_model.rows.items()}
    return Repeat(medians, predictions(report), ratio, k_plus_1(medians, args.models, args.steps)), prof


def measure(setup: Setup, repeat: Repeat, k: int, log: Callable[[str], None]) -> None:
    repeat.parts = {"full": [], "frozen": [], "tail": [], "features": []}
    for scheme in SCHEMES:
        walls = run_scheme(setup, scheme, k)
        repeat.measured[scheme] = [sum(walls["per_model"][:i + 1]) for i in range(k)]
        for name in repeat.parts:
            repeat.parts[name] += walls[name]
        log(f"  {scheme}: " + ", ".join(f"{w:.2f}" for w in repeat.measured[scheme]) + " s")


def warm_up(setup: Setup, steps: int) -> None:
    short = replace(setup, xs=setup.xs[:steps], ys=setup.ys[:steps])
    base, _ = short.full()
    short.frozen(base)
    feats, _ = features(split_resnet(base, short.first_trainable)[0], short.xs, short.device)
    short.tail(base, feats)


# -- output ---------------------------------------------------------------------------


def error(measured: float, predicted: float) -> str:
    return f"{100 * (predicted / measured - 1):+.1f}%"


def round_errors(result: Result, scheme: str, i: int) -> str:
    """Each round's own prediction against its own walls: how much the machine's noise moves it."""
    row, column = ROW_OF[scheme]
    errors = [100 * (r.predicted[row][column][i] / r.measured[scheme][i] - 1) for r in result.repeats]
    return f"{min(errors):+.0f}…{max(errors):+.0f}%"


def table(result: Result) -> str:
    lines = [f"{'scheme':<9}{'k':>3}{'measured s':>12}{'predicted s':>13}{'error':>8}{'rounds':>12}"
             f"{'k+1 counting s':>16}{'error':>8}"]
    for scheme in SCHEMES:
        measured, predicted, old = result.measured(scheme), result.predicted(scheme), result.k_plus_1(scheme)
        for i, (m, p) in enumerate(zip(measured, predicted)):
            tail = f"{old[i]:>16.2f}{error(m, old[i]):>8}" if old else f"{'-':>16}{'':>8}"
            lines.append(f"{scheme:<9}{i + 1:>3}{m:>12.2f}{p:>13.2f}{error(m, p):>8}"
                         f"{round_errors(result, scheme, i):>12}{tail}")
    return "\n".join(lines)


def ratios(result: Result) -> str:
    k = result.config["models"]
    classic = result.measured("classic")[-1]
    transfer, cached = result.measured("transfer")[-1] / classic, result.measured("cached")[-1] / classic
    report = {name: statistics.median(r.report_ratio[name] for r in result.repeats)
              for name in result.repeats[0].report_ratio}
    rows = ", ".join(f"{name} {ratio:.3f}" for name, ratio in report.items())
    return (f"T_transfer/T_classic at k = {k}: measured walls: transfer {transfer:.3f}, cached {cached:.3f}"
            f"\n  the report's rows: {rows}")


def steps_table(result: Result) -> str:
    pairs = [("full step", "s_full", "full"), ("frozen step", "s_frozen", "frozen"),
             ("cached tail step h_N", "h_n", "tail"), ("features per batch F_N", "f_n", "features")]
    lines = [f"{'per step, ms':<24}{'tlprof':>9}{'loop':>9}{'loop range':>18}"]
    for label, key, part in pairs:
        loop = result.step_ms(part)
        lines.append(f"{label:<24}{result.profile_ms(key):>9.1f}{statistics.median(loop):>9.1f}"
                     f"{f'{min(loop):.1f}–{max(loop):.1f}':>18}")
    return "\n".join(lines)


def machine(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "gpu": gpu,
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(), "date": date.today().isoformat(),
            "loadavg_start": list(os.getloadavg())}


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="resnet18", help="a torchvision ResNet (default resnet18)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--freeze", type=int, help="N frozen units (default L − 5, as the paper's 45 of 50)")
    p.add_argument("--models", type=int, default=3, help="k models per scheme (default 3)")
    p.add_argument("--steps", type=int, default=15, help="S training steps per model (default 15)")
    p.add_argument("--repeats", type=int, default=2,
                   help="rounds of (profile, then every scheme's k trainings); medians reported")
    p.add_argument("--profile-steps", type=int, default=8)
    p.add_argument("--profile-warmup", type=int, default=1)
    p.add_argument("--warmup-steps", type=int, default=2, help="untimed steps of each kind first")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="write every number here")
    p.add_argument("--profile-json", metavar="PATH", help="also save tlprof's last run document")
    return p.parse_args(argv)


def setup_from(args: argparse.Namespace, device: torch.device) -> Setup:
    probe = build_model(args.arch, args.num_classes, device)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    units = tlprof.find_units(probe, x[:1])
    args.units = len(units)
    args.freeze = args.freeze if args.freeze is not None else len(units) - 5
    if not 1 <= args.freeze < len(units):
        raise SystemExit(f"--freeze must be in 1..{len(units) - 1}")
    first = units[args.freeze].name
    check_split(probe, first, x)
    xs = [torch.randn_like(x) for _ in range(args.steps)]
    ys = [torch.randint(0, args.num_classes, (args.batch_size,), device=device) for _ in xs]
    return Setup(args.arch, args.num_classes, args.freeze, first, xs, ys, device)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    setup = setup_from(args, device)
    log(f"{args.arch}: L = {args.units}, N = {args.freeze}, unit N+1 = {setup.first_trainable}")
    result = Result(config={**vars(args), "first_trainable": setup.first_trainable,
                            "command": " ".join(sys.argv)}, machine=machine(device))
    warm_up(setup, args.warmup_steps)
    for r in range(args.repeats):  # interleaved, so slow drifts of the machine hit every part
        log(f"round {r + 1}/{args.repeats}: tlprof profile, then the trainings")
        repeat, prof = profile(args, device)
        measure(setup, repeat, args.models, log)
        result.repeats.append(repeat)
    if args.profile_json:
        prof.save(args.profile_json)
    result.machine["loadavg_end"] = list(os.getloadavg())
    print(f"{args.arch}, {args.image_size}×{args.image_size}, batch {args.batch_size}, {args.device}, "
          f"{args.threads} thread(s); k = {args.models} models of S = {args.steps} steps; N = {args.freeze} "
          f"of L = {args.units}; medians of {args.repeats} rounds; error = predicted / measured − 1 "
          f"(rounds: each round's own, min…max)")
    print(table(result))
    print(ratios(result))
    print(steps_table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(asdict(result), f, indent=1, ensure_ascii=False)
        log(f"written to {args.json}")


if __name__ == "__main__":
    main()
