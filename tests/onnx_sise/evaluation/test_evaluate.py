"""`evaluate` end to end on real photos, and its refusals of bad annotation files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from onnx_sise import Explainer


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onnx_sise", *map(str, args)], capture_output=True, text=True,
                          timeout=900, cwd=Path(tempfile.gettempdir()))


@pytest.fixture
def images(photos: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(photos / "coffee.png", folder)
    shutil.copy(photos / "chelsea.png", folder)
    return folder


def _annotations(tmp_path: Path, entries: list) -> Path:
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"images": entries}))
    return path


def test_evaluate_writes_table_json_and_csv(lite0_path: Path, images: Path, tmp_path: Path) -> None:
    annotations = _annotations(tmp_path, [
        {"file": "coffee.png", "target": 967, "boxes": [[170, 15, 420, 305]]},
        {"file": "chelsea.png", "target": 285, "boxes": [[20, 0, 400, 300]]},
    ])
    out = tmp_path / "out"
    done = run_cli("evaluate", lite0_path, "--images", images, "--annotations", annotations, "--methods",
                   "gradcam,wgradcam,reciprocam", "--steps", "10", "--out", out)
    assert done.returncode == 0, done.stderr
    assert "| gradcam |" in done.stdout and "| wgradcam |" in done.stdout
    report = json.loads((out / "evaluation.json").read_text())
    assert set(report) == {"gradcam", "wgradcam", "reciprocam"}
    head_passes = Explainer(lite0_path).explain(images / "coffee.png", 967, "reciprocam").details["head_passes"]
    assert report["reciprocam"]["head_passes_per_image"] == head_passes > 0
    assert report["gradcam"]["head_passes_per_image"] == 0
    assert f"| 0 + {head_passes} head |" in done.stdout
    entry = report["gradcam"]
    assert len(entry["images"]) == 2 and entry["passes_per_image"] == 0
    assert 0 <= entry["metrics"]["ebpg"] <= 100 and 0 <= entry["metrics"]["deletion"] <= 1
    assert entry["metrics"]["pointing"] == 100.0
    assert (out / "evaluation.csv").read_text().splitlines()[0].startswith("method,ebpg,miou,bbox,pointing")


@pytest.mark.parametrize("entry,fragment", [
    ({"file": "missing.png", "target": 967, "boxes": [[0, 0, 10, 10]]}, "not found"),
    ({"file": "coffee.png", "target": 967, "boxes": [[500, 10, 700, 100]]}, "lies outside the 600x400 image"),
    ({"file": "coffee.png", "target": 1000, "boxes": [[0, 0, 10, 10]]}, "class 1000 is unknown"),
    ({"file": "coffee.png", "target": 967}, "has boxes or a mask, which the ground-truth metrics need"),
    ({"file": "coffee.png", "target": 967, "boxes": [[1, 2, 3]]}, "is not [x0, y0, x1, y1]"),
])
def test_bad_annotations_fail_with_one_line(lite0_path: Path, images: Path, tmp_path: Path, entry: dict,
                                            fragment: str) -> None:
    out = tmp_path / "out"
    done = run_cli("evaluate", lite0_path, "--images", images, "--annotations", _annotations(tmp_path, [entry]),
                   "--methods", "gradcam", "--out", out)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in done.stderr
    assert not out.exists()


def test_annotation_file_that_is_not_json(lite0_path: Path, images: Path, tmp_path: Path) -> None:
    bad = tmp_path / "a.json"
    bad.write_text("{not json")
    done = run_cli("evaluate", lite0_path, "--images", images, "--annotations", bad)
    assert done.returncode == 2 and "is not an annotation file" in done.stderr and "Traceback" not in done.stderr


def test_unknown_method_is_a_usage_error(lite0_path: Path, images: Path, tmp_path: Path) -> None:
    done = run_cli("evaluate", lite0_path, "--images", images, "--annotations", tmp_path / "x.json",
                   "--methods", "sise,lime")
    assert done.returncode == 2 and "unknown lime" in done.stderr


def test_annotation_files_that_are_pipes_directories_or_not_utf8_are_refused(tmp_path: Path) -> None:
    import os

    from onnx_sise.evaluation.annotations import AnnotationError, load_annotations

    pipe = tmp_path / "annotations.json"
    os.mkfifo(pipe)  # no writer: reading it would block forever
    with pytest.raises(AnnotationError, match="is not a regular file"):
        load_annotations(pipe, tmp_path, 1000, need_truth=False)
    with pytest.raises(AnnotationError, match="is a directory, not an annotation file"):
        load_annotations(tmp_path, tmp_path, 1000, need_truth=False)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"images": ["caf\xe9"]}')
    with pytest.raises(AnnotationError, match="is not an annotation file"):
        load_annotations(latin, tmp_path, 1000, need_truth=False)


HOSTILE_ANNOTATIONS = {  # file text -> the refusal's fragment; each once raised another exception
    "[1, 2]": "lists no images",
    '"images"': "lists no images",
    '{"images": 5}': "lists no images",
    "[" * 100_000 + "]" * 100_000: "nested too deeply",
    '{"images": [{"file": "x.png", "target": ' + "9" * 5000 + "}]}": "is not an annotation file",
    '{"images": [{"file": 5, "target": 967}]}': "image 5 is not a file name",
    '{"images": [{"file": null, "target": 967}]}': "image None is not a file name",
    '{"images": [{"file": ["coffee.png"], "target": 967}]}': "is not a file name",
    '{"images": [{"file": "../images/../../etc/passwd", "target": 967}]}': "lies outside the images directory",
    '{"images": [{"file": "/etc/passwd", "target": 967}]}': "lies outside the images directory",
    '{"images": [{"file": "coffee.png", "target": 967, "boxes": 5}]}': "boxes must be a list",
    '{"images": [{"file": "coffee.png", "target": 967, "boxes": [[NaN, 0, 10, 10]]}]}': "is not [x0, y0, x1, y1]",
    '{"images": [{"file": "coffee.png", "target": 967, "boxes": [[0, 0, Infinity, 10]]}]}': "is not [x0, y0, x1, y1]",
    '{"images": [{"file": "coffee.png", "target": 967, "boxes": [[true, 0, 10, 10]]}]}': "is not [x0, y0, x1, y1]",
    '{"images": [{"file": "coffee.png", "target": 967, "mask": 7}]}': "mask 7 is not a file name",
    '{"images": [{"file": "coffee.png", "target": 967, "mask": "../../m.png"}]}': "lies outside the images",
    '{"images": [{"file": "coffee.png", "target": 967, "mask": "chelsea.png"}]}': "mask is 451x300, the image 600x400",
    '{"images": [{"file": "coffee.png", "target": 967.0}]}': "class 967.0 is unknown",
}


@pytest.mark.parametrize("text", list(HOSTILE_ANNOTATIONS), ids=range(len(HOSTILE_ANNOTATIONS)))
def test_bad_input_annotation_files_end_in_one_annotation_error(images: Path, tmp_path: Path, text: str) -> None:
    from onnx_sise.evaluation.annotations import AnnotationError, load_annotations

    path = tmp_path / "annotations.json"
    path.write_text(text)
    with pytest.raises(AnnotationError) as raised:
        load_annotations(path, images, 1000, need_truth=True)
    assert HOSTILE_ANNOTATIONS[text] in str(raised.value) and "\n" not in str(raised.value), raised.value


def test_bad_input_annotation_file_through_the_cli_and_steps_bounded(lite0_path: Path, images: Path,
                                                                      tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    done = run_cli("evaluate", lite0_path, "--images", images, "--annotations", deep, "--out", tmp_path / "out")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "nested too deeply" in lines[0], done.stderr
    good = _annotations(tmp_path, [{"file": "coffee.png", "target": 967, "boxes": [[170, 15, 420, 305]]}])
    done = run_cli("evaluate", lite0_path, "--images", images, "--annotations", good, "--steps", "1000000000",
                   "--out", tmp_path / "out")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "steps must be an integer in [1, 50176]" in lines[0], done.stderr
    assert not (tmp_path / "out" / "evaluation.json").exists()


def test_bad_input_an_image_changed_after_the_check_and_annotation_bounds(lite0_path: Path, images: Path,
                                                                          photos: Path, tmp_path: Path) -> None:
    from onnx_sise import Explainer
    from onnx_sise.evaluation.annotations import MAX_BOXES, AnnotationError, load_annotations
    from onnx_sise.evaluation.evaluate import evaluate

    path = _annotations(tmp_path, [{"file": "coffee.png", "target": 967, "boxes": [[10, 10, 300, 300]]}])
    annotations = load_annotations(path, images, 1000, need_truth=True)
    shutil.copy(photos / "astronaut.png", images / "coffee.png")  # 512 x 512 now, 600 x 400 when checked
    with pytest.raises(AnnotationError, match="changed since the annotations were checked"):
        evaluate(Explainer(lite0_path), annotations, ["gradcam"], ["ebpg"])
    many = _annotations(tmp_path, [{"file": "chelsea.png", "target": 285, "boxes": [[0, 0, 10, 10]] * (MAX_BOXES + 1)}])
    with pytest.raises(AnnotationError, match=f"has {MAX_BOXES + 1} boxes, more than {MAX_BOXES}"):
        load_annotations(many, images, 1000, need_truth=True)
    (images / "pipe.png").parent.mkdir(exist_ok=True)
    import os

    os.mkfifo(images / "pipe.png")
    piped = _annotations(tmp_path, [{"file": "pipe.png", "target": 285}])
    with pytest.raises(AnnotationError, match="is not a regular file"):
        load_annotations(piped, images, 1000, need_truth=False)


def test_bad_input_evaluate_arguments_of_the_wrong_type(lite0_path: Path, images: Path, tmp_path: Path) -> None:
    from onnx_sise import Explainer, OptionError
    from onnx_sise.evaluation.annotations import load_annotations
    from onnx_sise.evaluation.evaluate import evaluate

    explainer = Explainer(lite0_path)
    annotations = load_annotations(_annotations(tmp_path, [{"file": "coffee.png", "target": 967,
                                                            "boxes": [[10, 10, 300, 300]]}]), images, 1000, True)
    for arguments, fragment in [((None, annotations, ["gradcam"], ["ebpg"]), "explainer must be"),
                                ((explainer, [1], ["gradcam"], ["ebpg"]), "annotations must be"),
                                ((explainer, annotations, None, ["ebpg"]), "methods must be"),
                                ((explainer, annotations, ["gradcam"], "ebpg"), "metrics must be"),
                                ((explainer, annotations, ["gradcam"], ["nope"]), "metrics must be")]:
        with pytest.raises(OptionError, match=fragment):
            evaluate(*arguments)  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="on_image must be callable"):
        evaluate(explainer, annotations, ["gradcam"], ["ebpg"], on_image=None)  # type: ignore[arg-type]


def test_bad_input_a_run_that_fails_leaves_no_empty_output_folder(lite0_path: Path, images: Path, photos: Path,
                                                                  tmp_path: Path) -> None:
    annotations = _annotations(tmp_path, [{"file": "coffee.png", "target": 967, "boxes": [[170, 15, 420, 305]]}])
    done = run_cli("evaluate", lite0_path, "--images", images, "--annotations", annotations, "--methods", "gradcam",
                   "--steps", "1000000000", "--out", tmp_path / "new" / "out")  # refused inside the run
    assert done.returncode == 2 and not (tmp_path / "new").exists(), done.stderr
    done = run_cli("explain", lite0_path, photos / "coffee.png", "--method", "sise", "--max-seconds", "1e-9",
                   "--out", tmp_path / "new" / "out")
    assert done.returncode == 2 and "stopped at max_seconds" in done.stderr and not (tmp_path / "new").exists()
