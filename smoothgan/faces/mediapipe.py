"""MediaPipe face pipeline on the shipped ``.tflite`` files: BlazeFace detection, face mesh, iris.

Written from MediaPipe's published graph settings (facts only): SSD anchors with offset 0.5 and unit size
(short range: 128 px input, strides 8, 16, 16, 16, two anchors per layer, 896 anchors; full range: 192 px input,
stride 4, one anchor, 2304 anchors), box/keypoint regression divided by the input size, sigmoid scores,
weighted non-maximum suppression (IoU 0.3). Detector input in [-1, 1]; mesh and iris input in [0, 1]. Face-mesh
ROI: a square 1.5x the longer side of the face box, turned so the eye line is level. Iris ROI: a square 2.3x
the eye-corner span; the model sees left eyes only, so the other eye is mirrored. Landmark indices (468-point
mesh): eye corners 33/133 (image-left eye of an upright face) and 362/263, mouth corners 61/291, nose tip 1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from smoothgan.faces import engine
from smoothgan.faces.crop import Pyramid

logger = logging.getLogger(__name__)

NMS_IOU = 0.3
MIN_SCORE = 0.5
MESH_SCALE = 1.5
IRIS_SCALE = 2.3
UPRIGHT_SCORE = 0.9  # detector score on the de-rotated crop above which no other orientation is tried
# A detection whose region, turned upright, scores below this is dropped. Measured on transformed astronaut
# photos (+-180 deg, scale 0.5-1.5): true faces scored 0.88 or more, false detections in clutter 0.66 or less.
UPRIGHT_MIN = 0.75
MESH_PASSES = 4  # face-mesh refinements after the detector's ROI (usually one is enough)
MIN_FACE_FLAG = 0.5  # face-mesh presence probability below which a detection is dropped as a false positive
DETECT_MAX_SIDE = 1024  # detection runs on a copy no larger than this (landmarks use the full photo)
TILE_OVERLAP = 0.25  # tiles of the full-range detector overlap by this fraction, so no face is cut by all
MAX_TILES = 40

LEFT_EYE_CORNERS = (33, 133)  # image-left eye of an upright face (MediaPipe's unmirrored eye)
RIGHT_EYE_CORNERS = (362, 263)  # mirrored before the iris model
MOUTH_CORNERS = (61, 291)
NOSE_TIP = 1


@dataclass(frozen=True)
class _DetectorSpec:
    file: str
    size: int
    strides: tuple[int, ...]
    anchors_per_layer: int


SHORT_RANGE = _DetectorSpec(engine.DETECTOR_SHORT, 128, (8, 16, 16, 16), 2)
FULL_RANGE = _DetectorSpec(engine.DETECTOR_FULL, 192, (4,), 1)


@dataclass
class Detection:
    """One BlazeFace detection in source pixels: box centre and size, six keypoints, score.

    Keypoints: image-left eye, image-right eye, nose tip, mouth centre, image-left ear, image-right ear (of an
    upright face).
    """

    center: np.ndarray  # [2]
    size: np.ndarray  # [2] (w, h)
    keypoints: np.ndarray  # [6, 2]
    score: float


@lru_cache(maxsize=None)
def anchors(spec: _DetectorSpec) -> np.ndarray:
    """``float32 [N, 2]`` anchor centres, normalised to the input, in the model's output order."""
    centres = []
    i = 0
    while i < len(spec.strides):
        stride = spec.strides[i]
        same = 0
        while i < len(spec.strides) and spec.strides[i] == stride:  # layers sharing a feature map
            same += 1
            i += 1
        cells = int(np.ceil(spec.size / stride))
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, same * spec.anchors_per_layer, axis=0))
    return np.concatenate(centres).astype(np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(dets: list[Detection], iou: float = NMS_IOU) -> list[Detection]:
    """MediaPipe's weighted suppression: overlapping detections are merged, weighted by score."""
    if not dets:
        return []
    order = sorted(range(len(dets)), key=lambda k: -dets[k].score)
    boxes = np.array([np.concatenate([d.center - d.size / 2, d.center + d.size / 2]) for d in dets])
    remaining = np.array(order)
    merged: list[Detection] = []
    while remaining.size:
        top = remaining[0]
        overlap = _iou(boxes[top], boxes[remaining]) > iou
        group = remaining[overlap]
        w = np.array([dets[k].score for k in group])[:, None]
        box = (boxes[group] * w).sum(0) / w.sum()
        kps = (np.stack([dets[k].keypoints for k in group]) * w[:, :, None]).sum(0) / w.sum()
        merged.append(Detection((box[:2] + box[2:]) / 2, box[2:] - box[:2], kps, dets[top].score))
        remaining = remaining[~overlap]
    return merged


def _run_detector(spec: _DetectorSpec, image: np.ndarray, offset: tuple[float, float] = (0.0, 0.0),
                  min_score: float = MIN_SCORE) -> list[Detection]:
    """Detect on one (sub)image, letterboxed into the model's square input; results in source pixels."""
    h, w = image.shape[:2]
    side = max(h, w)
    n = spec.size
    scale = n / side
    rw, rh = max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    canvas = np.zeros((n, n, 3), np.float32)
    ox, oy = (n - rw) // 2, (n - rh) // 2
    canvas[oy:oy + rh, ox:ox + rw] = cv2.resize(image, (rw, rh), interpolation=interp).astype(np.float32)
    outputs = engine.model(spec.file).run(canvas / 127.5 - 1.0)
    sx, sy = rw / w, rh / h  # input pixels per source pixel (per axis, after rounding)
    dets = _decode(spec, outputs, min_score)
    for d in dets:  # input pixel edge coordinates -> source pixel centres
        d.center = (d.center - [ox, oy]) / [sx, sy] - 0.5 + offset
        d.keypoints = (d.keypoints - [ox, oy]) / [sx, sy] - 0.5 + offset
        d.size = d.size / [sx, sy]
    return dets


def _tiles(h: int, w: int) -> list[tuple[int, int, int]]:
    """Overlapping square tiles ``(x, y, side)``: half, then a quarter of the longer side, down to 192 px."""
    out = set()
    tile = max(h, w) // 2
    while tile >= FULL_RANGE.size:
        step = max(int(tile * (1 - TILE_OVERLAP)), 1)
        for y in range(0, max(h - tile, 0) + step, step):
            for x in range(0, max(w - tile, 0) + step, step):
                out.add((min(x, max(w - tile, 0)), min(y, max(h - tile, 0)), tile))
        tile //= 2
        if len(out) > MAX_TILES:
            break
    return sorted(out)


def detect(image: np.ndarray, min_score: float = MIN_SCORE, tiles: bool = True) -> list[Detection]:
    """All faces in a uint8 RGB photo, in its pixel coordinates.

    Detection runs on a copy whose longer side is at most :data:`DETECT_MAX_SIDE` (huge photos cost no more
    than a normal one): both detectors on the whole copy, the full-range one also on overlapping tiles so
    small faces in group photos are found.
    """
    h, w = image.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
    small = image if scale == 1.0 else cv2.resize(
        image, (max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    dets = _run_detector(SHORT_RANGE, small, min_score=min_score)
    dets += _run_detector(FULL_RANGE, small, min_score=min_score)
    if tiles:
        for x, y, t in _tiles(sh, sw):
            dets += _run_detector(FULL_RANGE, small[y:y + t, x:x + t], offset=(x, y), min_score=min_score)
    dets = weighted_nms(dets)
    fx, fy = w / sw, h / sh
    for d in dets:  # copy pixels -> photo pixels (pixel centres)
        d.center = (d.center + 0.5) * [fx, fy] - 0.5
        d.size = d.size * [fx, fy]
        d.keypoints = (d.keypoints + 0.5) * [fx, fy] - 0.5
    return dets


# ----------------------------------------------------------------------------------------------------------
# landmarks


def _roi_matrix(center: np.ndarray, side: float, angle: float, n: int) -> np.ndarray:
    """``[2, 3]``: ROI input pixel (n x n, pixel centres) -> source pixel, square ``side`` turned by ``angle``."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]]) * (side / n)
    origin = center + rot @ (np.array([0.5, 0.5]) - n / 2)
    return np.hstack([rot, origin[:, None]])


def _to_source(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ROI input coordinates (edge convention, as the models output them) to source pixels."""
    return (points - 0.5) @ m[:, :2].T + m[:, 2]


def _mesh(pyramid: Pyramid, center: np.ndarray, side: float, angle: float) -> tuple[np.ndarray, float]:
    """468 face-mesh points (x, y in source pixels) and the face-presence probability for one ROI."""
    model = engine.model(engine.FACE_MESH)
    n = model.input_size
    m = _roi_matrix(center, side, angle, n)
    roi = pyramid.warp(m, (n, n), side / n, border=cv2.BORDER_CONSTANT)
    points, flag = sorted(model.run(roi.astype(np.float32) / 255.0), key=lambda o: -o.size)
    xy = points.reshape(-1, 3)[:, :2]
    return _to_source(m, xy), float(1.0 / (1.0 + np.exp(-np.clip(flag[0], -100, 100))))


def _iris(pyramid: Pyramid, corner_a: np.ndarray, corner_b: np.ndarray, mirror: bool) -> np.ndarray:
    """Iris centre in source pixels for the eye between two corners (falls back to the corners' midpoint)."""
    model = engine.model(engine.IRIS)
    n = model.input_size
    span = corner_b - corner_a
    width = float(np.hypot(*span))
    mid = (corner_a + corner_b) / 2
    if width < 1.0:
        return mid
    side = width * IRIS_SCALE
    m = _roi_matrix(mid, side, float(np.arctan2(span[1], span[0])), n)
    roi = pyramid.warp(m, (n, n), side / n, border=cv2.BORDER_REPLICATE).astype(np.float32) / 255.0
    if mirror:
        roi = roi[:, ::-1]
    iris = next(o for o in model.run(roi) if o.size == 15).reshape(5, 3)[:, :2].copy()
    if mirror:
        iris[:, 0] = n - iris[:, 0]
    centre = _to_source(m, iris[:1])[0]
    if np.hypot(*(centre - mid)) > 0.35 * width:  # a closed or occluded eye: the model's guess is off
        return mid
    return centre


def _upright(pyramid: Pyramid, center: np.ndarray, side: float,
             angle: float) -> tuple[np.ndarray, float, float, float] | None:
    """(centre, side, angle, score) of the face-mesh ROI at which the face in this region stands upright, and the
    detector's score for it there; ``None`` when no turn shows an upright face scoring :data:`UPRIGHT_MIN`.

    The detector's eye keypoints give the tilt but are unreliable past about 60 degrees, and the face mesh's
    presence score also accepts upside-down faces. So the ROI is turned by 0, 90, -90 and 180 degrees and the
    short-range detector runs on each crop; a turn counts only if its central detection has level eyes (within
    50 degrees) with the mouth below them, and the best-scoring such turn wins. Its box and eye line, found on
    the face seen upright and at a good scale, also give a tighter ROI than the first detection's (the face
    mesh converges slowly from a loose one).
    """
    spec = SHORT_RANGE
    n = spec.size
    best, best_score = None, -1.0
    for turn in (0.0, np.pi / 2, -np.pi / 2, np.pi):
        m = _roi_matrix(center, side, angle + turn, n)
        crop = pyramid.warp(m, (n, n), side / n, border=cv2.BORDER_CONSTANT)
        for det in _decode(spec, engine.model(spec.file).run(crop.astype(np.float32) / 127.5 - 1.0), UPRIGHT_MIN):
            if np.hypot(*(det.center / n - 0.5)) > 0.25:
                continue  # another face, or a fragment, off the ROI's centre
            eye_l, eye_r, _, mouth = det.keypoints[:4]
            tilt = float(np.arctan2(eye_r[1] - eye_l[1], eye_r[0] - eye_l[0]))
            down = mouth - (eye_l + eye_r) / 2
            if abs(tilt) > np.radians(50) or down @ np.array([-np.sin(tilt), np.cos(tilt)]) <= 0:
                continue
            if det.score > best_score:
                roi_side = float(max(det.size)) * side / n * MESH_SCALE
                best, best_score = (_to_source(m, det.center[None])[0], roi_side, angle + turn + tilt), det.score
        if best_score >= UPRIGHT_SCORE:
            break  # clearly upright already: skip the other turns
    return None if best is None else (*best, best_score)


def _decode(spec: _DetectorSpec, outputs: list[np.ndarray], min_score: float) -> list[Detection]:
    """Raw detector outputs -> detections in input pixels (edge coordinates), before suppression."""
    a = anchors(spec)
    count, n = a.shape[0], spec.size
    raw = next(o for o in outputs if o.size == count * 16).reshape(count, 16)
    logits = next(o for o in outputs if o.size == count).reshape(count)
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -80.0, 80.0)))
    keep = np.nonzero(scores >= min_score)[0]
    reg = raw[keep] / n
    return [Detection((reg[k, :2] + a[i]) * n, reg[k, 2:4] * n, (reg[k, 4:].reshape(6, 2) + a[i]) * n,
                      float(scores[i])) for k, i in enumerate(keep)]


