"""`evaluate --address`: the per-image work of evaluation.evaluate (explain, then measure
the metrics: evaluate.image_row) on an actor pool of Ray Data, one Explainer per actor,
and the report made from the rows as evaluate makes it. The images and annotations are
read by path on every node: on a cluster they must lie on a filesystem every node mounts."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..evaluation.annotations import Annotation
from ..evaluation.evaluate import check_arguments, check_steps, image_row, summarised
from ..explainer import Explainer
from .run import MAX_BLOCKS, BatchRunError, cluster_plan, import_ray, quiet_ray_data, root_cause, start_ray, stop_ray


class EvaluateWorker:
    """An actor of `evaluate_on_ray`: one Explainer, the annotations, rows of the report."""

    def __init__(self, model: str, annotations: Sequence[Annotation], metric_names: Sequence[str], steps: int,
                 options: Mapping[str, object], threads: int, provider: str = "cpu", batch_size: int = 32,
                 resize: str = "area") -> None:
        self.explainer = Explainer(model, provider=provider, threads=threads, batch_size=batch_size, resize=resize)
        self.annotations = list(annotations)
        self.metric_names = list(metric_names)
        self.steps = steps
        self.options = dict(options)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, list]:
        rows = [json.dumps(image_row(self.explainer, self.annotations[int(index)], str(method), self.metric_names,
                                     self.steps, self.options))
                for method, index in zip(batch["method"], batch["index"])]
        return {"method": list(batch["method"]), "index": list(batch["index"]), "row": rows}


def evaluate_on_ray(model: str | os.PathLike[str], annotations: Sequence[Annotation], methods: Sequence[str],
                    metric_names: Sequence[str], steps: int = 100, *, address: str | None = None,
                    actors: int | None = None, threads: int | None = None, provider: str | None = None,
                    batch_size: int = 32, resize: str = "area", on_image: Callable[[str], None] = lambda s: None,
                    **options: object) -> dict[str, dict[str, object]]:
    """evaluation.evaluate's report, the images explained and measured on Ray (address:
    see run.start_ray). A failure on any image stops the run with its error, as evaluate's."""
    import_ray()  # RayMissingError before any work
    probe = Explainer(model, threads=1, batch_size=batch_size, resize=resize)
    check_arguments(probe, annotations, methods, metric_names, on_image)
    check_steps(probe, steps)
    del probe
    started = start_ray(address)
    try:
        ray = import_ray()
        quiet_ray_data(ray)
        plan = cluster_plan(actors, threads, provider)
        work = [{"method": m, "index": i} for m in methods for i in range(len(annotations))]
        plan = replace(plan, actors=min(plan.actors, len(work)))
        dataset = ray.data.from_items(work, override_num_blocks=min(len(work), MAX_BLOCKS))
        mapped = dataset.map_batches(
            EvaluateWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=plan.actors),
            num_cpus=plan.threads, num_gpus=plan.gpus or None,
            fn_constructor_kwargs=dict(model=str(Path(model).resolve()), annotations=list(annotations),
                                       metric_names=list(metric_names), steps=steps, options=options,
                                       threads=plan.threads, provider=plan.provider, batch_size=batch_size,
                                       resize=resize))
        rows: dict[tuple[str, int], dict] = {}
        try:
            for out in mapped.iter_rows():
                rows[(str(out["method"]), int(out["index"]))] = json.loads(out["row"])
                on_image(f"{out['method']} {annotations[int(out['index'])].file.name}")
        except ray.exceptions.RayError as exc:
            raise BatchRunError(f"the evaluation on Ray stopped: {root_cause(exc)}") from None
    finally:
        stop_ray(started)
    return {m: summarised([rows[(m, i)] for i in range(len(annotations))], metric_names) for m in methods}
