"""Evaluation metrics: Perceptual Smoothness (numpy only), LPIPS, FID, diversity and identity (torch), and the
evaluation runner (``from smoothgan.metrics.evaluate import evaluate``) with its :class:`Report`.

The PS arithmetic and the report are imported eagerly; the torch-based names load on first use, so
``import smoothgan.metrics`` does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smoothgan.metrics.ps import (
    PS_MODES,
    PSModeSpec,
    PSResult,
    Summary,
    aggregate,
    gini,
    interpolation_alphas,
    smoothness_from_distances,
    summarize,
)
from smoothgan.metrics.report import MetricValue, Report

_LAZY = {
    "PerceptualDistance": "smoothgan.metrics.lpips",
    "InceptionFeatures": "smoothgan.metrics.fid",
    "extract_features": "smoothgan.metrics.fid",
    "feature_statistics": "smoothgan.metrics.fid",
    "fid_from_features": "smoothgan.metrics.fid",
    "fid_from_images": "smoothgan.metrics.fid",
    "frechet_distance": "smoothgan.metrics.fid",
    "arcface_crop": "smoothgan.metrics.diversity",
    "content_distance": "smoothgan.metrics.diversity",
    "identity_similarity": "smoothgan.metrics.diversity",
    "pairwise_diversity": "smoothgan.metrics.diversity",
    "sequence_distances": "smoothgan.metrics.diversity",
    "EvalData": "smoothgan.metrics.evaluate",
    "build_fid_extractor": "smoothgan.metrics.evaluate",
    "build_lpips": "smoothgan.metrics.evaluate",
    "scan_eval_data": "smoothgan.metrics.evaluate",
}

if TYPE_CHECKING:
    from smoothgan.metrics.diversity import (
        arcface_crop,
        content_distance,
        identity_similarity,
        pairwise_diversity,
        sequence_distances,
    )
    from smoothgan.metrics.evaluate import EvalData, build_fid_extractor, build_lpips, scan_eval_data
    from smoothgan.metrics.fid import (
        InceptionFeatures,
        extract_features,
        feature_statistics,
        fid_from_features,
        fid_from_images,
        frechet_distance,
    )
    from smoothgan.metrics.lpips import PerceptualDistance


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'smoothgan.metrics' has no attribute {name!r}")


__all__ = [
    "MetricValue",
    "PS_MODES",
    "PSModeSpec",
    "PSResult",
    "Report",
    "Summary",
    "aggregate",
    "gini",
    "interpolation_alphas",
    "smoothness_from_distances",
    "summarize",
    *_LAZY,
]
