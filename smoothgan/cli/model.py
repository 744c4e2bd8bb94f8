"""``smoothgan import`` and ``smoothgan info``: getting models in and looking at them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from smoothgan.bundle import ALIGN_MODES
from smoothgan.cli.app import choice_enum, command, console, fail, split_list, warn

AlignMode = choice_enum("AlignMode", ALIGN_MODES)


@command("import")
def import_command(
    checkpoint: Annotated[Path, typer.Argument(help="Official *_nets_ema.ckpt / *_nets.ckpt file, or a smoothgan "
                                               "training checkpoint (or run) directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle directory to create.")],
    domains: Annotated[Optional[str], typer.Option("--domains", help="Domain names in index order, e.g. "
                                                   "female,male (training checkpoints know theirs).")] = None,
    wing: Annotated[Optional[Path], typer.Option("--wing", help="wing.ckpt (FAN) for w_hpf > 0 models.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Model name recorded in the bundle.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing bundle, atomically (only a "
                                            "bundle: a file, a link or a folder holding anything else is never "
                                            "replaced).")] = False,
    align: Annotated[Optional[AlignMode], typer.Option(
        "--align", help="Preprocessing recorded in the bundle: face (photos aligned to CelebA-HQ crops; the "
        "default for models with a FAN / --wing) or none (whole images; the default otherwise).")] = None,
) -> None:
    """Turn an official StarGAN v2 / smoothing checkpoint, or a smoothgan training checkpoint, into a bundle.

    Examples:

    1. `smoothgan import 100000_nets_ema.ckpt --domains female,male --wing wing.ckpt --out celeba_hq`

    2. `smoothgan import afhq_100000_nets_ema.ckpt --domains cat,dog,wild --out afhq`

    3. `smoothgan import runs/00002-small-smoothed-shapes-bs8/checkpoints/step-020000 --out shapes` (EMA nets)

    4. `smoothgan import runs/00002-small-smoothed-shapes-bs8 --out shapes` (its latest checkpoint)

    Official checkpoints store no domain names: give them in index order (sorted training folder names).
    """
    if checkpoint.is_dir():
        from smoothgan.trainer.checkpoint import export_bundle

        bundle = export_bundle(checkpoint, out, domains=split_list(domains) or None, overwrite=overwrite, name=name,
                               align=align.value if align else None)
    else:
        from smoothgan.models.checkpoints import import_to_bundle

        if not domains:
            fail("--domains is required for official checkpoints (names in index order, e.g. female,male)", 2)
        bundle = import_to_bundle(checkpoint, split_list(domains), out, wing=wing, overwrite=overwrite, name=name,
                                  align=align.value if align else None)
    cfg = bundle.config
    console.print(
        f"imported {checkpoint.name} -> {bundle.path}: img_size {cfg.img_size}, domains "
        f"{', '.join(bundle.domains)}, w_hpf {cfg.w_hpf:g}, align {bundle.preprocessing.get('align', 'none')}, "
        f"sha256 {bundle.weights_sha256[:12]}"
    )
    for note in bundle.provenance.get("notes", []):
        console.print(f"  note: {note}")


@command("info")
def info_command(
    model: Annotated[Optional[str], typer.Argument(envvar="SMOOTHGAN_MODEL", help="Bundle directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print smoothgan.json as is.")] = False,
) -> None:
    """Show a bundle's configuration, domains, provenance and exported artefacts.

    Examples:

    1. `smoothgan info celeba_hq`

    2. `smoothgan info celeba_hq --json | jq .config`

    A bundle whose weights no longer match the sha256 it records is still shown (other commands refuse it), with
    a warning naming both hashes.
    """
    from smoothgan.bundle import load_bundle
    from smoothgan.fileio import cached_sha256

    bundle = load_bundle(model, verify=False)
    actual = cached_sha256(bundle.weights_path)
    if actual != bundle.weights_sha256:
        warn(f"{bundle.weights_path} has sha256 {actual}, not the {bundle.weights_sha256} recorded in "
             "smoothgan.json: it was changed after import; re-import the checkpoint (smoothgan import ... "
             f"--overwrite), then rebuild graphs (smoothgan export --model {bundle.path})")
    if as_json:
        typer.echo(json.dumps(bundle.to_json(), indent=2))
        return
    table = Table(title=f"smoothgan bundle {bundle.path}", show_header=False)
    for key, value in bundle.config.to_dict().items():
        table.add_row(key, str(value))
    table.add_row("domains", ", ".join(bundle.domains))
    table.add_row("weights", f"{bundle.weights_dtype}, sha256 {bundle.weights_sha256}")
    for key, value in bundle.provenance.items():
        table.add_row(f"provenance.{key}", "; ".join(map(str, value)) if isinstance(value, list) else str(value))
    for kind, records in bundle.artifacts.items():
        for key in records:
            table.add_row(f"artifact.{kind}", key)
    console.print(table)
