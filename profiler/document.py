"""The run document (``tlprof.run/2``): what one profile measured, every sample kept. Torch-free.

Producers (the runner, the user-loop ``Profiler``, the kernels and energy
parts) write through these types; every reader (the report builder, the
renderers, compare, sweep) reads only them, so a saved document re-renders
without re-running (after pyinstrument's session). ``tlprof.run/1`` files are
read too: ``upgrade_v1`` turns their open dicts into this shape.

A run's optional sections (cache, kernels, energy, distributed) are typed dataclasses listed
in ``SECTIONS``; a part that adds a section adds its type there and a field on
``Run``. Every warning about a run, whichever part found it, is in its one
``warnings`` list.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from .marks import PHASES
from .stats import Stats

SCHEMA = "tlprof.run/2"
SCHEMA_V1 = "tlprof.run/1"


class RunDocumentError(ValueError):
    """A run document that cannot be read: missing, corrupt, truncated or of another schema."""


def finite(value: Any) -> Any:
    """NaN and ±inf become None, so the document is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


@functools.cache
def _shapes(cls: type) -> dict[str, tuple[str, Any]]:
    """Each field of ``cls`` by name: ``(shape, class)`` for a ``Stats`` or a record, the shape ``"one"``,
    ``"optional"`` (``X | None``) or ``"list"`` (``list[X]``); ``("plain", None)`` for any other."""
    hints = get_type_hints(cls)
    shapes = {}
    for f in fields(cls):
        hint = hints[f.name]
        shape, kinds = "one", (hint,)
        if get_origin(hint) in (Union, UnionType):
            shape, kinds = "optional", tuple(a for a in get_args(hint) if a is not type(None))
        elif get_origin(hint) is list:
            shape, kinds = "list", get_args(hint)
        kind = kinds[0] if len(kinds) == 1 else None
        if isinstance(kind, type) and get_origin(kind) is None and issubclass(kind, (Stats, Record)):
            shapes[f.name] = (shape, kind)
        else:
            shapes[f.name] = ("plain", None)
    return shapes


def _load(shape: str, kind: Any, value: Any) -> Any:
    if shape == "list":
        return [_load("one", kind, v) for v in value]
    if shape == "plain" or isinstance(value, kind):  # a producer may pass the record itself
        return value
    if shape == "optional" and not value:  # None, or an empty dict: absent
        return None
    return kind.from_dict(value)


def _dump(shape: str, kind: Any, value: Any) -> Any:
    if shape == "plain":
        return copy.deepcopy(value)  # a fresh dict, as dataclasses.asdict gave
    if shape == "list":
        return [v.to_dict() for v in value]
    return None if value is None else value.to_dict()


class Record:
    """A plain record: its JSON is its fields, a ``Stats`` or a nested record (alone, optional or in
    a list) by its own ``to_dict``/``from_dict``; keys it does not know are ignored when read (a
    newer writer's)."""

    def to_dict(self) -> dict[str, Any]:
        return {name: _dump(*shape, getattr(self, name)) for name, shape in _shapes(type(self)).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        shapes = _shapes(cls)
        return cls(**{k: _load(*shapes[k], v) for k, v in _known(cls, d).items()})


# -- the profile's setting and its units -------------------------------------------------


@dataclass
class BackendFlags(Record):
    """The flags that decided fp32 arithmetic while the profile ran (``--precision default`` leaves
    them as PyTorch or the caller had them)."""

    matmul_tf32: bool | None = None  # torch.backends.cuda.matmul.allow_tf32
    cudnn_tf32: bool | None = None  # torch.backends.cudnn.allow_tf32
    cudnn_benchmark: bool | None = None
    float32_matmul_precision: str | None = None  # torch.get_float32_matmul_precision()


@dataclass
class Meta(Record):
    """How the profile was made. ``user`` holds what a caller added that tlprof does not know."""

    arch: str | None = None  # a torchvision architecture
    model: str | None = None  # MODULE:CALLABLE, or the user loop's label
    device: str | None = None
    device_name: str | None = None
    clock: str | None = None
    torch_version: str | None = None
    tlprof_version: str | None = None
    cuda_version: str | None = None
    cpu_threads: int | None = None
    cpu_count: int | None = None  # the machine's
    load_avg: dict[str, list[float]] = field(default_factory=dict)  # "start"/"end": 1, 5, 15 min
    batch_size: int | None = None
    input_shape: list[int] = field(default_factory=list)
    precision: str | None = None
    backend_flags: BackendFlags | None = None
    channels_last: bool | None = None
    optimizer: str | None = None
    lr: float | None = None
    steps: int | None = None
    warmup: int | None = None
    freeze: int | None = None
    frozen_bn: str | None = None
    num_classes: int | None = None
    output_shape: list[int] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)  # each input's shape and dtype
    input_dtype: str | None = None
    input_max: int | None = None
    output: str | None = None  # the output the loss uses (index or key)
    loss: str | None = None
    runs: list[str] = field(default_factory=list)
    created: str | None = None
    gpu: dict[str, Any] | None = None  # NVML identity and state (or the reason it is missing)
    user: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.arch or self.model or "model"


    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Meta:
        known = _known(cls, d)  # keys it does not know go to ``user``
        user = {**d.get("user", {}), **{k: v for k, v in d.items() if k not in known and k != "user"}}
        return super().from_dict({**known, "user": user})


