"""The one small interface every inference engine implements, and the input policy they all share.

All arrays at the boundary are numpy, C-contiguous: images float32 [B, 3, H, W] in [-1, 1], styles float32
[B, style_dim], latents float32 [B, latent_dim], domains int64 [B], masks a pair of float32 [B, 1, 256, 256]
(FAN masks, only for models with ``w_hpf > 0``). Backends differ only in engine, device and precision.

The policy lives here, once, so every engine answers the same inputs the same way:

* dtype and layout: float inputs of any real dtype and any strides are converted to C-contiguous float32,
  domains to int64 (integer values only, each in ``[0, num_domains)``); outputs are C-contiguous float32.
* shapes: every non-batch axis must match the model (image ``[B, 3, img_size, img_size]``, style
  ``[B, style_dim]``, ...); a mismatch is an :class:`InputError` naming the shape expected.
* batches: the call's batch is the largest input batch; an input with a batch of 1 (one style for many
  images, one domain for many latents) is repeated to it; any other mismatch, or an empty batch, is an
  :class:`InputError`.
* masks: ``generate`` on a ``w_hpf > 0`` model needs the FAN masks of its images (``heatmap(images)``); without
  them it raises :class:`InputError` on every backend. The official model always applies the high-pass skip,
  so silently running without it (or with zero masks) would return a different translation. A ``w_hpf = 0``
  model takes no masks and has no ``heatmap``.

Engines implement ``_run_mapping``, ``_run_encode``, ``_run_generate`` and ``_run_heatmap`` on inputs that
already follow this policy.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Any, Optional

import numpy as np

from smoothgan.artifacts import MASK_SIZE
from smoothgan.config import ModelConfig
from smoothgan.errors import InputError

Masks = tuple[np.ndarray, np.ndarray]
Shape = tuple[Any, ...]  # "B" for the batch axis, ints elsewhere


def _shape_text(shape: Shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


class Backend(abc.ABC):
    """Runs the four networks of a bundle; see the module docstring for shapes, dtypes and the input policy."""

    name: str = ""

    def __init__(self, config: ModelConfig, device: str, precision: str) -> None:
        self.config = config
        self.device = device
        self.precision = precision

    # ---- the interface ---------------------------------------------------------------------------------------
    def mapping(self, latent: np.ndarray, domain: Any) -> np.ndarray:
        """Mapping network: latent [B, latent_dim] float32, domain [B] int64 -> style [B, style_dim]."""
        c = self.config
        latent, domain = self._batch("mapping", [
            ("latent", self._float(latent, "latent"), ("B", c.latent_dim)),
            ("domain", self._domain(domain), ("B",)),
        ])
        return self._output(self._run_mapping(latent, domain))

    def encode_style(self, image: np.ndarray, domain: Any) -> np.ndarray:
        """Style encoder: image [B, 3, H, W] in [-1, 1], domain [B] -> style [B, style_dim]."""
        image, domain = self._batch("encode_style", [
            ("image", self._float(image, "image"), self._image_shape()),
            ("domain", self._domain(domain), ("B",)),
        ])
        return self._output(self._run_encode(image, domain))

    def generate(self, image: np.ndarray, style: np.ndarray, masks: Optional[Masks] = None) -> np.ndarray:
        """Generator: image [B, 3, H, W], style [B, style_dim], masks for w_hpf > 0 -> image [B, 3, H, W]."""
        c = self.config
        items = [("image", self._float(image, "image"), self._image_shape()),
                 ("style", self._float(style, "style"), ("B", c.style_dim))]
        if c.uses_masks:
            if masks is None:
                raise InputError("this model (w_hpf > 0) needs the FAN masks of its images: "
                                 "generate(image, style, backend.heatmap(image))")
            if not isinstance(masks, (tuple, list)) or len(masks) != 2:
                raise InputError("masks must be the pair (mask0, mask1) returned by heatmap()")
            mask_shape = ("B", 1, MASK_SIZE, MASK_SIZE)
            items += [(f"mask{i}", self._float(m, f"mask{i}"), mask_shape) for i, m in enumerate(masks)]
        elif masks is not None:
            raise InputError("this model (w_hpf = 0) takes no FAN masks; call generate(image, style)")
        arrays = self._batch("generate", items)
        run_masks = (arrays[2], arrays[3]) if c.uses_masks else None
        return self._output(self._run_generate(arrays[0], arrays[1], run_masks))

    def heatmap(self, image: np.ndarray) -> Masks:
        """FAN masks of the images being translated (mask0, mask1), each float32 [B, 1, 256, 256]."""
        if not self.config.uses_masks:
            raise InputError("this model uses no FAN masks (w_hpf = 0)")
        (image,) = self._batch("heatmap", [("image", self._float(image, "image"), self._image_shape())])
        mask0, mask1 = self._run_heatmap(image)
        return self._output(mask0), self._output(mask1)

    def describe(self) -> str:
        return f"{self.name} ({self.device}, {self.precision})"

    def close(self) -> None:
        """Release engine resources (sessions, contexts) and save caches; the default has none."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, kind: Optional[type[BaseException]], value: Optional[BaseException],
                 traceback: Optional[TracebackType]) -> None:
        self.close()

    # ---- one of each per engine ------------------------------------------------------------------------------
    @abc.abstractmethod
    def _run_mapping(self, latent: np.ndarray, domain: np.ndarray) -> np.ndarray:
        """Mapping network on checked inputs (float32 [B, latent_dim], int64 [B])."""

    @abc.abstractmethod
    def _run_encode(self, image: np.ndarray, domain: np.ndarray) -> np.ndarray:
        """Style encoder on checked inputs (float32 [B, 3, S, S], int64 [B])."""

    @abc.abstractmethod
    def _run_generate(self, image: np.ndarray, style: np.ndarray, masks: Optional[Masks]) -> np.ndarray:
        """Generator on checked inputs; ``masks`` is given exactly when the model uses them."""

    @abc.abstractmethod
    def _run_heatmap(self, image: np.ndarray) -> Masks:
        """FAN masks on checked images (only called for ``w_hpf > 0`` models)."""

    # ---- the policy ------------------------------------------------------------------------------------------
    def _image_shape(self) -> Shape:
        size = self.config.img_size
        return ("B", 3, size, size)

    @staticmethod
    def _float(array: Any, what: str) -> np.ndarray:
        """Any real numeric array -> C-contiguous float32; anything else is an InputError."""
        try:
            out = np.asarray(array)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{what} must be a numeric array: {exc}") from None
        if out.dtype.kind not in "fiub":
            raise InputError(f"{what} must be a real numeric array, got dtype {out.dtype}")
        return np.ascontiguousarray(out, dtype=np.float32)

    def _domain(self, domain: Any) -> np.ndarray:
        """Domain indices -> C-contiguous int64 [B] (a scalar is a batch of one), checked against the model."""
        try:
            raw = np.asarray(domain)
        except (TypeError, ValueError) as exc:
            raise InputError(f"domain must be integer indices: {exc}") from None
        if raw.dtype.kind not in "iub" and not (raw.dtype.kind == "f" and np.all(np.mod(raw, 1) == 0)):
            raise InputError(f"domain must be integer indices, got dtype {raw.dtype}")
        out = np.ascontiguousarray(raw.reshape(-1) if raw.ndim == 0 else raw, dtype=np.int64)
        if out.ndim == 1 and out.size and (out.min() < 0 or out.max() >= self.config.num_domains):
            raise InputError(f"domain indices must be in [0, {self.config.num_domains}), got "
                             f"{sorted(set(out[(out < 0) | (out >= self.config.num_domains)].tolist()))[:5]}")
        return out

    @staticmethod
    def _batch(call: str, items: list[tuple[str, np.ndarray, Shape]]) -> list[np.ndarray]:
        """Check every input's shape, then repeat batch-1 inputs to the call's batch (the largest)."""
        for what, array, shape in items:
            if array.ndim != len(shape) or any(want != "B" and got != want for got, want in zip(array.shape, shape)):
                raise InputError(f"{call}: {what} has shape {list(array.shape)}, expected {_shape_text(shape)}")
        sizes = {what: len(array) for what, array, _ in items}
        batch = max(sizes.values())
        if min(sizes.values()) == 0:
            raise InputError(f"{call}: empty batch ({', '.join(f'{k}: {v}' for k, v in sizes.items())})")
        if any(size not in (1, batch) for size in sizes.values()):
            raise InputError(f"{call}: batch sizes differ ({', '.join(f'{k}: {v}' for k, v in sizes.items())}); "
                             "give every input the same batch, or a batch of 1 to share it")
        return [array if len(array) == batch else np.repeat(array, batch, axis=0)
                for _, array, _ in items]

    @staticmethod
    def _output(array: Any) -> np.ndarray:
        return np.ascontiguousarray(array, dtype=np.float32)
