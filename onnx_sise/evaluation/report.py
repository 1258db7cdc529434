"""The reports of `evaluate` and `sanity`: a Markdown table, and evaluation.json /
evaluation.csv or sanity.json / sanity.csv."""

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
    bootstrap interval when the report has one), seconds and masked passes per image
    (+ head passes, see _passes_cell)."""
    head = ["method"] + [METRICS[m].title for m in metric_names] + ["s / image", "passes / image"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, entry in report.items():
        intervals = entry.get("intervals", {})
        cells = [method] + [_cell(m, entry["metrics"][m], intervals.get(m)) for m in metric_names]
        cells += [f"{entry['seconds_per_image']:.2f}", _passes_cell(entry)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _passes_cell(entry: dict[str, object]) -> str:
    """Masked passes per image, and the feature-map passes through a tap's head
    (Ablation-CAM, ReciproCAM) when there were any."""
    head = float(entry.get("head_passes_per_image", 0))
    return f"{entry['passes_per_image']:.0f}" + (f" + {head:.0f} head" if head else "")


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
    bounds = [f"{m}_{end}" for m in metric_names for end in ("low", "high")]
    rows = [[method, *(entry["metrics"][m] for m in metric_names),
             *(end for m in metric_names for end in entry["intervals"][m]), entry["seconds_per_image"],
             entry["passes_per_image"], entry.get("head_passes_per_image", 0.0)] for method, entry in report.items()]
    return _write_json_and_csv(report_paths(out), report, ["method", *metric_names, *bounds, "seconds_per_image",
                                                           "passes_per_image", "head_passes_per_image"], rows)


def _write_json_and_csv(paths: tuple[Path, Path], report: object, header: list[str],
                        rows: list[list[object]]) -> tuple[Path, Path]:
    """`report` as JSON at paths[0] and the table's rows as CSV at paths[1], both or neither."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerows([header, *rows])
    replace_together({paths[0]: json.dumps(report, indent=2).encode("utf-8"),
                      paths[1]: buffer.getvalue().encode("utf-8")})
    return paths


def sanity_table(report: dict[str, object]) -> str:
    """Markdown table of the cascading randomisation test: methods x cascade depths, each
    cell the mean Spearman / mean SSIM over the images of the maps against the trained
    model's (1 / 1: the map did not change; "n/a" where every map was constant)."""
    depths = report["depths"]
    head = ["method"] + [f"{d['label']} to {d['deepest']}: Spearman / SSIM" for d in depths]  # type: ignore[index]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, entries in report["methods"].items():  # type: ignore[attr-defined]
        cells = [method] + [" / ".join("n/a" if entries[str(d["depth"])][name] is None
                                       else f"{entries[str(d['depth'])][name]:.2f}" for name in ("spearman", "ssim"))
                            for d in depths]  # type: ignore[union-attr]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sanity_paths(out: Path) -> tuple[Path, Path]:
    """(sanity.json, sanity.csv) in `out`."""
    return out / "sanity.json", out / "sanity.csv"


def write_sanity_report(report: dict[str, object], out: Path) -> tuple[Path, Path]:
    """sanity.json (everything, per image too) and sanity.csv (method, depth, the means), both or neither."""
    rows = [[method, d["depth"], d["deepest"], *(entries[str(d["depth"])][name]
                                                 for name in ("spearman", "spearman_abs", "ssim"))]
            for method, entries in report["methods"].items()  # type: ignore[attr-defined]
            for d in report["depths"]]  # type: ignore[attr-defined]
    return _write_json_and_csv(sanity_paths(out), report,
                               ["method", "depth", "deepest_layer", "spearman", "spearman_abs", "ssim"], rows)
