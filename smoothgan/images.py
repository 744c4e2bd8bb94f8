"""Image I/O, the one place for it: decode and validate, resize/crop, to/from model tensors, grids, GIF and MP4.

Conventions follow the official StarGAN v2 code (REFERENCE.md §3.2-3.3):

- model input: Pillow bilinear resize (antialiased when shrinking, exactly what torchvision ``Resize`` does on a
  PIL image), then ``ToTensor`` + ``Normalize(0.5, 0.5)``: ``x / 255`` mapped to [-1, 1], float32 NCHW;
- model output: ``clamp((x + 1) / 2, 0, 1) * 255 + 0.5`` truncated to uint8 (torchvision ``save_image``: round
  half up).

Images in this module are numpy ``uint8`` arrays of shape ``[H, W, 3]`` in RGB order. No torch here: the runtime
needs numpy, Pillow and OpenCV only (OpenCV is imported lazily, for MP4 only).
"""

from __future__ import annotations

import io
import logging
import os
import struct
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageOps

from smoothgan.errors import InputError, SmoothganError
from smoothgan.fileio import atomic_path

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
ImageList = np.ndarray | Sequence[np.ndarray]
ImageInput = PathLike | np.ndarray | Image.Image

MAX_PIXELS = 64_000_000
"""Decompression-bomb limit: images with more pixels (width x height) are refused before decoding."""

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
"""Extensions :func:`list_images` picks up (case-insensitive)."""

FIT_MODES = ("crop", "stretch")
"""``crop``: centre-crop to a square, then resize; ``stretch``: resize ignoring aspect (the official behaviour)."""

# suffix -> (Pillow format, save options)
_SAVE_FORMATS: dict[str, tuple[str, dict[str, object]]] = {
    ".png": ("PNG", {}),
    ".jpg": ("JPEG", {"quality": 95}),
    ".jpeg": ("JPEG", {"quality": 95}),
    ".webp": ("WEBP", {"quality": 95}),
    ".bmp": ("BMP", {}),
}

# What a decoder may raise on a corrupt or truncated file (Pillow's plugins are not uniform about it).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, Image.DecompressionBombError)

_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _read_error(path: PathLike, reason: str) -> InputError:
    return InputError(f"cannot read image '{path}': {reason}")


def read_failure(exc: BaseException) -> str:
    """Why opening or decoding an image failed, in words (shared by full decodes and header checks).

    A file-system error (it carries an errno: a symlink loop, an I/O error) is not called a corrupt file.
    """
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"too many pixels ({_one_line(exc)})"
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image, or a format Pillow cannot decode"
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"cannot open it ({exc.strerror or _one_line(exc)})"
    return f"truncated or corrupt file ({_one_line(exc)})"


# --------------------------------------------------------------------------------------------------------------
# decoding


class ImageTooLargeError(InputError):
    """An image over the pixel limit (servers answer 413 for it, other bad images are 400)."""


def load(path: PathLike) -> np.ndarray:
    """Read an image file as ``uint8 [H, W, 3]`` RGB, upright (EXIF orientation applied).

    Mode conversion: grayscale and bilevel are replicated to three channels; CMYK uses Pillow's conversion;
    16-bit grayscale (``I;16*``, and ``I``, clipped to [0, 65535]) is scaled with ``round(v * 255 / 65535)``;
    anything with transparency (alpha channel, palette alpha or a ``transparency`` key) is composited over a
    **white** background. Animated files give their first frame.

    Raises :class:`InputError` ("cannot read image '<path>': <reason>") for a missing file, a directory, a file
    that is not an image, a truncated or corrupt file, or one with more than :data:`MAX_PIXELS` pixels.
    """
    p = Path(path)
    if not p.exists():
        raise _read_error(path, "no such file")
    if p.is_dir():
        raise _read_error(path, "is a directory")
    return decode(p, str(path))


