"""Reading a file that a stranger named: only a regular file is read, it is opened
without blocking (a FIFO or a device never hangs the caller), and its size is checked
before the bytes are read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import SiseError


def read_regular(path: str | os.PathLike[str], kind: str, error: type[SiseError], max_bytes: int) -> bytes:
    """The bytes of the regular file at `path` (`kind` names it in messages: "image").
    A missing path or a directory raises FileNotFoundError / IsADirectoryError for the
    caller's own message; anything else that is wrong raises `error` with one line."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, IsADirectoryError):
        raise
    except OSError as exc:
        raise error(f"cannot read {p}: {exc.strerror}") from None
    except ValueError:  # a NUL byte in the name
        raise error(f"{p!r} is not a usable file name (it holds a NUL byte)") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(str(p))
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{p} is not a regular file (a pipe, device or socket): pass the {kind} as a file")
        if info.st_size > max_bytes:
            raise error(f"{p} is {info.st_size} bytes: more than the {max_bytes} bytes accepted for an {kind}"
                        if kind[0] in "aeiou" else
                        f"{p} is {info.st_size} bytes: more than the {max_bytes} bytes accepted for a {kind}")
        try:
            data = handle.read(info.st_size + 1)  # one byte more tells a file that grew
        except OSError as exc:
            raise error(f"cannot read {p}: {exc.strerror}") from None
    if len(data) > info.st_size:
        raise error(f"{p} changed while it was read: pass a file that is not being written")
    return data
