"""Public face API: find every face in a photo, crop it the CelebA-HQ way, and paste results back.

``align(photo)`` returns :class:`Face` objects (largest first); ``face.paste(translated, onto=photo)`` puts one
translated crop back; :func:`paste_all` puts many back at once (one output photo per frame of a translation).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from smoothgan.errors import InputError
from smoothgan.faces import mediapipe
from smoothgan.faces.crop import FEATHER, Pyramid, celebahq_quad, paste_quads, quad_side, warp_quad
from smoothgan.images import ImageInput, as_rgb

logger = logging.getLogger(__name__)

PhotoLike = ImageInput
MIN_SIDE = 16  # photos smaller than this (either side) cannot hold a detectable face


@dataclass
class Face:
    """One aligned face.

    ``crop``: uint8 ``[size, size, 3]``; ``quad``: float ``[4, 2]`` source-pixel corners of the crop, ordered
    top-left, bottom-left, bottom-right, top-right; ``landmarks``: float ``[5, 2]`` (image-left eye, image-right
    eye, nose tip, mouth left, mouth right; eyes are pupil centres); ``score``: the detector's confidence in
    [0, 1] on the face turned upright.
    """

    crop: np.ndarray
    quad: np.ndarray
    landmarks: np.ndarray
    score: float

    @property
    def size(self) -> int:
        """Side of the aligned crop in pixels."""
        return int(self.crop.shape[0])

    @property
    def side(self) -> float:
        """Side of the crop's quad in source pixels (the face's scale in the photo)."""
        return quad_side(self.quad)

    def paste(self, translated: np.ndarray, onto: np.ndarray, feather: float = FEATHER) -> np.ndarray:
        """A copy of ``onto`` with ``translated`` (a square uint8 crop of any size) warped back into this face's
        place and blended with a feathered edge; pixels outside the quad are unchanged."""
        return paste_quads(onto, [self.quad], [translated], feather)

    def to_json(self) -> dict:
        """Quad, landmarks and score as plain lists (what ``smoothgan align`` writes)."""
        return {
            "quad": np.round(self.quad, 3).tolist(),
            "landmarks": np.round(self.landmarks, 3).tolist(),
            "score": round(float(self.score), 4),
        }


def as_photo(photo: PhotoLike) -> np.ndarray:
    """A uint8 ``[H, W, 3]`` RGB array from a path, a PIL image or an array, with the input policy of every API
    (:func:`smoothgan.images.as_rgb`: EXIF orientation, grey replicated, transparency over white)."""
    return as_rgb(photo, "photo")


def _rotations(photo: np.ndarray) -> Iterable[tuple[int, np.ndarray]]:
    for k in (1, 3, 2):  # 90 deg counter-clockwise, clockwise, upside down
        yield k, np.ascontiguousarray(np.rot90(photo, k))


def _unrotate(points: np.ndarray, k: int, shape: tuple[int, int]) -> np.ndarray:
    """Map points in ``np.rot90(photo, k)`` back to ``photo`` (``shape``: the photo's H, W)."""
    h, w = shape
    p = np.asarray(points, dtype=np.float64)
    x, y = p[..., 0], p[..., 1]
    if k == 1:  # rotated[i, j] = photo[j, w - 1 - i]
        return np.stack([w - 1 - y, x], axis=-1)
    if k == 3:  # rotated[i, j] = photo[h - 1 - j, i]
        return np.stack([y, h - 1 - x], axis=-1)
    return np.stack([w - 1 - x, h - 1 - y], axis=-1)


def align(photo: PhotoLike, size: int = 256, max_faces: int | None = None, min_score: float = mediapipe.MIN_SCORE,
          rotations: bool = True) -> list[Face]:
    """Every face in ``photo`` as a CelebA-HQ aligned ``size x size`` crop, largest face first.

    ``photo``: a path or an array (see :func:`as_photo`). ``max_faces`` keeps the largest N. When nothing is
    found upright and ``rotations`` is on, the photo is also searched turned by 90, 270 and 180 degrees (the
    detector itself covers tilts up to about 45 degrees; the landmarks handle any angle). Returns ``[]`` when
    there is no face, including for photos too small to hold one.
    """
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise InputError(f"size must be an integer of at least 8, got {size!r}")
    if max_faces is not None and max_faces < 1:
        raise InputError(f"max_faces must be at least 1, got {max_faces}")
    image = as_photo(photo)
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        logger.info("photo %dx%d is too small to hold a face", w, h)
        return []
    faces = _align_dets(image, mediapipe.detect(image, min_score=min_score), size, max_faces)
    if not faces and rotations:
        for k, turned in _rotations(image):
            dets = mediapipe.detect(turned, min_score=min_score)
            for d in dets:
                d.center = _unrotate(d.center, k, (h, w))
                d.keypoints = _unrotate(d.keypoints, k, (h, w))
                d.size = d.size[::-1].copy()
            faces = _align_dets(image, dets, size, max_faces)
            if faces:
                logger.info("found %d face(s) with the photo turned by %d degrees", len(faces), 90 * k)
                break
    faces = _dedupe(faces)
    faces.sort(key=lambda f: -f.side)
    return faces[:max_faces] if max_faces is not None else faces


def _align_dets(image: np.ndarray, dets: list[mediapipe.Detection], size: int,
                max_faces: int | None) -> list[Face]:
    """Landmarks, quad and crop for each detection, largest detections first."""
    pyramid = Pyramid(image)
    faces: list[Face] = []
    for det in sorted(dets, key=lambda d: -float(max(d.size))):
        found = mediapipe.landmarks(pyramid, det)
        if found is None:
            continue
        five, score = found
        quad = celebahq_quad(five)
        faces.append(Face(warp_quad(pyramid, quad, size), quad, five, score))
        if max_faces is not None and len(faces) >= 2 * max_faces + 2:
            break  # enough candidates: the largest N are among them
    return faces


def _dedupe(faces: list[Face]) -> list[Face]:
    """Drop faces whose eyes land on an already kept face's eyes (two detections of one face)."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        span = float(np.hypot(*(face.landmarks[1] - face.landmarks[0])))
        if all(np.hypot(*(face.landmarks[:2] - k.landmarks[:2]).mean(0)) > 0.5 * span for k in kept):
            kept.append(face)
    return kept


def align_many(photos: Sequence[PhotoLike], size: int = 256, max_faces: int | None = None) -> list[list[Face]]:
    """:func:`align` for a batch of photos: one list of faces per photo (possibly empty), in input order."""
    return [align(p, size=size, max_faces=max_faces) for p in photos]


def paste_all(photo: PhotoLike, faces: Sequence[Face], crops: Sequence[np.ndarray],
              feather: float = FEATHER) -> np.ndarray:
    """One full-size photo with ``crops[i]`` (translated, any square size) pasted into ``faces[i]``'s place.

    For an interpolation with N frames, call it once per frame with that frame's crop of every face.
    """
    return paste_quads(as_photo(photo), [f.quad for f in faces], list(crops), feather)