@dataclass
class UnitInfo(Record):
    """One counted layer: its weight module, what it owns, where it sits, whether it trains."""

    index: int  # 1-based, execution order
    name: str
    modules: list[str] = field(default_factory=list)
    stage: str = ""
    block: str = ""
    params: int = 0
    trainable: bool = True


# -- per unit ----------------------------------------------------------------------------


@dataclass
class UnitKernels(Record):
    """What ``--kernels`` measured for one unit (see docs/kernels.md)."""

    flops_fwd: int = 0  # matmul and convolution (torch.utils.flop_counter)
    flops_bwd: int = 0
    flops_other_fwd: int | None = None  # BatchNorm, ReLU, pooling, add (docs/kernels.md); None: not counted
    flops_other_bwd: int | None = None
    act_in_bytes: int = 0
    act_out_bytes: int = 0
    bytes_fwd: int = 0  # lower-bound traffic
    bytes_bwd: int = 0
    intensity_fwd: float | None = None  # FLOP/byte
    intensity_bwd: float | None = None
    roofline: dict[str, Any] | None = None  # "fwd"/"bwd" -> achieved rate, roof, % of roof, bound
    kernel_fwd_ms: float | None = None
    kernel_bwd_ms: float | None = None
    kernel_agreement: float | None = None  # kernel sum / measured time
    kernels_fwd: list[dict[str, Any]] = field(default_factory=list)  # top kernels: name, count, total_ms
    kernels_bwd: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class UnitRun(Record):
    index: int
    fwd_ms: Stats
    bwd_ms: Stats
    saved_bytes: int = 0
    param_bytes: int = 0
    grad_bytes: int = 0
    optimizer_state_bytes: int = 0
    weight_cast_bytes: int = 0  # autocast's lower-precision copies of its weights (not activations)
    kernels: UnitKernels | None = None
    energy_estimate_j: float | None = None  # an estimate: time share × measured J/step

    @property
    def t_ms(self) -> float:
        return self.fwd_ms.median + self.bwd_ms.median


# -- per run: memory, timeline, warnings, sections -----------------------------------------


@dataclass
class MarkAllocation(Record):
    mark: str  # Label.text(): fwd:layer1.0.conv1, loss_bwd...
    allocated_bytes: int


@dataclass
class AllocatorReadings(Record):
    """The CUDA caching allocator over the memory step."""

    peak_allocated_bytes: int
    step_start_allocated_bytes: int
    reserved_bytes: int
    at_marks: list[MarkAllocation] = field(default_factory=list)


@dataclass
class Memory(Record):
    """The memory step: what autograd saved, and on CUDA the allocator."""

    saved_bytes_total: int = 0  # every saved storage once, units and phases
    saved_other_bytes: dict[str, int] = field(default_factory=dict)  # saved outside units, by phase
    allocator: AllocatorReadings | None = None
    weight_cast_other_bytes: dict[str, int] = field(default_factory=dict)  # autocast copies, by phase


@dataclass
class Span(Record):
    """What began at a mark of one step, when (ms from the step's start) and for how long."""

    kind: str  # fwd | bwd | phase
    name: str  # unit or phase name
    start_ms: float
    dur_ms: float
    unit: int | None = None


