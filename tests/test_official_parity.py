"""Parity of smoothgan.models with a literal restatement of the official forward semantics.

``official_reference`` (next to this file) restates REFERENCE.md sections 2.1-2.10 in the official style (stacked
heads + advanced indexing, per-call repeated high-pass weight, dict cache, view-based AdaIN, plain-attribute
CoordConv grids, in-place mask post-processing with row-permutation shifts). Here one random state_dict is loaded
strictly into both implementations and the outputs are compared.

Tolerances: networks <= 1e-4 max abs difference (TOL_NET); mask post-processing <= 1e-5 (TOL_MASK); batch
invariance of our generator <= 1e-5 (TOL_BATCH).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import official_reference as ref
from smoothgan.config import ModelConfig
from smoothgan.models import fan as ours_fan
from smoothgan.models import stargan_v2 as ours

TOL_NET = 1e-4
TOL_MASK = 1e-5
TOL_BATCH = 1e-5

CONFIGS = {
    "32-hpf0-K2": ModelConfig(img_size=32, num_domains=2, style_dim=16, latent_dim=8, w_hpf=0.0, base_dim=8,
                              max_conv_dim=32, mapping_dim=32),
    "32-hpf1-K2": ModelConfig(img_size=32, num_domains=2, style_dim=16, latent_dim=8, w_hpf=1.0, base_dim=8,
                              max_conv_dim=32, mapping_dim=32),
    "64-hpf0-K3": ModelConfig(img_size=64, num_domains=3, style_dim=24, latent_dim=16, w_hpf=0.0, base_dim=16,
                              max_conv_dim=64, mapping_dim=48),
    "64-hpf1-K3": ModelConfig(img_size=64, num_domains=3, style_dim=24, latent_dim=16, w_hpf=1.0, base_dim=16,
                              max_conv_dim=64, mapping_dim=48),
    # reaches the 128x128 high-pass skip (masks[1] twice) and a non-unit w_hpf
    "128-hpf2-K2": ModelConfig(img_size=128, num_domains=2, style_dim=16, latent_dim=8, w_hpf=2.0, base_dim=4,
                               max_conv_dim=32, mapping_dim=32),
}
HPF_CONFIGS = [name for name, cfg in CONFIGS.items() if cfg.w_hpf > 0]


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item()


def _assert_close(name: str, a: torch.Tensor, b: torch.Tensor, tol: float) -> float:
    assert torch.isfinite(a).all() and torch.isfinite(b).all(), name
    diff = _maxdiff(a, b)
    print(f"[parity] {name}: max abs diff {diff:.3e} (tol {tol:.0e}, |ref| max {b.abs().max().item():.3g})")
    assert diff <= tol, f"{name}: max abs diff {diff:.3e} > {tol:.0e}"
    return diff


@torch.no_grad()
def _perturb(module: nn.Module) -> None:
    """Move normalisation affine params, AdaIN fc biases and BN statistics away from their defaults."""
    for name, sub in module.named_modules():
        if isinstance(sub, nn.InstanceNorm2d) and sub.affine:
            sub.weight.uniform_(0.5, 1.5)
            sub.bias.normal_(0.0, 0.3)
        elif isinstance(sub, nn.BatchNorm2d):
            sub.weight.uniform_(0.7, 1.3)
            sub.bias.normal_(0.0, 0.2)
            sub.running_mean.normal_(0.0, 0.2)
            sub.running_var.uniform_(0.5, 2.0)
            sub.num_batches_tracked.fill_(1000)
        elif isinstance(sub, nn.Linear) and name.endswith("fc"):  # AdaIN: gamma and beta offsets
            sub.bias.normal_(0.0, 0.3)


def _ref_networks(cfg: ModelConfig) -> dict[str, nn.Module]:
    return {
        "generator": ref.Generator(cfg.img_size, cfg.style_dim, cfg.max_conv_dim, cfg.w_hpf, dim_in=cfg.start_dim),
        "mapping_network": ref.MappingNetwork(cfg.latent_dim, cfg.style_dim, cfg.num_domains,
                                              hidden_dim=cfg.mapping_dim),
        "style_encoder": ref.StyleEncoder(cfg.img_size, cfg.style_dim, cfg.num_domains, cfg.max_conv_dim,
                                          dim_in=cfg.start_dim),
        "discriminator": ref.Discriminator(cfg.img_size, cfg.num_domains, cfg.max_conv_dim, dim_in=cfg.start_dim),
    }


_PAIRS: dict[str, tuple[dict[str, nn.Module], dict[str, nn.Module]]] = {}


def _pair(name: str) -> tuple[dict[str, nn.Module], dict[str, nn.Module]]:
    """(ours, reference) networks of a config with one random state_dict loaded strictly into both (cached)."""
    if name not in _PAIRS:
        cfg = CONFIGS[name]
        torch.manual_seed(1234)
        mine = ours.build_networks(cfg, discriminator=True)
        theirs = _ref_networks(cfg)
        for key, net in mine.items():
            _perturb(net)
            net.eval()
            theirs[key].load_state_dict(net.state_dict(), strict=True)
            theirs[key].eval()
        _PAIRS[name] = (mine, theirs)
    return _PAIRS[name]


def _domains(cfg: ModelConfig, batch: int) -> torch.Tensor:
    y = torch.arange(batch) % cfg.num_domains
    return y.flip(0)  # every domain, not in index order


# --------------------------------------------------------------------------------------------------------------
# StarGAN v2 networks


@pytest.mark.parametrize("official", [
    ModelConfig(img_size=256, num_domains=2, w_hpf=1.0),  # CelebA-HQ
    ModelConfig(img_size=256, num_domains=3, w_hpf=0.0),  # AFHQ
], ids=["celeba_hq", "afhq"])
def test_full_size_state_dicts_have_official_names_and_shapes(official: ModelConfig) -> None:
    with torch.device("meta"):  # no memory, no init cost
        mine = ours.build_networks(official, discriminator=True)
        theirs = _ref_networks(official)
    for key, net in mine.items():
        a = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        b = {k: tuple(v.shape) for k, v in theirs[key].state_dict().items()}
        assert list(a) == list(b), key  # same names in the same order
        assert a == b, key
    expected_g = 125 if official.w_hpf > 0 else 108  # REFERENCE 2.9
    assert len(mine["generator"].state_dict()) == expected_g


@pytest.mark.parametrize("name", list(CONFIGS))
@torch.no_grad()
def test_mapping_network(name: str) -> None:
    cfg = CONFIGS[name]
    mine, theirs = _pair(name)
    torch.manual_seed(1)
    z = torch.randn(5, cfg.latent_dim)
    y = _domains(cfg, 5)
    _assert_close(f"mapping_network[{name}]", mine["mapping_network"](z, y), theirs["mapping_network"](z, y), TOL_NET)


@pytest.mark.parametrize("name", list(CONFIGS))
@torch.no_grad()
def test_style_encoder(name: str) -> None:
    cfg = CONFIGS[name]
    mine, theirs = _pair(name)
    torch.manual_seed(2)
    x = torch.rand(4, 3, cfg.img_size, cfg.img_size) * 2 - 1
    y = _domains(cfg, 4)
    _assert_close(f"style_encoder[{name}]", mine["style_encoder"](x, y), theirs["style_encoder"](x, y), TOL_NET)


@pytest.mark.parametrize("name", list(CONFIGS))
@torch.no_grad()
def test_discriminator(name: str) -> None:
    cfg = CONFIGS[name]
    mine, theirs = _pair(name)
    torch.manual_seed(3)
    x = torch.rand(4, 3, cfg.img_size, cfg.img_size) * 2 - 1
    y = _domains(cfg, 4)
    out = mine["discriminator"](x, y)
    assert out.shape == (4,)
    _assert_close(f"discriminator[{name}]", out, theirs["discriminator"](x, y), TOL_NET)


@pytest.mark.parametrize("name", list(CONFIGS))
@torch.no_grad()
def test_generator_without_masks(name: str) -> None:
    cfg = CONFIGS[name]
    mine, theirs = _pair(name)
    torch.manual_seed(4)
    x = torch.rand(3, 3, cfg.img_size, cfg.img_size) * 2 - 1
    s = torch.randn(3, cfg.style_dim)
    _assert_close(f"generator[{name}, masks=None]", mine["generator"](x, s), theirs["generator"](x, s), TOL_NET)


def _random_masks(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    mask0 = torch.rand(batch, 1, size, size)
    mask1 = torch.rand(batch, 1, size, size) * (torch.rand(batch, 1, size, size) > 0.5)
    return mask0, mask1


@pytest.mark.parametrize("mask_size", ["fan256", "img_size"])
@pytest.mark.parametrize("name", HPF_CONFIGS)
@torch.no_grad()
def test_generator_with_masks(name: str, mask_size: str) -> None:
    cfg = CONFIGS[name]
    mine, theirs = _pair(name)
    torch.manual_seed(5)
    x = torch.rand(3, 3, cfg.img_size, cfg.img_size) * 2 - 1
    s = torch.randn(3, cfg.style_dim)
    masks = _random_masks(3, 256 if mask_size == "fan256" else cfg.img_size)
    out = mine["generator"](x, s, masks)
    _assert_close(f"generator[{name}, masks@{mask_size}]", out, theirs["generator"](x, s, masks), TOL_NET)
    # the skips really contribute (otherwise this test would not test them)
    assert _maxdiff(out, mine["generator"](x, s)) > 1e-3


@pytest.mark.parametrize("name", ["64-hpf0-K3", "64-hpf1-K3"])
@torch.no_grad()
def test_our_generator_is_batch_invariant(name: str) -> None:
    cfg = CONFIGS[name]
    gen = _pair(name)[0]["generator"]
    torch.manual_seed(6)
    x = torch.rand(3, 3, cfg.img_size, cfg.img_size) * 2 - 1
    s = torch.randn(3, cfg.style_dim)
    masks = _random_masks(3, 256) if cfg.w_hpf > 0 else None
    batched = gen(x, s, masks)
    for i in range(3):
        masks_i = None if masks is None else (masks[0][i:i + 1], masks[1][i:i + 1])
        single = gen(x[i:i + 1], s[i:i + 1], masks_i)
        diff = _maxdiff(batched[i:i + 1], single)
        assert diff <= TOL_BATCH, f"sample {i}: {diff:.3e}"


@pytest.mark.parametrize("name", ["32-hpf0-K2", "64-hpf1-K3"])
@torch.no_grad()
def test_style_batch_of_one_broadcasts_like_official(name: str) -> None:
    cfg = CONFIGS[name]
    mine, theirs = _pair(name)
    torch.manual_seed(7)
    x = torch.rand(3, 3, cfg.img_size, cfg.img_size) * 2 - 1
    s = torch.randn(1, cfg.style_dim)
    masks = _random_masks(3, 256) if cfg.w_hpf > 0 else None

    # AdaIN alone
    adain = mine["generator"].decode[0].norm1
    adain_ref = theirs["generator"].decode[0].norm1
    h = torch.randn(3, adain.fc.out_features // 2, 8, 8)
    out = adain(h, s)
    assert out.shape == h.shape
    _assert_close(f"AdaIN broadcast[{name}]", out, adain_ref(h, s), TOL_NET)
    assert _maxdiff(out, adain(h, s.expand(3, -1))) <= TOL_BATCH  # fc on 1 vs 3 rows: float accumulation only

    # whole generator
    out = mine["generator"](x, s, masks)
    assert out.shape == x.shape
    _assert_close(f"generator broadcast[{name}]", out, theirs["generator"](x, s, masks), TOL_NET)
    assert _maxdiff(out, mine["generator"](x, s.expand(3, -1), masks)) <= TOL_BATCH


# --------------------------------------------------------------------------------------------------------------
# FAN and masks


@pytest.fixture(scope="module")
def fan_pair() -> tuple[ours_fan.FAN, ref.FAN]:
    torch.manual_seed(99)
    mine = ours_fan.FAN()
    _perturb(mine)
    with torch.no_grad():  # peaky landmark maps (most values < 0.1) so the masks are neither all 0 nor all 1
        mine.l0.weight.mul_(6.0)
        mine.l0.bias.normal_(-4.0, 0.2)
    theirs = ref.FAN()
    theirs.load_state_dict(mine.state_dict(), strict=True)
    assert len(mine.state_dict()) == 336  # REFERENCE 2.10.2
    return mine.eval(), theirs.eval()


@torch.no_grad()
def test_fan_heatmaps(fan_pair) -> None:
    mine, theirs = fan_pair
    torch.manual_seed(8)
    x = torch.rand(2, 3, 256, 256)
    out = mine(x)
    outputs, boundaries = theirs(x)
    assert out.shape == (2, 99, 64, 64)
    _assert_close("FAN heatmaps", out, outputs[-1], TOL_NET)


def _random_heatmaps() -> torch.Tensor:
    torch.manual_seed(9)
    hm = torch.rand(3, 98, 256, 256) * 0.12 - 0.02  # noise, mostly below the 0.1 threshold
    # one smooth blob per channel (a landmark peak) so that shifted groups overlap non-trivially
    rows = torch.arange(256.0).view(1, 1, 256, 1)
    cols = torch.arange(256.0).view(1, 1, 1, 256)
    cy = torch.randint(20, 236, (3, 98, 1, 1)).float()
    cx = torch.randint(20, 236, (3, 98, 1, 1)).float()
    hm = hm + torch.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / 200.0)  # ~97 % of all values < 0.1
    hm[:, 40:44] -= 1.0  # whole channels below 0.1 -> all zero -> 0 / 1e-6
    # NaNs: sample 0 in a mask1 channel (eyes), sample 1 in a zeroed channel and a mask0-only channel (chin)
    hm[0, 65, 100, 7] = float("nan")
    hm[1, 3, 10, 10] = float("nan")
    hm[1, 12, 200, 50] = float("nan")
    # sample 2 has no NaN
    return hm


@torch.no_grad()
def test_mask_postprocessing() -> None:
    hm = _random_heatmaps()
    before = hm.clone()
    mask0, mask1 = ours_fan.masks_from_heatmaps(hm)
    assert torch.equal(hm.nan_to_num(-7.0), before.nan_to_num(-7.0))  # ours is pure
    ref0, ref1 = ref.preprocess(hm.clone())
    assert mask0.shape == mask1.shape == (3, 1, 256, 256)
    _assert_close("mask0 post-processing", mask0, ref0, TOL_MASK)
    _assert_close("mask1 post-processing", mask1, ref1, TOL_MASK)
    # the NaN handling is per sample and follows mask0's NaN positions
    assert (mask0[0] == 0).all() and (mask1[0] == 0).all()  # an eye NaN poisons a whole channel of both sums
    assert (mask0[1] == 0).all()  # chin NaN poisons mask0 everywhere ...
    assert (mask1[1] == 0).all()  # ... and mask1 is zeroed at mask0's NaN positions
    for mask in (mask0[2], mask1[2]):  # non-trivial: not saturated, not empty
        assert ((mask > 0) & (mask < 1)).float().mean() > 0.2
    assert not torch.equal(mask0[2], mask1[2])


@torch.no_grad()
def test_mask_postprocessing_shift_is_official_row_permutation() -> None:
    t = torch.arange(256.0).view(1, 1, 256, 1).expand(1, 2, 256, 3)
    for n in (-24, -8, -7, -2, 4, 8):
        shifted = ref.shift(t, n)
        assert shifted[0, 0, 0, 0].item() == n % 256  # output row i = input row (i + n) mod H
        assert torch.equal(shifted, ours_fan._shift(t, n))


@pytest.mark.parametrize("size", [32, 256])
@torch.no_grad()
def test_fan_get_heatmap_end_to_end(fan_pair, size: int) -> None:
    mine, theirs = fan_pair
    torch.manual_seed(10 + size)
    x = torch.rand(2, 3, size, size) * 2 - 1
    mask0, mask1 = mine.get_heatmap(x)
    ref0, ref1 = theirs.get_heatmap(x)
    assert mask0.shape == mask1.shape == (2, 1, 256, 256)
    _assert_close(f"get_heatmap mask0 @{size}", mask0, ref0, TOL_MASK)
    _assert_close(f"get_heatmap mask1 @{size}", mask1, ref1, TOL_MASK)
    for mask in (mask0, mask1):  # non-trivial masks: neither empty nor saturated
        assert ((mask > 0) & (mask < 1)).float().mean() > 0.01


def test_configs_are_distinct() -> None:
    # guards the parametrisation above against accidental duplicates
    assert len({dataclasses.astuple(c) for c in CONFIGS.values()}) == len(CONFIGS)
