"""``smoothgan eval``: PS, LPIPS diversity, FID and content metrics of a bundle on a data set (docs/EVALUATION.md)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from smoothgan.cli.app import (BackendName, BackendOption, BatchOption, Device, DeviceOption, ModelOption,
                               Precision, PrecisionOption, announce, choice_enum, command, console, err_console,
                               open_translator, warn)
from smoothgan.metrics.evaluate import PS_STARTS

if TYPE_CHECKING:
    from smoothgan.metrics.evaluate import Progress as ProgressFn
    from smoothgan.metrics.report import MetricValue, Report
    from smoothgan.translator import Translator

DEFAULT_METRICS = "ps,lpips,fid,content"
PSStartChoice = choice_enum("PSStartChoice", PS_STARTS)


@contextmanager
def stage_progress(enabled: bool = True) -> Iterator[ProgressFn]:
    """One rich bar per evaluation stage, on stderr; yields the ``progress(stage, done, total)`` callback."""
    if not enabled:
        yield lambda stage, done, total: None
        return
    columns = (TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=False) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _number(key: str, value: Optional[float]) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    pixels_or_degrees = ("fid_", "content_position", "content_size", "content_rotation")
    return f"{value:.2f}" if key.startswith(pixels_or_degrees) else f"{value:.4f}"


def _ci(key: str, value: MetricValue) -> str:
    if not (math.isfinite(value.ci95_low) and math.isfinite(value.ci95_high)):
        return "-"
    return f"[{_number(key, value.ci95_low)}, {_number(key, value.ci95_high)}]"


def metrics_table(report: Report) -> Table:
    """Headline metrics with 95 % intervals and counts; a random LPIPS backbone is flagged in the caption."""
    table = Table(title=f"smoothgan eval: {report.model.get('name')} on {report.data.get('root')} "
                        f"({report.data.get('split')})", title_justify="left")
    for name, justify in (("metric", "left"), ("mean", "right"), ("95% CI", "right"), ("n", "right"),
                          ("over", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for key, value in report.metrics.items():
        table.add_row(key, _number(key, value.mean), _ci(key, value), str(value.count), value.over)
    if report.warnings:
        table.caption = Text("; ".join(report.warnings), style="bold red")
    return table


def tasks_table(report: Report) -> Table:
    """Per-task means: one row per metric, one column per task ``{src}2{trg}``."""
    names: list[str] = []
    for per_task in report.tasks.values():
        names.extend(t for t in per_task if t not in names)
    table = Table(title="per task (mean)", title_justify="left")
    table.add_column("metric")
    for name in names:
        table.add_column(name, justify="right")
    for key, per_task in report.tasks.items():
        table.add_row(key, *(_number(key, per_task[t].mean) if t in per_task else "" for t in names))
    return table


@command("eval")
def eval_command(
    data: Annotated[Path, typer.Option("--data", help="Data root: DATA/SPLIT/DOMAIN/ images (+ DATA/train/DOMAIN/ "
                                                      "for FID), domains named as in the model.")],
    model: ModelOption = None,
    metrics: Annotated[Optional[str], typer.Option(
        "--metrics", help="Comma-separated: ps,lpips,fid,content,accuracy (default: all but accuracy, plus "
                          "accuracy with --judge).")] = None,
    steps: Annotated[int, typer.Option("--steps", min=2, help="Frames per PS interpolation, both ends.")] = 20,
    num_pairs: Annotated[Optional[int], typer.Option("--num-pairs", min=1,
                                                     help="First N sources per domain (default all).")] = None,
    num_outs: Annotated[int, typer.Option("--num-outs", min=1, help="Outputs per source for LPIPS/FID.")] = 10,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of every latent and reference pick.")] = 0,
    split: Annotated[str, typer.Option("--split", help="Folder of the sources and references.")] = "val",
    ps_start: Annotated[PSStartChoice, typer.Option(  # type: ignore[valid-type]
        "--ps-start", help="Inter-domain PS start style: source = E(x, y_src) (default); latent = M(z', y_src), "
                           "the paper's random styles (keys ps_inter_latent_*).")]
    = PSStartChoice("source"),
    backend: BackendOption = BackendName.auto,
    device: DeviceOption = Device.cpu,
    precision: PrecisionOption = Precision.fp32,
    batch_size: BatchOption = 64,
    lpips_weights: Annotated[Optional[Path], typer.Option("--lpips-weights",
                                                          help="torchvision AlexNet state dict for LPIPS.")] = None,
    lpips_random_backbone: Annotated[bool, typer.Option(
        "--lpips-random-backbone", help="Random AlexNet (smoke tests; not comparable with published numbers).")]
    = False,
    inception_weights: Annotated[Optional[Path], typer.Option(
        "--inception-weights", help="torchvision inception_v3 state dict for FID.")] = None,
    judge: Annotated[Optional[Path], typer.Option(
        "--judge", help="Domain classifier folder (smoothgan data judge) for the accuracy metric.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="JSON report path.")] = Path("smoothgan-eval.json"),
    per_task: Annotated[bool, typer.Option("--per-task/--no-per-task", help="Also print the per-task table.")]
    = True,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
) -> None:
    """Evaluate a model: Perceptual Smoothness (inter/intra-domain), LPIPS diversity, FID and content.

    Examples:

    1. `smoothgan eval --model afhq --data data/afhq --device cuda` (everything; AlexNet and Inception v3
       ImageNet weights in the torch hub cache)

    2. `smoothgan eval --model celeba_hq --data data/celeba_hq --metrics ps --num-pairs 100 --out ps.json`

    3. `smoothgan eval --model my_run --data synth --metrics ps,lpips,content --lpips-random-backbone`
       (offline smoke test: numbers not comparable with published LPIPS/PS)

    4. `smoothgan eval --model afhq --data data/afhq --backend onnxruntime --inception-weights inception.pth`

    5. `smoothgan eval --model afhq --data data/afhq --metrics ps --ps-start latent` (the paper's inter-domain
       protocol: both ends random latent styles)

    6. `smoothgan eval --model my_run --data shapes --metrics accuracy --judge shapes-judge` (translation
       domain accuracy; the judge comes from `smoothgan data judge`)

    Prints a table (mean, 95 % interval, count) and writes the JSON report (metrics, per-task values, protocol,
    model sha256, backend, networks, timing) to --out. The protocol is in docs/EVALUATION.md.
    """
    from smoothgan.errors import InputError
    from smoothgan.metrics.evaluate import parse_metrics

    selected = parse_metrics(metrics if metrics is not None else
                             DEFAULT_METRICS + (",accuracy" if judge is not None else ""))
    if lpips_weights is not None and lpips_random_backbone:
        raise InputError("pass either --lpips-weights or --lpips-random-backbone, not both")
    with open_translator(model, backend, device, precision, batch_size) as translator:
        _evaluate(translator, data, selected, split, num_pairs, num_outs, steps, seed, lpips_weights,
                  lpips_random_backbone, inception_weights, device.value, out, per_task, progress, ps_start.value,
                  judge)


def _evaluate(translator: "Translator", data: Path, selected: list[str], split: str, num_pairs: int, num_outs: int,
              steps: int, seed: int, lpips_weights: Optional[Path], lpips_random_backbone: bool,
              inception_weights: Optional[Path], device: str, out: Path, per_task: bool, progress: bool,
              ps_start: str = "source", judge: Optional[Path] = None) -> None:
    """Run the metrics on an open translator, write the report and print the tables."""
    from smoothgan.metrics.domain_classifier import load_judge
    from smoothgan.metrics.evaluate import NEEDS_LPIPS, build_lpips, evaluate, scan_eval_data
    from smoothgan.metrics.lpips import ALEXNET_FILE, ALEXNET_URL, pretrained_weights

    eval_data = scan_eval_data(data, translator.domains, split, num_pairs, need_train="fid" in selected)  # fail fast
    classifier = load_judge(judge, eval_data.domains) if "accuracy" in selected else None
    announce(translator)

    distance = None
    if any(m in selected for m in NEEDS_LPIPS):
        if lpips_random_backbone:
            distance = build_lpips(random_backbone=True)
        else:
            distance = build_lpips(pretrained_weights(
                lpips_weights, ALEXNET_FILE, ALEXNET_URL, "LPIPS's ImageNet AlexNet weights",
                "--lpips-weights PATH, or --lpips-random-backbone for a smoke test (numbers not comparable with "
                "published LPIPS/PS)"))

    with stage_progress(progress) as update:
        report = evaluate(translator, data, selected, steps=steps, num_pairs=num_pairs, num_outs=num_outs,
                          seed=seed, lpips=distance, fid_extractor=inception_weights, split=split,
                          progress=update, metric_device=device, ps_start=ps_start, judge=classifier)
    report.save(out)
    console.print(metrics_table(report))
    if per_task and report.tasks:
        console.print(tasks_table(report))
    for warning in report.warnings:
        warn(warning)
    console.print(f"{report.timing['generated_images']} images generated in {report.timing['total_s']:.1f} s on "
                  f"{report.runtime['backend']} ({report.runtime['device']}, {report.runtime['precision']}); "
                  f"report: {out}", highlight=False)