@dataclass
class RunWarning(Record):
    part: str  # what found it: marks, kernels, energy, cache...
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass
class CacheSection(Record):
    """The cached-features run: F_N per batch and how the features were replayed."""

    features_ms: Stats
    replayed_calls: int = 0
    bytes: int = 0
    recaptured_steps: int = 0


@dataclass
class Ceilings(Record):
    """Measured device ceilings: matmul rate per precision and copy bandwidth (tlprof ceilings)."""

    device: str
    device_name: str
    matmul_tflops: dict[str, float]  # precision -> median TFLOP/s
    copy_gbps: float  # median GB/s, bytes read + written
    matmul_n: int  # the largest product's size
    copy_bytes: int
    threads: int  # CPU threads torch used
    samples_ms: dict[str, list[float]] = field(default_factory=dict)  # every timed run
    matmul_sizes: dict[str, int] = field(default_factory=dict)  # precision -> n of its product


    def peak_tflops(self, precision: str) -> tuple[str, float]:
        """The ceiling a run of ``precision`` is held to (fp32 where its own is not measured)."""
        if precision in self.matmul_tflops:
            return precision, self.matmul_tflops[precision]
        return "fp32", self.matmul_tflops["fp32"]

    def ridge(self, precision: str) -> float:
        """FLOP per byte where the compute roof meets the bandwidth roof."""
        return self.peak_tflops(precision)[1] * 1e12 / (self.copy_gbps * 1e9)


@dataclass
class KernelsSection(Record):
    """What ``--kernels`` measured for the run as a whole."""

    source: str | None = None  # "cuda kernels" | "cpu ops"
    flops_phases: dict[str, int] = field(default_factory=dict)  # FLOPs outside units
    flops_by_op: dict[str, int] = field(default_factory=dict)  # operator -> FLOPs of one step
    flops_other_by_op: dict[str, int] = field(default_factory=dict)  # BatchNorm, ReLU, pooling, add
    flop_threads: dict[str, int] = field(default_factory=dict)
    ceilings: Ceilings | None = None
    kernel_agreement: float | None = None  # kernel sum / measured time, units that ran kernels
    kernel_units_ms: float | None = None
    measured_units_ms: float | None = None
    units_without_kernels: list[int] = field(default_factory=list)
    profiled_step_units_ms: float | None = None
    kernel_agreement_profiled_step: float | None = None


@dataclass
class EnergySection(Record):
    """NVML's total-energy counter over plain steps of the run."""

    energy_per_step_j: float | None = None
    avg_power_w: float | None = None
    steps: int = 0
    window_s: float = 0.0
    energy_j: float = 0.0
    counter_tick_s: float | None = None
    resolution: float | None = None  # one tick as a share of the window
    gpu_index: int | None = None
    source: str = "nvml_total_energy_counter"
    step_kind: str = "plain (no hooks)"
    unit_energy: str = ""  # how the per-unit estimate is made


# -- data parallelism (DDP) ----------------------------------------------------------------


@dataclass
class BucketRecord(Record):
    """One DDP gradient bucket: what it all-reduces, whose parameters, when (ms from the step's start)."""

    index: int
    bytes: int  # the flat gradient buffer all-reduced
    numel: int
    dtype: str
    params: int  # gradient values of its parameters (numel − params = padding)
    units: list[int] = field(default_factory=list)  # units whose parameters it holds
    launch_ms: Stats = field(default_factory=Stats)  # the hook was called: the bucket is ready
    finish_ms: Stats = field(default_factory=Stats)  # its all-reduce's future completed


@dataclass
class CommSection(Record):
    """One rank's gradient all-reduce per timed step, from a DDP communication hook."""

    backend: str
    clock: str  # how launch and finish were stamped
    buckets: list[BucketRecord]
    bytes_per_step: int
    grad_bytes: int  # grad dtype size × trainable parameters: what the buckets must hold
    padding: str  # the statement of bytes_per_step − grad_bytes
    allreduce_ms: Stats  # Σ over buckets of finish − launch
    span_ms: Stats  # first launch to last finish
    backward_end_ms: Stats  # the mark after the last unit's backward, from the step's start
    exposed_ms: Stats  # max(0, last finish − backward end): the step waits for communication


