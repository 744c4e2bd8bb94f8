"""Serving and scale-out on existing engines: a Ray Serve app, a Ray Data batch job, a Triton model repository.

Re-exports only, loaded lazily: ``import smoothgan.serving`` does not import Ray (extra ``smoothgan[ray]``) or
tritonclient (extra ``smoothgan[triton]``); the first use of a name does.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "app": "smoothgan.serving.ray_serve",
    "run": "smoothgan.serving.ray_serve",
    "run_batch": "smoothgan.serving.ray_data",
    "export_triton": "smoothgan.serving.triton",
    "validate_repository": "smoothgan.serving.triton",
    "Limits": "smoothgan.serving.http",
    "Service": "smoothgan.serving.service",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = _LAZY[name]
        try:
            return getattr(importlib.import_module(module), name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in ("ray", "starlette", "tritonclient", "google", "grpc"):
                from smoothgan.errors import BackendError

                extra = "triton" if "triton" in module else "ray"
                raise BackendError(f"{name} needs the Python package {exc.name.split('.')[0]}: "
                                   f"pip install 'smoothgan[{extra}]'") from None
            raise
    raise AttributeError(f"module 'smoothgan.serving' has no attribute {name!r}")


__all__ = list(_LAZY)
