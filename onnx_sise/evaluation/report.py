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
    rows = [[method, *(entry["metrics"][m] for m in metric_names), entry["seconds_per_image"],
             entry["passes_per_image"]] for method, entry in report.items()]
    return _write_json_and_csv(report_paths(out), report,
                               ["method", *metric_names, "seconds_per_image", "passes_per_image"], rows)


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
