"""ONNX export: graph structure, metadata, records and numbers vs torch fp32 (fp32: max abs <= 1e-4 at batch 1
and 3; fp16: PSNR >= 40 dB), plus the ``smoothgan export`` summary.

Exports are slow (the dynamo exporter needs seconds per network, the FAN most), so each bundle is exported once
per session into a cache under pytest's base temp and copied into every module that uses it
(:func:`exported_bundle`); tests/test_onnxruntime_backend.py imports that helper too.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from smoothgan.bundle import ModelBundle, load_bundle, save_bundle
from smoothgan.cli import app
from smoothgan.errors import BackendError
from smoothgan.export.onnx import (
    FAN_MAX_OUTLIERS,
    FP32_MAX_ABS,
    HALF_MIN_PSNR_DB,
    NETWORKS,
    cpu_session,
    example_inputs,
    export_onnx,
    io_spec,
    onnx_path,
    psnr_db,
    read_metadata,
    required_networks,
)
from smoothgan.models.fan import FAN
from smoothgan.models.stargan_v2 import AdaIN

BATCHES = (1, 3)  # parity is checked at both: a baked-in batch size fails one of them


def sparse_heatmap_fan(fan: FAN) -> FAN:
    """Shift the random FAN's last bias so ~3% of heatmap pixels exceed the 0.1 threshold, like real landmark
    heatmaps; random weights otherwise give masks that are 1 everywhere, which would make mask parity trivial."""
    with torch.no_grad():
        heatmaps = fan(torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25)
        fan.l0.bias.sub_(torch.quantile(heatmaps.flatten()[::7], 0.97).item() - 0.1)
    return fan


def exported_bundle(tmp_path_factory: pytest.TempPathFactory, source: ModelBundle, name: str) -> ModelBundle:
    """A private copy of ``source`` with fp32 and fp16 graphs, exported once per session and copied per caller.

    For w_hpf > 0 bundles the FAN gets sparse heatmaps (see :func:`sparse_heatmap_fan`).
    """
    cache = tmp_path_factory.getbasetemp() / "onnx-exported" / name
    if not (cache / ".done").is_file():
        shutil.rmtree(cache, ignore_errors=True)
        if source.config.uses_masks:
            nets = source.build_networks("cpu")
            sparse_heatmap_fan(nets["fan"])
            bundle = save_bundle(cache, nets, source.config, source.domains, {"name": name})
        else:
            shutil.copytree(source.path, cache)
            bundle = load_bundle(cache)
        export_onnx(bundle, "fp32")
        export_onnx(bundle, "fp16")
        (cache / ".done").touch()
    target = tmp_path_factory.mktemp(f"{name}-copy") / name
    shutil.copytree(cache, target)
    return load_bundle(target)


@pytest.fixture(scope="module")
def bundles(tiny_bundle, tiny_hpf_bundle, tmp_path_factory) -> dict[str, ModelBundle]:
    return {"tiny": exported_bundle(tmp_path_factory, tiny_bundle, "tiny"),
            "hpf": exported_bundle(tmp_path_factory, tiny_hpf_bundle, "tiny-hpf")}


@pytest.fixture(scope="module")
def modules(bundles) -> dict[str, dict[str, torch.nn.Module]]:
    return {key: bundle.build_networks("cpu") for key, bundle in bundles.items()}


GRAPHS = [("tiny", n) for n in NETWORKS[:3]] + [("hpf", n) for n in NETWORKS]


def torch_outputs(module: torch.nn.Module, network: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    args = [torch.from_numpy(v) for v in feeds.values()]
    with torch.inference_mode():
        if network == "fan":
            out = module.masks(*args)
        elif network == "generator" and len(args) == 4:
            out = module(args[0], args[1], (args[2], args[3]))
        else:
            out = module(*args)
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def assert_fp32_parity(network: str, expected: np.ndarray, got: np.ndarray) -> None:
    """fp32 tolerance: every value within 1e-4; FAN masks may jump where a heatmap pixel sits at the 0.1
    threshold, so for them at most 0.1% of pixels may be further off (in practice 1 of 65536) and the mean
    error stays at rounding level."""
    error = np.abs(got - expected)
    if network == "fan":
        assert (error > FP32_MAX_ABS).mean() <= FAN_MAX_OUTLIERS and error.mean() <= 1e-5, error.max()
    else:
        assert error.max() <= FP32_MAX_ABS, error.max()


@pytest.mark.parametrize("key, network", GRAPHS)
def test_fp32_graph_matches_torch_at_batch_1_and_3(bundles, modules, key, network) -> None:
    bundle = bundles[key]
    session = cpu_session(onnx_path(bundle, network, "fp32"))
    rng = np.random.default_rng(1)
    for batch in BATCHES:
        feeds = example_inputs(bundle.config, network, batch, rng)
        expected = torch_outputs(modules[key][network], network, feeds)
        got = session.run(None, feeds)
        for e, g in zip(expected, got):
            assert g.shape == e.shape and g.dtype == np.float32
            assert_fp32_parity(network, e, g)
            if network == "fan":  # parity means something only when masks are neither all 0 nor all 1
                assert 0.05 < ((g > 0) & (g < 1)).mean() < 0.95
    record = bundle.artifacts["onnx"][f"{network}-fp32"]["validation"]
    assert record["passed"] and record["batch_sizes"] == [1, 3]
    assert record["outliers"] <= (FAN_MAX_OUTLIERS if network == "fan" else 0)


@pytest.mark.parametrize("key, network", [g for g in GRAPHS if g[1] != "fan"])
def test_half_graph_psnr_vs_torch_fp32(bundles, modules, key, network) -> None:
    bundle = bundles[key]
    session = cpu_session(onnx_path(bundle, network, "fp16"))
    rng = np.random.default_rng(2)
    for batch in BATCHES:
        feeds = example_inputs(bundle.config, network, batch, rng)
        expected = torch_outputs(modules[key][network], network, feeds)
        for e, g in zip(expected, session.run(None, feeds)):
            assert g.dtype == np.float32 and np.isfinite(g).all()
            assert psnr_db(e, g) >= HALF_MIN_PSNR_DB, (network, batch, psnr_db(e, g))
    assert bundle.artifacts["onnx"][f"{network}-fp16"]["validation"]["passed"]


def test_fan_half_graph_is_the_fp32_graph(bundles) -> None:
    """The FAN stays fp32 in "fp16" (its heatmaps are thresholded at 0.1): same nodes and weights."""
    bundle = bundles["hpf"]
    graphs = [onnx.load(str(onnx_path(bundle, "fan", p))).graph for p in ("fp32", "fp16")]
    assert graphs[0].SerializeToString() == graphs[1].SerializeToString()
    validation = bundle.artifacts["onnx"]["fan-fp16"]["validation"]
    assert validation["passed"] and validation["same_graph_as"] == "fan-fp32"


def op_counts(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


@pytest.mark.parametrize("network", ["generator", "style_encoder", "mapping_network"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_instance_norm_is_kept_and_no_batchnorm(bundles, modules, network, precision) -> None:
    for key in ("tiny", "hpf"):
        counts = op_counts(onnx_path(bundles[key], network, precision))
        expected = sum(isinstance(m, torch.nn.InstanceNorm2d) for m in modules[key][network].modules())
        assert counts.get("InstanceNormalization", 0) == expected
        assert "BatchNormalization" not in counts
    if network == "generator":
        assert expected > 0


def test_half_graph_keeps_instance_norm_and_adain_in_fp32(bundles, modules) -> None:
    path = onnx_path(bundles["hpf"], "generator", "fp16")
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}
    types.update({t.name: t.data_type for t in graph.initializer})
    producers = {out: node for node in graph.node for out in node.output}
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    norms = [n for n in graph.node if n.op_type == "InstanceNormalization"]
    assert norms and all(types[i] == f32 for n in norms for i in (*n.input, n.output[0]))
    modulated = [n for n in graph.node if n.op_type == "Mul" and any(
        producers.get(i) is not None and producers[i].op_type == "InstanceNormalization" for i in n.input)]
    assert len(modulated) == sum(isinstance(m, AdaIN) for m in modules["hpf"]["generator"].modules()) > 0
    modulated_outputs = {m.output[0] for m in modulated}
    shifted = [n for n in graph.node if n.op_type == "Add" and modulated_outputs & set(n.input)]
    assert len(shifted) == len(modulated)  # (1 + gamma) * IN(x) + beta: Mul and Add both in float32
    assert all(types[i] == f32 for n in (*modulated, *shifted) for i in n.input)
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs and all(types[n.input[1]] == f16 and types[n.output[0]] == f16 for n in convs)
    assert [types[i.name] for i in graph.input] == [f32] * 4 and types["output"] == f32


@pytest.mark.parametrize("key, network", GRAPHS)
def test_io_metadata_records_and_checker(bundles, key, network) -> None:
    bundle = bundles[key]
    for precision in ("fp32", "fp16"):
        path = onnx_path(bundle, network, precision)
        onnx.checker.check_model(str(path), full_check=True)
        model = onnx.load(str(path))
        io = [(v.name, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
               str(onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)))
              for v in (*model.graph.input, *model.graph.output)]
        inputs, outputs = io_spec(bundle.config, network)
        assert io == [*inputs, *outputs] and all(shape[0] == "batch" for _, shape, _ in io)
        meta = read_metadata(path)
        assert meta == {p.key: p.value for p in model.metadata_props}
        assert meta["weights_sha256"] == bundle.weights_sha256 and meta["network"] == network
        assert (meta["precision"], meta["img_size"], meta["domains"]) == (precision, "32", "a,b")
        assert (meta["opset"], meta["format_version"], meta["smoothgan_version"]) == ("18", "1", "0.1.0")
        record = json.loads((bundle.path / "smoothgan.json").read_text())["artifacts"]["onnx"][f"{network}-{precision}"]
        assert record["path"] == f"onnx/{network}-{precision}.onnx" and record["opset"] == 18
        assert record["inputs"] == [list(i) for i in inputs] and record["outputs"] == [list(o) for o in outputs]
        assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert "dynamo=True" in record["exporter"]


def test_required_networks(bundles) -> None:
    assert required_networks(bundles["tiny"].config) == ["mapping_network", "style_encoder", "generator"]
    assert required_networks(bundles["hpf"].config)[-1] == "fan"


@pytest.mark.parametrize("kwargs, message", [
    ({"precision": "bf16"}, "bf16 ONNX graphs are not supported"),
    ({"networks": ["fan"]}, "unknown network(s) fan"),
    ({"opset": 11}, "opset must be >= 18"),
])
def test_export_refuses_bad_requests(bundles, kwargs, message) -> None:
    with pytest.raises(BackendError, match=message.replace("(", r"\(").replace(")", r"\)")):
        export_onnx(bundles["tiny"], **kwargs)


def test_read_metadata_rejects_non_onnx(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x0a\xff\xff\xff")
    with pytest.raises(BackendError, match="not a readable ONNX file"):
        read_metadata(junk)


def test_cli_export_prints_a_summary(bundles) -> None:
    runner = CliRunner()
    bundle = bundles["tiny"]
    result = runner.invoke(app, ["export", "--model", str(bundle.path), "--precision", "fp16"],
                           env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    for network in required_networks(bundle.config):
        row = next(line for line in result.output.splitlines() if f"onnx/{network}-fp16.onnx" in line)
        cells = [c.strip() for c in row.split("│") if c.strip()]
        assert cells[1].endswith("KB") and float(cells[3]) >= HALF_MIN_PSNR_DB and cells[-1] == "ok", row
    assert "converting to fp16" in result.output
    for args, message in ((["--no-onnx"], "nothing to export"), (["--precision", "bf16"], "bf16 ONNX")):
        bad = runner.invoke(app, ["export", "--model", str(bundle.path), *args])
        assert bad.exit_code != 0 and bad.output.strip().splitlines()[-1].startswith("error:")
        assert message in bad.output and "Traceback" not in bad.output


def test_cli_export_trt_row_comes_from_build_engines(bundles, monkeypatch) -> None:
    """--trt hands the profile to smoothgan.export.tensorrt.build_engines and lists its engines (faked here)."""
    tensorrt_export = pytest.importorskip("smoothgan.export.tensorrt")
    calls = []

    def fake_build(bundle, **kwargs):
        calls.append(kwargs)
        path = bundle.path / "engines" / "gpu-fp16" / "generator.engine"
        return [tensorrt_export.EngineArtifact("generator", path, "fp16", "gpu-fp16", 3 << 20, 12.5, False)]

    monkeypatch.setattr(tensorrt_export, "build_engines", fake_build)
    result = CliRunner().invoke(app, ["export", "--model", str(bundles["tiny"].path), "--no-onnx", "--trt",
                                      "--precision", "fp16", "--opt-batch", "8", "--max-batch", "32"],
                                env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert calls[0]["precision"] == "fp16" and (calls[0]["min_batch"], calls[0]["opt_batch"],
                                                calls[0]["max_batch"]) == (1, 8, 32)
    row = next(line for line in result.output.splitlines() if "engines/gpu-fp16/generator.engine" in line)
    assert "3.0 MB" in row and "12.5" in row and "built" in row


def test_shipped_demo_graphs_match_the_shipped_weights() -> None:
    """The embedded demo ships fp32 graphs so a bare install (no torch) runs it: they are current (weights sha256
    in their metadata and in smoothgan.json's records), small, and agree with the weights through torch."""
    from smoothgan.artifacts import onnx_graphs
    from smoothgan.backends import create_backend
    from smoothgan.bundle import EMBEDDED_BUNDLE
    from smoothgan.fileio import sha256_file

    demo = load_bundle(EMBEDDED_BUNDLE)
    assert demo.weights_sha256 == sha256_file(demo.weights_path)
    graphs = onnx_graphs(demo, "fp32")  # raises when stale
    records = demo.artifacts["onnx"]
    for network, path in graphs.items():
        assert read_metadata(path)["weights_sha256"] == demo.weights_sha256
        assert records[f"{network}-fp32"]["sha256"] == sha256_file(path)
        assert records[f"{network}-fp32"]["validation"]["passed"] is True
    assert sum(p.stat().st_size for p in graphs.values()) < 4_000_000  # 1.6 MB for the 32 px shapes32 model
    rng = np.random.default_rng(0)
    size = demo.config.img_size
    x = rng.uniform(-1, 1, (2, 3, size, size)).astype(np.float32)
    z = rng.standard_normal((2, demo.config.latent_dim)).astype(np.float32)
    outputs = {}
    for name in ("onnxruntime", "torch"):
        backend = create_backend(demo, name)
        outputs[name] = backend.generate(x, backend.mapping(z, [0, 2]))
    assert np.abs(outputs["onnxruntime"] - outputs["torch"]).max() <= 1e-4


def _export_process(bundle: Path) -> "subprocess.Popen[str]":
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-m", "smoothgan", "export", "--model", str(bundle)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _graphs_are_whole(bundle: Path) -> None:
    """Each graph present is a complete smoothgan graph of these weights: the old one or a new one."""
    from smoothgan.artifacts import onnx_graphs

    onnx_graphs(load_bundle(bundle), "fp32")  # all present, readable metadata, current
    for path in (bundle / "onnx").glob("*.onnx"):
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)


