"""A deliberately literal restatement of the official StarGAN v2 / FAN forward semantics (test helper, no tests).

Written only from /work/shared/REFERENCE.md (sections 2.1-2.10 and the quirks table in section 7), in the style
the description attributes to the official code: all domain heads are computed, stacked and picked with a
LongTensor built from Python ``range`` plus advanced indexing; the high-pass weight is rebuilt per call with
``unsqueeze``/``repeat``; the generator keeps a Python dict cache keyed by spatial size; AdaIN reshapes with
``view``; the FAN appends coordinate channels from plain (non-buffer) attributes repeated over the batch, and the
mask post-processing works with in-place slice assignments, row-permutation indexing, ``deepcopy``, LongTensor
and boolean index assignment, and an in-place clamp.

It is independent of ``smoothgan.models`` on purpose (it must not import it) and uses the same attribute names,
so one state_dict loads strictly into both implementations. Width parameters that the official code hard-codes
(the 2**14 // img_size start width, the mapping network's 512 hidden units) are constructor arguments here so the
tests can use narrow networks; with the defaults they are the official values.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------------------------------------------
# StarGAN v2 networks (REFERENCE 2.1-2.8)


class ResBlk(nn.Module):
    """REFERENCE 2.2: out = (shortcut(x) + residual(x)) / sqrt(2); shortcut = conv1x1 then avg-pool."""

    def __init__(self, dim_in, dim_out, actv=nn.LeakyReLU(0.2), normalize=False, downsample=False):
        super().__init__()
        self.actv = actv
        self.normalize = normalize
        self.downsample = downsample
        self.learned_sc = dim_in != dim_out
        self._build_weights(dim_in, dim_out)

    def _build_weights(self, dim_in, dim_out):
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        if self.normalize:
            self.norm1 = nn.InstanceNorm2d(dim_in, affine=True)
            self.norm2 = nn.InstanceNorm2d(dim_in, affine=True)
        if self.learned_sc:
            self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)

    def _shortcut(self, x):
        if self.learned_sc:
            x = self.conv1x1(x)
        if self.downsample:
            x = F.avg_pool2d(x, 2)
        return x

    def _residual(self, x):
        if self.normalize:
            x = self.norm1(x)
        x = self.actv(x)
        x = self.conv1(x)
        if self.downsample:
            x = F.avg_pool2d(x, 2)
        if self.normalize:
            x = self.norm2(x)
        x = self.actv(x)
        x = self.conv2(x)
        return x

    def forward(self, x):
        x = self._shortcut(x) + self._residual(x)
        return x / math.sqrt(2)  # unit variance


class AdaIN(nn.Module):
    """REFERENCE 2.3: h = fc(s).view(B, 2C, 1, 1); gamma, beta = chunk; (1 + gamma) * IN(x) + beta."""

    def __init__(self, style_dim, num_features):
        super().__init__()
        self.norm = nn.InstanceNorm2d(num_features, affine=False)
        self.fc = nn.Linear(style_dim, num_features * 2)

    def forward(self, x, s):
        h = self.fc(s)
        h = h.view(h.size(0), h.size(1), 1, 1)
        gamma, beta = torch.chunk(h, chunks=2, dim=1)
        return (1 + gamma) * self.norm(x) + beta


class AdainResBlk(nn.Module):
    """REFERENCE 2.3: residual only when w_hpf > 0 (conv1x1 exists but is skipped)."""

    def __init__(self, dim_in, dim_out, style_dim=64, w_hpf=0, actv=nn.LeakyReLU(0.2), upsample=False):
        super().__init__()
        self.w_hpf = w_hpf
        self.actv = actv
        self.upsample = upsample
        self.learned_sc = dim_in != dim_out
        self._build_weights(dim_in, dim_out, style_dim)

    def _build_weights(self, dim_in, dim_out, style_dim=64):
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, 1, 1)
        self.norm1 = AdaIN(style_dim, dim_in)
        self.norm2 = AdaIN(style_dim, dim_out)
        if self.learned_sc:
            self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)

    def _shortcut(self, x):
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode='nearest')
        if self.learned_sc:
            x = self.conv1x1(x)
        return x

    def _residual(self, x, s):
        x = self.norm1(x, s)
        x = self.actv(x)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode='nearest')
        x = self.conv1(x)
        x = self.norm2(x, s)
        x = self.actv(x)
        x = self.conv2(x)
        return x

    def forward(self, x, s):
        out = self._residual(x, s)
        if self.w_hpf == 0:
            out = (out + self._shortcut(x)) / math.sqrt(2)
        return out


class HighPass(nn.Module):
    """REFERENCE 2.4 (SG HEAD flavour: buffer ``filter``); the depthwise weight is rebuilt with repeat per call."""

    def __init__(self, w_hpf, device=None):
        super().__init__()
        self.register_buffer('filter', torch.tensor([[-1, -1, -1],
                                                     [-1, 8., -1],
                                                     [-1, -1, -1]]) / w_hpf)

    def forward(self, x):
        filter = self.filter.unsqueeze(0).unsqueeze(1).repeat(x.size(1), 1, 1, 1)
        return F.conv2d(x, filter, padding=1, groups=x.size(1))


class Generator(nn.Module):
    """REFERENCE 2.5. ``dim_in`` (start width) defaults to the official 2**14 // img_size."""

    def __init__(self, img_size=256, style_dim=64, max_conv_dim=512, w_hpf=1, dim_in=None):
        super().__init__()
        dim_in = 2**14 // img_size if dim_in is None else dim_in
        self.img_size = img_size
        self.from_rgb = nn.Conv2d(3, dim_in, 3, 1, 1)
        self.encode = nn.ModuleList()
        self.decode = nn.ModuleList()
        self.to_rgb = nn.Sequential(
            nn.InstanceNorm2d(dim_in, affine=True),
            nn.LeakyReLU(0.2),
            nn.Conv2d(dim_in, 3, 1, 1, 0))

        # down/up-sampling blocks
        repeat_num = int(math.log2(img_size)) - 4
        if w_hpf > 0:
            repeat_num += 1
        for _ in range(repeat_num):
            dim_out = min(dim_in * 2, max_conv_dim)
            self.encode.append(ResBlk(dim_in, dim_out, normalize=True, downsample=True))
            self.decode.insert(0, AdainResBlk(dim_out, dim_in, style_dim, w_hpf=w_hpf, upsample=True))
            dim_in = dim_out

        # bottleneck blocks
        for _ in range(2):
            self.encode.append(ResBlk(dim_out, dim_out, normalize=True))
            self.decode.insert(0, AdainResBlk(dim_out, dim_out, style_dim, w_hpf=w_hpf))

        if w_hpf > 0:
            self.hpf = HighPass(w_hpf, None)

    def forward(self, x, s, masks=None):
        x = self.from_rgb(x)
        cache = {}
        for block in self.encode:
            if (masks is not None) and (x.size(2) in [32, 64, 128]):
                cache[x.size(2)] = x
            x = block(x)
        for block in self.decode:
            x = block(x, s)
            if (masks is not None) and (x.size(2) in [32, 64, 128]):
                mask = masks[0] if x.size(2) in [32] else masks[1]
                mask = F.interpolate(mask, size=x.size(2), mode='bilinear', align_corners=False)
                x = x + self.hpf(mask * cache[x.size(2)])
        return self.to_rgb(x)


