"""Folder-job inputs: files, folders (recursive) and glob patterns -> checked inputs with unique output names."""

from __future__ import annotations

import glob
import logging
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Optional, Union

from PIL import Image

from smoothgan import images
from smoothgan.errors import InputError

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
"""One JSON line per input in OUT (see :mod:`smoothgan.jobs.folder`); no output may take this name."""
_GLOB_CHARS = "*?["

InputSpec = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]


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
                target = Path(os.path.realpath(path))  # a loop gives a path that is not a file: skipped
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
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, OSError, SyntaxError, ValueError,
            EOFError) as exc:
        return f"cannot read image '{path}': {images.read_failure(exc)}"
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
