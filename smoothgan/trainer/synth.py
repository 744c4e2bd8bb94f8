"""A procedural multi-domain image set for fast, verifiable training runs (numpy + Pillow only).

Why: real data sets (CelebA-HQ, AFHQ) are large and say nothing exact about what a translation should keep. Here
every image is rendered from a small record of attributes, split into three groups that mirror the task:

- **domain** = the shape class (circle, square, triangle, diamond): what a translation must change;
- **style** = what varies within a domain and what the style code should capture, all continuous but the texture
  kind: fill colour ``fg``, second texture colour ``fg2``, texture (none, stripes, checker, dots, gradient; its
  frequency, angle, phase and duty), outline (width as a fraction of the size, colour);
- **content** = object position (cx, cy), size, rotation and the background gradient: drawn from one distribution
  shared by every domain, so a translation should keep it.

Units: ``cx``, ``cy`` and ``size`` are fractions of the image side. ``(cx, cy)`` is the object's centroid and
``size`` is half the side of the square with the object's area (every shape of a given size covers the same
area: circle radius ``2 size / sqrt(pi)``, square half-side ``size``, diamond half-diagonal ``sqrt(2) size``,
equilateral triangle circumradius ``1.755 size``). ``rotation`` is in degrees about the centroid, positive
clockwise on screen, within +-20 (under 22.5, so a rotated square never looks like a diamond). So
:func:`estimate_content` measures position and size of any image (a translation included) without knowing its
domain, and the rotation when told the domain (the symmetry order decides the angle's period).

Layout written by :func:`generate` (the domain-per-folder layout of REFERENCE 3.1)::

    out_dir/train/<domain>/00000.png   out_dir/val/<domain>/00000.png
    out_dir/attributes.jsonl           one row per image: split, domain, file, content and style attributes
    out_dir/synth.json                 parameters, seed, format version

Images are deterministic functions of (seed, shape, image index): each image has its own numpy generator seeded
with ``[seed, shape code, index]``, so the same seed gives identical bytes. Format version 2 (this one) added
rotation, outline, ``fg2``, the dots/gradient textures and the equal-area sizes; version 1 sets are refused with a
one-line message (regenerate them).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from smoothgan.config import check_value
from smoothgan.errors import InputError
from smoothgan.fileio import atomic_dir, is_staging_name, read_json, read_marker, target_entries

log = logging.getLogger(__name__)

FORMAT = "smoothgan-synth"
FORMAT_VERSION = 2

# The shape table: the code is part of each image's seed, so never reorder it, only append.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
TEXTURES: tuple[str, ...] = ("none", "stripes", "checker", "dots", "gradient")
DEFAULT_DOMAINS: tuple[str, ...] = ("circle", "square", "triangle")

# Colour ranges chosen so that every object colour (fill, second texture colour, outline) differs from every
# background colour by at least MIN_CONTRAST in some channel: background channels >= 0.58, fill minimum channel
# <= v_max * (1 - s_min) = 0.315, outline channels <= 0.3. This is what makes :func:`estimate_content` reliable.
MIN_CONTRAST = 64
_BG_GREY = (0.62, 0.95)
_BG_TINT = 0.04
_FG_SAT = (0.65, 1.0)
_FG_VAL = (0.45, 0.9)
_OUTLINE_VAL = (0.05, 0.3)
_OUTLINE_WIDTH = (0.0, 0.3)  # fraction of size; 0 = no outline
_SIZE = (0.11, 0.2)
_ROTATION = 20.0  # degrees, symmetric range
_MARGIN = 0.05  # distance kept between the object's circumcircle and the image border
# Circumradius / size per shape; the largest sets the position range, so content is domain-free.
_CIRCUMRADIUS = {"circle": 2 / math.sqrt(math.pi), "square": math.sqrt(2.0), "diamond": math.sqrt(2.0),
                 "triangle": math.sqrt(16 / (3 * math.sqrt(3.0)))}
_EXTENT = max(_CIRCUMRADIUS.values())
_SYMMETRY = {"square": 4, "diamond": 4, "triangle": 3}  # rotation period 360/k degrees; a circle has none


@dataclass(frozen=True)
class SynthAttributes:
    """Everything :func:`render` needs: the domain (shape), content and style of one image."""

    domain: str
    # content, shared distribution across domains
    cx: float
    cy: float
    size: float
    rotation: float  # degrees, clockwise on screen
    bg_start: tuple[int, int, int]
    bg_end: tuple[int, int, int]
    bg_angle: float  # degrees; direction of the linear background gradient
    # style, varies within a domain
    fg: tuple[int, int, int]
    fg2: tuple[int, int, int]  # second texture colour (stripes, checks, dots, gradient end)
    texture: str
    texture_freq: float  # periods across the object's size (2 * size)
    texture_angle: float  # degrees, in the object's frame
    texture_phase: float  # in periods, [0, 1)
    texture_duty: float  # share of a period in fg2 (stripes, checks) or dot radius / period (dots)
    outline_width: float  # fraction of size; 0 = none
    outline: tuple[int, int, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested form (the ``attributes.jsonl`` row without split and file)."""
        return {
            "domain": self.domain,
            "cx": self.cx,
            "cy": self.cy,
            "size": self.size,
            "rotation": self.rotation,
            "background": {"start": list(self.bg_start), "end": list(self.bg_end), "angle": self.bg_angle},
            "fg": list(self.fg),
            "fg2": list(self.fg2),
            "texture": {
                "kind": self.texture,
                "freq": self.texture_freq,
                "angle": self.texture_angle,
                "phase": self.texture_phase,
                "duty": self.texture_duty,
            },
            "outline": {"width": self.outline_width, "colour": list(self.outline)},
        }

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> SynthAttributes:
        """Inverse of :meth:`to_dict`; extra keys of an ``attributes.jsonl`` row (split, file) are ignored.

        Types are checked, not coerced (:func:`smoothgan.config.check_value`): a string where a number belongs is
        an error naming the key; a row without ``rotation`` is named as a format version 1 row.
        """
        where = "synthetic attributes row"
        if isinstance(row, Mapping) and "cx" in row and "rotation" not in row:
            raise InputError(f"{where} is synthetic format version 1 (no rotation/outline); this smoothgan reads "
                             f"version {FORMAT_VERSION}: regenerate the set with `smoothgan data synth`")

        def get(node: Any, key: str, hint: Any, path: str) -> Any:
            if not isinstance(node, Mapping) or key not in node:
                raise InputError(f"malformed {where}: no {path}")
            return check_value(node[key], hint, f"{where}: {path}", InputError)

        rgb = tuple[int, int, int]
        bg = get(row, "background", Any, "background")
        tex = get(row, "texture", Any, "texture")
        line = get(row, "outline", Any, "outline")
        values = dict(
            domain=get(row, "domain", str, "domain"),
            cx=get(row, "cx", float, "cx"),
            cy=get(row, "cy", float, "cy"),
            size=get(row, "size", float, "size"),
            rotation=get(row, "rotation", float, "rotation"),
            bg_start=get(bg, "start", rgb, "background.start"),
            bg_end=get(bg, "end", rgb, "background.end"),
            bg_angle=get(bg, "angle", float, "background.angle"),
            fg=get(row, "fg", rgb, "fg"),
            fg2=get(row, "fg2", rgb, "fg2"),
            texture=get(tex, "kind", str, "texture.kind"),
            texture_freq=get(tex, "freq", float, "texture.freq"),
            texture_angle=get(tex, "angle", float, "texture.angle"),
            texture_phase=get(tex, "phase", float, "texture.phase"),
            texture_duty=get(tex, "duty", float, "texture.duty"),
            outline_width=get(line, "width", float, "outline.width"),
            outline=get(line, "colour", rgb, "outline.colour"),
        )
        for key in ("bg_start", "bg_end", "fg", "fg2", "outline"):
            if not all(0 <= c <= 255 for c in values[key]):
                raise InputError(f"malformed {where}: {key} channels must be in 0..255, got {list(values[key])}")
        return cls(**values)


