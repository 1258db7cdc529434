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
from collections.abc import Sequence
from pathlib import Path

BASELINE_COMMIT = "45038a1"
REPO = Path(__file__).resolve().parent.parent  # the repository: tests/ is one level down


def run_as_of(commit: str, folders: Sequence[str], workdir: Path, code: str, *args: str,
              timeout: float = 1800) -> subprocess.CompletedProcess | None:
    """`python -c code *args` over `folders` of the repository as of `commit`, read out of git
    history into `workdir` (and on PYTHONPATH before the installed package; the compiled
    core stays the installed one: the package extends its path to it); None where the
    history is not there (a shallow clone)."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit, *folders],
                             capture_output=True, timeout=120)
    if archive.returncode != 0:
        return None
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(workdir, filter="data")
    path = [str(workdir / "export"), str(workdir)] if "export" in folders else [str(workdir)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=workdir)


def previous_export(zoo_name: str, out: Path, workdir: Path) -> Path | None:
    """`export --zoo zoo_name` as of BASELINE_COMMIT, written to `out`; None where the
    repository's history is not there (a shallow clone)."""
    code = "import sys; from onnx_sise_export import export_zoo; export_zoo(sys.argv[1], sys.argv[2])"
    done = run_as_of(BASELINE_COMMIT, ["export", "onnx_sise"], workdir, code, zoo_name, str(out))
    if done is None:
        return None
    if done.returncode != 0:
        raise RuntimeError(f"the baseline export failed: {done.stderr[-2000:]}")
    return out
