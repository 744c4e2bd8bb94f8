"""Benchmarks: throughput and latency of every backend, always beside the PyTorch fp32 eager baseline.

A case is (task, batch): ``latent`` = masks (w_hpf > 0) + mapping network + generator for ``batch`` images;
``reference`` = masks + style encoder on ``batch`` references + generator; ``interp20`` = one image interpolated
in 20 steps (masks + source style + target style + one generator batch of 20); ``folder`` = a folder job of
:data:`FOLDER_IMAGES` real-size JPEGs on disk to PNGs on disk (decode, resize, translate in batches of ``batch``
rows, write, manifest: :meth:`Translator.translate_folder`), to set beside the raw ``latent`` rate at the same
batch. Each case is timed end to end
through the backend interface (numpy in, numpy out: host/device copies included, and the copy back makes
the timing synchronous), after warm-up, for a fixed time budget; we report the median and p10/p90/p99.
Accuracy is the PSNR of the output against torch fp32 on the same inputs (over the reference's range, as
the export validation computes it). Failures stay in the table.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from smoothgan import __version__
from smoothgan.backends.base import Backend
from smoothgan.bundle import ModelBundle
from smoothgan.errors import SmoothganError
from smoothgan.artifacts import psnr_db
from smoothgan.fileio import atomic_path, write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)

TASKS = ("latent", "reference", "interp20", "folder")
FOLDER_IMAGES = 64  # JPEGs of FOLDER_SIZE in the folder task
FOLDER_SIZE = (640, 480)
BASELINE = ("torch", "fp32", "eager")


@dataclass(frozen=True)
class Variant:
    """One engine configuration to time: backend, device, precision and a free-form option label."""

    backend: str
    device: str
    precision: str
    label: str = ""
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def name(self) -> str:
        return f"{self.backend} {self.precision}" + (f" {self.label}" if self.label else "")


@dataclass
class Row:
    """One line of a result table."""

    model: str
    task: str
    batch: int
    variant: str
    backend: str
    device: str
    precision: str
    status: str = "ok"
    runs: int = 0
    median_ms: float = float("nan")
    p10_ms: float = float("nan")
    p90_ms: float = float("nan")
    p99_ms: float = float("nan")
    images_per_s: float = float("nan")
    psnr_db: float = float("nan")
    speedup: float = float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_call(fn: Callable[[], Any], budget_s: float = 2.0, warmup: int = 2, min_runs: int = 3,
              max_runs: int = 1000) -> list[float]:
    """Seconds per call: ``warmup`` untimed calls, then calls until the budget is spent (at least min_runs)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def case_inputs(bundle: ModelBundle, task: str, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random (never zero) inputs of one case, identical for every variant."""
    cfg = bundle.config
    rng = np.random.default_rng(seed)
    n = 1 if task == "interp20" else batch
    size = (n, 3, cfg.img_size, cfg.img_size)
    return {
        "image": rng.uniform(-1, 1, size).astype(np.float32),
        "reference": rng.uniform(-1, 1, size).astype(np.float32),
        "latent": rng.standard_normal((n, cfg.latent_dim)).astype(np.float32),
        "domain": rng.integers(0, cfg.num_domains, n).astype(np.int64),
    }


def folder_inputs(root: Path, count: int = FOLDER_IMAGES, size: tuple[int, int] = FOLDER_SIZE, seed: int = 0) -> Path:
    """``count`` photo-sized JPEGs (smooth colour fields with noise: they compress like photos) in ``root/in``."""
    from PIL import Image

    folder = root / "in"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(count):
        a, b, c = rng.uniform(0.2, 1.0, 3)
        pixels = np.stack([x * a / w, y * b / h, (x + y) * c / (w + h)], -1) * 255 + rng.normal(0, 12, (h, w, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"photo_{i:04d}.jpg", quality=90)
    return folder


def run_folder_case(translator: Any, folder: Path, out: Path, batch: int) -> int:
    """One folder job (flat layout, into an emptied ``out``); returns the number of images translated."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    summary = translator.translate_folder([folder], out, translator.domains[-1], layout="flat", batch_size=batch,
                                          align=False)
    return summary.done


