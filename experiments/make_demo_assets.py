"""Make a trained model the embedded demo: fp16 bundle, its fp32 ONNX graphs, and samples the judge agrees on.

    python3 experiments/make_demo_assets.py /tmp/conv-runs/00001-smoothed-s0/checkpoints/step-024000 \\
        /tmp/shapes32 --judge /tmp/judge32

``MODEL`` is a training checkpoint (``step-NNNNNN/``, its EMA networks are used, as ``smoothgan import`` does) or
a bundle. The embedded bundle (``smoothgan/assets/demo``) is replaced by an fp16 copy with provenance, then
``smoothgan.export.onnx.export_onnx`` writes and validates its fp32 graphs (so a bare install without torch runs
the demo). The samples (``smoothgan/assets/samples``, one or more per domain) are the validation images on which
the *shipped* model's translations are most clearly the target domain: every candidate is translated exactly as
``smoothgan demo`` does (``--num 4``, seed 0, into every other domain) and scored by the judge's lowest
probability of the target over those outputs; ties go to the smaller object position error. The judge's
accuracy on all val images and on the chosen samples is printed and recorded in the bundle's provenance.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from smoothgan import images, load
from smoothgan.bundle import EMBEDDED_BUNDLE, SAMPLES_DIR, ModelBundle, load_bundle, save_bundle
from smoothgan.export.onnx import export_onnx
from smoothgan.metrics.domain_classifier import load_domain_classifier, translation_domain_accuracy
from smoothgan.trainer.synth import estimate_content, read_attributes

DEMO_NUM = 4  # smoothgan demo's defaults: --num 4, seed 0
DEMO_SEED = 0


def source_bundle(model: Path, tmp: Path) -> ModelBundle:
    """A bundle from a training checkpoint (EMA networks) or an existing bundle."""
    if (model / "checkpoint.json").is_file():
        from smoothgan.trainer.checkpoint import export_bundle

        return export_bundle(model, tmp / "bundle")
    return load_bundle(model)


def score_candidates(translator: Any, judge: Any, data: Path, domain: str, candidates: int,
                     attributes: dict[str, Any]) -> list[tuple[float, float, Path]]:
    """(lowest judge probability of the target, mean position error in px, path) per val image of ``domain``."""
    domains = list(judge.config.domains)
    scored = []
    for path in images.list_images(data / "val" / domain)[:candidates]:
        source = images.load(path)
        worst, errors = 1.0, []
        for target in (d for d in translator.domains if d != domain):
            outputs = list(translator.translate(source, target, num=DEMO_NUM, seed=DEMO_SEED).images[0])
            worst = min(worst, float(judge.probabilities(outputs)[:, domains.index(target)].min()))
            row = attributes.get(path.relative_to(data).as_posix())
            for output in outputs:
                found = estimate_content(output)
                if row is not None and math.isfinite(found.cx):
                    errors.append(math.hypot(found.cx - row["cx"], found.cy - row["cy"]) * output.shape[0])
        scored.append((worst, float(np.mean(errors)) if errors else math.inf, path))
    return sorted(scored, key=lambda s: (-s[0], s[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="training checkpoint step-NNNNNN/ or bundle")
    parser.add_argument("data", type=Path, help="data root with val/<domain>/ images (smoothgan data synth)")
    parser.add_argument("--judge", type=Path, required=True, help="saved domain classifier (>= 98%% val accuracy)")
    parser.add_argument("--per-domain", type=int, default=1)
    parser.add_argument("--candidates", type=int, default=100, help="val images tried per domain")
    parser.add_argument("--bundle-out", type=Path, default=EMBEDDED_BUNDLE)
    parser.add_argument("--samples-out", type=Path, default=SAMPLES_DIR)
    opts = parser.parse_args()

    judge = load_domain_classifier(opts.judge)
    judge.check()
    with tempfile.TemporaryDirectory() as tmp:
        source = source_bundle(opts.model, Path(tmp))
        provenance = {**source.provenance, "name": "smoothgan-demo", "trained_from": str(opts.model),
                      "note": "smoothed StarGAN v2 trained on CPU on the procedural shapes (EXPERIMENTS.md)"}
        save_bundle(opts.bundle_out, source.build_networks(), source.config, source.domains, provenance,
                    dtype="float16", overwrite=True)
    for record in export_onnx(load_bundle(opts.bundle_out), "fp32"):
        passed = record.validation is not None and record.validation.get("passed")
        print(f"{record.path}: validation {'passed' if passed else 'FAILED'}")
    attributes = {row["file"]: row for row in read_attributes(opts.data)}
    with load(opts.bundle_out, backend="torch") as translator:
        accuracy = translation_domain_accuracy(translator, opts.data, judge)
        print(f"shipped (fp16) model: translation domain accuracy {accuracy.accuracy:.3f} (n={accuracy.count})")
        chosen = []
        for domain in translator.domains:
            scored = score_candidates(translator, judge, opts.data, domain, opts.candidates, attributes)
            chosen += [(domain, i, s) for i, s in enumerate(scored[:opts.per_domain])]
    if opts.samples_out.exists():
        shutil.rmtree(opts.samples_out)
    opts.samples_out.mkdir(parents=True)
    for domain, i, (worst, error, path) in chosen:
        images.save_image(opts.samples_out / f"{domain}-{i:03d}.png", images.load(path))
        print(f"sample {domain}-{i:03d} <- {path.relative_to(opts.data)}: lowest judge probability of the target "
              f"{worst:.3f}, position error {error:.2f} px")
    print(f"wrote {opts.bundle_out} and {len(chosen)} samples in {opts.samples_out}")


if __name__ == "__main__":
    main()
