"""Bootstrap intervals against SciPy's bootstrap and against their coverage of a known
mean; paired counts on hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from onnx_sise.evaluation.report import paired_table, table
from onnx_sise.evaluation.statistics import Paired, bootstrap_interval, paired


def test_bootstrap_interval_matches_scipys_percentile_bootstrap() -> None:
    values = np.random.default_rng(3).gamma(2.0, 0.1, size=34)
    ours = bootstrap_interval(values, resamples=20000)
    theirs = stats.bootstrap((values,), np.mean, confidence_level=0.95, n_resamples=20000, method="percentile",
                             random_state=np.random.default_rng(5)).confidence_interval
    spread = values.std() / np.sqrt(values.size)
    assert abs(ours[0] - theirs.low) < 0.05 * spread
    assert abs(ours[1] - theirs.high) < 0.05 * spread


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(0)
    covered = 0
    for trial in range(300):
        sample = rng.normal(0.5, 0.2, size=40)
        low, high = bootstrap_interval(sample, resamples=1000, seed=trial)
        covered += low <= 0.5 <= high
    assert 0.89 <= covered / 300 <= 0.99  # the percentile bootstrap is a little narrow at n = 40


def test_bootstrap_interval_is_seeded_and_handles_one_value_and_booleans() -> None:
    values = [0.1, 0.4, 0.35, 0.9]
    assert bootstrap_interval(values) == bootstrap_interval(values)
    assert bootstrap_interval([0.25]) == (0.25, 0.25)
    low, high = bootstrap_interval([True, False, True, True])
    assert 0 <= low <= 0.75 <= high <= 1
    with pytest.raises(ValueError):
        bootstrap_interval([])


def test_paired_counts_wins_losses_and_ties_in_the_metrics_direction() -> None:
    a, b = [0.5, 0.2, 0.3, 0.7], [0.4, 0.2, 0.6, 0.1]
    assert paired(a, b, higher_is_better=True) == Paired(wins=2, losses=1, ties=1)
    assert paired(a, b, higher_is_better=False) == Paired(wins=1, losses=2, ties=1)
    assert str(Paired(3, 1, 0)) == "3-1" and str(Paired(2, 1, 1)) == "2-1 (1 tied)"
    with pytest.raises(ValueError):
        paired([1.0], [1.0, 2.0], True)


def test_tables_show_intervals_and_paired_counts() -> None:
    def entry(deletions: list[float]) -> dict[str, object]:
        return {"metrics": {"deletion": float(np.mean(deletions))},
                "intervals": {"deletion": list(bootstrap_interval(deletions))},
                "seconds_per_image": 1.0, "passes_per_image": 10.0,
                "images": [{"deletion": d} for d in deletions]}

    report = {"sise": entry([0.1, 0.2, 0.3]), "gradcam": entry([0.2, 0.1, 0.4])}
    rows = table(report, ["deletion"]).splitlines()
    low, high = report["sise"]["intervals"]["deletion"]
    assert f"| sise | 0.200 [{low:.3f}, {high:.3f}] | 1.00 | 10 |" == rows[2]
    assert paired_table(report, ["deletion"], "sise").splitlines()[2] == "| gradcam | 1-2 |"  # lower deletion wins