class Content(NamedTuple):
    """Object centroid, size (fractions of the image side) and rotation (degrees; NaN when not estimable)."""

    cx: float
    cy: float
    size: float
    rotation: float = math.nan


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
    """Draw content attributes (position, size, rotation, background); the same distribution for every domain."""
    size = float(rng.uniform(*_SIZE))
    lo, hi = _MARGIN + _EXTENT * size, 1.0 - _MARGIN - _EXTENT * size
    cx, cy = (float(rng.uniform(lo, hi)) for _ in range(2))
    ends = []
    for _ in range(2):
        grey = rng.uniform(*_BG_GREY)
        ends.append(_rgb(round(255 * (grey + rng.uniform(-_BG_TINT, _BG_TINT))) for _ in range(3)))
    return {
        "cx": round(cx, 4),
        "cy": round(cy, 4),
        "size": round(size, 4),
        "rotation": round(float(rng.uniform(-_ROTATION, _ROTATION)), 2),
        "bg_start": ends[0],
        "bg_end": ends[1],
        "bg_angle": round(float(rng.uniform(0.0, 360.0)), 2),
    }


def _fill_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return _hsv_to_rgb(float(rng.uniform()), float(rng.uniform(*_FG_SAT)), float(rng.uniform(*_FG_VAL)))