def decode(source: PathLike | bytes, name: str, max_pixels: Optional[int] = None) -> np.ndarray:
    """Decode a file or encoded bytes (a request body) with :func:`load`'s conversions, as ``uint8 [H, W, 3]``.

    ``name`` is how errors call the image. The pixel count is checked on the header, before decoding
    (:class:`ImageTooLargeError`, default limit :data:`MAX_PIXELS`); every other failure is an
    :class:`InputError` with a one-line reason.
    """
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    if isinstance(source, (bytes, bytearray, memoryview)) and not source:
        raise _read_error(name, "empty: no bytes")
    stream = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check only warns below 2x its limit; make it an error like ours.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise ImageTooLargeError(
                        f"cannot read image '{name}': {width}x{height} is {width * height / 1e6:.1f} megapixels, "
                        f"over the limit of {max_pixels / 1e6:.1f} megapixels")
                if width == 0 or height == 0:
                    raise _read_error(name, f"empty image ({width}x{height})")
                im.load()
                upright = ImageOps.exif_transpose(im)
                return _to_rgb(upright)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"cannot read image '{name}': {read_failure(exc)}") from exc
    except _DECODE_ERRORS as exc:
        raise _read_error(name, read_failure(exc)) from exc


def _has_alpha(im: Image.Image) -> bool:
    if hasattr(im, "has_transparency_data"):  # Pillow >= 10.1
        return bool(im.has_transparency_data)
    return im.mode in _ALPHA_MODES or "transparency" in im.info or (
        im.mode == "P" and im.palette is not None and im.palette.mode.endswith("A")
    )


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Convert a decoded Pillow image of any mode to ``uint8 [H, W, 3]`` RGB (see :func:`load`)."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(im).astype(np.float64)  # I;16B is big-endian uint16, I is int32
        gray = np.rint(np.clip(values, 0, 65535) * (255.0 / 65535.0)).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if _has_alpha(im):
        rgba = np.asarray(im.convert("RGBA")).astype(np.uint32)
        alpha = rgba[:, :, 3:4]
        # round(c * a / 255 + 255 * (1 - a / 255)), in integers
        out = (rgba[:, :, :3] * alpha + 255 * (255 - alpha) + 127) // 255
        return np.ascontiguousarray(out.astype(np.uint8))
    if mode != "RGB":
        im = im.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV, F (clipped to [0, 255])
    return np.array(im, dtype=np.uint8)


def from_pil(im: Image.Image) -> np.ndarray:
    """An in-memory Pillow image as ``uint8 [H, W, 3]`` RGB, with exactly :func:`load`'s conversions (EXIF
    orientation, modes, alpha over white), so a PIL image and the file it came from translate the same."""
    width, height = im.size
    if width == 0 or height == 0:
        raise InputError(f"PIL image is empty ({width}x{height})")
    try:
        im.load()  # as decode does: Pillow's TIFF reader applies its orientation tag on load
        return _to_rgb(ImageOps.exif_transpose(im))
    except _DECODE_ERRORS as exc:  # a lazily loaded image whose file is truncated
        raise InputError(f"cannot read PIL image: {read_failure(exc)}") from exc


