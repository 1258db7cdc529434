"""Every evaluation metric by name. A metric module calls `register` when imported;
`evaluate` and the command line know the metrics only from here (CONTRIBUTING.md,
"Adding a metric")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

GROUND, MODEL = "ground", "model"  # what a metric is measured against


@dataclass(frozen=True)
class Metric:
    """name: what `--metrics` and `evaluate(metric_names=...)` take; title: its column in
    the papers' tables. truth GROUND: compute(saliency (H, W), truth (H, W) bool) at the
    photo's size; truth MODEL: compute(scores, image, saliency, steps, layout, batch) on the
    model input, with `scores` a function from a batch of inputs to Psi of the explained
    class. percent: its mean over the images is reported in percent, else as it is.
    higher_is_better: which way a method wins (False for Drop and deletion AUC)."""

    name: str
    title: str
    truth: str
    compute: Callable[..., float | bool]
    percent: bool = True
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        if self.truth not in (GROUND, MODEL):
            raise ValueError(f"truth must be {GROUND!r} or {MODEL!r}, got {self.truth!r}")


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    if metric.name in METRICS:
        raise ValueError(f"a metric named {metric.name!r} is registered already")
    METRICS[metric.name] = metric
    return metric
