"""``KernelsExtra``: what ``tlprof profile --kernels`` adds to each run (issue 4).

After a run's timed steps it runs two more steps of the same run, never
timed: one under the FLOP-counting dispatch mode (FLOPs and activation bytes
per unit) and one under ``torch.profiler`` (kernels per unit). The device
ceilings are measured once, at the first run, and stored with every run.

Each unit record gets a ``UnitKernels`` (FLOPs, bytes, intensity, roofline,
kernel sums and top kernels) and the run a ``KernelsSection`` (ceilings, FLOPs
outside units, kernel agreement); warnings go to the run's warnings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tlprof.clock import clock_for
from tlprof.document import KernelsSection, Run, UnitKernels
from tlprof.instrument import Instrumenter
from tlprof.marks import Label, StepSample
from tlprof.runner import RunContext
from tlprof.state import backend_flags

from .breakdown import LabelKernels, RangeMarks, breakdown, profile_step
from .ceilings import Ceilings, cached_ceilings, measure_ceilings
from .flops import StepFlops, UnitActivation, count_flops
from .precision import effective_precision
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
    """A ``RunExtra``; pass ``ceilings`` to reuse figures measured before on the run's device
    (figures of another device are dropped: measured again with ``measure``, else none).

    ``cache``: read and write the ceilings cache (``ceilings.cached_ceilings``);
    ``notify``: called with a line as each slow part starts (the CLI prints it).
    """

    breakdown: bool = True
    top: int = 10
    ceilings: Ceilings | None = None
    measure: bool = True  # measure the ceilings if none were given
    cache: bool = True
    notify: Callable[[str], None] | None = None

    def after_run(self, ctx: RunContext, run: Run) -> None:
        if self.ceilings is not None and self.ceilings.device != str(ctx.work.device):
            self.ceilings = None  # another device's figures: neither stored nor used
        if self.ceilings is None and self.measure:
            device = ctx.work.device
            self.ceilings = (cached_ceilings(device, notify=self.notify) if self.cache
                             else measure_ceilings(device, notify=self.notify))
        self._tell(f"{ctx.run} run: counting FLOPs and bytes (one more step)…")
        flops, acts = count_flops(ctx.model, ctx.units, lambda inst: ctx.train_step(inst))
        for text in _flop_warnings(flops, ctx):
            run.warn("kernels", text)
        for i, record in enumerate(run.units):
            record.kernels = UnitKernels(flops_fwd=flops.fwd[i], flops_bwd=flops.bwd[i],
                                         flops_other_fwd=flops.other_fwd[i],
                                         flops_other_bwd=flops.other_bwd[i])
        # the flags as the run left them (``--precision default`` keeps the caller's, e.g. cuDNN's TF32)
        precision = effective_precision(ctx.cfg.precision, backend_flags(), ctx.work.device)
        _store_bytes(run, acts, precision, self.ceilings)
        run.kernels = KernelsSection(flops_phases=flops.phases, flops_by_op=flops.by_op,
                                     flops_other_by_op=flops.other_by_op, flop_threads=flops.threads,
                                     ceilings=self.ceilings)
        if self.breakdown:
            self._tell(f"{ctx.run} run: kernels per unit under torch.profiler (one more step)…")
            step = _profile_kernels(ctx)
            _store_kernels(run, step, self.top, ctx.work.device.type == "cuda")


    def _tell(self, text: str) -> None:
        if self.notify:
            self.notify(text)


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
        k = record.kernels
        k.act_in_bytes, k.act_out_bytes = act.in_bytes, act.out_bytes
        k.bytes_fwd, k.bytes_bwd = ub.bytes_fwd, ub.bytes_bwd
        k.intensity_fwd = intensity(k.flops_fwd, ub.bytes_fwd)
        k.intensity_bwd = intensity(k.flops_bwd, ub.bytes_bwd)
        if ceilings is not None:
            k.roofline = {
                "fwd": roofline_point(k.flops_fwd, ub.bytes_fwd, record.fwd_ms.median, ceilings, precision),
                "bwd": roofline_point(k.flops_bwd, ub.bytes_bwd, record.bwd_ms.median, ceilings, precision),
            }


@dataclass
class KernelStep:
    by_label: dict[Label, LabelKernels]
    hook_units_ms: list[float]  # per unit (fwd + bwd), the same step as its own marks time it
    left_open: int  # ranges still open on other threads at the end


def _profile_kernels(ctx: RunContext) -> KernelStep:
    ranges = RangeMarks()
    inst = Instrumenter(ctx.model, ctx.units, clock_for(ctx.work.device), [ranges])
    samples: list[StepSample] = []
    left_open = 0

    def step() -> None:
        nonlocal left_open
        try:
            with inst.step() as result:
                ctx.train_step(inst)
            samples.append(result.sample)
        finally:
            left_open = ranges.close_here()

    events = profile_step(step, ctx.work.device)
    by_label = breakdown(events, device_kernels=ctx.work.device.type == "cuda")
    hook_ms = [f + b for f, b in zip(samples[0].fwd_ms, samples[0].bwd_ms)]
    return KernelStep(by_label, hook_ms, left_open)


def _store_kernels(run: Run, step: KernelStep, top: int, cuda: bool) -> None:
    empty = LabelKernels()
    kernel_total = measured_total = profiled_total = 0.0  # over the units that ran kernels
    idle: list[int] = []  # units under whose ranges nothing ran (replayed by the cached run)
    for position, record in enumerate(run.units):
        fwd = step.by_label.get(Label.fwd(record.index), empty)
        bwd = step.by_label.get(Label.bwd(record.index), empty)
        measured = record.t_ms
        ran = bool(fwd.stats or bwd.stats)
        k = record.kernels
        k.kernel_fwd_ms, k.kernel_bwd_ms = fwd.total_ms, bwd.total_ms
        k.kernel_agreement = (fwd.total_ms + bwd.total_ms) / measured if measured > 0 and ran else None
        k.kernels_fwd, k.kernels_bwd = fwd.top(top), bwd.top(top)
        if not ran:
            idle.append(record.index)
            continue
        kernel_total += fwd.total_ms + bwd.total_ms
        measured_total += measured
        profiled_total += step.hook_units_ms[position]
    agreement = kernel_total / measured_total if measured_total > 0 else None
    section = run.kernels
    section.source = "cuda kernels" if cuda else "cpu ops"
    section.kernel_agreement = agreement
    section.kernel_units_ms, section.measured_units_ms = kernel_total, measured_total
    section.units_without_kernels = idle
    section.profiled_step_units_ms = profiled_total
    section.kernel_agreement_profiled_step = kernel_total / profiled_total if profiled_total > 0 else None
    for text in _agreement_warnings(run, agreement, measured_total, step.left_open):
        run.warn("kernels", text)


def _agreement_warnings(run: Run, agreement: float | None, measured_total: float,
                        left_open: int) -> list[str]:
    lo, hi = AGREEMENT_RANGE
    warnings = []
    if left_open:
        warnings.append(f"{left_open} profiler range(s) were left open on another thread; "
                        "their ops are not charged to any unit")
    if agreement is not None and not lo <= agreement <= hi:
        why = AGREEMENT_LOW if agreement < lo else AGREEMENT_HIGH
        warnings.append(f"kernel time is {agreement:.2f}× the measured unit time "
                        f"(outside {lo}–{hi}): {why}")
    outliers = []
    for record in run.units:
        share = record.t_ms / measured_total if measured_total > 0 else 0.0
        a = record.kernels.kernel_agreement
        if a is not None and share >= WARN_MIN_SHARE and not lo <= a <= hi:
            outliers.append(f"{record.index} ({a:.2f})")
    if outliers:
        warnings.append(f"kernel time / measured time outside {lo}–{hi} for "
                        f"unit {', '.join(outliers)}")
    return warnings

