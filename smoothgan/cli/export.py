"""``smoothgan export``: ONNX graphs (validated against torch fp32) and TensorRT engines for a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from smoothgan.cli.app import ModelOption, Precision, command, console, err_console, fail

CAPTION = ("ONNX graphs vs torch fp32 on ONNX Runtime CPU, batch 1 and 3: fp32 needs max abs <= 1e-4, fp16 "
           "PSNR >= 40 dB (the FAN graph stays fp32)")


def human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _validation_cells(validation: Optional[dict[str, Any]]) -> tuple[str, str, Text]:
    """(max abs, PSNR, status) cells of one ONNX graph's validation record (styled Text: the console prints
    strings without markup, so user text such as paths is never interpreted)."""
    if validation is None:
        return "-", "-", Text("not validated")
    if validation.get("error"):
        return "-", "-", Text(f"ORT CPU cannot run it: {validation['error']}", style="yellow")
    max_abs = "inf" if validation["max_abs"] is None else f"{validation['max_abs']:.1e}"
    status = Text("ok") if validation["passed"] else Text("FAILED", style="bold red")
    return max_abs, f"{validation['psnr_db']:.1f}", status


@command("export")
def export_command(
    model: ModelOption = None,
    onnx: Annotated[bool, typer.Option("--onnx/--no-onnx", help="Export ONNX graphs (validated vs torch).")] = True,
    trt: Annotated[bool, typer.Option("--trt", help="Also build TensorRT engines from the ONNX graphs.")] = False,
    precision: Annotated[Precision, typer.Option("--precision", help="Of graphs and engines.")] = Precision.fp32,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="TensorRT profile and Triton max_batch_size: "
                                                                      "largest batch.")] = 64,
    opt_batch: Annotated[int, typer.Option("--opt-batch", min=1, help="TensorRT profile: batch tuned for.")] = 20,
    opset: Annotated[int, typer.Option("--opset", min=18, help="ONNX opset of the graphs.")] = 18,
    triton: Annotated[Optional[Path], typer.Option("--triton", help="Also write an NVIDIA Triton model repository "
                                                   "here (the graphs, or the engines with --trt; configs "
                                                   "validated; needs smoothgan[triton]).")] = None,
) -> None:
    """Export a bundle's networks to ONNX (and TensorRT engines) inside the bundle.

    Examples:

    1. `smoothgan export --model celeba_hq` (fp32 ONNX graphs in celeba_hq/onnx/)

    2. `smoothgan export --model celeba_hq --precision fp16` (half graphs; InstanceNorm/AdaIN stay fp32)

    3. `smoothgan export --model afhq --trt --precision fp16 --opt-batch 20 --max-batch 64`

    4. `smoothgan export --model afhq --no-onnx --trt` (engines from graphs already exported)

    5. `smoothgan export --model afhq --triton triton-repo` (Triton models + translate ensembles, see
       docs/SERVING.md)

    6. `smoothgan export --model afhq --precision int8` (ONNX Runtime CPU: convolutions quantized in order of
       measured sensitivity while the output stays >= 30 dB PSNR vs fp32; refused when none can be)

    Each ONNX graph is checked with onnx.checker and compared with PyTorch fp32 on ONNX Runtime CPU at batch 1
    and 3 (fp32: max abs <= 1e-4; fp16: PSNR >= 40 dB). bf16 ONNX graphs are not supported.
    """
    from smoothgan.bundle import load_bundle
    from smoothgan.export.onnx import check_precision, export_onnx

    if not onnx and not trt and triton is None:
        fail("nothing to export: pass --onnx, --trt and/or --triton", 2)
    if onnx:
        check_precision(precision.value)
    bundle = load_bundle(model)

    def progress(message: str) -> None:
        err_console.print(f"[dim]{message}[/]", highlight=False)

    # Numbers never wrap or shrink; in a narrow terminal the artefact paths fold instead (piped output has the
    # console's wide pipe width, so each row stays one line there).
    table = Table(title=f"{bundle.name}: exported {precision.value}", caption=CAPTION)
    table.add_column("artefact", overflow="fold", ratio=1)
    for column in ("size", "max abs", "PSNR dB", "time s"):
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    table.add_column("status", overflow="fold")
    failed = 0
    if onnx and precision.value == "int8":  # quantized from the fp32 graphs (exported first when missing)
        from smoothgan.export.quantize import quantize_bundle

        for graph in quantize_bundle(bundle, progress=progress):
            table.add_row(graph.path.relative_to(bundle.path).as_posix(), human_size(graph.path.stat().st_size), "-",
                          f"{graph.psnr_db:.1f}", f"{graph.seconds:.1f}",
                          f"{len(graph.quantized)}/{graph.candidates} convs int8 ({graph.quantized_macs:.0%} of MACs)")
    elif onnx:
        for art in export_onnx(bundle, precision=precision.value, opset=opset, progress=progress):
            max_abs, psnr, status = _validation_cells(art.validation)
            failed += bool(art.validation and art.validation.get("passed") is False)
            table.add_row(art.path.relative_to(bundle.path).as_posix(), human_size(art.path.stat().st_size),
                          max_abs, psnr, f"{art.seconds:.1f}", status)
    if trt:
        from smoothgan.export.tensorrt import build_engines

        for engine in build_engines(bundle, precision=precision.value, min_batch=1, opt_batch=opt_batch,
                                    max_batch=max_batch, progress=progress):
            table.add_row(engine.path.relative_to(bundle.path).as_posix(), human_size(engine.size_bytes), "-", "-",
                          f"{engine.build_seconds:.1f}", "reused" if engine.reused else "built")
    if triton is not None:
        from smoothgan.serving.triton import export_triton

        for entry in export_triton(bundle, triton, precision=precision.value, max_batch=max_batch, engines=trt):
            table.add_row(entry.path.as_posix(), "-", "-", "-", "-", f"Triton {entry.backend}, config validated")
    console.print(table)
    if failed:
        fail(f"{failed} ONNX graph(s) outside their tolerance vs torch fp32 (see the table)", 1)
