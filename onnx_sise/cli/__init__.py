"""Command line: `python -m onnx_sise explain|evaluate|sanity|export|variant|serve|batch ...` (also `onnx-sise`).

Bad input ends with one line on stderr and exit code 2, never a traceback. `arguments`
parses, `commands` runs, `terminal` prints and stops."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

from ..errors import SiseError
from .arguments import UsageError, build_parser, method_options, zoo_names
from .commands import COMMANDS
from .terminal import (
    EXIT_BAD_INPUT,
    EXIT_BROKEN_PIPE,
    EXIT_SIGNAL_BASE,
    BrokenPipe,
    StdoutError,
    Stopped,
    complain,
    signals_stop_the_run,
    standard_streams_closed,
)

__all__ = ["UsageError", "build_parser", "main", "method_options", "zoo_names"]


def main(argv: Sequence[str] | None = None) -> int:
    """The program: exit code 0, or 2 with one stderr line for bad input, 128 + the signal
    for a run stopped by SIGINT/SIGTERM/SIGHUP, 141 when the reader of stdout left.
    It takes SIGINT, SIGTERM and SIGHUP over for the rest of the process."""
    closed = standard_streams_closed() | ({1} if sys.stdout is None else set())
    try:
        with signals_stop_the_run():
            try:
                run_command(argv, stdout_closed=1 in closed)
                return 0
            except SiseError as exc:
                failure = exc
            except MemoryError:
                failure = SiseError("out of memory: explain a smaller photo, or use a smaller --batch-size or fewer "
                                    "masks")
            except OSError as exc:  # a path the checks above did not foresee (too long, a vanished directory)
                where = f" ({exc.filename})" if exc.filename else ""
                failure = SiseError(f"{exc.strerror or exc}{where}")
    except (Stopped, KeyboardInterrupt) as stop:
        signum = stop.signum if isinstance(stop, Stopped) else signal.SIGINT
        complain(f"stopped by {signal.Signals(signum).name}: the files written so far are complete, no partial "
                 "file was left")
        return EXIT_SIGNAL_BASE + signum
    complain(str(failure))  # signals are ignored by now: this line is the only one
    return EXIT_BROKEN_PIPE if isinstance(failure, BrokenPipe) else EXIT_BAD_INPUT


def run_command(argv: Sequence[str] | None, stdout_closed: bool) -> None:
    args = build_parser().parse_args(argv)
    if stdout_closed:
        raise StdoutError("stdout is closed: redirect it to a file, or to /dev/null to discard what onnx_sise "
                          "prints")
    COMMANDS[args.command](args)
