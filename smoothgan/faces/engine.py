"""The shipped face models and the small engine that runs them (LiteRT, the TensorFlow Lite runtime).

The models are MediaPipe's ``.tflite`` files (Apache-2.0; source, version and sha256 in
``smoothgan/assets/faces/NOTICE.md``). They run on ``ai-edge-litert``: measured on this project's 2-core CPU
machine it is about 4x faster than the same graphs converted to ONNX and run on onnxruntime, and it needs no
conversion step that could drift from the published weights.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np

from smoothgan.errors import BackendError

logger = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent.parent / "assets" / "faces"
DETECTOR_SHORT = "face_detection_short_range.tflite"  # 128x128 input, faces filling much of the frame
DETECTOR_FULL = "face_detection_full_range.tflite"  # 192x192 input, small faces too
FACE_MESH = "face_landmark.tflite"  # 192x192 input, 468 landmarks + face flag
IRIS = "iris_landmark.tflite"  # 64x64 input, 71 eye contour points + 5 iris points


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the process's stderr file descriptor (C++ logging) for the duration of the block."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded interpreters, some test runners)
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class TfliteModel:
    """One ``.tflite`` graph with a single float32 NHWC input; ``run`` returns its outputs in graph order.

    A LiteRT interpreter is not re-entrant, so calls are serialised with a lock; the instance is shared per
    process (see :func:`model`).
    """

    def __init__(self, path: Path, num_threads: int | None = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:  # a broken install: the package is a dependency
            raise BackendError("face models need the 'ai-edge-litert' package: pip install ai-edge-litert") from exc
        if not path.is_file():
            raise BackendError(f"face model file missing from the installation: {path}")
        threads = num_threads or min(4, os.cpu_count() or 1)
        self.path = path
        self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
        with _quiet_stderr():  # LiteRT prints an INFO line about its CPU delegate straight to fd 2
            self._interpreter.allocate_tensors()
        detail = self._interpreter.get_input_details()[0]
        self._input_index = detail["index"]
        self.input_shape = tuple(int(v) for v in detail["shape"])  # (1, H, W, 3)
        self._outputs = [d["index"] for d in self._interpreter.get_output_details()]
        self._lock = threading.Lock()
        logger.info("loaded %s (input %s, %d threads)", path.name, self.input_shape, threads)

    @property
    def input_size(self) -> int:
        """Side of the square input image in pixels."""
        return self.input_shape[1]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Run on one float32 ``[H, W, 3]`` (or ``[1, H, W, 3]``) input; outputs flattened per sample."""
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(self.input_shape)
        with self._lock:
            self._interpreter.set_tensor(self._input_index, x)
            self._interpreter.invoke()
            return [self._interpreter.get_tensor(i).reshape(-1).copy() for i in self._outputs]


@lru_cache(maxsize=None)
def model(name: str) -> TfliteModel:
    """The shared interpreter for one shipped model file (loaded on first use)."""
    return TfliteModel(MODELS_DIR / name)
