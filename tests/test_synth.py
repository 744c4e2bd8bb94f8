"""smoothgan.trainer.synth: determinism, attributes vs images, content recovery, safe writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smoothgan.errors import InputError
from smoothgan.trainer import synth


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "set"
    return synth.generate(root, num_per_domain=10, img_size=32, seed=3, domains=synth.SHAPES, val_fraction=0.2)


def test_layout_counts_and_metadata(dataset: Path) -> None:
    for split, count in (("train", 8), ("val", 2)):
        assert sorted(p.name for p in (dataset / split).iterdir()) == sorted(synth.SHAPES)
        for domain in synth.SHAPES:
            files = sorted((dataset / split / domain).iterdir())
            assert [f.name for f in files] == [f"{k:05d}.png" for k in range(count)]
    meta = json.loads((dataset / "synth.json").read_text())
    assert meta["seed"] == 3 and meta["img_size"] == 32 and meta["counts"] == {"train": 8, "val": 2}
    assert meta["format"] == synth.FORMAT and meta["format_version"] == synth.FORMAT_VERSION
    assert not [p for p in dataset.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_attributes_rerender_to_the_saved_images(dataset: Path) -> None:
    rows = synth.read_attributes(dataset)
    assert len(rows) == 4 * 10
    for row in rows:
        saved = np.asarray(Image.open(dataset / row["file"]))
        assert saved.shape == (32, 32, 3) and saved.dtype == np.uint8
        assert row["file"].startswith(f"{row['split']}/{row['domain']}/")
        np.testing.assert_array_equal(synth.render(row, 32), saved)
        attrs = synth.SynthAttributes.from_dict(row)
        assert synth.SynthAttributes.from_dict(attrs.to_dict()) == attrs


def test_same_seed_same_bytes_other_seed_other_images(tmp_path: Path) -> None:
    kwargs = {"num_per_domain": 4, "img_size": 24, "val_fraction": 0.25}
    first = _files(synth.generate(tmp_path / "a", seed=5, **kwargs))
    again = _files(synth.generate(tmp_path / "b", seed=5, **kwargs))
    other = _files(synth.generate(tmp_path / "c", seed=6, **kwargs))
    assert first == again
    pngs = [k for k in first if k.endswith(".png")]
    assert len(pngs) == 12 and all(first[k] != other[k] for k in pngs)


def test_sample_attributes_is_a_function_of_the_generator_state() -> None:
    a = synth.sample_attributes(np.random.default_rng([1, 2]), "circle")
    b = synth.sample_attributes(np.random.default_rng([1, 2]), "circle")
    c = synth.sample_attributes(np.random.default_rng([1, 3]), "circle")
    assert a == b and a != c
    np.testing.assert_array_equal(synth.render(a, 16), synth.render(b, 16))


def test_style_varies_within_a_domain_and_content_is_domain_free() -> None:
    styles = {synth.sample_attributes(np.random.default_rng(i), "square").fg for i in range(30)}
    textures = {synth.sample_attributes(np.random.default_rng(i), "square").texture for i in range(30)}
    outlines = {synth.sample_attributes(np.random.default_rng(i), "square").outline_width for i in range(30)}
    assert len(styles) == 30 and textures == set(synth.TEXTURES) and len(outlines) >= 25  # 3-decimal rounding
    # the same generator state gives the same content whatever the domain
    contents = {synth.sample_attributes(np.random.default_rng(7), d).cx for d in synth.SHAPES}
    assert len(contents) == 1


@pytest.mark.parametrize("img_size", [32, 64])
def test_estimate_content_recovers_position_size_and_rotation(img_size: int) -> None:
    """Centroid within 1 px and size within 1 px without the domain; rotation within 3 degrees given it."""
    for i in range(25):
        for domain in synth.SHAPES:
            attrs = synth.sample_attributes(np.random.default_rng([9, i]), domain)
            image = synth.render(attrs, img_size)
            blind = synth.estimate_content(image)
            found = synth.estimate_content(image, domain=domain)
            assert found[:3] == blind[:3] and np.isnan(blind.rotation)
            for got, want in zip(found[:3], (attrs.cx, attrs.cy, attrs.size)):
                assert abs(got - want) * img_size <= 1.0, (domain, i, found, attrs)
            if domain == "circle":
                assert np.isnan(found.rotation)
            else:
                assert abs(found.rotation - attrs.rotation) <= 3.0, (domain, i, found, attrs)


def test_rotation_turns_the_shape_clockwise_and_is_content() -> None:
    attrs = synth.sample_attributes(np.random.default_rng(2), "square")
    base = synth.SynthAttributes(**{**attrs.__dict__, "rotation": 0.0, "texture": "none", "outline_width": 0.0})
    turned = synth.SynthAttributes(**{**base.__dict__, "rotation": 15.0})
    assert synth.estimate_content(synth.render(turned, 64), domain="square").rotation == pytest.approx(15, abs=1.5)
    assert np.abs(synth.render(base, 64).astype(int) - synth.render(turned, 64).astype(int)).max() > 40
    # content is drawn before style from the same generator: same rotation whatever the domain
    assert len({synth.sample_attributes(np.random.default_rng(7), d).rotation for d in synth.SHAPES}) == 1


def test_rotation_error_wraps_to_the_target_shapes_period() -> None:
    assert synth.rotation_error(10.0, -5.0, "square") == pytest.approx(15.0)
    assert synth.rotation_error(44.0, -44.0, "square") == pytest.approx(2.0)  # 88 degrees = -2 for a square
    assert synth.rotation_error(-58.0, 58.0, "triangle") == pytest.approx(4.0)  # period 120
    assert synth.rotation_error(30.0, 0.0, "triangle") == pytest.approx(30.0)
    assert np.isnan(synth.rotation_error(10.0, 0.0, "circle"))
    assert np.isnan(synth.rotation_error(float("nan"), 0.0, "square"))
    assert [synth.has_rotation(d) for d in synth.SHAPES] == [False, True, True, True]
    with pytest.raises(InputError, match="unknown synthetic domain"):
        synth.rotation_error(1.0, 0.0, "hexagon")


def test_rotation_is_carried_across_shapes_and_measured() -> None:
    """A square at 12 degrees drawn as a triangle at 12 (kept) and at 27 (turned): errors about 0 and 15."""
    attrs = synth.sample_attributes(np.random.default_rng(4), "square")
    source = synth.SynthAttributes(**{**attrs.__dict__, "rotation": 12.0, "size": 0.3})
    for turn in (0.0, 15.0):
        triangle = synth.SynthAttributes(**{**source.__dict__, "domain": "triangle", "rotation": 12.0 + turn})
        found = synth.estimate_content(synth.render(triangle, 32), domain="triangle")
        assert synth.rotation_error(found.rotation, source.rotation, "triangle") == pytest.approx(turn, abs=2.5)


def test_every_shape_of_a_size_covers_the_same_area() -> None:
    attrs = synth.sample_attributes(np.random.default_rng(5), "circle")
    areas = [float((synth.render(synth.SynthAttributes(**{**attrs.__dict__, "domain": d}), 128).astype(int)
                    != synth.render(synth.SynthAttributes(**{**attrs.__dict__, "size": 0.0}), 128)).any(2).sum())
             for d in synth.SHAPES]
    expected = (2 * attrs.size * 128) ** 2
    # equal to 2% of each other; 4% above the exact area, as every anti-aliased edge pixel counts here
    assert max(areas) / min(areas) < 1.02 and all(1.0 <= a / expected < 1.06 for a in areas), (areas, expected)


def test_style_attributes_change_pixels_and_survive_the_round_trip() -> None:
    attrs = synth.sample_attributes(np.random.default_rng(11), "triangle")
    reference = synth.render(attrs, 64).astype(int)
    changes = {"fg": (10, 200, 30), "fg2": (200, 10, 30), "outline_width": 0.25, "outline": (0, 0, 0),
               "texture": "dots" if attrs.texture != "dots" else "gradient", "texture_duty": 0.65}
    for key, value in changes.items():
        changed = synth.SynthAttributes(**{**attrs.__dict__, "texture": "stripes", key: value})
        base = synth.SynthAttributes(**{**attrs.__dict__, "texture": "stripes"})
        assert (synth.render(changed, 64) != synth.render(base, 64)).any(), key
        assert synth.SynthAttributes.from_dict(changed.to_dict()) == changed
    assert reference.shape == (64, 64, 3)


def test_version_1_rows_and_sets_are_named_as_such(dataset: Path, tmp_path: Path) -> None:
    row = synth.read_attributes(dataset)[0]
    old = {k: v for k, v in row.items() if k not in ("rotation", "fg2", "outline")}
    with pytest.raises(InputError, match="format version 1"):
        synth.SynthAttributes.from_dict(old)
    bad = {**row, "rotation": "10"}
    with pytest.raises(InputError, match="rotation"):
        synth.SynthAttributes.from_dict(bad)
    copy = tmp_path / "old"
    copy.mkdir()
    meta = json.loads((dataset / "synth.json").read_text())
    (copy / "synth.json").write_text(json.dumps({**meta, "format_version": 1}))
    (copy / "attributes.jsonl").write_text(json.dumps(old) + "\n")
    with pytest.raises(InputError, match="format version 1; this smoothgan reads 2"):
        synth.read_attributes(copy)
    # an old set may still be replaced by a new one
    assert synth.generate(copy, num_per_domain=1, img_size=16, val_fraction=0.0, overwrite=True) == copy


def test_shapes_differ_for_the_same_content_and_style() -> None:
    attrs = synth.sample_attributes(np.random.default_rng(4), "circle")
    images = [synth.render(synth.SynthAttributes(**{**attrs.__dict__, "domain": d}), 48) for d in synth.SHAPES]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert np.abs(images[i].astype(int) - images[j].astype(int)).max() > 40


def test_estimate_content_without_an_object_returns_nans() -> None:
    found = synth.estimate_content(np.full((16, 16, 3), 200, np.uint8))
    assert all(np.isnan(v) for v in found)
    with pytest.raises(InputError):
        synth.estimate_content(np.zeros((16, 16), np.uint8))


def test_generate_refuses_to_clobber(tmp_path: Path) -> None:
    root = synth.generate(tmp_path / "s", num_per_domain=2, img_size=16, val_fraction=0.0)
    with pytest.raises(InputError, match="overwrite"):
        synth.generate(root, num_per_domain=2, img_size=16)
    synth.generate(root, num_per_domain=3, img_size=16, val_fraction=0.0, overwrite=True)
    assert len(list((root / "train" / "circle").iterdir())) == 3
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a synthetic"):
        synth.generate(other, num_per_domain=2, img_size=16, overwrite=True)
    assert (other / "notes.txt").read_text() == "keep me"


def test_unknown_domain_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="hexagon"):
        synth.generate(tmp_path / "x", domains=("circle", "hexagon"))
    assert not (tmp_path / "x").exists()
