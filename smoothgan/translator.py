"""Translator: style codes -> generator over a :class:`Backend`, always in batches.

``translate`` and ``interpolate`` share argument names (``seed``, ``steps``, ``ref``, ``max_batch``) and return
small dataclasses carrying everything needed to reproduce them (see :meth:`Result.sidecar`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from PIL import Image

from smoothgan import __version__, images, styles
from smoothgan.backends import create_backend
from smoothgan.backends.base import Backend, Masks
from smoothgan.bundle import ModelBundle, load_bundle
from smoothgan.config import ModelConfig
from smoothgan.errors import InputError
from smoothgan.results import Result

log = logging.getLogger(__name__)

ImageLike = Union[str, Path, np.ndarray, Image.Image]
Images = Union[ImageLike, Sequence[ImageLike]]
IMAGE_KINDS = "paths, uint8 [H, W, 3] arrays or PIL images"


MAX_STEPS = 1000
"""Hard cap on interpolation frames per source (``--steps``)."""
MAX_STYLES = 1000
"""Hard cap on latent styles per source (``--num``)."""
MEMORY_FRACTION = 0.5
"""A call may plan to use at most this fraction of the machine's physical memory (see :func:`estimate_bytes`)."""
# Live float32 feature maps of width start_dim at full resolution, per generator row. Measured (256px AFHQ
# architecture, batch 8 on CPU, peak RSS growth): ONNX Runtime 1012 MiB, torch 481 MiB; the estimate gives 1038 MiB.
_ACTIVATION_FACTOR = 8


def _as_list(items: Images) -> list[ImageLike]:
    if isinstance(items, (str, os.PathLike, Image.Image)):
        return [items]
    if isinstance(items, np.ndarray):
        if items.ndim == 3:
            return [items]
        if items.ndim == 4:
            return list(items)
        raise InputError(f"an image array must be [H, W, 3] or [N, H, W, 3], got shape {list(items.shape)}")
    if isinstance(items, (bytes, bytearray, dict)) or not isinstance(items, Iterable):
        raise InputError(f"images must be {IMAGE_KINDS}, got {type(items).__name__}")
    return list(items)


def check_count(name: str, value: object, low: int, high: int, hint: str = "") -> int:
    """An integer option within [low, high], or a one-line :class:`InputError` that states the range."""
    if not styles.is_int(value) or not low <= int(value) <= high:  # type: ignore[arg-type]
        raise InputError(f"{name} must be an integer from {low} to {high}{hint}, got {value!r}")
    return int(value)  # type: ignore[arg-type]


