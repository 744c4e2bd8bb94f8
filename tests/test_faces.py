"""smoothgan.faces on real photos (scikit-image's public-domain astronaut and cat) and synthetic transforms."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from smoothgan.errors import InputError

skimage_data = pytest.importorskip("skimage.data")

from smoothgan import faces  # noqa: E402
from smoothgan.faces import benchmark, crop  # noqa: E402

# Tolerances, measured with benchmark.accuracy(): median corner error 1.2 px, p90 1.8 px (256 crop, 24 photos,
# +-30 deg, scale 0.5-1.5). Tests allow 4 px per corner median, so a real regression (a wrong eye, a flipped
# orientation: tens of pixels) fails while interpolation noise does not.
CORNER_TOL_PX = 4.0
# The astronaut's pupils and mouth corners, read off the photo by eye (x, y).
ASTRONAUT_EYES = np.array([[203.0, 101.0], [246.0, 103.0]])
ASTRONAUT_MOUTH = np.array([[199.0, 139.0], [247.0, 141.0]])


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skimage_data.astronaut())


@pytest.fixture(scope="module")
def reference(astronaut):
    found = faces.align(astronaut)
    assert len(found) == 1
    return found[0]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def corner_error(quad: np.ndarray, expected: np.ndarray, size: int = 256) -> float:
    side = float(np.hypot(*(expected[3] - expected[0])))
    return float(np.median(np.hypot(*(quad - expected).T))) * size / side


# ---------------------------------------------------------------------------------------------------------
# the crop formula and the warp


def test_celebahq_quad_hand_computed():
    # eye_avg (120, 100), eye_to_eye (40, 0), eye_to_mouth (0, 40): x = (40,0) - rot90(0,40) = (80, 0) -> unit
    # (1, 0) * max(2 * 40, 1.8 * 40) = (80, 0); y = (0, 80); c = (120, 104)
    lm = np.array([[100, 100], [140, 100], [120, 120], [105, 140], [135, 140]], float)
    np.testing.assert_allclose(faces.celebahq_quad(lm), [[40, 24], [40, 184], [200, 184], [200, 24]])
    # mouth far below: 1.8 |eye_to_mouth| = 90 wins over 2 |eye_to_eye| = 20; c = (5, 0) + 0.1 (0, 50)
    lm = np.array([[0, 0], [10, 0], [5, 20], [0, 50], [10, 50]], float)
    np.testing.assert_allclose(faces.celebahq_quad(lm), [[-85, -85], [-85, 95], [95, 95], [95, -85]])


def test_celebahq_quad_follows_rotation_and_scale():
    lm = np.array([[100, 100], [140, 104], [120, 120], [104, 140], [136, 143]], float)
    m = cv2.getRotationMatrix2D((50.0, 70.0), 37.0, 1.7)
    moved = lm @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(faces.celebahq_quad(moved), faces.celebahq_quad(lm) @ m[:, :2].T + m[:, 2],
                               atol=1e-9)


def test_celebahq_quad_rejects_bad_landmarks():
    with pytest.raises(InputError):
        faces.celebahq_quad(np.zeros((4, 2)))
    with pytest.raises(InputError):
        faces.celebahq_quad(np.zeros((5, 2)))


def test_warp_quad_is_exact_at_scale_one():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)
    quad = np.array([[9.5, 19.5], [9.5, 83.5], [73.5, 83.5], [73.5, 19.5]])  # outer corners of [20:84, 10:74]
    np.testing.assert_array_equal(faces.warp_quad(image, quad, 64), image[20:84, 10:74])


def test_warp_quad_antialiases_when_shrinking():
    checker = ((np.indices((512, 512)).sum(0) % 2) * 255).astype(np.uint8)
    image = np.repeat(checker[:, :, None], 3, axis=2)
    quad = np.array([[-0.5, -0.5], [-0.5, 511.5], [511.5, 511.5], [511.5, -0.5]])
    small = faces.warp_quad(image, quad, 50)  # 10.24x smaller: a 1-pixel checkerboard must average to gray
    assert abs(float(small.mean()) - 127.5) < 2 and float(small.std()) < 3


def test_warp_quad_reflects_outside_the_photo():
    image = np.full((100, 100, 3), 200, np.uint8)
    quad = np.array([[50, 50], [50, 250], [250, 250], [250, 50]], float)  # mostly outside
    out = faces.warp_quad(image, quad, 64)
    assert out.min() == 200  # no black border


def test_feather_mask_is_zero_at_the_border_and_one_inside():
    mask = faces.feather_mask(100)
    assert mask[0].max() < 0.05 and mask[:, -1].max() < 0.05
    assert mask[20:80, 20:80].min() == 1.0
    assert np.all(np.diff(mask[50, :50]) >= 0)


# ---------------------------------------------------------------------------------------------------------
# detection and landmarks on real photos


def test_astronaut_face_and_landmarks(reference):
    assert reference.crop.shape == (256, 256, 3) and reference.crop.dtype == np.uint8
    assert reference.quad.shape == (4, 2) and reference.landmarks.shape == (5, 2)
    assert reference.score > 0.5
    assert np.hypot(*(reference.landmarks[:2] - ASTRONAUT_EYES).T).max() < 4
    assert np.hypot(*(reference.landmarks[3:] - ASTRONAUT_MOUTH).T).max() < 5
    # quad order: top-left, bottom-left, bottom-right, top-right of an upright face
    tl, bl, br, tr = reference.quad
    assert tl[1] < bl[1] and tr[1] < br[1] and tl[0] < tr[0] and bl[0] < br[0]


@pytest.mark.parametrize("angle, scale, shift", [(0, 1.0, (0, 0)), (25, 0.6, (60, -40)), (-30, 1.4, (-50, 30)),
                                                 (65, 0.9, (20, 20)), (-120, 1.0, (0, 0)), (180, 0.8, (0, 0))])
def test_recovered_quad_matches_known_transform(reference, angle, scale, shift):
    photo, m = benchmark.transformed_astronaut(angle, scale, shift)
    expected = reference.quad @ m[:, :2].T + m[:, 2]
    found = faces.align(photo, max_faces=1)
    assert len(found) == 1
    assert corner_error(found[0].quad, expected) < CORNER_TOL_PX


def test_paste_inverts_align(astronaut, reference):
    restored = reference.paste(reference.crop, onto=astronaut)
    inside = cv2.fillConvexPoly(np.zeros(astronaut.shape[:2], np.uint8), np.round(reference.quad).astype(np.int32),
                                1).astype(bool)
    assert psnr(restored[~inside], astronaut[~inside]) == float("inf")  # outside: bit for bit
    assert psnr(restored[inside], astronaut[inside]) > 30  # inside: one resample there and back
    # a translated crop at another resolution (a 512 model) pastes back as well
    bigger = cv2.resize(reference.crop, (512, 512), interpolation=cv2.INTER_CUBIC)
    assert psnr(reference.paste(bigger, onto=astronaut)[inside], astronaut[inside]) > 28


def test_paste_has_no_seam(astronaut, reference):
    flat = np.full((256, 256, 3), 40, np.uint8)  # a very different "translation"
    out = reference.paste(flat, onto=astronaut).astype(np.float64)
    # along the quad border the result equals the photo (mask 0), so no hard edge appears there
    edge = np.round(reference.quad[0] + np.linspace(0, 1, 50)[:, None] * (reference.quad[3] - reference.quad[0]))
    edge = edge.astype(int)
    ok = (edge[:, 1] >= 0) & (edge[:, 0] >= 0)
    diff = np.abs(out[edge[ok, 1], edge[ok, 0]] - astronaut[edge[ok, 1], edge[ok, 0]])
    assert diff.max() < 12


def test_multiple_faces_largest_first_and_paste_all():
    photo, placed = benchmark.group_photo(4, seed=1)
    found = faces.align(photo)
    assert len(found) == placed
    sides = [f.side for f in found]
    assert sides == sorted(sides, reverse=True)
    assert [f.side for f in faces.align(photo, max_faces=2)] == pytest.approx(sides[:2], rel=1e-6)
    gray = [np.full_like(f.crop, 128) for f in found]
    out = faces.paste_all(photo, found, gray)
    covered = np.zeros(photo.shape[:2], np.uint8)
    for f in found:
        cv2.fillConvexPoly(covered, np.round(f.quad).astype(np.int32), 1)
    assert np.array_equal(out[covered == 0], photo[covered == 0])
    for f in found:  # each face's centre now holds its gray crop
        cx, cy = np.round(f.quad.mean(0)).astype(int)
        assert np.all(np.abs(out[cy, cx].astype(int) - 128) <= 1)
    with pytest.raises(InputError):
        faces.paste_all(photo, found, gray[:-1])


def test_fifty_faces():
    photo, placed = benchmark.group_photo(50)
    found = faces.align(photo)
    assert 45 <= len(found) <= placed


@pytest.mark.parametrize("kind", ["cat", "noise", "black", "one-pixel", "tiny-photo"])
def test_no_face_is_an_empty_list(kind):
    rng = np.random.default_rng(0)
    photo = {
        "cat": lambda: np.ascontiguousarray(skimage_data.chelsea()),
        "noise": lambda: rng.integers(0, 256, (240, 320, 3), dtype=np.uint8),
        "black": lambda: np.zeros((200, 200, 3), np.uint8),
        "one-pixel": lambda: np.full((1, 1, 3), 255, np.uint8),
        "tiny-photo": lambda: np.full((10, 7, 3), 255, np.uint8),
    }[kind]()
    assert faces.align(photo) == []


def test_tiny_faces(astronaut):
    head = astronaut[0:230, 110:340]
    canvas = np.full((480, 640, 3), 120, np.uint8)
    canvas[100:170, 300:370] = cv2.resize(head, (70, 70), interpolation=cv2.INTER_AREA)  # eyes ~13 px apart
    found = faces.align(canvas)
    assert len(found) == 1 and found[0].crop.shape == (256, 256, 3)
    canvas[:] = 120
    canvas[100:110, 300:310] = cv2.resize(head, (10, 10), interpolation=cv2.INTER_AREA)  # far too small
    assert faces.align(canvas) == []


def test_grayscale(astronaut, reference):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    from PIL import Image

    for photo in (gray, gray[:, :, None], Image.fromarray(gray)):
        found = faces.align(photo)
        assert len(found) == 1 and found[0].crop.shape == (256, 256, 3)
        assert corner_error(found[0].quad, reference.quad) < CORNER_TOL_PX


def test_exif_rotated_file(tmp_path, astronaut, reference):
    from PIL import Image

    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": store the pixels turned counter-clockwise
    Image.fromarray(np.ascontiguousarray(np.rot90(astronaut, 1))).save(path, quality=95, exif=exif)
    found = faces.align(path)
    assert len(found) == 1
    assert corner_error(found[0].quad, reference.quad) < CORNER_TOL_PX


def test_huge_photo_detects_on_a_downscaled_copy(astronaut, reference):
    factor = 10.0
    huge = cv2.resize(astronaut, (5120, 5120), interpolation=cv2.INTER_LINEAR)  # 26 megapixels
    found = faces.align(huge)
    assert len(found) == 1
    expected = (reference.quad + 0.5) * factor - 0.5
    assert corner_error(found[0].quad, expected) < CORNER_TOL_PX


def test_face_cut_by_the_border(astronaut, reference):
    cut = np.ascontiguousarray(astronaut[:, 200:])  # the border runs just left of the image-left eye
    found = faces.align(cut)
    assert len(found) == 1
    face = found[0]
    assert face.quad[:, 0].min() < -50  # the crop reaches far outside the photo: reflect-padded there
    assert corner_error(face.quad, reference.quad - [200, 0]) < 2 * CORNER_TOL_PX
    assert face.paste(face.crop, onto=cut).shape == cut.shape
    # cut through the middle of the face: too little left to find, and a clear empty answer
    assert faces.align(np.ascontiguousarray(astronaut[:, 235:])) == []


def test_bad_inputs_are_input_errors(astronaut, reference):
    with pytest.raises(InputError):
        faces.align(astronaut.astype(np.float32))
    with pytest.raises(InputError):
        faces.align(astronaut, size=4)
    with pytest.raises(InputError):
        faces.align(astronaut, max_faces=0)
    with pytest.raises(InputError):
        faces.align(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(InputError):
        faces.align("/no/such/photo.png")
    with pytest.raises(InputError):
        reference.paste(np.zeros((256, 200, 3), np.uint8), onto=astronaut)


def test_align_many_and_json(astronaut):
    batch = faces.align_many([astronaut, np.zeros((50, 50, 3), np.uint8)], size=128)
    assert [len(b) for b in batch] == [1, 0]
    record = batch[0][0].to_json()
    assert set(record) == {"quad", "landmarks", "score"} and len(record["quad"]) == 4


def test_benchmark_rows():
    rows = benchmark.bench_align(budget_s=0.0, group_faces=2)
    assert {r["task"] for r in rows} == {"align", "paste"}
    assert all(r["status"] == "ok" and r["median_ms"] > 0 for r in rows)


def test_pyramid_warp_matches_direct_warp_at_scale_one():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    m = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, 5.0]])
    direct = cv2.warpAffine(image, m, (32, 32), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REFLECT_101)
    np.testing.assert_array_equal(crop.Pyramid(image).warp(m, (32, 32), 1.0), direct)
