"""Boxes in other people's formats, turned into entries of our annotation file
(annotations.py checks them like its own):

- PASCAL VOC XML: one file per image (`<filename>`, `<object><name>`, `<bndbox>` with
  xmin/ymin/xmax/ymax, 1-based and inclusive: our [xmin - 1, ymin - 1, xmax, ymax]); a
  folder of them (VOC's Annotations/) or one file;
- COCO JSON: `images` (id, file_name), `annotations` (image_id, category_id, bbox
  [x, y, w, h]: our [x, y, x + w, y + h]) and `categories` (id, name).

A class name is the model's label of that name (any case) or a class id written as a
number; objects of names the model does not know are left out (an error when none is
left). An image with objects of several classes gives one entry per class, with that
class's boxes. The XML parser refuses a DOCTYPE (so no entity is ever expanded: no
billion laughs, no external entities), bounds the file's size, the elements and their
depth; every value is checked by type before use."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from xml.parsers import expat

from ..files.reading import read_regular
from .annotations import (
    MAX_ANNOTATED_IMAGES,
    Annotation,
    AnnotationError,
    checked_entries,
    load_annotations,
    read_json,
    short,
)

MAX_XML_BYTES = 1 << 20  # one VOC file is a few kB
MAX_XML_ELEMENTS = 20_000
MAX_XML_DEPTH = 16
MAX_VOC_FILES = 100_000
MAX_COORDINATE = 1 << 24


def load_any_annotations(path: Path, images: Path, num_classes: int, need_truth: bool,
                         labels: Sequence[str] = ()) -> list[Annotation]:
    """load_annotations of our JSON, a VOC XML file or folder, or a COCO JSON (by content),
    each entry checked the same way; `labels` (the model's) name the classes."""
    if path.is_dir() or path.suffix.lower() == ".xml":
        entries = voc_entries(path, labels, num_classes)
    else:
        raw = read_json(path)
        if not is_coco(raw):
            return load_annotations(path, images, num_classes, need_truth)
        entries = coco_entries(raw, labels, num_classes, str(path))  # type: ignore[arg-type]
    if len(entries) > MAX_ANNOTATED_IMAGES:
        raise AnnotationError(f"{path} gives {len(entries)} images, more than {MAX_ANNOTATED_IMAGES}: split it")
    return checked_entries(entries, path, images, num_classes, need_truth)


class _Element:
    __slots__ = ("tag", "text", "children")

    def __init__(self, tag: str) -> None:
        self.tag, self.text, self.children = tag, "", []

    def find(self, tag: str) -> _Element | None:
        return next((c for c in self.children if c.tag == tag), None)

    def value(self, tag: str) -> str | None:
        found = self.find(tag)
        return None if found is None else found.text.strip()


def parse_xml(data: bytes, name: str) -> _Element:
    """The element tree of a small XML file; a DOCTYPE, entities, too many or too deep
    elements and malformed XML are AnnotationErrors."""
    parser = expat.ParserCreate()
    stack: list[_Element] = []
    root: list[_Element] = []
    count = [0]

    def refuse(*_: object) -> None:
        raise AnnotationError(f"{name} declares a DOCTYPE or entities, which are refused: VOC files have none")

    def start(tag: str, attributes: dict) -> None:
        count[0] += 1
        if count[0] > MAX_XML_ELEMENTS or len(stack) >= MAX_XML_DEPTH:
            raise AnnotationError(f"{name} has more than {MAX_XML_ELEMENTS} elements or nests them deeper than "
                                  f"{MAX_XML_DEPTH}: not a VOC annotation")
        element = _Element(tag)
        (stack[-1].children if stack else root).append(element)
        stack.append(element)

    def end(tag: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack and len(stack[-1].text) < 4096:
            stack[-1].text += data

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise AnnotationError(f"{name} is not well-formed XML ({expat.ErrorString(exc.code)}, line {exc.lineno})") \
            from None
    return root[0]


def class_of(name: object, labels: Sequence[str], num_classes: int) -> int | None:
    """The class id a name stands for: a label (any case) or a number in range; None if neither."""
    if isinstance(name, bool):
        return None
    if isinstance(name, int):
        return name if 0 <= name < num_classes else None
    if not isinstance(name, str):
        return None
    text = name.strip()
    if text.isdigit() and len(text) < 10:
        return int(text) if int(text) < num_classes else None
    lowered = {label.lower(): n for n, label in enumerate(labels)}
    return lowered.get(text.lower())


def _number(text: str | None, where: str) -> float:
    try:
        value = float(text) if text is not None and len(text) < 40 else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or abs(value) > MAX_COORDINATE:
        raise AnnotationError(f"{where}: coordinate {short(text)} is not a number of pixels")
    return value


def voc_entries(path: Path, labels: Sequence[str], num_classes: int) -> list[dict]:
    """Entries from a VOC XML file or a folder of them (not recursive)."""
    if path.is_dir():
        try:
            files = sorted(e.path for e in os.scandir(path) if e.name.lower().endswith(".xml"))
        except OSError as exc:
            raise AnnotationError(f"cannot list {path}: {exc.strerror}") from None
        if not files:
            raise AnnotationError(f"{path} holds no VOC .xml file")
        if len(files) > MAX_VOC_FILES:
            raise AnnotationError(f"{path} holds {len(files)} XML files, more than {MAX_VOC_FILES}: split it")
    else:
        files = [str(path)]
    entries: list[dict] = []
    unknown: set[str] = set()
    for file in files:
        root = parse_xml(read_regular(file, "annotation file", AnnotationError, MAX_XML_BYTES), file)
        filename = root.value("filename")
        if root.tag != "annotation" or not filename:
            raise AnnotationError(f"{file} is not a VOC annotation (<annotation> with a <filename>)")
        boxes: dict[int, list[list[float]]] = {}
        for n, item in enumerate(c for c in root.children if c.tag == "object"):
            where = f"{file}: object #{n}"
            name, box = item.value("name"), item.find("bndbox")
            if not name or box is None:
                raise AnnotationError(f"{where} needs <name> and <bndbox>")
            target = class_of(name, labels, num_classes)
            if target is None:
                unknown.add(name)
                continue
            x0, y0, x1, y1 = (_number(box.value(k), where) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.setdefault(target, []).append([x0 - 1, y0 - 1, x1, y1])
        entries.extend({"file": filename, "target": t, "boxes": b} for t, b in sorted(boxes.items()))
    return _kept(entries, unknown, path)


def is_coco(raw: object) -> bool:
    return isinstance(raw, dict) and "annotations" in raw and "categories" in raw


def coco_entries(raw: dict, labels: Sequence[str], num_classes: int, where: str) -> list[dict]:
    """Entries from a parsed COCO JSON (instances_*.json); crowd regions are left out."""
    images, annotations, categories = raw.get("images"), raw.get("annotations"), raw.get("categories")
    if not all(isinstance(v, list) for v in (images, annotations, categories)):
        raise AnnotationError(f"{where}: COCO needs lists 'images', 'annotations' and 'categories'")
    files: dict[int, str] = {}
    for image in images:
        if not (isinstance(image, dict) and _is_id(image.get("id")) and isinstance(image.get("file_name"), str)):
            raise AnnotationError(f"{where}: COCO image {short(image)} needs an integer 'id' and a 'file_name'")
        files[image["id"]] = image["file_name"]
    classes: dict[int, int | None] = {}
    names: dict[int, str] = {}
    for category in categories:
        if not (isinstance(category, dict) and _is_id(category.get("id")) and isinstance(category.get("name"), str)):
            raise AnnotationError(f"{where}: COCO category {short(category)} needs an integer 'id' and a 'name'")
        classes[category["id"]] = class_of(category["name"], labels, num_classes)
        names[category["id"]] = category["name"]
    boxes: dict[tuple[str, int], list[list[float]]] = {}
    unknown: set[str] = set()
    for n, note in enumerate(annotations):
        at = f"{where}: annotation #{n}"
        if not isinstance(note, dict) or note.get("image_id") not in files or note.get("category_id") not in classes:
            raise AnnotationError(f"{at} needs an 'image_id' and a 'category_id' listed in the file")
        box = note.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and abs(v) <= MAX_COORDINATE for v in box)) or box[2] <= 0 or box[3] <= 0:
            raise AnnotationError(f"{at}: bbox {short(box)} is not [x, y, width, height] in pixels")
        if note.get("iscrowd") in (1, True):
            continue
        target = classes[note["category_id"]]
        if target is None:
            unknown.add(names[note["category_id"]])
            continue
        x, y, w, h = box
        boxes.setdefault((files[note["image_id"]], target), []).append([x, y, x + w, y + h])
    entries = [{"file": f, "target": t, "boxes": b} for (f, t), b in sorted(boxes.items())]
    return _kept(entries, unknown, Path(where))


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kept(entries: list[dict], unknown: set[str], path: Path) -> list[dict]:
    if not entries:
        names = ", ".join(sorted(unknown)[:5]) or "none"
        raise AnnotationError(f"{path}: no object of a class this model knows (classes found: {names}): the names "
                              "must be the model's labels or class ids")
    return entries