class MappingNetwork(nn.Module):
    """REFERENCE 2.6. ``hidden_dim`` is hard-coded 512 in the official code; a parameter here for narrow tests."""

    def __init__(self, latent_dim=16, style_dim=64, num_domains=2, hidden_dim=512):
        super().__init__()
        layers = []
        layers += [nn.Linear(latent_dim, hidden_dim)]
        layers += [nn.ReLU()]
        for _ in range(3):
            layers += [nn.Linear(hidden_dim, hidden_dim)]
            layers += [nn.ReLU()]
        self.shared = nn.Sequential(*layers)

        self.unshared = nn.ModuleList()
        for _ in range(num_domains):
            self.unshared += [nn.Sequential(nn.Linear(hidden_dim, hidden_dim),
                                            nn.ReLU(),
                                            nn.Linear(hidden_dim, hidden_dim),
                                            nn.ReLU(),
                                            nn.Linear(hidden_dim, hidden_dim),
                                            nn.ReLU(),
                                            nn.Linear(hidden_dim, style_dim))]

    def forward(self, z, y):
        h = self.shared(z)
        out = []
        for layer in self.unshared:
            out += [layer(h)]
        out = torch.stack(out, dim=1)  # (batch, num_domains, style_dim)
        idx = torch.LongTensor(range(y.size(0))).to(y.device)
        s = out[idx, y]  # (batch, style_dim)
        return s


