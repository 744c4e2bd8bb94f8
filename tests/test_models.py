"""Networks: official key names/shapes/parameter counts, and the building blocks against hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from smoothgan.config import ModelConfig
from smoothgan.models.fan import FAN
from smoothgan.models.stargan_v2 import (AdaIN, AdainResBlk, Discriminator, Generator, HighPass, MappingNetwork,
                                         ResBlk, StyleEncoder)

DATA = Path(__file__).parent / "data"


def read_table(name: str) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in (DATA / name).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape = line.split()
        rows.append((key, tuple(int(v) for v in shape.strip("()").split(",") if v)))
    return rows


def shapes(module: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


CELEBA = ModelConfig(img_size=256, num_domains=2, w_hpf=1.0)
AFHQ = ModelConfig(img_size=256, num_domains=3, w_hpf=0.0)


def test_generator_keys_match_reference_table_in_order() -> None:
    assert shapes(Generator(CELEBA)) == read_table("official_generator_celeba_hq.txt")


def test_mapping_and_style_encoder_keys_match_reference_tables() -> None:
    assert sorted(shapes(MappingNetwork(CELEBA))) == sorted(read_table("official_mapping_k2.txt"))
    assert sorted(shapes(StyleEncoder(CELEBA))) == sorted(read_table("official_style_encoder_k2.txt"))


def test_discriminator_is_the_style_encoder_trunk_plus_a_head() -> None:
    trunk = {k.replace("shared.", "main.", 1): s for k, s in read_table("official_style_encoder_k2.txt")
             if k.startswith("shared.")}
    expected = {**trunk, "main.10.weight": (3, 512, 1, 1), "main.10.bias": (3,)}
    assert dict(shapes(Discriminator(AFHQ))) == expected


@pytest.mark.parametrize(
    "config, expected",
    [
        (CELEBA, {"G": 43_467_395, "M": 2_438_272, "E": 20_916_928, "D": 20_852_290, "G_keys": 125}),
        (AFHQ, {"G": 33_892_995, "M": 3_259_072, "E": 20_949_760, "D": 20_852_803, "G_keys": 108}),
    ],
)
def test_parameter_counts_match_the_official_models(config: ModelConfig, expected: dict[str, int]) -> None:
    assert count(Generator(config)) == expected["G"]
    assert count(MappingNetwork(config)) == expected["M"]
    assert count(StyleEncoder(config)) == expected["E"]
    assert count(Discriminator(config)) == expected["D"]
    assert len(Generator(config).state_dict()) == expected["G_keys"]


def test_fan_state_dict_has_336_entries_and_official_parameter_count() -> None:
    fan = FAN()
    state = fan.state_dict()
    assert len(state) == 336
    assert count(fan) == 6_333_603
    assert state["conv1.conv.weight"].shape == (64, 6, 7, 7)
    assert state["m0.coordconv.conv.weight"].shape == (256, 259, 1, 1)
    assert state["l0.weight"].shape == (99, 256, 1, 1)
    order = [k.split(".")[1] for k in state if k.startswith("m0.") and k.endswith("bn1.weight")]
    assert order == ["b1_4", "b2_4", "b1_3", "b2_3", "b1_2", "b2_2", "b1_1", "b2_1", "b2_plus_1", "b3_1", "b3_2",
                     "b3_3", "b3_4"]
    assert not fan.train().training  # frozen: BatchNorm always uses running statistics


def test_adain_hand_computed() -> None:
    adain = AdaIN(style_dim=1, num_features=1)
    with torch.no_grad():
        adain.fc.weight.zero_()
        adain.fc.bias.copy_(torch.tensor([1.0, 0.5]))  # gamma = 1, beta = 0.5
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    normalized = (x - 2.5) / math.sqrt(1.25 + 1e-5)  # biased variance of 1..4 is 1.25
    out = adain(x, torch.zeros(1, 1))
    torch.testing.assert_close(out, 2 * normalized + 0.5)
    # a style batch of 1 broadcasts over an image batch
    assert adain(x.repeat(3, 1, 1, 1), torch.zeros(1, 1)).shape == (3, 1, 2, 2)


def _constant_residual(block: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        for name, p in block.named_parameters():
            if "conv" in name:
                p.zero_()
        block.conv2.bias.fill_(value)


def test_resblk_divides_the_sum_by_sqrt2() -> None:
    block = ResBlk(1, 1)
    _constant_residual(block, 0.3)
    x = torch.randn(2, 1, 4, 4)
    torch.testing.assert_close(block(x), (x + 0.3) / math.sqrt(2))
    down = ResBlk(1, 1, downsample=True)
    _constant_residual(down, 0.0)
    torch.testing.assert_close(down(x), torch.nn.functional.avg_pool2d(x, 2) / math.sqrt(2))


def test_adain_resblk_hpf_models_keep_only_the_residual() -> None:
    x, s = torch.randn(2, 2, 4, 4), torch.zeros(2, 4)
    plain, hpf = AdainResBlk(2, 2, 4, w_hpf=0), AdainResBlk(2, 2, 4, w_hpf=1)
    for block in (plain, hpf):
        _constant_residual(block, 0.7)
    torch.testing.assert_close(plain(x, s), (x + 0.7) / math.sqrt(2))
    torch.testing.assert_close(hpf(x, s), torch.full_like(x, 0.7))


def test_high_pass_filter_hand_computed() -> None:
    x = torch.arange(9, dtype=torch.float32).view(1, 1, 3, 3)
    out = HighPass(w_hpf=2.0)(x.repeat(1, 2, 1, 1))
    center = (8 * 4 - (0 + 1 + 2 + 3 + 5 + 6 + 7 + 8)) / 2  # = 0
    corner = (8 * 0 - (1 + 3 + 4)) / 2  # zero padding outside
    assert out[0, 0, 1, 1].item() == pytest.approx(center)
    assert out[0, 1, 0, 0].item() == pytest.approx(corner)
    assert HighPass(1.0).filter.sum().item() == 0.0


@pytest.mark.parametrize("batch", [1, 3])
def test_domain_selection_works_for_any_batch(batch: int) -> None:
    config = ModelConfig(img_size=32, num_domains=3, style_dim=4, latent_dim=2, base_dim=4, max_conv_dim=8,
                         mapping_dim=8)
    mapping = MappingNetwork(config).eval()
    z = torch.randn(batch, 2)
    y = torch.randint(0, 3, (batch,))
    h = mapping.shared(z)
    expected = torch.stack([mapping.unshared[int(y[b])](h[b:b + 1])[0] for b in range(batch)])
    torch.testing.assert_close(mapping(z, y), expected)