def as_rgb(item: ImageInput, what: str = "image") -> np.ndarray:
    """One input image as ``uint8 [H, W, 3]`` RGB: the input policy of every API (translator, jobs, faces).

    A path is decoded (:func:`load`), a PIL image converted exactly as its file would be (:func:`from_pil`), a
    uint8 array taken as RGB: ``[H, W, 3]`` as is, ``[H, W]``/``[H, W, 1]`` grey replicated, ``[H, W, 4]`` RGBA
    composited over white like a file's alpha. Float arrays are refused rather than guessed at ([0, 1] or
    [0, 255]?); anything else is a one-line :class:`InputError`.
    """
    if isinstance(item, (str, os.PathLike)):
        return load(item)
    if isinstance(item, Image.Image):
        return from_pil(item)
    if not isinstance(item, np.ndarray):
        raise InputError(f"{what} must be a path, a uint8 array or a PIL image, got {type(item).__name__}")
    channels = item.shape[2] if item.ndim == 3 else 1 if item.ndim == 2 else 0
    if item.dtype != np.uint8 or channels not in (1, 3, 4):
        hint = "; for floats in [0, 1] pass (x * 255).round().astype(np.uint8)" if item.dtype.kind == "f" else ""
        raise InputError(f"{what} arrays must be uint8 [H, W, 3] RGB ([H, W] grey and [H, W, 4] RGBA are "
                         f"converted), got {item.dtype} {list(item.shape)}{hint}")
    if item.shape[0] == 0 or item.shape[1] == 0:
        raise InputError(f"{what} array is empty ({item.shape[1]}x{item.shape[0]})")
    if channels == 3:
        return item
    if channels == 1:
        return np.ascontiguousarray(np.repeat(item.reshape(item.shape[0], item.shape[1], 1), 3, axis=2))
    return _to_rgb(Image.fromarray(np.ascontiguousarray(item), "RGBA"))


# --------------------------------------------------------------------------------------------------------------
# to and from model tensors


