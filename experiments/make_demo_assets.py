"""Package a trained bundle as the embedded demo model (fp16 safetensors) with one sample image per domain.

    python3 experiments/make_demo_assets.py experiments/runs/ablation/bundle-smoothed experiments/runs/ablation/data
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from smoothgan import images
from smoothgan.bundle import EMBEDDED_BUNDLE, SAMPLES_DIR, load_bundle, save_bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("data", type=Path, help="data root with val/<domain>/ images")
    parser.add_argument("--per-domain", type=int, default=1)
    opts = parser.parse_args()
    source = load_bundle(opts.bundle)
    provenance = {**source.provenance, "name": "smoothgan-demo", "trained_from": str(opts.bundle),
                  "note": "small smoothed model trained on CPU on the procedural shapes data (see EXPERIMENTS.md)"}
    save_bundle(EMBEDDED_BUNDLE, source.build_networks(), source.config, source.domains, provenance,
                dtype="float16", overwrite=True)
    if SAMPLES_DIR.exists():
        shutil.rmtree(SAMPLES_DIR)
    for domain in source.domains:
        for i, path in enumerate(images.list_images(opts.data / "val" / domain)[: opts.per_domain]):
            images.save_image(SAMPLES_DIR / f"{domain}-{i:03d}.png", images.load(path))
    print(f"wrote {EMBEDDED_BUNDLE} and {len(list(SAMPLES_DIR.iterdir()))} samples in {SAMPLES_DIR}")


if __name__ == "__main__":
    main()