def _trunk(img_size, max_conv_dim, dim_in):
    """The conv trunk shared (in layout) by StyleEncoder.shared and Discriminator.main (REFERENCE 2.7, 2.8)."""
    blocks = []
    blocks += [nn.Conv2d(3, dim_in, 3, 1, 1)]
    repeat_num = int(math.log2(img_size)) - 2
    for _ in range(repeat_num):
        dim_out = min(dim_in * 2, max_conv_dim)
        blocks += [ResBlk(dim_in, dim_out, downsample=True)]
        dim_in = dim_out
    blocks += [nn.LeakyReLU(0.2)]
    blocks += [nn.Conv2d(dim_out, dim_out, 4, 1, 0)]
    blocks += [nn.LeakyReLU(0.2)]
    return blocks, dim_out


class StyleEncoder(nn.Module):
    """REFERENCE 2.7."""

    def __init__(self, img_size=256, style_dim=64, num_domains=2, max_conv_dim=512, dim_in=None):
        super().__init__()
        dim_in = 2**14 // img_size if dim_in is None else dim_in
        blocks, dim_out = _trunk(img_size, max_conv_dim, dim_in)
        self.shared = nn.Sequential(*blocks)
        self.unshared = nn.ModuleList()
        for _ in range(num_domains):
            self.unshared += [nn.Linear(dim_out, style_dim)]

    def forward(self, x, y):
        h = self.shared(x)
        h = h.view(h.size(0), -1)
        out = []
        for layer in self.unshared:
            out += [layer(h)]
        out = torch.stack(out, dim=1)  # (batch, num_domains, style_dim)
        idx = torch.LongTensor(range(y.size(0))).to(y.device)
        s = out[idx, y]  # (batch, style_dim)
        return s


class Discriminator(nn.Module):
    """REFERENCE 2.8."""

    def __init__(self, img_size=256, num_domains=2, max_conv_dim=512, dim_in=None):
        super().__init__()
        dim_in = 2**14 // img_size if dim_in is None else dim_in
        blocks, dim_out = _trunk(img_size, max_conv_dim, dim_in)
        blocks += [nn.Conv2d(dim_out, num_domains, 1, 1, 0)]
        self.main = nn.Sequential(*blocks)

    def forward(self, x, y):
        out = self.main(x)
        out = out.view(out.size(0), -1)  # (batch, num_domains)
        idx = torch.LongTensor(range(y.size(0))).to(y.device)
        out = out[idx, y]  # (batch)
        return out


# --------------------------------------------------------------------------------------------------------------
# FAN (REFERENCE 2.10)


