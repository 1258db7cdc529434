"""The command line end to end, in subprocesses, with torch made unimportable."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "model" / "preparation"))

# Runs the CLI with torch and the exporter blocked: `import torch` raises ImportError.
NO_TORCH = ("import sys; sys.modules['torch'] = None; sys.modules['onnx_sise_export'] = None; "
            "sys.modules['onnx2torch'] = None; sys.modules['torchvision'] = None; "
            "from onnx_sise.cli import main; code = main(sys.argv[1:]); "
            "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]; sys.exit(code)")
# Coffee cup in skimage's coffee.png (400 x 600): rim and body, drawn by hand.
CUP_BOX = (20, 145, 250, 430)  # top, left, bottom, right


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    # cwd outside the repository: the installed package is under test, not the source tree.
    return subprocess.run([sys.executable, "-c", NO_TORCH, *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=Path(tempfile.gettempdir()))


def test_explain_without_torch_writes_overlay_and_map_on_the_cup(lite0_path: Path, photos: Path, tmp_path: Path) -> None:
    done = run_cli("explain", lite0_path, photos / "coffee.png", "--out", tmp_path, "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["target"] == 967 and summary["label"] == "espresso" and summary["score"] > 0.85
    saliency = np.load(tmp_path / "coffee.sise.npy")
    assert saliency.dtype == np.float32 and saliency.shape == (400, 600)
    assert np.isfinite(saliency).all() and saliency.min() >= 0.0 and saliency.max() <= 1.0
    top, left, bottom, right = CUP_BOX
    energy_on_cup = saliency[top:bottom, left:right].sum() / saliency.sum()
    assert energy_on_cup > 0.9
    overlay = cv2.imread(str(tmp_path / "coffee.sise.png"))
    assert overlay is not None and overlay.shape == (400, 600, 3)
    duplicates = sum(summary["duplicate_masks"].values())
    assert sum(summary["masks_used"].values()) - duplicates == summary["forward_passes"] > 0


def test_plain_summary_line_and_default_output_beside_the_image(lite0_path: Path, photos: Path, tmp_path: Path) -> None:
    photo = tmp_path / "cat.png"
    photo.write_bytes((photos / "chelsea.png").read_bytes())
    done = run_cli("explain", lite0_path, photo, "--target", "281", "--batch-size", "64")
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.count("\n") == 0 and "class 281 (tabby cat)" in line and "block4=" in line
    assert (tmp_path / "cat.sise.png").is_file() and (tmp_path / "cat.sise.npy").is_file()


def _assert_refused(done: subprocess.CompletedProcess, fragment: str, out_dir: Path) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onnx_sise: error:"), done.stderr
    assert fragment in lines[0]
    assert "Traceback" not in done.stderr
    assert not list(out_dir.iterdir()), "no output file may be left behind"


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


def test_missing_image(lite0_path: Path, out_dir: Path) -> None:
    _assert_refused(run_cli("explain", lite0_path, out_dir.parent / "nope.png", "--out", out_dir), "image not found", out_dir)


def test_unreadable_image(lite0_path: Path, out_dir: Path) -> None:
    broken = out_dir.parent / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    _assert_refused(run_cli("explain", lite0_path, broken, "--out", out_dir), "cannot decode", out_dir)


def test_class_id_out_of_range(lite0_path: Path, photos: Path, out_dir: Path) -> None:
    done = run_cli("explain", lite0_path, photos / "coffee.png", "--target", "1000", "--out", out_dir)
    _assert_refused(done, "class id 1000 is out of range", out_dir)


def test_file_that_is_not_onnx(photos: Path, out_dir: Path) -> None:
    fake = out_dir.parent / "model.onnx"
    fake.write_text("this is not a model\n")
    _assert_refused(run_cli("explain", fake, photos / "coffee.png", "--out", out_dir), "not a loadable ONNX model", out_dir)


def test_missing_model(photos: Path, out_dir: Path) -> None:
    done = run_cli("explain", out_dir.parent / "none.sise.onnx", photos / "coffee.png", "--out", out_dir)
    _assert_refused(done, "model file not found", out_dir)


def test_plain_onnx_without_metadata(tmp_path: Path, photos: Path, out_dir: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "plain.onnx")
    done = run_cli("explain", tmp_path / "plain.onnx", photos / "coffee.png", "--out", out_dir,
                   "--cache-dir", tmp_path / "cache")
    # the preparation runs (torch is not needed) and refuses a model that is no classifier
    _assert_refused(done, "the model's first output has shape [1, 3, 8, 8]: expected class scores", out_dir)


def test_plain_onnx_is_prepared_and_explained_without_torch(tmp_path: Path, photos: Path, out_dir: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent / "model" / "preparation"))
    from handwritten_models import build

    model = build(tmp_path / "plain.onnx", layout="NHWC", softmax=True, opset=13, head="dynamic_reshape")
    prepared = tmp_path / "plain.sise.onnx"
    done = run_cli("export", model, "-o", prepared, "--check", "float64")
    assert done.returncode == 0, done.stderr
    assert "float64_directional" in done.stdout and prepared.is_file()
    for method in ("sise", "ada-sise", "gradcam"):
        done = run_cli("explain", model, photos / "coffee.png", "--method", method, "--out", out_dir,
                       "--cache-dir", tmp_path / "cache")
        assert done.returncode == 0, done.stderr
        saliency = np.load(out_dir / f"coffee.{method}.npy")
        assert saliency.shape == (400, 600) and np.isfinite(saliency).all() and saliency.max() > saliency.min()


def test_unwritable_output_directory(lite0_path: Path, photos: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = run_cli("explain", lite0_path, photos / "coffee.png", "--out", blocker / "sub")
    assert done.returncode == 2 and "cannot create output directory" in done.stderr and "Traceback" not in done.stderr


def test_usage_errors_exit_2() -> None:
    done = run_cli("explain")
    assert done.returncode == 2 and "--help" in done.stderr


def test_two_targets_share_passes_from_the_shell(lite0_path: Path, photos: Path, tmp_path: Path) -> None:
    done = run_cli("explain", lite0_path, photos / "coffee.png", "--target", "967,968", "--method", "ada-sise",
                   "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "saved by sharing" in done.stdout.splitlines()[-1]
    assert {p.name for p in tmp_path.iterdir()} == {"coffee.ada-sise.967.png", "coffee.ada-sise.967.npy",
                                                    "coffee.ada-sise.968.png", "coffee.ada-sise.968.npy"}


def test_target_and_top_k_together_are_refused(lite0_path: Path, photos: Path, out_dir: Path) -> None:
    done = run_cli("explain", lite0_path, photos / "coffee.png", "--target", "967", "--top-k", "2", "--out", out_dir)
    _assert_refused(done, "not both", out_dir)


def test_methods_and_metrics_come_from_their_registries() -> None:
    from onnx_sise.cli import build_parser
    from onnx_sise.evaluation import METRICS
    from onnx_sise.methods import METHODS

    explain = build_parser().parse_args(["explain", "m.onnx", "x.png"])
    evaluate = build_parser().parse_args(["evaluate", "m.onnx", "--images", "i", "--annotations", "a"])
    assert explain.method == "sise" and evaluate.metrics == list(METRICS)
    for name in METHODS:
        assert build_parser().parse_args(["explain", "m.onnx", "x.png", "--method", name]).method == name
    everything = ["evaluate", "m.onnx", "--images", "i", "--annotations", "a"]
    parsed = build_parser().parse_args([*everything, "--methods", ",".join(METHODS), "--metrics", ",".join(METRICS)])
    assert parsed.methods == list(METHODS) and parsed.metrics == list(METRICS)


def test_the_zoo_is_what_the_export_package_registers() -> None:
    """`export --zoo` takes the models the export package's entry points name, which are
    its ZOO; the runtime finds them without importing that package."""
    from onnx_sise.cli import build_parser, zoo_names
    from onnx_sise_export import ZOO

    assert zoo_names() == sorted(ZOO)
    for name in ZOO:
        assert build_parser().parse_args(["export", "--zoo", name, "-o", "x.sise.onnx"]).zoo == name


def test_refine_ucag_from_the_shell_without_torch(lite0_path: Path, photos: Path, tmp_path: Path, out_dir: Path) -> None:
    done = run_cli("explain", lite0_path, photos / "coffee.png", "--method", "gradcam", "--refine", "ucag",
                   "--ucag-n", "3", "--out", tmp_path / "first", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["method"] == "ucag-gradcam" and summary["patches"] == 9
    assert {p.name for p in (tmp_path / "first").iterdir()} == {"coffee.ucag-gradcam.png", "coffee.ucag-gradcam.npy"}
    twice = run_cli("explain", lite0_path, photos / "coffee.png", "--method", "ucag-gradcam", "--refine", "ucag",
                    "--out", out_dir)
    _assert_refused(twice, "already refined", out_dir)
    bad = run_cli("explain", lite0_path, photos / "coffee.png", "--method", "sigcam", "--sigcam-lambda", "2",
                  "--out", out_dir)
    _assert_refused(bad, "sigcam_lambda", out_dir)


def run_cli_with_export(*args: str | Path) -> subprocess.CompletedProcess:
    """The CLI with torch and the exporter importable (export and variant need them)."""
    return subprocess.run([sys.executable, "-m", "onnx_sise", *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=Path(tempfile.gettempdir()))


def test_compare_writes_one_picture_and_the_maps_of_every_method(lite0_path: Path, photos: Path, tmp_path: Path,
                                                                   out_dir: Path) -> None:
    from onnx_sise import Explainer

    result = tmp_path / "compared"
    done = run_cli("explain", lite0_path, photos / "coffee.png", "--compare", "gradcam,wgradcam", "--out", result)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in result.iterdir()) == ["coffee.compare.npy", "coffee.compare.png"]
    maps = np.load(result / "coffee.compare.npy")
    explainer = Explainer(lite0_path)
    for saliency, method in zip(maps, ["gradcam", "wgradcam"]):
        np.testing.assert_array_equal(saliency, explainer.explain(photos / "coffee.png", method=method).saliency)
    grid = cv2.imread(str(result / "coffee.compare.png"))
    assert grid.shape == (28 + 213, 3 * 320 + 2 * 6, 3)  # photo, gradcam, wgradcam: 600 x 400 tiles 320 wide
    _assert_refused(run_cli("explain", lite0_path, photos / "coffee.png", "--compare", "gradcam", "--top-k", "2",
                            "--out", out_dir), "--compare explains one class per image", out_dir)
    _assert_refused(run_cli("explain", lite0_path, photos / "coffee.png", "--compare", "gradcam,lime",
                            "--out", out_dir), "unknown lime", out_dir)


def test_legend_frames_the_overlay_with_a_colour_bar_and_a_caption(lite0_path: Path, photos: Path,
                                                                   tmp_path: Path) -> None:
    from onnx_sise.images.legend import BAR_MARGIN, BAR_WIDTH, CAPTION_HEIGHT
    from onnx_sise.images.overlay import overlay

    plain, framed = tmp_path / "plain", tmp_path / "framed"
    for out, extra in ((plain, []), (framed, ["--legend"])):
        done = run_cli("explain", lite0_path, photos / "coffee.png", "--method", "gradcam", "--out", out, *extra)
        assert done.returncode == 0, done.stderr
    picture = cv2.imread(str(framed / "coffee.gradcam.png"))[..., ::-1]
    assert picture.shape == (CAPTION_HEIGHT + 400, 600 + BAR_WIDTH + BAR_MARGIN, 3)
    saliency = np.load(framed / "coffee.gradcam.npy")
    np.testing.assert_array_equal(saliency, np.load(plain / "coffee.gradcam.npy"))
    rgb = cv2.imread(str(photos / "coffee.png"))[..., ::-1]
    np.testing.assert_array_equal(picture[CAPTION_HEIGHT:, :600], overlay(rgb, saliency))
    compared = tmp_path / "compared"
    done = run_cli("explain", lite0_path, photos / "coffee.png", "--compare", "gradcam", "--legend", "--out", compared)
    assert done.returncode == 0, done.stderr
    assert cv2.imread(str(compared / "coffee.compare.png")).shape == (28 + 213, 2 * 320 + 6 + BAR_WIDTH + BAR_MARGIN, 3)


def test_export_zoo_from_the_shell_finds_the_export_package_by_entry_point(photos: Path, tmp_path: Path) -> None:
    """The runtime never imports the export package by name: `export --zoo` loads its
    entry point; without torch that fails in one line, with it the model explains."""
    from onnx_sise import Explainer

    model = tmp_path / "lite0.sise.onnx"
    refused = run_cli("export", "--zoo", "efficientnet-lite0", "-o", model)
    assert refused.returncode == 2 and "export --zoo needs torch" in refused.stderr, refused.stderr
    assert not model.exists()
    done = run_cli_with_export("export", "--zoo", "efficientnet-lite0", "-o", model)
    assert done.returncode == 0, done.stderr
    assert f"wrote {model}: efficientnet-lite0, 5 taps" in done.stdout
    assert Explainer(model).explain(photos / "coffee.png", method="gradcam").target == 967


def test_int8_variant_from_the_shell_explains_the_cup(lite0_path: Path, photos: Path, tmp_path: Path,
                                                      out_dir: Path) -> None:
    variant = tmp_path / "lite0.int8.onnx"
    refused = run_cli_with_export("variant", lite0_path, "--precision", "int8", "-o", variant)
    _assert_refused(refused, "int8 needs --calibrate", out_dir)
    assert not variant.exists()
    refused = run_cli_with_export("variant", lite0_path, "--precision", "fp16", "--float-layers", "3", "-o", variant)
    _assert_refused(refused, "--float-layers is a whole number", out_dir)
    assert not variant.exists()
    done = run_cli_with_export("variant", lite0_path, "--precision", "int8", "-o", variant,
                               "--calibrate", photos / "camera.png", photos / "motorcycle_right.png")
    assert done.returncode == 0, done.stderr
    assert variant.is_file() and "int8 masked-pass graph" in done.stdout
    done = run_cli("explain", lite0_path, photos / "coffee.png", "--scoring-model", variant, "--out", tmp_path,
                   "--json", "--target", "967")
    assert done.returncode == 0, done.stderr
    saliency = np.load(tmp_path / "coffee.sise.npy")
    top, left, bottom, right = CUP_BOX
    assert saliency[top:bottom, left:right].sum() / saliency.sum() > 0.85
    _assert_refused(run_cli("explain", lite0_path, photos / "coffee.png", "--scoring-model", lite0_path,
                            "--out", out_dir), "is not a scoring variant", out_dir)


# --- outputs (issue 13): collisions, inputs as outputs, long names, stdout, terminal ---


def _refused_before_any_work(done: subprocess.CompletedProcess, fragment: str, folder: Path,
                             before: dict[Path, bytes]) -> None:
    """Exit 2, one stderr line holding `fragment`, every file under `folder` as it was."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("onnx_sise: error:"), done.stderr
    assert fragment in lines[0], lines[0]
    assert _snapshot(folder) == before


