"""Reading a model file's bytes: once, without blocking and only if it is a regular
file, into memory (never memory-mapped: a file truncated while it is read would kill
the process with SIGBUS), refused in one line when it cannot be the model."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError
from ..files.reading import read_regular

# protobuf's own limit on one serialized message: a larger model file is not ONNX.
MAX_MODEL_BYTES = 2**31 - 1


def read_model_file(path: Path, name: str) -> bytes:
    """The bytes of the model file at `path` (`name` in messages), refused in one line if
    it is missing, not a regular file, empty, too large or changed while it was read."""
    data = read_bounded(path, name, "model", MAX_MODEL_BYTES, missing=f"model file not found: {name}")
    if not data:
        raise ModelError(f"{name} is empty (0 bytes): not an ONNX model")
    return data


def read_bounded(path: Path, name: str, kind: str, limit: int, missing: str) -> bytes:
    """read_regular with the model's messages: `missing` for a path that does not exist."""
    try:
        return read_regular(path, kind, ModelError, limit, name=name)
    except FileNotFoundError:
        raise ModelError(missing) from None
    except IsADirectoryError:
        raise ModelError(f"{name} is not a file (a directory)") from None
