"""`explain_dataset`: every image of a folder, a manifest or a Ray dataset explained on Ray
Data, an actor pool of Explainers (worker.py), with its files under OUT (outputs.py).

Without an address Ray starts on this machine (its CPUs, no dashboard, quiet logs) and
stops when the run ends; with one (`auto`, `ray://host:10001`, `host:6379`) the run joins
that cluster. A Ray already started in this process (ray.init) is used as it is."""

from __future__ import annotations

import logging
import os
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import OptionError, SiseError
from ..explainer import Explainer, available_cpus
from ..files.reading import text_path
from ..files.writing import ensure_writable_dir
from ..methods import checked
from ..methods.options import DEFAULT_RESIZE
from ..progress import ProgressBar
from .inputs import BatchInputError, Item, is_uri, list_inputs
from .outputs import Outputs, remove_temporaries
from .worker import ExplainWorker, Plan, plan_pool

RAY_EXTRA = "pip install 'onnx_sise[ray]'"
SISE_ERROR_LINE = re.compile(r"^onnx_sise\.errors\.\w+: (.+)$", re.MULTILINE)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Blocks of the listed images: each goes to one actor, a batch of one image at a time.
MAX_BLOCKS = 2000


class BatchRunError(SiseError):
    """The Ray run failed as a whole (a lost cluster, an OUT that cannot be written)."""


class RayMissingError(SiseError):
    """`batch` and `evaluate --address` need Ray, which is not installed."""


@dataclass(frozen=True)
class BatchSummary:
    """What a run did: `images` listed, `explained` now (maps written), `errors` now (error
    rows written), `skipped` (done by an earlier run), its `seconds`, the actor `plan`
    (None when nothing was left to do) and the manifest written."""

    images: int
    explained: int
    errors: int
    skipped: int
    seconds: float
    plan: Plan | None
    manifest: Path

    @property
    def images_per_second(self) -> float:
        return (self.explained + self.errors) / self.seconds if self.seconds > 0 else 0.0


def import_ray():  # noqa: ANN201 - the ray module
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayMissingError(f"this needs Ray, which is not installed: {RAY_EXTRA}") from None
    return ray


def start_ray(address: str | None) -> bool:
    """Connect to Ray: the Ray of this process if started, else a local one (address None
    or "local") or the cluster at `address`. True when this call started it (stop_ray ends it)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address == "local":
        address = None
    if address is not None and (not isinstance(address, str) or not address or "\0" in address):
        raise OptionError(f"address must be 'auto', 'ray://host:port' or 'host:port', got {address!r:.60}")
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address is None:
        ray.init(num_cpus=available_cpus(), **quiet)
    else:
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise OptionError(f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0][:160]}") from None
    quiet_ray_data(ray)
    return True


def quiet_ray_data(ray: object) -> None:
    """No progress bars and no per-dataset log lines from Ray Data (ours is the bar)."""
    context = ray.data.DataContext.get_current()  # type: ignore[attr-defined]
    context.enable_progress_bars = False
    for name in ("ray", "ray.data"):  # a failed task is our one-line error, not Ray's traceback
        logging.getLogger(name).setLevel(logging.CRITICAL)


def root_cause(exc: BaseException) -> str:
    """One line for a failed Ray run: the SiseError an actor raised (Ray Data passes it on
    as text, in the traceback it prints), or Ray's own first line."""
    text = ANSI.sub("", str(exc))
    raised = SISE_ERROR_LINE.findall(text)
    if raised:
        return raised[-1].strip()[:300]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def stop_ray(started: bool) -> None:
    if started:
        import_ray().shutdown()


