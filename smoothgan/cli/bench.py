"""``smoothgan bench``: throughput/latency tables for the backends on this machine."""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from smoothgan.cli.app import Device, DeviceOption, command, console, progress_bar, split_list


def _ints(value: str) -> list[int]:
    try:
        numbers = [int(v) for v in split_list(value)]
    except ValueError:
        numbers = []
    if not numbers or min(numbers) < 1:
        from smoothgan.errors import InputError

        raise InputError(f"expected comma-separated positive integers, got {value!r}")
    return numbers


def _export_missing_graphs(bundle: Any, variants: list[Any]) -> None:
    """ONNX graphs for the ONNX Runtime / TensorRT variants when the bundle has no current ones."""
    from smoothgan.artifacts import has_onnx_graphs

    for precision in sorted({v.precision for v in variants if v.backend != "torch" and v.precision != "bf16"}):
        if not has_onnx_graphs(bundle, precision):
            from smoothgan.export.onnx import export_onnx
            from smoothgan.export.quantize import quantize_bundle

            console.print(f"exporting ONNX {precision} graphs for {bundle.name}")
            if precision == "int8":
                from smoothgan.errors import BackendError

                try:
                    quantize_bundle(bundle)
                except BackendError as exc:  # refused below 30 dB: the int8 rows say "unavailable"
                    console.print(str(exc), highlight=False, markup=False)
            else:
                export_onnx(bundle, precision=precision, validate=False)


def _bench_faces(out: Path, name: Optional[str], budget: float) -> None:
    """The face pipeline's rows: align (detect + landmarks + warp) and paste-back per photo, crop consistency."""
    from smoothgan.bench import machine_info
    from smoothgan.faces.benchmark import accuracy, bench_align
    from smoothgan.fileio import write_json_atomic

    rows = bench_align(budget_s=max(budget, 0.1))
    consistency = accuracy(count=12)
    console.print("| task | photo | faces | median ms | p90 ms | ms per face | status |\n|---|---|---|---|---|---|---|")
    for row in rows:
        console.print(f"| {row['task']} | {row['photo']} | {row['faces']} | {row['median_ms']:.1f} | "
                      f"{row['p90_ms']:.1f} | {row['ms_per_face']:.1f} | {row['status']} |")
    console.print(f"crop consistency over {consistency['photos']} transformed photos ({consistency['transforms']}): "
                  f"{consistency['found']} found, median corner error {consistency['median_corner_error_px']} px, "
                  f"p90 {consistency['p90_corner_error_px']} px of the {consistency['size']} crop")
    path = out / f"{name or 'align-cpu'}.json"
    write_json_atomic(path, {"machine": machine_info(), "rows": rows, "consistency": consistency})
    console.print(f"wrote {path}")


def _bench_serve(model: Optional[str], backend: str, precision: str, max_batch: int, out: Path) -> None:
    """``smoothgan serve`` under 16 clients x 20 requests beside direct calls, and ``smoothgan batch`` beside the
    folder job (:mod:`smoothgan.serving.benchmark`; needs ``smoothgan[ray]``)."""
    import importlib.util

    from smoothgan.errors import BackendError

    if importlib.util.find_spec("ray") is None:
        raise BackendError("the serve benchmark needs Ray: pip install 'smoothgan[ray]'")
    from smoothgan.serving.benchmark import main as serve_benchmark

    serve_benchmark(["--backend", backend, "--precision", precision, "--max-batch", str(max_batch),
                     "--out", str(out), *(["--model", model] if model else [])])


