"""The real-photo evaluation set of benchmarks/real_photos.json: photos shipped inside
packages on PyPI, fetched into a cache folder (never into git), each checked against the
sha256 its manifest entry pins, with the hand-checked boxes of its target class.

    python benchmarks/photo_set.py [--folder F] [--draw OUT]

fetches the set (default folder: $ONNX_SISE_CACHE/photos or ~/.cache/onnx_sise/photos)
and, with --draw, writes OUT/<stem>.boxes.png: each photo with its boxes and class drawn
on it, for a person to check. The manifest names each photo's archive (a pinned wheel or
sdist, itself pinned by sha256) and member; a photo already installed with the right
content (scikit-image's, say) is copied from the installation instead. Archives are
downloaded once into F/archives, and only the named members are read from them.
benchmarks/PHOTOS.md lists the photos, their sources and licences.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from onnx_sise.errors import SiseError
from onnx_sise.files.writing import write_atomically
from onnx_sise.images.decode import read_rgb
from onnx_sise.images.legend import caption_text
from onnx_sise.images.overlay import encode_png
from onnx_sise.model.cache import default_cache_dir

MANIFEST = Path(__file__).resolve().parent / "real_photos.json"
PYPI_SIMPLE = "https://pypi.org/simple"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
CHUNK = 1 << 20
# The five photos of the set before issue 15 item 2: the default of the smaller benchmarks.
FIRST_FIVE = ("coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png", "grace_hopper.jpg")


class PhotoSetError(SiseError):
    """A photo or archive cannot be fetched, or its content is not what the manifest pins."""


@dataclass(frozen=True)
class Photo:
    """One photo of the set: its file in the cache folder, its target ImageNet class and
    the boxes [x0, y0, x1, y1] (pixels, x1/y1 exclusive) around that class; no boxes:
    only the model-truth metrics apply."""

    path: Path
    target: int
    boxes: tuple[tuple[int, int, int, int], ...]
    name: str


def default_folder() -> Path:
    return default_cache_dir() / "photos"


def manifest(path: Path = MANIFEST) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def photo_set(folder: Path | None = None, manifest_path: Path = MANIFEST) -> list[Photo]:
    """Every photo of the manifest present in `folder` (fetched now where missing or
    changed), in manifest order. Raises PhotoSetError when a download fails or a file's
    sha256 is not the pinned one."""
    folder = Path(folder) if folder is not None else default_folder()
    folder.mkdir(parents=True, exist_ok=True)
    spec = manifest(manifest_path)
    missing: dict[str, list[dict]] = {}
    for entry in spec["images"]:
        if not _has_content(folder / entry["file"], entry["sha256"]):
            missing.setdefault(entry["source"]["archive"], []).append(entry)
    for archive, entries in missing.items():
        if archive not in spec["archives"]:
            raise PhotoSetError(f"{manifest_path}: {entries[0]['file']} names the archive {archive}, which "
                                "'archives' does not pin")
        found = {e["file"]: data for e in entries if (data := _installed(archive, e["source"]["member"], e["sha256"]))}
        rest = [e for e in entries if e["file"] not in found]
        if rest:
            members = _members(folder / "archives", archive, spec["archives"][archive],
                               {e["source"]["member"] for e in rest})
            found |= {e["file"]: members[e["source"]["member"]] for e in rest}
        for entry in entries:
            data = found[entry["file"]]
            digest = hashlib.sha256(data).hexdigest()
            if digest != entry["sha256"]:
                raise PhotoSetError(f"{entry['source']['member']} in {archive} has sha256 {digest[:16]}..., the "
                                    f"manifest pins {entry['sha256'][:16]}...: upstream changed the photo, check it "
                                    "and its boxes")
            write_atomically(folder / entry["file"], data)
    return [Photo(folder / e["file"], e["target"], tuple(tuple(b) for b in e.get("boxes", [])), e["name"])
            for e in spec["images"]]


def _has_content(path: Path, sha256: str) -> bool:
    return path.is_file() and _file_sha256(path) == sha256


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _installed(archive: str, member: str, sha256: str) -> bytes | None:
    """The member's bytes from an installed copy of the archive's distribution (any
    version) when the content is the pinned one, else None."""
    package = archive.split("==")[0]
    try:
        path = Path(str(importlib.metadata.distribution(package).locate_file(member)))
    except importlib.metadata.PackageNotFoundError:
        return None
    if not path.is_file():
        return None
    data = path.read_bytes()
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


def _members(cache: Path, archive: str, pin: dict, names: set[str]) -> dict[str, bytes]:
    """The named members of the pinned archive (a wheel read with zipfile, an sdist with
    tarfile in one pass), downloaded into `cache` once; nothing else is extracted."""
    path = _archive(cache, archive, pin)
    if path.name.endswith(".whl"):
        with zipfile.ZipFile(path) as wheel:
            found = {name: wheel.read(name) for name in names if name in wheel.NameToInfo}
    else:
        found = {}
        with tarfile.open(path) as sdist:
            for info in sdist:
                if info.name in names and info.isfile():
                    found[info.name] = sdist.extractfile(info).read()
                    if len(found) == len(names):
                        break
    absent = sorted(names - found.keys())
    if absent:
        raise PhotoSetError(f"{path.name} has no member {absent[0]}: check the manifest")
    return found


def _archive(cache: Path, archive: str, pin: dict) -> Path:
    """The pinned archive file in `cache`, downloaded from PyPI when absent."""
    path = cache / pin["file"]
    if path.is_file() and _file_sha256(path) == pin["sha256"]:
        return path
    cache.mkdir(parents=True, exist_ok=True)
    url = _archive_url(archive.split("==")[0], pin["file"])
    print(f"downloading {pin['file']} ({archive}) into {cache}", file=sys.stderr)
    partial = path.with_name(path.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=120) as response, open(partial, "wb") as handle:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                handle.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise PhotoSetError(f"cannot download {url}: {exc}") from None
    if digest.hexdigest() != pin["sha256"]:
        partial.unlink(missing_ok=True)
        raise PhotoSetError(f"{pin['file']} from PyPI has sha256 {digest.hexdigest()[:16]}..., the manifest pins "
                            f"{pin['sha256'][:16]}...: refusing it")
    partial.replace(path)
    return path


def _archive_url(package: str, filename: str) -> str:
    """The download URL of `filename` from PyPI's simple index (JSON form, PEP 691)."""
    request = urllib.request.Request(f"{PYPI_SIMPLE}/{package}/", headers={"Accept": SIMPLE_JSON})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            files = json.load(response)["files"]
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        raise PhotoSetError(f"cannot read PyPI's index of {package}: {exc}") from None
    for file in files:
        if file.get("filename") == filename:
            return file["url"]
    raise PhotoSetError(f"PyPI no longer lists {filename} for {package}")


