"""Evaluate every checkpoint of the converged ablation runs and write the table, the curves and a JSON record.

    python3 experiments/converged_report.py                  # defaults: the plan's /tmp paths (EXPERIMENTS.md)
    python3 experiments/converged_report.py --runs /tmp/conv-runs --data /tmp/shapes32 --judge /tmp/judge32 \\
        --out experiments/results/converged
    python3 experiments/converged_report.py --runs /tmp/short-runs --cache /tmp/short-eval \\
        --earlier experiments/results/short4k/converged.json --out experiments/results/short4k

Runs are the run directories ``NNNNN-{variant}-s{seed}`` written by ``experiments/converged.sh`` (a resumed model
has several; its checkpoints are pooled). For every checkpoint ``step-NNNNNN``: its EMA networks become a
bundle (``smoothgan import``'s code path), the judge (``smoothgan.metrics.domain_classifier``, refused below 98%
validation accuracy) measures translation domain accuracy, and ``smoothgan.metrics.evaluate`` measures PS
(official / metric / paper modes), LPIPS diversity, content preservation (LPIPS, position, size, rotation) and an
FID computed on the judge's features (``fid_judge_*``: a realism trend, not Inception FID);
the model's last checkpoint also gets the paper's inter-domain protocol (``ps_start="latent"``) and the
judge's accuracy on ``smoothgan eval --judge``'s latent- and reference-guided outputs. Training losses
are the mean of the ``stats.jsonl`` ticks since the previous checkpoint. Each checkpoint's numbers are cached
(``--cache``), so the script can be rerun as runs progress and only evaluates what is new; ``--earlier`` brings
in the recorded models of an earlier report whose runs are gone (a new variant is then compared against them).

Outputs (``--out``, committed): ``converged.json`` (every number), ``table.md`` (final checkpoints: mean and
95% Student-t interval over seeds per variant; a model counts as converged at >= 90% domain accuracy; then the
differences between variants paired by seed, with their intervals; then PS inter (paper) of every checkpoint
grouped by its domain accuracy, a control for training progress),
``checkpoints.md`` (headline metrics of every checkpoint) and ``curves.png`` (metrics against the training step,
one line per run).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from smoothgan import load
from smoothgan.metrics.domain_classifier import load_domain_classifier, translation_domain_accuracy
from smoothgan.metrics.evaluate import build_lpips, evaluate
from smoothgan.metrics.ps import aggregate
from smoothgan.trainer.checkpoint import export_bundle

VARIANTS = ("baseline", "smoothed", "paper")
VARIANT_LABELS = {"baseline": "baseline (StarGAN v2)", "smoothed": "smoothed (official code's form)",
                  "paper": "smoothed (paper's form)"}
RUN_NAME = re.compile(r"^\d{5}-(?P<variant>[a-z]+)-s(?P<seed>\d+)$")
CONVERGED_ACCURACY = 0.90
STEPS = 20
CACHE_VERSION = 2  # bump when the per-checkpoint protocol changes: cached numbers are then recomputed
# (label, key, digits): the rows of the table, in order
TABLE_ROWS = (
    ("translation domain accuracy (judge)", "domain_accuracy", 3),
    ("translation domain accuracy, eval protocol, latent", "domain_accuracy_latent", 3),
    ("translation domain accuracy, eval protocol, reference", "domain_accuracy_reference", 3),
    ("FID on the judge's features, latent (lower: closer to real images)", "fid_judge_latent", 2),
    ("FID on the judge's features, reference", "fid_judge_reference", 2),
    ("PS inter, official", f"ps_inter_{STEPS}_official", 3),
    ("PS inter, paper", f"ps_inter_{STEPS}_paper", 3),
    ("PS inter, paper, random start styles (paper protocol)", f"ps_inter_latent_{STEPS}_paper", 3),
    ("PS intra, official", f"ps_intra_{STEPS}_official", 3),
    ("PS intra, paper", f"ps_intra_{STEPS}_paper", 3),
    ("alignment inter, paper", f"alignment_inter_{STEPS}_paper", 3),
    ("uniformity inter, paper", f"uniformity_inter_{STEPS}_paper", 3),
    ("LPIPS diversity, latent", "lpips_latent", 4),
    ("LPIPS diversity, reference", "lpips_reference", 4),
    ("content LPIPS(source, output)", "content_lpips_latent", 4),
    ("object position error (px)", "content_position_err", 2),
    ("object size error (px)", "content_size_err", 2),
    ("object rotation error (degrees)", "content_rotation_err", 1),
    ("object not found (fraction)", "content_not_found", 3),
)
CURVES = (("domain_accuracy", "translation domain accuracy"), ("fid_judge_latent", "FID, judge features (latent)"),
          (f"ps_inter_{STEPS}_paper", "PS inter (paper)"), ("content_position_err", "position error (px)"),
          ("lpips_latent", "LPIPS diversity (latent)"), ("G/latent_adv", "G adversarial loss (latent)"))


def discover(runs: Path) -> dict[str, dict[str, Any]]:
    """Models by name ("smoothed-s0"): variant, seed, checkpoints by step (pooled over resumed run dirs), ticks."""
    models: dict[str, dict[str, Any]] = {}
    for run_dir in sorted(p for p in runs.iterdir() if p.is_dir()):
        match = RUN_NAME.match(run_dir.name)
        if match is None or match["variant"] not in VARIANTS:
            continue
        name = run_dir.name[6:]
        model = models.setdefault(name, {"variant": match["variant"], "seed": int(match["seed"]),
                                         "checkpoints": {}, "ticks": {}, "total_iters": None})
        options = json.loads((run_dir / "options.json").read_text())
        model["total_iters"] = options["total_iters"]
        for checkpoint in sorted((run_dir / "checkpoints").glob("step-*")):
            if (checkpoint / "checkpoint.json").is_file():
                model["checkpoints"][int(checkpoint.name[5:])] = checkpoint
        stats = run_dir / "stats.jsonl"
        if stats.is_file():
            for line in stats.read_text().splitlines():
                tick = json.loads(line)
                model["ticks"][tick["step"]] = tick
    return models


def mean_losses(ticks: dict[int, dict[str, Any]], start: int, end: int) -> dict[str, float]:
    """Mean of every logged loss over the ticks in (start, end]."""
    rows = [ticks[s]["losses"] for s in sorted(ticks) if start < s <= end]
    return {key: float(np.mean([row[key] for row in rows])) for key in (rows[0] if rows else {})}


def judge_features(judge: Any) -> Any:
    """The judge's pooled features ``[B, 128]`` as an FID extractor: a realism trend on this data set where no
    Inception weights can be downloaded (not comparable with Inception FID; the key says ``fid_judge``)."""
    import torch

    def extract(x: torch.Tensor) -> torch.Tensor:
        judge.net.eval()
        with torch.no_grad():
            return judge.net.features(x.float())

    return extract


FINAL_ONLY = ("domain_accuracy_reference",)
"""Keys measured on a model's last checkpoint only, added to its cached record when missing."""


