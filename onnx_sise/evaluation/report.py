"""The report of `evaluate`: a Markdown table, and evaluation.json / evaluation.csv."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from ..files.writing import replace_together
from .registry import METRICS
from .statistics import paired


def table(report: dict[str, dict[str, object]], metric_names: Sequence[str]) -> str:
    """Markdown table: methods x metrics (the mean and, under it in brackets, its 95 %
    bootstrap interval when the report has one), seconds and masked passes per image."""
    head = ["method"] + [METRICS[m].title for m in metric_names] + ["s / image", "passes / image"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, entry in report.items():
        intervals = entry.get("intervals", {})
        cells = [method] + [_cell(m, entry["metrics"][m], intervals.get(m)) for m in metric_names]
        cells += [f"{entry['seconds_per_image']:.2f}", f"{entry['passes_per_image']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(report: dict[str, dict[str, object]], metric_names: Sequence[str], reference: str) -> str:
    """Markdown table: for every other method, its wins-losses against `reference` per
    metric, photo by photo (statistics.paired; each metric says which way is better)."""
    if reference not in report:
        raise ValueError(f"reference {reference!r} is not a method of the report")
    head = ["method vs " + reference] + [METRICS[m].title for m in metric_names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    theirs = report[reference]["images"]
    for method, entry in report.items():
        if method == reference:
            continue
        cells = [method] + [str(paired([row[m] for row in entry["images"] if m in row],
                                       [row[m] for row in theirs if m in row], METRICS[m].higher_is_better))
                            for m in metric_names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(name: str, mean: float, interval: Sequence[float] | None) -> str:
    digits = 1 if METRICS[name].percent else 3
    text = f"{mean:.{digits}f}"
    return text if interval is None else f"{text} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def report_paths(out: Path) -> tuple[Path, Path]:
    """(evaluation.json, evaluation.csv) in `out`."""
    return out / "evaluation.json", out / "evaluation.csv"


def write_report(report: dict[str, dict[str, object]], metric_names: Sequence[str], out: Path) -> tuple[Path, Path]:
    """evaluation.json (everything, per image too) and evaluation.csv (the table with each mean's
    95 % interval), both or neither."""
    json_path, csv_path = report_paths(out)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    bounds = [f"{m}_{end}" for m in metric_names for end in ("low", "high")]
    writer.writerow(["method", *metric_names, *bounds, "seconds_per_image", "passes_per_image"])
    for method, entry in report.items():
        writer.writerow([method, *(entry["metrics"][m] for m in metric_names),
                         *(end for m in metric_names for end in entry["intervals"][m]), entry["seconds_per_image"],
                         entry["passes_per_image"]])
    replace_together({json_path: json.dumps(report, indent=2).encode("utf-8"),
                      csv_path: buffer.getvalue().encode("utf-8")})
    return json_path, csv_path
