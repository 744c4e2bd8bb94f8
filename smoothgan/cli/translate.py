"""``smoothgan translate``: latent- or reference-guided translation and style interpolation of files and folders."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from smoothgan.cli.app import (BackendName, BackendOption, Device, DeviceOption, ModelOption, Precision,
                               PrecisionOption, announce, choice_enum, command, console, err_console,
                               open_translator)
from smoothgan.jobs import LAYOUTS

if TYPE_CHECKING:
    from rich.progress import Task

    from smoothgan.jobs import FolderSummary, ItemResult


Layout = choice_enum("Layout", LAYOUTS)
Align = choice_enum("Align", ("auto", "on", "off"))


@contextmanager
def cli_flags() -> Iterator[None]:
    """Name the CLI flags in the library's argument errors: ``steps must be ...`` -> ``--steps must be ...``."""
    from smoothgan.errors import InputError

    try:
        yield
    except InputError as exc:
        flag = re.match(r"^(num|steps|seed|max faces|paste-back) ", str(exc))
        if flag is None:
            raise
        raise InputError("--" + flag[1].replace(" ", "-") + str(exc)[len(flag[1]):]) from None


def _rate_column() -> object:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Images per second and ETA from the job's average so far (results arrive in bursts, one per batch, so
        rich's windowed speed would swing between zero and thousands)."""

        def render(self, task: "Task") -> Text:
            elapsed = task.elapsed or 0.0
            if not task.completed or elapsed <= 0:
                return Text("-- img/s, ETA --:--")
            rate = task.completed / elapsed
            remaining = int(((task.total or task.completed) - task.completed) / rate)
            return Text(f"{rate:.1f} img/s, ETA {remaining // 3600}:{remaining // 60 % 60:02d}:{remaining % 60:02d}")

    return RateColumn()


@command("translate")
def translate_command(
    inputs: Annotated[list[str], typer.Argument(
        help="Source images: files, folders (recursive) or quoted glob patterns ('photos/**/*.jpg').",
        show_default=False)],
    domain: Annotated[str, typer.Option("--domain", "-t", help="Target domain name.")],
    steps: Annotated[Optional[int], typer.Option(
        "--steps", help="Interpolate from the source's style in N frames (2 to 1000, both ends included).")] = None,
    ref: Annotated[Optional[list[Path]], typer.Option("--ref", help="Reference image(s) giving the style "
                                                                     "(one style each; one with --steps).")] = None,
    num: Annotated[int, typer.Option("--num", "-n", help="Latent styles per source, 1 to 1000 (not with --ref "
                                                         "or --steps).")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the latent styles, 0 to 2**32-1.")] = 0,
    source_domain: Annotated[Optional[str], typer.Option("--source-domain",
                                                         help="Domain of the sources (inferred if absent).")] = None,
    mode: Annotated[str, typer.Option("--interp", help="lerp or slerp.")] = "lerp",
    model: ModelOption = None,
    backend: BackendOption = BackendName.auto,
    device: DeviceOption = Device.cpu,
    precision: PrecisionOption = Precision.fp32,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("smoothgan-out"),
    layout: Annotated[Layout, typer.Option(  # type: ignore[valid-type]
        "--layout", help="folders: `OUT/NAME/` per input (frames, strip, GIF, sidecar); flat: "
                         "`OUT/NAME_DOMAIN[_K].png`.")] = Layout("folders"),
    resume: Annotated[bool, typer.Option("--resume", help="Skip inputs that OUT/manifest.jsonl records as done "
                                                          "for the same job.")] = False,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="Record bad inputs in the manifest and go on "
                                                                  "(exit code 2 if any failed).")] = False,
    gif: Annotated[Optional[bool], typer.Option("--gif/--no-gif", help="GIF (default on with --steps).")] = None,
    mp4: Annotated[bool, typer.Option("--mp4/--no-mp4", help="Also write an MP4.")] = False,
    fps: Annotated[float, typer.Option("--fps", help="Frames per second of GIF/MP4.")] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Generator rows per engine call, across "
                                                                 "images (an image with K frames is K rows).")] = 64,
    workers: Annotated[int, typer.Option("--workers", help="Decoding threads.")] = 2,
    align: Annotated[Align, typer.Option(
        "--align", help="Translate the faces of each photo, aligned as CelebA-HQ crops; auto: on for bundles "
        "imported with --align face (models with a FAN), off otherwise.")] = Align.auto,
    paste_back: Annotated[bool, typer.Option(
        "--paste-back", help="With --align: paste the translated faces back into the full-size photo (one photo "
        "per frame).")] = False,
    max_faces: Annotated[Optional[int], typer.Option("--max-faces", help="With --align: the largest N faces "
                                                                          "of each photo.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or per-image lines.")] = False,
) -> None:
    """Translate images to a domain, or interpolate styles with --steps; files, folders or globs.

    Examples:

    1. `smoothgan translate face.jpg --domain male --num 4 --model celeba_hq`

    2. `smoothgan translate face.jpg --domain female --steps 20 --model celeba_hq` (20 frames, strip, GIF)

    3. `smoothgan translate cat.png --domain dog --ref dog1.jpg --ref dog2.jpg --model afhq`

    4. `smoothgan translate photos/ --domain wild --layout flat --out results --keep-going`

    5. `smoothgan translate photos/ --domain wild --layout flat --out results --resume` (after an interruption)

    Inputs are checked (exists, readable, an image) before anything is written. Output names mirror the inputs'
    paths relative to their common folder; clashing names get -2, -3... With --layout folders each input gets
    `OUT/NAME/` with frame_NNN.png, strip.png (source first), an optional GIF/MP4 and sidecar.json; with flat,
    `OUT/NAME_DOMAIN.png` (or `_K` per style/frame). `OUT/manifest.jsonl` gets one line per input (input,
    outputs, domain, seed, model sha256, backend, status, error), written after its outputs.
    Limits: --steps 2..1000, --num 1..1000, and a call's frames and batches must fit in half the memory.
    """
    from smoothgan import jobs
    from smoothgan.errors import InputError
    from smoothgan.translator import check_count

    check_count("--batch-size", batch_size, 1, 2**20)
    check_count("--workers", workers, 1, 64)
    if not fps > 0:
        raise InputError(f"--fps must be positive, got {fps}")
    with open_translator(model, backend, device, precision, batch_size) as translator:
        with cli_flags():
            options = jobs.make_options(translator, domain, steps=steps, num=num, seed=seed, ref=ref,
                                        source_domain=source_domain, mode=mode,
                                        align=None if align.value == "auto" else align.value == "on",
                                        paste_back=paste_back, max_faces=max_faces)
        plan = jobs.plan_folder(translator, inputs, out, options, layout=layout.value, resume=resume,
                                keep_going=keep_going, workers=max(4, workers))
        if not quiet:
            announce(translator)
        summary = _run(translator, plan, batch_size, workers, keep_going, gif, mp4, fps, quiet)
    _report(summary, layout.value)