def _check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} {list(image.shape)}" if isinstance(image, np.ndarray) else type(image).__name__
        raise InputError(f"{what} must be a uint8 [H, W, 3] RGB array, got {desc}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"{what} is empty ({image.shape[1]}x{image.shape[0]})")
    return image


def _as_list(images: ImageList, what: str) -> list[np.ndarray]:
    if isinstance(images, np.ndarray):
        batch = [images] if images.ndim == 3 else list(images) if images.ndim == 4 else None
        if batch is None:
            raise InputError(f"{what} must be [H, W, 3] or [N, H, W, 3], got shape {list(images.shape)}")
    else:
        batch = list(images)
    if not batch:
        raise InputError(f"no {what} given")
    return [_check_image(image, what) for image in batch]


def center_crop_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square of ``image`` (offsets rounded down); a view, no copy."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top : top + side, left : left + side]


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``uint8 [H, W, 3]`` to ``size = (height, width)`` with Pillow bilinear (antialiased when shrinking)."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def to_model_input(images: ImageList, img_size: int, fit: str = "crop") -> np.ndarray:
    """Images -> ``float32 [B, 3, img_size, img_size]`` in [-1, 1], ready for the networks.

    ``images``: one ``uint8 [H, W, 3]`` array, a ``[B, H, W, 3]`` array or a list of arrays (sizes may differ).
    ``fit="crop"`` centre-crops each image to a square and resizes it; ``fit="stretch"`` resizes to a square
    ignoring the aspect ratio (what the official code does). Scaling is ``ToTensor`` then ``Normalize(0.5, 0.5)``.
    """
    if fit not in FIT_MODES:
        raise InputError(f"fit must be one of {', '.join(FIT_MODES)}; got {fit!r}")
    if isinstance(img_size, bool) or not isinstance(img_size, (int, np.integer)) or img_size < 1:
        raise InputError(f"img_size must be a positive integer, got {img_size!r}")
    batch = _as_list(images, "image")
    out = np.empty((len(batch), 3, img_size, img_size), dtype=np.float32)
    for i, image in enumerate(batch):
        if fit == "crop":
            image = center_crop_square(image)
        square = resize(np.ascontiguousarray(image), (img_size, img_size))
        unit = square.transpose(2, 0, 1).astype(np.float32) / np.float32(255)  # ToTensor
        out[i] = (unit - np.float32(0.5)) / np.float32(0.5)  # Normalize(0.5, 0.5), same float32 ops as torch
    return out


def from_model_output(x: np.ndarray) -> np.ndarray:
    """Model output ``[B, 3, H, W]`` or ``[3, H, W]`` in [-1, 1] -> ``uint8 [B, H, W, 3]``.

    ``clamp((x + 1) / 2, 0, 1) * 255 + 0.5`` truncated (round half up), as torchvision ``save_image``; values
    outside [-1, 1] are clamped, NaN becomes black (0).
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise InputError(f"model output must be [B, 3, H, W] or [3, H, W], got shape {list(x.shape)}")
    x = np.nan_to_num(x.astype(np.float32, copy=False), nan=-1.0, posinf=1.0, neginf=-1.0)
    unit = np.clip((x + np.float32(1)) / np.float32(2), 0, 1)
    scaled = np.clip(unit * np.float32(255) + np.float32(0.5), 0, 255)
    return np.ascontiguousarray(scaled.astype(np.uint8).transpose(0, 2, 3, 1))


# --------------------------------------------------------------------------------------------------------------
# writing


def _write_error(path: PathLike, kind: str, exc: BaseException) -> InputError:
    return InputError(f"cannot write {kind} '{path}': {_one_line(exc)}")


def save_image(path: PathLike, image: np.ndarray) -> None:
    """Write ``uint8 [H, W, 3]`` RGB atomically; format by suffix: .png, .jpg/.jpeg (quality 95), .webp, .bmp."""
    suffix = Path(path).suffix.lower()
    if suffix not in _SAVE_FORMATS:
        raise InputError(
            f"cannot write image '{path}': unknown suffix {suffix or '(none)'!r}; use one of "
            f"{', '.join(_SAVE_FORMATS)}"
        )
    fmt, options = _SAVE_FORMATS[suffix]
    pil = Image.fromarray(np.ascontiguousarray(_check_image(image)))
    try:
        with atomic_path(path) as tmp:
            pil.save(tmp, format=fmt, **options)
    except OSError as exc:
        raise _write_error(path, "image", exc) from exc


def make_grid(images: ImageList, ncols: int, padding: int = 0, pad_value: int = 255) -> np.ndarray:
    """Tile equally sized ``uint8 [H, W, 3]`` images row by row into ``ceil(N / ncols)`` rows of ``ncols``.

    ``padding`` pixels of ``pad_value`` go *between* tiles only (no outer border, unlike torchvision's
    ``make_grid``); the official grids use padding 0. Empty cells of the last row are filled with ``pad_value``.
    """
    batch = _as_list(images, "grid image")
    if ncols < 1:
        raise InputError(f"ncols must be at least 1, got {ncols}")
    if padding < 0:
        raise InputError(f"padding must be >= 0, got {padding}")
    height, width = batch[0].shape[:2]
    for image in batch:
        if image.shape[:2] != (height, width):
            raise InputError(
                f"grid images must all be the same size: {width}x{height} and {image.shape[1]}x{image.shape[0]}"
            )
    ncols = min(ncols, len(batch))
    nrows = -(-len(batch) // ncols)
    grid = np.full(
        (nrows * height + (nrows - 1) * padding, ncols * width + (ncols - 1) * padding, 3), pad_value, np.uint8
    )
    for i, image in enumerate(batch):
        row, col = divmod(i, ncols)
        top, left = row * (height + padding), col * (width + padding)
        grid[top : top + height, left : left + width] = image
    return grid


def make_strip(images: ImageList, padding: int = 0, pad_value: int = 255) -> np.ndarray:
    """Equally sized images side by side, left to right: ``[H, N * W + (N - 1) * padding, 3]``."""
    batch = _as_list(images, "strip image")
    return make_grid(batch, ncols=len(batch), padding=padding, pad_value=pad_value)


def _check_frames(frames: ImageList) -> list[np.ndarray]:
    batch = _as_list(frames, "frame")
    first = batch[0].shape
    for i, frame in enumerate(batch):
        if frame.shape != first:
            raise InputError(
                f"frames must all be the same size: frame 0 is {first[1]}x{first[0]}, "
                f"frame {i} is {frame.shape[1]}x{frame.shape[0]}"
            )
    return batch


def _check_fps(fps: float) -> None:
    if not fps > 0:
        raise InputError(f"fps must be positive, got {fps}")


def save_gif(path: PathLike, frames: ImageList, fps: float = 10, loop: int = 0, boomerang: bool = False) -> None:
    """Write an animated GIF atomically (``loop=0``: forever).

    ``boomerang=True`` plays the frames forward then backward (end frames not repeated), a seamless loop.
    Each frame gets its own adaptive 256-colour palette; Pillow merges identical consecutive frames into one
    longer frame.
    """
    batch = _check_frames(frames)
    _check_fps(fps)
    if boomerang and len(batch) > 2:
        batch = batch + batch[-2:0:-1]
    pils = [Image.fromarray(np.ascontiguousarray(frame)) for frame in batch]
    duration = max(int(round(1000 / fps)), 10)  # ms; GIF stores hundredths of a second
    try:
        with atomic_path(path) as tmp:
            pils[0].save(
                tmp, format="GIF", save_all=True, append_images=pils[1:], duration=duration, loop=loop, optimize=False
            )
    except OSError as exc:
        raise _write_error(path, "GIF", exc) from exc


def save_mp4(path: PathLike, frames: ImageList, fps: float = 10) -> None:
    """Write an MPEG-4 video (OpenCV, fourcc ``mp4v``) atomically.

    The codec needs even dimensions: an odd width or height is padded by one pixel, repeating the last
    column/row. Raises :class:`SmoothganError` when OpenCV cannot open a writer.
    """
    import cv2  # lazy: only videos need it

    batch = _check_frames(frames)
    _check_fps(fps)
    height, width = batch[0].shape[:2]
    pad_h, pad_w = height % 2, width % 2
    if pad_h or pad_w:
        logger.debug("padding %dx%d frames to %dx%d for the mp4v codec", width, height, width + pad_w, height + pad_h)
    try:
        with atomic_path(path) as tmp:
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            writer = cv2.VideoWriter(str(tmp), fourcc, float(fps), (width + pad_w, height + pad_h))
            if not writer.isOpened():
                raise SmoothganError(
                    f"cannot write video '{path}': OpenCV could not open an MP4 writer (fourcc mp4v); "
                    "is opencv-python(-headless) built with FFMPEG?"
                )
            try:
                for frame in batch:
                    if pad_h or pad_w:
                        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
                    writer.write(np.ascontiguousarray(frame[:, :, ::-1]))  # RGB -> BGR
            finally:
                writer.release()
            if tmp.stat().st_size == 0:
                raise SmoothganError(f"cannot write video '{path}': OpenCV wrote an empty file")
    except OSError as exc:
        raise _write_error(path, "video", exc) from exc


# --------------------------------------------------------------------------------------------------------------
# discovery


def list_images(folder: PathLike, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` (extensions :data:`IMAGE_EXTENSIONS`, any case), sorted.

    Hidden files (name starting with ``.``, e.g. macOS ``._x.jpg`` or our own atomic-write temporaries) are
    skipped. Raises :class:`InputError` if ``folder`` is not a directory.
    """
    root = Path(folder)
    if not root.is_dir():
        reason = "no such folder" if not root.exists() else "not a folder"
        raise InputError(f"cannot list images in '{folder}': {reason}")
    candidates = root.rglob("*") if recursive else root.iterdir()
    return sorted(
        p for p in candidates if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


__all__ = [
    "MAX_PIXELS",
    "as_rgb",
    "from_pil",
    "read_failure",
    "IMAGE_EXTENSIONS",
    "FIT_MODES",
    "load",
    "center_crop_square",
    "resize",
    "to_model_input",
    "from_model_output",
    "save_image",
    "make_grid",
    "make_strip",
    "save_gif",
    "save_mp4",
    "list_images",
]
