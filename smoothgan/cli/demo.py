"""``smoothgan demo``: the embedded model on the bundled samples, end to end, right after installing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from smoothgan.cli.app import (BackendName, BackendOption, Device, DeviceOption, Precision, PrecisionOption, command,
                               console, open_translator)

if TYPE_CHECKING:
    from smoothgan.translator import Translator


@command("demo")
def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("smoothgan-demo"),
    steps: Annotated[int, typer.Option("--steps", help="Interpolation frames (2 to 1000).")] = 20,
    num: Annotated[int, typer.Option("--num", help="Latent styles per translation (1 to 1000).")] = 4,
    backend: BackendOption = BackendName.auto,
    device: DeviceOption = Device.cpu,
    precision: PrecisionOption = Precision.fp32,
) -> None:
    """Translate the bundled sample images with the embedded smoothed model, and interpolate between domains.

    Examples:

    1. `smoothgan demo` (writes smoothgan-demo/)

    2. `smoothgan demo --steps 40 --out /tmp/demo`

    For every sample: `OUT/SAMPLE-to-DOMAIN/` (num latent styles) and `OUT/SAMPLE-interp-DOMAIN/`
    (frames, strip, GIF, sidecar), as `smoothgan translate` writes them.
    """
    from smoothgan.bundle import EMBEDDED_BUNDLE

    with open_translator(str(EMBEDDED_BUNDLE), backend, device, precision) as translator:
        _demo(translator, out, num, steps)


def _demo(translator: "Translator", out: Path, num: int, steps: int) -> None:
    """Translations and an interpolation of every bundled sample, one result folder each."""
    from smoothgan import images
    from smoothgan.bundle import SAMPLES_DIR
    from smoothgan.cli.translate import cli_flags

    domains = translator.domains
    samples = images.list_images(SAMPLES_DIR)
    with cli_flags():  # one-line errors before anything is written
        translator.check_request(domains[-1], num=num)
        translator.check_request(domains[-1], steps=steps)
    console.print(f"embedded model {translator.bundle.name}: {translator.config.img_size}px, domains "
                  f"{', '.join(domains)}, on {translator.backend.describe()}; {len(samples)} sample image(s)")
    for sample in samples:
        source = sample.stem.split("-")[0] if sample.stem.split("-")[0] in domains else None
        targets = [d for d in domains if d != source]
        written = []
        for target in targets:
            result = translator.translate(sample, target, num=num, seed=0)
            folder = out / f"{sample.stem}-to-{target}"
            result.save(folder, input=sample)
            written.append(f"{target} x{num} -> {folder}/")
        result = translator.interpolate(sample, targets[0], steps=steps, seed=0, source_domain=source)
        folder = out / f"{sample.stem}-interp-{targets[0]}"
        result.save(folder, input=sample, gif=True)
        written.append(f"morph to {targets[0]} ({steps} frames) -> {folder / 'animation.gif'}")
        console.print(f"{sample.name}: " + "; ".join(written), highlight=False)
    console.print(f"wrote {len(samples) * (len(domains))} result folder(s) under {str(out)}; open the "
                  "animation.gif files to see the morphs", highlight=False)
