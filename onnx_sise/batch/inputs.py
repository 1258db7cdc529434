"""What `batch` explains: INPUT is a folder (walked recursively for images), a manifest
of paths (.txt: one a line; .csv: a `path` column, or the first one; .parquet: a `path`
column), or a `ray.data.Dataset` with a `path` column (and the encoded image in a `bytes`
column, as `ray.data.read_binary_files(..., include_paths=True)` gives it). Paths are local,
or URIs of a filesystem pyarrow opens (s3://, gs://, hdfs://, file://).

Each image gets a key: its path relative to the folder (or, in a manifest, as listed,
relative paths being relative to the manifest's folder; an absolute path or a URI loses
its leading `/` or `scheme://`). Outputs mirror the keys under OUT (outputs.py). Every
name is checked by type, manifests by size, and an image by type and size before it is
read: a pipe or device never blocks a worker (files.reading)."""

from __future__ import annotations

import csv
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import ImageError, SiseError
from ..files.reading import read_regular, text_path
from ..images.decode import MAX_IMAGE_BYTES

IMAGE_SUFFIXES = frozenset((".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pnm", ".ppm",
                            ".pgm", ".pbm", ".pam"))
MANIFEST_SUFFIXES = (".txt", ".csv", ".parquet")
MAX_MANIFEST_BYTES = 512 << 20
MAX_IMAGES = 10_000_000
MAX_KEY_CHARS = 4096


class BatchInputError(SiseError):
    """The INPUT of `batch` is not a folder, a manifest of paths or a Ray dataset, or lists bad paths."""


@dataclass(frozen=True)
class Item:
    """One image to explain: `key` names its outputs (a relative POSIX path), `source` is
    where it is read from (a local path or a URI)."""

    key: str
    source: str


def is_uri(text: str) -> bool:
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isalnum() and len(scheme) > 1  # not a Windows drive letter


