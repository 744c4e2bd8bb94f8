"""Fréchet Inception Distance as the official StarGAN v2 evaluation computes it (REFERENCE 6.3).

FID = ||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 sqrtm(S_r S_f)) over feature statistics (mean, unbiased covariance).
The official features come from torchvision's ImageNet ``inception_v3`` (not the TF-FID Inception used by
pytorch-fid / clean-fid), pooled after ``Mixed_7c`` to 2048-d: numbers are comparable with the StarGAN v2 and
Smoothing papers, not with other FID tools. Any callable ``images -> [B, F]`` can replace the Inception.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from smoothgan.errors import InputError
from smoothgan.metrics.lpips import load_state_dict_file, pretrained_weights

__all__ = [
    "INCEPTION_FILE",
    "InceptionFeatures",
    "extract_features",
    "feature_statistics",
    "fid_from_features",
    "fid_from_images",
    "frechet_distance",
]

logger = logging.getLogger(__name__)

INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"
"""torchvision's ImageNet Inception v3 checkpoint, as named in the torch hub cache."""
INCEPTION_URL = "https://download.pytorch.org/models/" + INCEPTION_FILE

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_BLOCKS = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2",
    "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
    "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool",
)  # fmt: skip
_UNUSED_PREFIXES = ("AuxLogits.", "fc.")


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between two Gaussians N(mu1, sigma1) and N(mu2, sigma2), in float64.

    Uses scipy's ``sqrtm`` and keeps its real part, as the official code does (small imaginary parts come from
    rounding; large ones are logged). When the product of the covariances is singular and ``sqrtm`` fails
    (non-finite result), ``eps`` is added to both diagonals and the root recomputed, as pytorch-fid does.
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    dim = mu1.shape[0]
    if mu1.shape != (dim,) or mu2.shape != (dim,) or sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise InputError(f"FID statistics disagree in shape: mu {mu1.shape}/{mu2.shape}, "
                         f"sigma {sigma1.shape}/{sigma2.shape}")

    diff = mu1 - mu2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    if caught:
        logger.info("FID: covariance product is singular (fewer samples than features?); result is approximate")
    if not np.all(np.isfinite(covmean)):
        logger.warning("FID: sqrtm gave non-finite values; adding %g to the covariance diagonals", eps)
        offset = np.eye(dim) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        max_imag = float(np.max(np.abs(covmean.imag)))
        if max_imag > 1e-3:
            logger.warning("FID: sqrtm has an imaginary part up to %.3g; keeping the real part", max_imag)
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and unbiased (N - 1) covariance [F, F] of features [N, F], float64."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise InputError(f"feature statistics need a [N, F] array with N >= 2, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1])


def fid_from_features(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor) -> float:
    """FID between two feature sets [N, F] and [M, F]."""
    mu_r, sigma_r = feature_statistics(real)
    mu_f, sigma_f = feature_statistics(fake)
    return frechet_distance(mu_r, sigma_r, mu_f, sigma_f)


def extract_features(
    images: torch.Tensor | Iterable[torch.Tensor],
    extractor: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 50,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Run ``extractor`` without gradients over images ([N, 3, H, W] or an iterable of batches) -> [N, F].

    Batches are moved to ``device`` when given; the extractor decides everything else (size, normalisation).
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    batches = images.split(batch_size) if isinstance(images, torch.Tensor) else images
    out: list[np.ndarray] = []
    with torch.no_grad():
        for batch in batches:
            if device is not None:
                batch = batch.to(device)
            feats = extractor(batch)
            out.append(feats.reshape(feats.shape[0], -1).float().cpu().numpy())
    if not out:
        raise InputError("no images to extract features from")
    return np.concatenate(out, axis=0)


def fid_from_images(
    real: torch.Tensor | Iterable[torch.Tensor],
    fake: torch.Tensor | Iterable[torch.Tensor],
    extractor: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 50,
    device: torch.device | str | None = None,
) -> float:
    """FID between two image sets in [-1, 1] through any feature extractor (e.g. :class:`InceptionFeatures`)."""
    real_feats = extract_features(real, extractor, batch_size, device)
    fake_feats = extract_features(fake, extractor, batch_size, device)
    return fid_from_features(real_feats, fake_feats)


class InceptionFeatures(nn.Module):
    """2048-d pooled features of torchvision's Inception v3, as the official FID uses them.

    Input [B, 3, H, W] in [-1, 1]; resized to 299x299 (bilinear, antialiased like the official PIL resize) and
    normalised with ImageNet mean/std, then run through ``Conv2d_1a_3x3`` .. ``Mixed_7c`` and global average
    pooling (torchvision's ``transform_input`` is bypassed, as in the official wrapper). Output [B, 2048].

    ``weights=None`` reads torchvision's cached ImageNet checkpoint from
    ``torch.hub.get_dir()/checkpoints/inception_v3_google-0cc3c7bd.pth`` (never downloads); a path loads that
    state dict (``weights_only=True``; the ``AuxLogits`` and ``fc`` entries may be absent). No device is chosen
    here and the module always stays in eval mode (BatchNorm statistics frozen).
    """

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__()
        from torchvision.models import inception_v3

        path = pretrained_weights(weights, INCEPTION_FILE, INCEPTION_URL, "Inception v3 ImageNet weights for FID",
                                  "weights=<path to an inception_v3 state dict>")
        state = load_state_dict_file(path, "Inception v3")

        net = inception_v3(weights=None, aux_logits=True, init_weights=False)
        try:
            result = net.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise InputError(f"{path} does not fit torchvision inception_v3: {exc}") from exc
        missing = [k for k in result.missing_keys if not k.startswith(_UNUSED_PREFIXES)]
        if missing or result.unexpected_keys:
            raise InputError(f"{path} does not fit torchvision inception_v3: missing {missing[:5]}, "
                             f"unexpected {result.unexpected_keys[:5]}")
        self.blocks = nn.Sequential(*(getattr(net, name) for name in _BLOCKS))
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.weights_path = path
        self.requires_grad_(False)
        self.train(False)

    def describe(self) -> str:
        """The weights in use, for reports."""
        return f"torchvision inception_v3 ({self.weights_path})"

    def train(self, mode: bool = True) -> InceptionFeatures:
        """Ignore ``mode``: feature extraction always runs in eval mode."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> [B, 2048]."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"Inception features need [B, 3, H, W] images, got {tuple(images.shape)}")
        x = (images + 1.0) / 2.0
        if x.shape[-2:] != (299, 299):
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False, antialias=True)
        x = (x - self.mean) / self.std
        return self.blocks(x).flatten(1)  # [B, 2048]