@pytest.mark.slow
def test_killed_exports_leave_old_or_new_graphs_and_the_next_export_cleans_up(tiny_bundle, tmp_path: Path) -> None:
    """kill -9 `smoothgan export` at random moments (12 trials over the length of a full run): the graphs are
    always whole (old or new); staging files a kill leaves are removed by the next export, which ends clean.
    The piped summary is readable at any width: every row one line, no '…' for a number."""
    import signal
    import time

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle.path, bundle, ignore=shutil.ignore_patterns("onnx", "engines"))
    start = time.perf_counter()
    first = _export_process(bundle)
    output, _ = first.communicate(timeout=600)
    full = time.perf_counter() - start
    assert first.returncode == 0, output
    assert "…" not in output and all(f"onnx/{n}-fp32.onnx" in output for n in ("mapping_network", "generator"))
    _graphs_are_whole(bundle)
    rng = np.random.default_rng(0)
    leftovers_seen = 0
    for delay in rng.uniform(0.2 * full, full, 12):
        process = _export_process(bundle)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        _graphs_are_whole(bundle)
        leftovers_seen += len(list((bundle / "onnx").glob(".*")))
    last = _export_process(bundle)
    output, _ = last.communicate(timeout=600)
    assert last.returncode == 0, output
    _graphs_are_whole(bundle)
    hidden = [p.relative_to(bundle).as_posix() for p in bundle.rglob(".*")]
    assert hidden == [], f"left behind after a clean export: {hidden} ({leftovers_seen} seen after kills)"
