"""What `batch` writes under OUT, and how a re-run knows what is done.

- `OUT/<key>.<method>.npy` (the map, float32, the photo's size) and `.png` (the overlay);
- `OUT/.batch/<method>/<digest of key>.json`: the image's row (path, key, method, target,
  label, score, passes, seconds, status "ok" or "error", error). The row is renamed into
  place last, with the map and the overlay (files.writing.replace_together): a row means
  the image is complete; a bad image gets a row and no map;
- `OUT/manifest.<method>.parquet`: every row of the method, the record of the run, written
  atomically when a run ends (and made again from the rows by the next run after a crash).

A run killed at any point leaves complete files and at most temporary files named
`.onnx_sise-*.tmp`; the next run removes those first, then explains every image that has
no row: each image is explained once, whatever was killed when."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files.writing import TEMPORARY_PREFIX, TEMPORARY_SUFFIX, replace_together, write_atomically
from ..images.overlay import encode_npy, encode_png, overlay

ROWS_FOLDER = ".batch"
COLUMNS = ("path", "key", "method", "target", "label", "score", "passes", "seconds", "status", "error")
MAX_ROW_BYTES = 1 << 16


@dataclass(frozen=True)
class Outputs:
    """The files of one method's run under `out`."""

    out: Path
    method: str

    def maps(self, key: str) -> tuple[Path, Path]:
        """(map .npy, overlay .png) of an image key."""
        base = self.out / key
        return base.with_name(f"{base.name}.{self.method}.npy"), base.with_name(f"{base.name}.{self.method}.png")

    def row_path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        return self.out / ROWS_FOLDER / self.method / f"{digest}.json"

    @property
    def manifest(self) -> Path:
        return self.out / f"manifest.{self.method}.parquet"

    def row(self, key: str) -> dict | None:
        """The row of a complete image (None: not done, or its row is not one we wrote)."""
        try:
            with open(self.row_path(key), "rb") as handle:
                row = json.loads(handle.read(MAX_ROW_BYTES))
        except (OSError, ValueError):
            return None
        if not isinstance(row, dict) or row.get("key") != key or set(row) != set(COLUMNS):
            return None
        if row["status"] == "ok" and not all(p.is_file() for p in self.maps(key)):
            return None  # its map was removed since: explain it again
        return row

    def write_result(self, rgb: np.ndarray, saliency: np.ndarray, row: dict) -> None:
        """The map, its overlay and the row: all three or none (the row renamed last)."""
        npy, png = self.maps(row["key"])
        replace_together({npy: encode_npy(saliency.astype(np.float32)), png: encode_png(overlay(rgb, saliency)),
                          self.row_path(row["key"]): encode_row(row)})

    def write_error(self, row: dict) -> None:
        write_atomically(self.row_path(row["key"]), encode_row(row))

    def rows(self) -> Iterator[dict]:
        """Every row written so far by any run of this method."""
        folder = self.out / ROWS_FOLDER / self.method
        try:
            names = sorted(e.name for e in os.scandir(folder) if e.name.endswith(".json"))
        except OSError:
            return
        for name in names:
            try:
                with open(folder / name, "rb") as handle:
                    row = json.loads(handle.read(MAX_ROW_BYTES))
            except (OSError, ValueError):
                continue
            if isinstance(row, dict) and set(row) == set(COLUMNS):
                yield row

    def write_manifest(self) -> int:
        """manifest.<method>.parquet from every row, sorted by key; the number of rows."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = sorted(self.rows(), key=lambda r: r["key"])
        schema = pa.schema([("path", pa.string()), ("key", pa.string()), ("method", pa.string()),
                            ("target", pa.int64()), ("label", pa.string()), ("score", pa.float64()),
                            ("passes", pa.int64()), ("seconds", pa.float64()), ("status", pa.string()),
                            ("error", pa.string())])
        table = pa.Table.from_pylist(rows, schema=schema)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        write_atomically(self.manifest, sink.getvalue().to_pybytes())
        return len(rows)


def encode_row(row: dict) -> bytes:
    return json.dumps({c: row[c] for c in COLUMNS}, ensure_ascii=True).encode()


def remove_temporaries(out: Path) -> int:
    """Remove the temporary files a killed run left under `out` (`.onnx_sise-*.tmp`);
    how many. Run only while no other run writes to `out`."""
    removed = 0
    for directory, _, files in os.walk(out, followlinks=False):
        for name in files:
            if name.startswith(TEMPORARY_PREFIX) and name.endswith(TEMPORARY_SUFFIX):
                try:
                    os.unlink(os.path.join(directory, name))
                    removed += 1
                except OSError:
                    pass
    return removed
