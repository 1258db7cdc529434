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
    sys.path.insert(0, str(Path(__file__).parent / "preparation"))
    from foreign_models import build

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
    assert done.returncode == 2 and "usage:" in done.stderr


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


def test_method_names_are_the_registry() -> None:
    from onnx_sise.cli import METHOD_NAMES
    from onnx_sise.methods import METHODS

    assert METHOD_NAMES == tuple(METHODS)


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


def test_int8_variant_from_the_shell_explains_the_cup(lite0_path: Path, photos: Path, tmp_path: Path,
                                                      out_dir: Path) -> None:
    variant = tmp_path / "lite0.int8.onnx"
    refused = run_cli_with_export("variant", lite0_path, "--precision", "int8", "-o", variant)
    _assert_refused(refused, "int8 needs --calibrate", out_dir)
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
