"""Training: procedural data (``synth``), data (``data``, ``sampling``), losses, options, the loop and checkpoints.

Submodules other than ``synth`` import torch; the names below that need it load lazily on first access, so
``import smoothgan.trainer`` stays light (numpy and Pillow only). The loop itself is
``smoothgan.trainer.train.train`` (the submodule name ``train`` is not re-bound to the function here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smoothgan.trainer.synth import estimate_content, generate, render, sample_attributes

_LAZY = {
    "TrainOptions": "smoothgan.trainer.options",
    "TRAIN_PRESETS": "smoothgan.trainer.options",
    "preset_options": "smoothgan.trainer.options",
    "Trainer": "smoothgan.trainer.train",
    "TrainingError": "smoothgan.trainer.train",
    "export_bundle": "smoothgan.trainer.checkpoint",
    "read_checkpoint": "smoothgan.trainer.checkpoint",
}

if TYPE_CHECKING:
    from smoothgan.trainer.checkpoint import export_bundle, read_checkpoint
    from smoothgan.trainer.options import TRAIN_PRESETS, TrainOptions, preset_options
    from smoothgan.trainer.train import Trainer, TrainingError


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'smoothgan.trainer' has no attribute {name!r}")


__all__ = ["estimate_content", "generate", "render", "sample_attributes", *_LAZY]
