"""Perceptual Smoothness (PS) of an interpolation sequence, from its distances (numpy only).

PS (Smoothing paper, Sec. 5; REFERENCE 6.4) scores a sequence of N frames x_0 .. x_{N-1} from the N - 1
consecutive distances d_t = D(x_t, x_{t+1}) and the end-to-end distance d_end = D(x_0, x_{N-1}):

- uniformity U = 1 - Gini(d_0 .. d_{N-2}): 1 when every step changes the image by the same amount;
- alignment A = d_end / sum_t d_t: 1 when the path goes straight from x_0 to x_{N-1}, lower for detours;
- PS = 2 A U / (A + U), their harmonic mean.

This module only does the arithmetic; the caller computes the distances (see
``smoothgan.metrics.diversity.sequence_distances`` and ``smoothgan.metrics.lpips.PerceptualDistance``). Three
modes (the rows of :data:`PS_MODES`), each with the distance it expects:

- ``"official"``: parity with the released ``ps_eval.py``. The distances must be *squared* LPIPS (the standard
  LPIPS value, ``PerceptualDistance(mode="squared")``). 1e-6 is added to every consecutive distance before the
  Gini, and the released code adds it in place, so the alignment sum includes ``n * 1e-6`` too. A is capped at 1
  because squared LPIPS violates the triangle inequality. The PS of a set is the mean of per-sequence PS.
- ``"metric"``: the paper's distance (LPIPS "modified to be a proper metric") with the released script's
  aggregation, a documented deviation from both. The distances must obey the triangle inequality
  (``PerceptualDistance(mode="sqrt")`` or ``mode="abs"``), so A <= 1 holds mathematically and is only clipped to
  [0, 1] against float noise. No epsilon is added: the only division by zero (all steps zero) is handled
  explicitly with the official code's limit values, U = 1 and A = 0. The PS of a set is the mean of
  per-sequence PS.
- ``"paper"``: the paper's Eq. 13-14. Same distances and per-sequence A and U as ``"metric"`` except that A is
  never clipped; the PS of a set is the harmonic mean of the *expected* alignment and the *expected* uniformity
  over its sequences, 2 E[A] E[U] / (E[A] + E[U]) (:func:`summarize`), not the mean of per-sequence harmonic
  means. The harmonic mean is concave, so this is never below the mean of per-sequence values.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from smoothgan.errors import InputError

__all__ = [
    "OFFICIAL_EPSILON",
    "PS_MODES",
    "PSMode",
    "PSModeSpec",
    "PSResult",
    "Summary",
    "aggregate",
    "gini",
    "interpolation_alphas",
    "ps_mode",
    "smoothness_from_distances",
    "summarize",
]

logger = logging.getLogger(__name__)

PSMode = Literal["official", "metric", "paper"]

OFFICIAL_EPSILON = 1e-6
"""Added to every consecutive distance by the released ``ps_eval.py`` (``"official"`` mode)."""


@dataclass(frozen=True)
class PSModeSpec:
    """One PS mode: the distance it expects and how it treats the numbers (a row of :data:`PS_MODES`)."""

    name: str
    distance: Literal["squared", "sqrt"]  # what the caller feeds: squared LPIPS, or a metric such as its sqrt
    epsilon: float  # added in place to every consecutive distance (the released script's quirk)
    alignment: Literal["cap", "clip", "raw"]  # min(1, A); clip to [0, 1] warning above 1; untouched
    aggregation: Literal["mean_of_ps", "ps_of_means"]  # E[PS] over sequences, or HM(E[A], E[U])
    summary: str  # one line for reports and docs


PS_MODES: dict[str, PSModeSpec] = {
    spec.name: spec
    for spec in (
        PSModeSpec("official", "squared", OFFICIAL_EPSILON, "cap", "mean_of_ps",
                   "squared LPIPS, alignment capped at 1, in-place 1e-6, mean of per-sequence PS "
                   "(the released ps_eval.py)"),
        PSModeSpec("metric", "sqrt", 0.0, "clip", "mean_of_ps",
                   "sqrt of squared LPIPS (a pseudo-metric), no epsilon, mean of per-sequence PS"),
        PSModeSpec("paper", "sqrt", 0.0, "raw", "ps_of_means",
                   "sqrt of squared LPIPS, no epsilon, alignment not clipped, PS = harmonic mean of mean "
                   "alignment and mean uniformity over sequences (paper Eq. 13-14)"),
    )
}
"""The PS modes, in report order; the evaluation runner, its report and the docs are driven by this table."""

# Relative slack before an alignment above 1 in "metric" mode counts as a broken triangle inequality.
_METRIC_SLACK = 1e-5

# Two-sided 95 % Student t quantiles t_{0.975}(df) for df = 1..9; larger df use a Cornish-Fisher expansion.
_T975_SMALL_DF = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157)
_Z975 = 1.959963984540054


@dataclass(frozen=True)
class PSResult:
    """Perceptual Smoothness of one sequence: alignment A, uniformity U and PS = 2AU / (A + U).

    All in [0, 1] except in ``"paper"`` mode, where A (and so PS) exceeds 1 if the distance breaks the triangle
    inequality; a set of sequences aggregates these with :func:`summarize`.
    """

    alignment: float
    uniformity: float
    ps: float


@dataclass(frozen=True)
class Summary:
    """Mean of per-sequence values with the sample std (ddof 1) and a 95 % Student-t interval of the mean."""

    mean: float
    std: float
    count: int
    ci95_low: float
    ci95_high: float


def _as_distances(values: object, name: str) -> np.ndarray:
    """1-D float64 array of finite, non-negative values, or InputError."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f"{name} must be a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or infinite values")
    if np.any(arr < 0):
        raise InputError(f"{name} must be non-negative distances, got minimum {arr.min():g}")
    return arr


