"""smoothgan.images: decoding (EXIF, modes, limits, errors), model tensors, grids, writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smoothgan import images
from smoothgan.errors import InputError, SmoothganError

EXIF_ORIENTATION = 0x0112


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".tmp" in p.name]


# --------------------------------------------------------------------------------------------------------------
# load: EXIF orientation


def _marked_image() -> Image.Image:
    """3 wide x 2 tall; the top-left pixel is red, everything else black."""
    arr = np.zeros((2, 3, 3), np.uint8)
    arr[0, 0] = (255, 0, 0)
    return Image.fromarray(arr)


@pytest.mark.parametrize(
    ("orientation", "red_at"),
    [
        (1, (0, 0)),  # upright: 2 x 3, red stays top-left
        (6, (0, 1)),  # stored rotated 90 CCW -> display rotated 90 CW: 3 x 2, red at top-right
        (8, (2, 0)),  # display rotated 90 CCW: 3 x 2, red at bottom-left
        (3, (1, 2)),  # 180: red at bottom-right
    ],
)
def test_load_applies_exif_orientation(tmp_path: Path, orientation: int, red_at: tuple[int, int]) -> None:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    path = tmp_path / "o.png"
    _marked_image().save(path, exif=exif.tobytes())
    out = images.load(path)
    expected_shape = (2, 3, 3) if orientation in (1, 3) else (3, 2, 3)
    assert out.shape == expected_shape and out.dtype == np.uint8
    red = np.argwhere(out[:, :, 0] == 255)
    assert [tuple(r) for r in red] == [red_at]



@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P", "L", "I;16", "CMYK"])
def test_a_pil_image_converts_exactly_as_its_file(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(1)
    base = Image.fromarray(rng.integers(0, 256, (6, 5, 4), dtype=np.uint8), "RGBA")
    im = base.convert(mode) if mode != "I;16" else Image.fromarray(rng.integers(0, 65536, (6, 5), dtype=np.uint16))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    if mode in ("CMYK", "I;16"):  # PNG cannot hold these; TIFF keeps the orientation as its own tag
        path = tmp_path / "x.tif"
        im.save(path, tiffinfo={EXIF_ORIENTATION: 6})
    else:
        path = tmp_path / "x.png"
        im.save(path, exif=exif.tobytes())
    with Image.open(path) as opened:  # lazily loaded, EXIF attached, as a user would hold it
        from_memory = images.from_pil(opened)
    from_file = images.load(path)
    assert np.array_equal(from_memory, from_file)
    if path.suffix == ".png":  # (Pillow 13 applies a TIFF orientation tag to RGB but not to CMYK or I;16 files)
        assert from_memory.shape == (5, 6, 3)



@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 1), (6, 5, 4)])
def test_grey_and_rgba_arrays_convert_as_their_files(tmp_path: Path, shape: tuple[int, ...]) -> None:
    array = np.random.default_rng(2).integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(array.reshape(6, 5) if len(shape) == 3 and shape[2] == 1 else array).save(path)
    assert np.array_equal(images.as_rgb(array), images.load(path))


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 4, 3), np.float32), r"for floats in \[0, 1\] pass"),
    (np.zeros((4, 4, 2), np.uint8), r"got uint8 \[4, 4, 2\]"),
    (np.zeros((2, 4, 4, 3), np.uint8), r"got uint8 \[2, 4, 4, 3\]"),
    (np.zeros((0, 4, 3), np.uint8), r"empty \(4x0\)"),
    (b"png", "must be a path, a uint8 array or a PIL image, got bytes"),
])
def test_what_is_not_an_image_is_refused_in_one_line(bad: object, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        images.as_rgb(bad)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)

def test_an_empty_pil_image_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"PIL image is empty \(0x4\)"):
        images.from_pil(Image.new("RGB", (0, 4)))

def test_load_exif_orientation_jpeg(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[:20, :30] = 255  # white top-left quadrant
    path = tmp_path / "o.jpg"
    Image.fromarray(arr).save(path, exif=exif.tobytes(), quality=100)
    out = images.load(path)
    assert out.shape == (60, 40, 3)
    assert out[:30, 20:].mean() > 250 and out[30:, :].mean() < 5  # now the top-right quadrant


# --------------------------------------------------------------------------------------------------------------
# load: modes


def _save(tmp_path: Path, im: Image.Image, name: str = "m.png", **kw: object) -> Path:
    path = tmp_path / name
    im.save(path, **kw)
    return path


def test_load_rgb_png_round_trip_exact(tmp_path: Path) -> None:
    arr = _rgb(7, 5)
    path = tmp_path / "rt.png"
    images.save_image(path, arr)
    out = images.load(path)
    assert out.dtype == np.uint8 and out.flags.c_contiguous and out.flags.writeable
    np.testing.assert_array_equal(out, arr)


def test_load_mode_l(tmp_path: Path) -> None:
    im = Image.fromarray(np.array([[0, 17, 255]], np.uint8), mode="L")
    out = images.load(_save(tmp_path, im))
    np.testing.assert_array_equal(out, [[[0, 0, 0], [17, 17, 17], [255, 255, 255]]])


def test_load_mode_1(tmp_path: Path) -> None:
    im = Image.new("1", (2, 1))
    im.putpixel((1, 0), 1)
    out = images.load(_save(tmp_path, im))
    np.testing.assert_array_equal(out, [[[0, 0, 0], [255, 255, 255]]])


def test_load_mode_la_composites_over_white(tmp_path: Path) -> None:
    im = Image.new("LA", (3, 1))
    im.putdata([(0, 0), (100, 255), (0, 128)])
    out = images.load(_save(tmp_path, im))
    # alpha 0 -> white; opaque -> value; black at 128/255 -> round(255 * 127 / 255) = 127
    np.testing.assert_array_equal(out[0, :, 0], [255, 100, 127])
    assert (out == out[:, :, :1]).all()


def test_load_mode_rgba_composites_over_white(tmp_path: Path) -> None:
    im = Image.new("RGBA", (3, 1))
    im.putdata([(10, 20, 30, 0), (10, 20, 30, 255), (0, 100, 200, 51)])
    out = images.load(_save(tmp_path, im))
    # alpha 51 = 0.2: c * 0.2 + 255 * 0.8 -> 204, 224, 244
    np.testing.assert_array_equal(out[0], [[255, 255, 255], [10, 20, 30], [204, 224, 244]])


def test_load_mode_p_without_and_with_transparency(tmp_path: Path) -> None:
    im = Image.new("P", (2, 1))
    im.putpalette([0, 0, 0, 10, 200, 30] + [0] * (254 * 3))
    im.putdata([0, 1])
    out = images.load(_save(tmp_path, im, "p.png"))
    np.testing.assert_array_equal(out[0], [[0, 0, 0], [10, 200, 30]])
    out = images.load(_save(tmp_path, im, "pt.png", transparency=0))  # palette index 0 transparent
    np.testing.assert_array_equal(out[0], [[255, 255, 255], [10, 200, 30]])
    out = images.load(_save(tmp_path, im, "pt.gif", transparency=0))
    np.testing.assert_array_equal(out[0], [[255, 255, 255], [10, 200, 30]])


def test_load_mode_cmyk(tmp_path: Path) -> None:
    im = Image.new("CMYK", (3, 1))
    im.putdata([(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255)])
    path = _save(tmp_path, im, "c.tif")
    with Image.open(path) as check:
        assert check.mode == "CMYK"
    out = images.load(path)
    np.testing.assert_array_equal(out[0], [[255, 255, 255], [0, 255, 255], [0, 0, 0]])


@pytest.mark.parametrize(("mode", "name"), [("I;16", "g.png"), ("I;16B", "g.tif"), ("I", "g.tif")])
def test_load_16_bit_grayscale_is_scaled_not_clipped(tmp_path: Path, mode: str, name: str) -> None:
    im = Image.new(mode, (5, 1))
    im.putdata([0, 257, 32768, 65280, 65535])
    path = _save(tmp_path, im, name)
    out = images.load(path)
    # round(v * 255 / 65535): 257 -> 1, 32768 -> 127.5019 -> 128, 65280 -> 254.0039 -> 254
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 254, 255])
    assert out.shape == (1, 5, 3) and (out == out[:, :, :1]).all()


# --------------------------------------------------------------------------------------------------------------
# load: errors


def test_load_over_pixel_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(tmp_path, Image.new("RGB", (20, 10)))
    monkeypatch.setattr(images, "MAX_PIXELS", 199)
    with pytest.raises(InputError, match=r"megapixels") as info:
        images.load(path)
    assert str(path) in str(info.value)
    monkeypatch.setattr(images, "MAX_PIXELS", 200)
    assert images.load(path).shape == (10, 20, 3)


def test_load_pillow_decompression_bomb_becomes_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(tmp_path, Image.new("RGB", (20, 10)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)  # 200 px > 150: warning; > 300 would be Pillow's error
    with pytest.raises(InputError, match="cannot read image"):
        images.load(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # 200 > 2 * 50: DecompressionBombError
    with pytest.raises(InputError, match="cannot read image"):
        images.load(path)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.png"
    with pytest.raises(InputError, match="no such file") as info:
        images.load(missing)
    assert str(info.value) == f"cannot read image '{missing}': no such file"

    with pytest.raises(InputError, match="is a directory"):
        images.load(tmp_path)

    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    with pytest.raises(InputError, match="not an image") as info:
        images.load(text)
    assert f"'{text}'" in str(info.value)

    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=f"'{empty}'"):
        images.load(empty)


@pytest.mark.parametrize("name", ["t.png", "t.jpg"])
def test_load_truncated_file(tmp_path: Path, name: str) -> None:
    full = tmp_path / f"full{Path(name).suffix}"
    Image.fromarray(_rgb(64, 64)).save(full)
    data = full.read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt") as info:
        images.load(path)
    assert f"'{path}'" in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------------------------
# to_model_input / from_model_output


def test_to_model_input_values_and_shape() -> None:
    arr = np.zeros((4, 4, 3), np.uint8)
    arr[0, 0] = (0, 255, 51)
    x = images.to_model_input(arr, 4)
    assert x.shape == (1, 3, 4, 4) and x.dtype == np.float32 and x.flags.c_contiguous
    assert x[0, 0, 0, 0] == -1.0 and x[0, 1, 0, 0] == 1.0
    assert x[0, 2, 0, 0] == pytest.approx(51 / 255 * 2 - 1, abs=1e-7)  # -0.6
    assert x.min() >= -1 and x.max() <= 1


def test_to_model_input_batch_forms() -> None:
    a, b = _rgb(8, 8, 1), _rgb(16, 12, 2)
    x = images.to_model_input([a, b], 8)
    assert x.shape == (2, 3, 8, 8)
    np.testing.assert_array_equal(x[0], images.to_model_input(a, 8)[0])
    np.testing.assert_array_equal(images.to_model_input(np.stack([a, a]), 8), np.stack([x[0], x[0]]))


def test_to_model_input_crop_vs_stretch() -> None:
    # 8 wide x 4 tall: black left half, white right half
    wide = np.zeros((4, 8, 3), np.uint8)
    wide[:, 4:] = 255
    stretched = images.to_model_input(wide, 4, fit="stretch")[0, 0]
    # 2x horizontal shrink, antialiased (triangle filter of width 4 input px): output column 1 covers input
    # columns 1-4 with weights 1/8, 3/8, 3/8, 1/8, so it is 255 / 8 -> 32 (and column 2 is 223)
    np.testing.assert_allclose(stretched, np.tile([0, 32, 223, 255], (4, 1)) / 255 * 2 - 1, atol=1e-6)
    np.testing.assert_array_equal(stretched[:, :2], -stretched[:, :1:-1])
    cropped = images.to_model_input(wide, 4, fit="crop")[0, 0]
    # centre 4x4 square is columns 2..5: black, black, white, white; no resize needed
    np.testing.assert_array_equal(cropped, np.tile([-1, -1, 1, 1], (4, 1)))

    # tall 4 wide x 12 tall: rows 0-3 red, 4-7 green, 8-11 blue; crop keeps the green middle
    tall = np.zeros((12, 4, 3), np.uint8)
    tall[0:4, :, 0] = tall[4:8, :, 1] = tall[8:12, :, 2] = 255
    cropped = images.to_model_input(tall, 2, fit="crop")[0]
    np.testing.assert_array_equal(cropped[1], np.ones((2, 2)))
    np.testing.assert_array_equal(cropped[0], -np.ones((2, 2)))
    stretched = images.to_model_input(tall, 3, fit="stretch")[0]
    # squashed 4x vertically: all three bands survive, row i dominated by channel i (blended at the edges)
    np.testing.assert_array_equal(stretched.argmax(axis=0), np.tile([[0], [1], [2]], (1, 3)))


def test_to_model_input_matches_pillow_bilinear() -> None:
    arr = _rgb(37, 53)
    expected = np.asarray(Image.fromarray(arr).resize((16, 16), Image.Resampling.BILINEAR))
    x = images.to_model_input(arr, 16, fit="stretch")[0]
    np.testing.assert_allclose(x, expected.transpose(2, 0, 1) / 255 * 2 - 1, atol=1e-6)


def test_to_model_input_validates() -> None:
    with pytest.raises(InputError, match="fit must be one of crop, stretch"):
        images.to_model_input(_rgb(4, 4), 4, fit="pad")
    with pytest.raises(InputError, match="img_size"):
        images.to_model_input(_rgb(4, 4), 0)
    with pytest.raises(InputError, match="uint8"):
        images.to_model_input(np.zeros((4, 4, 3), np.float32), 4)
    with pytest.raises(InputError, match=r"\[H, W, 3\] or \[N, H, W, 3\]"):
        images.to_model_input(np.zeros((4, 4), np.uint8), 4)
    with pytest.raises(InputError, match="no image"):
        images.to_model_input([], 4)


def test_from_model_output_rounding_and_clamping() -> None:
    def val(y255: float) -> float:  # the model value whose (x + 1) / 2 * 255 is y255
        return y255 / 255 * 2 - 1

    row = [-1.0, 1.0, -3.0, 2.5, 0.0, val(10.4), val(10.6), val(254.4), val(254.6), float("nan")]
    expected = [0, 255, 0, 255, 128, 10, 11, 254, 255, 0]  # 0.0 -> 127.5 + 0.5 = 128 (half rounds up)
    x = np.array(row, np.float32).reshape(1, 1, 1, -1).repeat(3, axis=1)  # [1, 3, 1, N]
    out = images.from_model_output(x)
    assert out.shape == (1, 1, len(row), 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0, :, 0], expected)
    # a single [3, H, W] image gets a batch axis; channel order is kept
    chw = np.stack([np.full((2, 2), -1.0), np.zeros((2, 2)), np.ones((2, 2))]).astype(np.float32)
    single = images.from_model_output(chw)
    assert single.shape == (1, 2, 2, 3)
    np.testing.assert_array_equal(single[0, 1, 1], [0, 128, 255])
    with pytest.raises(InputError, match="model output"):
        images.from_model_output(np.zeros((2, 4, 4), np.float32))


def test_parity_with_official_torchvision_pipeline() -> None:
    """Bit-exact against the official code's transforms (Resize, ToTensor, Normalize) and save_image."""
    torch = pytest.importorskip("torch")
    transforms = pytest.importorskip("torchvision.transforms")
    from torchvision.utils import make_grid

    official = transforms.Compose(
        [transforms.Resize([32, 32]), transforms.ToTensor(), transforms.Normalize(mean=[0.5] * 3, std=[0.5] * 3)]
    )
    for h, w in [(37, 53), (64, 40), (32, 32), (20, 24)]:  # shrink, shrink, identity, enlarge
        arr = _rgb(h, w, h)
        expected = official(Image.fromarray(arr)).numpy()
        np.testing.assert_array_equal(images.to_model_input(arr, 32, fit="stretch")[0], expected)

    x = torch.from_numpy(np.random.default_rng(0).normal(0, 1.5, (3, 3, 8, 8)).astype(np.float32))
    grid = make_grid(((x + 1) / 2).clamp(0, 1), nrow=3, padding=0)  # the official denormalize + save_image
    expected = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
    np.testing.assert_array_equal(images.make_strip(images.from_model_output(x.numpy())), expected)


