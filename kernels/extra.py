"""``KernelsExtra``: what ``tlprof profile --kernels`` adds to each run (issue 4).

After a regime's timed steps it runs two more steps of the same regime, never
timed: one under the FLOP-counting dispatch mode (FLOPs and activation bytes
per unit) and one under ``torch.profiler`` (kernels per unit). The device
ceilings are measured once, at the first run, and stored with every run.

Fields added to each unit record: ``flops_fwd``, ``flops_bwd`` (int FLOPs),
``act_in_bytes``, ``act_out_bytes``, ``bytes_fwd``, ``bytes_bwd`` (lower-bound
traffic), ``intensity_fwd``, ``intensity_bwd`` (FLOP/byte), ``roofline``
(``fwd``/``bwd``: achieved rate, roof, % of roof, bound), ``kernel_fwd_ms``,
``kernel_bwd_ms``, ``kernel_agreement``, ``kernels_fwd``, ``kernels_bwd``
(top kernels: name, count, total_ms). To each run: ``kernel_agreement`` and a
``kernels`` block (ceilings, FLOPs outside units, warnings).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tlprof.clock import clock_for
from tlprof.instrument import Instrumenter
from tlprof.marks import Label, StepSample
from tlprof.runner import RunContext
from tlprof.session import Run, UnitRun

from .breakdown import LabelKernels, RangeMarks, breakdown, profile_step
from .ceilings import Ceilings, measure_ceilings
from .flops import StepFlops, UnitActivation, count_flops
from .roofline import UnitBytes, intensity, roofline_point

# kernel time / measured time outside this range is reported as a warning
AGREEMENT_RANGE = (0.5, 1.5)
AGREEMENT_LOW = ("time inside the units' intervals that no kernel or op accounts for (on CUDA the "
                 "device idled, waiting on host launches; on the CPU Python, hooks or sleeps)")
AGREEMENT_HIGH = "kernels overlapped, or ran slower under the profiler than in the timed steps"
# units below this share of all units' time are too short to warn about on their own
WARN_MIN_SHARE = 0.02


@dataclass
class KernelsExtra:
    """A ``RunExtra``; pass ``ceilings`` to reuse figures measured before."""

    breakdown: bool = True
    top: int = 10
    ceilings: Ceilings | None = None
    measure: bool = True  # measure the ceilings if none were given

    def after_run(self, ctx: RunContext, run: Run) -> None:
        stale = self.ceilings is not None and self.ceilings.device != str(ctx.work.device)
        if (self.ceilings is None or stale) and self.measure:
            self.ceilings = measure_ceilings(ctx.work.device)
        flops, acts = count_flops(ctx.model, ctx.units, lambda inst: ctx.train_step(inst))
        warnings = _flop_warnings(flops, ctx)
        for record, unit_flops in zip(run.units, zip(flops.fwd, flops.bwd)):
            record.extra["flops_fwd"], record.extra["flops_bwd"] = unit_flops
        _store_bytes(run, acts, ctx.cfg.precision, self.ceilings)
        block: dict = {"flops_phases": flops.phases, "flop_threads": flops.threads,
                       "warnings": warnings}
        if self.ceilings is not None:
            block["ceilings"] = self.ceilings.to_dict()
        run.extra["kernels"] = block
        if self.breakdown:
            step = _profile_kernels(ctx)
            _store_kernels(run, step, self.top, ctx.work.device.type == "cuda")


def _flop_warnings(flops: StepFlops, ctx: RunContext) -> list[str]:
    trainable = [u for u in ctx.units if u.trainable()]
    if trainable and not any(flops.bwd) and any(flops.fwd):
        return ["no backward FLOPs were counted although units train: the counting mode did "
                "not see the autograd thread's ops"]
    return []


def _store_bytes(run: Run, acts: Sequence[UnitActivation], precision: str,
                 ceilings: Ceilings | None) -> None:
    for record, act in zip(run.units, acts):
        ub = UnitBytes(record.param_bytes, record.grad_bytes, record.saved_bytes,
                       act.in_bytes, act.out_bytes, act.input_requires_grad)
        ex = record.extra
        ex.update(act_in_bytes=act.in_bytes, act_out_bytes=act.out_bytes,
                  bytes_fwd=ub.bytes_fwd, bytes_bwd=ub.bytes_bwd,
                  intensity_fwd=intensity(ex["flops_fwd"], ub.bytes_fwd),
                  intensity_bwd=intensity(ex["flops_bwd"], ub.bytes_bwd))
        if ceilings is not None:
            ex["roofline"] = {
                "fwd": roofline_point(ex["flops_fwd"], ub.bytes_fwd, record.fwd_ms.median,
                                      ceilings, precision),
                "bwd": roofline_point(ex["flops_bwd"], ub.bytes_bwd, record.bwd_ms.median,
                                      ceilings, precision),
            }


@dataclass
class KernelStep:
    by_label: dict[Label, LabelKernels]
    hook_units_ms: float  # the same step's units as its own marks time them
    left_open: int  # ranges still open on other threads at the end


def _profile_kernels(ctx: RunContext) -> KernelStep:
    ranges = RangeMarks()
    inst = Instrumenter(ctx.model, ctx.units, clock_for(ctx.work.device), [ranges])
    samples: list[StepSample] = []
    left_open = 0

    def step() -> None:
        nonlocal left_open
        with inst.installed():
            try:
                inst.begin_step()
                ctx.train_step(inst)
                samples.append(inst.end_step())
            finally:
                inst.active = False
                left_open = ranges.close_here()

    events = profile_step(step, ctx.work.device)
    by_label = breakdown(events, device_kernels=ctx.work.device.type == "cuda")
    hook_ms = sum(samples[0].fwd_ms) + sum(samples[0].bwd_ms)
    return KernelStep(by_label, hook_ms, left_open)


def _store_kernels(run: Run, step: KernelStep, top: int, cuda: bool) -> None:
    empty = LabelKernels()
    kernel_total = measured_total = 0.0
    idle: list[int] = []  # units under whose ranges nothing ran (replayed by the cached run)
    for record in run.units:
        fwd = step.by_label.get(("fwd", record.index), empty)
        bwd = step.by_label.get(("bwd", record.index), empty)
        measured = _measured(record)
        ran = bool(fwd.stats or bwd.stats)
        record.extra.update(
            kernel_fwd_ms=fwd.total_ms, kernel_bwd_ms=bwd.total_ms,
            kernel_agreement=(fwd.total_ms + bwd.total_ms) / measured if measured > 0 and ran else None,
            kernels_fwd=fwd.top(top), kernels_bwd=bwd.top(top),
        )
        if not ran:
            idle.append(record.index)
            continue
        kernel_total += fwd.total_ms + bwd.total_ms
        measured_total += measured
    agreement = kernel_total / measured_total if measured_total > 0 else None
    run.extra["kernel_agreement"] = agreement
    block = run.extra["kernels"]
    block.update(
        source="cuda kernels" if cuda else "cpu ops",
        kernel_units_ms=kernel_total,
        measured_units_ms=measured_total,
        units_without_kernels=idle,
        profiled_step_units_ms=step.hook_units_ms,
        kernel_agreement_profiled_step=(
            kernel_total / step.hook_units_ms if step.hook_units_ms > 0 else None),
    )
    block["warnings"] += _agreement_warnings(run, agreement, measured_total, step.left_open)


def _agreement_warnings(run: Run, agreement: float | None, measured_total: float,
                        left_open: int) -> list[str]:
    lo, hi = AGREEMENT_RANGE
    warnings = []
    if left_open:
        warnings.append(f"{left_open} profiler range(s) were left open on another thread; "
                        "their ops are not charged to any unit")
    if agreement is not None and not lo <= agreement <= hi:
        why = AGREEMENT_LOW if agreement < lo else AGREEMENT_HIGH
        warnings.append(f"{run.mode}: kernel time is {agreement:.2f}× the measured unit time "
                        f"(outside {lo}–{hi}): {why}")
    outliers = []
    for record in run.units:
        share = _measured(record) / measured_total if measured_total > 0 else 0.0
        a = record.extra["kernel_agreement"]
        if a is not None and share >= WARN_MIN_SHARE and not lo <= a <= hi:
            outliers.append(f"{record.index} ({a:.2f})")
    if outliers:
        warnings.append(f"{run.mode}: kernel time / measured time outside {lo}–{hi} for "
                        f"unit {', '.join(outliers)}")
    return warnings


def _measured(record: UnitRun) -> float:
    return record.fwd_ms.median + record.bwd_ms.median
