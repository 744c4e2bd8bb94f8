"""Distance-based evaluations: LPIPS diversity, content distance, identity similarity, sequence distances.

Every function takes the distance as a callable ``(x0, x1) -> [B]`` (per pair, e.g.
:class:`smoothgan.metrics.lpips.PerceptualDistance`), so the protocol stays separate from the network. Images
are [.., 3, H, W] tensors in [-1, 1]. None of these functions enables gradients: call them under
``torch.no_grad()`` for evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from smoothgan.errors import InputError

__all__ = [
    "Distance",
    "arcface_crop",
    "content_distance",
    "identity_similarity",
    "pairwise_diversity",
    "sequence_distances",
]

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A per-pair distance: two [B, 3, H, W] batches -> [B] (a scalar batch mean is accepted where noted)."""


def pairwise_diversity(outputs: torch.Tensor, distance: Distance) -> float:
    """StarGAN v2 LPIPS diversity of one batch: mean over the M(M-1)/2 unordered pairs of output sets.

    ``outputs`` is [M, B, 3, H, W]: M translations (different styles) of the same B sources. For each pair
    (i < j) the distance between outputs[i] and outputs[j] is averaged over the batch; the result is the mean
    over pairs (REFERENCE 6.2, M = 10 there, 45 pairs). A task's score is the unweighted mean of this over its
    batches. A distance that already returns the batch mean (a scalar) works too.
    """
    if outputs.dim() != 5 or outputs.shape[0] < 2:
        raise InputError(f"diversity needs outputs of shape [M >= 2, B, 3, H, W], got {tuple(outputs.shape)}")
    m = outputs.shape[0]
    values = [
        distance(outputs[i], outputs[j]).float().mean() for i in range(m) for j in range(i + 1, m)
    ]
    return float(torch.stack(values).mean())


def content_distance(sources: torch.Tensor, outputs: torch.Tensor, distance: Distance) -> torch.Tensor:
    """Distance between each source and its translation, [B] (content preservation; lower = closer)."""
    if sources.shape != outputs.shape or sources.dim() != 4:
        raise InputError(f"sources and outputs must both be [B, 3, H, W] with equal shapes, got "
                         f"{tuple(sources.shape)} and {tuple(outputs.shape)}")
    return distance(sources, outputs)


def identity_similarity(
    sources: torch.Tensor, outputs: torch.Tensor, embed: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Cosine similarity [B] of face embeddings of each source and its translation (FRS, REFERENCE 6.5).

    ``embed`` is any face recognition model mapping images to [B, E] embeddings (the Smoothing repo uses the
    ArcFace IR-SE-50 of pSp/e4e, ``model_ir_se50.pth``, on :func:`arcface_crop` of the image; its weights are
    not shipped). Embeddings are L2-normalised here, so an unnormalised model works too. Higher = identity
    better kept; the official FRS is the mean of this over a task's batches and output sets.
    """
    if sources.shape != outputs.shape:
        raise InputError(f"sources and outputs differ in shape: {tuple(sources.shape)} vs {tuple(outputs.shape)}")
    e_src = F.normalize(embed(sources).flatten(1).float(), dim=1)  # [B, E]
    e_out = F.normalize(embed(outputs).flatten(1).float(), dim=1)  # [B, E]
    return (e_src * e_out).sum(dim=1)


def arcface_crop(images: torch.Tensor) -> torch.Tensor:
    """The official FRS preprocessing: rows 35-222, columns 32-219 of a 256x256 image, pooled to 112x112.

    Values stay in [-1, 1] (the official code does not re-normalise before the ArcFace backbone).
    """
    if images.dim() != 4 or images.shape[-2:] != (256, 256):
        raise InputError(f"the FRS face crop is defined for [B, 3, 256, 256] images, got {tuple(images.shape)}")
    return F.adaptive_avg_pool2d(images[:, :, 35:223, 32:220], (112, 112))  # [B, 3, 112, 112]


def sequence_distances(frames: torch.Tensor, distance: Distance) -> tuple[np.ndarray, float]:
    """Consecutive distances [N - 1] and the end-to-end distance of one interpolation sequence.

    ``frames`` is [N, 3, H, W] (N >= 2, e.g. 20 frames at ``interpolation_alphas(20)``). All N pairs go through
    ``distance`` in one batched call (the official script runs one pair at a time; results agree up to float
    accumulation order). Feed the result to ``smoothgan.metrics.ps.smoothness_from_distances`` with the mode
    that matches the distance: ``"official"`` for squared LPIPS, ``"metric"`` or ``"paper"`` for ``sqrt`` /
    ``abs`` (``smoothgan.metrics.ps.PS_MODES[mode].distance``), and a set of results to ``ps.summarize``.
    """
    if frames.dim() != 4 or frames.shape[0] < 2:
        raise InputError(f"a sequence needs frames of shape [N >= 2, 3, H, W], got {tuple(frames.shape)}")
    first = torch.cat([frames[:-1], frames[:1]])  # pairs (t, t + 1) for t < N - 1, then (0, N - 1)
    second = torch.cat([frames[1:], frames[-1:]])
    d = distance(first, second).detach().double().cpu().numpy().reshape(-1)
    if d.shape[0] != frames.shape[0]:
        raise InputError(f"the distance must return one value per pair ([B]), got {d.shape[0]} values "
                         f"for {frames.shape[0]} pairs")
    return d[:-1].copy(), float(d[-1])
