"""Metric keys of an evaluation report: their order, what their values are over, and how per-task values become
report entries (overall, pooled over tasks, and per task ``{src}2{trg}``)."""

from __future__ import annotations

from smoothgan.metrics.ps import PS_MODES, PSResult, summarize
from smoothgan.metrics.report import MetricValue, Report

__all__ = ["add_grouped", "add_smoothness", "over", "rank"]

_ORDER = ("ps_inter", "ps_intra", "lpips_", "fid_", "domain_accuracy", "content_lpips", "content_position",
          "content_size", "content_rotation", "content_not_found", "alignment_inter", "uniformity_inter",
          "alignment_intra", "uniformity_intra")


def rank(key: str) -> tuple[int, str, int]:
    """Report order: headline PS, diversity, FID, content, then the PS components; modes in PS_MODES order."""
    family = next((i for i, prefix in enumerate(_ORDER) if key.startswith(prefix)), len(_ORDER))
    base, _, mode = key.rpartition("_")
    if mode in PS_MODES:
        return family, base, list(PS_MODES).index(mode)
    return family, key, -1


def over(key: str) -> str:
    """What the values behind a metric key are."""
    if key.startswith(("ps_", "alignment_", "uniformity_")):
        return "sequences"
    if key.startswith(("content_position", "content_size", "content_rotation", "content_not_found",
                       "domain_accuracy")):
        return "outputs"
    return "source images"


def add_smoothness(report: Report, results: dict[tuple[str, str], dict[str, list[PSResult]]], kind: str,
                   steps: int) -> None:
    """Per-task PS results -> ``ps_/alignment_/uniformity_<kind>_<steps>_<mode>``, overall (pooled) and per task.

    PS goes through :func:`~smoothgan.metrics.ps.summarize`, so ``paper`` mode is the harmonic mean of the mean
    alignment and mean uniformity of the set (overall, and of each task), not a mean of per-sequence values.
    """
    for mode in PS_MODES:
        per_task = {f"{s}2{t}": b[mode] for (s, t), b in results.items() if b.get(mode)}
        pooled = [r for rs in per_task.values() for r in rs]
        if not pooled:
            continue
        report.add(f"ps_{kind}_{steps}_{mode}", MetricValue.from_summary(summarize(pooled, mode), "sequences"),
                   {task: MetricValue.from_summary(summarize(rs, mode), "sequences") for task, rs in per_task.items()})
        for part in ("alignment", "uniformity"):
            report.add(f"{part}_{kind}_{steps}_{mode}",
                       MetricValue.from_values([getattr(r, part) for r in pooled], "sequences"),
                       {task: MetricValue.from_values([getattr(r, part) for r in rs], "sequences")
                        for task, rs in per_task.items()})


def add_grouped(report: Report, values: dict[tuple[str, str], dict[str, list[float]]]) -> None:
    """Per-task lists -> overall (pooled over tasks) and per-task MetricValues, keys in first-seen order."""
    keys: list[str] = []
    for bucket in values.values():
        keys.extend(k for k in bucket if k not in keys)
    for key in keys:
        pooled = [v for b in values.values() for v in b.get(key, [])]
        if not pooled:
            continue
        per_task = {f"{s}2{t}": MetricValue.from_values(b[key], over(key))
                    for (s, t), b in values.items() if b.get(key)}
        report.add(key, MetricValue.from_values(pooled, over(key)), per_task)
