"""Architecture configuration: one frozen dataclass = constructor arguments = JSON, plus named presets.

The official networks take (img_size, style_dim, latent_dim, num_domains, w_hpf, max_conv_dim); ``base_dim``
and ``mapping_dim`` default to the official values (2**14 // img_size and 512) and exist so tests and small
models can be narrow.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from smoothgan.errors import BundleError


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build generator, mapping network, style encoder and discriminator."""

    img_size: int = 256
    num_domains: int = 2
    style_dim: int = 64
    latent_dim: int = 16
    w_hpf: float = 0.0
    max_conv_dim: int = 512
    base_dim: int = 0  # 0 means the official 2**14 // img_size
    mapping_dim: int = 512

    def __post_init__(self) -> None:
        problems = []
        if self.img_size < 16 or 2 ** int(math.log2(self.img_size)) != self.img_size:
            problems.append(f"img_size must be a power of two >= 16, got {self.img_size}")
        if self.w_hpf > 0 and self.img_size < 32:
            problems.append("w_hpf > 0 needs img_size >= 32 (the high-pass skips sit at 32, 64 and 128)")
        if self.num_domains < 1:
            problems.append(f"num_domains must be >= 1, got {self.num_domains}")
        for name in ("style_dim", "latent_dim", "max_conv_dim", "mapping_dim"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if self.w_hpf < 0:
            problems.append("w_hpf must be >= 0")
        if self.base_dim < 0:
            problems.append("base_dim must be >= 0")
        if problems:
            raise BundleError("invalid model config: " + "; ".join(problems))

    @property
    def start_dim(self) -> int:
        """Width of the first convolution (d0)."""
        return self.base_dim or 2**14 // self.img_size

    @property
    def uses_masks(self) -> bool:
        """CelebA-HQ-style models use FAN masks and high-pass skips."""
        return self.w_hpf > 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Strict: unknown keys are an error, so a typo never silently becomes a default."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BundleError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class Preset:
    """A named configuration with domain names in index order."""

    config: ModelConfig
    domains: tuple[str, ...]
    description: str = ""


PRESETS: dict[str, Preset] = {
    "stargan_v2-celeba_hq": Preset(
        ModelConfig(img_size=256, num_domains=2, w_hpf=1.0), ("female", "male"), "official CelebA-HQ model"
    ),
    "stargan_v2-afhq": Preset(
        ModelConfig(img_size=256, num_domains=3, w_hpf=0.0), ("cat", "dog", "wild"), "official AFHQ model"
    ),
    "smoothed-celeba_hq": Preset(
        ModelConfig(img_size=256, num_domains=2, w_hpf=1.0), ("female", "male"), "smoothing CelebA-HQ model"
    ),
    "smoothed-afhq": Preset(
        ModelConfig(img_size=256, num_domains=3, w_hpf=0.0), ("cat", "dog", "wild"), "smoothing AFHQ model"
    ),
    "small": Preset(
        ModelConfig(img_size=64, num_domains=3, base_dim=32, max_conv_dim=128, mapping_dim=128),
        ("circle", "square", "triangle"),
        "64x64 narrow model for the synthetic dataset",
    ),
    "tiny": Preset(
        ModelConfig(img_size=32, num_domains=2, style_dim=16, latent_dim=8, base_dim=8, max_conv_dim=32,
                    mapping_dim=32),
        ("a", "b"),
        "32x32 unit-test model",
    ),
    "tiny-hpf": Preset(
        ModelConfig(img_size=32, num_domains=2, style_dim=16, latent_dim=8, w_hpf=1.0, base_dim=8,
                    max_conv_dim=32, mapping_dim=32),
        ("a", "b"),
        "32x32 unit-test model with FAN masks",
    ),
}


def get_preset(name: str) -> Preset:
    """Look up a preset by name with a helpful error."""
    try:
        return PRESETS[name]
    except KeyError:
        raise BundleError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None


__all__ = ["ModelConfig", "Preset", "PRESETS", "get_preset"]