def _snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _photo(folder: Path, name: str, photos: Path, source: str = "coffee.png") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((photos / source).read_bytes())
    return path


@pytest.mark.parametrize("layout", ["two_folders_one_out", "png_and_jpg_beside", "class_twice"])
def test_bad_input_outputs_that_collide_are_refused(layout: str, lite0_path: Path, photos: Path,
                                                    tmp_path: Path) -> None:
    first = _photo(tmp_path, "a/x.png", photos)
    if layout == "two_folders_one_out":
        second = _photo(tmp_path, "b/x.png", photos, "chelsea.png")
        args, fragment = [first, second, "--out", tmp_path / "a"], f"{first} and {second} would both be written"
    elif layout == "png_and_jpg_beside":
        second = tmp_path / "a" / "x.jpg"
        cv2.imwrite(str(second), cv2.imread(str(photos / "chelsea.png")))
        args, fragment = [first, second], f"{first} and {second} would both be written"
    else:
        args, fragment = [first, "--target", "281,281", "--out", tmp_path / "a"], "x.gradcam.281.png twice"
    before = _snapshot(tmp_path / "a")
    _refused_before_any_work(run_cli("explain", lite0_path, *args, "--method", "gradcam"), fragment, tmp_path / "a",
                             before)


@pytest.mark.parametrize("layout", ["second_input", "hard_link_in_out", "top_k_name"])
def test_bad_input_output_that_is_an_input_is_refused(layout: str, lite0_path: Path, photos: Path,
                                                      tmp_path: Path) -> None:
    cat = _photo(tmp_path, "in/cat.png", photos, "chelsea.png")
    out = tmp_path / "in"
    if layout == "second_input":
        victim = _photo(tmp_path, "in/cat.gradcam.png", photos)
        args = [cat, victim]
    elif layout == "hard_link_in_out":
        out = tmp_path / "out"
        out.mkdir()
        victim = out / "cat.gradcam.png"
        victim.hardlink_to(cat)
        args = [cat, "--out", out]
    else:
        victim = _photo(tmp_path, "in/cat.gradcam.281.png", photos)
        args = [cat, victim, "--top-k", "2"]
    before = _snapshot(tmp_path)
    done = run_cli("explain", lite0_path, *args, "--method", "gradcam")
    _refused_before_any_work(done, f"the output {victim} is an input of this run", tmp_path, before)


