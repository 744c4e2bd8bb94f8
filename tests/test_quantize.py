"""int8 graphs (smoothgan.export.quantize): accepted at the PSNR floor, refused below it, stamped with their
metadata, fused by ONNX Runtime into integer convolutions, and run by the ONNX Runtime backend on CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image
from test_onnx import exported_bundle
from typer.testing import CliRunner

from smoothgan.artifacts import onnx_graphs, onnx_path, psnr_db, read_metadata
from smoothgan.backends import create_backend
from smoothgan.bundle import ModelBundle
from smoothgan.cli import app
from smoothgan.errors import BackendError
from smoothgan.export.onnx import export_onnx
from smoothgan.export.quantize import (
    INT8,
    STRIP_FILE,
    calibration_sets,
    choose_layers,
    quantize_bundle,
    quantize_graph,
)


@pytest.fixture(scope="module")
def quantized(tiny_bundle, tmp_path_factory) -> tuple[ModelBundle, list]:
    bundle = exported_bundle(tmp_path_factory, tiny_bundle, "tiny")
    return bundle, quantize_bundle(bundle, min_psnr=30.0)


def test_graphs_are_accepted_at_the_floor_and_stamped(quantized) -> None:
    bundle, graphs = quantized
    assert {g.network for g in graphs} == {"mapping_network", "style_encoder", "generator"}
    assert set(onnx_graphs(bundle, INT8)) == {g.network for g in graphs}  # the backend's own checks accept them
    for graph in graphs:
        meta = read_metadata(graph.path)
        assert meta["precision"] == INT8 and meta["weights_sha256"] == bundle.weights_sha256
        assert float(meta["int8_psnr_db"]) == pytest.approx(graph.psnr_db, abs=0.01) and graph.psnr_db >= 30.0
        assert meta["int8_quantized"] == f"{len(graph.quantized)}/{graph.candidates}"
        assert "synthetic shape image(s)" in meta["int8_calibration"]
        assert bundle.artifacts["onnx"][f"{graph.network}-int8"]["quantized"] == graph.quantized
    generator = next(g for g in graphs if g.network == "generator")
    assert generator.quantized and 0 < generator.quantized_macs <= 1
    assert set(generator.sensitivity) >= set(generator.quantized)
    strip = Image.open(bundle.path / "onnx" / STRIP_FILE)
    size = bundle.config.img_size
    assert strip.size == (4 * size, 4 * size)  # 4 held-out rows: input, fp32, int8, |diff|


def test_backend_runs_int8_on_cpu_close_to_fp32(quantized) -> None:
    bundle, graphs = quantized
    fp32 = create_backend(bundle, "onnxruntime", "cpu", "fp32")
    int8 = create_backend(bundle, "onnxruntime", "cpu", INT8)
    _, x, _ = calibration_sets(bundle)
    style = fp32.mapping(np.random.default_rng(1).standard_normal((len(x), bundle.config.latent_dim)),
                         np.arange(len(x)) % bundle.config.num_domains)
    np.testing.assert_array_equal(int8.mapping(np.zeros((2, bundle.config.latent_dim)), [0, 1]),
                                  fp32.mapping(np.zeros((2, bundle.config.latent_dim)), [0, 1]))
    reached = psnr_db(fp32.generate(x, style), int8.generate(x, style))
    assert reached >= 30.0 - 3.0  # other styles than the selection's, same held-out images
    assert "int8" in int8.describe()
    options = int8._sessions["generator"].get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"  # measured: see _session
    with pytest.raises(BackendError, match="CPU only"):
        create_backend(bundle, "onnxruntime", "cuda", INT8)


def test_quantized_convolutions_become_integer_kernels(quantized, tmp_path: Path) -> None:
    bundle, graphs = quantized
    generator = next(g for g in graphs if g.network == "generator")
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(generator.path), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert ops.count("QLinearConv") == len(generator.quantized)


def test_quantize_graph_without_layers_is_the_fp32_graph(quantized) -> None:
    bundle, _ = quantized
    model = onnx.load(str(onnx_path(bundle, "style_encoder", "fp32")))
    same = quantize_graph(model, {}, [])
    assert [n.op_type for n in same.graph.node] == [n.op_type for n in model.graph.node]


def test_refused_below_the_floor_with_one_line(tiny_bundle, tmp_path_factory) -> None:
    bundle = exported_bundle(tmp_path_factory, tiny_bundle, "tiny")
    with pytest.raises(BackendError) as info:
        quantize_bundle(bundle, min_psnr=199.0)  # no single convolution keeps 199 dB
    message = str(info.value)
    assert message.startswith("int8 refused") and "\n" not in message and "use fp32" in message
    assert not onnx_path(bundle, "generator", INT8).exists()


def test_greedy_keeps_the_least_sensitive_layers(quantized) -> None:
    bundle, _ = quantized
    model = onnx.load(str(onnx_path(bundle, "style_encoder", "fp32")))
    cal, held, _ = calibration_sets(bundle, count=4, held_out=2)
    domain = np.arange(len(cal)) % bundle.config.num_domains
    feeds_cal = {"image": cal, "domain": domain.astype(np.int64)}
    feeds_eval = {"image": held, "domain": (np.arange(len(held)) % 2).astype(np.int64)}
    _, reached, chosen, sensitivity, _ = choose_layers(model, feeds_cal, feeds_eval, min_psnr=45.0)
    assert reached >= 45.0
    if chosen and len(chosen) < len(sensitivity):
        assert min(sensitivity[n] for n in chosen) >= max(v for n, v in sensitivity.items() if n not in chosen)


def test_export_routes_int8_and_export_onnx_refuses_it(quantized) -> None:
    bundle, _ = quantized
    with pytest.raises(BackendError, match="quantize"):
        export_onnx(bundle, INT8)
    result = CliRunner().invoke(app, ["export", "--model", str(bundle.path), "--precision", "int8"],
                                env={"SMOOTHGAN_MODEL": ""})
    assert result.exit_code == 0, result.output
    assert "generator-int8.onnx" in result.output and "convs int8" in result.output


def test_bench_times_int8_beside_the_baseline(quantized, tmp_path: Path) -> None:
    import json

    bundle, _ = quantized
    result = CliRunner().invoke(app, ["bench", "--model", str(bundle.path), "--backends", "onnxruntime",
                                      "--precisions", "fp32,int8", "--batches", "1", "--tasks", "latent",
                                      "--budget", "0", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = json.loads(next(tmp_path.glob("*.json")).read_text())["rows"]
    int8 = [r for r in rows if r["precision"] == INT8]
    assert int8 and all(r["status"] == "ok" and r["psnr_db"] >= 27.0 for r in int8)


@pytest.mark.parametrize("precision", ["fp32", INT8])
def test_cpu_batches_run_in_chunks_with_the_same_outputs(quantized, monkeypatch, precision) -> None:
    import smoothgan.backends.onnxruntime as ort_backend

    bundle, _ = quantized
    backend = create_backend(bundle, "onnxruntime", "cpu", precision)
    cfg = bundle.config
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (7, 3, cfg.img_size, cfg.img_size)).astype(np.float32)
    s = rng.standard_normal((7, cfg.style_dim)).astype(np.float32)
    whole = backend.generate(x, s)
    monkeypatch.setattr(ort_backend, "CPU_CHUNK", 3)
    np.testing.assert_allclose(backend.generate(x, s), whole, atol=1e-5)
