"""``smoothgan batch`` on Ray Data: a folder job whose translation runs in a pool of Ray actors, on one machine
or a cluster.

The driver does what :mod:`smoothgan.jobs` does before a folder job: resolve and check every input, give each a
unique output name, read the manifest and skip inputs a previous run finished (``resume``). The inputs left
become a Ray dataset of (path, name) rows; ``map_batches`` hands batches of them to an actor pool, one
:class:`Translator` per actor, and each actor decodes, translates and writes its outputs with
:func:`smoothgan.jobs.stream` and the folder job's writer (same names, layouts and atomic writes), returning one
manifest line per input. The driver appends those lines as batches finish, so the manifest means what it means for
``smoothgan translate``: a line is written only after all outputs of its input are complete, and a rerun skips
them. Ray's ``write_images`` is not used: it renames files.

On a cluster every node must see the same input and output paths (a shared filesystem); the driver's paths are
used as they are.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Optional

import numpy as np

from smoothgan import jobs
from smoothgan.backends.base import Backend, Masks
from smoothgan.errors import BackendError, InputError
from smoothgan.serving.cluster import check_backend, init_ray

log = logging.getLogger(__name__)

MAX_ACTORS = 1024


class PlanningBackend(Backend):
    """The driver's stand-in engine: it carries name, device and precision for planning (memory checks, manifest
    matching) and refuses to run, because on the driver nothing is translated (the actors do it)."""

    def __init__(self, config: Any, name: str, device: str, precision: str) -> None:
        super().__init__(config, device, precision)
        self.name = name

    def _refuse(self) -> Any:
        raise BackendError("the batch driver only plans; translation runs in the Ray actors")

    def _run_mapping(self, latent: np.ndarray, domain: np.ndarray) -> np.ndarray:
        return self._refuse()

    def _run_encode(self, image: np.ndarray, domain: np.ndarray) -> np.ndarray:
        return self._refuse()

    def _run_generate(self, image: np.ndarray, style: np.ndarray, masks: Optional[Masks]) -> np.ndarray:
        return self._refuse()

    def _run_heatmap(self, image: np.ndarray) -> Masks:
        return self._refuse()


def _write(plan: jobs.FolderPlan, translator: Any, item: jobs.ItemResult, gif: bool, mp4: bool,
           fps: float) -> bytes:
    """Write one input's outputs (the folder job's layout and atomic writes), then return its manifest line."""
    outputs = jobs.write_outputs(plan, item, gif=gif, mp4=mp4, fps=fps)
    return jobs.record_line(jobs.make_record(plan, translator, item, outputs))


class TranslateActor:
    """One Ray actor: a translator loaded once, translating and writing the batches Ray Data gives it."""

    def __init__(self, bundle: str, backend: str, device: str, precision: str, batch_size: int,
                 options: jobs.JobOptions, out: str, layout: str, gif: bool, mp4: bool, fps: float,
                 engine: dict[str, Any]) -> None:
        from smoothgan.translator import load

        self.translator = load(bundle, backend=backend, device=device, precision=precision, max_batch=batch_size,
                               **engine)
        self.options, self.batch_size = options, batch_size
        self.plan = jobs.FolderPlan([], [], [], options, Path(out), layout)
        self.gif, self.mp4, self.fps = gif, mp4, fps

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [jobs.InputFile(Path(str(p)), PurePosixPath(str(n)), str(e) or None)
                 for p, n, e in zip(batch["path"], batch["name"], batch["error"])]
        lines = [_write(self.plan, self.translator, result, self.gif, self.mp4, self.fps)
                 for result in jobs.stream(self.translator, items, self.options, batch_size=self.batch_size,
                                           workers=2, keep_going=True)]
        return {"line": np.array(lines, dtype=object)}


def run_batch(inputs: jobs.InputSpec, out: str | os.PathLike[str], domain: str, *, model: Optional[str] = None,
              backend: str = "auto", device: str = "cpu", precision: str = "fp32", num: int = 1, seed: int = 0,
              steps: Optional[int] = None, ref: Any = None, source_domain: Optional[str] = None, mode: str = "lerp",
              layout: str = "flat", resume: bool = True, keep_going: bool = True, gif: Optional[bool] = None,
              mp4: bool = False, fps: float = 10, actors: int = 1, cpus_per_actor: float = 0.5,
              gpus_per_actor: Optional[float] = None, batch_size: int = 16, ray_address: Optional[str] = None,
              num_cpus: Optional[int] = None, threads: Optional[int] = None,
              progress: Optional[Callable[[jobs.FolderSummary, dict[str, Any]], None]] = None) -> jobs.FolderSummary:
    """Translate files/folders/globs into ``out`` with a Ray Data actor pool; returns the job's counts.

    ``actors`` translators run at once, each with ``cpus_per_actor`` CPUs and ``gpus_per_actor`` GPUs (1 on
    ``cuda`` by default); ``batch_size`` is the generator rows per engine call (inputs per actor call:
    ``batch_size // frames per input``). Without ``ray_address`` a private local Ray runs the job (``num_cpus``
    caps it); with ``HOST:6379`` (or ``auto``) the job runs on that cluster. ``resume`` skips inputs the manifest
    records as done for the same job. Bad files are recorded in the manifest (``summary.failed``); without
    ``keep_going`` a file whose header is unreadable stops the job before anything runs.
    ``progress(summary, record)`` is called per manifest line. ``threads``: ONNX Runtime intra-op threads per actor.
    """
    from smoothgan.bundle import load_bundle
    from smoothgan.translator import Translator, check_count

    check_count("actors", actors, 1, MAX_ACTORS)
    check_count("batch_size", batch_size, 1, 2**20)
    if not 0 < cpus_per_actor <= 1024:
        raise InputError(f"cpus_per_actor must be above 0, got {cpus_per_actor}")
    gpus = (1.0 if device == "cuda" else 0.0) if gpus_per_actor is None else float(gpus_per_actor)
    if gpus < 0:
        raise InputError(f"gpus_per_actor must be 0 or more, got {gpus_per_actor}")
    bundle = load_bundle(model)
    check_backend(backend, device, precision)
    planner = Translator(bundle, PlanningBackend(bundle.config, backend, device, precision), batch_size)
    options = jobs.make_options(planner, domain, steps=steps, num=num, seed=seed, ref=ref,
                                source_domain=source_domain, mode=mode)
    plan = jobs.plan_folder(planner, inputs, out, options, layout=layout, resume=resume, keep_going=keep_going)
    summary = jobs.FolderSummary(plan.out, plan.out / jobs.MANIFEST, total=len(plan.items),
                                 skipped=len(plan.items) - len(plan.todo))
    write_gif = steps is not None if gif is None else gif
    with jobs.open_manifest(plan) as handle:  # OUT locked for the job; kept lines only, as a folder job starts
        known_bad = [item for item in plan.todo if item.error]  # found by the header check: no actor needed
        for item in known_bad:
            _record(summary, handle, _write(plan, planner, jobs.ItemResult(item, error=item.error), write_gif, mp4,
                                            fps), progress)
        plan.todo = [item for item in plan.todo if not item.error]
        if not plan.todo:
            return summary
        started = init_ray(ray_address, num_cpus)
        try:
            _execute(plan, bundle.path, summary, handle, backend, device, precision, batch_size, actors,
                     cpus_per_actor, gpus, write_gif, mp4, fps, progress,
                     {} if threads is None else {"threads": int(threads)})
        finally:
            if started:
                import ray

                ray.shutdown()
    return summary


def _record(summary: jobs.FolderSummary, handle: Any, line: bytes,
            progress: Optional[Callable[[jobs.FolderSummary, dict[str, Any]], None]]) -> None:
    """Append one manifest line (already written outputs) and count it."""
    handle.write(line)
    handle.flush()
    record = json.loads(line)
    if record.get("status") == "ok":
        summary.done += 1
    else:
        summary.failed += 1
        summary.errors.append((record["input"], str(record.get("error"))))
    if progress is not None:
        progress(summary, record)


def _execute(plan: jobs.FolderPlan, bundle: Path, summary: jobs.FolderSummary, handle: BinaryIO, backend: str,
             device: str, precision: str, batch_size: int, actors: int, cpus: float, gpus: float, gif: bool, mp4: bool,
             fps: float, progress: Optional[Callable[[jobs.FolderSummary, dict[str, Any]], None]],
             engine: dict[str, Any]) -> None:
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    rows = [{"path": str(item.path), "name": str(item.name), "error": item.error or ""} for item in plan.todo]
    per_call = max(1, batch_size // plan.options.per_source)
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 4 * actors * 4)))
    translated = dataset.map_batches(
        TranslateActor, batch_size=per_call, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus,
        num_gpus=gpus,
        fn_constructor_kwargs={"bundle": str(bundle.resolve()), "backend": backend, "device": device,
                               "precision": precision, "batch_size": batch_size, "options": plan.options,
                               "out": str(plan.out.resolve()), "layout": plan.layout, "gif": gif, "mp4": mp4,
                               "fps": fps, "engine": engine})
    started = time.perf_counter()
    for row in translated.iter_rows():
        _record(summary, handle, bytes(row["line"]), progress)
    summary.seconds = time.perf_counter() - started


__all__ = ["PlanningBackend", "TranslateActor", "run_batch"]
