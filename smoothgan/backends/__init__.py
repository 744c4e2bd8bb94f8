"""The table of inference backends: one row per engine drives CLI choices, ``load()`` dispatch and benchmarks."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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


BACKENDS: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec("torch", "smoothgan.backends.torch", "TorchBackend", ("cpu", "cuda"),
                    ("fp32", "fp16", "bf16"), "weights.safetensors", "torch", ("torch",)),
        BackendSpec("onnxruntime", "smoothgan.backends.onnxruntime", "OnnxRuntimeBackend", ("cpu", "cuda"),
                    ("fp32", "fp16"), "onnx/{network}-{precision}.onnx", "gpu (for cuda)", ("onnxruntime",)),
        BackendSpec("tensorrt", "smoothgan.backends.tensorrt", "TensorRTBackend", ("cuda",),
                    ("fp32", "fp16"), "engines/{gpu}-{cc}-{trt}-{precision}/{network}.engine", "trt",
                    ("tensorrt", "tensorrt_rtx_bindings")),
    )
}
PRECISIONS = ("fp32", "fp16", "bf16")
DEVICES = ("cpu", "cuda")


def get_spec(name: str) -> BackendSpec:
    try:
        return BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}") from None


def create_backend(bundle: "ModelBundle", name: str = "torch", device: str = "cpu", precision: str = "fp32",
                   **options: Any) -> "Backend":
    """Instantiate a backend for ``bundle`` after checking the table's device/precision/package constraints."""
    spec = get_spec(name)
    if device not in spec.devices:
        raise BackendError(f"backend {name} runs on {', '.join(spec.devices)}, not {device}")
    if precision not in spec.precisions:
        raise BackendError(f"backend {name} supports {', '.join(spec.precisions)}, not {precision}")
    if not spec.is_installed():
        raise BackendError(
            f"backend {name} needs the Python package {' or '.join(spec.requires)}: "
            f"pip install 'smoothgan[{spec.extra.split()[0]}]'"
        )
    module = importlib.import_module(spec.module)
    return getattr(module, spec.class_name)(bundle, device=device, precision=precision, **options)