def _mesh_roi(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """ROI (centre, side, angle) around a face mesh: eye line level, 1.5x the mesh's extent."""
    a, b = points[LEFT_EYE_CORNERS[0]], points[RIGHT_EYE_CORNERS[1]]
    angle = float(np.arctan2(b[1] - a[1], b[0] - a[0]))
    c, s = np.cos(angle), np.sin(angle)
    local = points @ np.array([[c, -s], [s, c]])  # into the face's upright frame
    lo, hi = local.min(0), local.max(0)
    centre = np.array([[c, -s], [s, c]]) @ ((lo + hi) / 2)
    return centre, float(max(hi - lo) * MESH_SCALE), angle


def landmarks(pyramid: Pyramid, det: Detection) -> tuple[np.ndarray, float] | None:
    """Five points (image-left eye, image-right eye, nose, mouth left, mouth right) and a confidence (the
    detector's score on the face turned upright) for one detection.

    Face mesh on the detector's ROI turned upright (:func:`_upright`), then on the mesh's own ROI until that
    settles, then the iris model for the pupils. Returns ``None`` when the face
    mesh says there is no face or no upright face is found.
    """
    eye_l, eye_r = det.keypoints[0], det.keypoints[1]
    angle = float(np.arctan2(eye_r[1] - eye_l[1], eye_r[0] - eye_l[0]))
    side = float(max(det.size)) * MESH_SCALE
    upright = _upright(pyramid, det.center, side, angle)
    if upright is None:
        logger.info("dropped a detection (score %.2f): no upright face in its region", det.score)
        return None
    centre, side, angle, score = upright
    points, presence = _mesh(pyramid, centre, side, angle)
    if presence < MIN_FACE_FLAG:
        logger.info("dropped a detection (score %.2f): face mesh presence %.2f", det.score, presence)
        return None
    for _ in range(MESH_PASSES):  # re-centre on the mesh itself until the ROI settles
        new_centre, new_side, new_angle = _mesh_roi(points)
        points, presence = _mesh(pyramid, new_centre, new_side, new_angle)
        settled = (abs((new_angle - angle + np.pi) % (2 * np.pi) - np.pi) < np.radians(2)
                   and abs(new_side - side) < 0.02 * side and np.hypot(*(new_centre - centre)) < 0.02 * side)
        centre, side, angle = new_centre, new_side, new_angle
        if settled:
            break
    left = _iris(pyramid, points[LEFT_EYE_CORNERS[0]], points[LEFT_EYE_CORNERS[1]], mirror=False)
    right = _iris(pyramid, points[RIGHT_EYE_CORNERS[0]], points[RIGHT_EYE_CORNERS[1]], mirror=True)
    five = np.stack([left, right, points[NOSE_TIP], points[MOUTH_CORNERS[0]], points[MOUTH_CORNERS[1]]])
    return five, score
