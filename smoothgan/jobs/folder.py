"""Folder jobs on disk: layouts, the manifest, resume, and the writer that puts outputs before manifest lines."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, Optional

from smoothgan import images
from smoothgan.errors import InputError
from smoothgan.fileio import atomic_path, folder_lock
from smoothgan.jobs.aligned import face_results, pasted_result
from smoothgan.jobs.inputs import MANIFEST, InputFile, InputSpec, resolve_inputs
from smoothgan.jobs.stream import ItemResult, JobOptions, _check_batch, _group_size, make_options, stream

if TYPE_CHECKING:
    from smoothgan.results import Result
    from smoothgan.translator import Translator

log = logging.getLogger(__name__)

LAYOUTS = ("folders", "flat")
"""``folders``: OUT/<name>/ with frames, strip, GIF/MP4 and sidecar; ``flat``: OUT/<name>_<domain>[_<k>].png."""


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The valid lines of a manifest (a torn last line from a killed writer, or garbage, is skipped)."""
    if not path.is_file():
        return []
    records = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                log.warning("%s:%d: skipping an unreadable line (an interrupted write)", path, number)
                continue
            if isinstance(record, dict) and isinstance(record.get("input"), str):
                records.append(record)
    return records


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


# --------------------------------------------------------------------------------------------------------------
# writing


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def flat_outputs(name: PurePosixPath, domain: str, count: int) -> list[str]:
    """``<name>_<domain>.png`` for one output, else ``<name>_<domain>_<k>.png`` (k zero-padded so they sort)."""
    stem = f"{name}_{_safe(domain)}"
    if count == 1:
        return [f"{stem}.png"]
    width = len(str(count - 1))
    return [f"{stem}_{k:0{width}d}.png" for k in range(count)]


@dataclass
class FolderSummary:
    """Counts of a folder job and where it wrote; ``failed`` inputs are listed with their errors."""

    out: Path
    manifest: Path
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def finished(self) -> int:
        return self.done + self.skipped + self.failed


@dataclass
class FolderPlan:
    """What a folder job will do, decided before anything is written."""

    items: list[InputFile]
    todo: list[InputFile]
    kept: list[dict[str, Any]]
    options: JobOptions
    out: Path
    layout: str
    manifest_state: Optional[tuple[int, int, int]] = None
    """The manifest's (inode, size, mtime) when planned: a job that finds it changed was overtaken by another."""


def _manifest_state(path: Path) -> Optional[tuple[int, int, int]]:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


@contextlib.contextmanager
def open_manifest(plan: FolderPlan) -> Iterator[BinaryIO]:
    """Start writing a planned job: create OUT, take its writer lock for the job's whole run, refuse a plan that
    another job overtook since, rewrite the manifest with the kept lines only, and yield it open for appending."""
    plan.out.mkdir(parents=True, exist_ok=True)
    manifest = plan.out / MANIFEST
    with folder_lock(plan.out):
        if _manifest_state(manifest) != plan.manifest_state:
            raise InputError(f"{manifest} changed since this job was planned (another job wrote into "
                             f"{plan.out}); run it again")
        with atomic_path(manifest) as tmp:
            tmp.write_bytes(b"".join(_line(record) for record in plan.kept))
        with open(manifest, "ab") as handle:
            yield handle


def plan_folder(translator: "Translator", inputs: InputSpec, out: str | os.PathLike, options: JobOptions, *,
                layout: str = "folders", resume: bool = False, keep_going: bool = False,
                workers: int = 4) -> FolderPlan:
    """Resolve and check every input and, with ``resume``, find what a previous run already finished.

    Kept manifest lines: those of inputs skipped now, and (resume or not) those of inputs this job does not name,
    whose outputs stay in OUT: the manifest keeps describing everything there.
    """
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    out_path = Path(out)
    if out_path.exists() and not out_path.is_dir():
        raise InputError(f"output '{out_path}' exists and is not a folder")
    if out_path.is_dir():
        with folder_lock(out_path):  # refuse a busy folder now, before any work; execute holds it for real
            pass
    items = resolve_inputs(inputs, exclude=out_path, keep_going=keep_going, workers=workers)
    state = _manifest_state(out_path / MANIFEST)  # before reading it: a change in between is caught as overtaken
    current = {str(item.path) for item in items}
    records = {}
    for record in read_manifest(out_path / MANIFEST):
        records[record["input"]] = record  # the last line of an input wins
    model = translator.bundle.weights_sha256
    kept, todo = [], []
    for record in records.values():
        if record["input"] not in current:
            kept.append(record)
    for item in items:
        record = records.get(str(item.path)) if resume else None
        if (record is not None and record.get("status") == "ok" and record.get("domain") == options.domain
                and record.get("seed") == options.seed and record.get("model_sha256") == model
                and record.get("options") == options.key() and record.get("layout") == layout
                and record.get("outputs") and all((out_path / o).exists() for o in record["outputs"])):
            kept.append(record)
        else:
            todo.append(item)
    if layout == "folders":
        from smoothgan.results import check_replaceable

        for item in todo:
            check_replaceable(out_path / str(item.name))
    return FolderPlan(items, todo, kept, options, out_path, layout, state)


