"""The report builder: derived quantities from a ``RunDocument`` (docs/design.md §1, §6). Never measures.

Every figure is computed from the medians the run document already holds:

- t_i = f_i + b_i per unit, from the full run (ms per step);
- uniformity of t_i, the frozen run against the full one and where the saving comes from;
- the cost model rows for k = 1..K, scaled to epochs when asked;
- a verdict on each of the paper's four claims.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from tlprof.document import Run, RunDocument, finite
from tlprof.errors import TlprofError
from tlprof.reports.kernel_rows import KernelsSummary, kernels_summary
from tlprof.reports.launch_rows import LaunchRun, LaunchSummary, launch_summary, opt_sum
from tlprof.reports.uncertainty import MIN_SAMPLES, Interval, bounds_text, columns_cis, median_ci, ratio_ci

SCHEMA = "tlprof.report/2"  # 2: model 1 counted as the full training (issue #13); ``base`` → ``first_model``
GRANULARITIES = ("unit", "block", "stage")
DEFAULT_MODELS = 5

# Verdict thresholds: a claim "holds" when the measurement is this close to it.
UNIFORM_MAX_CV = 0.25  # coefficient of variation of t_i
UNIFORM_MAX_SPREAD = 2.0  # max t_i / min t_i
RATIO_TOLERANCE = 0.25  # |measured / paper - 1| for the per-model cost and the 3-model example
OVERHEAD_NOTE = 1.10  # instrumented / plain step above which a run's figures get a note
MIN_CPU_SHARE = 0.85  # on a CPU device, CPU time / wall time below this: other work took the CPU
HOLDS_BACK = 1.10  # a rank's compute over the other ranks' median above which it holds them back

# The paper's example (docs/design.md §1): t = 1 h, L = 50, N = 45, k = 3.
PAPER_L, PAPER_N, PAPER_K = 50, 45, 3

HOLDS, REFUTED, NOT_MEASURED = "holds", "refuted", "not measured"
NOT_ENOUGH = "not enough evidence"  # too few steps, NaN data, or a CI that straddles the tolerance band

TIME_UNITS = (("h", 3_600_000.0), ("min", 60_000.0), ("s", 1000.0), ("ms", 1.0))


@dataclass
class ReportOptions:
    models: int = DEFAULT_MODELS
    steps_per_epoch: int | None = None
    epochs: int | None = None
    granularity: str = "unit"
    # The cached row: False = the k models share the data, so the frozen units' features are
    # computed once; True = each model has its own data and pays S·F_N (``--different-data``).
    data_per_model: bool = False

    def validate(self) -> None:
        if self.models < 1:
            raise TlprofError(f"--models must be at least 1, got {self.models}")
        for flag, value in (("--steps-per-epoch", self.steps_per_epoch), ("--epochs", self.epochs)):
            if value is not None and value < 1:
                raise TlprofError(f"{flag} must be at least 1, got {value}")
        if self.granularity not in GRANULARITIES:
            raise TlprofError(f"--granularity must be one of {', '.join(GRANULARITIES)}")

    @property
    def scaled(self) -> bool:
        return self.steps_per_epoch is not None or self.epochs is not None

    @property
    def steps(self) -> int:
        return self.steps_per_epoch or 1

    @property
    def epoch_count(self) -> int:
        return self.epochs or 1


# -- report parts ---------------------------------------------------------------


@dataclass
class UnitRow:
    """One unit, or a block or stage of units (``units`` counts them)."""

    name: str
    stage: str
    block: str
    first: int  # index of the first unit, 1-based
    units: int
    trainable: int  # how many of them train in the frozen run
    fwd_ms: float
    bwd_ms: float
    t_ms: float
    step_share: float  # t / full step
    cum_share: float  # cumulative t / full step, in unit order
    noisy: bool
    frozen_fwd_ms: float | None = None
    frozen_bwd_ms: float | None = None
    cached_fwd_ms: float | None = None
    cached_bwd_ms: float | None = None
    saved_bytes: int = 0
    param_bytes: int = 0


@dataclass
class Uniformity:
    mean_ms: float
    min_ms: float
    max_ms: float
    max_over_min: float
    cv: float
    top5_share: float  # of Σ t_i
    top5_units: list[str]
    tail_units: int  # L − N
    tail_share: float  # Σ_{i>N} t_i / Σ t_i
    paper_tail_share: float  # (L − N) / L


@dataclass
class Part:
    """A named amount of time and, where it has one, of memory."""

    name: str
    ms: float
    share: float | None = None  # of the step it belongs to
    bytes: int | None = None


@dataclass
class FrozenSummary:
    freeze: int
    full_step_ms: float
    frozen_step_ms: float
    step_ratio: float
    paper_ratio: float  # (L − N) / L
    predicted_ratio: float  # from the full run: every forward + the tail's backward + phases
    saved_ms: float
    bwd_over_fwd: float  # Σ b_i / Σ f_i in the full run
    breakdown: list[Part]  # where the frozen step's time goes
    savings: list[Part]  # where the saving comes from, ms and bytes
    memory: dict[str, dict[str, int | None]]  # figure → {full, frozen, saved}
    step_ratio_ci: Interval  # bootstrap CI of frozen/full (reports/uncertainty.py)


@dataclass
class CachedSummary:
    freeze: int
    features_ms: float  # F_N: no-grad forward of units 1..N, per batch
    step_ms: float  # h_N: a training step of units N+1..L fed cached features
    step_ratio: float  # h_N / s_full
    frozen_step_ratio: float | None  # h_N / s_frozen
    step_ratio_ci: Interval  # bootstrap CI of h_N / s_full


@dataclass
class CostRow:
    """One row of docs/design.md §6, counted the paper's way: model 1 trains in full, models 2..k reuse
    its frozen units. T_classic(k) = k·per_model_classic and

        T_transfer(k) = first_model + (k−1)·per_model_transfer + [k ≥ 2]·shared_once,

    so T_transfer(1) = T_classic(1). Marginal cost of model k = T(k) − T(k−1), with T(0) = 0.
    """

    name: str
    formula: str
    departs: str
    classic: list[float]
    transfer: list[float]
    ratio: list[float]
    marginal_classic: list[float]
    marginal_transfer: list[float]  # model 1: first_model; model 2: + shared_once; then per_model_transfer
    first_model: float  # T_transfer(1) = T_classic(1): model 1, trained in full
    shared_once: float  # paid once, with model 2: cached features shared by models 2..k; else 0
    per_model_classic: float
    per_model_transfer: float  # each of models 2..k
    limit_ratio: float  # T_transfer / T_classic as k → ∞ = per_model_transfer / per_model_classic


@dataclass
class CostModel:
    k: list[int]
    unit: str
    ms_per_unit: float
    steps_per_epoch: int
    epochs: int
    rows: dict[str, CostRow]


@dataclass
class CommRow:
    """One run's gradient all-reduce on rank 0, per step (medians)."""

    run: str
    buckets: int
    bytes_per_step: int
    grad_bytes: int  # grad dtype × trainable parameters
    padding: str
    allreduce_ms: float  # Σ over buckets of launch → finish
    span_ms: float  # first launch → last finish
    backward_end_ms: float  # from the step's start
    exposed_ms: float  # after backward's last unit, the step waits this long for communication
    step_ms: float
    exposed_share: float  # of the step
    hidden_share: float  # of the all-reduce span, behind backward


