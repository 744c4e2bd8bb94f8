"""Bundle format round trips and errors; style latents and interpolation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_networks

from smoothgan import styles
from smoothgan.bundle import CONFIG_FILE, load_bundle, save_bundle
from smoothgan.config import ModelConfig, get_preset
from smoothgan.errors import BundleError, InputError


def test_bundle_round_trip_is_exact(tiny_hpf_bundle) -> None:
    nets = tiny_hpf_bundle.build_networks()
    again = save_bundle(tiny_hpf_bundle.path.parent / "copy", nets, tiny_hpf_bundle.config, tiny_hpf_bundle.domains)
    assert again.weights_sha256 == tiny_hpf_bundle.weights_sha256
    loaded = load_bundle(again.path)
    assert loaded.config == tiny_hpf_bundle.config and loaded.domains == ("a", "b")
    for name, net in loaded.build_networks().items():
        for (k, a), b in zip(net.state_dict().items(), nets[name].state_dict().values()):
            assert torch.equal(a, b), k


def test_fp16_bundle_loads_as_float32(tmp_path: Path) -> None:
    spec = get_preset("tiny")
    nets = random_networks(spec.config)
    bundle = save_bundle(tmp_path / "half", nets, spec.config, spec.domains, dtype="float16")
    assert load_bundle(bundle.path).weights_dtype == "float16"
    w = load_bundle(bundle.path).build_networks()["generator"].from_rgb.weight
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, nets["generator"].from_rgb.weight.half().float())


def test_existing_bundle_is_not_overwritten_and_failed_writes_leave_nothing(tmp_path: Path, monkeypatch) -> None:
    spec = get_preset("tiny")
    nets = random_networks(spec.config)
    save_bundle(tmp_path / "b", nets, spec.config, spec.domains)
    with pytest.raises(InputError, match="already exists"):
        save_bundle(tmp_path / "b", nets, spec.config, spec.domains)
    import safetensors.torch

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(RuntimeError):
        save_bundle(tmp_path / "c", nets, spec.config, spec.domains)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_bad_bundles_give_clear_errors(tmp_path: Path, tiny_bundle, monkeypatch) -> None:
    monkeypatch.delenv("SMOOTHGAN_MODEL", raising=False)
    monkeypatch.setattr("smoothgan.bundle.EMBEDDED_BUNDLE", tmp_path / "no-embedded-model")
    with pytest.raises(BundleError, match="smoothgan import"):
        load_bundle(None)
    with pytest.raises(BundleError, match="not a smoothgan bundle"):
        load_bundle(tmp_path)
    meta = json.loads((tiny_bundle.path / CONFIG_FILE).read_text())
    for edit, pattern in [
        (lambda m: m["config"].update(colour="blue"), "config: unknown keys colour"),
        (lambda m: m.update(format_version=99), "format version 99"),
        (lambda m: m.update(domains=["a"]), "1 domain names for 2 domains"),
        (lambda m: m["config"].update(img_size=48), "power of two"),
    ]:
        bad = tmp_path / "bad"
        bad.mkdir(exist_ok=True)
        (bad / "weights.safetensors").write_bytes(b"")
        changed = json.loads(json.dumps(meta))
        edit(changed)
        (bad / CONFIG_FILE).write_text(json.dumps(changed))
        with pytest.raises(BundleError, match=pattern):
            load_bundle(bad)


def test_domain_index_accepts_names_and_indices_and_lists_known_ones(tiny_bundle) -> None:
    assert tiny_bundle.domain_index("b") == 1 and tiny_bundle.domain_index(0) == 0
    with pytest.raises(InputError, match="unknown domain 'cat'; this model knows: a, b"):
        tiny_bundle.domain_index("cat")


def test_latents_are_reproducible_per_seed() -> None:
    assert np.array_equal(styles.latents(5, 3, 16), styles.latents(5, 3, 16))
    assert not np.array_equal(styles.latents(5, 3, 16), styles.latents(6, 3, 16))
    assert styles.latents(0, 2, 16).dtype == np.float32
    # the first row does not depend on how many are drawn: a seed names the same style everywhere
    assert np.array_equal(styles.latents(9, 1, 16)[0], styles.latents(9, 4, 16)[0])


@pytest.mark.parametrize("mode", ["lerp", "slerp"])
def test_interpolation_includes_both_ends_exactly(mode: str) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 64)).astype(np.float32), rng.standard_normal((2, 64)).astype(np.float32)
    path = styles.interpolate(a, b, 20, mode)
    assert path.shape == (20, 2, 64)
    assert np.array_equal(path[0], a) and np.array_equal(path[-1], b)


def test_lerp_midpoints_and_alphas() -> None:
    assert styles.alphas(5).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    path = styles.interpolate(np.zeros(2, np.float32), np.array([4.0, -8.0], np.float32), 5)
    assert path[1].tolist() == [1.0, -2.0]
    with pytest.raises(InputError):
        styles.alphas(1)


def test_slerp_keeps_norm_between_orthogonal_codes_and_survives_parallel_ones() -> None:
    a, b = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    path = styles.interpolate(a, b, 9, "slerp")
    np.testing.assert_allclose(np.linalg.norm(path, axis=-1), 1.0, atol=1e-6)
    same = styles.interpolate(a, a * 2, 5, "slerp")  # parallel: the official formula divides by zero
    assert np.isfinite(same).all()
    np.testing.assert_allclose(same[2], [1.5, 0.0], atol=1e-6)


def test_model_config_is_strict() -> None:
    with pytest.raises(BundleError, match="model config: unknown keys foo"):
        ModelConfig.from_dict({"img_size": 32, "foo": 1})
    with pytest.raises(BundleError, match="w_hpf > 0 needs img_size >= 32"):
        ModelConfig(img_size=16, w_hpf=1.0)
