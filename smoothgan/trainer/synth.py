"""A procedural multi-domain image set for fast, verifiable training runs (numpy + Pillow only).

Why: real data sets (CelebA-HQ, AFHQ) are large and say nothing exact about what a translation should keep. Here
every image is rendered from a small record of attributes, split into three groups that mirror the task:

- **domain** = the shape class (circle, square, triangle, diamond): what a translation must change;
- **style** = foreground colour and texture (none, stripes, checker; frequency, angle, phase): what varies within
  a domain and what the style code should capture;
- **content** = object position (cx, cy), size and the background gradient: drawn from one distribution shared
  by every domain, so a translation should keep it.

Units: ``cx``, ``cy`` and ``size`` are fractions of the image side; ``size`` is half the side of the object's
axis-aligned bounding box, whose centre is (cx, cy), for every shape. So :func:`estimate_content` can measure the
content of any image (a translation included) without knowing its domain.

Layout written by :func:`generate` (the domain-per-folder layout of REFERENCE 3.1)::

    out_dir/train/<domain>/00000.png   out_dir/val/<domain>/00000.png
    out_dir/attributes.jsonl           one row per image: split, domain, file, content and style attributes
    out_dir/synth.json                 parameters, seed, format version

Images are deterministic functions of (seed, shape, image index): each image has its own numpy generator seeded
with ``[seed, shape code, index]``, so the same seed gives identical bytes.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from smoothgan.config import check_value
from smoothgan.errors import InputError
from smoothgan.fileio import atomic_dir, is_staging_name, read_marker, target_entries

log = logging.getLogger(__name__)

FORMAT = "smoothgan-synth"
FORMAT_VERSION = 1

# The shape table: the code is part of each image's seed, so never reorder it, only append.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
TEXTURES: tuple[str, ...] = ("none", "stripes", "checker")
DEFAULT_DOMAINS: tuple[str, ...] = ("circle", "square", "triangle")

# Colour ranges chosen so that every foreground colour (and its darker texture colour) differs from every
# background colour by at least MIN_CONTRAST in some channel: background channels >= 0.58, foreground minimum
# channel <= v_max * (1 - s_min) = 0.315. This is what makes :func:`estimate_content` reliable.
MIN_CONTRAST = 64
_BG_GREY = (0.62, 0.95)
_BG_TINT = 0.04
_FG_SAT = (0.65, 1.0)
_FG_VAL = (0.45, 0.9)
_TEXTURE_DARKEN = 0.5
_SIZE = (0.14, 0.3)
_MARGIN = 0.06  # distance kept between the bounding box and the image border (keeps the border background)


@dataclass(frozen=True)
class SynthAttributes:
    """Everything :func:`render` needs: the domain (shape), content and style of one image."""

    domain: str
    # content, shared distribution across domains
    cx: float
    cy: float
    size: float
    bg_start: tuple[int, int, int]
    bg_end: tuple[int, int, int]
    bg_angle: float  # degrees; direction of the linear background gradient
    # style, varies within a domain
    fg: tuple[int, int, int]
    texture: str
    texture_freq: float  # periods across the object's bounding box
    texture_angle: float  # degrees
    texture_phase: float  # in periods, [0, 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested form (the ``attributes.jsonl`` row without split and file)."""
        return {
            "domain": self.domain,
            "cx": self.cx,
            "cy": self.cy,
            "size": self.size,
            "background": {"start": list(self.bg_start), "end": list(self.bg_end), "angle": self.bg_angle},
            "fg": list(self.fg),
            "texture": {
                "kind": self.texture,
                "freq": self.texture_freq,
                "angle": self.texture_angle,
                "phase": self.texture_phase,
            },
        }

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> SynthAttributes:
        """Inverse of :meth:`to_dict`; extra keys of an ``attributes.jsonl`` row (split, file) are ignored.

        Types are checked, not coerced (:func:`smoothgan.config.check_value`): a string where a number belongs is
        an error naming the key.
        """
        where = "synthetic attributes row"

        def get(node: Any, key: str, hint: Any, path: str) -> Any:
            if not isinstance(node, Mapping) or key not in node:
                raise InputError(f"malformed {where}: no {path}")
            return check_value(node[key], hint, f"{where}: {path}", InputError)

        rgb = tuple[int, int, int]
        bg = get(row, "background", Any, "background")
        tex = get(row, "texture", Any, "texture")
        values = dict(
            domain=get(row, "domain", str, "domain"),
            cx=get(row, "cx", float, "cx"),
            cy=get(row, "cy", float, "cy"),
            size=get(row, "size", float, "size"),
            bg_start=get(bg, "start", rgb, "background.start"),
            bg_end=get(bg, "end", rgb, "background.end"),
            bg_angle=get(bg, "angle", float, "background.angle"),
            fg=get(row, "fg", rgb, "fg"),
            texture=get(tex, "kind", str, "texture.kind"),
            texture_freq=get(tex, "freq", float, "texture.freq"),
            texture_angle=get(tex, "angle", float, "texture.angle"),
            texture_phase=get(tex, "phase", float, "texture.phase"),
        )
        for key in ("bg_start", "bg_end", "fg"):
            if not all(0 <= c <= 255 for c in values[key]):
                raise InputError(f"malformed {where}: {key} channels must be in 0..255, got {list(values[key])}")
        return cls(**values)


