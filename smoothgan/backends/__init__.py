"""The table of inference backends: one row per engine drives CLI choices, ``load()`` dispatch and benchmarks.

``auto`` (the default everywhere) is not an engine but a choice over the table: the fastest backend that is
installed and has its artefacts for the device and precision, in :data:`AUTO_ORDER` (TensorRT engines on CUDA,
then ONNX Runtime graphs, then torch on the weights). A candidate that fails to start (stale engines, a missing
execution provider) is skipped with its reason logged; the chosen one is logged and is ``backend.name``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from smoothgan.artifacts import ENGINE_DIR, MANIFEST_FILE, has_onnx_graphs
from smoothgan.errors import BackendError

if TYPE_CHECKING:
    from smoothgan.backends.base import Backend
    from smoothgan.bundle import ModelBundle


@dataclass(frozen=True)
class BackendSpec:
    """One engine: where it lives, what it runs on, the artefact it needs and the extra that installs it."""

    name: str
    module: str
    class_name: str
    devices: tuple[str, ...]
    precisions: tuple[str, ...]
    artifact: str
    extra: str
    requires: tuple[str, ...]  # any one of these importable packages provides the engine

    def is_installed(self) -> bool:
        """One of this engine's Python packages is importable (cheap: no import happens)."""
        return any(importlib.util.find_spec(name) is not None for name in self.requires)

    @property
    def install_hint(self) -> str:
        return f"pip install 'smoothgan[{self.extra.split()[0]}]'"


BACKENDS: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec("torch", "smoothgan.backends.torch", "TorchBackend", ("cpu", "cuda"),
                    ("fp32", "fp16", "bf16"), "weights.safetensors", "torch", ("torch",)),
        BackendSpec("onnxruntime", "smoothgan.backends.onnxruntime", "OnnxRuntimeBackend", ("cpu", "cuda"),
                    ("fp32", "fp16", "int8"), "onnx/{network}-{precision}.onnx", "gpu (for cuda)", ("onnxruntime",)),
        BackendSpec("tensorrt", "smoothgan.backends.tensorrt", "TensorRTBackend", ("cuda",),
                    ("fp32", "fp16"), "engines/{gpu}-{cc}-{trt}-{precision}/{network}.engine", "trt",
                    ("tensorrt", "tensorrt_rtx_bindings")),
    )
}
AUTO = "auto"
AUTO_ORDER = ("tensorrt", "onnxruntime", "torch")  # fastest first (benchmarks/RESULTS.md)
BACKEND_CHOICES = (AUTO, *BACKENDS)  # what the CLI offers for --backend
PRECISIONS = tuple(dict.fromkeys(p for spec in BACKENDS.values() for p in spec.precisions))
DEVICES = ("cpu", "cuda")

log = logging.getLogger(__name__)


def precisions_for(name: str) -> tuple[str, ...]:
    """Precisions a backend choice supports; ``auto`` offers every precision some backend has."""
    return PRECISIONS if name == AUTO else get_spec(name).precisions


def get_spec(name: str) -> BackendSpec:
    try:
        return BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_CHOICES)}") from None


def _artifacts_problem(bundle: "ModelBundle", name: str, precision: str) -> str | None:
    """Why ``bundle`` lacks what backend ``name`` runs at ``precision`` (a cheap look; None when present)."""
    if name == "onnxruntime" and not has_onnx_graphs(bundle, precision):
        return f"no current ONNX {precision} graphs (smoothgan export --model {bundle.path} --onnx" + \
            ("" if precision == "fp32" else f" --precision {precision}") + ")"
    if name == "tensorrt":
        root = bundle.path / ENGINE_DIR
        if not root.is_dir() or not any((p / MANIFEST_FILE).is_file() and p.name.endswith(f"-{precision}")
                                        for p in root.iterdir()):
            return (f"no TensorRT {precision} engines (smoothgan export --model {bundle.path} --trt "
                    f"--precision {precision})")
    return None


def _auto(bundle: "ModelBundle", device: str, precision: str, **options: Any) -> "Backend":
    """The first backend of :data:`AUTO_ORDER` that is installed, has its artefacts and starts."""
    reasons = []
    for name in AUTO_ORDER:
        spec = BACKENDS[name]
        if device.partition(":")[0] not in spec.devices:
            reasons.append(f"{name}: runs on {', '.join(spec.devices)} only")
        elif precision not in spec.precisions:
            reasons.append(f"{name}: no {precision}")
        elif not spec.is_installed():
            reasons.append(f"{name}: not installed ({spec.install_hint})")
        elif (problem := _artifacts_problem(bundle, name, precision)) is not None:
            reasons.append(f"{name}: {problem}")
        else:
            try:
                backend = create_backend(bundle, name, device, precision, **options)
            except BackendError as exc:
                reasons.append(f"{name}: {exc}")
                log.info("backend auto: skipping %s: %s", name, exc)
                continue
            log.info("backend auto: chose %s for %s (%s)", backend.describe(), bundle.path.name,
                     "; ".join(reasons) or "the fastest")
            return backend
    raise BackendError(f"no backend can run {bundle.path} on {device} at {precision}: " + "; ".join(reasons))


def create_backend(bundle: "ModelBundle", name: str = AUTO, device: str = "cpu", precision: str = "fp32",
                   **options: Any) -> "Backend":
    """Instantiate a backend for ``bundle`` after checking the table's device/precision/package constraints.

    ``name="auto"`` picks one (see the module docstring); engine options are passed to the one chosen.
    """
    if name == AUTO:
        return _auto(bundle, device, precision, **options)
    spec = get_spec(name)
    if device.partition(":")[0] not in spec.devices:
        raise BackendError(f"backend {name} runs on {', '.join(spec.devices)}, not {device}")
    if precision not in spec.precisions:
        raise BackendError(f"backend {name} supports {', '.join(spec.precisions)}, not {precision}")
    if not spec.is_installed():
        raise BackendError(f"backend {name} needs the Python package {' or '.join(spec.requires)}: "
                           f"{spec.install_hint}")
    module = importlib.import_module(spec.module)
    return getattr(module, spec.class_name)(bundle, device=device, precision=precision, **options)


__all__ = ["AUTO", "AUTO_ORDER", "BACKENDS", "BACKEND_CHOICES", "DEVICES", "PRECISIONS", "BackendSpec",
           "create_backend", "get_spec", "precisions_for"]
