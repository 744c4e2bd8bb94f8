"""Training: procedural data (``synth``), data loading (``data``), losses (``losses``) and the loop.

Submodules import torch; import them directly (``from smoothgan.trainer import losses``). Only names that need
nothing beyond numpy and Pillow are re-exported here, so ``import smoothgan.trainer`` stays light.
"""

from __future__ import annotations

from smoothgan.trainer.synth import estimate_content, generate, render, sample_attributes

__all__ = ["estimate_content", "generate", "render", "sample_attributes"]
