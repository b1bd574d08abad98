"""Bootstrap confidence intervals for the figures a verdict or a comparison rests on. Torch- and numpy-free.

Each interval resamples the measured steps with replacement (``N_BOOT`` draws, a
``random.Random(SEED)``, so the same document always gives the same interval) and
takes the percentile interval of the statistic over the draws. Samples of one
figure per step (a unit's forward over the measured steps) are *columns*; columns of
the same length are resampled by the same step indices, so a step's units stay together.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

LEVEL = 0.95
N_BOOT = 2000
SEED = 0
MIN_SAMPLES = 5  # measured steps per run below which no verdict is given

Columns = Sequence[Sequence[float]]


@dataclass(frozen=True)
class Interval:
    """A statistic on the samples as measured (``value``), its bootstrap CI, and the sample counts."""

    low: float
    value: float
    high: float
    n_a: int
    n_b: int = 0
    level: float = LEVEL

    @property
    def n(self) -> int:
        """The smaller sample count: what limits the evidence."""
        return min(self.n_a, self.n_b) if self.n_b else self.n_a

    @property
    def finite(self) -> bool:
        return all(math.isfinite(x) for x in (self.low, self.value, self.high))

    def contains(self, x: float) -> bool:
        return self.finite and self.low <= x <= self.high

    def overlaps(self, other: Interval) -> bool:
        return self.finite and other.finite and self.low <= other.high and other.low <= self.high

    def within(self, lo: float, hi: float) -> bool:
        return self.finite and lo <= self.low and self.high <= hi

    def outside(self, lo: float, hi: float) -> bool:
        return self.finite and (self.high < lo or self.low > hi)

    def map(self, f: Callable[[float], float]) -> Interval:
        """The interval of f(x) for an increasing f."""
        return Interval(f(self.low), f(self.value), f(self.high), self.n_a, self.n_b, self.level)

    def counts(self) -> str:
        return f"n = {self.n_a}/{self.n_b}" if self.n_b else f"n = {self.n_a}"

    def bounds(self, fmt: Callable[[float], str]) -> str:
        return f"[{fmt(self.low)}, {fmt(self.high)}]"

    def phrase(self) -> str:
        """``95% CI, n = 10/10``, or ``no CI, n = 3/3`` when the interval is not finite: every view's
        wording of an interval."""
        return f"{self.level:.0%} CI, {self.counts()}" if self.finite else f"no CI, {self.counts()}"

    def after(self, fmt: Callable[[float], str]) -> str:
        """What follows a figure: `` [0.62, 0.66], 95% CI, n = 10/10``, or `` (no CI, n = 3/3)``."""
        return f" {self.bounds(fmt)}, {self.phrase()}" if self.finite else f" ({self.phrase()})"

    def text(self, fmt: Callable[[float], str] = lambda x: f"{x:.3g}") -> str:
        """``0.643 [0.62, 0.66], 95% CI, n = 10/10``."""
        return fmt(self.value) + self.after(fmt)


def bounds_text(ci: Interval | None, fmt: Callable[[float], str], missing: str = "") -> str:
    """``[0.62, 0.66]``, or ``missing`` where there is no finite interval."""
    return ci.bounds(fmt) if ci is not None and ci.finite else missing


NAN_INTERVAL = Interval(math.nan, math.nan, math.nan, 0, 0)


def _clean(columns: Columns) -> list[list[float]] | None:
    cols = [list(c) for c in columns]
    if not cols or any(not c or any(not math.isfinite(x) for x in c) for c in cols):
        return None
    return cols


def _median(xs: list[float]) -> float:
    """``statistics.median`` without its checks: it runs for every column of every draw."""
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def _medians(cols: list[list[float]]) -> list[float]:
    return [_median(c) for c in cols]


def _draw(rng: random.Random, cols: list[list[float]]) -> list[float]:
    """One bootstrap draw: each column's median over resampled steps, the same steps for equal lengths."""
    lengths = {len(c) for c in cols}
    if len(lengths) == 1:
        n = lengths.pop()
        idx = [rng.randrange(n) for _ in range(n)]
        return [_median([c[i] for i in idx]) for c in cols]
    return [_median(rng.choices(c, k=len(c))) for c in cols]


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest rank: no arithmetic on the values, so an infinite draw stays infinite."""
    i = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[i]


def bootstrap(a: Columns, b: Columns, stat: Callable[[list[float], list[float]], float],
              level: float = LEVEL, n_boot: int = N_BOOT, seed: int = SEED) -> Interval:
    """CI of ``stat(medians of a's columns, medians of b's columns)``; a and b resampled independently.

    ``b`` may be empty (a statistic of one side). Empty or non-finite samples give a NaN interval.
    """
    cols_a, cols_b = _clean(a), (_clean(b) if b else [])
    if cols_a is None or cols_b is None:
        return NAN_INTERVAL
    value = stat(_medians(cols_a), _medians(cols_b))
    rng = random.Random(seed)
    draws = sorted(stat(_draw(rng, cols_a), _draw(rng, cols_b) if cols_b else []) for _ in range(n_boot))
    return _interval(value, draws, min(map(len, cols_a)), min(map(len, cols_b)) if cols_b else 0, level)


def _interval(value: float, draws: list[float], n_a: int, n_b: int, level: float) -> Interval:
    """The percentile interval of sorted draws (NaN bounds when a draw or the value is NaN)."""
    if any(math.isnan(x) for x in draws) or math.isnan(value):
        return Interval(math.nan, value, math.nan, n_a, n_b, level)
    tail = (1 - level) / 2
    return Interval(_percentile(draws, tail), value, _percentile(draws, 1 - tail), n_a, n_b, level)


def _ratio(x: float, y: float) -> float:
    if y:
        return x / y
    return math.inf if x > 0 else math.nan


def ratio_ci(a: Sequence[float], b: Sequence[float], **kw) -> Interval:
    """median(a) / median(b), e.g. frozen step / full step."""
    return bootstrap([a], [b], lambda ma, mb: _ratio(ma[0], mb[0]), **kw)


def diff_ci(a: Sequence[float], b: Sequence[float], **kw) -> Interval:
    """median(b) − median(a): B − A in a comparison."""
    return bootstrap([a], [b], lambda ma, mb: mb[0] - ma[0], **kw)


def median_ci(a: Sequence[float], **kw) -> Interval:
    return bootstrap([a], [], lambda ma, _: ma[0], **kw)


def columns_ci(columns: Columns, stat: Callable[[list[float]], float], **kw) -> Interval:
    """A statistic of the columns' medians, e.g. the CV of t_i over units."""
    return columns_cis(columns, [stat], **kw)[0]


def columns_cis(columns: Columns, stats: Sequence[Callable[[list[float]], float]], level: float = LEVEL,
                n_boot: int = N_BOOT, seed: int = SEED) -> list[Interval]:
    """Several statistics of the columns' medians from one set of draws (a large model's units are slow
    to resample)."""
    cols = _clean(columns)
    if cols is None:
        return [NAN_INTERVAL for _ in stats]
    rng = random.Random(seed)
    draws = [_draw(rng, cols) for _ in range(n_boot)]
    values = _medians(cols)
    return [_interval(stat(values), sorted(stat(d) for d in draws), min(map(len, cols)), 0, level)
            for stat in stats]


def step_totals(columns: Columns) -> list[float] | None:
    """Per step, the sum over columns (Σ over units of the forward), when every column has every step."""
    cols = [list(c) for c in columns]
    if not cols or len({len(c) for c in cols}) != 1:
        return None
    return [sum(step) for step in zip(*cols)]
