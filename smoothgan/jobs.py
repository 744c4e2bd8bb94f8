"""Folder jobs: resolve inputs, decode ahead in threads, batch across images, write results atomically, resume.

``smoothgan translate INPUT...`` and :meth:`Translator.translate_folder` / :meth:`Translator.iter_translate` run
here. The pipeline has three stages and bounded queues between them, so memory does not grow with the folder:

1. a small thread pool decodes and preprocesses the next ``prefetch`` images (Pillow releases the GIL);
2. the calling thread groups decoded images into batches of ``batch_size`` generator rows (an image with K
   styles or K interpolation steps is K rows) and runs the translator's batched calls, one group at a time;
3. a writer thread saves each input's outputs atomically and only then appends its ``manifest.jsonl`` line.

A manifest line therefore means "all outputs of this input are complete", which is what ``resume`` trusts: an
input is skipped when its last line says ``ok`` for the same job (domain, seed, styles, model) and its outputs
exist. A ``kill -9`` at any moment leaves complete outputs, at most one torn manifest line (dropped on resume)
and staging leftovers of the killed process, which :mod:`smoothgan.fileio` removes when the same output is
written again.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import queue
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Optional, Union

from PIL import Image

from smoothgan import images
from smoothgan.errors import InputError
from smoothgan.fileio import atomic_path

if TYPE_CHECKING:
    from smoothgan.translator import Result, Translator

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
LAYOUTS = ("folders", "flat")
"""``folders``: OUT/<name>/ with frames, strip, GIF/MP4 and sidecar; ``flat``: OUT/<name>_<domain>[_<k>].png."""
_GLOB_CHARS = "*?["

InputSpec = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]


# --------------------------------------------------------------------------------------------------------------
# inputs


@dataclass(frozen=True)
class InputFile:
    """One resolved input: the file, its output name (relative, no suffix, unique) and any problem found early.

    Streamed in-memory images (see :func:`iter_results`) carry the array in ``image`` and a ``<array N>`` path.
    """

    path: Path
    name: PurePosixPath
    error: Optional[str] = None
    image: Any = field(default=None, compare=False, repr=False)


def _is_glob(text: str) -> bool:
    return any(c in text for c in _GLOB_CHARS)


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard (what matched paths are made relative to)."""
    parts = []
    for part in Path(pattern).parts:
        if _is_glob(part):
            break
        parts.append(part)
    base = Path(*parts) if parts else Path(".")
    return base if base.is_dir() else base.parent


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in images.IMAGE_EXTENSIONS


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def walk_images(root: Path, exclude: Optional[Path] = None) -> list[Path]:
    """Image files under ``root``, recursively, sorted; hidden entries and ``exclude`` skipped.

    Symlinked folders are not entered; a symlinked file is kept only if it resolves inside ``root`` (a link out of
    the tree, or a broken one, is skipped and logged).
    """
    real_root = root.resolve()
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and not (exclude is not None and os.path.abspath(here / d) == str(exclude)))
        for filename in filenames:
            if not _is_image_name(filename):
                continue
            path = here / filename
            if path.is_symlink():
                target = path.resolve()
                if not target.is_file() or not _inside(target, real_root):
                    log.info("skipping %s: a link out of %s (or broken)", path, root)
                    continue
            found.append(path)
    return sorted(found)


def _reserve(names: dict[str, PurePosixPath], taken: set[str]) -> None:
    for name in names.values():
        taken.add(str(name).casefold())
        for parent in name.parents:
            if str(parent) != ".":
                taken.add(str(parent).casefold())


