"""LPIPS v0.1 (AlexNet) as a per-pair distance, in the three readings PS and training need.

Wraps ``lpips.LPIPS(net='alex', version='0.1')`` from the ``lpips`` package (BSD-2). Its linear-layer weights
(``lpips/weights/v0.1/alex.pth``) are bit-identical to the official repos' ``metrics/lpips_weights.ckpt``
(REFERENCE 6.1), so ``mode="squared"`` is the official LPIPS, per pair instead of batch-averaged.

The AlexNet backbone needs torchvision's ImageNet weights, which are never downloaded here: they are read from
the torch hub cache or from a path you pass (see :class:`PerceptualDistance`).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from smoothgan.errors import BackendError, InputError

__all__ = ["DistanceMode", "PerceptualDistance", "hub_checkpoint_path", "load_state_dict_file", "pretrained_weights"]

logger = logging.getLogger(__name__)

DistanceMode = Literal["squared", "sqrt", "abs"]
_MODES = ("squared", "sqrt", "abs")

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
"""torchvision's ImageNet AlexNet checkpoint, as named in the torch hub cache."""
ALEXNET_URL = "https://download.pytorch.org/models/" + ALEXNET_FILE

# torchvision ``alexnet().features`` index -> lpips slice holding it (slices split after each ReLU).
_ALEX_CONV_SLICE = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}


def hub_checkpoint_path(file_name: str) -> Path:
    """Where torchvision's pretrained loader caches ``file_name``: ``torch.hub.get_dir()/checkpoints/``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def pretrained_weights(given: str | Path | None, file_name: str, url: str, what: str, how_to_pass: str) -> Path:
    """The weights file to load: ``given``, else torchvision's copy in the torch hub cache.

    Nothing is ever downloaded: a missing cache file is a BackendError naming the file, its URL, where to put
    it, and ``how_to_pass`` an explicit path instead.
    """
    if given is not None:
        return Path(given)
    path = hub_checkpoint_path(file_name)
    if not path.is_file():
        raise BackendError(f"{what} not found: put torchvision's {file_name} ({url}) at {path}, or pass "
                           f"{how_to_pass}")
    return path


def load_state_dict_file(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """Load a tensor state dict onto the CPU with ``weights_only=True``; InputError when missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or non-tensor pickles
        raise InputError(f"cannot read {what} weights from {path}: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path} is not a state dict of tensors ({what})")
    return state


