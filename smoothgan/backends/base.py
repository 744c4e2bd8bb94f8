"""The one small interface every inference engine implements.

All arrays at the boundary are numpy, C-contiguous: images float32 [B, 3, H, W] in [-1, 1], styles float32
[B, style_dim], latents float32 [B, latent_dim], domains int64 [B], masks a pair of float32 [B, 1, 256, 256]
(FAN masks, only for models with ``w_hpf > 0``). Backends differ only in engine, device and precision.
"""

from __future__ import annotations

import abc
from typing import Optional

import numpy as np

from smoothgan.config import ModelConfig

Masks = tuple[np.ndarray, np.ndarray]


class Backend(abc.ABC):
    """Runs the four networks of a bundle; see the module docstring for shapes and dtypes."""

    name: str = ""

    def __init__(self, config: ModelConfig, device: str, precision: str) -> None:
        self.config = config
        self.device = device
        self.precision = precision

    @abc.abstractmethod
    def mapping(self, latent: np.ndarray, domain: np.ndarray) -> np.ndarray:
        """Mapping network: latent [B, latent_dim] float32, domain [B] int64 -> style [B, style_dim]."""

    @abc.abstractmethod
    def encode_style(self, image: np.ndarray, domain: np.ndarray) -> np.ndarray:
        """Style encoder: image [B, 3, H, W] in [-1, 1], domain [B] -> style [B, style_dim]."""

    @abc.abstractmethod
    def generate(self, image: np.ndarray, style: np.ndarray, masks: Optional[Masks] = None) -> np.ndarray:
        """Generator: image [B, 3, H, W], style [B, style_dim], masks for w_hpf > 0 -> image [B, 3, H, W]."""

    @abc.abstractmethod
    def heatmap(self, image: np.ndarray) -> Masks:
        """FAN masks of the images being translated (mask0, mask1), each float32 [B, 1, 256, 256]."""

    def describe(self) -> str:
        return f"{self.name} ({self.device}, {self.precision})"

    def close(self) -> None:
        """Release engine resources (sessions, contexts); the default has none."""