@dataclass
class RankRun(Record):
    """One rank's figures of a run, as gathered on rank 0."""

    rank: int
    host: str
    device: str
    step_ms: Stats
    plain_step_ms: Stats
    unit_fwd_ms: list[float] = field(default_factory=list)  # medians, unit order
    unit_bwd_ms: list[float] = field(default_factory=list)
    bytes_per_step: int | None = None
    allreduce_ms: Stats | None = None
    exposed_ms: Stats | None = None


@dataclass
class DistributedSection(Record):
    """A data-parallel run: this rank's communication and, once gathered, every rank's figures."""

    world_size: int
    backend: str
    rank: int  # the rank whose measurements are the run's figures
    host: str = ""
    comm: CommSection | None = None
    ranks: list[RankRun] = field(default_factory=list)  # filled on rank 0 by the gather


@dataclass
class UnitLaunch(Record):
    """One unit's host time beside its GPU time (``UnitRun.fwd_ms``/``bwd_ms``), eager CUDA runs."""

    index: int
    fwd_host_ms: Stats
    bwd_host_ms: Stats
    fwd_launch_bound: bool = False
    bwd_launch_bound: bool = False


@dataclass
class LaunchSection(Record):
    """Did the GPU wait for the host? Host stamps beside the CUDA events (tlprof.launch)."""

    slack_ms: float
    rule: str
    gpu_wait_share: Stats  # per step: share of its GPU time in host-paced intervals
    units: list[UnitLaunch] = field(default_factory=list)

    @property
    def launch_bound_units(self) -> list[int]:
        return [u.index for u in self.units if u.fwd_launch_bound or u.bwd_launch_bound]


@dataclass
class GraphSection(Record):
    """A run measured as a captured CUDA graph (``--graph``, tlprof.graph)."""

    pool_bytes: int  # reserved by the captures: the graphs' private memory pools
    warmup_steps: int  # side-stream steps before capture
    replays: int  # instrumented replays (as many plain ones in turn)
    marks: int  # external timing events inside the instrumented graph
    clock: str = "cuda_event_external"


SECTIONS: dict[str, Any] = {"cache": CacheSection, "kernels": KernelsSection, "energy": EnergySection,
                             "distributed": DistributedSection, "launch": LaunchSection,
                             "graph": GraphSection}