@dataclass
class RankRow:
    rank: int
    host: str
    device: str
    step_ms: float
    compute_ms: float  # step − exposed communication: what this rank itself needs
    exposed_ms: float | None
    allreduce_ms: float | None
    bytes_per_step: int | None


@dataclass
class UnitSpread:
    """One unit's t = fwd + bwd across the ranks."""

    index: int
    name: str
    min_ms: float
    max_ms: float
    spread: float  # max / min
    slowest_rank: int


@dataclass
class RankSummary:
    run: str
    ranks: list[RankRow]
    slowest_rank: int  # by compute
    step_spread: float  # max / min step: DDP makes the ranks wait for each other, so near 1
    compute_spread: float  # max / min compute
    units: list[UnitSpread]
    holds_back: bool
    verdict: str


@dataclass
class DistributedSummary:
    world_size: int
    backend: str
    comm: list[CommRow]
    ranks: list[RankSummary]
    saving: list[Part]  # the frozen run's saving: compute and communication
    verdicts: list[str]
    saved_ms: float | None = None  # the frozen run's saving per step that ``saving`` splits


@dataclass
class Claim:
    id: str
    claim: str
    verdict: str
    evidence: str
    numbers: dict[str, Any] = field(default_factory=dict)
    ci: Interval | None = None  # the bootstrap CI the verdict was decided on
    reason: str = ""  # why "not enough evidence"


@dataclass
class ReportWarning:
    run: str
    part: str  # what found it: marks, kernels, energy...
    text: str

    def __str__(self) -> str:
        return f"{self.run} run ({self.part}): {self.text}"


@dataclass
class Report:
    source: dict[str, Any]
    options: ReportOptions
    n_units: int
    freeze: int
    full_step_ms: float
    t_ms: list[float]
    units: list[UnitRow]
    blocks: list[UnitRow]
    stages: list[UnitRow]
    uniformity: Uniformity
    frozen: FrozenSummary | None
    cached: CachedSummary | None
    cost_model: CostModel
    claims: list[Claim]
    notes: list[str]
    warnings: list[ReportWarning] = field(default_factory=list)  # the runs' own, as measured
    distributed: DistributedSummary | None = None
    kernels: KernelsSummary | None = None  # what --kernels measured, against the roofline
    launch: LaunchSummary | None = None  # eager CUDA runs: host beside GPU time, per unit
    overhead: dict[str, Interval] = field(default_factory=dict)  # per run: instrumented / plain step

    def rows(self, granularity: str | None = None) -> list[UnitRow]:
        g = granularity or self.options.granularity
        return {"unit": self.units, "block": self.blocks, "stage": self.stages}[g]

    def to_dict(self) -> dict[str, Any]:
        data = {"schema": SCHEMA, **asdict(self)}
        data["cost_model"]["rows"] = {
            name: {k: v for k, v in row.items() if k != "name"}
            for name, row in data["cost_model"]["rows"].items()
        }
        return finite(data)


# -- helpers --------------------------------------------------------------------


