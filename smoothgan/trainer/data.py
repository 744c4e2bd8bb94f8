"""Domain-per-folder training data: scanning, checks, transforms and datasets.

Conventions follow REFERENCE 3 and 4.1: one sub-folder per domain, domain index = position in the sorted list of
folder names (plain Python string order, as ``ImageFolder``), the official training augmentation. The samplers and
loaders that draw from these datasets (class-balanced, resumable, per DDP rank) live in
:mod:`smoothgan.trainer.sampling` (which imports this module, never the other way round).

What differs from the official code, on purpose:

- **Datasets take their randomness from the key.** A :class:`DrawnIndex` (drawn by
  :class:`smoothgan.trainer.sampling.BalancedSampler`) carries the image index, a same-domain partner and an
  augmentation seed, so a sample is a pure function of its key: the same for any ``num_workers``, independent of
  torch's global RNG (which the trainer keeps for latents). The official code uses the global RNGs instead.
- Hidden files and folders (names starting with ``.``) and stray files at the data root are ignored and reported
  by :func:`check_dataset` (the official reference loader would count stray files as domains; REFERENCE 8.10).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from smoothgan.errors import DataError

log = logging.getLogger(__name__)

# torchvision ImageFolder's list, case-insensitive, for source and reference sets alike (REFERENCE 3.1: the
# official reference listing knows only png/jpg/jpeg/JPG, so its sets could differ from ImageFolder's).
IMG_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

ReferenceMode = Literal["official", "smoothing"]
REFERENCE_MODES: tuple[str, ...] = ("official", "smoothing")

# ----------------------------------------------------------------------------------------------------------------
# Scanning and checks


def _domain_folders(root: Path) -> tuple[list[str], list[str]]:
    """(sorted domain folder names, ignored root entries); DataError if root is not a directory."""
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    domains, ignored = [], []
    for entry in root.iterdir():
        if entry.is_dir() and not entry.name.startswith("."):
            domains.append(entry.name)
        else:
            ignored.append(entry.name)
    return sorted(domains), sorted(ignored)


def list_domain_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files under one domain folder, recursive, sorted, hidden files and folders skipped."""
    base = Path(folder)
    found = []
    for path in base.rglob("*"):
        rel = path.relative_to(base).parts
        if path.is_file() and path.suffix.lower() in IMG_EXTENSIONS and all(not p.startswith(".") for p in rel):
            found.append(path)
    return sorted(found)


def scan_domains(root: str | os.PathLike[str]) -> list[str]:
    """Domain names in index order (sorted folder names, REFERENCE 3.1); DataError if none or one is empty."""
    path = Path(root)
    domains, _ = _domain_folders(path)
    if not domains:
        raise DataError(f"no domain folders in {path} (expected {path}/<domain>/<images>)")
    empty = [d for d in domains if not list_domain_images(path / d)]
    if empty:
        raise DataError(f"domain folder(s) without images in {path}: {', '.join(empty)}")
    return domains