class AddCoordsTh(nn.Module):
    """REFERENCE 2.10.1: plain-attribute coordinate grids (row "x", column "y", radius), repeated over the batch."""

    def __init__(self, height=64, width=64, with_r=False, with_boundary=False):
        super().__init__()
        self.with_r = with_r
        self.with_boundary = with_boundary
        with torch.no_grad():
            x_coords = torch.arange(height).unsqueeze(1).expand(height, width).float()  # varies along height
            y_coords = torch.arange(width).unsqueeze(0).expand(height, width).float()  # varies along width
            x_coords = (x_coords / (height - 1)) * 2 - 1
            y_coords = (y_coords / (width - 1)) * 2 - 1
            coords = torch.stack([x_coords, y_coords], dim=0)  # (2, height, width)
            if self.with_r:
                rr = torch.sqrt(torch.pow(x_coords, 2) + torch.pow(y_coords, 2))  # (height, width)
                rr = (rr / torch.max(rr)).unsqueeze(0)
                coords = torch.cat([coords, rr], dim=0)
            self.coords = coords.unsqueeze(0)  # (1, 2 or 3, height, width); a plain attribute, not a buffer
            self.x_coords = x_coords
            self.y_coords = y_coords

    def forward(self, x, heatmap=None):
        coords = self.coords.repeat(x.size(0), 1, 1, 1).to(x.device)
        x_and_coords = torch.cat([x, coords], dim=1)
        if self.with_boundary and heatmap is not None:  # never taken in this model (no heatmap is passed)
            raise NotImplementedError('the boundary branch is never used by the StarGAN v2 FAN')
        return x_and_coords


class CoordConvTh(nn.Module):
    """REFERENCE 2.10.1: conv(addcoords(x)); also returns the last two appended channels (unused)."""

    def __init__(self, height, width, with_r, with_boundary, in_channels, first_one=False, *args, **kwargs):
        super().__init__()
        self.addcoords = AddCoordsTh(height, width, with_r, with_boundary)
        in_channels += 2
        if with_r:
            in_channels += 1
        if with_boundary and not first_one:
            in_channels += 2
        self.conv = nn.Conv2d(in_channels=in_channels, *args, **kwargs)

    def forward(self, input_tensor, heatmap=None):
        ret = self.addcoords(input_tensor, heatmap)
        last_channel = ret[:, -2:, :, :]
        ret = self.conv(ret)
        return ret, last_channel


def conv3x3(in_planes, out_planes, strd=1, padding=1, bias=False, dilation=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=strd, padding=padding, bias=bias,
                     dilation=dilation)


class ConvBlock(nn.Module):
    """REFERENCE 2.10.1: concat(o1, o2, o3) + (downsample(x) or x)."""

    def __init__(self, in_planes, out_planes):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv3x3(in_planes, int(out_planes / 2))
        self.bn2 = nn.BatchNorm2d(int(out_planes / 2))
        self.conv2 = conv3x3(int(out_planes / 2), int(out_planes / 4))
        self.bn3 = nn.BatchNorm2d(int(out_planes / 4))
        self.conv3 = conv3x3(int(out_planes / 4), int(out_planes / 4))
        self.downsample = None
        if in_planes != out_planes:
            self.downsample = nn.Sequential(nn.BatchNorm2d(in_planes),
                                            nn.ReLU(True),
                                            nn.Conv2d(in_planes, out_planes, 1, 1, bias=False))

    def forward(self, x):
        residual = x

        out1 = self.bn1(x)
        out1 = F.relu(out1, True)
        out1 = self.conv1(out1)

        out2 = self.bn2(out1)
        out2 = F.relu(out2, True)
        out2 = self.conv2(out2)

        out3 = self.bn3(out2)
        out3 = F.relu(out3, True)
        out3 = self.conv3(out3)

        out3 = torch.cat((out1, out2, out3), 1)
        if self.downsample is not None:
            residual = self.downsample(residual)
        out3 += residual
        return out3


