"""Style sources and interpolation, in numpy so every backend sees the same numbers.

Latents are drawn with numpy from a seed, so a seed gives the same style codes on torch, ONNX Runtime and
TensorRT, on any device. Interpolation happens on style codes (never on z), with N points that include both
ends: the paper's protocol (REFERENCE 5.1, 6.4 and quirk 18).
"""

from __future__ import annotations

import numpy as np

from smoothgan.errors import InputError

INTERPOLATION_MODES = ("lerp", "slerp")
SEED_MAX = 2**32 - 1
"""Seeds are integers 0..SEED_MAX (what every RNG a user may pair them with accepts)."""


def is_int(value: object) -> bool:
    """A true integer (Python or numpy), not a bool or a float."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_seed(seed: object) -> int:
    """``seed`` as an int, or :class:`InputError` (one line) when it is not an integer in 0..SEED_MAX."""
    if not is_int(seed) or not 0 <= int(seed) <= SEED_MAX:  # type: ignore[arg-type]
        raise InputError(f"seed must be an integer from 0 to {SEED_MAX}, got {seed!r}")
    return int(seed)  # type: ignore[arg-type]


def latents(seed: int, num: int, latent_dim: int) -> np.ndarray:
    """``num`` standard-normal latents [num, latent_dim] float32, reproducible from ``seed`` (0..SEED_MAX)."""
    if not is_int(num) or num < 1:
        raise InputError(f"need at least one latent, got num={num!r}")
    rng = np.random.default_rng(check_seed(seed))
    return rng.standard_normal((num, latent_dim)).astype(np.float32)


def alphas(steps: int) -> np.ndarray:
    """Interpolation weights i / (steps - 1), i = 0..steps-1, float32: exactly 0 and 1 at the ends."""
    if not is_int(steps) or steps < 2:
        raise InputError(f"an interpolation needs at least 2 steps, got {steps}")
    return (np.arange(steps, dtype=np.float64) / (steps - 1)).astype(np.float32)


def slerp(start: np.ndarray, end: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation of un-normalised codes (norms interpolated too, as in the smoothing code).

    Falls back to lerp where the codes are (nearly) parallel, where the official formula divides by zero.
    start, end [..., D]; t [N] -> [N, ..., D].
    """
    start64, end64 = start.astype(np.float64), end.astype(np.float64)
    unit_a = start64 / np.maximum(np.linalg.norm(start64, axis=-1, keepdims=True), 1e-12)
    unit_b = end64 / np.maximum(np.linalg.norm(end64, axis=-1, keepdims=True), 1e-12)
    omega = np.arccos(np.clip((unit_a * unit_b).sum(-1, keepdims=True), -1.0, 1.0))
    sin_omega = np.sin(omega)
    tt = t.astype(np.float64).reshape((-1,) + (1,) * start.ndim)
    safe = np.abs(sin_omega) > 1e-6
    denom = np.where(safe, sin_omega, 1.0)
    spherical = (np.sin((1 - tt) * omega) / denom) * start64 + (np.sin(tt * omega) / denom) * end64
    linear = start64 + tt * (end64 - start64)
    out = np.where(safe, spherical, linear).astype(np.float32)
    out[0], out[-1] = start, end  # exact end points, whatever the rounding
    return out


def interpolate(start: np.ndarray, end: np.ndarray, steps: int, mode: str = "lerp") -> np.ndarray:
    """``steps`` styles from ``start`` to ``end`` (both included): [..., D] -> [steps, ..., D] float32."""
    if mode not in INTERPOLATION_MODES:
        raise InputError(f"unknown interpolation mode {mode!r}; choose one of {', '.join(INTERPOLATION_MODES)}")
    if start.shape != end.shape:
        raise InputError(f"style shapes differ: {start.shape} vs {end.shape}")
    t = alphas(steps)
    if mode == "slerp":
        return slerp(start, end, t)
    tt = t.reshape((-1,) + (1,) * start.ndim)
    out = (start[None] + tt * (end[None] - start[None])).astype(np.float32)
    out[0], out[-1] = start, end
    return out