def write_outputs(plan: FolderPlan, item: ItemResult, *, gif: bool = False, mp4: bool = False,
                  fps: float = 10) -> list[str]:
    """Write one input's outputs under ``plan.out`` in the plan's layout, each atomically; return their paths
    relative to OUT (none for a failed input). Thread-safe: inputs have distinct names.

    An aligned photo (``align``) gives one output per face (``<name>_face<k>``), or with ``paste_back`` one output
    of full-size photos with every face pasted back (see :mod:`smoothgan.jobs.aligned`).
    """
    result = item.result
    if result is None:
        return []
    parts = [(item.input.name, result)]
    if item.aligned is not None:
        parts = ([(item.input.name, pasted_result(result, item.aligned))] if plan.options.paste_back
                 else face_results(result, item.aligned, item.input.name))
    outputs: list[str] = []
    for name, one in parts:
        outputs.extend(_write_one(plan, name, one, item.input.path, gif=gif, mp4=mp4, fps=fps))
    return outputs


def _write_one(plan: FolderPlan, name: PurePosixPath, result: "Result", source: Path, *, gif: bool, mp4: bool,
               fps: float) -> list[str]:
    """One single-source result under ``name`` in the plan's layout."""
    if plan.layout == "folders":
        result.save(plan.out / str(name), input=source, gif=gif, mp4=mp4, fps=fps)
        return [str(name)]
    frames = list(result.images[0])
    outputs = flat_outputs(name, plan.options.domain, len(frames))
    for output, frame in zip(outputs, frames):
        images.save_image(plan.out / output, frame)
    stem = f"{name}_{_safe(plan.options.domain)}"
    if gif:
        images.save_gif(plan.out / f"{stem}.gif", frames, fps=fps)
        outputs.append(f"{stem}.gif")
    if mp4:
        images.save_mp4(plan.out / f"{stem}.mp4", frames, fps=fps)
        outputs.append(f"{stem}.mp4")
    return outputs


def make_record(plan: FolderPlan, translator: "Translator", item: ItemResult, outputs: list[str]) -> dict[str, Any]:
    """The manifest line of one input (write it with :func:`record_line` only after its outputs are in place)."""
    options = plan.options
    record: dict[str, Any] = {"input": str(item.input.path), "outputs": list(outputs), "status": "ok",
                              "error": None, "domain": options.domain, "seed": options.seed,
                              "model_sha256": translator.bundle.weights_sha256, "backend": translator.backend.name,
                              "layout": plan.layout, "options": options.key()}
    if item.result is None:
        record["status"], record["error"] = "error", " ".join((item.error or "failed").split())
    elif "source_domains" in item.result.metadata:
        found = item.result.metadata["source_domains"]
        record["source_domain"] = found[0] if len(found) == 1 else found
    if item.aligned is not None:
        record["faces"] = item.aligned.face_records()
    return record


record_line = _line


class _Writer(threading.Thread):
    """Writes outputs on a few threads, then each input's manifest line, in input order, once its outputs are in.

    The only code that touches OUT during a job. PNG encoding and file I/O release the GIL, so ``threads``
    writers keep up with a fast engine; at most ``2 * threads`` inputs are being written at a time.
    """

    def __init__(self, plan: FolderPlan, translator: "Translator", handle: Any, summary: FolderSummary, *,
                 gif: bool, mp4: bool, fps: float, progress: Optional[Callable[[FolderSummary, ItemResult], None]],
                 depth: int, threads: int = 2) -> None:
        super().__init__(name="smoothgan-writer", daemon=True)
        self.plan, self.translator, self.handle, self.summary = plan, translator, handle, summary
        self.gif, self.mp4, self.fps, self.progress = gif, mp4, fps, progress
        self.threads = max(1, threads)
        self.queue: queue.Queue[Optional[ItemResult]] = queue.Queue(maxsize=depth)
        self.error: Optional[BaseException] = None

    def put(self, item: Optional[ItemResult]) -> None:
        """Hand an item to the writer (None: no more); raises the writer's error if it failed."""
        while True:
            if self.error is not None or not self.is_alive():
                if item is None:
                    return
                raise self.error or RuntimeError("the writer thread stopped")
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def run(self) -> None:
        inflight: deque[tuple[ItemResult, Future]] = deque()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="smoothgan-write") as pool:
            finished = False
            while not finished or inflight:
                if not finished:
                    try:
                        item = self.queue.get(timeout=0.05 if inflight else None)
                    except queue.Empty:
                        item = ...  # type: ignore[assignment]
                    if item is None:
                        finished = True
                    elif isinstance(item, ItemResult) and self.error is None:
                        inflight.append((item, pool.submit(write_outputs, self.plan, item, gif=self.gif,
                                                           mp4=self.mp4, fps=self.fps)))
                while inflight and (inflight[0][1].done() or finished or len(inflight) >= 2 * self.threads):
                    self._finish(*inflight.popleft())

    def _write(self, item: ItemResult) -> None:
        """Outputs then manifest line of one item, on the calling thread (for callers that batch elsewhere)."""
        future: Future = Future()
        try:
            future.set_result(write_outputs(self.plan, item, gif=self.gif, mp4=self.mp4, fps=self.fps))
        except BaseException as exc:
            future.set_exception(exc)
        self._finish(item, future)
        if self.error is not None:
            raise self.error

    def _finish(self, item: ItemResult, future: Future) -> None:
        """Once an input's outputs are written, append its manifest line (errors: the first one is kept)."""
        try:
            outputs = future.result()
        except BaseException as exc:  # handed to the main thread, which raises it
            self.error = self.error or exc
            return
        record = make_record(self.plan, self.translator, item, outputs)
        if item.result is None:
            self.summary.failed += 1
            self.summary.errors.append((record["input"], record["error"]))
        else:
            self.summary.done += 1
        try:
            self.handle.write(_line(record))
            self.handle.flush()
        except OSError as exc:
            self.error = self.error or exc
            return
        if self.progress is not None:
            self.progress(self.summary, item)


