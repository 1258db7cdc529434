"""Evaluation: the papers' metrics (`metrics`, each registered in `registry`), the
annotation file (`annotations`), `evaluate` (methods x metrics over annotated images) and
its report (`report`)."""

from . import metrics  # noqa: F401  (registers the papers' metrics)
from .registry import GROUND, METRICS, MODEL, Metric, register

__all__ = ["GROUND", "METRICS", "MODEL", "Metric", "register"]