def _div(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _mem(run: Run, key: str) -> int | None:
    """A memory figure of the run: saved, grad, optimizer_state (units' totals) or peak."""
    if key == "saved":
        return run.memory.saved_bytes_total
    if key == "peak":
        return run.memory.allocator.peak_allocated_bytes if run.memory.allocator else None
    return run.units_total(f"{key}_bytes")


# -- per unit and rollups -------------------------------------------------------


def unit_rows(profile: RunDocument, full: Run, n_frozen: int) -> list[UnitRow]:
    step = full.step_ms.median
    frozen, cached = profile.runs.get("frozen"), profile.runs.get("cached")
    rows, cum = [], 0.0
    for i, (desc, u) in enumerate(zip(profile.units, full.units)):
        t = u.t_ms
        cum += t
        rows.append(UnitRow(
            name=desc.name, stage=desc.stage, block=desc.block,
            first=u.index, units=1, trainable=int(u.index > n_frozen),
            fwd_ms=u.fwd_ms.median, bwd_ms=u.bwd_ms.median, t_ms=t,
            step_share=_div(t, step), cum_share=_div(cum, step),
            noisy=u.fwd_ms.noisy or u.bwd_ms.noisy,
            frozen_fwd_ms=frozen.units[i].fwd_ms.median if frozen else None,
            frozen_bwd_ms=frozen.units[i].bwd_ms.median if frozen else None,
            cached_fwd_ms=cached.units[i].fwd_ms.median if cached else None,
            cached_bwd_ms=cached.units[i].bwd_ms.median if cached else None,
            saved_bytes=u.saved_bytes, param_bytes=u.param_bytes,
        ))
    return rows


def rollup(rows: list[UnitRow], key: str, step_ms: float) -> list[UnitRow]:
    """Units with the same ``key`` (block or stage) as one row, ordered by their first unit."""
    groups: dict[str, list[UnitRow]] = {}
    for r in rows:
        groups.setdefault(getattr(r, key), []).append(r)
    out, cum = [], 0.0
    for name, members in sorted(groups.items(), key=lambda kv: kv[1][0].first):
        t = sum(m.t_ms for m in members)
        cum += t
        out.append(UnitRow(
            name=name, stage=members[0].stage, block=name if key == "block" else "",
            first=members[0].first, units=len(members), trainable=sum(m.trainable for m in members),
            fwd_ms=sum(m.fwd_ms for m in members), bwd_ms=sum(m.bwd_ms for m in members),
            t_ms=t, step_share=_div(t, step_ms), cum_share=_div(cum, step_ms),
            noisy=any(m.noisy for m in members),
            frozen_fwd_ms=opt_sum([m.frozen_fwd_ms for m in members]),
            frozen_bwd_ms=opt_sum([m.frozen_bwd_ms for m in members]),
            cached_fwd_ms=opt_sum([m.cached_fwd_ms for m in members]),
            cached_bwd_ms=opt_sum([m.cached_bwd_ms for m in members]),
            saved_bytes=sum(m.saved_bytes for m in members),
            param_bytes=sum(m.param_bytes for m in members),
        ))
    return out


def uniformity(t_ms: list[float], names: list[str], n_frozen: int) -> Uniformity:
    total = sum(t_ms)
    mean = statistics.fmean(t_ms)
    lo, hi = min(t_ms), max(t_ms)
    top = sorted(range(len(t_ms)), key=lambda i: t_ms[i], reverse=True)[:5]
    n = len(t_ms)
    return Uniformity(
        mean_ms=mean, min_ms=lo, max_ms=hi,
        max_over_min=_div(hi, lo) if lo > 0 else float("inf"),
        cv=_div(statistics.pstdev(t_ms), mean),
        top5_share=_div(sum(t_ms[i] for i in top), total),
        top5_units=[names[i] for i in top],
        tail_units=n - n_frozen,
        tail_share=_div(sum(t_ms[n_frozen:]), total),
        paper_tail_share=(n - n_frozen) / n,
    )


# -- the frozen and cached runs -------------------------------------------------


def frozen_summary(full: Run, frozen: Run, n_units: int) -> FrozenSummary:
    n = frozen.freeze
    s_full, s_frozen = full.step_ms.median, frozen.step_ms.median
    parts = [
        ("forward of frozen units", frozen.fwd_ms(0, n)),
        ("forward of trainable units", frozen.fwd_ms(n)),
        ("backward of trainable units", frozen.bwd_ms(n)),
        ("loss forward + backward", frozen.phase_ms("loss_fwd", "loss_bwd")),
        ("optimizer + zero_grad", frozen.phase_ms("optimizer", "zero_grad")),
        ("other", frozen.phase_ms("other")),
    ]
    breakdown = [Part(name, ms, _div(ms, s_frozen)) for name, ms in parts]
    breakdown.append(Part("step − Σ medians", s_frozen - sum(ms for _, ms in parts),
                          _div(s_frozen - sum(ms for _, ms in parts), s_frozen)))
    savings = _savings(full, frozen)
    predicted = full.fwd_ms() + full.bwd_ms(n) + full.phase_ms(
        "loss_fwd", "loss_bwd", "optimizer", "zero_grad", "other")
    return FrozenSummary(
        freeze=n, full_step_ms=s_full, frozen_step_ms=s_frozen,
        step_ratio=_div(s_frozen, s_full), paper_ratio=(n_units - n) / n_units,
        predicted_ratio=_div(predicted, s_full), saved_ms=s_full - s_frozen,
        bwd_over_fwd=_div(full.bwd_ms(), full.fwd_ms()),
        breakdown=breakdown, savings=savings, memory=_memory_saved(full, frozen),
        step_ratio_ci=ratio_ci(frozen.step_ms.samples, full.step_ms.samples),
    )


def _diff_bytes(full: Run, frozen: Run, key: str) -> int | None:
    a, b = _mem(full, key), _mem(frozen, key)
    return a - b if a is not None and b is not None else None


def _savings(full: Run, frozen: Run) -> list[Part]:
    s_saved = full.step_ms.median - frozen.step_ms.median
    sources = [
        Part("backward not run", full.bwd_ms() - frozen.bwd_ms(),
             bytes=_diff_bytes(full, frozen, "grad")),
        Part("activations not saved (lighter forward)", full.fwd_ms() - frozen.fwd_ms(),
             bytes=_diff_bytes(full, frozen, "saved")),
        Part("smaller optimizer step", full.phase_ms("optimizer", "zero_grad")
             - frozen.phase_ms("optimizer", "zero_grad"),
             bytes=_diff_bytes(full, frozen, "optimizer_state")),
        Part("loss and other phases", full.phase_ms("loss_fwd", "loss_bwd", "other")
             - frozen.phase_ms("loss_fwd", "loss_bwd", "other")),
    ]
    sources.append(Part("step − Σ medians", s_saved - sum(p.ms for p in sources)))
    for p in sources:
        p.share = _div(p.ms, s_saved)
    return sources


def _memory_saved(full: Run, frozen: Run) -> dict[str, dict[str, int | None]]:
    keys = {
        "saved activations": "saved",
        "gradients": "grad",
        "optimizer state": "optimizer_state",
        "peak allocated": "peak",
    }
    out = {}
    for label, key in keys.items():
        a, b = _mem(full, key), _mem(frozen, key)
        if a is None and b is None:
            continue
        out[label] = {"full": a, "frozen": b, "saved": a - b if a is not None and b is not None else None}
    return out


def cached_summary(full: Run, cached: Run, frozen: Run | None) -> CachedSummary:
    f_n = cached.cache.features_ms.median if cached.cache else 0.0
    h = cached.step_ms.median
    return CachedSummary(
        freeze=cached.freeze, features_ms=f_n, step_ms=h,
        step_ratio=_div(h, full.step_ms.median),
        frozen_step_ratio=_div(h, frozen.step_ms.median) if frozen else None,
        step_ratio_ci=ratio_ci(cached.step_ms.samples, full.step_ms.samples),
    )


# -- the cost model (docs/design.md §6) ----------------------------------------------


def time_unit(options: ReportOptions, largest_ms: float) -> tuple[str, float]:
    if not options.scaled:
        return "ms", 1.0
    for name, ms in TIME_UNITS:
        if largest_ms >= ms:
            return name, ms
    return "ms", 1.0


@dataclass
class RowSpec:
    """A cost-model row in ms for the whole training (S·E steps), before tabulating it over k."""

    name: str
    formula: str
    departs: str
    full: float  # one model trained in full: the classic cost per model, and model 1 of transfer
    per_model: float  # each of transfer models 2..k
    once: float = 0.0  # paid once by models 2..k together (the shared feature pass)

    def classic(self, k: int) -> float:
        return k * self.full

    def transfer(self, k: int) -> float:
        return self.full + (k - 1) * self.per_model + (self.once if k >= 2 else 0.0)

    def marginal_transfer(self, k: int) -> float:
        """T_transfer(k) − T_transfer(k−1), T(0) = 0: what model k adds."""
        if k == 1:
            return self.full
        return self.per_model + (self.once if k == 2 else 0.0)


def cost_row(spec: RowSpec, ks: list[int], scale: float) -> CostRow:
    classic = [spec.classic(k) / scale for k in ks]
    transfer = [spec.transfer(k) / scale for k in ks]
    c, p = spec.full / scale, spec.per_model / scale
    return CostRow(
        name=spec.name, formula=spec.formula, departs=spec.departs, classic=classic, transfer=transfer,
        ratio=[_div(t, cl) for t, cl in zip(transfer, classic)],
        marginal_classic=[c] * len(ks),
        marginal_transfer=[spec.marginal_transfer(k) / scale for k in ks],
        first_model=c, shared_once=spec.once / scale, per_model_classic=c, per_model_transfer=p,
        limit_ratio=_div(p, c),
    )


def row_specs(report_t: list[float], n_frozen: int, full: Run, frozen: Run | None,
              cached: CachedSummary | None, options: ReportOptions) -> dict[str, RowSpec]:
    """docs/design.md §6, in ms for S steps per epoch and E epochs."""
    L, N = len(report_t), n_frozen  # noqa: N806 - the paper's symbols
    s, se = options.steps, options.steps * options.epoch_count
    t_bar = statistics.fmean(report_t)
    tail = sum(report_t[n_frozen:])
    s_full = full.step_ms.median
    specs = [
        RowSpec("paper_uniform",
                f"L·k·t̄ | (N + (L−N)·k)·t̄ = L·t̄ + (k−1)·(L−N)·t̄, t̄ = mean t_i, L = {L}, N = {N}",
                "one t for every layer; models 2..k pay only their L−N trainable layers: the frozen "
                "layers' forward, the loss and the optimizer cost nothing",
                L * t_bar * se, (L - N) * t_bar * se),
        RowSpec("paper_measured_t",
                "k·Σt_i | Σ_(i≤N) t_i + k·Σ_(i>N) t_i = Σt_i + (k−1)·Σ_(i>N) t_i",
                "the paper's layer counting with each layer's measured t_i: the trainable "
                "tail's real share replaces (L−N)/L; frozen forward still costs nothing",
                sum(report_t) * se, tail * se),
    ]
    if frozen is not None:
        specs.append(RowSpec(
            "measured", "k·s_full | s_full + (k−1)·s_frozen (× S·E)",
            "model 1 is a full training; models 2..k each pay the frozen units' forward, "
            "the loss and the optimizer every step",
            s_full * se, frozen.step_ms.median * se))
        if full.distributed is not None:
            specs[-1].departs += (f"; data-parallel over {full.distributed.world_size} ranks: s is rank 0's "
                                  "DDP step, the gradient all-reduce included")
        c_full, c_frozen = exposed_ms(full), exposed_ms(frozen)
        if c_full is not None and c_frozen is not None:
            specs.append(RowSpec(
                "measured_compute", "as measured, with c = exposed communication taken out of each step",
                "what the data-parallel steps cost without waiting for the all-reduce: the gap to the "
                "measured row is the communication's part",
                (s_full - c_full) * se, (frozen.step_ms.median - c_frozen) * se))
    if cached is not None:
        specs.append(_cached_spec(s_full, cached, s, se, options.data_per_model))
    return {spec.name: spec for spec in specs}


def _cached_spec(s_full: float, cached: CachedSummary, s: int, se: int, data_per_model: bool) -> RowSpec:
    features, tail = s * cached.features_ms, se * cached.step_ms
    if data_per_model:
        return RowSpec(
            "measured_cached", "k·s_full·S·E | s_full·S·E + (k−1)·(S·F_N + S·E·h_N), data per model",
            "each model trains on its own data (--different-data): models 2..k each run units "
            "1..N once per sample (S·F_N), then train only units N+1..L for E epochs",
            s_full * se, features + tail)
    return RowSpec(
        "measured_cached", "k·s_full·S·E | s_full·S·E + S·F_N + (k−1)·S·E·h_N, same data (S·F_N from k = 2)",
        "the k models share the data: units 1..N run once per sample (S·F_N, paid once, with "
        "model 2), then models 2..k train only units N+1..L for E epochs; --different-data "
        "charges S·F_N to every model after the first",
        s_full * se, tail, once=features)


def cost_model(specs: dict[str, RowSpec], report_t: list[float], full: Run,
               options: ReportOptions) -> CostModel:
    se = options.steps * options.epoch_count
    ks = list(range(1, options.models + 1))
    unit, scale = time_unit(options, options.models * max(full.step_ms.median, sum(report_t)) * se)
    rows = {name: cost_row(spec, ks, scale) for name, spec in specs.items()}
    return CostModel(k=ks, unit=unit, ms_per_unit=scale, steps_per_epoch=options.steps,
                     epochs=options.epoch_count, rows=rows)



# -- data parallelism (docs/design.md §9) ----------------------------------------


def exposed_ms(run: Run) -> float | None:
    comm = run.distributed.comm if run.distributed else None
    return comm.exposed_ms.median if comm and comm.exposed_ms.samples else None


def saved_step_ms(full: Run, frozen: Run) -> float:
    return full.step_ms.median - frozen.step_ms.median


def comm_row(run: Run) -> CommRow | None:
    comm = run.distributed.comm if run.distributed else None
    if comm is None:
        return None
    span, exposed = comm.span_ms.median, comm.exposed_ms.median
    return CommRow(
        run=run.name, buckets=len(comm.buckets), bytes_per_step=comm.bytes_per_step,
        grad_bytes=comm.grad_bytes, padding=comm.padding, allreduce_ms=comm.allreduce_ms.median,
        span_ms=span, backward_end_ms=comm.backward_end_ms.median, exposed_ms=exposed,
        step_ms=run.step_ms.median, exposed_share=_div(exposed, run.step_ms.median),
        hidden_share=max(0.0, 1 - _div(exposed, span)) if span > 0 else float("nan"),
    )


def _paired_median(a: list[float], b: list[float]) -> float:
    """Median of a − b step by step when the samples pair up, else the difference of medians."""
    if len(a) == len(b) and a:
        return statistics.median(x - y for x, y in zip(a, b))
    return (statistics.median(a) if a else 0.0) - (statistics.median(b) if b else 0.0)


def rank_rows(run: Run) -> list[RankRow]:
    rows = []
    for r in run.distributed.ranks:
        exposed = r.exposed_ms.samples if r.exposed_ms else []
        rows.append(RankRow(
            rank=r.rank, host=r.host, device=r.device, step_ms=r.step_ms.median,
            compute_ms=_paired_median(r.step_ms.samples, exposed),
            exposed_ms=r.exposed_ms.median if r.exposed_ms else None,
            allreduce_ms=r.allreduce_ms.median if r.allreduce_ms else None,
            bytes_per_step=r.bytes_per_step))
    return rows


def unit_spreads(run: Run, names: list[str]) -> list[UnitSpread]:
    ranks = run.distributed.ranks
    out = []
    for i, name in enumerate(names):
        t = [(r.unit_fwd_ms[i] + r.unit_bwd_ms[i], r.rank) for r in ranks if i < len(r.unit_fwd_ms)]
        if not t:
            continue
        (lo, _), (hi, slow) = min(t), max(t)
        out.append(UnitSpread(i + 1, name, lo, hi, _div(hi, lo) if lo > 0 else float("nan"), slow))
    return out


def rank_summary(run: Run, names: list[str]) -> RankSummary | None:
    if run.distributed is None or len(run.distributed.ranks) < 2:
        return None
    rows = rank_rows(run)
    slow = max(rows, key=lambda r: r.compute_ms)
    others = statistics.median(r.compute_ms for r in rows if r is not slow)
    steps, compute = [r.step_ms for r in rows], [r.compute_ms for r in rows]
    units = unit_spreads(run, names)
    holds = _div(slow.compute_ms, others) > HOLDS_BACK
    if holds:
        worst = max(units, key=lambda u: u.max_ms - u.min_ms)
        verdict = (f"{run.name} run: rank {slow.rank} holds the others back: it computes "
                   f"{slow.compute_ms:.3g} ms per step against {others:.3g} ms on the others "
                   f"({_div(slow.compute_ms, others):.2f}×), and they wait for it in the all-reduce; "
                   f"its slowest unit against the other ranks is {worst.name} "
                   f"({worst.max_ms:.3g} vs {worst.min_ms:.3g} ms)")
    else:
        verdict = (f"{run.name} run: no rank holds the others back (compute max/min "
                   f"{_div(max(compute), min(compute)):.2f}, within {HOLDS_BACK:.2f})")
    return RankSummary(
        run=run.name, ranks=rows, slowest_rank=slow.rank,
        step_spread=_div(max(steps), min(steps)), compute_spread=_div(max(compute), min(compute)),
        units=units, holds_back=holds, verdict=verdict)


def comm_saving(full: Run, frozen: Run) -> list[Part]:
    """The frozen saving (``saved_step_ms``) split: the step without exposed communication, and the
    exposed part."""
    c_full, c_frozen = exposed_ms(full), exposed_ms(frozen)
    if c_full is None or c_frozen is None:
        return []
    saved = saved_step_ms(full, frozen)
    bytes_saved = full.distributed.comm.bytes_per_step - frozen.distributed.comm.bytes_per_step
    comm = c_full - c_frozen
    parts = [Part("compute (step − exposed communication)", saved - comm),
             Part("exposed communication", comm, bytes=bytes_saved)]
    for p in parts:
        p.share = _div(p.ms, saved)
    return parts


def distributed_summary(profile: RunDocument, names: list[str]) -> DistributedSummary | None:
    runs = [r for r in profile.runs.values() if r.distributed is not None]
    if not runs:
        return None
    first = runs[0].distributed
    comm = [row for r in runs if (row := comm_row(r)) is not None]
    ranks = [s for r in runs if (s := rank_summary(r, names)) is not None]
    full, frozen = profile.runs.get("full"), profile.runs.get("frozen")
    saving = comm_saving(full, frozen) if full and frozen else []
    verdicts = [s.verdict for s in ranks]
    for row in comm:
        verdicts.append(
            f"{row.run} run: {row.bytes_per_step:,} bytes all-reduced per step in {row.buckets} bucket(s) "
            f"(grad dtype × trainable parameters = {row.grad_bytes:,}); {row.exposed_ms:.3g} ms of it "
            f"exposed after backward ({_pct(row.exposed_share)} of the step)")
    if saving:
        verdicts.append(
            f"of the frozen saving, compute gives {saving[0].ms:.3g} ms ({_pct(saving[0].share)}) and "
            f"communication {saving[1].ms:.3g} ms ({_pct(saving[1].share)})")
    return DistributedSummary(first.world_size, first.backend, comm, ranks, saving, verdicts,
                              saved_step_ms(full, frozen) if saving else None)


def _pct(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:.0%}"


# -- the paper's claims (docs/design.md §1) ------------------------------------------
# A claim that compares a measured figure with the paper's value gets a verdict only from enough
# steps (MIN_SAMPLES per run) and a bootstrap CI (reports/uncertainty.py) wholly inside the band
# where the figure agrees with the paper ("holds") or wholly outside it ("refuted").


def _g(x: float) -> str:
    return f"{x:.3g}"


def decide(ci: Interval, lo: float, hi: float, what: str) -> tuple[str, str]:
    """A verdict on ``ci`` against the agreement band [lo, hi], and the reason when there is none."""
    if ci.n == 0 or not math.isfinite(ci.value):
        return NOT_ENOUGH, f"{what} is not a number (no samples, or a zero step)"
    if ci.n < MIN_SAMPLES:
        return NOT_ENOUGH, (f"{what} rests on {ci.counts()} measured steps; a verdict needs at least "
                            f"{MIN_SAMPLES} per run (more --steps)")
    if ci.within(lo, hi):
        return HOLDS, ""
    if ci.outside(lo, hi):
        return REFUTED, ""
    bounds = bounds_text(ci, _g, "unbounded")
    return NOT_ENOUGH, (f"{what}'s {ci.level:.0%} CI {bounds} straddles the band [{_g(lo)}, {_g(hi)}] "
                        "where it agrees with the paper")


def _with_reason(evidence: str, verdict: str, reasons: list[str]) -> str:
    if verdict != NOT_ENOUGH:
        return evidence
    return f"{evidence}; not enough evidence: {'; '.join(dict.fromkeys(r for r in reasons if r))}"


def t_columns(full: Run) -> list[list[float]]:
    """Per unit, t = f + b per measured step (f + median b when the two were not sampled alike)."""
    cols = []
    for u in full.units:
        f, b = u.fwd_ms.samples, u.bwd_ms.samples
        cols.append([x + y for x, y in zip(f, b)] if len(f) == len(b) else [x + u.bwd_ms.median for x in f])
    return cols


def _cv(ts: list[float]) -> float:
    """Population CV in float arithmetic (``statistics.pstdev`` is exact and slow: 2,000 draws)."""
    mean = math.fsum(ts) / len(ts)
    return math.sqrt(math.fsum((t - mean) ** 2 for t in ts) / len(ts)) / mean if mean > 0 else math.nan


def _spread(ts: list[float]) -> float:
    lo = min(ts)
    return max(ts) / lo if lo > 0 else math.inf


def claim_uniform(u: Uniformity, names: list[str], t_ms: list[float], full: Run) -> Claim:
    cols = t_columns(full)
    cv_ci, spread_ci = columns_cis(cols, [_cv, _spread])
    cv = decide(cv_ci, 0.0, UNIFORM_MAX_CV, "the CV of t_i")
    spread = decide(spread_ci, 1.0, UNIFORM_MAX_SPREAD, "max/min t_i")
    verdicts = {cv[0], spread[0]}
    verdict = REFUTED if REFUTED in verdicts else HOLDS if verdicts == {HOLDS} else NOT_ENOUGH
    lo = names[t_ms.index(u.min_ms)]
    hi = names[t_ms.index(u.max_ms)]
    evidence = (
        f"t_i spans {u.min_ms:.3g} ms ({lo}) to {u.max_ms:.3g} ms ({hi}), "
        f"max/min {_ci_text(spread_ci, u.max_over_min)}, CV {_ci_text(cv_ci, u.cv, '.2f')}; the costliest "
        f"5 units take {u.top5_share:.0%} of Σt (5/{len(t_ms)} = {5 / len(t_ms):.0%} if uniform)"
    )
    if u.tail_units < len(t_ms):
        evidence += (f"; the last {u.tail_units} take {u.tail_share:.1%} "
                     f"vs the paper's {u.paper_tail_share:.1%}")
    return Claim("uniform_t", "t is uniform across layers", verdict,
                 _with_reason(evidence, verdict, [cv[1], spread[1]]),
                 {"cv": u.cv, "max_over_min": u.max_over_min, "top5_share": u.top5_share,
                  "tail_share": u.tail_share, "paper_tail_share": u.paper_tail_share,
                  "cv_ci": cv_ci, "max_over_min_ci": spread_ci}, cv_ci,
                 "; ".join(dict.fromkeys(r for r in (cv[1], spread[1]) if r and verdict == NOT_ENOUGH)))


def _ci_text(ci: Interval | None, value: float, spec: str = ".3g") -> str:
    """``0.643 [0.63, 0.66]``: the figure, and its CI when it has a finite one."""
    bounds = bounds_text(ci, lambda x: format(x, spec))
    return f"{value:{spec}} {bounds}" if bounds else format(value, spec)


def _band(paper: float) -> tuple[float, float]:
    return paper * (1 - RATIO_TOLERANCE), paper * (1 + RATIO_TOLERANCE)


def claim_per_model(f: FrozenSummary | None, n_units: int, n_frozen: int) -> Claim:
    text = (f"freezing {n_frozen or 'N'} of {n_units} layers cuts a model's training cost "
            f"to {n_units - n_frozen}/{n_units}" if n_frozen else
            "freezing N of L layers cuts a model's training cost to (L−N)/L")
    if f is None:
        return Claim("per_model_cost", text, NOT_MEASURED,
                     "needs a frozen run: profile with --freeze N (--runs both or all)")
    ci = f.step_ratio_ci
    lo, hi = _band(f.paper_ratio)
    verdict, reason = decide(ci, lo, hi, "frozen/full")
    fwd_frozen = f.breakdown[0]
    evidence = (
        f"frozen/full step = {_ci_text(ci, f.step_ratio, '.3f')} ({ci.phrase()}) vs {f.paper_ratio:.3f} "
        f"(agreement within ±{RATIO_TOLERANCE:.0%}: {lo:.3f}–{hi:.3f}); frozen units still run "
        f"their forward every step ({fwd_frozen.ms:.3g} ms, {fwd_frozen.share:.0%} of the frozen "
        f"step) and backward is {f.bwd_over_fwd:.2f}× forward, so forward-all + backward-tail "
        f"predicts {f.predicted_ratio:.3f}"
    )
    return Claim("per_model_cost", text, verdict, _with_reason(evidence, verdict, [reason]),
                 {"step_ratio": f.step_ratio, "paper_ratio": f.paper_ratio,
                  "predicted_ratio": f.predicted_ratio, "frozen_forward_share": fwd_frozen.share},
                 ci, reason)


def _finite_row(row: CostRow) -> bool:
    return all(math.isfinite(x) for x in (row.first_model, row.per_model_transfer, row.limit_ratio))


def claim_growth(cm: CostModel, marginal: Interval | None = None, limit: Interval | None = None) -> Claim:
    """Refuted by the form of T(k), the paper's own counting included: it is affine in k.

    ``marginal`` and ``limit`` are the measured row's CIs of p and p/T_full, when it has them;
    the claim's ``ci`` is p's.
    """
    best = cm.rows.get("measured") or cm.rows["paper_measured_t"]
    if not _finite_row(best):
        best, marginal, limit = cm.rows["paper_uniform"], None, None
    ks = cm.k
    if best.name != "measured":
        marginal = limit = None
    p = _ci_text(marginal, best.per_model_transfer, ".4g")
    evidence = (
        f"T_transfer(k) = T_full + (k−1)·p = {best.first_model:.4g} + (k−1)·"
        f"{best.per_model_transfer:.4g} {cm.unit} ({best.name}) is affine in k: model 1 trains in "
        f"full and every model after it costs the same {p} {cm.unit}"
        f"{f' ({marginal.phrase()})' if marginal is not None else ''}; "
        f"T_transfer/T_classic falls from {best.ratio[0]:.3f} (k=1) to {best.ratio[-1]:.3f} "
        f"(k={ks[-1]}) and tends to p/T_full = {_ci_text(limit, best.limit_ratio, '.3f')}, not to 0; "
        f"log T grows like log k only because T is linear"
    )
    numbers: dict[str, Any] = {name: {"marginal": row.per_model_transfer, "limit_ratio": row.limit_ratio}
                               for name, row in cm.rows.items()}
    verdict = REFUTED if _finite_row(best) else NOT_ENOUGH
    return Claim("logarithmic_growth", "the growth in k is logarithmic", verdict,
                 _with_reason(evidence, verdict, ["the cost model's numbers are not finite"]),
                 numbers, marginal)


EXAMPLE_LABELS = {
    "paper": f"the paper (L = {PAPER_L}, N = {PAPER_N})",
    "paper_uniform": "its counting",
    "paper_measured_t": "with measured t_i",
    "measured": "measured steps",
    "measured_cached": "cached features",
    "measured_compute": "measured steps less exposed communication",
}


def _hours(classic: float, transfer: float) -> dict[str, float]:
    return {"classic": classic, "transfer": transfer, "ratio": _div(transfer, classic)}


def example(specs: dict[str, RowSpec], n_units: int) -> dict[str, dict[str, float]]:
    """The 3-model example in the paper's units (t = 1 h, so a training from scratch = L h).

    ``paper`` is the paper's own 150 h vs 60 h; every other entry is the cost-model row of the
    same name at k = 3, the same counting (model 1 in full, models 2 and 3 frozen).
    """
    k, hours = PAPER_K, float(n_units)
    out = {"paper": _hours(float(PAPER_L * k), float(PAPER_N + (PAPER_L - PAPER_N) * k))}
    for name, spec in specs.items():
        out[name] = _hours(hours * k, hours * _div(spec.transfer(k), spec.full))
    return out


def example_ci(f: FrozenSummary) -> Interval:
    """Measured steps' T_transfer(3) over its counting's, (1 + 2r)/(1 + 2(L−N)/L), from the CI of
    r = frozen/full (increasing in r)."""
    later = PAPER_K - 1
    return f.step_ratio_ci.map(lambda r: (1 + later * r) / (1 + later * f.paper_ratio))


def claim_example(ex: dict[str, dict[str, float]], n_units: int, n_frozen: int,
                  data_per_model: bool = False, frozen: FrozenSummary | None = None) -> Claim:
    paper = ex["paper"]
    text = f"{paper['classic']:.0f} h vs {paper['transfer']:.0f} h for {PAPER_K} models (t = 1 h)"
    if not n_frozen:
        return Claim("three_models", text, NOT_MEASURED, "needs --freeze N", ex)
    if frozen is None:  # no measured row either: the paper's counting alone cannot test the paper
        return Claim("three_models", text, NOT_MEASURED,
                     "needs a frozen run (--freeze N with --runs both or all): without measured "
                     "frozen steps only the paper's own counting is available", ex)
    ci = example_ci(frozen)
    lo, hi = 1 - RATIO_TOLERANCE, 1 + RATIO_TOLERANCE
    verdict, reason = decide(ci, lo, hi, "measured steps / its counting")
    labels = {**EXAMPLE_LABELS, "paper_uniform": f"its counting at L = {n_units}, N = {n_frozen}"}
    if "measured_cached" in ex:
        labels["measured_cached"] += ", data per model" if data_per_model else ", same data"
    parts = [f"{labels[name]}: {e['classic']:.0f} h vs {e['transfer']:.3g} h ({e['ratio']:.2f})"
             for name, e in ex.items()]
    evidence = (f"k = {PAPER_K}, model 1 in full, models 2–{PAPER_K} frozen, one training from "
                f"scratch = L h: " + "; ".join(parts)
                + f"; measured steps / its counting = {_ci_text(ci, ci.value, '.2f')} ({ci.phrase()})")
    return Claim("three_models", text, verdict, _with_reason(evidence, verdict, [reason]), ex, ci, reason)

# -- the whole report -----------------------------------------------------------


def _freeze_depth(profile: RunDocument) -> int:
    for name in ("frozen", "cached"):
        if name in profile.runs:
            return profile.runs[name].freeze
    return int(profile.meta.freeze or 0)


def build_report(profile: RunDocument, options: ReportOptions | None = None) -> Report:
    options = options or ReportOptions()
    options.validate()
    full = profile.runs.get("full")
    if full is None:
        raise TlprofError("the report needs the full run: profile with --runs full, both or all")
    if len(full.units) != len(profile.units) or not full.units:
        raise TlprofError("the run document's units do not match its full run")
    n_units = len(profile.units)
    n_frozen = _freeze_depth(profile)
    frozen, cached_run = profile.runs.get("frozen"), profile.runs.get("cached")
    units = unit_rows(profile, full, n_frozen)
    t_ms = [u.t_ms for u in units]
    names = [u.name for u in units]
    s_full = full.step_ms.median
    fz = frozen_summary(full, frozen, n_units) if frozen else None
    cz = cached_summary(full, cached_run, frozen) if cached_run else None
    uni = uniformity(t_ms, names, n_frozen)
    specs = row_specs(t_ms, n_frozen, full, frozen, cz, options)
    cm = cost_model(specs, t_ms, full, options)
    overhead = overhead_cis(profile)
    launch = launch_summary(profile)
    claims = [
        claim_uniform(uni, names, t_ms, full),
        claim_per_model(fz, n_units, n_frozen),
        claim_growth(cm, *_marginal_cis(frozen, fz, cm, options)),
        claim_example(example(specs, n_units), n_units, n_frozen, options.data_per_model, fz),
    ]
    return Report(
        source=_source(profile), options=options, n_units=n_units, freeze=n_frozen,
        full_step_ms=s_full, t_ms=t_ms, units=units,
        blocks=rollup(units, "block", s_full), stages=rollup(units, "stage", s_full),
        uniformity=uni, frozen=fz, cached=cz, cost_model=cm, claims=claims,
        notes=_notes(profile, full, frozen, overhead, launch),
        warnings=_warnings(profile),
        distributed=distributed_summary(profile, names),
        kernels=kernels_summary(profile),
        launch=launch,
        overhead=overhead,
    )


def _marginal_cis(frozen: Run | None, fz: FrozenSummary | None, cm: CostModel,
                  options: ReportOptions) -> tuple[Interval | None, Interval | None]:
    """The measured row's per-model cost p = s_frozen·S·E (in the cost model's unit) and p/T_full."""
    if frozen is None:  # fz is built exactly when there is a frozen run
        return None, None
    scale = options.steps * options.epoch_count / cm.ms_per_unit
    return median_ci(frozen.step_ms.samples).map(lambda ms: ms * scale), fz.step_ratio_ci


def _source(profile: RunDocument) -> dict[str, Any]:
    """The run's settings (its meta, less the GPU's NVML record and what the caller added)."""
    meta = profile.meta.to_dict()
    return {k: v for k, v in meta.items() if k not in ("gpu", "user") and v not in (None, [])}


def _contention_notes(profile: RunDocument) -> list[str]:
    """Whether other work took CPU from the run: the machine's load, and on a CPU device each
    run's CPU time against its wall time."""
    m, notes = profile.meta, []
    cores = m.cpu_count or 0
    loads = [(when, m.load_avg[when][0]) for when in ("start", "end") if m.load_avg.get(when)]
    own = m.cpu_threads or 1 if str(m.device or "").startswith("cpu") else 1
    if cores and any(load > cores for _, load in loads):
        said = ", ".join(f"{load:.1f} at the {when}" for when, load in loads)
        notes.append(f"the machine was busy: load average {said} on {cores} cores (this profile "
                     f"uses {own}); other work competed for the CPU, so times may be long and noisy")
    if not str(m.device or "").startswith("cpu"):
        return notes
    for name, run in profile.runs.items():
        share = run.cpu_ms.median / run.step_ms.median if run.cpu_ms.samples and run.step_ms.median else None
        if share is not None and share < MIN_CPU_SHARE:
            notes.append(f"{name} run: the process had the CPU for only {share:.0%} of its step time "
                         "(process CPU time / wall time); other processes took the rest")
    return notes


HOST_BOUND_SHARE = 0.2  # the GPU's idle share (kernels, else the GPU-wait bound) above which: host-bound


def _launch_note(r: LaunchRun) -> str | None:
    """The run's note when its GPU waited for the host: its unit times are host time (tlprof.launch).

    Where the run has per-unit kernel sums (``--kernels``), the GPU's idle share of the units' time is
    1 − the kernel-busy share, which decides; without them the GPU-wait share, an upper bound, does.
    """
    waited = r.gpu_wait_share
    if r.kernel_busy_share is not None:
        if 1 - r.kernel_busy_share <= HOST_BOUND_SHARE:
            return None
        return (f"{r.run} run: the GPU ran kernels for only {r.kernel_busy_share:.0%} of the units' "
                f"GPU time (kernel sums, --kernels; {r.kernel_bound_units} launch-bound units by "
                f"kernels; the host-paced upper bound: up to {waited:.0%} of the step, "
                f"{r.launch_bound_units} of {r.units} units); its unit times are host-paced — "
                "--graph measures GPU-true figures")
    if waited > HOST_BOUND_SHARE:
        return (f"{r.run} run: the GPU waited for the host in up to {waited:.0%} of the step "
                f"({r.launch_bound_units} launch-bound units); its unit times are host-paced — "
                "--graph measures GPU-true figures")
    return None


def _launch_notes(launch: LaunchSummary | None, frozen: Run | None) -> list[str]:
    """Each host-bound run's note, then what that means for claim 2."""
    noted = {r.run: note for r in (launch.runs if launch else []) if (note := _launch_note(r)) is not None}
    notes, bound = list(noted.values()), list(noted)
    if frozen is not None and bound:
        notes.append(f"claim 2: the frozen/full ratio is host-bound ({', '.join(bound)} run "
                     "host-paced); profile with --graph for the GPU-true ratio")
    return notes


def _warnings(profile: RunDocument) -> list[ReportWarning]:
    return [ReportWarning(name, w.part, w.text) for name, w in profile.warnings()]


def overhead_ci(run: Run) -> Interval:
    """Instrumented / plain step with its bootstrap CI (NaN where no plain step was measured):
    wall-to-wall where the run has those samples (docs/design.md §3), as ``Run.overhead_ratio``."""
    return ratio_ci(*(s.samples for s in run.overhead_samples))


def overhead_cis(profile: RunDocument) -> dict[str, Interval]:
    return {name: overhead_ci(run) for name, run in profile.runs.items()}


def _noise_notes(profile: RunDocument) -> list[str]:
    """A noisy step (IQR > 10% of its median) or too few steps for a verdict, said in words."""
    notes = []
    for name, run in profile.runs.items():
        s = run.step_ms
        if s.noisy:
            notes.append(f"{name} step: IQR {s.iqr:.1f} ms is {s.iqr / s.median:.0%} of its median "
                         f"{s.median:.1f} ms: the figure is unreliable; more --steps or a quieter machine")
        if len(s.samples) < MIN_SAMPLES:
            notes.append(f"{name} run: {len(s.samples)} measured step(s); a verdict needs at least "
                         f"{MIN_SAMPLES} per run, so the claims resting on it read \"{NOT_ENOUGH}\" "
                         "(more --steps)")
    return notes


def _notes(profile: RunDocument, full: Run, frozen: Run | None, overhead: dict[str, Interval],
           launch: LaunchSummary | None = None) -> list[str]:
    notes = _noise_notes(profile)
    for name, run in profile.runs.items():
        if run.overhead_ratio > OVERHEAD_NOTE:
            step, plain = run.overhead_samples
            ci = overhead[name]
            notes.append(f"{name} run: instrumented/plain step = {ci.text(lambda x: f'{x:.2f}')}"
                         f"{' (wall-to-wall)' if run.walled else ''}, so its figures carry the profiler's "
                         f"hooks (plain step {plain.median:.3g} ms vs {step.median:.3g} ms)")
    notes += _launch_notes(launch, frozen)
    notes += _contention_notes(profile)
    if frozen is None:
        notes.append("no frozen run: the measured cost-model row and claim 2 need --freeze N")
    if full.distributed is not None:
        d = full.distributed
        notes.append(f"data-parallel over {d.world_size} ranks ({d.backend}): step and unit figures are "
                     f"rank {d.rank}'s; every rank's are in the data-parallel section; exposed "
                     "communication includes waiting for slower ranks")
    if str(profile.meta.device or "").startswith("cpu"):
        notes.append("measured on a CPU: ratios differ from a GPU's (docs/design.md §1 expects "
                     "0.35–0.45 on a GPU)")
    return notes