def test_bad_input_output_names_near_and_past_the_file_system_limit(lite0_path: Path, photos: Path,
                                                                   tmp_path: Path) -> None:
    # `<stem>.gradcam.png` of 255 bytes is written (its temporary name is short) ...
    longest = _photo(tmp_path, "n" * 243 + ".png", photos)
    done = run_cli("explain", lite0_path, longest, "--method", "gradcam", "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert sorted(len(p.name) for p in (tmp_path / "out").iterdir()) == [255, 255]
    # ... one byte more is refused before any work, in one line
    too_long = _photo(tmp_path, "n" * 244 + ".png", photos)
    before = _snapshot(tmp_path)
    done = run_cli("explain", lite0_path, too_long, "--method", "gradcam", "--out", tmp_path / "out")
    _refused_before_any_work(done, "is 256 bytes, more than the 255 a file system accepts", tmp_path, before)


def test_bad_input_parser_errors_are_one_line() -> None:
    for args in (["explain"], ["explain", "m.onnx", "x.png", "--top-k", "two"], ["frobnicate"], []):
        done = run_cli(*args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert lines[0].startswith("onnx_sise: error: ") and "--help" in lines[0] and done.stdout == ""


@pytest.fixture(scope="module")
def hostile_labels_model(lite0_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lite0 whose label of class 967 moves the cursor, clears the screen and fakes a line."""
    import onnx

    from onnx_sise.model.info import METADATA_KEY

    model = onnx.load(str(lite0_path))
    prop = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    metadata = json.loads(prop.value)
    metadata["labels"][967] = "espresso\x1b[2J\x1b[H\nonnx_sise: all good\r\u202egnp.\x07"
    prop.value = json.dumps(metadata)
    path = tmp_path_factory.mktemp("hostile") / "labels.sise.onnx"
    onnx.save(model, str(path))
    return path


def test_bad_input_labels_and_file_names_are_printed_escaped(hostile_labels_model: Path, photos: Path,
                                                           tmp_path: Path) -> None:
    photo = _photo(tmp_path, "cup\x1b[31m\nred.png", photos)
    done = run_cli("explain", hostile_labels_model, photo, "--method", "gradcam", "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    line = done.stdout.rstrip("\n")
    assert "\n" not in line and all(c.isprintable() for c in line), repr(done.stdout)
    assert "(espresso\\x1b[2J\\x1b[H\\x0aonnx_sise: all good\\x0d\\u202egnp.\\x07)" in line
    assert line.startswith(str(tmp_path / "cup\\x1b[31m\\x0ared.png") + ": class 967")
    as_json = run_cli("explain", hostile_labels_model, photo, "--method", "gradcam", "--out", tmp_path / "out",
                      "--json")
    assert as_json.returncode == 0 and as_json.stdout.count("\n") == 1 and as_json.stdout.isascii()
    summary = json.loads(as_json.stdout)
    assert summary["label"].startswith("espresso\x1b[2J") and summary["image"] == str(photo)
    missing = run_cli("explain", hostile_labels_model, tmp_path / "gone\n\x1b[2J.png")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "\x1b" not in missing.stderr
    assert "gone\\x0a\\x1b[2J.png" in missing.stderr


def _explain_with_stdout(lite0_path: Path, images: list[Path], out: Path, redirect: str) -> subprocess.CompletedProcess:
    """The CLI through bash with stdout closed (`>&-`), full (`>/dev/full`) or read one
    byte of (`| head -c1`); the CLI's exit code comes back as bash's."""
    command = " ".join([sys.executable, "-m", "onnx_sise", "explain", str(lite0_path), *map(str, images),
                        "--method", "gradcam", "--out", str(out)])
    shell = {"closed": f"{command} >&-", "full": f"{command} >/dev/full",
             "broken_pipe": f"set -o pipefail; {command} | head -c1 >/dev/null"}[redirect]
    return subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=600,
                          cwd=Path(tempfile.gettempdir()))


@pytest.mark.parametrize(("redirect", "code"), [("closed", 2), ("full", 2), ("broken_pipe", 141)])
def test_fault_stdout_closed_full_or_broken_is_one_line(redirect: str, code: int, lite0_path: Path, photos: Path,
                                                         tmp_path: Path) -> None:
    images = [_photo(tmp_path, "in/cup.png", photos), _photo(tmp_path, "in/cat.png", photos, "chelsea.png")]
    out = tmp_path / "out"
    done = _explain_with_stdout(lite0_path, images, out, redirect)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code and len(lines) == 1 and lines[0].startswith("onnx_sise: error:"), done.stderr
    assert "stdout" in lines[0]
    written = sorted(p.name for p in out.iterdir()) if out.exists() else []
    if redirect == "closed":
        assert written == []  # refused before any work
    else:  # the run stopped at a line it could not print: every pair written before is whole
        assert {"cup.gradcam.npy", "cup.gradcam.png"} <= set(written) and not [n for n in written if n[0] == "."]
        for stem in {name.split(".")[0] for name in written}:
            saliency = np.load(out / f"{stem}.gradcam.npy")
            assert cv2.imread(str(out / f"{stem}.gradcam.png")).shape == (*saliency.shape, 3)


def test_bad_input_export_and_evaluate_refuse_to_write_over_their_input(lite0_path: Path, photos: Path,
                                                                        tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent / "model" / "preparation"))
    from handwritten_models import build

    model = build(tmp_path / "plain.onnx", layout="NCHW")
    before = _snapshot(tmp_path)
    done = run_cli("export", model, "-o", tmp_path / "." / "plain.onnx", "--check", "float32")
    _refused_before_any_work(done, "is an input of this run", tmp_path, before)
    out = tmp_path / "report"
    _photo(out, "coffee.png", photos)
    annotations = out / "evaluation.json"
    annotations.write_text(json.dumps({"images": [{"file": "coffee.png", "target": 967, "boxes": [[0, 0, 9, 9]]}]}))
    before = _snapshot(tmp_path)
    done = run_cli("evaluate", lite0_path, "--images", out, "--annotations", annotations, "--methods", "gradcam",
                   "--metrics", "ebpg", "--out", out)
    _refused_before_any_work(done, f"the output {annotations} is an input of this run", tmp_path, before)


# --- issue 13, second campaign: weights, annotated images, long paths, export options ---


def test_bad_input_outputs_never_replace_a_models_weights_or_an_annotated_image(lite0_path: Path, photos: Path,
                                                                                 tmp_path: Path) -> None:
    import onnx
    from handwritten_models import build

    model = onnx.load(str(build(tmp_path / "built.onnx", seed=0)))
    onnx.save(model, str(tmp_path / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="img.gradcam.npy", size_threshold=0)
    (tmp_path / "built.onnx").unlink()
    photo = _photo(tmp_path, "img.png", photos)
    before = _snapshot(tmp_path)
    done = run_cli("explain", tmp_path / "m.onnx", photo, "--method", "gradcam", "--cache-dir", tmp_path / "cache")
    _refused_before_any_work(done, "is an input of this run", tmp_path, before)
    done = run_cli("export", tmp_path / "m.onnx", "-o", tmp_path / "img.gradcam.npy")
    _refused_before_any_work(done, "is an input of this run", tmp_path, before)
    images = tmp_path / "images"
    _photo(images, "evaluation.json", photos)
    annotations = tmp_path / "annotations.json"
    annotations.write_text(json.dumps({"images": [{"file": "evaluation.json", "target": 967,
                                                   "boxes": [[170, 15, 420, 305]]}]}))
    before = _snapshot(tmp_path)
    done = run_cli("evaluate", lite0_path, "--images", images, "--annotations", annotations, "--methods", "gradcam",
                   "--out", images)
    _refused_before_any_work(done, "is an input of this run", tmp_path, before)


def test_bad_input_paths_longer_than_the_system_allows_are_one_line(lite0_path: Path, photos: Path,
                                                                    tmp_path: Path) -> None:
    too_long = tmp_path / ("d" * 300)  # one name past NAME_MAX: ENAMETOOLONG wherever it is used
    from handwritten_models import build

    plain = build(tmp_path / "plain.onnx", seed=0)
    runs = [("explain", lite0_path, too_long / "x.png", "--method", "gradcam"),
            ("explain", plain, photos / "coffee.png", "--cache-dir", too_long, "--out", tmp_path / "out"),
            ("evaluate", lite0_path, "--images", too_long, "--annotations", too_long / "a.json"),
            ("variant", lite0_path, "--precision", "int8", "--calibrate", too_long / "c.png", "-o", tmp_path / "v.onnx")]
    for args in runs:
        done = run_cli(*args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("onnx_sise: error:"), done.stderr


@pytest.mark.parametrize("flags,fragment", [
    (("--input-size", "64,64"), "has the fixed size 32x32: --input-size 64,64 does not match it"),
    (("--std", "0,0,0"), "scale and std at least 1e-06 in size"),
    (("--std", "1e-320,1,1"), "scale and std at least 1e-06 in size"),
    (("--scale", "inf"), "every value must be finite"),
    (("--mean", "1e308,0,0"), "within +-1e+06"),
])
def test_bad_input_export_options_against_the_model(flags: tuple[str, ...], fragment: str,
                                                    tmp_path: Path) -> None:
    from handwritten_models import SIZE, build

    plain = build(tmp_path / "plain.onnx", seed=0)
    done = run_cli("export", plain, "-o", tmp_path / "plain.sise.onnx", *flags)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("onnx_sise: error:"), done.stderr
    assert fragment.replace("32x32", f"{SIZE}x{SIZE}") in lines[0], lines[0]
    assert not (tmp_path / "plain.sise.onnx").exists()


def test_every_method_option_has_one_flag_from_its_domain() -> None:
    """Each option of every registered method is reachable from the command line, with the
    API's default and checks: a value inside its domain parses to itself and gives every
    method that reads it the same option records as the API."""
    from dataclasses import fields

    from onnx_sise.cli import build_parser, method_options
    from onnx_sise.methods import METHODS, checked, option_fields
    from onnx_sise.methods.options import domain_of

    declared = {f.name: f.default for m in METHODS.values() for record in m.options for f in fields(record)}
    inside = {"int": "3", "real": "0.25"}
    for command in (["explain", "m.onnx", "x.png"], ["evaluate", "m.onnx", "--images", "i", "--annotations", "a"],
                    ["batch", "m.onnx", "photos/", "--out", "o"]):
        defaults = method_options(build_parser().parse_args(command))
        assert defaults == declared == {name: f.default for name, f in option_fields().items()}
        for name, option in option_fields().items():
            domain = domain_of(option)
            value = domain.choices[-1] if domain.choices else inside.get(domain.kind, "block1")
            parsed = method_options(build_parser().parse_args([*command, f"--{name.replace('_', '-')}", value]))
            assert str(parsed[name]) == value
            for method in METHODS:
                assert checked(method, parsed) == checked(method, {name: parsed[name]})


def test_resize_and_stability_flags() -> None:
    from onnx_sise.cli import build_parser
    from onnx_sise.cli.arguments import UsageError
    from onnx_sise.methods.options import DEFAULT_RESIZE, RESIZE

    evaluate = ["evaluate", "m.onnx", "--images", "i", "--annotations", "a"]
    parsed = build_parser().parse_args(evaluate)
    assert parsed.resize == DEFAULT_RESIZE == "area" and parsed.stability is False
    assert build_parser().parse_args([*evaluate, "--resize", "linear", "--stability"]).stability is True
    for choice in RESIZE.choices:
        assert build_parser().parse_args(["explain", "m.onnx", "x.png", "--resize", choice]).resize == choice
    with pytest.raises(UsageError, match="invalid choice"):
        build_parser().parse_args(["explain", "m.onnx", "x.png", "--resize", "cubic"])