def test_round_trip_uint8_model_uint8_is_exact() -> None:
    every_value = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    arr = np.concatenate([every_value, _rgb(16, 16)], axis=1)[:, :16]
    for image in (every_value, arr):
        back = images.from_model_output(images.to_model_input(image, 16))
        np.testing.assert_array_equal(back[0], image)


# --------------------------------------------------------------------------------------------------------------
# save_image


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".JPEG", ".webp", ".bmp"])
def test_save_image_formats(tmp_path: Path, suffix: str) -> None:
    arr = np.full((8, 10, 3), (200, 100, 50), np.uint8)
    path = tmp_path / "sub" / f"out{suffix}"
    images.save_image(path, arr)
    with Image.open(path) as im:
        expected = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}
        assert im.format == expected[suffix.lower()] and im.size == (10, 8)
    assert np.abs(images.load(path).astype(int) - arr).max() <= 3
    assert _no_temp_files(path.parent)


def test_save_image_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"unknown suffix '\.tiff'"):
        images.save_image(tmp_path / "x.tiff", _rgb(4, 4))
    with pytest.raises(InputError, match="unknown suffix"):
        images.save_image(tmp_path / "noext", _rgb(4, 4))
    assert list(tmp_path.iterdir()) == []


def test_save_image_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        Path(fp).write_bytes(b"partial")  # type: ignore[arg-type]
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        images.save_image(tmp_path / "x.png", _rgb(4, 4))
    with pytest.raises(RuntimeError):
        images.save_gif(tmp_path / "x.gif", [_rgb(4, 4)])
    assert list(tmp_path.iterdir()) == []


