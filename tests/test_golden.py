"""Golden tensors from the real official StarGAN v2 networks at 256x256 (``tests/data/official_stargan_v2.npz``).

The file was computed by running the official clovaai/stargan-v2 ``core/model.py`` (CPU, float32); its README
(``tests/data/official_stargan_v2.README.md``) documents how the weights were drawn, so they are rebuilt here with
numpy alone, in the state_dict order the file records. Every backend present is checked against the official
outputs at 1e-4 max abs: torch fp32 directly, ONNX Runtime fp32 after export (``slow``: four 256px graphs).
This is the test that a shared misreading of the official code (ours and the parity restatement's) cannot pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from smoothgan.backends import BACKENDS, create_backend
from smoothgan.bundle import ModelBundle, save_bundle
from smoothgan.config import ModelConfig
from smoothgan.models.fan import FAN
from smoothgan.models.stargan_v2 import Generator, MappingNetwork, StyleEncoder

GOLDEN = Path(__file__).parent / "data" / "official_stargan_v2.npz"
MAX_ABS = 1e-4  # float32 on any CPU (the README measured at most 1.3e-5)
DOMAIN_NAMES = ("a", "b", "c")


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as data:
        return {key: data[key] for key in data.files}


def config(w_hpf: float) -> ModelConfig:
    return ModelConfig(img_size=256, num_domains=3, style_dim=64, latent_dim=16, w_hpf=w_hpf, max_conv_dim=512)


def rebuild(module: torch.nn.Module, golden: dict[str, np.ndarray], name: str) -> torch.nn.Module:
    """Fill ``module``'s parameters by the README's scheme, in the recorded key order (buffers untouched)."""
    keys = [str(k) for k in golden[f"keys_{name}"]]
    params = dict(module.named_parameters())
    assert keys == list(params), f"{name}: our parameter keys differ from the official ones"
    rng = np.random.default_rng(int(golden[f"seed_{name}"]))
    with torch.no_grad():
        for key in keys:
            shape = tuple(params[key].shape)
            if len(shape) >= 2:
                value = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
            elif key.endswith("weight"):
                value = 1 + 0.1 * rng.standard_normal(shape)
            else:
                value = 0.1 * rng.standard_normal(shape)
            params[key].copy_(torch.from_numpy(value.astype(np.float32)))
    return module.eval()


@pytest.fixture(scope="module")
def networks(golden) -> dict[str, torch.nn.Module]:
    return {
        "mapping_network": rebuild(MappingNetwork(config(0.0)), golden, "mapping_network"),
        "style_encoder": rebuild(StyleEncoder(config(0.0)), golden, "style_encoder"),
        "generator_afhq": rebuild(Generator(config(0.0)), golden, "generator_afhq"),
        "generator_celeba_hq": rebuild(Generator(config(1.0)), golden, "generator_celeba_hq"),
    }


@pytest.fixture(scope="module")
def bundles(networks, tmp_path_factory) -> dict[str, ModelBundle]:
    """The rebuilt networks as two bundles (w_hpf 0 and 1; the FAN of the second is random, its masks are
    given)."""
    root = tmp_path_factory.mktemp("golden")
    shared = {"mapping_network": networks["mapping_network"], "style_encoder": networks["style_encoder"]}
    provenance = {"name": "golden", "kind": "weights rebuilt from tests/data/official_stargan_v2.npz's scheme"}
    return {
        "afhq": save_bundle(root / "afhq", {**shared, "generator": networks["generator_afhq"]}, config(0.0),
                            DOMAIN_NAMES, provenance),
        "celeba_hq": save_bundle(root / "celeba_hq", {**shared, "generator": networks["generator_celeba_hq"],
                                                      "fan": FAN().eval()}, config(1.0), DOMAIN_NAMES, provenance),
    }


def check_backend(backend_for: dict[str, object], golden: dict[str, np.ndarray]) -> None:
    """The four official outputs through the backend interface, each within MAX_ABS."""
    afhq, celeba = backend_for["afhq"], backend_for["celeba_hq"]
    got = {
        "mapping": afhq.mapping(golden["z"], golden["y"]),
        "style_encoder": afhq.encode_style(golden["x"], golden["y"]),
        "generator_afhq": afhq.generate(golden["x"], golden["mapping"]),
        "generator_celeba_hq": celeba.generate(golden["x"], golden["style_encoder"],
                                               (golden["masks0"], golden["masks1"])),
    }
    for key, value in got.items():
        assert value.shape == golden[key].shape and value.dtype == np.float32, key
        error = float(np.abs(value - golden[key]).max())
        assert error <= MAX_ABS, f"{key}: max abs {error:.3g} > {MAX_ABS}"


def test_golden_file_is_what_the_readme_says(golden) -> None:
    assert golden["x"].shape == (1, 3, 256, 256) and golden["y"].tolist() == [2]
    assert golden["generator_celeba_hq"].shape == (1, 3, 256, 256) and golden["mapping"].shape == (1, 64)
    assert not np.allclose(golden["generator_afhq"], golden["generator_celeba_hq"])  # the high-pass matters


def test_rebuilt_weights_follow_the_scheme(networks, golden) -> None:
    """The rebuild itself: a wrong draw order would make every later comparison meaningless."""
    first = [str(k) for k in golden["keys_mapping_network"]][0]
    rng = np.random.default_rng(int(golden["seed_mapping_network"]))
    weight = dict(networks["mapping_network"].named_parameters())[first].detach().numpy()
    expected = (rng.standard_normal(weight.shape) / np.sqrt(np.prod(weight.shape[1:]))).astype(np.float32)
    assert np.array_equal(weight, expected)


def test_torch_backend_matches_the_official_networks(bundles, golden) -> None:
    """The rebuilt torch modules through a bundle (safetensors round trip) and the backend interface."""
    check_backend({key: create_backend(bundle, "torch", "cpu", "fp32") for key, bundle in bundles.items()}, golden)


@pytest.mark.slow
def test_onnxruntime_backend_matches_the_official_networks(bundles, golden) -> None:
    """fp32 graphs exported from the rebuilt networks (validation skipped: the official outputs are the check)."""
    pytest.importorskip("onnx")
    if not BACKENDS["onnxruntime"].is_installed():
        pytest.skip("onnxruntime is not installed")
    from smoothgan.export.onnx import export_onnx

    for bundle in bundles.values():
        export_onnx(bundle, precision="fp32", validate=False)
    backends = {key: create_backend(bundle, "onnxruntime", "cpu", "fp32") for key, bundle in bundles.items()}
    try:
        check_backend(backends, golden)
    finally:
        for backend in backends.values():
            backend.close()