@command("bench")
def bench_command(
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Bundle to time (default: random weights "
                                                                       "of --preset).")] = None,
    preset: Annotated[str, typer.Option("--preset", help="Architecture for random weights.")] = "stargan_v2-afhq",
    backends: Annotated[str, typer.Option("--backends", help="Comma-separated: torch,onnxruntime,tensorrt.")]
    = "torch,onnxruntime",
    precisions: Annotated[str, typer.Option("--precisions", help="Comma-separated precisions.")] = "fp32",
    device: DeviceOption = Device.cpu,
    batches: Annotated[str, typer.Option("--batches", help="Batch sizes of the latent/reference tasks.")]
    = "1,8,20,64",
    tasks: Annotated[str, typer.Option("--tasks", help="latent,reference,interp20 and folder (a folder job of "
                                                       "JPEGs on disk), align (face detection, landmarks, warp, "
                                                       "paste-back), serve (Ray Serve and Ray Data)")]
    = "latent,reference,interp20",
    budget: Annotated[float, typer.Option("--budget", min=0.0, help="Seconds of timed runs per case.")] = 2.0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for JSON/markdown/PNG.")]
    = Path("benchmarks/results"),
    name: Annotated[Optional[str], typer.Option("--name", help="File stem (default: named by conditions).")]
    = None,
    compiled: Annotated[bool, typer.Option("--compile", help="Add torch.compile variants (CUDA graphs on GPU).")]
    = False,
) -> None:
    """Time translation on every requested backend beside the PyTorch fp32 eager baseline.

    Examples:

    1. `smoothgan bench --batches 1 --tasks latent,interp20` (random AFHQ-like 256x256 weights, CPU)

    2. `smoothgan bench --preset stargan_v2-celeba_hq --device cuda --backends torch,onnxruntime,tensorrt --precisions fp32,fp16`

    3. `smoothgan bench --model my_bundle --backends torch --budget 5`

    4. `smoothgan bench --backends onnxruntime --precisions fp32,int8 --batches 1` (int8 graphs quantized first
       when the bundle has none; refused rows say why)

    5. `smoothgan bench --tasks latent,folder --batches 8 --backends onnxruntime` (a folder of 64 640x480 JPEGs
       end to end beside the raw batched rate)

    6. `smoothgan bench --tasks align` (faces: ms per photo and per face, paste-back, crop consistency)

    7. `smoothgan bench --tasks serve --batches 16 --backends onnxruntime` (Ray Serve under 16 clients x 20
       requests beside direct calls; Ray Data beside the folder job; needs smoothgan[ray])
    """
    from smoothgan.bench import TASKS, Variant, machine_info, random_bundle, run_benchmarks, save_results
    from smoothgan.bundle import load_bundle
    from smoothgan.errors import InputError

    task_list = split_list(tasks)
    unknown = [t for t in task_list if t not in (*TASKS, "align", "serve")]
    if unknown:
        raise InputError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}, align, serve")
    batch_list = _ints(batches)
    if "align" in task_list:
        _bench_faces(out, name, budget)
    if "serve" in task_list:
        _bench_serve(model, split_list(backends)[0], split_list(precisions)[0], batch_list[0], out)
    task_list = [t for t in task_list if t not in ("align", "serve")]
    if not task_list:
        return
    with tempfile.TemporaryDirectory(prefix="smoothgan-bench-") as workdir:  # random weights + graphs, removed after
        bundle = load_bundle(model) if model else random_bundle(preset, workdir)
        model_name = bundle.name
        variants = [Variant(b, device.value, p) for b in split_list(backends) for p in split_list(precisions)]
        if compiled:
            variants += [Variant("torch", device.value, p, "compile channels_last",
                                 {"compile": True, "channels_last": True}) for p in split_list(precisions)]
        _export_missing_graphs(bundle, variants)
        cases = len(variants) + 1
        with progress_bar("benchmarking", cases * (len(task_list) * len(batch_list))) as advance:
            rows = run_benchmarks(bundle, variants, task_list, batch_list, budget, model_name,
                                  progress=lambda _: advance(1))
    machine = machine_info()
    where = machine["gpu"].replace(" ", "_") if device.value == "cuda" else "cpu"
    stem = name or f"{model_name}-{'_'.join(split_list(precisions))}-bs{'_'.join(map(str, batch_list))}-{where}"
    command_line = "smoothgan " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    paths = save_results(rows, machine, out, stem, command=command_line)
    from smoothgan.bench import markdown_table

    console.print(markdown_table(rows), markup=False, highlight=False)
    console.print(f"wrote {', '.join(str(p) for p in paths.values())}")