def gini(values: object) -> float:
    """Gini coefficient of non-negative values: 0 when all are equal, (n - 1) / n when one holds everything.

    G = sum_i (2i - n - 1) x_(i) / (n sum_i x_(i)) over the values sorted ascending (i = 1..n), which equals the
    mean absolute difference form sum_ij |x_i - x_j| / (2 n^2 mean). All-zero input counts as perfectly equal
    (0.0) instead of dividing by zero.
    """
    x = np.sort(_as_distances(values, "gini values"))
    n = x.size
    total = float(x.sum())
    if total == 0.0:
        return 0.0
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float(np.sum((2.0 * ranks - n - 1.0) * x) / (n * total))


def _harmonic(a: float, b: float) -> float:
    """2ab / (a + b); 0.0 when either is 0 (no 0/0 when both are, which U >= 1/n rules out for real sequences)."""
    if a + b == 0.0:
        return 0.0
    return 2.0 * a * b / (a + b)


def ps_mode(mode: str) -> PSModeSpec:
    """The :data:`PS_MODES` row of ``mode``; InputError naming the modes for anything else."""
    spec = PS_MODES.get(mode) if isinstance(mode, str) else None
    if spec is None:
        raise InputError(f"unknown PS mode {mode!r}; expected one of {', '.join(PS_MODES)}")
    return spec


def smoothness_from_distances(consecutive: object, end: float, mode: PSMode = "official") -> PSResult:
    """Alignment, uniformity and PS of one interpolation sequence from its distances.

    ``consecutive`` holds the N - 1 distances between neighbouring frames, ``end`` the distance between the
    first and the last frame. ``mode="official"`` expects squared LPIPS and reproduces the released script,
    including its in-place 1e-6 and the cap of A at 1; ``mode="metric"`` expects a true metric (sqrt-LPIPS or
    the absolute-difference variant), adds no epsilon and clips A to [0, 1]; ``mode="paper"`` is ``"metric"``
    without the clip (its set-level PS comes from :func:`summarize`). Uniformity is at least 1/n for n steps,
    so A and U are never both 0 (the official code's NaN for that case cannot happen with its epsilon either).
    """
    spec = ps_mode(mode)
    d = _as_distances(consecutive, "consecutive distances")
    end_arr = _as_distances([end], "end distance")
    d_end = float(end_arr[0])

    if spec.epsilon:
        d = d + spec.epsilon  # the released code mutates its array, so the sum below sees the epsilon too
    uniformity = 1.0 - gini(d)
    total = float(d.sum())
    if total == 0.0:
        alignment = 0.0  # no movement at all: the official epsilon gives 0 / (n * 1e-6) = 0 as well
    else:
        alignment = d_end / total
    if spec.alignment == "cap":
        alignment = min(1.0, alignment)
    elif spec.alignment == "clip":
        if alignment > 1.0 + _METRIC_SLACK:
            logger.warning(
                "end distance %.6g exceeds the path length %.6g: the distance is not a metric "
                "(use mode='official' for squared LPIPS); alignment clipped to 1",
                d_end,
                total,
            )
        alignment = min(1.0, max(0.0, alignment))

    return PSResult(alignment=alignment, uniformity=uniformity, ps=_harmonic(alignment, uniformity))