class Content(NamedTuple):
    """Object position and size as fractions of the image side (see the module docstring)."""

    cx: float
    cy: float
    size: float


def _rgb(values: Sequence[Any]) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in values)
    return (r, g, b)


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return _rgb(round(255 * c) for c in rgb)


def _check_domain(domain: str) -> None:
    if domain not in SHAPES:
        raise InputError(f"unknown synthetic domain {domain!r}; choose from {', '.join(SHAPES)}")


def sample_content(rng: np.random.Generator) -> dict[str, Any]:
    """Draw content attributes (position, size, background); the same distribution for every domain."""
    size = float(rng.uniform(*_SIZE))
    lo, hi = _MARGIN + size, 1.0 - _MARGIN - size
    cx, cy = (float(rng.uniform(lo, hi)) for _ in range(2))
    ends = []
    for _ in range(2):
        grey = rng.uniform(*_BG_GREY)
        ends.append(_rgb(round(255 * (grey + rng.uniform(-_BG_TINT, _BG_TINT))) for _ in range(3)))
    return {
        "cx": round(cx, 4),
        "cy": round(cy, 4),
        "size": round(size, 4),
        "bg_start": ends[0],
        "bg_end": ends[1],
        "bg_angle": round(float(rng.uniform(0.0, 360.0)), 2),
    }


def sample_style(rng: np.random.Generator) -> dict[str, Any]:
    """Draw style attributes (foreground colour and texture); the same distribution for every domain."""
    fg = _hsv_to_rgb(float(rng.uniform()), float(rng.uniform(*_FG_SAT)), float(rng.uniform(*_FG_VAL)))
    return {
        "fg": fg,
        "texture": TEXTURES[int(rng.integers(len(TEXTURES)))],
        "texture_freq": round(float(rng.uniform(1.5, 4.0)), 3),
        "texture_angle": round(float(rng.uniform(0.0, 180.0)), 2),
        "texture_phase": round(float(rng.uniform()), 3),
    }


def sample_attributes(rng: np.random.Generator, domain: str) -> SynthAttributes:
    """Draw one image's attributes: content first, then style, from ``rng``."""
    _check_domain(domain)
    return SynthAttributes(domain=domain, **sample_content(rng), **sample_style(rng))