def _translator(checkpoint: Path, tmp: str) -> Any:
    return load(export_bundle(checkpoint, Path(tmp) / "bundle").path, backend="torch")


def paper_protocol_ps(translator: Any, data: Path, lpips: Any, num_pairs: int) -> dict[str, float]:
    """PS with the paper's inter-domain protocol (random start styles): last checkpoints only."""
    latent = evaluate(translator, data, ("ps",), steps=STEPS, num_pairs=num_pairs, seed=0, lpips=lpips,
                      ps_start="latent")
    return {key: value.mean for key, value in latent.metrics.items() if "_inter_latent_" in key}


def judged_outputs(translator: Any, data: Path, judge: Any, num_pairs: int) -> dict[str, float]:
    """The judge's accuracy on the diversity pass's latent- and reference-guided outputs (``smoothgan eval
    --judge``'s protocol, 5 outputs per source and task): last checkpoints only."""
    judged = evaluate(translator, data, ("accuracy",), num_pairs=num_pairs, num_outs=5, seed=0, judge=judge)
    return {key: value.mean for key, value in judged.metrics.items()}


def evaluate_checkpoint(checkpoint: Path, data: Path, judge: Any, lpips: Any, num_pairs: int,
                        final: bool) -> dict[str, Any]:
    """Domain accuracy plus the evaluate() metrics of one checkpoint's EMA networks (fp32, torch, CPU)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        translator = _translator(checkpoint, tmp)
        accuracy = translation_domain_accuracy(translator, data, judge)
        report = evaluate(translator, data, ("ps", "lpips", "content", "fid"), steps=STEPS, num_pairs=num_pairs,
                          num_outs=5, seed=0, lpips=lpips, fid_extractor=judge_features(judge))
        metrics = {key.replace("fid_", "fid_judge_"): value.mean for key, value in report.metrics.items()}
        if final:
            metrics |= paper_protocol_ps(translator, data, lpips, num_pairs)
            metrics |= judged_outputs(translator, data, judge, num_pairs)
    return {"domain_accuracy": accuracy.accuracy, "domain_accuracy_n": accuracy.count,
            "domain_accuracy_tasks": accuracy.per_task, **metrics,
            "eval_seconds": round(time.perf_counter() - started, 1)}


def collect(models: dict[str, dict[str, Any]], data: Path, judge: Any, lpips: Any, cache: Path,
            num_pairs: int, final_only: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Per model, one record per checkpoint (cached in ``cache/NAME/step-NNNNNN.json``); with ``final_only``,
    intermediate checkpoints not yet in the cache are left out instead of evaluated."""
    records: dict[str, list[dict[str, Any]]] = {}
    for name, model in sorted(models.items()):
        rows, previous = [], 0
        for step, checkpoint in sorted(model["checkpoints"].items()):
            final = step == model["total_iters"]
            path = cache / name / f"step-{step:06d}{'-final' if final else ''}.v{CACHE_VERSION}.json"
            if path.is_file():
                row = json.loads(path.read_text())
                if final and any(key not in row for key in FINAL_ONLY):  # measured after the record was cached
                    with tempfile.TemporaryDirectory() as tmp:
                        row |= judged_outputs(_translator(checkpoint, tmp), data, judge, num_pairs)
                    path.write_text(json.dumps(row, indent=1))
            elif final_only and not final:
                continue
            else:
                row = {"step": step, **evaluate_checkpoint(checkpoint, data, judge, lpips, num_pairs, final)}
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(row, indent=1))
                print(f"{name} step {step}: domain accuracy {row['domain_accuracy']:.3f}, PS inter (paper) "
                      f"{row[f'ps_inter_{STEPS}_paper']:.3f}, {row['eval_seconds']} s", flush=True)
            row["losses"] = mean_losses(model["ticks"], previous, step)
            rows.append(row)
            previous = step
        records[name] = rows
    return records