def run_case(backend: Backend, task: str, inputs: dict[str, np.ndarray], steps: int = 20) -> np.ndarray:
    """One end-to-end call of a task on a backend; returns the generated images."""
    x, domain = inputs["image"], inputs["domain"]
    masks = backend.heatmap(x) if backend.config.uses_masks else None
    if task == "latent":
        return backend.generate(x, backend.mapping(inputs["latent"], domain), masks)
    if task == "reference":
        return backend.generate(x, backend.encode_style(inputs["reference"], domain), masks)
    if task == "interp20":
        start = backend.encode_style(x, domain)
        end = backend.mapping(inputs["latent"], domain)
        t = (np.arange(steps, dtype=np.float32) / (steps - 1))[:, None]
        styles = (start + t * (end - start)).astype(np.float32)
        many = np.repeat(x, steps, axis=0)
        rep = None if masks is None else (np.repeat(masks[0], steps, 0), np.repeat(masks[1], steps, 0))
        return backend.generate(many, styles, rep)
    raise SmoothganError(f"unknown benchmark task {task!r}; choose from {', '.join(TASKS)}")


def run_benchmarks(bundle: ModelBundle, variants: Sequence[Variant], tasks: Sequence[str] = TASKS,
                   batches: Sequence[int] = (1, 8, 20, 64), budget_s: float = 2.0, model_name: str = "",
                   progress: Optional[Callable[[str], None]] = None) -> list[Row]:
    """Time every (task, batch) on every variant; the torch fp32 eager baseline is always run first."""
    import tempfile

    if "folder" in tasks:
        with tempfile.TemporaryDirectory(prefix="smoothgan-bench-folder-") as root:
            return _run_benchmarks(bundle, variants, tasks, batches, budget_s, model_name, progress,
                                   folder_inputs(Path(root)))
    return _run_benchmarks(bundle, variants, tasks, batches, budget_s, model_name, progress, None)


