"""Plain ONNX classifiers on the explain path: prepared once into an explainable ONNX
(onnx, onnxruntime and NumPy only: package `preparation`) and cached by the file's
content hash, so that later runs skip the preparation time."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from .external_data import external_data_files, read_external_data
from .files import read_model_file

CACHE_ENV = "ONNX_SISE_CACHE"
MAX_STEM = 100  # characters of the model's name kept in its cache entry's name
log = logging.getLogger("onnx_sise.prepare")  # the preparation stage's logger


@dataclass(frozen=True)
class Prepared:
    path: Path
    cached: bool


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "onnx_sise")


def content_hash(path: Path) -> str:
    """sha256 of the model file and of every external data file it references (new
    weights beside the same graph are a new model), each read bounded, regular files only."""
    data = read_model_file(path, str(path))
    digest = hashlib.sha256(data)
    for location, contents in read_external_data(external_data_files(data, path, str(path)), str(path)).items():
        for part in (location.encode("utf-8", "surrogatepass"), contents):
            digest.update(len(part).to_bytes(8, "little"))
            digest.update(part)
    return digest.hexdigest()


def prepared_model(path: str | os.PathLike[str] | bytes, cache_dir: str | os.PathLike[str] | None = None, *,
                   refresh: bool = False) -> Prepared:
    """The explainable ONNX for the plain ONNX at `path` (or in these bytes), from the
    cache or made now (bytes are written to a temporary directory for the preparation);
    `refresh` prepares again over a cache entry that did not load."""
    if isinstance(path, (bytes, bytearray, memoryview)):
        data = bytes(path)
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        target = cache / f"model-{hashlib.sha256(data).hexdigest()[:20]}.sise.onnx"
        if not refresh and _usable(target):
            return Prepared(target, cached=True)
        with tempfile.TemporaryDirectory(prefix="onnx_sise-") as tmp:
            source = Path(tmp) / "model.onnx"
            source.write_bytes(data)
            return _prepare(source, cache, target)
    source = Path(path)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / f"{source.stem[:MAX_STEM]}-{content_hash(source)[:20]}.sise.onnx"
    if not refresh and _usable(target):
        return Prepared(target, cached=True)
    return _prepare(source, cache, target)


def _usable(entry: Path) -> bool:
    """A cache entry is used only if it is a regular file, not a link (to another model)."""
    try:
        return stat.S_ISREG(os.lstat(entry).st_mode)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ModelError(f"cannot use the cache directory {entry.parent}: {exc.strerror} (set --cache-dir)") from None


def _prepare(source: Path, cache: Path, target: Path) -> Prepared:
    from .preparation import prepare_onnx

    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create the cache directory {cache}: {exc.strerror} (set --cache-dir)") from None
    log.info("preparing the plain ONNX %s once into %s", source, target)
    prepare_onnx(source, target)
    return Prepared(target, cached=False)