def carry_over(earlier: Path, models: dict[str, dict[str, Any]], records: dict[str, list[dict[str, Any]]]
               ) -> list[str]:
    """Add the models of an earlier report's ``converged.json`` that are not in ``--runs`` (their run directories
    are gone), with their recorded checkpoints, so that new variants are compared against them; returns their
    names. A model present in both keeps its freshly evaluated records."""
    summary = json.loads(earlier.read_text())
    carried = sorted(name for name in summary["models"] if name not in models)
    for name in carried:
        entry = summary["models"][name]
        models[name] = {key: entry[key] for key in ("variant", "seed", "total_iters")} | {"carried_from": str(earlier)}
        records[name] = entry["checkpoints"]
    return carried


def interval(values: list[float], digits: int) -> str:
    """'mean [low, high] (n)' with the 95% Student-t interval over seeds; 'mean (n=1)' for a single seed."""
    if not values:
        return "-"
    summary = aggregate(values)
    if summary.count == 1:
        return f"{summary.mean:.{digits}f} (n=1)"
    low, high = summary.ci95_low, summary.ci95_high
    return f"{summary.mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}] (n={summary.count})"


def final_rows(models: dict[str, dict[str, Any]], records: dict[str, list[dict[str, Any]]]
               ) -> dict[str, list[dict[str, Any]]]:
    """Per variant, the last-checkpoint record of every finished model (step == its total iterations)."""
    finals: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for name, rows in records.items():
        if rows and rows[-1]["step"] == models[name]["total_iters"]:
            finals[models[name]["variant"]].append({"name": name, **rows[-1]})
    return finals