def _alexnet_feature_state(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Map an AlexNet state dict (full model or ``features`` only) onto the lpips slice names."""
    if any(k.startswith("features.") for k in state):
        state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        index, _, param = key.partition(".")
        if not index.isdigit() or int(index) not in _ALEX_CONV_SLICE or param not in ("weight", "bias"):
            raise InputError(f"{path}: unexpected key {key!r} for torchvision AlexNet features")
        mapped[f"slice{_ALEX_CONV_SLICE[int(index)]}.{index}.{param}"] = value
    return mapped


class PerceptualDistance(nn.Module):
    """LPIPS v0.1 with an AlexNet backbone, returning one distance per image pair (shape [B]).

    Inputs are two image batches in [-1, 1], NCHW, same shape. ``mode``:

    - ``"squared"``: standard LPIPS (squared difference of unit-normalised features, weighted, spatially
      averaged, summed over the 5 layers) = the official repos' default and what ``ps_eval.py`` uses.
      Not a metric (no triangle inequality).
    - ``"sqrt"``: the square root of standard LPIPS per pair, a metric-like reading for PS ``"metric"`` and
      ``"paper"`` modes.
      Its gradient is infinite at distance 0: train with ``"squared"``.
    - ``"abs"``: the Smoothing repo's ``l2`` variant: elementwise |f0 - f1| of the unit-normalised features,
      weighted and summed like LPIPS. With non-negative weights it is a pseudo-metric. That variant loads its
      own weights file, ``metrics/lpips_weights.pth``, published in the Smoothing repo's tree; smoothgan does
      not read it (CC BY-NC) and uses the v0.1 alex weights, so values differ from that variant's.

    Backbone (torchvision AlexNet ``features``): ``backbone_weights=None`` reads torchvision's cached
    ImageNet checkpoint from ``torch.hub.get_dir()/checkpoints/alexnet-owt-7be5be79.pth`` (never downloads);
    a path loads that state dict (a full AlexNet or its ``features``); ``random_backbone=True`` keeps a random
    AlexNet, for tests only: its distances mean nothing perceptually.

    The module chooses no device (move it with ``.to()``), stays in eval mode even inside a parent put into
    training mode, and freezes its parameters; ``forward`` is not wrapped in ``no_grad`` so it can serve as a
    loss (gradients flow to the images). Wrap evaluation in ``torch.no_grad()``.
    """

    def __init__(
        self,
        mode: DistanceMode = "squared",
        backbone_weights: str | Path | None = None,
        random_backbone: bool = False,
    ) -> None:
        super().__init__()
        if mode not in _MODES:
            raise InputError(f"unknown LPIPS mode {mode!r}; expected one of {', '.join(_MODES)}")
        if random_backbone and backbone_weights is not None:
            raise InputError("pass either backbone_weights or random_backbone=True, not both")
        self.mode: DistanceMode = mode

        backbone_path: Path | None = None
        backbone_state: dict[str, torch.Tensor] | None = None
        if not random_backbone:
            backbone_path = pretrained_weights(backbone_weights, ALEXNET_FILE, ALEXNET_URL,
                                               "AlexNet ImageNet weights for LPIPS",
                                               "backbone_weights=<path to an AlexNet state dict>")
            backbone_state = load_state_dict_file(backbone_path, "AlexNet backbone")

        self.net = _build_lpips()
        if backbone_path is not None and backbone_state is not None:
            mapped = _alexnet_feature_state(backbone_state, backbone_path)
            try:
                self.net.net.load_state_dict(mapped, strict=True)
            except RuntimeError as exc:
                raise InputError(f"{backbone_path} does not fit torchvision AlexNet features: {exc}") from exc
        self._backbone = "random init" if backbone_path is None else str(backbone_path)
        logger.debug("LPIPS v0.1 alex, mode=%s, backbone %s", mode, self._backbone)

        self.requires_grad_(False)
        self.train(False)

    def describe(self) -> str:
        """The backbone in use, for reports: ``"alexnet (random init)"`` or ``"alexnet (<weights path>)"``."""
        return f"alexnet ({self._backbone})"

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, backbone={self.describe()!r}"

    def train(self, mode: bool = True) -> PerceptualDistance:
        """Ignore ``mode``: the metric always runs in eval mode (its Dropout layers must stay off)."""
        return super().train(False)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """Per-pair distances [B] between ``x0`` and ``x1`` ([B, 3, H, W] in [-1, 1])."""
        if x0.shape != x1.shape or x0.dim() != 4 or x0.shape[1] != 3:
            raise InputError(
                f"LPIPS needs two [B, 3, H, W] batches of equal shape, got {tuple(x0.shape)} and {tuple(x1.shape)}"
            )
        if self.mode == "abs":
            return self._abs_distance(x0, x1)
        d = self.net(x0, x1).flatten()  # [B] (the package returns [B, 1, 1, 1])
        if self.mode == "sqrt":
            d = d.clamp_min(0.0).sqrt()
        return d

    def _abs_distance(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """SM's ``l2`` variant: weighted, spatially averaged |f0 - f1| of unit-normalised features, [B]."""
        import lpips

        feats0 = self.net.net(self.net.scaling_layer(x0))
        feats1 = self.net.net(self.net.scaling_layer(x1))
        total = x0.new_zeros(x0.shape[0])
        for k, lin in enumerate(self.net.lins):
            diff = (lpips.normalize_tensor(feats0[k]) - lpips.normalize_tensor(feats1[k])).abs()
            total = total + lin(diff).mean(dim=(1, 2, 3))  # [B]
        return total


def _build_lpips() -> nn.Module:
    """``lpips.LPIPS(net='alex', version='0.1')`` with a random backbone and the package's v0.1 linear weights.

    The backbone is always built random (``pnet_rand=True``: torchvision ``alexnet(pretrained=False)``, which
    needs no file) and filled in by the caller, so nothing is ever downloaded. The linear weights are loaded
    here strictly, with ``weights_only=True``, rather than by the package's lenient ``strict=False`` load.
    """
    try:
        import lpips
    except ImportError as exc:
        raise BackendError("LPIPS needs the 'lpips' package: pip install 'smoothgan[eval]'") from exc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's deprecation notice for pretrained=False
        net = lpips.LPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True, verbose=False)

    lin_path = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    if not lin_path.is_file():
        raise BackendError(f"the lpips package is missing its linear weights {lin_path}; reinstall lpips")
    lin_state = torch.load(lin_path, map_location="cpu", weights_only=True)
    expected = {f"lin{i}.model.1.weight" for i in range(5)}  # also registered as lins.{i}: same tensors
    if set(lin_state) != expected:
        raise BackendError(f"unexpected keys in {lin_path}: {sorted(set(lin_state) ^ expected)}")
    net.load_state_dict(lin_state, strict=False)  # strict=False only because the backbone is not in this file
    return net