def unique_names(files: Sequence[Path], root: Path) -> list[PurePosixPath]:
    """Output names (relative path without suffix) for ``files`` under ``root``, distinct for real.

    A name mirrors the file's path relative to ``root``. Names that clash (``a.png`` and ``a.jpg``, case-only
    differences, a file named like a folder of another output, ``manifest.jsonl``) get ``-2``, ``-3``... appended,
    skipping every name another input already has, so ``a.png``, ``a.jpg`` and ``a-2.png`` stay distinct.
    Deterministic for the same inputs, which ``resume`` relies on.
    """
    natural = [PurePosixPath(*Path(os.path.relpath(f, root)).with_suffix("").parts) for f in files]
    counts: dict[str, int] = {}
    for name in natural:
        counts[str(name).casefold()] = counts.get(str(name).casefold(), 0) + 1
    taken: set[str] = {MANIFEST.casefold()}
    _reserve({str(n): n for n in natural}, taken)
    dir_prefixes = {str(p).casefold() for n in natural for p in n.parents if str(p) != "."}
    names: list[PurePosixPath] = []
    first_seen: set[str] = set()
    for name in natural:
        key = str(name).casefold()
        if key not in first_seen and key not in dir_prefixes and key != MANIFEST.casefold():
            first_seen.add(key)
            names.append(name)
            continue
        k = 2
        while str(candidate := name.with_name(f"{name.name}-{k}")).casefold() in taken:
            k += 1
        taken.add(str(candidate).casefold())
        names.append(candidate)
    return names


def check_header(path: Path) -> Optional[str]:
    """None when ``path`` opens as an image (header only: format, size, pixel limit), else a one-line reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
    except FileNotFoundError:
        return f"cannot read image '{path}': no such file"
    except IsADirectoryError:
        return f"cannot read image '{path}': is a directory"
    except PermissionError:
        return f"cannot read image '{path}': permission denied"
    except Image.UnidentifiedImageError:
        return f"cannot read image '{path}': not an image, or a format Pillow cannot decode"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return f"cannot read image '{path}': too many pixels"
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        return f"cannot read image '{path}': truncated or corrupt file ({' '.join(str(exc).split())})"
    if width * height > images.MAX_PIXELS:
        return f"cannot read image '{path}': {width}x{height} is over the limit of {images.MAX_PIXELS} pixels"
    if width == 0 or height == 0:
        return f"cannot read image '{path}': empty image ({width}x{height})"
    return None


def resolve_inputs(inputs: InputSpec, *, exclude: Optional[str | os.PathLike] = None, keep_going: bool = False,
                   check: bool = True, workers: int = 4) -> list[InputFile]:
    """Files, folders (recursive) and glob patterns -> the sorted, de-duplicated inputs with unique output names.

    Every input is checked (exists, readable, an image header) before anything is decoded or written: a problem
    raises one :class:`InputError`, or with ``keep_going`` is kept on the :class:`InputFile` for the manifest.
    A folder or pattern that yields no image is always an error. ``exclude`` (the output folder) is never read.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    if not inputs:
        raise InputError("no inputs given")
    skip = Path(os.path.abspath(exclude)) if exclude is not None else None
    found: list[tuple[Path, Path]] = []  # (file, the root its name is relative to)
    missing: list[tuple[Path, Path]] = []
    for raw in inputs:
        if not isinstance(raw, (str, os.PathLike)):
            raise InputError(f"inputs must be files, folders or glob patterns, got {type(raw).__name__} (stream "
                             "in-memory images with Translator.iter_translate)")
        text = os.fspath(raw)
        path = Path(text)
        if path.is_dir():
            root = Path(os.path.abspath(path))
            files = walk_images(root, skip)
            if not files:
                raise InputError(f"no images ({', '.join(images.IMAGE_EXTENSIONS)}) in folder '{text}'")
            found += [(f, root) for f in files]
        elif path.exists() or path.is_symlink():
            found.append((Path(os.path.abspath(path)), Path(os.path.abspath(path.parent))))
        elif _is_glob(text):
            base = Path(os.path.abspath(_glob_base(text)))
            matches = []
            for match in sorted(glob.glob(text, recursive=True)):
                m = Path(os.path.abspath(match))
                if skip is not None and _inside(m, skip):
                    continue
                if m.is_dir():
                    matches += walk_images(m, skip)
                elif _is_image_name(m.name) and m.is_file():
                    matches.append(m)
            if not matches:
                raise InputError(f"no images match '{text}'")
            found += [(m, base) for m in matches]
        elif keep_going:
            missing.append((Path(os.path.abspath(path)), Path(os.path.abspath(path.parent))))
        else:
            raise InputError(f"no such file or folder: '{text}'")
    seen: set[Path] = set()
    unique = []
    for file, root in found + missing:
        if file not in seen:
            seen.add(file)
            unique.append((file, root))
    common = Path(os.path.commonpath([str(root) for _, root in unique]))
    names = unique_names([f for f, _ in unique], common)
    missing_set = {f for f, _ in missing}
    errors: list[Optional[str]] = [None] * len(unique)
    if check:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            errors = list(pool.map(check_header, [f for f, _ in unique]))
    result = []
    for (file, _), name, error in zip(unique, names, errors):
        if file in missing_set:
            error = f"no such file or folder: '{file}'"
        if error is not None and not keep_going:
            raise InputError(error)
        result.append(InputFile(file, name, error))
    return result