def memory_limit() -> int:
    """Bytes a single call may plan to use: :data:`MEMORY_FRACTION` of physical memory (8 GiB if unknown)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 16 * 2**30
    return int(total * MEMORY_FRACTION)


def estimate_bytes(config: ModelConfig, rows: int, batch: int, device: str = "cpu") -> int:
    """Rough peak memory of a call making ``rows`` frames in generator batches of ``batch``.

    The uint8 frames are kept (3 bytes a pixel); each batch holds float32 inputs and outputs and, on CPU, about
    :data:`_ACTIVATION_FACTOR` feature maps of width ``start_dim`` at full resolution per row.
    """
    pixels = config.img_size**2
    frames = rows * pixels * 3
    live = min(rows, batch) * pixels * 4 * (6 + (config.start_dim * _ACTIVATION_FACTOR if device == "cpu" else 0))
    return frames + live


class Translator:
    """Latent- and reference-guided translation and style interpolation for one bundle on one backend."""

    def __init__(self, bundle: ModelBundle, backend: Backend, max_batch: int = 64) -> None:
        self.bundle = bundle
        self.backend = backend
        self.max_batch = check_count("max_batch", max_batch, 1, 2**20)

    @property
    def config(self) -> ModelConfig:
        return self.bundle.config

    @property
    def domains(self) -> tuple[str, ...]:
        return self.bundle.domains

    # ---- inputs -------------------------------------------------------------------------------------------
    def load_image(self, item: ImageLike) -> np.ndarray:
        """One path, array or PIL image -> a checked uint8 [H, W, 3] array (:func:`smoothgan.images.as_rgb`)."""
        return images.as_rgb(item)

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] -> model input float32 [1, 3, S, S] with the bundle's fit (crop/stretch)."""
        return images.to_model_input(image, self.config.img_size, fit=self.bundle.preprocessing.get("fit", "crop"))

    def prepare(self, items: Images) -> np.ndarray:
        """Paths or uint8 HxWx3 arrays -> model input float32 [N, 3, S, S] in [-1, 1]."""
        loaded = [self.load_image(item) for item in _as_list(items)]
        if not loaded:
            raise InputError("no input images given")
        return np.concatenate([self.preprocess(image) for image in loaded])

    def _domains(self, domain: str | int, count: int) -> np.ndarray:
        return np.full((count,), self.bundle.domain_index(domain), dtype=np.int64)

    def check_request(self, domain: str | int, *, steps: Optional[int] = None, num: int = 1, seed: int = 0,
                      ref: Optional[Images] = None, source_domain: Optional[str | int] = None, mode: str = "lerp",
                      max_batch: Optional[int] = None, sources: int = 1) -> int:
        """Validate a translate/interpolate request before any work; return the batch size to use.

        One-line :class:`InputError` for: an unknown domain, steps outside 2..MAX_STEPS, num outside
        1..MAX_STYLES, a seed outside 0..2**32-1, ``num`` with references, several references for an
        interpolation, a bad ``max_batch`` and a call whose frames and batches would not fit in memory.
        """
        self.bundle.domain_index(domain)
        if source_domain is not None:
            self.bundle.domain_index(source_domain)
        styles.check_seed(seed)
        batch = self.max_batch if max_batch is None else check_count("max_batch", max_batch, 1, 2**20)
        refs = None if ref is None else _as_list(ref)
        if refs is not None and not refs:
            raise InputError("no reference images given")
        if steps is not None:
            per_source = check_count("steps", steps, 2, MAX_STEPS, " (frames, both ends included)")
            if mode not in styles.INTERPOLATION_MODES:
                raise InputError(f"unknown interpolation mode {mode!r}; choose one of "
                                 f"{', '.join(styles.INTERPOLATION_MODES)}")
            if refs is not None and len(refs) > 1:
                raise InputError(f"an interpolation goes to one style: give one reference, not {len(refs)}")
        else:
            per_source = check_count("num", num, 1, MAX_STYLES, " (latent styles per source)")
            if refs is not None:
                if num != 1:
                    raise InputError(f"num applies to latent styles only; with references each reference gives "
                                     f"one style (got num={num} and {len(refs)} reference(s))")
                per_source = len(refs)
        rows = per_source * max(1, sources)
        need, limit = estimate_bytes(self.config, rows, batch, self.backend.device), memory_limit()
        if need > limit:
            raise InputError(
                f"this call needs about {need / 2**30:.1f} GiB ({rows} frames of {self.config.img_size}px in "
                f"batches of {batch}), over the limit of {limit / 2**30:.1f} GiB (half of this machine's memory); "
                "use fewer steps/styles, fewer sources per call or a smaller batch size"
            )
        return batch

    # ---- batched primitives ---------------------------------------------------------------------------------
    def _batches(self, total: int, max_batch: Optional[int]) -> list[slice]:
        step = max_batch or self.max_batch
        return [slice(i, min(i + step, total)) for i in range(0, total, step)]

    def masks(self, x: np.ndarray, max_batch: Optional[int] = None) -> Optional[Masks]:
        """FAN masks for w_hpf > 0 models, computed once per source image; None otherwise."""
        if not self.config.uses_masks:
            return None
        parts = [self.backend.heatmap(x[b]) for b in self._batches(len(x), max_batch)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def generate(self, x: np.ndarray, style: np.ndarray, masks: Optional[Masks] = None,
                 max_batch: Optional[int] = None) -> np.ndarray:
        """Generator over aligned [N] images and styles, in batches of at most ``max_batch``."""
        outputs = []
        for b in self._batches(len(x), max_batch):
            batch_masks = None if masks is None else (masks[0][b], masks[1][b])
            outputs.append(self.backend.generate(x[b], style[b], batch_masks))
        return np.concatenate(outputs)

    def frames(self, x: np.ndarray, style: np.ndarray, masks: Optional[Masks] = None,
               max_batch: Optional[int] = None) -> np.ndarray:
        """Every source with each of its K styles: x [N, 3, S, S], style [N, K, D] -> uint8 [N, K, S, S, 3].

        The N*K rows go to the generator in batches of at most ``max_batch`` (across sources) and are turned into
        uint8 batch by batch, so no float copy of all frames (or of repeated sources and masks) is ever held.
        """
        n, k = style.shape[:2]
        size = x.shape[-1]
        out = np.empty((n * k, size, size, 3), dtype=np.uint8)
        for b in self._batches(n * k, max_batch):
            rows = np.arange(b.start, b.stop)
            src, col = rows // k, rows % k
            batch_masks = None if masks is None else (masks[0][src], masks[1][src])
            out[b] = images.from_model_output(self.backend.generate(
                np.ascontiguousarray(x[src]), np.ascontiguousarray(style[src, col]), batch_masks))
        return out.reshape(n, k, size, size, 3)

    def latent_styles(self, domain: str | int, seed: int = 0, num: int = 1) -> np.ndarray:
        """Mapping-network styles [num, D] of ``num`` latents drawn from ``seed``."""
        z = styles.latents(seed, num, self.config.latent_dim)
        return self.backend.mapping(z, self._domains(domain, num))

    def encode(self, x: np.ndarray, domain: np.ndarray, max_batch: Optional[int] = None) -> np.ndarray:
        """Style encoder over [N] images with per-image domain indices, batched."""
        return np.concatenate(
            [self.backend.encode_style(x[b], domain[b]) for b in self._batches(len(x), max_batch)]
        )

    def infer_source_domain(self, x: np.ndarray, masks: Optional[Masks] = None,
                            max_batch: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
        """Per image, the domain whose own style best reconstructs it: argmin_k mean |G(x, E(x, k)) - x|.

        Returns (indices [N], errors [N, K]); all N*K reconstructions run as batched generator calls.
        """
        n, k = len(x), self.config.num_domains
        x_rep = np.repeat(x, k, axis=0)
        domain = np.tile(np.arange(k, dtype=np.int64), n)
        own = self.encode(x_rep, domain, max_batch)
        rep_masks = None if masks is None else (np.repeat(masks[0], k, 0), np.repeat(masks[1], k, 0))
        recon = self.generate(x_rep, own, rep_masks, max_batch)
        errors = np.abs(recon - x_rep).reshape(n, k, -1).mean(axis=2)
        return errors.argmin(axis=1), errors

    # ---- public jobs ----------------------------------------------------------------------------------------
    def target_styles(self, domain: str | int, seed: int = 0, num: int = 1, ref: Optional[Images] = None,
                      max_batch: Optional[int] = None) -> tuple[np.ndarray, dict[str, Any]]:
        """The target styles [K, D] (``num`` latents from ``seed``, or one per reference) and their metadata."""
        if ref is None:
            return self.latent_styles(domain, seed, num), {"style": "latent", "seed": seed, "num": num}
        ref_x = self.prepare(ref)
        refs = [str(r) for r in _as_list(ref) if isinstance(r, (str, Path))]
        return self.encode(ref_x, self._domains(domain, len(ref_x)), max_batch), {"style": "reference",
                                                                                   "references": refs}

    def _metadata(self, job: str, **extra: Any) -> dict[str, Any]:
        return {
            "job": job,
            "smoothgan_version": __version__,
            "model": str(self.bundle.path),
            "model_sha256": self.bundle.weights_sha256,
            "backend": self.backend.name,
            "device": self.backend.device,
            "precision": self.backend.precision,
            **extra,
        }

    def translate_prepared(self, x: np.ndarray, domain: str | int, target: np.ndarray, style_meta: dict[str, Any],
                           max_batch: Optional[int] = None) -> Result:
        """:meth:`translate` on preprocessed sources ``x`` [N, 3, S, S] with target styles [K, D] already made."""
        n, k = len(x), len(target)
        masks = self.masks(x, max_batch)
        style = np.broadcast_to(target, (n, k, target.shape[1]))
        frames = self.frames(x, style, masks, max_batch)
        meta = self._metadata("translate", domain=self.domains[self.bundle.domain_index(domain)], **style_meta)
        return Result(frames, style.copy(), images.from_model_output(x), meta)

    def interpolate_prepared(self, x: np.ndarray, domain: str | int, target: np.ndarray, style_meta: dict[str, Any],
                             steps: int, source_domain: Optional[str | int] = None, mode: str = "lerp",
                             max_batch: Optional[int] = None) -> Result:
        """:meth:`interpolate` on preprocessed sources ``x`` [N, 3, S, S] with the end style [1, D] already made."""
        n = len(x)
        masks = self.masks(x, max_batch)
        if source_domain is None:
            src, errors = self.infer_source_domain(x, masks, max_batch)
            inferred = True
        else:
            src, errors, inferred = self._domains(source_domain, n), None, False
        start = self.encode(x, src, max_batch)  # [N, D]
        end = np.broadcast_to(target[:1], start.shape)
        path = styles.interpolate(start, end, steps, mode)  # [steps, N, D]
        path = np.ascontiguousarray(path.transpose(1, 0, 2))  # [N, steps, D]
        frames = self.frames(x, path, masks, max_batch)
        meta = self._metadata(
            "interpolate",
            domain=self.domains[self.bundle.domain_index(domain)],
            steps=steps,
            mode=mode,
            source_domains=[self.domains[i] for i in src],
            source_domain_inferred=inferred,
            **style_meta,
        )
        if errors is not None:
            meta["source_domain_errors"] = np.round(errors, 6).tolist()
        return Result(frames, path, images.from_model_output(x), meta)

    def translate(self, items: Images, domain: str | int, *, num: int = 1, seed: int = 0,
                  ref: Optional[Images] = None, max_batch: Optional[int] = None) -> Result:
        """Translate every source to ``domain`` with ``num`` latent styles (the same for all sources) or with
        the styles of reference images ``ref`` (then ``num`` must stay 1). ``images`` of the result:
        [N_sources, num_styles, H, W, 3]. Limits: see :meth:`check_request`."""
        sources = _as_list(items)
        batch = self.check_request(domain, num=num, seed=seed, ref=ref, max_batch=max_batch, sources=len(sources))
        x = self.prepare(sources)
        target, style_meta = self.target_styles(domain, seed, num, ref, batch)
        return self.translate_prepared(x, domain, target, style_meta, batch)

    def interpolate(self, items: Images, domain: str | int, *, steps: int = 20, seed: int = 0,
                    ref: Optional[Images] = None, source_domain: Optional[str | int] = None, mode: str = "lerp",
                    max_batch: Optional[int] = None) -> Result:
        """From each source's own style to a target style in ``domain``: ``steps`` frames, both ends included.

        The start is E(x, source_domain); the end is M(z(seed), domain) or E(ref, domain) (one reference).
        Without ``source_domain`` it is inferred per image (see :meth:`infer_source_domain`) and reported.
        ``images`` of the result: [N_sources, steps, H, W, 3]; one batched generator pass per ``max_batch``.
        """
        sources = _as_list(items)
        batch = self.check_request(domain, steps=steps, seed=seed, ref=ref, source_domain=source_domain, mode=mode,
                                   max_batch=max_batch, sources=len(sources))
        x = self.prepare(sources)
        target, style_meta = self.target_styles(domain, seed, 1, ref, batch)
        return self.interpolate_prepared(x, domain, target, style_meta, steps, source_domain, mode, batch)

    def iter_translate(self, inputs: Any, domain: str | int, **options: Any) -> Iterator[Any]:
        """Stream results: yield one :class:`smoothgan.jobs.ItemResult` per input as its batch finishes.

        ``inputs``: files, folders (recursive) or glob patterns (all checked first), or images to stream (a
        ``[N, H, W, 3]`` uint8 array, a list with arrays or PIL images, any iterator of them or of paths,
        consumed lazily).
        Options as :func:`smoothgan.jobs.iter_results` (``steps``, ``num``, ``seed``, ``ref``, ``batch_size``,
        ``keep_going``, ...). Nothing is written; per image the results are those of :meth:`translate` /
        :meth:`interpolate` (same styles, pixels within 1/255 whatever the batch).
        """
        from smoothgan import jobs

        return jobs.iter_results(self, inputs, domain, **options)

    def translate_folder(self, inputs: Any, out: str | Path, domain: str | int, **options: Any) -> Any:
        """Translate files/folders/globs into ``out`` (layout, manifest, resume: :func:`smoothgan.jobs.run_folder`).

        Returns a :class:`smoothgan.jobs.FolderSummary`; with ``keep_going`` bad files are recorded, not raised.
        """
        from smoothgan import jobs

        return jobs.run_folder(self, inputs, out, domain, **options)

    def close(self) -> None:
        """Release the backend (sessions, engines) and save its caches (TensorRT-RTX's runtime cache)."""
        self.backend.close()

    def __enter__(self) -> "Translator":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def load(path: Optional[str | Path] = None, backend: str = "auto", device: str = "cpu", precision: str = "fp32",
         max_batch: int = 64, **options: Any) -> Translator:
    """Open a bundle (or ``$SMOOTHGAN_MODEL``) on a backend: ``smoothgan.load("afhq", backend="onnxruntime")``.

    ``backend="auto"`` picks the fastest installed backend with artefacts for the device (see
    :func:`smoothgan.backends.create_backend`). Use it as a context manager to close the backend.
    """
    bundle = load_bundle(path)
    return Translator(bundle, create_backend(bundle, backend, device, precision, **options), max_batch)
