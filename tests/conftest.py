"""Shared fixtures: tiny random bundles built once per session, official-format checkpoint writers."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
from PIL import Image

from smoothgan.bundle import ModelBundle, save_bundle
from smoothgan.config import ModelConfig, get_preset
from smoothgan.models.fan import FAN
from smoothgan.models.stargan_v2 import build_networks


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights everywhere, norm affines and BN statistics included, so every parameter matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.5 + 0.75)
            elif name.endswith(("norm1.weight", "norm2.weight", "to_rgb.0.weight", "bn1.weight")):
                tensor.copy_(1 + 0.1 * torch.randn(tensor.shape, generator=gen))
            elif name.endswith("filter"):
                continue
            else:
                fan_in = max(1, tensor[0].numel()) if tensor.dim() > 1 else 16
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (1.0 / fan_in) ** 0.5)
    return module.eval()


def random_networks(config: ModelConfig, seed: int = 0, discriminator: bool = False,
                    fan: Optional[bool] = None) -> dict[str, torch.nn.Module]:
    nets = build_networks(config, discriminator=discriminator)
    for i, net in enumerate(nets.values()):
        randomize(net, seed + i)
    if config.uses_masks if fan is None else fan:
        nets["fan"] = randomize(FAN(), seed + 10)
    return nets


def official_checkpoint(path: Path, nets: dict[str, torch.nn.Module], prefix: bool = False,
                        hpf_filter: bool = True, fan: bool = True) -> Path:
    """Write ``nets`` the way the official solver does: {module_name: state_dict}, optional quirks."""
    data = {}
    for name, net in nets.items():
        if name == "fan" and not fan:
            continue
        state = dict(net.state_dict())
        if not hpf_filter:
            state.pop("hpf.filter", None)
        if prefix:
            state = {f"module.{k}": v for k, v in state.items()}
        data[name] = state
    torch.save(data, path)
    return path


def make_bundle(root: Path, preset: str, seed: int = 0) -> ModelBundle:
    spec = get_preset(preset)
    return save_bundle(root / preset, random_networks(spec.config, seed), spec.config, spec.domains,
                       {"name": preset, "kind": "random test weights"})


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    return make_bundle(tmp_path_factory.mktemp("bundles"), "tiny")


@pytest.fixture(scope="session")
def tiny_hpf_bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    return make_bundle(tmp_path_factory.mktemp("bundles"), "tiny-hpf")


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    """A small non-square RGB photo-like image."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:40, 0:48]
    pixels = np.stack([x * 5, y * 6, (x + y) * 3], -1) + rng.integers(0, 20, (40, 48, 3))
    path = tmp_path / "photo.png"
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return path


def make_images(root: Path, names: list[str], seed: int = 0,
                size: Optional[tuple[int, int]] = None) -> list[Path]:
    """Random RGB images at ``root/<name>`` (any suffix Pillow writes); ``size`` (h, w), else 30-32 x 36 varying."""
    rng = np.random.default_rng(seed)
    paths = []
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        h, w = size or (30 + len(paths) % 3, 36)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths
