"""Stopping long explanations: a time limit (`max_seconds`) and a token that another
thread sets. Both are checked before every gradient call and every batch of masked
passes, so an explanation stops within one batch's time of being asked to."""

from __future__ import annotations

import math
import numbers
import threading
import time
from dataclasses import dataclass, field

from .errors import CancelledError, OptionError, TimeLimitError


class CancelToken:
    """Set from any thread with cancel(); every explanation given this token then stops
    with CancelledError at its next check. A token stays cancelled: use a new one per job."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True)
class Cancellation:
    """What one explanation checks: its token and its deadline (time.monotonic(), or None)."""

    token: CancelToken | None = None
    deadline: float | None = None
    max_seconds: float | None = None
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def start(cls, max_seconds: float | None = None, token: CancelToken | None = None) -> Cancellation:
        if max_seconds is not None and (isinstance(max_seconds, bool) or not (
                isinstance(max_seconds, numbers.Real) and max_seconds > 0)):
            raise OptionError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")
        if token is not None and not isinstance(token, CancelToken):
            raise OptionError(f"cancel must be an onnx_sise.CancelToken, got {type(token).__name__}")
        now = time.monotonic()
        if max_seconds is None:
            return cls(token, None, None, now)
        seconds = _seconds(max_seconds)
        return cls(token, now + seconds, seconds, now)

    def check(self, passes: int = 0) -> None:
        """Raise CancelledError or TimeLimitError if the explanation must stop now."""
        if self.token is not None and self.token.cancelled:
            raise CancelledError(f"explanation cancelled after {passes} masked passes")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimeLimitError(f"explanation stopped at max_seconds={self.max_seconds:g} after {passes} masked "
                                 "passes: raise max_seconds, or use fewer masks (mu, rise_masks) or a cheaper method")


def _seconds(value: float) -> float:
    try:
        return float(value)
    except OverflowError:  # an int past float's range: no limit in practice
        return math.inf


NEVER = Cancellation()
