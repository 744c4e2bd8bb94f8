"""Face-pipeline measurements: speed (detect + landmarks + warp per photo, paste-back) and crop accuracy.

Both use scikit-image's bundled public-domain photos (``astronaut``: one face; ``chelsea``, ``coffee``: no
face), so they run offline. Rows are plain dicts, ready for ``smoothgan bench`` or a JSON file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import cv2
import numpy as np

from smoothgan.errors import InputError
from smoothgan.faces.aligner import align, paste_all

logger = logging.getLogger(__name__)


def _skimage_photo(name: str) -> np.ndarray:
    try:
        from skimage import data
    except ImportError as exc:
        raise InputError("the face benchmark needs scikit-image's sample photos: pip install scikit-image") from exc
    return np.ascontiguousarray(getattr(data, name)())


def group_photo(faces: int = 4, seed: int = 0) -> tuple[np.ndarray, int]:
    """A 1280x720 composite with ``faces`` copies of the astronaut's head at several scales over a cat/coffee
    background; returns (photo, number of faces placed)."""
    rng = np.random.default_rng(seed)
    astronaut = _skimage_photo("astronaut")
    head = astronaut[0:230, 110:340]  # the face with hair and neck
    canvas = cv2.resize(_skimage_photo("chelsea"), (1280, 720), interpolation=cv2.INTER_LINEAR)
    cols = int(np.ceil(np.sqrt(faces * 16 / 9)))
    rows = int(np.ceil(faces / cols))
    cell_w, cell_h = 1280 // cols, 720 // rows
    placed = 0
    for k in range(faces):
        r, c = divmod(k, cols)
        side = int(min(cell_w, cell_h) * rng.uniform(0.7, 0.95))
        patch = cv2.resize(head, (side, side), interpolation=cv2.INTER_AREA)
        y = r * cell_h + (cell_h - side) // 2
        x = c * cell_w + (cell_w - side) // 2
        canvas[y:y + side, x:x + side] = patch
        placed += 1
    return canvas, placed


def _median_ms(fn: Callable[[], object], budget_s: float, min_runs: int = 3) -> tuple[float, float, float, int]:
    fn()  # warm-up (model loading, first-call allocations)
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < budget_s:
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
        if len(times) >= 200:
            break
    p10, p50, p90 = np.percentile(times, [10, 50, 90])
    return float(p50), float(p10), float(p90), len(times)


def bench_align(size: int = 256, budget_s: float = 2.0, group_faces: int = 4) -> list[dict]:
    """Median/p10/p90 ms of ``align`` (detect + landmarks + warp) and of ``paste_all`` per photo.

    Photos: the astronaut (512x512, one face) and a 1280x720 composite with ``group_faces`` faces.
    """
    photos = {"astronaut-512x512": (_skimage_photo("astronaut"), 1)}
    group, n = group_photo(group_faces)
    photos[f"group-1280x720-{n}faces"] = (group, n)
    rows = []
    for name, (photo, expected) in photos.items():
        faces = align(photo, size=size)
        p50, p10, p90, runs = _median_ms(lambda: align(photo, size=size), budget_s)
        rows.append({"task": "align", "photo": name, "faces": len(faces), "expected_faces": expected,
                     "size": size, "median_ms": round(p50, 2), "p10_ms": round(p10, 2), "p90_ms": round(p90, 2),
                     "ms_per_face": round(p50 / max(len(faces), 1), 2), "runs": runs,
                     "status": "ok" if len(faces) == expected else "wrong face count"})
        crops = [f.crop for f in faces]
        p50, p10, p90, runs = _median_ms(lambda: paste_all(photo, faces, crops), budget_s)
        rows.append({"task": "paste", "photo": name, "faces": len(faces), "expected_faces": expected,
                     "size": size, "median_ms": round(p50, 2), "p10_ms": round(p10, 2), "p90_ms": round(p90, 2),
                     "ms_per_face": round(p50 / max(len(faces), 1), 2), "runs": runs, "status": "ok"})
    return rows


def transformed_astronaut(angle: float, scale: float, shift: tuple[float, float],
                          canvas: tuple[int, int] = (640, 480)) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut photo turned by ``angle`` degrees, scaled and shifted into a ``canvas`` (w, h) over a
    cluttered background; returns (photo, ``[2, 3]`` affine from astronaut pixels to photo pixels)."""
    astronaut = _skimage_photo("astronaut")
    w, h = canvas
    face_centre = np.array([225.0, 120.0])
    m = cv2.getRotationMatrix2D((float(face_centre[0]), float(face_centre[1])), angle, scale)
    m[:, 2] += np.array([w / 2 + shift[0], h / 2 + shift[1]]) - face_centre
    background = cv2.resize(_skimage_photo("coffee"), (w, h), interpolation=cv2.INTER_LINEAR)
    warped = cv2.warpAffine(astronaut, m, (w, h), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones(astronaut.shape[:2], np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0
    photo = np.where(inside[:, :, None], warped, background)
    return photo, m


def accuracy(size: int = 256, count: int = 24, seed: int = 0, max_angle: float = 30.0) -> dict:
    """Median and p90 corner error (pixels of the ``size`` crop) of the quad found in transformed astronaut
    photos, against the quad found in the original mapped through the known transform.

    This measures how consistently the crop follows the face under rotation (+-``max_angle``), scale (0.5-1.5)
    and offset; it cannot measure bias shared by all photos (there is no hand-labelled ground truth here).
    """
    rng = np.random.default_rng(seed)
    reference = align(_skimage_photo("astronaut"), size=size)
    if not reference:
        raise InputError("no face found in the astronaut photo")
    ref_quad = reference[0].quad
    errors, misses, times = [], 0, []
    for _ in range(count):
        angle = float(rng.uniform(-max_angle, max_angle))
        scale = float(rng.uniform(0.5, 1.5))
        shift = (float(rng.uniform(-80, 80)), float(rng.uniform(-60, 60)))
        photo, m = transformed_astronaut(angle, scale, shift)
        expected = ref_quad @ m[:, :2].T + m[:, 2]
        t = time.perf_counter()
        faces = align(photo, size=size, max_faces=1)
        times.append((time.perf_counter() - t) * 1000)
        if not faces:
            misses += 1
            continue
        side = float(np.hypot(*(expected[3] - expected[0])))
        errors.extend((np.hypot(*(faces[0].quad - expected).T) * size / side).tolist())  # 4 corners
    return {"task": "align-accuracy", "photos": count, "found": count - misses,
            "median_corner_error_px": round(float(np.median(errors)), 2) if errors else None,
            "p90_corner_error_px": round(float(np.percentile(errors, 90)), 2) if errors else None,
            "median_ms_per_photo": round(float(np.median(times)), 1), "size": size,
            "transforms": f"rotation +-{max_angle:g} deg, scale 0.5-1.5, offset, 640x480 cluttered canvas"}
