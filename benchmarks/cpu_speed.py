"""CPU speed against the official eager code, in one run (issue 11, part 2): ``python benchmarks/cpu_speed.py``.

Same random He-initialised AFHQ-like 256x256 weights (seed 0) for every variant:

* ``official``: ``tests/official_reference.py`` (the project's restatement of the official forward), fp32 eager,
  ``torch.no_grad``, NCHW; its interpolation runs one generator call per frame, as the official
  ``utils.interpolate`` does.
* ``torch``: smoothgan's torch backend (CPU default: the fused generator, channels_last).
* ``ort fp32`` / ``ort int8``: the ONNX Runtime backend on the exported / quantized graphs.

Tasks, each through the backend interface (numpy in and out): ``one`` = mapping network + generator for one
image; ``interp20`` = style encoder on the source + mapping network for the target + 20 lerped styles through
the generator (smoothgan: one batched call); ``bs8``/``bs64`` = mapping + generator throughput of ORT fp32 at
batch 8 and 64 (the raw rate the folder target compares against). Rounds are interleaved (every variant once
per round, in turn) and medians reported, so load from other processes on a shared machine hits all variants
alike; ``uptime`` load is recorded before and after. Bundle, graphs and int8 quantisation are cached in
``--work`` (keyed by the weights' sha256) so a rerun only times.

Writes ``benchmarks/results/cpu_speed-<cpu>.json`` and prints a markdown table for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import official_reference as official  # noqa: E402  (tests/ helper, the project's own restatement)

from smoothgan.artifacts import has_onnx_graphs, onnx_path, psnr_db, read_metadata  # noqa: E402
from smoothgan.backends import create_backend  # noqa: E402
from smoothgan.bench import machine_info  # noqa: E402
from smoothgan.bundle import ModelBundle, load_bundle, save_bundle  # noqa: E402
from smoothgan.config import get_preset  # noqa: E402
from smoothgan.models.stargan_v2 import build_networks, he_init  # noqa: E402

STEPS = 20
PRESET = "stargan_v2-afhq"


def lscpu() -> dict[str, str]:
    """CPU model and the SIMD features that decide the int8 kernels (AVX-512 VNNI, AVX2)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"model": platform.processor() or "unknown"}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    return {"model": fields.get("Model name", "unknown").strip(), "cpus": fields.get("CPU(s)", "?").strip(),
            "threads_per_core": fields.get("Thread(s) per core", "?").strip(),
            "simd": " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags)}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def prepare(work: Path, log: Callable[[str], None]) -> tuple[ModelBundle, dict[str, torch.nn.Module]]:
    """The bundle (He-init seed 0), its fp32 graphs and int8 graphs, built once and reused when current."""
    from smoothgan.export.onnx import export_onnx
    from smoothgan.export.quantize import quantize_bundle

    spec = get_preset(PRESET)
    torch.manual_seed(0)
    nets = build_networks(spec.config)
    for net in nets.values():
        net.apply(he_init)
        net.eval()
    path = work / "afhq-he-seed0"
    bundle = load_bundle(path) if (path / "smoothgan.json").is_file() else None
    if bundle is None:
        bundle = save_bundle(path, nets, spec.config, spec.domains, {"name": PRESET, "kind": "He init, seed 0"})
    if not has_onnx_graphs(bundle, "fp32"):
        log("exporting fp32 ONNX graphs (once)")
        export_onnx(bundle, "fp32", validate=False)
    if not has_onnx_graphs(bundle, "int8"):
        log("quantizing int8 graphs (once)")
        quantize_bundle(bundle, progress=log)
    return bundle, nets


def official_modules(nets: dict[str, torch.nn.Module]) -> dict[str, torch.nn.Module]:
    cfg = get_preset(PRESET).config
    mods = {"generator": official.Generator(cfg.img_size, cfg.style_dim, cfg.max_conv_dim, w_hpf=0),
            "mapping_network": official.MappingNetwork(cfg.latent_dim, cfg.style_dim, cfg.num_domains),
            "style_encoder": official.StyleEncoder(cfg.img_size, cfg.style_dim, cfg.num_domains, cfg.max_conv_dim)}
    for name, module in mods.items():
        module.load_state_dict(nets[name].state_dict())
        module.eval()
    return mods


def lerp_styles(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    t = (np.arange(STEPS, dtype=np.float32) / (STEPS - 1))[:, None]
    return (start + t * (end - start)).astype(np.float32)


def tasks_for(name: str, run: Any, inputs: dict[str, np.ndarray]) -> dict[str, Callable[[], np.ndarray]]:
    """name -> {task: call}; ``run`` is a backend, or the official modules for ``official``."""
    x, z, d, src = inputs["image"], inputs["latent"], inputs["domain"], inputs["source_domain"]
    if name == "official":
        t = {k: torch.from_numpy(v) for k, v in inputs.items()}

        def one() -> np.ndarray:
            with torch.no_grad():
                return run["generator"](t["image"], run["mapping_network"](t["latent"], t["domain"])).numpy()

        def interp() -> np.ndarray:
            with torch.no_grad():
                start = run["style_encoder"](t["image"], t["source_domain"]).numpy()
                end = run["mapping_network"](t["latent"], t["domain"]).numpy()
                frames = [run["generator"](t["image"], torch.from_numpy(s[None])) for s in lerp_styles(start, end)]
                return torch.cat(frames).numpy()

        return {"one": one, "interp20": interp}

    def one_backend() -> np.ndarray:
        return run.generate(x, run.mapping(z, d))

    def interp_backend() -> np.ndarray:
        styles = lerp_styles(run.encode_style(x, src), run.mapping(z, d))
        return run.generate(np.repeat(x, STEPS, axis=0), styles)

    return {"one": one_backend, "interp20": interp_backend}


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def summary(times: list[float]) -> dict[str, float]:
    return {"runs": len(times), "median_s": statistics.median(times), "p10_s": float(np.percentile(times, 10)),
            "p90_s": float(np.percentile(times, 90)), "min_s": min(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "smoothgan-cpu-speed")
    parser.add_argument("--rounds-one", type=int, default=5)
    parser.add_argument("--rounds-interp", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f}s] {message}", flush=True)

    cpu = lscpu()
    load_before = uptime()
    log(f"{cpu['model']} ({cpu['cpus']} CPUs, {cpu['simd']}); {load_before}")
    args.work.mkdir(parents=True, exist_ok=True)
    bundle, nets = prepare(args.work, log)
    int8_meta = {n: read_metadata(onnx_path(bundle, n, "int8")) for n in ("style_encoder", "generator")}

    rng = np.random.default_rng(0)
    from smoothgan.images import to_model_input
    from smoothgan.trainer.synth import render, sample_attributes

    # a procedural shape image (seed 2: neither the int8 calibration nor the held-out set), not uniform noise:
    # timings do not depend on content, the int8 PSNR does (uniform noise is far from any image)
    inputs = {"image": to_model_input(render(sample_attributes(np.random.default_rng(2), "circle"), 256), 256),
              "latent": rng.standard_normal((1, 16)).astype(np.float32),
              "domain": np.array([1], np.int64), "source_domain": np.array([0], np.int64)}
    runners: dict[str, Any] = {"official": official_modules(nets), "torch": create_backend(bundle, "torch", "cpu"),
                               "ort fp32": create_backend(bundle, "onnxruntime", "cpu", "fp32"),
                               "ort int8": create_backend(bundle, "onnxruntime", "cpu", "int8")}
    calls = {name: tasks_for(name, run, inputs) for name, run in runners.items()}
    results: dict[str, dict[str, Any]] = {name: {} for name in calls}
    for task, rounds in (("one", args.rounds_one), ("interp20", args.rounds_interp)):
        reference = calls["official"][task]()
        times: dict[str, list[float]] = {name: [] for name in calls}
        for name in calls:  # warm-up (and the output compared with the official one)
            results[name][task] = {"psnr_vs_official_db": round(psnr_db(reference, calls[name][task]()), 2)}
        for index in range(rounds):
            for name in calls:
                times[name].append(timed(calls[name][task]))
            log(f"{task} round {index + 1}/{rounds}: " + ", ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items()))
        base = statistics.median(times["official"])
        for name in calls:
            results[name][task].update(summary(times[name]))
            results[name][task]["x_official"] = round(base / results[name][task]["median_s"], 3)

    throughput: dict[str, Any] = {}
    ort32 = runners["ort fp32"]
    for batch, runs in ((8, 3), (64, 1)):
        x = rng.uniform(-1, 1, (batch, 3, 256, 256)).astype(np.float32)
        z = rng.standard_normal((batch, 16)).astype(np.float32)
        d = rng.integers(0, 3, batch).astype(np.int64)
        ort32.generate(x[:1], ort32.mapping(z[:1], d[:1]))
        times_b = [timed(lambda: ort32.generate(x, ort32.mapping(z, d))) for _ in range(runs)]
        throughput[f"ort fp32 bs{batch}"] = {**summary(times_b),
                                             "images_per_s": round(batch / statistics.median(times_b), 3)}
        log(f"ort fp32 batch {batch}: {batch / statistics.median(times_b):.2f} img/s")

    record = {
        "what": "issue 11 CPU targets: one 256x256 image (mapping + generator) and a 20-step interpolation vs the "
                "official eager code; same He-init AFHQ-like weights (seed 0), interleaved rounds, medians",
        "command": "python benchmarks/cpu_speed.py",
        "cpu": cpu, "machine": machine_info(), "torch_threads": torch.get_num_threads(),
        "load_before": load_before, "load_after": uptime(), "seconds": round(time.perf_counter() - started, 1),
        "int8": {n: {k: v for k, v in m.items() if k.startswith("int8_")} for n, m in int8_meta.items()},
        "results": results, "throughput": throughput,
        "targets": {"one_x_official": 1.5, "interp20_x_official": 2.5},
    }
    slug = re.sub(r"[^a-z0-9]+", "-", cpu["model"].lower()).strip("-") or "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"cpu_speed-{slug}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")

    print(f"\n{cpu['model']}, {cpu['cpus']} CPUs ({cpu['simd']}); before: {load_before}; after: {record['load_after']}")
    print("\n| variant | one image median s | x official | interp20 median s | x official | PSNR vs official dB |")
    print("|---|---|---|---|---|---|")
    for name, res in results.items():
        print(f"| {name} | {res['one']['median_s']:.3f} | {res['one']['x_official']:.2f} | "
              f"{res['interp20']['median_s']:.2f} | {res['interp20']['x_official']:.2f} | "
              f"{res['one']['psnr_vs_official_db']:.1f} |")
    for name, res in throughput.items():
        print(f"{name}: {res['images_per_s']:.2f} img/s")
    print(f"\nwrote {path} in {record['seconds']:.0f} s")


if __name__ == "__main__":
    main()