def cluster_plan(actors: int | None, threads: int | None, provider: str | None, spare_cpus: int = 0) -> Plan:
    """plan_pool over the alive nodes of the connected cluster, `spare_cpus` of the largest
    node left free (a dataset's read tasks need one: actors holding every CPU would wait
    for reads that never start)."""
    ray = import_ray()
    nodes = sorted((n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")), reverse=True)
    if nodes and spare_cpus and nodes[0] > spare_cpus:
        nodes[0] -= spare_cpus
    return plan_pool(nodes, ray.cluster_resources().get("GPU", 0.0), actors, threads, provider)


def explain_dataset(model: str | os.PathLike[str], source: object, out: str | os.PathLike[str], method: str = "sise",
                    *, target: int | None = None, address: str | None = None, actors: int | None = None,
                    threads: int | None = None, provider: str | None = None, batch_size: int = 32,
                    resize: str = DEFAULT_RESIZE, retry_errors: bool = False, progress: bool = False,
                    **options: object) -> BatchSummary:
    """Explain every image of `source` (a folder, a .txt/.csv/.parquet manifest of paths or
    a ray.data.Dataset with a `path` column and optionally `bytes`; inputs.py) with
    `method` and write OUT/<key>.<method>.npy|png and OUT/manifest.<method>.parquet
    (outputs.py). Images with a row from an earlier run are skipped (with retry_errors,
    error rows are tried again); a bad image is an error row. The model, the options and
    OUT are checked here before Ray starts. `actors`, `threads` and `provider` default to
    what the cluster holds (worker.plan_pool)."""
    started_at = time.perf_counter()
    import_ray()  # RayMissingError before any work
    checked(method, options)
    model_text, out_text = text_path(model), text_path(out)
    if model_text is None or out_text is None:
        raise OptionError("model and out must be paths (str or os.PathLike)")
    if is_uri(out_text):
        raise OptionError(f"out must be a folder on a filesystem every node mounts, not a URI: {out_text}")
    out_path = Path(out_text)
    probe = Explainer(model_text, threads=1, batch_size=batch_size, resize=resize)  # a bad model fails here, once
    if target is not None:
        probe._check_target(target)
    del probe
    outputs = Outputs(out_path, method)
    dataset = source if _is_dataset(source) else None
    items: list[Item] = []
    if dataset is None:
        if text_path(source) is not None and not is_uri(str(text_path(source))) and out_path.resolve() == Path(
                str(text_path(source))).resolve():
            raise BatchInputError("--out is the INPUT folder itself: choose another folder, or a subfolder of it")
        items = list_inputs(source, exclude=out_path)
    elif "path" not in dataset.schema().names:
        raise BatchInputError(f"the Ray dataset needs a 'path' column (it has {dataset.schema().names[:8]})")
    ensure_writable_dir(out_path)
    remove_temporaries(out_path)
    todo = [i for i in items if _to_do(outputs, i.key, retry_errors)]
    skipped = len(items) - len(todo)
    counts = {"explained": 0, "errors": 0, "skipped": skipped}
    plan = None
    if dataset is not None or todo:
        started = start_ray(address)
        try:
            ray = import_ray()
            quiet_ray_data(ray)
            plan = cluster_plan(actors, threads, provider, spare_cpus=0 if items else 1)
            if dataset is None:
                plan = replace(plan, actors=min(plan.actors, len(todo)))
                dataset = ray.data.from_items([{"path": i.source, "key": i.key} for i in todo],
                                              override_num_blocks=min(len(todo), MAX_BLOCKS))
            bar = ProgressBar(len(todo) if items else None, f"{method} images", unit="images", rate=True) \
                if progress else None
            try:
                for row in _rows(ray, dataset, plan, model_text, out_path, method, target, options, batch_size,
                                 resize, retry_errors):
                    if not row["fresh"]:
                        counts["skipped"] += 1
                        continue
                    counts["explained" if row["status"] == "ok" else "errors"] += 1
                    if bar is not None:
                        bar(1)
            except ray.exceptions.RayError as exc:
                reason = root_cause(exc)
                raise BatchRunError(f"the Ray run stopped ({reason}): the images done so far are complete; run "
                                    "the same command again to finish the rest") from None
            if bar is not None:
                bar.close()
        finally:
            stop_ray(started)
    outputs.write_manifest()
    listed = len(items) if items else counts["explained"] + counts["errors"] + counts["skipped"]
    return BatchSummary(images=listed, explained=counts["explained"],
                        errors=counts["errors"], skipped=counts["skipped"],
                        seconds=time.perf_counter() - started_at, plan=plan, manifest=outputs.manifest)


def _is_dataset(source: object) -> bool:
    kind = type(source)
    return kind.__module__.startswith("ray.data") and kind.__name__ in ("Dataset", "MaterializedDataset")


def _to_do(outputs: Outputs, key: str, retry_errors: bool) -> bool:
    row = outputs.row(key)
    return row is None or (retry_errors and row["status"] == "error")


def _rows(ray: object, dataset: object, plan: Plan, model: str, out: Path, method: str, target: int | None,
          options: dict, batch_size: int, resize: str, retry_errors: bool) -> Iterator[dict]:
    """The rows of every image, as the actors finish them (one image per Ray batch: a
    killed actor loses at most the image it was explaining, which Ray gives to another)."""
    from ray.data import ActorPoolStrategy

    mapped = dataset.map_batches(  # type: ignore[attr-defined]
        ExplainWorker, batch_size=1, compute=ActorPoolStrategy(size=plan.actors), num_cpus=plan.threads,
        num_gpus=plan.gpus or None,
        fn_constructor_kwargs=dict(model=str(Path(model).resolve()), out=str(out.resolve()), method=method,
                                   target=target, options=options, threads=plan.threads, provider=plan.provider,
                                   batch_size=batch_size, resize=resize, retry_errors=retry_errors))
    with warnings.catch_warnings():  # Ray Data's advice on concurrency: ours is the plan
        warnings.filterwarnings("ignore", category=UserWarning, module=r"ray\.")
        yield from mapped.iter_rows()
