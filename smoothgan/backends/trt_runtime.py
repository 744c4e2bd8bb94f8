"""Loading TensorRT (``tensorrt`` or TensorRT-RTX) and finding the GPU: what the TensorRT backend and the engine
builder (:mod:`smoothgan.export.tensorrt`) share. Importing this module loads neither TensorRT nor CUDA."""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

from smoothgan.artifacts import GpuInfo
from smoothgan.errors import BackendError

log = logging.getLogger(__name__)

MODULES = ("tensorrt", "tensorrt_rtx")
RTX_LIB_PACKAGE = "onnxruntime_ep_nv_tensorrt_rtx"  # the PyPI wheel that ships libtensorrt_rtx.so.1
RTX_LIBRARIES = ("libtensorrt_rtx.so", "libtensorrt_onnxparser_rtx.so")  # load order matters
ENV_RTX_LIB_DIR = "SMOOTHGAN_TRT_RTX_LIB_DIR"
INSTALL_HINT = "pip install 'smoothgan[trt]' (TensorRT) or 'smoothgan[trt-rtx]' (TensorRT-RTX)"

_MODULE_CACHE: dict[str, ModuleType] = {}


def _load_rtx_libraries() -> None:
    """Load TensorRT-RTX's shared libraries with RTLD_GLOBAL so its Python bindings can resolve them."""
    dirs = [Path(p) for p in os.environ.get(ENV_RTX_LIB_DIR, "").split(os.pathsep) if p]
    spec = importlib.util.find_spec(RTX_LIB_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(p) for p in spec.submodule_search_locations]
    for base in RTX_LIBRARIES:
        found = [f for d in dirs for f in d.glob(base + ".1*") if f.is_file()] if sys.platform == "linux" else []
        if not found:
            where = ", ".join(map(str, dirs)) or "nowhere"
            raise BackendError(f"TensorRT-RTX library {base}.1 not found (looked in {where}); set {ENV_RTX_LIB_DIR}"
                               f" or {INSTALL_HINT}")
        newest = max(found, key=lambda f: [int(p) for p in re.findall(r"\d+", f.name.split(".so.")[-1])])
        try:
            ctypes.CDLL(str(newest), mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            raise BackendError(f"cannot load {newest}: {exc}") from exc


def _import_one(name: str) -> ModuleType:
    if name == "tensorrt":
        module = importlib.import_module("tensorrt")
    elif importlib.util.find_spec("tensorrt_rtx") is not None:  # NVIDIA's SDK wheel
        module = importlib.import_module("tensorrt_rtx")
    else:  # PyPI: bindings in tensorrt_rtx_bindings, libraries in the ONNX Runtime EP wheel
        if importlib.util.find_spec("tensorrt_rtx_bindings") is None:
            raise ImportError("no module named tensorrt_rtx or tensorrt_rtx_bindings")
        _load_rtx_libraries()
        module = importlib.import_module("tensorrt_rtx_bindings")
    if not hasattr(module, "Builder"):  # PyPI's 'tensorrt' placeholder packages have no bindings
        raise ImportError(f"{name} has no TensorRT bindings")
    return module


def import_tensorrt(prefer: Optional[str] = None) -> ModuleType:
    """The TensorRT Python module: ``tensorrt`` if installed, else TensorRT-RTX; ``prefer`` picks one only."""
    if prefer is not None and prefer not in MODULES:
        raise BackendError(f"unknown TensorRT flavour {prefer!r}; choose {' or '.join(MODULES)}")
    problems = []
    for name in (prefer,) if prefer else MODULES:
        if name in _MODULE_CACHE:
            return _MODULE_CACHE[name]
        try:
            _MODULE_CACHE[name] = _import_one(name)
            return _MODULE_CACHE[name]
        except (ImportError, OSError) as exc:
            problems.append(f"{name}: {exc}")
    raise BackendError(f"TensorRT is not installed ({'; '.join(problems)}): {INSTALL_HINT}")


def capture_logger(trt: ModuleType) -> Any:
    """A TensorRT ``ILogger`` that forwards to :mod:`logging` and keeps errors for one-line messages."""

    class CaptureLogger(trt.ILogger):  # type: ignore[name-defined, misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            sev = trt.ILogger.Severity
            if severity in (sev.INTERNAL_ERROR, sev.ERROR):
                self.errors.append(" ".join(msg.split()))  # surfaced in the BackendError that follows
            # warnings are parser chatter here (int64 bindings, unused mask inputs)
            log.debug("TensorRT [%s]: %s", getattr(severity, "name", severity), msg)

        def last_error(self, default: str = "no error message") -> str:
            return self.errors[-1] if self.errors else default

    return CaptureLogger()


def _visible_device(index: int) -> str:
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return visible[index] if index < len(visible) else str(index)


def detect_gpu(index: int = 0) -> Optional[GpuInfo]:
    """Name and compute capability of CUDA device ``index``: torch (if loaded), nvidia-smi, cuda-python."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and index < torch.cuda.device_count():
        major, minor = torch.cuda.get_device_capability(index)
        return GpuInfo(torch.cuda.get_device_name(index), f"{major}.{minor}")
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader",
                                  "-i", _visible_device(index)], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            out = None
        if out is not None and out.returncode == 0 and "," in out.stdout:
            name, cc = out.stdout.strip().splitlines()[0].rsplit(",", 1)
            return GpuInfo(name.strip(), cc.strip())
    try:
        from cuda.bindings import runtime as cudart  # type: ignore[import-not-found]

        err, props = cudart.cudaGetDeviceProperties(index)
        if int(err) == 0:
            return GpuInfo(props.name.decode(errors="replace").strip("\x00 "), f"{props.major}.{props.minor}")
    except (ImportError, AttributeError, RuntimeError):
        pass
    return None


def rtx_ccs(trt: ModuleType) -> dict[str, Any]:
    """TensorRT-RTX's ComputeCapability members by "major.minor" (SM86 -> "8.6")."""
    out = {}
    for key, member in trt.ComputeCapability.__members__.items():
        digits = key[2:] if key.startswith("SM") and key[2:].isdigit() else None
        if digits:
            out[f"{digits[:-1]}.{digits[-1]}"] = member
    return out


__all__ = ["INSTALL_HINT", "MODULES", "capture_logger", "detect_gpu", "import_tensorrt", "rtx_ccs"]