class HourGlass(nn.Module):
    """REFERENCE 2.10.1: coordconv, then the recursion b1_l / b2_l / (b2_plus_1) / b3_l."""

    def __init__(self, num_modules, depth, num_features, first_one=False):
        super().__init__()
        self.num_modules = num_modules
        self.depth = depth
        self.features = num_features
        self.coordconv = CoordConvTh(64, 64, True, True, 256, first_one,
                                     out_channels=256, kernel_size=1, stride=1, padding=0)
        self._generate_network(self.depth)

    def _generate_network(self, level):
        self.add_module('b1_' + str(level), ConvBlock(256, 256))
        self.add_module('b2_' + str(level), ConvBlock(256, 256))
        if level > 1:
            self._generate_network(level - 1)
        else:
            self.add_module('b2_plus_' + str(level), ConvBlock(256, 256))
        self.add_module('b3_' + str(level), ConvBlock(256, 256))

    def _forward(self, level, inp):
        up1 = inp
        up1 = self._modules['b1_' + str(level)](up1)
        low1 = F.avg_pool2d(inp, 2, stride=2)
        low1 = self._modules['b2_' + str(level)](low1)

        if level > 1:
            low2 = self._forward(level - 1, low1)
        else:
            low2 = low1
            low2 = self._modules['b2_plus_' + str(level)](low2)
        low3 = low2
        low3 = self._modules['b3_' + str(level)](low3)
        up2 = F.interpolate(low3, scale_factor=2, mode='nearest')
        return up1 + up2

    def forward(self, x, heatmap):
        x, last_channel = self.coordconv(x, heatmap)
        return self._forward(self.depth, x), last_channel


class FAN(nn.Module):
    """REFERENCE 2.10.1: one-stack FAN; forward returns ([heatmaps (B, 99, 64, 64)], [boundary channels])."""

    def __init__(self, num_modules=1, end_relu=False, num_landmarks=98, fname_pretrained=None):
        super().__init__()
        self.num_modules = num_modules
        self.end_relu = end_relu

        # base part
        self.conv1 = CoordConvTh(256, 256, True, False,
                                 in_channels=3, out_channels=64, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, 256)

        # stacking part
        self.add_module('m0', HourGlass(1, 4, 256, first_one=True))
        self.add_module('top_m_0', ConvBlock(256, 256))
        self.add_module('conv_last0', nn.Conv2d(256, 256, kernel_size=1, stride=1, padding=0))
        self.add_module('bn_end0', nn.BatchNorm2d(256))
        self.add_module('l0', nn.Conv2d(256, num_landmarks + 1, kernel_size=1, stride=1, padding=0))

        if fname_pretrained is not None:
            raise NotImplementedError('tests load state_dicts directly')
        self.eval()

    def forward(self, x):
        x, _ = self.conv1(x)
        x = F.relu(self.bn1(x), True)
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)
        x = self.conv3(x)
        x = self.conv4(x)

        outputs = []
        boundary_channels = []
        tmp_out = None
        ll, boundary_channel = self._modules['m0'](x, tmp_out)
        ll = self._modules['top_m_0'](ll)
        ll = F.relu(self._modules['bn_end0'](self._modules['conv_last0'](ll)), True)

        # predict heatmaps
        tmp_out = self._modules['l0'](ll)
        if self.end_relu:
            tmp_out = F.relu(tmp_out)  # HACK: Make sure no negative values
        outputs.append(tmp_out)
        boundary_channels.append(boundary_channel)
        return outputs, boundary_channels

    @torch.no_grad()
    def get_heatmap(self, x, b_preprocess=True):
        """REFERENCE 2.10.3: x in [-1, 1] -> (mask0, mask1), each (B, 1, 256, 256)."""
        x = F.interpolate(x, size=256, mode='bilinear', align_corners=False)
        x_01 = x * 0.5 + 0.5
        outputs, _ = self(x_01)
        heatmaps = outputs[-1][:, :-1, :, :]
        scale_factor = x.size(2) // heatmaps.size(2)
        if b_preprocess:
            heatmaps = F.interpolate(heatmaps, scale_factor=scale_factor, mode='bilinear', align_corners=True)
            heatmaps = preprocess(heatmaps)
        return heatmaps


# --------------------------------------------------------------------------------------------------------------
# Mask post-processing, done the in-place way (REFERENCE 2.10.4, section 7 quirk 9)

# WFLW landmark channel groups, half-open [start, end)
INDEX_MAP = {
    'chin': (8, 25),  # faceline; [0, 8) and [25, 33) are zeroed
    'eyebrows': (33, 51),
    'eyebrowsedges': (33, 46),  # single channels 33 and 46
    'nose': (51, 55),
    'nostrils': (55, 60),
    'eyes': (60, 76),
    'lipedges': (76, 82),  # single channels 76 and 82
    'lipupper': (77, 82),
    'liplower': (83, 88),
    'lipinner': (88, 96),
}

