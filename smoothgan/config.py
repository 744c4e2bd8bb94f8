"""Architecture configuration: one frozen dataclass = constructor arguments = JSON, plus named presets.

The official networks take (img_size, style_dim, latent_dim, num_domains, w_hpf, max_conv_dim); ``base_dim``
and ``mapping_dim`` default to the official values (2**14 // img_size and 512) and exist so tests and small
models can be narrow.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union

from smoothgan.errors import BundleError, SmoothganError

T = TypeVar("T")


def describe(value: Any) -> str:
    """A JSON value named the way a user sees it in the file: ``a string ("32")``, ``null``, ``a list``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({short_number(value)})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({shown!r})"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def short_number(value: float) -> str:
    """A number for a message: as written when short, else its magnitude (a 400-digit int has no float form)."""
    text = repr(value)
    if len(text) <= 20:
        return text
    if isinstance(value, int):
        return f"{'-' if value < 0 else ''}a {len(str(abs(value)))}-digit integer"
    return f"{value:.6g}"


def check_value(value: Any, hint: Any, where: str, error: type[SmoothganError] = BundleError) -> Any:
    """``value`` as type ``hint`` (int, float, str, bool, Literal, Optional, tuple, nested dataclass, Any).

    No coercion but the lossless ones: an int for a float becomes a float, a list for a tuple a tuple. Booleans are
    never numbers, floats must be finite. ``where`` names the key in the error (``smoothgan.json: config.img_size``).
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return check_value(value, options[0], where, error)
        for option in options:
            try:
                return check_value(value, option, where, error)
            except SmoothganError:
                continue
        raise error(f"{where} must be one of {', '.join(map(_type_name, options))}, got {describe(value)}")
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise error(f"{where} must be one of {', '.join(map(repr, args))}, got {describe(value)}")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise error(f"{where} must be a finite number, got {value!r}")
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(check_value(v, args[0], f"{where}[{i}]", error) for i, v in enumerate(value))
            if len(value) != len(args):
                raise error(f"{where} must be a list of {len(args)}, got {describe(value)}")
            return tuple(check_value(v, a, f"{where}[{i}]", error) for i, (v, a) in enumerate(zip(value, args)))
    elif dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return strict_from_dict(hint, value, where, error)
    else:
        raise TypeError(f"check_value does not handle {hint!r} ({where})")
    raise error(f"{where} must be {_type_name(hint)}, got {describe(value)}")


def _type_name(hint: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "a boolean (true/false)"}
    if hint in names:
        return names[hint]
    if typing.get_origin(hint) is tuple:
        return "a list"
    if dataclasses.is_dataclass(hint):
        return "an object"
    return getattr(hint, "__name__", repr(hint))


def strict_from_dict(cls: type[T], data: Any, where: str, error: type[SmoothganError] = BundleError) -> T:
    """Build the frozen dataclass ``cls`` from a JSON object: every key known, every value of its field's type.

    The one strict reader for configuration read from files (bundle ``config``, training options, loss weights):
    unknown keys, missing required keys and wrong types are one-line ``error``s naming ``where`` and the key, so a
    typo never silently becomes a default and a string never reaches a comparison. Range checks stay in the
    dataclass's ``__post_init__``; their message is prefixed with ``where``.
    """
    if not isinstance(data, Mapping):
        raise error(f"{where} must be an object, got {describe(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        raise error(f"{where}: unknown keys {', '.join(unknown)} (known: {', '.join(fields)})")
    missing = [name for name, f in fields.items() if name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise error(f"{where}: missing keys {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    values = {name: check_value(value, hints[name], f"{where}.{name}", error) for name, value in data.items()}
    try:
        return cls(**values)
    except SmoothganError as exc:
        raise error(f"{where}: {exc}") from None


# Upper bounds: far above any StarGAN v2 model (official: 256 px, 64/16/512), low enough that a malformed file
# cannot ask for a network that exhausts memory before its weights are even compared.
LIMITS: dict[str, float] = {"img_size": 1024, "num_domains": 1000, "style_dim": 4096, "latent_dim": 4096,
                            "w_hpf": 100.0, "max_conv_dim": 8192, "base_dim": 8192, "mapping_dim": 8192}


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
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            check_value(getattr(self, f.name), hints[f.name], f"model config {f.name}")
        problems = []
        for name, most in LIMITS.items():
            if getattr(self, name) > most:
                problems.append(f"{name} must be <= {most:g}, got {short_number(getattr(self, name))}")
        if problems:
            raise BundleError("invalid model config: " + "; ".join(problems))
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
    def from_dict(cls, data: Any, where: str = "model config",
                  error: type[SmoothganError] = BundleError) -> "ModelConfig":
        """Strict (:func:`strict_from_dict`): unknown keys and wrong types are errors naming ``where``."""
        return strict_from_dict(cls, data, where, error)


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
    "shapes32": Preset(
        ModelConfig(img_size=32, num_domains=3, style_dim=32, latent_dim=16, base_dim=16, max_conv_dim=64,
                    mapping_dim=64),
        ("circle", "square", "triangle"),
        "32x32 model for the converged CPU ablation on the synthetic shapes (half the small model's widths)",
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


__all__ = ["LIMITS", "ModelConfig", "Preset", "PRESETS", "check_value", "describe", "get_preset", "strict_from_dict"]
