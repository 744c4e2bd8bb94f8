"""Translator: style codes -> generator over a :class:`Backend`, always in batches.

``translate`` and ``interpolate`` share argument names (``seed``, ``steps``, ``ref``, ``max_batch``) and return
small dataclasses carrying everything needed to reproduce them (see :meth:`Result.sidecar`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from smoothgan import __version__, images, styles
from smoothgan.backends import create_backend
from smoothgan.backends.base import Backend, Masks
from smoothgan.bundle import ModelBundle, load_bundle
from smoothgan.config import ModelConfig
from smoothgan.errors import InputError

log = logging.getLogger(__name__)

ImageLike = Union[str, Path, np.ndarray]
Images = Union[ImageLike, Sequence[ImageLike]]


@dataclass
class Result:
    """Outputs of one call: uint8 images [N_sources, K, H, W, 3] and the style codes that made them."""

    images: np.ndarray
    styles: np.ndarray
    sources: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def sidecar(self) -> dict[str, Any]:
        """JSON-ready description: seeds, domains, steps, backend, model hash."""
        return dict(self.metadata)


def _as_list(items: Images) -> list[ImageLike]:
    if isinstance(items, (str, Path)):
        return [items]
    if isinstance(items, np.ndarray):
        return [items] if items.ndim == 3 else list(items)
    return list(items)


class Translator:
    """Latent- and reference-guided translation and style interpolation for one bundle on one backend."""

    def __init__(self, bundle: ModelBundle, backend: Backend, max_batch: int = 64) -> None:
        if max_batch < 1:
            raise InputError(f"max_batch must be >= 1, got {max_batch}")
        self.bundle = bundle
        self.backend = backend
        self.max_batch = max_batch

    @property
    def config(self) -> ModelConfig:
        return self.bundle.config

    @property
    def domains(self) -> tuple[str, ...]:
        return self.bundle.domains

    # ---- inputs -------------------------------------------------------------------------------------------
    def prepare(self, items: Images) -> np.ndarray:
        """Paths or uint8 HxWx3 arrays -> model input float32 [N, 3, S, S] in [-1, 1]."""
        loaded = []
        for item in _as_list(items):
            if isinstance(item, (str, Path)):
                loaded.append(images.load(item))
            elif isinstance(item, np.ndarray) and item.ndim == 3 and item.shape[-1] == 3:
                loaded.append(item if item.dtype == np.uint8 else np.clip(item, 0, 255).astype(np.uint8))
            else:
                raise InputError("images must be paths or uint8 arrays of shape [H, W, 3]")
        if not loaded:
            raise InputError("no input images given")
        return images.to_model_input(loaded, self.config.img_size, fit=self.bundle.preprocessing.get("fit", "crop"))

    def _domains(self, domain: str | int, count: int) -> np.ndarray:
        return np.full((count,), self.bundle.domain_index(domain), dtype=np.int64)

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
    def _target_styles(self, domain: str | int, seed: int, num: int, ref: Optional[Images],
                       max_batch: Optional[int]) -> tuple[np.ndarray, dict[str, Any]]:
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

    def translate(self, items: Images, domain: str | int, *, num: int = 1, seed: int = 0,
                  ref: Optional[Images] = None, max_batch: Optional[int] = None) -> Result:
        """Translate every source to ``domain`` with ``num`` latent styles (the same for all sources) or with
        the styles of reference images ``ref``. ``images`` of the result: [N_sources, num_styles, H, W, 3]."""
        x = self.prepare(items)
        target, style_meta = self._target_styles(domain, seed, num, ref, max_batch)
        n, k = len(x), len(target)
        masks = self.masks(x, max_batch)
        rep_masks = None if masks is None else (np.repeat(masks[0], k, 0), np.repeat(masks[1], k, 0))
        out = self.generate(np.repeat(x, k, axis=0), np.tile(target, (n, 1)), rep_masks, max_batch)
        frames = images.from_model_output(out).reshape(n, k, *out.shape[2:], 3)
        meta = self._metadata("translate", domain=self.domains[self.bundle.domain_index(domain)], **style_meta)
        return Result(frames, np.broadcast_to(target, (n, k, target.shape[1])).copy(),
                      images.from_model_output(x), meta)

    def interpolate(self, items: Images, domain: str | int, *, steps: int = 20, seed: int = 0,
                    ref: Optional[Images] = None, source_domain: Optional[str | int] = None, mode: str = "lerp",
                    max_batch: Optional[int] = None) -> Result:
        """From each source's own style to a target style in ``domain``: ``steps`` frames, both ends included.

        The start is E(x, source_domain); the end is M(z(seed), domain) or E(ref, domain) (first reference).
        Without ``source_domain`` it is inferred per image (see :meth:`infer_source_domain`) and reported.
        ``images`` of the result: [N_sources, steps, H, W, 3]; one batched generator pass per ``max_batch``.
        """
        x = self.prepare(items)
        n = len(x)
        masks = self.masks(x, max_batch)
        if source_domain is None:
            src, errors = self.infer_source_domain(x, masks, max_batch)
            inferred = True
        else:
            src, errors, inferred = self._domains(source_domain, n), None, False
        start = self.encode(x, src, max_batch)  # [N, D]
        target, style_meta = self._target_styles(domain, seed, 1, ref, max_batch)
        end = np.broadcast_to(target[:1], start.shape)
        path = styles.interpolate(start, end, steps, mode)  # [steps, N, D]
        path = np.ascontiguousarray(path.transpose(1, 0, 2))  # [N, steps, D]
        rep_masks = None if masks is None else (np.repeat(masks[0], steps, 0), np.repeat(masks[1], steps, 0))
        out = self.generate(np.repeat(x, steps, axis=0), path.reshape(n * steps, -1), rep_masks, max_batch)
        frames = images.from_model_output(out).reshape(n, steps, *out.shape[2:], 3)
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

    def close(self) -> None:
        self.backend.close()


def load(path: Optional[str | Path] = None, backend: str = "torch", device: str = "cpu", precision: str = "fp32",
         max_batch: int = 64, **options: Any) -> Translator:
    """Open a bundle (or ``$SMOOTHGAN_MODEL``) on a backend: ``smoothgan.load("afhq", backend="onnxruntime")``."""
    bundle = load_bundle(path)
    return Translator(bundle, create_backend(bundle, backend, device, precision, **options), max_batch)
