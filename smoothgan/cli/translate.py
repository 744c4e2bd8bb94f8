"""``smoothgan translate``: latent- or reference-guided translation and style interpolation of images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from smoothgan.translator import Result

from smoothgan.cli.app import (BackendName, BackendOption, BatchOption, Device, DeviceOption, ModelOption,
                               Precision, PrecisionOption, command, console, progress_bar)


def unique_stems(paths: list[Path]) -> list[str]:
    """Output folder names: file stems, suffixed where two inputs share a stem."""
    seen: dict[str, int] = {}
    names = []
    for path in paths:
        count = seen.get(path.stem, 0)
        seen[path.stem] = count + 1
        names.append(path.stem if count == 0 else f"{path.stem}-{count}")
    return names


def write_outputs(folder: Path, result: "Result", source: Path, gif: bool, mp4: bool, fps: int) -> None:
    """One result folder: frame_NNN.png, strip.png (source first), optional GIF/MP4, sidecar.json."""
    from smoothgan import images as imageio
    from smoothgan.fileio import write_json_atomic

    frames = list(result.images[0])
    for i, frame in enumerate(frames):
        imageio.save_image(folder / f"frame_{i:03d}.png", frame)
    imageio.save_image(folder / "strip.png", imageio.make_strip([result.sources[0], *frames]))
    if gif:
        imageio.save_gif(folder / "animation.gif", frames, fps=fps)
    if mp4:
        imageio.save_mp4(folder / "animation.mp4", frames, fps=fps)
    write_json_atomic(folder / "sidecar.json", {"input": str(source), **result.sidecar()})


@command("translate")
def translate_command(
    images: Annotated[list[Path], typer.Argument(help="Source image(s).")],
    domain: Annotated[str, typer.Option("--domain", "-t", help="Target domain name.")],
    steps: Annotated[Optional[int], typer.Option("--steps", min=2,
                                                 help="Interpolate from the source's style in N frames.")] = None,
    ref: Annotated[Optional[list[Path]], typer.Option("--ref", help="Reference image(s) giving the style.")] = None,
    num: Annotated[int, typer.Option("--num", "-n", min=1, help="Latent styles per source (no --steps).")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the latent styles.")] = 0,
    source_domain: Annotated[Optional[str], typer.Option("--source-domain",
                                                         help="Domain of the sources (inferred if absent).")] = None,
    mode: Annotated[str, typer.Option("--interp", help="lerp or slerp.")] = "lerp",
    model: ModelOption = None,
    backend: BackendOption = BackendName.torch,
    device: DeviceOption = Device.cpu,
    precision: PrecisionOption = Precision.fp32,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("smoothgan-out"),
    gif: Annotated[Optional[bool], typer.Option("--gif/--no-gif", help="GIF (default on with --steps).")] = None,
    mp4: Annotated[bool, typer.Option("--mp4/--no-mp4", help="Also write an MP4.")] = False,
    fps: Annotated[int, typer.Option("--fps", min=1, help="Frames per second of GIF/MP4.")] = 10,
    batch_size: BatchOption = 64,
) -> None:
    """Translate images to a domain, or interpolate styles with --steps.

    Examples:

    1. `smoothgan translate face.jpg --domain male --num 4 --model celeba_hq`

    2. `smoothgan translate face.jpg --domain female --steps 20 --model celeba_hq` (20 frames, strip, GIF)

    3. `smoothgan translate cat.png --domain dog --ref dog1.jpg --ref dog2.jpg --model afhq`

    4. `smoothgan translate photos/*.jpg --domain wild --backend onnxruntime --out results`

    Each input gets a folder OUT/<name>/ with frame_NNN.png, strip.png (source first), an optional GIF/MP4,
    and sidecar.json (seed, domains, steps, backend, model sha256) to reproduce it.
    """
    from smoothgan.translator import load

    translator = load(model, backend=backend.value, device=device.value, precision=precision.value,
                      max_batch=batch_size)
    if translator.bundle.is_embedded:
        console.print(f"using the embedded demo model ({translator.bundle.name}, "
                      f"domains {', '.join(translator.domains)}); pass --model for your own")
    translator.bundle.domain_index(domain)  # fail fast on a bad domain, before any work
    if source_domain is not None:
        translator.bundle.domain_index(source_domain)
    names = unique_stems(images)
    write_gif = steps is not None if gif is None else gif
    with progress_bar("translating", len(images)) as advance:
        for path, name in zip(images, names):
            if steps is None:
                result = translator.translate(path, domain, num=num, seed=seed, ref=ref)
            else:
                result = translator.interpolate(path, domain, steps=steps, seed=seed, ref=ref,
                                                source_domain=source_domain, mode=mode)
                console.print(f"{path.name}: source domain {result.metadata['source_domains'][0]}"
                              + (" (inferred)" if result.metadata["source_domain_inferred"] else ""))
            write_outputs(out / name, result, path, gif=write_gif, mp4=mp4, fps=fps)
            advance(1)
    console.print(f"wrote {len(images)} result folder(s) under {out}")
