"""The evaluation report: metric values with counts and 95 % intervals, per task, plus everything needed to
reproduce and compare them (numpy only; written by :func:`smoothgan.metrics.evaluate.evaluate`).

A report serialises to one JSON object (:meth:`Report.to_dict`, :meth:`Report.save`)::

    {"format": "smoothgan-eval", "format_version": 1, "smoothgan_version": ...,
     "metrics": {"ps_inter_20_official": {"mean", "std", "count", "over", "ci95": [lo, hi] | null}, ...},
     "tasks":   {"ps_inter_20_official": {"a2b": {...same fields...}, ...}, ...},
     "protocol": {...}, "model": {...}, "runtime": {...}, "networks": {...}, "data": {...},
     "timing": {...}, "warnings": [...]}

NaN (a std or interval of a single value) is written as ``null``, so the file is strict JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from smoothgan import __version__
from smoothgan.fileio import write_json_atomic
from smoothgan.metrics.ps import Summary, aggregate

__all__ = ["FORMAT", "FORMAT_VERSION", "MetricValue", "Report"]

FORMAT = "smoothgan-eval"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class MetricValue:
    """One number of a report: the mean of ``count`` values (``over`` says what they are), with their sample std
    and a 95 % Student-t interval of the mean (NaN where it does not apply, e.g. FID, a set statistic)."""

    mean: float
    std: float
    count: int
    over: str
    ci95_low: float = math.nan
    ci95_high: float = math.nan

    @classmethod
    def from_values(cls, values: Iterable[float], over: str) -> MetricValue:
        """Mean, std and 95 % interval of per-item values (:func:`smoothgan.metrics.ps.aggregate`)."""
        return cls.from_summary(aggregate(np.asarray(list(values), dtype=np.float64)), over)

    @classmethod
    def from_summary(cls, summary: Summary, over: str) -> MetricValue:
        """A :class:`~smoothgan.metrics.ps.Summary` (e.g. :func:`~smoothgan.metrics.ps.summarize`'s PS of a set)."""
        return cls(summary.mean, summary.std, summary.count, over, summary.ci95_low, summary.ci95_high)

    @classmethod
    def single(cls, value: float, count: int, over: str) -> MetricValue:
        """A statistic of a whole set (FID): no spread, no interval."""
        return cls(float(value), math.nan, int(count), over)

    def to_dict(self) -> dict[str, Any]:
        has_ci = math.isfinite(self.ci95_low) and math.isfinite(self.ci95_high)
        return {
            "mean": _finite(self.mean),
            "std": _finite(self.std),
            "count": self.count,
            "over": self.over,
            "ci95": [self.ci95_low, self.ci95_high] if has_ci else None,
        }


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _jsonable(obj: Any) -> Any:
    """Recursively turn numpy scalars/arrays, paths and non-finite floats into strict-JSON values."""
    if isinstance(obj, MetricValue):
        return obj.to_dict()
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


@dataclass
class Report:
    """What :func:`~smoothgan.metrics.evaluate.evaluate` returns: metric values, their per-task breakdown and
    the settings (protocol, model, runtime, networks, data, timing) that make them reproducible."""

    metrics: dict[str, MetricValue] = field(default_factory=dict)
    tasks: dict[str, dict[str, MetricValue]] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    networks: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def value(self, key: str) -> float:
        """The headline number of one metric (its mean), e.g. ``report.value("ps_inter_20_metric")``."""
        return self.metrics[key].mean

    def add(self, key: str, overall: MetricValue, per_task: Mapping[str, MetricValue] | None = None) -> None:
        self.metrics[key] = overall
        if per_task:
            self.tasks[key] = dict(per_task)

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON-ready dict (NaN -> null)."""
        return _jsonable({
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "smoothgan_version": __version__,
            "metrics": self.metrics,
            "tasks": self.tasks,
            "protocol": self.protocol,
            "model": self.model,
            "runtime": self.runtime,
            "networks": self.networks,
            "data": self.data,
            "timing": self.timing,
            "warnings": self.warnings,
        })

    def save(self, path: str | Path) -> Path:
        """Write the JSON report atomically (temporary file + rename); returns the path."""
        path = Path(path)
        write_json_atomic(path, self.to_dict())
        return path
