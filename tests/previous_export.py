"""Today's export, before the ONNX-native gradients: the torch-traced exporter of commit
BASELINE_COMMIT (make_fx of torch.autograd.grad with hand-written backward rules), read
out of git history into a temporary folder and run in a subprocess, so that a benchmark
or a test can compare the two paths in one run."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

BASELINE_COMMIT = "45038a1"
REPO = Path(__file__).resolve().parent.parent  # the repository: tests/ is one level down


def previous_export(zoo_name: str, out: Path, workdir: Path) -> Path | None:
    """`export --zoo zoo_name` as of BASELINE_COMMIT, written to `out`; None where the
    repository's history is not there (a shallow clone)."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", BASELINE_COMMIT, "export",
                              "onnx_sise"], capture_output=True, timeout=120)
    if archive.returncode != 0:
        return None
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(workdir, filter="data")
    code = ("import sys; from onnx_sise_export import export_zoo; "
            "export_zoo(sys.argv[1], sys.argv[2])")
    # The baseline's own runtime package too (its compiled core is the installed one: the
    # package extends its path to it), so that the exporter reads the modules it was written against.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(workdir / "export"), str(workdir),
                                                        os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code, zoo_name, str(out)], env=env, capture_output=True, text=True,
                          timeout=1800, cwd=workdir)
    if done.returncode != 0:
        raise RuntimeError(f"the baseline export failed: {done.stderr[-2000:]}")
    return out