# --------------------------------------------------------------------------------------------------------------
# streaming translation


@dataclass(frozen=True)
class JobOptions:
    """What is asked of every input; equal options (and model) make a finished manifest line reusable."""

    domain: str
    steps: Optional[int] = None
    num: int = 1
    seed: int = 0
    ref: tuple[str, ...] = ()
    source_domain: Optional[str] = None
    mode: str = "lerp"

    @property
    def per_source(self) -> int:
        """Generator rows (frames) per input."""
        return self.steps if self.steps is not None else (len(self.ref) or self.num)

    def key(self) -> dict[str, Any]:
        return {"steps": self.steps, "num": self.num, "mode": self.mode if self.steps else None,
                "ref": list(self.ref), "source_domain": self.source_domain}


@dataclass
class ItemResult:
    """One input's outcome: its :class:`Result` (a single source) or a one-line error."""

    input: InputFile
    result: Optional["Result"] = None
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None


def make_options(translator: "Translator", domain: str | int, *, steps: Optional[int] = None, num: int = 1,
                 seed: int = 0, ref: Optional[Sequence[str | os.PathLike]] | str | os.PathLike = None,
                 source_domain: Optional[str | int] = None, mode: str = "lerp") -> JobOptions:
    """Validated :class:`JobOptions` with canonical domain names (one-line errors, nothing run)."""
    refs = () if ref is None else ((os.fspath(ref),) if isinstance(ref, (str, os.PathLike)) else
                                   tuple(os.fspath(r) for r in ref))
    translator.check_request(domain, steps=steps, num=num, seed=seed, ref=list(refs) if refs else None,
                             source_domain=source_domain, mode=mode, sources=1)
    for r in refs:
        error = check_header(Path(r))
        if error:
            raise InputError(error.replace("image", "reference image", 1))
    names = translator.domains
    return JobOptions(names[translator.bundle.domain_index(domain)], steps, int(num), int(seed), refs,
                      None if source_domain is None else names[translator.bundle.domain_index(source_domain)], mode)


