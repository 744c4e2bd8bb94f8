"""The ONNX Runtime backend: backend conformance (parametrised over the backends table), graph checks before use,
running without torch, and ``smoothgan translate --backend onnxruntime`` against ``--backend torch``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from conftest import random_networks
from PIL import Image
from test_onnx import exported_bundle
from typer.testing import CliRunner

from smoothgan.backends import BACKENDS, create_backend
from smoothgan.backends.onnxruntime import OnnxRuntimeBackend, physical_cores
from smoothgan.bundle import ModelBundle, load_bundle, save_bundle
from smoothgan.cli import app
from smoothgan.errors import BackendError, InputError
from smoothgan.export.onnx import FP32_MAX_ABS, HALF_MIN_PSNR_DB, psnr_db

REPO = Path(__file__).resolve().parents[1]
HAS_CUDA_EP = "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.fixture(scope="module")
def bundles(tiny_bundle, tiny_hpf_bundle, tmp_path_factory) -> dict[str, ModelBundle]:
    return {"tiny": exported_bundle(tmp_path_factory, tiny_bundle, "tiny"),
            "hpf": exported_bundle(tmp_path_factory, tiny_hpf_bundle, "tiny-hpf")}


@pytest.fixture(scope="module")
def reference(bundles) -> dict[str, object]:
    return {key: create_backend(bundle, "torch") for key, bundle in bundles.items()}


def conformance_calls(config, torch_ref) -> dict[str, tuple]:
    """name -> (call(backend, rows), batched output shape) over 3 fixed inputs; masks and styles from torch."""
    x = inputs(config, 3)
    masks = torch_ref.heatmap(x["image"]) if config.uses_masks else None
    style = torch_ref.mapping(x["latent"], x["domain"])
    size = config.img_size
    calls = {
        "mapping": (lambda b, s: b.mapping(x["latent"][s], x["domain"][s]), (3, config.style_dim)),
        "encode_style": (lambda b, s: b.encode_style(x["image"][s], x["domain"][s]), (3, config.style_dim)),
        "generate": (lambda b, s: b.generate(x["image"][s], style[s], None if masks is None else
                                             (masks[0][s], masks[1][s])), (3, 3, size, size)),
    }
    if config.uses_masks:
        calls["masks"] = (lambda b, s: np.concatenate(b.heatmap(x["image"][s]), axis=1), (3, 2, 256, 256))
    return calls


@pytest.fixture(scope="module")
def expected(bundles, reference) -> dict[str, tuple[dict, dict]]:
    """Per bundle: the conformance calls and torch fp32's batched outputs for them (computed once)."""
    out = {}
    for key, bundle in bundles.items():
        calls = conformance_calls(bundle.config, reference[key])
        out[key] = calls, {what: call(reference[key], slice(0, 3)) for what, (call, _) in calls.items()}
    return out


def _cpu_candidates() -> list[tuple[str, str]]:
    """(backend, precision) rows of the backends table, fp32 and fp16, on CPU."""
    return [(name, p) for name, spec in BACKENDS.items() for p in ("fp32", "fp16") if p in spec.precisions]


def cpu_backend(bundle: ModelBundle, name: str, precision: str):
    spec = BACKENDS[name]
    if "cpu" not in spec.devices:
        pytest.skip(f"{name} runs on {', '.join(spec.devices)} only")
    if not spec.is_installed():
        pytest.skip(f"{name} is not installed")
    if name == "torch" and precision == "fp16":
        pytest.skip("torch fp16 needs CUDA")
    return create_backend(bundle, name, "cpu", precision)


def inputs(config, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "latent": rng.standard_normal((batch, config.latent_dim)).astype(np.float32),
        "image": rng.uniform(-1, 1, (batch, 3, config.img_size, config.img_size)).astype(np.float32),
        "domain": rng.integers(0, config.num_domains, batch).astype(np.int64),
    }


def close_to(expected: np.ndarray, got: np.ndarray, precision: str, what: str) -> None:
    """fp32: max abs <= 1e-4 (FAN masks: at most 0.1% of pixels past it, threshold flips); fp16: PSNR >= 40 dB."""
    if precision == "fp32" and what == "masks":
        assert (np.abs(got - expected) > FP32_MAX_ABS).mean() <= 1e-3
    elif precision == "fp32":
        assert np.abs(got - expected).max() <= FP32_MAX_ABS, (what, np.abs(got - expected).max())
    else:
        assert psnr_db(expected, got) >= HALF_MIN_PSNR_DB, (what, psnr_db(expected, got))


