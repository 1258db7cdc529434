"""VOC XML and COCO JSON boxes read into our annotations, on hand-written files, and
hostile ones refused with one line (billion laughs, external entities, huge numbers,
wrong types)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from onnx_sise.evaluation.annotations import Annotation, AnnotationError, load_annotations
from onnx_sise.evaluation.foreign_annotations import class_of, load_any_annotations

LABELS = ("tench", "goldfish", "tabby cat", "espresso")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name, (h, w) in (("a.jpg", (40, 60)), ("b.png", (30, 20))):
        cv2.imwrite(str(folder / name), np.full((h, w, 3), 128, np.uint8))
    return folder


def voc(filename: str, objects: list[tuple[str, tuple]], extra: str = "") -> str:
    parts = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                    f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b in objects)
    return f"{extra}<annotation><folder>VOC</folder><filename>{filename}</filename>{parts}</annotation>"


def test_voc_files_and_folders(tmp_path: Path, images: Path) -> None:
    folder = tmp_path / "Annotations"
    folder.mkdir()
    (folder / "a.xml").write_text(voc("a.jpg", [("Tabby Cat", (1, 1, 10, 20)), ("espresso", (5, 6, 60, 40)),
                                                ("tabby cat", (2, 3, 4, 5)), ("person", (1, 1, 2, 2))]))
    (folder / "b.xml").write_text(voc("b.png", [("1", (11, 1, 20, 30))]))
    found = load_any_annotations(folder, images, len(LABELS), True, LABELS)
    assert found == [  # VOC's 1-based inclusive corners: [xmin - 1, ymin - 1, xmax, ymax]
        Annotation(images / "a.jpg", 2, (40, 60), ((0, 0, 10, 20), (1, 2, 4, 5))),
        Annotation(images / "a.jpg", 3, (40, 60), ((4, 5, 60, 40),)),
        Annotation(images / "b.png", 1, (30, 20), ((10, 0, 20, 30),)),
    ]
    assert load_any_annotations(folder / "b.xml", images, len(LABELS), True, LABELS) == found[2:]


def test_coco_json(tmp_path: Path, images: Path) -> None:
    coco = {"images": [{"id": 7, "file_name": "a.jpg", "width": 60, "height": 40},
                       {"id": 8, "file_name": "b.png", "width": 20, "height": 30}],
            "categories": [{"id": 17, "name": "espresso"}, {"id": 1, "name": "person"}],
            "annotations": [{"image_id": 7, "category_id": 17, "bbox": [1.5, 2, 10, 20.25], "iscrowd": 0},
                            {"image_id": 7, "category_id": 17, "bbox": [0, 0, 60, 40], "iscrowd": 1},
                            {"image_id": 8, "category_id": 1, "bbox": [0, 0, 5, 5]},
                            {"image_id": 8, "category_id": 17, "bbox": [0, 0, 20, 30]}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    assert load_any_annotations(path, images, len(LABELS), True, LABELS) == [
        Annotation(images / "a.jpg", 3, (40, 60), ((2, 2, 12, 22),)),  # [x, y, x + w, y + h], rounded
        Annotation(images / "b.png", 3, (30, 20), ((0, 0, 20, 30),)),
    ]


def test_our_own_format_is_read_as_before(tmp_path: Path, images: Path) -> None:
    path = tmp_path / "ours.json"
    path.write_text(json.dumps({"images": [{"file": "a.jpg", "target": 3, "boxes": [[0, 0, 5, 5]]}]}))
    assert load_any_annotations(path, images, 4, True, LABELS) == load_annotations(path, images, 4, True)


def test_class_names() -> None:
    assert [class_of(n, LABELS, 4) for n in ("ESPRESSO", " goldfish ", "2", 3, "4", True, None, "99999999999")] == \
        [3, 1, 2, 3, None, None, None, None]


LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">'
          '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><annotation><filename>&lol3;</filename></annotation>')
EXTERNAL = ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            '<annotation><filename>&x;</filename></annotation>')


@pytest.mark.parametrize(("text", "message"), [
    (LAUGHS, "DOCTYPE"),
    (EXTERNAL, "DOCTYPE"),
    ("<annotation><filename>a.jpg</filename>", "not well-formed"),
    ("<a>" * 40 + "</a>" * 40, "deeper"),
    ("<annotation>" + "<x/>" * 30_000 + "</annotation>", "more than"),
    (voc("a.jpg", [("espresso", ("1e999", 1, 5, 5))]), "not a number"),
    (voc("a.jpg", [("espresso", ("99999999999999999999", 1, 5, 5))]), "not a number"),
    (voc("a.jpg", [("espresso", ("left", 1, 5, 5))]), "not a number"),
    (voc("a.jpg", [("espresso", (1, 1, 500, 5))]), "lies outside"),
    (voc("a.jpg", [("person", (1, 1, 5, 5))]), "no object of a class this model knows"),
    (voc("../a.jpg", [("espresso", (1, 1, 5, 5))]), "outside the images directory"),
    ("<annotation><object><name>espresso</name></object><filename>a.jpg</filename></annotation>", "needs <name>"),
    ("<other><filename>a.jpg</filename></other>", "not a VOC annotation"),
])
def test_hostile_voc_files(tmp_path: Path, images: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=message) as caught:
        load_any_annotations(path, images, len(LABELS), True, LABELS)
    assert "\n" not in str(caught.value)


GOOD = {"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "espresso"}],
        "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}]}


@pytest.mark.parametrize(("change", "message"), [
    ({"images": {"id": 1}}, "needs lists"),
    ({"images": [{"id": "1", "file_name": "a.jpg"}]}, "integer 'id'"),
    ({"images": [{"id": True, "file_name": "a.jpg"}]}, "integer 'id'"),
    ({"categories": [{"id": 1, "name": 5}]}, "integer 'id' and a 'name'"),
    ({"annotations": [{"image_id": 2, "category_id": 1, "bbox": [0, 0, 5, 5]}]}, "listed in the file"),
    ({"annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1e308, 5]}]}, "not \\[x, y, width"),
    ({"annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10 ** 30, 5]}]}, "not \\[x, y, width"),
    ({"annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, -3, 5]}]}, "not \\[x, y, width"),
    ({"annotations": [{"image_id": 1, "category_id": 1, "bbox": "0 0 5 5"}]}, "not \\[x, y, width"),
    ({"annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, True, 5]}]}, "not \\[x, y, width"),
    ({"annotations": [{"image_id": 1, "category_id": 1, "bbox": [50, 0, 20, 5]}]}, "lies outside"),
])
def test_hostile_coco_files(tmp_path: Path, images: Path, change: dict, message: str) -> None:
    path = tmp_path / "coco.json"
    path.write_text(json.dumps({**GOOD, **change}))
    with pytest.raises(AnnotationError, match=message) as caught:
        load_any_annotations(path, images, len(LABELS), True, LABELS)
    assert "\n" not in str(caught.value)


def test_a_huge_xml_file_is_refused_before_reading(tmp_path: Path, images: Path) -> None:
    path = tmp_path / "big.xml"
    path.write_bytes(b"<annotation>" + b" " * (2 << 20) + b"</annotation>")
    with pytest.raises(AnnotationError, match="bytes"):
        load_any_annotations(path, images, len(LABELS), True, LABELS)