def _group_size(options: JobOptions, batch: int) -> int:
    return max(1, batch // options.per_source)


def _check_batch(translator: "Translator", options: JobOptions, batch_size: Optional[int],
                 count: Optional[int]) -> int:
    """The batch size, after checking that one group of inputs (frames and batches) fits in memory."""
    group = _group_size(options, batch_size or translator.max_batch)
    group = group if count is None else min(max(1, count), group)
    return translator.check_request(options.domain, steps=options.steps, num=options.num, seed=options.seed,
                                    ref=list(options.ref) or None, source_domain=options.source_domain,
                                    mode=options.mode, max_batch=batch_size, sources=group)


def stream(translator: "Translator", items: Iterable[InputFile], options: JobOptions, *,
           batch_size: Optional[int] = None, workers: int = 2, prefetch: Optional[int] = None,
           keep_going: bool = False) -> Iterator[ItemResult]:
    """Translate resolved ``items`` and yield one :class:`ItemResult` per input, in order, as batches finish.

    ``batch_size`` generator rows go to the backend at a time, across images (an input with K styles or K steps
    counts K rows); per-image results are those of :meth:`Translator.translate` / ``interpolate`` on that image
    alone (same seed, same styles; pixel values within 1/255 whatever the batch). Decoding runs ``workers``
    threads at most ``prefetch`` images ahead. A file that fails to decode is yielded as an error with
    ``keep_going``; otherwise the finished batch is yielded and the error raised.
    """
    import numpy as np

    batch = _check_batch(translator, options, batch_size, len(items) if isinstance(items, Sequence) else None)
    group = _group_size(options, batch)
    ahead = max(1, prefetch if prefetch is not None else max(2 * group, 2 * workers))
    ref = list(options.ref) or None
    target, style_meta = translator.target_styles(options.domain, options.seed, 1 if options.steps else options.num,
                                                  ref, batch)

    def decode(item: InputFile) -> "np.ndarray | str":
        if item.error is not None:
            return item.error
        try:
            image = images.load(item.path) if item.image is None else translator.load_image(item.image)
            return translator.preprocess(image)
        except InputError as exc:
            return str(exc)

    def run(ready: list[tuple[InputFile, "np.ndarray | str"]]) -> Iterator[ItemResult]:
        """Translate the decoded images of ``ready`` in one call; yield every item (errors too) in input order."""
        good = [value for _, value in ready if not isinstance(value, str)]
        result = None
        if good:
            x = np.concatenate(good)
            if options.steps is None:
                result = translator.translate_prepared(x, options.domain, target, style_meta, batch)
            else:
                result = translator.interpolate_prepared(x, options.domain, target, style_meta, options.steps,
                                                         options.source_domain, options.mode, batch)
        index = 0
        for item, value in ready:
            if isinstance(value, str):
                yield ItemResult(item, error=value)
                continue
            assert result is not None
            one = result.item(index)
            index += 1
            one.metadata["input"] = str(item.path)
            yield ItemResult(item, one)

    pending: deque[tuple[InputFile, Future]] = deque()
    source = iter(items)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="smoothgan-decode") as pool:
        try:
            def fill() -> None:
                while len(pending) < ahead:
                    item = next(source, None)
                    if item is None:
                        return
                    pending.append((item, pool.submit(decode, item)))

            fill()
            ready: list[tuple[InputFile, np.ndarray | str]] = []  # errors keep their place in the order
            decoded = 0
            while pending:
                item, future = pending.popleft()
                fill()
                value = future.result()
                if isinstance(value, str) and not keep_going:
                    if ready:
                        yield from run(ready)
                    raise InputError(value)
                ready.append((item, value))
                decoded += not isinstance(value, str)
                if decoded == group or len(ready) >= 4 * group:
                    yield from run(ready)
                    ready, decoded = [], 0
            if ready:
                yield from run(ready)
        finally:
            for _, future in pending:
                future.cancel()


def _lazy_items(inputs: Iterable[Any]) -> Iterator[InputFile]:
    for index, item in enumerate(inputs):
        if isinstance(item, InputFile):
            yield item
        elif isinstance(item, (str, os.PathLike)):
            path = Path(os.path.abspath(item))
            yield InputFile(path, PurePosixPath(path.stem))
        else:
            yield InputFile(Path(f"<array {index}>"), PurePosixPath(f"array-{index}"), image=item)