@pytest.mark.parametrize("key", ["tiny", "hpf"])
@pytest.mark.parametrize("name, precision", _cpu_candidates())
def test_backend_conformance(bundles, expected, key, name, precision) -> None:
    """Every backend: float32 outputs of the documented shapes, a batch equals its items one by one, and parity
    with torch fp32 at the stated tolerance."""
    backend = cpu_backend(bundles[key], name, precision)
    calls, torch_outputs = expected[key]
    for what, (call, shape) in calls.items():
        if what == "masks" and precision != "fp32":
            continue  # the fp16 FAN graph is the fp32 one (tests/test_onnx.py)
        batched = call(backend, slice(0, 3))
        assert batched.dtype == np.float32 and batched.shape == shape and batched.flags.c_contiguous, what
        singles = np.concatenate([call(backend, slice(i, i + 1)) for i in range(3)])
        if what == "masks":  # per-sample FAN: a flipped threshold pixel is the only allowed difference
            assert (np.abs(batched - singles) > 1e-4).mean() <= 1e-3
        else:
            assert np.abs(batched - singles).max() <= 1e-4, (what, np.abs(batched - singles).max())
        close_to(torch_outputs[what], batched, "fp32" if what == "masks" else precision, what)


def test_style_of_one_is_shared_by_the_batch(bundles) -> None:
    backend = create_backend(bundles["tiny"], "onnxruntime")
    x = inputs(bundles["tiny"].config, 3)
    style = backend.mapping(x["latent"][:1], x["domain"][:1])
    assert np.array_equal(backend.generate(x["image"], style), backend.generate(x["image"], np.repeat(style, 3, 0)))


def test_session_options_and_describe(bundles) -> None:
    backend = OnnxRuntimeBackend(bundles["tiny"], threads=1)
    x = inputs(bundles["tiny"].config, 1)
    backend.mapping(x["latent"], x["domain"])
    options = backend._sessions["mapping_network"].get_session_options()
    assert options.intra_op_num_threads == 1 and options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert set(backend._sessions) == {"mapping_network"}  # sessions are created on first use
    assert "CPUExecutionProvider, 1 threads" in backend.describe()
    assert 1 <= OnnxRuntimeBackend(bundles["tiny"]).threads == physical_cores() <= (os.cpu_count() or 1)


def test_hpf_generator_needs_masks(bundles) -> None:
    backend = create_backend(bundles["hpf"], "onnxruntime")
    x = inputs(bundles["hpf"].config, 1)
    with pytest.raises(InputError, match="needs the FAN masks"):
        backend.generate(x["image"], np.zeros((1, 16), np.float32))
    with pytest.raises(InputError, match="no FAN masks"):
        create_backend(bundles["tiny"], "onnxruntime").heatmap(x["image"])


def test_missing_graphs_name_the_export_command(tiny_bundle, tmp_path: Path) -> None:
    copy = tmp_path / "plain"
    shutil.copytree(tiny_bundle.path, copy, ignore=shutil.ignore_patterns("onnx"))
    with pytest.raises(BackendError, match=r"no ONNX graph\(s\) onnx/mapping_network-fp32.onnx.*run: smoothgan "
                                           r"export --model .*plain --onnx$"):
        create_backend(load_bundle(copy), "onnxruntime")
    with pytest.raises(BackendError, match="--onnx --precision fp16"):
        create_backend(load_bundle(copy), "onnxruntime", precision="fp16")
    result = CliRunner().invoke(app, ["translate", str(copy / "smoothgan.json"), "--domain", "a", "--model",
                                      str(copy), "--backend", "onnxruntime", "--out", str(tmp_path / "o")])
    assert result.exit_code == 4 and result.output.strip().splitlines()[-1].startswith("error:")
    assert "smoothgan export --model" in result.output and "Traceback" not in result.output


def test_stale_graphs_are_refused(bundles, tmp_path: Path) -> None:
    """Graphs exported from other weights (or renamed to another precision) are a clear error, not a crash."""
    old = bundles["tiny"]
    new = save_bundle(tmp_path / "retrained", random_networks(old.config, seed=5), old.config, old.domains)
    shutil.copytree(old.path / "onnx", new.path / "onnx")
    with pytest.raises(BackendError, match=r"stale ONNX graph .*mapping_network-fp32.onnx: exported from weights "
                                           r".*re-run smoothgan export"):
        create_backend(load_bundle(new.path), "onnxruntime")
    renamed = tmp_path / "renamed"
    shutil.copytree(old.path, renamed)
    shutil.copy(renamed / "onnx" / "generator-fp32.onnx", renamed / "onnx" / "generator-fp16.onnx")
    with pytest.raises(BackendError, match="stale ONNX graph .*generator-fp16.onnx: precision is 'fp32'"):
        create_backend(load_bundle(renamed), "onnxruntime", precision="fp16")


