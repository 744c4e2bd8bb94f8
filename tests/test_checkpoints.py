"""Import of official-format checkpoints: quirks, inference of the config, strict errors, bundle round trip."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from conftest import official_checkpoint, random_networks

from smoothgan.bundle import load_bundle
from smoothgan.config import ModelConfig, get_preset
from smoothgan.errors import CheckpointError, InputError
from smoothgan.models.checkpoints import import_official, import_to_bundle, infer_config

TINY_HPF = get_preset("tiny-hpf").config
TINY = get_preset("tiny").config


def outputs(nets: dict[str, torch.nn.Module], config: ModelConfig) -> list[torch.Tensor]:
    torch.manual_seed(1)
    x = torch.rand(2, 3, config.img_size, config.img_size) * 2 - 1
    z = torch.randn(2, config.latent_dim)
    y = torch.tensor([0, 1])
    with torch.no_grad():
        s = nets["mapping_network"](z, y)
        results = [s, nets["style_encoder"](x, y), nets["generator"](x, s)]
        if "fan" in nets:
            masks = nets["fan"].get_heatmap(x)
            results += [*masks, nets["generator"](x, s, masks)]
    return results


@pytest.mark.parametrize("prefix", [False, True])
@pytest.mark.parametrize("hpf_filter", [False, True])
def test_official_checkpoint_round_trips_through_a_bundle(tmp_path: Path, prefix: bool, hpf_filter: bool) -> None:
    nets = random_networks(TINY_HPF, seed=3)
    ckpt = official_checkpoint(tmp_path / "100000_nets_ema.ckpt", nets, prefix=prefix, hpf_filter=hpf_filter)
    bundle = import_to_bundle(ckpt, ["a", "b"], tmp_path / "bundle")
    reloaded = load_bundle(bundle.path)
    assert reloaded.config == TINY_HPF
    assert reloaded.provenance["source"] == "100000_nets_ema.ckpt" and len(reloaded.provenance["source_sha256"]) == 64
    for got, want in zip(outputs(reloaded.build_networks(), TINY_HPF), outputs(nets, TINY_HPF)):
        assert torch.equal(got, want)


def test_fan_from_wing_file_when_the_checkpoint_has_none(tmp_path: Path) -> None:
    nets = random_networks(TINY_HPF, seed=4)
    ckpt = official_checkpoint(tmp_path / "nets_ema.ckpt", nets, hpf_filter=False, fan=False)
    with pytest.raises(CheckpointError, match="--wing"):
        import_official(ckpt)
    wing = tmp_path / "wing.ckpt"
    torch.save({"state_dict": nets["fan"].state_dict(), "epoch": 3}, wing)
    bundle = import_to_bundle(ckpt, ["a", "b"], tmp_path / "bundle", wing=wing)
    assert bundle.provenance["wing"] == "wing.ckpt"
    fan = bundle.build_networks()["fan"]
    assert all(torch.equal(a, b) for a, b in zip(fan.state_dict().values(), nets["fan"].state_dict().values()))


def test_afhq_style_checkpoint_with_an_extra_fan_entry_is_accepted(tmp_path: Path) -> None:
    nets = random_networks(TINY, seed=5, fan=True)
    imported = import_official(official_checkpoint(tmp_path / "afhq.ckpt", nets))
    assert imported.config == TINY and "fan" not in imported.networks
    assert any("ignored the fan entry" in note for note in imported.notes)


def test_nets_checkpoint_with_discriminator(tmp_path: Path) -> None:
    nets = random_networks(TINY, seed=6, discriminator=True)
    imported = import_official(official_checkpoint(tmp_path / "nets.ckpt", nets), discriminator=True)
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([1, 0])
    with torch.no_grad():
        assert torch.equal(imported.networks["discriminator"](x, y), nets["discriminator"](x, y))


def test_hpf_filter_value_gives_w_hpf(tmp_path: Path) -> None:
    config = ModelConfig(**{**TINY_HPF.to_dict(), "w_hpf": 2.0})
    nets = random_networks(config, seed=7)
    assert import_official(official_checkpoint(tmp_path / "c.ckpt", nets)).config.w_hpf == 2.0


def test_config_inference_at_official_size() -> None:
    from smoothgan.models.stargan_v2 import build_networks

    for config in (ModelConfig(img_size=256, num_domains=2, w_hpf=1.0), ModelConfig(img_size=256, num_domains=3)):
        nets = build_networks(config)
        states = {name: net.state_dict() for name, net in nets.items()}
        states["generator"].pop("hpf.filter", None)
        assert infer_config(states)[0] == config


def _edit(tmp_path: Path, change) -> Path:
    nets = random_networks(TINY, seed=8)
    data = {name: dict(net.state_dict()) for name, net in nets.items()}
    change(data)
    path = tmp_path / "edited.ckpt"
    torch.save(data, path)
    return path


def test_missing_unexpected_and_misshaped_keys_are_listed(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"generator: missing to_rgb.2.bias"):
        import_official(_edit(tmp_path, lambda d: d["generator"].pop("to_rgb.2.bias")))
    with pytest.raises(CheckpointError, match=r"style_encoder: unexpected extra.weight"):
        import_official(_edit(tmp_path, lambda d: d["style_encoder"].update({"extra.weight": torch.zeros(1)})))
    with pytest.raises(CheckpointError, match=r"wrong shape to_rgb.2.bias \(4,\) != \(3,\)"):
        import_official(_edit(tmp_path, lambda d: d["generator"].update({"to_rgb.2.bias": torch.zeros(4)})))
    with pytest.raises(CheckpointError, match="not an official StarGAN v2 checkpoint"):
        import_official(_edit(tmp_path, lambda d: d.pop("mapping_network")))


def test_unreadable_and_unsafe_files_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        import_official(garbage)
    with pytest.raises(CheckpointError, match="not found"):
        import_official(tmp_path / "missing.ckpt")
    unsafe = tmp_path / "unsafe.ckpt"
    with open(unsafe, "wb") as handle:
        pickle.dump({"generator": Path("/etc/passwd")}, handle)  # an arbitrary object: weights_only refuses it
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        import_official(unsafe)


def test_domain_count_must_match(tmp_path: Path) -> None:
    ckpt = official_checkpoint(tmp_path / "c.ckpt", random_networks(TINY))
    with pytest.raises(InputError, match="--domains names 3 domain"):
        import_to_bundle(ckpt, ["a", "b", "c"], tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
