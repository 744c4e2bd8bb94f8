"""The CelebA-HQ crop: five landmarks -> oriented square (quad), quad -> crop, and crop -> back into the photo.

Coordinates: pixel centres at integers, x right, y down (OpenCV's convention). A quad is ``float [4, 2]``: the
crop's top-left, bottom-left, bottom-right and top-right *outer corners* in source pixels, the order of
Progressive GAN's ``create_celebahq`` and FFHQ's ``recreate_aligned_images`` (PIL ``QUAD`` order).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from smoothgan.errors import InputError

# Fraction of the crop side over which the paste-back mask ramps from 0 (crop border) to 1.
FEATHER = 0.1


def _rot90(v: np.ndarray) -> np.ndarray:
    return np.array([-v[1], v[0]], dtype=np.float64)


def celebahq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The CelebA-HQ crop quad from five points: image-left eye, image-right eye, nose, mouth left, mouth right.

    Same constants as Progressive GAN's ``create_celebahq`` and FFHQ's script: the side is
    ``2 * max(2.0 |eye_to_eye|, 1.8 |eye_to_mouth|)``, centred 0.1 ``eye_to_mouth`` below the eye midpoint and
    turned so the eyes are level. (``create_celebahq`` also adds 0.5 to CelebA's integer landmark coordinates; our
    landmarks are already continuous, so that half-pixel shift is not applied, as in FFHQ's script.) The nose is
    not used. Returns ``float64 [4, 2]`` ordered top-left, bottom-left, bottom-right, top-right.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (5, 2) or not np.all(np.isfinite(lm)):
        raise InputError(f"landmarks must be 5 finite (x, y) points, got shape {list(lm.shape)}")
    eye_left, eye_right, _, mouth_left, mouth_right = lm
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (mouth_left + mouth_right) * 0.5 - eye_avg
    x = eye_to_eye - _rot90(eye_to_mouth)
    norm = float(np.hypot(*x))
    if norm == 0.0:
        raise InputError("degenerate landmarks: eyes and mouth coincide")
    x = x / norm * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = _rot90(x)
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def quad_side(quad: np.ndarray) -> float:
    """Side length of a (square) quad in source pixels."""
    q = np.asarray(quad, dtype=np.float64)
    return float(np.hypot(*(q[3] - q[0])))


def crop_to_source(quad: np.ndarray, size: int) -> np.ndarray:
    """Affine ``[2, 3]`` mapping crop pixel indices (size x size) to source pixel coordinates.

    Crop pixel ``(u, v)`` has its centre at ``(u + 0.5, v + 0.5) / size`` of the way along the quad's top and
    left edges, so the quad's corners are the crop's outer corners.
    """
    q = np.asarray(quad, dtype=np.float64)
    ex = (q[3] - q[0]) / size  # source step per crop column
    ey = (q[1] - q[0]) / size  # source step per crop row
    origin = q[0] + 0.5 * (ex + ey)
    return np.array([[ex[0], ey[0], origin[0]], [ex[1], ey[1], origin[1]]], dtype=np.float64)


def source_to_crop(quad: np.ndarray, size: int) -> np.ndarray:
    """Inverse of :func:`crop_to_source`: source pixel coordinates -> crop pixel indices."""
    return cv2.invertAffineTransform(crop_to_source(quad, size))


class Pyramid:
    """Power-of-two downscaled copies of one photo, built on demand, so every warp reads from a level that is
    at most 2x larger than the output (antialiasing for shrinking warps)."""

    def __init__(self, image: np.ndarray) -> None:
        self.levels: list[np.ndarray] = [image]

    def level_for(self, scale: float) -> int:
        """Deepest level ``k`` such that ``scale / 2**k >= 1`` (``scale``: source pixels per output pixel)."""
        k = 0
        while scale / 2 ** (k + 1) >= 1.0 and min(self.levels[0].shape[:2]) >> (k + 1) >= 8:
            k += 1
        while len(self.levels) <= k:
            self.levels.append(cv2.pyrDown(self.levels[-1]))
        return k

    def warp(self, to_source: np.ndarray, size: tuple[int, int], scale: float,
             border: int = cv2.BORDER_REFLECT_101) -> np.ndarray:
        """Warp with ``to_source`` (output pixel -> level-0 source pixel, ``[2, 3]``) to ``size`` (w, h).

        ``scale`` is source pixels per output pixel; shrinking reads from the matching pyramid level and then
        supersamples 2x with bilinear interpolation and area-averages, so there is no aliasing.
        """
        k = self.level_for(scale)
        level = self.levels[k]
        m = np.asarray(to_source, dtype=np.float64).copy()
        # level-k coordinates: x_k = (x_0 + 0.5) / 2**k - 0.5 (pyrDown halves around pixel edges)
        m /= 2 ** k
        m[:, 2] += 0.5 / 2 ** k - 0.5
        w, h = size
        ratio = scale / 2 ** k
        if ratio > 1.0:
            sup = np.array([[0.5, 0.0, -0.25], [0.0, 0.5, -0.25]])  # supersampled pixel -> output pixel
            m2 = np.hstack([m[:, :2] @ sup[:, :2], (m[:, :2] @ sup[:, 2] + m[:, 2])[:, None]])
            big = cv2.warpAffine(level, m2, (2 * w, 2 * h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                 borderMode=border)
            return cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)
        return cv2.warpAffine(level, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border)


def warp_quad(image: np.ndarray | Pyramid, quad: np.ndarray, size: int) -> np.ndarray:
    """Crop ``quad`` from the photo into a ``size x size`` uint8 image (antialiased, reflect padding outside)."""
    pyramid = image if isinstance(image, Pyramid) else Pyramid(image)
    return pyramid.warp(crop_to_source(quad, size), (size, size), quad_side(quad) / size)


def feather_mask(size: int, feather: float = FEATHER) -> np.ndarray:
    """``float32 [size, size]`` paste-back weight: 1 in the middle, a smooth ramp to 0 at the crop border."""
    ramp = max(feather * size, 1.0)
    d = np.minimum(np.arange(size, dtype=np.float32) + 0.5, size - 0.5 - np.arange(size, dtype=np.float32))
    t = np.clip(d / ramp, 0.0, 1.0)
    t = t * t * (3.0 - 2.0 * t)  # smoothstep: no visible kink where the ramp ends
    return np.minimum(t[:, None], t[None, :])


def _check_photo(photo: np.ndarray) -> np.ndarray:
    if not isinstance(photo, np.ndarray) or photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        desc = f"{photo.dtype} {list(photo.shape)}" if isinstance(photo, np.ndarray) else type(photo).__name__
        raise InputError(f"photo must be a uint8 [H, W, 3] RGB array, got {desc}")
    return photo


def _check_crop(crop: np.ndarray) -> np.ndarray:
    if (not isinstance(crop, np.ndarray) or crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3
            or crop.shape[0] != crop.shape[1] or crop.shape[0] < 2):
        desc = f"{crop.dtype} {list(crop.shape)}" if isinstance(crop, np.ndarray) else type(crop).__name__
        raise InputError(f"a translated face must be a square uint8 [S, S, 3] RGB array, got {desc}")
    return crop


def paste_quads(photo: np.ndarray, quads: Sequence[np.ndarray], crops: Sequence[np.ndarray],
                feather: float = FEATHER) -> np.ndarray:
    """Warp each square crop back onto its quad in a copy of ``photo`` and blend it in with a feathered mask.

    Crops may have any square size (a model's output size); pixels outside every quad are returned unchanged,
    bit for bit. Later crops are blended over earlier ones where faces overlap.
    """
    out = _check_photo(photo).copy()
    if len(quads) != len(crops):
        raise InputError(f"{len(crops)} translated face(s) for {len(quads)} face(s)")
    height, width = out.shape[:2]
    for quad, crop in zip(quads, crops):
        crop = _check_crop(crop)
        q = np.asarray(quad, dtype=np.float64)
        x0, y0 = np.floor(q.min(axis=0)).astype(int)
        x1, y1 = np.ceil(q.max(axis=0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x1 <= x0 or y1 <= y0:
            continue  # quad entirely outside the photo
        side = quad_side(q)
        n = crop.shape[0]
        if side < n:  # the face is smaller in the photo than the crop: area-shrink first (antialiasing)
            n = max(int(round(side)), 2)
            crop = cv2.resize(crop, (n, n), interpolation=cv2.INTER_AREA)
        to_crop = source_to_crop(q, n)
        to_crop[:, 2] += to_crop[:, :2] @ np.array([x0, y0], dtype=np.float64)  # box pixel -> crop pixel
        box = (x1 - x0, y1 - y0)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP  # to_crop maps output (box) pixels to crop pixels
        warped = cv2.warpAffine(crop, to_crop, box, flags=flags, borderMode=cv2.BORDER_REPLICATE)
        mask = cv2.warpAffine(feather_mask(n, feather), to_crop, box, flags=flags, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0.0)
        region = out[y0:y1, x0:x1]
        inside = mask > 0.0
        m = mask[inside][:, None]
        blended = region[inside].astype(np.float32) * (1.0 - m) + warped[inside].astype(np.float32) * m
        region[inside] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out
