"""Make docs/figures/align-astronaut.png: a real photo, its aligned face crop, and the translation pasted back.

Run from the repository root: ``python docs/figures/make_align_figure.py [--model BUNDLE] [--domain D]``. Without
``--model`` it uses the embedded demo model (a 32 px model of coloured shapes: the face becomes a shape, which
shows where the crop goes and how it is blended back, not what a face model does).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import skimage

from smoothgan import faces, images
from smoothgan.translator import load

HEIGHT = 256


def _scaled(image: np.ndarray, height: int = HEIGHT) -> np.ndarray:
    return images.resize(image, (height, round(image.shape[1] * height / image.shape[0])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="bundle (default: the embedded demo model)")
    parser.add_argument("--domain", default=None, help="target domain (default: the model's last)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("align-astronaut.png")))
    args = parser.parse_args()
    photo = images.load(Path(skimage.__file__).parent / "data" / "astronaut.png")
    with load(args.model) as translator:
        domain = args.domain or translator.domains[-1]
        (face,) = faces.align(photo, size=256, max_faces=1)
        small = faces.align(photo, size=translator.config.img_size, max_faces=1)[0]
        result = translator.translate(small.crop, domain, seed=0)
        pasted = small.paste(result.images[0, 0], onto=photo)
    panels = [_scaled(photo), face.crop, _scaled(pasted)]
    images.save_image(args.out, images.make_strip(panels, padding=8))
    print(f"wrote {args.out} ({translator.bundle.name}, domain {domain})")


if __name__ == "__main__":
    main()