@dataclass
class Run(Record):
    """One run of a profile: full, frozen, cached, or the user loop's."""

    name: str
    freeze: int
    step_ms: Stats
    phases_ms: dict[str, Stats]  # by phase name (marks.PHASES)
    units: list[UnitRun]
    plain_step_ms: Stats
    cpu_ms: Stats = field(default_factory=Stats)  # process CPU time per instrumented step
    # Wall-to-wall host time of each plain and instrumented step, everything the profiler does
    # for it included (docs/design.md §3); empty in documents made before they were measured.
    plain_wall_ms: Stats = field(default_factory=Stats)
    step_wall_ms: Stats = field(default_factory=Stats)
    memory: Memory = field(default_factory=Memory)
    timeline: list[Span] = field(default_factory=list)  # the marks of the median measured step
    timeline_step: int | None = None  # which measured step (1-based) the timeline is
    timeline_step_ms: float | None = None  # its step time
    warnings: list[RunWarning] = field(default_factory=list)
    cache: CacheSection | None = None
    kernels: KernelsSection | None = None
    energy: EnergySection | None = None
    distributed: DistributedSection | None = None
    launch: LaunchSection | None = None
    graph: GraphSection | None = None

    @property
    def walled(self) -> bool:
        """Whether the run has wall-to-wall samples of its plain and instrumented steps."""
        return bool(self.step_wall_ms.samples and self.plain_wall_ms.samples)

    @property
    def overhead_samples(self) -> tuple[Stats, Stats]:
        """(instrumented, plain) steps, both wall-to-wall (what a user feels); documents without
        wall-to-wall samples fall back to the marked step and the plain step."""
        if self.walled:
            return self.step_wall_ms, self.plain_wall_ms
        return self.step_ms, self.plain_step_ms

    @property
    def overhead_ratio(self) -> float:
        step, plain = self.overhead_samples
        return step.median / plain.median if plain.median > 0 else float("nan")

    def phase_ms(self, *names: str) -> float:
        """Sum of the named phases' medians."""
        return sum(self.phases_ms[n].median for n in names if n in self.phases_ms)

    def fwd_ms(self, lo: int = 0, hi: int | None = None) -> float:
        """Sum of the units' forward medians, units lo+1..hi."""
        return sum(u.fwd_ms.median for u in self.units[lo:hi])

    def bwd_ms(self, lo: int = 0, hi: int | None = None) -> float:
        return sum(u.bwd_ms.median for u in self.units[lo:hi])

    def units_total(self, attr: str) -> int:
        """Sum over units of a byte figure: param_bytes, grad_bytes, optimizer_state_bytes, saved_bytes."""
        return sum(getattr(u, attr) for u in self.units)

    def warn(self, part: str, text: str) -> None:
        self.warnings.append(RunWarning(part, text))

    def to_dict(self) -> dict[str, Any]:  # phases_ms (a dict of Stats) and computed keys, in the file's order
        memory = self.memory.to_dict()
        memory["units_total"] = {k: self.units_total(k) for k in ("param_bytes", "grad_bytes",
                                 "optimizer_state_bytes", "saved_bytes", "weight_cast_bytes")}
        return {
            "name": self.name,
            "freeze": self.freeze,
            "step_ms": self.step_ms.to_dict(),
            "phases_ms": {k: v.to_dict() for k, v in self.phases_ms.items()},
            "units": [u.to_dict() for u in self.units],
            "plain_step_ms": self.plain_step_ms.to_dict(),
            "overhead_ratio": self.overhead_ratio,
            "plain_wall_ms": self.plain_wall_ms.to_dict(),
            "step_wall_ms": self.step_wall_ms.to_dict(),
            "cpu_ms": self.cpu_ms.to_dict(),
            "memory": memory,
            "timeline": [s.to_dict() for s in self.timeline],
            "timeline_step": self.timeline_step,
            "timeline_step_ms": self.timeline_step_ms,
            "warnings": [w.to_dict() for w in self.warnings],
            **{name: (s.to_dict() if (s := getattr(self, name)) else None) for name in SECTIONS},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Run:
        phases = {k: Stats.from_dict(v) for k, v in d["phases_ms"].items()}  # a dict of Stats
        return super().from_dict({**d, "phases_ms": phases})


# -- checks on load -----------------------------------------------------------------------


def _bad_sample(samples: list[float]) -> str | None:
    for x in samples:
        if math.isnan(x):
            return "a sample is not a number (NaN or null)"
        if math.isinf(x):
            return f"sample {x} is not finite"
        if x < 0:
            return f"sample {x:.3g} is negative"
    return None


def _run_figures(run: Run) -> list[tuple[str, Stats]]:
    figures = [("step_ms", run.step_ms)]
    figures += [(f"phases_ms.{name}", s) for name, s in run.phases_ms.items()]
    if not all(math.isnan(x) for x in run.plain_step_ms.samples):  # all null: not measured
        figures.append(("plain_step_ms", run.plain_step_ms))
    figures += [("plain_wall_ms", run.plain_wall_ms), ("step_wall_ms", run.step_wall_ms)]
    for i, u in enumerate(run.units):
        figures += [(f"units[{i}].fwd_ms", u.fwd_ms), (f"units[{i}].bwd_ms", u.bwd_ms)]
    if run.cache is not None:
        figures.append(("cache.features_ms", run.cache.features_ms))
    return figures


def check_run(run: Run, where: str) -> None:
    """Every time sample finite and ≥ 0, or one line naming the first that is not.

    A plain step whose samples are all null is allowed: a user loop too short for
    one plain step saves ``[null]`` ("not measured").
    """
    for name, stats in _run_figures(run):
        problem = _bad_sample(stats.samples)
        if problem:
            raise RunDocumentError(f"{where}.{name}: {problem}")


# -- the document -------------------------------------------------------------------------


@dataclass
class RunDocument:
    meta: Meta
    units: list[UnitInfo]
    runs: dict[str, Run]

    @property
    def unit_names(self) -> list[str]:
        return [u.name for u in self.units]

    def warnings(self) -> list[tuple[str, RunWarning]]:
        """Every run's warnings, with the run's name."""
        return [(name, w) for name, run in self.runs.items() for w in run.warnings]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "meta": self.meta.to_dict(),
            "units": [u.to_dict() for u in self.units],
            "runs": {name: run.to_dict() for name, run in self.runs.items()},
        }

    @classmethod
    def from_dict(cls, d: Any) -> RunDocument:
        schema = d.get("schema") if isinstance(d, dict) else type(d).__name__
        if schema == SCHEMA_V1:
            d = upgrade_v1(d)
        elif schema != SCHEMA:
            raise RunDocumentError(f"not a tlprof run document (schema {schema!r}, expected {SCHEMA!r})")
        try:
            doc = cls(
                meta=Meta.from_dict(dict(d["meta"])),
                units=[UnitInfo.from_dict(u) for u in d["units"]],
                runs={name: Run.from_dict(r) for name, r in d["runs"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RunDocumentError(f"incomplete tlprof run document: missing or bad {exc}") from exc
        for name, run in doc.runs.items():
            check_run(run, f"runs.{name}")
        return doc

    def save(self, path: str | Path) -> None:
        save_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> RunDocument:
        return cls.from_dict(read_json_document(path))


# -- files --------------------------------------------------------------------------------


def save_json(data: dict[str, Any], path: str | Path) -> None:
    """Strict JSON, written whole or not at all: a temporary file beside ``path``, then a rename."""
    target = Path(path)
    text = json.dumps(finite(data), indent=1, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json_document(path: str | Path) -> Any:
    """Parsed JSON, or one RunDocumentError saying what is wrong with the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RunDocumentError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise RunDocumentError(f"{path} is not a JSON text file (binary or corrupt)") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunDocumentError(f"{path} is not valid JSON (truncated or corrupt): {exc}") from exc


# -- tlprof.run/1 -------------------------------------------------------------------------

_V1_UNIT_KERNEL_KEYS = {f.name for f in fields(UnitKernels)}


def upgrade_v1(d: dict[str, Any]) -> dict[str, Any]:
    """A ``tlprof.run/1`` document in the ``tlprof.run/2`` shape (its open dicts typed)."""
    try:
        meta = dict(d["meta"])
        if "modes" in meta:
            meta["runs"] = meta.pop("modes")
        return {"schema": SCHEMA, "meta": meta, "units": list(d["units"]),
                "runs": {name: upgrade_run_v1(r) for name, r in d["runs"].items()}}
    except (KeyError, TypeError, AttributeError) as exc:
        raise RunDocumentError(f"incomplete tlprof run document (v1): missing or bad {exc}") from exc


def upgrade_run_v1(r: dict[str, Any]) -> dict[str, Any]:
    mem = dict(r.get("memory", {}))
    warnings = [{"part": "marks", "text": w} for w in r.get("warnings", [])]
    out: dict[str, Any] = {
        "name": r["mode"], "freeze": r["freeze"], "step_ms": r["step_ms"],
        "phases_ms": {k.removesuffix("_ms"): v for k, v in r["phases"].items()
                      if k.removesuffix("_ms") in PHASES},
        "units": [_upgrade_unit_v1(u) for u in r["units"]],
        "plain_step_ms": r["overhead"]["plain_step_ms"],
        "memory": {"saved_bytes_total": mem.get("saved_bytes_total", 0),
                   "saved_other_bytes": mem.get("saved_other_bytes", {}),
                   "allocator": _upgrade_allocator_v1(mem)},
        "timeline": r.get("timeline", []),
    }
    if "features_ms" in r:
        out["cache"] = {"features_ms": r["features_ms"], **r.get("cache", {})}
    if "kernels" in r:
        block = dict(r["kernels"])
        warnings += [{"part": "kernels", "text": w} for w in block.pop("warnings", [])]
        out["kernels"] = {**block, "kernel_agreement": r.get("kernel_agreement")}
    if "energy" in r:
        block = dict(r["energy"])
        warnings += [{"part": "energy", "text": w} for w in block.pop("warnings", [])]
        out["energy"] = block
    out["warnings"] = warnings
    return out


def _upgrade_unit_v1(u: dict[str, Any]) -> dict[str, Any]:
    kernels = {k: v for k, v in u.items() if k in _V1_UNIT_KERNEL_KEYS}
    out = {k: v for k, v in u.items() if k not in _V1_UNIT_KERNEL_KEYS}
    out["kernels"] = kernels or None
    return out


def _upgrade_allocator_v1(mem: dict[str, Any]) -> dict[str, Any] | None:
    if "peak_allocated_bytes" not in mem:
        return None
    marks = [{"mark": _v1_mark_text(m["mark"]), "allocated_bytes": m["allocated_bytes"]}
             for m in mem.get("allocated_at_marks", [])]
    return {"peak_allocated_bytes": mem["peak_allocated_bytes"],
            "step_start_allocated_bytes": mem.get("step_start_allocated_bytes", 0),
            "reserved_bytes": mem.get("reserved_bytes", 0), "at_marks": marks}


def _v1_mark_text(text: str) -> str:
    """v1 wrote ``phase:loss_fwd``; v2 writes ``Label.text()``, ``loss_fwd``."""
    return text.removeprefix("phase:").removeprefix("end:") or "end"


# -- the sweep document -------------------------------------------------------------------

SWEEP_SCHEMA = "tlprof.sweep/2"
SWEEP_SCHEMA_V1 = "tlprof.sweep/1"


@dataclass
class SweepPoint:
    freeze: int
    runs: dict[str, Run]


@dataclass
class Sweep:
    """One full run, then the frozen (and cached) runs at each freeze depth."""

    meta: Meta
    units: list[UnitInfo]
    full: Run
    points: list[SweepPoint]
    depths: list[int] = field(default_factory=list)
    sweep_runs: list[str] = field(default_factory=list)  # frozen, cached

    def document_at(self, point: SweepPoint) -> RunDocument:
        meta = Meta.from_dict({**self.meta.to_dict(), "freeze": point.freeze,
                               "runs": ["full", *point.runs]})
        return RunDocument(meta, self.units, {"full": self.full, **point.runs})

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SWEEP_SCHEMA, "meta": self.meta.to_dict(), "units": [u.to_dict() for u in self.units],
            "full": self.full.to_dict(), "depths": self.depths, "sweep_runs": self.sweep_runs,
            "points": [{"freeze": p.freeze, "runs": {k: r.to_dict() for k, r in p.runs.items()}}
                       for p in self.points],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sweep:
        schema = d.get("schema")
        if schema == SWEEP_SCHEMA_V1:
            d = _upgrade_sweep_v1(d)
        elif schema != SWEEP_SCHEMA:
            raise RunDocumentError(f"not a tlprof sweep document (schema {schema!r})")
        try:
            sweep = cls(
                meta=Meta.from_dict(dict(d["meta"])), units=[UnitInfo.from_dict(u) for u in d["units"]],
                full=Run.from_dict(d["full"]),
                points=[SweepPoint(int(p["freeze"]), {k: Run.from_dict(r) for k, r in p["runs"].items()})
                        for p in d["points"]],
                depths=[int(x) for x in d.get("depths", [])], sweep_runs=list(d.get("sweep_runs", [])),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RunDocumentError(f"incomplete tlprof sweep document: missing or bad {exc}") from exc
        check_run(sweep.full, "full")
        for i, point in enumerate(sweep.points):
            for name, run in point.runs.items():
                check_run(run, f"points[{i}].runs.{name}")
        return sweep

    def save(self, path: str | Path) -> None:
        save_json(self.to_dict(), path)


def _upgrade_sweep_v1(d: dict[str, Any]) -> dict[str, Any]:
    try:
        meta = dict(d["meta"])
        meta.pop("modes", None)
        return {
            "meta": meta, "units": d["units"], "full": upgrade_run_v1(d["full"]),
            "depths": meta.pop("freeze_depths", []), "sweep_runs": meta.pop("sweep_modes", []),
            "points": [{"freeze": p["freeze"], "runs": {k: upgrade_run_v1(r) for k, r in p["runs"].items()}}
                       for p in d["points"]],
        }
    except (KeyError, TypeError, AttributeError) as exc:
        raise RunDocumentError(f"incomplete tlprof sweep document (v1): missing or bad {exc}") from exc


def read_document(path: str | Path) -> RunDocument | Sweep:
    """A run or a sweep document (either schema version)."""
    data = read_json_document(path)
    if isinstance(data, dict) and data.get("schema") in (SWEEP_SCHEMA, SWEEP_SCHEMA_V1):
        return Sweep.from_dict(data)
    return RunDocument.from_dict(data)