def _signed_distance(domain: str, x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    """Signed distance in pixels (negative inside) to the shape; half-plane form for the polygons."""
    dx, dy = x - cx, y - cy
    if domain == "circle":
        return np.hypot(dx, dy) - r
    if domain == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - r
    if domain == "diamond":
        return (np.abs(dx) + np.abs(dy) - r) / math.sqrt(2.0)
    # triangle: apex (cx, cy - r), base corners (cx -+ r, cy + r); outward edge normals (-+2, -1)/sqrt(5), (0, 1)
    top = dy + r
    sides = (2.0 * np.abs(dx) - top) / math.sqrt(5.0)
    return np.maximum(sides, dy - r)


def render(attrs: SynthAttributes | Mapping[str, Any], img_size: int) -> np.ndarray:
    """Render attributes to a uint8 ``[img_size, img_size, 3]`` image (analytic anti-aliasing, pure numpy)."""
    a = attrs if isinstance(attrs, SynthAttributes) else SynthAttributes.from_dict(attrs)
    _check_domain(a.domain)
    if a.texture not in TEXTURES:
        raise InputError(f"unknown texture {a.texture!r}; choose from {', '.join(TEXTURES)}")
    n = int(img_size)
    centres = np.arange(n, dtype=np.float64) + 0.5  # pixel centres, in pixels
    x, y = np.meshgrid(centres, centres)  # [H, W]

    # background: linear gradient along bg_angle; t stays in [0, 1] over the unit square
    phi = math.radians(a.bg_angle)
    t = 0.5 + ((x / n - 0.5) * math.cos(phi) + (y / n - 0.5) * math.sin(phi)) / math.sqrt(2.0)
    start, end = np.asarray(a.bg_start, np.float64), np.asarray(a.bg_end, np.float64)
    image = start + (end - start) * t[..., None]  # [H, W, 3]

    cx, cy, r = a.cx * n, a.cy * n, a.size * n
    coverage = np.clip(0.5 - _signed_distance(a.domain, x, y, cx, cy, r), 0.0, 1.0)[..., None]

    fg = np.asarray(a.fg, np.float64)
    if a.texture == "none":
        colour = np.broadcast_to(fg, image.shape)
    else:
        theta = math.radians(a.texture_angle)
        scale = a.texture_freq / max(2.0 * r, 1e-6)  # periods per pixel
        u = ((x - cx) * math.cos(theta) + (y - cy) * math.sin(theta)) * scale + a.texture_phase
        if a.texture == "stripes":
            dark = np.mod(u, 1.0) >= 0.5
        else:
            v = (-(x - cx) * math.sin(theta) + (y - cy) * math.cos(theta)) * scale
            dark = (np.floor(2.0 * u) + np.floor(2.0 * v)) % 2 == 1
        colour = np.where(dark[..., None], np.round(fg * _TEXTURE_DARKEN), fg)
    image = image * (1.0 - coverage) + colour * coverage
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def estimate_content(image: np.ndarray, threshold: float = MIN_CONTRAST / 2, min_pixels: int = 1) -> Content:
    """Recover (cx, cy, size) of the foreground object of an image, as fractions of the image side.

    The background is fitted as a plane per channel (a linear gradient, as rendered) to the outermost pixel ring;
    pixels that differ from it by more than ``threshold`` in some channel are foreground, and the content is
    read off their bounding box. Rows/columns with fewer than ``min_pixels`` foreground pixels are ignored
    (raise it for noisy generator outputs). Exact to about a pixel on clean synthetic images. Returns NaNs when
    no foreground is found, so a metric can count failures instead of stopping.
    """
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 4 or arr.shape[1] < 4:
        raise InputError(f"estimate_content expects an HxWx3 image of at least 4x4, got shape {arr.shape}")
    img = arr.astype(np.float64)
    h, w = img.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    ring = np.zeros((h, w), bool)
    ring[[0, -1], :] = True
    ring[:, [0, -1]] = True
    design = np.stack([np.ones(int(ring.sum())), xs[ring], ys[ring]], axis=1)  # [P, 3]
    coef, *_ = np.linalg.lstsq(design, img[ring], rcond=None)  # [3 (1, x, y), 3 channels]
    background = coef[0] + xs[..., None] * coef[1] + ys[..., None] * coef[2]
    mask = np.abs(img - background).max(axis=2) > threshold  # [H, W]
    rows = np.flatnonzero(mask.sum(axis=1) >= min_pixels)
    cols = np.flatnonzero(mask.sum(axis=0) >= min_pixels)
    if rows.size == 0 or cols.size == 0:
        return Content(math.nan, math.nan, math.nan)
    x0, x1, y0, y1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1  # pixel edges of the bounding box
    return Content(
        cx=float((x0 + x1) / 2 / w),
        cy=float((y0 + y1) / 2 / h),
        size=float(((x1 - x0) / w + (y1 - y0) / h) / 4),
    )


SYNTH_ENTRIES = ("train", "val", "attributes.jsonl", "synth.json")  # what generate() writes at the top level


def _check_target(out: Path, overwrite: bool) -> None:
    """Refuse to replace anything but an earlier synthetic set (and only with ``overwrite``) holding nothing but
    what :func:`generate` wrote: every image listed in its ``attributes.jsonl``, no other files."""
    entries = target_entries(out, "choose another folder")
    if not entries:
        return
    try:
        read_marker(out / "synth.json", FORMAT, FORMAT_VERSION, InputError, "a synthetic data set description")
    except InputError:
        raise InputError(f"{out} is not empty and is not a synthetic data set; choose another folder") from None
    if not overwrite:
        raise InputError(f"{out} already holds a synthetic data set; pass overwrite=True to replace it")
    foreign = [name for name in entries if name not in SYNTH_ENTRIES and not is_staging_name(name)]
    written = {row.get("file") for row in read_attributes(out) if isinstance(row, dict)}
    for split in ("train", "val"):
        for path in sorted((out / split).rglob("*")) if (out / split).is_dir() else []:
            rel = path.relative_to(out).as_posix()
            if (path.is_symlink() or not path.is_dir()) and rel not in written:
                foreign.append(rel)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" (+{len(foreign) - 3} more)" if len(foreign) > 3 else "")
        raise InputError(f"{out} holds files the synthetic generator did not write ({shown}); refusing to replace "
                         "it (move them away or choose another folder)")