def summarize(results: Sequence[PSResult], mode: PSMode) -> Summary:
    """PS of a set of sequences in ``mode``, with a 95 % interval.

    ``"official"`` and ``"metric"``: the mean of per-sequence PS (:func:`aggregate`), as the released script
    prints it. ``"paper"`` (Eq. 13-14): PS = 2 E[A] E[U] / (E[A] + E[U]) over the sequences; its interval is the
    delta method, i.e. the Student-t interval of the linearised per-sequence values
    PS + dPS/dA (A_i - E[A]) + dPS/dU (U_i - E[U]), whose sample std is reported as ``std``.
    """
    spec = ps_mode(mode)
    if len(results) == 0:
        raise InputError("summarize needs at least one sequence")
    if spec.aggregation == "mean_of_ps":
        return aggregate([r.ps for r in results])
    a = np.array([r.alignment for r in results], dtype=np.float64)
    u = np.array([r.uniformity for r in results], dtype=np.float64)
    mean_a, mean_u = float(a.mean()), float(u.mean())
    value = _harmonic(mean_a, mean_u)
    s = mean_a + mean_u
    grad_a, grad_u = (2.0 * mean_u**2 / s**2, 2.0 * mean_a**2 / s**2) if s > 0 else (0.0, 0.0)
    linear = aggregate(value + grad_a * (a - mean_a) + grad_u * (u - mean_u))
    half = (linear.ci95_high - linear.ci95_low) / 2.0
    return Summary(mean=value, std=linear.std, count=linear.count, ci95_low=value - half, ci95_high=value + half)


def _t975(df: int) -> float:
    """Two-sided 95 % Student t quantile; table below df 10, 4-term Cornish-Fisher expansion above (< 1e-5 off)."""
    if df <= len(_T975_SMALL_DF):
        return _T975_SMALL_DF[df - 1]
    z = _Z975
    g1 = (z**3 + z) / 4.0
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96.0
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384.0
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160.0
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def aggregate(values: object) -> Summary:
    """Mean over sequences with a 95 % confidence interval of that mean.

    The interval is mean +- t_{0.975, n-1} * std / sqrt(n) (Student t, sample std with ddof 1), which is exact
    for normal data and close to the normal approximation for the hundreds of sequences a PS evaluation uses.
    With a single value the std and the interval are NaN. The official script reports only the mean.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise InputError(f"aggregate needs a non-empty 1-D sequence of values, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise InputError("aggregate values contain NaN or infinite values")
    n = int(x.size)
    mean = float(x.mean())
    if n == 1:
        return Summary(mean=mean, std=math.nan, count=1, ci95_low=math.nan, ci95_high=math.nan)
    std = float(x.std(ddof=1))
    half = _t975(n - 1) * std / math.sqrt(n)
    return Summary(mean=mean, std=std, count=n, ci95_low=mean - half, ci95_high=mean + half)


def interpolation_alphas(steps: int) -> np.ndarray:
    """The N interpolation weights alpha_i = i / (N - 1), both ends included, float32 (the paper uses N = 20).

    Computed by division, not by accumulating a step, so the ends are exactly 0.0 and 1.0 (the official
    ``np.arange(0, 1, step)`` grid drops alpha = 1 and accumulates rounding error).
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
        raise InputError(f"steps must be an integer >= 2 (both ends are included), got {steps!r}")
    n = int(steps)
    return (np.arange(n, dtype=np.float64) / (n - 1)).astype(np.float32)