def iter_results(translator: "Translator", inputs: Any, domain: str | int, *,
                 steps: Optional[int] = None, num: int = 1, seed: int = 0, ref: Any = None,
                 source_domain: Optional[str | int] = None, mode: str = "lerp", batch_size: Optional[int] = None,
                 workers: int = 2, prefetch: Optional[int] = None, keep_going: bool = False) -> Iterator[ItemResult]:
    """Translate ``inputs`` and :func:`stream` one :class:`ItemResult` per input as its batch finishes.

    ``inputs``: files, folders and globs (a list or one of them: resolved and every file checked first, see
    :func:`resolve_inputs`), or images to stream: a ``[N, H, W, 3]`` uint8 array, a list with arrays, or any
    iterator/generator of arrays or paths (consumed lazily, at most ``prefetch`` ahead: nothing is checked up
    front, a bad item fails when it is reached, or is yielded as an error with ``keep_going``).
    """
    import numpy as np

    options = make_options(translator, domain, steps=steps, num=num, seed=seed, ref=ref,
                           source_domain=source_domain, mode=mode)
    if isinstance(inputs, np.ndarray):
        if inputs.ndim == 3:
            inputs = [inputs]
        elif inputs.ndim != 4:
            raise InputError(f"an image array must be [H, W, 3] or [N, H, W, 3], got shape {list(inputs.shape)}")
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if isinstance(inputs, (list, tuple)) and not any(isinstance(i, np.ndarray) for i in inputs):
        items: Iterable[InputFile] = (inputs if inputs and all(isinstance(i, InputFile) for i in inputs) else
                                      resolve_inputs(inputs, keep_going=keep_going, workers=workers))
    elif isinstance(inputs, Iterable):
        items = _lazy_items(inputs)
    else:
        raise InputError(f"inputs must be paths, folders, globs or images, got {type(inputs).__name__}")
    return stream(translator, items, options, batch_size=batch_size, workers=workers, prefetch=prefetch,
                  keep_going=keep_going)


# --------------------------------------------------------------------------------------------------------------
# manifest


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
    items = resolve_inputs(inputs, exclude=out_path, keep_going=keep_going, workers=workers)
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
        from smoothgan.translator import check_replaceable

        for item in todo:
            check_replaceable(out_path / str(item.name))
    return FolderPlan(items, todo, kept, options, out_path, layout)


def write_outputs(plan: FolderPlan, item: ItemResult, *, gif: bool = False, mp4: bool = False,
                  fps: float = 10) -> list[str]:
    """Write one input's outputs under ``plan.out`` in the plan's layout, each atomically; return their paths
    relative to OUT (none for a failed input). Thread-safe: inputs have distinct names."""
    options, result = plan.options, item.result
    if result is None:
        return []
    if plan.layout == "folders":
        result.save(plan.out / str(item.input.name), input=item.input.path, gif=gif, mp4=mp4, fps=fps)
        return [str(item.input.name)]
    frames = list(result.images[0])
    outputs = flat_outputs(item.input.name, options.domain, len(frames))
    for name, frame in zip(outputs, frames):
        images.save_image(plan.out / name, frame)
    stem = f"{item.input.name}_{_safe(options.domain)}"
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
        record["source_domain"] = item.result.metadata["source_domains"][0]
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
    plan.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(manifest) as tmp:
        tmp.write_bytes(b"".join(_line(record) for record in plan.kept))
    started = time.perf_counter()
    group = _group_size(plan.options, batch_size or translator.max_batch)
    with open(manifest, "ab") as handle:
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
               writers: int = 2,
               progress: Optional[Callable[[FolderSummary, ItemResult], None]] = None) -> FolderSummary:
    """Translate files/folders/globs into ``out``: validate all, then decode, batch, write, one manifest line each.

    ``gif`` defaults to on for interpolations. See :func:`plan_folder` and :func:`execute`.
    """
    options = make_options(translator, domain, steps=steps, num=num, seed=seed, ref=ref,
                           source_domain=source_domain, mode=mode)
    if not fps > 0:
        raise InputError(f"fps must be positive, got {fps}")
    plan = plan_folder(translator, inputs, out, options, layout=layout, resume=resume, keep_going=keep_going,
                       workers=max(workers, 4))
    return execute(translator, plan, batch_size=batch_size, workers=workers, prefetch=prefetch,
                   keep_going=keep_going, gif=(steps is not None) if gif is None else gif, mp4=mp4, fps=fps,
                   progress=progress, writers=writers)


__all__ = ["MANIFEST", "LAYOUTS", "InputFile", "JobOptions", "ItemResult", "FolderSummary", "FolderPlan",
           "resolve_inputs", "walk_images", "unique_names", "check_header", "make_options", "stream",
           "iter_results", "read_manifest", "flat_outputs", "write_outputs", "make_record", "record_line",
           "plan_folder", "execute", "run_folder"]
