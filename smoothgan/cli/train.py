"""``smoothgan train`` (the training loop), ``smoothgan data synth`` (the procedural data set) and ``smoothgan data
judge`` (the domain classifier that judges translations)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from smoothgan.cli.app import Device, app, choice_enum, command, console, fail, split_list
from smoothgan.trainer.options import PRECISIONS, REFERENCE_MODES, STYLE_REGS, TRAIN_PRESETS, TRIPLETS


data_app = typer.Typer(help="Data set tools: make the synthetic training set, train the judge of translations.",
                       no_args_is_help=True,
                       pretty_exceptions_enable=False, rich_markup_mode="markdown")
app.add_typer(data_app, name="data")


# Choices come from the trainer's tables (smoothgan.trainer.options imports no torch).
TrainPreset = choice_enum("TrainPreset", TRAIN_PRESETS)
TrainPrecision = choice_enum("TrainPrecision", PRECISIONS)
ReferenceMode = choice_enum("ReferenceMode", REFERENCE_MODES)
StyleReg = choice_enum("StyleReg", STYLE_REGS)
Triplet = choice_enum("Triplet", TRIPLETS)


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


@command("train")
def train_command(
    data: Annotated[Path, typer.Argument(help="Data folder with train/DOMAIN/ (and val/DOMAIN/) images.")],
    preset: Annotated[Optional[TrainPreset], typer.Option("--preset", "-p", help="Model + hyper-parameters "
                                                          "(default small).")] = None,
    baseline: Annotated[bool, typer.Option("--baseline", help="Plain StarGAN v2: smoothing losses off.")] = False,
    iters: Annotated[Optional[int], typer.Option("--iters", min=1, help="Total iterations.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Global batch size.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Parent of the run directories.")] = Path("runs"),
    name: Annotated[Optional[str], typer.Option("--name", help="Run name (after the run number).")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Checkpoint or run directory to continue "
                                                   "(exactly).")] = None,
    device: Annotated[Optional[Device], typer.Option("--device", "-d", help="Default: cuda if available.")] = None,
    precision: Annotated[Optional[TrainPrecision], typer.Option("--precision", help="fp32 (default) or bf16 "
                                                                "autocast on CUDA.")] = None,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile G, M and E.")] = False,
    wing: Annotated[Optional[Path], typer.Option("--wing", help="wing.ckpt (FAN) for w_hpf > 0 models.")] = None,
    lpips_weights: Annotated[Optional[Path], typer.Option("--lpips-weights", help="AlexNet ImageNet state dict "
                                                          "for the LPIPS content loss.")] = None,
    lpips_random_backbone: Annotated[bool, typer.Option("--lpips-random-backbone", help="Smoke tests only: LPIPS "
                                                        "with a random AlexNet.")] = False,
    options_file: Annotated[Optional[Path], typer.Option("--options", help="Start from an options.json instead "
                                                         "of a preset.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed")] = None,
    num_workers: Annotated[Optional[int], typer.Option("--num-workers", min=0)] = None,
    print_every: Annotated[Optional[int], typer.Option("--print-every", min=1)] = None,
    sample_every: Annotated[Optional[int], typer.Option("--sample-every", min=1)] = None,
    save_every: Annotated[Optional[int], typer.Option("--save-every", min=1)] = None,
    keep_last: Annotated[Optional[int], typer.Option("--keep-last", min=0, help="0 keeps all.")] = None,
    reference_mode: Annotated[Optional[ReferenceMode], typer.Option("--reference-mode")] = None,
    style_reg: Annotated[Optional[StyleReg], typer.Option("--style-reg", help="code (default) or the paper's "
                                                          "Eq. 3.")] = None,
    triplet: Annotated[Optional[Triplet], typer.Option("--triplet", help="code (default: mapping outputs) or the "
                                                       "paper's Eq. 1 (also encoded real styles).")] = None,
    check_every_step: Annotated[bool, typer.Option("--check-every-step", help="NaN/inf check after every "
                                                   "step.")] = False,
    fixed_schedules: Annotated[bool, typer.Option("--fixed-schedules", help="With --iters: keep ds/kl schedule "
                                                  "lengths instead of scaling them.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved options and the data set report, "
                                          "then exit.")] = False,
) -> None:
    """Train a smoothed (default) or plain StarGAN v2 into `runs/NNNNN-NAME/`.

    Examples:

    1. `smoothgan data synth shapes && smoothgan train shapes --preset small --lpips-weights alexnet.pth`

    2. `smoothgan train data/celeba_hq --preset celeba_hq --wing wing.ckpt --lpips-weights alexnet.pth`

    3. `smoothgan train data/afhq --preset afhq --baseline --precision bf16` (StarGAN v2 AFHQ)

    4. `smoothgan train shapes --resume runs/00003-small-smoothed-shapes-bs8` (exact continuation, with the
       run's own options unless --preset or --options is given)

    5. `smoothgan train shapes --preset tiny --lpips-random-backbone --dry-run`

    6. `torchrun --nproc_per_node 8 -m smoothgan train data/celeba_hq --preset celeba_hq --wing wing.ckpt
       --lpips-weights alexnet.pth` (one process per GPU; --batch-size is split over them)

    A run directory holds `options.json`, `stats.jsonl` (one line per tick), TensorBoard events, `samples/` and
    `checkpoints/step-NNNNNN/`; `smoothgan import RUN/checkpoints/step-NNNNNN --out BUNDLE` makes a bundle of
    the EMA networks.
    """
    from smoothgan.trainer.checkpoint import read_checkpoint
    from smoothgan.trainer.options import TrainOptions
    from smoothgan.trainer.train import preflight, resolve_data, train

    checkpoint = read_checkpoint(resume) if resume is not None else None
    options = TrainOptions.resolve(
        data, preset=preset.value if preset else None, options_file=options_file,
        resume_options=checkpoint.options if checkpoint else None,
        baseline=baseline, iters=iters, scale_schedules=not fixed_schedules,
        style_reg=style_reg.value if style_reg else None, triplet=triplet.value if triplet else None,
        batch_size=batch_size, seed=seed, num_workers=num_workers, print_every=print_every,
        sample_every=sample_every, save_every=save_every, keep_last=keep_last, name=name,
        wing=str(wing) if wing else None, lpips_weights=str(lpips_weights) if lpips_weights else None,
        reference_mode=reference_mode.value if reference_mode else None,
        lpips_random_backbone=lpips_random_backbone or None, compile=compile_ or None,
        check_every_step=check_every_step or None, precision=precision.value if precision else None,
        device=device.value if device else None,
    )

    main = _is_main_process()  # a random LPIPS backbone is reported by the preflight lines and the trainer's log
    if dry_run:
        checks = preflight(options)
        options, report = resolve_data(options)
        typer.echo(json.dumps(options.to_dict(), indent=2))
        typer.echo(str(report))
        typer.echo("\n".join(checks))
        if checkpoint is not None:
            typer.echo(f"would resume from {checkpoint.path} (step {checkpoint.step})")
        return

    def show(tick: Any) -> None:
        console.print(tick.status_line())

    result = train(options, out=out, resume=resume, progress=show if main else None)
    if main and result.run_dir is not None:
        console.print(f"done: {result.step} iterations in {result.run_dir}")
        if result.last_checkpoint is not None:
            console.print(f"make a bundle: smoothgan import {result.last_checkpoint} --out <bundle>")


@command("synth", typer_app=data_app)
def synth_command(
    out: Annotated[Path, typer.Argument(help="Folder to create (train/, val/, attributes.jsonl, synth.json).")],
    per_domain: Annotated[int, typer.Option("--per-domain", min=1, help="Images per domain (train + val).")] = 1000,
    img_size: Annotated[int, typer.Option("--img-size", min=8, help="Side of the square images.")] = 64,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same bytes.")] = 0,
    domains: Annotated[str, typer.Option("--domains", help="Shapes, comma-separated (circle, square, triangle, "
                                         "diamond).")] = "circle,square,triangle",
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.0, max=0.99,
                                                help="Share of each domain written to val/.")] = 0.1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier synthetic set.")] = False,
) -> None:
    """Write the procedural multi-domain data set (shapes = domains; fill colours, texture and outline = style;
    position, size, rotation and background = content, recorded per image in `attributes.jsonl`).

    Examples:

    1. `smoothgan data synth shapes` (3 x 1000 images, 64 px: the `small` training preset's data)

    2. `smoothgan data synth shapes32 --per-domain 200 --img-size 32 --domains circle,square`

    3. `smoothgan data synth shapes --seed 1 --overwrite`
    """
    from smoothgan.errors import InputError
    from smoothgan.fileio import read_json
    from smoothgan.trainer.synth import generate

    names = split_list(domains)
    root = generate(out, num_per_domain=per_domain, img_size=img_size, seed=seed, domains=names,
                    val_fraction=val_fraction, overwrite=overwrite)
    meta = read_json(root / "synth.json", InputError)
    console.print(f"wrote {root}: {len(names)} domains ({', '.join(names)}) x {meta['counts']['train']} train + "
                  f"{meta['counts']['val']} val images of {img_size}px")


@command("judge", typer_app=data_app)
def judge_command(
    data: Annotated[Path, typer.Argument(help="Data root: DATA/train/<domain>/ and DATA/val/<domain>/ images.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (classifier.safetensors + .json).")]
    = Path("smoothgan-judge"),
    img_size: Annotated[int, typer.Option("--img-size", min=8, help="Side the classifier sees (images are "
                                                                     "resized).")] = 64,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over DATA/train; the best epoch on "
                                                                 "DATA/val is kept.")] = 12,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Initialisation and batch order.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier judge in --out.")] = False,
) -> None:
    """Train the judge of translations: a small CNN domain classifier for `smoothgan eval --judge`.

    Translation domain accuracy (the share of translations the judge assigns to their target domain) is only
    evidence when the judge is right on real held-out images: it must reach 98% on DATA/val, else this command
    exits with an error (the folder is still written, for inspection) and `eval` refuses it.

    Examples:

    1. `smoothgan data judge shapes --out shapes-judge` then `smoothgan eval --model my_run --data shapes
       --judge shapes-judge --metrics accuracy`

    2. `smoothgan data judge data/afhq --img-size 128 --epochs 30 --out afhq-judge`
    """
    from smoothgan.errors import DataError, InputError
    from smoothgan.fileio import target_entries
    from smoothgan.metrics.domain_classifier import META, MIN_VAL_ACCURACY, WEIGHTS, train_domain_classifier

    train = data / "train"
    if not train.is_dir():
        raise DataError(f"{train} not found: the judge trains on DATA/train/<domain>/ and is measured on "
                        "DATA/val/<domain>/")
    domains = sorted(p.name for p in train.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(domains) < 2:
        raise DataError(f"{train} holds {len(domains)} domain folder(s); a judge needs at least 2")
    entries = target_entries(out)
    if entries and not set(entries) <= {WEIGHTS, META}:
        raise InputError(f"{out} is not a judge folder ({len(entries)} other entries); refusing to replace it "
                         "(choose another --out)")
    if entries and not overwrite:
        raise InputError(f"{out} holds a judge already; pass --overwrite to replace it")

    def report(entry: dict[str, float]) -> None:
        console.print(f"epoch {int(entry['epoch'])}/{epochs}: train loss {entry['train_loss']:.4f}, "
                      f"val accuracy {entry['val_accuracy']:.4f}", highlight=False)

    judge = train_domain_classifier(data, domains, img_size, epochs=epochs, seed=seed, progress=report)
    judge.save(out, overwrite=True)
    summary = (f"validation accuracy {judge.val_accuracy:.4f} (n={judge.val_count}) on {', '.join(domains)}; "
               f"wrote {out}")
    if not judge.val_accuracy >= MIN_VAL_ACCURACY:
        fail(f"{summary}, but below {MIN_VAL_ACCURACY:.2f}: it cannot judge translations (train longer with "
             "--epochs, or on more data)", DataError.exit_code)
    console.print(f"{summary}; use it with: smoothgan eval --judge {out}", highlight=False)