def _run(translator: object, plan: object, batch_size: int, workers: int, keep_going: bool, gif: Optional[bool],
         mp4: bool, fps: float, quiet: bool) -> "FolderSummary":
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from smoothgan import jobs

    assert isinstance(plan, jobs.FolderPlan)
    write_gif = plan.options.steps is not None if gif is None else gif
    skipped = len(plan.items) - len(plan.todo)
    if skipped and not quiet:
        err_console.print(f"resume: {skipped} of {len(plan.items)} input(s) already done", highlight=False)
    show_bar = not quiet and len(plan.todo) > 1
    progress = Progress(TextColumn("translating"), BarColumn(), MofNCompleteColumn(), _rate_column(),
                        console=err_console, disable=not show_bar)
    with progress:
        task = progress.add_task("translating", total=len(plan.todo))

        def advance(summary: "FolderSummary", item: "ItemResult") -> None:
            progress.advance(task, 1)
            if quiet:
                return
            if item.error is not None:
                progress.console.print(f"failed: {item.error}", highlight=False)
            elif item.result is not None and "source_domains" in item.result.metadata:
                inferred = " (inferred)" if item.result.metadata.get("source_domain_inferred") else ""
                progress.console.print(f"{str(item.input.name)}: source domain "
                                       f"{item.result.metadata['source_domains'][0]}{inferred}",
                                       highlight=False)

        return jobs.execute(translator, plan, batch_size=batch_size, workers=workers,  # type: ignore[arg-type]
                            keep_going=keep_going, gif=write_gif, mp4=mp4, fps=fps, progress=advance)


def _report(summary: "FolderSummary", layout: str) -> None:
    rate = summary.done / summary.seconds if summary.seconds > 0 else 0.0
    parts = [f"translated {summary.done}"]
    if summary.skipped:
        parts.append(f"skipped {summary.skipped} already done")
    if summary.failed:
        parts.append(f"failed {summary.failed}")
    what = "result folder(s)" if layout == "folders" else "input(s)"
    console.print(f"{', '.join(parts)} of {summary.total} {what} ({rate:.1f} img/s); results in "
                  f"{str(summary.out)}, manifest {str(summary.manifest)}", highlight=False)
    if summary.failed:
        from smoothgan.errors import InputError

        raise InputError(f"{summary.failed} of {summary.total} input(s) failed; see {summary.manifest}")
