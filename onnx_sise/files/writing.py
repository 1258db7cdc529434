"""Writing result files so that no reader, crash, full disk or signal ever sees half of
them: each file goes to a short-named temporary file in its own directory, every
temporary file is complete before the first rename, the renames of a group run with
SIGINT/SIGTERM/SIGHUP held back, and temporary files are removed on every exit path."""

from __future__ import annotations

import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..errors import OutputError

# The longest file name (bytes) Linux, macOS and Windows file systems accept.
NAME_MAX = 255
# Temporary names are short whatever the output's name: `.onnx_sise-XXXXXXXX.tmp`.
TEMPORARY_PREFIX = ".onnx_sise-"
TEMPORARY_SUFFIX = ".tmp"
# Signals held back while a group of files is renamed (the ones a terminal, `kill` and
# a closing session send).
DEFERRED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def ensure_writable_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {directory}: {exc.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {directory} is not writable: choose another with --out")


@contextmanager
def output_directory(directory: Path | None) -> Iterator[None]:
    """ensure_writable_dir(directory) for the block; when the block fails, the folders
    this made are removed again if they are still empty: a failed run leaves nothing."""
    if directory is None:
        yield
        return
    made = []  # the folder and its missing parents, deepest first
    folder = directory
    while not _exists(folder) and folder != folder.parent:
        made.append(folder)
        folder = folder.parent
    ensure_writable_dir(directory)
    try:
        yield
    except BaseException:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:  # not empty: something of the run's is in it
                break
        raise


def _exists(path: Path) -> bool:
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # there, or unusable: ensure_writable_dir says which
    return True


def check_output_name(path: Path) -> None:
    """Refuse a file name longer than NAME_MAX bytes, or a path where a directory is."""
    size = len(os.fsencode(path.name))
    if size > NAME_MAX:
        raise OutputError(f"output file name {path.name!r} is {size} bytes, more than the {NAME_MAX} a file system "
                          "accepts: choose a shorter name (rename the input it is named after)")
    if _is_directory(path):
        raise OutputError(f"cannot write {path}: a directory of that name is in the way (move it, or write elsewhere)")


def _is_directory(path: Path) -> bool:
    """A directory itself, not a link to one (a rename replaces a link)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def identities(paths: Sequence[Path]) -> set[tuple[int, int]]:
    """(device, inode) of each existing path and, for a symbolic link, of its target."""
    found = set()
    for path in paths:
        for look in (os.lstat, os.stat):
            try:
                info = look(path)
            except OSError:
                continue
            found.add((info.st_dev, info.st_ino))
    return found


def refuse_overwriting(path: Path, inputs: set[tuple[int, int]]) -> None:
    """Refuse an output `path` that is one of the `inputs` (their `identities`): the same
    file under any name, a hard link too. A symbolic link at `path` is replaced, not
    followed: it is refused only when it is itself an input."""
    try:
        info = os.lstat(path)
    except OSError:
        return
    if (info.st_dev, info.st_ino) in inputs:
        raise OutputError(f"the output {path} is an input of this run (the same file): it would be overwritten; "
                          "choose another output path")


def write_atomically(path: Path, payload: bytes) -> None:
    """Write `payload` to `path`: the old file or the new one, never a mixture."""
    replace_together({path: payload})


def replace_together(files: Mapping[Path, bytes]) -> None:
    """Write every file of `files` (path -> bytes) or none: the old files stay whole
    until every new one is complete on disk, then all are renamed into place."""
    for path in files:
        check_output_name(path)
        ensure_writable_dir(path.parent)
    temporaries: dict[Path, Path] = {}
    try:
        for path, payload in files.items():
            with signals_deferred():  # a temporary file is always known to the cleanup below
                fd, temporaries[path] = _new_temporary(path)
            _fill(fd, temporaries[path], payload, path)
        _rename_all(temporaries)
    finally:
        with signals_deferred():
            for temporary in temporaries.values():
                temporary.unlink(missing_ok=True)


def _new_temporary(path: Path) -> tuple[int, Path]:
    """An open, empty temporary file beside `path`: (descriptor, path)."""
    try:
        fd, name = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix=TEMPORARY_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    return fd, Path(name)


def _fill(fd: int, temporary: Path, payload: bytes, path: Path) -> None:
    """Write `payload` through `fd` into `temporary` and close it (mode 0644)."""
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(temporary, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None


def _rename_all(temporaries: Mapping[Path, Path]) -> None:
    """Rename each temporary onto its path with signals held back; when a rename fails,
    the files renamed before it get their old content back."""
    with signals_deferred():
        backups: dict[Path, Path | None] = {}
        try:
            for path, temporary in temporaries.items():
                backups[path] = _hard_link_backup(path)
                os.replace(temporary, path)
        except OSError as exc:
            _restore(backups, renamed=list(backups)[:-1])
            raise OutputError(f"cannot write {path}: {exc.strerror}") from None
        finally:
            for backup in backups.values():
                if backup is not None:
                    backup.unlink(missing_ok=True)


def _hard_link_backup(path: Path) -> Path | None:
    """A second name for the file now at `path` (None: no file, or no hard links here)."""
    backup = path.parent / f"{TEMPORARY_PREFIX}{os.urandom(4).hex()}.old{TEMPORARY_SUFFIX}"
    try:
        os.link(path, backup, follow_symlinks=False)
    except OSError:
        return None
    return backup


def _restore(backups: Mapping[Path, Path | None], renamed: list[Path]) -> None:
    for path in renamed:
        backup = backups[path]
        try:
            if backup is not None:
                os.replace(backup, path)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass  # the OutputError being raised says the write failed


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back for the block: each one that arrives is
    raised again, with the handler it would have met, when the block ends.

    Python runs signal handlers in the main thread only, at its own pace (another thread
    may take the signal from the kernel), so blocking the signal with pthread_sigmask is
    not enough: the handlers themselves are swapped for ones that only take note. From
    other threads the block runs as it is (signal handlers never interrupt them)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {number: signal.getsignal(number) for number in DEFERRED_SIGNALS}
    for number, handler in previous.items():
        if handler not in (signal.SIG_IGN, None):
            signal.signal(number, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for number, handler in previous.items():
            if handler not in (signal.SIG_IGN, None):
                signal.signal(number, handler)
        for number in dict.fromkeys(received):
            signal.raise_signal(number)
