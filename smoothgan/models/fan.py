"""The FAN face-landmark network and the CelebA-HQ mask computation (REFERENCE.md section 2.10).

Attribute names follow the official ``wing.ckpt`` state_dict (336 entries). Unlike the official code, the
coordinate grids are non-persistent buffers (they follow ``.to()``), and the mask post-processing is a pure
function of the heatmaps (no in-place slicing, deepcopy or CPU index tensors), so it exports to ONNX.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FAN_INPUT_SIZE = 256
NUM_LANDMARKS = 98


class ConvBlock(nn.Module):
    """Hierarchical residual block: three 3x3 convs whose outputs are concatenated (REFERENCE 2.10.1)."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        half, quarter = out_planes // 2, out_planes // 4
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, half, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, quarter, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = nn.Conv2d(quarter, quarter, 3, 1, 1, bias=False)
        self.downsample = None
        if in_planes != out_planes:
            self.downsample = nn.Sequential(
                nn.BatchNorm2d(in_planes), nn.ReLU(), nn.Conv2d(in_planes, out_planes, 1, 1, bias=False)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(F.relu(self.bn1(x)))
        out2 = self.conv2(F.relu(self.bn2(out1)))
        out3 = self.conv3(F.relu(self.bn3(out2)))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat((out1, out2, out3), dim=1) + residual


class CoordConv(nn.Module):
    """Appends (row, column, radius) coordinate channels in [-1, 1] before a convolution (CoordConvTh)."""

    def __init__(self, height: int, width: int, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        rows = torch.arange(height, dtype=torch.float32) / (height - 1) * 2 - 1
        cols = torch.arange(width, dtype=torch.float32) / (width - 1) * 2 - 1
        row_map = rows[:, None].expand(height, width)
        col_map = cols[None, :].expand(height, width)
        radius = torch.sqrt(row_map**2 + col_map**2)
        coords = torch.stack([row_map, col_map, radius / radius.max()])[None]  # [1, 3, H, W]
        self.register_buffer("coords", coords, persistent=False)
        self.conv = nn.Conv2d(in_channels + 3, out_channels, kernel_size, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coords = self.coords.to(x.dtype).expand(x.shape[0], -1, -1, -1)
        return self.conv(torch.cat([x, coords], dim=1))


class HourGlass(nn.Module):
    """One hourglass of depth 4 at 64x64 with modules ``b1_l``, ``b2_l``, ``b2_plus_1``, ``b3_l``."""

    def __init__(self, depth: int = 4, num_features: int = 256) -> None:
        super().__init__()
        self.depth = depth
        self.coordconv = CoordConv(64, 64, num_features, num_features, 1)
        self._register(depth, num_features)

    def _register(self, level: int, features: int) -> None:
        # Registration order = official state_dict order: b1_4, b2_4, b1_3, ..., b2_plus_1, b3_1, ..., b3_4.
        self.add_module(f"b1_{level}", ConvBlock(features, features))
        self.add_module(f"b2_{level}", ConvBlock(features, features))
        if level > 1:
            self._register(level - 1, features)
        else:
            self.add_module("b2_plus_1", ConvBlock(features, features))
        self.add_module(f"b3_{level}", ConvBlock(features, features))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        up = getattr(self, f"b1_{level}")(x)
        low = getattr(self, f"b2_{level}")(F.avg_pool2d(x, 2))
        low = self._level(level - 1, low) if level > 1 else self.b2_plus_1(low)
        low = getattr(self, f"b3_{level}")(low)
        return up + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, self.coordconv(x))


class FAN(nn.Module):
    """Single-stack FAN: RGB [B, 3, 256, 256] in [0, 1] -> 99 heatmaps [B, 99, 64, 64]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = CoordConv(256, 256, 3, 64, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, 256)
        self.m0 = HourGlass(4, 256)
        self.top_m_0 = ConvBlock(256, 256)
        self.conv_last0 = nn.Conv2d(256, 256, 1, 1, 0)
        self.bn_end0 = nn.BatchNorm2d(256)
        self.l0 = nn.Conv2d(256, NUM_LANDMARKS + 1, 1, 1, 0)
        self.eval()

    def train(self, mode: bool = True) -> "FAN":
        """The FAN is frozen: its BatchNorms always use running statistics (REFERENCE 1.6)."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))  # [B, 64, 128, 128]
        x = F.avg_pool2d(self.conv2(x), 2)  # [B, 128, 64, 64]
        x = self.conv4(self.conv3(x))  # [B, 256, 64, 64]
        x = self.top_m_0(self.m0(x))
        x = F.relu(self.bn_end0(self.conv_last0(x)))
        return self.l0(x)  # [B, 99, 64, 64]

    @torch.no_grad()
    def get_heatmap(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks (mask0, mask1), each [B, 1, 256, 256] in [0, 1], of generator inputs x in [-1, 1]."""
        return self.masks(x)

    def masks(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as :meth:`get_heatmap` without the no_grad decorator (for export tracing)."""
        if x.shape[2] != FAN_INPUT_SIZE or x.shape[3] != FAN_INPUT_SIZE:
            x = F.interpolate(x, size=(FAN_INPUT_SIZE, FAN_INPUT_SIZE), mode="bilinear", align_corners=False)
        heatmaps = self(x * 0.5 + 0.5)[:, :NUM_LANDMARKS]  # drop the boundary channel
        heatmaps = F.interpolate(heatmaps, scale_factor=FAN_INPUT_SIZE // 64, mode="bilinear", align_corners=True)
        return masks_from_heatmaps(heatmaps)


def _shift(x: torch.Tensor, n: int) -> torch.Tensor:
    """Circular shift along height moving content up by n rows: out[i] = x[(i + n) mod H] (REFERENCE 2.10.4)."""
    return torch.roll(x, shifts=-n, dims=2) if n else x


def _channel_sum(x: torch.Tensor) -> torch.Tensor:
    return x.sum(dim=1, keepdim=True)


def masks_from_heatmaps(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official mask post-processing as a pure function: 98 landmark maps -> (mask0, mask1).

    Follows REFERENCE 2.10.4 step by step; channels that end up zero ([0, 8), [25, 33), 33, 46, 76, 82) are
    simply left out of the sums. mask1 keeps nose, nostrils, eyes and pupils; mask0 adds chin, eyebrows, lips.
    """
    x = torch.where(heatmaps < 0.1, torch.zeros_like(heatmaps), heatmaps)
    low = x.amin(dim=(2, 3), keepdim=True)
    high = x.amax(dim=(2, 3), keepdim=True)
    x = (x - low) / (high - low + 1e-6)

    chin = _channel_sum(x[:, 8:25] ** 3)
    eyebrows = _channel_sum(_shift(x[:, 34:46], -7) ** 2) + _channel_sum(_shift(x[:, 47:51], -7) ** 2)
    nose = _channel_sum(x[:, 51:52]) + _channel_sum(_shift(x[:, 52:55], 4))
    nostrils = _channel_sum(_shift(x[:, 55:60], 8) ** 4)
    eyes = x[:, 60:76]
    eyes = _channel_sum(_shift(eyes, -8) ** 3 + _shift(eyes, -24))
    upper_lip = _channel_sum(_shift(x[:, 77:82], -8) ** 4)
    lower_lip = _channel_sum(_shift(x[:, 83:88], 8) ** 4)
    inner_lip = _channel_sum(_shift(x[:, 88:96], -2) ** 3)
    pupils = _channel_sum(x[:, 96:98])

    mask1 = nose + nostrils + eyes + pupils
    mask0 = chin + eyebrows + upper_lip + lower_lip + inner_lip + mask1
    invalid = torch.isnan(mask0)
    mask0 = torch.where(invalid, torch.zeros_like(mask0), mask0).clamp(0, 1)
    mask1 = torch.where(invalid, torch.zeros_like(mask1), mask1).clamp(0, 1)
    return mask0, mask1
