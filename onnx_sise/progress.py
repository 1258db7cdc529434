"""Progress: the callback the methods report finished masks to, and a minimal bar on
stderr that is one, drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

Progress = Callable[[int], None]


def no_progress(n: int) -> None:
    return None


class ProgressBar:
    def __init__(self, total: int | None, label: str, stream: TextIO | None = None, width: int = 30,
                 unit: str = "masks", rate: bool = False) -> None:
        """unit: what is counted; rate: also show units per second and, with a total, the ETA."""
        self.total = total
        self.unit = unit
        self.rate = rate
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.done = 0
        self.started = time.perf_counter()
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, n: int) -> None:
        self.done += n
        if self.enabled:
            elapsed = time.perf_counter() - self.started
            if self.total:
                filled = int(self.width * min(self.done, self.total) / self.total)
                bar = f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total}"
            else:
                bar = f"{self.done}"
            speed = self.done / elapsed if elapsed > 0 else 0.0
            pace = f" {speed:.2f} {self.unit}/s" if self.rate else ""
            if self.rate and self.total and speed > 0:
                pace += f" ETA {max(0, self.total - self.done) / speed:.0f}s"
            self.stream.write(f"\r{self.label} {bar} {self.unit} {elapsed:5.1f}s{pace}")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * (len(self.label) + self.width + (70 if self.rate else 40)) + "\r")
            self.stream.flush()
