"""StarGAN v2 networks with the official attribute names (REFERENCE.md section 2).

Official state_dicts load into these modules without renaming. Forward passes are export-friendly: domain
heads are selected with ``gather`` (no batch size baked into a graph), the high-pass filter is a constant buffer,
no device is chosen at construction, and the generator takes the two FAN masks as plain tensors.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from smoothgan.config import ModelConfig

INV_SQRT2 = 1.0 / math.sqrt(2.0)
HPF_RESOLUTIONS = (32, 64, 128)  # hard-coded in the official generator, independent of img_size (REFERENCE 2.5)


def _widths(config: ModelConfig, num_blocks: int) -> list[int]:
    """Channel widths d(0..num_blocks): start width doubled per block, capped at max_conv_dim (REFERENCE 2.1)."""
    widths = [config.start_dim]
    for _ in range(num_blocks):
        widths.append(min(widths[-1] * 2, config.max_conv_dim))
    return widths


def select_domain(per_domain: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
    """Pick row ``domain[b]`` of ``per_domain[b]``: [B, K, D] x [B] -> [B, D], via gather (export-safe)."""
    index = domain.long().view(-1, 1, 1).expand(-1, 1, per_domain.shape[2])
    return per_domain.gather(1, index).squeeze(1)


class ResBlk(nn.Module):
    """Pre-activation residual block of encoder, style encoder and discriminator (REFERENCE 2.2)."""

    def __init__(self, dim_in: int, dim_out: int, normalize: bool = False, downsample: bool = False) -> None:
        super().__init__()
        self.actv = nn.LeakyReLU(0.2)
        self.normalize = normalize
        self.downsample = downsample
        self.learned_sc = dim_in != dim_out
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        if normalize:
            self.norm1 = nn.InstanceNorm2d(dim_in, affine=True)
            self.norm2 = nn.InstanceNorm2d(dim_in, affine=True)
        if self.learned_sc:
            self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.learned_sc:
            x = self.conv1x1(x)
        if self.downsample:
            x = F.avg_pool2d(x, 2)
        return x

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = self.norm1(x)
        x = self.conv1(self.actv(x))
        if self.downsample:
            x = F.avg_pool2d(x, 2)
        if self.normalize:
            x = self.norm2(x)
        return self.conv2(self.actv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self._shortcut(x) + self._residual(x)) * INV_SQRT2


class AdaIN(nn.Module):
    """Adaptive instance norm: (1 + gamma) * IN(x) + beta with gamma, beta = fc(s) (REFERENCE 2.3)."""

    def __init__(self, style_dim: int, num_features: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(num_features, affine=False)
        self.fc = nn.Linear(style_dim, num_features * 2)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        h = self.fc(s)[:, :, None, None]  # [B, 2C, 1, 1]; a style batch of 1 broadcasts over B images
        gamma, beta = h.chunk(2, dim=1)
        return (1 + gamma) * self.norm(x) + beta


class AdainResBlk(nn.Module):
    """Decoder block; with w_hpf > 0 the output is the residual alone (conv1x1 exists but is unused)."""

    def __init__(self, dim_in: int, dim_out: int, style_dim: int = 64, w_hpf: float = 0.0,
                 upsample: bool = False) -> None:
        super().__init__()
        self.w_hpf = w_hpf
        self.actv = nn.LeakyReLU(0.2)
        self.upsample = upsample
        self.learned_sc = dim_in != dim_out
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, 1, 1)
        self.norm1 = AdaIN(style_dim, dim_in)
        self.norm2 = AdaIN(style_dim, dim_out)
        if self.learned_sc:
            self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        if self.learned_sc:
            x = self.conv1x1(x)
        return x

    def _residual(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        x = self.actv(self.norm1(x, s))
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv1(x)
        x = self.actv(self.norm2(x, s))
        return self.conv2(x)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        out = self._residual(x, s)
        if self.w_hpf == 0:
            out = (out + self._shortcut(x)) * INV_SQRT2
        return out


class HighPass(nn.Module):
    """Depthwise 3x3 Laplacian-like filter divided by w_hpf; the kernel is the buffer ``filter`` (3, 3)."""

    def __init__(self, w_hpf: float) -> None:
        super().__init__()
        kernel = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]]) / w_hpf
        self.register_buffer("filter", kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        weight = self.filter.to(x.dtype).expand(channels, 1, 3, 3)
        return F.conv2d(x, weight, padding=1, groups=channels)


class Generator(nn.Module):
    """Encoder-decoder generator G(x, s, masks) (REFERENCE 2.5). Output is unbounded (no tanh)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.img_size = config.img_size
        self.w_hpf = config.w_hpf
        num_down = int(math.log2(config.img_size)) - 4 + (1 if config.w_hpf > 0 else 0)
        widths = _widths(config, num_down)
        self.from_rgb = nn.Conv2d(3, widths[0], 3, 1, 1)
        self.encode = nn.ModuleList()
        self.decode = nn.ModuleList()
        self.to_rgb = nn.Sequential(
            nn.InstanceNorm2d(widths[0], affine=True), nn.LeakyReLU(0.2), nn.Conv2d(widths[0], 3, 1, 1, 0)
        )
        for k in range(num_down):
            self.encode.append(ResBlk(widths[k], widths[k + 1], normalize=True, downsample=True))
            self.decode.insert(
                0, AdainResBlk(widths[k + 1], widths[k], config.style_dim, config.w_hpf, upsample=True)
            )
        for _ in range(2):
            self.encode.append(ResBlk(widths[-1], widths[-1], normalize=True))
            self.decode.insert(0, AdainResBlk(widths[-1], widths[-1], config.style_dim, config.w_hpf))
        if config.w_hpf > 0:
            self.hpf = HighPass(config.w_hpf)

    def forward(self, x: torch.Tensor, s: torch.Tensor, masks: Optional[tuple[torch.Tensor, torch.Tensor]] = None
                ) -> torch.Tensor:
        """x [B, 3, H, W] in [-1, 1], s [B, style_dim], masks (mask0, mask1) [B, 1, h, w] -> [B, 3, H, W]."""
        use_masks = masks is not None and self.w_hpf > 0
        h = self.from_rgb(x)
        cache: dict[int, torch.Tensor] = {}
        for block in self.encode:
            if use_masks and h.shape[2] in HPF_RESOLUTIONS:
                cache[h.shape[2]] = h  # the block's input (REFERENCE 2.5 step 2)
            h = block(h)
        for block in self.decode:
            h = block(h, s)
            size = h.shape[2]
            if use_masks and size in HPF_RESOLUTIONS:
                mask = masks[0] if size == 32 else masks[1]
                mask = F.interpolate(mask, size=(size, size), mode="bilinear", align_corners=False)
                h = h + self.hpf(mask * cache[size])
        return self.to_rgb(h)


