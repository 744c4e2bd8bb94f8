"""Baseline StarGAN v2 vs smoothed StarGAN v2 on the procedural dataset, with identical settings and seeds.

One command reproduces everything (data, both trainings, evaluation, domain classifier, sample strips, table)::

    python3 experiments/ablation.py --out experiments/runs/ablation --iters 3000 --img-size 32 --preset tiny

Steps: ``smoothgan data synth`` -> ``smoothgan train --preset small [--baseline]`` (same seed, iterations,
batch) -> ``smoothgan import`` of the last checkpoint -> ``smoothgan eval`` (PS inter/intra in both distance
modes, LPIPS diversity, content preservation against the dataset's known object position/size) -> the library's
domain classifier (:mod:`smoothgan.metrics.domain_classifier`, trained first and refused below 98% validation
accuracy, or ``--classifier DIR`` to reuse one) classifies latent-guided translations -> ``EXPERIMENTS.md``-ready
markdown + JSON + PNG strips. Every CLI call goes through the same commands a user runs.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from smoothgan import images, load
from smoothgan.metrics.domain_classifier import (
    DomainClassifier,
    load_domain_classifier,
    train_domain_classifier,
    translation_domain_accuracy,
)
from smoothgan.trainer.data import scan_domains
from smoothgan.trainer.options import preset_options

VARIANTS = ("baseline", "smoothed")


def run(args: list[str]) -> float:
    """Run a smoothgan CLI command, echoing it; returns its wall time."""
    print("$ smoothgan " + " ".join(shlex.quote(a) for a in args), flush=True)
    start = time.time()
    subprocess.run([sys.executable, "-c", "from smoothgan.cli import main; main()", *args], check=True)
    return time.time() - start


def judge(data: Path, domains: list[str], img_size: int, seed: int, saved: Path | None, out: Path) -> DomainClassifier:
    """The domain classifier that judges translations: ``saved`` if given, else trained on ``data`` and saved
    under ``out``. Refused (one-line error) below 98% validation accuracy, before any training run starts."""
    if saved is not None:
        classifier = load_domain_classifier(saved)
    else:
        classifier = train_domain_classifier(data, domains, img_size, epochs=12, seed=seed, target=0.995)
        classifier.save(out, overwrite=True)
    classifier.check()
    return classifier


def strips(bundles: dict[str, Path], root: Path, domains: list[str], out: Path, sources: int = 3) -> Path:
    """Inter-domain interpolations (20 steps) of the same sources and seeds, baseline above smoothed."""
    rows = []
    files = [images.list_images(root / "val" / domains[0])[i] for i in range(sources)]
    for variant, bundle in bundles.items():
        result = load(bundle).interpolate(files, domains[1], steps=20, seed=0, source_domain=domains[0])
        rows += [images.make_strip(list(frames), padding=1) for frames in result.images]
    grid = np.concatenate([np.pad(r, ((0, 2), (0, 0), (0, 0)), constant_values=255) for r in rows])
    images.save_image(out, grid)
    return out


TABLE_KEYS = (
    ("PS inter (official)", "ps_inter_20_official"), ("PS inter (metric)", "ps_inter_20_metric"),
    ("PS intra (official)", "ps_intra_20_official"), ("PS intra (metric)", "ps_intra_20_metric"),
    ("alignment inter (metric)", "alignment_inter_20_metric"), ("uniformity inter (metric)", "uniformity_inter_20_metric"),
    ("LPIPS diversity, latent", "lpips_latent"), ("LPIPS diversity, reference", "lpips_reference"),
    ("content LPIPS(source, output)", "content_lpips_latent"), ("object position error (px)", "content_position_err"),
    ("object size error (px)", "content_size_err"), ("object not found (fraction)", "content_not_found"),
)


def _cell(value: dict | None) -> str:
    if not value or value.get("mean") is None:
        return "-"
    interval = " [{:.3f}, {:.3f}]".format(*value["ci95"]) if value.get("ci95") else ""
    return f"{value['mean']:.3f}{interval} (n={value['count']})"


def markdown(result: dict) -> str:
    """The ablation table (like the paper's Table 4): metric rows, baseline vs smoothed columns."""
    variants = result["variants"]
    lines = ["| metric | baseline (StarGAN v2) | smoothed |", "|---|---|---|"]
    for label, key in TABLE_KEYS:
        lines.append(f"| {label} | " + " | ".join(_cell(variants[v]["eval"].get(key)) for v in VARIANTS) + " |")
    lines.append("| domain accuracy of translations | " + " | ".join(
        f"{variants[v]['domain_accuracy']:.3f}" for v in VARIANTS) + " |")
    lines.append("| training wall time (s) | " + " | ".join(str(variants[v]["train_seconds"]) for v in VARIANTS)
                 + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("experiments/runs/ablation"))
    parser.add_argument("--iters", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--preset", default="tiny", help="training preset (its model size must match --img-size)")
    parser.add_argument("--per-domain", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ema-beta", type=float, default=0.99)
    parser.add_argument("--num-pairs", type=int, default=20, help="PS/eval sources per domain")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lpips-weights", default=None, help="AlexNet weights; default: random backbone")
    parser.add_argument("--classifier", type=Path, default=None, help="saved domain classifier (default: train one)")
    opts = parser.parse_args()
    out: Path = opts.out
    data = out / "data"
    out.mkdir(parents=True, exist_ok=True)
    lpips_flags = ["--lpips-weights", opts.lpips_weights] if opts.lpips_weights else ["--lpips-random-backbone"]
    backbone = f"alexnet ({opts.lpips_weights})" if opts.lpips_weights else "alexnet (random init)"
    if not (data / "synth.json").exists():
        run(["data", "synth", str(data), "--per-domain", str(opts.per_domain), "--img-size", str(opts.img_size),
             "--seed", str(opts.seed)])
    domains = scan_domains(data / "train")
    classifier = judge(data, domains, opts.img_size, opts.seed, opts.classifier, out / "classifier")
    summary: dict[str, dict] = {}
    bundles: dict[str, Path] = {}
    # One options file for both runs: the baseline differs only by --baseline (smoothing losses off), so the
    # comparison has identical hyper-parameters, seeds, batches and schedules.
    base = preset_options(opts.preset, data, seed=opts.seed, batch_size=opts.batch_size).with_iters(opts.iters)
    ticks = max(1, opts.iters // 10)
    # EMA beta 0.99 instead of 0.999: the EMA copies start from the default init (REFERENCE 4.4), and 0.999 would
    # leave 0.999**iters of it in a short run (22% after 1,500 iterations).
    base = base.replace(print_every=ticks, sample_every=opts.iters, save_every=opts.iters, keep_last=1,
                        ema_beta=opts.ema_beta)
    options_file = out / "options.json"
    options_file.write_text(base.to_json())
    for variant in VARIANTS:
        flags = ["--baseline"] if variant == "baseline" else []
        runs = out / "runs"
        seconds = run(["train", str(data), "--options", str(options_file), *flags, "--out", str(runs), "--name",
                       variant, "--device", opts.device, *lpips_flags])
        run_dir = sorted(runs.glob(f"*-{variant}"))[-1]
        checkpoint = sorted((run_dir / "checkpoints").iterdir())[-1]
        bundles[variant] = out / f"bundle-{variant}"
        run(["import", str(checkpoint), "--out", str(bundles[variant]), "--overwrite"])
        report = out / f"eval-{variant}.json"
        run(["eval", "--model", str(bundles[variant]), "--data", str(data), "--metrics", "ps,lpips,content",
             "--num-pairs", str(opts.num_pairs), "--num-outs", "5", "--seed", str(opts.seed), *lpips_flags,
             "--out", str(report), "--no-progress"])
        summary[variant] = {"train_seconds": round(seconds, 1), "run": str(run_dir), "checkpoint": checkpoint.name,
                            "eval": json.loads(report.read_text())["metrics"]}
    for variant, bundle in bundles.items():
        summary[variant]["domain_accuracy"] = translation_domain_accuracy(load(bundle), data, classifier).accuracy
    strip = strips(bundles, data, domains, out / "interpolations.png")
    result = {"settings": vars(opts) | {"out": str(out), "lpips_backbone": backbone}, "domains": domains,
              "classifier_val_accuracy": classifier.val_accuracy, "variants": summary, "strip": str(strip)}
    (out / "ablation.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "ablation.md").write_text(markdown(result))
    print(json.dumps({v: {k: s[k] for k in ("train_seconds", "domain_accuracy")} for v, s in summary.items()}))


if __name__ == "__main__":
    main()