def list_inputs(source: object, exclude: Path | None = None) -> list[Item]:
    """The images of a folder or a manifest (see the module doc), sorted by key and without
    repeats; `exclude` is a folder never walked (the run's own OUT inside INPUT)."""
    text = text_path(source)
    if text is None or not text or "\0" in text:
        raise BatchInputError(f"INPUT must be a folder, a .txt/.csv/.parquet manifest or a ray.data.Dataset, got "
                              f"{type(source).__name__} {source!r:.60}")
    if is_uri(text):
        return _uri_inputs(text)
    path = Path(text)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise BatchInputError(f"INPUT {path}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        return unique(_walk(path, exclude))
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise BatchInputError(f"INPUT {path} is neither a folder nor a manifest ({', '.join(MANIFEST_SUFFIXES)})")
    data = read_regular(path, "manifest", BatchInputError, MAX_MANIFEST_BYTES)
    return unique(Item(key_of(p, path.parent), str(path.parent / p) if not (is_uri(p) or Path(p).is_absolute())
                       else p) for p in manifest_paths(data, path.suffix.lower(), str(path)))


def _walk(folder: Path, exclude: Path | None) -> list[Item]:
    skip = exclude.resolve() if exclude is not None else None
    found: list[Item] = []
    for directory, subdirectories, files in os.walk(folder, onerror=None, followlinks=False):
        here = Path(directory)
        subdirectories[:] = sorted(d for d in subdirectories
                                   if not d.startswith(".") and (skip is None or (here / d).resolve() != skip))
        for name in sorted(files):
            if Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith("."):
                found.append(Item((here / name).relative_to(folder).as_posix(), str(here / name)))
                if len(found) > MAX_IMAGES:
                    raise BatchInputError(f"{folder} holds more than {MAX_IMAGES} images: split it")
    return found


def _uri_inputs(uri: str) -> list[Item]:
    from pyarrow import fs

    try:
        filesystem, root = fs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(root)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises its own kinds for each store
        raise BatchInputError(f"INPUT {uri}: {str(exc).splitlines()[0][:160]}") from None
    scheme = uri.partition("://")[0]
    if info.type == fs.FileType.Directory:
        infos = filesystem.get_file_info(fs.FileSelector(root, recursive=True))
        return unique(Item(PurePosixPath(i.path).relative_to(root).as_posix(), f"{scheme}://{i.path}")
                      for i in infos if i.type == fs.FileType.File and PurePosixPath(i.path).suffix.lower()
                      in IMAGE_SUFFIXES and not i.base_name.startswith("."))
    if info.type != fs.FileType.File or PurePosixPath(root).suffix.lower() not in MANIFEST_SUFFIXES:
        raise BatchInputError(f"INPUT {uri} is neither a folder nor a manifest ({', '.join(MANIFEST_SUFFIXES)})")
    if info.size > MAX_MANIFEST_BYTES:
        raise BatchInputError(f"manifest {uri} is {info.size} bytes, more than {MAX_MANIFEST_BYTES}: split it")
    with filesystem.open_input_stream(root) as stream:
        data = stream.read(MAX_MANIFEST_BYTES + 1)
    parent = uri.rsplit("/", 1)[0]
    return unique(Item(key_of(p, None), p if is_uri(p) else f"{parent}/{p}")
                  for p in manifest_paths(data, PurePosixPath(root).suffix.lower(), uri))


def manifest_paths(data: bytes, suffix: str, name: str) -> list[str]:
    """The paths a manifest lists, each a non-empty str without NUL bytes."""
    try:
        if suffix == ".parquet":
            paths = _parquet_paths(data, name)
        else:
            text = data.decode("utf-8-sig")
            if suffix == ".txt":
                paths = [line.strip() for line in text.splitlines()]
                paths = [p for p in paths if p and not p.startswith("#")]
            else:
                rows = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
                column = rows[0].index("path") if rows and "path" in rows[0] else 0
                paths = [r[column].strip() for r in rows[1 if rows and "path" in rows[0] else 0:] if len(r) > column]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BatchInputError(f"manifest {name} is not a {suffix[1:]} list of paths ({str(exc)[:100]})") from None
    if len(paths) > MAX_IMAGES:
        raise BatchInputError(f"manifest {name} lists {len(paths)} images, more than {MAX_IMAGES}: split it")
    for p in paths:
        if not isinstance(p, str) or not p or "\0" in p or len(p) > MAX_KEY_CHARS:
            raise BatchInputError(f"manifest {name} lists {p!r:.60}, which is not a path")
    if not paths:
        raise BatchInputError(f"manifest {name} lists no image")
    return paths


def _parquet_paths(data: bytes, name: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(pa.BufferReader(data))
        if table.metadata.num_rows > MAX_IMAGES:
            raise BatchInputError(f"manifest {name} lists {table.metadata.num_rows} rows, more than {MAX_IMAGES}")
        if "path" not in table.schema_arrow.names:
            raise BatchInputError(f"manifest {name} has no 'path' column (it has {table.schema_arrow.names[:8]})")
        column = table.read(columns=["path"]).column("path")
    except (pa.ArrowException, OSError) as exc:
        raise BatchInputError(f"manifest {name} is not a Parquet file ({str(exc).splitlines()[0][:100]})") from None
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        raise BatchInputError(f"manifest {name}: the 'path' column holds {column.type}, not strings")
    return column.to_pylist()


def key_of(path: str, base: Path | None) -> str:
    """The output key of a listed path: relative paths as they are, an absolute path or a
    URI without its leading `/` or `scheme://`; `.` and `..` parts are refused."""
    text = path.partition("://")[2] if is_uri(path) else path
    parts = [p for p in PurePosixPath(text.replace(os.sep, "/")).parts if p != "/"]
    if not parts or any(p in (".", "..") for p in parts):
        raise BatchInputError(f"{path!r:.80} is not a usable image path (it must name a file and hold no '..')")
    return "/".join(parts)


def unique(items: object) -> list[Item]:
    """Sorted by key; a key listed twice is explained once."""
    seen: dict[str, Item] = {}
    for item in items:  # type: ignore[attr-defined]
        seen.setdefault(item.key, item)
    return [seen[k] for k in sorted(seen)]


def read_image_bytes(source: str) -> bytes:
    """The encoded bytes of one image (local path or URI), checked by type and size first."""
    if not is_uri(source):
        try:
            return read_regular(source, "image", ImageError, MAX_IMAGE_BYTES)
        except FileNotFoundError:
            raise ImageError(f"image not found: {source}") from None
        except IsADirectoryError:
            raise ImageError(f"{source} is a directory, not an image file") from None
    from pyarrow import fs

    try:
        filesystem, where = fs.FileSystem.from_uri(source)
        info = filesystem.get_file_info(where)
        if info.type != fs.FileType.File:
            raise ImageError(f"{source} is not a file")
        if info.size > MAX_IMAGE_BYTES:
            raise ImageError(f"{source} is {info.size} bytes: more than the {MAX_IMAGE_BYTES} accepted for an image")
        with filesystem.open_input_stream(where) as stream:
            data = stream.read(info.size + 1)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises its own kinds for each store
        raise ImageError(f"cannot read {source}: {str(exc).splitlines()[0][:160]}") from None
    if len(data) != info.size:
        raise ImageError(f"{source} changed while it was read")
    return data