def execute(translator: "Translator", plan: FolderPlan, *, batch_size: Optional[int] = None, workers: int = 2,
            prefetch: Optional[int] = None, keep_going: bool = False, gif: bool = False, mp4: bool = False,
            fps: float = 10, progress: Optional[Callable[[FolderSummary, ItemResult], None]] = None,
            writers: int = 2) -> FolderSummary:
    """Run a :class:`FolderPlan`: rewrite the manifest (kept lines only), then translate and write the rest.

    Without ``keep_going`` the first bad input stops the job after the finished results are written (and raises);
    a rerun with ``resume`` continues from there.
    """
    if not fps > 0:
        raise InputError(f"fps must be positive, got {fps}")
    manifest = plan.out / MANIFEST
    summary = FolderSummary(plan.out, manifest, total=len(plan.items), skipped=len(plan.items) - len(plan.todo))
    _check_batch(translator, plan.options, batch_size, len(plan.todo))  # before anything is written
    started = time.perf_counter()
    group = _group_size(plan.options, batch_size or translator.max_batch)
    with open_manifest(plan) as handle:
        writer = _Writer(plan, translator, handle, summary, gif=gif, mp4=mp4, fps=fps, progress=progress,
                         depth=max(2, 2 * group), threads=writers)
        writer.start()
        try:
            for item in stream(translator, plan.todo, plan.options, batch_size=batch_size, workers=workers,
                               prefetch=prefetch, keep_going=keep_going):
                writer.put(item)
        finally:
            writer.put(None)
            writer.join()
        if writer.error is not None:
            raise writer.error
    summary.seconds = time.perf_counter() - started
    return summary


def run_folder(translator: "Translator", inputs: InputSpec, out: str | os.PathLike, domain: str | int, *,
               steps: Optional[int] = None, num: int = 1, seed: int = 0, ref: Any = None,
               source_domain: Optional[str | int] = None, mode: str = "lerp", layout: str = "folders",
               resume: bool = False, keep_going: bool = False, gif: Optional[bool] = None, mp4: bool = False,
               fps: float = 10, batch_size: Optional[int] = None, workers: int = 2, prefetch: Optional[int] = None,
               writers: int = 2, align: Optional[bool] = None, paste_back: bool = False,
               max_faces: Optional[int] = None,
               progress: Optional[Callable[[FolderSummary, ItemResult], None]] = None) -> FolderSummary:
    """Translate files/folders/globs into ``out``: validate all, then decode, batch, write, one manifest line each.

    ``gif`` defaults to on for interpolations. ``align`` (default: what the bundle records) translates the faces
    of each photo; ``paste_back`` writes them back into the full photo. See :func:`plan_folder`, :func:`execute`
    and :mod:`smoothgan.jobs.aligned`.
    """
    options = make_options(translator, domain, steps=steps, num=num, seed=seed, ref=ref,
                           source_domain=source_domain, mode=mode, align=align, paste_back=paste_back,
                           max_faces=max_faces)
    if not fps > 0:
        raise InputError(f"fps must be positive, got {fps}")
    plan = plan_folder(translator, inputs, out, options, layout=layout, resume=resume, keep_going=keep_going,
                       workers=max(workers, 4))
    return execute(translator, plan, batch_size=batch_size, workers=workers, prefetch=prefetch,
                   keep_going=keep_going, gif=(steps is not None) if gif is None else gif, mp4=mp4, fps=fps,
                   progress=progress, writers=writers)