# step 3, in this order: (group, shift, power)
SHIFT_THEN_POWER = [
    ('chin', 0, 3),
    ('eyebrows', -7, 2),
    ('nostrils', 8, 4),
    ('lipupper', -8, 4),
    ('liplower', 8, 4),
    ('lipinner', -2, 3),
]


def shift(x, N):
    """Circular shift along the height by a row permutation index: output row i = input row (i + N) mod H."""
    H = x.size(2)
    if N == 0:
        return x
    if N > 0:
        idx = torch.cat([torch.arange(N, H), torch.arange(0, N)])  # CPU LongTensor
    else:
        M = -N
        idx = torch.cat([torch.arange(H - M, H), torch.arange(0, H - M)])
    return x[:, :, idx.to(x.device)]


def preprocess(x):
    """Heatmaps (B, 98, 256, 256) -> (mask0, mask1). Modifies x in place (as the official code does)."""
    N, C, H, W = x.size()

    # 1. truncate (NaN < 0.1 is False, so NaN stays)
    x[x < 0.1] = 0

    # 2. per-sample, per-channel min-max normalisation
    x_ = x.view(N * C, -1)
    max_val = torch.max(x_, dim=1, keepdim=True)[0]
    min_val = torch.min(x_, dim=1, keepdim=True)[0]
    x_ = (x_ - min_val) / (max_val - min_val + 1e-6)
    x = x_.view(N, C, H, W)

    sw = H // 256  # 1 at 256

    # 3. shift-then-power groups, in the documented order
    for part, n, p in SHIFT_THEN_POWER:
        start, end = INDEX_MAP[part]
        x[:, start:end] = shift(x[:, start:end], n * sw) ** p

    # 4. zero out faceline ends, face contour, eyebrow edges and lip edges
    zero_out = torch.cat([torch.arange(0, INDEX_MAP['chin'][0]),
                          torch.arange(INDEX_MAP['chin'][1], 33),
                          torch.LongTensor([INDEX_MAP['eyebrowsedges'][0], INDEX_MAP['eyebrowsedges'][1],
                                            INDEX_MAP['lipedges'][0], INDEX_MAP['lipedges'][1]])])
    x[:, zero_out] = 0

    # 5. nose: channels [52, 55) (not 51) become shift(+4*sw); then a no-op power 1 on [51, 55)
    start, end = INDEX_MAP['nose']
    x[:, start + 1:end] = shift(x[:, start + 1:end], 4 * sw)
    x[:, start:end] = x[:, start:end] ** 1

    # 6. eyes: no-op power 1, then shift(-8)^3 + shift(-24) (these two shifts are not scaled by sw)
    start, end = INDEX_MAP['eyes']
    x[:, start:end] = x[:, start:end] ** 1
    x[:, start:end] = shift(x[:, start:end], -8) ** 3 + shift(x[:, start:end], -24)

    # 7. mask0: all 98 channels; mask1: a deep copy without faceline, lips and eyebrows
    x2 = copy.deepcopy(x)
    x2[:, INDEX_MAP['chin'][0]:INDEX_MAP['chin'][1]] = 0
    x2[:, INDEX_MAP['lipedges'][0]:INDEX_MAP['lipinner'][1]] = 0
    x2[:, INDEX_MAP['eyebrows'][0]:INDEX_MAP['eyebrows'][1]] = 0
    keep = [c for c in range(C) if not (8 <= c < 25 or 76 <= c < 96 or 33 <= c < 51)]

    x = torch.sum(x, dim=1, keepdim=True)  # (N, 1, H, W)
    x2 = torch.sum(x2[:, keep], dim=1, keepdim=True)  # (N, 1, H, W)

    # 8. NaN -> 0 where mask0 is NaN (both masks), then clamp in place
    x2[x != x] = 0
    x[x != x] = 0
    return x.clamp_(0, 1), x2.clamp_(0, 1)