def _short_list(items: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


@dataclass
class DatasetReport:
    """What :func:`check_dataset` found; ``str(report)`` is the text the trainer logs before training."""

    root: Path
    img_size: int
    min_size: int
    domains: list[str]
    counts: dict[str, int]
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    too_small: list[tuple[str, int, int]] = field(default_factory=list)  # (path, width, height) below min_size
    upscaled: int = 0  # readable images smaller than img_size but not below min_size
    ignored: list[str] = field(default_factory=list)  # root entries that are not domains
    expected_domains: int | None = None

    @property
    def problems(self) -> list[str]:
        """Fatal findings, one short phrase each; empty when training may start."""
        found = []
        if not self.domains:
            found.append("no domain folders")
        elif self.expected_domains is not None and len(self.domains) != self.expected_domains:
            found.append(f"{len(self.domains)} domain folders, expected {self.expected_domains}")
        empty = [d for d in self.domains if self.counts.get(d, 0) == 0]
        if empty:
            found.append(f"empty domain(s): {_short_list(empty)}")
        if self.unreadable:
            found.append(f"{len(self.unreadable)} unreadable image(s): {_short_list([p for p, _ in self.unreadable])}")
        if self.too_small:
            paths = [f"{p} ({w}x{h})" for p, w, h in self.too_small]
            found.append(f"{len(self.too_small)} image(s) smaller than {self.min_size}px: {_short_list(paths)}")
        return found

    def __str__(self) -> str:
        total = sum(self.counts.values())
        lines = [f"dataset {self.root}: {len(self.domains)} domains, {total} images"]
        lines += [f"  {i}: {d:<20s} {self.counts.get(d, 0):>8d}" for i, d in enumerate(self.domains)]
        if self.upscaled:
            lines.append(f"  {self.upscaled} image(s) smaller than img_size {self.img_size} will be upscaled")
        if self.ignored:
            lines.append(f"  ignored at the root: {_short_list(self.ignored)}")
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the run directory's options/stats files)."""
        return {**dataclasses.asdict(self), "root": str(self.root), "problems": self.problems}


def _probe(path: Path, full_decode: bool) -> tuple[int, int]:
    """Size of an image; raises on anything PIL cannot read (verify() checks structure without decoding)."""
    with Image.open(path) as img:
        size = img.size
        if full_decode:
            img.load()
        else:
            img.verify()
    return size


def check_dataset(
    root: str | os.PathLike[str],
    img_size: int,
    min_size: int | None = None,
    num_domains: int | None = None,
    full_decode: bool = False,
    raise_on_error: bool = True,
) -> DatasetReport:
    """Check a domain-per-folder data set before training and report counts and problems.

    Fatal (DataError with a one-line summary, unless ``raise_on_error`` is False): missing root, no domains, an
    empty domain, a domain count other than ``num_domains``, an unreadable image, an image whose shorter side is
    below ``min_size`` (default ``img_size // 2``: more upscaling than 2x only blurs). Images are opened and
    verified without decoding unless ``full_decode`` (slower; also catches truncated JPEG data).
    """
    path = Path(root)
    domains, ignored = _domain_folders(path)
    limit = img_size // 2 if min_size is None else int(min_size)
    report = DatasetReport(path, img_size, limit, domains, counts={}, ignored=ignored, expected_domains=num_domains)
    for domain in domains:
        files = list_domain_images(path / domain)
        report.counts[domain] = len(files)
        for file in files:
            try:
                width, height = _probe(file, full_decode)
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
                report.unreadable.append((str(file), f"{type(exc).__name__}: {exc}"))
                continue
            if min(width, height) < limit:
                report.too_small.append((str(file), width, height))
            elif min(width, height) < img_size:
                report.upscaled += 1
    problems = report.problems
    if problems and raise_on_error:
        raise DataError(f"dataset {path}: " + "; ".join(problems))
    return report


# ----------------------------------------------------------------------------------------------------------------
# Transforms (REFERENCE 3.2)


def _random_resized_crop_params(
    width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator | None
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a RandomResizedCrop, with an explicit generator (same algorithm as torchvision)."""
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(1, generator=generator).item())
        aspect = math.exp(log_lo + (log_hi - log_lo) * torch.rand(1, generator=generator).item())
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator).item())
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _to_model_tensor(img: Image.Image) -> Tensor:
    return (TF.to_tensor(img) - 0.5) / 0.5  # Normalize(0.5, 0.5): [-1, 1], [3, H, W]


class TrainTransform:
    """The official training augmentation (REFERENCE 3.2), drawing its randomness from a given generator.

    With probability ``randcrop_prob`` a RandomResizedCrop(img_size, scale, ratio); then Resize to
    (img_size, img_size) (bilinear, antialiased); RandomHorizontalFlip(0.5); ToTensor; Normalize(0.5, 0.5).
    """

    def __init__(
        self,
        img_size: int,
        randcrop_prob: float = 0.5,
        scale: tuple[float, float] = (0.8, 1.0),
        ratio: tuple[float, float] = (0.9, 1.1),
    ) -> None:
        self.img_size, self.randcrop_prob, self.scale, self.ratio = img_size, randcrop_prob, scale, ratio

    def __call__(self, img: Image.Image, generator: torch.Generator | None = None) -> Tensor:
        size = [self.img_size, self.img_size]
        if torch.rand(1, generator=generator).item() < self.randcrop_prob:
            top, left, h, w = _random_resized_crop_params(img.width, img.height, self.scale, self.ratio, generator)
            img = TF.resized_crop(img, top, left, h, w, size, InterpolationMode.BILINEAR, antialias=True)
        img = TF.resize(img, size, InterpolationMode.BILINEAR, antialias=True)
        if torch.rand(1, generator=generator).item() < 0.5:
            img = TF.hflip(img)
        return _to_model_tensor(img)


class EvalTransform:
    """Resize to (img_size, img_size) (bilinear, antialiased, aspect not kept) and scale to [-1, 1]."""

    def __init__(self, img_size: int) -> None:
        self.img_size = img_size

    def __call__(self, img: Image.Image, generator: torch.Generator | None = None) -> Tensor:
        size = [self.img_size, self.img_size]
        return _to_model_tensor(TF.resize(img, size, InterpolationMode.BILINEAR, antialias=True))


Transform = Callable[..., Tensor]


def train_transform(img_size: int, randcrop_prob: float = 0.5) -> TrainTransform:
    """The training augmentation of REFERENCE 3.2."""
    return TrainTransform(img_size, randcrop_prob)


def eval_transform(img_size: int) -> EvalTransform:
    """The test/val preprocessing of REFERENCE 3.2."""
    return EvalTransform(img_size)


# ----------------------------------------------------------------------------------------------------------------
# Datasets


class DrawnIndex(NamedTuple):
    """One draw of :class:`BalancedSampler`: the image, a same-domain partner, and an augmentation seed."""

    index: int
    partner: int
    seed: int


def _unpack(key: int | DrawnIndex | Sequence[int]) -> tuple[int, int | None, torch.Generator | None]:
    if isinstance(key, (int, np.integer)):
        return int(key), None, None
    index, partner, seed = key
    return int(index), int(partner), torch.Generator().manual_seed(int(seed))


def _apply(transform: Transform, img: Image.Image, generator: torch.Generator | None) -> Tensor:
    if isinstance(transform, (TrainTransform, EvalTransform)):
        return transform(img, generator)
    return transform(img)


def load_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Decode an image file as RGB (PIL open + convert, REFERENCE 3.2); DataError naming the file otherwise."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


class ImageDomainDataset(Dataset):
    """The source set: ``(image [3, H, W] in [-1, 1], domain index)`` for every image of every domain.

    Accepts plain int indices or :class:`DrawnIndex` keys (then the augmentation uses the drawn seed).
    ``domains`` pins the expected domain names (e.g. the training domains when loading ``val``).
    """

    def __init__(self, root: str | os.PathLike[str], transform: Transform, domains: Sequence[str] | None = None):
        self.root = Path(root)
        self.domains = scan_domains(self.root)
        if domains is not None and list(domains) != self.domains:
            raise DataError(f"domains in {self.root} are {self.domains}, expected {list(domains)}")
        self.transform = transform
        self.samples: list[tuple[Path, int]] = [
            (path, label) for label, d in enumerate(self.domains) for path in list_domain_images(self.root / d)
        ]
        self.targets: list[int] = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | DrawnIndex) -> tuple[Tensor, int]:
        index, _, generator = _unpack(key)
        path, label = self.samples[index]
        return _apply(self.transform, load_rgb(path), generator), label


class ReferenceDataset(ImageDomainDataset):
    """The reference set: ``(x_ref, x_ref2, y)`` with x_ref2 another image of x_ref's domain (REFERENCE 4.1).

    ``mode="official"`` (default, StarGAN v2): each image's partner is fixed once, from a random permutation
    within its domain drawn with ``seed`` (a partner may be the image itself). ``mode="smoothing"`` (the
    smoothing repo): a fresh uniform partner of the same domain on every draw; it comes from the sampler's
    :class:`DrawnIndex` (so it is reproducible and resumable), or from torch's global RNG for a plain int index.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: Transform,
        mode: ReferenceMode = "official",
        seed: int = 0,
        domains: Sequence[str] | None = None,
    ) -> None:
        if mode not in REFERENCE_MODES:
            raise DataError(f"unknown reference mode {mode!r}; choose from {', '.join(REFERENCE_MODES)}")
        super().__init__(root, transform, domains)
        self.mode = mode
        labels = torch.as_tensor(self.targets)
        self.members: list[Tensor] = [torch.nonzero(labels == c).flatten() for c in range(len(self.domains))]
        generator = torch.Generator().manual_seed(seed)
        self.fixed_partner = torch.empty(len(labels), dtype=torch.long)
        for members in self.members:
            self.fixed_partner[members] = members[torch.randperm(len(members), generator=generator)]

    def __getitem__(self, key: int | DrawnIndex) -> tuple[Tensor, Tensor, int]:
        index, partner, generator = _unpack(key)
        if self.mode == "official":
            partner = int(self.fixed_partner[index])
        elif partner is None:
            members = self.members[self.targets[index]]
            partner = int(members[torch.randint(len(members), (1,))])
        path, label = self.samples[index]
        x_ref = _apply(self.transform, load_rgb(path), generator)
        x_ref2 = _apply(self.transform, load_rgb(self.samples[partner][0]), generator)
        return x_ref, x_ref2, label