def sample_style(rng: np.random.Generator) -> dict[str, Any]:
    """Draw style attributes (colours, texture, outline); the same distribution for every domain."""
    fg, fg2 = _fill_colour(rng), _fill_colour(rng)
    return {
        "fg": fg,
        "fg2": fg2,
        "texture": TEXTURES[int(rng.integers(len(TEXTURES)))],
        "texture_freq": round(float(rng.uniform(1.0, 3.0)), 3),
        "texture_angle": round(float(rng.uniform(0.0, 180.0)), 2),
        "texture_phase": round(float(rng.uniform()), 3),
        "texture_duty": round(float(rng.uniform(0.3, 0.7)), 3),
        "outline_width": round(float(rng.uniform(*_OUTLINE_WIDTH)), 3),
        "outline": _hsv_to_rgb(float(rng.uniform()), float(rng.uniform()), float(rng.uniform(*_OUTLINE_VAL))),
    }


def sample_attributes(rng: np.random.Generator, domain: str) -> SynthAttributes:
    """Draw one image's attributes: content first, then style, from ``rng``."""
    _check_domain(domain)
    return SynthAttributes(domain=domain, **sample_content(rng), **sample_style(rng))


def _signed_distance(domain: str, u: np.ndarray, v: np.ndarray, s: float) -> np.ndarray:
    """Signed distance in pixels (negative inside; half-plane form for the polygons) to the shape of size ``s``
    pixels centred at the origin of the object frame ``(u, v)``."""
    if domain == "circle":
        return np.hypot(u, v) - _CIRCUMRADIUS["circle"] * s
    if domain == "square":
        return np.maximum(np.abs(u), np.abs(v)) - s
    if domain == "diamond":
        return (np.abs(u) + np.abs(v)) / math.sqrt(2.0) - s
    # equilateral triangle, apex up: inradius = circumradius / 2; outward edge normals (0, 1), (+-cos 30, -1/2)
    inradius = _CIRCUMRADIUS["triangle"] * s / 2
    c30 = math.sqrt(3.0) / 2
    return np.maximum(v, c30 * np.abs(u) - 0.5 * v) - inradius


