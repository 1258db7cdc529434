"""The report of `evaluate`: a Markdown table, and evaluation.json / evaluation.csv."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from ..files.writing import replace_together
from .registry import METRICS


def table(report: dict[str, dict[str, object]], metric_names: Sequence[str]) -> str:
    """Markdown table: methods x metrics, seconds and masked passes per image."""
    head = ["method"] + [METRICS[m].title for m in metric_names] + ["s / image", "passes / image"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, entry in report.items():
        cells = [method] + [f"{entry['metrics'][m]:.1f}" if METRICS[m].percent
                            else f"{entry['metrics'][m]:.3f}" for m in metric_names]
        cells += [f"{entry['seconds_per_image']:.2f}", f"{entry['passes_per_image']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_paths(out: Path) -> tuple[Path, Path]:
    """(evaluation.json, evaluation.csv) in `out`."""
    return out / "evaluation.json", out / "evaluation.csv"


def write_report(report: dict[str, dict[str, object]], metric_names: Sequence[str], out: Path) -> tuple[Path, Path]:
    """evaluation.json (everything, per image too) and evaluation.csv (the table), both or neither."""
    json_path, csv_path = report_paths(out)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", *metric_names, "seconds_per_image", "passes_per_image"])
    for method, entry in report.items():
        writer.writerow([method, *(entry["metrics"][m] for m in metric_names), entry["seconds_per_image"],
                         entry["passes_per_image"]])
    replace_together({json_path: json.dumps(report, indent=2).encode("utf-8"),
                      csv_path: buffer.getvalue().encode("utf-8")})
    return json_path, csv_path
