"""What the command line prints and how it ends: one escaped line per result on stdout,
one line on stderr for a failure, the exit codes, and SIGINT/SIGTERM/SIGHUP turned into a
clean stop."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import SiseError

EXIT_BAD_INPUT = 2
# A run stopped by a signal exits with 128 + its number (130 SIGINT, 143 SIGTERM, 129
# SIGHUP), as a shell reports a process the signal killed.
EXIT_SIGNAL_BASE = 128
# stdout closed by its reader (`| head -1`): 128 + SIGPIPE, the status `set -o pipefail`
# sees from any tool that stops writing to a closed pipe.
EXIT_BROKEN_PIPE = 128 + 13
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class StdoutError(SiseError):
    """stdout is closed, full or failing: what the CLI prints cannot be written."""


class BrokenPipe(StdoutError):
    """The reader of stdout went away (`| head -1`)."""


class Stopped(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived: unwinds the run (not an Exception, so that no
    `except Exception` on the way swallows it) through every cleanup."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def printable(text: str) -> str:
    """`text` with every control or otherwise unprintable character escaped (\\x1b,
    \\n, \\u202e; a byte that is not UTF-8 in a file name as \\xff), so that a label or
    a file name can neither draw on the terminal nor fake a line."""
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def say(text: str) -> None:
    """Print one line of results on stdout, escaped, now (a closed pipe or a full disk
    shows at this line, while the files already written are whole)."""
    try:
        print(printable(text), flush=True)
    except BrokenPipeError:
        _silence_stdout()
        raise BrokenPipe("stdout was closed by its reader (broken pipe): stopped; the files written so far "
                         "are complete") from None
    except OSError as exc:
        _silence_stdout()
        raise StdoutError(f"cannot write to stdout: {exc.strerror}: the files written so far are complete; "
                          "redirect stdout elsewhere") from None


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null, so that the exit's own flush of stdout fails no more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def complain(message: str) -> None:
    """The one stderr line of a failed run (nothing when stderr is closed)."""
    if sys.stderr is None:
        return
    try:
        print(f"onnx_sise: error: {printable(message)}", file=sys.stderr, flush=True)
    except OSError:
        pass


def standard_streams_closed() -> set[int]:
    """Which of fds 0, 1, 2 are closed; each is reopened on /dev/null, so that no file this
    run opens gets the number (and what a library prints to it). Python itself saw a
    stream closed at its start when sys.stdout or sys.stderr is None."""
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
            devnull = os.open(os.devnull, os.O_RDWR)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
    return closed


@contextmanager
def signals_stop_the_run() -> Iterator[None]:
    """While the block runs, SIGINT, SIGTERM and SIGHUP raise Stopped (the first one only:
    later ones are ignored, so that they cannot cut the cleanup short). When it ends the
    signals are ignored: the work is over, the exit is near. A signal ignored when the
    run started (nohup) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        for number in STOP_SIGNALS:
            signal.signal(number, signal.SIG_IGN)
        raise Stopped(signum)

    taken = [number for number in STOP_SIGNALS if signal.getsignal(number) is not signal.SIG_IGN]
    for number in taken:
        signal.signal(number, stop)
    try:
        yield
    finally:
        for number in taken:
            signal.signal(number, signal.SIG_IGN)