class MappingNetwork(nn.Module):
    """z -> per-domain style codes; an MLP trunk and one MLP head per domain (REFERENCE 2.6)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        hidden = config.mapping_dim
        layers: list[nn.Module] = [nn.Linear(config.latent_dim, hidden), nn.ReLU()]
        for _ in range(3):
            layers += [nn.Linear(hidden, hidden), nn.ReLU()]
        self.shared = nn.Sequential(*layers)
        self.unshared = nn.ModuleList()
        for _ in range(config.num_domains):
            head: list[nn.Module] = []
            for _ in range(3):
                head += [nn.Linear(hidden, hidden), nn.ReLU()]
            head.append(nn.Linear(hidden, config.style_dim))
            self.unshared.append(nn.Sequential(*head))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """z [B, latent_dim], y [B] int64 -> s [B, style_dim]."""
        h = self.shared(z)
        per_domain = torch.stack([head(h) for head in self.unshared], dim=1)  # [B, K, style_dim]
        return select_domain(per_domain, y)


def _conv_trunk(config: ModelConfig) -> tuple[list[nn.Module], int]:
    """The trunk shared by style encoder and discriminator: conv, downsampling ResBlks, 4x4 conv to 1x1."""
    num_blocks = int(math.log2(config.img_size)) - 2
    widths = _widths(config, num_blocks)
    layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, 1, 1)]
    for k in range(num_blocks):
        layers.append(ResBlk(widths[k], widths[k + 1], downsample=True))
    layers += [nn.LeakyReLU(0.2), nn.Conv2d(widths[-1], widths[-1], 4, 1, 0), nn.LeakyReLU(0.2)]
    return layers, widths[-1]


class StyleEncoder(nn.Module):
    """Image -> per-domain style codes (REFERENCE 2.7)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        layers, dim_out = _conv_trunk(config)
        self.shared = nn.Sequential(*layers)
        self.unshared = nn.ModuleList([nn.Linear(dim_out, config.style_dim) for _ in range(config.num_domains)])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x [B, 3, H, W], y [B] int64 -> s [B, style_dim]."""
        h = self.shared(x).flatten(1)  # [B, trunk width]
        per_domain = torch.stack([head(h) for head in self.unshared], dim=1)  # [B, K, style_dim]
        return select_domain(per_domain, y)


class Discriminator(nn.Module):
    """Multi-task discriminator: one real/fake logit per domain, the target domain's selected (REFERENCE 2.8)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        layers, dim_out = _conv_trunk(config)
        layers.append(nn.Conv2d(dim_out, config.num_domains, 1, 1, 0))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x [B, 3, H, W], y [B] int64 -> logits [B]."""
        logits = self.main(x).flatten(1)  # [B, K]
        return logits.gather(1, y.long().view(-1, 1)).squeeze(1)


def he_init(module: nn.Module) -> None:
    """Official initialisation: He normal (fan_in, ReLU gain) for conv/linear weights, zero biases (REFERENCE 4.4)."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_networks(config: ModelConfig, discriminator: bool = False) -> dict[str, nn.Module]:
    """Build the official module set by name: generator, mapping_network, style_encoder[, discriminator]."""
    nets: dict[str, nn.Module] = {
        "generator": Generator(config),
        "mapping_network": MappingNetwork(config),
        "style_encoder": StyleEncoder(config),
    }
    if discriminator:
        nets["discriminator"] = Discriminator(config)
    return nets