def _texture_mask(a: SynthAttributes, u: np.ndarray, v: np.ndarray, s: float) -> np.ndarray:
    """Share of each pixel in the second colour ``fg2`` (0..1), in the object frame."""
    theta = math.radians(a.texture_angle)
    scale = a.texture_freq / max(2.0 * s, 1e-6)  # periods per pixel
    p = (u * math.cos(theta) + v * math.sin(theta)) * scale + a.texture_phase  # [H, W], in periods
    if a.texture == "none":
        return np.zeros_like(u)
    if a.texture == "gradient":  # fg -> fg2 across the object; phase shifts the midpoint
        across = (u * math.cos(theta) + v * math.sin(theta)) / (2.0 * _EXTENT * s)
        return np.clip(0.5 + across + (a.texture_phase - 0.5) * 0.5, 0.0, 1.0)
    if a.texture == "stripes":
        return (np.mod(p, 1.0) < a.texture_duty).astype(np.float64)
    q = (-u * math.sin(theta) + v * math.cos(theta)) * scale
    if a.texture == "checker":
        return ((np.floor(2.0 * p) + np.floor(2.0 * q)) % 2 == 1).astype(np.float64)
    # dots: a disc of radius duty/2 periods at the centre of every cell
    du, dv = np.mod(p, 1.0) - 0.5, np.mod(q, 1.0) - 0.5
    return (np.hypot(du, dv) < a.texture_duty / 2).astype(np.float64)


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

    # object frame: undo the rotation (clockwise on screen, y down) about the centroid
    rot = math.radians(a.rotation)
    dx, dy = x - a.cx * n, y - a.cy * n
    u = dx * math.cos(rot) + dy * math.sin(rot)
    v = -dx * math.sin(rot) + dy * math.cos(rot)
    s = a.size * n
    distance = _signed_distance(a.domain, u, v, s)
    coverage = np.clip(0.5 - distance, 0.0, 1.0)[..., None]  # [H, W, 1]
    inner = np.clip(0.5 - (distance + a.outline_width * s), 0.0, 1.0)[..., None]  # inside the outline band

    mix = _texture_mask(a, u, v, s)[..., None]
    fill = np.asarray(a.fg, np.float64) * (1.0 - mix) + np.asarray(a.fg2, np.float64) * mix
    colour = fill * inner + np.asarray(a.outline, np.float64) * (coverage - inner)
    image = image * (1.0 - coverage) + colour
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


@lru_cache(maxsize=None)
def _reference_phase(domain: str) -> float:
    """Phase (radians) of the k-th order moment of the unrotated shape, the zero of :func:`estimate_content`'s
    rotation; measured on a 256 px mask so it matches what the estimator sees."""
    n = 256
    centres = np.arange(n, dtype=np.float64) + 0.5 - n / 2
    u, v = np.meshgrid(centres, centres)
    mask = _signed_distance(domain, u, v, n * 0.2) < 0
    z = (u + 1j * v)[mask]
    return float(np.angle(np.sum(z ** _SYMMETRY[domain])))


def estimate_content(image: np.ndarray, threshold: float = MIN_CONTRAST / 2, min_pixels: int = 1,
                     domain: str | None = None) -> Content:
    """Recover the content (cx, cy, size, rotation) of the foreground object of an image.

    The background is fitted as a plane per channel (a linear gradient, as rendered) to the outermost pixel ring;
    pixels that differ from it by more than ``threshold`` in some channel are foreground. Rows/columns with fewer
    than ``min_pixels`` foreground pixels are dropped (raise it for noisy generator outputs). The centroid of the
    rest gives (cx, cy) and its area the size (every shape has area ``(2 size)^2``), both without knowing the
    domain. The rotation needs ``domain`` (its symmetry order k): the phase of the k-th order complex moment
    about the centroid, minus that of the unrotated shape, over k; NaN without a domain or for a circle. Exact
    to about a pixel (and 2-3 degrees) on clean synthetic images of 32 px and up. Returns NaNs when no foreground
    is found, so a metric can count failures instead of stopping.
    """
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 4 or arr.shape[1] < 4:
        raise InputError(f"estimate_content expects an HxWx3 image of at least 4x4, got shape {arr.shape}")
    if domain is not None:
        _check_domain(domain)
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
    mask &= (mask.sum(axis=1) >= min_pixels)[:, None] & (mask.sum(axis=0) >= min_pixels)[None, :]
    count = int(mask.sum())
    if count == 0:
        return Content(math.nan, math.nan, math.nan, math.nan)
    px, py = xs[mask] + 0.5, ys[mask] + 0.5  # pixel centres
    cx, cy = float(px.mean()), float(py.mean())
    size = math.sqrt(count / (w * h)) / 2
    rotation = math.nan
    if domain in _SYMMETRY:
        k = _SYMMETRY[domain]
        phase = float(np.angle(np.sum(((px - cx) + 1j * (py - cy)) ** k)))
        turn = math.degrees(phase - _reference_phase(domain)) / k  # image y points down: clockwise positive
        period = 360.0 / k
        rotation = (turn + period / 2) % period - period / 2
    return Content(cx=cx / w, cy=cy / h, size=size, rotation=rotation)


