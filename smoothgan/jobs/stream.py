"""Streaming translation: decode ahead in threads, batch across images, yield per-input results in order."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Optional

from smoothgan import images
from smoothgan.errors import InputError
from smoothgan.jobs.aligned import AlignedPhoto, align_photo
from smoothgan.jobs.inputs import InputFile, check_header, resolve_inputs

if TYPE_CHECKING:
    from smoothgan.results import Result
    from smoothgan.translator import Translator

Decoded = tuple[Any, Optional[AlignedPhoto]]  # model input float32 [F, 3, S, S] and, with align, the photo

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
    align: bool = False  # translate the faces of each photo (CelebA-HQ aligned), not the whole image
    paste_back: bool = False  # with align: paste the translated faces back into the full photo
    max_faces: Optional[int] = None  # with align: the largest N faces of each photo

    @property
    def per_source(self) -> int:
        """Generator rows (frames) per source image (per face with ``align``)."""
        return self.steps if self.steps is not None else (len(self.ref) or self.num)

    def key(self) -> dict[str, Any]:
        key = {"steps": self.steps, "num": self.num, "mode": self.mode if self.steps else None,
               "ref": list(self.ref), "source_domain": self.source_domain}
        if self.align:
            key.update(align=True, paste_back=self.paste_back, max_faces=self.max_faces)
        return key


@dataclass
class ItemResult:
    """One input's outcome: its :class:`Result` (a single source; one per face with ``align``) or a one-line error."""

    input: InputFile
    result: Optional["Result"] = None
    error: Optional[str] = None
    aligned: Optional[AlignedPhoto] = None  # with align: the photo and its faces (result sources are the faces)

    @property
    def ok(self) -> bool:
        return self.error is None


def make_options(translator: "Translator", domain: str | int, *, steps: Optional[int] = None, num: int = 1,
                 seed: int = 0, ref: Optional[Sequence[str | os.PathLike]] | str | os.PathLike = None,
                 source_domain: Optional[str | int] = None, mode: str = "lerp", align: Optional[bool] = None,
                 paste_back: bool = False, max_faces: Optional[int] = None) -> JobOptions:
    """Validated :class:`JobOptions` with canonical domain names (one-line errors, nothing run).

    ``align=None`` follows the bundle: on when its preprocessing records face alignment (``smoothgan import
    --align face``, the default for models with a FAN), off otherwise.
    """
    if align is None:
        align = translator.bundle.preprocessing.get("align") == "face"
    if paste_back and not align:
        raise InputError("paste-back needs face alignment: add --align on (or align=True)")
    if max_faces is not None and (type(max_faces) is not int or max_faces < 1):
        raise InputError(f"max faces must be a whole number >= 1, got {max_faces!r}")
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
                      None if source_domain is None else names[translator.bundle.domain_index(source_domain)], mode,
                      bool(align), bool(paste_back) and bool(align), max_faces if align else None)


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

    def decode(item: InputFile) -> "Decoded | str":
        if item.error is not None:
            return item.error
        try:
            image = images.load(item.path) if item.image is None else translator.load_image(item.image)
            if options.align:
                return align_photo(translator, image, str(item.path), options.max_faces)
            return translator.preprocess(image), None
        except InputError as exc:
            return str(exc)

    def run(ready: list[tuple[InputFile, "Decoded | str"]]) -> Iterator[ItemResult]:
        """Translate the decoded images of ``ready`` in one call; yield every item (errors too) in input order."""
        good = [value[0] for _, value in ready if not isinstance(value, str)]
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
            count = len(value[0])  # sources of this input: 1, or its faces
            one = result.part(index, index + count)
            index += count
            one.metadata["input"] = str(item.path)
            yield ItemResult(item, one, aligned=value[1])

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
            ready: list[tuple[InputFile, Decoded | str]] = []  # errors keep their place in the order
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
                decoded += 0 if isinstance(value, str) else len(value[0])
                if decoded >= group or len(ready) >= 4 * group:
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
                 workers: int = 2, prefetch: Optional[int] = None, keep_going: bool = False,
                 align: Optional[bool] = None, paste_back: bool = False,
                 max_faces: Optional[int] = None) -> Iterator[ItemResult]:
    """Translate ``inputs`` and :func:`stream` one :class:`ItemResult` per input as its batch finishes.

    ``inputs``: files, folders and globs (a list or one of them: resolved and every file checked first, see
    :func:`resolve_inputs`), or images to stream: a ``[N, H, W, 3]`` uint8 array, a list with arrays or PIL
    images, or any iterator/generator of arrays, PIL images or paths (consumed lazily, at most ``prefetch``
    ahead: nothing is checked up front, a bad item fails when it is reached, or is yielded as an error with
    ``keep_going``).
    """
    import numpy as np
    from PIL import Image

    options = make_options(translator, domain, steps=steps, num=num, seed=seed, ref=ref,
                           source_domain=source_domain, mode=mode, align=align, paste_back=paste_back,
                           max_faces=max_faces)
    if isinstance(inputs, np.ndarray):
        if inputs.ndim == 3:
            inputs = [inputs]
        elif inputs.ndim != 4:
            raise InputError(f"an image array must be [H, W, 3] or [N, H, W, 3], got shape {list(inputs.shape)}")
    if isinstance(inputs, (str, os.PathLike, Image.Image)):
        inputs = [inputs]
    if isinstance(inputs, (list, tuple)) and not any(isinstance(i, (np.ndarray, Image.Image)) for i in inputs):
        items: Iterable[InputFile] = (inputs if inputs and all(isinstance(i, InputFile) for i in inputs) else
                                      resolve_inputs(inputs, keep_going=keep_going, workers=workers))
    elif isinstance(inputs, Iterable):
        items = _lazy_items(inputs)
    else:
        raise InputError(f"inputs must be paths, folders, globs or images, got {type(inputs).__name__}")
    return stream(translator, items, options, batch_size=batch_size, workers=workers, prefetch=prefetch,
                  keep_going=keep_going)
