"""Samples kept whole; median and IQR computed on demand (after torch.utils.benchmark)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

NOISY_IQR_FRACTION = 0.10


@dataclass
class Stats:
    """Every measured sample of one figure, in milliseconds (or bytes)."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else 0.0

    @property
    def iqr(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples, n=4, method="inclusive")
        return q3 - q1

    @property
    def noisy(self) -> bool:
        """IQR above 10% of the median (docs/design.md §3)."""
        return self.median > 0 and self.iqr > NOISY_IQR_FRACTION * self.median

    def to_dict(self) -> dict:
        return {"median": self.median, "iqr": self.iqr, "samples": list(self.samples)}

    @classmethod
    def from_dict(cls, d: dict) -> Stats:
        return cls([float("nan") if x is None else float(x) for x in d["samples"]])
