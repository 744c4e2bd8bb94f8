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


# ---- one input policy on every backend (smoothgan.backends.base) --------------------------------------------

def _policy_backends() -> list[str]:
    """torch and onnxruntime on CPU; tensorrt as its backend over fake engines (tests/test_tensorrt.py) that run
    the same graphs, so the policy is checked on its code path without a GPU."""
    return ["torch", "onnxruntime", "tensorrt"]


def policy_backend(bundle: ModelBundle, name: str):
    if not BACKENDS[name].is_installed() and name != "tensorrt":
        pytest.skip(f"{name} is not installed")
    if name != "tensorrt":
        return create_backend(bundle, name, "cpu", "fp32")
    from test_tensorrt import FAKE_TRT, FakeEngine

    from smoothgan.artifacts import onnx_path, required_networks
    from smoothgan.backends.tensorrt import EngineRunner, TensorRTBackend, TorchMemory

    engines = {n: FakeEngine(onnx_path(bundle, n, "fp32"), max_batch=2) for n in required_networks(bundle.config)}
    return TensorRTBackend.from_runner(bundle.config, EngineRunner(FAKE_TRT, engines, TorchMemory("cpu")))


@pytest.mark.parametrize("key", ["tiny", "hpf"])
@pytest.mark.parametrize("name", _policy_backends())
def test_every_backend_applies_one_input_policy(bundles, key, name) -> None:
    bundle = bundles[key]
    config = bundle.config
    backend = policy_backend(bundle, name)
    x = inputs(config, 3)
    style = backend.mapping(x["latent"], x["domain"])
    masks = backend.heatmap(x["image"]) if config.uses_masks else None
    out = backend.generate(x["image"], style, masks)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == x["image"].shape

    # a batch of 1 is shared by the whole batch: style, domain (and masks of one image)
    shared = backend.generate(x["image"], style[:1], masks)
    np.testing.assert_allclose(shared, backend.generate(x["image"], np.repeat(style[:1], 3, 0), masks), atol=1e-6)
    np.testing.assert_allclose(backend.mapping(x["latent"], x["domain"][:1]),
                               backend.mapping(x["latent"], np.repeat(x["domain"][:1], 3)), atol=1e-6)
    np.testing.assert_allclose(backend.encode_style(x["image"], 1), backend.encode_style(x["image"], [1, 1, 1]),
                               atol=1e-6)
    # other dtypes and layouts are converted: float64, Fortran order, a strided view, int32 domains
    image64 = np.asfortranarray(x["image"].astype(np.float64))
    strided = np.concatenate([style, style], axis=1)[:, ::2]
    strided[:] = style
    np.testing.assert_allclose(backend.generate(image64, strided, masks), out, atol=1e-5)
    np.testing.assert_allclose(backend.mapping(x["latent"], x["domain"].astype(np.int32)), style, atol=1e-6)

    # masks: required exactly when the model uses them
    if config.uses_masks:
        with pytest.raises(InputError, match=r"needs the FAN masks of its images"):
            backend.generate(x["image"], style)
        with pytest.raises(InputError, match=r"mask0 has shape \[3, 1, 64, 64\], expected \[B, 1, 256, 256\]"):
            backend.generate(x["image"], style, (masks[0][:, :, :64, :64], masks[1]))
    else:
        fake = np.zeros((3, 1, 256, 256), np.float32)
        with pytest.raises(InputError, match="takes no FAN masks"):
            backend.generate(x["image"], style, (fake, fake))
        with pytest.raises(InputError, match="uses no FAN masks"):
            backend.heatmap(x["image"])

    size = config.img_size
    bad_calls = [
        (lambda: backend.generate(x["image"][:, :, :16, :16], style, masks),
         rf"image has shape \[3, 3, 16, 16\], expected \[B, 3, {size}, {size}\]"),
        (lambda: backend.generate(x["image"][0], style, masks), rf"expected \[B, 3, {size}, {size}\]"),
        (lambda: backend.generate(x["image"], style[:, :5], masks), rf"style has shape \[3, 5\], "
                                                                     rf"expected \[B, {config.style_dim}\]"),
        (lambda: backend.generate(x["image"], style[:2], masks), r"batch sizes differ \(image: 3, style: 2"),
        (lambda: backend.mapping(x["latent"][:0], x["domain"][:0]), "empty batch"),
        (lambda: backend.mapping(x["latent"], [0, 1, config.num_domains]), r"domain indices must be in \[0, "),
        (lambda: backend.mapping(x["latent"], [-1, 0, 0]), "domain indices"),
        (lambda: backend.mapping(x["latent"], np.array([0.5, 1, 1])), "integer indices"),
        (lambda: backend.encode_style(x["image"].astype(np.complex64), x["domain"]), "real numeric array"),
        (lambda: backend.encode_style(np.array([["a"]]), x["domain"]), "real numeric array"),
    ]
    for call, message in bad_calls:
        with pytest.raises(InputError, match=message):
            call()
    backend.close()