def rotation_error(estimated: float, true: float, domain: str) -> float:
    """|estimated - true| in degrees, wrapped to the rotation period of ``domain``'s shape (360/k); NaN for a
    shape without a rotation (circle) or a NaN estimate. Use it with ``estimate_content(image, domain=domain)``:
    a square rotated by 80 degrees is the same picture as one rotated by -10."""
    _check_domain(domain)
    if domain not in _SYMMETRY or not math.isfinite(estimated) or not math.isfinite(true):
        return math.nan
    period = 360.0 / _SYMMETRY[domain]
    return abs((estimated - true + period / 2) % period - period / 2)


def has_rotation(domain: str) -> bool:
    """Whether a shape's rotation can be seen (and so estimated): every synthetic shape but the circle."""
    return domain in _SYMMETRY


SYNTH_ENTRIES = ("train", "val", "attributes.jsonl", "synth.json")  # what generate() writes at the top level


def _check_target(out: Path, overwrite: bool) -> None:
    """Refuse to replace anything but an earlier synthetic set (and only with ``overwrite``) holding nothing but
    what :func:`generate` wrote: every image listed in its ``attributes.jsonl``, no other files."""
    entries = target_entries(out, "choose another folder")
    if not entries:
        return
    try:  # an earlier format version may be replaced too: its layout is the same
        meta = read_json(out / "synth.json", InputError)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise InputError("not a synthetic set")
    except InputError:
        raise InputError(f"{out} is not empty and is not a synthetic data set; choose another folder") from None
    if not overwrite:
        raise InputError(f"{out} already holds a synthetic data set; pass overwrite=True to replace it")
    foreign = [name for name in entries if name not in SYNTH_ENTRIES and not is_staging_name(name)]
    written = {row.get("file") for row in _read_rows(out / "attributes.jsonl")}
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
            "units": "cx, cy (centroid), size are fractions of the image side; size is half the side of the "
                     "square of the object's area; rotation in degrees, clockwise",
            "content": ["cx", "cy", "size", "rotation", "background"],
            "style": ["fg", "fg2", "texture", "outline"],
        }
        (tmp / "synth.json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info("wrote synthetic data set %s: %d domains x %d train + %d val", out, len(domains), n_train, n_val)
    return out


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """JSON objects, one a line, of an ``attributes.jsonl`` (any format version)."""
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


def read_attributes(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of ``root/attributes.jsonl`` (split, file, and the :meth:`SynthAttributes.to_dict` fields).

    A set of another format version (its ``synth.json``) is a one-line error naming both versions.
    """
    marker = Path(root) / "synth.json"
    if marker.is_file():
        try:
            read_marker(marker, FORMAT, FORMAT_VERSION, InputError, "a synthetic data set description")
        except InputError as exc:
            raise InputError(f"{exc} (regenerate the set with `smoothgan data synth`)") from None
    return _read_rows(Path(root) / "attributes.jsonl")


__all__ = [
    "DEFAULT_DOMAINS",
    "SHAPES",
    "TEXTURES",
    "Content",
    "FORMAT_VERSION",
    "SynthAttributes",
    "estimate_content",
    "generate",
    "read_attributes",
    "render",
    "sample_attributes",
    "sample_content",
    "sample_style",
]