def generate(
    out_dir: str | os.PathLike[str],
    num_per_domain: int = 1000,
    img_size: int = 64,
    seed: int = 0,
    domains: Sequence[str] = DEFAULT_DOMAINS,
    val_fraction: float = 0.1,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic domain-per-folder data set and return its root.

    ``num_per_domain`` images are rendered per domain; the last ``round(num_per_domain * val_fraction)`` of them
    go to ``val/``, the rest to ``train/``. The set is built in a hidden staging sibling and swapped into place
    (:func:`smoothgan.fileio.atomic_dir`), so a crash never leaves a half-written data set; an existing folder is
    replaced only if it is an earlier set holding nothing but what this function wrote.
    """
    domains = tuple(domains)
    for domain in domains:
        _check_domain(domain)
    if len(set(domains)) != len(domains) or not domains:
        raise InputError(f"domains must be distinct and non-empty, got {domains}")
    if num_per_domain < 1 or img_size < 8 or not 0.0 <= val_fraction < 1.0:
        raise InputError("need num_per_domain >= 1, img_size >= 8 and 0 <= val_fraction < 1")
    n_val = int(round(num_per_domain * val_fraction))
    n_train = num_per_domain - n_val
    out = Path(out_dir)
    _check_target(out, overwrite)
    with atomic_dir(out, before_replace=lambda target: _check_target(target, overwrite)) as tmp:
        rows = []
        for split, indices in (("train", range(n_train)), ("val", range(n_train, num_per_domain))):
            for domain in domains:
                folder = tmp / split / domain
                folder.mkdir(parents=True)
                for k, index in enumerate(indices):
                    rng = np.random.default_rng([seed, SHAPES.index(domain), index])
                    attrs = sample_attributes(rng, domain)
                    rel = f"{split}/{domain}/{k:05d}.png"
                    Image.fromarray(render(attrs, img_size)).save(tmp / rel, format="PNG", compress_level=1)
                    rows.append({"split": split, "file": rel, **attrs.to_dict()})
        (tmp / "attributes.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "seed": seed,
            "img_size": img_size,
            "num_per_domain": num_per_domain,
            "val_fraction": val_fraction,
            "domains": list(domains),
            "counts": {"train": n_train, "val": n_val},
            "units": "cx, cy, size are fractions of the image side; size is half the bounding-box side",
            "content": ["cx", "cy", "size", "background"],
            "style": ["fg", "texture"],
        }
        (tmp / "synth.json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info("wrote synthetic data set %s: %d domains x %d train + %d val", out, len(domains), n_train, n_val)
    return out


def read_attributes(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of ``root/attributes.jsonl`` (split, file, and the :meth:`SynthAttributes.to_dict` fields)."""
    path = Path(root) / "attributes.jsonl"
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # JSON errors and non-UTF-8 bytes
        raise InputError(f"cannot read {path}: {exc}") from None
    bad = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None)
    if bad is not None:
        raise InputError(f"{path}: row {bad + 1} is not a JSON object")
    return rows


__all__ = [
    "DEFAULT_DOMAINS",
    "SHAPES",
    "TEXTURES",
    "Content",
    "SynthAttributes",
    "estimate_content",
    "generate",
    "read_attributes",
    "render",
    "sample_attributes",
    "sample_content",
    "sample_style",
]
