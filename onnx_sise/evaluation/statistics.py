"""How sure a mean over a few dozen photos is, and how two methods compare photo by photo.

bootstrap_interval  the percentile bootstrap (Efron & Tibshirani 1993, ch. 13) of the mean:
                    draw the n per-photo values n times with replacement, B times; the interval
                    is the (1 - c) / 2 and (1 + c) / 2 quantiles of the B resampled means.
                    Seeded, so the same values give the same interval.
paired              per photo, whether method a scored better than method b on a metric
                    (each metric says which way is better): wins, losses and ties. Two
                    methods whose intervals overlap can still differ on most photos, which is
                    what the paired count shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
CONFIDENCE = 0.95


def bootstrap_interval(values: Sequence[float], confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                       seed: int = 0) -> tuple[float, float]:
    """(low, high) of the percentile bootstrap interval of the mean of `values`; one value
    gives (value, value)."""
    data = np.asarray(values, dtype=np.float64).ravel()
    if data.size == 0:
        raise ValueError("bootstrap_interval needs at least one value")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 256):  # (256, n) indices at a time: bounded memory for any n
        count = min(256, resamples - start)
        means[start:start + count] = data[rng.integers(0, data.size, size=(count, data.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Paired:
    """Photos where a did better than b (wins), worse (losses), or the same (ties)."""

    wins: int
    losses: int
    ties: int

    def __str__(self) -> str:
        return f"{self.wins}-{self.losses}" + (f" ({self.ties} tied)" if self.ties else "")


def paired(a: Sequence[float], b: Sequence[float], higher_is_better: bool, tolerance: float = 1e-9) -> Paired:
    """Wins, losses and ties of a against b over the same photos, in the same order;
    values within `tolerance` of each other are ties."""
    first, second = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if first.shape != second.shape:
        raise ValueError(f"paired needs one value per photo for both methods, got {first.size} and {second.size}")
    difference = first - second if higher_is_better else second - first
    return Paired(wins=int((difference > tolerance).sum()), losses=int((difference < -tolerance).sum()),
                  ties=int((np.abs(difference) <= tolerance).sum()))