def draw(photo: Photo) -> np.ndarray:
    """The photo with its boxes (green) under a caption naming the file and class, (H, W, 3) RGB."""
    rgb = read_rgb(photo.path)
    thickness = max(2, round(max(rgb.shape[:2]) / 300))
    canvas = rgb.copy()
    for x0, y0, x1, y1 in photo.boxes:
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), (0, 255, 0), thickness)
    count = len(photo.boxes)
    truth = f"{count} box{'es' if count > 1 else ''}" if count else "model-truth only"
    caption = f"{photo.path.name}: {photo.target} {photo.name} ({truth})"
    text = caption_text(caption)
    (width, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    scale = min(0.5, 0.5 * (canvas.shape[1] - 12) / width)  # the caption fits a narrow photo
    strip = np.full((32, canvas.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (6, 22), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, canvas])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=None,
                        help="cache folder of the photos (default: $ONNX_SISE_CACHE/photos or ~/.cache/onnx_sise/photos)")
    parser.add_argument("--draw", type=Path, default=None,
                        help="write each photo with its boxes and class into this folder (default: none)")
    args = parser.parse_args(argv)
    try:
        photos = photo_set(args.folder)
    except SiseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    boxed = sum(1 for p in photos if p.boxes)
    print(f"{len(photos)} photos in {photos[0].path.parent}: {boxed} with boxes, {len(photos) - boxed} model-truth only")
    if args.draw is not None:
        args.draw.mkdir(parents=True, exist_ok=True)
        for photo in photos:
            write_atomically(args.draw / f"{photo.path.stem}.boxes.png", encode_png(draw(photo)))
        print(f"drew them into {args.draw}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