def test_save_image_keeps_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.png"
    old = _rgb(4, 4, 1)
    images.save_image(path, old)
    monkeypatch.setattr(Image.Image, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(InputError, match="cannot write image .*disk full"):
        images.save_image(path, _rgb(4, 4, 2))
    monkeypatch.undo()
    np.testing.assert_array_equal(images.load(path), old)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


# --------------------------------------------------------------------------------------------------------------
# strips and grids


def _solid(value: int, h: int = 2, w: int = 3) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def test_make_strip() -> None:
    tiles = [_solid(10), _solid(20), _solid(30)]
    strip = images.make_strip(tiles)
    assert strip.shape == (2, 9, 3) and strip.dtype == np.uint8
    np.testing.assert_array_equal(strip[0, :, 0], [10] * 3 + [20] * 3 + [30] * 3)
    padded = images.make_strip(np.stack(tiles), padding=1, pad_value=0)
    assert padded.shape == (2, 11, 3)
    np.testing.assert_array_equal(padded[1, :, 0], [10] * 3 + [0] + [20] * 3 + [0] + [30] * 3)


def test_make_grid() -> None:
    tiles = [_solid(v) for v in (1, 2, 3, 4, 5)]
    grid = images.make_grid(tiles, ncols=2)
    assert grid.shape == (3 * 2, 2 * 3, 3)
    assert grid[0, 0, 0] == 1 and grid[0, 3, 0] == 2 and grid[2, 0, 0] == 3 and grid[5, 0, 0] == 5
    assert (grid[4:, 3:] == 255).all()  # empty last cell
    padded = images.make_grid(tiles[:4], ncols=2, padding=2, pad_value=7)
    assert padded.shape == (2 * 2 + 2, 2 * 3 + 2, 3)
    assert (padded[2:4] == 7).all() and (padded[:, 3:5] == 7).all() and padded[4, 5, 0] == 4
    with pytest.raises(InputError, match="same size"):
        images.make_grid([_solid(1), _solid(1, h=3)], ncols=2)
    with pytest.raises(InputError, match="ncols"):
        images.make_grid(tiles, ncols=0)


# --------------------------------------------------------------------------------------------------------------
# GIF and MP4


def _frames(n: int, h: int = 16, w: int = 24) -> list[np.ndarray]:
    return [np.full((h, w, 3), (i * 40 % 256, 255 - i * 30, 100), np.uint8) for i in range(n)]


def test_save_gif(tmp_path: Path) -> None:
    path = tmp_path / "a.gif"
    images.save_gif(path, _frames(5), fps=20)
    with Image.open(path) as im:
        assert im.n_frames == 5 and im.size == (24, 16)
        assert im.info["duration"] == 50 and im.info["loop"] == 0
        im.seek(3)
        assert np.abs(np.asarray(im.convert("RGB")).astype(int) - _frames(5)[3]).max() <= 2
    images.save_gif(path, _frames(5), boomerang=True)  # 0 1 2 3 4 3 2 1
    with Image.open(path) as im:
        assert im.n_frames == 8
    assert _no_temp_files(tmp_path)


def test_save_mp4(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    for (h, w), expected in [((16, 24), (16, 24)), ((17, 23), (18, 24))]:
        path = tmp_path / f"v{h}.mp4"
        images.save_mp4(path, _frames(6, h, w), fps=12)
        cap = cv2.VideoCapture(str(path))
        assert cap.isOpened()
        count, shapes, first = 0, set(), None
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            first = frame if first is None else first
            count += 1
            shapes.add(frame.shape)
        cap.release()
        assert count == 6 and shapes == {(*expected, 3)}
        # colour survives (BGR order handled): frame 0 is RGB (0, 255, 100)
        assert np.abs(first[h // 2, w // 2].astype(int) - [100, 255, 0]).max() <= 12
    assert _no_temp_files(tmp_path)


def test_video_frames_validated(tmp_path: Path) -> None:
    mixed = [_solid(1, 4, 4), _solid(2, 4, 6)]
    with pytest.raises(InputError, match="frame 1 is 6x4"):
        images.save_gif(tmp_path / "a.gif", mixed)
    with pytest.raises(InputError, match="same size"):
        images.save_mp4(tmp_path / "a.mp4", mixed)
    with pytest.raises(InputError, match="fps"):
        images.save_gif(tmp_path / "a.gif", _frames(2), fps=0)
    with pytest.raises(InputError, match="no frame"):
        images.save_mp4(tmp_path / "a.mp4", [])
    assert list(tmp_path.iterdir()) == []


def test_save_mp4_writer_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cv2 = pytest.importorskip("cv2")

    class ClosedWriter:
        def __init__(self, *args: object) -> None:
            pass

        def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
            return False

    monkeypatch.setattr(cv2, "VideoWriter", ClosedWriter)
    with pytest.raises(SmoothganError, match="cannot write video .*could not open an MP4 writer"):
        images.save_mp4(tmp_path / "v.mp4", _frames(2))
    assert list(tmp_path.iterdir()) == []


def test_save_mp4_failure_mid_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cv2 = pytest.importorskip("cv2")
    real = cv2.VideoWriter

    class FailingWriter:
        def __init__(self, *args: object) -> None:
            self._inner = real(*args)
            self._n = 0

        def isOpened(self) -> bool:  # noqa: N802
            return self._inner.isOpened()

        def write(self, frame: np.ndarray) -> None:
            self._n += 1
            if self._n == 2:
                raise RuntimeError("encoder crashed")
            self._inner.write(frame)

        def release(self) -> None:
            self._inner.release()

    monkeypatch.setattr(cv2, "VideoWriter", FailingWriter)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        images.save_mp4(tmp_path / "v.mp4", _frames(3))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------------------
# list_images


def test_list_images(tmp_path: Path) -> None:
    for rel in ["b.png", "a.JPG", "c.jpeg", "d.Webp", "e.bmp", "notes.txt", ".hidden.png", "sub/f.png", "sub/g.gif"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "dir.png").mkdir()
    names = [p.relative_to(tmp_path).as_posix() for p in images.list_images(tmp_path)]
    assert names == ["a.JPG", "b.png", "c.jpeg", "d.Webp", "e.bmp", "sub/f.png"]
    flat = [p.name for p in images.list_images(tmp_path, recursive=False)]
    assert flat == ["a.JPG", "b.png", "c.jpeg", "d.Webp", "e.bmp"]
    with pytest.raises(InputError, match="no such folder"):
        images.list_images(tmp_path / "nope")
    with pytest.raises(InputError, match="not a folder"):
        images.list_images(tmp_path / "b.png")


def test_images_module_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, smoothgan.images; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
