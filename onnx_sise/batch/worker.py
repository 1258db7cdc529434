"""The actors of `batch`: one `Explainer` per actor, loaded once, that explains the images
of each batch Ray Data hands it and writes their files (outputs.py); and how many actors
of how many threads the cluster holds (`plan_pool`)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import OptionError, OutputError, SiseError
from ..explainer import Explainer
from ..images.decode import decode_rgb
from .inputs import key_of, read_image_bytes
from .outputs import Outputs

# Threads per CPU actor: onnxruntime's intra-op threads scale well up to about 4 on a
# masked batch; beyond, more actors of 4 threads each do more images per second.
MAX_THREADS_PER_ACTOR = 4


@dataclass(frozen=True)
class Plan:
    """The actor pool: `actors` actors of `threads` onnxruntime threads (and CPUs reserved
    in Ray) each, `gpus` GPUs each with the `provider` ("cpu" or "cuda")."""

    actors: int
    threads: int
    gpus: float
    provider: str


def plan_pool(node_cpus: Sequence[float], total_gpus: float, actors: int | None = None,
              threads: int | None = None, provider: str | None = None) -> Plan:
    """The pool for a cluster whose alive nodes have `node_cpus` CPUs each and
    `total_gpus` GPUs in all. CPU: `threads` per actor (default: a quarter of the largest
    node's CPUs, 1 to MAX_THREADS_PER_ACTOR) and as many actors as fit on each node's CPUs.
    GPU (provider "cuda", the default when the cluster has GPUs): one actor per GPU."""
    cpus = [int(c) for c in node_cpus if c >= 1]
    if not cpus:
        raise OptionError("the Ray cluster has no node with a CPU: start one (ray start --num-cpus N)")
    if provider is None:
        provider = "cuda" if total_gpus >= 1 else "cpu"
    if provider not in ("cpu", "cuda"):
        raise OptionError(f"provider must be cpu or cuda, got {provider!r:.40}")
    for name, value in (("actors", actors), ("threads", threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise OptionError(f"{name} must be a positive integer, got {value!r:.40}")
    if threads is None:
        threads = max(1, min(MAX_THREADS_PER_ACTOR, max(cpus) // 4))
    if threads > max(cpus):
        raise OptionError(f"threads={threads} is more than the largest node's {max(cpus)} CPUs")
    if provider == "cuda":
        if total_gpus < 1:
            raise OptionError("provider cuda needs GPUs in the Ray cluster, and it has none: use cpu")
        count = actors if actors is not None else int(total_gpus)
        return Plan(count, threads, min(1.0, total_gpus / count), "cuda")
    fit = sum(c // threads for c in cpus)
    if actors is not None and actors > fit:
        raise OptionError(f"{actors} actors of {threads} threads do not fit in the cluster's CPUs {cpus}: at most "
                          f"{fit}")
    return Plan(actors if actors is not None else max(1, fit), threads, 0.0, "cpu")


class ExplainWorker:
    """A callable class for `Dataset.map_batches(ExplainWorker, compute=ActorPoolStrategy(...))`:
    the model is loaded once per actor; each call explains its batch's images one by one."""

    def __init__(self, model: str, out: str, method: str, target: int | None, options: Mapping[str, object],
                 threads: int, provider: str = "cpu", batch_size: int = 32, resize: str = "area",
                 retry_errors: bool = False) -> None:
        self.explainer = Explainer(model, provider=provider, threads=threads, batch_size=batch_size, resize=resize)
        self.outputs = Outputs(Path(out), method)
        self.target = target
        self.options = dict(options)
        self.retry_errors = retry_errors

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, list]:
        """{column: values} of the batch's rows (path, optional key and bytes) -> their
        rows (outputs.COLUMNS and `fresh`: False for an image done before)."""
        paths = [str(p) for p in batch["path"]]
        keys = [str(k) for k in batch["key"]] if "key" in batch else [key_of(p, None) for p in paths]
        encoded = batch["bytes"] if "bytes" in batch else [None] * len(paths)
        rows = [explain_item(self.explainer, self.outputs, key, path, data, self.target, self.options,
                             self.retry_errors) for key, path, data in zip(keys, paths, encoded)]
        return {column: [r[column] for r in rows] for column in rows[0]} if rows else {}


def explain_item(explainer: Explainer, outputs: Outputs, key: str, source: str, data: bytes | None,
                 target: int | None, options: Mapping[str, object], retry_errors: bool = False) -> dict:
    """Explain one image unless it has a row already, and write its files; its row, with
    `fresh` (True: explained or failed now). A bad image is an error row, never a raise;
    only an OUT that cannot be written stops the run."""
    done = outputs.row(key)
    if done is not None and not (retry_errors and done["status"] == "error"):
        return {**done, "fresh": False}
    started = time.perf_counter()
    row: dict = {"path": source, "key": key, "method": outputs.method, "target": None, "label": None,
                 "score": None, "passes": None, "seconds": None, "status": "ok", "error": None}
    try:
        rgb = decode_rgb(read_image_bytes(source) if data is None else bytes(data), source)
        result = explainer.explain(rgb, target, method=outputs.method, **options)
        row.update(target=result.target, label=result.label, score=result.score, passes=result.passes,
                   seconds=time.perf_counter() - started)
        outputs.write_result(rgb, result.saliency, row)
    except OutputError as exc:
        row.update(status="error", error=str(exc), seconds=time.perf_counter() - started)
        outputs.write_error(row)  # an OUT that cannot be written at all raises here and stops the run
    except (SiseError, MemoryError) as exc:
        message = str(exc) if isinstance(exc, SiseError) else "out of memory"
        row.update(status="error", error=message, seconds=time.perf_counter() - started)
        outputs.write_error(row)
    return {**row, "fresh": True}
