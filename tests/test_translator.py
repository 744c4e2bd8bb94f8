"""Translator over the torch backend: batching, interpolation end points, source-domain inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import smoothgan
from smoothgan import styles
from smoothgan.errors import BackendError, InputError


@pytest.fixture(scope="module")
def translator(tiny_bundle):
    return smoothgan.load(tiny_bundle.path, max_batch=64)


@pytest.fixture(scope="module")
def hpf_translator(tiny_hpf_bundle):
    return smoothgan.load(tiny_hpf_bundle.path)


def sources(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (36, 44, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("fixture", ["translator", "hpf_translator"])
def test_a_batch_equals_one_by_one(fixture: str, request) -> None:
    tr = request.getfixturevalue(fixture)
    x = tr.prepare(sources(3))
    s = tr.latent_styles("b", seed=1, num=3)
    masks = tr.masks(x)
    batched = tr.generate(x, s, masks, max_batch=64)
    single = tr.generate(x, s, masks, max_batch=1)
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=0)


def test_translate_shapes_and_same_latent_styles_for_every_source(translator) -> None:
    result = translator.translate(sources(2), "a", num=3, seed=4)
    assert result.images.shape == (2, 3, 32, 32, 3) and result.images.dtype == np.uint8
    assert np.array_equal(result.styles[0], result.styles[1])
    np.testing.assert_allclose(result.styles[0], translator.latent_styles("a", seed=4, num=3), atol=0)
    assert result.metadata["seed"] == 4 and result.metadata["model_sha256"] == translator.bundle.weights_sha256


def test_reference_guided_styles_come_from_the_style_encoder(translator) -> None:
    refs = sources(2, seed=9)
    result = translator.translate(sources(1), "b", ref=refs)
    expected = translator.encode(translator.prepare(refs), np.array([1, 1]))
    np.testing.assert_array_equal(result.styles[0], expected)
    assert result.metadata["style"] == "reference"


@pytest.mark.parametrize("fixture", ["translator", "hpf_translator"])
def test_interpolation_end_points_are_the_end_styles(fixture: str, request) -> None:
    tr = request.getfixturevalue(fixture)
    src = sources(1)
    result = tr.interpolate(src, "b", steps=20, seed=3, source_domain="a")
    x = tr.prepare(src)
    start = tr.encode(x, np.array([0]))
    end = tr.latent_styles("b", seed=3, num=1)
    assert result.images.shape == (1, 20, 32, 32, 3)
    assert np.array_equal(result.styles[0, 0], start[0]) and np.array_equal(result.styles[0, -1], end[0])
    masks = tr.masks(x)
    first = tr.generate(x, start, masks)
    last = tr.generate(x, end, masks)
    from smoothgan.images import from_model_output

    # a batch of 20 against batches of 1: oneDNN does not promise bit-equal results across batch sizes
    assert np.abs(result.images[0, 0].astype(int) - from_model_output(first)[0].astype(int)).max() <= 1
    assert np.abs(result.images[0, -1].astype(int) - from_model_output(last)[0].astype(int)).max() <= 1
    assert result.metadata["source_domains"] == ["a"] and not result.metadata["source_domain_inferred"]


def test_source_domain_is_inferred_by_reconstruction_error(translator) -> None:
    src = sources(2, seed=5)
    result = translator.interpolate(src, "b", steps=3)
    x = translator.prepare(src)
    errors = []
    for k in range(2):
        own = translator.encode(x, np.array([k, k]))
        errors.append(np.abs(translator.generate(x, own) - x).reshape(2, -1).mean(1))
    expected = np.stack(errors, 1)
    np.testing.assert_allclose(result.metadata["source_domain_errors"], expected, atol=1e-5)
    assert result.metadata["source_domains"] == [("a", "b")[i] for i in expected.argmin(1)]
    assert result.metadata["source_domain_inferred"]


def test_seeded_translation_is_reproducible_across_translators(tiny_bundle) -> None:
    a = smoothgan.load(tiny_bundle.path).translate(sources(1), "b", num=2, seed=11).images
    b = smoothgan.load(tiny_bundle.path, max_batch=1).translate(sources(1), "b", num=2, seed=11).images
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # same styles; pixels within 1/255 across batch sizes


def test_bad_requests(translator, tiny_bundle) -> None:
    with pytest.raises(InputError, match="unknown domain 'zebra'; this model knows: a, b"):
        translator.translate(sources(1), "zebra")
    with pytest.raises(InputError, match="steps must be an integer from 2 to 1000"):
        translator.interpolate(sources(1), "a", steps=1)
    with pytest.raises(InputError, match="cannot read image"):
        translator.translate(["/no/such/file.png"], "a")
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="no CUDA GPU"):
            smoothgan.load(tiny_bundle.path, device="cuda")
    with pytest.raises(BackendError, match="fp16 on the torch backend needs --device cuda"):
        smoothgan.load(tiny_bundle.path, precision="fp16")



def test_pil_images_are_inputs_like_the_arrays_they_hold(translator) -> None:
    arrays = sources(2)
    pil = [Image.fromarray(a) for a in arrays]
    want = translator.translate(arrays, "b", num=2, seed=4).images
    assert np.array_equal(translator.translate(pil, "b", num=2, seed=4).images, want)
    assert np.array_equal(translator.translate(pil[0], "b", num=2, seed=4).images, want[:1])
    assert np.array_equal(translator.translate([pil[0], arrays[1]], "b", num=2, seed=4).images, want)
    ref = translator.translate(arrays[0], "b", ref=arrays[1]).images
    assert np.array_equal(translator.translate(pil[0], "b", ref=pil[1]).images, ref)
    streamed = [item.result.images[0] for item in translator.iter_translate(pil, "b", num=2, seed=4)]
    assert np.abs(np.stack(streamed).astype(int) - want.astype(int)).max() <= 1


@pytest.mark.parametrize("bad", [5, object(), b"\x89PNG", {"image": 1}, None])
def test_inputs_that_are_not_images_are_one_line_errors(translator, bad) -> None:
    with pytest.raises(InputError, match="images must be paths, uint8 \\[H, W, 3\\] arrays or PIL images"):
        translator.translate(bad, "b")

def test_bf16_on_cpu_stays_close_to_fp32(tiny_bundle, translator) -> None:
    x = translator.prepare(sources(1))
    s = translator.latent_styles("a", seed=0, num=1)
    half = smoothgan.load(tiny_bundle.path, precision="bf16").generate(x, s)
    full = translator.generate(x, s)
    assert np.abs(half - full).max() < 0.1


def test_interpolation_uses_one_generator_call_per_batch(translator, monkeypatch) -> None:
    calls = []
    original = translator.backend.generate

    def counting(image, style, masks=None):
        calls.append(len(image))
        return original(image, style, masks)

    monkeypatch.setattr(translator.backend, "generate", counting)
    translator.interpolate(sources(1), "b", steps=20, source_domain="a")
    assert calls == [20]
    assert styles.alphas(20)[-1] == 1.0


def test_result_item_cuts_per_source_metadata_and_save_replaces_the_folder_whole(translator, tmp_path) -> None:
    result = translator.interpolate(sources(3, seed=2), "b", steps=4)
    one = result.item(1)
    assert one.images.shape == (1, 4, 32, 32, 3) and np.array_equal(one.images[0], result.images[1])
    assert one.metadata["source_domains"] == [result.metadata["source_domains"][1]]
    assert one.metadata["source_domain_errors"] == [result.metadata["source_domain_errors"][1]]
    folder = result.save(tmp_path / "r", index=2, input="x.png", gif=True)
    assert len(list(folder.glob("frame_*.png"))) == 4 and (folder / "animation.gif").is_file()
    translator.translate(sources(1), "a").save(folder)  # a rerun with fewer frames: no stale ones
    assert sorted(p.name for p in folder.iterdir()) == ["frame_000.png", "sidecar.json", "strip.png"]
    with pytest.raises(InputError, match="out of range"):
        result.item(3)


def test_frames_equal_generate_on_repeated_sources(hpf_translator) -> None:
    x = hpf_translator.prepare(sources(2))
    style = np.stack([hpf_translator.latent_styles("a", seed=s, num=3) for s in (1, 2)])  # [2, 3, D]
    masks = hpf_translator.masks(x)
    frames = hpf_translator.frames(x, style, masks, max_batch=4)
    rep = (np.repeat(masks[0], 3, 0), np.repeat(masks[1], 3, 0))
    expected = hpf_translator.generate(np.repeat(x, 3, 0), style.reshape(6, -1), rep, max_batch=4)
    from smoothgan.images import from_model_output

    assert np.array_equal(frames.reshape(6, 32, 32, 3), from_model_output(expected))
