"""Reading a file that a stranger named: only a regular file is read, it is opened
without blocking (a FIFO or a device never hangs the caller), and its size is checked
before the bytes are read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import SiseError


def text_path(value: object) -> str | None:
    """os.fspath(value) when it is a str path; None for anything else, a stranger's
    os.PathLike whose __fspath__ raises or returns bytes or another type included."""
    try:
        text = os.fspath(value)  # type: ignore[call-overload]
    except Exception:  # noqa: BLE001 - a stranger's __fspath__ may raise anything
        return None
    return text if isinstance(text, str) else None


def read_regular(path: str | os.PathLike[str], kind: str, error: type[SiseError], max_bytes: int,
                 name: str | None = None) -> bytes:
    """The bytes of the regular file at `path` (`kind` names it in messages: "image";
    `name` is how messages call the file, default its path). A missing path or a
    directory raises FileNotFoundError / IsADirectoryError for the caller's own message;
    anything else that is wrong, a file changed while it was read too, raises `error`
    with one line."""
    p = Path(path)
    shown = str(p) if name is None else name
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, IsADirectoryError):
        raise
    except OSError as exc:
        raise error(f"cannot read {shown}: {exc.strerror}") from None
    except ValueError:  # a NUL byte in the name
        raise error(f"{p!r} is not a usable file name (it holds a NUL byte)") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(str(p))
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{shown} is not a regular file (a pipe, device or socket): pass the {kind} as a file")
        if info.st_size > max_bytes:
            raise error(f"{shown} is {info.st_size} bytes: more than the {max_bytes} bytes accepted for an {kind}"
                        if kind[0] in "aeiou" else
                        f"{shown} is {info.st_size} bytes: more than the {max_bytes} bytes accepted for a {kind}")
        try:
            data = handle.read(info.st_size + 1)  # one byte more tells a file that grew
            after = os.fstat(handle.fileno())
        except OSError as exc:
            raise error(f"cannot read {shown}: {exc.strerror}") from None
    if len(data) != info.st_size or (after.st_size, after.st_mtime_ns) != (info.st_size, info.st_mtime_ns):
        raise error(f"{shown} changed while it was read: pass it again once it is completely written")
    return data