@pytest.mark.skipif(HAS_CUDA_EP, reason="this onnxruntime has the CUDA execution provider")
def test_cuda_without_onnxruntime_gpu_is_a_clear_error(bundles) -> None:
    with pytest.raises(BackendError, match=r"no CUDAExecutionProvider .*pip install 'smoothgan\[gpu\]'"):
        OnnxRuntimeBackend(bundles["tiny"], device="cuda")
    with pytest.raises(BackendError, match="needs --device cuda"):
        OnnxRuntimeBackend(bundles["tiny"], providers=["cuda"])


def test_iobinding_path_on_cpu_buffers(bundles) -> None:
    """The CUDA code path (IOBinding, output buffers kept per batch shape, warm-up run) exercised on CPU."""
    backend = OnnxRuntimeBackend(bundles["hpf"])
    backend.buffer_device = "cpu"
    x = inputs(bundles["hpf"].config, 3)
    masks = (np.full((3, 1, 256, 256), 0.5, np.float32),) * 2
    style = backend.mapping(x["latent"], x["domain"])
    feeds = {"image": x["image"], "style": style, "mask0": masks[0], "mask1": masks[1]}
    session = backend._session("generator")
    for batch in (3, 1, 3):
        rows = {k: v[:batch] for k, v in feeds.items()}
        bound = backend._run_bound("generator", session, rows)
        assert np.array_equal(bound[0], session.run(None, rows)[0])
    assert list(backend._bound) == [("generator", 1), ("generator", 3)]


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA_EP, reason="needs onnxruntime-gpu (CUDAExecutionProvider)")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_iobinding_matches_cpu(bundles, reference, precision) -> None:
    bundle = bundles["hpf"]
    gpu = OnnxRuntimeBackend(bundle, device="cuda", precision=precision)
    x = inputs(bundle.config, 3)
    masks = reference["hpf"].heatmap(x["image"])
    style = reference["hpf"].mapping(x["latent"], x["domain"])
    for batch in (3, 1, 3):  # a new shape, another, then a reused device buffer
        got = gpu.generate(x["image"][:batch], style[:batch], (masks[0][:batch], masks[1][:batch]))
        expected = reference["hpf"].generate(x["image"][:batch], style[:batch], (masks[0][:batch], masks[1][:batch]))
        assert psnr_db(expected, got) >= (50 if precision == "fp32" else HALF_MIN_PSNR_DB)  # fp32: TF32 convs
    assert len(gpu._bound) == 2


def test_runs_without_torch(bundles, tmp_path: Path) -> None:
    """``import smoothgan`` and translating with an exported bundle never import torch."""
    code = f"""
import sys
sys.modules["torch"] = None  # any 'import torch' now raises ImportError
import numpy as np
import smoothgan
image = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
for path in {[str(b.path) for b in bundles.values()]!r}:
    translator = smoothgan.load(path, backend="onnxruntime")
    frames = translator.interpolate(image, "b", steps=3).images
    assert frames.shape == (1, 3, 32, 32, 3) and frames.dtype == np.uint8
    assert translator.translate(image, "a", num=2).images.shape == (1, 2, 32, 32, 3)
print("ok", sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnx", "onnxscript")))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok", "['torch']"]  # the blocked entry itself, nothing imported


@pytest.mark.parametrize("key, args", [
    ("tiny", ["--domain", "b", "--num", "3", "--seed", "3"]),
    ("tiny", ["--domain", "a", "--ref", "{photo}"]),
    ("tiny", ["--domain", "a", "--steps", "3", "--source-domain", "b", "--interp", "slerp", "--no-gif"]),
    ("hpf", ["--domain", "b", "--steps", "4", "--no-gif"]),
])
def test_translate_frames_match_torch(bundles, photo: Path, tmp_path: Path, key, args) -> None:
    """``--backend onnxruntime`` writes the same frames as ``--backend torch`` within 1/255."""
    runner = CliRunner()
    frames = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / backend
        result = runner.invoke(app, ["translate", str(photo), *[a.format(photo=photo) for a in args], "--model",
                                     str(bundles[key].path), "--backend", backend, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert json.loads((out / "photo" / "sidecar.json").read_text())["backend"] == backend
        frames[backend] = np.stack([np.asarray(Image.open(p)) for p in sorted((out / "photo").glob("frame_*.png"))])
    assert frames["torch"].shape == frames["onnxruntime"].shape and len(frames["torch"]) >= 1
    assert np.abs(frames["torch"].astype(int) - frames["onnxruntime"]).max() <= 1
