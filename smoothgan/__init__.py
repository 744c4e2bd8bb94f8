"""smoothgan: smoothed StarGAN v2 for multi-domain image-to-image translation.

Heavy modules (torch, onnxruntime) load lazily, so ``import smoothgan`` and ``smoothgan --version`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "load": "smoothgan.translator",
    "Translator": "smoothgan.translator",
    "ModelBundle": "smoothgan.bundle",
    "ModelConfig": "smoothgan.config",
    "SmoothganError": "smoothgan.errors",
}

if TYPE_CHECKING:
    from smoothgan.bundle import ModelBundle
    from smoothgan.config import ModelConfig
    from smoothgan.errors import SmoothganError
    from smoothgan.translator import Translator, load


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'smoothgan' has no attribute {name!r}")


__all__ = ["__version__", "load", "Translator", "ModelBundle", "ModelConfig", "SmoothganError"]
