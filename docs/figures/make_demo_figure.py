"""Make the README's demo pictures from the embedded model and its bundled samples, as `smoothgan demo` runs them.

Run from the repository root: ``python docs/figures/make_demo_figure.py``. Writes

- ``docs/figures/demo-translations.png``: one row per sample: the input, then ``--num`` latent styles into every
  other domain (seed 0, the demo's settings);
- ``docs/figures/demo-morph.gif``: every sample morphing into every other domain (inter-domain interpolation,
  ``--steps`` frames from the sample's own style, seed 0), played forth and back.

The model is 32 px: pictures are enlarged ``--scale`` times with nearest-neighbour so pixels stay visible.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from smoothgan import images
from smoothgan.bundle import EMBEDDED_BUNDLE, SAMPLES_DIR
from smoothgan.translator import load

HERE = Path(__file__).parent


def _enlarge(image: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def _pad(image: np.ndarray, right: int = 0, bottom: int = 0) -> np.ndarray:
    return np.pad(image, ((0, bottom), (0, right), (0, 0)), constant_values=255)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=4, help="latent styles per target domain")
    parser.add_argument("--steps", type=int, default=20, help="interpolation frames")
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE)
    opts = parser.parse_args()
    samples = images.list_images(SAMPLES_DIR)
    rows, morphs = [], []
    with load(EMBEDDED_BUNDLE, backend="torch") as translator:
        for sample in samples:
            source_domain = sample.stem.split("-")[0]
            targets = [d for d in translator.domains if d != source_domain]
            source = images.load(sample)
            tiles = [_pad(source, right=8)]
            for target in targets:
                outputs = translator.translate(source, target, num=opts.num, seed=0).images[0]
                tiles.append(_pad(images.make_strip(list(outputs), padding=1), right=8))
                frames = translator.interpolate(source, target, steps=opts.steps, seed=0,
                                                source_domain=source_domain).images[0]
                morphs.append(list(frames))
            rows.append(_pad(np.concatenate(tiles, axis=1), bottom=4))
    grid = np.concatenate(rows, axis=0)
    images.save_image(opts.out / "demo-translations.png", _enlarge(grid, opts.scale))
    per_row = len(morphs) // len(samples)
    movie = []
    for t in range(opts.steps):
        tiles = [_pad(_enlarge(m[t], opts.scale), right=6, bottom=6) for m in morphs]
        lines = [np.concatenate(tiles[r * per_row:(r + 1) * per_row], axis=1) for r in range(len(samples))]
        movie.append(np.concatenate(lines, axis=0))
    images.save_gif(opts.out / "demo-morph.gif", movie, fps=8, boomerang=True)
    print(f"wrote {opts.out / 'demo-translations.png'} and {opts.out / 'demo-morph.gif'} "
          f"({len(samples)} samples, {opts.steps} frames)")


if __name__ == "__main__":
    main()
