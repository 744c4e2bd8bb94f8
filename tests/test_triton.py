"""smoothgan export --triton: a model repository whose configs parse with Triton's ModelConfig protobuf, whose I/O
matches the ONNX graphs, and whose ensembles, run step by step on ONNX Runtime as Triton would wire them, equal
Translator.translate with the same seed. (No Triton server here: see docs/SERVING.md.)"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from smoothgan import images, styles
from smoothgan.artifacts import io_spec, required_networks
from smoothgan.config import get_preset
from smoothgan.serving import triton
from smoothgan.translator import load

pytest.importorskip("tritonclient")
from tritonclient.grpc import model_config_pb2  # noqa: E402

NUMPY = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16, "TYPE_INT64": np.int64}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny bundle of its own (exporting into the shared one would change what backend auto picks elsewhere)."""
    from conftest import make_bundle
    from smoothgan.export.onnx import export_onnx

    bundle = make_bundle(tmp_path_factory.mktemp("triton-bundle"), "tiny", seed=3)
    export_onnx(bundle, validate=False)
    return bundle


def run_ensemble(repo: Path, name: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Execute an ensemble as Triton wires it: each step's input_map/output_map over ONNX Runtime sessions."""
    import onnxruntime as ort

    config = triton.parse_config(repo / name / "config.pbtxt")
    tensors = dict(feeds)
    for step in config.ensemble_scheduling.step:
        inner = triton.parse_config(repo / step.model_name / "config.pbtxt")
        session = ort.InferenceSession(str(repo / step.model_name / "1" / "model.onnx"),
                                       providers=["CPUExecutionProvider"])
        inputs = {}
        for spec in inner.input:
            value = tensors[step.input_map[spec.name]]
            if spec.HasField("reshape"):  # Triton applies the reshape: [B, 1] -> [B]
                value = value.reshape(len(value), *spec.reshape.shape)
            inputs[spec.name] = value
        results = session.run(None, inputs)
        names = [o.name for o in session.get_outputs()]
        for key, value in step.output_map.items():
            tensors[value] = results[names.index(key)]
    return {o.name: tensors[o.name] for o in config.output}


def test_repository_configs_validate_and_match_graphs(exported: Any, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    models = triton.export_triton(exported, repo, max_batch=8, instances=2, kind="KIND_CPU")
    names = {m.name for m in models}
    assert names == {"tiny_mapping_network", "tiny_style_encoder", "tiny_generator", "tiny_translate",
                     "tiny_translate_ref"}
    assert triton.validate_repository(repo) == []
    c = exported.config
    generator = triton.parse_config(repo / "tiny_generator" / "config.pbtxt")
    assert generator.backend == "onnxruntime" and generator.max_batch_size == 8
    assert generator.dynamic_batching.max_queue_delay_microseconds == 1000
    assert list(generator.dynamic_batching.preferred_batch_size) == [4, 8]
    assert [(g.count, model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind)) for g in generator.instance_group] \
        == [(2, "KIND_CPU")]
    assert [(i.name, model_config_pb2.DataType.Name(i.data_type), list(i.dims)) for i in generator.input] == \
        [("image", "TYPE_FP32", [3, c.img_size, c.img_size]), ("style", "TYPE_FP32", [c.style_dim])]
    mapping = triton.parse_config(repo / "tiny_mapping_network" / "config.pbtxt")
    domain = [i for i in mapping.input if i.name == "domain"][0]
    assert list(domain.dims) == [1] and list(domain.reshape.shape) == []
    for network in required_networks(c):
        assert (repo / f"tiny_{network}" / "1" / "model.onnx").read_bytes() == \
            (exported.path / "onnx" / f"{network}-fp32.onnx").read_bytes()
    ensemble = triton.parse_config(repo / "tiny_translate" / "config.pbtxt")
    assert ensemble.platform == "ensemble" and [s.model_name for s in ensemble.ensemble_scheduling.step] == \
        ["tiny_mapping_network", "tiny_generator"]

    # a rerun replaces the models whole and leaves other models alone
    (repo / "someone_else").mkdir()
    (repo / "tiny_generator" / "stale.txt").write_text("x")
    triton.export_triton(exported, repo, prefix="tiny")
    assert (repo / "someone_else").is_dir() and not (repo / "tiny_generator" / "stale.txt").exists()


def test_ensembles_equal_translate(exported: Any, tmp_path: Path, photo: Path) -> None:
    repo = tmp_path / "repo"
    triton.export_triton(exported, repo)
    translator = load(exported.path, backend="torch")
    c = exported.config
    x = translator.prepare([photo])  # client-side preprocessing: images.to_model_input
    ref_image = np.random.default_rng(5).integers(0, 256, (50, 40, 3), dtype=np.uint8)
    for seed, domain in ((0, "a"), (7, "b")):
        latent = styles.latents(seed, 1, c.latent_dim)
        index = np.array([[exported.domain_index(domain)]], dtype=np.int64)
        out = run_ensemble(repo, "tiny_translate", {"image": x, "latent": latent, "domain": index})["output"]
        want = translator.translate(photo, domain, seed=seed).images[0, 0]
        assert int(np.abs(images.from_model_output(out)[0].astype(int) - want).max()) <= 1
        ref = translator.prepare([ref_image])
        out = run_ensemble(repo, "tiny_translate_ref", {"image": x, "reference": ref, "domain": index})["output"]
        want = translator.translate(photo, domain, ref=ref_image).images[0, 0]
        assert int(np.abs(images.from_model_output(out)[0].astype(int) - want).max()) <= 1


def test_broken_repositories_are_reported(exported: Any, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    triton.export_triton(exported, repo)
    config = repo / "tiny_generator" / "config.pbtxt"
    text = config.read_text()
    config.write_text(text.replace("dims: [ 16 ]", "dims: [ 17 ]"))
    assert any("differ from the graph" in p for p in triton.validate_repository(repo))
    config.write_text(text.replace('name: "style"', 'name: "styles"'))
    problems = triton.validate_repository(repo)
    assert any("tiny_generator/config.pbtxt: inputs" in p for p in problems)
    assert any("tiny_translate/config.pbtxt: step 2 maps inputs" in p for p in problems)
    config.write_text(text.replace("max_batch_size: 64", "max_batch_size: many"))
    assert any("not a valid Triton model config" in p for p in triton.validate_repository(repo))
    shutil.rmtree(repo / "tiny_mapping_network")
    assert any("not in the repository" in p for p in triton.validate_repository(repo, ["tiny_translate"]))
    with pytest.raises(Exception, match="instance kind"):
        triton.export_triton(exported, tmp_path / "x", kind="KIND_TPU")


def test_tensorrt_engines_become_tensorrt_models(exported: Any, tmp_path: Path) -> None:
    """With engines, each network is a tensorrt model (model.plan, the profile's max batch), I/O from its graph.
    The plan files here are placeholders: Triton's tensorrt backend is not available to load them."""
    import json

    from smoothgan.artifacts import MANIFEST_FORMAT, MANIFEST_VERSION

    folder = exported.path / "engines" / "nvidia-h100-sm90-trt10.13.0.35-fp32"
    folder.mkdir(parents=True)
    networks = {}
    for network in required_networks(exported.config):
        (folder / f"{network}.engine").write_bytes(network.encode())
        networks[network] = {"file": f"{network}.engine"}
    manifest = {"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION, "precision": "fp32",
                "weights_sha256": exported.weights_sha256, "tensorrt": {"module": "tensorrt", "version": "10.13"},
                "profile": {"min_batch": 1, "opt_batch": 8, "max_batch": 32}, "created": "2026-11-30T00:00:00",
                "networks": networks}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    rtx = exported.path / "engines" / "rtx-folder-fp32"
    shutil.copytree(folder, rtx)
    (rtx / "manifest.json").write_text(json.dumps({**manifest, "tensorrt": {"module": "tensorrt_rtx"},
                                                   "created": "2027-01-01T00:00:00"}))
    try:
        repo = tmp_path / "repo"
        models = {m.name: m for m in triton.export_triton(exported, repo, engines=True)}
        generator = triton.parse_config(repo / "tiny_generator" / "config.pbtxt")
        assert generator.backend == "tensorrt" and generator.max_batch_size == 32
        assert (repo / "tiny_generator" / "1" / "model.plan").read_bytes() == b"generator"
        assert models["tiny_translate"].max_batch_size == 32
        graphs = {f"tiny_{n}": exported.path / "onnx" / f"{n}-fp32.onnx" for n in required_networks(exported.config)}
        assert triton.validate_repository(repo, graphs=graphs) == []
        without = triton.export_triton(exported, tmp_path / "plain", engines=False)
        assert {m.backend for m in without} == {"onnxruntime", "ensemble"}
    finally:
        shutil.rmtree(exported.path / "engines")


def test_hpf_ensemble_wiring_with_fan_masks(tmp_path: Path) -> None:
    """The w_hpf > 0 pipeline (FAN masks into the generator), from the graphs' I/O table, without exporting."""
    config = get_preset("tiny-hpf").config
    models = {}
    for network in required_networks(config):
        inputs, outputs = io_spec(config, network)
        convert = {"float32": "TYPE_FP32", "int64": "TYPE_INT64"}
        tensors = [[triton.Tensor(n, convert[d], tuple(s[1:]) or (1,), None if s[1:] else ()) for n, s, d in group]
                   for group in (inputs, outputs)]
        model = triton.TritonModel(f"hpf_{network}", "onnxruntime", tmp_path / f"hpf_{network}", *tensors, 16)
        model.path.mkdir()
        (model.path / "config.pbtxt").write_text(triton.model_config(model, 1, "KIND_GPU", 100))
        models[network] = model
    for ensemble in triton._ensembles("hpf", models, uses_masks=True):
        (tmp_path / ensemble.name).mkdir()
        (tmp_path / ensemble.name / "config.pbtxt").write_text(triton.ensemble_config(ensemble))
        parsed = triton.parse_config(tmp_path / ensemble.name / "config.pbtxt")
        steps = [s.model_name for s in parsed.ensemble_scheduling.step]
        assert steps[1:] == ["hpf_fan", "hpf_generator"]
        assert triton._check_ensemble(tmp_path, ensemble.name, parsed, model_config_pb2) == []


def test_export_cli_triton(exported: Any, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from smoothgan.cli import app

    repo = tmp_path / "cli-repo"
    result = CliRunner().invoke(app, ["export", "--model", str(exported.path), "--no-onnx", "--triton", str(repo),
                                      "--max-batch", "16"])
    assert result.exit_code == 0, result.output
    assert "tiny_translate" in result.output
    assert triton.parse_config(repo / "tiny_style_encoder" / "config.pbtxt").max_batch_size == 16
    assert triton.validate_repository(repo) == []