def table(models: dict[str, dict[str, Any]], records: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown: metric rows, variant columns (finished models only), then one line per model."""
    finals = final_rows(models, records)
    variants = [v for v in VARIANTS if finals.get(v)]
    lines = ["(no model has finished its training yet)"]
    if variants:
        lines = ["| metric | " + " | ".join(VARIANT_LABELS[v] for v in variants) + " |",
                 "|---|" + "---|" * len(variants)]
        for label, key, digits in TABLE_ROWS:
            cells = [interval([r[key] for r in finals[v] if r.get(key) is not None and math.isfinite(r[key])],
                              digits) for v in variants]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        converged = [f"{sum(r['domain_accuracy'] >= CONVERGED_ACCURACY for r in finals[v])} of {len(finals[v])}"
                     for v in variants]
        lines.append(f"| models at >= {CONVERGED_ACCURACY:.0%} domain accuracy | " + " | ".join(converged) + " |")
    lines += ["", "| model | last step | domain accuracy | per task |", "|---|---|---|---|"]
    for name, rows in sorted(records.items()):
        if rows:
            last = rows[-1]
            tasks = ", ".join(f"{k} {v:.2f}" for k, v in last["domain_accuracy_tasks"].items())
            lines.append(f"| {name} | {last['step']} / {models[name]['total_iters']} | "
                         f"{last['domain_accuracy']:.3f} | {tasks} |")
    sources = sorted({model["carried_from"] for model in models.values() if "carried_from" in model})
    for source in sources:
        names = ", ".join(name for name in sorted(models) if models[name].get("carried_from") == source)
        lines += ["", f"Carried over as recorded in {source} (runs no longer on disk, not re-evaluated): {names}."]
    return "\n".join(lines) + "\n"


PAIRS = (("smoothed", "baseline"), ("paper", "baseline"), ("paper", "smoothed"))


def paired_table(models: dict[str, dict[str, Any]], records: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown: per metric, the difference between two variants of the same seed (finished models only), mean and
    95% Student-t interval over the seeds both have: seed-to-seed variation shared by a pair cancels out."""
    by_seed: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for variant, rows in final_rows(models, records).items():
        for row in rows:
            by_seed[variant][models[row["name"]]["seed"]] = row
    pairs = [(a, b, sorted(set(by_seed[a]) & set(by_seed[b]))) for a, b in PAIRS]
    pairs = [(a, b, seeds) for a, b, seeds in pairs if seeds]
    if not pairs:
        return "(no seed has two finished variants yet)\n"
    lines = ["| metric | " + " | ".join(f"{a} - {b}" for a, b, _ in pairs) + " |", "|---|" + "---|" * len(pairs)]
    for label, key, digits in TABLE_ROWS:
        cells = []
        for a, b, seeds in pairs:
            values = [by_seed[a][seed][key] - by_seed[b][seed][key] for seed in seeds
                      if all(by_seed[v][seed].get(key) is not None and math.isfinite(by_seed[v][seed][key])
                             for v in (a, b))]
            cells.append(interval(values, digits))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


CHECKPOINT_COLUMNS = (("domain acc.", "domain_accuracy", 3), ("FID (judge)", "fid_judge_latent", 1),
                      ("PS inter official", f"ps_inter_{STEPS}_official", 3),
                      ("PS inter paper", f"ps_inter_{STEPS}_paper", 3),
                      ("PS intra paper", f"ps_intra_{STEPS}_paper", 3),
                      ("LPIPS div.", "lpips_latent", 4), ("position err. (px)", "content_position_err", 2),
                      ("rotation err. (deg)", "content_rotation_err", 1))


ACCURACY_BANDS = ((0.0, 0.5), (0.5, 0.7), (0.7, 0.9), (0.9, 1.01))


def matched_progress_table(models: dict[str, dict[str, Any]], records: dict[str, list[dict[str, Any]]],
                           key: str = f"ps_inter_{STEPS}_paper") -> str:
    """Markdown: mean ``key`` over every checkpoint of each variant whose domain accuracy lies in each band.

    PS falls as a model learns to translate (a model that barely changes its input interpolates "smoothly"), so a
    variant that is behind in training scores a higher PS for that reason alone; comparing checkpoints at the
    same domain accuracy separates that from the smoothing itself. Checkpoints of one run are not independent:
    read the cells as a control for progress, not as intervals."""
    variants = [v for v in VARIANTS if any(models[name]["variant"] == v for name in records)]
    header = " | ".join(VARIANT_LABELS[v] for v in variants)
    lines = [f"| domain accuracy of the checkpoint (n: checkpoints) | {header} |",
             "|---|" + "---|" * len(variants)]
    for low, high in ACCURACY_BANDS:
        cells = []
        for variant in variants:
            hits = [(name, row[key]) for name, rows in records.items() if models[name]["variant"] == variant
                    for row in rows if low <= row["domain_accuracy"] < high and row.get(key) is not None]
            values = [value for _, value in hits]
            runs = len({name for name, _ in hits})
            cells.append(f"{sum(values) / len(values):.3f} (n={len(values)}, {runs} run{'s' * (runs > 1)})"
                         if hits else "-")
        lines.append(f"| {low:.1f} - {min(high, 1.0):.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def checkpoint_table(records: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown: one row per (model, checkpoint) with the headline metrics, for the convergence discussion."""
    lines = ["| model | step | " + " | ".join(label for label, _, _ in CHECKPOINT_COLUMNS) + " |",
             "|---|---|" + "---|" * len(CHECKPOINT_COLUMNS)]
    for name, rows in sorted(records.items()):
        for row in rows:
            cells = [f"{row[key]:.{digits}f}" if row.get(key) is not None else "-"
                     for _, key, digits in CHECKPOINT_COLUMNS]
            lines.append(f"| {name} | {row['step']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def curves(models: dict[str, dict[str, Any]], records: dict[str, list[dict[str, Any]]], out: Path) -> None:
    """One panel per metric of :data:`CURVES` against the training step; colour = variant, line style = seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"baseline": "tab:blue", "smoothed": "tab:orange", "paper": "tab:green"}
    styles = ("-", "--", ":", "-.", (0, (3, 1, 1, 1, 1, 1)))
    figure, axes = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True)
    for ax, (key, title) in zip(axes.flat, CURVES):
        for name, rows in sorted(records.items()):
            variant = models[name]["variant"]
            points = [(r["step"], r["losses"].get(key) if "/" in key else r.get(key)) for r in rows]
            points = [(s, v) for s, v in points if v is not None]
            if points:
                seed = models[name]["seed"]
                ax.plot(*zip(*points), marker="o", markersize=3, color=colours[variant], alpha=0.8,
                        linestyle=styles[seed % len(styles)], label=f"{VARIANT_LABELS[variant]}, seed {seed}")
        if key == "domain_accuracy":
            ax.axhline(CONVERGED_ACCURACY, color="grey", linestyle="--", linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    figure.savefig(out, dpi=90)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("/tmp/conv-runs"))
    parser.add_argument("--data", type=Path, default=Path("/tmp/shapes32"))
    parser.add_argument("--judge", type=Path, default=Path("/tmp/judge32"), help="saved domain classifier")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/conv-eval"), help="per-checkpoint results")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/converged"))
    parser.add_argument("--num-pairs", type=int, default=20, help="PS/eval sources per domain")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (runs may be training beside it)")
    parser.add_argument("--final-only", action="store_true",
                        help="evaluate only last checkpoints; intermediate ones enter the report once cached")
    parser.add_argument("--earlier", type=Path, action="append", default=[],
                        help="an earlier report's converged.json whose models (runs no longer on disk) join the "
                        "tables as recorded; repeatable")
    opts = parser.parse_args()

    import torch

    torch.set_num_threads(opts.threads)
    judge = load_domain_classifier(opts.judge)
    judge.check()
    lpips = build_lpips(random_backbone=True)  # no pretrained AlexNet offline: see EXPERIMENTS.md
    models = discover(opts.runs)
    records = collect(models, opts.data, judge, lpips, opts.cache, opts.num_pairs, opts.final_only)
    for earlier in opts.earlier:
        carried = carry_over(earlier, models, records)
        print(f"carried over from {earlier}: {', '.join(carried) or 'nothing'}")
    opts.out.mkdir(parents=True, exist_ok=True)
    summary = {"judge": {"path": str(opts.judge), "val_accuracy": judge.val_accuracy},
               "lpips_backbone": "alexnet (random init)", "num_pairs": opts.num_pairs, "steps": STEPS,
               "models": {name: {k: models[name][k] for k in ("variant", "seed", "total_iters", "carried_from")
                                 if k in models[name]}
                          | {"checkpoints": rows} for name, rows in records.items()}}
    (opts.out / "converged.json").write_text(json.dumps(summary, indent=1))
    (opts.out / "table.md").write_text(table(models, records) + "\nPaired by seed (difference of the two variants "
                                       "trained with the same seed):\n\n" + paired_table(models, records)
                                       + "\nPS inter (paper) at matched training progress (every checkpoint, "
                                       "grouped by its domain accuracy):\n\n" + matched_progress_table(models, records))
    (opts.out / "checkpoints.md").write_text(checkpoint_table(records))
    curves(models, records, opts.out / "curves.png")
    print((opts.out / "table.md").read_text())


if __name__ == "__main__":
    main()