# ---- backend "auto" --------------------------------------------------------------------------------------------

def test_auto_picks_the_fastest_backend_with_artefacts(bundles, tiny_bundle, tmp_path: Path, caplog) -> None:
    from smoothgan.backends import AUTO_ORDER, BACKEND_CHOICES, precisions_for

    assert BACKEND_CHOICES[0] == "auto" and set(BACKEND_CHOICES[1:]) == set(BACKENDS) == set(AUTO_ORDER)
    assert precisions_for("onnxruntime") == BACKENDS["onnxruntime"].precisions and "fp32" in precisions_for("auto")
    with caplog.at_level("INFO", logger="smoothgan.backends"):
        assert create_backend(bundles["tiny"], "auto").name == "onnxruntime"  # graphs present
    assert "backend auto: chose onnxruntime" in caplog.text
    assert create_backend(bundles["tiny"], "auto", precision="fp16").name == "onnxruntime"
    plain = tmp_path / "plain"
    shutil.copytree(tiny_bundle.path, plain, ignore=shutil.ignore_patterns("onnx"))
    assert create_backend(load_bundle(plain), "auto").name == "torch"  # no graphs: the weights
    stale = tmp_path / "stale"
    shutil.copytree(bundles["tiny"].path, stale)
    (stale / "onnx" / "generator-fp32.onnx").write_bytes(b"not a graph")
    assert create_backend(load_bundle(stale), "auto").name == "torch"  # unusable graphs are passed over


def test_auto_says_what_to_install_or_export(bundles, tiny_bundle, tmp_path: Path, monkeypatch) -> None:
    from smoothgan.backends import BackendSpec

    plain = tmp_path / "plain"
    shutil.copytree(tiny_bundle.path, plain, ignore=shutil.ignore_patterns("onnx"))
    with pytest.raises(BackendError, match=r"no backend can run .*plain on cpu at fp16: tensorrt: runs on cuda "
                                           r"only; onnxruntime: no current ONNX fp16 graphs \(smoothgan export "
                                           r"--model .*plain --onnx --precision fp16\); torch: fp16 on the torch "
                                           r"backend needs --device cuda"):
        create_backend(load_bundle(plain), "auto", precision="fp16")
    monkeypatch.setattr(BackendSpec, "is_installed", lambda self: self.name == "onnxruntime")
    with pytest.raises(BackendError, match=r"torch: not installed \(pip install 'smoothgan\[torch\]'\)"):
        create_backend(load_bundle(plain), "auto")
    assert create_backend(bundles["tiny"], "auto").name == "onnxruntime"
    with pytest.raises(BackendError, match=r"unknown backend 'fastest'; choose one of auto, torch"):
        create_backend(bundles["tiny"], "fastest")


def test_translator_is_a_context_manager_that_closes_its_backend(bundles, monkeypatch) -> None:
    import smoothgan

    closed = []
    with smoothgan.load(bundles["tiny"].path) as translator:
        assert translator.backend.name == "onnxruntime"
        monkeypatch.setattr(translator.backend, "close", lambda: closed.append(True))
    assert closed == [True]