def _run_benchmarks(bundle: ModelBundle, variants: Sequence[Variant], tasks: Sequence[str], batches: Sequence[int],
                    budget_s: float, model_name: str, progress: Optional[Callable[[str], None]],
                    folder: Optional[Path]) -> list[Row]:
    from smoothgan.backends import create_backend
    from smoothgan.translator import Translator

    device = variants[0].device if variants else "cpu"
    baseline = Variant("torch", device, "fp32", "eager")
    ordered = [baseline] + [v for v in variants if (v.backend, v.precision, v.label or "eager") != BASELINE
                            or v.device != device]
    cases = [(task, b) for task in tasks for b in ((1,) if task == "interp20" else batches)]
    reference: dict[tuple[str, int], Optional[np.ndarray]] = {}
    base_time: dict[tuple[str, int], float] = {}
    rows: list[Row] = []
    for variant in ordered:
        try:
            backend = create_backend(bundle, variant.backend, variant.device, variant.precision, **variant.options)
        except SmoothganError as exc:
            rows += [Row(model_name, t, b, variant.name, variant.backend, variant.device, variant.precision,
                         status=f"unavailable: {exc}") for t, b in cases]
            continue
        for task, batch in cases:
            row = Row(model_name, task, batch, variant.name, variant.backend, variant.device, variant.precision)
            if progress:
                progress(f"{variant.name} {task} bs{batch}")
            inputs = case_inputs(bundle, task, batch)
            try:
                if task == "folder":
                    assert folder is not None
                    job = Translator(bundle, backend, max_batch=batch)
                    out = folder.parent / "out"
                    output, images = None, run_folder_case(job, folder, out, batch)
                    times = time_call(lambda: run_folder_case(job, folder, out, batch), budget_s=budget_s,
                                      warmup=1, max_runs=20)
                else:
                    output = run_case(backend, task, inputs)
                    images = len(output)
                    times = time_call(lambda: run_case(backend, task, inputs), budget_s=budget_s)
            except Exception as exc:  # noqa: BLE001 - a failing engine is a row with its status, not a crash
                row.status = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
                rows.append(row)
                continue
            row.runs = len(times)
            row.median_ms = statistics.median(times) * 1e3
            row.p10_ms, row.p90_ms, row.p99_ms = (percentile(times, q) * 1e3 for q in (10, 90, 99))
            row.images_per_s = images / (row.median_ms / 1e3)
            key = (task, batch)
            if variant is baseline:
                reference[key], base_time[key] = output, row.median_ms
            if key in base_time:
                row.speedup = base_time[key] / row.median_ms
            if output is not None and reference.get(key) is not None:
                row.psnr_db = psnr_db(reference[key], output)
            rows.append(row)
        backend.close()
    return rows


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU, GPU, library versions."""
    import importlib.metadata as md

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "smoothgan": __version__,
    }
    for package in ("torch", "onnxruntime", "onnxruntime-gpu", "numpy", "tensorrt", "tensorrt-rtx-cu13-bindings"):
        try:
            info[package] = md.version(package)
        except md.PackageNotFoundError:
            continue
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    except ImportError:
        pass
    info.setdefault("gpu", "none")
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def markdown_table(rows: Sequence[Row]) -> str:
    """A markdown table of rows; failures keep their status in the last column."""
    header = ("| model | task | batch | variant | device | median ms | p90 ms | p99 ms | img/s | x fp32 eager "
              "| PSNR dB | status |")
    lines = [header, "|" + "---|" * 12]
    for r in rows:
        def fmt(value: float, digits: int = 2) -> str:
            return "-" if value != value else ("inf" if value == float("inf") else f"{value:.{digits}f}")

        lines.append(
            f"| {r.model} | {r.task} | {r.batch} | {r.variant} | {r.device} | {fmt(r.median_ms)} | {fmt(r.p90_ms)} "
            f"| {fmt(r.p99_ms)} | {fmt(r.images_per_s, 1)} | {fmt(r.speedup)} | {fmt(r.psnr_db, 1)} | {r.status} |"
        )
    return "\n".join(lines) + "\n"


def save_results(rows: Sequence[Row], machine: dict[str, Any], out_dir: str | Path, stem: str,
                 command: str = "", plot: bool = True) -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and (with matplotlib) ``<stem>.png`` atomically."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md"}
    write_json_atomic(paths["json"], {"machine": machine, "command": command, "rows": [asdict(r) for r in rows]})
    text = f"Machine: {machine.get('cpu')} ({machine.get('cpu_count')} cores), GPU: {machine.get('gpu')}\n\n"
    text += markdown_table(rows) + (f"\n`{command}`\n" if command else "")
    write_bytes_atomic(paths["md"], text.encode())
    if plot:
        try:
            paths["png"] = _plot(rows, out_dir / f"{stem}.png")
        except ImportError:
            log.info("matplotlib is not installed: no plot")
    return paths


def _plot(rows: Sequence[Row], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latent = [r for r in rows if r.task == "latent" and r.status == "ok"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for variant in dict.fromkeys(r.variant for r in latent):
        points = sorted((r.batch, r.images_per_s) for r in latent if r.variant == variant)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=variant)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch")
    ax.set_ylabel("images / s (latent-guided)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def random_bundle(preset: str, root: str | Path, seed: int = 0) -> ModelBundle:
    """A bundle of a preset's architecture with He-initialised random weights (timing only: say so)."""
    import torch

    from smoothgan.bundle import load_bundle, save_bundle
    from smoothgan.config import get_preset
    from smoothgan.models.loading import new_networks
    from smoothgan.models.stargan_v2 import he_init

    spec = get_preset(preset)
    path = Path(root) / f"random-{preset}-seed{seed}"
    if path.exists():
        return load_bundle(path)
    torch.manual_seed(seed)
    networks = new_networks(spec.config)
    for name, net in networks.items():
        if name != "fan":  # the FAN keeps its own initialisation, as before
            net.apply(he_init)
    return save_bundle(path, networks, spec.config, spec.domains,
                       {"name": preset, "kind": f"random He-initialised weights (seed {seed}) for timing only"})
